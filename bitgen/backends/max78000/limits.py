"""Legalization for the MAX78000's CNN accelerator: does a model fit the hardware, and if not,
which resource does not fit, layer by layer.

The limits are the MAX78000's (``../shared/reference/max78000.md`` section 3, "MAX78000
limits"; ai8x-synthesis README "Limitations of MAX78000 Networks"): 64 processors with one
data-memory byte lane each, 32 layers, 768 kernel words of 72 bits per processor, 16 data-memory
instances of 8192 words, 4 x 512 bias bytes, 3x3 or 1x1 kernels with padding 0..2 (below the
kernel size), pooling 1..16 with one stride for both dimensions, 10-bit row and column counts,
flatten over at most 256 pixels and 16384 values.

:func:`layers` reads a model into :class:`LayerShape` records or raises :class:`NotSupported`
(one line naming the layer) for what the hardware could run but bitgen's layer programs do not
yet (element-wise or passthrough layers over more than 64 channels, ConvTranspose2d with
pooling, ...). :func:`check` compares the shapes
with the per-layer limits; the memories are checked by the allocator, which adds its findings to
the same :class:`FitReport`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ... import ir
from ...errors import BitgenError

PROCESSORS = 64
QUADRANTS = 4
PROCESSORS_PER_QUADRANT = 16
MAX_LAYERS = 32
KERNEL_WORDS = 768  # 72-bit words of kernel memory per processor
DATA_WORDS = 8192  # 32-bit words per data-memory instance (4 processors share one)
BIAS_BYTES = 512  # per quadrant
MAX_ROW_COL = 1023  # RCNT/CCNT hold rows + 2 * pad - 1 in 10 bits
MAX_POOL = 16
MAX_FLATTEN_PIXELS = 256
MAX_FLATTEN_VALUES = 16384
MAX_POOL_LAST_OPERANDS = 2  # element-wise before pooling (pool_first False): izer's MAX_POOL_LAST_ELEMENTS
MAX_PASSES = 16  # LCTL2's pass count: at most 16 x 64 = 1024 channels


def expansion(channels: int) -> tuple[int, int]:
    """(passes, lanes) of a tensor of ``channels`` channels: at most 64 lanes, so more channels
    take several passes (several words per pixel); channel c sits on lane ``c % lanes`` in pass
    ``c // lanes``, the lanes rounded up to a multiple of 4 when there are several passes (izer's
    in_expand / in_expand_thresh, out_expand / out_expand_thresh)."""
    passes = -(-channels // PROCESSORS)
    if passes == 1:
        return 1, channels
    return passes, min((-(-channels // passes) + 3) & ~3, PROCESSORS)


class NotSupported(BitgenError):
    """A model (or layer) that bitgen's layer programs do not take yet."""


class DoesNotFit(BitgenError):
    """A model over a hardware limit; ``report`` is the machine-readable FitReport."""

    def __init__(self, report: "FitReport"):
        super().__init__(report.summary())
        self.report = report


@dataclass
class LayerShape:
    """One accelerator layer: a node of the model, or a copy the allocator inserts."""

    index: int  # the layer's place in the program (the node's index until the allocator inserts copies)
    name: str  # the tensor it writes
    op: ir.Max78000Layer
    in_shape: tuple[int, int, int]  # (C, H, W) the layer reads, per operand
    pooled: tuple[int, int, int]  # after pooling
    out_shape: tuple[int, int, int]  # (O, OH, OW) it writes
    inputs: tuple[str, ...] = (ir.INPUT,)  # the tensors it reads (one per operand, or one packed)
    node: int | None = None  # the model node it computes; None: a copy the allocator inserted

    @property
    def operands(self) -> int:
        return self.op.operands

    @property
    def kernel(self) -> int:
        """1 (1x1: linear too) or 3; conv1d: 1..9."""
        if self.op.operation in ("linear", "passthrough"):
            return 1
        return int(self.op.weight.shape[2])  # type: ignore[union-attr]

    @property
    def taps(self) -> int:
        """Weights a kernel: k for conv1d, k x k else."""
        return self.kernel if self.op.operation == "conv1d" else self.kernel * self.kernel

    @property
    def pad(self) -> int:
        """The padding the hardware applies: a ConvTranspose2d's ``k - 1 - padding`` around its
        zero-stuffed input (izer flips it so)."""
        if self.op.operation == "convtranspose2d":
            return self.kernel - 1 - self.op.padding
        return self.op.padding if self.op.operation in ("conv2d", "conv1d") else 0

    @property
    def in_passes(self) -> int:
        return expansion(self.in_shape[0])[0]

    @property
    def in_lanes(self) -> int:
        """Input processors: the input's lanes (channel c on processor c % in_lanes, pass c // in_lanes)."""
        return expansion(self.in_shape[0])[1]

    @property
    def out_passes(self) -> int:
        return expansion(self.out_shape[0])[0] if self.op.has_weights else self.in_passes

    @property
    def out_lanes(self) -> int:
        return expansion(self.out_shape[0])[1] if self.op.has_weights else self.in_lanes

    @property
    def out_count(self) -> int:
        """Output channels the layer computes: with several output passes, every lane of every
        pass (the last pass's unused lanes get zero kernels and a zero bias, as izer's), but a
        flatten layer computes its channels only (izer's kern_count)."""
        if self.out_passes > 1 and not self.op.flatten:
            return self.out_passes * self.out_lanes
        return self.out_shape[0]

    @property
    def passes(self) -> int:
        """Input passes: the pixels of a flattened input, else the input's passes."""
        return self.in_shape[1] * self.in_shape[2] if self.op.flatten else self.in_passes


@dataclass
class Problem:
    layer: int | None  # None: the whole model
    resource: str
    used: int
    limit: int
    message: str

    def to_dict(self) -> dict[str, Any]:
        return {"layer": self.layer, "resource": self.resource, "used": self.used, "limit": self.limit,
                "message": self.message}


@dataclass
class FitReport:
    """Per resource: what the model uses and what the hardware has; every problem found."""

    resources: dict[str, dict[str, Any]] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)

    @property
    def fits(self) -> bool:
        return not self.problems

    def use(self, resource: str, used: int, limit: int, **more: Any) -> None:
        self.resources[resource] = {"used": int(used), "limit": int(limit), **more}

    def add(self, layer: int | None, resource: str, used: int, limit: int, message: str) -> None:
        self.problems.append(Problem(layer, resource, int(used), int(limit), message))

    def summary(self) -> str:
        """One line: every resource that does not fit, with the first problem for each."""
        seen: dict[str, list[Problem]] = {}
        for p in self.problems:
            seen.setdefault(p.resource, []).append(p)
        parts = []
        for resource, ps in seen.items():
            more = f" (and {len(ps) - 1} more)" if len(ps) > 1 else ""
            parts.append(f"{resource}: {ps[0].message}{more}")
        return "max78000-cnn: the model does not fit the accelerator: " + "; ".join(parts)

    def to_dict(self) -> dict[str, Any]:
        return {"fits": self.fits, "resources": self.resources, "problems": [p.to_dict() for p in self.problems]}


def layers(model: ir.Model) -> list[LayerShape]:
    """The model's accelerator layers in execution order (each reads the model input or earlier
    layers' outputs, as izer's ``in_sequences``), or NotSupported naming the first layer (and the
    reason) that bitgen's layer programs do not take yet."""
    if model.states:
        raise NotSupported("max78000-cnn: a model with states (recurrent) is not supported")
    try:
        types = model.validate()
    except ir.IRError as e:
        raise NotSupported(f"max78000-cnn: the model is not valid: {e}") from None
    shape = model.input.shape
    if len(shape) not in (2, 3):
        raise NotSupported(f"max78000-cnn: the input must be (C, H, W) or, 1-D, (C, L); got {shape}")
    one_d = len(shape) == 2  # (C, L): the layers see L rows of one column
    shapes = {ir.INPUT: tuple(shape)}
    out = []
    for i, (node, t) in enumerate(zip(model.nodes, types)):
        op = node.op
        where = f"max78000-cnn: layer {i} ({node.output})"
        if not isinstance(op, ir.Max78000Layer):
            raise NotSupported(f"{where}: {op.kind} is not an accelerator layer (only max78000_layer nodes, as "
                               "`bitgen import CHECKPOINT --yaml NETWORK.yaml` makes them, are supported)")
        if op.operation not in ("conv2d", "conv1d", "convtranspose2d", "linear", "passthrough"):
            raise NotSupported(f"{where}: {op.operation} is not supported yet (conv2d 3x3/1x1, conv1d, "
                               "convtranspose2d, linear and passthrough are)")
        if one_d and (op.operands > 1 or not op.has_weights or op.dilation != 1):
            what = ("an element-wise op" if op.operands > 1 else
                    "dilation" if op.has_weights else "a passthrough layer")
            raise NotSupported(f"{where}: {what} on 1-D data is not supported yet")
        if op.operation == "convtranspose2d" and (op.pooling or op.operands > 1):
            raise NotSupported(f"{where}: convtranspose2d with {'pooling' if op.pooling else 'an element-wise op'} "
                               "is not supported yet")
        if op.packed_operands and node.inputs[0] != ir.INPUT:
            raise NotSupported(f"{where}: its {op.operands} operands packed as channel blocks of one tensor that a "
                               "layer writes are not supported yet (give the operands as separate inputs)")
        if op.operands > 1 and op.flatten:
            raise NotSupported(f"{where}: an element-wise op with flatten is not supported yet")
        in_real = tuple(op.split(tuple(ir.TensorType(shapes[n], "int8", -128, 127) for n in node.inputs))[0].shape)
        in_shape = rows(in_real)
        c, h, w = in_shape
        if c > PROCESSORS and (op.operands > 1 or op.flatten or not op.has_weights):
            what = "an element-wise op" if op.operands > 1 else ("flatten" if op.flatten else "a passthrough layer")
            raise NotSupported(f"{where}: {what} over more than {PROCESSORS} channels (several passes) is not "
                               "supported yet")
        if op.output_width == 32 and i != len(model.nodes) - 1:
            raise NotSupported(f"{where}: a 32-bit output feeds another layer (only the last layer may be 32-bit)")
        pooled = rows(op.pooled_shape(in_real))
        shapes[node.output] = tuple(int(v) for v in t.shape)
        out_shape = rows(shapes[node.output])
        if len(out_shape) != 3:
            raise NotSupported(f"{where}: output shape {out_shape} is not (C, H, W)")
        out.append(LayerShape(i, node.output, op, in_shape, tuple(pooled), out_shape,  # type: ignore[arg-type]
                              tuple(node.inputs), i))
    rounding = {ly.op.avg_pool_rounding for ly in out if ly.op.pool == "avg"}
    if len(rounding) > 1:
        raise NotSupported("max78000-cnn: average pooling with and without rounding in one model (the rounding is "
                           "one switch for the whole accelerator)")
    return out


def rows(shape: tuple[int, ...]) -> tuple[int, ...]:
    """A 1-D shape (C, L) as the hardware sees it: L rows of one column."""
    return tuple(int(v) for v in shape) + ((1,) if len(shape) == 2 else ())


def check(shapes: list[LayerShape], report: FitReport) -> None:
    """The per-layer limits (kernel, padding, pooling, sizes, flatten) and the layer count."""
    report.use("layers", len(shapes), MAX_LAYERS)
    if len(shapes) > MAX_LAYERS:
        report.add(None, "layers", len(shapes), MAX_LAYERS, f"{len(shapes)} layers, the accelerator runs at most "
                   f"{MAX_LAYERS}")
    for ly in shapes:
        op, i = ly.op, ly.index
        k, pad = ly.kernel, ly.pad
        for what, ch in (("input", ly.in_shape[0]), ("output", ly.out_shape[0])):
            if ch > PROCESSORS * MAX_PASSES:
                report.add(i, "channels", ch, PROCESSORS * MAX_PASSES, f"layer {i}: {ch} {what} channels (at most "
                           f"{MAX_PASSES} passes of {PROCESSORS})")
        if op.operation == "conv1d":
            if not 1 <= k <= 9:
                report.add(i, "kernel size", k, 9, f"layer {i}: a 1-D kernel of {k} (the hardware has 1..9)")
            if not 0 <= pad <= 2 or pad >= k:
                report.add(i, "padding", pad, min(2, k - 1), f"layer {i}: 1-D padding {pad} with a kernel of {k} "
                           "(0..2, and below the kernel size)")
        if op.operation == "conv2d":
            if k not in (1, 3):
                report.add(i, "kernel size", k, 3, f"layer {i}: a {k}x{k} kernel (the hardware has 3x3 and 1x1)")
            if not 0 <= pad <= 2 or pad >= k:
                report.add(i, "padding", pad, min(2, k - 1), f"layer {i}: padding {pad} with a {k}x{k} kernel "
                           "(0..2, and below the kernel size)")
        if op.pooling:
            (ph, pw), (sh, sw) = op.pool_size, op.pool_stride
            if max(ph, pw, sh, sw) > MAX_POOL:
                report.add(i, "pooling", max(ph, pw, sh, sw), MAX_POOL, f"layer {i}: pool {ph}x{pw} stride "
                           f"{sh}x{sw} (at most {MAX_POOL})")
            if sh != sw and op.operation != "conv1d":  # (1-D: (k, 1) with stride (s, 1))
                report.add(i, "pooling", max(sh, sw), min(sh, sw), f"layer {i}: pool stride {sh}x{sw} (one stride "
                           "for rows and columns)")
        if op.operands > 1 and not op.pool_first and op.operands > MAX_POOL_LAST_OPERANDS:
            report.add(i, "element-wise operands", op.operands, MAX_POOL_LAST_OPERANDS, f"layer {i}: {op.operands} "
                       f"operands with the element-wise op before pooling (at most {MAX_POOL_LAST_OPERANDS})")
        _, h, w = ly.in_shape
        if op.operation == "convtranspose2d":  # the counters run over the zero-stuffed input
            h, w = 2 * h, 2 * w
        for what, v in (("rows", h), ("columns", w)):
            if v + 2 * pad - 1 > MAX_ROW_COL:
                report.add(i, "rows and columns", v + 2 * pad - 1, MAX_ROW_COL, f"layer {i}: {v} {what} with "
                           f"padding {pad} (the row/column counter holds at most {MAX_ROW_COL + 1})")
        if op.flatten:
            c, h, w = ly.in_shape
            if h * w > MAX_FLATTEN_PIXELS:
                report.add(i, "flatten", h * w, MAX_FLATTEN_PIXELS, f"layer {i}: flattens {h * w} pixels (at most "
                           f"{MAX_FLATTEN_PIXELS})")
            if c * h * w > MAX_FLATTEN_VALUES:
                report.add(i, "flatten", c * h * w, MAX_FLATTEN_VALUES, f"layer {i}: flattens {c * h * w} values "
                           f"(at most {MAX_FLATTEN_VALUES})")
