/* MAX78000 board support: 100 MHz IPO, UART0 115200 8N1 on P0.0 (RX) / P0.1 (TX), DWT CYCCNT
 * as the cycle counter. Registers: ADI MSDK gcr_regs.h, gpio_regs.h, uart_revb_regs.h. */
#include "bg_protocol.h"

#define REG(addr) (*(volatile uint32_t *)(addr))

#define GCR_CLKCTRL REG(0x40000008u)
#define GCR_PCLKDIS0 REG(0x40000024u)
#define GPIO0_EN0_CLR REG(0x40008008u)
#define GPIO0_EN1_CLR REG(0x40008070u)
#define GPIO0_EN2_CLR REG(0x4000807Cu)
#define UART0_CTRL REG(0x40042000u)
#define UART0_STATUS REG(0x40042004u)
#define UART0_INT_FL REG(0x4004200Cu)
#define UART0_CLKDIV REG(0x40042010u)
#define UART0_OSR REG(0x40042014u)
#define UART0_FIFO REG(0x40042020u)
#define DEMCR REG(0xE000EDFCu)
#define DWT_CTRL REG(0xE0001000u)
#define DWT_CYCCNT REG(0xE0001004u)

#define SYSCLK_HZ 100000000u
#define BAUD 115200u

void bg_bsp_init(void)
{
    /* system clock: the 100 MHz internal primary oscillator, undivided */
    GCR_CLKCTRL |= 1u << 19; /* IPO_EN */
    while (!(GCR_CLKCTRL & (1u << 27))) /* IPO_RDY */
        ;
    GCR_CLKCTRL = (GCR_CLKCTRL & ~((7u << 9) | (7u << 6))) | (4u << 9); /* SYSCLK_SEL = IPO, DIV 1 */
    while (!(GCR_CLKCTRL & (1u << 13))) /* SYSCLK_RDY */
        ;

    /* UART0 on P0.0/P0.1 (alternate function 1), 8N1, clocked by PCLK = SYSCLK / 2 */
    GCR_PCLKDIS0 &= ~((1u << 0) | (1u << 9)); /* GPIO0, UART0 clocks on */
    GPIO0_EN0_CLR = 3u;
    GPIO0_EN1_CLR = 3u;
    GPIO0_EN2_CLR = 3u;
    UART0_CTRL = (3u << 10) | (1u << 15); /* CHAR_SIZE 8, BCLKEN */
    while (!(UART0_CTRL & (1u << 19))) /* BCLKRDY */
        ;
    UART0_OSR = 5;
    UART0_CLKDIV = (SYSCLK_HZ / 2 + BAUD / 2) / BAUD;

    /* cycle counter */
    DEMCR |= 1u << 24; /* TRCENA */
    DWT_CYCCNT = 0;
    DWT_CTRL |= 1u; /* CYCCNTENA */
}

int bg_bsp_getc(void)
{
    uint32_t err;
    int c;
    while (UART0_STATUS & (1u << 4)) /* RX_EM */
        ;
    c = (int)(UART0_FIFO & 0xFFu);
    err = UART0_INT_FL & 0xBu; /* RX_FERR, RX_PAR, RX_OV */
    if (err) {
        UART0_INT_FL = err;
        return BG_RX_ERROR;
    }
    return c;
}

void bg_bsp_putc(char c)
{
    while (UART0_STATUS & (1u << 7)) /* TX_FULL */
        ;
    UART0_FIFO = (uint8_t)c;
}

uint32_t bg_bsp_cycles(void)
{
    return DWT_CYCCNT;
}
