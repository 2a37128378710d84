/* rope.c - rotary position embedding with a precomputed cos/sin table (see rope.h). */
#include "moa/rope.h"
#include "moa/common.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

moa_status moa_rope_table_init(moa_rope_table *t, int rope_dim, float base, int neox, int64_t n_pos) {
    memset(t, 0, sizeof *t);
    if (rope_dim <= 0 || rope_dim % 2 || n_pos < 0 || !(base > 1) || (neox != 0 && neox != 1))
        return moa_err(MOA_ERR_INVALID_ARG, "rope: rope_dim %d must be even and positive, base %g > 1, "
                       "pairing %d 0 or 1", rope_dim, (double)base, neox);
    int half = rope_dim / 2;
    t->rope_dim = rope_dim;
    t->neox = neox;
    t->base = base;
    t->inv_freq = moa_alloc_array((size_t)half, sizeof(double));
    t->cs = moa_alloc_array((size_t)(n_pos > 0 ? n_pos : 1) * (size_t)half * 2, sizeof(float));
    if (!t->inv_freq || !t->cs) {
        moa_rope_table_free(t);
        return moa_err(MOA_ERR_NOMEM, "out of memory for a RoPE table of %lld positions", (long long)n_pos);
    }
    t->n_pos = n_pos;
    for (int i = 0; i < half; i++) t->inv_freq[i] = pow((double)base, -2.0 * i / rope_dim);
    for (int64_t p = 0; p < n_pos; p++)
        for (int i = 0; i < half; i++) {
            double a = (double)p * t->inv_freq[i];
            t->cs[((size_t)p * half + i) * 2] = (float)cos(a);
            t->cs[((size_t)p * half + i) * 2 + 1] = (float)sin(a);
        }
    return MOA_OK;
}

void moa_rope_table_free(moa_rope_table *t) {
    free(t->cs);
    free(t->inv_freq);
    t->cs = NULL;
    t->inv_freq = NULL;
}

/* (x0, x1) -> (x0 cos - x1 sin, x0 sin + x1 cos) for pair i = (x[a*i], x[a*i + b]):
 * normal a = 2, b = 1; NEOX a = 1, b = rope_dim/2. */
void moa_rope_apply(const moa_rope_table *t, float *dst, const float *src, int hd, int64_t pos,
                    int inverse) {
    const int half = t->rope_dim / 2;
    const int a = t->neox ? 1 : 2, b = t->neox ? half : 1;
    const float sgn = inverse ? -1.0f : 1.0f;
    const int tab = pos >= 0 && pos < t->n_pos;
    const float *cs = tab ? t->cs + (size_t)pos * half * 2 : NULL;
    for (int i = 0; i < half; i++) {
        float co, si;
        if (tab) {
            co = cs[2 * i];
            si = sgn * cs[2 * i + 1];
        } else {
            const double ang = (double)pos * t->inv_freq[i];
            co = (float)cos(ang);
            si = sgn * (float)sin(ang);
        }
        const float x0 = src[a * i], x1 = src[a * i + b];
        dst[a * i] = x0 * co - x1 * si;
        dst[a * i + b] = x0 * si + x1 * co;
    }
    if (dst != src)
        for (int d = 2 * half; d < hd; d++) dst[d] = src[d];
}

void moa_rope_rows(const moa_rope_table *t, float *x, int64_t n, int n_heads, int hd,
                   int64_t pos0, int inverse) {
    #pragma omp parallel for schedule(static) if (n * n_heads > 256)
    for (int64_t r = 0; r < n; r++)
        for (int h = 0; h < n_heads; h++) {
            float *p = x + (r * n_heads + h) * hd;
            moa_rope_apply(t, p, p, hd, pos0 + r, inverse);
        }
}

moa_status moa_rope_rows_at(float *x, int64_t n, int n_heads, int hd, int rope_dim, float base,
                            int64_t pos0, int inverse, int neox) {
    if (rope_dim <= 0 || rope_dim % 2 || rope_dim > hd || rope_dim > MOA_ROPE_DIM_MAX ||
        !(base > 1) || (neox != 0 && neox != 1))
        return moa_err(MOA_ERR_INVALID_ARG, "rope: rope_dim %d must be even, in (0, hd=%d] and "
                       "<= %d, base %g > 1, pairing %d 0 or 1", rope_dim, hd, MOA_ROPE_DIM_MAX,
                       (double)base, neox);
    const int half = rope_dim / 2;
    double inv_freq[MOA_ROPE_DIM_MAX / 2];
    for (int i = 0; i < half; i++) inv_freq[i] = pow((double)base, -2.0 * i / rope_dim);
    /* a one-position table per row: moa_rope_apply then rotates every head from it */
    #pragma omp parallel for schedule(static) if (n * n_heads > 256)
    for (int64_t r = 0; r < n; r++) {
        float cs[MOA_ROPE_DIM_MAX];
        const int64_t pos = pos0 + r;
        for (int i = 0; i < half; i++) {
            const double a = (double)pos * inv_freq[i];
            cs[2 * i] = (float)cos(a);
            cs[2 * i + 1] = (float)sin(a);
        }
        moa_rope_table t = {rope_dim, neox, 1, (double *)inv_freq, cs, base};
        for (int h = 0; h < n_heads; h++) {
            float *p = x + (r * n_heads + h) * hd;
            moa_rope_apply(&t, p, p, hd, 0, inverse);
        }
    }
    return MOA_OK;
}
