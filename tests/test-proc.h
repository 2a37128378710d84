/* test-proc.h - helpers for tests that run the moa binary as a child process (kill and
 * resume tests): exit status of a child, byte comparison of two files. */
#ifndef MOA_TEST_PROC_H
#define MOA_TEST_PROC_H

#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include "moa-common.h"

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
