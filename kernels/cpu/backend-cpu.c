/* backend-cpu.c - the CPU backend (moa/backend.h): host memory and every op of the
 * table, each a thin call of the named kernel of kernels/cpu (ops.h, rope.h, attn-train.h,
 * quant.h's moa_weight products). The context is NULL, or a RoPE table
 * (moa_backend_cpu_rope) that only the rope entry reads.
 * Complete by construction: tests/kernels/test_backend_ops.c fails on a NULL entry. */
#include "moa/backend.h"
#include "moa/attn-train.h"
#include "moa/ops.h"
#include "moa/quant.h"
#include "moa/rope.h"
#include "moa/common.h"

#include <stdlib.h>
#include <string.h>

/* ---- memory ------------------------------------------------------------------------------ */

static moa_status cpu_alloc(void *ctx, size_t bytes, void **out) {
    (void)ctx;
    *out = NULL;
    if (!bytes) return MOA_OK;
    if (!(*out = moa_alloc_aligned(bytes, 1)))   /* 64-byte aligned, for the SIMD kernels */
        return moa_err(MOA_ERR_NOMEM, "cpu backend: out of memory for %zu bytes", bytes);
    return MOA_OK;
}
static void cpu_free(void *ctx, void *p) { (void)ctx; moa_free_aligned(p); }
static moa_status cpu_copy(void *ctx, void *dst, const void *src, size_t bytes) {
    (void)ctx;
    if (bytes) memmove(dst, src, bytes);
    return MOA_OK;
}
static moa_status cpu_sync(void *ctx) { (void)ctx; return MOA_OK; }
static moa_status cpu_memset0(void *ctx, void *p, size_t bytes) {
    (void)ctx;
    if (bytes) memset(p, 0, bytes);
    return MOA_OK;
}

/* ---- profiler attention -------------------------------------------------------------------- */

static moa_status cpu_attn_fwd_lse(void *ctx, const moa_attn_train_shape *s, const float *Q,
                                   const float *K, const float *V, float *O, float *LSE) {
    (void)ctx;
    return moa_attn_fwd_lse(s, Q, K, V, O, LSE);
}
static moa_status cpu_attn_bwd_influence(void *ctx, const moa_attn_train_shape *s,
                                         const float *Q, const float *K, const float *V,
                                         const float *O, const float *dO, const float *LSE,
                                         float *dQ, float *dK, float *dV, moa_influence_acc *acc) {
    (void)ctx;
    return moa_attn_bwd_influence(s, Q, K, V, O, dO, LSE, dQ, dK, dV, acc);
}

/* ---- engine and profiler ops ------------------------------------------------------------------ */

static moa_status cpu_rmsnorm(void *ctx, const float *x, const float *w, float *y, int64_t n,
                              int64_t d, float eps) {
    (void)ctx;
    if (n > 0 && d > 0) moa_rmsnorm_rows(x, w, y, n, d, eps);
    return MOA_OK;
}
/* ctx: NULL, or a RoPE table (moa_backend_cpu_rope) used when it has this call's rotation */
static moa_status cpu_rope(void *ctx, float *x, int64_t n, int n_heads, int hd, int rope_dim,
                           float base, int64_t pos0, int inverse, int neox) {
    const moa_rope_table *t = (const moa_rope_table *)ctx;
    if (t && t->rope_dim == rope_dim && t->base == base && t->neox == neox && rope_dim <= hd &&
        pos0 >= 0 && pos0 + n <= t->n_pos) {
        if (n > 0) moa_rope_rows(t, x, n, n_heads, hd, pos0, inverse);
        return MOA_OK;
    }
    return moa_rope_rows_at(x, n, n_heads, hd, rope_dim, base, pos0, inverse, neox);
}
static moa_status cpu_swiglu(void *ctx, float *g, const float *u, int64_t n) {
    (void)ctx;
    if (n > 0) moa_silu_mul(g, u, n);
    return MOA_OK;
}
static moa_status cpu_add(void *ctx, float *x, const float *y, int64_t n) {
    (void)ctx;
    if (n > 0) moa_add_rows(x, y, n);
    return MOA_OK;
}
static moa_status cpu_swiglu_to(void *ctx, const float *g, const float *u, float *a, int64_t n) {
    (void)ctx;
    if (n > 0) moa_silu_mul_to(g, u, a, n);
    return MOA_OK;
}
static moa_status cpu_swiglu_bwd(void *ctx, float *g, float *u, const float *da, int64_t n) {
    (void)ctx;
    if (n > 0) moa_swiglu_bwd(g, u, da, n);
    return MOA_OK;
}
static moa_status cpu_rmsnorm_bwd_add(void *ctx, const float *x, const float *w, const float *dy,
                                      float *dx, int64_t n, int64_t d, float eps) {
    (void)ctx;
    if (n > 0 && d > 0) moa_rmsnorm_bwd_add_rows(x, w, dy, dx, n, d, eps);
    return MOA_OK;
}
static moa_status cpu_xent_grad(void *ctx, float *logits, const int32_t *targets, int64_t rows,
                                int64_t V, int64_t n_total, double *loss) {
    (void)ctx;
    if (rows <= 0) return MOA_OK;
    if (V <= 0 || n_total < 1)
        return moa_err(MOA_ERR_INVALID_ARG, "cpu backend xent_grad: %lld rows of %lld (of %lld)",
                       (long long)rows, (long long)V, (long long)n_total);
    moa_xent_grad_rows(logits, targets, rows, V, n_total, loss);
    return MOA_OK;
}
static moa_status cpu_key_smooth(void *ctx, float *q, float *k, const float *s, int64_t n,
                                 int n_head, int n_head_kv, int hd) {
    (void)ctx;
    if (n <= 0) return MOA_OK;
    if (n_head_kv <= 0 || n_head % n_head_kv || hd <= 0)
        return moa_err(MOA_ERR_INVALID_ARG, "cpu backend key_smooth: %d heads, %d KV heads, "
                       "head_dim %d", n_head, n_head_kv, hd);
    moa_key_smooth_rows(q, k, s, n, n_head, n_head_kv, hd);
    return MOA_OK;
}

static moa_status cpu_embed(void *ctx, const moa_backend_embd *t, const int32_t *tokens, int64_t n,
                            float *x) {
    (void)ctx;
    const size_t rb = moa_ggml_row_bytes((moa_ggml_type)t->type, t->d);
    const uint8_t *rows = (const uint8_t *)(t->rows ? t->rows : t->host_rows);
    for (int64_t i = 0; i < n; i++)
        moa_dequant_row((moa_ggml_type)t->type, rows + (size_t)tokens[i] * rb, x + i * t->d, t->d);
    return MOA_OK;
}
static moa_status cpu_matmul(void *ctx, const void *const *w, int nw, const float *x, int64_t n,
                             float *const *y) {
    (void)ctx;
    if (n <= 0) return MOA_OK;
    if (nw < 1 || nw > 8)
        return moa_err(MOA_ERR_INVALID_ARG, "cpu backend matmul: %d weights (1..8)", nw);
    if (nw == 1) {
        moa_weight_matmul((const moa_weight *)w[0], x, n, y[0]);
        return MOA_OK;
    }
    moa_weight_matmul_multi((const moa_weight *const *)w, nw, x, n, y);
    return MOA_OK;
}
static moa_status cpu_matmul_to_host(void *ctx, const void *w, const float *x, int64_t n, float *y) {
    (void)ctx;
    if (n > 0) moa_weight_matmul((const moa_weight *)w, x, n, y);
    return MOA_OK;
}

static moa_status cpu_matmul_bwd(void *ctx, const void *w, const float *dy, int64_t n, float *dx,
                                 float beta) {
    (void)ctx;
    const moa_weight *W = (const moa_weight *)w;
    if (n <= 0) return MOA_OK;
    if (!W->f32)
        return moa_err(MOA_ERR_UNSUPPORTED, "cpu backend matmul_bwd: the weight [%lld][%lld] has no "
                       "f32 copy (load the model with f32 weights)", (long long)W->n_out,
                       (long long)W->n_in);
    moa_weight_matmul_bwd(W, dy, n, dx, beta);
    return MOA_OK;
}

moa_backend moa_backend_cpu(void) {
    moa_backend b;
    memset(&b, 0, sizeof b);
    b.name = "cpu";
    b.kind = MOA_DEVICE_CPU;
    b.ctx = NULL;
    b.alloc = cpu_alloc;
    b.free = cpu_free;
    b.upload = cpu_copy;
    b.download = cpu_copy;
    b.sync = cpu_sync;
    b.attn_fwd_lse = cpu_attn_fwd_lse;
    b.attn_bwd_influence = cpu_attn_bwd_influence;
    b.rmsnorm = cpu_rmsnorm;
    b.rope = cpu_rope;
    b.swiglu = cpu_swiglu;
    b.copy = cpu_copy;
    b.memset0 = cpu_memset0;
    b.add = cpu_add;
    b.swiglu_to = cpu_swiglu_to;
    b.swiglu_bwd = cpu_swiglu_bwd;
    b.rmsnorm_bwd_add = cpu_rmsnorm_bwd_add;
    b.xent_grad = cpu_xent_grad;
    b.key_smooth = cpu_key_smooth;
    b.embed = cpu_embed;
    b.matmul = cpu_matmul;
    b.matmul_to_host = cpu_matmul_to_host;
    b.matmul_bwd = cpu_matmul_bwd;
    return b;
}

moa_backend moa_backend_cpu_rope(const moa_rope_table *t) {
    moa_backend b = moa_backend_cpu();
    b.ctx = (void *)t;   /* read only */
    return b;
}
