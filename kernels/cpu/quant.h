/* quant.h - ggml tensor types: block layouts, f16/bf16 conversion, dequantisation, and
 * matrix-vector products with quantised weights (f32 activations, f32 accumulation).
 *
 * Layout: a weight W of ggml shape ne = [n_in, n_out] is n_out rows of n_in values; each row
 * is a sequence of blocks along n_in. y[o] = sum_i W[o][i] x[i].
 */
#ifndef MOA_QUANT_H
#define MOA_QUANT_H

#include <stddef.h>
#include <stdint.h>

/* ggml tensor type ids (append-only; values as in ggml). */
typedef enum {
    MOA_GGML_F32 = 0, MOA_GGML_F16 = 1, MOA_GGML_Q4_0 = 2, MOA_GGML_Q4_1 = 3,
    MOA_GGML_Q5_0 = 6, MOA_GGML_Q5_1 = 7, MOA_GGML_Q8_0 = 8,
    MOA_GGML_Q4_K = 12, MOA_GGML_Q5_K = 13, MOA_GGML_Q6_K = 14, MOA_GGML_BF16 = 30,
} moa_ggml_type;

const char *moa_ggml_type_name(moa_ggml_type t);   /* "Q4_1"; "?" if unknown */
/* Elements and bytes per block; returns 0 for unknown types (outputs set to 0). */
int moa_ggml_type_info(moa_ggml_type t, uint32_t *block_elems, uint32_t *block_bytes);
/* Bytes of one row of n elements (n a multiple of the block size). */
size_t moa_ggml_row_bytes(moa_ggml_type t, int64_t n);

float moa_f16_to_f32(uint16_t h);     /* IEEE binary16, subnormals included */
uint16_t moa_f32_to_f16(float f);     /* round to nearest even */
float moa_bf16_to_f32(uint16_t h);
uint16_t moa_f32_to_bf16(float f);    /* round to nearest even */

/* Dequantise n values (a multiple of the block size) from src to dst. Reference code. */
void moa_dequant_row(moa_ggml_type t, const void *src, float *dst, int64_t n);

/* y[v][o] = sum_i W[o][i] x[v][i] for v < n_vec.  W: n_out rows of type t, x: [n_vec][n_in],
 * y: [n_vec][n_out]. Uses the fastest kernel available (AVX-512/AVX2 for Q4_0, Q4_1, Q8_0,
 * F32, F16), OpenMP across rows. Intended for small n_vec (decode); large batches should
 * dequantise once and use BLAS. */
void moa_matmul_q(moa_ggml_type t, const void *W, int64_t n_out, int64_t n_in,
                  const float *x, int64_t n_vec, float *y);
/* The plain C reference of moa_matmul_q (dequantise a row, dot in double). */
void moa_matmul_q_ref(moa_ggml_type t, const void *W, int64_t n_out, int64_t n_in,
                      const float *x, int64_t n_vec, float *y);

/* CPU features (cached). */
int moa_cpu_has_avx2(void);
int moa_cpu_has_avx512(void);
/* Force the portable paths (tests compare paths; 0 = auto). */
void moa_cpu_force_reference(int on);

#endif
