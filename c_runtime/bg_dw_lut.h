/* Parameters of the lookup-table plane convolution (bg_dw_lut.c). */
#ifndef BG_DW_LUT_H
#define BG_DW_LUT_H

#include "bg_runtime.h"
#include "bg_conv2d_plane.h" /* bg_post_t, bg_post_value, the staging functions */

typedef struct {
    const int8_t *w;       /* kh * kw int8 taps per output channel */
    const int32_t *bias;   /* per output channel, or 0 */
    const bg_post_t *post; /* the fused output stage, or 0 (int32 sums stored as they are) */
    uint16_t ws;           /* elements per row of the input plane */
    uint16_t rows, cols;   /* outputs computed (pooled: the even part) */
    uint8_t kh, kw, sh, sw;
    uint8_t out8;          /* 1: int8 output; 2: uint16 (a plane of 0..65535 in a step); 0: int32 */
    uint8_t in_log2;       /* bg_dwconv_lut_u: input elements of 1 (int8 + 128), 2 (uint16) or 4 bytes (int32) */
    uint8_t top;           /* bg_dwconv_lut_u: 4 * (nibbles of the largest input - 1) */
    uint8_t taps;          /* kh * kw */
    uint32_t row_step;     /* sh * ws: input elements from one output row to the next */
} bg_dw_lut_t;

/* (Products of parameters come from the emitter, and the caller passes the channel's taps wc:
 * a multiply is a libgcc call on RV32EC.) */

/* Output plane `channel` from its input plane x (int8); tables: 64 * kh * kw bytes. */
void bg_dwconv_lut_s8(const int8_t *x, void *y, const bg_dw_lut_t *p, uint32_t channel, const int8_t *wc,
                      int16_t *tables);

/* The same from a plane of non-negative values below 16^(top / 4 + 1) (uint16 or int32, after a
 * ReLU), or of int8 values read plus 128 (top 4; the bias holds -128 sum w); tables: 32 * kh * kw
 * bytes. */
void bg_dwconv_lut_u(const void *x, void *y, const bg_dw_lut_t *p, uint32_t channel, const int8_t *wc,
                     int16_t *tables);

#endif /* BG_DW_LUT_H */
