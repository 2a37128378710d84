/* cache-layout.h - internal to runtime/ and to the engine's device path (model/forward.c):
 * the one conversion of a plan into cache units at a context length, used by
 * moa_cache_create (the CPU cache) and by the CUDA engine, whose device cache takes a
 * moa_cache_layout. Public API: moa/runtime.h. */
#ifndef MOA_RUNTIME_CACHE_LAYOUT_H
#define MOA_RUNTIME_CACHE_LAYOUT_H

#include "moa/runtime.h"

/* Fills *L (dimensions, units [n_layer][n_head_kv], q_window [n_layer][n_head] for q-head
 * plans, else NULL) from the plan at n_ctx: each unit's window moa_plan_unit_window(n_ctx)
 * (0 for linear units) and the plan's sink; at q-head granularity a KV group's buffer is
 * sized by its widest query head and each query head keeps its own window in q_window; a
 * group mixing linear and softmax query heads is MOA_ERR_UNSUPPORTED. The caller releases
 * the arrays with moa_cache_layout_release. */
moa_status moa_cache_layout_from_plan(const moa_plan *plan, int64_t n_ctx, moa_cache_layout *L);
void moa_cache_layout_release(moa_cache_layout *L);

#endif
