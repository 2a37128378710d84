/* generate.c - the generation loop: prefill the prompt, then sample one token at a time. */
#include "moa/model.h"
#include "moa/common.h"

#include <stdlib.h>

moa_gen_params moa_gen_default_params(void) {
    moa_gen_params p;
    p.n_predict = 128;
    p.sampler = moa_sampler_default_params();
    p.stop_at_eog = 1;
    return p;
}

moa_status moa_generate(moa_ctx *ctx, const moa_tokenizer *tok, const int32_t *prompt,
                        int32_t n_prompt, const moa_gen_params *pp, moa_token_fn fn, void *data,
                        int32_t **out_ids, int32_t *n_out, moa_gen_stats *stats) {
    moa_gen_params p = pp ? *pp : moa_gen_default_params();
    moa_gen_stats s = {0};
    s.eog_id = -1;
    if (out_ids) *out_ids = NULL;
    if (n_out) *n_out = 0;
    if (n_prompt <= 0) return moa_err(MOA_ERR_INVALID_ARG, "generate: empty prompt");
    int32_t n_vocab = moa_ctx_model(ctx)->hp.n_vocab;
    /* Generation may run past the planned context when every cache unit rolls (window plans,
     * streaming mode); a dense cache that fills up ends generation (stats.stopped_ctx_full). */
    int32_t max_new = p.n_predict;
    float *logits = moa_alloc_array((size_t)n_vocab, sizeof(float));
    int32_t *ids = moa_alloc_array((size_t)(max_new > 0 ? max_new : 1), sizeof(int32_t));
    size_t cap = tok ? moa_tokenizer_max_piece_bytes(tok) + 8 : 8;
    char *piece = malloc(cap);
    moa_sampler *smp = NULL;
    moa_status st = MOA_OK;
    if (!logits || !ids || !piece) { st = moa_err(MOA_ERR_NOMEM, "out of memory"); goto done; }
    if ((st = moa_sampler_create(&p.sampler, n_vocab, &smp)) < 0) goto done;
    double t0 = moa_time_now();
    if ((st = moa_ctx_eval(ctx, prompt, n_prompt, MOA_LOGITS_LAST, logits)) < 0) goto done;
    s.n_prompt = n_prompt;
    s.prefill_seconds = moa_time_now() - t0;
    t0 = moa_time_now();
    moa_detok dt = {0};
    for (int32_t i = 0; i < max_new; i++) {
        int32_t id = moa_sampler_sample(smp, logits);
        if (p.stop_at_eog && tok && moa_tokenizer_is_eog(tok, id)) { s.stopped_at_eog = 1; s.eog_id = id; break; }
        ids[s.n_generated++] = id;
        size_t n = tok ? moa_tokenizer_decode_token(tok, &dt, id, piece, cap) : 0;
        if (n >= cap) n = 0;
        if (fn && fn(data, id, piece, n)) break;
        if (i + 1 == max_new) break;   /* the last token needs no forward pass */
        if ((st = moa_ctx_eval(ctx, &id, 1, MOA_LOGITS_LAST, logits)) < 0) {
            if (st != MOA_ERR_RANGE) goto done;
            st = MOA_OK;                    /* the cache is full: stop here */
            s.stopped_ctx_full = 1;
            break;
        }
    }
    if (tok && fn) {
        size_t n = moa_tokenizer_decode_flush(&dt, piece, cap);
        if (n > 0 && n < cap) fn(data, -1, piece, n);
    }
    s.decode_seconds = moa_time_now() - t0;
done:
    if (st >= 0 && out_ids) { *out_ids = ids; ids = NULL; }
    if (st >= 0 && n_out) *n_out = s.n_generated;
    if (stats) *stats = s;
    moa_sampler_free(smp);
    free(logits);
    free(ids);
    free(piece);
    return st;
}
