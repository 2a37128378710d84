/* test_compress_resume.c - `moa compress` on SmolLM2 (label `model`, skipped without
 * MOA_MODEL) with small settings (lengths 256 and 512, 2 calibration samples at the objective
 * length 256 and by default half as many, 1, at the validation length 512; no validation runs):
 * one uninterrupted run; one killed with SIGKILL once the profile stage has checkpointed,
 * then rerun with the same command. The resumed run must reuse the finished calibration,
 * finish the profile from its checkpoint (byte-identical profile) and end with the same
 * plan: every unit's kind, alpha and beta, and the same sink and block. */
#include "moa/common.h"
#include "moa/runtime.h"
#include "test.h"
#include "test-proc.h"

#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static const char *model;

static void path(char *buf, const char *name) { snprintf(buf, 512, "%s/compress_%s", MOA_TEST_TMPDIR, name); }

static pid_t spawn_density(const char *plan, const char *density) {
    const char *argv[] = {MOA_BIN, "-q", "compress", "-m", model, "--density", density, "-o", plan,
                          "--calib-lengths", "256,512", "--calib-samples", "2", "--skip-eval", "--time-limit", "30",
                          NULL};
    return test_spawn(argv, -1, -1, NULL);
}

static pid_t spawn(const char *plan) { return spawn_density(plan, "0.5"); }

static void clean(const char *plan) {
    char cmd[1200];
    snprintf(cmd, sizeof cmd, "rm -rf '%s' '%s.work'", plan, plan);
    if (system(cmd) != 0) fprintf(stderr, "  (could not clean %s)\n", plan);
}

TEST(kill_in_profile_then_resume) {
    char full[512], cut[512], a[600], b[600], ckpt[600];
    path(full, "full.json");
    path(cut, "cut.json");
    clean(full);
    clean(cut);
    CHECK_EQ_INT(test_wait_exit(spawn(full)), 0);
    snprintf(ckpt, sizeof ckpt, "%s.work/profile.h5.ckpt.h5", cut);
    pid_t pid = spawn(cut);
    int killed = test_kill_when(pid, test_file_appears, ckpt, 5, 300);
    int code = test_wait_exit(pid);
    CHECK_MSG(killed && code == 128 + SIGKILL, "the run was not killed in the profile stage (exit %d)", code);
    snprintf(a, sizeof a, "%s.work/profile.h5", cut);
    CHECK(!moa_file_exists(a));   /* the profile was not finished */
    CHECK(!moa_file_exists(cut));
    snprintf(a, sizeof a, "%s.work/calib.h5", cut);
    struct stat before, after;
    CHECK(stat(a, &before) == 0);
    CHECK_EQ_INT(test_wait_exit(spawn(cut)), 0);
    CHECK(stat(a, &after) == 0);
    CHECK_MSG(before.st_mtim.tv_sec == after.st_mtim.tv_sec && before.st_mtim.tv_nsec == after.st_mtim.tv_nsec,
              "the finished calibration set was rebuilt instead of reused");
    snprintf(b, sizeof b, "%s.work/calib.h5", full);
    CHECK_MSG(test_same_bytes(a, b), "calibration sets differ");
    /* the report states the per-length calibration counts */
    char *rep = NULL;
    size_t rep_len = 0;
    snprintf(a, sizeof a, "%s.work/report.md", cut);
    CHECK_OK(moa_read_file(a, &rep, &rep_len));
    CHECK_MSG(rep && strstr(rep, "samples per length: 2 x 256, 1 x 512 (validation).") != NULL,
              "report lacks the calibration counts:\n%s", rep ? rep : "(none)");
    free(rep);
    snprintf(a, sizeof a, "%s.work/profile.h5", cut);
    snprintf(b, sizeof b, "%s.work/profile.h5", full);
    CHECK_MSG(test_same_bytes(a, b), "the resumed profile differs from the uninterrupted one");
    moa_plan *p = NULL, *q = NULL;
    CHECK_OK(moa_plan_load(full, &p));
    CHECK_OK(moa_plan_load(cut, &q));
    if (p && q) {
        CHECK_EQ_INT(moa_plan_sink(p), moa_plan_sink(q));
        CHECK_EQ_INT(moa_plan_block(p), moa_plan_block(q));
        CHECK_EQ_INT(moa_plan_sink(p), 16);   /* default for a 256-token shortest length */
        CHECK_EQ_INT(moa_plan_n_layer(p), moa_plan_n_layer(q));
        int diff = 0;
        for (int l = 0; l < moa_plan_n_layer(p); l++)
            for (int u = 0; u < moa_plan_n_units(p); u++)
                diff += moa_plan_unit_kind(p, l, u) != moa_plan_unit_kind(q, l, u) ||
                        moa_plan_unit_alpha(p, l, u) != moa_plan_unit_alpha(q, l, u) ||
                        moa_plan_unit_beta(p, l, u) != moa_plan_unit_beta(q, l, u);
        CHECK_MSG(diff == 0, "%d units differ between the resumed and the uninterrupted plan", diff);
        CHECK(moa_plan_density(q, 256) <= 0.5 + 1e-9 && moa_plan_density(q, 512) <= 0.5 + 1e-9);
    }
    moa_plan_free(p);
    moa_plan_free(q);
    /* moa generate --plan on a 2-token prompt plans for the plan's shortest profiled length
     * (256), not for prompt + generation (a few tokens, far below what the rules were fitted
     * on); an explicit --ctx is kept. */
    {
        char cmd[1400], line[512];
        const char *ctx_arg[2] = {"", "--ctx 40"};
        const char *want[2] = {"plan density 0.500 at 256 tokens", "at 40 tokens"};
        for (int k = 0; k < 2; k++) {
            snprintf(cmd, sizeof cmd, "'%s' -q generate -m '%s' --plan '%s' -p Hi -n 2 %s 2>&1", MOA_BIN, model,
                     full, ctx_arg[k]);
            FILE *fp = popen(cmd, "r");
            int found = 0;
            while (fp && fgets(line, sizeof line, fp)) found |= strstr(line, want[k]) != NULL;
            int rc = fp ? pclose(fp) : -1;
            CHECK_MSG(rc == 0 && found, "moa generate %s: exit %d, no '%s' on stderr", ctx_arg[k], rc, want[k]);
        }
    }
    /* Another budget in the same work directory: calibration and profile are reused, the
     * plan is re-optimised for the new budget (not the 0.5 plan reused). */
    snprintf(a, sizeof a, "%s.work/profile.h5", full);
    CHECK(stat(a, &before) == 0);
    CHECK_EQ_INT(test_wait_exit(spawn_density(full, "0.25")), 0);
    CHECK(stat(a, &after) == 0);
    CHECK_MSG(before.st_mtim.tv_sec == after.st_mtim.tv_sec && before.st_mtim.tv_nsec == after.st_mtim.tv_nsec,
              "the profile was rebuilt for a new budget");
    CHECK_OK(moa_plan_load(full, &p));
    if (p) CHECK_MSG(moa_plan_density(p, 256) <= 0.25 + 1e-9 && moa_plan_density(p, 512) <= 0.25 + 1e-9,
                     "plan density %.3f/%.3f at 256/512 after --density 0.25", moa_plan_density(p, 256),
                     moa_plan_density(p, 512));
    moa_plan_free(p);
    clean(full);
    clean(cut);
}

int main(void) {
    model = getenv("MOA_MODEL");
    if (!model || !*model || !moa_file_exists(model)) {
        fprintf(stderr, "MOA_MODEL not set or missing: skipped\n");
        return 77;
    }
    RUN(kill_in_profile_then_resume);
    return test_summary();
}
