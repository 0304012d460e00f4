"""The C instruction hook (hooks.c), compiled once with the system C compiler and cached."""
from __future__ import annotations

import ctypes
import hashlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from ..errors import BitgenError

HOOKS_C = Path(__file__).with_name("hooks.c")
MAX_RANGES = 4


class SimBuildError(BitgenError):
    pass


class Range(ctypes.Structure):
    _fields_ = [("base", ctypes.c_uint64), ("size", ctypes.c_uint64), ("host", ctypes.c_void_p)]


class State(ctypes.Structure):
    """Mirror of bg_sim_state_t in hooks.c."""

    _fields_ = [
        ("count", ctypes.c_uint64),
        ("stop", ctypes.c_void_p),
        ("forbid_rv_m", ctypes.c_uint32),
        ("n_ranges", ctypes.c_uint32),
        ("exec", Range * MAX_RANGES),
        ("fault", ctypes.c_uint32),
        ("fault_insn", ctypes.c_uint32),
        ("fault_pc", ctypes.c_uint64),
    ]


FAULT_FETCH, FAULT_RV_M = 1, 2
_lib: ctypes.CDLL | None = None


def cache_dir() -> Path:
    root = os.environ.get("BITGEN_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "bitgen")
    return Path(root)


def library() -> ctypes.CDLL:
    global _lib
    if _lib is not None:
        return _lib
    src = HOOKS_C.read_bytes()
    key = hashlib.sha256(src).hexdigest()[:16]
    so = cache_dir() / f"sim-hooks-{key}.so"
    if not so.exists():
        cc = os.environ.get("CC", "cc")
        if shutil.which(cc) is None:
            raise SimBuildError(f"the emulated boards need a C compiler ('{cc}') once, to build "
                                f"their instruction counter; install gcc")
        so.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=so.parent) as tmp:
            out = Path(tmp) / so.name
            r = subprocess.run([cc, "-O2", "-shared", "-fPIC", str(HOOKS_C), "-o", str(out)],
                               capture_output=True, text=True)
            if r.returncode != 0:
                raise SimBuildError(f"building the emulator hook failed: {r.stderr.strip()[:500]}")
            os.replace(out, so)  # atomic: parallel test workers may race here
    _lib = ctypes.CDLL(str(so))
    return _lib
