"""The ops of the IR, one module each (see :mod:`bitgen.ops.base` for what an op provides and
:mod:`bitgen.ops.registry` for the list)."""
from .base import GoldenOverflow, Op  # noqa: F401
from .registry import OPS  # noqa: F401
