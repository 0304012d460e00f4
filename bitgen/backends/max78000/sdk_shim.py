"""The few MSDK calls of izer's generated firmware (``cnn.c``, ``main.c``), written for bitgen
from the MSDK's documented register map: ``shim/mxc.h`` and ``shim/gcfr_regs.h`` (register
structs at the part's addresses) and ``shim/shim.c`` (clocks through the GCR, the CNN interrupt
by polling its done flag, ``printf`` into ``bg_console``). With them and bitgen's MAX78000
start-up code, the firmware ADI's tool writes runs on ``max78000-sim``: how bitgen checks that
its emulated accelerator computes what izer's simulation says the hardware computes."""
from pathlib import Path

DIR = Path(__file__).resolve().parent / "shim"  # the include folder; shim.c is its one source
SOURCES = [DIR / "shim.c"]
