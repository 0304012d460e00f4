"""The network description ADI's synthesis tool (izer) reads: a YAML file with one entry per
accelerator layer (``../shared/reference/max78000.md`` section 3; ai8x-synthesis's README,
"Network Loader Configuration Language").

:func:`parse` reads one into :class:`LayerSpec` records with izer's defaults made explicit
(``pad`` 1 except for passthrough, element-wise and linear layers; ``pool_stride`` 1; the 2-D
kernel 3x3 and the 1-D kernel 9; ...), and lists the keys of each layer that bitgen does not
support (streaming, depth-wise groups, MAX78002 options, ...), so a caller can refuse a network
with the reason.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import yaml

from ...errors import BitgenError


class NetworkYamlError(BitgenError):
    pass


# Keys izer accepts per layer (yamlcfg.py); the ones bitgen handles, and the ones it refuses.
SUPPORTED_KEYS = {
    "processors", "output_processors", "in_offset", "out_offset", "op", "operation", "operator", "convolution",
    "eltwise", "operands", "pool_first", "kernel_size", "pad", "stride", "max_pool", "avg_pool", "pool_stride",
    "activate", "activation", "quantization", "output_shift", "output_width", "data_format", "flatten",
    "in_sequences", "write_gap", "dilation", "output_pad", "name", "in_channels", "sequence",
}
REFUSED_KEYS = {
    "streaming": "streaming (FIFO input)", "groups": "depth-wise/grouped convolution",
    "conv_groups": "depth-wise/grouped convolution", "calcx4": "calcx4 (MAX78002)",
    "readahead": "readahead (MAX78002)", "tcalc": "tcalc (MAX78002)", "bypass": "bypass",
    "next_sequence": "next_sequence (layer links)", "simulated_sequence": "simulated_sequence",
    "snoop_sequence": "snoop", "in_skip": "in_skip/read_gap", "read_gap": "in_skip/read_gap",
    "in_channel_skip": "in_channel_skip", "in_crop": "in_crop", "buffer_shift": "data buffers",
    "buffer_insert": "data buffers", "weight_source": "weight_source", "bias_group": "bias_group",
    "bias_quadrant": "bias_group", "pool_dilation": "pool_dilation", "in_dim": "in_dim (1-D/2-D reshapes)",
    "out_channels": "out_channels override", "output": "intermediate output layers",
}
GLOBAL_REFUSED = {"snoop": "snoop", "data_buffer": "data buffers", "unload": "custom unload",
                  "output_map": "output_map"}

OPERATIONS = {
    "conv2d": ("conv2d", "none"), "conv1d": ("conv1d", "none"), "convtranspose2d": ("convtranspose2d", "none"),
    "none": ("passthrough", "none"), "passthrough": ("passthrough", "none"),
    "linear": ("linear", "none"), "fc": ("linear", "none"), "mlp": ("linear", "none"),
    "add": ("passthrough", "add"), "sub": ("passthrough", "sub"), "or": ("passthrough", "or"),
    "bitwiseor": ("passthrough", "or"), "bitwise_or": ("passthrough", "or"),
    "xor": ("passthrough", "xor"), "bitwisexor": ("passthrough", "xor"), "bitwise_xor": ("passthrough", "xor"),
}


@dataclass
class LayerSpec:
    """One layer of the YAML, izer's defaults filled in."""

    index: int
    processors: int
    output_processors: int | None = None
    in_offset: int | None = None
    out_offset: int = 0
    operation: str = "conv2d"  # conv2d, conv1d, convtranspose2d, linear, passthrough
    eltwise: str = "none"
    operands: int = 1
    pool_first: bool = True
    kernel_size: int = 3  # square 2-D kernels, or the 1-D length
    pad: int = 1
    stride: int = 1
    pool: str = "none"
    pool_size: tuple[int, int] = (1, 1)
    pool_stride: tuple[int, int] = (1, 1)
    activation: str = "none"
    quantization: int = 8
    quantization_given: bool = False  # False: a checkpoint's weight_bits decide (izer's rule)
    output_shift: int | None = None  # None: the checkpoint's (0 for `arch: test`)
    output_width: int = 8
    chw: bool = False
    flatten: bool = False
    in_sequences: list[int] | None = None  # -1: the network input
    write_gap: int = 0
    dilation: int = 1
    output_pad: int = 0
    in_channels: int | None = None
    name: str | None = None
    unsupported: list[str] = field(default_factory=list)

    @property
    def has_weights(self) -> bool:
        return self.operation != "passthrough"


@dataclass
class NetworkSpec:
    arch: str
    dataset: str
    layers: list[LayerSpec]
    weights: str | None = None  # `arch: test` only: the sample weight file's name
    bias: str | None = None
    unsupported: list[str] = field(default_factory=list)  # network-wide

    def refusals(self) -> list[str]:
        """Why bitgen cannot take this network (empty: it can)."""
        out = list(self.unsupported)
        for ly in self.layers:
            out += [f"layer {ly.index}: {u}" for u in ly.unsupported]
        return out


def _hex(v: Any, what: str) -> int:
    if isinstance(v, str):
        try:
            return int(v.replace(".", "").replace("_", ""), 16)
        except ValueError:
            raise NetworkYamlError(f"{what} '{v}' is not a hexadecimal number") from None
    if not isinstance(v, int):
        raise NetworkYamlError(f"{what} must be an integer, got {v!r}")
    return v


def _pair(v: Any) -> tuple[int, int]:
    if isinstance(v, list):
        return (int(v[0]), int(v[1]))
    return (int(v), int(v))


def parse(text: str, source: str = "network YAML") -> NetworkSpec:
    """The layers of an izer network description (raises NetworkYamlError on what izer refuses)."""
    try:
        cfg = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise NetworkYamlError(f"{source}: not valid YAML ({str(e).splitlines()[0]})") from None
    if not isinstance(cfg, dict) or "layers" not in cfg or "arch" not in cfg or "dataset" not in cfg:
        raise NetworkYamlError(f"{source}: an izer network description has `arch`, `dataset` and `layers`")
    net = NetworkSpec(arch=str(cfg["arch"]), dataset=str(cfg["dataset"]), layers=[],
                      weights=cfg.get("weights"), bias=cfg.get("bias"))
    net.unsupported = [why for k, why in GLOBAL_REFUSED.items() if k in cfg]
    names: dict[str, int] = {}
    for i, d in enumerate(cfg["layers"] or []):
        if not isinstance(d, dict):
            raise NetworkYamlError(f"{source}: layer {i} is not a mapping")
        unknown = set(d) - SUPPORTED_KEYS - set(REFUSED_KEYS)
        if unknown:
            raise NetworkYamlError(f"{source}: layer {i} has unknown key(s) {', '.join(sorted(unknown))}")
        if "sequence" in d and int(d["sequence"]) != i:
            raise NetworkYamlError(f"{source}: layer {i}: `sequence` out of order is not supported")
        if "processors" not in d:
            raise NetworkYamlError(f"{source}: layer {i} has no `processors`")
        ly = LayerSpec(index=i, processors=_hex(d["processors"], f"layer {i} processors"))
        ly.unsupported = sorted({why for k, why in REFUSED_KEYS.items() if k in d and _set(d[k])})
        if "output_processors" in d:
            ly.output_processors = _hex(d["output_processors"], f"layer {i} output_processors")
        if "in_offset" in d:
            ly.in_offset = _hex(d["in_offset"], f"layer {i} in_offset")
        if "out_offset" in d:
            ly.out_offset = _hex(d["out_offset"], f"layer {i} out_offset")
        keys = [k for k in ("convolution", "operation", "operator", "op") if k in d]
        if len(keys) > 1:
            raise NetworkYamlError(f"{source}: layer {i} names its operation twice ({', '.join(keys)})")
        if keys:
            name = str(d[keys[0]]).lower()
            if name not in OPERATIONS:
                raise NetworkYamlError(f"{source}: layer {i}: unknown operation '{d[keys[0]]}'")
            ly.operation, ly.eltwise = OPERATIONS[name]
            if ly.eltwise != "none":
                ly.operands = 2
        if ly.operation in ("passthrough", "linear"):
            ly.pad = 0
        if ly.operation == "linear":
            ly.kernel_size = 1
        if ly.operation == "conv1d":
            ly.kernel_size = 9
        if ly.operation == "convtranspose2d":
            ly.stride, ly.output_pad = 2, 1
        if "eltwise" in d:
            e = str(d["eltwise"]).lower()
            if e not in ("add", "sub", "or", "xor"):
                raise NetworkYamlError(f"{source}: layer {i}: unknown eltwise '{d['eltwise']}'")
            ly.eltwise, ly.operands = e, 2
        if "operands" in d:
            ly.operands = int(d["operands"])
            if ly.eltwise == "none" or not 2 <= ly.operands <= 16:
                raise NetworkYamlError(f"{source}: layer {i}: `operands` is 2..16, with an element-wise op")
        if "pool_first" in d:
            ly.pool_first = bool(d["pool_first"])
        if "kernel_size" in d:
            k = str(d["kernel_size"]).lower()
            if ly.operation in ("conv2d", "convtranspose2d"):
                if k not in ("1x1", "3x3") or (ly.operation == "convtranspose2d" and k != "3x3"):
                    raise NetworkYamlError(f"{source}: layer {i}: kernel_size '{k}' unsupported")
                ly.kernel_size = int(k[0])
            elif ly.operation == "linear":
                raise NetworkYamlError(f"{source}: layer {i}: a linear layer has no kernel_size")
            else:
                ly.kernel_size = int(k)
        if "pad" in d:
            ly.pad = int(d["pad"])
        if "stride" in d:
            s = d["stride"]
            ly.stride = int(s[0] if isinstance(s, list) else s)
        for key, kind in (("max_pool", "max"), ("avg_pool", "avg")):
            if key in d:
                ly.pool, ly.pool_size = kind, _pair(d[key])
        if "pool_stride" in d:
            ly.pool_stride = _pair(d["pool_stride"])
        act = [k for k in ("activate", "activation") if k in d]
        if act:
            a = str(d[act[0]]).lower()
            if a not in ("relu", "abs", "none"):
                raise NetworkYamlError(f"{source}: layer {i}: unknown activation '{d[act[0]]}'")
            ly.activation = a
        if "quantization" in d:
            q = d["quantization"]
            if str(q).lower() in ("bin", "binary"):
                ly.unsupported.append("binary weights (MAX78002)")
                q = 1
            if int(q) not in (1, 2, 4, 8):
                raise NetworkYamlError(f"{source}: layer {i}: quantization must be 1, 2, 4 or 8")
            ly.quantization, ly.quantization_given = int(q), True
        if "output_shift" in d:
            ly.output_shift = int(d["output_shift"])
        if "output_width" in d:
            ly.output_width = int(d["output_width"])
        if "data_format" in d:
            ly.chw = str(d["data_format"]).lower() in ("chw", "big")
        if "flatten" in d:
            ly.flatten = bool(d["flatten"])
        if "write_gap" in d:
            ly.write_gap = int(d["write_gap"])
        if "dilation" in d:
            ly.dilation = _pair(d["dilation"])[0]
        if "output_pad" in d:
            ly.output_pad = int(d["output_pad"])
        if "in_channels" in d:
            ly.in_channels = int(d["in_channels"])
        if "name" in d:
            ly.name = str(d["name"])
            names[ly.name.lower()] = i
        if "in_sequences" in d:
            seq = d["in_sequences"] if isinstance(d["in_sequences"], list) else [d["in_sequences"]]
            ly.in_sequences = list(seq)
        if ly.operation == "conv1d":  # 1-D: the second dimension is 1 throughout
            ly.pool_size = (ly.pool_size[0], 1)
            ly.pool_stride = (ly.pool_stride[0], 1)
        net.layers.append(ly)
    for ly in net.layers:  # names -> indices; "input" -> -1
        if ly.in_sequences is not None:
            seq = []
            for e in ly.in_sequences:
                if isinstance(e, str):
                    key = e.lower()
                    if key == "input":
                        seq.append(-1)
                    elif key in names:
                        seq.append(names[key])
                    else:
                        raise NetworkYamlError(f"{source}: layer {ly.index}: in_sequences names unknown layer '{e}'")
                else:
                    seq.append(int(e))
            ly.in_sequences = seq
    if not net.layers:
        raise NetworkYamlError(f"{source}: no layers")
    return net


def _set(v: Any) -> bool:
    """Whether a refused key actually asks for the feature (``streaming: false`` does not)."""
    return not (v is False or v == 0 or v is None or (isinstance(v, str) and v.lower() in ("false", "none")))
