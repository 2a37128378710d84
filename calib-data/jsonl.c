/* jsonl.c - JSONL import of user corpora (one object per line with a context and an
 * instruction); every error names the source, the 1-based line and the field. */
#include "calib-internal.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

struct moa_jsonl_corpus {
    char **context, **instruction;
    int *line;
    size_t n, cap;
    char *source, *tpl;
};

moa_jsonl_params moa_jsonl_default_params(void) {
    moa_jsonl_params p = {"context", "instruction", "{context}\n\n{instruction}"};
    return p;
}

const char *calib_jsonl_template(const moa_jsonl_corpus *c) { return c->tpl; }

size_t moa_jsonl_count(const moa_jsonl_corpus *c) { return c ? c->n : 0; }
const char *moa_jsonl_context(const moa_jsonl_corpus *c, size_t i) { return i < c->n ? c->context[i] : NULL; }
const char *moa_jsonl_instruction(const moa_jsonl_corpus *c, size_t i) { return i < c->n ? c->instruction[i] : NULL; }
int moa_jsonl_line(const moa_jsonl_corpus *c, size_t i) { return i < c->n ? c->line[i] : -1; }
const char *moa_jsonl_source(const moa_jsonl_corpus *c) { return c ? c->source : ""; }

void moa_jsonl_free(moa_jsonl_corpus *c) {
    if (!c) return;
    for (size_t i = 0; i < c->n; i++) { free(c->context[i]); free(c->instruction[i]); }
    free(c->context); free(c->instruction); free(c->line); free(c->source); free(c->tpl);
    free(c);
}

static int grow(moa_jsonl_corpus *c) {
    if (c->n < c->cap) return 1;
    size_t cap = c->cap ? 2 * c->cap : 64;
    char **a = realloc(c->context, cap * sizeof *a);
    if (!a) return 0;
    c->context = a;
    char **b = realloc(c->instruction, cap * sizeof *b);
    if (!b) return 0;
    c->instruction = b;
    int *l = realloc(c->line, cap * sizeof *l);
    if (!l) return 0;
    c->line = l;
    c->cap = cap;
    return 1;
}

static int blank(const char *s, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (!(s[i] == ' ' || s[i] == '\t' || s[i] == '\r' || s[i] == '\n')) return 0;
    return 1;
}

/* Gets a string field; fills *out (borrowed) or sets the error. */
static moa_status get_field(json_t *obj, const char *field, const char *name, int line,
                            int need_nonempty, const char **out) {
    json_t *v = json_object_get(obj, field);
    if (!v)
        return moa_err(MOA_ERR_FORMAT, "%s:%d: missing field \"%s\"", name, line, field);
    if (!json_is_string(v))
        return moa_err(MOA_ERR_FORMAT, "%s:%d: field \"%s\" must be a string", name, line, field);
    const char *s = json_string_value(v);
    if (need_nonempty && blank(s, json_string_length(v)))
        return moa_err(MOA_ERR_FORMAT, "%s:%d: field \"%s\" is empty", name, line, field);
    *out = s;
    return MOA_OK;
}

moa_status moa_jsonl_parse(const char *data, size_t len, const char *name,
                           const moa_jsonl_params *pp, moa_jsonl_corpus **out) {
    if (!out || (!data && len)) return moa_err(MOA_ERR_INVALID_ARG, "moa_jsonl_parse: NULL argument");
    *out = NULL;
    moa_jsonl_params p = pp ? *pp : moa_jsonl_default_params();
    if (!p.context_field || !p.instruction_field || !p.prompt_template)
        return moa_err(MOA_ERR_INVALID_ARG, "jsonl params: NULL field name or template");
    if (!strstr(p.prompt_template, "{context}"))
        return moa_err(MOA_ERR_INVALID_ARG, "jsonl prompt template has no {context}");
    if (!name) name = "(jsonl)";
    moa_jsonl_corpus *c = calloc(1, sizeof *c);
    if (!c || !(c->source = moa_strdup(name)) || !(c->tpl = moa_strdup(p.prompt_template))) {
        moa_jsonl_free(c);
        return moa_err(MOA_ERR_NOMEM, "out of memory reading '%s'", name);
    }
    moa_status st = MOA_OK;
    int line = 0;
    size_t start = 0;
    while (start < len && st >= 0) {
        line++;
        const char *nl = memchr(data + start, '\n', len - start);
        size_t end = nl ? (size_t)(nl - data) : len;
        const char *s = data + start;
        size_t n = end - start;
        start = end + 1;
        if (blank(s, n)) continue;
        long bad = calib_utf8_check(s, n);
        if (bad >= 0) {
            st = moa_err(MOA_ERR_FORMAT, "%s:%d: invalid UTF-8 at byte %ld of the line", name, line, bad + 1);
            break;
        }
        json_error_t jerr;
        json_t *obj = json_loadb(s, n, JSON_REJECT_DUPLICATES, &jerr);
        if (!obj) {
            st = moa_err(MOA_ERR_FORMAT, "%s:%d: invalid JSON at column %d: %s", name, line,
                         jerr.column, jerr.text);
            break;
        }
        if (!json_is_object(obj)) {
            json_decref(obj);
            st = moa_err(MOA_ERR_FORMAT, "%s:%d: a record must be a JSON object", name, line);
            break;
        }
        const char *ctx = NULL, *ins = NULL;
        st = get_field(obj, p.context_field, name, line, 1, &ctx);
        if (st >= 0) st = get_field(obj, p.instruction_field, name, line, 0, &ins);
        if (st >= 0) {
            if (!grow(c)) {
                st = moa_err(MOA_ERR_NOMEM, "out of memory reading '%s'", name);
            } else {
                c->context[c->n] = moa_strdup(ctx);
                c->instruction[c->n] = moa_strdup(ins);
                c->line[c->n] = line;
                c->n++;
                if (!c->context[c->n - 1] || !c->instruction[c->n - 1])
                    st = moa_err(MOA_ERR_NOMEM, "out of memory reading '%s'", name);
            }
        }
        json_decref(obj);
    }
    if (st >= 0 && c->n == 0) st = moa_err(MOA_ERR_FORMAT, "%s: no records", name);
    if (st < 0) { moa_jsonl_free(c); return st; }
    *out = c;
    return MOA_OK;
}

moa_status moa_jsonl_load(const char *path, const moa_jsonl_params *p, moa_jsonl_corpus **out) {
    char *data;
    size_t len;
    MOA_TRY(moa_read_file(path, &data, &len));
    moa_status st = moa_jsonl_parse(data, len, path, p, out);
    free(data);
    return st;
}
