/* ops.h - elementwise and row operations of the forward pass (RMSNorm, SwiGLU's SiLU product,
 * residual adds), vectorised and, for batches, spread over OpenMP threads. */
#ifndef MOA_OPS_H
#define MOA_OPS_H
#include <stdint.h>

/* y[t] = x[t] / sqrt(mean_i x[t][i]^2 + eps) * w for n rows of d values (sum of squares in
 * double). x and y may be the same buffer. */
void moa_rmsnorm_rows(const float *x, const float *w, float *y, int64_t n, int64_t d, float eps);
/* g[i] = silu(g[i]) * u[i] = g[i] / (1 + e^-g[i]) * u[i] for i < n (e^x to ~1e-7 relative on
 * AVX-512; libm's expf otherwise). */
void moa_silu_mul(float *g, const float *u, int64_t n);
/* x[i] += h[i] for i < n. */
void moa_add_rows(float *x, const float *h, int64_t n);
#endif
