/* The SDK calls of izer's generated firmware, for the emulated MAX78000 (bitgen/backends/max78000/shim):
 * clocks through the GCR, the CNN interrupt by polling its done flag (CTL bit 12) and calling
 * the handler cnn_enable registered, printf into a buffer the test reads. */
#include <stdarg.h>
#include <stdint.h>

#include "mxc.h"

#define CNN_CTL (*(volatile uint32_t *)0x50100000u)

char bg_console[4096];
uint32_t bg_console_len;
static void (*cnn_handler)(void);

static void put(char c)
{
    if (bg_console_len < sizeof(bg_console) - 1)
        bg_console[bg_console_len++] = c;
}

static void put_uint(uint32_t v, unsigned base, int width, char pad)
{
    char buf[12];
    int n = 0;
    do {
        buf[n++] = "0123456789abcdef"[v % base];
        v /= base;
    } while (v);
    while (n < width--)
        put(pad);
    while (n)
        put(buf[--n]);
}

int printf(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    for (; *fmt; fmt++) {
        int width = 0;
        char pad = ' ';
        if (*fmt != '%') {
            put(*fmt);
            continue;
        }
        fmt++;
        if (*fmt == '0')
            pad = '0';
        while (*fmt >= '0' && *fmt <= '9')
            width = width * 10 + (*fmt++ - '0');
        if (*fmt == 'l')
            fmt++;
        switch (*fmt) {
        case 'd': {
            int32_t v = va_arg(ap, int32_t);
            if (v < 0) {
                put('-');
                v = -v;
            }
            put_uint((uint32_t)v, 10, width, pad);
            break;
        }
        case 'u': put_uint(va_arg(ap, uint32_t), 10, width, pad); break;
        case 'x': case 'p': put_uint(va_arg(ap, uint32_t), 16, width, pad); break;
        case 's': for (const char *s = va_arg(ap, const char *); *s; s++) put(*s); break;
        case 'c': put((char)va_arg(ap, int)); break;
        default: put(*fmt); break;
        }
    }
    va_end(ap);
    bg_console[bg_console_len] = 0;
    return 0;
}

void MXC_SYS_ClockEnable(int bit) { MXC_GCR->pclkdis0 &= ~(1u << bit); }
void MXC_SYS_ClockDisable(int bit) { MXC_GCR->pclkdis0 |= 1u << bit; }
void MXC_SYS_Clock_Select(int source) { (void)source; }
void SystemCoreClockUpdate(void) {}
void MXC_NVIC_SetVector(int irq, void (*handler)(void)) { (void)irq; cnn_handler = handler; }
void NVIC_SetVector(int irq, void (*handler)(void)) { MXC_NVIC_SetVector(irq, handler); }
void MXC_ICC_Enable(int icc) { (void)icc; }
void MXC_Delay(uint32_t us) { (void)us; }
int MXC_GPIO_Config(const mxc_gpio_cfg_t *cfg) { (void)cfg; return 0; }
void MXC_GPIO_OutSet(mxc_gpio_regs_t *port, uint32_t mask) { (void)port; (void)mask; }
void MXC_GPIO_OutClr(mxc_gpio_regs_t *port, uint32_t mask) { (void)port; (void)mask; }
void LED_On(int led) { (void)led; }
void LED_Off(int led) { (void)led; }

/* "Sleep until an interrupt": the CNN's done flag raises the one interrupt izer's code waits for. */
void MXC_LP_EnterSleepMode(void)
{
    if ((CNN_CTL & (1u << 12)) && cnn_handler)
        cnn_handler();
}

/* boards/max78000/startup.c reports faults here */
void bg_protocol_fault(uint32_t ipsr, uint32_t pc)
{
    printf("\nFAULT ipsr %u pc 0x%08x\n", ipsr, pc);
    for (;;) {
    }
}
