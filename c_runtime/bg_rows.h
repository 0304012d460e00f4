/* Row bands and tiles for tiled (depth-first) steps: copying a rectangle between a whole tensor
 * and a tile buffer, and nearest-neighbour upsampling of a band of rows (bitgen/backends/c/tiling.py). */
#ifndef BG_ROWS_H
#define BG_ROWS_H

#include "bg_runtime.h"

/* For each of `planes` channels p and each of `rows` rows r: copy `bytes` bytes from
 * x + p * x_plane + r * x_row to y + p * y_plane + r * y_row. */
void bg_copy_rect(const uint8_t *x, uint8_t *y, uint32_t planes, uint32_t rows, uint32_t bytes, uint32_t x_row,
                  uint32_t x_plane, uint32_t y_row, uint32_t y_plane);

/* Output rows lo .. lo + rows - 1 of an upsampling by (fh, fw), lo = r0 * fh + phase, from x
 * holding input rows r0 .. r0 + h - 1 of each of c channels (CHW, h rows per channel); y gets
 * `rows` rows per channel. y must not overlap x. */
void bg_upsample_rows_s8(const int8_t *x, int8_t *y, uint32_t c, uint32_t h, uint32_t w, uint32_t fh,
                         uint32_t fw, uint32_t phase, uint32_t rows);
void bg_upsample_rows_s32(const int32_t *x, int32_t *y, uint32_t c, uint32_t h, uint32_t w, uint32_t fh,
                          uint32_t fw, uint32_t phase, uint32_t rows);

#endif /* BG_ROWS_H */
