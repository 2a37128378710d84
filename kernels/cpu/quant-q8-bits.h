/* quant-q8-bits.h - internal to kernels/cpu: AVX2 helper of the int8-activation kernels
 * (quant-q8.inc). */
#ifndef MOA_QUANT_Q8_BITS_H
#define MOA_QUANT_Q8_BITS_H
#include <immintrin.h>
#include <stdint.h>

/* Byte k = 0x10 where bit k of m is set (k < 32). */
static inline __m256i q8_bits32_avx2(uint32_t m) {
    __m256i v = _mm256_set1_epi32((int)m);
    v = _mm256_shuffle_epi8(v, _mm256_setr_epi8(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1,
                                                 2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3));
    const __m256i bm = _mm256_set1_epi64x((long long)0x8040201008040201ull);
    v = _mm256_cmpeq_epi8(_mm256_and_si256(v, bm), bm);
    return _mm256_and_si256(v, _mm256_set1_epi8(16));
}
#endif
