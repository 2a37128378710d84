/* fuzz_guard.h - the HDF5 harnesses (fuzz_profile, fuzz_calib), in two variants:
 *
 * The guarded one (default) reads every input the way `moa` does (h5guard.h): first in a
 * forked child under the guard's limits. When the child crashed or hit a limit, the hook below
 * has recorded whether libhdf5 was on the child's stack at that moment:
 *   - libhdf5 on the stack: a libhdf5 bug that the guard turns into a clean refusal in moa;
 *     counted (by crash site) and skipped, not a finding;
 *   - not on the stack: a bug in our code; the input is read again in this process, where
 *     libFuzzer reports it as a finding (abort() if it does not reproduce there).
 * Every other input (read or refused cleanly in the child) is then read in this process
 * without the guard, so libFuzzer sees the coverage and ASan/UBSan check our code. The child
 * and this process have the same address-space limit (set at start-up, 1 GiB above what the
 * fuzzer uses; allocations beyond it return NULL), so the in-process read takes the child's
 * path. At exit the harness prints what the guard caught. MOA_FUZZ_GUARDED_DIR=DIR keeps the
 * inputs that crashed libhdf5 there (the hostile corpus of tests/cli/hostile comes from such
 * files, docs/fuzzing.md). A fork and two reads per input: 15-25 inputs/s.
 *
 * The in-process one (MOA_FUZZ_INPROC: fuzz_profile_inproc, fuzz_calib_inproc) has no guard:
 * each input is read once, in this process, with the same address-space limit. A libhdf5
 * crash ends the process with its ASan report; these binaries run in libFuzzer's fork mode
 * (-fork=N -ignore_crashes=1 -ignore_ooms=1 -ignore_timeouts=1), which starts a new job and
 * keeps the input, and tests/fuzz/triage.sh then classifies every kept input by the innermost
 * frame of its report (libhdf5 or our code). Used for the 1M-execution runs (docs/fuzzing.md). */
#ifndef MOA_FUZZ_GUARD_H
#define MOA_FUZZ_GUARD_H

#include <dlfcn.h>
#include <execinfo.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <unistd.h>

#include "fuzz_h5.h"
#include "moa/h5guard.h"
#include "moa/common.h"

/* An allocation beyond the address-space limit returns NULL, as glibc's malloc does in moa,
 * instead of ending the process with an ASan report. */
const char *__asan_default_options(void) { return "allocator_may_return_null=1"; }
/* The fuzz build compiles UBSan's checks recoverable (-fsanitize=fuzzer-no-link,undefined):
 * without this, a report in our code would only be printed (and lost in fork mode's job logs),
 * not a finding. */
const char *__ubsan_default_options(void) { return "halt_on_error=1:print_stacktrace=1"; }

/* Once: this process's address-space limit, 1 GiB above what the fuzzer uses at its first
 * input (allocations beyond it return NULL, as in moa under the guard's limit). */
static void fuzz_limit_init(void) {
    static int done;
    if (done) return;
    done = 1;
    FILE *fp = fopen("/proc/self/statm", "r");
    unsigned long long pages = 0;
    if (fp) {
        if (fscanf(fp, "%llu", &pages) != 1) pages = 0;
        fclose(fp);
    }
    struct rlimit r;
    if (pages && getrlimit(RLIMIT_AS, &r) == 0) {
        r.rlim_cur = (rlim_t)pages * (rlim_t)sysconf(_SC_PAGESIZE) + ((rlim_t)1 << 30);
        setrlimit(RLIMIT_AS, &r);
    }
}

#ifdef MOA_FUZZ_INPROC
/* The in-process variant (fuzz_profile_inproc, fuzz_calib_inproc): no guard, every input is
 * read only in this process, at in-process speed. A crash inside libhdf5 ends the process
 * like any other; these harnesses run in libFuzzer's fork mode (-fork=N -ignore_crashes=1
 * ...), which restarts the job and keeps the input, and tests/fuzz/triage.sh classifies the
 * kept inputs afterwards by their ASan stack (libhdf5 or our code; docs/fuzzing.md). */
static int fuzz_guard(const unsigned char *data, size_t size, moa_h5_reader_fn check) {
    (void)data;
    (void)size;
    (void)check;
    fuzz_limit_init();
    return 1;
}
#else
/* ---- the guard ---------------------------------------------------------------------------- */
/* Written by the child at its death (a page shared with the parent). */
typedef struct {
    int sig;             /* the signal the child died of (0: the hook did not see it die) */
    int in_hdf5;         /* libhdf5 was on the child's stack */
    char site[128];      /* the innermost libhdf5 frame on that stack: function or module+offset */
} fuzz_guard_shared;
static fuzz_guard_shared *fuzz_shared;

/* What the guard caught: per (verdict, signal, site). */
#define FUZZ_SITES 64
static struct { int verdict, sig; char site[128]; long count; } fuzz_sites[FUZZ_SITES];
static long fuzz_runs, fuzz_caught;

static void fuzz_classify(int sig) {
    void *frames[128];
    int n = backtrace(frames, 128);
    fuzz_shared->sig = sig;
    for (int i = 0; i < n; i++) {
        Dl_info di;
        if (dladdr(frames[i], &di) && di.dli_fname && strstr(di.dli_fname, "libhdf5")) {
            const char *base = strrchr(di.dli_fname, '/');
            fuzz_shared->in_hdf5 = 1;
            if (di.dli_sname)
                snprintf(fuzz_shared->site, sizeof fuzz_shared->site, "%s", di.dli_sname);
            else
                snprintf(fuzz_shared->site, sizeof fuzz_shared->site, "%s+0x%lx", base ? base + 1 : di.dli_fname,
                         (unsigned long)((const char *)frames[i] - (const char *)di.dli_fbase));
            return;
        }
    }
}

static void fuzz_child_signal(int sig) {
    fuzz_classify(sig);
    signal(sig, SIG_DFL);
    raise(sig);   /* a fault re-faults on return; the others end the child here */
}

static void fuzz_child_death(void) {   /* a sanitizer report in the child */
    fuzz_classify(SIGABRT);
    signal(SIGABRT, SIG_DFL);
    raise(SIGABRT);
}

extern void __sanitizer_set_death_callback(void (*callback)(void));

static void fuzz_child_hook(void *data) {
    (void)data;
    void *warm[4];
    backtrace(warm, 4);   /* loads the unwinder now, not inside a signal handler */
    __sanitizer_set_death_callback(fuzz_child_death);
    const char *keep = getenv("MOA_FUZZ_CHILD_STDERR");   /* the child's ASan reports: off unless asked */
    if (!keep || strcmp(keep, "1")) {
        FILE *null = freopen("/dev/null", "w", stderr);
        (void)null;
    }
    static const int sigs[] = {SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGXCPU, SIGALRM};
    for (size_t i = 0; i < sizeof sigs / sizeof sigs[0]; i++) signal(sigs[i], fuzz_child_signal);
}

static void fuzz_guard_report(void) {
    fprintf(stderr, "\nfuzz guard: %ld inputs, %ld crashed or hung libhdf5 in the guard's child (moa refuses "
            "them; not findings), 0 crashes or hangs in our code:\n", fuzz_runs, fuzz_caught);
    for (int i = 0; i < FUZZ_SITES && fuzz_sites[i].count; i++)
        fprintf(stderr, "  %6ld  %s, signal %d (%s), innermost libhdf5 frame %s\n", fuzz_sites[i].count,
                fuzz_sites[i].verdict == MOA_H5_GUARD_LIMIT ? "limit" : "crash", fuzz_sites[i].sig,
                strsignal(fuzz_sites[i].sig), fuzz_sites[i].site);
}

/* Once: the shared page, the hook, equal address-space limits for the child and this process. */
static void fuzz_guard_init(void) {
    if (fuzz_shared) return;
    fuzz_shared = mmap(NULL, sizeof *fuzz_shared, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (fuzz_shared == MAP_FAILED) abort();
    moa_h5_guard_set_child_hook(fuzz_child_hook, NULL);
    fuzz_limit_init();
    setenv("MOA_H5_GUARD_MB", "1048576", 1);   /* the child keeps this process's limit */
    setenv("MOA_H5_GUARD_SECONDS", "2", 0);     /* wall 8 s: under libFuzzer's -timeout=10 */
    atexit(fuzz_guard_report);
}

static void fuzz_keep_guarded(const unsigned char *data, size_t size, int sig) {
    const char *dir = getenv("MOA_FUZZ_GUARDED_DIR");
    if (!dir || !*dir) return;
    uint64_t h = 1469598103934665603ull;   /* FNV-1a */
    for (size_t i = 0; i < size; i++) h = (h ^ data[i]) * 1099511628211ull;
    char path[1024];
    snprintf(path, sizeof path, "%s/sig%d-%016llx.h5", dir, sig, (unsigned long long)h);
    FILE *fp = fopen(path, "wb");
    if (fp) {
        fwrite(data, 1, size, fp);
        fclose(fp);
    }
}

/* Runs check(path) under the guard. Returns 1 when the input may be read in this process,
 * 0 when libhdf5 crashed or hung on it in the child (counted, skipped). A crash or hang of
 * the child outside libhdf5 runs `check` here, where it is a finding. */
static int fuzz_guard(const unsigned char *data, size_t size, moa_h5_reader_fn check) {
    fuzz_guard_init();
    fuzz_runs++;
    memset(fuzz_shared, 0, sizeof *fuzz_shared);
    moa_h5_guard_verdict v = MOA_H5_GUARD_PASSED;
    moa_status st = moa_h5_guard(fuzz_tmp_path(), check, NULL, &v);
    if (v == MOA_H5_GUARD_PASSED || v == MOA_H5_GUARD_REFUSED) return 1;
    if (v == MOA_H5_GUARD_LIMIT && st == MOA_ERR_NOMEM) return 1;   /* refused: memory limit */
    if (v == MOA_H5_GUARD_FAILED) {
        fprintf(stderr, "fuzz guard: %s\n", moa_last_error());
        abort();
    }
    if (!fuzz_shared->in_hdf5) {   /* our code: make it a finding here */
        fprintf(stderr, "fuzz guard: the child died outside libhdf5: %s\n", moa_last_error());
        check(fuzz_tmp_path(), NULL);
        abort();
    }
    int signo = fuzz_shared->sig;
    fuzz_caught++;
    fuzz_keep_guarded(data, size, signo);
    for (int i = 0; i < FUZZ_SITES; i++) {
        if (!fuzz_sites[i].count) {
            fuzz_sites[i].verdict = (int)v;
            fuzz_sites[i].sig = signo;
            snprintf(fuzz_sites[i].site, sizeof fuzz_sites[i].site, "%s", fuzz_shared->site);
        }
        if (fuzz_sites[i].verdict == (int)v && fuzz_sites[i].sig == signo &&
            !strcmp(fuzz_sites[i].site, fuzz_shared->site)) {
            fuzz_sites[i].count++;
            break;
        }
    }
    return 0;
}
#endif /* MOA_FUZZ_INPROC */

#endif
