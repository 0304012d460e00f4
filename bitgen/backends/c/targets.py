"""Kernel sets: which C kernels are fastest on a family of processors, as data.

Every kernel is portable C99, so the host check and the property tests run each of them through
cffi; a kernel set only says which one to prefer where (``bitgen emit --kernels NAME``, and a
board's ``kernels`` list in its board.toml):

* ``generic``: the reference kernels of ``c_runtime/bg_*.c``, one per op, no layout tricks.
* ``rv32ec``: no multiplier (CH32V003). Fully connected layers on int8 inputs use the nibble
  lookup-table kernel: one table load and add per weight nibble, for weights of any width; dense
  convolutions the same kernel on each pixel's receptive field.
* ``rv32emc``: a multiplier. The LUT kernel for weights of up to 4 bits (a lookup is cheaper
  than decoding a weight and multiplying); convolutions that run one plane at a time use the
  plane kernels with their output stage fused; other dense convolutions the row kernel's
  register tiles (mul and add).
* ``cortex-m4``: the DSP extension's dual multiply-accumulate for int8 fully connected layers
  and (on int16 rows) for dense convolutions and 3x3 planes, otherwise as ``rv32emc``.

Every set but ``generic`` computes binary x binary layers (±1 inputs and weights) with XNOR and
population counts (``bg_xnor.c``), which needs no multiplier, and runs a change gate with the
convolution after it as one change-based step: with a multiplier by deltas
(``bg_change_delta.inc``: it keeps the convolution's accumulators and adds each changed value's
products), on ``rv32ec`` by recomputing only the outputs a change reaches (``bg_change.c``).
"""
from __future__ import annotations

from dataclasses import dataclass


class KernelError(ValueError):
    pass


@dataclass(frozen=True)
class Target:
    name: str
    linear: tuple[str, ...] = ()  # fully connected kernels to try, in order, before the generic one
    lut_max_bits: int = 0  # the LUT kernel takes weights of up to this many bits
    # Tables per pass of the LUT kernel (its scratch is 2 * (17 * chunk + 1) bytes). A pass costs
    # each block of 8 outputs a load and a store of its sums, so small chunks are cheap in time;
    # RV32EC parts have 2 KB of SRAM. The planner lowers the chunk when asked for a smaller arena.
    lut_chunk: int = 0
    has_multiplier: bool = False  # the plane convolution kernels need one
    # Dense convolutions: over transposed rows (kernels/conv_rows.py) with "smlad" (the DSP
    # extension's dual multiply-accumulate) or "mul" (a multiplier); "lut" (kernels/conv_lut.py:
    # the LUT kernel per pixel, no multiplier); "" (the generic kernel).
    dense_conv: str = ""
    xnor: bool = False  # binary x binary convolutions and fully connected layers as XNOR-popcount
    change_conv: bool = False  # a change gate and its convolution in one kernel that recomputes what changed
    # that kernel by deltas instead (bg_change_delta_t): it keeps the convolution's accumulators
    # and adds each changed value's products, so it needs a multiplier and more SRAM
    change_delta: bool = False

    @property
    def plane_conv(self) -> bool:
        return self.has_multiplier


KERNEL_SETS: dict[str, Target] = {t.name: t for t in (
    Target("generic"),
    Target("rv32ec", linear=("lut",), lut_max_bits=8, lut_chunk=8, dense_conv="lut", xnor=True, change_conv=True),
    Target("rv32emc", linear=("lut",), lut_max_bits=4, lut_chunk=16, has_multiplier=True, dense_conv="mul",
           xnor=True, change_conv=True, change_delta=True),
    Target("cortex-m4", linear=("simd", "lut"), lut_max_bits=4, lut_chunk=16, has_multiplier=True,
           dense_conv="smlad", xnor=True, change_conv=True, change_delta=True),
)}
NAMES = tuple(KERNEL_SETS)


def get(name: str) -> Target:
    try:
        return KERNEL_SETS[name]
    except KeyError:
        raise KernelError(f"unknown kernel set '{name}' (available: {', '.join(NAMES)})") from None
