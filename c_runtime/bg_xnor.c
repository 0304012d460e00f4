/* XNOR-popcount kernels for binary x binary convolutions and fully connected layers; see
 * bg_xnor.h. No multiplication inside the loops: RV32EC (the CH32V003) has no multiplier, and
 * a variable product is a libgcc call there. */
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

/* OR the n bits of v into a record at bit `pos` (they may straddle two words). */
#define BG_PLACE(rec, pos, v, n)                                                                \
    do {                                                                                        \
        const uint32_t s_ = (pos) & 31u;                                                        \
        (rec)[(pos) >> 5] |= (v) << s_;                                                         \
        if (s_ + (n) > 32u)                                                                     \
            (rec)[((pos) >> 5) + 1u] |= (v) >> (32u - s_);                                      \
    } while (0)

static uint32_t bg_ones(uint32_t n)
{
    return n >= 32u ? 0xFFFFFFFFu : (1u << n) - 1u;
}

/* One slice of the tap order placed into the records of one output row (few live values: the
 * loops stay in RV32E's registers). */
typedef struct {
    uint32_t nw;    /* words of a record */
    uint32_t pos;   /* the slice's first bit in a record */
    uint32_t n;     /* its bits (<= 32) */
    uint32_t count; /* output pixels of the row */
    uint32_t step;  /* bits (ROWS) or words (PIXELS) between the slices of neighbouring pixels */
    uint32_t end;   /* count * step */
    uint32_t wide;  /* ROWS: a packed row has several words; PIXELS: a slice is not a whole word */
} bg_xnor_slice_t;

/* ROWS: the slice of pixel ox is bits [ox * step, + n) of the packed input row r. */
BG_NOINLINE static void bg_xnor_row_slices(uint32_t *rec, const uint32_t *r, const bg_xnor_slice_t *k)
{
    const uint32_t n = k->n, s = k->pos & 31u, step = k->step, end = k->end, nw = k->nw;
    uint32_t at, *p;
    rec += k->pos >> 5;
    if (k->wide) {
        for (at = 0, p = rec; at < end; at += step, p += nw) {
            uint32_t v;
            BG_SLICE(v, r, at, n);
            p[0] |= v << s;
            if (s + n > 32u)
                p[1] |= v >> (32u - s);
        }
        return;
    }
    {
        const uint32_t row = r[0], mask = bg_ones(n); /* the whole row: at + n <= 32 */
        for (at = 0, p = rec; at < end; at += step, p += nw)
            *p |= ((row >> at) & mask) << s;
        if (s + n > 32u) /* the slice's bits that spill into the next word */
            for (at = 0, p = rec + 1; at < end; at += step, p += nw)
                *p |= ((row >> at) & mask) >> (32u - s);
    }
}

/* PIXELS: the slice of pixel ox is bits [first, + n) of the packed pixel at word offset
 * at + ox * step, for the pixels whose input column ix = ix0 + ox * sw is inside [0, w). */
BG_NOINLINE static void bg_xnor_pixel_slices(uint32_t *rec, const uint32_t *pixels, int32_t ix0, uint32_t first,
                                             const bg_conv_shape_t *s, const bg_xnor_slice_t *k)
{
    const uint32_t n = k->n, sh = k->pos & 31u, w = s->w, sw = s->sw, nw = k->nw;
    const uint32_t *end = pixels + k->end;
    uint32_t *p = rec + (k->pos >> 5);
    if (k->wide) {
        for (; pixels != end; ix0 += (int32_t)sw, pixels += k->step, p += nw) {
            uint32_t v;
            if ((uint32_t)ix0 >= w)
                continue;
            BG_SLICE(v, pixels, first, n);
            p[0] |= v << sh;
            if (sh + n > 32u)
                p[1] |= v >> (32u - sh);
        }
        return;
    }
    for (; pixels != end; ix0 += (int32_t)sw, pixels += sw, p += nw) /* one word per pixel */
        if ((uint32_t)ix0 < w) {
            const uint32_t v = *pixels;
            p[0] |= v << sh;
            if (sh + n > 32u)
                p[1] |= v >> (32u - sh);
        }
}

/* n ones (or zeros) from bit pos of a record, 32 at a time. */
static void bg_xnor_run(uint32_t *rec, uint32_t pos, uint32_t n, uint32_t one)
{
    for (; n; pos += 32u) {
        const uint32_t part = n < 32u ? n : 32u;
        if (one)
            BG_PLACE(rec, pos, bg_ones(part), part);
        n -= part;
    }
}

/* The two mask tables of a padded layer (bg_xnor.h), in the columns' tap order: a record of nw
 * words per output row, then one per output column. The order is a sequence of runs: ROWS, for
 * each input channel and kernel row, the kw taps of that row; PIXELS, for each kernel row and
 * column, the group's cig channels. */
static void bg_xnor_masks(const bg_conv_shape_t *s, uint8_t order, uint32_t nw, uint32_t *rows)
{
    const uint32_t rows_mode = order == BG_XNOR_ROWS, cig = s->c / s->groups, kh = s->kh, kw = s->kw;
    const uint32_t channels = rows_mode ? cig : 1u, per_row = rows_mode ? 1u : kw, run = rows_mode ? kw : cig;
    uint32_t *cols = rows + (uint32_t)s->oh * nw, i, pos, ci, ky, kx;
    int32_t at;
    for (i = 0; i < (uint32_t)(s->oh + s->ow) * nw; i++)
        rows[i] = 0;
    /* per output row: the runs whose kernel row is inside the image */
    for (i = 0, at = -(int32_t)s->ph; i < s->oh; i++, at += s->sh, rows += nw)
        for (pos = 0, ci = 0; ci < channels; ci++)
            for (ky = 0; ky < kh; ky++) {
                const uint32_t in = (uint32_t)(at + (int32_t)ky) < s->h;
                for (kx = 0; kx < per_row; kx++, pos += run)
                    bg_xnor_run(rows, pos, run, in);
            }
    /* per output column: the taps whose kernel column is inside the image */
    for (i = 0, at = -(int32_t)s->pw; i < s->ow; i++, at += s->sw, cols += nw) {
        uint32_t inside = 0; /* bit kx: kernel column kx is inside */
        for (kx = 0; kx < kw; kx++)
            inside |= (uint32_t)((uint32_t)(at + (int32_t)kx) < s->w) << kx;
        for (pos = 0, ci = 0; ci < channels; ci++)
            for (ky = 0; ky < kh; ky++) {
                if (rows_mode) {
                    BG_PLACE(cols, pos, inside, kw);
                    pos += kw;
                    continue;
                }
                for (kx = 0; kx < kw; kx++, pos += cig)
                    bg_xnor_run(cols, pos, cig, (inside >> kx) & 1u);
            }
    }
}

/* Columns from the packed input (bg_xnor.h): slice by slice of the tap order, each placed into
 * the record of every output pixel whose receptive field has it inside the image (a padding
 * slice stays 0). Offsets into `packed` are kept as integers, and a pointer is formed only for
 * a slice inside the image. The records of group g start at cols + g * oh * ow * nw. */
static void bg_xnor_slice_setup(const bg_conv_shape_t *s, uint32_t nw, uint32_t step, uint32_t wide,
                                bg_xnor_slice_t *k)
{
    k->nw = nw;
    k->count = s->ow;
    k->step = step;
    k->end = s->ow * step;
    k->wide = wide;
    k->pos = 0;
}

/* ROWS: kw bits of input row iy = oy * sh - ph + ky from padded column ox * sw, per (channel, ky). */
static void bg_xnor_gather_rows(const bg_conv_shape_t *s, uint32_t nw, const uint32_t *packed, uint32_t *cols)
{
    const uint32_t cig = s->c / s->groups, rw = (s->w + 2u * s->pw + 31u) >> 5;
    const uint32_t channel = s->h * rw, row_words = s->ow * nw, group_words = s->oh * row_words;
    const int32_t line_step = (int32_t)(s->sh * rw);
    uint32_t g, ci, ky, oy;
    bg_xnor_slice_t k;
    bg_xnor_slice_setup(s, nw, s->sw, rw > 1u, &k);
    k.n = s->kw;
    for (g = 0; g < s->groups; g++, cols += group_words)
        for (k.pos = 0, ci = 0; ci < cig; ci++, packed += channel)
            for (ky = 0; ky < s->kh; ky++, k.pos += k.n) {
                int32_t iy = (int32_t)ky - (int32_t)s->ph, off = iy * (int32_t)rw;
                uint32_t *rec = cols;
                for (oy = 0; oy < s->oh; oy++, iy += s->sh, off += line_step, rec += row_words)
                    if ((uint32_t)iy < s->h)
                        bg_xnor_row_slices(rec, packed + off, &k);
            }
}

/* PIXELS: the group's channels (32 at a time) of input pixel (oy * sh - ph + ky, ox * sw - pw + kx),
 * per kernel tap. */
static void bg_xnor_gather_pixels(const bg_conv_shape_t *s, uint32_t nw, const uint32_t *packed, uint32_t *cols)
{
    const uint32_t cig = s->c / s->groups, cw = (s->c + 31u) >> 5;
    const uint32_t line = s->w * cw, row_words = s->ow * nw, group_words = s->oh * row_words;
    const int32_t line_step = (int32_t)(s->sh * line);
    uint32_t g, ky, kx, oy, done, first;
    bg_xnor_slice_t k;
    bg_xnor_slice_setup(s, nw, s->sw * cw, cw > 1u || s->groups > 1u, &k);
    for (g = 0, first = 0; g < s->groups; g++, first += cig, cols += group_words)
        for (k.pos = 0, ky = 0; ky < s->kh; ky++)
            for (kx = 0; kx < s->kw; kx++)
                for (done = 0; done < cig; done += 32u, k.pos += k.n) {
                    const int32_t ix0 = (int32_t)kx - (int32_t)s->pw;
                    int32_t iy = (int32_t)ky - (int32_t)s->ph, off = iy * (int32_t)line + ix0 * (int32_t)cw;
                    uint32_t *rec = cols;
                    k.n = cig - done < 32u ? cig - done : 32u;
                    for (oy = 0; oy < s->oh; oy++, iy += s->sh, off += line_step, rec += row_words)
                        if ((uint32_t)iy < s->h) /* the pixels of this output row, from ox = 0 */
                            bg_xnor_pixel_slices(rec, packed + off, ix0, first + done, s, &k);
                }
}

#define BG_XNOR_COLUMNS(SUF, T)                                                                 \
    void bg_xnor_columns_##SUF(const T *x, const bg_conv_shape_t *s, uint8_t order, uint32_t *cols) \
    {                                                                                           \
        const uint32_t cig = s->c / s->groups, h = s->h, w = s->w, plane = h * w;               \
        const uint32_t nw = (cig * s->kh * s->kw + 31u) >> 5;                                   \
        const uint32_t padded = (s->ph | s->pw) != 0;                                           \
        const uint32_t lines = s->c * h, words = s->groups * (uint32_t)s->oh * s->ow * nw;      \
        uint32_t *masks = cols + words; /* after the records, then the packed input */          \
        uint32_t *packed = masks + (padded ? (uint32_t)(s->oh + s->ow) * nw : 0u);              \
        uint32_t i, k;                                                                          \
        if (order == BG_XNOR_ROWS) { /* bit pw + ix of line (c, iy) */                          \
            const uint32_t rw = (w + 2u * s->pw + 31u) >> 5;                                    \
            uint32_t *line = packed;                                                            \
            for (i = 0; i < lines; i++, line += rw) {                                           \
                for (k = 0; k < rw; k++)                                                        \
                    line[k] = 0;                                                                \
                for (k = s->pw; k < s->pw + w; k++)                                             \
                    if (*x++ > 0)                                                               \
                        line[k >> 5] |= 1u << (k & 31u);                                        \
            }                                                                                   \
        } else { /* bit c of pixel line iy * w + ix */                                          \
            const uint32_t cw = (s->c + 31u) >> 5;                                              \
            uint32_t *line = packed;                                                            \
            for (i = 0; i < plane; i++, line += cw) {                                           \
                const T *v = x + i;                                                             \
                for (k = 0; k < cw; k++)                                                        \
                    line[k] = 0;                                                                \
                for (k = 0; k < s->c; k++, v += plane)                                          \
                    if (*v > 0)                                                                 \
                        line[k >> 5] |= 1u << (k & 31u);                                        \
            }                                                                                   \
        }                                                                                       \
        for (i = 0; i < words; i++)                                                             \
            cols[i] = 0;                                                                        \
        if (order == BG_XNOR_ROWS)                                                              \
            bg_xnor_gather_rows(s, nw, packed, cols);                                           \
        else                                                                                    \
            bg_xnor_gather_pixels(s, nw, packed, cols);                                         \
        if (padded)                                                                             \
            bg_xnor_masks(s, order, nw, masks);                                                 \
    }
BG_XNOR_COLUMNS(s8, int8_t)
BG_XNOR_COLUMNS(s32, int32_t)

void bg_xnor_conv2d(const uint32_t *cols, int32_t *y, const bg_conv_shape_t *s, const uint32_t *w,
                    const int32_t *bias, uint32_t first, uint32_t count)
{
    const uint32_t cig = s->c / s->groups, cog = s->co / s->groups;
    const uint32_t taps = cig * s->kh * s->kw, nw = (taps + 31u) >> 5;
    const uint32_t oh = s->oh, ow = s->ow, group_words = oh * ow * nw;
    const uint32_t padded = (s->ph | s->pw) != 0;
    const uint32_t *row_masks = cols + s->groups * group_words, *col_masks = row_masks + oh * nw;
    uint32_t g = first / cog, og = first - g * cog, o, oy, ox, k;
    const uint32_t *group = cols + g * group_words; /* this group's columns */
    const uint32_t *wo = w + first * nw;
    for (o = first; o < first + count; o++, wo += nw) {
        const int32_t b = bias ? bias[o] : 0;
        const uint32_t *col = group;
        if (!padded && nw == 1u) {
            const uint32_t w0 = wo[0], pixels = oh * ow;
            for (k = 0; k < pixels; k++) {
                uint32_t v = *col++ ^ w0;
                BG_POPCOUNT(v);
                *y++ = b + ((int32_t)taps - (int32_t)(v << 1));
            }
        } else if (nw == 1u) {
            const uint32_t w0 = wo[0];
            const uint32_t all = taps == 32u ? 0xFFFFFFFFu : (1u << taps) - 1u;
            for (oy = 0; oy < oh; oy++) {
                const uint32_t rm = row_masks[oy];
                for (ox = 0; ox < ow; ox++) {
                    const uint32_t m = rm & col_masks[ox];
                    uint32_t v = (*col++ ^ w0) & m, n = m;
                    BG_POPCOUNT(v);
                    if (m == all) {
                        n = taps;
                    } else {
                        BG_POPCOUNT(n);
                    }
                    *y++ = b + ((int32_t)n - (int32_t)(v << 1));
                }
            }
        } else {
            const uint32_t *rm = row_masks;
            for (oy = 0; oy < oh; oy++, rm += padded ? nw : 0u) {
                const uint32_t *cm = col_masks;
                for (ox = 0; ox < ow; ox++, cm += padded ? nw : 0u, col += nw) {
                    uint32_t n = padded ? 0u : taps, differ = 0;
                    for (k = 0; k < nw; k++) {
                        uint32_t v = col[k] ^ wo[k];
                        if (padded) {
                            uint32_t m = rm[k] & cm[k];
                            v &= m;
                            BG_POPCOUNT(m);
                            n += m;
                        }
                        BG_POPCOUNT(v);
                        differ += v;
                    }
                    *y++ = b + ((int32_t)n - (int32_t)(differ << 1));
                }
            }
        }
        if (++og == cog) { /* the next output channel reads the next group's columns */
            og = 0;
            group += group_words;
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
