/* quant.c - ggml block formats: type table, f16/bf16, reference dequantisation, the
 * reference + dispatching quantised matrix-vector product, and the batched product
 * (dequantised panels times sgemm). Layouts: gguf-llama.md. Compiled with -ffp-contract=off
 * so the reference rounds every operation as written (the SIMD dequantisers match it bit
 * for bit). */
#include "moa/quant.h"
#include "quant-impl.h"
#include "moa/common.h"

#include <cblas.h>
#include <cpuid.h>
#include <immintrin.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

const char *moa_ggml_type_name(moa_ggml_type t) {
    switch (t) {
    case MOA_GGML_F32: return "F32";   case MOA_GGML_F16: return "F16";
    case MOA_GGML_Q4_0: return "Q4_0"; case MOA_GGML_Q4_1: return "Q4_1";
    case MOA_GGML_Q5_0: return "Q5_0"; case MOA_GGML_Q5_1: return "Q5_1";
    case MOA_GGML_Q8_0: return "Q8_0"; case MOA_GGML_Q4_K: return "Q4_K";
    case MOA_GGML_Q5_K: return "Q5_K"; case MOA_GGML_Q6_K: return "Q6_K";
    case MOA_GGML_BF16: return "BF16";
    }
    return "?";
}

int moa_ggml_type_info(moa_ggml_type t, uint32_t *block_elems, uint32_t *block_bytes) {
    uint32_t be = 0, bb = 0;
    switch (t) {
    case MOA_GGML_F32: be = 1; bb = 4; break;
    case MOA_GGML_F16: case MOA_GGML_BF16: be = 1; bb = 2; break;
    case MOA_GGML_Q4_0: be = 32; bb = 18; break;
    case MOA_GGML_Q4_1: be = 32; bb = 20; break;
    case MOA_GGML_Q5_0: be = 32; bb = 22; break;
    case MOA_GGML_Q5_1: be = 32; bb = 24; break;
    case MOA_GGML_Q8_0: be = 32; bb = 34; break;
    case MOA_GGML_Q4_K: be = 256; bb = 144; break;
    case MOA_GGML_Q5_K: be = 256; bb = 176; break;
    case MOA_GGML_Q6_K: be = 256; bb = 210; break;
    }
    if (block_elems) *block_elems = be;
    if (block_bytes) *block_bytes = bb;
    return be != 0;
}

size_t moa_ggml_row_bytes(moa_ggml_type t, int64_t n) {
    uint32_t be, bb;
    if (!moa_ggml_type_info(t, &be, &bb)) return 0;
    return (size_t)(n / be) * bb;
}

/* ---- half precision -------------------------------------------------------------------- */
/* The bits of an f32, and the f32 with given bits. */
static uint32_t f32_bits(float f) {
    uint32_t x;
    memcpy(&x, &f, 4);
    return x;
}
static float bits_f32(uint32_t x) {
    float f;
    memcpy(&f, &x, 4);
    return f;
}

float moa_f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h >> 15) << 31;
    uint32_t exp = (h >> 10) & 31, man = h & 1023;
    uint32_t bits;
    if (exp == 0) {
        if (man == 0) bits = sign;
        else bits = f32_bits(ldexpf((float)man, -24)) | sign;   /* subnormal: man * 2^-24 */
    } else if (exp == 31) {
        bits = sign | 0x7f800000u | (man << 13);
    } else {
        bits = sign | ((exp + 112) << 23) | (man << 13);
    }
    return bits_f32(bits);
}

uint16_t moa_f32_to_f16(float f) {
    const uint32_t x = f32_bits(f);
    uint32_t sign = (x >> 16) & 0x8000;
    uint32_t absx = x & 0x7fffffff;
    if (absx > 0x7f800000) return (uint16_t)(sign | 0x7e00);         /* NaN */
    if (absx >= 0x477ff000) return (uint16_t)(sign | 0x7c00);        /* overflow -> inf */
    if (absx < 0x38800000) {                                          /* subnormal or zero */
        float m = bits_f32(absx) * 16777216.0f;   /* 2^24: value in units of 2^-24 */
        uint32_t r = (uint32_t)lrintf(m);  /* round to nearest even */
        return (uint16_t)(sign | r);
    }
    uint32_t e = (absx >> 23) - 112, man = absx & 0x7fffff;
    uint32_t h = (e << 10) | (man >> 13);
    uint32_t rest = man & 0x1fff;
    if (rest > 0x1000 || (rest == 0x1000 && (h & 1))) h++;
    return (uint16_t)(sign | h);
}

float moa_bf16_to_f32(uint16_t h) { return bits_f32((uint32_t)h << 16); }

uint16_t moa_f32_to_bf16(float f) {
    uint32_t x = f32_bits(f);
    if ((x & 0x7fffffff) > 0x7f800000) return (uint16_t)((x >> 16) | 0x40);
    x += 0x7fff + ((x >> 16) & 1);
    return (uint16_t)(x >> 16);
}

/* ---- reference dequantisation ---------------------------------------------------------- */
static uint16_t rd16(const uint8_t *p) { return (uint16_t)(p[0] | p[1] << 8); }
static uint32_t rd32(const uint8_t *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* 6-bit scale and min j (0..7) of a Q4_K/Q5_K super-block. */
static void k_scale_min(const uint8_t *s, int j, int *sc, int *mn) {
    if (j < 4) { *sc = s[j] & 63; *mn = s[j + 4] & 63; }
    else {
        *sc = (s[j + 4] & 15) | ((s[j - 4] >> 6) << 4);
        *mn = (s[j + 4] >> 4) | ((s[j] >> 6) << 4);
    }
}

void moa_dequant_row(moa_ggml_type t, const void *src, float *y, int64_t n) {
    const uint8_t *p = src;
    switch (t) {
    case MOA_GGML_F32: memcpy(y, p, (size_t)n * 4); return;
    case MOA_GGML_F16: for (int64_t i = 0; i < n; i++) y[i] = moa_f16_to_f32(rd16(p + 2 * i)); return;
    case MOA_GGML_BF16: for (int64_t i = 0; i < n; i++) y[i] = moa_bf16_to_f32(rd16(p + 2 * i)); return;
    case MOA_GGML_Q4_0:
        for (int64_t b = 0; b < n / 32; b++, p += 18, y += 32) {
            float d = moa_f16_to_f32(rd16(p));
            for (int j = 0; j < 16; j++) {
                y[j] = (float)((p[2 + j] & 15) - 8) * d;
                y[j + 16] = (float)((p[2 + j] >> 4) - 8) * d;
            }
        }
        return;
    case MOA_GGML_Q4_1:
        for (int64_t b = 0; b < n / 32; b++, p += 20, y += 32) {
            float d = moa_f16_to_f32(rd16(p)), m = moa_f16_to_f32(rd16(p + 2));
            for (int j = 0; j < 16; j++) {
                y[j] = (float)(p[4 + j] & 15) * d + m;
                y[j + 16] = (float)(p[4 + j] >> 4) * d + m;
            }
        }
        return;
    case MOA_GGML_Q5_0:
        for (int64_t b = 0; b < n / 32; b++, p += 22, y += 32) {
            float d = moa_f16_to_f32(rd16(p));
            uint32_t qh = rd32(p + 2);
            const uint8_t *qs = p + 6;
            for (int j = 0; j < 16; j++) {
                int b0 = (int)(((qh >> j) << 4) & 16), b1 = (int)((qh >> (j + 12)) & 16);
                y[j] = (float)(((qs[j] & 15) | b0) - 16) * d;
                y[j + 16] = (float)(((qs[j] >> 4) | b1) - 16) * d;
            }
        }
        return;
    case MOA_GGML_Q5_1:
        for (int64_t b = 0; b < n / 32; b++, p += 24, y += 32) {
            float d = moa_f16_to_f32(rd16(p)), m = moa_f16_to_f32(rd16(p + 2));
            uint32_t qh = rd32(p + 4);
            const uint8_t *qs = p + 8;
            for (int j = 0; j < 16; j++) {
                int b0 = (int)(((qh >> j) << 4) & 16), b1 = (int)((qh >> (j + 12)) & 16);
                y[j] = (float)((qs[j] & 15) | b0) * d + m;
                y[j + 16] = (float)((qs[j] >> 4) | b1) * d + m;
            }
        }
        return;
    case MOA_GGML_Q8_0:
        for (int64_t b = 0; b < n / 32; b++, p += 34, y += 32) {
            float d = moa_f16_to_f32(rd16(p));
            for (int j = 0; j < 32; j++) y[j] = (float)(int8_t)p[2 + j] * d;
        }
        return;
    case MOA_GGML_Q4_K:
    case MOA_GGML_Q5_K: {
        int five = t == MOA_GGML_Q5_K;
        size_t bs = five ? 176 : 144;
        for (int64_t b = 0; b < n / 256; b++, p += bs, y += 256) {
            float d = moa_f16_to_f32(rd16(p)), dmin = moa_f16_to_f32(rd16(p + 2));
            const uint8_t *s = p + 4;
            const uint8_t *qh = five ? p + 16 : NULL;
            const uint8_t *qs = five ? p + 48 : p + 16;
            for (int c = 0; c < 4; c++) {
                int sc1, m1, sc2, m2;
                k_scale_min(s, 2 * c, &sc1, &m1);
                k_scale_min(s, 2 * c + 1, &sc2, &m2);
                const uint8_t *q = qs + 32 * c;
                for (int l = 0; l < 32; l++) {
                    int lo = q[l] & 15, hi = q[l] >> 4;
                    if (five) {
                        if (qh[l] & (1u << (2 * c))) lo += 16;
                        if (qh[l] & (1u << (2 * c + 1))) hi += 16;
                    }
                    y[64 * c + l] = d * (float)sc1 * (float)lo - dmin * (float)m1;
                    y[64 * c + 32 + l] = d * (float)sc2 * (float)hi - dmin * (float)m2;
                }
            }
        }
        return;
    }
    case MOA_GGML_Q6_K:
        for (int64_t b = 0; b < n / 256; b++, p += 210, y += 256) {
            const uint8_t *ql = p, *qh = p + 128;
            const int8_t *sc = (const int8_t *)(p + 192);
            float d = moa_f16_to_f32(rd16(p + 208));
            for (int h = 0; h < 2; h++) {
                const uint8_t *L = ql + 64 * h, *H = qh + 32 * h;
                const int8_t *S = sc + 8 * h;
                float *Y = y + 128 * h;
                for (int l = 0; l < 32; l++) {
                    int is = l / 16;
                    Y[l] = d * S[is] * (float)(((L[l] & 15) | ((H[l] & 3) << 4)) - 32);
                    Y[l + 32] = d * S[is + 2] * (float)(((L[l + 32] & 15) | (((H[l] >> 2) & 3) << 4)) - 32);
                    Y[l + 64] = d * S[is + 4] * (float)(((L[l] >> 4) | (((H[l] >> 4) & 3) << 4)) - 32);
                    Y[l + 96] = d * S[is + 6] * (float)(((L[l + 32] >> 4) | (((H[l] >> 6) & 3) << 4)) - 32);
                }
            }
        }
        return;
    }
    MOA_ASSERT(!"moa_dequant_row: unknown type");
}

/* ---- matrix-vector products ------------------------------------------------------------ */
void moa_matmul_q_ref(moa_ggml_type t, const void *W, int64_t n_out, int64_t n_in,
                      const float *x, int64_t n_vec, float *y) {
    size_t rb = moa_ggml_row_bytes(t, n_in);
    #pragma omp parallel
    {
        float *row = malloc((size_t)n_in * sizeof(float));
        #pragma omp for schedule(static)
        for (int64_t o = 0; o < n_out; o++) {
            if (!row) continue;
            moa_dequant_row(t, (const uint8_t *)W + (size_t)o * rb, row, n_in);
            for (int64_t v = 0; v < n_vec; v++) {
                const float *xv = x + v * n_in;
                double s = 0;
                for (int64_t i = 0; i < n_in; i++) s += (double)row[i] * xv[i];
                y[v * n_out + o] = (float)s;
            }
        }
        free(row);
    }
}

static int g_force_ref, g_force_avx2, g_force_no_vnni;
void moa_cpu_force_reference(int on) { g_force_ref = on; }
void moa_cpu_force_avx2(int on) { g_force_avx2 = on; }

int moa_cpu_has_avx2(void) {
    static int v = -1;
    if (v < 0) { __builtin_cpu_init(); v = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"); }
    return v && !g_force_ref;
}
int moa_cpu_has_avx512(void) {
    static int v = -1;
    if (v < 0) {
        __builtin_cpu_init();
        v = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
            __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq");
    }
    return v && !g_force_ref && !g_force_avx2;
}

int moa_cpu_has_avx512_vnni(void) {
    static int v = -1;
    if (v < 0) { __builtin_cpu_init(); v = __builtin_cpu_supports("avx512vnni"); }
    return v && !g_force_no_vnni && moa_cpu_has_avx512();
}

int moa_cpu_has_avx_vnni(void) {
    static int v = -1;
    if (v < 0) {   /* CPUID leaf 7 sub-leaf 1, EAX bit 4 (clang 14's __builtin_cpu_supports has no "avxvnni") */
        unsigned a = 0, b = 0, c = 0, d = 0;
        v = __get_cpuid_count(7, 1, &a, &b, &c, &d) && (a & (1u << 4));
    }
    return v && !g_force_no_vnni && moa_cpu_has_avx2();
}

void moa_cpu_force_no_vnni(int on) { g_force_no_vnni = on; }

/* OpenBLAS falls back to its SSE3 kernels ("Prescott") on CPU models it does not know. */
extern char *openblas_get_corename(void);
const char *moa_blas_coretype_hint(void) {
    const char *core = openblas_get_corename();
    if (!core || strcasecmp(core, "Prescott") != 0) return NULL;
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
        __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq") &&
        __builtin_cpu_supports("avx512cd"))
        return "SkylakeX";
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return "Haswell";
    return NULL;
}

static moa_matmul_act g_act = MOA_MATMUL_ACT_AUTO;
void moa_matmul_q_set_act(moa_matmul_act a) { g_act = a; }
moa_matmul_act moa_matmul_q_get_act(void) { return g_act; }

/* Types with an int8-activation kernel (quant-q8.inc). */
static int q8_type(moa_ggml_type t) {
    switch (t) {
    case MOA_GGML_Q4_0: case MOA_GGML_Q4_1: case MOA_GGML_Q5_0: case MOA_GGML_Q5_1: case MOA_GGML_Q8_0:
    case MOA_GGML_Q4_K: case MOA_GGML_Q5_K: case MOA_GGML_Q6_K: return 1;
    default: return 0;
    }
}

/* The int8-activation variant for type t on this CPU now: 3 AVX512-VNNI, 2 AVX-VNNI,
 * 1 AVX2, 0 none (f32 activations). */
static int q8_isa(moa_ggml_type t) {
    if (g_act != MOA_MATMUL_ACT_AUTO || !q8_type(t)) return 0;
    if (moa_cpu_has_avx512_vnni()) return 3;
    if (moa_cpu_has_avx_vnni()) return 2;
    if (moa_cpu_has_avx2()) return 1;
    return 0;
}

const char *moa_matmul_q_path(moa_ggml_type t) {
    uint32_t be;
    if (!moa_ggml_type_info(t, &be, NULL)) return "none";
    switch (q8_isa(t)) {
    case 3: return "avx512-vnni-q8";
    case 2: return "avx-vnni-q8";
    case 1: return "avx2-q8";
    }
    if (moa_cpu_has_avx512() && t != MOA_GGML_Q4_0 && t != MOA_GGML_Q4_1 && t != MOA_GGML_Q8_0)
        return "avx512";   /* (those three run the AVX2 kernels: quant-avx512.c) */
    if (moa_cpu_has_avx2()) return "avx2";
    return "reference";
}

/* Outliers of the int8 path: a block of activations whose largest |x| is far above the rest
 * loses the rest of the block to rounding (the scale is set by the outlier). Such activations
 * occur: the first token of Qwen2.5-Coder-1.5B carries |x| ~ 3,700 against ~100 elsewhere
 * (8-bit activations, ours or llama.cpp's, then move its logits by up to 9 and its argmax),
 * and most of SmolLM2-135M's products have a value > 12x the mean |x| of its 256 neighbours.
 * The blocks holding such values are multiplied with f32 activations (the rest of the product
 * stays in int8); a product with too many of them runs in f32 throughout. A window of Gaussian
 * values has max ~ 4x its mean |x|; a single spike among 256 zeros has 256x. */
static unsigned long long g_q8_calls, g_q8_fallbacks, g_q8_mixed;   /* statistics (racy counts) */
static unsigned long long g_q8_batch_calls, g_q8_batch_declined;

/* The |x| limit of the window [s0, s0 + w) of xv: MOA_Q8ACT_OUTLIER x its mean |x| (the mean,
 * unlike the RMS, moves little with a few outliers: with 8 values of 40x the others among 256
 * the limit is ~28x them); INFINITY when no value exceeds it. */
__attribute__((target("avx2")))
static float window_limit_avx2(const float *p, int64_t w) {
    const __m256 sign = _mm256_set1_ps(-0.0f);
    __m256 s0 = _mm256_setzero_ps(), s1 = s0, m0 = s0, m1 = s0;
    int64_t i = 0;
    for (; i + 16 <= w; i += 16) {
        const __m256 a = _mm256_andnot_ps(sign, _mm256_loadu_ps(p + i));
        const __m256 b = _mm256_andnot_ps(sign, _mm256_loadu_ps(p + i + 8));
        s0 = _mm256_add_ps(s0, a); s1 = _mm256_add_ps(s1, b);
        m0 = _mm256_max_ps(m0, a); m1 = _mm256_max_ps(m1, b);
    }
    float sv[8], mv[8], s = 0, mx = 0;
    _mm256_storeu_ps(sv, _mm256_add_ps(s0, s1));
    _mm256_storeu_ps(mv, _mm256_max_ps(m0, m1));
    for (int k = 0; k < 8; k++) { s += sv[k]; mx = mv[k] > mx ? mv[k] : mx; }
    for (; i < w; i++) { const float a = fabsf(p[i]); s += a; mx = a > mx ? a : mx; }
    const float lim = MOA_Q8ACT_OUTLIER * s / (float)w;
    return mx > lim ? lim : INFINITY;
}

static float window_limit(const float *xv, int64_t s0, int64_t w) {
    const float *p = xv + s0;
    if (moa_cpu_has_avx2()) return window_limit_avx2(p, w);
    float s = 0, mx = 0;
    for (int64_t i = 0; i < w; i++) { const float a = fabsf(p[i]); s += a; mx = a > mx ? a : mx; }
    const float lim = MOA_Q8ACT_OUTLIER * s / (float)w;
    return mx > lim ? lim : INFINITY;
}

/* The outliers of window w0 of x[0..n_in) (windows of w = min(n_in, 256) values starting every
 * 256, the last one moved back to end at n_in): the indices i, ascending, with |x[i]| above
 * the window's limit, into idx (room for w); returns how many. */
static int64_t window_outliers(const float *x, int64_t n_in, int64_t w0, int64_t w, int64_t *idx) {
    const int64_t s0 = w0 + w <= n_in ? w0 : n_in - w;
    const float lim = window_limit(x, s0, w);
    if (lim == INFINITY) return 0;
    int64_t c = 0;
    for (int64_t i = s0; i < s0 + w; i++)
        if (fabsf(x[i]) > lim) idx[c++] = i;
    return c;
}

int64_t moa_q8_outlier_blocks(const float *x, int64_t n_in, int64_t n_vec, int64_t block, uint8_t *flags) {
    const int64_t nb = n_in / block, w = n_in < 256 ? n_in : 256;
    int64_t total = 0;
    memset(flags, 0, (size_t)(n_vec * nb));
    for (int64_t v = 0; v < n_vec; v++) {
        const float *xv = x + v * n_in;
        int64_t nflag = 0;
        for (int64_t w0 = 0; w0 < n_in; w0 += 256) {
            int64_t out[256];
            const int64_t n_out = window_outliers(xv, n_in, w0, w, out);
            for (int64_t j = 0; j < n_out; j++) {
                uint8_t *f = &flags[v * nb + out[j] / block];
                if (!*f) { *f = 1; nflag++; }
            }
        }
        if (nflag * 2 > nb) return -1;
        total += nflag;
    }
    return total;
}

int64_t moa_q8_outlier_values(const float *x, int64_t n_in, int32_t *idx, int64_t max) {
    const int64_t w = n_in < 256 ? n_in : 256;
    int64_t c = 0;
    for (int64_t w0 = 0; w0 < n_in; w0 += 256) {
        int64_t out[256];
        const int64_t n_out = window_outliers(x, n_in, w0, w, out);
        for (int64_t j = 0; j < n_out; j++) {
            int dup = 0;   /* overlapping last window */
            for (int64_t k = 0; k < c && !dup; k++) dup = idx[k] == (int32_t)out[j];
            if (dup) continue;
            if (c == max) return -1;
            idx[c++] = (int32_t)out[j];
        }
    }
    return c;
}

void moa_matmul_q_q8act_stats(unsigned long long *calls, unsigned long long *fallbacks) {
    if (calls) *calls = g_q8_calls;
    if (fallbacks) *fallbacks = g_q8_fallbacks;
}

void moa_matmul_q_q8act_mixed(unsigned long long *mixed) {
    if (mixed) *mixed = g_q8_mixed;
}

void moa_matmul_q_batch_q8_stats(unsigned long long *calls, unsigned long long *declined) {
    if (calls) *calls = g_q8_batch_calls;
    if (declined) *declined = g_q8_batch_declined;
}

/* f32 activations: the AVX-512 / AVX2 kernels or the reference. */
static void matmul_f32act(moa_ggml_type t, const void *W, int64_t n_out, int64_t n_in, const float *x,
                          int64_t n_vec, float *y) {
    if (moa_cpu_has_avx512() && moa_matmul_q_avx512(t, W, n_out, n_in, x, n_vec, y)) return;
    if (moa_cpu_has_avx2() && moa_matmul_q_avx2(t, W, n_out, n_in, x, n_vec, y)) return;
    moa_matmul_q_ref(t, W, n_out, n_in, x, n_vec, y);
}

/* Flags on the stack up to this many blocks (n_vec x blocks), else the heap. */
#define Q8_FLAGS_STACK 4096

/* The int8 path for jobs that all have it on ISA isa: 1 if done. */
static int multi_q8(int isa, const moa_matmul_q_job *jobs, int n, int64_t n_in, const float *x, int64_t n_vec) {
    for (int k = 0; k < n; k++) {
        uint32_t be;
        moa_ggml_type_info(jobs[k].type, &be, NULL);
        if (n_in % be) return 0;
    }
    const int64_t nf = n_vec * (n_in / 32);
    uint8_t stack[Q8_FLAGS_STACK], *heap = NULL, *flags = stack;
    if (nf > Q8_FLAGS_STACK && !(flags = heap = malloc((size_t)nf))) return 0;
    const int64_t nout = moa_q8_outlier_blocks(x, n_in, n_vec, 32, flags);
    g_q8_calls += (unsigned)n;
    int done = 0;
    if (nout < 0) g_q8_fallbacks += (unsigned)n;   /* too many outliers: f32 throughout */
    else {
        const uint8_t *fb = nout > 0 ? flags : NULL;
        done = isa == 3 ? moa_matmul_q_q8_multi_vnni512(jobs, n, n_in, x, n_vec, fb)
             : isa == 2 ? moa_matmul_q_q8_multi_avxvnni(jobs, n, n_in, x, n_vec, fb)
             : moa_matmul_q_q8_multi_avx2(jobs, n, n_in, x, n_vec, fb);
        if (done && nout > 0) g_q8_mixed += (unsigned)n;
    }
    free(heap);
    return done;
}

void moa_matmul_q_multi(const moa_matmul_q_job *jobs, int n, int64_t n_in, const float *x, int64_t n_vec) {
    if (n <= 0) return;
    const int isa = q8_isa(jobs[0].type);
    int same = isa > 0 && n <= 8;
    for (int k = 1; k < n && same; k++) same = q8_isa(jobs[k].type) == isa;
    if (same && multi_q8(isa, jobs, n, n_in, x, n_vec)) return;
    for (int k = 0; k < n; k++) {
        if (!same && q8_isa(jobs[k].type) && multi_q8(q8_isa(jobs[k].type), &jobs[k], 1, n_in, x, n_vec)) continue;
        matmul_f32act(jobs[k].type, jobs[k].W, jobs[k].n_out, n_in, x, n_vec, jobs[k].y);
    }
}

void moa_matmul_q(moa_ggml_type t, const void *W, int64_t n_out, int64_t n_in,
                  const float *x, int64_t n_vec, float *y) {
    const moa_matmul_q_job job = {t, W, n_out, y};
    moa_matmul_q_multi(&job, 1, n_in, x, n_vec);
}

/* Rows [r0, r1) of W dequantised into dst [r1 - r0][n_in], by the fastest dequantiser
 * (all are bit-identical to moa_dequant_row). */
static void dequant_rows_fast(moa_ggml_type t, const uint8_t *W, size_t rb, int64_t r0, int64_t r1,
                              int64_t n_in, float *dst) {
    const uint8_t *src = W + (size_t)r0 * rb;
    if (moa_cpu_has_avx512() && moa_dequant_rows_avx512(t, src, rb, r1 - r0, n_in, dst)) return;
    if (moa_cpu_has_avx2() && moa_dequant_rows_avx2(t, src, rb, r1 - r0, n_in, dst)) return;
    for (int64_t r = r0; r < r1; r++) moa_dequant_row(t, W + (size_t)r * rb, dst + (r - r0) * n_in, n_in);
}

int64_t moa_matmul_q_batch_panel_rows(int64_t n_out, int64_t n_in) {
    int64_t p = (int64_t)(MOA_MATMUL_Q_PANEL_BYTES / ((size_t)n_in * sizeof(float)));
    p = p / 16 * 16;
    if (p < 16) p = 16;
    return p < n_out ? p : n_out;
}

const char *moa_matmul_q_batch_path(moa_ggml_type t) {
    uint32_t be;
    if (!moa_ggml_type_info(t, &be, NULL)) return "none";
    if (q8_isa(t) == 3) return "avx512-vnni-q8";
    return "sgemm";
}

/* The sgemm path of moa_matmul_q_batch (n, n_out, n_in checked by the caller). */
static void batch_sgemm(moa_ggml_type t, const void *W, int64_t n_out, int64_t n_in, const float *x, int64_t n,
                        float *y) {
    if (t == MOA_GGML_F32) {   /* already a float matrix */
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)n, (int)n_out, (int)n_in, 1.0f,
                    x, (int)n_in, W, (int)n_in, 0.0f, y, (int)n_out);
        return;
    }
    const size_t rb = moa_ggml_row_bytes(t, n_in);
    const int64_t P = moa_matmul_q_batch_panel_rows(n_out, n_in);
    float *panel = moa_alloc_aligned((size_t)(P * n_in), sizeof(float));
    if (!panel) {   /* no scratch: the row-streaming kernel needs none */
        moa_matmul_q(t, W, n_out, n_in, x, n, y);
        return;
    }
    for (int64_t o0 = 0; o0 < n_out; o0 += P) {
        const int64_t np = n_out - o0 < P ? n_out - o0 : P;
        const int64_t step = 8;
        #pragma omp parallel for schedule(dynamic, 1)
        for (int64_t r = 0; r < np; r += step)
            dequant_rows_fast(t, W, rb, o0 + r, o0 + (r + step < np ? r + step : np), n_in, panel + r * n_in);
        /* y[:, o0:o0+np] = x [n][n_in] * panel[np][n_in]^T */
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)n, (int)np, (int)n_in, 1.0f,
                    x, (int)n_in, panel, (int)n_in, 0.0f, y + o0, (int)n_out);
    }
    moa_free_aligned(panel);
}

void moa_matmul_q_batch(moa_ggml_type t, const void *W, int64_t n_out, int64_t n_in,
                        const float *x, int64_t n, float *y) {
    uint32_t be;
    if (n < MOA_MATMUL_Q_BATCH_MIN || !moa_ggml_type_info(t, &be, NULL) || n_in % be ||
        n_out > INT32_MAX || n_in > INT32_MAX || n > INT32_MAX) {
        moa_matmul_q(t, W, n_out, n_in, x, n, y);
        return;
    }
    if (q8_isa(t) == 3) {
        const moa_matmul_q_job job = {t, W, n_out, y};
        g_q8_batch_calls++;
        if (moa_matmul_q_gemm_vnni512(&job, 1, n_in, x, n)) return;
        g_q8_batch_declined++;
    }
    batch_sgemm(t, W, n_out, n_in, x, n, y);
}

void moa_matmul_q_batch_multi(const moa_matmul_q_job *jobs, int n_jobs, int64_t n_in, const float *x, int64_t n) {
    int all = n_jobs > 0 && n_jobs <= 8 && n >= MOA_MATMUL_Q_BATCH_MIN && n <= INT32_MAX && n_in <= INT32_MAX;
    for (int k = 0; k < n_jobs && all; k++) {
        uint32_t be;
        moa_ggml_type_info(jobs[k].type, &be, NULL);
        all = q8_isa(jobs[k].type) == 3 && jobs[k].n_out <= INT32_MAX && n_in % be == 0;
    }
    if (!all) {
        for (int k = 0; k < n_jobs; k++) moa_matmul_q_batch(jobs[k].type, jobs[k].W, jobs[k].n_out, n_in, x, n, jobs[k].y);
        return;
    }
    g_q8_batch_calls += (unsigned)n_jobs;
    if (moa_matmul_q_gemm_vnni512(jobs, n_jobs, n_in, x, n)) return;
    g_q8_batch_declined += (unsigned)n_jobs;
    for (int k = 0; k < n_jobs; k++) batch_sgemm(jobs[k].type, jobs[k].W, jobs[k].n_out, n_in, x, n, jobs[k].y);
}

/* ---- packed matrices --------------------------------------------------------------------- */
static int has_bitalg(void) {
    static int v = -1;
    if (v < 0) { __builtin_cpu_init(); v = __builtin_cpu_supports("avx512bitalg"); }
    return v;
}

moa_qpack *moa_qpack_create(moa_ggml_type t, const void *W, int64_t n_out, int64_t n_in) {
    if (!moa_cpu_has_avx512_vnni() || !has_bitalg() || !moa_qpack_supported_vnni512(t)) return NULL;
    return moa_qpack_create_vnni512(t, W, n_out, n_in);
}

void moa_qpack_free(moa_qpack *p) { moa_qpack_free_vnni512(p); }

size_t moa_qpack_bytes(const moa_qpack *p) { return moa_qpack_bytes_vnni512(p); }

void moa_matmul_qpack(const moa_qpack *const *packs, float *const *ys, int n_jobs, const float *x, int64_t n) {
    if (n_jobs <= 0 || n <= 0) return;
    const int batch = n >= MOA_MATMUL_Q_BATCH_MIN;
    if (g_act == MOA_MATMUL_ACT_AUTO && moa_cpu_has_avx512_vnni() && has_bitalg() && n_jobs <= 8) {
        int64_t nout = 0;
        if (moa_matmul_qpack_vnni512(packs, ys, n_jobs, x, n, &nout)) {
            if (batch) g_q8_batch_calls += (unsigned)n_jobs;
            else {
                g_q8_calls += (unsigned)n_jobs;
                if (nout > 0) g_q8_mixed += (unsigned)n_jobs;
            }
            return;
        }
    }
    /* f32 activations, lower paths (force switches), or a token with too many outliers: the
     * GGUF rows through the unpacked products (which count themselves) */
    for (int k = 0; k < n_jobs; k++) {
        moa_ggml_type t;
        const void *W;
        int64_t n_out, n_in;
        moa_qpack_info_vnni512(packs[k], &t, &W, &n_out, &n_in);
        if (batch) moa_matmul_q_batch(t, W, n_out, n_in, x, n, ys[k]);
        else moa_matmul_q(t, W, n_out, n_in, x, n, ys[k]);
    }
}
