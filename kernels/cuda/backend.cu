/* backend.cu - the CUDA device layer: device detection, contexts (stream + cuBLAS handle),
 * error mapping, memory, and the backend table (moa/backend.h). */
#include "moa-cuda-impl.cuh"

#include <stdio.h>
#include <stdlib.h>

/* ---- error mapping ------------------------------------------------------------------- */

moa_status moa_cuda_status(cudaError_t e, const char *what) {
    (void)cudaGetLastError();   /* clear a non-sticky error so the next call starts clean */
    moa_status st;
    switch (e) {
    case cudaErrorMemoryAllocation: st = MOA_ERR_NOMEM; break;
    case cudaErrorInvalidValue:
    case cudaErrorInvalidConfiguration:
    case cudaErrorInvalidDevicePointer: st = MOA_ERR_INVALID_ARG; break;
    default: st = MOA_ERR_DEVICE; break;
    }
    return moa_err(st, "%s: %s: %s", what, cudaGetErrorName(e), cudaGetErrorString(e));
}

static const char *cublas_name(cublasStatus_t e) {
    switch (e) {
    case CUBLAS_STATUS_SUCCESS: return "CUBLAS_STATUS_SUCCESS";
    case CUBLAS_STATUS_NOT_INITIALIZED: return "CUBLAS_STATUS_NOT_INITIALIZED (no device or driver?)";
    case CUBLAS_STATUS_ALLOC_FAILED: return "CUBLAS_STATUS_ALLOC_FAILED";
    case CUBLAS_STATUS_INVALID_VALUE: return "CUBLAS_STATUS_INVALID_VALUE (bad size or leading dimension)";
    case CUBLAS_STATUS_ARCH_MISMATCH: return "CUBLAS_STATUS_ARCH_MISMATCH (type not supported on this GPU)";
    case CUBLAS_STATUS_MAPPING_ERROR: return "CUBLAS_STATUS_MAPPING_ERROR";
    case CUBLAS_STATUS_EXECUTION_FAILED: return "CUBLAS_STATUS_EXECUTION_FAILED";
    case CUBLAS_STATUS_INTERNAL_ERROR: return "CUBLAS_STATUS_INTERNAL_ERROR";
    case CUBLAS_STATUS_NOT_SUPPORTED: return "CUBLAS_STATUS_NOT_SUPPORTED";
    default: return "unknown cuBLAS status";
    }
}

moa_status moa_cublas_status(cublasStatus_t e, const char *what) {
    moa_status st = e == CUBLAS_STATUS_ALLOC_FAILED   ? MOA_ERR_NOMEM
                  : e == CUBLAS_STATUS_INVALID_VALUE  ? MOA_ERR_INVALID_ARG
                  : e == CUBLAS_STATUS_NOT_SUPPORTED || e == CUBLAS_STATUS_ARCH_MISMATCH
                                                      ? MOA_ERR_UNSUPPORTED
                                                      : MOA_ERR_DEVICE;
    return moa_err(st, "%s: %s (%d)", what, cublas_name(e), (int)e);
}

moa_status moa_cuda_smem_optin(const moa_cuda_ctx *ctx, const void *kernel, size_t bytes,
                               const char *what) {
    if (bytes > ctx->smem_optin)
        return moa_err(MOA_ERR_UNSUPPORTED, "%s: needs %zu bytes of shared memory per block, "
                       "the device allows %zu (smaller head_dim?)", what, bytes, ctx->smem_optin);
    if (bytes > 48 * 1024)
        CU_TRY(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                    (int)bytes), what);
    return MOA_OK;
}

/* ---- devices and contexts -------------------------------------------------------------- */

int moa_cuda_device_count(void) {
    int n = 0;
    cudaError_t e = cudaGetDeviceCount(&n);
    if (e != cudaSuccess) {   /* no driver, no device, driver too old: "none" */
        (void)cudaGetLastError();
        return 0;
    }
    return n;
}

moa_status moa_cuda_ctx_create(int device, moa_cuda_ctx **out) {
    if (!out) return moa_err(MOA_ERR_INVALID_ARG, "cuda: out is NULL");
    *out = NULL;
    int n = 0;
    cudaError_t e = cudaGetDeviceCount(&n);
    if (e != cudaSuccess || n == 0) {
        (void)cudaGetLastError();
        return moa_err(MOA_ERR_DEVICE, "no CUDA device: %s (use --device cpu)",
                       e != cudaSuccess ? cudaGetErrorString(e) : "the driver reports 0 devices");
    }
    if (device < 0 || device >= n)
        return moa_err(MOA_ERR_DEVICE, "CUDA device %d requested, %d present (0..%d)", device,
                       n, n - 1);
    moa_cuda_ctx *c = (moa_cuda_ctx *)calloc(1, sizeof *c);
    if (!c) return moa_err(MOA_ERR_NOMEM, "cuda: out of memory");
    c->device = device;
    moa_status st = MOA_OK;
    cudaDeviceProp pr;
    if ((e = cudaSetDevice(device)) != cudaSuccess ||
        (e = cudaGetDeviceProperties(&pr, device)) != cudaSuccess ||
        (e = cudaStreamCreateWithFlags(&c->stream, cudaStreamNonBlocking)) != cudaSuccess) {
        st = moa_cuda_status(e, "cuda: opening the device");
        free(c);
        return st;
    }
    cublasStatus_t be = cublasCreate(&c->blas);
    if (be == CUBLAS_STATUS_SUCCESS) be = cublasSetStream(c->blas, c->stream);
    if (be != CUBLAS_STATUS_SUCCESS) {
        st = moa_cublas_status(be, "cuda: creating the cuBLAS handle");
        if (c->blas) cublasDestroy(c->blas);
        cudaStreamDestroy(c->stream);
        free(c);
        return st;
    }
    c->sm_count = pr.multiProcessorCount;
    c->cc_major = pr.major;
    c->cc_minor = pr.minor;
    c->smem_optin = pr.sharedMemPerBlockOptin;
    snprintf(c->desc, sizeof c->desc, "%.120s (sm_%d%d, %d SMs, %.1f GiB)", pr.name, pr.major,
             pr.minor, pr.multiProcessorCount, (double)pr.totalGlobalMem / (1024.0 * 1024 * 1024));
    if (pr.major < 8)
        moa_log_warn("cuda: %s: kernels are built for sm_80 and sm_90; this device may not run "
                     "them (rebuild with -DMOA_CUDA_ARCHS=%d%d)", c->desc, pr.major, pr.minor);
    moa_log_info("cuda: device %d: %s", device, c->desc);
    *out = c;
    return MOA_OK;
}

void moa_cuda_ctx_free(moa_cuda_ctx *c) {
    if (!c) return;
    cudaSetDevice(c->device);
    cudaStreamSynchronize(c->stream);
    for (int i = 0; i < MOA_CU_WS_N; i++)
        if (c->ws[i]) cudaFree(c->ws[i]);
    cublasDestroy(c->blas);
    cudaStreamDestroy(c->stream);
    free(c);
}

const char *moa_cuda_ctx_describe(const moa_cuda_ctx *c) { return c ? c->desc : ""; }
int moa_cuda_ctx_sm_count(const moa_cuda_ctx *c) { return c ? c->sm_count : 0; }

moa_status moa_cuda_sync(moa_cuda_ctx *c) {
    CU_TRY(cudaStreamSynchronize(c->stream), "cuda: running queued kernels");
    return MOA_OK;
}

/* ---- memory ---------------------------------------------------------------------------- */

moa_status moa_cuda_alloc(moa_cuda_ctx *c, size_t bytes, void **out) {
    (void)c;
    *out = NULL;
    if (bytes == 0) return MOA_OK;
    cudaError_t e = cudaMalloc(out, bytes);
    if (e != cudaSuccess) {
        *out = NULL;
        (void)cudaGetLastError();
        return moa_err(e == cudaErrorMemoryAllocation ? MOA_ERR_NOMEM : MOA_ERR_DEVICE,
                       "cuda: allocating %zu bytes of device memory: %s", bytes,
                       cudaGetErrorString(e));
    }
    return MOA_OK;
}

void moa_cuda_free(moa_cuda_ctx *c, void *p) {
    (void)c;
    if (p) cudaFree(p);
}

moa_status moa_cuda_upload(moa_cuda_ctx *c, void *dst, const void *src, size_t bytes) {
    if (!bytes) return MOA_OK;
    CU_TRY(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, c->stream), "cuda: upload");
    return MOA_OK;
}

moa_status moa_cuda_download(moa_cuda_ctx *c, void *dst, const void *src, size_t bytes) {
    if (!bytes) return MOA_OK;
    CU_TRY(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, c->stream), "cuda: download");
    CU_TRY(cudaStreamSynchronize(c->stream), "cuda: download");
    return MOA_OK;
}

moa_status moa_cuda_copy(moa_cuda_ctx *c, void *dst, const void *src, size_t bytes) {
    if (!bytes) return MOA_OK;
    CU_TRY(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, c->stream), "cuda: copy");
    return MOA_OK;
}

moa_status moa_cuda_memset0(moa_cuda_ctx *c, void *p, size_t bytes) {
    if (!bytes) return MOA_OK;
    CU_TRY(cudaMemsetAsync(p, 0, bytes, c->stream), "cuda: memset");
    return MOA_OK;
}

moa_status moa_cuda_workspace(moa_cuda_ctx *c, int slot, size_t bytes, void **out) {
    if (bytes <= c->ws_bytes[slot]) {
        *out = c->ws[slot];
        return MOA_OK;
    }
    MOA_TRY(moa_cuda_sync(c));
    moa_cuda_free(c, c->ws[slot]);
    c->ws[slot] = NULL;
    c->ws_bytes[slot] = 0;
    MOA_TRY(moa_cuda_alloc(c, bytes, &c->ws[slot]));
    c->ws_bytes[slot] = bytes;
    *out = c->ws[slot];
    return MOA_OK;
}

/* ---- backend table ----------------------------------------------------------------------- */

static moa_status bk_alloc(void *c, size_t b, void **o) { return moa_cuda_alloc((moa_cuda_ctx *)c, b, o); }
static void bk_free(void *c, void *p) { moa_cuda_free((moa_cuda_ctx *)c, p); }
static moa_status bk_upload(void *c, void *d, const void *s, size_t b) {
    return moa_cuda_upload((moa_cuda_ctx *)c, d, s, b);
}
static moa_status bk_download(void *c, void *d, const void *s, size_t b) {
    return moa_cuda_download((moa_cuda_ctx *)c, d, s, b);
}
static moa_status bk_sync(void *c) { return moa_cuda_sync((moa_cuda_ctx *)c); }
static moa_status bk_fwd(void *c, const moa_attn_train_shape *s, const float *Q, const float *K,
                         const float *V, float *O, float *LSE) {
    return moa_cuda_attn_fwd_lse((moa_cuda_ctx *)c, s, Q, K, V, O, LSE);
}
static moa_status bk_bwd(void *c, const moa_attn_train_shape *s, const float *Q, const float *K,
                         const float *V, const float *O, const float *dO, const float *LSE,
                         float *dQ, float *dK, float *dV, moa_influence_acc *acc) {
    return moa_cuda_attn_bwd_influence((moa_cuda_ctx *)c, s, Q, K, V, O, dO, LSE, dQ, dK, dV, acc);
}
static moa_status bk_rmsnorm(void *c, const float *x, const float *w, float *y, int64_t n,
                             int64_t d, float eps) {
    return moa_cuda_rmsnorm((moa_cuda_ctx *)c, x, w, y, n, d, eps);
}
static moa_status bk_rope(void *c, float *x, int64_t n, int nh, int hd, int rd, float base,
                          int64_t pos0, int inverse, int neox) {
    return moa_cuda_rope((moa_cuda_ctx *)c, x, n, nh, hd, rd, base, pos0, NULL, inverse, neox);
}
static moa_status bk_swiglu(void *c, float *g, const float *u, int64_t n) {
    return moa_cuda_swiglu((moa_cuda_ctx *)c, g, u, n);
}
static moa_status bk_copy(void *c, void *d, const void *s, size_t b) {
    return moa_cuda_copy((moa_cuda_ctx *)c, d, s, b);
}
static moa_status bk_memset0(void *c, void *p, size_t b) {
    return moa_cuda_memset0((moa_cuda_ctx *)c, p, b);
}
static moa_status bk_add(void *c, float *x, const float *y, int64_t n) {
    return moa_cuda_add((moa_cuda_ctx *)c, x, y, n);
}
static moa_status bk_swiglu_to(void *c, const float *g, const float *u, float *a, int64_t n) {
    return moa_cuda_swiglu_to((moa_cuda_ctx *)c, g, u, a, n);
}
static moa_status bk_swiglu_bwd(void *c, float *g, float *u, const float *da, int64_t n) {
    return moa_cuda_swiglu_bwd((moa_cuda_ctx *)c, g, u, da, n);
}
static moa_status bk_rmsnorm_bwd_add(void *c, const float *x, const float *w, const float *dy,
                                     float *dx, int64_t n, int64_t d, float eps) {
    return moa_cuda_rmsnorm_bwd_add((moa_cuda_ctx *)c, x, w, dy, dx, n, d, eps);
}
static moa_status bk_xent_grad(void *c, float *logits, const int32_t *targets, int64_t rows,
                               int64_t V, int64_t n_total, double *loss) {
    return moa_cuda_xent_grad((moa_cuda_ctx *)c, logits, targets, rows, V, n_total, loss);
}
static moa_status bk_key_smooth(void *c, float *q, float *k, const float *s, int64_t n,
                                int n_head, int n_head_kv, int hd) {
    return moa_cuda_key_smooth((moa_cuda_ctx *)c, q, k, s, n, n_head, n_head_kv, hd);
}

static moa_status bk_embed(void *cv, const moa_backend_embd *t, const int32_t *tokens, int64_t n,
                           float *x) {
    moa_cuda_ctx *c = (moa_cuda_ctx *)cv;
    if (n <= 0) return MOA_OK;
    const moa_ggml_type ty = (moa_ggml_type)t->type;
    if (t->rows) {   /* ids to the workspace, rows dequantised on the device */
        void *tok = NULL;
        MOA_TRY(moa_cuda_workspace(c, MOA_CU_WS_TOK, sizeof(int32_t) * (size_t)n, &tok));
        MOA_TRY(moa_cuda_upload(c, tok, tokens, sizeof(int32_t) * (size_t)n));
        return moa_cuda_embed(c, ty, t->rows, t->d, (const int32_t *)tok, n, x);
    }
    /* a type without a device decoder: rows dequantised on the host, uploaded */
    float *xh = (float *)malloc(sizeof(float) * (size_t)(n * t->d));
    if (!xh) return moa_err(MOA_ERR_NOMEM, "cuda backend embed: out of memory");
    const size_t rb = moa_ggml_row_bytes(ty, t->d);
    for (int64_t i = 0; i < n; i++)
        moa_dequant_row(ty, (const uint8_t *)t->host_rows + (size_t)tokens[i] * rb, xh + i * t->d, t->d);
    moa_status st = moa_cuda_upload(c, x, xh, sizeof(float) * (size_t)(n * t->d));
    if (st == MOA_OK) st = moa_cuda_sync(c);   /* before xh goes */
    free(xh);
    return st;
}
/* x [n][cols] rounded to W's element type in the workspace (moa_cuda_convert); f32 weights
 * read x as is */
static moa_status to_weight_type(moa_cuda_ctx *c, const moa_cuda_weight *W, const float *x, int64_t n,
                                 int64_t cols, const void **xw) {
    if (W->dtype == MOA_CUDA_F32) {
        *xw = x;
        return MOA_OK;
    }
    void *ws = NULL;
    MOA_TRY(moa_cuda_workspace(c, MOA_CU_WS_X, moa_cuda_dtype_size(W->dtype) * (size_t)(n * cols), &ws));
    *xw = ws;
    return moa_cuda_convert(c, x, n * cols, ws, W->dtype);
}
/* Small batches on raw weights take the raw-block matvec (x read in f32 as is). */
static int use_matvec(const moa_cuda_weight *W, int64_t n) { return W->raw && n <= MOA_CUDA_MATVEC_MAX_N; }
static moa_status bk_matmul(void *cv, const void *const *w, int nw, const float *x, int64_t n,
                            float *const *y) {
    moa_cuda_ctx *c = (moa_cuda_ctx *)cv;
    if (n <= 0) return MOA_OK;
    if (nw < 1 || nw > 8) return moa_err(MOA_ERR_INVALID_ARG, "cuda backend matmul: %d weights (1..8)", nw);
    const moa_cuda_weight *W0 = (const moa_cuda_weight *)w[0];
    for (int k = 1; k < nw; k++) {
        const moa_cuda_weight *Wk = (const moa_cuda_weight *)w[k];
        if (Wk->n_in != W0->n_in || Wk->dtype != W0->dtype)
            return moa_err(MOA_ERR_INVALID_ARG, "cuda backend matmul: weight %d has n_in %lld / type %d, "
                           "weight 0 %lld / %d", k, (long long)Wk->n_in, (int)Wk->dtype,
                           (long long)W0->n_in, (int)W0->dtype);
    }
    const void *xw = NULL;   /* x in the weights' type, converted once when a GEMM needs it */
    for (int k = 0; k < nw; k++) {
        const moa_cuda_weight *Wk = (const moa_cuda_weight *)w[k];
        if (use_matvec(Wk, n)) {
            MOA_TRY(moa_cuda_matvec(c, Wk, x, n, y[k]));
            continue;
        }
        if (!xw) MOA_TRY(to_weight_type(c, W0, x, n, W0->n_in, &xw));
        MOA_TRY(moa_cuda_matmul(c, Wk, xw, n, y[k]));
    }
    return MOA_OK;
}
static const int64_t HOST_ROWS = 64;   /* rows of the product per download (matmul_to_host) */
static moa_status bk_matmul_to_host(void *cv, const void *w, const float *x, int64_t n, float *y) {
    moa_cuda_ctx *c = (moa_cuda_ctx *)cv;
    if (n <= 0) return MOA_OK;
    const moa_cuda_weight *W = (const moa_cuda_weight *)w;
    void *yd = NULL;
    MOA_TRY(moa_cuda_workspace(c, MOA_CU_WS_Y, sizeof(float) * (size_t)((n < HOST_ROWS ? n : HOST_ROWS) * W->n_out), &yd));
    if (use_matvec(W, n)) {   /* n <= 8 < HOST_ROWS: one chunk */
        MOA_TRY(moa_cuda_matvec(c, W, x, n, (float *)yd));
        return moa_cuda_download(c, y, yd, sizeof(float) * (size_t)(n * W->n_out));
    }
    moa_cuda_weight D;   /* a raw W dequantised once for all chunks */
    MOA_TRY(moa_cuda_weight_dense(c, W, &D));
    const size_t es = moa_cuda_dtype_size(D.dtype);
    const void *xw = NULL;
    MOA_TRY(to_weight_type(c, &D, x, n, D.n_in, &xw));
    for (int64_t r = 0; r < n; r += HOST_ROWS) {
        const int64_t rows = n - r < HOST_ROWS ? n - r : HOST_ROWS;
        MOA_TRY(moa_cuda_matmul(c, &D, (const uint8_t *)xw + es * (size_t)(r * D.n_in), rows, (float *)yd));
        MOA_TRY(moa_cuda_download(c, y + r * D.n_out, yd, sizeof(float) * (size_t)(rows * D.n_out)));
    }
    return MOA_OK;
}

static moa_status bk_matmul_bwd(void *cv, const void *w, const float *dy, int64_t n, float *dx,
                                float beta) {
    moa_cuda_ctx *c = (moa_cuda_ctx *)cv;
    if (n <= 0) return MOA_OK;
    const moa_cuda_weight *W = (const moa_cuda_weight *)w;
    const void *dyw = NULL;
    MOA_TRY(to_weight_type(c, W, dy, n, W->n_out, &dyw));
    return moa_cuda_matmul_bwd(c, W, dyw, n, dx, beta);
}

moa_backend moa_cuda_backend(moa_cuda_ctx *ctx) {
    /* moa_backend's members in order (no designated initialisers in C++17), as in
     * moa/backend.h: name, kind, context; memory (alloc, free, upload, download, sync); the
     * profiler's attention (forward, backward); the engine's ops (rmsnorm, rope, swiglu);
     * appended: copy, memset0, add, swiglu_to, swiglu_bwd, rmsnorm_bwd_add, xent_grad,
     * key_smooth; appended (issue 17): embed, matmul, matmul_to_host; appended (issue 17
     * item 1): matmul_bwd */
    const moa_backend b = {"cuda", MOA_DEVICE_CUDA, ctx,
                           bk_alloc, bk_free, bk_upload, bk_download, bk_sync,
                           bk_fwd, bk_bwd,
                           bk_rmsnorm, bk_rope, bk_swiglu,
                           bk_copy, bk_memset0, bk_add, bk_swiglu_to, bk_swiglu_bwd,
                           bk_rmsnorm_bwd_add, bk_xent_grad, bk_key_smooth,
                           bk_embed, bk_matmul, bk_matmul_to_host,
                           bk_matmul_bwd};
    return b;
}
