"""Where a model leaves the MAX78000's CNN accelerator for its Cortex-M4.

The accelerator runs the model's leading ``max78000_layer`` nodes; the first node it has no
such layer for (a bitgen op: a ShiftNorm, a wider classifier, ...; or an accelerator layer
that bitgen's layer programs do not take yet, as a ConvTranspose2d with pooling) and everything after it run on the Cortex-M4, as
C from bitgen's C back end (accelerator layers in that part are lowered to ordinary ops,
backends/c/lower_max78000.py). One tensor crosses: the accelerator's last output, which the
firmware unloads from the accelerator's data memory into SRAM and hands to the C as its input.
:func:`split` says where, and refuses a model that would need another tensor to cross, in one
line naming it.
"""
from __future__ import annotations

from dataclasses import dataclass

from pathlib import Path

from ... import ir
from ...ops.max78000_layer import Max78000Layer
from ..c import emit as c_emit
from ..c import lower_max78000
from . import limits
from .limits import NotSupported

TARGET = "max78000-cnn"
CORTEX_KERNELS = "cortex-m4"  # the C kernel set of the Cortex-M4's part, where no board says otherwise


@dataclass
class Split:
    accelerator: ir.Model  # the leading accelerator layers
    cortex: ir.Model | None  # the rest, reading the accelerator's output as its input; None: no rest
    tensor: str  # the tensor handed over (the accelerator part's output)
    moved: str | None = None  # why accelerator layers run on the Cortex-M4 (the programs' refusal)

    def emit_cortex(self, outdir: Path, name: str, kernels: str = CORTEX_KERNELS) -> "c_emit.Emitted | None":
        """The Cortex-M4's part as C (``NAME_m4.c``, ``NAME_m4.h``, ``NAME_m4.json``; its accelerator
        layers lowered), or None where the accelerator runs the whole model."""
        if self.cortex is None:
            return None
        return c_emit.emit(lower_max78000.for_c(self.cortex), outdir, name=f"{name}_m4", kernels=kernels)

    def to_dict(self, name: str, kernels: str = CORTEX_KERNELS) -> dict:
        """The ``handover`` entry of NAME.json and build.json."""
        t = self.accelerator.validate()[-1]
        return {"tensor": self.tensor, "shape": list(t.shape), "dtype": t.dtype,
                "accelerator_layers": len(self.accelerator.nodes),
                "cortex_m4_layers": 0 if self.cortex is None else len(self.cortex.nodes), "moved": self.moved} | (
                    {"cortex_m4": {"kernels": kernels, "report": f"{name}_m4.json"}} if self.cortex else {})


def split(model: ir.Model) -> Split:
    """The accelerator's part: the longest run of leading accelerator layers that bitgen's layer
    programs take (limits.layers) and after which one int8 tensor crosses; the rest is the
    Cortex-M4's. An accelerator layer the programs do not take yet (ConvTranspose2d with
    pooling, an element-wise or passthrough layer over more than 64 channels, ...) and
    everything after it run on the Cortex-M4; ``moved`` says why. A model whose first layer the
    accelerator cannot run is refused."""
    nodes = model.nodes
    if model.states:
        raise NotSupported(f"{TARGET}: a model with state (a stream model) is not supported")
    first = next((i for i, n in enumerate(nodes) if not isinstance(n.op, Max78000Layer)), len(nodes))
    if first == 0:
        raise NotSupported(f"{TARGET}: layer 0 ({nodes[0].op.kind}) is not an accelerator layer (max78000_layer): "
                           "nothing would run on the accelerator; run the model with --target c")
    types = model.validate()
    refusal: NotSupported | None = None
    for k in range(first, 0, -1):
        try:
            part = _split_at(model, types, k)
            limits.layers(part.accelerator)
        except NotSupported as e:
            refusal = refusal or e
            continue
        if k < first:  # an accelerator layer the programs do not take: from there on, the Cortex-M4
            part.moved = str(refusal).removeprefix(f"{TARGET}: ")
        return part
    assert refusal is not None
    raise refusal


def _split_at(model: ir.Model, types: list[ir.TensorType], k: int) -> Split:
    nodes = model.nodes
    head = nodes[:k]
    tensor = head[-1].output
    if k == len(nodes):
        return Split(model, None, tensor)
    inside = {n.output for n in head} | {ir.INPUT}
    for i, n in enumerate(nodes[k:], k):
        crossing = [t for t in n.inputs if t in inside and t != tensor]
        if crossing:
            raise NotSupported(f"{TARGET}: layer {i} ({n.op.kind}) on the Cortex-M4 reads '{crossing[0]}', but only "
                               f"the accelerator's last output ('{tensor}') is handed over")
    t = types[k - 1]
    if t.dtype != "int8":
        raise NotSupported(f"{TARGET}: the accelerator hands '{tensor}' to the Cortex-M4 as {t.dtype}; "
                           "only an 8-bit output is handed over (output_width 8)")
    accel = ir.Model(model.input, nodes=head, labels=None, name=model.name)
    rename = {tensor: ir.INPUT}
    rest = [ir.Node(n.op, tuple(rename.get(s, s) for s in n.inputs), n.output) for n in nodes[k:]]
    cortex = ir.Model(ir.InputSpec(t.shape, scale=model.input.scale), nodes=rest, labels=model.labels,
                      name=f"{model.name}_m4")
    return Split(accel, cortex, tensor)
