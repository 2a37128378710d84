/* validation.c - a plan's validation summary (moa_plan_validation) from LongEval results files
 * made separately, one per (length, method) or several lengths per file: every file is read
 * and checked against the plan and the others (task, seed, samples per cell, model, attention
 * setting, complete lengths) before anything is returned; accuracies are merged per length. */
#include "eval-internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static const char *const method_name[3] = {"dense", "uniform", "plan"};

moa_validation_sources moa_validation_default_sources(void) {
    const moa_validation_sources s = {.calib_seed = -1, .heldout_dense = NAN, .heldout_uniform = NAN,
                                      .heldout_plan = NAN};
    return s;
}

/* What the summary needs from one results file's settings. */
typedef struct {
    const char *task;
    json_int_t seed, samples_per_cell;
    const char *model_sha256;
    json_t *attention;
} file_settings;

static moa_status get_field(json_t *o, const char *key, const char *where, const char *path, json_type type,
                            json_t **out) {
    json_t *v = o ? json_object_get(o, key) : NULL;
    if (!v || json_typeof(v) != type) {
        static const char *const names[] = {"an object", "an array", "a string", "an integer"};
        const char *want = type == JSON_OBJECT ? names[0] : type == JSON_ARRAY ? names[1]
                           : type == JSON_STRING ? names[2] : names[3];
        return moa_err(MOA_ERR_FORMAT, "%s: %s%s: %s, expected %s", path, where, key, v ? "wrong type" : "missing",
                       want);
    }
    *out = v;
    return MOA_OK;
}

static moa_status read_settings(json_t *s, const char *path, file_settings *fs) {
    json_t *v = NULL, *model = NULL;
    MOA_TRY(get_field(s, "task", "settings.", path, JSON_STRING, &v));
    fs->task = json_string_value(v);
    MOA_TRY(get_field(s, "seed", "settings.", path, JSON_INTEGER, &v));
    fs->seed = json_integer_value(v);
    MOA_TRY(get_field(s, "samples_per_cell", "settings.", path, JSON_INTEGER, &v));
    fs->samples_per_cell = json_integer_value(v);
    if (fs->seed < 0 || fs->samples_per_cell < 1 || fs->samples_per_cell > (1 << 20))
        return moa_err(MOA_ERR_FORMAT, "%s: settings.seed must be >= 0 and settings.samples_per_cell in [1, 2^20]",
                       path);
    MOA_TRY(get_field(s, "model", "settings.", path, JSON_OBJECT, &model));
    MOA_TRY(get_field(model, "model_sha256", "settings.model.", path, JSON_STRING, &v));
    fs->model_sha256 = json_string_value(v);
    MOA_TRY(get_field(model, "attention", "settings.model.", path, JSON_OBJECT, &fs->attention));
    return MOA_OK;
}

/* The attention setting of a file given as `method`: dense; uniform with the plan's sinks and
 * block; or the plan itself (its recorded sha256 one of plan_sha[0..n_sha)). */
static moa_status check_attention(json_t *a, int method, const char *path, const moa_plan *plan,
                                  char plan_sha[][65], int n_sha, const char *plan_path) {
    json_t *v = NULL;
    MOA_TRY(get_field(a, "kind", "settings.model.attention.", path, JSON_STRING, &v));
    const char *kind = json_string_value(v);
    if (strcmp(kind, method_name[method]) != 0)
        return moa_err(MOA_ERR_MISMATCH, "%s: settings.model.attention.kind is '%s', but the file was given as the "
                       "%s result", path, kind, method_name[method]);
    if (method == MOA_VALIDATION_UNIFORM) {
        json_t *sink = NULL, *block = NULL;
        MOA_TRY(get_field(a, "sink", "settings.model.attention.", path, JSON_INTEGER, &sink));
        MOA_TRY(get_field(a, "block", "settings.model.attention.", path, JSON_INTEGER, &block));
        if (json_integer_value(sink) != moa_plan_sink(plan) || json_integer_value(block) != moa_plan_block(plan))
            return moa_err(MOA_ERR_MISMATCH, "%s: settings.model.attention: the uniform baseline has sink %lld and "
                           "block %lld, the plan sink %d and block %d (use `moa eval longeval --uniform-like PLAN`)",
                           path, (long long)json_integer_value(sink), (long long)json_integer_value(block),
                           moa_plan_sink(plan), moa_plan_block(plan));
    }
    if (method == MOA_VALIDATION_PLAN) {
        MOA_TRY(get_field(a, "sha256", "settings.model.attention.", path, JSON_STRING, &v));
        const char *sha = json_string_value(v);
        for (int i = 0; i < n_sha; i++)
            if (!strcmp(sha, plan_sha[i])) return MOA_OK;
        json_t *file = json_object_get(a, "file");
        return moa_err(MOA_ERR_MISMATCH, "%s: settings.model.attention.sha256 is %s (plan file '%s'): made with "
                       "another plan than %s (sha256 %s)", path, sha,
                       json_is_string(file) ? json_string_value(file) : "?", plan_path, plan_sha[0]);
    }
    return MOA_OK;
}

/* The sha256s a plan result may record for this plan: the file's bytes, and the plan without
 * its validation summary as moa_plan_save writes it (the file before an in-place annotation). */
static moa_status plan_identities(const moa_plan *plan, const char *plan_path, char sha[2][65], int *n) {
    MOA_TRY(moa_sha256_file(plan_path, sha[0]));
    *n = 1;
    MOA_TRY(moa_plan_sha256(plan, 1, sha[1]));
    if (strcmp(sha[0], sha[1]) != 0) *n = 2;
    return MOA_OK;
}

/* One accuracy of the merge: length, method, value and the file it came from. */
typedef struct {
    int64_t length;
    int method;
    double accuracy;
    const char *path;
} entry;

static int entry_cmp(const void *a, const void *b) {
    const entry *x = a, *y = b;
    if (x->length != y->length) return x->length < y->length ? -1 : 1;
    return x->method - y->method;
}

/* Reads and checks one results file, appending its lengths to e[*n_e] (capacity cap). The
 * first file read fixes seed and samples per cell (*first, *seed, *spc). */
static moa_status take_file(const char *path, int method, const moa_plan *plan, const char *plan_path,
                            char plan_sha[][65], int n_sha, const moa_validation_sources *src,
                            const char **first, int64_t *seed, int64_t *spc, entry *e, int *n_e, int cap) {
    moa_longeval_results *r = NULL;
    MOA_TRY(moa_longeval_read_json(path, &r));
    json_error_t je;
    json_t *s = json_loads(r->settings, 0, &je);
    file_settings fs = {0};
    moa_status st = s ? read_settings(s, path, &fs) : moa_err(MOA_ERR_FORMAT, "%s: settings: %s", path, je.text);
    if (st < 0) goto out;
    if (strcmp(fs.task, src->task) != 0) {
        st = moa_err(MOA_ERR_MISMATCH, "%s: settings.task is '%s', expected '%s'", path, fs.task, src->task);
        goto out;
    }
    if (strcmp(fs.model_sha256, moa_plan_model_sha256(plan)) != 0) {
        st = moa_err(MOA_ERR_MISMATCH, "%s: settings.model.model_sha256 is %s, but the plan %s is for model %s", path,
                     fs.model_sha256, plan_path, moa_plan_model_sha256(plan));
        goto out;
    }
    if (!*first) {
        *first = path;
        *seed = fs.seed;
        *spc = fs.samples_per_cell;
    } else if (fs.seed != *seed || fs.samples_per_cell != *spc) {
        st = moa_err(MOA_ERR_MISMATCH, "%s: settings.%s is %lld, but %s has %lld (every file must use the same "
                     "prompts)", path, fs.seed != *seed ? "seed" : "samples_per_cell",
                     (long long)(fs.seed != *seed ? fs.seed : fs.samples_per_cell), *first,
                     (long long)(fs.seed != *seed ? *seed : *spc));
        goto out;
    }
    int want = (int)(fs.samples_per_cell * MOA_LONGEVAL_BINS);
    for (int l = 0; l < r->n_lengths; l++)
        if (r->lengths[l].n != want) {
            st = moa_err(MOA_ERR_FORMAT, "%s: lengths[%d] (length %d): %d of %d prompts finished (an unfinished "
                         "run? finish it with `moa eval longeval --resume`)", path, l, r->lengths[l].length,
                         r->lengths[l].n, want);
            goto out;
        }
    if ((st = check_attention(fs.attention, method, path, plan, plan_sha, n_sha, plan_path)) < 0) goto out;
    for (int l = 0; l < r->n_lengths; l++) {
        const moa_longeval_length *L = &r->lengths[l];
        for (int i = 0; i < *n_e; i++)
            if (e[i].method == method && e[i].length == L->length) {
                st = moa_err(MOA_ERR_INVALID_ARG, "%s: length %d of the %s results is also in %s (give each "
                             "length once per method)", path, L->length, method_name[method], e[i].path);
                goto out;
            }
        if (*n_e == cap) {
            st = moa_err(MOA_ERR_RANGE, "%s: more than %d (length, method) results in all", path, cap);
            goto out;
        }
        e[(*n_e)++] = (entry){.length = L->length, .method = method, .accuracy = L->accuracy, .path = path};
    }
out:
    json_decref(s);
    moa_longeval_results_free(r);
    return st;
}

moa_status moa_longeval_plan_validation(const moa_plan *plan, const char *plan_path,
                                        const moa_validation_sources *src, moa_plan_validation *out) {
    if (!plan || !plan_path || !src || !out || !src->task || !*src->task)
        return moa_err(MOA_ERR_INVALID_ARG, "moa_longeval_plan_validation: NULL argument or no task");
    if (src->n_files[MOA_VALIDATION_PLAN] < 1)
        return moa_err(MOA_ERR_INVALID_ARG, "no results file of the plan itself: the summary is the plan's");
    if (strlen(src->task) >= sizeof out->task)
        return moa_err(MOA_ERR_INVALID_ARG, "task '%s': longer than %zu bytes", src->task, sizeof out->task - 1);
    for (int m = 0; m < 3; m++)
        if (src->n_files[m] < 0 || (src->n_files[m] > 0 && !src->files[m]))
            return moa_err(MOA_ERR_INVALID_ARG, "moa_longeval_plan_validation: bad %s file list", method_name[m]);
    if (!*moa_plan_model_sha256(plan))
        return moa_err(MOA_ERR_MISMATCH, "%s: model.sha256 is empty: the results cannot be checked against the "
                       "plan's model", plan_path);
    char sha[2][65];
    int n_sha = 0;
    MOA_TRY(plan_identities(plan, plan_path, sha, &n_sha));
    enum { CAP = 4 * MOA_PLAN_VALIDATION_MAX };
    entry *e = calloc(CAP, sizeof *e);
    if (!e) return moa_err(MOA_ERR_NOMEM, "out of memory");
    int n_e = 0;
    const char *first = NULL;
    int64_t seed = 0, spc = 0;
    moa_status st = MOA_OK;
    for (int m = 0; m < 3 && st >= 0; m++)
        for (int i = 0; i < src->n_files[m] && st >= 0; i++)
            st = take_file(src->files[m][i], m, plan, plan_path, sha, n_sha, src, &first, &seed, &spc, e, &n_e, CAP);
    if (st < 0) { free(e); return st; }
    qsort(e, (size_t)n_e, sizeof *e, entry_cmp);
    moa_plan_validation v;
    memset(&v, 0, sizeof v);
    snprintf(v.task, sizeof v.task, "%s", src->task);
    v.seed = (uint64_t)seed;
    v.samples = (int)(spc * MOA_LONGEVAL_BINS);
    moa_plan_validation old;
    int has_old = moa_plan_get_validation(plan, &old);
    const char *ct = src->calib_tasks ? src->calib_tasks : has_old ? old.calib_tasks : "";
    if (strlen(ct) >= sizeof v.calib_tasks) {
        free(e);
        return moa_err(MOA_ERR_INVALID_ARG, "calibration tasks '%s': longer than %zu bytes", ct,
                       sizeof v.calib_tasks - 1);
    }
    snprintf(v.calib_tasks, sizeof v.calib_tasks, "%s", ct);
    v.calib_seed = src->calib_seed >= 0 ? (uint64_t)src->calib_seed : has_old ? old.calib_seed : 0;
    for (int i = 0; i < n_e; i++) {
        if (i == 0 || e[i].length != e[i - 1].length) {
            if (v.n_lengths == MOA_PLAN_VALIDATION_MAX) {
                st = moa_err(MOA_ERR_RANGE, "the results cover more than %d lengths (the most a plan's summary "
                             "holds); length %lld is from %s", MOA_PLAN_VALIDATION_MAX, (long long)e[i].length,
                             e[i].path);
                free(e);
                return st;
            }
            int k = v.n_lengths++;
            v.length[k] = e[i].length;
            v.dense[k] = v.uniform[k] = v.plan[k] = NAN;
        }
        double *col[3] = {v.dense, v.uniform, v.plan};
        col[e[i].method][v.n_lengths - 1] = e[i].accuracy;
    }
    free(e);
    v.heldout_length = src->heldout_length;
    v.heldout_samples = src->heldout_samples;
    v.heldout_dense = src->heldout_length > 0 ? src->heldout_dense : NAN;
    v.heldout_uniform = src->heldout_length > 0 ? src->heldout_uniform : NAN;
    v.heldout_plan = src->heldout_length > 0 ? src->heldout_plan : NAN;
    *out = v;
    return MOA_OK;
}
