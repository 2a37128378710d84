/* quant-pack-vnni512.c - weight matrices repacked once for the int8 kernels on AVX512-VNNI
 * (moa_qpack, quant.h), and their products, decode and batches alike.
 *
 * Pack (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0): rows in groups of 16 (the last group padded with
 * zero rows), group-major; per group and 32-value block, contiguous (unaligned loads):
 *   codes  Q4_x/Q5_x: 4 x 64 bytes, vector k holding in int32 lane r the GGUF bytes
 *          qs[4k..4k+3] of row r (low nibbles: values 4k..4k+3, high: 16+4k..16+4k+3);
 *          Q8_0: 8 x 64 bytes, vector j holding values 4j..4j+3 of row r in lane r;
 *   qh     Q5_x: 64 bytes, lane r = the 32 high bits of row r;
 *   d, m   16 f16 each (m for Q4_1/Q5_1).
 * Exactly the bytes of the GGUF blocks (plus the last group's padding rows). A 16-row block then needs 4 loads and 12 logic ops to become the 8 code vectors
 * (vector j: values 4j..4j+3 of the 16 rows; the Q5 high bits by one vpshufbitqmb and one
 * masked move per vector), against a load, unpack and scale per row-block in quant-q8.inc.
 *
 * Products: activations as quant-gemm-vnni512.c (per token: outliers taken out and
 * multiplied in f32 afterwards, the rest quantised per 32 values); per 16-row group, block and
 * token, 8 vpdpbusd with the token's 4 activation bytes broadcast, started at -off sum xq,
 * then one conversion and FMA with d dx (and m dx sum xq). Error: the activation rounding,
 * sum_i W[o][i] (x_i - dx xq_i), plus f32 rounding. */
#include "quant-impl.h"
#include "quant-q8-avx512.h"
#include "moa/common.h"

#include <immintrin.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define GR 16        /* rows per group */
#define TT 16        /* tokens per micro-tile */
#define MAX_OUTLIERS MOA_Q8_MAX_OUTLIERS

struct moa_qpack {
    moa_ggml_type type;
    const void *W;       /* the GGUF rows (f32-activation paths) */
    int64_t n_out, n_in, nb, n_grp;
    size_t blk;          /* bytes per (group, block) */
    int off, min, q5;    /* code offset; min term; Q5 high bits */
    int kq;              /* K-quant: blk covers a 256-value super-block (8 blocks of 32) */
    size_t o_qh, o_d, o_m, o_sc, o_mn;
    uint8_t *data;       /* [n_grp][nb][blk] */
};

/* K-quant super-block of a group (256 values x 16 rows):
 *   Q4_K/Q5_K: codes 32 x 64 bytes (vector 8c + k, lane r = qs_r[32c + 4k..+3]: low nibbles
 *              sub-block 2c, high 2c+1, values 4k..4k+3), Q5_K qh 8 x 64 (vector k, lane r =
 *              qh_r[4k..4k+3]; bit j: sub-block j), then sc[8][16] and mn[8][16] bytes (the
 *              6-bit scales and mins unpacked), d[16] and dmin[16] f16;
 *   Q6_K:      ql 32 x 64 bytes (vector 16h + 8 (g & 1) + k, lane r = ql_r[64h + 32 (g & 1) +
 *              4k..]; low nibbles g < 2, high g >= 2), qh 16 x 64 (vector 8h + k, lane r =
 *              qh_r[32h + 4k..]; bits 2g, 2g + 1), S[16][16] bytes, d[16] f16.
 * Q6_K is the GGUF size exactly; Q4_K/Q5_K 2-3% more (scales unpacked to bytes). */
static int pack_layout_k(moa_ggml_type t, moa_qpack *p) {
    p->kq = 1;
    p->q5 = t == MOA_GGML_Q5_K;
    if (t == MOA_GGML_Q6_K) {
        p->off = 32;
        p->min = 0;
        p->o_qh = 2048;
        p->o_sc = 2048 + 1024;
        p->o_d = p->o_sc + 256;
        p->blk = p->o_d + 32;
        return 1;
    }
    if (t != MOA_GGML_Q4_K && t != MOA_GGML_Q5_K) return 0;
    p->off = 0;
    p->min = 1;
    size_t o = 2048;
    p->o_qh = o;
    if (p->q5) o += 512;
    p->o_sc = o; o += 128;
    p->o_mn = o; o += 128;
    p->o_d = o; o += 32;
    p->o_m = o; o += 32;   /* dmin */
    p->blk = o;
    return 1;
}

static int pack_layout(moa_ggml_type t, moa_qpack *p) {
    p->kq = 0;
    if (t == MOA_GGML_Q4_K || t == MOA_GGML_Q5_K || t == MOA_GGML_Q6_K) return pack_layout_k(t, p);
    p->q5 = t == MOA_GGML_Q5_0 || t == MOA_GGML_Q5_1;
    p->min = t == MOA_GGML_Q4_1 || t == MOA_GGML_Q5_1;
    switch (t) {
    case MOA_GGML_Q4_0: p->off = 8; break;
    case MOA_GGML_Q5_0: p->off = 16; break;
    case MOA_GGML_Q8_0: p->off = 128; break;
    case MOA_GGML_Q4_1: case MOA_GGML_Q5_1: p->off = 0; break;
    default: return 0;
    }
    size_t o = t == MOA_GGML_Q8_0 ? 512 : 256;
    p->o_qh = o;
    if (p->q5) o += 64;
    p->o_d = o;
    o += 32;
    p->o_m = o;
    if (p->min) o += 32;
    p->blk = o;   /* unpadded: exactly the GGUF bytes (decode streams them from memory) */
    return 1;
}

static void k_sm_pack(const uint8_t *s, int j, int *sc, int *mn) {
    if (j < 4) { *sc = s[j] & 63; *mn = s[j + 4] & 63; }
    else {
        *sc = (s[j + 4] & 15) | ((s[j - 4] >> 6) << 4);
        *mn = (s[j + 4] >> 4) | ((s[j] >> 6) << 4);
    }
}

int moa_qpack_supported_vnni512(moa_ggml_type t) {
    moa_qpack p;
    return pack_layout(t, &p);
}

moa_qpack *moa_qpack_create_vnni512(moa_ggml_type t, const void *W, int64_t n_out, int64_t n_in) {
    uint32_t be, bb;
    if (n_out < 1 || !moa_ggml_type_info(t, &be, &bb) || n_in < (int64_t)be || n_in % be) return NULL;
    moa_qpack *p = calloc(1, sizeof *p);
    if (!p) return NULL;
    if (!pack_layout(t, p)) { free(p); return NULL; }
    p->type = t;
    p->W = W;
    p->n_out = n_out;
    p->n_in = n_in;
    p->nb = n_in / 32;
    p->n_grp = (n_out + GR - 1) / GR;
    const int64_t nblk = p->kq ? n_in / 256 : p->nb;   /* stored blocks per group */
    p->data = moa_alloc_aligned((size_t)p->n_grp * (size_t)nblk * p->blk, 1);
    if (!p->data) { free(p); return NULL; }
    const size_t rb = moa_ggml_row_bytes(t, n_in);
    if (p->kq) {
        #pragma omp parallel for schedule(static) if (p->n_grp * nblk > 1024)
        for (int64_t g = 0; g < p->n_grp; g++)
            for (int64_t b = 0; b < nblk; b++) {
                uint8_t *o = p->data + ((size_t)g * (size_t)nblk + (size_t)b) * p->blk;
                memset(o, 0, p->blk);
                for (int r = 0; r < GR; r++) {
                    const int64_t row = g * GR + r;
                    if (row >= n_out) continue;
                    const uint8_t *src = (const uint8_t *)W + (size_t)row * rb + (size_t)b * bb;
                    if (t == MOA_GGML_Q6_K) {
                        for (int v = 0; v < 32; v++) memcpy(o + 64 * v + 4 * r, src + 4 * v, 4);          /* ql */
                        for (int v = 0; v < 16; v++) memcpy(o + 2048 + 64 * v + 4 * r, src + 128 + 4 * v, 4);   /* qh */
                        for (int sb = 0; sb < 16; sb++) o[p->o_sc + 16 * sb + r] = src[192 + sb];
                        memcpy(o + p->o_d + 2 * r, src + 208, 2);
                    } else {
                        const uint8_t *qs = src + (p->q5 ? 48 : 16);
                        for (int v = 0; v < 32; v++) memcpy(o + 64 * v + 4 * r, qs + 4 * v, 4);
                        if (p->q5) for (int v = 0; v < 8; v++) memcpy(o + 2048 + 64 * v + 4 * r, src + 16 + 4 * v, 4);
                        for (int j = 0; j < 8; j++) {
                            int sc, mn;
                            k_sm_pack(src + 4, j, &sc, &mn);
                            o[p->o_sc + 16 * j + r] = (uint8_t)sc;
                            o[p->o_mn + 16 * j + r] = (uint8_t)mn;
                        }
                        memcpy(o + p->o_d + 2 * r, src, 2);
                        memcpy(o + p->o_m + 2 * r, src + 2, 2);
                    }
                }
            }
        return p;
    }
    const size_t qs_off = t == MOA_GGML_Q4_0 ? 2 : t == MOA_GGML_Q4_1 ? 4 : t == MOA_GGML_Q5_0 ? 6
                        : t == MOA_GGML_Q5_1 ? 8 : 2;
    const int ncode = t == MOA_GGML_Q8_0 ? 8 : 4;   /* code vectors stored */
    #pragma omp parallel for schedule(static) if (p->n_grp * p->nb > 4096)
    for (int64_t g = 0; g < p->n_grp; g++)
        for (int64_t b = 0; b < p->nb; b++) {
            uint8_t *o = p->data + ((size_t)g * (size_t)p->nb + (size_t)b) * p->blk;
            memset(o, 0, p->blk);
            for (int r = 0; r < GR; r++) {
                const int64_t row = g * GR + r;
                if (row >= n_out) continue;   /* padding rows: zero codes and scales */
                const uint8_t *src = (const uint8_t *)W + (size_t)row * rb + (size_t)b * bb;
                for (int k = 0; k < ncode; k++) memcpy(o + 64 * k + 4 * r, src + qs_off + 4 * k, 4);
                if (p->q5) memcpy(o + p->o_qh + 4 * r, src + (t == MOA_GGML_Q5_0 ? 2 : 4), 4);
                memcpy(o + p->o_d + 2 * r, src, 2);
                if (p->min) memcpy(o + p->o_m + 2 * r, src + 2, 2);
            }
        }
    return p;
}

void moa_qpack_free_vnni512(moa_qpack *p) {
    if (!p) return;
    moa_free_aligned(p->data);
    free(p);
}

size_t moa_qpack_bytes_vnni512(const moa_qpack *p) {
    return p ? (size_t)p->n_grp * (size_t)(p->kq ? p->nb / 8 : p->nb) * p->blk : 0;
}

void moa_qpack_info_vnni512(const moa_qpack *p, moa_ggml_type *t, const void **W, int64_t *n_out, int64_t *n_in) {
    *t = p->type;
    *W = p->W;
    *n_out = p->n_out;
    *n_in = p->n_in;
}

/* The 8 code vectors of a block (vector j: values 4j..4j+3 of the 16 rows, unsigned). */
static inline __attribute__((always_inline)) void codes8(const int q8, const int q5, const uint8_t *o, __m512i *c) {
    if (q8) {
        const __m512i flip = _mm512_set1_epi8((char)0x80);
        for (int j = 0; j < 8; j++) c[j] = _mm512_xor_si512(_mm512_loadu_si512((const __m512i *)(o + 64 * j)), flip);
        return;
    }
    const __m512i m4 = _mm512_set1_epi8(15);
    for (int k = 0; k < 4; k++) {
        const __m512i z = _mm512_loadu_si512((const __m512i *)(o + 64 * k));
        c[k] = _mm512_and_si512(z, m4);
        c[4 + k] = _mm512_and_si512(_mm512_srli_epi16(z, 4), m4);
    }
    if (q5) {
        const __m512i qh = _mm512_loadu_si512((const __m512i *)(o + 256));
        const __m512i sixteen = _mm512_set1_epi8(16);
        for (int j = 0; j < 8; j++) {
            /* byte 8q + i selects bit 32 (i / 4) + 4j + i % 4 of qword q (rows 2q, 2q + 1) */
            const __m512i sel = _mm512_set1_epi64((long long)(0x2322212003020100ull + 0x0404040404040404ull * (unsigned)j));
            c[j] = _mm512_or_si512(c[j], _mm512_maskz_mov_epi8(_mm512_bitshuffle_epi64_mask(qh, sel), sixteen));
        }
    }
}

/* Activations of the batch (as quant-gemm-vnni512.c). */
typedef struct {
    const int8_t *q;
    const float *dx, *sx;
    const int32_t *s;     /* sum of xq per block */
    const int32_t *s0;    /* sum of its first 16 */
    int64_t n_in, nb;
} pact;

/* One group x nt tokens from t0, all blocks; y rows o0.. (nr valid). */
static inline __attribute__((always_inline)) void pmicro(const int q8, const int q5, const int min, const int off,
                                                        const int nt, const moa_qpack *P, const uint8_t *grp,
                                                        const pact *a, int64_t t0, float *y, int64_t n_out, int64_t o0,
                                                        int nr) {
    __m512 acc[TT];
    for (int t = 0; t < nt; t++) acc[t] = _mm512_setzero_ps();
    for (int64_t b = 0; b < a->nb; b++) {
        const uint8_t *o = grp + (size_t)b * P->blk;
        __m512i c[8];
        codes8(q8, q5, o, c);
        const __m512 d = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(o + P->o_d)));
        const __m512 m = min ? _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(o + P->o_m))) : d;
        for (int t = 0; t < nt; t++) {
            const int64_t k = (t0 + t) * a->nb + b;
            const int32_t *xb = (const int32_t *)(const void *)(a->q + (t0 + t) * a->n_in + 32 * b);
            __m512i ia = off ? _mm512_set1_epi32(-off * a->s[k]) : _mm512_setzero_si512();
            for (int j = 0; j < 8; j++) ia = _mm512_dpbusd_epi32(ia, c[j], _mm512_set1_epi32(xb[j]));
            acc[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(ia), _mm512_mul_ps(d, _mm512_set1_ps(a->dx[k])), acc[t]);
            if (min) acc[t] = _mm512_fmadd_ps(m, _mm512_set1_ps(a->sx[k]), acc[t]);
        }
    }
    const __mmask16 mk = (__mmask16)((1u << nr) - 1);
    for (int t = 0; t < nt; t++) _mm512_mask_storeu_ps(y + (t0 + t) * n_out + o0, mk, acc[t]);
}

/* The token loop of one 32-value block (activation block kb): codes c, scales sa (values
 * 0-15), sb (16-31; = sa unless split), min m (scaled per row; min types). */
static inline __attribute__((always_inline)) void pblock(const int nt, const int split, const int min, const int off,
                                                        const __m512i *c, __m512 sa, __m512 sb, __m512 m,
                                                        const pact *a, int64_t t0, int64_t kb, __m512 *acc) {
    for (int t = 0; t < nt; t++) {
        const int64_t k = (t0 + t) * a->nb + kb;
        const int32_t *xb = (const int32_t *)(const void *)(a->q + (t0 + t) * a->n_in + 32 * kb);
        const __m512 dx = _mm512_set1_ps(a->dx[k]);
        if (split) {
            __m512i i0 = _mm512_set1_epi32(-off * a->s0[k]), i1 = _mm512_set1_epi32(-off * (a->s[k] - a->s0[k]));
            for (int j = 0; j < 4; j++) i0 = _mm512_dpbusd_epi32(i0, c[j], _mm512_set1_epi32(xb[j]));
            for (int j = 4; j < 8; j++) i1 = _mm512_dpbusd_epi32(i1, c[j], _mm512_set1_epi32(xb[j]));
            acc[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(i0), _mm512_mul_ps(sa, dx), acc[t]);
            acc[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(i1), _mm512_mul_ps(sb, dx), acc[t]);
        } else {
            __m512i ia = off ? _mm512_set1_epi32(-off * a->s[k]) : _mm512_setzero_si512();
            for (int j = 0; j < 8; j++) ia = _mm512_dpbusd_epi32(ia, c[j], _mm512_set1_epi32(xb[j]));
            acc[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(ia), _mm512_mul_ps(sa, dx), acc[t]);
            if (min) acc[t] = _mm512_fnmadd_ps(m, _mm512_set1_ps(a->sx[k]), acc[t]);
        }
    }
}

static inline __m512 bytes16_ps(const uint8_t *p) {
    return _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)(const void *)p)));
}
static inline __m512 sbytes16_ps(const uint8_t *p) {
    return _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)(const void *)p)));
}

/* K-quant group x nt tokens, all super-blocks. Q4_K/Q5_K: value = d sc q - dmin mn (the min
 * term subtracted: m = dmin mn, times dx sum xq); Q6_K: d S (q - 32), S per 16 values. */
static inline __attribute__((always_inline)) void pmicro_k(const int six, const int five, const int nt,
                                                          const moa_qpack *P, const uint8_t *grp, const pact *a,
                                                          int64_t t0, float *y, int64_t n_out, int64_t o0, int nr) {
    __m512 acc[TT];
    for (int t = 0; t < nt; t++) acc[t] = _mm512_setzero_ps();
    const __m512i m4 = _mm512_set1_epi8(15), m3 = _mm512_set1_epi8(3), sixteen = _mm512_set1_epi8(16);
    for (int64_t sbk = 0; sbk < a->nb / 8; sbk++) {
        const uint8_t *o = grp + (size_t)sbk * P->blk;
        const __m512 d = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(o + P->o_d)));
        if (six) {
            for (int h = 0; h < 2; h++)
                for (int g = 0; g < 4; g++) {
                    __m512i c[8];
                    for (int k = 0; k < 8; k++) {
                        __m512i l = _mm512_loadu_si512((const __m512i *)(o + 64 * (16 * h + 8 * (g & 1) + k)));
                        if (g >= 2) l = _mm512_srli_epi16(l, 4);
                        const __m512i hb = _mm512_loadu_si512((const __m512i *)(o + 2048 + 64 * (8 * h + k)));
                        c[k] = _mm512_or_si512(_mm512_and_si512(l, m4),
                                               _mm512_slli_epi16(_mm512_and_si512(_mm512_srli_epi16(hb, 2 * g), m3), 4));
                    }
                    const __m512 sa = _mm512_mul_ps(d, sbytes16_ps(o + P->o_sc + 16 * (8 * h + 2 * g)));
                    const __m512 sb = _mm512_mul_ps(d, sbytes16_ps(o + P->o_sc + 16 * (8 * h + 2 * g + 1)));
                    pblock(nt, 1, 0, 32, c, sa, sb, sa, a, t0, 8 * sbk + 4 * h + g, acc);
                }
        } else {
            const __m512 dmin = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(o + P->o_m)));
            for (int cc = 0; cc < 4; cc++) {
                __m512i lo[8], hi[8];
                for (int k = 0; k < 8; k++) {
                    const __m512i z = _mm512_loadu_si512((const __m512i *)(o + 64 * (8 * cc + k)));
                    lo[k] = _mm512_and_si512(z, m4);
                    hi[k] = _mm512_and_si512(_mm512_srli_epi16(z, 4), m4);
                    if (five) {
                        const __m512i qh = _mm512_loadu_si512((const __m512i *)(o + 2048 + 64 * k));
                        lo[k] = _mm512_or_si512(lo[k], _mm512_maskz_mov_epi8(
                            _mm512_test_epi8_mask(qh, _mm512_set1_epi8((char)(1 << (2 * cc)))), sixteen));
                        hi[k] = _mm512_or_si512(hi[k], _mm512_maskz_mov_epi8(
                            _mm512_test_epi8_mask(qh, _mm512_set1_epi8((char)(1 << (2 * cc + 1)))), sixteen));
                    }
                }
                for (int half = 0; half < 2; half++) {
                    const int j = 2 * cc + half;
                    const __m512 sa = _mm512_mul_ps(d, bytes16_ps(o + P->o_sc + 16 * j));
                    const __m512 m = _mm512_mul_ps(dmin, bytes16_ps(o + P->o_mn + 16 * j));
                    pblock(nt, 0, 1, 0, half ? hi : lo, sa, sa, m, a, t0, 8 * sbk + j, acc);
                }
            }
        }
    }
    const __mmask16 mk = (__mmask16)((1u << nr) - 1);
    for (int t = 0; t < nt; t++) _mm512_mask_storeu_ps(y + (t0 + t) * n_out + o0, mk, acc[t]);
}

static void pmicro_any(const moa_qpack *P, int nt, const uint8_t *grp, const pact *a, int64_t t0, float *y, int64_t o0,
                       int nr) {
    if (P->kq) {
        const int six = P->type == MOA_GGML_Q6_K, five = P->type == MOA_GGML_Q5_K;
#define PK(S, F, NT) pmicro_k(S, F, NT, P, grp, a, t0, y, P->n_out, o0, nr)
#define PKT(S, F) do { switch (nt) { case 1: PK(S, F, 1); break; case TT: PK(S, F, TT); break; \
                                     default: PK(S, F, nt); } } while (0)
        if (six) PKT(1, 0);
        else if (five) PKT(0, 1);
        else PKT(0, 0);
#undef PKT
#undef PK
        return;
    }
    const int64_t n_out = P->n_out;
#define PM(T, NT) pmicro(T == MOA_GGML_Q8_0, T == MOA_GGML_Q5_0 || T == MOA_GGML_Q5_1, \
                         T == MOA_GGML_Q4_1 || T == MOA_GGML_Q5_1, \
                         T == MOA_GGML_Q4_0 ? 8 : T == MOA_GGML_Q5_0 ? 16 : T == MOA_GGML_Q8_0 ? 128 : 0, \
                         NT, P, grp, a, t0, y, n_out, o0, nr)
#define PT(T) do { switch (nt) { case 1: PM(T, 1); break; case 2: PM(T, 2); break; case TT: PM(T, TT); break; \
                                 default: PM(T, nt); } } while (0)
    switch (P->type) {
    case MOA_GGML_Q4_0: PT(MOA_GGML_Q4_0); break;
    case MOA_GGML_Q4_1: PT(MOA_GGML_Q4_1); break;
    case MOA_GGML_Q5_0: PT(MOA_GGML_Q5_0); break;
    case MOA_GGML_Q5_1: PT(MOA_GGML_Q5_1); break;
    case MOA_GGML_Q8_0: PT(MOA_GGML_Q8_0); break;
    default: break;
    }
#undef PT
#undef PM
}

/* Value i of the 16 rows of a K-quant group (f32 weights, as the micro-kernel scales them). */
static __m512 kvalue(const moa_qpack *P, const uint8_t *grp, int64_t i) {
    const uint8_t *o = grp + (size_t)(i / 256) * P->blk;
    const int v = (int)(i % 256);
    const __m512 d = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(o + P->o_d)));
    if (P->type == MOA_GGML_Q6_K) {
        const int h = v / 128, g = (v % 128) / 32, l = v % 32, k = l / 4, e = l % 4;
        const __m512i ql = _mm512_loadu_si512((const __m512i *)(o + 64 * (16 * h + 8 * (g & 1) + k)));
        const __m512i qh = _mm512_loadu_si512((const __m512i *)(o + 2048 + 64 * (8 * h + k)));
        __m512i q = _mm512_and_si512(_mm512_srli_epi32(ql, 8 * e + 4 * (g >= 2)), _mm512_set1_epi32(15));
        q = _mm512_or_si512(q, _mm512_slli_epi32(_mm512_and_si512(_mm512_srli_epi32(qh, 8 * e + 2 * g),
                                                                  _mm512_set1_epi32(3)), 4));
        const __m512 S = sbytes16_ps(o + P->o_sc + 16 * (8 * h + 2 * g + l / 16));
        return _mm512_mul_ps(_mm512_mul_ps(d, S), _mm512_cvtepi32_ps(_mm512_sub_epi32(q, _mm512_set1_epi32(32))));
    }
    const int j = v / 32, cc = j / 2, l = v % 32, k = l / 4, e = l % 4;
    const __m512i z = _mm512_loadu_si512((const __m512i *)(o + 64 * (8 * cc + k)));
    __m512i q = _mm512_and_si512(_mm512_srli_epi32(z, 8 * e + 4 * (j & 1)), _mm512_set1_epi32(15));
    if (P->q5) {
        const __m512i qh = _mm512_loadu_si512((const __m512i *)(o + 2048 + 64 * k));
        q = _mm512_or_si512(q, _mm512_slli_epi32(_mm512_and_si512(_mm512_srli_epi32(qh, 8 * e + j),
                                                                  _mm512_set1_epi32(1)), 4));
    }
    const __m512 dmin = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(o + P->o_m)));
    return _mm512_fmsub_ps(_mm512_mul_ps(d, bytes16_ps(o + P->o_sc + 16 * j)), _mm512_cvtepi32_ps(q),
                           _mm512_mul_ps(dmin, bytes16_ps(o + P->o_mn + 16 * j)));
}

/* y[o0..o0+nr) += W[o][i] xv for one outlier value i: its code from the group's block. */
static void pfix(const moa_qpack *P, const uint8_t *grp, int64_t i, float xv, float *yrow, int nr) {
    if (P->kq) {
        const __mmask16 mk = (__mmask16)((1u << nr) - 1);
        _mm512_mask_storeu_ps(yrow, mk, _mm512_fmadd_ps(kvalue(P, grp, i), _mm512_set1_ps(xv),
                                                        _mm512_maskz_loadu_ps(mk, yrow)));
        return;
    }
    const uint8_t *o = grp + (size_t)(i / 32) * P->blk;
    const int v = (int)(i % 32);
    __m512i code;
    if (P->type == MOA_GGML_Q8_0) {   /* signed byte v % 4 of lane vector v / 4 */
        const __m512i z = _mm512_loadu_si512((const __m512i *)(o + 64 * (v / 4)));
        code = _mm512_srai_epi32(_mm512_slli_epi32(z, 24 - 8 * (v % 4)), 24);
        code = _mm512_add_epi32(code, _mm512_set1_epi32(P->off));   /* as the unsigned codes below */
    } else {
        const __m512i z = _mm512_loadu_si512((const __m512i *)(o + 64 * ((v % 16) / 4)));
        code = _mm512_and_si512(_mm512_srli_epi32(z, 8 * (v % 4) + 4 * (v >= 16)), _mm512_set1_epi32(15));
        if (P->q5) {
            const __m512i qh = _mm512_loadu_si512((const __m512i *)(o + P->o_qh));
            code = _mm512_or_si512(code, _mm512_slli_epi32(_mm512_and_si512(_mm512_srli_epi32(qh, v), _mm512_set1_epi32(1)), 4));
        }
    }
    const __m512 d = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(o + P->o_d)));
    __m512 w = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_sub_epi32(code, _mm512_set1_epi32(P->off))), d);
    if (P->min) w = _mm512_add_ps(w, _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(o + P->o_m))));
    const __mmask16 mk = (__mmask16)((1u << nr) - 1);
    _mm512_mask_storeu_ps(yrow, mk, _mm512_fmadd_ps(w, _mm512_set1_ps(xv), _mm512_maskz_loadu_ps(mk, yrow)));
}

#define MAX_JOBS 8
#define STACK_BYTES 65536

int moa_matmul_qpack_vnni512(const moa_qpack *const *packs, float *const *ys, int n_jobs, const float *x, int64_t n,
                             int64_t *n_outliers) {
    if (n_jobs < 1 || n_jobs > MAX_JOBS || n < 1) return 0;
    const int64_t n_in = packs[0]->n_in, nb = n_in / 32, nk = n * nb;
    for (int k = 1; k < n_jobs; k++) if (packs[k]->n_in != n_in) return 0;
    /* scratch: xq, dx, sx, sums, outliers (on the stack for small n) */
    const size_t bytes = (size_t)(n * n_in) + (size_t)nk * 16 + (size_t)n * MAX_OUTLIERS * 8 + (size_t)n * 4 + 256;
    unsigned char stack[STACK_BYTES] __attribute__((aligned(64)));
    unsigned char *heap = NULL, *buf = stack;
    if (bytes > sizeof stack && !(buf = heap = malloc(bytes))) return 0;
    float *dx = (float *)(void *)buf, *sx = dx + nk;
    int32_t *sv = (int32_t *)(sx + nk), *s0v = sv + nk, *oidx = s0v + nk, *ocnt = oidx + n * MAX_OUTLIERS;
    float *oval = (float *)(ocnt + n);
    int8_t *xq = (int8_t *)(oval + n * MAX_OUTLIERS);
    int too_many = 0;
    int64_t total_out = 0;
    #pragma omp parallel for schedule(static) reduction(|| : too_many) reduction(+ : total_out) if (n * n_in > 65536)
    for (int64_t tk = 0; tk < n; tk++) {
        /* the kernels read the whole sum sv and the first half's s0v */
        int32_t *s0 = s0v + tk * nb, *sum = sv + tk * nb;
        const int64_t c = moa_q8_token_avx512(x + tk * n_in, n_in, oidx + tk * MAX_OUTLIERS, oval + tk * MAX_OUTLIERS,
                                              xq + tk * n_in, dx + tk * nb, sx + tk * nb, s0, sum);
        if (c < 0) too_many = 1;
        else {
            ocnt[tk] = (int32_t)c;
            total_out += c;
            for (int64_t b = 0; b < nb; b++) sum[b] += s0[b];
        }
    }
    if (too_many) { free(heap); return 0; }
    if (n_outliers) *n_outliers = total_out;
    const pact a = {xq, dx, sx, sv, s0v, n_in, nb};
    int64_t ngrp[MAX_JOBS], total = 0, work = 0;
    for (int k = 0; k < n_jobs; k++) {
        ngrp[k] = packs[k]->n_grp;
        total += ngrp[k];
        work += packs[k]->n_out * n_in * n;
    }
    const int64_t n_tt = (n + TT - 1) / TT;
    /* guided: each thread starts on a long contiguous run of groups (the hardware prefetchers
     * follow it; measured 10-20% faster decode than chunks of one group), then smaller ones
     * balance the end */
    #pragma omp parallel for schedule(guided) collapse(2) if (work > 32768)
    for (int64_t tt = 0; tt < n_tt; tt++)
        for (int64_t gg = 0; gg < total; gg++) {
            int k = 0;
            int64_t g = gg;
            while (g >= ngrp[k]) g -= ngrp[k++];
            const moa_qpack *P = packs[k];
            const uint8_t *grp = P->data + (size_t)g * (size_t)(P->kq ? P->nb / 8 : P->nb) * P->blk;
            const int64_t t0 = tt * TT;
            const int nt = (int)(n - t0 < TT ? n - t0 : TT);
            const int nr = (int)(P->n_out - g * GR < GR ? P->n_out - g * GR : GR);
            pmicro_any(P, nt, grp, &a, t0, ys[k], g * GR, nr);
            for (int t = 0; t < nt; t++)
                for (int c = 0; c < ocnt[t0 + t]; c++)
                    pfix(P, grp, oidx[(t0 + t) * MAX_OUTLIERS + c], oval[(t0 + t) * MAX_OUTLIERS + c],
                         ys[k] + (t0 + t) * P->n_out + g * GR, nr);
        }
    free(heap);
    return 1;
}
