/* profiler-device.h - internal to profiler/: the profiler's sample is written once over a backend
 * table (moa/backend.h; backward.c) and runs on the CPU or on a device; what a device
 * other than the CPU provides is this table: it opens the device, acquires the model's weights
 * there and fills the backend table and the weights as its handles (as model/device-engine.h
 * does for the engine's forward). backward.c fills the same for the CPU (moa_backend_cpu_rope,
 * the model's f32 weights) and calls nothing else device-specific: no device #ifdef in
 * profiler/. The CUDA build links backward-cuda.c, whose table moa_profiler_device_get returns
 * for MOA_DEVICE_CUDA; a build without a device backend links profiler-device-none.c (none).
 * Threading as moa_profiler: one opened device per profiler, one thread at a time; the table
 * is immutable. */
#ifndef MOA_PROFILER_DEVICE_H
#define MOA_PROFILER_DEVICE_H

#include "moa/profiler.h"

typedef struct moa_profiler_dev moa_profiler_dev;   /* an opened device + the weights held there */

enum { MOA_PROFILER_LW = 7 };   /* weights per layer: q k v o gate up down */

/* One layer's weights for a backend: pointers into memory the model (or its device copy) owns. */
typedef struct {
    const float *attn_norm, *ffn_norm;   /* [n_embd] f32, backend memory */
    const void *w[MOA_PROFILER_LW];      /* backend weight handles (moa/backend.h: matmul,
                                            matmul_bwd) */
} moa_profiler_layer;

/* The sample's weights and the device's choices for it. */
typedef struct {
    moa_profiler_layer *layers;   /* [n_layer], allocated by the caller */
    const void *out;              /* LM head handle [n_vocab][n_embd] */
    const float *output_norm;     /* [n_embd] f32, backend memory */
    int64_t lm_rows;              /* response rows per LM-head chunk (the logits scratch holds
                                     [lm_rows][n_vocab]); 0: all rows in one product */
    int keep_acts;                /* 1: layer activations are kept for the backward within
                                     act_budget_bytes (backend memory); 0: always recomputed */
} moa_profiler_weights;

typedef struct {
    const char *name;
    /* Opens device p->device_index, acquires m's weights there (f32, or bf16 with
     * p->device_bf16; shared with the model's other users of the device) and fills *be (the
     * device's backend table) and *w (w->layers allocated by the caller). The caller closes
     * with close once its buffers on the device are freed. The model must outlive it. */
    moa_status (*open)(const moa_model *m, const moa_profiler_params *p, moa_backend *be,
                       moa_profiler_weights *w, moa_profiler_dev **out);
    void (*close)(moa_profiler_dev *d);   /* accepts NULL */
} moa_profiler_device_ops;

/* The device of `kind`, or NULL when this build has none (always NULL for MOA_DEVICE_CPU). */
const moa_profiler_device_ops *moa_profiler_device_get(moa_device_kind kind);

#endif
