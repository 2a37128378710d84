/* moa-backend.h - device choice for `--device cpu|cuda|auto` and the backend table type.
 *
 * Plain C, no CUDA toolkit needed: the CPU-only build includes it too. The choice is a pure
 * function of the request and the number of CUDA devices found (0 in a build without CUDA),
 * so it is unit-tested without a GPU (tests/kernels/cuda/test_cuda_common.c):
 *   cpu  -> CPU
 *   cuda -> CUDA if a device is present, else MOA_ERR_DEVICE ("no CUDA device ...")
 *   auto -> CUDA if a device is present, else CPU (the caller logs which one it got)
 *
 * The table: every entry takes the backend's context first and buffers in the backend's
 * memory (host memory for the CPU backend, device memory for CUDA). Entries a backend does
 * not provide are NULL. The CUDA table comes from moa_cuda_backend() (moa-cuda.h); the CPU
 * table from moa_backend_cpu() below (memory and the profiler's attention; the engine's
 * elementwise CPU ops live in model/forward.c and are not exported yet, so those are NULL).
 */
#ifndef MOA_BACKEND_H
#define MOA_BACKEND_H

#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include "moa/base.h"

#ifdef __cplusplus
extern "C" {
#endif
#include "attn-train.h"   /* moa_attn_train_shape, moa_influence_acc (a C header) */

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

/* A backend: buffers and the ops the profiler and engine dispatch through it. */
typedef struct moa_backend {
    const char *name;           /* "cpu", "cuda" */
    moa_device_kind kind;
    void *ctx;                  /* backend context (moa_cuda_ctx* for CUDA; NULL for CPU) */
    /* memory */
    moa_status (*alloc)(void *ctx, size_t bytes, void **out);
    void (*free)(void *ctx, void *p);                                        /* NULL ok */
    moa_status (*upload)(void *ctx, void *dst, const void *src, size_t bytes);   /* host -> */
    moa_status (*download)(void *ctx, void *dst, const void *src, size_t bytes); /* -> host */
    moa_status (*sync)(void *ctx);
    /* profiler attention (same shapes and semantics as kernels/cpu/attn-train.h; for CUDA
     * the histograms in acc are device arrays too) */
    moa_status (*attn_fwd_lse)(void *ctx, const moa_attn_train_shape *s, const float *Q,
                               const float *K, const float *V, float *O, float *LSE);
    moa_status (*attn_bwd_influence)(void *ctx, const moa_attn_train_shape *s, const float *Q,
                                     const float *K, const float *V, const float *O,
                                     const float *dO, const float *LSE, float *dQ, float *dK,
                                     float *dV, moa_influence_acc *acc);
    /* engine elementwise ops: y = x / sqrt(mean(x^2) + eps) * w over rows of d;
     * RoPE (adjacent pairs) in place on rows x[n][n_heads*hd] at positions pos0 + t;
     * g = silu(g) * u over n values */
    moa_status (*rmsnorm)(void *ctx, const float *x, const float *w, float *y, int64_t n,
                          int64_t d, float eps);
    moa_status (*rope)(void *ctx, float *x, int64_t n, int n_heads, int hd, int rope_dim,
                       float base, int64_t pos0);
    moa_status (*swiglu)(void *ctx, float *g, const float *u, int64_t n);
} moa_backend;

/* ---- the CPU table (host memory; the kernels of kernels/cpu) ---------------------------- */
static inline moa_status moa_backend_cpu_alloc_(void *ctx, size_t bytes, void **out) {
    (void)ctx;
    *out = bytes ? malloc(bytes) : NULL;
    return bytes && !*out ? MOA_ERR_NOMEM : MOA_OK;
}
static inline void moa_backend_cpu_free_(void *ctx, void *p) { (void)ctx; free(p); }
static inline moa_status moa_backend_cpu_copy_(void *ctx, void *dst, const void *src, size_t n) {
    (void)ctx;
    if (n) memcpy(dst, src, n);
    return MOA_OK;
}
static inline moa_status moa_backend_cpu_sync_(void *ctx) { (void)ctx; return MOA_OK; }
static inline moa_status moa_backend_cpu_fwd_(void *ctx, const moa_attn_train_shape *s,
                                              const float *Q, const float *K, const float *V,
                                              float *O, float *LSE) {
    (void)ctx;
    return moa_attn_fwd_lse(s, Q, K, V, O, LSE);
}
static inline moa_status moa_backend_cpu_bwd_(void *ctx, const moa_attn_train_shape *s,
                                              const float *Q, const float *K, const float *V,
                                              const float *O, const float *dO,
                                              const float *LSE, float *dQ, float *dK,
                                              float *dV, moa_influence_acc *acc) {
    (void)ctx;
    return moa_attn_bwd_influence(s, Q, K, V, O, dO, LSE, dQ, dK, dV, acc);
}

static inline moa_backend moa_backend_cpu(void) {
    /* members in order, as in moa_cuda_backend (C++ compiles this header too): name, kind, no
     * context; memory (one copy both ways); the profiler's attention; no engine ops yet */
    const moa_backend b = {"cpu", MOA_DEVICE_CPU, NULL,
                           moa_backend_cpu_alloc_, moa_backend_cpu_free_, moa_backend_cpu_copy_,
                           moa_backend_cpu_copy_, moa_backend_cpu_sync_,
                           moa_backend_cpu_fwd_, moa_backend_cpu_bwd_,
                           NULL, NULL, NULL};
    return b;
}

#ifdef __cplusplus
}
#endif
#endif /* MOA_BACKEND_H */
