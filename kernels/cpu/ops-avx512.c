/* ops-avx512.c - the SiLU product on AVX-512 (ops.h). Compiled with -mavx512f/bw/vl/dq;
 * called only when the CPU supports them (ops.c). e^-g is exp-avx512.h's, exactly 0 for
 * -g < -87, where 1 + e^-g rounds to 1 as it would with the clamped e^-87. */
#include "exp-avx512.h"

#include <immintrin.h>
#include <stdint.h>

void moa_silu_mul_avx512(float *g, const float *u, int64_t n);

void moa_silu_mul_avx512(float *g, const float *u, int64_t n) {
    int64_t i = 0;
    const __m512 one = _mm512_set1_ps(1.0f), neg = _mm512_set1_ps(-0.0f);
    for (; i < n; i += 16) {
        const __mmask16 m = n - i >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (n - i)) - 1);
        const __m512 gv = _mm512_maskz_loadu_ps(m, g + i), uv = _mm512_maskz_loadu_ps(m, u + i);
        const __m512 e = moa_exp_avx512(_mm512_xor_ps(gv, neg));
        _mm512_mask_storeu_ps(g + i, m, _mm512_mul_ps(_mm512_div_ps(gv, _mm512_add_ps(one, e)), uv));
    }
}
