/* XNOR-popcount kernels for binary x binary convolutions and fully connected layers, and the
 * product of binary tensors; see bg_xnor.h. No multiplication or division at run time: RV32EC
 * (the CH32V003) has neither, and each would be a libgcc call there. */
#include "bg_xnor.h"

/* The innermost loops live in small functions of their own: inlined into the loops around them,
 * they would run out of RV32E's 16 registers and keep their values on the stack. */
#if defined(__GNUC__)
#define BG_NOINLINE __attribute__((noinline))
#else
#define BG_NOINLINE
#endif

/* v becomes the number of its set bits, by adding neighbouring bit fields (no multiplier, no
 * table). A macro: -Os would otherwise call a function for it in the innermost loops. */
#define BG_POPCOUNT(v)                                                                          \
    do {                                                                                        \
        v = v - ((v >> 1) & 0x55555555u);                                                       \
        v = (v & 0x33333333u) + ((v >> 2) & 0x33333333u);                                       \
        v = (v + (v >> 4)) & 0x0F0F0F0Fu;                                                       \
        v += v >> 8;                                                                            \
        v = (v + (v >> 16)) & 0x3Fu;                                                            \
    } while (0)

/* Bits [at, at + n) of the bit string `line`, n <= 32. */
#define BG_SLICE(v, line, at, n)                                                                \
    do {                                                                                        \
        const uint32_t *l_ = (line) + ((at) >> 5);                                              \
        const uint32_t s_ = (at) & 31u;                                                         \
        v = l_[0] >> s_;                                                                        \
        if (s_ + (n) > 32u)                                                                     \
            v |= l_[1] << (32u - s_);                                                           \
        if ((n) < 32u)                                                                          \
            v &= (1u << (n)) - 1u;                                                              \
    } while (0)

static uint32_t bg_ones(uint32_t n)
{
    return n >= 32u ? 0xFFFFFFFFu : (1u << n) - 1u;
}
/* ROWS: one slice, the n bits of packed input row r from bit ox * step, into the records of the
 * ow pixels of an output row (rec: the first pixel's), at bit `pos` of each. */
BG_NOINLINE static void bg_xnor_row_slices(uint32_t *rec, const uint32_t *r, const bg_xnor_conv_t *p,
                                           uint32_t pos, uint32_t n)
{
    const uint32_t s = pos & 31u, step = p->step, end = p->end, nw = p->nw;
    uint32_t at, *q;
    rec += pos >> 5;
    if (p->line > 1u) { /* a slice may straddle two words of the row */
        for (at = 0, q = rec; at < end; at += step, q += nw) {
            uint32_t v;
            BG_SLICE(v, r, at, n);
            q[0] |= v << s;
            if (s + n > 32u)
                q[1] |= v >> (32u - s);
        }
        return;
    }
    {
        const uint32_t row = r[0], mask = bg_ones(n); /* the whole row: at + n <= 32 */
        for (at = 0, q = rec; at < end; at += step, q += nw)
            *q |= ((row >> at) & mask) << s;
        if (s + n > 32u) /* the slice's bits that spill into the next word of a record */
            for (at = 0, q = rec + 1; at < end; at += step, q += nw)
                *q |= ((row >> at) & mask) >> (32u - s);
    }
}

/* PIXELS: one slice, bits [first, first + n) of the packed pixels of an input row from word
 * offset `at` (output column 0's pixel, input column ix0) every `step` words, into the records of
 * the ow pixels of an output row at bit `pos`; columns outside [0, w) are padding, left 0. */
BG_NOINLINE static void bg_xnor_pixel_slices(uint32_t *rec, const uint32_t *packed, int32_t at, int32_t ix0,
                                             uint32_t first, const bg_xnor_conv_t *p, uint32_t pos, uint32_t n)
{
    const uint32_t s = pos & 31u, w = p->w, sw = p->sw, nw = p->nw, step = p->step;
    const uint32_t whole = p->cw == 1u && p->groups == 1u; /* a pixel's word is the slice */
    uint32_t ox, *q = rec + (pos >> 5);
    for (ox = 0; ox < p->ow; ox++, ix0 += (int32_t)sw, at += (int32_t)step, q += nw) {
        uint32_t v;
        if ((uint32_t)ix0 >= w)
            continue;
        if (whole) {
            v = packed[at];
        } else {
            BG_SLICE(v, packed + at, first, n);
        }
        q[0] |= v << s;
        if (s + n > 32u)
            q[1] |= v >> (32u - s);
    }
}

/* Records from the packed input: slice by slice of the tap order, each placed into the record
 * of every output pixel whose receptive field has it inside the image (a padding slice stays 0).
 * Offsets into `packed` are integers (the first rows and columns are negative in padded layers),
 * and a pointer is formed only for a row inside the image. */
static void bg_xnor_gather_rows(const bg_xnor_conv_t *p, const uint32_t *packed, uint32_t *cols)
{
    uint32_t g, ci, ky, oy, pos;
    for (g = 0; g < p->groups; g++, cols += p->group_words)
        for (pos = 0, ci = 0; ci < p->cig; ci++, packed += p->channel) {
            int32_t start = -(int32_t)p->top; /* row ky - ph of the channel */
            for (ky = 0; ky < p->kh; ky++, pos += p->kw, start += (int32_t)p->line) {
                int32_t iy = (int32_t)ky - (int32_t)p->ph, off = start;
                uint32_t *rec = cols;
                for (oy = 0; oy < p->oh; oy++, iy += p->sh, off += (int32_t)p->line_step, rec += p->row_words)
                    if ((uint32_t)iy < p->h)
                        bg_xnor_row_slices(rec, packed + off, p, pos, p->kw);
            }
        }
}

static void bg_xnor_gather_pixels(const bg_xnor_conv_t *p, const uint32_t *packed, uint32_t *cols)
{
    uint32_t g, ky, kx, oy, done, first, pos;
    int32_t row, tap; /* word offsets of pixel (ky - ph, 0) and of pixel (ky - ph, kx - pw) */
    for (g = 0, first = 0; g < p->groups; g++, first += p->cig, cols += p->group_words)
        for (pos = 0, ky = 0, row = -(int32_t)p->top; ky < p->kh; ky++, row += (int32_t)p->line)
            for (kx = 0, tap = row - (int32_t)p->left; kx < p->kw; kx++, tap += (int32_t)p->cw)
                for (done = 0; done < p->cig; done += 32u) {
                    const uint32_t n = p->cig - done < 32u ? p->cig - done : 32u;
                    const int32_t ix0 = (int32_t)kx - (int32_t)p->pw;
                    int32_t iy = (int32_t)ky - (int32_t)p->ph, off = tap;
                    uint32_t *rec = cols;
                    for (oy = 0; oy < p->oh; oy++, iy += p->sh, off += (int32_t)p->line_step, rec += p->row_words)
                        if ((uint32_t)iy < p->h)
                            bg_xnor_pixel_slices(rec, packed, off, ix0, first + done, p, pos, n);
                    pos += n;
                }
}

/* Pack the input (ROWS: bit pw + ix of line (c, iy); PIXELS: bit c of pixel iy * w + ix), then
 * gather the records. */
#define BG_XNOR_COLUMNS(SUF, T)                                                                 \
    void bg_xnor_columns_##SUF(const T *x, const bg_xnor_conv_t *p, uint32_t *cols)             \
    {                                                                                           \
        uint32_t *const packed = cols + p->records, *line = packed;                             \
        uint32_t c, i, k;                                                                       \
        if (p->order == BG_XNOR_ROWS) {                                                         \
            for (c = 0; c < p->c; c++)                                                          \
                for (i = 0; i < p->h; i++, line += p->line) {                                   \
                    for (k = 0; k < p->line; k++)                                               \
                        line[k] = 0;                                                            \
                    for (k = p->pw; k < p->pw + p->w; k++)                                      \
                        if (*x++ > 0)                                                           \
                            line[k >> 5] |= 1u << (k & 31u);                                    \
                }                                                                               \
        } else {                                                                                \
            for (i = 0; i < p->plane; i++, line += p->cw) {                                     \
                const T *v = x + i;                                                             \
                for (k = 0; k < p->cw; k++)                                                     \
                    line[k] = 0;                                                                \
                for (k = 0; k < p->c; k++, v += p->plane)                                       \
                    if (*v > 0)                                                                 \
                        line[k >> 5] |= 1u << (k & 31u);                                        \
            }                                                                                   \
        }                                                                                       \
        for (i = 0; i < p->records; i++)                                                        \
            cols[i] = 0;                                                                        \
        if (p->order == BG_XNOR_ROWS)                                                           \
            bg_xnor_gather_rows(p, packed, cols);                                               \
        else                                                                                    \
            bg_xnor_gather_pixels(p, packed, cols);                                             \
    }
BG_XNOR_COLUMNS(s8, int8_t)
BG_XNOR_COLUMNS(s32, int32_t)

/* `count` outputs of a plane whose receptive fields lie inside the image: every tap counts. */
static void bg_xnor_inside(const uint32_t *rec, int32_t *y, uint32_t count, const bg_xnor_conv_t *p,
                           const uint32_t *w, int32_t b)
{
    const uint32_t nw = p->nw;
    const int32_t taps = (int32_t)p->taps, *const end = y + count;
    if (nw == 1u) {
        const uint32_t w0 = w[0];
        while (y != end) {
            uint32_t v = *rec++ ^ w0;
            BG_POPCOUNT(v);
            *y++ = b + (taps - (int32_t)(v << 1));
        }
        return;
    }
    for (; y != end; rec += nw) {
        uint32_t k, differ = 0;
        for (k = 0; k < nw; k++) {
            uint32_t v = rec[k] ^ w[k];
            BG_POPCOUNT(v);
            differ += v;
        }
        *y++ = b + (taps - (int32_t)(differ << 1));
    }
}

/* `count` outputs of a plane at the border of a padded layer: the taps in both of a pixel's
 * masks count (rm: its output row's, cm: the first pixel's output column's). */
static void bg_xnor_border(const uint32_t *rec, int32_t *y, uint32_t count, const bg_xnor_conv_t *p,
                           const uint32_t *w, int32_t b, const uint32_t *rm, const uint32_t *cm)
{
    const uint32_t nw = p->nw;
    const int32_t *const end = y + count;
    if (nw == 1u) {
        const uint32_t w0 = w[0], r = rm[0];
        while (y != end) {
            uint32_t m = r & *cm++, v = (*rec++ ^ w0) & m;
            BG_POPCOUNT(m);
            BG_POPCOUNT(v);
            *y++ = b + ((int32_t)m - (int32_t)(v << 1));
        }
        return;
    }
    for (; y != end; rec += nw, cm += nw) {
        uint32_t k, n = 0, differ = 0;
        for (k = 0; k < nw; k++) {
            uint32_t m = rm[k] & cm[k], v = (rec[k] ^ w[k]) & m;
            BG_POPCOUNT(m);
            BG_POPCOUNT(v);
            n += m;
            differ += v;
        }
        *y++ = b + ((int32_t)n - (int32_t)(differ << 1));
    }
}

/* One output channel's plane. In a padded layer, output rows [ylo, yhi) and columns [xlo, xhi)
 * see no padding; the other pixels sum only the taps of their masks. */
static void bg_xnor_plane(const uint32_t *rec, int32_t *y, const bg_xnor_conv_t *p, const uint32_t *w, int32_t b)
{
    const uint32_t ow = p->ow, nw = p->nw, *rm = p->masks, *const cm = p->masks + p->mask_cols;
    uint32_t oy;
    if (!p->padded) {
        bg_xnor_inside(rec, y, p->pixels, p, w, b);
        return;
    }
    for (oy = 0; oy < p->oh; oy++, rm += nw, rec += p->row_words, y += ow) {
        if (oy < p->ylo || oy >= p->yhi) {
            bg_xnor_border(rec, y, ow, p, w, b, rm, cm);
            continue;
        }
        bg_xnor_border(rec, y, p->xlo, p, w, b, rm, cm);
        bg_xnor_inside(rec + p->xlo * nw, y + p->xlo, p->xhi - p->xlo, p, w, b);
        bg_xnor_border(rec + p->xhi * nw, y + p->xhi, ow - p->xhi, p, w, b, rm, cm + p->xhi * nw);
    }
}

void bg_xnor_conv2d(const uint32_t *group, int32_t *y, const bg_xnor_conv_t *p,
                    const uint32_t *w, const int32_t *bias, uint32_t count)
{
    uint32_t o, og = 0;
    for (o = 0; o < count; o++, w += p->nw, y += p->pixels) {
        bg_xnor_plane(group, y, p, w, bias ? bias[o] : 0);
        if (++og == p->cog) { /* the next output channel reads the next group's records */
            og = 0;
            group += p->group_words;
        }
    }
}

#define BG_XNOR_LINEAR(SUF, T)                                                                  \
    void bg_xnor_linear_##SUF(const T *x, int32_t *y, uint32_t n_in, uint32_t n_out,            \
                              const uint32_t *w, const int32_t *bias, uint32_t *bits)           \
    {                                                                                           \
        const uint32_t nw = (n_in + 31u) >> 5;                                                  \
        uint32_t i, o, k, word = 0, bit = 1u, *out = bits;                                      \
        for (i = 0; i < n_in; i++) {                                                            \
            if (x[i] > 0)                                                                       \
                word |= bit;                                                                    \
            bit <<= 1;                                                                          \
            if (!bit) {                                                                         \
                *out++ = word;                                                                  \
                word = 0;                                                                       \
                bit = 1u;                                                                       \
            }                                                                                   \
        }                                                                                       \
        if (bit != 1u)                                                                          \
            *out = word; /* the rest of the word stays 0, as in the weight rows: never differs */\
        for (o = 0; o < n_out; o++, w += nw) {                                                  \
            uint32_t differ = 0;                                                                \
            for (k = 0; k < nw; k++) {                                                          \
                uint32_t v = bits[k] ^ w[k];                                                    \
                BG_POPCOUNT(v);                                                                 \
                differ += v;                                                                    \
            }                                                                                   \
            y[o] = (bias ? bias[o] : 0) + ((int32_t)n_in - (int32_t)(differ << 1));             \
        }                                                                                       \
    }
BG_XNOR_LINEAR(s8, int8_t)
BG_XNOR_LINEAR(s32, int32_t)

/* The product of two binary tensors: +1 where the signs agree, -1 where they differ. */
void bg_xnor_mul_s8(const int8_t *a, const int8_t *b, int8_t *y, uint32_t n)
{
    uint32_t i;
    for (i = 0; i < n; i++)
        y[i] = (int8_t)(a[i] == b[i] ? 1 : -1);
}
