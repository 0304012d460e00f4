/* Parameters of the lookup-table transposed convolution (bg_convt_lut.c). */
#ifndef BG_CONVT_LUT_H
#define BG_CONVT_LUT_H

#include "bg_runtime.h"
#include "bg_conv2d_plane.h" /* bg_post_t, bg_post_value */
#include "bg_linear_lut.h"

typedef struct {
    const bg_lut_fc_t *fc;    /* sh * sw phases, phase (py, px) at py * sw + px: the weights of
                                 taps ky = py + j sh, kx = px + i sw as a fully connected layer
                                 over (channel, j, i); co rows */
    const bg_conv_shape_t *s; /* groups 1, kh >= sh and kw >= sw (every phase has a tap) */
    const bg_post_t *post;    /* the fused output stage (no pool), or 0 (int32 sums stored) */
    uint8_t out8;             /* 1: int8 output; 0: int32 */
} bg_convt_lut_t;

/* col: the largest phase's n_in bytes; acc: its n_out rounded up to its tail block, int32;
 * tables: BG_LUT_SCRATCH_BYTES of the largest chunk. y: co planes of oh x ow. */
void bg_convt_lut_s8(const int8_t *x, void *y, const bg_convt_lut_t *p, int8_t *col, int32_t *acc,
                     int16_t *tables);

#endif /* BG_CONVT_LUT_H */
