/* test_cli.c - the `moa` command as a user meets it: every subcommand on good and bad input,
 * checking the exit code (0 ok, 1 failure, 2 usage), a message that names the problem, and
 * that a failed command leaves no file behind (the scratch directory is listed before and
 * after each failing command and must not change).
 *
 *   test_cli          label unit: no model (synthetic profiles, plans and calibration files,
 *                     files that are not models, flag errors of every subcommand)
 *   test_cli model    label model: needs MOA_MODEL (skips with 77 otherwise): the checks
 *                     that need the real model (token ids against its vocabulary, compress's
 *                     settings against its context, a failing LongEval run)
 * Hostile files are made here from the libraries' own writers, then broken on purpose; the
 * committed corpus of tests/cli/hostile (make_hostile.c) is run too: every file refused, those
 * that crash libhdf5 itself (crash-*.h5) included. */
#include "moa/calib.h"
#include "moa/h5util.h"
#include "moa/common.h"
#include "moa/optimizer.h"
#include "moa/profile-file.h"
#include "test.h"
#include "test-proc.h"
#include "tiny-calib.h"

#include <dirent.h>
#include <fcntl.h>
#include <stdarg.h>
#include <sys/stat.h>
#include <unistd.h>

static char dir[512];          /* scratch directory, emptied at start */
static char output[1 << 16];   /* stdout + stderr of the last command */
static const char *model;      /* MOA_MODEL (model tests) */

static void path(char *buf, const char *name) { snprintf(buf, 600, "%s/%s", dir, name); }

/* Sorted listing of the scratch directory (names joined by '\n'), malloc'd. */
static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }
static char *listing(void) {
    DIR *d = opendir(dir);
    char *names[512];
    int n = 0;
    struct dirent *e;
    while (d && (e = readdir(d)) && n < 512)
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..") && strcmp(e->d_name, "out.txt")) names[n++] = strdup(e->d_name);
    if (d) closedir(d);
    qsort(names, (size_t)n, sizeof *names, cmp_str);
    size_t len = 1;
    for (int i = 0; i < n; i++) len += strlen(names[i]) + 1;
    char *s = calloc(1, len);
    for (int i = 0; i < n; i++) { strcat(s, names[i]); strcat(s, "\n"); free(names[i]); }
    return s;
}

/* Runs `moa args...` (NULL-terminated) with stdout and stderr in `output`; returns the exit
 * code (128 + signal when killed). env_model: 0 = MOA_MODEL unset in the child. */
static int run_argv(const char *const *args, int env_model) {
    char out_path[600];
    path(out_path, "out.txt");
    pid_t pid = fork();
    if (pid == 0) {
        int fd = open(out_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (fd >= 0) { dup2(fd, 1); dup2(fd, 2); }
        if (!env_model) unsetenv("MOA_MODEL");
        const char *argv[64];
        int n = 0;
        argv[n++] = MOA_BIN;
        for (; args[n - 1] && n < 63; n++) argv[n] = args[n - 1];
        argv[n] = NULL;
        execv(MOA_BIN, (char *const *)argv);
        _exit(127);
    }
    int rc = test_wait_exit(pid);
    char *text = NULL;
    size_t len = 0;
    output[0] = '\0';
    if (moa_read_file(out_path, &text, &len) >= 0) {
        snprintf(output, sizeof output, "%s", text);
        free(text);
    }
    remove(out_path);
    return rc;
}

/* expect(rc, "needle", args...): exit code rc, `needle` in the output (NULL: any), and for a
 * failing command (rc != 0) the scratch directory unchanged. */
static void expect_(const char *file, int line, int want, const char *needle, int env_model, ...) {
    const char *args[64];
    int n = 0;
    va_list ap;
    va_start(ap, env_model);
    while (n < 63 && (args[n] = va_arg(ap, const char *))) n++;
    va_end(ap);
    args[n] = NULL;
    char cmd[1024] = "moa";
    for (int i = 0; i < n; i++) {
        strncat(cmd, " ", sizeof cmd - strlen(cmd) - 1);
        strncat(cmd, args[i], sizeof cmd - strlen(cmd) - 1);
    }
    char *before = listing();
    int rc = run_argv(args, env_model);
    char *after = listing();
    if (rc != want) TEST_FAIL_("%s:%d: `%s`: exit %d, expected %d; output:\n%s", file, line, cmd, rc, want, output);
    else if (needle && !strstr(output, needle))
        TEST_FAIL_("%s:%d: `%s`: output lacks \"%s\":\n%s", file, line, cmd, needle, output);
    if (want != 0 && strcmp(before, after) != 0)
        TEST_FAIL_("%s:%d: `%s` failed but changed the directory:\nbefore:\n%safter:\n%s", file, line, cmd, before, after);
    if (strstr(output, "HDF5-DIAG")) TEST_FAIL_("%s:%d: `%s` printed raw HDF5 diagnostics", file, line, cmd);
    free(before);
    free(after);
}
#define EXPECT(rc, needle, ...) expect_(__FILE__, __LINE__, rc, needle, 0, __VA_ARGS__, (const char *)NULL)
/* plan check against explicit dimensions (1 layer, 2 heads, 1 KV head, head_dim 64) */
#define DIMS "--n-layer", "1", "--n-head", "2", "--n-head-kv", "1", "--head-dim", "64"
#define EXPECT_M(rc, needle, ...) expect_(__FILE__, __LINE__, rc, needle, 1, __VA_ARGS__, (const char *)NULL)

static void write_text(const char *name, const char *text) {
    char p[600];
    path(p, name);
    FILE *fp = fopen(p, "wb");
    CHECK(fp != NULL);
    if (fp) { fputs(text, fp); fclose(fp); }
}

/* ---- fixtures -------------------------------------------------------------------------- */
static moa_profile *synth(void) {
    moa_synth_params sp = moa_synth_default_params();
    sp.n_layer = 2; sp.n_head = 4; sp.n_head_kv = 2;
    sp.n_lengths = 3; sp.lengths[0] = 1024; sp.lengths[1] = 2048; sp.lengths[2] = 4096;
    moa_profile *p = NULL;
    CHECK_OK(moa_synth_profile(&sp, &p, NULL));
    return p;
}

static void save_profile(moa_profile *p, const char *name) {
    char f[600];
    path(f, name);
    CHECK_OK(moa_profile_save(p, f));
}

/* Path of `name` in the scratch directory (a ring of 16 buffers: several per call are fine). */
static const char *P(const char *name) {
    static char buf[16][600];
    static int k;
    char *b = buf[k++ % 16];
    path(b, name);
    return b;
}

/* ---- every subcommand: help, unknown flags, missing arguments, bad values --------------- */
TEST(usage_errors) {
    EXPECT(2, "usage: moa", "");   /* an empty command name */
    EXPECT(0, "exit codes: 0 ok, 1 failure, 2 usage error", "--help");
    EXPECT(0, "moa ", "--version");
    EXPECT(2, "unknown command 'frobnicate'", "frobnicate");
    EXPECT(2, "unknown option '--frob'", "--frob", "info");
    const char *cmds[] = {"generate", "info", "tokenize", "calib", "profile", "merge", "optimize", "plan",
                          "eval", "bench", "compress"};
    for (size_t i = 0; i < sizeof cmds / sizeof cmds[0]; i++) {
        EXPECT(0, "usage", cmds[i], "--help");
        EXPECT(2, NULL, cmds[i], "--no-such-flag", "x");
    }
    /* required arguments */
    EXPECT(2, "no model", "generate", "-p", "hi");
    EXPECT(2, "no model", "info");
    EXPECT(2, "no model", "tokenize", "-p", "hi");
    EXPECT(2, "--lengths and -o are required", "calib", "--task", "lines");
    EXPECT(2, NULL, "profile", "-c", "x.h5");
    EXPECT(2, "need -o OUTPUT", "merge", "a.h5");
    EXPECT(2, "-p PROFILE and -o PLAN are required", "optimize", "-p", "x.h5");
    EXPECT(2, "usage", "plan");
    EXPECT(2, "unknown action 'frob'", "plan", "frob", "x.json");
    EXPECT(2, "usage", "eval");
    EXPECT(2, "unknown subcommand 'frob'", "eval", "frob");
    EXPECT(2, "--lengths and -o are required", "eval", "longeval", "-m", "x.gguf");
    EXPECT(2, "-c calib.h5 is required", "eval", "loss", "-m", "x.gguf");
    EXPECT(2, "give at least one results JSON", "eval", "compare");
    EXPECT(2, NULL, "bench");
    EXPECT(2, "--density and -o are required", "compress", "-m", "x.gguf");
    /* bad values: parsed before anything is opened (the model path does not exist) */
    EXPECT(2, "--top-k: '18014398509481985k' is not an integer", "generate", "-m", "none.gguf", "-p", "hi", "--top-k",
           "18014398509481985k");   /* issue 16 case 7 */
    EXPECT(2, "option -n needs a value", "generate", "-m", "none.gguf", "-p", "hi", "-n");
    EXPECT(2, "--density", "compress", "-m", "none.gguf", "--density", "2", "-o", P("c.json"));
    EXPECT(2, "bad --calib-lengths", "compress", "-m", "none.gguf", "--density", "0.5", "-o", P("c.json"),
           "--calib-lengths", "1k,x");
    EXPECT(2, "--density", "optimize", "-p", "x.h5", "-o", P("p.json"), "--density", "0");
    EXPECT(2, "--granularity must be", "optimize", "-p", "x.h5", "-o", P("p.json"), "--granularity", "head");
    EXPECT(2, "bad --lengths", "eval", "longeval", "-m", "none.gguf", "--lengths", "1,,2", "-o", P("r.json"));
    /* issue 16 case 5: the task is checked before the model loads or a log exists */
    EXPECT(2, "evaluation task 'bogus'", "eval", "longeval", "-m", "none.gguf", "--lengths", "256", "--task", "bogus",
           "-o", P("r.json"));
    EXPECT(2, "--context", "bench", "decode", "-m", "none.gguf", "--context", "x");
    EXPECT(2, "--device", "generate", "--device", "tpu", "-m", "none.gguf", "-p", "hi");
}

/* ---- files that are not what they claim -------------------------------------------------- */
TEST(not_a_model) {
    write_text("fake.gguf", "GGUF but not really");
    EXPECT(1, "fake.gguf", "info", P("fake.gguf"));
    EXPECT(1, "missing.gguf", "info", P("missing.gguf"));
    EXPECT(1, "fake.gguf", "tokenize", "-m", P("fake.gguf"), "-p", "hi");
    EXPECT(1, "fake.gguf", "generate", "-m", P("fake.gguf"), "-p", "hi", "-n", "1");
    EXPECT(1, "fake.gguf", "bench", "decode", "-m", P("fake.gguf"), "--context", "256");
    EXPECT(1, "fake.gguf", "calib", "-m", P("fake.gguf"), "--task", "lines", "--lengths", "256", "--samples", "1",
           "-o", P("c.h5"));
    EXPECT(1, "fake.gguf", "profile", "-m", P("fake.gguf"), "-c", P("c.h5"), "-o", P("p.h5"));
    EXPECT(1, "fake.gguf", "eval", "longeval", "-m", P("fake.gguf"), "--lengths", "256", "-o", P("r.json"));
    /* issue 16 case 4: a plan given as the model leaves no work directory */
    write_text("ok.json", "{}");
    EXPECT(1, "ok.json", "compress", "-m", P("ok.json"), "--density", "0.5", "-o", P("c.json"));
    EXPECT(1, "not an HDF5 file", "optimize", "-p", P("ok.json"), "-o", P("p.json"));
    EXPECT(1, "ok.json", "eval", "compare", P("ok.json"));
}

/* ---- optimize, plan, merge on synthetic profiles ------------------------------------------ */
TEST(optimize_plan_merge) {
    moa_profile *p = synth();
    if (!p) return;
    char calib_sha[65];
    snprintf(calib_sha, sizeof calib_sha, "%064x", 7);
    CHECK_OK(moa_profile_set_source(p, calib_sha, 0, 1));
    save_profile(p, "prof.h5");
    EXPECT(0, "plan: ", "optimize", "-p", P("prof.h5"), "--density", "0.5", "-o", P("plan.json"), "--time-limit", "2",
           "--grid", "1", "--pareto", P("front.csv"));
    CHECK(moa_file_exists(P("plan.json")) && moa_file_exists(P("front.csv")));
    moa_plan *pl = NULL;
    CHECK_OK(moa_plan_load(P("plan.json"), &pl));
    moa_plan_free(pl);
    EXPECT(0, "density", "plan", "show", P("plan.json"));
    EXPECT(0, "fits the model", "plan", "check", P("plan.json"), "--n-layer", "2", "--n-head", "4", "--n-head-kv", "2",
           "--head-dim", "64");
    EXPECT(1, "plan.json does not fit the model: n_layer: plan has 2, model has 3", "plan", "check", P("plan.json"), "--n-layer", "3", "--n-head", "4", "--n-head-kv",
           "2", "--head-dim", "64");
    remove(P("plan.json"));
    remove(P("front.csv"));
    /* issue 16 case 5: a front file that cannot be written leaves no plan */
    EXPECT(1, "/nonexistent", "optimize", "-p", P("prof.h5"), "--density", "0.5", "-o", P("plan.json"), "--time-limit",
           "2", "--grid", "1", "--pareto", "/nonexistent/x.csv");
    /* issue 16 case 8: --calib must be the profile's calibration set */
    write_text("random.h5", "random bytes, not the calibration set");
    EXPECT(1, "is not the calibration set", "optimize", "-p", P("prof.h5"), "--density", "0.5", "-o", P("plan.json"),
           "--calib", P("random.h5"));
    /* issue 16 case 2: finite values whose sum overflows */
    p->buckets[0].influence_abs[3] = 1e308;
    p->buckets[0].influence_abs[5] = 1e308;
    char bad[600];
    path(bad, "overflow.h5");
    CHECK(moa_profile_save(p, bad) == MOA_ERR_FORMAT);   /* the writer refuses it too */
    moa_profile_free(p);
    {   /* so write a good one and break it in place */
        char cmd[2000];
        snprintf(cmd, sizeof cmd, "cp '%s' '%s'", P("prof.h5"), bad);
        CHECK(system(cmd) == 0);
        moa_h5_init();
        hid_t f = H5Fopen(bad, H5F_ACC_RDWR, H5P_DEFAULT);
        hid_t g = H5Gopen2(f, "bucket_1024", H5P_DEFAULT);
        double z[2 * 4 * 16];
        for (int i = 0; i < 2 * 4 * 16; i++) z[i] = 1.0;
        z[3] = z[5] = 1e308;
        H5Ldelete(g, "influence_abs", H5P_DEFAULT);
        hsize_t d[3] = {2, 4, 16};
        CHECK_OK(moa_h5_write_dataset(g, "influence_abs", H5T_NATIVE_DOUBLE, 3, d, z));
        H5Gclose(g);
        H5Fclose(f);
    }
    EXPECT(1, "overflows", "optimize", "-p", bad, "--density", "0.5", "-o", P("plan.json"));
    EXPECT(1, "overflows", "merge", "-o", P("m.h5"), P("prof.h5"), bad);
    /* issue 16 case 2: the same shard three times, and truncated inputs */
    EXPECT(1, "same profile", "merge", "-o", P("m.h5"), P("prof.h5"), P("prof.h5"), P("prof.h5"));
    {
        char *data = NULL;
        size_t len = 0;
        CHECK_OK(moa_read_file(P("prof.h5"), &data, &len));
        FILE *fp = fopen(P("trunc.h5"), "wb");
        if (fp && data) { fwrite(data, 1, len / 2, fp); fclose(fp); }
        free(data);
    }
    EXPECT(1, "trunc.h5", "merge", "-o", P("m.h5"), P("prof.h5"), P("trunc.h5"));
    /* two disjoint shards of one calibration file merge; a third copy of shard 0 does not */
    moa_profile *a = synth(), *b = synth();
    if (a && b) {
        CHECK_OK(moa_profile_set_source(a, calib_sha, 0, 2));
        CHECK_OK(moa_profile_set_source(b, calib_sha, 1, 2));
        b->buckets[0].influence_abs[0] += 1;   /* not byte-identical */
        save_profile(a, "s0.h5");
        save_profile(b, "s1.h5");
        b->buckets[0].influence_abs[0] += 1;
        CHECK_OK(moa_profile_set_source(b, calib_sha, 0, 2));
        save_profile(b, "s0b.h5");
        EXPECT(0, "merged 2 profiles", "merge", "-o", P("m.h5"), P("s0.h5"), P("s1.h5"));
        EXPECT(1, "shard 0/2 is already in the merge", "merge", "-o", P("m2.h5"), P("s0.h5"), P("s0b.h5"));
        snprintf(calib_sha, sizeof calib_sha, "%064x", 8);
        CHECK_OK(moa_profile_set_source(b, calib_sha, 1, 2));
        save_profile(b, "other.h5");
        EXPECT(1, "calib_sha256 differs", "merge", "-o", P("m2.h5"), P("s0.h5"), P("other.h5"));
    }
    moa_profile_free(a);
    moa_profile_free(b);
}

/* ---- hostile plans ------------------------------------------------------------------------ */
static const char *plan_head =
    "{\"format\":\"moa-plan\",\"version\":1,"
    "\"model\":{\"arch\":\"llama\",\"n_layer\":1,\"n_head\":2,\"n_head_kv\":1,\"head_dim\":64,\"sha256\":\"\"},"
    "\"sink\":64,\"block\":64,\"granularity\":\"kv-head\",";
static const char *plan_tail =
    "\"predicted\":[],\"provenance\":{\"profile_sha256\":\"\",\"calib_sha256\":\"\",\"tool_version\":\"0\","
    "\"solver\":\"x\",\"solver_status\":\"none\",\"gap\":0}}";

static void plan_variant(const char *name, const char *units, const char *lengths) {
    char text[4096];
    snprintf(text, sizeof text, "%s\"layers\":[{\"units\":[%s]}],\"lengths\":%s,%s", plan_head, units, lengths, plan_tail);
    write_text(name, text);
}

TEST(hostile_plans) {
    const char *none = "{\"profiled\":[],\"constrained\":[],\"budgets\":[],\"validation\":null}";
    plan_variant("ok.json", "{\"kind\":\"window\",\"alpha\":64,\"beta\":0.5}", none);
    EXPECT(0, NULL, "plan", "check", P("ok.json"), DIMS);
    /* issue 16 case 6: no lengths named, a span that is never positive in practice */
    plan_variant("neg.json", "{\"kind\":\"window\",\"alpha\":-1e300,\"beta\":1}", none);
    EXPECT(1, "layers[0].units[0]", "plan", "check", P("neg.json"), DIMS);
    EXPECT(1, "layers[0].units[0]", "plan", "show", P("neg.json"));
    plan_variant("nan.json", "{\"kind\":\"window\",\"alpha\":64,\"beta\":2}", none);
    EXPECT(1, "beta must be in [0, 1]", "plan", "check", P("nan.json"), DIMS);
    plan_variant("kind.json", "{\"kind\":\"sparse\"}", none);
    EXPECT(1, "layers[0].units[0].kind", "plan", "check", P("kind.json"), DIMS);
    write_text("trunc.json", "{\"format\":\"moa-plan\",\"vers");
    EXPECT(1, "trunc.json", "plan", "check", P("trunc.json"), DIMS);
    EXPECT(1, "missing.json", "plan", "show", P("missing.json"));
}

/* ---- plan annotate: a validation summary from separate LongEval results files -------------- */
static const char *model_a = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
static const char *model_b = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";

/* A results file with the fields `moa eval longeval` writes and the reader needs: settings
 * (task, seed, samples_per_cell k, model sha256 and attention object text), the lengths, and
 * k x 10 sample rows per length of which the first correct[i] are correct. */
static void write_results(const char *name, const char *task, int seed, int k, const char *model_sha,
                          const char *attention, const int *lengths, const int *correct, int n_lengths) {
    size_t cap = 4096 + (size_t)n_lengths * (size_t)k * 10 * 200, len = 0;
    char *t = malloc(cap);
    if (!t) { CHECK(0); return; }
#define PUT(...) (len += (size_t)snprintf(t + len, cap - len, __VA_ARGS__))
    PUT("{\"format\":\"moa-longeval\",\"version\":1,\"label\":\"x\",\"settings\":{\"task\":\"%s\",\"seed\":%d,"
        "\"samples_per_cell\":%d,\"bins\":10,\"lengths\":[],\"model\":{\"model_sha256\":\"%s\",\"attention\":%s}},"
        "\"lengths\":[", task, seed, k, model_sha, attention);
    for (int i = 0; i < n_lengths; i++) PUT("%s{\"length\":%d}", i ? "," : "", lengths[i]);
    PUT("],\"samples\":[");
    for (int i = 0, first = 1; i < n_lengths; i++)
        for (int j = 0; j < 10 * k; j++, first = 0)
            PUT("%s{\"length\":%d,\"bin\":%d,\"k\":%d,\"seed\":1,\"prompt_tokens\":%d,\"lines\":3,\"query_index\":1,"
                "\"new_tokens\":2,\"expected\":\"7\",\"output\":\"7\",\"correct\":%d}\n", first ? "" : ",", lengths[i],
                j / k, j % k, lengths[i], j < correct[i]);
    PUT("]}\n");
#undef PUT
    CHECK(len < cap);
    write_text(name, t);
    free(t);
}

static char *slurp(const char *p) {
    char *d = NULL;
    size_t n = 0;
    if (moa_read_file(p, &d, &n) < 0) return NULL;
    return d;
}

/* A plan of 1 layer, 1 KV head, model sha256 model_a, written by moa_plan_save (as compress
 * and optimize write plans). */
static void write_model_plan(const char *name) {
    char text[4096];
    snprintf(text, sizeof text,
             "{\"format\":\"moa-plan\",\"version\":1,\"model\":{\"arch\":\"llama\",\"n_layer\":1,\"n_head\":2,"
             "\"n_head_kv\":1,\"head_dim\":64,\"sha256\":\"%s\"},\"sink\":64,\"block\":64,\"granularity\":\"kv-head\","
             "\"layers\":[{\"units\":[{\"kind\":\"window\",\"alpha\":64,\"beta\":0.5}]}],\"lengths\":{\"profiled\":[],"
             "\"constrained\":[],\"budgets\":[],\"validation\":null},%s", model_a, plan_tail);
    moa_plan *pl = NULL;
    CHECK_OK(moa_plan_load_string(text, "plan text", &pl));
    if (!pl) return;
    CHECK_OK(moa_plan_save(pl, P(name)));
    moa_plan_free(pl);
}

TEST(plan_annotate) {
    write_model_plan("plan.json");
    char sha[65], att_plan[256], att_other[256];
    CHECK_OK(moa_sha256_file(P("plan.json"), sha));
    snprintf(att_plan, sizeof att_plan, "{\"kind\":\"plan\",\"file\":\"plan.json\",\"sha256\":\"%s\"}", sha);
    snprintf(att_other, sizeof att_other, "{\"kind\":\"plan\",\"file\":\"other.json\",\"sha256\":\"%064x\"}", 5);
    const char *att_dense = "{\"kind\":\"dense\"}";
    const char *att_unif = "{\"kind\":\"uniform\",\"density\":\"matched to the plan\",\"sink\":64,\"block\":64}";
    const char *att_unif16 = "{\"kind\":\"uniform\",\"density\":0.5,\"sink\":16,\"block\":16}";
    const int l12[] = {1024, 2048}, l1[] = {1024}, l2[] = {2048}, l4[] = {4096};
    write_results("d.json", "needle", 2, 2, model_a, att_dense, l12, (const int[]){20, 19}, 2);
    write_results("u.json", "needle", 2, 2, model_a, att_unif, l1, (const int[]){10}, 1);
    write_results("p1.json", "needle", 2, 2, model_a, att_plan, l1, (const int[]){18}, 1);
    write_results("p2.json", "needle", 2, 2, model_a, att_plan, l2, (const int[]){15}, 1);
    write_results("p4.json", "needle", 2, 2, model_a, att_plan, l4, (const int[]){5}, 1);
    /* a good annotation: lengths merged ascending, missing methods null, then shown */
    char list[1300];
    snprintf(list, sizeof list, "%s,%s", P("p2.json"), P("p4.json"));
    EXPECT(0, "annotated: ", "plan", "annotate", P("plan.json"), "--task", "needle", "--dense", P("d.json"), "--uniform",
           P("u.json"), "--plan", P("p1.json"), "--plan", list, "-o", P("out.json"),
           "--calib-tasks", "longdep,lines", "--calib-seed", "1", "--heldout-length", "2048", "--heldout-samples", "6",
           "--heldout-dense", "1.5", "--heldout-plan", "1.75");
    EXPECT(2, "an empty file name", "plan", "annotate", P("plan.json"), "--task", "needle", "--plan", "a,,b", "-o",
           P("new.json"));
    moa_plan *out = NULL;
    moa_plan_validation v;
    CHECK_OK(moa_plan_load(P("out.json"), &out));
    CHECK(out && moa_plan_get_validation(out, &v));
    if (out && moa_plan_get_validation(out, &v)) {
        CHECK_STR(v.task, "needle");
        CHECK_EQ_INT((int)v.seed, 2);
        CHECK_EQ_INT(v.samples, 20);
        CHECK_STR(v.calib_tasks, "longdep,lines");
        CHECK_EQ_INT((int)v.calib_seed, 1);
        CHECK_EQ_INT(v.n_lengths, 3);
        CHECK_EQ_INT((int)v.length[0], 1024);
        CHECK_EQ_INT((int)v.length[1], 2048);
        CHECK_EQ_INT((int)v.length[2], 4096);
        CHECK_NEAR(v.dense[0], 1.0, 1e-12);
        CHECK_NEAR(v.dense[1], 0.95, 1e-12);
        CHECK(isnan(v.dense[2]));
        CHECK_NEAR(v.uniform[0], 0.5, 1e-12);
        CHECK(isnan(v.uniform[1]) && isnan(v.uniform[2]));
        CHECK_NEAR(v.plan[0], 0.9, 1e-12);
        CHECK_NEAR(v.plan[1], 0.75, 1e-12);
        CHECK_NEAR(v.plan[2], 0.25, 1e-12);
        CHECK_EQ_INT((int)v.heldout_length, 2048);
        CHECK_EQ_INT(v.heldout_samples, 6);
        CHECK_NEAR(v.heldout_dense, 1.5, 1e-12);
        CHECK(isnan(v.heldout_uniform));
        CHECK_NEAR(v.heldout_plan, 1.75, 1e-12);
    }
    moa_plan_free(out);
    EXPECT(0, "validation: needle, 20 prompts per length, seed 2 (calibration: longdep,lines, seed 1)", "plan", "show",
           P("out.json"));
    CHECK(strstr(output, "      4096        -        -     0.25") != NULL);
    CHECK(strstr(output, "held-out response loss at 2048 (6 samples") != NULL);
    /* effective context vs dense: 1024 (0.9 >= 0.9 x 1.0), not 2048 (0.75 < 0.9 x 0.95), not
     * 4096 (no dense result); the span ratio there is 1 / the plan's density at 1024 */
    {
        moa_plan *pl = NULL;
        CHECK_OK(moa_plan_load(P("out.json"), &pl));
        char want[160];
        const double d = pl ? moa_plan_density(pl, 1024) : 1;
        snprintf(want, sizeof want, "effective context (plan >= 0.9 x dense): 1024; mean span there %.0f tokens "
                 "(density %.3f): %.2fx", d * 1024, d, 1 / d);
        CHECK(strstr(output, want) != NULL);
        moa_plan_free(pl);
    }
    /* in place, twice: the second run sees the annotated file, whose bytes the results do not
     * record, but whose plan without the summary they do; the calibration is kept */
    {
        char *d = slurp(P("plan.json"));
        if (d) write_text("inplace.json", d);
        free(d);
    }
    EXPECT(0, "annotated: ", "plan", "annotate", P("inplace.json"), "--task", "needle", "--plan", P("p1.json"), "-o",
           P("inplace.json"), "--calib-tasks", "lines", "--calib-seed", "9");
    EXPECT(0, "(calibration: lines, seed 9)", "plan", "annotate", P("inplace.json"), "--task", "needle", "--plan",
           P("p1.json"), "--dense", P("d.json"), "-o", P("inplace.json"));
    /* refusals: exit 1, the file named, OUT (existing, or new) untouched */
    char *before = slurp(P("out.json"));
    write_results("task.json", "lines", 2, 2, model_a, att_plan, l2, (const int[]){15}, 1);
    write_results("other.json", "needle", 2, 2, model_a, att_other, l2, (const int[]){15}, 1);
    write_results("model.json", "needle", 2, 2, model_b, att_plan, l2, (const int[]){15}, 1);
    write_results("dup.json", "needle", 2, 2, model_a, att_plan, l12, (const int[]){15, 15}, 2);
    write_results("seed.json", "needle", 3, 2, model_a, att_plan, l2, (const int[]){15}, 1);
    write_results("spc.json", "needle", 2, 1, model_a, att_plan, l2, (const int[]){5}, 1);
    write_results("u16.json", "needle", 2, 2, model_a, att_unif16, l2, (const int[]){5}, 1);
    write_text("bad.json", "{\"format\":\"moa-longeval\",\"version\":1,");
    {   /* an unfinished length: 19 of 20 prompts (the last row removed) */
        char *d = NULL;
        size_t n = 0;
        CHECK_OK(moa_read_file(P("p2.json"), &d, &n));
        const char *last = d ? strrchr(d, '{') : NULL;   /* after the row separator ',' */
        size_t keep = last ? (size_t)(last - d) - 1 : 0;
        char *cut = last ? malloc(keep + 4) : NULL;
        if (cut) { snprintf(cut, keep + 4, "%.*s]}\n", (int)keep, d); write_text("unfinished.json", cut); }
        CHECK(cut != NULL);
        free(cut);
        free(d);
    }
    {   /* 65 lengths, one prompt per bin */
        int many[65], ok[65];
        for (int i = 0; i < 65; i++) { many[i] = 256 + 64 * i; ok[i] = 10; }
        write_results("many.json", "needle", 2, 1, model_a, att_plan, many, ok, 65);
    }
#define ANNOTATE(needle, ...) \
    EXPECT(1, needle, "plan", "annotate", P("plan.json"), "--task", "needle", "-o", P("out.json"), __VA_ARGS__); \
    EXPECT(1, needle, "plan", "annotate", P("plan.json"), "--task", "needle", "-o", P("new.json"), __VA_ARGS__)
    ANNOTATE("task.json: settings.task is 'lines', expected 'needle'", "--plan", P("task.json"));
    ANNOTATE("other.json: settings.model.attention.sha256", "--plan", P("other.json"));
    CHECK(strstr(output, "made with another plan") != NULL);
    ANNOTATE("model.json: settings.model.model_sha256 is bbbb", "--plan", P("model.json"));
    ANNOTATE("d.json: settings.model.attention.kind is 'dense', but the file was given as the plan result", "--plan",
             P("d.json"));
    ANNOTATE("p1.json: settings.model.attention.kind is 'plan', but the file was given as the dense result", "--plan",
             P("p2.json"), "--dense", P("p1.json"));
    ANNOTATE("u16.json: settings.model.attention: the uniform baseline has sink 16", "--plan", P("p2.json"),
             "--uniform", P("u16.json"));
    ANNOTATE("dup.json: length 1024 of the plan results is also in", "--plan", P("p1.json"), "--plan", P("dup.json"));
    ANNOTATE("seed.json: settings.seed is 3, but", "--plan", P("p1.json"), "--plan", P("seed.json"));
    ANNOTATE("spc.json: settings.samples_per_cell is 1, but", "--dense", P("d.json"), "--plan", P("spc.json"));
    ANNOTATE("bad.json", "--plan", P("bad.json"));
    ANNOTATE("missing.json", "--plan", P("p1.json"), "--uniform", P("missing.json"));
    ANNOTATE("unfinished.json: lengths[0] (length 2048): 19 of 20 prompts finished", "--plan", P("unfinished.json"));
    ANNOTATE("more than 64 lengths", "--plan", P("many.json"));
#undef ANNOTATE
    EXPECT(1, "missing-plan.json", "plan", "annotate", P("missing-plan.json"), "--task", "needle", "--plan",
           P("p1.json"), "-o", P("new.json"));
    char *after = slurp(P("out.json"));
    CHECK(before && after && !strcmp(before, after));
    free(before);
    free(after);
    /* a plan that records no model: nothing to check the results against */
    plan_variant("nosha.json", "{\"kind\":\"window\",\"alpha\":64,\"beta\":0.5}",
                 "{\"profiled\":[],\"constrained\":[],\"budgets\":[],\"validation\":null}");
    EXPECT(1, "nosha.json: model.sha256 is empty", "plan", "annotate", P("nosha.json"), "--task", "needle", "--plan",
           P("p1.json"), "-o", P("new.json"));
    /* usage */
    EXPECT(2, "--task, --plan (the plan's results) and -o are required", "plan", "annotate", P("plan.json"), "--plan",
           P("p1.json"), "-o", P("new.json"));
    EXPECT(2, "--task, --plan (the plan's results) and -o are required", "plan", "annotate", P("plan.json"), "--task",
           "needle", "--dense", P("d.json"), "-o", P("new.json"));
    EXPECT(2, "--heldout-length and --heldout-samples go together", "plan", "annotate", P("plan.json"), "--task",
           "needle", "--plan", P("p1.json"), "-o", P("new.json"), "--heldout-plan", "1.2");
    EXPECT(0, "annotate PLAN", "plan", "annotate", "--help");
}

/* ---- the hostile-input corpus (tests/cli/hostile, written by make_hostile.c) ----------------- */
/* Sorted names of the corpus files of `kind` ending in `ext` (NULL-terminated, malloc'd). */
static char **corpus(const char *kind, const char *ext) {
    char d[600];
    snprintf(d, sizeof d, "%s/%s", MOA_HOSTILE_DIR, kind);
    DIR *dp = opendir(d);
    char **names = calloc(256, sizeof *names);
    int n = 0;
    struct dirent *e;
    while (dp && names && (e = readdir(dp)) && n < 255) {
        size_t l = strlen(e->d_name), x = strlen(ext);
        if (l > x && !strcmp(e->d_name + l - x, ext)) names[n++] = strdup(e->d_name);
    }
    if (dp) closedir(dp);
    if (names) qsort(names, (size_t)n, sizeof *names, cmp_str);
    CHECK_MSG(n >= 4, "%s: only %d hostile %s files", d, n, ext);
    return names;
}
static void corpus_free(char **names) {
    for (int i = 0; names && names[i]; i++) free(names[i]);
    free(names);
}
static const char *hostile(const char *kind, const char *name) {
    static char buf[4][700];
    static int k;
    char *b = buf[k++ % 4];
    snprintf(b, sizeof buf[0], "%s/%s/%s", MOA_HOSTILE_DIR, kind, name);
    return b;
}

/* Every file of the corpus is refused by the command that reads it: exit 1, the file named,
 * nothing left in the scratch directory (expect_), no raw HDF5 diagnostics. */
TEST(hostile_corpus) {
    char **f = corpus("gguf", ".gguf");
    for (int i = 0; f && f[i]; i++) EXPECT(1, f[i], "info", hostile("gguf", f[i]));
    corpus_free(f);
    f = corpus("plan", ".json");
    for (int i = 0; f && f[i]; i++) {
        EXPECT(1, f[i], "plan", "check", hostile("plan", f[i]), DIMS);
        EXPECT(1, f[i], "plan", "show", hostile("plan", f[i]));
    }
    corpus_free(f);
    write_model_plan("hplan.json");
    f = corpus("results", ".json");
    for (int i = 0; f && f[i]; i++)
        EXPECT(1, f[i], "plan", "annotate", P("hplan.json"), "--task", "needle", "--plan", hostile("results", f[i]),
               "-o", P("hout.json"));
    corpus_free(f);
    /* crash-*.h5 crash libhdf5 itself (make_hostile.c): refused like the others, through the
     * HDF5 guard's child (whether libhdf5 faults depends on the heap: counted, not required) */
    int crashes = 0, crash_files = 0;
    f = corpus("profile", ".h5");
    for (int i = 0; f && f[i]; i++) {
        EXPECT(1, f[i], "optimize", "-p", hostile("profile", f[i]), "--density", "0.5", "-o", P("plan.json"));
        crash_files += !strncmp(f[i], "crash-", 6);
        crashes += strstr(output, "the HDF5 library crashed reading it") != NULL;
    }
    corpus_free(f);
    f = corpus("calib", ".h5");
    for (int i = 0; f && f[i]; i++) {
        EXPECT(1, f[i], "calib", "--dump", hostile("calib", f[i]));
        crash_files += !strncmp(f[i], "crash-", 6);
        crashes += strstr(output, "the HDF5 library crashed reading it") != NULL;
    }
    corpus_free(f);
    CHECK_MSG(crash_files >= 7, "only %d crash-*.h5 files in the corpus", crash_files);
    fprintf(stderr, "  hostile HDF5 files: %d of the %d crash-*.h5 crashed libhdf5 in the guard's child\n", crashes,
            crash_files);
}

/* ---- model tests ---------------------------------------------------------------------------- */
/* A calibration file of the model's own sha256 whose token ids the test chooses. */
static void write_calib(const char *name, const char *sha, int32_t last_response_token) {
    tiny_calib c;   /* the tiny file, with the response running to the end and no known answer */
    tiny_calib_init(&c);
    c.tokens[39] = last_response_token;
    c.s.response_end = 40;
    c.s.seed = 0;
    c.s.expected = NULL;
    c.s.dense_correct = -1;
    c.s.dense_score = -1;
    c.f.model_sha256 = (char *)sha;
    c.f.tokenizer = (char *)"test";
    c.f.tool_version = (char *)"test";
    char p[600];
    path(p, name);
    CHECK_OK(moa_calib_write(p, &c.f));
}

TEST(model_hostile_inputs) {
    char sha[65];
    CHECK_OK(moa_sha256_file(model, sha));
    /* issue 16 case 1: the last response token outside the vocabulary (49152 for SmolLM2) */
    write_calib("good.h5", sha, 200);
    write_calib("vocab.h5", sha, 49152);
    write_calib("huge.h5", sha, 2000000000);
    EXPECT_M(0, "mean_ce", "eval", "loss", "-m", model, "-c", P("good.h5"), "--dense");
    EXPECT_M(1, "sample 0: token 49152 at position 39 (response) is outside the model's vocabulary [0, 49152)", "eval",
             "loss", "-m", model, "-c", P("vocab.h5"), "--dense");
    EXPECT_M(1, "token 2000000000 at position 39", "eval", "loss", "-m", model, "-c", P("huge.h5"), "--dense");
    EXPECT_M(1, "token 49152 at position 39", "profile", "-m", model, "-c", P("vocab.h5"), "-o", P("p.h5"));
    /* issue 16 case 4: every compress setting against the model, before any work (exit 2) */
    EXPECT_M(2, "--validation 777: not one of the calibration lengths", "compress", "-m", model, "--density", "0.5",
             "-o", P("c.json"), "--validation", "777");
    EXPECT_M(2, "exceeds the model's context", "compress", "-m", model, "--density", "0.5", "-o", P("c.json"),
             "--calib-lengths", "9000,512");
    EXPECT_M(2, "--sink 100000", "compress", "-m", model, "--density", "0.5", "-o", P("c.json"), "--sink", "100000");
    EXPECT_M(2, "--block 1000", "compress", "-m", model, "--density", "0.5", "-o", P("c.json"), "--block", "1000");
    EXPECT_M(2, "--eval-lengths: 100000", "compress", "-m", model, "--density", "0.5", "-o", P("c.json"),
             "--eval-lengths", "100000");
    EXPECT_M(2, "--eval-task", "compress", "-m", model, "--density", "0.5", "-o", P("c.json"), "--eval-task", "bogus");
    EXPECT_M(2, "--calib-tasks", "compress", "-m", model, "--density", "0.5", "-o", P("c.json"), "--calib-tasks",
             "bogus");
    /* issue 16 case 5: a LongEval run that fails before its first sample leaves no log */
    EXPECT_M(1, "63", "eval", "longeval", "-m", model, "--lengths", "63", "-o", P("r.json"));
    /* generate refuses a plan whose spans are not positive (issue 16 case 6) */
    plan_variant("neg.json", "{\"kind\":\"window\",\"alpha\":-1e300,\"beta\":1}",
                 "{\"profiled\":[],\"constrained\":[],\"budgets\":[],\"validation\":null}");
    EXPECT_M(1, "layers[0].units[0]", "generate", "-m", model, "--plan", P("neg.json"), "-p", "Hi", "-n", "1");
    /* a valid plan of another model: refused where the context is created, naming the file */
    plan_variant("other.json", "{\"kind\":\"window\",\"alpha\":64,\"beta\":0.5}",
                 "{\"profiled\":[],\"constrained\":[],\"budgets\":[],\"validation\":null}");
    EXPECT_M(1, "other.json does not fit the model: n_layer: plan has 1, model has 30", "generate", "-m", model,
             "--plan", P("other.json"), "-p", "Hi", "-n", "1");
    EXPECT_M(1, "other.json does not fit the model", "eval", "longeval", "-m", model, "--plan", P("other.json"),
             "--lengths", "256", "--samples", "1", "-o", P("other-r.json"));
    EXPECT_M(1, "other.json does not fit the model", "bench", "decode", "-m", model, "--plan", P("other.json"),
             "--context", "256");
    EXPECT_M(0, NULL, "tokenize", "-m", model, "-p", "Hello world", "--ids");
    /* the hostile results logs: whole files (*.jsonl), then rows (*.rows) after the header of
     * a log this model has just written (its settings record the model) */
    EXPECT_M(0, NULL, "eval", "longeval", "-m", model, "--lengths", "256", "--samples", "1", "--max-new", "1", "-o",
             P("r.json"), "--log", P("good.log"));
    char *good = NULL;
    size_t good_len = 0;
    CHECK_OK(moa_read_file(P("good.log"), &good, &good_len));
    char *nl = good ? strchr(good, '\n') : NULL;
    remove(P("r.json"));
    char **f = corpus("evallog", ".jsonl");
    for (int i = 0; f && f[i]; i++) {
        char *d = NULL;
        size_t n = 0;
        CHECK_OK(moa_read_file(hostile("evallog", f[i]), &d, &n));
        FILE *fp = fopen(P(f[i]), "wb");
        if (fp) { if (d) fwrite(d, 1, n, fp); fclose(fp); }
        free(d);
        EXPECT_M(1, f[i], "eval", "longeval", "-m", model, "--lengths", "256", "--samples", "1", "--max-new", "1", "-o",
                 P("r.json"), "--log", P(f[i]), "--resume");
        remove(P(f[i]));
    }
    corpus_free(f);
    f = corpus("evallog", ".rows");
    for (int i = 0; f && f[i] && nl; i++) {
        char *d = NULL;
        size_t n = 0;
        CHECK_OK(moa_read_file(hostile("evallog", f[i]), &d, &n));
        FILE *fp = fopen(P(f[i]), "wb");
        if (fp) { fwrite(good, 1, (size_t)(nl - good) + 1, fp); if (d) fwrite(d, 1, n, fp); fclose(fp); }
        free(d);
        EXPECT_M(1, f[i], "eval", "longeval", "-m", model, "--lengths", "256", "--samples", "1", "--max-new", "1", "-o",
                 P("r.json"), "--log", P(f[i]), "--collect");
        remove(P(f[i]));
    }
    corpus_free(f);
    free(good);
    remove(P("good.log"));
    EXPECT_M(0, "general.architecture", "info", model);
}

int main(int argc, char **argv) {
    int model_tests = argc > 1 && !strcmp(argv[1], "model");
    snprintf(dir, sizeof dir, "%s/cli-%s", MOA_TEST_TMPDIR, model_tests ? "model" : "unit");
    char cmd[1200];
    snprintf(cmd, sizeof cmd, "rm -rf '%s' && mkdir -p '%s'", dir, dir);
    if (system(cmd) != 0) { fprintf(stderr, "cannot make %s\n", dir); return 1; }
    moa_h5_init();
    if (model_tests) {
        model = getenv("MOA_MODEL");
        if (!model || !*model || !moa_file_exists(model)) {
            fprintf(stderr, "MOA_MODEL not set or missing: skipped\n");
            return 77;
        }
        RUN(model_hostile_inputs);
    } else {
        RUN(usage_errors);
        RUN(not_a_model);
        RUN(optimize_plan_merge);
        RUN(hostile_plans);
        RUN(plan_annotate);
        RUN(hostile_corpus);
    }
    return test_summary();
}
