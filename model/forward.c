/* forward.c - the forward pass of the Llama-family architectures (arch.h) on CPU:
 * embeddings, RMSNorm, projections (+ q/k/v biases where the architecture has them),
 * attention through the runtime (runtime/: RoPE in the architecture's pairing, per-head
 * caches of a plan or dense, banded/dense/linear kernels, GQA native), SwiGLU, final norm
 * and LM head.
 * Projections use BLAS for batches and the quantised kernels for single tokens.
 * A context created for a device hands its rows to that device's engine instead (device-engine.h:
 * a table chosen at run time; CUDA: forward-cuda.c), with the same chunking, checks and
 * logits modes, which stay here. On the CPU the elementwise and row ops (RMSNorm, residual
 * adds, SwiGLU, key smoothing) go through the CPU backend table (kernels/moa-backend.h), the op
 * vocabulary the CUDA backend shares. */
#include "moa/model.h"
#include "key-smooth.h"
#include "moa-common.h"
#include "device-engine.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

struct moa_ctx {
    const moa_model *m;
    moa_ctx_params p;
    moa_cache *cache;      /* per-layer, per-KV-head caches (runtime/); RoPE applied there */
    /* scratch for a chunk of up to n_batch tokens */
    float *x;              /* [n_batch][n_embd] residual stream */
    float *h;              /* [n_batch][n_embd] normalised input */
    float *q;              /* [n_batch][n_head*hd]  (before RoPE) */
    float *k, *v;          /* [n_batch][n_kv*hd]    (k before RoPE) */
    float *att;            /* [n_batch][n_head*hd] attention output */
    float *gate, *up;      /* [n_batch][n_ff] */
    float *ksmooth;        /* key smoothing scales (key-smooth.h) or NULL */
    double attn_seconds;
    moa_backend be;        /* the CPU backend: RMSNorm, adds, SwiGLU, key smoothing */
    moa_device_kind device;   /* MOA_DEVICE_CPU or MOA_DEVICE_CUDA */
    const moa_device_engine_ops *dev_ops;   /* not the CPU: the device's engine (device-engine.h) */
    moa_device_engine *dev;   /* its state: weights, cache and scratch on the device; the
                                 CPU fields above (cache, scratch) stay NULL */
};

static moa_device_kind g_default_device = MOA_DEVICE_CPU;

void moa_ctx_set_default_device(moa_device_kind device) { g_default_device = device; }

int moa_ctx_cuda_available(void) {
    const moa_device_engine_ops *o = moa_device_engine_get(MOA_DEVICE_CUDA);
    return o && o->device_count() > 0;
}

moa_device_kind moa_ctx_device(const moa_ctx *c) { return c->device; }

moa_ctx_params moa_ctx_default_params(void) {
    const moa_ctx_params p = {.n_batch = 512, .n_seq = 1, .pos_mode = MOA_POS_ABSOLUTE,
                              .device = g_default_device, .kv_type = MOA_KV_F16};
    return p;
}

void moa_ctx_free(moa_ctx *c) {
    if (!c) return;
    MOA_FREE_ALIGNED_ALL(c->x, c->h, c->q, c->k, c->v, c->att, c->gate, c->up);
    moa_cache_free(c->cache);
    free(c->ksmooth);
    if (c->dev) c->dev_ops->free_engine(c->dev);
    free(c);
}

/* Dense units for every KV head: window n_ctx, StreamingLLM sinks (used only when a
 * streaming cache rolls). units: [n_layer][n_head_kv], caller frees. */
static moa_cache_unit *dense_units(const moa_llama_hparams *hp, int64_t n_ctx) {
    moa_cache_unit *units = moa_calloc_array((size_t)hp->n_layer * hp->n_head_kv, sizeof *units);
    if (!units) return NULL;
    for (int64_t i = 0; i < (int64_t)hp->n_layer * hp->n_head_kv; i++) {
        units[i].kind = MOA_UNIT_DENSE;
        units[i].window = n_ctx;
        units[i].sink = 4;
    }
    return units;
}

static moa_status create_on_device(moa_ctx *c, const moa_cache_params *cp) {
    const moa_llama_hparams *hp = &c->m->hp;
    /* the plan's units at n_ctx by the CPU cache's own rules (runtime/cache-layout.h) */
    moa_cache_layout L;
    if (c->p.plan) {
        MOA_TRY(moa_cache_layout_from_plan(c->p.plan, c->p.n_ctx, &L));
    } else {
        moa_cache_unit *units = dense_units(hp, c->p.n_ctx);
        if (!units) return moa_err(MOA_ERR_NOMEM, "out of memory");
        L = (moa_cache_layout){hp->n_layer, hp->n_head, hp->n_head_kv, hp->head_dim, units, NULL};
    }
    moa_status st = c->dev_ops->create(c->m, &L, cp, c->p.n_ctx, c->p.n_seq, c->p.n_batch,
                                       c->p.device_index, c->p.device_bf16, c->ksmooth, &c->dev);
    moa_cache_layout_release(&L);
    return st;
}

moa_status moa_ctx_create(const moa_model *m, const moa_ctx_params *pp, moa_ctx **out) {
    *out = NULL;
    moa_ctx *c = calloc(1, sizeof *c);
    if (!c) return moa_err(MOA_ERR_NOMEM, "out of memory");
    c->m = m;
    c->be = moa_backend_cpu();
    c->p = pp ? *pp : moa_ctx_default_params();
    const moa_llama_hparams *hp = &m->hp;
    if (c->p.n_ctx <= 0) c->p.n_ctx = hp->n_ctx_train;
    if (c->p.n_batch <= 0) c->p.n_batch = 512;
    if (c->p.n_seq <= 0) c->p.n_seq = 1;
    if (c->p.n_batch > c->p.n_ctx && c->p.n_ctx >= c->p.n_seq) c->p.n_batch = c->p.n_ctx;
    if (c->p.n_batch < c->p.n_seq) c->p.n_batch = c->p.n_seq;
    int64_t nb = c->p.n_batch, hd = hp->head_dim;
    int64_t nkv = (int64_t)hp->n_head_kv * hd, nq = (int64_t)hp->n_head * hd;
    moa_cache_params cp = moa_cache_default_params();
    cp.pos_mode = c->p.pos_mode;
    cp.rope_dim = hp->rope_dim;
    cp.rope_base = hp->rope_base;
    cp.rope_pairing = hp->rope_pairing;
    cp.type_k = cp.type_v = c->p.kv_type;
    moa_status st;
    if (c->p.plan &&
        (st = moa_plan_check(c->p.plan, hp->n_layer, hp->n_head, hp->n_head_kv, hp->head_dim)) < 0) {
        moa_ctx_free(c);
        return st;
    }
    if (c->p.device != MOA_DEVICE_CPU && c->p.device != MOA_DEVICE_CUDA && c->p.device != MOA_DEVICE_AUTO) {
        int dev = (int)c->p.device;
        moa_ctx_free(c);
        return moa_err(MOA_ERR_INVALID_ARG, "moa_ctx_create: unknown device %d", dev);
    }
    c->device = c->p.device != MOA_DEVICE_AUTO ? c->p.device
              : moa_ctx_cuda_available() ? MOA_DEVICE_CUDA : MOA_DEVICE_CPU;
    if (c->p.kv_type == MOA_KV_Q8_0 && !c->p.no_key_smooth && (st = moa_key_smooth_scales(m, &c->ksmooth)) < 0) {
        moa_ctx_free(c);
        return st;
    }
    if (c->device != MOA_DEVICE_CPU) {
        if (!(c->dev_ops = moa_device_engine_get(c->device))) {
            moa_ctx_free(c);
            return moa_err(MOA_ERR_DEVICE, "moa_ctx_create: this build has no CUDA backend (configure "
                           "with -DMOA_CUDA=ON on a machine with the CUDA toolkit); use the CPU device");
        }
        st = create_on_device(c, &cp);
        c->p.plan = NULL;
        if (st < 0) { moa_ctx_free(c); return st; }
        *out = c;
        return MOA_OK;
    }
    if (c->p.plan) {
        if ((st = moa_cache_create(c->p.plan, c->p.n_ctx, c->p.n_seq, &cp, &c->cache)) < 0) {
            moa_ctx_free(c);
            return st;
        }
        c->p.plan = NULL;   /* not kept */
    } else {
        moa_cache_unit *units = dense_units(hp, c->p.n_ctx);
        if (!units) { moa_ctx_free(c); return moa_err(MOA_ERR_NOMEM, "out of memory"); }
        moa_cache_layout L = {hp->n_layer, hp->n_head, hp->n_head_kv, hp->head_dim, units, NULL};
        st = moa_cache_create_layout(&L, c->p.n_ctx, c->p.n_seq, &cp, &c->cache);
        free(units);
        if (st < 0) { moa_ctx_free(c); return st; }
    }
    c->x = moa_alloc_aligned((size_t)(nb * hp->n_embd), sizeof(float));
    c->h = moa_alloc_aligned((size_t)(nb * hp->n_embd), sizeof(float));
    c->q = moa_alloc_aligned((size_t)(nb * nq), sizeof(float));
    c->k = moa_alloc_aligned((size_t)(nb * nkv), sizeof(float));
    c->v = moa_alloc_aligned((size_t)(nb * nkv), sizeof(float));
    c->att = moa_alloc_aligned((size_t)(nb * nq), sizeof(float));
    c->gate = moa_alloc_aligned((size_t)(nb * hp->n_ff), sizeof(float));
    c->up = moa_alloc_aligned((size_t)(nb * hp->n_ff), sizeof(float));
    if (!c->x || !c->h || !c->q || !c->k || !c->v || !c->att || !c->gate || !c->up) {
        moa_ctx_free(c);
        return moa_err(MOA_ERR_NOMEM, "out of memory for a batch of %lld tokens", (long long)nb);
    }
    *out = c;
    return MOA_OK;
}

/* A context on a device delegates to its engine. */
#define ON_DEVICE(c, expr) if ((c)->dev) return expr

void moa_ctx_reset(moa_ctx *c) {
    if (c->dev) {
        if (c->dev_ops->reset(c->dev, -1) < 0) moa_log_warn("moa_ctx_reset: %s", moa_last_error());
        return;
    }
    moa_cache_reset(c->cache, -1);
}
int32_t moa_ctx_n_past(const moa_ctx *c) { return moa_ctx_seq_pos(c, 0); }
int32_t moa_ctx_seq_pos(const moa_ctx *c, int seq) {
    ON_DEVICE(c, (int32_t)c->dev_ops->pos(c->dev, seq, 0));
    return (int32_t)moa_cache_pos(c->cache, seq, 0);
}
int32_t moa_ctx_n_ctx(const moa_ctx *c) { return c->p.n_ctx; }
size_t moa_ctx_kv_bytes(const moa_ctx *c) {
    ON_DEVICE(c, c->dev_ops->kv_bytes(c->dev));
    return moa_cache_bytes(c->cache);
}
const moa_model *moa_ctx_model(const moa_ctx *c) { return c->m; }
double moa_ctx_attn_seconds(moa_ctx *c, int reset) {
    double s = c->attn_seconds;
    if (reset) c->attn_seconds = 0;
    return s;
}

/* Forward over n rows. seqs == NULL: rows are consecutive tokens of sequence `seq`
 * (prefill chunk); else row i is one token of sequence seqs[i] (batched decode). */
static moa_status eval_rows(moa_ctx *c, int seq, const int *seqs, const int32_t *tokens, int64_t n,
                            moa_logits_mode mode, float *logits) {
    ON_DEVICE(c, c->dev_ops->rows(c->dev, seq, seqs, tokens, n, mode, logits));
    const moa_model *m = c->m;
    const moa_llama_hparams *hp = &m->hp;
    const moa_backend *be = &c->be;
    int64_t d = hp->n_embd, nff = hp->n_ff;
    size_t erb = moa_ggml_row_bytes(m->tok_embd.type, d);
    for (int64_t t = 0; t < n; t++)
        moa_dequant_row(m->tok_embd.type, (const uint8_t *)m->tok_embd.data + (size_t)tokens[t] * erb,
                        c->x + t * d, d);
    for (int l = 0; l < hp->n_layer; l++) {
        const moa_llama_layer *L = &m->layers[l];
        MOA_TRY(be->rmsnorm(be->ctx, c->x, L->attn_norm, c->h, n, d, hp->rms_eps));
        const moa_weight *qkv[3] = {&L->wq, &L->wk, &L->wv};
        float *const qkv_out[3] = {c->q, c->k, c->v};
        moa_weight_matmul_multi(qkv, 3, c->h, n, qkv_out);
        if (c->ksmooth)
            MOA_TRY(be->key_smooth(be->ctx, c->q, c->k, c->ksmooth + (size_t)l * hp->n_head_kv * hp->head_dim,
                                   n, hp->n_head, hp->n_head_kv, hp->head_dim));
        /* attention through the runtime: RoPE, cache append, banded/dense/linear kernels */
        double t0 = moa_time_now();
        moa_status st = seqs ? moa_attn_decode(c->cache, l, seqs, (int)n, c->q, c->k, c->v, c->att)
                             : moa_attn_prefill(c->cache, seq, l, c->q, c->k, c->v, (int)n, c->att);
        c->attn_seconds += moa_time_now() - t0;
        if (st < 0) return st;
        /* x += att Wo^T (h reused as the projection output) */
        moa_weight_matmul(&L->wo, c->att, n, c->h);
        MOA_TRY(be->add(be->ctx, c->x, c->h, n * d));
        MOA_TRY(be->rmsnorm(be->ctx, c->x, L->ffn_norm, c->h, n, d, hp->rms_eps));
        const moa_weight *gu[2] = {&L->w_gate, &L->w_up};
        float *const gu_out[2] = {c->gate, c->up};
        moa_weight_matmul_multi(gu, 2, c->h, n, gu_out);
        MOA_TRY(be->swiglu(be->ctx, c->gate, c->up, n * nff));   /* silu(g) * u */
        moa_weight_matmul(&L->w_down, c->gate, n, c->h);
        MOA_TRY(be->add(be->ctx, c->x, c->h, n * d));
    }
    if (mode == MOA_LOGITS_NONE) return MOA_OK;
    if (mode == MOA_LOGITS_LAST) {
        MOA_TRY(be->rmsnorm(be->ctx, c->x + (n - 1) * d, m->output_norm, c->h, 1, d, hp->rms_eps));
        moa_weight_matmul(&m->output, c->h, 1, logits);
    } else {
        MOA_TRY(be->rmsnorm(be->ctx, c->x, m->output_norm, c->h, n, d, hp->rms_eps));
        moa_weight_matmul(&m->output, c->h, n, logits);
    }
    return MOA_OK;
}

static moa_status check_tokens(const moa_ctx *c, const int32_t *tokens, int32_t n) {
    for (int32_t i = 0; i < n; i++)
        if (tokens[i] < 0 || tokens[i] >= c->m->hp.n_vocab)
            return moa_err(MOA_ERR_INVALID_ARG, "token id %d at index %d is outside the vocabulary (0..%d)",
                           tokens[i], i, c->m->hp.n_vocab - 1);
    return MOA_OK;
}

moa_status moa_ctx_seq_copy(moa_ctx *c, int src, int dst) {
    if (c->dev) return moa_err(MOA_ERR_UNSUPPORTED, "moa_ctx_seq_copy: not available on the %s device yet",
                               c->dev_ops->name);
    return moa_cache_seq_copy(c->cache, src, dst);
}

moa_status moa_ctx_eval_seq(moa_ctx *c, int seq, const int32_t *tokens, int32_t n,
                            moa_logits_mode mode, float *logits) {
    if (n <= 0) return moa_err(MOA_ERR_INVALID_ARG, "moa_ctx_eval: no tokens");
    if (seq < 0 || seq >= c->p.n_seq)
        return moa_err(MOA_ERR_INVALID_ARG, "moa_ctx_eval: sequence %d out of range (n_seq %d)", seq, c->p.n_seq);
    MOA_TRY(check_tokens(c, tokens, n));
    int64_t nv = c->m->hp.n_vocab;
    for (int32_t done = 0; done < n;) {
        int32_t k = n - done < c->p.n_batch ? n - done : c->p.n_batch;
        int last_chunk = done + k == n;
        moa_logits_mode cm = mode == MOA_LOGITS_ALL ? MOA_LOGITS_ALL
                           : (last_chunk ? mode : MOA_LOGITS_NONE);
        float *lg = mode == MOA_LOGITS_ALL ? logits + (size_t)done * nv : logits;
        MOA_TRY(eval_rows(c, seq, NULL, tokens + done, k, cm, lg));
        done += k;
    }
    return MOA_OK;
}

moa_status moa_ctx_eval(moa_ctx *c, const int32_t *tokens, int32_t n, moa_logits_mode mode,
                        float *logits) {
    return moa_ctx_eval_seq(c, 0, tokens, n, mode, logits);
}

moa_status moa_ctx_decode_batch(moa_ctx *c, const int *seqs, const int32_t *tokens, int32_t n,
                                float *logits) {
    if (n <= 0 || n > c->p.n_batch)
        return moa_err(MOA_ERR_INVALID_ARG, "moa_ctx_decode_batch: %d sequences (expected 1..%d)", n, c->p.n_batch);
    MOA_TRY(check_tokens(c, tokens, n));
    return eval_rows(c, 0, seqs, tokens, n, logits ? MOA_LOGITS_ALL : MOA_LOGITS_NONE, logits);
}
