/* Convolution of one input plane with one kernel, for targets with a hardware multiplier.
 *
 * In a channel-by-channel step every convolution computes one output plane from one input
 * plane (depthwise, or a first layer with a single input channel). This kernel does that for
 * stride 1 and no padding, and applies the following ReLU / requantization while the sum is
 * still in a register, so those layers cost no pass of their own.
 *
 * Loop order: tiles of 4 outputs of a row; for each kernel row, each input is loaded once and
 * multiplied into every accumulator of the tile it touches (3x3: 6 loads, 12 multiply-adds).
 * The 4 accumulators, 3 taps and the input stay in registers even on RV32E.
 *
 * Exactness: the products and sums are the integers golden adds, in another order; the
 * emitter proves that every partial sum fits int32 in any order, and that `wide == 0` output
 * stages cannot overflow 32 bits.
 */
#include "bg_runtime.h"
#include "bg_conv2d_plane.h"

int32_t bg_offset_s8(const int8_t *x, int32_t *y, uint32_t n)
{
    int32_t z = 127;
    uint32_t i;
    for (i = 0; i < n; i++)
        if (x[i] < z)
            z = x[i];
    for (i = 0; i < n; i++)
        y[i] = x[i] - z;
    return z;
}

/* The output stage of one accumulator, with multiplier m and shift sh of its channel. */
static int32_t bg_post(int32_t v, const bg_post_t *p, int32_t m, uint32_t sh)
{
    if (p->relu_before && v < 0)
        v = 0;
    if (p->requant) {
        if (p->wide) {
            int64_t t = (int64_t)v * m;
            if (p->half_up && sh)
                t += (int64_t)1 << (sh - 1);
            t >>= sh;
            v = t < p->lo ? p->lo : t > p->hi ? p->hi : (int32_t)t;
        } else {
            v *= m;
            if (p->half_up && sh)
                v += (int32_t)(1u << (sh - 1));
            v >>= sh;
            v = v < p->lo ? p->lo : v > p->hi ? p->hi : v;
        }
    }
    if (p->relu_after && v < 0)
        v = 0;
    return v;
}

#define BG_NOINLINE __attribute__((noinline))

#define BG_IN int8_t
#define BG_OUT int8_t
#define BG_TILE(kind) bg_tile3_##kind##_s8_s8
#define BG_NAME bg_conv2d_plane_s8_s8
#include "bg_conv2d_plane.inc"
#undef BG_OUT
#undef BG_TILE
#undef BG_NAME
#define BG_OUT int32_t
#define BG_TILE(kind) bg_tile3_##kind##_s8_s32
#define BG_NAME bg_conv2d_plane_s8_s32
#include "bg_conv2d_plane.inc"
#undef BG_IN
#undef BG_OUT
#undef BG_TILE
#undef BG_NAME

#define BG_IN int32_t
#define BG_OUT int8_t
#define BG_TILE(kind) bg_tile3_##kind##_s32_s8
#define BG_NAME bg_conv2d_plane_s32_s8
#include "bg_conv2d_plane.inc"
#undef BG_OUT
#undef BG_TILE
#undef BG_NAME
#define BG_OUT int32_t
#define BG_TILE(kind) bg_tile3_##kind##_s32_s32
#define BG_NAME bg_conv2d_plane_s32_s32
#include "bg_conv2d_plane.inc"
