/* CH32V003 reset code (facts: reference/boards.md 1.2). The part boots at 0x0 (the flash alias):
 * the first word must be a jump, assembled uncompressed. */
    .section .init, "ax"
    .globl _start
    .option push
    .option norvc
_start:
    j reset
    .option pop

    .section .text.reset, "ax"
reset:
    .option push
    .option norelax
    la gp, __global_pointer$
    .option pop
    la sp, __stack_top

    /* zero .bss */
    la a0, __bss_start
    la a1, __bss_end
1:  bgeu a0, a1, 2f
    sw zero, 0(a0)
    addi a0, a0, 4
    j 1b
2:
    /* copy .data from flash */
    la a0, __data_start
    la a1, __data_end
    la a2, __data_load
3:  bgeu a0, a1, 4f
    lw t0, 0(a2)
    sw t0, 0(a0)
    addi a0, a0, 4
    addi a2, a2, 4
    j 3b
4:
    /* every trap (there are no interrupts) goes to trap, in direct mode */
    la t0, trap
    csrw mtvec, t0
    call main
5:  j 5b

    .section .text.trap, "ax"
    .balign 4
trap:
    csrr a0, mcause
    csrr a1, mepc
    la sp, __stack_top
    call bg_protocol_fault
6:  j 6b
