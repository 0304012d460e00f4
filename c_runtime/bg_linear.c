/* Fully connected layer, reference kernel: y[o] = bias[o] + sum_i w[o][i] * x[i]. */
#include "bg_runtime.h"

#define BG_T int8_t
#define BG_SUF(name) name##_s8
#include "bg_linear.inc"
#undef BG_T
#undef BG_SUF

#define BG_T int32_t
#define BG_SUF(name) name##_s32
#include "bg_linear.inc"
