/* Requantization with a choice of rounding and an output zero point (bg_requant_modes.h).
 * Integer arithmetic only: ONNX Runtime's float32 requantization is reproduced by rounding to
 * 24 significant bits where the FPU would. Safe in place (y[i] is written after x[i] is read). */
#include "bg_requant_modes.h"

static uint32_t bg_bit_length(uint64_t a)
{
    uint32_t n = 0;
    while (a >= 0x10000u) {
        a >>= 16;
        n += 16;
    }
    while (a) {
        a >>= 1;
        n++;
    }
    return n;
}

/* v rounded to 24 significant bits, ties to even: the value of (float)v. |v| < 2^62. */
static int64_t bg_round_fp32(int64_t v)
{
    uint64_t a = v < 0 ? 0u - (uint64_t)v : (uint64_t)v;
    const uint32_t len = bg_bit_length(a);
    if (len > 24) {
        const uint32_t d = len - 24;
        uint64_t q = a >> d;
        const uint64_t r = a & (((uint64_t)1 << d) - 1u), half = (uint64_t)1 << (d - 1);
        if (r > half || (r == half && (q & 1u)))
            q++;
        a = q << d;
    }
    return v < 0 ? -(int64_t)a : (int64_t)a;
}

/* v / 2^s rounded to the nearest integer, ties to even. */
static int64_t bg_shift_half_even(int64_t v, uint32_t s)
{
    int64_t q;
    uint64_t r, half;
    if (s == 0)
        return v;
    q = v >> s; /* floor: arithmetic shift, as everywhere in the runtime */
    r = (uint64_t)v & (((uint64_t)1 << s) - 1u);
    half = (uint64_t)1 << (s - 1);
    if (r > half || (r == half && (q & 1)))
        q++;
    return q;
}

/* v / 2^s rounded to the nearest integer, ties away from zero. */
static int64_t bg_shift_half_away(int64_t v, uint32_t s)
{
    int64_t q;
    uint64_t r, half;
    if (s == 0)
        return v;
    q = v >> s;
    r = (uint64_t)v & (((uint64_t)1 << s) - 1u);
    half = (uint64_t)1 << (s - 1);
    if (r > half || (r == half && v >= 0))
        q++;
    return q;
}

static int64_t bg_round_mode(int32_t x, int32_t m, uint32_t s, uint8_t rounding)
{
    switch (rounding) {
    case BG_ROUND_FP32:
        return bg_shift_half_even(bg_round_fp32(bg_round_fp32(x) * m), s);
    case BG_ROUND_HALF_EVEN:
        return bg_shift_half_even((int64_t)x * m, s);
    case BG_ROUND_HALF_AWAY:
        return bg_shift_half_away((int64_t)x * m, s);
    case BG_ROUND_FLOOR:
        return ((int64_t)x * m) >> s;
    default:
        return ((int64_t)x * m + (s > 0 ? (int64_t)1 << (s - 1) : 0)) >> s;
    }
}

#define BG_REQUANT_MODES(SUF, T)                                                                \
    void bg_requant_modes_to_##SUF(const int32_t *x, T *y, uint32_t n_per_channel,             \
                                   const bg_requant_modes_t *q, uint32_t first, uint32_t count) \
    {                                                                                           \
        uint32_t c, i;                                                                          \
        for (c = first; c < first + count; c++) {                                               \
            const int32_t m = q->multiplier[c];                                                 \
            const uint32_t s = q->shift[c];                                                     \
            for (i = 0; i < n_per_channel; i++, x++, y++) {                                     \
                int64_t v = bg_round_mode(*x, m, s, q->rounding) + q->zero_point;               \
                if (v < q->lo)                                                                  \
                    v = q->lo;                                                                  \
                if (v > q->hi)                                                                  \
                    v = q->hi;                                                                  \
                *y = (T)v;                                                                      \
            }                                                                                   \
        }                                                                                       \
    }
BG_REQUANT_MODES(s8, int8_t)
BG_REQUANT_MODES(s32, int32_t)
