/* Nearest-neighbour upsampling by integer factors (bitgen/ops/upsample.py). */
#ifndef BG_UPSAMPLE_H
#define BG_UPSAMPLE_H

#include "bg_runtime.h"

/* y[c][i][j] = x[c][i / fh][j / fw] for a (c, h, w) input; y must not overlap x. */
void bg_upsample_s8(const int8_t *x, int8_t *y, uint32_t c, uint32_t h, uint32_t w, uint32_t fh, uint32_t fw);
void bg_upsample_s32(const int32_t *x, int32_t *y, uint32_t c, uint32_t h, uint32_t w, uint32_t fh, uint32_t fw);

#endif /* BG_UPSAMPLE_H */
