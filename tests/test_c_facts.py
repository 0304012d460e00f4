"""Facts the Python and C sides must agree on, checked against the C text and a compiler:
the weight encoding ids (and the BG_USES bits bg_config.h sets from them) and the scratch
the LUT kernel needs."""
import re
import subprocess

import numpy as np
import pytest

from bitgen import encodings, ir
from bitgen.backends.c import emit, host, kernels, targets
from bitgen.backends.c.kernels import lut
from bitgen.paths import C_RUNTIME


def _c_program(tmp_path, body: str, includes: list[str], include_dirs, flags=(), sources=()) -> list[str]:
    """Compile (with `sources`) and run a tiny C program; the words it prints."""
    src, exe = tmp_path / "facts.c", tmp_path / "facts"
    src.write_text("#include <stdio.h>\n#include <stdlib.h>\n#include <string.h>\n"
                   + "".join(f'#include "{h}"\n' for h in includes)
                   + f"int main(void)\n{{\n{body}\n    return 0;\n}}\n")
    cmd = [host.CC, "-std=c99", "-Wall", "-Werror", *flags, *(f"-I{d}" for d in include_dirs), str(src),
           *map(str, sources), "-o", str(exe)]
    r = subprocess.run(cmd, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    r = subprocess.run([str(exe)], capture_output=True, text=True, env=host.sanitizer_env())
    assert r.returncode == 0, host.sanitizer_report_line(r.stderr) or r.stderr
    return r.stdout.split()


def test_encoding_enum_matches_python():
    text = (C_RUNTIME / "bg_runtime.h").read_text()
    body = re.search(r"enum\s*{([^}]*BG_ENC_[^}]*)}", text).group(1)
    body = re.sub(r"/\*.*?\*/", "", body, flags=re.S)
    c_enum = [(m.group(1), int(m.group(2))) for m in re.finditer(r"BG_ENC_(\w+)\s*=\s*(\d+)", body)]
    assert len(c_enum) == body.count("BG_ENC_")  # every enumerator has an explicit value
    assert c_enum == [(e.c_id, i) for i, e in enumerate(encodings.ENCODINGS.values())]


@pytest.mark.parametrize("enc", list(encodings.ENCODINGS))
def test_config_header_sets_the_encodings_own_bit(tmp_path, enc):
    """bg_config.h of a model using one encoding enables BG_USES of that C enumerator only."""
    values = np.array(encodings.get(enc).values)
    model = ir.Model(ir.InputSpec((4,)), [ir.Linear(weight=np.resize(values, (2, 4)), encoding=enc)])
    em = emit.emit(model, tmp_path / "c", name="one")
    ids = [e.c_id for e in encodings.ENCODINGS.values()]
    out = _c_program(tmp_path, "".join(f'    printf("%u\\n", (unsigned)BG_USES(BG_ENC_{c}));\n' for c in ids),
                     ["bg_runtime.h"], [em.outdir])
    assert out == ["1" if c == encodings.get(enc).c_id else "0" for c in ids]


def test_lut_scratch_formula_matches_python(tmp_path):
    """BG_LUT_SCRATCH_BYTES (bg_linear_lut.h) against the scratch the LUT choice reserves."""
    chunks = [1, 2, 3, 7, 8, 16, 17, 100]
    python = []
    for chunk in chunks:
        t_in = ir.TensorType((chunk,), "int8", 0, 127)
        layer = ir.Linear(weight=np.ones((8, chunk), dtype=np.int64), encoding="4bitsym")
        choice = kernels.choose(layer, t_in, ir.infer_type(layer, t_in), targets.get("rv32ec"), first=False,
                                lut_chunk=chunk)
        assert choice.kernel == "lut" and choice.scratch == lut.scratch_bytes(chunk)
        python.append(choice.scratch)
    (tmp_path / "cfg").mkdir()
    (tmp_path / "cfg" / "bg_config.h").write_text("")  # the runtime's default: every encoding
    out = _c_program(tmp_path, "".join(f'    printf("%u\\n", (unsigned)BG_LUT_SCRATCH_BYTES({c}));\n' for c in chunks),
                     ["bg_linear_lut.h"], [C_RUNTIME, tmp_path / "cfg"])
    assert [int(v) for v in out] == python


@pytest.mark.parametrize("enc,n_in,n_out", [("4bitsym", 5, 11), ("4bitsym", 19, 6), ("2bitsym", 13, 9),
                                            ("binary", 40, 11), ("8bit", 9, 16), ("fp130", 30, 2)])
def test_lut_kernel_stays_within_its_scratch(tmp_path, enc, n_in, n_out):
    """The kernel run on a heap scratch of exactly BG_LUT_SCRATCH_BYTES(chunk) bytes and an
    output of exactly the rows it writes, under ASan, every input non-zero (every column
    builds a table): no access past either."""
    why = host.sanitizer_support()
    if why:
        pytest.skip(why)
    rng = np.random.default_rng(n_in)
    weight = rng.choice(np.array(encodings.get(enc).values), (n_out, n_in))
    model = ir.Model(ir.InputSpec((n_in,)), [ir.Linear(weight=weight, encoding=enc)])
    em = emit.emit(model, tmp_path / "c", name="lut", kernels="rv32ec")
    assert em.report["layers"][0]["kernel"] == "lut"
    body = f"""
    const bg_lut_fc_t *p = &lut_lut0;
    int16_t *scratch = malloc(BG_LUT_SCRATCH_BYTES(p->chunk));
    /* a tail block of 2 or 4 rows, else whole blocks of 8 */
    uint32_t rows = p->tail_rows ? p->n_out / 8u * 8u + p->tail_rows : (p->n_out + 7u) / 8u * 8u;
    int32_t *y = malloc(4u * rows);
    int8_t x[{n_in}];
    uint32_t i;
    for (i = 0; i < {n_in}u; i++)
        x[i] = (int8_t)(i % 2 ? 127 - i : -128 + i);
    bg_linear_lut_s8(x, y, p, scratch);
    printf("%u\\n", (unsigned)p->chunk);
    free(scratch);
    free(y);"""
    out = _c_program(tmp_path, body, ["lut.c"], [em.outdir], host.SANITIZE_FLAGS,
                     [em.outdir / "bg_linear_lut.c", em.outdir / "bg_elementwise.c"])
    assert 1 <= int(out[0]) <= targets.get("rv32ec").lut_chunk
