/* test_calib_model.c - calib-data with the real SmolLM2 tokenizer, chat template and engine
 * (label `model`; skipped without MOA_MODEL).
 *  1. Every task is fitted to several token lengths with the model's tokenizer + chat
 *     template; actual lengths must be within the default tolerance. Prints the markdown
 *     table of requested vs actual lengths kept in docs/calibration.md.
 *  2. A small calibration build answered by the dense engine (greedy), read back.
 * The dense accuracy ladder is a measurement, not a test: scripts/dense-ladder.sh
 * (`moa eval longeval --dense`, resumable, docs/results.md). */
#include <stdlib.h>
#include <string.h>

#include "moa/calib.h"
#include "moa/model.h"
#include "moa/common.h"
#include "test.h"

/* The real wiring (calib-data/model-io.c, also used by `moa calib`). */
typedef moa_model_io model_io;
static int count_tokens(void *data, const char *text, size_t len) {
    moa_calib_tokenizer t = moa_model_io_tokenizer(data);
    return t.count_tokens(data, text, len);
}
#define respond moa_model_io_respond

static const char *CORPUS_LINE =
    "{\"context\": \"%s\", \"instruction\": \"Write a one-paragraph summary of the news above.\"}\n";

static moa_model *g_model;
static moa_tokenizer *g_tok;
static moa_wordlist *g_words;
static moa_jsonl_corpus *g_corpus;
static moa_task_spec g_specs[8];
static int g_ns;

TEST(length_table) {
    model_io io = {g_tok, NULL, 1};
    moa_task_spec *specs = g_specs;
    int ns = g_ns;
    const int lengths[] = {1024, 2048, 4096, 8192};
    moa_fit_params fp = moa_fit_default_params();
    printf("| task | requested | actual | difference | size (units) |\n|---|---:|---:|---:|---:|\n");
    for (int t = 0; t < ns; t++) {
        for (int l = 0; l < 4; l++) {
            moa_task_sample s;
            int n = 0;
            uint32_t seed = moa_calib_sample_seed(0, lengths[l], 0);
            moa_status st = moa_task_fit(&specs[t], seed, 0, lengths[l], count_tokens, &io, &fp, &s, &n);
            CHECK_MSG(st >= 0, "%s at %d: %s", moa_task_name(&specs[t]), lengths[l], moa_last_error());
            printf("| %s | %d | %d | %d | %lld |\n", moa_task_name(&specs[t]), lengths[l], n, n - lengths[l],
                   (long long)s.size);
            moa_task_sample_clear(&s);
        }
    }
}

TEST(dense_build) {
    moa_model *m = g_model;
    moa_tokenizer *tok = g_tok;
    moa_task_spec *specs = g_specs;
    model_io io = {tok, NULL, 1};
    /* ---- 2. a small dense build ---- */
    moa_ctx_params cp = moa_ctx_default_params();
    cp.n_ctx = 1024 + 64;
    CHECK_OK(moa_ctx_create(m, &cp, &io.ctx));
    if (io.ctx) {
        moa_task_spec bs[2] = {specs[0], specs[1]};
        const int blen[1] = {1000};
        moa_calib_build_params p = moa_calib_build_default_params();
        p.tasks = bs;
        p.n_tasks = 2;
        p.lengths = blen;
        p.n_lengths = 1;
        p.samples_per_length = 2;
        p.max_new_tokens = 32;
        p.model_sha256 = m->sha256;
        p.tokenizer_id = "SmolLM2 gguf";
        p.chat_template = "chatml";
        moa_calib_tokenizer ct = moa_model_io_tokenizer(&io);
        const char *out = MOA_TEST_TMPDIR "/model-calib.h5";
        remove(out);
        remove(MOA_TEST_TMPDIR "/model-calib.h5.ckpt");
        CHECK_OK(moa_calib_build(&p, &ct, respond, &io, NULL, NULL, out));
        moa_calib_file *f = NULL;
        CHECK_OK(moa_calib_read(out, &f));
        if (f) {
            CHECK_EQ_INT(f->n_samples, 2);
            CHECK_STR(f->model_sha256, m->sha256);
            for (int i = 0; i < f->n_samples; i++) {
                moa_calib_sample *s = &f->samples[i];
                char *resp = NULL;
                CHECK_OK(moa_tokenizer_decode(tok, s->tokens + s->response_start,
                                              s->response_end - s->response_start, 0, &resp));
                printf("sample %d (%s, %d prompt tokens): expected %s, dense answer \"%s\" -> %s\n", i,
                       s->task, s->prompt_len, s->expected, resp ? resp : "",
                       s->dense_correct == 1 ? "correct" : "wrong");
                CHECK(s->response_end > s->response_start);
                CHECK(s->dense_correct == 0 || s->dense_correct == 1);
                free(resp);
            }
        }
        moa_calib_file_free(f);
        moa_ctx_free(io.ctx);
    }
}

int main(void) {
    const char *path = test_model_path();
    moa_model_params mp = moa_model_default_params();
    mp.compute_sha256 = 1;
    moa_model *m = NULL;
    CHECK_OK(moa_model_load(path, &mp, &m));
    if (!m) return test_summary();
    moa_tokenizer *tok = NULL;
    CHECK_OK(moa_tokenizer_from_gguf(m->gguf, &tok));
    if (!tok) { moa_model_free(m); return test_summary(); }
    moa_wordlist *wl = NULL;
    if (moa_wordlist_load(NULL, &wl) < 0) {
        printf("SKIP: %s\n", moa_last_error());
        moa_tokenizer_free(tok);
        moa_model_free(m);
        return 77;
    }
    /* A JSONL corpus of one long synthetic "news" record (the filler of longdep, repeated). */
    size_t cap = 400000;
    char *ctx = malloc(cap), *jl = malloc(cap + 256);
    size_t k = 0;
    static const char *para = "The city council met on Tuesday to discuss the new budget, which "
                              "includes funds for roads, schools and the harbor. ";
    while (k + strlen(para) + 1 < cap - 1000) { memcpy(ctx + k, para, strlen(para)); k += strlen(para); }
    ctx[k] = 0;
    snprintf(jl, cap + 256, CORPUS_LINE, ctx);
    moa_jsonl_corpus *corpus = NULL;
    CHECK_OK(moa_jsonl_parse(jl, strlen(jl), "synthetic.jsonl", NULL, &corpus));
    free(ctx);
    free(jl);

    g_model = m; g_tok = tok; g_words = wl; g_corpus = corpus;
    g_specs[g_ns] = moa_task_spec_default(MOA_TASK_LINES); g_specs[g_ns++].words = wl;
    for (int v = 0; v < 4; v++) {
        g_specs[g_ns] = moa_task_spec_default(MOA_TASK_NEEDLE);
        g_specs[g_ns].words = wl;
        g_specs[g_ns++].needle_variant = (moa_needle_variant)v;
    }
    g_specs[g_ns] = moa_task_spec_default(MOA_TASK_LONGDEP); g_specs[g_ns++].words = wl;
    g_specs[g_ns] = moa_task_spec_default(MOA_TASK_JSONL); g_specs[g_ns++].corpus = corpus;
    RUN(length_table);
    RUN(dense_build);
    moa_jsonl_free(corpus);
    moa_wordlist_free(wl);
    moa_tokenizer_free(tok);
    moa_model_free(m);
    return test_summary();
}
