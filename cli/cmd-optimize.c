/* cmd-optimize.c - `moa optimize`: profile.h5 in, plan.json out (plus the Pareto front as
 * CSV/SVG on request). Parsing and printing only; the work is in optimizer/. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include "args.h"
#include "cli.h"
#include "moa/h5util.h"
#include "moa/optimizer.h"

static void optimize_usage(FILE *f) {
    fprintf(f,
        "usage: moa optimize -p profile.h5 --density D -o plan.json [options]\n"
        "\n"
        "Choose one elastic rule (alpha, beta) per attention unit under density budgets by\n"
        "MILP (GLPK), over a Pareto front of the per-length losses; write the selected plan.\n"
        "\n"
        "  -p, --profile FILE        influence profile (moa-profile v1)            [required]\n"
        "  -o, --output FILE         plan to write (moa-plan v1, atomic)           [required]\n"
        "  -d, --density D           density budget at every profiled length       (0.5)\n"
        "      --density-at N:D,...  budgets at given lengths (profiled or not: extrapolated);\n"
        "                            they override --density at those lengths\n"
        "      --lower-frac F        also require density >= F * budget (e.g. 0.9) (off)\n"
        "      --validate-length N   profiled length left out of the objectives; the plan\n"
        "                            with the lowest loss there is selected          (none)\n"
        "      --objectives N,...    profiled lengths to minimise (all but the validation one)\n"
        "      --granularity G       kv-head | q-head                               (kv-head)\n"
        "      --max-rules-per-layer K  at most K distinct rules per layer          (no cap)\n"
        "      --signed              loss from the signed influence (default: absolute)\n"
        "      --far-weight W        influence at distances >= N/4 counts W times     (1)\n"
        "      --alphas A,...        candidate alphas in tokens   (default: -2..8 x step, step =\n"
        "                            1024 * longest objective length / 8192)\n"
        "      --betas B,...         candidate betas              (default: 0, 1/8, ..., 1)\n"
        "      --grid G              epsilon levels per secondary objective; 0 = exact front\n"
        "                            (two objectives only)                          (5)\n"
        "      --time-limit S        seconds per MILP solve                          (60)\n"
        "      --gap G               relative MIP gap to stop at                     (1e-3)\n"
        "      --no-cuts             no GLPK GMI/MIR/cover/clique cuts                 (cuts on)\n"
        "      --no-widen            keep the selected plan as solved (default: units move to\n"
        "                            rules no worse at any profiled length, most loss gained\n"
        "                            per density first, while the budgets allow)\n"
        "      --presolve            use GLPK's MIP presolver (disables the warm start) (off)\n"
        "      --no-heuristic        no LP-rounding/local-search warm start           (on)\n"
        "      --calib FILE          confirm that FILE is the profile's calibration set (the plan\n"
        "                            records the profile's own calib sha256 either way)   (none)\n"
        "      --pareto FILE.csv     write the front (one row per plan)              (none)\n"
        "      --pareto-svg FILE.svg draw the front                                 (none)\n"
        "  -h, --help                this text\n"
        "\n"
        "Exit codes: 0 ok, 1 failure (infeasible budgets name the smallest feasible density\n"
        "per length), 2 usage error.\n");
}

static void progress_cb(void *data, double done, double total, double gap, const char *unit) {
    moa_progress_bar *pb = data;
    (void)gap;
    (void)unit;
    moa_progress_bar_cb(pb, done, total, 0, NULL);
}

/* The command line of `moa optimize`, as given (flags are stored before they are applied). */
typedef struct {
    const char *prof_path, *out_path, *csv, *svg, *calib;
    const char *density_at, *objectives, *alphas, *betas, *gran;
    moa_opt_params par;
    long val, cap, grid;
    moa_rule rules[MOA_OPT_MAX_RULES];   /* --alphas x --betas, when given (par.rules) */
} optimize_args;

/* Reads the flags into o; CLI_GO_ON, or the exit code (0 after --help, 2 on a usage error). */
static int parse_flags(int argc, char **argv, optimize_args *o) {
    moa_opt_params *par = &o->par;
    for (int i = 1; i < argc; i++) {
        int r;
        if (arg_flag(argv, i, "-h", "--help")) { optimize_usage(stdout); return 0; }
        if ((r = arg_str(argc, argv, &i, "-p", "--profile", &o->prof_path))) { if (r < 0) return 2; continue; }
        if ((r = arg_str(argc, argv, &i, "-o", "--output", &o->out_path))) { if (r < 0) return 2; continue; }
        if ((r = arg_double(argc, argv, &i, "-d", "--density", &par->density, 1e-9, 1))) { if (r < 0) return 2; continue; }
        if ((r = arg_str(argc, argv, &i, NULL, "--density-at", &o->density_at))) { if (r < 0) return 2; continue; }
        if ((r = arg_double(argc, argv, &i, NULL, "--lower-frac", &par->lower_frac, 0, 1))) { if (r < 0) return 2; continue; }
        if ((r = arg_long(argc, argv, &i, NULL, "--validate-length", &o->val, 1, 1L << 40))) { if (r < 0) return 2; continue; }
        if ((r = arg_str(argc, argv, &i, NULL, "--objectives", &o->objectives))) { if (r < 0) return 2; continue; }
        if ((r = arg_str(argc, argv, &i, NULL, "--granularity", &o->gran))) { if (r < 0) return 2; continue; }
        if ((r = arg_long(argc, argv, &i, NULL, "--max-rules-per-layer", &o->cap, 0, 1 << 20))) { if (r < 0) return 2; continue; }
        if ((r = arg_str(argc, argv, &i, NULL, "--alphas", &o->alphas))) { if (r < 0) return 2; continue; }
        if ((r = arg_str(argc, argv, &i, NULL, "--betas", &o->betas))) { if (r < 0) return 2; continue; }
        if ((r = arg_long(argc, argv, &i, NULL, "--grid", &o->grid, 0, 1000))) { if (r < 0) return 2; continue; }
        if ((r = arg_double(argc, argv, &i, NULL, "--time-limit", &par->time_limit, 0.001, 1e7))) { if (r < 0) return 2; continue; }
        if ((r = arg_double(argc, argv, &i, NULL, "--gap", &par->mip_gap, 0, 1))) { if (r < 0) return 2; continue; }
        if ((r = arg_double(argc, argv, &i, NULL, "--far-weight", &par->far_weight, 1e-3, 1e6))) { if (r < 0) return 2; continue; }
        if ((r = arg_str(argc, argv, &i, NULL, "--calib", &o->calib))) { if (r < 0) return 2; continue; }
        if ((r = arg_str(argc, argv, &i, NULL, "--pareto", &o->csv))) { if (r < 0) return 2; continue; }
        if ((r = arg_str(argc, argv, &i, NULL, "--pareto-svg", &o->svg))) { if (r < 0) return 2; continue; }
        if (arg_flag(argv, i, NULL, "--signed")) { par->use_signed = 1; continue; }
        if (arg_flag(argv, i, NULL, "--presolve")) { par->glpk_presolve = 1; continue; }
        if (arg_flag(argv, i, NULL, "--no-heuristic")) { par->heuristic = 0; continue; }
        if (arg_flag(argv, i, NULL, "--no-cuts")) { par->cuts = 0; continue; }
        if (arg_flag(argv, i, NULL, "--no-widen")) { par->widen = 0; continue; }
        return cli_unknown_arg("optimize", argv[i], optimize_usage);
    }
    if (!o->prof_path || !o->out_path) {
        fprintf(stderr, "moa optimize: -p PROFILE and -o PLAN are required\n");
        optimize_usage(stderr);
        return 2;
    }
    return CLI_GO_ON;
}

/* The flags that need no profile into o->par: validation length, cap, grid, granularity,
 * objectives, the rule grid. CLI_GO_ON or 2. */
static int apply_flags(optimize_args *o) {
    moa_opt_params *par = &o->par;
    par->validation = o->val;
    par->max_rules_per_layer = (int)o->cap;
    par->grid = (int)o->grid;
    if (o->gran) {
        if (!strcmp(o->gran, "kv-head")) par->granularity = MOA_GRAN_KV_HEAD;
        else if (!strcmp(o->gran, "q-head")) par->granularity = MOA_GRAN_Q_HEAD;
        else { fprintf(stderr, "moa optimize: --granularity must be kv-head or q-head\n"); return 2; }
    }
    if (o->objectives) {
        long l[MOA_OPT_MAX_LENGTHS];
        int n = moa_parse_int_list(o->objectives, l, MOA_OPT_MAX_LENGTHS);
        if (n <= 0) { fprintf(stderr, "moa optimize: --objectives: expected N,N,...\n"); return 2; }
        par->n_objective = n;
        for (int k = 0; k < n; k++) par->objective[k] = l[k];
    }
    if (o->alphas || o->betas) {
        double a[256], b[256];
        int na = 0, nb = 0;
        if (o->alphas) na = moa_parse_double_list(o->alphas, a, 256);
        if (o->betas) nb = moa_parse_double_list(o->betas, b, 256);
        if ((o->alphas && na <= 0) || (o->betas && nb <= 0)) { fprintf(stderr, "moa optimize: bad --alphas/--betas list\n"); return 2; }
        if (!o->alphas) na = moa_rules_alphas(8192, 1, 0, a);   /* the reference's {-2..8} x 1024 */
        if (!o->betas) { nb = MOA_RULES_N_BETAS; moa_rules_betas(b); }
        par->rules = o->rules;
        par->n_rules = moa_rules_cross(a, na, b, nb, o->rules, MOA_OPT_MAX_RULES);
    }
    return CLI_GO_ON;
}

/* provenance: the calibration file is the one the profile records; --calib only
 * confirms it (a file that is not the profile's calibration set is refused). CLI_GO_ON or 1. */
static int confirm_calib(const optimize_args *o, const moa_profile *prof) {
    if (!o->calib) return CLI_GO_ON;
    char given[65];
    moa_status st;
    if ((st = moa_sha256_file(o->calib, given)) < 0) return cli_fail("hashing --calib", st);
    if (!prof->calib_sha256[0] || strcmp(given, prof->calib_sha256) != 0) {
        if (prof->calib_sha256[0])
            fprintf(stderr, "moa optimize: --calib %s (sha256 %.16s...) is not the calibration set of %s, which "
                    "was profiled from sha256 %.16s...\n", o->calib, given, o->prof_path, prof->calib_sha256);
        else
            fprintf(stderr, "moa optimize: --calib %s cannot be confirmed: %s records no calibration file "
                    "(written before profiles recorded it); drop --calib or re-profile\n", o->calib, o->prof_path);
        return 1;
    }
    return CLI_GO_ON;
}

/* outputs: the directories must exist before minutes of solving. CLI_GO_ON or 1. */
static int check_output_dirs(const optimize_args *o) {
    const char *outs[3] = {o->out_path, o->csv, o->svg};
    for (int k = 0; k < 3; k++) {
        if (!outs[k]) continue;
        char *dir = moa_strdup(outs[k]);
        char *slash = dir ? strrchr(dir, '/') : NULL;
        if (slash) *slash = '\0';
        struct stat sb;
        int ok = !dir || !slash || (dir[0] == '\0' ? 1 : stat(dir, &sb) == 0 && S_ISDIR(sb.st_mode));
        if (!ok) fprintf(stderr, "moa optimize: cannot write %s: directory '%s' does not exist\n", outs[k], dir);
        free(dir);
        if (!ok) return 1;
    }
    return CLI_GO_ON;
}

/* constrained lengths: every profiled length at --density, then --density-at entries.
 * CLI_GO_ON or 2. */
static int constrained_lengths(optimize_args *o, const moa_profile *prof) {
    moa_opt_params *par = &o->par;
    for (int b = 0; b < prof->n_buckets && b < MOA_OPT_MAX_LENGTHS; b++) {
        par->constrained[b] = prof->buckets[b].length;
        par->budget[b] = par->density;
        par->n_constrained = b + 1;
    }
    if (!o->density_at) return CLI_GO_ON;
    char *s = moa_strdup(o->density_at), *save = NULL;
    for (char *tok = strtok_r(s, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        long n;
        double d;
        char *colon = strchr(tok, ':'), *end;
        if (!colon) goto bad_at;
        *colon = 0;
        n = strtol(tok, &end, 10);
        if (*end || n <= 0) goto bad_at;
        d = strtod(colon + 1, &end);
        if (*end || !(d > 0 && d <= 1)) goto bad_at;
        int k = 0;
        while (k < par->n_constrained && par->constrained[k] != n) k++;
        if (k == par->n_constrained) {
            if (k >= MOA_OPT_MAX_LENGTHS) goto bad_at;
            par->n_constrained++;
        }
        par->constrained[k] = n;
        par->budget[k] = d;
        continue;
    bad_at:
        free(s);
        fprintf(stderr, "moa optimize: --density-at: expected N:D,... with N > 0 and D in (0, 1]\n");
        return 2;
    }
    free(s);
    return CLI_GO_ON;
}

/* The plan of the selected point and the front files: the front files first and the plan
 * last, so a failed command leaves none of them; then the summary on stdout. Exit code. */
static int write_outputs(const optimize_args *o, const moa_opt_problem *pb, const moa_profile *prof,
                         const moa_opt_front *fr, const char *calib_sha) {
    char prof_sha[65] = "";
    moa_sha256_file(o->prof_path, prof_sha);
    moa_opt_provenance prov = {prof_sha, calib_sha[0] ? calib_sha : NULL};
    moa_plan *plan = NULL;
    moa_status st;
    int rc = 0;
    /* the front files first and the plan last: a failed command leaves none of them */
    st = moa_opt_make_plan(pb, prof, &o->par, &fr->points[fr->selected], &prov, &plan);
    if (st < 0) rc = cli_fail("making the plan", st);
    int wrote_csv = 0, wrote_svg = 0;
    if (!rc && o->csv) {
        if ((st = moa_opt_front_write_csv(pb, fr, o->csv)) < 0) rc = cli_fail("writing the front CSV", st);
        else wrote_csv = 1;
    }
    if (!rc && o->svg) {
        if ((st = moa_opt_front_write_svg(pb, fr, o->svg)) < 0) rc = cli_fail("writing the front SVG", st);
        else wrote_svg = 1;
    }
    if (!rc && (st = moa_plan_save(plan, o->out_path)) < 0) rc = cli_fail("writing the plan", st);
    if (rc) {
        if (wrote_csv) remove(o->csv);
        if (wrote_svg) remove(o->svg);
    }
    if (!rc) {
        const moa_opt_solution *s = &fr->points[fr->selected];
        printf("plan: %s (point %d of %d on the front, %d solves, %.2f s, %s, gap %.2g)\n", o->out_path,
               fr->selected, fr->n_points, fr->n_solves, fr->time, s->proven ? "optimal" : "feasible", s->gap);
        for (int j = 0; j < pb->n_len; j++)
            printf("  loss at N=%lld: %.6g%s\n", (long long)pb->len[j], s->loss[j], j == pb->val ? " (validation)" : "");
        for (int k = 0; k < pb->n_con; k++)
            printf("  density at N=%lld: %.4f (budget %.4f)\n", (long long)pb->con_len[k], s->density[k], pb->budget_hi[k]);
    }
    moa_plan_free(plan);
    return rc;
}

/* The problem from the profile, its Pareto front (progress bar on stderr), the outputs. */
static int solve_and_write(optimize_args *o, const moa_profile *prof, const char *calib_sha) {
    moa_opt_problem *pb = NULL;
    moa_status st = moa_opt_problem_from_profile(prof, &o->par, &pb);
    if (st < 0) return cli_fail("building the problem", st);
    moa_log_info("%d layers x %d units, %d rules, %d objective lengths, %d constrained lengths",
                 pb->n_layer, pb->units_per_layer, pb->n_rules, pb->n_obj, pb->n_con);
    moa_progress_bar bar;
    moa_progress_bar_init(&bar, "solve", "s");
    o->par.progress = progress_cb;
    o->par.progress_data = &bar;
    moa_opt_front fr;
    st = moa_opt_pareto(pb, &o->par, &fr);
    moa_progress_bar_finish(&bar);
    if (st < 0) { moa_opt_problem_free(pb); return cli_fail("optimizing", st); }
    int rc = write_outputs(o, pb, prof, &fr, calib_sha);
    moa_opt_front_clear(&fr);
    moa_opt_problem_free(pb);
    return rc;
}

int moa_cmd_optimize(int argc, char **argv) {
    optimize_args o;
    memset(&o, 0, sizeof o);
    o.par = moa_opt_default_params();
    o.grid = o.par.grid;
    int rc = parse_flags(argc, argv, &o);
    if (rc == CLI_GO_ON) rc = apply_flags(&o);
    if (rc != CLI_GO_ON) return rc;
    moa_h5_init();
    moa_opt_init();
    moa_profile *prof = NULL;
    moa_status st = moa_profile_load(o.prof_path, &prof);
    if (st < 0) return cli_fail("loading the profile", st);
    char calib_sha[65] = "";
    snprintf(calib_sha, sizeof calib_sha, "%s", prof->calib_sha256);
    rc = confirm_calib(&o, prof);
    if (rc == CLI_GO_ON) rc = check_output_dirs(&o);
    if (rc == CLI_GO_ON) rc = constrained_lengths(&o, prof);
    if (rc == CLI_GO_ON) rc = solve_and_write(&o, prof, calib_sha);
    moa_profile_free(prof);
    return rc;
}
