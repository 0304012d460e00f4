"""The MAX78000 accelerator's layers as ordinary ops, so the C back end runs them on a CPU.

A ``max78000_layer`` (bitgen/ops/max78000_layer.py) is one accelerator step: element-wise op,
pooling, convolution or linear, output stage. Every part of it is an op the C back end already
has kernels for, with the same rounding, as long as a few conditions hold; :func:`lower` writes
each accelerator layer as that run of ops (a graph), and :func:`for_c` checks that the lowered
model's golden equals the original's before anything is emitted from it. That is how a model
made for the accelerator (trained for it, or imported from ai8x) runs on the Cortex-M4 beside
it, or on any other board, for comparison; :mod:`bitgen.backends.max78000` is the accelerator's
own program.

The parts, in the hardware's order:

* element-wise add/sub of two operands: :class:`ir.Add` / :class:`ir.Sub` (scales 1, shift 0,
  int8 saturation: the hardware's);
* max pooling: :class:`ir.MaxPool2d`. Average pooling, which the hardware truncates toward
  zero (or, with izer's ``--avg-pool-rounding``, rounds half away from zero): where the data
  cannot be negative (its proved interval starts at 0, e.g. after a ReLU), rounded it is
  :class:`ir.AvgPool2d` (half up: the same for sums >= 0) and truncated a depth-wise all-ones
  convolution and a floor division by the window size as a multiply and shift
  (:func:`_divider`, checked for every possible sum); for signed data the window sum's sign
  (:class:`ir.Sign`) corrects the floor division into the hardware's rounding (see :func:`_pool`);
* conv2d: :class:`ir.Conv2d` with the bias byte times 128 as its int32 bias; ConvTranspose2d:
  :class:`ir.ConvTranspose2d` with PyTorch's weight (the hardware's kernel flipped and
  transposed); flatten + linear: Flatten, Linear and Unflatten to (O, 1, 1);
* the 8-bit output stage ``clamp(floor(acc / 2**k + 1/2))``, ``k = 7 - shift``: a
  :class:`ir.Requant` that rounds half up (``k <= 0``: a multiplier of ``2**-k``), clamped to
  0..127 for ReLU; Abs is :class:`ir.Abs` after it (saturating: -128 gives 127, as the
  hardware). A 32-bit output is the convolution's own int32 sum.

Not lowered, each refused in one line naming the layer: conv1d, xor/or, more than two operands,
and operands packed into one input.
"""
from __future__ import annotations

import numpy as np

from ... import encodings, golden, ir
from ...errors import BitgenError
from ...ops.max78000_layer import BIAS_SCALE, Max78000Layer

WEIGHT_ENCODINGS = ("ternary", "4bit", "8bit")  # the smallest that holds a layer's weights is used
LOWERED_FROM = "lowered_from"  # meta: the original model's digest, which the emitted C reports as its identity
PROOF_INPUTS = 64  # random inputs on which for_c compares the lowered model with the original


class LoweringError(BitgenError):
    """A ``max78000_layer`` that has no exact lowering to the C back end's ops."""


def needs_lowering(model: ir.Model) -> bool:
    return any(isinstance(n.op, Max78000Layer) for n in model.nodes)


def for_c(model: ir.Model) -> ir.Model:
    """``model`` itself when it has no accelerator layer; else its lowered graph, after checking
    on random and extreme inputs that its golden equals the original's bit for bit."""
    if not needs_lowering(model):
        return model
    lowered = lower(model)
    shape = model.input.shape
    rng = np.random.default_rng(0)
    ends = np.stack([np.full(shape, -128), np.full(shape, 127), np.zeros(shape)])
    for x in (rng.integers(-128, 128, (PROOF_INPUTS, *shape)), ends):
        x = x.astype(np.int8)
        want, got = golden.run(model, x), golden.run(lowered, x)
        if want.shape != got.shape or not np.array_equal(want, got):
            raise AssertionError("bitgen bug: the lowered accelerator layers differ from the original's golden")
    return lowered


def lower(model: ir.Model) -> ir.Model:
    """``model`` with every ``max78000_layer`` node replaced by the ops that compute it."""
    outputs, states = model.infer_types()
    types = dict(zip((n.output for n in model.nodes), outputs)) | states | {ir.INPUT: model.input_type()}
    alias: dict[str, str] = {}  # a passthrough layer's output is its input
    nodes: list[ir.Node] = []
    last = len(model.nodes) - 1
    for i, node in enumerate(model.nodes):
        inputs = tuple(alias.get(t, t) for t in node.inputs)
        if not isinstance(node.op, Max78000Layer):
            nodes.append(ir.Node(node.op, inputs, node.output))
            continue
        where = f"layer {i} ({node.op.name or node.output})"
        try:
            steps = _layer(node.op, inputs, [types[t] for t in node.inputs], node.output)
        except LoweringError as e:
            raise LoweringError(f"max78000_layer on the CPU: {where}: {e}") from None
        if not steps:  # an identity: later readers read the input
            if i == last or node.output in {s.source for s in model.states}:
                steps = [ir.Node(ir.MaxPool2d(kernel=(1, 1)), inputs, node.output)]
            else:
                alias[node.output] = inputs[0]
        nodes += steps
    meta = model.meta | {LOWERED_FROM: model.digest()}
    return ir.Model(model.input, nodes=nodes, labels=model.labels, name=model.name, meta=meta,
                    states=[ir.State(s.name, s.shape, s.dtype, alias.get(s.source, s.source), s.init)
                            for s in model.states])


def _layer(op: Max78000Layer, inputs: tuple[str, ...], types: list[ir.TensorType], out: str) -> list[ir.Node]:
    if op.packed_operands:
        raise LoweringError("operands packed into one input (izer's layout) are not lowered")
    if op.operation == "conv1d":
        raise LoweringError("conv1d has no C kernel")
    if op.eltwise in ("xor", "or"):
        raise LoweringError(f"element-wise {op.eltwise} has no C kernel")
    if op.operands > 2:
        raise LoweringError(f"an element-wise {op.eltwise} of {op.operands} operands is not lowered (2 at most)")
    steps: list[ir.Node] = []
    names = iter(f"{out}.{k}" for k in range(1, 100))

    def add(o: ir.Op, *src: str) -> str:
        steps.append(ir.Node(o, src, next(names)))
        return steps[-1].output

    data = list(inputs)
    nonneg = all(t.lo >= 0 for t in types)
    if op.eltwise != "none" and not op.pool_first:
        data = [add(_eltwise(op), *data)]
        nonneg = nonneg and op.eltwise == "add"
    if op.pooling:
        data = [_pool(op, x, types[0].shape[0], nonneg, add) for x in data]
    x = add(_eltwise(op), *data) if op.eltwise != "none" and op.pool_first else data[0]
    if op.operation != "passthrough":
        enc = _encoding(op.weight)
        bias = None if op.bias is None else op.bias.astype(np.int64) * BIAS_SCALE
        w = op.weight
        if op.operation == "linear":
            x = add(ir.Flatten(), x)
            x = add(ir.Linear(weight=w, encoding=enc, bias=bias), x)
            x = add(ir.Unflatten(shape=(w.shape[0], 1, 1)), x)
        elif op.operation == "conv2d":
            x = add(ir.Conv2d(weight=w, encoding=enc, bias=bias, padding=(op.padding, op.padding)), x)
        else:  # convtranspose2d: PyTorch's (in, out, k, k) weight is the kernel flipped and transposed
            x = add(ir.ConvTranspose2d(weight=np.ascontiguousarray(w[:, :, ::-1, ::-1].transpose(1, 0, 2, 3)),
                                       encoding=enc, bias=bias, stride=(2, 2), padding=(op.padding, op.padding),
                                       output_padding=(op.output_padding, op.output_padding)), x)
        if op.output_width == 8:
            k = 7 - op.shift
            mult, shift = (1, k) if k > 0 else (1 << -k, 0)
            x = add(ir.Requant(multiplier=np.array([mult]), shift=np.array([shift]), rounding="half_up",
                               out_dtype="int8", out_min=0 if op.activation == "relu" else -128, out_max=127), x)
            if op.activation == "abs":
                x = add(ir.Abs(), x)
    if x in inputs:
        return []
    steps[-1].output = out
    return steps


def _eltwise(op: Max78000Layer) -> ir.Op:
    cls = ir.Add if op.eltwise == "add" else ir.Sub
    return cls(out_dtype="int8")


def _pool(op: Max78000Layer, x: str, channels: int, nonneg: bool, add) -> str:
    (kh, kw), stride = op.pool_size, op.pool_stride
    if op.pool == "max":
        return add(ir.MaxPool2d(kernel=(kh, kw), stride=stride), x)
    if op.avg_pool_rounding and nonneg:  # half away from zero = half up, for sums >= 0
        return add(ir.AvgPool2d(kernel=(kh, kw), stride=stride), x)
    n = kh * kw
    if nonneg:  # truncated = floor, for sums >= 0: the window sum, divided by a multiply and shift
        total = add(_window_sum(channels, (kh, kw), stride, 1, 0), x)
        mult, shift = _divider(n, 0, n * 127)
        return add(ir.Requant(multiplier=np.array([mult]), shift=np.array([shift]), rounding="floor",
                              out_dtype="int8"), total)
    # Sums S of either sign, with sign(S) = +1 for S >= 0, else -1. Truncated toward zero:
    # floor(v / 2n) of v = 2S + (n - 1) * (1 - sign(S)) (for S < 0 that is ceil(S / n)); rounded
    # half away from zero: floor(v / 4n) of v = 4S + 2n - 1 + sign(S). The depth-wise convolution
    # computes the part without the sign, t = a*S + b, and S >= 0 exactly when t > b - 1.
    if op.avg_pool_rounding:
        scale, offset, combine, divisor = 4, 2 * n - 1, ir.Add(out_dtype="int32"), 4 * n
    else:
        scale, offset, combine, divisor = 2, n - 1, ir.Sub(scale_b=n - 1, out_dtype="int32"), 2 * n
    # ... plus `lift` divisors, so that v >= 0 (the multiply and shift floors only those); the
    # Requant's zero point takes `lift` back off the quotient
    lift = -(-(scale * 128 * n + 2 * n) // divisor)
    offset += lift * divisor
    total = add(_window_sum(channels, (kh, kw), stride, scale, offset), x)
    sign = add(ir.Sign(threshold=np.array([offset - 1])), total)
    v = add(combine, total, sign)
    mult, shift = _divider(divisor, 0, scale * 128 * n + 2 * n + lift * divisor)
    return add(ir.Requant(multiplier=np.array([mult]), shift=np.array([shift]), rounding="floor",
                          out_dtype="int8", zero_point=-lift), v)


def _window_sum(channels: int, kernel: tuple[int, int], stride: tuple[int, int], scale: int, bias: int) -> ir.Conv2d:
    """A depth-wise convolution of ``scale``s plus ``bias``: ``scale`` times each window's sum."""
    return ir.Conv2d(weight=np.full((channels, 1, *kernel), scale, dtype=np.int64), encoding="4bit",
                     bias=np.full(channels, bias, dtype=np.int64), stride=stride, groups=channels)


def _divider(n: int, lo: int, hi: int) -> tuple[int, int]:
    """(m, s) with ``(v * m) >> s == v // n`` (floor) for every v in lo..hi (checked, not assumed)."""
    v = np.arange(lo, hi + 1, dtype=np.int64)
    for s in range(0, 40):
        m = -(-(1 << s) // n)
        if np.array_equal((v * m) >> s, v // n):
            return m, s
    raise AssertionError(f"no multiply-and-shift divides by {n}")  # unreachable for these ranges


def _encoding(w: np.ndarray) -> str:
    values = set(np.unique(w).tolist())
    for name in WEIGHT_ENCODINGS:
        if values <= encodings.get(name).value_set:
            return name
    raise AssertionError("unreachable: 8-bit weights hold every accelerator weight")
