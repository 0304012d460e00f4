/* 2-D convolution (cross-correlation), reference kernel: CHW layout, zero padding, stride,
 * groups (groups == channels is depthwise). */
#include "bg_runtime.h"

#define BG_T int8_t
#define BG_SUF(name) name##_s8
#include "bg_conv2d.inc"
#undef BG_T
#undef BG_SUF

#define BG_T int32_t
#define BG_SUF(name) name##_s32
#include "bg_conv2d.inc"
