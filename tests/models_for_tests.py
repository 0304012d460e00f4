"""Small hand-built IR models shared by tests (no training needed)."""
import numpy as np

from bitgen import ir


def every_kernel_model(seed: int = 0) -> ir.Model:
    """A CNN touching every kernel: conv (dense, depthwise), requant (shift, per-channel
    multiplier, int32 out), ReLU, max/avg pool, ShiftNorm, flatten, linear on int8 and int32."""
    rng = np.random.default_rng(seed)
    return ir.Model(ir.InputSpec((1, 10, 10)), [
        ir.Conv2d(weight=rng.choice([-15, -3, 1, 7, 15], (4, 1, 3, 3)), encoding="4bitsym",
                  padding=1, bias=rng.integers(-300, 300, 4), name="conv1"),
        ir.Requant(multiplier=[1], shift=[5], name="rq1"),
        ir.ReLU(),
        ir.MaxPool2d(2),
        ir.Conv2d(weight=rng.choice([-1, 1], (4, 1, 3, 3)), encoding="binary", groups=4, padding=1, name="dw"),
        ir.Requant(multiplier=[3, 5, 7, 9], shift=[1, 2, 3, 4], rounding="floor", out_dtype="int32"),
        ir.Conv2d(weight=rng.integers(-1, 2, (4, 4, 1, 1)), encoding="ternary", stride=2),
        ir.ShiftNorm(),
        ir.AvgPool2d(2, stride=1),
        ir.Flatten(),
        ir.Linear(weight=rng.choice([-8, -4, 2, 1, 16, 128], (8, 16)), encoding="fp130", bias=np.arange(8)),
        ir.Linear(weight=rng.integers(-8, 8, (5, 8)), encoding="4bit"),
    ], labels=list("abcde"), name="every")


def mlp(seed: int = 0, widths=(256, 32, 10)) -> ir.Model:
    rng = np.random.default_rng(seed)
    layers = []
    for i, (a, b) in enumerate(zip(widths, widths[1:])):
        layers.append(ir.Linear(weight=rng.choice(np.arange(-15, 16, 2), (b, a)), encoding="4bitsym"))
        if i < len(widths) - 2:
            layers.append(ir.ShiftNorm())
    return ir.Model(ir.InputSpec((widths[0],)), layers, name="mlp")
