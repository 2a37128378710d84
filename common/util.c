/* util.c - checked allocation, atomic file output, whole-file reads, time, list parsing. */
#include "moa/common.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

int moa_mul_overflow(size_t a, size_t b, size_t *out) {
    if (a != 0 && b > SIZE_MAX / a) return -1;
    *out = a * b;
    return 0;
}

void *moa_alloc_array(size_t n, size_t size) {
    size_t bytes;
    if (moa_mul_overflow(n, size, &bytes)) return NULL;
    return malloc(bytes ? bytes : 1);
}

void *moa_calloc_array(size_t n, size_t size) {
    if (n == 0 || size == 0) return calloc(1, 1);
    size_t bytes;
    if (moa_mul_overflow(n, size, &bytes)) return NULL;
    return calloc(n, size);
}

void *moa_alloc_aligned(size_t n, size_t size) {
    size_t bytes;
    if (moa_mul_overflow(n, size, &bytes)) return NULL;
    bytes = (bytes + 63) & ~(size_t)63;
    if (bytes == 0) bytes = 64;
    void *p = NULL;
    if (posix_memalign(&p, 64, bytes) != 0) return NULL;
    return p;
}

void moa_free_aligned(void *p) { free(p); }

void moa_free_each(void *const *p, size_t n) {
    for (size_t i = 0; i < n; i++) free(p[i]);
}

void moa_free_aligned_each(void *const *p, size_t n) {
    for (size_t i = 0; i < n; i++) moa_free_aligned(p[i]);
}

char *moa_strdup(const char *s) {
    if (!s) return NULL;
    size_t n = strlen(s) + 1;
    char *d = malloc(n);
    if (d) memcpy(d, s, n);
    return d;
}

/* ---- atomic files ---------------------------------------------------------------------- */
char *moa_tmp_path_for(const char *path) {
    size_t n = strlen(path) + 32;
    char *t = malloc(n);
    if (t) snprintf(t, n, "%s.tmp.%ld", path, (long)getpid());
    return t;
}

static void fsync_dir_of(const char *path) {
    char *dir = moa_strdup(path);
    if (!dir) return;
    char *slash = strrchr(dir, '/');
    if (slash == dir) slash[1] = '\0';
    else if (slash) *slash = '\0';
    else strcpy(dir, ".");
    int fd = open(dir, O_RDONLY);
    if (fd >= 0) { fsync(fd); close(fd); }
    free(dir);
}

moa_status moa_rename_into_place(const char *tmp_path, const char *path) {
    int fd = open(tmp_path, O_RDONLY);
    if (fd >= 0) { fsync(fd); close(fd); }
    if (rename(tmp_path, path) != 0) {
        int e = errno;
        unlink(tmp_path);
        return moa_err(MOA_ERR_IO, "cannot rename '%s' to '%s': %s", tmp_path, path, strerror(e));
    }
    fsync_dir_of(path);
    return MOA_OK;
}

moa_status moa_atomic_open(moa_atomic_file *af, const char *path, const char *mode) {
    memset(af, 0, sizeof *af);
    af->path = moa_strdup(path);
    af->tmp_path = moa_tmp_path_for(path);
    if (!af->path || !af->tmp_path) {
        free(af->path); free(af->tmp_path);
        return moa_err(MOA_ERR_NOMEM, "out of memory opening '%s'", path);
    }
    af->fp = fopen(af->tmp_path, mode ? mode : "wb");
    if (!af->fp) {
        int e = errno;
        moa_status st = moa_err(MOA_ERR_IO, "cannot create '%s': %s", af->tmp_path, strerror(e));
        free(af->path); free(af->tmp_path);
        memset(af, 0, sizeof *af);
        return st;
    }
    return MOA_OK;
}

moa_status moa_atomic_commit(moa_atomic_file *af) {
    moa_status st = MOA_OK;
    if (!af->fp) return moa_err(MOA_ERR_INVALID_ARG, "atomic file is not open");
    int bad = ferror(af->fp);
    if (fflush(af->fp) != 0) bad = 1;
    if (!bad && fsync(fileno(af->fp)) != 0) bad = 1;
    if (fclose(af->fp) != 0) bad = 1;
    af->fp = NULL;
    if (bad) {
        st = moa_err(MOA_ERR_IO, "error writing '%s': %s", af->tmp_path, strerror(errno));
        unlink(af->tmp_path);
    } else {
        st = moa_rename_into_place(af->tmp_path, af->path);
    }
    free(af->path); free(af->tmp_path);
    af->path = af->tmp_path = NULL;
    return st;
}

void moa_atomic_abort(moa_atomic_file *af) {
    if (af->fp) fclose(af->fp);
    if (af->tmp_path) unlink(af->tmp_path);
    free(af->path); free(af->tmp_path);
    memset(af, 0, sizeof *af);
}

moa_status moa_read_file(const char *path, char **data, size_t *len) {
    *data = NULL;
    if (len) *len = 0;
    FILE *fp = fopen(path, "rb");
    if (!fp) return moa_err(MOA_ERR_IO, "cannot open '%s': %s", path, strerror(errno));
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap);
    if (!buf) { fclose(fp); return moa_err(MOA_ERR_NOMEM, "out of memory reading '%s'", path); }
    for (;;) {
        if (n + 1 >= cap) {
            if (cap > SIZE_MAX / 2) { free(buf); fclose(fp); return moa_err(MOA_ERR_NOMEM, "'%s' too large", path); }
            char *nb = realloc(buf, cap * 2);
            if (!nb) { free(buf); fclose(fp); return moa_err(MOA_ERR_NOMEM, "out of memory reading '%s'", path); }
            buf = nb; cap *= 2;
        }
        size_t got = fread(buf + n, 1, cap - 1 - n, fp);
        n += got;
        if (got == 0) break;
    }
    int bad = ferror(fp);
    fclose(fp);
    if (bad) { free(buf); return moa_err(MOA_ERR_IO, "error reading '%s'", path); }
    buf[n] = '\0';
    *data = buf;
    if (len) *len = n;
    return MOA_OK;
}

int moa_file_exists(const char *path) {
    struct stat sb;
    return stat(path, &sb) == 0;
}

double moa_time_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

double moa_peak_rss_bytes(void) {
    FILE *f = fopen("/proc/self/status", "r");
    if (!f) return -1;
    char line[256];
    double kb = -1;
    while (fgets(line, sizeof line, f))
        if (!strncmp(line, "VmHWM:", 6)) { kb = strtod(line + 6, NULL); break; }
    fclose(f);
    return kb < 0 ? -1 : kb * 1024.0;
}

int moa_peak_rss_reset(void) {
    int fd = open("/proc/self/clear_refs", O_WRONLY);
    if (fd < 0) return -1;
    int ok = write(fd, "5", 1) == 1;
    close(fd);
    return ok ? 0 : -1;
}

/* Splits "a,b,c" and converts each item with conv (0 ok, -1 bad; *end set past the item).
 * Returns the count, or -1 on an empty item, a bad item, a trailing comma or > max items. */
static int parse_list(const char *s, int max, int (*conv)(const char *p, char **end, int i, void *out),
                      void *out) {
    int n = 0;
    if (!s || !*s) return -1;
    for (const char *p = s;;) {
        char *end;
        if (n >= max || conv(p, &end, n, out) < 0 || end == p) return -1;
        n++;
        if (*end == '\0') return n;
        if (*end != ',' || !end[1]) return -1;
        p = end + 1;
    }
}

static int conv_long(const char *p, char **end, int i, void *out) {
    errno = 0;
    long v = strtol(p, end, 10);
    if (errno || *end == p) return -1;
    if (**end == 'k' || **end == 'K') {   /* x 1024; an overflowing product is refused */
        if (v > LONG_MAX / 1024 || v < LONG_MIN / 1024) return -1;
        v *= 1024;
        (*end)++;
    }
    ((long *)out)[i] = v;
    return 0;
}

static int conv_double(const char *p, char **end, int i, void *out) {
    errno = 0;
    double v = strtod(p, end);
    if (errno || *end == p) return -1;
    ((double *)out)[i] = v;
    return 0;
}

int moa_parse_int_list(const char *s, long *out, int max) { return parse_list(s, max, conv_long, out); }
int moa_parse_double_list(const char *s, double *out, int max) { return parse_list(s, max, conv_double, out); }

int moa_parse_bytes(const char *s, size_t *out) {
    if (!s || !*s) return -1;
    if (!strcmp(s, "max")) { *out = SIZE_MAX; return 0; }
    char *end;
    errno = 0;
    double v = strtod(s, &end), mul = 1;
    if (errno || end == s || !(v >= 0)) return -1;
    switch (*end) {
    case 'K': case 'k': mul = 1024.0; end++; break;
    case 'M': case 'm': mul = 1024.0 * 1024; end++; break;
    case 'G': case 'g': mul = 1024.0 * 1024 * 1024; end++; break;
    case 'T': case 't': mul = 1024.0 * 1024 * 1024 * 1024; end++; break;
    default: break;
    }
    if (*end) return -1;
    v *= mul;
    *out = v >= 0x1p63 ? SIZE_MAX : (size_t)v;
    return 0;
}
