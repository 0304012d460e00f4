"""The SCAMP-5 back end: a model's in-pixel layers as a SCAMP-5d kernel program.

``legalize`` finds the part of the model that runs in the pixels (:func:`.lower.analyse`),
``plan`` lowers it to a :class:`~.program.Program`, ``emit`` writes ``program.cpp`` (the SCAMP-5d
kernel API), ``program.json`` (the same instructions, what the simulator runs), ``NAME.json``
(instructions per frame per layer, data leaving the sensor, thresholds, registers) and
``decoder.pt`` (what runs on the host: a bitgen model that ``bitgen emit``/``build`` take to an
MCU), and the executor runs the program in :mod:`.simulator`.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ... import ir
from ..base import Artifact, Backend, Options
from . import cpp, execute
from . import lower as lowering
from .lower import Analysis, Options as Scamp5Options, Scamp5Error  # noqa: F401
from .program import Program


def report(model: ir.Model, p: Program, a: Analysis, name: str) -> dict:
    frame_counts = p.counts("frame")
    total = {}
    for c in frame_counts.values():
        for k, v in c.items():
            total[k] = total.get(k, 0) + v
    h, w = a.frame
    ro = p.meta["readout"]
    frames = 16
    readout_bytes = int(np.prod(ro["shape"])) * ro["bits"] // 8
    return {
        "name": name, "target": "scamp5", "model_hash": model.digest(), "array": list(p.array),
        "weights": p.meta["weights"], "iw": p.meta["iw"],
        "sensor_layers": [n.output for n in model.nodes if n.output not in
                          ({m.output for m in a.host.nodes} if a.host else set())],
        "instructions_per_frame": total, "per_layer": frame_counts,
        "init": p.counts("init"), "reset": p.counts("reset"), "readout": p.counts("readout"),
        "registers": p.meta["registers"],
        "thresholds": {"levels_per_product": p.meta["iw"],
                       "rule": "s > T exactly: compare s*IW with IW*T + IW/2 (never a tie)"},
        "data": {"frames": frames, "readout": ro, "readout_bytes_per_sequence": readout_bytes,
                 "raw_frames_bytes": frames * h * w,
                 "raw_sensor_bytes": frames * p.array[0] * p.array[1],
                 "reduction_vs_frames": frames * h * w / readout_bytes,
                 "reduction_vs_sensor": frames * p.array[0] * p.array[1] / readout_bytes},
        "decoder": "decoder.pt" if a.host is not None else None,
    }


class Scamp5Backend(Backend):
    name = "scamp5"

    def __init__(self, opts: Scamp5Options | None = None):
        self.opts = opts or Scamp5Options()
        self._plans: dict[str, tuple[Program, Analysis]] = {}

    def legalize(self, model: ir.Model, options: Options) -> None:
        lowering.analyse(model)

    def plan(self, model: ir.Model, options: Options) -> tuple[Program, Analysis]:
        return lowering.lower(model, self.opts)

    def emit(self, model: ir.Model, outdir, options: Options) -> Artifact:
        from ... import modelfile

        out = Path(outdir)
        out.mkdir(parents=True, exist_ok=True)
        p, a = self.plan(model, options)
        rep = report(model, p, a, options.name)
        files = [out / "program.cpp", out / "program.json", out / f"{options.name}.json"]
        files[0].write_text(cpp.render(p, options.name, model.digest()) + "\n")
        files[1].write_text(json.dumps(p.to_dict(), indent=1) + "\n")
        files[2].write_text(json.dumps(rep, indent=2) + "\n")
        if a.host is not None:
            modelfile.save(a.host, out / "decoder.pt", name=a.host.name)
            files.append(out / "decoder.pt")
        self._plans[str(out)] = (p, a)
        return Artifact(options.name, out, files, rep)

    def executor(self, artifact: Artifact, workdir=None) -> "SimulatorExecutor":
        p, a = self._plans[str(artifact.outdir)]
        return SimulatorExecutor(p, a)


class SimulatorExecutor:
    """The program in the ideal simulator, the decoder (if any) by its golden model on the host:
    the :class:`~bitgen.backends.base.Executor` of this back end. Every frame's output comes from
    the simulator's probe of the readout tensor (on the sensor only the last frame's leaves)."""

    def __init__(self, program: Program, a: Analysis, noise=None):
        self.program, self.a, self.noise = program, a, noise

    def _host(self, v: np.ndarray) -> np.ndarray:
        from ... import golden

        x = v.reshape((len(v),) + tuple(self.a.types[self.a.readout].shape)).astype(np.int8)
        return (golden.run(self.a.host, x) if self.a.host is not None else x.astype(np.int64)).reshape(len(v), -1)

    def run(self, x: np.ndarray, trace: bool = False):
        clips = np.asarray(x, dtype=np.int8)[:, None]
        res = execute.simulate(self.program, self.a, clips, self.noise)
        out = res.logits.reshape(len(x), -1)
        return out, out.argmax(axis=1), None

    def run_sequence(self, x: np.ndarray, trace: bool = False):
        clips = np.asarray(x, dtype=np.int8)
        res = execute.simulate(self.program, self.a, clips, self.noise)
        frames = res.probes[self.a.readout]  # (N, T, ...)
        n, t = frames.shape[:2]
        out = self._host(frames.reshape((n * t,) + frames.shape[2:])).reshape(n, t, -1)
        return out, out.argmax(axis=2), None

    def close(self) -> None:
        pass
