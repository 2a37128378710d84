/* test-proc.h - helpers for tests that run the moa binary as a child process (kill and
 * resume tests): start it, kill it when a condition holds, exit status of a child, byte
 * comparison of two files. */
#ifndef MOA_TEST_PROC_H
#define MOA_TEST_PROC_H

#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "moa/common.h"

/* Starts argv[0] with arguments argv (NULL-terminated), its stdout on out_fd and its stderr
 * on err_fd (-1: /dev/null), with the variables of env ("NAME=VALUE", NULL-terminated; may
 * be NULL) set. The caller closes its copies of out_fd / err_fd. Returns the pid (-1: fork
 * failed); exit code 127 when the program cannot be run. */
static inline pid_t test_spawn(const char *const *argv, int out_fd, int err_fd, const char *const *env) {
    pid_t pid = fork();
    if (pid == 0) {
        int null = open("/dev/null", O_WRONLY);
        dup2(out_fd >= 0 ? out_fd : null, 1);
        dup2(err_fd >= 0 ? err_fd : null, 2);
        for (int i = 0; env && env[i]; i++) {
            const char *eq = strchr(env[i], '=');
            char name[256];
            if (!eq || (size_t)(eq - env[i]) >= sizeof name) continue;
            memcpy(name, env[i], (size_t)(eq - env[i]));
            name[eq - env[i]] = '\0';
            setenv(name, eq + 1, 1);
        }
        execv(argv[0], (char *const *)argv);
        _exit(127);
    }
    return pid;
}

/* Calls ready(data) every poll_ms milliseconds for up to timeout_s seconds. When it returns 1,
 * pid is killed with SIGKILL and the result is 1; when it returns -1 (e.g. the process has
 * closed its output: it ended) or the time is up, the result is 0 and pid is left alone. */
static inline int test_kill_when(pid_t pid, int (*ready)(void *data), void *data, int poll_ms, double timeout_s) {
    double t0 = moa_time_now();
    while (moa_time_now() - t0 < timeout_s) {
        int r = ready(data);
        if (r > 0) {
            kill(pid, SIGKILL);
            return 1;
        }
        if (r < 0) return 0;
        struct timespec ts = {poll_ms / 1000, (long)(poll_ms % 1000) * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    return 0;
}

/* A ready() for test_kill_when: the file `path` exists. */
static inline int test_file_appears(void *path) { return moa_file_exists((const char *)path); }

/* Exit code of pid, or 128 + signal when it was killed. */
static inline int test_wait_exit(pid_t pid) {
    int status = 0;
    waitpid(pid, &status, 0);
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

/* 1 if both files exist and hold the same bytes. */
static inline int test_same_bytes(const char *a, const char *b) {
    char *x, *y;
    size_t nx, ny;
    if (moa_read_file(a, &x, &nx) < 0) return 0;
    if (moa_read_file(b, &y, &ny) < 0) { free(x); return 0; }
    int same = nx == ny && memcmp(x, y, nx) == 0;
    free(x);
    free(y);
    return same;
}

#endif
