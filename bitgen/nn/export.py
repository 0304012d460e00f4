"""PyTorch module -> :class:`bitgen.ir.Model` (integers only), validated.

Accepted layers: ``bitgen.nn``'s (``Max78000Layer`` and ``Max78000Add``: ``max78000_layer`` nodes,
an element-wise one reading its operands, earlier tensors, as izer's ``in_sequences``; ``QuantLinear``, ``QuantConv2d``, ``QuantConvTranspose2d``,
``Requant``, ``Shift``, ``ShiftNorm``, ``AvgPool2d``, ``Add``, ``Sub``, ``Concat``, ``Sign``, ``Mul``, ``Tile``) and the plain
``torch.nn`` layers ``ReLU``, ``MaxPool2d``, ``AvgPool2d``, ``Flatten``, ``Unflatten``, ``Upsample`` (nearest,
integer factors), plus ``Dropout`` and ``Identity``, which do nothing at inference. They may be
composed as an ``nn.Sequential`` (nested ones are flattened: a sequential IR), a
:class:`bitgen.nn.Graph`, or any module whose ``forward`` wires them, which is traced with
torch.fx (``a + b`` and ``a - b`` of two tensors become exact int32 adds, ``torch.cat(.., 1)`` a
Concat, ``torch.flatten(x, 1)`` a Flatten). Anything else raises :class:`ExportError` naming
the layer and the op.
``a * b`` of two tensors becomes an exact int32 Mul; ``torch.sign`` is refused (it is ternary,
sign(0) = 0: use ``bitgen.nn.Sign``).

State (:mod:`bitgen.nn.recurrent`): a :class:`bitgen.nn.BinaryConvRNN` becomes its IR nodes
and one :class:`bitgen.ir.State` (its plane size is found by running one zero frame through
the module), a :class:`bitgen.nn.Graph`'s ``states`` become IR states.

A static ``Requant`` directly followed by ``ReLU`` becomes one ``ir.Requant`` with
``out_min = 0``: ``max(clamp(v, -128, 127), 0) == clamp(v, 0, 127)``.

The input specification comes from ``input=`` or from the module's ``input_spec`` attribute;
without either, a model whose first layer is a ``QuantLinear`` takes its shape from that
layer, anything else is an error asking for the shape.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import torch

from .. import ir
from .. import nn as bnn
from ..errors import BitgenError


class ExportError(BitgenError):
    """The module cannot be expressed in the integer IR (one-line message)."""


def _leaves(module: torch.nn.Module, prefix: str = "") -> list[tuple[str, torch.nn.Module]]:
    if type(module) is torch.nn.Sequential:
        out = []
        for name, child in module.named_children():
            out += _leaves(child, f"{prefix}.{name}" if prefix else name)
        return out
    return [(prefix, module)]


def _unsupported(index: int, name: str, module: torch.nn.Module, why: str = "") -> ExportError:
    op = type(module).__name__
    where = f"layer {index} '{name}'" if name else f"layer {index}"
    return ExportError(f"{where}: unsupported op {op}{' (' + why + ')' if why else ''}")


def _pair(v: Any) -> tuple[int, int]:
    return (int(v), int(v)) if isinstance(v, int) else (int(v[0]), int(v[1]))


def _pool(index: int, name: str, m: torch.nn.Module) -> ir.Layer:
    kernel = _pair(m.kernel_size)
    stride = kernel if m.stride is None or m.stride == [] else _pair(m.stride)
    if getattr(m, "padding", 0) not in (0, (0, 0)):
        raise _unsupported(index, name, m, "padding is not supported")
    if getattr(m, "ceil_mode", False):
        raise _unsupported(index, name, m, "ceil_mode is not supported")
    if isinstance(m, torch.nn.MaxPool2d):
        if m.dilation not in (1, (1, 1)):
            raise _unsupported(index, name, m, "dilation is not supported")
        return ir.MaxPool2d(kernel, stride, name=name)
    if getattr(m, "divisor_override", None):
        raise _unsupported(index, name, m, "divisor_override is not supported")
    return ir.AvgPool2d(kernel, stride, name=name)


def _layer(index: int, name: str, m: torch.nn.Module) -> ir.Layer | None:
    """The IR layer for one module (None: nothing to do at inference)."""
    if isinstance(m, bnn.Max78000Layer):
        return m.to_ir(name)
    if isinstance(m, bnn.QuantConvTranspose2d):
        b = m.integer_bias()
        return ir.ConvTranspose2d(weight=m.integer_weight().numpy(), encoding=m.encoding,
                                  bias=None if b is None else b.numpy(), stride=m.stride, padding=m.padding,
                                  output_padding=m.output_padding, groups=m.groups, name=name)
    if isinstance(m, (bnn.Add, bnn.Sub)):
        return (ir.Sub if isinstance(m, bnn.Sub) else ir.Add)(
            scale_a=m.scale_a, scale_b=m.scale_b, shift=m.shift, out_dtype=m.out_dtype,
            out_min=m.out_min, out_max=m.out_max, name=name)
    if isinstance(m, bnn.Concat):
        return ir.Concat(name=name)
    if isinstance(m, bnn.Sign):
        return ir.Sign(threshold=m.threshold.cpu().numpy(), name=name)
    if isinstance(m, bnn.Tile):
        return ir.Tile(rows=m.rows, cols=m.cols, name=name)
    if isinstance(m, bnn.Mul):
        return ir.Mul(shift=m.shift, out_dtype=m.out_dtype, out_min=m.out_min, out_max=m.out_max, name=name)
    if type(m) is torch.nn.Upsample:
        f = m.scale_factor
        f = (f, f) if not isinstance(f, tuple) else f
        if m.mode != "nearest" or m.size is not None or any(float(v) != int(v) or int(v) < 1 for v in f):
            raise _unsupported(index, name, m, "only mode='nearest' with integer scale factors")
        return ir.Upsample(factor=(int(f[0]), int(f[1])), name=name)
    if isinstance(m, bnn.QuantLinear):
        b = m.integer_bias()
        return ir.Linear(weight=m.integer_weight().numpy(), encoding=m.encoding,
                         bias=None if b is None else b.numpy(), name=name)
    if isinstance(m, bnn.QuantConv2d):
        b = m.integer_bias()
        return ir.Conv2d(weight=m.integer_weight().numpy(), encoding=m.encoding,
                         bias=None if b is None else b.numpy(), stride=m.stride,
                         padding=m.padding, groups=m.groups, name=name)
    if isinstance(m, bnn.Requant):
        mult, shift = m.multipliers_shifts()
        return ir.Requant(multiplier=np.array(mult), shift=np.array(shift), name=name)
    if isinstance(m, bnn.ShiftNorm):
        return ir.ShiftNorm(name=name)
    if isinstance(m, bnn.Shift):
        return ir.Requant(multiplier=np.array([1]), shift=np.array([m.shift]), rounding="floor",
                          out_dtype="int32", name=name)
    if isinstance(m, bnn.AvgPool2d):
        return ir.AvgPool2d(m.kernel_size, m.stride, name=name)
    if type(m) is torch.nn.ReLU:
        return ir.ReLU(name=name)
    if type(m) in (torch.nn.MaxPool2d, torch.nn.AvgPool2d):
        return _pool(index, name, m)
    if type(m) is torch.nn.Unflatten:
        if m.dim != 1 or len(m.unflattened_size) != 3:
            raise _unsupported(index, name, m, "only Unflatten(1, (C, H, W))")
        return ir.Unflatten(shape=tuple(int(v) for v in m.unflattened_size), name=name)
    if type(m) is torch.nn.Flatten:
        if m.start_dim != 1 or m.end_dim != -1:
            raise _unsupported(index, name, m, "only Flatten(start_dim=1, end_dim=-1)")
        return ir.Flatten(name=name)
    if type(m) in (torch.nn.Dropout, torch.nn.Identity):
        return None
    hint = ""
    if type(m) in (torch.nn.Linear, torch.nn.Conv2d):
        hint = f"float weights; quantize the model with `bitgen quantize`, or train with bitgen.nn.Quant{type(m).__name__}"
    raise _unsupported(index, name, m, hint)


def _input_spec(module: torch.nn.Module, leaves: list[tuple[str, torch.nn.Module]],
                given: ir.InputSpec | None) -> ir.InputSpec:
    carried = bnn.input_spec_of(module)
    if given is not None:
        if carried is not None and given.scale == ir.InputSpec(given.shape).scale \
                and tuple(given.shape) == tuple(carried.shape):
            return carried  # a bare shape was given; keep the scale the model carries
        return given
    if carried is not None:
        return carried
    first = next((m for _, m in leaves if not isinstance(m, (torch.nn.Dropout, torch.nn.Identity))), None)
    if isinstance(first, bnn.QuantLinear):
        return ir.InputSpec((first.in_features,))
    raise ExportError("the model's input shape is unknown: pass input=ir.InputSpec(shape) "
                      "(on the command line --input-shape C,H,W) or set model.input_spec")


LEAVES = (bnn.Max78000Layer, bnn.QuantLinear, bnn.QuantConv2d, bnn.QuantConvTranspose2d, bnn.Requant, bnn.Shift, bnn.ShiftNorm,
          bnn.AvgPool2d, bnn.Add, bnn.Sub, bnn.Concat, torch.nn.ReLU, torch.nn.MaxPool2d, torch.nn.AvgPool2d,
          bnn.Sign, bnn.Mul, bnn.Tile, bnn.BinaryConvRNN, torch.nn.Flatten, torch.nn.Unflatten, torch.nn.Upsample, torch.nn.Dropout, torch.nn.Identity)


def _is_sequential(module: torch.nn.Module) -> bool:
    """A Sequential of Sequentials and leaves (or a single leaf): exported as a chain."""
    if type(module) is torch.nn.Sequential:
        return all(_is_sequential(c) for c in module.children())
    if isinstance(module, (bnn.Graph, bnn.BinaryConvRNN)):  # a cell is a graph with a state
        return False
    return isinstance(module, LEAVES) or not list(module.children())


def as_graph(module: torch.nn.Module) -> "bnn.Graph":
    """The same layers (shared, not copied) as a :class:`bitgen.nn.Graph`: a composite module
    traced with torch.fx, a Graph as it is. A Graph is plain data: this is how a user's own
    module is saved without pickling its class."""
    if isinstance(module, bnn.Graph):
        return module
    import operator

    import torch.fx

    class Tracer(torch.fx.Tracer):
        def is_leaf_module(self, m: torch.nn.Module, qualname: str) -> bool:
            return isinstance(m, LEAVES)

    try:
        graph = Tracer().trace(module)
    except Exception as e:  # torch.fx raises many kinds (data-dependent control flow, ...)
        raise ExportError(f"cannot trace {type(module).__name__} with torch.fx ({_first_line(e)}); "
                          "use nn.Sequential or bitgen.nn.Graph") from None
    nodes: list[tuple[str, torch.nn.Module, list[str]]] = []
    names: dict[str, str] = {}  # fx node -> tensor name

    def arg_names(args) -> list[str]:
        out = []
        for a in args:
            if not isinstance(a, torch.fx.Node):
                raise ExportError(f"'{n.name}': only tensors can flow between layers, got {a!r}")
            out.append(names[a.name])
        return out

    for n in graph.nodes:
        if n.op == "placeholder":
            if names:
                raise ExportError(f"{type(module).__name__}.forward takes more than one input")
            names[n.name] = "input"
            continue
        if n.op == "output":
            if not isinstance(n.args[0], torch.fx.Node):
                raise ExportError(f"{type(module).__name__}.forward must return one tensor")
            last = names[n.args[0].name]
            if not nodes or nodes[-1][0] != last:  # the result is not the last layer's
                nodes.append((f"{last}_out", torch.nn.Identity(), [last]))
            continue
        if n.op == "call_module":
            m, inputs = module.get_submodule(n.target), arg_names(n.args)
        elif n.op == "call_function" and n.target in (operator.add, torch.add, operator.sub, torch.sub):
            m = (bnn.Sub if n.target in (operator.sub, torch.sub) else bnn.Add)(out_dtype="int32")
            inputs = arg_names(n.args)
        elif n.op == "call_function" and n.target in (operator.mul, torch.mul):
            m, inputs = bnn.Mul(out_dtype="int32"), arg_names(n.args)  # exact, like a + b
        elif n.op == "call_function" and n.target is torch.sign:
            raise ExportError(f"'{n.name}': torch.sign is ternary (sign(0) = 0); use bitgen.nn.Sign "
                              "(+1 if x > threshold else -1)")
        elif n.op == "call_function" and n.target is torch.cat:
            tensors, dim = n.args[0], (n.args[1] if len(n.args) > 1 else n.kwargs.get("dim", 0))
            if dim != 1 or len(tensors) != 2:
                raise ExportError(f"'{n.name}': only torch.cat of two tensors along dim 1")
            m, inputs = bnn.Concat(), arg_names(tensors)
        elif n.op == "call_function" and n.target is torch.flatten:
            if n.args[1:] != (1,) and n.kwargs.get("start_dim", 1) != 1:
                raise ExportError(f"'{n.name}': only torch.flatten(x, 1)")
            m, inputs = torch.nn.Flatten(), arg_names(n.args[:1])
        elif n.op == "call_function" and n.target in (torch.relu, torch.nn.functional.relu):
            m, inputs = torch.nn.ReLU(), arg_names(n.args[:1])
        else:
            raise ExportError(f"'{n.name}': unsupported operation {n.op} {getattr(n.target, '__name__', n.target)}")
        name = n.name.replace(".", "_")
        names[n.name] = name
        nodes.append((name, m, inputs))
    g = bnn.Graph(nodes)
    for attr in ("input_spec", "labels", "model_name"):
        if getattr(module, attr, None) is not None:
            setattr(g, attr, getattr(module, attr))
    return g


def _first_line(e: BaseException) -> str:
    return (str(e).strip().splitlines() or [type(e).__name__])[0]


def _cell_nodes(index: int, where: str, cell: "bnn.BinaryConvRNN", x: str,
                plane: tuple[int, int]) -> tuple[list[ir.Node], ir.State]:
    """The IR of one BinaryConvRNN reading tensor `x` of planes `plane`: its output is `where`."""
    h = f"{where}_h"  # the state: h_{t-1}

    def conv(m: "bnn.QuantConv2d", src: str, out: str) -> ir.Node:
        return ir.Node(_layer(index, out, m), [src], out)
    nodes = [conv(cell.fi, x, f"{where}_fi"), conv(cell.fh, h, f"{where}_fh"),
             ir.Node(_layer(index, f"{where}_gate_sum", cell.gate_sum), [f"{where}_fi", f"{where}_fh"], f"{where}_gate_sum"),
             ir.Node(_layer(index, f"{where}_gate", cell.gate), [f"{where}_gate_sum"], f"{where}_f"),
             ir.Node(_layer(index, f"{where}_mul", cell.mul), [f"{where}_f", h], f"{where}_h_next"),
             conv(cell.oi, x, f"{where}_oi"), conv(cell.oh, h, f"{where}_oh"),
             ir.Node(_layer(index, where, cell.out_sum), [f"{where}_oi", f"{where}_oh"], where)]
    return nodes, ir.State(h, (cell.channels, *plane), "int8", source=f"{where}_h_next", init=1)


@torch.no_grad()
def _cell_planes(module: torch.nn.Module, spec: ir.InputSpec) -> dict[int, tuple[int, int]]:
    """The (H, W) of every BinaryConvRNN's input, by one zero frame through the module; the
    module's states and training mode are as before."""
    cells = [m for m in module.modules() if isinstance(m, bnn.BinaryConvRNN)]
    if not cells:
        return {}
    planes: dict[int, tuple[int, int]] = {}
    def seen(m: torch.nn.Module, args: tuple) -> None:  # a pre-hook that returns None changes nothing
        planes.setdefault(id(m), tuple(args[0].shape[2:]))
    hooks = [c.register_forward_pre_hook(seen) for c in cells]
    saved = [m.h for m in cells]
    graph_values = [(g, g.values) for g in module.modules() if isinstance(g, bnn.Graph)]
    was = module.training
    try:
        module.eval()
        bnn.reset_states(module)
        module(torch.zeros((1,) + tuple(spec.shape), dtype=torch.float64))
    except Exception as e:  # a shape that does not chain: export's own checks say more below
        raise ExportError(f"cannot run one frame of shape {spec.shape} through the model ({_first_line(e)})") from None
    finally:
        for hk in hooks:
            hk.remove()
        for m, h in zip(cells, saved):
            m.h = h
        for g, v in graph_values:
            g.values = v
        module.train(was)
    return planes


def _graph_nodes(g: "bnn.Graph", planes: dict[int, tuple[int, int]] | None = None) -> tuple[list[ir.Node], list[ir.State]]:
    """IR nodes and states of a Graph: nested Sequentials become chains, layers that do
    nothing vanish, a ReLU that alone reads a static Requant's output folds into its clamp, a
    BinaryConvRNN becomes its nodes and state (`planes`: its input's (H, W), by id)."""
    nodes: list[ir.Node] = []
    states: list[ir.State] = []
    cells: set[int] = set()
    rename: dict[str, str] = {"input": ir.INPUT, **{st.name: st.name for st in g.states}}
    for index, (name, inputs) in enumerate(g.wiring):
        srcs = [rename[i] for i in inputs]
        module = g.layers[name]
        chain = _leaves(module) if type(module) is torch.nn.Sequential else [(name, module)]
        for k, (lname, m) in enumerate(chain):
            where = name if len(chain) == 1 else f"{name}.{lname}"
            if isinstance(m, (bnn.Graph, torch.nn.Sequential)) or (list(m.children()) and not isinstance(m, LEAVES)):
                raise _unsupported(index, where, m, "nest graphs as Graph nodes of plain layers")
            if isinstance(m, bnn.BinaryConvRNN):
                if len(srcs) != 1 or planes is None or id(m) not in planes:
                    raise _unsupported(index, where, m, "a cell reads one tensor of shape (C, H, W)")
                if id(m) in cells:
                    raise _unsupported(index, where, m, "one cell called more than once per frame; "
                                                        "use one cell per call")
                cells.add(id(m))
                cell, state = _cell_nodes(index, where, m, srcs[0], planes[id(m)])
                nodes += cell
                states.append(state)
                srcs = [where]
                continue
            layer = _layer(index, where, m)
            if layer is None:  # nothing at inference: the output is the input
                continue
            nodes.append(ir.Node(layer, srcs, where))
            srcs = [where]
        rename[name] = srcs[0] if len(srcs) == 1 else name
    readers: dict[str, int] = {rename[st.source]: 1 for st in g.states}  # a state reads its source
    for node in nodes:
        for t in node.inputs:
            readers[t] = readers.get(t, 0) + 1
    by_output = {node.output: node for node in nodes}
    kept = []
    for node in nodes:
        src = by_output.get(node.inputs[0])
        if isinstance(node.op, ir.ReLU) and src is not None and isinstance(src.op, ir.Requant) \
                and readers[src.output] == 1 and src.op.out_min <= 0:
            src.op.out_min = 0  # max(clamp(v, lo, hi), 0) == clamp(v, 0, hi)
            src.output = node.output  # the Requant now writes what the ReLU wrote
            continue
        kept.append(node)
    for st in g.states:
        states.append(ir.State(st.name, st.shape, st.dtype, source=rename[st.source], init=st.init))
    return kept, states


def to_ir(module: torch.nn.Module, input: ir.InputSpec | None = None,
          labels: list[str] | None = None, name: str | None = None) -> ir.Model:
    """Export ``module`` (see the module docstring); the result is validated."""
    if not isinstance(module, torch.nn.Module):
        raise ExportError(f"expected a torch.nn.Module, got {type(module).__name__}")
    if not _is_sequential(module):
        return _graph_to_ir(as_graph(module), module, input, labels, name)
    leaves = _leaves(module)
    layers: list[ir.Layer] = []
    fused_prev = False
    for index, (lname, m) in enumerate(leaves):
        layer = _layer(index, lname, m)
        if layer is None:
            continue
        # Requant followed by ReLU: one clamp to [0, 127]
        if isinstance(layer, ir.ReLU) and layers and isinstance(layers[-1], ir.Requant) \
                and not fused_prev and layers[-1].out_min <= 0:
            layers[-1].out_min = 0
            fused_prev = True
            continue
        fused_prev = False
        layers.append(layer)
    if not layers:
        raise ExportError("the model has no layers to export")
    if labels is None and getattr(module, "labels", None) is not None:
        labels = [str(s) for s in module.labels]
    model = ir.Model(input=_input_spec(module, leaves, input), layers=layers,
                     labels=None if labels is None else [str(s) for s in labels],
                     name=name or getattr(module, "model_name", None) or "model")
    return _validated(model)


def _graph_to_ir(g: "bnn.Graph", module: torch.nn.Module, input: ir.InputSpec | None,
                 labels: list[str] | None, name: str | None) -> ir.Model:
    if labels is None and getattr(module, "labels", None) is not None:
        labels = [str(s) for s in module.labels]
    leaves = [leaf for name, _ in g.wiring for leaf in _leaves(g.layers[name], name)]
    spec = _input_spec(module, leaves, input)
    nodes, states = _graph_nodes(g, _cell_planes(g, spec))
    if not nodes:
        raise ExportError("the model has no layers to export")
    model = ir.Model(input=spec, nodes=nodes, states=states,
                     labels=None if labels is None else [str(s) for s in labels],
                     name=name or getattr(module, "model_name", None) or "model")
    if model.is_sequential:  # a graph that is a chain: the same model as its Sequential
        model = ir.Model(input=model.input, layers=model.layers, labels=model.labels, name=model.name)
    return _validated(model)


def _validated(model: ir.Model) -> ir.Model:
    try:
        model.validate()
    except ir.IRError as e:
        raise ExportError(f"exported model is not valid: {e}") from None
    return model


def as_plain_data(module: torch.nn.Module) -> bool:
    """Whether :func:`bitgen.nn.to_spec` can describe the module as it is (Sequentials,
    Graphs and the known layers), rather than through :func:`as_graph`."""
    if type(module) in (torch.nn.Sequential, bnn.Graph):
        children = module.layers.values() if isinstance(module, bnn.Graph) else module.children()
        return all(as_plain_data(c) for c in children)
    return isinstance(module, LEAVES)
