"""Allocation for the MAX78000's CNN accelerator: which processors run each layer, where its data
lives, where its kernels and bias go, and the value of every register.

The hardware (``../shared/reference/max78000.md`` section 4, and the emulated accelerator in
:mod:`bitgen.sim.max78000_layers`, which runs izer's own firmware bit-exactly):

* processor p reads byte lane p % 4 of data-memory instance p // 4 (quadrant p // 16); data is
  HWC, one word per pixel per instance; channel c of a layer's input sits on processor
  ``first_in + c`` (more than 64 channels: on processor ``first_in + c % lanes`` in word
  ``c // lanes`` of the pixel, limits.expansion, one pass per word; 1-D data: L rows of one
  column);
* output channel o of a layer goes to lane ``first_out + o`` (``first_out`` a multiple of 4:
  WPTR_BASE's instance field), so the next layer reads it on processor ``first_out + o``;
* an element-wise layer with k operands reads, per pixel, k consecutive words (operand j in word
  j, ONED's operand count); so the layers that write its operands write one word in k (write
  gap k - 1, LCTL2 bits 4..7), operand j from word j of the block (izer's ``write_gap`` and
  ``in_sequences``);
* a passthrough layer writes its channels on its input's lanes (izer requires it);
* a processor's kernels for one layer are consecutive in its 768-word kernel memory, from a start
  word every processor of the layer shares (MCNT); kernel ``o * passes + j`` of processor
  ``first_in + c`` is the weight from input channel c (flattened: from pixel j of it) to output o;
  ``8 / bits`` kernels share each byte, a 3x3 kernel fills a word, nine 1x1 kernels share one;
* a layer's bias bytes are consecutive in one quadrant's 512-byte bias memory.

The allocator's choices: a model is a graph (each layer reads the input or earlier layers'
outputs); each tensor read plainly has one data-memory block, each element-wise layer one block of
its operands interleaved; the writer of a tensor fills its plain block, or its operand slot when
nothing reads it plainly, and every other slot gets a passthrough copy with the write gap right
after the writer (cnn_load_input writes the model input into each of its blocks). The input's
lanes from 0, each block's lanes where the kernel memories of its readers are least used (so long
chains spread over all 64 kernel memories), blocks linked by passthrough layers on the same
lanes; word offsets by lifetime (a block lives from its first writer to its last reader; the
lowest free run of its instances, first fit); each layer's kernels in the first run of free words
(from a multiple of 4 words) of all its processors, the biases (a flatten layer's first, then
largest first) each in the least used bias memory of the quadrants in use.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ... import ir
from . import limits
from .limits import (BIAS_BYTES, DATA_WORDS, KERNEL_WORDS, PROCESSORS, PROCESSORS_PER_QUADRANT, QUADRANTS,
                     FitReport, LayerShape)

# Per-layer register indices (tornadocnn.DevAI85; reference section 4)
REGS = {"RCNT": 0, "CCNT": 1, "ONED": 2, "PRCNT": 3, "PCCNT": 4, "STRIDE": 5, "WPTR_BASE": 6,
        "WPTR_TOFFS": 7, "WPTR_MOFFS": 8, "WPTR_CHOFFS": 9, "RPTR_BASE": 10, "LCTL": 11, "MCNT": 12,
        "TPTR": 13, "ENA": 14, "POST": 15, "LCTL2": 20}
WEIGHT_BITS_FIELD = {8: 0, 1: 1, 2: 2, 4: 3}  # POST bits 22..23
ELTWISE_FIELD = {"add": 0b01, "sub": 0b00, "xor": 0b11, "or": 0b10}  # ONED bits 14..15 (izer's op.ENCODING)


def _eltwise_bits(op: ir.Max78000Layer) -> int:
    """ONED's element-wise fields: enable (bit 13), the function, the operand count - 1 (bits
    18..21), pooling before the element-wise op (bit 16, only with a real pool), and bit 17
    on a layer with a convolution."""
    if op.operands == 1:
        return 0
    v = 1 << 13 | ELTWISE_FIELD[op.eltwise] << 14 | (op.operands - 1) << 18
    if op.pool_first and op.pooling and op.pool_size != (1, 1):
        v |= 1 << 16
    if op.has_weights:
        v |= 1 << 17
    return v


@dataclass
class Block:
    """A run of data-memory words, the same in every instance its lanes use, that holds one
    tensor, or the operands of an element-wise layer interleaved pixel by pixel (``stride``
    words a pixel, operand k in word k: the operands' writers use write gap ``stride - 1``)."""

    name: str
    channels: int
    pixels: int
    stride: int = 1  # operands of an element-wise layer, else 1
    width: int = 1  # words a value: 4 for a 32-bit output
    passes: int = 1  # words a pixel (more than 64 channels: limits.expansion)
    start: int = 0  # the first layer that writes it (-1: cnn_load_input)
    end: int = 0  # the last layer that reads it (the layer count: the output, unloaded)
    first_lane: int | None = None
    offset: int = 0

    @property
    def words(self) -> int:
        return self.pixels * self.passes * self.stride * self.width

    @property
    def lanes(self) -> int:
        return limits.expansion(self.channels)[1]

    @property
    def instances(self) -> set[int]:
        assert self.first_lane is not None
        return set(range(self.first_lane // 4, (self.first_lane + self.lanes - 1) // 4 + 1))


@dataclass
class Placement:
    """Where a layer writes (or cnn_load_input loads) a tensor: a block and the word of each pixel
    in it; ``channels`` (first, count) of the tensor (a packed input: one operand's block)."""

    tensor: str
    block: Block
    slot: int = 0
    channels: tuple[int, int] = (0, 0)


@dataclass
class LayerProgram:
    """One layer's allocation and register values."""

    shape: LayerShape
    first_in: int  # input channel c on processor first_in + c
    first_out: int  # output channel o on lane first_out + o (a multiple of 4)
    in_offset: int  # word offset of the input in its instances (of operand 0 for an element-wise layer)
    out_offset: int
    kernel_start: int  # first kernel word, in every processor of the layer
    kernel_words: int  # words per processor
    bias: tuple[int, int] | None  # (quadrant, byte offset)
    write_gap: int = 0  # words skipped after each output pixel (the other operands of an element-wise layer)
    sources: tuple[int, ...] = (-1,)  # the layer that wrote each operand (-1: cnn_load_input)
    regs: dict[int, dict[str, int]] = field(default_factory=dict)  # quadrant -> register -> value

    @property
    def op(self) -> ir.Max78000Layer:
        return self.shape.op

    @property
    def processors(self) -> int:
        """The 64-bit map of input processors."""
        return ((1 << self.shape.in_lanes) - 1) << self.first_in

    @property
    def output_processors(self) -> int:
        return ((1 << self.shape.out_lanes) - 1) << self.first_out


@dataclass
class Program:
    """A whole layer program: the layers, the kernel memories (64 x 768 words of 9 bytes, the
    byte order of the hardware word: byte 0 is the most significant of the 72 bits), the bias
    memories (4 x 512 bytes) and what is used of each."""

    layers: list[LayerProgram]
    kernels: np.ndarray  # (64, 768, 9) uint8
    kernel_used: np.ndarray  # (64,) words to load per processor (up to its last used word)
    bias: np.ndarray  # (4, 512) uint8
    bias_used: list[int]
    blocks: list[Block]  # the data-memory blocks
    inputs: list[Placement]  # where cnn_load_input writes the model input (once per placement)
    input_shape: tuple[int, int, int]
    quadrants: list[int]  # quadrants the program uses (0 is the master)
    avg_pool_rounding: bool
    report: FitReport

    @property
    def output(self) -> LayerProgram:
        return self.layers[-1]


def _words(ly: LayerShape) -> int:
    """Kernel words per processor of a layer."""
    op = ly.op
    if not op.has_weights:
        return 0
    count = ly.out_count * ly.passes
    per_byte = 8 // op.weight_bits
    groups = -(-count // per_byte)
    return -(-groups * ly.taps // 9)


def _wire(nodes: list[LayerShape], input_shape: tuple[int, int, int]
          ) -> tuple[list[tuple[LayerShape, Block, Placement]], list[Placement], list[Block]]:
    """The program's layers in order, each with the block it reads and the placement it writes;
    where cnn_load_input writes the input; every block.

    A tensor read plainly (by a layer without an element-wise op, or unloaded) gets one block,
    which all its plain readers share; each element-wise layer gets one block holding its
    operands interleaved. The writer of a tensor fills its plain block, or its one operand slot
    when nothing reads it plainly; every other operand slot it fills gets a passthrough copy of
    the plain block with the write gap, right after the writer (the model input: cnn_load_input
    writes every placement)."""
    out_name = nodes[-1].name
    plain_readers: dict[str, int] = {}
    needs: dict[str, list[Placement]] = {}
    groups: dict[int, Block] = {}
    for ly in nodes:
        c, h, w = ly.in_shape
        if ly.operands == 1:
            plain_readers[ly.inputs[0]] = plain_readers.get(ly.inputs[0], 0) + 1
            continue
        g = Block(f"{ly.name}'s operands", c, h * w, stride=ly.operands)
        groups[ly.index] = g
        for k in range(ly.operands):
            t = ly.inputs[0] if ly.op.packed_operands else ly.inputs[k]
            chans = (k * c, c) if ly.op.packed_operands else (0, c)
            needs.setdefault(t, []).append(Placement(t, g, k, chans))
    plain: dict[str, Block] = {}
    blocks: list[Block] = list(groups.values())

    def plain_block(t: str, shape: tuple[int, ...], width: int = 1) -> Block:
        b = plain[t] = Block(t, shape[0], shape[1] * shape[2], width=width, passes=limits.expansion(shape[0])[0])
        blocks.append(b)
        return b

    inputs = list(needs.get(ir.INPUT, []))
    if plain_readers.get(ir.INPUT):
        inputs.insert(0, Placement(ir.INPUT, plain_block(ir.INPUT, input_shape), 0, (0, input_shape[0])))
    program: list[tuple[LayerShape, Block, Placement]] = []
    for ly in nodes:
        reads = groups[ly.index] if ly.operands > 1 else plain[ly.inputs[0]]
        t, mine = ly.name, needs.get(ly.name, [])
        if plain_readers.get(t) or t == out_name or len(mine) > 1:
            width = 4 if ly.op.output_width == 32 else 1
            first = Placement(t, plain_block(t, ly.out_shape, width), 0, (0, ly.out_shape[0]))
            copies = mine
        else:
            first, copies = mine[0], []
        program.append((ly, reads, first))
        for k, pl in enumerate(copies):
            name = f"{t}_copy{k}" if len(copies) > 1 else f"{t}_copy"
            copy = LayerShape(0, name, ir.Max78000Layer(operation="passthrough"), ly.out_shape, ly.out_shape,
                              ly.out_shape, (t,), None)
            program.append((copy, plain[t], pl))
    return program, inputs, blocks


def _least_used(used: np.ndarray, channels: int) -> int:
    """The first lane (a multiple of 4) of ``channels`` lanes whose kernel memories are least used."""
    return min(range(0, PROCESSORS - channels + 1, 4), key=lambda f: (int(used[f:f + channels].max()), f))


def _place_blocks(blocks: list[Block], report: FitReport) -> None:
    """Word offsets for every block: the lowest run of free words in its instances over its
    lifetime (first fit in order of first write). Two blocks share words of an instance only
    when no layer runs while both are live: a layer's output never overlaps what it reads."""
    placed: list[Block] = []
    beside: dict[int, list[Block]] = {}
    for b in sorted(blocks, key=lambda b: (b.start, b.end, -b.words)):
        live = [o for o in placed if o.start <= b.end and b.start <= o.end and o.instances & b.instances]
        off = 0
        for lo, hi in sorted((o.offset, o.offset + o.words) for o in live):
            if off + b.words <= lo:
                break
            off = max(off, hi)
        b.offset = off
        placed.append(b)
        beside[id(b)] = live
    per_instance = [max([b.offset + b.words for b in blocks if i in b.instances], default=0) for i in range(16)]
    report.use("data memory words per instance", max(per_instance), DATA_WORDS, per_instance=per_instance)
    for b in placed:
        if b.offset + b.words > DATA_WORDS:
            live = beside[id(b)]
            when = "loaded" if b.start < 0 else f"written by layer {b.start}"
            report.add(None if b.start < 0 else b.start, "data memory", b.offset + b.words, DATA_WORDS,
                       f"{b.name} ({b.words} words, {when}) does not fit beside "
                       f"{', '.join(o.name for o in live)} ({sum(o.words for o in live)} words), live at the same "
                       f"time in the same instances: an instance has {DATA_WORDS}")


def plan(model: ir.Model) -> Program:
    """The allocation of ``model``; raises NotSupported (a layer bitgen does not take yet) or
    DoesNotFit (with the per-resource report)."""
    nodes = limits.layers(model)
    input_shape = limits.rows(tuple(model.input.shape))
    wired, inputs, blocks = _wire(nodes, input_shape)  # type: ignore[arg-type]
    shapes = [ly for ly, _, _ in wired]
    for i, ly in enumerate(shapes):
        ly.index = i
    n = len(shapes)
    report = FitReport()
    limits.check(shapes, report)

    # lifetimes (in layers) of the blocks
    for b in blocks:
        b.start, b.end = n, -1
    for pl in inputs:
        pl.block.start = -1
    writers: dict[tuple[int, int], int] = {(id(pl.block), pl.slot): -1 for pl in inputs}
    for i, (_, rd, wr) in enumerate(wired):
        rd.end = max(rd.end, i)
        wr.block.start = min(wr.block.start, i)
        writers[(id(wr.block), wr.slot)] = i
    wired[-1][2].block.end = n

    kernels = np.zeros((PROCESSORS, KERNEL_WORDS, 9), dtype=np.uint8)
    occupied = np.zeros((PROCESSORS, KERNEL_WORDS), dtype=bool)
    used = np.zeros(PROCESSORS, dtype=np.int64)
    bias = np.zeros((QUADRANTS, BIAS_BYTES), dtype=np.uint8)
    bias_used = [0] * QUADRANTS
    # a passthrough layer's output stays on its input's lanes (izer: "the output processors for a
    # pass-through layer must be a packed version of the input processors for each x16"), so the
    # blocks it links share their lanes: one choice per class of linked blocks
    parent: dict[int, Block] = {id(b): b for b in blocks}

    def root(b: Block) -> Block:
        while parent[id(b)] is not b:
            b = parent[id(b)]
        return b

    for ly, rd, wr in wired:
        if not ly.op.has_weights:
            parent[id(root(wr.block))] = root(rd)
    for pl in inputs:  # the input's blocks: where the kernel memories are least used (all free: lane 0)
        r = root(pl.block)
        if r.first_lane is None:
            r.first_lane = _least_used(used, r.lanes)
    lanes: list[tuple[int, int]] = []
    for ly, rd, wr in wired:
        c = ly.in_lanes
        first_in = root(rd).first_lane
        assert first_in is not None
        procs = slice(first_in, first_in + c)
        words = _words(ly)
        # the first run of free words, from a multiple of 4, in every processor of the layer
        start = 0 if not words else next((s for s in range(0, KERNEL_WORDS - words + 1, 4) if not occupied[procs, s:s + words].any()),
                     None)
        if start is None:
            start = 0
            report.add(ly.index, "kernel memory", int(occupied[procs].sum(axis=1).max()) + words, KERNEL_WORDS,
                       f"layer {ly.index}: processors {first_in}..{first_in + c - 1} have no {words} free words "
                       f"(from a multiple of 4) left in their {KERNEL_WORDS}-word kernel memories")
        elif words:
            _place_kernels(kernels, ly, first_in, start)
            occupied[procs, start:start + words] = True
        used = occupied.sum(axis=1)
        # the output's lanes, unless an earlier writer of its block chose them: where the kernel
        # memories of its readers are least used (the model output: lane 0)
        r = root(wr.block)
        if r.first_lane is None:
            r.first_lane = 0 if ly.index == n - 1 else _least_used(used, r.lanes)
        lanes.append((start, words))
    for b in blocks:
        b.first_lane = root(b).first_lane
    _place_blocks(blocks, report)
    programs: list[LayerProgram] = []
    for (ly, rd, wr), (start, words) in zip(wired, lanes):
        slots = [(id(rd), k) for k in range(rd.stride)]
        sources = tuple(writers[s] for s in slots)
        programs.append(LayerProgram(ly, rd.first_lane, wr.block.first_lane, rd.offset,  # type: ignore[arg-type]
                                     wr.block.offset + wr.slot, start, words, None, wr.block.stride - 1, sources))
    quads = {0} | {q for p in programs for q in _layer_quadrants(p)}
    # biases: a flatten layer's first (a MAX78000 requirement: izer's DevAI85
    # REQUIRE_FLATTEN_BIAS_FIRST), then, with several quadrants to choose from, largest first
    # (first-fit decreasing), each in the least used bias memory of the quadrants in use, else
    # of any quadrant; with one quadrant, in layer order
    several = len(quads) > 1
    for p in sorted((p for p in programs if p.op.bias is not None),
                    key=lambda p: (not p.op.flatten, -p.shape.out_count if several else 0)):
        o = p.shape.out_count
        order = sorted(range(QUADRANTS), key=lambda q: (q not in quads, bias_used[q], q))
        q = next((q for q in order if bias_used[q] + o <= BIAS_BYTES), None)
        if q is None:
            report.add(p.shape.index, "bias memory", sum(bias_used) + o, QUADRANTS * BIAS_BYTES,
                       f"layer {p.shape.index}: {o} bias bytes do not fit in any quadrant's {BIAS_BYTES}-byte bias "
                       f"memory (used: {bias_used})")
            continue
        p.bias = (q, bias_used[q])
        bias[q, bias_used[q]:bias_used[q] + p.op.bias.size] = p.op.bias.astype(np.int8).view(np.uint8)
        bias_used[q] += o
        quads.add(q)
    report.use("kernel memory words per processor", int(used.max()), KERNEL_WORDS,
               per_processor=[int(v) for v in used])
    # the words to load per processor: up to its last used one
    used = np.array([int(np.nonzero(row)[0][-1]) + 1 if row.any() else 0 for row in occupied])
    report.use("bias bytes", sum(bias_used), QUADRANTS * BIAS_BYTES, per_quadrant=list(bias_used))
    report.use("processors", max(max(p.shape.in_lanes, p.shape.out_lanes) for p in programs), PROCESSORS)
    if not report.fits:
        raise limits.DoesNotFit(report)
    rounding = any(ly.op.avg_pool_rounding for ly in shapes if ly.op.pool == "avg")
    quads = sorted(quads)
    for p in programs:
        p.regs = registers(p, quads)
    return Program(programs, kernels, used, bias, bias_used, blocks, inputs, input_shape, quads,  # type: ignore[arg-type]
                   rounding, report)


def _place_kernels(kernels: np.ndarray, ly: LayerShape, first_in: int, start: int) -> None:
    """Write layer ``ly``'s kernels into the kernel memories of processors first_in.., from word
    ``start``: kernel ``o * passes + j`` of q-bit weights is bit slice ``k % (8/q)`` of byte group
    ``k // (8/q)``; a group is ``taps`` consecutive bytes of the memory's byte stream, which runs
    from byte 8 of a word down to byte 0, then on to the next word; in a group the last tap
    comes first."""
    op = ly.op
    w = op.weight.astype(np.int64)  # type: ignore[union-attr]
    c, o, passes = ly.in_shape[0], ly.out_shape[0], ly.passes
    taps = ly.taps
    lanes = ly.in_lanes
    if op.operation == "linear":
        w = w.reshape(o, c, passes, 1)  # flatten is C-major: input c, pixel j
    else:  # input channel j * lanes + c on processor c in pass j; zero kernels where no channel is
        full = np.zeros((o, passes * lanes, taps), dtype=np.int64)
        full[:, :c] = w.reshape(o, c, taps)
        w = full.reshape(o, passes, lanes, taps).transpose(0, 2, 1, 3)
    c = lanes
    bits = op.weight_bits
    per_byte = 8 // bits
    k = np.arange(o * passes)  # the last output pass's unused lanes: zero kernels (left as they are)
    out_ch, j = k // passes, k % passes
    group, slice_ = k // per_byte, k % per_byte
    for ci in range(c):
        stream = np.zeros(KERNEL_WORDS * 9, dtype=np.int64)
        vals = w[out_ch, ci, j, :] & ((1 << bits) - 1)  # (K, taps)
        for t in range(taps):
            pos = start * 9 + group * taps + (taps - 1 - t)
            np.bitwise_or.at(stream, pos, vals[:, t] << (slice_ * bits))
        mem = stream.reshape(KERNEL_WORDS, 9)[:, ::-1]  # stream byte 0 is byte 8 of word 0
        rows = slice(start, start + _words(ly))
        kernels[first_in + ci, rows] = mem[rows].astype(np.uint8)


def _quadrants_of(mask: int) -> set[int]:
    return {q for q in range(QUADRANTS) if (mask >> (PROCESSORS_PER_QUADRANT * q)) & 0xFFFF}


def _layer_quadrants(p: LayerProgram) -> list[int]:
    """Quadrants a layer configures: those of its processors, its output lanes and its bias."""
    qs = _quadrants_of(p.processors) | _quadrants_of(p.output_processors)
    if p.bias is not None:
        qs.add(p.bias[0])
    return sorted(qs)


def registers(p: LayerProgram, quadrants: list[int]) -> dict[int, dict[str, int]]:
    """Every nonzero per-layer register of ``p``, per quadrant (the others stay 0 from reset).
    Every quadrant the program uses holds every layer's registers (ENA only where the layer has
    processors), as izer's programs do."""
    ly, op = p.shape, p.op
    if op.operation == "passthrough":
        return _passthrough_registers(p, quadrants)
    c, h, w = ly.in_shape
    o, oh, ow = ly.out_shape
    pad, k = ly.pad, ly.kernel
    one_d = op.operation == "conv1d"
    one_by_one = k == 1 and not one_d
    base: dict[str, int] = {}
    if op.operation == "convtranspose2d":  # the zero-stuffed input: twice the rows and columns
        h, w = 2 * h, 2 * w
    if op.operation in ("conv2d", "convtranspose2d"):
        base["RCNT"] = pad << 16 | (h + 2 * pad - 1)
        base["CCNT"] = pad << 16 | (w + 2 * pad - 1)
    elif one_d:  # L rows (padded), one column
        base["RCNT"] = pad << 16 | (h + 2 * pad - 1)
    else:  # linear: a 1x1 layer over one pixel; flattened, the input's pixels are its passes
        base["RCNT"] = base["CCNT"] = 0
    if op.pooling:
        (ph, pw), (s, _) = op.pool_size, op.pool_stride
        base["PRCNT"], base["PCCNT"], base["STRIDE"] = ph - 1, 0 if one_d else pw - 1, s - 1
    wide = op.output_width == 32
    base["WPTR_BASE"] = (p.first_out // 4) << 13 | p.out_offset
    base["WPTR_TOFFS"] = 1 if one_by_one else 0
    base["WPTR_MOFFS"] = 1 << 13
    base["RPTR_BASE"] = p.in_offset
    pooling = op.pooling and op.pool_size != (1, 1)
    lctl = 0x20 | 1 << 11
    lctl |= 0x80 if pooling else 0
    lctl |= 0 if op.pool == "avg" else 0x100
    lctl |= 0x200 if op.activation == "relu" else 0
    lctl |= 1 << 16 if wide else 0
    passes = ly.passes
    count = ly.out_count * passes
    oned_sad = 0
    if one_by_one:
        sad = 8 * 9 * p.kernel_start
    elif one_d:  # the start byte (9 a word) in whole kernels of k bytes, and the bytes left over
        sad, oned_sad = divmod(9 * p.kernel_start, k)
        sad *= 8
    else:
        sad = 8 * p.kernel_start
    base["MCNT"] = sad << 16 | (sad + (count - 1) * op.weight_bits)
    # the TRAM pointer end, as izer writes it (the emulator does not model the TRAM)
    if not one_by_one and not one_d:
        base["TPTR"] = ow - 1
    elif passes > 16:
        base["TPTR"] = (passes - 1) << 16 | (2 * (passes - 1) + 1)
    base["ONED"] = (0x100 if one_by_one else 0) | _eltwise_bits(op)
    if one_d:  # the kernel length, 1-D, the start's leftover bytes
        base["ONED"] |= k << 8 | 1 << 12 | oned_sad << 4
    shift = op.shift
    post = (abs(shift) << 13) | (1 << 17 if shift < 0 else 0)
    post |= WEIGHT_BITS_FIELD[op.weight_bits] << 22
    post |= 1 << 26 if op.activation == "abs" else 0
    post |= 1 << 28 if op.operation == "convtranspose2d" else 0
    if passes > 16:  # flatten over more than 16 pixels: the pass count's high bits
        post |= 1 << 27 | ((passes - 1) >> 4) << 18
    base["POST"] = post
    # the output lanes' span, the words between pixels (every output pass, the write gap) and the passes
    base["LCTL2"] = ((ly.out_lanes - 1) * op.weight_bits << 8 | (ly.out_passes * (p.write_gap + 1) - 1) << 4
                     | ((passes - 1) & 0xF))
    if ly.out_passes > 1:  # words between the output passes of a pixel
        base["WPTR_CHOFFS"] = (4 if wide else 1) * (p.write_gap + 1)
    procs = p.processors
    # LCTL bits 12..15 of the master quadrant (0): the other quadrants that add to this layer's
    # sums, with processors or with its bias
    sources = (_quadrants_of(procs) | ({p.bias[0]} if p.bias is not None else set())) - {0}
    out: dict[int, dict[str, int]] = {}
    for q in quadrants:
        r = dict(base)
        ena = (procs >> (16 * q)) & 0xFFFF
        r["ENA"] = ena << 16 | ena
        r["LCTL"] = lctl
        if q == 0:
            r["LCTL"] |= sum(1 << (12 + t) for t in sources)
        if p.bias is not None and q == p.bias[0]:
            r["POST"] |= 1 << 12 | p.bias[1]
        out[q] = {name: v for name, v in r.items() if v}
    return out


def _passthrough_registers(p: LayerProgram, quadrants: list[int]) -> dict[int, dict[str, int]]:
    """A passthrough layer (pooling only): no kernels (ENA without mask enables, POST bit 24:
    time slots); in each quadrant, its k-th enabled processor writes byte lane k % 4 of instance
    ``(WPTR_BASE >> 13) + k // 4`` (WPTR_TOFFS 0x2000: one instance per time slot), so the
    quadrant's WPTR_BASE names the instance of its first channel's output lane."""
    ly, op = p.shape, p.op
    _, h, w = ly.in_shape
    procs = p.processors
    # ONED bits 0..3: the time slots' count - 1 (four channels per slot, in the fullest quadrant)
    slots = max((bin((procs >> (16 * q)) & 0xFFFF).count("1") - 1) // 4 for q in range(QUADRANTS)
                if (procs >> (16 * q)) & 0xFFFF)
    # one operand: ONED bit 8 and POST bit 25 (1x1) too, as izer writes them
    one = op.operands == 1
    base: dict[str, int] = {"RCNT": h - 1, "CCNT": w - 1, "RPTR_BASE": p.in_offset,
                            "ONED": (1 << 8 if one else 0) | slots | _eltwise_bits(op),
                            "POST": 1 << 24 | (1 << 25 if one else 0),  # time slots
                            "LCTL2": p.write_gap << 4,
                            # one instance (8192 words) between time slots; 2048 (izer's value) when one slot
                            "WPTR_TOFFS": 4 * 2048 if bin(procs).count("1") > 4 else 2048}
    lctl = 0x20 | 1 << 11 | (0 if op.pool == "avg" else 0x100)
    if op.pooling:
        (ph, pw), (s, _) = op.pool_size, op.pool_stride
        base["PRCNT"], base["PCCNT"], base["STRIDE"] = ph - 1, pw - 1, s - 1
        lctl |= 0x80 if op.pool_size != (1, 1) else 0
    out: dict[int, dict[str, int]] = {}
    for q in quadrants:
        r = dict(base, LCTL=lctl)
        ena = (procs >> (16 * q)) & 0xFFFF
        r["ENA"] = ena
        r["WPTR_BASE"] = p.out_offset  # (a quadrant without processors writes nothing)
        if ena:
            first = 16 * q + (ena & -ena).bit_length() - 1  # its first processor
            lane = p.first_out + first - p.first_in
            r["WPTR_BASE"] |= (lane // 4) << 13
        out[q] = {name: v for name, v in r.items() if v}
    return out


def summary(prog: Program) -> dict[str, Any]:
    """The allocation, for NAME.json."""
    return {
        "fit": prog.report.to_dict(),
        "quadrants": prog.quadrants,
        "data_blocks": [{"tensor": b.name, "offset_words": b.offset, "words": b.words, "first_lane": b.first_lane,
                         "channels": b.channels, "operands": b.stride, "live_layers": [b.start, b.end]}
                        for b in prog.blocks],
        "avg_pool_rounding": prog.avg_pool_rounding,
        "layers": [{
            "name": p.shape.name, "node": p.shape.node, "operation": p.op.operation, "in_shape": list(p.shape.in_shape),
            "out_shape": list(p.shape.out_shape), "processors": f"0x{p.processors:016x}",
            "output_processors": f"0x{p.output_processors:016x}", "in_offset_words": p.in_offset,
            "out_offset_words": p.out_offset, "write_gap": p.write_gap, "sources": list(p.sources),
            "eltwise": p.op.eltwise, "operands": p.op.operands, "kernel_words": [p.kernel_start, p.kernel_words],
            "bias": None if p.bias is None else {"quadrant": p.bias[0], "offset": p.bias[1]},
            "registers": {str(q): {k: f"0x{v:08x}" for k, v in r.items()} for q, r in p.regs.items()},
        } for p in prog.layers],
    }
