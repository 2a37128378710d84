/* quant-avx512.c - AVX-512 (F/BW/VL) matrix-vector products with f32 activations for every
 * supported type, and the AVX-512 dequantiser: the body is quant-simd.inc (dequantise 256
 * values into an L1 buffer with 16-lane conversions, dot with every activation vector), except
 * Q4_0/Q4_1/Q8_0 which stay on the (faster) AVX2 block kernels. (The int8-activation
 * kernels are quant-q8-*.c.)
 * F32/F16/BF16 rows are converted in the same chunks. Compiled with -mavx512f/bw/vl/dq;
 * called only when the CPU supports them (quant.c dispatch). */
#include "quant-impl.h"
#include "moa/common.h"

#include <immintrin.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define VW 16
typedef __m512 vf;
#define V_ZERO() _mm512_setzero_ps()
#define V_LOAD(p) _mm512_loadu_ps(p)
#define V_FMA(a, b, c) _mm512_fmadd_ps((a), (b), (c))
#define V_ADD(a, b) _mm512_add_ps((a), (b))
#define V_HSUM(x) _mm512_reduce_add_ps(x)
#define SIMD_NAME(f) moa_##f##_avx512

static inline void cvt16_u8(float *dst, __m128i b, float a, float c) {
    __m512 f = _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(b));
    _mm512_storeu_ps(dst, _mm512_add_ps(_mm512_mul_ps(f, _mm512_set1_ps(a)), _mm512_set1_ps(c)));
}
static inline void cvt16_i8(float *dst, __m128i b, float a) {
    __m512 f = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(b));
    _mm512_storeu_ps(dst, _mm512_mul_ps(f, _mm512_set1_ps(a)));
}
static inline void cvt16_f16(float *dst, const uint8_t *src) {
    _mm512_storeu_ps(dst, _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)src)));
}
static inline void cvt16_bf16(float *dst, const uint8_t *src) {
    __m512i w = _mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)src));
    _mm512_storeu_ps(dst, _mm512_castsi512_ps(_mm512_slli_epi32(w, 16)));
}

#include "quant-simd.inc"

int moa_matmul_q_avx512(moa_ggml_type t, const void *W, int64_t n_out, int64_t n_in,
                        const float *x, int64_t n_vec, float *y) {
    uint32_t be;
    if (!simd_type(t) || !moa_ggml_type_info(t, &be, NULL) || n_in % be) return 0;
    /* Q4_0/Q4_1/Q8_0: the AVX2 block kernels were measured faster (bench-quant), and keep
     * SmolLM2's numerics unchanged: decline, the dispatcher falls to them. */
    if (t == MOA_GGML_Q4_0 || t == MOA_GGML_Q4_1 || t == MOA_GGML_Q8_0) return 0;
    matmul_chunked(t, W, n_out, n_in, x, n_vec, y);
    return 1;
}
