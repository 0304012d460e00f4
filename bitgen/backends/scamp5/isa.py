"""The SCAMP-5d instructions bitgen emits: registers, operands, costs and the rules the hardware
imposes (``../shared/reference/scamp5.md`` §1). One table drives the simulator's checks, the
instruction counts and the C++ emitter.

An instruction is ``{"op": NAME, "args": [...]}`` with the argument order of the SCAMP-5d
kernel API call it stands for (``add(y, x0, x1)``, ``subx(y, x0, dir, x1)``, ...).

Conventions (the orientation of the real array is unverified, scamp5.md §2.7-4; the simulator
and the emitted program agree with these):

* row 0 is the top of the array, column 0 its left; ``north`` is row - 1, ``east`` column + 1.
* analog neighbour access reads the neighbour: ``movx(y, x, east)`` gives ``y(r, c) = x(r, c + 1)``
  (``x0_dir`` in the API's comments).
* ``DNEWS0(d, d0)`` moves bits *toward* the directions selected in RS, RW, RN, RE (R1..R4): with
  RE set, ``d(r, c) = d0(r, c - 1)``, 0 where the source is off the array; several set
  directions OR their sources.
* ``scamp5_load_pattern(d, r, c, rx, cx)`` sets PE (row, col) where ``row & ~rx == r & ~rx``
  and ``col & ~cx == c & ~cx`` (rx, cx: don't-care bits).
* FLAG masks analog writes only (``where`` / ``WHERE`` / ``all`` / ``ALL``); digital ops ignore it.
"""
from __future__ import annotations

from dataclasses import dataclass

AREGS = ("A", "B", "C", "D", "E", "F")  # the six analog registers a program allocates
ANALOG_SOURCES = AREGS + ("IN",)  # IN: the global constant set by scamp5_load_in
DREGS = tuple(f"R{i}" for i in range(13))
DATA_DREGS = tuple(f"R{i}" for i in range(5, 12))  # S0..S6: R1..R4 select DNEWS directions, R0/R12 are scratch
DIRECTION_DREGS = {"south": "R1", "west": "R2", "north": "R3", "east": "R4"}  # RS, RW, RN, RE
DIRS = {"north": (-1, 0), "south": (1, 0), "east": (0, 1), "west": (0, -1)}

# kinds: analog (a bus macro, masked by FLAG), flag (sets FLAG), digital (DREG logic),
# controller (host-side functions of the SCAMP-5d API), host (data in or out of the array)
ANALOG, FLAG, DIGITAL, CONTROLLER, HOST = "analog", "flag", "digital", "controller", "host"


@dataclass(frozen=True)
class Spec:
    kind: str
    bus: int  # bus operations (scamp5.md §1.3); 0 for non-analog instructions
    writes: tuple[int, ...] = (0,)  # argument positions written
    no_alias: tuple[tuple[int, int], ...] = ()  # (written, read) positions that must differ


# arguments: registers by name, directions by name, integers
SPECS: dict[str, Spec] = {
    # analog macros: y first
    "mov": Spec(ANALOG, 2),
    "res": Spec(ANALOG, 2),
    "add": Spec(ANALOG, 2),  # add(y, x0, x1[, x2])
    "sub": Spec(ANALOG, 2, no_alias=((0, 2),)),  # bus(NEWS, x0); bus(y, NEWS, x1): y != x1
    "neg": Spec(ANALOG, 2, no_alias=((0, 1),)),
    "divq": Spec(ANALOG, 2, no_alias=((0, 1),)),
    "movx": Spec(ANALOG, 2),  # movx(y, x0, dir)
    "mov2x": Spec(ANALOG, 2),  # mov2x(y, x0, dir, dir2)
    "addx": Spec(ANALOG, 2),  # addx(y, x0, x1, dir): y = x0_dir + x1_dir
    "add2x": Spec(ANALOG, 2),  # add2x(y, x0, x1, dir, dir2)
    "subx": Spec(ANALOG, 2, no_alias=((0, 3),)),  # subx(y, x0, dir, x1): y = x0_dir - x1
    "sub2x": Spec(ANALOG, 2, no_alias=((0, 4),)),  # sub2x(y, x0, dir, dir2, x1)
    # FLAG
    "where": Spec(FLAG, 0, writes=()),  # where(a[, b[, c]]): FLAG := a (+ b + c) > 0
    "all": Spec(FLAG, 0, writes=()),
    "WHERE": Spec(FLAG, 0, writes=()),  # WHERE(d): FLAG := d
    "ALL": Spec(FLAG, 0, writes=()),
    # digital
    "MOV": Spec(DIGITAL, 0),
    "NOT": Spec(DIGITAL, 0),
    "OR": Spec(DIGITAL, 0),  # OR(d, d0, d1[, d2, d3]) or OR(d, d0): d := d | d0
    "NOR": Spec(DIGITAL, 0),  # NOR(d, d0, d1[, ...]) or NOR(d, d0): d := ~(d | d0)
    "AND": Spec(DIGITAL, 0, no_alias=((0, 1), (0, 2))),  # a macro that clobbers R0 and R12
    "CLR": Spec(DIGITAL, 0, writes=(0, 1, 2, 3)),
    "SET": Spec(DIGITAL, 0, writes=(0, 1, 2, 3)),
    "DNEWS0": Spec(DIGITAL, 0, no_alias=((0, 1),)),
    "REFRESH": Spec(DIGITAL, 0, writes=()),
    # controller functions
    "scamp5_load_in": Spec(CONTROLLER, 0, writes=()),  # scamp5_load_in(v): IN := v, v in -128..127
    "scamp5_in": Spec(CONTROLLER, 2),  # scamp5_in(a, v): a := v (masked like a mov)
    "scamp5_load_pattern": Spec(CONTROLLER, 0),
    "scamp5_flood": Spec(CONTROLLER, 0),  # scamp5_flood(target, mask, boundary, iterations)
    "scamp5_scan_areg": Spec(HOST, 0, writes=()),  # (a, r0, c0, r1, c1, rs, cs): read out values
    "scamp5_scan_dreg": Spec(HOST, 0, writes=()),  # (d, r0, c0, r1, c1, rs, cs): read out bits
    "load_frame_bit": Spec(HOST, 0),  # (d, bit): the host draws bit `bit` of the frame into d
}

CLOBBERS = {"AND": ("R0", "R12")}  # registers an instruction leaves undefined


def is_areg(a) -> bool:
    return isinstance(a, str) and a in ANALOG_SOURCES


def is_dreg(a) -> bool:
    return isinstance(a, str) and (a in DREGS or a == "FLAG")


def instruction(op: str, *args) -> dict:
    if op not in SPECS:
        raise ValueError(f"unknown SCAMP-5 instruction '{op}'")
    return {"op": op, "args": list(args)}


def check(ins: dict) -> None:
    """Raise ValueError when an instruction breaks an aliasing rule of the hardware."""
    spec = SPECS[ins["op"]]
    a = ins["args"]
    for w, r in spec.no_alias:
        if w < len(a) and r < len(a) and a[w] == a[r]:
            raise ValueError(f"{ins['op']}({', '.join(map(str, a))}): argument {r} is read by the bus op "
                             f"that writes argument {w}; the hardware cannot do this in place")
