"""What bitgen says on stderr besides its one-line errors: notes and progress.

* :func:`note`: a remark about input that worked (an old option spelling, a fallback taken).
  Notes are held and printed when the command has finished, so that a command that fails says
  exactly one line: its error.
* :func:`progress`: a bar for a long step (check, bench, run, train). On a terminal it is tqdm's
  bar; where stderr is a file or a pipe (CI logs) it is a plain line every
  :data:`LINE_INTERVAL_S` seconds and one when a step that printed ends, never a stream of
  carriage returns.

``-q`` (:func:`set_quiet`) silences both.
"""
from __future__ import annotations

import sys
import time
from typing import Any, Iterable, Iterator

LINE_INTERVAL_S = 10.0

_quiet = False
_notes: list[str] = []


def set_quiet(quiet: bool) -> None:
    global _quiet
    _quiet = bool(quiet)


def quiet() -> bool:
    return _quiet


def note(text: str) -> None:
    """Hold a note for the end of the command (dropped when quiet)."""
    if not _quiet:
        _notes.append(text)


def take_notes() -> list[str]:
    """The notes held so far, removed."""
    out = list(_notes)
    _notes.clear()
    return out


class _Silent:
    def __init__(self, iterable: Iterable[Any] | None = None):
        self.iterable = iterable

    def __iter__(self) -> Iterator[Any]:
        return iter(self.iterable or ())

    def update(self, n: int = 1) -> None:
        pass

    def set_postfix(self, **kw: Any) -> None:
        pass

    def write(self, text: str) -> None:
        print(text, file=sys.stderr)

    def close(self) -> None:
        pass

    def __enter__(self) -> "_Silent":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


class _Lines(_Silent):
    """Progress as plain lines, at most one every LINE_INTERVAL_S seconds."""

    def __init__(self, iterable: Iterable[Any] | None, total: int | None, desc: str, unit: str):
        super().__init__(iterable)
        self.total = total if total is not None else (len(iterable) if hasattr(iterable, "__len__") else None)
        self.desc, self.unit = desc, unit
        self.n = 0
        self.postfix = ""
        self.start = self.last = time.monotonic()
        self.printed = False

    def __iter__(self) -> Iterator[Any]:
        for item in self.iterable or ():
            yield item
            self.update(1)
        self.close()

    def _line(self, final: bool = False) -> None:
        of = f"/{self.total}" if self.total is not None else ""
        took = f" in {time.monotonic() - self.start:.0f} s" if final else ""
        print(f"{self.desc}: {self.n}{of} {self.unit}s{took}{self.postfix}", file=sys.stderr, flush=True)
        self.printed = True

    def update(self, n: int = 1) -> None:
        self.n += n
        now = time.monotonic()
        if now - self.last >= LINE_INTERVAL_S:
            self.last = now
            self._line()

    def set_postfix(self, **kw: Any) -> None:
        self.postfix = "".join(f"  {k} {v}" for k, v in kw.items() if k != "refresh")

    def close(self) -> None:
        if self.printed:
            self._line(final=True)
            self.printed = False


def progress(iterable: Iterable[Any] | None = None, *, total: int | None = None, desc: str = "",
             unit: str = "item", enabled: bool = True):
    """A progress bar over ``iterable`` (or updated by hand up to ``total``): tqdm on a terminal,
    plain lines elsewhere, nothing when quiet or not ``enabled``. Supports iteration,
    ``update(n)``, ``set_postfix(**values)``, ``write(text)`` and ``close()``."""
    if _quiet or not enabled:
        return _Silent(iterable)
    if sys.stderr.isatty():
        from tqdm import tqdm

        return tqdm(iterable, total=total, desc=desc, unit=unit, file=sys.stderr, dynamic_ncols=True)
    return _Lines(iterable, total, desc, unit)
