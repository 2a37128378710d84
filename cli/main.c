/* main.c - the `moa` command: dispatch to subcommands. */
#include "cli.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "moa/model.h"        /* moa_ctx_set_default_device, moa_ctx_cuda_available */
#include "moa/backend.h"
#include "moa/quant.h"      /* moa_blas_coretype_hint */

int cli_log_level = MOA_LOG_INFO;

int cli_fail(const char *what, moa_status st) {
    const char *msg = moa_last_error();
    fprintf(stderr, "moa: %s: %s\n", what, msg && *msg ? msg : moa_status_str(st));
    return 1;
}

typedef struct {
    const char *name;
    int (*fn)(int argc, char **argv);  /* NULL: not built yet */
    const char *usage;
    const char *what;
} cli_command;

/* Every subcommand of the architecture; entries with fn == NULL are not built yet. */
static const cli_command commands[] = {
    {"generate", moa_cmd_generate, "-m MODEL [--plan PLAN] -p TEXT [-n N] [--chat]",
     "generate text with the dense or a compressed model"},
    {"info",     moa_cmd_info,     "MODEL", "show a GGUF model's metadata, tensors and sizes"},
    {"tokenize", moa_cmd_tokenize, "-m MODEL (-p TEXT | -f FILE) [--ids] [--special] [--no-bos]",
     "print a text's token ids (like llama.cpp's llama-tokenize)"},
    {"calib",    moa_cmd_calib, "-m MODEL --task lines|needle|jsonl:PATH --lengths L,... --samples K -o calib.h5",
     "build a calibration set answered by the dense model"},
    {"profile",  moa_cmd_profile, "-m MODEL -c calib.h5 -o profile.h5 [--shard I/N] [--resume]",
     "measure attention influence per head and distance"},
    {"merge",    moa_cmd_merge, "-o profile.h5 SHARD.h5...", "merge shard profiles"},
    {"optimize", moa_cmd_optimize, "-p profile.h5 --density D [--density-at N:D,...] -o plan.json",
     "choose per-head spans under a density budget (GLPK)"},
    {"plan",     moa_cmd_plan, "show|check PLAN [-m MODEL]", "inspect or validate a plan"},
    {"eval",     moa_cmd_eval, "longeval|compare|loss -m MODEL [--plan PLAN | --uniform D | --dense] --lengths L,... -o results.json",
     "validate on LongEval lines or needle retrieval (--task), compare runs, response loss"},
    {"bench",    moa_cmd_bench, "decode|prefill|profile -m MODEL [--plan PLAN | --uniform D] --context N,...",
     "benchmark prefill, (batched) decode or the profiler"},
    {"compress", moa_cmd_compress, "-m MODEL --density D -o plan.json",
     "calibrate, profile, optimise and validate in one run"},
};
#define N_COMMANDS (sizeof commands / sizeof commands[0])

static void usage(FILE *fp) {
    fprintf(fp,
            "moa %s - Mixture of Sparse Attention toolkit\n\n"
            "usage: moa [-v|-q] COMMAND [ARGS]   (moa COMMAND --help for its flags)\n"
            "commands that run the model also take --device cpu|cuda|auto (default auto)\n\n"
            "commands:\n", MOA_VERSION);
    for (size_t i = 0; i < N_COMMANDS; i++)
        fprintf(fp, "  %-9s %s%s\n      moa %s %s\n", commands[i].name, commands[i].what,
                commands[i].fn ? "" : " [not built yet]", commands[i].name, commands[i].usage);
    fprintf(fp, "\nexit codes: 0 ok, 1 failure, 2 usage error\n");
}

/* --device cpu|cuda|auto (every command that runs the model takes it; removed from argv
 * here). auto: CUDA when a device is present, else CPU, with a log line. The choice becomes
 * the default device of every engine context the command creates
 * (moa_ctx_set_default_device) and of every profiler (moa_profiler_default_params takes it):
 * generate, bench prefill|decode|profile, eval, calib, profile and all of compress's stages
 * that run the model (calibration answers, profiling, validation) run on CUDA. */
static int select_device(int *argc, char **argv) {
    const char *opt = NULL;
    int w = 0;
    for (int i = 0; i < *argc; i++) {
        if (!strcmp(argv[i], "--device")) {
            if (i + 1 >= *argc) { fprintf(stderr, "moa: --device needs a value (cpu, cuda, auto)\n"); return 2; }
            opt = argv[++i];
            continue;
        }
        argv[w++] = argv[i];
    }
    *argc = w;
    argv[w] = NULL;
    moa_device_kind req, got;
    if (moa_device_parse(opt ? opt : "auto", &req) != 0) {
        fprintf(stderr, "moa: --device '%s' must be cpu, cuda or auto\n", opt);
        return 2;
    }
    const int n = moa_ctx_cuda_available();
    moa_status st = moa_device_choose(req, n, &got);
    if (st < 0) {
        fprintf(stderr, "moa: --device %s: no CUDA device found%s; use --device cpu or auto\n", opt,
#ifdef MOA_HAVE_CUDA
                ""
#else
                " (this build has no CUDA backend)"
#endif
        );
        return 1;
    }
    if (got == MOA_DEVICE_CUDA) {
        moa_ctx_set_default_device(MOA_DEVICE_CUDA);
        if (req == MOA_DEVICE_AUTO) moa_log_info("device: CUDA");
    } else if (opt && req == MOA_DEVICE_AUTO) {
        moa_log_info("device: CPU (no CUDA device)");
    }
    return 0;
}

/* OpenMP workers that spin at barriers for long (libgomp's default: 300,000 spins) steal the
 * cores from the threads doing work as soon as anything else runs on the machine: decode on
 * the Qwen 0.5B model fell from 22 to 2.6 tok/s with two busy processes beside it, and a test
 * timed out in CI under `ctest -j2`. A short spin keeps the idle speed (22.0 tok/s) and
 * degrades gracefully when shared (10.3 tok/s; passive waiting 18.9 idle, 11.7 shared;
 * docs/benchmarks.md). So when the user has set neither OMP_WAIT_POLICY nor GOMP_SPINCOUNT,
 * the command sets GOMP_SPINCOUNT=10000.
 *
 * OpenBLAS (Debian's DYNAMIC_ARCH build, 0.3.21) picks its kernels from the CPU model and
 * falls back to the SSE3 "Prescott" kernels on models it does not know (e.g. Emerald Rapids,
 * family 6 model 207): sgemm, hence prefill, ran 3x slower there. When the user has not set
 * OPENBLAS_CORETYPE and OpenBLAS reports Prescott on a CPU with AVX-512 (F/BW/VL/DQ/CD) or
 * AVX2+FMA, the command sets OPENBLAS_CORETYPE=SkylakeX or Haswell (moa_blas_coretype_hint).
 *
 * Both libraries read these variables only when they load, so the command runs itself again
 * (once: the variables are then set). If that fails it just goes on. */
static void runtime_env_defaults(char **argv) {
    int changed = 0;
    if (!getenv("OMP_WAIT_POLICY") && !getenv("GOMP_SPINCOUNT") && setenv("GOMP_SPINCOUNT", "10000", 1) == 0)
        changed = 1;
    const char *core = getenv("OPENBLAS_CORETYPE") ? NULL : moa_blas_coretype_hint();
    if (core && setenv("OPENBLAS_CORETYPE", core, 1) == 0) changed = 1;
    if (changed) execv("/proc/self/exe", argv);
}

int main(int argc, char **argv) {
    runtime_env_defaults(argv);
    int i = 1;
    for (; i < argc && argv[i][0] == '-'; i++) {
        if (!strcmp(argv[i], "-v")) cli_log_level = MOA_LOG_DEBUG;
        else if (!strcmp(argv[i], "-q")) cli_log_level = MOA_LOG_WARN;
        else if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) { usage(stdout); return 0; }
        else if (!strcmp(argv[i], "--version")) { printf("moa %s\n", MOA_VERSION); return 0; }
        else { fprintf(stderr, "moa: unknown option '%s'\n", argv[i]); usage(stderr); return 2; }
    }
    if (i >= argc) { usage(stderr); return 2; }
    moa_log_set(moa_log_stderr, &cli_log_level);
    for (size_t c = 0; c < N_COMMANDS; c++) {
        if (strcmp(argv[i], commands[c].name) != 0) continue;
        if (!commands[c].fn) {
            fprintf(stderr, "moa: '%s' is not built yet in this version\n", commands[c].name);
            return 2;
        }
        int sub_argc = argc - i;
        if (strcmp(commands[c].name, "info") && strcmp(commands[c].name, "plan") &&
            strcmp(commands[c].name, "tokenize") &&
            strcmp(commands[c].name, "optimize") && strcmp(commands[c].name, "merge")) {
            int rc = select_device(&sub_argc, argv + i);
            if (rc) return rc;
        }
        return commands[c].fn(sub_argc, argv + i);
    }
    fprintf(stderr, "moa: unknown command '%s'\n", argv[i]);
    usage(stderr);
    return 2;
}
