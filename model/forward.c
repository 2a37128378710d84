/* forward.c - the forward pass of the Llama-family architectures (arch.h), written once over a
 * backend table (moa/backend.h) and run on the device the context chose at run time:
 * embeddings, RMSNorm, projections (+ q/k/v biases where the architecture has them), key
 * smoothing, attention through the runtime (runtime/: RoPE in the architecture's pairing,
 * per-head caches of a plan or dense, banded/dense/linear kernels, GQA native) on the cache of
 * the backend's device, SwiGLU, residual adds, final norm and LM head.
 * On the CPU the table is moa_backend_cpu() and the weights are the model's (projections: the
 * packed int8 / quantised kernels or BLAS, kernels/cpu/weight.c); on another device both come
 * from its device-engine.h table (CUDA: forward-cuda.c, quantised weights kept as raw blocks,
 * the others dequantised once to f16/bf16).
 * The chunking by n_batch, the token checks and the logits modes are here, for every device. */
#include "moa/model.h"
#include "key-smooth.h"
#include "moa/common.h"
#include "device-engine.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

struct moa_ctx {
    const moa_model *m;
    moa_ctx_params p;
    moa_cache *cache;      /* per-layer, per-KV-head caches (runtime/) on the backend's device;
                              RoPE applied there */
    /* scratch for a chunk of up to n_batch tokens, in the backend's memory (be.alloc) */
    float *x;              /* [n_batch][n_embd] residual stream */
    float *h;              /* [n_batch][n_embd] normalised input */
    float *q;              /* [n_batch][n_head*hd]  (before RoPE) */
    float *k, *v;          /* [n_batch][n_kv*hd]    (k before RoPE) */
    float *att;            /* [n_batch][n_head*hd] attention output */
    float *gate, *up;      /* [n_batch][n_ff] */
    float *ksmooth;        /* key smoothing scales [n_layer][n_kv*hd] (key-smooth.h), backend
                              memory, or NULL */
    double attn_seconds;
    int time_attn;         /* 1: ops complete on return (the CPU), so attention can be timed */
    moa_device_kind device;   /* MOA_DEVICE_CPU or MOA_DEVICE_CUDA */
    moa_backend be;        /* every op of the forward pass */
    moa_engine_weights w;  /* the model's weights as handles of be (device-engine.h) */
    const moa_device_engine_ops *dev_ops;   /* not the CPU: the device (device-engine.h) */
    moa_device_engine *dev;   /* its state: device context, the model's device weights */
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
    if (c->be.free) {
        float *bufs[] = {c->x, c->h, c->q, c->k, c->v, c->att, c->gate, c->up, c->ksmooth};
        for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) c->be.free(c->be.ctx, bufs[i]);
    }
    moa_cache_free(c->cache);   /* before the device context it borrows */
    if (c->dev) c->dev_ops->close(c->dev);
    free(c->w.layers);
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

/* The backend and the weights as its handles: the CPU's, or the chosen device's. */
static moa_status open_backend(moa_ctx *c) {
    const moa_model *m = c->m;
    const moa_llama_hparams *hp = &m->hp;
    if (!(c->w.layers = calloc((size_t)hp->n_layer, sizeof *c->w.layers)))
        return moa_err(MOA_ERR_NOMEM, "out of memory");
    if (c->device != MOA_DEVICE_CPU) {
        if (!(c->dev_ops = moa_device_engine_get(c->device)))
            return moa_err(MOA_ERR_DEVICE, "moa_ctx_create: this build has no CUDA backend (configure "
                           "with -DMOA_CUDA=ON on a machine with the CUDA toolkit); use the CPU device");
        return c->dev_ops->open(m, c->p.device_index, c->p.device_bf16, &c->be, &c->w, &c->dev);
    }
    c->be = moa_backend_cpu();
    c->time_attn = 1;
    for (int l = 0; l < hp->n_layer; l++) {
        const moa_llama_layer *L = &m->layers[l];
        c->w.layers[l] = (moa_engine_layer){L->attn_norm, L->ffn_norm,
                                            {&L->wq, &L->wk, &L->wv, &L->wo, &L->w_gate, &L->w_up, &L->w_down}};
    }
    c->w.out = &m->output;
    c->w.output_norm = m->output_norm;
    c->w.embd = (moa_backend_embd){(int)m->tok_embd.type, hp->n_embd, m->tok_embd.data, m->tok_embd.data};
    return MOA_OK;
}

/* The cache (on the backend's device, borrowing its context) and the scratch. */
static moa_status create_state(moa_ctx *c, moa_cache_params cp, const float *ksmooth) {
    const moa_llama_hparams *hp = &c->m->hp;
    const moa_backend *be = &c->be;
    if (c->dev) {
        cp.device = c->dev_ops->cache_device;
        cp.device_index = c->p.device_index;
        cp.device_ctx = be->ctx;
    }
    if (c->p.plan) {
        MOA_TRY(moa_cache_create(c->p.plan, c->p.n_ctx, c->p.n_seq, &cp, &c->cache));
    } else {
        moa_cache_unit *units = dense_units(hp, c->p.n_ctx);
        if (!units) return moa_err(MOA_ERR_NOMEM, "out of memory");
        moa_cache_layout L = {hp->n_layer, hp->n_head, hp->n_head_kv, hp->head_dim, units, NULL};
        moa_status st = moa_cache_create_layout(&L, c->p.n_ctx, c->p.n_seq, &cp, &c->cache);
        free(units);
        MOA_TRY(st);
    }
    const size_t nb = (size_t)c->p.n_batch, hd = (size_t)hp->head_dim, f = sizeof(float);
    const size_t d = (size_t)hp->n_embd, nq = hp->n_head * hd, nkv = hp->n_head_kv * hd, nff = (size_t)hp->n_ff;
    struct { float **p; size_t bytes; } sc[] = {
        {&c->x, f * nb * d}, {&c->h, f * nb * d}, {&c->q, f * nb * nq}, {&c->k, f * nb * nkv},
        {&c->v, f * nb * nkv}, {&c->att, f * nb * nq}, {&c->gate, f * nb * nff}, {&c->up, f * nb * nff}};
    for (size_t i = 0; i < sizeof sc / sizeof sc[0]; i++) {
        moa_status st = be->alloc(be->ctx, sc[i].bytes, (void **)sc[i].p);
        if (st < 0)
            return st == MOA_ERR_NOMEM ? moa_err(st, "out of memory for a batch of %lld tokens", (long long)nb) : st;
    }
    if (ksmooth) {
        const size_t kb = f * (size_t)hp->n_layer * nkv;
        MOA_TRY(be->alloc(be->ctx, kb, (void **)&c->ksmooth));
        MOA_TRY(be->upload(be->ctx, c->ksmooth, ksmooth, kb));
        MOA_TRY(be->sync(be->ctx));   /* before the host copy goes */
    }
    return MOA_OK;
}

moa_status moa_ctx_create(const moa_model *m, const moa_ctx_params *pp, moa_ctx **out) {
    *out = NULL;
    moa_ctx *c = calloc(1, sizeof *c);
    if (!c) return moa_err(MOA_ERR_NOMEM, "out of memory");
    c->m = m;
    c->p = pp ? *pp : moa_ctx_default_params();
    const moa_llama_hparams *hp = &m->hp;
    if (c->p.n_ctx <= 0) c->p.n_ctx = hp->n_ctx_train;
    if (c->p.n_batch <= 0) c->p.n_batch = 512;
    if (c->p.n_seq <= 0) c->p.n_seq = 1;
    if (c->p.n_batch > c->p.n_ctx && c->p.n_ctx >= c->p.n_seq) c->p.n_batch = c->p.n_ctx;
    if (c->p.n_batch < c->p.n_seq) c->p.n_batch = c->p.n_seq;
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
    float *ksmooth = NULL;
    if (c->p.kv_type == MOA_KV_Q8_0 && !c->p.no_key_smooth && (st = moa_key_smooth_scales(m, &ksmooth)) < 0) {
        moa_ctx_free(c);
        return st;
    }
    st = open_backend(c);
    if (st == MOA_OK) st = create_state(c, cp, ksmooth);
    free(ksmooth);
    c->p.plan = NULL;   /* not kept */
    if (st < 0) {
        moa_ctx_free(c);
        return st;
    }
    *out = c;
    return MOA_OK;
}

void moa_ctx_reset(moa_ctx *c) {
    if (moa_cache_reset(c->cache, -1) < 0 || c->be.sync(c->be.ctx) < 0)
        moa_log_warn("moa_ctx_reset: %s", moa_last_error());
}
int32_t moa_ctx_n_past(const moa_ctx *c) { return moa_ctx_seq_pos(c, 0); }
int32_t moa_ctx_seq_pos(const moa_ctx *c, int seq) { return (int32_t)moa_cache_pos(c->cache, seq, 0); }
int32_t moa_ctx_n_ctx(const moa_ctx *c) { return c->p.n_ctx; }
size_t moa_ctx_kv_bytes(const moa_ctx *c) { return moa_cache_bytes(c->cache); }
const moa_model *moa_ctx_model(const moa_ctx *c) { return c->m; }
double moa_ctx_attn_seconds(moa_ctx *c, int reset) {
    double s = c->attn_seconds;
    if (reset) c->attn_seconds = 0;
    return s;
}

/* The forward pass over n rows, on the context's backend. seqs == NULL: rows are consecutive
 * tokens of sequence `seq` (prefill chunk); else row i is one token of sequence seqs[i]
 * (batched decode). Logits per mode into host `logits`. Returns once the backend's work is
 * done (a device's queued errors are reported by the call that queued them). */
static moa_status eval_rows(moa_ctx *c, int seq, const int *seqs, const int32_t *tokens, int64_t n,
                            moa_logits_mode mode, float *logits) {
    const moa_llama_hparams *hp = &c->m->hp;
    const moa_backend *be = &c->be;
    void *bc = be->ctx;
    int64_t d = hp->n_embd, nff = hp->n_ff;
    MOA_TRY(be->embed(bc, &c->w.embd, tokens, n, c->x));   /* exact dequantised rows */
    for (int l = 0; l < hp->n_layer; l++) {
        const moa_engine_layer *L = &c->w.layers[l];
        /* q, k, v = rmsnorm(x) Wq^T, Wk^T, Wv^T (one pass over h) */
        MOA_TRY(be->rmsnorm(bc, c->x, L->attn_norm, c->h, n, d, hp->rms_eps));
        float *const qkv[3] = {c->q, c->k, c->v};
        MOA_TRY(be->matmul(bc, &L->w[0], 3, c->h, n, qkv));
        if (c->ksmooth)
            MOA_TRY(be->key_smooth(bc, c->q, c->k, c->ksmooth + (size_t)l * hp->n_head_kv * hp->head_dim,
                                   n, hp->n_head, hp->n_head_kv, hp->head_dim));
        /* attention through the runtime: RoPE, cache append, banded/dense/linear kernels */
        double t0 = c->time_attn ? moa_time_now() : 0;
        moa_status st = seqs ? moa_attn_decode(c->cache, l, seqs, (int)n, c->q, c->k, c->v, c->att)
                             : moa_attn_prefill(c->cache, seq, l, c->q, c->k, c->v, (int)n, c->att);
        if (c->time_attn) c->attn_seconds += moa_time_now() - t0;
        if (st < 0) return st;
        /* x += att Wo^T (h reused as the projection output) */
        MOA_TRY(be->matmul(bc, &L->w[3], 1, c->att, n, &c->h));
        MOA_TRY(be->add(bc, c->x, c->h, n * d));
        /* x += (silu(h Wg^T) * (h Wu^T)) Wd^T, h = rmsnorm(x) */
        MOA_TRY(be->rmsnorm(bc, c->x, L->ffn_norm, c->h, n, d, hp->rms_eps));
        float *const gu[2] = {c->gate, c->up};
        MOA_TRY(be->matmul(bc, &L->w[4], 2, c->h, n, gu));
        MOA_TRY(be->swiglu(bc, c->gate, c->up, n * nff));
        MOA_TRY(be->matmul(bc, &L->w[6], 1, c->gate, n, &c->h));
        MOA_TRY(be->add(bc, c->x, c->h, n * d));
    }
    if (mode == MOA_LOGITS_NONE) return be->sync(bc);
    /* final norm + LM head into the caller's host logits */
    const int64_t r0 = mode == MOA_LOGITS_LAST ? n - 1 : 0;
    MOA_TRY(be->rmsnorm(bc, c->x + r0 * d, c->w.output_norm, c->h, n - r0, d, hp->rms_eps));
    return be->matmul_to_host(bc, c->w.out, c->h, n - r0, logits);
}

static moa_status check_tokens(const moa_ctx *c, const int32_t *tokens, int32_t n) {
    for (int32_t i = 0; i < n; i++)
        if (tokens[i] < 0 || tokens[i] >= c->m->hp.n_vocab)
            return moa_err(MOA_ERR_INVALID_ARG, "token id %d at index %d is outside the vocabulary (0..%d)",
                           tokens[i], i, c->m->hp.n_vocab - 1);
    return MOA_OK;
}

/* Everything the context keeps per sequence is in its cache (rows, linear states, positions:
 * moa_ctx_seq_pos reads them there), on the backend's device; the copy is queued on the
 * backend's stream and complete on return, as moa_ctx_reset. */
moa_status moa_ctx_seq_copy(moa_ctx *c, int src, int dst) {
    MOA_TRY(moa_cache_seq_copy(c->cache, src, dst));
    return c->be.sync(c->be.ctx);
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
