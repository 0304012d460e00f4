"""Writing a built firmware to a board, through the flashers its board.toml lists.

Each flasher is an existing, well-kept tool: a command line (``rvprog``, ``minichlink``,
``wlink``, ADI's ``openocd``), or pyOCD's Python API (``kind = "pyocd"``). They are tried in the
board's order; the first one that is installed runs, and when it fails (no probe, no target) the
next installed one is tried. The error names every flasher and why it could not be used, and
``dry_run`` shows the commands without touching any hardware.

Nothing is written (not even in a dry run) unless build.json carries the host proof of the
sources and the image files still hash to what the build recorded (:func:`verify_build`).
"""
from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from .. import schema
from .boards import Board
from .firmware import IMAGE_FILES, file_sha256, sources_sha256
from ..errors import BitgenError

FLASH_TIMEOUT_S = 180


class FlashError(BitgenError):
    pass


@dataclass
class Candidate:
    name: str
    spec: dict[str, Any]
    argv: list[str] | None  # the command (None for API flashers)
    available: bool
    why: str  # why it cannot be used, when not available

    def describe(self) -> str:
        if self.argv:
            return " ".join(_quote(a) for a in self.argv)
        return f"pyocd API: program {self.spec.get('_image')} (target {self.spec.get('target')})"


def _quote(a: str) -> str:
    return a if re.fullmatch(r"[\w@%+=:,./-]+", a) else "'" + a.replace("'", "'\\''") + "'"


def _which(exe: str) -> str | None:
    # also look beside this Python: pip installs flashers' console scripts there
    return shutil.which(exe) or shutil.which(exe, path=str(Path(sys.executable).parent))


@dataclass
class Proof:
    """build.json's ``proof``: what flash checks of it."""

    sha256: str
    sources: dict[str, str]  # file name in src/ -> its SHA-256
    kernels: str
    compared: int
    mismatches: int


@dataclass
class BuildReport:
    """The fields of build.json that flash reads (the others are not its business)."""

    image_board: str
    fits: bool
    kernels: str | None = None
    files: dict[str, str | None] | None = None  # kind (elf, bin, hex) -> the image file, in the build folder
    sha256: dict[str, str] | None = None  # (a build that failed has no files)
    proof: dict[str, Any] | None = None
    model: dict[str, Any] | None = None


def read_build(fw_dir: Path, board: Board) -> dict[str, Any]:
    """build.json of a build folder, checked against :class:`BuildReport` (and its proof)."""
    meta = fw_dir / "build.json"
    if not meta.is_file():
        raise FlashError(f"no firmware in {fw_dir}: run bitgen build --board {board.image_board.name} "
                         f"MODEL -o {fw_dir} first")
    try:
        rep = json.loads(meta.read_text())
        schema.check_fields(rep, BuildReport, strict=False)
        if rep.get("proof") is not None:
            schema.check_fields(rep["proof"], Proof, "proof", strict=False)
    except (OSError, UnicodeDecodeError, ValueError) as e:  # JSONDecodeError and SchemaError are ValueErrors
        raise FlashError(f"{meta}: not a build report bitgen wrote ({str(e).splitlines()[0][:200]}): rebuild with "
                         f"bitgen build --board {board.image_board.name} MODEL -o {fw_dir}") from None
    return rep


def _inside(fw_dir: Path, recorded: str) -> Path:
    """An image file build.json names: only firmware.{elf,bin,hex} of the build folder itself."""
    path = Path(recorded)
    path = path if path.is_absolute() else fw_dir / path
    if path.name not in IMAGE_FILES or path.resolve().parent != fw_dir.resolve():
        raise FlashError(f"{fw_dir}/build.json names {recorded} as an image, which is not one of its build "
                         f"folder's own ({', '.join(IMAGE_FILES)}): refusing to flash it")
    return path


def find_firmware(board: Board, fw_dir: str | Path) -> dict[str, Path]:
    """The image files of a build directory, checked to be for this board and within budget."""
    fw_dir = Path(fw_dir)
    rep = read_build(fw_dir, board)
    if rep["image_board"] != board.image_board.name:
        raise FlashError(f"{fw_dir} holds firmware for {rep['image_board']}, not {board.image_board.name}")
    if not rep["fits"]:
        raise FlashError(f"{fw_dir} holds an image over {board.image_board.name}'s budget: refusing to flash it")
    files = {k: _inside(fw_dir, v) for k, v in (rep.get("files") or {}).items() if v}
    for kind, path in files.items():
        if not path.is_file():
            raise FlashError(f"{path} is missing: rebuild with bitgen build")
    verify_build(board, fw_dir, rep, files)
    return files


def verify_build(board: Board, fw_dir: Path, rep: dict[str, Any], files: dict[str, Path]) -> None:
    """Refuse an image without a clean host proof, or whose files (the image, or the proved
    sources in src/) no longer hash to what bitgen build recorded."""
    model = (rep.get("model") or {}).get("path") or "MODEL"
    rebuild = f"rebuild with bitgen build --board {board.image_board.name} {model} -o {fw_dir}"
    proof = rep.get("proof")
    if not isinstance(proof, dict):
        raise FlashError(f"{fw_dir} holds an unproved image (build.json has no host proof): {rebuild}")
    if proof.get("mismatches") != 0 or not proof.get("compared"):
        raise FlashError(f"{fw_dir}: the host proof did not pass ({proof.get('mismatches')} mismatches of "
                         f"{proof.get('compared')} inputs): {rebuild}")
    if proof.get("kernels") != rep.get("kernels"):
        raise FlashError(f"{fw_dir}: the proof is of {proof.get('kernels')} kernels but the image has "
                         f"{rep.get('kernels')}: {rebuild}")
    src = fw_dir / "src"
    names = sorted(proof.get("sources") or {})
    if any(Path(n).name != n or n in (".", "..") for n in names):
        raise FlashError(f"{fw_dir}/build.json: the proof names sources outside {src}: {rebuild}")
    try:
        same = bool(names) and sources_sha256(src, names) == proof.get("sha256")
    except OSError:
        same = False
    if not same:
        edited = [n for n in names if not (src / n).is_file() or file_sha256(src / n) != proof["sources"][n]]
        raise FlashError(f"{src} differs from the sources proved at build time "
                         f"({', '.join(edited) or 'the recorded hash'}): {rebuild}")
    hashes = rep.get("sha256") or {}
    if not files:
        raise FlashError(f"{fw_dir}: build.json lists no image files: {rebuild}")
    for kind, path in files.items():
        if kind not in hashes:
            raise FlashError(f"build.json records no SHA-256 for {path}: {rebuild}")
        if file_sha256(path) != hashes[kind]:
            raise FlashError(f"{path} is not the image bitgen build wrote (its SHA-256 differs): {rebuild}")


def candidates(board: Board, files: dict[str, Path]) -> list[Candidate]:
    tool = board.flash_tool or {}
    out = []
    for spec in tool.get("flashers", []):
        name = spec["name"]
        kind = spec.get("kind", "command")
        if kind == "pyocd":
            ok = importlib.util.find_spec("pyocd") is not None
            s = dict(spec, _image=str(files.get("elf", "")))
            out.append(Candidate(name, s, None, ok, "" if ok else f"not installed ({spec.get('install', 'pip install pyocd')})"))
            continue
        argv, missing_env, missing_file = [], None, None
        for a in spec["command"]:
            def env(m: re.Match) -> str:
                nonlocal missing_env
                v = os.environ.get(m.group(1))
                if v is None:
                    missing_env = m.group(1)
                return v or ""
            a = re.sub(r"\{env:(\w+)\}", env, a)
            try:
                argv.append(a.format(**{k: str(v) for k, v in files.items()}))
            except KeyError as e:  # the flasher writes an image kind this build has not
                missing_file = e.args[0]
                argv.append(a)
        exe = _which(argv[0])
        if missing_file:
            why = f"the build has no {missing_file} image"
        elif exe is None:
            why = f"'{argv[0]}' not found ({spec.get('install', 'not installed')})"
        elif missing_env:
            why = f"environment variable {missing_env} is not set ({spec.get('install', '')})"
        else:
            why = ""
        if exe:
            argv[0] = exe
        out.append(Candidate(name, spec, argv, not why, why))
    return out


def _pyocd_program(c: Candidate) -> None:
    from pyocd.core.helpers import ConnectHelper
    from pyocd.flash.file_programmer import FileProgrammer

    session = ConnectHelper.session_with_chosen_probe(
        blocking=False, return_first=True, options={"target_override": c.spec["target"]})
    if session is None:
        raise FlashError("no debug probe found")
    with session:
        FileProgrammer(session).program(c.spec["_image"])
        session.target.reset()


def flash(board: Board, fw_dir: str | Path, *, dry_run: bool = False,
          say: Callable[[str], None] = print) -> Candidate | None:
    """Flash the build in ``fw_dir`` to ``board``; returns the flasher that succeeded (None for a
    dry run or an emulated board)."""
    if board.is_emulated:
        files = find_firmware(board, fw_dir)
        say(f"{board.name} is emulated: nothing to flash; bitgen run --board {board.name} loads "
            f"{files.get('bin') or files.get('elf')} itself")
        return None
    if not board.flash_tool:
        raise FlashError(f"board {board.name} lists no flasher in its board.toml")
    files = find_firmware(board, fw_dir)
    cands = candidates(board, files)
    probe = board.flash_tool.get("probe", "a debug probe")
    if dry_run:
        say(f"{board.name}: flashing needs {probe}; flashers in order of preference:")
        for c in cands:
            state = "available" if c.available else f"unavailable: {c.why}"
            say(f"  {c.name:<11} [{state}]\n      {c.describe()}")
        return None
    tried = []
    for c in cands:
        if not c.available:
            tried.append(f"{c.name} ({c.why})")
            continue
        say(f"flashing with {c.name}: {c.describe()}")
        try:
            if c.argv is None:
                _pyocd_program(c)
            else:
                r = subprocess.run(c.argv, capture_output=True, text=True, timeout=FLASH_TIMEOUT_S)
                if r.returncode != 0:
                    out = (r.stderr.strip() or r.stdout.strip() or f"exit status {r.returncode}").splitlines()
                    raise FlashError(out[-1])
            return c
        except subprocess.TimeoutExpired:
            tried.append(f"{c.name} (no answer within {FLASH_TIMEOUT_S} s)")
        except FlashError as e:
            tried.append(f"{c.name} failed: {e}")
        except Exception as e:  # pyOCD raises its own types for probe and target problems
            tried.append(f"{c.name} failed: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}")
    raise FlashError(f"could not flash {board.name} (needs {probe}); tried: " + "; ".join(tried))
