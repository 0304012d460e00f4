"""The typed interface between the C emitter and its kernels.

A kernel is offered a layer (or, for a plane convolution, a layer and the channel-local
layers after it) and answers with a :class:`Choice`, or None where it does not apply. A
Choice states in numbers what the planner must give it (scratch bytes, output room, whether it
may write over its input, whether it runs one channel plane at a time, how many following
layers it computes itself) and renders its C call once the arena is planned. The emitter never
looks inside the C text a kernel writes.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from .... import encodings, ir
from ..literals import c_int, hex_lines, int_lines
from ..targets import KernelError, Target  # noqa: F401  (re-exported for the kernels)


@dataclass
class Data:
    """One constant of the emitted source (flash)."""

    decl: str
    lines: list[str]
    nbytes: int
    layer: int


class ModelSource:
    """The constant data and file-scope C of one model's source, as kernels add to it."""

    def __init__(self, name: str):
        self.name = name
        self.data: list[Data] = []
        self.functions: list[str] = []  # file-scope C: kernel instances with fixed shapes
        self.gates: list[tuple[int, int]] = []  # change gates: (layer, pixels), in execution order
        # SRAM buffers a kernel keeps from frame to frame outside the arena (a change-based
        # step's accumulators): {"ident", "ctype", "size", "bytes", "what"}
        self.buffers: list[dict[str, Any]] = []

    def changed(self, layer: int, pixels: int) -> str:
        """The counter of pixels that changed in this frame at the change gate of `layer`
        (NAME_changed[k] in the emitted model, read by the firmware and the host)."""
        for k, (i, _) in enumerate(self.gates):
            if i == layer:
                return f"{self.name}_changed[{k}]"
        self.gates.append((layer, pixels))
        return f"{self.name}_changed[{len(self.gates) - 1}]"

    def buffer(self, ctype: str, ident: str, size: int, elem_bytes: int, what: str) -> str:
        """A zeroed static buffer of `size` elements that keeps its values between frames;
        NAME_reset() does not touch it (its kernel rebuilds it on the first frame after one)."""
        name = f"{self.name}_{ident}"
        if all(b["ident"] != name for b in self.buffers):
            self.buffers.append({"ident": name, "ctype": ctype, "size": size, "bytes": size * elem_bytes,
                                 "what": what})
        return name

    def array(self, ctype: str, ident: str, lines: list[str], nbytes: int, layer: int) -> str:
        return self._declare(Data(f"static const {ctype} {self.name}_{ident}[]", lines, nbytes, layer))

    def struct(self, ctype: str, ident: str, fields: list[Any]) -> str:
        body = ", ".join(f if isinstance(f, str) else c_int(int(f)) for f in fields)
        return self._declare(Data(f"static const {ctype} {self.name}_{ident}", [body], 0, -1))

    def _declare(self, data: Data) -> str:
        """Add a constant and give its name; asking again for the same one (a prologue and its
        kernel's call both need it) gives the same name without a second copy."""
        name = data.decl.split()[-1].removesuffix("[]")
        for d in self.data:
            if d.decl == data.decl:
                if d.lines != data.lines:
                    raise ValueError(f"{name} declared twice with different values")
                return name
        self.data.append(data)
        return name

    def flash_of_layer(self, layer: int) -> int:
        """Bytes of weights and parameters (arrays) emitted for one layer."""
        return sum(d.nbytes for d in self.data if d.layer == layer)

    def packed_weights(self, i: int, layer: ir.Linear | ir.Conv2d) -> tuple[str, str]:
        """The packed weights and the bias (or "0") of layer i."""
        return self.weights(i, layer), self.bias(i, layer)

    def weights(self, i: int, layer: ir.Linear | ir.Conv2d) -> str:
        """Layer i's weights in the packed row format of its encoding (bg_weight reads it)."""
        enc = encodings.get(layer.encoding)
        packed = enc.pack_rows(layer.weight.reshape(layer.weight.shape[0], -1))
        return self.array("uint8_t", f"w{i}", hex_lines(packed), len(packed), i)

    def bias(self, i: int, layer: ir.Linear | ir.Conv2d) -> str:
        if layer.bias is None:
            return "0"
        return self.array("int32_t", f"b{i}", int_lines(layer.bias), 4 * layer.bias.size, i)

    @property
    def flash_bytes(self) -> int:
        return sum(d.nbytes for d in self.data)


@dataclass
class Pointers:
    """Where a kernel call reads and writes, once the arena is planned."""

    x: str  # input pointer expression (const)
    y: str  # output pointer expression
    scratch: int | None = None  # arena offset of the kernel's own scratch
    channel: str | None = None  # C expression of the channel, when computing one plane
    x_is_plane: bool = False  # with `channel`: x is that channel's plane, not the whole tensor
    others: tuple[str, ...] = ()  # pointers to the inputs after the first (const)
    x16: bool = False  # x is a plane stored as uint16 (Choice.narrow)
    y16: bool = False  # y is a plane to store as uint16 (Choice.narrow)
    # with `channel`: a C expression of the plane's elements, when only a band of its rows is
    # computed (a tiled step, tiling.py); None: the whole plane
    elements: str | None = None
    # a tiled step's band (tiling.py): C expressions of the input rows held, the output rows to
    # compute and the vertical padding that maps one onto the other; None: the whole tensor
    band: tuple[str, ...] | None = None  # (rows held, rows out, shift, and for a 2-D tile: columns held, out, shift)


@dataclass
class Prologue:
    """C run once before a channel-by-channel step, and the locals it sets."""

    locals: list[str]  # declarations, e.g. "int32_t z"
    # (source, layer index, arena offset of the kernel's scratch, the step's input pointer) -> C
    code: Callable[[ModelSource, int, int, str], str]


@dataclass
class Choice:
    kernel: str  # recorded in NAME.json
    files: list[str]  # runtime files (c_runtime/) the call needs
    render: Callable[[ModelSource, int, Pointers], str | None]
    scratch: int = 0  # bytes of scratch in the arena while the layer runs
    out_region: int | None = None  # bytes the output needs, when more than the tensor
    in_place: bool = False  # may write its output over its input
    # inside a channel-by-channel step: (input element bytes, output element bytes) -> whether it
    # may write its output plane over its input plane (each output is stored after every input it
    # reads, and no later output reads a byte an earlier one wrote: a valid convolution in raster
    # order, pooling); None: never
    plane_in_place: Callable[[int, int], bool] | None = None
    # inside a channel-by-channel step: reads and writes uint16 planes where told (Pointers.x16,
    # y16): the emitter narrows a plane between two such kernels whose type is within 0..65535
    narrow: bool = False
    # inside a channel-by-channel step: the scratch is rebuilt at every call (tables of the
    # channel's weights), so such kernels of one step share its bytes
    scratch_per_call: bool = False
    alias: bool = False  # no code at all: the output is the input's bytes (flatten)
    per_channel: bool = False  # render() can compute a single channel plane (Pointers.channel)
    fuses: int = 0  # the next `fuses` layers are computed inside this kernel's output stage
    prologue: Prologue | None = None
    trades_scratch: bool = False  # a smaller `lut_chunk` gives less scratch and more instructions
    optional: bool = False  # the generic kernel can take the layer instead, with no scratch of its own
    persistent: bool = False  # the output keeps its values from frame to frame: a buffer outside the arena


FUSED = Choice("fused", [], lambda src, i, p: None, per_channel=True)  # computed by an earlier kernel


@dataclass(frozen=True)
class Refusal:
    """A faster kernel that the kernel set has for this kind of layer, and why it did not take
    this one (recorded in NAME.json beside the kernel that did)."""

    kernel: str
    reason: str

    def report(self) -> dict[str, str]:
        return {"kernel": self.kernel, "reason": self.reason}


@dataclass
class Context:
    """What a kernel may know besides its layer."""

    target: Target
    reads_input: bool = False  # the layer reads the model input (only flattens before it)
    lut_chunk: int | None = None  # tables per pass of the LUT kernel, if not the target's default


def enc_id(layer: ir.Linear | ir.Conv2d) -> str:
    return f"BG_ENC_{encodings.get(layer.encoding).c_id}"

