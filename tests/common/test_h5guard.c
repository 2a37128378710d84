/* test_h5guard.c - the child-process guard of the HDF5 readers (moa/h5guard.h):
 *   - every verdict from readers that pass, refuse, crash, abort, spin, block, run out of
 *     memory or change the file, with the message naming the file;
 *   - the real readers (moa_profile_load, moa_calib_read) on a valid file (control: it loads)
 *     and on hostile copies of it: truncated at many lengths and one byte inverted at every
 *     17th offset (the profile's: some of them crash HDF5 1.10.8 when read without the guard,
 *     e.g. byte 1071 inverted). The corpus of tests/cli/hostile (make_hostile.c) holds such files
 *     for the command line. Each is read or
 *     refused, this process never crashes, and no file is left behind. */
#include "moa/calib.h"
#include "moa/h5guard.h"
#include "moa/h5util.h"
#include "moa/common.h"
#include "moa/profile-file.h"
#include "test.h"
#include "tiny-calib.h"

#include <dirent.h>
#include <signal.h>
#include <stdint.h>
#include <sys/stat.h>
#include <unistd.h>

#if defined(__SANITIZE_ADDRESS__)
#define UNDER_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define UNDER_ASAN 1
#endif
#endif
#ifndef UNDER_ASAN
#define UNDER_ASAN 0
#endif

static char dir[512];
static void path(char *buf, const char *name) { snprintf(buf, 600, "%s/%s", dir, name); }

/* ---- the guard with test readers ----------------------------------------------------------- */
static moa_status r_ok(const char *p, void *d) { (void)p; (void)d; return MOA_OK; }
static moa_status r_refuse(const char *p, void *d) { (void)d; return moa_err(MOA_ERR_FORMAT, "%s: refused here", p); }
static moa_status r_segv(const char *p, void *d) { (void)p; (void)d; raise(SIGSEGV); return MOA_OK; }
static moa_status r_abort(const char *p, void *d) { (void)p; (void)d; abort(); }
static moa_status r_spin(const char *p, void *d) {
    (void)p; (void)d;
    for (volatile uint64_t i = 0;; i++) {}
    return MOA_OK;
}
static moa_status r_block(const char *p, void *d) { (void)p; (void)d; for (;;) pause(); return MOA_OK; }
static moa_status r_big(const char *p, void *d) {   /* 64 GiB: beyond any MOA_H5_GUARD_MB of the test */
    (void)p; (void)d;
    char *b = malloc((size_t)64 << 30);
    if (!b) return moa_err(MOA_ERR_NOMEM, "out of memory");
    free(b);
    return MOA_OK;
}
static moa_status r_append(const char *p, void *d) {
    (void)d;
    FILE *fp = fopen(p, "ab");
    if (fp) { fputs("more", fp); fclose(fp); }
    return MOA_OK;
}
static int hooked;
static void hook(void *d) { (void)d; hooked = 1; }
static moa_status r_hooked(const char *p, void *d) {
    (void)d;
    return hooked ? MOA_OK : moa_err(MOA_ERR_INTERNAL, "%s: no hook ran", p);
}

static void expect(const char *file, moa_h5_reader_fn r, moa_h5_guard_verdict want_v, moa_status want_st,
                   const char *needle, const char *what) {
    moa_h5_guard_verdict v = (moa_h5_guard_verdict)-1;
    moa_status st = moa_h5_guard(file, r, NULL, &v);
    CHECK_MSG(v == want_v && st == want_st, "%s: verdict %d status %d, expected %d / %d (%s)", what, (int)v, (int)st,
              (int)want_v, (int)want_st, moa_last_error());
    if (st < 0) CHECK_MSG(strstr(moa_last_error(), file) != NULL, "%s: message lacks the path: %s", what, moa_last_error());
    if (needle) CHECK_MSG(strstr(moa_last_error(), needle) != NULL, "%s: message lacks \"%s\": %s", what, needle,
                          moa_last_error());
}

TEST(guard_verdicts) {
    char f[600];
    path(f, "any.h5");
    FILE *fp = fopen(f, "wb");
    CHECK(fp != NULL);
    if (fp) { fputs("bytes", fp); fclose(fp); }
    expect(f, r_ok, MOA_H5_GUARD_PASSED, MOA_OK, NULL, "passing reader");
    expect(f, r_refuse, MOA_H5_GUARD_REFUSED, MOA_ERR_FORMAT, "refused here", "refusing reader");
    expect(f, r_segv, MOA_H5_GUARD_CRASHED, MOA_ERR_FORMAT,
           "malformed HDF5 file: the HDF5 library crashed reading it (signal 11", "SIGSEGV");
    expect(f, r_abort, MOA_H5_GUARD_CRASHED, MOA_ERR_FORMAT, "(signal 6", "abort");
    setenv("MOA_H5_GUARD_SECONDS", "1", 1);
    /* a spinning reader hits the CPU limit, or on a loaded machine (less than 1 s of CPU in
     * the 5 s of wall clock) the wall-clock one first: either is a limit verdict */
    expect(f, r_spin, MOA_H5_GUARD_LIMIT, MOA_ERR_FORMAT, NULL, "spinning reader");
    CHECK_MSG(strstr(moa_last_error(), "more than 1 s of CPU time") || strstr(moa_last_error(), "within 5 s"),
              "spinning reader: %s", moa_last_error());
    expect(f, r_block, MOA_H5_GUARD_LIMIT, MOA_ERR_FORMAT, "did not finish reading it within 5 s", "blocked reader");
    unsetenv("MOA_H5_GUARD_SECONDS");
    setenv("MOA_H5_GUARD_MB", "256", 1);
    if (!UNDER_ASAN) {   /* ASan ends the child on a failed allocation: a crash, not NOMEM */
        expect(f, r_big, MOA_H5_GUARD_LIMIT, MOA_ERR_NOMEM, "needs more than the 256 MiB", "64 GiB reader");
    } else {
        moa_h5_guard_verdict v;
        CHECK(moa_h5_guard(f, r_big, NULL, &v) < 0);
        CHECK(v == MOA_H5_GUARD_LIMIT || v == MOA_H5_GUARD_CRASHED);
    }
    unsetenv("MOA_H5_GUARD_MB");
    expect(f, r_append, MOA_H5_GUARD_FAILED, MOA_ERR_IO, "changed while it was being checked", "file changed");
    expect(f, r_hooked, MOA_H5_GUARD_REFUSED, MOA_ERR_INTERNAL, NULL, "no hook");
    moa_h5_guard_set_child_hook(hook, NULL);
    expect(f, r_hooked, MOA_H5_GUARD_PASSED, MOA_OK, NULL, "hook");
    moa_h5_guard_set_child_hook(NULL, NULL);
    CHECK(!hooked);   /* it ran in the child only */
    setenv("MOA_H5_GUARD", "0", 1);
    expect(f, r_segv, MOA_H5_GUARD_OFF, MOA_OK, NULL, "guard off: nothing run");
    unsetenv("MOA_H5_GUARD");
    char missing[600];
    path(missing, "missing.h5");
    expect(missing, r_ok, MOA_H5_GUARD_REFUSED, MOA_ERR_IO, NULL, "missing file");
    remove(f);
}

/* ---- the readers on hostile copies of a valid file ----------------------------------------- */
static char *listing(void) {
    char cmd[700];
    snprintf(cmd, sizeof cmd, "ls -A '%s'", dir);
    FILE *p = popen(cmd, "r");
    char *s = calloc(1, 8192);
    if (p && s) {
        size_t n = fread(s, 1, 8191, p);
        s[n] = '\0';
    }
    if (p) pclose(p);
    return s;
}

typedef moa_status (*load_fn)(const char *path);
static moa_status load_profile(const char *p) {
    moa_profile *x = NULL;
    moa_status st = moa_profile_load(p, &x);
    moa_profile_free(x);
    return st;
}
static moa_status load_calib(const char *p) {
    moa_calib_file *x = NULL;
    moa_status st = moa_calib_read(p, &x);
    moa_calib_file_free(x);
    return st;
}

/* Reads `n` bytes of `good` (with byte `at` set to `v` when at >= 0) as file `name`; counts
 * what happened. The command-line equivalent is in test_cli (tests/cli/hostile). */
static int crashed, refused, loaded;
static void try_bytes(load_fn load, const char *name, const char *good, size_t n, long at, int v) {
    char f[600];
    path(f, name);
    FILE *fp = fopen(f, "wb");
    if (!fp) { CHECK(fp != NULL); return; }
    if (n) fwrite(good, 1, n, fp);
    if (at >= 0 && (size_t)at < n) {
        fseek(fp, at, SEEK_SET);
        fputc(v, fp);
    }
    fclose(fp);
    moa_status st = load(f);
    if (st >= 0) { loaded++; return; }
    refused++;
    crashed += strstr(moa_last_error(), "the HDF5 library crashed") != NULL;
    CHECK_MSG(strstr(moa_last_error(), name) != NULL, "%s (%zu bytes, byte %ld = 0x%02x): message lacks the file: %s",
              name, n, at, v, moa_last_error());
}

static void hostile_copies(const char *kind, load_fn load, const char *good_name) {
    char good[600];
    path(good, good_name);
    CHECK_OK(load(good));   /* the control: a valid file loads through the guard */
    char *d = NULL;
    size_t n = 0;
    CHECK_OK(moa_read_file(good, &d, &n));
    if (!d) return;
    char *before = listing();
    crashed = refused = loaded = 0;
    double t0 = moa_time_now();
    for (size_t len = 0; len < n; len += len < 64 ? 8 : 97) try_bytes(load, "cut.h5", d, len, -1, 0);
    for (long at = 0; at < (long)n; at += 17) try_bytes(load, "flip.h5", d, n, at, ~d[at] & 0xff);
    char f[600];
    path(f, "cut.h5");
    remove(f);
    path(f, "flip.h5");
    remove(f);
    char *after = listing();
    CHECK_MSG(!strcmp(before, after), "%s: files left behind:\nbefore:\n%safter:\n%s", kind, before, after);
    fprintf(stderr, "  %s: %zu-byte file, %d hostile copies in %.1f s: %d loaded, %d refused (%d crashed libhdf5 in "
            "the guard's child)\n", kind, n, loaded + refused, moa_time_now() - t0, loaded, refused, crashed);
    CHECK(refused > 0);
    free(before);
    free(after);
    free(d);
}

TEST(profile_hostile_copies) {
    int64_t len[1] = {128};
    moa_profile *p = NULL;
    CHECK_OK(moa_profile_create(1, 2, 1, 64, 64, 16, len, 1, &p));
    if (!p) return;
    double a[16], s[2] = {0.1, 0.2};
    for (int i = 0; i < 16; i++) a[i] = 1.0 / (i + 1);
    CHECK_OK(moa_profile_add_sample(p, 0, a, a, s, 128));
    snprintf(p->model_sha256, sizeof p->model_sha256, "%064x", 1);   /* the file of make_hostile.c */
    char f[600];
    path(f, "good-profile.h5");
    CHECK_OK(moa_profile_save(p, f));
    moa_profile_free(p);
    hostile_copies("profile", load_profile, "good-profile.h5");
}

TEST(calib_hostile_copies) {
    tiny_calib c;
    tiny_calib_init(&c);
    char f[600];
    path(f, "good-calib.h5");
    CHECK_OK(moa_calib_write(f, &c.f));
    hostile_copies("calib", load_calib, "good-calib.h5");
}

int main(void) {
    snprintf(dir, sizeof dir, "%s/h5guard", MOA_TEST_TMPDIR);
    char cmd[1100];
    snprintf(cmd, sizeof cmd, "rm -rf '%s' && mkdir -p '%s'", dir, dir);
    if (system(cmd) != 0) return 1;
    moa_h5_init();
    RUN(guard_verdicts);
    RUN(profile_hostile_copies);
    RUN(calib_hostile_copies);
    return test_summary();
}
