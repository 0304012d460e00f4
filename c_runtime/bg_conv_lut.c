/* A dense convolution without multiplications: each output pixel's receptive field as the input
 * of the nibble lookup-table fully connected kernel (bg_linear_lut.c), for RV32EC parts such as
 * the CH32V003, which have no multiplier.
 *
 * For each output pixel the C * KH * KW inputs of its window (zero where the window covers
 * padding) are gathered into `col`, in the order of golden's weights (channel, kernel row,
 * kernel column), and bg_linear_lut_s8 computes all CO sums from them: a table per input (two
 * for 8-bit weights) built once and shared by every output channel, then one table load and add
 * per weight nibble; zero inputs (ReLU outputs, padding) cost nothing. The following ReLU /
 * requantization and a 2x2 max pool are applied before each value is stored (bg_post_t), so
 * the int32 sums never exist as a tensor: a pixel's CO sums are all the memory they take.
 *
 * Exactness: the LUT kernel's (its emitter proves that every partial sum fits int32 and every
 * table entry int16); gathering copies values. A pooled window stores the maximum of the
 * finished values of its pixels, golden's pool of the finished tensor, since the output stage
 * is non-decreasing.
 */
#include "bg_runtime.h"
#include "bg_conv_lut.h"

void bg_conv_lut_s8(const int8_t *x, void *y, const bg_conv_lut_t *p, int8_t *col, int32_t *acc,
                    int16_t *tables)
{
    const bg_conv_shape_t *s = p->s;
    const bg_post_t *q = p->post;
    const uint32_t plane = (uint32_t)s->h * s->w, row_step = (uint32_t)s->sh * s->w;
    const uint32_t yw = q && q->pool ? p->cols >> 1 : p->cols;
    const uint32_t yplane = (q && q->pool ? p->rows >> 1 : p->rows) * yw;
    /* Index arithmetic by additions only: a multiply is a libgcc call on RV32EC. A window's
     * first input row (iy0) and column (ix0), and the index of that row's start (r0); unsigned
     * wrap-around makes rows and columns before the first compare >= h, w (and their indices
     * are never used). */
    uint32_t oy, ox, o, c, ky, kx, yrow = 0; /* yrow: index of the output row's start */
    uint32_t iy0 = 0u - s->ph, r0 = 0u - (uint32_t)s->ph * s->w;
    for (oy = 0; oy < p->rows; oy++, iy0 += s->sh, r0 += row_step) {
        uint32_t ix0 = 0u - s->pw;
        for (ox = 0; ox < p->cols; ox++, ix0 += s->sw) {
            int8_t *k = col;
            uint32_t rc = r0, at; /* rc: index of row iy0 of channel c */
            for (c = 0; c < s->c; c++, rc += plane) {
                uint32_t rk = rc; /* row iy0 + ky */
                for (ky = 0; ky < s->kh; ky++, rk += s->w) {
                    const uint32_t iy = iy0 + ky;
                    for (kx = 0; kx < s->kw; kx++) {
                        const uint32_t ix = ix0 + kx;
                        *k++ = iy < s->h && ix < s->w ? x[rk + ix] : 0;
                    }
                }
            }
            bg_linear_lut_s8(col, acc, p->fc, tables);
            if (q && q->pool) /* pooled: the window's first pixel stores, the others max in */
                at = yrow + (ox >> 1);
            else
                at = yrow + ox;
            for (o = 0; o < s->co; o++, at += yplane) {
                int32_t v = acc[o];
                if (q) {
                    const uint32_t ch = q->per_channel ? o : 0;
                    v = bg_post_value(v, q->relu_before, q->requant, q->wide, q->multiplier ? q->multiplier[ch] : 1,
                                      q->shift ? q->shift[ch] : 0, q->half_up, q->lo, q->hi, q->relu_after);
                }
                if (q && q->pool && ((oy | ox) & 1u)) {
                    const int32_t before = p->out8 ? ((const int8_t *)y)[at] : ((const int32_t *)y)[at];
                    if (before > v)
                        v = before;
                }
                if (p->out8)
                    ((int8_t *)y)[at] = (int8_t)v;
                else
                    ((int32_t *)y)[at] = v;
            }
        }
        if (!(q && q->pool) || (oy & 1u)) /* pooled: two rows per output row */
            yrow += yw;
    }
}
