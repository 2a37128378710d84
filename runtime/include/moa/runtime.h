/* moa/runtime.h - the embeddable MoA runtime: public C API.
 *
 * Ownership and threading are stated per function. Every function that can fail returns a
 * moa_status (0 ok, negative error) and sets the thread's moa_last_error() message.
 */
#ifndef MOA_RUNTIME_H
#define MOA_RUNTIME_H

#include <stddef.h>
#include <stdint.h>
#include "moa/base.h"

#ifdef __cplusplus
extern "C" {
#endif

/* =========================================================================================
 * Plans (moa-plan v1, JSON): one sparse-attention rule per unit (KV head or query head) per
 * layer. A loaded plan is immutable: every accessor is const and may be called from any
 * number of threads at once; the plan may be shared by many caches/sequences. Free it once,
 * after every user is done.
 *
 * Span definition (one for every part of the toolkit), for a unit with rule (alpha, beta) at
 * planned length N:  W(N) = min(N, round_up(alpha + beta*N, block));  dense units: W = N;
 * query i attends key j iff j <= i and (j < sink or i - j < W). Density of a unit at N is
 * min(N, sink + W)/N; linear-attention units keep no KV cache (density 0). A plan's density
 * at N is the mean over its units (q-head granularity: the mean over KV groups of the
 * group's largest window, because the group shares one buffer).
 * ========================================================================================= */

typedef struct moa_plan moa_plan;

/* Append-only. */
typedef enum {
    MOA_UNIT_WINDOW = 0,   /* sink + elastic window (alpha, beta) */
    MOA_UNIT_DENSE  = 1,   /* full causal attention */
    MOA_UNIT_LINEAR = 2,   /* causal linear attention (no KV cache) */
} moa_unit_kind;

typedef enum {
    MOA_GRAN_KV_HEAD = 0,  /* one unit per KV head (n_head_kv units per layer); default */
    MOA_GRAN_Q_HEAD  = 1,  /* one unit per query head (n_head units per layer) */
} moa_granularity;

/* Load and strictly validate a plan file (format "moa-plan", version 1). On error nothing is
 * returned and the message names the file and the offending field (e.g. "layers[3].units[2]
 * .alpha"). The caller owns *out and frees it with moa_plan_free(). Thread-safe. */
moa_status moa_plan_load(const char *path, moa_plan **out);
/* Same from a NUL-terminated JSON string; `name` is used in messages. */
moa_status moa_plan_load_string(const char *json, const char *name, moa_plan **out);

/* Validate, then write atomically (temporary file + rename): a crash never leaves a partial
 * plan at `path`. Thread-safe for distinct paths. */
moa_status moa_plan_save(const moa_plan *plan, const char *path);
/* Serialise to a malloc'd JSON string (caller frees with free()). */
moa_status moa_plan_to_string(const moa_plan *plan, char **json_out);

/* Accepts NULL. */
void moa_plan_free(moa_plan *plan);

/* Does the plan fit a model with these dimensions? MOA_ERR_MISMATCH with a message naming
 * each differing dimension ("plan has n_head_kv=8, model has 4") otherwise. Thread-safe. */
moa_status moa_plan_check(const moa_plan *plan, int n_layer, int n_head, int n_head_kv,
                          int head_dim);

/* ---- accessors (const, thread-safe; layer/unit out of range -> MOA_ASSERT abort) ---- */
int moa_plan_n_layer(const moa_plan *plan);
int moa_plan_n_head(const moa_plan *plan);
int moa_plan_n_head_kv(const moa_plan *plan);
int moa_plan_head_dim(const moa_plan *plan);
/* Units per layer: n_head_kv (kv-head granularity) or n_head (q-head). */
int moa_plan_n_units(const moa_plan *plan);
moa_granularity moa_plan_granularity(const moa_plan *plan);
int moa_plan_sink(const moa_plan *plan);
int moa_plan_block(const moa_plan *plan);
const char *moa_plan_arch(const moa_plan *plan);       /* "" if unknown */
const char *moa_plan_model_sha256(const moa_plan *plan); /* "" if unknown */
moa_unit_kind moa_plan_unit_kind(const moa_plan *plan, int layer, int unit);
double moa_plan_unit_alpha(const moa_plan *plan, int layer, int unit);
double moa_plan_unit_beta(const moa_plan *plan, int layer, int unit);
/* Window W(n) of a unit (dense: n; linear: 0), per the span definition above. */
int64_t moa_plan_unit_window(const moa_plan *plan, int layer, int unit, int64_t n);
/* Density of the whole plan at length n, per the definition above. */
double moa_plan_density(const moa_plan *plan, int64_t n);

/* Predictions recorded by the optimizer, sorted by length (i in [0, n)): loss normalised per
 * length (NAN where not profiled) and density. */
int moa_plan_n_predicted(const moa_plan *plan);
int64_t moa_plan_predicted_length(const moa_plan *plan, int i);
double moa_plan_predicted_loss(const moa_plan *plan, int i);
double moa_plan_predicted_density(const moa_plan *plan, int i);
/* The lengths the optimizer was given: constrained lengths (i in [0, n)) with their density
 * budgets, and the validation length that selected the plan (0: none). */
int moa_plan_n_constrained(const moa_plan *plan);
int64_t moa_plan_constrained_length(const moa_plan *plan, int i);
double moa_plan_budget(const moa_plan *plan, int i);
int64_t moa_plan_validation_length(const moa_plan *plan);
/* Provenance: the sha256 (hex) of the profile and calibration set the plan was optimised
 * from ("" if unknown). */
const char *moa_plan_profile_sha256(const moa_plan *plan);
const char *moa_plan_calib_sha256(const moa_plan *plan);
/* Provenance: solver status ("optimal" | "feasible" = time/gap limit, unproven | "none") and
 * the relative MIP gap at termination. */
const char *moa_plan_solver_status(const moa_plan *plan);
double moa_plan_solver_gap(const moa_plan *plan);

/* Validation summary a plan may carry (optional key "validation" of the plan file, written
 * by `moa compress` once validation has finished): retrieval accuracy in [0, 1] per evaluated
 * length of the dense model, of the uniform StreamingLLM window at the plan's density (same
 * sinks and block) and of the plan (NAN: not measured), and the held-out response loss
 * (nats/token) of the same three at one length. Plain data, copied in and out. */
#define MOA_PLAN_VALIDATION_MAX 64
typedef struct {
    char task[32];               /* validation task: "needle", "lines", ... (non-empty) */
    uint64_t seed;               /* the validation prompts' seed */
    int samples;                 /* prompts per length (position bins x samples per bin) */
    char calib_tasks[64];        /* what the plan was calibrated on ("" unknown) */
    uint64_t calib_seed;
    int n_lengths;               /* <= MOA_PLAN_VALIDATION_MAX */
    int64_t length[MOA_PLAN_VALIDATION_MAX];
    double dense[MOA_PLAN_VALIDATION_MAX], uniform[MOA_PLAN_VALIDATION_MAX], plan[MOA_PLAN_VALIDATION_MAX];
    int64_t heldout_length;      /* 0: no held-out loss below */
    int heldout_samples;
    double heldout_dense, heldout_uniform, heldout_plan;
} moa_plan_validation;
/* Attach (copy of *v, checked: MOA_ERR_INVALID_ARG naming the field) or, with v NULL, remove
 * the summary. Not thread-safe against readers of the same plan. */
moa_status moa_plan_set_validation(moa_plan *plan, const moa_plan_validation *v);
/* 1 and *out filled if the plan carries a summary, else 0. */
int moa_plan_get_validation(const moa_plan *plan, moa_plan_validation *out);

/* Build a uniform StreamingLLM-style plan: every KV head keeps `sink` tokens plus the same
 * fixed window W = the largest multiple of `block` with (sink + W)/n <= density, i.e.
 * alpha = W, beta = 0. MOA_ERR_INFEASIBLE if W would be 0 (density too small for the sink).
 * The caller owns *out. */
moa_status moa_plan_uniform(int n_layer, int n_head, int n_head_kv, int head_dim, int sink,
                            int block, double density, int64_t n, moa_plan **out);

/* The plan's identity: the sha256 (64 lowercase hex + NUL into the caller's out[65]) of exactly
 * the bytes moa_plan_save would write, so it equals the sha256 of the saved file. With
 * without_validation != 0, of the bytes it would write with the validation summary removed
 * (the plan as it was before validation; the plan itself is not changed). Validates like
 * moa_plan_save (MOA_ERR_INVALID_ARG for a NULL plan or out, MOA_ERR_NOMEM); on error out is
 * "". Thread-safe (reads the plan only). */
moa_status moa_plan_sha256(const moa_plan *plan, int without_validation, char out[65]);

/* =========================================================================================
 * Caches and attention (per-head static KV caches; banded, dense and linear attention).
 *
 * A cache holds, for n_seq sequences and every layer and KV head ("unit"), the keys and
 * values that unit's rule can still use: `sink` slots for positions 0..sink-1 plus a ring of
 * W slots for the most recent positions (window units), n_ctx slots (dense units) or a
 * head_dim x head_dim state (linear units). It is sized once for a planned context n_ctx and
 * never reallocates. Past n_ctx, window rings keep rolling; dense units fail with
 * MOA_ERR_RANGE in absolute mode and roll (sink + n_ctx - sink recent) in streaming mode.
 *
 * RoPE: the runtime applies it. Pass q and k BEFORE RoPE (params.rope_dim > 0): the runtime
 * rotates pair i < rope_dim/2 of each head by pos * rope_base^(-2i/rope_dim); the pair is
 * (x[2i], x[2i+1]) in the GGUF "normal" pairing (llama, the default) and (x[i],
 * x[i + rope_dim/2]) in the NEOX pairing (qwen2): params.rope_pairing. Absolute mode caches rotated keys (MoA); streaming mode
 * caches raw keys and rotates by cache position at attention time (StreamingLLM), so a model
 * can run past its trained context. rope_dim = 0 means the caller has already rotated q and
 * k (absolute mode only). Linear units use q and k as given (never rotated, no scale).
 *
 * Positions are tracked by the cache, per sequence and layer: each call appends its tokens at
 * moa_cache_pos(cache, seq, layer). Call every layer once per chunk/step, in any layer order.
 *
 * Buffers are token-major floats, caller-owned, read/written only during the call (out must
 * not overlap q, k or v):
 *   q, out: [n_tokens][n_head * head_dim]   (query head h at offset h*head_dim)
 *   k, v:   [n_tokens][n_head_kv * head_dim]
 * GQA: query head h uses KV head h / (n_head / n_head_kv).
 *
 * Threading: a cache belongs to one thread at a time (calls on one cache must not overlap);
 * distinct caches may be used from distinct threads concurrently. Attention calls use OpenMP
 * internally (over KV heads x query tiles, or sequences x KV heads); set the thread count
 * with omp_set_num_threads() / OMP_NUM_THREADS.
 *
 * Devices: a cache lives on the CPU (default) or on a CUDA GPU (moa_cache_params.device).
 * Every function below behaves the same on both; on CUDA the q, k, v, out buffers of the
 * attention calls are device pointers (stated per function), and a cache made with its own
 * device context (params.device_ctx NULL) is used from one thread at a time like any cache
 * (the thread need not be the creating one when there is one GPU; with several, call from a
 * thread whose current CUDA device is the cache's).
 * ========================================================================================= */

typedef struct moa_cache moa_cache;

/* Append-only. */
typedef enum {
    MOA_POS_ABSOLUTE  = 0,  /* keys cached after RoPE at their absolute position (default) */
    MOA_POS_STREAMING = 1,  /* keys cached before RoPE, rotated by cache position */
} moa_pos_mode;

/* Which dims RoPE rotates together (values as ggml's rope types). Append-only. */
typedef enum {
    MOA_ROPE_NORMAL = 0,    /* adjacent pairs (x[2i], x[2i+1]): GGUF llama */
    MOA_ROPE_NEOX   = 2,    /* halves (x[i], x[i + rope_dim/2]): qwen2, GPT-NeoX */
} moa_rope_pairing;

/* Storage type of cached keys or values. Append-only. Bytes per row of head_dim values:
 *   MOA_KV_F32   4*head_dim (exact)
 *   MOA_KV_F16   2*head_dim, IEEE binary16, round to nearest even, saturating at +-65504
 *                (relative error <= 2^-11 for |x| >= 2^-14, absolute <= 2^-25 below);
 *                the default, as llama.cpp's cache
 *   MOA_KV_BF16  2*head_dim, bfloat16 (f32 exponent range), round to nearest even
 *                (relative error <= 2^-8)
 *   MOA_KV_Q8_0  34 * ceil(head_dim/32): GGUF's Q8_0 blocks of 32 values (f16 scale
 *                d = max|x|/127, then 32 int8 q = round(x/d); value q*d; a last partial block
 *                zero-padded); absolute error <= d/2 per value, d of its block
 * The rounding happens when a token is appended; every key and value attention reads (the
 * call's own new tokens included) is the stored one, widened to f32; scores, softmax and
 * outputs accumulate in f32 as with an f32 cache. Linear units keep their f32 state. */
typedef enum {
    MOA_KV_F32  = 0,
    MOA_KV_F16  = 1,
    MOA_KV_BF16 = 2,
    MOA_KV_Q8_0 = 3,
} moa_kv_type;

/* "f32", "f16", "bf16", "q8_0"; "?" if unknown. */
const char *moa_kv_type_name(moa_kv_type t);
/* Parse one of those names (exactly); MOA_ERR_INVALID_ARG naming the accepted values else. */
moa_status moa_kv_type_parse(const char *name, moa_kv_type *out);

/* Where a cache's memory lives and its attention runs. Append-only (values as the engine's
 * moa_device_kind: cpu 0, cuda 1).
 *   MOA_CACHE_DEVICE_CPU   host memory, OpenMP kernels (the default; always available)
 *   MOA_CACHE_DEVICE_CUDA  device memory of a CUDA GPU, the CUDA kernels of the toolkit's
 *                          CUDA backend; only in a libmoa built with CUDA, on a machine with a
 *                          device (moa_cache_device_count). On this device the q, k, v and out
 *                          pointers of moa_attn_prefill / moa_attn_decode are DEVICE pointers. */
typedef enum {
    MOA_CACHE_DEVICE_CPU  = 0,
    MOA_CACHE_DEVICE_CUDA = 1,
} moa_cache_device;

/* The CUDA backend's device context (a stream and a cuBLAS handle on one GPU); only the
 * toolkit's own engine passes one (moa_cache_params.device_ctx). */
struct moa_cuda_ctx;

/* Append-only: fields are only ever added at the end (start from moa_cache_default_params()). */
typedef struct {
    moa_pos_mode pos_mode;
    int rope_dim;       /* rotated dims per head (even, <= head_dim); 0: caller rotates */
    float rope_base;    /* GGUF rope.freq_base */
    float scale;        /* softmax scale; 0: 1/sqrt(head_dim) */
    moa_rope_pairing rope_pairing;   /* MOA_ROPE_NORMAL (default) or MOA_ROPE_NEOX */
    moa_kv_type type_k; /* storage of cached keys (default MOA_KV_F16) */
    moa_kv_type type_v; /* storage of cached values (default MOA_KV_F16) */
    /* appended: the device (0 = MOA_CACHE_DEVICE_CPU, as before these fields existed) */
    moa_cache_device device;
    int device_index;   /* CUDA: the GPU's ordinal (0-based; default 0); CPU: ignored */
    /* CUDA: NULL (default): the cache opens its own context on device_index and owns it
     * (freed with the cache); every call then waits for its kernels, so out is complete when
     * the call returns, and q/k/v must be complete before it (synchronise your stream first).
     * Non-NULL: the toolkit's engine lends its context (moa/cuda.h; it must
     * outlive the cache, device_index is ignored); calls are queued on that context's stream
     * in order with the lender's own work and do not wait. CPU: must be NULL. */
    struct moa_cuda_ctx *device_ctx;
} moa_cache_params;

/* Absolute mode, rope_dim 0 (caller rotates), rope_base 10000, normal pairing,
 * scale 1/sqrt(head_dim), keys and values stored as f16, on the CPU. */
moa_cache_params moa_cache_default_params(void);

/* Usable devices of that kind: 1 for the CPU; for CUDA the GPUs present (0 when this libmoa
 * has no CUDA backend, or there is no device or driver). Never fails. Thread-safe. */
int moa_cache_device_count(moa_cache_device device);

/* A cache shape without a plan (tests, uniform baselines, engines with their own rules). */
typedef struct {
    moa_unit_kind kind;
    int64_t window;     /* window kind: W tokens (mask i - j < W); >= n_ctx acts as dense */
    int64_t sink;       /* window and dense kinds: sink tokens (dense: used when rolling) */
    float decay;        /* linear kind: lambda = exp(-decay) per token; 0 = no decay */
} moa_cache_unit;

typedef struct {
    int n_layer, n_head, n_head_kv, head_dim;   /* head_dim <= 256 */
    const moa_cache_unit *units;   /* [n_layer][n_head_kv]; copied */
    const int64_t *q_window;       /* optional [n_layer][n_head]: each query head's window
                                      inside its group's buffer (q-head granularity; <= the
                                      KV unit's window); NULL: the KV unit's window */
} moa_cache_layout;

/* Create a cache for n_seq sequences of up to n_ctx planned tokens each. The caller owns
 * *out (free with moa_cache_free); `layout` is copied. params NULL = defaults. Allocates
 * K, V and linear state once (one allocation per tensor family), in host memory or, with
 * params.device = MOA_CACHE_DEVICE_CUDA, in the GPU's memory (same layout, storage types,
 * bytes and positions as on the CPU). A CUDA request fails with MOA_ERR_DEVICE and a message
 * when this libmoa has no CUDA backend, no device is present or device_index is out of
 * range; MOA_ERR_INVALID_ARG for an unknown device or a device_ctx with the CPU. Thread-safe. */
moa_status moa_cache_create_layout(const moa_cache_layout *layout, int64_t n_ctx, int n_seq,
                                   const moa_cache_params *params, moa_cache **out);

/* Same from a plan: each unit's window is moa_plan_unit_window(plan, layer, unit, n_ctx)
 * (the shared span definition), its sink the plan's sink; linear units get decay 0.
 * Q-head plans share one buffer per KV group sized by the group's largest window, each query
 * head masked by its own window (a group mixing linear and softmax heads is refused).
 * Dimensions come from the plan: check it against the model with moa_plan_check() first.
 * The plan is only read during the call. Thread-safe. */
moa_status moa_cache_create(const moa_plan *plan, int64_t n_ctx, int n_seq,
                            const moa_cache_params *params, moa_cache **out);

/* Accepts NULL. Frees device memory too (and the device context the cache opened itself). */
void moa_cache_free(moa_cache *cache);

/* The device the cache lives on (params.device at creation). */
moa_cache_device moa_cache_get_device(const moa_cache *cache);

/* Forget sequence `seq` (all sequences if seq < 0): positions back to 0, linear states zeroed.
 * Memory is kept. */
moa_status moa_cache_reset(moa_cache *cache, int seq);

/* Make sequence dst a copy of sequence src (src != dst, both < n_seq): its positions, every
 * unit's stored keys and values and linear states; dst's previous contents are dropped. For a
 * prompt shared by several sequences (prefill once, copy, decode each), as llama.cpp's
 * llama_memory_seq_cp of a whole sequence; the copy holds its own bytes (n_seq sequences
 * always cost n_seq times the bytes of one). MOA_ERR_INVALID_ARG on bad indices. On CUDA the
 * copy runs on the device (queued like an attention call). */
moa_status moa_cache_seq_copy(moa_cache *cache, int src, int dst);

/* Bytes of the K, V and linear-state storage (what the plan shrinks), for all sequences, in
 * the storage types: n_seq * (slots * (row bytes of type_k + of type_v) + linear units *
 * head_dim^2 * 4), rows as moa_kv_type says. Fixed-size extras (RoPE table, position
 * tables, scratch) are not included. */
size_t moa_cache_bytes(const moa_cache *cache);

/* Tokens already appended to (seq, layer) = the position of the next token; -1 if out of
 * range. */
int64_t moa_cache_pos(const moa_cache *cache, int seq, int layer);

/* Prefill (or any chunk of n_tokens >= 1 tokens) for one sequence and one layer: attends
 * the cached tokens plus the chunk itself under each unit's mask (banded causal softmax with
 * sinks, or linear attention), writes O, then appends the chunk to the cache. A prompt may be
 * fed in several chunks. Work is O(n_tokens * (sink + W)) per head, never n_tokens^2 for
 * window units. Errors: MOA_ERR_INVALID_ARG (bad seq/layer/pointers), MOA_ERR_RANGE (a dense
 * unit would exceed n_ctx in absolute mode); on error nothing is written.
 * Pointers: on a CPU cache q, k, v, out are host memory; on a CUDA cache they are device
 * memory of the cache's GPU (cudaMalloc'd or the engine's buffers), read and written by
 * kernels on the cache's stream (params.device_ctx says when they are complete). */
moa_status moa_attn_prefill(moa_cache *cache, int seq, int layer, const float *q,
                            const float *k, const float *v, int n_tokens, float *out);

/* One decode step for n sequences (one token each) on one layer. seqs[i] names the sequence
 * of row i (distinct); seqs NULL means rows 0..n-1 are sequences 0..n-1. q/out rows are
 * [n][n_head*head_dim], k/v rows [n][n_head_kv*head_dim]. Same errors as prefill. Pointers
 * as prefill: q, k, v, out on the cache's device; seqs is always HOST memory. */
moa_status moa_attn_decode(moa_cache *cache, int layer, const int *seqs, int n,
                           const float *q, const float *k, const float *v, float *out);

#ifdef __cplusplus
}
#endif
#endif /* MOA_RUNTIME_H */
