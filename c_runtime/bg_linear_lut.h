/* Parameters of the nibble lookup-table fully connected kernel (bg_linear_lut.c). */
#ifndef BG_LINEAR_LUT_H
#define BG_LINEAR_LUT_H

#include "bg_runtime.h"

typedef struct {
    const uint32_t *w;     /* [n_out / 8][n_cols] words: nibble of row 8b+r at bits 4r..4r+3 */
    const void *tail;      /* the last tail_rows rows: [n_cols] uint16 (4 rows) or uint8 (2 rows) */
    const int32_t *bias;   /* n_out values, or 0 */
    const int16_t *rowsum; /* n_out sums of each row's weight values, or 0: no input offset */
    uint16_t n_in, n_out;
    uint16_t chunk;        /* tables built per pass (scratch: BG_LUT_SCRATCH_BYTES(chunk)) */
    uint8_t enc;
    uint8_t tail_rows;     /* 0, 2 or 4: n_out % 8 rounded up */
} bg_lut_fc_t;

/* Bytes of scratch for `chunk` tables per pass: 17 int16 per table and the int16 that ends
 * them. The emitter reserves the same (bitgen/backends/c/kernels/lut.py: scratch_bytes;
 * tests/test_c_facts.py checks that they agree). */
#define BG_LUT_SCRATCH_BYTES(chunk) (2u * (17u * (uint32_t)(chunk) + 1u))

/* y must hold n_out rounded up to the tail block; scratch BG_LUT_SCRATCH_BYTES(p->chunk) bytes. */
void bg_linear_lut_s8(const int8_t *x, int32_t *y, const bg_lut_fc_t *p, int16_t *scratch);

#endif /* BG_LINEAR_LUT_H */
