/* sampler.c - greedy / temperature / top-k / top-p sampling. */
#include "sampler.h"
#include "moa-common.h"

#include <math.h>
#include <stdlib.h>

struct moa_sampler {
    moa_sampler_params p;
    int32_t n_vocab;
    uint64_t st[4];        /* xoshiro256** */
    int32_t *idx;          /* [n_vocab] candidate ids */
    float *prob;           /* [n_vocab] */
};

static uint64_t splitmix64(uint64_t *x) {
    uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

static uint64_t next_u64(moa_sampler *s) {
    uint64_t *q = s->st;
    uint64_t r = rotl(q[1] * 5, 7) * 9, t = q[1] << 17;
    q[2] ^= q[0]; q[3] ^= q[1]; q[1] ^= q[2]; q[0] ^= q[3];
    q[2] ^= t; q[3] = rotl(q[3], 45);
    return r;
}

double moa_sampler_uniform(moa_sampler *s) { return (double)(next_u64(s) >> 11) * 0x1.0p-53; }

moa_sampler_params moa_sampler_default_params(void) {
    moa_sampler_params p = {0.0f, 0, 1.0f, 42};
    return p;
}

moa_status moa_sampler_create(const moa_sampler_params *pp, int32_t n_vocab, moa_sampler **out) {
    *out = NULL;
    moa_sampler_params p = pp ? *pp : moa_sampler_default_params();
    if (n_vocab <= 0) return moa_err(MOA_ERR_INVALID_ARG, "sampler: n_vocab must be positive");
    if (!(p.top_p > 0 && p.top_p <= 1)) return moa_err(MOA_ERR_INVALID_ARG, "sampler: top_p %g must be in (0, 1]", p.top_p);
    if (p.top_k < 0) return moa_err(MOA_ERR_INVALID_ARG, "sampler: top_k %d must be >= 0", p.top_k);
    moa_sampler *s = calloc(1, sizeof *s);
    if (!s) return moa_err(MOA_ERR_NOMEM, "out of memory");
    s->p = p;
    s->n_vocab = n_vocab;
    s->idx = moa_alloc_array((size_t)n_vocab, sizeof(int32_t));
    s->prob = moa_alloc_array((size_t)n_vocab, sizeof(float));
    if (!s->idx || !s->prob) { moa_sampler_free(s); return moa_err(MOA_ERR_NOMEM, "out of memory"); }
    uint64_t x = p.seed;
    for (int i = 0; i < 4; i++) s->st[i] = splitmix64(&x);
    *out = s;
    return MOA_OK;
}

void moa_sampler_free(moa_sampler *s) {
    if (!s) return;
    free(s->idx);
    free(s->prob);
    free(s);
}

int32_t moa_argmax(const float *x, int32_t n) {
    int32_t best = 0;
    for (int32_t i = 1; i < n; i++)
        if (x[i] > x[best]) best = i;
    return best;
}

static _Thread_local const float *t_sort_logits;
static int cmp_desc(const void *a, const void *b) {
    float x = t_sort_logits[*(const int32_t *)a], y = t_sort_logits[*(const int32_t *)b];
    return x < y ? 1 : x > y ? -1 : (*(const int32_t *)a - *(const int32_t *)b);
}

int32_t moa_sampler_sample(moa_sampler *s, const float *logits) {
    int32_t n = s->n_vocab;
    if (s->p.temperature <= 0) return moa_argmax(logits, n);
    /* candidates: all ids, sorted by logit descending (only the top_k needed when set) */
    for (int32_t i = 0; i < n; i++) s->idx[i] = i;
    t_sort_logits = logits;
    qsort(s->idx, (size_t)n, sizeof(int32_t), cmp_desc);
    int32_t k = s->p.top_k > 0 && s->p.top_k < n ? s->p.top_k : n;
    /* softmax at temperature over the k candidates */
    float mx = logits[s->idx[0]];
    double sum = 0;
    for (int32_t i = 0; i < k; i++) {
        s->prob[i] = expf((logits[s->idx[i]] - mx) / s->p.temperature);
        sum += s->prob[i];
    }
    /* top-p: the smallest prefix whose mass reaches p */
    if (s->p.top_p < 1) {
        double c = 0;
        int32_t keep = k;
        for (int32_t i = 0; i < k; i++) {
            c += s->prob[i] / sum;
            if (c >= s->p.top_p) { keep = i + 1; break; }
        }
        k = keep;
        sum = 0;
        for (int32_t i = 0; i < k; i++) sum += s->prob[i];
    }
    double r = moa_sampler_uniform(s) * sum, c = 0;
    for (int32_t i = 0; i < k; i++) {
        c += s->prob[i];
        if (r < c) return s->idx[i];
    }
    return s->idx[k - 1];
}
