/* The Armv7E-M DSP extension's instructions that bitgen's kernels use (Cortex-M4, M7, M33 with
 * DSP), and plain C equivalents everywhere else, so that the host check and the property tests
 * run the very loops a Cortex-M4 runs, and the Cortex-M4 emulator runs the instructions
 * themselves:
 *
 *   bg_smlad(a, b, acc)   acc + a.lo * b.lo + a.hi * b.hi   (SMLAD: two signed 16x16 products)
 *   bg_sxtb16_even(v)     bytes 0 and 2 of v, sign-extended into the two 16-bit halves (SXTB16)
 *   bg_sxtb16_odd(v)      bytes 1 and 3 (SXTB16 with a rotation by 8)
 *
 * SMLAD wraps modulo 2^32 like the C sum; the kernels prove that no partial sum leaves int32
 * (ir.bounds.partial_sum_bound), so both are exact.
 */
#ifndef BG_DSP_H
#define BG_DSP_H

#include <stdint.h>

/* A word read from any address: the model input is the caller's buffer, maybe unaligned. */
typedef uint32_t bg_u32_unaligned __attribute__((aligned(1), may_alias));
/* Two words from a word-aligned address (one LDRD on a Cortex-M4; 8-byte alignment is not
 * needed there, nor promised by the arena). */
typedef uint64_t bg_u64_words __attribute__((aligned(4), may_alias));

#if defined(__ARM_FEATURE_SIMD32) && defined(__GNUC__)
#include <arm_acle.h>
#define bg_sxtb16_even(v) __sxtb16(v)
#define bg_smlad(a, b, acc) __smlad(a, b, acc)
static inline uint32_t bg_sxtb16_odd(uint32_t v)
{
    uint32_t r;
    __asm__("sxtb16 %0, %1, ror #8" : "=r"(r) : "r"(v)); /* ACLE has no rotated form */
    return r;
}
#else
static inline uint32_t bg_sxtb16_even(uint32_t v)
{
    return ((uint32_t)(int32_t)(int8_t)(v & 0xFFu) & 0xFFFFu) | ((uint32_t)(int32_t)(int8_t)((v >> 16) & 0xFFu) << 16);
}
static inline uint32_t bg_sxtb16_odd(uint32_t v)
{
    return bg_sxtb16_even(v >> 8);
}
static inline int32_t bg_smlad(uint32_t a, uint32_t b, int32_t acc)
{
    return acc + (int32_t)(int16_t)(a & 0xFFFFu) * (int16_t)(b & 0xFFFFu) +
           (int32_t)(int16_t)(a >> 16) * (int16_t)(b >> 16);
}
#endif

/* Lane by lane: the larger signed byte of a and b (SSUB8 sets a lane's GE flag where a >= b,
 * SEL picks those lanes of a and the others of b). */
#if defined(__ARM_FEATURE_SIMD32) && defined(__GNUC__)
static inline uint32_t bg_max_s8x4(uint32_t a, uint32_t b)
{
    (void)__ssub8(a, b);
    return __sel(a, b);
}
#else
static inline uint32_t bg_max_s8x4(uint32_t a, uint32_t b)
{
    uint32_t r = 0, k;
    for (k = 0; k < 32; k += 8) {
        const int8_t x = (int8_t)(a >> k), y = (int8_t)(b >> k);
        r |= (uint32_t)(uint8_t)(x >= y ? x : y) << k;
    }
    return r;
}
#endif

/* (x0, x1), (x2, x3): the two int16 pairs of the 4 int8 in v (sign-extended, in order). */
static inline void bg_widen_s8x4(uint32_t v, uint32_t *lo, uint32_t *hi)
{
    const uint32_t e = bg_sxtb16_even(v), o = bg_sxtb16_odd(v); /* (x0, x2), (x1, x3) */
    *lo = (e & 0xFFFFu) | (o << 16);                            /* PKHBT */
    *hi = (e >> 16) | (o & 0xFFFF0000u);                        /* PKHTB */
}

/* lo, hi = the two words at byte offset `off` (a constant) of the word-aligned pointer p. GCC
 * splits 64-bit loads into two LDRs for the Cortex-M4; one LDRD retires one instruction instead
 * of two (its offset: a multiple of 4 up to 1020; farther, two loads). Two 32-bit outputs, not
 * one 64-bit value, leave the register allocator free to pick any two registers. The "m"
 * operand tells the compiler which bytes the instruction reads, so it stays after the stores
 * that write them. */
#if defined(__ARM_FEATURE_SIMD32) && defined(__GNUC__)
#define bg_ld2(p, off, lo, hi)                                                                  \
    do {                                                                                        \
        const bg_u64_words *a_ = (const bg_u64_words *)((const uint8_t *)(p) + (off));          \
        if ((off) >= 0 && (off) <= 1020)                                                        \
            __asm__("ldrd %0, %1, [%2, %3]"                                                     \
                    : "=r"(lo), "=r"(hi)                                                        \
                    : "r"(p), "n"((off) >= 0 && (off) <= 1020 ? (off) : 0), "m"(*a_));          \
        else                                                                                    \
            (lo) = ((const bg_u32_unaligned *)a_)[0], (hi) = ((const bg_u32_unaligned *)a_)[1]; \
    } while (0)
#else
#define bg_ld2(p, off, lo, hi)                                                                  \
    do {                                                                                        \
        const bg_u32_unaligned *a_ = (const bg_u32_unaligned *)((const uint8_t *)(p) + (off));  \
        (lo) = a_[0], (hi) = a_[1];                                                             \
    } while (0)
#endif

#endif /* BG_DSP_H */
