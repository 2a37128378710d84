/* attn-train.c - profiler attention kernels: causal forward with row log-sum-exp, fused
 * backward with attention-influence histograms (attn-train.h), their double-precision
 * references, and the run-time choice of the elementwise tile code (attn-train-tile.inc,
 * compiled here for the baseline ISA and in attn-train-avx2.c / -avx512.c).
 *
 * Fast path: work item = (KV head u, query block of AT_TILE tokens) with the G query heads of
 * the group stacked into one M = G*nq row tile (K and V tiles are read once for the group);
 * per key block: sgemm for the products, the tile step for softmax / dS / influence. */
#include "moa/attn-train.h"
#include "attn-train-impl.h"
#include "moa/quant.h"        /* moa_cpu_has_avx2 / moa_cpu_has_avx512 */
#include "moa/common.h"

#include <cblas.h>
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#define AT_SUFFIX(name) name##_generic
#include "attn-train-tile.inc"

#define AT_TILE 64   /* query and key tokens per tile (query blocks and key blocks align) */

/* ---- parameters, ISA choice -------------------------------------------------------------- */

moa_attn_train_shape moa_attn_train_default_shape(int n, int n_head, int n_kv, int hd) {
    moa_attn_train_shape s = { n, n_head, n_kv, hd, 64, 64, 1e-6f };
    return s;
}

int moa_attn_train_n_bins(const moa_attn_train_shape *s) {
    return s->block > 0 ? (s->n + s->block - 1) / s->block : 0;
}

static moa_attn_train_isa g_isa_req = MOA_ATTN_TRAIN_ISA_AUTO;

void moa_attn_train_set_isa(moa_attn_train_isa isa) { g_isa_req = isa; }

moa_attn_train_isa moa_attn_train_get_isa(void) {
    const int has512 = moa_cpu_has_avx512(), has2 = moa_cpu_has_avx2();
    switch (g_isa_req) {
    case MOA_ATTN_TRAIN_ISA_AVX512: return has512 ? MOA_ATTN_TRAIN_ISA_AVX512 : MOA_ATTN_TRAIN_ISA_GENERIC;
    case MOA_ATTN_TRAIN_ISA_AVX2: return has2 ? MOA_ATTN_TRAIN_ISA_AVX2 : MOA_ATTN_TRAIN_ISA_GENERIC;
    case MOA_ATTN_TRAIN_ISA_GENERIC: return MOA_ATTN_TRAIN_ISA_GENERIC;
    default:
        return has512 ? MOA_ATTN_TRAIN_ISA_AVX512
             : has2   ? MOA_ATTN_TRAIN_ISA_AVX2 : MOA_ATTN_TRAIN_ISA_GENERIC;
    }
}

const char *moa_attn_train_isa_name(moa_attn_train_isa isa) {
    switch (isa) {
    case MOA_ATTN_TRAIN_ISA_AUTO: return "auto";
    case MOA_ATTN_TRAIN_ISA_GENERIC: return "generic";
    case MOA_ATTN_TRAIN_ISA_AVX2: return "avx2";
    case MOA_ATTN_TRAIN_ISA_AVX512: return "avx512";
    }
    return "?";
}

typedef struct {
    void (*fwd)(const at_fwd_tile *);
    void (*bwd)(const at_bwd_tile *);
} at_ops;

static at_ops at_ops_get(void) {
    switch (moa_attn_train_get_isa()) {
    case MOA_ATTN_TRAIN_ISA_AVX512: return (at_ops){ at_fwd_tile_avx512, at_bwd_tile_avx512 };
    case MOA_ATTN_TRAIN_ISA_AVX2: return (at_ops){ at_fwd_tile_avx2, at_bwd_tile_avx2 };
    default: return (at_ops){ at_fwd_tile_generic, at_bwd_tile_generic };
    }
}

static moa_status check_shape(const moa_attn_train_shape *s, const char *fn) {
    if (!s) return moa_err(MOA_ERR_INVALID_ARG, "%s: shape is NULL", fn);
    if (s->n < 1 || s->n_head < 1 || s->n_kv < 1 || s->hd < 1 || s->n_head % s->n_kv != 0)
        return moa_err(MOA_ERR_INVALID_ARG,
                       "%s: bad shape n=%d n_head=%d n_kv=%d hd=%d (need all >= 1 and n_head a "
                       "multiple of n_kv)", fn, s->n, s->n_head, s->n_kv, s->hd);
    if (s->sink < 0 || s->block < 1 || !(s->eps >= 0.0f) || !isfinite(s->eps))
        return moa_err(MOA_ERR_INVALID_ARG,
                       "%s: bad influence settings sink=%d block=%d eps=%g (need sink >= 0, "
                       "block >= 1, finite eps >= 0)", fn, s->sink, s->block, (double)s->eps);
    /* key positions travel as float in the tile step (exact up to 2^24) */
    if (s->n > (1 << 24))
        return moa_err(MOA_ERR_INVALID_ARG, "%s: n=%d too large (at most 2^24 tokens)", fn, s->n);
    return MOA_OK;
}

static moa_status check_acc(const moa_attn_train_shape *s, const moa_influence_acc *acc,
                            const char *fn) {
    if (!acc) return MOA_OK;
    if (!acc->abs || !acc->sgn || !acc->sink_abs || !acc->sink_sgn)
        return moa_err(MOA_ERR_INVALID_ARG, "%s: influence accumulator has a NULL array", fn);
    if (acc->n_bins < moa_attn_train_n_bins(s))
        return moa_err(MOA_ERR_INVALID_ARG,
                       "%s: influence accumulator has %d bins, n=%d block=%d needs %d", fn,
                       acc->n_bins, s->n, s->block, moa_attn_train_n_bins(s));
    return MOA_OK;
}

#define CHECK_PTRS(fn, ...)                                                                 \
    do { const void *ps_[] = { __VA_ARGS__ };                                               \
         for (size_t k_ = 0; k_ < sizeof ps_ / sizeof ps_[0]; k_++)                        \
             if (!ps_[k_]) return moa_err(MOA_ERR_INVALID_ARG, "%s: argument %zu is NULL",  \
                                          fn, k_ + 2);                                      \
    } while (0)

static float attn_scale(int hd) { return (float)(1.0 / sqrt((double)hd)); }

/* The geometry of the work item with query block qb (of any KV head u): the group's G query
 * heads over tokens i0 .. i0+nq-1, stacked as M = G*nq rows (row g*nq + t: head u*G + g at
 * token i0 + t); ldq and ldk, the token strides of Q, O, dO, dQ and of K, V, dK, dV. */
typedef struct {
    int n, hd, G, i0, nq, M;
    size_t ldq, ldk;
    float scale;
} at_item;

/* Rows of the tile starting at token t0 < n. */
static int tile_len(int n, int t0) { return n - t0 < AT_TILE ? n - t0 : AT_TILE; }

static at_item item_at(const moa_attn_train_shape *s, int qb) {
    at_item it;
    it.n = s->n;
    it.hd = s->hd;
    it.G = s->n_head / s->n_kv;
    it.ldq = (size_t)s->n_head * s->hd;
    it.ldk = (size_t)s->n_kv * s->hd;
    it.i0 = qb * AT_TILE;
    it.nq = tile_len(s->n, it.i0);
    it.M = it.G * it.nq;
    it.scale = attn_scale(s->hd);
    return it;
}

/* ---- fast forward ------------------------------------------------------------------------ */

typedef struct {
    const moa_attn_train_shape *s;
    const float *Q, *K, *V;
    float *O, *LSE;
    at_ops ops;
} fwd_ctx;

/* Per-thread scratch of the forward (M <= G * AT_TILE rows). */
typedef struct {
    float *QsT;      /* [hd][M]  the group's queries, transposed */
    float *ST;       /* [AT_TILE][M]  scores / probabilities, keys x rows */
    float *Oacc;     /* [M][hd] */
    float *m;        /* [M] running max */
    float *tmp;      /* [3M] tile-step scratch */
    double *l;       /* [M] running sum */
} fwd_scratch;

#define FWD_SCRATCH_F(M, hd) ((size_t)(M) * (hd) * 2 + (size_t)(M) * AT_TILE + (size_t)(M) * 4 + 32)

static fwd_scratch fwd_scratch_at(float *b, double *db, int M, int hd) {
    fwd_scratch w;
    w.QsT = b;                           b += (size_t)M * hd;
    w.ST = b;                            b += (size_t)M * AT_TILE;
    w.Oacc = b;                          b += (size_t)M * hd;
    w.m = b;                             b += M;
    w.tmp = b;
    w.l = db;
    return w;
}

static void fwd_item(const fwd_ctx *c, const fwd_scratch *w, int u, int qb) {
    const at_item it = item_at(c->s, qb);
    /* QsT [hd][M]: column g*nq + t = q of head u*G+g at token i0+t */
    for (int g = 0; g < it.G; g++)
        for (int t = 0; t < it.nq; t++) {
            const float *q = c->Q + (size_t)(it.i0 + t) * it.ldq + (size_t)(u * it.G + g) * it.hd;
            for (int d = 0; d < it.hd; d++) w->QsT[(size_t)d * it.M + g * it.nq + t] = q[d];
        }
    for (int r = 0; r < it.M; r++) { w->m[r] = -INFINITY; w->l[r] = 0.0; }
    memset(w->Oacc, 0, sizeof(float) * (size_t)it.M * it.hd);
    for (int kb = 0; kb <= qb; kb++) {
        const int j0 = kb * AT_TILE, bk = tile_len(it.n, j0);
        const float *Kb = c->K + (size_t)j0 * it.ldk + (size_t)u * it.hd;   /* [bk][hd], ld ldk */
        const float *Vb = c->V + (size_t)j0 * it.ldk + (size_t)u * it.hd;
        /* ST [bk][M] = scale * Kb QsT */
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, bk, it.M, it.hd, it.scale, Kb,
                    (int)it.ldk, w->QsT, it.M, 0.0f, w->ST, it.M);
        const at_fwd_tile ft = { w->ST, it.M, it.M, it.nq, it.i0, j0, bk, w->m, w->l, w->Oacc,
                                 it.hd, w->tmp };
        c->ops.fwd(&ft);
        /* Oacc [M][hd] += P~ Vb = ST^T Vb */
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, it.M, it.hd, bk, 1.0f, w->ST, it.M,
                    Vb, (int)it.ldk, 1.0f, w->Oacc, it.hd);
    }
    /* O = Oacc / l;  LSE = m + ln l */
    for (int g = 0; g < it.G; g++)
        for (int t = 0; t < it.nq; t++) {
            const int r = g * it.nq + t, h = u * it.G + g;
            const float inv = (float)(1.0 / w->l[r]);
            float *o = c->O + (size_t)(it.i0 + t) * it.ldq + (size_t)h * it.hd;
            for (int d = 0; d < it.hd; d++) o[d] = w->Oacc[(size_t)r * it.hd + d] * inv;
            c->LSE[(size_t)h * it.n + it.i0 + t] = (float)((double)w->m[r] + log(w->l[r]));
        }
}

moa_status moa_attn_fwd_lse(const moa_attn_train_shape *s, const float *Q, const float *K,
                            const float *V, float *O, float *LSE) {
    static const char fn[] = "moa_attn_fwd_lse";
    MOA_TRY(check_shape(s, fn));
    CHECK_PTRS(fn, Q, K, V, O, LSE);
    const int G = s->n_head / s->n_kv, hd = s->hd, M = G * AT_TILE;
    const int nth = omp_get_max_threads();
    const size_t per_f = FWD_SCRATCH_F(M, hd);
    float *fbuf = moa_alloc_aligned((size_t)nth * per_f, sizeof(float));
    double *dbuf = moa_alloc_aligned((size_t)nth * M, sizeof(double));
    if (!fbuf || !dbuf) {
        moa_free_aligned(fbuf); moa_free_aligned(dbuf);
        return moa_err(MOA_ERR_NOMEM, "%s: no memory for tile scratch (%d threads)", fn, nth);
    }
    const fwd_ctx c = { s, Q, K, V, O, LSE, at_ops_get() };
    const int nqb = (s->n + AT_TILE - 1) / AT_TILE, n_items = nqb * s->n_kv;
    #pragma omp parallel num_threads(nth)
    {
        const int tid = omp_get_thread_num();
        const fwd_scratch w = fwd_scratch_at(fbuf + (size_t)tid * per_f, dbuf + (size_t)tid * M, M, hd);
        /* largest query blocks first (most key blocks) for balance */
        #pragma omp for schedule(dynamic, 1)
        for (int it = 0; it < n_items; it++)
            fwd_item(&c, &w, it % s->n_kv, nqb - 1 - it / s->n_kv);
    }
    moa_free_aligned(fbuf);
    moa_free_aligned(dbuf);
    return MOA_OK;
}

/* ---- fast backward with influence -------------------------------------------------------- */

typedef struct {
    const moa_attn_train_shape *s;
    const float *Q, *K, *V, *O, *dO, *LSE;
    float *dQ;
    at_ops ops;
    int infl;
} bwd_ctx;

/* Per-thread scratch and partial sums. */
typedef struct {
    double *Arow, *Brow;             /* [M] dominant-entry row sums (at_bwd_tile) */
    float *pstar, *dpstar, *jstar;   /* [M] */
    float *Qs, *dOs, *dQacc;         /* [M][hd] */
    float *QsT, *dOsT;               /* [hd][M] */
    float *ST, *dPT;                 /* [AT_TILE][M] keys x rows */
    float *lse, *Dv;                 /* [M] */
    float *tmp;                      /* [3M] tile-step scratch */
    float *dK, *dV;                  /* [n][n_kv*hd] this thread's partial sums */
    double *dist_abs, *dist_sgn;     /* [n_head][n] per-distance influence sums */
    double *sink_abs, *sink_sgn;     /* [n_head] */
} bwd_scratch;

#define BWD_SCRATCH_F(M, hd) \
    ((size_t)(M) * (hd) * 5 + (size_t)(M) * AT_TILE * 2 + (size_t)(M) * 12 + 64)

static void bwd_scratch_tiles(bwd_scratch *w, float *b, int M, int hd) {
    w->Arow = (double *)(void *)b;  b += (size_t)M * 2;   /* M even (G * AT_TILE): aligned */
    w->Brow = (double *)(void *)b;  b += (size_t)M * 2;
    w->pstar = b;  b += M;
    w->dpstar = b; b += M;
    w->jstar = b;  b += M;
    w->Qs = b;    b += (size_t)M * hd;
    w->dOs = b;   b += (size_t)M * hd;
    w->dQacc = b; b += (size_t)M * hd;
    w->QsT = b;   b += (size_t)M * hd;
    w->dOsT = b;  b += (size_t)M * hd;
    w->ST = b;    b += (size_t)M * AT_TILE;
    w->dPT = b;   b += (size_t)M * AT_TILE;
    w->lse = b;   b += M;
    w->Dv = b;    b += M;
    w->tmp = b;
}

/* E of each row's dominant entry (P_ij > 1/2, at most one per row), once the row is complete.
 * With A = sum_{k != j} P_ik = 1 - P_ij and B = sum_{k != j} P_ik dP_ik:
 *   dP_ij - D_i = dP_ij - P_ij dP_ij - B = A dP_ij - B,   E_ij = -P_ij (A dP_ij - B) / (A + eps)
 * Both A and B are sums of small terms, so this stays accurate where 1 - P_ij is tiny; the
 * direct form divides two O(1 - P) differences of O(1) float numbers. Row 0 (key 0 only):
 * E = -P dP. Added to the histogram after the item's tiles, rows in order. */
static void bwd_dominant(const moa_attn_train_shape *s, const bwd_scratch *w, int i0, int nq,
                         int M, size_t h0) {
    const double eps = s->eps;
    for (int r = 0; r < M; r++) {
        if (w->jstar[r] < 0.0f) continue;
        const int i = i0 + r % nq, j = (int)w->jstar[r];
        const size_t h = h0 + (size_t)(r / nq);
        const double P = w->pstar[r], dp = w->dpstar[r], A = w->Arow[r], B = w->Brow[r];
        const double E = i == 0 ? -P * dp : -P * (A * dp - B) / fmax(A + eps, eps + 0x1p-24);
        if (j < s->sink) {
            w->sink_abs[h] += fabs(E);
            w->sink_sgn[h] += E;
        } else {
            w->dist_abs[h * s->n + (size_t)(i - j)] += fabs(E);
            w->dist_sgn[h * s->n + (size_t)(i - j)] += E;
        }
    }
}

static void bwd_item(const bwd_ctx *c, const bwd_scratch *w, int u, int qb) {
    const moa_attn_train_shape *s = c->s;
    const at_item it = item_at(s, qb);
    /* stack the group: row g*nq + t <- head u*G+g, token i0+t (Qs, dOs and transposes);
     * D_i = dO_i . O_i (double) */
    for (int g = 0; g < it.G; g++)
        for (int t = 0; t < it.nq; t++) {
            const int r = g * it.nq + t, h = u * it.G + g;
            const size_t off = (size_t)(it.i0 + t) * it.ldq + (size_t)h * it.hd;
            memcpy(w->Qs + (size_t)r * it.hd, c->Q + off, sizeof(float) * it.hd);
            memcpy(w->dOs + (size_t)r * it.hd, c->dO + off, sizeof(float) * it.hd);
            double D = 0;
            for (int d = 0; d < it.hd; d++) {
                w->QsT[(size_t)d * it.M + r] = c->Q[off + d];
                w->dOsT[(size_t)d * it.M + r] = c->dO[off + d];
                D += (double)c->dO[off + d] * c->O[off + d];
            }
            w->Dv[r] = (float)D;
            w->lse[r] = c->LSE[(size_t)h * it.n + it.i0 + t];
        }
    memset(w->dQacc, 0, sizeof(float) * (size_t)it.M * it.hd);
    for (int r = 0; r < it.M; r++) {
        w->Arow[r] = 0; w->Brow[r] = 0;
        w->pstar[r] = 0; w->dpstar[r] = 0; w->jstar[r] = -1.0f;
    }
    const size_t h0 = (size_t)u * it.G;
    for (int kb = 0; kb <= qb; kb++) {
        const int j0 = kb * AT_TILE, bk = tile_len(it.n, j0);
        const size_t koff = (size_t)j0 * it.ldk + (size_t)u * it.hd;
        const float *Kb = c->K + koff, *Vb = c->V + koff;      /* [bk][hd], ld ldk */
        /* ST = scale Kb QsT,  dPT = Vb dOsT   ([bk][M]: S^T and dP^T) */
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, bk, it.M, it.hd, it.scale, Kb,
                    (int)it.ldk, w->QsT, it.M, 0.0f, w->ST, it.M);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, bk, it.M, it.hd, 1.0f, Vb,
                    (int)it.ldk, w->dOsT, it.M, 0.0f, w->dPT, it.M);
        /* ST <- P^T, dPT <- dS^T, influence into the per-distance sums of heads h0 .. h0+G-1 */
        const at_bwd_tile bt = {
            w->ST, w->dPT, it.M, it.M, it.nq, it.i0, j0, bk, w->lse, w->Dv,
            c->infl ? w->dist_abs + h0 * it.n : NULL, c->infl ? w->dist_sgn + h0 * it.n : NULL,
            c->infl ? w->sink_abs + h0 : NULL, c->infl ? w->sink_sgn + h0 : NULL,
            it.n, s->sink, s->eps, w->Arow, w->Brow, w->pstar, w->dpstar, w->jstar, w->tmp };
        c->ops.bwd(&bt);
        /* dQacc += dS Kb;  dK[j0..] += scale dS^T Qs;  dV[j0..] += P^T dOs (sum over the group) */
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, it.M, it.hd, bk, 1.0f, w->dPT, it.M,
                    Kb, (int)it.ldk, 1.0f, w->dQacc, it.hd);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, bk, it.hd, it.M, it.scale, w->dPT,
                    it.M, w->Qs, it.hd, 1.0f, w->dK + koff, (int)it.ldk);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, bk, it.hd, it.M, 1.0f, w->ST, it.M,
                    w->dOs, it.hd, 1.0f, w->dV + koff, (int)it.ldk);
    }
    if (c->infl) bwd_dominant(s, w, it.i0, it.nq, it.M, h0);
    /* dQ = scale dS K */
    for (int g = 0; g < it.G; g++)
        for (int t = 0; t < it.nq; t++) {
            float *dq = c->dQ + (size_t)(it.i0 + t) * it.ldq + (size_t)(u * it.G + g) * it.hd;
            const float *a = w->dQacc + (size_t)(g * it.nq + t) * it.hd;
            for (int d = 0; d < it.hd; d++) dq[d] = it.scale * a[d];
        }
}

moa_status moa_attn_bwd_influence(const moa_attn_train_shape *s, const float *Q,
                                  const float *K, const float *V, const float *O,
                                  const float *dO, const float *LSE, float *dQ, float *dK,
                                  float *dV, moa_influence_acc *acc) {
    static const char fn[] = "moa_attn_bwd_influence";
    MOA_TRY(check_shape(s, fn));
    CHECK_PTRS(fn, Q, K, V, O, dO, LSE, dQ, dK, dV);
    MOA_TRY(check_acc(s, acc, fn));
    const int n = s->n, H = s->n_head, G = H / s->n_kv, hd = s->hd, M = G * AT_TILE;
    const size_t kvsz = (size_t)n * s->n_kv * hd;            /* floats in dK */
    const int nth = omp_get_max_threads();
    /* float scratch per thread: tiles, plus dK/dV partials for threads >= 1 (thread 0 sums
     * straight into the outputs) */
    const size_t tile_f = BWD_SCRATCH_F(M, hd);
    const size_t dist_d = acc ? (size_t)H * n * 2 + (size_t)H * 2 : 0;
    float *tbuf = moa_alloc_aligned((size_t)nth * tile_f, sizeof(float));
    float *pbuf = nth > 1 ? moa_alloc_aligned((size_t)(nth - 1) * kvsz * 2, sizeof(float)) : NULL;
    double *dbuf = acc ? moa_calloc_array((size_t)nth * dist_d, sizeof(double)) : NULL;
    if (!tbuf || (nth > 1 && !pbuf) || (acc && !dbuf)) {
        moa_free_aligned(tbuf); moa_free_aligned(pbuf); free(dbuf);
        return moa_err(MOA_ERR_NOMEM, "%s: no memory for scratch (n=%d, %d threads)", fn, n, nth);
    }
    const bwd_ctx c = { s, Q, K, V, O, dO, LSE, dQ, at_ops_get(), acc != NULL };
    const int nqb = (n + AT_TILE - 1) / AT_TILE, n_items = nqb * s->n_kv;
    int nthr = 1;
    #pragma omp parallel num_threads(nth)
    {
        const int tid = omp_get_thread_num(), nt = omp_get_num_threads();
        #pragma omp single
        nthr = nt;
        bwd_scratch w;
        bwd_scratch_tiles(&w, tbuf + (size_t)tid * tile_f, M, hd);
        w.dK = tid == 0 ? dK : pbuf + (size_t)(tid - 1) * kvsz * 2;
        w.dV = tid == 0 ? dV : w.dK + kvsz;
        double *db = acc ? dbuf + (size_t)tid * dist_d : NULL;
        w.dist_abs = db;
        w.dist_sgn = db ? db + (size_t)H * n : NULL;
        w.sink_abs = db ? db + (size_t)H * n * 2 : NULL;
        w.sink_sgn = db ? db + (size_t)H * n * 2 + H : NULL;
        memset(w.dK, 0, sizeof(float) * kvsz);
        memset(w.dV, 0, sizeof(float) * kvsz);
        #pragma omp barrier
        /* static cyclic schedule (deterministic partial sums); largest query blocks first */
        for (int it = tid; it < n_items; it += nt)
            bwd_item(&c, &w, it % s->n_kv, nqb - 1 - it / s->n_kv);
        #pragma omp barrier
        /* dK = sum over threads of the partials, in thread order */
        #pragma omp for schedule(static)
        for (size_t k = 0; k < kvsz; k++) {
            float a = dK[k], v = dV[k];
            for (int t = 1; t < nt; t++) {
                a += pbuf[(size_t)(t - 1) * kvsz * 2 + k];
                v += pbuf[(size_t)(t - 1) * kvsz * 2 + kvsz + k];
            }
            dK[k] = a;
            dV[k] = v;
        }
    }
    if (acc) {
        /* bin b of head h = sum over threads t (in order) of sum over distances
         * d = b*block .. (b+1)*block-1 (ascending) of that thread's per-distance sums */
        const int nb = moa_attn_train_n_bins(s);
        for (int h = 0; h < H; h++) {
            for (int bi = 0; bi < nb; bi++) {
                const int d0 = bi * s->block, d1 = d0 + s->block < n ? d0 + s->block : n;
                double sa = 0, sg = 0;
                for (int t = 0; t < nthr; t++) {
                    const double *da = dbuf + (size_t)t * dist_d + (size_t)h * n;
                    const double *dg = da + (size_t)H * n;
                    for (int d = d0; d < d1; d++) { sa += da[d]; sg += dg[d]; }
                }
                acc->abs[(size_t)h * acc->n_bins + bi] += sa;
                acc->sgn[(size_t)h * acc->n_bins + bi] += sg;
            }
            double sa = 0, sg = 0;
            for (int t = 0; t < nthr; t++) {
                const double *sk = dbuf + (size_t)t * dist_d + (size_t)H * n * 2;
                sa += sk[h];
                sg += sk[H + h];
            }
            acc->sink_abs[h] += sa;
            acc->sink_sgn[h] += sg;
        }
    }
    moa_free_aligned(tbuf);
    moa_free_aligned(pbuf);
    free(dbuf);
    return MOA_OK;
}

/* ---- references: explicit n x n matrices, double precision -------------------------------- */

/* P [n][n] (row i: softmax over j <= i, 0 above the diagonal), O [n][hd], LSE [n] of head h. */
static void ref_head_fwd(const moa_attn_train_shape *s, const float *Q, const float *K,
                         const float *V, int h, double *P, double *O, double *LSE) {
    const int n = s->n, hd = s->hd, u = h / (s->n_head / s->n_kv);
    const size_t ldq = (size_t)s->n_head * hd, ldk = (size_t)s->n_kv * hd;
    const double scale = 1.0 / sqrt((double)hd);
    for (int i = 0; i < n; i++) {
        const float *q = Q + (size_t)i * ldq + (size_t)h * hd;
        double *p = P + (size_t)i * n, mx = -INFINITY;
        for (int j = 0; j < n; j++) {
            if (j > i) { p[j] = 0; continue; }
            const float *k = K + (size_t)j * ldk + (size_t)u * hd;
            double dot = 0;
            for (int d = 0; d < hd; d++) dot += (double)q[d] * k[d];
            p[j] = scale * dot;                          /* s_ij */
            if (p[j] > mx) mx = p[j];
        }
        double l = 0;
        for (int j = 0; j <= i; j++) l += exp(p[j] - mx);
        LSE[i] = mx + log(l);                            /* ln sum_j exp(s_ij) */
        for (int j = 0; j <= i; j++) p[j] = exp(p[j] - LSE[i]);
        for (int d = 0; d < hd; d++) {
            double o = 0;
            for (int j = 0; j <= i; j++) o += p[j] * V[(size_t)j * ldk + (size_t)u * hd + d];
            O[(size_t)i * hd + d] = o;                   /* O_i = sum_j P_ij v_j */
        }
    }
}

moa_status moa_attn_fwd_lse_ref(const moa_attn_train_shape *s, const float *Q, const float *K,
                                const float *V, float *O, float *LSE) {
    static const char fn[] = "moa_attn_fwd_lse_ref";
    MOA_TRY(check_shape(s, fn));
    CHECK_PTRS(fn, Q, K, V, O, LSE);
    const int n = s->n, hd = s->hd;
    double *P = moa_alloc_array((size_t)n * n, sizeof(double));
    double *Oh = moa_alloc_array((size_t)n * hd, sizeof(double));
    double *L = moa_alloc_array((size_t)n, sizeof(double));
    if (!P || !Oh || !L) {
        free(P); free(Oh); free(L);
        return moa_err(MOA_ERR_NOMEM, "%s: no memory for %d x %d matrices", fn, n, n);
    }
    for (int h = 0; h < s->n_head; h++) {
        ref_head_fwd(s, Q, K, V, h, P, Oh, L);
        for (int i = 0; i < n; i++) {
            for (int d = 0; d < hd; d++)
                O[(size_t)i * s->n_head * hd + (size_t)h * hd + d] = (float)Oh[(size_t)i * hd + d];
            LSE[(size_t)h * n + i] = (float)L[i];
        }
    }
    free(P); free(Oh); free(L);
    return MOA_OK;
}

moa_status moa_attn_bwd_influence_ref(const moa_attn_train_shape *s, const float *Q,
                                      const float *K, const float *V, const float *dO,
                                      float *dQ, float *dK, float *dV, moa_influence_acc *acc,
                                      double *E) {
    static const char fn[] = "moa_attn_bwd_influence_ref";
    MOA_TRY(check_shape(s, fn));
    CHECK_PTRS(fn, Q, K, V, dO, dQ, dK, dV);
    MOA_TRY(check_acc(s, acc, fn));
    const int n = s->n, hd = s->hd, H = s->n_head, G = H / s->n_kv;
    const size_t ldq = (size_t)H * hd, ldk = (size_t)s->n_kv * hd;
    const double scale = 1.0 / sqrt((double)hd), eps = s->eps;
    double *P = moa_alloc_array((size_t)n * n, sizeof(double));
    double *dS = moa_alloc_array((size_t)n * n, sizeof(double));
    double *Oh = moa_alloc_array((size_t)n * hd, sizeof(double));
    double *L = moa_alloc_array((size_t)n, sizeof(double));
    double *dKd = moa_calloc_array((size_t)n * ldk, sizeof(double));
    double *dVd = moa_calloc_array((size_t)n * ldk, sizeof(double));
    if (!P || !dS || !Oh || !L || !dKd || !dVd) {
        free(P); free(dS); free(Oh); free(L); free(dKd); free(dVd);
        return moa_err(MOA_ERR_NOMEM, "%s: no memory for %d x %d matrices", fn, n, n);
    }
    for (int h = 0; h < H; h++) {
        const int u = h / G;
        ref_head_fwd(s, Q, K, V, h, P, Oh, L);
        double *Eh = E ? E + (size_t)h * n * n : NULL;
        for (int i = 0; i < n; i++) {
            const float *go = dO + (size_t)i * ldq + (size_t)h * hd;
            double D = 0;                                  /* D_i = dO_i . O_i */
            for (int d = 0; d < hd; d++) D += (double)go[d] * Oh[(size_t)i * hd + d];
            for (int j = 0; j < n; j++) {
                double *ds = dS + (size_t)i * n + j;
                if (j > i) { *ds = 0; if (Eh) Eh[(size_t)i * n + j] = 0; continue; }
                const double p = P[(size_t)i * n + j];
                double dp = 0;                             /* dP_ij = dO_i . v_j */
                for (int d = 0; d < hd; d++) dp += (double)go[d] * V[(size_t)j * ldk + (size_t)u * hd + d];
                *ds = p * (dp - D);                        /* dS_ij = P_ij (dP_ij - D_i) */
                /* E_ij = -P_ij (dP_ij - D_i) / (1 - P_ij + eps); row 0: -P_0j dP_0j.
                 * Denominator >= eps + 2^-24, as in the fast path (P <= 1 - 2^-24). */
                const double e = i == 0 ? -p * dp : -*ds / fmax(1.0 - p + eps, eps + 0x1p-24);
                if (Eh) Eh[(size_t)i * n + j] = e;
                if (acc) {
                    if (j < s->sink) {
                        acc->sink_abs[h] += fabs(e);
                        acc->sink_sgn[h] += e;
                    } else {
                        const size_t b = (size_t)h * acc->n_bins + (size_t)((i - j) / s->block);
                        acc->abs[b] += fabs(e);
                        acc->sgn[b] += e;
                    }
                }
            }
        }
        /* dQ_i = scale sum_j dS_ij k_j;  dK_j += scale sum_i dS_ij q_i;  dV_j += sum_i P_ij dO_i */
        for (int i = 0; i < n; i++)
            for (int d = 0; d < hd; d++) {
                double a = 0;
                for (int j = 0; j <= i; j++)
                    a += dS[(size_t)i * n + j] * K[(size_t)j * ldk + (size_t)u * hd + d];
                dQ[(size_t)i * ldq + (size_t)h * hd + d] = (float)(scale * a);
            }
        for (int j = 0; j < n; j++)
            for (int d = 0; d < hd; d++) {
                double a = 0, b = 0;
                for (int i = j; i < n; i++) {
                    a += dS[(size_t)i * n + j] * Q[(size_t)i * ldq + (size_t)h * hd + d];
                    b += P[(size_t)i * n + j] * dO[(size_t)i * ldq + (size_t)h * hd + d];
                }
                dKd[(size_t)j * ldk + (size_t)u * hd + d] += scale * a;
                dVd[(size_t)j * ldk + (size_t)u * hd + d] += b;
            }
    }
    for (size_t k = 0; k < (size_t)n * ldk; k++) { dK[k] = (float)dKd[k]; dV[k] = (float)dVd[k]; }
    free(P); free(dS); free(Oh); free(L); free(dKd); free(dVd);
    return MOA_OK;
}
