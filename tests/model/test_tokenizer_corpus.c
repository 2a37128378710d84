/* test_tokenizer_corpus.c - the tokenizers of the real Qwen2 and SmolLM2 GGUFs against
 * llama.cpp's ids on the seeded corpus of tests/fixtures/tokenizer-corpus.txt (made by
 * scripts/golden/make_tokenizer_corpus_golden.py; format in that script). Every text must
 * encode (parse_special = 0, no BOS) to exactly llama.cpp's ids. Also checked against
 * tokenizer-corpus.json: llama.cpp's end-of-generation set over the whole vocabulary,
 * add_bos, and the chat template rendered by jinja2. For Qwen2 (every byte has a token)
 * decode(ids) must give the text back.
 *
 * Models from the environment: MOA_MODEL_QWEN (Qwen2.5-Coder GGUF) and MOA_MODEL (SmolLM2).
 * A model whose variable is unset is skipped; with neither, the test exits 77 (skipped). */
#include "test.h"

#include <jansson.h>
#include <time.h>

#include "moa/model.h"
#include "moa/common.h"   /* moa_read_file */

typedef struct {
    char tag[32];
    const char *env;          /* environment variable with the GGUF path */
    moa_gguf *g;
    moa_tokenizer *tok;
    json_t *meta;             /* its entry of the JSON "models" array */
    int n_ok, n_texts, n_roundtrip_bad;
    double seconds;
    size_t n_bytes, n_tokens;
} model_t;

enum { MAX_MODELS = 4 };
static model_t models[MAX_MODELS];
static int n_models;
static json_t *meta_root;

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int hexval(int c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* Undoes the fixture's \xHH escapes in place; returns the length, or -1 if malformed. */
static long unescape(char *s, size_t n) {
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] != '\\') { s[o++] = s[i]; continue; }
        if (i + 3 >= n || s[i + 1] != 'x') return -1;
        int h = hexval((unsigned char)s[i + 2]), l = hexval((unsigned char)s[i + 3]);
        if (h < 0 || l < 0) return -1;
        s[o++] = (char)(h * 16 + l);
        i += 3;
    }
    return (long)o;
}

/* Parses " 1 2 3" into ids (grown as needed). Returns the count, or -1 if malformed. */
static long parse_ids(const char *s, const char *end, int32_t **ids, size_t *cap) {
    long n = 0;
    while (s < end) {
        if (*s != ' ') return -1;
        s++;
        char *e;
        long v = strtol(s, &e, 10);
        if (e == s || v < 0 || v > INT32_MAX) return -1;
        if ((size_t)n == *cap) {
            size_t nc = *cap ? *cap * 2 : 256;
            int32_t *ni = realloc(*ids, nc * sizeof *ni);
            if (!ni) return -1;
            *ids = ni;
            *cap = nc;
        }
        (*ids)[n++] = (int32_t)v;
        s = e;
    }
    return n;
}

static model_t *find_model(const char *tag, size_t len) {
    for (int i = 0; i < n_models; i++)
        if (strlen(models[i].tag) == len && memcmp(models[i].tag, tag, len) == 0) return &models[i];
    return NULL;
}

/* 1 if ids decode (streaming, special tokens as text) to exactly text[0..len), which may
 * contain NUL bytes. */
static int decodes_to(const moa_tokenizer *tok, const int32_t *ids, int32_t n, const char *text,
                      size_t len) {
    moa_detok st = {0};
    st.special = 1;
    size_t cap = moa_tokenizer_max_piece_bytes(tok), o = 0;
    char *buf = malloc(cap);
    if (!buf) return 0;
    int ok = 1;
    for (int32_t i = 0; ok && i <= n; i++) {
        size_t k = i < n ? moa_tokenizer_decode_token(tok, &st, ids[i], buf, cap)
                         : moa_tokenizer_decode_flush(&st, buf, cap);
        ok = k < cap && o + k <= len && memcmp(text + o, buf, k) == 0;
        o += k;
    }
    free(buf);
    return ok && o == len;
}

/* One text against one model's expected ids. */
static void check_text(model_t *m, long index, const char *text, size_t len, const int32_t *want,
                       long n_want) {
    int32_t *ids = NULL, n = 0;
    double t0 = now();
    moa_status st = moa_tokenizer_encode(m->tok, text, len, 0, &ids, &n);
    m->seconds += now() - t0;
    m->n_texts++;
    m->n_bytes += len;
    if (st != MOA_OK) {
        CHECK_MSG(0, "%s: text %ld: encode failed: %s", m->tag, index, moa_last_error());
        return;
    }
    const int32_t *got = ids;
    int32_t ng = n;
    if (moa_tokenizer_add_bos(m->tok) && ng > 0) { got++; ng--; }   /* fixture has no BOS */
    m->n_tokens += (size_t)ng;
    long k = 0;
    while (k < ng && k < n_want && got[k] == want[k]) k++;
    if (k == ng && k == n_want) {
        m->n_ok++;
        if (!strcmp(m->tag, "qwen")) {   /* every byte has a token: decoding is lossless */
            if (!decodes_to(m->tok, got, ng, text, len) && m->n_roundtrip_bad++ < 5)
                CHECK_MSG(0, "%s: text %ld does not decode back to itself", m->tag, index);
        }
    } else if (m->n_texts - m->n_ok <= 5) {
        CHECK_MSG(0, "%s: text %ld (%zu bytes): first difference at token %ld: got %d, want %d "
                  "(%d tokens, want %ld)", m->tag, index, len, k, k < ng ? (int)got[k] : -1,
                  k < n_want ? (int)want[k] : -1, (int)ng, n_want);
    }
    free(ids);
}

TEST(corpus) {
    char *data = NULL;
    size_t size = 0;
    const char *path = MOA_TEST_FIXTURES "/tokenizer-corpus.txt";
    CHECK_OK(moa_read_file(path, &data, &size));
    if (!data) return;
    int32_t *want = NULL;
    size_t cap = 0;
    char *text = NULL;
    long text_len = -1, index = -1, line_no = 0;
    int n_declared = 0;
    for (char *p = data, *end = data + size; p < end;) {
        char *eol = memchr(p, '\n', (size_t)(end - p));
        if (!eol) eol = end;
        line_no++;
        size_t len = (size_t)(eol - p);
        if (len >= 2 && p[0] == 'M' && p[1] == ' ') {          /* M tag file */
            char *sp = memchr(p + 2, ' ', len - 2);
            CHECK_MSG(sp != NULL, "%s:%ld: bad M line", path, line_no);
            if (sp) {
                n_declared++;
                model_t *m = find_model(p + 2, (size_t)(sp - p - 2));
                if (m) fprintf(stderr, "  %s: fixture made with %.*s\n", m->tag,
                               (int)(eol - sp - 1), sp + 1);
            }
        } else if (len >= 2 && p[0] == 'T' && p[1] == ' ') {   /* T text */
            text = p + 2;
            text_len = unescape(text, len - 2);
            index++;
            CHECK_MSG(text_len >= 0, "%s:%ld: bad escape", path, line_no);
        } else if (len >= 2 && p[0] == 'I' && p[1] == ' ') {   /* I tag ids */
            char *tag = p + 2, *sp = memchr(tag, ' ', len - 2);
            size_t tl = sp ? (size_t)(sp - tag) : len - 2;
            model_t *m = find_model(tag, tl);
            if (m && text && text_len >= 0) {
                long nw = parse_ids(tag + tl, eol, &want, &cap);
                CHECK_MSG(nw >= 0, "%s:%ld: bad ids", path, line_no);
                if (nw >= 0) check_text(m, index, text, (size_t)text_len, want, nw);
            }
        } else if (len > 0 && p[0] != '#') {
            CHECK_MSG(0, "%s:%ld: unknown line", path, line_no);
        }
        p = eol + 1;
    }
    CHECK(n_declared >= 2);
    CHECK(index + 1 >= 10000);
    for (int i = 0; i < n_models; i++) {
        model_t *m = &models[i];
        fprintf(stderr, "  %s: %d/%d texts identical to llama.cpp (%zu tokens, %zu bytes); "
                "encode %.1f ms total, %.1f MB/s, %.2f M tokens/s\n", m->tag, m->n_ok,
                m->n_texts, m->n_tokens, m->n_bytes, 1e3 * m->seconds,
                m->seconds > 0 ? m->n_bytes / m->seconds / 1e6 : 0.0,
                m->seconds > 0 ? m->n_tokens / m->seconds / 1e6 : 0.0);
        CHECK_EQ_INT(m->n_texts, index + 1);
        CHECK_EQ_INT(m->n_ok, m->n_texts);
        CHECK_EQ_INT(m->n_roundtrip_bad, 0);
    }
    free(want);
    free(data);
}

/* llama.cpp's end-of-generation set, over every id, add_bos and the pre-tokenizer. */
TEST(eog_and_bos) {
    for (int i = 0; i < n_models; i++) {
        model_t *m = &models[i];
        CHECK_STR(moa_tokenizer_pre(m->tok), json_string_value(json_object_get(m->meta, "pre")));
        json_t *eog = json_object_get(m->meta, "eog_llamacpp");
        CHECK(json_is_array(eog) && json_array_size(eog) > 0);
        int32_t nv = moa_tokenizer_n_vocab(m->tok);
        CHECK_EQ_INT(nv, json_integer_value(json_object_get(m->meta, "n_vocab")));
        char *want = calloc((size_t)nv, 1);
        if (!want) { CHECK(want != NULL); return; }
        size_t k;
        json_t *v;
        json_array_foreach(eog, k, v) {
            json_int_t id = json_integer_value(v);
            CHECK(id >= 0 && id < nv);
            if (id >= 0 && id < nv) want[id] = 1;
        }
        int bad = 0;
        for (int32_t id = 0; id < nv; id++)
            if (moa_tokenizer_is_eog(m->tok, id) != want[id] && bad++ < 5)
                CHECK_MSG(0, "%s: is_eog(%d) = %d, llama.cpp says %d", m->tag, (int)id,
                          moa_tokenizer_is_eog(m->tok, id), want[id]);
        CHECK_EQ_INT(bad, 0);
        fprintf(stderr, "  %s: %zu end-of-generation tokens as llama.cpp\n", m->tag,
                json_array_size(eog));
        free(want);
        CHECK_EQ_INT(moa_tokenizer_add_bos(m->tok),
                     json_is_true(json_object_get(m->meta, "add_bos")));
    }
}

/* moa_chat_render against the model's Jinja template rendered by jinja2. */
TEST(chat_template) {
    json_t *chat = json_object_get(meta_root, "chat");
    for (int i = 0; i < n_models; i++) {
        model_t *m = &models[i];
        json_t *cases = json_object_get(chat, m->tag);
        CHECK(json_is_array(cases) && json_array_size(cases) >= 3);
        size_t k;
        json_t *c;
        json_array_foreach(cases, k, c) {
            json_t *msgs = json_object_get(c, "messages");
            size_t nm = json_array_size(msgs);
            moa_chat_msg mm[16];
            CHECK(nm > 0 && nm <= 16);
            if (nm == 0 || nm > 16) continue;
            for (size_t j = 0; j < nm; j++) {
                json_t *e = json_array_get(msgs, j);
                mm[j].role = json_string_value(json_object_get(e, "role"));
                mm[j].content = json_string_value(json_object_get(e, "content"));
            }
            int gen = json_is_true(json_object_get(c, "add_generation_prompt"));
            char *out = NULL;
            CHECK_OK(moa_chat_render(m->tok, mm, (int)nm, gen, &out));
            const char *want = json_string_value(json_object_get(c, "jinja2"));
            CHECK_MSG(out && want && !strcmp(out, want), "%s: chat case \"%s\" differs:\n"
                      "got:  %s\nwant: %s", m->tag,
                      json_string_value(json_object_get(c, "label")), out ? out : "(null)",
                      want ? want : "(null)");
            free(out);
        }
    }
}

static void add_model(const char *tag, const char *env) {
    const char *path = getenv(env);
    if (!path || !*path) {
        fprintf(stderr, "  %s: skipped (%s is not set)\n", tag, env);
        return;
    }
    model_t *m = &models[n_models];
    snprintf(m->tag, sizeof m->tag, "%s", tag);
    m->env = env;
    if (moa_gguf_open(path, &m->g) != MOA_OK || moa_tokenizer_from_gguf(m->g, &m->tok) != MOA_OK) {
        fprintf(stderr, "  %s: cannot load %s: %s\n", tag, path, moa_last_error());
        test_checks_failed_++;
        test_cases_failed_++;
        if (m->g) moa_gguf_close(m->g);
        return;
    }
    json_t *arr = json_object_get(meta_root, "models");
    size_t k;
    json_t *e;
    json_array_foreach(arr, k, e)
        if (!strcmp(json_string_value(json_object_get(e, "tag")), tag)) m->meta = e;
    if (!m->meta) {
        fprintf(stderr, "  %s: not in tokenizer-corpus.json\n", tag);
        test_checks_failed_++;
        test_cases_failed_++;
    }
    n_models++;
}

int main(void) {
    json_error_t err;
    const char *jpath = MOA_TEST_FIXTURES "/tokenizer-corpus.json";
    meta_root = json_load_file(jpath, 0, &err);
    if (!meta_root) {
        fprintf(stderr, "%s:%d: %s\n", jpath, err.line, err.text);
        return 1;
    }
    add_model("qwen", "MOA_MODEL_QWEN");
    add_model("smollm", "MOA_MODEL");
    if (n_models == 0 && test_checks_failed_ == 0) {
        fprintf(stderr, "skipped: set MOA_MODEL_QWEN and/or MOA_MODEL\n");
        json_decref(meta_root);
        return 77;
    }
    RUN(corpus);
    RUN(eog_and_bos);
    RUN(chat_template);
    for (int i = 0; i < n_models; i++) {
        moa_tokenizer_free(models[i].tok);
        moa_gguf_close(models[i].g);
    }
    json_decref(meta_root);
    return test_summary();
}
