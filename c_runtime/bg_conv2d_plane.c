/* Convolution of one input plane with one kernel, for targets with a hardware multiplier.
 *
 * In a channel-by-channel step every convolution computes one output plane from one input
 * plane (depthwise, or a first layer with a single input channel). This kernel does that for
 * any kernel size, stride 1 and no padding, one output at a time, and applies the following
 * ReLU / requantization (and a 2x2 max pool) before it stores each value, so those layers cost
 * no pass of their own. 3x3 kernels, the common case, have a faster kernel whose shapes are
 * fixed at compile time (bg_conv3x3.inc); this one takes the other sizes.
 *
 * Exactness: the products and sums are the integers golden adds, in another order; the
 * emitter proves that every partial sum fits int32 in any order (ir.validate's bound
 * |bias| + sum |w| * max |x|), and that `wide == 0` output stages cannot overflow 32 bits. The
 * fused max pool compares the very values golden's pool compares (after the output stage), in
 * another order, which max does not see.
 */
#include "bg_runtime.h"
#include "bg_conv2d_plane.h"
#include "bg_dsp.h"

int32_t bg_min_s8(const int8_t *x, uint32_t n)
{
    int32_t z = 127;
    uint32_t i;
    for (i = 0; i < n; i++)
        if (x[i] < z)
            z = x[i];
    return z;
}

void bg_stage_s8_s8(const int8_t *x, int8_t *y, uint32_t h, uint32_t w, uint32_t ys)
{
    uint32_t r, i;
    if (ys == w) /* no padding: the rows are one */
        w *= h, ys = w, h = 1;
    if ((((uintptr_t)x | (uintptr_t)y | w | ys) & 3u) == 0) { /* rows of whole words */
        for (r = 0; r < h; r++, x += w, y += ys)
            for (i = 0; i < w; i += 4)
                *(bg_word_alias *)(void *)(y + i) = *(const bg_word_alias *)(const void *)(x + i);
        return;
    }
    for (r = 0; r < h; r++, x += w, y += ys)
        for (i = 0; i < w; i++)
            y[i] = x[i];
}

void bg_stage_s8_s32(const int8_t *x, int32_t *y, uint32_t h, uint32_t w, uint32_t ys, int32_t z)
{
    uint32_t r, i;
    if (ys == w) /* no padding: the rows are one */
        w *= h, ys = w, h = 1;
    for (r = 0; r < h; r++, x += w, y += ys)
        for (i = 0; i < w; i++)
            y[i] = x[i] - z;
}

void bg_stage_s32_s32(const int32_t *x, int32_t *y, uint32_t h, uint32_t w, uint32_t ys)
{
    uint32_t r, i;
    if (ys == w) /* no padding: the rows are one */
        w *= h, ys = w, h = 1;
    for (r = 0; r < h; r++, x += w, y += ys)
        for (i = 0; i < w; i++)
            y[i] = x[i];
}

void bg_stage_s8_s16(const int8_t *x, int16_t *y, uint32_t h, uint32_t w, uint32_t ys)
{
    uint32_t r, i;
    if (ys == w) /* no padding: the rows are one */
        w *= h, ys = w, h = 1;
    for (r = 0; r < h; r++, x += w, y += ys) {
        i = 0;
        if (((uintptr_t)x & 3u) == 0) /* words of 4 inputs, widened (SXTB16 on a Cortex-M4) */
            for (; i + 4 <= w; i += 4) {
                uint32_t lo, hi;
                bg_widen_s8x4(*(const bg_word_alias *)(const void *)(x + i), &lo, &hi);
                *(bg_u32_unaligned *)(void *)(y + i) = lo; /* y + i: on a halfword */
                *(bg_u32_unaligned *)(void *)(y + i + 2) = hi;
            }
        for (; i < w; i++)
            y[i] = x[i];
    }
}

void bg_stage_s32_s16(const int32_t *x, int16_t *y, uint32_t h, uint32_t w, uint32_t ys)
{
    uint32_t r, i;
    if (ys == w) /* no padding: the rows are one */
        w *= h, ys = w, h = 1;
    for (r = 0; r < h; r++, x += w, y += ys)
        for (i = 0; i < w; i++)
            y[i] = (int16_t)x[i];
}

void bg_zero_words(void *p, uint32_t words)
{
    bg_word_alias *q = (bg_word_alias *)p;
    uint32_t i;
    for (i = 0; i < words; i++)
        q[i] = 0;
}

/* The output stage of one accumulator, with multiplier m and shift sh of its channel. */
static int32_t bg_post(int32_t v, const bg_post_t *p, int32_t m, uint32_t sh)
{
    return bg_post_value(v, p->relu_before, p->requant, p->wide, m, sh, p->half_up, p->lo, p->hi,
                         p->relu_after);
}

#define BG_IN int8_t
#define BG_OUT int8_t
#define BG_NAME bg_conv2d_plane_s8_s8
#include "bg_conv2d_plane.inc"
#undef BG_OUT
#undef BG_NAME
#define BG_OUT int32_t
#define BG_NAME bg_conv2d_plane_s8_s32
#include "bg_conv2d_plane.inc"
#undef BG_IN
#undef BG_OUT
#undef BG_NAME

#define BG_IN int32_t
#define BG_OUT int8_t
#define BG_NAME bg_conv2d_plane_s32_s8
#include "bg_conv2d_plane.inc"
#undef BG_OUT
#undef BG_NAME
#define BG_OUT int32_t
#define BG_NAME bg_conv2d_plane_s32_s32
#include "bg_conv2d_plane.inc"
