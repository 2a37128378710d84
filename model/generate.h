/* generate.h - prompt -> tokens -> prefill -> sampled continuation, with streaming output. */
#ifndef MOA_GENERATE_H
#define MOA_GENERATE_H

#include "context.h"
#include "sampler.h"
#include "tokenizer.h"

typedef struct {
    int32_t n_predict;          /* max new tokens (default 128) */
    moa_sampler_params sampler; /* default greedy */
    int stop_at_eog;            /* stop at an end-of-generation token (default 1) */
} moa_gen_params;

typedef struct {
    int32_t n_prompt, n_generated;
    double prefill_seconds, decode_seconds;
    int stopped_at_eog;
    int32_t eog_id;             /* the end-of-generation token that stopped it, or -1 */
    int stopped_ctx_full;       /* a dense cache reached its capacity */
} moa_gen_stats;

/* Called for each new token with its decoded text (complete UTF-8 only; may be empty).
 * Return nonzero to stop generation. */
typedef int (*moa_token_fn)(void *data, int32_t id, const char *text, size_t len);

moa_gen_params moa_gen_default_params(void);

/* Evaluates prompt[0..n_prompt) after whatever the context already holds, then generates.
 * out_ids (optional) receives the generated ids (malloc'd, excluding a final EOG token). */
moa_status moa_generate(moa_ctx *ctx, const moa_tokenizer *tok, const int32_t *prompt,
                        int32_t n_prompt, const moa_gen_params *p, moa_token_fn fn, void *data,
                        int32_t **out_ids, int32_t *n_out, moa_gen_stats *stats);

#endif
