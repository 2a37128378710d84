/* stage-ledger.c - time per compress stage across runs (stage-ledger.h).
 *
 * File (text, one stage per line after the header):
 *   # moa compress stage times v1
 *   <seconds>\t<runs>\t<stage name>
 * seconds: finite, >= 0; runs: integer >= 0; name: 1..63 bytes, no tab or control bytes. */
#include "stage-ledger.h"
#include "moa/common.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define LEDGER_HEADER "# moa compress stage times v1"
#define MOA_LEDGER_WORK_S 2.0   /* a run "worked" on a stage when it spent more than this */

static int find(const moa_stage_ledger *lg, const char *name) {
    for (int i = 0; i < lg->n; i++)
        if (!strcmp(lg->row[i].name, name)) return i;
    return -1;
}

static int name_ok(const char *s, size_t n) {
    if (n == 0 || n >= MOA_LEDGER_NAME_MAX) return 0;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f) return 0;
    return 1;
}

/* One line "<seconds>\t<runs>\t<name>" into a new row; 0 if it is not one. */
static int parse_line(moa_stage_ledger *lg, const char *line, size_t len) {
    char buf[256];
    if (len >= sizeof buf || lg->n >= MOA_LEDGER_MAX_STAGES) return 0;
    memcpy(buf, line, len);
    buf[len] = '\0';
    char *t1 = strchr(buf, '\t'), *t2 = t1 ? strchr(t1 + 1, '\t') : NULL;
    if (!t1 || !t2) return 0;
    *t1 = *t2 = '\0';
    char *end;
    errno = 0;
    double s = strtod(buf, &end);
    if (end == buf || *end || errno || !isfinite(s) || s < 0) return 0;
    long r = strtol(t1 + 1, &end, 10);
    if (end == t1 + 1 || *end || errno || r < 0 || r > 1000000000L) return 0;
    const char *name = t2 + 1;
    if (!name_ok(name, strlen(name)) || find(lg, name) >= 0) return 0;
    moa_ledger_row *w = &lg->row[lg->n++];
    memset(w, 0, sizeof *w);
    snprintf(w->name, sizeof w->name, "%s", name);
    w->seconds = s;
    w->runs = (int)r;
    return 1;
}

static void load(moa_stage_ledger *lg) {
    char *text = NULL;
    size_t n = 0;
    if (!moa_file_exists(lg->path)) return;
    if (moa_read_file(lg->path, &text, &n) < 0) {
        moa_log_warn("%s: unreadable (%s); stage times start over", lg->path, moa_last_error());
        return;
    }
    size_t hl = strlen(LEDGER_HEADER);
    if (n < hl || memcmp(text, LEDGER_HEADER, hl) || (n > hl && text[hl] != '\n')) {
        moa_log_warn("%s: not a stage-times file (first line is not \"%s\"); stage times start over", lg->path,
                     LEDGER_HEADER);
        free(text);
        return;
    }
    int bad = 0;
    for (size_t i = hl + (n > hl), line = 2; i < n; line++) {
        size_t e = i;
        while (e < n && text[e] != '\n') e++;
        if (e > i && !parse_line(lg, text + i, e - i)) {
            if (!bad) moa_log_warn("%s:%zu: expected \"<seconds>\\t<runs>\\t<stage>\"; line dropped", lg->path, line);
            bad = 1;
        }
        i = e + 1;
    }
    free(text);
}

int moa_ledger_open(moa_stage_ledger *lg, const char *path) {
    memset(lg, 0, sizeof *lg);
    lg->cur = -1;
    lg->since = lg->saved = moa_time_now();
    if (path) {
        lg->path = moa_strdup(path);
        if (!lg->path) return -1;
        load(lg);
    }
    return 0;
}

static void save(moa_stage_ledger *lg) {
    lg->saved = moa_time_now();
    if (!lg->path) return;
    moa_atomic_file af;
    if (moa_atomic_open(&af, lg->path, "wb") < 0) goto fail;
    fprintf(af.fp, "%s\n", LEDGER_HEADER);
    for (int i = 0; i < lg->n; i++) fprintf(af.fp, "%.3f\t%d\t%s\n", lg->row[i].seconds, lg->row[i].runs, lg->row[i].name);
    if (ferror(af.fp)) { moa_atomic_abort(&af); goto fail; }
    if (moa_atomic_commit(&af) < 0) goto fail;
    return;
fail:
    moa_log_warn("%s: stage times not written (%s)", lg->path, moa_last_error());
}

void moa_ledger_flush(moa_stage_ledger *lg, int force) {
    double now = moa_time_now();
    if (lg->cur >= 0) {
        moa_ledger_row *r = &lg->row[lg->cur];
        double before = r->this_run;
        r->this_run += now - lg->since;
        r->seconds += now - lg->since;
        if (before <= MOA_LEDGER_WORK_S && r->this_run > MOA_LEDGER_WORK_S) r->runs++;
    }
    lg->since = now;
    if (force || now - lg->saved >= MOA_LEDGER_FLUSH_S) save(lg);
}

void moa_ledger_enter(moa_stage_ledger *lg, const char *name) {
    moa_ledger_flush(lg, 0);
    int i = find(lg, name);
    if (i < 0 && lg->n < MOA_LEDGER_MAX_STAGES && name_ok(name, strlen(name))) {
        i = lg->n++;
        memset(&lg->row[i], 0, sizeof lg->row[i]);
        snprintf(lg->row[i].name, sizeof lg->row[i].name, "%s", name);
    }
    lg->cur = i;
    save(lg);
}

void moa_ledger_restart(moa_stage_ledger *lg) {
    if (lg->cur < 0) return;
    moa_ledger_flush(lg, 0);
    moa_ledger_row *r = &lg->row[lg->cur];
    r->seconds = r->this_run;
    r->runs = r->this_run > MOA_LEDGER_WORK_S;
    save(lg);
}

const moa_ledger_row *moa_ledger_find(const moa_stage_ledger *lg, const char *name) {
    int i = find(lg, name);
    return i < 0 ? NULL : &lg->row[i];
}

void moa_ledger_close(moa_stage_ledger *lg) {
    if (lg->path || lg->n) moa_ledger_flush(lg, 1);
    free(lg->path);
    memset(lg, 0, sizeof *lg);
    lg->cur = -1;
}
