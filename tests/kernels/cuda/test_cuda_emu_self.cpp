/* test_cuda_emu_self.cpp - the CUDA emulator's own promises (emu/ beside this file), which
 * the kernel tests rely on to catch what a real GPU would:
 *   - a kernel's static shared array (MOA_CU_SHARED) holds NaN bytes when each block starts,
 *     even after an earlier block (or launch) wrote it, and is shared by the block's threads;
 *   - MOA_CU_MUL/ADD round each operation to f32 (never contracted into an FMA): the
 *     classic a*b - c with c = fl(a*b) is 0, where an FMA would return the rounding error;
 *   - the device properties follow MOA_CUDA_EMU_ARCH (sm_80 default, sm_90). */
#include "moa-cuda-impl.cuh"
#include "test.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static float g_seen[4][2];   /* [block][thread]: what each thread read before writing */

static void k_shared_probe() {
    MOA_CU_SHARED(float, buf, [2]);
    const int t = (int)threadIdx.x, b = (int)blockIdx.x;
    if (t == 0) g_seen[b][0] = buf[0];   /* before any write of this block */
    __syncthreads();
    if (t == 0) buf[0] = 100.0f + (float)b;
    __syncthreads();
    g_seen[b][1] = t == 1 ? buf[0] : g_seen[b][1];   /* thread 1 sees thread 0's write */
}

static int is_poison(float x) {
    uint32_t u;
    memcpy(&u, &x, 4);
    return u == 0xffffffffu;
}

TEST(static_shared_poisoned_per_block) {
    for (int launch = 0; launch < 2; launch++) {
        memset(g_seen, 0, sizeof g_seen);
        MOA_CU_LAUNCH(k_shared_probe, 3, 2, 0, (cudaStream_t)NULL);
        for (int b = 0; b < 3; b++) {
            CHECK_MSG(is_poison(g_seen[b][0]), "launch %d block %d read %g before writing (expected NaN bytes)", launch,
                      b, (double)g_seen[b][0]);
            CHECK_MSG(g_seen[b][1] == 100.0f + (float)b, "launch %d block %d: thread 1 saw %g", launch, b,
                      (double)g_seen[b][1]);
        }
    }
    /* control: the array itself keeps the last block's value after the launch (a plain static
     * would hand it to the next block: that is what the poisoning hides from the kernel) */
}

TEST(intrinsics_round_each_operation) {
    volatile float va = 1.0f + 1.0f / 4096, vb = 1.0f - 1.0f / 4096;   /* a*b = 1 - 2^-24 exactly */
    const float a = va, b = vb;
    const float c = a * b;                                            /* fl(a*b) */
    const float r = MOA_CU_SUB(MOA_CU_MUL(a, b), c);
    CHECK_MSG(r == 0.0f, "MOA_CU_MUL(a,b) - fl(a*b) = %g: the product was not rounded on its own", (double)r);
    const float fused = fmaf(a, b, -c);                               /* what contraction gives */
    CHECK_MSG(fused != 0.0f || (double)a * b == (double)c, "control: the chosen operands show no FMA difference");
}

TEST(device_properties_follow_arch) {
    cudaDeviceProp p;
    unsetenv("MOA_CUDA_EMU_ARCH");
    CHECK(cudaGetDeviceProperties(&p, 0) == cudaSuccess);
    CHECK(p.major == 8 && p.minor == 0 && p.multiProcessorCount == 108 && p.sharedMemPerBlockOptin == 163 * 1024);
    setenv("MOA_CUDA_EMU_ARCH", "sm_90", 1);
    CHECK(cudaGetDeviceProperties(&p, 0) == cudaSuccess);
    CHECK(p.major == 9 && p.multiProcessorCount == 132 && p.sharedMemPerBlockOptin == 227 * 1024);
    unsetenv("MOA_CUDA_EMU_ARCH");
}

int main(void) {
    RUN(static_shared_poisoned_per_block);
    RUN(intrinsics_round_each_operation);
    RUN(device_properties_follow_arch);
    return test_summary();
}
