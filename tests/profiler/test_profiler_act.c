/* test_profiler_act.c - the profiler's activation store (moa_profiler_params.act_budget_bytes)
 * changes only what is recomputed, never the result: on a tiny random 4-layer GQA model
 * (tests/model/tiny_model.h), samples with budget 0 (every layer recomputed), a budget that
 * keeps some layers, and an unlimited budget give bitwise the same loss, influence histograms
 * and embedding gradient; also across samples of different lengths on one profiler (the store
 * is laid out per sample length), and the budget's environment default. */
#include "moa/profiler.h"
#include "moa/common.h"
#include "test.h"
#include "tiny-profiler.h"

#include <stdint.h>

static tiny_cfg cfg = {4, 32, 4, 2, 48, 40, 64, 10000.0f, 1e-5f, 0};
enum { N = 50, NB = 7 };   /* block 8: ceil(50 / 8) bins */

static tiny_weights W;
static moa_model *M;
static gbuf IMG;
static int32_t tokens[N];

static void setup(void) {
    W = tiny_make(cfg, 11);
    M = tiny_profiler_model(&W, &IMG);
    tiny_random_tokens(tokens, N, cfg.n_vocab, 5);
}

/* Outputs of one sample. */
typedef struct {
    double loss;
    double abs[4 * 4 * NB], sgn[4 * 4 * NB], sink_abs[4 * 4], sink_sgn[4 * 4];
    float d_embed[N * 32];
} result;

static void run(moa_profiler *p, int64_t n, int64_t rb, result *r) {
    memset(r, 0, sizeof *r);
    moa_profiler_hist h = {r->abs, r->sgn, r->sink_abs, r->sink_sgn, NB};
    CHECK_OK(moa_profiler_sample(p, tokens, n, rb, n, &h, &r->loss, r->d_embed));
}

static double max_diff_d(const double *a, const double *b, size_t n) {
    double m = 0;
    for (size_t i = 0; i < n; i++) m = fmax(m, fabs(a[i] - b[i]));
    return m;
}

static double max_diff_f(const float *a, const float *b, size_t n) {
    double m = 0;
    for (size_t i = 0; i < n; i++) m = fmax(m, fabs((double)a[i] - b[i]));
    return m;
}

/* Bitwise equality of every output, with the largest difference in the message. */
static void check_same(const result *a, const result *b, const char *what) {
    CHECK_MSG(memcmp(&a->loss, &b->loss, sizeof a->loss) == 0, "%s: loss %.17g vs %.17g", what, a->loss, b->loss);
    CHECK_MSG(memcmp(a->abs, b->abs, sizeof a->abs) == 0, "%s: |E| histogram differs by %g", what,
              max_diff_d(a->abs, b->abs, sizeof a->abs / sizeof a->abs[0]));
    CHECK_MSG(memcmp(a->sgn, b->sgn, sizeof a->sgn) == 0, "%s: E histogram differs by %g", what,
              max_diff_d(a->sgn, b->sgn, sizeof a->sgn / sizeof a->sgn[0]));
    CHECK_MSG(memcmp(a->sink_abs, b->sink_abs, sizeof a->sink_abs) == 0, "%s: sink |E| differs", what);
    CHECK_MSG(memcmp(a->sink_sgn, b->sink_sgn, sizeof a->sink_sgn) == 0, "%s: sink E differs", what);
    CHECK_MSG(memcmp(a->d_embed, b->d_embed, sizeof a->d_embed) == 0, "%s: d_embed differs by %g", what,
              max_diff_f(a->d_embed, b->d_embed, sizeof a->d_embed / sizeof a->d_embed[0]));
}

static moa_profiler *make(size_t budget) {
    moa_profiler_params pp = moa_profiler_default_params();
    pp.device = MOA_DEVICE_CPU;
    pp.sink = 4;
    pp.block = 8;
    pp.act_budget_bytes = budget;
    moa_profiler *p = NULL;
    CHECK_OK(moa_profiler_create(M, N, &pp, &p));
    return p;
}

TEST(budget_does_not_change_results) {
    /* one layer's activations at N tokens: (2 nq + 2 nkv + d + 2 ff + n_head) floats per
     * token (nq = 32, nkv = 16), plus at most 8 x 60 bytes of 64-byte rounding */
    size_t layer = (size_t)N * (2 * 32 + 2 * 16 + 32 + 2 * 48 + 4) * sizeof(float);
    moa_profiler *none = make(0), *some = make(layer * 5 / 2), *all = make(SIZE_MAX);
    if (!none || !some || !all) goto out;
    CHECK_EQ_INT(moa_profiler_kept_layers(none, N), 0);
    CHECK_EQ_INT(moa_profiler_kept_layers(some, N), 2);
    CHECK_EQ_INT(moa_profiler_kept_layers(all, N), cfg.n_layer);
    /* a shorter sample fits more layers in the same store */
    CHECK(moa_profiler_kept_layers(some, 20) > 2);
    static result r0, r1, r2;
    run(none, N, 36, &r0);
    run(some, N, 36, &r1);
    run(all, N, 36, &r2);
    double tot = 0;
    for (size_t i = 0; i < sizeof r0.abs / sizeof r0.abs[0]; i++) tot += r0.abs[i];
    CHECK(r0.loss > 0 && tot > 0);
    check_same(&r0, &r1, "budget 2 layers vs 0");
    check_same(&r0, &r2, "unlimited budget vs 0");
    /* the store is laid out per sample length: a shorter sample in between, then the first
     * again, on the kept-activation profilers */
    static result s0, s1, s2;
    run(none, 20, 12, &s0);
    run(some, 20, 12, &s1);
    run(all, 20, 12, &s2);
    check_same(&s0, &s1, "20 tokens, budget 2 layers vs 0");
    check_same(&s0, &s2, "20 tokens, unlimited vs 0");
    run(some, N, 36, &r1);
    run(all, N, 36, &r2);
    check_same(&r0, &r1, "again after 20 tokens, budget 2 layers vs 0");
    check_same(&r0, &r2, "again after 20 tokens, unlimited vs 0");
out:
    moa_profiler_free(none);
    moa_profiler_free(some);
    moa_profiler_free(all);
}

TEST(budget_default_and_environment) {
    CHECK(setenv("MOA_PROFILER_ACT_BUDGET", "3K", 1) == 0);
    CHECK(moa_profiler_default_params().act_budget_bytes == 3072);
    setenv("MOA_PROFILER_ACT_BUDGET", "1.5G", 1);
    CHECK(moa_profiler_default_params().act_budget_bytes == (size_t)3 << 29);
    setenv("MOA_PROFILER_ACT_BUDGET", "0", 1);
    CHECK(moa_profiler_default_params().act_budget_bytes == 0);
    setenv("MOA_PROFILER_ACT_BUDGET", "max", 1);
    CHECK(moa_profiler_default_params().act_budget_bytes == SIZE_MAX);
    unsetenv("MOA_PROFILER_ACT_BUDGET");
    size_t def = moa_profiler_default_params().act_budget_bytes;   /* a quarter of the RAM */
    setenv("MOA_PROFILER_ACT_BUDGET", "lots", 1);                  /* ignored, with a warning */
    CHECK(moa_profiler_default_params().act_budget_bytes == def);
    unsetenv("MOA_PROFILER_ACT_BUDGET");
    CHECK(def >= (size_t)64 << 20);
}

int main(void) {
    setup();
    RUN(budget_does_not_change_results);
    RUN(budget_default_and_environment);
    moa_model_free(M);
    free(IMG.b);
    tiny_free(&W);
    return test_summary();
}
