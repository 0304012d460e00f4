/* bitgen C runtime: integer-only reference kernels (C99, no malloc, no float, no libc calls).
 *
 * Only <stdint.h> is needed, so the code builds freestanding (-ffreestanding) with toolchains
 * that ship no C library.
 *
 * Every kernel computes exactly what the op of the same name in bitgen/ops/ specifies (its golden).
 * Tensors are CHW (channel-major) or flat vectors. Kernels are out-of-place in signature, and
 * the elementwise and pooling kernels also work in place (dst == src): each output is written
 * only after every input it depends on has been read, walking forward.
 */
#ifndef BG_RUNTIME_H
#define BG_RUNTIME_H

#include <stdint.h>

/* Generated per model: BG_ENCODINGS_USED has bit BG_ENC_x set for each weight encoding the
 * model uses, so kernels can test BG_USES(x) and let the compiler drop the code of the rest. */
#include "bg_config.h"
#ifndef BG_ENCODINGS_USED
#define BG_ENCODINGS_USED 0x7Fu
#endif
#define BG_USES(enc) ((BG_ENCODINGS_USED >> (enc)) & 1u)

/* The kernels need >> on a negative value to be an arithmetic shift (true of gcc and clang,
 * implementation-defined in C99): refuse to compile where it is not. */
typedef char bg_arithmetic_shift_check[((-1) >> 1) == -1 ? 1 : -1];

/* Weight encodings; must match bitgen/encodings.py (values, codes and packing). Each output
 * row starts on a byte boundary; code k of a row sits LSB-first at bit (k*bits)%8 of byte
 * (k*bits)/8. */
enum {
    BG_ENC_BINARY = 0,  /* 1 bit:  0 -> -1, 1 -> +1 */
    BG_ENC_TERNARY = 1, /* 2 bits: two's complement, -1/0/+1 */
    BG_ENC_2BITSYM = 2, /* 2 bits: 2c - 3 */
    BG_ENC_4BITSYM = 3, /* 4 bits: 2c - 15 (odd -15..15) */
    BG_ENC_4BIT = 4,    /* 4 bits: two's complement -8..7 */
    BG_ENC_FP130 = 5,   /* 4 bits: sign<<3 | e, value +-(1 << e) */
    BG_ENC_8BIT = 6     /* 8 bits: two's complement */
};

static inline uint32_t bg_enc_bits(uint8_t enc)
{
    switch (enc) {
    case BG_ENC_BINARY: return 1;
    case BG_ENC_TERNARY:
    case BG_ENC_2BITSYM: return 2;
    case BG_ENC_8BIT: return 8;
    default: return 4;
    }
}

static inline uint32_t bg_row_bytes(uint32_t row_len, uint8_t enc)
{
    return (row_len * bg_enc_bits(enc) + 7u) >> 3;
}

/* Code k of a packed row of 2-bit / 4-bit codes. */
static inline int32_t bg_code2(const uint8_t *row, uint32_t k)
{
    return (row[k >> 2] >> ((k & 3u) << 1)) & 3;
}

static inline int32_t bg_code4(const uint8_t *row, uint32_t k)
{
    return (row[k >> 1] >> ((k & 1u) << 2)) & 15;
}

/* Value of weight k of a packed row. Each branch reads only its own encoding's byte: a row
 * holds (n * bits + 7) / 8 bytes, so a wider read would run past the end of a short row. */
static inline int32_t bg_weight(const uint8_t *row, uint32_t k, uint8_t enc)
{
    if (BG_USES(BG_ENC_BINARY) && enc == BG_ENC_BINARY)
        return ((row[k >> 3] >> (k & 7u)) & 1u) ? 1 : -1;
    if (BG_USES(BG_ENC_TERNARY) && enc == BG_ENC_TERNARY) {
        const int32_t c = bg_code2(row, k);
        return c == 3 ? -1 : c;
    }
    if (BG_USES(BG_ENC_2BITSYM) && enc == BG_ENC_2BITSYM)
        return 2 * bg_code2(row, k) - 3;
    if (BG_USES(BG_ENC_4BITSYM) && enc == BG_ENC_4BITSYM)
        return 2 * bg_code4(row, k) - 15;
    if (BG_USES(BG_ENC_4BIT) && enc == BG_ENC_4BIT) {
        const int32_t c = bg_code4(row, k);
        return c >= 8 ? c - 16 : c;
    }
    if (BG_USES(BG_ENC_FP130) && enc == BG_ENC_FP130) {
        const int32_t c = bg_code4(row, k);
        return (c & 8) ? -(1 << (c & 7)) : (1 << (c & 7));
    }
    return (int8_t)row[k]; /* 8bit */
}

typedef struct {
    uint16_t c, h, w;    /* input channels and size */
    uint16_t co, oh, ow; /* output channels and size */
    uint8_t kh, kw, sh, sw, ph, pw;
    uint16_t groups;
} bg_conv_shape_t;

typedef struct {
    uint16_t c, h, w, oh, ow;
    uint8_t kh, kw, sh, sw;
} bg_pool_shape_t;

/* Requantization parameters: per tensor (channels == 1) or per channel (axis 0). */
typedef struct {
    const int32_t *multiplier;
    const uint8_t *shift;
    uint16_t channels;
    uint8_t half_up; /* 1: add 1 << (shift - 1) before shifting; 0: floor */
    int32_t lo, hi;  /* clamp range */
} bg_requant_t;

/* The same for requantizations proved to fit 32-bit arithmetic (see bg_requant32_to). */
typedef struct {
    const uint16_t *multiplier;
    const uint8_t *shift;
    uint16_t channels;
    uint8_t half_up;
    uint8_t split; /* 1: |x| * m may reach 2^32: form it in two 8-bit halves of m */
    int32_t lo, hi;
} bg_requant32_t;

/* Each kernel family exists for int8 (_s8) and int32 (_s32) element types. */
#define BG_DECLARE_KERNELS(SUF, T)                                                              \
    void bg_linear_##SUF(const T *x, int32_t *y, uint32_t n_in, uint32_t n_out,               \
                         const uint8_t *w, uint8_t enc, const int32_t *bias);                 \
    void bg_conv2d_##SUF(const T *x, int32_t *y, const bg_conv_shape_t *s, const uint8_t *w,  \
                         uint8_t enc, const int32_t *bias);                                   \
    void bg_maxpool2d_##SUF(const T *x, T *y, const bg_pool_shape_t *s);                      \
    void bg_avgpool2d_##SUF(const T *x, T *y, const bg_pool_shape_t *s);                      \
    void bg_relu_##SUF(const T *x, T *y, uint32_t n);                                         \
    void bg_requant_to_##SUF(const int32_t *x, T *y, uint32_t n_per_channel,                  \
                             const bg_requant_t *q, uint32_t first, uint32_t count);          \
    void bg_requant32_to_##SUF(const int32_t *x, T *y, uint32_t n_per_channel,                \
                               const bg_requant32_t *q, uint32_t first, uint32_t count);      \
    uint32_t bg_argmax_##SUF(const T *x, uint32_t n);

BG_DECLARE_KERNELS(s8, int8_t)
BG_DECLARE_KERNELS(s32, int32_t)

/* BitNetMCU ShiftNorm (with ReLU) on an int32 tensor of n values, int8 result in [0, 127]. */
void bg_shiftnorm(const int32_t *x, int8_t *y, uint32_t n);

/* ShiftNorm in three parts, which a two-pass step calls a plane at a time (emit.py): the
 * maximum, the shift it gives (the bits of max >> 7, none if that is <= 0), and the output.
 * Always inlined: bg_shiftnorm is these three, at the instructions of one function. */
static inline __attribute__((always_inline)) int32_t bg_max_s32(const int32_t *x, uint32_t n, int32_t max)
{
    uint32_t i;
    for (i = 0; i < n; i++)
        if (x[i] > max)
            max = x[i];
    return max;
}

static inline __attribute__((always_inline)) uint32_t bg_shiftnorm_shift(int32_t max)
{
    uint32_t shift = 0;
    int32_t v;
    for (v = max >> 7; v > 0; v >>= 1)
        shift++;
    return shift;
}

static inline __attribute__((always_inline)) void bg_shiftnorm_apply(const int32_t *x, int8_t *y, uint32_t n,
                                                                     uint32_t shift)
{
    const int32_t rounding = (int32_t)((1u << shift) >> 1);
    uint32_t i;
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

typedef uint32_t bg_word_alias __attribute__((may_alias)); /* a word of elements of any type */
/* on a byte buffer that kernels may read a word at a time (a change gate's input and reference) */
#define BG_WORD_ALIGNED __attribute__((aligned(4)))

/* n bytes from x to y (no overlap): words where both are word-aligned (the model's output). */
void bg_copy_bytes(void *y, const void *x, uint32_t n);

#endif /* BG_RUNTIME_H */
