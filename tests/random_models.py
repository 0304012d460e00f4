"""A hypothesis strategy for random, valid integer models over every op and weight encoding.

Each op draws its own random instance (:meth:`bitgen.ops.base.Op.random`) and says how often
it is picked after a tensor of a given type (``random_weight``): a new op in the registry joins
the property tests by itself. Structure is drawn through hypothesis so failures shrink; weight
values come from a NumPy generator seeded by a drawn integer (drawing thousands of weights one
by one would be slow).
"""
import numpy as np
from hypothesis import assume
from hypothesis import strategies as st

from bitgen import ir
from bitgen.ops import OPS


def _candidates(t: ir.TensorType) -> list[str]:
    return [kind for kind, op in OPS.items() for _ in range(op.random_weight(t))]


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
        layer = OPS[kind].random(draw, rng, t)
        try:
            t_next = ir.infer_type(layer, t)
        except ir.IRError:  # e.g. an accumulator that could overflow: leave this layer out
            continue
        layers.append(layer)
        t = t_next
    assume(layers)
    return ir.Model(ir.InputSpec(shape), layers)
