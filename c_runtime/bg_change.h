/* Change-based inference (bitgen/ops/change_gate.py): a gate passes the pixels of its input x
 * that moved by more than a threshold since its reference r, and r's values elsewhere; the
 * reference takes the gate's output at the end of the frame (a model state). */
#ifndef BG_CHANGE_H
#define BG_CHANGE_H

#include "bg_runtime.h"
#include "bg_conv2d_plane.h" /* bg_post_t: the output stage of a convolution */

/* y = the gate of x against r, `channels` planes of `plane` values (a vector: channels = 1);
 * returns the number of pixels that changed. y may not be x or r. */
uint32_t bg_change_gate_s8(const int8_t *x, const int8_t *r, int8_t *y, uint32_t channels, uint32_t plane,
                           int32_t threshold);
uint32_t bg_change_gate_s32(const int32_t *x, const int32_t *r, int32_t *y, uint32_t channels, uint32_t plane,
                            int32_t threshold);

/* A gate, the convolution reading it and the output stage after that (ReLU / requantization,
 * then a P x P stride-P max pool), in one kernel that recomputes only the outputs whose
 * receptive field holds a changed pixel. The reference r is updated in place (it is the gate's
 * state), and y keeps the step's output from the frame before (a buffer outside the arena):
 * an output whose receptive field did not change keeps its value, which is the value of the
 * unchanged reference, so y equals golden's dense layers of the reference every frame. */
typedef struct {
    const int8_t *weight;  /* [co][c][kh][kw] */
    const int32_t *bias;   /* per output channel, or 0 */
    const uint16_t *rows;  /* per input row: (first output row of y it reaches * yw, how many, that row) */
    const uint16_t *cols;  /* per input column: (first output column of y it reaches, how many) */
    const bg_post_t *post; /* the output stage, or 0: y is the accumulator */
    uint16_t c, h, w, co;  /* input, output channels */
    uint16_t yh, yw;       /* y's plane: the convolution's, pooled */
    uint8_t kh, kw, sh, sw, ph, pw, pool;
    int32_t threshold;
    uint32_t dense_above; /* more outputs to recompute than this: recompute them all */
    uint32_t band_gain4;  /* 4 x the cost per product of outputs recomputed one by one over the band kernel's */
} bg_change_conv_t;

/* Rows y0 .. y1 - 1, columns x0 .. x1 - 1 of y (all its channels; it may compute more columns)
 * recomputed from the reference by the target's dense row kernel (bg_conv_rows.inc), its window
 * at `win`: the emitted model defines one per step where the target has that kernel. */
typedef void (*bg_change_band_t)(const int8_t *ref, void *y, void *win, uint32_t y0, uint32_t y1, uint32_t x0,
                                 uint32_t x1);

/* One frame: gate x against ref (updated in place), then recompute the touched outputs of y
 * (all of them when `all`: the first frame after a reset). Per run of rows with touched
 * outputs: their bounding rectangle by `band` (0: none) where that costs less (band_gain4);
 * else rows with many touched outputs by `band`, and the others output by output. Scratch:
 * yh * yw marks, 3 uint16 per row of y, a receptive field of c * kh * kw int16, co int32
 * results, then band's window (each part 4-aligned). Returns the number of pixels that changed. */
#define BG_DECLARE_CHANGE_CONV(OUT, TO)                                                          \
    uint32_t bg_change_conv_s8_##OUT(const int8_t *x, int8_t *ref, TO *y, const bg_change_conv_t *p, \
                                     uint8_t *scratch, uint32_t all, bg_change_band_t band);
BG_DECLARE_CHANGE_CONV(s8, int8_t)
BG_DECLARE_CHANGE_CONV(s32, int32_t)
#undef BG_DECLARE_CHANGE_CONV

/* The innermost loops of the change kernels are functions of their own: inlined into the loops
 * around them, they would run out of RV32E's 16 registers and keep their values on the stack. */
#if defined(__GNUC__)
#define BG_CHANGE_NOINLINE __attribute__((noinline))
#else
#define BG_CHANGE_NOINLINE
#endif

/* The same step by deltas (bg_change_delta.inc, included by the emitted model once per step),
 * for targets with a multiplier: the step keeps the convolution's accumulators and adds each
 * changed value's products to them. Its constant tables: */
typedef struct {
    const void *weight;       /* [c][kh][kw][co], each kernel row reversed: tap (ky, kx) at [c][ky][kw - 1 - kx];
                               * int8_t, or int32_t pairs w[2j] + w[2j + 1] * 2^16 (bg_change_delta.inc) */
    const int32_t *bias;      /* per output channel, or 0 */
    const uint16_t *rows;     /* per input row: (first pooled output row * yw, how many, that row) */
    const uint16_t *cols;     /* per input column: (first pooled output column, how many) */
    const uint16_t *acc_rows; /* per input row: (first convolution output row it reaches, how many, its kernel row there) */
    const uint16_t *acc_cols; /* per input column: (first convolution output column, how many, its kernel column there) */
    const int8_t *fc_weight;  /* a Linear after the step (BG_CD_FC): its weights [input][output], or 0 */
    const int32_t *fc_bias;   /* its bias, or 0 */
} bg_change_delta_t;

#endif /* BG_CHANGE_H */
