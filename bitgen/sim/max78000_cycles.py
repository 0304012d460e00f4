"""Accelerator cycles of one MAX78000 CNN layer: the latency model ADI's synthesis tool prints
(ai8x-synthesis ``izer/latency.py``, written from its description of the state machine), applied
to a layer decoded from the registers (:class:`bitgen.sim.max78000_layers.Layer`).

The model counts clock cycles of the CNN clock (50 MHz in ADI's examples: PCLK, divider 1):

* each input fetch costs a read state and a TRAM write, per pass and operand, and a pooled
  pixel reads every pixel of its window (``pool_h * pool_w`` reads);
* a row of the (pooled) image is fetched once; after the first ``kernel - 1 - pad`` rows each
  new row also convolves, producing ``passes * out_cols * out_channels`` outputs (one output
  channel per cycle per pass, every lane of a pass in parallel);
* padding rows and columns cost a fetch cycle without data; a flattening layer one more cycle;
* a passthrough layer costs, per pooled pixel, its fetches plus one write per pass and time slot.

It is a model, not a measurement: bitgen reports it as ``cnn_cycles``, beside the exact
instruction counts of the Cortex-M4 side. tests/test_max78000.py checks that it gives izer's own
estimate (its log.txt) for every layer of the networks it runs.
"""
from __future__ import annotations


def layer_cycles(ly) -> int:
    """Cycles of decoded layer ``ly`` (see the module docstring)."""
    rd, tram, wr = 1, 1, 1
    passes, ops = ly.passes, ly.operands
    kh = ly.kernel if ly.operation == "conv1d" else (3 if ly.kernel == 9 else 1)
    kw = 1 if ly.operation == "conv1d" or ly.kernel == 1 else 3
    rows, cols = ly.rows, ly.cols
    ph, pw = ly.pool_size if ly.pool != "none" else (1, 1)
    s = ly.stride if ly.operation != "convtranspose2d" else 1
    prow = (rows - ph) // s + 1
    pcol = (cols - pw) // s + 1 if ly.operation != "conv1d" else 1
    if ly.operation == "convtranspose2d":  # the stuffed image
        prow, pcol = 2 * rows, 2 * cols
    rpad, cpad = ly.pad
    if ly.pool_first or ops == 1:
        pad_fetch = passes * ops * (rd + tram)
        data_fetch = passes * ops * (ph * pw * rd + tram)
        mult = 1
    else:
        pad_fetch = passes * (rd + tram)
        data_fetch = passes * (ops * rd * ph * pw + tram)
        mult = passes
    if ly.operation == "passthrough":
        slots = max(1, -(-bin(ly.procs).count("1") // 4))
        return prow * pcol * (data_fetch + passes * slots)
    out_channels = ly.outputs
    out_cols = pcol + 2 * cpad - kw + 1
    col_pad = 2 * cpad * (pad_fetch + wr)
    first_pad_row = col_pad + mult * pcol * (pad_fetch + wr)
    row_no_conv = col_pad + mult * pcol * (data_fetch + wr)
    left = cpad * (pad_fetch + wr)
    right = pad_fetch * cpad
    row_conv = left + mult * (kw - 1 - cpad) * (data_fetch + wr) + mult * (out_cols - cpad) * data_fetch + right
    bottom_row = left + mult * (kw - 1 - cpad) * (pad_fetch + wr) + mult * (out_cols - cpad) * pad_fetch + right
    out_row = passes * out_cols * out_channels + (out_channels if out_channels == 1 and passes == 1 else 0)
    warm = max(kh - 1 - rpad, 0)
    return (int(ly.flatten) + rpad * first_pad_row + warm * row_no_conv + (row_conv + out_row) * (prow - warm)
            + rpad * (bottom_row + out_row))
