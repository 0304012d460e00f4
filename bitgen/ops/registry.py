"""The ops of the IR, by kind. Adding an op: its module here, its C kernel(s), this one entry."""
from __future__ import annotations

from .absolute import Abs
from .base import Op
from .change_gate import ChangeGate
from .concat import Concat
from .conv2d import Conv2d
from .conv_transpose2d import ConvTranspose2d
from .eltwise import Add, Sub
from .flatten import Flatten
from .linear import Linear
from .max78000_layer import Max78000Layer
from .mul import Mul
from .pool import AvgPool2d, MaxPool2d
from .relu import ReLU
from .requant import Requant
from .shiftnorm import ShiftNorm
from .sign import Sign
from .tile import Tile
from .unflatten import Unflatten
from .upsample import Upsample

OPS: dict[str, type[Op]] = {
    op.kind: op for op in (Linear, Conv2d, ReLU, MaxPool2d, AvgPool2d, Flatten, Requant, ShiftNorm,
                           Add, Sub, Concat, ConvTranspose2d, Upsample, Abs, Unflatten, Sign, Mul, ChangeGate, Tile,
                           Max78000Layer)
}
