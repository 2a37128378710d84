/* cuda-emu.cpp - the CPU emulator of cuda-emu.h: blocks in sequence, a block's threads as
 * cooperatively scheduled fibers, barriers that abort on deadlock (a barrier some threads of
 * the block or warp never reach), host memory as device memory, loop GEMMs for cuBLAS. */
#include "cuda-emu.h"

#include <unordered_map>
#include "moa-cuda-common.cuh"   /* f16 / bf16 conversion for the GEMM inputs */

#include <stdio.h>
#include <stdlib.h>
#include <ucontext.h>
#include <vector>

/* ---- context switching: a 7-instruction x86-64 switch (callee-saved registers + stack
 * pointer; swapcontext also saves the signal mask with a system call, ~50x slower);
 * ucontext elsewhere. ---- */
#if defined(__x86_64__)
extern "C" void emu_ctx_switch(void **save_sp, void *new_sp);
__asm__(".text\n"
        ".globl emu_ctx_switch\n"
        ".type emu_ctx_switch,@function\n"
        "emu_ctx_switch:\n"
        "  pushq %rbp\n  pushq %rbx\n  pushq %r12\n  pushq %r13\n  pushq %r14\n  pushq %r15\n"
        "  movq %rsp, (%rdi)\n"
        "  movq %rsi, %rsp\n"
        "  popq %r15\n  popq %r14\n  popq %r13\n  popq %r12\n  popq %rbx\n  popq %rbp\n"
        "  ret\n"
        ".size emu_ctx_switch,.-emu_ctx_switch\n");
#define EMU_ASM_SWITCH 1
#endif

namespace {

struct Fiber {
#if defined(EMU_ASM_SWITCH)
    void *sp;
#else
    ucontext_t ctx;
#endif
    dim3 tid;
    int lane, warp;
    bool done;
};
struct Barrier {
    int arrived = 0, alive = 0;
    unsigned gen = 0;
};

const size_t kStack = 128 * 1024;
#if defined(EMU_ASM_SWITCH)
void *g_sched_sp;
#else
ucontext_t g_sched;
#endif
std::vector<Fiber> g_fib;
std::vector<char *> g_stacks;
int g_cur = -1;
Barrier g_block;
std::vector<Barrier> g_warp;
std::vector<uint64_t> g_wbuf;      /* [warps][32] exchange slots */
const std::function<void()> *g_body;
unsigned long long g_progress;     /* arrivals + releases + exits: a round without any = deadlock */

void yield_to_scheduler() {
#if defined(EMU_ASM_SWITCH)
    emu_ctx_switch(&g_fib[g_cur].sp, g_sched_sp);
#else
    swapcontext(&g_fib[g_cur].ctx, &g_sched);
#endif
}

void release_if_complete(Barrier &b) {
    if (b.arrived > 0 && b.arrived == b.alive) {
        b.arrived = 0;
        b.gen++;
        g_progress++;
    }
}

void arrive(Barrier &b) {
    const unsigned g = b.gen;
    b.arrived++;
    g_progress++;
    if (b.arrived == b.alive) {
        b.arrived = 0;
        b.gen++;
        return;
    }
    while (b.gen == g) yield_to_scheduler();
}

void trampoline() {
    (*g_body)();
    Fiber &f = g_fib[g_cur];
    f.done = true;
    g_progress++;
    g_block.alive--;
    release_if_complete(g_block);
    g_warp[f.warp].alive--;
    release_if_complete(g_warp[f.warp]);
    yield_to_scheduler();   /* never resumed */
    abort();
}

void fiber_init(Fiber &f, char *stack) {
#if defined(EMU_ASM_SWITCH)
    /* initial frame: 6 zero registers, then trampoline as the return address of the first
     * switch, then a fake return address so trampoline starts with rsp = 8 mod 16 */
    uintptr_t top = ((uintptr_t)stack + kStack) & ~(uintptr_t)15;
    void **sp = (void **)top;
    *--sp = NULL;
    *--sp = (void *)trampoline;
    for (int r = 0; r < 6; r++) *--sp = NULL;
    f.sp = sp;
#else
    getcontext(&f.ctx);
    f.ctx.uc_stack.ss_sp = stack;
    f.ctx.uc_stack.ss_size = kStack;
    f.ctx.uc_link = &g_sched;
    makecontext(&f.ctx, trampoline, 0);
#endif
}

void fiber_resume(Fiber &f) {
#if defined(EMU_ASM_SWITCH)
    emu_ctx_switch(&g_sched_sp, f.sp);
#else
    swapcontext(&g_sched, &f.ctx);
#endif
}

cudaError_t g_last = cudaSuccess;

}  // namespace

dim3 emu_block_idx, emu_block_dim, emu_grid_dim;
void *emu_dyn_smem;

dim3 emu_thread_idx() { return g_fib[g_cur].tid; }

void __syncthreads() { arrive(g_block); }

uint64_t emu_warp_exchange(uint64_t v, int src) {
    Fiber &f = g_fib[g_cur];
    const int w = f.warp, lane = f.lane;
    g_wbuf[(size_t)w * 32 + lane] = v;
    arrive(g_warp[w]);
    const uint64_t r = g_wbuf[(size_t)w * 32 + src];
    arrive(g_warp[w]);
    return r;
}

unsigned __ballot_sync(unsigned, int pred) {
    const int w = g_fib[g_cur].warp;
    unsigned m = 0;
    const uint64_t mine = pred ? 1 : 0;
    /* every lane publishes its predicate, then reads all 32 */
    Fiber &f = g_fib[g_cur];
    g_wbuf[(size_t)w * 32 + f.lane] = mine;
    arrive(g_warp[w]);
    for (int l = 0; l < 32; l++)
        if (g_wbuf[(size_t)w * 32 + l]) m |= 1u << l;
    arrive(g_warp[w]);
    return m;
}

static uint64_t g_block_epoch;   /* one per emulated block */
static std::unordered_map<void *, uint64_t> g_shared_epoch;

void emu_shared_block(void *p, size_t n) {
    uint64_t &e = g_shared_epoch[p];
    if (e == g_block_epoch) return;   /* an earlier thread of this block poisoned it */
    memset(p, 0xff, n);
    e = g_block_epoch;
}

void emu_launch(dim3 grid, dim3 block, size_t smem, const std::function<void()> &body) {
    const int nt = (int)(block.x * block.y * block.z);
    if (nt <= 0 || nt > 1024 || grid.x == 0 || grid.y == 0 || grid.z == 0 || grid.y > 65535 ||
        grid.z > 65535) {
        g_last = cudaErrorInvalidConfiguration;
        return;
    }
    const int nw = (nt + 31) / 32;
    while ((int)g_stacks.size() < nt) g_stacks.push_back((char *)malloc(kStack));
    std::vector<char> dyn(smem ? smem : 1);
    emu_dyn_smem = dyn.data();
    emu_grid_dim = grid;
    emu_block_dim = block;
    g_body = &body;
    g_fib.assign((size_t)nt, Fiber());
    g_warp.assign((size_t)nw, Barrier());
    g_wbuf.assign((size_t)nw * 32, 0);
    for (unsigned bz = 0; bz < grid.z; bz++)
        for (unsigned by = 0; by < grid.y; by++)
            for (unsigned bx = 0; bx < grid.x; bx++) {
                emu_block_idx = dim3(bx, by, bz);
                memset(dyn.data(), 0xff, dyn.size());   /* NaN floats: uninitialised reads show */
                g_block_epoch++;                        /* static shared arrays: emu_shared_block */
                g_block = Barrier();
                g_block.alive = nt;
                for (int w = 0; w < nw; w++) {
                    g_warp[w] = Barrier();
                    g_warp[w].alive = w == nw - 1 ? nt - 32 * w : 32;
                }
                for (int i = 0; i < nt; i++) {
                    Fiber &f = g_fib[(size_t)i];
                    f.tid = dim3((unsigned)i % block.x, (unsigned)i / block.x % block.y,
                                 (unsigned)i / (block.x * block.y));
                    f.lane = i % 32;
                    f.warp = i / 32;
                    f.done = false;
                    fiber_init(f, g_stacks[(size_t)i]);
                }
                /* odd blocks schedule their threads in reverse: a missing barrier between a
                 * write and another thread's read shows in one of the two orders */
                const int rev = (int)((bx + by + bz) & 1u);
                int live = nt;
                while (live > 0) {
                    const unsigned long long before = g_progress;
                    for (int k = 0; k < nt; k++) {
                        const int i = rev ? nt - 1 - k : k;
                        if (g_fib[(size_t)i].done) continue;
                        g_cur = i;
                        fiber_resume(g_fib[(size_t)i]);
                        if (g_fib[(size_t)i].done) live--;
                    }
                    if (live > 0 && g_progress == before) {
                        fprintf(stderr, "cuda-emu: deadlock in block (%u,%u,%u): %d threads wait at a "
                                "barrier the others never reach\n", bx, by, bz, live);
                        abort();
                    }
                }
            }
    g_cur = -1;
}

/* ---- runtime API ------------------------------------------------------------------------------ */

cudaError_t cudaGetDeviceCount(int *n) { *n = 1; return cudaSuccess; }
cudaError_t cudaSetDevice(int) { return cudaSuccess; }
cudaError_t cudaGetDeviceProperties(cudaDeviceProp *p, int) {
    memset(p, 0, sizeof *p);
    snprintf(p->name, sizeof p->name, "CUDA emulator on the CPU");
    const char *arch = getenv("MOA_CUDA_EMU_ARCH");
    if (arch && !strcmp(arch, "sm_90")) {   /* H100 / H200 */
        p->major = 9;
        p->minor = 0;
        p->multiProcessorCount = 132;
        p->sharedMemPerBlockOptin = 227 * 1024;
    } else {                                /* A100 (sm_80), the default */
        p->major = 8;
        p->minor = 0;
        p->multiProcessorCount = 108;
        p->sharedMemPerBlockOptin = 163 * 1024;
    }
    p->totalGlobalMem = (size_t)8 << 30;
    return cudaSuccess;
}
cudaError_t cudaStreamCreateWithFlags(cudaStream_t *s, unsigned) { *s = NULL; return cudaSuccess; }
cudaError_t cudaStreamDestroy(cudaStream_t) { return cudaSuccess; }
cudaError_t cudaStreamSynchronize(cudaStream_t) { return cudaSuccess; }
cudaError_t cudaMalloc(void **p, size_t n) {
    *p = aligned_alloc(256, (n + 255) / 256 * 256);
    if (!*p) return g_last = cudaErrorMemoryAllocation;
    memset(*p, 0xff, n);   /* garbage, like fresh device memory */
    return cudaSuccess;
}
cudaError_t cudaFree(void *p) { free(p); return cudaSuccess; }
cudaError_t cudaMemcpyAsync(void *d, const void *s, size_t n, cudaMemcpyKind, cudaStream_t) {
    memcpy(d, s, n);
    return cudaSuccess;
}
cudaError_t cudaMemsetAsync(void *p, int v, size_t n, cudaStream_t) { memset(p, v, n); return cudaSuccess; }
cudaError_t cudaGetLastError(void) { cudaError_t e = g_last; g_last = cudaSuccess; return e; }
const char *cudaGetErrorName(cudaError_t e) { return e == cudaSuccess ? "cudaSuccess" : "cudaErrorEmu"; }
const char *cudaGetErrorString(cudaError_t e) { return e == cudaSuccess ? "no error" : "emulated CUDA error"; }
cudaError_t cudaFuncSetAttribute(const void *, cudaFuncAttribute, int v) {
    return v <= 163 * 1024 ? cudaSuccess : (g_last = cudaErrorInvalidValue);
}

/* ---- cuBLAS: column-major loops, double accumulation ------------------------------------------- */

cublasStatus_t cublasCreate(cublasHandle_t *h) { *h = NULL; return CUBLAS_STATUS_SUCCESS; }
cublasStatus_t cublasDestroy(cublasHandle_t) { return CUBLAS_STATUS_SUCCESS; }
cublasStatus_t cublasSetStream(cublasHandle_t, cudaStream_t) { return CUBLAS_STATUS_SUCCESS; }

static float ld(const void *p, cudaDataType_t t, size_t i) {
    if (t == CUDA_R_32F) return ((const float *)p)[i];
    const uint16_t h = ((const uint16_t *)p)[i];
    return t == CUDA_R_16F ? moa_cu_f16_to_f32(h) : moa_cu_bf16_to_f32(h);
}

cublasStatus_t cublasGemmStridedBatchedEx(cublasHandle_t, cublasOperation_t ta,
                                          cublasOperation_t tb, int m, int n, int k,
                                          const void *alpha, const void *A, cudaDataType_t at,
                                          int lda, long long sa, const void *B,
                                          cudaDataType_t bt, int ldb, long long sb,
                                          const void *beta, void *C, cudaDataType_t ct,
                                          int ldc, long long sc, int batch,
                                          cublasComputeType_t, cublasGemmAlgo_t) {
    if (ct != CUDA_R_32F || m < 0 || n < 0 || k < 0) return CUBLAS_STATUS_INVALID_VALUE;
    const float al = *(const float *)alpha, be = *(const float *)beta;
    for (int b = 0; b < batch; b++) {
        float *Cb = (float *)C + (size_t)b * sc;
        for (int j = 0; j < n; j++)
            for (int i = 0; i < m; i++) {
                double s = 0;
                for (int l = 0; l < k; l++) {
                    const size_t ai = ta == CUBLAS_OP_N ? (size_t)i + (size_t)l * lda : (size_t)l + (size_t)i * lda;
                    const size_t bi = tb == CUBLAS_OP_N ? (size_t)l + (size_t)j * ldb : (size_t)j + (size_t)l * ldb;
                    s += (double)ld(A, at, (size_t)b * sa + ai) * ld(B, bt, (size_t)b * sb + bi);
                }
                float *c = Cb + (size_t)i + (size_t)j * ldc;
                *c = (float)(al * s + (be != 0.0f ? be * *c : 0.0));
            }
    }
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasGemmEx(cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb, int m,
                            int n, int k, const void *alpha, const void *A, cudaDataType_t at,
                            int lda, const void *B, cudaDataType_t bt, int ldb, const void *beta,
                            void *C, cudaDataType_t ct, int ldc, cublasComputeType_t comp,
                            cublasGemmAlgo_t algo) {
    return cublasGemmStridedBatchedEx(h, ta, tb, m, n, k, alpha, A, at, lda, 0, B, bt, ldb, 0,
                                      beta, C, ct, ldc, 0, 1, comp, algo);
}
