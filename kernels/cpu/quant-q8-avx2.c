/* quant-q8-avx2.c - int8-activation products on plain AVX2: vpdpbusd emulated by vpmaddubsw
 * (u8 x s8 pairs, int16 with saturation) + vpmaddwd (pairs of int16 -> int32). The pair sums
 * stay within int16 for every weight type: 2 x 63 x 127 (Q6_K) at most, and Q8_0 multiplies
 * |w| <= 128 by sign(x, w) (2 x 128 x 127 = 32512). The body is quant-q8.inc. Compiled with
 * -mavx2 -mfma -mf16c (quant.c dispatch). */
#include "quant-impl.h"
#include "quant-q8-bits.h"

#define QV 4   /* activation vectors per pass over W */
#define Q8_NAME(f) f##_avx2
static inline __m256i q8_dpbusd_avx2(__m256i acc, __m256i u, __m256i s) {
    return _mm256_add_epi32(acc, _mm256_madd_epi16(_mm256_maddubs_epi16(u, s), _mm256_set1_epi16(1)));
}
#define DPBUSD(acc, u, s) q8_dpbusd_avx2((acc), (u), (s))
#define BITS32(m) q8_bits32_avx2(m)
#define Q8_0_SIGNED 1

#include "quant-q8.inc"
