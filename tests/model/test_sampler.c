/* test_sampler.c - sampling against its definition: greedy = argmax; seeded runs repeat;
 * temperature sampling frequencies match softmax(logits / T) (checked within 5 standard
 * errors); top-k never leaves the k largest logits and renormalises over them; top-p keeps
 * the smallest prefix reaching p. */
#include "moa/model.h"
#include "moa/common.h"
#include "test.h"

enum { V = 50 };
static float logits[V];

static void setup(void) {
    for (int i = 0; i < V; i++) logits[i] = (float)((i * 37) % V) / 10.0f - 2.0f;   /* a permutation */
}

static moa_sampler *make(float t, int k, float p, uint64_t seed) {
    moa_sampler_params sp = moa_sampler_default_params();
    sp.temperature = t; sp.top_k = k; sp.top_p = p; sp.seed = seed;
    moa_sampler *s = NULL;
    CHECK_OK(moa_sampler_create(&sp, V, &s));
    return s;
}

TEST(greedy_and_seeds) {
    moa_sampler *g = make(0, 0, 1, 1);
    CHECK_EQ_INT(moa_sampler_sample(g, logits), moa_argmax(logits, V));
    CHECK_EQ_INT(logits[moa_argmax(logits, V)], 2.9f);
    moa_sampler_free(g);
    moa_sampler *a = make(1, 0, 1, 7), *b = make(1, 0, 1, 7), *c = make(1, 0, 1, 8);
    int same = 1, differ = 0;
    for (int i = 0; i < 200; i++) {
        int x = moa_sampler_sample(a, logits), y = moa_sampler_sample(b, logits), z = moa_sampler_sample(c, logits);
        same &= x == y;
        differ |= x != z;
    }
    CHECK(same);
    CHECK(differ);
    moa_sampler_free(a); moa_sampler_free(b); moa_sampler_free(c);
}

/* Empirical frequencies of n draws vs the expected probabilities q (0 outside the support). */
static void check_freq(moa_sampler *s, const double *q, int n) {
    int cnt[V] = {0};
    for (int i = 0; i < n; i++) cnt[moa_sampler_sample(s, logits)]++;
    int bad = 0;
    for (int v = 0; v < V; v++) {
        double f = (double)cnt[v] / n, se = sqrt(q[v] * (1 - q[v]) / n) + 1e-12;
        if (q[v] == 0 ? cnt[v] != 0 : fabs(f - q[v]) > 5 * se + 1e-9) bad++;
    }
    CHECK_MSG(bad == 0, "%d ids off their expected frequency", bad);
}

TEST(temperature_top_k_top_p) {
    const int n = 200000;
    double q[V], z;
    /* temperature 0.7 over everything */
    z = 0;
    for (int v = 0; v < V; v++) z += q[v] = exp(logits[v] / 0.7);
    for (int v = 0; v < V; v++) q[v] /= z;
    moa_sampler *s = make(0.7f, 0, 1, 3);
    check_freq(s, q, n);
    moa_sampler_free(s);
    /* top-k 5 at temperature 1: the 5 largest logits are 2.9, 2.8, 2.7, 2.6, 2.5 */
    z = 0;
    for (int v = 0; v < V; v++) z += q[v] = logits[v] >= 2.45f ? exp(logits[v]) : 0;
    for (int v = 0; v < V; v++) q[v] /= z;
    s = make(1.0f, 5, 1, 4);
    check_freq(s, q, n);
    moa_sampler_free(s);
    /* top-p 0.5 at temperature 0.5: keep the descending prefix whose mass reaches 0.5 */
    double p[V], tot = 0;
    int order[V];
    for (int v = 0; v < V; v++) { p[v] = exp(logits[v] / 0.5); tot += p[v]; order[v] = v; }
    for (int i = 0; i < V; i++)          /* selection sort, descending */
        for (int j = i + 1; j < V; j++)
            if (logits[order[j]] > logits[order[i]]) { int t = order[i]; order[i] = order[j]; order[j] = t; }
    double c = 0;
    int keep = 0;
    while (c < 0.5 * tot) c += p[order[keep++]];
    for (int v = 0; v < V; v++) q[v] = 0;
    for (int i = 0; i < keep; i++) q[order[i]] = p[order[i]] / c;
    s = make(0.5f, 0, 0.5f, 5);
    check_freq(s, q, n);
    moa_sampler_free(s);
}

TEST(bad_parameters) {
    moa_sampler_params sp = moa_sampler_default_params();
    moa_sampler *s = NULL;
    sp.top_p = 0;
    CHECK(moa_sampler_create(&sp, V, &s) == MOA_ERR_INVALID_ARG);
    sp.top_p = 1;
    sp.top_k = -1;
    CHECK(moa_sampler_create(&sp, V, &s) == MOA_ERR_INVALID_ARG);
    CHECK(moa_sampler_create(NULL, 0, &s) == MOA_ERR_INVALID_ARG);
}

int main(void) {
    setup();
    RUN(greedy_and_seeds);
    RUN(temperature_top_k_top_p);
    RUN(bad_parameters);
    return test_summary();
}
