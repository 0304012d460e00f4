/* Parameters of the dual 16-bit multiply-accumulate fully connected kernel (bg_linear_simd.c). */
#ifndef BG_LINEAR_SIMD_H
#define BG_LINEAR_SIMD_H

#include "bg_runtime.h"

typedef struct {
    /* int8 weights, outputs in blocks of 4 rows and inputs in groups of 4: for block b and
     * group g, words [4 (b * n_groups + g) + r] hold the 4 weights of row 4b + r, input 4g + k
     * in byte k (least significant first). Padding rows and inputs have weight 0. */
    const uint32_t *w;
    const int32_t *bias; /* n_out rounded up to 4 values (padding 0), or 0 */
    uint16_t n_in, n_out;
} bg_simd_fc_t;

/* y must hold n_out rounded up to 4 values. x need not be aligned. */
void bg_linear_simd_s8(const int8_t *x, int32_t *y, const bg_simd_fc_t *p);

#endif /* BG_LINEAR_SIMD_H */
