/* Pieces of the dense row convolution whose shapes are fixed at compile time
 * (bg_conv_rows.inc, instantiated once per layer by the emitted model source). */
#ifndef BG_CONV_ROWS_H
#define BG_CONV_ROWS_H

#include "bg_conv2d_plane.h" /* bg_post_value: the fused output stage */
#include "bg_dsp.h"

#define BG_CR_MAX(a, b) ((a) < (b) ? (b) : (a))
#define BG_CR_MIN(a, b) ((a) < (b) ? (a) : (b))

/* The output stage of the unrolled mul tiles with the bias and the rounding folded into k
 * (BG_CR_FOLD): a requantization whose product is proved to fit int32, then a clamp to
 * [lo, hi] (lo <= 0 <= hi; lo 0 after a ReLU):
 *   clamp(((s * m + k) mod 2^32) >> sh, lo, hi)
 * With k = bias * m + r (mod 2^32), r the rounding term, the wrapped sum is (bias + s) * m + r,
 * which fits int32: exact. With lo 0, t < 0 is exactly where t >> sh < 0 (then 0, one branch). */
static inline __attribute__((always_inline)) int32_t
bg_cr_fold(int32_t s, uint32_t m, uint32_t k, uint32_t sh, int32_t lo, int32_t hi, uint32_t lim,
           uint32_t lim_reg)
{
    const int32_t t = (int32_t)((uint32_t)s * m + k);
    int32_t v;
    if (lo == 0 && lim) { /* lim = (hi + 1) << sh: t in [0, lim) is v in [0, hi] */
        if ((uint32_t)t < lim_reg) /* lim, kept in a register */
            return t >> sh;
        return t < 0 ? 0 : hi;
    }
    v = t >> sh;
    if ((uint32_t)v - (uint32_t)lo > (uint32_t)hi - (uint32_t)lo)
        v = v < lo ? lo : hi;
    return v;
}

#endif /* BG_CONV_ROWS_H */
