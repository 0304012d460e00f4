"""ai8x networks (ADI's MAX78000 flow) as bitgen IR: an izer network YAML plus the hardware
integers of each layer (from a quantized ai8x checkpoint, or from izer's own logs) become a graph
of :class:`bitgen.ir.Max78000Layer` nodes with the accelerator's exact arithmetic.

The wiring follows izer: each layer reads the layer before it, or its ``in_sequences`` (``-1``:
the network input); several inputs of a layer without an element-wise op are concatenated along
channels; an element-wise layer's operands are its inputs, or, when it reads one tensor, that
tensor split into ``operands`` equal channel blocks (``packed_operands``).
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from .. import ir
from ..backends.max78000.network_yaml import LayerSpec, NetworkSpec
from ..errors import BitgenError


class Ai8xImportError(BitgenError):
    pass


def layer_op(ly: LayerSpec, weight: np.ndarray | None, bias: np.ndarray | None, output_shift: int | None,
             avg_pool_rounding: bool, packed: bool) -> ir.Max78000Layer:
    """The op of one YAML layer with its hardware weight (conv2d (O, C, k, k), conv1d (O, C, k),
    linear (O, N)), bias bytes and the YAML/checkpoint output shift (None: 0)."""
    if ly.has_weights and weight is None:
        raise Ai8xImportError(f"layer {ly.index} ({ly.operation}) has no weights")
    pooling = ly.pool != "none" or ly.pool_stride != (1, 1)
    pool = ly.pool if ly.pool != "none" else ("max" if pooling else "none")
    return ir.Max78000Layer(
        operation=ly.operation, weight=weight if ly.has_weights else None, weight_bits=ly.quantization,
        bias=bias if ly.has_weights else None,
        output_shift=0 if (output_shift is None or not ly.has_weights) else int(output_shift),
        activation=ly.activation, output_width=ly.output_width, padding=ly.pad, dilation=ly.dilation,
        output_padding=ly.output_pad if ly.operation == "convtranspose2d" else 1,
        flatten=ly.flatten, pool=pool, pool_size=ly.pool_size if pooling else (1, 1),
        pool_stride=ly.pool_stride if pooling else (1, 1), avg_pool_rounding=avg_pool_rounding and ly.pool == "avg",
        eltwise=ly.eltwise, operands=ly.operands, pool_first=ly.pool_first, packed_operands=packed,
        name=ly.name or f"layer{ly.index}")


def build_model(net: NetworkSpec, input_shape: Sequence[int], weights: Sequence[np.ndarray | None],
                biases: Sequence[np.ndarray | None], output_shifts: Sequence[int | None] | None = None,
                avg_pool_rounding: bool = False, name: str = "ai8x", labels: list[str] | None = None) -> ir.Model:
    """The IR of ``net``: ``weights``/``biases`` per YAML layer (None for a passthrough layer).
    Raises Ai8xImportError naming the first layer bitgen cannot take."""
    refusals = net.refusals()
    if refusals:
        raise Ai8xImportError(f"not supported: {refusals[0]}")
    nodes: list[ir.Node] = []
    out_names = []
    shifts = list(output_shifts) if output_shifts is not None else [None] * len(net.layers)
    for ly in net.layers:
        i = ly.index
        if ly.in_sequences is not None:
            sources = ly.in_sequences
        else:
            sources = [i - 1] if i > 0 else [-1]
        names = []
        for s in sources:
            if s >= i or s < -1:
                raise Ai8xImportError(f"layer {i}: in_sequences {s} is not an earlier layer")
            names.append(ir.INPUT if s == -1 else out_names[s])
        packed = False
        if ly.eltwise != "none":
            if len(names) == 1:
                packed = ly.operands > 1
            elif len(names) != ly.operands:
                raise Ai8xImportError(f"layer {i}: {ly.operands} operands but {len(names)} in_sequences")
        elif len(names) > 1:  # concatenated along channels
            cur = names[0]
            for k, other in enumerate(names[1:]):
                out = f"layer{i}_concat{k}"
                nodes.append(ir.Node(ir.Concat(name=out), (cur, other), out))
                cur = out
            names = [cur]
        op = layer_op(ly, weights[i], biases[i], shifts[i], avg_pool_rounding, packed)
        out = f"layer{i}"
        nodes.append(ir.Node(op, tuple(names), out))
        out_names.append(out)
    # izer runs to the last layer; layers nothing reads besides it are an error in bitgen's IR
    model = ir.Model(ir.InputSpec(tuple(int(v) for v in input_shape), scale=1 / 128), nodes=nodes, name=name,
                     labels=labels)
    try:
        model.validate()
    except ir.IRError as e:
        raise Ai8xImportError(str(e)) from None
    return model
