/* attn-avx2.c - AVX2 + FMA attention kernels (body in attn-simd.inc). Compiled with
 * -mavx2 -mfma; called only when the CPU supports them (attn.c dispatch). */
#include "moa/attn.h"
#include "exp-avx2.h"

#include <immintrin.h>

#define VW 8
typedef __m256 vf;
/* e^x, exactly 0 for x < -87, -inf and NaN (exp-avx2.h) */
#define v_exp(x) moa_exp_avx2(x)

/* Lane masks for partial loads/stores: lanes < n set. */
static const int32_t mask_tbl_[16] = {-1, -1, -1, -1, -1, -1, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0};
static inline __m256i lane_mask(int n) {
    return _mm256_loadu_si256((const __m256i *)(mask_tbl_ + 8 - n));
}
static inline float hsum8(__m256 x) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(x), _mm256_extractf128_ps(x, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}
static inline float hmax8(__m256 x) {
    __m128 s = _mm_max_ps(_mm256_castps256_ps128(x), _mm256_extractf128_ps(x, 1));
    s = _mm_max_ps(s, _mm_movehl_ps(s, s));
    s = _mm_max_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

#define V_ZERO() _mm256_setzero_ps()
#define V_SET1(x) _mm256_set1_ps(x)
#define V_LOAD(p) _mm256_loadu_ps(p)
#define V_STORE(p, x) _mm256_storeu_ps((p), (x))
#define V_LOADN(p, n) _mm256_maskload_ps((p), lane_mask(n))
#define V_STOREN(p, x, n) _mm256_maskstore_ps((p), lane_mask(n), (x))
#define V_FMA(a, b, c) _mm256_fmadd_ps((a), (b), (c))
#define V_MUL(a, b) _mm256_mul_ps((a), (b))
#define V_SUB(a, b) _mm256_sub_ps((a), (b))
#define V_MAX(a, b) _mm256_max_ps((a), (b))
#define V_HSUM(x) hsum8(x)
/* VW stored values widened to f32: binary16 (F16C), bfloat16 (upper half of an f32), int8 */
#define V_LOAD_F16(p) _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(const void *)(p)))
#define V_LOAD_BF16(p) _mm256_castsi256_ps(_mm256_slli_epi32( \
    _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)(const void *)(p))), 16))
#define V_LOAD_I8(p) _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)(const void *)(p))))
#define V_HMAX(x) hmax8(x)

/* Horizontal sums of 8 vectors at once: out[c] = sum of the lanes of v[c]. Halves of pairs
 * first, then two rounds of hadd leave keys in lanes (0, 2, 4, 6, 1, 3, 5, 7). */
static inline vf hsum8x8(const vf *v) {
    vf s[4];
    for (int p = 0; p < 4; p++)     /* low 128: hsum parts of v[2p]; high: of v[2p+1] */
        s[p] = _mm256_add_ps(_mm256_permute2f128_ps(v[2 * p], v[2 * p + 1], 0x20),
                             _mm256_permute2f128_ps(v[2 * p], v[2 * p + 1], 0x31));
    const vf r = _mm256_hadd_ps(_mm256_hadd_ps(s[0], s[1]), _mm256_hadd_ps(s[2], s[3]));
    return _mm256_permutevar8x32_ps(r, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
}
#define V_HSUM_KEYS(v) hsum8x8(v)

#include "attn-simd.inc"

void moa_attn_band_avx2(const moa_attn_band_args *a) { band_impl(a); }
void moa_linear_avx2(const moa_linear_args *a) { linear_impl(a); }
void moa_attn_kv_load_row_avx2(moa_attn_kv_type t, float *dst, const void *src, int hd) {
    kv_load_row(t, dst, src, hd);
}
