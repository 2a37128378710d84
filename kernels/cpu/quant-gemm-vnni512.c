/* quant-gemm-vnni512.c - batched products (prefill) with int8 activations on AVX512-VNNI:
 * y[t][o] = sum_i W[o][i] x[t][i] for a batch of tokens, W in its GGUF blocks (Q4_0, Q4_1,
 * Q5_0, Q5_1, Q8_0, Q4_K, Q5_K, Q6_K).
 *
 * Activations: per token and 32-value block, dx = max|x| / 127 and xq = round(x / dx) (as the
 * decode kernels' 32-value blocks), after the outliers (moa_q8_outlier_values: |x| > 12x the
 * mean |x| of their 256-value window) have been taken out; those few values are multiplied
 * in f32 afterwards, one weight column each.
 * Weights: groups of 16 rows are unpacked per call into 8-bit codes c (offset-carrying,
 * unsigned) laid out "row-interleaved": for each 32-value block, 8 vectors of 64 bytes, vector
 * j holding values 4j..4j+3 of the 16 rows (4 bytes per int32 lane), and per row the block's
 * f32 scale (two for Q6_K, one per 16 values) and min; value = s (c - off) + m.
 * Micro-kernel: 16 rows x 16 tokens; per block and token, 8 vpdpbusd with the token's 4
 * activation bytes broadcast (integer dot of 32 values for 16 rows at once, started at
 * -off sum xq), then one conversion and FMA with s dx (and m dx sum xq for the types with a
 * min). Error: the activation rounding, sum_i W[o][i] (x_i - dx xq_i) (every term on the same
 * xq, as in quant-q8.inc), plus f32 rounding.
 * Compiled with -mavx512f/bw/vl/dq/vnni; called only on such CPUs (quant.c dispatch). */
#include "quant-impl.h"
#include "quant-q8-avx512.h"
#include "moa/common.h"

#include <immintrin.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define GR 16        /* rows per group (lanes) */
#define TT 16        /* tokens per micro-tile */
#define GROUPS 4     /* groups per work item (64 rows) */

static inline float f16v(const uint8_t *p) {
    uint16_t h;
    memcpy(&h, p, 2);
    return _cvtsh_ss(h);
}

/* Per-type layout facts. */
typedef struct {
    int off;      /* code offset */
    int split;    /* 1: two scales per block (values 0-15, 16-31) */
    int min;      /* 1: a min term */
} gtype;

static int gtype_of(moa_ggml_type t, gtype *g) {
    switch (t) {
    case MOA_GGML_Q4_0: *g = (gtype){8, 0, 0}; return 1;
    case MOA_GGML_Q4_1: *g = (gtype){0, 0, 1}; return 1;
    case MOA_GGML_Q5_0: *g = (gtype){16, 0, 0}; return 1;
    case MOA_GGML_Q5_1: *g = (gtype){0, 0, 1}; return 1;
    case MOA_GGML_Q8_0: *g = (gtype){128, 0, 0}; return 1;
    case MOA_GGML_Q4_K: case MOA_GGML_Q5_K: *g = (gtype){0, 0, 1}; return 1;
    case MOA_GGML_Q6_K: *g = (gtype){32, 1, 0}; return 1;
    default: return 0;
    }
}

static inline void k_sm(const uint8_t *s, int j, int *sc, int *mn) {
    if (j < 4) { *sc = s[j] & 63; *mn = s[j + 4] & 63; }
    else {
        *sc = (s[j + 4] & 15) | ((s[j - 4] >> 6) << 4);
        *mn = (s[j + 4] >> 4) | ((s[j] >> 6) << 4);
    }
}

/* Byte k = 0x10 where bit k of m is set. */
static inline __m256i bits32(uint32_t m) { return _mm256_maskz_mov_epi8((__mmask32)m, _mm256_set1_epi8(16)); }

static inline __m256i nib32(const uint8_t *qs) {
    __m128i raw = _mm_loadu_si128((const __m128i *)qs);
    return _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(raw, 4), raw), _mm256_set1_epi8(15));
}

/* Codes of 32-value block b of one row (natural value order) and its scales. */
static inline __m256i unpack_block(moa_ggml_type t, const uint8_t *row, int64_t b, float *sa, float *sb, float *m) {
    const uint8_t *p;
    *m = 0;
    switch (t) {
    case MOA_GGML_Q4_0: p = row + 18 * b; *sa = *sb = f16v(p); return nib32(p + 2);
    case MOA_GGML_Q4_1: p = row + 20 * b; *sa = *sb = f16v(p); *m = f16v(p + 2); return nib32(p + 4);
    case MOA_GGML_Q5_0: {
        p = row + 22 * b; *sa = *sb = f16v(p);
        uint32_t qh; memcpy(&qh, p + 2, 4);
        return _mm256_or_si256(nib32(p + 6), bits32(qh));
    }
    case MOA_GGML_Q5_1: {
        p = row + 24 * b; *sa = *sb = f16v(p); *m = f16v(p + 2);
        uint32_t qh; memcpy(&qh, p + 4, 4);
        return _mm256_or_si256(nib32(p + 8), bits32(qh));
    }
    case MOA_GGML_Q8_0:
        p = row + 34 * b; *sa = *sb = f16v(p);
        return _mm256_xor_si256(_mm256_loadu_si256((const __m256i *)(p + 2)), _mm256_set1_epi8((char)0x80));
    case MOA_GGML_Q4_K: case MOA_GGML_Q5_K: {
        const int five = t == MOA_GGML_Q5_K;
        p = row + (five ? 176 : 144) * (b / 8);
        const int j = (int)(b % 8), c = j / 2;
        int sc, mn;
        k_sm(p + 4, j, &sc, &mn);
        *sa = *sb = f16v(p) * (float)sc;
        *m = -f16v(p + 2) * (float)mn;
        __m256i raw = _mm256_loadu_si256((const __m256i *)((five ? p + 48 : p + 16) + 32 * c));
        __m256i q = _mm256_and_si256(j & 1 ? _mm256_srli_epi16(raw, 4) : raw, _mm256_set1_epi8(15));
        if (five) {
            __m256i h = _mm256_loadu_si256((const __m256i *)(p + 16));
            __mmask32 k = _mm256_test_epi8_mask(h, _mm256_set1_epi8((char)(1 << j)));
            q = _mm256_or_si256(q, _mm256_maskz_mov_epi8(k, _mm256_set1_epi8(16)));
        }
        return q;
    }
    case MOA_GGML_Q6_K: {
        p = row + 210 * (b / 8);
        const int h = (int)(b % 8) / 4, g = (int)(b % 4);
        const int8_t *S = (const int8_t *)(p + 192);
        const float d = f16v(p + 208);
        *sa = d * (float)S[8 * h + 2 * g];
        *sb = d * (float)S[8 * h + 2 * g + 1];
        const uint8_t *L = p + 64 * h + (g & 1) * 32, *H = p + 128 + 32 * h;
        __m256i l = _mm256_loadu_si256((const __m256i *)L), hh = _mm256_loadu_si256((const __m256i *)H);
        __m256i lo = _mm256_and_si256(g >= 2 ? _mm256_srli_epi16(l, 4) : l, _mm256_set1_epi8(15));
        __m256i hi = _mm256_and_si256(_mm256_srli_epi16(hh, 2 * g), _mm256_set1_epi8(3));
        return _mm256_or_si256(lo, _mm256_slli_epi16(hi, 4));
    }
    default: return _mm256_setzero_si256();
    }
}

/* Repacked group: per block, 8 x 64 code bytes, then sa[16], sb[16] (split), m[16] (min). */
static size_t group_block_bytes(const gtype *g) { return 512 + 64 * (1 + (size_t)g->split + (size_t)g->min); }

/* Unpack rows [o0, o0 + GR) (rows >= n_out: zero) of W into dst. */
static void repack_group(moa_ggml_type t, const gtype *g, const uint8_t *W, size_t rb, int64_t o0, int64_t n_out,
                         int64_t nb, uint8_t *dst) {
    const size_t gbb = group_block_bytes(g);
    uint8_t tmp[GR * 32] __attribute__((aligned(64)));
    float sa[GR], sb[GR], m[GR];
    const __m512i idx = _mm512_setr_epi32(0, 8, 16, 24, 32, 40, 48, 56, 64, 72, 80, 88, 96, 104, 112, 120);
    for (int64_t b = 0; b < nb; b++) {
        for (int r = 0; r < GR; r++) {
            if (o0 + r < n_out) {
                __m256i c = unpack_block(t, W + (size_t)(o0 + r) * rb, b, &sa[r], &sb[r], &m[r]);
                _mm256_store_si256((__m256i *)(tmp + 32 * r), c);
            } else {
                memset(tmp + 32 * r, 0, 32);
                sa[r] = sb[r] = m[r] = 0;
            }
        }
        uint8_t *o = dst + (size_t)b * gbb;
        for (int j = 0; j < 8; j++)   /* vector j, lane r = dword j of row r */
            _mm512_store_si512((__m512i *)(o + 64 * j),
                               _mm512_i32gather_epi32(_mm512_add_epi32(idx, _mm512_set1_epi32(j)), (const void *)tmp, 4));
        float *f = (float *)(void *)(o + 512);
        memcpy(f, sa, sizeof sa);
        if (g->split) { f += GR; memcpy(f, sb, sizeof sb); }
        if (g->min) { f += GR; memcpy(f, m, sizeof m); }
    }
}

/* Activations of the batch: xq [n][n_in], per (t, b): dx, the offset start -off sum xq (two
 * halves when split), dx sum xq (min types). */
typedef struct {
    const int8_t *q;
    const float *dx, *sx;
    const int32_t *z0, *z1;
    int64_t n_in, nb;
} gact;

/* The micro-kernel: one group (16 rows) x nt <= TT tokens from token t0, all blocks; y rows
 * o0.. (nr valid). */
static inline __attribute__((always_inline)) void micro(const gtype g, const int nt, const uint8_t *grp, const gact *a,
                                                       int64_t t0, float *y, int64_t n_out, int64_t o0, int nr) {
    const size_t gbb = group_block_bytes(&g);
    __m512 acc[TT];
    for (int t = 0; t < nt; t++) acc[t] = _mm512_setzero_ps();
    for (int64_t b = 0; b < a->nb; b++) {
        const uint8_t *o = grp + (size_t)b * gbb;
        __m512i w[8];
        for (int j = 0; j < 8; j++) w[j] = _mm512_load_si512((const __m512i *)(o + 64 * j));
        const float *f = (const float *)(const void *)(o + 512);
        const __m512 sa = _mm512_load_ps(f);
        const __m512 sb = g.split ? _mm512_load_ps(f + GR) : sa;
        const __m512 mv = g.min ? _mm512_load_ps(f + GR * (1 + g.split)) : sa;
        for (int t = 0; t < nt; t++) {
            const int64_t k = (t0 + t) * a->nb + b;
            const int32_t *xb = (const int32_t *)(const void *)(a->q + (t0 + t) * a->n_in + 32 * b);
            const __m512 dx = _mm512_set1_ps(a->dx[k]);
            if (g.split) {
                __m512i i0 = _mm512_set1_epi32(a->z0[k]), i1 = _mm512_set1_epi32(a->z1[k]);
                for (int j = 0; j < 4; j++) i0 = _mm512_dpbusd_epi32(i0, w[j], _mm512_set1_epi32(xb[j]));
                for (int j = 4; j < 8; j++) i1 = _mm512_dpbusd_epi32(i1, w[j], _mm512_set1_epi32(xb[j]));
                acc[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(i0), _mm512_mul_ps(sa, dx), acc[t]);
                acc[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(i1), _mm512_mul_ps(sb, dx), acc[t]);
            } else {
                __m512i i0 = g.off ? _mm512_set1_epi32(a->z0[k]) : _mm512_setzero_si512();
                for (int j = 0; j < 8; j++) i0 = _mm512_dpbusd_epi32(i0, w[j], _mm512_set1_epi32(xb[j]));
                acc[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(i0), _mm512_mul_ps(sa, dx), acc[t]);
                if (g.min) acc[t] = _mm512_fmadd_ps(mv, _mm512_set1_ps(a->sx[k]), acc[t]);
            }
        }
    }
    const __mmask16 mk = (__mmask16)((1u << nr) - 1);
    for (int t = 0; t < nt; t++) _mm512_mask_storeu_ps(y + (t0 + t) * n_out + o0, mk, acc[t]);
}

static void micro_any(const gtype *g, int nt, const uint8_t *grp, const gact *a, int64_t t0, float *y, int64_t n_out,
                      int64_t o0, int nr) {
    /* compile-time type traits and token count for the common cases */
    if (g->split) {
        if (nt == TT) micro((gtype){32, 1, 0}, TT, grp, a, t0, y, n_out, o0, nr);
        else micro((gtype){32, 1, 0}, nt, grp, a, t0, y, n_out, o0, nr);
    } else if (g->min) {
        if (nt == TT) micro((gtype){0, 0, 1}, TT, grp, a, t0, y, n_out, o0, nr);
        else micro((gtype){0, 0, 1}, nt, grp, a, t0, y, n_out, o0, nr);
    } else {
        if (nt == TT) micro((gtype){1, 0, 0}, TT, grp, a, t0, y, n_out, o0, nr);
        else micro((gtype){1, 0, 0}, nt, grp, a, t0, y, n_out, o0, nr);
    }
}

/* y[t][o0..o0+nr) += W[o][i] x for the outlier (t, i, x) of token t: the code of value i from
 * the repacked group. */
static void outlier_fix(const gtype *g, const uint8_t *grp, int64_t i, float xv, float *yrow, int nr) {
    const size_t gbb = group_block_bytes(g);
    const int64_t b = i / 32;
    const int j = (int)(i % 32) / 4, e = (int)(i % 4);
    const uint8_t *o = grp + (size_t)b * gbb;
    const float *f = (const float *)(const void *)(o + 512);
    __m512i w = _mm512_load_si512((const __m512i *)(o + 64 * j));
    __m512 c = _mm512_cvtepi32_ps(_mm512_and_si512(_mm512_srli_epi32(w, 8 * e), _mm512_set1_epi32(255)));
    __m512 s = _mm512_load_ps(g->split && (i % 32) >= 16 ? f + GR : f);
    __m512 v = _mm512_mul_ps(_mm512_sub_ps(c, _mm512_set1_ps((float)g->off)), s);
    if (g->min) v = _mm512_add_ps(v, _mm512_load_ps(f + GR * (1 + g->split)));
    const __mmask16 mk = (__mmask16)((1u << nr) - 1);
    __m512 yv = _mm512_maskz_loadu_ps(mk, yrow);
    _mm512_mask_storeu_ps(yrow, mk, _mm512_fmadd_ps(v, _mm512_set1_ps(xv), yv));
}

/* Quantise token t's activations (outliers already zeroed in xs): codes, dx, dx sum xq, and the
 * raw sums of xq over values 0-15 and 16-31 of each block. */
#define MAX_OUTLIERS MOA_Q8_MAX_OUTLIERS   /* per token; more: the call declines (f32 path) */
#define MAX_JOBS 8

int moa_matmul_q_gemm_vnni512(const moa_matmul_q_job *jobs, int n_jobs, int64_t n_in, const float *x, int64_t n) {
    gtype g[MAX_JOBS];
    if (n_jobs < 1 || n_jobs > MAX_JOBS || n < 1 || n_in % 32) return 0;
    for (int k = 0; k < n_jobs; k++) {
        uint32_t be;
        if (!gtype_of(jobs[k].type, &g[k]) || !moa_ggml_type_info(jobs[k].type, &be, NULL) || n_in % be) return 0;
    }
    const int64_t nb = n_in / 32, nk = n * nb;
    /* scratch: xq, dx, sx, raw sums, per-job offset starts, outlier lists */
    int8_t *xq = moa_alloc_aligned((size_t)(n * n_in), 1);
    float *fs = moa_alloc_array((size_t)nk * 2, sizeof(float));
    int32_t *ss = moa_alloc_array((size_t)nk * (2 + 2 * (size_t)n_jobs), sizeof(int32_t));
    int32_t *oidx = moa_alloc_array((size_t)n * MAX_OUTLIERS, sizeof(int32_t));
    float *oval = moa_alloc_array((size_t)n * MAX_OUTLIERS, sizeof(float));
    int32_t *ocnt = moa_alloc_array((size_t)n, sizeof(int32_t));
    int ok = xq && fs && ss && oidx && oval && ocnt;
    if (ok) {
        int too_many = 0;
        #pragma omp parallel for schedule(static) reduction(|| : too_many) if (n * n_in > 65536)
        for (int64_t tk = 0; tk < n; tk++) {
            const int64_t c = moa_q8_token_avx512(x + tk * n_in, n_in, oidx + tk * MAX_OUTLIERS, oval + tk * MAX_OUTLIERS,
                                                  xq + tk * n_in, fs + tk * nb, fs + nk + tk * nb, ss + tk * nb,
                                                  ss + nk + tk * nb);
            if (c < 0) too_many = 1;
            else ocnt[tk] = (int32_t)c;
        }
        ok = !too_many;
    }
    if (ok) {
        /* per job: the accumulators' start values -off sum xq (halves when split) */
        gact a[MAX_JOBS];
        size_t gmax = 0;
        int64_t nitem[MAX_JOBS], total = 0;
        for (int k = 0; k < n_jobs; k++) {
            int32_t *z0 = ss + nk * (2 + 2 * k), *z1 = z0 + nk;
            for (int64_t i = 0; i < nk; i++) {
                if (g[k].split) { z0[i] = -g[k].off * ss[i]; z1[i] = -g[k].off * ss[nk + i]; }
                else z0[i] = -g[k].off * (ss[i] + ss[nk + i]);
            }
            a[k] = (gact){xq, fs, fs + nk, z0, z1, n_in, nb};
            const size_t gb = (size_t)nb * group_block_bytes(&g[k]);
            gmax = gb > gmax ? gb : gmax;
            nitem[k] = ((jobs[k].n_out + GR - 1) / GR + GROUPS - 1) / GROUPS;
            total += nitem[k];
        }
        int failed = 0;
        #pragma omp parallel reduction(|| : failed)
        {
            uint8_t *gbuf = moa_alloc_aligned(gmax * GROUPS, 1);
            if (!gbuf) failed = 1;
            #pragma omp for schedule(dynamic, 1)
            for (int64_t itg = 0; itg < total; itg++) {
                if (!gbuf) continue;
                int k = 0;
                int64_t it = itg;
                while (it >= nitem[k]) it -= nitem[k++];
                const moa_ggml_type t = jobs[k].type;
                const int64_t n_out = jobs[k].n_out, n_grp = (n_out + GR - 1) / GR;
                const size_t rb = moa_ggml_row_bytes(t, n_in), gbytes = (size_t)nb * group_block_bytes(&g[k]);
                float *y = jobs[k].y;
                const int64_t g0 = it * GROUPS, g1 = g0 + GROUPS < n_grp ? g0 + GROUPS : n_grp;
                for (int64_t gi = g0; gi < g1; gi++)
                    repack_group(t, &g[k], (const uint8_t *)jobs[k].W, rb, gi * GR, n_out, nb,
                                 gbuf + (size_t)(gi - g0) * gbytes);
                for (int64_t t0 = 0; t0 < n; t0 += TT) {
                    const int nt = (int)(n - t0 < TT ? n - t0 : TT);
                    for (int64_t gi = g0; gi < g1; gi++) {
                        const int nr = (int)(n_out - gi * GR < GR ? n_out - gi * GR : GR);
                        const uint8_t *grp = gbuf + (size_t)(gi - g0) * gbytes;
                        micro_any(&g[k], nt, grp, &a[k], t0, y, n_out, gi * GR, nr);
                        for (int tt = 0; tt < nt; tt++)
                            for (int c = 0; c < ocnt[t0 + tt]; c++)
                                outlier_fix(&g[k], grp, oidx[(t0 + tt) * MAX_OUTLIERS + c],
                                            oval[(t0 + tt) * MAX_OUTLIERS + c], y + (t0 + tt) * n_out + gi * GR, nr);
                    }
                }
            }
            moa_free_aligned(gbuf);
        }
        ok = !failed;
    }
    moa_free_aligned(xq);
    free(fs); free(ss); free(oidx); free(oval); free(ocnt);
    return ok;
}
