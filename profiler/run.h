/* run.h - `moa profile` as a library call: calibration file in, moa-profile v1 out, samples
 * bucketed by their length bucket, sharding, per-sample checkpoints and resume, atomic
 * output; and the shard merge.
 *
 * Threading: both calls read and write HDF5 files (calib.h5, profiles, checkpoints), and the
 * Debian libhdf5 is not thread-safe (common/h5util.h): call them from one thread at a time
 * in the process, not concurrently with other HDF5 users; the calibration file is read in a
 * forked child first (h5guard.h). One run per output (and checkpoint) path at a time: the
 * files are not locked. */
#ifndef MOA_PROFILE_RUN_H
#define MOA_PROFILE_RUN_H

#include "profiler.h"

typedef struct {
    moa_profiler_params prof;     /* sink, block, eps */
    int shard_index, shard_count; /* this run takes samples i with i % count == index (0/1) */
    int resume;                   /* reuse a matching checkpoint (default 0: start over) */
    const char *checkpoint_path;  /* NULL: "<out>.ckpt" */
    int64_t max_samples;          /* stop after this many samples of the shard (0: all); the
                                     checkpoint is kept and no output is written */
    moa_progress_fn progress;     /* samples done / total, extra = tokens */
    void *progress_data;
} moa_profile_run_params;

moa_profile_run_params moa_profile_run_default_params(void);

/* Profiles every sample of the shard and writes out_path atomically (on p->prof.device). The
 * model must have its sha256 computed and, on the CPU, be loaded with f32 weights; the
 * calibration file must come from the same model (MOA_ERR_MISMATCH otherwise). Checkpoint
 * after every sample: the partial profile (its sample counts tell how far it got) and the
 * settings it belongs to; resume continues from it and ends with the same file an
 * uninterrupted run writes. m is only read (borrowed for the call); the progress callback
 * runs on the calling thread. */
moa_status moa_profile_run(const moa_model *m, const char *calib_path, const char *out_path,
                           const moa_profile_run_params *p);

/* Weighted merge of shard profiles into out_path (atomic); refuses profiles of different
 * models or settings. */
moa_status moa_profile_merge_files(const char *const *inputs, int n_inputs, const char *out_path);

#endif
