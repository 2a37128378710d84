/* test_backend_ops.c - every op of every backend against a plain C reference (as llama.cpp's
 * test-backend-ops). Backends: the CPU (always) and CUDA when the build has it and a device
 * exists (a real GPU, or the CPU emulator of tests/kernels/cuda: the target
 * test_backend_ops_emu, which requires it). The references below are written here, in
 * double, independent of kernels/; shapes are odd on purpose (rows 1, 3, 17; dims that are not
 * multiples of 8 or 16; hd 64, 80, 96; both RoPE pairings, both directions).
 *
 * Checks, per backend:
 *   - completeness: no entry of the table is NULL;
 *   - coverage: the list OPS names every function entry of moa_backend exactly once (an
 *     entry appended to the table without a test here fails the test);
 *   - each op's test, with its bound stated next to it: an element passes when
 *     |got - ref| <= rtol |ref| + atol max|ref| (max over the compared buffer). An op's test is
 *     a check of one shape (reference and bound) that each_shape runs over the op's grid
 *     (rows x row lengths x variants; the axes are shared: ROWS, NORM_DIMS, ELEMS).
 * Controls (the test can fail): a perturbed result is rejected by the comparator, a backend
 * whose rope ignores the pairing, one whose rmsnorm ignores eps and one whose matmul_bwd
 * ignores beta are rejected by the op tests, and a table with a NULL entry is rejected by the
 * completeness check. The CPU backend over a RoPE table (the profiler's) passes every op test
 * and rotates bitwise as the plain one.
 */
#include "test.h"
#include "moa/backend.h"
#include "moa/common.h"
#include "moa/quant.h"   /* moa_weight: the CPU backend's weight handle */

#include <stddef.h>
#include <stdint.h>

#if defined(MOA_HAVE_CUDA) || defined(MOA_CUDA_EMU)
#include "moa/cuda.h"
#define HAVE_CUDA_BACKEND 1
#endif

/* ---- data and comparison ------------------------------------------------------------------ */

static uint64_t g_rng = 0x9E3779B97F4A7C15ull;
static double rnd(void) {   /* uniform in [-1, 1) */
    g_rng = g_rng * 6364136223846793005ull + 1442695040888963407ull;
    return (double)(g_rng >> 11) / 4503599627370496.0 - 1.0;
}
static void fill(float *x, size_t n, double scale) {
    for (size_t i = 0; i < n; i++) x[i] = (float)(scale * rnd());
}

static int g_quiet;   /* the controls: expected failures are not printed */

/* 1 if every |got[i] - ref[i]| <= rtol |ref[i]| + tol_abs (and got is finite); else prints
 * the worst element and returns 0. */
static int compare_abs(const char *what, const float *got, const double *ref, size_t n,
                       double rtol, double tol_abs) {
    double worst = 0;
    size_t at = 0;
    int ok = 1;
    for (size_t i = 0; i < n; i++) {
        const double e = fabs((double)got[i] - ref[i]), lim = rtol * fabs(ref[i]) + tol_abs;
        const double q = lim > 0 ? e / lim : INFINITY;
        if (!isfinite(got[i]) || !(e <= lim)) {
            if (ok || q > worst) { worst = q; at = i; }
            ok = 0;
        }
    }
    if (!ok && !g_quiet)
        fprintf(stderr, "    %s: element %zu of %zu: %.9g vs reference %.9g (rtol %g, atol %.3g)\n",
                what, at, n, (double)got[at], ref[at], rtol, tol_abs);
    return ok;
}
static double max_abs(const double *x, size_t n) {
    double mx = 0;
    for (size_t i = 0; i < n; i++) mx = fmax(mx, fabs(x[i]));
    return mx;
}
/* The usual rule: atol is relative to the largest reference value of the buffer. */
static int compare(const char *what, const float *got, const double *ref, size_t n, double rtol,
                   double atol) {
    return compare_abs(what, got, ref, n, rtol, atol * max_abs(ref, n));
}
static int compare_d(const char *what, const double *got, const double *ref, size_t n, double rtol,
                     double atol) {
    double mx = 0;
    for (size_t i = 0; i < n; i++) mx = fmax(mx, fabs(ref[i]));
    int ok = 1;
    for (size_t i = 0; i < n && ok; i++) {
        const double e = fabs(got[i] - ref[i]);
        if (!isfinite(got[i]) || !(e <= rtol * fabs(ref[i]) + atol * mx)) {
            if (!g_quiet) fprintf(stderr, "    %s: element %zu of %zu: %.15g vs reference %.15g (rtol %g, atol %g x max %.3g)\n",
                    what, i, n, got[i], ref[i], rtol, atol, mx);
            ok = 0;
        }
    }
    return ok;
}

/* ---- buffers on a backend ------------------------------------------------------------------ */

static void *dev_from(const moa_backend *b, const void *host, size_t bytes) {
    void *p = NULL;
    if (b->alloc(b->ctx, bytes, &p) < 0 || !p) return NULL;
    if (b->upload(b->ctx, p, host, bytes) < 0) { b->free(b->ctx, p); return NULL; }
    return p;
}
static int to_host(const moa_backend *b, void *host, const void *dev, size_t bytes) {
    return b->download(b->ctx, host, dev, bytes) >= 0;
}
#define OKS(expr) do { if ((expr) < 0) { fprintf(stderr, "    %s: %s\n", #expr, moa_last_error()); ok = 0; } } while (0)

/* ---- shapes: each op's test checks one shape; each_shape runs it over the op's grid -------- */

/* One case of an op: n rows (or elements), d the length of a row (a dim, a vocabulary, a head
 * dim; 0 for ops without one), v a variant the op's check interprets (pairing and direction,
 * weight kind, ...); in, id the positions of n and d in their axes. */
typedef struct {
    int64_t n, d;
    int v;
    int in, id;
} shape;
/* An op's cases: every n of ns (outermost), every d of ds (none: d = 0), every v < n_v. */
typedef struct {
    const int64_t *ns;
    size_t n_ns;
    const int64_t *ds;
    size_t n_ds;
    int n_v;
} shape_grid;
#define AXIS(a) (a), sizeof(a) / sizeof((a)[0])
#define NO_AXIS NULL, 0
/* A check of one shape: 1 when the backend passes (reference and bound inside). arg: data the
 * op's shapes share, or NULL. */
typedef int (*shape_check)(const moa_backend *b, shape s, const void *arg);

/* 1 when the backend passes at every shape of g; every shape runs (each failure is printed). */
static int each_shape(const moa_backend *b, const shape_grid *g, shape_check check, const void *arg) {
    int ok = 1;
    const size_t n_ds = g->n_ds ? g->n_ds : 1;
    const int n_v = g->n_v > 0 ? g->n_v : 1;
    for (size_t i = 0; i < g->n_ns; i++)
        for (size_t j = 0; j < n_ds; j++)
            for (int v = 0; v < n_v; v++) {
                const shape s = {g->ns[i], g->n_ds ? g->ds[j] : 0, v, (int)i, (int)j};
                ok &= check(b, s, arg);
            }
    return ok;
}

/* The axes: rows 1, 3, 17; row lengths that are not multiples of 8 or 16; the elementwise
 * sizes, small odd ones and one past the CPU's threading threshold. */
static const int64_t ROWS[] = {1, 3, 17};
static const int64_t NORM_DIMS[] = {1, 7, 67, 96, 579};
static const int64_t ELEMS[] = {1, 3, 17, 1003, 40001};
static const shape_grid ELEMENTWISE = {AXIS(ELEMS), NO_AXIS, 1};

/* ---- op tests: each returns 1 when the backend passes -------------------------------------- */

/* alloc, free, upload, download, sync, copy, memset0: exact round trips. */
static int t_memory(const moa_backend *b) {
    int ok = 1;
    const size_t n = 1003;
    float *x = malloc(n * 4), *y = malloc(n * 4);
    fill(x, n, 3.0);
    void *z = (void *)1;
    OKS(b->alloc(b->ctx, 0, &z));   /* 0 bytes: NULL, not an error */
    if (z) { fprintf(stderr, "    alloc(0) gave a non-NULL buffer\n"); ok = 0; }
    b->free(b->ctx, NULL);
    float *d1 = dev_from(b, x, n * 4), *d2 = NULL;
    OKS(b->alloc(b->ctx, n * 4, (void **)&d2));
    if (!d1 || !d2) { free(x); free(y); return 0; }
    OKS(b->copy(b->ctx, d2, d1, n * 4));
    OKS(b->sync(b->ctx));
    ok &= to_host(b, y, d2, n * 4) && memcmp(x, y, n * 4) == 0;
    OKS(b->memset0(b->ctx, d2 + 7, 5 * 4));   /* a range inside the buffer */
    ok &= to_host(b, y, d2, n * 4);
    for (size_t i = 0; i < n; i++)
        if (y[i] != (i >= 7 && i < 12 ? 0.0f : x[i])) {
            fprintf(stderr, "    memset0/copy: element %zu is %g\n", i, (double)y[i]);
            ok = 0;
            break;
        }
    b->free(b->ctx, d1);
    b->free(b->ctx, d2);
    free(x); free(y);
    return ok;
}

/* rmsnorm, out of place and in place. y = x r w, r = (mean x^2 + eps)^-1/2. Bound: rtol 1e-6
 * (r and two products rounded to float: 3 roundings of 6e-8), atol 1e-7 of the row scale. */
static int check_rmsnorm(const moa_backend *b, shape s, const void *arg) {
    (void)arg;
    int ok = 1;
    const int64_t n = s.n, d = s.d;
    const size_t cnt = (size_t)(n * d);
    const float eps = d == 7 ? 0.5f : 1e-5f;   /* an eps that matters */
    float *x = malloc(cnt * 4), *w = malloc(d * 4), *y = malloc(cnt * 4);
    double *ref = malloc(cnt * 8);
    fill(x, cnt, 2.0);
    fill(w, (size_t)d, 1.5);
    for (int64_t t = 0; t < n; t++) {
        double ss = 0;
        for (int64_t i = 0; i < d; i++) ss += (double)x[t * d + i] * x[t * d + i];
        const double r = 1.0 / sqrt(ss / (double)d + eps);
        for (int64_t i = 0; i < d; i++) ref[t * d + i] = x[t * d + i] * r * w[i];
    }
    float *dx = dev_from(b, x, cnt * 4), *dw = dev_from(b, w, d * 4), *dy = NULL;
    OKS(b->alloc(b->ctx, cnt * 4, (void **)&dy));
    if (dx && dw && dy) {
        char what[64];
        snprintf(what, sizeof what, "rmsnorm n=%lld d=%lld", (long long)n, (long long)d);
        OKS(b->rmsnorm(b->ctx, dx, dw, dy, n, d, eps));
        ok &= to_host(b, y, dy, cnt * 4) && compare(what, y, ref, cnt, 1e-6, 1e-7);
        OKS(b->rmsnorm(b->ctx, dx, dw, dx, n, d, eps));   /* in place */
        ok &= to_host(b, y, dx, cnt * 4) && compare(what, y, ref, cnt, 1e-6, 1e-7);
    } else ok = 0;
    b->free(b->ctx, dx); b->free(b->ctx, dw); b->free(b->ctx, dy);
    free(x); free(w); free(y); free(ref);
    return ok;
}
static int t_rmsnorm(const moa_backend *b) {
    const shape_grid g = {AXIS(ROWS), AXIS(NORM_DIMS), 1};
    return each_shape(b, &g, check_rmsnorm, NULL);
}

/* RoPE on [n][nh*hd], both pairings, both directions (v = 2 neox + inverse), partial rope_dim,
 * large positions. Reference: theta_i = pos base^(-2i/rope_dim) in double. Bound: rtol 1e-6,
 * atol 1e-6 of the buffer's max (cos, sin rounded to float, then a product and a sum). */
static int check_rope(const moa_backend *b, shape s, const void *arg) {
    (void)arg;
    int ok = 1;
    const int64_t n = s.n;
    const int ri = s.in, hi = s.id, neox = s.v / 2, inv = s.v % 2;
    const int hd = (int)s.d, nh = 1 + ri + hi % 2;   /* 1..4 heads */
    const int rd = (ri + hi + inv) % 2 ? hd : hd - 16 - 2 * hi;   /* full or partial */
    const float base = neox ? 1000000.0f : 10000.0f;
    const int64_t pos0 = ri == 1 ? 4093 : 11 * (int64_t)hi;
    const size_t cnt = (size_t)n * nh * hd;
    float *x = malloc(cnt * 4), *y = malloc(cnt * 4);
    double *ref = malloc(cnt * 8);
    fill(x, cnt, 1.0);
    const int half = rd / 2;
    for (int64_t t = 0; t < n; t++)
        for (int h = 0; h < nh; h++) {
            const float *v = x + (t * nh + h) * hd;
            double *o = ref + (t * nh + h) * hd;
            for (int i = 0; i < hd; i++) o[i] = v[i];
            for (int i = 0; i < half; i++) {
                const double th = (double)(pos0 + t) * pow((double)base, -2.0 * i / rd) * (inv ? -1 : 1);
                const int a = neox ? i : 2 * i, c = neox ? i + half : 2 * i + 1;
                o[a] = v[a] * cos(th) - v[c] * sin(th);
                o[c] = v[a] * sin(th) + v[c] * cos(th);
            }
        }
    float *dx = dev_from(b, x, cnt * 4);
    if (dx) {
        char what[96];
        snprintf(what, sizeof what, "rope n=%lld heads=%d hd=%d rope_dim=%d %s%s",
                 (long long)n, nh, hd, rd, neox ? "neox" : "normal", inv ? " inverse" : "");
        OKS(b->rope(b->ctx, dx, n, nh, hd, rd, base, pos0, inv, neox));
        ok &= to_host(b, y, dx, cnt * 4) && compare(what, y, ref, cnt, 1e-6, 1e-6);
    } else ok = 0;
    b->free(b->ctx, dx);
    free(x); free(y); free(ref);
    return ok;
}
static int t_rope(const moa_backend *b) {
    static const int64_t hds[] = {64, 80, 96};
    const shape_grid g = {AXIS(ROWS), AXIS(hds), 4};
    int ok = each_shape(b, &g, check_rope, NULL);
    /* invalid arguments are refused, not run */
    float *dx = NULL;
    OKS(b->alloc(b->ctx, 64 * 4, (void **)&dx));
    if (b->rope(b->ctx, dx, 1, 1, 64, 63, 10000.0f, 0, 0, 0) != MOA_ERR_INVALID_ARG ||
        b->rope(b->ctx, dx, 1, 1, 64, 64, 10000.0f, 0, 0, 2) != MOA_ERR_INVALID_ARG) {
        if (!g_quiet) fprintf(stderr, "    rope: an odd rope_dim or a pairing of 2 was not refused\n");
        ok = 0;
    }
    b->free(b->ctx, dx);
    return ok;
}

static double silu(double g) { return g / (1.0 + exp(-g)); }

/* Inputs of the SwiGLU checks: g, u drawn in this order, y scratch, ref = silu(g) u. */
static void swiglu_inputs(int64_t n, float **g, float **u, float **y, double **ref) {
    *g = malloc(n * 4); *u = malloc(n * 4); *y = malloc(n * 4);
    *ref = malloc(n * 8);
    fill(*g, n, 12.0);
    fill(*u, n, 2.0);
    for (int64_t i = 0; i < n; i++) (*ref)[i] = silu((*g)[i]) * (*u)[i];
}

/* g = silu(g) u in place. Bound: rtol 2e-6 (e^x to ~1e-7 on AVX-512), atol 1e-7 of the max. */
static int check_swiglu(const moa_backend *b, shape s, const void *arg) {
    (void)arg;
    int ok = 1;
    const int64_t n = s.n;
    float *g, *u, *y;
    double *ref;
    swiglu_inputs(n, &g, &u, &y, &ref);
    float *dg = dev_from(b, g, n * 4), *du = dev_from(b, u, n * 4);
    if (dg && du) {
        OKS(b->swiglu(b->ctx, dg, du, n));
        ok &= to_host(b, y, dg, n * 4) && compare("swiglu", y, ref, n, 2e-6, 1e-7);
    } else ok = 0;
    b->free(b->ctx, dg); b->free(b->ctx, du);
    free(g); free(u); free(y); free(ref);
    return ok;
}
static int t_swiglu(const moa_backend *b) { return each_shape(b, &ELEMENTWISE, check_swiglu, NULL); }

/* a = silu(g) u out of place; g and u unchanged. Bound as swiglu. */
static int check_swiglu_to(const moa_backend *b, shape s, const void *arg) {
    (void)arg;
    int ok = 1;
    const int64_t n = s.n;
    float *g, *u, *y;
    double *ref;
    swiglu_inputs(n, &g, &u, &y, &ref);
    float *dg = dev_from(b, g, n * 4), *du = dev_from(b, u, n * 4), *da = NULL;
    OKS(b->alloc(b->ctx, n * 4, (void **)&da));
    if (dg && du && da) {
        OKS(b->swiglu_to(b->ctx, dg, du, da, n));
        ok &= to_host(b, y, da, n * 4) && compare("swiglu_to", y, ref, n, 2e-6, 1e-7);
        ok &= to_host(b, y, dg, n * 4) && memcmp(y, g, n * 4) == 0;
        ok &= to_host(b, y, du, n * 4) && memcmp(y, u, n * 4) == 0;
    } else ok = 0;
    b->free(b->ctx, dg); b->free(b->ctx, du); b->free(b->ctx, da);
    free(g); free(u); free(y); free(ref);
    return ok;
}
static int t_swiglu_to(const moa_backend *b) { return each_shape(b, &ELEMENTWISE, check_swiglu_to, NULL); }

/* In place g <- dg = da u s (1 + g (1 - s)), u <- du = da g s, s = sigmoid(g). Bound: rtol 1e-5
 * (1 - s loses the float resolution of s near 1, times |g| <= 12), atol 1e-6 of the max. */
static int check_swiglu_bwd(const moa_backend *b, shape s, const void *arg) {
    (void)arg;
    int ok = 1;
    const int64_t n = s.n;
    float *g = malloc(n * 4), *u = malloc(n * 4), *da = malloc(n * 4), *y = malloc(n * 4);
    double *rg = malloc(n * 8), *ru = malloc(n * 8);
    fill(g, n, 12.0);
    fill(u, n, 2.0);
    fill(da, n, 1.0);
    for (int64_t i = 0; i < n; i++) {
        const double sg = 1.0 / (1.0 + exp(-(double)g[i]));
        rg[i] = (double)da[i] * u[i] * sg * (1.0 + g[i] * (1.0 - sg));
        ru[i] = (double)da[i] * g[i] * sg;
    }
    float *dg = dev_from(b, g, n * 4), *du = dev_from(b, u, n * 4), *dda = dev_from(b, da, n * 4);
    if (dg && du && dda) {
        OKS(b->swiglu_bwd(b->ctx, dg, du, dda, n));
        ok &= to_host(b, y, dg, n * 4) && compare("swiglu_bwd dg", y, rg, n, 1e-5, 1e-6);
        ok &= to_host(b, y, du, n * 4) && compare("swiglu_bwd du", y, ru, n, 1e-5, 1e-6);
    } else ok = 0;
    b->free(b->ctx, dg); b->free(b->ctx, du); b->free(b->ctx, dda);
    free(g); free(u); free(da); free(y); free(rg); free(ru);
    return ok;
}
static int t_swiglu_bwd(const moa_backend *b) { return each_shape(b, &ELEMENTWISE, check_swiglu_bwd, NULL); }

/* x += y. One rounding: rtol 6e-8 (2^-24), exact in relative terms. */
static int check_add(const moa_backend *b, shape s, const void *arg) {
    (void)arg;
    int ok = 1;
    const int64_t n = s.n;
    float *x = malloc(n * 4), *h = malloc(n * 4), *y = malloc(n * 4);
    double *ref = malloc(n * 8);
    fill(x, n, 4.0);
    fill(h, n, 4.0);
    for (int64_t i = 0; i < n; i++) ref[i] = (double)x[i] + h[i];
    float *dx = dev_from(b, x, n * 4), *dh = dev_from(b, h, n * 4);
    if (dx && dh) {
        OKS(b->add(b->ctx, dx, dh, n));
        ok &= to_host(b, y, dx, n * 4) && compare("add", y, ref, n, 6e-8, 0);
    } else ok = 0;
    b->free(b->ctx, dx); b->free(b->ctx, dh);
    free(x); free(h); free(y); free(ref);
    return ok;
}
static int t_add(const moa_backend *b) { return each_shape(b, &ELEMENTWISE, check_add, NULL); }

/* dx += r w dy - x r^3 mean(x w dy) per row. Bound: rtol 1e-6, atol 1e-6 of the max (the two
 * terms cancel; each is rounded once to float before the add). */
static int check_rmsnorm_bwd_add(const moa_backend *b, shape s, const void *arg) {
    (void)arg;
    int ok = 1;
    const int64_t n = s.n, d = s.d;
    const size_t cnt = (size_t)(n * d);
    const float eps = 1e-6f;
    float *x = malloc(cnt * 4), *w = malloc(d * 4), *dy = malloc(cnt * 4),
          *dx = malloc(cnt * 4), *y = malloc(cnt * 4);
    double *ref = malloc(cnt * 8);
    fill(x, cnt, 2.0); fill(w, (size_t)d, 1.5); fill(dy, cnt, 1.0); fill(dx, cnt, 0.5);
    for (int64_t t = 0; t < n; t++) {
        double ss = 0, sw = 0;
        for (int64_t i = 0; i < d; i++) {
            ss += (double)x[t * d + i] * x[t * d + i];
            sw += (double)x[t * d + i] * w[i] * dy[t * d + i];
        }
        const double r = 1.0 / sqrt(ss / (double)d + eps);
        for (int64_t i = 0; i < d; i++)
            ref[t * d + i] = dx[t * d + i] + r * w[i] * dy[t * d + i] - x[t * d + i] * r * r * r * sw / (double)d;
    }
    float *bx = dev_from(b, x, cnt * 4), *bw = dev_from(b, w, d * 4),
          *bdy = dev_from(b, dy, cnt * 4), *bdx = dev_from(b, dx, cnt * 4);
    if (bx && bw && bdy && bdx) {
        char what[64];
        snprintf(what, sizeof what, "rmsnorm_bwd_add n=%lld d=%lld", (long long)n, (long long)d);
        OKS(b->rmsnorm_bwd_add(b->ctx, bx, bw, bdy, bdx, n, d, eps));
        ok &= to_host(b, y, bdx, cnt * 4) && compare(what, y, ref, cnt, 1e-6, 1e-6);
    } else ok = 0;
    b->free(b->ctx, bx); b->free(b->ctx, bw); b->free(b->ctx, bdy); b->free(b->ctx, bdx);
    free(x); free(w); free(dy); free(dx); free(y); free(ref);
    return ok;
}
static int t_rmsnorm_bwd_add(const moa_backend *b) {
    const shape_grid g = {AXIS(ROWS), AXIS(NORM_DIMS), 1};
    return each_shape(b, &g, check_rmsnorm_bwd_add, NULL);
}

/* Cross-entropy over rows of logits (d = the vocabulary) with its gradient, a chunk of a larger
 * mean (n_total > rows). Bounds: loss rtol 1e-9 (double sums of float inputs), gradient rtol
 * 1e-6, atol 1e-7 of the max plus 2.4e-7 / n_total (one rounding of softmax / n_total, then the
 * onehot subtraction of the float 1 / n_total: at the target of a dominant logit, (p - 1) /
 * n_total is a difference of two values near 1 / n_total, each rounded to float, so its error
 * is absolute, up to an ulp of 1 / n_total, whatever the size of the result; seen: 2.6e-9 with
 * n_total 3 on a result of 9.7e-4, the largest of its row). */
static int check_xent_grad(const moa_backend *b, shape s, const void *arg) {
    (void)arg;
    int ok = 1;
    const int64_t rows = s.n, V = s.d, n_total = rows + 2;
    const size_t cnt = (size_t)(rows * V);
    float *z = malloc(cnt * 4), *y = malloc(cnt * 4);
    int32_t *tg = malloc(rows * 4);
    double *ref = malloc(cnt * 8), *rl = malloc(rows * 8), *gl = malloc(rows * 8);
    fill(z, cnt, 8.0);
    for (int64_t r = 0; r < rows; r++) {
        tg[r] = (int32_t)((rnd() + 1.0) * 0.5 * (double)V) % (int32_t)V;
        const float *zr = z + r * V;
        double mx = zr[0], sum = 0;
        for (int64_t v = 1; v < V; v++) mx = fmax(mx, zr[v]);
        for (int64_t v = 0; v < V; v++) sum += exp(zr[v] - mx);
        const double lse = mx + log(sum);
        rl[r] = lse - zr[tg[r]];
        for (int64_t v = 0; v < V; v++)
            ref[r * V + v] = (exp(zr[v] - lse) - (v == tg[r])) / (double)n_total;
    }
    float *bz = dev_from(b, z, cnt * 4);
    int32_t *bt = dev_from(b, tg, rows * 4);
    double *bl = NULL;
    OKS(b->alloc(b->ctx, rows * 8, (void **)&bl));
    if (bz && bt && bl) {
        char what[64];
        snprintf(what, sizeof what, "xent_grad rows=%lld V=%lld", (long long)rows, (long long)V);
        OKS(b->xent_grad(b->ctx, bz, bt, rows, V, n_total, bl));
        ok &= to_host(b, y, bz, cnt * 4) &&
              compare_abs(what, y, ref, cnt, 1e-6, 1e-7 * max_abs(ref, cnt) + 2.4e-7 / (double)n_total);
        ok &= to_host(b, gl, bl, rows * 8) && compare_d(what, gl, rl, rows, 1e-9, 1e-12);
    } else ok = 0;
    b->free(b->ctx, bz); b->free(b->ctx, bt); b->free(b->ctx, bl);
    free(z); free(y); free(tg); free(ref); free(rl); free(gl);
    return ok;
}
static int t_xent_grad(const moa_backend *b) {
    static const int64_t vocab[] = {1, 5, 67, 1001};
    const shape_grid g = {AXIS(ROWS), AXIS(vocab), 1};
    return each_shape(b, &g, check_xent_grad, NULL);
}

/* q *= s (per KV group), k /= s with powers of two (d = hd; v: the heads H/KV 6/2, 3/3, 4/1):
 * exact (bound 0). */
static int check_key_smooth(const moa_backend *b, shape sh, const void *arg) {
    (void)arg;
    static const int heads[][2] = {{6, 2}, {3, 3}, {4, 1}};
    int ok = 1;
    const int64_t n = sh.n;
    const int H = heads[sh.v][0], KV = heads[sh.v][1], hd = (int)sh.d;
    const size_t nq = (size_t)n * H * hd, nk = (size_t)n * KV * hd, ns = (size_t)KV * hd;
    float *q = malloc(nq * 4), *k = malloc(nk * 4), *s = malloc(ns * 4), *y = malloc(nq * 4);
    double *rq = malloc(nq * 8), *rk = malloc(nk * 8);
    fill(q, nq, 3.0); fill(k, nk, 3.0);
    for (size_t i = 0; i < ns; i++) s[i] = ldexpf(1.0f, (int)((rnd() + 1.0) * 3.0) - 1);   /* 1/2 .. 32, many 1 */
    for (int64_t t = 0; t < n; t++)
        for (int h = 0; h < H; h++)
            for (int i = 0; i < hd; i++)
                rq[(t * H + h) * hd + i] = (double)q[(t * H + h) * hd + i] * s[(h / (H / KV)) * hd + i];
    for (int64_t t = 0; t < n; t++)
        for (int g = 0; g < KV; g++)
            for (int i = 0; i < hd; i++)
                rk[(t * KV + g) * hd + i] = (double)k[(t * KV + g) * hd + i] / s[g * hd + i];
    float *bq = dev_from(b, q, nq * 4), *bk = dev_from(b, k, nk * 4), *bs = dev_from(b, s, ns * 4);
    if (bq && bk && bs) {
        OKS(b->key_smooth(b->ctx, bq, bk, bs, n, H, KV, hd));
        ok &= to_host(b, y, bq, nq * 4) && compare("key_smooth q", y, rq, nq, 0, 0);
        ok &= to_host(b, y, bk, nk * 4) && compare("key_smooth k", y, rk, nk, 0, 0);
    } else ok = 0;
    b->free(b->ctx, bq); b->free(b->ctx, bk); b->free(b->ctx, bs);
    free(q); free(k); free(s); free(y); free(rq); free(rk);
    return ok;
}
static int t_key_smooth(const moa_backend *b) {
    static const int64_t hds[] = {64, 80};
    const shape_grid g = {AXIS(ROWS), AXIS(hds), 3};
    return each_shape(b, &g, check_key_smooth, NULL);
}

/* ---- engine: embedding rows and projections over backend weight handles ---------------------- */

/* A Q8_0 matrix [rows][cols] (cols a multiple of 32) whose values are q * 2^-6, q random in
 * -127..127: block scale 2^-6 = f16 0x2400, so the dequantised values (and their f16/bf16
 * device copies: 7 significant bits) are exact and the reference needs no kernel of kernels/.
 * raw: 34 bytes per 32 values; val [rows][cols]. */
static uint8_t *q8_matrix(int64_t rows, int64_t cols, double *val) {
    const size_t nb = (size_t)(rows * cols / 32);
    uint8_t *raw = malloc(nb * 34);
    for (size_t bl = 0; bl < nb; bl++) {
        raw[bl * 34] = 0x00;
        raw[bl * 34 + 1] = 0x24;
        for (int j = 0; j < 32; j++) {
            const int q = (int)floor(rnd() * 127.5);
            raw[bl * 34 + 2 + j] = (uint8_t)(int8_t)q;
            val[bl * 32 + j] = ldexp((double)q, -6);
        }
    }
    return raw;
}

/* A weight as the backend's handle (moa/backend.h, matmul). variant 0: CPU quantised rows only
 * (int8 / quantised kernels, batched int8 or BLAS on panels); 1: CPU with an f32 copy (sgemm
 * for batches); 2: CPU exact_f32 (sgemm at any n: the profiler's); on CUDA 0: f16, 1: bf16,
 * 2: f32 device copies. */
typedef struct {
    moa_weight cpu;
    float *f32;
#ifdef HAVE_CUDA_BACKEND
    moa_cuda_weight cu;
#endif
} test_weight;
static const void *weight_make(const moa_backend *b, int variant, const uint8_t *raw, const double *val,
                               const float *bias, int64_t n_out, int64_t n_in, test_weight *tw) {
    memset(tw, 0, sizeof *tw);
    if (b->kind == MOA_DEVICE_CPU) {
        tw->cpu = (moa_weight){MOA_GGML_Q8_0, raw, n_in, n_out, NULL, NULL, (float *)bias, variant == 2};
        if (variant >= 1) {
            tw->f32 = malloc(sizeof(float) * (size_t)(n_out * n_in));
            for (int64_t i = 0; i < n_out * n_in; i++) tw->f32[i] = (float)val[i];
            tw->cpu.f32 = tw->f32;
        }
        return &tw->cpu;
    }
#ifdef HAVE_CUDA_BACKEND
    moa_cuda_ctx *cx = (moa_cuda_ctx *)b->ctx;
    const moa_cuda_dtype dt = variant == 2 ? MOA_CUDA_F32 : variant ? MOA_CUDA_BF16 : MOA_CUDA_F16;
    if (moa_cuda_weight_upload(cx, MOA_GGML_Q8_0, raw, n_out, n_in, dt,
                               &tw->cu) < 0 ||
        (bias && moa_cuda_weight_set_bias(cx, &tw->cu, bias) < 0)) {
        fprintf(stderr, "    weight upload: %s\n", moa_last_error());
        return NULL;
    }
    return &tw->cu;
#else
    (void)val; (void)variant;
    return NULL;
#endif
}
static void weight_free(const moa_backend *b, test_weight *tw) {
    free(tw->f32);
#ifdef HAVE_CUDA_BACKEND
    if (b->kind == MOA_DEVICE_CUDA) moa_cuda_weight_free((moa_cuda_ctx *)b->ctx, &tw->cu);
#else
    (void)b;
#endif
}
/* y[t][o] = sum_i W[o][i] x[t][i] + bias[o] in double */
static void matmul_ref(const double *W, const float *bias, const float *x, int64_t n, int64_t n_out,
                       int64_t n_in, double *y) {
    for (int64_t t = 0; t < n; t++)
        for (int64_t o = 0; o < n_out; o++) {
            double acc = bias ? bias[o] : 0.0;
            for (int64_t i = 0; i < n_in; i++) acc += W[o * n_in + i] * x[t * n_in + i];
            y[t * n_out + o] = acc;
        }
}
/* The projections' bound: the inputs are rounded on the way (CPU: int8 activations per block
 * of 32, |error| <= max|x_block| / 254 per value; CUDA: f16 2^-11 or bf16 2^-8 relative), the
 * weights are exact: atol 2e-2 of the largest |y| (observed: 4e-3..1e-2 of it, the CPU's int8
 * activations and the bf16 copies; f16 below 4e-3), while a missing bias, a transposed weight
 * or a wrong row moves results by O(max|y|). */
#define MATMUL_ATOL 2e-2

/* Projections of one input (d = n_in) by 1, 2 and 3 weights of different n_out (one with no
 * bias): v = 3 weight_make variant + weights - 1. */
static int check_matmul(const moa_backend *b, shape s, const void *arg) {
    (void)arg;
    static const int64_t n_outs[3] = {67, 7, 33};
    int ok = 1;
    const int variant = s.v / 3, nw = s.v % 3 + 1;
    const int64_t n = s.n, n_in = s.d;
    test_weight tw[3];
    const void *h[3] = {0};
    uint8_t *raw[3] = {0};
    double *val[3] = {0}, *ref[3] = {0};
    float *bias[3] = {0}, *by[3] = {0}, *y = NULL;
    float *x = malloc(sizeof(float) * (size_t)(n * n_in));
    fill(x, (size_t)(n * n_in), 1.0);
    float *bx = dev_from(b, x, sizeof(float) * (size_t)(n * n_in));
    int made = bx != NULL;
    for (int k = 0; k < nw; k++) {
        const size_t no = (size_t)n_outs[k];
        val[k] = malloc(sizeof(double) * no * (size_t)n_in);
        raw[k] = q8_matrix(n_outs[k], n_in, val[k]);
        if (k != 1) { bias[k] = malloc(sizeof(float) * no); fill(bias[k], no, 2.0); }
        ref[k] = malloc(sizeof(double) * no * (size_t)n);
        matmul_ref(val[k], bias[k], x, n, n_outs[k], n_in, ref[k]);
        h[k] = weight_make(b, variant, raw[k], val[k], bias[k], n_outs[k], n_in, &tw[k]);
        made &= h[k] != NULL && b->alloc(b->ctx, sizeof(float) * no * (size_t)n, (void **)&by[k]) >= 0;
    }
    if (made) {
        OKS(b->matmul(b->ctx, h, nw, bx, n, by));
        for (int k = 0; k < nw; k++) {
            const size_t ny = (size_t)(n_outs[k] * n);
            y = realloc(y, sizeof(float) * ny);
            ok &= to_host(b, y, by[k], sizeof(float) * ny) && compare("matmul", y, ref[k], ny, 0, MATMUL_ATOL);
        }
    } else ok = 0;
    for (int k = 0; k < nw; k++) {
        if (h[k]) weight_free(b, &tw[k]);
        b->free(b->ctx, by[k]);
        free(raw[k]); free(val[k]); free(ref[k]); free(bias[k]);
    }
    b->free(b->ctx, bx);
    free(x); free(y);
    return ok;
}
static int t_matmul(const moa_backend *b) {
    static const int64_t n_ins[] = {64, 160};
    const shape_grid g = {AXIS(ROWS), AXIS(n_ins), 6};
    return each_shape(b, &g, check_matmul, NULL);
}

/* The profiler's products over its handles (weight_make variant 2: CPU exact_f32, CUDA f32;
 * on CUDA the f16 and bf16 copies too): matmul by one weight and matmul_bwd, dx = beta dx +
 * dy W, with beta 0 and 1 (dx starting non-zero). Bound: f32 weights accumulate in f32 over
 * at most 96 terms (< 1e-5 of the largest |value| observed 1e-7..1e-6): atol 1e-5; f16/bf16
 * copies MATMUL_ATOL (dy rounded to the type). A transposed product or a beta ignored moves
 * results by O(max). The CPU refuses matmul_bwd on a weight without an f32 copy. */
static int matmul_bwd_case(const moa_backend *b, int variant, int64_t n, int64_t n_out, int64_t n_in) {
    int ok = 1;
    const double atol = variant == 2 ? 1e-5 : MATMUL_ATOL;
    const size_t nx = (size_t)(n * n_in), ny = (size_t)(n * n_out);
    double *val = malloc(sizeof(double) * (size_t)(n_out * n_in)), *yr = malloc(sizeof(double) * ny);
    double *dr0 = malloc(sizeof(double) * nx), *dr1 = malloc(sizeof(double) * nx);
    uint8_t *raw = q8_matrix(n_out, n_in, val);
    float *bias = malloc(sizeof(float) * (size_t)n_out), *x = malloc(sizeof(float) * nx);
    float *dy = malloc(sizeof(float) * ny), *dx0 = malloc(sizeof(float) * nx);
    float *got = malloc(sizeof(float) * (nx > ny ? nx : ny));
    fill(bias, (size_t)n_out, 2.0);
    fill(x, nx, 1.0);
    fill(dy, ny, 1.0);
    fill(dx0, nx, 3.0);
    matmul_ref(val, bias, x, n, n_out, n_in, yr);
    for (int64_t t = 0; t < n; t++)
        for (int64_t i = 0; i < n_in; i++) {
            double acc = 0;
            for (int64_t o = 0; o < n_out; o++) acc += (double)dy[t * n_out + o] * val[o * n_in + i];
            dr0[t * n_in + i] = acc;
            dr1[t * n_in + i] = acc + dx0[t * n_in + i];
        }
    test_weight tw;
    const void *h = weight_make(b, variant, raw, val, bias, n_out, n_in, &tw);
    float *bx = dev_from(b, x, sizeof(float) * nx), *bdy = dev_from(b, dy, sizeof(float) * ny);
    float *bdx = dev_from(b, dx0, sizeof(float) * nx), *by = NULL;
    OKS(b->alloc(b->ctx, sizeof(float) * ny, (void **)&by));
    if (h && bx && bdy && bdx && by) {
        char what[80];
        snprintf(what, sizeof what, "matmul_bwd n=%lld variant %d", (long long)n, variant);
        OKS(b->matmul(b->ctx, &h, 1, bx, n, &by));
        ok &= to_host(b, got, by, sizeof(float) * ny) && compare(what, got, yr, ny, 0, atol);
        OKS(b->matmul_bwd(b->ctx, h, bdy, n, bdx, 1.0f));   /* added to dx0 */
        ok &= to_host(b, got, bdx, sizeof(float) * nx) && compare(what, got, dr1, nx, 0, atol);
        OKS(b->matmul_bwd(b->ctx, h, bdy, n, bdx, 0.0f));   /* overwritten */
        ok &= to_host(b, got, bdx, sizeof(float) * nx) && compare(what, got, dr0, nx, 0, atol);
    } else ok = 0;
    if (h) weight_free(b, &tw);
    void *bufs[] = {bx, bdy, bdx, by};
    for (size_t i = 0; i < 4; i++) b->free(b->ctx, bufs[i]);
    free(val); free(yr); free(dr0); free(dr1); free(raw); free(bias); free(x); free(dy); free(dx0);
    free(got);
    return ok;
}
static int t_matmul_bwd(const moa_backend *b) {
    int ok = 1;
    const int cpu = b->kind == MOA_DEVICE_CPU;
    for (int variant = cpu ? 2 : 0; variant <= 2; variant++)
        for (size_t ri = 0; ri < 3; ri++) {
            ok &= matmul_bwd_case(b, variant, ROWS[ri], 67, 96);
            ok &= matmul_bwd_case(b, variant, ROWS[ri], 33, 160);
        }
    if (cpu) {   /* quantised rows only: refused, not run */
        double val[32 * 8];
        uint8_t *raw = q8_matrix(8, 32, val);
        test_weight tw;
        const void *h = weight_make(b, 0, raw, val, NULL, 8, 32, &tw);
        float dy[8] = {0}, dx[32];
        if (b->matmul_bwd(b->ctx, h, dy, 1, dx, 0.0f) != MOA_ERR_UNSUPPORTED) {
            if (!g_quiet) fprintf(stderr, "    matmul_bwd: a weight without an f32 copy was not refused\n");
            ok = 0;
        }
        weight_free(b, &tw);
        free(raw);
    }
    return ok;
}

/* The LM head's product into host memory: rows 1 .. 150 (CUDA: chunks of 64 rows), n_out 579;
 * v: the weight_make variant, with a bias when 1. */
static int check_matmul_to_host(const moa_backend *b, shape s, const void *arg) {
    (void)arg;
    int ok = 1;
    const int variant = s.v;
    const int64_t n = s.n, n_out = 579, n_in = 96;
    double *val = malloc(sizeof(double) * (size_t)(n_out * n_in)), *ref = malloc(sizeof(double) * (size_t)(n_out * n));
    uint8_t *raw = q8_matrix(n_out, n_in, val);
    float *bias = malloc(sizeof(float) * (size_t)n_out), *x = malloc(sizeof(float) * (size_t)(n * n_in));
    float *y = malloc(sizeof(float) * (size_t)(n * n_out));
    fill(bias, (size_t)n_out, 2.0);
    fill(x, (size_t)(n * n_in), 1.0);
    for (int64_t i = 0; i < n * n_out; i++) y[i] = NAN;
    matmul_ref(val, variant ? bias : NULL, x, n, n_out, n_in, ref);
    test_weight tw;
    const void *h = weight_make(b, variant, raw, val, variant ? bias : NULL, n_out, n_in, &tw);
    float *bx = dev_from(b, x, sizeof(float) * (size_t)(n * n_in));
    if (h && bx) {
        OKS(b->matmul_to_host(b->ctx, h, bx, n, y));   /* complete on return: no sync */
        ok &= compare("matmul_to_host", y, ref, (size_t)(n * n_out), 0, MATMUL_ATOL);
    } else ok = 0;
    if (h) weight_free(b, &tw);
    b->free(b->ctx, bx);
    free(val); free(ref); free(raw); free(bias); free(x); free(y);
    return ok;
}
static int t_matmul_to_host(const moa_backend *b) {
    static const int64_t rows[] = {1, 3, 17, 150};
    const shape_grid g = {AXIS(rows), NO_AXIS, 2};
    return each_shape(b, &g, check_matmul_to_host, NULL);
}

/* Embedding rows from a Q8_0 table (50 rows of 96), the rows in backend memory (v 0) and, rows
 * NULL, on the host only (v 1): exact (bound 0). The table, shared by the shapes: */
typedef struct {
    int64_t n_vocab, d;
    const double *val;   /* [n_vocab][d] */
    const uint8_t *raw;  /* Q8_0 blocks, on the host */
    const void *brows;   /* the same bytes in backend memory */
} embd_table;
static int check_embed(const moa_backend *b, shape s, const void *arg) {
    const embd_table *e = arg;
    int ok = 1;
    const int64_t n = s.n, d = e->d, n_vocab = e->n_vocab;
    int32_t tok[17];
    for (int64_t t = 0; t < n; t++) tok[t] = t == 0 ? (int32_t)(n_vocab - 1) : (int32_t)((rnd() + 1.0) * 0.5 * (double)n_vocab);
    double *ref = malloc(sizeof(double) * (size_t)(n * d));
    float *y = malloc(sizeof(float) * (size_t)(n * d)), *bx = NULL;
    for (int64_t t = 0; t < n; t++) memcpy(ref + t * d, e->val + tok[t] * d, sizeof(double) * (size_t)d);
    const moa_backend_embd tab = {MOA_GGML_Q8_0, d, s.v ? NULL : e->brows, e->raw};
    if (b->alloc(b->ctx, sizeof(float) * (size_t)(n * d), (void **)&bx) >= 0) {
        OKS(b->embed(b->ctx, &tab, tok, n, bx));
        for (int64_t t = 0; t < n; t++) tok[t] = -1;   /* the ids may be reused on return */
        ok &= to_host(b, y, bx, sizeof(float) * (size_t)(n * d)) && compare("embed", y, ref, (size_t)(n * d), 0, 0);
    } else ok = 0;
    b->free(b->ctx, bx);
    free(ref); free(y);
    return ok;
}
static int t_embed(const moa_backend *b) {
    const int64_t n_vocab = 50, d = 96;
    double *val = malloc(sizeof(double) * (size_t)(n_vocab * d));
    uint8_t *raw = q8_matrix(n_vocab, d, val);
    void *brows = dev_from(b, raw, (size_t)(n_vocab * d / 32 * 34));
    const embd_table e = {n_vocab, d, val, raw, brows};
    const shape_grid g = {AXIS(ROWS), NO_AXIS, 2};
    const int ok = brows && each_shape(b, &g, check_embed, &e);
    b->free(b->ctx, brows);
    free(val); free(raw);
    return ok;
}

/* ---- profiler attention ---------------------------------------------------------------------- */

typedef struct { int n, H, KV, hd, sink, block; } attn_case;
static const attn_case ATTN[] = {
    {1, 2, 1, 64, 0, 1},     /* one token */
    {3, 3, 3, 80, 1, 2},     /* MHA, hd 80 */
    {17, 4, 2, 96, 2, 4},    /* GQA 2, hd 96 */
    {17, 6, 2, 64, 3, 5},    /* GQA 3 */
};

/* Double reference of the causal attention of one case: P [H][n][n], O [n][H*hd], LSE [H][n]. */
static void attn_ref(const attn_case *c, const float *Q, const float *K, const float *V,
                     double *P, double *O, double *LSE) {
    const int n = c->n, H = c->H, hd = c->hd, grp = c->H / c->KV;
    const double scale = 1.0 / sqrt((double)hd);
    for (int h = 0; h < H; h++)
        for (int i = 0; i < n; i++) {
            double *p = P + ((size_t)h * n + i) * n, mx = -INFINITY, sum = 0;
            for (int j = 0; j < n; j++) {
                double s = 0;
                if (j <= i) {
                    for (int d = 0; d < hd; d++)
                        s += (double)Q[((size_t)i * H + h) * hd + d] * K[((size_t)j * c->KV + h / grp) * hd + d];
                    s *= scale;
                    mx = fmax(mx, s);
                }
                p[j] = s;
            }
            for (int j = 0; j <= i; j++) sum += exp(p[j] - mx);
            LSE[(size_t)h * n + i] = mx + log(sum);
            for (int j = 0; j < n; j++) p[j] = j <= i ? exp(p[j] - LSE[(size_t)h * n + i]) : 0.0;
            for (int d = 0; d < hd; d++) {
                double o = 0;
                for (int j = 0; j <= i; j++) o += p[j] * V[((size_t)j * c->KV + h / grp) * hd + d];
                O[((size_t)i * H + h) * hd + d] = o;
            }
        }
}

static void to_float(float *dst, const double *src, size_t n) {
    for (size_t i = 0; i < n; i++) dst[i] = (float)src[i];
}
/* The cases' n (ATTN[i].n), the grid's n axis: a check reads its case as ATTN[sh.in]. */
static const int64_t ATTN_N[] = {1, 3, 17, 17};

/* O and LSE. Bounds: O rtol 1e-5, atol 2e-6 of the max; LSE rtol 2e-6, atol 1e-6 of the max
 * (float scores and online softmax against a double one). */
static int check_attn_fwd(const moa_backend *b, shape sh, const void *arg) {
    (void)arg;
    int ok = 1;
    const attn_case *c = &ATTN[sh.in];
    if (c->n != sh.n) return 0;   /* ATTN_N lists ATTN's n */
    moa_attn_train_shape s = moa_attn_train_default_shape(c->n, c->H, c->KV, c->hd);
    const size_t nq = (size_t)c->n * c->H * c->hd, nk = (size_t)c->n * c->KV * c->hd,
                 nl = (size_t)c->H * c->n;
    float *Q = malloc(nq * 4), *K = malloc(nk * 4), *V = malloc(nk * 4), *y = malloc(nq * 4);
    double *P = malloc(nl * c->n * 8), *O = malloc(nq * 8), *L = malloc(nl * 8);
    fill(Q, nq, 2.0); fill(K, nk, 2.0); fill(V, nk, 1.0);
    attn_ref(c, Q, K, V, P, O, L);
    float *bq = dev_from(b, Q, nq * 4), *bk = dev_from(b, K, nk * 4), *bv = dev_from(b, V, nk * 4);
    float *bo = NULL, *bl = NULL;
    OKS(b->alloc(b->ctx, nq * 4, (void **)&bo));
    OKS(b->alloc(b->ctx, nl * 4, (void **)&bl));
    if (bq && bk && bv && bo && bl) {
        char what[80];
        snprintf(what, sizeof what, "attn_fwd_lse n=%d H=%d KV=%d hd=%d", c->n, c->H, c->KV, c->hd);
        OKS(b->attn_fwd_lse(b->ctx, &s, bq, bk, bv, bo, bl));
        ok &= to_host(b, y, bo, nq * 4) && compare(what, y, O, nq, 1e-5, 2e-6);
        ok &= to_host(b, y, bl, nl * 4) && compare(what, y, L, nl, 2e-6, 1e-6);
    } else ok = 0;
    b->free(b->ctx, bq); b->free(b->ctx, bk); b->free(b->ctx, bv); b->free(b->ctx, bo); b->free(b->ctx, bl);
    free(Q); free(K); free(V); free(y); free(P); free(O); free(L);
    return ok;
}
static int t_attn_fwd(const moa_backend *b) {
    const shape_grid g = {AXIS(ATTN_N), NO_AXIS, 1};
    return each_shape(b, &g, check_attn_fwd, NULL);
}

/* dQ, dK, dV and the influence histograms (added to: they start at 1, and one bin past the
 * sample must stay 1). Reference: dP = dO V^T, D_i = sum_j P_ij dP_ij, dS = P (dP - D),
 * dQ = scale dS K, dK = scale dS^T Q, dV = P^T dO (summed over each GQA group);
 * E_ij = -P_ij (dP_ij - D_i) / (1 - P_ij + eps) (row 0: -P dP), binned by (i - j) / block for
 * j >= sink. Bounds: gradients rtol 1e-4, atol 1e-5 of the largest of the three; histograms atol 1e-4 of the
 * largest absolute sum of the same kind (signed sums may cancel far below their terms). */
static int check_attn_bwd(const moa_backend *b, shape sh, const void *arg) {
    (void)arg;
    int ok = 1;
    const attn_case *c = &ATTN[sh.in];
    if (c->n != sh.n) return 0;   /* ATTN_N lists ATTN's n */
    const int n = c->n, H = c->H, KV = c->KV, hd = c->hd, grp = H / KV;
    moa_attn_train_shape s = moa_attn_train_default_shape(n, H, KV, hd);
    s.sink = c->sink;
    s.block = c->block;
    const int nb = moa_attn_train_n_bins(&s) + 1;
    const size_t nq = (size_t)n * H * hd, nk = (size_t)n * KV * hd, nl = (size_t)H * n;
    const size_t nh = (size_t)H * nb, nacc = 2 * nh + 2 * (size_t)H;
    float *Q = malloc(nq * 4), *K = malloc(nk * 4), *V = malloc(nk * 4), *dO = malloc(nq * 4);
    float *Of = malloc(nq * 4), *Lf = malloc(nl * 4), *y = malloc(nq * 4);
    double *P = malloc(nl * n * 8), *O = malloc(nq * 8), *L = malloc(nl * 8);
    double *rdq = calloc(nq, 8), *rdk = calloc(nk, 8), *rdv = calloc(nk, 8);
    double *hist = malloc(nacc * 8), *rh = malloc(nacc * 8), *gh = malloc(nacc * 8);
    fill(Q, nq, 2.0); fill(K, nk, 2.0); fill(V, nk, 1.0); fill(dO, nq, 1.0);
    attn_ref(c, Q, K, V, P, O, L);
    to_float(Of, O, nq);
    to_float(Lf, L, nl);
    for (size_t i = 0; i < nacc; i++) hist[i] = rh[i] = 1.0;
    const double scale = 1.0 / sqrt((double)hd);
    for (int h = 0; h < H; h++) {
        const int g = h / grp;
        for (int i = 0; i < n; i++) {
            const double *p = P + ((size_t)h * n + i) * n;
            const float *doi = dO + ((size_t)i * H + h) * hd;
            double dp[64], D = 0;   /* n <= 64 here */
            for (int j = 0; j <= i; j++) {
                dp[j] = 0;
                for (int d = 0; d < hd; d++) dp[j] += (double)doi[d] * V[((size_t)j * KV + g) * hd + d];
                D += p[j] * dp[j];
            }
            for (int j = 0; j <= i; j++) {
                const double ds = p[j] * (dp[j] - D);
                for (int d = 0; d < hd; d++) {
                    rdq[((size_t)i * H + h) * hd + d] += scale * ds * K[((size_t)j * KV + g) * hd + d];
                    rdk[((size_t)j * KV + g) * hd + d] += scale * ds * Q[((size_t)i * H + h) * hd + d];
                    rdv[((size_t)j * KV + g) * hd + d] += p[j] * doi[d];
                }
                const double E = i == 0 ? -p[j] * dp[j] : -p[j] * (dp[j] - D) / (1.0 - p[j] + s.eps);
                if (j < s.sink) {
                    rh[2 * nh + h] += fabs(E);
                    rh[2 * nh + H + h] += E;
                } else {
                    const int bin = (i - j) / s.block;
                    rh[(size_t)h * nb + bin] += fabs(E);
                    rh[nh + (size_t)h * nb + bin] += E;
                }
            }
        }
    }
    /* one absolute floor for the three gradients: 1e-5 of the largest (dQ and dK vanish in
     * exact arithmetic for n = 1, where dV = dO does not) */
    const double gtol = 1e-5 * fmax(max_abs(rdv, nk), fmax(max_abs(rdq, nq), max_abs(rdk, nk)));
    float *bq = dev_from(b, Q, nq * 4), *bk = dev_from(b, K, nk * 4), *bv = dev_from(b, V, nk * 4);
    float *bdo = dev_from(b, dO, nq * 4), *bo = dev_from(b, Of, nq * 4), *bl = dev_from(b, Lf, nl * 4);
    double *bh = dev_from(b, hist, nacc * 8);
    float *gq = NULL, *gk = NULL, *gv = NULL;
    OKS(b->alloc(b->ctx, nq * 4, (void **)&gq));
    OKS(b->alloc(b->ctx, nk * 4, (void **)&gk));
    OKS(b->alloc(b->ctx, nk * 4, (void **)&gv));
    if (bq && bk && bv && bdo && bo && bl && bh && gq && gk && gv) {
        char what[96];
        snprintf(what, sizeof what, "attn_bwd_influence n=%d H=%d KV=%d hd=%d sink=%d block=%d",
                 n, H, KV, hd, s.sink, s.block);
        moa_influence_acc acc = {bh, bh + nh, bh + 2 * nh, bh + 2 * nh + H, nb};
        OKS(b->attn_bwd_influence(b->ctx, &s, bq, bk, bv, bo, bdo, bl, gq, gk, gv, &acc));
        ok &= to_host(b, y, gq, nq * 4) && compare_abs(what, y, rdq, nq, 1e-4, gtol);
        ok &= to_host(b, y, gk, nk * 4) && compare_abs(what, y, rdk, nk, 1e-4, gtol);
        ok &= to_host(b, y, gv, nk * 4) && compare_abs(what, y, rdv, nk, 1e-4, gtol);
        ok &= to_host(b, gh, bh, nacc * 8);
        /* judge every histogram against the largest absolute sum of its kind */
        double mb = 0, ms = 0;
        for (size_t i = 0; i < nh; i++) mb = fmax(mb, rh[i] - 1.0);
        for (int h = 0; h < H; h++) ms = fmax(ms, rh[2 * nh + h] - 1.0);
        const double lim[4] = {1e-4 * mb, 1e-4 * mb, 1e-4 * ms, 1e-4 * ms};
        const size_t off[5] = {0, nh, 2 * nh, 2 * nh + H, nacc};
        for (int kind = 0; kind < 4; kind++)
            for (size_t i = off[kind]; i < off[kind + 1]; i++)
                if (!(fabs(gh[i] - rh[i]) <= lim[kind] + 1e-12)) {
                    if (!g_quiet) fprintf(stderr, "    %s: histogram %d element %zu: %.12g vs reference %.12g\n",
                            what, kind, i - off[kind], gh[i], rh[i]);
                    ok = 0;
                    break;
                }
        /* gradients only (acc NULL) give the same gradients */
        OKS(b->attn_bwd_influence(b->ctx, &s, bq, bk, bv, bo, bdo, bl, gq, gk, gv, NULL));
        ok &= to_host(b, y, gq, nq * 4) && compare_abs(what, y, rdq, nq, 1e-4, gtol);
    } else ok = 0;
    void *bufs[] = {bq, bk, bv, bdo, bo, bl, bh, gq, gk, gv};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) b->free(b->ctx, bufs[i]);
    free(Q); free(K); free(V); free(dO); free(Of); free(Lf); free(y); free(P); free(O); free(L);
    free(rdq); free(rdk); free(rdv); free(hist); free(rh); free(gh);
    return ok;
}
static int t_attn_bwd(const moa_backend *b) {
    const shape_grid g = {AXIS(ATTN_N), NO_AXIS, 1};
    return each_shape(b, &g, check_attn_bwd, NULL);
}

/* ---- the list of ops: one line per function entry of moa_backend ----------------------------- */

typedef struct {
    const char *name;
    size_t off;                          /* offsetof(moa_backend, entry) */
    int (*test)(const moa_backend *b);   /* shared by the memory entries */
} op_test;
#define OP(entry, fn) {#entry, offsetof(moa_backend, entry), fn}
static const op_test OPS[] = {
    OP(alloc, t_memory), OP(free, t_memory), OP(upload, t_memory), OP(download, t_memory),
    OP(sync, t_memory),
    OP(attn_fwd_lse, t_attn_fwd), OP(attn_bwd_influence, t_attn_bwd),
    OP(rmsnorm, t_rmsnorm), OP(rope, t_rope), OP(swiglu, t_swiglu),
    OP(copy, t_memory), OP(memset0, t_memory), OP(add, t_add), OP(swiglu_to, t_swiglu_to),
    OP(swiglu_bwd, t_swiglu_bwd), OP(rmsnorm_bwd_add, t_rmsnorm_bwd_add),
    OP(xent_grad, t_xent_grad), OP(key_smooth, t_key_smooth),
    OP(embed, t_embed), OP(matmul, t_matmul), OP(matmul_to_host, t_matmul_to_host),
    OP(matmul_bwd, t_matmul_bwd),
};
#define N_OPS (sizeof OPS / sizeof OPS[0])

typedef void (*any_fn)(void);
static int entry_set(const moa_backend *b, size_t off) {
    any_fn f;
    memcpy(&f, (const char *)b + off, sizeof f);
    return f != NULL;
}

/* The function entries of moa_backend run from `alloc` to the end of the struct. */
TEST(op_list_covers_the_table) {
    const size_t first = offsetof(moa_backend, alloc);
    const size_t n_entries = (sizeof(moa_backend) - first) / sizeof(any_fn);
    CHECK_MSG((sizeof(moa_backend) - first) % sizeof(any_fn) == 0, "moa_backend has a non-pointer member after alloc");
    CHECK_MSG(N_OPS == n_entries, "moa_backend has %zu op entries, OPS lists %zu: add a test for the new entry",
              n_entries, (size_t)N_OPS);
    for (size_t i = 0; i < N_OPS; i++) {
        CHECK(OPS[i].off >= first && (OPS[i].off - first) % sizeof(any_fn) == 0 && OPS[i].test);
        for (size_t j = 0; j < i; j++) CHECK_MSG(OPS[i].off != OPS[j].off, "%s listed twice", OPS[i].name);
    }
}

/* Completeness and every op of one backend. */
static int backend_passes(const moa_backend *b, int quiet) {
    int ok = 1;
    for (size_t i = 0; i < N_OPS; i++)
        if (!entry_set(b, OPS[i].off)) {
            if (!quiet) fprintf(stderr, "  %s: entry %s is NULL\n", b->name, OPS[i].name);
            ok = 0;
        }
    if (!ok) return 0;
    for (size_t i = 0; i < N_OPS; i++) {
        int seen = 0;   /* a shared test runs once */
        for (size_t j = 0; j < i; j++) seen |= OPS[j].test == OPS[i].test;
        if (seen) continue;
        const int r = OPS[i].test(b);
        if (!quiet) fprintf(stderr, "  %-5s %-20s %s\n", b->name, OPS[i].name, r ? "ok" : "FAIL");
        ok &= r;
    }
    return ok;
}

TEST(cpu_backend) {
    moa_backend b = moa_backend_cpu();
    CHECK_STR(b.name, "cpu");
    CHECK(b.kind == MOA_DEVICE_CPU && b.ctx == NULL);
    CHECK(backend_passes(&b, 0));
}

/* The CPU backend over a RoPE table (moa_backend_cpu_rope, the profiler's): every op as the
 * plain CPU backend, and its rope bitwise equal to the plain entry both where the table serves
 * the call (its rope_dim, base, pairing, positions within n_pos) and where it does not. */
TEST(cpu_rope_backend) {
    for (int neox = 0; neox < 2; neox++) {
        moa_rope_table t;
        const float base = neox ? 1000000.0f : 10000.0f;
        CHECK(moa_rope_table_init(&t, 64, base, neox, 300) == MOA_OK);
        moa_backend b = moa_backend_cpu_rope(&t), plain = moa_backend_cpu();
        CHECK(b.ctx == &t && b.rope != NULL);
        CHECK(backend_passes(&b, 1));
        /* served by the table: positions 0..259 (and 280..299), hd 80 (rope_dim 64 of it) */
        const int64_t cases[][2] = {{260, 0}, {20, 280}, {30, 290}, {17, 4000}};   /* n, pos0 */
        for (size_t c = 0; c < 4; c++)
            for (int inv = 0; inv < 2; inv++) {
                const int64_t n = cases[c][0], pos0 = cases[c][1];
                const size_t cnt = (size_t)n * 3 * 80;
                float *x = malloc(cnt * 4), *y = malloc(cnt * 4);
                fill(x, cnt, 1.0);
                memcpy(y, x, cnt * 4);
                CHECK(b.rope(b.ctx, x, n, 3, 80, 64, base, pos0, inv, neox) == MOA_OK);
                CHECK(plain.rope(plain.ctx, y, n, 3, 80, 64, base, pos0, inv, neox) == MOA_OK);
                CHECK_MSG(memcmp(x, y, cnt * 4) == 0, "rope over the table differs (n %lld, pos0 %lld)",
                          (long long)n, (long long)pos0);
                free(x); free(y);
            }
        /* another rotation than the table's (rope_dim 32, another base) is computed, not the table's */
        float x[64], y[64];
        fill(x, 64, 1.0);
        memcpy(y, x, sizeof x);
        CHECK(b.rope(b.ctx, x, 1, 1, 64, 32, base, 5, 0, neox) == MOA_OK);
        CHECK(plain.rope(plain.ctx, y, 1, 1, 64, 32, base, 5, 0, neox) == MOA_OK);
        CHECK(memcmp(x, y, sizeof x) == 0);
        CHECK(b.rope(b.ctx, x, 1, 1, 64, 64, base * 2, 5, 0, neox) == MOA_OK);
        CHECK(plain.rope(plain.ctx, y, 1, 1, 64, 64, base * 2, 5, 0, neox) == MOA_OK);
        CHECK(memcmp(x, y, sizeof x) == 0);
        /* control: the table is what a served call reads (a changed entry shows) */
        t.cs[(5 * 32 + 3) * 2] += 0.5f;   /* cos of pair 3 at position 5 */
        fill(x, 64, 1.0);
        memcpy(y, x, sizeof x);
        CHECK(b.rope(b.ctx, x, 1, 1, 64, 64, base, 5, 0, neox) == MOA_OK);
        CHECK(plain.rope(plain.ctx, y, 1, 1, 64, 64, base, 5, 0, neox) == MOA_OK);
        CHECK(memcmp(x, y, sizeof x) != 0);
        moa_rope_table_free(&t);
    }
}

#ifdef HAVE_CUDA_BACKEND
static moa_cuda_ctx *g_cuda;
TEST(cuda_backend) {
    moa_backend b = moa_cuda_backend(g_cuda);
    CHECK_STR(b.name, "cuda");
    CHECK(b.kind == MOA_DEVICE_CUDA && b.ctx == g_cuda);
    CHECK(backend_passes(&b, 0));
}
#endif

/* ---- controls: wrong results must be caught ------------------------------------------------- */

static moa_backend g_real;   /* the backend the mutants wrap */
static moa_status rope_wrong_pairing(void *ctx, float *x, int64_t n, int nh, int hd, int rd,
                                     float base, int64_t pos0, int inverse, int neox) {
    return g_real.rope(ctx, x, n, nh, hd, rd, base, pos0, inverse, !neox);
}
static moa_status rmsnorm_no_eps(void *ctx, const float *x, const float *w, float *y, int64_t n,
                                 int64_t d, float eps) {
    (void)eps;
    return g_real.rmsnorm(ctx, x, w, y, n, d, 0.0f);
}

static moa_status matmul_bwd_no_beta(void *ctx, const void *w, const float *dy, int64_t n, float *dx,
                                     float beta) {
    (void)beta;
    return g_real.matmul_bwd(ctx, w, dy, n, dx, 0.0f);
}

TEST(controls_catch_wrong_results) {
    /* the comparator rejects one element off by 10x its bound, and a NaN */
    const size_t n = 50;
    float got[50];
    double ref[50];
    for (size_t i = 0; i < n; i++) ref[i] = got[i] = (float)(rnd() + 2.0);
    CHECK(compare("control", got, ref, n, 1e-6, 0));
    got[17] = (float)(ref[17] * (1.0 + 1e-5));
    g_quiet = 1;
    CHECK(!compare("control", got, ref, n, 1e-6, 0));
    got[17] = NAN;
    CHECK(!compare("control", got, ref, n, 1e-6, 0));
    /* mutant backends */
    g_real = moa_backend_cpu();
    moa_backend m = g_real;
    m.rope = rope_wrong_pairing;
    CHECK(!t_rope(&m));
    m = g_real;
    m.rmsnorm = rmsnorm_no_eps;
    CHECK(!t_rmsnorm(&m));
    m = g_real;
    m.matmul_bwd = matmul_bwd_no_beta;
    CHECK(!t_matmul_bwd(&m));
    /* completeness: a NULL entry fails the backend before any op runs */
    m = g_real;
    m.key_smooth = NULL;
    CHECK(!backend_passes(&m, 1));
    g_quiet = 0;
}

int main(void) {
    RUN(op_list_covers_the_table);
    RUN(controls_catch_wrong_results);
    RUN(cpu_backend);
    RUN(cpu_rope_backend);
#ifdef HAVE_CUDA_BACKEND
    const int n_dev = moa_cuda_device_count();
    if (n_dev > 0 && moa_cuda_ctx_create(0, &g_cuda) == MOA_OK) {
        fprintf(stderr, "device: %s\n", moa_cuda_ctx_describe(g_cuda));
        RUN(cuda_backend);
        moa_cuda_ctx_free(g_cuda);
    } else {
#ifdef MOA_BACKEND_OPS_REQUIRE_CUDA
        fprintf(stderr, "FAIL: this build must test the CUDA backend, but no device (%s)\n",
                n_dev > 0 ? moa_last_error() : "moa_cuda_device_count() = 0");
        return 1;
#else
        fprintf(stderr, "cuda: no device; the CUDA backend is not tested here\n");
#endif
    }
#endif
    return test_summary();
}
