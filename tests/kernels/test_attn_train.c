/* test_attn_train.c - profiler attention kernels (moa/attn-train.h): the fused tiled
 * forward/backward against the double-precision references on odd shapes and every ISA;
 * gradients against central finite differences of L = sum(O * R); the influence E against its
 * formula and against the exact loss change of masking one entry; fused histograms against
 * histograms binned from the explicit E; the "window loss == histogram suffix sum" identity. */
#include "moa/attn-train.h"
#include "moa/common.h"
#include "test.h"

#include <math.h>
#include <omp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* ---- helpers --------------------------------------------------------------------------- */

static uint64_t rng_state;
static double urand(void) {   /* uniform [-1, 1) */
    rng_state = rng_state * 6364136223846793005ULL + 1442695040888963407ULL;
    return (double)(rng_state >> 11) * (2.0 / 9007199254740992.0) - 1.0;
}
static float *rand_arr(size_t n, double amp) {
    float *a = malloc(n * sizeof(float));
    for (size_t k = 0; k < n; k++) a[k] = (float)(amp * urand());
    return a;
}

typedef struct {
    moa_attn_train_shape s;
    size_t nq, nk;              /* floats in Q (= O, dO, dQ) and in K (= V, dK, dV) */
    float *Q, *K, *V, *dO;
} tcase;

static tcase case_make(int n, int H, int U, int hd, int sink, int block, uint64_t seed) {
    tcase c;
    c.s = moa_attn_train_default_shape(n, H, U, hd);
    c.s.sink = sink;
    c.s.block = block;
    c.nq = (size_t)n * H * hd;
    c.nk = (size_t)n * U * hd;
    rng_state = seed;
    /* amplitude 2: scores spread over several units, so rows have both peaked and flat parts */
    c.Q = rand_arr(c.nq, 2.0);
    c.K = rand_arr(c.nk, 2.0);
    c.V = rand_arr(c.nk, 1.0);
    c.dO = rand_arr(c.nq, 1.0);
    return c;
}
static void case_free(tcase *c) { free(c->Q); free(c->K); free(c->V); free(c->dO); }

typedef struct { double *abs, *sgn, *sa, *ss; moa_influence_acc acc; } hist;
static hist hist_make(int H, int n_bins) {
    hist h;
    h.abs = calloc((size_t)H * n_bins, sizeof(double));
    h.sgn = calloc((size_t)H * n_bins, sizeof(double));
    h.sa = calloc((size_t)H, sizeof(double));
    h.ss = calloc((size_t)H, sizeof(double));
    h.acc = (moa_influence_acc){ h.abs, h.sgn, h.sa, h.ss, n_bins };
    return h;
}
static void hist_free(hist *h) { free(h->abs); free(h->sgn); free(h->sa); free(h->ss); }

/* |a - b| <= rtol |b| + atol * max|b| for every element; reports the worst one. */
static int arr_close(const char *what, const float *a, const float *b, size_t n, double rtol,
                     double atol) {
    double mx = 1e-2;   /* floor: an all-zero reference (n = 1: dS = 0) still allows rounding */
    for (size_t k = 0; k < n; k++) mx = fmax(mx, fabs(b[k]));
    size_t bad = 0, worst = 0;
    double worst_ex = -1;
    for (size_t k = 0; k < n; k++) {
        const double err = fabs((double)a[k] - b[k]), tol = rtol * fabs(b[k]) + atol * mx;
        if (!(err <= tol)) bad++;
        if (err - tol > worst_ex) { worst_ex = err - tol; worst = k; }
    }
    if (bad)
        fprintf(stderr, "  %s: %zu/%zu elements off, worst [%zu] %.9g vs %.9g (max|ref| %.3g)\n",
                what, bad, n, worst, a[worst], b[worst], mx);
    return bad == 0;
}

static const moa_attn_train_isa isas[] = {
    MOA_ATTN_TRAIN_ISA_GENERIC, MOA_ATTN_TRAIN_ISA_AVX2, MOA_ATTN_TRAIN_ISA_AVX512 };

/* shapes: n not a multiple of the 64-token tile; GQA groups 1, 3, 4; hd 16, 24, 40, 64 */
static const int shapes[][6] = {   /* n, n_head, n_kv, hd, sink, block */
    { 1, 1, 1, 16, 0, 64 },
    { 37, 3, 1, 16, 4, 16 },
    { 130, 8, 2, 64, 64, 64 },
    { 200, 2, 2, 64, 0, 7 },
    { 257, 9, 3, 16, 5, 32 },
    { 150, 6, 2, 64, 1, 100 },
    { 45, 4, 4, 40, 100, 9 },     /* hd 40; sink beyond n: every key is a sink key */
    { 70, 4, 1, 24, 0, 1 },       /* hd 24, group 4 on one KV head, block 1 (bin = distance) */
};
#define N_SHAPES (int)(sizeof shapes / sizeof shapes[0])

/* ---- forward / backward against the references ------------------------------------------ */

TEST(fwd_matches_ref) {
    for (int si = 0; si < N_SHAPES; si++) {
        const int *sh = shapes[si];
        tcase c = case_make(sh[0], sh[1], sh[2], sh[3], sh[4], sh[5], 100 + si);
        float *O = malloc(c.nq * 4), *Or = malloc(c.nq * 4);
        float *L = malloc((size_t)sh[0] * sh[1] * 4), *Lr = malloc((size_t)sh[0] * sh[1] * 4);
        CHECK_OK(moa_attn_fwd_lse_ref(&c.s, c.Q, c.K, c.V, Or, Lr));
        for (int k = 0; k < 3; k++) {
            moa_attn_train_set_isa(isas[k]);
            CHECK_OK(moa_attn_fwd_lse(&c.s, c.Q, c.K, c.V, O, L));
            char what[96];
            snprintf(what, sizeof what, "O n=%d H=%d U=%d hd=%d %s", sh[0], sh[1], sh[2], sh[3],
                     moa_attn_train_isa_name(moa_attn_train_get_isa()));
            CHECK_MSG(arr_close(what, O, Or, c.nq, 1e-4, 2e-6), "%s", what);
            what[0] = 'L';
            CHECK_MSG(arr_close(what, L, Lr, (size_t)sh[0] * sh[1], 1e-5, 1e-6), "%s", what);
        }
        moa_attn_train_set_isa(MOA_ATTN_TRAIN_ISA_AUTO);
        free(O); free(Or); free(L); free(Lr);
        case_free(&c);
    }
}

/* Histograms binned from an explicit E [n_head][n][n] by the definition. */
static void bin_explicit(const moa_attn_train_shape *s, const double *E, hist *h) {
    const int n = s->n;
    for (int hh = 0; hh < s->n_head; hh++)
        for (int i = 0; i < n; i++)
            for (int j = 0; j <= i; j++) {
                const double e = E[((size_t)hh * n + i) * n + j];
                if (j < s->sink) { h->sa[hh] += fabs(e); h->ss[hh] += e; }
                else {
                    const size_t b = (size_t)hh * h->acc.n_bins + (size_t)((i - j) / s->block);
                    h->abs[b] += fabs(e);
                    h->sgn[b] += e;
                }
            }
}

/* a ~ b for histograms: abs parts relative, signed parts relative to the abs totals. */
static int hist_close(const char *what, const hist *a, const hist *b, int H, int nb, double rtol) {
    int ok = 1;
    for (int h = 0; h < H; h++) {
        for (int k = 0; k < nb; k++) {
            const size_t x = (size_t)h * nb + k;
            const double tol = rtol * b->abs[x] + 1e-12;
            if (!(fabs(a->abs[x] - b->abs[x]) <= tol) || !(fabs(a->sgn[x] - b->sgn[x]) <= tol)) {
                if (ok) fprintf(stderr, "  %s: head %d bin %d: abs %.12g vs %.12g, sgn %.12g vs %.12g\n",
                                what, h, k, a->abs[x], b->abs[x], a->sgn[x], b->sgn[x]);
                ok = 0;
            }
        }
        const double tol = rtol * b->sa[h] + 1e-12;
        if (!(fabs(a->sa[h] - b->sa[h]) <= tol) || !(fabs(a->ss[h] - b->ss[h]) <= tol)) {
            if (ok) fprintf(stderr, "  %s: head %d sink: abs %.12g vs %.12g, sgn %.12g vs %.12g\n",
                            what, h, a->sa[h], b->sa[h], a->ss[h], b->ss[h]);
            ok = 0;
        }
    }
    return ok;
}

TEST(bwd_matches_ref) {
    for (int si = 0; si < N_SHAPES; si++) {
        const int *sh = shapes[si];
        const int n = sh[0], H = sh[1];
        tcase c = case_make(n, H, sh[2], sh[3], sh[4], sh[5], 200 + si);
        const int nb = moa_attn_train_n_bins(&c.s);
        float *O = malloc(c.nq * 4), *L = malloc((size_t)n * H * 4);
        float *dQ = malloc(c.nq * 4), *dK = malloc(c.nk * 4), *dV = malloc(c.nk * 4);
        float *dQr = malloc(c.nq * 4), *dKr = malloc(c.nk * 4), *dVr = malloc(c.nk * 4);
        double *E = malloc((size_t)H * n * n * sizeof(double));
        hist hr = hist_make(H, nb), he = hist_make(H, nb);
        CHECK_OK(moa_attn_bwd_influence_ref(&c.s, c.Q, c.K, c.V, c.dO, dQr, dKr, dVr, &hr.acc, E));
        bin_explicit(&c.s, E, &he);
        CHECK_MSG(hist_close("ref acc vs binned E", &hr, &he, H, nb, 1e-12), "ref hist shape %d", si);
        for (int k = 0; k < 3; k++) {
            moa_attn_train_set_isa(isas[k]);
            const char *isa = moa_attn_train_isa_name(moa_attn_train_get_isa());
            hist hf = hist_make(H, nb);
            CHECK_OK(moa_attn_fwd_lse(&c.s, c.Q, c.K, c.V, O, L));
            CHECK_OK(moa_attn_bwd_influence(&c.s, c.Q, c.K, c.V, O, c.dO, L, dQ, dK, dV, &hf.acc));
            char what[128];
            snprintf(what, sizeof what, "n=%d H=%d U=%d hd=%d sink=%d block=%d %s", n, H, sh[2],
                     sh[3], sh[4], sh[5], isa);
            CHECK_MSG(arr_close("dQ", dQ, dQr, c.nq, 2e-3, 2e-5), "dQ %s", what);
            CHECK_MSG(arr_close("dK", dK, dKr, c.nk, 2e-3, 2e-5), "dK %s", what);
            CHECK_MSG(arr_close("dV", dV, dVr, c.nk, 2e-3, 2e-5), "dV %s", what);
            CHECK_MSG(hist_close("fused vs binned E", &hf, &he, H, nb, 2e-4), "hist %s", what);
            hist_free(&hf);
        }
        moa_attn_train_set_isa(MOA_ATTN_TRAIN_ISA_AUTO);
        hist_free(&hr); hist_free(&he);
        free(O); free(L); free(dQ); free(dK); free(dV); free(dQr); free(dKr); free(dVr); free(E);
        case_free(&c);
    }
}

/* ---- a test-local double forward: finite differences and exact masking ------------------- */

/* O [n][H*hd] = causal softmax attention in double; entry (mh, mi, mj) masked (mh < 0: none)
 * and its row renormalised over the remaining keys. */
static void fwd_double(const moa_attn_train_shape *s, const double *Q, const double *K,
                       const double *V, int mh, int mi, int mj, double *O) {
    const int n = s->n, H = s->n_head, G = H / s->n_kv, hd = s->hd;
    const size_t ldq = (size_t)H * hd, ldk = (size_t)s->n_kv * hd;
    double *p = malloc((size_t)n * sizeof(double));
    for (int h = 0; h < H; h++) {
        const int u = h / G;
        for (int i = 0; i < n; i++) {
            double mx = -INFINITY, l = 0;
            for (int j = 0; j <= i; j++) {
                double dot = 0;
                for (int d = 0; d < hd; d++) dot += Q[i * ldq + h * hd + d] * K[j * ldk + u * hd + d];
                p[j] = dot / sqrt((double)hd);
                if (p[j] > mx) mx = p[j];
            }
            for (int j = 0; j <= i; j++) {
                p[j] = (h == mh && i == mi && j == mj) ? 0.0 : exp(p[j] - mx);
                l += p[j];
            }
            for (int d = 0; d < hd; d++) {
                double o = 0;
                for (int j = 0; j <= i; j++) o += p[j] * V[j * ldk + u * hd + d];
                O[i * ldq + h * hd + d] = o / l;
            }
        }
    }
    free(p);
}

static double *to_double(const float *a, size_t n) {
    double *d = malloc(n * sizeof(double));
    for (size_t k = 0; k < n; k++) d[k] = a[k];
    return d;
}

/* L = sum(O * R) + quad/2 * sum(O^2) */
static double loss_of(const double *O, const float *R, size_t n, double quad) {
    double L = 0;
    for (size_t k = 0; k < n; k++) L += O[k] * R[k] + 0.5 * quad * O[k] * O[k];
    return L;
}

TEST(grad_finite_differences) {
    /* n = 21, 4 query heads on 2 KV heads, hd 16; loss L = sum(O * R), so dO = R */
    tcase c = case_make(21, 4, 2, 16, 2, 4, 77);
    double *Qd = to_double(c.Q, c.nq), *Kd = to_double(c.K, c.nk), *Vd = to_double(c.V, c.nk);
    double *Ob = malloc(c.nq * sizeof(double));
    float *O = malloc(c.nq * 4), *L = malloc((size_t)c.s.n * c.s.n_head * 4);
    float *dQ = malloc(c.nq * 4), *dK = malloc(c.nk * 4), *dV = malloc(c.nk * 4);
    float *dQr = malloc(c.nq * 4), *dKr = malloc(c.nk * 4), *dVr = malloc(c.nk * 4);
    CHECK_OK(moa_attn_fwd_lse(&c.s, c.Q, c.K, c.V, O, L));
    CHECK_OK(moa_attn_bwd_influence(&c.s, c.Q, c.K, c.V, O, c.dO, L, dQ, dK, dV, NULL));
    CHECK_OK(moa_attn_bwd_influence_ref(&c.s, c.Q, c.K, c.V, c.dO, dQr, dKr, dVr, NULL, NULL));
    /* the local double forward agrees with the library reference */
    fwd_double(&c.s, Qd, Kd, Vd, -1, 0, 0, Ob);
    float *Of = malloc(c.nq * 4);
    for (size_t k = 0; k < c.nq; k++) Of[k] = (float)Ob[k];
    CHECK(arr_close("O fused vs local double", O, Of, c.nq, 1e-4, 1e-6));
    const double step = 1e-5;
    struct { double *x; size_t n; const float *g, *gr; const char *name; } parts[] = {
        { Qd, c.nq, dQ, dQr, "dQ" }, { Kd, c.nk, dK, dKr, "dK" }, { Vd, c.nk, dV, dVr, "dV" } };
    for (int p = 0; p < 3; p++) {
        float *fd = malloc(parts[p].n * 4);
        for (size_t k = 0; k < parts[p].n; k++) {
            const double x0 = parts[p].x[k];
            parts[p].x[k] = x0 + step;
            fwd_double(&c.s, Qd, Kd, Vd, -1, 0, 0, Ob);
            const double lp = loss_of(Ob, c.dO, c.nq, 0);
            parts[p].x[k] = x0 - step;
            fwd_double(&c.s, Qd, Kd, Vd, -1, 0, 0, Ob);
            const double lm = loss_of(Ob, c.dO, c.nq, 0);
            parts[p].x[k] = x0;
            fd[k] = (float)((lp - lm) / (2 * step));     /* central difference, O(step^2) */
        }
        char what[64];
        snprintf(what, sizeof what, "%s fused vs finite differences", parts[p].name);
        CHECK_MSG(arr_close(what, parts[p].g, fd, parts[p].n, 1e-3, 1e-5), "%s", what);
        snprintf(what, sizeof what, "%s reference vs finite differences", parts[p].name);
        CHECK_MSG(arr_close(what, parts[p].gr, fd, parts[p].n, 1e-5, 1e-7), "%s", what);
        free(fd);
    }
    free(Qd); free(Kd); free(Vd); free(Ob); free(O); free(Of); free(L);
    free(dQ); free(dK); free(dV); free(dQr); free(dKr); free(dVr);
    case_free(&c);
}

/* The reference's E equals the formula evaluated from explicit double matrices, and E predicts
 * the exact loss change of masking (h, i, j) and renormalising row i. */
static void influence_case(double quad) {
    tcase c = case_make(24, 4, 2, 16, 0, 4, 91);
    const int n = c.s.n, H = c.s.n_head, hd = c.s.hd, G = H / c.s.n_kv;
    const size_t ldq = (size_t)H * hd, ldk = (size_t)c.s.n_kv * hd;
    double *Qd = to_double(c.Q, c.nq), *Kd = to_double(c.K, c.nk), *Vd = to_double(c.V, c.nk);
    double *O0 = malloc(c.nq * sizeof(double)), *Om = malloc(c.nq * sizeof(double));
    fwd_double(&c.s, Qd, Kd, Vd, -1, 0, 0, O0);
    /* dL/dO = R + quad * O, rounded to float as the kernels take it */
    float *gO = malloc(c.nq * 4);
    for (size_t k = 0; k < c.nq; k++) gO[k] = (float)(c.dO[k] + quad * O0[k]);
    float *dQ = malloc(c.nq * 4), *dK = malloc(c.nk * 4), *dV = malloc(c.nk * 4);
    double *E = malloc((size_t)H * n * n * sizeof(double));
    CHECK_OK(moa_attn_bwd_influence_ref(&c.s, c.Q, c.K, c.V, gO, dQ, dK, dV, NULL, E));
    const double L0 = loss_of(O0, c.dO, c.nq, quad), eps = c.s.eps;
    int tested = 0, bad_formula = 0, bad_pred = 0;
    double sum_err[2] = { 0, 0 }, sum_abs[2] = { 0, 0 };   /* P < 0.01, 0.01 <= P < 0.05 */
    for (int h = 0; h < H; h++) {
        const int u = h / G;
        for (int i = 1; i < n; i++) {
            /* explicit P row, D_i, dP_ij */
            double s[64], mx = -INFINITY, l = 0, D = 0;
            for (int j = 0; j <= i; j++) {
                double dot = 0;
                for (int d = 0; d < hd; d++) dot += Qd[i * ldq + h * hd + d] * Kd[j * ldk + u * hd + d];
                s[j] = dot / sqrt((double)hd);
                mx = fmax(mx, s[j]);
            }
            for (int j = 0; j <= i; j++) l += exp(s[j] - mx);
            for (int d = 0; d < hd; d++) D += (double)gO[i * ldq + h * hd + d] * O0[i * ldq + h * hd + d];
            for (int j = 0; j <= i; j++) {
                const double P = exp(s[j] - mx) / l;
                double dP = 0, dv2 = 0;
                for (int d = 0; d < hd; d++) {
                    dP += (double)gO[i * ldq + h * hd + d] * Vd[j * ldk + u * hd + d];
                    const double dv = Vd[j * ldk + u * hd + d] - O0[i * ldq + h * hd + d];
                    dv2 += dv * dv;
                }
                const double Ef = -P * (dP - D) / (1 - P + eps);    /* the formula */
                const double Er = E[((size_t)h * n + i) * n + j];
                if (!(fabs(Er - Ef) <= 1e-9 * fabs(Ef) + 1e-13)) {
                    if (!bad_formula) fprintf(stderr, "  E[%d][%d][%d] %.12g vs formula %.12g\n", h, i, j, Er, Ef);
                    bad_formula++;
                }
                if (P >= 0.05) continue;
                /* exact: re-run the forward with (h, i, j) masked */
                fwd_double(&c.s, Qd, Kd, Vd, h, i, j, Om);
                const double dL = loss_of(Om, c.dO, c.nq, quad) - L0;
                /* remainder of the first-order prediction: quad/2 |delta O_i|^2 with
                 * delta O_i = -P (v_j - O_i) / (1 - P), i.e. O(P^2); plus eps and float dO */
                const double delta2 = P * P / ((1 - P) * (1 - P)) * dv2;
                const double tol = 0.5 * quad * delta2 * 1.01 + 1e-5 * fabs(dL) + 2e-6 * P;
                if (!(fabs(dL - Er) <= tol)) {
                    if (!bad_pred) fprintf(stderr, "  quad=%g (%d,%d,%d) P=%.4f: exact %.10g vs E %.10g\n",
                                           quad, h, i, j, P, dL, Er);
                    bad_pred++;
                }
                sum_err[P >= 0.01] += fabs(dL - Er);
                sum_abs[P >= 0.01] += fabs(dL);
                tested++;
            }
        }
    }
    CHECK_EQ_INT(bad_formula, 0);
    CHECK_EQ_INT(bad_pred, 0);
    CHECK_MSG(tested > 100, "only %d entries with P < 0.05", tested);
    /* in aggregate: exact up to eps for the linear loss; for the quadratic loss the relative
     * error is O(P), so smaller for the smaller-P entries */
    fprintf(stderr, "  quad=%g: %d entries, relative error %.3g (P < 0.01), %.3g (0.01 <= P < 0.05)\n",
            quad, tested, sum_err[0] / sum_abs[0], sum_err[1] / sum_abs[1]);
    CHECK(sum_err[0] <= (quad == 0 ? 1e-5 : 0.03) * sum_abs[0]);
    CHECK(sum_err[1] <= (quad == 0 ? 1e-5 : 0.1) * sum_abs[1]);
    free(Qd); free(Kd); free(Vd); free(O0); free(Om); free(gO); free(dQ); free(dK); free(dV); free(E);
    case_free(&c);
}

/* L = sum(O * R) is linear in O: masking changes it by exactly -P (dP - D) / (1 - P), so E
 * agrees up to eps. */
TEST(influence_exact_linear_loss) { influence_case(0.0); }
/* L = sum(O * R) + sum(O^2)/2: E is the first-order prediction, off by O(P^2). */
TEST(influence_first_order_quadratic_loss) { influence_case(1.0); }

/* ---- the window identity ------------------------------------------------------------------ */

TEST(window_loss_is_suffix_sum) {
    const int sinks[] = { 0, 4, 64 }, block = 32;
    for (int si = 0; si < 3; si++) {
        tcase c = case_make(300, 4, 2, 32, sinks[si], block, 300 + si);
        const int n = c.s.n, H = c.s.n_head, nb = moa_attn_train_n_bins(&c.s);
        float *O = malloc(c.nq * 4), *L = malloc((size_t)n * H * 4);
        float *dQ = malloc(c.nq * 4), *dK = malloc(c.nk * 4), *dV = malloc(c.nk * 4);
        double *E = malloc((size_t)H * n * n * sizeof(double));
        hist hf = hist_make(H, nb);
        CHECK_OK(moa_attn_fwd_lse(&c.s, c.Q, c.K, c.V, O, L));
        CHECK_OK(moa_attn_bwd_influence(&c.s, c.Q, c.K, c.V, O, c.dO, L, dQ, dK, dV, &hf.acc));
        CHECK_OK(moa_attn_bwd_influence_ref(&c.s, c.Q, c.K, c.V, c.dO, dQ, dK, dV, NULL, E));
        for (int W = block; W <= 320; W += block) {
            for (int h = 0; h < H; h++) {
                /* sum of E over exactly the entries the shared mask drops:
                 * j <= i and not (j < sink or i - j < W) */
                double dropped = 0, dropped_abs = 0;
                for (int i = 0; i < n; i++)
                    for (int j = 0; j <= i; j++)
                        if (!(j < c.s.sink || i - j < W)) {
                            const double e = E[((size_t)h * n + i) * n + j];
                            dropped += e;
                            dropped_abs += fabs(e);
                        }
                double suf = 0, suf_abs = 0;
                for (int b = W / block; b < nb; b++) {
                    suf += hf.sgn[(size_t)h * nb + b];
                    suf_abs += hf.abs[(size_t)h * nb + b];
                }
                CHECK_MSG(fabs(suf - dropped) <= 2e-4 * dropped_abs + 1e-12 &&
                          fabs(suf_abs - dropped_abs) <= 2e-4 * dropped_abs + 1e-12,
                          "sink %d W %d head %d: suffix %.10g (abs %.10g) vs dropped %.10g (abs %.10g)",
                          c.s.sink, W, h, suf, suf_abs, dropped, dropped_abs);
            }
        }
        hist_free(&hf);
        free(O); free(L); free(dQ); free(dK); free(dV); free(E);
        case_free(&c);
    }
}

/* A dominant key (attention-sink-like rows, 1 - P from ~1 down to ~1e-9): E = -P (dP - D) /
 * (1 - P + eps) divides two O(1 - P) quantities, so float inputs limit its accuracy where
 * 1 - P is tiny. Key 0 is the sink column (sink = 1): its totals must stay finite and close
 * to the double reference; every other bin within the usual tolerance. */
TEST(dominant_key_conditioning) {
    tcase c = case_make(150, 3, 1, 64, 1, 8, 901);
    const int n = c.s.n, H = c.s.n_head, hd = c.s.hd, nb = moa_attn_train_n_bins(&c.s);
    /* key 0 aligned with every query along dimension 0: s_i0 ~ 4 (i % 6) + O(2) */
    c.K[0] = 24.0f;
    for (int i = 0; i < n; i++)
        for (int h = 0; h < H; h++) c.Q[(size_t)i * H * hd + (size_t)h * hd] = (float)(i % 6) * 1.33f;
    float *O = malloc(c.nq * 4), *L = malloc((size_t)n * H * 4);
    float *dQ = malloc(c.nq * 4), *dK = malloc(c.nk * 4), *dV = malloc(c.nk * 4);
    float *dQr = malloc(c.nq * 4), *dKr = malloc(c.nk * 4), *dVr = malloc(c.nk * 4);
    hist hr = hist_make(H, nb), hf = hist_make(H, nb);
    CHECK_OK(moa_attn_bwd_influence_ref(&c.s, c.Q, c.K, c.V, c.dO, dQr, dKr, dVr, &hr.acc, NULL));
    CHECK_OK(moa_attn_fwd_lse(&c.s, c.Q, c.K, c.V, O, L));
    CHECK_OK(moa_attn_bwd_influence(&c.s, c.Q, c.K, c.V, O, c.dO, L, dQ, dK, dV, &hf.acc));
    CHECK(arr_close("dQ dominant", dQ, dQr, c.nq, 2e-3, 2e-5));
    CHECK(arr_close("dK dominant", dK, dKr, c.nk, 2e-3, 2e-5));
    CHECK(arr_close("dV dominant", dV, dVr, c.nk, 2e-3, 2e-5));
    double worst_sink = 0;
    for (int h = 0; h < H; h++) {
        CHECK(isfinite(hf.sa[h]) && isfinite(hf.ss[h]));
        worst_sink = fmax(worst_sink, fabs(hf.sa[h] - hr.sa[h]) / hr.sa[h]);
        worst_sink = fmax(worst_sink, fabs(hf.ss[h] - hr.ss[h]) / hr.sa[h]);
        hf.sa[h] = hr.sa[h];   /* compared above; the bins below with the usual tolerance */
        hf.ss[h] = hr.ss[h];
    }
    fprintf(stderr, "  dominant key: sink column totals within %.3g of the reference\n", worst_sink);
    CHECK(worst_sink <= 1e-4);
    CHECK(hist_close("dominant: bins", &hf, &hr, H, nb, 2e-4));
    hist_free(&hr); hist_free(&hf);
    free(O); free(L); free(dQ); free(dK); free(dV); free(dQr); free(dKr); free(dVr);
    case_free(&c);
}

/* ---- semantics: accumulation, determinism, argument checks -------------------------------- */

TEST(accumulate_and_determinism) {
    tcase c = case_make(190, 6, 3, 64, 8, 64, 555);
    const int n = c.s.n, H = c.s.n_head, nb = moa_attn_train_n_bins(&c.s);
    float *O = malloc(c.nq * 4), *L = malloc((size_t)n * H * 4);
    float *dQ = malloc(c.nq * 4), *dK = malloc(c.nk * 4), *dV = malloc(c.nk * 4);
    float *dQ2 = malloc(c.nq * 4), *dK2 = malloc(c.nk * 4), *dV2 = malloc(c.nk * 4);
    /* n_bins larger than needed: the extra bins stay untouched */
    hist h1 = hist_make(H, nb + 3), h2 = hist_make(H, nb + 3);
    for (size_t k = 0; k < (size_t)H * (nb + 3); k++) { h2.abs[k] = 0.5; h2.sgn[k] = -0.25; }
    for (int h = 0; h < H; h++) { h2.sa[h] = 0.5; h2.ss[h] = -0.25; }
    CHECK_OK(moa_attn_fwd_lse(&c.s, c.Q, c.K, c.V, O, L));
    CHECK_OK(moa_attn_bwd_influence(&c.s, c.Q, c.K, c.V, O, c.dO, L, dQ, dK, dV, &h1.acc));
    CHECK_OK(moa_attn_bwd_influence(&c.s, c.Q, c.K, c.V, O, c.dO, L, dQ2, dK2, dV2, &h2.acc));
    CHECK(memcmp(dQ, dQ2, c.nq * 4) == 0);
    CHECK(memcmp(dK, dK2, c.nk * 4) == 0);
    CHECK(memcmp(dV, dV2, c.nk * 4) == 0);
    int bad = 0;
    for (int h = 0; h < H; h++) {
        for (int b = 0; b < nb + 3; b++) {
            const size_t x = (size_t)h * (nb + 3) + b;
            /* same thread count: bit-identical sums, offset by the initial values */
            if (h2.abs[x] != 0.5 + h1.abs[x] || h2.sgn[x] != -0.25 + h1.sgn[x]) bad++;
            if (b >= nb && (h1.abs[x] != 0 || h1.sgn[x] != 0)) bad++;
        }
        if (h2.sa[h] != 0.5 + h1.sa[h] || h2.ss[h] != -0.25 + h1.ss[h]) bad++;
        if (!(h1.abs[(size_t)h * (nb + 3)] > 0)) bad++;
    }
    CHECK_EQ_INT(bad, 0);
    hist_free(&h1); hist_free(&h2);
    free(O); free(L); free(dQ); free(dK); free(dV); free(dQ2); free(dK2); free(dV2);
    case_free(&c);
}

/* 1 thread (no partial sums) and 3 threads (two partial dK/dV copies) agree with the reference. */
TEST(thread_counts) {
    tcase c = case_make(333, 6, 2, 64, 3, 64, 777);
    const int n = c.s.n, H = c.s.n_head, nb = moa_attn_train_n_bins(&c.s);
    float *O = malloc(c.nq * 4), *L = malloc((size_t)n * H * 4);
    float *dQ = malloc(c.nq * 4), *dK = malloc(c.nk * 4), *dV = malloc(c.nk * 4);
    float *dQr = malloc(c.nq * 4), *dKr = malloc(c.nk * 4), *dVr = malloc(c.nk * 4);
    hist hr = hist_make(H, nb);
    CHECK_OK(moa_attn_bwd_influence_ref(&c.s, c.Q, c.K, c.V, c.dO, dQr, dKr, dVr, &hr.acc, NULL));
    const int saved = omp_get_max_threads(), counts[] = { 1, 3 };
    for (int k = 0; k < 2; k++) {
        omp_set_num_threads(counts[k]);
        hist hf = hist_make(H, nb);
        CHECK_OK(moa_attn_fwd_lse(&c.s, c.Q, c.K, c.V, O, L));
        CHECK_OK(moa_attn_bwd_influence(&c.s, c.Q, c.K, c.V, O, c.dO, L, dQ, dK, dV, &hf.acc));
        CHECK_MSG(arr_close("dQ", dQ, dQr, c.nq, 2e-3, 2e-5), "dQ, %d threads", counts[k]);
        CHECK_MSG(arr_close("dK", dK, dKr, c.nk, 2e-3, 2e-5), "dK, %d threads", counts[k]);
        CHECK_MSG(arr_close("dV", dV, dVr, c.nk, 2e-3, 2e-5), "dV, %d threads", counts[k]);
        CHECK_MSG(hist_close("hist", &hf, &hr, H, nb, 2e-4), "hist, %d threads", counts[k]);
        hist_free(&hf);
    }
    omp_set_num_threads(saved);
    hist_free(&hr);
    free(O); free(L); free(dQ); free(dK); free(dV); free(dQr); free(dKr); free(dVr);
    case_free(&c);
}

TEST(rejects_bad_arguments) {
    float x[64] = { 0 };
    double d[8] = { 0 };
    moa_attn_train_shape s = moa_attn_train_default_shape(4, 3, 2, 4);   /* 3 % 2 != 0 */
    CHECK(moa_attn_fwd_lse(&s, x, x, x, x, x) == MOA_ERR_INVALID_ARG);
    CHECK(moa_attn_fwd_lse_ref(&s, x, x, x, x, x) == MOA_ERR_INVALID_ARG);
    s = moa_attn_train_default_shape(4, 2, 1, 4);
    s.block = 2;                                                          /* needs 2 bins */
    moa_influence_acc acc = { d, d, d, d, 1 };
    CHECK(moa_attn_bwd_influence(&s, x, x, x, x, x, x, x, x, x, &acc) == MOA_ERR_INVALID_ARG);
    CHECK(moa_attn_bwd_influence_ref(&s, x, x, x, x, x, x, x, &acc, NULL) == MOA_ERR_INVALID_ARG);
    s.eps = -1.0f;
    CHECK(moa_attn_bwd_influence(&s, x, x, x, x, x, x, x, x, x, NULL) == MOA_ERR_INVALID_ARG);
    s = moa_attn_train_default_shape(4, 2, 1, 4);
    CHECK(moa_attn_fwd_lse(&s, x, NULL, x, x, x) == MOA_ERR_INVALID_ARG);
    CHECK(moa_attn_train_n_bins(&s) == 1);
}

int main(void) {
    RUN(fwd_matches_ref);
    RUN(bwd_matches_ref);
    RUN(grad_finite_differences);
    RUN(influence_exact_linear_loss);
    RUN(influence_first_order_quadratic_loss);
    RUN(window_loss_is_suffix_sum);
    RUN(dominant_key_conditioning);
    RUN(accumulate_and_determinism);
    RUN(thread_counts);
    RUN(rejects_bad_arguments);
    return test_summary();
}
