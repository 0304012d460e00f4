/* The few MSDK declarations izer's generated cnn.c and main.c use, for the emulated MAX78000
 * (bitgen/backends/max78000/shim): register structs at the part's addresses, the rest in shim.c. Written for
 * bitgen from the MSDK's documented register map (gcr_regs.h); not the MSDK. */
#ifndef BG_IZER_MXC_H
#define BG_IZER_MXC_H
#include <stdint.h>

typedef struct {
    volatile uint32_t sysctrl, rst0, clkctrl, pm, ipll_ctrl, rsv_0x14, pclkdiv, rsv_0x1c[2], pclkdis0;
} mxc_gcr_regs_t;
#define MXC_GCR ((mxc_gcr_regs_t *)0x40000000u)

#define MXC_F_GCR_PCLKDIV_CNNCLKDIV (0x7u << 14)
#define MXC_F_GCR_PCLKDIV_CNNCLKSEL (0x3u << 17)
#define MXC_S_GCR_PCLKDIV_CNNCLKDIV_DIV1 (0x4u << 14)
#define MXC_S_GCR_PCLKDIV_CNNCLKDIV_DIV2 (0x0u << 14)
#define MXC_S_GCR_PCLKDIV_CNNCLKDIV_DIV4 (0x1u << 14)
#define MXC_S_GCR_PCLKDIV_CNNCLKSEL_PCLK (0x0u << 17)
#define MXC_S_GCR_PCLKDIV_CNNCLKSEL_ISO (0x1u << 17)
#define MXC_SYS_PERIPH_CLOCK_CNN 25 /* PCLKDIS0 bit */
#define MXC_SYS_CLOCK_IPO 4
#define CNN_IRQn 52

typedef struct { volatile uint32_t out; } mxc_gpio_regs_t;
typedef struct { mxc_gpio_regs_t *port; uint32_t mask; int pad; int func; } mxc_gpio_cfg_t;
#define MXC_GPIO_PAD_NONE 0
#define MXC_GPIO_FUNC_OUT 1
#define MXC_ICC0 0
#define SEC(s) ((s) * 1000000u)

int printf(const char *fmt, ...);
void MXC_SYS_ClockEnable(int bit);
void MXC_SYS_ClockDisable(int bit);
void MXC_SYS_Clock_Select(int source);
void SystemCoreClockUpdate(void);
void MXC_NVIC_SetVector(int irq, void (*handler)(void));
void NVIC_SetVector(int irq, void (*handler)(void));
void MXC_LP_EnterSleepMode(void);
void MXC_ICC_Enable(int icc);
void MXC_Delay(uint32_t us);
int MXC_GPIO_Config(const mxc_gpio_cfg_t *cfg);
void MXC_GPIO_OutSet(mxc_gpio_regs_t *port, uint32_t mask);
void MXC_GPIO_OutClr(mxc_gpio_regs_t *port, uint32_t mask);
void LED_On(int led);
void LED_Off(int led);
#define __WFI() MXC_LP_EnterSleepMode()
#endif
