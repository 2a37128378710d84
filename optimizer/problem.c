/* problem.c - tabulate an optimisation instance from a profile.
 *
 * loss[j][u][r] = sum_{b >= W_r(N_j)/block} f(b) hist_u(b)    (the bins a window W masks;
 *                 f(b) = far_weight for bins at distance >= N_j/4, else 1)
 * normalised by sum_u sum_b hist_u(b) at N_j (the loss of keeping only the sinks).
 * dens[k][r]   = min(N_k, sink + W_r(N_k)) / N_k          (shared span definition)
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "moa/common.h"
#include "moa/optimizer.h"
#include "span.h"

moa_opt_params moa_opt_default_params(void) {
    const moa_opt_params p = {.density = 0.5, .granularity = MOA_GRAN_KV_HEAD, .time_limit = 60,
                              .mip_gap = 1e-3, .heuristic = 1, .cuts = 1, .grid = 5,
                              .augment = 1e-6, .widen = 1, .far_weight = 1};
    return p;
}

moa_status moa_opt_problem_alloc(int n_layer, int units_per_layer, int group, int n_rules,
                                 int n_len, int n_con, moa_opt_problem **out) {
    *out = NULL;
    if (n_layer <= 0 || units_per_layer <= 0 || group <= 0 || units_per_layer % group ||
        n_rules <= 0 || n_len <= 0 || n_len > MOA_OPT_MAX_LENGTHS || n_con < 0 || n_con > MOA_OPT_MAX_LENGTHS)
        return moa_err(MOA_ERR_INVALID_ARG, "optimizer: bad problem sizes");
    moa_opt_problem *pb = calloc(1, sizeof *pb);
    if (!pb) return moa_err(MOA_ERR_NOMEM, "out of memory");
    pb->n_layer = n_layer;
    pb->units_per_layer = units_per_layer;
    pb->n_units = n_layer * units_per_layer;
    pb->group = group;
    pb->n_rules = n_rules;
    pb->n_len = n_len;
    pb->n_con = n_con;
    pb->val = -1;
    pb->rules = calloc((size_t)n_rules, sizeof *pb->rules);
    pb->loss = moa_calloc_array((size_t)n_len * (size_t)pb->n_units * (size_t)n_rules, sizeof(double));
    pb->dens = moa_calloc_array((size_t)(n_con ? n_con : 1) * (size_t)n_rules, sizeof(double));
    for (int i = 0; i < MOA_OPT_MAX_LENGTHS; i++) pb->loss_scale[i] = 1;
    if (!pb->rules || !pb->loss || !pb->dens) {
        moa_opt_problem_free(pb);
        return moa_err(MOA_ERR_NOMEM, "out of memory for the loss tables");
    }
    *out = pb;
    return MOA_OK;
}

void moa_opt_problem_free(moa_opt_problem *pb) {
    if (!pb) return;
    MOA_FREE_ALL(pb->rules, pb->loss, pb->dens, pb);
}

void moa_opt_min_density(const moa_opt_problem *pb, double *out) {
    for (int k = 0; k < pb->n_con; k++) {
        double m = INFINITY;
        for (int r = 0; r < pb->n_rules; r++)
            if (pb->dens[(size_t)k * pb->n_rules + r] < m) m = pb->dens[(size_t)k * pb->n_rules + r];
        out[k] = m;
    }
}

static int has_len(const int64_t *a, int n, int64_t x) {
    for (int i = 0; i < n; i++) if (a[i] == x) return 1;
    return 0;
}

/* The lengths of an instance: the objectives, the constrained lengths with their budgets,
 * and the validation length (0: none). */
typedef struct {
    int64_t val;
    int64_t obj[MOA_OPT_MAX_LENGTHS];
    int n_obj;
    int64_t con[MOA_OPT_MAX_LENGTHS];
    double budget[MOA_OPT_MAX_LENGTHS];
    int n_con;
} opt_lengths;

/* The profile can be tabulated: valid, few enough buckets, every bucket with samples. */
static moa_status check_profile(const moa_profile *prof) {
    MOA_TRY(moa_profile_validate(prof));
    if (prof->n_buckets > MOA_OPT_MAX_LENGTHS)
        return moa_err(MOA_ERR_UNSUPPORTED, "optimizer: at most %d profiled lengths", MOA_OPT_MAX_LENGTHS);
    for (int b = 0; b < prof->n_buckets; b++)
        if (prof->buckets[b].n_samples <= 0)
            return moa_err(MOA_ERR_FORMAT, "profile bucket N=%lld has no samples (n_samples=0)",
                           (long long)prof->buckets[b].length);
    return MOA_OK;
}

/* lengths: the validation length, the objectives (given, else every profiled length but
 * the validation one), the constrained lengths and budgets (given, else every profiled
 * length at par->density); then the lower-bound fraction's checks. */
static moa_status choose_lengths(const moa_profile *prof, const moa_opt_params *par, opt_lengths *ls) {
    int64_t val = par->validation;
    ls->val = val;
    if (val && moa_profile_find_bucket(prof, val) < 0)
        return moa_err(MOA_ERR_INVALID_ARG, "validation length %lld is not a profiled length", (long long)val);
    ls->n_obj = 0;
    if (par->n_objective > 0) {
        for (int i = 0; i < par->n_objective; i++) {
            if (moa_profile_find_bucket(prof, par->objective[i]) < 0)
                return moa_err(MOA_ERR_INVALID_ARG, "objective length %lld is not a profiled length",
                               (long long)par->objective[i]);
            if (par->objective[i] == val)
                return moa_err(MOA_ERR_INVALID_ARG, "length %lld cannot be both an objective and the validation length",
                               (long long)val);
            if (!has_len(ls->obj, ls->n_obj, par->objective[i])) ls->obj[ls->n_obj++] = par->objective[i];
        }
    } else {
        for (int b = 0; b < prof->n_buckets; b++)
            if (prof->buckets[b].length != val) ls->obj[ls->n_obj++] = prof->buckets[b].length;
    }
    if (ls->n_obj == 0) return moa_err(MOA_ERR_INVALID_ARG, "no objective length left (only the validation length is profiled)");
    ls->n_con = 0;
    if (par->n_constrained > 0) {
        for (int i = 0; i < par->n_constrained; i++) {
            if (par->constrained[i] <= 0) return moa_err(MOA_ERR_INVALID_ARG, "constrained length must be > 0");
            double d = par->budget[i] > 0 ? par->budget[i] : par->density;
            if (!(d > 0 && d <= 1)) return moa_err(MOA_ERR_INVALID_ARG, "density budget %g at N=%lld must be in (0, 1]",
                                                   d, (long long)par->constrained[i]);
            if (has_len(ls->con, ls->n_con, par->constrained[i]))
                return moa_err(MOA_ERR_INVALID_ARG, "constrained length %lld given twice", (long long)par->constrained[i]);
            ls->con[ls->n_con] = par->constrained[i];
            ls->budget[ls->n_con++] = d;
        }
    } else {
        if (!(par->density > 0 && par->density <= 1))
            return moa_err(MOA_ERR_INVALID_ARG, "density budget %g must be in (0, 1]", par->density);
        for (int b = 0; b < prof->n_buckets; b++) {
            ls->con[ls->n_con] = prof->buckets[b].length;
            ls->budget[ls->n_con++] = par->density;
        }
    }
    if (par->lower_frac < 0 || par->lower_frac > 1)
        return moa_err(MOA_ERR_INVALID_ARG, "lower bound fraction %g must be in [0, 1]", par->lower_frac);
    if (par->lower_frac > 0 && par->granularity == MOA_GRAN_Q_HEAD)
        return moa_err(MOA_ERR_UNSUPPORTED, "a density lower bound is not supported with q-head granularity");
    return MOA_OK;
}

/* rules: the given ones or the default grid, filtered to those valid on the lengths */
static moa_status choose_rules(const moa_profile *prof, const moa_opt_params *par, const opt_lengths *ls,
                               moa_rule *rules, int *n_rules) {
    /* filter range: the objective lengths (the validation length is not searched over, as
     * in the reference: profiled 2k..8k, validated at 12k); n_max covers every length the
     * plan is constrained or validated at */
    int64_t nmin = ls->obj[0], nmaxp = ls->obj[0], nmax;
    for (int i = 1; i < ls->n_obj; i++) {
        if (ls->obj[i] < nmin) nmin = ls->obj[i];
        if (ls->obj[i] > nmaxp) nmaxp = ls->obj[i];
    }
    nmax = nmaxp;
    for (int k = 0; k < ls->n_con; k++) if (ls->con[k] > nmax) nmax = ls->con[k];
    if (ls->val > nmax) nmax = ls->val;
    /* a window must be positive at every length the plan names (profiled, constrained,
     * validation: the plan format's rule), not only at the objective lengths */
    int64_t npos = nmin;
    for (int k = 0; k < ls->n_con; k++) if (ls->con[k] < npos) npos = ls->con[k];
    for (int b = 0; b < prof->n_buckets; b++) if (prof->buckets[b].length < npos) npos = prof->buckets[b].length;
    if (ls->val > 0 && ls->val < npos) npos = ls->val;
    if (par->rules && par->n_rules > 0) {
        if (par->n_rules > MOA_OPT_MAX_RULES) return moa_err(MOA_ERR_INVALID_ARG, "too many rules (max %d)", MOA_OPT_MAX_RULES);
        memcpy(rules, par->rules, (size_t)par->n_rules * sizeof *rules);
        *n_rules = moa_rules_filter(rules, par->n_rules, npos, nmaxp, nmax);
    } else {
        *n_rules = moa_rules_default(npos, nmaxp, nmax, prof->block, rules, MOA_OPT_MAX_RULES);
    }
    if (*n_rules == 0)
        return moa_err(MOA_ERR_INVALID_ARG, "no candidate rule is valid on lengths %lld..%lld (max %lld)",
                       (long long)npos, (long long)nmaxp, (long long)nmax);
    return MOA_OK;
}

/* loss[j][u][r] of bucket j for every unit and rule: the bins each rule's window masks,
 * normalised by the bucket's total (loss_scale[j]). */
static moa_status tabulate_bucket(moa_opt_problem *pb, const moa_profile *prof, const moa_opt_params *par, int j) {
    const moa_profile_bucket *bk = &prof->buckets[j];
    const int n_rules = pb->n_rules, upl = pb->units_per_layer;
    const int64_t hpk = prof->n_head / prof->n_head_kv;
    int64_t nb = bk->n_bins;
    double *suf = malloc((size_t)(nb + 1) * sizeof(double));
    if (!suf) return moa_err(MOA_ERR_NOMEM, "out of memory");
    int kmap[MOA_OPT_MAX_RULES];
    for (int r = 0; r < n_rules; r++) {
        int64_t w = moa_span_window(pb->rules[r].alpha, pb->rules[r].beta, bk->length, prof->block);
        int64_t kb = (w + prof->block - 1) / prof->block;   /* W = N may end mid-block */
        kmap[r] = (int)(kb > nb ? nb : kb);
    }
    /* bins whose distance is at least N/4 count far_weight times (0 or unset: 1) */
    const double fw = par->far_weight > 0 ? par->far_weight : 1;
    const int64_t far_bin = (bk->length / 4 + prof->block - 1) / prof->block;
    double total = 0;
    for (int l = 0; l < pb->n_layer; l++) {
        for (int u = 0; u < upl; u++) {
            /* heads of this unit: one q-head, or the KV group's q-heads */
            int64_t h0 = par->granularity == MOA_GRAN_Q_HEAD ? u : (int64_t)u * hpk;
            int64_t h1 = par->granularity == MOA_GRAN_Q_HEAD ? u + 1 : h0 + hpk;
            suf[nb] = 0;
            for (int64_t b = nb - 1; b >= 0; b--) {
                double s = 0;
                for (int64_t h = h0; h < h1; h++) {
                    const double *hist = par->use_signed ? moa_profile_hist_signed(prof, j, l, h)
                                                         : moa_profile_hist_abs(prof, j, l, h);
                    s += hist[b];
                }
                suf[b] = suf[b + 1] + (b >= far_bin ? fw * s : s);
            }
            total += suf[0];
            double *row = pb->loss + ((size_t)j * pb->n_units + (size_t)l * upl + u) * n_rules;
            for (int r = 0; r < n_rules; r++) row[r] = suf[kmap[r]];
        }
    }
    free(suf);
    double scale = fabs(total) > 0 ? fabs(total) : 1;
    pb->loss_scale[j] = scale;
    double *t = pb->loss + (size_t)j * pb->n_units * n_rules;
    for (size_t i = 0; i < (size_t)pb->n_units * n_rules; i++) t[i] /= scale;
    return MOA_OK;
}

moa_status moa_opt_problem_from_profile(const moa_profile *prof, const moa_opt_params *par,
                                        moa_opt_problem **out) {
    *out = NULL;
    MOA_TRY(check_profile(prof));
    opt_lengths ls;
    memset(&ls, 0, sizeof ls);
    MOA_TRY(choose_lengths(prof, par, &ls));
    moa_rule rules[MOA_OPT_MAX_RULES];
    int n_rules;
    MOA_TRY(choose_rules(prof, par, &ls, rules, &n_rules));
    int group = par->granularity == MOA_GRAN_Q_HEAD ? (int)(prof->n_head / prof->n_head_kv) : 1;
    int upl = par->granularity == MOA_GRAN_Q_HEAD ? (int)prof->n_head : (int)prof->n_head_kv;
    moa_opt_problem *pb;
    MOA_TRY(moa_opt_problem_alloc((int)prof->n_layer, upl, group, n_rules, prof->n_buckets, ls.n_con, &pb));
    memcpy(pb->rules, rules, (size_t)n_rules * sizeof *rules);
    pb->sink = prof->sink;
    pb->block = prof->block;
    pb->max_rules_per_layer = par->max_rules_per_layer;
    for (int k = 0; k < ls.n_con; k++) {
        pb->con_len[k] = ls.con[k];
        pb->budget_hi[k] = ls.budget[k];
        pb->budget_lo[k] = par->lower_frac * ls.budget[k];
        for (int r = 0; r < n_rules; r++)
            pb->dens[(size_t)k * n_rules + r] =
                moa_span_density(rules[r].alpha, rules[r].beta, prof->sink, prof->block, ls.con[k]);
    }
    for (int j = 0; j < prof->n_buckets; j++) {
        const moa_profile_bucket *bk = &prof->buckets[j];
        pb->len[j] = bk->length;
        if (bk->length == ls.val) pb->val = j;
        if (has_len(ls.obj, ls.n_obj, bk->length)) pb->obj[pb->n_obj++] = j;
        moa_status st = tabulate_bucket(pb, prof, par, j);
        if (st < 0) { moa_opt_problem_free(pb); return st; }
    }
    *out = pb;
    return MOA_OK;
}
