/* test_profiler_cuda.c - the profiler's sample on CUDA (profiler/backward.c over the CUDA
 * backend table that profiler/backward-cuda.c fills) against the same sample on the CPU
 * (itself checked against finite differences, masking and the torch golden by
 * tests/profiler) on the tiny random GQA model of
 * tests/model/tiny_model.h: loss, gradient w.r.t. the input embeddings, influence
 * histograms (abs and signed, per layer, head and distance bin) and sink totals; the same
 * model as qwen2 (q/k/v biases, NEOX RoPE) likewise, with controls.
 *
 * Built twice (tests/profiler/CMakeLists.txt): test_profiler_cuda (label gpu) against the real
 * backend, skipping with 77 without a device, and test_profiler_cuda_emu (label unit)
 * against the CPU emulator of tests/kernels/cuda/emu (smaller shapes; the LM head in chunks of 16
 * response rows and the histograms beyond 64 bins in global memory, so those paths run).
 *
 * Tolerances, as max |gpu - cpu| / max |cpu| over each array.
 *  f32 weights (default): both sides compute in f32 from the same f32 weights; only the
 *  summation order differs (cuBLAS vs OpenBLAS, block reductions vs loops, the attention
 *  kernels' tiling): relative differences of a few 1e-7 per op, grown through 2 layers of
 *  forward and backward. Observed on the emulator (MOA_TEST_VERBOSE=1 prints them): loss
 *  3.4e-8 relative, histograms, sink totals and d_embed 1.8e-7..9.5e-7. Bounds: loss 1e-6,
 *  arrays 1e-5 (10x the worst seen).
 *  bf16 weights (device_bf16): weights and every GEMM input (activations and gradients)
 *  rounded to bf16 (u = 2^-8 = 3.9e-3), 7 GEMMs per layer forward and 10 backward (the
 *  forward run twice); errors of a few u in every array, more where a sum cancels (signed
 *  histograms). Observed: loss 2.3e-4, abs 4.0e-3, sgn 1.4e-2, sinks 3.3e-3 and 8.3e-3,
 *  d_embed 6.6e-3. Bounds: loss 2e-3, arrays 6e-2. A broken kernel gives ratios of 1e-2 to
 *  O(1) (see docs/gpu.md: a wrong sign in the RMSNorm backward, a wrong SwiGLU derivative).
 *  qwen2, same bounds: observed f32 1.3e-6 (d_embed), bf16 1.6e-2 (sink_sgn); the CPU
 *  profiler with the normal pairing or without biases is 0.96 and 1.8 away. */
#include "moa/profiler.h"
#include "moa/model.h"
#include "weights-cuda.h"   /* the model's shared device weights (internal to model/, profiler/) */
#include "moa/common.h"
#include "test.h"
#include "tiny-profiler.h"

#if defined(MOA_CUDA_EMU) && !defined(MOA_CUDA_EMU_FULL)
#define BIG(real, emu) (emu)
#else
#define BIG(real, emu) (real)
#endif

/* n_layer, n_embd, n_head, n_kv, n_ff, n_vocab, n_ctx (training), rope_base, eps */
static tiny_cfg cfg = {2, BIG(128, 64), 4, 2, BIG(192, 96), BIG(300, 70), 1024, 10000.0f, 1e-5f, 0};
/* sample lengths and response spans: the long one has > 16 response rows (LM-head chunks on
 * the emulator) and more than 64 bins at block 1 (global histogram path there) */
enum { N_MAX = BIG(400, 90), N1 = BIG(400, 90), RB1 = BIG(150, 30), RE1 = BIG(400, 90),
       N2 = BIG(123, 41), RB2 = BIG(100, 33), RE2 = BIG(120, 40) };
#define TOL_LOSS_F32 1e-6
#define TOL_F32 1e-5
#define TOL_LOSS_BF16 2e-3
#define TOL_BF16 6e-2

static moa_model *M;
static gbuf IMG;
static moa_model *Q;     /* the same shapes as qwen2: q/k/v biases, NEOX RoPE, own output */
static gbuf QIMG;
static int32_t tokens[N_MAX];
static double worst_f32, worst_bf16;

static void setup(void) {
    tiny_weights w = tiny_make(cfg, 11);
    M = tiny_profiler_model(&w, &IMG);
    tiny_free(&w);
    tiny_cfg qc = cfg;
    qc.qwen2 = 1;
    w = tiny_make(qc, 11);
    Q = tiny_profiler_model(&w, &QIMG);
    tiny_free(&w);
    tiny_random_tokens(tokens, N_MAX, cfg.n_vocab, 5);
}

/* max |a - b| <= rtol * max |b|; records the worst ratio */
static int close_arr(const char *what, const double *a, const double *b, size_t n, double rtol) {
    double mx = 0, err = 0;
    size_t at = 0;
    for (size_t i = 0; i < n; i++) {
        if (fabs(b[i]) > mx) mx = fabs(b[i]);
        const double e = fabs(a[i] - b[i]);
        if (!(e <= err)) { err = e; at = i; }
    }
    const double r = mx > 0 ? err / mx : err;
    double *worst = rtol == TOL_BF16 ? &worst_bf16 : &worst_f32;
    if (r > *worst) *worst = r;
    if (getenv("MOA_TEST_VERBOSE")) fprintf(stderr, "  %s: ratio %.3g (scale %.3g)\n", what, r, mx);
    if (!(err <= rtol * mx) || !(mx > 0))
        fprintf(stderr, "  %s: max error %.3g at %zu (%.9g vs %.9g), scale %.3g, ratio %.3g > %g\n",
                what, err, at, a[at], b[at], mx, r, rtol);
    return err <= rtol * mx && mx > 0;
}

typedef struct {
    double *abs, *sgn, *sink_abs, *sink_sgn;
    int64_t nb;
    double loss[2];
    float *grad;   /* [N1][d] of the first sample */
} result;

static void result_free(result *r) {
    free(r->abs); free(r->sgn); free(r->sink_abs); free(r->sink_sgn); free(r->grad);
}

/* Two samples (different lengths, both histograms accumulated into one result) on device
 * dev; nb extra bins beyond what the samples need (the caller's stride). */
static int run(const moa_model *m, moa_device_kind dev, int bf16, int block, int sink, result *r) {
    memset(r, 0, sizeof *r);
    moa_profiler_params pp = moa_profiler_default_params();
    pp.device = dev;
    pp.device_bf16 = bf16;
    pp.block = block;
    pp.sink = sink;
    moa_profiler *p = NULL;
    CHECK_OK(moa_profiler_create(m, N_MAX, &pp, &p));
    if (!p) return 0;
    CHECK(moa_profiler_device(p) == dev);
    const int64_t rows = (int64_t)cfg.n_layer * cfg.n_head;
    r->nb = (N_MAX + block - 1) / block + 3;
    r->abs = calloc((size_t)(rows * r->nb), sizeof(double));
    r->sgn = calloc((size_t)(rows * r->nb), sizeof(double));
    r->sink_abs = calloc((size_t)rows, sizeof(double));
    r->sink_sgn = calloc((size_t)rows, sizeof(double));
    r->grad = malloc(sizeof(float) * N1 * (size_t)cfg.n_embd);
    moa_profiler_hist h = {r->abs, r->sgn, r->sink_abs, r->sink_sgn, r->nb};
    int ok = 1;
    if (moa_profiler_sample(p, tokens, N1, RB1, RE1, &h, &r->loss[0], r->grad) < 0) ok = 0;
    if (ok && moa_profiler_sample(p, tokens + 7, N2, RB2, RE2, &h, &r->loss[1], NULL) < 0) ok = 0;
    CHECK_MSG(ok, "moa_profiler_sample: %s", moa_last_error());
    moa_profiler_free(p);
    return ok;
}

static void compare(const char *name, const result *g, const result *c, double tol_loss, double tol) {
    const int64_t rows = (int64_t)cfg.n_layer * cfg.n_head;
    const size_t nh = (size_t)(rows * c->nb);
    char what[128];
    for (int i = 0; i < 2; i++) {
        const double rel = fabs(g->loss[i] - c->loss[i]) / fabs(c->loss[i]);
        if (getenv("MOA_TEST_VERBOSE")) fprintf(stderr, "  %s loss %d: %.9g vs %.9g (rel %.3g)\n", name, i, g->loss[i], c->loss[i], rel);
        CHECK_MSG(rel <= tol_loss, "%s: loss %d %.9g vs CPU %.9g (rel %.3g > %g)", name, i, g->loss[i], c->loss[i], rel, tol_loss);
    }
    snprintf(what, sizeof what, "%s abs", name);
    CHECK(close_arr(what, g->abs, c->abs, nh, tol));
    snprintf(what, sizeof what, "%s sgn", name);
    CHECK(close_arr(what, g->sgn, c->sgn, nh, tol));
    snprintf(what, sizeof what, "%s sink_abs", name);
    CHECK(close_arr(what, g->sink_abs, c->sink_abs, (size_t)rows, tol));
    snprintf(what, sizeof what, "%s sink_sgn", name);
    CHECK(close_arr(what, g->sink_sgn, c->sink_sgn, (size_t)rows, tol));
    /* per (layer, head): each row's total |E| (what the optimizer's suffix sums see) */
    for (int64_t rw = 0; rw < rows; rw++) {
        double a = 0, b = 0;
        for (int64_t k = 0; k < c->nb; k++) { a += g->abs[rw * c->nb + k]; b += c->abs[rw * c->nb + k]; }
        CHECK_MSG(fabs(a - b) <= tol * b, "%s: row %lld total |E| %.9g vs CPU %.9g", name, (long long)rw, a, b);
    }
    /* the 3 bins past the longest sample's stay untouched */
    for (int64_t rw = 0; rw < rows; rw++)
        for (int64_t k = c->nb - 3; k < c->nb; k++)
            CHECK(g->abs[rw * c->nb + k] == 0 && g->sgn[rw * c->nb + k] == 0);
    const size_t ng = (size_t)N1 * (size_t)cfg.n_embd;
    double *ga = malloc(sizeof(double) * ng), *gb = malloc(sizeof(double) * ng);
    for (size_t i = 0; i < ng; i++) { ga[i] = g->grad[i]; gb[i] = c->grad[i]; }
    snprintf(what, sizeof what, "%s d_embed", name);
    CHECK(close_arr(what, ga, gb, ng, tol));
    free(ga);
    free(gb);
}

TEST(f32_matches_cpu) {
    const int cases[][2] = {{BIG(16, 4), BIG(32, 4)}, {1, 3}};   /* (block, sink) */
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        result c, g;
        if (run(M, MOA_DEVICE_CPU, 0, cases[i][0], cases[i][1], &c) && run(M, MOA_DEVICE_CUDA, 0, cases[i][0], cases[i][1], &g)) {
            char name[64];
            snprintf(name, sizeof name, "f32 block %d sink %d", cases[i][0], cases[i][1]);
            compare(name, &g, &c, TOL_LOSS_F32, TOL_F32);
        }
        result_free(&c);
        result_free(&g);
    }
}

TEST(bf16_matches_cpu) {
    result c, g;
    if (run(M, MOA_DEVICE_CPU, 0, 8, 4, &c) && run(M, MOA_DEVICE_CUDA, 1, 8, 4, &g))
        compare("bf16", &g, &c, TOL_LOSS_BF16, TOL_BF16);
    result_free(&c);
    result_free(&g);
}

/* The largest of compare()'s ratios (losses, histograms, sink totals, d_embed), without
 * checking: for the controls. */
static double max_ratio(const result *g, const result *c) {
    const size_t nh = (size_t)((int64_t)cfg.n_layer * cfg.n_head * c->nb), rows = (size_t)cfg.n_layer * cfg.n_head;
    const size_t ng = (size_t)N1 * (size_t)cfg.n_embd;
    double worst = 0;
    for (int i = 0; i < 2; i++) worst = fmax(worst, fabs(g->loss[i] - c->loss[i]) / fabs(c->loss[i]));
    const double *ga[4] = {g->abs, g->sgn, g->sink_abs, g->sink_sgn}, *ca[4] = {c->abs, c->sgn, c->sink_abs, c->sink_sgn};
    for (int k = 0; k < 4; k++) {
        const size_t n = k < 2 ? nh : rows;
        double mx = 0, err = 0;
        for (size_t i = 0; i < n; i++) { mx = fmax(mx, fabs(ca[k][i])); err = fmax(err, fabs(ga[k][i] - ca[k][i])); }
        worst = fmax(worst, err / mx);
    }
    double mx = 0, err = 0;
    for (size_t i = 0; i < ng; i++) { mx = fmax(mx, fabs(c->grad[i])); err = fmax(err, fabs((double)g->grad[i] - c->grad[i])); }
    return fmax(worst, err / mx);
}

/* qwen2 (q/k/v biases added after the GEMMs, NEOX RoPE and its inverse in the backward) on
 * CUDA vs the CPU profiler: f32 at two (block, sink) settings and bf16, same bounds as llama.
 * Controls: the CPU profiler on the same model with its pairing switched to normal, and with
 * its biases removed, is far from the CUDA result (so the comparison would catch either). */
static double qwen2_control_min = INFINITY;
TEST(qwen2_matches_cpu) {
    CHECK_EQ_INT(Q->hp.rope_pairing, MOA_ROPE_NEOX);
    CHECK(Q->layers[0].wq.bias != NULL && Q->layers[1].wk.bias != NULL);
    const int cases[][2] = {{BIG(16, 4), BIG(32, 4)}, {1, 3}};   /* (block, sink) */
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        result c, g;
        if (run(Q, MOA_DEVICE_CPU, 0, cases[i][0], cases[i][1], &c) && run(Q, MOA_DEVICE_CUDA, 0, cases[i][0], cases[i][1], &g)) {
            char name[64];
            snprintf(name, sizeof name, "qwen2 f32 block %d sink %d", cases[i][0], cases[i][1]);
            compare(name, &g, &c, TOL_LOSS_F32, TOL_F32);
            if (i == 0) {
                result x;
                Q->hp.rope_pairing = MOA_ROPE_NORMAL;   /* control 1: the wrong pairing */
                if (run(Q, MOA_DEVICE_CPU, 0, cases[i][0], cases[i][1], &x)) {
                    const double r = max_ratio(&g, &x);
                    fprintf(stderr, "  qwen2 control, CPU with the normal pairing: ratio %.3g\n", r);
                    qwen2_control_min = fmin(qwen2_control_min, r);
                }
                Q->hp.rope_pairing = MOA_ROPE_NEOX;
                result_free(&x);
                float *saved[3][8];                     /* control 2: no biases */
                for (int l = 0; l < cfg.n_layer; l++) {
                    moa_weight *ws[3] = {&Q->layers[l].wq, &Q->layers[l].wk, &Q->layers[l].wv};
                    for (int k = 0; k < 3; k++) { saved[k][l] = ws[k]->bias; ws[k]->bias = NULL; }
                }
                if (run(Q, MOA_DEVICE_CPU, 0, cases[i][0], cases[i][1], &x)) {
                    const double r = max_ratio(&g, &x);
                    fprintf(stderr, "  qwen2 control, CPU without biases: ratio %.3g\n", r);
                    qwen2_control_min = fmin(qwen2_control_min, r);
                }
                for (int l = 0; l < cfg.n_layer; l++) {
                    moa_weight *ws[3] = {&Q->layers[l].wq, &Q->layers[l].wk, &Q->layers[l].wv};
                    for (int k = 0; k < 3; k++) ws[k]->bias = saved[k][l];
                }
                result_free(&x);
                CHECK_MSG(qwen2_control_min > 100 * TOL_F32, "qwen2 controls within %.3g of the CUDA result",
                          qwen2_control_min);
            }
        }
        result_free(&c);
        result_free(&g);
    }
    result c, g;
    if (run(Q, MOA_DEVICE_CPU, 0, 8, 4, &c) && run(Q, MOA_DEVICE_CUDA, 1, 8, 4, &g))
        compare("qwen2 bf16", &g, &c, TOL_LOSS_BF16, TOL_BF16);
    result_free(&c);
    result_free(&g);
}

/* No histogram, no sink_sgn, no gradient: same loss; the shared device weights are taken
 * once per (device, type) and kept with the model. */
TEST(optional_outputs_and_shared_weights) {
    moa_profiler_params pp = moa_profiler_default_params();
    pp.device = MOA_DEVICE_CUDA;
    pp.block = 8;
    pp.sink = 4;
    moa_profiler *p = NULL, *q = NULL;
    CHECK_OK(moa_profiler_create(M, N2, &pp, &p));
    CHECK_OK(moa_profiler_create(M, N2, &pp, &q));
    if (!p || !q) { moa_profiler_free(p); moa_profiler_free(q); return; }
    double l1, l2, l3;
    CHECK_OK(moa_profiler_sample(p, tokens, N2, RB2, RE2, NULL, &l1, NULL));
    const int64_t rows = (int64_t)cfg.n_layer * cfg.n_head, nb = (N2 + 7) / 8;
    double *abs = calloc((size_t)(rows * nb), sizeof(double)), *sgn = calloc((size_t)(rows * nb), sizeof(double));
    double *sk = calloc((size_t)rows, sizeof(double));
    moa_profiler_hist h = {abs, sgn, sk, NULL, nb};
    CHECK_OK(moa_profiler_sample(q, tokens, N2, RB2, RE2, &h, &l2, NULL));
    CHECK_OK(moa_profiler_sample(p, tokens, N2, RB2, RE2, NULL, &l3, NULL));
    CHECK(l1 == l2 && l1 == l3);   /* same device, same inputs: the same value */
    double tot = 0;
    for (int64_t i = 0; i < rows * nb; i++) tot += abs[i];
    CHECK(tot > 0);
    int copies = 0, users = 0;
    for (const moa_model_cuda *c = M->cuda; c; c = c->next) {
        copies += c->dt == MOA_CUDA_F32;
        if (c->dt == MOA_CUDA_F32) users = c->users;
    }
    CHECK_EQ_INT(copies, 1);
    CHECK_EQ_INT(users, 2);
    free(abs); free(sgn); free(sk);
    moa_profiler_free(p);
    moa_profiler_free(q);
    for (const moa_model_cuda *c = M->cuda; c; c = c->next) CHECK_EQ_INT(c->users, 0);
}

TEST(errors_as_cpu) {
    moa_profiler_params pp = moa_profiler_default_params();
    pp.block = 8;
    moa_profiler *p[2] = {NULL, NULL};
    pp.device = MOA_DEVICE_CPU;
    CHECK_OK(moa_profiler_create(M, N2, &pp, &p[0]));
    pp.device = MOA_DEVICE_CUDA;
    CHECK_OK(moa_profiler_create(M, N2, &pp, &p[1]));
    if (!p[0] || !p[1]) { moa_profiler_free(p[0]); moa_profiler_free(p[1]); return; }
    int32_t bad[N2];
    memcpy(bad, tokens, sizeof bad);
    bad[RB2 + 2] = cfg.n_vocab;   /* a target outside the vocabulary */
    double loss;
    const int64_t rows = (int64_t)cfg.n_layer * cfg.n_head, nb = (N2 + 7) / 8;
    double *abs = calloc((size_t)(rows * nb), sizeof(double)), *sgn = calloc((size_t)(rows * nb), sizeof(double));
    double *sk = calloc((size_t)rows, sizeof(double));
    moa_profiler_hist small = {abs, sgn, sk, NULL, nb - 1};
    for (int i = 0; i < 2; i++) {
        CHECK_EQ_INT(moa_profiler_sample(p[i], bad, N2, RB2, RE2, NULL, &loss, NULL), MOA_ERR_INVALID_ARG);
        CHECK_EQ_INT(moa_profiler_sample(p[i], tokens, N2 + 1, RB2, RE2, NULL, &loss, NULL), MOA_ERR_INVALID_ARG);
        CHECK_EQ_INT(moa_profiler_sample(p[i], tokens, N2, 0, RE2, NULL, &loss, NULL), MOA_ERR_INVALID_ARG);
        CHECK_EQ_INT(moa_profiler_sample(p[i], tokens, N2, RB2, RE2, &small, &loss, NULL), MOA_ERR_INVALID_ARG);
    }
    free(abs); free(sgn); free(sk);
    moa_profiler_free(p[0]);
    moa_profiler_free(p[1]);
}

/* SmolLM2 (MOA_MODEL; Q4_1 weights and a Q8_0 tied head, dequantised to f32 on the device
 * as on the host; 30 layers, GQA 9/3, hd 64): one sample of NM tokens on both devices.
 * The f32 paths differ only in summation order, over 30 layers. Observed on the emulator
 * (24 tokens, 35 s): loss 5.8e-8 relative, histograms 1.6e-6..4.4e-6, d_embed 6.9e-6;
 * bound TOL_MODEL 1e-4 (15x). */
enum { NM = BIG(96, 24), RBM = BIG(48, 12) };
#define TOL_MODEL 1e-4
TEST(smollm2_f32) {
    moa_model_params mp = moa_model_default_params();
    mp.f32_weights = 1;
    mp.compute_sha256 = 0;
    moa_model *m = NULL;
    CHECK_OK(moa_model_load(test_model_path(), &mp, &m));
    if (!m) return;
    int32_t tok[NM];
    uint64_t s = 17;
    for (int i = 0; i < NM; i++) tok[i] = (int32_t)((tiny_rand(&s) + 1) * 0.5 * 20000) % 20000;
    const int64_t rows = (int64_t)m->hp.n_layer * m->hp.n_head, nb = (NM + 3) / 4;
    const size_t ng = (size_t)NM * (size_t)m->hp.n_embd;
    double *h[2][4];
    float *grad[2];
    double loss[2] = {0, 0};
    for (int dv = 0; dv < 2; dv++) {
        for (int k = 0; k < 4; k++) h[dv][k] = calloc((size_t)(k < 2 ? rows * nb : rows), sizeof(double));
        grad[dv] = malloc(sizeof(float) * ng);
        moa_profiler_params pp = moa_profiler_default_params();
        pp.device = dv ? MOA_DEVICE_CUDA : MOA_DEVICE_CPU;
        pp.block = 4;
        pp.sink = 4;
        moa_profiler *p = NULL;
        CHECK_OK(moa_profiler_create(m, NM, &pp, &p));
        moa_profiler_hist hist = {h[dv][0], h[dv][1], h[dv][2], h[dv][3], nb};
        if (p) CHECK_OK(moa_profiler_sample(p, tok, NM, RBM, NM, &hist, &loss[dv], grad[dv]));
        moa_profiler_free(p);
    }
    const double rel = fabs(loss[1] - loss[0]) / fabs(loss[0]);
    fprintf(stderr, "  SmolLM2 loss %.9g vs CPU %.9g (rel %.3g)\n", loss[1], loss[0], rel);
    CHECK(rel <= TOL_LOSS_F32 * 10);
    const char *names[4] = {"SmolLM2 abs", "SmolLM2 sgn", "SmolLM2 sink_abs", "SmolLM2 sink_sgn"};
    for (int k = 0; k < 4; k++) CHECK(close_arr(names[k], h[1][k], h[0][k], (size_t)(k < 2 ? rows * nb : rows), TOL_MODEL));
    double *ga = malloc(sizeof(double) * ng), *gb = malloc(sizeof(double) * ng);
    for (size_t i = 0; i < ng; i++) { ga[i] = grad[1][i]; gb[i] = grad[0][i]; }
    CHECK(close_arr("SmolLM2 d_embed", ga, gb, ng, TOL_MODEL));
    free(ga); free(gb);
    for (int dv = 0; dv < 2; dv++) {
        for (int k = 0; k < 4; k++) free(h[dv][k]);
        free(grad[dv]);
    }
    moa_model_free(m);
}

/* argv[1] == "--model": only the SmolLM2 case (label model; skips without MOA_MODEL). */
int main(int argc, char **argv) {
    if (argc > 1 && !strcmp(argv[1], "--model")) {
        if (!moa_ctx_cuda_available()) { printf("SKIP: no CUDA device\n"); return 77; }
        (void)test_model_path();
        RUN(smollm2_f32);
        fprintf(stderr, "SmolLM2: worst error / largest entry %.3g (bound %g)\n", worst_f32, TOL_MODEL);
        return test_summary();
    }
    setup();
    if (!moa_ctx_cuda_available()) {
        /* no device: CUDA must fail with a message, AUTO must fall back to the CPU */
        moa_profiler_params pp = moa_profiler_default_params();
        pp.device = MOA_DEVICE_CUDA;
        moa_profiler *p = NULL;
        const moa_status st = moa_profiler_create(M, N2, &pp, &p);
        char msg[512];
        snprintf(msg, sizeof msg, "%s", moa_last_error());
        if (st != MOA_ERR_DEVICE || p || !strstr(msg, "no CUDA device")) {
            fprintf(stderr, "FAIL: without a device moa_profiler_create(CUDA) returned %d (%s)\n", (int)st, msg);
            return 1;
        }
        /* qwen2 is refused for the missing device, not for its architecture */
        if (moa_profiler_create(Q, N2, &pp, &p) != MOA_ERR_DEVICE || !strstr(moa_last_error(), "no CUDA device")) {
            fprintf(stderr, "FAIL: without a device moa_profiler_create(CUDA, qwen2): %s\n", moa_last_error());
            return 1;
        }
        pp.device = MOA_DEVICE_AUTO;
        if (moa_profiler_create(M, N2, &pp, &p) != MOA_OK || moa_profiler_device(p) != MOA_DEVICE_CPU) return 1;
        moa_profiler_free(p);
        moa_model_free(M);
        free(IMG.b);
        moa_model_free(Q);
        free(QIMG.b);
        printf("SKIP: no CUDA device (moa_profiler_create: %s)\n", msg);
        return 77;
    }
    RUN(f32_matches_cpu);
    RUN(bf16_matches_cpu);
    RUN(optional_outputs_and_shared_weights);
    RUN(errors_as_cpu);
    RUN(qwen2_matches_cpu);
    fprintf(stderr, "worst error / largest entry: f32 %.3g (bound %g), bf16 %.3g (bound %g); qwen2 "
            "controls (normal pairing, no biases) at least %.3g\n", worst_f32, TOL_F32, worst_bf16,
            TOL_BF16, qwen2_control_min);
    moa_model_free(M);
    free(IMG.b);
    moa_model_free(Q);
    free(QIMG.b);
    return test_summary();
}
