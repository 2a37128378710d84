/* cmd-bench.c - `moa bench prefill|decode`: throughput with warm-up excluded, mean and
 * standard deviation over repeats, as a markdown table or JSON. */
#include "cli.h"
#include "args.h"
#include "moa/model.h"
#include "moa/profiler.h"

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
        "                       prefill: tokens processed; decode: tokens already in the cache (0: empty)\n"
        "      --tokens N       decode: tokens generated per sequence per repeat (default 32)\n"
        "      --batch B        decode: sequences decoded together (default 1)\n"
        "      --kv-budget BYTES  decode: use the largest batch whose KV caches fit BYTES\n"
        "      --act-budget B   profile: bytes of kept layer activations (K/M/G, max; default a\n"
        "                       quarter of RAM; 0 recomputes every layer in the backward)\n"
        "      --chunk N        prefill chunk size (default 512)\n"
        "  -r, --repeats N      timed repeats (default 5)\n"
        "      --warmup N       untimed warm-up runs (default 1)\n"
        "      --format md|json output format (default md)\n"
        "      --plan PLAN      run with a sparse-attention plan\n"
        "      --uniform D      run with the uniform StreamingLLM baseline at density D\n"
        "      --sink S, --block B  sinks and window granularity of --uniform (default 64, 64)\n"
        "      --kv-type T      KV cache storage: f32, f16 (default), bf16, q8_0 (KV MiB: real bytes)\n"
        "Prints the command, machine, threads, then one row per context: tok/s mean +- stddev.\n");
}

static void stats(const double *x, int n, double *mean, double *sd) {
    double s = 0, q = 0;
    for (int i = 0; i < n; i++) s += x[i];
    *mean = s / n;
    for (int i = 0; i < n; i++) q += (x[i] - *mean) * (x[i] - *mean);
    *sd = n > 1 ? sqrt(q / (n - 1)) : 0;
}

/* The CPU's level and the product paths of the test models' main types (Q4_1, Q5_0). */
static const char *simd_level(void) {
    static char buf[160];
    snprintf(buf, sizeof buf, "%s CPU, matvec %s, batched %s", moa_cpu_has_avx512() ? "AVX-512"
             : moa_cpu_has_avx2() ? "AVX2" : "scalar", moa_matmul_q_path(MOA_GGML_Q4_1),
             moa_matmul_q_batch_path(MOA_GGML_Q4_1));
    return buf;
}

static void command_line(int argc, char **argv, char *cmd, size_t n) {
    cmd[0] = '\0';
    for (int i = 0, o = 0; i < argc && o < (int)n - 2; i++)
        o += snprintf(cmd + o, n - (size_t)o, "%s%s", i ? " " : "moa ", argv[i]);
}

/* FLOPs of one profiler sample of n tokens with R response rows, `kept` of the layers keeping
 * their activations from the forward (the others recompute their forward in the backward):
 * matmuls once forward, once per recomputed layer, once as the activation backward (dx =
 * dy W); causal attention 2 n^2 hd per head forward (again when recomputed) and 5 n^2 hd
 * backward; the LM head 2 R d V forward and backward. */
static double profile_flops(const moa_llama_hparams *hp, double n, double R, int kept) {
    double d = hp->n_embd, hd = hp->head_dim, nq = hp->n_head * hd, nkv = hp->n_head_kv * hd;
    double L = hp->n_layer, rec = L - kept;
    double mm = 2 * n * (d * nq + 2 * d * nkv + nq * d + 3 * d * hp->n_ff);   /* per layer */
    double attn = n * n * hd * hp->n_head;                                   /* per layer */
    return mm * (2 * L + rec) + attn * (2 * (L + rec) + 5 * L) + 2 * 2 * R * d * hp->n_vocab;
}

static moa_status bench_profile(const moa_model *m, const long *lens, int n_lens, long repeats,
                                long warmup, size_t act_budget, int json, int argc, char **argv) {
    char cmd[1024];
    command_line(argc, argv, cmd, sizeof cmd);
    int threads = 1;
#ifdef _OPENMP
    threads = omp_get_max_threads();
#endif
    if (json) printf("{\"command\": \"%s\", \"threads\": %d, \"mode\": \"profile\", \"results\": [", cmd, threads);
    else printf("command: %s\nmachine: %d threads, %s\nrepeats %ld after %ld warm-up\n\n"
                "| mode | tokens | kept layers | tok/s | +- | GFLOP/s | peak RSS MiB |\n|---|---:|---:|---:|---:|---:|---:|\n",
                cmd, threads, simd_level(), repeats, warmup);
    moa_status st = MOA_OK;
    for (int li = 0; li < n_lens && st >= 0; li++) {
        long N = lens[li];
        if (N < 80 || N > m->hp.n_ctx_train) return moa_err(MOA_ERR_INVALID_ARG, "context %ld must be in [80, %d]", N, m->hp.n_ctx_train);
        moa_profiler *p;
        moa_profiler_params pp = moa_profiler_default_params();
        pp.act_budget_bytes = act_budget;
        MOA_TRY(moa_profiler_create(m, N, &pp, &p));
        int kept = moa_profiler_kept_layers(p, N);
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
            double gf = profile_flops(&m->hp, (double)N, 63, kept) / ((double)N / mean) / 1e9;
            if (json) printf("%s{\"tokens\": %ld, \"kept_layers\": %d, \"tok_s\": %.3f, \"stddev\": %.3f, \"gflops\": %.2f, \"peak_rss_mib\": %.1f}",
                             li ? ", " : "", N, kept, mean, sd, gf, ru.ru_maxrss / 1024.0);
            else printf("| profile | %ld | %d | %.1f | %.1f | %.1f | %.0f |\n", N, kept, mean, sd, gf, ru.ru_maxrss / 1024.0);
            fflush(stdout);
        }
        free(abs); free(sgn); free(sk); free(ids); free(tps);
        moa_profiler_free(p);
    }
    if (json) printf("]}\n");
    return st;
}

/* Read bandwidth of this machine: sum of a 512 MiB float array with all threads, best of 3. */
static double measure_read_bandwidth(void) {
    size_t n = (size_t)128 << 20;
    float *a = moa_alloc_aligned(n, sizeof(float));
    if (!a) return 0;
    #pragma omp parallel for schedule(static)
    for (size_t i = 0; i < n; i++) a[i] = (float)(i & 7);
    double best = 0;
    for (int r = 0; r < 3; r++) {
        double t0 = moa_time_now(), sum = 0;
        #pragma omp parallel for schedule(static) reduction(+:sum)
        for (size_t i = 0; i < n; i += 16) {
            float s16 = 0;
            for (int j = 0; j < 16; j++) s16 += a[i + j];
            sum += s16;
        }
        double dt = moa_time_now() - t0;
        if (sum > 0 && n * sizeof(float) / dt > best) best = n * sizeof(float) / dt;
    }
    moa_free_aligned(a);
    return best;
}

/* Bytes of the quantised weights one decode step reads (every block matrix + the head). */
static double weight_bytes(const moa_model *m) {
    double b = 0;
    for (int l = 0; l < m->hp.n_layer; l++) {
        const moa_llama_layer *L = &m->layers[l];
        const moa_weight *ws[] = {&L->wq, &L->wk, &L->wv, &L->wo, &L->w_gate, &L->w_up, &L->w_down};
        for (size_t i = 0; i < 7; i++) b += (double)moa_ggml_row_bytes(ws[i]->type, ws[i]->n_in) * ws[i]->n_out;
    }
    return b + (double)moa_ggml_row_bytes(m->output.type, m->output.n_in) * m->output.n_out;
}

/* The settings of `moa bench` from its command line. */
typedef struct {
    const char *mode;
    int prefill, profile, json;
    const char *model, *ctxs, *format, *plan, *act, *kv_type;
    long tokens, repeats, warmup, batch, n_seq;
    double uniform, kv_budget;
    long u_sink, u_block;   /* --uniform's sinks and block (64, 64) */
    long lens[64];
    int n_lens;
    size_t act_budget;
    moa_kv_type kvt;
} bench_opts;

/* Parses argv into *o. Returns CLI_GO_ON, else the exit code (0 after --help, 2 on a usage
 * error, with the message printed). */
static int parse_args(int argc, char **argv, bench_opts *o) {
    if (argc < 2 || arg_flag(argv, 1, "-h", "--help")) { usage(argc < 2 ? stderr : stdout); return argc < 2 ? 2 : 0; }
    *o = (bench_opts){.mode = argv[1], .ctxs = "512", .format = "md", .tokens = 32, .repeats = 5,
                      .warmup = 1, .batch = 512, .n_seq = 1, .u_sink = -1, .u_block = 0};
    o->prefill = !strcmp(o->mode, "prefill");
    o->profile = !strcmp(o->mode, "profile");
    if (!o->prefill && !o->profile && strcmp(o->mode, "decode")) {
        fprintf(stderr, "moa bench: unknown benchmark '%s' (prefill, decode or profile)\n", o->mode);
        return 2;
    }
    for (int i = 2; i < argc; i++) {
        int r;
        if (arg_flag(argv, i, "-h", "--help")) { usage(stdout); return 0; }
        if ((r = arg_str(argc, argv, &i, "-m", "--model", &o->model)) ||
            (r = arg_str(argc, argv, &i, NULL, "--context", &o->ctxs)) ||
            (r = arg_str(argc, argv, &i, NULL, "--format", &o->format)) ||
            (r = arg_str(argc, argv, &i, NULL, "--plan", &o->plan)) ||
            (r = arg_str(argc, argv, &i, NULL, "--kv-type", &o->kv_type)) ||
            (r = arg_double(argc, argv, &i, NULL, "--uniform", &o->uniform, 1e-6, 1)) ||
            (r = arg_long(argc, argv, &i, NULL, "--sink", &o->u_sink, 0, 1 << 20)) ||
            (r = arg_long(argc, argv, &i, NULL, "--block", &o->u_block, 1, 1 << 20)) ||
            (r = arg_double(argc, argv, &i, NULL, "--kv-budget", &o->kv_budget, 1, 1e15)) ||
            (r = arg_str(argc, argv, &i, NULL, "--act-budget", &o->act)) ||
            (r = arg_long(argc, argv, &i, NULL, "--tokens", &o->tokens, 1, 1 << 20)) ||
            (r = arg_long(argc, argv, &i, NULL, "--batch", &o->n_seq, 1, 4096)) ||
            (r = arg_long(argc, argv, &i, NULL, "--chunk", &o->batch, 1, 1 << 20)) ||
            (r = arg_long(argc, argv, &i, "-r", "--repeats", &o->repeats, 1, 1000)) ||
            (r = arg_long(argc, argv, &i, NULL, "--warmup", &o->warmup, 0, 1000))) {
            if (r < 0) return 2;
            continue;
        }
        return cli_unknown_arg("bench", argv[i], NULL);
    }
    o->json = !strcmp(o->format, "json");
    if (!o->json && strcmp(o->format, "md")) { fprintf(stderr, "moa bench: --format must be md or json\n"); return 2; }
    o->n_lens = moa_parse_int_list(o->ctxs, o->lens, 64);
    if (o->n_lens <= 0) { fprintf(stderr, "moa bench: bad --context list '%s'\n", o->ctxs); return 2; }
    o->act_budget = moa_profiler_default_params().act_budget_bytes;
    if (o->act && (!o->profile || moa_parse_bytes(o->act, &o->act_budget) < 0)) {
        fprintf(stderr, "moa bench: --act-budget B goes with `moa bench profile` (a byte count: 3G, 0, max)\n");
        return 2;
    }
    if (cli_kv_type("bench", o->kv_type, &o->kvt) != 0) return 2;
    if (!(o->model = cli_model_path(o->model))) return 2;
    return CLI_GO_ON;
}

/* What every row of a prefill/decode run shares: the attention label, the read bandwidth
 * (decode only) and the bytes of the quantised weights. */
typedef struct {
    const char *attn;
    double bw, wbytes;
} bench_env;

/* The header: command, machine, model, attention and KV type; then the table's head (md) or
 * the opening of the JSON object. */
static void print_header(const bench_opts *o, const moa_model *m, const bench_env *env, int argc,
                         char **argv) {
    int threads = 1;
#ifdef _OPENMP
    threads = omp_get_max_threads();
#endif
    char cmd[1024];
    command_line(argc, argv, cmd, sizeof cmd);
    if (!o->json) {
        printf("command: %s\nmachine: %d threads, kernels %s; read bandwidth %.1f GB/s\n"
               "model: %s, %d layers, %d/%d heads, weights %.1f MiB; attention: %s, KV %s\nrepeats %ld after %ld warm-up\n\n",
               cmd, threads, simd_level(), env->bw / 1e9, m->hp.arch, m->hp.n_layer, m->hp.n_head,
               m->hp.n_head_kv, env->wbytes / 1048576.0, env->attn, moa_kv_type_name(o->kvt), o->repeats, o->warmup);
        if (o->prefill) printf("| attention | context | tok/s | +- | attention s | total s | KV MiB | peak RSS MiB |\n|---|---:|---:|---:|---:|---:|---:|---:|\n");
        else printf("| attention | context | batch | tok/s (all seqs) | +- | KV MiB/seq | MB read/step | %% of bandwidth | attention s/step | prompt fill s | peak RSS MiB |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n");
    } else {
        printf("{\"command\": \"%s\", \"threads\": %d, \"simd\": \"%s\", \"mode\": \"%s\", \"attention\": \"%s\", "
               "\"kv_type\": \"%s\", \"read_bandwidth\": %.4g, \"weight_bytes\": %.0f, \"results\": [", cmd, threads,
               simd_level(), o->mode, env->attn, moa_kv_type_name(o->kvt), env->bw, env->wbytes);
    }
}

/* The context of one length: n_ctx planned tokens with plan pl (read during the call), one
 * sequence for prefill, else --batch sequences or, with --kv-budget, the largest batch whose
 * caches fit the budget (at most 512). Returns 0 with *ctx and *B set, else the exit code. */
static int make_bench_ctx(const bench_opts *o, const moa_model *m, const moa_plan *pl, long n_ctx,
                          moa_ctx **ctx, long *B) {
    moa_ctx_params cp = moa_ctx_default_params();
    cp.n_ctx = (int32_t)n_ctx;
    cp.n_batch = (int32_t)o->batch;
    cp.plan = pl;
    cp.n_seq = 1;
    cp.kv_type = o->kvt;
    *ctx = NULL;
    *B = o->prefill ? 1 : o->n_seq;
    moa_status st;
    if (!o->prefill && o->kv_budget > 0) {   /* the largest batch whose caches fit the budget */
        if ((st = moa_ctx_create(m, &cp, ctx)) < 0) return cli_fail("creating context", st);
        *B = (long)(o->kv_budget / (double)moa_ctx_kv_bytes(*ctx));
        moa_ctx_free(*ctx);
        *ctx = NULL;
        if (*B < 1) { fprintf(stderr, "moa bench: --kv-budget %.0f holds no sequence of %ld tokens\n", o->kv_budget, n_ctx); return 2; }
        if (*B > 512) *B = 512;
    }
    cp.n_seq = (int32_t)*B;
    if (cp.n_batch < *B) cp.n_batch = (int32_t)*B;
    if ((st = moa_ctx_create(m, &cp, ctx)) < 0) return cli_fail("creating context", st);
    return 0;
}

/* Decode: every sequence holds N tokens before the timed steps: one prefill copied into the
 * others, each copy its own bytes (on CUDA, where contexts cannot copy yet, one prefill each). */
static moa_status fill_sequences(moa_ctx *ctx, const int32_t *ids, long N, long B) {
    moa_status st = MOA_OK;
    for (long b = 0; b < B && st >= 0 && N > 0; b++) {
        if (b > 0 && moa_ctx_device(ctx) == MOA_DEVICE_CPU) st = moa_ctx_seq_copy(ctx, 0, (int)b);
        else st = moa_ctx_eval_seq(ctx, (int)b, ids + b % 7, (int32_t)N, MOA_LOGITS_NONE, NULL);
    }
    return st;
}

/* The measurements of one length. */
typedef struct {
    double *tps;            /* [repeats] tokens per second (decode: all sequences) */
    double attn_s, total_s; /* mean attention seconds (per step for decode); prefill seconds */
    double fill_s;          /* decode: seconds to put the prompt in every sequence (one
                             * prefill of N tokens, then B-1 copies), measured once */
} bench_times;

/* Warm-up runs, then the timed repeats: prefill of N tokens from an empty context, or
 * `tokens` decode steps of the B sequences. */
static moa_status timed_runs(const bench_opts *o, moa_ctx *ctx, const int32_t *ids, const int *seqs,
                             long N, long B, float *logits, bench_times *t) {
    moa_status st = MOA_OK;
    for (long r = -o->warmup; r < o->repeats; r++) {
        double t0, dt;
        if (o->prefill) {
            moa_ctx_reset(ctx);
            moa_ctx_attn_seconds(ctx, 1);
            t0 = moa_time_now();
            if ((st = moa_ctx_eval(ctx, ids, (int32_t)N, MOA_LOGITS_LAST, logits)) < 0) break;
            dt = moa_time_now() - t0;
            if (r >= 0) { t->tps[r] = N / dt; t->total_s += dt / o->repeats; }
        } else {
            moa_ctx_attn_seconds(ctx, 1);
            t0 = moa_time_now();
            for (long k = 0; k < o->tokens && st >= 0; k++)
                st = moa_ctx_decode_batch(ctx, seqs, ids + N + (k % B), (int32_t)B, logits);
            if (st < 0) break;
            dt = moa_time_now() - t0;
            if (r >= 0) t->tps[r] = (double)B * o->tokens / dt;
        }
        if (r >= 0) t->attn_s += moa_ctx_attn_seconds(ctx, 0) / o->repeats / (o->prefill ? 1 : o->tokens);
    }
    return st;
}

/* One table row (md) or JSON object (li > 0: after a comma) for length N. */
static void print_row(const bench_opts *o, const bench_env *env, const moa_ctx *ctx, int li, long N,
                      long B, long n_ctx, const bench_times *t, int rss_ok) {
    double mean, sd;
    stats(t->tps, (int)o->repeats, &mean, &sd);
    double kv_mib = moa_ctx_kv_bytes(ctx) / 1048576.0 / (double)B;
    double rss_mib = rss_ok ? moa_peak_rss_bytes() / 1048576.0 : -1;
    if (o->prefill) {
        if (!o->json) printf("| %s | %ld | %.1f | %.1f | %.3f | %.3f | %.1f | %.0f |\n", env->attn, N, mean, sd, t->attn_s, t->total_s, kv_mib, rss_mib);
        else printf("%s{\"context\": %ld, \"tok_s\": %.3f, \"stddev\": %.3f, \"attention_s\": %.6f, \"total_s\": %.6f, \"kv_mib\": %.3f, \"peak_rss_mib\": %.1f}",
                    li ? ", " : "", N, mean, sd, t->attn_s, t->total_s, kv_mib, rss_mib);
    } else {
        /* bytes one step reads: the weights once + every sequence's KV (full caches; a
         * sequence of N tokens in a window cache touches min(N, slots)) */
        double step_bytes = env->wbytes + (double)moa_ctx_kv_bytes(ctx);
        double steps_s = mean / (double)B;
        double frac = env->bw > 0 ? step_bytes * steps_s / env->bw : 0;
        if (!o->json) printf("| %s | %ld | %ld | %.1f | %.1f | %.2f | %.1f | %.0f%% | %.5f | %.2f | %.0f |\n", env->attn, N, B, mean, sd,
                             kv_mib, step_bytes / 1e6, 100 * frac, t->attn_s, t->fill_s, rss_mib);
        else printf("%s{\"context\": %ld, \"batch\": %ld, \"tok_s\": %.3f, \"stddev\": %.3f, \"kv_mib_per_seq\": %.4f, "
                    "\"n_ctx\": %ld, \"kv_bytes_per_seq\": %.0f, "
                    "\"bytes_per_step\": %.0f, \"bandwidth_fraction\": %.4f, \"attention_s_per_step\": %.6f, \"fill_s\": %.3f, \"peak_rss_mib\": %.1f}",
                    li ? ", " : "", N, B, mean, sd, kv_mib, n_ctx, (double)moa_ctx_kv_bytes(ctx) / (double)B,
                    step_bytes, frac, t->attn_s, t->fill_s, rss_mib);
    }
    fflush(stdout);
}

/* Length lens[li]: its context, deterministic pseudo-random tokens, the runs and the row.
 * Returns 0 or the exit code. */
static int bench_length(const bench_opts *o, const moa_model *m, const bench_env *env, int li) {
    long N = o->lens[li];
    /* the planned context: decode prefills once, then every warm-up and repeat decodes
     * `tokens` more steps */
    long n_ctx = o->prefill ? N : N + o->tokens * (o->warmup + o->repeats);
    if (N < (o->prefill ? 1 : 0) || n_ctx > m->hp.n_ctx_train) {   /* decode at depth 0: an empty cache */
        fprintf(stderr, "moa bench: context %ld must be in [%d, %ld]\n", N, o->prefill ? 1 : 0,
                (long)m->hp.n_ctx_train - (o->prefill ? 0 : o->tokens));
        return 2;
    }
    moa_plan *pl = NULL;
    int rc;
    if ((rc = cli_plan_from_args(o->plan, o->uniform, o->u_sink, o->u_block, m, n_ctx, &pl)) != 0) return rc;
    int rss_ok = moa_peak_rss_reset() == 0;   /* peak of this context only */
    moa_ctx *ctx;
    long B;
    rc = make_bench_ctx(o, m, pl, n_ctx, &ctx, &B);
    moa_plan_free(pl);
    if (rc != 0) return rc;
    int32_t *ids = malloc((size_t)(n_ctx + B + o->tokens) * sizeof *ids);
    float *logits = malloc((size_t)m->hp.n_vocab * (size_t)B * sizeof(float));
    int *seqs = malloc((size_t)B * sizeof(int));
    bench_times t = {malloc((size_t)o->repeats * sizeof(double)), 0, 0, 0};
    moa_status st = MOA_OK;
    if (!ids || !logits || !t.tps || !seqs) { rc = cli_fail("bench", MOA_ERR_NOMEM); goto done; }
    uint64_t x = 12345;
    for (long i = 0; i < n_ctx + B + o->tokens; i++) {   /* deterministic pseudo-random tokens */
        x = x * 6364136223846793005ull + 1442695040888963407ull;
        ids[i] = (int32_t)((x >> 33) % (uint64_t)m->hp.n_vocab);
    }
    for (long b = 0; b < B; b++) seqs[b] = (int)b;
    double t_fill = moa_time_now();
    if (!o->prefill && (st = fill_sequences(ctx, ids, N, B)) < 0) { rc = cli_fail("bench", st); goto done; }
    t.fill_s = moa_time_now() - t_fill;
    if ((st = timed_runs(o, ctx, ids, seqs, N, B, logits, &t)) < 0) { rc = cli_fail("bench", st); goto done; }
    print_row(o, env, ctx, li, N, B, n_ctx, &t, rss_ok);
done:
    free(ids); free(logits); free(t.tps); free(seqs);
    moa_ctx_free(ctx);
    return rc;
}

int moa_cmd_bench(int argc, char **argv) {
    bench_opts o;
    int rc = parse_args(argc, argv, &o);
    if (rc != CLI_GO_ON) return rc;
    rc = 0;
    moa_model *m;
    moa_model_params mp = moa_model_default_params();
    mp.compute_sha256 = 0;
    if (o.profile) mp.f32_weights = moa_ctx_default_params().device != MOA_DEVICE_CUDA;   /* host BLAS copies: CPU only */
    moa_status st = moa_model_load(o.model, &mp, &m);
    if (st < 0) return cli_fail("loading model", st);
    if (o.profile) {
        st = bench_profile(m, o.lens, o.n_lens, o.repeats, o.warmup, o.act_budget, o.json, argc, argv);
        moa_model_free(m);
        return st < 0 ? cli_fail("bench profile", st) : 0;
    }
    bench_env env = {o.plan ? o.plan : o.uniform > 0 ? "uniform" : "dense",
                     o.prefill ? 0 : measure_read_bandwidth(), weight_bytes(m)};
    print_header(&o, m, &env, argc, argv);
    for (int li = 0; li < o.n_lens && rc == 0; li++) rc = bench_length(&o, m, &env, li);
    if (o.json) printf("]}\n");
    moa_model_free(m);
    return rc;
}
