/* Max and average pooling, reference kernels: CHW, no padding. Safe in place (y == x). */
#include "bg_runtime.h"

/* floor(a / b) for b > 0: C division truncates toward zero. */
static int32_t bg_floor_div(int32_t a, int32_t b)
{
    int32_t q = a / b;
    return (q * b != a && a < 0) ? q - 1 : q;
}

#define BG_T int8_t
#define BG_SUF(name) name##_s8
#include "bg_pool.inc"
#undef BG_T
#undef BG_SUF

#define BG_T int32_t
#define BG_SUF(name) name##_s32
#include "bg_pool.inc"
