/* test_profile_run.c - the profiling job on a tiny random model: calib.h5 in, profile.h5
 * out; an interrupted run resumed from its checkpoint equals an uninterrupted run (values
 * and bytes); two shards merged equal the full run; mismatched inputs are refused. */
#include "moa/profiler.h"
#include "moa/calib.h"
#include "moa/profile-file.h"
#include "moa/common.h"
#include "test.h"
#include "../model/tiny_model.h"

#include <unistd.h>

static tiny_cfg cfg = {2, 32, 4, 2, 48, 40, 128, 10000.0f, 1e-5f, 0};
static char model_path[512], calib_path[512];
static moa_model *M;

static void path(char *buf, const char *name) { snprintf(buf, 512, "%s/run_%s", MOA_TEST_TMPDIR, name); }

static void setup(void) {
    path(model_path, "tiny.gguf");
    if (tiny_write_file(cfg, 11, model_path) < 0) { fprintf(stderr, "cannot write %s\n", model_path); exit(1); }
    moa_model_params mp = moa_model_default_params();
    mp.f32_weights = 1;
    if (moa_model_load(model_path, &mp, &M) < 0) { fprintf(stderr, "%s\n", moa_last_error()); exit(1); }
    /* 7 samples in buckets 48 and 96, lengths around them, responses of 6..12 tokens */
    moa_calib_file cf = {0};
    cf.model_sha256 = M->sha256;
    cf.tokenizer = "tiny";
    cf.chat_template = "";
    cf.tool_version = "test";
    cf.build_params = "{}";
    cf.n_samples = 7;
    cf.samples = calloc(7, sizeof(moa_calib_sample));
    uint64_t s = 5;
    for (int i = 0; i < 7; i++) {
        moa_calib_sample *c = &cf.samples[i];
        c->bucket = i < 4 ? 48 : 96;
        int prompt = c->bucket - 3 + i % 3, resp = 6 + i;
        c->n_tokens = prompt + resp;
        c->prompt_len = c->response_start = prompt;
        c->response_end = prompt + resp;
        c->tokens = malloc(sizeof(int32_t) * (size_t)c->n_tokens);
        for (int t = 0; t < c->n_tokens; t++) c->tokens[t] = (int32_t)((tiny_rand(&s) + 1) * 0.5 * cfg.n_vocab) % cfg.n_vocab;
        c->task = "lines";
        c->seed = (uint32_t)i;
        c->params = "{}";
        c->dense_correct = -1;
        c->dense_score = -1;
    }
    path(calib_path, "calib.h5");
    if (moa_calib_write(calib_path, &cf) < 0) { fprintf(stderr, "%s\n", moa_last_error()); exit(1); }
    for (int i = 0; i < 7; i++) free(cf.samples[i].tokens);
    free(cf.samples);
}

static moa_profile *load(const char *p) {
    moa_profile *pr = NULL;
    if (moa_profile_load(p, &pr) < 0) fprintf(stderr, "%s\n", moa_last_error());
    return pr;
}

/* max relative difference over every histogram value; -1 if shapes differ */
static double profile_diff(const moa_profile *a, const moa_profile *b) {
    if (!a || !b || a->n_buckets != b->n_buckets) return -1;
    double worst = 0;
    int64_t rows = a->n_layer * a->n_head;
    for (int k = 0; k < a->n_buckets; k++) {
        const moa_profile_bucket *x = &a->buckets[k], *y = &b->buckets[k];
        if (x->length != y->length || x->n_bins != y->n_bins || x->n_samples != y->n_samples ||
            x->n_tokens != y->n_tokens) return -1;
        for (int64_t i = 0; i < rows * x->n_bins; i++) {
            double d = fabs(x->influence_abs[i] - y->influence_abs[i]) + fabs(x->influence_signed[i] - y->influence_signed[i]);
            double m = fabs(x->influence_abs[i]) + 1e-300;
            worst = fmax(worst, d / m);
        }
        for (int64_t i = 0; i < rows; i++)
            worst = fmax(worst, fabs(x->sink_influence[i] - y->sink_influence[i]) / (fabs(x->sink_influence[i]) + 1e-300));
    }
    return worst;
}

static int same_bytes(const char *p1, const char *p2) {
    char *a, *b;
    size_t na, nb;
    if (moa_read_file(p1, &a, &na) < 0 || moa_read_file(p2, &b, &nb) < 0) return 0;
    int same = na == nb && memcmp(a, b, na) == 0;
    free(a); free(b);
    return same;
}

TEST(full_run) {
    char out[512];
    path(out, "full.h5");
    moa_profile_run_params p = moa_profile_run_default_params();
    p.prof.sink = 4;
    p.prof.block = 8;
    CHECK_OK(moa_profile_run(M, calib_path, out, &p));
    moa_profile *pr = load(out);
    CHECK(pr != NULL);
    if (!pr) return;
    CHECK_EQ_INT(pr->n_buckets, 2);
    CHECK_EQ_INT(pr->buckets[0].length, 48);
    CHECK_EQ_INT(pr->buckets[0].n_samples, 4);
    CHECK_EQ_INT(pr->buckets[1].n_samples, 3);
    CHECK_EQ_INT(pr->buckets[0].n_bins, 6);
    CHECK_STR(pr->model_sha256, M->sha256);
    double total = 0;
    for (int64_t i = 0; i < pr->n_layer * pr->n_head * pr->buckets[1].n_bins; i++) total += pr->buckets[1].influence_abs[i];
    CHECK(total > 0);
    char ck[600];
    snprintf(ck, sizeof ck, "%s.ckpt", out);
    CHECK(!moa_file_exists(ck));   /* checkpoint removed on success */
    moa_profile_free(pr);
}

TEST(interrupt_and_resume) {
    char full[512], out[512];
    path(full, "full.h5");
    path(out, "resumed.h5");
    unlink(out);
    moa_profile_run_params p = moa_profile_run_default_params();
    p.prof.sink = 4;
    p.prof.block = 8;
    p.max_samples = 3;
    CHECK(moa_profile_run(M, calib_path, out, &p) == MOA_ERR_INTERRUPTED);
    CHECK(!moa_file_exists(out));
    /* a checkpoint of other settings is refused */
    moa_profile_run_params q = p;
    q.prof.block = 16;
    q.resume = 1;
    q.max_samples = 0;
    CHECK(moa_profile_run(M, calib_path, out, &q) == MOA_ERR_MISMATCH);
    CHECK(strstr(moa_last_error(), "checkpoint") != NULL);
    /* resume twice more (2 + 2 samples), then finish */
    p.resume = 1;
    p.max_samples = 2;
    CHECK(moa_profile_run(M, calib_path, out, &p) == MOA_ERR_INTERRUPTED);
    p.max_samples = 0;
    CHECK_OK(moa_profile_run(M, calib_path, out, &p));
    moa_profile *a = load(full), *b = load(out);
    CHECK_MSG(profile_diff(a, b) == 0, "resumed profile differs: %g", profile_diff(a, b));
    CHECK_MSG(same_bytes(full, out), "resumed file is not byte-identical");
    moa_profile_free(a);
    moa_profile_free(b);
}

TEST(shards_merge_to_full) {
    char full[512], s0[512], s1[512], merged[512];
    path(full, "full.h5"); path(s0, "s0.h5"); path(s1, "s1.h5"); path(merged, "merged.h5");
    moa_profile_run_params p = moa_profile_run_default_params();
    p.prof.sink = 4;
    p.prof.block = 8;
    p.shard_count = 2;
    p.shard_index = 0;
    CHECK_OK(moa_profile_run(M, calib_path, s0, &p));
    p.shard_index = 1;
    CHECK_OK(moa_profile_run(M, calib_path, s1, &p));
    const char *in[2] = {s0, s1};
    CHECK_OK(moa_profile_merge_files(in, 2, merged));
    moa_profile *a = load(full), *b = load(merged);
    double d = profile_diff(a, b);
    CHECK_MSG(d >= 0 && d < 1e-12, "merged shards differ from the full run: %g", d);
    moa_profile_free(a);
    moa_profile_free(b);
    /* settings must match to merge */
    char other[512];
    path(other, "other.h5");
    p.shard_count = 1;
    p.shard_index = 0;
    p.prof.block = 16;
    CHECK_OK(moa_profile_run(M, calib_path, other, &p));
    const char *bad[2] = {full, other};
    CHECK(moa_profile_merge_files(bad, 2, merged) == MOA_ERR_MISMATCH);
    CHECK(strstr(moa_last_error(), "block") != NULL);
}

TEST(wrong_model_refused) {
    /* the same weights under another file hash: a different model identity */
    char other[512], out[512];
    path(other, "tiny2.gguf");
    path(out, "never.h5");
    CHECK(tiny_write_file(cfg, 12, other) == 0);
    moa_model *m2;
    moa_model_params mp = moa_model_default_params();
    mp.f32_weights = 1;
    CHECK_OK(moa_model_load(other, &mp, &m2));
    CHECK(moa_profile_run(m2, calib_path, out, NULL) == MOA_ERR_MISMATCH);
    CHECK(strstr(moa_last_error(), "not this model") != NULL);
    moa_model_free(m2);
}

int main(void) {
    setup();
    RUN(full_run);
    RUN(interrupt_and_resume);
    RUN(shards_merge_to_full);
    RUN(wrong_model_refused);
    moa_model_free(M);
    return test_summary();
}
