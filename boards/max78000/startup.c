/* Cortex-M reset and fault handling for bitgen firmware (MAX78000): vector table, .data/.bss
 * set-up, and every fault reported on the UART through bg_protocol_fault. */
#include <stdint.h>

#include "bg_protocol.h"

extern uint32_t __data_start[], __data_end[], __data_load[], __bss_start[], __bss_end[];
extern uint32_t __stack_top[];
int main(void);
void reset_handler(void);

/* Reports the exception number (IPSR) and the stacked PC, then stops. */
__attribute__((naked)) static void fault_handler(void)
{
    __asm volatile("mrs r0, ipsr\n"
                   "mrs r1, msp\n"
                   "ldr r1, [r1, #24]\n"
                   "b bg_protocol_fault\n");
}

__attribute__((section(".isr_vector"), used)) static void (*const vectors[16])(void) = {
    (void (*)(void))(uintptr_t)__stack_top,
    reset_handler,
    fault_handler, /* NMI */
    fault_handler, /* HardFault */
    fault_handler, /* MemManage */
    fault_handler, /* BusFault */
    fault_handler, /* UsageFault */
    0, 0, 0, 0,
    fault_handler, /* SVCall */
    fault_handler, /* DebugMonitor */
    0,
    fault_handler, /* PendSV */
    fault_handler, /* SysTick */
};

void reset_handler(void)
{
    uint32_t *src = __data_load, *dst = __data_start;
    while (dst < __data_end)
        *dst++ = *src++;
    for (dst = __bss_start; dst < __bss_end;)
        *dst++ = 0;
    *(volatile uint32_t *)0xE000ED08u = (uint32_t)(uintptr_t)vectors; /* VTOR */
    main();
    for (;;) {
    }
}
