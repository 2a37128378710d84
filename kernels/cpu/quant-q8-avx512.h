/* quant-q8-avx512.h - internal to kernels/cpu: the int8 quantisation of one 32-value
 * activation block shared by the AVX512-VNNI packed decode (quant-pack-vnni512.c) and prefill
 * GEMM (quant-gemm-vnni512.c).
 * Included only by files compiled for AVX-512 F/BW/VL. */
#ifndef MOA_KERNELS_QUANT_Q8_AVX512_H
#define MOA_KERNELS_QUANT_Q8_AVX512_H

#include "quant-impl.h"

#include <immintrin.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* Outliers per token the VNNI paths multiply in f32; a token with more declines the int8 path. */
#define MOA_Q8_MAX_OUTLIERS 32

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

/* One token's int8 activations: its outliers (moa_q8_outlier_values, at most
 * MOA_Q8_MAX_OUTLIERS) go to oidx/oval and are quantised as zeros; then per 32-value block b
 * the codes q[32b..], the scale dx[b], sx[b] = dx[b] * (s0v[b] + s1v[b]) and the code sums of
 * the two halves s0v[b], s1v[b]. Returns the outlier count, or -1 (too many outliers, or no
 * memory for a token longer than 4096 values): the caller then declines. Reentrant (called
 * per token from OpenMP loops). */
static inline int64_t moa_q8_token_avx512(const float *x, int64_t n_in, int32_t *oidx, float *oval, int8_t *q,
                                          float *dx, float *sx, int32_t *s0v, int32_t *s1v) {
    float buf[4096];
    float *xs = n_in <= 4096 ? buf : malloc(sizeof(float) * (size_t)n_in);
    if (!xs) return -1;
    memcpy(xs, x, sizeof(float) * (size_t)n_in);
    const int64_t c = moa_q8_outlier_values(xs, n_in, oidx, MOA_Q8_MAX_OUTLIERS);
    if (c >= 0) {
        for (int64_t k = 0; k < c; k++) {
            oval[k] = xs[oidx[k]];
            xs[oidx[k]] = 0;
        }
        for (int64_t b = 0; b < n_in / 32; b++) {
            const float d = moa_q8_block32_avx512(xs + 32 * b, q + 32 * b, &s0v[b], &s1v[b]);
            dx[b] = d;
            sx[b] = d * (float)(s0v[b] + s1v[b]);
        }
    }
    if (xs != buf) free(xs);
    return c;
}

#endif
