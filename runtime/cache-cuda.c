/* cache-cuda.c - the CUDA entry of the runtime's cache device table (cache-device.h), linked
 * in builds with the CUDA backend (instead of cache-device-none.c): a moa_cache on
 * MOA_CACHE_DEVICE_CUDA holds kernels/cuda's device cache (moa-cuda-cache.h, attn.cu) and a
 * device context, its own (opened on params.device_index, freed with the cache; calls wait
 * for their kernels) or the caller's (params.device_ctx: the engine's, whose stream orders
 * the cache's kernels after its projections; calls only queue). */
#include "cache-device.h"
#include "moa-cuda-cache.h"
#include "moa/common.h"

#include <stdlib.h>

struct moa_cache_dev {
    moa_cuda_ctx *cx;
    int own;               /* 1: cx opened here (freed here; calls synchronise) */
    moa_cuda_cache *c;
};

static void dev_destroy(moa_cache_dev *d) {
    if (!d) return;
    moa_cuda_cache_free(d->c);
    if (d->own) moa_cuda_ctx_free(d->cx);
    free(d);
}

static moa_status dev_create(const moa_cache_layout *L, int64_t n_ctx, int n_seq,
                             const moa_cache_params *p, moa_cache_dev **out) {
    *out = NULL;
    const size_t nu = (size_t)L->n_layer * L->n_head_kv;
    moa_cache_dev *d = calloc(1, sizeof *d);
    moa_cuda_unit *cu = moa_calloc_array(nu, sizeof *cu);
    if (!d || !cu) {
        free(d);
        free(cu);
        return moa_err(MOA_ERR_NOMEM, "cache: out of memory");
    }
    for (size_t i = 0; i < nu; i++) {
        cu[i].kind = (int)L->units[i].kind;
        cu[i].window = L->units[i].window;
        cu[i].sink = L->units[i].sink;
        cu[i].decay = L->units[i].decay;
    }
    const moa_cuda_cache_layout G = {.n_layer = L->n_layer, .n_head = L->n_head, .n_head_kv = L->n_head_kv,
                                     .head_dim = L->head_dim, .units = cu, .scale = p->scale,
                                     .q_window = L->q_window, .pos_mode = (int)p->pos_mode,
                                     .rope_dim = p->rope_dim, .rope_base = p->rope_base,
                                     .rope_pairing = (int)p->rope_pairing,
                                     .type_k = (int)p->type_k, .type_v = (int)p->type_v};
    moa_status st = MOA_OK;
    d->cx = p->device_ctx;
    if (!d->cx) {
        st = moa_cuda_ctx_create(p->device_index, &d->cx);
        d->own = st == MOA_OK;
    }
    if (st == MOA_OK) st = moa_cuda_cache_create(d->cx, &G, n_ctx, n_seq, &d->c);
    free(cu);
    if (st < 0) {
        dev_destroy(d);
        return st;
    }
    *out = d;
    return MOA_OK;
}

/* After a call's work is queued: a cache with its own context waits for it (its stream is
 * not the caller's; out must be complete on return, and kernel errors surface here). */
static moa_status dev_done(moa_cache_dev *d, moa_status st) {
    if (st < 0 || !d->own) return st;
    return moa_cuda_sync(d->cx);
}

static moa_status dev_reset(moa_cache_dev *d, int seq) { return dev_done(d, moa_cuda_cache_reset(d->c, seq)); }
static moa_status dev_seq_copy(moa_cache_dev *d, int src, int dst) {
    return dev_done(d, moa_cuda_cache_seq_copy(d->c, src, dst));
}
static size_t dev_bytes(const moa_cache_dev *d) { return moa_cuda_cache_bytes(d->c); }
static int64_t dev_pos(const moa_cache_dev *d, int seq, int layer) { return moa_cuda_cache_pos(d->c, seq, layer); }

static moa_status dev_prefill(moa_cache_dev *d, int seq, int layer, const float *q, const float *k,
                              const float *v, int n_tokens, float *out) {
    return dev_done(d, moa_cuda_attn_prefill(d->c, seq, layer, q, k, v, n_tokens, out));
}
static moa_status dev_decode(moa_cache_dev *d, int layer, const int *seqs, int n, const float *q,
                             const float *k, const float *v, float *out) {
    return dev_done(d, moa_cuda_attn_decode(d->c, layer, seqs, n, q, k, v, out));
}

static const moa_cache_device_ops cuda_ops = {
    .name = "cuda", .count = moa_cuda_device_count, .create = dev_create, .destroy = dev_destroy,
    .reset = dev_reset, .seq_copy = dev_seq_copy, .bytes = dev_bytes, .pos = dev_pos,
    .prefill = dev_prefill, .decode = dev_decode};

const moa_cache_device_ops *moa_rt_cache_device(moa_cache_device device) {
    return device == MOA_CACHE_DEVICE_CUDA ? &cuda_ops : NULL;
}
