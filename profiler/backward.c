/* backward.c - the profiler's sample, written once over a backend table (moa/backend.h)
 * and run on the CPU or on a device (profiler-device.h): forward pass with saved layer inputs,
 * response loss, and the activation-only backward pass through every layer, with the fused
 * attention backward accumulating the influence histograms. The activations the backward
 * reads (q, k, v, o, lse, xm, g, u) are kept from the forward for the last layers that fit the
 * activation store (moa_profiler_params.act_budget_bytes; the CPU only, the device's choice
 * keep_acts); the other layers are recomputed from their input by the same code on the same
 * input, so the results do not depend on the budget.
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
 * Loss: logits = rmsnorm(x_L) E^T on the response rows, lm_rows at a time (the device's
 * choice; the CPU: all in one product), softmax cross-entropy and its gradient in place, then
 * dh = dlogits E.
 *
 * Every op goes through the table. On the CPU it is moa_backend_cpu_rope over a RoPE table of
 * n_max positions, and the weights are the model's f32 copies as exact_f32 handles (every
 * projection one OpenBLAS sgemm, at any row count); on a device both come from its
 * profiler-device.h table (CUDA: backward-cuda.c, f32 or bf16 weights).
 *
 * Memory (backend memory, be.alloc), N = n_max:
 *   xs        f32 [n_layer + 1][N][d] layer inputs (xs[L]: final hidden state, then the
 *             running gradient)
 *   scratch   f32 h1, h2, xm, dxm, dh [N][d]; q, o, dq, dO [N][n_head hd]; k, v, dk, dv
 *             [N][n_kv hd]; lse [n_head][N]; g, u, a, da [N][n_ff]; logits [lm_rows or N]
 *             [n_vocab]; tgt int32 [N]; lrow double [N] (loss per response row)
 *   hist      double abs, sgn [n_layer][n_head][nb], sink_abs, sink_sgn [n_layer][n_head],
 *             nb = ceil(N / block): one sample's influence, added to the caller's histograms
 *             after the sample (the kernels add each bin once per call, so the sums are those
 *             of accumulating in place)
 *   act       the activation store (keep_acts), act_bytes
 * Per sample: x0 and the targets up; loss rows, histograms and d_embed (if asked) down.
 */
#include "moa/profiler.h"
#include "moa/attn-train.h"
#include "moa/model.h"             /* moa_ctx_default_params, moa_ctx_cuda_available */
#include "moa/rope.h"
#include "moa/quant.h"
#include "moa/common.h"
#include "profiler-device.h"

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
    int64_t n_max, nb;            /* nb: bins of the sample histograms, ceil(n_max / block) */
    moa_device_kind device;       /* CPU or CUDA */
    moa_backend be;               /* every op of the sample */
    moa_profiler_weights w;       /* the weights as handles of be, and the device's choices */
    const moa_profiler_device_ops *dev_ops;   /* not the CPU: the device (profiler-device.h) */
    moa_profiler_dev *dev;        /* its state */
    moa_rope_table rope;          /* CPU: the backend's RoPE table (n_max positions) */
    moa_weight *wcpu;             /* CPU: the model's weights as exact_f32 handles
                                     [n_layer * MOA_PROFILER_LW + 1] (LM head last) */
    /* backend memory (layout in the file comment) */
    float *xs;                                   /* [n_layer+1][n_max][d] */
    float *h1, *h2, *xm, *dxm, *dh;              /* [n_max][d] */
    float *q, *o, *dq, *dO;                      /* [n_max][nq] */
    float *k, *v, *dk, *dv;                      /* [n_max][nkv] */
    float *lse;                                  /* [n_head][n_max] */
    float *g, *u, *a, *da;                       /* [n_max][ff] */
    float *logits;                               /* [lm rows][vocab] response rows */
    int32_t *tgt;                                /* [n_max] response targets */
    double *lrow;                                /* [n_max] loss per response row */
    double *hist;                                /* abs | sgn | sink_abs | sink_sgn */
    float *act;    /* activation store, act_bytes: per sample of n tokens, layer_act of the
                      last act_kept(n) layers, each array rounded up to 64 bytes */
    size_t act_bytes;
    double *hh, *lh;                             /* host copies of hist and lrow */
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
    return n >= 1 && n <= p->n_max ? act_kept(p, n) : 0;
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

/* ---- creation: the device, the weights as handles, the scratch ------------------------------ */

static size_t hist_count(const moa_profiler *p) {
    const size_t rows = (size_t)p->m->hp.n_layer * (size_t)p->m->hp.n_head;
    return 2 * rows * (size_t)p->nb + 2 * rows;
}

/* The backend memory of the sample, in the struct's order (NULL-safe for free). */
#define PROFILER_BUFS(p) {(void *)(p)->xs, (p)->h1, (p)->h2, (p)->xm, (p)->dxm, (p)->dh, (p)->q, \
    (p)->o, (p)->dq, (p)->dO, (p)->k, (p)->v, (p)->dk, (p)->dv, (p)->lse, (p)->g, (p)->u, (p)->a, \
    (p)->da, (p)->logits, (p)->tgt, (p)->lrow, (p)->hist, (p)->act}

void moa_profiler_free(moa_profiler *p) {
    if (!p) return;
    if (p->be.free) {
        void *bufs[] = PROFILER_BUFS(p);
        for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) p->be.free(p->be.ctx, bufs[i]);
    }
    if (p->dev) p->dev_ops->close(p->dev);
    moa_rope_table_free(&p->rope);
    free(p->wcpu);
    free(p->w.layers);
    free(p->hh);
    free(p->lh);
    free(p);
}

/* The CPU: moa_backend_cpu_rope over a table of n_max positions, the model's f32 weights as
 * exact_f32 handles (one sgemm per projection), all response rows in one LM-head product,
 * the activation store. */
static moa_status cpu_open(moa_profiler *p) {
    const moa_model *m = p->m;
    const moa_llama_hparams *hp = &m->hp;
    if (!m->layers[0].wq.f32 || !m->output.f32)
        return moa_err(MOA_ERR_INVALID_ARG, "profiler: the model must be loaded with f32 weights (f32_weights = 1)");
    if (hp->rope_dim > 0)
        MOA_TRY(moa_rope_table_init(&p->rope, hp->rope_dim, hp->rope_base,
                                    hp->rope_pairing == MOA_ROPE_NEOX, p->n_max));
    const size_t nw = (size_t)hp->n_layer * MOA_PROFILER_LW + 1;
    if (!(p->wcpu = moa_calloc_array(nw, sizeof *p->wcpu)))
        return moa_err(MOA_ERR_NOMEM, "out of memory");
    for (int l = 0; l < hp->n_layer; l++) {
        const moa_llama_layer *L = &m->layers[l];
        const moa_weight *src[MOA_PROFILER_LW] = {&L->wq, &L->wk, &L->wv, &L->wo, &L->w_gate,
                                                  &L->w_up, &L->w_down};
        moa_profiler_layer *pl = &p->w.layers[l];
        pl->attn_norm = L->attn_norm;
        pl->ffn_norm = L->ffn_norm;
        for (int i = 0; i < MOA_PROFILER_LW; i++) {
            moa_weight *w = &p->wcpu[(size_t)l * MOA_PROFILER_LW + (size_t)i];
            *w = *src[i];
            w->exact_f32 = 1;
            pl->w[i] = w;
        }
    }
    moa_weight *out = &p->wcpu[nw - 1];
    *out = m->output;
    out->exact_f32 = 1;
    p->w.out = out;
    p->w.output_norm = m->output_norm;
    p->w.lm_rows = 0;
    p->w.keep_acts = 1;
    p->be = moa_backend_cpu_rope(hp->rope_dim > 0 ? &p->rope : NULL);
    return MOA_OK;
}

static moa_status open_device(moa_profiler *p) {
    if (!(p->w.layers = moa_calloc_array((size_t)p->m->hp.n_layer, sizeof *p->w.layers)))
        return moa_err(MOA_ERR_NOMEM, "out of memory");
    if (p->device == MOA_DEVICE_CPU) return cpu_open(p);
    if (!(p->dev_ops = moa_profiler_device_get(p->device)))
        return moa_err(MOA_ERR_DEVICE, "profiler: this build has no CUDA backend (configure with "
                       "-DMOA_CUDA=ON on a machine with the CUDA toolkit); use the CPU device");
    return p->dev_ops->open(p->m, &p->p, &p->be, &p->w, &p->dev);
}

/* The sample's backend memory and host copies (layout in the file comment). */
static moa_status alloc_scratch(moa_profiler *p) {
    const moa_llama_hparams *hp = &p->m->hp;
    const size_t N = (size_t)p->n_max, d = (size_t)hp->n_embd, hd = (size_t)hp->head_dim;
    const size_t nq = (size_t)hp->n_head * hd, nkv = (size_t)hp->n_head_kv * hd, ff = (size_t)hp->n_ff;
    const size_t F = sizeof(float);
    const size_t lg = p->w.lm_rows > 0 && (size_t)p->w.lm_rows < N ? (size_t)p->w.lm_rows : N;
    struct { void **p; size_t bytes; } sc[] = {
        {(void **)&p->xs, (size_t)(hp->n_layer + 1) * N * d * F},
        {(void **)&p->h1, N * d * F}, {(void **)&p->h2, N * d * F}, {(void **)&p->xm, N * d * F},
        {(void **)&p->dxm, N * d * F}, {(void **)&p->dh, N * d * F},
        {(void **)&p->q, N * nq * F}, {(void **)&p->o, N * nq * F}, {(void **)&p->dq, N * nq * F},
        {(void **)&p->dO, N * nq * F},
        {(void **)&p->k, N * nkv * F}, {(void **)&p->v, N * nkv * F}, {(void **)&p->dk, N * nkv * F},
        {(void **)&p->dv, N * nkv * F}, {(void **)&p->lse, (size_t)hp->n_head * N * F},
        {(void **)&p->g, N * ff * F}, {(void **)&p->u, N * ff * F}, {(void **)&p->a, N * ff * F},
        {(void **)&p->da, N * ff * F}, {(void **)&p->logits, lg * (size_t)hp->n_vocab * F},
        {(void **)&p->tgt, N * sizeof(int32_t)}, {(void **)&p->lrow, N * sizeof(double)},
        {(void **)&p->hist, hist_count(p) * sizeof(double)}};
    size_t bytes = 0;
    for (size_t i = 0; i < sizeof sc / sizeof sc[0]; i++) {
        MOA_TRY(p->be.alloc(p->be.ctx, sc[i].bytes, sc[i].p));
        bytes += sc[i].bytes;
    }
    if (!(p->hh = malloc(hist_count(p) * sizeof(double))) || !(p->lh = malloc(N * sizeof(double))))
        return moa_err(MOA_ERR_NOMEM, "out of memory");
    moa_log_debug("profiler: %s, scratch %.1f MiB for %lld tokens", p->be.name, bytes / 1048576.0,
                  (long long)p->n_max);
    return MOA_OK;
}

/* The activation store: the budget, at most every layer at n_max; if that much cannot be
 * allocated, halves down to one layer at n_max, then none (every layer recomputed). */
static void alloc_acts(moa_profiler *p) {
    const moa_llama_hparams *hp = &p->m->hp;
    size_t per = act_layer_floats(hp, p->n_max) * sizeof(float);
    size_t all = per > SIZE_MAX / (size_t)hp->n_layer ? SIZE_MAX : per * (size_t)hp->n_layer;
    size_t target = p->p.act_budget_bytes < all ? p->p.act_budget_bytes : all;
    for (size_t b = target; b > 0; b /= 2) {
        if (p->be.alloc(p->be.ctx, b, (void **)&p->act) == MOA_OK && p->act) { p->act_bytes = b; break; }
        if (b / 2 < per) break;
    }
    if (p->act_bytes < target)
        moa_log_warn("profiler: no memory for %.0f MiB of kept activations; %s", target / 1048576.0,
                     p->act ? "keeping fewer layers" : "every layer is recomputed");
}

moa_status moa_profiler_create(const moa_model *m, int64_t n_max, const moa_profiler_params *pp,
                               moa_profiler **out) {
    *out = NULL;
    if (n_max < 2) return moa_err(MOA_ERR_INVALID_ARG, "profiler: n_max %lld must be >= 2", (long long)n_max);
    moa_profiler_params pr = pp ? *pp : moa_profiler_default_params();
    if (pr.block < 1 || pr.sink < 0 || !(pr.eps >= 0))
        return moa_err(MOA_ERR_INVALID_ARG, "profiler: block %d must be >= 1, sink %d >= 0, eps >= 0",
                       pr.block, pr.sink);
    if (pr.device != MOA_DEVICE_CPU && pr.device != MOA_DEVICE_CUDA && pr.device != MOA_DEVICE_AUTO)
        return moa_err(MOA_ERR_INVALID_ARG, "profiler: unknown device %d", (int)pr.device);
    moa_profiler *p = calloc(1, sizeof *p);
    if (!p) return moa_err(MOA_ERR_NOMEM, "out of memory");
    p->m = m;
    p->p = pr;
    p->n_max = n_max;
    p->nb = (n_max + pr.block - 1) / pr.block;
    p->device = pr.device != MOA_DEVICE_AUTO ? pr.device
              : moa_ctx_cuda_available() ? MOA_DEVICE_CUDA : MOA_DEVICE_CPU;
    moa_status st = open_device(p);
    if (st == MOA_OK && (st = alloc_scratch(p)) < 0)
        st = moa_err_prefix(st, "profiler on %s (%lld tokens)", p->be.name, (long long)n_max);
    if (st < 0) {
        moa_profiler_free(p);
        return st;
    }
    if (p->w.keep_acts) alloc_acts(p);
    *out = p;
    return MOA_OK;
}

/* ---- the sample ------------------------------------------------------------------------------ */

/* The fused attention kernels' shape for an n-token sample under the profiler's sink, block
 * and eps. */
static moa_attn_train_shape attn_shape(const moa_profiler *p, int64_t n) {
    const moa_llama_hparams *hp = &p->m->hp;
    moa_attn_train_shape s = moa_attn_train_default_shape((int)n, hp->n_head, hp->n_head_kv, hp->head_dim);
    s.sink = p->p.sink;
    s.block = p->p.block;
    s.eps = p->p.eps;
    return s;
}

/* RoPE of the model on x [n][heads * hd] at positions 0.. (inverse: the backward). */
static moa_status rope(const moa_profiler *p, float *x, int64_t n, int heads, int inverse) {
    const moa_llama_hparams *hp = &p->m->hp;
    if (hp->rope_dim <= 0) return MOA_OK;
    return p->be.rope(p->be.ctx, x, n, heads, hp->head_dim, hp->rope_dim, hp->rope_base, 0,
                      inverse, hp->rope_pairing == MOA_ROPE_NEOX);
}

/* Forward of layer l from x (n rows), leaving q, k, v (rotated), o, lse, xm, g, u in *a and
 * h1, h2 in the scratch; writes the layer output to y if y != NULL (then a = silu(g) u too). */
static moa_status layer_fwd(moa_profiler *p, int l, const float *x, int64_t n, float *y,
                            const layer_act *a) {
    const moa_llama_hparams *hp = &p->m->hp;
    const moa_profiler_layer *L = &p->w.layers[l];
    const moa_backend *be = &p->be;
    void *cx = be->ctx;
    const int64_t d = hp->n_embd, ff = hp->n_ff;
    float *const qkv[3] = {a->q, a->k, a->v}, *const gu[2] = {a->g, a->u};
    MOA_TRY(be->rmsnorm(cx, x, L->attn_norm, p->h1, n, d, hp->rms_eps));
    MOA_TRY(be->matmul(cx, &L->w[0], 3, p->h1, n, qkv));
    MOA_TRY(rope(p, a->q, n, hp->n_head, 0));
    MOA_TRY(rope(p, a->k, n, hp->n_head_kv, 0));
    moa_attn_train_shape s = attn_shape(p, n);
    MOA_TRY(be->attn_fwd_lse(cx, &s, a->q, a->k, a->v, a->o, a->lse));
    MOA_TRY(be->matmul(cx, &L->w[3], 1, a->o, n, &a->xm));
    MOA_TRY(be->add(cx, a->xm, x, n * d));
    MOA_TRY(be->rmsnorm(cx, a->xm, L->ffn_norm, p->h2, n, d, hp->rms_eps));
    MOA_TRY(be->matmul(cx, &L->w[4], 2, p->h2, n, gu));
    if (!y) return MOA_OK;   /* a recompute for the backward: a is not needed */
    MOA_TRY(be->swiglu_to(cx, a->g, a->u, p->a, n * ff));
    MOA_TRY(be->matmul(cx, &L->w[6], 1, p->a, n, &y));
    return be->add(cx, y, a->xm, n * d);
}

/* dx (in: gradient w.r.t. the layer output; out: w.r.t. its input x). hist != 0: the
 * influence of layer l goes to the sample histograms (p->hist). */
static moa_status layer_bwd(moa_profiler *p, int l, const float *x, int64_t n, float *dx, int hist) {
    const moa_llama_hparams *hp = &p->m->hp;
    const moa_profiler_layer *L = &p->w.layers[l];
    const moa_backend *be = &p->be;
    void *cx = be->ctx;
    const int64_t d = hp->n_embd, ff = hp->n_ff;
    const size_t bytes = sizeof(float) * (size_t)(n * d);
    int kept;
    layer_act a = act_of(p, l, n, &kept);
    if (!kept) MOA_TRY(layer_fwd(p, l, x, n, NULL, &a));       /* recompute */
    /* FFN */
    MOA_TRY(be->matmul_bwd(cx, L->w[6], dx, n, p->da, 0.0f));      /* da = dy Wd */
    MOA_TRY(be->swiglu_bwd(cx, a.g, a.u, p->da, n * ff));          /* g <- dg, u <- du */
    MOA_TRY(be->matmul_bwd(cx, L->w[4], a.g, n, p->dh, 0.0f));
    MOA_TRY(be->matmul_bwd(cx, L->w[5], a.u, n, p->dh, 1.0f));     /* dh2 = dg Wg + du Wu */
    MOA_TRY(be->copy(cx, p->dxm, dx, bytes));
    MOA_TRY(be->rmsnorm_bwd_add(cx, a.xm, L->ffn_norm, p->dh, p->dxm, n, d, hp->rms_eps));
    /* attention */
    MOA_TRY(be->matmul_bwd(cx, L->w[3], p->dxm, n, p->dO, 0.0f));  /* do = dxm Wo */
    moa_attn_train_shape s = attn_shape(p, n);
    const size_t rows = (size_t)hp->n_layer * (size_t)hp->n_head, hb = (size_t)l * (size_t)hp->n_head;
    const size_t nb = (size_t)p->nb;
    moa_influence_acc acc = {p->hist + hb * nb, p->hist + (rows + hb) * nb,
                             p->hist + 2 * rows * nb + hb, p->hist + 2 * rows * nb + rows + hb,
                             (int)p->nb};
    MOA_TRY(be->attn_bwd_influence(cx, &s, a.q, a.k, a.v, a.o, p->dO, a.lse, p->dq, p->dk, p->dv,
                                   hist ? &acc : NULL));
    MOA_TRY(rope(p, p->dq, n, hp->n_head, 1));
    MOA_TRY(rope(p, p->dk, n, hp->n_head_kv, 1));
    MOA_TRY(be->matmul_bwd(cx, L->w[0], p->dq, n, p->dh, 0.0f));
    MOA_TRY(be->matmul_bwd(cx, L->w[1], p->dk, n, p->dh, 1.0f));
    MOA_TRY(be->matmul_bwd(cx, L->w[2], p->dv, n, p->dh, 1.0f));   /* dh1 */
    MOA_TRY(be->copy(cx, dx, p->dxm, bytes));
    return be->rmsnorm_bwd_add(cx, x, L->attn_norm, p->dh, dx, n, d, hp->rms_eps);
}

/* The loss over the R response rows xl [R][d] (final hidden states of rows rb-1 .. re-2,
 * predicting tgt): per chunk of lm_rows (0: all), logits = rmsnorm(xl) E^T, then
 * (softmax - onehot) / R in place with the loss per row into lrow, then dh = dlogits E into
 * h2's rows. */
static moa_status lm_head(moa_profiler *p, const float *xl, int64_t R) {
    const moa_llama_hparams *hp = &p->m->hp;
    const moa_backend *be = &p->be;
    void *cx = be->ctx;
    const int64_t d = hp->n_embd, V = hp->n_vocab, step = p->w.lm_rows > 0 ? p->w.lm_rows : R;
    for (int64_t r0 = 0; r0 < R; r0 += step) {
        const int64_t cnt = R - r0 < step ? R - r0 : step;
        MOA_TRY(be->rmsnorm(cx, xl + r0 * d, p->w.output_norm, p->h1 + r0 * d, cnt, d, hp->rms_eps));
        MOA_TRY(be->matmul(cx, &p->w.out, 1, p->h1 + r0 * d, cnt, &p->logits));
        MOA_TRY(be->xent_grad(cx, p->logits, p->tgt + r0, cnt, V, R, p->lrow + r0));
        MOA_TRY(be->matmul_bwd(cx, p->w.out, p->logits, cnt, p->h2 + r0 * d, 0.0f));
    }
    return MOA_OK;
}

/* After the backward: the loss (rows summed in row order), the sample histograms added to
 * hist, d_embed (d_cur) downloaded. */
static moa_status sample_results(moa_profiler *p, int64_t R, moa_profiler_hist *hist,
                                 const float *d_cur, int64_t n, double *loss_out, float *d_embed) {
    const moa_llama_hparams *hp = &p->m->hp;
    const moa_backend *be = &p->be;
    MOA_TRY(be->download(be->ctx, p->lh, p->lrow, sizeof(double) * (size_t)R));
    if (hist) {
        MOA_TRY(be->download(be->ctx, p->hh, p->hist, hist_count(p) * sizeof(double)));
        const int64_t rows = (int64_t)hp->n_layer * hp->n_head, nb = p->nb < hist->n_bins ? p->nb : hist->n_bins;
        const double *habs = p->hh, *hsgn = p->hh + rows * p->nb, *hsk = p->hh + 2 * rows * p->nb;
        for (int64_t r = 0; r < rows; r++) {
            for (int64_t b = 0; b < nb; b++) {
                hist->abs[r * hist->n_bins + b] += habs[r * p->nb + b];
                hist->sgn[r * hist->n_bins + b] += hsgn[r * p->nb + b];
            }
            hist->sink_abs[r] += hsk[r];
            if (hist->sink_sgn) hist->sink_sgn[r] += hsk[rows + r];
        }
    }
    if (d_embed) MOA_TRY(be->download(be->ctx, d_embed, d_cur, sizeof(float) * (size_t)(n * hp->n_embd)));
    double loss = 0;
    for (int64_t r = 0; r < R; r++) loss += p->lh[r];
    if (loss_out) *loss_out = loss / (double)R;
    return MOA_OK;
}

static moa_status sample_check(const moa_profiler *p, const int32_t *tokens, int64_t n, int64_t rb,
                               int64_t re, const moa_profiler_hist *hist) {
    if (n < 2 || n > p->n_max)
        return moa_err(MOA_ERR_INVALID_ARG, "profiler: sample of %lld tokens (expected 2..%lld)",
                       (long long)n, (long long)p->n_max);
    if (rb < 1 || re <= rb || re > n)
        return moa_err(MOA_ERR_INVALID_ARG, "profiler: response span [%lld, %lld) invalid for %lld tokens",
                       (long long)rb, (long long)re, (long long)n);
    if (hist && hist->n_bins < (n + p->p.block - 1) / p->p.block)
        return moa_err(MOA_ERR_INVALID_ARG, "profiler: histogram has %lld bins, the sample needs %lld",
                       (long long)hist->n_bins, (long long)((n + p->p.block - 1) / p->p.block));
    for (int64_t r = rb; r < re; r++)
        if (tokens[r] < 0 || tokens[r] >= p->m->hp.n_vocab)
            return moa_err(MOA_ERR_INVALID_ARG, "profiler: token %d at %lld outside the vocabulary",
                           tokens[r], (long long)r);
    return MOA_OK;
}

moa_status moa_profiler_sample_embd(moa_profiler *p, const float *x0, const int32_t *tokens,
                                    int64_t n, int64_t rb, int64_t re, moa_profiler_hist *hist,
                                    double *loss_out, float *d_embed) {
    MOA_TRY(sample_check(p, tokens, n, rb, re, hist));
    const moa_llama_hparams *hp = &p->m->hp;
    const moa_backend *be = &p->be;
    void *cx = be->ctx;
    const int64_t d = hp->n_embd, L = hp->n_layer, R = re - rb;
    const size_t layer_sz = (size_t)p->n_max * (size_t)d, bytes = sizeof(float) * (size_t)(n * d);
    MOA_TRY(be->upload(cx, p->xs, x0, bytes));
    MOA_TRY(be->upload(cx, p->tgt, tokens + rb, sizeof(int32_t) * (size_t)R));
    for (int l = 0; l < L; l++) {
        int kept;
        layer_act a = act_of(p, l, n, &kept);
        MOA_TRY(layer_fwd(p, l, p->xs + l * layer_sz, n, p->xs + (l + 1) * layer_sz, &a));
    }
    /* loss over response rows i = rb-1 .. re-2 predicting tokens[i+1]; dh into h2 */
    const float *xl = p->xs + L * layer_sz + (rb - 1) * d;
    MOA_TRY(lm_head(p, xl, R));
    /* dx_L = rmsnorm_bwd on the response rows, 0 elsewhere; then the running gradient d_cur
     * reuses xs[L] (no longer needed once the final norm's backward has read it) */
    float *d_cur = p->xs + L * layer_sz;
    MOA_TRY(be->memset0(cx, p->dxm, bytes));
    MOA_TRY(be->rmsnorm_bwd_add(cx, xl, p->w.output_norm, p->h2, p->dxm + (rb - 1) * d, R, d,
                                hp->rms_eps));
    MOA_TRY(be->copy(cx, d_cur, p->dxm, bytes));
    if (hist) MOA_TRY(be->memset0(cx, p->hist, hist_count(p) * sizeof(double)));
    for (int l = (int)L - 1; l >= 0; l--)
        MOA_TRY(layer_bwd(p, l, p->xs + l * layer_sz, n, d_cur, hist != NULL));
    return sample_results(p, R, hist, d_cur, n, loss_out, d_embed);
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
