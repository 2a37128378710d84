/* cmd-calib.c - `moa calib`: build a calibration set answered by the dense model itself. */
#include "cli.h"
#include "args.h"
#include "moa/calib.h"
#include "moa/model.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void usage(FILE *fp) {
    fprintf(fp,
        "usage: moa calib -m MODEL --task TASKS --lengths L,... --samples K -o calib.h5 [options]\n"
        "       moa calib --dump calib.h5 [-m MODEL] [--first I] [--count N]\n\n"
        "Builds long prompts with long-range dependencies, fitted to token lengths with the\n"
        "model's tokenizer and chat template, and answers each greedily with the dense model;\n"
        "the answers are what the profiler's loss is computed on (docs/calibration.md).\n\n"
        "  -m, --model PATH        GGUF model (default: $MOA_MODEL)\n"
        "      --task LIST         comma list, cycled over samples: lines, needle (single),\n"
        "                          needle-multikey, needle-multivalue, needle-multiquery,\n"
        "                          longdep, jsonl:PATH (default longdep)\n"
        "      --lengths L,...     target prompt lengths in tokens (k suffix: 1024), e.g. 1k,2k\n"
        "      --samples K[,K...]  samples per length (default 8), or one count per length\n"
        "      --seed S            generator seed (default 0)\n"
        "      --max-new N         response tokens at most (default 128)\n"
        "      --words PATH        word list (default %s)\n"
        "      --resume            continue from the checkpoint of an interrupted run\n"
        "  -o, --output PATH       calibration file to write (atomically)\n"
        "      --dump PATH         print the samples of a calibration file as text\n"
        "      --first I, --count N  with --dump: which samples (default all)\n"
        "Progress (samples, tokens/s, ETA) goes to stderr.\n", MOA_WORDLIST_DEFAULT_PATH);
}

static moa_status detok(void *data, const int32_t *ids, int n, char **text) {
    return moa_tokenizer_decode(data, ids, n, 1, text);
}

static int dump(const char *path, const char *model, long first, long count) {
    moa_calib_file *f;
    moa_status st = moa_calib_read(path, &f);
    if (st < 0) return cli_fail("reading calibration file", st);
    moa_model *m = NULL;
    moa_tokenizer *tok = NULL;
    if (model) {
        moa_model_params mp = moa_model_default_params();
        mp.f32_weights = 0;
        mp.compute_sha256 = 0;
        if ((st = moa_model_load(model, &mp, &m)) >= 0) st = moa_tokenizer_from_gguf(m->gguf, &tok);
        if (st < 0) { moa_calib_file_free(f); moa_model_free(m); return cli_fail("loading tokenizer", st); }
    }
    st = moa_calib_dump(f, first, count, tok ? detok : NULL, tok, stdout);
    moa_tokenizer_free(tok);
    moa_model_free(m);
    moa_calib_file_free(f);
    return st < 0 ? cli_fail("dump", st) : 0;
}

/* Parses one --task item into spec (jsonl corpora are loaded into *corpus). */
static int parse_task(const char *name, const moa_wordlist *words, moa_task_spec *spec,
                      moa_jsonl_corpus **corpus) {
    if (!strncmp(name, "jsonl:", 6)) {
        moa_jsonl_params jp = moa_jsonl_default_params();
        moa_status st = moa_jsonl_load(name + 6, &jp, corpus);
        if (st < 0) return cli_fail("loading JSONL corpus", st);
        *spec = moa_task_spec_default(MOA_TASK_JSONL);
        spec->corpus = *corpus;
        return 0;
    }
    static const struct { const char *name; moa_task_kind kind; moa_needle_variant v; } names[] = {
        {"lines", MOA_TASK_LINES, 0}, {"needle", MOA_TASK_NEEDLE, MOA_NEEDLE_SINGLE},
        {"needle-single", MOA_TASK_NEEDLE, MOA_NEEDLE_SINGLE},
        {"needle-multikey", MOA_TASK_NEEDLE, MOA_NEEDLE_MULTIKEY},
        {"needle-multivalue", MOA_TASK_NEEDLE, MOA_NEEDLE_MULTIVALUE},
        {"needle-multiquery", MOA_TASK_NEEDLE, MOA_NEEDLE_MULTIQUERY},
        {"longdep", MOA_TASK_LONGDEP, 0},
    };
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        if (strcmp(name, names[i].name)) continue;
        *spec = moa_task_spec_default(names[i].kind);
        spec->words = words;
        spec->needle_variant = names[i].v;
        return 0;
    }
    fprintf(stderr, "moa calib: unknown task '%s'\n", name);
    return 2;
}

int moa_cmd_calib(int argc, char **argv) {
    const char *model = NULL, *tasks = "longdep", *lengths = NULL, *out = NULL, *dump_path = NULL,
               *words_path = NULL, *samples_arg = "8";
    long seed = 0, max_new = 128, first = 0, count = -1;
    int resume = 0;
    for (int i = 1; i < argc; i++) {
        int r;
        if (arg_flag(argv, i, "-h", "--help")) { usage(stdout); return 0; }
        if (arg_flag(argv, i, NULL, "--resume")) { resume = 1; continue; }
        if ((r = arg_str(argc, argv, &i, "-m", "--model", &model)) ||
            (r = arg_str(argc, argv, &i, NULL, "--task", &tasks)) ||
            (r = arg_str(argc, argv, &i, NULL, "--lengths", &lengths)) ||
            (r = arg_str(argc, argv, &i, "-o", "--output", &out)) ||
            (r = arg_str(argc, argv, &i, NULL, "--dump", &dump_path)) ||
            (r = arg_str(argc, argv, &i, NULL, "--words", &words_path)) ||
            (r = arg_str(argc, argv, &i, NULL, "--samples", &samples_arg)) ||
            (r = arg_long(argc, argv, &i, NULL, "--seed", &seed, 0, 0x7fffffffL)) ||
            (r = arg_long(argc, argv, &i, NULL, "--max-new", &max_new, 1, 1 << 16)) ||
            (r = arg_long(argc, argv, &i, NULL, "--first", &first, 0, 1L << 40)) ||
            (r = arg_long(argc, argv, &i, NULL, "--count", &count, -1, 1L << 40))) {
            if (r < 0) return 2;
            continue;
        }
        return cli_unknown_arg("calib", argv[i], usage);
    }
    if (dump_path) return dump(dump_path, model ? model : getenv("MOA_MODEL"), first, count);
    if (!lengths || !out) { fprintf(stderr, "moa calib: --lengths and -o are required\n"); usage(stderr); return 2; }
    long lens[64];
    int n_len = moa_parse_int_list(lengths, lens, 64);
    if (n_len <= 0) { fprintf(stderr, "moa calib: bad --lengths '%s'\n", lengths); return 2; }
    long samples[64];
    int n_samples = moa_parse_int_list(samples_arg, samples, 64);
    int samples_ok = n_samples == 1 || n_samples == n_len;
    for (int i = 0; samples_ok && i < n_samples; i++) samples_ok = samples[i] >= 1 && samples[i] <= (1 << 20);
    if (!samples_ok) {
        fprintf(stderr, "moa calib: bad --samples '%s' (expected one count >= 1, or one per length: %d)\n",
                samples_arg, n_len);
        return 2;
    }

    int rc = 1;
    moa_status st;
    moa_model *m = NULL;
    moa_tokenizer *tok = NULL;
    moa_wordlist *words = NULL;
    moa_jsonl_corpus *corpora[16] = {0};
    moa_task_spec specs[16];
    int n_specs = 0, lens_i[64], samples_i[64];
    moa_ctx *ctx = NULL;
    if ((rc = cli_load_model(model, &m, &tok))) goto out;
    rc = 1;
    if ((st = moa_wordlist_load(words_path, &words)) < 0) { rc = cli_fail("loading word list", st); goto out; }
    char *list = moa_strdup(tasks);
    for (char *save = NULL, *t = strtok_r(list, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
        if (n_specs >= 16) { fprintf(stderr, "moa calib: at most 16 tasks\n"); free(list); rc = 2; goto out; }
        int r = parse_task(t, words, &specs[n_specs], &corpora[n_specs]);
        if (r) { free(list); rc = r; goto out; }
        n_specs++;
    }
    free(list);
    long longest = 0;
    for (int i = 0; i < n_len; i++) {
        if (lens[i] < 16 || lens[i] + max_new > m->hp.n_ctx_train) {
            fprintf(stderr, "moa calib: length %ld + --max-new %ld must fit the model's context %d\n",
                    lens[i], max_new, m->hp.n_ctx_train);
            rc = 2;
            goto out;
        }
        lens_i[i] = (int)lens[i];
        samples_i[i] = (int)samples[n_samples == 1 ? 0 : i];
        if (lens[i] > longest) longest = lens[i];
    }
    moa_ctx_params cp = moa_ctx_default_params();
    cp.n_ctx = (int32_t)(longest + max_new + 64);
    if (cp.n_ctx > m->hp.n_ctx_train) cp.n_ctx = m->hp.n_ctx_train;
    if ((st = moa_ctx_create(m, &cp, &ctx)) < 0) { rc = cli_fail("creating context", st); goto out; }
    moa_model_io io = {tok, ctx, 1};
    moa_calib_tokenizer ct = moa_model_io_tokenizer(&io);
    moa_calib_build_params bp = moa_calib_build_default_params();
    bp.tasks = specs;
    bp.n_tasks = n_specs;
    bp.lengths = lens_i;
    bp.n_lengths = n_len;
    bp.samples_per_length = samples_i[0];
    bp.samples_at = n_samples > 1 ? samples_i : NULL;   /* one count keeps the old file key */
    bp.seed = (uint64_t)seed;
    bp.max_new_tokens = (int)max_new;
    bp.model_sha256 = m->sha256;
    bp.tokenizer_id = moa_tokenizer_pre(tok);
    const char *tmpl = NULL;
    moa_gguf_get_str(m->gguf, "tokenizer.chat_template", &tmpl, NULL);
    bp.chat_template = tmpl ? tmpl : "";
    bp.resume = resume;
    moa_progress_bar bar;
    moa_progress_bar_init(&bar, "calib", "samples");
    st = moa_calib_build(&bp, &ct, moa_model_io_respond, &io, moa_progress_bar_cb, &bar, out);
    moa_progress_bar_finish(&bar);
    if (st < 0) { rc = cli_fail("calib", st); goto out; }
    fprintf(stderr, "moa: wrote %s\n", out);
    rc = 0;
out:
    moa_ctx_free(ctx);
    for (int i = 0; i < 16; i++) moa_jsonl_free(corpora[i]);
    moa_wordlist_free(words);
    moa_tokenizer_free(tok);
    moa_model_free(m);
    return rc;
}
