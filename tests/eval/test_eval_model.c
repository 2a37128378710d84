/* test_eval_model.c - LongEval on the real SmolLM2 model (label `model`; skipped without
 * MOA_MODEL): 2 short lengths x 10 bins x 1 sample, dense, through the engine binding and
 * every writer; checks the files exist, rows are complete, prompts fit their lengths and
 * accuracies are in [0, 1]. Also the response loss of a tiny calibration set built from the
 * run's own prompts is finite and positive for dense and uniform attention. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "moa/eval.h"
#include "moa/model.h"
#include "moa/common.h"
#include "test.h"

static char *tmp_path(const char *name) {
    static char buf[8][512];
    static int k;
    char *p = buf[k++ % 8];
    snprintf(p, 512, "%s/%s", MOA_TEST_TMPDIR, name);
    return p;
}

static moa_model *g_model;
static moa_tokenizer *g_tok;

TEST(longeval_dense_short) {
    moa_wordlist *words = NULL;
    CHECK_OK(moa_wordlist_load(NULL, &words));
    moa_eval_attention att = moa_eval_attention_default();
    moa_eval_engine *eng = NULL;
    CHECK_OK(moa_eval_engine_create(g_model, g_tok, &att, 1, &eng));
    if (!words || !eng) { moa_wordlist_free(words); moa_eval_engine_free(eng); return; }
    static const int lengths[2] = {256, 512};
    moa_longeval_params p = moa_longeval_default_params();
    p.lengths = lengths;
    p.n_lengths = 2;
    p.samples_per_cell = 1;
    p.max_new_tokens = 48;   /* keeps the test short; accuracy is not checked */
    p.words = words;
    p.label = "dense";
    p.model_settings = moa_eval_engine_settings(eng);
    p.log_path = tmp_path("model.log");
    p.resume = 0;
    moa_eval_model em = moa_eval_engine_model(eng);
    moa_longeval_results *r = NULL;
    double t0 = moa_time_now();
    CHECK_OK(moa_longeval_run(&p, &em, NULL, NULL, &r));
    fprintf(stderr, "  20 samples in %.1f s\n", moa_time_now() - t0);
    if (r) {
        CHECK_EQ_INT(r->n_rows, 20);
        for (int l = 0; l < 2; l++) {
            CHECK_EQ_INT(r->lengths[l].n, 10);
            CHECK(r->lengths[l].accuracy >= 0 && r->lengths[l].accuracy <= 1);
            fprintf(stderr, "  length %d: accuracy %.2f, mean prompt %.0f tokens\n", r->lengths[l].length,
                    r->lengths[l].accuracy, r->lengths[l].mean_prompt_tokens);
            for (int b = 0; b < 10; b++) {
                const moa_longeval_cell *c = &r->cells[l * 10 + b];
                CHECK(c->n == 1 && c->accuracy >= 0 && c->accuracy <= 1);
            }
        }
        for (int64_t i = 0; i < r->n_rows; i++) {
            const moa_longeval_row *w = &r->rows[i];
            CHECK(w->prompt_tokens <= w->length && w->prompt_tokens >= w->length - 64);
            CHECK(w->new_tokens >= 1 && w->new_tokens <= p.max_new_tokens + 1);
            CHECK(w->expected[0] >= '1' && w->expected[0] <= '9');
        }
        const char *json = tmp_path("model.json"), *svg = tmp_path("model.svg"), *png = tmp_path("model.png");
        const char *prefix = tmp_path("model");
        CHECK_OK(moa_longeval_write_json(r, json));
        CHECK_OK(moa_longeval_write_csv(r, prefix));
        CHECK_OK(moa_longeval_write_heatmap_svg(r, svg));
        CHECK_OK(moa_longeval_write_heatmap_png(r, png));
        char path[600];
        CHECK(moa_file_exists(json) && moa_file_exists(svg) && moa_file_exists(png));
        snprintf(path, sizeof path, "%s-samples.csv", prefix);
        CHECK(moa_file_exists(path));
        snprintf(path, sizeof path, "%s-cells.csv", prefix);
        CHECK(moa_file_exists(path));
        moa_longeval_results *back = NULL;
        CHECK_OK(moa_longeval_read_json(json, &back));
        if (back) CHECK_NEAR(back->lengths[1].accuracy, r->lengths[1].accuracy, 0);
        moa_longeval_results_free(back);
    }
    moa_longeval_results_free(r);
    moa_eval_engine_free(eng);
    moa_wordlist_free(words);
}

/* A one-sample calib set (prompt + a fixed response) scored under dense and uniform 50%. */
TEST(response_loss) {
    const char *text = "<|im_start|>user\nWhat is the capital of France?<|im_end|>\n<|im_start|>assistant\n";
    const char *resp = "The capital of France is Paris.<|im_end|>";
    int32_t *p = NULL, *q = NULL, np = 0, nq = 0;
    CHECK_OK(moa_tokenizer_encode(g_tok, text, strlen(text), 1, &p, &np));
    CHECK_OK(moa_tokenizer_encode(g_tok, resp, strlen(resp), 1, &q, &nq));
    if (!p || !q) { free(p); free(q); return; }
    moa_calib_sample s;
    memset(&s, 0, sizeof s);
    s.tokens = malloc(sizeof(int32_t) * (size_t)(np + nq));
    memcpy(s.tokens, p, sizeof(int32_t) * (size_t)np);
    memcpy(s.tokens + np, q, sizeof(int32_t) * (size_t)nq);
    s.n_tokens = np + nq;
    s.prompt_len = s.response_start = np;
    s.response_end = np + nq;
    s.bucket = 64;
    moa_calib_file f;
    memset(&f, 0, sizeof f);
    f.n_samples = 1;
    f.samples = &s;
    moa_eval_loss dense = {0}, uni = {0};
    moa_eval_attention a = moa_eval_attention_default();
    CHECK_OK(moa_eval_response_loss(g_model, &a, &f, 0, NULL, NULL, &dense));
    CHECK_EQ_INT(dense.n_tokens, nq);
    CHECK(dense.mean_ce > 0 && dense.mean_ce < 5);   /* an easy answer: low loss */
    fprintf(stderr, "  dense response CE %.4f nats over %lld tokens\n", dense.mean_ce, (long long)dense.n_tokens);
    a.kind = MOA_EVAL_UNIFORM;
    a.density = 1.0;   /* sink 4 + window N-4 (block 1) covers every pair: equals dense */
    a.sink = 4;
    a.block = 1;
    CHECK_OK(moa_eval_response_loss(g_model, &a, &f, 0, NULL, NULL, &uni));
    CHECK_CLOSE(uni.mean_ce, dense.mean_ce, 1e-3, 1e-4);
    /* a window of 8 tokens (sink 4) loses the question: the loss changes */
    moa_eval_loss narrow = {0};
    a.density = 12.0 / (double)s.n_tokens;
    CHECK_OK(moa_eval_response_loss(g_model, &a, &f, 0, NULL, NULL, &narrow));
    fprintf(stderr, "  sink 4 + window 8: response CE %.4f nats\n", narrow.mean_ce);
    CHECK(fabs(narrow.mean_ce - dense.mean_ce) > 1e-3);
    moa_eval_loss_clear(&narrow);
    char *json = NULL;
    CHECK_OK(moa_eval_loss_to_json(&dense, "dense", "memory", &json));
    CHECK(json && strstr(json, "\"mean_ce\""));
    free(json);
    moa_eval_loss_clear(&dense);
    moa_eval_loss_clear(&uni);
    free(s.tokens);
    free(p);
    free(q);
}

int main(void) {
    const char *path = test_model_path();
    moa_model_params mp = moa_model_default_params();
    if (moa_model_load(path, &mp, &g_model) < 0 || moa_tokenizer_from_gguf(g_model->gguf, &g_tok) < 0) {
        fprintf(stderr, "cannot load %s: %s\n", path, moa_last_error());
        return 1;
    }
    RUN(longeval_dense_short);
    RUN(response_loss);
    moa_tokenizer_free(g_tok);
    moa_model_free(g_model);
    return test_summary();
}
