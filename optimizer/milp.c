/* milp.c - one MILP solve on GLPK.
 *
 * Variables: x[u][r] binary for the non-dominated rules of unit u; y[l][r] binary (only with a
 * cap on distinct rules per layer); m[g][k] in [0, 1] (q-head granularity: density of KV group
 * g at constrained length k = the largest density of its query heads).
 * Rows: sum_r x[u][r] = 1; mean density <= D_k (>= lo_k); loss_j <= eps_j; x[u][r] <= y[l][r],
 * sum_r y[l][r] <= cap; (q-head) sum_r dens[k][r] x[u][r] <= m[g(u)][k].
 * The LP relaxation is solved first (bound, warm basis); branch and bound then starts from an
 * incumbent obtained by rounding the LP (a vertex has at most as many fractional units as
 * side constraints: those are enumerated).
 */
#include <glpk.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "moa/common.h"
#include "moa/optimizer.h"

/* ---- GLPK hooks (main thread, once) ----------------------------------------------------- */

static int term_hook(void *info, const char *s) {
    (void)info;
    (void)s;
    return 1;   /* swallow: libraries never print */
}

static void error_hook(void *info) {
    (void)info;
    /* GLPK aborts after this returns; leave a trace in the log first. */
    moa_log(MOA_LOG_ERROR, "GLPK internal error (a bug in the optimizer's model); aborting");
}

void moa_opt_init(void) {
    glp_term_out(GLP_OFF);
    glp_term_hook(term_hook, NULL);
    glp_error_hook(error_hook, NULL);
}

/* ---- evaluation --------------------------------------------------------------------------- */

static double unit_loss(const moa_opt_problem *pb, int j, int u, int r) {
    return pb->loss[((size_t)j * pb->n_units + u) * pb->n_rules + r];
}
static double rule_dens(const moa_opt_problem *pb, int k, int r) {
    return pb->dens[(size_t)k * pb->n_rules + r];
}

void moa_opt_evaluate(const moa_opt_problem *pb, const int *choice, moa_opt_solution *sol) {
    for (int j = 0; j < pb->n_len; j++) {
        double s = 0;
        for (int u = 0; u < pb->n_units; u++) s += unit_loss(pb, j, u, choice[u]);
        sol->loss[j] = s;
    }
    int ng = pb->n_units / pb->group;
    for (int k = 0; k < pb->n_con; k++) {
        double s = 0;
        for (int g = 0; g < ng; g++) {
            double m = 0;
            for (int u = g * pb->group; u < (g + 1) * pb->group; u++) {
                double d = rule_dens(pb, k, choice[u]);
                if (d > m) m = d;
            }
            s += m;
        }
        sol->density[k] = s / ng;
    }
}

void moa_opt_solution_clear(moa_opt_solution *sol) {
    free(sol->choice);
    memset(sol, 0, sizeof *sol);
}

/* ---- model -------------------------------------------------------------------------------- */

typedef struct {
    const moa_opt_problem *pb;
    const moa_opt_params *par;
    const moa_opt_objective *ob;
    int nx;            /* x columns: 1..nx */
    int *col_unit;     /* (nx+1) */
    int *col_rule;     /* (nx+1) */
    int *ustart;       /* (n_units+1) first x column index (0-based into 1..nx) */
    int y0, ny;        /* y columns y0+1 .. y0+ny, index l*n_rules + r */
    int m0, nm;        /* m columns m0+1 .. m0+nm, index g*n_con + k */
    int ncols;
    double *xbuf;      /* (ncols+1) */
    int *choice, *best_choice;
    double t0, last_report;
    double best_bound;
    int have_bound;
    int heur_calls;
} model;

/* Objective value of a choice vector under `ob`; feasibility against budgets/eps/cap. */
static int feasible(const model *md, const int *choice, moa_opt_solution *tmp, double *obj) {
    const moa_opt_problem *pb = md->pb;
    moa_opt_evaluate(pb, choice, tmp);
    for (int k = 0; k < pb->n_con; k++) {
        if (tmp->density[k] > pb->budget_hi[k] + 1e-9) return 0;
        if (pb->budget_lo[k] > 0 && tmp->density[k] < pb->budget_lo[k] - 1e-9) return 0;
    }
    double o = 0;
    for (int j = 0; j < pb->n_len; j++) {
        if (isfinite(md->ob->eps[j]) && tmp->loss[j] > md->ob->eps[j] + 1e-9 * (1 + fabs(md->ob->eps[j])))
            return 0;
        o += md->ob->weight[j] * tmp->loss[j];
    }
    if (pb->max_rules_per_layer > 0) {
        for (int l = 0; l < pb->n_layer; l++) {
            int distinct = 0;
            for (int i = 0; i < pb->units_per_layer; i++) {
                int u = l * pb->units_per_layer + i, seen = 0;
                for (int i2 = 0; i2 < i; i2++)
                    if (choice[l * pb->units_per_layer + i2] == choice[u]) { seen = 1; break; }
                distinct += !seen;
            }
            if (distinct > pb->max_rules_per_layer) return 0;
        }
    }
    *obj = o;
    return 1;
}

static void fill_xvec(const model *md, const int *choice, double *x) {
    const moa_opt_problem *pb = md->pb;
    memset(x, 0, (size_t)(md->ncols + 1) * sizeof *x);
    for (int u = 0; u < pb->n_units; u++)
        for (int c = md->ustart[u]; c < md->ustart[u + 1]; c++)
            if (md->col_rule[c + 1] == choice[u]) x[c + 1] = 1;
    if (md->ny)
        for (int u = 0; u < pb->n_units; u++)
            x[md->y0 + 1 + (u / pb->units_per_layer) * pb->n_rules + choice[u]] = 1;
    if (md->nm) {
        int ng = pb->n_units / pb->group;
        for (int g = 0; g < ng; g++)
            for (int k = 0; k < pb->n_con; k++) {
                double m = 0;
                for (int u = g * pb->group; u < (g + 1) * pb->group; u++)
                    if (rule_dens(pb, k, choice[u]) > m) m = rule_dens(pb, k, choice[u]);
                x[md->m0 + 1 + g * pb->n_con + k] = m;
            }
    }
}

/* ---- local search on a feasible choice (kv-head granularity, no rule cap) ----------------
 * Sums are kept unnormalised: D[k] = sum_u dens[k][c_u] <= U*hi[k] (>= U*lo[k]), E[j] = loss
 * at eps-bounded lengths. Moves: one unit to another rule (first improvement), then pairs
 * "one unit up (better loss, more density) + one unit down (frees density)" from short lists. */
typedef struct { int u, r; double dobj; } ls_move;

static int cmp_move(const void *a, const void *b) {
    double x = ((const ls_move *)a)->dobj, y = ((const ls_move *)b)->dobj;
    return (x > y) - (x < y);
}

static double unit_obj(const model *md, int u, int r) {
    double o = 0;
    for (int j = 0; j < md->pb->n_len; j++)
        if (md->ob->weight[j] != 0) o += md->ob->weight[j] * unit_loss(md->pb, j, u, r);
    return o;
}

static int ls_ok(const model *md, const double *D, const double *E) {
    const moa_opt_problem *pb = md->pb;
    for (int k = 0; k < pb->n_con; k++) {
        if (D[k] > pb->budget_hi[k] * pb->n_units + 1e-9) return 0;
        if (pb->budget_lo[k] > 0 && D[k] < pb->budget_lo[k] * pb->n_units - 1e-9) return 0;
    }
    for (int j = 0; j < pb->n_len; j++)
        if (isfinite(md->ob->eps[j]) && E[j] > md->ob->eps[j] + 1e-9 * (1 + fabs(md->ob->eps[j]))) return 0;
    return 1;
}

/* The search state: the choice c and its sums D, E; D2, E2 are the sums of a trial move. */
typedef struct {
    const model *md;
    int *c;
    double D[MOA_OPT_MAX_LENGTHS], E[MOA_OPT_MAX_LENGTHS], D2[MOA_OPT_MAX_LENGTHS], E2[MOA_OPT_MAX_LENGTHS];
} ls_state;

/* A trial starts from the current sums. */
static void ls_trial(ls_state *s) {
    memcpy(s->D2, s->D, sizeof s->D);
    memcpy(s->E2, s->E, sizeof s->E);
}

/* Adds "unit u moves to rule r" to the trial sums. */
static void ls_move_sums(ls_state *s, int u, int r) {
    const moa_opt_problem *pb = s->md->pb;
    const double *eps = s->md->ob->eps;
    for (int k = 0; k < pb->n_con; k++) s->D2[k] += rule_dens(pb, k, r) - rule_dens(pb, k, s->c[u]);
    for (int j = 0; j < pb->n_len; j++)
        if (isfinite(eps[j])) s->E2[j] += unit_loss(pb, j, u, r) - unit_loss(pb, j, u, s->c[u]);
}

/* The trial sums become the current ones (the caller updates c). */
static void ls_commit(ls_state *s) {
    memcpy(s->D, s->D2, sizeof s->D);
    memcpy(s->E, s->E2, sizeof s->E);
}

/* Total relative violation of the budget and eps rows by the sums D, E (0: feasible). */
static double ls_violation(const model *md, const double *D, const double *E) {
    const moa_opt_problem *pb = md->pb;
    const int U = pb->n_units;
    double V = 0;
    for (int k = 0; k < pb->n_con; k++) {
        double cap = pb->budget_hi[k] * U;
        if (D[k] > cap + 1e-9) V += (D[k] - cap) / cap;
        if (pb->budget_lo[k] > 0 && D[k] < pb->budget_lo[k] * U - 1e-9) V += (pb->budget_lo[k] * U - D[k]) / (pb->budget_lo[k] * U);
    }
    for (int j = 0; j < pb->n_len; j++)
        if (isfinite(md->ob->eps[j]) && E[j] > md->ob->eps[j]) V += (E[j] - md->ob->eps[j]) / fmax(fabs(md->ob->eps[j]), 1e-12);
    return V;
}

/* repair: while a row is violated, apply the single move with the least objective
 * increase per unit of violation removed. 0: cannot repair. */
static int ls_repair(ls_state *s) {
    const model *md = s->md;
    const int U = md->pb->n_units;
    int *c = s->c;
    for (int it = 0; it < 4 * U; it++) {
        double V = ls_violation(md, s->D, s->E);
        if (V <= 0) break;
        double best = INFINITY;
        int bu = -1, br = -1;
        for (int u = 0; u < U; u++) {
            double cur = unit_obj(md, u, c[u]);
            for (int cc = md->ustart[u]; cc < md->ustart[u + 1]; cc++) {
                int r = md->col_rule[cc + 1];
                if (r == c[u]) continue;
                ls_trial(s);
                ls_move_sums(s, u, r);
                double V2 = ls_violation(md, s->D2, s->E2);
                if (V2 >= V - 1e-15) continue;
                double ratio = (unit_obj(md, u, r) - cur) / (V - V2);
                if (ratio < best) { best = ratio; bu = u; br = r; }
            }
        }
        if (bu < 0) return 0;   /* cannot repair */
        ls_trial(s);
        ls_move_sums(s, bu, br);
        ls_commit(s);
        c[bu] = br;
    }
    return 1;
}

/* fill: apply the feasible improving single move with the best gain per unit of budget */
static void ls_fill(ls_state *s) {
    const model *md = s->md;
    const moa_opt_problem *pb = md->pb;
    const int U = pb->n_units;
    int *c = s->c;
    for (int it = 0; it < 4 * U; it++) {
        double best = 0;
        int bu = -1, br = -1;
        for (int u = 0; u < U; u++) {
            double cur = unit_obj(md, u, c[u]);
            for (int cc = md->ustart[u]; cc < md->ustart[u + 1]; cc++) {
                int r = md->col_rule[cc + 1];
                double d = unit_obj(md, u, r) - cur;
                if (r == c[u] || d >= -1e-15) continue;
                ls_trial(s);
                ls_move_sums(s, u, r);
                if (!ls_ok(md, s->D2, s->E2)) continue;
                double use = 1e-9;
                for (int k = 0; k < pb->n_con; k++) {
                    double room = pb->budget_hi[k] * U - s->D[k];
                    double inc = s->D2[k] - s->D[k];
                    if (inc > 0) use += inc / fmax(room, 1e-12);
                }
                double score = d / use;
                if (score < best) { best = score; bu = u; br = r; }
            }
        }
        if (bu < 0) break;
        ls_trial(s);
        ls_move_sums(s, bu, br);
        ls_commit(s);
        c[bu] = br;
    }
}

/* Every single move, into up (better loss) or down (no better loss, but frees density). */
static void ls_list_moves(const ls_state *s, ls_move *up, int *nu, ls_move *down, int *nd) {
    const model *md = s->md;
    const moa_opt_problem *pb = md->pb;
    const int *c = s->c;
    *nu = *nd = 0;
    for (int u = 0; u < pb->n_units; u++) {
        double cur = unit_obj(md, u, c[u]);
        for (int cc = md->ustart[u]; cc < md->ustart[u + 1]; cc++) {
            int r = md->col_rule[cc + 1];
            if (r == c[u]) continue;
            double d = unit_obj(md, u, r) - cur;
            int frees = 0;
            for (int k = 0; k < pb->n_con; k++) if (rule_dens(pb, k, r) < rule_dens(pb, k, c[u])) frees = 1;
            if (d < -1e-12) up[(*nu)++] = (ls_move){u, r, d};
            else if (frees) down[(*nd)++] = (ls_move){u, r, d};
        }
    }
}

/* pair moves */
static void ls_pairs(ls_state *s) {
    enum { K = 96 };
    size_t cap = (size_t)s->md->nx;
    ls_move *up = malloc(cap * sizeof *up), *down = malloc(cap * sizeof *down);
    if (!up || !down) { free(up); free(down); return; }
    for (int it = 0; it < 200; it++) {
        int nu, nd;
        ls_list_moves(s, up, &nu, down, &nd);
        qsort(up, (size_t)nu, sizeof *up, cmp_move);
        qsort(down, (size_t)nd, sizeof *down, cmp_move);
        if (nu > K) nu = K;
        if (nd > 4 * K) nd = 4 * K;
        double best = -1e-12;
        int bi = -1, bj = -1;
        for (int i = 0; i < nu; i++) {
            for (int j = 0; j < nd; j++) {
                double d = up[i].dobj + down[j].dobj;
                if (d >= best) break;    /* down sorted ascending */
                if (up[i].u == down[j].u) continue;
                ls_trial(s);
                ls_move_sums(s, up[i].u, up[i].r);
                ls_move_sums(s, down[j].u, down[j].r);
                if (!ls_ok(s->md, s->D2, s->E2)) continue;
                best = d; bi = i; bj = j;
            }
        }
        if (bi < 0) break;
        ls_trial(s);
        ls_move_sums(s, up[bi].u, up[bi].r);
        ls_move_sums(s, down[bj].u, down[bj].r);
        ls_commit(s);
        s->c[up[bi].u] = up[bi].r;
        s->c[down[bj].u] = down[bj].r;
    }
    free(up);
    free(down);
}

static void local_search(model *md, int *c) {
    const moa_opt_problem *pb = md->pb;
    if (pb->group != 1 || pb->max_rules_per_layer > 0) return;
    ls_state s;
    memset(&s, 0, sizeof s);
    s.md = md;
    s.c = c;
    for (int u = 0; u < pb->n_units; u++) {
        for (int k = 0; k < pb->n_con; k++) s.D[k] += rule_dens(pb, k, c[u]);
        for (int j = 0; j < pb->n_len; j++) if (isfinite(md->ob->eps[j])) s.E[j] += unit_loss(pb, j, u, c[u]);
    }
    if (!ls_repair(&s)) return;
    if (!ls_ok(md, s.D, s.E)) return;
    ls_fill(&s);
    ls_pairs(&s);
}

/* LP rounding: integral units keep their rule; fractional units try every combination of
 * their (at most 3 largest) LP rules when there are few, else their lowest-density rule. */
static void heuristic(glp_tree *T, model *md) {
    const moa_opt_problem *pb = md->pb;
    glp_prob *P = glp_ios_get_prob(T);
    enum { MAXF = 24, MAXC = 3 };
    int frac[MAXF], cand[MAXF][MAXC], ncand[MAXF], nf = 0;
    for (int u = 0; u < pb->n_units; u++) {
        double bv = -1;
        int br = -1, nc = 0, cr[MAXC];
        double cv[MAXC];
        for (int c = md->ustart[u]; c < md->ustart[u + 1]; c++) {
            double v = glp_get_col_prim(P, c + 1);
            int r = md->col_rule[c + 1];
            if (v > bv) { bv = v; br = r; }
            if (v > 1e-7) {   /* keep the MAXC largest LP values */
                if (nc < MAXC) { cv[nc] = v; cr[nc] = r; nc++; }
                else {
                    int mi = 0;
                    for (int i = 1; i < MAXC; i++) if (cv[i] < cv[mi]) mi = i;
                    if (v > cv[mi]) { cv[mi] = v; cr[mi] = r; }
                }
            }
        }
        for (int i = 1; i < nc; i++)
            for (int i2 = i; i2 > 0 && cv[i2] > cv[i2 - 1]; i2--) {
                double tv = cv[i2]; cv[i2] = cv[i2 - 1]; cv[i2 - 1] = tv;
                int tr = cr[i2]; cr[i2] = cr[i2 - 1]; cr[i2 - 1] = tr;
            }
        md->choice[u] = br;
        if (bv < 1 - 1e-7) {
            if (nf >= MAXF) return;   /* too fractional: leave it to GLPK */
            frac[nf] = u;
            ncand[nf] = nc > 0 ? nc : 1;
            for (int i = 0; i < ncand[nf]; i++) cand[nf][i] = nc > 0 ? cr[i] : br;
            nf++;
        }
    }
    if (nf == 0) return;
    moa_opt_solution tmp;
    memset(&tmp, 0, sizeof tmp);
    double best = INFINITY, o;
    int found = 0;
    /* enumerate when the product of candidate counts is small (else two per unit) */
    double combos = 1;
    for (int i = 0; i < nf; i++) combos *= ncand[i];
    if (combos > 4096) {
        combos = 1;
        for (int i = 0; i < nf; i++) {
            if (ncand[i] > 2) ncand[i] = 2;
            combos *= ncand[i];
        }
    }
    if (combos <= 4096) {
        int idx[MAXF] = {0};
        for (;;) {
            for (int i = 0; i < nf; i++) md->choice[frac[i]] = cand[i][idx[i]];
            if (feasible(md, md->choice, &tmp, &o) && o < best) {
                best = o;
                found = 1;
                memcpy(md->best_choice, md->choice, (size_t)pb->n_units * sizeof(int));
            }
            int i = 0;
            while (i < nf && ++idx[i] == ncand[i]) idx[i++] = 0;
            if (i == nf) break;
        }
    }
    if (!found) {
        /* every fractional unit at its cheapest-in-density candidate */
        for (int i = 0; i < nf; i++) {
            int br = cand[i][0];
            double bd = INFINITY;
            for (int c = 0; c < ncand[i]; c++) {
                double d = 0;
                for (int k = 0; k < pb->n_con; k++) d += rule_dens(pb, k, cand[i][c]);
                if (d < bd) { bd = d; br = cand[i][c]; }
            }
            md->choice[frac[i]] = br;
        }
        if (feasible(md, md->choice, &tmp, &o)) {
            found = 1;
            memcpy(md->best_choice, md->choice, (size_t)pb->n_units * sizeof(int));
        }
    }
    if (pb->group == 1 && pb->max_rules_per_layer <= 0) {
        /* second start: fractional units at their best-loss candidate, then repair + improve */
        int *alt = malloc((size_t)pb->n_units * sizeof(int));
        if (alt) {
            memcpy(alt, md->choice, (size_t)pb->n_units * sizeof(int));
            for (int i = 0; i < nf; i++) {
                int br = cand[i][0];
                for (int c = 1; c < ncand[i]; c++)
                    if (unit_obj(md, frac[i], cand[i][c]) < unit_obj(md, frac[i], br)) br = cand[i][c];
                alt[frac[i]] = br;
            }
            local_search(md, alt);
            double oa;
            if (feasible(md, alt, &tmp, &oa)) {
                double ob0 = INFINITY;
                if (found) {
                    local_search(md, md->best_choice);
                    if (!feasible(md, md->best_choice, &tmp, &ob0)) ob0 = INFINITY;
                }
                if (oa < ob0) memcpy(md->best_choice, alt, (size_t)pb->n_units * sizeof(int));
                found = 1;
            } else if (found) {
                local_search(md, md->best_choice);
            }
            free(alt);
        }
    }
    if (!found) { moa_log_debug("heuristic: no feasible rounding (%d fractional units)", nf); return; }
    if (!feasible(md, md->best_choice, &tmp, &o)) { moa_log_debug("heuristic: infeasible after search"); return; }
    moa_log_debug("heuristic: %d fractional units, incumbent candidate %.9g", nf, o);
    fill_xvec(md, md->best_choice, md->xbuf);
    glp_ios_heur_sol(T, md->xbuf);
}

static void report(glp_tree *T, model *md, int force) {
    double now = moa_time_now();
    int p = glp_ios_best_node(T);
    if (p) {
        double b = glp_ios_node_bound(T, p);
        md->best_bound = b;
        md->have_bound = 1;
    }
    if (!md->par->progress || (!force && now - md->last_report < 0.25)) return;
    md->last_report = now;
    glp_prob *P = glp_ios_get_prob(T);
    double gap = glp_mip_status(P) == GLP_FEAS || glp_mip_status(P) == GLP_OPT ? glp_ios_mip_gap(T) : INFINITY;
    md->par->progress(md->par->progress_data, now - md->t0, md->par->time_limit, gap, "gap");
}

static void callback(glp_tree *T, void *info) {
    model *md = info;
    switch (glp_ios_reason(T)) {
    case GLP_IHEUR:
        if (md->par->heuristic && !md->par->glpk_presolve &&
            (md->heur_calls < 20 || md->heur_calls % 50 == 0)) {
            md->heur_calls++;
            heuristic(T, md);
        }
        report(T, md, 0);
        break;
    case GLP_IBINGO:
        moa_log_debug("MILP: new incumbent %.9g after %.2f s", glp_mip_obj_val(glp_ios_get_prob(T)),
                      moa_time_now() - md->t0);
        report(T, md, 1);
        break;
    case GLP_ISELECT:
        report(T, md, 0);
        break;
    default:
        break;
    }
}

/* Is rule a of unit u dominated by rule b (no worse on every relevant length, better on one,
 * or equal everywhere and b < a)? */
static int dominated(const moa_opt_problem *pb, const moa_opt_objective *ob, int u, int a, int b) {
    int strict = 0;
    for (int k = 0; k < pb->n_con; k++) {
        double da = rule_dens(pb, k, a), db = rule_dens(pb, k, b);
        if (db > da) return 0;
        if (db < da) strict = 1;
    }
    for (int j = 0; j < pb->n_len; j++) {
        if (ob->weight[j] == 0 && !isfinite(ob->eps[j])) continue;
        double la = unit_loss(pb, j, u, a), lb = unit_loss(pb, j, u, b);
        if (lb > la) return 0;
        if (lb < la) strict = 1;
    }
    return strict || b < a;
}

static moa_status infeasible_msg(const moa_opt_problem *pb, const char *why) {
    char buf[1024];
    size_t o = 0;
    double mind[MOA_OPT_MAX_LENGTHS];
    moa_opt_min_density(pb, mind);
    for (int k = 0; k < pb->n_con && o < sizeof buf; k++)
        o += (size_t)snprintf(buf + o, sizeof buf - o, "%sN=%lld: budget %.4g, smallest feasible %.4g",
                              k ? "; " : "", (long long)pb->con_len[k], pb->budget_hi[k], mind[k]);
    return moa_err(MOA_ERR_INFEASIBLE, "%s. Smallest feasible density per length: %s", why, buf);
}

void moa_opt_warm_clear(moa_opt_warm *w) {
    if (!w) return;
    free(w->col_unit); free(w->col_rule); free(w->cstat); free(w->rstat); free(w->eps_rstat);
    memset(w, 0, sizeof *w);
}

moa_status moa_opt_solve(const moa_opt_problem *pb, const moa_opt_params *par,
                         const moa_opt_objective *ob, moa_opt_solution *sol) {
    return moa_opt_solve_warm(pb, par, ob, sol, NULL);
}

/* Copy the previous LP basis if the column set is the same: base rows (assignment and
 * budgets) keep their status, eps rows theirs where both have one, new eps rows are basic. */
static int warm_apply(glp_prob *P, const model *md, const moa_opt_warm *w, int nbase, const int *eps_row) {
    if (!w || !w->cstat || w->nx != md->nx || w->ncols != md->ncols || w->nbase != nbase) return 0;
    if (memcmp(w->col_unit + 1, md->col_unit + 1, (size_t)md->nx * sizeof(int)) ||
        memcmp(w->col_rule + 1, md->col_rule + 1, (size_t)md->nx * sizeof(int)))
        return 0;
    for (int c = 1; c <= md->ncols; c++) glp_set_col_stat(P, c, w->cstat[c]);
    for (int r = 1; r <= nbase; r++) glp_set_row_stat(P, r, w->rstat[r]);
    for (int j = 0; j < md->pb->n_len; j++)
        if (eps_row[j]) glp_set_row_stat(P, eps_row[j], w->eps_rstat[j] ? w->eps_rstat[j] : GLP_BS);
    return 1;
}

static void warm_save(glp_prob *P, const model *md, moa_opt_warm *w, int nbase, const int *eps_row) {
    if (!w) return;
    moa_opt_warm_clear(w);
    int nj = md->pb->n_len;
    w->col_unit = malloc(((size_t)md->nx + 1) * sizeof(int));
    w->col_rule = malloc(((size_t)md->nx + 1) * sizeof(int));
    w->cstat = malloc(((size_t)md->ncols + 1) * sizeof(int));
    w->rstat = malloc(((size_t)nbase + 1) * sizeof(int));
    w->eps_rstat = calloc((size_t)nj, sizeof(int));
    if (!w->col_unit || !w->col_rule || !w->cstat || !w->rstat || !w->eps_rstat) { moa_opt_warm_clear(w); return; }
    w->nx = md->nx;
    w->ncols = md->ncols;
    w->nbase = nbase;
    memcpy(w->col_unit + 1, md->col_unit + 1, (size_t)md->nx * sizeof(int));
    memcpy(w->col_rule + 1, md->col_rule + 1, (size_t)md->nx * sizeof(int));
    for (int c = 1; c <= md->ncols; c++) w->cstat[c] = glp_get_col_stat(P, c);
    for (int r = 1; r <= nbase; r++) w->rstat[r] = glp_get_row_stat(P, r);
    for (int j = 0; j < nj; j++) w->eps_rstat[j] = eps_row[j] ? glp_get_row_stat(P, eps_row[j]) : 0;
}

/* ---- one solve, in steps: budget check, columns, rows, LP relaxation, branch and bound,
 * the solution --------------------------------------------------------------------------- */

/* quick infeasibility check on the budgets alone */
static moa_status check_budgets(const moa_opt_problem *pb) {
    double mind[MOA_OPT_MAX_LENGTHS];
    moa_opt_min_density(pb, mind);
    for (int k = 0; k < pb->n_con; k++) {
        if (mind[k] > pb->budget_hi[k] + 1e-12)
            return infeasible_msg(pb, "density budget too small");
        double maxd = 0;
        for (int r = 0; r < pb->n_rules; r++) if (rule_dens(pb, k, r) > maxd) maxd = rule_dens(pb, k, r);
        if (pb->budget_lo[k] > maxd + 1e-12)
            return moa_err(MOA_ERR_INFEASIBLE, "density lower bound %.4g at N=%lld exceeds the largest feasible density %.4g",
                           pb->budget_lo[k], (long long)pb->con_len[k], maxd);
    }
    return MOA_OK;
}

/* The model's columns: x (non-dominated rules per unit; all of them with a rule cap or a
 * lower bound), then y and m. Allocates md's arrays and sol->choice (freed by the caller). */
static moa_status model_columns(model *md, moa_opt_solution *sol) {
    const moa_opt_problem *pb = md->pb;
    const int U = pb->n_units, R = pb->n_rules;
    int reduce = pb->max_rules_per_layer <= 0;
    for (int k = 0; k < pb->n_con; k++) if (pb->budget_lo[k] > 0) reduce = 0;
    md->col_unit = malloc(((size_t)U * R + 1) * sizeof(int));
    md->col_rule = malloc(((size_t)U * R + 1) * sizeof(int));
    md->ustart = malloc(((size_t)U + 1) * sizeof(int));
    md->choice = malloc((size_t)U * sizeof(int));
    md->best_choice = malloc((size_t)U * sizeof(int));
    sol->choice = malloc((size_t)U * sizeof(int));
    if (!md->col_unit || !md->col_rule || !md->ustart || !md->choice || !md->best_choice || !sol->choice)
        return moa_err(MOA_ERR_NOMEM, "out of memory");
    /* columns: non-dominated rules per unit */
    int nx = 0;
    for (int u = 0; u < U; u++) {
        md->ustart[u] = nx;
        for (int r = 0; r < R; r++) {
            int dom = 0;
            if (reduce)
                for (int r2 = 0; r2 < R && !dom; r2++) if (r2 != r && dominated(pb, md->ob, u, r, r2)) dom = 1;
            if (dom) continue;
            nx++;
            md->col_unit[nx] = u;
            md->col_rule[nx] = r;
        }
    }
    md->ustart[U] = nx;
    md->nx = nx;
    md->y0 = nx;
    md->ny = pb->max_rules_per_layer > 0 ? pb->n_layer * R : 0;
    md->m0 = md->y0 + md->ny;
    md->nm = pb->group > 1 ? (U / pb->group) * pb->n_con : 0;
    md->ncols = md->m0 + md->nm;
    md->xbuf = malloc(((size_t)md->ncols + 1) * sizeof(double));
    if (!md->xbuf) return moa_err(MOA_ERR_NOMEM, "out of memory for the MILP");
    return MOA_OK;
}

/* The constraint matrix as GLPK's triplets (1-based: entry z is row ia[z], column ja[z]). */
typedef struct { int *ia, *ja; double *ar; size_t z; } triplets;

static void nz(triplets *t, int row, int col, double v) {
    t->z++;
    t->ia[t->z] = row;
    t->ja[t->z] = col;
    t->ar[t->z] = v;
}

/* Column kinds and bounds; the objective sum_j weight_j loss_j on the x columns. */
static void add_columns(glp_prob *P, const model *md) {
    const moa_opt_problem *pb = md->pb;
    glp_set_obj_dir(P, GLP_MIN);
    glp_add_cols(P, md->ncols);
    for (int c = 1; c <= md->nx; c++) {
        glp_set_col_kind(P, c, GLP_BV);
        double o = 0;
        for (int j = 0; j < pb->n_len; j++)
            if (md->ob->weight[j] != 0) o += md->ob->weight[j] * unit_loss(pb, j, md->col_unit[c], md->col_rule[c]);
        glp_set_obj_coef(P, c, o);
    }
    for (int c = md->y0 + 1; c <= md->y0 + md->ny; c++) glp_set_col_kind(P, c, GLP_BV);
    for (int c = md->m0 + 1; c <= md->m0 + md->nm; c++) glp_set_col_bnds(P, c, GLP_DB, 0, 1);
}

/* one rule per unit, then the densities */
static void add_budget_rows(glp_prob *P, const model *md, triplets *t) {
    const moa_opt_problem *pb = md->pb;
    const int U = pb->n_units, ng = U / pb->group;
    int row = 0;
    /* one rule per unit */
    glp_add_rows(P, U);
    for (int u = 0; u < U; u++) {
        row++;
        glp_set_row_bnds(P, row, GLP_FX, 1, 1);
        for (int c = md->ustart[u]; c < md->ustart[u + 1]; c++) nz(t, row, c + 1, 1.0);
    }
    /* densities */
    for (int k = 0; k < pb->n_con; k++) {
        if (pb->group == 1) {
            row = glp_add_rows(P, 1);
            if (pb->budget_lo[k] > 0) glp_set_row_bnds(P, row, GLP_DB, pb->budget_lo[k], pb->budget_hi[k]);
            else glp_set_row_bnds(P, row, GLP_UP, 0, pb->budget_hi[k]);
            for (int c = 1; c <= md->nx; c++) {
                double d = rule_dens(pb, k, md->col_rule[c]) / U;
                if (d != 0) nz(t, row, c, d);
            }
        } else {
            row = glp_add_rows(P, 1);
            glp_set_row_bnds(P, row, GLP_UP, 0, pb->budget_hi[k]);
            for (int g = 0; g < ng; g++) nz(t, row, md->m0 + 1 + g * pb->n_con + k, 1.0 / ng);
            int r0 = glp_add_rows(P, U);
            for (int u = 0; u < U; u++) {
                glp_set_row_bnds(P, r0 + u, GLP_UP, 0, 0);
                for (int c = md->ustart[u]; c < md->ustart[u + 1]; c++) {
                    double d = rule_dens(pb, k, md->col_rule[c + 1]);
                    if (d != 0) nz(t, r0 + u, c + 1, d);
                }
                nz(t, r0 + u, md->m0 + 1 + (u / pb->group) * pb->n_con + k, -1.0);
            }
        }
    }
}

/* epsilon constraints (eps_row[j]: the row of length j, 0 for none) */
static void add_eps_rows(glp_prob *P, const model *md, triplets *t, int *eps_row) {
    const moa_opt_problem *pb = md->pb;
    for (int j = 0; j < pb->n_len; j++) {
        if (!isfinite(md->ob->eps[j])) continue;
        int row = glp_add_rows(P, 1);
        eps_row[j] = row;
        glp_set_row_bnds(P, row, GLP_UP, 0, md->ob->eps[j]);
        for (int c = 1; c <= md->nx; c++) {
            double l = unit_loss(pb, j, md->col_unit[c], md->col_rule[c]);
            if (l != 0) nz(t, row, c, l);
        }
    }
}

/* distinct rules per layer */
static void add_cap_rows(glp_prob *P, const model *md, triplets *t) {
    const moa_opt_problem *pb = md->pb;
    const int R = pb->n_rules;
    int r0 = glp_add_rows(P, md->nx);
    for (int c = 1; c <= md->nx; c++) {
        glp_set_row_bnds(P, r0 + c - 1, GLP_UP, 0, 0);
        nz(t, r0 + c - 1, c, 1.0);
        nz(t, r0 + c - 1, md->y0 + 1 + (md->col_unit[c] / pb->units_per_layer) * R + md->col_rule[c], -1.0);
    }
    int r1 = glp_add_rows(P, pb->n_layer);
    for (int l = 0; l < pb->n_layer; l++) {
        glp_set_row_bnds(P, r1 + l, GLP_UP, 0, pb->max_rules_per_layer);
        for (int r = 0; r < R; r++) nz(t, r1 + l, md->y0 + 1 + l * R + r, 1.0);
    }
}

/* The GLPK problem of md into *out: columns, then the base rows (assignment and budgets:
 * *nbase of them), the eps rows and the cap rows. */
static moa_status build_problem(const model *md, glp_prob **out, int *nbase, int *eps_row) {
    const moa_opt_problem *pb = md->pb;
    int n_eps = 0;
    for (int j = 0; j < pb->n_len; j++) n_eps += isfinite(md->ob->eps[j]) ? 1 : 0;
    /* assignment + density + eps rows: one entry per x column each; cap: x - y rows (2 per
     * x column) and sum_r y rows; q-head: -m per (unit, length) and the group-mean rows */
    size_t nnz = (size_t)md->nx * (1 + (size_t)pb->n_con + (size_t)n_eps + (md->ny ? 2 : 0)) +
                 (size_t)md->ny + (md->nm ? (size_t)pb->n_units * pb->n_con + (size_t)md->nm : 0) + 16;
    triplets t = {malloc((nnz + 1) * sizeof(int)), malloc((nnz + 1) * sizeof(int)),
                  malloc((nnz + 1) * sizeof(double)), 0};
    if (!t.ia || !t.ja || !t.ar) {
        free(t.ia); free(t.ja); free(t.ar);
        return moa_err(MOA_ERR_NOMEM, "out of memory for the MILP");
    }
    glp_prob *P = glp_create_prob();
    add_columns(P, md);
    add_budget_rows(P, md, &t);
    *nbase = glp_get_num_rows(P);
    add_eps_rows(P, md, &t, eps_row);
    if (md->ny) add_cap_rows(P, md, &t);
    MOA_ASSERT(t.z <= nnz);
    glp_load_matrix(P, (int)t.z, t.ia, t.ja, t.ar);
    free(t.ia); free(t.ja); free(t.ar);
    *out = P;
    return MOA_OK;
}

/* LP relaxation: its value is sol->lp_bound; its basis warms the next solve (and is
 * warmed from the previous one) when there is no rule cap. */
static moa_status solve_lp(glp_prob *P, const model *md, moa_opt_warm *warm, int nbase, const int *eps_row,
                           moa_opt_solution *sol) {
    const moa_opt_params *par = md->par;
    glp_smcp sp;
    glp_init_smcp(&sp);
    sp.msg_lev = GLP_MSG_OFF;
    sp.presolve = GLP_OFF;
    sp.meth = GLP_DUALP;
    sp.r_test = GLP_RT_FLIP;   /* long-step ratio test: every x is boxed in [0, 1] */
    sp.tm_lim = par->time_limit > 0 ? (int)(par->time_limit * 1000) : INT32_MAX;
    glp_scale_prob(P, GLP_SF_AUTO);
    int warmed = md->ny == 0 && warm_apply(P, md, warm, nbase, eps_row);
    if (!warmed) glp_adv_basis(P, 0);
    int rc = glp_simplex(P, &sp);
    if (warmed && rc == GLP_EBADB) {
        glp_adv_basis(P, 0);
        rc = glp_simplex(P, &sp);
    }
    if (rc == GLP_ETMLIM) return moa_err(MOA_ERR_INTERRUPTED, "time limit reached while solving the LP relaxation");
    if (rc != 0) return moa_err(MOA_ERR_SOLVER, "GLPK simplex failed (code %d)", rc);
    if (glp_get_status(P) == GLP_NOFEAS || glp_get_status(P) == GLP_INFEAS)
        return infeasible_msg(md->pb, "no plan satisfies the density budgets and loss bounds (LP relaxation infeasible)");
    if (glp_get_status(P) != GLP_OPT) return moa_err(MOA_ERR_SOLVER, "GLPK: LP relaxation not solved (status %d)", glp_get_status(P));
    sol->lp_bound = glp_get_obj_val(P);
    if (md->ny == 0) warm_save(P, md, warm, nbase, eps_row);
    moa_log_debug("LP relaxation%s: %d columns, %d rows, %.3f s, value %.9g", warmed ? " (warm)" : "",
                  md->ncols, glp_get_num_rows(P), moa_time_now() - md->t0, sol->lp_bound);
    return MOA_OK;
}

/* Branch and bound from the LP basis, within what is left of the time limit; *rc: GLPK's
 * return code (a stop with a feasible plan is not an error). */
static moa_status solve_mip(glp_prob *P, model *md, int *rc) {
    const moa_opt_params *par = md->par;
    glp_iocp ip;
    glp_init_iocp(&ip);
    ip.msg_lev = GLP_MSG_OFF;
    ip.presolve = par->glpk_presolve ? GLP_ON : GLP_OFF;
    ip.br_tech = GLP_BR_DTH;
    ip.bt_tech = GLP_BT_BLB;
    ip.mip_gap = par->mip_gap > 0 ? par->mip_gap : 0;
    if (par->cuts) {   /* multiple-choice rows + dense budget rows: cuts move the bound */
        ip.gmi_cuts = GLP_ON;
        ip.mir_cuts = GLP_ON;
        ip.cov_cuts = GLP_ON;
        ip.clq_cuts = GLP_ON;
    }
    double left = par->time_limit > 0 ? par->time_limit - (moa_time_now() - md->t0) : 0;
    ip.tm_lim = par->time_limit > 0 ? (int)(left > 0.001 ? left * 1000 : 1) : INT32_MAX;
    ip.cb_func = callback;
    ip.cb_info = md;
    md->last_report = md->t0;
    *rc = glp_intopt(P, &ip);
    int ms = glp_mip_status(P);
    if (*rc == GLP_ENOPFS || ms == GLP_NOFEAS)
        return infeasible_msg(md->pb, "no plan satisfies the density budgets and loss bounds");
    if (*rc == GLP_EFAIL && (ms == GLP_FEAS || ms == GLP_OPT))
        moa_log_warn("GLPK branch and bound stopped early (numerical failure); keeping its best plan, unproven");
    if (*rc == GLP_ETMLIM || *rc == GLP_EMIPGAP || *rc == GLP_ESTOP || *rc == GLP_EFAIL) {
        if (ms != GLP_FEAS && ms != GLP_OPT)
            return moa_err(MOA_ERR_INTERRUPTED, "time limit (%.3g s) reached before any feasible plan was found",
                           par->time_limit);
    } else if (*rc != 0) {
        return moa_err(MOA_ERR_SOLVER, "GLPK branch and bound failed (code %d)", *rc);
    }
    return MOA_OK;
}

/* The MIP's choice into sol, its losses and densities re-evaluated from the tables, the
 * objective, the bound and the gap (rc: glp_intopt's return code). */
static void read_solution(glp_prob *P, const model *md, int rc, moa_opt_solution *sol) {
    const moa_opt_problem *pb = md->pb;
    sol->objective = glp_mip_obj_val(P);
    sol->proven = rc == 0 && glp_mip_status(P) == GLP_OPT;
    for (int u = 0; u < pb->n_units; u++) {
        int br = -1;
        double bv = -1;
        for (int c = md->ustart[u]; c < md->ustart[u + 1]; c++) {
            double v = glp_mip_col_val(P, c + 1);
            if (v > bv) { bv = v; br = md->col_rule[c + 1]; }
        }
        sol->choice[u] = br;
    }
    moa_opt_evaluate(pb, sol->choice, sol);
    {
        double o = 0;
        for (int j = 0; j < pb->n_len; j++) o += md->ob->weight[j] * sol->loss[j];
        sol->objective = o;
    }
    if (sol->proven) {
        sol->bound = sol->objective;
        sol->gap = 0;
    } else {
        double b = md->have_bound ? md->best_bound : sol->lp_bound;
        if (b < sol->lp_bound) b = sol->lp_bound;
        if (b > sol->objective) b = sol->objective;
        sol->bound = b;
        sol->gap = (sol->objective - b) / fmax(fabs(sol->objective), 1e-12);
    }
}

moa_status moa_opt_solve_warm(const moa_opt_problem *pb, const moa_opt_params *par,
                              const moa_opt_objective *ob, moa_opt_solution *sol, moa_opt_warm *warm) {
    memset(sol, 0, sizeof *sol);
    double t0 = moa_time_now();
    MOA_TRY(check_budgets(pb));
    model md;
    memset(&md, 0, sizeof md);
    md.pb = pb; md.par = par; md.ob = ob; md.t0 = t0;
    glp_prob *P = NULL;
    int nbase = 0, rc = 0;
    int eps_row[MOA_OPT_MAX_LENGTHS] = {0};
    moa_status st = model_columns(&md, sol);
    if (st >= 0) st = build_problem(&md, &P, &nbase, eps_row);
    if (st >= 0) st = solve_lp(P, &md, warm, nbase, eps_row, sol);
    if (st >= 0) st = solve_mip(P, &md, &rc);
    if (st >= 0) read_solution(P, &md, rc, sol);
    sol->time = moa_time_now() - t0;
    if (P) glp_delete_prob(P);
    free(md.col_unit); free(md.col_rule); free(md.ustart); free(md.choice); free(md.best_choice);
    free(md.xbuf);
    if (st < 0) { free(sol->choice); sol->choice = NULL; }
    return st;
}
