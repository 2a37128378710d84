/* attn-avx512.c - AVX-512 attention kernels (body in attn-simd.inc). Compiled with
 * -mavx512f/bw/vl/dq; called only when the CPU supports them (attn.c dispatch). */
#include "moa/attn.h"
#include "exp-avx512.h"

#include <immintrin.h>

#define VW 16
typedef __m512 vf;
#define V_ZERO() _mm512_setzero_ps()
#define V_SET1(x) _mm512_set1_ps(x)
#define V_LOAD(p) _mm512_loadu_ps(p)
#define V_STORE(p, x) _mm512_storeu_ps((p), (x))
#define V_LOADN(p, n) _mm512_maskz_loadu_ps((__mmask16)((1u << (n)) - 1u), (p))
#define V_STOREN(p, x, n) _mm512_mask_storeu_ps((p), (__mmask16)((1u << (n)) - 1u), (x))
#define V_FMA(a, b, c) _mm512_fmadd_ps((a), (b), (c))
#define V_MUL(a, b) _mm512_mul_ps((a), (b))
#define V_SUB(a, b) _mm512_sub_ps((a), (b))
#define V_MAX(a, b) _mm512_max_ps((a), (b))
#define V_HSUM(x) _mm512_reduce_add_ps(x)
/* VW stored values widened to f32: binary16, bfloat16 (upper half of an f32), int8 */
#define V_LOAD_F16(p) _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(const void *)(p)))
#define V_LOAD_BF16(p) _mm512_castsi512_ps(_mm512_slli_epi32( \
    _mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)(const void *)(p))), 16))
#define V_LOAD_I8(p) _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)(const void *)(p))))
#define V_HMAX(x) _mm512_reduce_max_ps(x)

/* e^x, exactly 0 for x < -87, -inf and NaN (exp-avx512.h) */
#define v_exp(x) moa_exp_avx512(x)

/* Horizontal sums of 16 vectors at once: out[c] = sum of the lanes of v[c]. A reduction tree
 * (halves, then quarters, then pairs, then lanes) leaves hsum(v[4m + k]) in lane 4k + m;
 * one permutation puts key c in lane c. */
static inline vf hsum16(const vf *v) {
    vf s[8], u[4], z[2];
    for (int p = 0; p < 8; p++)     /* [a.B0+a.B2, a.B1+a.B3, b.B0+b.B2, b.B1+b.B3] */
        s[p] = _mm512_add_ps(_mm512_shuffle_f32x4(v[2 * p], v[2 * p + 1], 0x44),
                             _mm512_shuffle_f32x4(v[2 * p], v[2 * p + 1], 0xEE));
    for (int p = 0; p < 4; p++)     /* block k sums to hsum(v[4p + k]) */
        u[p] = _mm512_add_ps(_mm512_shuffle_f32x4(s[2 * p], s[2 * p + 1], 0x88),
                             _mm512_shuffle_f32x4(s[2 * p], s[2 * p + 1], 0xDD));
    for (int p = 0; p < 2; p++)     /* per block: lanes 0-1 from u[2p], lanes 2-3 from u[2p+1] */
        z[p] = _mm512_add_ps(_mm512_shuffle_ps(u[2 * p], u[2 * p + 1], 0x44),
                             _mm512_shuffle_ps(u[2 * p], u[2 * p + 1], 0xEE));
    const vf r = _mm512_add_ps(_mm512_shuffle_ps(z[0], z[1], 0x88), _mm512_shuffle_ps(z[0], z[1], 0xDD));
    const __m512i idx = _mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15);
    return _mm512_permutexvar_ps(idx, r);
}
#define V_HSUM_KEYS(v) hsum16(v)

#include "attn-simd.inc"

void moa_attn_band_avx512(const moa_attn_band_args *a) { band_impl(a); }
void moa_linear_avx512(const moa_linear_args *a) { linear_impl(a); }
void moa_attn_kv_load_row_avx512(moa_attn_kv_type t, float *dst, const void *src, int hd) {
    kv_load_row(t, dst, src, hd);
}
