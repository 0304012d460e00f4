"""bitgen: pure-integer embedded code generation for tiny quantized networks."""
__version__ = "0.1.0"

from .modelfile import load, save  # noqa: E402,F401
