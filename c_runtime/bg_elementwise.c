/* Elementwise kernels (ReLU, requantization, ShiftNorm) and argmax. Safe in place. */
#include "bg_runtime.h"

#define BG_T int8_t
#define BG_SUF(name) name##_s8
#include "bg_elementwise.inc"
#undef BG_T
#undef BG_SUF

#define BG_T int32_t
#define BG_SUF(name) name##_s32
#include "bg_elementwise.inc"

void bg_shiftnorm(const int32_t *x, int8_t *y, uint32_t n)
{
    int32_t max = x[0], v, rounding;
    uint32_t i, shift = 0;
    for (i = 1; i < n; i++)
        if (x[i] > max)
            max = x[i];
    for (v = max >> 7; v > 0; v >>= 1)
        shift++;
    rounding = (int32_t)((1u << shift) >> 1);
    for (i = 0; i < n; i++) {
        int32_t t = x[i];
        if (t < 0) {
            t = 0;
        } else {
            t = (t + rounding) >> shift;
            if (t > 127)
                t = 127;
        }
        y[i] = (int8_t)t;
    }
}

void bg_copy_bytes(void *y, const void *x, uint32_t n)
{
    typedef uint32_t word __attribute__((may_alias));
    uint8_t *d = (uint8_t *)y;
    const uint8_t *s = (const uint8_t *)x;
    uint32_t i = 0;
    if ((((uintptr_t)d | (uintptr_t)s) & 3u) == 0)
        for (; i + 4 <= n; i += 4)
            *(word *)(void *)(d + i) = *(const word *)(const void *)(s + i);
    for (; i < n; i++)
        d[i] = s[i];
}
