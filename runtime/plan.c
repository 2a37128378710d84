/* plan.c - moa-plan v1: strict JSON reader, validator, atomic writer, accessors, uniform
 * plans. The format is documented field by field in docs/formats.md. */
#include "plan-internal.h"

#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "moa/common.h"
#include "span.h"

/* ---- allocation -------------------------------------------------------------------------- */

moa_plan *moa_plan_alloc(int n_layer, int n_head, int n_head_kv, int head_dim,
                         moa_granularity gran) {
    if (n_layer <= 0 || n_head <= 0 || n_head_kv <= 0) return NULL;
    moa_plan *p = calloc(1, sizeof *p);
    if (!p) return NULL;
    p->n_layer = n_layer;
    p->n_head = n_head;
    p->n_head_kv = n_head_kv;
    p->head_dim = head_dim;
    p->granularity = gran;
    p->n_units = gran == MOA_GRAN_Q_HEAD ? n_head : n_head_kv;
    p->sink = 64;
    p->block = 64;
    snprintf(p->tool_version, sizeof p->tool_version, "%s", MOA_VERSION);
    snprintf(p->solver_status, sizeof p->solver_status, "none");
    p->units = moa_calloc_array((size_t)n_layer * (size_t)p->n_units, sizeof *p->units);
    if (!p->units) { free(p); return NULL; }
    return p;
}

void moa_plan_free(moa_plan *plan) {
    if (!plan) return;
    free(plan->units);
    free(plan);
}

/* ---- accessors --------------------------------------------------------------------------- */

int moa_plan_n_layer(const moa_plan *p) { return p->n_layer; }
int moa_plan_n_head(const moa_plan *p) { return p->n_head; }
int moa_plan_n_head_kv(const moa_plan *p) { return p->n_head_kv; }
int moa_plan_head_dim(const moa_plan *p) { return p->head_dim; }
int moa_plan_n_units(const moa_plan *p) { return p->n_units; }
moa_granularity moa_plan_granularity(const moa_plan *p) { return p->granularity; }
int moa_plan_sink(const moa_plan *p) { return p->sink; }
int moa_plan_block(const moa_plan *p) { return p->block; }
const char *moa_plan_arch(const moa_plan *p) { return p->arch; }
const char *moa_plan_model_sha256(const moa_plan *p) { return p->model_sha256; }

int moa_plan_n_predicted(const moa_plan *p) { return p->n_pred; }
int64_t moa_plan_predicted_length(const moa_plan *p, int i) { MOA_ASSERT(i >= 0 && i < p->n_pred); return p->pred[i].length; }
double moa_plan_predicted_loss(const moa_plan *p, int i) { MOA_ASSERT(i >= 0 && i < p->n_pred); return p->pred[i].has_loss ? p->pred[i].loss : NAN; }
double moa_plan_predicted_density(const moa_plan *p, int i) { MOA_ASSERT(i >= 0 && i < p->n_pred); return p->pred[i].density; }
int moa_plan_n_constrained(const moa_plan *p) { return p->n_constrained; }
int64_t moa_plan_constrained_length(const moa_plan *p, int i) {
    MOA_ASSERT(i >= 0 && i < p->n_constrained);
    return p->constrained[i];
}
double moa_plan_budget(const moa_plan *p, int i) { MOA_ASSERT(i >= 0 && i < p->n_constrained); return p->budget[i]; }
int64_t moa_plan_validation_length(const moa_plan *p) { return p->validation; }
const char *moa_plan_profile_sha256(const moa_plan *p) { return p->profile_sha256; }
const char *moa_plan_calib_sha256(const moa_plan *p) { return p->calib_sha256; }
const char *moa_plan_solver_status(const moa_plan *p) { return p->solver_status; }
double moa_plan_solver_gap(const moa_plan *p) { return p->solver_gap; }

static const moa_plan_unit *unit_checked(const moa_plan *p, int layer, int unit) {
    MOA_ASSERT(layer >= 0 && layer < p->n_layer && unit >= 0 && unit < p->n_units);
    return moa_plan_unit_at(p, layer, unit);
}
moa_unit_kind moa_plan_unit_kind(const moa_plan *p, int l, int u) { return unit_checked(p, l, u)->kind; }
double moa_plan_unit_alpha(const moa_plan *p, int l, int u) { return unit_checked(p, l, u)->alpha; }
double moa_plan_unit_beta(const moa_plan *p, int l, int u) { return unit_checked(p, l, u)->beta; }

static int64_t unit_window(const moa_plan *p, const moa_plan_unit *u, int64_t n) {
    switch (u->kind) {
    case MOA_UNIT_DENSE: return n;
    case MOA_UNIT_LINEAR: return 0;
    default: return moa_span_window(u->alpha, u->beta, n, p->block);
    }
}

int64_t moa_plan_unit_window(const moa_plan *p, int layer, int unit, int64_t n) {
    return unit_window(p, unit_checked(p, layer, unit), n);
}

static double unit_density(const moa_plan *p, const moa_plan_unit *u, int64_t n) {
    if (u->kind == MOA_UNIT_LINEAR) return 0;
    return moa_span_density_of_window(unit_window(p, u, n), p->sink, n);
}

double moa_plan_density(const moa_plan *p, int64_t n) {
    if (n <= 0) return 0;
    double sum = 0;
    int64_t cnt = 0;
    int group = p->n_head / p->n_head_kv;
    for (int l = 0; l < p->n_layer; l++) {
        if (p->granularity == MOA_GRAN_KV_HEAD) {
            for (int u = 0; u < p->n_units; u++) sum += unit_density(p, moa_plan_unit_at(p, l, u), n);
            cnt += p->n_units;
        } else {
            for (int g = 0; g < p->n_head_kv; g++) {
                double m = 0;
                for (int h = g * group; h < (g + 1) * group; h++) {
                    double d = unit_density(p, moa_plan_unit_at(p, l, h), n);
                    if (d > m) m = d;
                }
                sum += m;
            }
            cnt += p->n_head_kv;
        }
    }
    return cnt ? sum / (double)cnt : 0;
}

/* ---- validation -------------------------------------------------------------------------- */

static int is_hex64(const char *s) {
    if (!*s) return 1;   /* unknown is allowed */
    if (strlen(s) != 64) return 0;
    for (const char *c = s; *c; c++)
        if (!((*c >= '0' && *c <= '9') || (*c >= 'a' && *c <= 'f'))) return 0;
    return 1;
}

static int64_t min_length(const moa_plan *p) {
    int64_t m = 0;
    for (int i = 0; i < p->n_profiled; i++) if (!m || p->profiled[i] < m) m = p->profiled[i];
    for (int i = 0; i < p->n_constrained; i++) if (!m || p->constrained[i] < m) m = p->constrained[i];
    if (p->validation > 0 && (!m || p->validation < m)) m = p->validation;
    return m;
}

static int acc_ok(double a) { return isnan(a) || (a >= 0 && a <= 1); }
static int loss_ok(double x) { return isnan(x) || (isfinite(x) && x >= 0); }

/* The validation summary's rules; the message names the field (validation.<field>). */
static moa_status validation_check(const moa_plan_validation *v, moa_status code) {
#define VBAD(...) return moa_err(code, __VA_ARGS__)
    if (!memchr(v->task, 0, sizeof v->task) || !v->task[0]) VBAD("validation.task must be a non-empty string (< 32 bytes)");
    if (!memchr(v->calib_tasks, 0, sizeof v->calib_tasks)) VBAD("validation.calibration.tasks must be < 64 bytes");
    if (v->seed > (uint64_t)INT64_MAX || v->calib_seed > (uint64_t)INT64_MAX)
        VBAD("validation.seed and validation.calibration.seed must be < 2^63");
    if (v->samples < 0) VBAD("validation.samples must be >= 0 (got %d)", v->samples);
    if (v->n_lengths < 0 || v->n_lengths > MOA_PLAN_VALIDATION_MAX)
        VBAD("validation.accuracy: %d entries, at most %d", v->n_lengths, MOA_PLAN_VALIDATION_MAX);
    for (int i = 0; i < v->n_lengths; i++) {
        if (v->length[i] <= 0) VBAD("validation.accuracy[%d].length must be > 0", i);
        if (!acc_ok(v->dense[i])) VBAD("validation.accuracy[%d].dense must be in [0, 1] or null (got %g)", i, v->dense[i]);
        if (!acc_ok(v->uniform[i])) VBAD("validation.accuracy[%d].uniform must be in [0, 1] or null (got %g)", i, v->uniform[i]);
        if (!acc_ok(v->plan[i])) VBAD("validation.accuracy[%d].plan must be in [0, 1] or null (got %g)", i, v->plan[i]);
    }
    if (v->heldout_length < 0) VBAD("validation.heldout_loss.length must be > 0");
    if (v->heldout_length > 0) {
        if (v->heldout_samples <= 0) VBAD("validation.heldout_loss.samples must be > 0 (got %d)", v->heldout_samples);
        if (!loss_ok(v->heldout_dense) || !loss_ok(v->heldout_uniform) || !loss_ok(v->heldout_plan))
            VBAD("validation.heldout_loss: losses must be finite and >= 0, or null");
    }
#undef VBAD
    return MOA_OK;
}

moa_status moa_plan_set_validation(moa_plan *p, const moa_plan_validation *v) {
    if (!v) { p->has_validation = 0; memset(&p->val, 0, sizeof p->val); return MOA_OK; }
    MOA_TRY(validation_check(v, MOA_ERR_INVALID_ARG));
    p->val = *v;
    p->has_validation = 1;
    return MOA_OK;
}

int moa_plan_get_validation(const moa_plan *p, moa_plan_validation *out) {
    if (!p->has_validation) return 0;
    if (out) *out = p->val;
    return 1;
}

moa_status moa_plan_validate(const moa_plan *p, const char *name) {
    if (!name) name = "plan";
#define BAD(...) return moa_err_prefix(moa_err(MOA_ERR_FORMAT, __VA_ARGS__), "%s", name)
    if (p->n_layer <= 0) BAD("model.n_layer must be > 0 (got %d)", p->n_layer);
    if (p->n_head <= 0) BAD("model.n_head must be > 0 (got %d)", p->n_head);
    if (p->n_head_kv <= 0 || p->n_head % p->n_head_kv)
        BAD("model.n_head_kv must be > 0 and divide n_head=%d (got %d)", p->n_head, p->n_head_kv);
    if (p->head_dim <= 0) BAD("model.head_dim must be > 0 (got %d)", p->head_dim);
    if (!is_hex64(p->model_sha256)) BAD("model.sha256 must be 64 lowercase hex digits or \"\"");
    if (p->sink < 0) BAD("sink must be >= 0 (got %d)", p->sink);
    if (p->block <= 0) BAD("block must be > 0 (got %d)", p->block);
    int want = p->granularity == MOA_GRAN_Q_HEAD ? p->n_head : p->n_head_kv;
    if (p->n_units != want)
        BAD("layers: %d units per layer, expected %d for granularity %s", p->n_units, want,
            p->granularity == MOA_GRAN_Q_HEAD ? "q-head (n_head)" : "kv-head (n_head_kv)");
    int64_t lens[3 * MOA_PLAN_MAX_LENGTHS];
    if (p->n_profiled < 0 || p->n_profiled > MOA_PLAN_MAX_LENGTHS) BAD("lengths.profiled: too many");
    if (p->n_constrained < 0 || p->n_constrained > MOA_PLAN_MAX_LENGTHS) BAD("lengths.constrained: too many");
    if (p->n_pred < 0 || p->n_pred > MOA_PLAN_MAX_LENGTHS) BAD("predicted: too many");
    for (int i = 0; i < p->n_profiled; i++)
        if (p->profiled[i] <= 0) BAD("lengths.profiled[%d] must be > 0", i);
    for (int i = 0; i < p->n_constrained; i++) {
        if (p->constrained[i] <= 0) BAD("lengths.constrained[%d] must be > 0", i);
        if (!isfinite(p->budget[i]) || p->budget[i] <= 0 || p->budget[i] > 1)
            BAD("lengths.budgets[%d] must be a density in (0, 1] (got %g)", i, p->budget[i]);
    }
    if (p->validation < 0) BAD("lengths.validation must be > 0 or null");
    (void)lens;
    int64_t nmin = min_length(p);
    for (int l = 0; l < p->n_layer; l++) {
        for (int u = 0; u < p->n_units; u++) {
            const moa_plan_unit *x = moa_plan_unit_at(p, l, u);
            if (x->kind != MOA_UNIT_WINDOW && x->kind != MOA_UNIT_DENSE && x->kind != MOA_UNIT_LINEAR)
                BAD("layers[%d].units[%d].kind: unknown kind %d", l, u, (int)x->kind);
            if (x->kind != MOA_UNIT_WINDOW) continue;
            if (!isfinite(x->alpha)) BAD("layers[%d].units[%d].alpha must be finite", l, u);
            if (!isfinite(x->beta) || x->beta < 0 || x->beta > 1)
                BAD("layers[%d].units[%d].beta must be in [0, 1] (got %g)", l, u, x->beta);
            /* beta >= 0: the span grows with N, so positive at the shortest named length
             * means positive at all of them; a plan that names no length may run at any
             * N >= 1, so its spans must be positive from N = 1. */
            int64_t n0 = nmin > 0 ? nmin : 1;
            if (!(x->alpha + x->beta * (double)n0 > 0))
                BAD("layers[%d].units[%d]: span alpha + beta*N = %g is not positive at N=%lld%s", l, u,
                    x->alpha + x->beta * (double)n0, (long long)n0,
                    nmin > 0 ? "" : " (the plan names no lengths, so every N >= 1 must have a window)");
        }
    }
    for (int i = 0; i < p->n_pred; i++) {
        const moa_plan_prediction *q = &p->pred[i];
        if (q->length <= 0) BAD("predicted[%d].length must be > 0", i);
        if (!isfinite(q->density) || q->density < 0 || q->density > 1)
            BAD("predicted[%d].density must be in [0, 1] (got %g)", i, q->density);
        if (q->has_loss && !isfinite(q->loss))   /* signed influence: may be negative */
            BAD("predicted[%d].loss must be finite (got %g)", i, q->loss);
    }
    if (!is_hex64(p->profile_sha256)) BAD("provenance.profile_sha256 must be 64 lowercase hex digits or \"\"");
    if (!is_hex64(p->calib_sha256)) BAD("provenance.calib_sha256 must be 64 lowercase hex digits or \"\"");
    if (!isfinite(p->solver_gap) || p->solver_gap < 0) BAD("provenance.gap must be finite and >= 0");
    if (p->has_validation) {
        moa_status st = validation_check(&p->val, MOA_ERR_FORMAT);
        if (st < 0) return moa_err_prefix(st, "%s", name);
    }
#undef BAD
    return MOA_OK;
}

moa_status moa_plan_check(const moa_plan *p, int n_layer, int n_head, int n_head_kv, int head_dim) {
    char msg[512];
    size_t o = 0;
    int bad = 0;
#define DIM(field, val)                                                                          \
    if (p->field != (val)) {                                                                     \
        o += (size_t)snprintf(msg + o, sizeof msg - o, "%s" #field ": plan has %d, model has %d", \
                              bad ? "; " : "", p->field, (val));                                 \
        bad = 1;                                                                                 \
        if (o >= sizeof msg) o = sizeof msg - 1;                                                 \
    }
    DIM(n_layer, n_layer)
    DIM(n_head, n_head)
    DIM(n_head_kv, n_head_kv)
    DIM(head_dim, head_dim)
#undef DIM
    if (bad)
        return moa_err(MOA_ERR_MISMATCH, "plan%s%s does not fit the model: %s", p->source[0] ? " " : "", p->source,
                       msg);
    return MOA_OK;
}

/* ---- JSON reading ------------------------------------------------------------------------ */

/* Reject keys outside `allowed` (NULL-terminated list). */
static moa_status check_keys(json_t *obj, const char *where, const char *const *allowed) {
    const char *key;
    json_t *v;
    json_object_foreach(obj, key, v) {
        int ok = 0;
        for (const char *const *a = allowed; *a; a++) if (!strcmp(*a, key)) { ok = 1; break; }
        if (!ok) return moa_err(MOA_ERR_FORMAT, "%s: unknown field \"%s\"", where, key);
    }
    return MOA_OK;
}

static moa_status get_obj(json_t *o, const char *key, const char *where, json_t **out) {
    json_t *v = json_object_get(o, key);
    if (!v || !json_is_object(v)) return moa_err(MOA_ERR_FORMAT, "%s%s: missing or not an object", where, key);
    *out = v;
    return MOA_OK;
}

static moa_status get_int(json_t *o, const char *key, const char *where, int64_t lo, int64_t hi,
                          int64_t *out) {
    json_t *v = json_object_get(o, key);
    if (!v) return moa_err(MOA_ERR_FORMAT, "%s%s: missing", where, key);
    if (!json_is_integer(v)) return moa_err(MOA_ERR_FORMAT, "%s%s: must be an integer", where, key);
    json_int_t x = json_integer_value(v);
    if (x < lo || x > hi)
        return moa_err(MOA_ERR_FORMAT, "%s%s: %lld out of range [%lld, %lld]", where, key,
                       (long long)x, (long long)lo, (long long)hi);
    *out = x;
    return MOA_OK;
}

static moa_status get_num(json_t *o, const char *key, const char *where, double *out) {
    json_t *v = json_object_get(o, key);
    if (!v) return moa_err(MOA_ERR_FORMAT, "%s%s: missing", where, key);
    if (!json_is_number(v)) return moa_err(MOA_ERR_FORMAT, "%s%s: must be a number", where, key);
    *out = json_number_value(v);
    if (!isfinite(*out)) return moa_err(MOA_ERR_FORMAT, "%s%s: must be finite", where, key);
    return MOA_OK;
}

static moa_status get_str(json_t *o, const char *key, const char *where, char *buf, size_t cap) {
    json_t *v = json_object_get(o, key);
    if (!v) return moa_err(MOA_ERR_FORMAT, "%s%s: missing", where, key);
    if (!json_is_string(v)) return moa_err(MOA_ERR_FORMAT, "%s%s: must be a string", where, key);
    const char *s = json_string_value(v);
    if (strlen(s) >= cap)
        return moa_err(MOA_ERR_FORMAT, "%s%s: longer than %zu characters", where, key, cap - 1);
    memcpy(buf, s, strlen(s) + 1);
    return MOA_OK;
}

static moa_status get_len_list(json_t *o, const char *key, int64_t *out, int *n) {
    json_t *a = json_object_get(o, key);
    if (!a || !json_is_array(a)) return moa_err(MOA_ERR_FORMAT, "lengths.%s: missing or not an array", key);
    if (json_array_size(a) > MOA_PLAN_MAX_LENGTHS)
        return moa_err(MOA_ERR_FORMAT, "lengths.%s: more than %d entries", key, MOA_PLAN_MAX_LENGTHS);
    *n = (int)json_array_size(a);
    for (int i = 0; i < *n; i++) {
        json_t *v = json_array_get(a, (size_t)i);
        if (!json_is_integer(v) || json_integer_value(v) <= 0)
            return moa_err(MOA_ERR_FORMAT, "lengths.%s[%d]: must be a positive integer", key, i);
        out[i] = json_integer_value(v);
    }
    return MOA_OK;
}

/* A number in [lo, hi] or null (-> NAN). */
static moa_status get_num_or_null(json_t *o, const char *key, const char *where, double *out) {
    json_t *v = json_object_get(o, key);
    if (!v) return moa_err(MOA_ERR_FORMAT, "%s%s: missing (use null if not measured)", where, key);
    if (json_is_null(v)) { *out = NAN; return MOA_OK; }
    return get_num(o, key, where, out);
}

/* Element i of array arr (named `name` in messages) as *out: an object with only the keys
 * `allowed`; `where` (48 bytes) gets "name[i]." for the messages about its members. */
static moa_status get_elem(json_t *arr, const char *name, int i, const char *const *allowed,
                           char where[48], json_t **out) {
    snprintf(where, 48, "%s[%d].", name, i);
    *out = json_array_get(arr, (size_t)i);
    if (!json_is_object(*out)) return moa_err(MOA_ERR_FORMAT, "%s[%d]: not an object", name, i);
    return check_keys(*out, where, allowed);
}

static moa_status parse_validation(json_t *v, moa_plan_validation *out) {
    static const char *const keys[] = {"task", "seed", "samples", "calibration", "accuracy", "heldout_loss", NULL};
    static const char *const cal_keys[] = {"tasks", "seed", NULL};
    static const char *const acc_keys[] = {"length", "dense", "uniform", "plan", NULL};
    static const char *const ho_keys[] = {"length", "samples", "dense", "uniform", "plan", NULL};
    memset(out, 0, sizeof *out);
    if (!json_is_object(v)) return moa_err(MOA_ERR_FORMAT, "validation: must be an object or null");
    MOA_TRY(check_keys(v, "validation", keys));
    int64_t x;
    MOA_TRY(get_str(v, "task", "validation.", out->task, sizeof out->task));
    MOA_TRY(get_int(v, "seed", "validation.", 0, INT64_MAX, &x));
    out->seed = (uint64_t)x;
    MOA_TRY(get_int(v, "samples", "validation.", 0, INT32_MAX, &x));
    out->samples = (int)x;
    json_t *cal = NULL;
    MOA_TRY(get_obj(v, "calibration", "validation.", &cal));
    MOA_TRY(check_keys(cal, "validation.calibration", cal_keys));
    MOA_TRY(get_str(cal, "tasks", "validation.calibration.", out->calib_tasks, sizeof out->calib_tasks));
    MOA_TRY(get_int(cal, "seed", "validation.calibration.", 0, INT64_MAX, &x));
    out->calib_seed = (uint64_t)x;
    json_t *acc = json_object_get(v, "accuracy");
    if (!acc || !json_is_array(acc)) return moa_err(MOA_ERR_FORMAT, "validation.accuracy: missing or not an array");
    if (json_array_size(acc) > MOA_PLAN_VALIDATION_MAX)
        return moa_err(MOA_ERR_FORMAT, "validation.accuracy: %zu entries, at most %d", json_array_size(acc),
                       MOA_PLAN_VALIDATION_MAX);
    out->n_lengths = (int)json_array_size(acc);
    for (int i = 0; i < out->n_lengths; i++) {
        char where[48];
        json_t *a;
        MOA_TRY(get_elem(acc, "validation.accuracy", i, acc_keys, where, &a));
        MOA_TRY(get_int(a, "length", where, 1, INT64_MAX, &out->length[i]));
        MOA_TRY(get_num_or_null(a, "dense", where, &out->dense[i]));
        MOA_TRY(get_num_or_null(a, "uniform", where, &out->uniform[i]));
        MOA_TRY(get_num_or_null(a, "plan", where, &out->plan[i]));
    }
    json_t *ho = json_object_get(v, "heldout_loss");
    if (!ho) return moa_err(MOA_ERR_FORMAT, "validation.heldout_loss: missing (use null for none)");
    if (!json_is_null(ho)) {
        if (!json_is_object(ho)) return moa_err(MOA_ERR_FORMAT, "validation.heldout_loss: must be an object or null");
        MOA_TRY(check_keys(ho, "validation.heldout_loss", ho_keys));
        MOA_TRY(get_int(ho, "length", "validation.heldout_loss.", 1, INT64_MAX, &out->heldout_length));
        MOA_TRY(get_int(ho, "samples", "validation.heldout_loss.", 1, INT32_MAX, &x));
        out->heldout_samples = (int)x;
        MOA_TRY(get_num_or_null(ho, "dense", "validation.heldout_loss.", &out->heldout_dense));
        MOA_TRY(get_num_or_null(ho, "uniform", "validation.heldout_loss.", &out->heldout_uniform));
        MOA_TRY(get_num_or_null(ho, "plan", "validation.heldout_loss.", &out->heldout_plan));
    }
    return MOA_OK;
}

/* The header of a plan (format, version, model shape, sink, block, granularity), checked
 * before the plan is allocated. */
typedef struct {
    json_t *model;
    int64_t nl, nh, nkv, hd, sink, block;
    char gran[16];
    moa_granularity g;
} plan_header;

static moa_status parse_header(json_t *root, plan_header *h) {
    static const char *const top_keys[] = {"format", "version", "model", "sink", "block",
        "granularity", "layers", "lengths", "predicted", "provenance", "validation", NULL};
    static const char *const model_keys[] = {"arch", "n_layer", "n_head", "n_head_kv", "head_dim",
        "sha256", NULL};
    if (!json_is_object(root)) return moa_err(MOA_ERR_FORMAT, "top level must be an object");
    char fmt[32];
    MOA_TRY(get_str(root, "format", "", fmt, sizeof fmt));
    if (strcmp(fmt, MOA_PLAN_FORMAT))
        return moa_err(MOA_ERR_FORMAT, "format: \"%s\" is not \"%s\"", fmt, MOA_PLAN_FORMAT);
    int64_t ver;
    MOA_TRY(get_int(root, "version", "", 0, INT32_MAX, &ver));
    if (ver != MOA_PLAN_VERSION)
        return moa_err(MOA_ERR_FORMAT, "version: %lld is not supported (this reader knows version %d)",
                       (long long)ver, MOA_PLAN_VERSION);
    MOA_TRY(check_keys(root, "plan", top_keys));
    MOA_TRY(get_obj(root, "model", "", &h->model));
    MOA_TRY(check_keys(h->model, "model", model_keys));
    MOA_TRY(get_int(h->model, "n_layer", "model.", 1, 100000, &h->nl));
    MOA_TRY(get_int(h->model, "n_head", "model.", 1, 100000, &h->nh));
    MOA_TRY(get_int(h->model, "n_head_kv", "model.", 1, 100000, &h->nkv));
    MOA_TRY(get_int(h->model, "head_dim", "model.", 1, 1 << 20, &h->hd));
    if (h->nh % h->nkv) return moa_err(MOA_ERR_FORMAT, "model.n_head_kv: %lld does not divide n_head=%lld",
                                       (long long)h->nkv, (long long)h->nh);
    MOA_TRY(get_int(root, "sink", "", 0, INT32_MAX, &h->sink));
    MOA_TRY(get_int(root, "block", "", 1, INT32_MAX, &h->block));
    MOA_TRY(get_str(root, "granularity", "", h->gran, sizeof h->gran));
    if (!strcmp(h->gran, "kv-head")) h->g = MOA_GRAN_KV_HEAD;
    else if (!strcmp(h->gran, "q-head")) h->g = MOA_GRAN_Q_HEAD;
    else return moa_err(MOA_ERR_FORMAT, "granularity: \"%s\" is not \"kv-head\" or \"q-head\"", h->gran);
    return MOA_OK;
}

/* One unit's rule: kind, and alpha and beta for a window (where: "layers[l].units[u]."). */
static moa_status parse_unit(json_t *uo, const char *where, moa_plan_unit *x) {
    static const char *const unit_keys[] = {"kind", "alpha", "beta", NULL};
    if (!json_is_object(uo)) return moa_err(MOA_ERR_FORMAT, "%s: not an object", where);
    MOA_TRY(check_keys(uo, where, unit_keys));
    char kind[16];
    MOA_TRY(get_str(uo, "kind", where, kind, sizeof kind));
    if (!strcmp(kind, "window")) x->kind = MOA_UNIT_WINDOW;
    else if (!strcmp(kind, "dense")) x->kind = MOA_UNIT_DENSE;
    else if (!strcmp(kind, "linear")) x->kind = MOA_UNIT_LINEAR;
    else return moa_err(MOA_ERR_FORMAT, "%skind: \"%s\" is not window|dense|linear", where, kind);
    if (x->kind == MOA_UNIT_WINDOW) {
        MOA_TRY(get_num(uo, "alpha", where, &x->alpha));
        MOA_TRY(get_num(uo, "beta", where, &x->beta));
    }
    return MOA_OK;
}

/* "layers": n_layer objects of n_units units each (gran: the granularity, for messages). */
static moa_status parse_layers(json_t *root, moa_plan *p, const char *gran) {
    static const char *const layer_keys[] = {"units", NULL};
    json_t *layers = json_object_get(root, "layers");
    if (!layers || !json_is_array(layers)) return moa_err(MOA_ERR_FORMAT, "layers: missing or not an array");
    if ((int64_t)json_array_size(layers) != p->n_layer)
        return moa_err(MOA_ERR_FORMAT, "layers: %zu entries, expected model.n_layer=%lld",
                       json_array_size(layers), (long long)p->n_layer);
    for (int l = 0; l < p->n_layer; l++) {
        char where[64];
        json_t *lo = json_array_get(layers, (size_t)l);
        snprintf(where, sizeof where, "layers[%d]", l);
        if (!json_is_object(lo)) return moa_err(MOA_ERR_FORMAT, "%s: not an object", where);
        MOA_TRY(check_keys(lo, where, layer_keys));
        json_t *units = json_object_get(lo, "units");
        if (!units || !json_is_array(units)) return moa_err(MOA_ERR_FORMAT, "%s.units: missing or not an array", where);
        if ((int)json_array_size(units) != p->n_units)
            return moa_err(MOA_ERR_FORMAT, "%s.units: %zu entries, expected %d (%s granularity)", where,
                           json_array_size(units), p->n_units, gran);
        for (int u = 0; u < p->n_units; u++) {
            snprintf(where, sizeof where, "layers[%d].units[%d].", l, u);
            MOA_TRY(parse_unit(json_array_get(units, (size_t)u), where, &p->units[(int64_t)l * p->n_units + u]));
        }
    }
    return MOA_OK;
}

/* "lengths": profiled and constrained lengths, a budget per constrained length, the
 * validation length (null: none). */
static moa_status parse_lengths(json_t *root, moa_plan *p) {
    static const char *const len_keys[] = {"profiled", "constrained", "budgets", "validation", NULL};
    json_t *lengths = NULL;
    MOA_TRY(get_obj(root, "lengths", "", &lengths));
    MOA_TRY(check_keys(lengths, "lengths", len_keys));
    MOA_TRY(get_len_list(lengths, "profiled", p->profiled, &p->n_profiled));
    MOA_TRY(get_len_list(lengths, "constrained", p->constrained, &p->n_constrained));
    json_t *b = json_object_get(lengths, "budgets");
    if (!b || !json_is_array(b) || (int)json_array_size(b) != p->n_constrained)
        return moa_err(MOA_ERR_FORMAT, "lengths.budgets: must be an array with one density per constrained length (%d)",
                       p->n_constrained);
    for (int i = 0; i < p->n_constrained; i++) {
        json_t *v = json_array_get(b, (size_t)i);
        if (!json_is_number(v)) return moa_err(MOA_ERR_FORMAT, "lengths.budgets[%d]: must be a number", i);
        p->budget[i] = json_number_value(v);
    }
    json_t *v = json_object_get(lengths, "validation");
    if (!v) return moa_err(MOA_ERR_FORMAT, "lengths.validation: missing (use null for none)");
    if (json_is_null(v)) p->validation = 0;
    else if (json_is_integer(v) && json_integer_value(v) > 0) p->validation = json_integer_value(v);
    else return moa_err(MOA_ERR_FORMAT, "lengths.validation: must be a positive integer or null");
    return MOA_OK;
}

/* "predicted": length, density and loss (null: unknown) per entry. */
static moa_status parse_predicted(json_t *root, moa_plan *p) {
    static const char *const pred_keys[] = {"length", "loss", "density", NULL};
    json_t *pr = json_object_get(root, "predicted");
    if (!pr || !json_is_array(pr)) return moa_err(MOA_ERR_FORMAT, "predicted: missing or not an array");
    if (json_array_size(pr) > MOA_PLAN_MAX_LENGTHS) return moa_err(MOA_ERR_FORMAT, "predicted: too many entries");
    p->n_pred = (int)json_array_size(pr);
    for (int i = 0; i < p->n_pred; i++) {
        char where[48];
        json_t *q;
        MOA_TRY(get_elem(pr, "predicted", i, pred_keys, where, &q));
        MOA_TRY(get_int(q, "length", where, 1, INT64_MAX, &p->pred[i].length));
        MOA_TRY(get_num(q, "density", where, &p->pred[i].density));
        json_t *lv = json_object_get(q, "loss");
        if (!lv) return moa_err(MOA_ERR_FORMAT, "%sloss: missing (use null if unknown)", where);
        if (json_is_null(lv)) p->pred[i].has_loss = 0;
        else { p->pred[i].has_loss = 1; MOA_TRY(get_num(q, "loss", where, &p->pred[i].loss)); }
    }
    return MOA_OK;
}

/* "provenance": input hashes, tool version, solver, its status, gap and time (optional). */
static moa_status parse_provenance(json_t *root, moa_plan *p) {
    static const char *const prov_keys[] = {"profile_sha256", "calib_sha256", "tool_version",
        "solver", "solver_status", "gap", "time_s", NULL};
    json_t *prov = NULL;
    MOA_TRY(get_obj(root, "provenance", "", &prov));
    MOA_TRY(check_keys(prov, "provenance", prov_keys));
    MOA_TRY(get_str(prov, "profile_sha256", "provenance.", p->profile_sha256, sizeof p->profile_sha256));
    MOA_TRY(get_str(prov, "calib_sha256", "provenance.", p->calib_sha256, sizeof p->calib_sha256));
    MOA_TRY(get_str(prov, "tool_version", "provenance.", p->tool_version, sizeof p->tool_version));
    MOA_TRY(get_str(prov, "solver", "provenance.", p->solver, sizeof p->solver));
    MOA_TRY(get_str(prov, "solver_status", "provenance.", p->solver_status, sizeof p->solver_status));
    MOA_TRY(get_num(prov, "gap", "provenance.", &p->solver_gap));
    if (json_object_get(prov, "time_s")) MOA_TRY(get_num(prov, "time_s", "provenance.", &p->solver_time));
    return MOA_OK;
}

/* The plan's sections after its header, in file order; then the plan's own checks. */
static moa_status parse_body(json_t *root, const plan_header *h, moa_plan *p) {
    MOA_TRY(get_str(h->model, "arch", "model.", p->arch, sizeof p->arch));
    MOA_TRY(get_str(h->model, "sha256", "model.", p->model_sha256, sizeof p->model_sha256));
    p->sink = (int)h->sink;
    p->block = (int)h->block;
    MOA_TRY(parse_layers(root, p, h->gran));
    MOA_TRY(parse_lengths(root, p));
    MOA_TRY(parse_predicted(root, p));
    MOA_TRY(parse_provenance(root, p));
    json_t *val = json_object_get(root, "validation");
    if (val && !json_is_null(val)) {
        MOA_TRY(parse_validation(val, &p->val));
        p->has_validation = 1;
    }
    return moa_plan_validate(p, NULL);
}

static moa_status parse_plan(json_t *root, moa_plan **out) {
    plan_header h;
    memset(&h, 0, sizeof h);
    MOA_TRY(parse_header(root, &h));
    moa_plan *p = moa_plan_alloc((int)h.nl, (int)h.nh, (int)h.nkv, (int)h.hd, h.g);
    if (!p) return moa_err(MOA_ERR_NOMEM, "out of memory");
    moa_status st = parse_body(root, &h, p);
    if (st < 0) {
        moa_plan_free(p);
        return st;
    }
    *out = p;
    return MOA_OK;
}

moa_status moa_plan_load_string(const char *json, const char *name, moa_plan **out) {
    *out = NULL;
    if (!name) name = "plan";
    json_error_t je;
    json_t *root = json_loads(json, JSON_REJECT_DUPLICATES, &je);
    if (!root)
        return moa_err(MOA_ERR_FORMAT, "%s: invalid JSON at line %d column %d: %s", name, je.line,
                       je.column, je.text);
    moa_status st = parse_plan(root, out);
    json_decref(root);
    if (st < 0) return moa_err_prefix(st, "%s", name);
    snprintf((*out)->source, sizeof (*out)->source, "%s", name);
    return MOA_OK;
}

moa_status moa_plan_load(const char *path, moa_plan **out) {
    *out = NULL;
    char *data = NULL;
    size_t len = 0;
    MOA_TRY(moa_read_file(path, &data, &len));
    if (strlen(data) != len) {
        free(data);
        return moa_err(MOA_ERR_FORMAT, "%s: contains NUL bytes (not a JSON plan)", path);
    }
    moa_status st = moa_plan_load_string(data, path, out);
    free(data);
    return st;
}

/* ---- JSON writing ------------------------------------------------------------------------ */

static json_t *num_or_null(double x) { return isnan(x) ? json_null() : json_real(x); }

/* {"length": n, [extra key "samples"], "dense": d, "uniform": u, "plan": p} (NAN -> null) */
static json_t *three_way(int64_t length, int samples, double d, double u, double p) {
    json_t *o = json_object();
    json_object_set_new(o, "length", json_integer(length));
    if (samples > 0) json_object_set_new(o, "samples", json_integer(samples));
    json_object_set_new(o, "dense", num_or_null(d));
    json_object_set_new(o, "uniform", num_or_null(u));
    json_object_set_new(o, "plan", num_or_null(p));
    return o;
}

/* An object with the members kv[0 .. n), in order (each value's reference is taken, as by
 * json_object_set_new). */
typedef struct { const char *key; json_t *val; } json_kv;
static json_t *object_of(const json_kv *kv, size_t n) {
    json_t *o = json_object();
    for (size_t i = 0; i < n; i++) json_object_set_new(o, kv[i].key, kv[i].val);
    return o;
}

/* The plan as its file's JSON object; with_validation 0 leaves the validation summary out. */
static json_t *plan_to_json(const moa_plan *p, int with_validation) {
    json_t *root = json_object();
    json_object_set_new(root, "format", json_string(MOA_PLAN_FORMAT));
    json_object_set_new(root, "version", json_integer(MOA_PLAN_VERSION));
    const json_kv model[] = {
        {"arch", json_string(p->arch)}, {"n_layer", json_integer(p->n_layer)},
        {"n_head", json_integer(p->n_head)}, {"n_head_kv", json_integer(p->n_head_kv)},
        {"head_dim", json_integer(p->head_dim)}, {"sha256", json_string(p->model_sha256)}};
    json_object_set_new(root, "model", object_of(model, sizeof model / sizeof *model));
    json_object_set_new(root, "sink", json_integer(p->sink));
    json_object_set_new(root, "block", json_integer(p->block));
    json_object_set_new(root, "granularity",
                        json_string(p->granularity == MOA_GRAN_Q_HEAD ? "q-head" : "kv-head"));
    json_t *layers = json_array();
    for (int l = 0; l < p->n_layer; l++) {
        json_t *units = json_array();
        for (int u = 0; u < p->n_units; u++) {
            const moa_plan_unit *x = moa_plan_unit_at(p, l, u);
            json_t *uo = json_object();
            static const char *const kinds[] = {"window", "dense", "linear"};
            json_object_set_new(uo, "kind", json_string(kinds[x->kind]));
            if (x->kind == MOA_UNIT_WINDOW) {
                json_object_set_new(uo, "alpha", json_real(x->alpha));
                json_object_set_new(uo, "beta", json_real(x->beta));
            }
            json_array_append_new(units, uo);
        }
        json_t *lo = json_object();
        json_object_set_new(lo, "units", units);
        json_array_append_new(layers, lo);
    }
    json_object_set_new(root, "layers", layers);
    json_t *len = json_object(), *a;
    a = json_array();
    for (int i = 0; i < p->n_profiled; i++) json_array_append_new(a, json_integer(p->profiled[i]));
    json_object_set_new(len, "profiled", a);
    a = json_array();
    for (int i = 0; i < p->n_constrained; i++) json_array_append_new(a, json_integer(p->constrained[i]));
    json_object_set_new(len, "constrained", a);
    a = json_array();
    for (int i = 0; i < p->n_constrained; i++) json_array_append_new(a, json_real(p->budget[i]));
    json_object_set_new(len, "budgets", a);
    json_object_set_new(len, "validation", p->validation > 0 ? json_integer(p->validation) : json_null());
    json_object_set_new(root, "lengths", len);
    a = json_array();
    for (int i = 0; i < p->n_pred; i++) {
        json_t *q = json_object();
        json_object_set_new(q, "length", json_integer(p->pred[i].length));
        json_object_set_new(q, "loss", p->pred[i].has_loss ? json_real(p->pred[i].loss) : json_null());
        json_object_set_new(q, "density", json_real(p->pred[i].density));
        json_array_append_new(a, q);
    }
    json_object_set_new(root, "predicted", a);
    const json_kv prov[] = {
        {"profile_sha256", json_string(p->profile_sha256)},
        {"calib_sha256", json_string(p->calib_sha256)}, {"tool_version", json_string(p->tool_version)},
        {"solver", json_string(p->solver)}, {"solver_status", json_string(p->solver_status)},
        {"gap", json_real(p->solver_gap)}, {"time_s", json_real(p->solver_time)}};
    json_object_set_new(root, "provenance", object_of(prov, sizeof prov / sizeof *prov));
    if (p->has_validation && with_validation) {
        const moa_plan_validation *v = &p->val;
        json_t *vo = json_object(), *cal = json_object(), *acc = json_array();
        json_object_set_new(vo, "task", json_string(v->task));
        json_object_set_new(vo, "seed", json_integer((json_int_t)v->seed));
        json_object_set_new(vo, "samples", json_integer(v->samples));
        json_object_set_new(cal, "tasks", json_string(v->calib_tasks));
        json_object_set_new(cal, "seed", json_integer((json_int_t)v->calib_seed));
        json_object_set_new(vo, "calibration", cal);
        for (int i = 0; i < v->n_lengths; i++)
            json_array_append_new(acc, three_way(v->length[i], 0, v->dense[i], v->uniform[i], v->plan[i]));
        json_object_set_new(vo, "accuracy", acc);
        json_object_set_new(vo, "heldout_loss",
                            v->heldout_length > 0 ? three_way(v->heldout_length, v->heldout_samples, v->heldout_dense,
                                                              v->heldout_uniform, v->heldout_plan)
                                                  : json_null());
        json_object_set_new(root, "validation", vo);
    }
    return root;
}

/* The JSON text of the plan (malloc'd, NUL-terminated, no trailing newline). */
static moa_status plan_json_text(const moa_plan *p, int with_validation, char **json_out) {
    *json_out = NULL;
    MOA_TRY(moa_plan_validate(p, "plan"));
    json_t *root = plan_to_json(p, with_validation);
    if (!root) return moa_err(MOA_ERR_NOMEM, "out of memory");
    /* compact units: one layer per line would need a custom printer; indent the structure */
    char *s = json_dumps(root, JSON_INDENT(1) | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(17));
    json_decref(root);
    if (!s) return moa_err(MOA_ERR_NOMEM, "out of memory");
    *json_out = s;
    return MOA_OK;
}

moa_status moa_plan_to_string(const moa_plan *p, char **json_out) { return plan_json_text(p, 1, json_out); }

/* The bytes of the plan's file, the JSON text and a newline: what moa_plan_save writes and
 * moa_plan_sha256 hashes (one definition of the file). *out malloc'd, *n bytes. */
static moa_status plan_file_bytes(const moa_plan *p, int with_validation, char **out, size_t *n) {
    *out = NULL;
    char *s = NULL;
    MOA_TRY(plan_json_text(p, with_validation, &s));
    const size_t len = strlen(s);
    char *b = realloc(s, len + 1);
    if (!b) { free(s); return moa_err(MOA_ERR_NOMEM, "out of memory"); }
    b[len] = '\n';
    *out = b;
    *n = len + 1;
    return MOA_OK;
}

moa_status moa_plan_save(const moa_plan *p, const char *path) {
    char *s = NULL;
    size_t n = 0;
    MOA_TRY(plan_file_bytes(p, 1, &s, &n));
    moa_atomic_file af;
    moa_status st = moa_atomic_open(&af, path, "wb");
    if (st < 0) { free(s); return st; }
    if (fwrite(s, 1, n, af.fp) != n) {
        free(s);
        moa_atomic_abort(&af);
        return moa_err(MOA_ERR_IO, "%s: write failed", path);
    }
    free(s);
    return moa_atomic_commit(&af);
}

moa_status moa_plan_sha256(const moa_plan *p, int without_validation, char out[65]) {
    if (!p || !out) return moa_err(MOA_ERR_INVALID_ARG, "moa_plan_sha256: NULL plan or output");
    out[0] = '\0';
    char *s = NULL;
    size_t n = 0;
    MOA_TRY(plan_file_bytes(p, !without_validation, &s, &n));
    uint8_t d[32];
    moa_sha256_ctx c;
    moa_sha256_init(&c);
    moa_sha256_update(&c, s, n);
    moa_sha256_final(&c, d);
    free(s);
    moa_sha256_hex(d, out);
    return MOA_OK;
}

/* ---- uniform plans ----------------------------------------------------------------------- */

moa_status moa_plan_uniform(int n_layer, int n_head, int n_head_kv, int head_dim, int sink,
                            int block, double density, int64_t n, moa_plan **out) {
    *out = NULL;
    if (n_layer <= 0 || n_head <= 0 || n_head_kv <= 0 || n_head % n_head_kv || head_dim <= 0)
        return moa_err(MOA_ERR_INVALID_ARG, "uniform plan: bad model dimensions");
    if (sink < 0 || block <= 0 || n <= 0 || !(density > 0 && density <= 1))
        return moa_err(MOA_ERR_INVALID_ARG, "uniform plan: need sink >= 0, block > 0, N > 0, density in (0, 1]");
    double avail = density * (double)n - (double)sink;
    int64_t w = avail > 0 ? ((int64_t)floor(avail + 1e-9) / block) * block : 0;
    if (w <= 0)
        return moa_err(MOA_ERR_INFEASIBLE,
                       "uniform plan: density %g at N=%lld leaves no room for a %d-token window after "
                       "%d sink tokens (smallest feasible density %.6g)", density, (long long)n,
                       block, sink, (double)(sink + block) / (double)n);
    moa_plan *p = moa_plan_alloc(n_layer, n_head, n_head_kv, head_dim, MOA_GRAN_KV_HEAD);
    if (!p) return moa_err(MOA_ERR_NOMEM, "out of memory");
    p->sink = sink;
    p->block = block;
    for (int64_t i = 0; i < (int64_t)n_layer * p->n_units; i++) {
        p->units[i].kind = MOA_UNIT_WINDOW;
        p->units[i].alpha = (double)w;
        p->units[i].beta = 0;
    }
    p->n_constrained = 1;
    p->constrained[0] = n;
    p->budget[0] = density;
    p->n_pred = 1;
    p->pred[0].length = n;
    p->pred[0].density = moa_plan_density(p, n);
    snprintf(p->solver, sizeof p->solver, "uniform");
    moa_status st = moa_plan_validate(p, "uniform plan");
    if (st < 0) { moa_plan_free(p); return st; }
    *out = p;
    return MOA_OK;
}
