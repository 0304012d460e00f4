/* Row bands of tiled steps; see bg_rows.h. */
#include "bg_rows.h"

void bg_copy_rows(const uint8_t *x, uint8_t *y, uint32_t planes, uint32_t x_stride, uint32_t y_stride,
                  uint32_t bytes)
{
    uint32_t p, i;
    for (p = 0; p < planes; p++, x += x_stride, y += y_stride)
        for (i = 0; i < bytes; i++)
            y[i] = x[i];
}

#define BG_T int8_t
#define BG_SUF(name) name##_s8
#include "bg_rows.inc"
#undef BG_T
#undef BG_SUF

#define BG_T int32_t
#define BG_SUF(name) name##_s32
#include "bg_rows.inc"
