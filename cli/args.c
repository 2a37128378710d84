/* args.c - flag parsing helpers for the CLI. */
#include "args.h"
#include "cli.h"
#include "moa/model.h"
#include "moa/common.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int matches(const char *a, const char *s, const char *l) {
    return (s && !strcmp(a, s)) || (l && !strcmp(a, l));
}

int arg_flag(char **argv, int i, const char *s, const char *l) { return matches(argv[i], s, l); }

int arg_str(int argc, char **argv, int *i, const char *s, const char *l, const char **val) {
    if (!matches(argv[*i], s, l)) return 0;
    if (*i + 1 >= argc) {
        fprintf(stderr, "moa: option %s needs a value\n", argv[*i]);
        return -1;
    }
    *val = argv[++*i];
    return 1;
}

int arg_long(int argc, char **argv, int *i, const char *s, const char *l, long *val, long min, long max) {
    const char *v;
    int r = arg_str(argc, argv, i, s, l, &v);
    if (r <= 0) return r;
    char *end;
    errno = 0;
    long x = strtol(v, &end, 10);
    int over = errno != 0;
    if (!over && end != v && (*end == 'k' || *end == 'K')) {   /* x 1024, refused if it overflows */
        over = x > LONG_MAX / 1024 || x < LONG_MIN / 1024;
        if (!over) x *= 1024;
        end++;
    }
    if (over || end == v || *end || x < min || x > max) {
        fprintf(stderr, "moa: option %s: '%s' is not an integer in [%ld, %ld]\n", argv[*i - 1], v, min, max);
        return -1;
    }
    *val = x;
    return 1;
}

int arg_double(int argc, char **argv, int *i, const char *s, const char *l, double *val, double min, double max) {
    const char *v;
    int r = arg_str(argc, argv, i, s, l, &v);
    if (r <= 0) return r;
    char *end;
    errno = 0;
    double x = strtod(v, &end);
    if (errno || end == v || *end || !(x >= min && x <= max)) {
        fprintf(stderr, "moa: option %s: '%s' is not a number in [%g, %g]\n", argv[*i - 1], v, min, max);
        return -1;
    }
    *val = x;
    return 1;
}

int cli_unknown_arg(const char *cmd, const char *arg, void (*usage)(FILE *)) {
    fprintf(stderr, "moa %s: unknown argument '%s'\n", cmd, arg);
    if (usage) usage(stderr);
    return 2;
}

const char *cli_model_path(const char *given) {
    if (given) return given;
    const char *env = getenv("MOA_MODEL");
    if (env && *env) return env;
    fprintf(stderr, "moa: no model: pass -m MODEL.gguf or set MOA_MODEL "
                    "(scripts/fetch-model.sh prints the default model's path)\n");
    return NULL;
}

int cli_load_model(const char *given, moa_model **m, moa_tokenizer **tok) {
    const char *path = cli_model_path(given);
    if (!path) return 2;
    moa_model_params mp = moa_model_default_params();
    moa_status st = moa_model_load(path, &mp, m);
    if (st < 0) return cli_fail("loading model", st);
    if (tok && (st = moa_tokenizer_from_gguf((*m)->gguf, tok)) < 0) return cli_fail("loading tokenizer", st);
    return 0;
}

int cli_plan_from_args(const char *plan_path, double uniform, long sink, long block,
                       const struct moa_model *m, int64_t n, moa_plan **out) {
    *out = NULL;
    const moa_llama_hparams *hp = &m->hp;
    if (plan_path && uniform > 0) {
        fprintf(stderr, "moa: give --plan or --uniform, not both\n");
        return 2;
    }
    if ((sink >= 0 || block > 0) && !(uniform > 0)) {
        fprintf(stderr, "moa: --sink and --block go with --uniform D (a plan has its own)\n");
        return 2;
    }
    moa_status st = MOA_OK;
    if (plan_path) {
        st = moa_plan_load(plan_path, out);   /* checked against the model by moa_ctx_create */
        if (st < 0) {
            fprintf(stderr, "moa: plan %s: %s\n", plan_path, moa_last_error());
            moa_plan_free(*out);
            *out = NULL;
            return 1;
        }
    } else if (uniform > 0) {
        st = moa_plan_uniform(hp->n_layer, hp->n_head, hp->n_head_kv, hp->head_dim, sink >= 0 ? (int)sink : 64,
                              block > 0 ? (int)block : 64, uniform, n, out);
        if (st < 0) {
            fprintf(stderr, "moa: --uniform %g: %s\n", uniform, moa_last_error());
            return 2;
        }
    }
    return 0;
}

int cli_kv_type(const char *cmd, const char *name, moa_kv_type *out) {
    *out = MOA_KV_F16;
    if (name && moa_kv_type_parse(name, out) < 0) {
        fprintf(stderr, "moa %s: --kv-type: %s\n", cmd, moa_last_error());
        return 2;
    }
    return 0;
}
