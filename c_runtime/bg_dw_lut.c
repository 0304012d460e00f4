/* One output plane of a convolution of one input plane (depthwise) without multiplications, for
 * RV32EC parts such as the CH32V003: x * w through two 16-entry tables per tap.
 *
 * An int8 input x is 16 h + l with l = x & 15 (0..15) and h = x >> 4 (-8..7), so for a tap w
 *
 *     x * w = L[l] + H[h & 15]   with   L[n] = n w,   H[n] = 16 w (n < 8 ? n : n - 16)
 *
 * The 32 entries of each tap are built by additions once per channel (the channel's plane then
 * reuses them at every output), and each multiply-accumulate costs two table loads and adds.
 * The following ReLU / requantization and a 2x2 max pool are applied before each value is
 * stored (bg_post_t), as in the plane kernels; padding comes from a staged, zero-bordered copy
 * of the plane (bg_stage_s8_s8).
 *
 * Exactness: |n w| <= 15 * 128 and |16 w h| <= 16 * 8 * 128 = 16384 fit int16, and each pair
 * of entries sums to x * w exactly; the products are golden's, summed in another order (the
 * emitter proves that every partial sum fits int32). A pooled window stores the maximum of the
 * finished values of its outputs (the output stage is non-decreasing).
 */
#include "bg_runtime.h"
#include "bg_dw_lut.h"

/* Table entry at byte offset (v & 30) of t, i.e. entry (v >> 1) & 15. */
#define BG_DW_ENTRY(t, v) (*(const int16_t *)(const void *)((const uint8_t *)(t) + ((v) & 30u)))

/* Store output `at` (int8, uint16 or int32: out8 1, 2 or 0); `pooled`: not the first output of
 * its pooling window, which stored before: keep the larger. */
static inline void bg_dw_store(void *y, uint32_t at, int32_t v, uint32_t out8, uint32_t pooled)
{
    if (out8 == 1u) {
        if (pooled && ((const int8_t *)y)[at] > v)
            return;
        ((int8_t *)y)[at] = (int8_t)v;
    } else if (out8 == 2u) {
        if (pooled && (int32_t)((const uint16_t *)y)[at] > v)
            return;
        ((uint16_t *)y)[at] = (uint16_t)v;
    } else {
        if (pooled && ((const int32_t *)y)[at] > v)
            return;
        ((int32_t *)y)[at] = v;
    }
}

void bg_dwconv_lut_s8(const int8_t *x, void *y, const bg_dw_lut_t *p, uint32_t channel, const int8_t *wc,
                      int16_t *tables)
{
    const bg_post_t *q = p->post;
    const uint32_t taps = p->taps;
    const uint32_t yw = q && q->pool ? p->cols >> 1 : p->cols;
    const uint32_t row_step = p->row_step;
    const uint32_t ch = q && q->per_channel ? channel : 0;
    int32_t bias = 0;
    uint32_t k, n, oy, ox, ky, r0, yrow = 0;
    if (p->bias)
        bias = p->bias[channel];
    for (k = 0; k < taps; k++) {
        int16_t *const t = tables + 32u * k;
        const int32_t w = wc[k], w16 = (int32_t)((uint32_t)w << 4);
        int32_t v = 0, u = -(int32_t)((uint32_t)w16 << 3); /* H[8] = -8 * 16 w */
        for (n = 0; n < 16; n++, v += w)
            t[n] = (int16_t)v;
        for (n = 0, v = 0; n < 8; n++, v += w16, u += w16) {
            t[16u + n] = (int16_t)v;
            t[24u + n] = (int16_t)u;
        }
    }
    for (oy = 0, r0 = 0; oy < p->rows; oy++, r0 += row_step) {
        uint32_t c0 = r0;
        for (ox = 0; ox < p->cols; ox++, c0 += p->sw) {
            const int16_t *t = tables;
            int32_t acc = bias;
            uint32_t rk = c0, at;
            for (ky = 0; ky < p->kh; ky++, rk += p->ws) {
                const uint8_t *xr = (const uint8_t *)x + rk, *const end = xr + p->kw;
                for (; xr != end; xr++, t += 32) {
                    const uint32_t v = *xr;
                    acc += BG_DW_ENTRY(t, v << 1) + BG_DW_ENTRY(t + 16, v >> 3);
                }
            }
            if (q) {
                acc = bg_post_value(acc, q->relu_before, q->requant, q->wide, q->multiplier ? q->multiplier[ch] : 1,
                                    q->shift ? q->shift[ch] : 0, q->half_up, q->lo, q->hi, q->relu_after);
            }
            at = yrow + (q && q->pool ? ox >> 1 : ox);
            if (q && q->pool && ((oy | ox) & 1u)) { /* pooled: the window's first output stores */
                const int32_t before = p->out8 == 1u ? ((const int8_t *)y)[at]
                                     : p->out8 ? (int32_t)((const uint16_t *)y)[at] : ((const int32_t *)y)[at];
                if (before > acc)
                    acc = before;
            }
            if (p->out8 == 1u)
                ((int8_t *)y)[at] = (int8_t)acc;
            else if (p->out8)
                ((uint16_t *)y)[at] = (uint16_t)acc;
            else
                ((int32_t *)y)[at] = acc;
        }
        if (!(q && q->pool) || (oy & 1u))
            yrow += yw;
    }
}

/* A plane of non-negative inputs (the output of a ReLU, BitNetMCU's 32-bit activations between
 * convolutions), or int8 inputs offset by 128 (the caller's bias holds -128 sum w): x = sum_k
 * n_k 16^k with nibbles n_k, so x * w = sum_k 16^k T[n_k] with one table T[n] = n w
 * (|T| <= 15 * 128 fits int16) per tap, summed from the top nibble down (Horner: each step is a
 * partial product of x * w; unsigned arithmetic, exact modulo 2^32, and x * w itself fits int32).
 * Zero inputs, the common case after a ReLU, cost a load and a test. */
#define BG_DW_U_PLANE(LOAD, STEP)                                                                  \
    for (oy = 0, r0 = 0; oy < p->rows; oy++, r0 += row_step) {                                     \
        uint32_t c0 = r0;                                                                          \
        for (ox = 0; ox < p->cols; ox++, c0 += col_step) {                                         \
            const int16_t *t = tables;                                                             \
            int32_t acc = bias;                                                                    \
            uint32_t rk = c0, at;                                                                  \
            for (ky = 0; ky < p->kh; ky++, rk += ky_step) {                                        \
                const uint8_t *xr = (const uint8_t *)x + rk, *const end = xr + kw_bytes;           \
                for (; xr != end; xr += STEP, t += 16) {                                           \
                    const uint32_t v = LOAD;                                                       \
                    uint32_t sh = top, s = 0;                                                      \
                    if (!v)                                                                        \
                        continue;                                                                  \
                    for (;;) {                                                                     \
                        s = (s << 4) + (uint32_t)(int32_t)t[(v >> sh) & 15u];                      \
                        if (!sh)                                                                   \
                            break;                                                                 \
                        sh -= 4;                                                                   \
                    }                                                                              \
                    acc += (int32_t)s;                                                             \
                }                                                                                  \
            }                                                                                      \
            if (q) {                                                                               \
                acc = bg_post_value(acc, q->relu_before, q->requant, q->wide,                      \
                                    q->multiplier ? q->multiplier[ch] : 1, q->shift ? q->shift[ch] : 0, \
                                    q->half_up, q->lo, q->hi, q->relu_after);                      \
            }                                                                                      \
            at = yrow + (q && q->pool ? ox >> 1 : ox);                                             \
            bg_dw_store(y, at, acc, p->out8, q && q->pool && ((oy | ox) & 1u));                    \
        }                                                                                          \
        if (!(q && q->pool) || (oy & 1u))                                                          \
            yrow += yw;                                                                            \
    }

void bg_dwconv_lut_u(const void *x, void *y, const bg_dw_lut_t *p, uint32_t channel, const int8_t *wc,
                     int16_t *tables)
{
    const bg_post_t *q = p->post;
    const uint32_t taps = p->taps;
    const uint32_t yw = q && q->pool ? p->cols >> 1 : p->cols;
    const uint32_t es = p->in_log2; /* the input element's bytes: 1, 2 or 4 */
    const uint32_t row_step = p->row_step << es, col_step = (uint32_t)p->sw << es;
    const uint32_t ky_step = (uint32_t)p->ws << es, kw_bytes = (uint32_t)p->kw << es, top = p->top;
    const uint32_t ch = q && q->per_channel ? channel : 0;
    int32_t bias = 0;
    uint32_t k, n, oy, ox, ky, r0, yrow = 0;
    if (p->bias)
        bias = p->bias[channel];
    for (k = 0; k < taps; k++) {
        int16_t *const t = tables + 16u * k;
        const int32_t w = wc[k];
        int32_t v = 0;
        for (n = 0; n < 16; n++, v += w)
            t[n] = (int16_t)v;
    }
    if (es == 0u) {
        BG_DW_U_PLANE((uint32_t)(*xr ^ 0x80u), 1u)
    } else if (es == 1u) {
        BG_DW_U_PLANE(*(const uint16_t *)(const void *)xr, 2u)
    } else {
        BG_DW_U_PLANE(*(const uint32_t *)(const void *)xr, 4u)
    }
}
