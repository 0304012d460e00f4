/* Add, sub, abs and concatenation; see bg_eltwise.h. */
#include "bg_eltwise.h"

#define BG_TA int8_t
#define BG_TB int8_t
#define BG_TY int8_t
#define BG_NAME bg_eltwise_s8_s8_to_s8
#include "bg_eltwise.inc"
#undef BG_TA
#undef BG_TB
#undef BG_TY
#undef BG_NAME

#define BG_TA int8_t
#define BG_TB int8_t
#define BG_TY int32_t
#define BG_NAME bg_eltwise_s8_s8_to_s32
#include "bg_eltwise.inc"
#undef BG_TA
#undef BG_TB
#undef BG_TY
#undef BG_NAME

#define BG_TA int8_t
#define BG_TB int32_t
#define BG_TY int8_t
#define BG_NAME bg_eltwise_s8_s32_to_s8
#include "bg_eltwise.inc"
#undef BG_TA
#undef BG_TB
#undef BG_TY
#undef BG_NAME

#define BG_TA int8_t
#define BG_TB int32_t
#define BG_TY int32_t
#define BG_NAME bg_eltwise_s8_s32_to_s32
#include "bg_eltwise.inc"
#undef BG_TA
#undef BG_TB
#undef BG_TY
#undef BG_NAME

#define BG_TA int32_t
#define BG_TB int8_t
#define BG_TY int8_t
#define BG_NAME bg_eltwise_s32_s8_to_s8
#include "bg_eltwise.inc"
#undef BG_TA
#undef BG_TB
#undef BG_TY
#undef BG_NAME

#define BG_TA int32_t
#define BG_TB int8_t
#define BG_TY int32_t
#define BG_NAME bg_eltwise_s32_s8_to_s32
#include "bg_eltwise.inc"
#undef BG_TA
#undef BG_TB
#undef BG_TY
#undef BG_NAME

#define BG_TA int32_t
#define BG_TB int32_t
#define BG_TY int8_t
#define BG_NAME bg_eltwise_s32_s32_to_s8
#include "bg_eltwise.inc"
#undef BG_TA
#undef BG_TB
#undef BG_TY
#undef BG_NAME

#define BG_TA int32_t
#define BG_TB int32_t
#define BG_TY int32_t
#define BG_NAME bg_eltwise_s32_s32_to_s32
#include "bg_eltwise.inc"
#undef BG_TA
#undef BG_TB
#undef BG_TY
#undef BG_NAME

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
