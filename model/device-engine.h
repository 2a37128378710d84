/* device-engine.h - internal to model/: what a context needs from a device other than the CPU,
 * and the weights of the one forward pass (forward.c's eval_rows) as backend handles.
 *
 * The forward pass is written once over a backend table (moa/backend.h): embedding
 * rows, RMSNorm, projections, key smoothing, residual adds, SwiGLU and the LM head are table
 * entries, attention goes through the runtime's cache on the backend's device. A context on
 * the CPU uses moa_backend_cpu() and handles to the model's host weights (forward.c); a context
 * on another device gets both from that device's table below: it opens a device context,
 * acquires the model's device copy of the weights (shared by the model's contexts) and fills
 * the handles. The CUDA build links forward-cuda.c + weights-cuda.c, whose table
 * moa_device_engine_get returns for MOA_DEVICE_CUDA; a build without a device backend links
 * device-engine-none.c instead (no device for any kind). No device #ifdef in model/.
 * Threading as moa_ctx: one opened device per context, used by one thread at a time; the table
 * is immutable. */
#ifndef MOA_MODEL_DEVICE_ENGINE_H
#define MOA_MODEL_DEVICE_ENGINE_H

#include "moa/model.h"

enum { MOA_ENGINE_LW = 7 };   /* weights per layer: q k v o gate up down */

/* One layer's weights for a backend: pointers into memory the model (or its device copy) owns. */
typedef struct {
    const float *attn_norm, *ffn_norm;   /* [n_embd] f32, backend memory */
    const void *w[MOA_ENGINE_LW];        /* backend weight handles (moa/backend.h, matmul): CPU
                                            const moa_weight *, CUDA const moa_cuda_weight * */
} moa_engine_layer;

typedef struct {
    moa_backend_embd embd;      /* token table (moa/backend.h, embed) */
    const void *out;            /* LM head handle [n_vocab][n_embd] */
    const float *output_norm;   /* [n_embd] f32, backend memory */
    moa_engine_layer *layers;   /* [n_layer], allocated by the context */
} moa_engine_weights;

typedef struct moa_device_engine moa_device_engine;   /* an opened device + the weights held there */

typedef struct {
    const char *name;
    int (*device_count)(void);   /* devices present at run time (0: none usable) */
    int cache_device;            /* the runtime cache's device (moa_cache_params.device) */
    /* Opens device index `device`, acquires m's weights there (bf16: as bf16, else f16) and
     * fills *be (the device's backend table, its ctx lent to the context's cache) and *w (the
     * handles; w->layers [n_layer] allocated by the caller). The caller closes with close once
     * its buffers and cache on the device are freed. The model must outlive it. */
    moa_status (*open)(const moa_model *m, int device, int bf16, moa_backend *be,
                       moa_engine_weights *w, moa_device_engine **out);
    void (*close)(moa_device_engine *e);   /* accepts NULL */
    /* Drops the device copies of m's weights (called by moa_model_free; no context of m may
     * remain). */
    void (*release_model)(moa_model *m);
} moa_device_engine_ops;

/* The device of `kind`, or NULL when this build has none (always NULL for MOA_DEVICE_CPU). */
const moa_device_engine_ops *moa_device_engine_get(moa_device_kind kind);

#endif
