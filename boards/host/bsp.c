/* Board support for running the firmware on this computer: the UART is stdin/stdout (bitgen
 * connects them to a pseudo-terminal), the cycle counter is CLOCK_MONOTONIC in nanoseconds. */
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include "bg_protocol.h"

static char out[256];
static unsigned out_n;

static void flush_out(void)
{
    unsigned done = 0;
    while (done < out_n) {
        ssize_t n = write(1, out + done, out_n - done);
        if (n <= 0)
            exit(0); /* the host went away */
        done += (unsigned)n;
    }
    out_n = 0;
}

void bg_bsp_init(void)
{
}

int bg_bsp_getc(void)
{
    unsigned char c;
    flush_out(); /* about to wait for the host: everything said so far must reach it */
    if (read(0, &c, 1) != 1)
        exit(0);
    return c;
}

void bg_bsp_putc(char c)
{
    out[out_n++] = c;
    if (out_n == sizeof out)
        flush_out();
}

uint32_t bg_bsp_cycles(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (uint32_t)((uint64_t)t.tv_sec * 1000000000u + (uint64_t)t.tv_nsec);
}
