/* Convolution of one input plane with one kernel, for targets with a hardware multiplier.
 *
 * In a channel-by-channel step every convolution computes one output plane from one input
 * plane (depthwise, or a first layer with a single input channel). This kernel does that for
 * stride 1 and no padding, and applies the following ReLU / requantization (and a 2x2 max
 * pool) while the sums are still in registers, so those layers cost no pass of their own.
 *
 * 3x3 kernels: the whole plane in one call, in tiles of 5 outputs of a row (4 where a 2x2 pool
 * is fused; a tile of 4 or 2 for the rest of a row); the three kernel rows are unrolled and
 * each input is loaded once per kernel row and multiplied into every accumulator of the tile
 * it touches (tile of 5: 7 loads, 15 multiply-adds). The accumulators, 3 taps, the input and
 * the row pointer stay in registers even on RV32E; the taps live in the function's own frame.
 * Other kernels: one output at a time.
 *
 * Exactness: the products and sums are the integers golden adds, in another order; the
 * emitter proves that every partial sum fits int32 in any order (ir.validate's bound
 * |bias| + sum |w| * max |x|), and that `wide == 0` output stages cannot overflow 32 bits. The
 * fused max pool compares the very values golden's pool compares (after the output stage), in
 * another order, which max does not see.
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

/* The per-plane state of the 3x3 tile kernels. Each kernel keeps it in a volatile local, so
 * that it lives in the kernel's frame and is loaded where it is used: otherwise the compiler
 * hoists 9 taps and a dozen constants out of the loops into registers, spills them, and
 * reloads them at every use. That leaves the registers GCC allocates on RV32E (11 of 12) to a
 * tile of 5: 5 accumulators, 3 taps, an input, a product and the input pointer. */
typedef struct {
    int32_t k[9];
    int32_t bias;
    /* Input steps in bytes. From a kernel row to the next (two fields: one would be loaded
     * once and kept in a register across a kernel row); from the third kernel row of a tile
     * of 5, 4 or 2 to the input after the tile; from the end of a row to the next. */
    int32_t down1, down2, next5, next4, next2, down_row;
    int32_t span; /* bytes of input from a row's start to the end of its tiles of 5 (4 pooled) */
    /* then, where the row does not end there: a tile of 4 or of 2, after a step back of 0 or
     * 1 inputs (overlapping the tile before it) */
    uint32_t t4, back4, t2, back2;
    uint32_t rows;     /* rows computed */
    uint32_t mode;     /* 0 store the sums, 1 ReLU then >> sh (two instructions), 2 bg_post */
    uint32_t sh;
    uint32_t pool;     /* 1: maximum of each 2x2 window (see bg_post_t) */
    uint32_t odd;      /* pooled: 1 the row is the second of its windows, 0 the first; 2 not pooled */
    uint32_t pw;       /* with pool: outputs per stored row */
    void *out;         /* where the next output goes */
    const void *end;   /* the input after the current row's tiles of 5 (4) */
    const bg_post_t *post;
    int32_t m;
} bg_job_t;

static uint32_t bg_mode(const bg_post_t *p, uint32_t channel)
{
    const uint32_t pc = p && p->per_channel ? channel : 0;
    if (!p || (!p->relu_before && !p->requant && !p->relu_after))
        return 0;
    if (p->relu_before && p->requant && !p->wide && p->multiplier[pc] == 1 && !p->half_up &&
        !p->relu_after && p->lo <= 0 && p->hi == 2147483647)
        return 1; /* after the ReLU v >= 0, so v >> sh lies in [0, hi]: the clamp is a no-op */
    return 2;
}

static void bg_job(volatile bg_job_t *j, const bg_post_t *p, uint32_t channel, uint32_t mode)
{
    const uint32_t pc = p && p->per_channel ? channel : 0;
    j->post = p;
    j->m = p && p->requant ? p->multiplier[pc] : 1;
    j->sh = p && p->requant ? p->shift[pc] : 0;
    j->pool = p && p->pool;
    j->mode = mode;
}

/* The 9 taps of a 3x3 kernel; 8-bit weights without bg_weight's dispatch. */
static void bg_taps9(volatile int32_t *k, const uint8_t *w, uint8_t enc)
{
    uint32_t i;
    if (enc == BG_ENC_8BIT) {
        const int8_t *b = (const int8_t *)w;
        k[0] = b[0], k[1] = b[1], k[2] = b[2], k[3] = b[3], k[4] = b[4];
        k[5] = b[5], k[6] = b[6], k[7] = b[7], k[8] = b[8];
    } else {
        for (i = 0; i < 9; i++)
            k[i] = bg_weight(w, i, enc);
    }
}

#define BG_NOINLINE __attribute__((noinline))

#define BG_IN int8_t
#define BG_OUT int8_t
#define BG_FN(name) bg_##name##_s8_s8
#define BG_NAME bg_conv2d_plane_s8_s8
#include "bg_conv2d_plane.inc"
#undef BG_OUT
#undef BG_FN
#undef BG_NAME
#define BG_OUT int32_t
#define BG_FN(name) bg_##name##_s8_s32
#define BG_NAME bg_conv2d_plane_s8_s32
#include "bg_conv2d_plane.inc"
#undef BG_IN
#undef BG_OUT
#undef BG_FN
#undef BG_NAME

#define BG_IN int32_t
#define BG_OUT int8_t
#define BG_FN(name) bg_##name##_s32_s8
#define BG_NAME bg_conv2d_plane_s32_s8
#include "bg_conv2d_plane.inc"
#undef BG_OUT
#undef BG_FN
#undef BG_NAME
#define BG_OUT int32_t
#define BG_FN(name) bg_##name##_s32_s32
#define BG_NAME bg_conv2d_plane_s32_s32
#include "bg_conv2d_plane.inc"
