/* Per-instruction hook for the Unicorn-based boards, in C because a Python hook per
 * instruction would run a model at ~1 M instructions/s instead of ~100 M.
 *
 * Unicorn has no instruction counter one can read while it runs, and its RISC-V CPU always
 * implements the M extension; this hook provides both: it counts every instruction (the emulated
 * cycle counter reads the count), and it stops the emulation on
 *   - an instruction fetched outside the executable ranges it is given, and
 *   - when asked (RV32E parts without a multiplier), any RV32M instruction (mul, mulh, mulhsu,
 *     mulhu, div, divu, rem, remu: opcode OP, funct7 = 1),
 * recording what happened for the Python side. Instructions are read from the host buffers that
 * back the emulated flash and SRAM (mapped with uc_mem_map_ptr), so no Unicorn call is needed
 * except uc_emu_stop, whose address Python passes in.
 */
#include <stdint.h>

#define BG_SIM_MAX_RANGES 4

typedef struct {
    uint64_t base, size;
    const uint8_t *host; /* host memory behind [base, base + size), or 0 */
} bg_sim_range_t;

typedef struct {
    uint64_t count;           /* instructions started so far */
    int (*stop)(void *uc);    /* uc_emu_stop */
    uint32_t forbid_rv_m;     /* 1: RV32M instructions fault */
    uint32_t n_ranges;
    bg_sim_range_t exec[BG_SIM_MAX_RANGES];
    uint32_t fault;           /* 0 none, 1 fetch outside exec ranges, 2 RV32M instruction */
    uint32_t fault_insn;
    uint64_t fault_pc;
} bg_sim_state_t;

void bg_sim_code_hook(void *uc, uint64_t pc, uint32_t size, void *user)
{
    bg_sim_state_t *s = (bg_sim_state_t *)user;
    uint32_t i;
    s->count++;
    for (i = 0; i < s->n_ranges; i++) {
        const bg_sim_range_t *r = &s->exec[i];
        if (pc - r->base < r->size) {
            if (s->forbid_rv_m && size == 4 && r->host && pc - r->base + 4 <= r->size) {
                const uint8_t *p = r->host + (pc - r->base);
                uint32_t insn = (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
                                (uint32_t)p[3] << 24;
                if ((insn & 0xFE00007Fu) == 0x02000033u) {
                    s->fault = 2;
                    s->fault_insn = insn;
                    s->fault_pc = pc;
                    s->stop(uc);
                }
            }
            return;
        }
    }
    s->fault = 1;
    s->fault_pc = pc;
    s->stop(uc);
}
