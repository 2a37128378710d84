/* test_quant_kernels.c - the SIMD quantised kernels against the plain C reference, for every
 * type on every path this CPU has (reference, AVX2 forced, AVX-512 with f32 activations, and
 * the default, which for Q4_K/Q6_K on AVX512-VNNI quantises activations to int8):
 *   - SIMD dequantisers: bit-identical to moa_dequant_row (same operations, no FMA);
 *   - moa_matmul_q: odd shapes (n_out not a multiple of the 16-row tile, n_in of several
 *     blocks and chunks, n_vec 1..9 and 17 > one pass of 16 vectors) against
 *     moa_matmul_q_ref (dequantise, accumulate in double). Bound per output o, vector v:
 *       |y - y_ref| <= 2e-6 * sum_i |W[o][i] x[v][i]| + 1e-30
 *     (f32 accumulation of n_in <= 2304 products in >= 4 interleaved partial sums; the
 *     measured worst is printed); the int8-activation path: <= 1e-2 * sum_i |W x| (its
 *     activation rounding is <= max|x_b| / 254 per value; measured worst printed);
 *   - moa_matmul_q_batch: several panels and the small-batch fallback, same bound scaled by
 *     sgemm's accumulation (5e-6).
 * Random weights have finite f16 scales at each type's scale offsets. */
#include "quant.h"
#include "quant-impl.h"
#include "moa-common.h"
#include "test.h"

#include <stdint.h>

static uint64_t rng = 0x9e3779b97f4a7c15ull;
static uint32_t rnd(void) {
    rng ^= rng << 13; rng ^= rng >> 7; rng ^= rng << 17;
    return (uint32_t)(rng >> 16);
}
static float urand(float a, float b) { return a + (b - a) * (float)(rnd() & 0xffffff) / 16777216.0f; }
static void put16(uint8_t *p, uint16_t v) { p[0] = (uint8_t)v; p[1] = (uint8_t)(v >> 8); }

static const moa_ggml_type TYPES[] = {
    MOA_GGML_F32, MOA_GGML_F16, MOA_GGML_BF16, MOA_GGML_Q4_0, MOA_GGML_Q4_1, MOA_GGML_Q5_0,
    MOA_GGML_Q5_1, MOA_GGML_Q8_0, MOA_GGML_Q4_K, MOA_GGML_Q5_K, MOA_GGML_Q6_K,
};
#define N_TYPES (sizeof TYPES / sizeof TYPES[0])

/* Random rows: random bytes, then every f16 scale field (d, m / dmin) set to a finite value. */
static uint8_t *random_weights(moa_ggml_type t, int64_t n_out, int64_t n_in) {
    size_t rb = moa_ggml_row_bytes(t, n_in), nb = rb * (size_t)n_out;
    uint8_t *w = malloc(nb ? nb : 1);
    for (size_t i = 0; i < nb; i++) w[i] = (uint8_t)rnd();
    uint32_t be, bb;
    moa_ggml_type_info(t, &be, &bb);
    int64_t nblk = (int64_t)(nb / bb);
    for (int64_t b = 0; b < nblk; b++) {
        uint8_t *p = w + (size_t)b * bb;
        float d = urand(0.002f, 0.05f) * (rnd() & 1 ? 1.0f : -1.0f);
        switch (t) {
        case MOA_GGML_F32: memcpy(p, &(float){urand(-1, 1)}, 4); break;
        case MOA_GGML_F16: put16(p, moa_f32_to_f16(urand(-1, 1))); break;
        case MOA_GGML_BF16: put16(p, moa_f32_to_bf16(urand(-1, 1))); break;
        case MOA_GGML_Q4_0: case MOA_GGML_Q5_0: case MOA_GGML_Q8_0: put16(p, moa_f32_to_f16(d)); break;
        case MOA_GGML_Q4_1: case MOA_GGML_Q5_1:
            put16(p, moa_f32_to_f16(d)); put16(p + 2, moa_f32_to_f16(urand(-0.1f, 0.1f))); break;
        case MOA_GGML_Q4_K: case MOA_GGML_Q5_K:
            put16(p, moa_f32_to_f16(fabsf(d) * 0.1f)); put16(p + 2, moa_f32_to_f16(urand(0, 0.005f))); break;
        case MOA_GGML_Q6_K: put16(p + 208, moa_f32_to_f16(d * 0.05f)); break;
        }
    }
    return w;
}

enum { PATH_REF, PATH_AVX2, PATH_AVX512, PATH_Q8, N_PATHS };
static const char *PATH_NAME[] = {"reference", "avx2", "avx512", "avx512-vnni-q8"};

static int q8_type(moa_ggml_type t) { return t == MOA_GGML_Q4_K || t == MOA_GGML_Q6_K; }

/* Select a path; 0 if this CPU lacks it (or, for PATH_Q8, type t has no such path). */
static int set_path(int path, moa_ggml_type t) {
    moa_cpu_force_reference(0);
    moa_cpu_force_avx2(0);
    moa_matmul_q_set_act(MOA_MATMUL_ACT_F32);
    if (path == PATH_REF) { moa_cpu_force_reference(1); return 1; }
    if (path == PATH_AVX2) { moa_cpu_force_avx2(1); return moa_cpu_has_avx2(); }
    if (path == PATH_AVX512) return moa_cpu_has_avx512();
    moa_matmul_q_set_act(MOA_MATMUL_ACT_AUTO);
    return moa_cpu_has_avx512_vnni() && q8_type(t);
}
static void reset_path(void) {
    moa_cpu_force_reference(0); moa_cpu_force_avx2(0); moa_matmul_q_set_act(MOA_MATMUL_ACT_AUTO);
}

TEST(simd_dequant_bit_identical) {
    int n_checked = 0;
    for (size_t ti = 0; ti < N_TYPES; ti++) {
        moa_ggml_type t = TYPES[ti];
        uint32_t be;
        moa_ggml_type_info(t, &be, NULL);
        int64_t n = be == 1 ? 1000 + 13 : (int64_t)be * (be == 256 ? 5 : 37), rows = 3;
        size_t rb = moa_ggml_row_bytes(t, n);
        uint8_t *w = random_weights(t, rows, n);
        float *ref = malloc(sizeof(float) * (size_t)(rows * n)), *got = malloc(sizeof(float) * (size_t)(rows * n));
        for (int64_t r = 0; r < rows; r++) moa_dequant_row(t, w + (size_t)r * rb, ref + r * n, n);
        for (int isa = 0; isa < 2; isa++) {
            if (isa == 0 && !moa_cpu_has_avx2()) continue;
            if (isa == 1 && !moa_cpu_has_avx512()) continue;
            memset(got, 0xff, sizeof(float) * (size_t)(rows * n));
            int ok = isa == 0 ? moa_dequant_rows_avx2(t, w, rb, rows, n, got)
                              : moa_dequant_rows_avx512(t, w, rb, rows, n, got);
            CHECK_MSG(ok, "%s: %s dequantiser declined", moa_ggml_type_name(t), isa ? "avx512" : "avx2");
            int64_t bad = 0, first = -1;
            for (int64_t i = 0; i < rows * n; i++)
                if (memcmp(&ref[i], &got[i], 4) != 0) { bad++; if (first < 0) first = i; }
            CHECK_MSG(bad == 0, "%s %s: %lld of %lld values not bit-identical (first %lld: %.9g vs %.9g)",
                      moa_ggml_type_name(t), isa ? "avx512" : "avx2", (long long)bad, (long long)(rows * n),
                      (long long)first, first >= 0 ? got[first] : 0.0, first >= 0 ? ref[first] : 0.0);
            n_checked++;
        }
        free(w); free(ref); free(got);
    }
    CHECK(n_checked >= (int)N_TYPES * (moa_cpu_has_avx2() + moa_cpu_has_avx512()));
}

/* max over outputs of |y - ref| / sum_i |W[o][i] x[v][i]| (W dequantised by the reference). */
static double worst_ratio(moa_ggml_type t, const uint8_t *w, int64_t n_out, int64_t n_in, const float *x,
                          int64_t nv, const float *y, const float *yref) {
    size_t rb = moa_ggml_row_bytes(t, n_in);
    float *row = malloc(sizeof(float) * (size_t)n_in);
    double worst = 0;
    for (int64_t o = 0; o < n_out; o++) {
        moa_dequant_row(t, w + (size_t)o * rb, row, n_in);
        for (int64_t v = 0; v < nv; v++) {
            double s = 0;
            for (int64_t i = 0; i < n_in; i++) s += fabs((double)row[i] * x[v * n_in + i]);
            double e = fabs((double)y[v * n_out + o] - yref[v * n_out + o]);
            double r = e / (s + 1e-30);
            if (r > worst || r != r) worst = r != r ? INFINITY : r;
        }
    }
    free(row);
    return worst;
}

TEST(matmul_paths_vs_reference) {
    const int64_t nvecs[] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 17};
    double worst[N_PATHS] = {0};
    int runs[N_PATHS] = {0};
    for (size_t ti = 0; ti < N_TYPES; ti++) {
        moa_ggml_type t = TYPES[ti];
        uint32_t be;
        moa_ggml_type_info(t, &be, NULL);
        /* {n_out, n_in}: n_in in blocks; 32-blocks: 25 blocks = 3 chunks of 8 + 1 */
        int64_t shapes[3][2];
        if (be == 256) { shapes[0][0] = 37; shapes[0][1] = 256; shapes[1][0] = 5; shapes[1][1] = 2304;
                         shapes[2][0] = 130; shapes[2][1] = 768; }
        else if (be == 32) { shapes[0][0] = 37; shapes[0][1] = 32; shapes[1][0] = 5; shapes[1][1] = 800;
                             shapes[2][0] = 130; shapes[2][1] = 288; }
        else { shapes[0][0] = 37; shapes[0][1] = 45; shapes[1][0] = 5; shapes[1][1] = 1037;
               shapes[2][0] = 130; shapes[2][1] = 17; }
        for (int si = 0; si < 3; si++) {
            int64_t n_out = shapes[si][0], n_in = shapes[si][1];
            uint8_t *w = random_weights(t, n_out, n_in);
            for (size_t vi = 0; vi < sizeof nvecs / sizeof nvecs[0]; vi++) {
                int64_t nv = nvecs[vi];
                if (si == 1 && nv > 4 && nv != 9) continue;   /* keep the big shape quick */
                float *x = malloc(sizeof(float) * (size_t)(nv * n_in));
                float *y0 = malloc(sizeof(float) * (size_t)(nv * n_out));
                float *y1 = malloc(sizeof(float) * (size_t)(nv * n_out));
                for (int64_t i = 0; i < nv * n_in; i++) x[i] = urand(-2, 2);
                moa_matmul_q_ref(t, w, n_out, n_in, x, nv, y0);
                for (int path = 0; path < N_PATHS; path++) {
                    if (!set_path(path, t)) continue;
                    const char *pn = moa_matmul_q_path(t);
                    /* on AVX-512 machines Q4_0/Q4_1/Q8_0 keep the AVX2 kernels */
                    int q32 = t == MOA_GGML_Q4_0 || t == MOA_GGML_Q4_1 || t == MOA_GGML_Q8_0;
                    const char *want = path == PATH_AVX512 && q32 ? "avx2" : PATH_NAME[path];
                    CHECK_MSG(strcmp(pn, want) == 0, "path %s reported as %s", want, pn);
                    for (int64_t i = 0; i < nv * n_out; i++) y1[i] = NAN;
                    moa_matmul_q(t, w, n_out, n_in, x, nv, y1);
                    double r = worst_ratio(t, w, n_out, n_in, x, nv, y1, y0);
                    CHECK_MSG(r <= (path == PATH_Q8 ? 1e-2 : 2e-6), "%s %s %lldx%lld nvec %lld: |err| / |w|.|x| = %g", PATH_NAME[path],
                              moa_ggml_type_name(t), (long long)n_out, (long long)n_in, (long long)nv, r);
                    if (r > worst[path]) worst[path] = r;
                    runs[path]++;
                }
                reset_path();
                free(x); free(y0); free(y1);
            }
            free(w);
        }
    }
    for (int p = 0; p < N_PATHS; p++)
        fprintf(stderr, "  matmul %-9s %4d runs, worst |err| / |w|.|x| = %.3g\n", PATH_NAME[p], runs[p], worst[p]);
    CHECK(runs[PATH_REF] > 0);
    if (moa_cpu_has_avx2()) CHECK(runs[PATH_AVX2] == runs[PATH_REF]);
    if (moa_cpu_has_avx512()) CHECK(runs[PATH_AVX512] == runs[PATH_REF]);
    if (moa_cpu_has_avx512_vnni()) CHECK(runs[PATH_Q8] > 0);
}

/* The q8 path against its stated bound. Per output o, vector v, with dx_b = max_{i in b}|x_i| / 127
 * over each 256-value block b:
 *   |y - y_ref| <= sum_b (dx_b / 2) sum_{i in b} |W[o][i]|  +  2e-6 sum_i |W[o][i] x[v][i]|
 * (activation rounding + f32 rounding), checked on uniform activations: also <= 1e-2 of
 * sum_i |W x|, and > 1e-5 (so the path really quantises: not the f32 path under another
 * name). With one 40x outlier per block (max/RMS ~ 15.6 > 12) the outlier guard runs the
 * product with f32 activations instead (the int8 error would exceed 1e-2 there): counted as
 * a fallback, and f32-accurate (<= 2e-6). */
TEST(matmul_q8_activation_bound) {
    if (!moa_cpu_has_avx512_vnni()) { fprintf(stderr, "  (no AVX512-VNNI: skipped)\n"); return; }
    const moa_ggml_type types[] = {MOA_GGML_Q4_K, MOA_GGML_Q6_K};
    for (int ti = 0; ti < 2; ti++) {
        moa_ggml_type t = types[ti];
        const int64_t n_out = 67, n_in = 1536, nv = 5, nb = n_in / 256;
        const size_t rb = moa_ggml_row_bytes(t, n_in);
        uint8_t *w = random_weights(t, n_out, n_in);
        float *x = malloc(sizeof(float) * (size_t)(nv * n_in)), *row = malloc(sizeof(float) * (size_t)n_in);
        float *y0 = malloc(sizeof(float) * (size_t)(nv * n_out)), *y1 = malloc(sizeof(float) * (size_t)(nv * n_out));
        for (int outlier = 0; outlier < 2; outlier++) {
            for (int64_t i = 0; i < nv * n_in; i++) x[i] = urand(-1, 1);
            if (outlier) for (int64_t i = 0; i < nv * n_in; i += 256) x[i + (int64_t)(rnd() % 256)] = 40.0f;
            moa_matmul_q_ref(t, w, n_out, n_in, x, nv, y0);
            unsigned long long c0, f0, c1, f1;
            moa_matmul_q_q8act_stats(&c0, &f0);
            set_path(PATH_Q8, t);
            moa_matmul_q(t, w, n_out, n_in, x, nv, y1);
            reset_path();
            moa_matmul_q_q8act_stats(&c1, &f1);
            CHECK_EQ_INT(c1 - c0, 1);
            CHECK_EQ_INT(f1 - f0, outlier ? 1 : 0);
            double worst_rel = 0, worst_of_bound = 0;
            for (int64_t o = 0; o < n_out; o++) {
                moa_dequant_row(t, w + (size_t)o * rb, row, n_in);
                for (int64_t v = 0; v < nv; v++) {
                    double bound = 0, wx = 0;
                    for (int64_t b = 0; b < nb; b++) {
                        double amax = 0, sw = 0;
                        for (int64_t i = b * 256; i < b * 256 + 256; i++) {
                            amax = fmax(amax, fabs(x[v * n_in + i]));
                            sw += fabs(row[i]);
                            wx += fabs((double)row[i] * x[v * n_in + i]);
                        }
                        bound += amax / 127 / 2 * sw;
                    }
                    bound += 2e-6 * wx;
                    double e = fabs((double)y1[v * n_out + o] - y0[v * n_out + o]);
                    worst_rel = fmax(worst_rel, e / wx);
                    worst_of_bound = fmax(worst_of_bound, e / bound);
                }
            }
            fprintf(stderr, "  q8 %s%s: worst |err| / |w|.|x| = %.3g, worst |err| / bound = %.3g\n",
                    moa_ggml_type_name(t), outlier ? " (40x outliers)" : "", worst_rel, worst_of_bound);
            CHECK_MSG(worst_of_bound <= 1, "q8 %s: error exceeds the activation-rounding bound (x%.3g)",
                      moa_ggml_type_name(t), worst_of_bound);
            if (outlier) CHECK_MSG(worst_rel <= 2e-6, "q8 %s with outliers: %g (the f32 fallback?)",
                                   moa_ggml_type_name(t), worst_rel);
            if (!outlier) {
                CHECK_MSG(worst_rel <= 1e-2, "q8 %s: %g of |w|.|x|", moa_ggml_type_name(t), worst_rel);
                CHECK_MSG(worst_rel > 1e-5, "q8 %s: error %g is f32-like: activations not quantised?",
                          moa_ggml_type_name(t), worst_rel);
            }
        }
        free(w); free(x); free(row); free(y0); free(y1);
    }
}

TEST(matmul_batch_vs_reference) {
    /* n_in = 2304: panels of 8 MiB / (4 * 2304) = 896 rows, so 1000 rows = 2 panels. */
    const moa_ggml_type types[] = {MOA_GGML_Q4_K, MOA_GGML_Q6_K, MOA_GGML_Q5_0, MOA_GGML_Q8_0, MOA_GGML_F16, MOA_GGML_F32};
    const int64_t n_out = 1000, n_in = 2304;
    CHECK_EQ_INT(moa_matmul_q_batch_panel_rows(n_out, n_in), 896);
    CHECK_EQ_INT(moa_matmul_q_batch_panel_rows(5, 1 << 24), 5);
    CHECK_EQ_INT(moa_matmul_q_batch_panel_rows(100, 1 << 24), 16);
    const int64_t ns[] = {3, 8, 21};
    double worst = 0;
    for (size_t ti = 0; ti < sizeof types / sizeof types[0]; ti++) {
        moa_ggml_type t = types[ti];
        uint8_t *w = random_weights(t, n_out, n_in);
        for (size_t ni = 0; ni < sizeof ns / sizeof ns[0]; ni++) {
            int64_t n = ns[ni];
            float *x = malloc(sizeof(float) * (size_t)(n * n_in));
            float *y0 = malloc(sizeof(float) * (size_t)(n * n_out)), *y1 = malloc(sizeof(float) * (size_t)(n * n_out));
            for (int64_t i = 0; i < n * n_in; i++) x[i] = urand(-2, 2);
            moa_matmul_q_ref(t, w, n_out, n_in, x, n, y0);
            for (int path = 0; path < PATH_Q8; path++) {
                if (!set_path(path, t)) continue;
                for (int64_t i = 0; i < n * n_out; i++) y1[i] = NAN;
                moa_matmul_q_batch(t, w, n_out, n_in, x, n, y1);
                double r = worst_ratio(t, w, n_out, n_in, x, n, y1, y0);
                CHECK_MSG(r <= 5e-6, "batch %s %s n %lld: |err| / |w|.|x| = %g", PATH_NAME[path],
                          moa_ggml_type_name(t), (long long)n, r);
                if (r > worst) worst = r;
            }
            reset_path();
            free(x); free(y0); free(y1);
        }
        free(w);
    }
    fprintf(stderr, "  batch worst |err| / |w|.|x| = %.3g\n", worst);
}

int main(void) {
    RUN(simd_dequant_bit_identical);
    RUN(matmul_paths_vs_reference);
    RUN(matmul_q8_activation_bound);
    RUN(matmul_batch_vs_reference);
    return test_summary();
}
