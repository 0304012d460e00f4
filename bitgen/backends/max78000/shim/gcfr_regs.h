/* GCFR: the CNN quadrants' power, kernel memory, isolation and reset bits (bitgen/backends/max78000/shim). */
#ifndef BG_IZER_GCFR_H
#define BG_IZER_GCFR_H
#include <stdint.h>
typedef struct { volatile uint32_t reg0, reg1, reg2, reg3; } mxc_gcfr_regs_t;
#define MXC_GCFR ((mxc_gcfr_regs_t *)0x40005800u)
#endif
