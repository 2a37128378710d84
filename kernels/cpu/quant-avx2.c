/* quant-avx2.c - AVX2+FMA matrix-vector products with f32 activations and the AVX2 dequantiser.
 * Q4_0, Q4_1, Q8_0: each 32-value block is widened to 4 x 8 floats once and
 * multiplied into up to VG activation vectors; the block scale is applied with one FMA per
 * vector:
 *   Q4_1: sum_j (d q_j + m) x_j = d * sum_j q_j x_j + m * sum_j x_j   (sum_j x_j precomputed)
 * Other types (F32, F16, BF16, Q5_0, Q5_1, Q4_K, Q5_K, Q6_K): the shared body quant-simd.inc
 * (dequantise 256 values into an L1 buffer, dot with every vector).
 * Compiled with -mavx2 -mfma -mf16c; selected at run time. */
#include "quant-impl.h"
#include "moa/common.h"

#include <immintrin.h>
#include <stdlib.h>
#include <string.h>

#define VG 4  /* activation vectors per pass */

#define VW 8
typedef __m256 vf;
#define V_ZERO() _mm256_setzero_ps()
#define V_LOAD(p) _mm256_loadu_ps(p)
#define V_FMA(a, b, c) _mm256_fmadd_ps((a), (b), (c))
#define V_ADD(a, b) _mm256_add_ps((a), (b))
#define V_HSUM(x) hsum8(x)
#define SIMD_NAME(f) moa_##f##_avx2

static inline float hsum8(__m256 v) {
    __m128 lo = _mm256_castps256_ps128(v), hi = _mm256_extractf128_ps(v, 1);
    lo = _mm_add_ps(lo, hi);
    lo = _mm_add_ps(lo, _mm_movehl_ps(lo, lo));
    lo = _mm_add_ss(lo, _mm_movehdup_ps(lo));
    return _mm_cvtss_f32(lo);
}

static inline void cvt16_u8(float *dst, __m128i b, float a, float c) {
    __m256 va = _mm256_set1_ps(a), vc = _mm256_set1_ps(c);
    __m256 f0 = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(b));
    __m256 f1 = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_srli_si128(b, 8)));
    _mm256_storeu_ps(dst, _mm256_add_ps(_mm256_mul_ps(f0, va), vc));
    _mm256_storeu_ps(dst + 8, _mm256_add_ps(_mm256_mul_ps(f1, va), vc));
}
static inline void cvt16_i8(float *dst, __m128i b, float a) {
    __m256 va = _mm256_set1_ps(a);
    _mm256_storeu_ps(dst, _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(b)), va));
    _mm256_storeu_ps(dst + 8, _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(b, 8))), va));
}
static inline void cvt16_f16(float *dst, const uint8_t *src) {
    _mm256_storeu_ps(dst, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)src)));
    _mm256_storeu_ps(dst + 8, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(src + 16))));
}
static inline void cvt16_bf16(float *dst, const uint8_t *src) {
    __m128i a = _mm_loadu_si128((const __m128i *)src), b = _mm_loadu_si128((const __m128i *)(src + 16));
    _mm256_storeu_ps(dst, _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(a), 16)));
    _mm256_storeu_ps(dst + 8, _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(b), 16)));
}

#include "quant-simd.inc"


/* Widen 16 packed nibble bytes into the 32 values of a Q4 block (low nibbles first). */
static inline void q4_widen(const uint8_t *qs, __m256 q[4]) {
    __m128i raw = _mm_loadu_si128((const __m128i *)qs);
    __m128i m4 = _mm_set1_epi8(15);
    __m128i lo = _mm_and_si128(raw, m4);
    __m128i hi = _mm_and_si128(_mm_srli_epi16(raw, 4), m4);
    q[0] = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(lo));
    q[1] = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_srli_si128(lo, 8)));
    q[2] = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(hi));
    q[3] = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_srli_si128(hi, 8)));
}

static inline void q8_widen(const uint8_t *qs, __m256 q[4]) {
    for (int k = 0; k < 4; k++)
        q[k] = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)(qs + 8 * k))));
}

/* Rows [o0, o1) of a 32-block type; xs: per-vector block sums (Q4_1 only). */
static void rows_q32(moa_ggml_type t, const uint8_t *W, size_t rb, int64_t o0, int64_t o1,
                     int64_t n_in, const float *x, const float *xsum, int nv, int64_t x_stride,
                     float *y, int64_t n_out) {
    int64_t nb = n_in / 32;
    for (int64_t o = o0; o < o1; o++) {
        const uint8_t *p = W + (size_t)o * rb;
        __m256 acc[VG];
        float macc[VG];
        for (int v = 0; v < nv; v++) { acc[v] = _mm256_setzero_ps(); macc[v] = 0; }
        for (int64_t b = 0; b < nb; b++) {
            __m256 q[4];
            float d, m = 0;
            if (t == MOA_GGML_Q4_1) { d = f16s(p); m = f16s(p + 2); q4_widen(p + 4, q); p += 20; }
            else if (t == MOA_GGML_Q4_0) {
                d = f16s(p); q4_widen(p + 2, q); p += 18;
                __m256 eight = _mm256_set1_ps(8.0f);
                for (int k = 0; k < 4; k++) q[k] = _mm256_sub_ps(q[k], eight);
            } else { d = f16s(p); q8_widen(p + 2, q); p += 34; }
            __m256 vd = _mm256_set1_ps(d);
            for (int v = 0; v < nv; v++) {
                const float *xb = x + v * x_stride + b * 32;
                __m256 s = _mm256_mul_ps(q[0], _mm256_loadu_ps(xb));
                s = _mm256_fmadd_ps(q[1], _mm256_loadu_ps(xb + 8), s);
                s = _mm256_fmadd_ps(q[2], _mm256_loadu_ps(xb + 16), s);
                s = _mm256_fmadd_ps(q[3], _mm256_loadu_ps(xb + 24), s);
                acc[v] = _mm256_fmadd_ps(vd, s, acc[v]);
                if (t == MOA_GGML_Q4_1) macc[v] += m * xsum[v * nb + b];
            }
        }
        for (int v = 0; v < nv; v++) y[v * n_out + o] = hsum8(acc[v]) + macc[v];
    }
}

int moa_matmul_q_avx2(moa_ggml_type t, const void *W, int64_t n_out, int64_t n_in,
                      const float *x, int64_t n_vec, float *y) {
    int q32 = t == MOA_GGML_Q4_0 || t == MOA_GGML_Q4_1 || t == MOA_GGML_Q8_0;
    uint32_t be;
    if (!simd_type(t) || !moa_ggml_type_info(t, &be, NULL) || n_in % be) return 0;
    if (!q32) {   /* F16/F32 too: the chunked body's 4 partial sums beat rows_f's single chain */
        matmul_chunked(t, W, n_out, n_in, x, n_vec, y);
        return 1;
    }
    size_t rb = moa_ggml_row_bytes(t, n_in);
    int64_t nb = n_in / 32;
    float *xsum = NULL;
    if (t == MOA_GGML_Q4_1) {
        xsum = moa_alloc_array((size_t)(n_vec * nb), sizeof(float));
        if (!xsum) return 0;
        for (int64_t v = 0; v < n_vec; v++)
            for (int64_t b = 0; b < nb; b++) {
                float s = 0;
                for (int j = 0; j < 32; j++) s += x[v * n_in + b * 32 + j];
                xsum[v * nb + b] = s;
            }
    }
    /* Work unit: a chunk of rows for a group of up to VG vectors. */
    const int64_t chunk = 16;
    int64_t n_chunks = (n_out + chunk - 1) / chunk;
    int64_t n_groups = (n_vec + VG - 1) / VG;
    #pragma omp parallel for schedule(static) collapse(2) if (n_out * n_in * n_vec > 32768)
    for (int64_t g = 0; g < n_groups; g++) {
        for (int64_t c = 0; c < n_chunks; c++) {
            int64_t v0 = g * VG;
            int nv = (int)(n_vec - v0 < VG ? n_vec - v0 : VG);
            int64_t o0 = c * chunk, o1 = o0 + chunk < n_out ? o0 + chunk : n_out;
            rows_q32(t, W, rb, o0, o1, n_in, x + v0 * n_in, xsum ? xsum + v0 * nb : NULL, nv,
                     n_in, y + v0 * n_out, n_out);
        }
    }
    free(xsum);
    return 1;
}
