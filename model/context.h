/* context.h - the run state of a model's sequences: activations and KV cache, and the forward
 * pass.
 *
 * A context runs on the CPU (forward.c) or on a CUDA device (forward-cuda.c, built with the
 * CUDA backend): same calls, same semantics (plans, n_seq, logits modes, chunking by n_batch,
 * errors); logits always land in the caller's host buffers. On CUDA the context holds its own
 * device context (stream, cuBLAS handle), the device KV cache (kernels/cuda) and device
 * scratch, and shares the model's device copy of the weights (dequantised once to f16 or
 * bf16; weights-cuda.h) with the model's other CUDA contexts; see docs/gpu.md.
 *
 * Ownership and threading are stated per function. A context borrows its model (which must
 * outlive it) and owns everything else it uses. A context belongs to one thread at a time:
 * calls on one context must not overlap, its getters included. Distinct contexts share
 * nothing but the read-only model, so they may run in distinct threads, also on one model
 * (their OpenBLAS calls then overlap; two threads on one model gave the logits of a
 * sequential run in a one-off check, the tests do not cover it). The forward pass uses
 * OpenMP inside (OMP_NUM_THREADS / omp_set_num_threads). On CUDA, with several GPUs, call a
 * context from a thread whose current device is its device (the creating thread, or after
 * cudaSetDevice: moa-cuda.h). */
#ifndef MOA_CONTEXT_H
#define MOA_CONTEXT_H

#include "llama.h"
#include "moa/runtime.h"
#include "moa-backend.h"   /* moa_device_kind (plain C; kernels/) */

typedef struct {
    int32_t n_ctx;     /* planned context in tokens (0: the model's training context); a
                          plan's windows are evaluated at this length */
    int32_t n_batch;   /* max tokens per forward call; longer inputs are chunked (default 512) */
    int32_t n_seq;     /* sequences sharing the context (batched decode; default 1) */
    const moa_plan *plan;    /* sparse-attention plan (NULL: dense); borrowed, read during
                                create only */
    moa_pos_mode pos_mode;   /* MOA_POS_ABSOLUTE (default) or MOA_POS_STREAMING */
    moa_device_kind device;  /* MOA_DEVICE_CPU, MOA_DEVICE_CUDA (MOA_ERR_DEVICE without a
                                device or in a build without the CUDA backend) or
                                MOA_DEVICE_AUTO (CUDA when a device exists); default: the
                                process default, CPU unless moa_ctx_set_default_device */
    int32_t device_index;    /* CUDA device ordinal (default 0) */
    int32_t device_bf16;     /* CUDA: weights and GEMM inputs in bf16 instead of f16 (wider
                                range, 3 fewer mantissa bits; default 0) */
    moa_kv_type kv_type;     /* storage of cached keys and values (moa/runtime.h; default
                                MOA_KV_F16, as llama.cpp), on either device: the CUDA cache
                                keeps the CPU cache's bytes */
    int32_t no_key_smooth;   /* 1: do not smooth keys for a q8_0 key cache (key-smooth.h;
                                default 0: smoothed where the model's key biases need it) */
} moa_ctx_params;

typedef enum {
    MOA_LOGITS_NONE = 0,   /* no logits (prefill of a prefix) */
    MOA_LOGITS_LAST = 1,   /* logits of the last token: [n_vocab] */
    MOA_LOGITS_ALL  = 2,   /* logits of every token: [n][n_vocab] */
} moa_logits_mode;

typedef struct moa_ctx moa_ctx;

/* Defaults: n_ctx 0 (the model's), n_batch 512, n_seq 1, absolute positions, f16 KV, no
 * plan; .device is the process default below, read without synchronisation. */
moa_ctx_params moa_ctx_default_params(void);
/* The device moa_ctx_default_params() puts in .device (initially MOA_DEVICE_CPU). Process-wide.
 * For programs whose code creates contexts in several places (the CLI's --device): call it
 * once from the main thread before any context is created; not thread-safe against
 * concurrent moa_ctx_default_params (or moa_profiler_default_params) calls. */
void moa_ctx_set_default_device(moa_device_kind device);
/* 1 if contexts can run on CUDA here: the CUDA backend is built in and a device is present.
 * Thread-safe. */
int moa_ctx_cuda_available(void);
/* The device a context runs on (MOA_DEVICE_CPU or MOA_DEVICE_CUDA). */
moa_device_kind moa_ctx_device(const moa_ctx *c);
/* Create a context for model m. The caller owns *out (free with moa_ctx_free); m is borrowed
 * and must outlive the context; *p is copied and p->plan only read during the call (checked
 * against m: MOA_ERR_MISMATCH). p NULL = defaults. Thread-safe, also for several contexts of
 * one model at once (a CUDA context uploads the model's weights if no user has, under a
 * process-wide lock, and makes its device current on the calling thread). */
moa_status moa_ctx_create(const moa_model *m, const moa_ctx_params *p, moa_ctx **out);
/* Accepts NULL. Frees what the context owns (not the model, nor the shared device weights). */
void moa_ctx_free(moa_ctx *c);
/* Forget every sequence (positions back to 0); memory is kept. On CUDA a failure is only
 * logged. */
void moa_ctx_reset(moa_ctx *c);
int32_t moa_ctx_n_past(const moa_ctx *c);     /* tokens held by sequence 0 */
int32_t moa_ctx_n_ctx(const moa_ctx *c);      /* the planned context (after defaults) */
const moa_model *moa_ctx_model(const moa_ctx *c);   /* the model (borrowed by c) */

/* Run tokens[0..n) of sequence 0 at positions n_past.. and append them to the cache, in
 * chunks of n_batch. Logits per `mode` are written to `logits` (caller-owned; [n_vocab] or
 * [n][n_vocab]); may be NULL for NONE. tokens and logits are used only during the call.
 * MOA_ERR_RANGE if a dense cache would overflow; MOA_ERR_INVALID_ARG for a bad token id. */
moa_status moa_ctx_eval(moa_ctx *c, const int32_t *tokens, int32_t n, moa_logits_mode mode,
                        float *logits);
/* Same for sequence `seq` (0 <= seq < n_seq). */
moa_status moa_ctx_eval_seq(moa_ctx *c, int seq, const int32_t *tokens, int32_t n,
                            moa_logits_mode mode, float *logits);
/* Sequence dst becomes a copy of sequence src (moa_cache_seq_copy): a prompt prefilled once
 * serves several sequences, each with its own bytes. CPU contexts; MOA_ERR_UNSUPPORTED on
 * CUDA. */
moa_status moa_ctx_seq_copy(moa_ctx *c, int src, int dst);
/* One decode step for n distinct sequences seqs[0..n) (one token each, n <= n_batch);
 * logits [n][n_vocab] (NULL: none). seqs, tokens and logits are caller-owned, used only
 * during the call. */
moa_status moa_ctx_decode_batch(moa_ctx *c, const int *seqs, const int32_t *tokens, int32_t n,
                                float *logits);
/* Tokens held by sequence seq. */
int32_t moa_ctx_seq_pos(const moa_ctx *c, int seq);
/* Bytes of the K/V (and linear-state) storage of the context's cache. */
size_t moa_ctx_kv_bytes(const moa_ctx *c);

/* Time spent in attention by the last moa_ctx_eval calls (seconds, accumulated; reset to 0
 * by passing reset=1, which changes c). For benchmarks. CPU only: on CUDA the kernels run
 * asynchronously and timing them would need a synchronisation per layer, so this stays 0
 * there. */
double moa_ctx_attn_seconds(moa_ctx *c, int reset);

#endif
