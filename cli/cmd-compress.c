/* cmd-compress.c - `moa compress`: calibrate, profile, optimise and validate in one run. */
#include "cli.h"
#include "args.h"
#include "moa/pipeline.h"
#include "moa/model.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void usage(FILE *fp) {
    fprintf(fp,
        "usage: moa compress -m MODEL --density D -o plan.json [options]\n\n"
        "The whole method in one resumable run, in a work directory: a calibration set answered\n"
        "by the dense model, the attention-influence profile, the GLPK plan (Pareto front over\n"
        "lengths, selected on the validation length), then retrieval accuracy (needles or LongEval\n"
        "lines) for dense, uniform (StreamingLLM) and the plan, and the response loss on held-out\n"
        "samples. Every setting is checked against the model before any work (exit 2). A stage\n"
        "is skipped when its output in the work directory records exactly this run's inputs and\n"
        "settings (else rebuilt; the report says which); interrupted stages resume. The plan\n"
        "reaches -o only after validation (with --skip-eval: marked NOT VALIDATED in the report).\n"
        "The report (markdown) goes to stdout and WORKDIR/report.md.\n\n"
        "  -m, --model PATH        GGUF model (default: $MOA_MODEL)\n"
        "      --density D         KV density budget in (0, 1] (required)\n"
        "  -o, --output PATH       plan to write (atomically)\n"
        "      --workdir DIR       work directory (default OUTPUT.work)\n"
        "      --calib-lengths L   calibration/profile lengths (default C/16,C/8,C/4,C/2 of the\n"
        "                          model's context C: 512,1024,2048,4096 for SmolLM2)\n"
        "      --calib-samples K   samples at each objective length (default 12)\n"
        "      --validation-samples K  samples at the validation length, which only selects\n"
        "                          among the front's plans (default K/2 rounded up: 6)\n"
        "      --calib-tasks T     calibration tasks (default needle-multivalue,needle-multiquery:\n"
        "                          the dense model must answer them right; the report counts it)\n"
        "      --calib-seed S      (default 1)\n"
        "      --sink S            sink tokens of the profile and plan (default = block)\n"
        "      --block B           distance-bin and window granularity (default from the shortest\n"
        "                          calibration length n: a power of two in [16, 64] <= n/32)\n"
        "      --validation N      validation length, left out of the objectives (default the\n"
        "                          longest calibration length)\n"
        "      --time-limit S      seconds per MILP solve (default 20)\n"
        "      --no-widen          keep the selected plan as solved (default: spend unused budget\n"
        "                          on longer spans where no profiled length gets worse)\n"
        "      --q-head            one rule per query head instead of per KV head (a KV\n"
        "                          group's memory is its widest head's; docs/optimizer.md)\n"
        "      --far-weight W      influence at distances >= N/4 counts W times in the plan's\n"
        "                          loss (default 1; docs/optimizer.md)\n"
        "      --eval-task T       validation task: needle (default), needle-multikey,\n"
        "                          needle-multivalue, needle-multiquery, or lines (LongEval)\n"
        "      --eval-lengths L    retrieval lengths (default the calibration lengths, then\n"
        "                          doublings up to the model's context: 512,...,4096,7680 for\n"
        "                          SmolLM2, 2048,...,16384,32256 for a 32K model)\n"
        "      --eval-samples K    samples per (length, position bin) (default 1)\n"
        "      --eval-seed S       (default 2)\n"
        "      --heldout K         held-out samples for the response-loss check (default 4; 0 skips)\n"
        "      --skip-eval         stop after the plan\n");
}

static int parse_lengths(const char *s, int *out, int *n) {
    long v[MOA_COMPRESS_MAX_LENGTHS];
    int k = moa_parse_int_list(s, v, MOA_COMPRESS_MAX_LENGTHS);
    if (k <= 0) return -1;
    for (int i = 0; i < k; i++) {
        if (v[i] < 64 || v[i] > (1 << 24)) return -1;
        out[i] = (int)v[i];
    }
    *n = k;
    return 0;
}

static void announce(void *data, const char *name) {
    moa_progress_bar *bar = data;
    moa_progress_bar_finish(bar);
    fprintf(stderr, "moa compress: %s\n", name);
    moa_progress_bar_init(bar, "  ", "samples");
}

int moa_cmd_compress(int argc, char **argv) {
    const char *model = NULL, *out = NULL, *workdir = NULL, *cl = NULL, *el = NULL, *tasks = NULL,
               *eval_task = NULL;
    double density = 0, time_limit = 20;
    long calib_samples = 12, validation_samples = 0, eval_samples = 1, heldout = 4, calib_seed = 1, eval_seed = 2, validation = 0, sink = -1,
         block = 0;
    int skip_eval = 0;
    moa_compress_params p = moa_compress_default_params();
    for (int i = 1; i < argc; i++) {
        int r;
        if (arg_flag(argv, i, "-h", "--help")) { usage(stdout); return 0; }
        if (arg_flag(argv, i, NULL, "--skip-eval")) { skip_eval = 1; continue; }
        if (arg_flag(argv, i, NULL, "--no-widen")) { p.no_widen = 1; continue; }
        if (arg_flag(argv, i, NULL, "--q-head")) { p.q_head = 1; continue; }
        if ((r = arg_str(argc, argv, &i, "-m", "--model", &model)) ||
            (r = arg_str(argc, argv, &i, "-o", "--output", &out)) ||
            (r = arg_str(argc, argv, &i, NULL, "--workdir", &workdir)) ||
            (r = arg_str(argc, argv, &i, NULL, "--calib-lengths", &cl)) ||
            (r = arg_str(argc, argv, &i, NULL, "--eval-lengths", &el)) ||
            (r = arg_str(argc, argv, &i, NULL, "--calib-tasks", &tasks)) ||
            (r = arg_str(argc, argv, &i, NULL, "--eval-task", &eval_task)) ||
            (r = arg_double(argc, argv, &i, NULL, "--density", &density, 1e-6, 1)) ||
            (r = arg_double(argc, argv, &i, NULL, "--time-limit", &time_limit, 0.1, 1e6)) ||
            (r = arg_double(argc, argv, &i, NULL, "--far-weight", &p.far_weight, 1e-3, 1e6)) ||
            (r = arg_long(argc, argv, &i, NULL, "--calib-samples", &calib_samples, 1, 100000)) ||
            (r = arg_long(argc, argv, &i, NULL, "--validation-samples", &validation_samples, 1, 100000)) ||
            (r = arg_long(argc, argv, &i, NULL, "--eval-samples", &eval_samples, 1, 100000)) ||
            (r = arg_long(argc, argv, &i, NULL, "--heldout", &heldout, 0, 100000)) ||
            (r = arg_long(argc, argv, &i, NULL, "--calib-seed", &calib_seed, 0, 0x7fffffffL)) ||
            (r = arg_long(argc, argv, &i, NULL, "--eval-seed", &eval_seed, 0, 0x7fffffffL)) ||
            (r = arg_long(argc, argv, &i, NULL, "--sink", &sink, 0, 1 << 20)) ||
            (r = arg_long(argc, argv, &i, NULL, "--block", &block, 1, 1 << 20)) ||
            (r = arg_long(argc, argv, &i, NULL, "--validation", &validation, 0, 1 << 24))) {
            if (r < 0) return 2;
            continue;
        }
        return cli_unknown_arg("compress", argv[i], usage);
    }
    if (!out || density <= 0) { fprintf(stderr, "moa compress: --density and -o are required\n"); usage(stderr); return 2; }
    if (cl && parse_lengths(cl, p.calib_lengths, &p.n_calib_lengths) < 0) {
        fprintf(stderr, "moa compress: bad --calib-lengths '%s' (integers >= 64)\n", cl);
        return 2;
    }
    if (el && parse_lengths(el, p.eval_lengths, &p.n_eval_lengths) < 0) {
        fprintf(stderr, "moa compress: bad --eval-lengths '%s' (integers >= 64)\n", el);
        return 2;
    }
    if (!(model = cli_model_path(model))) return 2;
    char wd[4096];
    if (!workdir) { snprintf(wd, sizeof wd, "%s.work", out); workdir = wd; }
    p.density = density;
    p.workdir = workdir;
    if (tasks) p.calib_tasks = tasks;
    if (eval_task) p.eval_task = eval_task;
    p.calib_samples = (int)calib_samples;
    p.validation_samples = (int)validation_samples;   /* 0: half of calib_samples */
    p.calib_seed = (uint64_t)calib_seed;
    p.eval_samples = (int)eval_samples;
    p.eval_seed = (uint64_t)eval_seed;
    p.heldout_samples = (int)heldout;
    p.validation_length = validation;
    p.time_limit = time_limit;
    p.block = (int)block;
    p.sink = (int)sink;   /* -1: the block */
    p.skip_eval = skip_eval;
    moa_progress_bar bar;
    moa_progress_bar_init(&bar, "  ", "samples");
    p.progress = moa_progress_bar_cb;
    p.progress_data = &bar;
    p.stage = announce;
    /* the model first (a bad file fails here, before any directory exists), then every
     * setting against it (exit 2), then the work */
    moa_model *m = NULL;
    moa_status st = moa_compress_load_model(model, &m);
    if (st < 0) return cli_fail("loading the model", st);
    moa_compress_params checked;
    if ((st = moa_compress_prepare(m, &p, &checked)) < 0) {
        fprintf(stderr, "moa %s\n", moa_last_error());
        moa_model_free(m);
        return 2;
    }
    char *report = NULL;
    st = moa_compress_run_model(m, model, &p, out, &report);
    moa_progress_bar_finish(&bar);
    moa_model_free(m);
    if (st < 0) return cli_fail("compress", st);
    fputs(report, stdout);
    free(report);
    return 0;
}
