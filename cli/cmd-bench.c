/* cmd-bench.c - `moa bench prefill|decode`: throughput with warm-up excluded, mean and
 * standard deviation over repeats, as a markdown table or JSON. */
#include "cli.h"
#include "args.h"
#include "context.h"
#include "profiler.h"

#include <sys/resource.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif

static void usage(FILE *fp) {
    fprintf(fp,
        "usage: moa bench prefill|decode|profile -m MODEL [options]\n\n"
        "  prefill: forward over N tokens; decode: one token at a time after N in the cache;\n"
        "  profile: profiler forward + activation backward + influence over N tokens\n"
        "           (response = the last 64 tokens), with the FLOP rate and peak memory\n\n"
        "  -m, --model PATH     GGUF model (default: $MOA_MODEL)\n"
        "      --context LIST   context lengths, e.g. 512,1024,2048 (default 512)\n"
        "                       prefill: tokens processed; decode: tokens already in the cache\n"
        "      --tokens N       decode: tokens generated per repeat (default 32)\n"
        "      --batch N        prefill chunk size (default 512)\n"
        "  -r, --repeats N      timed repeats (default 5)\n"
        "      --warmup N       untimed warm-up runs (default 1)\n"
        "      --format md|json output format (default md)\n"
        "      --plan PLAN      sparse plan (not available yet)\n"
        "Prints the command, machine, threads, then one row per context: tok/s mean +- stddev.\n");
}

static void stats(const double *x, int n, double *mean, double *sd) {
    double s = 0, q = 0;
    for (int i = 0; i < n; i++) s += x[i];
    *mean = s / n;
    for (int i = 0; i < n; i++) q += (x[i] - *mean) * (x[i] - *mean);
    *sd = n > 1 ? sqrt(q / (n - 1)) : 0;
}

static const char *simd_level(void) {
    return moa_cpu_has_avx512() ? "AVX-512" : moa_cpu_has_avx2() ? "AVX2" : "scalar";
}

static void command_line(int argc, char **argv, char *cmd, size_t n) {
    cmd[0] = '\0';
    for (int i = 0, o = 0; i < argc && o < (int)n - 2; i++)
        o += snprintf(cmd + o, n - (size_t)o, "%s%s", i ? " " : "moa ", argv[i]);
}

/* FLOPs of one profiler sample of n tokens with R response rows: the forward's matmuls run
 * twice (forward + recompute) and once more as the activation backward (dx = dy W); causal
 * attention costs 2 n^2 hd per head forward (x2 with the recompute) and 5 n^2 hd backward;
 * the LM head 2 R d V forward and backward. */
static double profile_flops(const moa_llama_hparams *hp, double n, double R) {
    double d = hp->n_embd, hd = hp->head_dim, nq = hp->n_head * hd, nkv = hp->n_head_kv * hd;
    double mm = 2 * n * (d * nq + 2 * d * nkv + nq * d + 3 * d * hp->n_ff) * hp->n_layer;
    double attn = (2 * 2 + 5) * n * n * hd * hp->n_head * hp->n_layer;
    double head = 2 * 2 * R * d * hp->n_vocab;
    return 3 * mm + attn + head;
}

static moa_status bench_profile(const moa_model *m, const long *lens, int n_lens, long repeats,
                                long warmup, int json, int argc, char **argv) {
    char cmd[1024];
    command_line(argc, argv, cmd, sizeof cmd);
    int threads = 1;
#ifdef _OPENMP
    threads = omp_get_max_threads();
#endif
    if (json) printf("{\"command\": \"%s\", \"threads\": %d, \"mode\": \"profile\", \"results\": [", cmd, threads);
    else printf("command: %s\nmachine: %d threads, %s\nrepeats %ld after %ld warm-up\n\n"
                "| mode | tokens | tok/s | +- | GFLOP/s | peak RSS MiB |\n|---|---:|---:|---:|---:|---:|\n",
                cmd, threads, simd_level(), repeats, warmup);
    moa_status st = MOA_OK;
    for (int li = 0; li < n_lens && st >= 0; li++) {
        long N = lens[li];
        if (N < 80 || N > m->hp.n_ctx_train) return moa_err(MOA_ERR_INVALID_ARG, "context %ld must be in [80, %d]", N, m->hp.n_ctx_train);
        moa_profiler *p;
        MOA_TRY(moa_profiler_create(m, N, NULL, &p));
        int64_t nb = (N + 63) / 64, nh = (int64_t)m->hp.n_layer * m->hp.n_head;
        double *abs = calloc((size_t)(nh * nb), sizeof(double)), *sgn = calloc((size_t)(nh * nb), sizeof(double));
        double *sk = calloc((size_t)nh, sizeof(double));
        int32_t *ids = malloc(sizeof(int32_t) * (size_t)N);
        double *tps = malloc(sizeof(double) * (size_t)repeats);
        if (!abs || !sgn || !sk || !ids || !tps) st = moa_err(MOA_ERR_NOMEM, "out of memory");
        uint64_t x = 777;
        for (long i = 0; ids && i < N; i++) {
            x = x * 6364136223846793005ull + 1442695040888963407ull;
            ids[i] = (int32_t)((x >> 33) % (uint64_t)m->hp.n_vocab);
        }
        moa_profiler_hist hist = {abs, sgn, sk, NULL, nb};
        for (long r = -warmup; r < repeats && st >= 0; r++) {
            double loss, t0 = moa_time_now();
            st = moa_profiler_sample(p, ids, N, N - 64, N, &hist, &loss, NULL);
            if (r >= 0) tps[r] = N / (moa_time_now() - t0);
        }
        if (st >= 0) {
            double mean, sd;
            stats(tps, (int)repeats, &mean, &sd);
            struct rusage ru;
            getrusage(RUSAGE_SELF, &ru);
            double gf = profile_flops(&m->hp, (double)N, 63) / ((double)N / mean) / 1e9;
            if (json) printf("%s{\"tokens\": %ld, \"tok_s\": %.3f, \"stddev\": %.3f, \"gflops\": %.2f, \"peak_rss_mib\": %.1f}",
                             li ? ", " : "", N, mean, sd, gf, ru.ru_maxrss / 1024.0);
            else printf("| profile | %ld | %.1f | %.1f | %.1f | %.0f |\n", N, mean, sd, gf, ru.ru_maxrss / 1024.0);
            fflush(stdout);
        }
        free(abs); free(sgn); free(sk); free(ids); free(tps);
        moa_profiler_free(p);
    }
    if (json) printf("]}\n");
    return st;
}

int moa_cmd_bench(int argc, char **argv) {
    if (argc < 2 || arg_flag(argv, 1, "-h", "--help")) { usage(argc < 2 ? stderr : stdout); return argc < 2 ? 2 : 0; }
    const char *mode = argv[1];
    int prefill = !strcmp(mode, "prefill"), profile = !strcmp(mode, "profile");
    if (!prefill && !profile && strcmp(mode, "decode")) {
        fprintf(stderr, "moa bench: unknown benchmark '%s' (prefill, decode or profile)\n", mode);
        return 2;
    }
    const char *model = NULL, *ctxs = "512", *format = "md", *plan = NULL;
    long tokens = 32, repeats = 5, warmup = 1, batch = 512;
    for (int i = 2; i < argc; i++) {
        int r;
        if (arg_flag(argv, i, "-h", "--help")) { usage(stdout); return 0; }
        if ((r = arg_str(argc, argv, &i, "-m", "--model", &model)) ||
            (r = arg_str(argc, argv, &i, NULL, "--context", &ctxs)) ||
            (r = arg_str(argc, argv, &i, NULL, "--format", &format)) ||
            (r = arg_str(argc, argv, &i, NULL, "--plan", &plan)) ||
            (r = arg_long(argc, argv, &i, NULL, "--tokens", &tokens, 1, 1 << 20)) ||
            (r = arg_long(argc, argv, &i, NULL, "--batch", &batch, 1, 1 << 20)) ||
            (r = arg_long(argc, argv, &i, "-r", "--repeats", &repeats, 1, 1000)) ||
            (r = arg_long(argc, argv, &i, NULL, "--warmup", &warmup, 0, 1000))) {
            if (r < 0) return 2;
            continue;
        }
        fprintf(stderr, "moa bench: unknown argument '%s'\n", argv[i]);
        return 2;
    }
    if (plan) { fprintf(stderr, "moa bench: --plan is not available in this build yet\n"); return 2; }
    int json = !strcmp(format, "json");
    if (!json && strcmp(format, "md")) { fprintf(stderr, "moa bench: --format must be md or json\n"); return 2; }
    long lens[64];
    int n_lens = moa_parse_int_list(ctxs, lens, 64);
    if (n_lens <= 0) { fprintf(stderr, "moa bench: bad --context list '%s'\n", ctxs); return 2; }
    if (!(model = cli_model_path(model))) return 2;

    moa_model *m;
    moa_model_params mp = moa_model_default_params();
    mp.compute_sha256 = 0;
    if (profile) mp.f32_weights = 1;
    moa_status st = moa_model_load(model, &mp, &m);
    if (st < 0) return cli_fail("loading model", st);
    if (profile) {
        st = bench_profile(m, lens, n_lens, repeats, warmup, json, argc, argv);
        moa_model_free(m);
        return st < 0 ? cli_fail("bench profile", st) : 0;
    }
    int threads = 1;
#ifdef _OPENMP
    threads = omp_get_max_threads();
#endif
    /* the command line, the machine, the settings */
    char cmd[1024];
    command_line(argc, argv, cmd, sizeof cmd);
    if (!json)
        printf("command: %s\nmachine: %d threads, %s; model %s (%d layers, %d/%d heads)\n"
               "repeats %ld after %ld warm-up\n\n| mode | context | tok/s | +- | attention s/run |\n|---|---:|---:|---:|---:|\n",
               cmd, threads, simd_level(), m->hp.arch, m->hp.n_layer, m->hp.n_head, m->hp.n_head_kv,
               repeats, warmup);
    else
        printf("{\"command\": \"%s\", \"threads\": %d, \"simd\": \"%s\", \"mode\": \"%s\", \"results\": [",
               cmd, threads, simd_level(), mode);
    int rc = 0;
    for (int li = 0; li < n_lens && rc == 0; li++) {
        long N = lens[li];
        long need = prefill ? N : N + tokens;
        if (N < 1 || need > m->hp.n_ctx_train) {
            fprintf(stderr, "moa bench: context %ld must be in [1, %d] (decode adds --tokens)\n", N,
                    m->hp.n_ctx_train - (prefill ? 0 : (int)tokens));
            rc = 2;
            break;
        }
        moa_ctx_params cp = moa_ctx_default_params();
        cp.n_ctx = (int32_t)need;
        cp.n_batch = (int32_t)batch;
        moa_ctx *ctx;
        if ((st = moa_ctx_create(m, &cp, &ctx)) < 0) { rc = cli_fail("creating context", st); break; }
        int32_t *ids = malloc((size_t)need * sizeof *ids);
        float *logits = malloc((size_t)m->hp.n_vocab * sizeof(float));
        double *tps = malloc((size_t)repeats * sizeof(double));
        double attn = 0;
        if (!ids || !logits || !tps) { rc = cli_fail("bench", MOA_ERR_NOMEM); goto next; }
        uint64_t x = 12345;
        for (long i = 0; i < need; i++) {   /* deterministic pseudo-random tokens */
            x = x * 6364136223846793005ull + 1442695040888963407ull;
            ids[i] = (int32_t)((x >> 33) % (uint64_t)m->hp.n_vocab);
        }
        for (long r = -warmup; r < repeats; r++) {
            moa_ctx_reset(ctx);
            moa_ctx_attn_seconds(ctx, 1);
            double t0 = moa_time_now(), dt;
            if (prefill) {
                if ((st = moa_ctx_eval(ctx, ids, (int32_t)N, MOA_LOGITS_LAST, logits)) < 0) break;
                dt = moa_time_now() - t0;
                if (r >= 0) tps[r] = N / dt;
            } else {
                if ((st = moa_ctx_eval(ctx, ids, (int32_t)N, MOA_LOGITS_NONE, NULL)) < 0) break;
                moa_ctx_attn_seconds(ctx, 1);
                t0 = moa_time_now();
                for (long t = 0; t < tokens && st >= 0; t++)
                    st = moa_ctx_eval(ctx, &ids[N + t], 1, MOA_LOGITS_LAST, logits);
                if (st < 0) break;
                dt = moa_time_now() - t0;
                if (r >= 0) tps[r] = tokens / dt;
            }
            if (r >= 0) attn += moa_ctx_attn_seconds(ctx, 0) / repeats;
        }
        if (st < 0) { rc = cli_fail("bench", st); goto next; }
        double mean, sd;
        stats(tps, (int)repeats, &mean, &sd);
        if (!json) printf("| %s | %ld | %.1f | %.1f | %.4f |\n", mode, N, mean, sd, attn);
        else printf("%s{\"context\": %ld, \"tok_s\": %.3f, \"stddev\": %.3f, \"attention_s\": %.6f}",
                    li ? ", " : "", N, mean, sd, attn);
        fflush(stdout);
    next:
        free(ids); free(logits); free(tps);
        moa_ctx_free(ctx);
    }
    if (json) printf("]}\n");
    moa_model_free(m);
    return rc;
}
