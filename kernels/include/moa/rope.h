/* moa/rope.h - public header of moa_kernels (kernels/; op family of kernels/cpu/rope.c; the
 * device interface is moa/backend.h): rotary position embedding. Pair i < rope_dim/2 of each
 * head is rotated by theta_i = pos * base^(-2i/rope_dim):
 *   normal pairing (GGUF llama): the adjacent pair (x[2i], x[2i+1]);
 *   NEOX pairing (qwen2, GPT-NeoX): the halves (x[i], x[i + rope_dim/2]).
 * Dims past rope_dim are copied unchanged. The inverse rotation (-theta) is the transpose,
 * used by backward passes. The one RoPE of the project: the runtime's caches and the
 * profiler both use it.
 * Ownership: a moa_rope_table owns its cos/sin arrays (moa_rope_table_free). Threading: an
 * initialised table is read-only and may be shared by any number of threads; a rotation of
 * many rows opens its own OpenMP region (call it from one thread per output). */
#ifndef MOA_ROPE_H
#define MOA_ROPE_H

#include <stdint.h>
#include "moa/base.h"

typedef struct {
    int rope_dim;
    int neox;          /* 0: adjacent pairs (normal), 1: halves (NEOX) */
    int64_t n_pos;     /* positions with tabulated cos/sin; others are computed */
    double *inv_freq;  /* [rope_dim/2] base^(-2i/rope_dim) */
    float *cs;         /* [n_pos][rope_dim/2][2] cos, sin */
    float base;        /* appended: the base it was made with */
} moa_rope_table;

/* neox: 0 adjacent pairs, 1 halves (see above). */
moa_status moa_rope_table_init(moa_rope_table *t, int rope_dim, float base, int neox, int64_t n_pos);
void moa_rope_table_free(moa_rope_table *t);

/* One head vector of hd values: dst = R(pos) src (inverse: R(-pos)); dst may equal src. */
void moa_rope_apply(const moa_rope_table *t, float *dst, const float *src, int hd, int64_t pos,
                    int inverse);

/* Rotate rows x[n][n_heads*hd] (row r at position pos0 + r) in place. */
void moa_rope_rows(const moa_rope_table *t, float *x, int64_t n, int n_heads, int hd,
                   int64_t pos0, int inverse);

/* The same without a table (the CPU backend's rope): each row's cos/sin are computed once
 * for all its heads, with the table's formulas (identical results to moa_rope_rows over
 * moa_rope_table_init(rope_dim, base, neox, ...)). rope_dim even, in (0, min(hd, 1024)];
 * base > 1; neox 0 or 1. MOA_ERR_INVALID_ARG otherwise. */
#define MOA_ROPE_DIM_MAX 1024
moa_status moa_rope_rows_at(float *x, int64_t n, int n_heads, int hd, int rope_dim, float base,
                            int64_t pos0, int inverse, int neox);

#endif
