/* backward-cuda.c - the profiler's sample on a CUDA device: backward.c's forward with saved
 * layer inputs, response loss and activation-only backward, step for step, over the ops of
 * kernels/cuda (moa-cuda.h): RMSNorm and its backward, cuBLAS projections forward (x W^T,
 * + the q/k/v biases where the architecture has them: moa_cuda_matmul adds the device copy's
 * bias; they do not enter the activation backward) and backward (dy W), RoPE in the model's
 * pairing and its inverse, the attention forward with LSE and the fused
 * influence backward (histograms accumulated on the device in double), SwiGLU and its
 * backward, cross-entropy with its gradient over the response rows.
 *
 * Precision: weights f32 by default (the GEMMs then read the CPU's f32 values, accumulate in
 * f32, and only the summation order differs from the CPU); with device_bf16 the weights and
 * every GEMM input (activations and gradients) are rounded to bf16 (f32 range, so the small
 * gradients of the backward do not underflow as they would in f16, which is not offered).
 *
 * Memory (device), per profiler, N = n_max:
 *   weights   the model's shared copy (weights-cuda.h) as f32 or bf16, norms f32
 *   xs        f32 [n_layer + 1][N][d] layer inputs (xs[L]: final hidden state, then the
 *             running gradient)
 *   scratch   f32 h1, h2, xm, dxm, dh [N][d]; q, o, dq, dO [N][n_head hd]; k, v, dk, dv
 *             [N][n_kv hd]; lse [n_head][N]; g, u, a, da [N][n_ff]; lg [LG_ROWS][n_vocab]
 *             (a chunk of response logits, then their gradient); tgt int32 [N]; lrow
 *             double [N] (loss per response row); hx [max(N max(d, nq, ff), LG_ROWS
 *             n_vocab)] bf16 GEMM inputs (bf16 only)
 *   hist      double abs, sgn [n_layer][n_head][nb], sink_abs, sink_sgn [n_layer][n_head],
 *             nb = ceil(N / block)
 * Per sample: x0 up (n d floats), targets up; loss rows, histograms and d_embed (if asked)
 * down. One synchronisation at the end (the downloads). */
#include "backward-cuda.h"
#include "weights-cuda.h"
#include "moa-cuda.h"
#include "moa-common.h"
#include "profiler-internal.h"

#include <stdlib.h>
#include <string.h>

#ifndef MOA_PROFILER_LG_ROWS
#define MOA_PROFILER_LG_ROWS 256   /* the emulator test lowers it so chunking runs */
#endif
enum { LG_ROWS = MOA_PROFILER_LG_ROWS };   /* response rows per LM-head chunk */

struct moa_profiler_dev {   /* moa_profiler_cuda */
    moa_cuda_ctx *cx;
    const moa_model *m;
    moa_profiler_params p;
    moa_cuda_dtype dt;
    moa_model_cuda *wc;
    int64_t n_max, nb;
    float *xs, *h1, *h2, *xm, *dxm, *dh, *q, *o, *dq, *dO, *k, *v, *dk, *dv, *lse;
    float *g, *u, *a, *da, *lg;
    void *hx;
    int32_t *tgt;
    double *lrow;
    double *hist;          /* abs | sgn | sink_abs | sink_sgn (layout above) */
    double *hh, *lh;       /* host copies of hist and lrow */
};

void moa_profiler_cuda_free(moa_profiler_cuda *c) {
    if (!c) return;
    if (c->cx) {
        void *bufs[] = {c->xs, c->h1, c->h2, c->xm, c->dxm, c->dh, c->q, c->o, c->dq, c->dO,
                        c->k, c->v, c->dk, c->dv, c->lse, c->g, c->u, c->a, c->da, c->lg,
                        c->hx, c->tgt, c->lrow, c->hist};
        for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) moa_cuda_free(c->cx, bufs[i]);
        moa_cuda_ctx_free(c->cx);
    }
    moa_model_cuda_release(c->m, c->wc);
    free(c->hh);
    free(c->lh);
    free(c);
}

static size_t hist_count(const moa_profiler_cuda *c) {
    const size_t rows = (size_t)c->m->hp.n_layer * (size_t)c->m->hp.n_head;
    return 2 * rows * (size_t)c->nb + 2 * rows;
}

moa_status moa_profiler_cuda_create(const moa_model *m, int64_t n_max,
                                    const moa_profiler_params *pp, moa_profiler_cuda **out) {
    *out = NULL;
    const moa_llama_hparams *hp = &m->hp;
    moa_profiler_cuda *c = calloc(1, sizeof *c);
    if (!c) return moa_err(MOA_ERR_NOMEM, "out of memory");
    c->m = m;
    c->p = *pp;
    c->dt = pp->device_bf16 ? MOA_CUDA_BF16 : MOA_CUDA_F32;
    c->n_max = n_max;
    c->nb = (n_max + pp->block - 1) / pp->block;
    moa_status st = moa_cuda_ctx_create(pp->device_index, &c->cx);
    if (st < 0) { free(c); return st; }
    const double t0 = moa_time_now();
    st = moa_model_cuda_acquire(m, c->cx, pp->device_index, c->dt, &c->wc);
    const size_t N = (size_t)n_max, d = (size_t)hp->n_embd, hd = (size_t)hp->head_dim;
    const size_t nq = (size_t)hp->n_head * hd, nkv = (size_t)hp->n_head_kv * hd, ff = (size_t)hp->n_ff;
    const size_t V = (size_t)hp->n_vocab, F = sizeof(float);
    size_t hxn = N * (d > nq ? (d > ff ? d : ff) : (nq > ff ? nq : ff));
    if (hxn < (size_t)LG_ROWS * V) hxn = (size_t)LG_ROWS * V;
    struct { void **p; size_t bytes; } sc[] = {
        {(void **)&c->xs, (size_t)(hp->n_layer + 1) * N * d * F},
        {(void **)&c->h1, N * d * F}, {(void **)&c->h2, N * d * F}, {(void **)&c->xm, N * d * F},
        {(void **)&c->dxm, N * d * F}, {(void **)&c->dh, N * d * F},
        {(void **)&c->q, N * nq * F}, {(void **)&c->o, N * nq * F}, {(void **)&c->dq, N * nq * F},
        {(void **)&c->dO, N * nq * F},
        {(void **)&c->k, N * nkv * F}, {(void **)&c->v, N * nkv * F}, {(void **)&c->dk, N * nkv * F},
        {(void **)&c->dv, N * nkv * F}, {(void **)&c->lse, (size_t)hp->n_head * N * F},
        {(void **)&c->g, N * ff * F}, {(void **)&c->u, N * ff * F}, {(void **)&c->a, N * ff * F},
        {(void **)&c->da, N * ff * F}, {(void **)&c->lg, (size_t)LG_ROWS * V * F},
        {&c->hx, c->dt == MOA_CUDA_F32 ? 0 : hxn * moa_cuda_dtype_size(c->dt)},
        {(void **)&c->tgt, N * sizeof(int32_t)}, {(void **)&c->lrow, N * sizeof(double)},
        {(void **)&c->hist, hist_count(c) * sizeof(double)}};
    size_t scratch = 0;
    for (size_t i = 0; i < sizeof sc / sizeof sc[0] && st == MOA_OK; i++) {
        st = moa_cuda_alloc(c->cx, sc[i].bytes, sc[i].p);
        scratch += sc[i].bytes;
    }
    if (st == MOA_OK && (!(c->hh = malloc(hist_count(c) * sizeof(double))) ||
                         !(c->lh = malloc(N * sizeof(double)))))
        st = moa_err(MOA_ERR_NOMEM, "out of memory");
    if (st < 0) {
        moa_profiler_cuda_free(c);
        return moa_err_prefix(st, "profiler on CUDA (%lld tokens)", (long long)n_max);
    }
    moa_log_info("profiler: %s, weights %.1f MiB as %s (shared), scratch %.1f MiB for %lld tokens "
                 "(%.2f s)", moa_cuda_ctx_describe(c->cx), c->wc->bytes / 1048576.0,
                 c->dt == MOA_CUDA_F32 ? "f32" : "bf16", scratch / 1048576.0, (long long)n_max,
                 moa_time_now() - t0);
    *out = c;
    return MOA_OK;
}

/* x as the input of a GEMM: itself with f32 weights, else rounded into hx. */
static moa_status gemm_in(moa_profiler_cuda *c, const float *x, int64_t count, const void **in) {
    if (c->dt == MOA_CUDA_F32) { *in = x; return MOA_OK; }
    *in = c->hx;
    return moa_cuda_convert(c->cx, x, count, c->hx, c->dt);
}

/* y[n][out] = x[n][in] W^T */
static moa_status mm_fwd(moa_profiler_cuda *c, const moa_cuda_weight *W, const float *x, int64_t n, float *y) {
    const void *in;
    MOA_TRY(gemm_in(c, x, n * W->n_in, &in));
    return moa_cuda_matmul(c->cx, W, in, n, y);
}

/* dx[n][in] = beta dx + dy[n][out] W */
static moa_status mm_bwd(moa_profiler_cuda *c, const moa_cuda_weight *W, const float *dy, int64_t n,
                         float *dx, float beta) {
    const void *in;
    MOA_TRY(gemm_in(c, dy, n * W->n_out, &in));
    return moa_cuda_matmul_bwd(c->cx, W, in, n, dx, beta);
}

static moa_status rope(moa_profiler_cuda *c, float *x, int64_t n, int heads, int inverse) {
    const moa_llama_hparams *hp = &c->m->hp;
    if (hp->rope_dim <= 0) return MOA_OK;
    return moa_cuda_rope(c->cx, x, n, heads, hp->head_dim, hp->rope_dim, hp->rope_base, 0, NULL, inverse,
                         hp->rope_pairing == MOA_ROPE_NEOX);
}

/* backward.c's layer_fwd: leaves h1, q, k (rotated), v, o, lse, xm, h2, g, u in the scratch;
 * writes the layer output to y if y != NULL (then a = silu(g) u too). */
static moa_status layer_fwd(moa_profiler_cuda *c, int l, const float *x, int64_t n, float *y) {
    const moa_llama_hparams *hp = &c->m->hp;
    const moa_cuda_weight *W = c->wc->w + (size_t)l * MOA_MODEL_CUDA_LW;
    const int64_t d = hp->n_embd, ff = hp->n_ff;
    const float *an = c->wc->norms + (size_t)(2 * l) * d, *fn = an + d;
    moa_cuda_ctx *cx = c->cx;
    MOA_TRY(moa_cuda_rmsnorm(cx, x, an, c->h1, n, d, hp->rms_eps));
    MOA_TRY(mm_fwd(c, &W[0], c->h1, n, c->q));
    MOA_TRY(mm_fwd(c, &W[1], c->h1, n, c->k));
    MOA_TRY(mm_fwd(c, &W[2], c->h1, n, c->v));
    MOA_TRY(rope(c, c->q, n, hp->n_head, 0));
    MOA_TRY(rope(c, c->k, n, hp->n_head_kv, 0));
    moa_attn_train_shape s = moa_profiler_attn_shape(&c->m->hp, &c->p, n);
    MOA_TRY(moa_cuda_attn_fwd_lse(cx, &s, c->q, c->k, c->v, c->o, c->lse));
    MOA_TRY(mm_fwd(c, &W[3], c->o, n, c->xm));
    MOA_TRY(moa_cuda_add(cx, c->xm, x, n * d));
    MOA_TRY(moa_cuda_rmsnorm(cx, c->xm, fn, c->h2, n, d, hp->rms_eps));
    MOA_TRY(mm_fwd(c, &W[4], c->h2, n, c->g));
    MOA_TRY(mm_fwd(c, &W[5], c->h2, n, c->u));
    if (y) {
        MOA_TRY(moa_cuda_swiglu_to(cx, c->g, c->u, c->a, n * ff));
        MOA_TRY(mm_fwd(c, &W[6], c->a, n, y));
        MOA_TRY(moa_cuda_add(cx, y, c->xm, n * d));
    }
    return MOA_OK;
}

/* backward.c's layer_bwd: dx in: gradient w.r.t. the layer output; out: w.r.t. its input x.
 * hist != 0: the influence of layer l goes to the device histograms. */
static moa_status layer_bwd(moa_profiler_cuda *c, int l, const float *x, int64_t n, float *dx, int hist) {
    const moa_llama_hparams *hp = &c->m->hp;
    const moa_cuda_weight *W = c->wc->w + (size_t)l * MOA_MODEL_CUDA_LW;
    const int64_t d = hp->n_embd, ff = hp->n_ff;
    const float *an = c->wc->norms + (size_t)(2 * l) * d, *fn = an + d;
    moa_cuda_ctx *cx = c->cx;
    MOA_TRY(layer_fwd(c, l, x, n, NULL));
    /* FFN */
    MOA_TRY(mm_bwd(c, &W[6], dx, n, c->da, 0.0f));                 /* da = dy Wd */
    MOA_TRY(moa_cuda_swiglu_bwd(cx, c->g, c->u, c->da, n * ff));   /* g <- dg, u <- du */
    MOA_TRY(mm_bwd(c, &W[4], c->g, n, c->dh, 0.0f));
    MOA_TRY(mm_bwd(c, &W[5], c->u, n, c->dh, 1.0f));               /* dh2 = dg Wg + du Wu */
    MOA_TRY(moa_cuda_copy(cx, c->dxm, dx, sizeof(float) * (size_t)(n * d)));
    MOA_TRY(moa_cuda_rmsnorm_bwd_add(cx, c->xm, fn, c->dh, c->dxm, n, d, hp->rms_eps));
    /* attention */
    MOA_TRY(mm_bwd(c, &W[3], c->dxm, n, c->dO, 0.0f));             /* do = dxm Wo */
    moa_attn_train_shape s = moa_profiler_attn_shape(&c->m->hp, &c->p, n);
    const size_t rows = (size_t)hp->n_layer * (size_t)hp->n_head, hb = (size_t)l * (size_t)hp->n_head;
    moa_influence_acc acc = {c->hist + hb * (size_t)c->nb, c->hist + (rows + hb) * (size_t)c->nb,
                             c->hist + 2 * rows * (size_t)c->nb + hb,
                             c->hist + 2 * rows * (size_t)c->nb + rows + hb, (int)c->nb};
    MOA_TRY(moa_cuda_attn_bwd_influence(cx, &s, c->q, c->k, c->v, c->o, c->dO, c->lse, c->dq,
                                        c->dk, c->dv, hist ? &acc : NULL));
    MOA_TRY(rope(c, c->dq, n, hp->n_head, 1));
    MOA_TRY(rope(c, c->dk, n, hp->n_head_kv, 1));
    MOA_TRY(mm_bwd(c, &W[0], c->dq, n, c->dh, 0.0f));
    MOA_TRY(mm_bwd(c, &W[1], c->dk, n, c->dh, 1.0f));
    MOA_TRY(mm_bwd(c, &W[2], c->dv, n, c->dh, 1.0f));             /* dh1 */
    MOA_TRY(moa_cuda_copy(cx, dx, c->dxm, sizeof(float) * (size_t)(n * d)));
    return moa_cuda_rmsnorm_bwd_add(cx, x, an, c->dh, dx, n, d, hp->rms_eps);
}

moa_status moa_profiler_cuda_sample(moa_profiler_cuda *c, const float *x0, const int32_t *tokens,
                                    int64_t n, int64_t rb, int64_t re, moa_profiler_hist *hist,
                                    double *loss_out, float *d_embed) {
    const moa_model *m = c->m;
    const moa_llama_hparams *hp = &m->hp;
    moa_cuda_ctx *cx = c->cx;
    const int64_t d = hp->n_embd, V = hp->n_vocab, L = hp->n_layer, R = re - rb;
    for (int64_t r = rb; r < re; r++)
        if (tokens[r] < 0 || tokens[r] >= V)
            return moa_err(MOA_ERR_INVALID_ARG, "profiler: token %d at %lld outside the vocabulary",
                           tokens[r], (long long)r);
    const size_t layer_sz = (size_t)c->n_max * (size_t)d;
    MOA_TRY(moa_cuda_upload(cx, c->xs, x0, sizeof(float) * (size_t)(n * d)));
    MOA_TRY(moa_cuda_upload(cx, c->tgt, tokens + rb, sizeof(int32_t) * (size_t)R));
    for (int l = 0; l < L; l++)
        MOA_TRY(layer_fwd(c, l, c->xs + l * layer_sz, n, c->xs + (l + 1) * layer_sz));
    /* loss over response rows i = rb-1 .. re-2 predicting tokens[i+1], LG_ROWS at a time:
     * logits, then (softmax - onehot) / R in place, then dh = dlogits E into h2's rows */
    const float *xl = c->xs + L * layer_sz + (rb - 1) * d;
    const float *onorm = c->wc->norms + (size_t)(2 * L) * d;
    for (int64_t r0 = 0; r0 < R; r0 += LG_ROWS) {
        const int64_t cnt = R - r0 < LG_ROWS ? R - r0 : LG_ROWS;
        MOA_TRY(moa_cuda_rmsnorm(cx, xl + r0 * d, onorm, c->h1 + r0 * d, cnt, d, hp->rms_eps));
        MOA_TRY(mm_fwd(c, &c->wc->out, c->h1 + r0 * d, cnt, c->lg));
        MOA_TRY(moa_cuda_xent_grad(cx, c->lg, c->tgt + r0, cnt, V, R, c->lrow + r0));
        MOA_TRY(mm_bwd(c, &c->wc->out, c->lg, cnt, c->h2 + r0 * d, 0.0f));
    }
    /* dx_L = rmsnorm_bwd on the response rows, 0 elsewhere; then the running gradient
     * d_cur reuses xs[L] (no longer needed once the final norm's backward has read it) */
    float *d_cur = c->xs + L * layer_sz;
    MOA_TRY(moa_cuda_memset0(cx, c->dxm, sizeof(float) * (size_t)(n * d)));
    MOA_TRY(moa_cuda_rmsnorm_bwd_add(cx, xl, onorm, c->h2, c->dxm + (rb - 1) * d, R, d, hp->rms_eps));
    MOA_TRY(moa_cuda_copy(cx, d_cur, c->dxm, sizeof(float) * (size_t)(n * d)));
    if (hist) MOA_TRY(moa_cuda_memset0(cx, c->hist, hist_count(c) * sizeof(double)));
    for (int l = (int)L - 1; l >= 0; l--)
        MOA_TRY(layer_bwd(c, l, c->xs + l * layer_sz, n, d_cur, hist != NULL));
    /* results: loss rows (summed in row order, as the CPU), histograms, d_embed */
    MOA_TRY(moa_cuda_download(cx, c->lh, c->lrow, sizeof(double) * (size_t)R));
    if (hist) {
        MOA_TRY(moa_cuda_download(cx, c->hh, c->hist, hist_count(c) * sizeof(double)));
        const int64_t rows = L * hp->n_head, nb = c->nb < hist->n_bins ? c->nb : hist->n_bins;
        const double *habs = c->hh, *hsgn = c->hh + rows * c->nb, *hsk = c->hh + 2 * rows * c->nb;
        for (int64_t r = 0; r < rows; r++) {
            for (int64_t b = 0; b < nb; b++) {
                hist->abs[r * hist->n_bins + b] += habs[r * c->nb + b];
                hist->sgn[r * hist->n_bins + b] += hsgn[r * c->nb + b];
            }
            hist->sink_abs[r] += hsk[r];
            if (hist->sink_sgn) hist->sink_sgn[r] += hsk[rows + r];
        }
    }
    if (d_embed) MOA_TRY(moa_cuda_download(cx, d_embed, d_cur, sizeof(float) * (size_t)(n * d)));
    double loss = 0;
    for (int64_t r = 0; r < R; r++) loss += c->lh[r];
    if (loss_out) *loss_out = loss / (double)R;
    return MOA_OK;
}

static const moa_profiler_device_ops cuda_ops = {
    .name = "cuda",
    .create = moa_profiler_cuda_create,
    .free_state = moa_profiler_cuda_free,
    .sample = moa_profiler_cuda_sample,
};

const moa_profiler_device_ops *moa_profiler_device_get(moa_device_kind kind) {
    return kind == MOA_DEVICE_CUDA ? &cuda_ops : NULL;
}
