/* quant-q8-avx512.h - the int8 quantisation of one 32-value activation block shared by the
 * AVX512-VNNI packed decode (quant-pack-vnni512.c) and prefill GEMM (quant-gemm-vnni512.c).
 * Included only by files compiled for AVX-512 F/BW/VL. */
#ifndef MOA_KERNELS_QUANT_Q8_AVX512_H
#define MOA_KERNELS_QUANT_Q8_AVX512_H

#include <immintrin.h>
#include <stdint.h>

/* The codes q[0..31] = round(x * 127 / amax) (saturated), the sums of the codes over values
 * 0-15 (*s0) and 16-31 (*s1); returns the scale amax / 127 (0 for an all-zero block). */
static inline float moa_q8_block32_avx512(const float *xb, int8_t *q, int32_t *s0, int32_t *s1) {
    const __m512 sign = _mm512_set1_ps(-0.0f);
    const __m512 v0 = _mm512_loadu_ps(xb), v1 = _mm512_loadu_ps(xb + 16);
    const float amax = _mm512_reduce_max_ps(_mm512_max_ps(_mm512_andnot_ps(sign, v0), _mm512_andnot_ps(sign, v1)));
    const __m512 id = _mm512_set1_ps(amax > 0 ? 127.0f / amax : 0.0f);
    const __m512i i0 = _mm512_cvtps_epi32(_mm512_mul_ps(v0, id)), i1 = _mm512_cvtps_epi32(_mm512_mul_ps(v1, id));
    _mm_storeu_si128((__m128i *)(void *)q, _mm512_cvtsepi32_epi8(i0));
    _mm_storeu_si128((__m128i *)(void *)(q + 16), _mm512_cvtsepi32_epi8(i1));
    *s0 = _mm512_reduce_add_epi32(i0);
    *s1 = _mm512_reduce_add_epi32(i1);
    return amax / 127.0f;
}

#endif
