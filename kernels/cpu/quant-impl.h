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
/* Q4_K / Q6_K with activations quantised to int8 per 256 values, AVX512-VNNI integer dots
 * (quant-avx512.c); the caller checks the CPU (moa_cpu_has_avx512_vnni). 0 if not covered. */
int moa_matmul_q_q8act_avx512vnni(moa_ggml_type t, const void *W, int64_t n_out, int64_t n_in,
                                  const float *x, int64_t n_vec, float *y);
#endif
