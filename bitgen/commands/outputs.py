"""Where commands write (-o, --json, --md, --keep): one check, made before any work is done, and
one way to write, so that a bad path is a one-line error and never a traceback after minutes.

A file destination must not be a folder, and its folder must be one that can be created (no part
of the path is a file) and written; ``-`` means standard output where the option allows it
(``--json -``). A folder destination must not be a file (``/dev/null`` included) and must be one
that can be created and written.
"""
from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path
from typing import Any

from ..errors import BitgenError

STDOUT = "-"


class OutputError(BitgenError):
    pass


def _probe_dir(folder: Path, option: str, shown: str) -> None:
    """Prove that ``folder`` can be created (or exists) and be written in, by doing it: the
    folders it needed are created and removed again, and a file is created there and removed.
    (Permission bits alone do not say: root may write anywhere but in /proc.)"""
    missing = []
    p = folder
    while not p.exists() and p != p.parent:
        missing.append(p)
        p = p.parent
    if not p.is_dir():
        raise OutputError(f"{option} {shown}: {p} is not a folder")
    made = []
    try:
        for d in reversed(missing):
            d.mkdir()
            made.append(d)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as e:
        raise OutputError(f"{option} {shown}: cannot write in {folder} ({e.strerror or e})") from None
    finally:
        for d in reversed(made):
            try:
                d.rmdir()
            except OSError:
                pass


def output_file(value: str | None, option: str, *, stdout: bool = False) -> Path | str | None:
    """A checked file destination (a Path, STDOUT when ``stdout`` allows ``-``, or None)."""
    if value is None:
        return None
    if value == STDOUT and stdout:
        return STDOUT
    if not value.strip():
        raise OutputError(f"{option}: an empty path")
    path = Path(value)
    if path.is_dir():
        raise OutputError(f"{option} {value}: is a folder, expected a file name")
    if path.exists() and not path.is_file():  # /dev/null, a terminal: written as they are
        return path
    _probe_dir(path.parent, option, value)
    if path.exists():
        try:
            with open(path, "ab"):  # appends nothing: the file stays as it is until written
                pass
        except OSError as e:
            raise OutputError(f"{option} {value}: cannot write it ({e.strerror or e})") from None
    return path


def output_dir(value: str | Path | None, option: str) -> Path | None:
    """A checked folder destination (or None)."""
    if value is None:
        return None
    if not str(value).strip():
        raise OutputError(f"{option}: an empty path")
    if str(value) == STDOUT:
        raise OutputError(f"{option} -: standard output cannot hold a folder of files; give a folder name "
                          "(./- if you mean it)")
    path = Path(value)
    if path.exists() and not path.is_dir():
        raise OutputError(f"{option} {value}: is a file, expected a folder")
    _probe_dir(path, option, str(value))
    return path


def write_text(dest: Path | str | None, text: str, option: str) -> None:
    """Write to a destination from :func:`output_file` (nothing for None)."""
    if dest is None:
        return
    if dest == STDOUT:
        sys.stdout.write(text)
        sys.stdout.flush()
        return
    try:
        Path(dest).parent.mkdir(parents=True, exist_ok=True)
        Path(dest).write_text(text)
    except OSError as e:  # the file system changed since the check, or is full
        raise OutputError(f"{option} {dest}: cannot write it ({e.strerror or e})") from None


def write_json(dest: Path | str | None, report: dict[str, Any], option: str = "--json") -> None:
    write_text(dest, json.dumps(report, indent=2) + "\n", option)


def make_dir(path: Path, option: str) -> Path:
    """Create a folder from :func:`output_dir` (the file system may have changed since)."""
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise OutputError(f"{option} {path}: cannot create it ({e.strerror or e})") from None
    return path
