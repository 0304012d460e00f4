/* The element-wise ops of graphs (bg_elementwise.c has ReLU and requantization): add and sub
 * of two tensors of one shape (bitgen/ops/eltwise.py) with per-input integer scales, one
 * rounding (half up) and saturation; saturating abs (bitgen/ops/absolute.py); concatenation. */
#ifndef BG_ELTWISE_H
#define BG_ELTWISE_H

#include "bg_runtime.h"

typedef struct {
    int32_t scale_a, scale_b; /* the second input's scale is negated for sub */
    uint8_t shift;
    int32_t lo, hi; /* clamp range */
} bg_eltwise_t;

/* y[i] = clamp((a[i] * scale_a + b[i] * scale_b + ((1 << shift) >> 1)) >> shift, lo, hi).
 * The emitter proved |a| * |scale_a| + |b| * |scale_b| + 2^shift fits int32. y may be a (each
 * y[i] is written after a[i] and b[i] are read, and is no wider than a[i]). */
#define BG_DECLARE_ELTWISE(SA, TA, SB, TB, SY, TY)                                              \
    void bg_eltwise_##SA##_##SB##_to_##SY(const TA *a, const TB *b, TY *y, uint32_t n,         \
                                         const bg_eltwise_t *p);
BG_DECLARE_ELTWISE(s8, int8_t, s8, int8_t, s8, int8_t)
BG_DECLARE_ELTWISE(s8, int8_t, s8, int8_t, s32, int32_t)
BG_DECLARE_ELTWISE(s8, int8_t, s32, int32_t, s8, int8_t)
BG_DECLARE_ELTWISE(s8, int8_t, s32, int32_t, s32, int32_t)
BG_DECLARE_ELTWISE(s32, int32_t, s8, int8_t, s8, int8_t)
BG_DECLARE_ELTWISE(s32, int32_t, s8, int8_t, s32, int32_t)
BG_DECLARE_ELTWISE(s32, int32_t, s32, int32_t, s8, int8_t)
BG_DECLARE_ELTWISE(s32, int32_t, s32, int32_t, s32, int32_t)

/* y[i] = |x[i]| saturated to the type's maximum (int8 -128 gives 127); safe in place. */
void bg_abs_s8(const int8_t *x, int8_t *y, uint32_t n);
void bg_abs_s32(const int32_t *x, int32_t *y, uint32_t n);

/* y = [a; b]: a_bytes of a, then b_bytes of b (concatenation along the first axis). y must not
 * overlap a or b. */
void bg_concat(const uint8_t *a, uint32_t a_bytes, const uint8_t *b, uint32_t b_bytes, uint8_t *y);

#endif /* BG_ELTWISE_H */
