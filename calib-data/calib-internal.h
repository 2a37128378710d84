/* calib-internal.h - internal to calib-data/: helpers shared by its sources (not part of the
 * API, moa/calib.h). */
#ifndef MOA_CALIB_INTERNAL_H
#define MOA_CALIB_INTERNAL_H

#include <gsl/gsl_rng.h>
#include <stdarg.h>

#include "moa/calib.h"
#include "moa/common.h"

/* Growable NUL-terminated string. On allocation failure `failed` is set and further appends
 * are no-ops; check it once at the end (sb_finish). */
typedef struct {
    char *s;
    size_t len, cap;
    int failed;
} moa_sb;
void sb_init(moa_sb *b);
void sb_putn(moa_sb *b, const char *s, size_t n);
void sb_puts(moa_sb *b, const char *s);
void sb_printf(moa_sb *b, const char *fmt, ...) MOA_PRINTF(2, 3);
/* Returns the string (caller frees) or NULL (and frees) if any append failed. */
char *sb_finish(moa_sb *b);
void sb_free(moa_sb *b);

/* splitmix64 step (a good 64-bit mixer). */
uint64_t calib_mix64(uint64_t x);
/* A gsl mt19937 generator for stream `stream` of a sample seed (stream 0 = contents). */
gsl_rng *calib_rng(uint32_t seed, unsigned stream);

/* Valid UTF-8 (no overlongs, no surrogates, <= U+10FFFF)? Returns -1 if valid, else the byte
 * offset of the first bad sequence. */
long calib_utf8_check(const char *s, size_t n);

/* Append a JSON-escaped string with quotes. */
void sb_json_str(moa_sb *b, const char *s);

#endif
