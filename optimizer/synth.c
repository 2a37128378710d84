/* synth.c - synthetic influence profiles with planted head types, for tests and benchmarks.
 *
 * Per KV group a type is drawn (local with probability frac_local, global frac_global, else
 * length-elastic) and a magnitude s ~ exp(N(0, 0.5^2)). Influence per (query i, key j) at
 * distance d = i - j follows a type profile f(d); a bin aggregates the (N - d) query rows that
 * have a key at that distance:
 *   local:   f(d) = exp(-d / local_scale)           (same span at every N)
 *   global:  f(d) = 1 / N                           (every distance matters)
 *   elastic: f(d) = exp(-d / (elastic_frac * N))    (span grows with N)
 * bin b: s * sum over the bin's distances (midpoint rule) of (N - d) f(d) / N, times
 * (1 + noise * z) clipped at 0 (z standard normal; seeded splitmix64 + Box-Muller).
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "moa/common.h"
#include "moa/optimizer.h"

typedef struct { uint64_t s; } rng;
static uint64_t rng_next(rng *r) {
    uint64_t z = (r->s += 0x9E3779B97F4A7C15ULL);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}
static double rng_unif(rng *r) { return ((rng_next(r) >> 11) + 0.5) * (1.0 / 9007199254740992.0); }
static double rng_normal(rng *r) {
    double u = rng_unif(r), v = rng_unif(r);
    return sqrt(-2 * log(u)) * cos(6.283185307179586 * v);
}

moa_synth_params moa_synth_default_params(void) {
    const moa_synth_params p = {.n_layer = 4, .n_head = 8, .n_head_kv = 4, .head_dim = 64,
                                .sink = 64, .block = 64, .n_lengths = 3,
                                .lengths = {2048, 4096, 8192}, .frac_local = 0.4,
                                .frac_global = 0.2, .local_scale = 256, .elastic_frac = 0.3,
                                .noise = 0.1, .seed = 1};
    return p;
}

moa_status moa_synth_profile(const moa_synth_params *sp, moa_profile **out, moa_synth_type **types_out) {
    *out = NULL;
    if (types_out) *types_out = NULL;
    moa_profile *p;
    MOA_TRY(moa_profile_create(sp->n_layer, sp->n_head, sp->n_head_kv, sp->head_dim, sp->sink, sp->block,
                               sp->lengths, sp->n_lengths, &p));
    snprintf(p->arch, sizeof p->arch, "synthetic");
    size_t ng = (size_t)sp->n_layer * sp->n_head_kv;
    moa_synth_type *types = malloc(ng * sizeof *types);
    double *scale = malloc(ng * sizeof *scale);
    if (!types || !scale) { free(types); free(scale); moa_profile_free(p); return moa_err(MOA_ERR_NOMEM, "out of memory"); }
    rng r = {sp->seed * 0x2545F4914F6CDD1DULL + 1};
    for (size_t g = 0; g < ng; g++) {
        double u = rng_unif(&r);
        types[g] = u < sp->frac_local ? MOA_SYNTH_LOCAL : u < sp->frac_local + sp->frac_global ? MOA_SYNTH_GLOBAL : MOA_SYNTH_ELASTIC;
        scale[g] = exp(0.5 * rng_normal(&r));
    }
    int hpk = sp->n_head / sp->n_head_kv;
    for (int b = 0; b < p->n_buckets; b++) {
        moa_profile_bucket *k = &p->buckets[b];
        double N = (double)k->length;
        for (int l = 0; l < sp->n_layer; l++)
            for (int h = 0; h < sp->n_head; h++) {
                size_t g = (size_t)l * sp->n_head_kv + h / hpk;
                double *ha = moa_profile_hist_abs(p, b, l, h), *hs = moa_profile_hist_signed(p, b, l, h);
                for (int64_t i = 0; i < k->n_bins; i++) {
                    double d = ((double)i + 0.5) * sp->block;
                    if (d >= N) d = N - 0.5;
                    double f;
                    switch (types[g]) {
                    case MOA_SYNTH_LOCAL: f = exp(-d / sp->local_scale); break;
                    case MOA_SYNTH_GLOBAL: f = 512.0 / N; break;
                    default: f = exp(-d / (sp->elastic_frac * N)); break;
                    }
                    double v = scale[g] * sp->block * (N - d) * f / N;
                    double z = 1 + sp->noise * rng_normal(&r);
                    v *= z > 0 ? z : 0;
                    ha[i] = v;
                    hs[i] = v * (rng_unif(&r) < 0.9 ? 1 : -1);
                }
                k->sink_influence[(size_t)l * sp->n_head + h] = scale[g] * sp->block;
            }
        k->n_samples = 8;
        k->n_tokens = 8 * k->length;
    }
    free(scale);
    if (types_out) *types_out = types; else free(types);
    *out = p;
    return MOA_OK;
}
