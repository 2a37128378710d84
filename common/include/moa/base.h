/* moa/base.h - status codes, error messages and the log callback shared by every part.
 *
 * Public (installed with the runtime). Every library function that can fail returns a
 * moa_status: 0 on success, a negative code on error. The human-readable message of the
 * last error raised on the calling thread is returned by moa_last_error().
 */
#ifndef MOA_BASE_H
#define MOA_BASE_H

#ifdef __cplusplus
extern "C" {
#endif

/* Append-only: values never change meaning. */
typedef enum {
    MOA_OK               =   0,
    MOA_ERR_INVALID_ARG  =  -1,  /* a caller passed a bad argument */
    MOA_ERR_NOMEM        =  -2,  /* allocation failed */
    MOA_ERR_IO           =  -3,  /* open/read/write/rename failed */
    MOA_ERR_FORMAT       =  -4,  /* a file is malformed or of the wrong version */
    MOA_ERR_UNSUPPORTED  =  -5,  /* valid but not supported (type, architecture) */
    MOA_ERR_INFEASIBLE   =  -6,  /* optimisation problem has no solution */
    MOA_ERR_SOLVER       =  -7,  /* the MILP solver failed */
    MOA_ERR_MISMATCH     =  -8,  /* files/plans from different models or settings */
    MOA_ERR_DEVICE       =  -9,  /* requested device is unavailable */
    MOA_ERR_INTERRUPTED  = -10,  /* stopped by a signal or a time limit */
    MOA_ERR_INTERNAL     = -11,  /* an internal invariant failed (a bug) */
    MOA_ERR_RANGE        = -12,  /* a value is out of its allowed range (context full...) */
} moa_status;

/* Static name of a status code ("MOA_ERR_FORMAT: malformed file"). Never NULL. */
const char *moa_status_str(moa_status st);

/* Message of the last error raised on this thread (thread-local; "" if none).
 * Valid until the next failing moa_* call on the same thread. */
const char *moa_last_error(void);

typedef enum {
    MOA_LOG_ERROR = 0,
    MOA_LOG_WARN  = 1,
    MOA_LOG_INFO  = 2,
    MOA_LOG_DEBUG = 3,
} moa_log_level;

/* Log sink. Libraries never print; they call this. Without a callback, messages are dropped.
 * Set it once from the main thread before starting work; it may then be called from any
 * thread, so it must be thread-safe. */
typedef void (*moa_log_fn)(moa_log_level level, const char *msg, void *data);
void moa_log_set(moa_log_fn fn, void *data);

/* Progress of a long job: done out of total (total <= 0: unknown), in `unit`s. `rate_extra`
 * is an optional second counter (tokens, for example) reported as a rate; NULL if none. */
typedef void (*moa_progress_fn)(void *data, double done, double total, double extra,
                                const char *extra_unit);

#ifdef __cplusplus
}
#endif
#endif /* MOA_BASE_H */
