/* cuda-emu.h - a CPU emulator of the CUDA execution model, for testing the kernels of
 * kernels/cuda on machines without a GPU. The .cu sources are compiled as C++ with
 * MOA_CUDA_EMU defined (moa-cuda-impl.cuh then includes this header instead of the CUDA
 * headers). A launch runs its blocks one after another; the threads of a block are fibers
 * (ucontext) scheduled cooperatively, so __syncthreads and the warp collectives
 * (__shfl_sync, __shfl_xor_sync, __ballot_sync) are real barriers over the block's or the
 * warp's live threads. Dynamic shared memory and the kernels' static shared arrays
 * (MOA_CU_SHARED) are filled with NaN bytes before each block so reads of unwritten shared
 * memory show up. The device's properties are an A100's (sm_80) or, with MOA_CUDA_EMU_ARCH=sm_90
 * in the environment, an H100's (sm_90: 227 KiB of opt-in shared memory per block, 132 SMs). Device memory is host memory; streams are
 * synchronous; cuBLAS GEMMs are plain loops. Only what kernels/cuda uses is provided.
 *
 * What it checks: indexing, masking, barriers, warp-collective use and the numerics of the
 * kernels. What it cannot: timing, occupancy, memory-model races between blocks (blocks run
 * in sequence), real shared-memory limits and bank conflicts. */
#ifndef MOA_CUDA_EMU_H
#define MOA_CUDA_EMU_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <math.h>
#include <functional>

/* ---- qualifiers -------------------------------------------------------------------------- */
#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
/* no __shared__: kernels declare static shared arrays with MOA_CU_SHARED (moa-cuda-impl.cuh),
 * which poisons them per block here; a bare __shared__ does not compile in the emulator */
#define __launch_bounds__(...)

struct dim3 {
    unsigned x, y, z;
    dim3(unsigned a = 1, unsigned b = 1, unsigned c = 1) : x(a), y(b), z(c) {}
};

/* the running thread and block */
dim3 emu_thread_idx();
extern dim3 emu_block_idx, emu_block_dim, emu_grid_dim;
extern void *emu_dyn_smem;
#define threadIdx (emu_thread_idx())
#define blockIdx (emu_block_idx)
#define blockDim (emu_block_dim)
#define gridDim (emu_grid_dim)

void __syncthreads();
uint64_t emu_warp_exchange(uint64_t v, int src_lane);   /* all lanes of the warp call it */
unsigned __ballot_sync(unsigned mask, int pred);
static inline int __ffs(unsigned x) { return __builtin_ffs((int)x); }

template <class T> static inline T __shfl_sync(unsigned, T v, int src) {
    static_assert(sizeof(T) <= 8, "shuffle of a value wider than 8 bytes");
    uint64_t b = 0;
    memcpy(&b, &v, sizeof v);
    b = emu_warp_exchange(b, src & 31);
    T r;
    memcpy(&r, &b, sizeof r);
    return r;
}
template <class T> static inline T __shfl_xor_sync(unsigned m, T v, int o) {
    return __shfl_sync(m, v, (int)(emu_thread_idx().x % 32) ^ o);
}
/* blocks run one at a time and fibers switch only at barriers: plain adds are atomic */
template <class T> static inline T atomicAdd(T *p, T v) { T o = *p; *p = o + v; return o; }

/* A kernel's static shared array (MOA_CU_SHARED): filled with NaN bytes (0xff) by the first
 * thread of each block that reaches its declaration, before any thread of the block writes it. */
void emu_shared_block(void *p, size_t n);

/* Run grid x block fibers of `body` (the kernel call). */
void emu_launch(dim3 grid, dim3 block, size_t smem, const std::function<void()> &body);
#define MOA_CU_LAUNCH(k, grid, block, smem, stream, ...) \
    ((void)(stream), emu_launch(dim3(grid), dim3(block), (smem), [&]() { k(__VA_ARGS__); }))
#define MOA_CU_DYN_SMEM(type, name) type *name = (type *)emu_dyn_smem

/* ---- runtime API subset -------------------------------------------------------------------- */
typedef enum {
    cudaSuccess = 0, cudaErrorInvalidValue = 1, cudaErrorMemoryAllocation = 2,
    cudaErrorInvalidConfiguration = 9, cudaErrorInvalidDevicePointer = 17,
    cudaErrorNoDevice = 100, cudaErrorUnknown = 999
} cudaError_t;
typedef struct emu_stream *cudaStream_t;
typedef enum { cudaMemcpyHostToDevice = 1, cudaMemcpyDeviceToHost = 2, cudaMemcpyDeviceToDevice = 3 } cudaMemcpyKind;
typedef enum { cudaFuncAttributeMaxDynamicSharedMemorySize = 8 } cudaFuncAttribute;
#define cudaStreamNonBlocking 1
typedef struct {
    char name[256];
    int major, minor, multiProcessorCount;
    size_t sharedMemPerBlockOptin, totalGlobalMem;
} cudaDeviceProp;

cudaError_t cudaGetDeviceCount(int *n);
cudaError_t cudaSetDevice(int d);
cudaError_t cudaGetDeviceProperties(cudaDeviceProp *p, int d);
cudaError_t cudaStreamCreateWithFlags(cudaStream_t *s, unsigned flags);
cudaError_t cudaStreamDestroy(cudaStream_t s);
cudaError_t cudaStreamSynchronize(cudaStream_t s);
cudaError_t cudaMalloc(void **p, size_t n);
cudaError_t cudaFree(void *p);
cudaError_t cudaMemcpyAsync(void *d, const void *s, size_t n, cudaMemcpyKind k, cudaStream_t st);
cudaError_t cudaMemsetAsync(void *p, int v, size_t n, cudaStream_t st);
cudaError_t cudaGetLastError(void);
const char *cudaGetErrorName(cudaError_t e);
const char *cudaGetErrorString(cudaError_t e);
cudaError_t cudaFuncSetAttribute(const void *f, cudaFuncAttribute a, int v);

/* ---- cuBLAS subset ------------------------------------------------------------------------- */
typedef struct emu_blas *cublasHandle_t;
typedef enum {
    CUBLAS_STATUS_SUCCESS = 0, CUBLAS_STATUS_NOT_INITIALIZED = 1, CUBLAS_STATUS_ALLOC_FAILED = 3,
    CUBLAS_STATUS_INVALID_VALUE = 7, CUBLAS_STATUS_ARCH_MISMATCH = 8, CUBLAS_STATUS_MAPPING_ERROR = 11,
    CUBLAS_STATUS_EXECUTION_FAILED = 13, CUBLAS_STATUS_INTERNAL_ERROR = 14,
    CUBLAS_STATUS_NOT_SUPPORTED = 15
} cublasStatus_t;
typedef enum { CUBLAS_OP_N = 0, CUBLAS_OP_T = 1 } cublasOperation_t;
typedef enum { CUDA_R_32F = 0, CUDA_R_16F = 2, CUDA_R_16BF = 14 } cudaDataType_t;
typedef enum { CUBLAS_COMPUTE_32F = 68 } cublasComputeType_t;
typedef enum { CUBLAS_GEMM_DEFAULT = -1 } cublasGemmAlgo_t;

cublasStatus_t cublasCreate(cublasHandle_t *h);
cublasStatus_t cublasDestroy(cublasHandle_t h);
cublasStatus_t cublasSetStream(cublasHandle_t h, cudaStream_t s);
cublasStatus_t cublasGemmEx(cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb, int m,
                            int n, int k, const void *alpha, const void *A, cudaDataType_t at,
                            int lda, const void *B, cudaDataType_t bt, int ldb, const void *beta,
                            void *C, cudaDataType_t ct, int ldc, cublasComputeType_t comp,
                            cublasGemmAlgo_t algo);
cublasStatus_t cublasGemmStridedBatchedEx(cublasHandle_t h, cublasOperation_t ta,
                                          cublasOperation_t tb, int m, int n, int k,
                                          const void *alpha, const void *A, cudaDataType_t at,
                                          int lda, long long sa, const void *B,
                                          cudaDataType_t bt, int ldb, long long sb,
                                          const void *beta, void *C, cudaDataType_t ct,
                                          int ldc, long long sc, int batch,
                                          cublasComputeType_t comp, cublasGemmAlgo_t algo);

#endif /* MOA_CUDA_EMU_H */
