/* test_files.c - moa-plan v1 and moa-profile v1: round trips, strict validation with
 * field-naming errors, uniform plans, profile accumulation and merge, plan from a solve. */
#include <math.h>
#include "test.h"
#include "moa/h5util.h"
#include "moa/common.h"
#include "moa/optimizer.h"
#include "plan-internal.h"
#include "span.h"

#define TMP(name) MOA_TEST_TMPDIR "/" name

static const char *good_plan =
    "{\"format\":\"moa-plan\",\"version\":1,"
    "\"model\":{\"arch\":\"llama\",\"n_layer\":2,\"n_head\":4,\"n_head_kv\":2,\"head_dim\":64,\"sha256\":\"\"},"
    "\"sink\":64,\"block\":64,\"granularity\":\"kv-head\","
    "\"layers\":[{\"units\":[{\"kind\":\"window\",\"alpha\":1024,\"beta\":0.25},{\"kind\":\"dense\"}]},"
    "{\"units\":[{\"kind\":\"window\",\"alpha\":-1024,\"beta\":0.5},{\"kind\":\"linear\"}]}],"
    "\"lengths\":{\"profiled\":[4096],\"constrained\":[4096],\"budgets\":[0.5],\"validation\":null},"
    "\"predicted\":[{\"length\":4096,\"loss\":0.1,\"density\":0.5}],"
    "\"provenance\":{\"profile_sha256\":\"\",\"calib_sha256\":\"\",\"tool_version\":\"0.1.0\","
    "\"solver\":\"glpk 5.0\",\"solver_status\":\"optimal\",\"gap\":0}}";

/* replace the first occurrence of `from` in good_plan by `to` and try to load it */
static moa_status load_variant(const char *from, const char *to) {
    char buf[4096];
    const char *p = strstr(good_plan, from);
    if (!p) { fprintf(stderr, "  (test bug: '%s' not in the plan)\n", from); return MOA_OK; }
    size_t pre = (size_t)(p - good_plan);
    snprintf(buf, sizeof buf, "%.*s%s%s", (int)pre, good_plan, to, p + strlen(from));
    moa_plan *pl = NULL;
    moa_status st = moa_plan_load_string(buf, "variant", &pl);
    moa_plan_free(pl);
    return st;
}

#define CHECK_REJECT(from, to, field)                                                        \
    do {                                                                                     \
        moa_status st_ = load_variant(from, to);                                             \
        CHECK_MSG(st_ == MOA_ERR_FORMAT, "'%s'->'%s' accepted", from, to);                   \
        CHECK_MSG(strstr(moa_last_error(), field) != NULL, "message '%s' lacks '%s'",         \
                  moa_last_error(), field);                                                  \
    } while (0)

TEST(plan_load_accessors) {
    moa_plan *p;
    CHECK_OK(moa_plan_load_string(good_plan, "good", &p));
    if (!p) return;
    CHECK_EQ_INT(moa_plan_n_layer(p), 2);
    CHECK_EQ_INT(moa_plan_n_units(p), 2);
    CHECK(moa_plan_unit_kind(p, 0, 1) == MOA_UNIT_DENSE);
    CHECK(moa_plan_unit_kind(p, 1, 1) == MOA_UNIT_LINEAR);
    /* W = min(N, round_up(1024 + 0.25*4096, 64)) = 2048 */
    CHECK_EQ_INT(moa_plan_unit_window(p, 0, 0, 4096), 2048);
    CHECK_EQ_INT(moa_plan_unit_window(p, 0, 1, 4096), 4096);
    CHECK_EQ_INT(moa_plan_unit_window(p, 1, 0, 4096), 1024);
    CHECK_EQ_INT(moa_plan_unit_window(p, 1, 1, 4096), 0);
    /* density at 4096: (2112 + 4096 + 1088 + 0) / 4096 / 4 */
    CHECK_NEAR(moa_plan_density(p, 4096), (2112.0 + 4096 + 1088 + 0) / 4096 / 4, 1e-12);
    CHECK_EQ_INT(moa_plan_n_constrained(p), 1);
    CHECK_EQ_INT(moa_plan_constrained_length(p, 0), 4096);
    CHECK(moa_plan_budget(p, 0) == 0.5);
    CHECK_EQ_INT(moa_plan_validation_length(p), 0);
    CHECK_STR(moa_plan_profile_sha256(p), "");
    CHECK_STR(moa_plan_calib_sha256(p), "");
    CHECK_OK(moa_plan_check(p, 2, 4, 2, 64));
    CHECK(moa_plan_check(p, 2, 4, 4, 64) == MOA_ERR_MISMATCH);
    CHECK(strstr(moa_last_error(), "n_head_kv: plan has 2, model has 4") != NULL);
    CHECK(moa_plan_check(p, 3, 4, 2, 128) == MOA_ERR_MISMATCH);
    CHECK(strstr(moa_last_error(), "n_layer") && strstr(moa_last_error(), "head_dim"));
    moa_plan_free(p);
}

TEST(plan_round_trip) {
    moa_plan *p, *q;
    CHECK_OK(moa_plan_load_string(good_plan, "good", &p));
    CHECK_OK(moa_plan_save(p, TMP("plan.json")));
    CHECK_OK(moa_plan_load(TMP("plan.json"), &q));
    if (p && q) {
        char *a, *b;
        CHECK_OK(moa_plan_to_string(p, &a));
        CHECK_OK(moa_plan_to_string(q, &b));
        CHECK_STR(a, b);
        free(a);
        free(b);
        for (int l = 0; l < 2; l++)
            for (int u = 0; u < 2; u++) {
                CHECK(moa_plan_unit_kind(p, l, u) == moa_plan_unit_kind(q, l, u));
                CHECK(moa_plan_unit_alpha(p, l, u) == moa_plan_unit_alpha(q, l, u));
                CHECK(moa_plan_unit_beta(p, l, u) == moa_plan_unit_beta(q, l, u));
            }
    }
    moa_plan_free(p);
    moa_plan_free(q);
    remove(TMP("plan.json"));
}

TEST(plan_strictness) {
    CHECK_REJECT("\"version\":1", "\"version\":2", "version");
    CHECK_REJECT("\"moa-plan\"", "\"moa-plan-x\"", "format");
    CHECK_REJECT("\"n_layer\":2", "\"n_layer\":3", "layers");
    CHECK_REJECT("\"n_head_kv\":2", "\"n_head_kv\":3", "n_head_kv");
    CHECK_REJECT("{\"kind\":\"dense\"}]}", "{\"kind\":\"dense\"},{\"kind\":\"dense\"}]}", "layers[0].units");
    CHECK_REJECT("\"alpha\":-1024", "\"alpha\":-4096", "layers[1].units[0]");
    CHECK_REJECT("\"beta\":0.25", "\"beta\":-0.25", "layers[0].units[0].beta");
    CHECK_REJECT("\"beta\":0.25", "\"beta\":\"NaN\"", "layers[0].units[0].beta");
    CHECK_REJECT("\"alpha\":1024", "\"alpha\":null", "layers[0].units[0].alpha");
    CHECK_REJECT("\"kind\":\"dense\"", "\"kind\":\"sparse\"", "layers[0].units[1].kind");
    CHECK_REJECT("\"density\":0.5", "\"density\":1.5", "predicted[0].density");
    CHECK_REJECT("\"budgets\":[0.5]", "\"budgets\":[1.2]", "budgets[0]");
    CHECK_REJECT("\"granularity\":\"kv-head\"", "\"granularity\":\"q-head\"", "units");
    CHECK_REJECT("\"sink\":64", "\"sink\":-1", "sink");
    CHECK_REJECT("\"sink\":64", "\"sinks\":64", "sink");
    CHECK_REJECT("\"loss\":0.1", "\"loss\":\"NaN\"", "predicted[0].loss");   /* negative is fine: --signed */
    CHECK_REJECT("\"sha256\":\"\"", "\"sha256\":\"xyz\"", "sha256");
    CHECK_REJECT("{\"format\"", "[{\"format\"", "JSON");
    /* issue 16 case 6: no lengths named, alpha -1e300 + beta N is never positive in practice:
     * with no named length the plan may run at any N >= 1, so the span must be positive at 1 */
    {
        char buf[4096];
        const char *from = "\"lengths\":{\"profiled\":[4096],\"constrained\":[4096],\"budgets\":[0.5],\"validation\":null}";
        const char *p0 = strstr(good_plan, from), *q0 = strstr(good_plan, "\"predicted\":[");
        CHECK(p0 != NULL && q0 != NULL);
        if (p0 && q0) {
            snprintf(buf, sizeof buf, "%.*s\"lengths\":{\"profiled\":[],\"constrained\":[],\"budgets\":[],"
                     "\"validation\":null},\"predicted\":[],%s", (int)(p0 - good_plan), good_plan,
                     strstr(good_plan, "\"provenance\""));
            char *a = strstr(buf, "\"alpha\":-1024");
            CHECK(a != NULL);
            if (a) {
                char buf2[4096];
                const char *alphas[3] = {"64", "-1e300", "-1024"};   /* span at N=1: 64.5, -1e300, -1023.5 */
                for (int k = 0; k < 3; k++) {
                    snprintf(buf2, sizeof buf2, "%.*s\"alpha\":%s%s", (int)(a - buf), buf, alphas[k],
                             a + strlen("\"alpha\":-1024"));
                    moa_plan *pl = NULL;
                    moa_status st = moa_plan_load_string(buf2, "nolen", &pl);
                    if (k == 0) CHECK_MSG(st == MOA_OK, "a plan without lengths, spans > 0: %s", moa_last_error());
                    else {
                        CHECK_MSG(st == MOA_ERR_FORMAT, "alpha %s with no lengths accepted (%d)", alphas[k], st);
                        CHECK_MSG(strstr(moa_last_error(), "layers[1].units[0]") && strstr(moa_last_error(), "N=1"),
                                  "message: %s", moa_last_error());
                    }
                    moa_plan_free(pl);
                }
            }
        }
    }
    moa_plan *p;
    CHECK(moa_plan_load(TMP("no-such-plan.json"), &p) < 0);
}

/* The optional validation summary: round trip, absent by default, strict fields. */
static const char *val_json =
    ",\"validation\":{\"task\":\"needle\",\"seed\":2,\"samples\":20,"
    "\"calibration\":{\"tasks\":\"longdep,lines\",\"seed\":1},"
    "\"accuracy\":[{\"length\":512,\"dense\":1,\"uniform\":0.5,\"plan\":0.95},"
    "{\"length\":2048,\"dense\":0.8,\"uniform\":null,\"plan\":0.75}],"
    "\"heldout_loss\":{\"length\":4096,\"samples\":4,\"dense\":0.61,\"uniform\":0.82,\"plan\":0.79}}}";

static moa_status load_with_validation(const char *from, const char *to, moa_plan **out) {
    char v[1024], buf[8192];
    const char *p = strstr(val_json, from);
    if (!p) { fprintf(stderr, "  (test bug: '%s' not in the summary)\n", from); return MOA_OK; }
    snprintf(v, sizeof v, "%.*s%s%s", (int)(p - val_json), val_json, to, p + strlen(from));
    size_t n = strlen(good_plan);   /* good_plan ends with "}}": the summary goes before the last '}' */
    snprintf(buf, sizeof buf, "%.*s%s", (int)(n - 1), good_plan, v);
    moa_plan *pl = NULL;
    moa_status st = moa_plan_load_string(buf, "val", &pl);
    if (out) *out = pl; else moa_plan_free(pl);
    return st;
}

TEST(plan_validation_summary) {
    moa_plan *p = NULL, *q = NULL;
    moa_plan_validation v;
    CHECK_OK(moa_plan_load_string(good_plan, "good", &p));
    if (p) CHECK_EQ_INT(moa_plan_get_validation(p, &v), 0);
    moa_plan_free(p);
    CHECK_OK(load_with_validation("\"seed\":2", "\"seed\":2", &p));
    if (!p) return;
    CHECK_EQ_INT(moa_plan_get_validation(p, &v), 1);
    CHECK_STR(v.task, "needle");
    CHECK_STR(v.calib_tasks, "longdep,lines");
    CHECK_EQ_INT(v.samples, 20);
    CHECK_EQ_INT(v.n_lengths, 2);
    CHECK_EQ_INT(v.length[1], 2048);
    CHECK(v.dense[0] == 1 && v.plan[0] == 0.95 && isnan(v.uniform[1]));
    CHECK_EQ_INT(v.heldout_length, 4096);
    CHECK(v.heldout_uniform == 0.82);
    /* round trip through a file, byte-identical text */
    CHECK_OK(moa_plan_save(p, TMP("plan-val.json")));
    CHECK_OK(moa_plan_load(TMP("plan-val.json"), &q));
    if (q) {
        char *a, *b;
        CHECK_OK(moa_plan_to_string(p, &a));
        CHECK_OK(moa_plan_to_string(q, &b));
        CHECK_STR(a, b);
        CHECK(strstr(a, "\"heldout_loss\"") && strstr(a, "\"uniform\": null"));
        free(a);
        free(b);
    }
    /* set: checked, copied; NULL removes it */
    v.plan[0] = 1.5;
    CHECK(moa_plan_set_validation(p, &v) == MOA_ERR_INVALID_ARG);
    CHECK(strstr(moa_last_error(), "validation.accuracy[0].plan") != NULL);
    v.plan[0] = 0.9;
    v.heldout_length = 0;
    CHECK_OK(moa_plan_set_validation(p, &v));
    moa_plan_validation w;
    CHECK(moa_plan_get_validation(p, &w) == 1 && w.plan[0] == 0.9 && w.heldout_length == 0);
    char *s = NULL;
    CHECK_OK(moa_plan_to_string(p, &s));
    CHECK(s && strstr(s, "\"heldout_loss\": null"));
    free(s);
    CHECK_OK(moa_plan_set_validation(p, NULL));
    CHECK_EQ_INT(moa_plan_get_validation(p, NULL), 0);
    moa_plan_free(p);
    moa_plan_free(q);
    remove(TMP("plan-val.json"));
    /* strictness: each field named */
    struct { const char *from, *to, *field; } bad[] = {
        {"\"dense\":1,", "\"dense\":1.01,", "validation.accuracy[0].dense"},
        {"\"plan\":0.75", "\"plan\":-0.1", "validation.accuracy[1].plan"},
        {"\"length\":512", "\"length\":0", "validation.accuracy[0].length"},
        {"\"task\":\"needle\"", "\"task\":\"\"", "validation.task"},
        {"\"seed\":2", "\"seed\":-2", "validation.seed"},
        {"\"samples\":20", "\"samples\":\"20\"", "validation.samples"},
        {"\"tasks\":", "\"task\":", "validation.calibration"},
        {"\"dense\":0.61", "\"dense\":-1", "validation.heldout_loss"},
        {"\"samples\":4", "\"samples\":0", "validation.heldout_loss.samples"},
        {"\"uniform\":0.5,", "", "validation.accuracy[0].uniform"},
        {",\"heldout_loss\"", ",\"extra\":1,\"heldout_loss\"", "validation"},
        {"\"accuracy\":[", "\"accuracy\":[7,", "validation.accuracy[0]"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        moa_status st = load_with_validation(bad[i].from, bad[i].to, NULL);
        CHECK_MSG(st == MOA_ERR_FORMAT, "'%s'->'%s' accepted (%d)", bad[i].from, bad[i].to, st);
        CHECK_MSG(strstr(moa_last_error(), bad[i].field) != NULL, "message '%s' lacks '%s'", moa_last_error(),
                  bad[i].field);
    }
    /* null is the same as absent */
    char buf[4096];
    snprintf(buf, sizeof buf, "%.*s,\"validation\":null}", (int)(strlen(good_plan) - 1), good_plan);
    CHECK_OK(moa_plan_load_string(buf, "null", &p));
    if (p) CHECK_EQ_INT(moa_plan_get_validation(p, NULL), 0);
    moa_plan_free(p);
}

/* moa_plan_sha256: the sha256 of the saved file's bytes (moa_sha256_file, independent of the
 * serialiser), with and without the validation summary; different plans, different sums. */
TEST(plan_sha256) {
    moa_plan *p = NULL, *q = NULL;
    CHECK_OK(load_with_validation("\"seed\":2", "\"seed\":2", &p));
    if (!p) return;
    char file[65], mem[65], bare[65], bare_file[65], other[65];
    CHECK_OK(moa_plan_save(p, TMP("plan-sha.json")));
    CHECK_OK(moa_sha256_file(TMP("plan-sha.json"), file));
    CHECK_OK(moa_plan_load(TMP("plan-sha.json"), &q));
    if (!q) { moa_plan_free(p); return; }
    CHECK_OK(moa_plan_sha256(q, 0, mem));
    CHECK_STR(mem, file);
    CHECK_OK(moa_plan_sha256(p, 0, mem));   /* the plan that was saved */
    CHECK_STR(mem, file);
    CHECK_EQ_INT((int)strlen(mem), 64);
    /* without the summary: the file saved after removing it; q keeps its summary */
    CHECK_OK(moa_plan_sha256(q, 1, bare));
    CHECK(strcmp(bare, file) != 0);
    CHECK_EQ_INT(moa_plan_get_validation(q, NULL), 1);
    CHECK_OK(moa_plan_set_validation(q, NULL));
    CHECK_OK(moa_plan_save(q, TMP("plan-sha.json")));
    CHECK_OK(moa_sha256_file(TMP("plan-sha.json"), bare_file));
    CHECK_STR(bare, bare_file);
    CHECK_OK(moa_plan_sha256(q, 0, mem));   /* a plan without a summary: both the same */
    CHECK_STR(mem, bare_file);
    CHECK_OK(moa_plan_sha256(q, 1, mem));
    CHECK_STR(mem, bare_file);
    /* the summary's plan is good_plan with a summary: removed, the same bytes */
    moa_plan *g = NULL;
    CHECK_OK(moa_plan_load_string(good_plan, "good", &g));
    if (g) {
        CHECK_OK(moa_plan_sha256(g, 0, other));
        CHECK_STR(other, bare_file);
    }
    moa_plan_free(g);
    /* another plan: another sum */
    g = NULL;
    CHECK_OK(moa_plan_uniform(2, 4, 2, 64, 64, 64, 0.5, 4096, &g));
    if (g) {
        CHECK_OK(moa_plan_sha256(g, 0, other));
        CHECK(strcmp(other, bare_file) != 0 && strcmp(other, file) != 0);
    }
    CHECK_EQ_INT(moa_plan_sha256(NULL, 0, other), MOA_ERR_INVALID_ARG);
    moa_plan_free(g);
    moa_plan_free(p);
    moa_plan_free(q);
    remove(TMP("plan-sha.json"));
}

TEST(uniform_plan) {
    moa_plan *p;
    /* D=0.25 at N=8192: sink 64 + W <= 2048 -> W = 1984 (multiple of 64) */
    CHECK_OK(moa_plan_uniform(4, 8, 2, 64, 64, 64, 0.25, 8192, &p));
    if (p) {
        CHECK_EQ_INT(moa_plan_unit_window(p, 3, 1, 8192), 1984);
        CHECK_NEAR(moa_plan_density(p, 8192), 2048.0 / 8192, 1e-12);
        CHECK(moa_plan_density(p, 8192) <= 0.25);
        moa_plan_free(p);
    }
    CHECK(moa_plan_uniform(4, 8, 2, 64, 64, 64, 0.01, 4096, &p) == MOA_ERR_INFEASIBLE);
    CHECK(strstr(moa_last_error(), "smallest feasible density") != NULL);
}

/* ---- profiles ---------------------------------------------------------------------------- */

static moa_profile *small_profile(void) {
    moa_synth_params sp = moa_synth_default_params();
    sp.n_layer = 2; sp.n_head = 4; sp.n_head_kv = 2;
    sp.n_lengths = 2; sp.lengths[0] = 1024; sp.lengths[1] = 2048;
    moa_profile *p = NULL;
    moa_synth_profile(&sp, &p, NULL);
    return p;
}

TEST(profile_round_trip) {
    moa_profile *p = small_profile(), *q = NULL;
    CHECK(p != NULL);
    if (!p) return;
    snprintf(p->model_sha256, sizeof p->model_sha256, "%064d", 0);
    CHECK_OK(moa_profile_save(p, TMP("profile.h5")));
    CHECK_OK(moa_profile_load(TMP("profile.h5"), &q));
    if (q) {
        CHECK_EQ_INT(q->n_buckets, 2);
        CHECK_EQ_INT(q->buckets[1].length, 2048);
        CHECK_EQ_INT(q->buckets[1].n_bins, 32);
        CHECK_STR(q->model_sha256, p->model_sha256);
        size_t n = (size_t)2 * 4 * 32;
        CHECK(memcmp(q->buckets[1].influence_abs, p->buckets[1].influence_abs, n * sizeof(double)) == 0);
        CHECK(memcmp(q->buckets[1].influence_signed, p->buckets[1].influence_signed, n * sizeof(double)) == 0);
    }
    moa_profile_free(q);
    moa_profile_free(p);
}

/* Rewrite one attribute/dataset of a saved profile and check the load error names it. */
static void corrupt_and_check(const char *what, void (*mutate)(hid_t f), const char *field) {
    moa_profile *p = small_profile();
    CHECK_OK(moa_profile_save(p, TMP("bad.h5")));
    moa_profile_free(p);
    hid_t f = H5Fopen(TMP("bad.h5"), H5F_ACC_RDWR, H5P_DEFAULT);
    mutate(f);
    H5Fclose(f);
    moa_profile *q = NULL;
    moa_status st = moa_profile_load(TMP("bad.h5"), &q);
    CHECK_MSG(st == MOA_ERR_FORMAT, "%s: accepted (status %d)", what, st);
    CHECK_MSG(strstr(moa_last_error(), field) != NULL, "%s: message '%s' lacks '%s'", what, moa_last_error(), field);
    moa_profile_free(q);
    remove(TMP("bad.h5"));
}

static void m_version(hid_t f) { moa_h5_attr_write_i64(f, "version", 2); }
static void m_format(hid_t f) { moa_h5_attr_write_str(f, "format", "moa-calib"); }
static void m_no_block(hid_t f) { H5Adelete(f, "block"); }
static void m_nsamples(hid_t f) {
    hid_t g = H5Gopen2(f, "bucket_1024", H5P_DEFAULT);
    moa_h5_attr_write_i64(g, "n_samples", -3);
    H5Gclose(g);
}
static void m_shape(hid_t f) {
    hid_t g = H5Gopen2(f, "bucket_2048", H5P_DEFAULT);
    H5Ldelete(g, "influence_abs", H5P_DEFAULT);
    double z[2 * 4 * 31] = {0};
    hsize_t d[3] = {2, 4, 31};
    moa_h5_write_dataset(g, "influence_abs", H5T_NATIVE_DOUBLE, 3, d, z);
    H5Gclose(g);
}
static void m_nan(hid_t f) {
    hid_t g = H5Gopen2(f, "bucket_1024", H5P_DEFAULT);
    H5Ldelete(g, "influence_signed", H5P_DEFAULT);
    double z[2 * 4 * 16] = {0};
    z[5] = NAN;
    hsize_t d[3] = {2, 4, 16};
    moa_h5_write_dataset(g, "influence_signed", H5T_NATIVE_DOUBLE, 3, d, z);
    H5Gclose(g);
}
static void m_negative(hid_t f) {
    hid_t g = H5Gopen2(f, "bucket_1024", H5P_DEFAULT);
    H5Ldelete(g, "influence_abs", H5P_DEFAULT);
    double z[2 * 4 * 16] = {0};
    z[17] = -1;
    hsize_t d[3] = {2, 4, 16};
    moa_h5_write_dataset(g, "influence_abs", H5T_NATIVE_DOUBLE, 3, d, z);
    H5Gclose(g);
}
static void m_stray(hid_t f) {
    hid_t g = H5Gcreate2(f, "extra", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    H5Gclose(g);
}
static void m_kv(hid_t f) { moa_h5_attr_write_i64(f, "n_head_kv", 3); }
/* issue 16 case 2: each value finite, their sum over a head is not */
static void m_sum_overflow(hid_t f) {
    hid_t g = H5Gopen2(f, "bucket_1024", H5P_DEFAULT);
    H5Ldelete(g, "influence_abs", H5P_DEFAULT);
    double z[2 * 4 * 16] = {0};
    z[16 + 3] = 1e308;
    z[16 + 9] = 1e308;
    hsize_t d[3] = {2, 4, 16};
    moa_h5_write_dataset(g, "influence_abs", H5T_NATIVE_DOUBLE, 3, d, z);
    H5Gclose(g);
}

/* found by fuzz_profile_inproc (UBSan): a bucket of length INT64_MAX overflowed
 * length + block - 1 in the bin count; it is now refused without undefined behaviour
 * (the unit tests run under UBSan with -fno-sanitize-recover, scripts/test.sh) */
TEST(profile_huge_length) {
    moa_profile *p = small_profile();
    CHECK_OK(moa_profile_save(p, TMP("huge.h5")));
    moa_profile_free(p);
    hid_t f = H5Fopen(TMP("huge.h5"), H5F_ACC_RDWR, H5P_DEFAULT);
    CHECK(H5Lmove(f, "bucket_2048", f, "bucket_9223372036854775807", H5P_DEFAULT, H5P_DEFAULT) >= 0);
    hid_t g = H5Gopen2(f, "bucket_9223372036854775807", H5P_DEFAULT);
    CHECK_OK(moa_h5_attr_write_i64(g, "length", INT64_MAX));
    H5Gclose(g);
    H5Fclose(f);
    moa_profile *q = NULL;
    moa_status st = moa_profile_load_unguarded(TMP("huge.h5"), &q);
    CHECK_MSG(st < 0 && q == NULL, "accepted (status %d)", st);
    CHECK_MSG(strstr(moa_last_error(), "9223372036854775807") != NULL, "message '%s'", moa_last_error());
    moa_profile_free(q);
    remove(TMP("huge.h5"));
}

TEST(profile_malformed) {
    corrupt_and_check("version", m_version, "'version'");
    corrupt_and_check("format", m_format, "'format'");
    corrupt_and_check("missing block", m_no_block, "'block'");
    corrupt_and_check("negative n_samples", m_nsamples, "n_samples");
    corrupt_and_check("wrong shape", m_shape, "influence_abs");
    corrupt_and_check("NaN", m_nan, "influence_signed[0][0][5]");
    corrupt_and_check("negative abs", m_negative, "influence_abs[0][1][1]");
    corrupt_and_check("stray group", m_stray, "'extra'");
    corrupt_and_check("n_head_kv", m_kv, "n_head_kv");
    corrupt_and_check("sum overflow", m_sum_overflow, "bucket_1024/influence_abs[0][1]");
    moa_profile *q;
    CHECK(moa_profile_load(TMP("does-not-exist.h5"), &q) == MOA_ERR_IO);
}

TEST(profile_accumulate_merge) {
    int64_t lens[1] = {256};
    moa_profile *a, *b;
    CHECK_OK(moa_profile_create(1, 2, 1, 8, 64, 64, lens, 1, &a));
    CHECK_OK(moa_profile_create(1, 2, 1, 8, 64, 64, lens, 1, &b));
    double x1[8] = {1, 2, 3, 4, 5, 6, 7, 8}, x2[8] = {3, 2, 1, 0, 1, 2, 3, 4}, x3[8] = {2, 2, 2, 2, 2, 2, 2, 2};
    CHECK_OK(moa_profile_add_sample(a, 0, x1, x1, NULL, 256));
    CHECK_OK(moa_profile_add_sample(a, 0, x2, x2, NULL, 200));
    CHECK_OK(moa_profile_add_sample(b, 0, x3, x3, NULL, 100));
    /* a: mean of x1, x2 = 2; merged with b (weight 2:1): (2*2 + 2)/3 = 2 at bin 0 */
    CHECK_NEAR(a->buckets[0].influence_abs[0], 2, 1e-12);
    CHECK_OK(moa_profile_merge(a, b));
    CHECK_NEAR(a->buckets[0].influence_abs[0], (1 + 3 + 2) / 3.0, 1e-12);
    CHECK_NEAR(a->buckets[0].influence_abs[7], (8 + 4 + 2) / 3.0, 1e-12);
    CHECK_EQ_INT(a->buckets[0].n_samples, 3);
    CHECK_EQ_INT(a->buckets[0].n_tokens, 556);
    b->block = 32;
    CHECK(moa_profile_merge(a, b) == MOA_ERR_MISMATCH);
    CHECK(strstr(moa_last_error(), "block") != NULL);
    moa_profile_free(a);
    moa_profile_free(b);
}

/* issue 16 case 2: shard identity. A shard merged twice, or shards of different calibration
 * files, are refused; disjoint shards merge, and the provenance survives a save/load. */
TEST(profile_merge_shard_identity) {
    int64_t lens[1] = {256};
    char c1[65], c2[65];
    snprintf(c1, sizeof c1, "%064d", 1);
    snprintf(c2, sizeof c2, "%064d", 2);
    moa_profile *a, *b, *c, *d;
    CHECK_OK(moa_profile_create(1, 2, 1, 8, 64, 64, lens, 1, &a));
    CHECK_OK(moa_profile_create(1, 2, 1, 8, 64, 64, lens, 1, &b));
    CHECK_OK(moa_profile_create(1, 2, 1, 8, 64, 64, lens, 1, &c));
    CHECK_OK(moa_profile_create(1, 2, 1, 8, 64, 64, lens, 1, &d));
    if (!a || !b || !c || !d) return;
    double x[8] = {1, 2, 3, 4, 5, 6, 7, 8};
    moa_profile *all[4] = {a, b, c, d};
    for (int i = 0; i < 4; i++) CHECK_OK(moa_profile_add_sample(all[i], 0, x, x, NULL, 256));
    CHECK_OK(moa_profile_set_source(a, c1, 0, 3));
    CHECK_OK(moa_profile_set_source(b, c1, 0, 3));   /* the same shard again */
    CHECK_OK(moa_profile_set_source(c, c1, 2, 3));
    CHECK_OK(moa_profile_set_source(d, c2, 1, 3));   /* another calibration file */
    CHECK(moa_profile_merge(a, b) == MOA_ERR_MISMATCH);
    CHECK_MSG(strstr(moa_last_error(), "shard 0/3"), "message: %s", moa_last_error());
    CHECK_EQ_INT(a->buckets[0].n_samples, 1);
    CHECK(moa_profile_merge(a, d) == MOA_ERR_MISMATCH);
    CHECK_MSG(strstr(moa_last_error(), "calib_sha256"), "message: %s", moa_last_error());
    CHECK_OK(moa_profile_merge(a, c));
    CHECK_EQ_INT(a->buckets[0].n_samples, 2);
    CHECK(moa_profile_merge(a, c) == MOA_ERR_MISMATCH);   /* shard 2 is in now */
    CHECK_OK(moa_profile_save(a, TMP("shards.h5")));
    moa_profile *q = NULL;
    CHECK_OK(moa_profile_load(TMP("shards.h5"), &q));
    if (q) {
        CHECK_STR(q->calib_sha256, c1);
        CHECK_EQ_INT(q->shard_count, 3);
        CHECK(q->shard_set[0] == 1 && q->shard_set[1] == 0 && q->shard_set[2] == 1);
    }
    moa_profile_free(q);
    remove(TMP("shards.h5"));
    for (int i = 0; i < 4; i++) moa_profile_free(all[i]);
}

/* a plan built from a solve: densities agree with the MILP's, round trip works */
TEST(plan_from_solution) {
    moa_synth_params sp = moa_synth_default_params();
    moa_profile *prof;
    CHECK_OK(moa_synth_profile(&sp, &prof, NULL));
    moa_opt_params par = moa_opt_default_params();
    par.density = 0.4;
    par.validation = 8192;
    par.grid = 2;
    par.mip_gap = 1e-2;
    par.time_limit = 5;
    moa_opt_problem *pb;
    CHECK_OK(moa_opt_problem_from_profile(prof, &par, &pb));
    moa_opt_front fr;
    CHECK_OK(moa_opt_pareto(pb, &par, &fr));
    moa_plan *plan = NULL, *back = NULL;
    CHECK_OK(moa_opt_make_plan(pb, prof, &par, &fr.points[fr.selected], NULL, &plan));
    if (plan) {
        for (int k = 0; k < pb->n_con; k++) {
            CHECK_NEAR(moa_plan_density(plan, pb->con_len[k]), fr.points[fr.selected].density[k], 1e-12);
            CHECK(moa_plan_density(plan, pb->con_len[k]) <= 0.4 + 1e-9);
        }
        CHECK_OK(moa_plan_save(plan, TMP("opt-plan.json")));
        CHECK_OK(moa_plan_load(TMP("opt-plan.json"), &back));
        if (back) CHECK_NEAR(moa_plan_density(back, 8192), moa_plan_density(plan, 8192), 1e-12);
        CHECK_OK(moa_opt_front_write_csv(pb, &fr, TMP("front.csv")));
        CHECK_OK(moa_opt_front_write_svg(pb, &fr, TMP("front.svg")));
        char *csv = NULL;
        size_t len;
        CHECK_OK(moa_read_file(TMP("front.csv"), &csv, &len));
        CHECK(csv && strstr(csv, "loss_8192_validation") != NULL);
        free(csv);
    }
    moa_plan_free(plan);
    moa_plan_free(back);
    moa_opt_front_clear(&fr);
    moa_opt_problem_free(pb);
    moa_profile_free(prof);
    remove(TMP("opt-plan.json"));
}

/* Objectives 4096 and 8192 only, budgets at 2048 too: a rule whose window is not positive
 * at 2048 (-1024 + 0.375*2048 = -256) must not be a candidate, or the plan could not be
 * written (every window must be positive at every length the plan names). */
TEST(rules_positive_at_every_planned_length) {
    moa_synth_params sp = moa_synth_default_params();
    moa_profile *prof;
    CHECK_OK(moa_synth_profile(&sp, &prof, NULL));
    moa_opt_params par = moa_opt_default_params();
    par.density = 0.3;
    par.n_objective = 2;
    par.objective[0] = 4096;
    par.objective[1] = 8192;
    par.grid = 2;
    par.mip_gap = 1e-2;
    par.time_limit = 5;
    moa_rule rules[] = {{-1024, 0.375}, {128, 0}, {0, 0.125}, {-256, 1}, {64, 0.25}};
    par.rules = rules;
    par.n_rules = 5;
    moa_opt_problem *pb = NULL;
    CHECK_OK(moa_opt_problem_from_profile(prof, &par, &pb));
    if (pb) {
        CHECK_EQ_INT(pb->n_rules, 4);
        for (int r = 0; r < pb->n_rules; r++) CHECK(pb->rules[r].alpha + pb->rules[r].beta * 2048 > 0);
        moa_opt_front fr;
        CHECK_OK(moa_opt_pareto(pb, &par, &fr));
        moa_plan *plan = NULL;
        CHECK_OK(moa_opt_make_plan(pb, prof, &par, &fr.points[fr.selected], NULL, &plan));
        CHECK(plan != NULL);
        moa_plan_free(plan);
        moa_opt_front_clear(&fr);
    }
    moa_opt_problem_free(pb);
    moa_profile_free(prof);
}

int main(void) {
    moa_h5_init();
    moa_opt_init();
    RUN(plan_load_accessors);
    RUN(plan_round_trip);
    RUN(plan_strictness);
    RUN(plan_validation_summary);
    RUN(plan_sha256);
    RUN(uniform_plan);
    RUN(rules_positive_at_every_planned_length);
    RUN(profile_round_trip);
    RUN(profile_huge_length);
    RUN(profile_malformed);
    RUN(profile_accumulate_merge);
    RUN(profile_merge_shard_identity);
    RUN(plan_from_solution);
    return test_summary();
}
