/* cmd-generate.c - `moa generate`: text generation with the dense (or a compressed) model. */
#include "cli.h"
#include "args.h"
#include "moa/model.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void usage(FILE *fp) {
    fprintf(fp,
        "usage: moa generate -m MODEL -p TEXT [options]\n\n"
        "  -m, --model PATH      GGUF model (default: $MOA_MODEL)\n"
        "  -p, --prompt TEXT     prompt text (special tokens like <|im_start|> are parsed)\n"
        "  -f, --file PATH       read the prompt from a file instead\n"
        "  -n, --n-predict N     max new tokens (default 128)\n"
        "      --chat            wrap the prompt as a user turn with the model's chat template\n"
        "      --system TEXT     system message for --chat (default: the template's own)\n"
        "  -c, --ctx N           context size in tokens (default: prompt + n, at most the\n"
        "                        model's training context; with --plan at least the plan's\n"
        "                        shortest profiled length, where its rules were measured)\n"
        "      --temp T          temperature (default 0 = greedy)\n"
        "      --top-k K         top-k (default 0 = off)\n"
        "      --top-p P         top-p (default 1 = off)\n"
        "  -s, --seed S          sampling seed (default 42)\n"
        "      --plan PLAN       run with a sparse-attention plan (moa optimize)\n"
        "      --uniform D       run with the uniform StreamingLLM baseline at density D\n"
        "      --sink S, --block B  sinks and window granularity of --uniform (default 64, 64)\n"
        "                        (64 sinks + one window for every head, sized at the context)\n"
        "      --streaming       cache keys before RoPE and rotate by cache position\n"
        "      --kv-type T       KV cache storage: f32, f16 (default), bf16, q8_0\n"
        "                        (StreamingLLM positions; for running past the trained context)\n"
        "      --ids             also print the generated token ids on stderr\n"
        "Text goes to stdout; timings to stderr.\n");
}

static int print_piece(void *data, int32_t id, const char *text, size_t len) {
    (void)data; (void)id;
    fwrite(text, 1, len, stdout);
    fflush(stdout);
    return 0;
}

/* The command line of `moa generate`. */
typedef struct {
    const char *model, *prompt, *file, *system, *plan, *kv_type;
    long n_predict, n_ctx, top_k, seed;
    double temp, top_p, uniform;
    long u_sink, u_block;   /* --uniform's sinks and block (64, 64) */
    int streaming, chat, show_ids;
    moa_kv_type kvt;
} gen_args;

/* What a run holds (released at its end) and what its steps pass on. */
typedef struct {
    moa_model *m;
    moa_tokenizer *tok;
    moa_ctx *ctx;
    moa_plan *pl;
    char *text, *rendered;
    const char *input;      /* the prompt as encoded: text, or rendered with --chat */
    int32_t *ids, n_ids;
    double t_load;          /* seconds to load the model and the tokenizer */
    long want;              /* planned context */
} gen_run;

/* Reads the flags into a and checks them; CLI_GO_ON, or the exit code (0 after --help, 2). */
static int parse_flags(int argc, char **argv, gen_args *a) {
    for (int i = 1; i < argc; i++) {
        int r;
        if (arg_flag(argv, i, "-h", "--help")) { usage(stdout); return 0; }
        if (arg_flag(argv, i, NULL, "--chat")) { a->chat = 1; continue; }
        if (arg_flag(argv, i, NULL, "--ids")) { a->show_ids = 1; continue; }
        if (arg_flag(argv, i, NULL, "--streaming")) { a->streaming = 1; continue; }
        if ((r = arg_str(argc, argv, &i, "-m", "--model", &a->model)) ||
            (r = arg_str(argc, argv, &i, "-p", "--prompt", &a->prompt)) ||
            (r = arg_str(argc, argv, &i, "-f", "--file", &a->file)) ||
            (r = arg_str(argc, argv, &i, NULL, "--system", &a->system)) ||
            (r = arg_str(argc, argv, &i, NULL, "--plan", &a->plan)) ||
            (r = arg_str(argc, argv, &i, NULL, "--kv-type", &a->kv_type)) ||
            (r = arg_long(argc, argv, &i, "-n", "--n-predict", &a->n_predict, 0, 1 << 24)) ||
            (r = arg_long(argc, argv, &i, "-c", "--ctx", &a->n_ctx, 1, 1 << 24)) ||
            (r = arg_long(argc, argv, &i, NULL, "--top-k", &a->top_k, 0, 1 << 24)) ||
            (r = arg_long(argc, argv, &i, "-s", "--seed", &a->seed, 0, 0x7fffffffL)) ||
            (r = arg_double(argc, argv, &i, NULL, "--temp", &a->temp, 0, 100)) ||
            (r = arg_double(argc, argv, &i, NULL, "--uniform", &a->uniform, 1e-6, 1)) ||
            (r = arg_long(argc, argv, &i, NULL, "--sink", &a->u_sink, 0, 1 << 20)) ||
            (r = arg_long(argc, argv, &i, NULL, "--block", &a->u_block, 1, 1 << 20)) ||
            (r = arg_double(argc, argv, &i, NULL, "--top-p", &a->top_p, 1e-6, 1))) {
            if (r < 0) return 2;
            continue;
        }
        return cli_unknown_arg("generate", argv[i], usage);
    }
    if (!a->prompt == !a->file) {
        fprintf(stderr, "moa generate: give exactly one of -p TEXT or -f FILE\n");
        usage(stderr);
        return 2;
    }
    if (cli_kv_type("generate", a->kv_type, &a->kvt) != 0) return 2;
    if (!(a->model = cli_model_path(a->model))) return 2;
    return CLI_GO_ON;
}

/* Model and tokenizer; the prompt read, rendered with --chat and encoded. CLI_GO_ON or code. */
static int load_prompt(const gen_args *a, gen_run *g) {
    moa_status st;
    moa_model_params mp = moa_model_default_params();
    mp.compute_sha256 = 0;
    if (moa_ctx_default_params().device == MOA_DEVICE_CUDA)
    {
        mp.f32_weights = 0;   /* the device gets its own copy; the CPU never multiplies */
        mp.int8_pack = 0;
    }
    double t0 = moa_time_now();
    if ((st = moa_model_load(a->model, &mp, &g->m)) < 0) return cli_fail("loading model", st);
    if ((st = moa_tokenizer_from_gguf(g->m->gguf, &g->tok)) < 0) return cli_fail("loading tokenizer", st);
    g->t_load = moa_time_now() - t0;
    if (a->file) {
        size_t len;
        if ((st = moa_read_file(a->file, &g->text, &len)) < 0) return cli_fail("reading prompt", st);
    } else if (!(g->text = moa_strdup(a->prompt))) return cli_fail("prompt", MOA_ERR_NOMEM);
    g->input = g->text;
    if (a->chat) {
        moa_chat_msg msgs[2];
        int nm = 0;
        if (a->system) { msgs[nm].role = "system"; msgs[nm].content = a->system; nm++; }
        msgs[nm].role = "user"; msgs[nm].content = g->text; nm++;
        if ((st = moa_chat_render(g->tok, msgs, nm, 1, &g->rendered)) < 0) return cli_fail("chat template", st);
        g->input = g->rendered;
    }
    if ((st = moa_tokenizer_encode(g->tok, g->input, strlen(g->input), 1, &g->ids, &g->n_ids)) < 0)
        return cli_fail("tokenizing", st);
    if (g->n_ids == 0) { fprintf(stderr, "moa generate: the prompt is empty\n"); return 2; }
    return CLI_GO_ON;
}

/* The context: its size (prompt + n, at most the training context; with a plan at least
 * its shortest profiled length), the plan or uniform baseline, the KV type. CLI_GO_ON or code. */
static int create_context(const gen_args *a, gen_run *g) {
    moa_ctx_params cp = moa_ctx_default_params();
    long want = a->n_ctx ? a->n_ctx : g->n_ids + a->n_predict;
    if (want > g->m->hp.n_ctx_train && !a->n_ctx) want = g->m->hp.n_ctx_train;
    cp.pos_mode = a->streaming ? MOA_POS_STREAMING : MOA_POS_ABSOLUTE;
    cp.kv_type = a->kvt;
    int rc;
    if ((rc = cli_plan_from_args(a->plan, a->uniform, a->u_sink, a->u_block, g->m, want, &g->pl)) != 0) return rc;
    moa_plan *pl = g->pl;
    if (a->plan && !a->n_ctx) {
        /* a plan's rules were fitted at its profiled lengths; far below the shortest, windows
         * shrink to less than anything it was measured on (a 35-token chat at N = 83 loses
         * its system prompt), so plan for at least that length */
        int i = 0;   /* predictions are sorted by length; profiled ones have a loss */
        while (i < moa_plan_n_predicted(pl) && isnan(moa_plan_predicted_loss(pl, i))) i++;
        if (i < moa_plan_n_predicted(pl) && moa_plan_predicted_length(pl, i) > want)
            want = moa_plan_predicted_length(pl, i) < g->m->hp.n_ctx_train ? moa_plan_predicted_length(pl, i) : g->m->hp.n_ctx_train;
    }
    cp.n_ctx = (int32_t)want;
    cp.plan = pl;
    moa_status st;
    if ((st = moa_ctx_create(g->m, &cp, &g->ctx)) < 0) return cli_fail("creating context", st);
    if (pl)
        fprintf(stderr, "moa: plan density %.3f at %ld tokens, KV cache %.2f MiB\n",
                moa_plan_density(pl, want), want, moa_ctx_kv_bytes(g->ctx) / 1048576.0);
    g->want = want;
    return CLI_GO_ON;
}

/* Generation: text to stdout as it comes, ids (--ids) and timings to stderr. Exit code. */
static int run_generation(const gen_args *a, gen_run *g) {
    moa_gen_params gp = moa_gen_default_params();
    gp.n_predict = (int32_t)a->n_predict;
    gp.sampler.temperature = (float)a->temp;
    gp.sampler.top_k = (int32_t)a->top_k;
    gp.sampler.top_p = (float)a->top_p;
    gp.sampler.seed = (uint64_t)a->seed;
    if (!a->chat) fputs(g->input, stdout);
    moa_gen_stats gs;
    int32_t *out_ids = NULL, n_out = 0;
    moa_status st;
    if ((st = moa_generate(g->ctx, g->tok, g->ids, g->n_ids, &gp, print_piece, NULL, &out_ids, &n_out, &gs)) < 0) {
        fputc('\n', stdout);
        return cli_fail("generating", st);
    }
    fputc('\n', stdout);
    fflush(stdout);
    if (a->show_ids) {
        fprintf(stderr, "ids:");
        for (int32_t i = 0; i < n_out; i++) fprintf(stderr, " %d", out_ids[i]);
        fputc('\n', stderr);
    }
    free(out_ids);
    fprintf(stderr, "moa: load %.2f s | prompt %d tokens, %.1f tok/s | generated %d tokens, %.1f tok/s%s\n",
            g->t_load, gs.n_prompt, gs.prefill_seconds > 0 ? gs.n_prompt / gs.prefill_seconds : 0,
            gs.n_generated, gs.decode_seconds > 0 ? gs.n_generated / gs.decode_seconds : 0,
            gs.stopped_at_eog ? " (end of turn)" : gs.stopped_ctx_full ? " (context full: use a plan or --streaming to go on)" : "");
    return 0;
}

int moa_cmd_generate(int argc, char **argv) {
    gen_args a = {.n_predict = 128, .seed = 42, .top_p = 1, .u_sink = -1};
    int rc = parse_flags(argc, argv, &a);
    if (rc != CLI_GO_ON) return rc;
    gen_run g = {0};
    rc = load_prompt(&a, &g);
    if (rc == CLI_GO_ON) rc = create_context(&a, &g);
    if (rc == CLI_GO_ON) rc = run_generation(&a, &g);
    free(g.ids);
    free(g.text);
    free(g.rendered);
    moa_ctx_free(g.ctx);
    moa_plan_free(g.pl);
    moa_tokenizer_free(g.tok);
    moa_model_free(g.m);
    return rc;
}
