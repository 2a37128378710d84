/* engine.cu - GPU engine building blocks: dequantisation of ggml blocks to f16/bf16/f32
 * (weights once at upload, embedding rows per call), projections and LM head through
 * cuBLAS (f16/bf16 inputs, f32 accumulation, + an f32 bias), RMSNorm, RoPE (adjacent pairs
 * or halves), SwiGLU; the raw-block matrix-vector product for small batches
 * (moa_cuda_matvec) and the weight scratch that lets a raw weight run the GEMM.
 * CPU references: kernels/cpu/quant.c, moa/ops.h, kernels/cpu/rope.c. */
#include "moa-cuda-impl.cuh"


/* ---- dequantisation -------------------------------------------------------------------- */

/* Value e of a row of ggml type t starting at `row` (bytes). Same arithmetic as
 * moa_dequant_row (moa-cuda-common.cuh, tested on the host). */
__device__ __forceinline__ float dq_value(moa_ggml_type t, const uint8_t *row, int64_t e) {
    switch (t) {
    case MOA_GGML_F32: return moa_cu_bits_f32((uint32_t)row[4 * e] | (uint32_t)row[4 * e + 1] << 8 |
                                              (uint32_t)row[4 * e + 2] << 16 | (uint32_t)row[4 * e + 3] << 24);
    case MOA_GGML_F16: return moa_cu_f16_to_f32(moa_cu_rd16(row + 2 * e));
    case MOA_GGML_BF16: return moa_cu_bf16_to_f32(moa_cu_rd16(row + 2 * e));
    case MOA_GGML_Q4_0: return moa_cu_q4_0_value(row + (e / 32) * 18, (int)(e % 32));
    case MOA_GGML_Q4_1: return moa_cu_q4_1_value(row + (e / 32) * 20, (int)(e % 32));
    case MOA_GGML_Q8_0: return moa_cu_q8_0_value(row + (e / 32) * 34, (int)(e % 32));
    case MOA_GGML_Q5_0: return moa_cu_q5_0_value(row + (e / 32) * 22, (int)(e % 32));
    case MOA_GGML_Q5_1: return moa_cu_q5_1_value(row + (e / 32) * 24, (int)(e % 32));
    case MOA_GGML_Q4_K: return moa_cu_q4_k_value(row + (e / 256) * 144, (int)(e % 256));
    case MOA_GGML_Q5_K: return moa_cu_q5_k_value(row + (e / 256) * 176, (int)(e % 256));
    case MOA_GGML_Q6_K: return moa_cu_q6_k_value(row + (e / 256) * 210, (int)(e % 256));
    default: return 0.0f;
    }
}

__device__ __forceinline__ void store_as(void *dst, int64_t i, float v, moa_cuda_dtype dt) {
    if (dt == MOA_CUDA_F32) ((float *)dst)[i] = v;
    else if (dt == MOA_CUDA_F16) ((uint16_t *)dst)[i] = moa_cu_f32_to_f16(v);
    else ((uint16_t *)dst)[i] = moa_cu_f32_to_bf16(v);
}

/* dst[i] = value i of the block stream src (n values). One thread per value. */
__global__ void k_dequant(moa_ggml_type t, const uint8_t *src, int64_t n, void *dst,
                          moa_cuda_dtype dt) {
    const int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) store_as(dst, i, dq_value(t, src, i), dt);
}

/* out[r][e] = value e of table row tokens[r] (row_bytes per row), f32. */
__global__ void k_embed(moa_ggml_type t, const uint8_t *table, size_t row_bytes, int64_t d,
                        const int32_t *tokens, float *out) {
    const int64_t r = blockIdx.y;
    const uint8_t *row = table + (size_t)tokens[r] * row_bytes;
    for (int64_t e = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; e < d;
         e += (int64_t)gridDim.x * blockDim.x)
        out[r * d + e] = dq_value(t, row, e);
}

int moa_cuda_dequant_supported(moa_ggml_type t) {
    switch (t) {
    case MOA_GGML_F32: case MOA_GGML_F16: case MOA_GGML_BF16: case MOA_GGML_Q4_0:
    case MOA_GGML_Q4_1: case MOA_GGML_Q5_0: case MOA_GGML_Q5_1: case MOA_GGML_Q8_0:
    case MOA_GGML_Q4_K: case MOA_GGML_Q5_K: case MOA_GGML_Q6_K:
        return 1;
    }
    return 0;
}

static moa_status check_type(moa_ggml_type t, int64_t n, const char *fn) {
    uint32_t be = 0;
    if (!moa_cuda_dequant_supported(t) || !moa_ggml_type_info(t, &be, NULL))
        return moa_err(MOA_ERR_UNSUPPORTED, "%s: ggml type %s (%d) has no CUDA dequantisation "
                       "(F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q4_K, Q5_K, Q6_K)", fn,
                       moa_ggml_type_name(t), (int)t);
    if (n < 0 || n % be)
        return moa_err(MOA_ERR_INVALID_ARG, "%s: %lld values is not a multiple of the %s block (%u)",
                       fn, (long long)n, moa_ggml_type_name(t), be);
    return MOA_OK;
}

moa_status moa_cuda_dequant(moa_cuda_ctx *c, moa_ggml_type t, const void *src, int64_t n,
                            void *dst, moa_cuda_dtype dt) {
    MOA_TRY(check_type(t, n, "moa_cuda_dequant"));
    if (n == 0) return MOA_OK;
    MOA_CU_LAUNCH(k_dequant, moa_cu_blocks(n, 256), 256, 0, c->stream, t, (const uint8_t *)src, n, dst, dt);
    CU_LAUNCHED("moa_cuda_dequant");
    return MOA_OK;
}

moa_status moa_cuda_embed(moa_cuda_ctx *c, moa_ggml_type t, const void *table, int64_t d,
                          const int32_t *tokens, int64_t n, float *out) {
    MOA_TRY(check_type(t, d, "moa_cuda_embed"));
    if (n <= 0 || d == 0) return MOA_OK;
    if (n > 65535) return moa_err(MOA_ERR_INVALID_ARG, "moa_cuda_embed: %lld rows > 65535", (long long)n);
    dim3 grid(moa_cu_blocks(d, 256) < 64 ? moa_cu_blocks(d, 256) : 64, (unsigned)n);
    MOA_CU_LAUNCH(k_embed, grid, 256, 0, c->stream, t, (const uint8_t *)table, moa_ggml_row_bytes(t, d), d,
                                         tokens, out);
    CU_LAUNCHED("moa_cuda_embed");
    return MOA_OK;
}

/* Both uploads: the raw blocks go to the device; keep_raw keeps only them (w->raw), else
 * they are dequantised into w->data as dt and the block buffer is freed. */
static moa_status upload_blocks(moa_cuda_ctx *c, moa_ggml_type t, const void *host, int64_t n_out, int64_t n_in,
                                moa_cuda_dtype dt, int keep_raw, moa_cuda_weight *w, const char *fn) {
    memset(w, 0, sizeof *w);
    if (dt != MOA_CUDA_F16 && dt != MOA_CUDA_BF16 && (keep_raw || dt != MOA_CUDA_F32))
        return moa_err(MOA_ERR_INVALID_ARG, keep_raw ? "%s: the GEMM type of a raw weight is f16 or bf16"
                                                     : "%s: weights are stored as f16, bf16 or f32", fn);
    MOA_TRY(check_type(t, n_in, fn));
    if (n_out < 1 || n_in < 1) return moa_err(MOA_ERR_INVALID_ARG, "%s: empty weight", fn);
    const size_t raw = moa_ggml_row_bytes(t, n_in) * (size_t)n_out;
    const int64_t n = n_out * n_in;
    void *blocks = NULL;
    MOA_TRY(moa_cuda_alloc(c, raw, &blocks));
    moa_status st = keep_raw ? MOA_OK : moa_cuda_alloc(c, (size_t)n * moa_cuda_dtype_size(dt), &w->data);
    if (st == MOA_OK) st = moa_cuda_upload(c, blocks, host, raw);
    if (st == MOA_OK && !keep_raw) st = moa_cuda_dequant(c, t, blocks, n, w->data, dt);
    if (st == MOA_OK) st = moa_cuda_sync(c);   /* the caller may free host on return; blocks too */
    if (st != MOA_OK || !keep_raw) moa_cuda_free(c, blocks);
    if (st != MOA_OK) {
        moa_cuda_free(c, w->data);
        w->data = NULL;
        return st;
    }
    if (keep_raw) {
        w->raw = blocks;
        w->type = t;
    }
    w->dtype = dt;
    w->n_out = n_out;
    w->n_in = n_in;
    return MOA_OK;
}

moa_status moa_cuda_weight_upload(moa_cuda_ctx *c, moa_ggml_type t, const void *host,
                                  int64_t n_out, int64_t n_in, moa_cuda_dtype dt,
                                  moa_cuda_weight *w) {
    return upload_blocks(c, t, host, n_out, n_in, dt, 0, w, "moa_cuda_weight_upload");
}

moa_status moa_cuda_weight_upload_raw(moa_cuda_ctx *c, moa_ggml_type t, const void *host,
                                      int64_t n_out, int64_t n_in, moa_cuda_dtype dt,
                                      moa_cuda_weight *w) {
    return upload_blocks(c, t, host, n_out, n_in, dt, 1, w, "moa_cuda_weight_upload_raw");
}

void moa_cuda_weight_free(moa_cuda_ctx *c, moa_cuda_weight *w) {
    if (!w) return;
    moa_cuda_free(c, w->data);
    moa_cuda_free(c, w->bias);
    moa_cuda_free(c, w->raw);
    w->data = NULL;
    w->bias = NULL;
    w->raw = NULL;
}

moa_status moa_cuda_weight_set_bias(moa_cuda_ctx *c, moa_cuda_weight *w, const float *host_bias) {
    static const char fn[] = "moa_cuda_weight_set_bias";
    if (!w || (!w->data && !w->raw)) return moa_err(MOA_ERR_INVALID_ARG, "%s: no weight", fn);
    moa_cuda_free(c, w->bias);
    w->bias = NULL;
    if (!host_bias) return MOA_OK;
    const size_t b = sizeof(float) * (size_t)w->n_out;
    MOA_TRY(moa_cuda_alloc(c, b, (void **)&w->bias));
    moa_status st = moa_cuda_upload(c, w->bias, host_bias, b);
    if (st == MOA_OK) st = moa_cuda_sync(c);   /* the caller may free host_bias on return */
    if (st != MOA_OK) {
        moa_cuda_free(c, w->bias);
        w->bias = NULL;
    }
    return st;
}

__global__ void k_convert(const float *x, int64_t n, void *dst, moa_cuda_dtype dt) {
    const int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) store_as(dst, i, x[i], dt);
}

moa_status moa_cuda_convert(moa_cuda_ctx *c, const float *x, int64_t n, void *dst,
                            moa_cuda_dtype dt) {
    if (n <= 0) return MOA_OK;
    MOA_CU_LAUNCH(k_convert, moa_cu_blocks(n, 256), 256, 0, c->stream, x, n, dst, dt);
    CU_LAUNCHED("moa_cuda_convert");
    return MOA_OK;
}

/* ---- projections (cuBLAS) --------------------------------------------------------------- */

static cudaDataType_t cu_type(moa_cuda_dtype dt) {
    return dt == MOA_CUDA_F16 ? CUDA_R_16F : dt == MOA_CUDA_BF16 ? CUDA_R_16BF : CUDA_R_32F;
}

/* y[t][o] += b[o] over n rows of n_out (the projection's bias, after the GEMM). */
__global__ void k_add_bias(float *y, const float *b, int64_t n_out, int64_t total) {
    const int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < total) y[i] += b[i % n_out];
}

moa_status moa_cuda_weight_dense(moa_cuda_ctx *c, const moa_cuda_weight *W, moa_cuda_weight *v) {
    *v = *W;
    if (!W->raw) return MOA_OK;
    const int64_t n = W->n_out * W->n_in;
    MOA_TRY(moa_cuda_workspace(c, MOA_CU_WS_W, moa_cuda_dtype_size(W->dtype) * (size_t)n, &v->data));
    v->raw = NULL;
    return moa_cuda_dequant(c, W->type, W->raw, n, v->data, W->dtype);
}

moa_status moa_cuda_matmul(moa_cuda_ctx *c, const moa_cuda_weight *W, const void *x, int64_t n,
                           float *y) {
    if (!W || (!W->data && !W->raw)) return moa_err(MOA_ERR_INVALID_ARG, "moa_cuda_matmul: no weight");
    if (n <= 0) return MOA_OK;
    if (n > INT32_MAX || W->n_out > INT32_MAX || W->n_in > INT32_MAX)
        return moa_err(MOA_ERR_INVALID_ARG, "moa_cuda_matmul: dimensions exceed int32");
    moa_cuda_weight D;
    MOA_TRY(moa_cuda_weight_dense(c, W, &D));
    /* Column-major view: Y^T [n_out x n] = W [n_out x n_in] X^T [n_in x n];
     * row-major W [n_out][n_in] is column-major n_in x n_out (ld n_in) -> op T;
     * row-major x [n][n_in] is column-major n_in x n (ld n_in) -> op N; y ld n_out. */
    const float alpha = 1.0f, beta = 0.0f;
    const cudaDataType_t ty = cu_type(D.dtype);
    CUBLAS_TRY(cublasGemmEx(c->blas, CUBLAS_OP_T, CUBLAS_OP_N, (int)D.n_out, (int)n, (int)D.n_in,
                            &alpha, D.data, ty, (int)D.n_in, x, ty, (int)D.n_in, &beta, y,
                            CUDA_R_32F, (int)D.n_out, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
               "moa_cuda_matmul: cublasGemmEx");
    if (D.bias) {
        const int64_t total = n * D.n_out;
        MOA_CU_LAUNCH(k_add_bias, moa_cu_blocks(total, 256), 256, 0, c->stream, y, D.bias, D.n_out, total);
        CU_LAUNCHED("moa_cuda_matmul: bias");
    }
    return MOA_OK;
}

/* ---- raw-block matrix-vector product (small batches) ------------------------------------ */

enum { MV_WARPS = 4 };   /* output rows (one warp each) per CTA of 128 threads */

/* Values and bytes per block of the quantised types (ggml layouts, as dq_value's offsets). */
template <moa_ggml_type T> struct mv_blk;
template <> struct mv_blk<MOA_GGML_Q4_0> { enum { BE = 32, BB = 18 }; };
template <> struct mv_blk<MOA_GGML_Q4_1> { enum { BE = 32, BB = 20 }; };
template <> struct mv_blk<MOA_GGML_Q5_0> { enum { BE = 32, BB = 22 }; };
template <> struct mv_blk<MOA_GGML_Q5_1> { enum { BE = 32, BB = 24 }; };
template <> struct mv_blk<MOA_GGML_Q8_0> { enum { BE = 32, BB = 34 }; };
template <> struct mv_blk<MOA_GGML_Q4_K> { enum { BE = 256, BB = 144 }; };
template <> struct mv_blk<MOA_GGML_Q5_K> { enum { BE = 256, BB = 176 }; };
template <> struct mv_blk<MOA_GGML_Q6_K> { enum { BE = 256, BB = 210 }; };

/* Value j of the block at blk of quantised type t: the shared decoders (moa-cuda-common.cuh). */
__device__ __forceinline__ float dq_block_value(moa_ggml_type t, const uint8_t *blk, int j) {
    switch (t) {
    case MOA_GGML_Q4_0: return moa_cu_q4_0_value(blk, j);
    case MOA_GGML_Q4_1: return moa_cu_q4_1_value(blk, j);
    case MOA_GGML_Q5_0: return moa_cu_q5_0_value(blk, j);
    case MOA_GGML_Q5_1: return moa_cu_q5_1_value(blk, j);
    case MOA_GGML_Q8_0: return moa_cu_q8_0_value(blk, j);
    case MOA_GGML_Q4_K: return moa_cu_q4_k_value(blk, j);
    case MOA_GGML_Q5_K: return moa_cu_q5_k_value(blk, j);
    case MOA_GGML_Q6_K: return moa_cu_q6_k_value(blk, j);
    default: return 0.0f;
    }
}

/* acc[r] += the products of one lane's values of a row of quantised type T: runs of 8
 * consecutive values starting at 8 (lane + 32 k), so a run lies in one 32-value block or
 * sub-block (its scale bytes loaded once for the 8 values once the decoder is inlined with
 * T fixed), 4 lanes share it, and a warp walks 256 consecutive values (one super-block or 8
 * blocks: contiguous bytes) per step. */
template <int N, moa_ggml_type T>
__device__ __forceinline__ void mv_runs(const uint8_t *row, int64_t n_in, const float *x, int lane,
                                        float *acc) {
    for (int64_t e0 = 8 * (int64_t)lane; e0 < n_in; e0 += 256) {
        const uint8_t *blk = row + (size_t)(e0 / mv_blk<T>::BE) * mv_blk<T>::BB;
        const int j0 = (int)(e0 % mv_blk<T>::BE);
#pragma unroll
        for (int k = 0; k < 8; k++) {
            const float w = dq_block_value(T, blk, j0 + k);
            const float *xe = x + e0 + k;
            for (int r = 0; r < N; r++) acc[r] += w * xe[r * n_in];
        }
    }
}

/* y[t][o] = sum_i W[o][i] x[t][i] (+ b[o]) for t < N: warp w of CTA b takes row
 * o = MV_WARPS b + w; quantised types through mv_runs (the type fixed per instantiation),
 * F32/F16/BF16 value l + 32 k per lane. Each value is decoded in registers by the shared
 * decoders and multiplied into N f32 accumulators, so every weight byte is read once for
 * all N rows of x; the lane partials are summed by a shuffle tree and the bias added in f32. */
template <int N>
__global__ void k_matvec(moa_ggml_type t, const uint8_t *raw, size_t row_bytes, int64_t n_in,
                         int64_t n_out, const float *x, const float *bias, float *y) {
    const int64_t o = (int64_t)blockIdx.x * MV_WARPS + threadIdx.x / 32;
    const int lane = (int)(threadIdx.x % 32);
    if (o >= n_out) return;   /* the whole warp: no shuffle is left waiting */
    const uint8_t *row = raw + (size_t)o * row_bytes;
    float acc[N];
    for (int r = 0; r < N; r++) acc[r] = 0.0f;
    switch (t) {
    case MOA_GGML_Q4_0: mv_runs<N, MOA_GGML_Q4_0>(row, n_in, x, lane, acc); break;
    case MOA_GGML_Q4_1: mv_runs<N, MOA_GGML_Q4_1>(row, n_in, x, lane, acc); break;
    case MOA_GGML_Q5_0: mv_runs<N, MOA_GGML_Q5_0>(row, n_in, x, lane, acc); break;
    case MOA_GGML_Q5_1: mv_runs<N, MOA_GGML_Q5_1>(row, n_in, x, lane, acc); break;
    case MOA_GGML_Q8_0: mv_runs<N, MOA_GGML_Q8_0>(row, n_in, x, lane, acc); break;
    case MOA_GGML_Q4_K: mv_runs<N, MOA_GGML_Q4_K>(row, n_in, x, lane, acc); break;
    case MOA_GGML_Q5_K: mv_runs<N, MOA_GGML_Q5_K>(row, n_in, x, lane, acc); break;
    case MOA_GGML_Q6_K: mv_runs<N, MOA_GGML_Q6_K>(row, n_in, x, lane, acc); break;
    default:
        for (int64_t e = lane; e < n_in; e += 32) {
            const float w = dq_value(t, row, e);
            for (int r = 0; r < N; r++) acc[r] += w * x[r * n_in + e];
        }
    }
    for (int r = 0; r < N; r++) {
        const float s = moa_warp_sum(acc[r]);
        if (lane == 0) y[r * n_out + o] = bias ? s + bias[o] : s;
    }
}

template <int N>
static moa_status launch_matvec(moa_cuda_ctx *c, const moa_cuda_weight *W, const float *x, float *y) {
    const unsigned grid = moa_cu_blocks(W->n_out, MV_WARPS);
    MOA_CU_LAUNCH(k_matvec<N>, grid, 32 * MV_WARPS, 0, c->stream, W->type, (const uint8_t *)W->raw,
                  moa_ggml_row_bytes(W->type, W->n_in), W->n_in, W->n_out, x, W->bias, y);
    CU_LAUNCHED("moa_cuda_matvec");
    return MOA_OK;
}

moa_status moa_cuda_matvec(moa_cuda_ctx *c, const moa_cuda_weight *W, const float *x, int64_t n,
                           float *y) {
    static const char fn[] = "moa_cuda_matvec";
    if (!W || !W->raw)
        return moa_err(MOA_ERR_INVALID_ARG, "%s: needs a raw weight (moa_cuda_weight_upload_raw)%s", fn,
                       W && W->data ? "; this one is dequantised: use moa_cuda_matmul" : "");
    if (n < 1 || n > MOA_CUDA_MATVEC_MAX_N)
        return moa_err(MOA_ERR_INVALID_ARG, "%s: %lld rows (1..%d; larger batches: moa_cuda_matmul)", fn,
                       (long long)n, MOA_CUDA_MATVEC_MAX_N);
    MOA_TRY(check_type(W->type, W->n_in, fn));
    if ((W->n_out + MV_WARPS - 1) / MV_WARPS > INT32_MAX)
        return moa_err(MOA_ERR_INVALID_ARG, "%s: %lld output rows", fn, (long long)W->n_out);
    switch (n) {
    case 1: return launch_matvec<1>(c, W, x, y);
    case 2: return launch_matvec<2>(c, W, x, y);
    case 3: return launch_matvec<3>(c, W, x, y);
    case 4: return launch_matvec<4>(c, W, x, y);
    case 5: return launch_matvec<5>(c, W, x, y);
    case 6: return launch_matvec<6>(c, W, x, y);
    case 7: return launch_matvec<7>(c, W, x, y);
    default: return launch_matvec<8>(c, W, x, y);
    }
}

moa_status moa_cuda_matmul_bwd(moa_cuda_ctx *c, const moa_cuda_weight *W, const void *dy,
                               int64_t n, float *dx, float beta) {
    if (W && W->raw)
        return moa_err(MOA_ERR_INVALID_ARG, "moa_cuda_matmul_bwd: a raw weight (moa_cuda_weight_upload_raw) "
                       "has no dequantised matrix; the backward takes weights from moa_cuda_weight_upload");
    if (!W || !W->data) return moa_err(MOA_ERR_INVALID_ARG, "moa_cuda_matmul_bwd: no weight");
    if (n <= 0) return MOA_OK;
    if (n > INT32_MAX || W->n_out > INT32_MAX || W->n_in > INT32_MAX)
        return moa_err(MOA_ERR_INVALID_ARG, "moa_cuda_matmul_bwd: dimensions exceed int32");
    /* Column-major view: dX^T [n_in x n] = W^T-as-stored [n_in x n_out] dY^T [n_out x n];
     * row-major W [n_out][n_in] is column-major n_in x n_out (ld n_in) -> op N; row-major
     * dy [n][n_out] is column-major n_out x n (ld n_out) -> op N; dx ld n_in. */
    const float alpha = 1.0f;
    const cudaDataType_t ty = cu_type(W->dtype);
    CUBLAS_TRY(cublasGemmEx(c->blas, CUBLAS_OP_N, CUBLAS_OP_N, (int)W->n_in, (int)n, (int)W->n_out,
                            &alpha, W->data, ty, (int)W->n_in, dy, ty, (int)W->n_out, &beta, dx,
                            CUDA_R_32F, (int)W->n_in, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
               "moa_cuda_matmul_bwd: cublasGemmEx");
    return MOA_OK;
}

moa_status moa_cuda_gemm_nt_batched(moa_cuda_ctx *c, moa_cuda_dtype dt, int m, int n, int k,
                                    float alpha, const void *A, int64_t sa, const void *B,
                                    int64_t sb, float beta, float *C, int64_t sc, int batch) {
    if (m <= 0 || n <= 0 || k <= 0 || batch <= 0) return MOA_OK;
    /* Column-major: C^T [n x m] = B [n x k] A^T [k x m]; row-major B [n][k] is col-major
     * k x n (ld k) -> op T; row-major A [m][k] is col-major k x m (ld k) -> op N. */
    const cudaDataType_t ty = cu_type(dt);
    CUBLAS_TRY(cublasGemmStridedBatchedEx(c->blas, CUBLAS_OP_T, CUBLAS_OP_N, n, m, k, &alpha,
                                          B, ty, k, sb, A, ty, k, sa, &beta, C, CUDA_R_32F, n,
                                          sc, batch, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
               "moa_cuda_gemm_nt_batched: cublasGemmStridedBatchedEx");
    return MOA_OK;
}

/* ---- RMSNorm ---------------------------------------------------------------------------- */

/* One block per row: ss = sum x^2 (per-thread float partials, combined in double),
 * r = 1 / sqrt(ss / d + eps), y = x r w. */
__global__ void k_rmsnorm(const float *x, const float *w, float *y, int64_t d, float eps) {
    MOA_CU_SHARED(double, part, [32]);
    const float *xr = x + (int64_t)blockIdx.x * d;
    float *yr = y + (int64_t)blockIdx.x * d;
    double ss = 0;
    for (int64_t i = threadIdx.x; i < d; i += blockDim.x) ss += (double)xr[i] * xr[i];
    ss = moa_block_sum_d(ss, part);
    const float r = (float)(1.0 / sqrt(ss / (double)d + eps));
    for (int64_t i = threadIdx.x; i < d; i += blockDim.x) yr[i] = xr[i] * r * w[i];
}

moa_status moa_cuda_rmsnorm(moa_cuda_ctx *c, const float *x, const float *w, float *y, int64_t n,
                            int64_t d, float eps) {
    if (n <= 0 || d <= 0) return MOA_OK;
    if (n > INT32_MAX) return moa_err(MOA_ERR_INVALID_ARG, "moa_cuda_rmsnorm: too many rows");
    MOA_CU_LAUNCH(k_rmsnorm, (unsigned)n, 256, 0, c->stream, x, w, y, d, eps);
    CU_LAUNCHED("moa_cuda_rmsnorm");
    return MOA_OK;
}

/* ---- RoPE ------------------------------------------------------------------------------- */

/* One thread per (row, head, pair i): (x0, x1) -> (x0 c - x1 s, x0 s + x1 c),
 * theta = p base^(-2i/rope_dim) in double, c and s rounded to float (the CPU tables);
 * the pair is (x[2i], x[2i+1]) (normal) or (x[i], x[i + half]) (neox). */
__global__ void k_rope(float *x, int64_t n, int n_heads, int hd, int half, double log_base,
                       int rope_dim, int64_t pos0, const int64_t *pos, float sgn, int neox) {
    const int64_t idx = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    const int64_t per_row = (int64_t)n_heads * half;
    if (idx >= n * per_row) return;
    const int64_t t = idx / per_row;
    const int h = (int)(idx % per_row / half), i = (int)(idx % half);
    const int64_t p = pos ? pos[t] : pos0 + t;
    const double inv = exp(-2.0 * i / (double)rope_dim * log_base);
    const double ang = (double)p * inv;
    const float co = (float)cos(ang), si = sgn * (float)sin(ang);
    float *v = x + (t * n_heads + h) * (int64_t)hd + (neox ? i : 2 * i);
    const int b = neox ? half : 1;
    const float x0 = v[0], x1 = v[b];
    v[0] = x0 * co - x1 * si;
    v[b] = x0 * si + x1 * co;
}

moa_status moa_cuda_rope(moa_cuda_ctx *c, float *x, int64_t n, int n_heads, int hd,
                         int rope_dim, float base, int64_t pos0, const int64_t *pos,
                         int inverse, int neox) {
    if (rope_dim <= 0 || rope_dim % 2 || rope_dim > hd || !(base > 1.0f) || (neox != 0 && neox != 1))
        return moa_err(MOA_ERR_INVALID_ARG, "moa_cuda_rope: rope_dim %d must be even, in (0, hd=%d], "
                       "base %g > 1, neox %d 0 or 1", rope_dim, hd, (double)base, neox);
    if (n <= 0 || n_heads <= 0) return MOA_OK;
    const int64_t total = n * n_heads * (int64_t)(rope_dim / 2);
    MOA_CU_LAUNCH(k_rope, moa_cu_blocks(total, 256), 256, 0, c->stream,
        x, n, n_heads, hd, rope_dim / 2, log((double)base), rope_dim, pos0, pos,
        inverse ? -1.0f : 1.0f, neox);
    CU_LAUNCHED("moa_cuda_rope");
    return MOA_OK;
}

/* ---- SwiGLU, residual --------------------------------------------------------------------- */

__global__ void k_swiglu(float *g, const float *u, int64_t n) {
    const int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) {
        const float a = g[i];
        g[i] = a / (1.0f + expf(-a)) * u[i];   /* silu(g) * u */
    }
}

moa_status moa_cuda_swiglu(moa_cuda_ctx *c, float *g, const float *u, int64_t n) {
    if (n <= 0) return MOA_OK;
    MOA_CU_LAUNCH(k_swiglu, moa_cu_blocks(n, 256), 256, 0, c->stream, g, u, n);
    CU_LAUNCHED("moa_cuda_swiglu");
    return MOA_OK;
}

/* Key smoothing (model/key-smooth.h): over n rows, q[t][h][d] *= s[h / group][d] and
 * k[t][g][d] /= s[g][d] (s: powers of two, so both are exact). One thread per q element. */
__global__ void k_key_smooth(float *q, float *k, const float *s, int64_t n, int n_head, int n_head_kv, int hd) {
    const int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    const int64_t row = (int64_t)n_head * hd;
    if (i >= n * row) return;
    const int64_t t = i / row;
    const int h = (int)(i % row) / hd, d = (int)(i % hd), g = h / (n_head / n_head_kv);
    const float sc = s[g * hd + d];
    q[i] *= sc;
    if (h % (n_head / n_head_kv) == 0) k[t * n_head_kv * hd + g * hd + d] /= sc;
}

moa_status moa_cuda_key_smooth(moa_cuda_ctx *c, float *q, float *k, const float *s, int64_t n, int n_head,
                               int n_head_kv, int hd) {
    if (n <= 0) return MOA_OK;
    if (n_head_kv <= 0 || n_head % n_head_kv || hd <= 0)
        return moa_err(MOA_ERR_INVALID_ARG, "moa_cuda_key_smooth: %d heads, %d KV heads, head_dim %d", n_head, n_head_kv, hd);
    const int64_t total = n * n_head * hd;
    MOA_CU_LAUNCH(k_key_smooth, moa_cu_blocks(total, 256), 256, 0, c->stream, q, k, s, n, n_head, n_head_kv, hd);
    CU_LAUNCHED("moa_cuda_key_smooth");
    return MOA_OK;
}

__global__ void k_add(float *x, const float *y, int64_t n) {
    const int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) x[i] += y[i];
}

moa_status moa_cuda_add(moa_cuda_ctx *c, float *x, const float *y, int64_t n) {
    if (n <= 0) return MOA_OK;
    MOA_CU_LAUNCH(k_add, moa_cu_blocks(n, 256), 256, 0, c->stream, x, y, n);
    CU_LAUNCHED("moa_cuda_add");
    return MOA_OK;
}
