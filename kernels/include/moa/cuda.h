/* moa/cuda.h - public header of moa_cuda (kernels/cuda/, in builds with CUDA; the emulator's
 * moa_cuda_emu in tests): the CUDA backend's C API (extern "C"), callable from C11. Its
 * backend table is moa/backend.h's; the headers in kernels/cuda/ are internal.
 *
 * Every function returns a moa_status and sets moa_last_error() on failure: a missing device
 * or driver is MOA_ERR_DEVICE with a message, never a crash; CUDA and cuBLAS errors are mapped
 * to MOA_ERR_DEVICE / MOA_ERR_NOMEM / MOA_ERR_INVALID_ARG with the library's own message.
 *
 * Memory: unless a parameter says "host", every buffer is DEVICE memory (from
 * moa_cuda_alloc or cudaMalloc). Work is queued on the context's stream; results are ready
 * after moa_cuda_sync (downloads synchronise by themselves).
 * Threading: a context belongs to one host thread at a time (its stream and cuBLAS handle
 * are not shared); distinct contexts may be used concurrently. moa_cuda_ctx_create makes
 * its device current on the calling thread; call the context's functions from a thread
 * whose current device it is (cudaSetDevice) when several GPUs are used.
 *
 * Layouts and semantics mirror the CPU references exactly:
 *   profiler attention      moa/attn-train.h   (moa_attn_train_shape, moa_influence_acc)
 *   runtime attention       runtime/cache.c, runtime/attn.c (moa-cuda-cache.h, internal)
 *   dequantisation          moa/quant.h (ggml block layouts)
 *   RMSNorm / RoPE / SwiGLU moa/ops.h, moa/rope.h (adjacent pairs or halves)
 * No GPU was available where this was written: every op has a test comparing it with its
 * CPU reference (tests/kernels/cuda, ctest -L gpu) to run on a machine that has one; the
 * same test passes on a CPU emulator of the execution model (tests/kernels/cuda/emu,
 * docs/gpu.md).
 */
#ifndef MOA_CUDA_H
#define MOA_CUDA_H

#include <stddef.h>
#include <stdint.h>
#include "moa/base.h"
#include "moa/backend.h"   /* kernels/: moa_device_kind, moa_backend */

#ifdef __cplusplus
extern "C" {
#endif
#include "moa/attn-train.h"   /* C headers of kernels/cpu, without their own extern "C" */
#include "moa/quant.h"

/* ===================================== device layer ===================================== */

typedef struct moa_cuda_ctx moa_cuda_ctx;

/* Number of usable CUDA devices; 0 when there is none, no driver, or the driver is too old
 * (never an error, never a crash). Thread-safe. */
int moa_cuda_device_count(void);

/* Open device `device` (0-based): a stream, a cuBLAS handle, the device's limits.
 * MOA_ERR_DEVICE with "no CUDA device ..." if none is present or `device` is out of range.
 * The caller owns *out (moa_cuda_ctx_free). */
moa_status moa_cuda_ctx_create(int device, moa_cuda_ctx **out);
void moa_cuda_ctx_free(moa_cuda_ctx *ctx);                 /* accepts NULL */
/* "NVIDIA A100-SXM4-80GB (sm_80, 108 SMs, 79.2 GiB)" */
const char *moa_cuda_ctx_describe(const moa_cuda_ctx *ctx);
int moa_cuda_ctx_sm_count(const moa_cuda_ctx *ctx);
moa_status moa_cuda_sync(moa_cuda_ctx *ctx);               /* wait for queued work */

moa_status moa_cuda_alloc(moa_cuda_ctx *ctx, size_t bytes, void **out);
void moa_cuda_free(moa_cuda_ctx *ctx, void *p);            /* accepts NULL */
moa_status moa_cuda_upload(moa_cuda_ctx *ctx, void *dst, const void *host_src, size_t bytes);
moa_status moa_cuda_download(moa_cuda_ctx *ctx, void *host_dst, const void *src, size_t bytes);
moa_status moa_cuda_memset0(moa_cuda_ctx *ctx, void *p, size_t bytes);
moa_status moa_cuda_copy(moa_cuda_ctx *ctx, void *dst, const void *src, size_t bytes);  /* device to device */

/* The backend table over this context (moa/backend.h: every entry filled, each a
 * moa_cuda_* function below); valid while ctx lives. */
moa_backend moa_cuda_backend(moa_cuda_ctx *ctx);

/* ===================================== engine ops ======================================= */

/* Element types of device tensors. Append-only. */
typedef enum { MOA_CUDA_F32 = 0, MOA_CUDA_F16 = 1, MOA_CUDA_BF16 = 2 } moa_cuda_dtype;
static inline size_t moa_cuda_dtype_size(moa_cuda_dtype t) { return t == MOA_CUDA_F32 ? 4 : 2; }

/* Dequantise n values (a multiple of the block size) of ggml type t (F32, F16, BF16, Q4_0,
 * Q4_1, Q5_0, Q5_1, Q8_0, Q4_K, Q5_K, Q6_K: every type moa_dequant_row reads) from src
 * (device, raw blocks) into dst (device, n values of dtype).
 * Values are bit-identical to moa_dequant_row (then rounded to nearest even for f16/bf16).
 * MOA_ERR_UNSUPPORTED for other types. */
int moa_cuda_dequant_supported(moa_ggml_type t);   /* 1 if moa_cuda_dequant takes type t */
moa_status moa_cuda_dequant(moa_cuda_ctx *ctx, moa_ggml_type t, const void *src, int64_t n,
                            void *dst, moa_cuda_dtype dtype);

/* Rows of an embedding table: out[r][0..d) = dequant(table row tokens[r]).
 * table: device, n_vocab rows of moa_ggml_row_bytes(t, d) bytes; tokens: device int32 [n];
 * out: device f32 [n][d]. Token ids are not range-checked here (the engine checks them). */
moa_status moa_cuda_embed(moa_cuda_ctx *ctx, moa_ggml_type t, const void *table, int64_t d,
                          const int32_t *tokens, int64_t n, float *out);

/* A weight W [n_out][n_in] resident on the device, in one of two kinds, with an optional
 * bias (qwen2's q/k/v projections) that the products add:
 *   dequantised  data != NULL, raw == NULL: W dequantised once at upload to dtype
 *                (moa_cuda_weight_upload; the profiler's f32/bf16 weights, the engine's
 *                F32/F16/BF16 and host-dequantised ones);
 *   raw          data == NULL, raw != NULL: only the ggml blocks of `type` stay resident
 *                (moa_cuda_weight_upload_raw; the engine's quantised weights): products of
 *                up to MOA_CUDA_MATVEC_MAX_N rows read the blocks (moa_cuda_matvec), larger
 *                ones dequantise W into the context's scratch as dtype and run the GEMM.
 * Fields after `bias` were appended (raw-block matvec); zero (memset) means "dequantised". */
typedef struct {
    moa_cuda_dtype dtype;   /* MOA_CUDA_F16, MOA_CUDA_BF16 (engine) or MOA_CUDA_F32 (profiler);
                               raw weights: the element type of the GEMM path (F16 or BF16) */
    int64_t n_out, n_in;
    void *data;             /* device [n_out][n_in] of dtype; NULL for a raw weight */
    float *bias;            /* device f32 [n_out] (moa_cuda_weight_set_bias), or NULL */
    moa_ggml_type type;     /* raw weights: the ggml type of the blocks (else unused) */
    void *raw;              /* raw weights: device, n_out rows of moa_ggml_row_bytes(type,
                               n_in) bytes (the GGUF bytes as they are); else NULL */
} moa_cuda_weight;

/* Upload a ggml weight (host bytes, n_out rows of n_in values of type t) and dequantise it
 * on the device to f16, bf16 or f32 (a dequantised weight). The raw blocks pass through a
 * temporary device buffer. */
moa_status moa_cuda_weight_upload(moa_cuda_ctx *ctx, moa_ggml_type t, const void *host_data,
                                  int64_t n_out, int64_t n_in, moa_cuda_dtype dtype,
                                  moa_cuda_weight *out);
/* Upload a ggml weight keeping only its raw blocks on the device (a raw weight:
 * moa_ggml_row_bytes(t, n_in) n_out bytes, nothing else). t: any type moa_cuda_dequant
 * takes (MOA_ERR_UNSUPPORTED otherwise), n_in a multiple of its block size (32 or 256 for
 * the quantised types; MOA_ERR_INVALID_ARG otherwise). dtype (F16 or BF16) is the element
 * type moa_cuda_matmul rounds W and x to when it runs the GEMM on such a weight. */
moa_status moa_cuda_weight_upload_raw(moa_cuda_ctx *ctx, moa_ggml_type t, const void *host_data,
                                      int64_t n_out, int64_t n_in, moa_cuda_dtype dtype,
                                      moa_cuda_weight *out);
/* Frees either kind (accepts NULL; frees the bias too). */
void moa_cuda_weight_free(moa_cuda_ctx *ctx, moa_cuda_weight *w);
/* Give an uploaded weight (either kind) the bias host_bias [n_out] (host f32, copied; kept
 * in f32 whatever the weight's dtype), replacing any previous one; NULL removes it.
 * Synchronises. */
moa_status moa_cuda_weight_set_bias(moa_cuda_ctx *ctx, moa_cuda_weight *w, const float *host_bias);

/* dst[i] = round(x[i]) to dtype (f16/bf16 round to nearest even; f32 copies). */
moa_status moa_cuda_convert(moa_cuda_ctx *ctx, const float *x, int64_t n, void *dst,
                            moa_cuda_dtype dtype);

/* y[t][o] = sum_i W[o][i] x[t][i] (+ bias[o] when W has one, added in f32 after the GEMM)
 * (projection / LM head; cublasGemmEx, f32 accumulate), either kind of weight.
 * x: device [n][n_in] of W's dtype (moa_cuda_convert), y: device f32 [n][n_out], ld n_out.
 * A raw weight is first dequantised into the context's weight scratch (a device buffer of
 * the largest raw weight seen, as dtype, grown on demand and freed with the context), so
 * the result is the same, bit for bit, as the GEMM on a dequantised weight of that dtype. */
moa_status moa_cuda_matmul(moa_cuda_ctx *ctx, const moa_cuda_weight *W, const void *x,
                           int64_t n, float *y);

/* Rows a raw-block matrix-vector product takes (moa_cuda_matvec: 1 <= n <= this). */
#define MOA_CUDA_MATVEC_MAX_N 8
/* The raw-block product for small batches: y[t][o] = sum_i W[o][i] x[t][i] (+ bias[o]) for
 * a RAW weight (MOA_ERR_INVALID_ARG for a dequantised one) and 1 <= n <= MOA_CUDA_MATVEC_MAX_N
 * (MOA_ERR_INVALID_ARG otherwise). x: device f32 [n][n_in] (not rounded), y: device f32
 * [n][n_out]. One warp per output row decodes the row's blocks in registers with the same
 * decoders as moa_cuda_dequant (W's values are moa_dequant_row's, bit for bit) and
 * accumulates all n dots in f32 (per-lane partial sums, then a warp-shuffle tree), the
 * bias added last; it reads each weight byte once per call, whatever n. */
moa_status moa_cuda_matvec(moa_cuda_ctx *ctx, const moa_cuda_weight *W, const float *x,
                           int64_t n, float *y);

/* The backward of moa_cuda_matmul for activations: dx[t][i] = sum_o dy[t][o] W[o][i]
 * + beta dx[t][i] (a bias does not enter it). Dequantised weights only (the profiler's);
 * a raw weight is refused with MOA_ERR_INVALID_ARG. dy: device [n][n_out] of W's dtype,
 * dx: device f32 [n][n_in]. */
moa_status moa_cuda_matmul_bwd(moa_cuda_ctx *ctx, const moa_cuda_weight *W, const void *dy,
                               int64_t n, float *dx, float beta);

/* Batched row-major products, for b < batch:  C_b = alpha A_b B_b^T + beta C_b  with
 * A_b [m][k], B_b [n][k] of dtype (element strides sa, sb between batches) and C_b [m][n]
 * f32 (stride sc). cublasGemmStridedBatchedEx, f32 compute. */
moa_status moa_cuda_gemm_nt_batched(moa_cuda_ctx *ctx, moa_cuda_dtype dtype, int m, int n,
                                    int k, float alpha, const void *A, int64_t sa,
                                    const void *B, int64_t sb, float beta, float *C,
                                    int64_t sc, int batch);

/* y = x / sqrt(mean(x^2) + eps) * w over n rows of d (x, y: [n][d]; w: [d]; y may be x). */
moa_status moa_cuda_rmsnorm(moa_cuda_ctx *ctx, const float *x, const float *w, float *y,
                            int64_t n, int64_t d, float eps);

/* RoPE in place on x [n][n_heads*hd]: pair i < rope_dim/2 of each head rotated by
 * theta_i = p * base^(-2i/rope_dim) with p = pos[t] (device int64 [n]) or pos0 + t when pos
 * is NULL; the pair is (x[2i], x[2i+1]) with neox = 0 (GGUF llama) and (x[i],
 * x[i + rope_dim/2]) with neox = 1 (qwen2), as moa_rope_table_init's flag. inverse = 1
 * rotates by -theta (backward). cos/sin are taken in double and rounded to float, as the
 * CPU tables are. */
moa_status moa_cuda_rope(moa_cuda_ctx *ctx, float *x, int64_t n, int n_heads, int hd,
                         int rope_dim, float base, int64_t pos0, const int64_t *pos,
                         int inverse, int neox);

/* g[i] = silu(g[i]) * u[i] = g / (1 + exp(-g)) * u, i < n. */
moa_status moa_cuda_swiglu(moa_cuda_ctx *ctx, float *g, const float *u, int64_t n);
/* x[i] += y[i], i < n (residual). */
moa_status moa_cuda_add(moa_cuda_ctx *ctx, float *x, const float *y, int64_t n);
/* Key smoothing (model/key-smooth.h) over n rows: q[t][h][d] *= s[h / (n_head/n_head_kv)][d],
 * k[t][g][d] /= s[g][d]; s: device [n_head_kv * hd] powers of two. */
moa_status moa_cuda_key_smooth(moa_cuda_ctx *ctx, float *q, float *k, const float *s, int64_t n, int n_head,
                               int n_head_kv, int hd);

/* ============================ profiler backward (train.cu) ============================== */
/* References: moa/ops.h. All buffers device memory. */

/* dx += the RMSNorm backward of y = x r w for upstream dy, r = (mean(x^2) + eps)^-1/2:
 * dx += r w dy - x r^3 mean(x w dy), per row of d (x, dy, dx: [n][d]; w: [d]). */
moa_status moa_cuda_rmsnorm_bwd_add(moa_cuda_ctx *ctx, const float *x, const float *w,
                                    const float *dy, float *dx, int64_t n, int64_t d, float eps);
/* a[i] = silu(g[i]) * u[i] (g and u kept for the backward). */
moa_status moa_cuda_swiglu_to(moa_cuda_ctx *ctx, const float *g, const float *u, float *a,
                              int64_t n);
/* In place: g[i] <- dg, u[i] <- du for a = silu(g) u and upstream da (moa_cu_swiglu_bwd). */
moa_status moa_cuda_swiglu_bwd(moa_cuda_ctx *ctx, float *g, float *u, const float *da, int64_t n);
/* Mean cross-entropy over response rows, in chunks: for each of `rows` rows of logits
 * [rows][V] with target targets[r] (device int32, in range), loss[r] = logsumexp - z[target]
 * (device double [rows]), and the row is replaced by its gradient (softmax - onehot) / n_total,
 * n_total the number of rows of the whole mean. */
moa_status moa_cuda_xent_grad(moa_cuda_ctx *ctx, float *logits, const int32_t *targets,
                              int64_t rows, int64_t V, int64_t n_total, double *loss);

/* ================================ profiler attention ==================================== */

/* Same shapes, layouts and semantics as moa_attn_fwd_lse / moa_attn_bwd_influence
 * (attn-train.h); every buffer is device memory, including acc->abs/sgn/sink_abs/sink_sgn
 * (double, added to). The shape struct itself is host memory. hd <= 256. */
moa_status moa_cuda_attn_fwd_lse(moa_cuda_ctx *ctx, const moa_attn_train_shape *s,
                                 const float *Q, const float *K, const float *V, float *O,
                                 float *LSE);
moa_status moa_cuda_attn_bwd_influence(moa_cuda_ctx *ctx, const moa_attn_train_shape *s,
                                       const float *Q, const float *K, const float *V,
                                       const float *O, const float *dO, const float *LSE,
                                       float *dQ, float *dK, float *dV, moa_influence_acc *acc);

/* ================================= runtime attention ==================================== */
/* The runtime's per-head cache on the device is reached through the public runtime API:
 * moa_cache_create with moa_cache_params.device = MOA_CACHE_DEVICE_CUDA (runtime.h). Its
 * kernels and the internal device-cache calls live in attn.cu / moa-cuda-cache.h (internal to
 * kernels/cuda and the runtime's device table, runtime/cache-cuda.c). */

#ifdef __cplusplus
}
#endif
#endif /* MOA_CUDA_H */
