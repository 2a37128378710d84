/* attn.c - reference attention kernels (the source of truth) and run-time ISA dispatch.
 * Fast versions: attn-avx2.c, attn-avx512.c (one body, attn-simd.inc). */
#include "attn.h"

#include <math.h>
#include <string.h>

/* ---- banded softmax attention: reference --------------------------------------------------- */

/* The shared mask: query i sees key j iff j <= i and (j < sink or i - j < window). */
static int band_visible(int64_t i, int64_t j, int64_t sink, int64_t window) {
    return j <= i && (j < sink || i - j < window);
}

void moa_attn_band_ref(const moa_attn_band_args *a) {
    const int hd = a->hd;
    double acc[MOA_ATTN_HD_MAX];   /* callers guarantee hd <= MOA_ATTN_HD_MAX */
    for (int t = 0; t < a->n_q; t++) {
        const int64_t i = a->qpos0 + t;
        for (int g = 0; g < a->n_group; g++) {
            const float *q = a->q + (size_t)t * a->ldq + (size_t)g * hd;
            const float *qa = (a->q_alt ? a->q_alt : a->q) + (size_t)t * a->ldq + (size_t)g * hd;
            float *o = a->o + (size_t)t * a->ldo + (size_t)g * hd;
            /* pass 1: row max of s_j = scale * q . k_j over visible j */
            double m = -INFINITY;
            for (int s = 0; s < a->n_segs; s++) {
                const moa_attn_seg *sg = &a->segs[s];
                const float *qs = sg->alt_q ? qa : q;
                for (int r = 0; r < sg->n; r++) {
                    if (!band_visible(i, sg->pos0 + r, a->sink, a->window)) continue;
                    const float *k = sg->k + (size_t)r * sg->ldk;
                    double dot = 0;
                    for (int d = 0; d < hd; d++) dot += (double)qs[d] * k[d];
                    dot *= a->scale;
                    if (dot > m) m = dot;
                }
            }
            if (m == -INFINITY) {           /* nothing visible: zero output */
                memset(o, 0, sizeof(float) * (size_t)hd);
                if (a->lse) a->lse[(size_t)t * a->n_group + g] = -INFINITY;
                continue;
            }
            /* pass 2: o = sum_j exp(s_j - m) v_j / sum_j exp(s_j - m) */
            double l = 0;
            for (int d = 0; d < hd; d++) acc[d] = 0;
            for (int s = 0; s < a->n_segs; s++) {
                const moa_attn_seg *sg = &a->segs[s];
                const float *qs = sg->alt_q ? qa : q;
                for (int r = 0; r < sg->n; r++) {
                    if (!band_visible(i, sg->pos0 + r, a->sink, a->window)) continue;
                    const float *k = sg->k + (size_t)r * sg->ldk;
                    const float *v = sg->v + (size_t)r * sg->ldv;
                    double dot = 0;
                    for (int d = 0; d < hd; d++) dot += (double)qs[d] * k[d];
                    double p = exp(dot * a->scale - m);
                    l += p;
                    for (int d = 0; d < hd; d++) acc[d] += p * v[d];
                }
            }
            for (int d = 0; d < hd; d++) o[d] = (float)(acc[d] / l);
            if (a->lse) a->lse[(size_t)t * a->n_group + g] = (float)(m + log(l));
        }
    }
}

/* ---- causal linear attention: reference (the recurrence) ----------------------------------- */

void moa_linear_ref(const moa_linear_args *a) {
    const int hd = a->hd;
    const float lambda = (float)exp(-(double)a->decay);
    float *S = a->state;   /* [hd][hd] */
    for (int t = 0; t < a->n_t; t++) {
        const float *k = a->k + (size_t)t * a->ldk;
        const float *v = a->v + (size_t)t * a->ldv;
        /* S <- lambda S + k^T v */
        for (int d = 0; d < hd; d++)
            for (int e = 0; e < hd; e++)
                S[(size_t)d * hd + e] = lambda * S[(size_t)d * hd + e] + k[d] * v[e];
        /* o[g] = q[g] S */
        for (int g = 0; g < a->n_group; g++) {
            const float *q = a->q + (size_t)t * a->ldq + (size_t)g * hd;
            float *o = a->o + (size_t)t * a->ldo + (size_t)g * hd;
            for (int e = 0; e < hd; e++) {
                double s = 0;
                for (int d = 0; d < hd; d++) s += (double)q[d] * S[(size_t)d * hd + e];
                o[e] = (float)s;
            }
        }
    }
}

/* ---- dispatch -------------------------------------------------------------------------------- */

/* -1 = not chosen yet. Written once (benign: every writer stores the same value) or by
 * moa_attn_isa_set from the main thread before work starts. */
static int g_isa = -1;

moa_attn_isa moa_attn_isa_best(void) {
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
        __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq"))
        return MOA_ISA_AVX512;
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
        return MOA_ISA_AVX2;
    return MOA_ISA_REF;
}

moa_attn_isa moa_attn_isa_get(void) {
    int isa = __atomic_load_n(&g_isa, __ATOMIC_RELAXED);
    if (isa < 0) {
        isa = (int)moa_attn_isa_best();
        __atomic_store_n(&g_isa, isa, __ATOMIC_RELAXED);
    }
    return (moa_attn_isa)isa;
}

void moa_attn_isa_set(moa_attn_isa isa) {
    moa_attn_isa best = moa_attn_isa_best();
    if ((int)isa > (int)best) isa = best;
    if ((int)isa < 0) isa = MOA_ISA_REF;
    __atomic_store_n(&g_isa, (int)isa, __ATOMIC_RELAXED);
}

const char *moa_attn_isa_name(moa_attn_isa isa) {
    switch (isa) {
    case MOA_ISA_AVX512: return "avx512";
    case MOA_ISA_AVX2:   return "avx2";
    case MOA_ISA_REF:    return "ref";
    }
    return "?";
}

void moa_attn_band(const moa_attn_band_args *a) {
    if (a->n_group > MOA_ATTN_GROUP_MAX) {
        moa_attn_band_ref(a);
        return;
    }
    switch (moa_attn_isa_get()) {
    case MOA_ISA_AVX512: moa_attn_band_avx512(a); break;
    case MOA_ISA_AVX2:   moa_attn_band_avx2(a); break;
    default:             moa_attn_band_ref(a); break;
    }
}

void moa_linear(const moa_linear_args *a) {
    if (a->n_group > MOA_ATTN_GROUP_MAX) {
        moa_linear_ref(a);
        return;
    }
    switch (moa_attn_isa_get()) {
    case MOA_ISA_AVX512: moa_linear_avx512(a); break;
    case MOA_ISA_AVX2:   moa_linear_avx2(a); break;
    default:             moa_linear_ref(a); break;
    }
}
