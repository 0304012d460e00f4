/* The element-wise ops of graphs (bg_elementwise.c has ReLU and requantization):
 * - add and sub of two tensors of one shape (bitgen/ops/eltwise.py): per-input integer scales,
 *   one rounding (half up), saturation;
 * - mul, their element-wise product (bitgen/ops/mul.py): one rounding, saturation;
 * - sign, the strict threshold to +-1 of a binary tensor (bitgen/ops/sign.py);
 * - saturating abs (bitgen/ops/absolute.py); concatenation. */
#ifndef BG_ELTWISE_H
#define BG_ELTWISE_H

#include "bg_runtime.h"

/* F(SA, TA, SB, TB, SY, TY) for every element type of the two inputs and of the output. */
#define BG_ELTWISE_TYPES(F)                                                                      \
    F(s8, int8_t, s8, int8_t, s8, int8_t)                                                        \
    F(s8, int8_t, s8, int8_t, s32, int32_t)                                                      \
    F(s8, int8_t, s32, int32_t, s8, int8_t)                                                      \
    F(s8, int8_t, s32, int32_t, s32, int32_t)                                                    \
    F(s32, int32_t, s8, int8_t, s8, int8_t)                                                      \
    F(s32, int32_t, s8, int8_t, s32, int32_t)                                                    \
    F(s32, int32_t, s32, int32_t, s8, int8_t)                                                    \
    F(s32, int32_t, s32, int32_t, s32, int32_t)

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
BG_ELTWISE_TYPES(BG_DECLARE_ELTWISE)

typedef struct {
    uint8_t shift;
    int32_t lo, hi; /* clamp range */
} bg_mul_t;

/* y[i] = clamp((a[i] * b[i] + ((1 << shift) >> 1)) >> shift, lo, hi). The emitter proved
 * |a| * |b| + 2^shift fits int32. y may be a, as for bg_eltwise_*. */
#define BG_DECLARE_MUL(SA, TA, SB, TB, SY, TY)                                                  \
    void bg_mul_##SA##_##SB##_to_##SY(const TA *a, const TB *b, TY *y, uint32_t n, const bg_mul_t *p);
BG_ELTWISE_TYPES(BG_DECLARE_MUL)

/* For c < channels and i < plane: y[c * plane + i] = x[c * plane + i] > t[c] ? 1 : -1. Strict,
 * so a tie gives -1. Per tensor: channels 1, plane the whole tensor. Safe in place (y[k] is
 * written after x[k] is read and is no wider). */
void bg_sign_s8(const int8_t *x, int8_t *y, uint32_t plane, const int32_t *t, uint32_t channels);
void bg_sign_s32(const int32_t *x, int8_t *y, uint32_t plane, const int32_t *t, uint32_t channels);

/* y[i] = |x[i]| saturated to the type's maximum (int8 -128 gives 127); safe in place. */
void bg_abs_s8(const int8_t *x, int8_t *y, uint32_t n);
void bg_abs_s32(const int32_t *x, int32_t *y, uint32_t n);

/* y = [a; b]: a_bytes of a, then b_bytes of b (concatenation along the first axis). y must not
 * overlap a or b. */
void bg_concat(const uint8_t *a, uint32_t a_bytes, const uint8_t *b, uint32_t b_bytes, uint8_t *y);

#endif /* BG_ELTWISE_H */
