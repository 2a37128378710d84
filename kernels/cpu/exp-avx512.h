/* exp-avx512.h - internal to kernels/cpu: the AVX-512 e^x of the CPU kernels (body in
 * exp-simd.inc, shared with exp-avx2.h), used by the attention softmax (attn-avx512.c) and the
 * SiLU product (ops-avx512.c). Include it only from files compiled with the AVX-512 flags (the
 * *-avx512.c files, kernels/CMakeLists.txt). Pure, thread-safe. */
#ifndef MOA_EXP_AVX512_H
#define MOA_EXP_AVX512_H

#include <immintrin.h>

/* moa_exp_avx512(x): e^x in every lane, exactly 0 for x < -87, -inf and NaN (exp-simd.inc). */
#define EXP_V __m512
#define EXP_MASK __mmask16
#define EXP_NAME moa_exp_avx512
#define EXP_SET1(c) _mm512_set1_ps(c)
#define EXP_MIN(a, b) _mm512_min_ps((a), (b))
#define EXP_MAX(a, b) _mm512_max_ps((a), (b))
#define EXP_MUL(a, b) _mm512_mul_ps((a), (b))
#define EXP_FMA(a, b, c) _mm512_fmadd_ps((a), (b), (c))
#define EXP_FNMA(a, b, c) _mm512_fnmadd_ps((a), (b), (c))
#define EXP_ROUND(x) _mm512_roundscale_ps((x), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC)
#define EXP_POW2(n) _mm512_castsi512_ps(_mm512_slli_epi32( \
    _mm512_add_epi32(_mm512_cvtps_epi32(n), _mm512_set1_epi32(127)), 23))
#define EXP_GE(x, c) _mm512_cmp_ps_mask((x), (c), _CMP_GE_OQ)
#define EXP_MASKZ_MUL(m, a, b) _mm512_maskz_mul_ps((m), (a), (b))
#include "exp-simd.inc"

#endif /* MOA_EXP_AVX512_H */
