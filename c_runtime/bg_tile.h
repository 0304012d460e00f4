/* Channels laid out as a grid of planes (bitgen/ops/tile.py). */
#ifndef BG_TILE_H
#define BG_TILE_H

#include "bg_runtime.h"

/* y[(k % rows) * h + i][(k / rows) * w + j] = x[k][i][j] for k < rows * cols; y must not overlap x. */
void bg_tile_s8(const int8_t *x, int8_t *y, uint32_t rows, uint32_t cols, uint32_t h, uint32_t w);
void bg_tile_s32(const int32_t *x, int32_t *y, uint32_t rows, uint32_t cols, uint32_t h, uint32_t w);

#endif /* BG_TILE_H */
