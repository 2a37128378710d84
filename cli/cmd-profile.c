/* cmd-profile.c - `moa profile` (calibration set -> attention-influence profile) and
 * `moa merge` (shard profiles -> one profile). */
#include "cli.h"
#include "args.h"
#include "moa/profiler.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void usage_profile(FILE *fp) {
    fprintf(fp,
        "usage: moa profile -m MODEL -c calib.h5 -o profile.h5 [options]\n\n"
        "Runs the dense model forward and backward over every calibration sample and measures,\n"
        "for every layer, head and distance bin, how much the response loss would grow if that\n"
        "attention were dropped (attention influence). Writes moa-profile v1 (docs/formats.md).\n\n"
        "  -m, --model PATH     GGUF model (default: $MOA_MODEL); must be the calibration's model\n"
        "  -c, --calib PATH     calibration file (moa calib)\n"
        "  -o, --output PATH    profile to write (atomically)\n"
        "      --shard I/N      profile only samples i with i %% N == I (default 0/1); merge the\n"
        "                       shards with moa merge\n"
        "      --resume         continue from the checkpoint of an interrupted run\n"
        "      --checkpoint P   checkpoint path (default OUTPUT.ckpt, plus OUTPUT.ckpt.h5)\n"
        "      --sink N         sink tokens (default 64)\n"
        "      --block N        distance-bin width in tokens (default 64)\n"
        "      --eps E          influence denominator regulariser (default 1e-6)\n"
        "      --max-samples N  stop after N samples, keeping the checkpoint (default: all)\n"
        "      --device D       cpu, cuda or auto (default auto: CUDA when a device exists)\n"
        "      --bf16           on CUDA: weights and GEMM inputs in bf16 instead of f32 (half the\n"
        "                       weight memory; histograms within ~1e-2 instead of ~1e-6 of the CPU)\n"
        "      --act-budget B   CPU: bytes of layer activations kept from the forward for the\n"
        "                       backward instead of recomputed (K/M/G suffix, or max; default a\n"
        "                       quarter of RAM or $MOA_PROFILER_ACT_BUDGET; 0 recomputes all)\n"
        "Progress (samples, tokens/s, ETA) goes to stderr.\n");
}

int moa_cmd_profile(int argc, char **argv) {
    const char *model = NULL, *calib = NULL, *out = NULL, *shard = NULL, *ckpt = NULL, *act = NULL;
    long sink = 64, block = 64, max_samples = 0;
    double eps = 1e-6;
    int resume = 0, bf16 = 0;
    for (int i = 1; i < argc; i++) {
        int r;
        if (arg_flag(argv, i, "-h", "--help")) { usage_profile(stdout); return 0; }
        if (arg_flag(argv, i, NULL, "--resume")) { resume = 1; continue; }
        if (arg_flag(argv, i, NULL, "--bf16")) { bf16 = 1; continue; }
        if ((r = arg_str(argc, argv, &i, "-m", "--model", &model)) ||
            (r = arg_str(argc, argv, &i, "-c", "--calib", &calib)) ||
            (r = arg_str(argc, argv, &i, "-o", "--output", &out)) ||
            (r = arg_str(argc, argv, &i, NULL, "--shard", &shard)) ||
            (r = arg_str(argc, argv, &i, NULL, "--checkpoint", &ckpt)) ||
            (r = arg_str(argc, argv, &i, NULL, "--act-budget", &act)) ||
            (r = arg_long(argc, argv, &i, NULL, "--sink", &sink, 0, 1 << 20)) ||
            (r = arg_long(argc, argv, &i, NULL, "--block", &block, 1, 1 << 20)) ||
            (r = arg_long(argc, argv, &i, NULL, "--max-samples", &max_samples, 0, 1L << 40)) ||
            (r = arg_double(argc, argv, &i, NULL, "--eps", &eps, 0, 1))) {
            if (r < 0) return 2;
            continue;
        }
        return cli_unknown_arg("profile", argv[i], usage_profile);
    }
    if (!calib || !out) { fprintf(stderr, "moa profile: -c CALIB and -o OUTPUT are required\n"); usage_profile(stderr); return 2; }
    moa_profile_run_params p = moa_profile_run_default_params();
    if (shard) {
        char extra;
        if (sscanf(shard, "%d/%d%c", &p.shard_index, &p.shard_count, &extra) != 2 ||
            p.shard_count < 1 || p.shard_index < 0 || p.shard_index >= p.shard_count) {
            fprintf(stderr, "moa profile: --shard '%s' must be I/N with 0 <= I < N\n", shard);
            return 2;
        }
    }
    if (!(model = cli_model_path(model))) return 2;
    p.prof.sink = (int)sink;
    p.prof.block = (int)block;
    p.prof.eps = (float)eps;
    if (act && moa_parse_bytes(act, &p.prof.act_budget_bytes) < 0) {
        fprintf(stderr, "moa profile: --act-budget '%s' is not a byte count (e.g. 3G, 0, max)\n", act);
        return 2;
    }
    p.prof.device_bf16 = bf16;   /* p.prof.device: the process default (--device, cli/main.c) */
    p.resume = resume;
    p.checkpoint_path = ckpt;
    p.max_samples = max_samples;
    moa_progress_bar bar;
    moa_progress_bar_init(&bar, "profile", "samples");
    p.progress = moa_progress_bar_cb;
    p.progress_data = &bar;

    moa_model *m;
    moa_model_params mp = moa_model_default_params();
    /* the CPU profiler multiplies by f32 copies; on CUDA (--device) the device has its own */
    mp.f32_weights = p.prof.device == MOA_DEVICE_CUDA ? 0 : 1;
    moa_status st = moa_model_load(model, &mp, &m);
    if (st < 0) return cli_fail("loading model", st);
    st = moa_profile_run(m, calib, out, &p);
    moa_progress_bar_finish(&bar);
    moa_model_free(m);
    if (st < 0) return cli_fail("profile", st);
    fprintf(stderr, "moa: wrote %s\n", out);
    return 0;
}

int moa_cmd_merge(int argc, char **argv) {
    const char *out = NULL;
    const char **inputs = calloc((size_t)argc, sizeof *inputs);
    int n = 0;
    if (!inputs) return cli_fail("merge", MOA_ERR_NOMEM);
    for (int i = 1; i < argc; i++) {
        int r;
        if (arg_flag(argv, i, "-h", "--help")) {
            printf("usage: moa merge -o profile.h5 SHARD.h5...\n\n"
                   "Combines shard profiles (moa profile --shard I/N) by sample-weighted sums into\n"
                   "one profile. Refuses profiles of different models, dimensions, sink, block or\n"
                   "calibration files, and a shard given twice (same file, or a shard already merged).\n");
            free(inputs);
            return 0;
        }
        if ((r = arg_str(argc, argv, &i, "-o", "--output", &out))) {
            if (r < 0) { free(inputs); return 2; }
            continue;
        }
        if (argv[i][0] == '-') { fprintf(stderr, "moa merge: unknown option '%s'\n", argv[i]); free(inputs); return 2; }
        inputs[n++] = argv[i];
    }
    if (!out || n < 1) { fprintf(stderr, "moa merge: need -o OUTPUT and at least one input profile\n"); free(inputs); return 2; }
    moa_status st = moa_profile_merge_files(inputs, n, out);
    free(inputs);
    if (st < 0) return cli_fail("merge", st);
    fprintf(stderr, "moa: merged %d profiles into %s\n", n, out);
    return 0;
}
