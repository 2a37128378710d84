/* make_seeds.c - writes the fuzzers' seed corpora (small valid files of each kind) into
 * tests/fuzz/corpus/<kind>/: one profile (1 layer, 2 heads, one 128-token bucket, with
 * calibration and shard provenance), one calibration file (one 40-token sample), one LongEval
 * results file (two rows) and two plans. Usage: make_seeds CORPUS_DIR (see docs/fuzzing.md). */
#include "calib.h"
#include "eval.h"
#include "moa-common.h"
#include "profile-file.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static char buf[1024];
static const char *at(const char *dir, const char *name) { snprintf(buf, sizeof buf, "%s/%s", dir, name); return buf; }

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
    moa_calib_file f;
    memset(&f, 0, sizeof f);
    moa_calib_sample cs;
    memset(&cs, 0, sizeof cs);
    int32_t tok[40];
    for (int i = 0; i < 40; i++) tok[i] = 100 + 7 * i;
    cs.tokens = tok; cs.n_tokens = 40; cs.prompt_len = 30; cs.response_start = 30; cs.response_end = 38;
    cs.bucket = 64; cs.task = (char *)"lines"; cs.seed = 5; cs.expected = (char *)"12345";
    cs.params = (char *)"{\"n_lines\":3}"; cs.dense_correct = 1; cs.dense_score = 1;
    f.model_sha256 = (char *)""; f.tokenizer = (char *)"smollm"; f.chat_template = (char *)"{{x}}";
    f.tool_version = (char *)"seed"; f.build_params = (char *)"{\"seed\":1}"; f.n_samples = 1; f.samples = &cs;
    TRY(moa_calib_write(at(d, "calib/tiny.h5"), &f));
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
    return 0;
}
