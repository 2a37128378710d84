/* moa/h5guard.h - public header of moa_h5 (common/; with moa/h5util.h and
 * moa/profile-file.h): reading an untrusted HDF5 file without letting libhdf5 crash or hang
 * the process.
 *
 * libhdf5 (1.10) is not robust against hostile input: a crafted profile.h5 or calib.h5 can
 * make it read out of bounds, allocate gigabytes or loop (docs/fuzzing.md). moa_h5_guard runs
 * a reader in a forked child process first, under limits (address space, CPU time, wall
 * time, no core dump); only when the child's read succeeded does the caller read the file in
 * its own process (the same bytes, the same code: it cannot crash where the child did not).
 * The moa readers (moa_profile_load, moa_calib_read) call it themselves; docs/formats.md,
 * "Untrusted HDF5 files", describes the design and its cost (one extra read of the file).
 *
 * Limits (environment, read at each call):
 *   MOA_H5_GUARD=0          no child: the file is trusted (read in-process only)
 *   MOA_H5_GUARD_MB=N       memory the child may add to its address space, MiB
 *                           (default 1024 + 16 x the file's size)
 *   MOA_H5_GUARD_SECONDS=S  CPU-time limit of the child (default 30 + 1 s per MiB of file);
 *                           the wall-clock limit is 3 S + 2 s
 * POSIX only (fork). Call from one thread at a time (HDF5 is not thread-safe anyway).
 */
#ifndef MOA_H5GUARD_H
#define MOA_H5GUARD_H

#include "moa/base.h"

/* What happened to the child (append-only). */
typedef enum {
    MOA_H5_GUARD_PASSED  = 0,  /* the reader returned >= 0: the caller may read the file in-process */
    MOA_H5_GUARD_REFUSED = 1,  /* the reader refused the file cleanly; its status and message are returned */
    MOA_H5_GUARD_CRASHED = 2,  /* the child died of a signal inside the reader (libhdf5 crashed) */
    MOA_H5_GUARD_LIMIT   = 3,  /* the child hit the CPU, wall-clock or memory limit */
    MOA_H5_GUARD_FAILED  = 4,  /* the guard could not run (fork or pipe failed), or the file
                                  changed while the child was reading it */
    MOA_H5_GUARD_OFF     = 5,  /* MOA_H5_GUARD=0: nothing was checked */
} moa_h5_guard_verdict;

/* A reader run in the child: reads and validates the whole file, frees what it read. */
typedef moa_status (*moa_h5_reader_fn)(const char *path, void *data);

/* Runs reader(path, data) in a forked child under the limits above and waits for it.
 * Returns MOA_OK when the child's read succeeded (or the guard is off); the reader's own
 * status and message when it refused the file (MOA_H5_GUARD_REFUSED; a reader that ran out
 * of memory under the limit is MOA_H5_GUARD_LIMIT, status MOA_ERR_NOMEM); MOA_ERR_FORMAT with
 * "<path>: malformed HDF5 file: the HDF5 library crashed reading it (signal N, name)" when the
 * child died of a signal; MOA_ERR_FORMAT naming the limit when it ran out of time;
 * MOA_ERR_INTERRUPTED when it died of SIGINT/SIGTERM/SIGHUP; MOA_ERR_IO when the guard could
 * not run. Every message starts with the path. verdict (may be NULL) says which case it was.
 * In the child, crash signals take their default action and a sanitizer's death callback
 * raises SIGABRT, so a sanitizer report in libhdf5 counts as a crash. */
moa_status moa_h5_guard(const char *path, moa_h5_reader_fn reader, void *data, moa_h5_guard_verdict *verdict);

/* For test harnesses (the fuzzers): hook(data) runs in every child after the guard's own
 * setup, before the reader (e.g. to record where a crash happened). NULL removes it.
 * Process-wide; set it before the first guarded read. */
typedef void (*moa_h5_guard_hook)(void *data);
void moa_h5_guard_set_child_hook(moa_h5_guard_hook hook, void *data);

#endif /* MOA_H5GUARD_H */
