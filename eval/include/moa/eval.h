/* moa/eval.h - the public API of eval/ (library moa_eval): validation of dense, uniform
 * (StreamingLLM) and planned attention. Other parts and the CLI include it as "moa/eval.h" (the
 * moa_eval target exposes eval/include); eval-internal.h is internal to eval/.
 *   - the LongEval "lines" runner: lengths x 10 position bins x K samples, seeded, greedy,
 *     scored, resumable through a fsync'ed JSONL results log;
 *   - aggregation (per cell, per length, effective context length, relative to a dense run);
 *   - outputs: results JSON, CSV, heat maps (SVG and PNG), comparisons (markdown + SVG);
 *   - the response loss of a calib.h5 under an attention setting (teacher-forced CE).
 * Procedure and formats: docs/eval.md.
 *
 * The runner is model-independent: the model side comes in as callbacks (moa_eval_model), so
 * unit tests use a fake responder; moa_eval_engine binds the real engine (one context per
 * length, planned context = length + max_new_tokens).
 *
 * Conventions: functions return moa_status (negative on error) with the message in
 * moa_last_error() naming the file / line / field; they never print or exit. Returned
 * objects and strings are owned by the caller (free with the matching *_free or free()).
 * Threading: no global state (beyond the engine's process default device, moa/model.h):
 * distinct objects may be used from distinct threads; one run per thread. An engine holds an
 * engine context, so it belongs to one thread at a time (moa/model.h); models, tokenizers and
 * plans it borrows are only read. Callbacks run on the thread that made the call. Files
 * (results logs, outputs) are not locked: one writer per path.
 */
#ifndef MOA_EVAL_H
#define MOA_EVAL_H

#include <stddef.h>
#include <stdint.h>

#include "moa/calib.h"
#include "moa/base.h"
#include "moa/runtime.h"

#ifdef __cplusplus
extern "C" {
#endif

struct moa_model;
struct moa_tokenizer;

#define MOA_LONGEVAL_FORMAT   "moa-longeval"
#define MOA_LONGEVAL_VERSION  1
#define MOA_LONGEVAL_BINS     10     /* position bins: floor(10 * query_index / lines) */
#define MOA_LONGEVAL_THRESHOLD 0.9   /* effective context length: accuracy >= 0.9 */

/* The relative effective-context rule at one length: 1 if accuracy `acc` holds against the
 * reference's `ref` (ref > 0 and acc >= threshold x ref), else 0 (NaN: 0). Used for
 * effective_length_rel and by `moa plan show` on a plan's validation summary. */
int moa_longeval_holds(double acc, double ref, double threshold);

/* ==== the model side ======================================================================= */
typedef struct {
    moa_calib_tokenizer tok;   /* count_tokens, encode_prompt, detokenize: all required */
    /* Called before the samples of each length (in order): prepare for prompts of up to
     * `length` tokens followed by max_new_tokens (planned context n_ctx = length + max_new).
     * Optional (NULL). */
    moa_status (*begin_length)(void *data, int length, int n_ctx);
    moa_respond_fn respond;    /* greedy answer (required) */
    void *data;                /* passed to begin_length and respond */
} moa_eval_model;

/* ==== attention settings and the real engine ============================================== */
typedef enum {
    MOA_EVAL_DENSE   = 0,
    MOA_EVAL_UNIFORM = 1,   /* StreamingLLM: sink + one window, density D at each planned N */
    MOA_EVAL_PLAN    = 2,   /* a moa-plan, windows evaluated at the planned N */
} moa_eval_attn_kind;

typedef struct {
    moa_eval_attn_kind kind;
    double density;          /* uniform: D in (0, 1] */
    int sink, block;         /* uniform: 64, 64 */
    const moa_plan *plan;    /* plan: borrowed, checked against the model by the caller */
    const moa_plan *match;   /* uniform: when set, the density at each planned N is this
                                plan's density at N (a baseline with the plan's memory at
                                every length, not only where its budget binds); borrowed */
    const char *plan_path;   /* plan: recorded (with its sha256 when the file is readable) */
    moa_kv_type kv_type;     /* KV storage of the contexts (moa_ctx_params.kv_type) */
} moa_eval_attention;
moa_eval_attention moa_eval_attention_default(void);   /* dense, sink 64, block 64, f16 KV */
/* Short label: "dense", "uniform-0.5", "plan:<file name>" (caller frees). */
char *moa_eval_attention_label(const moa_eval_attention *a);

typedef struct moa_eval_engine moa_eval_engine;
/* Binds model + tokenizer (borrowed; must outlive the engine) with an attention setting (*a
 * copied; its plan and match plan borrowed, they must outlive the engine too); contexts are
 * created per length by begin_length (uniform plans are built there for
 * N = length + max_new). chat = 1 wraps prompts with the model's chat template. The caller
 * owns *out (moa_eval_engine_free). Thread-safe. */
moa_status moa_eval_engine_create(const struct moa_model *m, const struct moa_tokenizer *tok,
                                  const moa_eval_attention *a, int chat, moa_eval_engine **out);
void moa_eval_engine_free(moa_eval_engine *e);        /* NULL ok; frees its context */
/* The engine's callbacks, with e as their data: valid while e lives, called from one thread
 * at a time. */
moa_eval_model moa_eval_engine_model(moa_eval_engine *e);
/* JSON object text describing model, tokenizer, chat template and attention (recorded in
 * the results' settings; compared on resume). Owned by the engine. */
const char *moa_eval_engine_settings(const moa_eval_engine *e);

/* ==== LongEval lines ======================================================================= */
typedef struct {
    const int *lengths;        /* [n_lengths] target prompt lengths in tokens (distinct) */
    int n_lengths;
    int samples_per_cell;      /* K samples per (length, bin): 2 */
    uint64_t seed;             /* 0 */
    int max_new_tokens;        /* 100 (LongEval's budget): SmolLM2-135M answers verbosely
                                  ("The record is over. ... The <REGISTER_CONTENT> in line
                                  x-y is <N>."); 16 or 48 tokens cut answers short */
    moa_fit_params fit;        /* moa_fit_default_params() */
    const moa_wordlist *words; /* labels (required) */
    int value_max;             /* 50000 */
    const char *task;          /* "lines" (LongEval, default) or a RULER-style retrieval task
                                  of calib-data: "needle" (single), "needle-multikey",
                                  "needle-multivalue", "needle-multiquery"; the position bin
                                  is then that of the asked needle, and a sample is correct
                                  when every expected value is in the answer */
    const char *label;         /* run label ("dense", "uniform-0.5", ...): required */
    const char *model_settings;/* JSON object text (moa_eval_engine_settings) or NULL */
    const char *log_path;      /* JSONL results log (required) */
    int resume;                /* 1: keep the rows of a matching log; 0: start a new log */
    int collect_only;          /* 1 (with resume): run nothing, aggregate the rows already in
                                  the log (cells without samples get accuracy -1) */
} moa_longeval_params;
moa_longeval_params moa_longeval_default_params(void);

/* The generator seed of sample k of (length, bin): splitmix64 chain over a domain tag
 * ("longeval"), seed, length, bin, k, folded to 32 bits. Distinct from calib seeds. */
uint32_t moa_longeval_sample_seed(uint64_t seed, int length, int bin, int k);

/* One scored sample. */
typedef struct {
    int length;          /* requested length (tokens) */
    int bin;             /* position bin 0..9 of the queried line */
    int k;               /* sample index inside the cell */
    uint32_t seed;       /* generator seed */
    int prompt_tokens;   /* tokens the model saw (chat template included) */
    int64_t lines;       /* record lines in the prompt */
    int query_index;     /* queried line */
    int new_tokens;      /* tokens generated */
    int correct;         /* moa_score_lines: 1 / 0 */
    char *expected;      /* the number, digits */
    char *output;        /* the answer text */
} moa_longeval_row;

typedef struct {
    int length, bin;
    int n, correct;
    double accuracy;     /* correct / n; -1 when n == 0 */
} moa_longeval_cell;

typedef struct {
    int length;
    int n, correct;
    double accuracy;            /* -1 when n == 0 */
    double mean_prompt_tokens;
    double ref_accuracy;        /* the reference's accuracy at this length, -1 if none */
} moa_longeval_length;

typedef struct {
    char *label;                /* run label */
    char *settings;             /* JSON object text (canonical, sorted keys) */
    moa_longeval_row *rows;     /* [n_rows], ordered by (length index, bin, k) */
    int64_t n_rows;
    moa_longeval_length *lengths;  /* [n_lengths], in the settings' order */
    int n_lengths;
    moa_longeval_cell *cells;   /* [n_lengths][MOA_LONGEVAL_BINS] */
    double threshold;           /* 0.9 */
    /* Largest length with accuracy >= threshold; 0 if none. */
    int effective_length;
    /* With a reference: largest length with accuracy >= threshold * reference accuracy, among
     * lengths the reference has with accuracy > 0; 0 if none; -1 without a reference. */
    int effective_length_rel;
    char *reference_label;      /* NULL without a reference */
} moa_longeval_results;

/* MOA_OK if `task` names an evaluation task (see moa_longeval_params.task; NULL = lines),
 * else MOA_ERR_INVALID_ARG listing the known ones: lets callers refuse it before any work. */
moa_status moa_longeval_task_check(const char *task);

/* Runs (or resumes) the evaluation and aggregates it. Progress: done/total samples, extra =
 * tokens processed (prompt + answer). Settings are checked before the log is touched. A
 * responder error stops the run: the finished rows stay in the log (resume continues); a log
 * this run created that holds no finished row is removed. The caller owns *out
 * (moa_longeval_results_free). */
moa_status moa_longeval_run(const moa_longeval_params *p, const moa_eval_model *m,
                            moa_progress_fn progress, void *progress_data,
                            moa_longeval_results **out);

/* One call for the real model: binds an engine for `a` (chat template on), takes
 * p->model_settings (when NULL) from the engine's settings and p->label (when NULL) from
 * moa_eval_attention_label (in a copy of *p), then runs moa_longeval_run; the engine is freed
 * before returning. */
moa_status moa_longeval_run_model(const struct moa_model *m, const struct moa_tokenizer *tok,
                                  const moa_eval_attention *a, const moa_longeval_params *p,
                                  moa_progress_fn progress, void *progress_data,
                                  moa_longeval_results **out);

/* Aggregates rows (copied) over `lengths` (rows of other lengths are an error). label and
 * settings (JSON object text or NULL = {}) are copied. The caller owns *out. */
moa_status moa_longeval_results_create(const char *label, const char *settings,
                                       const int *lengths, int n_lengths,
                                       const moa_longeval_row *rows, int64_t n_rows,
                                       moa_longeval_results **out);
/* Sets ref_accuracy per length and effective_length_rel from a reference run (dense), and
 * r's reference label (a copy). Lengths the reference lacks get ref_accuracy = -1 and do not
 * count. */
moa_status moa_longeval_set_reference(moa_longeval_results *r, const moa_longeval_results *ref);
void moa_longeval_results_free(moa_longeval_results *r);   /* NULL ok */
void moa_longeval_row_clear(moa_longeval_row *row);       /* frees its strings */

/* Results JSON (format in docs/eval.md), written atomically; read back with validation
 * (aggregates are recomputed from the samples; the reference accuracies are kept; the caller
 * owns *out). */
moa_status moa_longeval_write_json(const moa_longeval_results *r, const char *path);
moa_status moa_longeval_read_json(const char *path, moa_longeval_results **out);
/* "<prefix>-samples.csv" and "<prefix>-cells.csv" (with per-length rows, bin = "all"). */
moa_status moa_longeval_write_csv(const moa_longeval_results *r, const char *prefix);
/* Heat map: rows = position bins (0 at the top), columns = lengths, red-yellow-green. */
moa_status moa_longeval_write_heatmap_svg(const moa_longeval_results *r, const char *path);
moa_status moa_longeval_write_heatmap_png(const moa_longeval_results *r, const char *path);
/* Colour of an accuracy in 0..1 (red 0, yellow 0.5, green 1); grey for < 0 (no data). */
void moa_eval_heat_colour(double acc, uint8_t rgb[3]);

/* Several runs side by side: markdown table (rows = lengths, one column per run, then the
 * effective context lengths; *md malloc'd, the caller frees it) and an SVG line chart of
 * accuracy vs length (written atomically). */
moa_status moa_longeval_compare_md(const moa_longeval_results *const *runs, int n_runs,
                                   char **md);
moa_status moa_longeval_compare_svg(const moa_longeval_results *const *runs, int n_runs,
                                    const char *path);

/* ==== a plan's validation summary from results files (`moa plan annotate`) ================= */
/* The columns of moa_plan_validation, indices of moa_validation_sources.files. */
typedef enum {
    MOA_VALIDATION_DENSE   = 0,
    MOA_VALIDATION_UNIFORM = 1,
    MOA_VALIDATION_PLAN    = 2,
} moa_validation_method;

typedef struct {
    const char *task;                /* required: settings.task of every file */
    const char *const *files[3];     /* results JSON paths per moa_validation_method */
    int n_files[3];                  /* the plan's: at least 1; dense, uniform: 0 or more */
    const char *calib_tasks;         /* NULL: the plan's current summary's, else "" (unknown) */
    int64_t calib_seed;              /* < 0: the plan's current summary's, else 0 */
    int64_t heldout_length;          /* 0: no held-out loss; else heldout_samples > 0 and the */
    int heldout_samples;             /* three losses in nats/token (NAN: not measured) */
    double heldout_dense, heldout_uniform, heldout_plan;
} moa_validation_sources;
moa_validation_sources moa_validation_default_sources(void);   /* calib_seed -1, losses NAN */

/* The validation summary of `plan` (loaded from plan_path) from LongEval results files made
 * separately (`moa eval longeval`, one or more lengths each). Every file is read and checked
 * first; the error (MOA_ERR_FORMAT / MISMATCH / INVALID_ARG / RANGE) names the file and field:
 *   - a moa-longeval results file (moa_longeval_read_json) whose settings.task is src->task;
 *   - settings.seed and settings.samples_per_cell equal in every file;
 *   - settings.model.model_sha256 equal to the plan's model.sha256 (which must be set);
 *   - settings.model.attention.kind "dense" / "uniform" / "plan" as the file was given; a
 *     uniform baseline with the plan's sink and block (`--uniform-like PLAN`); a plan result's
 *     attention.sha256 the sha256 of plan_path's bytes, or of the plan without its validation
 *     summary as moa_plan_save writes it (so a plan annotated in place can be annotated again);
 *   - every length complete (samples_per_cell x 10 prompts scored), each length at most once
 *     per method, at most MOA_PLAN_VALIDATION_MAX lengths in all.
 * *out gets the lengths ascending with each method's accuracy (NAN where a method has no
 * result), samples = samples_per_cell x 10, the seed, and src's calibration and held-out
 * fields. Nothing is written; attach it with moa_plan_set_validation. Reads the files only;
 * thread-safe. */
moa_status moa_longeval_plan_validation(const moa_plan *plan, const char *plan_path,
                                        const moa_validation_sources *src, moa_plan_validation *out);

/* ==== PNG (RGB 8-bit, zlib stored blocks; no libpng) ======================================= */
/* Encodes rgb [h][w][3] (caller's, only read) into a malloc'ed PNG (*png, *len; the caller
 * frees it); pure otherwise, thread-safe. */
moa_status moa_png_encode_rgb(const uint8_t *rgb, int w, int h, uint8_t **png, size_t *len);
/* The same PNG written to path atomically (one writer per path). */
moa_status moa_png_write_rgb(const char *path, const uint8_t *rgb, int w, int h);

/* ==== response loss ======================================================================== */
typedef struct {
    int64_t n_samples, n_tokens;
    double mean_ce;          /* token-weighted mean cross-entropy over response tokens (nats) */
    double mean_sample_ce;   /* mean over samples (with a response) of each sample's mean CE */
    int n_buckets;
    int *buckets;            /* [n_buckets] length buckets, ascending */
    int64_t *bucket_samples, *bucket_tokens;
    double *bucket_ce;       /* token-weighted mean per bucket */
} moa_eval_loss;

/* For every sample of `f` (of bucket `bucket` only when > 0): teacher-forced forward of
 * prompt + response under the attention setting, planned context N = the sample's tokens
 * (uniform plans built at that N), CE of each response token given everything before it.
 * Progress: samples, extra = tokens. The result's arrays are freed by moa_eval_loss_clear.
 * Creates and frees its own contexts; m, a's plans and f are only read. */
moa_status moa_eval_response_loss(const struct moa_model *m, const moa_eval_attention *a,
                                  const moa_calib_file *f, int bucket,
                                  moa_progress_fn progress, void *progress_data,
                                  moa_eval_loss *out);
void moa_eval_loss_clear(moa_eval_loss *l);
/* {"label", "calib", "n_samples", "n_tokens", "mean_ce", "mean_sample_ce", "buckets": [...]}
 * as indented JSON text (caller frees). */
moa_status moa_eval_loss_to_json(const moa_eval_loss *l, const char *label, const char *source,
                                 char **json);

/* Writes text to path atomically (temporary file + rename). */
moa_status moa_eval_write_text(const char *path, const char *text);

#ifdef __cplusplus
}
#endif
#endif /* MOA_EVAL_H */
