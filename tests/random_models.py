"""A hypothesis strategy for random, valid integer models over every op and weight encoding.

Structure (shapes, kernel sizes, strides, paddings, groups, encodings, requant parameters) is
drawn through hypothesis so failures shrink; weight values come from a NumPy generator seeded
by a drawn integer (drawing thousands of weights one by one would be slow).
"""
import numpy as np
from hypothesis import assume
from hypothesis import strategies as st

from bitgen import encodings, ir

ENCODINGS = sorted(encodings.ENCODINGS)


def _bias(draw, rng, n):
    if not draw(st.booleans()):
        return None
    return rng.integers(-(2 ** draw(st.integers(0, 20))), 2 ** draw(st.integers(0, 20)) + 1, n)


def _weights(draw, rng, shape):
    enc = draw(st.sampled_from(ENCODINGS))
    return rng.choice(np.array(encodings.get(enc).values), size=shape), enc


def _requant(draw, rng, t):
    c = t.shape[0]
    n = c if draw(st.booleans()) else 1
    mbits = draw(st.integers(0, 16))
    mult = rng.integers(1, 2**mbits + 1, n)
    # centre the shift on what brings the proved range to about 8 bits, then perturb it
    span = max(abs(t.lo), abs(t.hi), 1).bit_length() + mbits
    shift = np.clip(span - 7 + rng.integers(-3, 4, n), 0, 62)
    out_dtype = draw(st.sampled_from(["int8", "int8", "int32"]))
    lo, hi = ir.DTYPE_RANGE[out_dtype]
    if draw(st.booleans()):  # a narrower clamp range, e.g. ReLU-like [0, 127]
        lo = draw(st.integers(lo, 0))
        hi = draw(st.integers(max(lo, 0), hi))
    rounding = draw(st.sampled_from(["half_up", "floor"]))
    return ir.Requant(multiplier=mult, shift=shift, rounding=rounding, out_dtype=out_dtype, out_min=lo, out_max=hi)


def _conv(draw, rng, t):
    c, h, w = t.shape
    style = draw(st.sampled_from(["dense", "depthwise", "grouped"]))
    divisors = [g for g in range(1, c + 1) if c % g == 0]
    groups = {"dense": 1, "depthwise": c}.get(style) or draw(st.sampled_from(divisors))
    co = groups * draw(st.integers(1, 3))
    ph, pw = draw(st.integers(0, 2)), draw(st.integers(0, 2))
    kh = draw(st.integers(1, min(4, h + 2 * ph)))
    kw = draw(st.integers(1, min(4, w + 2 * pw)))
    stride = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    wt, enc = _weights(draw, rng, (co, c // groups, kh, kw))
    return ir.Conv2d(weight=wt, encoding=enc, bias=_bias(draw, rng, co), stride=stride, padding=(ph, pw), groups=groups)


def _pool(draw, rng, t, cls):
    _, h, w = t.shape
    kernel = (draw(st.integers(1, min(3, h))), draw(st.integers(1, min(3, w))))
    return cls(kernel=kernel, stride=(draw(st.integers(1, 3)), draw(st.integers(1, 3))))


def _candidates(t):
    kinds = ["relu"]
    if len(t.shape) == 3:
        kinds += ["conv2d"] * 4 + ["maxpool2d", "avgpool2d", "flatten"]
    else:
        kinds += ["linear"] * 3
    if t.dtype == "int32":
        kinds += ["requant", "requant", "shiftnorm"]
    return kinds


@st.composite
def models(draw, max_layers=6):
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    if draw(st.integers(0, 2)):  # images two times in three
        shape = (draw(st.integers(1, 6)), draw(st.integers(1, 9)), draw(st.integers(1, 9)))
    else:
        shape = (draw(st.integers(1, 40)),)
    t = ir.TensorType(shape, "int8", *ir.INT8)
    layers = []
    for _ in range(draw(st.integers(1, max_layers))):
        kind = draw(st.sampled_from(_candidates(t)))
        if kind == "linear":
            wt, enc = _weights(draw, rng, (draw(st.integers(1, 24)), t.shape[0]))
            layer = ir.Linear(weight=wt, encoding=enc, bias=_bias(draw, rng, wt.shape[0]))
        elif kind == "conv2d":
            layer = _conv(draw, rng, t)
        elif kind == "maxpool2d":
            layer = _pool(draw, rng, t, ir.MaxPool2d)
        elif kind == "avgpool2d":
            layer = _pool(draw, rng, t, ir.AvgPool2d)
        elif kind == "requant":
            layer = _requant(draw, rng, t)
        else:
            layer = {"relu": ir.ReLU, "flatten": ir.Flatten, "shiftnorm": ir.ShiftNorm}[kind]()
        try:
            t_next = ir.infer_type(layer, t)
        except ir.IRError:  # e.g. an accumulator that could overflow: leave this layer out
            continue
        layers.append(layer)
        t = t_next
    assume(layers)
    return ir.Model(ir.InputSpec(shape), layers)
