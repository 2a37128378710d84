/* eval-internal.h - internal to eval/: helpers shared by its sources (not part of the API,
 * moa/eval.h). */
#ifndef MOA_EVAL_INTERNAL_H
#define MOA_EVAL_INTERNAL_H

#include <jansson.h>

#include "moa/eval.h"
#include "moa/common.h"

/* Canonical text (compact, sorted keys) of a JSON object given as text (NULL = {}); NULL
 * with the error set if it is not an object. Caller frees. */
char *eval_canonical_json(const char *text, const char *what);
/* Recomputes cells, per-length accuracy and effective context lengths from r->rows. */
void eval_aggregate(moa_longeval_results *r);
/* One sample row as a JSON object (new reference) / back (strings copied). */
json_t *eval_row_to_json(const moa_longeval_row *w);
moa_status eval_row_from_json(json_t *o, moa_longeval_row *w, const char *where);

/* Growable string (append failures set `failed`; eval_sb_finish returns NULL then). */
typedef struct {
    char *s;
    size_t len, cap;
    int failed;
} eval_sb;
void eval_sb_printf(eval_sb *b, const char *fmt, ...) MOA_PRINTF(2, 3);
void eval_sb_xml(eval_sb *b, const char *s);   /* XML-escaped text */
char *eval_sb_finish(eval_sb *b);

/* Writes a whole buffer atomically. */
moa_status eval_write_atomic(const char *path, const void *data, size_t len);

#endif
