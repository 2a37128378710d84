/* moa/common.h - public header of moa_common (common/), included as "moa/common.h" by every
 * part: errors, logging, checked allocation, atomic file output, timing, sha256, a stderr
 * progress bar. Not installed with libmoa: its public subset is moa/base.h (status codes, the
 * thread's last error, the log callback), which this header includes.
 *
 * Ownership: allocating helpers return memory the caller frees (free, or moa_free_aligned for
 * moa_alloc_aligned; moa_read_file's *data and moa_tmp_path_for's result with free); nothing
 * keeps a pointer to its arguments past the call, except moa_atomic_file (its own FILE and
 * paths until commit or abort) and moa_progress_bar (label and unit, for its life).
 * Threading: error messages are per thread (moa_err sets the calling thread's
 * moa_last_error()); the log sink is set once from the main thread (moa/base.h) and moa_log
 * may then be called from any thread; the other functions are reentrant on distinct objects
 * (a moa_sha256_ctx, moa_atomic_file or moa_progress_bar belongs to one thread at a time). */
#ifndef MOA_COMMON_H
#define MOA_COMMON_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include "moa/base.h"

#if defined(__GNUC__)
#define MOA_PRINTF(a, b) __attribute__((format(printf, a, b)))
#else
#define MOA_PRINTF(a, b)
#endif

/* ---- errors ---------------------------------------------------------------------------- */
/* Record a formatted message for moa_last_error() and return `st` (for `return moa_err(...)`). */
moa_status moa_err(moa_status st, const char *fmt, ...) MOA_PRINTF(2, 3);
/* Prefix the current message: "ctx: <previous message>". Returns st. */
moa_status moa_err_prefix(moa_status st, const char *fmt, ...) MOA_PRINTF(2, 3);
void moa_err_clear(void);

/* Internal invariant (a bug if false): logs and aborts in every build type. */
#define MOA_ASSERT(cond) \
    do { if (!(cond)) moa_assert_fail(#cond, __FILE__, __LINE__); } while (0)
void moa_assert_fail(const char *expr, const char *file, int line);

/* Propagate an error status. */
#define MOA_TRY(expr) do { moa_status st_ = (expr); if (st_ < 0) return st_; } while (0)

/* ---- logging --------------------------------------------------------------------------- */
void moa_log(moa_log_level level, const char *fmt, ...) MOA_PRINTF(2, 3);
#define moa_log_info(...)  moa_log(MOA_LOG_INFO, __VA_ARGS__)
#define moa_log_warn(...)  moa_log(MOA_LOG_WARN, __VA_ARGS__)
#define moa_log_debug(...) moa_log(MOA_LOG_DEBUG, __VA_ARGS__)
/* A ready-made sink for CLIs: "moa: level: msg" on stderr, filtered by max level (data = int*). */
void moa_log_stderr(moa_log_level level, const char *msg, void *data);

/* ---- memory ---------------------------------------------------------------------------- */
/* n*size with overflow check: returns 0 and sets *out, or -1 on overflow. */
int moa_mul_overflow(size_t a, size_t b, size_t *out);
/* Checked allocations (NULL on overflow or failure; the caller reports MOA_ERR_NOMEM). */
void *moa_alloc_array(size_t n, size_t size);
void *moa_calloc_array(size_t n, size_t size);
/* 64-byte aligned (for SIMD); free with moa_free_aligned. */
void *moa_alloc_aligned(size_t n, size_t size);
void moa_free_aligned(void *p);
/* Release the n buffers p[0 .. n) (NULL entries are fine) with free / moa_free_aligned. Through
 * MOA_FREE_ALL(a, b, ...) / MOA_FREE_ALIGNED_ALL(a, b, ...): the owned buffers of a struct
 * being released, in one call (C only: the pointers go in a compound literal). */
void moa_free_each(void *const *p, size_t n);
void moa_free_aligned_each(void *const *p, size_t n);
#define MOA_PTR_LIST_(...) (void *const[]){__VA_ARGS__}, sizeof((void *const[]){__VA_ARGS__}) / sizeof(void *)
#define MOA_FREE_ALL(...) moa_free_each(MOA_PTR_LIST_(__VA_ARGS__))
#define MOA_FREE_ALIGNED_ALL(...) moa_free_aligned_each(MOA_PTR_LIST_(__VA_ARGS__))
char *moa_strdup(const char *s);

/* ---- files ----------------------------------------------------------------------------- */
/* Atomic output: write to "<path>.tmp.<pid>", then fsync and rename into place. */
typedef struct {
    FILE *fp;
    char *path;      /* final path */
    char *tmp_path;  /* temporary path being written */
} moa_atomic_file;
moa_status moa_atomic_open(moa_atomic_file *af, const char *path, const char *mode);
moa_status moa_atomic_commit(moa_atomic_file *af);   /* closes, fsyncs, renames */
void moa_atomic_abort(moa_atomic_file *af);          /* closes and removes the temp file */
/* For writers that need a path (HDF5): a temp name next to `path` (caller frees), and the
 * rename that publishes it. */
char *moa_tmp_path_for(const char *path);
moa_status moa_rename_into_place(const char *tmp_path, const char *path);
/* Whole file into memory (NUL-terminated; *len excludes the NUL). */
moa_status moa_read_file(const char *path, char **data, size_t *len);
int moa_file_exists(const char *path);

/* ---- hashing --------------------------------------------------------------------------- */
typedef struct { uint32_t h[8]; uint64_t len; uint8_t buf[64]; size_t fill; } moa_sha256_ctx;
void moa_sha256_init(moa_sha256_ctx *c);
void moa_sha256_update(moa_sha256_ctx *c, const void *data, size_t n);
void moa_sha256_final(moa_sha256_ctx *c, uint8_t out[32]);
void moa_sha256_hex(const uint8_t dig[32], char hex[65]);
moa_status moa_sha256_file(const char *path, char hex[65]);

/* ---- time ------------------------------------------------------------------------------ */
double moa_time_now(void);      /* monotonic seconds */

/* ---- process memory (Linux /proc; -1 / nonzero where unavailable) ----------------------- */
double moa_peak_rss_bytes(void);  /* the process's peak resident set (VmHWM) */
int moa_peak_rss_reset(void);     /* restarts the peak at the current RSS (clear_refs 5); 0 ok */

/* ---- progress bar on stderr (a moa_progress_fn implementation) ------------------------- */
typedef struct {
    const char *label;
    const char *unit;
    double t_start;
    double t_last;
    int is_tty;
    int finished;
} moa_progress_bar;
void moa_progress_bar_init(moa_progress_bar *pb, const char *label, const char *unit);
/* Use as callback with data = moa_progress_bar*. Redraws at most ~10 times per second. */
void moa_progress_bar_cb(void *data, double done, double total, double extra,
                         const char *extra_unit);
void moa_progress_bar_finish(moa_progress_bar *pb);

/* ---- small string helpers -------------------------------------------------------------- */
/* Parses "a,b,c" integers into out[max]; returns count or -1 on a bad item. */
int moa_parse_int_list(const char *s, long *out, int max);
int moa_parse_double_list(const char *s, double *out, int max);
/* A byte count: a non-negative number with an optional K/M/G/T suffix (powers of 1024,
 * either case), or "max" (SIZE_MAX). Returns 0, or -1 (out untouched) if malformed. */
int moa_parse_bytes(const char *s, size_t *out);

#endif /* MOA_COMMON_H */
