/* sampler.c - greedy / temperature / top-k / top-p sampling. */
#include "moa/model.h"
#include "moa/common.h"

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

static _Thread_local const float *t_sort_logits;   /* qsort has no context argument */
static int cmp_desc(const void *a, const void *b) {
    float x = t_sort_logits[*(const int32_t *)a], y = t_sort_logits[*(const int32_t *)b];
    return x < y ? 1 : x > y ? -1 : (*(const int32_t *)a - *(const int32_t *)b);
}

/* s->idx[0..k) = ids of the k largest logits (any order), by a size-k min-heap: O(n log k). */
static void select_top_k(moa_sampler *s, const float *lg, int32_t k) {
    int32_t *h = s->idx;
    for (int32_t i = 0; i < s->n_vocab; i++) {
        if (i < k) {                       /* push, sift up */
            int32_t c = i;
            h[c] = i;
            while (c > 0 && lg[h[(c - 1) / 2]] > lg[h[c]]) {
                int32_t p = (c - 1) / 2, t = h[p];
                h[p] = h[c]; h[c] = t; c = p;
            }
        } else if (lg[i] > lg[h[0]]) {     /* replace the smallest, sift down */
            h[0] = i;
            int32_t c = 0;
            for (;;) {
                int32_t l = 2 * c + 1, r = l + 1, m = c;
                if (l < k && lg[h[l]] < lg[h[m]]) m = l;
                if (r < k && lg[h[r]] < lg[h[m]]) m = r;
                if (m == c) break;
                int32_t t = h[m]; h[m] = h[c]; h[c] = t; c = m;
            }
        }
    }
}

int32_t moa_sampler_sample(moa_sampler *s, const float *logits) {
    int32_t n = s->n_vocab;
    if (s->p.temperature <= 0) return moa_argmax(logits, n);
    /* candidates: every id (temperature only: no ordering needed), the top_k ids, and a
     * descending sort only when top-p needs the order */
    int32_t k = s->p.top_k > 0 && s->p.top_k < n ? s->p.top_k : n;
    if (k < n) select_top_k(s, logits, k);
    else for (int32_t i = 0; i < n; i++) s->idx[i] = i;
    if (s->p.top_p < 1) {
        t_sort_logits = logits;
        qsort(s->idx, (size_t)k, sizeof(int32_t), cmp_desc);
    }
    float mx = logits[s->idx[0]];
    for (int32_t i = 1; i < k; i++) mx = logits[s->idx[i]] > mx ? logits[s->idx[i]] : mx;
    /* softmax at temperature over the candidates */
    double sum = 0;
    for (int32_t i = 0; i < k; i++) {
        s->prob[i] = expf((logits[s->idx[i]] - mx) / s->p.temperature);
        sum += s->prob[i];
    }
    /* top-p: the smallest prefix (in descending order) whose mass reaches p */
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
