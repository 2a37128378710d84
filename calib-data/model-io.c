/* model-io.c - chat-templated encoding and greedy dense answers for calib-data. */
#include "moa/calib.h"
#include "moa/model.h"
#include "moa/common.h"

#include <stdlib.h>
#include <string.h>

moa_status moa_model_io_encode(const moa_model_io *io, const char *text, size_t len,
                               int32_t **ids, int32_t *n_ids) {
    if (!io->chat) return moa_tokenizer_encode(io->tok, text, len, 1, ids, n_ids);
    char *user = malloc(len + 1);
    if (!user) return moa_err(MOA_ERR_NOMEM, "out of memory");
    memcpy(user, text, len);
    user[len] = '\0';
    moa_chat_msg msg = {"user", user};
    char *chat = NULL;
    moa_status st = moa_chat_render(io->tok, &msg, 1, 1, &chat);
    free(user);
    if (st < 0) return st;
    st = moa_tokenizer_encode(io->tok, chat, strlen(chat), 1, ids, n_ids);
    free(chat);
    return st;
}

static int count_tokens(void *data, const char *text, size_t len) {
    int32_t *ids = NULL, n = 0;
    moa_status st = moa_model_io_encode(data, text, len, &ids, &n);
    free(ids);
    return st < 0 ? (int)st : (int)n;
}

static moa_status encode_prompt(void *data, const char *text, size_t len, int32_t **ids, int *n) {
    int32_t n32 = 0;
    MOA_TRY(moa_model_io_encode(data, text, len, ids, &n32));
    *n = n32;
    return MOA_OK;
}

static moa_status detokenize(void *data, const int32_t *ids, int n, char **text) {
    const moa_model_io *io = data;
    return moa_tokenizer_decode(io->tok, ids, n, 0, text);
}

moa_calib_tokenizer moa_model_io_tokenizer(moa_model_io *io) {
    moa_calib_tokenizer t = {count_tokens, encode_prompt, detokenize, io};
    return t;
}

moa_status moa_model_io_respond(void *data, const int32_t *prompt, int n_prompt, int max_new,
                                int32_t **out, int *n_out) {
    moa_model_io *io = data;
    moa_ctx_reset(io->ctx);
    moa_gen_params gp = moa_gen_default_params();
    gp.n_predict = max_new;
    int32_t n32 = 0;
    moa_gen_stats gs;
    MOA_TRY(moa_generate(io->ctx, io->tok, prompt, n_prompt, &gp, NULL, NULL, out, &n32, &gs));
    /* the model's own answer includes the token that ended it (its loss counts too) */
    if (gs.stopped_at_eog && n32 < max_new) {
        int32_t *grown = realloc(*out, sizeof(int32_t) * (size_t)(n32 + 1));
        if (!grown) return moa_err(MOA_ERR_NOMEM, "out of memory");
        grown[n32++] = gs.eog_id;
        *out = grown;
    }
    *n_out = n32;
    return MOA_OK;
}
