/* test_influence_golden.c - the profiler's response loss and attention-influence histograms
 * on SmolLM2-135M against an independent oracle: torch autograd over a hand-written float64
 * Llama forward of the same GGUF (scripts/golden/make_influence_golden.py ->
 * tests/fixtures/influence-golden.json). One real sample: a ChatML prompt (a passage + a
 * question) and the model's own greedy answer; sink 64, block 64, eps 1e-6. Needs the model.
 *
 * Tolerances (stated; the oracle's own float32 run differs from its float64 golden by the
 * amounts in the fixture's "precision", printed below):
 *   - loss: relative 1e-4;
 *   - per (layer, head): sum over bins of |ours - ref| plus |sink ours - sink ref|, for the
 *     abs and for the signed histograms separately, <= 2% of that head's total reference
 *     |E| (bins + sink);
 *   - aggregate over all 270 heads (sum of those differences / sum of the totals) <= 0.1%.
 * Measured when written: oracle float32 vs float64: loss rel 6.7e-5, per-head worst 0.52%,
 * aggregate 7.1e-5; this profiler vs the float64 golden: loss rel 5e-7, per-head worst 0.04%,
 * aggregate 2.1e-6. Control: the same comparison with the response span shifted by one token
 * (rb + 1) must fail the aggregate tolerance by far (it shows the check has teeth).
 */
#include "moa/profiler.h"
#include "moa/common.h"
#include "test.h"

#include <jansson.h>

#define PER_HEAD_TOL 0.02
#define AGGREGATE_TOL 0.001
#define LOSS_RTOL 1e-4

static const char *g_model;

static json_t *load_fixture(const char *name) {
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", MOA_TEST_FIXTURES, name);
    json_error_t e;
    json_t *j = json_load_file(path, 0, &e);
    if (!j) fprintf(stderr, "cannot read %s: %s (line %d)\n", path, e.text, e.line);
    return j;
}

static double jnum(json_t *o, const char *k) { return json_number_value(json_object_get(o, k)); }

typedef struct { double worst, agg_abs, agg_sgn; int worst_l, worst_h, bad; } cmp_result;

/* Per (layer, head): sum_b |ours - ref| + |sink ours - sink ref|, abs and signed histograms
 * separately, over the head's total reference |E| (bins + sink); aggregate over all heads. */
static cmp_result compare(json_t *j, int L, int H, int nb, const double *ab, const double *sg, const double *ska,
                          const double *sks, int verbose) {
    cmp_result r = {0, 0, 0, -1, -1, 0};
    json_t *jab = json_object_get(j, "abs"), *jsg = json_object_get(j, "sgn");
    json_t *jska = json_object_get(j, "sink_abs"), *jsks = json_object_get(j, "sink_sgn");
    double sum_dabs = 0, sum_dsgn = 0, sum_tot = 0;
    for (int l = 0; l < L; l++)
        for (int h = 0; h < H; h++) {
            json_t *rab = json_array_get(json_array_get(jab, l), h), *rsg = json_array_get(json_array_get(jsg, l), h);
            CHECK_EQ_INT(json_array_size(rab), nb);
            size_t o = ((size_t)l * H + h) * nb;
            double ref_ska = json_number_value(json_array_get(json_array_get(jska, l), h));
            double ref_sks = json_number_value(json_array_get(json_array_get(jsks, l), h));
            double tot = ref_ska, dabs = fabs(ska[(size_t)l * H + h] - ref_ska);
            double dsgn = fabs(sks[(size_t)l * H + h] - ref_sks);
            for (int b = 0; b < nb; b++) {
                double ra = json_number_value(json_array_get(rab, b)), rs = json_number_value(json_array_get(rsg, b));
                tot += ra;
                dabs += fabs(ab[o + b] - ra);
                dsgn += fabs(sg[o + b] - rs);
            }
            double rel = fmax(dabs, dsgn) / tot;
            if (!(rel <= PER_HEAD_TOL) && r.bad++ < 10 && verbose)
                fprintf(stderr, "    l%d h%d: |diff| abs %.3e sgn %.3e of total %.3e (%.2f%%)\n", l, h, dabs, dsgn,
                        tot, 100 * rel);
            if (rel > r.worst || rel != rel) { r.worst = rel; r.worst_l = l; r.worst_h = h; }
            sum_dabs += dabs;
            sum_dsgn += dsgn;
            sum_tot += tot;
        }
    if (verbose) CHECK(sum_tot > 0);
    r.agg_abs = sum_dabs / sum_tot;
    r.agg_sgn = sum_dsgn / sum_tot;
    return r;
}

TEST(influence_matches_torch_autograd) {
    json_t *j = load_fixture("influence-golden.json");
    CHECK(j != NULL);
    if (!j) return;
    json_t *jids = json_object_get(j, "ids");
    int64_t n = (int64_t)json_array_size(jids);
    int64_t rb = (int64_t)jnum(j, "rb"), re = (int64_t)jnum(j, "re");
    int L = (int)jnum(j, "n_layer"), H = (int)jnum(j, "n_head"), nb = (int)jnum(j, "n_bins");
    CHECK(n > 0 && rb >= 1 && rb < re && re <= n && nb > 0);
    int32_t *ids = malloc(sizeof(int32_t) * (size_t)n);
    for (int64_t i = 0; i < n; i++) ids[i] = (int32_t)json_integer_value(json_array_get(jids, (size_t)i));

    moa_model *m = NULL;
    moa_model_params mp = moa_model_default_params();
    mp.f32_weights = 1;
    mp.compute_sha256 = 0;
    CHECK_OK(moa_model_load(g_model, &mp, &m));
    if (!m) { free(ids); json_decref(j); return; }
    CHECK_EQ_INT(m->hp.n_layer, L);
    CHECK_EQ_INT(m->hp.n_head, H);

    moa_profiler_params pp = moa_profiler_default_params();
    pp.sink = (int)jnum(j, "sink");
    pp.block = (int)jnum(j, "block");
    pp.eps = (float)jnum(j, "eps");
    CHECK_EQ_INT(pp.sink, 64);
    CHECK_EQ_INT(pp.block, 64);
    moa_profiler *p = NULL;
    CHECK_OK(moa_profiler_create(m, n, &pp, &p));
    if (!p) { moa_model_free(m); free(ids); json_decref(j); return; }

    size_t nh = (size_t)L * H;
    double *ab = calloc(nh * nb, sizeof(double)), *sg = calloc(nh * nb, sizeof(double));
    double *ska = calloc(nh, sizeof(double)), *sks = calloc(nh, sizeof(double));
    moa_profiler_hist hist = {ab, sg, ska, sks, nb};
    double loss = 0;
    CHECK_OK(moa_profiler_sample(p, ids, n, rb, re, &hist, &loss, NULL));

    double ref_loss = jnum(j, "loss");
    fprintf(stderr, "  n %lld, response [%lld, %lld): loss %.8f, ref %.8f (rel %.2e)\n", (long long)n,
            (long long)rb, (long long)re, loss, ref_loss, fabs(loss - ref_loss) / fabs(ref_loss));
    CHECK_CLOSE(loss, ref_loss, LOSS_RTOL, 0);

    cmp_result r = compare(j, L, H, nb, ab, sg, ska, sks, 1);
    json_t *pr = json_object_get(j, "precision");
    fprintf(stderr, "  per-head worst %.3e (l%d h%d), aggregate abs %.3e sgn %.3e; oracle f32-vs-f64: per-head worst"
                    " %.3e, aggregate abs %.3e sgn %.3e\n", r.worst, r.worst_l, r.worst_h, r.agg_abs, r.agg_sgn,
            jnum(pr, "per_head_worst"), jnum(pr, "aggregate_abs"), jnum(pr, "aggregate_sgn"));
    CHECK_MSG(r.bad == 0, "%d of %zu heads exceed %.1f%% (worst %.3f%% at l%d h%d)", r.bad, nh, 100 * PER_HEAD_TOL,
              100 * r.worst, r.worst_l, r.worst_h);
    CHECK_MSG(fmax(r.agg_abs, r.agg_sgn) <= AGGREGATE_TOL, "aggregate difference %.3e > %.1e",
              fmax(r.agg_abs, r.agg_sgn), AGGREGATE_TOL);

    /* control: loss over [rb + 1, re) instead must be far outside the tolerances */
    memset(ab, 0, sizeof(double) * nh * nb); memset(sg, 0, sizeof(double) * nh * nb);
    memset(ska, 0, sizeof(double) * nh); memset(sks, 0, sizeof(double) * nh);
    CHECK_OK(moa_profiler_sample(p, ids, n, rb + 1, re, &hist, &loss, NULL));
    cmp_result c = compare(j, L, H, nb, ab, sg, ska, sks, 0);
    fprintf(stderr, "  control (response span shifted by one): loss %.6f, per-head worst %.3e, aggregate %.3e,"
                    " heads over tolerance %d\n", loss, c.worst, fmax(c.agg_abs, c.agg_sgn), c.bad);
    CHECK(fmax(c.agg_abs, c.agg_sgn) > 10 * AGGREGATE_TOL);

    free(ab); free(sg); free(ska); free(sks); free(ids);
    moa_profiler_free(p);
    moa_model_free(m);
    json_decref(j);
}

int main(void) {
    g_model = test_model_path();
    RUN(influence_matches_torch_autograd);
    return test_summary();
}
