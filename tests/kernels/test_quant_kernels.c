/* test_quant_kernels.c - the SIMD quantised kernels against the plain C reference, for every
 * type on every path this CPU has (reference, AVX2 forced, AVX-512 with f32 activations, and
 * the int8-activation paths of Q4_0/Q4_1/Q5_0/Q5_1/Q8_0/Q4_K/Q5_K/Q6_K: AVX512-VNNI, AVX-VNNI
 * and AVX2 vpmaddubsw, each forced in turn):
 *   - SIMD dequantisers: bit-identical to moa_dequant_row (same operations, no FMA);
 *   - moa_matmul_q: odd shapes (n_out not a multiple of the 16-row tile, n_in of several
 *     blocks and chunks, an odd number of 32-blocks, n_vec 1..9 and 17 > one pass of 16
 *     vectors) against moa_matmul_q_ref (dequantise, accumulate in double). Bound per output
 *     o, vector v:
 *       |y - y_ref| <= 2e-6 * sum_i |W[o][i] x[v][i]| + 1e-30
 *     (f32 accumulation of n_in <= 2304 products in >= 4 interleaved partial sums; the
 *     measured worst is printed); the int8-activation paths: <= 1e-2 * sum_i |W x| (their
 *     activation rounding is <= max|x_b| / 254 per value; measured worst printed);
 *   - the int8 paths in detail (matmul_q8_paths): against the activation-rounding bound,
 *     against an exact emulation of their arithmetic (activations quantised as the kernels
 *     do, products in double: agreement to f32 rounding, 4e-6), with a control (the same
 *     comparison against a weight matrix with one value per row moved by 1% of its largest
 *     |W| must fail), outlier blocks in f32 (mixed) and the f32 fallback;
 *   - moa_matmul_q_multi / moa_matmul_q_batch_multi: bit-identical to one moa_matmul_q /
 *     moa_matmul_q_batch per matrix;
 *   - moa_matmul_q_batch on its int8 path (AVX512-VNNI): bound, emulation, control, outliers
 *     (matmul_batch_q8);
 *   - moa_qpack (packed matrices): decode-sized and batched calls, same checks (qpack_products);
 *   - moa_matmul_q_batch: several panels and the small-batch fallback, same bound scaled by
 *     sgemm's accumulation (5e-6).
 * Random weights have finite f16 scales at each type's scale offsets. */
#include "moa/quant.h"
#include "quant-impl.h"
#include "moa/common.h"
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

enum { PATH_REF, PATH_AVX2, PATH_AVX512, PATH_Q8_VNNI512, PATH_Q8_AVXVNNI, PATH_Q8_AVX2, N_PATHS };
static const char *PATH_NAME[] = {"reference", "avx2", "avx512", "avx512-vnni-q8", "avx-vnni-q8", "avx2-q8"};
#define PATH_Q8_FIRST PATH_Q8_VNNI512

static int q8_type(moa_ggml_type t) {
    switch (t) {
    case MOA_GGML_Q4_0: case MOA_GGML_Q4_1: case MOA_GGML_Q5_0: case MOA_GGML_Q5_1: case MOA_GGML_Q8_0:
    case MOA_GGML_Q4_K: case MOA_GGML_Q5_K: case MOA_GGML_Q6_K: return 1;
    default: return 0;
    }
}

/* Select a path; 0 if this CPU lacks it (or, for the q8 paths, type t has no such path). */
static int set_path(int path, moa_ggml_type t) {
    moa_cpu_force_reference(0);
    moa_cpu_force_avx2(0);
    moa_cpu_force_no_vnni(0);
    moa_matmul_q_set_act(MOA_MATMUL_ACT_F32);
    if (path == PATH_REF) { moa_cpu_force_reference(1); return 1; }
    if (path == PATH_AVX2) { moa_cpu_force_avx2(1); return moa_cpu_has_avx2(); }
    if (path == PATH_AVX512) return moa_cpu_has_avx512();
    moa_matmul_q_set_act(MOA_MATMUL_ACT_AUTO);
    if (!q8_type(t)) return 0;
    if (path == PATH_Q8_VNNI512) return moa_cpu_has_avx512_vnni();
    if (path == PATH_Q8_AVXVNNI) { moa_cpu_force_avx2(1); return moa_cpu_has_avx_vnni(); }
    moa_cpu_force_no_vnni(1);
    return moa_cpu_has_avx2();
}
static void reset_path(void) {
    moa_cpu_force_reference(0); moa_cpu_force_avx2(0); moa_cpu_force_no_vnni(0);
    moa_matmul_q_set_act(MOA_MATMUL_ACT_AUTO);
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
                    CHECK_MSG(r <= (path >= PATH_Q8_FIRST ? 1e-2 : 2e-6), "%s %s %lldx%lld nvec %lld: |err| / |w|.|x| = %g", PATH_NAME[path],
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
    if (moa_cpu_has_avx512_vnni()) CHECK(runs[PATH_Q8_VNNI512] > 0);
    if (moa_cpu_has_avx_vnni()) CHECK(runs[PATH_Q8_AVXVNNI] > 0);
    if (moa_cpu_has_avx2()) CHECK(runs[PATH_Q8_AVX2] > 0);
}

/* The int8-activation paths in detail, for every q8 type on every variant this CPU has.
 * Per output o, vector v, with dx_b = max_{i in b}|x_i| / 127 over each activation block b of
 * 32 values (every type) and xq_i = round(x_i / dx_b):
 *   1. bound:   |y - y_ref| <= sum_b (dx_b / 2) sum_{i in b} |W[o][i]| + 2e-6 sum_i |W[o][i] x[v][i]|
 *               (activation rounding, every term of every type multiplying the rounded xq,
 *               + f32 rounding; blocks multiplied in f32 count 0); also <= 1e-2 of
 *               sum_i |W x|, and > 1e-5 of it (the path really quantises);
 *   2. emulation: activations quantised in C exactly as the kernels do (f32 x * (127/max|x|),
 *               rounded to nearest even), y_emu = sum_i W[o][i] dx_b xq_i in double (x_i
 *               itself in the blocks taken in f32): |y - y_emu| <= 4e-6 sum_i |W[o][i] dx_b xq_i|
 *               (f32 rounding of the scales and of the accumulation only): any slip in offsets,
 *               scales, min terms, nibble or high-bit order is far above this;
 *   3. control: the same comparison against y_emu of a matrix with one value per row moved by
 *               1% of the row's largest |W| (at the largest |x| of vector 0) must fail at >= 90%
 *               of the rows: the check in 2 detects an error of that size;
 *   4. outliers: one 40x value in every other 256-value window (uniform data elsewhere:
 *               40 > 12x the mean |x| ~ 0.5): exactly the 32-value blocks holding them are flagged
 *               (moa_q8_outlier_blocks) and multiplied in f32 (a "mixed" product; checks 1-3
 *               with those blocks in f32); one in every block: more than half of the blocks,
 *               the whole product runs with f32 activations (a "fallback", f32-accurate:
 *               <= 2e-6). */

/* y_emu and its scale for one row (wr: the row dequantised) against vector x of n values;
 * f32blk: per activation block, 1 = exact (NULL: none). */
static void q8_emulate(moa_ggml_type t, const float *wr, const float *x, int64_t n, const uint8_t *f32blk,
                       double *y_emu, double *scale) {
    const int64_t B = 32;
    (void)t;
    double y = 0, sc = 0;
    for (int64_t b0 = 0; b0 < n; b0 += B) {
        float amax = 0;
        for (int64_t i = b0; i < b0 + B; i++) amax = fmaxf(amax, fabsf(x[i]));
        const float id = amax > 0 ? 127.0f / amax : 0.0f, dx = amax / 127.0f;
        const int exact = f32blk && f32blk[b0 / B];
        for (int64_t i = b0; i < b0 + B; i++) {
            const double term = (double)wr[i] * (exact ? (double)x[i] : (double)dx * (double)lrintf(x[i] * id));
            y += term;
            sc += fabs(term);
        }
    }
    *y_emu = y;
    *scale = sc;
}

/* One case of the int8-activation tests (matmul_q8_paths, matmul_batch_q8, qpack_products):
 * random weights of type t, n_out x n_in (random_weights: the only draws from the generator
 * here, so each test keeps its sequence of random values), their rows dequantised by the
 * reference (wr, row o at wr + o n_in), the pack if asked for (pk; NULL where declined) and
 * buffers for up to nv vectors: activations x (nv x n_in, drawn by the caller), reference and
 * tested outputs y0, y1 (nv x n_out), planted outliers (oi: up to 64 per vector, at
 * oi + v 64; no: their number per vector, 0). */
typedef struct {
    uint8_t *w;
    moa_qpack *pk;
    float *wr, *x, *y0, *y1;
    int32_t *oi;
    int64_t *no;
} q8_case;

static q8_case q8_case_new(moa_ggml_type t, int64_t n_out, int64_t n_in, int64_t nv, int pack) {
    const size_t rb = moa_ggml_row_bytes(t, n_in);
    q8_case c;
    c.w = random_weights(t, n_out, n_in);
    c.pk = pack ? moa_qpack_create(t, c.w, n_out, n_in) : NULL;
    c.wr = malloc(sizeof(float) * (size_t)(n_out * n_in));
    for (int64_t o = 0; o < n_out; o++) moa_dequant_row(t, c.w + (size_t)o * rb, c.wr + o * n_in, n_in);
    c.x = malloc(sizeof(float) * (size_t)(nv * n_in));
    c.y0 = malloc(sizeof(float) * (size_t)(nv * n_out));
    c.y1 = malloc(sizeof(float) * (size_t)(nv * n_out));
    c.oi = malloc(sizeof(int32_t) * (size_t)nv * 64);
    c.no = calloc((size_t)nv, sizeof(int64_t));
    return c;
}

static void q8_case_free(q8_case *c) {
    moa_qpack_free(c->pk);
    free(c->w); free(c->wr); free(c->x); free(c->y0); free(c->y1); free(c->oi); free(c->no);
}

TEST(matmul_q8_paths) {
    if (!moa_cpu_has_avx2()) { fprintf(stderr, "  (no AVX2: skipped)\n"); return; }
    const moa_ggml_type types[] = {MOA_GGML_Q4_0, MOA_GGML_Q4_1, MOA_GGML_Q5_0, MOA_GGML_Q5_1, MOA_GGML_Q8_0,
                                   MOA_GGML_Q4_K, MOA_GGML_Q5_K, MOA_GGML_Q6_K};
    const int64_t shapes[2][2] = {{67, 1536}, {19, 800}};   /* 800: 25 blocks of 32 (32-block types only) */
    static const char *MODE[] = {"", " (sparse outliers)", " (outliers everywhere)"};
    int n_runs = 0;
    for (int path = PATH_Q8_FIRST; path < N_PATHS; path++) {
        double worst_rel = 0, worst_bound = 0, worst_emu = 0, weakest_control = INFINITY;
        int runs = 0;
        for (size_t ti = 0; ti < sizeof types / sizeof types[0]; ti++) {
            const moa_ggml_type t = types[ti];
            if (!set_path(path, t)) continue;
            reset_path();
            uint32_t be;
            moa_ggml_type_info(t, &be, NULL);
            for (int si = 0; si < 2; si++) {
                const int64_t n_out = shapes[si][0], n_in = shapes[si][1], nv = 5, nb = n_in / 32;
                if (n_in % be) continue;
                q8_case qc = q8_case_new(t, n_out, n_in, nv, 0);
                const uint8_t *w = qc.w;
                float *x = qc.x, *y0 = qc.y0, *y1 = qc.y1;
                uint8_t *planted = calloc((size_t)(nv * nb), 1), *got_fl = malloc((size_t)(nv * nb));
                for (int mode = 0; mode < 3; mode++) {
                    for (int64_t i = 0; i < nv * n_in; i++) x[i] = urand(-1, 1);
                    memset(planted, 0, (size_t)(nv * nb));
                    for (int64_t v = 0; mode && v < nv; v++)
                        for (int64_t w0 = 0; w0 < n_in; w0 += mode == 1 ? 512 : 32) {   /* sparse: every other window */
                            const int64_t span = mode == 1 ? (n_in - w0 < 256 ? n_in - w0 : 256) : 32;
                            const int64_t i = w0 + (int64_t)(rnd() % (uint32_t)span);
                            x[v * n_in + i] = 40.0f;
                            planted[v * nb + i / 32] = 1;
                        }
                    const int64_t nflag = moa_q8_outlier_blocks(x, n_in, nv, 32, got_fl);
                    if (mode == 2) CHECK_EQ_INT(nflag, -1);
                    else CHECK_MSG(memcmp(got_fl, planted, (size_t)(nv * nb)) == 0, "%s %lld: outlier blocks flagged "
                                   "differ from the planted ones", moa_ggml_type_name(t), (long long)n_in);
                    moa_matmul_q_ref(t, w, n_out, n_in, x, nv, y0);
                    unsigned long long c0, f0, m0, c1, f1, m1;
                    moa_matmul_q_q8act_stats(&c0, &f0);
                    moa_matmul_q_q8act_mixed(&m0);
                    set_path(path, t);
                    CHECK_MSG(strcmp(moa_matmul_q_path(t), PATH_NAME[path]) == 0, "%s: path %s reported as %s",
                              moa_ggml_type_name(t), PATH_NAME[path], moa_matmul_q_path(t));
                    for (int64_t i = 0; i < nv * n_out; i++) y1[i] = NAN;
                    moa_matmul_q(t, w, n_out, n_in, x, nv, y1);
                    reset_path();
                    moa_matmul_q_q8act_stats(&c1, &f1);
                    moa_matmul_q_q8act_mixed(&m1);
                    CHECK_EQ_INT(c1 - c0, 1);
                    CHECK_EQ_INT(f1 - f0, mode == 2 ? 1 : 0);
                    CHECK_EQ_INT(m1 - m0, mode == 1 ? 1 : 0);
                    double rel = 0, of_bound = 0, emu = 0;
                    int control_failed = 0;
                    for (int64_t o = 0; o < n_out; o++) {
                        float *wr = qc.wr + o * n_in;
                        for (int64_t v = 0; v < nv; v++) {
                            const float *xv = x + v * n_in;
                            const uint8_t *fl = mode == 1 ? planted + v * nb : NULL;
                            double bound = 0, wx = 0;
                            for (int64_t b = 0; b < nb; b++) {
                                double amax = 0, sw = 0;
                                for (int64_t i = b * 32; i < (b + 1) * 32; i++) {
                                    amax = fmax(amax, fabs(xv[i]));
                                    sw += fabs(wr[i]);
                                    wx += fabs((double)wr[i] * xv[i]);
                                }
                                if (!fl || !fl[b]) bound += amax / 127 / 2 * sw;
                            }
                            bound += 2e-6 * wx;
                            const double got = y1[v * n_out + o], e = fabs(got - y0[v * n_out + o]);
                            rel = fmax(rel, e / wx);
                            of_bound = fmax(of_bound, e / bound);
                            if (mode == 2) continue;
                            double ye, sc;
                            q8_emulate(t, wr, xv, n_in, fl, &ye, &sc);
                            emu = fmax(emu, fabs(got - ye) / (sc + 1e-30));
                            if (v == 0) {   /* control: one value moved by 1% of the row's max |W| */
                                int64_t im = 0;
                                float wmax = 0;
                                for (int64_t i = 0; i < n_in; i++) {
                                    if (fabsf(xv[i]) > fabsf(xv[im])) im = i;
                                    wmax = fmaxf(wmax, fabsf(wr[i]));
                                }
                                const float keep = wr[im];
                                wr[im] += 0.01f * wmax;
                                q8_emulate(t, wr, xv, n_in, fl, &ye, &sc);
                                wr[im] = keep;
                                const double c = fabs(got - ye) / (4e-6 * (sc + 1e-30));
                                if (c > 1) control_failed++;
                                weakest_control = fmin(weakest_control, c);
                            }
                        }
                    }
                    CHECK_MSG(of_bound <= 1, "%s %s %lldx%lld%s: error exceeds the activation-rounding bound (x%.3g)",
                              PATH_NAME[path], moa_ggml_type_name(t), (long long)n_out, (long long)n_in, MODE[mode],
                              of_bound);
                    if (mode == 2) {
                        CHECK_MSG(rel <= 2e-6, "%s %s%s: %g (the f32 fallback?)", PATH_NAME[path],
                                  moa_ggml_type_name(t), MODE[mode], rel);
                    } else {
                        CHECK_MSG(rel <= 1e-2, "%s %s%s: %g of |w|.|x|", PATH_NAME[path], moa_ggml_type_name(t),
                                  MODE[mode], rel);
                        CHECK_MSG(rel > 1e-5, "%s %s%s: error %g is f32-like: activations not quantised?",
                                  PATH_NAME[path], moa_ggml_type_name(t), MODE[mode], rel);
                        CHECK_MSG(emu <= 4e-6, "%s %s %lldx%lld%s: |y - emulation| / scale = %.3g", PATH_NAME[path],
                                  moa_ggml_type_name(t), (long long)n_out, (long long)n_in, MODE[mode], emu);
                        CHECK_MSG(control_failed * 10 >= n_out * 9, "%s %s%s: control detected at %d of %lld rows",
                                  PATH_NAME[path], moa_ggml_type_name(t), MODE[mode], control_failed, (long long)n_out);
                        worst_rel = fmax(worst_rel, rel);
                        worst_emu = fmax(worst_emu, emu);
                    }
                    worst_bound = fmax(worst_bound, of_bound);
                    runs++;
                }
                q8_case_free(&qc);
                free(planted); free(got_fl);
            }
        }
        if (runs)
            fprintf(stderr, "  %-14s %2d runs: worst |err| / |w|.|x| %.3g, |err| / bound %.3g, |y - emulation| / scale "
                    "%.3g; control error / tolerance >= %.3g\n", PATH_NAME[path], runs, worst_rel, worst_bound,
                    worst_emu, weakest_control);
        n_runs += runs;
    }
    CHECK(n_runs >= 3 * 13);   /* at least the AVX2 variant: 8 types, 5 of them at two shapes, x 3 modes */
}

/* moa_matmul_q_multi: several matrices of different types (32- and 256-value blocks, and F16,
 * which has no int8 path) on the same activations, with and without outliers, on every path:
 * bit-identical to one moa_matmul_q per matrix (same kernels, same quantisation). */
TEST(matmul_multi_equals_single) {
    const moa_ggml_type types[] = {MOA_GGML_Q5_0, MOA_GGML_Q8_0, MOA_GGML_Q4_K, MOA_GGML_Q4_1, MOA_GGML_Q6_K, MOA_GGML_F16};
    const int64_t n_outs[] = {37, 16, 50, 3, 129, 20}, n_in = 1536, nv = 3;
    enum { NJ = 6 };
    uint8_t *w[NJ];
    float *y1[NJ], *y2[NJ];
    float *x = malloc(sizeof(float) * (size_t)(nv * n_in));
    for (int k = 0; k < NJ; k++) {
        w[k] = random_weights(types[k], n_outs[k], n_in);
        y1[k] = malloc(sizeof(float) * (size_t)(nv * n_outs[k]));
        y2[k] = malloc(sizeof(float) * (size_t)(nv * n_outs[k]));
    }
    int checked = 0;
    for (int path = 0; path < N_PATHS; path++)
        for (int outl = 0; outl < 2; outl++)
            for (int nj = 1; nj <= NJ; nj += 2) {   /* 1, 3 (all int8-capable), 5 (+Q6_K)... and 6 with F16 */
                const int n = nj == 5 ? 6 : nj;
                if (!set_path(path, MOA_GGML_Q5_0)) continue;
                for (int64_t i = 0; i < nv * n_in; i++) x[i] = urand(-1, 1);
                if (outl) x[n_in + 700] = 50.0f;
                moa_matmul_q_job jobs[NJ];
                for (int k = 0; k < n; k++) {
                    jobs[k] = (moa_matmul_q_job){types[k], w[k], n_outs[k], y2[k]};
                    moa_matmul_q(types[k], w[k], n_outs[k], n_in, x, nv, y1[k]);
                    for (int64_t i = 0; i < nv * n_outs[k]; i++) y2[k][i] = NAN;
                }
                moa_matmul_q_multi(jobs, n, n_in, x, nv);
                for (int k = 0; k < n; k++)
                    CHECK_MSG(memcmp(y1[k], y2[k], sizeof(float) * (size_t)(nv * n_outs[k])) == 0,
                              "%s: multi (%d jobs%s) job %d (%s) differs from moa_matmul_q", PATH_NAME[path], n,
                              outl ? ", outlier" : "", k, moa_ggml_type_name(types[k]));
                checked++;
            }
    reset_path();
    CHECK(checked >= 2 * 3 * 3);
    /* the batched twin, 21 tokens (int8 GEMM on AVX512-VNNI; with F16: per-job products) */
    const int64_t nt = 21;
    float *xb = malloc(sizeof(float) * (size_t)(nt * n_in));
    for (int k = 0; k < NJ; k++) {
        free(y1[k]); free(y2[k]);
        y1[k] = malloc(sizeof(float) * (size_t)(nt * n_outs[k]));
        y2[k] = malloc(sizeof(float) * (size_t)(nt * n_outs[k]));
    }
    for (int64_t i = 0; i < nt * n_in; i++) xb[i] = urand(-1, 1);
    xb[5 * n_in + 300] = 60.0f;
    for (int n = 3; n <= NJ; n += 3) {
        moa_matmul_q_job jobs[NJ];
        for (int k = 0; k < n; k++) {
            jobs[k] = (moa_matmul_q_job){types[k], w[k], n_outs[k], y2[k]};
            moa_matmul_q_batch(types[k], w[k], n_outs[k], n_in, xb, nt, y1[k]);
            for (int64_t i = 0; i < nt * n_outs[k]; i++) y2[k][i] = NAN;
        }
        moa_matmul_q_batch_multi(jobs, n, n_in, xb, nt);
        for (int k = 0; k < n; k++)
            CHECK_MSG(memcmp(y1[k], y2[k], sizeof(float) * (size_t)(nt * n_outs[k])) == 0,
                      "batch multi (%d jobs) job %d (%s) differs from moa_matmul_q_batch", n, k, moa_ggml_type_name(types[k]));
    }
    free(xb);
    for (int k = 0; k < NJ; k++) { free(w[k]); free(y1[k]); free(y2[k]); }
    free(x);
}

/* moa_matmul_q_batch on its int8 path (AVX512-VNNI), every q8 type, odd shapes (rows not a
 * multiple of the 16-row group, tokens not a multiple of the 16-token tile): activations per
 * token and 32 values (K-quants too) after each token's outliers are taken out and multiplied
 * in f32. Per output (token t, row o): the activation-rounding bound sum_b (dx_b/2)
 * sum_{i in b, not outliers} |W[o][i]| + 2e-6 sum_i |W x|, > 1e-5 of sum_i |W x| (quantised);
 * an exact emulation (activations quantised in C as the kernel does, products in double,
 * outliers exact): |y - y_emu| <= 4e-6 sum_i |W[o][i] x~_i|; its control (one weight per row
 * moved by 1% of the row's max |W| at the token's largest |x|) must fail at >= 90% of the
 * rows; planted outliers found exactly (moa_q8_outlier_values); a token with more outliers
 * than the path takes (42 > 32): the call is declined and the sgemm path gives f32 accuracy. */
static void gemm_emulate(const float *wr, const float *x, int64_t n, const int32_t *oi, int64_t no, double *y_emu,
                         double *scale) {
    float xs[4096];
    memcpy(xs, x, sizeof(float) * (size_t)n);
    for (int64_t k = 0; k < no; k++) xs[oi[k]] = 0;
    double y = 0, sc = 0;
    for (int64_t b0 = 0; b0 < n; b0 += 32) {
        float amax = 0;
        for (int64_t i = b0; i < b0 + 32; i++) amax = fmaxf(amax, fabsf(xs[i]));
        const float id = amax > 0 ? 127.0f / amax : 0.0f, dx = amax / 127.0f;
        for (int64_t i = b0; i < b0 + 32; i++) {
            const double term = (double)wr[i] * (double)dx * (double)lrintf(xs[i] * id);
            y += term;
            sc += fabs(term);
        }
    }
    for (int64_t k = 0; k < no; k++) { y += (double)wr[oi[k]] * x[oi[k]]; sc += fabs((double)wr[oi[k]] * x[oi[k]]); }
    *y_emu = y;
    *scale = sc;
}

TEST(matmul_batch_q8) {
    if (!moa_cpu_has_avx512_vnni()) { fprintf(stderr, "  (no AVX512-VNNI: skipped)\n"); return; }
    const moa_ggml_type types[] = {MOA_GGML_Q4_0, MOA_GGML_Q4_1, MOA_GGML_Q5_0, MOA_GGML_Q5_1, MOA_GGML_Q8_0,
                                   MOA_GGML_Q4_K, MOA_GGML_Q5_K, MOA_GGML_Q6_K};
    const int64_t shapes[3][3] = {{37, 800, 21}, {70, 1536, 40}, {5, 512, 8}};   /* n_out, n_in, tokens */
    double worst_rel = 0, worst_bound = 0, worst_emu = 0, weakest_control = INFINITY;
    int runs = 0;
    for (size_t ti = 0; ti < sizeof types / sizeof types[0]; ti++) {
        const moa_ggml_type t = types[ti];
        uint32_t be;
        moa_ggml_type_info(t, &be, NULL);
        CHECK_MSG(strcmp(moa_matmul_q_batch_path(t), "avx512-vnni-q8") == 0, "%s: batch path %s", moa_ggml_type_name(t),
                  moa_matmul_q_batch_path(t));
        for (int si = 0; si < 3; si++) {
            const int64_t n_out = shapes[si][0], n_in = shapes[si][1], n = shapes[si][2];
            if (n_in % be) continue;
            q8_case qc = q8_case_new(t, n_out, n_in, n, 0);
            const uint8_t *w = qc.w;
            float *x = qc.x, *wr = qc.wr, *y0 = qc.y0, *y1 = qc.y1;
            int32_t *oi = qc.oi;
            int64_t *no = qc.no;
            for (int mode = 0; mode < (n_in >= 1536 ? 3 : 2); mode++) {
                /* 0 plain, 1 outliers in half of the tokens, 2 one token with 7 per window (42 > 32) */
                for (int64_t i = 0; i < n * n_in; i++) x[i] = urand(-1, 1);
                for (int64_t tk = 0; tk < n; tk++) {
                    int64_t c = 0;
                    if ((mode == 1 && tk % 2) || (mode == 2 && tk == n / 2))
                        for (int64_t w0 = 0; w0 < n_in; w0 += 256) {   /* sorted, one per window */
                            const int reps = mode == 2 ? 7 : (w0 % 512 == 0);   /* 7: mean |x| ~ 1.6, still flagged */
                            for (int r = 0; r < reps && w0 + 8 * r < n_in; r++) {
                                const int64_t i = w0 + 8 * r + (int64_t)(rnd() % 8);
                                if (i >= n_in) continue;
                                x[tk * n_in + i] = r % 2 ? -40.0f : 40.0f;
                                oi[tk * 64 + c++] = (int32_t)i;
                            }
                        }
                    no[tk] = c;
                    if (mode < 2 || tk != n / 2) {
                        int32_t got[64];
                        const int64_t gc = moa_q8_outlier_values(x + tk * n_in, n_in, got, 32);
                        CHECK_MSG(gc == c && (c == 0 || memcmp(got, oi + tk * 64, sizeof(int32_t) * (size_t)c) == 0),
                                  "%s token %lld: %lld outliers found, %lld planted", moa_ggml_type_name(t),
                                  (long long)tk, (long long)gc, (long long)c);
                    }
                }
                moa_matmul_q_ref(t, w, n_out, n_in, x, n, y0);
                unsigned long long c0, d0, c1, d1;
                moa_matmul_q_batch_q8_stats(&c0, &d0);
                for (int64_t i = 0; i < n * n_out; i++) y1[i] = NAN;
                moa_matmul_q_batch(t, w, n_out, n_in, x, n, y1);
                moa_matmul_q_batch_q8_stats(&c1, &d1);
                CHECK_EQ_INT(c1 - c0, 1);
                CHECK_EQ_INT(d1 - d0, mode == 2 ? 1 : 0);
                double rel = 0, of_bound = 0, emu = 0;
                int control_failed = 0;
                for (int64_t tk = 0; tk < n; tk++) {
                    const float *xv = x + tk * n_in;
                    for (int64_t o = 0; o < n_out; o++) {
                        const float *wo = wr + o * n_in;
                        double bound = 0, wx = 0;
                        for (int64_t b0 = 0; b0 < n_in; b0 += 32) {
                            double amax = 0, sw = 0;
                            for (int64_t i = b0; i < b0 + 32; i++) {
                                int outl = 0;
                                for (int64_t k = 0; k < no[tk]; k++) outl |= oi[tk * 64 + k] == (int32_t)i;
                                wx += fabs((double)wo[i] * xv[i]);
                                if (outl) continue;
                                amax = fmax(amax, fabs(xv[i]));
                                sw += fabs(wo[i]);
                            }
                            bound += amax / 127 / 2 * sw;
                        }
                        bound += 2e-6 * wx;
                        const double got = y1[tk * n_out + o], e = fabs(got - y0[tk * n_out + o]);
                        rel = fmax(rel, e / wx);
                        of_bound = fmax(of_bound, e / bound);
                        if (mode == 2) continue;
                        double ye, sc;
                        gemm_emulate(wo, xv, n_in, oi + tk * 64, no[tk], &ye, &sc);
                        emu = fmax(emu, fabs(got - ye) / (sc + 1e-30));
                        if (tk == 0) {
                            int64_t im = 0;
                            float wmax = 0;
                            for (int64_t i = 0; i < n_in; i++) {
                                if (fabsf(xv[i]) > fabsf(xv[im])) im = i;
                                wmax = fmaxf(wmax, fabsf(wo[i]));
                            }
                            float *wm = wr + o * n_in;
                            const float keep = wm[im];
                            wm[im] += 0.01f * wmax;
                            gemm_emulate(wm, xv, n_in, oi, no[0], &ye, &sc);
                            wm[im] = keep;
                            const double c = fabs(got - ye) / (4e-6 * (sc + 1e-30));
                            if (c > 1) control_failed++;
                            weakest_control = fmin(weakest_control, c);
                        }
                    }
                }
                const char *tn = moa_ggml_type_name(t);
                if (mode == 2) {
                    CHECK_MSG(rel <= 5e-6, "batch %s (declined): %g", tn, rel);
                } else {
                    CHECK_MSG(of_bound <= 1, "batch %s %lldx%lld n %lld mode %d: error exceeds the bound (x%.3g)", tn,
                              (long long)n_out, (long long)n_in, (long long)n, mode, of_bound);
                    CHECK_MSG(rel <= 1e-2 && rel > 1e-5, "batch %s mode %d: |err| / |w|.|x| = %g", tn, mode, rel);
                    CHECK_MSG(emu <= 4e-6, "batch %s %lldx%lld n %lld mode %d: |y - emulation| / scale = %.3g", tn,
                              (long long)n_out, (long long)n_in, (long long)n, mode, emu);
                    CHECK_MSG(control_failed * 10 >= n_out * 9, "batch %s mode %d: control detected at %d of %lld rows",
                              tn, mode, control_failed, (long long)n_out);
                    worst_rel = fmax(worst_rel, rel);
                    worst_bound = fmax(worst_bound, of_bound);
                    worst_emu = fmax(worst_emu, emu);
                }
                runs++;
            }
            q8_case_free(&qc);
        }
    }
    fprintf(stderr, "  batch avx512-vnni-q8 %d runs: worst |err| / |w|.|x| %.3g, |err| / bound %.3g, |y - emulation| / "
            "scale %.3g; control error / tolerance >= %.3g\n", runs, worst_rel, worst_bound, worst_emu, weakest_control);
    CHECK(runs >= 8 * 2 * 2 + 8);
}

/* moa_qpack (AVX512-VNNI + BITALG): the packed products for decode-sized (1..5 vectors) and
 * batched calls, every packable type (the K-quants too), odd shapes (rows not a multiple of
 * the 16-row group, 25 blocks), against the same checks as matmul_batch_q8: the activation-rounding bound,
 * the exact emulation (<= 4e-6 of sum |W x~|) and its control, planted outliers, and a token
 * with 42 outliers (> 32: the call goes to the unpacked paths, which then must give their own
 * result bit for bit). Two packs in one call equal two calls. */
TEST(qpack_products) {
    int supported;
    {
        uint8_t *w = random_weights(MOA_GGML_Q4_0, 16, 64);
        moa_qpack *probe = moa_qpack_create(MOA_GGML_Q4_0, w, 16, 64);
        supported = probe != NULL;
        moa_qpack_free(probe);
        free(w);
    }
    if (!supported) { fprintf(stderr, "  (no AVX512-VNNI + BITALG: packs unsupported, skipped)\n"); return; }
    const moa_ggml_type types[] = {MOA_GGML_Q4_0, MOA_GGML_Q4_1, MOA_GGML_Q5_0, MOA_GGML_Q5_1, MOA_GGML_Q8_0,
                                   MOA_GGML_Q4_K, MOA_GGML_Q5_K, MOA_GGML_Q6_K};
    const int64_t shapes[3][2] = {{37, 800}, {70, 1536}, {5, 256}};
    const int64_t ns[] = {1, 2, 3, 5, 21};
    double worst_emu = 0, worst_bound = 0, weakest_control = INFINITY;
    int runs = 0;
    for (size_t ti = 0; ti < sizeof types / sizeof types[0]; ti++)
        for (int si = 0; si < 3; si++) {
            const moa_ggml_type t = types[ti];
            const int64_t n_out = shapes[si][0], n_in = shapes[si][1];
            uint32_t be, bb;
            moa_ggml_type_info(t, &be, &bb);
            if (n_in % be) continue;
            q8_case qc = q8_case_new(t, n_out, n_in, ns[sizeof ns / sizeof ns[0] - 1], 1);   /* ns ascending */
            const uint8_t *w = qc.w;
            const moa_qpack *pk = qc.pk;
            float *wr = qc.wr;
            CHECK_MSG(pk != NULL, "%s: no pack", moa_ggml_type_name(t));
            if (!pk) { q8_case_free(&qc); continue; }
            CHECK(moa_qpack_bytes(pk) >= moa_ggml_row_bytes(t, n_in) * (size_t)n_out);
            /* the GGUF bytes of 16-row groups (Q4_K/Q5_K: + 16 bytes a row and super-block, unpacked scales) */
            CHECK_EQ_INT(moa_qpack_bytes(pk), (moa_ggml_row_bytes(t, n_in) + (t == MOA_GGML_Q4_K || t == MOA_GGML_Q5_K
                                               ? (size_t)(n_in / 256) * 4 : 0)) * (size_t)((n_out + 15) / 16 * 16));
            for (size_t ni = 0; ni < sizeof ns / sizeof ns[0]; ni++)
                for (int mode = 0; mode < 3; mode++) {   /* plain, sparse outliers, 42 outliers in one token */
                    const int64_t n = ns[ni];
                    if (mode == 2 && (n_in < 1536 || n != 5)) continue;
                    float *x = qc.x, *y0 = qc.y0, *y1 = qc.y1;
                    int32_t *oi = qc.oi;
                    int64_t *no = qc.no;
                    memset(no, 0, sizeof(int64_t) * (size_t)n);
                    for (int64_t i = 0; i < n * n_in; i++) x[i] = urand(-1, 1);
                    for (int64_t tk = 0; tk < n && mode; tk++) {
                        if (mode == 1 && tk % 2 == 0 && n > 1) continue;
                        if (mode == 2 && tk != 2) continue;
                        for (int64_t w0 = 0; w0 + 256 <= n_in || (w0 == 0 && n_in < 256); w0 += mode == 1 ? 512 : 256) {
                            const int reps = mode == 2 ? 7 : 1;
                            for (int r = 0; r < reps; r++) {
                                const int64_t span = n_in < 256 ? n_in : 32;
                                const int64_t i = w0 + 32 * r + (int64_t)(rnd() % (uint32_t)span);
                                if (i >= n_in) continue;
                                x[tk * n_in + i] = r % 2 ? -40.0f : 40.0f;
                                oi[tk * 64 + no[tk]++] = (int32_t)i;
                            }
                            if (n_in < 256) break;
                        }
                    }
                    float *ys[1] = {y1};
                    const moa_qpack *pks[1] = {pk};
                    for (int64_t i = 0; i < n * n_out; i++) y1[i] = NAN;
                    moa_matmul_qpack(pks, ys, 1, x, n);
                    if (mode == 2) {   /* declined: the unpacked path's own result */
                        if (n >= MOA_MATMUL_Q_BATCH_MIN) moa_matmul_q_batch(t, w, n_out, n_in, x, n, y0);
                        else moa_matmul_q(t, w, n_out, n_in, x, n, y0);
                        CHECK_MSG(memcmp(y0, y1, sizeof(float) * (size_t)(n * n_out)) == 0,
                                  "qpack %s (declined) differs from the unpacked path", moa_ggml_type_name(t));
                        runs++;
                        continue;
                    }
                    double emu = 0, of_bound = 0;
                    int control_failed = 0;
                    for (int64_t tk = 0; tk < n; tk++) {
                        const float *xv = x + tk * n_in;
                        for (int64_t o = 0; o < n_out; o++) {
                            float *wo = wr + o * n_in;
                            double ye, sc, bound = 0, wx = 0;
                            gemm_emulate(wo, xv, n_in, oi + tk * 64, no[tk], &ye, &sc);
                            const double got = y1[tk * n_out + o];
                            emu = fmax(emu, fabs(got - ye) / (sc + 1e-30));
                            double yr = 0;
                            for (int64_t b0 = 0; b0 < n_in; b0 += 32) {
                                double amax = 0, sw = 0;
                                for (int64_t i = b0; i < b0 + 32; i++) {
                                    int outl = 0;
                                    for (int64_t k = 0; k < no[tk]; k++) outl |= oi[tk * 64 + k] == (int32_t)i;
                                    yr += (double)wo[i] * xv[i];
                                    wx += fabs((double)wo[i] * xv[i]);
                                    if (outl) continue;
                                    amax = fmax(amax, fabs(xv[i]));
                                    sw += fabs(wo[i]);
                                }
                                bound += amax / 127 / 2 * sw;
                            }
                            of_bound = fmax(of_bound, fabs(got - yr) / (bound + 2e-6 * wx));
                            if (tk == 0) {
                                int64_t im = 0;
                                float wmax = 0;
                                for (int64_t i = 0; i < n_in; i++) {
                                    if (fabsf(xv[i]) > fabsf(xv[im])) im = i;
                                    wmax = fmaxf(wmax, fabsf(wo[i]));
                                }
                                const float keep = wo[im];
                                wo[im] += 0.01f * wmax;
                                gemm_emulate(wo, xv, n_in, oi, no[0], &ye, &sc);
                                wo[im] = keep;
                                const double c = fabs(got - ye) / (4e-6 * (sc + 1e-30));
                                if (c > 1) control_failed++;
                                weakest_control = fmin(weakest_control, c);
                            }
                        }
                    }
                    CHECK_MSG(emu <= 4e-6, "qpack %s %lldx%lld n %lld mode %d: |y - emulation| / scale = %.3g",
                              moa_ggml_type_name(t), (long long)n_out, (long long)n_in, (long long)n, mode, emu);
                    CHECK_MSG(of_bound <= 1, "qpack %s %lldx%lld n %lld mode %d: error exceeds the bound (x%.3g)",
                              moa_ggml_type_name(t), (long long)n_out, (long long)n_in, (long long)n, mode, of_bound);
                    CHECK_MSG(control_failed * 10 >= n_out * 9, "qpack %s: control detected at %d of %lld rows",
                              moa_ggml_type_name(t), control_failed, (long long)n_out);
                    worst_emu = fmax(worst_emu, emu);
                    worst_bound = fmax(worst_bound, of_bound);
                    runs++;
                }
            q8_case_free(&qc);
        }
    /* two packs (different types) in one call equal two calls */
    {
        const int64_t n_in = 896, n = 3, no0 = 40, no1 = 19;
        uint8_t *w0 = random_weights(MOA_GGML_Q5_0, no0, n_in), *w1 = random_weights(MOA_GGML_Q8_0, no1, n_in);
        moa_qpack *p0 = moa_qpack_create(MOA_GGML_Q5_0, w0, no0, n_in), *p1 = moa_qpack_create(MOA_GGML_Q8_0, w1, no1, n_in);
        float *x = malloc(sizeof(float) * (size_t)(n * n_in));
        float *a0 = malloc(sizeof(float) * (size_t)(n * no0)), *a1 = malloc(sizeof(float) * (size_t)(n * no1));
        float *b0 = malloc(sizeof(float) * (size_t)(n * no0)), *b1 = malloc(sizeof(float) * (size_t)(n * no1));
        for (int64_t i = 0; i < n * n_in; i++) x[i] = urand(-1, 1);
        x[n_in + 100] = 30.0f;
        const moa_qpack *both[2] = {p0, p1}, *one0[1] = {p0}, *one1[1] = {p1};
        float *yb[2] = {b0, b1}, *ya0[1] = {a0}, *ya1[1] = {a1};
        moa_matmul_qpack(both, yb, 2, x, n);
        moa_matmul_qpack(one0, ya0, 1, x, n);
        moa_matmul_qpack(one1, ya1, 1, x, n);
        CHECK(memcmp(a0, b0, sizeof(float) * (size_t)(n * no0)) == 0);
        CHECK(memcmp(a1, b1, sizeof(float) * (size_t)(n * no1)) == 0);
        moa_qpack_free(p0); moa_qpack_free(p1);
        free(w0); free(w1); free(x); free(a0); free(a1); free(b0); free(b1);
    }
    fprintf(stderr, "  qpack %d runs: |y - emulation| / scale %.3g, |err| / bound %.3g; control error / tolerance >= "
            "%.3g\n", runs, worst_emu, worst_bound, weakest_control);
    CHECK(runs >= 5 * 3 * 5 + 3 * 5 * 2);
}

TEST(matmul_batch_vs_reference)

 {
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
            for (int path = 0; path < PATH_Q8_FIRST; path++) {
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
    RUN(matmul_q8_paths);
    RUN(matmul_multi_equals_single);
    RUN(matmul_batch_q8);
    RUN(qpack_products);
    RUN(matmul_batch_vs_reference);
    return test_summary();
}
