/* test_tokenizer_golden.c - SmolLM2's tokenizer, loaded from the real GGUF, against
 * tests/fixtures/tokenizer-golden.json (token ids from Hugging Face `tokenizers` over the
 * same vocab and merges; scripts/golden/make_tokenizer_golden.py). Every case must match
 * exactly (parse_special = 1, no BOS) and decode back to its text. Skips without MOA_MODEL. */
#include "test.h"

#include <jansson.h>

#include "moa/model.h"
#include "unicode.h"

static moa_gguf *g;
static moa_tokenizer *tok;

TEST(load) {
    CHECK_OK(moa_tokenizer_from_gguf(g, &tok));
    if (!tok) return;
    CHECK_EQ_INT(moa_tokenizer_n_vocab(tok), 49152);
    CHECK_STR(moa_tokenizer_pre(tok), "smollm");
    CHECK_STR(moa_tokenizer_token(tok, 0), "<|endoftext|>");
    CHECK_STR(moa_tokenizer_token(tok, 1), "<|im_start|>");
    CHECK_STR(moa_tokenizer_token(tok, 2), "<|im_end|>");
    CHECK_EQ_INT(moa_tokenizer_token_type(tok, 2), MOA_TOKEN_CONTROL);
    CHECK(moa_tokenizer_is_eog(tok, 2));
    CHECK(moa_tokenizer_is_eog(tok, 0));
    CHECK(!moa_tokenizer_is_eog(tok, 1));
    /* add_bos_token is false: nothing is prepended */
    int32_t *ids = NULL, n = 0;
    CHECK_OK(moa_tokenizer_encode(tok, "Hello", 5, 0, &ids, &n));
    CHECK_EQ_INT(n, 1);
    free(ids);
}

TEST(golden_cases) {
    if (!tok) { CHECK(tok != NULL); return; }
    const char *path = MOA_TEST_FIXTURES "/tokenizer-golden.json";
    json_error_t err;
    json_t *root = json_load_file(path, 0, &err);
    CHECK_MSG(root != NULL, "%s:%d: %s", path, err.line, err.text);
    if (!root) return;
    json_t *cases = json_object_get(root, "cases");
    CHECK(json_is_array(cases) && json_array_size(cases) > 0);
    size_t i, n_ok = 0, n_cases = json_array_size(cases);
    json_t *c;
    json_array_foreach(cases, i, c) {
        json_t *jt = json_object_get(c, "text"), *jids = json_object_get(c, "ids");
        if (!json_is_string(jt) || !json_is_array(jids)) {
            CHECK_MSG(0, "case %zu: needs \"text\" (string) and \"ids\" (array)", i);
            continue;
        }
        const char *text = json_string_value(jt);
        size_t len = json_string_length(jt);
        int32_t *ids = NULL, n = 0;
        moa_status st = moa_tokenizer_encode(tok, text, len, 1, &ids, &n);
        CHECK_MSG(st == MOA_OK, "case %zu: encode failed: %s", i, moa_last_error());
        if (st != MOA_OK) continue;
        int same = (size_t)n == json_array_size(jids);
        size_t first_diff = 0;
        for (size_t k = 0; same && k < (size_t)n; k++) {
            if (ids[k] != json_integer_value(json_array_get(jids, k))) { same = 0; first_diff = k; }
        }
        if (!same && (size_t)n != json_array_size(jids)) {
            size_t m = (size_t)n < json_array_size(jids) ? (size_t)n : json_array_size(jids);
            for (first_diff = 0; first_diff < m; first_diff++)
                if (ids[first_diff] != json_integer_value(json_array_get(jids, first_diff))) break;
        }
        CHECK_MSG(same, "case %zu \"%.40s\": %d ids vs %zu expected, first difference at %zu "
                  "(got %d \"%s\", want %lld)", i, text, (int)n, json_array_size(jids),
                  first_diff, first_diff < (size_t)n ? ids[first_diff] : -1,
                  first_diff < (size_t)n ? moa_tokenizer_token(tok, ids[first_diff]) : "",
                  first_diff < json_array_size(jids)
                      ? (long long)json_integer_value(json_array_get(jids, first_diff)) : -1LL);
        if (moa_utf8_valid((const unsigned char *)text, len)) {
            char *back = NULL;
            st = moa_tokenizer_decode(tok, ids, n, 1, &back);
            CHECK_MSG(st == MOA_OK && back && strlen(back) == len && memcmp(back, text, len) == 0,
                      "case %zu: decode(encode(text)) != text: \"%.60s\"", i, back ? back : "");
            free(back);
        }
        n_ok += same;
        free(ids);
    }
    fprintf(stderr, "  %zu/%zu golden cases match\n", n_ok, n_cases);
    json_decref(root);
}

TEST(chat_template) {
    if (!tok) return;
    moa_chat_msg m[] = {{"user", "What is the capital of France?"}};
    char *out = NULL;
    CHECK_OK(moa_chat_render(tok, m, 1, 1, &out));
    CHECK_STR(out, "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by "
                   "Hugging Face<|im_end|>\n<|im_start|>user\nWhat is the capital of France?"
                   "<|im_end|>\n<|im_start|>assistant\n");
    if (out) {
        int32_t *ids = NULL, n = 0;
        CHECK_OK(moa_tokenizer_encode(tok, out, strlen(out), 1, &ids, &n));
        CHECK(n > 3 && ids[0] == 1);
        free(ids);
    }
    free(out);
}

int main(void) {
    const char *path = test_model_path();
    moa_status st = moa_gguf_open(path, &g);
    if (st != MOA_OK) {
        fprintf(stderr, "cannot open %s: %s\n", path, moa_last_error());
        return 1;
    }
    RUN(load);
    RUN(golden_cases);
    RUN(chat_template);
    moa_tokenizer_free(tok);
    moa_gguf_close(g);
    return test_summary();
}
