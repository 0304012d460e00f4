/* Change gates; see bg_change.h. */
#include "bg_change.h"

/* |a - b| > t, exactly, for any two int32 values (their difference may not fit int32). */
static int bg_moved(int32_t a, int32_t b, int32_t t)
{
    const uint32_t d = a >= b ? (uint32_t)a - (uint32_t)b : (uint32_t)b - (uint32_t)a;
    return d > (uint32_t)t;
}

#define BG_CHANGE_GATE(SUF, T)                                                                  \
    uint32_t bg_change_gate_##SUF(const T *x, const T *r, T *y, uint32_t channels, uint32_t plane, \
                                  int32_t threshold)                                            \
    {                                                                                           \
        uint32_t i, c, changed = 0;                                                             \
        for (i = 0; i < plane; i++) {                                                           \
            const T *xc = x + i, *rc = r + i;                                                   \
            T *yc = y + i;                                                                      \
            int moved = 0;                                                                      \
            for (c = 0; c < channels && !moved; c++, xc += plane, rc += plane)                  \
                moved = bg_moved(*xc, *rc, threshold);                                          \
            changed += (uint32_t)moved;                                                         \
            for (xc = x + i, rc = r + i, c = 0; c < channels; c++, xc += plane, rc += plane, yc += plane) \
                *yc = moved ? *xc : *rc;                                                        \
        }                                                                                       \
        return changed;                                                                         \
    }
BG_CHANGE_GATE(s8, int8_t)
BG_CHANGE_GATE(s32, int32_t)

/* The receptive field of output (oy, ox) as int16, in the weight row's order, 0 for padding:
 * the taps inside the input are a rectangle (rows ky0..ky1-1, columns kx0..kx1-1 of the kernel),
 * copied row by row; the field is cleared first only where the rectangle is not all of it. */
static void bg_change_field(const int8_t *ref, const bg_change_conv_t *p, uint32_t oy, uint32_t ox, int16_t *f)
{
    const int32_t iy0 = (int32_t)(oy * p->sh) - (int32_t)p->ph, ix0 = (int32_t)(ox * p->sw) - (int32_t)p->pw;
    const uint32_t plane = (uint32_t)p->h * p->w, kh = p->kh, kw = p->kw, taps = kh * kw;
    /* (padding may exceed the kernel: then a field can lie wholly outside, ky1 <= ky0) */
    const int32_t sky1 = iy0 + (int32_t)kh > (int32_t)p->h ? (int32_t)p->h - iy0 : (int32_t)kh;
    const int32_t skx1 = ix0 + (int32_t)kw > (int32_t)p->w ? (int32_t)p->w - ix0 : (int32_t)kw;
    const uint32_t ky0 = iy0 < 0 ? (uint32_t)-iy0 : 0u, kx0 = ix0 < 0 ? (uint32_t)-ix0 : 0u;
    const uint32_t ky1 = sky1 > (int32_t)ky0 ? (uint32_t)sky1 : ky0, kx1 = skx1 > (int32_t)kx0 ? (uint32_t)skx1 : kx0;
    const int8_t *first = ref + (uint32_t)(iy0 + (int32_t)ky0) * p->w + (uint32_t)(ix0 + (int32_t)kx0);
    const uint32_t width = kx1 - kx0;
    uint32_t c, ky, kx;
    if (ky0 | kx0 | (ky1 ^ kh) | (kx1 ^ kw)) {
        const uint32_t n = (uint32_t)p->c * taps;
        for (c = 0; c < n; c++)
            f[c] = 0;
    }
    for (c = 0; c < p->c; c++, first += plane, f += taps) {
        const int8_t *row = first;
        int16_t *dst = f + ky0 * kw + kx0;
        if (width == 3) /* the common 3 x 3 kernel, inside: no loop over three values */
            for (ky = ky0; ky < ky1; ky++, row += p->w, dst += kw) {
                dst[0] = row[0];
                dst[1] = row[1];
                dst[2] = row[2];
            }
        else
            for (ky = ky0; ky < ky1; ky++, row += p->w, dst += kw)
                for (kx = 0; kx < width; kx++)
                    dst[kx] = row[kx];
    }
}

/* The output stage of output channel o's accumulator a. */
static int32_t bg_change_post(int32_t a, const bg_post_t *post, uint32_t o)
{
    const uint32_t pc = post->per_channel ? o : 0;
    return bg_post_value(a, post->relu_before, post->requant, post->wide,
                         post->requant ? post->multiplier[pc] : 1, post->requant ? post->shift[pc] : 0,
                         post->half_up, post->lo, post->hi, post->relu_after);
}

/* acc + sum_k w[k] * f[k], four taps per turn. */
BG_CHANGE_NOINLINE static int32_t bg_change_dot(const int16_t *f, const int8_t *w, uint32_t n, int32_t acc)
{
    const int16_t *const end4 = f + (n & ~3u), *const end = f + n;
    while (f != end4) {
        acc += (int32_t)w[0] * f[0] + (int32_t)w[1] * f[1] + (int32_t)w[2] * f[2] + (int32_t)w[3] * f[3];
        f += 4;
        w += 4;
    }
    while (f != end)
        acc += (int32_t)*w++ * *f++;
    return acc;
}

/* best[o] = max(best[o], output channel o's accumulator at the field f) (the first call of a
 * pool window: best[o] = it). */
static void bg_change_outputs(const int16_t *f, const bg_change_conv_t *p, int32_t *best, uint32_t first)
{
    const uint32_t n = (uint32_t)p->c * p->kh * p->kw;
    const int8_t *w = p->weight;
    uint32_t o;
    for (o = 0; o < p->co; o++, w += n) {
        const int32_t a = bg_change_dot(f, w, n, p->bias ? p->bias[o] : 0);
        if (first || a > best[o])
            best[o] = a;
    }
}

/* Row statistics of the marks: per row of y, how many outputs are marked and the columns
 * x0 .. x1 - 1 that hold them (kept while marking, so no row is scanned to find them). */
enum { BG_ROW_COUNT, BG_ROW_X0, BG_ROW_X1, BG_ROW_STATS };

/* The first pixel from ix (before n) of a row of x that moved by more than t from the row of
 * ref in some channel, or n. t <= 255 and t2 = 2t: for int8 values t + d, d in -t .. t, is
 * 0 .. 2t without wrapping, so one unsigned compare per value. A function of its own: the loop
 * that calls it keeps too many values for RV32E's registers. */
BG_CHANGE_NOINLINE static uint32_t bg_change_next(const int8_t *x, const int8_t *ref, uint32_t ix, uint32_t n,
                                                  uint32_t plane, uint32_t channels, uint32_t t, uint32_t t2)
{
    if (channels == 1) {
        for (; ix < n; ix++)
            if ((uint32_t)(t + (int32_t)x[ix] - (int32_t)ref[ix]) > t2)
                break;
        return ix;
    }
    for (; ix < n; ix++) {
        const int8_t *xc = x + ix, *rc = ref + ix;
        uint32_t c;
        for (c = channels; c; c--, xc += plane, rc += plane)
            if ((uint32_t)(t + (int32_t)*xc - (int32_t)*rc) > t2)
                return ix;
    }
    return n;
}

/* Gate x against ref: the pixels that moved by more than the threshold go into ref, and the
 * outputs of y whose receptive field holds one are marked (all of them when `all`, or when more
 * than dense_above would be). Returns the number of pixels that moved. */
static uint32_t bg_change_mark(const int8_t *x, int8_t *ref, const bg_change_conv_t *p, uint8_t *marks,
                               uint16_t *stats, uint32_t all)
{
    const uint32_t channels = p->c, plane = (uint32_t)p->h * p->w, w = p->w, yh = p->yh, yw = p->yw;
    const uint32_t outputs = yh * yw;
    /* |x - ref| <= 255 for int8: a threshold of 255 or more never passes a pixel */
    const uint32_t t = p->threshold > 255 ? 255u : (uint32_t)p->threshold;
    uint32_t iy, ix, c, i, changed = 0, touched = 0;
    for (i = 0; i < (outputs + 3u) / 4u; i++)
        ((bg_word_alias *)marks)[i] = 0;
    for (i = 0; i < yh; i++) {
        stats[BG_ROW_STATS * i + BG_ROW_COUNT] = 0;
        stats[BG_ROW_STATS * i + BG_ROW_X0] = (uint16_t)yw;
        stats[BG_ROW_STATS * i + BG_ROW_X1] = 0;
    }
    for (iy = 0; iy < p->h; iy++) {
        const int8_t *const xr = x + iy * w;
        int8_t *const rr = ref + iy * w;
        for (ix = bg_change_next(xr, rr, 0, w, plane, channels, t, 2u * t); ix < w;
             ix = bg_change_next(xr, rr, ix + 1, w, plane, channels, t, 2u * t)) {
            changed++;
            for (i = ix, c = channels; c; c--, i += plane)
                rr[i] = xr[i];
            if (!all) { /* the outputs whose receptive field holds this pixel */
                const uint16_t *rw = p->rows + 3u * iy, *cl = p->cols + 2u * ix;
                const uint32_t q0 = cl[0], q1 = cl[0] + cl[1];
                uint8_t *m = marks + rw[0];
                uint16_t *st = stats + BG_ROW_STATS * rw[2];
                uint32_t r, q;
                for (r = rw[1]; r; r--, m += yw, st += BG_ROW_STATS)
                    for (q = q0; q < q1; q++)
                        if (!m[q]) {
                            m[q] = 1;
                            touched++;
                            st[BG_ROW_COUNT]++;
                            if (q < st[BG_ROW_X0])
                                st[BG_ROW_X0] = (uint16_t)q;
                            if (q >= st[BG_ROW_X1])
                                st[BG_ROW_X1] = (uint16_t)(q + 1u);
                        }
            }
        }
    }
    if (all || touched > p->dense_above) {
        for (i = 0; i < outputs; i++)
            marks[i] = 1;
        for (i = 0; i < yh; i++) {
            stats[BG_ROW_STATS * i + BG_ROW_COUNT] = (uint16_t)yw;
            stats[BG_ROW_STATS * i + BG_ROW_X0] = 0;
            stats[BG_ROW_STATS * i + BG_ROW_X1] = (uint16_t)yw;
        }
    }
    return changed;
}

#define BG_CHANGE_CONV(OUT, TO)                                                                 \
    uint32_t bg_change_conv_s8_##OUT(const int8_t *x, int8_t *ref, TO *y, const bg_change_conv_t *p, \
                                     uint8_t *scratch, uint32_t all, bg_change_band_t band)    \
    {                                                                                           \
        const uint32_t outputs = (uint32_t)p->yh * p->yw, yh = p->yh, yw = p->yw;              \
        const uint32_t field = (uint32_t)p->c * p->kh * p->kw;                                  \
        uint8_t *const marks = scratch;                                                         \
        uint16_t *const stats = (uint16_t *)(scratch + ((outputs + 3u) & ~3u));                 \
        int16_t *const f = (int16_t *)((uint8_t *)stats + ((2u * BG_ROW_STATS * yh + 3u) & ~3u)); \
        int32_t *const best = (int32_t *)((uint8_t *)f + ((2u * field + 3u) & ~3u));            \
        const uint32_t changed = bg_change_mark(x, ref, p, marks, stats, all);                  \
        uint32_t i, py, px;                                                                     \
        for (py = 0; py < yh;) {                                                                \
            uint32_t py1 = py, x0 = yw, x1 = 0, n = 0;                                          \
            const uint16_t *st;                                                                 \
            /* the run of rows from py with outputs to recompute: how many, which columns */    \
            for (st = stats + BG_ROW_STATS * py; py1 < yh && st[BG_ROW_COUNT]; py1++, st += BG_ROW_STATS) { \
                n += st[BG_ROW_COUNT];                                                          \
                x0 = st[BG_ROW_X0] < x0 ? st[BG_ROW_X0] : x0;                                   \
                x1 = st[BG_ROW_X1] > x1 ? st[BG_ROW_X1] : x1;                                   \
            }                                                                                   \
            if (py1 == py) {                                                                    \
                py++;                                                                           \
                continue;                                                                       \
            }                                                                                   \
            if (band && 4u * (py1 - py) * (x1 - x0) <= n * p->band_gain4) {                     \
                band(ref, y, best + p->co, py, py1, x0, x1); /* the run's bounding rectangle */  \
                py = py1;                                                                       \
                continue;                                                                       \
            }                                                                                   \
            while (py < py1) { /* rows with many outputs to recompute by the band kernel, */   \
                uint32_t pb = py; /* the others output by output */                             \
                while (band && pb < py1 && stats[BG_ROW_STATS * pb] * p->band_gain4 > 4u * yw)   \
                    pb++;                                                                       \
                if (pb > py) {                                                                  \
                    band(ref, y, best + p->co, py, pb, 0, yw);                                  \
                    py = pb;                                                                    \
                    continue;                                                                   \
                }                                                                               \
                st = stats + BG_ROW_STATS * py;                                                 \
                for (px = st[BG_ROW_X0], i = py * yw + px; px < st[BG_ROW_X1]; px++, i++) {     \
                    uint32_t dy, dx, o;                                                         \
                    if (!marks[i])                                                              \
                        continue;                                                               \
                    for (dy = 0; dy < p->pool; dy++)                                            \
                        for (dx = 0; dx < p->pool; dx++) {                                      \
                            bg_change_field(ref, p, py * p->pool + dy, px * p->pool + dx, f);   \
                            bg_change_outputs(f, p, best, !(dy | dx));                          \
                        }                                                                       \
                    /* the output stage once, on the window's largest accumulator: ReLU, a      \
                     * requantization (multiplier >= 1, rounding half up or down) and a clamp   \
                     * never reorder values */                                                  \
                    for (o = 0; o < p->co; o++)                                                 \
                        y[o * outputs + i] = (TO)(p->post ? bg_change_post(best[o], p->post, o) : best[o]); \
                }                                                                               \
                py++;                                                                           \
            }                                                                                   \
        }                                                                                       \
        return changed;                                                                         \
    }
BG_CHANGE_CONV(s8, int8_t)
BG_CHANGE_CONV(s32, int32_t)
