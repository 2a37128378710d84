/* cmd-eval.c - `moa eval`: LongEval lines on dense / uniform / planned attention, comparisons
 * of several runs, and the response loss of a calibration set. Work is done by eval/. */
#include "cli.h"
#include "args.h"
#include "moa/eval.h"
#include "moa/model.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void usage(FILE *fp) {
    fprintf(fp,
        "usage: moa eval longeval -m MODEL [--dense | --uniform D | --plan PLAN] --lengths L,...\n"
        "                         -o results.json [options]\n"
        "       moa eval compare A.json B.json ... [-o table.md] [--svg FILE]\n"
        "       moa eval loss -m MODEL -c calib.h5 [--dense | --uniform D | --plan PLAN] [options]\n\n"
        "longeval: LongEval lines retrieval (docs/eval.md). For each length and each of the 10\n"
        "position bins of the queried line, K seeded prompts fitted to the length with the model's\n"
        "tokenizer and chat template, answered greedily, scored on the last number of the answer.\n"
        "The attention is evaluated at the planned context N = length + max-new.\n"
        "  -m, --model PATH        GGUF model (default: $MOA_MODEL)\n"
        "      --dense             dense attention (default)\n"
        "      --uniform D         StreamingLLM baseline: 64 sinks + one window, density D at each N\n"
        "      --plan PATH         a moa-plan (checked against the model)\n"
        "      --kv-type T         KV cache storage: f32, f16 (default), bf16, q8_0\n"
        "      --uniform-like PATH the uniform baseline at that plan's density at every length\n"
        "                          (with the plan's sink and block)\n"
        "      --sink S, --block B sinks and window granularity of --uniform (default 64, 64)\n"
        "      --lengths L,...     prompt lengths in tokens (k suffix: 1024); length + max-new must\n"
        "                          fit the model's context\n"
        "      --task T            lines (LongEval, default) or a RULER-style retrieval task:\n"
        "                          needle, needle-multikey, needle-multivalue, needle-multiquery\n"
        "      --samples K         samples per (length, bin) cell (default 2)\n"
        "      --seed S            generator seed (default 0)\n"
        "      --max-new N         new tokens at most (default 100, as LongEval; shorter budgets\n"
        "                          cut the small model's verbose answers before the number)\n"
        "      --words PATH        word list for labels (default %s)\n"
        "      --label NAME        run label (default: dense, uniform-D or plan:FILE)\n"
        "  -o, --output PATH       results JSON (written atomically)\n"
        "      --log PATH          results log, one JSON line per finished sample (default OUTPUT.log)\n"
        "      --resume            keep the finished samples of a log with the same settings\n"
        "                          (without it, an existing log is started over)\n"
        "      --collect           run nothing: write the outputs from the samples already in the\n"
        "                          log (same settings; unfinished cells show as n/a)\n"
        "      --reference PATH    dense results JSON: adds accuracy >= 0.9 x reference\n"
        "      --csv PREFIX        PREFIX-samples.csv and PREFIX-cells.csv\n"
        "      --svg FILE          heat map (bins x lengths) as SVG\n"
        "      --png FILE          heat map as PNG\n"
        "compare: a markdown table of accuracy per length (stdout, or -o FILE) and, with --svg,\n"
        "  a chart of accuracy vs length, one line per results file.\n"
        "loss: mean cross-entropy of the calibration responses (teacher-forced) under the\n"
        "  attention setting, planned context N = each sample's length; JSON on stdout (or -o).\n"
        "  -c, --calib PATH        calib.h5\n"
        "      --bucket N          only samples of length bucket N (default: all)\n"
        "Progress (samples, tokens/s, ETA) goes to stderr. Exit codes: 0 ok, 1 failure, 2 usage.\n",
        MOA_WORDLIST_DEFAULT_PATH);
}

/* Attention flags shared by longeval and loss. */
typedef struct {
    const char *plan_path;
    const char *uniform_like;   /* --uniform-like PLAN: uniform at that plan's density */
    double uniform;
    long sink, block;           /* of the uniform baseline (default 64, 64) */
    int dense;
    const char *kv_type;        /* --kv-type f32|f16|bf16|q8_0 (default f16) */
} attn_args;

static int parse_attn(int argc, char **argv, int *i, attn_args *a) {
    int r;
    if (arg_flag(argv, *i, NULL, "--dense")) { a->dense = 1; return 1; }
    if ((r = arg_str(argc, argv, i, NULL, "--plan", &a->plan_path)) ||
        (r = arg_str(argc, argv, i, NULL, "--uniform-like", &a->uniform_like)) ||
        (r = arg_double(argc, argv, i, NULL, "--uniform", &a->uniform, 1e-6, 1.0)) ||
        (r = arg_long(argc, argv, i, NULL, "--sink", &a->sink, 0, 1 << 20)) ||
        (r = arg_long(argc, argv, i, NULL, "--block", &a->block, 1, 1 << 20)) ||
        (r = arg_str(argc, argv, i, NULL, "--kv-type", &a->kv_type)))
        return r;
    return 0;
}

/* Fills *att (and *plan, owned) from the flags; returns 0 or an exit code. */
static int make_attn(const attn_args *a, const moa_model *m, moa_eval_attention *att, moa_plan **plan) {
    *att = moa_eval_attention_default();
    *plan = NULL;
    if (cli_kv_type("eval", a->kv_type, &att->kv_type) != 0) return 2;
    if (a->dense + (a->plan_path != NULL) + (a->uniform > 0) + (a->uniform_like != NULL) > 1) {
        fprintf(stderr, "moa eval: give one of --dense, --uniform D, --uniform-like PLAN, --plan PLAN\n");
        return 2;
    }
    if ((a->sink >= 0 || a->block > 0) && !(a->uniform > 0) && !a->uniform_like) {
        fprintf(stderr, "moa eval: --sink and --block go with --uniform D\n");
        return 2;
    }
    if (a->uniform_like) {
        int rc = cli_plan_from_args(a->uniform_like, 0, -1, 0, m, m->hp.n_ctx_train, plan);
        if (rc) return rc;
        att->kind = MOA_EVAL_UNIFORM;
        att->density = 1;
        att->match = *plan;
        att->sink = moa_plan_sink(*plan);   /* the plan's sinks and block */
        att->block = moa_plan_block(*plan);
        if (a->sink >= 0 || a->block > 0) {
            fprintf(stderr, "moa eval: --uniform-like takes the plan's sink and block; drop --sink/--block\n");
            return 2;
        }
    } else if (a->uniform > 0) {
        att->kind = MOA_EVAL_UNIFORM;
        att->density = a->uniform;
        if (a->sink >= 0) att->sink = (int)a->sink;
        if (a->block > 0) att->block = (int)a->block;
    } else if (a->plan_path) {
        int rc = cli_plan_from_args(a->plan_path, 0, -1, 0, m, m->hp.n_ctx_train, plan);
        if (rc) return rc;
        att->kind = MOA_EVAL_PLAN;
        att->plan = *plan;
        att->plan_path = a->plan_path;
    }
    return 0;
}

/* The command line of `moa eval longeval`. */
typedef struct {
    const char *model, *lengths, *out, *log_path, *ref_path, *csv, *svg, *png, *words_path, *label, *task;
    long samples, seed, max_new;
    int resume, collect;
    attn_args aa;
    long lens[256];         /* --lengths */
    int lens_i[256], n_len;
} longeval_args;

/* What a longeval run holds (released at its end) and what its steps pass on. */
typedef struct {
    moa_model *m;
    moa_tokenizer *tok;
    moa_wordlist *words;
    moa_plan *plan;
    moa_eval_engine *eng;
    moa_longeval_results *res, *ref;
    char *auto_label, *auto_log, *md;
    const char *log_path;   /* --log, or OUTPUT.log */
    moa_eval_attention att;
} longeval_run;

/* Reads and checks the flags; CLI_GO_ON, or the exit code (0 after --help, 2). */
static int longeval_flags(int argc, char **argv, longeval_args *a) {
    for (int i = 1; i < argc; i++) {
        int r;
        if (arg_flag(argv, i, "-h", "--help")) { usage(stdout); return 0; }
        if (arg_flag(argv, i, NULL, "--resume")) { a->resume = 1; continue; }
        if (arg_flag(argv, i, NULL, "--collect")) { a->collect = a->resume = 1; continue; }
        if ((r = parse_attn(argc, argv, &i, &a->aa)) ||
            (r = arg_str(argc, argv, &i, "-m", "--model", &a->model)) ||
            (r = arg_str(argc, argv, &i, NULL, "--lengths", &a->lengths)) ||
            (r = arg_str(argc, argv, &i, "-o", "--output", &a->out)) ||
            (r = arg_str(argc, argv, &i, NULL, "--log", &a->log_path)) ||
            (r = arg_str(argc, argv, &i, NULL, "--reference", &a->ref_path)) ||
            (r = arg_str(argc, argv, &i, NULL, "--csv", &a->csv)) ||
            (r = arg_str(argc, argv, &i, NULL, "--svg", &a->svg)) ||
            (r = arg_str(argc, argv, &i, NULL, "--png", &a->png)) ||
            (r = arg_str(argc, argv, &i, NULL, "--words", &a->words_path)) ||
            (r = arg_str(argc, argv, &i, NULL, "--label", &a->label)) ||
            (r = arg_str(argc, argv, &i, NULL, "--task", &a->task)) ||
            (r = arg_long(argc, argv, &i, NULL, "--samples", &a->samples, 1, 1 << 20)) ||
            (r = arg_long(argc, argv, &i, NULL, "--seed", &a->seed, 0, 0x7fffffffL)) ||
            (r = arg_long(argc, argv, &i, NULL, "--max-new", &a->max_new, 1, 1 << 16))) {
            if (r < 0) return 2;
            continue;
        }
        return cli_unknown_arg("eval longeval", argv[i], usage);
    }
    if (!a->lengths || !a->out) {
        fprintf(stderr, "moa eval longeval: --lengths and -o are required\n");
        usage(stderr);
        return 2;
    }
    a->n_len = moa_parse_int_list(a->lengths, a->lens, 256);
    if (a->n_len <= 0) { fprintf(stderr, "moa eval longeval: bad --lengths '%s'\n", a->lengths); return 2; }
    for (int i = 0; i < a->n_len; i++) {
        if (a->lens[i] < 16 || a->lens[i] > (1L << 24)) {
            fprintf(stderr, "moa eval longeval: length %ld out of range [16, %d]\n", a->lens[i], 1 << 24);
            return 2;
        }
        a->lens_i[i] = (int)a->lens[i];
    }
    if (moa_longeval_task_check(a->task) < 0) { fprintf(stderr, "moa eval longeval: --task: %s\n", moa_last_error()); return 2; }
    if (!(a->model = cli_model_path(a->model))) return 2;
    return CLI_GO_ON;
}

/* The reference, model, attention, word list, engine, label and log path. CLI_GO_ON or code. */
static int longeval_setup(const longeval_args *a, longeval_run *r) {
    moa_status st;
    int rc;
    if (a->ref_path && (st = moa_longeval_read_json(a->ref_path, &r->ref)) < 0) return cli_fail("reading --reference", st);
    if ((rc = cli_load_model(a->model, &r->m, &r->tok))) return rc;
    for (int i = 0; i < a->n_len; i++)
        if (a->lens[i] + a->max_new > r->m->hp.n_ctx_train) {
            fprintf(stderr, "moa eval longeval: length %ld + --max-new %ld exceeds the model's context %d "
                    "(use at most %ld)\n", a->lens[i], a->max_new, r->m->hp.n_ctx_train,
                    r->m->hp.n_ctx_train - a->max_new);
            return 2;
        }
    if ((rc = make_attn(&a->aa, r->m, &r->att, &r->plan))) return rc;
    if ((st = moa_wordlist_load(a->words_path, &r->words)) < 0) return cli_fail("loading word list", st);
    if ((st = moa_eval_engine_create(r->m, r->tok, &r->att, 1, &r->eng)) < 0) return cli_fail("eval engine", st);
    r->auto_label = moa_eval_attention_label(&r->att);
    r->log_path = a->log_path;
    if (!r->log_path) {
        size_t n = strlen(a->out) + 8;
        if ((r->auto_log = malloc(n))) snprintf(r->auto_log, n, "%s.log", a->out);
        r->log_path = r->auto_log;
    }
    if (!r->auto_label || !r->log_path) return cli_fail("eval", moa_err(MOA_ERR_NOMEM, "out of memory"));
    return CLI_GO_ON;
}

/* The run (progress on stderr), then the outputs: pictures and tables first, the results
 * JSON (-o) last, and the accuracy table on stdout. Exit code. */
static int longeval_run_write(const longeval_args *a, longeval_run *r) {
    moa_status st;
    moa_longeval_params p = moa_longeval_default_params();
    p.lengths = a->lens_i;
    p.n_lengths = a->n_len;
    p.samples_per_cell = (int)a->samples;
    p.seed = (uint64_t)a->seed;
    p.max_new_tokens = (int)a->max_new;
    p.task = a->task;
    p.words = r->words;
    p.label = a->label ? a->label : r->auto_label;
    p.model_settings = moa_eval_engine_settings(r->eng);
    p.log_path = r->log_path;
    p.resume = a->resume;
    p.collect_only = a->collect;
    moa_eval_model em = moa_eval_engine_model(r->eng);
    moa_progress_bar bar;
    moa_progress_bar_init(&bar, "longeval", "samples");
    fprintf(stderr, "moa eval: %s, lengths %s, %ld sample(s) per cell x 10 bins, log %s\n", p.label, a->lengths,
            a->samples, r->log_path);
    st = moa_longeval_run(&p, &em, moa_progress_bar_cb, &bar, &r->res);
    moa_progress_bar_finish(&bar);
    if (st < 0) return cli_fail("longeval", st);
    if (r->ref && (st = moa_longeval_set_reference(r->res, r->ref)) < 0) return cli_fail("reference", st);
    /* pictures and tables first, the results JSON (-o) last: -o exists only if all succeeded */
    if (a->csv && (st = moa_longeval_write_csv(r->res, a->csv)) < 0) return cli_fail("writing CSV", st);
    if (a->svg && (st = moa_longeval_write_heatmap_svg(r->res, a->svg)) < 0) return cli_fail("writing SVG", st);
    if (a->png && (st = moa_longeval_write_heatmap_png(r->res, a->png)) < 0) return cli_fail("writing PNG", st);
    if ((st = moa_longeval_write_json(r->res, a->out)) < 0) return cli_fail("writing results", st);
    fprintf(stderr, "moa: wrote %s\n", a->out);
    const moa_longeval_results *one[1] = {r->res};
    if ((st = moa_longeval_compare_md(one, 1, &r->md)) < 0) return cli_fail("table", st);
    fputs(r->md, stdout);
    return 0;
}

static int cmd_longeval(int argc, char **argv) {
    longeval_args a = {.task = "lines", .samples = 2, .max_new = 100, .aa = {.sink = -1}};
    int rc = longeval_flags(argc, argv, &a);
    if (rc != CLI_GO_ON) return rc;
    longeval_run r = {0};
    rc = longeval_setup(&a, &r);
    if (rc == CLI_GO_ON) rc = longeval_run_write(&a, &r);
    free(r.md);
    free(r.auto_label);
    free(r.auto_log);
    moa_longeval_results_free(r.res);
    moa_longeval_results_free(r.ref);
    moa_eval_engine_free(r.eng);
    moa_plan_free(r.plan);
    moa_wordlist_free(r.words);
    moa_tokenizer_free(r.tok);
    moa_model_free(r.m);
    return rc;
}

static int cmd_compare(int argc, char **argv) {
    const char *out = NULL, *svg = NULL;
    const char *files[64];
    int n = 0;
    for (int i = 1; i < argc; i++) {
        int r;
        if (arg_flag(argv, i, "-h", "--help")) { usage(stdout); return 0; }
        if ((r = arg_str(argc, argv, &i, "-o", "--output", &out)) ||
            (r = arg_str(argc, argv, &i, NULL, "--svg", &svg))) {
            if (r < 0) return 2;
            continue;
        }
        if (argv[i][0] == '-' && argv[i][1]) return cli_unknown_arg("eval compare", argv[i], usage);
        if (n >= 64) { fprintf(stderr, "moa eval compare: at most 64 results files\n"); return 2; }
        files[n++] = argv[i];
    }
    if (n < 1) { fprintf(stderr, "moa eval compare: give at least one results JSON\n"); usage(stderr); return 2; }
    moa_longeval_results *runs[64] = {0};
    int rc = 1;
    char *md = NULL;
    moa_status st;
    for (int i = 0; i < n; i++)
        if ((st = moa_longeval_read_json(files[i], &runs[i])) < 0) { rc = cli_fail("reading results", st); goto out; }
    if ((st = moa_longeval_compare_md((const moa_longeval_results *const *)runs, n, &md)) < 0) {
        rc = cli_fail("table", st);
        goto out;
    }
    if (out) {
        if ((st = moa_eval_write_text(out, md)) < 0) { rc = cli_fail("writing table", st); goto out; }
        fprintf(stderr, "moa: wrote %s\n", out);
    } else {
        fputs(md, stdout);
    }
    if (svg) {
        if ((st = moa_longeval_compare_svg((const moa_longeval_results *const *)runs, n, svg)) < 0) {
            rc = cli_fail("writing SVG", st);
            goto out;
        }
        fprintf(stderr, "moa: wrote %s\n", svg);
    }
    rc = 0;
out:
    free(md);
    for (int i = 0; i < n; i++) moa_longeval_results_free(runs[i]);
    return rc;
}

static int cmd_loss(int argc, char **argv) {
    const char *model = NULL, *calib = NULL, *out = NULL;
    long bucket = 0;
    attn_args aa = {.sink = -1};
    for (int i = 1; i < argc; i++) {
        int r;
        if (arg_flag(argv, i, "-h", "--help")) { usage(stdout); return 0; }
        if ((r = parse_attn(argc, argv, &i, &aa)) ||
            (r = arg_str(argc, argv, &i, "-m", "--model", &model)) ||
            (r = arg_str(argc, argv, &i, "-c", "--calib", &calib)) ||
            (r = arg_str(argc, argv, &i, "-o", "--output", &out)) ||
            (r = arg_long(argc, argv, &i, NULL, "--bucket", &bucket, 0, 1L << 30))) {
            if (r < 0) return 2;
            continue;
        }
        return cli_unknown_arg("eval loss", argv[i], usage);
    }
    if (!calib) { fprintf(stderr, "moa eval loss: -c calib.h5 is required\n"); usage(stderr); return 2; }
    if (!(model = cli_model_path(model))) return 2;
    int rc = 1;
    moa_status st;
    moa_model *m = NULL;
    moa_plan *plan = NULL;
    moa_calib_file *f = NULL;
    moa_eval_loss loss = {0};
    char *label = NULL, *text = NULL;
    moa_eval_attention att;
    if ((st = moa_calib_read(calib, &f)) < 0) { rc = cli_fail("reading calibration file", st); goto out; }
    if ((rc = cli_load_model(model, &m, NULL))) goto out;
    rc = 1;
    if (f->model_sha256 && *f->model_sha256 && *m->sha256 && strcmp(f->model_sha256, m->sha256) != 0)
        fprintf(stderr, "moa eval loss: warning: %s was built with another model (sha256 %.12s..., this "
                "model %.12s...)\n", calib, f->model_sha256, m->sha256);
    if ((rc = make_attn(&aa, m, &att, &plan))) goto out;
    rc = 1;
    label = moa_eval_attention_label(&att);
    moa_progress_bar bar;
    moa_progress_bar_init(&bar, "loss", "samples");
    st = moa_eval_response_loss(m, &att, f, (int)bucket, moa_progress_bar_cb, &bar, &loss);
    moa_progress_bar_finish(&bar);
    if (st < 0) {
        char what[600];
        snprintf(what, sizeof what, "response loss on %s", calib);
        rc = cli_fail(what, st);
        goto out;
    }
    if ((st = moa_eval_loss_to_json(&loss, label ? label : "", calib, &text)) < 0) { rc = cli_fail("JSON", st); goto out; }
    if (out) {
        if ((st = moa_eval_write_text(out, text)) < 0) { rc = cli_fail("writing output", st); goto out; }
        fprintf(stderr, "moa: wrote %s\n", out);
    } else {
        fputs(text, stdout);
    }
    rc = 0;
out:
    free(text);
    free(label);
    moa_eval_loss_clear(&loss);
    moa_plan_free(plan);
    moa_calib_file_free(f);
    moa_model_free(m);
    return rc;
}

int moa_cmd_eval(int argc, char **argv) {
    if (argc < 2 || arg_flag(argv, 1, "-h", "--help")) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    if (!strcmp(argv[1], "longeval")) return cmd_longeval(argc - 1, argv + 1);
    if (!strcmp(argv[1], "compare") || !strcmp(argv[1], "--compare")) return cmd_compare(argc - 1, argv + 1);
    if (!strcmp(argv[1], "loss")) return cmd_loss(argc - 1, argv + 1);
    fprintf(stderr, "moa eval: unknown subcommand '%s' (longeval, compare, loss)\n", argv[1]);
    usage(stderr);
    return 2;
}
