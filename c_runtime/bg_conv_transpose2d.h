/* Transposed 2-D convolution (bitgen/ops/conv_transpose2d.py), computed by gathering: each
 * output sums the inputs that scatter onto it, so the zero-inserted input is never formed. */
#ifndef BG_CONV_TRANSPOSE2D_H
#define BG_CONV_TRANSPOSE2D_H

#include "bg_runtime.h"

/* Shapes as bg_conv_shape_t; w holds one packed row per output channel o, of (c / groups) * kh * kw
 * weights in (input channel of o's group, ky, kx) order. */
void bg_conv_transpose2d_s8(const int8_t *x, int32_t *y, const bg_conv_shape_t *s, const uint8_t *w,
                            uint8_t enc, const int32_t *bias);
void bg_conv_transpose2d_s32(const int32_t *x, int32_t *y, const bg_conv_shape_t *s, const uint8_t *w,
                             uint8_t enc, const int32_t *bias);

#endif /* BG_CONV_TRANSPOSE2D_H */
