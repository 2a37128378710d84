/* backward.c - forward pass with saved layer inputs, response loss, and the activation-only
 * backward pass through every layer, with the fused attention backward accumulating the
 * influence histograms. The activations the backward reads (q, k, v, o, lse, xm, g, u) are
 * kept from the forward for the last layers that fit the activation store
 * (moa_profiler_params.act_budget_bytes); the other layers are recomputed from their input
 * by the same code on the same input, so the results do not depend on the budget.
 *
 * Per layer (x: layer input, rows are tokens):
 *   h1 = rmsnorm(x) * an;  q, k, v = h1 Wq^T + bq, h1 Wk^T + bk, h1 Wv^T + bv (biases where
 *   the architecture has them: they do not change the activation backward);
 *   q, k = rope(q), rope(k) (in the architecture's pairing)
 *   o  = softmax(q k^T / sqrt(hd) + causal) v       (GQA)
 *   xm = x + o Wo^T;  h2 = rmsnorm(xm) * fn;  g, u = h2 Wg^T, h2 Wu^T;  a = silu(g) * u
 *   y  = xm + a Wd^T
 * Backward (dy given): da = dy Wd;  dg = da * u * silu'(g);  du = da * silu(g);
 *   dxm = dy + rmsnorm_bwd(xm, fn, dg Wg + du Wu);  do = dxm Wo;  (dq, dk, dv) = attn_bwd;
 *   dq, dk = rope^-1(dq), rope^-1(dk);  dx = dxm + rmsnorm_bwd(x, an, dq Wq + dk Wk + dv Wv)
 * rmsnorm_bwd: y = x r w with r = (mean(x^2) + eps)^-1/2:  dx = r (w dy) - x r^3 mean(x w dy).
 * On the CPU every op but the projections (OpenBLAS) and RoPE goes through the CPU backend
 * table (kernels/moa-backend.h), the op vocabulary of the CUDA sample (backward-cuda.c); RoPE
 * keeps its precomputed table (moa_rope_rows: the same rotation, without a cos/sin per row).
 */
#include "moa/profiler.h"
#include "attn-train.h"
#include "moa/model.h"             /* moa_ctx_default_params, moa_ctx_cuda_available */
#include "rope.h"
#include "moa-common.h"
#include "profiler-internal.h"
#include "profiler-device.h"

#include <cblas.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* The activations of one layer that its backward reads; the forward writes them. h1, h2 and
 * a = silu(g) * u are forward-only (the backward recomputes silu(g) from g). */
typedef struct {
    float *q, *o;     /* [n][nq] (q rotated) */
    float *k, *v;     /* [n][nkv] (k rotated) */
    float *lse;       /* [n_head][n] */
    float *xm;        /* [n][d] */
    float *g, *u;     /* [n][ff]; the backward overwrites them with dg, du */
} layer_act;

struct moa_profiler {
    const moa_model *m;
    moa_profiler_params p;
    int64_t n_max;
    moa_device_kind device;       /* CPU or CUDA */
    const moa_profiler_device_ops *dev_ops;   /* not the CPU: the device's backend (profiler-device.h) */
    moa_profiler_dev *dev;     /* its state: the sample runs there; the CPU scratch is unused */
    moa_backend be;               /* the CPU backend: every op of the CPU sample but GEMM, RoPE */
    moa_rope_table rope;
    double *row_loss;             /* [n_max] per response row (xent_grad) */
    float *xs;     /* [n_layer+1][n_max][d] layer inputs (xs[L] = final hidden state) */
    float *h1, *h2, *xm, *dxm, *dh;              /* [n_max][d] */
    float *q, *o, *dq, *dO;                      /* [n_max][nq] */
    float *k, *v, *dk, *dv;                      /* [n_max][nkv] */
    float *lse;                                  /* [n_head][n_max] */
    float *g, *u, *a, *da;                       /* [n_max][ff] */
    float *logits;                               /* [n_max][vocab] response rows */
    float *act;    /* activation store, act_bytes: per sample of n tokens, layer_act of the
                      last act_kept(n) layers, each array rounded up to 64 bytes */
    size_t act_bytes;
};

/* Floats of the 8 arrays of one layer_act for n tokens (layer_act order), each rounded up
 * to 16 floats (64 bytes); returns their sum. */
static size_t act_sizes(const moa_llama_hparams *hp, int64_t n, size_t sz[8]) {
    size_t N = (size_t)n, nq = (size_t)hp->n_head * hp->head_dim;
    size_t nkv = (size_t)hp->n_head_kv * hp->head_dim, total = 0;
    size_t raw[8] = {N * nq, N * nq, N * nkv, N * nkv, (size_t)hp->n_head * N,
                     N * (size_t)hp->n_embd, N * (size_t)hp->n_ff, N * (size_t)hp->n_ff};
    for (int i = 0; i < 8; i++) total += sz[i] = (raw[i] + 15) & ~(size_t)15;
    return total;
}

static size_t act_layer_floats(const moa_llama_hparams *hp, int64_t n) {
    size_t sz[8];
    return act_sizes(hp, n, sz);
}

static int act_kept(const moa_profiler *p, int64_t n) {
    size_t per = act_layer_floats(&p->m->hp, n) * sizeof(float), k = p->act_bytes / per;
    return k < (size_t)p->m->hp.n_layer ? (int)k : p->m->hp.n_layer;
}

int moa_profiler_kept_layers(const moa_profiler *p, int64_t n) {
    return p->device == MOA_DEVICE_CPU && n >= 1 && n <= p->n_max ? act_kept(p, n) : 0;
}

/* Where layer l of an n-token sample keeps its activations: its slot in the store if it is
 * one of the last act_kept(n) layers (*kept = 1), else the scratch (*kept = 0). */
static layer_act act_of(moa_profiler *p, int l, int64_t n, int *kept) {
    const moa_llama_hparams *hp = &p->m->hp;
    int first = hp->n_layer - act_kept(p, n);
    layer_act a = {p->q, p->o, p->k, p->v, p->lse, p->xm, p->g, p->u};
    *kept = l >= first;
    if (!*kept) return a;
    size_t sz[8];
    float **dst[8] = {&a.q, &a.o, &a.k, &a.v, &a.lse, &a.xm, &a.g, &a.u};
    float *at = p->act + (size_t)(l - first) * act_sizes(hp, n, sz);
    for (int i = 0; i < 8; i++) {
        *dst[i] = at;
        at += sz[i];
    }
    return a;
}

/* MOA_PROFILER_ACT_BUDGET: bytes with an optional K/M/G/T suffix (powers of 1024), or "max".
 * Returns 0 and leaves *out if unset or unparsable (with a warning). */
static int act_budget_env(size_t *out) {
    const char *e = getenv("MOA_PROFILER_ACT_BUDGET");
    if (!e || !*e) return 0;
    if (moa_parse_bytes(e, out) < 0) {
        moa_log_warn("MOA_PROFILER_ACT_BUDGET='%s' is not a byte count (e.g. 3G, 0, max); ignored", e);
        return 0;
    }
    return 1;
}

/* A quarter of physical memory (1 GiB if unknown). */
static size_t act_budget_default(void) {
    size_t b;
    if (act_budget_env(&b)) return b;
    long pages = sysconf(_SC_PHYS_PAGES), psz = sysconf(_SC_PAGESIZE);
    if (pages <= 0 || psz <= 0) return (size_t)1 << 30;
    return (size_t)pages / 4 * (size_t)psz;
}

moa_profiler_params moa_profiler_default_params(void) {
    moa_profiler_params p = {64, 64, 1e-6f, moa_ctx_default_params().device, 0, 0,
                             act_budget_default()};
    return p;
}

moa_device_kind moa_profiler_device(const moa_profiler *p) { return p->device; }

void moa_profiler_free(moa_profiler *p) {
    if (!p) return;
    if (p->dev) p->dev_ops->free_state(p->dev);
    float *bufs[] = {p->xs, p->h1, p->h2, p->xm, p->dxm, p->dh, p->q, p->o, p->dq, p->dO,
                     p->k, p->v, p->dk, p->dv, p->lse, p->g, p->u, p->a, p->da, p->logits,
                     p->act};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) moa_free_aligned(bufs[i]);
    moa_rope_table_free(&p->rope);
    free(p->row_loss);
    free(p);
}

moa_status moa_profiler_create(const moa_model *m, int64_t n_max, const moa_profiler_params *pp,
                               moa_profiler **out) {
    *out = NULL;
    const moa_llama_hparams *hp = &m->hp;
    if (n_max < 2) return moa_err(MOA_ERR_INVALID_ARG, "profiler: n_max %lld must be >= 2", (long long)n_max);
    moa_profiler_params pr = pp ? *pp : moa_profiler_default_params();
    if (pr.block < 1 || pr.sink < 0 || !(pr.eps >= 0))
        return moa_err(MOA_ERR_INVALID_ARG, "profiler: block %d must be >= 1, sink %d >= 0, eps >= 0",
                       pr.block, pr.sink);
    if (pr.device != MOA_DEVICE_CPU && pr.device != MOA_DEVICE_CUDA && pr.device != MOA_DEVICE_AUTO)
        return moa_err(MOA_ERR_INVALID_ARG, "profiler: unknown device %d", (int)pr.device);
    const moa_device_kind dev = pr.device != MOA_DEVICE_AUTO ? pr.device
                              : moa_ctx_cuda_available() ? MOA_DEVICE_CUDA : MOA_DEVICE_CPU;
    if (dev == MOA_DEVICE_CPU && (!m->layers[0].wq.f32 || !m->output.f32))
        return moa_err(MOA_ERR_INVALID_ARG, "profiler: the model must be loaded with f32 weights (f32_weights = 1)");
    moa_profiler *p = calloc(1, sizeof *p);
    if (!p) return moa_err(MOA_ERR_NOMEM, "out of memory");
    p->m = m;
    p->p = pr;
    p->n_max = n_max;
    p->device = dev;
    if (dev != MOA_DEVICE_CPU) {
        if (!(p->dev_ops = moa_profiler_device_get(dev))) {
            free(p);
            return moa_err(MOA_ERR_DEVICE, "profiler: this build has no CUDA backend (configure with "
                           "-DMOA_CUDA=ON on a machine with the CUDA toolkit); use the CPU device");
        }
        moa_status st = p->dev_ops->create(m, n_max, &p->p, &p->dev);
        if (st < 0) { free(p); return st; }
        *out = p;
        return MOA_OK;
    }
    size_t N = (size_t)n_max, d = (size_t)hp->n_embd, hd = (size_t)hp->head_dim;
    size_t nq = (size_t)hp->n_head * hd, nkv = (size_t)hp->n_head_kv * hd, ff = (size_t)hp->n_ff;
    moa_status st = moa_rope_table_init(&p->rope, hp->rope_dim, hp->rope_base,
                                         hp->rope_pairing == MOA_ROPE_NEOX, n_max);
    if (st < 0) { free(p); return st; }
    p->be = moa_backend_cpu();
    p->row_loss = calloc(N, sizeof(double));
    p->xs = moa_alloc_aligned((size_t)(hp->n_layer + 1) * N, d * sizeof(float));
    float **dbufs[] = {&p->h1, &p->h2, &p->xm, &p->dxm, &p->dh};
    for (size_t i = 0; i < 5; i++) *dbufs[i] = moa_alloc_aligned(N, d * sizeof(float));
    float **qbufs[] = {&p->q, &p->o, &p->dq, &p->dO};
    for (size_t i = 0; i < 4; i++) *qbufs[i] = moa_alloc_aligned(N, nq * sizeof(float));
    float **kbufs[] = {&p->k, &p->v, &p->dk, &p->dv};
    for (size_t i = 0; i < 4; i++) *kbufs[i] = moa_alloc_aligned(N, nkv * sizeof(float));
    float **fbufs[] = {&p->g, &p->u, &p->a, &p->da};
    for (size_t i = 0; i < 4; i++) *fbufs[i] = moa_alloc_aligned(N, ff * sizeof(float));
    p->lse = moa_alloc_aligned((size_t)hp->n_head, N * sizeof(float));
    p->logits = moa_alloc_aligned(N, (size_t)hp->n_vocab * sizeof(float));
    if (!p->xs || !p->h1 || !p->h2 || !p->xm || !p->dxm || !p->dh || !p->q || !p->o || !p->dq ||
        !p->dO || !p->k || !p->v || !p->dk || !p->dv || !p->g || !p->u || !p->a || !p->da ||
        !p->lse || !p->logits || !p->row_loss) {
        moa_profiler_free(p);
        return moa_err(MOA_ERR_NOMEM, "profiler: out of memory for %lld tokens", (long long)n_max);
    }
    /* the activation store: the budget, at most every layer at n_max; if that much cannot be
     * allocated, halves down to one layer at n_max, then none (every layer recomputed) */
    size_t per = act_layer_floats(hp, n_max) * sizeof(float);
    size_t all = per > SIZE_MAX / (size_t)hp->n_layer ? SIZE_MAX : per * (size_t)hp->n_layer;
    size_t target = pr.act_budget_bytes < all ? pr.act_budget_bytes : all;
    for (size_t b = target; b > 0; b /= 2) {
        if ((p->act = moa_alloc_aligned(1, b))) { p->act_bytes = b; break; }
        if (b / 2 < per) break;
    }
    if (p->act_bytes < target)
        moa_log_warn("profiler: no memory for %.0f MiB of kept activations; %s", target / 1048576.0,
                     p->act ? "keeping fewer layers" : "every layer is recomputed");
    *out = p;
    return MOA_OK;
}

/* y[n][out] = x[n][in] W^T */
static void mm_fwd(const moa_weight *w, const float *x, int64_t n, float *y) {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)n, (int)w->n_out, (int)w->n_in,
                1.0f, x, (int)w->n_in, w->f32, (int)w->n_in, 0.0f, y, (int)w->n_out);
    moa_weight_add_bias(w, y, n);
}

/* dx[n][in] = beta * dx + dy[n][out] W */
static void mm_bwd(const moa_weight *w, const float *dy, int64_t n, float *dx, float beta) {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)n, (int)w->n_in, (int)w->n_out,
                1.0f, dy, (int)w->n_out, w->f32, (int)w->n_in, beta, dx, (int)w->n_in);
}

/* Forward of layer l from x (n rows), leaving q, k, v (rotated), o, lse, xm, g, u in *a and
 * h1, h2, a in the scratch; writes the layer output to y if y != NULL. */
static moa_status layer_fwd(moa_profiler *p, int l, const float *x, int64_t n, float *y,
                            const layer_act *a) {
    const moa_model *m = p->m;
    const moa_llama_hparams *hp = &m->hp;
    const moa_llama_layer *L = &m->layers[l];
    const moa_backend *be = &p->be;
    int64_t d = hp->n_embd, ff = hp->n_ff;
    MOA_TRY(be->rmsnorm(be->ctx, x, L->attn_norm, p->h1, n, d, hp->rms_eps));
    mm_fwd(&L->wq, p->h1, n, a->q);
    mm_fwd(&L->wk, p->h1, n, a->k);
    mm_fwd(&L->wv, p->h1, n, a->v);
    moa_rope_rows(&p->rope, a->q, n, hp->n_head, hp->head_dim, 0, 0);
    moa_rope_rows(&p->rope, a->k, n, hp->n_head_kv, hp->head_dim, 0, 0);
    moa_attn_train_shape s = moa_profiler_attn_shape(&p->m->hp, &p->p, n);
    MOA_TRY(be->attn_fwd_lse(be->ctx, &s, a->q, a->k, a->v, a->o, a->lse));
    mm_fwd(&L->wo, a->o, n, a->xm);
    MOA_TRY(be->add(be->ctx, a->xm, x, n * d));
    MOA_TRY(be->rmsnorm(be->ctx, a->xm, L->ffn_norm, p->h2, n, d, hp->rms_eps));
    mm_fwd(&L->w_gate, p->h2, n, a->g);
    mm_fwd(&L->w_up, p->h2, n, a->u);
    MOA_TRY(be->swiglu_to(be->ctx, a->g, a->u, p->a, n * ff));
    if (y) {
        mm_fwd(&L->w_down, p->a, n, y);
        MOA_TRY(be->add(be->ctx, y, a->xm, n * d));
    }
    return MOA_OK;
}

/* dx (in: gradient w.r.t. the layer output; out: w.r.t. its input x). */
static moa_status layer_bwd(moa_profiler *p, int l, const float *x, int64_t n, float *dx,
                            moa_profiler_hist *hist) {
    const moa_model *m = p->m;
    const moa_llama_hparams *hp = &m->hp;
    const moa_llama_layer *L = &m->layers[l];
    const moa_backend *be = &p->be;
    int64_t d = hp->n_embd, ff = hp->n_ff;
    int kept;
    layer_act a = act_of(p, l, n, &kept);
    if (!kept) MOA_TRY(layer_fwd(p, l, x, n, NULL, &a));       /* recompute */
    /* FFN */
    mm_bwd(&L->w_down, dx, n, p->da, 0.0f);                  /* da = dy Wd */
    MOA_TRY(be->swiglu_bwd(be->ctx, a.g, a.u, p->da, n * ff));     /* dg, du */
    mm_bwd(&L->w_gate, a.g, n, p->dh, 0.0f);
    mm_bwd(&L->w_up, a.u, n, p->dh, 1.0f);                   /* dh2 = dg Wg + du Wu */
    memcpy(p->dxm, dx, sizeof(float) * (size_t)(n * d));
    MOA_TRY(be->rmsnorm_bwd_add(be->ctx, a.xm, L->ffn_norm, p->dh, p->dxm, n, d, hp->rms_eps));
    /* attention */
    mm_bwd(&L->wo, p->dxm, n, p->dO, 0.0f);                  /* do = dxm Wo */
    moa_attn_train_shape s = moa_profiler_attn_shape(&p->m->hp, &p->p, n);
    moa_influence_acc acc, *accp = NULL;
    if (hist) {
        size_t hb = (size_t)l * hp->n_head;
        acc.abs = hist->abs + hb * (size_t)hist->n_bins;
        acc.sgn = hist->sgn + hb * (size_t)hist->n_bins;
        acc.sink_abs = hist->sink_abs + hb;
        acc.sink_sgn = hist->sink_sgn ? hist->sink_sgn + hb : NULL;
        acc.n_bins = (int)hist->n_bins;
        accp = &acc;
    }
    double *sink_sgn_tmp = NULL;
    if (accp && !accp->sink_sgn) {
        sink_sgn_tmp = calloc((size_t)hp->n_head, sizeof(double));
        if (!sink_sgn_tmp) return moa_err(MOA_ERR_NOMEM, "out of memory");
        accp->sink_sgn = sink_sgn_tmp;
    }
    moa_status st = be->attn_bwd_influence(be->ctx, &s, a.q, a.k, a.v, a.o, p->dO, a.lse, p->dq,
                                           p->dk, p->dv, accp);
    free(sink_sgn_tmp);
    MOA_TRY(st);
    moa_rope_rows(&p->rope, p->dq, n, hp->n_head, hp->head_dim, 0, 1);
    moa_rope_rows(&p->rope, p->dk, n, hp->n_head_kv, hp->head_dim, 0, 1);
    mm_bwd(&L->wq, p->dq, n, p->dh, 0.0f);
    mm_bwd(&L->wk, p->dk, n, p->dh, 1.0f);
    mm_bwd(&L->wv, p->dv, n, p->dh, 1.0f);                  /* dh1 */
    memcpy(dx, p->dxm, sizeof(float) * (size_t)(n * d));
    MOA_TRY(be->rmsnorm_bwd_add(be->ctx, x, L->attn_norm, p->dh, dx, n, d, hp->rms_eps));
    return MOA_OK;
}

moa_status moa_profiler_sample_embd(moa_profiler *p, const float *x0, const int32_t *tokens,
                                    int64_t n, int64_t rb, int64_t re, moa_profiler_hist *hist,
                                    double *loss_out, float *d_embed) {
    const moa_model *m = p->m;
    const moa_llama_hparams *hp = &m->hp;
    if (n < 2 || n > p->n_max)
        return moa_err(MOA_ERR_INVALID_ARG, "profiler: sample of %lld tokens (expected 2..%lld)",
                       (long long)n, (long long)p->n_max);
    if (rb < 1 || re <= rb || re > n)
        return moa_err(MOA_ERR_INVALID_ARG, "profiler: response span [%lld, %lld) invalid for %lld tokens",
                       (long long)rb, (long long)re, (long long)n);
    if (hist && hist->n_bins < (n + p->p.block - 1) / p->p.block)
        return moa_err(MOA_ERR_INVALID_ARG, "profiler: histogram has %lld bins, the sample needs %lld",
                       (long long)hist->n_bins, (long long)((n + p->p.block - 1) / p->p.block));
    if (p->dev) return p->dev_ops->sample(p->dev, x0, tokens, n, rb, re, hist, loss_out, d_embed);
    int64_t d = hp->n_embd, V = hp->n_vocab, L = hp->n_layer;
    size_t layer_sz = (size_t)p->n_max * (size_t)d;
    memcpy(p->xs, x0, sizeof(float) * (size_t)(n * d));
    for (int l = 0; l < L; l++) {
        int kept;
        layer_act a = act_of(p, l, n, &kept);
        MOA_TRY(layer_fwd(p, l, p->xs + l * layer_sz, n, p->xs + (l + 1) * layer_sz, &a));
    }
    /* loss over response rows i = rb-1 .. re-2 predicting tokens[i+1] */
    int64_t R = re - rb;
    const float *xl = p->xs + L * layer_sz + (rb - 1) * d;
    const moa_backend *be = &p->be;
    MOA_TRY(be->rmsnorm(be->ctx, xl, m->output_norm, p->h1, R, d, hp->rms_eps));
    mm_fwd(&m->output, p->h1, R, p->logits);
    for (int64_t r = 0; r < R; r++)
        if (tokens[rb + r] < 0 || tokens[rb + r] >= V)
            return moa_err(MOA_ERR_INVALID_ARG, "profiler: token %d at %lld outside the vocabulary",
                           tokens[rb + r], (long long)(rb + r));
    /* row_loss[r] = lse - z[target]; dlogits = (softmax - onehot) / R */
    MOA_TRY(be->xent_grad(be->ctx, p->logits, tokens + rb, R, V, R, p->row_loss));
    double loss = 0;
    for (int64_t r = 0; r < R; r++) loss += p->row_loss[r];
    loss /= (double)R;
    /* dh = dlogits E (into h2);  dx_L = rmsnorm_bwd on the response rows, 0 elsewhere */
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)R, (int)d, (int)V, 1.0f,
                p->logits, (int)V, m->output.f32, (int)d, 0.0f, p->h2, (int)d);
    /* The running gradient d_cur [n][d] reuses xs[L], which is no longer needed once the
     * final norm's backward (which reads xs[L]) has gone into dxm. */
    float *d_cur = p->xs + L * layer_sz;
    memset(p->dxm, 0, sizeof(float) * (size_t)(n * d));
    MOA_TRY(be->rmsnorm_bwd_add(be->ctx, xl, m->output_norm, p->h2, p->dxm + (rb - 1) * d, R, d,
                                hp->rms_eps));
    memcpy(d_cur, p->dxm, sizeof(float) * (size_t)(n * d));
    for (int l = L - 1; l >= 0; l--)
        MOA_TRY(layer_bwd(p, l, p->xs + l * layer_sz, n, d_cur, hist));
    if (d_embed) memcpy(d_embed, d_cur, sizeof(float) * (size_t)(n * d));
    if (loss_out) *loss_out = loss;
    return MOA_OK;
}

moa_status moa_profiler_sample(moa_profiler *p, const int32_t *tokens, int64_t n, int64_t rb,
                               int64_t re, moa_profiler_hist *hist, double *loss, float *d_embed) {
    const moa_model *m = p->m;
    int64_t d = m->hp.n_embd;
    if (n < 2 || n > p->n_max)
        return moa_err(MOA_ERR_INVALID_ARG, "profiler: sample of %lld tokens (expected 2..%lld)",
                       (long long)n, (long long)p->n_max);
    float *x0 = moa_alloc_aligned((size_t)n, (size_t)d * sizeof(float));
    if (!x0) return moa_err(MOA_ERR_NOMEM, "out of memory");
    size_t erb = moa_ggml_row_bytes(m->tok_embd.type, d);
    for (int64_t t = 0; t < n; t++) {
        if (tokens[t] < 0 || tokens[t] >= m->hp.n_vocab) {
            moa_free_aligned(x0);
            return moa_err(MOA_ERR_INVALID_ARG, "profiler: token %d at %lld outside the vocabulary",
                           tokens[t], (long long)t);
        }
        moa_dequant_row(m->tok_embd.type, (const uint8_t *)m->tok_embd.data + (size_t)tokens[t] * erb,
                        x0 + t * d, d);
    }
    moa_status st = moa_profiler_sample_embd(p, x0, tokens, n, rb, re, hist, loss, d_embed);
    moa_free_aligned(x0);
    return st;
}
