"""The C back end's kernel registry: which kernel computes each layer, for a kernel set.

Each kernel module declares, in code a reader can check against its C, when it applies
(layer kind, shapes, encodings, the kernel set's :class:`~..targets.Target` properties), its
weight layout, its scratch and in-place needs as numbers, its exactness precondition (through
:func:`bitgen.ir.bounds.partial_sum_bound`, the bound ``ir.validate`` uses) and how it is
called (:class:`.base.Choice`):

* :mod:`.generic`: one reference kernel per op, always applicable;
* :mod:`.lut`: the nibble lookup-table fully connected kernel;
* :mod:`.simd`: the Cortex-M4 dual multiply-accumulate fully connected kernel;
* :mod:`.plane`: single-plane convolutions with a fused output stage (channel-by-channel steps);
* :mod:`.dw_smlad`: 3x3 single-plane (depthwise) convolutions with SMLAD on Cortex-M4;
* :mod:`.dw_lut`: single-plane convolutions without a multiplier (RV32EC), through per-tap tables;
* :mod:`.conv_rows`: dense convolutions over transposed input rows, whole tensors, with a
  fused output stage (SMLAD on Cortex-M4, register tiles with mul on RV32EMC);
* :mod:`.conv_lut`: dense convolutions without a multiplier (RV32EC): each pixel's receptive
  field through the LUT kernel, with a fused output stage;
* :mod:`.convt_lut`: transposed convolutions without a multiplier (RV32EC): each phase of the
  stride a fully connected layer of its taps through the LUT kernel, with a fused output stage;
* :mod:`.xnor`: binary x binary convolutions and fully connected layers as XNOR-popcount;
* :mod:`.change`: change-based steps (a change gate, its convolution and output stage).

A kernel is chosen in two steps: :func:`choose`, :func:`choose_group` or :func:`choose_whole`
(before arena planning:
how much scratch and output room the kernel needs, which layers it fuses) and
``Choice.render`` (after planning: the constant data and the call).
"""
from __future__ import annotations

from typing import Callable

from .... import ir
from ..targets import NAMES as TARGETS  # noqa: F401  (the kernel set names)
from ..targets import KernelError, Target
from . import change, conv_lut, conv_rows, convt_lut, dw_lut, dw_smlad, generic, lut, plane, simd, xnor
from .base import FUSED, Choice, Context, ModelSource, Pointers, Prologue, Refusal  # noqa: F401
from .plane import model_input_only_before  # noqa: F401

# Kernels a kernel set can list for a layer before the generic one (Target.linear).
SPECIALIZED: dict[str, Callable[[ir.Layer, ir.TensorType, ir.TensorType, Context], Choice | None]] = {
    "lut": lut.choose,
    "simd": simd.choose,
}


def choose(layer: ir.Layer, t_in: ir.TensorType, t_out: ir.TensorType, target: Target, first: bool,
           lut_chunk: int | None = None, others: list[ir.TensorType] | None = None, alone: bool = True,
           optional: bool = True) -> Choice:
    """The kernel for `layer` on `target` (see choose_group for the convolutions that start
    channel-by-channel steps). `first`: the layer reads the model input; `lut_chunk`: tables per
    pass of the LUT kernel, if not the target's default; `others`: the types of the inputs after
    the first; `alone`: the layer runs on its own, not on single planes inside a step;
    `optional`: kernels that trade scratch for speed (Choice.optional) may be chosen."""
    if alone and (choice := xnor.choose(layer, t_in, t_out, target, tuple(others or ()))) is not None:
        if optional or not choice.optional:
            return choice
    if isinstance(layer, ir.Linear):
        ctx = Context(target, reads_input=first, lut_chunk=lut_chunk)
        for name in target.linear:
            choice = SPECIALIZED[name](layer, t_in, t_out, ctx)
            if choice is not None:
                return choice
    return generic.choose(layer, t_in, t_out, others)


def xnor_first(layer: ir.Layer, t_in: ir.TensorType, t_out: ir.TensorType, target: Target) -> bool:
    """Binary x binary layers take the XNOR kernels before any other specialized kernel."""
    return xnor.choose(layer, t_in, t_out, target) is not None


def choose_group(model: ir.Model, t_in: ir.TensorType, types: list[ir.TensorType], i: int, last: int,
                 target: Target, first: bool = True, optional: bool = True,
                 lut_chunk: int | None = None) -> Choice | Refusal | None:
    """For a conv at i inside a channel-by-channel step ending at `last` (`first`: the step's
    first layer, which reads whole tensors): the XNOR kernel for a binary x binary first layer,
    else a plane kernel fused with as many of the following ReLU/Requant layers (and a 2x2 max
    pool) as it can take (the SMLAD 3x3 or the LUT plane kernel where they apply, else
    plane.choose_group); why not; or None where the kernel set has no plane kernel for this conv.
    `optional`: kernels with scratch of their own (Choice.optional) may be chosen; `lut_chunk`:
    tables per pass of a kernel that trades them for speed, if not the kernel set's default."""
    layer = model.layers[i]
    # Inputs with many zeros (after a ReLU; a first layer's image minus its background) are the
    # mul plane kernels' (bg_conv3x3.inc skips zero inputs): on the trained depthwise CNN of the
    # benchmarks they beat the SMLAD kernel, which does not skip (519 k against 548 k
    # instructions on max78000-sim).
    skips_zeros = target.plane_conv and (t_in.lo >= 0 or (
        model_input_only_before(model, i) and types[0].lo < 0 and types[0].dtype == "int8"
        and isinstance(layer, ir.Conv2d) and layer.padding == (0, 0)))
    if optional:
        for family in (dw_lut,) if skips_zeros else (dw_smlad, dw_lut):
            if family.applies(layer, target) and not (first and xnor_first(layer, t_in, types[i + 1], target)):
                def conv(fused: list[ir.Layer], fused_types: list[ir.TensorType], family=family) -> Choice | Refusal:
                    if family is dw_lut:
                        return dw_lut.plane_conv(layer, t_in, types[i + 1], fused, fused_types, first, lut_chunk)
                    return family.plane_conv(layer, t_in, types[i + 1], fused, fused_types, first)
                choice = conv_rows.fused_best(model, types, i, last, conv)
                if isinstance(choice, Choice) or not target.plane_conv:
                    return choice
    return plane.choose_group(model, t_in, types, i, last, target, first and optional)


def choose_whole(model: ir.Model, types: list[ir.TensorType], t_in: ir.TensorType, i: int, last: int,
                 target: Target, lut_chunk: int | None = None) -> Choice | Refusal | None:
    """A kernel that computes the convolution at i on whole tensors, with some of the layers
    after it up to `last` (the end of its channel-by-channel step) fused (Choice.fuses); why the
    kernel set's kernel does not take it (a Refusal); or None where the kernel set has none.
    Convolutions that a plane kernel takes channel by channel keep it (see emit.plan_model).
    `lut_chunk`: tables per pass of the LUT convolution, if not the kernel set's default.
    A transposed convolution: the LUT kernel of its phases (its step is the layer alone; `last`
    then ends the ReLU/Requant layers after it that it may fuse: convt_lut.pointwise_last)."""
    if isinstance(model.layers[i], ir.ConvTranspose2d):
        return convt_lut.choose(model, types, t_in, i, last, target, lut_chunk)
    rows = conv_rows.choose(model, types, t_in, i, last, target)
    return rows if rows is not None else conv_lut.choose(model, types, t_in, i, last, target, lut_chunk)


__all__ = ["FUSED", "TARGETS", "Choice", "Context", "KernelError", "ModelSource", "Pointers", "Prologue", "Refusal",
           "Target", "choose", "choose_group", "choose_whole", "model_input_only_before", "xnor_first"]
