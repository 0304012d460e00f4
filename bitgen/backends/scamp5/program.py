"""A SCAMP-5 program: sections of instructions (:mod:`.isa`), each tagged with the layer it
belongs to, plus what the host and the simulator need to know about the data.

Sections: ``init`` (once, after power-up: weights stored in pixels), ``reset`` (at the start of
every sequence: the recurrent state), ``frame`` (every frame) and ``readout`` (after the last
frame of a sequence: what leaves the sensor). ``program.json`` is :meth:`Program.to_dict`.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from . import isa

SECTIONS = ("init", "reset", "frame", "readout")


@dataclass
class Program:
    array: tuple[int, int]  # rows, columns of the PE array the program addresses
    sections: dict[str, list[dict]] = field(default_factory=lambda: {s: [] for s in SECTIONS})
    meta: dict[str, Any] = field(default_factory=dict)  # layout, scales, probes, readout
    layer: str = ""  # the layer instructions are being added for

    def emit(self, section: str, op: str, *args) -> None:
        ins = isa.instruction(op, *args)
        isa.check(ins)
        ins["layer"] = self.layer
        self.sections[section].append(ins)

    def counts(self, section: str = "frame") -> dict[str, dict[str, int]]:
        """Per layer: instructions in all, by kind, and analog bus operations."""
        out: dict[str, Counter] = {}
        for ins in self.sections[section]:
            spec = isa.SPECS[ins["op"]]
            c = out.setdefault(ins["layer"], Counter())
            c["instructions"] += 1
            c[spec.kind] += 1
            c["bus_ops"] += spec.bus
        return {k: dict(v) for k, v in out.items()}

    def to_dict(self) -> dict[str, Any]:
        return {"format": "bitgen-scamp5", "version": 1, "array": list(self.array), "meta": self.meta,
                "sections": self.sections, "counts": {s: self.counts(s) for s in SECTIONS}}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Program":
        if d.get("format") != "bitgen-scamp5":
            raise ValueError("not a bitgen SCAMP-5 program")
        p = cls(tuple(d["array"]), {s: list(d["sections"].get(s, [])) for s in SECTIONS}, dict(d.get("meta", {})))
        for s in SECTIONS:
            for ins in p.sections[s]:
                if ins.get("op") not in isa.SPECS:
                    raise ValueError(f"unknown instruction {ins.get('op')!r} in section {s}")
                isa.check(ins)
        return p
