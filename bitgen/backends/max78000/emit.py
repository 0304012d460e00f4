"""The layer program as C, shaped like the output of ADI's synthesis tool (izer): ``cnn.h``,
``cnn.c`` (cnn_enable / cnn_init / cnn_load_weights / cnn_load_bias / cnn_configure /
cnn_load_input / cnn_start / cnn_wait / cnn_unload / cnn_disable), ``weights.h`` (the kernel
stream and the bias bytes), ``sampledata.h`` / ``sampleoutput.h`` (a sample input and the output
bitgen's golden model computes for it), ``main.c`` (the known-answer test: it runs the sample on
the accelerator, compares the output words in data memory and the unloaded output with golden,
and prints ``*** PASS ***`` or ``*** FAIL ***``), ``network.yaml`` (the same network in izer's
YAML, to cross-check with ADI's tool) and ``NAME.json`` (the allocation, every register value
and the legalization report).

The C needs only ``<stdint.h>`` (and ``printf`` in main.c); the registers are written by address
(``../shared/reference/max78000.md`` section 4; GCFR at 0x40005800, GCR at 0x40000000).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from ... import golden, ir
from .allocate import REGS, Program, plan, summary

CNN = 0x50100000  # quadrant 0's control block
QUAD = 0x400000
DATA = 0x50400000
MRAM = 0x50180000
BIAS = 0x50108000
GCFR = 0x40005800
GCR_PCLKDIV, GCR_PCLKDIS0 = 0x40000018, 0x40000024
CTL_CLOCK, CTL_EXPRESS, CTL_AVG_ROUND = 1 << 3, 1 << 20, 1 << 13
FILES = ("cnn.h", "cnn.c", "weights.h", "sampledata.h", "sampleoutput.h", "main.c", "network.yaml")


@dataclass
class Emitted:
    outdir: Path
    files: list[Path]
    program: Program
    report: dict[str, Any]


def data_address(instance: int, word: int) -> int:
    """Address of word ``word`` of data-memory instance ``instance`` (0..15)."""
    return DATA + (instance // 4) * QUAD + (instance % 4) * 0x8000 + 4 * word


def output_words(prog: Program, y: np.ndarray) -> list[tuple[int, int, list[int]]]:
    """Where the output ``y`` (O, H, W) lies in data memory: (address, byte mask, words) per
    instance, as the last layer writes it."""
    last = prog.output
    o = y.shape[0]
    n = y.shape[1] * y.shape[2]
    passes, span = last.shape.out_passes, last.shape.out_lanes
    if passes > 1:  # several words a pixel: channel c in pass c // span (unused lanes of the last pass: 0)
        full = np.zeros((passes * span, n), dtype=np.int64)
        full[:o] = y.reshape(o, n)
        if last.shape.out_count < passes * span:  # a flatten layer leaves those lanes unwritten
            return _output_words_each_pass(last, full.reshape(passes, span, n), o)
        return _output_words_per_pass(last, full.reshape(passes, span, n))
    flat = y.reshape(o, n).astype(np.int64)
    wide = last.op.output_width == 32
    out = []
    lanes = range(last.first_out, last.first_out + o)
    for inst in sorted({lane // 4 for lane in lanes}):
        chans = [lane - last.first_out for lane in lanes if lane // 4 == inst]
        if wide:
            words = np.zeros((n, 4), dtype=np.int64)
            for ch in chans:
                words[:, (last.first_out + ch) % 4] = flat[ch] & 0xFFFFFFFF
            used = sorted((last.first_out + ch) % 4 for ch in chans)
            if len(used) == 4:
                out.append((data_address(inst, last.out_offset), 0xFFFFFFFF, [int(v) for v in words.reshape(-1)]))
                continue
            # a channel per word, four words per pixel: the used words of each pixel
            for i in range(n):
                addr = data_address(inst, last.out_offset + 4 * i + used[0])
                out.append((addr, 0xFFFFFFFF, [int(v) for v in words[i, used[0]:used[-1] + 1]]))
        else:
            words = np.zeros(n, dtype=np.int64)
            mask = 0
            for ch in chans:
                b = (last.first_out + ch) % 4
                words |= (flat[ch] & 0xFF) << (8 * b)
                mask |= 0xFF << (8 * b)
            out.append((data_address(inst, last.out_offset), mask, [int(v) for v in words]))
    return out


def _output_words_per_pass(last, full: np.ndarray) -> list[tuple[int, int, list[int]]]:
    """output_words of a multi-pass output ``full`` (passes, lanes, pixels): the words of every
    pass interleaved per pixel, each instance's 4 lanes whole (the last pass's unused lanes
    hold 0: zero kernels, zero bias)."""
    passes, span, n = full.shape
    wide = last.op.output_width == 32
    out = []
    for inst in sorted({(last.first_out + ch) // 4 for ch in range(span)}):
        words = np.zeros((n, passes, 4 if wide else 1), dtype=np.int64)
        mask = 0
        for lane in range(span):
            if (last.first_out + lane) // 4 != inst:
                continue
            b = (last.first_out + lane) % 4
            if wide:
                words[:, :, b] = full[:, lane].T & 0xFFFFFFFF
            else:
                words[:, :, 0] |= (full[:, lane].T & 0xFF) << (8 * b)
                mask |= 0xFF << (8 * b)
        out.append((data_address(inst, last.out_offset), 0xFFFFFFFF if wide else mask,
                    [int(v) for v in words.reshape(-1)]))
    return out


def _output_words_each_pass(last, full: np.ndarray, o: int) -> list[tuple[int, int, list[int]]]:
    """output_words of a multi-pass output of one pixel (a flatten layer) whose last pass is
    partly used: one entry per pass and instance, masked to the channels written."""
    passes, span, _ = full.shape
    wide = last.op.output_width == 32
    out = []
    for e in range(passes):
        lanes = [lane for lane in range(span) if e * span + lane < o]
        for inst in sorted({(last.first_out + lane) // 4 for lane in lanes}):
            here = [lane for lane in lanes if (last.first_out + lane) // 4 == inst]
            if wide:
                for lane in here:
                    b = (last.first_out + lane) % 4
                    out.append((data_address(inst, last.out_offset + 4 * e + b), 0xFFFFFFFF,
                                [int(full[e, lane, 0]) & 0xFFFFFFFF]))
                continue
            word = mask = 0
            for lane in here:
                b = (last.first_out + lane) % 4
                word |= (int(full[e, lane, 0]) & 0xFF) << (8 * b)
                mask |= 0xFF << (8 * b)
            out.append((data_address(inst, last.out_offset + e), mask, [word]))
    return out


def kernel_stream(prog: Program) -> list[int]:
    """izer's express-load format: per processor with kernels, the encoded
    address ``(phys & ~0x3FFF) | ((phys & 0x3FFF) >> 2)``, the count of 32-bit words, then the
    72-bit words' bytes concatenated, first byte most significant; a 0 ends the list."""
    out: list[int] = []
    for p in range(64):
        n = int(prog.kernel_used[p])
        if not n:
            continue
        # every word up to the last one used (words no layer uses are written as zeros)
        phys = MRAM + (p // 16) * QUAD + (p % 16) * 0x4000
        data = prog.kernels[p, :n].reshape(-1).tobytes()
        data += bytes(-len(data) % 4)
        words = [int.from_bytes(data[i:i + 4], "big") for i in range(0, len(data), 4)]
        out += [(phys & ~0x3FFF) | ((phys & 0x3FFF) >> 2), len(words), *words]
    return out + [0]


def _array(values: list[int], per_line: int = 8, fmt: str = "0x{:08x}") -> str:
    lines = []
    for i in range(0, len(values), per_line):
        lines.append("  " + ", ".join(fmt.format(v) for v in values[i:i + per_line]) + ",")
    return "\n".join(lines)


def _reg_address(q: int, reg: str, layer: int) -> int:
    return CNN + q * QUAD + 0x10 + REGS[reg] * 0x80 + layer * 4


def emit(model: ir.Model, outdir: Path, name: str, sample: np.ndarray | None = None, seed: int = 0) -> Emitted:
    """Write the layer program of ``model`` into ``outdir``; ``sample`` (the int8 input, shape of
    the model input) defaults to a seeded random one."""
    prog = plan(model)
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    shape = model.input.shape
    if sample is None:
        sample = np.random.default_rng(seed).integers(-128, 128, shape)
    x = np.asarray(sample).reshape(shape).astype(np.int8)
    y = golden.run(model, x[None])[0].reshape(prog.output.shape.out_shape)  # 1-D (O, L): L rows of one column
    texts = {
        "cnn.h": _header(prog, name),
        "cnn.c": _source(prog, name),
        "weights.h": _weights(prog),
        "sampledata.h": _sampledata(x),
        "sampleoutput.h": _sampleoutput(prog, y),
        "main.c": _main(prog, name),
        "network.yaml": network_yaml(prog, model),
    }
    files = []
    for fname, text in texts.items():
        (outdir / fname).write_text(text)
        files.append(outdir / fname)
    report = {"target": "max78000-cnn", "name": name, "model_hash": model.digest(), "files": list(texts),
              "kernel_stream_words": len(kernel_stream(prog)), **summary(prog)}
    (outdir / f"{name}.json").write_text(json.dumps(report, indent=1) + "\n")
    files.append(outdir / f"{name}.json")
    return Emitted(outdir, files, prog, report)


# ---------------------------------------------------------------------------------- the files
def _header(prog: Program, name: str) -> str:
    last = prog.output
    o, h, w = last.shape.out_shape
    c, ih, iw = prog.input_shape
    otype = "int32_t" if last.op.output_width == 32 else "int8_t"
    return f"""/* {name}: the layer program of a MAX78000 CNN accelerator network, written by bitgen. */
#ifndef BG_CNN_H
#define BG_CNN_H
#include <stdint.h>

#define CNN_INPUT_CHANNELS {c}
#define CNN_INPUT_SIZE {c * ih * iw} /* int8, CHW ({c}, {ih}, {iw}) */
#define CNN_OUTPUT_CHANNELS {o}
#define CNN_OUTPUT_SIZE {o * h * w} /* {otype}, CHW ({o}, {h}, {w}) */
typedef {otype} cnn_output_t;

void cnn_enable(void);      /* power the quadrants, clock the accelerator */
void cnn_init(void);        /* global registers (and express kernel loading) */
void cnn_load_weights(void);
void cnn_load_bias(void);
void cnn_configure(void);   /* every layer's registers */
void cnn_load_input(const int8_t *chw);
void cnn_start(void);
void cnn_wait(void);        /* until the accelerator is done (CTL bit 12); clears the flag */
void cnn_unload(cnn_output_t *chw);
void cnn_disable(void);
#endif
"""


def _source(prog: Program, name: str) -> str:
    quads = prog.quadrants
    qmask = sum(1 << q for q in quads)
    ctl = CTL_CLOCK | CTL_EXPRESS | (CTL_AVG_ROUND if prog.avg_pool_rounding else 0)
    L: list[str] = []
    L.append(f"/* {name}: the layer program of a MAX78000 CNN accelerator network, written by bitgen.")
    L.append(f" * {len(prog.layers)} layers on quadrants {quads}; see {name}.json for the allocation. */")
    L.append("#include <stdint.h>\n#include \"cnn.h\"\n#include \"weights.h\"\n")
    L.append("#define REG(a) (*(volatile uint32_t *)(a))\n")
    L.append("static const uint32_t kernels[] = KERNELS;\n")
    L.append("void cnn_enable(void)\n{")
    L.append(f"  REG(0x{GCFR + 0xC:08x}) = 0xf; /* GCFR: hold the quadrants in reset */")
    L.append(f"  REG(0x{GCFR + 0x4:08x}) = 0x{qmask:x}; /* kernel memories on */")
    L.append(f"  REG(0x{GCFR:08x}) = 0x{qmask:x}; /* power */")
    L.append(f"  REG(0x{GCFR + 0x8:08x}) = 0x{~qmask & 0xF:x}; /* isolate the unused quadrants */")
    L.append(f"  REG(0x{GCFR + 0xC:08x}) = 0x0; /* out of reset */")
    L.append(f"  REG(0x{GCR_PCLKDIV:08x}) = (REG(0x{GCR_PCLKDIV:08x}) & ~(0x1fu << 14)) | (0x4u << 14); "
             "/* CNN clock: PCLK / 1 */")
    L.append(f"  REG(0x{GCR_PCLKDIS0:08x}) &= ~(1u << 25); /* CNN clock on */\n}}\n")
    L.append("void cnn_init(void)\n{")
    L.append("  REG(0x50001000) = 0; /* AON control */")
    for q in quads:
        b = CNN + q * QUAD
        L.append(f"  REG(0x{b:08x}) = 0x{ctl:08x}; /* quadrant {q}: stopped, clocks on, express kernel loading */")
        L.append(f"  REG(0x{b + 4:08x}) = 0x0000040e; /* SRAM control (izer's value) */")
        L.append(f"  REG(0x{b + 8:08x}) = {len(prog.layers) - 1}; /* last layer */")
    L.append("}\n")
    L.append("void cnn_load_weights(void)\n{")
    L.append("  const uint32_t *p = kernels;\n  uint32_t addr;")
    L.append("  while ((addr = *p++) != 0) {")
    L.append("    volatile uint32_t *dst = (volatile uint32_t *)addr;")
    L.append("    uint32_t n = *p++;")
    L.append("    *(volatile uint8_t *)(addr | 1) = 0x01; /* set the kernel word address */")
    L.append("    while (n--)\n      *dst++ = *p++;\n  }\n}\n")
    L.append("void cnn_load_bias(void)\n{")
    if any(prog.bias_used):  # (a model without a bias loads none)
        L.append("  uint32_t i;")
    for q in range(4):
        if prog.bias_used[q]:
            L.append(f"  for (i = 0; i < {prog.bias_used[q]}; i++) /* quadrant {q}: one byte per word */")
            L.append(f"    REG(0x{BIAS + q * QUAD:08x} + 4 * i) = BIAS_{q}[i];")
    L.append("}\n")
    L.append("void cnn_configure(void)\n{")
    for p in prog.layers:
        i = p.shape.index
        op = p.op
        L.append(f"  /* layer {i} ({p.shape.name}): {op.operation} {p.shape.in_shape} -> {p.shape.out_shape}, "
                 f"processors 0x{p.processors:016x}, output lanes 0x{p.output_processors:016x} */")
        for q, regs in p.regs.items():
            for reg in REGS:
                if reg in regs:
                    L.append(f"  REG(0x{_reg_address(q, reg, i):08x}) = 0x{regs[reg]:08x}; /* q{q} {reg} */")
    L.append("}\n")
    c, h, w = prog.input_shape
    n = h * w
    L.append("void cnn_load_input(const int8_t *chw)\n{")
    L.append("  uint32_t i;")
    for pl in prog.inputs:  # every place a layer reads the input from (operands interleaved: a word in `stride`)
        b = pl.block
        c0, count = pl.channels
        span, step = b.lanes, b.stride * b.passes  # channel c: lane c % span, pass (word of the pixel) c // span
        for e in range(b.passes):
            here = [ch for ch in range(count) if ch // span == e]
            for inst in sorted({(b.first_lane + ch % span) // 4 for ch in here}):
                chans = [ch for ch in here if (b.first_lane + ch % span) // 4 == inst]
                parts = " | ".join(f"(uint32_t)(uint8_t)chw[{(c0 + ch) * n} + i] << "
                                   f"{8 * ((b.first_lane + ch % span) % 4)}" for ch in chans)
                L.append(f"  for (i = 0; i < {n}; i++) /* channels {c0 + chans[0]}..{c0 + chans[-1]}: instance {inst}"
                         + (f", operand {pl.slot} of {b.stride}" if b.stride > 1 else "")
                         + (f", pass {e} of {b.passes}" if b.passes > 1 else "") + " */")
                L.append(f"    REG(0x{data_address(inst, b.offset + pl.slot + e):08x} + {4 * step} * i) = {parts};")
    L.append("}\n")
    L.append("void cnn_start(void)\n{")
    for q in quads:
        if q:
            L.append(f"  REG(0x{CNN + q * QUAD:08x}) = 0x{ctl | 1 << 11 | 1:08x}; /* enable quadrant {q} */")
    L.append(f"  REG(0x{CNN:08x}) = 0x{ctl | 1 << 11:08x};")
    L.append(f"  REG(0x{CNN:08x}) = 0x{ctl | 1:08x}; /* master enable: quadrant 0 starts the layers */\n}}\n")
    L.append("void cnn_wait(void)\n{")
    L.append(f"  while (!(REG(0x{CNN:08x}) & (1u << 12)))\n    ;")
    for q in quads:
        L.append(f"  REG(0x{CNN + q * QUAD:08x}) &= ~((1u << 12) | 1u);")
    L.append("}\n")
    last = prog.output
    o, oh, ow = last.shape.out_shape
    n = oh * ow
    wide = last.op.output_width == 32
    passes, span = last.shape.out_passes, last.shape.out_lanes
    L.append("void cnn_unload(cnn_output_t *chw)\n{")
    L.append("  uint32_t i;")
    for e in range(passes):  # channel c: lane c % span, word c // span of the pixel
        here = [ch for ch in range(o) if ch // span == e]
        for inst in sorted({(last.first_out + ch % span) // 4 for ch in here}):
            chans = [ch for ch in here if (last.first_out + ch % span) // 4 == inst]
            word = data_address(inst, last.out_offset + e * (4 if wide else 1))
            L.append(f"  for (i = 0; i < {n}; i++) {{ /* channels {chans[0]}..{chans[-1]}: instance {inst}"
                     + (f", pass {e} of {passes}" if passes > 1 else "") + " */")
            if wide:
                for ch in chans:
                    lane = (last.first_out + ch % span) % 4
                    L.append(f"    chw[{ch * n} + i] = (int32_t)REG(0x{word:08x} + {16 * passes} * i + {4 * lane});")
            else:
                L.append(f"    uint32_t v = REG(0x{word:08x} + {4 * passes} * i);")
                for ch in chans:
                    lane = (last.first_out + ch % span) % 4
                    L.append(f"    chw[{ch * n} + i] = (int8_t)(v >> {8 * lane});")
            L.append("  }")
    L.append("}\n")
    L.append("void cnn_disable(void)\n{")
    L.append(f"  REG(0x{GCR_PCLKDIS0:08x}) |= 1u << 25; /* CNN clock off */")
    L.append(f"  REG(0x{GCFR + 0xC:08x}) = 0xf;\n  REG(0x{GCFR + 0x8:08x}) = 0xf;")
    L.append(f"  REG(0x{GCFR:08x}) = 0x0;\n  REG(0x{GCFR + 0x4:08x}) = 0x0;\n  REG(0x{GCFR + 0xC:08x}) = 0x0;\n}}")
    return "\n".join(L) + "\n"


def _weights(prog: Program) -> str:
    stream = kernel_stream(prog)
    out = ["/* The kernel memories' contents (express-load stream) and the bias bytes, written by bitgen. */",
           "#ifndef BG_WEIGHTS_H", "#define BG_WEIGHTS_H", "#include <stdint.h>", "",
           "#define KERNELS { \\", _array(stream).replace("\n", " \\\n") + " \\", "}", ""]
    for q in range(4):
        if prog.bias_used[q]:
            vals = [int(v) for v in prog.bias[q, :prog.bias_used[q]]]
            out += [f"static const uint8_t BIAS_{q}[{len(vals)}] = {{", _array(vals, 16, "0x{:02x}"), "};", ""]
    out.append("#endif")
    return "\n".join(out) + "\n"


def _sampledata(x: np.ndarray) -> str:
    vals = [int(v) for v in x.reshape(-1)]
    return ("/* The known-answer test's input (int8, CHW), written by bitgen. */\n#include <stdint.h>\n"
            f"static const int8_t SAMPLE_INPUT[{len(vals)}] = {{\n" + _array(vals, 16, "{:d}") + "\n};\n")


def _sampleoutput(prog: Program, y: np.ndarray) -> str:
    table: list[int] = []
    for addr, mask, words in output_words(prog, y):
        table += [addr, mask, len(words), *[w & 0xFFFFFFFF for w in words]]
    vals = [int(v) for v in y.reshape(-1)]
    ctype = "int32_t" if prog.output.op.output_width == 32 else "int8_t"
    return ("/* The known-answer test's expected output, computed by bitgen's golden model: the words the\n"
            " * last layer leaves in data memory ({address, byte mask, count, words...}..., 0) and the\n"
            " * unloaded output (CHW). */\n#include <stdint.h>\n"
            f"static const uint32_t SAMPLE_OUTPUT[] = {{\n{_array(table + [0])}\n}};\n"
            f"static const {ctype} SAMPLE_OUTPUT_CHW[{len(vals)}] = {{\n{_array(vals, 16, '{:d}')}\n}};\n")


def _main(prog: Program, name: str) -> str:
    return f"""/* {name}: known-answer test of the layer program, written by bitgen. It runs the sample
 * input on the accelerator, compares the output words in data memory with sampleoutput.h and
 * the unloaded output with golden's, and prints the verdict. */
#include <stdint.h>
#include <stdio.h>
#include "cnn.h"
#include "sampledata.h"
#include "sampleoutput.h"

cnn_output_t cnn_output[CNN_OUTPUT_SIZE];
volatile int32_t cnn_kat_errors = -1;

static int32_t check_words(void)
{{
  const uint32_t *p = SAMPLE_OUTPUT;
  int32_t errors = 0;
  uint32_t addr;
  while ((addr = *p++) != 0) {{
    uint32_t mask = *p++, n = *p++;
    volatile uint32_t *word = (volatile uint32_t *)addr;
    while (n--)
      errors += (*word++ & mask) != *p++;
  }}
  return errors;
}}

int main(void)
{{
  int32_t errors, i;
  cnn_enable();
  cnn_init();
  cnn_load_weights();
  cnn_load_bias();
  cnn_configure();
  cnn_load_input(SAMPLE_INPUT);
  cnn_start();
  cnn_wait();
  errors = check_words();
  cnn_unload(cnn_output);
  for (i = 0; i < CNN_OUTPUT_SIZE; i++)
    errors += cnn_output[i] != SAMPLE_OUTPUT_CHW[i];
  cnn_kat_errors = errors;
  printf(errors ? "\\n*** FAIL ***\\n" : "\\n*** PASS ***\\n");
  cnn_disable();
  for (;;) {{
  }}
}}
"""


def network_yaml(prog: Program, model: ir.Model) -> str:
    """The network in izer's YAML (reference section 3) with bitgen's allocation: processors,
    output offsets and everything the layers compute."""
    layers = []
    for p in prog.layers:
        op = p.op
        d: dict[str, Any] = {"processors": _Hex(p.processors, 16), "output_processors": _Hex(p.output_processors, 16),
                             "in_offset": _Hex(4 * p.in_offset, 4), "out_offset": _Hex(4 * p.out_offset, 4),
                             "operation": op.operation}
        if op.operands > 1 and not op.has_weights:
            d["operation"] = op.eltwise
        if op.operation in ("conv2d", "convtranspose2d"):
            k = p.shape.kernel
            d["kernel_size"] = f"{k}x{k}"
        elif op.operation == "conv1d":
            d["kernel_size"] = p.shape.kernel
        if op.operands > 1:
            if op.has_weights:
                d["eltwise"] = op.eltwise
            d["operands"] = op.operands
            if not op.pool_first and op.pool_size != (1, 1):  # (a 1x1 pool, a subsampling, commutes: izer
                d["pool_first"] = False                            # refuses the key without a real pool)
        d["pad"] = op.padding if op.operation == "convtranspose2d" else p.shape.pad  # (PyTorch's padding)
        if op.pooling:
            key = "max_pool" if op.pool == "max" else "avg_pool"
            one_d = op.operation == "conv1d"
            d[key] = op.pool_size[0] if one_d else _Flow(op.pool_size)
            d["pool_stride"] = op.pool_stride[0] if one_d else _Flow(op.pool_stride)
        if op.has_weights:
            d["activate"] = {"none": "None", "relu": "ReLU", "abs": "Abs"}[op.activation]
            d["quantization"] = op.weight_bits
            d["output_shift"] = op.output_shift
        if op.flatten:
            d["flatten"] = True
        if op.output_width == 32:
            d["output_width"] = 32
        if p.write_gap:
            d["write_gap"] = p.write_gap
        i = p.shape.index
        # where izer's default (the layer before; layer 0: the input, its operands packed) is not it
        if list(p.sources) != [i - 1] and not (i == 0 and (op.operands == 1 or op.packed_operands)):
            d["in_sequences"] = _Flow(p.sources)
        if i == 0:
            d["data_format"] = "HWC"
        d["name"] = p.shape.name
        layers.append(d)
    doc = {"arch": model.name or "bitgen", "dataset": model.name or "bitgen", "layers": layers}
    head = ("# The network of this layer program in izer's YAML (ai8x-synthesis), written by bitgen"
            + (" (avg_pool rounding: run izer with --avg-pool-rounding)" if prog.avg_pool_rounding else "") + "\n")
    return head + "---\n" + yaml.dump(doc, Dumper=_Dumper, sort_keys=False)


class _Hex(int):
    """An integer written in hex (processor maps and offsets, as izer's YAMLs write them)."""

    def __new__(cls, value: int, digits: int):
        self = super().__new__(cls, value)
        self.digits = digits
        return self


class _Flow(tuple):
    pass


class _Dumper(yaml.SafeDumper):
    pass


_Dumper.add_representer(_Hex, lambda d, v: d.represent_scalar("tag:yaml.org,2002:int", f"0x{int(v):0{v.digits}x}"))
_Dumper.add_representer(_Flow, lambda d, v: d.represent_sequence("tag:yaml.org,2002:seq", list(v), flow_style=True))
