/* moa/pipeline.h - the public API of pipeline/ (library moa_pipeline): `moa compress`, the whole
 * method in one resumable job, in a work directory. The CLI includes it as "moa/pipeline.h"
 * (the moa_pipeline target exposes pipeline/include); pipeline/ has no other header. Stages:
 *   calib.h5   calibration set (long-dependency tasks, the dense model's own answers)
 *   profile.h5 attention influence per layer, head and distance
 *   plan.json  GLPK MILP over elastic rules, Pareto front over lengths, selection on the
 *              validation length (then copied to the output path)
 *   eval-*     validation: needle retrieval (or LongEval lines) for dense, uniform
 *              (StreamingLLM at the plan's density, sinks and block) and the plan;
 *              response loss of uniform vs plan on held-out calibration samples
 *   report.md  the summary printed at the end
 * Each stage is skipped when its output is there and records this run's inputs and settings,
 * and the long stages resume from their checkpoints, so an interrupted run continues where it
 * stopped.
 *
 * Threading: a job is process-wide work. Its optimisation stage calls moa_opt_init (GLPK's
 * hooks, moa/optimizer.h: from the main thread), its stages read and write HDF5 files (not
 * thread-safe in the Debian build, moa/h5util.h), and it uses OpenMP and BLAS inside: run
 * one job at a time in a process, from the main thread, and one job per work directory at a
 * time (nothing locks it). The callbacks (progress, stage) run on the calling thread. */
#ifndef MOA_PIPELINE_H
#define MOA_PIPELINE_H

#include <stdint.h>
#include "moa/base.h"

struct moa_model;          /* moa/model.h */
struct moa_tokenizer;

#define MOA_COMPRESS_MAX_LENGTHS 16

typedef struct {
    double density;                 /* budget at every constrained length (required) */
    const char *workdir;            /* required */
    /* calibration (defaults derive from the model's training context C) */
    const char *calib_tasks;        /* "needle-multivalue,needle-multiquery": tasks small models
                                       answer right (validation uses other tasks; until
                                       2026-12-07 "longdep,lines", docs/results.md) */
    int n_calib_lengths;            /* 0: {C/16, C/8, C/4, C/2} (512 .. 4096 for 8192) */
    int calib_lengths[MOA_COMPRESS_MAX_LENGTHS];
    int calib_samples;              /* per objective length (12) */
    int validation_samples;         /* at the validation length, which only selects among the
                                       front's plans (0: calib_samples / 2 rounded up = 6) */
    uint64_t calib_seed;            /* 1 */
    int calib_max_new;              /* 64 */
    /* profile and plan granularity: sink -1 / block 0 = derived from the shortest calibration length n_min
       (block = the power of two in [16, 64] nearest below n_min / 32, sink = block: 16 for
       512, 64 from 2048 on, as the reference uses at 2k-8k) */
    int sink;
    int block;
    /* optimisation */
    int64_t validation_length;      /* 0: the longest calibration length */
    double extrapolate;             /* also constrain density at this multiple of the longest
                                       length, capped at C (2) */
    double time_limit;              /* per MILP solve, seconds (20) */
    int pareto_grid;                /* epsilon levels (5) */
    int no_widen;                   /* 1: keep the selected point as solved (no moa_opt_widen) */
    double far_weight;              /* moa_opt_params.far_weight (1; 0 = 1) */
    int q_head;                     /* 1: one rule per query head (MOA_GRAN_Q_HEAD; the KV
                                       group's memory is its widest head); 0: per KV head */
    /* validation */
    int n_eval_lengths;             /* 0: the calibration lengths, then doublings of the longest
                                       up to the context (the last: the largest multiple of 512
                                       leaving room for the answer): 512 .. 4096, 7680 for
                                       8192; 2048 .. 16384, 32256 for 32768 */
    int eval_lengths[MOA_COMPRESS_MAX_LENGTHS];
    int eval_samples;               /* per (length, position bin) (1) */
    const char *eval_task;          /* "needle" (single): a retrieval task the calibration did
                                       not use ("lines" = LongEval lines) */
    uint64_t eval_seed;             /* 2: differs from the calibration seed */
    int heldout_samples;            /* held-out calibration samples at the validation length
                                       for the response-loss comparison (4); 0 = skip */
    int skip_eval;                  /* 1: stop after the plan */
    moa_progress_fn progress;       /* per stage */
    void *progress_data;
    void (*stage)(void *data, const char *name);   /* announces each stage (may be NULL) */
} moa_compress_params;

moa_compress_params moa_compress_default_params(void);

/* Fills the defaults that derive from the model (lengths, block, sink, validation length and
 * samples, evaluation lengths) into *out and checks every setting against the model (lengths
 * plus answer budgets within its context, the validation length among the calibration
 * lengths, sink + block within the shortest length, task names, counts). MOA_ERR_INVALID_ARG
 * naming the setting; touches no file. moa_compress_run_model calls it first. *out keeps
 * in's pointers (borrowed strings and callbacks). Thread-safe. */
moa_status moa_compress_prepare(const struct moa_model *m, const moa_compress_params *in, moa_compress_params *out);

/* Loads the model the way the job uses it (f32 copies on the CPU, sha256 computed; the device
 * is the engine's process default, moa/model.h). The caller owns *out (moa_model_free). */
moa_status moa_compress_load_model(const char *model_path, struct moa_model **out);

/* Runs (or resumes) the job for model m (model_path names it in the report): settings first
 * (moa_compress_prepare; nothing is written when they fail), then the stages. A stage's output
 * in the work directory is reused only when it records exactly the inputs and settings this
 * run gives it (calib.h5: its build parameters; profile.h5: the calibration file's sha256,
 * sink, block, buckets; plan.json: plan.json.inputs), else rebuilt; the report says which.
 * The plan reaches out_plan only at the end, after validation (with skip_eval after the
 * optimisation, marked in the report as not validated). The report text (markdown, also in
 * workdir/report.md) goes to *report (malloc'd, the caller frees it; report may be NULL).
 * m is only read (borrowed for the call). */
moa_status moa_compress_run_model(const struct moa_model *m, const char *model_path, const moa_compress_params *p,
                                  const char *out_plan, char **report);
/* moa_compress_load_model + moa_compress_run_model. */
moa_status moa_compress_run(const char *model_path, const moa_compress_params *p,
                            const char *out_plan, char **report);

#endif
