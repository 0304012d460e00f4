/* MPS2 AN386 board support (as QEMU models it): CMSDK APB UART0 at 0x40004000, SysTick as the
 * cycle counter, extended from its 24 bits. */
#include "bg_protocol.h"

#define REG(addr) (*(volatile uint32_t *)(addr))

#define UART0_DATA REG(0x40004000u)
#define UART0_STATE REG(0x40004004u)   /* bit 0 TX full, bit 1 RX full */
#define UART0_CTRL REG(0x40004008u)    /* bit 0 TXEN, bit 1 RXEN */
#define UART0_BAUDDIV REG(0x40004010u)
#define SYST_CSR REG(0xE000E010u)
#define SYST_RVR REG(0xE000E014u)
#define SYST_CVR REG(0xE000E018u)

#define SYSCLK_HZ 25000000u
#define BAUD 115200u

static uint32_t last, total;

void bg_bsp_init(void)
{
    UART0_BAUDDIV = SYSCLK_HZ / BAUD;
    UART0_CTRL = 3u;
    SYST_RVR = 0xFFFFFFu;
    SYST_CVR = 0;
    SYST_CSR = 5u; /* ENABLE, CLKSOURCE = processor clock */
    last = SYST_CVR;
}

int bg_bsp_getc(void)
{
    while (!(UART0_STATE & 2u))
        ;
    return (int)(UART0_DATA & 0xFFu);
}

void bg_bsp_putc(char c)
{
    while (UART0_STATE & 1u)
        ;
    UART0_DATA = (uint8_t)c;
}

/* SysTick counts down from 2^24 - 1: accumulate the ticks between reads (reads must be less
 * than 2^24 ticks apart, 0.67 s at 25 MHz). */
uint32_t bg_bsp_cycles(void)
{
    uint32_t now = SYST_CVR;
    total += (last - now) & 0xFFFFFFu;
    last = now;
    return total;
}
