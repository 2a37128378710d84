/* quant-impl.h - ISA-specific quantised kernels (internal). Each returns 1 if it handled the
 * call, 0 if the type/shape is not covered (the caller falls back to the next path). */
#ifndef MOA_QUANT_IMPL_H
#define MOA_QUANT_IMPL_H
#include "quant.h"
int moa_matmul_q_avx2(moa_ggml_type t, const void *W, int64_t n_out, int64_t n_in,
                      const float *x, int64_t n_vec, float *y);
int moa_matmul_q_avx512(moa_ggml_type t, const void *W, int64_t n_out, int64_t n_in,
                        const float *x, int64_t n_vec, float *y);
/* n_rows rows of n values (rows rb bytes apart) -> dst [n_rows][n], bit-identical to
 * moa_dequant_row. */
int moa_dequant_rows_avx2(moa_ggml_type t, const void *src, size_t rb, int64_t n_rows,
                          int64_t n, float *dst);
int moa_dequant_rows_avx512(moa_ggml_type t, const void *src, size_t rb, int64_t n_rows,
                            int64_t n, float *dst);
/* Activations quantised to int8 (per 32 values for Q4_0/Q4_1/Q5_0/Q5_1/Q8_0, per 256 for
 * Q4_K/Q5_K/Q6_K) and integer dot products (quant-q8.inc), one function per ISA: AVX512-VNNI,
 * AVX-VNNI, AVX2 (vpmaddubsw). The caller checks the CPU. 0 if the type is not covered (or
 * n_in is not a multiple of its block) or scratch could not be allocated. */
int moa_matmul_q_q8_vnni512(moa_ggml_type t, const void *W, int64_t n_out, int64_t n_in,
                            const float *x, int64_t n_vec, float *y);
int moa_matmul_q_q8_avxvnni(moa_ggml_type t, const void *W, int64_t n_out, int64_t n_in,
                            const float *x, int64_t n_vec, float *y);
int moa_matmul_q_q8_avx2(moa_ggml_type t, const void *W, int64_t n_out, int64_t n_in,
                         const float *x, int64_t n_vec, float *y);
#endif
