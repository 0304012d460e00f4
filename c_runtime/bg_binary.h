/* The binary ops (PixelRNN's, see bitgen/ops/sign.py and bitgen/ops/mul.py): the threshold
 * that turns an integer tensor into a binary one (int8 values +-1), and the element-wise product
 * of two tensors with one rounding (half up) and saturation. */
#ifndef BG_BINARY_H
#define BG_BINARY_H

#include "bg_runtime.h"

/* For c < channels and i < plane: y[c * plane + i] = x[c * plane + i] > t[c] ? 1 : -1. Strict,
 * so a tie gives -1. Per tensor: channels 1, plane the whole tensor. Safe in place (y[k] is
 * written after x[k] is read and is no wider). */
void bg_sign_s8(const int8_t *x, int8_t *y, uint32_t plane, const int32_t *t, uint32_t channels);
void bg_sign_s32(const int32_t *x, int8_t *y, uint32_t plane, const int32_t *t, uint32_t channels);

typedef struct {
    uint8_t shift;
    int32_t lo, hi; /* clamp range */
} bg_mul_t;

/* y[i] = clamp((a[i] * b[i] + ((1 << shift) >> 1)) >> shift, lo, hi). The emitter proved
 * |a| * |b| + 2^shift fits int32. y may be a (each y[i] is written after a[i] and b[i] are read,
 * and is no wider than a[i]). */
#define BG_DECLARE_MUL(SA, TA, SB, TB, SY, TY)                                                  \
    void bg_mul_##SA##_##SB##_to_##SY(const TA *a, const TB *b, TY *y, uint32_t n, const bg_mul_t *p);
BG_DECLARE_MUL(s8, int8_t, s8, int8_t, s8, int8_t)
BG_DECLARE_MUL(s8, int8_t, s8, int8_t, s32, int32_t)
BG_DECLARE_MUL(s8, int8_t, s32, int32_t, s8, int8_t)
BG_DECLARE_MUL(s8, int8_t, s32, int32_t, s32, int32_t)
BG_DECLARE_MUL(s32, int32_t, s8, int8_t, s8, int8_t)
BG_DECLARE_MUL(s32, int32_t, s8, int8_t, s32, int32_t)
BG_DECLARE_MUL(s32, int32_t, s32, int32_t, s8, int8_t)
BG_DECLARE_MUL(s32, int32_t, s32, int32_t, s32, int32_t)

#endif /* BG_BINARY_H */
