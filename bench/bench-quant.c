/* bench-quant.c - speed of the quantised matrix products (moa/quant.h) on random
 * weights of the Qwen2.5 shapes, per type and path:
 *   decode: moa_matmul_q with n_vec = 1..4 on the reference (--slow), AVX2, AVX-512 (f32
 *           activations) and the int8-activation variants this CPU has (AVX512-VNNI,
 *           AVX-VNNI, AVX2 vpmaddubsw) for the types that have them, and moa_matmul_qpack
 *           on a packed copy (moa_qpack) where the CPU and type allow one;
 *   batch:  moa_matmul_q_batch with n tokens (default 512) on its sgemm path and (AVX512-VNNI)
 *           its int8 path, moa_matmul_q streaming the same batch (--slow), and cblas_sgemm on
 *           a full f32 copy of W (the BLAS baseline, once per shape).
 * GB/s = bytes of W (its ggml size) per second; GFLOP/s = 2 n_out n_in n_vec per second.
 * One warm-up call, then R timed repeats: mean, standard deviation and minimum (the best
 * run is the least disturbed one on a shared machine). Results on stdout
 * (markdown table rows), progress on stderr. */
#include "moa/quant.h"
#include "moa/common.h"

#include <cblas.h>
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static uint64_t rng = 0x2545f4914f6cdd1dull;
static uint32_t rnd(void) {
    rng ^= rng << 13; rng ^= rng >> 7; rng ^= rng << 17;
    return (uint32_t)(rng >> 16);
}
static float urand(float a, float b) { return a + (b - a) * (float)(rnd() & 0xffffff) / 16777216.0f; }
static void put16(uint8_t *p, uint16_t v) { p[0] = (uint8_t)v; p[1] = (uint8_t)(v >> 8); }

/* Random rows with finite f16 scales (same recipe as tests/kernels/test_quant_kernels.c). */
static uint8_t *random_weights(moa_ggml_type t, int64_t n_out, int64_t n_in) {
    size_t rb = moa_ggml_row_bytes(t, n_in), nb = rb * (size_t)n_out;
    uint8_t *w = malloc(nb);
    if (!w) return NULL;
    for (size_t i = 0; i < nb; i++) w[i] = (uint8_t)rnd();
    uint32_t be, bb;
    moa_ggml_type_info(t, &be, &bb);
    for (size_t b = 0; b < nb / bb; b++) {
        uint8_t *p = w + b * bb;
        float d = urand(0.002f, 0.05f);
        switch (t) {
        case MOA_GGML_F32: { float f = urand(-1, 1); memcpy(p, &f, 4); break; }
        case MOA_GGML_F16: put16(p, moa_f32_to_f16(urand(-1, 1))); break;
        case MOA_GGML_BF16: put16(p, moa_f32_to_bf16(urand(-1, 1))); break;
        case MOA_GGML_Q4_1: case MOA_GGML_Q5_1: put16(p + 2, moa_f32_to_f16(-0.05f)); /* fall through */
        case MOA_GGML_Q4_0: case MOA_GGML_Q5_0: case MOA_GGML_Q8_0: put16(p, moa_f32_to_f16(d)); break;
        case MOA_GGML_Q4_K: case MOA_GGML_Q5_K:
            put16(p, moa_f32_to_f16(d * 0.1f)); put16(p + 2, moa_f32_to_f16(0.002f)); break;
        case MOA_GGML_Q6_K: put16(p + 208, moa_f32_to_f16(d * 0.05f)); break;
        }
    }
    return w;
}

typedef struct { double mean, sd, min; } timing;

enum { K_MATMUL, K_BATCH, K_SGEMM, K_PACK };
static const moa_qpack *g_pack;   /* for K_PACK */
static timing run(int kind, moa_ggml_type t, const void *w, const float *wf, int64_t n_out, int64_t n_in,
                  const float *x, int64_t nv, float *y, int reps) {
    double s = 0, s2 = 0, mn = INFINITY;
    for (int r = -1; r < reps; r++) {
        double t0 = omp_get_wtime();
        if (kind == K_MATMUL) moa_matmul_q(t, w, n_out, n_in, x, nv, y);
        else if (kind == K_BATCH) moa_matmul_q_batch(t, w, n_out, n_in, x, nv, y);
        else if (kind == K_PACK) moa_matmul_qpack(&g_pack, &y, 1, x, nv);
        else cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)nv, (int)n_out, (int)n_in, 1.0f, x,
                         (int)n_in, wf, (int)n_in, 0.0f, y, (int)n_out);
        double dt = omp_get_wtime() - t0;
        if (r >= 0) { s += dt; s2 += dt * dt; mn = fmin(mn, dt); }
    }
    timing tm = {s / reps, 0, mn};
    tm.sd = reps > 1 ? sqrt(fmax(0, (s2 - s * s / reps) / (reps - 1))) : 0;
    return tm;
}

static void row_print(const char *type, const char *path, const char *what, int64_t n_out, int64_t n_in, int64_t nv,
                size_t wbytes, timing tm) {
    const double flop = 2.0 * (double)n_out * (double)n_in * (double)nv;
    printf("| %s | %s | %s | %lldx%lld | %lld | %.3f ± %.3f | %.3f | %.1f (%.1f) | %.1f (%.1f) |\n", type, path,
           what, (long long)n_out, (long long)n_in, (long long)nv, tm.mean * 1e3, tm.sd * 1e3, tm.min * 1e3,
           (double)wbytes / tm.mean * 1e-9, (double)wbytes / tm.min * 1e-9, flop / tm.mean * 1e-9,
           flop / tm.min * 1e-9);
    fflush(stdout);
}

static void usage(void) {
    fprintf(stderr,
        "usage: bench-quant [--types Q4_K,Q6_K,...] [--shapes OUTxIN,...] [--batch N] [--repeats R]\n"
        "                   [--no-batch] [--no-decode] [--slow]\n"
        "  defaults: all types the Qwen2.5 Q4_K_M files use plus Q5_K, F16, BF16, Q4_0, Q4_1;\n"
        "  shapes 8960x1536,4864x896 (n_out x n_in); batch 512; repeats 5;\n"
        "  --slow also times the reference path and moa_matmul_q on the whole batch.\n");
}

int main(int argc, char **argv) {
    const char *types_s = "Q4_K,Q5_K,Q6_K,Q5_0,Q8_0,F16,BF16,Q4_0,Q4_1";
    const char *shapes_s = "8960x1536,4864x896";
    int64_t nb = 512;
    int reps = 5, do_batch = 1, do_decode = 1, slow = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--types") && i + 1 < argc) types_s = argv[++i];
        else if (!strcmp(argv[i], "--shapes") && i + 1 < argc) shapes_s = argv[++i];
        else if (!strcmp(argv[i], "--batch") && i + 1 < argc) nb = atoll(argv[++i]);
        else if (!strcmp(argv[i], "--repeats") && i + 1 < argc) reps = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--no-batch")) do_batch = 0;
        else if (!strcmp(argv[i], "--no-decode")) do_decode = 0;
        else if (!strcmp(argv[i], "--slow")) slow = 1;
        else { usage(); return 2; }
    }
    if (reps < 1 || nb < 1) { usage(); return 2; }
    printf("# bench-quant: %d OpenMP threads, avx2 %d, avx512 %d, repeats %d (+1 warm-up)\n",
           omp_get_max_threads(), moa_cpu_has_avx2(), moa_cpu_has_avx512(), reps);
    printf("| type | path | kernel | n_out x n_in | n_vec | ms (mean ± sd) | ms min | GB/s of W mean (best) | GFLOP/s mean (best) |\n");
    printf("|---|---|---|---|---|---|---|---|---|\n");
    char shapes[256];
    snprintf(shapes, sizeof shapes, "%s", shapes_s);
    for (char *sp = strtok(shapes, ","); sp; sp = strtok(NULL, ",")) {
        long long n_out_ll, n_in_ll;
        if (sscanf(sp, "%lldx%lld", &n_out_ll, &n_in_ll) != 2) { usage(); return 2; }
        const int64_t n_out = n_out_ll, n_in = n_in_ll;
        char types[256];
        snprintf(types, sizeof types, "%s", types_s);
        char *save = NULL;
        float *x = malloc(sizeof(float) * (size_t)(nb > 4 ? nb : 4) * (size_t)n_in);
        float *y = malloc(sizeof(float) * (size_t)(nb > 4 ? nb : 4) * (size_t)n_out);
        if (!x || !y) { fprintf(stderr, "out of memory\n"); return 1; }
        for (int64_t i = 0; i < (nb > 4 ? nb : 4) * n_in; i++) x[i] = urand(-1, 1);
        int first_type = 1;
        for (char *tp = strtok_r(types, ",", &save); tp; tp = strtok_r(NULL, ",", &save), first_type = 0) {
            moa_ggml_type t = (moa_ggml_type)-1;
            const moa_ggml_type all[] = {MOA_GGML_F32, MOA_GGML_F16, MOA_GGML_BF16, MOA_GGML_Q4_0, MOA_GGML_Q4_1,
                                         MOA_GGML_Q5_0, MOA_GGML_Q5_1, MOA_GGML_Q8_0, MOA_GGML_Q4_K,
                                         MOA_GGML_Q5_K, MOA_GGML_Q6_K};
            for (size_t k = 0; k < sizeof all / sizeof all[0]; k++)
                if (!strcmp(tp, moa_ggml_type_name(all[k]))) t = all[k];
            uint32_t be;
            if (!moa_ggml_type_info(t, &be, NULL) || n_in % be) { fprintf(stderr, "skip %s for %s\n", tp, sp); continue; }
            uint8_t *w = random_weights(t, n_out, n_in);
            if (!w) { fprintf(stderr, "out of memory\n"); return 1; }
            const size_t wbytes = moa_ggml_row_bytes(t, n_in) * (size_t)n_out;
            fprintf(stderr, "%s %s\n", tp, sp);
            for (int path = 0; path < 6; path++) {   /* reference, avx2, avx512 (f32 act), the q8 variants */
                moa_cpu_force_reference(path == 0);
                moa_cpu_force_avx2(path == 1 || path == 4);
                moa_cpu_force_no_vnni(path == 5);
                moa_matmul_q_set_act(path >= 3 ? MOA_MATMUL_ACT_AUTO : MOA_MATMUL_ACT_F32);
                if ((path == 1 && !moa_cpu_has_avx2()) || (path == 2 && !moa_cpu_has_avx512())) continue;
                const char *pn = moa_matmul_q_path(t);
                static const char *q8n[] = {"avx512-vnni-q8", "avx-vnni-q8", "avx2-q8"};
                if (path >= 3 && strcmp(pn, q8n[path - 3]) != 0) continue;   /* not on this CPU / type */
                if (do_decode && (path > 0 || slow))
                    for (int64_t nv = 1; nv <= 4; nv++)
                        row_print(tp, pn, "matmul_q", n_out, n_in, nv, wbytes,
                            run(K_MATMUL, t, w, NULL, n_out, n_in, x, nv, y, path == 0 ? 1 : reps));
                if (do_batch && path > 0 && path < 4) {
                    if (path == 3) pn = moa_matmul_q_batch_path(t);
                    row_print(tp, pn, "matmul_q_batch", n_out, n_in, nb, wbytes,
                        run(K_BATCH, t, w, NULL, n_out, n_in, x, nb, y, reps));
                    if (slow)
                        row_print(tp, pn, "matmul_q (batch)", n_out, n_in, nb, wbytes,
                            run(K_MATMUL, t, w, NULL, n_out, n_in, x, nb, y, 1));
                }
            }
            moa_cpu_force_reference(0);
            moa_cpu_force_avx2(0);
            moa_cpu_force_no_vnni(0);
            moa_matmul_q_set_act(MOA_MATMUL_ACT_AUTO);
            moa_qpack *pk = moa_qpack_create(t, w, n_out, n_in);
            if (pk) {   /* the packed matrix (model loads pack their matrices) */
                g_pack = pk;
                if (do_decode)
                    for (int64_t nv = 1; nv <= 4; nv++)
                        row_print(tp, "qpack", "matmul_qpack", n_out, n_in, nv, wbytes,
                                  run(K_PACK, t, w, NULL, n_out, n_in, x, nv, y, reps));
                if (do_batch)
                    row_print(tp, "qpack", "matmul_qpack", n_out, n_in, nb, wbytes, run(K_PACK, t, w, NULL, n_out, n_in, x, nb, y, reps));
                moa_qpack_free(pk);
            }
            if (do_batch && first_type) {   /* BLAS baseline on an f32 copy, once per shape */
                float *wf = malloc(sizeof(float) * (size_t)(n_out * n_in));
                if (wf) {
                    size_t rb = moa_ggml_row_bytes(t, n_in);
                    for (int64_t o = 0; o < n_out; o++) moa_dequant_row(t, w + (size_t)o * rb, wf + o * n_in, n_in);
                    row_print("F32 copy", "openblas", "cblas_sgemm", n_out, n_in, nb, sizeof(float) * (size_t)(n_out * n_in),
                        run(K_SGEMM, t, NULL, wf, n_out, n_in, x, nb, y, reps));
                    free(wf);
                }
            }
            free(w);
        }
        free(x); free(y);
    }
    return 0;
}
