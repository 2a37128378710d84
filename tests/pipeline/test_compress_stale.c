/* test_compress_stale.c - `moa compress` reruns in one work directory (label `model`, skipped
 * without MOA_MODEL; lengths 256 and 512, one calibration sample each, no validation):
 *   1. a run with the defaults (tasks longdep,lines, seed 1);
 *   2. the same work directory with --calib-seed 7 --calib-tasks needle: the calibration set
 *      must be rebuilt with the new settings, the profile re-made from it (its calib_sha256 is
 *      the new file's) and the plan's provenance must name the new file; the report says
 *      "built in this run" (issue 16 case 3: both files stayed byte-identical while the report
 *      said "tasks needle, seed 7");
 *   3. the same command again: every stage reused, and the report says so;
 *   4. the same settings with validation on: killed once the first validation log exists,
 *      the plan must not be at -o yet (issue 16 case 9). */
#include "moa/calib.h"
#include "moa/common.h"
#include "moa/profile-file.h"
#include "test.h"
#include "test-proc.h"

#include <fcntl.h>
#include <unistd.h>

static const char *model;
static char plan[512], work[600];

/* moa compress with the common settings and `extra` (NULL-terminated); stdout to <plan>.stdout. */
static pid_t spawn(const char *const *extra) {
    char rep[700];
    snprintf(rep, sizeof rep, "%s.stdout", plan);
    int fd = open(rep, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    const char *argv[40] = {MOA_BIN, "-q", "compress", "-m", model, "--density", "0.5", "-o", plan,
                            "--calib-lengths", "256,512", "--calib-samples", "1", "--time-limit", "5"};
    int n = 15;
    for (int i = 0; extra[i] && n < 39; i++) argv[n++] = extra[i];
    argv[n] = NULL;
    pid_t pid = test_spawn(argv, fd, -1, NULL);
    if (fd >= 0) close(fd);
    return pid;
}

static char *read_text(const char *path) {
    char *s = NULL;
    size_t n = 0;
    if (moa_read_file(path, &s, &n) < 0) return NULL;
    return s;
}

static void in_work(char *buf, const char *name) { snprintf(buf, 700, "%s/%s", work, name); }

TEST(stale_stages_are_rebuilt_and_reported) {
    char calib[700], profile[700], report[700], copy[700], cmd[2000];
    in_work(calib, "calib.h5");
    in_work(profile, "profile.h5");
    in_work(report, "report.md");
    snprintf(copy, sizeof copy, "%s.first-calib.h5", plan);
    const char *skip[] = {"--skip-eval", NULL};
    CHECK_EQ_INT(test_wait_exit(spawn(skip)), 0);
    snprintf(cmd, sizeof cmd, "cp '%s' '%s'", calib, copy);
    CHECK(system(cmd) == 0);
    /* 2. other calibration settings in the same directory */
    const char *other[] = {"--skip-eval", "--calib-seed", "7", "--calib-tasks", "needle", NULL};
    CHECK_EQ_INT(test_wait_exit(spawn(other)), 0);
    CHECK_MSG(!test_same_bytes(calib, copy), "calib.h5 was reused although seed and tasks changed");
    moa_calib_file *cf = NULL;
    CHECK_OK(moa_calib_read(calib, &cf));
    if (cf) {
        CHECK_MSG(strstr(cf->build_params, "\"seed\":7") && strstr(cf->build_params, "needle-single") &&
                  !strstr(cf->build_params, "longdep"), "build_params: %s", cf->build_params);
        for (int64_t i = 0; i < cf->n_samples; i++) CHECK_STR(cf->samples[i].task, "needle-single");
    }
    moa_calib_file_free(cf);
    char calib_sha[65] = "";
    CHECK_OK(moa_sha256_file(calib, calib_sha));
    moa_profile *pr = NULL;
    CHECK_OK(moa_profile_load(profile, &pr));
    if (pr) {
        CHECK_MSG(!strcmp(pr->calib_sha256, calib_sha), "the profile records calib %s, the file is %s",
                  pr->calib_sha256, calib_sha);
        CHECK_EQ_INT(pr->shard_count, 1);
    }
    moa_profile_free(pr);
    char *pj = read_text(plan);
    CHECK_MSG(pj && strstr(pj, calib_sha), "the plan's provenance does not name calib %s", calib_sha);
    free(pj);
    char *rep = read_text(report);
    CHECK_MSG(rep && strstr(rep, "Calibration (built in this run") && strstr(rep, "Profile (built in this run") &&
              strstr(rep, "tasks needle, seed 7") && strstr(rep, "NOT VALIDATED"), "report:\n%s", rep ? rep : "");
    free(rep);
    /* 3. the same command again: everything reused, and said */
    CHECK_EQ_INT(test_wait_exit(spawn(other)), 0);
    rep = read_text(report);
    CHECK_MSG(rep && strstr(rep, "Calibration (reused") && strstr(rep, "Profile (reused") &&
              strstr(rep, "(plan reused from"), "report:\n%s", rep ? rep : "");
    free(rep);
    /* 4. with validation: no plan at -o while validation runs */
    remove(plan);
    char log[700];
    in_work(log, "eval-needle-dense.jsonl");
    remove(log);
    const char *val[] = {"--calib-seed", "7", "--calib-tasks", "needle", "--eval-lengths", "256", "--heldout", "0", NULL};
    pid_t pid = spawn(val);
    int killed = test_kill_when(pid, test_file_appears, log, 5, 300);
    int code = test_wait_exit(pid);
    CHECK_MSG(killed && code == 128 + SIGKILL, "not killed in validation (exit %d)", code);
    CHECK_MSG(!moa_file_exists(plan), "the plan was at -o before validation finished");
    remove(copy);
}

int main(void) {
    model = getenv("MOA_MODEL");
    if (!model || !*model || !moa_file_exists(model)) {
        fprintf(stderr, "MOA_MODEL not set or missing: skipped\n");
        return 77;
    }
    snprintf(plan, sizeof plan, "%s/stale_plan.json", MOA_TEST_TMPDIR);
    snprintf(work, sizeof work, "%s.work", plan);
    char cmd[1400];
    snprintf(cmd, sizeof cmd, "rm -rf '%s' '%s'", plan, work);
    if (system(cmd) != 0) return 1;
    RUN(stale_stages_are_rebuilt_and_reported);
    if (!test_checks_failed_) (void)!system(cmd);
    return test_summary();
}
