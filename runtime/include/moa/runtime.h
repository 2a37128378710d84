/* moa/runtime.h - the embeddable MoA runtime: public C API.
 *
 * Ownership and threading are stated per function. Every function that can fail returns a
 * moa_status (0 ok, negative error) and sets the thread's moa_last_error() message.
 */
#ifndef MOA_RUNTIME_H
#define MOA_RUNTIME_H

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

/* Build a uniform StreamingLLM-style plan: every KV head keeps `sink` tokens plus the same
 * fixed window W = the largest multiple of `block` with (sink + W)/n <= density, i.e.
 * alpha = W, beta = 0. MOA_ERR_INFEASIBLE if W would be 0 (density too small for the sink).
 * The caller owns *out. */
moa_status moa_plan_uniform(int n_layer, int n_head, int n_head_kv, int head_dim, int sink,
                            int block, double density, int64_t n, moa_plan **out);

#ifdef __cplusplus
}
#endif
#endif /* MOA_RUNTIME_H */
