/* test_compress_kill.c - `moa compress` killed (SIGKILL) in every stage after the profile
 * (label `model`, skipped without MOA_MODEL; the profile stage's kill is test_compress_resume):
 * calibration, optimisation, the dense / uniform / plan validations, the held-out calibration
 * and the held-out loss. Smallest settings: calibration lengths 128 and 256 (needle task), one
 * sample each, validation at 128 with one sample per position bin, 2 held-out samples.
 *
 * One uninterrupted reference run, its outputs stashed; then, in a fresh work directory at the
 * same path (recorded paths agree), the same command is started again and again, each run
 * killed in the next stage: once stderr announces the stage ("moa compress: <stage>") and its
 * first record is on disk (a calibration checkpoint record, a validation log row, the held-out
 * file), or for the optimisation, too quick to catch from outside, at its fault-injection
 * point (MOA_COMPRESS_KILL_AT="plan written": plan.json saved, its inputs record not). After
 * each kill: that stage's output is not there, no plan is at -o, and every output of the
 * stages before it equals the reference's byte for byte. The last run resumes to exit 0 and
 * every output must equal the reference's: -o, calib.h5, profile.h5, plan.json(.inputs),
 * pareto.csv/svg, the three validation results, longeval.svg, heldout.h5, and the report's
 * validation and loss tables. Two things in the JSON files are masked: the plan's
 * provenance.time_s (the solver's wall time, a measurement of the run: a re-optimised plan
 * differs there only) and, where the plan results record it, that plan file's sha256. */
#include "moa/eval.h"
#include "moa/common.h"
#include "moa/runtime.h"
#include "test.h"
#include "test-proc.h"

#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char *model;
static char plan[512], work[600], stash[600];

/* The stages' files in the order the pipeline writes them (group = kill point after which
 * they are final). .jsonl logs are not compared (they record seconds per sample). */
static const struct { const char *name; int group, compare; } files[] = {
    {"calib.h5", 0, 1},
    {"profile.h5", 0, 1},
    {"plan.json", 1, 1}, {"plan.json.inputs", 1, 1}, {"pareto.csv", 1, 1}, {"pareto.svg", 1, 1},
    {"eval-needle-dense.jsonl", 2, 0}, {"eval-needle-dense.json", 2, 1},
    {"eval-needle-uniform.jsonl", 3, 0}, {"eval-needle-uniform.json", 3, 1},
    {"eval-needle-plan.jsonl", 4, 0}, {"eval-needle-plan.json", 4, 1}, {"longeval.svg", 4, 1},
    {"heldout.h5", 5, 1},
};
#define N_FILES ((int)(sizeof files / sizeof files[0]))

typedef enum { WHEN_FAULT, WHEN_CKPT_RECORD, WHEN_LOG_ROW, WHEN_EXISTS } when_kind;

static const struct {
    const char *what;       /* for messages */
    const char *stage;      /* announced on stderr */
    when_kind when;         /* then kill when `file` has a record / exists; WHEN_FAULT: the run
                               kills itself at MOA_COMPRESS_KILL_AT=file */
    const char *file;
    const char *unfinished; /* must not exist after the kill */
} points[] = {
    {"calibration", "calibration set", WHEN_CKPT_RECORD, "calib.h5.ckpt", "calib.h5"},
    {"optimisation", "optimise (GLPK", WHEN_FAULT, "plan written", "plan.json.inputs"},
    {"dense validation", "validation: needle (dense)", WHEN_LOG_ROW, "eval-needle-dense.jsonl",
     "eval-needle-dense.json"},
    {"uniform validation", "validation: needle (uniform)", WHEN_LOG_ROW, "eval-needle-uniform.jsonl",
     "eval-needle-uniform.json"},
    {"plan validation", "validation: needle (plan)", WHEN_LOG_ROW, "eval-needle-plan.jsonl", "eval-needle-plan.json"},
    {"held-out calibration", "held-out response loss", WHEN_CKPT_RECORD, "heldout.h5.ckpt", "heldout.h5"},
    {"held-out loss", "held-out response loss", WHEN_EXISTS, "heldout.h5", NULL},
};
#define N_POINTS ((int)(sizeof points / sizeof points[0]))

static void in_dir(char *buf, const char *dir, const char *name) { snprintf(buf, 700, "%s/%s", dir, name); }

/* Starts the command; stderr goes to *err_fd (a non-blocking pipe) or /dev/null; kill_at:
 * MOA_COMPRESS_KILL_AT or NULL. */
static pid_t spawn(int *err_fd, const char *kill_at) {
    int fds[2] = {-1, -1};
    if (err_fd) {   /* close-on-exec: the child keeps only its stderr copy of the write end */
        if (pipe(fds) != 0) return -1;
        fcntl(fds[0], F_SETFD, FD_CLOEXEC);
        fcntl(fds[1], F_SETFD, FD_CLOEXEC);
    }
    const char *argv[] = {MOA_BIN, "compress", "-m", model, "--density", "0.5", "-o", plan, "--calib-lengths",
                          "128,256", "--calib-tasks", "needle", "--calib-samples", "1", "--eval-lengths", "128",
                          "--eval-samples", "1", "--heldout", "2", "--time-limit", "5", NULL};
    char env0[300];
    snprintf(env0, sizeof env0, "MOA_COMPRESS_KILL_AT=%s", kill_at ? kill_at : "");
    const char *env[] = {env0, NULL};
    pid_t pid = test_spawn(argv, -1, fds[1], kill_at ? env : NULL);
    if (err_fd) {
        close(fds[1]);
        fcntl(fds[0], F_SETFL, O_NONBLOCK);
        *err_fd = fds[0];
    }
    return pid;
}

/* A calibration checkpoint holds its header (8-byte magic, u32 length, parameters) and at
 * least one byte of a sample record (calib-data/build.c). */
static int ckpt_has_record(const char *path) {
    char *d = NULL;
    size_t n = 0;
    if (moa_read_file(path, &d, &n) < 0) return 0;
    uint32_t plen = 0;
    if (n >= 12) memcpy(&plen, d + 8, 4);
    free(d);
    return n >= 12 && n > 12 + (size_t)plen;
}

/* A LongEval log holds its header line and at least one finished row. */
static int log_has_row(const char *path) {
    char *d = NULL;
    size_t n = 0;
    if (moa_read_file(path, &d, &n) < 0) return 0;
    int lines = 0;
    for (size_t i = 0; i < n; i++) lines += d[i] == '\n';
    free(d);
    return lines >= 2;
}

static int copy_file(const char *from, const char *to) {
    char *d = NULL;
    size_t n = 0;
    if (moa_read_file(from, &d, &n) < 0) return -1;
    FILE *fp = fopen(to, "wb");
    int ok = fp && fwrite(d, 1, n, fp) == n;
    if (fp) ok &= fclose(fp) == 0;
    free(d);
    return ok ? 0 : -1;
}

static int sh(const char *fmt, const char *a, const char *b) {
    char cmd[2000];
    snprintf(cmd, sizeof cmd, fmt, a, b);
    return system(cmd);
}

/* The report's validation and loss tables (from "## Validation" to "Plan written"), malloc'd. */
static char *report_tables(void) {
    char p[700], *s = NULL;
    size_t n = 0;
    in_dir(p, work, "report.md");
    if (moa_read_file(p, &s, &n) < 0) return NULL;
    char *a = strstr(s, "## Validation"), *b = a ? strstr(a, "Plan written") : NULL;
    char *t = a && b ? strndup(a, (size_t)(b - a)) : NULL;
    free(s);
    return t;
}

/* The text of `path` with the plan's solver wall time ("time_s": a measurement of the run,
 * not of the plan) set to 0 and the sha256 of the plan file `plan_path` (which changes with
 * it) replaced by "PLAN", malloc'd. */
static char *normalised(const char *path, const char *plan_path) {
    char *s = NULL, sha[65] = "";
    size_t n = 0;
    if (moa_read_file(path, &s, &n) < 0) return NULL;
    if (moa_sha256_file(plan_path, sha) < 0) sha[0] = '\0';
    char *o = malloc(n + 1), *w = o;
    for (size_t i = 0; o && i < n;) {
        if (!strncmp(s + i, "\"time_s\":", 9)) {
            memcpy(w, "\"time_s\":0", 10);
            w += 10;
            i += 9;
            while (i < n && s[i] == ' ') i++;
            while (i < n && s[i] && strchr("0123456789.eE+-", s[i])) i++;
        } else if (sha[0] && n - i >= 64 && !strncmp(s + i, sha, 64)) {
            memcpy(w, "PLAN", 4);
            w += 4;
            i += 64;
        } else {
            *w++ = s[i++];
        }
    }
    if (o) *w = '\0';
    free(s);
    return o;
}

/* Same bytes, except for what normalised() masks in the JSON files. */
static int same_output(const char *a, const char *b, const char *a_plan, const char *b_plan) {
    size_t l = strlen(a);
    if (l < 5 || strcmp(a + l - 5, ".json")) return test_same_bytes(a, b);
    char *x = normalised(a, a_plan), *y = normalised(b, b_plan);
    int same = x && y && !strcmp(x, y);
    free(x);
    free(y);
    return same;
}

/* Compares the outputs of groups < n_groups (all: N_FILES) with the reference's. */
static void compare(const char *when, int n_groups) {
    char a[700], b[700], pa[700], pb[700];
    in_dir(pa, stash, "plan.json");
    in_dir(pb, work, "plan.json");
    for (int i = 0; i < N_FILES; i++) {
        if (!files[i].compare || files[i].group >= n_groups) continue;
        in_dir(a, stash, files[i].name);
        in_dir(b, work, files[i].name);
        CHECK_MSG(same_output(a, b, pa, pb), "%s: %s differs from the uninterrupted run's", when, files[i].name);
    }
}

/* The kill condition of point k, polled by test_kill_when: stderr (a non-blocking pipe) has
 * announced the stage and its first record is on disk; -1 once stderr is closed (the run
 * ended, or killed itself at the fault point). */
typedef struct {
    int k, err, seen;
    char text[1 << 16];
    size_t len;
    char want[128], when[700];
} watch;

static int stage_reached(void *data) {
    watch *w = data;
    ssize_t r;
    while ((r = read(w->err, w->text + w->len, sizeof w->text - 1 - w->len)) > 0) {
        w->len += (size_t)r;
        w->text[w->len] = '\0';
        if (!w->seen) w->seen = strstr(w->text, w->want) != NULL;
        if (w->len > sizeof w->text / 2) {   /* keep the tail */
            memmove(w->text, w->text + w->len - 256, 256);
            w->len = 256;
            w->text[w->len] = '\0';
        }
    }
    if (r == 0) return -1;
    when_kind when = points[w->k].when;
    return w->seen && ((when == WHEN_CKPT_RECORD && ckpt_has_record(w->when)) ||
                       (when == WHEN_LOG_ROW && log_has_row(w->when)) ||
                       (when == WHEN_EXISTS && moa_file_exists(w->when)));
}

/* Runs the command and kills it at point k; checks what it left. */
static void kill_at(int k) {
    char a[700];
    static watch w;
    memset(&w, 0, sizeof w);
    w.k = k;
    w.err = -1;
    pid_t pid = spawn(&w.err, points[k].when == WHEN_FAULT ? points[k].file : NULL);
    in_dir(w.when, work, points[k].file);
    snprintf(w.want, sizeof w.want, "moa compress: %s", points[k].stage);
    double t0 = moa_time_now();
    int killed = test_kill_when(pid, stage_reached, &w, 1, 300);
    int seen = w.seen;
    if (!killed && points[k].when != WHEN_FAULT) kill(pid, SIGKILL);
    close(w.err);
    int code = test_wait_exit(pid);
    CHECK_MSG(seen && code == 128 + SIGKILL && (killed || points[k].when == WHEN_FAULT),
              "%s: the run was not killed in that stage (exit %d, stage announced %d)", points[k].what, code, seen);
    if (points[k].unfinished) {
        in_dir(a, work, points[k].unfinished);
        CHECK_MSG(!moa_file_exists(a), "%s: %s exists after the kill: the stage had finished", points[k].what,
                  points[k].unfinished);
    }
    CHECK_MSG(!moa_file_exists(plan), "%s: a plan at -o after the kill", points[k].what);
    compare(points[k].what, k);   /* the stages before this one are final */
    fprintf(stderr, "  killed in %s after %.1f s\n", points[k].what, moa_time_now() - t0);
}

/* The plan at -o carries the validation summary: the accuracies of the three results files
 * the run wrote (read back with the results reader, not the pipeline's values) and the
 * held-out loss settings. */
static void check_validation_summary(void) {
    moa_plan *p = NULL;
    moa_plan_validation v;
    CHECK_OK(moa_plan_load(plan, &p));
    if (!p) return;
    CHECK_MSG(moa_plan_get_validation(p, &v) == 1, "the plan at -o has no validation summary");
    moa_plan_free(p);
    if (test_checks_failed_) return;
    CHECK_STR(v.task, "needle");
    CHECK_STR(v.calib_tasks, "needle");
    CHECK_EQ_INT(v.samples, 10);   /* 10 position bins x 1 */
    CHECK_EQ_INT(v.n_lengths, 1);
    CHECK_EQ_INT(v.length[0], 128);
    const char *tags[3] = {"dense", "uniform", "plan"};
    const double got[3] = {v.dense[0], v.uniform[0], v.plan[0]};
    for (int k = 0; k < 3; k++) {
        char name[64], path_[700];
        snprintf(name, sizeof name, "eval-needle-%s.json", tags[k]);
        in_dir(path_, work, name);
        moa_longeval_results *r = NULL;
        CHECK_OK(moa_longeval_read_json(path_, &r));
        if (r) CHECK_MSG(r->n_lengths == 1 && r->lengths[0].accuracy == got[k], "%s: summary %g, results %g",
                         tags[k], got[k], r->n_lengths ? r->lengths[0].accuracy : -2);
        moa_longeval_results_free(r);
    }
    CHECK_EQ_INT(v.heldout_length, 256);
    CHECK_EQ_INT(v.heldout_samples, 2);
    CHECK(v.heldout_dense > 0 && v.heldout_uniform > 0 && v.heldout_plan > 0);
}

TEST(kill_in_every_stage_then_resume) {
    char a[700], b[700];
    double t0 = moa_time_now();
    CHECK_EQ_INT(test_wait_exit(spawn(NULL, NULL)), 0);
    fprintf(stderr, "  uninterrupted run: %.1f s\n", moa_time_now() - t0);
    CHECK(sh("rm -rf '%s' && mkdir -p '%s'", stash, stash) == 0);
    for (int i = 0; i < N_FILES; i++) {
        in_dir(a, work, files[i].name);
        in_dir(b, stash, files[i].name);
        CHECK_MSG(copy_file(a, b) == 0, "the uninterrupted run left no %s", files[i].name);
    }
    in_dir(b, stash, "out.json");
    CHECK(copy_file(plan, b) == 0);
    check_validation_summary();
    char *ref_tables = report_tables();
    CHECK_MSG(ref_tables && strstr(ref_tables, "mean CE"), "the report lacks the validation or loss tables");
    if (test_checks_failed_) { free(ref_tables); return; }
    CHECK(sh("rm -rf '%s' '%s'", work, plan) == 0);
    for (int k = 0; k < N_POINTS; k++) kill_at(k);
    t0 = moa_time_now();
    CHECK_EQ_INT(test_wait_exit(spawn(NULL, NULL)), 0);
    fprintf(stderr, "  resumed to the end in %.1f s\n", moa_time_now() - t0);
    in_dir(a, stash, "out.json");
    in_dir(b, stash, "plan.json");
    CHECK_MSG(same_output(a, plan, b, plan), "the plan at -o differs from the uninterrupted run's");
    compare("after the last resume", N_POINTS);
    char *t = report_tables();
    CHECK_MSG(t && !strcmp(t, ref_tables), "the report's tables differ:\n%s\n-- reference:\n%s", t ? t : "(none)",
              ref_tables);
    free(t);
    free(ref_tables);
}

int main(void) {
    model = getenv("MOA_MODEL");
    if (!model || !*model || !moa_file_exists(model)) {
        fprintf(stderr, "MOA_MODEL not set or missing: skipped\n");
        return 77;
    }
    snprintf(plan, sizeof plan, "%s/kill_plan.json", MOA_TEST_TMPDIR);
    snprintf(work, sizeof work, "%s.work", plan);
    snprintf(stash, sizeof stash, "%s.reference", plan);
    char cmd[2000];
    snprintf(cmd, sizeof cmd, "rm -rf '%s' '%s' '%s'", plan, work, stash);
    if (system(cmd) != 0) return 1;
    RUN(kill_in_every_stage_then_resume);
    if (!test_checks_failed_) (void)!system(cmd);
    return test_summary();
}
