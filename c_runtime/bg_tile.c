/* Channels as a grid of planes; see bg_tile.h. */
#include "bg_tile.h"

#define BG_T int8_t
#define BG_SUF(name) name##_s8
#include "bg_tile.inc"
#undef BG_T
#undef BG_SUF

#define BG_T int32_t
#define BG_SUF(name) name##_s32
#include "bg_tile.inc"
