/* make-plan.c - a solution of the MILP as a moa-plan v1. */
#include <glpk.h>
#include <stdlib.h>
#include <string.h>
#include "moa/common.h"
#include "moa/optimizer.h"
#include "plan-internal.h"

static void add_pred(moa_plan *p, int64_t n) {
    for (int i = 0; i < p->n_pred; i++) if (p->pred[i].length == n) return;
    if (p->n_pred < MOA_PLAN_MAX_LENGTHS) p->pred[p->n_pred++].length = n;
}

static int cmp_pred(const void *a, const void *b) {
    int64_t x = ((const moa_plan_prediction *)a)->length, y = ((const moa_plan_prediction *)b)->length;
    return (x > y) - (x < y);
}

moa_status moa_opt_make_plan(const moa_opt_problem *pb, const moa_profile *prof,
                             const moa_opt_params *par, const moa_opt_solution *sol,
                             const moa_opt_provenance *prov, moa_plan **out) {
    *out = NULL;
    moa_granularity g = pb->group > 1 || par->granularity == MOA_GRAN_Q_HEAD ? MOA_GRAN_Q_HEAD : MOA_GRAN_KV_HEAD;
    moa_plan *p = moa_plan_alloc((int)prof->n_layer, (int)prof->n_head, (int)prof->n_head_kv,
                                 (int)prof->head_dim, g);
    if (!p) return moa_err(MOA_ERR_NOMEM, "out of memory");
    if (p->n_layer * p->n_units != pb->n_units) {
        moa_plan_free(p);
        return moa_err(MOA_ERR_MISMATCH, "optimizer: problem has %d units, profile implies %d",
                       pb->n_units, p->n_layer * p->n_units);
    }
    snprintf(p->arch, sizeof p->arch, "%s", prof->arch);
    snprintf(p->model_sha256, sizeof p->model_sha256, "%s", prof->model_sha256);
    p->sink = (int)prof->sink;
    p->block = (int)prof->block;
    for (int u = 0; u < pb->n_units; u++) {
        const moa_rule *r = &pb->rules[sol->choice[u]];
        if (r->alpha == 0 && r->beta == 1) {
            p->units[u].kind = MOA_UNIT_DENSE;
        } else {
            p->units[u].kind = MOA_UNIT_WINDOW;
            p->units[u].alpha = r->alpha;
            p->units[u].beta = r->beta;
        }
    }
    for (int j = 0; j < pb->n_len && p->n_profiled < MOA_PLAN_MAX_LENGTHS; j++) p->profiled[p->n_profiled++] = pb->len[j];
    for (int k = 0; k < pb->n_con; k++) {
        p->constrained[k] = pb->con_len[k];
        p->budget[k] = pb->budget_hi[k];
    }
    p->n_constrained = pb->n_con;
    p->validation = pb->val >= 0 ? pb->len[pb->val] : 0;
    for (int j = 0; j < pb->n_len; j++) add_pred(p, pb->len[j]);
    for (int k = 0; k < pb->n_con; k++) add_pred(p, pb->con_len[k]);
    for (int i = 0; i < p->n_pred; i++) {
        moa_plan_prediction *q = &p->pred[i];
        q->density = moa_plan_density(p, q->length);
        for (int j = 0; j < pb->n_len; j++)
            if (pb->len[j] == q->length) { q->has_loss = 1; q->loss = sol->loss[j]; }
    }
    qsort(p->pred, (size_t)p->n_pred, sizeof p->pred[0], cmp_pred);
    if (prov && prov->profile_sha256) snprintf(p->profile_sha256, sizeof p->profile_sha256, "%s", prov->profile_sha256);
    if (prov && prov->calib_sha256) snprintf(p->calib_sha256, sizeof p->calib_sha256, "%s", prov->calib_sha256);
    snprintf(p->solver, sizeof p->solver, "glpk %s", glp_version());
    snprintf(p->solver_status, sizeof p->solver_status, "%s", sol->proven ? "optimal" : "feasible");
    p->solver_gap = sol->gap < 0 ? 0 : sol->gap;
    p->solver_time = sol->time;
    moa_status st = moa_plan_validate(p, "optimized plan");
    if (st < 0) { moa_plan_free(p); return st; }
    *out = p;
    return MOA_OK;
}
