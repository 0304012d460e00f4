"""The integer IR: the one data structure every back end reads.

A :class:`Model` is an input specification plus a sequence of integer layers. Everything in it
is an integer except the input scale, which only says how raw sensor values become int8 and
never enters the integer computation. Each op (its fields, type inference and exact golden
semantics) lives in its own module of :mod:`bitgen.ops`; this package holds the model around them:
:mod:`.types` (tensor types, integer ranges), :mod:`.bounds` (the exactness bound every
kernel shares) and :mod:`.model` (validation, serialization, identity).

Tensors are per-sample: ``(C, H, W)`` for images (channel-major, "CHW", the same memory order
as PyTorch) or ``(N,)`` for vectors. Every tensor has a dtype (``int8`` or ``int32``) and a
proved value interval ``[lo, hi]``; :meth:`Model.validate` derives both for every layer and
refuses a model whose accumulators could leave int32 for *some* input in the input interval,
so the C never overflows silently.

A user can build a model by hand::

    from bitgen import ir
    m = ir.Model(
        input=ir.InputSpec(shape=(16,), scale=1 / 127),
        layers=[
            ir.Linear(weight=w_int, encoding="4bitsym"),   # w_int: (10, 16) odd ints in -15..15
            ir.Requant(multiplier=[1], shift=[6]),          # int32 -> int8, round half up
        ],
        labels=[str(i) for i in range(10)],
    )
    m.validate()
"""

from ..ops.absolute import Abs
from ..ops.base import Op
from ..ops.change_gate import ChangeGate
from ..ops.concat import Concat
from ..ops.conv2d import Conv2d
from ..ops.conv_transpose2d import ConvTranspose2d
from ..ops.eltwise import Add, Sub
from ..ops.flatten import Flatten
from ..ops.linear import Linear
from ..ops.max78000_layer import Max78000Layer
from ..ops.mul import Mul
from ..ops.pool import AvgPool2d, MaxPool2d
from ..ops.registry import OPS
from ..ops.relu import ReLU
from ..ops.requant import Requant
from ..ops.shiftnorm import ShiftNorm
from ..ops.sign import Sign
from ..ops.tile import Tile
from ..ops.unflatten import Unflatten
from ..ops.upsample import Upsample
from .model import FORMAT, INPUT, VERSION, InputSpec, Model, Node, State, chain, infer_type
from . import limits
from .types import DTYPE_RANGE, INT8, INT32, IRError, TensorType
from . import change  # noqa: E402  (change-based convolutions: gates and their references)

Layer = Op  # an op as one layer of a model
LAYER_TYPES = OPS

__all__ = [
    "Abs", "Add", "Concat", "ConvTranspose2d", "Sub", "Unflatten", "Upsample",
    "AvgPool2d", "Conv2d", "DTYPE_RANGE", "FORMAT", "Flatten", "INPUT", "INT32", "INT8", "IRError", "InputSpec",
    "LAYER_TYPES", "Layer", "Linear", "MaxPool2d", "Model", "Node", "OPS", "Op", "State", "chain", "ReLU", "Requant", "ShiftNorm",
    "TensorType", "VERSION", "infer_type",
    "Mul", "Sign", "ChangeGate", "change", "Tile", "Max78000Layer",
]
