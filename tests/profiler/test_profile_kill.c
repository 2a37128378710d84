/* test_profile_kill.c - `moa profile` killed with SIGKILL in the middle of a run, then
 * `--resume`, writes the same file (byte for byte) as an uninterrupted run. Uses a small
 * random model written as a GGUF file and a calibration file built in the test. */
#include "moa/calib.h"
#include "moa/model.h"
#include "moa/common.h"
#include "test.h"
#include "test-proc.h"
#include "../model/tiny_model.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static tiny_cfg cfg = {2, 64, 4, 2, 128, 64, 1024, 10000.0f, 1e-5f, 0};
static char model_path[512], calib_path[512];

static void path(char *buf, const char *name) { snprintf(buf, 512, "%s/kill_%s", MOA_TEST_TMPDIR, name); }

static void setup(void) {
    path(model_path, "tiny.gguf");
    if (tiny_write_file(cfg, 21, model_path) < 0) { fprintf(stderr, "cannot write %s\n", model_path); exit(1); }
    char sha[65];
    if (moa_sha256_file(model_path, sha) < 0) exit(1);
    moa_calib_file cf = {0};
    cf.model_sha256 = sha;
    cf.tokenizer = "tiny";
    cf.chat_template = "";
    cf.tool_version = "test";
    cf.build_params = "{}";
    cf.n_samples = 12;
    cf.samples = calloc((size_t)cf.n_samples, sizeof(moa_calib_sample));
    uint64_t s = 3;
    for (int i = 0; i < cf.n_samples; i++) {
        moa_calib_sample *c = &cf.samples[i];
        c->bucket = 512;
        c->n_tokens = 500 + i % 5;
        c->prompt_len = c->response_start = c->n_tokens - 16;
        c->response_end = c->n_tokens;
        c->tokens = malloc(sizeof(int32_t) * (size_t)c->n_tokens);
        for (int t = 0; t < c->n_tokens; t++) c->tokens[t] = (int32_t)((tiny_rand(&s) + 1) * 0.5 * cfg.n_vocab) % cfg.n_vocab;
        c->task = "lines";
        c->params = "{}";
        c->dense_correct = -1;
        c->dense_score = -1;
    }
    path(calib_path, "calib.h5");
    if (moa_calib_write(calib_path, &cf) < 0) { fprintf(stderr, "%s\n", moa_last_error()); exit(1); }
    for (int i = 0; i < cf.n_samples; i++) free(cf.samples[i].tokens);
    free(cf.samples);
}

static pid_t spawn(const char *out, int resume) {
    pid_t pid = fork();
    if (pid == 0) {
        int null = open("/dev/null", 1);
        if (null >= 0) { dup2(null, 2); dup2(null, 1); }
        execl(MOA_BIN, MOA_BIN, "-q", "profile", "-m", model_path, "-c", calib_path, "-o", out,
              "--block", "32", "--sink", "8", resume ? "--resume" : NULL, (char *)NULL);
        _exit(127);
    }
    return pid;
}

TEST(kill_then_resume) {
    char full[512], out[512], ckpt[600];
    path(full, "full.h5");
    path(out, "killed.h5");
    snprintf(ckpt, sizeof ckpt, "%s.ckpt.h5", out);
    unlink(full); unlink(out); unlink(ckpt);
    CHECK_EQ_INT(test_wait_exit(spawn(full, 0)), 0);
    /* start, wait for a checkpoint with some samples, kill -9 */
    pid_t pid = spawn(out, 0);
    int killed = 0;
    for (int i = 0; i < 4000 && !killed; i++) {
        struct timespec ts = {0, 5 * 1000 * 1000};
        nanosleep(&ts, NULL);
        if (moa_file_exists(ckpt)) {
            nanosleep(&ts, NULL);
            kill(pid, SIGKILL);
            killed = 1;
        }
    }
    int code = test_wait_exit(pid);
    CHECK_MSG(killed && code == 128 + SIGKILL, "the run was not killed mid-way (exit %d)", code);
    CHECK(!moa_file_exists(out));
    CHECK(moa_file_exists(ckpt));
    CHECK_EQ_INT(test_wait_exit(spawn(out, 1)), 0);
    CHECK_MSG(test_same_bytes(full, out), "resumed profile differs from the uninterrupted one");
    CHECK(!moa_file_exists(ckpt));
}

int main(void) {
    setup();
    RUN(kill_then_resume);
    return test_summary();
}
