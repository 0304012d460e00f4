"""Which C kernel computes each layer, per target, and the code that calls it.

A target names a family of processors. Every target's kernels are portable C99 (so the host
check and the property tests run each of them through cffi); the target only decides which
one is fastest there:

* ``generic``: the reference kernels of ``c_runtime/bg_*.c``, one per op, no layout tricks.
* ``rv32ec``: no multiplier (CH32V003). Fully connected layers on int8 inputs use the nibble
  lookup-table kernel (``bg_linear_lut.c``): one table load and add per weight nibble.
* ``rv32emc`` and ``cortex-m4``: a multiplier. On ``rv32emc`` the LUT kernel for weights of up
  to 4 bits (a lookup is cheaper than decoding a weight and multiplying); on ``cortex-m4``
  fully connected layers on int8 inputs use the DSP extension's dual multiply-accumulate
  (``bg_linear_simd.c``, weights stored one byte each). Convolutions that run on one
  plane (channel-by-channel steps, :mod:`bitgen.schedule`) fuse the ReLU / requantization that
  follows, and a 2x2 stride-2 max pool after them, into their output stage: 3x3 kernels with
  ``bg_conv3x3.inc``, instantiated in the model source once per layer with the layer's shapes
  and output stage as constants (:func:`_conv3x3_call`); other sizes with ``bg_conv2d_plane.c``.

A kernel is chosen in two steps: :func:`choose` or :func:`plane_conv_group` (before arena
planning: how much scratch and output room the kernel needs, which layers it fuses) and
``Choice.render`` (after planning: the constant data and the call).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from ... import encodings, ir

TARGETS = ("generic", "rv32ec", "rv32emc", "cortex-m4")
HAS_MULTIPLIER = {"rv32emc", "cortex-m4"}
SUFFIX = {"int8": "s8", "int32": "s32"}
C_TYPE = {"int8": "int8_t", "int32": "int32_t"}
# Tables per pass of the LUT kernel: 2 * (17 * chunk + 1) bytes of scratch. A pass costs each
# block of 8 outputs a load and a store of its sums, so small chunks are cheap in time; RV32EC
# parts have 2 KB of SRAM. The emitter lowers the chunk when asked for a smaller arena.
LUT_CHUNK = {"rv32ec": 8, "rv32emc": 16, "cortex-m4": 16}

GENERIC_FILES = {
    "linear": ["bg_linear.c", "bg_linear.inc"],
    "conv2d": ["bg_conv2d.c", "bg_conv2d.inc"],
    "maxpool2d": ["bg_pool.c", "bg_pool.inc"],
    "avgpool2d": ["bg_pool.c", "bg_pool.inc"],
    "relu": ["bg_elementwise.c", "bg_elementwise.inc"],
    "requant": ["bg_elementwise.c", "bg_elementwise.inc"],
    "shiftnorm": ["bg_elementwise.c", "bg_elementwise.inc"],
    "flatten": [],
}
LUT_FILES = ["bg_linear_lut.c", "bg_linear_lut.h"]
SIMD_FILES = ["bg_linear_simd.c", "bg_linear_simd.h"]
PLANE_FILES = ["bg_conv2d_plane.c", "bg_conv2d_plane.h", "bg_conv2d_plane.inc"]
# bg_conv3x3.inc instances use bg_post_t's output stage, and a first layer bg_offset_s8
CONV3X3_FILES = PLANE_FILES + ["bg_conv3x3.h", "bg_conv3x3.inc"]


class KernelError(ValueError):
    pass


@dataclass
class Data:
    """One constant of the emitted source (flash)."""

    decl: str
    lines: list[str]
    nbytes: int
    layer: int


@dataclass
class Pointers:
    x: str  # input pointer expression (const)
    y: str  # output pointer expression
    scratch: str | None = None
    channel: str | None = None  # C expression of the channel, when computing one plane
    x_is_plane: bool = False  # with `channel`: x is that channel's plane, not the whole tensor


@dataclass
class Choice:
    kernel: str  # recorded in NAME.json
    files: list[str]
    render: Callable[["Emitter", int, Pointers], str | None]
    scratch: int = 0  # bytes of scratch in the arena while the layer runs
    out_region: int | None = None  # bytes the output needs, when more than the tensor
    in_place: bool = False  # may write its output over its input
    per_channel: bool = False  # render() can compute a single channel plane (Pointers.channel)
    fuses: int = 0  # the next `fuses` layers are computed inside this kernel's output stage
    prologue: str | None = None  # C run once before a channel-by-channel step ({scratch}: its scratch)


FUSED = Choice("fused", [], lambda em, i, p: None, per_channel=True)  # computed by an earlier kernel


class Emitter:
    """Collects the constant data of one model's source."""

    def __init__(self, name: str):
        self.name = name
        self.data: list[Data] = []
        self.functions: list[str] = []  # file-scope C: kernel instances with fixed shapes

    def array(self, ctype: str, ident: str, lines: list[str], nbytes: int, layer: int) -> str:
        full = f"{self.name}_{ident}"
        self.data.append(Data(f"static const {ctype} {full}[]", lines, nbytes, layer))
        return full

    def struct(self, ctype: str, ident: str, fields: list[Any]) -> str:
        full = f"{self.name}_{ident}"
        body = ", ".join(f if isinstance(f, str) else c_int(int(f)) for f in fields)
        self.data.append(Data(f"static const {ctype} {full}", [body], 0, -1))
        return full

    def flash_of_layer(self, layer: int) -> int:
        """Bytes of weights and parameters (arrays) emitted for one layer."""
        return sum(d.nbytes for d in self.data if d.layer == layer)

    def packed_weights(self, i: int, layer: ir.Linear | ir.Conv2d) -> tuple[str, str]:
        """The packed weights and the bias (or "0") of layer i."""
        return self.weights(i, layer), self.bias(i, layer)

    def weights(self, i: int, layer: ir.Linear | ir.Conv2d) -> str:
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


def hex_lines(data: bytes, per_line: int = 16) -> list[str]:
    return [" ".join(f"0x{b:02x}," for b in data[i : i + per_line]) for i in range(0, len(data), per_line)] or ["0"]


def int_lines(values: np.ndarray, per_line: int = 12) -> list[str]:
    vals = [int(v) for v in np.asarray(values).ravel()]
    return [", ".join(c_int(v) for v in vals[i : i + per_line]) + "," for i in range(0, len(vals), per_line)]


def word_lines(words: np.ndarray, per_line: int = 8) -> list[str]:
    vals = [int(v) for v in np.asarray(words, dtype=np.uint64).ravel()]
    return [" ".join(f"0x{v:08x}u," for v in vals[i : i + per_line]) for i in range(0, len(vals), per_line)]


def c_int(v: int) -> str:
    return "(-2147483647 - 1)" if v == -(2**31) else str(v)


def enc_id(layer: ir.Linear | ir.Conv2d) -> str:
    return f"BG_ENC_{encodings.get(layer.encoding).c_id}"


# ---------------------------------------------------------------- generic kernels
def _conv_call(em: Emitter, i: int, layer: ir.Conv2d, t_in: ir.TensorType, t_out: ir.TensorType,
               p: Pointers, fn: str) -> str:
    """Call of a conv kernel `fn` with the bg_conv2d_* signature, whole tensor or one channel."""
    c, h, wd = t_in.shape
    co, oh, ow = t_out.shape
    kh, kw = layer.weight.shape[2:]
    g = layer.groups
    w, b = em.packed_weights(i, layer)
    enc = encodings.get(layer.encoding)
    if p.channel is None:
        s = em.struct("bg_conv_shape_t", f"conv{i}", [c, h, wd, co, oh, ow, kh, kw, *layer.stride, *layer.padding, g])
        return f"{fn}({p.x}, {p.y}, &{s}, {w}, {enc_id(layer)}, {b});"
    cig = 1 if p.x_is_plane else c // g
    s = em.struct("bg_conv_shape_t", f"conv{i}", [cig, h, wd, 1, oh, ow, kh, kw, *layer.stride, *layer.padding, 1])
    x = p.x
    if not p.x_is_plane and g > 1:  # the input channels of this output channel's group
        group = p.channel if co == g else f"({p.channel} / {co // g}u)"
        x = f"{p.x} + {group} * {cig * h * wd}u"
    row = enc.row_bytes(int(np.prod(layer.weight.shape[1:])))
    bias = b if b == "0" else f"{b} + {p.channel}"
    return f"{fn}({x}, {p.y}, &{s}, {w} + {p.channel} * {row}u, {enc_id(layer)}, {bias});"


def _generic(layer: ir.Layer, t_in: ir.TensorType, t_out: ir.TensorType) -> Choice:
    sin = SUFFIX[t_in.dtype]
    files = GENERIC_FILES[layer.kind]

    def plane(p: Pointers, t: ir.TensorType) -> int:
        """Elements the kernel handles: the whole tensor, or one channel of it."""
        return t.size if p.channel is None else t.size // t.shape[0]

    if isinstance(layer, ir.Linear):
        def render(em: Emitter, i: int, p: Pointers) -> str:
            w, b = em.packed_weights(i, layer)
            return (f"bg_linear_{sin}({p.x}, {p.y}, {layer.in_features}, {layer.out_features}, "
                    f"{w}, {enc_id(layer)}, {b});")
        return Choice("generic", files, render)

    if isinstance(layer, ir.Conv2d):
        for v in (*t_in.shape, *t_out.shape, layer.groups):
            if v > 0xFFFF:
                raise KernelError(f"dimension {v} exceeds 65535")
        for v in (*layer.weight.shape[2:], *layer.stride, *layer.padding):
            if v > 255:
                raise KernelError(f"kernel, stride or padding {v} exceeds 255")
        return Choice("generic", files, lambda em, i, p: _conv_call(em, i, layer, t_in, t_out, p, f"bg_conv2d_{sin}"),
                      per_channel=True)

    if isinstance(layer, (ir.MaxPool2d, ir.AvgPool2d)):
        c, h, wd = t_in.shape
        _, oh, ow = t_out.shape

        def render(em: Emitter, i: int, p: Pointers) -> str:
            cc = c if p.channel is None else 1
            s = em.struct("bg_pool_shape_t", f"pool{i}", [cc, h, wd, oh, ow, *layer.kernel, *layer.stride])
            return f"bg_{layer.kind}_{sin}({p.x}, {p.y}, &{s});"
        return Choice("generic", files, render, in_place=True, per_channel=True)

    if isinstance(layer, ir.ReLU):
        return Choice("generic", files, lambda em, i, p: f"bg_relu_{sin}({p.x}, {p.y}, {plane(p, t_in)});",
                      in_place=True, per_channel=True)

    if isinstance(layer, ir.Requant):
        ch = layer.multiplier.size
        half_up = 1 if layer.rounding == "half_up" else 0
        amax = max(abs(t_in.lo), abs(t_in.hi))
        # 32-bit arithmetic (bg_requant32_to) where the range proves it exact: |x| * m < 2^32
        # formed directly, or split in two halves of m when s >= 8 and |x| < 2^23; the result
        # must fit int32. Otherwise 64-bit products.
        pairs = [(int(m), int(sh)) for m, sh in zip(layer.multiplier, layer.shift)]
        fits = all(m < 2**16 and sh <= 31 and (amax * m >> sh) + 1 < 2**31 for m, sh in pairs)
        direct = fits and all(amax * m < 2**32 for m, _ in pairs)
        split = fits and not direct and amax < 2**23 and all(sh >= 8 for _, sh in pairs)
        fits32 = direct or split
        width, mtype, mbytes = ("32", "uint16_t", 2) if fits32 else ("", "int32_t", 4)

        def render(em: Emitter, i: int, p: Pointers) -> str:
            m = em.array(mtype, f"m{i}", int_lines(layer.multiplier), mbytes * ch, i)
            sh = em.array("uint8_t", f"s{i}", int_lines(layer.shift), ch, i)
            fields = [m, sh, ch, half_up] + ([int(split)] if fits32 else []) + [layer.out_min, layer.out_max]
            q = em.struct(f"bg_requant{width}_t", f"q{i}", fields)
            fn = f"bg_requant{width}_to_{SUFFIX[t_out.dtype]}"
            if p.channel is None:
                return f"{fn}({p.x}, {p.y}, {t_in.size // ch}, &{q}, 0, {ch});"
            first = p.channel if ch > 1 else "0"  # this channel's own multiplier and shift
            return f"{fn}({p.x}, {p.y}, {plane(p, t_in)}, &{q}, {first}, 1);"
        return Choice("generic", files, render, in_place=True, per_channel=True)

    if isinstance(layer, ir.ShiftNorm):
        return Choice("generic", files, lambda em, i, p: f"bg_shiftnorm({p.x}, {p.y}, {t_in.size});", in_place=True)

    if isinstance(layer, ir.Flatten):
        return Choice("alias", files, lambda em, i, p: None, in_place=True)

    raise KernelError(f"no C kernel for {layer.kind}")


# ------------------------------------------------------------ nibble LUT (rv32ec)
def _lut_linear(layer: ir.Linear, t_in: ir.TensorType, offset: bool, max_chunk: int) -> Choice | None:
    """The LUT kernel for an int8-input linear layer, or None where it does not apply."""
    enc = encodings.get(layer.encoding)
    if t_in.dtype != "int8":
        return None
    n_out, n_in = layer.weight.shape
    n_cols = (n_in * enc.bits + 3) // 4
    if n_cols * 4 > 0x7FFF or n_in > 0xFFFF or n_out > 0xFFFF:
        return None
    # Exactness: every partial sum (tables hold partial column sums, in any order) must fit.
    w = np.abs(layer.weight.astype(object))
    span = (t_in.hi - t_in.lo) if offset else max(abs(t_in.lo), abs(t_in.hi))
    rowsum = layer.weight.astype(object).sum(axis=1)
    bias = np.zeros(n_out, dtype=object) if layer.bias is None else layer.bias.astype(object)
    zmax = max(abs(t_in.lo), abs(t_in.hi)) if offset else 0
    if offset and max(abs(v) for v in rowsum) > 32767:  # row sums are stored as int16
        return _lut_linear(layer, t_in, offset=False, max_chunk=max_chunk)
    bound = max(np.abs(bias) + np.abs(rowsum) * zmax + w.sum(axis=1) * span)
    if bound > ir.INT32[1] or span * enc.max_abs * (4 // min(enc.bits, 4)) > 32767:
        return None
    full = n_out // 8
    rest = n_out - 8 * full
    tail_rows = 0 if rest == 0 else 2 if rest <= 2 else 4 if rest <= 4 else 8
    if tail_rows == 8:  # 5..7 rows left: one more padded block of 32-bit words
        full, tail_rows = full + 1, 0
    rows = 8 * full + tail_rows
    chunk = min(n_cols, max_chunk)

    def render(em: Emitter, i: int, p: Pointers) -> str:
        # nibble stream of each row, exactly as the packed format holds it
        packed = np.frombuffer(enc.pack_rows(layer.weight), dtype=np.uint8).reshape(n_out, -1)
        nibbles = np.zeros((rows, n_cols), dtype=np.uint64)
        nibbles[:n_out] = np.stack([packed & 15, packed >> 4], axis=2).reshape(n_out, -1)[:, :n_cols]

        def words(block_rows: np.ndarray) -> np.ndarray:  # (blocks, r, n_cols) -> (blocks, n_cols)
            out = np.zeros((block_rows.shape[0], n_cols), dtype=np.uint64)
            for r in range(block_rows.shape[1]):
                out |= block_rows[:, r, :] << np.uint64(4 * r)
            return out

        w_full = words(nibbles[: 8 * full].reshape(full, 8, n_cols))
        w_arr = em.array("uint32_t", f"w{i}", word_lines(w_full), 4 * w_full.size, i) if full else "0"
        tail = "0"
        if tail_rows:
            w_tail = words(nibbles[8 * full :].reshape(1, tail_rows, n_cols))[0]
            ctype = "uint16_t" if tail_rows == 4 else "uint8_t"
            tail = em.array(ctype, f"t{i}", int_lines(w_tail), w_tail.size * tail_rows // 2, i)
        b = em.bias(i, layer)
        rs = em.array("int16_t", f"r{i}", int_lines(np.array(rowsum, dtype=np.int64)), 2 * n_out, i) if offset else "0"
        prm = em.struct("bg_lut_fc_t", f"lut{i}",
                        [w_arr, tail, b, rs, n_in, n_out, chunk, enc_id(layer), tail_rows])
        return f"bg_linear_lut_s8({p.x}, {p.y}, &{prm}, {p.scratch});"

    return Choice("lut", LUT_FILES, render, scratch=2 * (17 * chunk + 1), out_region=rows * 4)


# ------------------------------------------------- dual multiply-accumulate (cortex-m4)
def _simd_linear(layer: ir.Linear, t_in: ir.TensorType) -> Choice | None:
    """The SMLAD kernel for an int8-input linear layer, or None where it does not apply."""
    n_out, n_in = layer.weight.shape
    if t_in.dtype != "int8" or n_in > 0xFFFF or n_out > 0xFFFF:
        return None
    if layer.weight.min() < -128 or layer.weight.max() > 127:  # FP1.3.0's +128: no int8
        return None
    # Exactness: the products and sums are golden's, in another order; ir.validate has proved
    # every partial sum (|bias| + sum |w| * max |x|) fits int32 in any order.
    rows, cols = -(-n_out // 4) * 4, -(-n_in // 4) * 4

    def render(em: Emitter, i: int, p: Pointers) -> str:
        w = np.zeros((rows, cols), dtype=np.int8)
        w[:n_out, :n_in] = layer.weight
        # (block, row, group, input) -> (block, group, row, input): one word per row and group
        words = w.reshape(rows // 4, 4, cols // 4, 4).transpose(0, 2, 1, 3).copy().view("<u4")
        w_arr = em.array("uint32_t", f"w{i}", word_lines(words), words.size * 4, i)
        b = "0"
        if layer.bias is not None:
            padded = np.zeros(rows, dtype=np.int64)
            padded[:n_out] = layer.bias
            b = em.array("int32_t", f"b{i}", int_lines(padded), 4 * rows, i)
        prm = em.struct("bg_simd_fc_t", f"simd{i}", [w_arr, b, n_in, n_out])
        return f"bg_linear_simd_s8({p.x}, {p.y}, &{prm});"

    return Choice("simd", SIMD_FILES, render, out_region=rows * 4)


def _post_stage(fused: list[ir.Layer], types: list[ir.TensorType]) -> dict[str, Any] | None:
    """The bg_post_t of the layers fused after a conv (ReLU? Requant? ReLU? then a 2x2 stride-2
    MaxPool2d?), or None if the sequence cannot be fused. `types[k]` is the input type of fused[k]."""
    pool = bool(fused) and isinstance(fused[-1], ir.MaxPool2d)
    if pool:
        if fused[-1].kernel != (2, 2) or fused[-1].stride != (2, 2):
            return None
        fused, types = fused[:-1], types[:-1]
    kinds = [layer.kind for layer in fused]
    if kinds not in ([], ["relu"], ["requant"], ["relu", "requant"], ["requant", "relu"], ["relu", "requant", "relu"]):
        return None
    rq = next((layer for layer in fused if isinstance(layer, ir.Requant)), None)
    post = {"requant": rq, "lo": ir.INT32[0], "hi": ir.INT32[1], "wide": 0, "pool": int(pool),
            "relu_before": int(bool(kinds) and kinds[0] == "relu"),
            "relu_after": int(bool(kinds) and kinds[-1] == "relu" and rq is not None)}
    if rq is not None:
        t_in = types[fused.index(rq)]  # the requant's input range decides 32 or 64 bits
        amax = max(abs(t_in.lo), abs(t_in.hi))
        post.update(lo=rq.out_min, hi=rq.out_max, wide=int(any(
            amax * int(m) + (1 << int(sh)) > ir.INT32[1] for m, sh in zip(rq.multiplier, rq.shift))))
    return post


def _plane_conv(layer: ir.Conv2d, t_in: ir.TensorType, t_out: ir.TensorType,
                fused: list[ir.Layer], fused_types: list[ir.TensorType], offset: bool) -> Choice | None:
    """The sliding-window kernel for a conv that runs on one plane, with `fused` layers (their
    output types in `fused_types`) applied in its output stage; None where it does not apply."""
    kh, kw = layer.weight.shape[2:]
    if layer.stride != (1, 1) or layer.padding != (0, 0) or kh * kw > 49:
        return None
    if layer.weight.shape[1] != 1:  # the kernel reads one input plane per output plane
        return None
    for v in (*t_in.shape, *t_out.shape):
        if v > 0xFFFF:
            return None
    post = _post_stage(fused, [t_out] + fused_types)
    if post is None:
        return None
    t_final = fused_types[-1] if fused else t_out
    # Exactness with the offset: sums of w * (x - z) plus bias + z * sum(w) must fit int32.
    w_abs = np.abs(layer.weight.astype(object)).reshape(layer.weight.shape[0], -1).sum(axis=1)
    wsum = layer.weight.astype(object).reshape(layer.weight.shape[0], -1).sum(axis=1)
    bias = np.zeros(layer.weight.shape[0], dtype=object) if layer.bias is None else layer.bias.astype(object)
    if offset:
        z = max(abs(t_in.lo), abs(t_in.hi))
        if max(np.abs(bias) + np.abs(wsum) * z + w_abs * (t_in.hi - t_in.lo)) > ir.INT32[1]:
            offset = False
    # Any order of the sums is exact: every partial sum lies within |bias| + sum |w| * max |x|
    # (ir.validate's bound; with the offset, the check above). A fused pool compares the values
    # golden's pool compares (the kernel may take the maximum before a ReLU and floor shift,
    # which are non-decreasing: the same result).
    sparse = offset or t_in.lo >= 0
    # with the offset, the kernel reads the int32 plane x - z that the step's prologue wrote
    t_x = "int32" if offset else t_in.dtype
    fixed = _conv3x3_extent(layer, t_out, post)

    def render(em: Emitter, i: int, p: Pointers) -> str:
        assert p.channel == "c" and p.x_is_plane is not None
        c, h, wd = t_in.shape
        co, oh, ow = t_out.shape
        x = f"(const int32_t *){p.scratch}" if offset else p.x
        if not p.x_is_plane and layer.groups > 1:
            group = "c" if co == layer.groups else f"(c / {co // layer.groups}u)"
            x = f"{x} + {group} * {h * wd}u"  # this channel's plane (of the offset copy too)
        b = em.bias(i, layer)
        bias_expr = "0" if b == "0" else f"{b}[c]"
        if offset:  # sum w x = sum w (x - z) + z * sum w
            ws = em.array("int32_t", f"ws{i}", int_lines(np.array(wsum, dtype=np.int64)), 4 * len(wsum), i)
            bias_expr = f"{bias_expr} + z * {ws}[c]"
        rq_index = i + 1 + next((k for k, f in enumerate(fused) if f.kind == "requant"), 0)
        if fixed:
            return _conv3x3_call(em, i, layer, t_x, t_final.dtype, wd, fixed, post, rq_index, sparse,
                                 bias_expr, x, p.y)
        fn = f"bg_conv2d_plane_{SUFFIX[t_x]}_{SUFFIX[t_final.dtype]}"
        w = em.weights(i, layer)
        shape = em.struct("bg_conv_shape_t", f"conv{i}", [1, h, wd, 1, oh, ow, kh, kw, 1, 1, 0, 0, 1])
        row = encodings.get(layer.encoding).row_bytes(kh * kw)
        post_arg = "0"
        if fused:
            rq, j = post["requant"], rq_index
            m = sh = "0"
            if rq is not None:
                m = em.array("int32_t", f"m{j}", int_lines(rq.multiplier), 4 * rq.multiplier.size, j)
                sh = em.array("uint8_t", f"s{j}", int_lines(rq.shift), rq.shift.size, j)
            post_arg = "&" + em.struct("bg_post_t", f"post{i}", [
                m, sh, post["lo"], post["hi"], int(rq is not None and rq.multiplier.size > 1),
                post["relu_before"], int(rq is not None), post["relu_after"],
                int(rq is not None and rq.rounding == "half_up"), post["wide"], post["pool"]])
        return f"{fn}({x}, {p.y}, &{shape}, {w} + c * {row}u, {enc_id(layer)}, {bias_expr}, {post_arg}, c);"

    return Choice(("conv3x3" if fixed else "plane") + ("+offset" if offset else ""),
                  CONV3X3_FILES if fixed else PLANE_FILES, render, per_channel=True,
                  fuses=len(fused), scratch=4 * t_in.size if offset else 0,
                  prologue=f"z = bg_offset_s8(input, {{scratch}}, {t_in.size});" if offset else None)


def _conv3x3_extent(layer: ir.Conv2d, t_out: ir.TensorType, post: dict[str, Any]) -> tuple[int, int] | None:
    """(rows, columns) of outputs that the fixed-shape 3x3 kernel computes for this layer, or
    None where it does not apply (other kernel sizes, planes under 2 columns or 1 row)."""
    if layer.weight.shape[2:] != (3, 3):
        return None
    _, oh, ow = t_out.shape
    rows, cols = (oh & ~1, ow & ~1) if post["pool"] else (oh, ow)
    return (rows, cols) if rows >= 1 and cols >= 2 else None


def _conv3x3_call(em: Emitter, i: int, layer: ir.Conv2d, in_dtype: str, out_dtype: str, width: int,
                  extent: tuple[int, int], post: dict[str, Any], rq_index: int, sparse: bool,
                  bias_expr: str, x: str, y: str) -> str:
    """An instance of bg_conv3x3.inc for layer i (its shapes and output stage as constants),
    added to the emitted source, and the call that computes channel c with it. rq_index: the
    fused requantization's layer (its parameters are attributed to it)."""
    co = layer.weight.shape[0]
    tap = "int8_t" if layer.weight.min() >= -128 and layer.weight.max() <= 127 else "int16_t"  # FP1.3.0: 128
    taps = em.array(tap, f"k{i}", int_lines(layer.weight.reshape(co, 9)), 9 * co * (1 if tap == "int8_t" else 2), i)
    rq = post["requant"]
    m_expr = sh_expr = "0"
    per_channel = False
    mult, shift = 1, 0
    if rq is not None:
        mults, shifts = {int(v) for v in rq.multiplier}, {int(v) for v in rq.shift}
        if len(mults) == 1 and len(shifts) == 1:
            mult, shift = mults.pop(), shifts.pop()
        else:  # the channel's own, as arguments
            per_channel = True
            m = em.array("int32_t", f"m{rq_index}", int_lines(rq.multiplier), 4 * rq.multiplier.size, rq_index)
            sh = em.array("uint8_t", f"s{rq_index}", int_lines(rq.shift), rq.shift.size, rq_index)
            m_expr = f"{m}[c]" if rq.multiplier.size > 1 else f"{m}[0]"
            sh_expr = f"{sh}[c]" if rq.shift.size > 1 else f"{sh}[0]"
    fn = f"{em.name}_conv3x3_{i}"
    params = {
        "NAME": fn, "IN": C_TYPE[in_dtype], "OUT": C_TYPE[out_dtype], "TAP": tap, "W": width,
        "ROWS": extent[0], "COLS": extent[1], "POOL": post["pool"], "SPARSE": int(sparse),
        "BIAS": int(bias_expr != "0"),
        "RELU_BEFORE": post["relu_before"], "REQUANT": int(rq is not None), "WIDE": post["wide"],
        "HALF_UP": int(rq is not None and rq.rounding == "half_up"),
        "LO": c_int(post["lo"]), "HI": c_int(post["hi"]), "RELU_AFTER": post["relu_after"],
        "MULT": mult, "SHIFT": shift,
    }
    lines = [f"/* layer {i}: 3x3 convolution, {extent[0]}x{extent[1]} outputs of one channel per call */"]
    lines += [f"#define BG_C3_{k} {v}" for k, v in params.items()]
    if per_channel:
        lines.append("#define BG_C3_PER_CHANNEL")
    lines.append('#include "bg_conv3x3.inc"')
    em.functions.append("\n".join(lines))
    return f"{fn}({x}, {y}, {taps} + c * 9u, {bias_expr}, {m_expr}, {sh_expr});"


def plane_conv_group(model: ir.Model, types: list[ir.TensorType], i: int, last: int, target: str) -> Choice | None:
    """For a conv at i inside a channel-by-channel step ending at `last`: the plane kernel
    fused with as many following ReLU/Requant layers (and a 2x2 max pool after them) as it can
    take, or None."""
    if target not in HAS_MULTIPLIER:
        return None
    layer = model.layers[i]
    offset = reads_model_input(model, i) and types[0].lo < 0 and types[0].dtype == "int8"
    best = None
    for n in range(0, 5):
        if i + n > last:
            break
        fused = model.layers[i + 1 : i + 1 + n]
        if any(not isinstance(f, (ir.ReLU, ir.Requant, ir.MaxPool2d)) for f in fused):
            break
        choice = _plane_conv(layer, types[i], types[i + 1], list(fused), types[i + 2 : i + 2 + n], offset)
        if choice is not None:
            best = choice
        if fused and isinstance(fused[-1], ir.MaxPool2d):  # nothing is fused after a pool
            break
    return best


def reads_model_input(model: ir.Model, index: int) -> bool:
    """Whether layer `index` reads the model's input (only flattens before it)."""
    return all(isinstance(layer, ir.Flatten) for layer in model.layers[:index])


def choose(layer: ir.Layer, t_in: ir.TensorType, t_out: ir.TensorType, target: str, first: bool,
           lut_chunk: int | None = None) -> Choice:
    """The kernel for `layer` on `target` when it runs on its own (see plane_conv_group for
    convolutions inside channel-by-channel steps). `first`: the layer reads the model input;
    `lut_chunk`: tables per pass of the LUT kernel, if not the target's default."""
    if target not in TARGETS:
        raise KernelError(f"unknown target '{target}' (available: {', '.join(TARGETS)})")
    if target == "cortex-m4" and isinstance(layer, ir.Linear):
        simd = _simd_linear(layer, t_in)
        if simd is not None:
            return simd
    if target != "generic" and isinstance(layer, ir.Linear):
        enc = encodings.get(layer.encoding)
        if target == "rv32ec" or enc.bits <= 4:
            # Offsetting by the minimum pays where inputs are signed: the model input (images
            # have a constant background); ReLU-like outputs are already >= 0.
            lut = _lut_linear(layer, t_in, offset=first and t_in.lo < 0,
                              max_chunk=lut_chunk or LUT_CHUNK[target])
            if lut is not None:
                return lut
    return _generic(layer, t_in, t_out)
