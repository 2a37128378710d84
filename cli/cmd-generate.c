/* cmd-generate.c - `moa generate`: text generation with the dense (or a compressed) model. */
#include "cli.h"
#include "args.h"
#include "generate.h"

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

int moa_cmd_generate(int argc, char **argv) {
    const char *model = NULL, *prompt = NULL, *file = NULL, *system = NULL, *plan = NULL;
    const char *kv_type = NULL;
    long n_predict = 128, n_ctx = 0, top_k = 0, seed = 42;
    double temp = 0, top_p = 1, uniform = 0;
    long u_sink = -1, u_block = 0;   /* --uniform's sinks and block (64, 64) */
    int streaming = 0;
    int chat = 0, show_ids = 0;
    for (int i = 1; i < argc; i++) {
        int r;
        if (arg_flag(argv, i, "-h", "--help")) { usage(stdout); return 0; }
        if (arg_flag(argv, i, NULL, "--chat")) { chat = 1; continue; }
        if (arg_flag(argv, i, NULL, "--ids")) { show_ids = 1; continue; }
        if (arg_flag(argv, i, NULL, "--streaming")) { streaming = 1; continue; }
        if ((r = arg_str(argc, argv, &i, "-m", "--model", &model)) ||
            (r = arg_str(argc, argv, &i, "-p", "--prompt", &prompt)) ||
            (r = arg_str(argc, argv, &i, "-f", "--file", &file)) ||
            (r = arg_str(argc, argv, &i, NULL, "--system", &system)) ||
            (r = arg_str(argc, argv, &i, NULL, "--plan", &plan)) ||
            (r = arg_str(argc, argv, &i, NULL, "--kv-type", &kv_type)) ||
            (r = arg_long(argc, argv, &i, "-n", "--n-predict", &n_predict, 0, 1 << 24)) ||
            (r = arg_long(argc, argv, &i, "-c", "--ctx", &n_ctx, 1, 1 << 24)) ||
            (r = arg_long(argc, argv, &i, NULL, "--top-k", &top_k, 0, 1 << 24)) ||
            (r = arg_long(argc, argv, &i, "-s", "--seed", &seed, 0, 0x7fffffffL)) ||
            (r = arg_double(argc, argv, &i, NULL, "--temp", &temp, 0, 100)) ||
            (r = arg_double(argc, argv, &i, NULL, "--uniform", &uniform, 1e-6, 1)) ||
            (r = arg_long(argc, argv, &i, NULL, "--sink", &u_sink, 0, 1 << 20)) ||
            (r = arg_long(argc, argv, &i, NULL, "--block", &u_block, 1, 1 << 20)) ||
            (r = arg_double(argc, argv, &i, NULL, "--top-p", &top_p, 1e-6, 1))) {
            if (r < 0) return 2;
            continue;
        }
        fprintf(stderr, "moa generate: unknown argument '%s'\n", argv[i]);
        usage(stderr);
        return 2;
    }
    if (!prompt == !file) {
        fprintf(stderr, "moa generate: give exactly one of -p TEXT or -f FILE\n");
        usage(stderr);
        return 2;
    }
    moa_kv_type kvt = MOA_KV_F16;
    if (kv_type && moa_kv_type_parse(kv_type, &kvt) < 0) {
        fprintf(stderr, "moa generate: --kv-type: %s\n", moa_last_error());
        return 2;
    }
    if (!(model = cli_model_path(model))) return 2;

    moa_model *m = NULL;
    moa_tokenizer *tok = NULL;
    moa_ctx *ctx = NULL;
    moa_plan *pl = NULL;
    char *text = NULL, *rendered = NULL;
    int32_t *ids = NULL, n_ids = 0;
    int rc = 1;
    moa_status st;
    moa_model_params mp = moa_model_default_params();
    mp.compute_sha256 = 0;
    if (moa_ctx_default_params().device == MOA_DEVICE_CUDA)
    {
        mp.f32_weights = 0;   /* the device gets its own copy; the CPU never multiplies */
        mp.int8_pack = 0;
    }
    double t0 = moa_time_now();
    if ((st = moa_model_load(model, &mp, &m)) < 0) { rc = cli_fail("loading model", st); goto out; }
    if ((st = moa_tokenizer_from_gguf(m->gguf, &tok)) < 0) { rc = cli_fail("loading tokenizer", st); goto out; }
    double t_load = moa_time_now() - t0;
    if (file) {
        size_t len;
        if ((st = moa_read_file(file, &text, &len)) < 0) { rc = cli_fail("reading prompt", st); goto out; }
    } else if (!(text = moa_strdup(prompt))) { rc = cli_fail("prompt", MOA_ERR_NOMEM); goto out; }
    const char *input = text;
    if (chat) {
        moa_chat_msg msgs[2];
        int nm = 0;
        if (system) { msgs[nm].role = "system"; msgs[nm].content = system; nm++; }
        msgs[nm].role = "user"; msgs[nm].content = text; nm++;
        if ((st = moa_chat_render(tok, msgs, nm, 1, &rendered)) < 0) { rc = cli_fail("chat template", st); goto out; }
        input = rendered;
    }
    if ((st = moa_tokenizer_encode(tok, input, strlen(input), 1, &ids, &n_ids)) < 0) { rc = cli_fail("tokenizing", st); goto out; }
    if (n_ids == 0) { fprintf(stderr, "moa generate: the prompt is empty\n"); rc = 2; goto out; }
    moa_ctx_params cp = moa_ctx_default_params();
    long want = n_ctx ? n_ctx : n_ids + n_predict;
    if (want > m->hp.n_ctx_train && !n_ctx) want = m->hp.n_ctx_train;
    cp.pos_mode = streaming ? MOA_POS_STREAMING : MOA_POS_ABSOLUTE;
    cp.kv_type = kvt;
    if ((rc = cli_plan_from_args(plan, uniform, u_sink, u_block, m, want, &pl)) != 0) goto out;
    rc = 1;
    if (plan && !n_ctx) {
        /* a plan's rules were fitted at its profiled lengths; far below the shortest, windows
         * shrink to less than anything it was measured on (a 35-token chat at N = 83 loses
         * its system prompt), so plan for at least that length */
        int i = 0;   /* predictions are sorted by length; profiled ones have a loss */
        while (i < moa_plan_n_predicted(pl) && isnan(moa_plan_predicted_loss(pl, i))) i++;
        if (i < moa_plan_n_predicted(pl) && moa_plan_predicted_length(pl, i) > want)
            want = moa_plan_predicted_length(pl, i) < m->hp.n_ctx_train ? moa_plan_predicted_length(pl, i) : m->hp.n_ctx_train;
    }
    cp.n_ctx = (int32_t)want;
    cp.plan = pl;
    if ((st = moa_ctx_create(m, &cp, &ctx)) < 0) { rc = cli_fail("creating context", st); goto out; }
    if (pl)
        fprintf(stderr, "moa: plan density %.3f at %ld tokens, KV cache %.2f MiB\n",
                moa_plan_density(pl, want), want, moa_ctx_kv_bytes(ctx) / 1048576.0);
    moa_gen_params gp = moa_gen_default_params();
    gp.n_predict = (int32_t)n_predict;
    gp.sampler.temperature = (float)temp;
    gp.sampler.top_k = (int32_t)top_k;
    gp.sampler.top_p = (float)top_p;
    gp.sampler.seed = (uint64_t)seed;
    if (!chat) fputs(input, stdout);
    moa_gen_stats gs;
    int32_t *out_ids = NULL, n_out = 0;
    if ((st = moa_generate(ctx, tok, ids, n_ids, &gp, print_piece, NULL, &out_ids, &n_out, &gs)) < 0) {
        fputc('\n', stdout);
        rc = cli_fail("generating", st);
        goto out;
    }
    fputc('\n', stdout);
    fflush(stdout);
    if (show_ids) {
        fprintf(stderr, "ids:");
        for (int32_t i = 0; i < n_out; i++) fprintf(stderr, " %d", out_ids[i]);
        fputc('\n', stderr);
    }
    free(out_ids);
    fprintf(stderr, "moa: load %.2f s | prompt %d tokens, %.1f tok/s | generated %d tokens, %.1f tok/s%s\n",
            t_load, gs.n_prompt, gs.prefill_seconds > 0 ? gs.n_prompt / gs.prefill_seconds : 0,
            gs.n_generated, gs.decode_seconds > 0 ? gs.n_generated / gs.decode_seconds : 0,
            gs.stopped_at_eog ? " (end of turn)" : gs.stopped_ctx_full ? " (context full: use a plan or --streaming to go on)" : "");
    rc = 0;
out:
    free(ids);
    free(text);
    free(rendered);
    moa_ctx_free(ctx);
    moa_plan_free(pl);
    moa_tokenizer_free(tok);
    moa_model_free(m);
    return rc;
}
