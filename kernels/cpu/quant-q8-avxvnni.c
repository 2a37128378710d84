/* quant-q8-avxvnni.c - int8-activation products on AVX-VNNI (VEX vpdpbusd, CPUs without
 * AVX-512 such as Alder Lake): the body is quant-q8.inc. Compiled with -mavx2 -mfma -mf16c
 * -mavxvnni; called only when the CPU has them (quant.c dispatch). */
#include "quant-impl.h"
#include "quant-q8-bits.h"

#define QV 4   /* activation vectors per pass over W */
#define Q8_NAME(f) f##_avxvnni
#define DPBUSD(acc, u, s) _mm256_dpbusd_avx_epi32((acc), (u), (s))
#define BITS32(m) q8_bits32_avx2(m)
#define Q8_0_SIGNED 0

#include "quant-q8.inc"
