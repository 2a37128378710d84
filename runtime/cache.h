/* cache.h - the in-memory moa_cache (internal to runtime/): per-unit slot tables, the K/V and
 * linear-state storage, positions, RoPE tables and scratch. Public API: moa/runtime.h. */
#ifndef MOA_RUNTIME_CACHE_H
#define MOA_RUNTIME_CACHE_H

#include <stddef.h>
#include <stdint.h>
#include "moa/runtime.h"
#include "moa/attn.h"   /* kernels/cpu: storage types */
#include "moa/rope.h"
#include "cache-device.h"

/* Query tokens per prefill task (one task = one KV head x one tile of queries). */
#define MOA_CACHE_TILE 64

/* One unit (layer, KV head) as laid out in memory. Position p of a softmax unit lives in
 * slot p if p < sink, else in slot sink + (p - sink) % ring (if it is still in the ring). */
typedef struct {
    moa_unit_kind kind;
    int64_t sink;      /* sink slots: min(sink, n_ctx) (0 for linear units) */
    int64_t ring;      /* ring slots: window units min(W, n_ctx - sink); dense n_ctx - sink */
    int64_t window;    /* mask window used by the kernels (= ring) */
    float decay;       /* linear units */
    size_t off;        /* softmax: first slot within a sequence; linear: state index */
    int uniform_q;     /* 1: every query head of the group uses `window` */
} moa_cache_unit_rt;

struct moa_cache {
    int n_layer, n_head, n_kv, hd, n_seq, group;  /* group = n_head / n_kv */
    int64_t n_ctx;
    moa_cache_params p;
    /* a cache on another device than the CPU (p.device): its table and state hold everything
     * below (which stays empty); NULL for CPU caches */
    const moa_cache_device_ops *dev;
    moa_cache_dev *dc;
    moa_cache_unit_rt *units;   /* [n_layer][n_kv] */
    int64_t *q_window;          /* [n_layer][n_head] mask windows (clamped to the ring); NULL */
    unsigned char *layer_dense; /* [n_layer] 1 if the layer has a dense unit */
    size_t slots_per_seq;       /* sum of sink + ring over softmax units */
    size_t states_per_seq;      /* number of linear units */
    int64_t max_slots;          /* largest sink + ring of one unit */
    unsigned char *k;           /* [n_seq][slots_per_seq] rows of krow bytes (p.type_k) */
    unsigned char *v;           /* [n_seq][slots_per_seq] rows of vrow bytes (p.type_v) */
    size_t krow, vrow;          /* bytes of one stored key / value row (head_dim values) */
    float *state;               /* [n_seq][states_per_seq][hd][hd] */
    int64_t *pos;               /* [n_seq][n_layer] tokens appended */
    unsigned char *seq_mark;    /* [n_seq] duplicate check in decode */
    moa_rope_table rope;        /* RoPE cos/sin table (moa/rope.h) */
    /* scratch, grown on demand (the cache is used by one thread at a time) */
    float *io;                  /* rotated q and k of the call's tokens */
    size_t io_cap;              /* floats */
    float *tls;                 /* per-thread scratch for streaming mode */
    size_t tls_cap;             /* floats */
    float *part;                /* split-K decode partials: [n][n_kv][parts][group][hd + 1] */
    size_t part_cap;            /* floats */
    unsigned char *kvio;        /* the call's k, v rows in the storage types: [n][n_kv] krow
                                   bytes, then [n][n_kv] vrow bytes */
    size_t kvio_cap;            /* bytes */
};

/* Grow c->io / c->tls to at least n floats. */
moa_status moa_cache_reserve_io(moa_cache *c, size_t n);
moa_status moa_cache_reserve_tls(moa_cache *c, size_t n);
moa_status moa_cache_reserve_part(moa_cache *c, size_t n);
moa_status moa_cache_reserve_kvio(moa_cache *c, size_t bytes);

/* Storage types as the kernels name them (moa/attn.h; same values). */
#define MOA_CACHE_KT(c) ((moa_attn_kv_type)(c)->p.type_k)
#define MOA_CACHE_VT(c) ((moa_attn_kv_type)(c)->p.type_v)

/* Rotate one head vector: dst = RoPE(src, pos) over the first rope_dim dims, copy the rest.
 * dst may equal src. */
void moa_cache_rope(const moa_cache *c, float *dst, const float *src, int64_t pos);

static inline moa_cache_unit_rt *moa_cache_unit_at(const moa_cache *c, int layer, int kvh) {
    return &c->units[(size_t)layer * c->n_kv + kvh];
}

#endif
