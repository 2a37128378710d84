/* test_qwen_model.c - the long-context test model (Qwen2.5-Coder-0.5B-Instruct, qwen2
 * architecture; label `model`, skipped without MOA_MODEL_QWEN = the path printed by
 * scripts/fetch-model.sh qwen2.5-coder-0.5b): it loads with the hyperparameters of its
 * GGUF (NEOX RoPE, q/k/v biases, 32K context, GQA 7), answers a chat question, and retrieves
 * one needle from a 4,096-token haystack (a fixed seed and position: a regression check of
 * the whole path: tokenizer, chat template, length fitting, engine, scorer). */
#include <stdlib.h>
#include <string.h>

#include "moa/calib.h"
#include "moa/model.h"
#include "moa/common.h"
#include "test.h"

static moa_model *M;
static moa_tokenizer *T;

static char *answer(moa_ctx *ctx, const char *question, int max_new, int *n_prompt) {
    moa_model_io io = {T, ctx, 1};
    int32_t *ids = NULL, *out = NULL;
    int32_t n = 0;
    int n_out = 0;
    char *text = NULL;
    if (moa_model_io_encode(&io, question, strlen(question), &ids, &n) < 0 ||
        moa_model_io_respond(&io, ids, (int)n, max_new, &out, &n_out) < 0 ||
        moa_tokenizer_decode(T, out, n_out, 0, &text) < 0) {
        fprintf(stderr, "  %s\n", moa_last_error());
    }
    if (n_prompt) *n_prompt = (int)n;
    free(ids);
    free(out);
    return text;
}

TEST(hyperparameters) {
    const moa_llama_hparams *hp = &M->hp;
    CHECK_STR(hp->arch, "qwen2");
    CHECK_EQ_INT(hp->rope_pairing, MOA_ROPE_NEOX);
    CHECK_EQ_INT(hp->n_ctx_train, 32768);
    CHECK_EQ_INT(hp->n_layer, 24);
    CHECK_EQ_INT(hp->n_head, 14);
    CHECK_EQ_INT(hp->n_head_kv, 2);
    CHECK_EQ_INT(hp->head_dim, 64);
    CHECK(M->layers[0].wq.bias && M->layers[23].wv.bias);
    CHECK(!M->tied);
    CHECK(moa_tokenizer_is_eog(T, moa_tokenizer_find_token(T, "<|im_end|>")));
}

TEST(chat_answer) {
    moa_ctx_params cp = moa_ctx_default_params();
    cp.n_ctx = 256;
    moa_ctx *ctx = NULL;
    CHECK_OK(moa_ctx_create(M, &cp, &ctx));
    if (!ctx) return;
    char *a = answer(ctx, "What is the capital of France? Answer in one word.", 16, NULL);
    fprintf(stderr, "  answer: %s\n", a ? a : "(none)");
    CHECK(a && strstr(a, "Paris") != NULL);
    free(a);
    moa_ctx_free(ctx);
}

TEST(needle_at_4k) {
    moa_wordlist *words = NULL;
    CHECK_OK(moa_wordlist_load(NULL, &words));
    if (!words) return;
    moa_task_spec spec = moa_task_spec_default(MOA_TASK_NEEDLE);
    spec.words = words;
    spec.position_bin = 4;
    moa_ctx_params cp = moa_ctx_default_params();
    cp.n_ctx = 4096 + 32;
    moa_ctx *ctx = NULL;
    CHECK_OK(moa_ctx_create(M, &cp, &ctx));
    moa_model_io io = {T, ctx, 1};
    moa_calib_tokenizer ct = moa_model_io_tokenizer(&io);
    moa_task_sample s;
    memset(&s, 0, sizeof s);
    int n_tok = 0;
    moa_fit_params fp = moa_fit_default_params();
    CHECK_OK(moa_task_fit(&spec, 1234, -1, 4096, ct.count_tokens, ct.data, &fp, &s, &n_tok));
    if (ctx && s.prompt) {
        int n_prompt = 0;
        double t0 = moa_time_now();
        char *a = answer(ctx, s.prompt, 32, &n_prompt);
        double score = a ? moa_score_needle(a, s.expected) : 0;
        fprintf(stderr, "  needle: %d prompt tokens, bin %d, expected %s, answer \"%s\", score %.2f, %.1f s\n",
                n_prompt, s.position_bin, s.expected, a ? a : "", score, moa_time_now() - t0);
        CHECK(n_prompt <= 4096 && n_prompt >= 4096 - 96);
        CHECK_NEAR(score, 1.0, 1e-9);
        free(a);
    }
    moa_task_sample_clear(&s);
    moa_ctx_free(ctx);
    moa_wordlist_free(words);
}

int main(void) {
    const char *path = getenv("MOA_MODEL_QWEN");
    if (!path || !*path) {
        printf("SKIP: MOA_MODEL_QWEN is not set (scripts/fetch-model.sh qwen2.5-coder-0.5b)\n");
        return 77;
    }
    moa_model_params mp = moa_model_default_params();
    mp.compute_sha256 = 0;
    if (moa_model_load(path, &mp, &M) < 0) { fprintf(stderr, "%s\n", moa_last_error()); return 1; }
    moa_gguf *g;
    if (moa_gguf_open(path, &g) < 0 || moa_tokenizer_from_gguf(g, &T) < 0) {
        fprintf(stderr, "%s\n", moa_last_error());
        return 1;
    }
    moa_gguf_close(g);
    RUN(hyperparameters);
    RUN(chat_answer);
    RUN(needle_at_4k);
    moa_tokenizer_free(T);
    moa_model_free(M);
    return test_summary();
}
