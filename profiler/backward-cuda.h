/* backward-cuda.h - internal to profiler/: moa_profiler_sample on a CUDA device
 * (backward-cuda.c), called by backward.c when the profiler runs on CUDA. Compiled only with
 * the CUDA backend (MOA_PROFILER_CUDA); the CPU-only build never includes it. A device
 * profiler is its moa_profiler's: one thread at a time; it owns its device context and
 * scratch and shares the model's device weights (weights-cuda.h). */
#ifndef MOA_PROFILER_BACKWARD_CUDA_H
#define MOA_PROFILER_BACKWARD_CUDA_H

#include "profiler-device.h"

typedef moa_profiler_dev moa_profiler_cuda;   /* the CUDA backend's state (profiler-device.h) */

/* Opens device p->device_index, takes the model's device weights (f32, or bf16 with
 * p->device_bf16; shared with the model's other CUDA users) and device scratch for samples
 * of up to n_max tokens. The model must outlive the profiler. */
moa_status moa_profiler_cuda_create(const moa_model *m, int64_t n_max,
                                    const moa_profiler_params *p, moa_profiler_cuda **out);
void moa_profiler_cuda_free(moa_profiler_cuda *c);   /* accepts NULL */

/* moa_profiler_sample_embd on the device, arguments already checked by backward.c
 * (2 <= n <= n_max, response span, histogram size): x0 and d_embed are host [n][n_embd],
 * the histograms host memory added to as on the CPU. Waits for the device. */
moa_status moa_profiler_cuda_sample(moa_profiler_cuda *c, const float *x0, const int32_t *tokens,
                                    int64_t n, int64_t rb, int64_t re, moa_profiler_hist *hist,
                                    double *loss, float *d_embed);

#endif
