/* cache-device.h - internal to runtime/: the table of a device that holds caches other than
 * the CPU (moa_cache_params.device). cache.c and attn.c dispatch to it and never #ifdef on a
 * device: a CUDA build links cache-cuda.c, whose table moa_rt_cache_device returns for
 * MOA_CACHE_DEVICE_CUDA (over kernels/cuda's device cache, moa-cuda-cache.h); a build without
 * a device backend links cache-device-none.c (no device has a table). The CPU cache is
 * cache.c + attn.c themselves. Threading as moa_cache: one device cache per moa_cache, used by
 * one thread at a time; the table is immutable. */
#ifndef MOA_RUNTIME_CACHE_DEVICE_H
#define MOA_RUNTIME_CACHE_DEVICE_H

#include "moa/runtime.h"

typedef struct moa_cache_dev moa_cache_dev;   /* one cache's state on the device */

/* Each entry has the semantics of the public function of the same name (runtime.h), with
 * the moa_cache replaced by the device state; buffers are the device's. */
typedef struct {
    const char *name;
    int (*count)(void);   /* devices present (0: none usable); never fails */
    /* L checked by cache.c; p complete (scale resolved); opens (and then owns) a device
     * context on p->device_index unless p->device_ctx lends one. */
    moa_status (*create)(const moa_cache_layout *L, int64_t n_ctx, int n_seq,
                         const moa_cache_params *p, moa_cache_dev **out);
    void (*destroy)(moa_cache_dev *d);   /* accepts NULL */
    moa_status (*reset)(moa_cache_dev *d, int seq);
    moa_status (*seq_copy)(moa_cache_dev *d, int src, int dst);
    size_t (*bytes)(const moa_cache_dev *d);
    int64_t (*pos)(const moa_cache_dev *d, int seq, int layer);
    moa_status (*prefill)(moa_cache_dev *d, int seq, int layer, const float *q, const float *k,
                          const float *v, int n_tokens, float *out);
    moa_status (*decode)(moa_cache_dev *d, int layer, const int *seqs, int n, const float *q,
                         const float *k, const float *v, float *out);
} moa_cache_device_ops;

/* The table of `device`, or NULL when this build has none (always NULL for the CPU). */
const moa_cache_device_ops *moa_rt_cache_device(moa_cache_device device);

#endif
