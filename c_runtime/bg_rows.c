/* Row bands of tiled steps; see bg_rows.h. */
#include "bg_rows.h"

void bg_copy_rect(const uint8_t *x, uint8_t *y, uint32_t planes, uint32_t rows, uint32_t bytes, uint32_t x_row,
                  uint32_t x_plane, uint32_t y_row, uint32_t y_plane)
{
    uint32_t p, r, i;
    for (p = 0; p < planes; p++, x += x_plane, y += y_plane)
        for (r = 0; r < rows; r++)
            for (i = 0; i < bytes; i++)
                y[r * y_row + i] = x[r * x_row + i];
}

#define BG_T int8_t
#define BG_SUF(name) name##_s8
#include "bg_rows.inc"
#undef BG_T
#undef BG_SUF

#define BG_T int32_t
#define BG_SUF(name) name##_s32
#include "bg_rows.inc"
