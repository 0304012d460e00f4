"""`bitgen run` through a serial line that flips bits, against the emulated CH32V003.

Builds the CH32V003 firmware of a model (default: a 256-64-64-10 MLP with random 4-bit weights,
the size of the README's benchmark models), runs its image on the emulator
(``python -m bitgen.sim``), puts a noisy line between it and the host
(:class:`bitgen.sim.noise.NoisyLine`: one bit of a byte flipped with probability --flip, both
ways) and runs ``bitgen run --board ch32v003 --port <the noisy line>`` on --inputs random inputs.
The promise it checks: no wrong result is ever accepted (every output is compared with the
golden model), and the run either completes, retrying and resynchronising, or stops with a
clear one-line reason.

    .venv/bin/python tools/noisy_run.py --inputs 500 --flip 0.002
"""
from __future__ import annotations

import argparse
import contextlib
import io
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]  # the suite's MLP (tests/models_for_tests.py)

import bitgen  # noqa: E402
from bitgen import cli  # noqa: E402
from bitgen.sim.noise import NoisyLine  # noqa: E402
from models_for_tests import mlp  # noqa: E402


def noisy_run(workdir: Path, inputs: int, flip: float, seed: int = 0, model_path: Path | None = None,
              retries: int = 3, timeout: float | None = None) -> dict:
    """Build, emulate, add noise, run; returns what happened (exit status, stderr, run.json, flips)."""
    if model_path is None:
        model_path = workdir / "model.pt"
        bitgen.save(mlp(seed, widths=(256, 64, 64, 10)), model_path)
    fw = workdir / "fw"
    with contextlib.redirect_stdout(io.StringIO()):
        rc = cli.main(["build", "--board", "ch32v003", str(model_path), "-o", str(fw), "-q"])
    if rc != 0:
        raise SystemExit(f"bitgen build failed ({rc})")
    sim = subprocess.Popen([sys.executable, "-m", "bitgen.sim", "ch32v003-sim", str(fw / "firmware.bin")],
                           stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        line = sim.stdout.readline().decode().strip()
        if not line.startswith("PORT "):
            raise SystemExit(f"the emulator said {line!r}: {sim.stderr.read().decode()[-500:]}")
        report = workdir / "run.json"
        err = io.StringIO()
        start = time.monotonic()
        with NoisyLine(line[5:], flip, seed) as noisy, contextlib.redirect_stderr(err), \
                contextlib.redirect_stdout(io.StringIO()) as out:
            rc = cli.main(["run", "--board", "ch32v003", "--port", noisy.port, str(model_path), "--random",
                           str(inputs), "--seed", str(seed), "--retries", str(retries), "--json", str(report), "-q"]
                          + ([] if timeout is None else ["--timeout", str(timeout)]))
        return {"rc": rc, "stderr": err.getvalue(), "stdout": out.getvalue(), "flips": dict(noisy.counts),
                "seconds": round(time.monotonic() - start, 1),
                "run": json.loads(report.read_text()) if report.is_file() and rc in (0, 1) else None}
    finally:
        sim.stdin.close()
        try:
            sim.wait(timeout=5)
        except subprocess.TimeoutExpired:
            sim.kill()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--inputs", type=int, default=500)
    ap.add_argument("--flip", type=float, default=0.002, help="probability that a byte has a bit flipped")
    ap.add_argument("--seed", type=int, default=0, help="seed of the model, the inputs and the noise")
    ap.add_argument("--model", type=Path, help="model file (default: a random 256-64-64-10 MLP)")
    ap.add_argument("--retries", type=int, default=3, help="bitgen run --retries (default: its default, 3)")
    ap.add_argument("--timeout", type=float, help="bitgen run --timeout (default: its default, 3 s)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="bitgen-noisy-") as tmp:
        r = noisy_run(Path(tmp), args.inputs, args.flip, args.seed, args.model, args.retries, args.timeout)
    run = r["run"] or {}
    print(f"exit status {r['rc']} after {r['seconds']} s; bits flipped: {r['flips']['to_board']} to the board, "
          f"{r['flips']['from_board']} from it, of {r['flips']['bytes']} bytes")
    if run:
        print(f"compared {run['compared']} inputs: {run['mismatches']} mismatches (wrong results accepted); "
              f"{run['failed_exchanges']} failed exchanges recovered; {run['retried_inputs']} inputs needed "
              "more than one attempt")
    if r["stderr"].strip():
        print(f"stderr: {r['stderr'].strip()}")
    return 0 if r["rc"] == 0 or (r["rc"] == 2 and len(r["stderr"].strip().splitlines()) == 1) else 1


if __name__ == "__main__":
    sys.exit(main())
