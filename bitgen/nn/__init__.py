"""Quantization-aware training layers, composed like ``torch.nn``.

The network computes in the *integer domain*: its input is the int8 tensor that
:meth:`bitgen.ir.InputSpec.quantize` produces (held in a float tensor), every quantized layer
outputs the exact integer accumulator, and the norm layers turn accumulators into int8 with
the golden model's rounding. In eval mode the forward pass equals
``bitgen.golden.run(bitgen.nn.export.to_ir(model), x)`` bit for bit; in training the same
function runs in float32 with straight-through gradients. The last layer's integer logits are
scaled only inside the loss.

Example (the USPS MLP)::

    from torch import nn as tnn
    from bitgen import nn, ir
    model = tnn.Sequential(
        tnn.Flatten(),
        nn.QuantLinear(256, 64, encoding="4bitsym"), nn.Requant(), tnn.ReLU(),
        nn.QuantLinear(64, 64, encoding="4bitsym"), nn.ShiftNorm(),
        nn.QuantLinear(64, 10, encoding="4bitsym"),
    )
    model.input_spec = ir.InputSpec((1, 16, 16), scale=1 / 127)   # carried into model.pt

``ReLU``, ``MaxPool2d`` and ``Flatten`` are the ``torch.nn`` modules (exact on integers).
Graphs (residual blocks, concatenated inputs, decoders) join tensors with :class:`Add`,
:class:`Sub` and :class:`Concat`, either in a :class:`Graph` (plain data, what config files
build) or in the ``forward`` of your own module (traced with torch.fx on export)::

    class Block(tnn.Module):
        def __init__(self, c):
            super().__init__()
            self.conv = nn.QuantConv2d(c, c, 3, padding=1, encoding="4bitsym")
            self.norm, self.add = nn.Requant(), nn.Add()
        def forward(self, x):
            return self.add(self.norm(self.conv(x)), x)

The MAX78000's accelerator has its own layers, :class:`Max78000Layer` (a fused pool, conv2d or
linear and activation, with the hardware's arithmetic) and :class:`Max78000Add` (a residual
join), exported to the golden op ``max78000_layer`` (see :mod:`bitgen.nn.max78000`).
"""
from torch.nn import Flatten, MaxPool2d, ReLU  # noqa: F401  (exact on integer values)

from .binary import Mul, Sign, Tile  # noqa: F401
from .calibration import calibrate, set_quantization, set_range_gradient  # noqa: F401
from .graph import Add, Concat, Graph, GraphState, Sub  # noqa: F401
from .max78000 import Max78000Add, Max78000Layer  # noqa: F401
from .layers import QuantConv2d, QuantConvTranspose2d, QuantLinear  # noqa: F401
from .norms import STATISTICS, Requant, Shift, ShiftNorm, multiplier_shift  # noqa: F401
from .pooling import AvgPool2d  # noqa: F401
from .recurrent import BinaryConvRNN, reset_states, run_clips, set_noise, stateful  # noqa: F401
from .quantizers import SCALES, WeightQuantizer, to_levels  # noqa: F401
from .spec import from_spec, graph, input_spec_of, sequential, to_spec  # noqa: F401
