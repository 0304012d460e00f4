"""One layer of the MAX78000's CNN accelerator: element-wise op, pooling, convolution and output
stage in one step, with the accelerator's own arithmetic (the ``max78000`` dialect of the IR).

The accelerator computes a layer in a fixed order, and every step has its own rounding; this op
states that order and those roundings exactly, as ADI's synthesis tool (izer, ai8x-synthesis)
simulates them and as ``../shared/reference/max78000.md`` section 1 records them:

1. element-wise op over the operands (``eltwise``, only when ``pool_first`` is False),
2. pooling of each operand (``pool``), no padding,
3. element-wise op over the operands (``eltwise``, when ``pool_first``, the default),
4. the operator: ``conv2d``, ``conv1d``, ``convtranspose2d``, ``linear`` or ``passthrough``,
5. the output stage: shift with one rounding, clamp, activation (or the raw 32-bit sum).

Values are Q7 int8 (``v / 128``); weights are integers of ``weight_bits`` bits (8: -128..127,
4: -8..7, 2: -2..1, 1: -1..0). The bias is the hardware's byte per output channel and enters the
sum as ``128 * bias``. ``output_shift`` is the YAML's (and the checkpoint's) value; the hardware
shifts by ``output_shift + 8 - weight_bits`` (izer adds that implicit shift for narrow weights).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from ..ir.types import INT8, INT32, IRError, TensorType, int_array, pair
from .base import Op, fit

OPERATIONS = ("conv2d", "conv1d", "convtranspose2d", "linear", "passthrough")
ELTWISE = ("none", "add", "sub", "xor", "or")
POOLS = ("none", "max", "avg")
ACTIVATIONS = ("none", "relu", "abs")
WEIGHT_RANGE = {8: (-128, 127), 4: (-8, 7), 2: (-2, 1), 1: (-1, 0)}
BIAS_SCALE = 128  # the bias byte enters the accumulator times 128 (izer: tc.dev.BIAS_DIV)
SHIFT_RANGE = (-15, 15)  # of the effective shift (POST register: sign and 4 bits)


@dataclass(eq=False)
class Max78000Layer(Op):
    """One accelerator layer (see the module docstring for the order of its steps).

    Inputs: ``operands`` int8 tensors of one shape, (C, H, W), or (C, L) for ``conv1d``.

    * ``eltwise`` (add, sub, xor, or) folds the operands left to right in exact integers and
      clamps once, to int8 (add/sub saturate; xor/or of int8 stay int8).
    * ``pool`` max or avg over ``pool_size`` windows with ``pool_stride``, no padding, output
      ``(H - k) // s + 1``. Average: the window sum divided by its size, truncated toward zero,
      or with ``avg_pool_rounding`` rounded half away from zero (izer's ``--avg-pool-rounding``;
      1-D pooling always truncates, as izer).
    * ``conv2d``: cross-correlation, zero padding ``padding``, stride 1; ``weight`` (O, C, k, k).
      ``conv1d``: kernel 1..9, zero padding, ``dilation``; ``weight`` (O, C, k).
      ``convtranspose2d``: stride 2, ``output_padding``: the input zero-stuffed
      (``(H - 1) * 2 + 1``), padded by ``k - 1 - padding`` (plus ``output_padding`` at the
      bottom/right) and correlated with ``weight`` (O, C, 3, 3) at stride 1 (the hardware's
      kernel: PyTorch's ``ConvTranspose2d`` weight flipped and transposed); output
      ``2 * H - 2 * padding + 2``.
      ``linear``: ``weight`` (O, C*H*W) over the (``flatten``-ed, C order) input; output (O, 1, 1).
      ``passthrough``: the data as it is.
    * ``acc = sum(x * w) + 128 * bias`` exactly (int32: validate proves it).
    * 8-bit output: ``y = clamp(floor(acc * 2**s / 128 + 1/2), -128, 127)`` with
      ``s = output_shift + 8 - weight_bits`` (one rounding, half toward +inf); then ReLU
      ``clamp(y, 0, 127)`` or Abs ``clamp(|y|, 0, 127)`` (so Abs(-128) = 127).
      ``output_width`` 32: ``y = acc``, int32 (no shift, rounding, clamp or activation).
      A passthrough layer outputs the (pooled, element-wise) data unchanged (no activation).
    """

    kind: ClassVar[str] = "max78000_layer"
    operation: str = "conv2d"
    weight: np.ndarray | None = None
    weight_bits: int = 8
    bias: np.ndarray | None = None
    output_shift: int = 0
    activation: str = "none"
    output_width: int = 8
    padding: int = 1
    dilation: int = 1
    output_padding: int = 1
    flatten: bool = False
    pool: str = "none"
    pool_size: tuple[int, int] = (1, 1)
    pool_stride: tuple[int, int] = (1, 1)
    avg_pool_rounding: bool = False
    eltwise: str = "none"
    operands: int = 1
    pool_first: bool = True
    packed_operands: bool = False  # one input holding the operands as channel blocks (izer's layout)
    name: str = ""

    def __post_init__(self) -> None:
        if self.weight is not None:
            self.weight = int_array(self.weight, "max78000 layer weight")
        if self.bias is not None:
            self.bias = int_array(self.bias, "max78000 layer bias")
        for f in ("weight_bits", "output_shift", "output_width", "padding", "dilation", "output_padding",
                  "operands"):
            setattr(self, f, int(getattr(self, f)))
        for f in ("flatten", "avg_pool_rounding", "pool_first", "packed_operands"):
            setattr(self, f, bool(getattr(self, f)))
        self.pool_size, self.pool_stride = pair(self.pool_size), pair(self.pool_stride)
        self.operation, self.activation = str(self.operation).lower(), str(self.activation).lower()
        self.pool, self.eltwise = str(self.pool).lower(), str(self.eltwise).lower()

    # ------------------------------------------------------------------ shape of the steps
    @property
    def arity(self) -> int:  # type: ignore[override]
        return 1 if self.packed_operands else self.operands

    def split(self, xs: tuple) -> tuple:
        """The operands of inputs ``xs``: the inputs, or the channel blocks of a packed input."""
        if not self.packed_operands:
            return xs
        x = xs[0]
        c = x.shape[0] if isinstance(x, TensorType) else x.shape[1]
        if c % self.operands:
            raise IRError(f"a packed input of {c} channels does not split into {self.operands} operands")
        if isinstance(x, TensorType):
            return tuple(TensorType((c // self.operands,) + x.shape[1:], x.dtype, x.lo, x.hi)
                         for _ in range(self.operands))
        return tuple(np.split(x, self.operands, axis=1))

    @property
    def shift(self) -> int:
        """The effective shift of the output stage (what the POST register holds)."""
        return self.output_shift + 8 - self.weight_bits

    @property
    def is_1d(self) -> bool:
        return self.operation == "conv1d"

    @property
    def has_weights(self) -> bool:
        return self.operation != "passthrough"

    @property
    def pooling(self) -> bool:
        return self.pool != "none"

    @property
    def out_channels(self) -> int:
        assert self.weight is not None
        return int(self.weight.shape[0])

    def pooled_shape(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        if not self.pooling:
            return shape
        if self.is_1d:
            c, n = shape
            return (c, (n - self.pool_size[0]) // self.pool_stride[0] + 1)
        c, h, w = shape
        (kh, kw), (sh, sw) = self.pool_size, self.pool_stride
        return (c, (h - kh) // sh + 1, (w - kw) // sw + 1)

    def _check(self, ts: tuple[TensorType, ...]) -> tuple[int, ...]:
        """Checks the fields against the inputs; returns the shape the operator sees."""
        if self.operation not in OPERATIONS:
            raise IRError(f"operation must be one of {', '.join(OPERATIONS)}; got '{self.operation}'")
        if self.eltwise not in ELTWISE or self.pool not in POOLS or self.activation not in ACTIVATIONS:
            raise IRError(f"eltwise/pool/activation '{self.eltwise}'/'{self.pool}'/'{self.activation}' unknown "
                          f"(eltwise: {', '.join(ELTWISE)}; pool: {', '.join(POOLS)}; activation: "
                          f"{', '.join(ACTIVATIONS)})")
        if self.weight_bits not in WEIGHT_RANGE:
            raise IRError(f"weight_bits must be 1, 2, 4 or 8, not {self.weight_bits}")
        if (self.eltwise == "none") != (self.operands == 1) or not 1 <= self.operands <= 16:
            raise IRError(f"an element-wise op takes 2..16 operands, a layer without one takes 1 "
                          f"(eltwise '{self.eltwise}', operands {self.operands})")
        if not self.pool_first and (self.eltwise == "none" or not self.pooling):
            raise IRError("pool_first False needs both pooling and an element-wise op")
        shape = ts[0].shape
        for t in ts:
            if t.dtype != "int8":
                raise IRError(f"the accelerator's data is int8; an input is {t.dtype}")
            if t.shape != shape:
                raise IRError(f"operands have shapes {ts[0].shape} and {t.shape}; they must be equal")
        if len(shape) != (2 if self.is_1d else 3):
            raise IRError(f"{self.operation} expects a {'(C, L)' if self.is_1d else '(C, H, W)'} input, "
                          f"got shape {shape}")
        if self.pooling:
            if min(*self.pool_size, *self.pool_stride) < 1:
                raise IRError("pool size and stride must be >= 1")
            if self.is_1d and (self.pool_size[1], self.pool_stride[1]) != (1, 1):
                raise IRError("1-D pooling: pool_size and pool_stride are (k, 1)")
            if self.pool_size[0] > shape[1] or (not self.is_1d and self.pool_size[1] > shape[2]):
                raise IRError(f"pool {self.pool_size} is larger than the input {shape[1:]}")
        elif (self.pool_size, self.pool_stride) != ((1, 1), (1, 1)):
            # a 1x1 "pool" with a stride subsamples: written as pool 'max' of size 1
            raise IRError("pool_size/pool_stride given without pool (use pool 'max' with size 1 to subsample)")
        if self.output_width not in (8, 32):
            raise IRError(f"output_width must be 8 or 32, not {self.output_width}")
        if self.output_width == 32 and (self.activation != "none" or self.operation == "passthrough"):
            raise IRError("32-bit output: no activation, and not on a passthrough layer")
        lo, hi = SHIFT_RANGE
        if self.has_weights and not lo <= self.shift <= hi:
            raise IRError(f"output_shift {self.output_shift} with {self.weight_bits}-bit weights gives a shift of "
                          f"{self.shift}, outside {lo}..{hi}")
        if not self.has_weights and self.output_shift != 0:
            raise IRError("a passthrough layer has output_shift 0")
        return self.pooled_shape(shape)

    def _weight_shape(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        """The weight shape the operator expects, with its output channels from the weight."""
        w = self.weight
        if w is None:
            raise IRError(f"{self.operation} needs a weight")
        o = int(w.shape[0]) if w.ndim else 0
        if self.operation == "linear":
            n = int(np.prod(shape)) if self.flatten else shape[0]
            return (o, n)
        k = w.shape[2] if w.ndim >= 3 else 0
        if self.operation == "conv1d":
            return (o, shape[0], k)
        return (o, shape[0], k, k)

    def infer(self, *ts: TensorType) -> TensorType:
        if len(ts) != self.arity:
            raise IRError(f"takes {self.arity} input(s), given {len(ts)}")
        if self.packed_operands and self.operands == 1:
            raise IRError("packed_operands needs an element-wise op")
        ts = self.split(ts)
        shape = self._check(ts)
        t = ts[0]
        lo, hi = (min(x.lo for x in ts), max(x.hi for x in ts)) if self.eltwise == "none" else INT8
        if self.operation == "passthrough":
            if self.weight is not None or self.bias is not None or self.flatten:
                raise IRError("a passthrough layer has no weight, bias or flatten")
            if self.activation != "none":
                raise IRError("a passthrough layer has no activation (izer computes none there)")
            return TensorType(shape, "int8", lo, hi)
        want = self._weight_shape(shape)
        w = self.weight
        assert w is not None
        if tuple(w.shape) != want:
            raise IRError(f"{self.operation} weight has shape {tuple(w.shape)}, expected {want}")
        if w.shape[0] < 1:
            raise IRError("a layer needs at least one output channel")
        wlo, whi = WEIGHT_RANGE[self.weight_bits]
        if w.size and (w.min() < wlo or w.max() > whi):
            raise IRError(f"{self.weight_bits}-bit weights must lie in {wlo}..{whi}")
        if self.bias is not None:
            if self.bias.shape != (w.shape[0],):
                raise IRError(f"bias has shape {tuple(self.bias.shape)}, expected ({w.shape[0]},)")
            if self.bias.size and (self.bias.min() < -128 or self.bias.max() > 127):
                raise IRError("the bias is the hardware's byte: -128..127 per output channel")
        if self.flatten and self.operation != "linear":
            raise IRError("flatten is for a linear layer")
        if self.operation == "linear" and not self.flatten and (len(shape) != 3 or shape[1:] != (1, 1)):
            raise IRError(f"linear without flatten takes (C, 1, 1) data, got {shape}")
        if self.pooling and self.flatten:
            raise IRError("flatten and pooling cannot be in one layer")
        out_shape = self._out_shape(shape)
        if min(out_shape) < 1:
            raise IRError(f"{self.operation} with kernel {tuple(w.shape[2:])} and padding {self.padding} leaves "
                          f"no output for input {shape[1:]}")
        if self.operation in ("conv2d", "conv1d", "convtranspose2d"):
            if self.padding < 0 or self.dilation < 1:
                raise IRError("padding must be >= 0 and dilation >= 1")
            if self.dilation != 1 and self.operation != "conv1d":
                raise IRError("dilation is for conv1d only")
        if self.operation == "convtranspose2d" and (w.shape[2] != 3 or self.padding > 2 or self.output_padding != 1):
            raise IRError("convtranspose2d: kernel 3x3, padding 0..2, output_padding 1")
        acc_lo, acc_hi = self._acc_range(lo, hi)
        if self.output_width == 32:
            return TensorType(out_shape, "int32", acc_lo, acc_hi)
        return self._activated(out_shape, self._stage(acc_lo), self._stage(acc_hi))

    def _out_shape(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        o = self.out_channels
        if self.operation == "linear":
            return (o, 1, 1)
        k, p = int(self.weight.shape[2]), self.padding  # type: ignore[union-attr]
        if self.operation == "conv1d":
            return (o, shape[1] + 2 * p - self.dilation * (k - 1))
        if self.operation == "conv2d":
            return (o, shape[1] + 2 * p - k + 1, shape[2] + 2 * p - k + 1)
        return (o, 2 * shape[1] - 2 * p + k - 1 + self.output_padding - 1,
                2 * shape[2] - 2 * p + k - 1 + self.output_padding - 1)

    def _acc_range(self, lo: int, hi: int) -> tuple[int, int]:
        """The exact interval of the accumulator for inputs in [lo, hi] (0 joins it: padding),
        after proving every partial sum fits int32."""
        from ..ir.bounds import partial_sum_bound

        w = self.weight.reshape(self.weight.shape[0], -1).astype(object)  # type: ignore[union-attr]
        b = (np.zeros(w.shape[0], dtype=object) if self.bias is None
             else self.bias.astype(object) * BIAS_SCALE)
        lo, hi = min(lo, 0), max(hi, 0)
        worst = partial_sum_bound(self.weight, None if self.bias is None else self.bias * BIAS_SCALE,
                                  max(abs(lo), abs(hi)))
        if worst > INT32[1]:
            raise IRError(f"the accumulator may leave int32 (bound {worst})")
        pos, neg = np.where(w > 0, w, 0), np.where(w < 0, w, 0)
        top = b + (pos * hi).sum(axis=1) + (neg * lo).sum(axis=1)
        bottom = b + (pos * lo).sum(axis=1) + (neg * hi).sum(axis=1)
        return int(min(bottom)), int(max(top))

    def _stage(self, acc: int) -> int:
        """The 8-bit output stage of one accumulator value, before the activation."""
        k = 7 - self.shift
        v = (acc + (1 << (k - 1))) >> k if k > 0 else acc << -k
        return min(max(v, INT8[0]), INT8[1])

    def _activated(self, shape: tuple[int, ...], lo: int, hi: int) -> TensorType:
        if self.activation == "relu":
            lo, hi = max(lo, 0), max(hi, 0)
        elif self.activation == "abs":
            lo, hi = (0 if lo <= 0 <= hi else min(abs(lo), abs(hi), 127)), min(max(abs(lo), abs(hi)), 127)
        return TensorType(shape, "int8", lo, hi)

    # ------------------------------------------------------------------ golden
    def golden(self, *xs: np.ndarray) -> np.ndarray:
        """The layer's output for operand batches ``xs`` (N, C, H, W) / (N, C, L); see the class
        docstring for every step's rounding and saturation."""
        return self.stages(*xs)["output"]

    def stages(self, *xs: np.ndarray) -> dict[str, np.ndarray | None]:
        """Every step's result, as izer logs them: ``pooled`` (operands, N, ...) or None without
        pooling, ``eltwise`` (the operator's input), ``acc`` (the full-resolution sum, int64) or
        None for passthrough, ``output``."""
        data = [x.astype(np.int64) for x in self.split(xs)]
        if self.eltwise != "none" and not self.pool_first:
            data = [self._eltwise(data)]
        pooled = [self._pool(x) for x in data] if self.pooling else None
        if pooled is not None:
            data = pooled
        data_in = self._eltwise(data) if self.eltwise != "none" and self.pool_first else data[0]
        if self.operation == "passthrough":
            return {"pooled": None if pooled is None else np.stack(pooled), "eltwise": data_in, "acc": None,
                    "output": fit(data_in, "int8", "max78000 passthrough")}
        acc = self._operator(data_in)
        if self.bias is not None:
            acc = acc + (self.bias.astype(np.int64) * BIAS_SCALE).reshape((1, -1) + (1,) * (acc.ndim - 2))
        if self.output_width == 32:
            out = fit(acc, "int32", "max78000 layer")
        else:
            k = 7 - self.shift
            y = (acc + (1 << (k - 1))) >> k if k > 0 else acc << -k
            out = fit(self._activate(np.clip(y, *INT8)), "int8", "max78000 layer")
        return {"pooled": None if pooled is None else np.stack(pooled), "eltwise": data_in, "acc": acc,
                "output": out}

    def _eltwise(self, data: list[np.ndarray]) -> np.ndarray:
        y = data[0]
        for x in data[1:]:
            if self.eltwise == "add":
                y = y + x
            elif self.eltwise == "sub":
                y = y - x
            elif self.eltwise == "xor":
                y = np.bitwise_xor(y, x)
            else:
                y = np.bitwise_or(y, x)
        return np.clip(y, *INT8)

    def _pool(self, x: np.ndarray) -> np.ndarray:
        (kh, kw), (sh, sw) = self.pool_size, self.pool_stride
        if self.is_1d:
            win = sliding_window_view(x, kh, axis=2)[:, :, ::sh]
        else:
            win = sliding_window_view(x, (kh, kw), axis=(2, 3))[:, :, ::sh, ::sw]
            win = win.reshape(win.shape[:4] + (-1,))
        if self.pool == "max":
            return win.max(axis=-1)
        n = kh * (1 if self.is_1d else kw)
        s = win.sum(axis=-1)
        if self.avg_pool_rounding and not self.is_1d:  # half away from zero
            q = (2 * np.abs(s) + n) // (2 * n)
        else:  # truncated toward zero
            q = np.abs(s) // n
        return np.sign(s) * q

    def _operator(self, x: np.ndarray) -> np.ndarray:
        """The exact sum of products (int64), without the bias."""
        w = self.weight.astype(np.int64)  # type: ignore[union-attr]
        n = x.shape[0]
        if self.operation == "linear":
            v = x.reshape(n, -1)
            return (v @ w.T).reshape(n, -1, 1, 1)
        p = self.padding
        if self.operation == "conv1d":
            k, d = w.shape[2], self.dilation
            xp = np.pad(x, ((0, 0), (0, 0), (p, p)))
            span = d * (k - 1) + 1
            win = sliding_window_view(xp, span, axis=2)[..., ::d]  # N C L k
            return np.einsum("nclk,ock->nol", win, w, optimize=True)
        if self.operation == "convtranspose2d":
            h, wd = x.shape[2:]
            stuffed = np.zeros((n, x.shape[1], 2 * h - 1, 2 * wd - 1), dtype=np.int64)
            stuffed[:, :, ::2, ::2] = x
            q, op = w.shape[2] - 1 - p, self.output_padding
            xp = np.pad(stuffed, ((0, 0), (0, 0), (q, q + op), (q, q + op)))
        else:
            xp = np.pad(x, ((0, 0), (0, 0), (p, p), (p, p)))
        k = w.shape[2]
        win = sliding_window_view(xp, (k, k), axis=(2, 3))  # N C OH OW k k
        return np.einsum("ncijuv,ocuv->noij", win, w, optimize=True)

    def _activate(self, y: np.ndarray) -> np.ndarray:
        if self.activation == "relu":
            return np.clip(y, 0, 127)
        if self.activation == "abs":
            return np.clip(np.abs(y), 0, 127)
        return y

    def macs(self, t_out: TensorType) -> int:
        if self.weight is None:
            return 0
        return t_out.size * int(np.prod(self.weight.shape[1:]))
