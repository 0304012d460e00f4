/* Single-plane convolution with a multiplier and a fused output stage (bg_conv2d_plane.c; 3x3
 * kernels: bg_conv3x3.inc). */
#ifndef BG_CONV2D_PLANE_H
#define BG_CONV2D_PLANE_H

#include "bg_runtime.h"

#define BG_PLANE_MAX_TAPS 49 /* kernels up to 7x7 */

/* What happens to each accumulator before it is stored: optional ReLU, then optional
 * requantization clamp(round(v * multiplier[c] / 2^shift[c]), lo, hi) with c the channel
 * (or 0 when per tensor), then optional ReLU; then, with `pool`, a 2x2 stride-2 max pool
 * (floor output size): only the maximum of each window of those values is stored. */
typedef struct {
    const int32_t *multiplier;
    const uint8_t *shift;
    int32_t lo, hi;
    uint8_t per_channel, relu_before, requant, relu_after, half_up;
    uint8_t wide; /* 1: the product needs 64 bits; 0: proved to fit 32 bits */
    uint8_t pool; /* 1: y is the (oh/2) x (ow/2) max-pooled plane */
} bg_post_t;

/* v * m for a multiplier m >= 1 (requantization), modulo 2^32 like C's product; on a core
 * without a multiplier by shifts and adds over m's bits (libgcc's __mulsi3 loops over all 32
 * bits of a negative operand). Always inlined: GCC -Os makes a small loop with two callers a
 * call, which costs the RV32EC depthwise kernel about 15 instructions per output. */
#if defined(__GNUC__)
__attribute__((always_inline))
#endif
static inline int32_t bg_mul_m32(int32_t v, uint32_t m)
{
#if defined(__riscv) && !defined(__riscv_mul)
    uint32_t r = 0, a = (uint32_t)v;
    for (; m; m >>= 1, a <<= 1)
        if (m & 1u)
            r += a;
    return (int32_t)r;
#else
    return (int32_t)((uint32_t)v * m);
#endif
}

static inline int64_t bg_mul_m64(int32_t v, uint32_t m)
{
#if defined(__riscv) && !defined(__riscv_mul)
    uint64_t r = 0, a = (uint64_t)(int64_t)v;
    for (; m; m >>= 1, a <<= 1)
        if (m & 1u)
            r += a;
    return (int64_t)r;
#else
    return (int64_t)v * m;
#endif
}

/* The output stage of one value, every parameter given (m and sh: the channel's): called with
 * constants and inlined, it folds to the instructions that remain. */
static inline __attribute__((always_inline)) int32_t
bg_post_value(int32_t v, uint32_t relu_before, uint32_t requant, uint32_t wide, int32_t m, uint32_t sh,
              uint32_t half_up, int32_t lo, int32_t hi, uint32_t relu_after)
{
    if (relu_before && v < 0)
        v = 0;
    if (requant) {
        if (wide) {
            int64_t t = bg_mul_m64(v, (uint32_t)m);
            if (half_up && sh)
                t += (int64_t)1 << (sh - 1);
            t >>= sh;
            v = t < lo ? lo : t > hi ? hi : (int32_t)t;
        } else {
            v = bg_mul_m32(v, (uint32_t)m);
            if (half_up && sh)
                v += (int32_t)(1u << (sh - 1));
            v >>= sh;
            v = v < lo ? lo : v > hi ? hi : v;
        }
    }
    if (relu_after && v < 0)
        v = 0;
    return v;
}

/* One output plane (oh x ow, or its pooled oh/2 x ow/2) from one input plane (h x w), stride 1,
 * no padding:  acc = bias + sum_k w[k] * x   then the output stage `post` (0: store acc as is).
 * channel: index into post's per-channel parameters. s->c and s->co must be 1. */
#define BG_DECLARE_PLANE(IN, OUT, TI, TO)                                                        \
    void bg_conv2d_plane_##IN##_##OUT(const TI *x, TO *y, const bg_conv_shape_t *s,             \
                                      const uint8_t *w, uint8_t enc, int32_t bias,              \
                                      const bg_post_t *post, uint32_t channel);
BG_DECLARE_PLANE(s8, s8, int8_t, int8_t)
BG_DECLARE_PLANE(s8, s32, int8_t, int32_t)
BG_DECLARE_PLANE(s32, s8, int32_t, int8_t)
BG_DECLARE_PLANE(s32, s32, int32_t, int32_t)
#undef BG_DECLARE_PLANE

/* The smallest of n values: a first layer's input offset z, so that its most common value (an
 * image's background) becomes 0 and is skipped; the layer adds z * sum(w) to its bias. */
int32_t bg_min_s8(const int8_t *x, uint32_t n);

/* A plane staged for the plane kernels, which take neither padding nor an offset: the h x w
 * plane x (minus z) into rows of `ys` elements from y, the interior of a zero-bordered plane
 * (the kernel's prologue zeroes it once with bg_zero_words; the channels write the interior). */
void bg_stage_s8_s8(const int8_t *x, int8_t *y, uint32_t h, uint32_t w, uint32_t ys);
void bg_stage_s8_s32(const int8_t *x, int32_t *y, uint32_t h, uint32_t w, uint32_t ys, int32_t z);
void bg_stage_s32_s32(const int32_t *x, int32_t *y, uint32_t h, uint32_t w, uint32_t ys);
void bg_stage_s8_s16(const int8_t *x, int16_t *y, uint32_t h, uint32_t w, uint32_t ys);
void bg_stage_s32_s16(const int32_t *x, int16_t *y, uint32_t h, uint32_t w, uint32_t ys); /* values fit int16 */
void bg_zero_words(void *p, uint32_t words);

#endif /* BG_CONV2D_PLANE_H */
