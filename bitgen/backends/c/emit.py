"""IR -> static C: ``NAME.h``, ``NAME.c``, the runtime kernels they use, and ``NAME.json``.

The emitter reads only the IR. It groups layers into steps (:mod:`.schedule`), picks a kernel
per layer from the kernel set (:mod:`.kernels`, :mod:`.targets`), plans the arena
(:mod:`.memory`) and renders ``templates/model.*.j2``; the kernels pack their own weights.
Output is deterministic: the same model gives the same bytes.
"""
from __future__ import annotations

import json
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jinja2

from ... import __version__, encodings, ir, reports
from . import lower_max78000, memory, schedule, targets, tiling
from ..base import Artifact
from . import kernels
from .kernels import bands
from .kernels import (FUSED, Choice, KernelError, ModelSource, Pointers, Refusal, choose, choose_group,
                      choose_whole, model_input_only_before, xnor_first)
from .literals import C_TYPE, SUFFIX, arena_ptr
from ...errors import BitgenError
from ...paths import C_RUNTIME, TEMPLATES

# The C name prefix: NAME.h, NAME.c, NAME_run(), NAME_INPUT_SIZE. A letter first (C reserves
# names that start with an underscore and a capital or two underscores), ASCII only.
IDENT = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,40}")
# bg_* / BG_* are the runtime's and the firmware's own names; the firmware's files and objects
# (firmware.c, bsp.o, startup.o) sit beside the model's in a build.
RESERVED_PREFIXES = ("bg_",)
RESERVED_NAMES = ("bg", "firmware", "bsp", "startup")
ALWAYS = ["bg_runtime.h", "bg_elementwise.c", "bg_elementwise.inc", "bg_dsp.h"]  # argmax lives there


class EmitError(BitgenError):
    pass


@dataclass
class LayerPlan:
    index: int
    op: str
    name: str
    in_shape: tuple[int, ...]
    out_shape: tuple[int, ...]
    out_dtype: str
    out_bytes: int
    kernel: str
    encoding: str | None = None
    flash_bytes: int = 0
    macs: int = 0
    arena_offset: int | None = None
    scratch_bytes: int = 0
    traced: bool = True  # False: computed inside a fused kernel, never stored on its own
    refused: list[Refusal] = field(default_factory=list)  # faster kernels that did not take it, and why
    sources: list[str] = field(default_factory=list)  # the runtime's .c files of its kernel

    def report(self) -> dict[str, Any]:
        return {
            "index": self.index, "op": self.op, "name": self.name,
            "in_shape": list(self.in_shape), "out_shape": list(self.out_shape),
            "out_dtype": self.out_dtype, "out_bytes": self.out_bytes,
            "arena_offset": self.arena_offset, "scratch_bytes": self.scratch_bytes,
            "kernel": self.kernel, "encoding": self.encoding,
            "weight_bytes": self.flash_bytes, "macs": self.macs, "traced": self.traced,
            "sources": self.sources,
        } | ({"refused": [r.report() for r in self.refused]} if self.refused else {})


Emitted = Artifact  # sources: the .c files to compile


def _shape_str(shape: tuple[int, ...]) -> str:
    return "x".join(str(s) for s in shape)


def _ptr(loc: memory.Location, dtype: str, const: bool, name: str = "") -> str:
    if loc.keep is not None:  # a kept output (a change-based step's): its own buffer
        return f"({'const ' if const else ''}{C_TYPE[dtype]} *){name}_keep{loc.keep}"
    if loc.external:  # read-only: the int8 input, or a state's buffer (written only between frames)
        return "input" if loc.state is None else f"{name}_state{loc.state}"
    return arena_ptr(loc.offset, C_TYPE[dtype], const)


@dataclass
class ModelPlan:
    types: list[ir.TensorType]  # input, then every layer's output
    reads: list[list[int]]  # per layer: the indices into `types` of the tensors it reads
    choices: list[Choice]  # kernel of every layer
    steps: list[schedule.Step]
    memory: memory.Plan  # where each step reads and writes; scratch per step
    refused: dict[int, list[Refusal]] = field(default_factory=dict)  # per layer: faster kernels that did not take it
    tiles: dict[int, tiling.Tiling] = field(default_factory=dict)  # tiled steps, by their first layer
    layer_by_layer_arena: int | None = None  # with tiles: the arena without them

    def in_type(self, i: int) -> ir.TensorType:
        """The type of layer i's (first) input."""
        return self.types[self.reads[i][0]]

    def plane_bytes(self, i: int) -> int:
        """Bytes of one channel of layer i's output."""
        t = self.types[i + 1]
        return t.nbytes // t.shape[0]


def _round4(n: int) -> int:
    return (n + 3) & ~3


def _narrow_planes(types: list[ir.TensorType], choices: list[Choice], st: schedule.Step) -> set[int]:
    """The layers of a channel-by-channel step whose output planes are stored as uint16: written
    by a kernel and read by the next one that both handle such planes (Choice.narrow), of a type
    whose bounds are within 0..65535 (golden's bounds, so every value fits)."""
    kernels = [i for i in st.layers if choices[i] is not FUSED]
    narrow = set()
    for i, j in zip(kernels, kernels[1:]):
        shown = i + choices[i].fuses
        t = types[shown + 1]
        if choices[i].narrow and choices[j].narrow and t.dtype == "int32" and t.lo >= 0 and t.hi <= 0xFFFF:
            narrow.add(shown)
    return narrow


def _plane_bytes(types: list[ir.TensorType], i: int, narrow: set[int]) -> int:
    """Bytes of one channel of layer i's output, as the step stores it."""
    t = types[i + 1]
    return t.size // t.shape[0] * (2 if i in narrow else _elem(t.dtype))


def _plane_slots(types: list[ir.TensorType], reads: list[list[int]], choices: list[Choice],
                 st: schedule.Step, narrow: set[int]) -> tuple[dict[int, int], int]:
    """Which plane buffer each layer of a channel-by-channel step writes (by the layer whose
    output its kernel stores; the step's last layer writes into the step's output instead), and
    how many buffers the step needs: a kernel that may run in place on planes keeps the buffer it
    reads, any other writes to the other one (ping-pong)."""
    slots: dict[int, int] = {}
    cur = None  # the buffer holding the current plane; None: the step's input
    before = None  # the layer whose output plane `cur` holds
    for i in st.layers:
        choice = choices[i]
        if choice is FUSED:
            continue
        shown = i + choice.fuses
        if shown == st.last:
            break
        t_in, t_out = types[reads[i][0]], types[shown + 1]
        out_elem = 2 if shown in narrow else _elem(t_out.dtype)
        in_elem = 2 if before in narrow else _elem(t_in.dtype)
        same = cur is not None and (
            (choice.in_place and out_elem <= in_elem and t_out.size * out_elem <= t_in.size * in_elem)
            or (choice.plane_in_place is not None and choice.plane_in_place(in_elem, out_elem)))
        cur = cur if same else (0 if cur is None else 1 - cur)
        slots[i], before = cur, shown
    return slots, len(set(slots.values()))


def _step_planes(types: list[ir.TensorType], reads: list[list[int]], choices: list[Choice],
                 st: schedule.Step) -> tuple[set[int], dict[int, int], list[int]]:
    """A channel-by-channel step's planes: which are stored as uint16, which buffer each layer
    writes, and each buffer's bytes (the largest plane it holds)."""
    narrow = _narrow_planes(types, choices, st)
    slots, buffers = _plane_slots(types, reads, choices, st, narrow)
    regions = [0] * buffers
    for i, b in slots.items():
        regions[b] = max(regions[b], _round4(_plane_bytes(types, i + choices[i].fuses, narrow)))
    return narrow, slots, regions


def _step_scratch(choices: list[Choice], st: schedule.Step) -> tuple[dict[int, int], int]:
    """The kernels' own scratch in a channel-by-channel step, after its planes: each kernel's
    offset from there, and the bytes in all. Scratch kept across channels (a staged plane's zero
    border) has bytes of its own; scratch rebuilt at every call is shared."""
    own: dict[int, int] = {}
    at = 0
    for i in st.layers:
        if not choices[i].scratch_per_call:
            own[i], at = at, at + _round4(choices[i].scratch)
    shared = max((_round4(choices[i].scratch) for i in st.layers if choices[i].scratch_per_call), default=0)
    own |= {i: at for i in st.layers if choices[i].scratch_per_call}
    return own, at + shared


def plan_model(model: ir.Model, kernel_set: str = "generic", lut_chunks: dict[int, int] | None = None,
               plain: frozenset[int] = frozenset(), two_pass: frozenset[int] = frozenset(),
               generic: frozenset[int] = frozenset(), tiles: dict[int, tiling.Tiling] | None = None,
               recompute: bool = False) -> ModelPlan:
    """Types of every tensor, the kernel of every layer, the schedule and the arena plan.
    `lut_chunks`: tables per pass of the LUT kernel of some layers, if not the kernel set's default;
    `plain`: layers that take the generic kernel instead of an optional one (Choice.optional);
    `two_pass`: channel-by-channel steps (by first layer) that take in the ShiftNorm after them
    (schedule.py); `generic`: layers that take the generic kernel set's kernel (their kernel set's
    code did not fit the flash: harness/firmware.py); `tiles`: runs computed in row strips
    (tiling.py), by their first layer; `recompute`: change-based steps recompute what changed
    instead of keeping accumulators (kernels/change.py: less SRAM, more instructions)."""
    try:
        target = targets.get(kernel_set)
    except targets.KernelError as e:
        raise EmitError(str(e)) from None

    def target_of(i: int) -> targets.Target:
        return targets.get("generic") if i in generic else target

    node_types, state_types = model.infer_types()
    # every tensor: the input, each node's output, then each state (read like an input)
    types = [model.input_type()] + node_types + [state_types[st.name] for st in model.states]
    index = {ir.INPUT: 0} | {n.output: i + 1 for i, n in enumerate(model.nodes)} | {
        st.name: len(model.nodes) + 1 + k for k, st in enumerate(model.states)}
    reads = [[index[name] for name in n.inputs] for n in model.nodes]
    change_steps = {i: last for i in range(len(model.nodes))
                    if (last := kernels.change.fused_last(model, types, i, target, recompute)) is not None}
    tiles = tiles or {}
    tiled = {t.first: t.last for t in tiles.values()}
    steps = schedule.steps(model, types, change_steps, two_pass=two_pass, tiled=tiled)
    # Convolutions that no plane kernel takes channel by channel: a kernel that computes whole
    # tensors (with the output stage fused) forms a step of its own, if one applies.
    whole: dict[int, Choice] = {}
    refused: dict[int, list[Refusal]] = {}

    def taken(i: int, choice: Choice | Refusal | None) -> Choice | None:
        """The choice, unless it is a refusal (recorded) or an optional kernel given up."""
        if isinstance(choice, Choice) and choice.optional and i in plain:
            choice = Refusal(choice.kernel, f"its {choice.scratch} B of scratch given up for a smaller arena "
                                            "(--max-arena, or the board's SRAM)")
        if isinstance(choice, Refusal):
            if choice not in refused.get(i, []):
                refused.setdefault(i, []).append(choice)
            return None
        return choice

    for st in steps:
        i = st.first
        if st.change or st.tiled or not isinstance(model.layers[i], (ir.Conv2d, ir.ConvTranspose2d)):
            continue
        t_in = types[reads[i][0]]
        if isinstance(model.layers[i], ir.ConvTranspose2d):  # a step of its own, its ReLU/Requant after it
            choice = taken(i, choose_whole(model, types, t_in, i, kernels.convt_lut.pointwise_last(model, i),
                                           target_of(i), (lut_chunks or {}).get(i)))
            if choice is not None:
                whole[i] = choice
            continue
        if xnor_first(model.layers[i], t_in, types[i + 1], target_of(i)):
            continue  # binary x binary layers: the XNOR kernels first
        group = choose_group(model, t_in, types, i, st.last, target_of(i), first=True) if st.channelwise else None
        if isinstance(group, Choice) and not (group.optional and i in plain):
            continue
        choice = taken(i, choose_whole(model, types, t_in, i, st.last, target_of(i), (lut_chunks or {}).get(i)))
        if choice is not None:
            whole[i] = choice
    if whole:
        steps = schedule.steps(model, types, change_steps, {i: c.fuses for i, c in whole.items()}, two_pass, tiled)
    choices: list[Choice] = []
    for st in steps:
        if st.change:  # the gate's kernel computes every layer of the step
            choices.append(kernels.change.choose(model, types, st.first, st.last, target, False if recompute else None))
            choices += [FUSED] * (st.last - st.first)
            continue
        if st.tiled:  # kernels run on bands of rows (kernels/bands.py)
            t = tiles[st.first]
            for stage in t.stages:
                fused = bands.fused_choice(model, types, stage, target_of(stage.first)) if stage.first in t.fused else None
                if fused is not None:
                    choices += [fused] + [FUSED] * (stage.last - stage.first)
                else:
                    choices += [kernels.generic.choose(model.layers[i], types[reads[i][0]], types[i + 1])
                                for i in stage.layers]
            continue
        for i in st.layers:
            if i < len(choices):  # fused into the kernel of an earlier layer
                continue
            if st.norm_first is not None and i >= st.norm_first:  # the step's own two-pass code
                choices.append(FUSED)
                continue
            layer = model.layers[i]
            choice = whole.get(i) if st.whole else None
            t_in = types[reads[i][0]]
            if st.channelwise and isinstance(layer, ir.Conv2d):
                # (`first`: the step's first layer; `optional`: kernels with scratch of their own)
                choice = taken(i, choose_group(model, t_in, types, i, st.last, target_of(i), first=i == st.first,
                                               optional=i not in plain, lut_chunk=(lut_chunks or {}).get(i)))
            try:
                choice = choice or choose(layer, t_in, types[i + 1], target_of(i), model_input_only_before(model, i),
                                          (lut_chunks or {}).get(i), [types[j] for j in reads[i][1:]],
                                          alone=not st.channelwise, optional=i not in plain)
            except KernelError as e:
                raise EmitError(f"layer {i} {layer.describe()}: {e}") from None
            if st.channelwise and not choice.per_channel:
                raise EmitError(f"layer {i} {layer.describe()}: kernel '{choice.kernel}' cannot run per channel")
            choices.append(choice)
            choices += [FUSED] * choice.fuses
    needs = []
    step_of = {st.last + 1: k for k, st in enumerate(steps)}  # tensor index -> the step writing it
    step_of |= {len(model.nodes) + 1 + k: -2 - k for k in range(len(model.states))}  # states: outside
    # a state takes its value at the end (a change step's state: updated in place by its kernel)
    kept = {step_of[index[st.source]] for st in model.states if index[st.source] in step_of}
    for st in steps:
        c = choices[st.first]
        # channel by channel: two plane buffers, then each kernel's own scratch
        if st.channelwise:
            scratch = sum(_step_planes(types, reads, choices, st)[2]) + _step_scratch(choices, st)[1]
        elif st.tiled:
            scratch = tiles[st.first].scratch
        else:
            scratch = c.scratch
        if model.is_sequential:
            streamed = st.tiled and tiles[st.first].stream  # its output never exists whole
            needs.append(memory.Need(out_bytes=0 if streamed else types[st.last + 1].nbytes,
                                     in_bytes=types[st.first].nbytes,
                                     scratch=scratch, **({} if st.channelwise or st.tiled else dict(
                                         in_place=c.in_place, out_region=c.out_region, alias=c.alias))))
        else:
            needs.append(memory.GraphNeed(
                out_bytes=types[st.last + 1].nbytes, inputs=tuple(step_of.get(j, -1) for j in reads[st.first]),
                scratch=scratch, keep=len(needs) in kept, persistent=c.persistent, **({} if st.channelwise else dict(
                    in_place=c.in_place, out_region=c.out_region, alias=c.alias))))
    plan = memory.plan(needs) if model.is_sequential else memory.plan_graph(needs)
    return ModelPlan(types, reads, choices, steps, plan, refused, tiles)


def _step_code(model: ir.Model, mp: ModelPlan, k: int, src: ModelSource) -> tuple[list[str], dict[int, int | None]]:
    """C lines of step k and the arena offset each of its layers writes to (None: the input)."""
    st, types = mp.steps[k], mp.types
    loc_in, loc_out = mp.memory.inputs[k][0], mp.memory.outputs[k]
    scratch = mp.memory.scratch[k]
    if st.tiled:
        out_t = types[st.last + 1]
        x = f"(const uint8_t *){_ptr(loc_in, mp.in_type(st.first).dtype, const=True, name=src.name)}"
        y = f"(uint8_t *){_ptr(loc_out, out_t.dtype, const=False, name=src.name)}"
        lines = bands.render(model, types, mp.choices, mp.tiles[st.first], src, x, y, scratch)
        if not mp.tiles[st.first].stream:  # (a streamed output is traced band by band)
            lines.append(f"BG_LAYER_PART({st.last}, 0, {_ptr(loc_out, out_t.dtype, const=True, name=src.name)}, "
                         f"{out_t.nbytes});")
        at = None if loc_out.external else loc_out.offset
        return lines, {j: at if j == st.last else None for j in st.layers}
    if not st.channelwise:
        i = st.first
        last = i + mp.choices[i].fuses  # the layer whose output the kernel writes
        ptrs = Pointers(
            x=_ptr(loc_in, mp.in_type(i).dtype, const=True, name=src.name),
            y=_ptr(loc_out, types[last + 1].dtype, const=False, name=src.name),
            scratch=scratch,
            others=tuple(_ptr(loc, types[j].dtype, const=True, name=src.name)
                         for loc, j in zip(mp.memory.inputs[k][1:], mp.reads[i][1:])),
        )
        call = mp.choices[i].render(src, i, ptrs)
        done = (f"BG_LAYER_PART({last}, 0, {_ptr(loc_out, types[last + 1].dtype, const=True, name=src.name)}, "
                f"{types[last + 1].nbytes});")
        at = None if loc_out.external else loc_out.offset
        return ([call] if call else []) + [done], {j: at if j == last else None for j in st.layers}
    # Channel by channel: planes in one buffer (kernels that run in place) or ping-pong between
    # two, in the scratch area.
    narrow, slots, regions = _step_planes(types, mp.reads, mp.choices, st)
    planes = [scratch, scratch + (regions[0] if regions else 0)]
    # each kernel's own scratch, after the planes
    own = {i: scratch + sum(regions) + at for i, at in _step_scratch(mp.choices, st)[0].items()}
    channels = types[st.planes_last + 1].shape[0]
    step_input = _ptr(loc_in, mp.in_type(st.first).dtype, const=True, name=src.name)
    lines = [mp.choices[i].prologue.code(src, i, own[i], step_input) for i in st.layers if mp.choices[i].prologue]
    if st.norm_first is not None:
        lines += ["norm_max = INT32_MIN;", "for (norm_pass = 0; norm_pass < 2u; norm_pass++) {"]
    lines.append(f"for (c = 0; c < {channels}u; c++) {{")
    offsets: dict[int, int | None] = {}
    cur = None  # index into `planes` holding the current plane; None: the step's input
    before = None  # the layer whose output the current plane holds
    for i in st.layers:
        choice = mp.choices[i]
        if choice is FUSED:
            offsets.setdefault(i, None)
            continue
        t_in, t_out = mp.in_type(i), types[i + 1 + choice.fuses]
        i_shown = i + choice.fuses  # the layer whose output this kernel writes
        x = _ptr(loc_in, t_in.dtype, const=True, name=src.name) if cur is None else _ptr_at(planes[cur], t_in.dtype, True)
        plane_bytes = mp.plane_bytes(i_shown)
        if i_shown == st.last:  # write straight into channel c of the step's output
            base = _ptr(loc_out, t_out.dtype, const=False)
            y = f"{base} + c * {plane_bytes // _elem(t_out.dtype)}u"
            shown = f"{_ptr(loc_out, t_out.dtype, const=True)} + c * {plane_bytes // _elem(t_out.dtype)}u"
            offsets[i] = loc_out.offset
        else:
            nxt = slots[i]
            y = _ptr_at(planes[nxt], t_out.dtype, False)
            shown = _ptr_at(planes[nxt], t_out.dtype, True)
            offsets[i] = planes[nxt]
            cur = nxt
        ptrs = Pointers(x=x, y=y, channel="c", x_is_plane=i != st.first, scratch=own[i],
                        x16=before in narrow, y16=i_shown in narrow)
        lines.append("    " + choice.render(src, i, ptrs))
        if i_shown not in narrow:  # a uint16 plane is not the int32 tensor golden traces
            lines.append(f"    BG_LAYER_PART({i_shown}, c * {plane_bytes}u, {shown}, {plane_bytes});")
        offsets[i_shown] = offsets[i]
        before = i_shown
    if st.norm_first is None:
        lines.append("}")
        return lines, offsets
    # two passes: the first keeps the maximum so far, the second writes each plane normalized
    n = types[st.planes_last + 1].size // channels
    plane = _ptr_at(offsets[st.planes_last], "int32", True)
    lines += [f"    if (norm_pass) bg_shiftnorm_apply({plane}, {_ptr(loc_out, 'int8', const=False)} + c * {n}u, "
              f"{n}u, norm_shift);",
              f"    else norm_max = bg_max_s32({plane}, {n}u, norm_max);",
              "}", "norm_shift = bg_shiftnorm_shift(norm_max);", "}",
              f"BG_LAYER_PART({st.last}, 0, {_ptr(loc_out, 'int8', const=True)}, {types[st.last + 1].nbytes});"]
    offsets |= {i: None for i in range(st.norm_first, st.last)} | {st.last: loc_out.offset}
    return lines, offsets


def _state_code(model: ir.Model, mp: ModelPlan, name: str) -> list[dict[str, Any]]:
    """Each state's buffer (outside the arena: it outlives the frame), its initial value and
    where its source is at the end of a frame."""
    out = []
    step_of = {st.last: k for k, st in enumerate(mp.steps)}
    gates = {st.first for st in mp.steps if st.change}  # their kernels update the reference in place
    for k, st in enumerate(model.states):
        node = next(i for i, n in enumerate(model.nodes) if n.output == st.source)
        t = mp.types[node + 1]
        source = None if node in gates else _ptr(mp.memory.outputs[step_of[node]], st.dtype, const=True, name=name)
        out.append({"ident": f"{name}_state{k}", "name": st.name, "ctype": C_TYPE[st.dtype], "size": t.size,
                    "init": st.init, "source": st.source, "source_ptr": source})
    return out


def _kept_code(model: ir.Model, mp: ModelPlan, name: str) -> list[dict[str, Any]]:
    """The buffers of outputs kept from frame to frame (change-based steps), in plan order."""
    kept = {}
    for k, st in enumerate(mp.steps):
        loc = mp.memory.outputs[k]
        if loc.keep is not None:
            t = mp.types[st.last + 1]
            kept[loc.keep] = {"ident": f"{name}_keep{loc.keep}", "ctype": C_TYPE[t.dtype], "size": t.size,
                              "tensor": model.nodes[st.last].output}
    return [kept[k] for k in sorted(kept)]


def _config_header(model: ir.Model) -> str:
    """bg_config.h: which weight encodings the model uses, so kernels can drop the others."""
    used = sorted({layer.encoding for layer in model.layers if getattr(layer, "encoding", None)})
    ids = [list(encodings.ENCODINGS).index(e) for e in used]
    mask = sum(1 << i for i in ids)
    return (f"/* bg_config.h: generated by bitgen {__version__}. Do not edit. */\n"
            f"#ifndef BG_CONFIG_H\n#define BG_CONFIG_H\n\n"
            f"/* weight encodings used: {', '.join(used) or 'none'} */\n"
            f"#define BG_ENCODINGS_USED 0x{mask:02X}u\n\n#endif\n")


def _elem(dtype: str) -> int:
    return 1 if dtype == "int8" else 4


def _ptr_at(offset: int, dtype: str, const: bool) -> str:
    return _ptr(memory.Location(external=False, offset=offset), dtype, const)


def plan_tiled(model: ir.Model, kernel_set: str, max_arena: int | None, strip_rows: int | None = None,
               generic: frozenset[int] = frozenset(), tile_cols: int | None = None, stream: bool = False,
               recompute: bool = False) -> ModelPlan:
    """The plan with every tileable run (tiling.runs) computed in row strips or 2-D tiles: for
    each run the strip height (`strip_rows`, or each height in turn), the tile width
    (`tile_cols`, or the full width and its halves: tiling.widths) and kernels (the generic
    ones, or fused ones: bands.fused_choice) whose arena fits `max_arena` with the fewest
    estimated instructions; without a limit, or where none fits, the smallest arena (with
    `strip_rows` and no limit: the fewest instructions at that height). `generic`: as
    plan_model. `stream`: the run that computes the model's output, if that has one int8
    channel, hands it on band by band (BG_STREAM) instead of holding it in the arena."""
    base = plan_model(model, kernel_set, generic=generic, recompute=recompute)
    found = tiling.runs(model, base.types)
    if not found:
        raise EmitError("no run of two or more convolutions, transposed convolutions, upsamplings or "
                        "poolings (with ReLU / requantization after them) to compute in row strips")
    tiles: dict[int, tiling.Tiling] = {}
    best: ModelPlan | None = None
    for stages in found:
        ranked = []
        fused = {st.first: c.scratch for st in stages if (c := bands.fused_choice(
            model, base.types, st, targets.get("generic" if st.first in generic else kernel_set))) is not None}
        out_t = base.types[stages[-1].last + 1]
        streams = (stream and not model.states and stages[-1].last == len(model.layers) - 1 and out_t.shape[0] == 1
                   and out_t.dtype == "int8")
        given = strip_rows is not None or tile_cols is not None
        hs = [strip_rows] if strip_rows else list(tiling.heights(stages, base.types))
        ws = [tile_cols] if tile_cols else tiling.widths(model, stages, base.types)
        if len(ws) > 1 and not strip_rows:  # narrower tiles: powers of two high (fewer plans to rank)
            hs_narrow = [h for h in hs if h & (h - 1) == 0]
        else:
            hs_narrow = hs
        tries = [(h, wd, f) for wd in ws for h in (hs if wd == ws[0] else hs_narrow)
                 for f in ([fused, {}] if fused else [{}])]  # the fused kernels' scratch may not fit
        for h, wd, f in tries:
            try:
                t = tiling.plan(model, base.types, stages, h, f, wd, streams)
            except tiling.TilingError as e:
                if given:
                    what = " ".join(([f"--strip-rows {strip_rows}"] if strip_rows else [])
                                    + ([f"tile_cols={tile_cols}"] if tile_cols else []))
                    raise EmitError(f"{what}: {e}") from None
                continue
            mp = plan_model(model, kernel_set, generic=generic, tiles=tiles | {t.first: t}, recompute=recompute)
            arena = mp.memory.arena_bytes
            # the height given and no limit: the fastest kernels at that height
            fits = arena <= max_arena if max_arena is not None else given
            ranked.append(((not fits, t.instructions if fits else arena, t.instructions), h, t, mp))
        if not ranked:
            continue
        _, _, t, best = min(ranked, key=lambda r: (r[0], r[1]))
        tiles[t.first] = t
    if best is None:
        raise EmitError("no tile gives every tensor of the run a row and a column to read")
    best.layer_by_layer_arena = base.memory.arena_bytes
    if max_arena is not None and best.memory.arena_bytes > max_arena:
        raise TiledArenaError(f"the arena needs {best.memory.arena_bytes} B at least in row strips or tiles "
                              f"({base.memory.arena_bytes} B layer by layer), over the limit of {max_arena} B",
                              best.memory.arena_bytes)
    return best


class TiledArenaError(EmitError):
    """Over the arena limit in row strips too."""

    def __init__(self, message: str, arena: int):
        super().__init__(message)
        self.arena = arena  # the smallest arena in row strips


def plan_within(model: ir.Model, kernel_set: str, max_arena: int | None,
                generic: frozenset[int] = frozenset(), tiles: str = "auto", strip_rows: int | None = None,
                tile_cols: int | None = None, stream: bool = False, recompute: bool = False) -> ModelPlan:
    """:func:`plan_layers`, or with `tiles` "rows" (or "auto" where the layers do not fit
    `max_arena` one after the other) :func:`plan_tiled` (`tile_cols`, `stream`: see there;
    `recompute`: see plan_model)."""
    if tiles not in tiling.MODES:
        raise EmitError(f"unknown tiling '{tiles}' (known: {', '.join(tiling.MODES)})")
    if (strip_rows is not None or tile_cols is not None) and tiles == "off":
        raise EmitError("--strip-rows needs tiling (--tiling rows or auto)" if strip_rows is not None
                        else "tile_cols needs tiling (tiles 'rows' or 'auto')")
    if tiles == "rows" or strip_rows is not None or tile_cols is not None:
        return plan_tiled(model, kernel_set, max_arena, strip_rows, generic, tile_cols, stream, recompute)
    try:
        return plan_layers(model, kernel_set, max_arena, generic, recompute)
    except EmitError as layered:
        if tiles == "off" or max_arena is None or not tiling.runs(model, plan_model(model, kernel_set).types):
            raise
        try:
            return plan_tiled(model, kernel_set, max_arena, generic=generic, stream=stream, recompute=recompute)
        except TiledArenaError as e:
            raise TiledArenaError(f"{layered}; in tiles (--tiling) {e.arena} B at least", e.arena) from None
        except EmitError:
            raise layered from None


def plan_layers(model: ir.Model, kernel_set: str, max_arena: int | None,
                generic: frozenset[int] = frozenset(), recompute: bool = False) -> ModelPlan:
    """The plan with the target's fastest kernels, or, when its arena is over `max_arena`
    bytes, a plan whose arena is not. Kernel scratch trades speed for SRAM first: LUT tables,
    of which fewer are built per pass, lowered only in the layers that must, each as little as it
    can; then optional kernels (XNOR columns), which give way to the generic kernel one at a
    time (the one that lowers the peak most). Last, at about twice their instructions,
    channel-by-channel steps followed by a ShiftNorm run in two passes (schedule.py).
    `generic`: layers that take the generic kernel whatever the kernel set (plan_model)."""
    mp = plan_model(model, kernel_set, generic=generic, recompute=recompute)
    if max_arena is None or mp.memory.arena_bytes <= max_arena:
        return mp
    least = _trade_scratch(model, kernel_set, max_arena, generic=generic, recompute=recompute)
    if least.memory.arena_bytes <= max_arena:
        return least
    two_pass = frozenset(st.first for st in mp.steps
                         if st.channelwise and schedule.norm_tail(model, st.last) is not None)
    if two_pass:
        least = _trade_scratch(model, kernel_set, max_arena, two_pass, generic, recompute)
        if least.memory.arena_bytes <= max_arena:
            return least
    raise EmitError(f"the arena needs {least.memory.arena_bytes} B at least, over the limit of "
                    f"{max_arena} B (--max-arena)")


def _trade_scratch(model: ir.Model, kernel_set: str, max_arena: int, two_pass: frozenset[int] = frozenset(),
                   generic: frozenset[int] = frozenset(), recompute: bool = False) -> ModelPlan:
    """The fastest plan whose kernels' scratch keeps the arena within `max_arena` (see
    plan_within), or the smallest plan there is if none does."""
    def plan(chunks: dict[int, int] | None = None, plain: frozenset[int] = frozenset()) -> ModelPlan:
        return plan_model(model, kernel_set, chunks, plain, two_pass, generic, recompute=recompute)

    mp = plan()
    if mp.memory.arena_bytes <= max_arena:
        return mp
    luts = [i for i, c in enumerate(mp.choices) if c.trades_scratch]
    least = plan({i: 1 for i in luts})
    plain: frozenset[int] = frozenset()
    optional = {i for i, c in enumerate(mp.choices) if c.optional}
    while least.memory.arena_bytes > max_arena and optional:
        # give up the optional kernel whose scratch sets the peak: the one that lowers it most
        tries = {i: plan({j: 1 for j in luts}, plain | {i}) for i in sorted(optional)}
        best = min(tries, key=lambda i: tries[i].memory.arena_bytes)
        plain, least = plain | {best}, tries[best]
        optional.discard(best)
    if least.memory.arena_bytes > max_arena:
        return least
    # Each layer's scratch only counts while it runs: find each one's largest chunk with the
    # others at their smallest, then check the combination.
    chunks = {}
    for i in luts:
        for chunk in range(targets.get(kernel_set).lut_chunk, 0, -1):
            if plan({j: 1 for j in luts} | {i: chunk}, plain).memory.arena_bytes <= max_arena:
                chunks[i] = chunk
                break
    mp = plan(chunks, plain)
    return mp if mp.memory.arena_bytes <= max_arena else least


def _arena_peak(mp: ModelPlan, layers: list[LayerPlan]) -> dict[str, Any] | None:
    """The step that sets the arena's size (named by the layer whose output it writes), the
    bytes in use then and what holds them."""
    if not mp.steps or not mp.memory.arena_bytes:
        return None
    st = mp.steps[mp.memory.peak_step]
    lp = layers[st.last]
    return {"first_layer": st.first, "first_name": layers[st.first].name, "layer": lp.index, "name": lp.name, "op": lp.op, "out_shape": list(lp.out_shape),
            "bytes": mp.memory.peak_bytes, "parts": dict(mp.memory.peak_parts or {}),
            "trades_scratch": bool(mp.choices[st.first].trades_scratch)}  # --max-arena could lower it


def _tiling_report(mp: ModelPlan) -> dict[str, Any] | None:
    """Row strips: the arena layer by layer and tiled, and each tiled run's strips and the
    multiply-accumulates its halos recompute."""
    if not mp.tiles:
        return None
    return {"arena_layer_by_layer": mp.layer_by_layer_arena, "arena_tiled": mp.memory.arena_bytes,
            "runs": [t.report() for t in mp.tiles.values()]}


def name_problem(name: str) -> str | None:
    """Why ``name`` cannot prefix the emitted C (None when it can)."""
    if not isinstance(name, str) or not IDENT.fullmatch(name):  # fullmatch: "net\n" is no name
        return "is not a C name (an ASCII letter, then letters, digits or _; at most 41 characters)"
    low = name.lower()
    if low in RESERVED_NAMES or low.startswith(RESERVED_PREFIXES):
        return f"is reserved (bitgen's own names: {', '.join(RESERVED_NAMES)}, bg_*)"
    return None


def emit(model: ir.Model, outdir: str | Path, name: str = "model", kernels: str = "generic",
         max_arena: int | None = None, generic: frozenset[int] = frozenset(), tiles: str = "auto",
         strip_rows: int | None = None, tile_cols: int | None = None, stream: bool = False,
         recompute: bool = False) -> Emitted:
    """Write the C for `model` into `outdir`; returns the file list and the report.
    `max_arena`: bytes the arena may take at most; `generic`: layers that take the generic
    kernel whatever the kernel set; `tiles`, `strip_rows`, `tile_cols`: row strips or 2-D
    tiles; `stream`: a tiled one-channel int8 output leaves band by band through BG_STREAM
    (see plan_within); `recompute`: change-based steps without accumulators (plan_model)."""
    try:
        return _emit(model, outdir, name, kernels, max_arena, frozenset(generic), tiles, strip_rows, tile_cols,
                     stream, recompute)
    except OSError as e:  # the folder may have been checked, but a file system can still refuse
        raise EmitError(f"writing the C into {outdir} failed ({e.filename}: {e.strerror or e})") from None


def _emit(model: ir.Model, outdir: str | Path, name: str, kernels: str, max_arena: int | None,
          generic: frozenset[int], tiles: str = "auto", strip_rows: int | None = None,
          tile_cols: int | None = None, stream: bool = False, recompute: bool = False) -> Emitted:
    why = name_problem(name)
    if why:
        raise EmitError(f"--name {name!r} {why}")
    kernel_set = kernels  # the name of the kernel set (targets.KERNEL_SETS)
    mp = plan_within(model, kernel_set, max_arena, generic, tiles, strip_rows, tile_cols, stream, recompute)
    streams = any(t.stream for t in mp.tiles.values())
    types, choices, plan = mp.types, mp.choices, mp.memory
    src = ModelSource(name)
    layers: list[LayerPlan] = []
    body: list[str] = []
    runtime = set(ALWAYS)
    # a kernel writes the output of its last fused layer; the layers before it never exist
    stored = {i + c.fuses for i, c in enumerate(choices) if c is not FUSED}
    # ... and a uint16 plane inside a step is not the int32 tensor golden traces
    stored -= {i for st in mp.steps if st.channelwise for i in _narrow_planes(types, choices, st)}
    stored |= {st.last for st in mp.steps if st.norm_first is not None}  # written by the step's second pass
    # ... and a tiled step keeps only bands of rows of the tensors inside it
    stored -= {i for st in mp.steps if st.tiled for i in st.layers if i != st.last}
    for k, st in enumerate(mp.steps):
        lines, offsets = _step_code(model, mp, k, src)
        body += lines
        for i in st.layers:
            layer, choice = model.layers[i], choices[i]
            t_in, t_out = types[i], types[i + 1]
            runtime.update(choice.files)
            if st.tiled:
                runtime.update(bands.FILES)
            layers.append(LayerPlan(
                index=i, op=layer.kind, name=layer.name or f"{layer.kind}{i}",
                in_shape=t_in.shape, out_shape=t_out.shape, out_dtype=t_out.dtype,
                out_bytes=t_out.nbytes,
                kernel=("shiftnorm/two-pass" if st.norm_first is not None and i == st.last else choice.kernel)
                + ("/channelwise" if st.channelwise else "/tiled" if st.tiled else ""),
                traced=i in stored,
                encoding=getattr(layer, "encoding", None),
                flash_bytes=src.flash_of_layer(i),
                macs=layer.macs(t_out),
                arena_offset=offsets[i],
                scratch_bytes=choice.scratch,
                refused=mp.refused.get(i, []),
                sources=sorted(f for f in choice.files + (bands.FILES if st.tiled else []) if f.endswith(".c")),
            ))
    if any(st.channelwise for st in mp.steps):
        body.insert(0, "uint32_t c;")
    if any(st.norm_first is not None for st in mp.steps):
        body.insert(0, "uint32_t norm_pass, norm_shift = 0;")
        body.insert(0, "int32_t norm_max;")
    # (a tiled step declares its own counters, in a block of its own)
    for decl in sorted({d for c in choices if c.prologue for d in c.prologue.locals}, reverse=True):
        body.insert(0, f"{decl};")

    t_final = types[len(model.nodes)]  # the last node writes the model output
    # the identity a board reports: the model file's, also where its accelerator layers were lowered
    digest = model.meta.get(lower_max78000.LOWERED_FROM) or model.digest()
    context = {
        "name": name,
        "guard": f"BITGEN_{name.upper()}_H",
        "version": __version__,
        "hash": digest,
        "input_size": model.input.size,
        "input_shape": _shape_str(model.input.shape),
        "input_scale": repr(float(model.input.scale)),  # shortest text that reads back as the same double
        "input_zero_point": model.input.zero_point,
        "output_size": t_final.size,
        "output_shape": _shape_str(t_final.shape),
        "output_dtype": t_final.dtype,
        "output_suffix": SUFFIX[t_final.dtype],
        "arena_bytes": plan.arena_bytes,
        "weight_bytes": src.flash_bytes,
        "macs": sum(lp.macs for lp in layers),
        "layers": layers,
        "body": body,
        "data": src.data,
        "functions": src.functions,
        "final_ptr": _ptr(plan.outputs[-1], t_final.dtype, const=True, name=name),
        "stream": streams,
        "states": _state_code(model, mp, name),
        "kept": _kept_code(model, mp, name),
        "gates": src.gates,
        "buffers": src.buffers,
        "headers": sorted(f for f in runtime if f.endswith(".h") and f != "bg_runtime.h"),
    }
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(TEMPLATES)),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    files = []
    for tmpl, fname in (("model.h.j2", f"{name}.h"), ("model.c.j2", f"{name}.c")):
        text = env.get_template(tmpl).render(**context)
        (outdir / fname).write_text(text)
        files.append(outdir / fname)
    for fname in sorted(runtime):
        shutil.copyfile(C_RUNTIME / fname, outdir / fname)
        files.append(outdir / fname)
    (outdir / "bg_config.h").write_text(_config_header(model))
    files.append(outdir / "bg_config.h")
    report = reports.header("emit") | {
        "name": name,
        "model_hash": digest,
        "kernels": kernel_set,
        "input": {"shape": list(model.input.shape), "dtype": "int8",
                  "scale": model.input.scale, "zero_point": model.input.zero_point},
        "output": {"shape": list(t_final.shape), "dtype": t_final.dtype},
        "labels": model.labels,
        "weight_bytes": context["weight_bytes"],
        "arena_bytes": plan.arena_bytes,
        "max_arena": max_arena,
        "generic_layers": sorted(generic),
        "macs": context["macs"],
        "arena_peak": _arena_peak(mp, layers),
        "tiling": _tiling_report(mp),
        "stream": streams,
        "layers": [lp.report() for lp in layers],
    }
    if src.gates:  # change-based convolutions: NAME_changed[k] counts gate k's changed pixels per frame
        report["change_gates"] = [{"layer": i, "pixels": px, "threshold": model.layers[i].threshold}
                                  for i, px in src.gates]
    if model.states:  # carried from frame to frame: NAME_reset() starts a sequence
        report["states"] = [{"name": s["name"], "source": s["source"], "size": s["size"], "dtype": st.dtype,
                             "init": s["init"], "bytes": s["size"] * (1 if st.dtype == "int8" else 4)}
                            for s, st in zip(context["states"], model.states)]
    if context["kept"]:  # change-based steps' outputs, kept between frames outside the arena
        report["kept"] = [{"tensor": b["tensor"], "size": b["size"], "bytes": b["size"] * (1 if b["ctype"] == "int8_t" else 4)}
                          for b in context["kept"]]
        # and what their kernels keep besides (a delta step's accumulators)
        report["kept"] += [{"tensor": b["what"], "size": b["size"], "bytes": b["bytes"]} for b in src.buffers]
    # SRAM the model holds outside its arena from one frame to the next (states, kept outputs)
    report["persistent_bytes"] = sum(s["bytes"] for s in report.get("states", [])) + \
        sum(b["bytes"] for b in report.get("kept", []))
    (outdir / f"{name}.json").write_text(json.dumps(report, indent=2) + "\n")
    files.append(outdir / f"{name}.json")
    sources = [outdir / f"{name}.c"] + [outdir / f for f in sorted(runtime) if f.endswith(".c")]
    return Emitted(name=name, outdir=outdir, files=files, report=report, sources=sources)
