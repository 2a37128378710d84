/* moa-cuda-impl.cuh - internal to the .cu files of kernels/cuda: the context, error mapping and launch
 * helpers. Not installed. */
#ifndef MOA_CUDA_IMPL_CUH
#define MOA_CUDA_IMPL_CUH

#if defined(MOA_CUDA_EMU)
/* tests/kernels/cuda/emu: the same sources compiled as C++ for a CPU emulator of the launch
 * model */
#include "cuda-emu.h"
#else
#include <cuda_runtime.h>
#include <cublas_v2.h>
#endif

#include "moa/cuda.h"
#include "moa-cuda-common.cuh"

/* A static shared-memory array of a kernel: MOA_CU_SHARED(float, red, [4][64]). On the device,
 * __shared__ (fresh, undefined contents in every block); in the emulator, a static array
 * filled with NaN bytes when each block starts, so a read before a write shows up there as
 * it would on a GPU (a plain C static would keep the previous block's values). */
#if defined(MOA_CUDA_EMU)
#define MOA_CU_SHARED(type, name, dims) static type name dims; emu_shared_block((void *)(name), sizeof(name))
#else
#define MOA_CU_SHARED(type, name, dims) __shared__ type name dims
#endif
extern "C" {
#include "moa/common.h"
}

struct moa_cuda_ctx {
    int device;
    cudaStream_t stream;
    cublasHandle_t blas;
    int sm_count;
    int cc_major, cc_minor;
    size_t smem_optin;          /* largest dynamic shared memory per block (opt-in) */
    char desc[192];
    /* workspace of the backend table's ops (backend.cu): device buffers grown on demand
     * (moa_cuda_workspace), freed with the context; slot MOA_CU_WS_X: a GEMM input in the
     * weights' element type, MOA_CU_WS_Y: LM-head rows before their download, MOA_CU_WS_TOK:
     * token ids, MOA_CU_WS_W: a raw weight dequantised for moa_cuda_matmul's GEMM (the
     * largest raw weight multiplied with more than MOA_CUDA_MATVEC_MAX_N rows, engine.cu) */
    void *ws[4];
    size_t ws_bytes[4];
};

enum { MOA_CU_WS_X = 0, MOA_CU_WS_Y = 1, MOA_CU_WS_TOK = 2, MOA_CU_WS_W = 3, MOA_CU_WS_N = 4 };
/* *out = the context's workspace `slot` with at least `bytes` bytes: grown (after waiting for
 * the stream, so no queued kernel still reads the old buffer) when too small. Valid until the
 * next call for the same slot; work queued on the context's stream may use it in order. */
moa_status moa_cuda_workspace(moa_cuda_ctx *c, int slot, size_t bytes, void **out);

/* *view = W as a dequantised weight (engine.cu): W itself, or a raw W dequantised (as
 * W->dtype, bias kept) into the context's weight scratch MOA_CU_WS_W: valid until the next
 * use of that slot; work queued after this on the context's stream reads it in order. */
moa_status moa_cuda_weight_dense(moa_cuda_ctx *c, const moa_cuda_weight *W, moa_cuda_weight *view);

/* cudaError_t -> moa_status with "what: cudaErrorX: message" (clears the sticky-free error
 * state with cudaGetLastError). */
moa_status moa_cuda_status(cudaError_t e, const char *what);
moa_status moa_cublas_status(cublasStatus_t e, const char *what);

#define CU_TRY(call, what) do { cudaError_t e_ = (call); \
    if (e_ != cudaSuccess) return moa_cuda_status(e_, what); } while (0)
#define CUBLAS_TRY(call, what) do { cublasStatus_t e_ = (call); \
    if (e_ != CUBLAS_STATUS_SUCCESS) return moa_cublas_status(e_, what); } while (0)
/* After a kernel launch: configuration errors are reported at once. */
#define CU_LAUNCHED(what) CU_TRY(cudaGetLastError(), what)

static inline unsigned moa_cu_blocks(int64_t n, int threads) {
    return (unsigned)((n + threads - 1) / threads);
}

/* Kernel launch and dynamic shared memory, spelled as macros so the emulator can compile
 * the sources: MOA_CU_LAUNCH(kernel, grid, block, smem_bytes, stream, args...). */
#if !defined(MOA_CUDA_EMU)
#define MOA_CU_LAUNCH(k, grid, block, smem, stream, ...) k<<<(grid), (block), (smem), (stream)>>>(__VA_ARGS__)
#define MOA_CU_DYN_SMEM(type, name) extern __shared__ type name[]
#endif

#define MOA_CU_HD_MAX 256   /* = MOA_ATTN_HD_MAX */
#define MOA_CU_WARP 32

/* warp reductions (all lanes get the result) */
__device__ __forceinline__ float moa_warp_sum(float v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}
__device__ __forceinline__ double moa_warp_sum_d(double v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}
__device__ __forceinline__ float moa_warp_max(float v) {
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

/* Block reductions (blockDim.x a multiple of 32, <= 1024): every thread gets the result.
 * `part` is shared scratch of 32 values; the call ends with a barrier so part can be reused.
 * One body, spelled out per (name, type, warp reduction, value of an absent warp). */
#define MOA_CU_BLOCK_REDUCE(name, T, warp_op, identity)                                     \
    __device__ __forceinline__ T name(T v, T *part) {                                       \
        const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, nw = blockDim.x / 32;   \
        v = warp_op(v);                                                                     \
        if (lane == 0) part[warp] = v;                                                      \
        __syncthreads();                                                                    \
        if (warp == 0) {                                                                    \
            v = lane < nw ? part[lane] : (identity);                                        \
            v = warp_op(v);                                                                 \
            if (lane == 0) part[0] = v;                                                     \
        }                                                                                   \
        __syncthreads();                                                                    \
        v = part[0];                                                                        \
        __syncthreads();                                                                    \
        return v;                                                                           \
    }
MOA_CU_BLOCK_REDUCE(moa_block_sum_d, double, moa_warp_sum_d, 0.0)
MOA_CU_BLOCK_REDUCE(moa_block_max, float, moa_warp_max, -INFINITY)

/* Opt a kernel into `bytes` of dynamic shared memory (needed above 48 KiB). */
moa_status moa_cuda_smem_optin(const moa_cuda_ctx *ctx, const void *kernel, size_t bytes,
                               const char *what);


/* ---- the banded softmax forward shared by the profiler and the runtime (attn.cu) ---------- */

/* One (layer, KV head) of a device cache, as laid out (runtime/cache.h semantics). */
typedef struct {
    int kind;          /* 0 window, 1 dense, 2 linear */
    float decay;       /* linear */
    int64_t sink;      /* sink slots */
    int64_t ring;      /* ring slots */
    int64_t window;    /* mask window (= ring) */
    int64_t off;       /* softmax: first slot in a sequence; linear: state index */
} moa_cu_unit;

/* Query head h (blockIdx.y) of the call, KV head u = h / G. Keys: the cache slots of unit u
 * (positions from the slot map after `cached` tokens) and the chunk rows (positions
 * kpos0 + r, r < n_k). Mask: the one mask with the unit's sink and window. */
typedef struct {
    int hd, G, n_q;
    const float *q; int64_t ldq;          /* q[t*ldq + h*hd + d] */
    float *o; int64_t ldo;                /* o[t*ldo + h*hd + d] */
    float *lse; int64_t lse_ld;           /* optional lse[h*lse_ld + t] */
    int64_t qpos0;                        /* query t at position qpos0 + t */
    /* chunk keys and values, stored as kt / vt (MOA_CU_KV_*; the profiler: f32): row r of
     * KV head u at k + r*k_t + u*k_h bytes (v likewise) */
    const uint8_t *k, *v;
    int64_t k_t, k_h, v_t, v_h;
    int kt, vt;
    int64_t kpos0; int n_k;
    const moa_cu_unit *units;             /* [n_kv] of this layer; NULL: dense causal, no cache */
    const int64_t *qwin;                  /* optional [n_head] of this layer: per-head window */
    const uint8_t *kc, *vc;               /* cache K, V of this sequence: [slots] rows of krow,
                                             vrow bytes (types kt, vt) */
    int64_t krow, vrow;
    int64_t cached;                       /* tokens in the cache before the chunk */
    float scale;
    /* streaming mode (rope_dim > 0): q and keys arrive un-rotated; keys are rotated at their
     * own positions, the query at i for window keys and at min(i, C) for sink keys,
     * C = sink + ring - 1 (runtime/attn.c); inv_freq [rope_dim/2]; neox: the pairing
     * (0 adjacent pairs, 1 halves: moa_cu_rope_pair) */
    int rope_dim;
    const double *inv_freq;
    int neox;
} moa_cu_band_params;

/* Launch over n_head query heads x query tiles. */
moa_status moa_cu_band_fwd(const moa_cuda_ctx *ctx, const moa_cu_band_params *p, int n_head,
                           const char *what);

#endif
