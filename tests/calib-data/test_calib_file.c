/* test_calib_file.c - calib.h5 round trip, rejection of malformed files, and the builder
 * (fake tokenizer and responder): scoring, checkpoint/resume to the same bytes. */
#include <hdf5.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "moa/calib.h"
#include "moa/common.h"
#include "test.h"

#define TMP(name) MOA_TEST_TMPDIR "/" name

/* ---- fakes ---------------------------------------------------------------------------------- */
static int fake_count(void *data, const char *text, size_t len) {
    (void)data;
    int n = 7, in = 0;
    for (size_t i = 0; i < len; i++) {
        int sp = text[i] == ' ' || text[i] == '\n' || text[i] == '\t';
        if (!sp && !in) n++;
        in = !sp;
    }
    return n;
}

/* ids = bytes (+1000 so they differ from lengths); a 2-token "template" around them. */
static moa_status fake_encode(void *data, const char *text, size_t len, int32_t **ids, int *n) {
    (void)data;
    *ids = malloc((len + 2) * sizeof **ids);
    if (!*ids) return MOA_ERR_NOMEM;
    (*ids)[0] = 1;
    for (size_t i = 0; i < len; i++) (*ids)[i + 1] = 1000 + (unsigned char)text[i];
    (*ids)[len + 1] = 2;
    *n = (int)len + 2;
    return MOA_OK;
}

static moa_status fake_detok(void *data, const int32_t *ids, int n, char **text) {
    (void)data;
    *text = malloc((size_t)n + 1);
    if (!*text) return MOA_ERR_NOMEM;
    int k = 0;
    for (int i = 0; i < n; i++)
        if (ids[i] >= 1000) (*text)[k++] = (char)(ids[i] - 1000);
    (*text)[k] = 0;
    return MOA_OK;
}

typedef struct {
    int calls;
    int fail_at;     /* fail on this call number (1-based); 0 never */
} responder_state;

/* Oracle for lines prompts (finds the asked line's value), "I do not know." otherwise. */
static moa_status fake_respond(void *data, const int32_t *prompt, int n, int max_new, int32_t **out, int *n_out) {
    responder_state *rs = data;
    rs->calls++;
    if (rs->fail_at && rs->calls == rs->fail_at) return moa_err(MOA_ERR_INTERRUPTED, "simulated interruption");
    char *text;
    MOA_TRY(fake_detok(NULL, prompt, n, &text));
    char answer[64] = "I do not know.";
    const char *q = strstr(text, "<REGISTER_CONTENT> in line ");
    if (q) {
        char label[64], pat[96];
        if (sscanf(q + 27, "%63[a-z-]", label) == 1) {
            snprintf(pat, sizeof pat, "line %s: REGISTER_CONTENT is <", label);
            const char *l = strstr(text, pat);
            if (l) snprintf(answer, sizeof answer, "The number is %d.", atoi(l + strlen(pat)));
        }
    }
    free(text);
    int k = (int)strlen(answer);
    if (k > max_new) k = max_new;
    *out = malloc((size_t)(k ? k : 1) * sizeof **out);
    if (!*out) return MOA_ERR_NOMEM;
    for (int i = 0; i < k; i++) (*out)[i] = 1000 + (unsigned char)answer[i];
    *n_out = k;
    return MOA_OK;
}

static moa_wordlist *words(void) {
    static const char *const w[] = {"apple", "stone", "cloud", "amber", "maple", "river", "glass",
                                    "torch", "plain", "quiet", "ridge", "sugar"};
    moa_wordlist *wl = NULL;
    CHECK_OK(moa_wordlist_from_words(w, 12, &wl));
    return wl;
}

static int files_equal(const char *a, const char *b) {
    char *da = NULL, *db = NULL;
    size_t la = 0, lb = 0;
    if (moa_read_file(a, &da, &la) < 0 || moa_read_file(b, &db, &lb) < 0) { free(da); free(db); return 0; }
    int eq = la == lb && memcmp(da, db, la) == 0;
    free(da); free(db);
    return eq;
}

/* ---- an in-memory file ---------------------------------------------------------------------- */
static moa_calib_file *make_file(void) {
    moa_calib_file *f = calloc(1, sizeof *f);
    f->model_sha256 = moa_strdup("ab12");
    f->tokenizer = moa_strdup("fake-bytes");
    f->chat_template = moa_strdup("<|im_start|>user\n{{ content }}<|im_end|>\n");
    f->tool_version = moa_strdup("test");
    f->build_params = moa_strdup("{\"seed\":1}");
    f->n_samples = 3;
    f->samples = calloc(3, sizeof *f->samples);
    for (int i = 0; i < 3; i++) {
        moa_calib_sample *s = &f->samples[i];
        s->n_tokens = 10 + i;
        s->tokens = malloc((size_t)s->n_tokens * sizeof *s->tokens);
        for (int k = 0; k < s->n_tokens; k++) s->tokens[k] = 100 * i + k;
        s->prompt_len = 6;
        s->response_start = 6;
        s->response_end = s->n_tokens - (i == 2);
        s->bucket = 1024 * (i + 1);
        s->task = moa_strdup(i == 1 ? "jsonl" : "lines");
        s->seed = 4000000000u + (uint32_t)i;
        s->expected = i == 1 ? NULL : moa_strdup("12345\nx\xc3\xa9");
        s->params = moa_strdup("{\"n_lines\":4}");
        s->dense_correct = (int8_t)(i - 1);
        s->dense_score = i == 0 ? -1.0 : 0.5 * (i - 1);
    }
    return f;
}

/* issue 16 case 1: token ids against the model's vocabulary, the last response token too
 * (only a target of the loss, so no forward pass ever checks it). */
TEST(check_vocab) {
    moa_calib_file *f = make_file();
    CHECK_OK(moa_calib_check_vocab(f, 212));   /* largest id: 211 (sample 2, after its response) */
    CHECK(moa_calib_check_vocab(f, 211) == MOA_ERR_FORMAT);
    CHECK_MSG(strstr(moa_last_error(), "sample 2: token 211 at position 11 (after the response)") &&
              strstr(moa_last_error(), "[0, 211)"), "message: %s", moa_last_error());
    /* sample 1's last response token (110 at position 10) */
    CHECK(moa_calib_check_vocab(f, 110) == MOA_ERR_FORMAT);
    CHECK_MSG(strstr(moa_last_error(), "sample 1: token 110 at position 10 (response)"), "message: %s", moa_last_error());
    f->samples[0].tokens[2] = -7;
    CHECK(moa_calib_check_vocab(f, 1000) == MOA_ERR_FORMAT);
    CHECK_MSG(strstr(moa_last_error(), "sample 0: token -7 at position 2 (prompt)"), "message: %s", moa_last_error());
    CHECK(moa_calib_check_vocab(f, 0) == MOA_ERR_INVALID_ARG);
    moa_calib_file_free(f);
}

TEST(roundtrip) {
    moa_calib_file *f = make_file();
    CHECK_OK(moa_calib_write(TMP("rt.h5"), f));
    moa_calib_file *g = NULL;
    CHECK_OK(moa_calib_read(TMP("rt.h5"), &g));
    if (!g) { moa_calib_file_free(f); return; }
    CHECK_STR(g->model_sha256, "ab12");
    CHECK_STR(g->tokenizer, "fake-bytes");
    CHECK_STR(g->chat_template, f->chat_template);
    CHECK_STR(g->build_params, "{\"seed\":1}");
    CHECK_EQ_INT(g->n_samples, 3);
    for (int i = 0; i < 3; i++) {
        moa_calib_sample *a = &f->samples[i], *b = &g->samples[i];
        CHECK_EQ_INT(b->n_tokens, a->n_tokens);
        CHECK(memcmp(a->tokens, b->tokens, (size_t)a->n_tokens * 4) == 0);
        CHECK_EQ_INT(b->prompt_len, a->prompt_len);
        CHECK_EQ_INT(b->response_start, a->response_start);
        CHECK_EQ_INT(b->response_end, a->response_end);
        CHECK_EQ_INT(b->bucket, a->bucket);
        CHECK_EQ_INT(b->seed, a->seed);
        CHECK_STR(b->task, a->task);
        CHECK((a->expected == NULL) == (b->expected == NULL));
        if (a->expected) CHECK_STR(b->expected, a->expected);
        CHECK_STR(b->params, a->params);
        CHECK_EQ_INT(b->dense_correct, a->dense_correct);
        CHECK_NEAR(b->dense_score, a->dense_score, 0);
    }
    /* Same content, same bytes (no time stamps in the file). */
    CHECK_OK(moa_calib_write(TMP("rt2.h5"), g));
    CHECK(files_equal(TMP("rt.h5"), TMP("rt2.h5")));
    /* The dump names the sample and shows the text. */
    FILE *fp = tmpfile();
    CHECK_OK(moa_calib_dump(g, 1, 1, NULL, NULL, fp));
    char buf[4096] = "";
    rewind(fp);
    size_t got = fread(buf, 1, sizeof buf - 1, fp);
    buf[got] = 0;
    fclose(fp);
    CHECK(strstr(buf, "=== sample 1 of 3: task jsonl, bucket 2048, seed 4000000001 ===") != NULL);
    CHECK(strstr(buf, "--- prompt ---\n100 101 102 103 104 105\n") != NULL);
    CHECK(strstr(buf, "dense: correct (score 0.000)") == NULL);
    moa_calib_file_free(g);
    /* The writer refuses inconsistent samples. */
    f->samples[1].response_start = 5;
    CHECK(moa_calib_write(TMP("bad.h5"), f) == MOA_ERR_INVALID_ARG);
    CHECK(!moa_file_exists(TMP("bad.h5")));
    moa_calib_file_free(f);
}

/* Writes a good file, then breaks it with raw HDF5 calls. */
typedef enum { BREAK_VERSION, BREAK_FORMAT, BREAK_MISSING_TOKENS, BREAK_SPAN, BREAK_OFFSETS,
               BREAK_PROMPT_LEN, BREAK_MISSING_ATTR, BREAK_N_SAMPLES } breakage;

static void write_broken(const char *path, breakage b) {
    moa_calib_file *f = make_file();
    CHECK_OK(moa_calib_write(path, f));
    moa_calib_file_free(f);
    hid_t file = H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT);
    CHECK(file >= 0);
    if (b == BREAK_VERSION) {
        H5Adelete(file, "version");
        hid_t sp = H5Screate(H5S_SCALAR);
        hid_t a = H5Acreate2(file, "version", H5T_STD_I64LE, sp, H5P_DEFAULT, H5P_DEFAULT);
        int64_t v = 2;
        H5Awrite(a, H5T_NATIVE_INT64, &v);
        H5Aclose(a); H5Sclose(sp);
    } else if (b == BREAK_FORMAT) {
        H5Adelete(file, "format");
        hid_t sp = H5Screate(H5S_SCALAR), t = H5Tcopy(H5T_C_S1);
        H5Tset_size(t, 12);
        hid_t a = H5Acreate2(file, "format", t, sp, H5P_DEFAULT, H5P_DEFAULT);
        H5Awrite(a, t, "moa-profile");
        H5Aclose(a); H5Tclose(t); H5Sclose(sp);
    } else if (b == BREAK_N_SAMPLES) {
        /* found by fuzz_calib_inproc: n_samples far beyond what the file holds was allocated
         * (10^7 x sizeof(moa_calib_sample)) before the datasets' shapes were checked */
        H5Adelete(file, "n_samples");
        hid_t sp = H5Screate(H5S_SCALAR);
        hid_t a = H5Acreate2(file, "n_samples", H5T_STD_I64LE, sp, H5P_DEFAULT, H5P_DEFAULT);
        int64_t v = 10000000;
        H5Awrite(a, H5T_NATIVE_INT64, &v);
        H5Aclose(a); H5Sclose(sp);
    } else if (b == BREAK_MISSING_ATTR) {
        H5Adelete(file, "model_sha256");
    } else if (b == BREAK_MISSING_TOKENS) {
        H5Ldelete(file, "tokens", H5P_DEFAULT);
    } else {
        const char *name = b == BREAK_SPAN ? "response_span" : b == BREAK_OFFSETS ? "sample_offset" : "prompt_len";
        hid_t d = H5Dopen2(file, name, H5P_DEFAULT);
        if (b == BREAK_SPAN) {
            int32_t span[6] = {6, 10, 7, 11, 6, 11};   /* sample 1 starts after prompt_len */
            H5Dwrite(d, H5T_NATIVE_INT32, H5S_ALL, H5S_ALL, H5P_DEFAULT, span);
        } else if (b == BREAK_OFFSETS) {
            int64_t off[4] = {0, 10, 9, 33};
            H5Dwrite(d, H5T_NATIVE_INT64, H5S_ALL, H5S_ALL, H5P_DEFAULT, off);
        } else {
            int32_t pl[3] = {6, 0, 6};
            H5Dwrite(d, H5T_NATIVE_INT32, H5S_ALL, H5S_ALL, H5P_DEFAULT, pl);
        }
        H5Dclose(d);
    }
    H5Fclose(file);
}

static void expect_reject(breakage b, const char *want1, const char *want2) {
    write_broken(TMP("broken.h5"), b);
    moa_calib_file *g = NULL;
    moa_status st = moa_calib_read(TMP("broken.h5"), &g);
    CHECK_MSG(st == MOA_ERR_FORMAT, "breakage %d: status %d (%s)", (int)b, st, moa_last_error());
    CHECK(g == NULL);
    CHECK_MSG(strstr(moa_last_error(), want1) != NULL, "message '%s' lacks '%s'", moa_last_error(), want1);
    if (want2)
        CHECK_MSG(strstr(moa_last_error(), want2) != NULL, "message '%s' lacks '%s'", moa_last_error(), want2);
    moa_calib_file_free(g);
}

TEST(rejects_malformed) {
    expect_reject(BREAK_VERSION, "'version' is 2", "broken.h5");
    expect_reject(BREAK_FORMAT, "'format'", "moa-calib");
    expect_reject(BREAK_MISSING_ATTR, "'model_sha256' is missing", NULL);
    expect_reject(BREAK_MISSING_TOKENS, "'tokens' is missing", NULL);
    expect_reject(BREAK_SPAN, "sample 1", "'response_span'");
    expect_reject(BREAK_OFFSETS, "'sample_offset'", NULL);
    expect_reject(BREAK_PROMPT_LEN, "sample 1", "'prompt_len'");
    expect_reject(BREAK_N_SAMPLES, "'n_samples' is 10000000", "more samples than the file has bytes");
    /* not HDF5 at all, and missing */
    FILE *fp = fopen(TMP("text.h5"), "wb");
    fputs("hello", fp);
    fclose(fp);
    moa_calib_file *g = NULL;
    CHECK(moa_calib_read(TMP("text.h5"), &g) == MOA_ERR_FORMAT);
    CHECK(moa_calib_read(TMP("nonexistent.h5"), &g) == MOA_ERR_IO);
}

/* ---- the builder ----------------------------------------------------------------------------- */
static moa_calib_build_params build_params(moa_task_spec *specs, const moa_wordlist *wl, const int *lengths) {
    specs[0] = moa_task_spec_default(MOA_TASK_LINES);
    specs[0].words = wl;
    specs[1] = moa_task_spec_default(MOA_TASK_NEEDLE);
    specs[1].words = wl;
    specs[1].needle_variant = MOA_NEEDLE_MULTIKEY;
    moa_calib_build_params p = moa_calib_build_default_params();
    p.tasks = specs;
    p.n_tasks = 2;
    p.lengths = lengths;
    p.n_lengths = 2;
    p.samples_per_length = 4;
    p.seed = 2024;
    p.max_new_tokens = 32;
    p.model_sha256 = "0123abcd";
    p.tokenizer_id = "fake-bytes v1";
    p.chat_template = "{{ user }}";
    return p;
}

typedef struct { int calls; double last_done, last_total; } progress_state;
static void on_progress(void *data, double done, double total, double extra, const char *unit) {
    progress_state *ps = data;
    (void)extra; (void)unit;
    ps->calls++;
    ps->last_done = done;
    ps->last_total = total;
}

TEST(build_and_resume) {
    moa_wordlist *wl = words();
    moa_task_spec specs[2];
    const int lengths[2] = {200, 400};
    moa_calib_build_params p = build_params(specs, wl, lengths);
    moa_calib_tokenizer tok = {fake_count, fake_encode, fake_detok, NULL};
    responder_state rs = {0, 0};
    progress_state ps = {0, 0, 0};
    unlink(TMP("full.h5"));
    unlink(TMP("full.h5.ckpt"));
    unlink(TMP("mix.h5.ckpt"));
    CHECK_OK(moa_calib_build(&p, &tok, fake_respond, &rs, on_progress, &ps, TMP("full.h5")));
    CHECK_EQ_INT(rs.calls, 8);
    CHECK_NEAR(ps.last_done, 8, 0);
    CHECK_NEAR(ps.last_total, 8, 0);
    CHECK(!moa_file_exists(TMP("full.h5.ckpt")));
    moa_calib_file *f = NULL;
    CHECK_OK(moa_calib_read(TMP("full.h5"), &f));
    if (!f) { moa_wordlist_free(wl); return; }
    CHECK_EQ_INT(f->n_samples, 8);
    CHECK_STR(f->model_sha256, "0123abcd");
    CHECK_STR(f->tokenizer, "fake-bytes v1");
    CHECK_STR(f->chat_template, "{{ user }}");
    CHECK(strstr(f->build_params, "\"seed\":2024") != NULL);
    for (int i = 0; i < 8; i++) {
        moa_calib_sample *s = &f->samples[i];
        CHECK_EQ_INT(s->bucket, lengths[i / 4]);
        CHECK_STR(s->task, i % 2 ? "needle-multikey" : "lines");
        CHECK_EQ_INT(s->seed, moa_calib_sample_seed(2024, lengths[i / 4], i % 4));
        CHECK(s->response_end > s->response_start);
        /* the oracle answers lines right; needles wrong */
        CHECK_EQ_INT(s->dense_correct, i % 2 ? 0 : 1);
        /* the prompt (bytes between the fake template ids) fits the length */
        char *text = NULL;
        CHECK_OK(fake_detok(NULL, s->tokens, s->prompt_len, &text));
        int n = fake_count(NULL, text, strlen(text));
        CHECK_MSG(n <= s->bucket && n >= s->bucket - 64, "sample %d: %d tokens for bucket %d", i, n, s->bucket);
        free(text);
    }
    moa_calib_file_free(f);

    /* Interrupted at the 4th answer: the checkpoint keeps 3 samples, no output appears. */
    rs = (responder_state){0, 4};
    unlink(TMP("resumed.h5"));
    unlink(TMP("resumed.h5.ckpt"));
    CHECK(moa_calib_build(&p, &tok, fake_respond, &rs, NULL, NULL, TMP("resumed.h5")) == MOA_ERR_INTERRUPTED);
    CHECK(strstr(moa_last_error(), "sample 3") != NULL);
    CHECK(!moa_file_exists(TMP("resumed.h5")));
    CHECK(moa_file_exists(TMP("resumed.h5.ckpt")));
    /* A torn last record (a crash mid-write) is dropped: cut 5 bytes off the end, then a
     * second interruption, then a clean finish. */
    {
        char *d = NULL;
        size_t len = 0;
        CHECK_OK(moa_read_file(TMP("resumed.h5.ckpt"), &d, &len));
        CHECK(truncate(TMP("resumed.h5.ckpt"), (off_t)len - 5) == 0);
        free(d);
    }
    rs = (responder_state){0, 3};
    CHECK(moa_calib_build(&p, &tok, fake_respond, &rs, NULL, NULL, TMP("resumed.h5")) == MOA_ERR_INTERRUPTED);
    rs = (responder_state){0, 0};
    ps = (progress_state){0, 0, 0};
    CHECK_OK(moa_calib_build(&p, &tok, fake_respond, &rs, on_progress, &ps, TMP("resumed.h5")));
    CHECK_EQ_INT(rs.calls, 8 - 4);   /* 2 + 2 samples were checkpointed before */
    CHECK_NEAR(ps.last_done, 4, 0);  /* progress counts this run's samples */
    CHECK_NEAR(ps.last_total, 4, 0);
    CHECK(files_equal(TMP("full.h5"), TMP("resumed.h5")));
    CHECK(!moa_file_exists(TMP("resumed.h5.ckpt")));

    /* A checkpoint from other parameters is refused, not mixed in. */
    rs = (responder_state){0, 2};
    CHECK(moa_calib_build(&p, &tok, fake_respond, &rs, NULL, NULL, TMP("mix.h5")) == MOA_ERR_INTERRUPTED);
    p.seed = 2025;
    rs = (responder_state){0, 0};
    CHECK(moa_calib_build(&p, &tok, fake_respond, &rs, NULL, NULL, TMP("mix.h5")) == MOA_ERR_MISMATCH);
    CHECK(strstr(moa_last_error(), "different build parameters") != NULL);
    /* resume = 0 starts over. Different seed -> different data. */
    p.resume = 0;
    CHECK_OK(moa_calib_build(&p, &tok, fake_respond, &rs, NULL, NULL, TMP("mix.h5")));
    moa_calib_file *g = NULL, *h = NULL;
    CHECK_OK(moa_calib_read(TMP("mix.h5"), &g));
    CHECK_OK(moa_calib_read(TMP("full.h5"), &h));
    if (g && h) {
        CHECK(g->samples[0].n_tokens != h->samples[0].n_tokens ||
              memcmp(g->samples[0].tokens, h->samples[0].tokens, (size_t)h->samples[0].n_tokens * 4) != 0);
    }
    moa_calib_file_free(g);
    moa_calib_file_free(h);
    moa_wordlist_free(wl);
}

/* Per-length counts: samples_at {1, 3} makes 4 samples, and each one (length L, index j)
 * is the very sample a one-count build makes at (L, j); a checkpoint of the one-count build
 * is not mixed in (different parameters); a count < 1 is refused with its position. */
TEST(build_samples_at) {
    moa_wordlist *wl = words();
    moa_task_spec specs[2];
    const int lengths[2] = {200, 400}, counts[2] = {1, 3};
    moa_calib_build_params p = build_params(specs, wl, lengths);
    p.samples_at = counts;
    moa_calib_tokenizer tok = {fake_count, fake_encode, fake_detok, NULL};
    responder_state rs = {0, 0};
    unlink(TMP("at.h5"));
    unlink(TMP("at.h5.ckpt"));
    CHECK_OK(moa_calib_build(&p, &tok, fake_respond, &rs, NULL, NULL, TMP("at.h5")));
    CHECK_EQ_INT(rs.calls, 4);
    moa_calib_file *f = NULL, *full = NULL;
    CHECK_OK(moa_calib_read(TMP("at.h5"), &f));
    CHECK_OK(moa_calib_read(TMP("full.h5"), &full));   /* from build_and_resume: 4 per length */
    if (f && full) {
        CHECK_EQ_INT(f->n_samples, 4);
        CHECK(strstr(f->build_params, "\"samples_at\":[1,3]") != NULL);
        CHECK(strstr(full->build_params, "\"samples_per_length\":4") != NULL);
        const int at[4] = {0, 4, 5, 6};   /* (200, 0), (400, 0), (400, 1), (400, 2) in full.h5 */
        for (int i = 0; i < 4; i++) {
            const moa_calib_sample *a = &f->samples[i], *b = &full->samples[at[i]];
            CHECK_EQ_INT(a->bucket, i ? 400 : 200);
            CHECK_EQ_INT(a->seed, b->seed);
            CHECK_STR(a->task, b->task);
            CHECK_EQ_INT(a->n_tokens, b->n_tokens);
            CHECK(a->n_tokens == b->n_tokens && memcmp(a->tokens, b->tokens, (size_t)a->n_tokens * 4) == 0);
        }
    }
    moa_calib_file_free(f);
    moa_calib_file_free(full);
    /* interrupted with per-length counts, resumed with one count: refused */
    rs = (responder_state){0, 2};
    unlink(TMP("at2.h5.ckpt"));
    CHECK(moa_calib_build(&p, &tok, fake_respond, &rs, NULL, NULL, TMP("at2.h5")) == MOA_ERR_INTERRUPTED);
    p.samples_at = NULL;
    rs = (responder_state){0, 0};
    CHECK(moa_calib_build(&p, &tok, fake_respond, &rs, NULL, NULL, TMP("at2.h5")) == MOA_ERR_MISMATCH);
    const int bad[2] = {2, 0};
    p.samples_at = bad;
    CHECK(moa_calib_build(&p, &tok, fake_respond, &rs, NULL, NULL, TMP("at3.h5")) == MOA_ERR_INVALID_ARG);
    CHECK(strstr(moa_last_error(), "samples_at[1] = 0 (length 400)") != NULL);
    moa_wordlist_free(wl);
}

/* Fuzzer inputs that made libhdf5 1.10 copy from NULL or past the file inside H5Dread
 * (docs/fuzzing.md, site 3): a compact dataset without its data, a contiguous one whose
 * storage is shorter than its shape. The reader refuses them itself, without the guard's
 * child process (these crashed in-process before the storage check of common/h5util.c). */
TEST(rejects_bad_storage_in_process) {
    const char *files[] = {MOA_TEST_FIXTURES "/hdf5-hostile/calib-compact-no-data.h5",
                           MOA_TEST_FIXTURES "/hdf5-hostile/calib-contiguous-short.h5"};
    for (int i = 0; i < 2; i++) {
        moa_calib_file *cf = NULL;
        CHECK(moa_calib_read_unguarded(files[i], &cf) == MOA_ERR_FORMAT);
        CHECK(cf == NULL);
        CHECK_MSG(strstr(moa_last_error(), "holds") != NULL, "%s: %s", files[i], moa_last_error());
    }
}

int main(void) {
    RUN(roundtrip);
    RUN(check_vocab);
    RUN(rejects_malformed);
    RUN(rejects_bad_storage_in_process);
    RUN(build_and_resume);
    RUN(build_samples_at);
    return test_summary();
}
