/* Fully connected layer without multiplications: the nibble lookup-table kernel.
 *
 * A packed weight row is a stream of 4-bit nibbles; nibble ("column") j of every row covers
 * the same inputs: one input for 4-bit encodings, two for 2-bit, four for binary, and for
 * 8-bit weights input i is covered by columns 2i (low nibble) and 2i+1 (high nibble). For
 * each column whose inputs are not all zero, a 16-entry table holds the column's contribution
 * to the dot product for every possible nibble n:
 *
 *     T_j[n] = sum over the column's inputs k of  x'[k] * value(code_k(n))
 *
 * so an output accumulates one table entry per column: acc[o] += T_j[nibble(o, j)]. That is a
 * shift, a mask, an add, a load and an add per nibble, whatever the encoding, and columns of
 * zero inputs (ReLU outputs, image background) cost nothing at all.
 *
 * Offset: when p->rowsum is given, inputs are first shifted by their minimum z (x' = x - z,
 * so the most common value of an image, its background, becomes 0 and its columns are
 * skipped); z * rowsum[o] (rowsum = sum of the row's weight values) restores the exact sum.
 *
 * Weights are laid out for this kernel: outputs in blocks of 8, and for each block and column
 * one 32-bit word holding that column's nibble of the block's 8 rows (row r at bits 4r..4r+3);
 * the rows left over (n_out % 8, padded to 2 or 4) are a tail block of 8- or 16-bit words.
 * The output buffer has room for the padding rows. Tables live in `scratch`: p->chunk tables
 * of 17 int16 (the column's byte offset in a block, then 16 entries) at a time, then a
 * negative offset that ends them.
 *
 * Exactness: every table entry is an exact integer of magnitude < 2^15 (|x'| <= 255 and
 * |value| <= 128), and the sums are the same integers golden adds, in another order; the
 * emitter proves that no partial sum leaves int32 in any order.
 */
#include "bg_runtime.h"
#include "bg_linear_lut.h"

#define BG_TWO_BIT (BG_USES(BG_ENC_TERNARY) || BG_USES(BG_ENC_2BITSYM))

/* x * k for a small non-negative k, without a multiply instruction where there is none. */
static int32_t bg_mul_small(int32_t x, uint32_t k)
{
#if defined(__riscv) && !defined(__riscv_mul)
    int32_t r = 0;
    for (; k; k >>= 1, x = (int32_t)((uint32_t)x << 1))
        if (k & 1u)
            r += x;
    return r;
#else
    return x * (int32_t)k;
#endif
}

/* Table for one nibble of 8-bit weights: the low nibble (0..15) times x, or the high nibble
 * (two's complement -8..7) times 16 x. Unrolled: 8-bit convolutions build two per input. */
static void bg_lut_table8(int16_t *t, int32_t x, uint32_t high_nibble)
{
    int32_t v = 0, u;
    if (!high_nibble) {
#define BG_STEP(k) t[k] = (int16_t)v, v += x
        BG_STEP(0), BG_STEP(1), BG_STEP(2), BG_STEP(3), BG_STEP(4), BG_STEP(5), BG_STEP(6), BG_STEP(7);
        BG_STEP(8), BG_STEP(9), BG_STEP(10), BG_STEP(11), BG_STEP(12), BG_STEP(13), BG_STEP(14);
        t[15] = (int16_t)v;
#undef BG_STEP
        return;
    }
    x = (int32_t)((uint32_t)x << 4);
    u = -(int32_t)((uint32_t)x << 3); /* code 8 is -8 */
#define BG_STEP(k) t[k] = (int16_t)v, t[(k) + 8] = (int16_t)u, v += x, u += x
    BG_STEP(0), BG_STEP(1), BG_STEP(2), BG_STEP(3), BG_STEP(4), BG_STEP(5), BG_STEP(6);
    t[7] = (int16_t)v, t[15] = (int16_t)u;
#undef BG_STEP
}

/* Table for a column of one input of a 4-bit encoding. */
static void bg_lut_table4(int16_t *t, int32_t x, uint8_t enc)
{
    uint32_t n;
    int32_t v;
    if (BG_USES(BG_ENC_4BITSYM) && enc == BG_ENC_4BITSYM) { /* value 2n - 15; unrolled */
        const int32_t x2 = 2 * x;
        v = x - (int32_t)((uint32_t)x << 4);
#define BG_STEP(k) t[k] = (int16_t)v, v += x2
        BG_STEP(0), BG_STEP(1), BG_STEP(2), BG_STEP(3), BG_STEP(4), BG_STEP(5), BG_STEP(6), BG_STEP(7);
        BG_STEP(8), BG_STEP(9), BG_STEP(10), BG_STEP(11), BG_STEP(12), BG_STEP(13), BG_STEP(14);
        t[15] = (int16_t)v;
#undef BG_STEP
    } else if (BG_USES(BG_ENC_FP130) && enc == BG_ENC_FP130) { /* value +-(1 << e) */
        for (n = 0; n < 8; n++) {
            v = (int32_t)((uint32_t)x << n);
            t[n] = (int16_t)v;
            t[n + 8] = (int16_t)-v;
        }
    } else { /* two's complement nibble (4bit) */
        for (n = 0, v = 0; n < 8; n++, v += x) {
            t[n] = (int16_t)v;
            t[n + 8] = (int16_t)(v - (int32_t)((uint32_t)x << 3));
        }
    }
}

/* Tables for columns of several inputs. The nibble splits into two halves of 2 bits,
 * n = i + 4j, and T[n] = a_i + b_j where a and b are the contributions of the low and the high
 * half for each of their 4 codes. */
#define BG_ROW(j, bj)                                                                        \
    b = (bj), t[4 * (j)] = (int16_t)(a0 + b), t[4 * (j) + 1] = (int16_t)(a1 + b),              \
    t[4 * (j) + 2] = (int16_t)(a2 + b), t[4 * (j) + 3] = (int16_t)(a3 + b)

/* Two 2-bit inputs (ternary or 2bitsym), one per half; unrolled, in registers. */
static void bg_lut_table2(int16_t *t, int32_t x0, int32_t x1, uint8_t enc)
{
    int32_t a0, a1, a2, a3, b;
    if (BG_USES(BG_ENC_TERNARY) && enc == BG_ENC_TERNARY) { /* codes 0, 1, (2 unused), 3 = -1 */
        a0 = 0, a1 = x0, a2 = 0, a3 = -x0;
        BG_ROW(0, 0); BG_ROW(1, x1); BG_ROW(2, 0); BG_ROW(3, -x1);
    } else { /* 2bitsym: 2c - 3 */
        const int32_t x1_3 = x1 + 2 * x1;
        a1 = -x0, a0 = a1 - 2 * x0, a2 = x0, a3 = x0 + 2 * x0;
        BG_ROW(0, -x1_3); BG_ROW(1, -x1); BG_ROW(2, x1); BG_ROW(3, x1_3);
    }
}

/* Four binary inputs, two per half (bit k: +x[k] or -x[k]). */
static void bg_lut_table_binary(int16_t *t, const int32_t *x)
{
    const int32_t a0 = -x[0] - x[1], a1 = x[0] - x[1], a2 = x[1] - x[0], a3 = x[0] + x[1];
    int32_t b;
    BG_ROW(0, -x[2] - x[3]); BG_ROW(1, x[2] - x[3]); BG_ROW(2, x[3] - x[2]); BG_ROW(3, x[2] + x[3]);
}
#undef BG_ROW

/* Table entry at byte offset (v & 30), i.e. entry (v >> 1) & 15. */
#define BG_LUT(t, v) (*(const int16_t *)((const uint8_t *)(t) + ((v) & 30u)))

/* One block of 8 outputs: add one entry of every table (the tables end with a negative offset).
 * Kept out of line so that little besides the 8 accumulators is live in the loop (RV32E has 12
 * allocatable registers, and GCC leaves ra unused here): yb waits on the stack until the end,
 * otherwise an accumulator is loaded and stored on every table (measured: 2.5 % of the
 * 4-bit MLP on the CH32V003). */
static void __attribute__((noinline)) bg_lut_block(const int16_t *tt, const uint32_t *wb, int32_t *yb)
{
    int32_t *volatile y_saved = yb; /* in memory, not in a register */
    int32_t a0 = yb[0], a1 = yb[1], a2 = yb[2], a3 = yb[3];
    int32_t a4 = yb[4], a5 = yb[5], a6 = yb[6], a7 = yb[7];
    int32_t off;
    for (; (off = tt[0]) >= 0; tt += 17) {
        const uint32_t word = *(const uint32_t *)((const uint8_t *)wb + off);
        a0 += BG_LUT(tt + 1, word << 1);
        a1 += BG_LUT(tt + 1, word >> 3);
        a2 += BG_LUT(tt + 1, word >> 7);
        a3 += BG_LUT(tt + 1, word >> 11);
        a4 += BG_LUT(tt + 1, word >> 15);
        a5 += BG_LUT(tt + 1, word >> 19);
        a6 += BG_LUT(tt + 1, word >> 23);
        a7 += BG_LUT(tt + 1, word >> 27);
    }
    yb = y_saved;
    yb[0] = a0, yb[1] = a1, yb[2] = a2, yb[3] = a3;
    yb[4] = a4, yb[5] = a5, yb[6] = a6, yb[7] = a7;
}

/* The last 4 or 2 outputs when n_out is not a multiple of 8: the same with 16- or 8-bit words
 * (rows 4b + r at bits 4r..4r+3), so that no flash is spent on padding rows. */
static void __attribute__((noinline)) bg_lut_block4(const int16_t *tt, const uint16_t *wb, int32_t *yb)
{
    int32_t a0 = yb[0], a1 = yb[1], a2 = yb[2], a3 = yb[3];
    int32_t off;
    for (; (off = tt[0]) >= 0; tt += 17) {
        const uint32_t word = *(const uint16_t *)((const uint8_t *)wb + (off >> 1));
        a0 += BG_LUT(tt + 1, word << 1);
        a1 += BG_LUT(tt + 1, word >> 3);
        a2 += BG_LUT(tt + 1, word >> 7);
        a3 += BG_LUT(tt + 1, word >> 11);
    }
    yb[0] = a0, yb[1] = a1, yb[2] = a2, yb[3] = a3;
}

static void __attribute__((noinline)) bg_lut_block2(const int16_t *tt, const uint8_t *wb, int32_t *yb)
{
    int32_t a0 = yb[0], a1 = yb[1];
    int32_t off;
    for (; (off = tt[0]) >= 0; tt += 17) {
        const uint32_t word = wb[off >> 2];
        a0 += BG_LUT(tt + 1, word << 1);
        a1 += BG_LUT(tt + 1, word >> 3);
    }
    yb[0] = a0, yb[1] = a1;
}

void bg_linear_lut_s8(const int8_t *x, int32_t *y, const bg_lut_fc_t *p, int16_t *scratch)
{
    const uint32_t bits = bg_enc_bits(p->enc);
    const uint32_t inputs = bits >= 4 ? 1u : 4u / bits; /* inputs per column */
    const uint32_t n_cols = (p->n_in * bits + 3u) >> 2;
    /* blocks of 8 (5..7 rows left over are padded to a block); then p->tail_rows more */
    const uint32_t n_blocks = (p->n_out >> 3) + ((p->n_out & 7u) > 4u);
    int32_t z = 0;
    uint32_t o, i, col = 0;

    if (p->rowsum)
        for (i = 1, z = x[0]; i < p->n_in; i++)
            if (x[i] < z)
                z = x[i];
    for (o = 0; o < p->n_out; o++) { /* sum w x = sum w (x - z) + z * rowsum */
        int32_t a = p->bias ? p->bias[o] : 0;
        if (z < 0)
            a -= bg_mul_small(p->rowsum[o], (uint32_t)-z);
        else if (z > 0)
            a += bg_mul_small(p->rowsum[o], (uint32_t)z);
        y[o] = a;
    }

    while (col < n_cols) {
        int16_t *t = scratch; /* end of the tables built in this pass */
        uint32_t b;
        /* Build up to `chunk` tables for the next columns that are not all zero. */
        if (bits == 4) { /* one input per column: the common case, kept lean */
            for (; col < n_cols && t != scratch + 17u * p->chunk; col++) {
                const int32_t xv = x[col] - z;
                if (xv) {
                    t[0] = (int16_t)(col * 4u); /* byte offset of this column's word in a block */
                    bg_lut_table4(t + 1, xv, p->enc);
                    t += 17;
                }
            }
        }
        if (BG_TWO_BIT && bits == 2) { /* two inputs per column, kept in registers */
            for (; col < n_cols && t != scratch + 17u * p->chunk; col++) {
                const uint32_t i = 2u * col;
                const int32_t x0 = x[i] - z, x1 = i + 1u < p->n_in ? x[i + 1u] - z : 0;
                if (x0 | x1) {
                    t[0] = (int16_t)(col * 4u);
                    bg_lut_table2(t + 1, x0, x1, p->enc);
                    t += 17;
                }
            }
        }
        if (BG_USES(BG_ENC_8BIT) && bits == 8) { /* two columns per input: its weights' nibbles */
            for (; col < n_cols && t != scratch + 17u * p->chunk; col++) {
                const int32_t xv = x[col >> 1] - z;
                if (xv) {
                    t[0] = (int16_t)(col * 4u);
                    bg_lut_table8(t + 1, xv, col & 1u);
                    t += 17;
                }
            }
        }
        /* columns of four inputs (binary) */
        for (; BG_USES(BG_ENC_BINARY) && bits == 1 && col < n_cols && t != scratch + 17u * p->chunk; col++) {
            int32_t xs[4];
            uint32_t k, nonzero = 0;
            const uint32_t first = col * inputs;
            for (k = 0; k < inputs; k++) {
                xs[k] = first + k < p->n_in ? x[first + k] - z : 0;
                nonzero |= (uint32_t)xs[k];
            }
            if (!nonzero)
                continue;
            t[0] = (int16_t)(col * 4u);
            bg_lut_table_binary(t + 1, xs);
            t += 17;
        }
        t[0] = -1; /* ends the tables built: frees a register in the loop below */
        /* Every block of 8 outputs adds one entry of every table. */
        if (t != scratch) {
            const uint32_t *wb = p->w;
            for (b = 0; b < n_blocks; b++, wb += n_cols)
                bg_lut_block(scratch, wb, y + 8 * b);
            if (p->tail_rows == 4)
                bg_lut_block4(scratch, (const uint16_t *)p->tail, y + 8 * b);
            else if (p->tail_rows == 2)
                bg_lut_block2(scratch, (const uint8_t *)p->tail, y + 8 * b);
        }
    }
}
