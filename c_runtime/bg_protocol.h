/* bg_protocol: the device side of bitgen's wire protocol, and the board support it needs.
 *
 * The protocol is the MLPerf Tiny / EEMBC host-DUT protocol (commands are ASCII and end with
 * '%', every reply is a run of "m-..." / "e-[...]" lines ending with "m-ready"), kept verbatim
 * so an EEMBC host can drive a bitgen board, plus bitgen extensions whose lines start "m-bg-".
 *
 *   name%                m-name-dut-[bitgen BOARD]
 *   profile%             m-profile-[ULPMark for tinyML Firmware V0.0.1], m-model-[MODEL]
 *   timestamp%           m-lap-us-US
 *   db load N [CRC]%     m-[Expecting N bytes]; N must equal the model's input size. CRC
 *                        (8 hex digits, optional, a bitgen extension) is the CRC-32 of the N
 *                        bytes: infer refuses an input whose CRC differs.
 *   db HEX%              append bytes (even number of hex digits); m-load-done once N arrived
 *   db @OFF HEX%         bitgen extension: bytes at byte offset OFF (at most the number received
 *                        so far); HEX holds them followed by their CRC-32 (4 bytes, little-endian).
 *                        A line whose CRC differs is refused (e-[db: bad data]) and nothing of it
 *                        is taken, so the host sends it again; bytes already received stay as they
 *                        are, so a line sent twice (its reply was lost) does no harm.
 *   infer N [W]%         W warm-up and N timed inferences (W defaults to 10, as in EEMBC; N or W
 *                        over BG_INFER_MAX are bad arguments, so that the board answers in bounds):
 *                        m-warmup-start-W, m-warmup-done, m-infer-start-N, m-lap-us-T0,
 *                        m-lap-us-T1, m-infer-done, then the results block below. Refused
 *                        (e-[...]) unless exactly N input bytes arrived intact.
 *   results%             the results block of the last inference again
 *   bg-info%             m-bg-KEY-[VALUE] lines: model, hash, input, output, board, counter,
 *                        proto, clock, flash, sram (bytes the image uses), then m-bg-crc-[CRC]: the
 *                        CRC-32 of the exact bytes of those lines (with their \r\n)
 *   bg-sync TOKEN%       m-bg-sync-[TOKEN] (lets the host resynchronise without a reset)
 *   bg-reset%            m-bg-reset-done: a model with state (a recurrent cell, a stream model)
 *                        starts a new sequence; each inference after it is one frame (warm-ups
 *                        are frames too: use W = 0). Nothing to do for other models.
 *
 * Results block: m-results-[v0,v1,...] (integer outputs), m-bg-class-[argmax],
 * m-bg-cycles-[counter ticks of one inference], for a model with change-based convolutions
 * m-bg-changed-[n0,n1,...] (pixels that changed at each change gate in the frame; compiled in
 * with BG_PROTOCOL_CHANGED, which bitgen's build defines for such models), then
 * m-bg-crc-[CRC]: the CRC-32 of the input bytes followed by the exact bytes of the lines before
 * it (with their \r\n), so the host can prove which input a result belongs to and that no byte
 * of it changed on the wire.
 *
 * A model whose output streams (bitgen's tiled steps, compiled with BG_PROTOCOL_STREAM) holds
 * no output buffer: `results` computes it again from the input (such a model has no state) and
 * sends the values band by band as they are computed, in the same m-results line and CRC; a
 * db load forgets the last result (its input is being replaced).
 *
 * Left out of the EEMBC set to save flash: db print and help.
 */
#ifndef BG_PROTOCOL_H
#define BG_PROTOCOL_H

#include <stdint.h>

#define BG_PROTOCOL_VERSION 3 /* 2: db @ lines, the CRC of bg-info, bounded infer; 3: m-bg-changed */
#define BG_CMD_MAX 80 /* longest command, as EEMBC's EE_CMD_SIZE */
#ifndef BG_INFER_MAX
#define BG_INFER_MAX 1000 /* most warm-up or timed inferences of one infer command */
#endif


/* The texts bg-info reports, in this order. */
enum { BG_TEXT_MODEL, BG_TEXT_HASH, BG_TEXT_INPUT, BG_TEXT_OUTPUT, BG_TEXT_BOARD, BG_TEXT_COUNTER,
       BG_TEXTS };

typedef struct {
    /* model name; hash (64 hex digits, the model's identity: ir.Model.digest); input and
     * output ("int8 1x16x16", "int32 10"); board name; what bg_bsp_cycles() counts */
    const char *const *text; /* BG_TEXTS of them */
    uint32_t clock_hz;
    uint32_t cycles_per_us; /* counter ticks per microsecond (>= 1) */
    uint32_t input_size;    /* bytes */
    uint32_t output_size;   /* values */
    uint32_t output_is_int8;
    int8_t *input_buf;
    const void *output_buf;
    int (*run)(void); /* runs the model on input_buf into output_buf, returns the argmax */
    void (*reset)(void); /* a model with state: back to the initial state; 0 for others */
    const uint32_t *changed; /* change-based models: pixels changed per gate in the last frame */
    uint32_t change_gates;   /* entries of changed (0: no m-bg-changed line) */
} bg_model_t;

/* Serves commands forever: the model of bg_model.h, which bitgen's build generates beside
 * bg_protocol.c (templates/bg_model.h.j2). */
void bg_protocol_run(void);

/* A streaming model's output values, in order (BG_STREAM_SINK of the model's C). */
void bg_protocol_stream(const int8_t *values, uint32_t count);

/* Reports a CPU fault as an e-[...] line (called by a board's trap handler), then stops. */
void bg_protocol_fault(uint32_t cause, uint32_t pc);

/* Board support, one implementation per board (boards/NAME/bsp.c). */
#define BG_RX_ERROR (-1)
void bg_bsp_init(void);       /* clock, UART, cycle counter */
int bg_bsp_getc(void);        /* blocks; a byte 0..255, or BG_RX_ERROR after overrun/framing/noise */
void bg_bsp_putc(char c);     /* blocks until the UART takes the byte */
uint32_t bg_bsp_cycles(void); /* free-running up-counter, wraps at 2^32 */

#endif /* BG_PROTOCOL_H */
