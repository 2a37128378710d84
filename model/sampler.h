/* sampler.h - next-token selection: greedy, temperature, top-k, top-p, with a seeded RNG.
 *
 * A sampler owns its RNG state and candidate buffers: it belongs to one thread at a time
 * (sampling advances the RNG); distinct samplers may be used from distinct threads at once.
 * Logits are caller-owned and only read. */
#ifndef MOA_SAMPLER_H
#define MOA_SAMPLER_H

#include <stdint.h>
#include "moa/base.h"

typedef struct {
    float temperature;   /* <= 0: greedy (default 0) */
    int32_t top_k;       /* 0: off */
    float top_p;         /* 1: off */
    uint64_t seed;
} moa_sampler_params;

typedef struct moa_sampler moa_sampler;

moa_sampler_params moa_sampler_default_params(void);   /* greedy, seed 42 */
/* p NULL = defaults (copied). MOA_ERR_INVALID_ARG for n_vocab <= 0, top_p outside (0, 1] or
 * top_k < 0. The caller owns *out (moa_sampler_free). Thread-safe. */
moa_status moa_sampler_create(const moa_sampler_params *p, int32_t n_vocab, moa_sampler **out);
void moa_sampler_free(moa_sampler *s);   /* accepts NULL */
/* Picks a token from logits[n_vocab] (logits are not modified); advances s's RNG unless
 * greedy. */
int32_t moa_sampler_sample(moa_sampler *s, const float *logits);
/* Index of the largest logit (lowest index on ties). Pure. */
int32_t moa_argmax(const float *x, int32_t n);
/* Uniform double in [0, 1) from a xoshiro256** state seeded by splitmix64; advances s. */
double moa_sampler_uniform(moa_sampler *s);

#endif
