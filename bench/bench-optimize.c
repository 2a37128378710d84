/* bench-optimize.c - optimizer benchmark on a synthetic profile (default: 70B scale,
 * 80 layers x 64 query heads, 8 KV heads, 48 rules, profiled 2k/4k/8k/12k).
 * Times one weighted-sum solve and a Pareto front (extremes + grid), reports gaps.
 * Prints the command, the machine and every timing; results on stdout, logs on stderr. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "moa/common.h"
#include "moa/h5util.h"
#include "moa/optimizer.h"

static void progress(void *data, double done, double total, double gap, const char *unit) {
    (void)data; (void)total; (void)unit;
    fprintf(stderr, "  [%.1f s] gap %.3g\n", done, gap);
}

static void usage(FILE *f) {
    fprintf(f,
        "usage: bench-optimize [options]\n"
        "  --layers N        layers (80)\n"
        "  --heads N         query heads per layer (64)\n"
        "  --kv-heads N      KV heads per layer (8)\n"
        "  --lengths L,...   profiled lengths (2048,4096,8192,12288)\n"
        "  --validate N      validation length, 0 = none (12288)\n"
        "  --extra N         extra constrained length beyond the profile, 0 = none (16384)\n"
        "  --density D       density budget at every constrained length (0.5)\n"
        "  --grid G          epsilon levels per secondary objective (4)\n"
        "  --gap G           relative MIP gap (0.001)\n"
        "  --time-limit S    seconds per solve (60)\n"
        "  --q-head          q-head granularity (default kv-head)\n"
        "  --no-heuristic    disable the LP-rounding warm start\n"
        "  --no-cuts         disable GLPK's cut generators\n"
        "  --seed S          synthetic profile seed (1)\n"
        "  --repeats R       repeats of the single solve (3)\n"
        "  --verbose         solver progress and debug log on stderr\n"
        "  --write-profile F write the synthetic profile to F (moa-profile v1) and exit\n");
}

int main(int argc, char **argv) {
    moa_synth_params sp = moa_synth_default_params();
    sp.n_layer = 80; sp.n_head = 64; sp.n_head_kv = 8; sp.head_dim = 128;
    sp.n_lengths = 4;
    sp.lengths[0] = 2048; sp.lengths[1] = 4096; sp.lengths[2] = 8192; sp.lengths[3] = 12288;
    moa_opt_params par = moa_opt_default_params();
    par.mip_gap = 1e-3;
    par.grid = 4;
    par.validation = 12288;
    long extra = 16384;
    int repeats = 3, verbose = 0;
    const char *write_profile = NULL;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
#define ARG(name) (!strcmp(a, name) && v && (i++, 1))
        if (ARG("--layers")) sp.n_layer = atoi(v);
        else if (ARG("--heads")) sp.n_head = atoi(v);
        else if (ARG("--kv-heads")) sp.n_head_kv = atoi(v);
        else if (ARG("--lengths")) {
            long l[MOA_OPT_MAX_LENGTHS];
            int n = moa_parse_int_list(v, l, MOA_OPT_MAX_LENGTHS);
            if (n <= 0) { usage(stderr); return 2; }
            sp.n_lengths = n;
            for (int k = 0; k < n; k++) sp.lengths[k] = l[k];
        }
        else if (ARG("--validate")) par.validation = atol(v);
        else if (ARG("--extra")) extra = atol(v);
        else if (ARG("--density")) par.density = atof(v);
        else if (ARG("--grid")) par.grid = atoi(v);
        else if (ARG("--gap")) par.mip_gap = atof(v);
        else if (ARG("--time-limit")) par.time_limit = atof(v);
        else if (ARG("--seed")) sp.seed = strtoull(v, NULL, 10);
        else if (ARG("--repeats")) repeats = atoi(v);
        else if (!strcmp(a, "--q-head")) par.granularity = MOA_GRAN_Q_HEAD;
        else if (!strcmp(a, "--no-heuristic")) par.heuristic = 0;
        else if (!strcmp(a, "--no-cuts")) par.cuts = 0;
        else if (!strcmp(a, "--verbose")) verbose = 1;
        else if (ARG("--write-profile")) write_profile = v;
        else if (!strcmp(a, "-h") || !strcmp(a, "--help")) { usage(stdout); return 0; }
        else { fprintf(stderr, "bench-optimize: bad argument '%s'\n", a); usage(stderr); return 2; }
#undef ARG
    }
    int lvl = verbose ? MOA_LOG_DEBUG : MOA_LOG_WARN;
    if (verbose) par.progress = progress;
    moa_log_set(moa_log_stderr, &lvl);
    moa_opt_init();
    printf("command:");
    for (int i = 0; i < argc; i++) printf(" %s", argv[i]);
    printf("\nmachine: %ld online cores; GLPK is single-threaded\n", sysconf(_SC_NPROCESSORS_ONLN));
    moa_profile *prof;
    if (moa_synth_profile(&sp, &prof, NULL) < 0) { fprintf(stderr, "%s\n", moa_last_error()); return 1; }
    if (write_profile) {
        moa_h5_init();
        if (moa_profile_save(prof, write_profile) < 0) { fprintf(stderr, "%s\n", moa_last_error()); return 1; }
        printf("profile written to %s\n", write_profile);
        moa_profile_free(prof);
        return 0;
    }
    /* constrained: every profiled length plus the extra one, all at the same budget */
    for (int k = 0; k < sp.n_lengths; k++) { par.constrained[k] = sp.lengths[k]; par.budget[k] = par.density; }
    par.n_constrained = sp.n_lengths;
    if (extra > 0) { par.constrained[par.n_constrained] = extra; par.budget[par.n_constrained++] = par.density; }
    moa_opt_problem *pb;
    double t0 = moa_time_now();
    if (moa_opt_problem_from_profile(prof, &par, &pb) < 0) { fprintf(stderr, "%s\n", moa_last_error()); return 1; }
    printf("instance: %d layers x %d units (%s), %d rules, %d objective lengths, %d constrained, validation %lld, density %.3g\n",
           pb->n_layer, pb->units_per_layer, par.granularity == MOA_GRAN_Q_HEAD ? "q-head" : "kv-head",
           pb->n_rules, pb->n_obj, pb->n_con, (long long)par.validation, par.density);
    printf("tables: %.3f s\n", moa_time_now() - t0);
    printf("solver: mip_gap %.3g, time limit %.3g s/solve, heuristic %s, cuts %s\n", par.mip_gap, par.time_limit,
           par.heuristic ? "on" : "off", par.cuts ? "on" : "off");
    /* single weighted-sum solve */
    moa_opt_objective ob;
    for (int j = 0; j < MOA_OPT_MAX_LENGTHS; j++) { ob.weight[j] = 0; ob.eps[j] = INFINITY; }
    for (int i = 0; i < pb->n_obj; i++) ob.weight[pb->obj[i]] = 1;
    double ts[16], sum = 0, worst_gap = 0;
    if (repeats > 16) repeats = 16;
    for (int r = 0; r < repeats; r++) {
        moa_opt_solution s;
        if (moa_opt_solve(pb, &par, &ob, &s) < 0) { fprintf(stderr, "solve: %s\n", moa_last_error()); return 1; }
        ts[r] = s.time;
        sum += s.time;
        if (s.gap > worst_gap) worst_gap = s.gap;
        printf("single solve %d: %.3f s, objective %.6f, bound %.6f, LP %.6f, gap %.2e, %s\n", r + 1, s.time,
               s.objective, s.bound, s.lp_bound, s.gap, s.proven ? "optimal" : "feasible (gap reached)");
        moa_opt_solution_clear(&s);
    }
    double mean = sum / repeats, var = 0;
    for (int r = 0; r < repeats; r++) var += (ts[r] - mean) * (ts[r] - mean);
    printf("single solve: %.3f +- %.3f s over %d runs, worst gap %.2e\n", mean,
           repeats > 1 ? sqrt(var / (repeats - 1)) : 0, repeats, worst_gap);
    /* front */
    moa_opt_front fr;
    if (moa_opt_pareto(pb, &par, &fr) < 0) { fprintf(stderr, "front: %s\n", moa_last_error()); return 1; }
    printf("front: %d solves, %d non-dominated points, %.3f s total, max gap %.2e, selected %d\n",
           fr.n_solves, fr.n_points, fr.time, fr.max_gap, fr.selected);
    for (int i = 0; i < fr.n_points; i++) {
        printf("  point %2d:", i);
        for (int j = 0; j < pb->n_len; j++) printf(" loss@%lld=%.5f", (long long)pb->len[j], fr.points[i].loss[j]);
        printf("  gap %.1e %.2fs\n", fr.points[i].gap, fr.points[i].time);
    }
    moa_opt_front_clear(&fr);
    moa_opt_problem_free(pb);
    moa_profile_free(prof);
    return 0;
}
