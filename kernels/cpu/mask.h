/* mask.h - internal to kernels/ (cpu/, cuda/ and their tests): the one attention mask
 * (../shared/design/architecture.md), written once for every kernel: the CPU reference and
 * SIMD kernels (attn.c, attn-simd.inc) and the CUDA kernels and their host helpers
 * (kernels/cuda/moa-cuda-common.cuh include this header).
 *
 * Query position i sees key position j iff  j <= i  and  (j < sink  or  i - j < window).
 *
 * Compiles as C11, as C++ and under nvcc (there __host__ __device__). Pure; no state. */
#ifndef MOA_KERNELS_MASK_H
#define MOA_KERNELS_MASK_H

#include <stdint.h>

#if defined(__CUDACC__)
#define MOA_MASK_FN static __host__ __device__ __forceinline__
#else
#define MOA_MASK_FN static inline
#endif

MOA_MASK_FN int moa_mask_visible(int64_t i, int64_t j, int64_t sink, int64_t window) {
    return j <= i && (j < sink || i - j < window);
}

#endif /* MOA_KERNELS_MASK_H */
