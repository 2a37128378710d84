/* bench_attn.c - micro-benchmark of the runtime attention (not a test): decode step time and
 * KV bytes read per token, and prefill attention time, dense vs uniform 50% / 25% plans
 * (StreamingLLM-style: sink 64 + fixed window) at several contexts, SmolLM2-135M shapes
 * (30 layers, 9 query heads, 3 KV heads, head_dim 64, RoPE base 1e5).
 *
 *   bench_attn [-c 1024,2048,4096,8192] [-b BATCH] [-r REPEATS] [-s STEPS] [-p PREFILL_MAX]
 *
 * Decode: caches are filled with random keys/values up to position N-1 (decode cost does not
 * depend on the values), then each timed step decodes one token for every layer and every
 * sequence of the batch at position N-1 (the position is reset after each step). Prefill:
 * one layer, one N-token chunk, from an empty cache. Warm-up runs are excluded; mean and
 * sample stddev over repeats. Results on stdout (markdown table), progress on stderr. */
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "moa/attn.h"
#include "cache.h"
#include "moa/common.h"
#include "moa/runtime.h"

#define N_LAYER 30
#define N_HEAD 9
#define N_KV 3
#define HD 64

static void stats(const double *x, int n, double *mean, double *sd) {
    double s = 0, q = 0;
    for (int i = 0; i < n; i++) s += x[i];
    *mean = s / n;
    for (int i = 0; i < n; i++) q += (x[i] - *mean) * (x[i] - *mean);
    *sd = n > 1 ? sqrt(q / (n - 1)) : 0;
}

static uint64_t rs = 88172645463325252ull;
static float frand(void) {
    rs ^= rs << 13; rs ^= rs >> 7; rs ^= rs << 17;
    return (float)((double)(rs >> 11) / (double)(1ull << 53) * 2.0 - 1.0);
}

/* Machine read bandwidth: sum a 1 GiB buffer with every thread (best of 3). */
static double read_bw(void) {
    const size_t n = (size_t)1 << 28;
    float *a = moa_alloc_aligned(n, sizeof(float));
    if (!a) return 0;
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < n; i++) a[i] = (float)(i & 7);
    double best = 0;
    volatile float sink = 0;
    for (int r = 0; r < 3; r++) {
        double t0 = moa_time_now();
        float s = 0;
#pragma omp parallel for simd reduction(+ : s) schedule(static)
        for (size_t i = 0; i < n; i++) s += a[i];
        double dt = moa_time_now() - t0;
        sink += s;
        double bw = n * sizeof(float) / dt;
        if (bw > best) best = bw;
    }
    moa_free_aligned(a);
    return best;
}

static moa_plan *make_plan(int n_layer, double density, int64_t n) {
    moa_plan *p = NULL;
    if (moa_plan_uniform(n_layer, N_HEAD, N_KV, HD, 64, 64, density, n, &p) < 0) {
        fprintf(stderr, "plan: %s\n", moa_last_error());
        exit(1);
    }
    return p;
}

static moa_cache_params params(void) {
    moa_cache_params P = moa_cache_default_params();
    P.rope_dim = HD;
    P.rope_base = 100000.0f;
    return P;
}

int main(int argc, char **argv) {
    long ctx[16] = {1024, 2048, 4096, 8192};
    int nctx = 4, batch = 1, repeats = 5, steps = 10;
    long prefill_max = 8192;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-c") && i + 1 < argc) nctx = moa_parse_int_list(argv[++i], ctx, 16);
        else if (!strcmp(argv[i], "-b") && i + 1 < argc) batch = atoi(argv[++i]);
        else if (!strcmp(argv[i], "-r") && i + 1 < argc) repeats = atoi(argv[++i]);
        else if (!strcmp(argv[i], "-s") && i + 1 < argc) steps = atoi(argv[++i]);
        else if (!strcmp(argv[i], "-p") && i + 1 < argc) prefill_max = atol(argv[++i]);
        else {
            fprintf(stderr, "usage: %s [-c N,...] [-b batch] [-r repeats] [-s steps] [-p prefill_max]\n", argv[0]);
            return 2;
        }
    }
    if (nctx < 1 || batch < 1 || repeats < 2 || steps < 1) return 2;
    const double densities[3] = {1.0, 0.5, 0.25};
    const char *names[3] = {"dense", "uniform 50%", "uniform 25%"};
    double *rep = malloc(sizeof(double) * repeats);

    printf("# bench_attn: %d threads, kernels %s, SmolLM2-135M shapes (%d layers, %d/%d heads, hd %d), f32 KV\n",
           omp_get_max_threads(), moa_attn_isa_name(moa_attn_isa_get()), N_LAYER, N_HEAD, N_KV, HD);
    char load[128] = "?";
    FILE *lf = fopen("/proc/loadavg", "r");
    if (lf) {
        if (!fgets(load, sizeof load, lf)) strcpy(load, "?");
        fclose(lf);
        load[strcspn(load, "\n")] = 0;
    }
    printf("# load average at start: %s; OMP_WAIT_POLICY=%s\n", load,
           getenv("OMP_WAIT_POLICY") ? getenv("OMP_WAIT_POLICY") : "(unset)");
    double bw = read_bw();
    printf("# machine read bandwidth (1 GiB sum, all threads): %.1f GB/s\n\n", bw / 1e9);

    /* ---- decode ---- */
    printf("## decode: one token x %d layers x batch %d, at position N-1 (mean ± sd over %d repeats of %d steps)\n\n",
           N_LAYER, batch, repeats, steps);
    printf("| N | plan | KV bytes/seq | ms/step | tok/s (batch) | KV GB/s | speed-up |\n|---|---|---|---|---|---|---|\n");
    const size_t ldq = N_HEAD * HD, ldk = N_KV * HD;
    float *q = malloc(sizeof(float) * ldq * batch), *k = malloc(sizeof(float) * ldk * batch);
    float *v = malloc(sizeof(float) * ldk * batch), *o = malloc(sizeof(float) * ldq * batch);
    for (size_t i = 0; i < ldq * batch; i++) q[i] = frand();
    for (size_t i = 0; i < ldk * batch; i++) { k[i] = frand(); v[i] = frand(); }
    for (int ci = 0; ci < nctx; ci++) {
        const int64_t N = ctx[ci];
        double dense_ms = 0;
        for (int di = 0; di < 3; di++) {
            moa_plan *plan = make_plan(N_LAYER, densities[di], N);
            moa_cache_params P = params();
            moa_cache *c = NULL;
            if (moa_cache_create(plan, N, batch, &P, &c) < 0) {
                fprintf(stderr, "cache: %s\n", moa_last_error());
                return 1;
            }
            /* fill every slot (touches all KV pages) and stand at position N-1 */
            size_t nf = c->slots_per_seq * HD * (size_t)batch;
            for (size_t i = 0; i < nf; i++) { c->k[i] = frand(); c->v[i] = frand(); }
            for (int s = 0; s < batch; s++)
                for (int l = 0; l < N_LAYER; l++) c->pos[(size_t)s * N_LAYER + l] = N - 1;
            for (int it = -2; it < repeats; it++) {   /* two warm-up repeats */
                double t0 = moa_time_now();
                for (int st = 0; st < steps; st++) {
                    for (int l = 0; l < N_LAYER; l++) moa_attn_decode(c, l, NULL, batch, q, k, v, o);
                    for (size_t i = 0; i < (size_t)batch * N_LAYER; i++) c->pos[i] = N - 1;
                }
                if (it >= 0) rep[it] = (moa_time_now() - t0) / steps * 1e3;
            }
            double mean, sd;
            stats(rep, repeats, &mean, &sd);
            if (di == 0) dense_ms = mean;
            const double bytes = (double)moa_cache_bytes(c) / batch;   /* read once per token */
            printf("| %lld | %s | %.1f MB | %.3f ± %.3f | %.0f | %.1f | %.2fx |\n", (long long)N,
                   names[di], bytes / 1e6, mean, sd, batch * 1e3 / mean,
                   bytes * batch / (mean * 1e-3) / 1e9, dense_ms / mean);
            fflush(stdout);
            moa_cache_free(c);
            moa_plan_free(plan);
        }
    }
    free(q); free(k); free(v); free(o);

    /* ---- prefill ---- */
    printf("\n## prefill attention: one layer, one N-token chunk from an empty cache, RoPE included (mean ± sd over %d repeats)\n\n",
           repeats);
    printf("| N | plan | ms/layer | x30 layers (s) | speed-up |\n|---|---|---|---|---|\n");
    for (int ci = 0; ci < nctx; ci++) {
        const int64_t N = ctx[ci];
        if (N > prefill_max) continue;
        float *pq = malloc(sizeof(float) * ldq * N), *pk = malloc(sizeof(float) * ldk * N);
        float *pv = malloc(sizeof(float) * ldk * N), *po = malloc(sizeof(float) * ldq * N);
        for (size_t i = 0; i < ldq * (size_t)N; i++) pq[i] = frand();
        for (size_t i = 0; i < ldk * (size_t)N; i++) { pk[i] = frand(); pv[i] = frand(); }
        double dense_ms = 0;
        for (int di = 0; di < 3; di++) {
            moa_plan *plan = make_plan(1, densities[di], N);
            moa_cache_params P = params();
            moa_cache *c = NULL;
            if (moa_cache_create(plan, N, 1, &P, &c) < 0) return 1;
            for (int it = -1; it < repeats; it++) {
                moa_cache_reset(c, 0);
                double t0 = moa_time_now();
                moa_attn_prefill(c, 0, 0, pq, pk, pv, (int)N, po);
                if (it >= 0) rep[it] = (moa_time_now() - t0) * 1e3;
            }
            double mean, sd;
            stats(rep, repeats, &mean, &sd);
            if (di == 0) dense_ms = mean;
            printf("| %lld | %s | %.2f ± %.2f | %.2f | %.2fx |\n", (long long)N, names[di], mean, sd,
                   mean * N_LAYER / 1e3, dense_ms / mean);
            fflush(stdout);
            moa_cache_free(c);
            moa_plan_free(plan);
        }
        free(pq); free(pk); free(pv); free(po);
    }
    free(rep);
    return 0;
}
