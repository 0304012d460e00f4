"""The MAX78000 CNN accelerator's layers, computed from what the firmware wrote: the per-layer
registers, the kernel memories (MRAM), the bias memories and the data memories (SRAM).

Nothing here sees the IR: a layer is decoded from its registers (:func:`decode`), checked for
settings the model does not support or that contradict each other (a :class:`CnnFault` naming
the register and the value), then executed on the processors' data (:func:`execute`).

The hardware model (register meanings from ADI's synthesis tool, izer; see
``../shared/reference/max78000.md`` section 4; izer's generated cnn.c writes them):

* 64 processors in 4 quadrants of 16; processor p reads data memory instance p // 4 (16
  instances of 8192 32-bit words, quadrant p // 16), byte lane p % 4. The data is HWC: the word
  of pixel ``i``, input pass ``j`` and operand ``o`` is ``RPTR + (i * passes + j) * operands + o``
  (CHW input, layer 0 only: the processor's bytes in pixel order).
* A convolution computes, for output pass ``e`` and output lane ``l`` (of ``span`` lanes from the
  first output lane, a multiple of 4), the sum over every enabled processor ``p`` and input pass
  ``j`` of its data correlated with kernel number ``k = (e * span + l) * passes + j`` of p's
  kernel memory; kernel k of ``q``-bit weights is bit slice ``k % (8 / q)`` of byte group
  ``k // (8 / q)``, a group being ``taps`` consecutive bytes of the memory's byte stream (9 bytes
  a word, last byte first), last tap first, from the start the mask-count register gives.
* Output lane L, pixel i and pass e go to the word ``WPTR_BASE + (L // 4 - first // 4) * 8192 +
  i * pixel_stride + e * CHOFFS`` (byte lane L % 4; 32-bit outputs take the word of L % 4).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

REGS = {"RCNT": 0, "CCNT": 1, "ONED": 2, "PRCNT": 3, "PCCNT": 4, "STRIDE": 5, "WPTR_BASE": 6,
        "WPTR_TOFFS": 7, "WPTR_MOFFS": 8, "WPTR_CHOFFS": 9, "RPTR_BASE": 10, "LCTL": 11, "MCNT": 12,
        "TPTR": 13, "ENA": 14, "POST": 15, "STREAM1": 16, "STREAM2": 17, "FMAX": 18, "LCTL2": 20}
NAMES = {v: k for k, v in REGS.items()}
WORDS = 8192  # 32-bit words per data memory instance
KERNEL_WORDS = 768  # 72-bit words of kernel memory per processor
BIAS_BYTES = 512  # per quadrant
WEIGHT_BITS = {0: 8, 1: 1, 2: 2, 3: 4}  # POST bits 22..23
ELTWISE = {0b01: "add", 0b00: "sub", 0b11: "xor", 0b10: "or"}  # ONED bits 14..15


class CnnFault(Exception):
    """A register setting the model does not support, or that contradicts another."""


@dataclass
class State:
    """What the firmware wrote: ``lregs[q][reg][layer]``, ``ctl[q][i]`` (CTL, SRAM, LCNT_MAX,
    SRAM_TEST), ``mram`` (64, 768, 9) bytes, ``bias`` (4, 512) bytes, ``sram`` (16, 32768)
    bytes (little-endian words)."""

    lregs: np.ndarray
    ctl: np.ndarray
    mram: np.ndarray
    bias: np.ndarray
    sram: list[np.ndarray]

    def reg(self, q: int, layer: int, name: str) -> int:
        return int(self.lregs[q, REGS[name], layer])


@dataclass
class Layer:
    """One decoded layer."""

    index: int
    operation: str  # conv2d, conv1d, convtranspose2d, passthrough
    procs: int  # input processors (64-bit map)
    rows: int
    cols: int
    pad: tuple[int, int]
    kernel: int  # taps per kernel: 9 (3x3), 1 (1x1) or the 1-D length
    passes: int  # input passes (channels / 64, or pixels when flattening)
    operands: int
    eltwise: str
    pool_first: bool
    pool: str  # none, max, avg
    pool_size: tuple[int, int]
    stride: int
    rptr: int
    chw: bool
    quant: int
    shift: int
    activation: str
    wide: bool
    span: int = 0
    out_passes: int = 1
    flatten: bool = False  # POST bit 27: the input's pixels are passes of a 1x1 layer
    outputs: int = 0  # output channels: out_passes * span, or fewer (the last pass partly used)
    first_lane: int = 0
    kernel_start: int = 0  # byte of the kernel memories' byte streams
    bias: tuple[int, int] | None = None  # (quadrant, offset)
    wptr: dict[int, int] = field(default_factory=dict)  # quadrant -> write pointer
    pixel_stride: int = 1
    pass_stride: int = 0
    time_slot: int = 0  # passthrough: words between time slots


def _bits(v: int, lo: int, n: int) -> int:
    return (v >> lo) & ((1 << n) - 1)


def _popcount(v: int) -> int:
    return bin(v).count("1")


def decode(st: State, index: int, avg_rounding: bool) -> Layer:
    """Layer ``index`` from the registers, or a CnnFault naming what is unsupported."""
    where = f"layer {index}"
    quads = [q for q in range(4) if st.reg(q, index, "ENA")]
    if not quads:
        raise CnnFault(f"{where}: no processor enabled (ENA 0 in every quadrant)")
    procs = masks = 0
    for q in quads:
        ena = st.reg(q, index, "ENA")
        procs |= (ena & 0xFFFF) << (16 * q)
        masks |= ((ena >> 16) & 0xFFFF) << (16 * q)
    ref = quads[0]
    reg = {name: st.reg(ref, index, name) for name in REGS}
    for q in quads[1:]:  # the fields every quadrant of a layer must agree on
        for name in ("RCNT", "CCNT", "ONED", "PRCNT", "PCCNT", "STRIDE", "RPTR_BASE", "MCNT", "LCTL2"):
            if st.reg(q, index, name) != reg[name]:
                raise CnnFault(f"{where}: {name} differs between quadrants {ref} and {q} "
                               f"(0x{reg[name]:08x}, 0x{st.reg(q, index, name):08x})")
    for name in ("STREAM1", "STREAM2", "FMAX"):
        for q in quads:
            if st.reg(q, index, name):
                raise CnnFault(f"{where}: {name} = 0x{st.reg(q, index, name):08x}: streaming is not modelled")
    lctl = reg["LCTL"]
    if not lctl & 0x20:
        raise CnnFault(f"{where}: LCTL 0x{lctl:08x}: bit 5 (always set by izer) is clear")
    if not lctl & (1 << 11):
        raise CnnFault(f"{where}: LCTL 0x{lctl:08x}: local-source mode (bit 11 clear) is not modelled")
    extra = lctl & ~(0x20 | 0x40 | 0x80 | 0x100 | 0x200 | (1 << 11) | (0xF << 12) | (1 << 16))
    if extra:
        raise CnnFault(f"{where}: LCTL 0x{lctl:08x}: unsupported bits 0x{extra:08x} (read-ahead, broadcast, "
                       "bypass, ...)")
    posts = {q: st.reg(q, index, "POST") for q in quads}
    post = posts[ref]
    for q in quads:
        if (posts[q] & ~0x1FFF) != (post & ~0x1FFF):
            raise CnnFault(f"{where}: POST differs between quadrants beyond the bias (0x{post:08x}, 0x{posts[q]:08x})")
    if post & (0x7 << 29):
        raise CnnFault(f"{where}: POST 0x{post:08x}: calcx4/depth-wise/tcalc (bits 29..31) are not modelled")
    rcnt, ccnt = reg["RCNT"], reg["CCNT"]
    for name, v in (("RCNT", rcnt), ("CCNT", ccnt)):
        if v & ~(0x3FF | (3 << 16)):
            raise CnnFault(f"{where}: {name} 0x{v:08x}: unsupported bits")
    pad = ((rcnt >> 16) & 3, (ccnt >> 16) & 3)
    rows, cols = (rcnt & 0x3FF) + 1 - 2 * pad[0], (ccnt & 0x3FF) + 1 - 2 * pad[1]
    if rows < 1 or cols < 1:
        raise CnnFault(f"{where}: RCNT/CCNT 0x{rcnt:x}/0x{ccnt:x} leave no data after padding {pad}")
    oned = reg["ONED"]
    conv1d = bool(oned & (1 << 12))
    eltwise_on = bool(oned & (1 << 13))
    operands = _bits(oned, 18, 4) + 1 if eltwise_on else 1
    eltwise = ELTWISE[_bits(oned, 14, 2)] if eltwise_on else "none"
    if oned & ~0x3FFFFF:
        raise CnnFault(f"{where}: ONED 0x{oned:08x}: unsupported bits")
    prcnt, pccnt, strd = reg["PRCNT"], reg["PCCNT"], reg["STRIDE"]
    for name, v in (("PRCNT", prcnt), ("PCCNT", pccnt), ("STRIDE", strd)):
        if v & ~0xF:
            raise CnnFault(f"{where}: {name} 0x{v:08x}: pool dilation / multi-pass stride are not modelled")
    pool_size = (prcnt + 1, pccnt + 1)
    pooling = bool(lctl & 0x80)
    if not pooling and pool_size != (1, 1):
        raise CnnFault(f"{where}: PRCNT/PCCNT give a {pool_size} pool but LCTL bit 7 (pool enable) is clear")
    pool = ("max" if lctl & 0x100 else "avg") if pooling else "none"
    pool_first = bool(oned & (1 << 16)) or not pooling or not eltwise_on
    lctl2 = reg["LCTL2"]
    post_flatten = bool(post & (1 << 27))
    passes = (lctl2 & 0xF) + 1 + ((_bits(post, 18, 4) << 4) if post_flatten else 0)
    if not post_flatten and _bits(post, 18, 4):
        raise CnnFault(f"{where}: POST 0x{post:08x}: bits 18..21 set without flatten (bit 27)")
    quant = WEIGHT_BITS[_bits(post, 22, 2)]
    shift = _bits(post, 13, 4) * (-1 if post & (1 << 17) else 1)
    relu, absolute = bool(lctl & 0x200), bool(post & (1 << 26))
    if relu and absolute:
        raise CnnFault(f"{where}: ReLU (LCTL bit 9) and Abs (POST bit 26) both set")
    wide = bool(lctl & (1 << 16))
    passthrough = masks == 0
    if passthrough and not post & (1 << 24):
        raise CnnFault(f"{where}: no mask enabled (ENA bits 16..31 clear) but POST bit 24 (time slots) is clear")
    if not passthrough and masks != procs:
        raise CnnFault(f"{where}: ENA mask enables 0x{masks:016x} differ from processor enables 0x{procs:016x}")
    if post & (1 << 28):
        op = "convtranspose2d"
    elif conv1d:
        op = "conv1d"
    elif passthrough:
        op = "passthrough"
    else:
        op = "conv2d"
    ly = Layer(index=index, operation=op, procs=procs, rows=rows, cols=cols, pad=pad, kernel=0, passes=passes,
               operands=operands, eltwise=eltwise, pool_first=pool_first, pool=pool, pool_size=pool_size,
               stride=strd + 1, rptr=reg["RPTR_BASE"], chw=bool(lctl & 0x40), quant=quant, shift=shift,
               activation="relu" if relu else ("abs" if absolute else "none"), wide=wide,
               flatten=post_flatten)
    if ly.rptr >= WORDS:
        raise CnnFault(f"{where}: RPTR_BASE 0x{ly.rptr:x} is beyond a data memory instance ({WORDS} words)")
    if ly.chw and (index != 0 or passes != 1 or operands != 1):
        raise CnnFault(f"{where}: CHW input (LCTL bit 6) only for layer 0, one pass, one operand")
    if op == "convtranspose2d":  # the row and column counts are those of the zero-stuffed input
        if rows % 2 or cols % 2 or strd or pooling:
            raise CnnFault(f"{where}: ConvTranspose2d needs even RCNT/CCNT data counts (2 x input), STRIDE 0 "
                           "and no pooling")
        ly.rows, ly.cols = rows // 2, cols // 2
    if op == "passthrough":
        _decode_passthrough(st, ly, quads, reg, where)
    else:
        _decode_conv(st, ly, quads, reg, post, posts, oned, where)
    return ly


def _decode_conv(st: State, ly: Layer, quads: list[int], reg: dict[str, int], post: int, posts: dict[int, int],
                 oned: int, where: str) -> None:
    if ly.operation == "conv1d":
        ly.kernel = _bits(oned, 8, 4)
        if not 1 <= ly.kernel <= 9 or ly.cols != 1 or ly.pad[1]:
            raise CnnFault(f"{where}: conv1d (ONED 0x{oned:08x}) needs a kernel of 1..9 and one column")
    elif ly.operation == "convtranspose2d":
        ly.kernel = 9
    else:
        ly.kernel = 1 if oned & (1 << 8) else 9
    if ly.stride != 1 and ly.pool == "none" and ly.operation != "convtranspose2d":
        pass  # a 1x1 "pool" with a stride: subsampling
    if ly.operation != "conv1d" and ly.kernel == 9 and max(ly.pad) > 2:
        raise CnnFault(f"{where}: padding {ly.pad} exceeds 2")
    oned_sad = _bits(oned, 4, 4)
    if ly.operation != "conv1d" and oned_sad:
        raise CnnFault(f"{where}: ONED 0x{oned:08x}: a 1-D kernel start (bits 4..7) on a 2-D layer")
    mcnt = reg["MCNT"]
    sad, mmax = mcnt >> 16, mcnt & 0xFFFF
    if sad % 8 or mmax < sad or (mmax - sad) % ly.quant:
        raise CnnFault(f"{where}: MCNT 0x{mcnt:08x}: start {sad} and end {mmax} do not fit {ly.quant}-bit kernels")
    count = (mmax - sad) // ly.quant + 1
    lctl2 = reg["LCTL2"]
    xpch = lctl2 >> 8
    if xpch % ly.quant:
        raise CnnFault(f"{where}: LCTL2 0x{lctl2:08x}: output lane span {xpch} is not a multiple of {ly.quant} bits")
    ly.span = xpch // ly.quant + 1
    if count % ly.passes:
        raise CnnFault(f"{where}: MCNT gives {count} kernels per processor, not a multiple of {ly.passes} input passes")
    # output channel c is lane c % span of output pass c // span; the last pass may use fewer lanes
    ly.outputs = count // ly.passes
    ly.out_passes = -(-ly.outputs // ly.span)
    ly.kernel_start = (sad // 8) * ly.kernel + oned_sad
    last = ly.kernel_start + ((count - 1) // (8 // ly.quant) + 1) * ly.kernel
    if last > KERNEL_WORDS * 9:
        raise CnnFault(f"{where}: kernels reach byte {last} of a kernel memory of {KERNEL_WORDS * 9}")
    wptr = {q: st.reg(q, ly.index, "WPTR_BASE") for q in quads}
    if len(set(wptr.values())) != 1:
        raise CnnFault(f"{where}: WPTR_BASE differs between quadrants: {wptr}")
    base = wptr[quads[0]]
    if base >= 1 << 17:
        raise CnnFault(f"{where}: WPTR_BASE 0x{base:x} beyond the 16 data memory instances")
    ly.wptr = {-1: base}
    ly.first_lane = (base >> 13) * 4
    if ly.first_lane + ly.span > 64:
        raise CnnFault(f"{where}: {ly.span} output lanes from lane {ly.first_lane} pass processor 63")
    moffs, toffs, choffs = reg["WPTR_MOFFS"], reg["WPTR_TOFFS"], reg["WPTR_CHOFFS"]
    if moffs != 1 << 13:
        raise CnnFault(f"{where}: WPTR_MOFFS 0x{moffs:x}: only 0x2000 (the next instance every 4 lanes) is modelled")
    want_toffs = 1 if ly.kernel == 1 and ly.operation == "conv2d" else 0
    if toffs != want_toffs:
        raise CnnFault(f"{where}: WPTR_TOFFS {toffs}, expected {want_toffs} for this operation")
    skip = (lctl2 >> 4) & 0xF
    if (skip + 1) % ly.out_passes:
        raise CnnFault(f"{where}: LCTL2 write skip {skip} does not fit {ly.out_passes} output passes")
    gap = (skip + 1) // ly.out_passes
    width = 4 if ly.wide else 1
    want = width * gap if ly.out_passes > 1 else 0
    if choffs != want:
        raise CnnFault(f"{where}: WPTR_CHOFFS {choffs}, expected {want} ({ly.out_passes} output passes, "
                       f"write gap {gap - 1}{', 32-bit' if ly.wide else ''})")
    ly.pixel_stride, ly.pass_stride = (skip + 1) * width, width * gap
    biased = [q for q in quads if posts[q] & (1 << 12)] + [q for q in range(4) if q not in quads and
                                                            st.reg(q, ly.index, "POST") & (1 << 12)]
    if len(biased) > 1:
        raise CnnFault(f"{where}: bias enabled (POST bit 12) in quadrants {biased}; one holds a layer's bias")
    if biased:
        q = biased[0]
        offs = st.reg(q, ly.index, "POST") & 0xFFF
        if offs + ly.outputs > BIAS_BYTES:
            raise CnnFault(f"{where}: bias at offset {offs} of quadrant {q} runs past its {BIAS_BYTES} bytes")
        ly.bias = (q, offs)
    if ly.wide and ly.activation != "none":
        raise CnnFault(f"{where}: 32-bit output (LCTL bit 16) with an activation")
    if not -15 <= ly.shift <= 15:
        raise CnnFault(f"{where}: shift {ly.shift}")


def _decode_passthrough(st: State, ly: Layer, quads: list[int], reg: dict[str, int], where: str) -> None:
    if ly.wide or ly.shift or ly.activation != "none":
        raise CnnFault(f"{where}: a passthrough layer with a shift, activation or 32-bit output")
    if ly.pad != (0, 0):
        raise CnnFault(f"{where}: a passthrough layer with padding {ly.pad}")
    mcnt = reg["MCNT"]
    if mcnt & ~0xFFFF or mcnt % 8:
        raise CnnFault(f"{where}: MCNT 0x{mcnt:08x} of a passthrough layer (output passes x 8)")
    ly.out_passes = mcnt // 8 + 1
    if ly.out_passes != ly.passes:
        raise CnnFault(f"{where}: passthrough with {ly.passes} input and {ly.out_passes} output passes")
    lctl2 = reg["LCTL2"]
    skip = (lctl2 >> 4) & 0xF
    ly.pixel_stride = (skip + 1) * ly.out_passes
    choffs = reg["WPTR_CHOFFS"]
    want = skip + 1 if ly.out_passes > 1 else 0
    if choffs != want:
        raise CnnFault(f"{where}: WPTR_CHOFFS {choffs}, expected {want}")
    ly.pass_stride = skip + 1
    for q in quads:
        ly.wptr[q] = st.reg(q, ly.index, "WPTR_BASE")
        if ly.wptr[q] >= 1 << 17:
            raise CnnFault(f"{where}: WPTR_BASE 0x{ly.wptr[q]:x} in quadrant {q}")
        n = _popcount((ly.procs >> (16 * q)) & 0xFFFF)
        toffs = st.reg(q, ly.index, "WPTR_TOFFS")
        if n > 4 and toffs != 4 * 2048:
            raise CnnFault(f"{where}: WPTR_TOFFS 0x{toffs:x} in quadrant {q}: {n} channels need time slots one "
                           "instance apart (0x2000)")
    ly.time_slot = 8192


# ---------------------------------------------------------------------------------- execute
def _read_inputs(st: State, ly: Layer) -> np.ndarray:
    """The data every enabled processor reads: (processors, passes, operands, rows, cols), int64."""
    procs = [p for p in range(64) if ly.procs >> p & 1]
    n = ly.rows * ly.cols
    out = np.zeros((len(procs), ly.passes, ly.operands, ly.rows, ly.cols), dtype=np.int64)
    for k, p in enumerate(procs):
        mem = st.sram[p // 4]
        if ly.chw:
            start = ly.rptr * 4
            if start + n > WORDS * 4:
                raise CnnFault(f"layer {ly.index}: CHW input of processor {p} runs past its data memory")
            data = mem[start:start + n].view(np.int8)
            out[k, 0, 0] = data.reshape(ly.rows, ly.cols)
            continue
        words = ly.rptr + np.arange(n * ly.passes * ly.operands)
        if words[-1] >= WORDS:
            raise CnnFault(f"layer {ly.index}: processor {p} reads word {words[-1]} of its data memory "
                           f"(RPTR_BASE 0x{ly.rptr:x}), past its {WORDS} words")
        data = mem[words * 4 + p % 4].view(np.int8).astype(np.int64)
        out[k] = data.reshape(n, ly.passes, ly.operands).transpose(1, 2, 0).reshape(
            ly.passes, ly.operands, ly.rows, ly.cols)
    return out


def _eltwise(x: np.ndarray, fn: str) -> np.ndarray:
    """Fold the operand axis (2) of x; the result clamped to int8."""
    y = x[:, :, 0]
    for o in range(1, x.shape[2]):
        if fn == "add":
            y = y + x[:, :, o]
        elif fn == "sub":
            y = y - x[:, :, o]
        elif fn == "xor":
            y = np.bitwise_xor(y, x[:, :, o])
        else:
            y = np.bitwise_or(y, x[:, :, o])
    return np.clip(y, -128, 127)[:, :, None]


def _pool(x: np.ndarray, ly: Layer, rounding: bool) -> np.ndarray:
    (kh, kw), s = ly.pool_size, ly.stride
    if ly.operation == "conv1d":
        kw = 1
    win = sliding_window_view(x, (kh, kw), axis=(3, 4))[:, :, :, ::s, ::s]
    win = win.reshape(win.shape[:5] + (-1,))
    if ly.pool == "max":
        return win.max(axis=-1)
    n = kh * kw
    tot = win.sum(axis=-1)
    q = (2 * np.abs(tot) + n) // (2 * n) if rounding and ly.operation != "conv1d" else np.abs(tot) // n
    return np.sign(tot) * q


def _kernels(st: State, ly: Layer, procs: list[int]) -> np.ndarray:
    """Every kernel: (out passes, lanes, input passes, processors, taps) signed weights."""
    qf = 8 // ly.quant
    k = np.arange(ly.outputs * ly.passes)
    group, slice_ = k // qf, k % qf
    taps = ly.kernel
    # stream byte of (kernel, j); j = 0 holds the last tap
    b = ly.kernel_start + group[:, None] * taps + np.arange(taps)[None, :]
    word, byte = b // 9, 8 - b % 9
    raw = st.mram[np.array(procs)][:, word, byte]  # (P, K, taps)
    v = (raw.astype(np.int64) >> (slice_[None, :, None] * ly.quant)) & ((1 << ly.quant) - 1)
    v = np.where(v >= 1 << (ly.quant - 1), v - (1 << ly.quant), v)
    v = v[:, :, ::-1]  # tap order
    unused = (ly.out_passes * ly.span - ly.outputs) * ly.passes  # lanes of a partly used last pass
    v = np.concatenate([v, np.zeros((len(procs), unused, taps), dtype=v.dtype)], axis=1)
    return v.reshape(len(procs), ly.out_passes, ly.span, ly.passes, taps).transpose(1, 2, 3, 0, 4)


def execute(st: State, ly: Layer, avg_rounding: bool) -> int:
    """Run decoded layer ``ly``: read, element-wise, pool, operator, output stage, write.
    Returns the number of output values written."""
    procs = [p for p in range(64) if ly.procs >> p & 1]
    x = _read_inputs(st, ly)
    if ly.eltwise != "none" and not ly.pool_first:
        x = _eltwise(x, ly.eltwise)
    if ly.pool != "none" or ly.stride > 1 and ly.operation != "convtranspose2d":
        x = _pool(x, ly, avg_rounding) if ly.pool != "none" else x[:, :, :, ::ly.stride, ::ly.stride]
    if ly.eltwise != "none" and ly.pool_first:
        x = _eltwise(x, ly.eltwise)
    x = x[:, :, 0]  # (P, passes, H, W)
    if ly.operation == "passthrough":
        return _write_passthrough(st, ly, procs, x)
    w = _kernels(st, ly, procs)  # (E, span, passes, P, taps)
    acc = _convolve(ly, x, w)  # (E, span, OH, OW)
    if ly.bias is not None:
        q, offs = ly.bias
        b = st.bias[q, offs:offs + ly.outputs].view(np.int8).astype(np.int64)
        b = np.concatenate([b, np.zeros(ly.out_passes * ly.span - ly.outputs, dtype=np.int64)])
        acc = acc + 128 * b.reshape(ly.out_passes, ly.span)[:, :, None, None]
    if ly.wide:
        if acc.size and (acc.min() < -(2**31) or acc.max() >= 2**31):
            raise CnnFault(f"layer {ly.index}: a 32-bit output leaves int32")
        y = acc
    else:
        k = 7 - ly.shift
        y = (acc + (1 << (k - 1))) >> k if k > 0 else acc << -k
        y = np.clip(y, -128, 127)
        if ly.activation == "relu":
            y = np.clip(y, 0, 127)
        elif ly.activation == "abs":
            y = np.clip(np.abs(y), 0, 127)
    return _write_conv(st, ly, y)


def _convolve(ly: Layer, x: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Exact sums (float64 products of int8 values: exact below 2**53) of x (P, passes, H, W)
    with kernels w (E, span, passes, P, taps)."""
    e, span, passes, p, taps = w.shape
    if ly.operation == "conv1d":
        xp = np.pad(x[:, :, :, 0], ((0, 0), (0, 0), (ly.pad[0], ly.pad[0])))
        win = sliding_window_view(xp, taps, axis=2)  # P passes L taps
        cols = win.transpose(2, 1, 0, 3).reshape(win.shape[2], -1)  # L, (passes P taps)
        out_shape = (win.shape[2], 1)
    else:
        k = 3 if taps == 9 else 1
        if ly.operation == "convtranspose2d":
            h, wd = x.shape[2], x.shape[3]
            stuffed = np.zeros(x.shape[:2] + (2 * h - 1, 2 * wd - 1), dtype=x.dtype)
            stuffed[:, :, ::2, ::2] = x
            xp = np.pad(stuffed, ((0, 0), (0, 0), (ly.pad[0], ly.pad[0] + 1), (ly.pad[1], ly.pad[1] + 1)))
        else:
            xp = np.pad(x, ((0, 0), (0, 0), (ly.pad[0], ly.pad[0]), (ly.pad[1], ly.pad[1])))
        win = sliding_window_view(xp, (k, k), axis=(2, 3))  # P passes OH OW k k
        oh, ow = win.shape[2], win.shape[3]
        cols = win.transpose(2, 3, 1, 0, 4, 5).reshape(oh * ow, -1)
        out_shape = (oh, ow)
    wm = w.reshape(e * span, passes * p * taps).T  # (passes P taps), (E span)
    acc = cols.astype(np.float64) @ wm.astype(np.float64)
    return np.rint(acc).astype(np.int64).T.reshape((e, span) + out_shape)


def _write_conv(st: State, ly: Layer, y: np.ndarray) -> int:
    e, span, oh, ow = y.shape
    n = oh * ow
    base = ly.wptr[-1]
    offs = base & (WORDS - 1)
    pix = np.arange(n)
    count = 0
    for l in range(span):
        lane = ly.first_lane + l
        inst = lane // 4
        for p in range(e):
            if p * span + l >= ly.outputs:
                continue  # an unused lane of the last pass
            words = offs + pix * ly.pixel_stride + p * ly.pass_stride
            if ly.wide:
                words = words + lane % 4
            if words[-1] >= WORDS:
                raise CnnFault(f"layer {ly.index}: output lane {lane} pass {p} writes word {words[-1]} of instance "
                               f"{inst}, past its {WORDS} words")
            vals = y[p, l].reshape(n)
            mem = st.sram[inst]
            if ly.wide:
                idx = (words[:, None] * 4 + np.arange(4)[None, :]).reshape(-1)
                mem[idx] = vals.astype("<i4").view(np.uint8)
            else:
                mem[words * 4 + lane % 4] = vals.astype(np.int8).view(np.uint8)
            count += n
    return count


def _write_passthrough(st: State, ly: Layer, procs: list[int], x: np.ndarray) -> int:
    _, passes, oh, ow = x.shape
    n = oh * ow
    pix = np.arange(n)
    count = 0
    rank: dict[int, int] = {}
    for k, p in enumerate(procs):
        q = p // 16
        r = rank.get(q, 0)
        rank[q] = r + 1
        base = ly.wptr[q]
        inst = (base >> 13) + r // 4
        if inst >= 16:
            raise CnnFault(f"layer {ly.index}: passthrough channel of processor {p} goes past instance 15")
        offs = base & (WORDS - 1)
        for e in range(passes):
            words = offs + pix * ly.pixel_stride + e * ly.pass_stride
            if words[-1] >= WORDS:
                raise CnnFault(f"layer {ly.index}: passthrough writes word {words[-1]} of instance {inst}")
            st.sram[inst][words * 4 + r % 4] = x[k, e].reshape(n).astype(np.int8).view(np.uint8)
            count += n
    return count
