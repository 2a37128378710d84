/* score.c - answer scorers: LongEval lines (last integer, compared as digit strings) and
 * RULER needles (fraction of expected strings found, case-insensitive). */
#include "calib-internal.h"

#include <ctype.h>
#include <string.h>

/* Skips leading zeros of a digit run [s, s+n) (keeping one digit). */
static void strip_zeros(const char **s, size_t *n) {
    while (*n > 1 && **s == '0') { (*s)++; (*n)--; }
}

int moa_score_lines(const char *output, const char *expected) {
    if (!output || !expected) return 0;
    const char *last = NULL;
    size_t last_n = 0;
    for (const char *p = output; *p;) {
        if (*p >= '0' && *p <= '9') {
            const char *s = p;
            while (*p >= '0' && *p <= '9') p++;
            last = s;
            last_n = (size_t)(p - s);
        } else {
            p++;
        }
    }
    if (!last) return 0;
    const char *e = expected;
    size_t en = strlen(e);
    if (en == 0) return 0;
    for (size_t i = 0; i < en; i++)
        if (e[i] < '0' || e[i] > '9') return 0;
    strip_zeros(&last, &last_n);
    strip_zeros(&e, &en);
    return last_n == en && memcmp(last, e, en) == 0;
}

/* Case-insensitive (ASCII) substring search of needle [n, n+nl) in hay. */
static int contains_ci(const char *hay, const char *n, size_t nl) {
    if (nl == 0) return 1;
    for (const char *h = hay; *h; h++) {
        size_t i = 0;
        while (i < nl && h[i] && tolower((unsigned char)h[i]) == tolower((unsigned char)n[i])) i++;
        if (i == nl) return 1;
    }
    return 0;
}

double moa_score_needle(const char *output, const char *expected) {
    if (!output || !expected) return 0.0;
    int total = 0, found = 0;
    for (const char *p = expected;;) {
        const char *nl = strchr(p, '\n');
        size_t n = nl ? (size_t)(nl - p) : strlen(p);
        if (n > 0) {
            total++;
            found += contains_ci(output, p, n);
        }
        if (!nl) break;
        p = nl + 1;
    }
    return total ? (double)found / total : 0.0;
}

double moa_score_task(const char *task, const char *output, const char *expected) {
    if (!task || !expected) return -1.0;
    if (strcmp(task, "lines") == 0) return moa_score_lines(output, expected);
    if (strncmp(task, "needle", 6) == 0 || strcmp(task, "longdep") == 0)
        return moa_score_needle(output, expected);
    return -1.0;
}
