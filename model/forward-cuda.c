/* forward-cuda.c - the forward pass of the Llama-family architectures (arch.h) on a CUDA
 * device, the twin of forward.c's eval_rows over the building blocks of kernels/cuda
 * (moa-cuda.h): embedding rows, RMSNorm, cuBLAS projections on weights dequantised once to
 * f16/bf16 (activations rounded to the same type, f32 accumulation, + the q/k/v biases in
 * f32 where the architecture has them), the device runtime cache (RoPE in the model's
 * pairing, sinks, rings, dense and linear units, batched decode), SwiGLU, residual adds,
 * final norm and LM head.
 *
 * Memory (all device unless noted). Shared by the model's contexts on the device
 * (weights-cuda.c, uploaded by the first one, freed with the model):
 *   weights   7 per layer + LM head, [n_out][n_in] of f16/bf16 (moa_cuda_weight_upload),
 *             q/k/v biases f32 [n_out] where the model has them
 *   embd      the token table's raw ggml rows [n_vocab] (every type quant.c reads; a type
 *             without a device decoder (none today; tests force it): rows dequantised on
 *             the host into xh and uploaded per call)
 *   norms     f32 [2 n_layer + 1][n_embd]: attn_norm l at 2l, ffn_norm l at 2l+1, output
 * Per context:
 *   cache     the runtime's moa_cache on MOA_CACHE_DEVICE_CUDA (runtime.h; K, V per unit in
 *             the context's kv_type, linear states f32) sized by the plan, on this engine's
 *             device context (lent: its kernels queue on the engine's stream)
 *   scratch   f32 x, h [nb][d]; q, att [nb][n_head hd]; k, v [nb][n_kv hd]; gate, up
 *             [nb][n_ff]; hx [nb][max(d, n_head hd, n_ff)] in the weight type (GEMM input);
 *             lg [LG_ROWS][n_vocab] (LM head rows per download); tok int32 [nb]
 * Per call: tokens up (4 B each), logits down (4 n_vocab B per requested row); decode also
 * uploads each row's sequence and position (the cache does, per layer). */
#include "forward-cuda.h"
#include "weights-cuda.h"
#include "moa-cuda.h"
#include "moa-common.h"

#include <stdlib.h>
#include <string.h>

enum { N_LW = MOA_MODEL_CUDA_LW };   /* weights per layer: q k v o gate up down */
enum { LG_ROWS = 64 };    /* LM-head rows per device buffer and download */

struct moa_device_engine {   /* moa_engine_cuda */
    moa_cuda_ctx *cx;
    const moa_model *m;
    moa_cuda_dtype dt;
    moa_model_cuda *wc;    /* the model's shared device weights (weights-cuda.h) */
    const moa_cuda_weight *w;   /* wc->w: [n_layer][N_LW] */
    const moa_cuda_weight *out; /* &wc->out: [n_vocab][n_embd] */
    const float *norms;    /* wc->norms: [2 n_layer + 1][n_embd] */
    const void *embd;      /* wc->embd: raw token table, or NULL (host embedding through xh) */
    moa_cache *cache;      /* on MOA_CACHE_DEVICE_CUDA, lent cx */
    int64_t nb;            /* rows per call */
    float *x, *h, *q, *k, *v, *att, *gate, *up, *lg;
    float *ksmooth;        /* key smoothing scales [n_layer][n_kv*hd] (key-smooth.h) or NULL */
    void *hx;
    int32_t *tok;
    float *xh;             /* host [nb][n_embd] (host embedding only) */
};

int moa_engine_cuda_device_count(void) { return moa_cuda_device_count(); }

void moa_engine_cuda_free(moa_engine_cuda *e) {
    if (!e) return;
    moa_cuda_ctx *cx = e->cx;
    if (cx) {
        void *bufs[] = {e->x, e->h, e->q, e->k, e->v, e->att, e->gate, e->up, e->lg, e->hx, e->tok, e->ksmooth};
        for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) moa_cuda_free(cx, bufs[i]);
        moa_cache_free(e->cache);   /* before the context it borrows */
        moa_cuda_ctx_free(cx);
    }
    moa_model_cuda_release(e->m, e->wc);
    free(e->xh);
    free(e);
}

moa_status moa_engine_cuda_create(const moa_model *m, const moa_cache_layout *L,
                                  const moa_cache_params *cp, int64_t n_ctx, int n_seq,
                                  int n_batch, int device, int bf16, const float *ksmooth,
                                  moa_engine_cuda **out) {
    *out = NULL;
    const moa_llama_hparams *hp = &m->hp;
    moa_engine_cuda *e = calloc(1, sizeof *e);
    if (!e) return moa_err(MOA_ERR_NOMEM, "out of memory");
    e->m = m;
    e->dt = bf16 ? MOA_CUDA_BF16 : MOA_CUDA_F16;
    e->nb = n_batch;
    moa_status st = moa_cuda_ctx_create(device, &e->cx);
    if (st < 0) { free(e); return st; }
    const double t0 = moa_time_now();
    const int64_t d = hp->n_embd, nb = n_batch, hd = hp->head_dim;
    const int64_t nq = (int64_t)hp->n_head * hd, nkv = (int64_t)hp->n_head_kv * hd, nff = hp->n_ff;
    /* weights, norms and the token table: the model's shared copy (uploaded by the first
     * context or profiler on this device) */
    st = moa_model_cuda_acquire(m, e->cx, device, e->dt, &e->wc);
    if (st == MOA_OK) {
        e->w = e->wc->w;
        e->out = &e->wc->out;
        e->norms = e->wc->norms;
        e->embd = e->wc->embd;
        if (!e->embd && !(e->xh = moa_alloc_array((size_t)(nb * d), sizeof(float))))
            st = moa_err(MOA_ERR_NOMEM, "out of memory");
    }
    /* cache: the runtime's, on this device and stream */
    if (st == MOA_OK) {
        moa_cache_params P = *cp;
        P.device = MOA_CACHE_DEVICE_CUDA;
        P.device_index = device;
        P.device_ctx = e->cx;
        st = moa_cache_create_layout(L, n_ctx, n_seq, &P, &e->cache);
    }
    /* scratch */
    const int64_t hxw = d > nq ? (d > nff ? d : nff) : (nq > nff ? nq : nff);
    const int64_t lgr = nb < LG_ROWS ? nb : LG_ROWS;
    struct { void **p; size_t bytes; } sc[] = {
        {(void **)&e->x, sizeof(float) * (size_t)(nb * d)}, {(void **)&e->h, sizeof(float) * (size_t)(nb * d)},
        {(void **)&e->q, sizeof(float) * (size_t)(nb * nq)}, {(void **)&e->att, sizeof(float) * (size_t)(nb * nq)},
        {(void **)&e->k, sizeof(float) * (size_t)(nb * nkv)}, {(void **)&e->v, sizeof(float) * (size_t)(nb * nkv)},
        {(void **)&e->gate, sizeof(float) * (size_t)(nb * nff)}, {(void **)&e->up, sizeof(float) * (size_t)(nb * nff)},
        {(void **)&e->lg, sizeof(float) * (size_t)(lgr * hp->n_vocab)}, {&e->hx, 2 * (size_t)(nb * hxw)},
        {(void **)&e->tok, sizeof(int32_t) * (size_t)nb}};
    for (size_t i = 0; i < sizeof sc / sizeof sc[0] && st == MOA_OK; i++)
        st = moa_cuda_alloc(e->cx, sc[i].bytes, sc[i].p);
    if (st == MOA_OK && ksmooth) {
        const size_t kb = sizeof(float) * (size_t)hp->n_layer * (size_t)nkv;
        st = moa_cuda_alloc(e->cx, kb, (void **)&e->ksmooth);
        if (st == MOA_OK) st = moa_cuda_upload(e->cx, e->ksmooth, ksmooth, kb);
    }
    if (st < 0) {
        moa_engine_cuda_free(e);
        return st;
    }
    moa_log_info("cuda engine: %s, weights %.1f MiB as %s (shared), KV cache %.1f MiB (%s) for %d "
                 "sequence(s) of %lld tokens (%.2f s)", moa_cuda_ctx_describe(e->cx),
                 e->wc->bytes / 1048576.0, bf16 ? "bf16" : "f16",
                 moa_cache_bytes(e->cache) / 1048576.0, moa_kv_type_name(cp->type_k), n_seq,
                 (long long)n_ctx,
                 moa_time_now() - t0);
    *out = e;
    return MOA_OK;
}

/* h = rmsnorm(x rows) -> hx (weight type) -> y = hx W^T */
static moa_status norm_proj(moa_engine_cuda *e, const float *x, const float *nw, int64_t n) {
    const int64_t d = e->m->hp.n_embd;
    MOA_TRY(moa_cuda_rmsnorm(e->cx, x, nw, e->h, n, d, e->m->hp.rms_eps));
    return moa_cuda_convert(e->cx, e->h, n * d, e->hx, e->dt);
}

moa_status moa_engine_cuda_rows(moa_engine_cuda *e, int seq, const int *seqs,
                                const int32_t *tokens, int64_t n, moa_logits_mode mode,
                                float *logits) {
    const moa_model *m = e->m;
    const moa_llama_hparams *hp = &m->hp;
    moa_cuda_ctx *cx = e->cx;
    const int64_t d = hp->n_embd, nff = hp->n_ff, nq = (int64_t)hp->n_head * hp->head_dim;
    if (n < 1 || n > e->nb)
        return moa_err(MOA_ERR_INVALID_ARG, "cuda engine: %lld rows (1..%lld per call)", (long long)n, (long long)e->nb);
    /* x = embedding rows (exact dequantised values, as the CPU) */
    if (e->embd) {
        MOA_TRY(moa_cuda_upload(cx, e->tok, tokens, sizeof(int32_t) * (size_t)n));
        MOA_TRY(moa_cuda_embed(cx, m->tok_embd.type, e->embd, d, e->tok, n, e->x));
    } else {
        const size_t erb = moa_ggml_row_bytes(m->tok_embd.type, d);
        for (int64_t t = 0; t < n; t++)
            moa_dequant_row(m->tok_embd.type, (const uint8_t *)m->tok_embd.data + (size_t)tokens[t] * erb,
                            e->xh + t * d, d);
        MOA_TRY(moa_cuda_upload(cx, e->x, e->xh, sizeof(float) * (size_t)(n * d)));
    }
    for (int l = 0; l < hp->n_layer; l++) {
        const moa_cuda_weight *W = &e->w[l * N_LW];
        MOA_TRY(norm_proj(e, e->x, e->norms + (size_t)(2 * l) * d, n));
        MOA_TRY(moa_cuda_matmul(cx, &W[0], e->hx, n, e->q));
        MOA_TRY(moa_cuda_matmul(cx, &W[1], e->hx, n, e->k));
        MOA_TRY(moa_cuda_matmul(cx, &W[2], e->hx, n, e->v));
        if (e->ksmooth)
            MOA_TRY(moa_cuda_key_smooth(cx, e->q, e->k, e->ksmooth + (size_t)l * hp->n_head_kv * hp->head_dim, n,
                                        hp->n_head, hp->n_head_kv, hp->head_dim));
        /* attention through the device cache: RoPE, append, banded/dense/linear kernels */
        MOA_TRY(seqs ? moa_attn_decode(e->cache, l, seqs, (int)n, e->q, e->k, e->v, e->att)
                     : moa_attn_prefill(e->cache, seq, l, e->q, e->k, e->v, (int)n, e->att));
        /* x += att Wo^T */
        MOA_TRY(moa_cuda_convert(cx, e->att, n * nq, e->hx, e->dt));
        MOA_TRY(moa_cuda_matmul(cx, &W[3], e->hx, n, e->h));
        MOA_TRY(moa_cuda_add(cx, e->x, e->h, n * d));
        /* x += (silu(h Wg^T) * (h Wu^T)) Wd^T, h = rmsnorm(x) */
        MOA_TRY(norm_proj(e, e->x, e->norms + (size_t)(2 * l + 1) * d, n));
        MOA_TRY(moa_cuda_matmul(cx, &W[4], e->hx, n, e->gate));
        MOA_TRY(moa_cuda_matmul(cx, &W[5], e->hx, n, e->up));
        MOA_TRY(moa_cuda_swiglu(cx, e->gate, e->up, n * nff));
        MOA_TRY(moa_cuda_convert(cx, e->gate, n * nff, e->hx, e->dt));
        MOA_TRY(moa_cuda_matmul(cx, &W[6], e->hx, n, e->h));
        MOA_TRY(moa_cuda_add(cx, e->x, e->h, n * d));
    }
    if (mode == MOA_LOGITS_NONE) return moa_cuda_sync(cx);
    /* final norm + LM head, LG_ROWS rows at a time, each downloaded to the caller's buffer */
    const int64_t r0 = mode == MOA_LOGITS_LAST ? n - 1 : 0, nv = hp->n_vocab;
    const float *onorm = e->norms + (size_t)(2 * hp->n_layer) * d;
    for (int64_t r = r0; r < n; r += LG_ROWS) {
        const int64_t c = n - r < LG_ROWS ? n - r : LG_ROWS;
        MOA_TRY(norm_proj(e, e->x + r * d, onorm, c));
        MOA_TRY(moa_cuda_matmul(cx, e->out, e->hx, c, e->lg));
        MOA_TRY(moa_cuda_download(cx, logits + (r - r0) * nv, e->lg, sizeof(float) * (size_t)(c * nv)));
    }
    return MOA_OK;
}

moa_status moa_engine_cuda_reset(moa_engine_cuda *e, int seq) {
    MOA_TRY(moa_cache_reset(e->cache, seq));
    return moa_cuda_sync(e->cx);
}
int64_t moa_engine_cuda_pos(const moa_engine_cuda *e, int seq, int layer) {
    return moa_cache_pos(e->cache, seq, layer);
}
size_t moa_engine_cuda_kv_bytes(const moa_engine_cuda *e) { return moa_cache_bytes(e->cache); }

static const moa_device_engine_ops cuda_ops = {
    .name = "cuda",
    .device_count = moa_engine_cuda_device_count,
    .create = moa_engine_cuda_create,
    .free_engine = moa_engine_cuda_free,
    .rows = moa_engine_cuda_rows,
    .reset = moa_engine_cuda_reset,
    .pos = moa_engine_cuda_pos,
    .kv_bytes = moa_engine_cuda_kv_bytes,
    .release_model = moa_model_cuda_free_all,
};

const moa_device_engine_ops *moa_device_engine_get(moa_device_kind kind) {
    return kind == MOA_DEVICE_CUDA ? &cuda_ops : NULL;
}
