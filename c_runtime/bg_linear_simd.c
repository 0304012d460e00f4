/* Fully connected layer with the dual 16-bit multiply-accumulate of the Armv7E-M DSP extension
 * (Cortex-M4, M7, M33 with DSP).
 *
 * SMLAD adds two 16x16-bit products to a 32-bit sum in one instruction; SXTB16 sign-extends
 * bytes 0 and 2 of a word into its two 16-bit halves (with a rotation by 8: bytes 1 and 3).
 * A word of 4 int8 inputs thus becomes two operands (x0, x2) and (x1, x3), and a word of the
 * matching 4 int8 weights of one row the other two: 4 multiply-accumulates cost a weight load,
 * two extensions and two SMLADs. Four rows share each input word, so its load and extensions
 * are spread over 16 multiply-accumulates.
 *
 * Elsewhere (the host check, other processors) the same code runs with plain C versions of the
 * two instructions (bg_dsp.h), so the property tests prove the loop and layout, and the
 * Cortex-M4 emulator runs the instructions themselves on real data.
 *
 * Exactness: the products are the integers golden adds, in another order; the emitter proves
 * that |bias| + sum |w| * max |x| fits int32, so no partial sum wraps.
 * Assumes a little-endian processor (input k of a group is byte k of the loaded word), as are
 * Cortex-M parts and the hosts the check runs on.
 */
#include "bg_runtime.h"
#include "bg_linear_simd.h"
#include "bg_dsp.h"

/* One group of 4 inputs (extended to xe, xo) into the 4 sums of a block. */
#define BG_GROUP(wp)                                                                             \
    do {                                                                                         \
        uint32_t wv = (wp)[0];                                                                   \
        a0 = bg_smlad(bg_sxtb16_even(wv), xe, a0), a0 = bg_smlad(bg_sxtb16_odd(wv), xo, a0);      \
        wv = (wp)[1];                                                                            \
        a1 = bg_smlad(bg_sxtb16_even(wv), xe, a1), a1 = bg_smlad(bg_sxtb16_odd(wv), xo, a1);      \
        wv = (wp)[2];                                                                            \
        a2 = bg_smlad(bg_sxtb16_even(wv), xe, a2), a2 = bg_smlad(bg_sxtb16_odd(wv), xo, a2);      \
        wv = (wp)[3];                                                                            \
        a3 = bg_smlad(bg_sxtb16_even(wv), xe, a3), a3 = bg_smlad(bg_sxtb16_odd(wv), xo, a3);      \
    } while (0)

/* Extend the input word at xp into xe, xo and add its group into the sums. */
#define BG_INPUT_GROUP(xp, wp)                                                                   \
    do {                                                                                         \
        const uint32_t xv = *(const bg_u32_unaligned *)(xp);                                     \
        xe = bg_sxtb16_even(xv), xo = bg_sxtb16_odd(xv);                                         \
        BG_GROUP(wp);                                                                            \
    } while (0)

void bg_linear_simd_s8(const int8_t *x, int32_t *y, const bg_simd_fc_t *p)
{
    const uint32_t groups = p->n_in >> 2u, rest = p->n_in & 3u;
    const int8_t *const x_pairs = x + 8u * (groups >> 1u); /* end of the groups taken two by two */
    const uint32_t *w = p->w;
    uint32_t tail = 0, o, k;
    for (k = 0; k < rest; k++) /* the last inputs of a partial group, zero-padded */
        tail |= (uint32_t)(uint8_t)x[4u * groups + k] << (8u * k);
    for (o = 0; o < p->n_out; o += 4u, y += 4) {
        int32_t a0 = 0, a1 = 0, a2 = 0, a3 = 0;
        const int8_t *xp;
        uint32_t xe, xo;
        if (p->bias)
            a0 = p->bias[o], a1 = p->bias[o + 1u], a2 = p->bias[o + 2u], a3 = p->bias[o + 3u];
        /* two groups per turn: half the loop overhead (5 % fewer instructions in the 4-bit
         * MLP's 256-input layer on the emulated MAX78000) */
        for (xp = x; xp != x_pairs; xp += 8, w += 8) {
            BG_INPUT_GROUP(xp, w);
            BG_INPUT_GROUP(xp + 4, w + 4);
        }
        if (groups & 1u) {
            BG_INPUT_GROUP(xp, w);
            w += 4;
        }
        if (rest) {
            xe = bg_sxtb16_even(tail), xo = bg_sxtb16_odd(tail);
            BG_GROUP(w);
            w += 4;
        }
        y[0] = a0, y[1] = a1, y[2] = a2, y[3] = a3;
    }
}
