/* key-smooth.h - internal to model/ (and its tests): key smoothing for 8-bit key caches (the
 * engine's, CPU and CUDA).
 *
 * Qwen2 models add a key bias whose few low-frequency RoPE pairs reach |b| ~ 150 in the first
 * layers while the other channels of the same 32-value Q8_0 block stay near 1-10: the block's
 * scale follows the outlier and the small channels are rounded away. With a q8_0 key cache
 * the greedy token then changes at 88 of 334 positions of the golden prompts on
 * Qwen2.5-Coder-0.5B (llama.cpp 0.3.36 with q8_0 keys: 76 of 334).
 *
 * The engine therefore divides each such channel pair of k by a power of two s and multiplies
 * the same pair of every query head of the group by s, before RoPE. Scores are unchanged:
 * RoPE rotates within a pair (both elements share s) and scaling by a power of two is exact
 * in floating point (barring overflow and subnormals), so q.k is bit for bit the same while
 * the quantiser sees keys of even magnitude. Scales come from the model alone: for a pair of
 * bias magnitude m = |(b_i, b_j)|, s = the largest power of two <= m / MOA_KEY_SMOOTH_T
 * (1 when m < 2 T), at most 2^10. Applied only to Q8_0 key caches (the only key type whose
 * precision is shared across channels); models without key biases need none.
 *
 * Threading: the scales are immutable once built; apply is a pure function of its arguments.
 */
#ifndef MOA_KEY_SMOOTH_H
#define MOA_KEY_SMOOTH_H

#include "moa/model.h"

/* Bias magnitude a smoothed key pair is brought to (at most; at least half of it). Chosen
 * from the greedy token's agreement with the f32 cache on the golden prompts (one prefill,
 * Qwen2.5-Coder-0.5B, 334 positions), changed at: no smoothing 88; exact (non power of two)
 * scales m / T with T = 4: 13, T = 16: 14; these power-of-two scales with T = 8: 14. */
#define MOA_KEY_SMOOTH_T 8.0

/* Scales for model m: *out = [n_layer][n_head_kv * head_dim] floats (owned by the caller,
 * free()), or NULL when every scale is 1 (no key bias, or no large pair). */
moa_status moa_key_smooth_scales(const moa_model *m, float **out);

/* q[t][n_head*hd] *= s (each query head with its KV head's scales), k[t][n_head_kv*hd] /= s,
 * for n rows of one layer; s = scales + layer * n_head_kv * head_dim. */
void moa_key_smooth_apply(const moa_llama_hparams *hp, const float *s, float *q, float *k, int64_t n);

#endif
