"""The ASan + UBSan host build (host.SanitizedModel) and the prebuilt runtime (host.HostRuntime)."""
import numpy as np
import pytest

from bitgen import check, golden, ir
from bitgen.backends.c import emit, host

from models_for_tests import every_kernel_model

SHORT_ROWS = {"binary": [-1, 1], "ternary": [-1, 0, 1], "2bitsym": [-3, -1, 1, 3]}


def _short_last_row(enc: str, conv: bool) -> ir.Model:
    """Rows of 4 weights of 1 or 2 bits: one byte each, so a 4-bit code read of weight 2 or 3
    lands past the row, and for the last row past the weight array."""
    rng = np.random.default_rng(1)
    vals = SHORT_ROWS[enc]
    if conv:
        first = ir.Conv2d(weight=rng.choice(vals, (3, 1, 2, 2)), encoding=enc)
        shape, n = (1, 3, 3), 12
    else:
        first = ir.Linear(weight=rng.choice(vals, (3, 4)), encoding=enc)
        shape, n = (4,), 3
    return ir.Model(ir.InputSpec(shape), [
        first, ir.Requant(multiplier=[1], shift=[2]), ir.Flatten(),
        ir.Linear(weight=rng.integers(-8, 8, (2, n)), encoding="4bit"),
    ])


def _assert_bit_exact(model, hm):
    x = np.concatenate([check.random_inputs(model.input.shape, 16), check.extreme_inputs(model.input.shape)])
    want = golden.run(model, x, all_layers=True)
    y, pred, got = hm.run(x, trace=True)
    for i, (w, g) in enumerate(zip(want, got)):
        if g is not None:
            assert np.array_equal(w.reshape(g.shape), g), f"layer {i} differs"
    assert np.array_equal(y.reshape(want[-1].shape), want[-1])
    assert np.array_equal(pred, golden.argmax(want[-1]))


@pytest.mark.parametrize("conv", [False, True], ids=["linear", "conv"])
@pytest.mark.parametrize("enc", sorted(SHORT_ROWS))
def test_short_rows_are_read_within_bounds(sanitized_runtime, tmp_path, enc, conv):
    """Regression: bg_weight read the 2-bit and 4-bit code bytes of every weight whatever its
    encoding; ASan reported a global-buffer-overflow on the last row's weights."""
    model = _short_last_row(enc, conv)
    em = emit.emit(model, tmp_path / "c", name="short", kernels="generic")
    hm = host.build_sanitized(em, tmp_path / "b", runtime=sanitized_runtime)
    try:
        _assert_bit_exact(model, hm)
    finally:
        hm.close()


def test_sanitized_build_of_the_emitted_sources(sanitized_runtime, tmp_path):
    """Without a prebuilt runtime the executable compiles exactly what emit wrote."""
    model = every_kernel_model()
    em = emit.emit(model, tmp_path / "c", name="every", kernels="rv32ec")
    hm = host.build_sanitized(em, tmp_path / "b")
    try:
        _assert_bit_exact(model, hm)
    finally:
        hm.close()


def test_asan_report_is_one_line_error(sanitized_runtime, tmp_path):
    """A trace buffer one byte short: the trace hook's copy overflows the heap."""
    model = every_kernel_model()
    em = emit.emit(model, tmp_path / "c", name="every")
    em.report["layers"][-1]["out_bytes"] -= 1
    hm = host.build_sanitized(em, tmp_path / "b", runtime=sanitized_runtime)
    with pytest.raises(host.SanitizerError) as e:
        hm.run(check.extreme_inputs(model.input.shape), trace=True)
    msg = str(e.value)
    assert "\n" not in msg
    assert msg.startswith("every: ERROR: AddressSanitizer: heap-buffer-overflow"), msg
    assert "(at " in msg  # the first stack frame
    hm.run(check.extreme_inputs(model.input.shape))  # without a trace nothing overflows


def test_ubsan_report_is_one_line_error(sanitized_runtime, tmp_path):
    model = every_kernel_model()
    em = emit.emit(model, tmp_path / "c", name="every")
    src = tmp_path / "c" / "every.c"
    text = src.read_text()
    assert text.count("    return (int)bg_argmax_") == 1
    src.write_text(text.replace("    return (int)bg_argmax_",
                                "    { volatile int32_t big = 2147483647; big = big + ((input[0] & 1) + 1); }\n"
                                "    return (int)bg_argmax_"))
    hm = host.build_sanitized(em, tmp_path / "b", runtime=sanitized_runtime)
    with pytest.raises(host.SanitizerError, match=r"^every: .*every\.c:\d+:\d+: runtime error: signed integer overflow"):
        hm.run(check.extreme_inputs(model.input.shape))


def test_prebuilt_runtime_refuses_other_runtime_files(host_runtime, tmp_path):
    em = emit.emit(every_kernel_model(), tmp_path / "c", name="every")
    lin = tmp_path / "c" / "bg_linear.c"
    lin.write_text(lin.read_text() + "/* changed */\n")
    with pytest.raises(host.HostBuildError, match="bg_linear.c of the emitted model is not the prebuilt"):
        host.build(em, tmp_path / "b", runtime=host_runtime)


def test_plain_and_sanitized_runtimes_do_not_mix(host_runtime, sanitized_runtime, tmp_path):
    em = emit.emit(every_kernel_model(), tmp_path / "c", name="every")
    with pytest.raises(host.HostBuildError, match="sanitized HostRuntime cannot link into a plain"):
        host.build(em, tmp_path / "b", runtime=sanitized_runtime)
    with pytest.raises(host.HostBuildError, match="plain HostRuntime cannot link into a sanitized"):
        host.build_sanitized(em, tmp_path / "b", runtime=host_runtime)


def test_report_line_from_asan_output():
    err = ("=================================================================\n"
           "==4242==ERROR: AddressSanitizer: global-buffer-overflow on address 0x55 at pc 0x56 bp 0x1 sp 0x2\n"
           "READ of size 1 at 0x55 thread T0\n"
           "    #0 0x5600 in bg_weight /x/bg_runtime.h:61\n"
           "    #1 0x5601 in bg_linear_s8 /x/bg_linear.inc:10\n")
    assert host.sanitizer_report_line(err) == ("ERROR: AddressSanitizer: global-buffer-overflow on address 0x55 "
                                               "at pc 0x56 bp 0x1 sp 0x2 (at bg_weight /x/bg_runtime.h:61)")
    assert host.sanitizer_report_line("some other output\n") is None
