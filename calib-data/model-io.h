/* model-io.h - the real model side of calib-data: token counting and prompt encoding with
 * the model's chat template, detokenisation, and greedy answers from the dense engine.
 * Used by `moa calib`, `moa eval` and the model tests.
 *
 * A moa_model_io borrows its tokenizer (only read) and context (reset and run by respond):
 * like the context, it belongs to one thread at a time. Returned ids and texts are malloc'd
 * and the caller's (free()). */
#ifndef MOA_CALIB_MODEL_IO_H
#define MOA_CALIB_MODEL_IO_H

#include "calib.h"
#include "moa/model.h"

typedef struct {
    const moa_tokenizer *tok;
    moa_ctx *ctx;          /* the engine context answering prompts (reset per prompt) */
    int chat;              /* 1: wrap user turns with the chat template (default) */
} moa_model_io;

/* Fills the tokenizer callbacks of calib-data with io as their data. */
moa_calib_tokenizer moa_model_io_tokenizer(moa_model_io *io);

/* Tokens the model sees for a user turn (chat template + generation prompt). */
moa_status moa_model_io_encode(const moa_model_io *io, const char *text, size_t len,
                               int32_t **ids, int32_t *n_ids);

/* moa_respond_fn: greedy answer of up to max_new tokens (stops at end of turn). */
moa_status moa_model_io_respond(void *io, const int32_t *prompt, int n_prompt, int max_new,
                                int32_t **out, int *n_out);

#endif
