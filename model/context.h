/* context.h - the run state of one sequence: activations and KV cache, and the forward pass.
 *
 * A context runs on the CPU (forward.c) or on a CUDA device (forward-cuda.c, built with the
 * CUDA backend): same calls, same semantics (plans, n_seq, logits modes, chunking by n_batch,
 * errors); logits always land in the caller's host buffers. On CUDA the context holds its own
 * device copy of the weights (dequantised once to f16 or bf16), the device KV cache
 * (kernels/cuda) and device scratch; see docs/gpu.md. */
#ifndef MOA_CONTEXT_H
#define MOA_CONTEXT_H

#include "llama.h"
#include "moa/runtime.h"
#include "moa-backend.h"   /* moa_device_kind (plain C; kernels/cuda) */

typedef struct {
    int32_t n_ctx;     /* planned context in tokens (0: the model's training context); a
                          plan's windows are evaluated at this length */
    int32_t n_batch;   /* max tokens per forward call; longer inputs are chunked (default 512) */
    int32_t n_seq;     /* sequences sharing the context (batched decode; default 1) */
    const moa_plan *plan;    /* sparse-attention plan (NULL: dense); read during create only */
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

moa_ctx_params moa_ctx_default_params(void);
/* The device moa_ctx_default_params() puts in .device (initially MOA_DEVICE_CPU). For
 * programs whose code creates contexts in several places (the CLI's --device): call it once
 * from the main thread before any context is created; not thread-safe against concurrent
 * moa_ctx_default_params calls. */
void moa_ctx_set_default_device(moa_device_kind device);
/* 1 if contexts can run on CUDA here: the CUDA backend is built in and a device is present. */
int moa_ctx_cuda_available(void);
/* The device a context runs on (MOA_DEVICE_CPU or MOA_DEVICE_CUDA). */
moa_device_kind moa_ctx_device(const moa_ctx *c);
moa_status moa_ctx_create(const moa_model *m, const moa_ctx_params *p, moa_ctx **out);
void moa_ctx_free(moa_ctx *c);
void moa_ctx_reset(moa_ctx *c);               /* forget every sequence (positions back to 0) */
int32_t moa_ctx_n_past(const moa_ctx *c);
int32_t moa_ctx_n_ctx(const moa_ctx *c);
const moa_model *moa_ctx_model(const moa_ctx *c);

/* Run tokens[0..n) of sequence 0 at positions n_past.. and append them to the cache. Logits
 * per `mode` are written to `logits` (caller-owned; [n_vocab] or [n][n_vocab]); may be NULL
 * for NONE. MOA_ERR_RANGE if a dense cache would overflow; MOA_ERR_INVALID_ARG for a bad
 * token id. */
moa_status moa_ctx_eval(moa_ctx *c, const int32_t *tokens, int32_t n, moa_logits_mode mode,
                        float *logits);
/* Same for sequence `seq` (0 <= seq < n_seq). */
/* Sequence dst becomes a copy of sequence src (moa_cache_seq_copy): a prompt prefilled once
 * serves several sequences. CPU contexts; MOA_ERR_UNSUPPORTED on CUDA. */
moa_status moa_ctx_seq_copy(moa_ctx *c, int src, int dst);
moa_status moa_ctx_eval_seq(moa_ctx *c, int seq, const int32_t *tokens, int32_t n,
                            moa_logits_mode mode, float *logits);
/* One decode step for n distinct sequences seqs[0..n) (one token each, n <= n_batch);
 * logits [n][n_vocab]. */
moa_status moa_ctx_decode_batch(moa_ctx *c, const int *seqs, const int32_t *tokens, int32_t n,
                                float *logits);
/* Tokens held by sequence seq. */
int32_t moa_ctx_seq_pos(const moa_ctx *c, int seq);
/* Bytes of the K/V (and linear-state) storage of the context's cache. */
size_t moa_ctx_kv_bytes(const moa_ctx *c);

/* Time spent in attention by the last moa_ctx_eval calls (seconds, accumulated; reset to 0
 * by passing reset=1). For benchmarks. CPU only: on CUDA the kernels run asynchronously and
 * timing them would need a synchronisation per layer, so this stays 0 there. */
double moa_ctx_attn_seconds(moa_ctx *c, int reset);

#endif
