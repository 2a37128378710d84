/* test_cache_attn.c - caches + attention through the public API against naive recomputation
 * written here: for every position i, an explicit loop over all earlier keys with the shared
 * mask, RoPE computed in double at the positions the mode defines (absolute: i and j;
 * streaming: cache positions), softmax in double; linear units by the closed form. */
#include <math.h>
#include <omp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "moa/attn.h"        /* kernels/cpu: moa_attn_isa_set */
#include "moa/runtime.h"
#include "plan-internal.h"   /* building a q-head plan in memory */
#include "moa/quant.h"       /* kernels/cpu: the GGUF Q8_0 dequantiser */
#include "test.h"

static uint64_t rng_state = 0x2545f4914f6cdd1dull;
static float frand(void) {
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (float)((double)(rng_state >> 11) / (double)(1ull << 53) * 2.0 - 1.0);
}
static float *rand_buf(size_t n, float amp) {
    float *p = malloc(n * sizeof *p);
    for (size_t i = 0; i < n; i++) p[i] = amp * frand();
    return p;
}

typedef struct {
    int n_layer, n_head, n_kv, hd;
    const moa_cache_unit *units;   /* [n_layer][n_kv] */
    const int64_t *q_window;       /* [n_layer][n_head] or NULL */
    moa_cache_params p;
    int64_t N;
} setup;

/* The kernels' arithmetic is tested with an f32 cache; storage types have their own tests. */
static moa_cache_params f32_params(void) {
    moa_cache_params p = moa_cache_default_params();
    p.type_k = p.type_v = MOA_KV_F32;
    return p;
}

/* ---- storage types, written here from the formats' definitions ---------------------------- */

/* x rounded to nearest even at `mant` fraction bits with exponents >= emin (subnormal steps
 * below), in double: the binary16 (10, -14) and bfloat16 (7, -126) formats. */
static double round_fmt(double x, int mant, int emin) {
    if (x == 0 || x != x) return x;
    int e;
    frexp(fabs(x), &e);                    /* |x| = m 2^e, m in [0.5, 1): leading bit 2^(e-1) */
    const int E = e - 1 < emin ? emin : e - 1;
    const double ulp = ldexp(1.0, E - mant);
    return copysign(nearbyint(fabs(x) / ulp) * ulp, x);
}
static float round_f16(float x) {
    double r = round_fmt(x, 10, -14);
    return (float)(r > 65504 ? 65504 : r < -65504 ? -65504 : r);
}
static float round_bf16(float x) { return (float)round_fmt(x, 7, -126); }
/* One row of hd values as the cache of type t holds it (Q8_0: blocks of 32 along the row,
 * d = f16(max|x| / 127), q = round(x / d) in [-127, 127], value q d). */
static void round_row(moa_kv_type t, float *x, int hd) {
    if (t == MOA_KV_F16) for (int d = 0; d < hd; d++) x[d] = round_f16(x[d]);
    if (t == MOA_KV_BF16) for (int d = 0; d < hd; d++) x[d] = round_bf16(x[d]);
    if (t == MOA_KV_Q8_0)
        for (int b = 0; b < hd; b += 32) {
            const int nb = hd - b < 32 ? hd - b : 32;
            float amax = 0;
            for (int j = 0; j < nb; j++) amax = fmaxf(amax, fabsf(x[b + j]));
            const float d = round_f16(amax / 127.0f);
            for (int j = 0; j < nb; j++) {
                float q = d > 0 ? nearbyintf(x[b + j] / d) : 0.0f;
                q = q > 127 ? 127 : q < -127 ? -127 : q;
                x[b + j] = q * d;
            }
        }
}
/* Largest error of storing a value, relative to the largest magnitude u of its row (a bound
 * for every format: f16 2^-11 |x| (+2^-25 below 2^-14), bf16 2^-8 |x|, q8_0 d/2 <=
 * max|x| (1 + 2^-11) / 254) as (relative c, absolute a): |x - x'| <= c u + a. */
static void fmt_err(moa_kv_type t, double *c, double *a) {
    *a = 0;
    switch (t) {
    case MOA_KV_F32:  *c = 0; break;
    case MOA_KV_F16:  *c = ldexp(1, -11); *a = ldexp(1, -25); break;
    case MOA_KV_BF16: *c = ldexp(1, -8); break;
    default:          *c = (1 + ldexp(1, -11)) / 254; break;
    }
}

/* x (hd) rotated in double by pos * base^(-2i/rope_dim): pairs (2i, 2i+1) (normal) or
 * (i, i + rope_dim/2) (NEOX). */
static void rope_d(double *x, const float *src, int hd, int rope_dim, double base, int64_t pos,
                   moa_rope_pairing pairing) {
    for (int d = 0; d < hd; d++) x[d] = src[d];
    for (int i = 0; i < rope_dim / 2; i++) {
        double th = (double)pos * pow(base, -2.0 * i / rope_dim);
        int a = pairing == MOA_ROPE_NEOX ? i : 2 * i, b = pairing == MOA_ROPE_NEOX ? i + rope_dim / 2 : 2 * i + 1;
        double c = cos(th), s = sin(th), x0 = x[a], x1 = x[b];
        x[a] = x0 * c - x1 * s;
        x[b] = x0 * s + x1 * c;
    }
}

/* Rows below this position are neither computed by naive_layer nor compared (long runs). */
static int check_from = 0;

/* Linear units read these k, v instead (their state is f32: the storage type does not apply);
 * NULL: the same as softmax units. */
static const float *lin_k, *lin_v;

/* Expected output of one layer for tokens check_from..T-1 of one sequence. */
static void naive_layer(const setup *S, int layer, int T, const float *q, const float *k0,
                        const float *v0, float *o) {
    const float *k = k0, *v = v0;
    const int hd = S->hd, G = S->n_head / S->n_kv;
    const size_t ldq = (size_t)S->n_head * hd, ldk = (size_t)S->n_kv * hd;
    const double scale = S->p.scale > 0 ? S->p.scale : 1.0 / sqrt((double)hd);
    const int rd = S->p.rope_dim;
    double *qd = malloc(sizeof(double) * hd), *kd = malloc(sizeof(double) * hd);
    double *sc = malloc(sizeof(double) * T), *acc = malloc(sizeof(double) * hd);
    for (int kvh = 0; kvh < S->n_kv; kvh++) {
        const moa_cache_unit *u = &S->units[layer * S->n_kv + kvh];
        for (int g = 0; g < G; g++) {
            const int h = kvh * G + g;
            for (int i = check_from; i < T; i++) {
                const float *qi = q + i * ldq + (size_t)h * hd;
                float *oi = o + i * ldq + (size_t)h * hd;
                if (u->kind == MOA_UNIT_LINEAR) {   /* sum_j lambda^(i-j) (q_i . k_j) v_j */
                    const float *k = lin_k ? lin_k : k0, *v = lin_v ? lin_v : v0;
                    for (int e = 0; e < hd; e++) acc[e] = 0;
                    for (int j = 0; j <= i; j++) {
                        double dot = 0;
                        for (int d = 0; d < hd; d++) dot += (double)qi[d] * k[j * ldk + (size_t)kvh * hd + d];
                        double w = exp(-(double)u->decay * (i - j)) * dot;
                        for (int e = 0; e < hd; e++) acc[e] += w * v[j * ldk + (size_t)kvh * hd + e];
                    }
                    for (int e = 0; e < hd; e++) oi[e] = (float)acc[e];
                    continue;
                }
                const int64_t sink = u->sink < S->N ? u->sink : S->N;
                int64_t R = u->kind == MOA_UNIT_DENSE ? S->N - sink
                          : (u->window < S->N - sink ? u->window : S->N - sink);
                int64_t W = R;
                if (S->q_window && u->kind != MOA_UNIT_LINEAR) {
                    W = S->q_window[layer * S->n_head + h];
                    if (W > R) W = R;
                }
                const int64_t C = sink + R - 1;
                const int64_t shift = S->p.pos_mode == MOA_POS_STREAMING && i > C ? i - C : 0;
                rope_d(qd, qi, hd, rd, S->p.rope_base, i - shift, S->p.rope_pairing);
                double m = -INFINITY;
                for (int j = 0; j <= i; j++) {
                    sc[j] = -INFINITY;
                    if (!(j < sink || i - j < W)) continue;
                    rope_d(kd, k + j * ldk + (size_t)kvh * hd, hd, rd, S->p.rope_base,
                           j < sink ? j : j - shift, S->p.rope_pairing);
                    double dot = 0;
                    for (int d = 0; d < hd; d++) dot += qd[d] * kd[d];
                    sc[j] = dot * scale;
                    if (sc[j] > m) m = sc[j];
                }
                double den = 0;
                for (int e = 0; e < hd; e++) acc[e] = 0;
                for (int j = 0; j <= i; j++) {
                    if (sc[j] == -INFINITY) continue;
                    double p = exp(sc[j] - m);
                    den += p;
                    for (int e = 0; e < hd; e++) acc[e] += p * v[j * ldk + (size_t)kvh * hd + e];
                }
                for (int e = 0; e < hd; e++) oi[e] = den > 0 ? (float)(acc[e] / den) : 0.0f;
            }
        }
    }
    free(qd); free(kd); free(sc); free(acc);
}

/* Largest per-row relative error over a [T][ld] output. */
static double rows_err(const float *a, const float *b, int T, size_t ld) {
    double e = 0;
    for (int t = check_from; t < T; t++) {
        double x = test_max_rel_err(a + t * ld, b + t * ld, ld, 1e-2);
        if (x > e) e = x;
    }
    return e;
}

/* Storage-type runs of drive(). kv_exact: the stored values are known here (keys rotated by
 * the caller, or streaming mode, which stores raw keys), so the output must match the
 * reference computed on them as tightly as an f32 cache matches its own. Always: every
 * softmax output stays within the bound the formats imply against the f32 reference:
 * with |s' - s| <= delta for every score (delta = scale |q| (c_k m max_j |k_j| + a_k sqrt(hd)),
 * m = sqrt(hd) for q8_0 whose error is relative to the block maximum, else 1), the weights
 * move by at most p_j (e^(2 delta) - 1), so
 *   |o' - o| <= (e^(2 delta) - 1) max|v'| + c_v max|v| + a_v   (+ 2e-5 of f32 arithmetic).
 * kv_ratio: the worst ratio of the error to that bound; kv_maxerr: the worst error. Linear
 * units keep f32 (their state is f32) and must match the f32 reference tightly. */
static int kv_exact;
static double kv_ratio, kv_maxerr;

static double kv_check(const setup *S, int l, int T, const float *q, const float *k, const float *v,
                       const float *o, const float *want) {
    const int hd = S->hd, G = S->n_head / S->n_kv;
    const size_t ldq = (size_t)S->n_head * hd, ldk = (size_t)S->n_kv * hd;
    const double scale = S->p.scale > 0 ? S->p.scale : 1.0 / sqrt((double)hd);
    double ck, ak, cv, av;
    fmt_err(S->p.type_k, &ck, &ak);
    fmt_err(S->p.type_v, &cv, &av);
    if (S->p.type_k == MOA_KV_Q8_0) ck *= sqrt((double)hd);
    double err = 0;
    for (int h = 0; h < S->n_head; h++) {
        const int kvh = h / G;
        const int lin = S->units[l * S->n_kv + kvh].kind == MOA_UNIT_LINEAR;
        double kmax = 0, vmax = 0;
        for (int t = 0; t < T; t++) {
            const float *kt = k + t * ldk + (size_t)kvh * hd, *vt = v + t * ldk + (size_t)kvh * hd;
            double n2 = 0;
            for (int d = 0; d < hd; d++) { n2 += (double)kt[d] * kt[d]; vmax = fmax(vmax, fabs(vt[d])); }
            kmax = fmax(kmax, sqrt(n2));
            if (t < check_from) continue;
            const float *qt = q + t * ldq + (size_t)h * hd, *ot = o + t * ldq + (size_t)h * hd;
            const float *wt = want + t * ldq + (size_t)h * hd;
            double qn = 0, e = 0, wmax = 1e-2;
            for (int d = 0; d < hd; d++) {
                qn += (double)qt[d] * qt[d];
                e = fmax(e, fabs((double)ot[d] - wt[d]));
                wmax = fmax(wmax, fabs(wt[d]));
            }
            if (lin) {   /* f32 state: as tight as an f32 cache */
                if (e / wmax > err) err = e / wmax;
                continue;
            }
            const double delta = scale * sqrt(qn) * (ck * kmax + ak * sqrt((double)hd));
            const double bound = expm1(2 * delta) * (vmax * (1 + cv) + av) + cv * vmax + av + 2e-5;
            if (e / bound > kv_ratio) kv_ratio = e / bound;
            if (e > kv_maxerr) kv_maxerr = e;
        }
    }
    if (kv_exact) {   /* the reference on the stored values */
        float *kr = malloc(sizeof(float) * T * ldk), *vr = malloc(sizeof(float) * T * ldk);
        float *wr = malloc(sizeof(float) * T * ldq);
        memcpy(kr, k, sizeof(float) * T * ldk);
        memcpy(vr, v, sizeof(float) * T * ldk);
        for (size_t r = 0; r < (size_t)T * S->n_kv; r++) {
            round_row(S->p.type_k, kr + r * hd, hd);
            round_row(S->p.type_v, vr + r * hd, hd);
        }
        lin_k = k;
        lin_v = v;
        naive_layer(S, l, T, q, kr, vr, wr);
        lin_k = lin_v = NULL;
        double e = rows_err(o, wr, T, ldq);
        if (e > err) err = e;
        free(kr); free(vr); free(wr);
    }
    return err;
}

/* When set, caches are made from this plan (moa_cache_create) instead of the layout. */
static const moa_plan *drive_plan;

/* >= 0: the cache is made with this pairing instead of the setup's (a control). */
static int pairing_override = -1;

static moa_cache *make_cache(const setup *S, int n_seq) {
    if (pairing_override >= 0) {
        setup T = *S;
        T.p.rope_pairing = (moa_rope_pairing)pairing_override;
        pairing_override = -1;
        moa_cache *c = make_cache(&T, n_seq);
        pairing_override = T.p.rope_pairing;
        return c;
    }
    if (drive_plan) {
        moa_cache *c = NULL;
        CHECK_OK(moa_cache_create(drive_plan, S->N, n_seq, &S->p, &c));
        return c;
    }
    moa_cache_layout L = {.n_layer = S->n_layer, .n_head = S->n_head, .n_head_kv = S->n_kv,
                          .head_dim = S->hd, .units = S->units, .q_window = S->q_window};
    moa_cache *c = NULL;
    CHECK_OK(moa_cache_create_layout(&L, S->N, n_seq, &S->p, &c));
    return c;
}

/* One sequence: prefill in the given chunks, then decode one token at a time up to T; every
 * layer against naive_layer. Returns the worst relative error. */
static double drive(const setup *S, int T, const int *chunks, int nch) {
    const size_t ldq = (size_t)S->n_head * S->hd, ldk = (size_t)S->n_kv * S->hd;
    moa_cache *c = make_cache(S, 1);
    if (!c) return INFINITY;
    float **q = malloc(sizeof(float *) * S->n_layer), **k = malloc(sizeof(float *) * S->n_layer);
    float **v = malloc(sizeof(float *) * S->n_layer), **o = malloc(sizeof(float *) * S->n_layer);
    for (int l = 0; l < S->n_layer; l++) {
        q[l] = rand_buf(T * ldq, 1.0f);
        k[l] = rand_buf(T * ldk, 1.0f);
        v[l] = rand_buf(T * ldk, 1.0f);
        o[l] = calloc(T * ldq, sizeof(float));
    }
    int t = 0;
    for (int ch = 0; ch < nch && t < T; ch++) {
        int n = chunks[ch] < T - t ? chunks[ch] : T - t;
        for (int l = 0; l < S->n_layer; l++)
            CHECK_OK(moa_attn_prefill(c, 0, l, q[l] + t * ldq, k[l] + t * ldk, v[l] + t * ldk, n,
                                      o[l] + t * ldq));
        t += n;
    }
    for (; t < T; t++)
        for (int l = 0; l < S->n_layer; l++)
            CHECK_OK(moa_attn_decode(c, l, NULL, 1, q[l] + t * ldq, k[l] + t * ldk, v[l] + t * ldk,
                                     o[l] + t * ldq));
    for (int l = 0; l < S->n_layer; l++) CHECK_EQ_INT(moa_cache_pos(c, 0, l), T);
    double err = 0;
    float *want = malloc(T * ldq * sizeof(float));
    const int typed = S->p.type_k != MOA_KV_F32 || S->p.type_v != MOA_KV_F32;
    for (int l = 0; l < S->n_layer; l++) {
        naive_layer(S, l, T, q[l], k[l], v[l], want);
        double e = typed ? kv_check(S, l, T, q[l], k[l], v[l], o[l], want) : rows_err(o[l], want, T, ldq);
        if (e > err) err = e;
        free(q[l]); free(k[l]); free(v[l]); free(o[l]);
    }
    free(want); free(q); free(k); free(v); free(o);
    moa_cache_free(c);
    return err;
}

static const moa_attn_isa isas[] = {MOA_ISA_REF, MOA_ISA_AVX2, MOA_ISA_AVX512};

/* Window units (sink < W, sink > W, W = 0), a linear unit with decay; chunked prefill, then
 * decode far past N (rings wrap several times); every ISA. */
TEST(absolute_windows_linear_past_n) {
    const moa_cache_unit units[] = {
        {MOA_UNIT_WINDOW, 37, 5, 0}, {MOA_UNIT_LINEAR, 0, 0, 0.1f},
        {MOA_UNIT_WINDOW, 0, 3, 0},  {MOA_UNIT_WINDOW, 20, 30, 0},
    };
    setup S = {.n_layer = 2, .n_head = 6, .n_kv = 2, .hd = 40, .units = units, .N = 100,
               .p = f32_params()};
    S.p.rope_dim = 32;   /* partial rotation */
    S.p.rope_base = 10000.0f;
    const int chunks[] = {13, 50, 1, 31};
    for (int i = 0; i < 3; i++) {
        if (isas[i] > moa_attn_isa_best()) continue;
        moa_attn_isa_set(isas[i]);
        double e = drive(&S, 260, chunks, 4);
        CHECK_MSG(e < 1e-4, "%s: rel err %.3g", moa_attn_isa_name(isas[i]), e);
    }
    moa_attn_isa_set(moa_attn_isa_best());
}

/* A prompt longer than the ring in one chunk, the head dim of the test model, GQA 3. */
TEST(absolute_long_chunk_gqa) {
    const moa_cache_unit units[] = {{MOA_UNIT_WINDOW, 64, 4, 0}, {MOA_UNIT_WINDOW, 17, 0, 0},
                                    {MOA_UNIT_DENSE, 0, 4, 0}};
    setup S = {.n_layer = 1, .n_head = 9, .n_kv = 3, .hd = 64, .units = units, .N = 300,
               .p = f32_params()};
    S.p.rope_dim = 64;
    S.p.rope_base = 100000.0f;
    const int chunks[] = {257};
    double e = drive(&S, 300, chunks, 1);
    CHECK_MSG(e < 1e-4, "rel err %.3g", e);
}

/* NEOX pairing (qwen2): halves rotated together, on odd shapes (head dim 20 with a partial
 * rotation of 14 dims: halves of 7; GQA 5), absolute and streaming, every ISA; and a control:
 * the same data through a normal-pairing cache is far from the NEOX reference. */
TEST(neox_pairing) {
    const moa_cache_unit units[] = {{MOA_UNIT_WINDOW, 23, 3, 0}, {MOA_UNIT_DENSE, 0, 2, 0}};
    const int chunks[] = {9, 40, 1, 17};
    for (int mode = 0; mode < 2; mode++) {
        setup S = {.n_layer = 1, .n_head = 10, .n_kv = 2, .hd = 20, .units = units, .N = 70,
                   .p = f32_params()};
        S.p.pos_mode = mode ? MOA_POS_STREAMING : MOA_POS_ABSOLUTE;
        S.p.rope_dim = 14;
        S.p.rope_base = 300.0f;   /* fast rotation: a pairing error shows */
        S.p.rope_pairing = MOA_ROPE_NEOX;
        for (int i = 0; i < 3; i++) {
            if (isas[i] > moa_attn_isa_best()) continue;
            moa_attn_isa_set(isas[i]);
            double e = drive(&S, mode ? 150 : 70, chunks, 4);
            CHECK_MSG(e < 1e-4, "%s %s: rel err %.3g", mode ? "streaming" : "absolute",
                      moa_attn_isa_name(isas[i]), e);
        }
        moa_attn_isa_set(moa_attn_isa_best());
    }
    /* control: the reference uses NEOX; the cache uses normal pairs (setup shared) */
    setup S = {.n_layer = 1, .n_head = 10, .n_kv = 2, .hd = 20, .units = units, .N = 70,
               .p = f32_params()};
    S.p.rope_dim = 14;
    S.p.rope_base = 300.0f;
    S.p.rope_pairing = MOA_ROPE_NEOX;
    pairing_override = MOA_ROPE_NORMAL;
    double e = drive(&S, 70, chunks, 4);
    pairing_override = -1;
    CHECK_MSG(e > 1e-2, "a normal-pairing cache matched the NEOX reference (rel err %.3g)", e);
    /* bad pairing values are refused */
    moa_cache *c = NULL;
    moa_cache_layout L = {.n_layer = 1, .n_head = 10, .n_head_kv = 2, .head_dim = 20, .units = units};
    S.p.rope_pairing = (moa_rope_pairing)1;
    CHECK_EQ_INT(moa_cache_create_layout(&L, 70, 1, &S.p, &c), MOA_ERR_INVALID_ARG);
    CHECK(c == NULL && strstr(moa_last_error(), "rope_pairing") != NULL);
}

/* rope_dim 0: the caller has rotated q and k; nothing is rotated. */
TEST(absolute_caller_rotated) {
    const moa_cache_unit units[] = {{MOA_UNIT_WINDOW, 9, 2, 0}, {MOA_UNIT_DENSE, 0, 0, 0}};
    setup S = {.n_layer = 1, .n_head = 2, .n_kv = 2, .hd = 16, .units = units, .N = 80,
               .p = f32_params()};
    const int chunks[] = {7, 7, 7};
    double e = drive(&S, 80, chunks, 3);
    CHECK_MSG(e < 1e-4, "rel err %.3g", e);
}

/* Dense units hold n_ctx tokens: the next token is MOA_ERR_RANGE, nothing changes. */
TEST(dense_full_is_range_error) {
    const moa_cache_unit units[] = {{MOA_UNIT_WINDOW, 8, 2, 0}, {MOA_UNIT_DENSE, 0, 2, 0}};
    setup S = {.n_layer = 1, .n_head = 2, .n_kv = 2, .hd = 16, .units = units, .N = 32,
               .p = f32_params()};
    moa_cache *c = make_cache(&S, 1);
    float *q = rand_buf(40 * 32, 1), *k = rand_buf(40 * 32, 1), *v = rand_buf(40 * 32, 1);
    float o[40 * 32];
    CHECK_OK(moa_attn_prefill(c, 0, 0, q, k, v, 30, o));
    CHECK_EQ_INT(moa_attn_prefill(c, 0, 0, q, k, v, 3, o), MOA_ERR_RANGE);
    CHECK(strstr(moa_last_error(), "dense") != NULL);
    CHECK_EQ_INT(moa_cache_pos(c, 0, 0), 30);
    CHECK_OK(moa_attn_decode(c, 0, NULL, 1, q, k, v, o));
    CHECK_OK(moa_attn_decode(c, 0, NULL, 1, q, k, v, o));
    CHECK_EQ_INT(moa_attn_decode(c, 0, NULL, 1, q, k, v, o), MOA_ERR_RANGE);
    CHECK_EQ_INT(moa_cache_pos(c, 0, 0), 32);
    free(q); free(k); free(v);
    moa_cache_free(c);
}

/* Streaming: raw keys cached, rotated by cache position; dense units roll past N too. */
TEST(streaming_matches_cache_positions) {
    const moa_cache_unit units[] = {{MOA_UNIT_DENSE, 0, 4, 0}, {MOA_UNIT_WINDOW, 10, 4, 0},
                                    {MOA_UNIT_WINDOW, 0, 2, 0}, {MOA_UNIT_WINDOW, 23, 0, 0}};
    setup S = {.n_layer = 2, .n_head = 4, .n_kv = 2, .hd = 24, .units = units, .N = 48,
               .p = f32_params()};
    S.p.pos_mode = MOA_POS_STREAMING;
    S.p.rope_dim = 24;
    S.p.rope_base = 500.0f;   /* fast rotation: position errors would show */
    const int chunks_a[] = {30, 7};
    const int chunks_b[] = {30, 100};   /* one chunk crossing N and C */
    const int chunks_c[] = {60, 70, 17};  /* chunks starting past N and C */
    for (int i = 0; i < 3; i++) {
        if (isas[i] > moa_attn_isa_best()) continue;
        moa_attn_isa_set(isas[i]);
        double e1 = drive(&S, 200, chunks_a, 2);
        double e2 = drive(&S, 200, chunks_b, 2);
        double e3 = drive(&S, 160, chunks_c, 3);
        CHECK_MSG(e1 < 1e-4 && e2 < 1e-4 && e3 < 1e-4, "%s: %.3g %.3g %.3g", moa_attn_isa_name(isas[i]),
                  e1, e2, e3);
    }
    moa_attn_isa_set(moa_attn_isa_best());
}

/* Q-head granularity: each query head has its own window inside the group's buffer. */
TEST(q_head_windows) {
    const moa_cache_unit units[] = {{MOA_UNIT_WINDOW, 30, 3, 0}, {MOA_UNIT_DENSE, 0, 3, 0}};
    const int64_t qw[] = {30, 5, 0, 11, 1000, 2};
    setup S = {.n_layer = 1, .n_head = 6, .n_kv = 2, .hd = 32, .units = units, .q_window = qw,
               .N = 90, .p = f32_params()};
    S.p.rope_dim = 32;
    const int chunks[] = {41};
    double e = drive(&S, 90, chunks, 1);
    CHECK_MSG(e < 1e-4, "rel err %.3g", e);
}

/* All windows zero: sinks only (and a unit with no sink at all: zero output). */
TEST(sinks_only) {
    const moa_cache_unit units[] = {{MOA_UNIT_WINDOW, 0, 8, 0}, {MOA_UNIT_WINDOW, 0, 0, 0}};
    setup S = {.n_layer = 1, .n_head = 4, .n_kv = 2, .hd = 16, .units = units, .N = 50,
               .p = f32_params()};
    S.p.rope_dim = 16;
    const int chunks[] = {20};
    double e = drive(&S, 120, chunks, 1);
    CHECK_MSG(e < 1e-4, "rel err %.3g", e);
}

/* Batched decode over sequences of different lengths, then a subset in another order. */
TEST(batched_decode_sequences) {
    const moa_cache_unit units[] = {{MOA_UNIT_WINDOW, 12, 3, 0}, {MOA_UNIT_LINEAR, 0, 0, 0.2f},
                                    {MOA_UNIT_DENSE, 0, 2, 0}};
    setup S = {.n_layer = 1, .n_head = 6, .n_kv = 3, .hd = 16, .units = units, .N = 120,
               .p = f32_params()};
    S.p.rope_dim = 16;
    const int ns = 3, T = 110, plen[3] = {5, 40, 77};
    const size_t ldq = 6 * 16, ldk = 3 * 16;
    moa_cache *c = make_cache(&S, ns);
    float *q[3], *k[3], *v[3], *o[3];
    int t[3];
    for (int s = 0; s < ns; s++) {
        q[s] = rand_buf(T * ldq, 1); k[s] = rand_buf(T * ldk, 1); v[s] = rand_buf(T * ldk, 1);
        o[s] = calloc(T * ldq, sizeof(float));
        CHECK_OK(moa_attn_prefill(c, s, 0, q[s], k[s], v[s], plen[s], o[s]));
        t[s] = plen[s];
    }
    float *bq = malloc(ns * ldq * 4), *bk = malloc(ns * ldk * 4), *bv = malloc(ns * ldk * 4);
    float *bo = malloc(ns * ldq * 4);
    for (int step = 0; step < 33; step++) {
        /* every 3rd step only sequences {2, 0} */
        int ids[3] = {0, 1, 2}, n = 3;
        if (step % 3 == 2) { ids[0] = 2; ids[1] = 0; n = 2; }
        for (int r = 0; r < n; r++) {
            int s = ids[r];
            memcpy(bq + r * ldq, q[s] + t[s] * ldq, ldq * 4);
            memcpy(bk + r * ldk, k[s] + t[s] * ldk, ldk * 4);
            memcpy(bv + r * ldk, v[s] + t[s] * ldk, ldk * 4);
        }
        CHECK_OK(moa_attn_decode(c, 0, step % 3 == 2 ? ids : NULL, n, bq, bk, bv, bo));
        for (int r = 0; r < n; r++) {
            int s = ids[r];
            memcpy(o[s] + t[s] * ldq, bo + r * ldq, ldq * 4);
            t[s]++;
        }
    }
    float *want = malloc(T * ldq * 4);
    for (int s = 0; s < ns; s++) {
        CHECK_EQ_INT(moa_cache_pos(c, s, 0), t[s]);
        naive_layer(&S, 0, t[s], q[s], k[s], v[s], want);
        double e = rows_err(o[s], want, t[s], ldq);
        CHECK_MSG(e < 1e-4, "seq %d: rel err %.3g", s, e);
    }
    /* duplicates are refused */
    int dup[2] = {1, 1};
    CHECK_EQ_INT(moa_attn_decode(c, 0, dup, 2, bq, bk, bv, bo), MOA_ERR_INVALID_ARG);
    /* reset one sequence: it starts over and matches a fresh run */
    CHECK_OK(moa_cache_reset(c, 1));
    CHECK_EQ_INT(moa_cache_pos(c, 1, 0), 0);
    CHECK_OK(moa_attn_prefill(c, 1, 0, q[1], k[1], v[1], 50, o[1]));
    naive_layer(&S, 0, 50, q[1], k[1], v[1], want);
    CHECK_MSG(rows_err(o[1], want, 50, ldq) < 1e-4, "after reset");
    for (int s = 0; s < ns; s++) { free(q[s]); free(k[s]); free(v[s]); free(o[s]); }
    free(bq); free(bk); free(bv); free(bo); free(want);
    moa_cache_free(c);
}

/* moa_cache_seq_copy: sequence 0 prefilled past its window ring (f16 rows, a linear unit, a
 * dense unit), copied into sequence 2 (whose earlier contents are dropped); then every
 * sequence decodes the same continuation. The copy's outputs are bit for bit those of the
 * source, and both match the naive reference of the whole sequence; sequence 1, never
 * copied, keeps its own. Bad indices are refused. */
TEST(sequence_copy) {
    const moa_cache_unit units[] = {{MOA_UNIT_WINDOW, 12, 3, 0}, {MOA_UNIT_LINEAR, 0, 0, 0.2f},
                                    {MOA_UNIT_DENSE, 0, 2, 0}};
    setup S = {.n_layer = 1, .n_head = 6, .n_kv = 3, .hd = 16, .units = units, .N = 120,
               .p = f32_params()};
    S.p.rope_dim = 16;
    S.p.type_k = S.p.type_v = MOA_KV_F16;
    const int T = 70, P = 50;
    const size_t ldq = 6 * 16, ldk = 3 * 16;
    moa_cache *c = make_cache(&S, 3);
    if (!c) return;
    float *q = rand_buf(T * ldq, 1), *k = rand_buf(T * ldk, 1), *v = rand_buf(T * ldk, 1);
    float *junk = rand_buf(T * ldk, 3), *o = calloc(T * ldq, 4), *o1 = calloc(T * ldq, 4);
    CHECK_OK(moa_attn_prefill(c, 0, 0, q, k, v, P, o));
    CHECK_OK(moa_attn_prefill(c, 1, 0, q, junk, junk, 20, o1));   /* other contents */
    CHECK_OK(moa_attn_prefill(c, 2, 0, q, junk, v, 33, o1));      /* dropped by the copy */
    CHECK_OK(moa_cache_seq_copy(c, 0, 2));
    CHECK_EQ_INT(moa_cache_pos(c, 2, 0), P);
    CHECK_EQ_INT(moa_cache_pos(c, 1, 0), 20);
    float *bq = malloc(3 * ldq * 4), *bk = malloc(3 * ldk * 4), *bv = malloc(3 * ldk * 4), *bo = malloc(3 * ldq * 4);
    int same = 1;
    for (int t = P; t < T; t++) {
        for (int r = 0; r < 3; r++) {
            memcpy(bq + r * ldq, q + t * ldq, ldq * 4);
            memcpy(bk + r * ldk, k + t * ldk, ldk * 4);
            memcpy(bv + r * ldk, v + t * ldk, ldk * 4);
        }
        CHECK_OK(moa_attn_decode(c, 0, NULL, 3, bq, bk, bv, bo));
        if (memcmp(bo, bo + 2 * ldq, ldq * 4)) same = 0;
        if (!memcmp(bo, bo + ldq, ldq * 4)) same = 0;   /* sequence 1 differs */
        memcpy(o + t * ldq, bo, ldq * 4);
    }
    CHECK_MSG(same, "the copy's outputs differ from the source's (or sequence 1 equals them)");
    /* against the reference on the stored (f16-rounded) keys and values */
    float *kr = malloc(T * ldk * 4), *vr = malloc(T * ldk * 4), *want = malloc(T * ldq * 4);
    memcpy(kr, k, T * ldk * 4);
    memcpy(vr, v, T * ldk * 4);
    for (int r = 0; r < T * 3; r++) { round_row(MOA_KV_F16, kr + r * 16, 16); round_row(MOA_KV_F16, vr + r * 16, 16); }
    lin_k = k, lin_v = v;
    naive_layer(&S, 0, T, q, kr, vr, want);
    lin_k = lin_v = NULL;
    double e = rows_err(o, want, T, ldq);
    CHECK_MSG(e < 1e-4, "after the copy: rel err %.3g", e);
    CHECK_EQ_INT(moa_cache_seq_copy(c, 1, 1), MOA_ERR_INVALID_ARG);
    CHECK_EQ_INT(moa_cache_seq_copy(c, 0, 3), MOA_ERR_INVALID_ARG);
    CHECK_EQ_INT(moa_cache_seq_copy(c, -1, 0), MOA_ERR_INVALID_ARG);
    CHECK_EQ_INT(moa_cache_seq_copy(NULL, 0, 1), MOA_ERR_INVALID_ARG);
    free(q); free(k); free(v); free(junk); free(o); free(o1); free(bq); free(bk); free(bv); free(bo);
    free(kr); free(vr); free(want);
    moa_cache_free(c);
}

/* Memory is real: a 25% plan keeps <= 30% of the dense KV bytes (plan path, span function). */
TEST(bytes_shrink_with_windows) {
    const int64_t N = 4096;
    moa_plan *dense = NULL, *p50 = NULL, *p25 = NULL;
    CHECK_OK(moa_plan_uniform(30, 9, 3, 64, 64, 64, 1.0, N, &dense));
    CHECK_OK(moa_plan_uniform(30, 9, 3, 64, 64, 64, 0.5, N, &p50));
    CHECK_OK(moa_plan_uniform(30, 9, 3, 64, 64, 64, 0.25, N, &p25));
    moa_cache_params P = moa_cache_default_params();
    P.rope_dim = 64;
    moa_cache *cd = NULL, *c50 = NULL, *c25 = NULL;
    CHECK_OK(moa_cache_create(dense, N, 2, &P, &cd));
    CHECK_OK(moa_cache_create(p50, N, 2, &P, &c50));
    CHECK_OK(moa_cache_create(p25, N, 2, &P, &c25));
    if (cd && c50 && c25) {
        size_t bd = moa_cache_bytes(cd), b50 = moa_cache_bytes(c50), b25 = moa_cache_bytes(c25);
        CHECK_EQ_INT(bd, (size_t)2 * 2 * 30 * 3 * N * 64 * sizeof(uint16_t));   /* K and V, f16 */
        CHECK_MSG((double)b25 <= 0.30 * bd, "25%%: %zu of %zu bytes", b25, bd);
        CHECK_MSG((double)b50 <= 0.55 * bd && b50 > b25, "50%%: %zu of %zu bytes", b50, bd);
        /* the plan-made cache runs */
        float *q = rand_buf(100 * 9 * 64, 1), *k = rand_buf(100 * 3 * 64, 1), *v = rand_buf(100 * 3 * 64, 1);
        float *o = malloc(100 * 9 * 64 * 4);
        CHECK_OK(moa_attn_prefill(c25, 1, 29, q, k, v, 100, o));
        CHECK_OK(moa_attn_decode(c25, 29, NULL, 2, q, k, v, o));
        free(q); free(k); free(v); free(o);
    }
    /* all windows zero: a layout with sinks only still has memory for the sinks */
    moa_cache_unit u0[3] = {{MOA_UNIT_WINDOW, 0, 64, 0}, {MOA_UNIT_WINDOW, 0, 64, 0}, {MOA_UNIT_WINDOW, 0, 64, 0}};
    moa_cache_layout L = {.n_layer = 1, .n_head = 9, .n_head_kv = 3, .head_dim = 64, .units = u0};
    moa_cache *cs = NULL;
    CHECK_OK(moa_cache_create_layout(&L, N, 1, NULL, &cs));
    CHECK_EQ_INT(moa_cache_bytes(cs), (size_t)2 * 3 * 64 * 64 * sizeof(uint16_t));   /* defaults: f16 */
    moa_cache_free(cs);
    moa_cache_free(cd); moa_cache_free(c50); moa_cache_free(c25);
    moa_plan_free(dense); moa_plan_free(p50); moa_plan_free(p25);
}

TEST(bad_arguments) {
    moa_cache_unit u[2] = {{MOA_UNIT_WINDOW, 4, 1, 0}, {MOA_UNIT_WINDOW, -1, 0, 0}};
    moa_cache_layout L = {.n_layer = 1, .n_head = 2, .n_head_kv = 2, .head_dim = 8, .units = u};
    moa_cache *c = NULL;
    CHECK_EQ_INT(moa_cache_create_layout(&L, 16, 1, NULL, &c), MOA_ERR_INVALID_ARG);
    CHECK(c == NULL);
    u[1].window = 3;
    moa_cache_params P = moa_cache_default_params();
    P.pos_mode = MOA_POS_STREAMING;      /* streaming needs rope_dim > 0 */
    CHECK_EQ_INT(moa_cache_create_layout(&L, 16, 1, &P, &c), MOA_ERR_INVALID_ARG);
    L.n_head = 3;
    CHECK_EQ_INT(moa_cache_create_layout(&L, 16, 1, NULL, &c), MOA_ERR_INVALID_ARG);
    L.n_head = 2;
    CHECK_OK(moa_cache_create_layout(&L, 16, 1, NULL, &c));
    float buf[64] = {0};
    CHECK_EQ_INT(moa_attn_prefill(c, 1, 0, buf, buf, buf, 1, buf), MOA_ERR_INVALID_ARG);
    CHECK_EQ_INT(moa_attn_prefill(c, 0, 1, buf, buf, buf, 1, buf), MOA_ERR_INVALID_ARG);
    CHECK_EQ_INT(moa_attn_prefill(c, 0, 0, NULL, buf, buf, 1, buf), MOA_ERR_INVALID_ARG);
    CHECK_EQ_INT(moa_attn_decode(c, 0, NULL, 2, buf, buf, buf, buf), MOA_ERR_INVALID_ARG);
    CHECK_EQ_INT(moa_cache_pos(c, 0, 0), 0);
    moa_cache_free(c);
    moa_cache_free(NULL);
}

/* The cache's device (params.device): the CPU is always there (and the default); a CUDA
 * request where this runtime has no CUDA backend (CPU-only build) or the machine no device
 * fails with MOA_ERR_DEVICE and a message, from a layout and from a plan, and returns nothing.
 * Where a device exists (a GPU machine) the cache is created on it instead. Unknown devices,
 * and a device context with the CPU, are invalid arguments. */
TEST(cache_devices) {
    CHECK_EQ_INT(moa_cache_device_count(MOA_CACHE_DEVICE_CPU), 1);
    CHECK_EQ_INT(moa_cache_default_params().device, MOA_CACHE_DEVICE_CPU);
    moa_cache_unit u[2] = {{MOA_UNIT_WINDOW, 4, 1, 0}, {MOA_UNIT_LINEAR, 0, 0, 0}};
    moa_cache_layout L = {.n_layer = 1, .n_head = 2, .n_head_kv = 2, .head_dim = 8, .units = u};
    moa_cache *c = NULL;
    CHECK_OK(moa_cache_create_layout(&L, 16, 1, NULL, &c));
    CHECK_EQ_INT(moa_cache_get_device(c), MOA_CACHE_DEVICE_CPU);
    moa_cache_free(c);
    c = NULL;
    moa_plan *plan = NULL;
    CHECK_OK(moa_plan_uniform(2, 4, 2, 16, 4, 8, 0.5, 64, &plan));
    moa_cache_params P = moa_cache_default_params();
    P.device = MOA_CACHE_DEVICE_CUDA;
    const int n_cuda = moa_cache_device_count(MOA_CACHE_DEVICE_CUDA);
    fprintf(stderr, "  CUDA devices seen by the runtime: %d\n", n_cuda);
    for (int from_plan = 0; from_plan < 2; from_plan++) {
        c = (moa_cache *)&P;   /* must be reset to NULL on failure */
        const moa_status st = from_plan ? moa_cache_create(plan, 64, 2, &P, &c)
                                        : moa_cache_create_layout(&L, 16, 1, &P, &c);
        if (n_cuda == 0) {
            CHECK_EQ_INT(st, MOA_ERR_DEVICE);
            CHECK(c == NULL);
            CHECK_MSG(strstr(moa_last_error(), "CUDA") != NULL, "message: %s", moa_last_error());
            fprintf(stderr, "  %s: %s\n", from_plan ? "plan" : "layout", moa_last_error());
        } else {
            CHECK_OK(st);
            CHECK_EQ_INT(moa_cache_get_device(c), MOA_CACHE_DEVICE_CUDA);
            moa_cache_free(c);
        }
    }
    P.device = (moa_cache_device)7;
    CHECK_EQ_INT(moa_cache_create_layout(&L, 16, 1, &P, &c), MOA_ERR_INVALID_ARG);
    CHECK(c == NULL);
    P.device = MOA_CACHE_DEVICE_CPU;
    P.device_ctx = (struct moa_cuda_ctx *)&P;
    CHECK_EQ_INT(moa_cache_create_layout(&L, 16, 1, &P, &c), MOA_ERR_INVALID_ARG);
    CHECK(c == NULL);
    moa_plan_free(plan);
}

/* Long contexts with one sequence: decode splits each unit's keys over threads (split-K)
 * and merges the parts by log-sum-exp. */
TEST(split_k_decode) {
    const moa_cache_unit units[] = {{MOA_UNIT_DENSE, 0, 4, 0}, {MOA_UNIT_WINDOW, 1100, 64, 0}};
    setup S = {.n_layer = 1, .n_head = 4, .n_kv = 2, .hd = 32, .units = units, .N = 1600,
               .p = f32_params()};
    S.p.rope_dim = 32;
    const int chunks[] = {1450};
    const int nthr = omp_get_max_threads();
    omp_set_num_threads(4);
    check_from = 1440;
    double e1 = drive(&S, 1520, chunks, 1);
    S.p.pos_mode = MOA_POS_STREAMING;
    S.N = 1200;
    const int chunks2[] = {1150};
    check_from = 1250;
    double e2 = drive(&S, 1300, chunks2, 1);
    check_from = 0;
    omp_set_num_threads(nthr);
    CHECK_MSG(e1 < 1e-4 && e2 < 1e-4, "absolute %.3g, streaming %.3g", e1, e2);
}

/* A q-head plan: one buffer per KV group sized by the group's largest window (span function),
 * each query head masked by its own window; a group mixing linear and softmax is refused. */
TEST(plan_q_head_granularity) {
    const int64_t N = 90;
    moa_plan *p = moa_plan_alloc(1, 6, 2, 32, MOA_GRAN_Q_HEAD);
    CHECK(p != NULL);
    if (!p) return;
    p->sink = 3;
    p->block = 8;
    const moa_unit_kind kinds[6] = {MOA_UNIT_WINDOW, MOA_UNIT_WINDOW, MOA_UNIT_WINDOW,
                                    MOA_UNIT_WINDOW, MOA_UNIT_DENSE, MOA_UNIT_WINDOW};
    const double alpha[6] = {30, 5, 1, 11, 0, 2};
    for (int h = 0; h < 6; h++) {
        p->units[h].kind = kinds[h];
        p->units[h].alpha = kinds[h] == MOA_UNIT_WINDOW ? alpha[h] : 0;
        p->units[h].beta = kinds[h] == MOA_UNIT_WINDOW ? 0.05 : 0;
    }
    /* what the cache must do, written out from the plan's own span accessor */
    int64_t qw[6];
    for (int h = 0; h < 6; h++) qw[h] = moa_plan_unit_window(p, 0, h, N);
    const int64_t w0 = qw[0] > qw[1] ? (qw[0] > qw[2] ? qw[0] : qw[2]) : (qw[1] > qw[2] ? qw[1] : qw[2]);
    const moa_cache_unit units[2] = {{MOA_UNIT_WINDOW, w0, 3, 0}, {MOA_UNIT_DENSE, 0, 3, 0}};
    setup S = {.n_layer = 1, .n_head = 6, .n_kv = 2, .hd = 32, .units = units, .q_window = qw,
               .N = N, .p = f32_params()};
    S.p.rope_dim = 32;
    drive_plan = p;
    const int chunks[] = {50};
    double e = drive(&S, (int)N, chunks, 1);   /* prefill 50, decode to N (group 1 is dense) */
    drive_plan = NULL;
    CHECK_MSG(e < 1e-4, "rel err %.3g", e);
    /* bytes: group 0 keeps sink + its largest window, group 1 all N */
    moa_cache *c = NULL;
    CHECK_OK(moa_cache_create(p, N, 1, &S.p, &c));
    CHECK_EQ_INT(moa_cache_bytes(c), (size_t)2 * 32 * sizeof(float) * (size_t)(3 + w0 + N));
    moa_cache_free(c);
    /* mixing a linear head into a softmax group is refused */
    p->units[1].kind = MOA_UNIT_LINEAR;
    p->units[1].alpha = p->units[1].beta = 0;
    CHECK_EQ_INT(moa_cache_create(p, N, 1, &S.p, &c), MOA_ERR_UNSUPPORTED);
    moa_plan_free(p);
}

/* ---- storage types ------------------------------------------------------------------------ */

static const moa_kv_type kv_types[] = {MOA_KV_F32, MOA_KV_F16, MOA_KV_BF16, MOA_KV_Q8_0};

/* Rows stored by the runtime's converter and widened by every ISA's loader are exactly the
 * values the formats define (written here), including ties, saturation and subnormals;
 * Q8_0 rows are GGUF Q8_0 blocks (the model reader's dequantiser reads them). */
TEST(kv_rows_exact) {
    typedef void (*load_fn)(moa_attn_kv_type, float *, const void *, int);
    load_fn loads[3] = {moa_attn_kv_load_row_ref, moa_attn_kv_load_row_avx2, moa_attn_kv_load_row_avx512};
    const float specials[] = {1.0f + 0x1p-11f, 1.0f + 0x3p-11f, -(1.0f + 0x1p-11f), 65519.0f, 65520.0f,
                              1e6f, -1e6f, 0x1p-24f, 0x1p-25f, 0x3p-25f, 1e-8f, 0.1f, -0.0f, 3.0e38f,
                              1.0f + 0x1p-8f, 1.0f + 0x3p-8f, 0x1p-130f, 0.0f};
    const int nsp = (int)(sizeof specials / sizeof *specials);
    const int hds[] = {1, 7, 20, 32, 40, 64, 77, 256};
    for (int ti = 0; ti < 4; ti++)
        for (int hi = 0; hi < 8; hi++) {
            const moa_kv_type t = kv_types[ti];
            const int hd = hds[hi];
            const size_t rb = moa_attn_kv_row_bytes((moa_attn_kv_type)t, hd);
            const size_t want_rb = t == MOA_KV_F32 ? 4u * hd : t == MOA_KV_Q8_0 ? 34u * ((hd + 31) / 32) : 2u * hd;
            CHECK_EQ_INT(rb, want_rb);
            float x[256], want[256], got[258];   /* got: 2 guard values past the largest hd */
            unsigned char row[1024];
            for (int rep = 0; rep < 4; rep++) {
                for (int d = 0; d < hd; d++)
                    x[d] = rep == 0 && t != MOA_KV_Q8_0 ? specials[d % nsp] : frand() * (rep == 3 ? 1e-3f : 3.0f);
                if (rep == 2 && hd > 3) x[hd / 2] = 40.0f;   /* one large value in a q8_0 block */
                memcpy(want, x, sizeof(float) * hd);
                round_row(t, want, hd);
                moa_attn_kv_store_row((moa_attn_kv_type)t, row, x, hd);
                for (int i = 0; i < 3; i++) {
                    if (isas[i] > moa_attn_isa_best()) continue;
                    memset(got, 0x7f, sizeof got);
                    loads[i]((moa_attn_kv_type)t, got, row, hd);
                    int bad = 0;
                    while (bad < hd && got[bad] == want[bad]) bad++;   /* as numbers: q8_0 has no -0 */
                    CHECK_MSG(bad == hd, "%s hd %d rep %d %s: value %d is %a, the format's %a (from %a)",
                              moa_kv_type_name(t), hd, rep, moa_attn_isa_name(isas[i]), bad,
                              bad < hd ? got[bad] : 0.0f, bad < hd ? want[bad] : 0.0f, bad < hd ? x[bad] : 0.0f);
                    CHECK_MSG(got[hd] != 0 && got[hd] == got[hd + 1], "%s hd %d %s: wrote past hd",
                              moa_kv_type_name(t), hd, moa_attn_isa_name(isas[i]));
                }
                if (t == MOA_KV_Q8_0 && hd % 32 == 0) {
                    moa_dequant_row(MOA_GGML_Q8_0, row, got, hd);
                    int bad = 0;   /* values (q8_0 has no -0: compare as numbers) */
                    while (bad < hd && got[bad] == want[bad]) bad++;
                    CHECK_MSG(bad == hd, "q8_0 hd %d: not GGUF Q8_0 blocks (value %d)", hd, bad);
                }
            }
        }
    /* a few values by hand: ties to even, saturation, the smallest subnormal */
    const float in[6] = {1.0f + 0x1p-11f, 1.0f + 0x3p-11f, 70000.0f, 0x1p-25f, 0x3p-25f, 0x1p-24f};
    const float f16[6] = {1.0f, 1.0f + 0x1p-9f, 65504.0f, 0.0f, 0x1p-23f, 0x1p-24f};
    unsigned char row[12];
    float out[6];
    moa_attn_kv_store_row(MOA_ATTN_KV_F16, row, in, 6);
    moa_attn_kv_load_row_ref(MOA_ATTN_KV_F16, out, row, 6);
    for (int i = 0; i < 6; i++) CHECK_MSG(out[i] == f16[i], "f16(%a) = %a, want %a", in[i], out[i], f16[i]);
    moa_kv_type t;
    CHECK_OK(moa_kv_type_parse("q8_0", &t));
    CHECK_EQ_INT(t, MOA_KV_Q8_0);
    CHECK_EQ_INT(moa_kv_type_parse("f8", &t), MOA_ERR_INVALID_ARG);
    CHECK_STR(moa_kv_type_name(MOA_KV_BF16), "bf16");
}

/* Bytes per token are the formats' row sizes, K and V independently, plus the f32 state of
 * linear units; defaults are f16; unknown types are refused. */
TEST(kv_bytes_per_type) {
    const moa_cache_unit units[] = {{MOA_UNIT_WINDOW, 37, 5, 0}, {MOA_UNIT_DENSE, 0, 5, 0},
                                    {MOA_UNIT_LINEAR, 0, 0, 0}};
    const int hd = 40, N = 100, ns = 2;
    const size_t slots = (5 + 37) + N;
    const size_t row[4] = {160, 80, 80, 68};   /* f32, f16, bf16, q8_0 (2 blocks of 34) */
    moa_cache_layout L = {.n_layer = 1, .n_head = 6, .n_head_kv = 3, .head_dim = hd, .units = units};
    for (int a = 0; a < 4; a++)
        for (int b = 0; b < 4; b++) {
            moa_cache_params P = moa_cache_default_params();
            P.type_k = kv_types[a];
            P.type_v = kv_types[b];
            moa_cache *c = NULL;
            CHECK_OK(moa_cache_create_layout(&L, N, ns, &P, &c));
            CHECK_EQ_INT(moa_cache_bytes(c), ns * (slots * (row[a] + row[b]) + 4u * hd * hd));
            moa_cache_free(c);
        }
    /* the SmolLM2 shape: f16 is half of f32, q8_0 17/64 */
    moa_plan *dense = NULL;
    CHECK_OK(moa_plan_uniform(30, 9, 3, 64, 64, 64, 1.0, 4096, &dense));
    size_t by[4];
    for (int a = 0; a < 4; a++) {
        moa_cache_params P = moa_cache_default_params();
        P.type_k = P.type_v = kv_types[a];
        moa_cache *c = NULL;
        CHECK_OK(moa_cache_create(dense, 4096, 1, &P, &c));
        by[a] = moa_cache_bytes(c);
        moa_cache_free(c);
    }
    CHECK_EQ_INT(by[0], (size_t)2 * 30 * 3 * 4096 * 64 * 4);
    CHECK_EQ_INT(by[1] * 2, by[0]);
    CHECK_EQ_INT(by[2] * 2, by[0]);
    CHECK_EQ_INT(by[3] * 64, by[0] * 17);
    moa_plan_free(dense);
    moa_cache_params P = moa_cache_default_params();
    CHECK_EQ_INT(P.type_k, MOA_KV_F16);
    CHECK_EQ_INT(P.type_v, MOA_KV_F16);
    P.type_v = (moa_kv_type)4;
    moa_cache *c = NULL;
    CHECK_EQ_INT(moa_cache_create_layout(&L, N, 1, &P, &c), MOA_ERR_INVALID_ARG);
    CHECK(c == NULL && strstr(moa_last_error(), "type_v") != NULL);
}

/* Every storage type on every ISA through the public API: chunked prefill then decode past
 * N (windows, sinks, a linear unit, GQA 3, head dims 40 and 20 with partial q8_0 blocks and
 * vector tails), streaming mode (raw keys stored, rotated at attention time), keys rotated by
 * the runtime (rounded after RoPE: bound only), q-head windows, split-K decode. */
TEST(kv_types_every_isa) {
    const moa_cache_unit ua[] = {{MOA_UNIT_WINDOW, 37, 5, 0}, {MOA_UNIT_LINEAR, 0, 0, 0.1f},
                                 {MOA_UNIT_WINDOW, 0, 3, 0},  {MOA_UNIT_WINDOW, 20, 30, 0}};
    const moa_cache_unit ub[] = {{MOA_UNIT_DENSE, 0, 4, 0}, {MOA_UNIT_WINDOW, 10, 4, 0}};
    const moa_cache_unit uq[] = {{MOA_UNIT_WINDOW, 30, 3, 0}, {MOA_UNIT_DENSE, 0, 3, 0}};
    const moa_cache_unit uk[] = {{MOA_UNIT_DENSE, 0, 4, 0}, {MOA_UNIT_WINDOW, 1100, 64, 0}};
    const int64_t qw[] = {30, 5, 0, 11, 1000, 2};
    const int ch_a[] = {13, 50, 1, 31}, ch_b[] = {30, 100}, ch_q[] = {41}, ch_k[] = {1450};
    const moa_kv_type pairs[][2] = {{MOA_KV_F16, MOA_KV_F16}, {MOA_KV_BF16, MOA_KV_BF16},
                                    {MOA_KV_Q8_0, MOA_KV_Q8_0}, {MOA_KV_Q8_0, MOA_KV_F16}};
    const int nthr = omp_get_max_threads();
    for (int pi = 0; pi < 4; pi++)
        for (int i = 0; i < 3; i++) {
            if (isas[i] > moa_attn_isa_best()) continue;
            moa_attn_isa_set(isas[i]);
            double worst_exact = 0;
            kv_ratio = kv_maxerr = 0;
            for (int cfg = 0; cfg < 5; cfg++) {
                setup S = {.p = f32_params()};
                S.p.type_k = pairs[pi][0];
                S.p.type_v = pairs[pi][1];
                const int *ch = ch_a;
                int nch = 4, T = 0;
                kv_exact = 1;
                if (cfg == 0 || cfg == 2) {      /* windows + linear; caller-rotated or runtime RoPE */
                    S = (setup){.n_layer = 2, .n_head = 6, .n_kv = 2, .hd = 40, .units = ua, .N = 100, .p = S.p};
                    T = 230;
                    if (cfg == 2) { S.p.rope_dim = 32; kv_exact = 0; }
                } else if (cfg == 1) {           /* streaming, head dim 20 */
                    S = (setup){.n_layer = 1, .n_head = 6, .n_kv = 2, .hd = 20, .units = ub, .N = 48, .p = S.p};
                    S.p.pos_mode = MOA_POS_STREAMING;
                    S.p.rope_dim = 20;
                    S.p.rope_base = 500.0f;
                    ch = ch_b; nch = 2; T = 200;
                } else if (cfg == 3) {           /* q-head windows */
                    S = (setup){.n_layer = 1, .n_head = 6, .n_kv = 2, .hd = 32, .units = uq, .q_window = qw,
                                .N = 90, .p = S.p};
                    ch = ch_q; nch = 1; T = 90;
                } else {                         /* split-K decode, 4 threads */
                    S = (setup){.n_layer = 1, .n_head = 4, .n_kv = 2, .hd = 32, .units = uk, .N = 1600, .p = S.p};
                    ch = ch_k; nch = 1; T = 1520;
                    omp_set_num_threads(4);
                    check_from = 1440;
                }
                double e = drive(&S, T, ch, nch);
                check_from = 0;
                omp_set_num_threads(nthr);
                CHECK_MSG(e < 1e-4, "K %s V %s %s config %d: rel err %.3g vs the reference on stored values",
                          moa_kv_type_name(pairs[pi][0]), moa_kv_type_name(pairs[pi][1]),
                          moa_attn_isa_name(isas[i]), cfg, e);
                if (e > worst_exact) worst_exact = e;
            }
            CHECK_MSG(kv_ratio <= 1.0, "K %s V %s %s: error %.3g of the format bound",
                      moa_kv_type_name(pairs[pi][0]), moa_kv_type_name(pairs[pi][1]),
                      moa_attn_isa_name(isas[i]), kv_ratio);
            fprintf(stderr, "     K %-4s V %-4s %-6s: max |o - o_f32| %.3g (%.2f of bound), vs stored values %.3g\n",
                    moa_kv_type_name(pairs[pi][0]), moa_kv_type_name(pairs[pi][1]), moa_attn_isa_name(isas[i]),
                    kv_maxerr, kv_ratio, worst_exact);
        }
    kv_exact = 0;
    moa_attn_isa_set(moa_attn_isa_best());
}

int main(void) {
    RUN(absolute_windows_linear_past_n);
    RUN(absolute_long_chunk_gqa);
    RUN(absolute_caller_rotated);
    RUN(neox_pairing);
    RUN(dense_full_is_range_error);
    RUN(streaming_matches_cache_positions);
    RUN(q_head_windows);
    RUN(sinks_only);
    RUN(batched_decode_sequences);
    RUN(sequence_copy);
    RUN(split_k_decode);
    RUN(plan_q_head_granularity);
    RUN(bytes_shrink_with_windows);
    RUN(bad_arguments);
    RUN(cache_devices);
    RUN(kv_rows_exact);
    RUN(kv_bytes_per_type);
    RUN(kv_types_every_isa);
    return test_summary();
}
