/* test_calib.c - unit tests of calib-data (no model): golden LongEval prompt, scorers,
 * determinism, length fitting with a fake token counter, JSONL errors, tasks' contents. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "moa/calib.h"
#include "moa/common.h"
#include "test.h"

/* The fixed small word list: 3 entries are filtered out (capital, too short, apostrophe). */
static const char *const SMALL_WORDS[] = {"apple", "River", "stone", "it", "cloud", "don't",
                                          "amber", "maple"};

static moa_wordlist *small_words(void) {
    moa_wordlist *wl = NULL;
    CHECK_OK(moa_wordlist_from_words(SMALL_WORDS, 8, &wl));
    return wl;
}

/* A bigger deterministic list (synthetic words "baa".."zzz" minus a few) for long prompts. */
static moa_wordlist *big_words(void) {
    static char buf[26 * 26 * 26][4];
    static const char *ptr[26 * 26 * 26];
    int n = 0;
    for (int a = 0; a < 26; a++)
        for (int b = 0; b < 26; b++)
            for (int c = 0; c < 26; c++, n++) {
                buf[n][0] = (char)('a' + a); buf[n][1] = (char)('a' + b);
                buf[n][2] = (char)('a' + c); buf[n][3] = 0;
                ptr[n] = buf[n];
            }
    moa_wordlist *wl = NULL;
    CHECK_OK(moa_wordlist_from_words(ptr, (size_t)n, &wl));
    return wl;
}

/* Fake tokenizer: whitespace-separated words, plus 7 tokens of "chat template". */
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

/* ---- golden LongEval prompt ----------------------------------------------------------------
 * Expected text: header and question typed from shared/reference/longeval.md; labels and
 * values from tests/calib-data/make_lines_golden.py 42 4 2 (an independent Python
 * re-implementation of GSL mt19937 + uniform_int and the documented draw order). */
static const char GOLDEN_LINES[] =
    "Below is a record of lines I want you to remember. Each line begins with 'line <line index>' "
    "and contains a '<REGISTER_CONTENT>' at the end of the line as a numerical value. For each line "
    "index, memorize its corresponding <REGISTER_CONTENT>. At the end of the record, I will ask you "
    "to retrieve the corresponding <REGISTER_CONTENT> of a certain line index. Now the record start:"
    "\n\n"
    "line stone-amber: REGISTER_CONTENT is <47536>\n"
    "line apple-amber: REGISTER_CONTENT is <38985>\n"
    "line apple-cloud: REGISTER_CONTENT is <7800>\n"
    "line cloud-maple: REGISTER_CONTENT is <16686>\n"
    "\n"
    "Now the record is over. Tell me what is the <REGISTER_CONTENT> in line apple-cloud? I need the "
    "number.";

TEST(wordlist_filter) {
    moa_wordlist *wl = small_words();
    if (!wl) return;
    CHECK_EQ_INT(moa_wordlist_count(wl), 5);
    CHECK_STR(moa_wordlist_word(wl, 0), "apple");
    CHECK_STR(moa_wordlist_word(wl, 1), "stone");
    CHECK_STR(moa_wordlist_word(wl, 4), "maple");
    CHECK_EQ_INT(strlen(moa_wordlist_sha256(wl)), 64);
    moa_wordlist_free(wl);
    const char *few[] = {"Apple", "x", "ok's"};
    moa_wordlist *bad = NULL;
    CHECK(moa_wordlist_from_words(few, 3, &bad) == MOA_ERR_FORMAT);
    CHECK(bad == NULL);
    /* The system list, when installed (Debian wamerican). */
    if (moa_file_exists(MOA_WORDLIST_DEFAULT_PATH)) {
        moa_wordlist *sys = NULL;
        CHECK_OK(moa_wordlist_load(NULL, &sys));
        CHECK(moa_wordlist_count(sys) > 10000);
        for (size_t i = 0; sys && i < moa_wordlist_count(sys); i += 997) {
            const char *w = moa_wordlist_word(sys, i);
            for (const char *p = w; *p; p++) CHECK(*p >= 'a' && *p <= 'z');
        }
        moa_wordlist_free(sys);
    }
}

TEST(lines_golden) {
    moa_wordlist *wl = small_words();
    moa_task_spec spec = moa_task_spec_default(MOA_TASK_LINES);
    spec.words = wl;
    spec.query_index = 2;
    moa_task_sample s;
    CHECK_OK(moa_task_generate(&spec, 42, 4, -1, &s));
    CHECK_STR(s.prompt, GOLDEN_LINES);
    CHECK_STR(s.expected, "7800");
    CHECK_STR(s.task, "lines");
    CHECK_EQ_INT(s.query_index, 2);
    CHECK_EQ_INT(s.position_bin, 5);
    CHECK_EQ_INT(s.seed, 42);
    CHECK(s.params && strstr(s.params, "\"seed\":42") && strstr(s.params, "\"n_lines\":4"));
    moa_task_sample_clear(&s);
    /* 5 words give 20 ordered pairs: 21 unique labels are impossible. */
    CHECK(moa_task_generate(&spec, 42, 21, -1, &s) == MOA_ERR_RANGE);
    spec.query_index = 4;
    CHECK(moa_task_generate(&spec, 42, 4, -1, &s) == MOA_ERR_RANGE);
    CHECK(strstr(moa_last_error(), "query_index") != NULL);
    moa_wordlist_free(wl);
}

TEST(lines_labels_unique_and_bins) {
    moa_wordlist *wl = big_words();
    moa_task_spec spec = moa_task_spec_default(MOA_TASK_LINES);
    spec.words = wl;
    for (int b = 0; b < 10; b++) {
        spec.position_bin = b;
        moa_task_sample s;
        CHECK_OK(moa_task_generate(&spec, 7 + b, 37, -1, &s));
        CHECK_EQ_INT(s.position_bin, b);
        CHECK_EQ_INT(10 * s.query_index / 37, b);
        moa_task_sample_clear(&s);
    }
    /* Unique labels with a tiny list: 20 lines from 20 possible pairs. */
    moa_wordlist *sw = small_words();
    spec.words = sw;
    spec.position_bin = -1;
    moa_task_sample s;
    CHECK_OK(moa_task_generate(&spec, 3, 20, -1, &s));
    char labels[20][32];
    int k = 0;
    for (const char *p = strstr(s.prompt, "\n\nline ") + 2; p && k < 20; k++) {
        const char *c = strchr(p, ':');
        snprintf(labels[k], sizeof labels[k], "%.*s", (int)(c - p - 5), p + 5);
        p = strchr(p, '\n');
        p = p && strncmp(p + 1, "line ", 5) == 0 ? p + 1 : NULL;
    }
    CHECK_EQ_INT(k, 20);
    for (int i = 0; i < k; i++)
        for (int j = i + 1; j < k; j++) CHECK(strcmp(labels[i], labels[j]) != 0);
    moa_task_sample_clear(&s);
    moa_wordlist_free(sw);
    moa_wordlist_free(wl);
}

TEST(scorers) {
    CHECK_EQ_INT(moa_score_lines("The number is 12345.", "12345"), 1);
    CHECK_EQ_INT(moa_score_lines("<REGISTER_CONTENT> is <12345>", "12345"), 1);
    CHECK_EQ_INT(moa_score_lines("no number here", "12345"), 0);
    CHECK_EQ_INT(moa_score_lines("", "12345"), 0);
    CHECK_EQ_INT(moa_score_lines("line 3 has 12345, not 999", "12345"), 0);   /* last one wins */
    CHECK_EQ_INT(moa_score_lines("999 then 12345", "12345"), 1);
    CHECK_EQ_INT(moa_score_lines("value 0012345", "12345"), 1);              /* leading zeros */
    CHECK_EQ_INT(moa_score_lines("value 12345", "0012345"), 1);
    CHECK_EQ_INT(moa_score_lines("value 0", "0"), 1);
    CHECK_EQ_INT(moa_score_lines("value 000", "0"), 1);
    CHECK_EQ_INT(moa_score_lines("99999999999999999999999999912345", "12345"), 0);  /* > 64 bits */
    CHECK_EQ_INT(moa_score_lines("123456789012345678901234567890", "123456789012345678901234567890"), 1);
    CHECK_EQ_INT(moa_score_lines("1234", "12345"), 0);
    CHECK_EQ_INT(moa_score_lines("12345-1", "12345"), 0);                    /* "1" is last */
    CHECK_EQ_INT(moa_score_lines("12.345", "345"), 1);
    CHECK_EQ_INT(moa_score_lines("12345", ""), 0);
    CHECK_EQ_INT(moa_score_lines("12345", "12a45"), 0);
    CHECK_EQ_INT(moa_score_lines(NULL, "1"), 0);
    CHECK_NEAR(moa_score_needle("The numbers are 1234567 and 7654321.", "1234567\n7654321"), 1.0, 0);
    CHECK_NEAR(moa_score_needle("Only 1234567.", "1234567\n7654321"), 0.5, 0);
    CHECK_NEAR(moa_score_needle("nothing", "1234567"), 0.0, 0);
    CHECK_NEAR(moa_score_needle("The word is APPLE-stone", "apple-Stone"), 1.0, 0);
    CHECK_NEAR(moa_score_needle("abc", "a\n\nb\nz"), 2.0 / 3.0, 1e-12);
    CHECK_NEAR(moa_score_task("lines", "it is 5", "5"), 1.0, 0);
    CHECK_NEAR(moa_score_task("needle-multivalue", "x 1 y", "1\n2"), 0.5, 0);
    CHECK_NEAR(moa_score_task("longdep", "Ann 1", "Ann\n1"), 1.0, 0);
    CHECK_NEAR(moa_score_task("jsonl", "x", NULL), -1.0, 0);
}

/* Every task kind, for determinism and fitting. */
static const char *JSONL_DATA =
    "{\"context\": \"Alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu nu xi "
    "omicron pi rho sigma tau upsilon phi chi psi omega. The end of the first news story is here. "
    "Second story: a long text about nothing in particular that goes on and on, with many words "
    "that carry little meaning but fill the space, again and again and again and again and again "
    "and again and again until the final sentence arrives at last.\", \"instruction\": "
    "\"Summarise the news.\"}\n"
    "\n"
    "{\"context\": \"Short record.\", \"instruction\": \"Say hi.\", \"extra\": 1}\n";

static int make_specs(moa_task_spec *specs, const moa_wordlist *wl, const moa_jsonl_corpus *c) {
    int n = 0;
    specs[n] = moa_task_spec_default(MOA_TASK_LINES); specs[n++].words = wl;
    for (int v = 0; v < 4; v++) {
        specs[n] = moa_task_spec_default(MOA_TASK_NEEDLE);
        specs[n].words = wl;
        specs[n].needle_variant = (moa_needle_variant)v;
        specs[n].needle_type = (moa_needle_type)(v % 3);
        n++;
    }
    specs[n] = moa_task_spec_default(MOA_TASK_NEEDLE);
    specs[n].words = wl;
    specs[n].haystack_text = "It was the best of times, it was the worst of times, it was the age "
                             "of wisdom, it was the age of foolishness.";
    n++;
    specs[n] = moa_task_spec_default(MOA_TASK_LONGDEP); specs[n++].words = wl;
    specs[n] = moa_task_spec_default(MOA_TASK_JSONL); specs[n++].corpus = c;
    return n;
}

TEST(determinism) {
    moa_wordlist *wl = big_words();
    moa_jsonl_corpus *c = NULL;
    CHECK_OK(moa_jsonl_parse(JSONL_DATA, strlen(JSONL_DATA), "mem.jsonl", NULL, &c));
    moa_task_spec specs[16];
    int ns = make_specs(specs, wl, c);
    for (int t = 0; t < ns; t++) {
        int64_t size = specs[t].kind == MOA_TASK_JSONL ? 120 : 50;
        moa_task_sample a, b, d;
        CHECK_OK(moa_task_generate(&specs[t], 1234, size, 0, &a));
        CHECK_OK(moa_task_generate(&specs[t], 1234, size, 0, &b));
        CHECK_OK(moa_task_generate(&specs[t], 1235, size, 0, &d));
        CHECK_STR(a.prompt, b.prompt);
        CHECK_STR(a.params, b.params);
        if (specs[t].kind != MOA_TASK_JSONL) {
            CHECK_MSG(strcmp(a.prompt, d.prompt) != 0, "task %s: seeds 1234 and 1235 gave the same prompt", a.task);
            CHECK(a.expected && d.expected);
            /* every expected answer string is in the prompt */
            for (const char *p = a.expected; p && *p;) {
                const char *nl = strchr(p, '\n');
                size_t n = nl ? (size_t)(nl - p) : strlen(p);
                char buf[128];
                snprintf(buf, sizeof buf, "%.*s", (int)n, p);
                CHECK_MSG(strstr(a.prompt, buf) != NULL, "task %s: expected '%s' not in the prompt", a.task, buf);
                p = nl ? nl + 1 : NULL;
            }
        } else {
            CHECK(a.expected == NULL);
        }
        moa_task_sample_clear(&a); moa_task_sample_clear(&b); moa_task_sample_clear(&d);
    }
    moa_jsonl_free(c);
    moa_wordlist_free(wl);
}

TEST(needle_texts) {
    moa_wordlist *wl = small_words();
    moa_task_spec spec = moa_task_spec_default(MOA_TASK_NEEDLE);
    spec.words = wl;
    spec.query_index = 1;
    moa_task_sample s;
    CHECK_OK(moa_task_generate(&spec, 5, 2, -1, &s));
    /* singular RULER wording, needle before noise unit 1 */
    const char *pre = "A special magic number is hidden within the following text. Make sure to memorize "
                      "it. I will quiz you about the number afterwards.\nThe grass is green. The sky is "
                      "blue. The sun is yellow. Here we go. There and back again. One of the special "
                      "magic numbers for ";
    CHECK(strncmp(s.prompt, pre, strlen(pre)) == 0);
    CHECK(strstr(s.prompt, "\nWhat is the special magic number for ") != NULL);
    CHECK(strlen(s.expected) == 7);
    CHECK_EQ_INT(s.query_index, 1);
    moa_task_sample_clear(&s);
    spec.query_index = -1;
    spec.needle_variant = MOA_NEEDLE_MULTIVALUE;
    spec.needle_values = 3;
    CHECK_OK(moa_task_generate(&spec, 5, 10, -1, &s));
    CHECK(strncmp(s.prompt, "Some special magic numbers are hidden", 37) == 0);
    CHECK(strstr(s.prompt, "What are all the special magic numbers for ") != NULL);
    int lines = 1;
    for (const char *p = s.expected; *p; p++) lines += *p == '\n';
    CHECK_EQ_INT(lines, 3);
    moa_task_sample_clear(&s);
    spec.needle_variant = MOA_NEEDLE_MULTIQUERY;
    spec.needle_type = MOA_NEEDLE_UUIDS;
    CHECK_OK(moa_task_generate(&spec, 5, 10, -1, &s));
    CHECK(strstr(s.prompt, "magic uuids for ") && strstr(s.prompt, " and "));
    CHECK(strlen(s.expected) == 36 * 2 + 1 && s.expected[14] == '4');
    moa_task_sample_clear(&s);
    spec.needle_keys = 0;
    CHECK(moa_task_generate(&spec, 5, 10, -1, &s) == MOA_ERR_INVALID_ARG);
    moa_wordlist_free(wl);
}

TEST(fit_lengths) {
    moa_wordlist *wl = big_words();
    moa_jsonl_corpus *c = NULL;
    CHECK_OK(moa_jsonl_parse(JSONL_DATA, strlen(JSONL_DATA), "mem.jsonl", NULL, &c));
    moa_task_spec specs[16];
    int ns = make_specs(specs, wl, c);
    moa_fit_params fp = moa_fit_default_params();
    fp.tolerance_abs = 16;
    fp.tolerance_rel = 0.0;
    const int targets[] = {300, 1000, 4000, 16000};
    for (int t = 0; t < ns; t++) {
        if (specs[t].kind == MOA_TASK_JSONL) continue;
        for (int k = 0; k < 4; k++) {
            moa_task_sample s;
            int n = 0;
            CHECK_OK(moa_task_fit(&specs[t], 99, -1, targets[k], fake_count, NULL, &fp, &s, &n));
            CHECK_MSG(n <= targets[k] && n >= targets[k] - 16, "task %s target %d: got %d tokens",
                      moa_task_name(&specs[t]), targets[k], n);
            CHECK_EQ_INT(n, fake_count(NULL, s.prompt, strlen(s.prompt)));
            if (specs[t].kind == MOA_TASK_LONGDEP) {   /* automatic entity count */
                int people = targets[k] / 256 < 4 ? 4 : targets[k] / 256 > 64 ? 64 : targets[k] / 256;
                char want[32];
                snprintf(want, sizeof want, "\"people\":%d,", people);
                CHECK_MSG(strstr(s.params, want) != NULL, "longdep at %d: %s lacks %s", targets[k], s.params, want);
            }
            moa_task_sample_clear(&s);
        }
    }
    /* Too small a target: a range error that names the minimum. */
    moa_task_sample s;
    int n;
    CHECK(moa_task_fit(&specs[0], 1, -1, 20, fake_count, NULL, &fp, &s, &n) == MOA_ERR_RANGE);
    CHECK(strstr(moa_last_error(), "below the smallest prompt") != NULL);
    moa_task_sample_clear(&s);
    /* JSONL: trimmed to the budget keeping the first and the last words; short ones whole. */
    moa_task_spec js = moa_task_spec_default(MOA_TASK_JSONL);
    js.corpus = c;
    fp.tolerance_abs = 4;
    CHECK_OK(moa_task_fit(&js, 0, 0, 40, fake_count, NULL, &fp, &s, &n));
    CHECK(n <= 40 && n >= 36);
    CHECK(strncmp(s.prompt, "Alpha beta gamma", 16) == 0);
    CHECK(strstr(s.prompt, "arrives at last.\n\nSummarise the news.") != NULL);
    CHECK(strstr(s.prompt, "Second story") == NULL);
    CHECK(strstr(s.params, "\"trimmed\":true") != NULL);
    moa_task_sample_clear(&s);
    CHECK_OK(moa_task_fit(&js, 0, 1, 40, fake_count, NULL, &fp, &s, &n));
    CHECK_STR(s.prompt, "Short record.\n\nSay hi.");
    CHECK_EQ_INT(n, 7 + 4);
    moa_task_sample_clear(&s);
    moa_jsonl_free(c);
    moa_wordlist_free(wl);
}

static void check_jsonl_error(const char *data, const char *want1, const char *want2) {
    moa_jsonl_corpus *c = NULL;
    moa_status st = moa_jsonl_parse(data, strlen(data), "x.jsonl", NULL, &c);
    CHECK_MSG(st == MOA_ERR_FORMAT, "expected a format error for %s", want1);
    CHECK(c == NULL);
    CHECK_MSG(strstr(moa_last_error(), want1) != NULL, "message '%s' lacks '%s'", moa_last_error(), want1);
    if (want2)
        CHECK_MSG(strstr(moa_last_error(), want2) != NULL, "message '%s' lacks '%s'", moa_last_error(), want2);
}

TEST(jsonl_errors) {
    const char *ok = "{\"context\":\"a\",\"instruction\":\"b\"}\n";
    check_jsonl_error("{\"context\":\"a\",\"instruction\":\"b\"}\n{\"context\": \"a\", oops}\n",
                      "x.jsonl:2:", "invalid JSON");
    check_jsonl_error("{\"context\":\"a\",\"instruction\":\"b\"}\n\n{\"instruction\":\"b\"}\n",
                      "x.jsonl:3:", "missing field \"context\"");
    check_jsonl_error("{\"context\":\"a\"}", "x.jsonl:1:", "missing field \"instruction\"");
    check_jsonl_error("{\"context\":\"  \",\"instruction\":\"b\"}", "x.jsonl:1:", "field \"context\" is empty");
    check_jsonl_error("{\"context\":5,\"instruction\":\"b\"}", "x.jsonl:1:", "\"context\" must be a string");
    check_jsonl_error("{\"context\":\"a\xff\xfe\",\"instruction\":\"b\"}", "x.jsonl:1:", "invalid UTF-8");
    check_jsonl_error("{\"context\":\"\xc0\xaf\",\"instruction\":\"b\"}", "x.jsonl:1:", "invalid UTF-8");
    check_jsonl_error("[1,2]", "x.jsonl:1:", "JSON object");
    check_jsonl_error("\n\n", "x.jsonl", "no records");
    (void)ok;
    /* Configurable field names and template. */
    moa_jsonl_params p = moa_jsonl_default_params();
    p.context_field = "document";
    p.instruction_field = "question";
    p.prompt_template = "Q: {instruction}\nDocs:\n{context}";
    moa_jsonl_corpus *c = NULL;
    const char *d = "{\"document\":\"caf\xc3\xa9 news\",\"question\":\"Why?\"}";
    CHECK_OK(moa_jsonl_parse(d, strlen(d), "y.jsonl", &p, &c));
    CHECK_EQ_INT(moa_jsonl_count(c), 1);
    moa_task_spec js = moa_task_spec_default(MOA_TASK_JSONL);
    js.corpus = c;
    moa_task_sample s;
    CHECK_OK(moa_task_generate(&js, 0, 1000, 0, &s));
    CHECK_STR(s.prompt, "Q: Why?\nDocs:\ncaf\xc3\xa9 news");
    moa_task_sample_clear(&s);
    CHECK(moa_task_generate(&js, 0, 1000, 1, &s) == MOA_ERR_RANGE);
    moa_jsonl_free(c);
    /* A file that does not exist. */
    CHECK(moa_jsonl_load("/nonexistent/x.jsonl", NULL, &c) == MOA_ERR_IO);
}

TEST(longdep_content) {
    moa_wordlist *wl = big_words();
    moa_task_spec spec = moa_task_spec_default(MOA_TASK_LONGDEP);
    spec.words = wl;
    moa_task_sample s;
    CHECK_OK(moa_task_generate(&spec, 77, 300, -1, &s));
    /* expected = name, badge, name, badge...; each name lives in the asked city (a fact
     * somewhere in the text) and has that badge number (another fact elsewhere). */
    const char *q = strstr(s.prompt, "who live in ");
    CHECK(q != NULL);
    char city[32] = "";
    if (q) sscanf(q + 12, "%31[A-Za-z]", city);
    int pairs = 0;
    char *e = moa_strdup(s.expected);
    for (char *save = NULL, *name = strtok_r(e, "\n", &save); name; name = strtok_r(NULL, "\n", &save)) {
        char *badge = strtok_r(NULL, "\n", &save);
        CHECK(badge != NULL);
        if (!badge) break;
        char fact[128];
        snprintf(fact, sizeof fact, "%s lives in %s.", name, city);
        CHECK_MSG(strstr(s.prompt, fact) != NULL, "missing fact '%s'", fact);
        snprintf(fact, sizeof fact, "The badge number of %s is %s.", name, badge);
        CHECK_MSG(strstr(s.prompt, fact) != NULL, "missing fact '%s'", fact);
        pairs++;
    }
    free(e);
    CHECK(pairs >= 2 && pairs <= 4);
    moa_task_sample_clear(&s);
    moa_wordlist_free(wl);
}

int main(void) {
    RUN(wordlist_filter);
    RUN(lines_golden);
    RUN(lines_labels_unique_and_bins);
    RUN(scorers);
    RUN(determinism);
    RUN(needle_texts);
    RUN(fit_lengths);
    RUN(jsonl_errors);
    RUN(longdep_content);
    return test_summary();
}
