/* forward-cuda.h - internal to model/: the device half of a moa_ctx (forward-cuda.c), called
 * by forward.c when a context runs on CUDA. Compiled only with the CUDA backend
 * (MOA_ENGINE_CUDA); the CPU-only build never includes it. An engine is its context's: one
 * thread at a time (moa/model.h); it owns its device context, cache and scratch and shares the
 * model's device weights (weights-cuda.h). */
#ifndef MOA_FORWARD_CUDA_H
#define MOA_FORWARD_CUDA_H

#include "device-engine.h"

typedef moa_device_engine moa_engine_cuda;   /* the CUDA engine's state (device-engine.h) */

/* Opens device `device`, uploads the model's weights (dequantised to f16, or bf16 when
 * bf16 != 0), creates the device cache with layout L (units of runtime.h, copied) and the
 * positions of cp, and scratch for n_batch rows. The model must outlive the engine. */
moa_status moa_engine_cuda_create(const moa_model *m, const moa_cache_layout *L,
                                  const moa_cache_params *cp, int64_t n_ctx, int n_seq,
                                  int n_batch, int device, int bf16, const float *ksmooth,
                                  moa_engine_cuda **out);
void moa_engine_cuda_free(moa_engine_cuda *e);            /* accepts NULL */

/* The forward pass over n <= n_batch rows (forward.c's eval_rows on the device): seqs NULL:
 * consecutive tokens of sequence seq (a prefill chunk); else row i is one token of sequence
 * seqs[i] (batched decode). Logits per mode into host `logits`. Waits for the device before
 * returning (errors of queued kernels are reported by this call). */
moa_status moa_engine_cuda_rows(moa_engine_cuda *e, int seq, const int *seqs,
                                const int32_t *tokens, int64_t n, moa_logits_mode mode,
                                float *logits);

moa_status moa_engine_cuda_reset(moa_engine_cuda *e, int seq);   /* seq < 0: all */
int64_t moa_engine_cuda_pos(const moa_engine_cuda *e, int seq, int layer);
size_t moa_engine_cuda_kv_bytes(const moa_engine_cuda *e);
int moa_engine_cuda_device_count(void);

#endif
