"""State across frames: recurrent cells and stream models.

A stateful module keeps its state between calls, one call per frame, like a stateful RNN:
:func:`reset_states` starts a new clip (every state back to its initial value) and
:func:`run_clips` runs whole clips ``(N, T, ...)`` frame by frame. Export turns each state into
an :class:`bitgen.ir.State` (read in frame t, written in frame t - 1), so the golden model, the
C (``NAME_reset()`` and one frame per ``NAME_run()``) and the boards run the same recurrence.

Two ways to write one:

* :class:`BinaryConvRNN`, PixelRNN's deployed cell (``rnn_1_mul_noise_fixed``,
  ``../shared/reference/scamp5.md`` §2.1) as a layer;
* a :class:`bitgen.nn.Graph` with ``states``: any recurrence over named tensors (what a config
  file describes).
"""
from __future__ import annotations

import torch

from .binary import Mul, Sign
from .graph import Add
from .layers import QuantConv2d


class BinaryConvRNN(torch.nn.Module):
    """The binary conv-RNN cell of PixelRNN, per frame::

        f_t = sgn(W_fi * x_t + W_fh * h_{t-1} - threshold)   (strict >: a tie gives -1)
        h_t = f_t (.) h_{t-1}                                h_0 = +1
        o_t = W_oi * x_t + W_oh * h_{t-1}                    the output (int32 values)

    with ``*`` a same-padded correlation with ±1 weights (``encoding="binary"``, no bias), ``h``
    of ``channels`` planes the size of ``x``. ``h_t`` is the running product of the gates; the
    gate is a :class:`Sign` (PixelRNN's tanh surrogate gradient, ``m``). In training the
    gradient flows back through the frames of a clip (backpropagation through time).

    ``noise`` and ``out_noise``: PixelRNN's noise-aware training (``rnn_1_mul_noise_fixed``): in
    training, Gaussian noise of these standard deviations (in ±1 products) is added to the gate's
    pre-activation before its threshold and to the output ``o_t``; never in eval mode or export.

    Exports to two convolutions and an Add per sum, a Sign and a Mul, and one int8 state."""

    def __init__(self, in_channels: int = 1, channels: int = 1, kernel_size: int = 5, threshold: int = 0,
                 m: float = 2.0, scale: str = "absmean", noise: float = 0.0, out_noise: float = 0.0):
        super().__init__()
        if kernel_size < 1 or kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be odd (same padding), got {kernel_size}")
        self.in_channels, self.channels, self.kernel_size = int(in_channels), int(channels), int(kernel_size)

        def conv(cin: int) -> QuantConv2d:
            return QuantConv2d(cin, self.channels, self.kernel_size, padding=self.kernel_size // 2,
                               encoding="binary", scale=scale)
        self.fi, self.fh, self.oi, self.oh = conv(self.in_channels), conv(self.channels), \
            conv(self.in_channels), conv(self.channels)
        self.gate_sum, self.out_sum = Add(out_dtype="int32"), Add(out_dtype="int32")
        self.gate = Sign(threshold, m=m, noise=noise)
        self.out_noise = float(out_noise)
        if not self.out_noise >= 0:
            raise ValueError(f"out_noise must be >= 0, got {out_noise}")
        self.mul = Mul()
        self.scale = scale
        self.h: torch.Tensor | None = None  # h_{t-1}; None: a new clip (h_0 = +1)

    def reset_state(self) -> None:
        self.h = None

    def initial_state(self, x: torch.Tensor) -> torch.Tensor:
        return torch.ones((x.shape[0], self.channels) + tuple(x.shape[2:]), dtype=x.dtype, device=x.device)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.h
        if h is None:
            h = self.initial_state(x)
        elif h.shape[0] != x.shape[0] or h.shape[2:] != x.shape[2:]:
            raise ValueError(f"frame of shape {tuple(x.shape)} after frames of {tuple(h.shape)}: "
                             "call bitgen.nn.reset_states(model) before a new clip")
        f = self.gate(self.gate_sum(self.fi(x), self.fh(h)))
        o = self.out_sum(self.oi(x), self.oh(h))
        if self.training and self.out_noise:
            o = o + self.out_noise * torch.randn_like(o)
        self.h = self.mul(f, h)
        return o

    def spec(self) -> dict:
        return {"in_channels": self.in_channels, "channels": self.channels, "kernel_size": self.kernel_size,
                "threshold": int(self.gate.threshold.reshape(-1)[0]) if self.gate.threshold.numel() == 1
                else [int(v) for v in self.gate.threshold.tolist()], "m": self.gate.m, "scale": self.scale,
                "noise": self.gate.noise, "out_noise": self.out_noise}


def set_noise(module: torch.nn.Module, sigma: float, output: float = 1.0) -> list[str]:
    """PixelRNN's noise-aware training on a whole model (scamp5.md §2.5): Gaussian noise of
    standard deviation ``sigma`` (in ±1 products) before every threshold that follows a sum of
    products (every :class:`Sign` but one that reads the model input, which sees pixels), and
    ``output`` on every :class:`BinaryConvRNN`'s output. Returns the names of the layers set."""
    from .graph import Graph

    first = set()  # Signs that read the model input: the frame's binarization, no products
    for g in [module] + [m for m in module.modules() if isinstance(m, Graph)]:
        if isinstance(g, Graph):
            first |= {id(g.layers[name]) for name, inputs in g.wiring if list(inputs) == ["input"]}
    leaves = [m for m in module.modules() if not list(m.children())]
    if isinstance(module, torch.nn.Sequential) and leaves:
        first.add(id(leaves[0]))
    done = []
    for name, m in module.named_modules():
        if isinstance(m, BinaryConvRNN):
            m.gate.noise, m.out_noise = float(sigma), float(output)
            done.append(name)
        elif isinstance(m, Sign) and id(m) not in first and not name.endswith(".gate"):
            m.noise = float(sigma)
            done.append(name)
    return done


def stateful(module: torch.nn.Module) -> bool:
    """Whether the module (or a part of it) keeps state between frames."""
    from .graph import Graph

    return any(isinstance(m, BinaryConvRNN) or (isinstance(m, Graph) and m.states) for m in module.modules())


def reset_states(module: torch.nn.Module) -> None:
    """Start a new clip: every state of the module back to its initial value."""
    for m in module.modules():
        if hasattr(m, "reset_state"):
            m.reset_state()


def run_clips(module: torch.nn.Module, clips: torch.Tensor) -> torch.Tensor:
    """Outputs of every frame ``(N, T, ...)`` of clips ``(N, T, ...)``, each clip from the
    initial states. The states of the last frames stay in the module."""
    if clips.dim() < 2:
        raise ValueError("run_clips expects clips of shape (N, T, ...)")
    reset_states(module)
    return torch.stack([module(clips[:, t]) for t in range(clips.shape[1])], dim=1)
