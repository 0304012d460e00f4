"""Quantized ONNX models -> the integer IR (files read with the ``onnx`` package).

Two forms of integer ONNX are read, and may be mixed:

* QOperator: ``QLinearConv``, ``QLinearMatMul``, ``ConvInteger``, ``MatMulInteger`` (and
  ``QLinearAdd`` from the ``com.microsoft`` domain);
* QDQ: ``DequantizeLinear`` -> ``Conv`` / ``Gemm`` / ``MatMul`` (-> ``Relu`` / ``Clip``) ->
  ``QuantizeLinear``, ``Add`` between two dequantized tensors, and ``MaxPool``, ``Flatten``,
  ``Reshape`` to (N, -1) and ``Concat`` of tensors of one scale, which move quantized values
  without changing them.

uint8 tensors become int8 ones (value - 128, zero point - 128). A ``QuantizeLinear`` of the
float graph input is the model's input specification (scale, zero point); a
``DequantizeLinear`` of the output leaves the output quantized (its scale and zero point are in
``meta["onnx"]``). Leading dimensions are the batch: a (N, C, H, W) input is a (C, H, W) sample,
the rows of a (.., M, K) MatMul input are samples of K values.

Arithmetic (what the golden model then specifies, bit for bit):

* convolutions and matrix products: exact int32 sums of ``(w - w_zero_point) * (x -
  x_zero_point)`` plus the int32 bias (ONNX pads with the input's zero point: an input with a
  zero point other than 0 is first offset into an int32 tensor, then zero-padded; weights
  whose ``w - w_zero_point`` leaves int8 are split into an int8 part and a multiple of an
  all-ones kernel);
* requantization as ONNX Runtime's CPU kernels do it: the scale ``x_scale * w_scale[c] /
  y_scale`` evaluated in float32 (product, then quotient), the int32 sum converted to float32,
  multiplied in float32, rounded to an integer ties to even, plus the output zero point,
  saturated (:class:`~bitgen.ir.Requant`'s ``fp32`` rounding reproduces every float rounding in
  integers); a ``Relu`` / ``Clip`` before the ``QuantizeLinear`` narrows the saturation range;
* additions (``QLinearAdd``, QDQ ``Add``) as ONNX Runtime's CPU kernel: the scale ratios
  ``fl32(s_a / s_c)``, ``fl32(s_b / s_c)`` as 22-bit integer multipliers ``A``, ``B`` of ``2**-S``
  (S = 21 minus the larger ratio's exponent), ``round_half_away_from_zero((A (a - za) + B (b -
  zb)) / 2**S) + zc``, saturated.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .. import ir
from .errors import ModelImportError

INT8 = ir.INT8


@dataclass
class QTensor:
    """An int8 tensor of the IR standing for an ONNX (u)int8 tensor: IR value = ONNX value - offset."""

    ir: str
    offset: int  # 128 for uint8, 0 for int8
    shape: tuple[int, ...]  # per sample
    scale: np.ndarray | None = None  # float32, from the op that wrote it (None for a raw input)
    zero_point: int | None = None  # ONNX's own (uint8 or int8 value)


@dataclass
class Pending:
    """An int32 sum of a QDQ Conv / Gemm / MatMul, waiting for its QuantizeLinear."""

    ir: str
    shape: tuple[int, ...]
    x_scale: np.float32
    w_scale: np.ndarray  # float32 per output channel
    relu: bool = False
    clip: tuple[float, float] | None = None


@dataclass
class Int32:
    """An int32 tensor that is an output of its own (ConvInteger, MatMulInteger)."""

    ir: str
    shape: tuple[int, ...]


def _require_onnx():
    try:
        import onnx
        from onnx import numpy_helper
    except ImportError:
        raise ModelImportError("reading ONNX files needs the onnx package: pip install onnx") from None
    return onnx, numpy_helper


def output_scale(x_scale: Any, w_scale: Any, y_scale: Any) -> np.ndarray:
    """The float32 requantization scale of each output channel as ONNX Runtime forms it:
    ``x_scale * w_scale`` rounded to float32, divided by ``y_scale``, rounded to float32."""
    xs, ws, ys = (np.asarray(v, dtype=np.float32) for v in (x_scale, w_scale, y_scale))
    return ((xs * ws).astype(np.float32) / ys).astype(np.float32)


def _scale_parts(scale: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(multiplier, shift) with ``multiplier / 2**shift`` equal to each float32 ``scale``."""
    s = np.atleast_1d(np.asarray(scale, dtype=np.float32)).astype(np.float64)
    if np.any(~np.isfinite(s)) or np.any(s <= 0):
        raise ModelImportError(f"requantization scale {s.tolist()} must be positive and finite")
    mant, e = np.frexp(s)
    m, sh = (mant * 2**24).astype(np.int64), (24 - e).astype(np.int64)
    if np.any(sh < 0):
        raise ModelImportError("a requantization scale of 2**24 or more is not supported")
    tiny = sh > 62  # |x * scale| < 2**-7: always rounds to 0, as 1 / 2**62 does
    return np.where(tiny, 1, m), np.where(tiny, 62, sh)


class _Importer:
    def __init__(self, model: Any, path: Path):
        onnx, self.nh = _require_onnx()
        self.path = path
        try:
            model = onnx.shape_inference.infer_shapes(model)
        except Exception:  # shapes are optional help; the ops' own checks follow
            pass
        self.model = model
        g = model.graph
        self.consts: dict[str, np.ndarray] = {t.name: self.nh.to_array(t) for t in g.initializer}
        self.shapes: dict[str, tuple] = {}
        for vi in list(g.input) + list(g.value_info) + list(g.output):
            dims = vi.type.tensor_type.shape.dim
            self.shapes[vi.name] = tuple(d.dim_value if d.HasField("dim_value") else -1 for d in dims)
        self.dtypes = {vi.name: vi.type.tensor_type.elem_type for vi in list(g.input) + list(g.output)}
        self.values: dict[str, Any] = {}  # ONNX tensor -> QTensor / Pending / Int32 / ("dq", QTensor)
        self.nodes: list[ir.Node] = []
        self.count = 0
        self.spec: ir.InputSpec | None = None
        self.out_info: dict[str, Any] = {}
        self.dq_consts: dict[str, Any] = {}  # DequantizeLinear outputs of constants -> the DQ node

    # ------------------------------------------------------------------ helpers
    def fail(self, node: Any, why: str) -> ModelImportError:
        name = f"'{node.name}' " if node.name else ""
        return ModelImportError(f"{self.path}: node {name}({node.op_type}): {why}")

    def tensor(self) -> str:
        self.count += 1
        return f"t{self.count}"

    def emit(self, op: ir.Op, inputs: list[str]) -> str:
        out = self.tensor()
        self.nodes.append(ir.Node(op, inputs, out))
        return out

    def const(self, node: Any, name: str, what: str) -> np.ndarray:
        if name not in self.consts:
            raise self.fail(node, f"{what} '{name}' must be a constant (an initializer)")
        return self.consts[name]

    def opt_const(self, node: Any, i: int, what: str) -> np.ndarray | None:
        if i >= len(node.input) or not node.input[i]:
            return None
        return self.const(node, node.input[i], what)

    def attrs(self, node: Any) -> dict[str, Any]:
        import onnx

        return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}

    def qtensor(self, node: Any, name: str) -> QTensor:
        v = self.values.get(name)
        if isinstance(v, QTensor):
            return v
        if name in self.consts:
            raise self.fail(node, f"'{name}' is a constant where a quantized activation is expected")
        raise self.fail(node, f"reads '{name}', which is not a quantized (int8 / uint8) tensor here")

    def dq(self, node: Any, name: str) -> tuple[QTensor, np.ndarray, int]:
        """A dequantized activation: (its tensor, scale, zero point in ONNX's domain)."""
        v = self.values.get(name)
        if isinstance(v, tuple) and v[0] == "dq":
            return v[1], v[2], v[3]
        raise self.fail(node, f"input '{name}' is not the output of a DequantizeLinear of an activation "
                              "(a float tensor: quantize the model, or import it with calibration data)")

    @staticmethod
    def offset_of(arr: np.ndarray) -> int:
        if arr.dtype == np.uint8:
            return 128
        if arr.dtype == np.int8:
            return 0
        raise ModelImportError(f"only int8 and uint8 tensors are supported, got {arr.dtype}")

    def input_spec(self, node: Any, name: str, scale: float = 1.0, zero_point: int | None = None) -> QTensor:
        """The graph input as the model input (first use)."""
        shape = tuple(self.shapes.get(name, ()))[1:]
        if self.spec is not None or not shape or min(shape) < 1:
            raise self.fail(node, f"the graph input '{name}' must have a static shape (N, ...), got {shape}")
        if node.op_type in ("QLinearMatMul", "MatMulInteger", "MatMul", "Gemm") and len(shape) > 1:
            shape = shape[-1:]  # the rows of a batched matrix product are samples
            self.out_info["rows_are_samples"] = True
        return QTensor("input", 0, shape, None, zero_point), shape

    # ------------------------------------------------------------------ arithmetic
    def weights(self, node: Any, w: np.ndarray, zp: np.ndarray | None, axis: int) -> tuple[np.ndarray, int]:
        """``w - zp`` (zp per tensor or along ``axis``) as int8 values ``w8`` and a constant ``k``
        with ``w - zp = w8 + k``: k = 0 where ``w - zp`` fits int8, else ``w8`` is the raw
        weight moved into int8 (uint8 - 128) and k the rest (one zero point for all channels)."""
        raw = w.astype(np.int64)
        z = np.zeros(1, dtype=np.int64) if zp is None else np.asarray(zp).astype(np.int64).ravel()
        zb = z.reshape([z.size if d == axis % w.ndim else 1 for d in range(w.ndim)]) if z.size > 1 else z[0]
        eff = raw - zb
        if eff.min(initial=0) >= INT8[0] and eff.max(initial=0) <= INT8[1]:
            return eff, 0
        if np.unique(z).size != 1:
            raise self.fail(node, "weights minus their per-channel zero points leave int8")
        off = self.offset_of(w)
        return raw - off, off - int(z[0])

    def accumulate(self, node: Any, x: QTensor, zx: int, w: np.ndarray, ones: int, bias: np.ndarray | None,
                   conv: dict[str, Any] | None) -> str:
        """The int32 tensor ``bias + sum (w + ones) (x - zx)`` (zx in the IR's int8 domain)."""
        src, shift_in = x.ir, zx
        pads = conv["padding"] if conv else (0, 0)
        if conv and zx and any(pads):  # pad with the zero point: offset the input first
            c = x.shape[0]
            src = self.emit(ir.Conv2d(weight=np.ones((c, 1, 1, 1)), encoding="8bit", bias=np.full(c, -zx),
                                      groups=c, name=f"{node.name}_offset"), [x.ir])
            shift_in = 0
        b = np.zeros(w.shape[0], dtype=np.int64) if bias is None else bias.astype(np.int64).ravel()

        def layer(weight: np.ndarray, with_bias: bool, name: str) -> ir.Op:
            bb = (b if with_bias else 0) - shift_in * weight.reshape(weight.shape[0], -1).sum(axis=1)
            if conv:
                return ir.Conv2d(weight=weight, encoding="8bit", bias=bb, stride=conv["stride"], padding=pads,
                                 groups=conv["groups"], name=name)
            return ir.Linear(weight=weight, encoding="8bit", bias=bb, name=name)

        acc = self.emit(layer(w, True, node.name), [src])
        if ones:
            rest = self.emit(layer(np.ones_like(w), False, f"{node.name}_ones"), [src])
            acc = self.emit(ir.Add(scale_a=1, scale_b=abs(ones), shift=0, out_dtype="int32", name=f"{node.name}_sum")
                            if ones > 0 else
                            ir.Sub(scale_a=1, scale_b=-ones, shift=0, out_dtype="int32", name=f"{node.name}_sum"),
                            [acc, rest])
        return acc

    def requant(self, node: Any, acc: str, scale: np.ndarray, y_zp: np.ndarray, shape: tuple[int, ...],
                relu: bool = False, clip: tuple[float, float] | None = None, y_scale: np.float32 | None = None) -> QTensor:
        off = self.offset_of(np.asarray(y_zp))
        zp = int(np.asarray(y_zp).astype(np.int64).ravel()[0])
        m, s = _scale_parts(scale)
        lo, hi = INT8
        if relu:
            lo = max(lo, zp - off)
        if clip is not None:
            ys = np.float32(y_scale)
            lo = max(lo, int(np.rint(np.float32(clip[0]) / ys)) + zp - off)
            hi = min(hi, int(np.rint(np.float32(clip[1]) / ys)) + zp - off)
        out = self.emit(ir.Requant(multiplier=m, shift=s, rounding="fp32", zero_point=zp - off, out_min=lo,
                                   out_max=max(lo, hi), name=f"{node.name}_requant"), [acc])
        return QTensor(out, off, shape, None if y_scale is None else np.float32(y_scale), zp)

    def conv_attrs(self, node: Any, x_shape: tuple[int, ...], kernel: tuple[int, int]) -> dict[str, Any]:
        a = self.attrs(node)
        if any(d != 1 for d in a.get("dilations", [1, 1])):
            raise self.fail(node, "dilations are not supported")
        stride = tuple(a.get("strides", [1, 1]))
        pads = list(a.get("pads", [0, 0, 0, 0]))
        auto = a.get("auto_pad", b"NOTSET")
        auto = auto.decode() if isinstance(auto, bytes) else auto
        if auto in ("SAME_UPPER", "SAME_LOWER"):
            pads = []
            for size, k, st in zip(x_shape[1:], kernel, stride):
                total = max((math.ceil(size / st) - 1) * st + k - size, 0)
                pads.append(total)
            if any(p % 2 for p in pads):
                raise self.fail(node, "auto_pad SAME with uneven padding is not supported")
            pads = [pads[0] // 2, pads[1] // 2] * 2
        elif auto == "VALID":
            pads = [0, 0, 0, 0]
        if len(pads) != 4 or pads[0] != pads[2] or pads[1] != pads[3]:
            raise self.fail(node, f"only symmetric 2-D padding is supported, got pads {pads}")
        return {"stride": stride, "padding": (pads[0], pads[1]), "groups": int(a.get("group", 1))}

    @staticmethod
    def conv_shape(x_shape: tuple[int, ...], w: np.ndarray, c: dict[str, Any]) -> tuple[int, ...]:
        (ph, pw), (sh, sw) = c["padding"], c["stride"]
        return (w.shape[0], (x_shape[1] + 2 * ph - w.shape[2]) // sh + 1, (x_shape[2] + 2 * pw - w.shape[3]) // sw + 1)

    def activation_in(self, node: Any, name: str, x_zp: np.ndarray | None) -> tuple[QTensor, int]:
        """(the input tensor, its zero point in the IR's domain) of a QOperator op."""
        if name not in self.values and self.spec is None and name in self.shapes:
            off = 128 if self.dtypes.get(name) == 2 else 0  # TensorProto.UINT8
            q, shape = self.input_spec(node, name)
            self.spec = ir.InputSpec(shape, scale=1.0, zero_point=-off)
            q.offset = off
            self.values[name] = q
        x = self.qtensor(node, name)
        zx = 0 if x_zp is None else int(np.asarray(x_zp).astype(np.int64).ravel()[0])
        return x, zx - x.offset

    # ------------------------------------------------------------------ ops
    def run(self) -> ir.Model:
        g = self.model.graph
        for node in g.node:
            handler = getattr(self, f"op_{node.op_type}", None)
            if node.domain not in ("", "ai.onnx", "com.microsoft") or handler is None:
                raise self.fail(node, "unsupported operator (bitgen imports quantized Conv, Gemm, MatMul, Add, "
                                      "MaxPool, Flatten, Reshape, Concat and their QOperator forms)")
            handler(node)
        if len(g.output) != 1:
            raise ModelImportError(f"{self.path}: the model must have one output, it has {len(g.output)}")
        out = self.values.get(g.output[0].name)
        if isinstance(out, tuple) and out[0] == "dq":  # dequantized output: keep it quantized
            q, scale, zp = out[1:]
            self.out_info.update(output_scale=float(np.asarray(scale).ravel()[0]), output_zero_point=int(zp),
                                 output_offset=q.offset)
            out = q
        elif isinstance(out, QTensor):
            self.out_info.update(output_offset=out.offset)
        if not isinstance(out, (QTensor, Int32)) or not self.nodes:
            raise ModelImportError(f"{self.path}: the output '{g.output[0].name}' is not an integer tensor "
                                   "bitgen computes")
        if self.nodes[-1].output != out.ir:
            raise ModelImportError(f"{self.path}: the output is not written by the last operator")
        model = ir.Model(input=self.spec, nodes=self.nodes, name=self.path.stem,
                         meta={"source": "ONNX", "file": self.path.name, "onnx": self.out_info})
        try:
            model.validate()
        except ir.IRError as e:
            raise ModelImportError(f"{self.path}: {e}") from None
        if model.is_sequential:
            model = ir.Model(input=model.input, layers=model.layers, name=model.name, meta=model.meta)
        return model

    def op_Constant(self, node: Any) -> None:
        a = node.attribute[0]
        if a.name != "value":
            raise self.fail(node, "only tensor constants are supported")
        self.consts[node.output[0]] = self.nh.to_array(a.t)

    def op_QuantizeLinear(self, node: Any) -> None:
        src = node.input[0]
        scale = self.const(node, node.input[1], "y_scale")
        zp = self.opt_const(node, 2, "y_zero_point")
        zp = np.uint8(0) if zp is None else zp
        off = self.offset_of(np.asarray(zp))
        if np.asarray(scale).size != 1:
            raise self.fail(node, "only per-tensor activation scales are supported")
        v = self.values.get(src)
        if isinstance(v, tuple) and v[0] == "added":  # an Add requantized with this node's parameters
            self.values[node.output[0]] = v[1]
            return
        if isinstance(v, Pending):
            self.values[node.output[0]] = self.requant(
                node, v.ir, output_scale(v.x_scale, v.w_scale, scale.ravel()[0]),
                zp, v.shape, v.relu, v.clip, np.float32(scale.ravel()[0]))
            return
        if isinstance(v, tuple) and v[0] == "dq":  # DQ -> Q of the same parameters: nothing to do
            q, s, z = v[1:]
            if np.float32(s) == np.float32(scale.ravel()[0]) and int(z) == int(zp) and q.offset == off:
                self.values[node.output[0]] = q
                return
            raise self.fail(node, "requantizing an activation to another scale is not supported")
        if src in self.shapes and src not in self.values and self.spec is None:
            q, shape = self.input_spec(node, src, float(scale.ravel()[0]), int(zp))
            self.spec = ir.InputSpec(shape, scale=float(np.float32(scale.ravel()[0])), zero_point=int(zp) - off)
            q.offset, q.scale = off, np.float32(scale.ravel()[0])
            self.values[node.output[0]] = q
            return
        raise self.fail(node, f"quantizes '{src}', which is neither the graph input nor a quantized op's result")

    def op_DequantizeLinear(self, node: Any) -> None:
        if node.input[0] in self.consts:  # weights and biases: their consumer reads the DQ node
            self.dq_consts[node.output[0]] = node
            return
        q = self.qtensor(node, node.input[0])
        scale = self.const(node, node.input[1], "x_scale")
        zp = self.opt_const(node, 2, "x_zero_point")
        zp = 0 if zp is None else int(np.asarray(zp).astype(np.int64).ravel()[0])
        if np.asarray(scale).size != 1:
            raise self.fail(node, "only per-tensor activation scales are supported")
        self.values[node.output[0]] = ("dq", q, np.float32(np.asarray(scale).ravel()[0]), zp)

    def dq_const(self, node: Any, name: str, what: str) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, int]:
        """(quantized values, scale, zero point, axis) of a DequantizeLinear of a constant."""
        dqn = self.dq_consts.get(name)
        if dqn is None:
            raise self.fail(node, f"{what} '{name}' must be a DequantizeLinear of a quantized constant "
                                  "(float weights: quantize the model first)")
        a = self.attrs(dqn)
        return (self.consts[dqn.input[0]], self.const(dqn, dqn.input[1], "scale"),
                self.opt_const(dqn, 2, "zero point"), int(a.get("axis", 1)))

    # QOperator --------------------------------------------------------------
    def op_QLinearConv(self, node: Any) -> None:
        i = node.input
        x, zx = self.activation_in(node, i[0], self.opt_const(node, 2, "x_zero_point"))
        xs = self.const(node, i[1], "x_scale")
        w = self.const(node, i[3], "w")
        ws = self.const(node, i[4], "w_scale")
        wz = self.opt_const(node, 5, "w_zero_point")
        ys, yz = self.const(node, i[6], "y_scale"), self.opt_const(node, 7, "y_zero_point")
        bias = self.opt_const(node, 8, "B")
        self.conv(node, x, zx, w, wz, bias, np.float32(np.asarray(xs).ravel()[0]), ws, ys,
                  np.uint8(0) if yz is None else yz)

    def conv(self, node: Any, x: QTensor, zx: int, w: np.ndarray, wz: Any, bias: Any, xs: np.float32,
             ws: np.ndarray, ys: Any, yz: Any, pending: bool = False) -> None:
        if w.ndim != 4 or len(x.shape) != 3:
            raise self.fail(node, "only 2-D convolutions of (N, C, H, W) tensors are supported")
        c = self.conv_attrs(node, x.shape, w.shape[2:])
        wi, ones = self.weights(node, w, wz, 0)
        acc = self.accumulate(node, x, zx, wi, ones, bias, c)
        shape = self.conv_shape(x.shape, w, c)
        scale = np.broadcast_to(np.asarray(ws, dtype=np.float32).ravel(), (w.shape[0],))
        if pending:
            self.values[node.output[0]] = Pending(acc, shape, xs, scale)
            return
        ysf = np.float32(np.asarray(ys).ravel()[0])
        self.values[node.output[0]] = self.requant(node, acc, output_scale(xs, scale, ysf), yz, shape, y_scale=ysf)

    def op_QLinearMatMul(self, node: Any) -> None:
        i = node.input
        x, zx = self.activation_in(node, i[0], self.opt_const(node, 2, "a_zero_point"))
        xs = np.float32(np.asarray(self.const(node, i[1], "a_scale")).astype(np.float32).ravel()[0])
        b = self.const(node, i[3], "b")
        bs = np.asarray(self.const(node, i[4], "b_scale")).astype(np.float32)
        bz = self.opt_const(node, 5, "b_zero_point")
        ys = np.float32(np.asarray(self.const(node, i[6], "y_scale")).astype(np.float32).ravel()[0])
        yz = self.opt_const(node, 7, "y_zero_point")
        self.matmul(node, x, zx, b, bz, None, xs, bs, ys, np.uint8(0) if yz is None else yz)

    def op_QGemm(self, node: Any) -> None:
        """com.microsoft QGemm: A, a_scale, a_zp, B, b_scale, b_zp, C (int32 bias), y_scale, y_zp."""
        a = self.attrs(node)
        if a.get("transA", 0) or a.get("alpha", 1.0) != 1.0:
            raise self.fail(node, "only QGemm with transA=0 and alpha=1")
        i = node.input
        if len(i) < 9 or not i[7]:
            raise self.fail(node, "only QGemm with a quantized output (y_scale)")
        x, zx = self.activation_in(node, i[0], self.opt_const(node, 2, "a_zero_point"))
        xs = np.float32(np.asarray(self.const(node, i[1], "a_scale")).astype(np.float32).ravel()[0])
        bias = self.opt_const(node, 6, "C")
        ys = np.float32(np.asarray(self.const(node, i[7], "y_scale")).astype(np.float32).ravel()[0])
        yz = self.opt_const(node, 8, "y_zero_point")
        self.matmul(node, x, zx, self.const(node, i[3], "B"), self.opt_const(node, 5, "b_zero_point"), bias, xs,
                    np.asarray(self.const(node, i[4], "b_scale")).astype(np.float32), ys,
                    np.uint8(0) if yz is None else yz, transposed=bool(a.get("transB", 0)))

    def matmul(self, node: Any, x: QTensor, zx: int, b: np.ndarray, bz: Any, bias: Any, xs: np.float32,
               bs: np.ndarray, ys: Any, yz: Any, pending: bool = False, transposed: bool = False) -> None:
        b = self.one_matrix(node, b)
        if b.ndim != 2 or len(x.shape) != 1:
            raise self.fail(node, "only products of vectors (N, K) with a constant (K, M) matrix are supported")
        w, ones = self.weights(node, b if transposed else b.T, bz, 0)
        acc = self.accumulate(node, x, zx, w, ones, bias, None)
        scale = np.broadcast_to(np.asarray(bs, dtype=np.float32).ravel(), (w.shape[0],))
        if pending:
            self.values[node.output[0]] = Pending(acc, (w.shape[0],), xs, scale)
            return
        self.values[node.output[0]] = self.requant(node, acc, output_scale(xs, scale, ys), yz, (w.shape[0],), y_scale=ys)

    def one_matrix(self, node: Any, b: np.ndarray) -> np.ndarray:
        """A batched constant matrix (.., K, M) whose batch entries are all equal: one matrix."""
        if b.ndim <= 2:
            return b
        flat = b.reshape((-1,) + b.shape[-2:])
        if not all(np.array_equal(flat[0], m) for m in flat[1:]):
            raise self.fail(node, "a batched matrix product with different matrices per batch entry")
        return flat[0]

    def op_ConvInteger(self, node: Any) -> None:
        x, zx = self.activation_in(node, node.input[0], self.opt_const(node, 2, "x_zero_point"))
        w = self.const(node, node.input[1], "w")
        wz = self.opt_const(node, 3, "w_zero_point")
        if w.ndim != 4 or len(x.shape) != 3:
            raise self.fail(node, "only 2-D convolutions of (N, C, H, W) tensors are supported")
        c = self.conv_attrs(node, x.shape, w.shape[2:])
        wi, ones = self.weights(node, w, wz, 0)
        acc = self.accumulate(node, x, zx, wi, ones, None, c)
        self.values[node.output[0]] = Int32(acc, self.conv_shape(x.shape, w, c))

    def op_MatMulInteger(self, node: Any) -> None:
        x, zx = self.activation_in(node, node.input[0], self.opt_const(node, 2, "a_zero_point"))
        b = self.one_matrix(node, self.const(node, node.input[1], "B"))
        bz = self.opt_const(node, 3, "b_zero_point")
        if b.ndim != 2 or len(x.shape) != 1:
            raise self.fail(node, "only products of vectors (N, K) with a constant (K, M) matrix are supported")
        w, ones = self.weights(node, b.T, bz, 0)
        self.values[node.output[0]] = Int32(self.accumulate(node, x, zx, w, ones, None, None), (w.shape[0],))

    def op_QLinearAdd(self, node: Any) -> None:
        i = node.input
        a, za = self.activation_in(node, i[0], self.opt_const(node, 2, "A_zero_point"))
        b, zb = self.activation_in(node, i[3], self.opt_const(node, 5, "B_zero_point"))
        sa = np.float32(self.const(node, i[1], "A_scale").ravel()[0])
        sb = np.float32(self.const(node, i[4], "B_scale").ravel()[0])
        sc = np.float32(self.const(node, i[6], "C_scale").ravel()[0])
        zc = self.opt_const(node, 7, "C_zero_point")
        self.add(node, a, za, sa, b, zb, sb, sc, np.uint8(0) if zc is None else zc)

    def add(self, node: Any, a: QTensor, za: int, sa: np.float32, b: QTensor, zb: int, sb: np.float32,
            sc: np.float32, zc: Any, relu: bool = False) -> None:
        """ONNX Runtime's QLinearAdd (its CPU kernels' fixed point): ratios ``fl32(s_a / s_c)``,
        ``fl32(s_b / s_c)``; ``S = 21 - e`` with ``e`` the larger ratio's float exponent; integer
        multipliers ``A, B`` = the ratios times ``2**S`` rounded ties to even; ``y = clamp(
        round_half_away((A (a - za) + B (b - zb)) / 2**S) + zc)``. (za, zb in the IR's domain.)"""
        if a.shape != b.shape:
            raise self.fail(node, f"adds tensors of shapes {a.shape} and {b.shape} (no broadcasting)")
        ra, rb = np.float32(sa) / np.float32(sc), np.float32(sb) / np.float32(sc)
        _, e = np.frexp(np.float32(max(ra, rb)))
        shift = 21 - (int(e) - 1)
        if not 13 <= shift <= 31:
            raise self.fail(node, "input / output scale ratios outside [2**-14, 256)")
        ka, kb = int(np.rint(np.float64(ra) * 2.0**shift)), int(np.rint(np.float64(rb) * 2.0**shift))
        s = self.emit(ir.Add(scale_a=ka, scale_b=kb, shift=0, out_dtype="int32", name=f"{node.name}_sum"),
                      [a.ir, b.ir])
        s = self.emit(ir.Requant(multiplier=[1], shift=[0], rounding="floor", zero_point=-(ka * za + kb * zb),
                                 out_dtype="int32", name=f"{node.name}_zero_points"), [s])
        off = self.offset_of(np.asarray(zc))
        z = int(np.asarray(zc).astype(np.int64).ravel()[0]) - off
        out = self.emit(ir.Requant(multiplier=[1], shift=[shift], rounding="half_away", zero_point=z,
                                   out_min=z if relu else None, name=f"{node.name}_requant"), [s])
        self.values[node.output[0]] = QTensor(out, off, a.shape, sc, z + off)

    # QDQ --------------------------------------------------------------------
    def op_Conv(self, node: Any) -> None:
        q, xs, xz = self.dq(node, node.input[0])
        w, ws, wz, axis = self.dq_const(node, node.input[1], "weight")
        if np.asarray(ws).size > 1 and axis not in (0, -4):
            raise self.fail(node, "per-channel weight scales must be along the output channels")
        bias = self.qdq_bias(node, 2)
        self.conv(node, q, xz - q.offset, w, wz, bias, xs, ws, None, None, pending=True)

    def op_Gemm(self, node: Any) -> None:
        a = self.attrs(node)
        if a.get("transA", 0) or a.get("alpha", 1.0) != 1.0 or a.get("beta", 1.0) != 1.0:
            raise self.fail(node, "only Gemm with transA=0, alpha=1, beta=1")
        q, xs, xz = self.dq(node, node.input[0])
        w, ws, wz, axis = self.dq_const(node, node.input[1], "weight")
        trans = bool(a.get("transB", 0))
        if np.asarray(ws).size > 1 and axis != (0 if trans else 1):
            raise self.fail(node, "per-channel weight scales must be along the output features")
        self.matmul(node, q, xz - q.offset, w, wz, self.qdq_bias(node, 2), xs, ws, None, None, pending=True,
                    transposed=trans)

    def op_MatMul(self, node: Any) -> None:
        q, xs, xz = self.dq(node, node.input[0])
        w, ws, wz, axis = self.dq_const(node, node.input[1], "weight")
        self.matmul(node, q, xz - q.offset, w, wz, None, xs, ws, None, None, pending=True)

    def qdq_bias(self, node: Any, i: int) -> np.ndarray | None:
        if i >= len(node.input) or not node.input[i]:
            return None
        v, _, _, _ = self.dq_const(node, node.input[i], "bias")
        if v.dtype != np.int32:
            raise self.fail(node, "the bias must be int32 (quantized with the input and weight scales)")
        return v

    def op_Relu(self, node: Any) -> None:
        v = self.values.get(node.input[0])
        if isinstance(v, tuple) and v[0] == "added":  # folded into the Add's saturation
            self.values[node.output[0]] = v
            return
        if not isinstance(v, Pending):
            raise self.fail(node, "a Relu must follow a quantized Conv / Gemm / MatMul (before its QuantizeLinear)")
        v.relu = True
        self.values[node.output[0]] = v

    def op_Clip(self, node: Any) -> None:
        v = self.values.get(node.input[0])
        lo, hi = self.opt_const(node, 1, "min"), self.opt_const(node, 2, "max")
        if not isinstance(v, Pending):
            raise self.fail(node, "a Clip must follow a quantized Conv / Gemm / MatMul (before its QuantizeLinear)")
        v.clip = (float(-np.inf if lo is None else lo), float(np.inf if hi is None else hi))
        if v.clip[0] == -np.inf or v.clip[1] == np.inf:
            raise self.fail(node, "only a Clip with both bounds is supported")
        self.values[node.output[0]] = v

    def op_Add(self, node: Any) -> None:
        qa, sa, za = self.dq(node, node.input[0])
        qb, sb, zb = self.dq(node, node.input[1])
        users = [n for n in self.model.graph.node if node.output[0] in n.input]
        relu = len(users) == 1 and users[0].op_type == "Relu"
        qnode = users[0] if not relu else next((n for n in self.model.graph.node if users[0].output[0] in n.input), None)
        if qnode is None or qnode.op_type != "QuantizeLinear":
            raise self.fail(node, "an Add of dequantized tensors must be followed by a QuantizeLinear")
        sc = np.float32(self.const(qnode, qnode.input[1], "y_scale").ravel()[0])
        zc = self.opt_const(qnode, 2, "y_zero_point")
        self.add(node, qa, za - qa.offset, sa, qb, zb - qb.offset, sb, sc, np.uint8(0) if zc is None else zc, relu)
        self.values[node.output[0]] = ("added", self.values[node.output[0]])  # for the Relu / QuantizeLinear

    def op_MaxPool(self, node: Any) -> None:
        a = self.attrs(node)
        if a.get("ceil_mode", 0) or any(a.get("pads", [0])) or any(d != 1 for d in a.get("dilations", [1, 1])):
            raise self.fail(node, "only MaxPool without padding, dilation or ceil_mode")
        kernel = tuple(a["kernel_shape"])
        stride = tuple(a.get("strides", kernel))
        self.move(node, lambda q: ir.MaxPool2d(kernel, stride, name=node.name),
                  lambda s: (s[0], (s[1] - kernel[0]) // stride[0] + 1, (s[2] - kernel[1]) // stride[1] + 1))

    def op_Flatten(self, node: Any) -> None:
        if self.attrs(node).get("axis", 1) != 1:
            raise self.fail(node, "only Flatten with axis 1")
        self.move(node, lambda q: ir.Flatten(name=node.name) if len(q.shape) > 1 else None,
                  lambda s: (int(np.prod(s)),))

    def op_Reshape(self, node: Any) -> None:
        target = self.const(node, node.input[1], "shape")
        if target.size != 2 or int(target[1]) not in (-1,) and int(target[0]) not in (-1, 0, 1):
            raise self.fail(node, f"only a reshape to (N, -1) is supported, got {target.tolist()}")
        self.op_Flatten(node)

    def op_Concat(self, node: Any) -> None:
        if self.attrs(node).get("axis") != 1:
            raise self.fail(node, "only Concat along axis 1")
        srcs = [self.values.get(n) for n in node.input]
        qs = [s[1] if isinstance(s, tuple) and s[0] == "dq" else s for s in srcs]
        if not all(isinstance(q, QTensor) for q in qs):
            raise self.fail(node, "concatenates tensors that are not quantized")
        params = {(float(s[2]), int(s[3])) if isinstance(s, tuple) else (float(q.scale or 0), q.zero_point)
                  for s, q in zip(srcs, qs)}
        if len(params) != 1 or len({q.offset for q in qs}) != 1:
            raise self.fail(node, "concatenated tensors must share one scale and zero point")
        prev = qs[0]
        for q in qs[1:]:
            out = self.emit(ir.Concat(name=node.name), [prev.ir, q.ir])
            prev = QTensor(out, q.offset, (prev.shape[0] + q.shape[0],) + q.shape[1:], q.scale, q.zero_point)
        wrap = srcs[0]
        self.values[node.output[0]] = ("dq", prev, wrap[2], wrap[3]) if isinstance(wrap, tuple) else prev

    def move(self, node: Any, make, shape_of) -> None:
        """An op that moves quantized values (max pool, flatten): on a QTensor or on a DQ of one."""
        v = self.values.get(node.input[0])
        dq = isinstance(v, tuple) and v[0] == "dq"
        q = v[1] if dq else v
        if not isinstance(q, QTensor):
            raise self.fail(node, "its input is not a quantized tensor")
        op = make(q)
        out = q if op is None else QTensor(self.emit(op, [q.ir]), q.offset, shape_of(q.shape), q.scale, q.zero_point)
        self.values[node.output[0]] = ("dq", out, v[2], v[3]) if dq else out

    def op_Identity(self, node: Any) -> None:
        self.values[node.output[0]] = self.values.get(node.input[0])


def read(path: str | Path) -> ir.Model:
    """The IR of a quantized ONNX model (raises ModelImportError, one line)."""
    onnx, _ = _require_onnx()
    path = Path(path)
    try:
        model = onnx.load(str(path))
    except Exception as e:  # protobuf decode errors, missing external data
        raise ModelImportError(f"{path}: not a readable ONNX file ({str(e).splitlines()[0][:200]})") from None
    return _Importer(model, path).run()
