/* quant-impl.h - ISA-specific quantised kernels (internal). Each returns 1 if it handled the
 * call, 0 if the type/shape is not covered (the caller falls back to the reference). */
#ifndef MOA_QUANT_IMPL_H
#define MOA_QUANT_IMPL_H
#include "quant.h"
int moa_matmul_q_avx2(moa_ggml_type t, const void *W, int64_t n_out, int64_t n_in,
                      const float *x, int64_t n_vec, float *y);
#endif
