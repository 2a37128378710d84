/* unicode.h - internal to model/ (and its tests): the little Unicode the tokenizer needs:
 * codepoint classes for the pre-tokenizer (letter, number, whitespace, other) and a strict
 * UTF-8 decoder.
 *
 * The class table (unicode-tables.c) is generated from the Unicode Character Database by
 * scripts/gen-unicode-tables.py and committed; the build does not need the UCD files.
 * Everything here is pure and thread-safe.
 */
#ifndef MOA_UNICODE_H
#define MOA_UNICODE_H

#include <stddef.h>
#include <stdint.h>

typedef enum {
    MOA_UCD_OTHER = 0,   /* not L, N or White_Space (includes unassigned codepoints) */
    MOA_UCD_LETTER = 1,  /* General_Category L* (\p{L}) */
    MOA_UCD_NUMBER = 2,  /* General_Category N* (\p{N}) */
    MOA_UCD_SPACE = 3,   /* White_Space property (\s in Oniguruma and PCRE2 Unicode mode) */
} moa_ucd_class;

typedef struct {
    uint32_t first, last;  /* inclusive */
    uint32_t cls;          /* moa_ucd_class */
} moa_ucd_range;

extern const moa_ucd_range moa_ucd_ranges[];
extern const int moa_ucd_n_ranges;
extern const char moa_ucd_version[];   /* "15.0.0" */

/* Class of a codepoint (ASCII by table, the rest by binary search). */
moa_ucd_class moa_ucd_class_of(uint32_t cp);

#define MOA_UTF8_REPLACEMENT 0xFFFDu

/* Decodes one codepoint from s[0..n) (n >= 1). Returns the number of bytes consumed (>= 1)
 * and sets *cp. An ill-formed sequence yields *cp = U+FFFD and consumes its maximal
 * subpart (Unicode's "substitution of maximal subparts": a truncated but otherwise valid
 * prefix is one U+FFFD; any other bad byte is one U+FFFD). Overlongs, surrogates and
 * values above U+10FFFF are ill-formed. */
size_t moa_utf8_decode(const unsigned char *s, size_t n, uint32_t *cp);

/* Like moa_utf8_decode, but distinguishes a sequence that is valid so far and merely cut
 * off by the end of the buffer: returns 0 in that case (more bytes are needed). */
size_t moa_utf8_decode_partial(const unsigned char *s, size_t n, uint32_t *cp);

/* Writes the UTF-8 encoding of cp (<= U+10FFFF, not a surrogate) to out; returns 1..4. */
int moa_utf8_encode(uint32_t cp, unsigned char out[4]);

/* 1 if s[0..n) is well-formed UTF-8. */
int moa_utf8_valid(const unsigned char *s, size_t n);

#endif /* MOA_UNICODE_H */
