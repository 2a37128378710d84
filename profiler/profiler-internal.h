/* profiler-internal.h - internal to profiler/: pieces shared by the CPU (backward.c) and the
 * CUDA (backward-cuda.c) profiler samples. */
#ifndef MOA_PROFILER_INTERNAL_H
#define MOA_PROFILER_INTERNAL_H

#include "attn-train.h"
#include "moa/profiler.h"

/* The fused attention kernels' shape for an n-token sample of model hp under the profiler's
 * sink, block and eps. */
static inline moa_attn_train_shape moa_profiler_attn_shape(const moa_llama_hparams *hp,
                                                           const moa_profiler_params *p, int64_t n) {
    moa_attn_train_shape s = moa_attn_train_default_shape((int)n, hp->n_head, hp->n_head_kv, hp->head_dim);
    s.sink = p->sink;
    s.block = p->block;
    s.eps = p->eps;
    return s;
}

#endif
