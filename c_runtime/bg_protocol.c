/* bg_protocol.c: the device side of bitgen's wire protocol (see bg_protocol.h).
 *
 * Written from the protocol description in reference/boards.md section 5 (no EEMBC code), for
 * the smallest parts: no libc, no printf, no multiplication; one 81-byte line buffer and a few
 * words of state. The input tensor is the model's own buffer.
 */
#include "bg_protocol.h"
#include "bg_model.h"

#ifndef BG_NO_SIZE_SYMBOLS
/* Absolute symbols from the board's linker script: bytes of flash and SRAM the image uses. */
extern char __bg_flash_used[], __bg_sram_used[];
#define BG_FLASH_USED ((uint32_t)(uintptr_t)__bg_flash_used)
#define BG_SRAM_USED ((uint32_t)(uintptr_t)__bg_sram_used)
#else
#define BG_FLASH_USED 0u
#define BG_SRAM_USED 0u
#endif

enum { IN_HAVE_CRC = 1, IN_CORRUPT = 2, HAVE_RESULT = 4, STREAMING = 8 };

/* The model (bg_model.h, generated per image): its fields are constants here. */
#define M (&bg_model)
static char line[BG_CMD_MAX + 1];
static uint32_t expected;    /* bytes announced by db load (0: none) */
static uint32_t loaded;      /* bytes received since */
static uint32_t in_state;    /* running CRC-32 state of the received bytes */
static uint32_t want_crc;    /* CRC the host announced */
static uint32_t result_seed; /* CRC of the input the last result belongs to */
static uint32_t out_state;   /* running CRC-32 state of every byte sent since a block began */
static uint8_t flags;
static int last_class;
static uint32_t last_cycles;

/* CRC-32 (IEEE 802.3, reflected, as zlib.crc32), one byte; the state is the inverted CRC.
 * Bitwise, because a 1 KB table would not fit the smallest parts. */
__attribute__((noinline)) static uint32_t crc32_step(uint32_t s, uint8_t b)
{
    int k;
    s ^= b;
    for (k = 0; k < 8; k++)
        s = (s >> 1) ^ (0xEDB88320u & (0u - (s & 1u)));
    return s;
}

static void put(char c)
{
    out_state = crc32_step(out_state, (uint8_t)c); /* always: fewer bytes than a flag */
    bg_bsp_putc(c);
}

static void puts_(const char *s)
{
    while (*s)
        put(*s++);
}

/* n / d, the remainder in *rem: shift and subtract, so that the protocol pulls in no libgcc
 * division (180 B on RV32EC); its speed does not matter next to the UART. */
__attribute__((noinline)) static uint32_t udiv(uint32_t n, uint32_t d, uint32_t *rem)
{
    uint32_t q = 0, r = 0;
    int k;
    for (k = 0; k < 32; k++) {
        r = (r << 1) | (n >> 31);
        n <<= 1;
        q <<= 1;
        if (r >= d) {
            r -= d;
            q |= 1u;
        }
    }
    *rem = r;
    return q;
}

static void put_u32(uint32_t v)
{
    char digits[10];
    int n = 0;
    do {
        uint32_t r;
        v = udiv(v, 10u, &r);
        digits[n++] = (char)('0' + r);
    } while (v);
    while (n)
        put(digits[--n]);
}

/* KEY VALUE END: KEY holds the opening bracket, END closes it and the line */
static void kv(const char *key, const char *value)
{
    puts_(key);
    puts_(value);
    puts_("]\r\n");
}

static void num(const char *key, uint32_t value, const char *end)
{
    puts_(key);
    put_u32(value);
    puts_(end);
}

static void kv_u32(const char *key, uint32_t value)
{
    num(key, value, "]\r\n");
}

static void error(const char *what)
{
    kv("e-[", what);
}

static const char *skip_spaces(const char *p)
{
    while (*p == ' ')
        p++;
    return p;
}

/* If p starts with the word w (followed by a space or the end), returns what follows it. */
static const char *word(const char *p, const char *w)
{
    while (*w)
        if (*p++ != *w++)
            return 0;
    if (*p != ' ' && *p != 0)
        return 0;
    return skip_spaces(p);
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    c |= 0x20;
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

/* Parses a decimal number; returns the rest of the string, or 0 on error. */
static const char *parse_u32(const char *p, uint32_t *out)
{
    uint32_t v = 0;
    if (*p < '0' || *p > '9')
        return 0;
    while (*p >= '0' && *p <= '9') {
        if (v > 429496728u)
            return 0;
        v = (v << 3) + (v << 1) + (uint32_t)(*p++ - '0');
    }
    *out = v;
    return skip_spaces(p);
}

/* m-lap-us-: microseconds of the cycle counter (wraps with it: 89 s at 48 MHz) */
static void lap(void)
{
    uint32_t r;
    num("m-lap-us-", udiv(bg_bsp_cycles(), M->cycles_per_us, &r), "\r\n");
}

/* Ends a block whose bytes were summed since out_state was set: m-bg-crc-[CRC-32 of them]. */
static void put_crc(void)
{
    uint32_t i, crc = ~out_state;
    puts_("m-bg-crc-[");
    for (i = 32; i;) {
        i -= 4;
        put("0123456789abcdef"[(crc >> i) & 15u]);
    }
    puts_("]\r\n");
}

static void put_value(uint32_t i, int32_t v)
{
    uint32_t u = (uint32_t)v;
    if (i)
        put(',');
    if (v < 0) {
        put('-');
        u = 0u - u;
    }
    put_u32(u);
}

#ifdef BG_PROTOCOL_STREAM
/* A model whose output streams (a tiled step, bg_model.h) holds no output buffer: the results
 * block runs the model again on the same input (no state: the same output) and sends each band
 * of values as the model hands it over, keeping their argmax (the first largest) as the class.
 * During timed inferences the bands are dropped. */
static uint32_t streamed;
static int8_t best;

void bg_protocol_stream(const int8_t *v, uint32_t n)
{
    if (!(flags & STREAMING))
        return;
    for (; n; n--, v++, streamed++) {
        put_value(streamed, *v);
        if (!streamed || *v > best) {
            best = *v;
            last_class = (int)streamed;
        }
    }
}
#endif

static void results(void)
{
    out_state = ~result_seed;
    puts_("m-results-[");
#ifdef BG_PROTOCOL_STREAM
    streamed = 0;
    flags |= STREAMING;
    M->run();
    flags &= (uint8_t)~STREAMING;
#else
    {
        const int8_t *y8 = (const int8_t *)M->output_buf;
        const int32_t *y32 = (const int32_t *)M->output_buf;
        uint32_t i;
        for (i = 0; i < M->output_size; i++)
            put_value(i, M->output_is_int8 ? y8[i] : y32[i]);
    }
#endif
    puts_("]\r\n");
    kv_u32("m-bg-class-[", (uint32_t)last_class);
    kv_u32("m-bg-cycles-[", last_cycles);
#ifdef BG_PROTOCOL_CHANGED /* defined by bitgen's build for change-based models only: others keep the flash */
    if (M->change_gates) {
        uint32_t i;
        puts_("m-bg-changed-[");
        for (i = 0; i < M->change_gates; i++) {
            if (i)
                put(',');
            put_u32(M->changed[i]);
        }
        puts_("]\r\n");
    }
#endif
    put_crc();
}

static void cmd_infer(const char *p)
{
    uint32_t n = 1, w = 10, i, t0, ovh;
    const char *e = 0;
    if ((*p && !(p = parse_u32(p, &n))) || (*p && !(p = parse_u32(p, &w))) || *p)
        e = "bad arguments";
    else if (n == 0)
        e = "Inference iterations must be >0";
    else if (n > BG_INFER_MAX || w > BG_INFER_MAX) /* a board busy for hours answers nothing */
        e = "bad arguments";
    /* The board never computes on an input it did not fully and correctly receive. */
    else if (!expected || loaded != expected)
        e = "input incomplete";
    else if (flags & IN_CORRUPT)
        e = "input corrupt";
    else if ((flags & IN_HAVE_CRC) && ~in_state != want_crc)
        e = "input crc mismatch";
    if (e) {
        error(e);
        return;
    }
    num("m-warmup-start-", w, "\r\n");
    for (i = 0; i < w; i++)
        M->run();
    num("m-warmup-done\r\nm-infer-start-", n, "\r\n");
    t0 = bg_bsp_cycles();
    ovh = bg_bsp_cycles() - t0; /* cost of reading the counter, taken off each measurement */
    lap();
    for (i = 0; i < n; i++) {
        t0 = bg_bsp_cycles();
        last_class = M->run();
        last_cycles = bg_bsp_cycles() - t0 - ovh;
    }
    lap();
    puts_("m-infer-done\r\n");
    result_seed = ~in_state;
    flags |= HAVE_RESULT;
    results();
}

/* Bytes of the input may have been lost: without a CRC to check at infer (a plain EEMBC host),
 * the input stays unusable until db load. With one, infer refuses what differs anyway, and a
 * db @ line that was lost is sent again. */
static void lost(void)
{
    if (!(flags & IN_HAVE_CRC))
        flags |= IN_CORRUPT;
}

/* The CRC-32 state after bytes followed by their own CRC-32 (little-endian): a constant. */
#define CRC_RESIDUE 0xDEBB20E3u

/* p points into line[] (writable): the hex digits are decoded in place, byte i to p[i]. */
static void cmd_db(char *p)
{
    const char *q;
    uint32_t n, i, off, s = 0xFFFFFFFFu;
    uint8_t *b;
    int at = 0, hi, lo;
    if ((q = word(p, "load")) != 0) {
#ifdef BG_PROTOCOL_STREAM /* the last result is computed again from the input at results: gone with it */
        flags &= (uint8_t)~HAVE_RESULT;
#endif
        flags &= (uint8_t)~(IN_HAVE_CRC | IN_CORRUPT);
        expected = loaded = 0;
        in_state = 0xFFFFFFFFu;
        want_crc = 0;
        if (!(q = parse_u32(q, &n)))
            goto bad;
        if (*q) { /* bitgen extension: the CRC-32 of the bytes to come */
            for (i = 0; i < 8; i++) {
                if ((hi = hexval(*q++)) < 0)
                    goto bad;
                want_crc = (want_crc << 4) | (uint32_t)hi;
            }
            if (*q)
                goto bad;
            flags |= IN_HAVE_CRC;
        }
        if (n != M->input_size) {
            kv_u32("e-[db load size must be ", M->input_size);
            return;
        }
        expected = n;
        num("m-[Expecting ", n, " bytes]\r\n");
        return;
    bad:
        error("bad arguments");
        return;
    }
    if (!expected) {
        error("db: no db load");
        return;
    }
    off = loaded;
    if (*p == '@') { /* bitgen extension: db @OFFSET HEX, a line that can be sent again */
        if (!(q = parse_u32(p + 1, &off)))
            goto corrupt;
        p = (char *)q; /* still within line[] */
        at = 4;        /* HEX ends with the CRC-32 of the line's bytes, 4 bytes little-endian */
    }
    b = (uint8_t *)p;
    for (q = p, n = 0; (hi = hexval(q[0])) >= 0 && (lo = hexval(q[1])) >= 0; q += 2, n++) {
        b[n] = (uint8_t)((hi << 4) | lo); /* written behind the digits still to be read */
        s = crc32_step(s, b[n]);
    }
    n -= (uint32_t)at; /* the bytes of the line, without their CRC */
    if (*q || (int32_t)n <= 0 || off > loaded || off + n > expected || (at && s != CRC_RESIDUE))
        goto corrupt;
    for (i = 0; i < n; i++, off++) /* bytes already here (a line sent again) stay as they are */
        if (off == loaded) {
            M->input_buf[loaded++] = (int8_t)b[i];
            in_state = crc32_step(in_state, b[i]);
        }
    if (loaded == expected)
        puts_("m-load-done\r\n");
    return;
corrupt: /* nothing of the line was taken (a db @ line: the host sends it again) */
    lost();
    error("db: bad data");
}

static void cmd_info(void)
{
    static const char keys[] = "model\0hash\0input\0output\0board\0counter\0"
                               "proto\0clock\0flash\0sram";
    const uint32_t num[4] = {BG_PROTOCOL_VERSION, M->clock_hz, BG_FLASH_USED, BG_SRAM_USED};
    const char *k = keys;
    int i;
    out_state = 0xFFFFFFFFu;
    for (i = 0; i < BG_TEXTS + 4; i++) {
        puts_("m-bg-");
        puts_(k);
        if (i < BG_TEXTS)
            kv("-[", M->text[i]);
        else
            kv_u32("-[", num[i - BG_TEXTS]);
        while (*k++)
            ;
    }
    put_crc();
}

enum { C_NAME, C_PROFILE, C_TIMESTAMP, C_DB, C_INFER, C_RESULTS, C_INFO, C_SYNC, C_RESET, C_COUNT };

static void dispatch(const char *p)
{
    static const char commands[] = "name\0profile\0timestamp\0db\0infer\0results\0bg-info\0bg-sync\0bg-reset";
    const char *c = commands, *q = 0;
    int i;
    p = skip_spaces(p);
    if (!*p)
        return; /* an empty command (a lone '%') only asks for m-ready */
    for (i = 0; i < C_COUNT && !(q = word(p, c)); i++)
        while (*c++)
            ;
    switch (i) {
    case C_NAME:
        kv("m-name-dut-[bitgen ", M->text[BG_TEXT_BOARD]);
        break;
    case C_PROFILE:
        kv("m-profile-[ULPMark for tinyML Firmware V0.0.1]\r\nm-model-[", M->text[BG_TEXT_MODEL]);
        break;
    case C_TIMESTAMP:
        lap();
        break;
    case C_DB:
        cmd_db((char *)q); /* q points into line[], which is writable */
        break;
    case C_INFER:
        cmd_infer(q);
        break;
    case C_RESULTS:
        if (flags & HAVE_RESULT)
            results();
        else
            error("no results");
        break;
    case C_INFO:
        cmd_info();
        break;
    case C_SYNC:
        kv("m-bg-sync-[", q);
        break;
    case C_RESET:
        if (M->reset)
            M->reset();
        puts_("m-bg-reset-done\r\n");
        break;
    default:
        kv("e-[Unknown command: ", p);
    }
}

void bg_protocol_fault(uint32_t cause, uint32_t pc)
{
    puts_("\r\ne-[fault ");
    put_u32(cause);
    put(' ');
    kv_u32("pc ", pc);
    puts_("m-ready\r\n");
    for (;;) {
    }
}

void bg_protocol_run(void)
{
    puts_("m-timestamp-mode-performance\r\n");
    lap();
    puts_("m-init-done\r\n");
    for (;;) {
        uint32_t n = 0;
        const char *bad = 0;
        int c;
        puts_("m-ready\r\n");
        while ((c = bg_bsp_getc()) != '%') {
            if (c == '\r' || c == '\n')
                continue; /* line ends some hosts add are not part of a command */
            if (c < 0x20 || c > 0x7e) /* BG_RX_ERROR (overrun, framing, noise) or binary */
                bad = "garbled command";
            else if (n < BG_CMD_MAX)
                line[n++] = (char)c;
            else
                bad = "command too long";
        }
        line[n] = 0;
        if (bad) {
            if (loaded < expected) /* it may have been a db line */
                lost();
            error(bad);
        } else {
            dispatch(line);
        }
    }
}
