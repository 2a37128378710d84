/* h5guard.c - runs an HDF5 reader in a forked child under limits before the caller trusts
 * the file (h5guard.h; the design is in docs/formats.md, "Untrusted HDF5 files"). */
#include "moa/h5guard.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#ifdef __linux__
#include <sys/prctl.h>
#endif
#include "moa/common.h"

/* Exit codes of the child (a signal is a crash or a limit). */
enum { CHILD_PASSED = 0, CHILD_REFUSED = 1, CHILD_NOMEM = 2 };

/* Set by a sanitizer runtime when one is linked (ASan, UBSan): a report in the child must
 * end it with a signal, not with the sanitizer's exit code (nor the fuzzer's crash file). */
extern void __sanitizer_set_death_callback(void (*callback)(void)) __attribute__((weak));

static moa_h5_guard_hook g_hook;
static void *g_hook_data;

void moa_h5_guard_set_child_hook(moa_h5_guard_hook hook, void *data) {
    g_hook = hook;
    g_hook_data = data;
}

typedef struct {
    int64_t mem_mb;   /* address space the child may add */
    int cpu_s;        /* CPU-time limit */
    int wall_s;       /* wall-clock limit (alarm in the child; the parent kills it 5 s later) */
} limits;

static int64_t env_int(const char *name, int64_t dflt, int64_t lo, int64_t hi) {
    const char *s = getenv(name);
    if (!s || !*s) return dflt;
    char *end;
    long long v = strtoll(s, &end, 10);
    if (*end || v < lo) return dflt;
    return v > hi ? hi : v;
}

static limits guard_limits(int64_t file_bytes) {
    int64_t mib = file_bytes >> 20;
    limits l;
    l.mem_mb = env_int("MOA_H5_GUARD_MB", 1024 + 16 * mib, 1, (int64_t)1 << 40);
    l.cpu_s = (int)env_int("MOA_H5_GUARD_SECONDS", 30 + mib, 1, 1 << 20);
    l.wall_s = 3 * l.cpu_s + 2;
    return l;
}

static int guard_off(void) {
    const char *s = getenv("MOA_H5_GUARD");
    return s && (!strcmp(s, "0") || !strcmp(s, "off") || !strcmp(s, "no"));
}

/* ---- the child ------------------------------------------------------------------------------ */
static void die_by_abort(void) {
    signal(SIGABRT, SIG_DFL);
    raise(SIGABRT);
    _exit(127);
}

/* Bytes of address space in use (/proc/self/statm), 0 if unknown. No stdio and no malloc:
 * the child's heap stays the parent's (see child_setup). */
static uint64_t address_space_bytes(void) {
    int fd = open("/proc/self/statm", O_RDONLY);
    if (fd < 0) return 0;
    char buf[64];
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0) return 0;
    uint64_t pages = 0;
    for (ssize_t i = 0; i < n && buf[i] >= '0' && buf[i] <= '9'; i++) pages = pages * 10 + (uint64_t)(buf[i] - '0');
    long ps = sysconf(_SC_PAGESIZE);
    return pages * (uint64_t)(ps > 0 ? ps : 4096);
}

static void lower_limit(int resource, rlim_t soft, rlim_t hard) {
    struct rlimit r;
    if (getrlimit(resource, &r) != 0) return;
    if (r.rlim_max != RLIM_INFINITY && hard > r.rlim_max) hard = r.rlim_max;
    if (soft > hard) soft = hard;
    if (r.rlim_cur != RLIM_INFINITY && soft > r.rlim_cur) soft = r.rlim_cur;
    r.rlim_cur = soft;
    r.rlim_max = hard;
    setrlimit(resource, &r);
}

/* Nothing here allocates: the child reads the file from the heap the parent has when it
 * reads the same file next, so a libhdf5 bug whose effect depends on memory layout (a wild
 * read that faults or not) behaves in the child as it would in the parent. */
static void child_setup(limits l) {
    /* crash and limit signals end the child by their default action (no inherited handler,
     * no core file); SIGINT/SIGTERM/SIGHUP too (the parent reports an interruption) */
    static const int sigs[] = {SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGABRT, SIGTRAP, SIGSYS, SIGALRM,
                               SIGXCPU, SIGXFSZ, SIGINT, SIGTERM, SIGHUP, SIGPIPE};
    sigset_t set;
    sigemptyset(&set);
    for (size_t i = 0; i < sizeof sigs / sizeof sigs[0]; i++) {
        signal(sigs[i], SIG_DFL);
        sigaddset(&set, sigs[i]);
    }
    sigprocmask(SIG_UNBLOCK, &set, NULL);
    if (__sanitizer_set_death_callback) __sanitizer_set_death_callback(die_by_abort);
#ifdef __linux__
    prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
#endif
    lower_limit(RLIMIT_CORE, 0, 0);
    uint64_t used = address_space_bytes();
    if (used) {
        uint64_t cap = used + ((uint64_t)l.mem_mb << 20);
        struct rlimit r;
        if (getrlimit(RLIMIT_AS, &r) == 0) lower_limit(RLIMIT_AS, (rlim_t)cap, r.rlim_max);
    }
    lower_limit(RLIMIT_CPU, (rlim_t)l.cpu_s, (rlim_t)l.cpu_s + 2);
    alarm((unsigned)l.wall_s);
}

static void write_all(int fd, const void *buf, size_t n) {
    const char *p = buf;
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return;
        p += w;
        n -= (size_t)w;
    }
}

static void child_main(int fd, limits l, const char *path, moa_h5_reader_fn reader, void *data) {
    child_setup(l);
    if (g_hook) g_hook(g_hook_data);
    moa_err_clear();
    moa_status st = reader(path, data);
    if (st >= 0) _exit(CHILD_PASSED);
    int32_t code = (int32_t)st;
    const char *msg = moa_last_error();
    write_all(fd, &code, sizeof code);
    write_all(fd, msg, strlen(msg));
    _exit(st == MOA_ERR_NOMEM ? CHILD_NOMEM : CHILD_REFUSED);
}

/* ---- the parent ----------------------------------------------------------------------------- */
static int same_file(const struct stat *a, const struct stat *b) {
    return a->st_dev == b->st_dev && a->st_ino == b->st_ino && a->st_size == b->st_size &&
           a->st_mtim.tv_sec == b->st_mtim.tv_sec && a->st_mtim.tv_nsec == b->st_mtim.tv_nsec;
}

static moa_status verdict_(moa_h5_guard_verdict *out, moa_h5_guard_verdict v, moa_status st) {
    if (out) *out = v;
    return st;
}

moa_status moa_h5_guard(const char *path, moa_h5_reader_fn reader, void *data, moa_h5_guard_verdict *verdict) {
    if (guard_off()) return verdict_(verdict, MOA_H5_GUARD_OFF, MOA_OK);
    struct stat before;
    if (stat(path, &before) != 0)
        return verdict_(verdict, MOA_H5_GUARD_REFUSED, moa_err(MOA_ERR_IO, "%s: %s", path, strerror(errno)));
    limits l = guard_limits((int64_t)before.st_size);
    int fds[2];
    if (pipe(fds) != 0)
        return verdict_(verdict, MOA_H5_GUARD_FAILED,
                        moa_err(MOA_ERR_IO, "%s: cannot check the HDF5 file in a child process (pipe: %s)", path,
                                strerror(errno)));
    fflush(NULL);   /* nothing buffered is written twice (the child ends with _exit anyway) */
    pid_t pid = fork();
    if (pid < 0) {
        int e = errno;
        close(fds[0]);
        close(fds[1]);
        return verdict_(verdict, MOA_H5_GUARD_FAILED,
                        moa_err(MOA_ERR_IO, "%s: cannot check the HDF5 file in a child process (fork: %s)", path,
                                strerror(e)));
    }
    if (pid == 0) {
        close(fds[0]);
        child_main(fds[1], l, path, reader, data);
    }
    close(fds[1]);
    /* The child's message, until it closes the pipe (it exits) or the wall limit passes. */
    char buf[4 + 1024];
    size_t got = 0;
    double deadline = moa_time_now() + l.wall_s + 5;
    int timed_out = 0;
    for (;;) {
        double left = deadline - moa_time_now();
        if (left <= 0) { timed_out = 1; break; }
        struct pollfd p = {fds[0], POLLIN, 0};
        int r = poll(&p, 1, (int)(left * 1000) + 1);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) continue;
        char chunk[512];
        ssize_t n = read(fds[0], chunk, sizeof chunk);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) break;
        size_t keep = (size_t)n < sizeof buf - 1 - got ? (size_t)n : sizeof buf - 1 - got;
        memcpy(buf + got, chunk, keep);
        got += keep;
    }
    close(fds[0]);
    if (timed_out) kill(pid, SIGKILL);
    int status = 0;
    while (waitpid(pid, &status, 0) < 0) {
        if (errno != EINTR) {
            return verdict_(verdict, MOA_H5_GUARD_FAILED,
                            moa_err(MOA_ERR_IO, "%s: lost the HDF5 check process (waitpid: %s)", path, strerror(errno)));
        }
    }
    if (WIFSIGNALED(status)) {
        int sig = WTERMSIG(status);
        if (timed_out || sig == SIGALRM)
            return verdict_(verdict, MOA_H5_GUARD_LIMIT,
                            moa_err(MOA_ERR_FORMAT, "%s: malformed HDF5 file: the HDF5 library did not finish "
                                    "reading it within %d s (MOA_H5_GUARD_SECONDS)", path, l.wall_s));
        if (sig == SIGXCPU)
            return verdict_(verdict, MOA_H5_GUARD_LIMIT,
                            moa_err(MOA_ERR_FORMAT, "%s: malformed HDF5 file: the HDF5 library used more than %d s "
                                    "of CPU time reading it (MOA_H5_GUARD_SECONDS)", path, l.cpu_s));
        if (sig == SIGINT || sig == SIGTERM || sig == SIGHUP)
            return verdict_(verdict, MOA_H5_GUARD_FAILED,
                            moa_err(MOA_ERR_INTERRUPTED, "%s: interrupted while checking the file", path));
        return verdict_(verdict, MOA_H5_GUARD_CRASHED,
                        moa_err(MOA_ERR_FORMAT, "%s: malformed HDF5 file: the HDF5 library crashed reading it "
                                "(signal %d, %s)", path, sig, strsignal(sig)));
    }
    int code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    if (code == CHILD_PASSED) {
        struct stat after;
        if (stat(path, &after) != 0 || !same_file(&before, &after))
            return verdict_(verdict, MOA_H5_GUARD_FAILED,
                            moa_err(MOA_ERR_IO, "%s: the file changed while it was being checked", path));
        return verdict_(verdict, MOA_H5_GUARD_PASSED, MOA_OK);
    }
    if ((code == CHILD_REFUSED || code == CHILD_NOMEM) && got >= 4) {
        int32_t st;
        memcpy(&st, buf, 4);
        buf[got] = '\0';
        if (st >= 0) st = MOA_ERR_FORMAT;
        if (code == CHILD_NOMEM)
            return verdict_(verdict, MOA_H5_GUARD_LIMIT,
                            moa_err(MOA_ERR_NOMEM, "%s: reading it needs more than the %lld MiB the HDF5 check "
                                    "allows (MOA_H5_GUARD_MB): %s", path, (long long)l.mem_mb, buf + 4));
        return verdict_(verdict, MOA_H5_GUARD_REFUSED, moa_err((moa_status)st, "%s", buf + 4));
    }
    return verdict_(verdict, MOA_H5_GUARD_CRASHED,
                    moa_err(MOA_ERR_FORMAT, "%s: malformed HDF5 file: the process reading it ended with code %d",
                            path, code));
}
