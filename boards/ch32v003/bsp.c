/* CH32V003 board support: 48 MHz clock, USART1 115200 8N1 on PD5 (TX) / PD6 (RX), SysTick as
 * the cycle counter. Register facts: reference/boards.md 1.3, 1.4, 1.6. */
#include "bg_protocol.h"

#define REG(addr) (*(volatile uint32_t *)(addr))

#define RCC_CTLR REG(0x40021000u)
#define RCC_CFGR0 REG(0x40021004u)
#define RCC_INTR REG(0x40021008u)
#define RCC_APB2PCENR REG(0x40021018u)
#define FLASH_ACTLR REG(0x40022000u)
#define GPIOD_CFGLR REG(0x40011400u)
#define GPIOD_BSHR REG(0x40011410u)
#define USART1_STATR REG(0x40013800u)
#define USART1_DATAR REG(0x40013804u)
#define USART1_BRR REG(0x40013808u)
#define USART1_CTLR1 REG(0x4001380Cu)
#define SYSTICK_CTLR REG(0xE000F000u)
#define SYSTICK_CNT REG(0xE000F008u)

#define HCLK_HZ 48000000u
#define BAUD 115200u

void bg_bsp_init(void)
{
    /* HSI 24 MHz x PLL 2 = 48 MHz, one flash wait state */
    FLASH_ACTLR = 1;
    RCC_CFGR0 = 0; /* HPRE /1, PLL source HSI */
    RCC_CTLR = 1u | (1u << 24) | (0x10u << 3); /* HSION, PLLON, HSITRIM default */
    RCC_INTR = 0x009F0000u;
    while (!(RCC_CTLR & (1u << 25))) /* PLLRDY */
        ;
    RCC_CFGR0 = 2u; /* SW = PLL (the rest still 0, as written above) */
    while ((RCC_CFGR0 & 0x0Cu) != 0x08u) /* SWS = PLL */
        ;

    /* USART1 on PD5 (TX, AF push-pull 10 MHz) / PD6 (RX, input with pull-up) */
    /* Whole registers written, not read-modify-write (fewer bytes): nothing else is clocked,
     * and PD0-PD4, PD7 keep their reset configuration (0x4, floating input). */
    RCC_APB2PCENR = 0x20u | 0x4000u; /* IOPD, USART1 */
    GPIOD_CFGLR = (0x44444444u & ~(0xFFu << 20)) | (0x9u << 20) | (0x8u << 24);
    GPIOD_BSHR = 1u << 6; /* pull-up on PD6 */
    USART1_BRR = (HCLK_HZ + BAUD / 2) / BAUD;
    USART1_CTLR1 = 0x2000u | 0x8u | 0x4u; /* UE, TE, RE */

    /* SysTick counts HCLK cycles, up, 32 bits */
    SYSTICK_CTLR = 5u; /* STE | STCLK=HCLK */
}

int bg_bsp_getc(void)
{
    uint32_t s;
    while (!((s = USART1_STATR) & 0x20u)) /* RXNE */
        ;
    {
        int c = (int)(USART1_DATAR & 0xFFu); /* reading DATAR after STATR clears the flags */
        return (s & 0x0Fu) ? BG_RX_ERROR : c; /* PE, FE, NE, ORE */
    }
}

void bg_bsp_putc(char c)
{
    while (!(USART1_STATR & 0x80u)) /* TXE */
        ;
    USART1_DATAR = (uint8_t)c;
}

uint32_t bg_bsp_cycles(void)
{
    return SYSTICK_CNT;
}
