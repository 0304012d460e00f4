// A stand-in for the SCAMP-5d kernel API header (not public): the signatures bitgen's programs
// call, as the API documents them, so tests can check that program.cpp is well-formed C++.
#pragma once
#include <cstdint>
enum news_t { east = 1, west = 2, north = 4, south = 8 };
struct areg_t { int id; };
struct dreg_t { int id; };
extern const areg_t A, B, C, D, E, F, IN, NEWS;
extern const dreg_t R0, R1, R2, R3, R4, R5, R6, R7, R8, R9, R10, R11, R12, FLAG;
void scamp5_kernel_begin(); void scamp5_kernel_end();
void mov(areg_t, areg_t); void res(areg_t); void neg(areg_t, areg_t); void divq(areg_t, areg_t);
void add(areg_t, areg_t, areg_t); void add(areg_t, areg_t, areg_t, areg_t); void sub(areg_t, areg_t, areg_t);
void movx(areg_t, areg_t, news_t); void mov2x(areg_t, areg_t, news_t, news_t);
void addx(areg_t, areg_t, areg_t, news_t); void add2x(areg_t, areg_t, areg_t, news_t, news_t);
void subx(areg_t, areg_t, news_t, areg_t); void sub2x(areg_t, areg_t, news_t, news_t, areg_t);
void where(areg_t); void where(areg_t, areg_t); void where(areg_t, areg_t, areg_t); void all();
void WHERE(dreg_t); void ALL(); void MOV(dreg_t, dreg_t); void NOT(dreg_t, dreg_t); void NOT(dreg_t);
void OR(dreg_t, dreg_t); void OR(dreg_t, dreg_t, dreg_t); void NOR(dreg_t, dreg_t); void NOR(dreg_t, dreg_t, dreg_t);
void AND(dreg_t, dreg_t, dreg_t); void DNEWS0(dreg_t, dreg_t); void REFRESH(dreg_t);
void CLR(dreg_t); void CLR(dreg_t, dreg_t); void CLR(dreg_t, dreg_t, dreg_t); void CLR(dreg_t, dreg_t, dreg_t, dreg_t);
void SET(dreg_t); void SET(dreg_t, dreg_t); void SET(dreg_t, dreg_t, dreg_t); void SET(dreg_t, dreg_t, dreg_t, dreg_t);
void scamp5_in(areg_t, int8_t); void scamp5_load_in(int8_t);
void scamp5_load_pattern(dreg_t, uint8_t, uint8_t, uint8_t, uint8_t);
void scamp5_flood(dreg_t, dreg_t, int, int);
void scamp5_draw_begin(dreg_t); void scamp5_draw_pixel(uint8_t, uint8_t); void scamp5_draw_end();
void scamp5_scan_areg(areg_t, uint8_t *, uint8_t, uint8_t, uint8_t, uint8_t, uint8_t, uint8_t);
void scamp5_scan_dreg(dreg_t, uint8_t *, uint8_t, uint8_t);
