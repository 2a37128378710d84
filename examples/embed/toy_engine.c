/* toy_engine.c - a toy transformer engine embedding the MoA runtime through its installed
 * public header only (<moa/runtime.h>). It owns its weights and projections; the runtime owns
 * the per-head KV caches and attention. It runs a 2-layer toy model over a prompt (prefill)
 * and then decodes token by token, once with a dense layout, once with a sparse one (sinks +
 * per-head windows, one head sinks-only), and checks the sparse run against its own naive
 * masked attention. Prints the cache sizes. Exit status 0 if every check passes.
 *
 * With a plan file (`toy_engine PLAN.json [N_CTX]`, e.g. one of the published plans/), it
 * loads it through the C API instead, prints the model it was made for, its density and
 * the validation summary it carries, and creates the KV cache it asks for at N_CTX tokens
 * (default 2048) beside a dense one of the same model: what an engine does before its run. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <moa/runtime.h>

enum { L = 2, D = 64, H = 4, HKV = 2, HD = 16, PROMPT = 150, STEPS = 90, N = PROMPT + STEPS };

static float W[L][3][D * D];          /* toy projections: q, k, v (only the first rows used) */
static float X[N][D];                 /* toy token embeddings */

static float frand(unsigned *s) { *s = *s * 1103515245u + 12345u; return ((*s >> 8) & 0xffff) / 32768.0f - 1.0f; }

/* y[out] = W[out][D] x */
static void proj(const float *w, const float *x, float *y, int out) {
    for (int o = 0; o < out; o++) {
        float s = 0;
        for (int i = 0; i < D; i++) s += w[o * D + i] * x[i];
        y[o] = s;
    }
}

/* The engine's own reference: masked softmax attention of token t, head h, layer input xs. */
static void naive(int t, int h, const float (*q)[H * HD], const float (*k)[HKV * HD],
                  const float (*v)[HKV * HD], int sink, int window, float *out) {
    int kh = h / (H / HKV);
    double w[N], mx = -1e30, sum = 0;
    for (int j = 0; j <= t; j++) {
        int keep = j < sink || t - j < window;
        if (!keep) { w[j] = -INFINITY; continue; }
        double s = 0;
        for (int e = 0; e < HD; e++) s += (double)q[t][h * HD + e] * k[j][kh * HD + e];
        w[j] = s / sqrt((double)HD);
        if (w[j] > mx) mx = w[j];
    }
    for (int j = 0; j <= t; j++) { w[j] = w[j] == -INFINITY ? 0 : exp(w[j] - mx); sum += w[j]; }
    for (int e = 0; e < HD; e++) {
        double s = 0;
        for (int j = 0; j <= t; j++) s += w[j] * v[j][kh * HD + e];
        out[e] = sum > 0 ? (float)(s / sum) : 0.0f;
    }
}

/* Runs both layers over all tokens (prefill PROMPT, then decode); returns the max relative
 * error against the naive attention, or -1 on a runtime error. */
static double run(moa_cache *cache, const moa_cache_unit *units, int sink) {
    static float q[N][H * HD], k[N][HKV * HD], v[N][HKV * HD], o[N][H * HD], ref[H * HD];
    static float x[N][D];
    double worst = 0;
    memcpy(x, X, sizeof x);
    for (int l = 0; l < L; l++) {
        for (int t = 0; t < N; t++) {
            proj(W[l][0], x[t], q[t], H * HD);
            proj(W[l][1], x[t], k[t], HKV * HD);
            proj(W[l][2], x[t], v[t], HKV * HD);
        }
        /* prefill in two chunks, then one token at a time */
        if (moa_attn_prefill(cache, 0, l, q[0], k[0], v[0], 100, o[0]) < 0 ||
            moa_attn_prefill(cache, 0, l, q[100], k[100], v[100], PROMPT - 100, o[100]) < 0) return -1;
        for (int t = PROMPT; t < N; t++)
            if (moa_attn_decode(cache, l, NULL, 1, q[t], k[t], v[t], o[t]) < 0) return -1;
        for (int t = 0; t < N; t++) {
            for (int h = 0; h < H; h++) {
                const moa_cache_unit *u = &units[l * HKV + h / (H / HKV)];
                int window = u->kind == MOA_UNIT_DENSE ? N : (int)u->window;
                naive(t, h, (const float (*)[H * HD])q, (const float (*)[HKV * HD])k,
                      (const float (*)[HKV * HD])v, sink, window, ref + h * HD);
            }
            for (int e = 0; e < H * HD; e++) {
                double d = fabs((double)o[t][e] - ref[e]) / (fabs(ref[e]) + 1e-3);
                if (d > worst) worst = d;
            }
            for (int e = 0; e < D; e++) x[t][e] += 0.5f * o[t][e % (H * HD)];   /* toy residual */
        }
    }
    return worst;
}

/* The plan-file mode: load, describe, size the caches. */
static int plan_file(const char *path, long n_ctx) {
    moa_plan *plan = NULL;
    if (moa_plan_load(path, &plan) < 0) {
        fprintf(stderr, "toy_engine: %s\n", moa_last_error());
        return 1;
    }
    const int nl = moa_plan_n_layer(plan), nh = moa_plan_n_head(plan), nkv = moa_plan_n_head_kv(plan),
              hd = moa_plan_head_dim(plan);
    printf("plan %s: %s model, %d layers, %d heads / %d KV heads of %d, sha256 %.16s...\n", path,
           *moa_plan_arch(plan) ? moa_plan_arch(plan) : "?", nl, nh, nkv, hd, moa_plan_model_sha256(plan));
    printf("density %.3f at %ld tokens (sink %d, block %d)\n", moa_plan_density(plan, n_ctx), n_ctx,
           moa_plan_sink(plan), moa_plan_block(plan));
    moa_plan_validation v;
    if (moa_plan_get_validation(plan, &v)) {
        printf("validated on %s (%d prompts per length): length dense / uniform / plan\n", v.task, v.samples);
        for (int i = 0; i < v.n_lengths; i++)
            printf("  %6lld  %.2f / %.2f / %.2f\n", (long long)v.length[i], v.dense[i], v.uniform[i], v.plan[i]);
    } else {
        printf("no validation summary in the plan\n");
    }
    /* the caches an engine would create: the plan's, and a dense one of the same model */
    moa_cache_params p = moa_cache_default_params();
    moa_cache *sparse = NULL, *dense = NULL;
    moa_cache_unit *units = calloc((size_t)nl * (size_t)nkv, sizeof *units);
    int ok = units != NULL && moa_cache_create(plan, n_ctx, 1, &p, &sparse) >= 0;
    if (ok) {
        for (int u = 0; u < nl * nkv; u++) units[u] = (moa_cache_unit){MOA_UNIT_DENSE, n_ctx, 0, 0};
        moa_cache_layout lay = {nl, nh, nkv, hd, units, NULL};
        ok = moa_cache_create_layout(&lay, n_ctx, 1, &p, &dense) >= 0;
    }
    if (!ok) fprintf(stderr, "toy_engine: %s\n", moa_last_error());
    else
        printf("KV cache at %ld tokens (f16): plan %zu bytes, dense %zu bytes (%.3f)\n", n_ctx,
               moa_cache_bytes(sparse), moa_cache_bytes(dense),
               (double)moa_cache_bytes(sparse) / (double)moa_cache_bytes(dense));
    moa_cache_free(sparse);
    moa_cache_free(dense);
    free(units);
    moa_plan_free(plan);
    printf("%s\n", ok ? "toy_engine: ok" : "toy_engine: FAILED");
    return ok ? 0 : 1;
}

int main(int argc, char **argv) {
    if (argc > 1) return plan_file(argv[1], argc > 2 ? strtol(argv[2], NULL, 10) : 2048);
    unsigned s = 7;
    for (int l = 0; l < L; l++)
        for (int m = 0; m < 3; m++)
            for (int i = 0; i < D * D; i++) W[l][m][i] = 0.25f * frand(&s);
    for (int t = 0; t < N; t++)
        for (int i = 0; i < D; i++) X[t][i] = frand(&s);

    const int sink = 8;
    moa_cache_unit dense[L * HKV], sparse[L * HKV];
    for (int u = 0; u < L * HKV; u++) {
        dense[u] = (moa_cache_unit){MOA_UNIT_DENSE, N, sink, 0};
        sparse[u] = (moa_cache_unit){MOA_UNIT_WINDOW, 24 + 13 * u, sink, 0};
    }
    sparse[1].window = 0;   /* a sinks-only head */
    moa_cache_params p = moa_cache_default_params();   /* absolute positions, caller-side RoPE */
    p.type_k = p.type_v = MOA_KV_F32;   /* exact K/V: the check below is against f32 arithmetic
                                           (the default f16 storage halves the bytes) */
    int ok = 1;
    const moa_cache_unit *layouts[2] = {dense, sparse};
    const char *names[2] = {"dense", "sparse"};
    size_t bytes[2] = {0, 0};
    for (int c = 0; c < 2; c++) {
        moa_cache_layout lay = {L, H, HKV, HD, layouts[c], NULL};
        moa_cache *cache = NULL;
        if (moa_cache_create_layout(&lay, N, 1, &p, &cache) < 0) {
            fprintf(stderr, "toy_engine: %s\n", moa_last_error());
            return 1;
        }
        bytes[c] = moa_cache_bytes(cache);
        double err = run(cache, layouts[c], sink);
        if (err < 0) { fprintf(stderr, "toy_engine: %s\n", moa_last_error()); ok = 0; }
        printf("%-6s cache: %7zu bytes, max relative error vs naive masked attention %.2e\n",
               names[c], bytes[c], err);
        if (!(err >= 0 && err < 1e-3)) ok = 0;
        moa_cache_free(cache);
    }
    /* a uniform StreamingLLM plan through the plan API */
    moa_plan *plan = NULL;
    if (moa_plan_uniform(L, H, HKV, HD, 64, 64, 0.6, 512, &plan) < 0) {
        fprintf(stderr, "toy_engine: %s\n", moa_last_error());
        return 1;
    }
    printf("uniform plan: density %.3f at 512 tokens, window of unit (0,0) = %lld\n",
           moa_plan_density(plan, 512), (long long)moa_plan_unit_window(plan, 0, 0, 512));
    moa_plan_free(plan);
    if (bytes[1] >= bytes[0]) ok = 0;
    printf("%s\n", ok ? "toy_engine: ok" : "toy_engine: FAILED");
    return ok ? 0 : 1;
}
