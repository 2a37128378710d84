/* plan-internal.h - the in-memory moa_plan, readable by runtime code and by the optimizer
 * (which builds plans). Everyone else uses the accessors in moa/runtime.h.
 * A plan is immutable once built/loaded; build one with moa_plan_alloc(), fill the fields,
 * then moa_plan_validate() before handing it out. */
#ifndef MOA_PLAN_INTERNAL_H
#define MOA_PLAN_INTERNAL_H

#include <stdint.h>
#include "moa/runtime.h"

#define MOA_PLAN_FORMAT "moa-plan"
#define MOA_PLAN_VERSION 1
#define MOA_PLAN_MAX_LENGTHS 64

typedef struct {
    moa_unit_kind kind;
    double alpha;   /* tokens (window kind only; 0 otherwise) */
    double beta;    /* fraction of N (window kind only; 0 otherwise) */
} moa_plan_unit;

typedef struct {
    int64_t length;
    int has_loss;      /* loss is known only at profiled lengths */
    double loss;       /* predicted loss, normalised per length (fraction of influence masked) */
    double density;    /* plan density at `length` */
} moa_plan_prediction;

struct moa_plan {
    /* model identity */
    char arch[64];
    int n_layer, n_head, n_head_kv, head_dim;
    char model_sha256[65];          /* "" if unknown */
    /* span parameters */
    int sink, block;
    moa_granularity granularity;
    int n_units;                    /* per layer: n_head_kv or n_head */
    moa_plan_unit *units;           /* (n_layer, n_units) */
    /* lengths */
    int n_profiled;    int64_t profiled[MOA_PLAN_MAX_LENGTHS];
    int n_constrained; int64_t constrained[MOA_PLAN_MAX_LENGTHS];
    double budget[MOA_PLAN_MAX_LENGTHS];        /* density budget per constrained length */
    int64_t validation;                          /* 0: none */
    int n_pred; moa_plan_prediction pred[MOA_PLAN_MAX_LENGTHS];
    /* provenance */
    char profile_sha256[65], calib_sha256[65];
    char tool_version[32];
    char solver[32];                /* e.g. "glpk 5.0", "uniform" */
    char solver_status[32];         /* "optimal" | "feasible" (unproven) | "none" */
    double solver_gap;              /* relative MIP gap at termination (0 if proven) */
    double solver_time;             /* seconds */
    /* validation summary (optional) */
    int has_validation;
    moa_plan_validation val;
    /* where it was loaded from (moa_plan_load's path or moa_plan_load_string's name; "" for a
     * plan built in memory): named by moa_plan_check's message, not saved */
    char source[256];
};

/* Zero-initialised plan with units allocated for (n_layer, n_units); NULL on failure. */
moa_plan *moa_plan_alloc(int n_layer, int n_head, int n_head_kv, int head_dim,
                         moa_granularity gran);
/* Full validation of every field (used by load and save). `name` prefixes messages. */
moa_status moa_plan_validate(const moa_plan *plan, const char *name);

static inline const moa_plan_unit *moa_plan_unit_at(const moa_plan *p, int layer, int unit) {
    return &p->units[(int64_t)layer * p->n_units + unit];
}

#endif
