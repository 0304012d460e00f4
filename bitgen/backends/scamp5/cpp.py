"""A :class:`~.program.Program` as C++ against the SCAMP-5d kernel API.

Each section becomes a function (``NAME_init``, ``NAME_reset``, ``NAME_frame``,
``NAME_readout``); runs of kernel instructions go inside ``scamp5_kernel_begin()`` /
``scamp5_kernel_end()``, controller functions (``scamp5_in``, ``scamp5_load_pattern``, ...)
between them. A frame arrives from the host as 8 bit planes drawn into a DREG
(``NAME_upload_bit``), copied into every tile, as PixelRNN loads its dataset frames. The file
is compiled by a SCAMP-5 owner with the vendor's toolchain; here it is checked for syntax only
where a C++ compiler is present (the API header is not public).
"""
from __future__ import annotations

from . import isa
from .program import Program

KERNEL_KINDS = (isa.ANALOG, isa.FLAG, isa.DIGITAL)


def _arg(a) -> str:
    return str(a)


def _call(ins: dict, name: str) -> str:
    op, a = ins["op"], ins["args"]
    if op == "load_frame_bit":
        return f"{name}_upload_bit({a[0]}, frame, {a[1]});"
    if op == "scamp5_scan_areg":
        return f"scamp5_scan_areg({a[0]}, out, {', '.join(map(str, a[1:7]))});"
    if op == "scamp5_scan_dreg":
        return f"{name}_scan_bits({a[0]}, out, {', '.join(map(str, a[1:7]))});"
    if op == "scamp5_flood":
        return f"scamp5_flood({a[0]}, {a[1]}, {a[2]}, {a[3]});"
    return f"{op}({', '.join(_arg(v) for v in a)});"


def section(code: list[dict], name: str) -> list[str]:
    lines, in_kernel, layer = [], False, None
    for ins in code:
        if ins.get("layer") != layer:
            layer = ins.get("layer")
            if in_kernel:
                lines.append("    scamp5_kernel_end();")
                in_kernel = False
            lines.append(f"    // {layer}")
        kernel = isa.SPECS[ins["op"]].kind in KERNEL_KINDS
        if kernel and not in_kernel:
            lines.append("    scamp5_kernel_begin();")
            in_kernel = True
        elif not kernel and in_kernel:
            lines.append("    scamp5_kernel_end();")
            in_kernel = False
        lines.append(("        " if kernel else "    ") + _call(ins, name))
    if in_kernel:
        lines.append("    scamp5_kernel_end();")
    return lines


def render(p: Program, name: str, model_hash: str) -> str:
    h, w = p.meta["input"]["shape"]
    gr, gc = p.meta["input"]["tiles"]
    ro = p.meta["readout"]
    rr, rc = ro["shape"]
    out = [
        f"// {name}: a SCAMP-5d program written by bitgen (model {model_hash[:16]}).",
        "// Do not edit: regenerate with `bitgen emit --target scamp5`. program.json holds the same",
        "// instructions; bitgen's simulator runs them. Orientation conventions: see bitgen/backends/scamp5/isa.py.",
        "#include <scamp5.hpp>",
        "#include <cstdint>",
        "",
        f"// A frame: {h}x{w} int8 values, uploaded into each of {gr}x{gc} tiles as bit planes.",
        f"static void {name}_upload_bit(dreg_t target, const int8_t *frame, int bit) {{",
        "    scamp5_kernel_begin();",
        "        CLR(target);",
        "    scamp5_kernel_end();",
        "    scamp5_draw_begin(target);",
        f"    for (int tr = 0; tr < {gr}; tr++)",
        f"        for (int tc = 0; tc < {gc}; tc++)",
        f"            for (int r = 0; r < {h}; r++)",
        f"                for (int c = 0; c < {w}; c++)",
        f"                    if (((uint8_t)frame[r * {w} + c] >> bit) & 1)",
        f"                        scamp5_draw_pixel(tr * {h} + r, tc * {w} + c);",
        "    scamp5_draw_end();",
        "}",
        "",
    ]
    if ro["kind"] == "bits":
        out += [f"static void {name}_scan_bits(dreg_t d, uint8_t *out, int r0, int c0, int r1, int c1, int rs, int cs) {{",
                "    static uint8_t rows[256 * 32];",
                "    scamp5_scan_dreg(d, rows, 0, 255);",
                "    int n = 0;",
                "    for (int r = r0; r <= r1; r += rs)",
                "        for (int c = c0; c <= c1; c += cs, n++)",
                "            out[n] = (rows[r * 32 + c / 8] >> (c % 8)) & 1;",
                "}", ""]
    docs = {
        "init": "once after power-up: the weights stored in the pixels",
        "reset": "at the start of every sequence",
        "frame": f"every frame (frame: {h}x{w} int8, row-major)",
        "readout": f"after the last frame of a sequence: {rr}x{rc} "
                   + ("8-bit values (divide by " + str(ro.get('divide', 1)) + " for the model's units)"
                      if ro["kind"] == "values" else "bits (1: +1)") + " into out",
    }
    sig = {"init": "void", "reset": "void", "frame": "const int8_t *frame", "readout": "uint8_t *out"}
    for s in ("init", "reset", "frame", "readout"):
        out.append(f"// {docs[s]}")
        out.append(f"void {name}_{s}({sig[s]}) {{")
        out += section(p.sections[s], name) or ["    // (nothing)"]
        out.append("}")
        out.append("")
    return "\n".join(out)
