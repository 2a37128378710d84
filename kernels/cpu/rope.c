/* rope.c - rotary position embedding with a precomputed cos/sin table (see rope.h). */
#include "rope.h"
#include "moa-common.h"

#include <math.h>
#include <stdlib.h>

moa_status moa_rope_table_init(moa_rope_table *t, int rope_dim, float base, int64_t n_pos) {
    t->rope_dim = rope_dim;
    t->n_pos = n_pos;
    t->cs = NULL;
    if (rope_dim <= 0 || rope_dim % 2 || n_pos <= 0 || !(base > 1))
        return moa_err(MOA_ERR_INVALID_ARG, "rope: rope_dim %d must be even and positive, base %g > 1",
                       rope_dim, (double)base);
    int half = rope_dim / 2;
    t->cs = moa_alloc_array((size_t)n_pos * (size_t)half * 2, sizeof(float));
    if (!t->cs) return moa_err(MOA_ERR_NOMEM, "out of memory for a RoPE table of %lld positions", (long long)n_pos);
    for (int i = 0; i < half; i++) {
        double inv = pow((double)base, -2.0 * i / rope_dim);
        for (int64_t p = 0; p < n_pos; p++) {
            double a = (double)p * inv;
            t->cs[((size_t)p * half + i) * 2] = (float)cos(a);
            t->cs[((size_t)p * half + i) * 2 + 1] = (float)sin(a);
        }
    }
    return MOA_OK;
}

void moa_rope_table_free(moa_rope_table *t) {
    free(t->cs);
    t->cs = NULL;
}

void moa_rope_rows(const moa_rope_table *t, float *x, int64_t n, int n_heads, int hd,
                   int64_t pos0, int inverse) {
    int half = t->rope_dim / 2;
    float sgn = inverse ? -1.0f : 1.0f;
    #pragma omp parallel for schedule(static) if (n * n_heads > 256)
    for (int64_t r = 0; r < n; r++) {
        const float *cs = t->cs + (size_t)(pos0 + r) * half * 2;
        for (int h = 0; h < n_heads; h++) {
            float *p = x + (r * n_heads + h) * hd;
            for (int i = 0; i < half; i++) {
                float c = cs[2 * i], s = sgn * cs[2 * i + 1];
                float x0 = p[2 * i], x1 = p[2 * i + 1];
                p[2 * i] = x0 * c - x1 * s;
                p[2 * i + 1] = x0 * s + x1 * c;
            }
        }
    }
}
