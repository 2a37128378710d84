/* exp-avx2.h - internal to kernels/cpu: the AVX2 + FMA e^x of the CPU kernels (body in
 * exp-simd.inc, shared with exp-avx512.h), used by the attention softmax (attn-avx2.c).
 * Include it only from files compiled with -mavx2 -mfma (the *-avx2.c files,
 * kernels/CMakeLists.txt). Pure, thread-safe. */
#ifndef MOA_EXP_AVX2_H
#define MOA_EXP_AVX2_H

#include <immintrin.h>

/* moa_exp_avx2(x): e^x in every lane, exactly 0 for x < -87, -inf and NaN (exp-simd.inc). The
 * mask is a vector of all-ones / all-zeros lanes. */
#define EXP_V __m256
#define EXP_MASK __m256
#define EXP_NAME moa_exp_avx2
#define EXP_SET1(c) _mm256_set1_ps(c)
#define EXP_MIN(a, b) _mm256_min_ps((a), (b))
#define EXP_MAX(a, b) _mm256_max_ps((a), (b))
#define EXP_MUL(a, b) _mm256_mul_ps((a), (b))
#define EXP_FMA(a, b, c) _mm256_fmadd_ps((a), (b), (c))
#define EXP_FNMA(a, b, c) _mm256_fnmadd_ps((a), (b), (c))
#define EXP_ROUND(x) _mm256_round_ps((x), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC)
#define EXP_POW2(n) _mm256_castsi256_ps(_mm256_slli_epi32( \
    _mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23))
#define EXP_GE(x, c) _mm256_cmp_ps((x), (c), _CMP_GE_OQ)
#define EXP_MASKZ_MUL(m, a, b) _mm256_and_ps((m), _mm256_mul_ps((a), (b)))
#include "exp-simd.inc"

#endif /* MOA_EXP_AVX2_H */
