/* quant-q8-vnni512.c - int8-activation products on AVX512-VNNI (256-bit EVEX vpdpbusd; the
 * Q5 high bits by a mask move): the body is quant-q8.inc. Compiled with -mavx512f/bw/vl/dq
 * -mavx512vnni; called only when the CPU has them (quant.c dispatch). */
#include "quant-impl.h"

#define QV 4   /* activation vectors per pass over W */
#define Q8_NAME(f) f##_vnni512
#define DPBUSD(acc, u, s) _mm256_dpbusd_epi32((acc), (u), (s))
#define BITS32(m) _mm256_maskz_mov_epi8((__mmask32)(m), _mm256_set1_epi8(16))
#define Q8_0_SIGNED 0

#include "quant-q8.inc"
