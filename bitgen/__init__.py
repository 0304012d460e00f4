"""bitgen: pure-integer embedded code generation for tiny quantized networks."""
__version__ = "0.1.0"

from .modelfile import load, save  # noqa: E402,F401


def quantize(module, calib_data, **options):
    """Post-training quantization of a float ``torch.nn`` model: see :func:`bitgen.ptq.quantize`."""
    from .ptq import quantize as _quantize

    return _quantize(module, calib_data, **options)
