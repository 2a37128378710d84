/* context.h - the run state of one sequence: activations and KV cache, and the forward pass. */
#ifndef MOA_CONTEXT_H
#define MOA_CONTEXT_H

#include "llama.h"

typedef struct {
    int32_t n_ctx;     /* KV capacity in tokens (0: the model's training context) */
    int32_t n_batch;   /* max tokens per forward call; longer inputs are chunked (default 512) */
} moa_ctx_params;

typedef enum {
    MOA_LOGITS_NONE = 0,   /* no logits (prefill of a prefix) */
    MOA_LOGITS_LAST = 1,   /* logits of the last token: [n_vocab] */
    MOA_LOGITS_ALL  = 2,   /* logits of every token: [n][n_vocab] */
} moa_logits_mode;

typedef struct moa_ctx moa_ctx;

moa_ctx_params moa_ctx_default_params(void);
moa_status moa_ctx_create(const moa_model *m, const moa_ctx_params *p, moa_ctx **out);
void moa_ctx_free(moa_ctx *c);
void moa_ctx_reset(moa_ctx *c);               /* forget the sequence (n_past = 0) */
int32_t moa_ctx_n_past(const moa_ctx *c);
int32_t moa_ctx_n_ctx(const moa_ctx *c);
const moa_model *moa_ctx_model(const moa_ctx *c);

/* Run tokens[0..n) at positions n_past.. and append them to the cache. Logits per `mode`
 * are written to `logits` (caller-owned; [n_vocab] or [n][n_vocab]); may be NULL for NONE.
 * MOA_ERR_RANGE if the cache would overflow; MOA_ERR_INVALID_ARG for a bad token id. */
moa_status moa_ctx_eval(moa_ctx *c, const int32_t *tokens, int32_t n, moa_logits_mode mode,
                        float *logits);

/* Time spent in attention by the last moa_ctx_eval calls (seconds, accumulated; reset to 0
 * by passing reset=1). For benchmarks. */
double moa_ctx_attn_seconds(moa_ctx *c, int reset);

#endif
