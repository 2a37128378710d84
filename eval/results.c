/* results.c - LongEval aggregation (cells, lengths, effective context length, relative to a
 * reference), the results JSON writer / reader and the CSV files. */
#include "eval-internal.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

void moa_longeval_row_clear(moa_longeval_row *row) {
    if (!row) return;
    free(row->expected);
    free(row->output);
    row->expected = row->output = NULL;
}

void moa_longeval_results_free(moa_longeval_results *r) {
    if (!r) return;
    for (int64_t i = 0; i < r->n_rows; i++) moa_longeval_row_clear(&r->rows[i]);
    MOA_FREE_ALL(r->rows, r->lengths, r->cells, r->label, r->settings, r->reference_label, r);
}

/* Canonical JSON text of an object (sorted keys, compact); NULL text = {}. */
char *eval_canonical_json(const char *text, const char *what) {
    json_error_t e;
    json_t *o = text ? json_loads(text, 0, &e) : json_object();
    if (!o || !json_is_object(o)) {
        json_decref(o);
        moa_err(MOA_ERR_INVALID_ARG, "%s: not a JSON object", what);
        return NULL;
    }
    char *s = json_dumps(o, JSON_COMPACT | JSON_SORT_KEYS);
    json_decref(o);
    if (!s) moa_err(MOA_ERR_NOMEM, "out of memory");
    return s;
}

static int length_index(const moa_longeval_results *r, int length) {
    for (int l = 0; l < r->n_lengths; l++)
        if (r->lengths[l].length == length) return l;
    return -1;
}

static int row_cmp_key(const moa_longeval_results *r, const moa_longeval_row *a, const moa_longeval_row *b) {
    int la = length_index(r, a->length), lb = length_index(r, b->length);
    if (la != lb) return la < lb ? -1 : 1;
    if (a->bin != b->bin) return a->bin < b->bin ? -1 : 1;
    if (a->k != b->k) return a->k < b->k ? -1 : 1;
    return 0;
}

/* Recomputes cells, lengths and the effective context lengths from the rows. */
void eval_aggregate(moa_longeval_results *r) {
    int nb = MOA_LONGEVAL_BINS;
    for (int l = 0; l < r->n_lengths; l++) {
        moa_longeval_length *L = &r->lengths[l];
        L->n = L->correct = 0;
        L->mean_prompt_tokens = 0;
        for (int b = 0; b < nb; b++) {
            moa_longeval_cell *c = &r->cells[l * nb + b];
            c->length = L->length;
            c->bin = b;
            c->n = c->correct = 0;
        }
    }
    for (int64_t i = 0; i < r->n_rows; i++) {
        const moa_longeval_row *w = &r->rows[i];
        int l = length_index(r, w->length);
        moa_longeval_cell *c = &r->cells[l * nb + w->bin];
        c->n++;
        c->correct += w->correct ? 1 : 0;
        r->lengths[l].n++;
        r->lengths[l].correct += w->correct ? 1 : 0;
        r->lengths[l].mean_prompt_tokens += w->prompt_tokens;
    }
    r->effective_length = 0;
    for (int l = 0; l < r->n_lengths; l++) {
        moa_longeval_length *L = &r->lengths[l];
        L->accuracy = L->n ? (double)L->correct / L->n : -1;
        L->mean_prompt_tokens = L->n ? L->mean_prompt_tokens / L->n : 0;
        for (int b = 0; b < nb; b++) {
            moa_longeval_cell *c = &r->cells[l * nb + b];
            c->accuracy = c->n ? (double)c->correct / c->n : -1;
        }
        if (L->n && L->accuracy >= r->threshold && L->length > r->effective_length)
            r->effective_length = L->length;
    }
    r->effective_length_rel = -1;
    if (r->reference_label) {
        r->effective_length_rel = 0;
        for (int l = 0; l < r->n_lengths; l++) {
            moa_longeval_length *L = &r->lengths[l];
            if (L->n && moa_longeval_holds(L->accuracy, L->ref_accuracy, r->threshold) &&
                L->length > r->effective_length_rel)
                r->effective_length_rel = L->length;
        }
    }
}

int moa_longeval_holds(double acc, double ref, double threshold) {
    return ref > 0 && acc >= threshold * ref;   /* false for NaN */
}

static moa_status results_alloc(const char *label, const char *settings, const int *lengths,
                                int n_lengths, int64_t n_rows, moa_longeval_results **out) {
    *out = NULL;
    if (!label || !lengths || n_lengths < 1 || n_rows < 0)
        return moa_err(MOA_ERR_INVALID_ARG, "longeval results: need a label and at least one length");
    for (int l = 0; l < n_lengths; l++) {
        if (lengths[l] < 1) return moa_err(MOA_ERR_INVALID_ARG, "lengths[%d] = %d: must be positive", l, lengths[l]);
        for (int j = 0; j < l; j++)
            if (lengths[j] == lengths[l])
                return moa_err(MOA_ERR_INVALID_ARG, "length %d appears twice in the length list", lengths[l]);
    }
    moa_longeval_results *r = calloc(1, sizeof *r);
    if (!r) return moa_err(MOA_ERR_NOMEM, "out of memory");
    r->threshold = MOA_LONGEVAL_THRESHOLD;
    r->effective_length_rel = -1;
    r->label = moa_strdup(label);
    r->settings = eval_canonical_json(settings, "settings");
    r->lengths = moa_calloc_array((size_t)n_lengths, sizeof *r->lengths);
    r->cells = moa_calloc_array((size_t)n_lengths * MOA_LONGEVAL_BINS, sizeof *r->cells);
    r->rows = moa_calloc_array(n_rows ? (size_t)n_rows : 1, sizeof *r->rows);
    if (!r->settings) { moa_longeval_results_free(r); return MOA_ERR_INVALID_ARG; }
    if (!r->label || !r->lengths || !r->cells || !r->rows) {
        moa_longeval_results_free(r);
        return moa_err(MOA_ERR_NOMEM, "out of memory");
    }
    r->n_lengths = n_lengths;
    for (int l = 0; l < n_lengths; l++) {
        r->lengths[l].length = lengths[l];
        r->lengths[l].ref_accuracy = -1;
    }
    *out = r;
    return MOA_OK;
}

/* Sort rows by (length index, bin, k) with insertion into place (rows are nearly ordered). */
static moa_status sort_and_check(moa_longeval_results *r) {
    for (int64_t i = 0; i < r->n_rows; i++) {
        const moa_longeval_row *w = &r->rows[i];
        if (length_index(r, w->length) < 0)
            return moa_err(MOA_ERR_INVALID_ARG, "sample %lld has length %d, which is not in the length list",
                           (long long)i, w->length);
        if (w->bin < 0 || w->bin >= MOA_LONGEVAL_BINS || w->k < 0)
            return moa_err(MOA_ERR_INVALID_ARG, "sample %lld: bin %d / k %d out of range", (long long)i, w->bin, w->k);
    }
    for (int64_t i = 1; i < r->n_rows; i++) {
        moa_longeval_row x = r->rows[i];
        int64_t j = i - 1;
        while (j >= 0 && row_cmp_key(r, &r->rows[j], &x) > 0) { r->rows[j + 1] = r->rows[j]; j--; }
        r->rows[j + 1] = x;
    }
    for (int64_t i = 1; i < r->n_rows; i++)
        if (row_cmp_key(r, &r->rows[i - 1], &r->rows[i]) == 0)
            return moa_err(MOA_ERR_INVALID_ARG, "two samples for length %d, bin %d, k %d", r->rows[i].length,
                           r->rows[i].bin, r->rows[i].k);
    return MOA_OK;
}

moa_status moa_longeval_results_create(const char *label, const char *settings, const int *lengths,
                                       int n_lengths, const moa_longeval_row *rows, int64_t n_rows,
                                       moa_longeval_results **out) {
    if (!out || (n_rows && !rows)) return moa_err(MOA_ERR_INVALID_ARG, "moa_longeval_results_create: NULL argument");
    moa_longeval_results *r;
    MOA_TRY(results_alloc(label, settings, lengths, n_lengths, n_rows, &r));
    for (int64_t i = 0; i < n_rows; i++) {
        r->rows[i] = rows[i];
        r->rows[i].expected = moa_strdup(rows[i].expected ? rows[i].expected : "");
        r->rows[i].output = moa_strdup(rows[i].output ? rows[i].output : "");
        r->n_rows = i + 1;
        if (!r->rows[i].expected || !r->rows[i].output) {
            moa_longeval_results_free(r);
            return moa_err(MOA_ERR_NOMEM, "out of memory");
        }
    }
    moa_status st = sort_and_check(r);
    if (st < 0) { moa_longeval_results_free(r); return st; }
    eval_aggregate(r);
    *out = r;
    return MOA_OK;
}

moa_status moa_longeval_set_reference(moa_longeval_results *r, const moa_longeval_results *ref) {
    if (!r || !ref) return moa_err(MOA_ERR_INVALID_ARG, "moa_longeval_set_reference: NULL argument");
    char *lab = moa_strdup(ref->label ? ref->label : "reference");
    if (!lab) return moa_err(MOA_ERR_NOMEM, "out of memory");
    free(r->reference_label);
    r->reference_label = lab;
    for (int l = 0; l < r->n_lengths; l++) {
        r->lengths[l].ref_accuracy = -1;
        for (int j = 0; j < ref->n_lengths; j++)
            if (ref->lengths[j].length == r->lengths[l].length && ref->lengths[j].n > 0)
                r->lengths[l].ref_accuracy = ref->lengths[j].accuracy;
    }
    eval_aggregate(r);
    return MOA_OK;
}

/* ---- JSON ---------------------------------------------------------------------------------- */
json_t *eval_row_to_json(const moa_longeval_row *w) {
    return json_pack("{s:i, s:i, s:i, s:I, s:i, s:I, s:i, s:i, s:s, s:s, s:i}",
                     "length", w->length, "bin", w->bin, "k", w->k, "seed", (json_int_t)w->seed,
                     "prompt_tokens", w->prompt_tokens, "lines", (json_int_t)w->lines,
                     "query_index", w->query_index, "new_tokens", w->new_tokens,
                     "expected", w->expected ? w->expected : "", "output", w->output ? w->output : "",
                     "correct", w->correct);
}

moa_status eval_row_from_json(json_t *o, moa_longeval_row *w, const char *where) {
    memset(w, 0, sizeof *w);
    json_int_t seed = 0, lines = 0;
    const char *exp = NULL, *outp = NULL;
    json_error_t e;
    if (!json_is_object(o) ||
        json_unpack_ex(o, &e, 0, "{s:i, s:i, s:i, s:I, s:i, s:I, s:i, s:i, s:s, s:s, s:i}",
                       "length", &w->length, "bin", &w->bin, "k", &w->k, "seed", &seed,
                       "prompt_tokens", &w->prompt_tokens, "lines", &lines,
                       "query_index", &w->query_index, "new_tokens", &w->new_tokens,
                       "expected", &exp, "output", &outp, "correct", &w->correct) != 0)
        return moa_err(MOA_ERR_FORMAT, "%s: bad sample row: %s", where, e.text);
    if (seed < 0 || seed > 0xffffffffLL || w->bin < 0 || w->bin >= MOA_LONGEVAL_BINS || w->k < 0 ||
        (w->correct != 0 && w->correct != 1))
        return moa_err(MOA_ERR_FORMAT, "%s: sample row field out of range (seed, bin, k or correct)", where);
    w->seed = (uint32_t)seed;
    w->lines = lines;
    w->expected = moa_strdup(exp);
    w->output = moa_strdup(outp);
    if (!w->expected || !w->output) { moa_longeval_row_clear(w); return moa_err(MOA_ERR_NOMEM, "out of memory"); }
    return MOA_OK;
}

static json_t *acc_json(int n, double acc) { return n ? json_real(acc) : json_null(); }

static json_t *results_to_json(const moa_longeval_results *r) {
    json_error_t e;
    json_t *settings = json_loads(r->settings, 0, &e);
    json_t *root = json_object(), *samples = json_array(), *cells = json_array(), *lens = json_array();
    if (!settings || !root || !samples || !cells || !lens) goto fail;
    json_object_set_new(root, "format", json_string(MOA_LONGEVAL_FORMAT));
    json_object_set_new(root, "version", json_integer(MOA_LONGEVAL_VERSION));
    json_object_set_new(root, "label", json_string(r->label));
    json_object_set_new(root, "settings", settings);
    settings = NULL;
    json_object_set_new(root, "threshold", json_real(r->threshold));
    json_object_set_new(root, "effective_context_length", json_integer(r->effective_length));
    if (r->reference_label) {
        json_object_set_new(root, "reference", json_string(r->reference_label));
        json_object_set_new(root, "effective_context_length_vs_reference", json_integer(r->effective_length_rel));
    }
    for (int l = 0; l < r->n_lengths; l++) {
        const moa_longeval_length *L = &r->lengths[l];
        json_t *o = json_pack("{s:i, s:i, s:i, s:o, s:f}", "length", L->length, "n", L->n,
                              "correct", L->correct, "accuracy", acc_json(L->n, L->accuracy),
                              "mean_prompt_tokens", L->mean_prompt_tokens);
        if (!o) goto fail;
        if (r->reference_label)
            json_object_set_new(o, "reference_accuracy", L->ref_accuracy >= 0 ? json_real(L->ref_accuracy) : json_null());
        json_array_append_new(lens, o);
        for (int b = 0; b < MOA_LONGEVAL_BINS; b++) {
            const moa_longeval_cell *c = &r->cells[l * MOA_LONGEVAL_BINS + b];
            json_t *co = json_pack("{s:i, s:i, s:i, s:i, s:o}", "length", c->length, "bin", c->bin,
                                   "n", c->n, "correct", c->correct, "accuracy", acc_json(c->n, c->accuracy));
            if (!co) goto fail;
            json_array_append_new(cells, co);
        }
    }
    for (int64_t i = 0; i < r->n_rows; i++) {
        json_t *o = eval_row_to_json(&r->rows[i]);
        if (!o) goto fail;
        json_array_append_new(samples, o);
    }
    json_object_set_new(root, "lengths", lens);
    json_object_set_new(root, "cells", cells);
    json_object_set_new(root, "samples", samples);
    return root;
fail:
    json_decref(settings);
    json_decref(root);
    json_decref(samples);
    json_decref(cells);
    json_decref(lens);
    return NULL;
}

moa_status moa_longeval_write_json(const moa_longeval_results *r, const char *path) {
    if (!r || !path) return moa_err(MOA_ERR_INVALID_ARG, "moa_longeval_write_json: NULL argument");
    json_t *root = results_to_json(r);
    if (!root) return moa_err(MOA_ERR_NOMEM, "out of memory building results JSON");
    char *text = json_dumps(root, JSON_INDENT(1) | JSON_PRESERVE_ORDER);
    json_decref(root);
    if (!text) return moa_err(MOA_ERR_NOMEM, "out of memory");
    moa_atomic_file af;
    moa_status st = moa_atomic_open(&af, path, "w");
    if (st < 0) { free(text); return st; }
    if (fputs(text, af.fp) == EOF || fputc('\n', af.fp) == EOF) {
        free(text);
        moa_atomic_abort(&af);
        return moa_err(MOA_ERR_IO, "cannot write '%s': %s", path, strerror(errno));
    }
    free(text);
    return moa_atomic_commit(&af);
}

moa_status moa_longeval_read_json(const char *path, moa_longeval_results **out) {
    if (!path || !out) return moa_err(MOA_ERR_INVALID_ARG, "moa_longeval_read_json: NULL argument");
    *out = NULL;
    json_error_t e;
    json_t *root = json_load_file(path, 0, &e);
    if (!root) return moa_err(MOA_ERR_FORMAT, "%s:%d: %s", path, e.line, e.text);
    moa_status st = MOA_OK;
    const char *format = NULL, *label = NULL;
    json_int_t version = 0;
    json_t *settings = NULL, *lens = NULL, *samples = NULL;
    int *lengths = NULL;
    moa_longeval_results *r = NULL;
    if (json_unpack_ex(root, &e, 0, "{s:s, s:I, s:s, s:o, s:o, s:o}", "format", &format, "version", &version,
                       "label", &label, "settings", &settings, "lengths", &lens, "samples", &samples) != 0) {
        st = moa_err(MOA_ERR_FORMAT, "%s: not a LongEval results file (%s)", path, e.text);
        goto out;
    }
    if (strcmp(format, MOA_LONGEVAL_FORMAT) != 0 || version != MOA_LONGEVAL_VERSION) {
        st = moa_err(MOA_ERR_FORMAT, "%s: format '%s' version %lld (expected %s v%d)", path, format,
                     (long long)version, MOA_LONGEVAL_FORMAT, MOA_LONGEVAL_VERSION);
        goto out;
    }
    if (!json_is_object(settings) || !json_is_array(lens) || !json_is_array(samples) || json_array_size(lens) == 0) {
        st = moa_err(MOA_ERR_FORMAT, "%s: settings must be an object, lengths and samples non-empty arrays", path);
        goto out;
    }
    size_t nl = json_array_size(lens), ns = json_array_size(samples);
    lengths = moa_alloc_array(nl, sizeof *lengths);
    if (!lengths) { st = moa_err(MOA_ERR_NOMEM, "out of memory"); goto out; }
    for (size_t l = 0; l < nl; l++) {
        json_t *len = json_object_get(json_array_get(lens, l), "length");
        if (!json_is_integer(len) || json_integer_value(len) < 1 || json_integer_value(len) > (1 << 30)) {
            st = moa_err(MOA_ERR_FORMAT, "%s: lengths[%zu].length must be a positive integer", path, l);
            goto out;
        }
        lengths[l] = (int)json_integer_value(len);
    }
    char *stext = json_dumps(settings, JSON_COMPACT | JSON_SORT_KEYS);
    if (!stext) { st = moa_err(MOA_ERR_NOMEM, "out of memory"); goto out; }
    st = results_alloc(label, stext, lengths, (int)nl, (int64_t)ns, &r);
    free(stext);
    if (st < 0) { st = moa_err_prefix(st, "%s", path); goto out; }
    for (size_t i = 0; i < ns; i++) {
        char where[64];
        snprintf(where, sizeof where, "samples[%zu]", i);
        if ((st = eval_row_from_json(json_array_get(samples, i), &r->rows[i], where)) < 0) {
            st = moa_err_prefix(st, "%s", path);
            goto out;
        }
        r->n_rows = (int64_t)i + 1;
    }
    if ((st = sort_and_check(r)) < 0) { st = moa_err_prefix(st, "%s", path); goto out; }
    const char *ref = NULL;
    if (json_unpack(root, "{s:s}", "reference", &ref) == 0) {
        r->reference_label = moa_strdup(ref);
        if (!r->reference_label) { st = moa_err(MOA_ERR_NOMEM, "out of memory"); goto out; }
        for (size_t l = 0; l < nl; l++) {
            json_t *ra = json_object_get(json_array_get(lens, l), "reference_accuracy");
            r->lengths[l].ref_accuracy = json_is_number(ra) ? json_number_value(ra) : -1;
        }
    }
    eval_aggregate(r);
    *out = r;
    r = NULL;
out:
    moa_longeval_results_free(r);
    free(lengths);
    json_decref(root);
    return st;
}

/* ---- CSV ----------------------------------------------------------------------------------- */
static void csv_str(FILE *fp, const char *s) {
    fputc('"', fp);
    for (; s && *s; s++) {
        if (*s == '"') fputc('"', fp);
        fputc(*s, fp);
    }
    fputc('"', fp);
}

static void csv_acc(FILE *fp, int n, double acc) {
    if (n) fprintf(fp, "%.6g", acc);
}

moa_status moa_longeval_write_csv(const moa_longeval_results *r, const char *prefix) {
    if (!r || !prefix) return moa_err(MOA_ERR_INVALID_ARG, "moa_longeval_write_csv: NULL argument");
    size_t n = strlen(prefix) + 16;
    char *path = malloc(n);
    if (!path) return moa_err(MOA_ERR_NOMEM, "out of memory");
    moa_atomic_file af;
    snprintf(path, n, "%s-samples.csv", prefix);
    moa_status st = moa_atomic_open(&af, path, "w");
    if (st < 0) { free(path); return st; }
    fprintf(af.fp, "label,length,bin,k,seed,prompt_tokens,lines,query_index,new_tokens,expected,output,correct\n");
    for (int64_t i = 0; i < r->n_rows; i++) {
        const moa_longeval_row *w = &r->rows[i];
        csv_str(af.fp, r->label);
        fprintf(af.fp, ",%d,%d,%d,%u,%d,%lld,%d,%d,", w->length, w->bin, w->k, w->seed, w->prompt_tokens,
                (long long)w->lines, w->query_index, w->new_tokens);
        csv_str(af.fp, w->expected);
        fputc(',', af.fp);
        csv_str(af.fp, w->output);
        fprintf(af.fp, ",%d\n", w->correct);
    }
    if (ferror(af.fp)) { moa_atomic_abort(&af); st = moa_err(MOA_ERR_IO, "cannot write '%s'", path); goto out; }
    if ((st = moa_atomic_commit(&af)) < 0) goto out;
    snprintf(path, n, "%s-cells.csv", prefix);
    if ((st = moa_atomic_open(&af, path, "w")) < 0) goto out;
    fprintf(af.fp, "label,length,bin,n,correct,accuracy,reference_accuracy\n");
    for (int l = 0; l < r->n_lengths; l++) {
        const moa_longeval_length *L = &r->lengths[l];
        for (int b = 0; b < MOA_LONGEVAL_BINS; b++) {
            const moa_longeval_cell *c = &r->cells[l * MOA_LONGEVAL_BINS + b];
            csv_str(af.fp, r->label);
            fprintf(af.fp, ",%d,%d,%d,%d,", c->length, c->bin, c->n, c->correct);
            csv_acc(af.fp, c->n, c->accuracy);
            fprintf(af.fp, ",\n");
        }
        csv_str(af.fp, r->label);
        fprintf(af.fp, ",%d,all,%d,%d,", L->length, L->n, L->correct);
        csv_acc(af.fp, L->n, L->accuracy);
        fputc(',', af.fp);
        if (L->ref_accuracy >= 0) fprintf(af.fp, "%.6g", L->ref_accuracy);
        fputc('\n', af.fp);
    }
    if (ferror(af.fp)) { moa_atomic_abort(&af); st = moa_err(MOA_ERR_IO, "cannot write '%s'", path); goto out; }
    st = moa_atomic_commit(&af);
out:
    free(path);
    return st;
}
