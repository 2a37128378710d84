/* test_attn_kernels.c - attention kernels against naive computations written here:
 * banded softmax vs an explicit N x N masked softmax (double), SIMD vs reference, and the
 * tiled linear attention vs the closed form o_t = sum_{j<=t} lambda^(t-j) (q_t.k_j) v_j. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "moa/attn.h"
#include "test.h"

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;
static float frand(void) {   /* uniform in [-1, 1) */
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (float)((double)(rng_state >> 11) / (double)(1ull << 53) * 2.0 - 1.0);
}
static float *rand_buf(size_t n, float amp) {
    float *p = malloc(n * sizeof *p);
    for (size_t i = 0; i < n; i++) p[i] = amp * frand();
    return p;
}

/* Explicit N x N: queries at positions qpos0 + t attend keys at positions 0..nk-1 with the
 * mask j <= i and (j < sink or i - j < W); o in double, rounded to float. */
static void naive_band(int hd, int G, int nq, int64_t qpos0, const float *q, size_t ldq,
                       int nk, const float *k, const float *v, size_t ldk, int64_t sink,
                       int64_t W, float scale, float *o) {
    double *s = malloc(sizeof(double) * (size_t)nk);
    for (int t = 0; t < nq; t++)
        for (int g = 0; g < G; g++) {
            const int64_t i = qpos0 + t;
            const float *qr = q + t * ldq + (size_t)g * hd;
            double m = -INFINITY;
            for (int j = 0; j < nk; j++) {
                int vis = j <= i && (j < sink || i - j < W);
                if (!vis) { s[j] = -INFINITY; continue; }
                double d = 0;
                for (int x = 0; x < hd; x++) d += (double)qr[x] * k[(size_t)j * ldk + x];
                s[j] = d * scale;
                if (s[j] > m) m = s[j];
            }
            float *orow = o + t * ldq + (size_t)g * hd;
            for (int x = 0; x < hd; x++) {
                double num = 0, den = 0;
                for (int j = 0; j < nk; j++) {
                    if (s[j] == -INFINITY) continue;
                    double p = exp(s[j] - m);
                    den += p;
                    num += p * v[(size_t)j * ldk + x];
                }
                orow[x] = den > 0 ? (float)(num / den) : 0.0f;
            }
        }
    free(s);
}

typedef void (*band_fn)(const moa_attn_band_args *);

/* Keys 0..nk-1 split into segments at the given cut points (given in any order of memory). */
static double run_band_case(band_fn fn, int hd, int G, int nq, int64_t qpos0, int nk,
                            int64_t sink, int64_t W, const int *cuts, int ncut) {
    const size_t ldq = (size_t)G * hd + 3, ldk = (size_t)hd + 5;   /* odd strides */
    float *q = rand_buf((size_t)nq * ldq, 1.5f);
    float *k = rand_buf((size_t)nk * ldk, 1.5f);
    float *v = rand_buf((size_t)nk * ldk, 1.0f);
    float *o = calloc((size_t)nq * ldq, sizeof *o), *on = calloc((size_t)nq * ldq, sizeof *on);
    const float scale = 1.0f / sqrtf((float)hd);
    moa_attn_seg segs[16];
    int ns = 0, prev = 0;
    for (int c = 0; c <= ncut; c++) {
        int end = c < ncut ? cuts[c] : nk;
        if (end > prev)
            segs[ns++] = (moa_attn_seg){k + prev * ldk, v + prev * ldk, ldk * sizeof(float),
                                        ldk * sizeof(float), prev, end - prev, 0, MOA_ATTN_KV_F32,
                                        MOA_ATTN_KV_F32};
        prev = end;
    }
    /* reverse the segment order: the kernels must not depend on it */
    for (int a = 0, b = ns - 1; a < b; a++, b--) { moa_attn_seg t = segs[a]; segs[a] = segs[b]; segs[b] = t; }
    moa_attn_band_args args = {.hd = hd, .n_group = G, .n_q = nq, .q = q, .ldq = ldq, .o = o,
                               .ldo = ldq, .qpos0 = qpos0, .sink = sink, .window = W,
                               .scale = scale, .segs = segs, .n_segs = ns};
    fn(&args);
    naive_band(hd, G, nq, qpos0, q, ldq, nk, k, v, ldk, sink, W, scale, on);
    double err = 0;
    for (int t = 0; t < nq; t++) {
        double e = test_max_rel_err(o + t * ldq, on + t * ldq, (size_t)G * hd, 1e-3);
        if (e > err) err = e;
    }
    free(q); free(k); free(v); free(o); free(on);
    return err;
}

static int n_impl;
static band_fn impls[3];
static const char *impl_names[3];

TEST(band_matches_naive_mask) {
    struct { int hd, G, nq, nk; int64_t qpos0, sink, W; } cases[] = {
        {64, 3, 45, 45, 0, 4, 16, },     /* prefill from 0, window < tile */
        {64, 1, 133, 133, 0, 0, 37},     /* no sink, window not a multiple of the tile */
        {40, 4, 70, 200, 130, 70, 9},    /* chunk at 130, sink > window, odd head dim */
        {17, 2, 31, 31, 0, 5, 0},        /* sinks only (window 0) */
        {24, 3, 50, 50, 0, 0, 0},        /* nothing visible: zero output */
        {64, 3, 1, 300, 299, 8, 64},     /* decode shape */
        {128, 8, 20, 160, 140, 3, 1000}, /* dense (W >= N), large group */
        {8, 5, 97, 97, 0, 13, 1},        /* window 1: self + sinks */
        {72, 2, 65, 65, 0, 64, 65},      /* sink + window overlap */
    };
    const int cuts_a[] = {3, 17, 90, 140};
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++)
        for (int im = 0; im < n_impl; im++) {
            double e = run_band_case(impls[im], cases[c].hd, cases[c].G, cases[c].nq, cases[c].qpos0,
                                     cases[c].nk, cases[c].sink, cases[c].W, cuts_a, 4);
            CHECK_MSG(e < 2e-5, "case %zu (%s): rel err %.3g", c, impl_names[im], e);
        }
}

/* Many random odd shapes: every fast kernel against the explicit masked attention. */
TEST(band_random_shapes) {
    for (int it = 0; it < 60; it++) {
        int hd = 1 + (int)((frand() + 1) * 60);
        int G = 1 + (int)((frand() + 1) * 3);
        int nk = 1 + (int)((frand() + 1) * 150);
        int nq = 1 + (int)((frand() + 1) * 0.5 * nk);
        if (nq > nk) nq = nk;
        int64_t qpos0 = nk - nq;
        int64_t sink = (int64_t)((frand() + 1) * 10);
        int64_t W = (int64_t)((frand() + 1) * 60);
        int cuts[2] = {(int)((frand() + 1) * 0.5 * nk), nk};
        if (cuts[0] > nk) cuts[0] = nk;
        for (int im = 1; im < n_impl; im++) {
            double e = run_band_case(impls[im], hd, G, nq, qpos0, nk, sink, W, cuts, 1);
            CHECK_MSG(e < 2e-5, "it %d hd %d G %d nq %d nk %d sink %lld W %lld (%s): %.3g", it, hd,
                      G, nq, nk, (long long)sink, (long long)W, impl_names[im], e);
        }
    }
}

/* ---- linear attention ----------------------------------------------------------------------- */
typedef void (*lin_fn)(const moa_linear_args *);

/* o_t = sum_{j<=t} lambda^(t-j) (q_t . k_j) v_j, in double. */
static void naive_linear(int hd, int G, int n, const float *q, const float *k, const float *v,
                         size_t ldq, size_t ldk, double decay, float *o) {
    for (int t = 0; t < n; t++)
        for (int g = 0; g < G; g++)
            for (int e = 0; e < hd; e++) {
                double acc = 0;
                for (int j = 0; j <= t; j++) {
                    double d = 0;
                    for (int x = 0; x < hd; x++) d += (double)q[t * ldq + (size_t)g * hd + x] * k[j * ldk + x];
                    acc += exp(-decay * (t - j)) * d * v[j * ldk + e];
                }
                o[t * ldq + (size_t)g * hd + e] = (float)acc;
            }
}

static double run_linear_case(lin_fn fn, int hd, int G, int n, float decay, const int *chunks,
                              int nch) {
    const size_t ldq = (size_t)G * hd, ldk = (size_t)hd;
    float *q = rand_buf((size_t)n * ldq, 0.5f), *k = rand_buf((size_t)n * ldk, 0.5f);
    float *v = rand_buf((size_t)n * ldk, 1.0f);
    float *o = calloc((size_t)n * ldq, sizeof *o), *on = calloc((size_t)n * ldq, sizeof *on);
    float *S = calloc((size_t)hd * hd, sizeof *S);
    int t0 = 0;
    for (int c = 0; c <= nch && t0 < n; c++) {
        int len = c < nch ? chunks[c] : n - t0;
        if (len > n - t0) len = n - t0;
        moa_linear_args a = {.hd = hd, .n_group = G, .n_t = len, .q = q + t0 * ldq, .ldq = ldq,
                             .k = k + t0 * ldk, .ldk = ldk, .v = v + t0 * ldk, .ldv = ldk,
                             .o = o + t0 * ldq, .ldo = ldq, .state = S, .decay = decay};
        fn(&a);
        t0 += len;
    }
    naive_linear(hd, G, n, q, k, v, ldq, ldk, decay, on);
    double err = 0;
    for (int t = 0; t < n; t++) {   /* per token: outputs grow with t when there is no decay */
        double e = test_max_rel_err(o + t * ldq, on + t * ldq, ldq, 1e-3);
        if (e > err) err = e;
    }
    free(q); free(k); free(v); free(o); free(on); free(S);
    return err;
}

static lin_fn lin_impls[3];

TEST(linear_matches_closed_form) {
    const int chunks[] = {70, 1, 64, 13, 1, 1};     /* prefill, decode, prefill, ... */
    const float decays[] = {0.0f, 0.05f, 0.9f};
    const struct { int hd, G, n; } sh[] = {{16, 1, 150}, {24, 3, 200}, {9, 2, 67}};
    for (size_t s = 0; s < 3; s++)
        for (int d = 0; d < 3; d++)
            for (int im = 0; im < n_impl; im++) {
                double e1 = run_linear_case(lin_impls[im], sh[s].hd, sh[s].G, sh[s].n, decays[d], NULL, 0);
                double e2 = run_linear_case(lin_impls[im], sh[s].hd, sh[s].G, sh[s].n, decays[d], chunks, 6);
                CHECK_MSG(e1 < 1e-4 && e2 < 1e-4, "shape %zu decay %g (%s): whole %.3g chunked %.3g", s,
                          (double)decays[d], impl_names[im], e1, e2);
            }
}

/* The spec's worked example (linear-and-streaming.md 1.5): d = e = 2, n = 3, lambda = 1/2. */
TEST(linear_worked_example) {
    const float q[] = {1, 0, 0, 1, 1, 1}, k[] = {1, 1, 1, 0, 0, 1}, v[] = {1, 2, 3, 0, 0, 4};
    const float want[] = {1, 2, 0.5f, 1, 2, 5};
    for (int im = 0; im < n_impl; im++) {
        float o[6] = {0}, S[4] = {0};
        moa_linear_args a = {.hd = 2, .n_group = 1, .n_t = 3, .q = q, .ldq = 2, .k = k, .ldk = 2,
                             .v = v, .ldv = 2, .o = o, .ldo = 2, .state = S, .decay = logf(2.0f)};
        lin_impls[im](&a);
        for (int i = 0; i < 6; i++) CHECK_CLOSE(o[i], want[i], 1e-5, 1e-6);
        const float S2[] = {1.75f, 0.5f, 0.25f, 4.5f};   /* S_2 of the example */
        for (int i = 0; i < 4; i++) CHECK_CLOSE(S[i], S2[i], 1e-5, 1e-6);
    }
}

/* Direct check: every fast kernel == the reference on identical inputs (odd shapes, several
 * segments, streaming-style q_alt on the sink segment), and the lse outputs agree. */
TEST(fast_equals_ref) {
    for (int it = 0; it < 40; it++) {
        const int hd = 1 + (int)((frand() + 1) * 50), G = 1 + (int)((frand() + 1) * 2.5);
        const int nk = 20 + (int)((frand() + 1) * 120), nq = 1 + (int)((frand() + 1) * 0.5 * nk);
        const int64_t sink = (int64_t)((frand() + 1) * 12), W = (int64_t)((frand() + 1) * 50);
        const size_t ldq = (size_t)G * hd + 1, ldk = (size_t)hd + 2;
        float *q = rand_buf((size_t)nq * ldq, 1.5f), *qa = rand_buf((size_t)nq * ldq, 1.5f);
        float *k = rand_buf((size_t)nk * ldk, 1.5f), *v = rand_buf((size_t)nk * ldk, 1.0f);
        float *o_ref = calloc((size_t)nq * ldq, 4), *o = calloc((size_t)nq * ldq, 4);
        float *lse_ref = calloc((size_t)nq * G, 4), *lse = calloc((size_t)nq * G, 4);
        const int cut = nk / 3 < (int)sink ? nk / 3 : (int)sink;
        moa_attn_seg segs[2] = {
            {k, v, ldk * sizeof(float), ldk * sizeof(float), 0, cut, 1, MOA_ATTN_KV_F32, MOA_ATTN_KV_F32},
            {k + cut * ldk, v + cut * ldk, ldk * sizeof(float), ldk * sizeof(float), cut, nk - cut, 0,
             MOA_ATTN_KV_F32, MOA_ATTN_KV_F32}};
        moa_attn_band_args a = {.hd = hd, .n_group = G, .n_q = nq, .q = q, .q_alt = qa, .ldq = ldq,
                                .o = o_ref, .ldo = ldq, .qpos0 = nk - nq, .sink = sink, .window = W,
                                .scale = 0.3f, .segs = segs, .n_segs = 2, .lse = lse_ref};
        moa_attn_band_ref(&a);
        for (int im = 1; im < n_impl; im++) {
            a.o = o;
            a.lse = lse;
            impls[im](&a);
            double e = test_max_rel_err(o, o_ref, (size_t)nq * ldq, 1e-3);
            double el = 0;
            for (int x = 0; x < nq * G; x++)
                if (isfinite(lse_ref[x]) ? fabs(lse[x] - lse_ref[x]) > 1e-4 * (1 + fabs(lse_ref[x]))
                                         : lse[x] != lse_ref[x])
                    el = 1;
            CHECK_MSG(e < 2e-5 && el == 0, "band it %d (%s) hd %d G %d nq %d nk %d: %.3g lse %g", it,
                      impl_names[im], hd, G, nq, nk, e, el);
            a.o = o_ref;
            a.lse = lse_ref;
        }
        /* linear, same shapes, with decay */
        float *S_ref = calloc((size_t)hd * hd, 4), *S = calloc((size_t)hd * hd, 4);
        moa_linear_args la = {.hd = hd, .n_group = G, .n_t = nk < 130 ? nk : 130, .q = q, .ldq = ldq,
                              .k = k, .ldk = ldk, .v = v, .ldv = ldk, .o = o_ref, .ldo = ldq,
                              .state = S_ref, .decay = 0.02f};
        if (la.n_t > nq) la.n_t = nq;
        moa_linear_ref(&la);
        for (int im = 1; im < n_impl; im++) {
            memset(S, 0, sizeof(float) * hd * hd);
            la.o = o;
            la.state = S;
            lin_impls[im](&la);
            double e = test_max_rel_err(o, o_ref, (size_t)la.n_t * ldq, 1e-3);
            double es = test_max_rel_err(S, S_ref, (size_t)hd * hd, 1e-3);
            CHECK_MSG(e < 1e-4 && es < 1e-4, "linear it %d (%s): %.3g state %.3g", it, impl_names[im], e, es);
            la.o = o_ref;
            la.state = S_ref;
        }
        free(S_ref); free(S);
        free(q); free(qa); free(k); free(v); free(o_ref); free(o); free(lse_ref); free(lse);
    }
}

int main(void) {
    impls[0] = moa_attn_band_ref; impl_names[0] = "ref"; lin_impls[0] = moa_linear_ref;
    n_impl = 1;
    if (moa_attn_isa_best() >= MOA_ISA_AVX2) {
        impls[n_impl] = moa_attn_band_avx2; lin_impls[n_impl] = moa_linear_avx2;
        impl_names[n_impl++] = "avx2";
    }
    if (moa_attn_isa_best() >= MOA_ISA_AVX512) {
        impls[n_impl] = moa_attn_band_avx512; lin_impls[n_impl] = moa_linear_avx512;
        impl_names[n_impl++] = "avx512";
    }
    fprintf(stderr, "kernels tested: ");
    for (int i = 0; i < n_impl; i++) fprintf(stderr, "%s ", impl_names[i]);
    fprintf(stderr, "\n");
    RUN(band_matches_naive_mask);
    RUN(band_random_shapes);
    RUN(linear_matches_closed_form);
    RUN(linear_worked_example);
    RUN(fast_equals_ref);
    return test_summary();
}
