/* quant-impl.h - internal to kernels/cpu (and its tests): ISA-specific quantised kernels.
 * Each returns 1 if it handled the call, 0 if the type/shape is not covered (the caller falls
 * back to the next path). */
#ifndef MOA_QUANT_IMPL_H
#define MOA_QUANT_IMPL_H
#include "moa/quant.h"
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
/* Activations quantised to int8 per 32 values (every type: the K-quants' sub-blocks are 32
 * values, or two of 16) and integer dot products (quant-q8.inc), one function per ISA:
 * AVX512-VNNI, AVX-VNNI, AVX2 (vpmaddubsw). n <= 8 products of the same x, the activations
 * quantised once, all rows in one OpenMP loop. The caller checks the CPU. f32_blocks: NULL,
 * or [n_vec][n_in / 32] flags (moa_q8_outlier_blocks): flagged blocks are multiplied with the
 * f32 activations. 0 if a type is not covered (or n_in is not a multiple of its block) or
 * scratch could not be allocated: nothing was written then. */
int moa_matmul_q_q8_multi_vnni512(const moa_matmul_q_job *jobs, int n, int64_t n_in, const float *x,
                                  int64_t n_vec, const uint8_t *f32_blocks);
int moa_matmul_q_q8_multi_avxvnni(const moa_matmul_q_job *jobs, int n, int64_t n_in, const float *x,
                                  int64_t n_vec, const uint8_t *f32_blocks);
int moa_matmul_q_q8_multi_avx2(const moa_matmul_q_job *jobs, int n, int64_t n_in, const float *x,
                               int64_t n_vec, const uint8_t *f32_blocks);
/* Outlier blocks of the int8 path: flags[v][b] = 1 for the blocks of `block` values (32) of
 * vector v that hold an outlier, a value with |x| > MOA_Q8ACT_OUTLIER x the mean |x| of its
 * 256-value window (windows [0,256), [256,512), ..., and the last 256 values; the whole
 * vector when shorter). The mean |x|, unlike the RMS, moves little with a few outliers (8 of
 * them, 40x the rest, raise it ~2.5x: they stay flagged). A Gaussian window has max ~ 4x its
 * mean |x|. Returns the number of flagged blocks, or -1 when more than half of some vector's
 * blocks are flagged (the caller then multiplies in f32 throughout). */
#define MOA_Q8ACT_OUTLIER 12.0f
int64_t moa_q8_outlier_blocks(const float *x, int64_t n_in, int64_t n_vec, int64_t block, uint8_t *flags);
/* The same outliers of one vector, as indices (ascending within each window): the count, or
 * -1 when there are more than max. */
int64_t moa_q8_outlier_values(const float *x, int64_t n_in, int32_t *idx, int64_t max);
/* Batched products with int8 activations on AVX512-VNNI (quant-gemm-vnni512.c): for each of
 * n_jobs <= 8 jobs, y[t][o] = sum_i W[o][i] x[t][i] for t < n, types with an int8 path; the
 * activations checked and quantised once; outliers of each token (as moa_q8_outlier_values,
 * at most 32 a token) multiplied in f32. 0 if not covered (type, n_in, too many outliers, no
 * memory): the outputs are then to be computed by another path. */
int moa_matmul_q_gemm_vnni512(const moa_matmul_q_job *jobs, int n_jobs, int64_t n_in, const float *x, int64_t n);
/* Packed matrices (quant-pack-vnni512.c, moa_qpack in quant.h); the caller checks the CPU. */
int moa_qpack_supported_vnni512(moa_ggml_type t);
moa_qpack *moa_qpack_create_vnni512(moa_ggml_type t, const void *W, int64_t n_out, int64_t n_in);
void moa_qpack_free_vnni512(moa_qpack *p);
size_t moa_qpack_bytes_vnni512(const moa_qpack *p);
void moa_qpack_info_vnni512(const moa_qpack *p, moa_ggml_type *t, const void **W, int64_t *n_out, int64_t *n_in);
/* ys[k][t][o] = sum_i W_k[o][i] x[t][i] for the packs (same n_in), t < n: 1 if done (0: more
 * than 32 outliers in a token, or no memory); *n_outliers: the outlier values taken. */
int moa_matmul_qpack_vnni512(const moa_qpack *const *packs, float *const *ys, int n_jobs, const float *x, int64_t n,
                             int64_t *n_outliers);
#endif
