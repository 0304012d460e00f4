/* Elementwise kernels (ReLU, requantization, ShiftNorm) and argmax. Safe in place. */
#include "bg_runtime.h"
#include "bg_dsp.h"

#define BG_T int8_t
#define BG_SUF(name) name##_s8
#define BG_OWN_ARGMAX /* below */
#include "bg_elementwise.inc"
#undef BG_OWN_ARGMAX
#undef BG_T
#undef BG_SUF

#define BG_T int32_t
#define BG_SUF(name) name##_s32
#include "bg_elementwise.inc"

void bg_shiftnorm(const int32_t *x, int8_t *y, uint32_t n)
{
    bg_shiftnorm_apply(x, y, n, bg_shiftnorm_shift(bg_max_s32(x + 1, n - 1, x[0]))); /* n >= 1 */
}

void bg_copy_bytes(void *y, const void *x, uint32_t n)
{
    uint8_t *d = (uint8_t *)y;
    const uint8_t *s = (const uint8_t *)x;
    uint32_t i = 0;
    if ((((uintptr_t)d | (uintptr_t)s) & 3u) == 0)
        for (; i + 4 <= n; i += 4)
            *(bg_word_alias *)(void *)(d + i) = *(const bg_word_alias *)(const void *)(s + i);
    for (; i < n; i++)
        d[i] = s[i];
}

/* The first index of the maximum of n int8. Few values (a classifier's): one pass. Many: the
 * maximum four lanes at a time (SSUB8 and SEL on a Cortex-M4, bg_dsp.h; their C equivalents on
 * the host, which checks this loop), then the first value equal to it; on RISC-V (no lanes) one
 * pass that keeps the maximum in a register. */
uint32_t bg_argmax_s8(const int8_t *x, uint32_t n)
{
    uint32_t i = 0, k, lanes = 0x80808080u; /* -128 in each lane */
    int32_t top = -128;
    if (n < 32) {
        uint32_t best = 0;
        for (i = 1; i < n; i++)
            if (x[i] > x[best])
                best = i;
        return best;
    }
#if defined(__riscv)
    {
        const int8_t *p = x, *best = x, *const end = x + n;
        for (top = *x; ++p < end;)
            if (*p > top)
                top = *p, best = p;
        (void)k, (void)lanes;
        return (uint32_t)(best - x);
    }
#endif
    if (((uintptr_t)x & 3u) == 0)
        for (; i + 4 <= n; i += 4)
            lanes = bg_max_s8x4(*(const bg_word_alias *)(const void *)(x + i), lanes);
    for (k = 0; k < 32; k += 8)
        if ((int8_t)(lanes >> k) > top)
            top = (int8_t)(lanes >> k);
    for (; i < n; i++)
        if (x[i] > top)
            top = x[i];
    for (i = 0; x[i] != top; i++)
        ;
    return i;
}
