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


def requant(ch: int, rng: np.random.Generator, shift: int = 7) -> ir.Requant:
    return ir.Requant(multiplier=rng.integers(1, 4, ch), shift=np.full(ch, shift))


def decoder(seed: int = 0, ch: int = 8, ups: int = 3, full: int = 2, latent: int | None = 7) -> ir.Model:
    """The die decoder's shape with random weights: Linear latent -> 4x4xch, `ups` transposed
    convolutions 3x3 stride 2 (4x4 -> 32x32 for 3), `full` 3x3 convolutions at that size, then a
    3x3 convolution to one channel, each requantized (and ReLU but the last). Without `latent`
    the input is the 4x4xch image itself."""
    rng = np.random.default_rng(seed)

    def w(*shape):
        return rng.integers(-7, 8, shape)
    layers = [] if latent is None else [ir.Linear(weight=w(ch * 16, latent), encoding="4bit"),
                                        requant(1, rng, 4), ir.ReLU(), ir.Unflatten(shape=(ch, 4, 4))]
    for _ in range(ups):
        layers += [ir.ConvTranspose2d(weight=w(ch, ch, 3, 3), encoding="4bit", stride=2, padding=1, output_padding=1),
                   requant(ch, rng), ir.ReLU()]
    for _ in range(full):
        layers += [ir.Conv2d(weight=w(ch, ch, 3, 3), encoding="4bit", padding=1), requant(ch, rng), ir.ReLU()]
    layers += [ir.Conv2d(weight=w(1, ch, 3, 3), encoding="4bit", padding=1), requant(1, rng)]
    m = ir.Model(ir.InputSpec((latent,) if latent else (ch, 4, 4)), layers)
    m.validate()
    return m
