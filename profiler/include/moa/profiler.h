/* moa/profiler.h - the public API of profiler/: attention influence of calibration samples
 * (the activation backward pass with the fused influence accumulation) and `moa profile` /
 * `moa merge` as library calls. Other parts and the CLI include it as "moa/profiler.h" (the
 * moa_profiler target exposes profiler/include); the other headers of profiler/ are internal
 * to it. Ownership and threading are stated per section and per function.
 */
#ifndef MOA_PROFILER_H
#define MOA_PROFILER_H

#include <stddef.h>
#include <stdint.h>
#include "moa/model.h"
#include "moa/backend.h"   /* moa_device_kind (plain C; kernels/) */

#ifdef __cplusplus
extern "C" {
#endif

/* ==== influence of a sample (backward.c, backward-cuda.c) ================================= */
/* Attention influence of a calibration sample: a forward pass keeping each
 * layer's input (and, within a memory budget, the activations its backward reads), the
 * response loss (mean cross-entropy over the response tokens only), and a backward pass for
 * activation gradients only (no weight gradients), recomputing from its saved input each
 * layer whose activations were not kept, with the fused attention backward accumulating the
 * influence histograms (moa/attn-train.h). See docs/profiler.md.
 *
 * A moa_profiler holds the scratch for samples of up to n_max tokens for one model; it
 * belongs to one thread at a time (its kernels use OpenMP internally). It runs on the CPU
 * (backward.c; the model must have f32 weight copies, moa_model_params.f32_weights = 1) or
 * on a CUDA device (backward-cuda.c, built with the CUDA backend: the same sample on the
 * device with its own device context, weights uploaded once per model and device as f32 or
 * bf16 and shared with the model's other CUDA users; see docs/gpu.md).
 *
 * Ownership and threading are stated per function. A profiler borrows its model (only read;
 * it must outlive the profiler) and owns its scratch. Nothing in it is process-wide, so
 * distinct profilers may run in distinct threads on distinct histograms (their OpenBLAS and
 * OpenMP calls then overlap: not covered by the tests).
 */

typedef struct {
    int sink;      /* keys j < sink are the sink columns (default 64) */
    int block;     /* distance-bin width (default 64) */
    float eps;     /* influence denominator regulariser (default 1e-6) */
    moa_device_kind device;  /* MOA_DEVICE_CPU, MOA_DEVICE_CUDA (MOA_ERR_DEVICE without a
                                device or CUDA backend) or MOA_DEVICE_AUTO (CUDA when a device
                                exists); default: the engine's process default device
                                (moa_ctx_set_default_device; CPU unless set) */
    int device_index;        /* CUDA ordinal (default 0) */
    int device_bf16;         /* CUDA: weights and GEMM inputs in bf16 instead of f32 (half
                                the weight memory, about 1e-2 relative error in the
                                histograms instead of 1e-5; default 0) */
    size_t act_budget_bytes; /* CPU: bytes for the activations the forward keeps for the
                                backward, (2 nq + 2 nkv + d + 2 ff + n_head) floats per token
                                and layer (20.3 KiB for SmolLM2-135M: 2.4 GiB for 30 layers x
                                4096 tokens). The last layers that fit are kept, the others
                                recomputed from their input; the results are bitwise the same
                                either way. 0: recompute every layer; SIZE_MAX: keep all.
                                Default: a quarter of physical memory (6 GiB of 24 GiB keeps
                                every layer of SmolLM2-135M up to 8192 tokens), or the
                                environment variable MOA_PROFILER_ACT_BUDGET (bytes, optional
                                K/M/G/T suffix, powers of 1024, or "max"). If the store
                                cannot be allocated, halves are tried, then none. Unused on
                                CUDA. */
} moa_profiler_params;

typedef struct moa_profiler moa_profiler;

/* Defaults as documented above. Reads the environment (MOA_PROFILER_ACT_BUDGET), the physical
 * memory size and the engine's process default device without synchronisation (see
 * moa_ctx_set_default_device). */
moa_profiler_params moa_profiler_default_params(void);
/* A profiler of model m for samples of 2 .. n_max tokens. m is borrowed (must outlive the
 * profiler); *p is copied (NULL = defaults). The caller owns *out (moa_profiler_free).
 * MOA_ERR_INVALID_ARG for bad settings or, on the CPU, a model without f32 weights.
 * Thread-safe, also for several profilers of one model (CUDA: the model's device weights
 * are uploaded once, under a process-wide lock). */
moa_status moa_profiler_create(const moa_model *m, int64_t n_max, const moa_profiler_params *p,
                               moa_profiler **out);
/* Accepts NULL. Frees the profiler's scratch (not the model, nor its shared device weights). */
void moa_profiler_free(moa_profiler *p);
/* The device the profiler runs on (MOA_DEVICE_CPU or MOA_DEVICE_CUDA). */
moa_device_kind moa_profiler_device(const moa_profiler *p);
/* Layers whose activations an n-token sample keeps from the forward pass instead of
 * recomputing them in the backward (0 .. n_layer; the last ones; 0 on CUDA, which recomputes
 * every layer). Each kept layer saves about 1/3 of its matmul and 2/9 of its attention FLOPs. */
int moa_profiler_kept_layers(const moa_profiler *p, int64_t n);

/* Per-sample outputs, caller-owned (host memory on either device). Histograms are ADDED to
 * (the caller zeroes them): */
typedef struct {
    double *abs;        /* [n_layer][n_head][n_bins] sum |E| per distance bin */
    double *sgn;        /* [n_layer][n_head][n_bins] sum E */
    double *sink_abs;   /* [n_layer][n_head] */
    double *sink_sgn;   /* [n_layer][n_head] (may be NULL) */
    int64_t n_bins;     /* >= ceil(n / block) */
} moa_profiler_hist;

/* One sample: tokens[0..n), loss over the response tokens [resp_begin, resp_end) (each
 * predicted from the previous position; 1 <= resp_begin < resp_end <= n). Writes the loss,
 * adds the influence to *hist (may be NULL), and, if d_embed is given, writes the gradient
 * of the loss with respect to the input embeddings [n][n_embd]. Every buffer is the
 * caller's, used only during the call. Uses p alone: calls on one profiler must not
 * overlap. */
moa_status moa_profiler_sample(moa_profiler *p, const int32_t *tokens, int64_t n,
                               int64_t resp_begin, int64_t resp_end, moa_profiler_hist *hist,
                               double *loss, float *d_embed);

/* Same from input embeddings x0 [n][n_embd] (tests: finite differences); targets are
 * tokens[resp_begin..resp_end). */
moa_status moa_profiler_sample_embd(moa_profiler *p, const float *x0, const int32_t *tokens,
                                    int64_t n, int64_t resp_begin, int64_t resp_end,
                                    moa_profiler_hist *hist, double *loss, float *d_embed);

/* ==== `moa profile` and `moa merge` (run.c) =============================================== */
/* `moa profile` as a library call: calibration file in, moa-profile v1 out, samples
 * bucketed by their length bucket, sharding, per-sample checkpoints and resume, atomic
 * output; and the shard merge.
 *
 * Threading: both calls read and write HDF5 files (calib.h5, profiles, checkpoints), and the
 * Debian libhdf5 is not thread-safe (moa/h5util.h): call them from one thread at a time
 * in the process, not concurrently with other HDF5 users; the calibration file is read in a
 * forked child first (h5guard.h). One run per output (and checkpoint) path at a time: the
 * files are not locked. */

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

#ifdef __cplusplus
}
#endif
#endif
