/* Pieces of the dense row convolution whose shapes are fixed at compile time
 * (bg_conv_rows.inc, instantiated once per layer by the emitted model source). */
#ifndef BG_CONV_ROWS_H
#define BG_CONV_ROWS_H

#include "bg_conv2d_plane.h" /* bg_post_value: the fused output stage */
#include "bg_dsp.h"

#define BG_CR_MAX(a, b) ((a) < (b) ? (b) : (a))
#define BG_CR_MIN(a, b) ((a) < (b) ? (a) : (b))

#endif /* BG_CONV_ROWS_H */
