"""ADI's synthesis tool (izer, ai8x-synthesis) as a test oracle for the MAX78000 back end.

izer is not part of bitgen: it lives in ``../shared/oracles/ai8x-synthesis`` (read-only, Apache-2.0)
and runs in its own virtual environment (its pins conflict with bitgen's), made once by
``../shared/oracles/izer-venv.sh .izer-venv`` (tools/setup.sh does it when the oracle is there).
``BITGEN_IZER_PYTHON`` names another interpreter. Tests that need it skip, with the reason,
when either is missing.

:func:`run` runs izer on a network (an ``arch: test`` YAML needs no checkpoint) with
``--log-intermediate`` and returns its output folder: ``cnn.c``, ``weights.h``, ``sampleoutput.h``,
..., and ``data.npy`` (five records per layer: input, pooled, after the element-wise op, the
full-resolution sum, the output), ``weights.npy`` / ``bias.npy`` (the hardware integers per layer).
"""
from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
IZER = (ROOT / ".." / "shared" / "oracles" / "ai8x-synthesis").resolve()
TESTS = IZER / "tests"


def python() -> Path | None:
    env = os.environ.get("BITGEN_IZER_PYTHON")
    p = Path(env) if env else ROOT / ".izer-venv" / "bin" / "python"
    return p if p.exists() else None


def missing() -> str | None:
    """Why izer cannot run here (None: it can)."""
    if not (IZER / "ai8xize.py").is_file():
        return f"izer oracle not found ({IZER}; see ../shared/oracles/README.md)"
    if python() is None:
        return ("no izer virtual environment: run ../shared/oracles/izer-venv.sh .izer-venv "
                "(or set BITGEN_IZER_PYTHON)")
    return None


def test_networks() -> list[Path]:
    """Every `arch: test` YAML of izer's tests, sorted by name."""
    out = []
    for p in sorted(TESTS.glob("*.yaml")):
        head = p.read_text(errors="replace")
        if "\narch: test" in head or head.startswith("arch: test"):
            out.append(p)
    return out


class IzerFailed(Exception):
    """izer refused the network (its own error, e.g. a MAX78002-only feature)."""


def run(config: Path, outdir: Path, prefix: str, *, checkpoint: Path | None = None, sample: Path | None = None,
        extra: list[str] | None = None, timeout: float = 300) -> Path:
    """izer's output folder for ``config`` (izer runs in its own folder, which holds the test
    weights and samples). Raises IzerFailed with izer's last lines when it fails."""
    outdir = Path(outdir)
    target = outdir / prefix
    if target.exists():
        shutil.rmtree(target)
    cmd = [str(python()), "ai8xize.py", "--device", "MAX78000", "--config-file", str(Path(config).resolve()),
           "--test-dir", str(outdir.resolve()), "--prefix", prefix, "--no-version-check", "--overwrite",
           "--log-intermediate", "--verbose"]  # --verbose: log.txt holds izer's latency estimate
    if checkpoint is not None:
        cmd += ["--checkpoint-file", str(Path(checkpoint).resolve())]
    if sample is not None:
        cmd += ["--sample-input", str(Path(sample).resolve())]
    cmd += extra or []
    env = dict(os.environ, TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD="1")
    r = subprocess.run(cmd, cwd=IZER, capture_output=True, text=True, timeout=timeout, env=env)
    if r.returncode != 0 or not (target / "data.npy").is_file():
        lines = [ln for ln in (r.stderr + r.stdout).splitlines() if "ERROR" in ln] or (r.stderr or r.stdout).splitlines()
        raise IzerFailed((lines[-1] if lines else f"exit status {r.returncode}").strip())
    return target


def records(path: Path) -> list[np.ndarray]:
    """Every array of a file of concatenated np.save records."""
    out = []
    with open(path, "rb") as f:
        while True:
            try:
                out.append(np.load(f, allow_pickle=False))
            except (EOFError, ValueError):
                return out


@dataclass
class LayerLog:
    """izer's log of one layer (data.npy): its input (operands, C, H, W), the pooled data or
    None, the data after the element-wise op, the full-resolution sum or None, the output."""

    input: np.ndarray
    pooled: np.ndarray | None
    eltwise: np.ndarray
    acc: np.ndarray | None
    output: np.ndarray


def layer_logs(folder: Path) -> list[LayerLog]:
    recs = records(folder / "data.npy")
    if len(recs) % 5:
        raise ValueError(f"{folder}/data.npy holds {len(recs)} records, not five per layer")
    none = lambda a: None if a.size == 0 else a  # noqa: E731
    return [LayerLog(recs[k], none(recs[k + 1]), recs[k + 2], none(recs[k + 3]), recs[k + 4])
            for k in range(0, len(recs), 5)]


# ------------------------------------------------------------------ bitgen's golden against izer
def model_from_logs(config: Path, folder: Path):
    """bitgen's IR of an izer run: the YAML's layers with the hardware weights and biases izer
    logged (weights.npy, bias.npy) and the input shape of its sample."""
    from bitgen.backends.max78000 import network_yaml
    from bitgen.importers import ai8x

    net = network_yaml.parse(Path(config).read_text(), str(config))
    refusals = net.refusals()
    if refusals:
        raise ai8x.Ai8xImportError(f"not supported: {refusals[0]}")
    logs = layer_logs(folder)
    if len(logs) != len(net.layers):
        raise ai8x.Ai8xImportError(f"izer logged {len(logs)} layers of {len(net.layers)} (--stop-after or links)")
    wrec, brec = records(folder / "weights.npy"), records(folder / "bias.npy")
    weights, biases = [], []
    for ly, w, b in zip(net.layers, wrec, brec):
        if not ly.has_weights:
            weights.append(None)
            biases.append(None)
            continue
        o = w.shape[0]
        if ly.operation == "linear":
            w = w.reshape(o, -1)
        elif ly.operation == "conv1d":
            k, d = ly.kernel_size, ly.dilation
            if d > 1 and w.shape[2:] == (3, 3):  # izer ran a large dilation on the 3x3 hardware
                w = w[:, :, 3 - k:, 1]
            w = w.reshape(o, w.shape[1], -1)
            if d > 1 and w.shape[2] == (k - 1) * d + 1:  # izer logs the kernel stretched with zeros
                w = w[:, :, ::d]
        weights.append(w.astype(np.int64))
        biases.append(None if b.size == 0 else b.astype(np.int64))
    x0 = logs[0].input
    shape = (x0.shape[0] * x0.shape[1],) + x0.shape[2:]
    if net.layers[0].operation == "conv1d":
        shape = shape[:2] if len(shape) == 3 and shape[2] == 1 else shape
    model = ai8x.build_model(net, shape, weights, biases, [ly.output_shift for ly in net.layers], name=config.stem)
    return model, logs


def golden_vs_izer(config: Path, folder: Path) -> list[str]:
    """Every difference between bitgen's golden and izer's per-layer log (empty: bit-exact):
    the network input izer used runs through bitgen's model, and each layer's pooled data,
    element-wise result, full-resolution sum and output are compared."""
    from bitgen import golden

    model, logs = model_from_logs(config, folder)
    x = logs[0].input.reshape((1,) + model.input.shape)
    outs = golden.run(model, x.astype(np.int8), all_layers=True)
    env = {n.output: o for n, o in zip(model.nodes, outs)} | {"input": x}
    diffs = []
    layer_nodes = [n for n in model.nodes if n.op.kind == "max78000_layer"]
    for k, (node, log) in enumerate(zip(layer_nodes, logs)):
        st = node.op.stages(*(env[name] for name in node.inputs))
        pairs = [("output", st["output"], log.output), ("eltwise", st["eltwise"], log.eltwise)]
        if log.acc is not None and st["acc"] is not None:
            pairs.append(("acc", st["acc"], log.acc))
        if log.pooled is not None and st["pooled"] is not None:
            pairs.append(("pooled", st["pooled"], log.pooled))
        for what, mine, theirs in pairs:
            a, b = np.asarray(mine).reshape(-1), np.asarray(theirs).reshape(-1)
            if a.size != b.size:
                diffs.append(f"layer {k} {what}: {a.size} values, izer {b.size} ({np.shape(mine)} vs {np.shape(theirs)})")
            elif not np.array_equal(a, b):
                i = int(np.nonzero(a != b)[0][0])
                diffs.append(f"layer {k} {what}: {int((a != b).sum())} of {a.size} differ, first at {i}: "
                             f"bitgen {a[i]}, izer {b[i]}")
    return diffs


# ------------------------------------------------------------ izer's firmware on the emulator


def build_firmware(folder: Path, workdir: Path) -> Path:
    """izer's generated cnn.c and main.c with the SDK shim (bitgen/backends/max78000/shim) and bitgen's
    MAX78000 start-up code, cross-compiled into a flash image for max78000-sim."""
    from bitgen.backends.max78000 import sdk_shim
    from bitgen.harness import boards, firmware

    board = boards.get("max78000")
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    cc = board.require_toolchain()
    flags = [f for f in board.toolchain["cflags"]] + ["-w", "-I", str(sdk_shim.DIR), "-I", str(folder),
                                                         "-I", str(ROOT / "c_runtime")]
    objs = []
    for src in (folder / "cnn.c", folder / "main.c", *sdk_shim.SOURCES, board.path / "startup.c"):
        obj = workdir / (src.stem + ".o")
        r = subprocess.run([cc, *flags, "-c", str(src), "-o", str(obj)], capture_output=True, text=True)
        if r.returncode:
            raise RuntimeError(f"compiling {src.name}: {r.stderr[-800:]}")
        objs.append(obj)
    firmware.write_memory_ld(board, workdir / "memory.ld")
    elf = workdir / "izer.elf"
    link = [cc, *board.toolchain["ldflags"], "-T", str(board.path / board.toolchain["linker_script"]),
            "-L", str(workdir), *map(str, objs), "-lc", "-lgcc", "-o", str(elf)]
    r = subprocess.run(link, capture_output=True, text=True)
    if r.returncode:
        raise RuntimeError(f"linking: {r.stderr[-800:]}")
    image = workdir / "izer.bin"
    subprocess.run([board.tool("objcopy"), "-O", "binary", str(elf), str(image)], check=True)
    return elf


@dataclass
class FirmwareRun:
    passed: bool
    console: str
    instructions: int
    cnn_layers: int  # accelerator layers the emulator ran
    memory: dict[str, bytes] = field(default_factory=dict)  # what `read` asked for, at the end


def run_firmware(elf: Path, max_instructions: int = 200_000_000, read: dict[str, int] | None = None) -> FirmwareRun:
    """Run izer's firmware (or bitgen's layer program's main.c) on max78000-sim until it prints
    PASS or FAIL (its known-answer test: the accelerator's output words against
    sampleoutput.h); ``read`` names symbols whose first bytes to return (symbol -> size)."""
    import unicorn as uc

    from bitgen.harness import boards
    from bitgen.sim.machine import Machine

    board = boards.get("max78000-sim")
    syms = {}
    nm = subprocess.run([boards.get("max78000").tool("nm"), str(elf)], capture_output=True, text=True).stdout
    for line in nm.splitlines():
        parts = line.split()
        if len(parts) == 3:
            syms[parts[2]] = int(parts[0], 16)
    m = Machine(board.emulator, elf.with_suffix(".bin").read_bytes(), name=board.name)
    console, length = syms["bg_console"], syms["bg_console_len"]

    def text() -> str:
        n = int.from_bytes(bytes(m.uc.mem_read(length, 4)), "little")
        return bytes(m.uc.mem_read(console, min(n, 4095))).decode(errors="replace")

    def on_print(u, access, address, size, value, _user):
        if value == 0 and ("*** PASS ***" in text() or "*** FAIL ***" in text() or "FAULT" in text()):
            u.emu_stop()

    m.uc.hook_add(uc.UC_HOOK_MEM_WRITE, on_print, begin=console, end=console + 4095)
    m.run(max_instructions)
    out = text()
    cnn = next(p for p in m.peripherals if p.name == "cnn")
    memory = {sym: bytes(m.uc.mem_read(syms[sym], size)) for sym, size in (read or {}).items()}
    return FirmwareRun("*** PASS ***" in out, out, m.instructions, cnn.layers_run, memory)


# --------------------------------------------------- bitgen's own layer program for izer's networks
def _parsed(config: Path):
    """(bitgen's reading of an izer network YAML, "") or (None, why bitgen's reader refuses it)."""
    from bitgen.backends.max78000 import network_yaml
    from bitgen.errors import BitgenError

    try:
        net = network_yaml.parse(Path(config).read_text(), str(config))
    except BitgenError as e:
        return None, str(e)
    if net.refusals():
        return None, net.refusals()[0]
    return net, ""


def own_program(config: Path, workdir: Path) -> tuple[str, str]:
    """izer's `arch: test` network with izer's weights and sample (model_from_logs) as bitgen's
    own layer program on max78000-sim: ("pass", layers) when its known-answer test passes and
    the unloaded output equals golden; ("not-in-slice", why) for what bitgen's layer programs do
    not take yet; ("unsupported"/"izer-failed", why) as in classify; ("fail", why) otherwise."""
    from bitgen import golden
    from bitgen.backends.max78000 import emit, limits
    from bitgen.errors import BitgenError

    net, why = _parsed(config)
    if net is None:
        return "unsupported", why
    other = next((ly for ly in net.layers if ly.operation not in ("conv2d", "conv1d", "convtranspose2d", "linear", "passthrough")), None)
    if other is not None:  # known before izer runs
        return "not-in-slice", f"layer {other.index}: {other.operation}"
    try:
        folder = run(config, workdir / "izer", config.stem)
    except IzerFailed as e:
        return "izer-failed", str(e)
    except subprocess.TimeoutExpired:
        return "izer-failed", "timeout"
    try:
        model, logs = model_from_logs(config, folder)
        x = logs[0].input.reshape(model.input.shape)
        em = emit.emit(model, workdir / "cnn", "net", sample=x)
    except (limits.NotSupported, limits.DoesNotFit) as e:
        return "not-in-slice", str(e)
    except BitgenError as e:
        return "unsupported", str(e)
    y = golden.run(model, x.reshape((1,) + model.input.shape).astype(np.int8))[0]
    size = y.size * (4 if em.program.output.op.output_width == 32 else 1)
    try:
        r = run_firmware(build_firmware(workdir / "cnn", workdir / "fw"), read={"cnn_output": size})
    except Exception as e:  # noqa: BLE001 - reported
        return "fail", f"{type(e).__name__}: {e}"
    got = np.frombuffer(r.memory["cnn_output"], dtype="<i4" if y.dtype == np.int32 else np.int8)
    if not r.passed or not np.array_equal(got, y.reshape(-1)):
        return "fail", r.console.strip()[-200:]
    return "pass", f"{r.cnn_layers} layers"


# ------------------------------------- bitgen's registers and kernel memories against izer's
def write_checkpoint(model, path: Path) -> None:
    """An ai8x quantized checkpoint (quantize.py's layout) of a chain of max78000_layer nodes:
    ``NAME.op.weight``, ``NAME.op.bias`` (the bias byte times 2**(bits-1)), ``NAME.weight_bits``,
    ``NAME.output_shift``."""
    import collections

    import torch

    sd = collections.OrderedDict()
    for node in model.nodes:
        op, name = node.op, node.output
        if not op.has_weights:  # passthrough layers have no entries
            continue
        sd[f"{name}.output_shift"] = torch.tensor([float(op.output_shift)])
        sd[f"{name}.weight_bits"] = torch.tensor([float(op.weight_bits)])
        w = op.weight
        if op.operation == "convtranspose2d":  # PyTorch's (C, O, k, k), which izer flips and swaps back
            w = np.flip(w, axis=(2, 3)).swapaxes(0, 1)
        sd[f"{name}.op.weight"] = torch.tensor(np.ascontiguousarray(w).astype(np.float32))
        if op.bias is not None:
            sd[f"{name}.op.bias"] = torch.tensor(op.bias * 2.0 ** (op.weight_bits - 1), dtype=torch.float32)
    torch.save({"epoch": 1, "arch": model.name, "state_dict": sd}, path)


def _register_writes(text: str) -> dict[int, int]:
    """address -> value of every constant store to a CNN layer register (izer's and bitgen's
    cnn.c spell them differently)."""
    import re

    out = {}
    for m in re.finditer(r"(?:\*\(\(volatile uint32_t \*\) |REG\()0x([0-9a-fA-F]+)\) = 0x([0-9a-fA-F]+);", text):
        addr = int(m.group(1), 16)
        rel = (addr - 0x50100000) % 0x400000
        if addr >= 0x50100000 and 0x10 <= rel < 0x10 + 21 * 0x80:
            out[addr] = int(m.group(2), 16)
    return out


def _kernel_words(weights_h: str) -> dict[tuple[int, int], bytes]:
    """(processor, word) -> the 9 bytes of every nonzero kernel word an express stream loads."""
    import re

    body = weights_h[weights_h.index("KERNELS"):]
    vals = [int(v, 16) for v in re.findall(r"0x[0-9a-fA-F]+", body[body.index("{"):body.index("}")])]
    out, i = {}, 0
    while i < len(vals) and vals[i]:
        addr, n = vals[i], vals[i + 1]
        q, rel = divmod(addr - 0x50180000, 0x400000)
        proc, word = 16 * q + rel // 0x4000, (rel % 0x4000) // 4
        data = b"".join(v.to_bytes(4, "big") for v in vals[i + 2:i + 2 + n])
        for k in range(len(data) // 9):
            if any(data[9 * k:9 * k + 9]):
                out[(proc, word + k)] = data[9 * k:9 * k + 9]
        i += 2 + n
    return out


def program_vs_izer(model, workdir: Path) -> list[str]:
    """bitgen's layer program against izer's for the same network: izer runs on bitgen's
    network.yaml (bitgen's processors and offsets) with a checkpoint of the model's weights and
    the program's sample input. Every per-layer register write must be the same, except where
    in the kernel memories a layer's kernels start (MCNT: an allocation choice; the kernel
    count it gives must be the same), and each layer's kernel words, from its start in each of
    its processors, must be the same (empty list: all are)."""
    from bitgen.backends.max78000 import emit

    workdir = Path(workdir)
    em = emit.emit(model, workdir / "cnn", model.name)
    write_checkpoint(model, workdir / "ck.pth.tar")
    text = (workdir / "cnn" / "sampledata.h").read_text()
    x = np.array([int(v) for v in text[text.index("{") + 1:text.index("}")].replace(",", " ").split()])
    np.save(workdir / "sample.npy", x.reshape(model.input.shape).astype(np.int64))
    extra = ["--avg-pool-rounding"] if em.program.avg_pool_rounding else []
    folder = run(workdir / "cnn" / "network.yaml", workdir / "izer", "x", checkpoint=workdir / "ck.pth.tar",
                 sample=workdir / "sample.npy", extra=extra)
    theirs, mine = _register_writes((folder / "cnn.c").read_text()), _register_writes((workdir / "cnn" / "cnn.c").read_text())
    mcnt, oned = 12, 2
    diffs = []
    for addr in sorted(set(theirs) | set(mine)):
        q, rel = divmod(addr - 0x50100000, 0x400000)
        reg, layer = divmod(rel - 0x10, 0x80)
        a, b = theirs.get(addr, 0), mine.get(addr, 0)
        if reg == oned and a & (1 << 12):  # conv1d: bits 4..7 are the kernel start's leftover bytes (as MCNT's)
            a, b = a & ~0xF0, b & ~0xF0
        same = (a & 0xFFFF) - (a >> 16) == (b & 0xFFFF) - (b >> 16) if reg == mcnt else a == b
        if not same:
            diffs.append(f"quadrant {q} layer {layer // 4} register {reg}: izer 0x{a:08x}, bitgen 0x{b:08x}")
    kt, km = _kernel_words((folder / "weights.h").read_text()), _kernel_words((workdir / "cnn" / "weights.h").read_text())
    for p in em.program.layers:
        if not p.kernel_words:
            continue
        i = p.shape.index
        addr = 0x50100010 + mcnt * 0x80 + 4 * i
        starts = []
        for m in (theirs, mine):  # MCNT's start field, in kernel units, to words
            sad = m.get(addr, 0) >> 16
            if p.op.operation == "conv1d":  # whole kernels of k bytes and ONED's leftover bytes
                left = (m.get(0x50100010 + oned * 0x80 + 4 * i, 0) >> 4) & 0xF
                starts.append((sad // 8 * p.shape.kernel + left) // 9)
            else:
                starts.append(sad // 8 // (9 if p.shape.kernel == 1 else 1))
        lanes, c = p.shape.in_lanes, p.shape.in_shape[0]
        for proc in range(p.first_in, p.first_in + lanes):
            if p.op.weight_bits < 8 and not p.op.flatten and (p.shape.in_passes - 1) * lanes + proc - p.first_in >= c:
                # a processor with no channel in the last input pass, with 1/2/4-bit weights: izer
                # pads the missing kernel with 9 // (8 / bits) zero bytes instead of a kernel's 9
                # (kernels.py), so its later kernels shift; izer's own firmware for such a network
                # fails its known-answer test on the emulated accelerator (README), so the
                # comparison leaves these processors' words out (their registers are compared)
                continue
            for w in range(p.kernel_words):
                a, b = kt.get((proc, starts[0] + w), bytes(9)), km.get((proc, starts[1] + w), bytes(9))
                if a != b:
                    diffs.append(f"layer {i} kernel word {w} of processor {proc}: izer {a.hex()}, bitgen {b.hex()}")
    return diffs


# ------------------------------------------------------------------ the whole sweep
def classify(config: Path, workdir: Path, firmware: bool = False) -> tuple[str, str]:
    """One `arch: test` network's outcome: ("unsupported", why) when bitgen's reader refuses it,
    ("izer-failed", why) when izer itself refuses it, ("match", "") when bitgen's golden equals
    izer's per-layer log, ("mismatch", first difference) otherwise. With ``firmware``, a match
    also runs izer's cnn.c on max78000-sim: ("fw-pass", layers run) / ("fw-fail", console)."""
    from bitgen.errors import BitgenError

    net, why = _parsed(config)
    if net is None:
        return "unsupported", why
    try:
        folder = run(config, workdir, config.stem)
    except IzerFailed as e:
        return "izer-failed", str(e)
    except subprocess.TimeoutExpired:
        return "izer-failed", "timeout"
    try:
        diffs = golden_vs_izer(config, folder)
    except BitgenError as e:
        return "unsupported", str(e)
    if diffs:
        return "mismatch", diffs[0]
    if not firmware:
        return "match", ""
    try:
        r = run_firmware(build_firmware(folder, workdir / (config.stem + "_fw")))
    except Exception as e:  # noqa: BLE001 - reported, the sweep goes on
        return "fw-fail", f"{type(e).__name__}: {e}"
    if not r.passed:
        return "fw-fail", r.console.strip().splitlines()[-1] if r.console.strip() else "no output"
    return "fw-pass", f"{r.cnn_layers} accelerator layers run"


if __name__ == "__main__":  # python tests/izer_oracle.py [--firmware | --own] OUT.json: every network's outcome (resumable)
    import json
    import sys
    import tempfile

    sys.path.insert(0, str(ROOT))
    fw = "--firmware" in sys.argv
    own = "--own" in sys.argv  # bitgen's own layer programs instead of izer's firmware
    out = Path([a for a in sys.argv[1:] if not a.startswith("--")][0])
    results = json.loads(out.read_text()) if out.is_file() else {}  # resumes an interrupted sweep
    with tempfile.TemporaryDirectory() as tmp:
        for cfg in test_networks():
            if cfg.name in results and not (fw and results[cfg.name][0] in ("match", "fw-fail")):
                continue
            results[cfg.name] = own_program(cfg, Path(tmp) / cfg.stem) if own else classify(cfg, Path(tmp), fw)
            print(cfg.name, *results[cfg.name], flush=True)
            shutil.rmtree(Path(tmp) / cfg.stem, ignore_errors=True)
            out.write_text(json.dumps(results, indent=1))
    counts: dict[str, int] = {}
    for kind, _ in results.values():
        counts[kind] = counts.get(kind, 0) + 1
    print(json.dumps(counts))
