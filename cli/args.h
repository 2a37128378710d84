/* args.h - tiny flag parsing shared by the subcommands. */
#ifndef MOA_CLI_ARGS_H
#define MOA_CLI_ARGS_H

#include <stdint.h>
#include <stdio.h>

/* If argv[*i] equals one of the names (e.g. "-m", "--model"), stores the next argument in
 * *val, advances *i and returns 1; returns -1 if the value is missing (message printed). */
int arg_str(int argc, char **argv, int *i, const char *short_name, const char *long_name,
            const char **val);
/* Same with integer/float conversion and range checks; -1 on a bad value (message printed). */
int arg_long(int argc, char **argv, int *i, const char *short_name, const char *long_name,
             long *val, long min, long max);
int arg_double(int argc, char **argv, int *i, const char *short_name, const char *long_name,
               double *val, double min, double max);
int arg_flag(char **argv, int i, const char *short_name, const char *long_name);

/* The end of a flag loop, on an argument no flag took: prints "moa CMD: unknown argument 'ARG'"
 * and, with a usage function, the usage on stderr; returns 2 (the exit code). */
int cli_unknown_arg(const char *cmd, const char *arg, void (*usage)(FILE *));

/* Model path from -m or, when absent, $MOA_MODEL; NULL with a message if neither. */
const char *cli_model_path(const char *given);

/* Loads the model from -m or $MOA_MODEL (cli_model_path) with the default parameters, and its
 * tokenizer when tok is not NULL. Returns 0, or the exit code after printing why (2: no model
 * given; 1: it did not load). */
struct moa_model;
struct moa_tokenizer;
int cli_load_model(const char *given, struct moa_model **m, struct moa_tokenizer **tok);

/* What a subcommand's step returns when the command goes on (exit codes are 0, 1 or 2). */
enum { CLI_GO_ON = -1 };

#endif

/* ---- attention plans on the command line (--plan PATH | --uniform D) ---- */
#include "moa/runtime.h"
struct moa_model;
/* Loads --plan PATH (checked against the model) or builds the uniform StreamingLLM baseline
 * for --uniform D (sink tokens and window block: --sink / --block, < 0 / <= 0 = 64; density D
 * at length n); *out stays NULL for dense. --sink/--block without --uniform is a usage error.
 * Returns 0, or an exit code (1 failure, 2 usage) after printing the error. */
int cli_plan_from_args(const char *plan_path, double uniform, long sink, long block,
                       const struct moa_model *m, int64_t n, moa_plan **out);
/* --kv-type NAME of subcommand `cmd` into *out (MOA_KV_F16 when name is NULL). Returns 0, or
 * 2 after printing "moa CMD: --kv-type: <why>". */
int cli_kv_type(const char *cmd, const char *name, moa_kv_type *out);
