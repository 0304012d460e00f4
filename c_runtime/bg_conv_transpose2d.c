/* Transposed 2-D convolution, reference kernel; see bg_conv_transpose2d.h. */
#include "bg_conv_transpose2d.h"

#define BG_T int8_t
#define BG_SUF(name) name##_s8
#include "bg_conv_transpose2d.inc"
#undef BG_T
#undef BG_SUF

#define BG_T int32_t
#define BG_SUF(name) name##_s32
#include "bg_conv_transpose2d.inc"
