/* longeval.c - the LongEval lines runner: seeded samples per (length, bin, k), fitted to the
 * length with the model's tokenizer, answered greedily, scored, one fsync'ed JSONL line per
 * finished sample in the results log, resume from a log whose header matches.
 *
 * Results log (text, one JSON object per line):
 *   line 1: {"format":"moa-longeval-log","version":1,"label":...,"settings":{...}}
 *   then one sample row per line (the results JSON's sample objects plus "seconds").
 * A last line without its '\n' or that does not parse is a torn write: it is cut off on
 * resume. Any other bad line is an error naming the line. */
#include "eval-internal.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define LOG_FORMAT "moa-longeval-log"

moa_longeval_params moa_longeval_default_params(void) {
    const moa_longeval_params p = {.samples_per_cell = 2, .max_new_tokens = 100,
                                   .fit = moa_fit_default_params(), .value_max = 50000};
    return p;
}

static uint64_t mix64(uint64_t x) {
    x += 0x9e3779b97f4a7c15ULL;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
    return x ^ (x >> 31);
}

uint32_t moa_longeval_sample_seed(uint64_t seed, int length, int bin, int k) {
    uint64_t x = mix64(0x6c6f6e676576616cULL ^ mix64(seed));   /* "longeval" */
    x = mix64(x ^ (uint64_t)(uint32_t)length);
    x = mix64(x ^ (uint64_t)(uint32_t)bin);
    x = mix64(x ^ (uint64_t)(uint32_t)k);
    return (uint32_t)(x ^ (x >> 32));
}

/* The settings object recorded in the log header and the results. */
static char *settings_json(const moa_longeval_params *p) {
    json_t *o = json_object(), *lens = json_array(), *model = NULL;
    if (!o || !lens) { json_decref(o); json_decref(lens); return NULL; }
    for (int l = 0; l < p->n_lengths; l++) json_array_append_new(lens, json_integer(p->lengths[l]));
    json_object_set_new(o, "task", json_string(p->task ? p->task : "lines"));
    json_object_set_new(o, "lengths", lens);
    json_object_set_new(o, "bins", json_integer(MOA_LONGEVAL_BINS));
    json_object_set_new(o, "samples_per_cell", json_integer(p->samples_per_cell));
    json_object_set_new(o, "seed", json_integer((json_int_t)p->seed));
    json_object_set_new(o, "max_new_tokens", json_integer(p->max_new_tokens));
    json_object_set_new(o, "value_max", json_integer(p->value_max));
    json_object_set_new(o, "fit", json_pack("{s:i, s:f, s:I}", "tolerance_abs", p->fit.tolerance_abs,
                                            "tolerance_rel", p->fit.tolerance_rel,
                                            "max_size", (json_int_t)p->fit.max_size));
    json_object_set_new(o, "words", json_pack("{s:s, s:I, s:s}", "source", moa_wordlist_source(p->words),
                                              "count", (json_int_t)moa_wordlist_count(p->words),
                                              "sha256", moa_wordlist_sha256(p->words)));
    if (p->model_settings) {
        json_error_t e;
        model = json_loads(p->model_settings, 0, &e);
        if (!json_is_object(model)) {
            json_decref(model);
            json_decref(o);
            moa_err(MOA_ERR_INVALID_ARG, "model_settings is not a JSON object");
            return NULL;
        }
        json_object_set_new(o, "model", model);
    }
    char *s = json_dumps(o, JSON_COMPACT | JSON_SORT_KEYS);
    json_decref(o);
    if (!s) moa_err(MOA_ERR_NOMEM, "out of memory");
    return s;
}

/* First key path where two JSON values differ ("settings.lengths", ...), into buf. */
static void first_diff(json_t *a, json_t *b, const char *path, char *buf, size_t n) {
    if (json_is_object(a) && json_is_object(b)) {
        const char *key;
        json_t *v;
        json_object_foreach(a, key, v) {
            char sub[256];
            snprintf(sub, sizeof sub, "%s.%s", path, key);
            json_t *w = json_object_get(b, key);
            if (!w) { snprintf(buf, n, "%s (only in the log)", sub); return; }
            if (!json_equal(v, w)) { first_diff(v, w, sub, buf, n); return; }
        }
        json_object_foreach(b, key, v) {
            if (!json_object_get(a, key)) { snprintf(buf, n, "%s.%s (only in this run)", path, key); return; }
        }
    }
    snprintf(buf, n, "%s", path);
}

static char *header_line(const moa_longeval_params *p, const char *settings) {
    json_error_t e;
    json_t *s = json_loads(settings, 0, &e);
    json_t *h = s ? json_pack("{s:s, s:i, s:s, s:o}", "format", LOG_FORMAT, "version", MOA_LONGEVAL_VERSION,
                              "label", p->label, "settings", s) : NULL;
    if (!h) return NULL;
    char *text = json_dumps(h, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(h);
    return text;
}

static moa_status write_line(FILE *fp, const char *text, const char *path) {
    if (fputs(text, fp) == EOF || fputc('\n', fp) == EOF || fflush(fp) != 0 || fsync(fileno(fp)) != 0)
        return moa_err(MOA_ERR_IO, "cannot write results log '%s': %s", path, strerror(errno));
    return MOA_OK;
}

/* Index of row (l, bin, k) in the grid: l-major, then k, then bin (the run order). */
static int64_t grid_index(const moa_longeval_params *p, int l, int bin, int k) {
    return ((int64_t)l * p->samples_per_cell + k) * MOA_LONGEVAL_BINS + bin;
}

static int find_length(const moa_longeval_params *p, int length) {
    for (int l = 0; l < p->n_lengths; l++)
        if (p->lengths[l] == length) return l;
    return -1;
}

/* Opens the log: a new one (header written) or, with resume, a matching one whose rows are
 * loaded into rows[]/done[]. */
static moa_status log_open(const moa_longeval_params *p, const char *settings, moa_longeval_row *rows,
                           uint8_t *done, int64_t *n_done, FILE **out) {
    const char *path = p->log_path;
    *out = NULL;
    *n_done = 0;
    char *header = header_line(p, settings);
    if (!header) return moa_err(MOA_ERR_NOMEM, "out of memory");
    moa_status st = MOA_OK;
    char *data = NULL;
    json_t *h = NULL, *mine = NULL;
    if (p->resume && moa_file_exists(path)) {
        size_t len = 0;
        if ((st = moa_read_file(path, &data, &len)) < 0) goto out;
        char *nl = memchr(data, '\n', len);
        json_error_t e;
        if (!nl || !(h = json_loadb(data, (size_t)(nl - data), 0, &e)) ||
            !json_is_object(h) || !json_object_get(h, "format") ||
            strcmp(json_string_value(json_object_get(h, "format")) ? json_string_value(json_object_get(h, "format")) : "", LOG_FORMAT) != 0) {
            st = moa_err(MOA_ERR_FORMAT, "%s:1: not a LongEval results log header; delete the file to start over", path);
            goto out;
        }
        mine = json_loads(header, 0, &e);
        if (!mine) { st = moa_err(MOA_ERR_NOMEM, "out of memory"); goto out; }
        if (!json_equal(h, mine)) {
            char diff[512];
            first_diff(h, mine, "header", diff, sizeof diff);
            st = moa_err(MOA_ERR_MISMATCH, "%s:1: the results log was written with different settings "
                         "(first difference: %s); rerun with the same settings, or delete the log "
                         "(or omit --resume) to start over", path, diff);
            goto out;
        }
        size_t good = (size_t)(nl - data) + 1;
        int line = 1;
        for (size_t pos = good; pos < len;) {
            line++;
            char *end = memchr(data + pos, '\n', len - pos);
            json_t *o = end ? json_loadb(data + pos, (size_t)(end - (data + pos)), 0, &e) : NULL;
            size_t next = end ? (size_t)(end - data) + 1 : len;
            if (!o) {
                if (next >= len) break;  /* torn last line */
                st = moa_err(MOA_ERR_FORMAT, "%s:%d: not a JSON sample row", path, line);
                goto out;
            }
            char where[300];
            snprintf(where, sizeof where, "%s:%d", path, line);
            moa_longeval_row w;
            st = eval_row_from_json(o, &w, where);
            json_decref(o);
            if (st < 0) goto out;
            int l = find_length(p, w.length);
            if (l < 0 || w.k >= p->samples_per_cell) {
                moa_longeval_row_clear(&w);
                st = moa_err(MOA_ERR_FORMAT, "%s: sample (length %d, k %d) is outside this run's grid", where,
                             w.length, w.k);
                goto out;
            }
            int64_t i = grid_index(p, l, w.bin, w.k);
            if (done[i]) moa_longeval_row_clear(&rows[i]);
            else (*n_done)++;
            rows[i] = w;
            done[i] = 1;
            pos = good = next;
        }
        if (truncate(path, (off_t)good) != 0) {
            st = moa_err(MOA_ERR_IO, "cannot truncate results log '%s': %s", path, strerror(errno));
            goto out;
        }
        *out = fopen(path, "ab");
        if (!*out) st = moa_err(MOA_ERR_IO, "cannot append to results log '%s': %s", path, strerror(errno));
        goto out;
    }
    FILE *fp = fopen(path, "wb");
    if (!fp) { st = moa_err(MOA_ERR_IO, "cannot create results log '%s': %s", path, strerror(errno)); goto out; }
    if ((st = write_line(fp, header, path)) < 0) { fclose(fp); goto out; }
    *out = fp;
out:
    json_decref(h);
    json_decref(mine);
    free(data);
    free(header);
    return st;
}

/* The generator of an evaluation task name (see moa_longeval_params.task). */
static moa_status eval_task_spec(const char *task, moa_task_spec *spec) {
    static const struct { const char *name; moa_task_kind kind; moa_needle_variant v; } tasks[] = {
        {"lines", MOA_TASK_LINES, MOA_NEEDLE_SINGLE},
        {"needle", MOA_TASK_NEEDLE, MOA_NEEDLE_SINGLE},
        {"needle-single", MOA_TASK_NEEDLE, MOA_NEEDLE_SINGLE},
        {"needle-multikey", MOA_TASK_NEEDLE, MOA_NEEDLE_MULTIKEY},
        {"needle-multivalue", MOA_TASK_NEEDLE, MOA_NEEDLE_MULTIVALUE},
        {"needle-multiquery", MOA_TASK_NEEDLE, MOA_NEEDLE_MULTIQUERY},
    };
    for (size_t i = 0; i < sizeof tasks / sizeof tasks[0]; i++) {
        if (strcmp(task ? task : "lines", tasks[i].name)) continue;
        *spec = moa_task_spec_default(tasks[i].kind);
        spec->needle_variant = tasks[i].v;
        return MOA_OK;
    }
    return moa_err(MOA_ERR_INVALID_ARG, "evaluation task '%s' is not one of lines, needle, needle-multikey, "
                   "needle-multivalue, needle-multiquery", task);
}

moa_status moa_longeval_task_check(const char *task) {
    moa_task_spec spec;
    return eval_task_spec(task, &spec);
}

/* Generates, fits, answers and scores sample (l, bin, k). */
static moa_status run_sample(const moa_longeval_params *p, const moa_eval_model *m, int l, int bin, int k,
                             moa_longeval_row *w) {
    int L = p->lengths[l];
    memset(w, 0, sizeof *w);
    moa_task_spec spec;
    int lines = !p->task || !strcmp(p->task, "lines");
    moa_status st = eval_task_spec(p->task, &spec);
    if (st < 0) return st;
    spec.words = p->words;
    spec.lines_value_max = p->value_max;
    spec.position_bin = bin;
    uint32_t seed = moa_longeval_sample_seed(p->seed, L, bin, k);
    moa_task_sample ts;
    int n_fit = 0;
    int32_t *pid = NULL, *rid = NULL;
    int np = 0, nr = 0;
    char *text = NULL;
    memset(&ts, 0, sizeof ts);
    st = moa_task_fit(&spec, seed, -1, L, m->tok.count_tokens, m->tok.data, &p->fit, &ts, &n_fit);
    if (st < 0) goto out;
    st = m->tok.encode_prompt(m->tok.data, ts.prompt, strlen(ts.prompt), &pid, &np);
    if (st >= 0 && np < 1) st = moa_err(MOA_ERR_INTERNAL, "encode_prompt returned no tokens");
    if (st >= 0) st = m->respond(m->data, pid, np, p->max_new_tokens, &rid, &nr);
    if (st >= 0 && (nr < 0 || nr > p->max_new_tokens + 1))
        st = moa_err(MOA_ERR_INTERNAL, "responder returned %d tokens (max %d)", nr, p->max_new_tokens);
    if (st >= 0) st = m->tok.detokenize(m->tok.data, rid, nr, &text);
    if (st < 0) goto out;
    w->length = L;
    w->bin = bin;
    w->k = k;
    w->seed = seed;
    w->prompt_tokens = np;
    w->lines = ts.size;
    w->query_index = ts.query_index;
    w->new_tokens = nr;
    w->expected = moa_strdup(ts.expected ? ts.expected : "");
    w->output = moa_strdup(text ? text : "");
    if (!w->expected || !w->output) { moa_longeval_row_clear(w); st = moa_err(MOA_ERR_NOMEM, "out of memory"); goto out; }
    w->correct = lines ? (moa_score_lines(w->output, w->expected) ? 1 : 0)
                       : (moa_score_task(ts.task, w->output, w->expected) >= 1.0 ? 1 : 0);
out:
    if (st < 0) st = moa_err_prefix(st, "longeval sample (length %d, bin %d, k %d)", L, bin, k);
    moa_task_sample_clear(&ts);
    free(pid);
    free(rid);
    free(text);
    return st;
}

moa_status moa_longeval_run(const moa_longeval_params *p, const moa_eval_model *m,
                            moa_progress_fn progress, void *progress_data,
                            moa_longeval_results **out) {
    if (!p || !m || !out || !m->respond || !m->tok.count_tokens || !m->tok.encode_prompt || !m->tok.detokenize)
        return moa_err(MOA_ERR_INVALID_ARG, "moa_longeval_run: NULL argument (params, model callbacks "
                       "count_tokens/encode_prompt/detokenize/respond and out are required)");
    *out = NULL;
    if (!p->lengths || p->n_lengths < 1 || p->samples_per_cell < 1 || p->max_new_tokens < 1 || !p->words ||
        !p->label || !p->log_path || p->value_max < 1)
        return moa_err(MOA_ERR_INVALID_ARG, "moa_longeval_run: need lengths, samples_per_cell >= 1, "
                       "max_new_tokens >= 1, a word list, a label and a log path");
    if (p->collect_only && (!p->resume || !moa_file_exists(p->log_path)))
        return moa_err(MOA_ERR_INVALID_ARG, "collect_only needs resume = 1 and an existing results log "
                       "('%s')", p->log_path);
    for (int l = 0; l < p->n_lengths; l++) {
        if (p->lengths[l] < 16) return moa_err(MOA_ERR_INVALID_ARG, "length %d: must be at least 16 tokens", p->lengths[l]);
        for (int j = 0; j < l; j++)
            if (p->lengths[j] == p->lengths[l])
                return moa_err(MOA_ERR_INVALID_ARG, "length %d appears twice", p->lengths[l]);
    }
    MOA_TRY(moa_longeval_task_check(p->task));
    int64_t n = (int64_t)p->n_lengths * p->samples_per_cell * MOA_LONGEVAL_BINS;
    /* a log this run creates is removed again if the run fails before its first row */
    int new_log = !(p->resume && moa_file_exists(p->log_path));
    char *settings = settings_json(p);
    if (!settings) return MOA_ERR_NOMEM;
    moa_longeval_row *rows = moa_calloc_array((size_t)n, sizeof *rows);
    uint8_t *done = moa_calloc_array((size_t)n, 1);
    FILE *fp = NULL;
    moa_status st = MOA_OK;
    int created = 0;            /* this run wrote a new log */
    int64_t fresh_rows = 0;     /* rows this run appended */
    if (!rows || !done) { st = moa_err(MOA_ERR_NOMEM, "out of memory"); goto out; }
    int64_t n_done = 0;
    if ((st = log_open(p, settings, rows, done, &n_done, &fp)) < 0) goto out;
    created = new_log;
    if (n_done) moa_log_info("longeval: resuming from '%s' with %lld of %lld samples done", p->log_path,
                             (long long)n_done, (long long)n);
    int64_t todo = n - n_done, fresh = 0;
    double tokens = 0;
    if (progress) progress(progress_data, 0, (double)todo, 0, "tok");
    for (int l = 0; l < p->n_lengths && !p->collect_only; l++) {
        int started = 0;
        for (int k = 0; k < p->samples_per_cell; k++) {
            for (int bin = 0; bin < MOA_LONGEVAL_BINS; bin++) {
                int64_t i = grid_index(p, l, bin, k);
                if (done[i]) continue;
                if (!started && m->begin_length) {
                    if ((st = m->begin_length(m->data, p->lengths[l], p->lengths[l] + p->max_new_tokens)) < 0) {
                        st = moa_err_prefix(st, "length %d", p->lengths[l]);
                        goto out;
                    }
                }
                started = 1;
                double t0 = moa_time_now();
                if ((st = run_sample(p, m, l, bin, k, &rows[i])) < 0) goto out;
                json_t *o = eval_row_to_json(&rows[i]);
                if (o) json_object_set_new(o, "seconds", json_real(moa_time_now() - t0));
                char *line = o ? json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
                json_decref(o);
                if (!line) { st = moa_err(MOA_ERR_NOMEM, "out of memory"); goto out; }
                st = write_line(fp, line, p->log_path);
                free(line);
                if (st < 0) goto out;
                done[i] = 1;
                fresh++;
                fresh_rows++;
                tokens += rows[i].prompt_tokens + rows[i].new_tokens;
                if (progress) progress(progress_data, (double)fresh, (double)todo, tokens, "tok");
            }
        }
    }
    fclose(fp);
    fp = NULL;
    /* the finished rows (all of them unless collect_only stopped early), in grid order */
    int64_t m_done = 0;
    for (int64_t i = 0; i < n; i++)
        if (done[i]) rows[m_done++] = rows[i];
    for (int64_t i = m_done; i < n; i++) memset(&rows[i], 0, sizeof rows[i]);
    st = moa_longeval_results_create(p->label, settings, p->lengths, p->n_lengths, rows, m_done, out);
out:
    if (fp) fclose(fp);
    if (st < 0 && created && fresh_rows == 0) remove(p->log_path);
    if (rows)
        for (int64_t i = 0; i < n; i++) moa_longeval_row_clear(&rows[i]);
    free(rows);
    free(done);
    free(settings);
    return st;
}
