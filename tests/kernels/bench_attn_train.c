/* bench_attn_train.c - micro-benchmark of the profiler attention kernels (attn-train.h):
 * forward with LSE and fused backward with influence, 9 query heads / 3 KV heads / hd 64
 * (SmolLM2-135M's attention), one causal sequence of n tokens.
 *
 *   bench_attn_train [--repeats R] [--lengths 1024,2048,...] [--no-peak]
 *                    [--isa generic|avx2|avx512]          threads: OMP_NUM_THREADS
 *
 * FLOP count (causal, the FlashAttention-2 convention; the diagonal tiles' masked half and the
 * elementwise work are not counted):
 *   forward  = 2 products (S = QK^T, O = PV) x 2 n^2 hd / 2 per head = 2 n^2 hd n_head
 *   backward = 5 products (S, dP = dO V^T, dQ, dK, dV)              = 5 n^2 hd n_head
 * One warm-up run per length is excluded; mean and sample stddev over the repeats, and the
 * best repeat (least disturbed by other processes on a shared machine), and FLOPs per second of
 * process CPU time (all threads; robust to sharing the cores, includes OpenMP spin-waiting)
 * next to the same figure for sgemm: their ratio is the kernels' efficiency per busy core. The sgemm
 * line is OpenBLAS on 2048^3 with the same threads: the machine's practical peak.
 * Markdown table on stdout, progress on stderr. */
#include "moa/attn-train.h"

#include <cblas.h>
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + 1e-9 * ts.tv_nsec;
}

static double cpu_now(void) {   /* CPU time of the whole process (all threads) */
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return ts.tv_sec + 1e-9 * ts.tv_nsec;
}

static float *rnd(size_t n, float amp, unsigned *seed) {
    float *a = malloc(n * sizeof(float));
    if (!a) { fprintf(stderr, "out of memory\n"); exit(1); }
    for (size_t k = 0; k < n; k++) {
        *seed = *seed * 1664525u + 1013904223u;
        a[k] = amp * ((float)(*seed >> 8) / 8388608.0f - 1.0f);
    }
    return a;
}

static void stats(const double *x, int n, double *mean, double *sd) {
    double m = 0, v = 0;
    for (int k = 0; k < n; k++) m += x[k];
    m /= n;
    for (int k = 0; k < n; k++) v += (x[k] - m) * (x[k] - m);
    *mean = m;
    *sd = n > 1 ? sqrt(v / (n - 1)) : 0;
}

static double sgemm_peak(int reps, double *per_cpu) {
    const int N = 2048;
    unsigned seed = 7;
    float *A = rnd((size_t)N * N, 1, &seed), *B = rnd((size_t)N * N, 1, &seed);
    float *C = calloc((size_t)N * N, sizeof(float));
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, N, N, N, 1, A, N, B, N, 0, C, N);
    double best = 0, bc = 0;
    for (int r = 0; r < reps; r++) {
        const double t0 = now(), c0 = cpu_now();
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, N, N, N, 1, A, N, B, N, 0, C, N);
        const double g = 2.0 * N * N * (double)N / (now() - t0) / 1e9;
        const double gc = 2.0 * N * N * (double)N / (cpu_now() - c0) / 1e9;
        if (g > best) best = g;
        if (gc > bc) bc = gc;
    }
    *per_cpu = bc;
    free(A); free(B); free(C);
    return best;
}

int main(int argc, char **argv) {
    int repeats = 5, lengths[16] = { 1024, 2048, 4096, 8192 }, n_len = 4, peak = 1;
    for (int a = 1; a < argc; a++) {
        if (!strcmp(argv[a], "--repeats") && a + 1 < argc) repeats = atoi(argv[++a]);
        else if (!strcmp(argv[a], "--no-peak")) peak = 0;
        else if (!strcmp(argv[a], "--isa") && a + 1 < argc) {
            const char *v = argv[++a];
            moa_attn_train_set_isa(!strcmp(v, "generic") ? MOA_ATTN_TRAIN_ISA_GENERIC
                                   : !strcmp(v, "avx2") ? MOA_ATTN_TRAIN_ISA_AVX2
                                   : !strcmp(v, "avx512") ? MOA_ATTN_TRAIN_ISA_AVX512
                                   : MOA_ATTN_TRAIN_ISA_AUTO);
        }
        else if (!strcmp(argv[a], "--lengths") && a + 1 < argc) {
            n_len = 0;
            for (char *tok = strtok(argv[++a], ","); tok && n_len < 16; tok = strtok(NULL, ","))
                lengths[n_len++] = atoi(tok);
        } else {
            fprintf(stderr, "usage: %s [--repeats R] [--lengths a,b,...] [--no-peak] [--isa generic|avx2|avx512]\n", argv[0]);
            return 2;
        }
    }
    if (repeats < 1) repeats = 1;
    const int H = 9, U = 3, hd = 64;
    printf("threads %d, tile code %s, %d repeats (+1 warm-up), n_head %d n_kv %d hd %d\n",
           omp_get_max_threads(), moa_attn_train_isa_name(moa_attn_train_get_isa()), repeats,
           H, U, hd);
    FILE *la = fopen("/proc/loadavg", "r");
    char lbuf[64] = "?";
    if (la) { if (!fgets(lbuf, sizeof lbuf, la)) strcpy(lbuf, "?"); fclose(la); }
    printf("load average at start: %s", lbuf);
    if (peak) {
        double pc, g = sgemm_peak(5, &pc);
        printf("sgemm 2048^3 (OpenBLAS, best of 5): %.1f GFLOP/s wall, %.1f GFLOP per CPU-second\n", g, pc);
    }
    printf("\n");
    printf("| n | fwd ms | bwd+influence ms | fwd GFLOP/s | bwd GFLOP/s | fwd+bwd GFLOP/s | best fwd+bwd GFLOP/s | fwd+bwd GFLOP per CPU-s | tokens/s |\n");
    printf("|---|---|---|---|---|---|---|---|---|\n");
    for (int li = 0; li < n_len; li++) {
        const int n = lengths[li];
        moa_attn_train_shape s = moa_attn_train_default_shape(n, H, U, hd);
        const size_t nq = (size_t)n * H * hd, nk = (size_t)n * U * hd;
        const int nb = moa_attn_train_n_bins(&s);
        unsigned seed = 1234u + n;
        float *Q = rnd(nq, 2, &seed), *K = rnd(nk, 2, &seed), *V = rnd(nk, 1, &seed);
        float *dO = rnd(nq, 1, &seed);
        float *O = malloc(nq * 4), *L = malloc((size_t)n * H * 4), *dQ = malloc(nq * 4);
        float *dK = malloc(nk * 4), *dV = malloc(nk * 4);
        double *hist = calloc((size_t)H * nb * 2 + 2 * H, sizeof(double));
        moa_influence_acc acc = { hist, hist + (size_t)H * nb, hist + (size_t)H * nb * 2,
                                  hist + (size_t)H * nb * 2 + H, nb };
        double tf[64], tb[64], tt[64], tc[64];
        const int R = repeats < 64 ? repeats : 64;
        for (int r = -1; r < R; r++) {   /* r = -1: warm-up */
            const double c0 = cpu_now(), t0 = now();
            if (moa_attn_fwd_lse(&s, Q, K, V, O, L) < 0) return 1;
            const double t1 = now();
            if (moa_attn_bwd_influence(&s, Q, K, V, O, dO, L, dQ, dK, dV, &acc) < 0) return 1;
            const double t2 = now(), c2 = cpu_now();
            if (r >= 0) { tf[r] = t1 - t0; tb[r] = t2 - t1; tt[r] = t2 - t0; tc[r] = c2 - c0; }
            fprintf(stderr, "\rn=%d run %d/%d", n, r + 1, R);
        }
        fprintf(stderr, "\n");
        const double ff = 2.0 * n * (double)n * hd * H, fb = 5.0 * n * (double)n * hd * H;
        double gf[64], gb[64], gt[64], m, sd, mf, sf, mb, sb;
        for (int r = 0; r < R; r++) {
            gf[r] = ff / tf[r] / 1e9; gb[r] = fb / tb[r] / 1e9; gt[r] = (ff + fb) / tt[r] / 1e9;
        }
        stats(tf, R, &mf, &sf);
        stats(tb, R, &mb, &sb);
        printf("| %d | %.1f ± %.1f | %.1f ± %.1f |", n, 1e3 * mf, 1e3 * sf, 1e3 * mb, 1e3 * sb);
        stats(gf, R, &m, &sd); printf(" %.1f ± %.1f |", m, sd);
        stats(gb, R, &m, &sd); printf(" %.1f ± %.1f |", m, sd);
        stats(gt, R, &m, &sd); printf(" %.1f ± %.1f |", m, sd);
        double best = 0;
        for (int r = 0; r < R; r++) best = gt[r] > best ? gt[r] : best;
        printf(" %.1f |", best);
        double cpu = 0;
        for (int r = 0; r < R; r++) cpu += tc[r];
        printf(" %.1f |", (ff + fb) * R / cpu / 1e9);
        stats(tt, R, &m, &sd); printf(" %.0f |\n", n / m);
        fflush(stdout);
        free(Q); free(K); free(V); free(dO); free(O); free(L); free(dQ); free(dK); free(dV);
        free(hist);
    }
    return 0;
}
