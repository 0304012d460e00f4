"""Change-based inference as a property of convolutions: a :class:`ChangeGate` and its
reference state before each chosen convolution (``bitgen.ops.change_gate`` states the
semantics). ``with_thresholds`` sets the threshold T of convolutions (adding their gates),
``dense`` takes every gate away, ``thresholds`` reads them back."""
from __future__ import annotations

import math

from ..ops.change_gate import ChangeGate
from ..ops.conv2d import Conv2d
from .model import INPUT, Model, Node, State
from .types import IRError


def _fresh(name: str, taken: set[str]) -> str:
    out, k = name, 1
    while out in taken:
        out, k = f"{name}{k}", k + 1
    taken.add(out)
    return out


def gated(model: Model) -> dict[int, int]:
    """Convolution node index -> the index of the gate it reads."""
    writer = {n.output: i for i, n in enumerate(model.nodes)}
    out = {}
    for i, node in enumerate(model.nodes):
        if isinstance(node.op, Conv2d):
            j = writer.get(node.inputs[0])
            if j is not None and isinstance(model.nodes[j].op, ChangeGate):
                out[i] = j
    return out


def gate_pixels(model: Model) -> list[int]:
    """Pixels of each change gate's input (a pixel: one position with all its channels)."""
    types = model.validate()
    return [math.prod(types[i].shape[1:] if len(types[i].shape) == 3 else types[i].shape)
            for i, n in enumerate(model.nodes) if isinstance(n.op, ChangeGate)]


def thresholds(model: Model) -> dict[int, int]:
    """Convolution node index -> the threshold of its gate, for the change-based ones."""
    return {i: model.nodes[j].op.threshold for i, j in gated(model).items()}


def dense(model: Model) -> Model:
    """The model without its gates and their reference states: every convolution reads its
    input again (the dense model a change-based one is compared with)."""
    gates = {i for i, n in enumerate(model.nodes) if isinstance(n.op, ChangeGate)}
    if not gates:
        return model
    rename = {model.nodes[i].output: model.nodes[i].inputs[0] for i in gates}
    refs = {model.nodes[i].inputs[1] for i in gates}
    nodes = [Node(n.op, tuple(rename.get(t, t) for t in n.inputs), n.output)
             for i, n in enumerate(model.nodes) if i not in gates]
    states = [st for st in model.states if st.name not in refs]
    return _same_kind(model, nodes, states)


def with_thresholds(model: Model, threshold: int | dict[int, int]) -> Model:
    """The model with change-based convolutions: `threshold` for every convolution, or
    {convolution node index: threshold} for some. A convolution that already has a gate gets
    the new threshold; one without gets a gate and a reference state (initial value 0) before
    it. Node indices are those of `model`."""
    convs = [i for i, n in enumerate(model.nodes) if isinstance(n.op, Conv2d)]
    wanted = {i: threshold for i in convs} if isinstance(threshold, int) else dict(threshold)
    for i, t in wanted.items():
        if i not in convs:
            raise IRError(f"layer {i} is not a convolution: only convolutions can be change-based")
        if int(t) < 0:
            raise IRError(f"layer {i}: change threshold must be 0 or more, got {t}")
    existing = gated(model)
    gate_of = {j: c for c, j in existing.items()}  # gate node index -> its convolution's
    types, state_types = model.infer_types()
    type_of = {INPUT: model.input_type()} | {n.output: t for n, t in zip(model.nodes, types)} | state_types
    taken = {INPUT, *(n.output for n in model.nodes), *(st.name for st in model.states)}
    nodes: list[Node] = []
    states = list(model.states)
    for i, node in enumerate(model.nodes):
        if i in gate_of and gate_of[i] in wanted:  # an existing gate: its new threshold
            node = Node(ChangeGate(threshold=int(wanted[gate_of[i]]), name=node.op.name), node.inputs, node.output)
        elif i in wanted and i not in existing:  # a new gate and its reference before the convolution
            src = node.inputs[0]
            ref, seen = _fresh(f"{node.output}_ref", taken), _fresh(f"{node.output}_seen", taken)
            states.append(State(ref, type_of[src].shape, type_of[src].dtype, source=seen, init=0))
            nodes.append(Node(ChangeGate(threshold=int(wanted[i]), name=f"{node.op.name or node.output}_change"),
                              (src, ref), seen))
            node = Node(node.op, (seen,), node.output)
        nodes.append(node)
    return _same_kind(model, nodes, states)


def _same_kind(model: Model, nodes: list[Node], states: list[State]) -> Model:
    out = Model(model.input, nodes=nodes, states=states, labels=model.labels, name=model.name, meta=model.meta)
    if out.is_sequential:  # no gates left: the same (version 1) model it was
        out = Model(model.input, layers=out.layers, labels=model.labels, name=model.name, meta=model.meta)
    out.validate()
    return out
