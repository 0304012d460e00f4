/* Requantization with every rounding of bitgen/ops/requant.py and an output zero point: the
 * ONNX forms (ties to even; ONNX Runtime's float32 arithmetic, emulated in integers). */
#ifndef BG_REQUANT_MODES_H
#define BG_REQUANT_MODES_H

#include "bg_runtime.h"

enum { BG_ROUND_HALF_UP = 0, BG_ROUND_FLOOR = 1, BG_ROUND_HALF_EVEN = 2, BG_ROUND_FP32 = 3, BG_ROUND_HALF_AWAY = 4 };

typedef struct {
    const int32_t *multiplier; /* < 2^24 for BG_ROUND_FP32 (a float32 significand) */
    const uint8_t *shift;
    uint16_t channels;
    uint8_t rounding;          /* BG_ROUND_* */
    int32_t zero_point;        /* added after rounding */
    int32_t lo, hi;            /* clamp range */
} bg_requant_modes_t;

/* y = clamp(round(x * m / 2^s) + zero_point, lo, hi) for channels first .. first+count-1 of q. */
void bg_requant_modes_to_s8(const int32_t *x, int8_t *y, uint32_t n_per_channel, const bg_requant_modes_t *q,
                            uint32_t first, uint32_t count);
void bg_requant_modes_to_s32(const int32_t *x, int32_t *y, uint32_t n_per_channel, const bg_requant_modes_t *q,
                             uint32_t first, uint32_t count);

#endif /* BG_REQUANT_MODES_H */
