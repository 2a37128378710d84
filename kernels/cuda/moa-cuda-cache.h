/* moa-cuda-cache.h - internal to kernels/cuda and to the runtime's device table
 * (runtime/cache-cuda.c): the runtime's per-head KV cache on a CUDA device (attn.cu).
 * Engines and embedders do not call this: they create a moa_cache with
 * moa_cache_params.device = MOA_CACHE_DEVICE_CUDA (moa/runtime.h), which dispatches here.
 * Tests include it to compare the device cache's stored rows with the CPU cache's.
 *
 * The layout is the CPU cache's (runtime/cache.c): per layer and KV head `sink` slots + a ring
 * of min(W, n_ctx - sink) slots (window units), n_ctx slots (dense units) or an hd x hd f32
 * state (linear units); K, V as [n_seq][slots_per_seq] rows of hd values in type_k / type_v
 * (f32, f16, bf16, q8_0: the CPU cache's bytes; flat segments with a start/length table per
 * unit). RoPE and position modes as the CPU runtime; q-head windows as well. All q/k/v/out
 * buffers are device memory; work is queued on the context's stream (no synchronisation
 * unless stated). */
#ifndef MOA_CUDA_CACHE_H
#define MOA_CUDA_CACHE_H

#include "moa/cuda.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct moa_cuda_cache moa_cuda_cache;

/* One (layer, KV head): the fields and values of moa_cache_unit (runtime.h). */
typedef struct {
    int kind;          /* 0 window, 1 dense, 2 linear (moa_unit_kind) */
    int64_t window;    /* window kind: W (mask i - j < W) */
    int64_t sink;      /* window and dense kinds */
    float decay;       /* linear kind: lambda = exp(-decay) */
} moa_cuda_unit;

/* moa_cache_layout + moa_cache_params in plain ints (values as the runtime's enums; a zeroed
 * layout is f32 storage, absolute positions, caller-rotated q and k, normal pairing). */
typedef struct {
    int n_layer, n_head, n_head_kv, head_dim;   /* head_dim <= 256 */
    const moa_cuda_unit *units;                 /* host [n_layer][n_head_kv]; copied */
    float scale;                                /* softmax scale; 0 = 1/sqrt(head_dim) */
    const int64_t *q_window;   /* optional host [n_layer][n_head] (moa_cache_layout.q_window) */
    int pos_mode;              /* 0 absolute (rope_dim 0: q, k come rotated), 1 streaming */
    int rope_dim;
    float rope_base;
    int rope_pairing;          /* 0 adjacent pairs (x[2i], x[2i+1]), 2 halves (NEOX) */
    int type_k, type_v;        /* 0 f32, 1 f16, 2 bf16, 3 q8_0 (moa_kv_type); linear state f32 */
} moa_cuda_cache_layout;

/* Lifetime and state (the runtime's moa_cache_* semantics; the cache uses ctx, which must
 * outlive it). */
moa_status moa_cuda_cache_create(moa_cuda_ctx *ctx, const moa_cuda_cache_layout *L, int64_t n_ctx, int n_seq, moa_cuda_cache **out);
void moa_cuda_cache_free(moa_cuda_cache *c);   /* accepts NULL */
moa_status moa_cuda_cache_reset(moa_cuda_cache *c, int seq);   /* seq < 0: every sequence */
moa_status moa_cuda_cache_seq_copy(moa_cuda_cache *c, int src, int dst);
size_t moa_cuda_cache_bytes(const moa_cuda_cache *c);   /* K, V and linear states */
int64_t moa_cuda_cache_pos(const moa_cuda_cache *c, int seq, int layer);   /* -1 out of range */

/* Inspection (tests): bytes of a softmax unit's K (value 0) or V (value 1) segment, (sink +
 * ring) rows in slot order as the CPU cache lays them out (0 for linear units or bad indices),
 * and a synchronous copy of sequence seq's segment to host dst (unwritten slots undefined). */
size_t moa_cuda_cache_unit_bytes(const moa_cuda_cache *c, int layer, int kv_head, int value);
moa_status moa_cuda_cache_unit_read(const moa_cuda_cache *c, int seq, int layer, int kv_head, int value, void *dst);

/* The attention calls of moa_attn_prefill / moa_attn_decode on device buffers q, out
 * [n][n_head*hd] and k, v [n][n_head_kv*hd]; seqs is a HOST array (NULL = 0..n-1). Window and
 * dense units: banded causal softmax with sinks over the cache and the chunk (work
 * O(n (sink + W))); linear units: Lightning Attention-2 (prefill), the O(hd^2) recurrence
 * (decode). */
moa_status moa_cuda_attn_prefill(moa_cuda_cache *c, int seq, int layer, const float *q, const float *k, const float *v, int n_tokens, float *out);
moa_status moa_cuda_attn_decode(moa_cuda_cache *c, int layer, const int *seqs, int n, const float *q, const float *k, const float *v, float *out);

#ifdef __cplusplus
}
#endif
#endif /* MOA_CUDA_CACHE_H */
