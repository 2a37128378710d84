/* device-engine.h - internal to model/: the device engines of a context: a table of the
 * operations a context delegates when it runs on a device other than the CPU (model/forward.c
 * calls only these; no device #ifdef in model/). The CUDA build links forward-cuda.c +
 * weights-cuda.c, whose table moa_device_engine_get returns for MOA_DEVICE_CUDA; a build
 * without a device backend links device-engine-none.c instead (no engine for any device). The
 * CPU path is forward.c itself. The engine owns the context's cache and scratch on the device
 * and shares the model's device weights with the other contexts (weights-cuda.h). Threading as
 * moa_ctx: one engine state per context, used by one thread at a time; the table is immutable.
 */
#ifndef MOA_MODEL_DEVICE_ENGINE_H
#define MOA_MODEL_DEVICE_ENGINE_H

#include "cache-layout.h"   /* runtime/: a plan's units, as moa_cache_create builds them */
#include "moa/model.h"

typedef struct moa_device_engine moa_device_engine;   /* one context's state on the device */

typedef struct {
    const char *name;
    int (*device_count)(void);   /* devices present at run time (0: none usable) */
    /* The context's engine over the units of L (n_ctx positions, n_seq sequences, rows of up
     * to n_batch per call) on device index `device`; bf16: weights in bf16; ksmooth: key
     * smoothing scales or NULL (copied). The caller frees with free_engine. */
    moa_status (*create)(const moa_model *m, const moa_cache_layout *L, const moa_cache_params *cp,
                         int64_t n_ctx, int n_seq, int n_batch, int device, int bf16,
                         const float *ksmooth, moa_device_engine **out);
    void (*free_engine)(moa_device_engine *e);   /* accepts NULL */
    /* The forward pass over n rows (moa_ctx_eval_seq / moa_ctx_decode_batch semantics). */
    moa_status (*rows)(moa_device_engine *e, int seq, const int *seqs, const int32_t *tokens,
                       int64_t n, moa_logits_mode mode, float *logits);
    moa_status (*reset)(moa_device_engine *e, int seq);   /* seq < 0: all */
    int64_t (*pos)(const moa_device_engine *e, int seq, int layer);
    size_t (*kv_bytes)(const moa_device_engine *e);
    /* Drops the device copies of m's weights (called by moa_model_free; no context of m may
     * remain). */
    void (*release_model)(moa_model *m);
} moa_device_engine_ops;

/* The engine of `kind`, or NULL when this build has none (always NULL for MOA_DEVICE_CPU). */
const moa_device_engine_ops *moa_device_engine_get(moa_device_kind kind);

#endif
