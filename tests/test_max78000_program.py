"""bitgen's own layer programs for the MAX78000's CNN accelerator (bitgen/backends/max78000:
limits.py, allocate.py, emit.py): each program is compiled with its known-answer test (main.c)
into a max78000-sim firmware, runs on the emulated accelerator (which executes the layers from
the registers and memories the firmware wrote), and its unloaded output must equal bitgen's
golden model bit for bit.

Random chains, 1-D chains (conv1d) and random graphs (element-wise layers, residual adds): 6 of
each on the emulator and 3 (1-D: 2) of each against izer by default; BITGEN_MAX78000_RANDOM=N
runs N of each (seeds 0..N-1).
Against izer (where it is in ../shared/oracles): its register values and
kernel words for the same network, and its `arch: test` networks in the slice (izer's weights
and sample) as bitgen's programs: a few by default, all with BITGEN_IZER_ALL=1.
"""
from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path

import numpy as np
import pytest

from bitgen import golden, ir, modelfile
from bitgen.backends.max78000 import allocate, limits
from bitgen.backends.max78000 import emit as cnn_emit
from bitgen.ops.max78000_layer import WEIGHT_RANGE

sys.path.insert(0, str(Path(__file__).resolve().parent))
import izer_oracle  # noqa: E402

RANDOM = int(os.environ.get("BITGEN_MAX78000_RANDOM", "6"))
ALL = os.environ.get("BITGEN_IZER_ALL") == "1"
# izer test networks in the slice: pooling 16x16 stride 4 and a non-square 3x2 pool, 1x1 kernels
# on 17 channels, flatten of 4x4 pixels into a linear layer, three layers over two quadrants
# (and element-wise: five operands of 31 channels, pooling after the add, an add fused with a
# convolution and average pooling)
QUICK_IZER = ["test-pooling16x16s4", "test-pooling3x2s3", "test-conv1x1", "test-mlpflatten192to10",
              "test-group0-pool4", "test-nonsquare", "test-eltwiseadd-5op-31ch", "test-eltwiseadd-poolafter",
              "test-eltwiseadd-combined-conv-avgpool"]


def toolchain_or_skip():
    from bitgen.errors import BitgenError
    from bitgen.harness import boards

    try:
        boards.get("max78000").require_toolchain()
    except BitgenError as e:
        pytest.skip(str(e))


def random_chain(seed: int) -> ir.Model:
    """A random sequential chain within the slice and the hardware's limits: conv2d 3x3 (pad
    0..2) or 1x1, max/avg pooling (sizes 1..3, one stride, with or without rounding), ReLU / Abs /
    none, 1/2/4/8-bit weights, a bias or none, 1..64 channels or (one layer in six) 65..100 in
    several passes, ConvTranspose2d 3x3 stride 2 (padding 0..2), passthrough (pooling-only) layers;
    the last layer may be a flatten + linear layer, with an 8- or 32-bit output."""
    rng = np.random.default_rng(seed)
    c, h, w = int(rng.integers(1, 9)), int(rng.integers(3, 15)), int(rng.integers(3, 15))
    shape = (c, h, w)
    rounding = bool(rng.integers(0, 2))
    n = int(rng.integers(1, 5))
    ops = []
    for i in range(n):
        last = i == n - 1
        bits = int(rng.choice([1, 2, 4, 8]))
        lo, hi = WEIGHT_RANGE[bits]
        o = int(rng.integers(1, 65)) if not last else int(rng.integers(1, 17))
        if rng.integers(0, 6) == 0:  # more than 64 channels: several passes
            o = int(rng.integers(65, 101))
        bias = rng.integers(-64, 64, o) if rng.integers(0, 2) else None
        shift = int(rng.integers(-8, 3))  # the effective shift; output_shift = shift - 8 + bits
        act = str(rng.choice(["none", "relu", "abs"]))
        if last and h * w <= 64 and c <= 64 and rng.integers(0, 2):  # flatten + linear
            wide = bool(rng.integers(0, 2))
            ops.append(ir.Max78000Layer(operation="linear", flatten=True, weight=rng.integers(lo, hi + 1, (o, c * h * w)),
                                        weight_bits=bits, bias=bias, output_shift=shift - 8 + bits,
                                        activation="none" if wide else act, output_width=32 if wide else 8))
            break
        pool = {}
        if rng.integers(0, 2) and min(h, w) >= 2:
            ph, pw = int(rng.integers(1, min(h, 3) + 1)), int(rng.integers(1, min(w, 3) + 1))
            s = int(rng.integers(1, 4))
            kind = "max" if ph * pw == 1 else str(rng.choice(["max", "avg"]))
            pool = dict(pool=kind, pool_size=(ph, pw), pool_stride=(s, s), avg_pool_rounding=rounding)
            h, w = (h - ph) // s + 1, (w - pw) // s + 1
        if not last and c <= 64 and rng.integers(0, 5) == 0:  # a passthrough layer: the pooling alone
            ops.append(ir.Max78000Layer(operation="passthrough", **pool))
            continue
        wide = last and bool(rng.integers(0, 4) == 0)
        if not pool and max(h, w) <= 16 and rng.integers(0, 4) == 0:  # ConvTranspose2d 3x3 stride 2
            pad = int(rng.integers(0, min(2, h, w) + 1))  # an output of 2h - 2pad + 2 rows
            ops.append(ir.Max78000Layer(operation="convtranspose2d", weight=rng.integers(lo, hi + 1, (o, c, 3, 3)),
                                        weight_bits=bits, bias=bias, padding=pad, output_shift=shift - 8 + bits,
                                        output_width=32 if wide else 8, activation="none" if wide else act))
            c, h, w = o, 2 * h - 2 * pad + 2, 2 * w - 2 * pad + 2
            continue
        k = 3 if rng.integers(0, 3) else 1
        pad = int(rng.integers(max(0, (3 - min(h, w) + 1) // 2), 3)) if k == 3 else 0
        ops.append(ir.Max78000Layer(weight=rng.integers(lo, hi + 1, (o, c, k, k)), weight_bits=bits, bias=bias,
                                    padding=pad, output_shift=shift - 8 + bits, output_width=32 if wide else 8,
                                    activation="none" if wide else act, **pool))
        c, h, w = o, h + 2 * pad - k + 1, w + 2 * pad - k + 1
    model = ir.Model(ir.InputSpec(shape, scale=1 / 128), layers=ops, name=f"random{seed}")
    model.validate()
    return model


def random_chain_1d(seed: int) -> ir.Model:
    """A random chain of conv1d layers over 1-D data (C, L): kernels 1..9, padding 0..2 (below
    the kernel), max/avg pooling (sizes 1..3, strides 1..3), ReLU / Abs / none, 1/2/4/8-bit
    weights, a bias or none, 1..64 channels or (one layer in six) 65..100 in several passes;
    the last layer may have a 32-bit output."""
    rng = np.random.default_rng(20_000 + seed)
    c, n = int(rng.integers(1, 9)), int(rng.integers(4, 61))
    shape = (c, n)
    rounding = bool(rng.integers(0, 2))
    count = int(rng.integers(1, 5))
    ops = []
    for i in range(count):
        last = i == count - 1
        bits = int(rng.choice([1, 2, 4, 8]))
        lo, hi = WEIGHT_RANGE[bits]
        o = int(rng.integers(65, 101)) if rng.integers(0, 6) == 0 else int(rng.integers(1, 65 if not last else 17))
        pool = {}
        if rng.integers(0, 2) and n >= 3:
            p, s = int(rng.integers(1, 4)), int(rng.integers(1, 4))
            kind = "max" if p == 1 else str(rng.choice(["max", "avg"]))
            pool = dict(pool=kind, pool_size=(p, 1), pool_stride=(s, 1), avg_pool_rounding=rounding)
            n = (n - p) // s + 1
        k = int(rng.integers(1, min(9, n + 4) + 1))
        pad = int(rng.integers(max(0, -(-(k - n) // 2)), min(2, k - 1) + 1))  # at least one output row
        wide = last and bool(rng.integers(0, 4) == 0)
        ops.append(ir.Max78000Layer(operation="conv1d", weight=rng.integers(lo, hi + 1, (o, c, k)), weight_bits=bits,
                                    bias=rng.integers(-64, 64, o) if rng.integers(0, 2) else None, padding=pad,
                                    output_shift=int(rng.integers(-8, 3)) - 8 + bits, output_width=32 if wide else 8,
                                    activation="none" if wide else str(rng.choice(["none", "relu", "abs"])), **pool))
        c, n = o, n + 2 * pad - k + 1
    model = ir.Model(ir.InputSpec(shape, scale=1 / 128), layers=ops, name=f"oned{seed}")
    model.validate()
    return model


def random_graph(seed: int, input_operands: bool = True) -> ir.Model:
    """A random graph of accelerator layers: each layer reads the model input or any earlier
    layer's output (izer's in_sequences), element-wise layers (add, sub, xor, or) over 2..4
    operands of one shape (the same tensor twice included, the model input included), as
    passthrough or fused with a 3x3/1x1 convolution, pooling before or after the element-wise op;
    besides, the layers of random_chain (convolutions keeping the shape more often, so that
    residual adds find their operands; more than 64 channels only in convolutions, the
    element-wise, passthrough and flatten layers of several passes not being supported yet). Layers whose output nothing reads are dropped.
    ``input_operands`` False: no element-wise layer reads the model input (izer takes
    in_sequences -1 of an element-wise layer for its last layer's output, so izer cannot
    check those)."""
    rng = np.random.default_rng(10_000 + seed)
    c, h, w = int(rng.integers(1, 17)), int(rng.integers(3, 13)), int(rng.integers(3, 13))
    rounding = bool(rng.integers(0, 2))
    shapes: dict[str, tuple[int, int, int]] = {ir.INPUT: (c, h, w)}
    nodes: list[ir.Node] = []
    n = int(rng.integers(2, 8))

    def weights(o: int, c: int, k: int):
        bits = int(rng.choice([1, 2, 4, 8]))
        lo, hi = WEIGHT_RANGE[bits]
        return dict(weight=rng.integers(lo, hi + 1, (o, c, k, k)), weight_bits=bits,
                    bias=rng.integers(-64, 64, o) if rng.integers(0, 2) else None,
                    output_shift=int(rng.integers(-8, 3)) - 8 + bits)

    def pooling(h: int, w: int) -> dict:
        if not (rng.integers(0, 3) == 0 and min(h, w) >= 2):
            return {}
        ph, pw = int(rng.integers(1, min(h, 3) + 1)), int(rng.integers(1, min(w, 3) + 1))
        s = int(rng.integers(1, 4))
        kind = "max" if ph * pw == 1 else str(rng.choice(["max", "avg"]))
        return dict(pool=kind, pool_size=(ph, pw), pool_stride=(s, s), avg_pool_rounding=rounding)

    for i in range(n):
        last = i == n - 1
        names = list(shapes)
        src = names[-1] if rng.integers(0, 2) else str(rng.choice(names))
        c, h, w = shapes[src]
        same = [t for t in names if shapes[t] == (c, h, w) and (input_operands or t != ir.INPUT)]
        kind = int(rng.integers(0, 3))
        # element-wise (not as the first layer: izer reads that one's operands packed in the input)
        if nodes and src in same and c <= 64 and (kind == 1 or (len(same) > 1 and rng.integers(0, 2))):
            k = int(rng.integers(2, 5))
            others = [t for t in same if t != src]
            rng.shuffle(others)
            operands = [src] + others[:k - 1]  # distinct tensors where there are, then repeated ones
            operands += [str(rng.choice(same)) for _ in range(k - len(operands))]
            rng.shuffle(operands)
            pool = pooling(h, w)
            pool_first = not (pool and k == 2 and rng.integers(0, 2))
            elt = dict(eltwise=str(rng.choice(["add", "sub", "xor", "or"])), operands=k, pool_first=pool_first, **pool)
            ph, pw = (h, w) if not pool else ((h - pool["pool_size"][0]) // pool["pool_stride"][0] + 1,
                                             (w - pool["pool_size"][1]) // pool["pool_stride"][0] + 1)
            if rng.integers(0, 2) and not last:
                op = ir.Max78000Layer(operation="passthrough", **elt)
                out = (c, ph, pw)
            else:
                kk = 3 if rng.integers(0, 2) and min(ph, pw) >= 1 else 1
                pad = 1 if kk == 3 else 0
                o = c if rng.integers(0, 2) else int(rng.integers(1, 65 if not last else 17))
                wide = last and bool(rng.integers(0, 4) == 0)
                act = "none" if wide else str(rng.choice(["none", "relu", "abs"]))
                op = ir.Max78000Layer(padding=pad, activation=act, output_width=32 if wide else 8,
                                      **weights(o, c, kk), **elt)
                out = (o, ph, pw)
            nodes.append(ir.Node(op, tuple(operands), f"t{i}"))
            shapes[f"t{i}"] = out
            continue
        if last and h * w <= 64 and c <= 64 and rng.integers(0, 2):  # flatten + linear
            wide = bool(rng.integers(0, 2))
            o = int(rng.integers(1, 17))
            wt = weights(o, c * h * w, 1)
            wt["weight"] = wt["weight"].reshape(o, c * h * w)
            op = ir.Max78000Layer(operation="linear", flatten=True, activation="none" if wide else "relu",
                                  output_width=32 if wide else 8, **wt)
            nodes.append(ir.Node(op, (src,), f"t{i}"))
            shapes[f"t{i}"] = (o, 1, 1)
            break
        keep = rng.integers(0, 2)
        pool = {} if keep else pooling(h, w)
        if pool:
            s = pool["pool_stride"][0]
            h, w = (h - pool["pool_size"][0]) // s + 1, (w - pool["pool_size"][1]) // s + 1
        if kind == 2 and not last and pool and c <= 64:  # a passthrough layer: the pooling alone
            nodes.append(ir.Node(ir.Max78000Layer(operation="passthrough", **pool), (src,), f"t{i}"))
            shapes[f"t{i}"] = (c, h, w)
            continue
        kk = 3 if rng.integers(0, 3) else 1
        pad = (1 if keep else int(rng.integers(max(0, (3 - min(h, w) + 1) // 2), 3))) if kk == 3 else 0
        o = c if keep else int(rng.integers(1, 65 if not last else 17))
        if not keep and rng.integers(0, 6) == 0:  # more than 64 channels: several passes
            o = int(rng.integers(65, 101))
        wide = last and bool(rng.integers(0, 4) == 0)
        act = "none" if wide else str(rng.choice(["none", "relu", "abs"]))
        if not pool and max(h, w) <= 16 and rng.integers(0, 6) == 0:  # ConvTranspose2d 3x3 stride 2
            pad = int(rng.integers(0, min(2, h, w) + 1))  # an output of 2h - 2pad + 2 rows
            op = ir.Max78000Layer(operation="convtranspose2d", padding=pad, activation=act,
                                  output_width=32 if wide else 8, **weights(o, c, 3))
            nodes.append(ir.Node(op, (src,), f"t{i}"))
            shapes[f"t{i}"] = (o, 2 * h - 2 * pad + 2, 2 * w - 2 * pad + 2)
            continue
        op = ir.Max78000Layer(padding=pad, activation=act, output_width=32 if wide else 8, **weights(o, c, kk), **pool)
        nodes.append(ir.Node(op, (src,), f"t{i}"))
        shapes[f"t{i}"] = (o, h + 2 * pad - kk + 1, w + 2 * pad - kk + 1)
    while True:  # drop what nothing reads (but the output)
        read = {t for nd in nodes for t in nd.inputs}
        keep_nodes = [nd for nd in nodes[:-1] if nd.output in read] + nodes[-1:]
        if len(keep_nodes) == len(nodes):
            break
        nodes = keep_nodes
    if nodes[0].op.operands > 1:  # an element-wise first layer after all: a 1x1 convolution before it
        c = shapes[ir.INPUT][0]
        nodes[0].inputs = tuple("stem" for _ in nodes[0].inputs)
        nodes.insert(0, ir.Node(ir.Max78000Layer(padding=0, **weights(c, c, 1)), (ir.INPUT,), "stem"))
    model = ir.Model(ir.InputSpec(shapes[ir.INPUT], scale=1 / 128), nodes=nodes, name=f"graph{seed}")
    model.validate()
    return model


def run_program(model: ir.Model, workdir: Path, sample: np.ndarray | None = None,
                edit=None) -> tuple[izer_oracle.FirmwareRun, np.ndarray, np.ndarray]:
    """Emit the program, build its KAT firmware, run it on max78000-sim: (the run, the unloaded
    output read from the firmware's memory, golden's output for the same sample)."""
    out = workdir / "cnn"
    em = cnn_emit.emit(model, out, model.name, sample=sample)
    if edit is not None:
        edit(out)
    text = (out / "sampledata.h").read_text()
    x = np.array([int(v) for v in text[text.index("{") + 1:text.index("}")].replace(",", " ").split()], dtype=np.int8)
    y = golden.run(model, x.reshape((1,) + model.input.shape))[0]
    itemsize = 4 if em.program.output.op.output_width == 32 else 1
    r = izer_oracle.run_firmware(izer_oracle.build_firmware(out, workdir / "fw"),
                                 read={"cnn_output": y.size * itemsize, "cnn_kat_errors": 4})
    got = np.frombuffer(r.memory["cnn_output"], dtype="<i4" if itemsize == 4 else np.int8).reshape(y.shape)
    return r, got, y


# ------------------------------------------------------------------ random chains on the emulator
def _runs_and_equals_golden(model: ir.Model, workdir: Path) -> izer_oracle.FirmwareRun:
    """The program's KAT firmware on max78000-sim: it passes and its unloaded output is golden's."""
    toolchain_or_skip()
    r, got, y = run_program(model, workdir)
    assert r.passed, r.console
    assert int(np.frombuffer(r.memory["cnn_kat_errors"], "<i4")[0]) == 0
    assert np.array_equal(got, y)
    return r


@pytest.mark.parametrize("seed", range(RANDOM))
def test_random_chains_run_on_the_emulated_accelerator_and_equal_golden(seed, tmp_path):
    model = random_chain(seed)
    assert _runs_and_equals_golden(model, tmp_path).cnn_layers == len(model.nodes)


@pytest.mark.parametrize("seed", range(RANDOM))
def test_random_1d_chains_run_on_the_emulated_accelerator_and_equal_golden(seed, tmp_path):
    """conv1d over (C, L) data through the whole chain."""
    model = random_chain_1d(seed)
    assert _runs_and_equals_golden(model, tmp_path).cnn_layers == len(model.nodes)


@pytest.mark.parametrize("seed", range(RANDOM))
def test_random_graphs_run_on_the_emulated_accelerator_and_equal_golden(seed, tmp_path):
    """Residual adds and the other element-wise ops, layers reading any earlier tensor."""
    model = random_graph(seed)
    assert _runs_and_equals_golden(model, tmp_path).cnn_layers == len(allocate.plan(model).layers)


def test_random_graphs_cover_element_wise_layers():
    """The graph generator reaches every element-wise op, 2..4 operands, passthrough and fused
    element-wise layers, pooling before and after, the model input and one tensor twice as
    operands, copies the allocator inserts, and graphs that are not chains."""
    seen: set = set()
    for seed in range(60):
        m = random_graph(seed)
        prog = allocate.plan(m)
        for nd in m.nodes:
            op = nd.op
            if op.operands > 1:
                seen |= {f"elt-{op.eltwise}", f"operands{op.operands}", "fused" if op.has_weights else "passthrough"}
                seen |= {"pool-after"} if not op.pool_first else ({"pool-first"} if op.pooling else set())
                seen |= {"input-operand"} if ir.INPUT in nd.inputs else set()
                seen |= {"twice"} if len(set(nd.inputs)) < len(nd.inputs) else set()
                seen |= {"distinct"} if len(set(nd.inputs)) == len(nd.inputs) else set()
        seen |= {"copies"} if any(p.shape.node is None for p in prog.layers) else set()
        seen |= {"graph"} if not m.is_sequential else set()
    want = {"elt-add", "elt-sub", "elt-xor", "elt-or", "operands2", "operands3", "operands4", "fused", "passthrough",
            "pool-after", "pool-first", "input-operand", "twice", "distinct", "copies", "graph"}
    assert want <= seen, want - seen


def test_random_1d_chains_cover_conv1d():
    """Every kernel length 1..9, padding 0..2, both poolings, every weight width, several passes."""
    seen: set = set()
    for seed in range(60):
        m = random_chain_1d(seed)
        prog = allocate.plan(m)
        for op in m.layers:
            seen |= {f"k{op.weight.shape[2]}", f"pad{op.padding}", f"pool-{op.pool}", f"bits{op.weight_bits}",
                     f"out{op.output_width}"}
        seen |= {"passes"} if any(p.shape.in_passes > 1 for p in prog.layers) else set()
    want = {f"k{k}" for k in range(1, 10)} | {"pad0", "pad1", "pad2", "pool-max", "pool-avg", "pool-none", "bits1",
                                              "bits2", "bits4", "bits8", "out8", "out32", "passes"}
    assert want <= seen, want - seen


def test_random_chains_cover_the_slice():
    """The generator reaches what it claims: every weight width, pooling kind, activation,
    1x1 and 3x3 kernels, passthrough, flatten + linear, 32-bit output, biases, several quadrants,
    more than 64 channels in and out (a partly used last pass, the model output)."""
    seen: set = set()
    for seed in range(60):
        m = random_chain(seed)
        prog = allocate.plan(m)
        for op in m.layers:
            seen |= {f"pool-{op.pool}", op.operation}
            seen |= {f"transpose-pad{op.padding}"} if op.operation == "convtranspose2d" else set()
            if op.has_weights:
                seen |= {f"bits{op.weight_bits}", f"act-{op.activation}", f"out{op.output_width}",
                         f"k{op.weight.shape[2] if op.operation == 'conv2d' else 1}",
                         "bias" if op.bias is not None else "nobias"}
        seen.add(f"quadrants{len(prog.quadrants)}")
        for p in prog.layers:
            seen |= {"passes-in"} if p.shape.in_passes > 1 else set()
            seen |= {"passes-out"} if p.shape.out_passes > 1 else set()
            seen |= {"partial-pass"} if p.shape.in_passes * p.shape.in_lanes > p.shape.in_shape[0] else set()
        seen |= {"passes-output"} if prog.output.shape.out_passes > 1 else set()
    want = {"convtranspose2d", "transpose-pad0", "transpose-pad1", "transpose-pad2", "passes-in", "passes-out", "partial-pass", "passes-output", "bits1", "bits2", "bits4", "bits8", "pool-max", "pool-avg", "pool-none", "act-relu", "act-abs",
            "act-none", "linear", "conv2d", "passthrough", "k1", "k3", "out32", "out8", "bias", "nobias", "quadrants4"}
    assert want <= seen, want - seen


def _upsampling() -> ir.Model:
    """ConvTranspose2d 3x3 stride 2 (paddings 2 and 1) into and out of more than 64 channels."""
    rng = np.random.default_rng(7)
    return ir.Model(ir.InputSpec((3, 4, 4), scale=1 / 128), name="upsampling", layers=[
        ir.Max78000Layer(operation="convtranspose2d", weight=rng.integers(-2, 2, (70, 3, 3, 3)), weight_bits=2,
                         bias=rng.integers(-20, 20, 70), padding=2, activation="relu", output_shift=-6),
        ir.Max78000Layer(operation="convtranspose2d", weight=rng.integers(-128, 128, (90, 70, 3, 3)),
                         bias=rng.integers(-20, 20, 90), padding=1, output_shift=-1),
        ir.Max78000Layer(weight=rng.integers(-8, 8, (3, 90, 1, 1)), weight_bits=4, padding=0, output_shift=-4)])


def test_conv_transpose_and_several_passes_run_on_the_emulated_accelerator(tmp_path):
    toolchain_or_skip()
    r, got, y = run_program(_upsampling(), tmp_path)
    assert r.passed, r.console
    assert np.array_equal(got, y) and y.shape == (3, 12, 12)


# ------------------------------------------------------------------ failing on purpose
def _chain() -> ir.Model:
    rng = np.random.default_rng(5)
    return ir.Model(ir.InputSpec((3, 6, 6), scale=1 / 128), layers=[
        ir.Max78000Layer(weight=rng.integers(-128, 128, (8, 3, 3, 3)), bias=rng.integers(-9, 9, 8), padding=1,
                         activation="relu", output_shift=-1),
        ir.Max78000Layer(weight=rng.integers(-128, 128, (5, 8, 1, 1)), padding=0, pool="max", pool_size=2,
                         pool_stride=2, output_shift=-2)], name="chain")


def test_a_corrupted_register_value_fails_the_comparison(tmp_path):
    toolchain_or_skip()

    def edit(out: Path) -> None:  # layer 1's output shift one step larger (POST, quadrant 0)
        src = (out / "cnn.c").read_text()
        addr = cnn_emit.CNN + 0x10 + allocate.REGS["POST"] * 0x80 + 4
        line = next(ln for ln in src.splitlines() if f"REG(0x{addr:08x})" in ln)
        value = int(line.split("= ")[1].split(";")[0], 16)
        (out / "cnn.c").write_text(src.replace(line, line.replace(f"0x{value:08x}", f"0x{value ^ (1 << 13):08x}")))

    r, got, y = run_program(_chain(), tmp_path, edit=edit)
    assert not r.passed and "FAIL" in r.console
    assert not np.array_equal(got, y)


def test_a_corrupted_weight_word_fails_the_comparison(tmp_path):
    toolchain_or_skip()

    def edit(out: Path) -> None:  # flip one bit of the first kernel data word
        text = (out / "weights.h").read_text()
        words = text[text.index("{") + 1:].split(",")
        words[2] = f" 0x{int(words[2], 16) ^ 0x00010000:08x}"
        (out / "weights.h").write_text(text[:text.index("{") + 1] + ",".join(words))

    r, got, y = run_program(_chain(), tmp_path, edit=edit)
    assert not r.passed and "FAIL" in r.console
    assert not np.array_equal(got, y)


# ------------------------------------------------------------------ legalization
def test_a_model_over_the_hardware_limits_gets_a_per_resource_report():
    rng = np.random.default_rng(0)
    # 34 layers (32 is the most); 64 channels of 90x90 pixels in every instance, the first
    # layer's input and output live together (8100 + 8100 words of an instance's 8192); a linear
    # layer over 15x15 pixels of 64 channels into 64 outputs (64 x 225 kernels of one byte per
    # processor: 1600 words of 768)
    one = lambda **k: ir.Max78000Layer(weight=rng.integers(-1, 1, (64, 64, 1, 1)), padding=0, weight_bits=1, **k)  # noqa: E731
    ops = [one(), one(pool="max", pool_size=6, pool_stride=6)] + [one() for _ in range(31)]
    ops.append(ir.Max78000Layer(operation="linear", flatten=True, weight=rng.integers(-1, 1, (64, 64 * 225))))
    m = ir.Model(ir.InputSpec((64, 90, 90), scale=1 / 128), layers=ops, name="big")
    with pytest.raises(limits.DoesNotFit) as e:
        allocate.plan(m)
    msg = str(e.value)
    assert "\n" not in msg and msg.startswith("max78000-cnn: the model does not fit the accelerator: layers: 34 layers")
    assert re.search(r"kernel memory: layer 33: processors \d+\.\.\d+ have no 1600 free words \(from a multiple "
                     r"of 4\) left in their 768-word kernel memories", msg)
    assert ("data memory: t0 (8100 words, written by layer 0) does not fit beside input (8100 words), live at the "
            "same time in the same instances: an instance has 8192") in msg
    rep = e.value.report.to_dict()
    assert rep["fits"] is False
    assert rep["resources"]["layers"] == {"used": 34, "limit": 32}
    assert rep["resources"]["data memory words per instance"]["used"] == 16200
    assert {p["resource"] for p in rep["problems"]} == {"layers", "kernel memory", "data memory"}


def test_more_than_1024_channels_get_the_channels_report():
    """16 passes of 64 lanes are the most (LCTL2's pass count)."""
    rng = np.random.default_rng(0)
    m = ir.Model(ir.InputSpec((2, 3, 3), scale=1 / 128), name="wide", layers=[
        ir.Max78000Layer(weight=rng.integers(-1, 1, (1100, 2, 1, 1)), padding=0, weight_bits=1)])
    with pytest.raises(limits.DoesNotFit) as e:
        allocate.plan(m)
    assert "channels: layer 0: 1100 output channels (at most 16 passes of 64)" in str(e.value)


def test_more_than_64_channels_take_passes_as_izer_lays_them_out():
    """100 channels: 2 passes of 52 lanes (izer's in_expand / in_expand_thresh), two words a
    pixel; the layer writing them spans 52 lanes (LCTL2 bits 8..), skips 2 words a pixel (bits
    4..7), writes its second pass one word on (WPTR_CHOFFS) and computes 104 channels (MCNT: 104
    kernels per processor); the layer reading them runs 2 passes (LCTL2 bits 0..3) on 52
    processors, 2 x 10 kernels each."""
    rng = np.random.default_rng(0)
    m = ir.Model(ir.InputSpec((3, 4, 4), scale=1 / 128), name="mp", layers=[
        ir.Max78000Layer(weight=rng.integers(-128, 128, (100, 3, 3, 3)), padding=1),
        ir.Max78000Layer(weight=rng.integers(-128, 128, (10, 100, 1, 1)), padding=0)])
    a, b = allocate.plan(m).layers
    assert (a.shape.out_passes, a.shape.out_lanes, b.shape.in_passes, b.shape.in_lanes) == (2, 52, 2, 52)
    ra, rb = a.regs[0], b.regs[0]
    assert ra["LCTL2"] == 51 * 8 << 8 | 1 << 4 and ra["WPTR_CHOFFS"] == 1
    assert (ra["MCNT"] & 0xFFFF) - (ra["MCNT"] >> 16) == 103 * 8
    assert rb["LCTL2"] & 0xF == 1 and (rb["MCNT"] & 0xFFFF) - (rb["MCNT"] >> 16) == 19 * 8
    assert bin(b.processors).count("1") == 52


def _residual() -> ir.Model:
    """A residual block: stem, two convolutions, the add of the stem and the second one, two more."""
    rng = np.random.default_rng(2)
    conv = lambda c, o: ir.Max78000Layer(weight=rng.integers(-8, 8, (o, c, 3, 3)), weight_bits=4, padding=1)  # noqa: E731
    nodes = [ir.Node(conv(4, 16), (ir.INPUT,), "stem"), ir.Node(conv(16, 16), ("stem",), "a"),
             ir.Node(conv(16, 16), ("a",), "b"),
             ir.Node(ir.Max78000Layer(operation="passthrough", eltwise="add", operands=2), ("stem", "b"), "sum"),
             ir.Node(conv(16, 16), ("sum",), "c"), ir.Node(conv(16, 8), ("c",), "out")]
    return ir.Model(ir.InputSpec((4, 10, 10), scale=1 / 128), nodes=nodes, name="res")


def test_a_wrong_write_gap_fails_the_comparison(tmp_path):
    """The copy of the residual input written without its write gap (LCTL2 bits 4..7 of layer 1)
    overwrites the other operand's words: the KAT fails."""
    toolchain_or_skip()

    def edit(out: Path) -> None:  # in every quadrant (they must agree)
        src = (out / "cnn.c").read_text()
        for q in range(4):
            addr = cnn_emit.CNN + q * cnn_emit.QUAD + 0x10 + allocate.REGS["LCTL2"] * 0x80 + 4
            line = next((ln for ln in src.splitlines() if f"REG(0x{addr:08x})" in ln), None)
            if line is not None:
                value = int(line.split("= ")[1].split(";")[0], 16)
                assert value & 0xF0 == 0x10
                src = src.replace(line, line.replace(f"0x{value:08x}", f"0x{value & ~0xF0:08x}"))
        (out / "cnn.c").write_text(src)

    r, got, y = run_program(_residual(), tmp_path)
    assert r.passed and np.array_equal(got, y)
    r, got, y = run_program(_residual(), tmp_path / "edited", edit=edit)
    assert not r.passed and "FAIL" in r.console
    assert not np.array_equal(got, y)


def test_data_memory_is_shared_by_lifetime():
    """A tensor keeps its words until its last reader: a residual block's input stays while the
    two convolutions run; tensors no longer read give their words to later ones."""
    model = _residual()
    nodes = model.nodes
    prog = allocate.plan(model)
    names = [p.shape.name for p in prog.layers]
    assert names == ["stem", "stem_copy", "a", "b", "sum", "c", "out"]  # the copy with the write gap
    blocks = {b.name: b for b in prog.blocks}
    stem, ops = blocks["stem"], blocks["sum's operands"]
    assert (stem.start, stem.end) == (0, 2) and (ops.start, ops.end) == (1, 4) and ops.words == 200
    by = {p.shape.name: p for p in prog.layers}
    assert by["stem_copy"].write_gap == 1 and by["b"].write_gap == 1
    assert by["b"].out_offset == by["stem_copy"].out_offset + 1 == by["sum"].in_offset + 1
    assert by["sum"].sources == (1, 3) and by["sum"].first_in == by["b"].first_out == by["stem_copy"].first_out
    # no two tensors live at once share a word of an instance
    for x in prog.blocks:
        for y in prog.blocks:
            if x is not y and x.start <= y.end and y.start <= x.end and x.instances & y.instances:
                assert x.offset + x.words <= y.offset or y.offset + y.words <= x.offset, (x, y)
    assert prog.report.resources["data memory words per instance"]["used"] <= 3 * 200
    # the YAML says the same in izer's terms, and bitgen's reader takes it
    from bitgen.backends.max78000 import network_yaml

    net = network_yaml.parse(cnn_emit.network_yaml(prog, ir.Model(ir.InputSpec((4, 10, 10)), nodes=nodes)))
    assert net.refusals() == []
    assert [(ly.operation, ly.eltwise, ly.operands, ly.write_gap, ly.in_sequences) for ly in net.layers] == [
        ("conv2d", "none", 1, 0, None), ("passthrough", "none", 1, 1, None), ("conv2d", "none", 1, 0, [0]),
        ("conv2d", "none", 1, 1, None), ("passthrough", "add", 2, 0, [1, 3]), ("conv2d", "none", 1, 0, None),
        ("conv2d", "none", 1, 0, None)]
    assert net.layers[4].in_offset == 4 * by["sum"].in_offset and net.layers[3].out_offset == 4 * by["b"].out_offset


def test_kernel_memory_is_spread_over_the_processors():
    """24 layers of 16 channels, 3x3: on the same 16 processors they would need 384 kernel words
    each; the allocator moves each layer's output lanes to the least used kernel memories."""
    rng = np.random.default_rng(1)
    ops = []
    for i in range(24):
        c, o = (4 if i == 0 else 16), 16
        ops.append(ir.Max78000Layer(weight=rng.integers(-128, 128, (o, c, 3, 3)), padding=1))
    prog = allocate.plan(ir.Model(ir.InputSpec((4, 4, 4), scale=1 / 128), layers=ops, name="long"))
    assert prog.kernel_used.max() == 6 * 16
    assert len({p.first_in for p in prog.layers}) >= 4


@pytest.mark.parametrize("make, message", [
    (lambda r: [ir.Max78000Layer(operation="conv1d", weight=r.integers(-1, 1, (2, 2, 3)), padding=1, dilation=2)],
     "layer 0 (t0): dilation on 1-D data is not supported yet"),
    (lambda r: [ir.Max78000Layer(weight=r.integers(-1, 1, (65, 2, 3, 3)), padding=1),
                ir.Max78000Layer(operation="passthrough", pool="max", pool_size=2, pool_stride=2)],
     "layer 1 (t1): a passthrough layer over more than 64 channels (several passes) is not supported yet"),
    (lambda r: [ir.Max78000Layer(operation="convtranspose2d", weight=r.integers(-1, 1, (2, 2, 3, 3)), padding=1,
                                 pool="max", pool_size=2, pool_stride=2)],
     "layer 0 (t0): convtranspose2d with pooling is not supported yet"),
    (lambda r: [ir.Max78000Layer(weight=r.integers(-1, 1, (4, 2, 3, 3)), padding=1),
                ir.Max78000Layer(weight=r.integers(-1, 1, (4, 2, 3, 3)), padding=1, eltwise="add", operands=2,
                                 packed_operands=True)],
     "layer 1 (t1): its 2 operands packed as channel blocks of one tensor that a layer writes are not supported yet"),
])
def test_what_the_slice_does_not_take_is_refused_in_one_line(make, message):
    ops = make(np.random.default_rng(0))
    shape = (2, 5) if ops[0].operation == "conv1d" else (2, 5, 5)
    m = ir.Model(ir.InputSpec(shape, scale=1 / 128), layers=ops)
    with pytest.raises(limits.NotSupported) as e:
        allocate.plan(m)
    assert message in str(e.value) and "\n" not in str(e.value)


# ------------------------------------------------------------------ the command line
def _bitgen(capsys, *args: str, cwd: Path):
    """(exit status, stdout, stderr) of the command line run in this process in ``cwd``."""
    import test_max78000

    r = test_max78000._bitgen(capsys, *args, cwd=cwd)
    return r.returncode, r.stdout, r.stderr


def test_bitgen_emit_target_max78000_cnn_writes_the_program(tmp_path, capsys):
    modelfile.save(_chain(), tmp_path / "m.pt")
    rc, out, err = _bitgen(capsys, "emit", "--target", "max78000-cnn", "m.pt", "-o", "cnn", cwd=tmp_path)
    assert rc == 0, err
    names = sorted(p.name for p in (tmp_path / "cnn").iterdir())
    assert names == sorted(list(cnn_emit.FILES) + ["chain.json"])
    rep = json.loads((tmp_path / "cnn" / "chain.json").read_text())
    assert rep["fit"]["fits"] and len(rep["layers"]) == 2
    assert "layers 2" in out
    # the YAML says the same network in izer's terms, and bitgen's reader takes it
    from bitgen.backends.max78000 import network_yaml

    net = network_yaml.parse((tmp_path / "cnn" / "network.yaml").read_text())
    assert net.refusals() == [] and [ly.operation for ly in net.layers] == ["conv2d", "conv2d"]
    assert [ly.kernel_size for ly in net.layers] == [3, 1]


def test_bitgen_emit_max78000_cnn_refuses_a_model_over_the_limits_in_one_line(tmp_path, capsys):
    rng = np.random.default_rng(0)
    ops = [ir.Max78000Layer(weight=rng.integers(-1, 1, (4, 4, 3, 3)), padding=1, weight_bits=1) for _ in range(33)]
    modelfile.save(ir.Model(ir.InputSpec((4, 5, 5), scale=1 / 128), layers=ops, name="deep"), tmp_path / "m.pt")
    rc, out, err = _bitgen(capsys, "emit", "--target", "max78000-cnn", "m.pt", "-o", "cnn", cwd=tmp_path)
    assert rc == 2 and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert "layers: 33 layers, the accelerator runs at most 32" in err
    rep = json.loads((tmp_path / "cnn" / "deep.json").read_text())
    assert rep["fit"]["fits"] is False and rep["fit"]["problems"][0]["resource"] == "layers"
    assert not (tmp_path / "cnn" / "cnn.c").exists()


# ------------------------------------------------------------------ izer's test networks
def _izer_networks() -> list[str]:
    if ALL and izer_oracle.TESTS.is_dir():
        return [p.stem for p in izer_oracle.test_networks()]
    return QUICK_IZER


@pytest.mark.parametrize("name", _izer_networks())
def test_izer_test_networks_as_bitgen_programs_equal_golden(name, tmp_path):
    """izer's network with izer's weights and sample input (golden equals izer's log on these,
    test_max78000.py), allocated and emitted by bitgen, runs on the emulated accelerator."""
    toolchain_or_skip()
    outcome, why = izer_oracle.own_program(izer_oracle.TESTS / f"{name}.yaml", tmp_path)
    if outcome in ("unsupported", "izer-failed", "not-in-slice"):
        pytest.skip(f"{outcome}: {why}")
    assert outcome == "pass", why


@pytest.mark.parametrize("seed", range(int(os.environ.get("BITGEN_MAX78000_RANDOM", "3"))))
def test_registers_and_kernel_words_equal_izers_for_the_same_network(seed, tmp_path):
    """izer, given bitgen's network.yaml (bitgen's processors and offsets), a checkpoint of the
    same weights and the same sample, writes the same value to every layer register and the
    same kernel memory words as bitgen's program."""
    why = izer_oracle.missing()
    if why:
        pytest.skip(why)
    assert izer_oracle.program_vs_izer(random_chain(seed), tmp_path) == []


@pytest.mark.parametrize("seed", range(int(os.environ.get("BITGEN_MAX78000_RANDOM", "2"))))
def test_registers_and_kernel_words_equal_izers_for_the_same_1d_network(seed, tmp_path):
    """conv1d: ONED's kernel length and start bytes, MCNT in whole 1-D kernels."""
    why = izer_oracle.missing()
    if why:
        pytest.skip(why)
    assert izer_oracle.program_vs_izer(random_chain_1d(seed), tmp_path) == []


@pytest.mark.parametrize("seed", range(int(os.environ.get("BITGEN_MAX78000_RANDOM", "3"))))
def test_registers_and_kernel_words_equal_izers_for_the_same_graph(seed, tmp_path):
    """The same for random graphs with element-wise layers (in_sequences, write_gap, operands,
    the copies the allocator inserts): izer's registers and kernel words equal bitgen's."""
    why = izer_oracle.missing()
    if why:
        pytest.skip(why)
    assert izer_oracle.program_vs_izer(random_graph(seed, input_operands=False), tmp_path) == []


def test_registers_and_kernel_words_equal_izers_for_conv_transpose_and_several_passes(tmp_path):
    why = izer_oracle.missing()
    if why:
        pytest.skip(why)
    assert izer_oracle.program_vs_izer(_upsampling(), tmp_path) == []


def test_the_izer_comparison_sees_a_changed_register(tmp_path, monkeypatch):
    why = izer_oracle.missing()
    if why:
        pytest.skip(why)
    real = allocate.registers

    def shifted(p, quadrants):  # one layer's output shift off by one step
        regs = real(p, quadrants)
        if p.shape.index == 1:
            regs[0]["POST"] ^= 1 << 13
        return regs

    monkeypatch.setattr(allocate, "registers", shifted)
    diffs = izer_oracle.program_vs_izer(_chain(), tmp_path)
    assert len(diffs) == 1 and diffs[0].startswith("quadrant 0 layer 1 register 15: izer 0x"), diffs


def test_an_imported_ai8x_checkpoint_runs_as_bitgen_program(tmp_path, capsys):
    """`bitgen import CHECKPOINT --yaml NETWORK.yaml` then `bitgen emit --target max78000-cnn`:
    conv 3x3 with max pooling, conv with average pooling (4-bit weights), flatten + linear
    (2-bit weights, 32-bit output) on a 28x28 input, run on the emulated accelerator."""
    toolchain_or_skip()
    import test_max78000

    test_max78000.write_checkpoint(tmp_path / "net-q.pth.tar")
    (tmp_path / "net.yaml").write_text(test_max78000.NET_YAML)
    rc, _, err = _bitgen(capsys, "import", "net-q.pth.tar", "--yaml", "net.yaml", "-o", "m.pt", cwd=tmp_path)
    assert rc == 0, err
    model = modelfile.load(tmp_path / "m.pt").ir
    r, got, y = run_program(model, tmp_path)
    assert r.passed, r.console
    assert np.array_equal(got, y) and got.dtype == np.int32 and r.cnn_layers == 3
