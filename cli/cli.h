/* cli.h - the `moa` command's subcommands. Each lives in cli/cmd-<name>.c and returns the
 * process exit code: 0 ok, 1 failure, 2 usage error. The CLI only parses and prints;
 * the work is done by the libraries. */
#ifndef MOA_CLI_H
#define MOA_CLI_H

#include "moa/common.h"

int moa_cmd_generate(int argc, char **argv);
int moa_cmd_info(int argc, char **argv);
int moa_cmd_bench(int argc, char **argv);
int moa_cmd_calib(int argc, char **argv);
int moa_cmd_profile(int argc, char **argv);
int moa_cmd_merge(int argc, char **argv);
int moa_cmd_optimize(int argc, char **argv);
int moa_cmd_plan(int argc, char **argv);
int moa_cmd_eval(int argc, char **argv);
int moa_cmd_compress(int argc, char **argv);
int moa_cmd_tokenize(int argc, char **argv);

/* Shared by subcommands: report a failed library call ("moa: <what>: <last error>"), return 1. */
int cli_fail(const char *what, moa_status st);
/* Log level selected by -v / -q (default info). */
extern int cli_log_level;

#endif
