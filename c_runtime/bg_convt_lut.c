/* A transposed convolution without multiplications, for RV32EC parts such as the CH32V003:
 * the stride-s transposed convolution as s * s phase sub-convolutions, each computed by the
 * nibble lookup-table fully connected kernel (bg_linear_lut.c) per output pixel.
 *
 * Output row oy gets input rows iy with iy * sh + ky - ph == oy: writing oy + ph = qy * sh + py
 * (0 <= py < sh), the taps are ky = py + j * sh (ky < kh) and their rows iy = qy - j. So every
 * output pixel of phase (py, px) sums the same taps, a fixed sub-kernel of the weights, over
 * the input rows qy, qy - 1, ... and columns qx, qx - 1, ...: the emitter lays out each phase's
 * weights as a fully connected layer over (channel, j, i), and for each pixel the inputs of its
 * taps are gathered into `col` (zero outside the input) and bg_linear_lut_s8 computes all CO
 * sums from them, one table load and add per weight nibble, zero inputs skipped. No tap of
 * another phase is gathered: for stride 2 and a 3x3 kernel a pixel reads 1, 2 or 4 taps per
 * channel, not 9. The following ReLU / requantization are applied before each value is stored.
 *
 * Run on a band of rows or a tile (bitgen/backends/c/kernels/bands.py), the shape's heights
 * and widths are the band's and its paddings the shifts that map it onto its input rows and
 * columns, as for the generic kernel.
 *
 * Exactness: the LUT kernel's (its emitter proves, for every phase, that every partial sum
 * fits int32 and every table entry int16); gathering copies values; the phases partition the
 * taps, so a pixel sums exactly golden's terms.
 */
#include "bg_runtime.h"
#include "bg_convt_lut.h"

void bg_convt_lut_s8(const int8_t *x, void *y, const bg_convt_lut_t *p, int8_t *col, int32_t *acc,
                     int16_t *tables)
{
    const bg_conv_shape_t *s = p->s;
    const bg_post_t *q = p->post;
    const uint32_t plane = (uint32_t)s->h * s->w;
    const uint32_t yplane = (uint32_t)s->oh * s->ow;
    /* Index arithmetic by additions only (a multiply or a division is a libgcc call on
     * RV32EC): the phase (py, px), the quotient (qy, qx), the index of row qy (rq) and the
     * phase's first fully connected layer of the row (fr), all advanced step by step. Unsigned
     * wrap-around makes rows and columns before the first compare >= h, w. */
    uint32_t py = s->ph, qy = 0, rq = 0, px0 = s->pw, qx0 = 0;
    uint32_t oy, ox, o, c, ky, kx, yrow = 0;
    const bg_lut_fc_t *fr = p->fc;
    while (py >= s->sh)
        py -= s->sh, qy++, rq += s->w;
    while (px0 >= s->sw)
        px0 -= s->sw, qx0++;
    for (o = 0; o < py; o++)
        fr += s->sw;
    for (oy = 0; oy < s->oh; oy++, yrow += s->ow) {
        uint32_t px = px0, qx = qx0;
        for (ox = 0; ox < s->ow; ox++) {
            int8_t *k = col;
            uint32_t rc = rq, at; /* rc: index of row qy of channel c */
            for (c = 0; c < s->c; c++, rc += plane) {
                uint32_t rk = rc, iy = qy; /* row iy = qy - j of tap ky = py + j sh */
                for (ky = py; ky < s->kh; ky += s->sh, rk -= s->w, iy--) {
                    uint32_t ix = qx;
                    for (kx = px; kx < s->kw; kx += s->sw, ix--)
                        *k++ = iy < s->h && ix < s->w ? x[rk + ix] : 0;
                }
            }
            bg_linear_lut_s8(col, acc, fr + px, tables);
            for (o = 0, at = yrow + ox; o < s->co; o++, at += yplane) {
                int32_t v = acc[o];
                if (q) {
                    const uint32_t ch = q->per_channel ? o : 0;
                    v = bg_post_value(v, q->relu_before, q->requant, q->wide, q->multiplier ? q->multiplier[ch] : 1,
                                      q->shift ? q->shift[ch] : 0, q->half_up, q->lo, q->hi, q->relu_after);
                }
                if (p->out8)
                    ((int8_t *)y)[at] = (int8_t)v;
                else
                    ((int32_t *)y)[at] = v;
            }
            if (++px == s->sw)
                px = 0, qx++;
        }
        if (++py == s->sh)
            py = 0, qy++, rq += s->w, fr = p->fc;
        else
            fr += s->sw;
    }
}
