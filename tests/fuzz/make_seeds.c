/* make_seeds.c - writes the fuzzers' seed corpora (small valid files of each kind) into
 * tests/fuzz/corpus/<kind>/: one profile (1 layer, 2 heads, one 128-token bucket, with
 * calibration and shard provenance), one calibration file (tests/tiny-calib.h), one LongEval
 * results file (two rows), two plans and two LongEval results logs (the run of fuzz_evallog.h
 * with a fake model: all 20 rows; 3 rows and a torn fourth), their per-row "seconds" set to
 * 0.25 so the seeds do not change from run to run. Usage: make_seeds CORPUS_DIR
 * (see docs/fuzzing.md). */
#include "moa/calib.h"
#include "moa/eval.h"
#include "fuzz_evallog.h"
#include "moa/common.h"
#include "moa/profile-file.h"
#include "tiny-calib.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static char buf[1024];
static const char *at(const char *dir, const char *name) { snprintf(buf, sizeof buf, "%s/%s", dir, name); return buf; }

/* The fake model of the log seeds: tokens = words + 7; the answer is the prompt's last word. */
static char *prompt;
static int fake_count(void *d, const char *t, size_t n) {
    (void)d;
    int k = 7, in = 0;
    for (size_t i = 0; i < n; i++) {
        int sp = t[i] == ' ' || t[i] == '\n';
        k += !sp && !in;
        in = !sp;
    }
    return k;
}
static moa_status fake_encode(void *d, const char *t, size_t n, int32_t **ids, int *k) {
    (void)d;
    free(prompt);
    prompt = strndup(t, n);
    *k = fake_count(NULL, t, n);
    *ids = calloc((size_t)*k, sizeof **ids);
    return prompt && *ids ? MOA_OK : MOA_ERR_NOMEM;
}
static moa_status fake_detok(void *d, const int32_t *ids, int n, char **t) {
    (void)d;
    if (!(*t = malloc((size_t)n + 1))) return MOA_ERR_NOMEM;
    for (int i = 0; i < n; i++) (*t)[i] = (char)ids[i];
    (*t)[n] = 0;
    return MOA_OK;
}
static moa_status fake_respond(void *d, const int32_t *p, int np, int max_new, int32_t **out, int *n_out) {
    (void)d; (void)p; (void)np;
    const char *a = strrchr(prompt, ' ');
    a = a ? a + 1 : prompt;
    int n = (int)strlen(a) < max_new ? (int)strlen(a) : max_new;
    if (!(*out = malloc(sizeof(int32_t) * (size_t)(n + 1)))) return MOA_ERR_NOMEM;
    for (int i = 0; i < n; i++) (*out)[i] = (unsigned char)a[i];
    *n_out = n;
    return MOA_OK;
}

/* Copies the log `src` to `dst` with every "seconds" value replaced by 0.25, keeping the
 * header and the first `rows` rows (all: -1) and then `torn` bytes of the next row. */
static int copy_log(const char *src, const char *dst, int rows, int torn) {
    char *text = NULL;
    size_t len = 0;
    if (moa_read_file(src, &text, &len) < 0) return -1;
    FILE *fp = fopen(dst, "wb");
    if (!fp) { free(text); return -1; }
    int line = 0;
    for (char *s = text; *s;) {
        char *nl = strchr(s, '\n');
        size_t n = nl ? (size_t)(nl - s) + 1 : strlen(s);
        if (rows >= 0 && line == rows + 1) { fwrite(s, 1, (size_t)torn < n ? (size_t)torn : n, fp); break; }
        char *sec = strstr(s, "\"seconds\":");
        if (sec && sec < s + n) {
            char *num = sec + 10, *end = num + strcspn(num, ",}");
            fwrite(s, 1, (size_t)(num - s), fp);
            fputs("0.25", fp);
            fwrite(end, 1, (size_t)(s + n - end), fp);
        } else {
            fwrite(s, 1, n, fp);
        }
        s += n;
        line++;
    }
    free(text);
    return fclose(fp) == 0 ? 0 : -1;
}

#define TRY(x) do { moa_status st_ = (x); if (st_ < 0) { fprintf(stderr, "%s: %s\n", #x, moa_last_error()); return 1; } } while (0)

int main(int argc, char **argv) {
    if (argc != 2) { fprintf(stderr, "usage: make_seeds CORPUS_DIR\n"); return 2; }
    const char *d = argv[1];
    /* profile */
    int64_t len[1] = {128};
    moa_profile *p = NULL;
    TRY(moa_profile_create(1, 2, 1, 64, 16, 64, len, 1, &p));
    double a[4] = {0.5, 0.25, 0.125, 0.0625}, s[2] = {0.1, 0.2};
    TRY(moa_profile_add_sample(p, 0, a, a, s, 128));
    snprintf(p->model_sha256, sizeof p->model_sha256, "%064x", 1);
    TRY(moa_profile_set_source(p, "00000000000000000000000000000000000000000000000000000000000000ab", 1, 3));
    TRY(moa_profile_save(p, at(d, "profile/tiny.h5")));
    moa_profile_free(p);
    /* calibration file */
    tiny_calib c;
    tiny_calib_init(&c);
    c.s.params = (char *)"{\"n_lines\":3}";
    c.f.chat_template = (char *)"{{x}}";
    c.f.tool_version = (char *)"seed";
    c.f.build_params = (char *)"{\"seed\":1}";
    TRY(moa_calib_write(at(d, "calib/tiny.h5"), &c.f));
    /* LongEval results */
    moa_longeval_row rows[2];
    memset(rows, 0, sizeof rows);
    for (int i = 0; i < 2; i++) {
        rows[i].length = 256; rows[i].bin = i; rows[i].k = 0; rows[i].seed = 9u + (uint32_t)i;
        rows[i].prompt_tokens = 250; rows[i].lines = 12; rows[i].query_index = i; rows[i].new_tokens = 8;
        rows[i].correct = i; rows[i].expected = (char *)"4242"; rows[i].output = (char *)"It is 4242.";
    }
    int lengths[1] = {256};
    moa_longeval_results *r = NULL;
    TRY(moa_longeval_results_create("dense", "{\"task\":\"lines\"}", lengths, 1, rows, 2, &r));
    TRY(moa_longeval_write_json(r, at(d, "results/tiny.json")));
    moa_longeval_results_free(r);
    /* plans */
    const char *head = "{\"format\":\"moa-plan\",\"version\":1,\"model\":{\"arch\":\"llama\",\"n_layer\":2,\"n_head\":4,"
                       "\"n_head_kv\":2,\"head_dim\":64,\"sha256\":\"\"},\"sink\":64,\"block\":64,\"granularity\":\"%s\","
                       "\"layers\":[{\"units\":[%s]},{\"units\":[%s]}],\"lengths\":{\"profiled\":[4096],\"constrained\":"
                       "[4096],\"budgets\":[0.5],\"validation\":null},\"predicted\":[{\"length\":4096,\"loss\":0.1,"
                       "\"density\":0.5}],\"provenance\":{\"profile_sha256\":\"\",\"calib_sha256\":\"\",\"tool_version\":"
                       "\"0.1.0\",\"solver\":\"glpk 5.0\",\"solver_status\":\"optimal\",\"gap\":0}}\n";
    const char *kv[2] = {"{\"kind\":\"window\",\"alpha\":1024,\"beta\":0.25},{\"kind\":\"dense\"}",
                         "{\"kind\":\"window\",\"alpha\":-1024,\"beta\":0.5},{\"kind\":\"linear\"}"};
    const char *q = "{\"kind\":\"window\",\"alpha\":64,\"beta\":0},{\"kind\":\"dense\"},{\"kind\":\"linear\"},"
                    "{\"kind\":\"window\",\"alpha\":0,\"beta\":1}";
    FILE *fp = fopen(at(d, "plan/kv-head.json"), "w");
    if (!fp) { perror(buf); return 1; }
    fprintf(fp, head, "kv-head", kv[0], kv[1]);
    fclose(fp);
    fp = fopen(at(d, "plan/q-head.json"), "w");
    if (!fp) { perror(buf); return 1; }
    fprintf(fp, head, "q-head", q, q);
    fclose(fp);
    /* a plan carrying its validation summary (the last '}' of head replaced) */
    char with_val[2048];
    snprintf(with_val, sizeof with_val, "%.*s,\"validation\":{\"task\":\"needle\",\"seed\":2,\"samples\":20,"
             "\"calibration\":{\"tasks\":\"longdep,lines\",\"seed\":1},\"accuracy\":[{\"length\":512,"
             "\"dense\":1,\"uniform\":0.5,\"plan\":0.95},{\"length\":2048,\"dense\":0.8,\"uniform\":null,"
             "\"plan\":0.75}],\"heldout_loss\":{\"length\":4096,\"samples\":4,\"dense\":0.61,\"uniform\":0.82,"
             "\"plan\":0.79}}}\n", (int)strlen(head) - 2, head);
    fp = fopen(at(d, "plan/validated.json"), "w");
    if (!fp) { perror(buf); return 1; }
    fprintf(fp, with_val, "kv-head", kv[0], kv[1]);
    fclose(fp);
    /* LongEval results logs */
    moa_wordlist *words = fuzz_evallog_words();
    if (!words) { fprintf(stderr, "word list: %s\n", moa_last_error()); return 1; }
    char log[1024];
    snprintf(log, sizeof log, "%s/evallog/run.tmp", d);
    moa_longeval_params lp = fuzz_evallog_params(words, log);
    moa_eval_model m = fuzz_evallog_model(fake_count, fake_encode, fake_detok, fake_respond);
    TRY(moa_longeval_run(&lp, &m, NULL, NULL, &r));
    moa_longeval_results_free(r);
    moa_wordlist_free(words);
    free(prompt);
    if (copy_log(log, at(d, "evallog/full.jsonl"), -1, 0) < 0 || copy_log(log, at(d, "evallog/torn.jsonl"), 3, 40) < 0) {
        perror("evallog");
        return 1;
    }
    remove(log);
    return 0;
}
