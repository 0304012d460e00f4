/* Nearest-neighbour upsampling; see bg_upsample.h. */
#include "bg_upsample.h"

#define BG_T int8_t
#define BG_SUF(name) name##_s8
#include "bg_upsample.inc"
#undef BG_T
#undef BG_SUF

#define BG_T int32_t
#define BG_SUF(name) name##_s32
#include "bg_upsample.inc"
