/* moa/ops.h - public header of moa_kernels (kernels/; op family of kernels/cpu/ops*.c; the
 * device interface is moa/backend.h): elementwise and row operations of the forward pass
 * (RMSNorm, SwiGLU's SiLU product, residual adds) and of the profiler's backward (RMSNorm and
 * SwiGLU backward, softmax cross-entropy), vectorised and, for batches, spread over OpenMP
 * threads. The CPU backend (moa/backend.h) calls these; kernels/cuda has a twin of each.
 * Ownership: the caller owns every buffer; nothing is kept past the call. Threading: call from
 * one thread (batched ops open their own OpenMP region); reentrant on distinct outputs. */
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

/* a[i] = silu(g[i]) * u[i] out of place, with libm's expf (the profiler's forward keeps g, u). */
void moa_silu_mul_to(const float *g, const float *u, float *a, int64_t n);
/* Backward of a = silu(g) u for upstream da, in place: g[i] <- da u s (1 + g (1 - s)),
 * u[i] <- da g s, s = 1 / (1 + e^-g) (moa_cu_swiglu_bwd, the CUDA kernel's formula). */
void moa_swiglu_bwd(float *g, float *u, const float *da, int64_t n);
/* dx[t] += the RMSNorm backward of y = x r w for upstream dy, r = (mean(x^2) + eps)^-1/2:
 * dx += r w dy - x r^3 mean(x w dy), n rows of d (sums in double). */
void moa_rmsnorm_bwd_add_rows(const float *x, const float *w, const float *dy, float *dx,
                              int64_t n, int64_t d, float eps);
/* Softmax cross-entropy over rows of logits [rows][V] with targets[r] in [0, V) (not
 * checked): loss[r] = lse_r - z_r[target] (lse in double), then row r becomes
 * (softmax(z_r) - onehot(target)) / n_total. */
void moa_xent_grad_rows(float *logits, const int32_t *targets, int64_t rows, int64_t V,
                        int64_t n_total, double *loss);
/* Key smoothing on n rows (model/key-smooth.h): q[t][h][i] *= s[h / (n_head/n_head_kv)][i],
 * k[t][g][i] /= s[g][i] for s [n_head_kv][hd] (powers of two: exact). */
void moa_key_smooth_rows(float *q, float *k, const float *s, int64_t n, int n_head,
                         int n_head_kv, int hd);
#endif
