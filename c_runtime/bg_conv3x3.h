/* Pieces of the 3x3 plane convolution whose shapes are fixed at compile time (bg_conv3x3.inc,
 * instantiated once per layer by the emitted model source). */
#ifndef BG_CONV3X3_H
#define BG_CONV3X3_H

#include "bg_conv2d_plane.h"

/* Three taps k_[t..t+2] of one kernel row into a tile of 5, 4 or 2 outputs a0.. whose first
 * input in that row is q[0]: each input is loaded once and multiplied into every accumulator
 * it touches. An input that touches two or three accumulators is skipped when it is zero and
 * BG_C3_SPARSE is set; one that touches a single accumulator costs no more than the test. */
#define BG_C3_NZ(v) (!BG_C3_SPARSE || (v) != 0)
#define BG_C3_KROW5(q, t)                                                                   \
    do {                                                                                    \
        const int32_t k0 = k_[t], k1 = k_[(t) + 1], k2 = k_[(t) + 2];                       \
        int32_t v;                                                                          \
        v = (q)[0]; a0 += k0 * v;                                                           \
        v = (q)[1]; if (BG_C3_NZ(v)) { a0 += k1 * v; a1 += k0 * v; }                        \
        v = (q)[2]; if (BG_C3_NZ(v)) { a0 += k2 * v; a1 += k1 * v; a2 += k0 * v; }          \
        v = (q)[3]; if (BG_C3_NZ(v)) { a1 += k2 * v; a2 += k1 * v; a3 += k0 * v; }          \
        v = (q)[4]; if (BG_C3_NZ(v)) { a2 += k2 * v; a3 += k1 * v; a4 += k0 * v; }          \
        v = (q)[5]; if (BG_C3_NZ(v)) { a3 += k2 * v; a4 += k1 * v; }                        \
        v = (q)[6]; a4 += k2 * v;                                                           \
    } while (0)
#define BG_C3_KROW4(q, t)                                                                   \
    do {                                                                                    \
        const int32_t k0 = k_[t], k1 = k_[(t) + 1], k2 = k_[(t) + 2];                       \
        int32_t v;                                                                          \
        v = (q)[0]; a0 += k0 * v;                                                           \
        v = (q)[1]; if (BG_C3_NZ(v)) { a0 += k1 * v; a1 += k0 * v; }                        \
        v = (q)[2]; if (BG_C3_NZ(v)) { a0 += k2 * v; a1 += k1 * v; a2 += k0 * v; }          \
        v = (q)[3]; if (BG_C3_NZ(v)) { a1 += k2 * v; a2 += k1 * v; a3 += k0 * v; }          \
        v = (q)[4]; if (BG_C3_NZ(v)) { a2 += k2 * v; a3 += k1 * v; }                        \
        v = (q)[5]; a3 += k2 * v;                                                           \
    } while (0)
#define BG_C3_KROW2(q, t)                                                                   \
    do {                                                                                    \
        const int32_t k0 = k_[t], k1 = k_[(t) + 1], k2 = k_[(t) + 2];                       \
        int32_t v;                                                                          \
        v = (q)[0]; a0 += k0 * v;                                                           \
        v = (q)[1]; if (BG_C3_NZ(v)) { a0 += k1 * v; a1 += k0 * v; }                        \
        v = (q)[2]; if (BG_C3_NZ(v)) { a0 += k2 * v; a1 += k1 * v; }                        \
        v = (q)[3]; a1 += k2 * v;                                                           \
    } while (0)

/* The three kernel rows of a tile whose top-left input is q. */
#define BG_C3_KROWS(N, q)                                                                   \
    do {                                                                                    \
        BG_C3_KROW##N((q), 0);                                                              \
        BG_C3_KROW##N((q) + BG_C3_W, 3);                                                    \
        BG_C3_KROW##N((q) + 2 * BG_C3_W, 6);                                                \
    } while (0)

#define BG_C3_MAX(a, b) ((a) < (b) ? (b) : (a))

#endif /* BG_CONV3X3_H */
