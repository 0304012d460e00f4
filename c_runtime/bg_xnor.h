/* Binary x binary layers as XNOR and population count (bitgen/backends/c/kernels/xnor.py).
 *
 * When every input value is +1 or -1 (a binary tensor, bitgen.ir.TensorType.binary) and every
 * weight is +1 or -1, a product is +1 where the two signs agree and -1 where they differ, so a
 * sum over n taps is n - 2 * (taps that differ): one XOR and one population count per 32 taps,
 * no multiplication at all (RV32EC has none). Bit 1 stands for +1, as code 1 of the binary
 * weight encoding. The sum is exactly golden's bias + sum w * x: every term is the same integer,
 * and ir.validate proved the result fits int32 (n - 2 * differing lies in [-n, n]).
 *
 * A convolution first gathers its input into *columns*: for each output pixel of each group, a
 * record of its receptive field's signs in nw = (taps + 31) / 32 words, in one of two tap orders
 * (the weight rows are stored in the same order):
 *
 *   BG_XNOR_ROWS    (input channel, kernel row, kernel column): the input is first packed as
 *                   bits along each row (padding included), and each kernel row of a receptive
 *                   field is one slice of kw bits (few input channels);
 *   BG_XNOR_PIXELS  (kernel row, kernel column, input channel): the input is first packed as
 *                   the channels' bits of each pixel, and each kernel tap is one slice of the
 *                   group's channels (many input channels).
 *
 * Padding taps (zeros, no +-1 value) are left out of the sum: a padded layer has two constant
 * mask tables, the taps whose kernel row lies inside the image for each output row (oh records),
 * then those whose kernel column does for each output column (ow records); a pixel sums the taps
 * in both. Scratch: the records, then the packed input while they are gathered. The emitter
 * computes the masks and every size once (bg_xnor_conv_t), so the C divides and multiplies
 * nothing at run time. The records are read by every output channel of their group.
 */
#ifndef BG_XNOR_H
#define BG_XNOR_H

#include "bg_runtime.h"

enum { BG_XNOR_ROWS = 0, BG_XNOR_PIXELS = 1 };

typedef struct {
    const uint32_t *masks;                     /* a padded layer's mask tables (oh + ow records), else 0 */
    uint16_t c, h, w, oh, ow;                  /* input channels and size, output size */
    uint8_t kh, kw, sh, sw, ph, pw;            /* kernel, stride, padding */
    uint8_t order, padded;                     /* BG_XNOR_ROWS / BG_XNOR_PIXELS; any padding */
    uint16_t groups, cig, cog, taps, nw;       /* groups; input, output channels and taps of a group; words of a record */
    uint16_t cw;                               /* PIXELS: words of a packed pixel, (c + 31) / 32 */
    uint32_t plane, pixels;                    /* h * w; oh * ow */
    uint32_t row_words, group_words, records;  /* ow * nw; oh * row_words; groups * group_words */
    uint32_t mask_cols;                        /* where the column masks start: oh * nw */
    uint16_t ylo, yhi, xlo, xhi;               /* padded: the output rows and columns that see no padding */
    uint32_t line, line_step;                  /* words of a packed input row; sh * line */
    uint32_t top, left;                        /* ph * line; PIXELS: pw * cw */
    uint32_t channel;                          /* ROWS: words of a packed channel, h * line */
    uint32_t step, end;                        /* between the slices of neighbouring pixels (ROWS:
                                                  bits, sw; PIXELS: words, sw * cw); ow * step */
} bg_xnor_conv_t;

/* Gather the binary CHW input x into records at cols. */
void bg_xnor_columns_s8(const int8_t *x, const bg_xnor_conv_t *p, uint32_t *cols);
void bg_xnor_columns_s32(const int32_t *x, const bg_xnor_conv_t *p, uint32_t *cols);

/* `count` output channels into y (CHW: count planes), the first of them reading the records at
 * `group` (those of its group: cols + group * group_words) and the weight row at w (nw words of
 * signs in the records' order), the next ones the rows after it; bias: the first channel's, or
 * 0. The channels of one call belong to one group, or the call starts at channel 0. */
void bg_xnor_conv2d(const uint32_t *group, int32_t *y, const bg_xnor_conv_t *p, const uint32_t *w,
                    const int32_t *bias, uint32_t count);

/* A fully connected layer on a binary vector: x is packed into `bits` ((n_in + 31) / 32 words
 * of scratch), then each output is one row of words of w. */
void bg_xnor_linear_s8(const int8_t *x, int32_t *y, uint32_t n_in, uint32_t n_out, const uint32_t *w,
                       const int32_t *bias, uint32_t *bits);
void bg_xnor_linear_s32(const int32_t *x, int32_t *y, uint32_t n_in, uint32_t n_out, const uint32_t *w,
                        const int32_t *bias, uint32_t *bits);

/* y = a * b for binary a and b (y may be a or b): +1 where they agree, else -1. */
void bg_xnor_mul_s8(const int8_t *a, const int8_t *b, int8_t *y, uint32_t n);

#endif /* BG_XNOR_H */
