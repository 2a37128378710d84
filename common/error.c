/* error.c - status strings, thread-local error messages, the log callback. */
#include "moa/common.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MOA_ERRMSG_CAP 1024
static _Thread_local char g_errmsg[MOA_ERRMSG_CAP];

static moa_log_fn g_log_fn;
static void *g_log_data;

const char *moa_status_str(moa_status st) {
    switch (st) {
    case MOA_OK:              return "MOA_OK: success";
    case MOA_ERR_INVALID_ARG: return "MOA_ERR_INVALID_ARG: invalid argument";
    case MOA_ERR_NOMEM:       return "MOA_ERR_NOMEM: out of memory";
    case MOA_ERR_IO:          return "MOA_ERR_IO: input/output error";
    case MOA_ERR_FORMAT:      return "MOA_ERR_FORMAT: malformed file";
    case MOA_ERR_UNSUPPORTED: return "MOA_ERR_UNSUPPORTED: not supported";
    case MOA_ERR_INFEASIBLE:  return "MOA_ERR_INFEASIBLE: problem is infeasible";
    case MOA_ERR_SOLVER:      return "MOA_ERR_SOLVER: solver failure";
    case MOA_ERR_MISMATCH:    return "MOA_ERR_MISMATCH: inputs do not match";
    case MOA_ERR_DEVICE:      return "MOA_ERR_DEVICE: device unavailable";
    case MOA_ERR_INTERRUPTED: return "MOA_ERR_INTERRUPTED: interrupted";
    case MOA_ERR_INTERNAL:    return "MOA_ERR_INTERNAL: internal error";
    case MOA_ERR_RANGE:       return "MOA_ERR_RANGE: value out of range";
    }
    return "MOA_ERR_?: unknown status";
}

const char *moa_last_error(void) { return g_errmsg; }

void moa_err_clear(void) { g_errmsg[0] = '\0'; }

moa_status moa_err(moa_status st, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(g_errmsg, sizeof g_errmsg, fmt, ap);
    va_end(ap);
    return st;
}

moa_status moa_err_prefix(moa_status st, const char *fmt, ...) {
    char prev[MOA_ERRMSG_CAP];
    char head[MOA_ERRMSG_CAP];
    memcpy(prev, g_errmsg, sizeof prev);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(head, sizeof head, fmt, ap);
    va_end(ap);
    size_t hn = strlen(head);
    memcpy(g_errmsg, head, hn + 1);
    if (prev[0] && hn + 2 < sizeof g_errmsg) {
        memcpy(g_errmsg + hn, ": ", 3);
        size_t room = sizeof g_errmsg - hn - 3;
        size_t pn = strlen(prev);
        if (pn > room) pn = room;
        memcpy(g_errmsg + hn + 2, prev, pn);
        g_errmsg[hn + 2 + pn] = '\0';
    }
    return st;
}

void moa_assert_fail(const char *expr, const char *file, int line) {
    moa_log(MOA_LOG_ERROR, "internal assertion failed: %s (%s:%d)", expr, file, line);
    fprintf(stderr, "moa: internal assertion failed: %s (%s:%d)\n", expr, file, line);
    abort();
}

void moa_log_set(moa_log_fn fn, void *data) {
    g_log_fn = fn;
    g_log_data = data;
}

void moa_log(moa_log_level level, const char *fmt, ...) {
    if (!g_log_fn) return;
    char msg[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    g_log_fn(level, msg, g_log_data);
}

void moa_log_stderr(moa_log_level level, const char *msg, void *data) {
    int max = data ? *(const int *)data : MOA_LOG_INFO;
    if ((int)level > max) return;
    static const char *names[] = {"error", "warning", "info", "debug"};
    if (level == MOA_LOG_INFO)
        fprintf(stderr, "moa: %s\n", msg);
    else
        fprintf(stderr, "moa: %s: %s\n", names[level], msg);
}
