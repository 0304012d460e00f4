/* Binary x binary layers as XNOR and population count (bitgen/backends/c/kernels/xnor.py).
 *
 * When every input value is +1 or -1 (a binary tensor, bitgen.ir.TensorType.binary) and every
 * weight is +1 or -1, a product is +1 where the two signs agree and -1 where they differ, so a
 * sum over n taps is n - 2 * (taps that differ): one XOR and one population count per 32 taps,
 * no multiplication at all (RV32EC has none). Bit 1 stands for +1, as code 1 of the binary
 * weight encoding. The sum is exactly golden's bias + sum w * x: every term is the same integer,
 * and ir.validate proved the result fits int32 (n - 2 * differing lies in [-n, n]).
 *
 * A convolution first gathers its input into *columns*: for each output pixel of each group,
 * its receptive field's signs in nw = (taps + 31) / 32 words, in one of two tap orders (the
 * weight rows are stored in the same order):
 *
 *   BG_XNOR_ROWS    (input channel, kernel row, kernel column): the input is first packed as
 *                   bits along each row, and each kernel row of a receptive field is one slice
 *                   of kw bits (few input channels);
 *   BG_XNOR_PIXELS  (kernel row, kernel column, input channel): the input is first packed as
 *                   the channels' bits of each pixel, and each kernel tap is one slice of the
 *                   group's channels (many input channels).
 *
 * Padding taps (zeros, no +-1 value) are left out of the sum: a padded layer's columns are
 * followed by two mask tables, the taps whose kernel row lies inside the image for each output
 * row (oh * nw words), and those whose kernel column does for each output column (ow * nw);
 * a pixel sums the taps in both. Scratch, in words (xnor.py computes it):
 *
 *   groups * oh * ow * nw  columns   (+ (oh + ow) * nw masks when padded)
 *   + the packed input while the columns are gathered:
 *     ROWS   c * h * ((w + 2 * pw + 31) / 32)     PIXELS  h * w * ((c + 31) / 32)
 *
 * The columns are built once per layer and read by every output channel of its group.
 */
#ifndef BG_XNOR_H
#define BG_XNOR_H

#include "bg_runtime.h"

enum { BG_XNOR_ROWS = 0, BG_XNOR_PIXELS = 1 };

/* Gather the binary CHW input x into columns in `order` (and the masks of a padded layer). */
void bg_xnor_columns_s8(const int8_t *x, const bg_conv_shape_t *s, uint8_t order, uint32_t *cols);
void bg_xnor_columns_s32(const int32_t *x, const bg_conv_shape_t *s, uint8_t order, uint32_t *cols);

/* Output channels first .. first + count - 1 of the convolution into y (CHW: count planes),
 * from the columns. w: the layer's weights, one row of nw words of signs per output channel
 * in the columns' order; bias: the layer's (per output channel) or 0. */
void bg_xnor_conv2d(const uint32_t *cols, int32_t *y, const bg_conv_shape_t *s, const uint32_t *w,
                    const int32_t *bias, uint32_t first, uint32_t count);

/* A fully connected layer on a binary vector: x is packed into `bits` ((n_in + 31) / 32 words
 * of scratch), then each output is one row of words of w. */
void bg_xnor_linear_s8(const int8_t *x, int32_t *y, uint32_t n_in, uint32_t n_out, const uint32_t *w,
                       const int32_t *bias, uint32_t *bits);
void bg_xnor_linear_s32(const int32_t *x, int32_t *y, uint32_t n_in, uint32_t n_out, const uint32_t *w,
                        const int32_t *bias, uint32_t *bits);

/* y = a * b for binary a and b (y may be a or b): +1 where they agree, else -1. */
void bg_xnor_mul_s8(const int8_t *a, const int8_t *b, int8_t *y, uint32_t n);

#endif /* BG_XNOR_H */
