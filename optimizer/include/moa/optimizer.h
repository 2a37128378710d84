/* moa/optimizer.h - the public API of optimizer/ (library moa_optimizer), MoA's decision core:
 * from an attention-influence profile to a plan. Other parts, the CLI and bench/ include it as
 * "moa/optimizer.h" (the moa_optimizer target exposes optimizer/include); optimizer/ has no
 * other header.
 *
 *   rule space      candidate (alpha, beta) elastic rules, validity filter   (rules.c)
 *   problem         loss tables as suffix sums of the influence histograms,
 *                   per-rule densities per constrained length                 (problem.c)
 *   solve           one MILP on GLPK (time limit, MIP gap, progress, warm
 *                   start by LP rounding, statuses mapped to moa errors)      (milp.c)
 *   pareto/select   epsilon-constraint front, dominance filter, selection    (pareto.c)
 *   plan            solution -> moa_plan (runtime/plan-internal.h)            (make-plan.c)
 *   synth           synthetic profiles with planted head types               (synth.c)
 *
 * Formulation in docs/optimizer.md. Threading: call moa_opt_init() once from the main thread
 * (GLPK's terminal/error hooks); after that, distinct problems may be solved from distinct
 * threads (GLPK keeps per-thread environments), one problem per thread at a time. The rule
 * functions are pure. Ownership is stated per function: inputs (problem, parameters,
 * profile) are only read during a call; what a call returns belongs to the caller. Progress
 * callbacks run on the solving thread.
 */
#ifndef MOA_OPTIMIZER_H
#define MOA_OPTIMIZER_H

#include <stdint.h>
#include "moa/base.h"
#include "moa/runtime.h"
#include "moa/profile-file.h"

#define MOA_OPT_MAX_LENGTHS 32
#define MOA_OPT_MAX_RULES 1024

/* Once, from the main thread: silence GLPK's terminal output, install its error hook.
 * Process-wide; moa_compress_run_model calls it too. */
void moa_opt_init(void);

/* ---- rule space ------------------------------------------------------------------------- */
typedef struct {
    double alpha, beta;
} moa_rule;

/* Default candidates scaled to the profiled range as the reference does for 2k..8k:
 * alpha in {-2,...,8} * step with step = 1024 * n_max_profiled / 8192 rounded to `block`
 * (at least one block), beta in {0, 1/8, ..., 1}; then filtered with moa_rules_filter.
 * Returns the count written to out (<= cap). */
int moa_rules_default(int64_t n_min_profiled, int64_t n_max_profiled, int64_t n_max, int64_t block,
                      moa_rule *out, int cap);
/* Keep rules with alpha + beta*n_min > 0, alpha + beta*n_max_profiled <= n_max_profiled and
 * alpha + beta*n_max <= n_max (the reference's filter). In place; returns the new count. */
int moa_rules_filter(moa_rule *rules, int n, int64_t n_min, int64_t n_max_profiled, int64_t n_max);
/* The one definition of the candidate values. Alphas: {-2, ..., 8} x step, step = 1024 *
 * step_len / 8192 rounded to `block` (at least one block); with short_windows, then 1, 2 and
 * 4 blocks where not already present (windows the reference's step never offers below 2k
 * objectives; moa compress uses them). Writes at most MOA_RULES_MAX_ALPHAS values, returns
 * the count. Betas: {0, 1/8, ..., 1}, MOA_RULES_N_BETAS values. */
#define MOA_RULES_MAX_ALPHAS 14
#define MOA_RULES_N_BETAS 9
int moa_rules_alphas(int64_t step_len, int64_t block, int short_windows, double *alphas);
void moa_rules_betas(double *betas);
/* Cartesian product of alphas x betas (alpha-major), unfiltered; returns the count (<= cap). */
int moa_rules_cross(const double *alphas, int n_alpha, const double *betas, int n_beta, moa_rule *out, int cap);
/* Cartesian product of alphas x betas, then filtered. */
int moa_rules_grid(const double *alphas, int n_alpha, const double *betas, int n_beta,
                   int64_t n_min, int64_t n_max_profiled, int64_t n_max, moa_rule *out, int cap);

/* ---- parameters --------------------------------------------------------------------------- */
typedef struct {
    /* rules: NULL/0 = defaults */
    const moa_rule *rules;
    int n_rules;
    /* lengths. Objectives: profiled lengths to minimise (0 entries = every profiled length
     * except the validation one). Validation: a profiled length left out of the objectives
     * (0 = none). Constrained: lengths with a density budget (0 entries = every profiled
     * length, at `density`). */
    int n_objective;
    int64_t objective[MOA_OPT_MAX_LENGTHS];
    int64_t validation;
    int n_constrained;
    int64_t constrained[MOA_OPT_MAX_LENGTHS];
    double budget[MOA_OPT_MAX_LENGTHS];      /* density upper bound per constrained length */
    double density;                          /* default budget for lengths without one */
    double lower_frac;                       /* 0 = none; else density >= lower_frac*budget */
    int max_rules_per_layer;                 /* 0 = no cap */
    moa_granularity granularity;
    int use_signed;                          /* loss from influence_signed instead of _abs */
    double far_weight;                       /* influence at distances >= N/4 counts this many
                                                times (default 1: the reference's loss; > 1
                                                favours heads that retrieve far, see
                                                docs/optimizer.md) */
    /* solver */
    double time_limit;                       /* seconds per MILP solve (default 60) */
    double mip_gap;                          /* relative gap to stop at (default 1e-3) */
    int glpk_presolve;                       /* GLPK's MIP presolver (default off: see docs) */
    int heuristic;                           /* LP-rounding warm start (default on) */
    int cuts;                                /* GLPK's GMI, MIR, cover, clique cuts (on) */
    /* Pareto front */
    int grid;                                /* epsilon levels per secondary objective
                                                (default 5); 0 = exact front (2 objectives) */
    double augment;                          /* weight of the other objectives (default 1e-6) */
    int widen;                               /* the selected point widened (moa_opt_widen;
                                                default 1) */
    /* progress: done = seconds elapsed in this solve, total = time limit, extra = gap */
    moa_progress_fn progress;
    void *progress_data;
} moa_opt_params;

moa_opt_params moa_opt_default_params(void);

/* ---- problem ---------------------------------------------------------------------------- */
/* A fully tabulated instance. Built from a profile, or directly (tests, benchmarks). */
typedef struct {
    int n_layer, units_per_layer, n_units;   /* n_units = n_layer * units_per_layer */
    int group;                 /* q-head granularity: units per KV group (1 = kv-head) */
    int n_rules;
    moa_rule *rules;           /* (n_rules) */
    int n_len;                 /* lengths with a loss table (profiled) */
    int64_t len[MOA_OPT_MAX_LENGTHS];
    double *loss;              /* (n_len, n_units, n_rules) normalised loss */
    double loss_scale[MOA_OPT_MAX_LENGTHS]; /* raw = normalised * scale */
    int n_obj;
    int obj[MOA_OPT_MAX_LENGTHS];  /* indices into len[] minimised */
    int val;                   /* index into len[] of the validation length, -1 = none */
    int n_con;
    int64_t con_len[MOA_OPT_MAX_LENGTHS];
    double *dens;              /* (n_con, n_rules) density of a rule at con_len[k] */
    double budget_hi[MOA_OPT_MAX_LENGTHS];
    double budget_lo[MOA_OPT_MAX_LENGTHS];   /* 0 = none */
    int max_rules_per_layer;
    int64_t sink, block;
} moa_opt_problem;

/* Allocate tables for the given sizes (everything zeroed, obj/val/budgets to fill). The
 * caller owns *out (moa_opt_problem_free). */
moa_status moa_opt_problem_alloc(int n_layer, int units_per_layer, int group, int n_rules,
                                 int n_len, int n_con, moa_opt_problem **out);
/* Tabulate from a profile: rules, loss suffix sums (normalised per length by the loss of
 * keeping only the sinks), densities via the shared span definition. The problem copies what
 * it needs (prof and par may be freed after); the caller owns *out (moa_opt_problem_free). */
moa_status moa_opt_problem_from_profile(const moa_profile *prof, const moa_opt_params *par,
                                        moa_opt_problem **out);
void moa_opt_problem_free(moa_opt_problem *pb);   /* accepts NULL */

/* Smallest achievable plan density at each constrained length (every unit at its
 * narrowest rule); out has n_con entries. */
void moa_opt_min_density(const moa_opt_problem *pb, double *out);

/* ---- one solve ---------------------------------------------------------------------------- */
typedef struct {
    int *choice;               /* (n_units) rule index per unit */
    double loss[MOA_OPT_MAX_LENGTHS];     /* normalised loss per len[] */
    double density[MOA_OPT_MAX_LENGTHS];  /* plan density per con_len[] */
    double objective;          /* value of the solved objective */
    double bound;              /* best proven lower bound on it */
    double gap;                /* (objective - bound) / max(|objective|, 1e-12) */
    double lp_bound;           /* root LP relaxation value */
    int proven;                /* 1: optimal within GLPK tolerances; 0: feasible, unproven */
    double time;               /* seconds */
} moa_opt_solution;

typedef struct {
    double weight[MOA_OPT_MAX_LENGTHS];   /* objective weight per len[] */
    double eps[MOA_OPT_MAX_LENGTHS];      /* upper bound on loss per len[] (INFINITY: none) */
} moa_opt_objective;

/* Minimise sum_j weight[j]*loss_j subject to budgets and eps. MOA_ERR_INFEASIBLE (message
 * naming the smallest feasible density per length when the budgets are the cause),
 * MOA_ERR_INTERRUPTED (time limit without any feasible solution), MOA_ERR_SOLVER.
 * Caller frees sol with moa_opt_solution_clear(). */
moa_status moa_opt_solve(const moa_opt_problem *pb, const moa_opt_params *par,
                         const moa_opt_objective *ob, moa_opt_solution *sol);
void moa_opt_solution_clear(moa_opt_solution *sol);

/* LP basis carried between solves of the same problem (the Pareto sweep uses it): the next
 * LP relaxation starts from the previous optimal basis when the column set is the same.
 * Zero-initialise; free with moa_opt_warm_clear. */
typedef struct {
    int nx, ncols, nbase;
    int *col_unit, *col_rule;  /* (nx+1) */
    int *cstat, *rstat;        /* GLPK statuses: (ncols+1), (nbase+1) */
    int *eps_rstat;            /* per length, 0 = no eps row */
} moa_opt_warm;
/* moa_opt_solve starting from (and updating) *warm, which belongs to the caller. */
moa_status moa_opt_solve_warm(const moa_opt_problem *pb, const moa_opt_params *par,
                              const moa_opt_objective *ob, moa_opt_solution *sol, moa_opt_warm *warm);
void moa_opt_warm_clear(moa_opt_warm *w);
/* Evaluate a choice vector: losses and densities (no solver; writes sol->loss and
 * sol->density only). */
void moa_opt_evaluate(const moa_opt_problem *pb, const int *choice, moa_opt_solution *sol);

/* ---- Pareto front and selection ---------------------------------------------------------- */
typedef struct {
    int n_points;
    moa_opt_solution *points;  /* non-dominated, distinct, sorted by loss at obj[0] */
    int selected;              /* index of the chosen plan */
    int n_solves;
    double time;               /* seconds for the whole front */
    double max_gap;            /* worst gap among points */
    int n_widened;             /* units of the selected point moved by moa_opt_widen */
} moa_opt_front;

/* The front by repeated solves (warm-started); the caller frees it with moa_opt_front_clear. */
moa_status moa_opt_pareto(const moa_opt_problem *pb, const moa_opt_params *par, moa_opt_front *front);
void moa_opt_front_clear(moa_opt_front *front);
/* Lowest loss at the validation length; without one, the lowest worst-case loss over the
 * objective lengths. */
int moa_opt_select(const moa_opt_problem *pb, const moa_opt_front *front);

/* Spend unused budget on longer spans (widen.c): units of `choice` move greedily to rules
 * that are no worse at any profiled length and better at one (most loss gained per density
 * first) while every budget (and the per-layer rule cap) holds. The MILP's objectives see
 * only the objective lengths, so rules that differ beyond them tie there (a constant
 * 2048-token window and the whole context, with objectives up to 2048); this keeps the
 * longer one where the budget allows. In place; returns the number of moves. */
int moa_opt_widen(const moa_opt_problem *pb, int *choice);

/* Front as CSV (point,selected,proven,gap,loss_N...,density_N...). Atomic. */
moa_status moa_opt_front_write_csv(const moa_opt_problem *pb, const moa_opt_front *front, const char *path);
/* Front as SVG: loss at obj[0] (x) vs obj[1] (y; or density if one objective), colour =
 * validation loss, selected point ringed. Atomic. */
moa_status moa_opt_front_write_svg(const moa_opt_problem *pb, const moa_opt_front *front, const char *path);

/* ---- plan ------------------------------------------------------------------------------- */
typedef struct {
    const char *profile_sha256;   /* may be NULL */
    const char *calib_sha256;     /* may be NULL */
} moa_opt_provenance;

/* Build the plan of a solution (model identity from the profile). Caller frees the plan. */
moa_status moa_opt_make_plan(const moa_opt_problem *pb, const moa_profile *prof,
                             const moa_opt_params *par, const moa_opt_solution *sol,
                             const moa_opt_provenance *prov, moa_plan **out);

/* ---- synthetic profiles ------------------------------------------------------------------ */
typedef enum { MOA_SYNTH_LOCAL = 0, MOA_SYNTH_GLOBAL = 1, MOA_SYNTH_ELASTIC = 2 } moa_synth_type;

typedef struct {
    int n_layer, n_head, n_head_kv, head_dim;
    int sink, block;
    int n_lengths;
    int64_t lengths[MOA_OPT_MAX_LENGTHS];
    double frac_local, frac_global;   /* the rest are length-elastic */
    double local_scale;               /* tokens: decay length of local heads (default 256) */
    double elastic_frac;              /* elastic heads decay over elastic_frac * N (0.3) */
    double noise;                     /* relative multiplicative noise per bin (0.1) */
    uint64_t seed;
} moa_synth_params;

moa_synth_params moa_synth_default_params(void);
/* Planted type per KV group (all query heads of a group share it); types_out (may be NULL)
 * receives n_layer*n_head_kv types, malloc'd (free()). The caller owns *out
 * (moa_profile_free). Thread-safe (its own seeded generator). */
moa_status moa_synth_profile(const moa_synth_params *sp, moa_profile **out, moa_synth_type **types_out);

#endif
