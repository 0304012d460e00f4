/* Sign and Mul; see bg_binary.h. */
#include "bg_binary.h"

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

#define BG_TA int8_t
#define BG_TB int8_t
#define BG_TY int8_t
#define BG_NAME bg_mul_s8_s8_to_s8
#include "bg_binary.inc"
#undef BG_TA
#undef BG_TB
#undef BG_TY
#undef BG_NAME

#define BG_TA int8_t
#define BG_TB int8_t
#define BG_TY int32_t
#define BG_NAME bg_mul_s8_s8_to_s32
#include "bg_binary.inc"
#undef BG_TA
#undef BG_TB
#undef BG_TY
#undef BG_NAME

#define BG_TA int8_t
#define BG_TB int32_t
#define BG_TY int8_t
#define BG_NAME bg_mul_s8_s32_to_s8
#include "bg_binary.inc"
#undef BG_TA
#undef BG_TB
#undef BG_TY
#undef BG_NAME

#define BG_TA int8_t
#define BG_TB int32_t
#define BG_TY int32_t
#define BG_NAME bg_mul_s8_s32_to_s32
#include "bg_binary.inc"
#undef BG_TA
#undef BG_TB
#undef BG_TY
#undef BG_NAME

#define BG_TA int32_t
#define BG_TB int8_t
#define BG_TY int8_t
#define BG_NAME bg_mul_s32_s8_to_s8
#include "bg_binary.inc"
#undef BG_TA
#undef BG_TB
#undef BG_TY
#undef BG_NAME

#define BG_TA int32_t
#define BG_TB int8_t
#define BG_TY int32_t
#define BG_NAME bg_mul_s32_s8_to_s32
#include "bg_binary.inc"
#undef BG_TA
#undef BG_TB
#undef BG_TY
#undef BG_NAME

#define BG_TA int32_t
#define BG_TB int32_t
#define BG_TY int8_t
#define BG_NAME bg_mul_s32_s32_to_s8
#include "bg_binary.inc"
#undef BG_TA
#undef BG_TB
#undef BG_TY
#undef BG_NAME

#define BG_TA int32_t
#define BG_TB int32_t
#define BG_TY int32_t
#define BG_NAME bg_mul_s32_s32_to_s32
#include "bg_binary.inc"
#undef BG_TA
#undef BG_TB
#undef BG_TY
#undef BG_NAME
