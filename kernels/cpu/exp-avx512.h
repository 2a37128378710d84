/* exp-avx512.h - internal to kernels/cpu: the one AVX-512 e^x of the CPU kernels, used by
 * the attention softmax (attn-avx512.c) and the SiLU product (ops-avx512.c). Include it only
 * from files compiled with the AVX-512 flags (the *-avx512.c files, kernels/CMakeLists.txt).
 * Pure, thread-safe. */
#ifndef MOA_EXP_AVX512_H
#define MOA_EXP_AVX512_H

#include <immintrin.h>

/* e^x = 2^n e^r, n = round(x log2 e), r = x - n ln2 (|r| <= ln2/2), e^r by its degree-7
 * Taylor polynomial (relative error < 1e-8). x is clamped to 88 above; the result is exactly
 * 0 for x < -87, -inf and NaN (masked attention scores are -inf). */
static inline __m512 moa_exp_avx512(__m512 x) {
    const __mmask16 keep = _mm512_cmp_ps_mask(x, _mm512_set1_ps(-87.0f), _CMP_GE_OQ);
    x = _mm512_min_ps(_mm512_max_ps(x, _mm512_set1_ps(-87.0f)), _mm512_set1_ps(88.0f));
    const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                          _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), x);
    r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), r);
    __m512 p = _mm512_set1_ps(1.0f / 5040.0f);
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 720.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 120.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 24.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 6.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(0.5f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
    const __m512i e = _mm512_slli_epi32(
        _mm512_add_epi32(_mm512_cvtps_epi32(n), _mm512_set1_epi32(127)), 23);
    return _mm512_maskz_mul_ps(keep, p, _mm512_castsi512_ps(e));
}

#endif /* MOA_EXP_AVX512_H */
