/* forward.c - the Llama forward pass on CPU: embeddings, RMSNorm, RoPE (GGUF adjacent-pair
 * pairing), GQA attention over the KV cache, SwiGLU, final norm and LM head. Projections use
 * BLAS for batches and the quantised kernels for single tokens. */
#include "context.h"
#include "moa-common.h"

#include <cblas.h>
#ifdef _OPENMP
#include <omp.h>
#endif
#include <math.h>
#include <stdlib.h>
#include <string.h>

struct moa_ctx {
    const moa_model *m;
    moa_ctx_params p;
    int32_t n_past;
    float *k_cache;        /* [n_layer][n_ctx][n_kv*hd]  keys after RoPE */
    float *v_cache;        /* [n_layer][n_ctx][n_kv*hd] */
    float *inv_freq;       /* [rope_dim/2]: base^(-2i/rope_dim) */
    /* scratch for a chunk of up to n_batch tokens */
    float *x;              /* [n_batch][n_embd] residual stream */
    float *h;              /* [n_batch][n_embd] normalised input */
    float *q;              /* [n_batch][n_head*hd] */
    float *k, *v;          /* [n_batch][n_kv*hd] */
    float *att;            /* [n_batch][n_head*hd] attention output */
    float *gate, *up;      /* [n_batch][n_ff] */
    float *scores;         /* [n_threads][n_batch][n_ctx] */
    int n_threads;
    double attn_seconds;
};

moa_ctx_params moa_ctx_default_params(void) {
    moa_ctx_params p = {0, 512};
    return p;
}

void moa_ctx_free(moa_ctx *c) {
    if (!c) return;
    float *bufs[] = {c->k_cache, c->v_cache, c->inv_freq, c->x, c->h, c->q, c->k, c->v,
                     c->att, c->gate, c->up, c->scores};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) moa_free_aligned(bufs[i]);
    free(c);
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
    if (c->p.n_batch > c->p.n_ctx) c->p.n_batch = c->p.n_ctx;
    int64_t n_ctx = c->p.n_ctx, nb = c->p.n_batch, hd = hp->head_dim;
    int64_t nkv = (int64_t)hp->n_head_kv * hd, nq = (int64_t)hp->n_head * hd;
    c->n_threads = 1;
#ifdef _OPENMP
    c->n_threads = omp_get_max_threads();
#endif
    size_t cache = (size_t)hp->n_layer * (size_t)n_ctx * (size_t)nkv;
    c->k_cache = moa_alloc_aligned(cache, sizeof(float));
    c->v_cache = moa_alloc_aligned(cache, sizeof(float));
    c->inv_freq = moa_alloc_aligned((size_t)hp->rope_dim / 2 + 1, sizeof(float));
    c->x = moa_alloc_aligned((size_t)(nb * hp->n_embd), sizeof(float));
    c->h = moa_alloc_aligned((size_t)(nb * hp->n_embd), sizeof(float));
    c->q = moa_alloc_aligned((size_t)(nb * nq), sizeof(float));
    c->k = moa_alloc_aligned((size_t)(nb * nkv), sizeof(float));
    c->v = moa_alloc_aligned((size_t)(nb * nkv), sizeof(float));
    c->att = moa_alloc_aligned((size_t)(nb * nq), sizeof(float));
    c->gate = moa_alloc_aligned((size_t)(nb * hp->n_ff), sizeof(float));
    c->up = moa_alloc_aligned((size_t)(nb * hp->n_ff), sizeof(float));
    c->scores = moa_alloc_aligned((size_t)c->n_threads * (size_t)nb * (size_t)n_ctx, sizeof(float));
    if (!c->k_cache || !c->v_cache || !c->inv_freq || !c->x || !c->h || !c->q || !c->k ||
        !c->v || !c->att || !c->gate || !c->up || !c->scores) {
        moa_ctx_free(c);
        return moa_err(MOA_ERR_NOMEM, "out of memory for a context of %lld tokens", (long long)n_ctx);
    }
    for (int i = 0; i < hp->rope_dim / 2; i++)
        c->inv_freq[i] = (float)pow((double)hp->rope_base, -2.0 * i / hp->rope_dim);
    *out = c;
    return MOA_OK;
}

void moa_ctx_reset(moa_ctx *c) { c->n_past = 0; }
int32_t moa_ctx_n_past(const moa_ctx *c) { return c->n_past; }
int32_t moa_ctx_n_ctx(const moa_ctx *c) { return c->p.n_ctx; }
const moa_model *moa_ctx_model(const moa_ctx *c) { return c->m; }
double moa_ctx_attn_seconds(moa_ctx *c, int reset) {
    double s = c->attn_seconds;
    if (reset) c->attn_seconds = 0;
    return s;
}

/* y = x / sqrt(mean(x^2) + eps) * w, for n rows of d. */
static void rmsnorm(const float *x, const float *w, float *y, int64_t n, int64_t d, float eps) {
    for (int64_t t = 0; t < n; t++) {
        const float *xr = x + t * d;
        float *yr = y + t * d;
        double ss = 0;
        for (int64_t i = 0; i < d; i++) ss += (double)xr[i] * xr[i];
        float r = (float)(1.0 / sqrt(ss / (double)d + eps));
        for (int64_t i = 0; i < d; i++) yr[i] = xr[i] * r * w[i];
    }
}

/* RoPE on adjacent pairs: (x[2i], x[2i+1]) rotated by pos * inv_freq[i], for every head of
 * every token row. */
static void rope(float *x, int64_t n, int n_heads, int hd, int rope_dim, const float *inv_freq,
                 int32_t pos0) {
    for (int64_t t = 0; t < n; t++) {
        float pos = (float)(pos0 + t);
        for (int i = 0; i < rope_dim / 2; i++) {
            float th = pos * inv_freq[i];
            float cs = cosf(th), sn = sinf(th);
            for (int h = 0; h < n_heads; h++) {
                float *p = x + (t * n_heads + h) * hd + 2 * i;
                float x0 = p[0], x1 = p[1];
                p[0] = x0 * cs - x1 * sn;
                p[1] = x0 * sn + x1 * cs;
            }
        }
    }
}

/* Dense causal GQA attention for n queries at positions pos0.., keys [0, pos0+n) in the
 * cache. att[t][h*hd..] = softmax(q k^T / sqrt(hd)) v. */
static void attention_dense(moa_ctx *c, int layer, int64_t n, int32_t pos0) {
    const moa_llama_hparams *hp = &c->m->hp;
    int hd = hp->head_dim, nh = hp->n_head, nkvh = hp->n_head_kv, group = nh / nkvh;
    int64_t nkv = (int64_t)nkvh * hd, nq = (int64_t)nh * hd;
    int64_t L = pos0 + n;
    const float *kc = c->k_cache + (size_t)layer * c->p.n_ctx * nkv;
    const float *vc = c->v_cache + (size_t)layer * c->p.n_ctx * nkv;
    float scale = 1.0f / sqrtf((float)hd);
    #pragma omp parallel for schedule(dynamic, 1)
    for (int h = 0; h < nh; h++) {
        int tid = 0;
#ifdef _OPENMP
        tid = omp_get_thread_num();
#endif
        float *S = c->scores + (size_t)tid * c->p.n_batch * c->p.n_ctx;   /* [n][L] */
        int kvh = h / group;
        /* S = scale * Q_h K^T */
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)n, (int)L, hd, scale,
                    c->q + h * hd, (int)nq, kc + kvh * hd, (int)nkv, 0.0f, S, (int)L);
        for (int64_t t = 0; t < n; t++) {
            float *row = S + t * L;
            int64_t last = pos0 + t;        /* causal: keys j <= pos0 + t */
            float mx = -INFINITY;
            for (int64_t j = 0; j <= last; j++) mx = row[j] > mx ? row[j] : mx;
            double sum = 0;
            for (int64_t j = 0; j <= last; j++) { row[j] = expf(row[j] - mx); sum += row[j]; }
            float inv = (float)(1.0 / sum);
            for (int64_t j = 0; j <= last; j++) row[j] *= inv;
            for (int64_t j = last + 1; j < L; j++) row[j] = 0.0f;
        }
        /* O_h = P V */
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)n, hd, (int)L, 1.0f, S, (int)L,
                    vc + kvh * hd, (int)nkv, 0.0f, c->att + h * hd, (int)nq);
    }
}

static moa_status eval_chunk(moa_ctx *c, const int32_t *tokens, int64_t n, moa_logits_mode mode,
                             float *logits) {
    const moa_model *m = c->m;
    const moa_llama_hparams *hp = &m->hp;
    int64_t d = hp->n_embd, hd = hp->head_dim, nff = hp->n_ff;
    int64_t nkv = (int64_t)hp->n_head_kv * hd;
    int32_t pos0 = c->n_past;
    size_t erb = moa_ggml_row_bytes(m->tok_embd.type, d);
    for (int64_t t = 0; t < n; t++)
        moa_dequant_row(m->tok_embd.type, (const uint8_t *)m->tok_embd.data + (size_t)tokens[t] * erb,
                        c->x + t * d, d);
    for (int l = 0; l < hp->n_layer; l++) {
        const moa_llama_layer *L = &m->layers[l];
        rmsnorm(c->x, L->attn_norm, c->h, n, d, hp->rms_eps);
        moa_weight_matmul(&L->wq, c->h, n, c->q);
        moa_weight_matmul(&L->wk, c->h, n, c->k);
        moa_weight_matmul(&L->wv, c->h, n, c->v);
        rope(c->q, n, hp->n_head, (int)hd, hp->rope_dim, c->inv_freq, pos0);
        rope(c->k, n, hp->n_head_kv, (int)hd, hp->rope_dim, c->inv_freq, pos0);
        float *kc = c->k_cache + ((size_t)l * c->p.n_ctx + pos0) * nkv;
        float *vc = c->v_cache + ((size_t)l * c->p.n_ctx + pos0) * nkv;
        memcpy(kc, c->k, (size_t)(n * nkv) * sizeof(float));
        memcpy(vc, c->v, (size_t)(n * nkv) * sizeof(float));
        double t0 = moa_time_now();
        attention_dense(c, l, n, pos0);
        c->attn_seconds += moa_time_now() - t0;
        /* x += att Wo^T (h reused as the projection output) */
        moa_weight_matmul(&L->wo, c->att, n, c->h);
        for (int64_t i = 0; i < n * d; i++) c->x[i] += c->h[i];
        rmsnorm(c->x, L->ffn_norm, c->h, n, d, hp->rms_eps);
        moa_weight_matmul(&L->w_gate, c->h, n, c->gate);
        moa_weight_matmul(&L->w_up, c->h, n, c->up);
        for (int64_t i = 0; i < n * nff; i++) {
            float g = c->gate[i];
            c->gate[i] = g / (1.0f + expf(-g)) * c->up[i];   /* silu(g) * u */
        }
        moa_weight_matmul(&L->w_down, c->gate, n, c->h);
        for (int64_t i = 0; i < n * d; i++) c->x[i] += c->h[i];
    }
    c->n_past += (int32_t)n;
    if (mode == MOA_LOGITS_NONE) return MOA_OK;
    if (mode == MOA_LOGITS_LAST) {
        rmsnorm(c->x + (n - 1) * d, m->output_norm, c->h, 1, d, hp->rms_eps);
        moa_weight_matmul(&m->output, c->h, 1, logits);
    } else {
        rmsnorm(c->x, m->output_norm, c->h, n, d, hp->rms_eps);
        moa_weight_matmul(&m->output, c->h, n, logits);
    }
    return MOA_OK;
}

moa_status moa_ctx_eval(moa_ctx *c, const int32_t *tokens, int32_t n, moa_logits_mode mode,
                        float *logits) {
    if (n <= 0) return moa_err(MOA_ERR_INVALID_ARG, "moa_ctx_eval: no tokens");
    if ((int64_t)c->n_past + n > c->p.n_ctx)
        return moa_err(MOA_ERR_RANGE, "context full: %d + %d tokens exceed n_ctx %d", c->n_past, n, c->p.n_ctx);
    for (int32_t i = 0; i < n; i++)
        if (tokens[i] < 0 || tokens[i] >= c->m->hp.n_vocab)
            return moa_err(MOA_ERR_INVALID_ARG, "token id %d at index %d is outside the vocabulary (0..%d)",
                           tokens[i], i, c->m->hp.n_vocab - 1);
    int64_t nv = c->m->hp.n_vocab;
    for (int32_t done = 0; done < n;) {
        int32_t k = n - done < c->p.n_batch ? n - done : c->p.n_batch;
        int last_chunk = done + k == n;
        moa_logits_mode cm = mode == MOA_LOGITS_ALL ? MOA_LOGITS_ALL
                           : (last_chunk ? mode : MOA_LOGITS_NONE);
        float *lg = mode == MOA_LOGITS_ALL ? logits + (size_t)done * nv : logits;
        MOA_TRY(eval_chunk(c, tokens + done, k, cm, lg));
        done += k;
    }
    return MOA_OK;
}
