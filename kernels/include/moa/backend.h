/* moa/backend.h - public header of moa_kernels (kernels/), its entry point: the one device
 * interface of kernels/ (the CPU op families the CPU backend runs are declared in the other
 * headers of kernels/include/moa/, one per kernels/cpu source: quant.h, rope.h, attn.h,
 * attn-train.h, ops.h): the device choice behind `--device cpu|cuda|auto` and the backend table
 * (as ggml-backend: a small table of buffers and ops). Plain C, in every build (no CUDA toolkit
 * needed).
 *
 * The choice is a pure function of the request and the number of CUDA devices found (0 in a
 * build without CUDA), unit-tested without a GPU (tests/kernels/cuda/test_cuda_common.c):
 *   cpu  -> CPU
 *   cuda -> CUDA if a device is present, else MOA_ERR_DEVICE ("no CUDA device ...")
 *   auto -> CUDA if a device is present, else CPU (the caller logs which one it got)
 *
 * Backends: moa_backend_cpu() (below; kernels/cpu/backend-cpu.c) is always there and complete;
 * moa_cuda_backend(ctx) (moa/cuda.h) fills the same entries on a CUDA device.
 * Every backend fills every entry: tests/kernels/test_backend_ops.c runs every entry of every
 * backend against a plain C reference and fails on a NULL entry.
 *
 * Conventions for every op entry:
 *   - the backend's context comes first (b.ctx); buffers are in the backend's memory (host
 *     memory for the CPU, device memory for CUDA: from b.alloc or the backend's own allocator);
 *     the caller owns every buffer, an op never keeps a pointer past its return;
 *   - work may be queued (CUDA: on the context's stream): results are visible after b.sync or a
 *     b.download (which waits); the CPU backend runs each op to completion before returning;
 *   - threading: one backend context belongs to one host thread at a time (the CPU ops use
 *     OpenMP inside a call); distinct contexts may be used concurrently;
 *   - returns MOA_OK or a negative moa_status with moa_last_error() set (bad arguments,
 *     device errors); sizes of 0 rows or values are a no-op.
 * Each op is written once per device: the CPU entries call the named kernels of kernels/cpu
 * (moa/ops.h, moa/rope.h, moa/attn-train.h, moa/quant.h), the CUDA entries the moa_cuda_*
 * functions of the same name.
 *
 * The table is append-only: new entries go at the end (moa_cuda_backend and the CPU table
 * initialise the members in order), and test_backend_ops.c checks that its list of op tests
 * covers the whole struct.
 */
#ifndef MOA_BACKEND_H
#define MOA_BACKEND_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include "moa/base.h"

#ifdef __cplusplus
extern "C" {
#endif
#include "moa/attn-train.h"   /* moa_attn_train_shape, moa_influence_acc (a C header) */
#include "moa/rope.h"         /* moa_rope_table (moa_backend_cpu_rope; a C header) */

/* Append-only. */
typedef enum {
    MOA_DEVICE_CPU  = 0,
    MOA_DEVICE_CUDA = 1,
    MOA_DEVICE_AUTO = 2,   /* a request only; never the result of a choice */
} moa_device_kind;

/* Parse "cpu" | "cuda" | "auto" (NULL or "" = auto). Returns 0, or -1 for anything else. */
static inline int moa_device_parse(const char *s, moa_device_kind *out) {
    if (!s || !*s || strcmp(s, "auto") == 0) { *out = MOA_DEVICE_AUTO; return 0; }
    if (strcmp(s, "cpu") == 0) { *out = MOA_DEVICE_CPU; return 0; }
    if (strcmp(s, "cuda") == 0 || strcmp(s, "gpu") == 0) { *out = MOA_DEVICE_CUDA; return 0; }
    return -1;
}

/* The choice: returns MOA_OK and *out (CPU or CUDA), or MOA_ERR_DEVICE when CUDA was asked
 * for and n_cuda_devices == 0. Pure (does not set the error message; the caller does). */
static inline moa_status moa_device_choose(moa_device_kind req, int n_cuda_devices,
                                           moa_device_kind *out) {
    switch (req) {
    case MOA_DEVICE_CPU: *out = MOA_DEVICE_CPU; return MOA_OK;
    case MOA_DEVICE_CUDA:
        if (n_cuda_devices <= 0) return MOA_ERR_DEVICE;
        *out = MOA_DEVICE_CUDA;
        return MOA_OK;
    case MOA_DEVICE_AUTO:
        *out = n_cuda_devices > 0 ? MOA_DEVICE_CUDA : MOA_DEVICE_CPU;
        return MOA_OK;
    }
    return MOA_ERR_INVALID_ARG;
}

/* A token embedding table for the embed entry: n_vocab rows of d values of ggml type `type`
 * (moa/quant.h's moa_ggml_type values). rows: the raw ggml rows in the backend's memory
 * (the GGUF mapping for the CPU, a device copy for CUDA), or NULL when the backend cannot
 * dequantise the type (then host_rows is read on the host); host_rows: the same rows in host
 * memory. Owned by the caller (the model); the struct itself is host memory. */
typedef struct moa_backend_embd {
    int type;
    int64_t d;
    const void *rows;
    const void *host_rows;
} moa_backend_embd;

/* A backend: its memory and the ops the engine and the profiler dispatch through it.
 * Shapes: rows are tokens, row-major; n counts rows, d values per row. */
typedef struct moa_backend {
    const char *name;           /* "cpu", "cuda" */
    moa_device_kind kind;
    void *ctx;                  /* backend context (moa_cuda_ctx* for CUDA; NULL for the CPU,
                                   or its RoPE table: moa_backend_cpu_rope) */

    /* ---- memory -------------------------------------------------------------------------- */
    /* *out = a buffer of `bytes` in the backend's memory, owned by the caller (b.free); NULL
     * for 0 bytes. MOA_ERR_NOMEM (CPU, CUDA) or MOA_ERR_DEVICE. Contents undefined. */
    moa_status (*alloc)(void *ctx, size_t bytes, void **out);
    void (*free)(void *ctx, void *p);                                           /* NULL ok */
    /* Copies between host memory (src of upload, dst of download) and backend memory. A
     * download waits for queued work and for its copy; an upload may be queued (the host
     * buffer must stay unchanged until the next sync or download). */
    moa_status (*upload)(void *ctx, void *dst, const void *src, size_t bytes);
    moa_status (*download)(void *ctx, void *dst, const void *src, size_t bytes);
    moa_status (*sync)(void *ctx);                          /* wait for all queued work */

    /* ---- profiler attention (moa/attn-train.h: same shapes and semantics) --------- */
    /* O [n][n_head*hd], LSE [n_head][n] overwritten (causal dense softmax, row log-sum-exp).
     * The shape struct is host memory. CUDA: hd <= 256. */
    moa_status (*attn_fwd_lse)(void *ctx, const moa_attn_train_shape *s, const float *Q,
                               const float *K, const float *V, float *O, float *LSE);
    /* dQ, dK, dV overwritten; acc (may be NULL) *added to*: the struct is host memory, its
     * arrays (abs, sgn, sink_abs, sink_sgn) are backend memory (device doubles for CUDA). */
    moa_status (*attn_bwd_influence)(void *ctx, const moa_attn_train_shape *s, const float *Q,
                                     const float *K, const float *V, const float *O,
                                     const float *dO, const float *LSE, float *dQ, float *dK,
                                     float *dV, moa_influence_acc *acc);

    /* ---- engine ops ------------------------------------------------------------------------ */
    /* y[t] = x[t] / sqrt(mean_i x[t][i]^2 + eps) * w, n rows of d (x, y [n][d], w [d]; y may
     * be x). Sum of squares in double. CPU: moa_rmsnorm_rows. */
    moa_status (*rmsnorm)(void *ctx, const float *x, const float *w, float *y, int64_t n,
                          int64_t d, float eps);
    /* RoPE in place on x [n][n_heads*hd], row t at position pos0 + t: pair i < rope_dim/2 of
     * each head rotated by theta_i = pos * base^(-2i/rope_dim) (by -theta_i when inverse = 1,
     * the backward); the pair is (x[2i], x[2i+1]) with neox = 0 (GGUF llama) and
     * (x[i], x[i + rope_dim/2]) with neox = 1 (qwen2). cos/sin in double rounded to float,
     * as rope.h's tables. Dims past rope_dim unchanged. rope_dim even, in (0, hd]; base > 1.
     * CPU: moa_rope_rows_at (rope.h). */
    moa_status (*rope)(void *ctx, float *x, int64_t n, int n_heads, int hd, int rope_dim,
                       float base, int64_t pos0, int inverse, int neox);
    /* g[i] = silu(g[i]) * u[i] = g / (1 + e^-g) * u, i < n. CPU: moa_silu_mul (AVX-512 e^x to
     * ~1e-7 relative where the CPU has it). */
    moa_status (*swiglu)(void *ctx, float *g, const float *u, int64_t n);

    /* ---- appended 2026-12-07: memory, residual, the profiler's backward ------------------ */
    /* dst = src, both in backend memory (may be queued). */
    moa_status (*copy)(void *ctx, void *dst, const void *src, size_t bytes);
    /* p[0 .. bytes) = 0 (may be queued). */
    moa_status (*memset0)(void *ctx, void *p, size_t bytes);
    /* x[i] += y[i], i < n (residual). CPU: moa_add_rows. */
    moa_status (*add)(void *ctx, float *x, const float *y, int64_t n);
    /* a[i] = silu(g[i]) * u[i] out of place (g, u kept for the backward), libm expf on both
     * devices. CPU: moa_silu_mul_to. */
    moa_status (*swiglu_to)(void *ctx, const float *g, const float *u, float *a, int64_t n);
    /* The backward of a = silu(g) u for upstream da, in place: g[i] <- dg = da u s (1 + g (1 - s)),
     * u[i] <- du = da g s, s = 1 / (1 + e^-g) (moa_cu_swiglu_bwd). CPU: moa_swiglu_bwd. */
    moa_status (*swiglu_bwd)(void *ctx, float *g, float *u, const float *da, int64_t n);
    /* dx += the RMSNorm backward of y = x r w for upstream dy, r = (mean(x^2) + eps)^-1/2:
     * dx += r w dy - x r^3 mean(x w dy) per row (x, dy, dx [n][d], w [d]; sums in double).
     * CPU: moa_rmsnorm_bwd_add_rows. */
    moa_status (*rmsnorm_bwd_add)(void *ctx, const float *x, const float *w, const float *dy,
                                  float *dx, int64_t n, int64_t d, float eps);
    /* Softmax cross-entropy with its gradient, rows of logits [rows][V] with targets
     * [rows] (int32, backend memory, in range: not checked): loss[r] = logsumexp(z_r) -
     * z_r[target] (double [rows], backend memory), and row r is replaced by
     * (softmax(z_r) - onehot(target)) / n_total (n_total >= 1: the rows of the whole mean, so
     * chunks of one mean share it). CPU: moa_xent_grad_rows. */
    moa_status (*xent_grad)(void *ctx, float *logits, const int32_t *targets, int64_t rows,
                            int64_t V, int64_t n_total, double *loss);
    /* Key smoothing (model/key-smooth.h) on n rows: q[t][h][i] *= s[h / (n_head/n_head_kv)][i],
     * k[t][g][i] /= s[g][i]; s [n_head_kv * hd] powers of two (exact). CPU: moa_key_smooth_rows. */
    moa_status (*key_smooth)(void *ctx, float *q, float *k, const float *s, int64_t n,
                             int n_head, int n_head_kv, int hd);

    /* ---- appended 2026-12-07 (issue 17): the rest of the engine's forward pass ------------- */
    /* x[t] = the f32 values of row tokens[t] of the table, t < n (x [n][t->d], backend memory;
     * tokens host memory, in range: not checked; t host memory). Exact: every backend yields
     * moa_dequant_row's values. The host array may be reused once the call returns. CPU:
     * moa_dequant_row per row. CUDA: the ids uploaded to the context's workspace and
     * moa_cuda_embed over t->rows; t->rows NULL: rows dequantised on the host and uploaded
     * (waits). */
    moa_status (*embed)(void *ctx, const moa_backend_embd *t, const int32_t *tokens, int64_t n,
                        float *x);
    /* Projections of one input: y_k[t][o] = sum_i W_k[o][i] x[t][i] (+ bias_k[o]) for the
     * nw (1..8) weights w[0..nw) sharing n_in (q/k/v, gate/up; w and y are host arrays of
     * pointers), x [n][n_in], y_k [n][n_out_k] in backend memory, no y_k overlapping x. The
     * weights are backend handles, immutable and shared, prepared by the caller for this
     * backend: CPU `const moa_weight *` (moa/quant.h: moa_weight_matmul, or
     * moa_weight_matmul_multi for nw > 1: the same kernels as calling them directly; a weight
     * with exact_f32 set is one BLAS sgemm on its f32 copy at any n: the profiler's);
     * CUDA `const moa_cuda_weight *` (moa/cuda.h: a raw weight with n <=
     * MOA_CUDA_MATVEC_MAX_N takes moa_cuda_matvec on x in f32; otherwise x is rounded once to
     * the weights' element type in the context's workspace (f32 weights: read as is), then
     * moa_cuda_matmul per weight (a raw one dequantised into the context's scratch first),
     * f32 accumulation). */
    moa_status (*matmul)(void *ctx, const void *const *w, int nw, const float *x, int64_t n,
                         float *const *y);
    /* The same product for one weight with y in *host* memory ([n][n_out], the LM head's
     * logits): returns when y is complete. CPU: moa_weight_matmul writing y directly. CUDA:
     * rows in chunks through the context's workspace (64 rows, f32), each downloaded (a raw
     * weight: the matvec for n <= MOA_CUDA_MATVEC_MAX_N, else dequantised once per call). */
    moa_status (*matmul_to_host)(void *ctx, const void *w, const float *x, int64_t n, float *y);

    /* ---- appended 2026-12-07 (issue 17 item 1): the profiler's sample over the table ------- */
    /* The activation backward of matmul for one weight: dx[t][i] = beta dx[t][i] + sum_o
     * dy[t][o] W[o][i] (the bias does not enter it), dy [n][n_out], dx [n][n_in] in backend
     * memory, not overlapping; beta 0 (dx overwritten) or 1 (added to). CPU: the weight's f32
     * copy by BLAS (moa_weight_matmul_bwd; MOA_ERR_UNSUPPORTED for a weight without one).
     * CUDA: dy rounded once to the weights' element type in the context's workspace (f32
     * weights: read as is), then moa_cuda_matmul_bwd (f32 accumulation; dequantised weights
     * only - the profiler's copy - a raw engine weight gives MOA_ERR_INVALID_ARG). */
    moa_status (*matmul_bwd)(void *ctx, const void *w, const float *dy, int64_t n, float *dx,
                             float beta);
} moa_backend;

/* The CPU backend (kernels/cpu/backend-cpu.c): host memory (64-byte aligned, memcpy), every op the
 * kernels of kernels/cpu; no context (ctx = NULL), nothing to free. Always available. */
moa_backend moa_backend_cpu(void);
/* The same with a RoPE table as its context (rope.h, made by moa_rope_table_init, owned by the
 * caller and outliving the table): its rope rotates from the table (moa_rope_rows) when the
 * call's rope_dim, base, pairing and positions are the table's, and computes cos/sin per row
 * otherwise; identical results either way, the table saving the cos/sin of every row of every
 * call (the profiler's sample). t NULL: moa_backend_cpu(). */
moa_backend moa_backend_cpu_rope(const moa_rope_table *t);

#ifdef __cplusplus
}
#endif
#endif /* MOA_BACKEND_H */
