"""Boards: one folder per board under ``boards/``, described by its ``board.toml``.

A board file says how to build an image (toolchain prefix, flags, sources, linker script), what
the part offers (memory budgets, clock, UART, cycle counter), how to flash it, and, for emulated
boards, how to run it. Adding a board is adding a folder: nothing here names a board.

Three kinds of board:

* hardware boards (``ch32v003``, ``max78000``): built, flashed, reached on a serial port;
* emulated boards that run another board's image byte for byte (``firmware = "ch32v003"``;
  ``ch32v003-sim``, ``max78000-sim``), on an emulator described in ``[emulator]``;
* boards that are their own emulated target (``mps2-an386`` under QEMU, ``host`` natively).
"""
from __future__ import annotations

import copy
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import BitgenError
from ..paths import BOARDS

try:  # Python 3.11+
    import tomllib
except ModuleNotFoundError:  # pragma: no cover - Python 3.10
    import tomli as tomllib  # type: ignore[no-redef]


class BoardError(BitgenError):
    pass


@dataclass(frozen=True)
class Region:
    origin: int
    size: int

    @property
    def end(self) -> int:
        return self.origin + self.size

    def __contains__(self, addr: int) -> bool:
        return self.origin <= addr < self.end


@dataclass
class Board:
    name: str
    path: Path
    description: str
    spec: dict[str, Any] = field(repr=False)
    image: "Board | None" = field(default=None, repr=False)  # the image board, where not read from boards/

    # ------------------------------------------------------------------ identity
    @property
    def firmware(self) -> str:
        """Name of the board whose image this board runs (itself for most boards)."""
        return self.spec.get("firmware", self.name)

    @property
    def image_board(self) -> "Board":
        if self.image is not None:
            return self.image
        return self if self.firmware == self.name else get(self.firmware)

    @property
    def emulator(self) -> dict[str, Any] | None:
        return self.spec.get("emulator")

    @property
    def is_emulated(self) -> bool:
        return self.emulator is not None

    # --------------------------------------------------------- part description
    def _own(self, key: str, default: Any = None) -> Any:
        """A key of this board, else of the board whose image it runs."""
        if key in self.spec:
            return self.spec[key]
        if self.firmware != self.name:
            return self.image_board._own(key, default)
        return default

    @property
    def arch(self) -> str:
        return self._own("arch", "")

    @property
    def kernels(self) -> list[str]:
        """The C kernel sets for this part (bitgen.backends.c.targets), fastest first: bitgen
        build takes the first whose image fits the budget."""
        k = self._own("kernels", "generic")
        return [str(v) for v in (k if isinstance(k, list) else [k])]

    @property
    def clock_hz(self) -> int:
        return int(self._own("clock_hz", 0))

    @property
    def toolchain(self) -> dict[str, Any]:
        return self.image_board.spec.get("toolchain", {})

    @property
    def memory(self) -> dict[str, Any]:
        return self._own("memory", {}) or {}

    @property
    def flash(self) -> Region | None:
        m = self.memory.get("flash")
        return Region(int(m["origin"]), int(m["size"])) if m else None

    @property
    def sram(self) -> Region | None:
        m = self.memory.get("sram")
        return Region(int(m["origin"]), int(m["size"])) if m else None

    @property
    def stack_bytes(self) -> int:
        return int(self.memory.get("stack", 0))

    @property
    def uart(self) -> dict[str, Any]:
        return self._own("uart", {}) or {}

    @property
    def counter(self) -> dict[str, Any]:
        return self._own("counter", {}) or {}

    @property
    def cycle_source(self) -> str:
        """What the cycles this board reports count (the emulator's word wins)."""
        if self.emulator and self.emulator.get("cycle_source"):
            return str(self.emulator["cycle_source"])
        return str(self.counter.get("description", self.counter.get("name", "unknown")))

    @property
    def flash_tool(self) -> dict[str, Any] | None:
        return self.spec.get("flash_tool")

    # ------------------------------------------------------------- toolchain
    def tool(self, name: str) -> str:
        """Full name of a toolchain program (gcc, objcopy, size, nm, objdump)."""
        tc = self.toolchain
        if name == "gcc" and tc.get("cc"):
            return str(tc["cc"])
        return f"{tc.get('prefix', '')}{name}"

    def require_toolchain(self) -> str:
        cc = self.tool("gcc")
        if shutil.which(cc) is None:
            pkg = self.toolchain.get("package")
            hint = f" (Debian: apt-get install {pkg})" if pkg else ""
            raise BoardError(f"board {self.name} needs the compiler '{cc}', not found on PATH{hint}")
        return cc


def _load(path: Path) -> Board:
    try:
        spec = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as e:
        raise BoardError(f"{path}: {e}") from None
    name = spec.get("name", path.parent.name)
    if name != path.parent.name:
        raise BoardError(f"{path}: name '{name}' differs from its folder '{path.parent.name}'")
    return Board(name=name, path=path.parent, description=spec.get("description", name), spec=spec)


def available(root: Path = BOARDS) -> list[str]:
    return sorted(p.parent.name for p in root.glob("*/board.toml"))


def get(name: str, root: Path = BOARDS) -> Board:
    path = root / str(name) / "board.toml"
    if name not in available(root) or not path.is_file():  # a name, never a path such as x/../y
        raise BoardError(f"unknown board '{name}' (available: {', '.join(available(root))})")
    board = _load(path)
    if board.firmware != board.name and not (root / board.firmware / "board.toml").is_file():
        raise BoardError(f"board {name} runs the image of '{board.firmware}', which does not exist")
    return board


def enlarged(board: Board, scale: int) -> Board:
    """The emulated ``board`` with ``scale`` times the part's flash and SRAM, in the image it
    builds (the budgets of its link) and in its emulator's memory map: an image that does not fit
    the part can be run and its instructions counted, never deployed. Only the two regions
    grow; start-up code, peripherals and the stack reserve stay the part's."""
    if not board.is_emulated or board.image_board.flash is None or board.image_board.sram is None:
        raise BoardError(f"board {board.name}: only an emulated board with flash and SRAM budgets can be enlarged")
    if scale < 1:
        raise BoardError(f"enlarged: scale must be 1 or more, not {scale}")
    img = board.image_board
    img_spec = copy.deepcopy(img.spec)
    for region in ("flash", "sram"):
        img_spec["memory"][region]["size"] = int(img_spec["memory"][region]["size"]) * scale
    spec = copy.deepcopy(board.spec)
    regions = {r["name"]: r for r in spec["emulator"].get("memory", [])}
    for region in ("flash", "sram"):
        if region not in regions:
            raise BoardError(f"board {board.name}: its emulator has no '{region}' region to enlarge")
        regions[region]["size"] = int(regions[region]["size"]) * scale
    big_img = Board(name=img.name, path=img.path, description=f"{img.description}, memory x{scale}", spec=img_spec)
    if img is board:
        spec["memory"] = img_spec["memory"]
        return Board(name=board.name, path=board.path, description=big_img.description, spec=spec)
    return Board(name=board.name, path=board.path, description=f"{board.description}, memory x{scale}", spec=spec,
                 image=big_img)
