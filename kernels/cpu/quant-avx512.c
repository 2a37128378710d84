/* quant-avx512.c - AVX-512 (F/BW/VL) matrix-vector products with f32 activations for every
 * supported type, and the AVX-512 dequantiser: the body is quant-simd.inc (dequantise 256
 * values into an L1 buffer with 16-lane conversions, dot with every activation vector), except
 * Q4_0/Q4_1/Q8_0 which stay on the (faster) AVX2 block kernels.
 * F32/F16/BF16 rows are converted in the same chunks. Compiled with -mavx512f/bw/vl/dq;
 * called only when the CPU supports them (quant.c dispatch). */
#include "quant-impl.h"
#include "moa-common.h"

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

/* ---- int8 activations for K-quants (AVX512-VNNI, 256-bit dpbusd) -----------------------
 * Each activation vector is quantised per 256 values (one super-block): dx = max|x| / 127,
 * xq = round(x / dx), with sums of xq per 16 values (bs). Then per super-block, with integer
 * dot products from vpdpbusd (u8 weights x s8 activations, 4 products per int32 lane):
 *   Q4_K, sub-block j of 32:  dx * (d sc_j sum q xq - dmin m_j sum xq)
 *   Q6_K, sub-block s of 16:  dx * d S_s (sum q xq - 32 sum xq)     (q = 0..63 unsigned)
 * The only error beyond f32 rounding is the activation rounding, |x - dx xq| <= dx / 2 per
 * value: |y - y_exact| <= (max_b dx_b / 2) * sum_i |W_i| (tests bound it by 1e-2 |w|.|x|). */
#define QV 4   /* activation vectors per pass over W */

typedef struct { int8_t *q; float *d; int32_t *bs; } q8_act;   /* [n_vec][n_in], [n_vec][nb], [n_vec][16 nb] */

static void q8_quantise(const float *x, int64_t n_vec, int64_t n_in, q8_act *a) {
    const int64_t nb = n_in / 256;
    for (int64_t v = 0; v < n_vec; v++)
        for (int64_t b = 0; b < nb; b++) {
            const float *xb = x + v * n_in + b * 256;
            float amax = 0;
            for (int i = 0; i < 256; i++) amax = fmaxf(amax, fabsf(xb[i]));
            float id = amax > 0 ? 127.0f / amax : 0;
            a->d[v * nb + b] = amax / 127.0f;
            int8_t *q = a->q + v * n_in + b * 256;
            for (int s = 0; s < 16; s++) {
                int sum = 0;
                for (int i = 16 * s; i < 16 * s + 16; i++) { q[i] = (int8_t)lrintf(xb[i] * id); sum += q[i]; }
                a->bs[(v * nb + b) * 16 + s] = sum;
            }
        }
}

static inline float hsum8(__m256 a) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

__attribute__((target("avx512vnni,avx512vl")))
static void q4k_q8_rows(const uint8_t *W, size_t rb, int64_t o0, int64_t o1, int64_t n_in,
                        const q8_act *a, int nv, float *y, int64_t n_out) {
    const __m256i m4 = _mm256_set1_epi8(15);
    const int64_t nb = n_in / 256;
    for (int64_t o = o0; o < o1; o++) {
        const uint8_t *p = W + (size_t)o * rb;
        __m256 acc[QV];
        float mins[QV];
        for (int v = 0; v < nv; v++) { acc[v] = _mm256_setzero_ps(); mins[v] = 0; }
        for (int64_t b = 0; b < nb; b++, p += 144) {
            const float d = f16s(p), dmin = f16s(p + 2);
            int sc[8], mn[8];
            for (int j = 0; j < 8; j++) k_sm(p + 4, j, &sc[j], &mn[j]);
            for (int c = 0; c < 4; c++) {
                __m256i raw = _mm256_loadu_si256((const __m256i *)(p + 16 + 32 * c));
                __m256i lo = _mm256_and_si256(raw, m4), hi = _mm256_and_si256(_mm256_srli_epi16(raw, 4), m4);
                for (int v = 0; v < nv; v++) {
                    const int8_t *xb = a->q + v * n_in + b * 256 + 64 * c;
                    const float dd = d * a->d[v * nb + b];
                    __m256i d1 = _mm256_dpbusd_epi32(_mm256_setzero_si256(), lo, _mm256_loadu_si256((const __m256i *)xb));
                    __m256i d2 = _mm256_dpbusd_epi32(_mm256_setzero_si256(), hi, _mm256_loadu_si256((const __m256i *)(xb + 32)));
                    acc[v] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(d1), _mm256_set1_ps(dd * (float)sc[2 * c]), acc[v]);
                    acc[v] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(d2), _mm256_set1_ps(dd * (float)sc[2 * c + 1]), acc[v]);
                }
            }
            for (int v = 0; v < nv; v++) {
                const int32_t *bs = a->bs + (v * nb + b) * 16;
                int msum = 0;
                for (int j = 0; j < 8; j++) msum += mn[j] * (bs[2 * j] + bs[2 * j + 1]);
                mins[v] += dmin * a->d[v * nb + b] * (float)msum;
            }
        }
        for (int v = 0; v < nv; v++) y[v * n_out + o] = hsum8(acc[v]) - mins[v];
    }
}

__attribute__((target("avx512vnni,avx512vl")))
static void q6k_q8_rows(const uint8_t *W, size_t rb, int64_t o0, int64_t o1, int64_t n_in,
                        const q8_act *a, int nv, float *y, int64_t n_out) {
    const __m256i m4 = _mm256_set1_epi8(15), m3 = _mm256_set1_epi8(3);
    const int64_t nb = n_in / 256;
    for (int64_t o = o0; o < o1; o++) {
        const uint8_t *p = W + (size_t)o * rb;
        __m256 acc[QV];
        float offs[QV];
        for (int v = 0; v < nv; v++) { acc[v] = _mm256_setzero_ps(); offs[v] = 0; }
        for (int64_t b = 0; b < nb; b++, p += 210) {
            const int8_t *S = (const int8_t *)(p + 192);
            const float d = f16s(p + 208);
            for (int h = 0; h < 2; h++) {
                const uint8_t *L = p + 64 * h, *H = p + 128 + 32 * h;
                __m256i la = _mm256_loadu_si256((const __m256i *)L), lb = _mm256_loadu_si256((const __m256i *)(L + 32));
                __m256i hh = _mm256_loadu_si256((const __m256i *)H);
                __m256i q[4];
                q[0] = _mm256_or_si256(_mm256_and_si256(la, m4), _mm256_slli_epi16(_mm256_and_si256(hh, m3), 4));
                q[1] = _mm256_or_si256(_mm256_and_si256(lb, m4),
                                       _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(hh, 2), m3), 4));
                q[2] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(la, 4), m4),
                                       _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(hh, 4), m3), 4));
                q[3] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(lb, 4), m4),
                                       _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(hh, 6), m3), 4));
                /* group g = values 128h + 32g + [0, 32): scales S[8h + 2g] (first 16), S[8h + 2g + 1] */
                __m256 sg[4];
                for (int g = 0; g < 4; g++)
                    sg[g] = _mm256_set_m128(_mm_set1_ps(d * (float)S[8 * h + 2 * g + 1]),
                                            _mm_set1_ps(d * (float)S[8 * h + 2 * g]));
                for (int v = 0; v < nv; v++) {
                    const int8_t *xb = a->q + v * n_in + b * 256 + 128 * h;
                    const __m256 dx = _mm256_set1_ps(a->d[v * nb + b]);
                    for (int g = 0; g < 4; g++) {
                        __m256i dp = _mm256_dpbusd_epi32(_mm256_setzero_si256(), q[g],
                                                         _mm256_loadu_si256((const __m256i *)(xb + 32 * g)));
                        acc[v] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(dp), _mm256_mul_ps(sg[g], dx), acc[v]);
                    }
                }
            }
            for (int v = 0; v < nv; v++) {   /* the -32 offset: 32 d dx sum_s S_s bs_s */
                const int32_t *bs = a->bs + (v * nb + b) * 16;
                int s32 = 0;
                for (int s = 0; s < 16; s++) s32 += S[s] * bs[s];
                offs[v] += 32.0f * d * a->d[v * nb + b] * (float)s32;
            }
        }
        for (int v = 0; v < nv; v++) y[v * n_out + o] = hsum8(acc[v]) - offs[v];
    }
}

int moa_matmul_q_q8act_avx512vnni(moa_ggml_type t, const void *W, int64_t n_out, int64_t n_in,
                                  const float *x, int64_t n_vec, float *y) {
    if ((t != MOA_GGML_Q4_K && t != MOA_GGML_Q6_K) || n_in % 256) return 0;
    const int64_t nb = n_in / 256;
    q8_act a = {malloc((size_t)(n_vec * n_in)), malloc(sizeof(float) * (size_t)(n_vec * nb)),
                malloc(sizeof(int32_t) * (size_t)(n_vec * nb * 16))};
    if (!a.q || !a.d || !a.bs) { free(a.q); free(a.d); free(a.bs); return 0; }
    q8_quantise(x, n_vec, n_in, &a);
    const size_t rb = moa_ggml_row_bytes(t, n_in);
    const int64_t rows = 16, n_chunks = (n_out + rows - 1) / rows, n_pass = (n_vec + QV - 1) / QV;
    #pragma omp parallel for schedule(dynamic, 1) collapse(2) if (n_out * n_in * n_vec > 32768)
    for (int64_t g = 0; g < n_pass; g++)
        for (int64_t c = 0; c < n_chunks; c++) {
            const int64_t v0 = g * QV;
            const int nv = (int)(n_vec - v0 < QV ? n_vec - v0 : QV);
            const int64_t o0 = c * rows, o1 = o0 + rows < n_out ? o0 + rows : n_out;
            q8_act av = {a.q + v0 * n_in, a.d + v0 * nb, a.bs + v0 * nb * 16};
            if (t == MOA_GGML_Q4_K) q4k_q8_rows(W, rb, o0, o1, n_in, &av, nv, y + v0 * n_out, n_out);
            else q6k_q8_rows(W, rb, o0, o1, n_in, &av, nv, y + v0 * n_out, n_out);
        }
    free(a.q); free(a.d); free(a.bs);
    return 1;
}
