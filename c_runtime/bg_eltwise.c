/* Add, sub, mul, sign, abs and concatenation; see bg_eltwise.h. */
#include "bg_eltwise.h"

static int32_t bg_clamp(int32_t v, int32_t lo, int32_t hi)
{
    return v < lo ? lo : v > hi ? hi : v;
}

#define BG_ELTWISE(SA, TA, SB, TB, SY, TY)                                                      \
    void bg_eltwise_##SA##_##SB##_to_##SY(const TA *a, const TB *b, TY *y, uint32_t n,         \
                                         const bg_eltwise_t *p)                               \
    {                                                                                           \
        const int32_t sa = p->scale_a, sb = p->scale_b;                                         \
        const int32_t rounding = (int32_t)((1u << p->shift) >> 1);                              \
        uint32_t i;                                                                             \
        if (sa == 1 && sb == 1) { /* a plain sum: no product (a libgcc call on RV32EC) */       \
            for (i = 0; i < n; i++)                                                             \
                y[i] = (TY)bg_clamp(((int32_t)a[i] + (int32_t)b[i] + rounding) >> p->shift, p->lo, p->hi); \
            return;                                                                             \
        }                                                                                       \
        for (i = 0; i < n; i++) {                                                               \
            const int32_t v = (int32_t)a[i] * sa + (int32_t)b[i] * sb;                          \
            y[i] = (TY)bg_clamp((v + rounding) >> p->shift, p->lo, p->hi);                      \
        }                                                                                       \
    }
BG_ELTWISE_TYPES(BG_ELTWISE)

#define BG_MUL(SA, TA, SB, TB, SY, TY)                                                          \
    void bg_mul_##SA##_##SB##_to_##SY(const TA *a, const TB *b, TY *y, uint32_t n, const bg_mul_t *p) \
    {                                                                                           \
        const int32_t rounding = (int32_t)((1u << p->shift) >> 1);                              \
        uint32_t i;                                                                             \
        for (i = 0; i < n; i++)                                                                 \
            y[i] = (TY)bg_clamp(((int32_t)a[i] * (int32_t)b[i] + rounding) >> p->shift, p->lo, p->hi); \
    }
BG_ELTWISE_TYPES(BG_MUL)

#define BG_SIGN(SUF, T)                                                                          \
    void bg_sign_##SUF(const T *x, int8_t *y, uint32_t plane, const int32_t *t, uint32_t channels) \
    {                                                                                            \
        uint32_t c, i;                                                                           \
        for (c = 0; c < channels; c++, x += plane, y += plane) {                                 \
            const int32_t th = t[c];                                                             \
            for (i = 0; i < plane; i++)                                                          \
                y[i] = (int32_t)x[i] > th ? 1 : -1;                                              \
        }                                                                                        \
    }
BG_SIGN(s8, int8_t)
BG_SIGN(s32, int32_t)

/* For v < 0, t = -(v + 1) = |v| - 1 cannot overflow, and |v| = t + 1 unless t is the maximum. */
#define BG_ABS(SUF, T, TMAX)                                                                     \
    void bg_abs_##SUF(const T *x, T *y, uint32_t n)                                              \
    {                                                                                            \
        uint32_t i;                                                                              \
        for (i = 0; i < n; i++) {                                                                \
            const T v = x[i];                                                                    \
            const T t = (T)(-(v + 1));                                                           \
            y[i] = v >= 0 ? v : (t == (TMAX) ? t : (T)(t + 1));                                  \
        }                                                                                        \
    }
BG_ABS(s8, int8_t, 127)
BG_ABS(s32, int32_t, 2147483647)

void bg_concat(const uint8_t *a, uint32_t a_bytes, const uint8_t *b, uint32_t b_bytes, uint8_t *y)
{
    uint32_t i;
    for (i = 0; i < a_bytes; i++)
        y[i] = a[i];
    for (i = 0; i < b_bytes; i++)
        y[a_bytes + i] = b[i];
}
