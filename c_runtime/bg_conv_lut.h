/* Parameters of the lookup-table convolution (bg_conv_lut.c). */
#ifndef BG_CONV_LUT_H
#define BG_CONV_LUT_H

#include "bg_runtime.h"
#include "bg_conv2d_plane.h" /* bg_post_t, bg_post_value */
#include "bg_linear_lut.h"

typedef struct {
    const bg_lut_fc_t *fc;    /* the convolution as a fully connected layer over one receptive
                                 field: n_in = c * kh * kw inputs, n_out = co rows */
    const bg_conv_shape_t *s; /* groups 1 */
    const bg_post_t *post;    /* the fused output stage, or 0 (int32 sums stored as they are) */
    uint16_t rows, cols;      /* outputs computed per channel (pooled: the even part) */
    uint8_t out8;             /* 1: int8 output; 0: int32 */
} bg_conv_lut_t;

/* col: n_in bytes; acc: fc's n_out rounded up to its tail block, int32; tables:
 * BG_LUT_SCRATCH_BYTES(fc->chunk) bytes. y: co planes of rows x cols (pooled: halved). */
void bg_conv_lut_s8(const int8_t *x, void *y, const bg_conv_lut_t *p, int8_t *col, int32_t *acc,
                    int16_t *tables);

#endif /* BG_CONV_LUT_H */
