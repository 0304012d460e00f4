"""The child side of tests/test_frontdoor.py: one case of ``bitgen.cli.main``, under limits.

A module of its own, importing nothing heavy, so that the fork server preloads it with torch and
bitgen and each case's child starts at once."""
from __future__ import annotations

import os
import resource
import signal
import sys
import traceback
from pathlib import Path


def _vm_bytes() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmSize:"):
            return int(line.split()[1]) * 1024
    return 0


def run(argv: list[str], cwd: str, out_path: str, err_path: str, limit_s: int, memory_margin: int) -> None:
    """``bitgen.cli.main(argv)`` with cwd, stdout and stderr files, a time limit (SIGALRM) and an
    address-space limit (what the process has mapped plus ``memory_margin``); never returns."""
    rc = 70
    try:
        os.chdir(cwd)
        out = open(out_path, "w", buffering=1)
        err = open(err_path, "w", buffering=1)
        os.dup2(out.fileno(), 1)  # compilers and tools write to the same files
        os.dup2(err.fileno(), 2)
        sys.stdout, sys.stderr = out, err
        resource.setrlimit(resource.RLIMIT_AS, (_vm_bytes() + memory_margin,) * 2)
        signal.signal(signal.SIGALRM, signal.SIG_DFL)
        signal.alarm(limit_s)
        from bitgen.cli import main

        try:
            rc = int(main(list(argv)) or 0)
        except SystemExit as e:  # argparse
            rc = e.code if isinstance(e.code, int) else 1
        except BaseException:  # escaped: a bug, shown as the traceback it is
            traceback.print_exc()
            rc = 70
        out.flush()
        err.flush()
    finally:
        os._exit(rc)
