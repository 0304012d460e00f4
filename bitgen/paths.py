"""Where the non-Python parts of bitgen live (the repository layout of the design card)."""
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
C_RUNTIME = ROOT / "c_runtime"
TEMPLATES = ROOT / "templates"
BOARDS = ROOT / "boards"
