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


def _binary(draw, rng, available):
    """An Add, Sub, Mul or Concat over two available tensors that fit it, or None."""
    pairs = [(a, b) for a in available for b in available if a[1].shape == b[1].shape]
    cat = [(a, b) for a in available for b in available
           if len(a[1].shape) == len(b[1].shape) and a[1].shape[1:] == b[1].shape[1:] and a[1].dtype == b[1].dtype]
    kinds = (["add", "sub", "mul"] if pairs else []) + (["concat"] if cat else [])
    if not kinds:
        return None
    kind = draw(st.sampled_from(kinds))
    a, b = draw(st.sampled_from(pairs if kind != "concat" else cat))
    return OPS[kind].random(draw, rng, a[1] if a[1].amax >= b[1].amax else b[1]), (a[0], b[0])


@st.composite
def graphs(draw, max_nodes=8):
    """Random graphs: chains with branches that rejoin through Add, Sub, Mul and Concat."""
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    if draw(st.integers(0, 3)):
        shape = (draw(st.integers(1, 4)), draw(st.integers(1, 7)), draw(st.integers(1, 7)))
    else:
        shape = (draw(st.integers(1, 24)),)
    available = [(ir.INPUT, ir.TensorType(shape, "int8", *ir.INT8))]
    nodes = []
    for k in range(draw(st.integers(1, max_nodes))):
        made = _binary(draw, rng, available) if len(available) > 1 and draw(st.booleans()) else None
        if made is None:
            # mostly continue from the newest tensor, sometimes branch off an older one
            src = available[-1] if draw(st.integers(0, 2)) else draw(st.sampled_from(available))
            kind = draw(st.sampled_from(_candidates(src[1])))
            made = OPS[kind].random(draw, rng, src[1]), (src[0],)
        op, inputs = made
        types = dict(available)
        try:
            t = op.infer(*(types[name] for name in inputs))
        except ir.IRError:
            continue
        name = f"n{k}"
        nodes.append(ir.Node(op, inputs, name))
        available.append((name, t))
    assume(nodes)
    states = []
    if draw(st.integers(0, 2)) == 0:  # a recurrence: u = f(t, s); s takes u's value each frame
        name, t = draw(st.sampled_from(available[1:]))
        lo, hi = ir.DTYPE_RANGE[t.dtype]
        init = draw(st.integers(lo, hi))
        op = OPS[draw(st.sampled_from(["add", "sub"]))].random(draw, rng, ir.TensorType(t.shape, t.dtype, lo, hi))
        op.out_dtype, op.out_min, op.out_max = t.dtype, lo, hi  # u has the state's type
        nodes.append(ir.Node(op, (name, "s") if draw(st.booleans()) else ("s", name), "u"))
        states.append(ir.State("s", t.shape, t.dtype, "u", init=init))
    # keep what the last node needs (every other tensor must be read)
    needed, kept = {nodes[-1].output}, []
    for node in reversed(nodes):
        if node.output in needed:
            kept.append(node)
            needed.update(node.inputs)
    model = ir.Model(ir.InputSpec(shape), nodes=kept[::-1], states=states)
    try:
        model.validate()
    except ir.IRError:  # e.g. a recurrence whose scaled sum could overflow int32
        assume(False)
    convs = [i for i, n in enumerate(model.nodes) if isinstance(n.op, ir.Conv2d)]
    if convs and draw(st.integers(0, 2)) == 0:  # change-based convolutions: a gate and its reference
        chosen = draw(st.lists(st.sampled_from(convs), min_size=1, max_size=len(convs), unique=True))
        model = ir.change.with_thresholds(model, {i: OPS["change_gate"].random(draw, rng, None).threshold
                                                  for i in chosen})
    return model
