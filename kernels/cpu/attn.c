/* attn.c - reference attention kernels (the source of truth) and run-time ISA dispatch.
 * Fast versions: attn-avx2.c, attn-avx512.c (one body, attn-simd.inc). */
#include "moa/attn.h"
#include "mask.h"   /* moa_mask_visible: the mask, written once (internal to kernels/) */

#include <cpuid.h>
#include <immintrin.h>
#include <math.h>
#include <string.h>

#include "moa/quant.h"   /* f16 / bf16 conversions, Q8_0 dequantisation */

/* ---- KV storage types ------------------------------------------------------------------------ */

size_t moa_attn_kv_row_bytes(moa_attn_kv_type t, int hd) {
    switch (t) {
    case MOA_ATTN_KV_F32:  return 4 * (size_t)hd;
    case MOA_ATTN_KV_F16:
    case MOA_ATTN_KV_BF16: return 2 * (size_t)hd;
    case MOA_ATTN_KV_Q8_0:
        return (size_t)(hd + MOA_ATTN_Q8_0_BLOCK - 1) / MOA_ATTN_Q8_0_BLOCK * MOA_ATTN_Q8_0_BYTES;
    }
    return 0;
}

const char *moa_attn_kv_name(moa_attn_kv_type t) {
    switch (t) {
    case MOA_ATTN_KV_F32:  return "f32";
    case MOA_ATTN_KV_F16:  return "f16";
    case MOA_ATTN_KV_BF16: return "bf16";
    case MOA_ATTN_KV_Q8_0: return "q8_0";
    }
    return "?";
}

#define F16_MAX 65504.0f
static float sat_f16(float x) { return x > F16_MAX ? F16_MAX : x < -F16_MAX ? -F16_MAX : x; }
static void put16(unsigned char *p, uint16_t h) { p[0] = (unsigned char)h; p[1] = (unsigned char)(h >> 8); }

static int has_f16c(void);
static int g_f16c = -1;   /* cached has_f16c() (benign race: every writer stores the same) */

/* sat_f16 then f32 -> f16 with the hardware's round-to-nearest-even: the same bits as
 * moa_f32_to_f16 for every non-NaN value (a NaN keeps its payload instead of 0x7e00). */
__attribute__((target("avx,f16c")))
static void store_f16_f16c(unsigned char *p, const float *src, int hd) {
    const __m256 hi = _mm256_set1_ps(F16_MAX), lo = _mm256_set1_ps(-F16_MAX);
    int d = 0;
    for (; d + 8 <= hd; d += 8) {
        /* max(lo, v), min(hi, .): a NaN in v passes through (second operand) */
        const __m256 v = _mm256_min_ps(hi, _mm256_max_ps(lo, _mm256_loadu_ps(src + d)));
        _mm_storeu_si128((__m128i *)(void *)(p + 2 * d), _mm256_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT));
    }
    for (; d < hd; d++) put16(p + 2 * d, moa_f32_to_f16(sat_f16(src[d])));
}

void moa_attn_kv_store_row(moa_attn_kv_type t, void *dst, const float *src, int hd) {
    unsigned char *p = dst;
    switch (t) {
    case MOA_ATTN_KV_F32: memcpy(dst, src, sizeof(float) * (size_t)hd); return;
    case MOA_ATTN_KV_F16:
        if (g_f16c < 0) g_f16c = has_f16c();
        if (g_f16c) { store_f16_f16c(p, src, hd); return; }
        for (int d = 0; d < hd; d++) put16(p + 2 * d, moa_f32_to_f16(sat_f16(src[d])));
        return;
    case MOA_ATTN_KV_BF16:
        for (int d = 0; d < hd; d++) put16(p + 2 * d, moa_f32_to_bf16(src[d]));
        return;
    case MOA_ATTN_KV_Q8_0:
        for (int b0 = 0; b0 < hd; b0 += MOA_ATTN_Q8_0_BLOCK, p += MOA_ATTN_Q8_0_BYTES) {
            const int nb = hd - b0 < MOA_ATTN_Q8_0_BLOCK ? hd - b0 : MOA_ATTN_Q8_0_BLOCK;
            float amax = 0.0f;
            for (int j = 0; j < nb; j++) amax = fmaxf(amax, fabsf(src[b0 + j]));
            const uint16_t dh = moa_f32_to_f16(sat_f16(amax / 127.0f));
            const float d = moa_f16_to_f32(dh);
            put16(p, dh);
            for (int j = 0; j < MOA_ATTN_Q8_0_BLOCK; j++) {
                float q = 0.0f;
                if (j < nb && d > 0.0f) {
                    q = nearbyintf(src[b0 + j] / d);
                    q = q > 127.0f ? 127.0f : q < -127.0f ? -127.0f : q;
                }
                p[2 + j] = (unsigned char)(int8_t)q;
            }
        }
        return;
    }
}

void moa_attn_kv_load_row_ref(moa_attn_kv_type t, float *dst, const void *src, int hd) {
    switch (t) {
    case MOA_ATTN_KV_F32: memcpy(dst, src, sizeof(float) * (size_t)hd); return;
    case MOA_ATTN_KV_F16: moa_dequant_row(MOA_GGML_F16, src, dst, hd); return;
    case MOA_ATTN_KV_BF16: moa_dequant_row(MOA_GGML_BF16, src, dst, hd); return;
    case MOA_ATTN_KV_Q8_0: {
        const int full = hd / MOA_ATTN_Q8_0_BLOCK * MOA_ATTN_Q8_0_BLOCK;
        if (full) moa_dequant_row(MOA_GGML_Q8_0, src, dst, full);
        if (full < hd) {
            float tail[MOA_ATTN_Q8_0_BLOCK];
            moa_dequant_row(MOA_GGML_Q8_0,
                            (const unsigned char *)src + (size_t)full / MOA_ATTN_Q8_0_BLOCK * MOA_ATTN_Q8_0_BYTES,
                            tail, MOA_ATTN_Q8_0_BLOCK);
            memcpy(dst + full, tail, sizeof(float) * (size_t)(hd - full));
        }
        return;
    }
    }
}

/* ---- banded softmax attention: reference --------------------------------------------------- */

/* The score s = scale * q . k_r of query position i against key r of segment sg, with the
 * key row widened into k: returns 0 (k, *s untouched) where i does not see the key. */
static int ref_score(const moa_attn_band_args *a, int64_t i, const moa_attn_seg *sg, int r,
                     const float *q, float *k, double *s) {
    if (!moa_mask_visible(i, sg->pos0 + r, a->sink, a->window)) return 0;
    moa_attn_kv_load_row_ref(sg->kt, k, (const char *)sg->k + (size_t)r * sg->kstride, a->hd);
    double dot = 0;
    for (int d = 0; d < a->hd; d++) dot += (double)q[d] * k[d];
    *s = dot * a->scale;
    return 1;
}

void moa_attn_band_ref(const moa_attn_band_args *a) {
    const int hd = a->hd;
    double acc[MOA_ATTN_HD_MAX];   /* callers guarantee hd <= MOA_ATTN_HD_MAX */
    float k[MOA_ATTN_HD_MAX], v[MOA_ATTN_HD_MAX];   /* the current key and value, widened */
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
                for (int r = 0; r < sg->n; r++) {
                    double sc;
                    if (ref_score(a, i, sg, r, sg->alt_q ? qa : q, k, &sc) && sc > m) m = sc;
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
                for (int r = 0; r < sg->n; r++) {
                    double sc;
                    if (!ref_score(a, i, sg, r, sg->alt_q ? qa : q, k, &sc)) continue;
                    moa_attn_kv_load_row_ref(sg->vt, v, (const char *)sg->v + (size_t)r * sg->vstride, hd);
                    double p = exp(sc - m);
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

/* F16C from CPUID leaf 1 (ECX bit 29): clang 14's __builtin_cpu_supports has no "f16c". */
static int has_f16c(void) {
    unsigned a, b, c, d;
    return __get_cpuid(1, &a, &b, &c, &d) && (c & bit_F16C);
}

moa_attn_isa moa_attn_isa_best(void) {
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
        __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq") && has_f16c())
        return MOA_ISA_AVX512;
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && has_f16c())
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

/* The kernels of each ISA, indexed by moa_attn_isa. */
static void (*const band_by_isa[])(const moa_attn_band_args *) = {
    [MOA_ISA_REF] = moa_attn_band_ref, [MOA_ISA_AVX2] = moa_attn_band_avx2,
    [MOA_ISA_AVX512] = moa_attn_band_avx512};
static void (*const linear_by_isa[])(const moa_linear_args *) = {
    [MOA_ISA_REF] = moa_linear_ref, [MOA_ISA_AVX2] = moa_linear_avx2,
    [MOA_ISA_AVX512] = moa_linear_avx512};
static void (*const kv_load_row_by_isa[])(moa_attn_kv_type, float *, const void *, int) = {
    [MOA_ISA_REF] = moa_attn_kv_load_row_ref, [MOA_ISA_AVX2] = moa_attn_kv_load_row_avx2,
    [MOA_ISA_AVX512] = moa_attn_kv_load_row_avx512};

/* The ISA of the band and linear kernels: the reference beyond MOA_ATTN_GROUP_MAX groups. */
static moa_attn_isa group_isa(int n_group) {
    return n_group > MOA_ATTN_GROUP_MAX ? MOA_ISA_REF : moa_attn_isa_get();
}

void moa_attn_band(const moa_attn_band_args *a) { band_by_isa[group_isa(a->n_group)](a); }

void moa_linear(const moa_linear_args *a) { linear_by_isa[group_isa(a->n_group)](a); }

void moa_attn_kv_load_row(moa_attn_kv_type t, float *dst, const void *src, int hd) {
    kv_load_row_by_isa[moa_attn_isa_get()](t, dst, src, hd);
}
