/* generate.h - prompt -> tokens -> prefill -> sampled continuation, with streaming output.
 *
 * Ownership and threading: moa_generate borrows a context (used by it alone for the call, as
 * context.h requires) and a tokenizer (only read: it may be shared with other threads); the
 * sampler is its own. Distinct contexts may generate in distinct threads. */
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

/* Called for each new token with its decoded text (complete UTF-8 only; may be empty; valid
 * only during the call), on the thread that called moa_generate; at the end, with id -1, for
 * the text of a trailing incomplete UTF-8 sequence (as U+FFFD). Return nonzero to stop
 * generation. */
typedef int (*moa_token_fn)(void *data, int32_t id, const char *text, size_t len);

moa_gen_params moa_gen_default_params(void);

/* Evaluates prompt[0..n_prompt) after whatever the context already holds, then generates
 * with a sampler of p->sampler (p NULL = defaults). tok may be NULL (no text, no EOG stop).
 * out_ids (optional) receives the generated ids (malloc'd, the caller frees them with free();
 * excluding a final EOG token; NULL on error). *stats (optional) is filled, also when an
 * error stops generation (not for an empty prompt). */
moa_status moa_generate(moa_ctx *ctx, const moa_tokenizer *tok, const int32_t *prompt,
                        int32_t n_prompt, const moa_gen_params *p, moa_token_fn fn, void *data,
                        int32_t **out_ids, int32_t *n_out, moa_gen_stats *stats);

#endif
