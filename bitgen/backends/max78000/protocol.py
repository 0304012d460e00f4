"""The layer program behind bitgen's wire protocol: the model as ``bg_protocol.c`` calls it
(``NAME.h`` / ``NAME.c``, the same interface the C back end emits) on the MAX78000's CNN
accelerator instead of the Cortex-M4.

``NAME_init()`` (called once at boot by the protocol firmware, templates/firmware.c.j2) powers and
clocks the accelerator, loads the kernel and bias memories and writes every layer's registers;
``NAME_run(input, output)`` writes the int8 input into the first layer's data memory, starts
the layer program, waits for its done flag, reads the last layer's output back (CHW) and
returns the index of its first maximum, as every bitgen model does. The layer program itself is
:mod:`emit`'s ``cnn.c``, ``cnn.h`` and ``weights.h`` (its known-answer test, ``main.c``, is
not part of this image).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ... import ir, reports
from . import emit as cnn_emit
from .handover import CORTEX_KERNELS, TARGET, split
from .limits import NotSupported
PROGRAM_FILES = ("cnn.h", "cnn.c", "weights.h")  # what the image compiles of the layer program
RESERVED = ("cnn", "weights")  # names the program's own files take


@dataclass
class Emitted:
    """What firmware.build needs of an emitted model (the fields of backends/c/emit.Emitted it reads)."""

    name: str
    outdir: Path
    files: list[Path]
    sources: list[Path]
    report: dict[str, Any]


def emit(model: ir.Model, outdir: Path, name: str, cortex_kernels: str = CORTEX_KERNELS) -> Emitted:
    """Write the layer program and the protocol's view of it into ``outdir``. Layers after the
    accelerator's part (handover.py) are C for the Cortex-M4 (``NAME_m4.c``, kernel set
    ``cortex_kernels``), which reads the accelerator's output."""
    if name in RESERVED:
        raise NotSupported(f"{TARGET}: the C name '{name}' is the layer program's own ({name}.c, {name}.h): "
                           "give the model another name (bitgen build --name)")
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    part = split(model)
    em = cnn_emit.emit(part.accelerator, outdir, name)
    prog = em.program
    for f in em.files:  # the known-answer test, its data and the JSON stay out of the image's sources
        if f.name not in PROGRAM_FILES and f.name != "network.yaml":
            f.unlink()
    out = model.validate()[-1]
    dtype = out.dtype
    tail = part.emit_cortex(outdir, name, cortex_kernels)
    NAME = name.upper()
    (outdir / f"{name}.h").write_text(f"""/* {name}.h: the layer program of a MAX78000 CNN accelerator network behind bitgen's
 * wire protocol, written by bitgen from model {model.digest()[:16]}. Do not edit. */
#ifndef BG_CNN_PROGRAM_{NAME}_H
#define BG_CNN_PROGRAM_{NAME}_H
#include <stdint.h>

#define {NAME}_INPUT_SIZE {model.input.size} /* int8 values, shape {'x'.join(map(str, model.input.shape))} */
#define {NAME}_OUTPUT_SIZE {math.prod(out.shape)} /* {dtype} values, shape {'x'.join(map(str, out.shape))} */
#define {NAME}_OUTPUT_IS_INT8 {1 if dtype == "int8" else 0}
typedef {dtype}_t {name}_output_t;

/* SHA-256 of the model's integer content, as hex: the identity a board reports. */
extern const char {name}_model_hash[65];

/* Once, before the first run: power the accelerator, load its memories and registers. */
void {name}_init(void);
/* One inference on the accelerator: the index of the first maximum output. */
int {name}_run(const int8_t input[{NAME}_INPUT_SIZE], {name}_output_t output[{NAME}_OUTPUT_SIZE]);
#endif
""")
    handed = math.prod(part.accelerator.validate()[-1].shape)
    (outdir / f"{name}.c").write_text(f"""/* {name}.c: the layer program (cnn.c) behind bitgen's wire protocol, written by bitgen. */
#include "{name}.h"
#include "cnn.h"
{f'#include "{name}_m4.h"' if tail else ""}

const char {name}_model_hash[65] = "{model.digest()}";

void {name}_init(void)
{{
  cnn_enable();
  cnn_init();
  cnn_load_weights();
  cnn_load_bias();
  cnn_configure();
}}

{_run_body(name, NAME, handed) if tail else _run_alone(name, NAME)}""")
    files = [outdir / n for n in (*PROGRAM_FILES, f"{name}.h", f"{name}.c")] + (tail.files if tail else [])
    stream_bytes = 4 * len(cnn_emit.kernel_stream(prog))
    report = reports.header("emit") | {
        "target": TARGET,
        "name": name,
        "model_hash": model.digest(),
        "input": {"shape": list(model.input.shape), "dtype": "int8"},
        "output": {"shape": list(out.shape), "dtype": dtype},
        # in the Cortex-M4's memories: the kernel stream and the bias bytes in flash; no arena (the
        # activations live in the accelerator's data memory)
        "weight_bytes": stream_bytes + sum(prog.bias_used) + (tail.report["weight_bytes"] if tail else 0),
        # the Cortex-M4's arena (its part of the model) and the tensor handed over to it
        "arena_bytes": tail.report["arena_bytes"] + handed if tail else 0,
        "arena_peak": None,
        "max_arena": None,
        "layers": tail.report["layers"] if tail else [],
        "init": True,  # firmware.c calls NAME_init() at boot
        "accelerator": em.report,
        "handover": part.to_dict(name, cortex_kernels),
    }
    sources = [outdir / "cnn.c", outdir / f"{name}.c"] + (tail.sources if tail else [])
    return Emitted(name, outdir, files, sources, report)


def _run_alone(name: str, NAME: str) -> str:
    return f"""int {name}_run(const int8_t input[{NAME}_INPUT_SIZE], {name}_output_t output[{NAME}_OUTPUT_SIZE])
{{
  int i, best = 0;
  cnn_load_input(input);
  cnn_start();
  cnn_wait();
  cnn_unload(output);
  for (i = 1; i < {NAME}_OUTPUT_SIZE; i++)
    if (output[i] > output[best])
      best = i;
  return best;
}}
"""


def _run_body(name: str, NAME: str, handed: int) -> str:
    """The accelerator's part, its output unloaded into SRAM, then the Cortex-M4's part on it."""
    return f"""/* the accelerator's output, handed over to the Cortex-M4's part of the model */
static cnn_output_t handover[{handed}];

int {name}_run(const int8_t input[{NAME}_INPUT_SIZE], {name}_output_t output[{NAME}_OUTPUT_SIZE])
{{
  cnn_load_input(input);
  cnn_start();
  cnn_wait();
  cnn_unload(handover);
  return {name}_m4_run(handover, output);
}}
"""

