/* words.c - word lists (filtered to plain lowercase ASCII words), string builder, seeded
 * GSL generators and UTF-8 validation shared by the generators. */
#include "calib-internal.h"

#include <stdlib.h>
#include <string.h>

/* ---- string builder ----------------------------------------------------------------------- */
void sb_init(moa_sb *b) { memset(b, 0, sizeof *b); }

static int sb_reserve(moa_sb *b, size_t extra) {
    if (b->failed) return 0;
    if (b->len + extra + 1 <= b->cap) return 1;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->len + extra + 1) {
        if (cap > SIZE_MAX / 2) { b->failed = 1; return 0; }
        cap *= 2;
    }
    char *s = realloc(b->s, cap);
    if (!s) { b->failed = 1; return 0; }
    b->s = s;
    b->cap = cap;
    return 1;
}

void sb_putn(moa_sb *b, const char *s, size_t n) {
    if (!sb_reserve(b, n)) return;
    memcpy(b->s + b->len, s, n);
    b->len += n;
    b->s[b->len] = '\0';
}

void sb_puts(moa_sb *b, const char *s) { sb_putn(b, s, strlen(s)); }

void sb_printf(moa_sb *b, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0) { b->failed = 1; return; }
    if (!sb_reserve(b, (size_t)n)) return;
    va_start(ap, fmt);
    vsnprintf(b->s + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
}

char *sb_finish(moa_sb *b) {
    if (b->failed) { sb_free(b); return NULL; }
    if (!b->s) sb_reserve(b, 0);
    if (b->failed) { sb_free(b); return NULL; }
    char *s = b->s;
    if (s) s[b->len] = '\0';
    b->s = NULL;
    b->len = b->cap = 0;
    return s;
}

void sb_free(moa_sb *b) { free(b->s); memset(b, 0, sizeof *b); }

void sb_json_str(moa_sb *b, const char *s) {
    sb_putn(b, "\"", 1);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        switch (*p) {
        case '"': sb_putn(b, "\\\"", 2); break;
        case '\\': sb_putn(b, "\\\\", 2); break;
        case '\n': sb_putn(b, "\\n", 2); break;
        case '\r': sb_putn(b, "\\r", 2); break;
        case '\t': sb_putn(b, "\\t", 2); break;
        default:
            if (*p < 0x20) sb_printf(b, "\\u%04x", *p);
            else sb_putn(b, (const char *)p, 1);
        }
    }
    sb_putn(b, "\"", 1);
}

/* ---- random numbers ----------------------------------------------------------------------- */
uint64_t calib_mix64(uint64_t x) {
    x += 0x9e3779b97f4a7c15ULL;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
    return x ^ (x >> 31);
}

gsl_rng *calib_rng(uint32_t seed, unsigned stream) {
    gsl_rng *r = gsl_rng_alloc(gsl_rng_mt19937);
    if (!r) return NULL;
    /* Stream 0 uses the seed itself (so a recorded seed replays with plain gsl_rng_set);
     * other streams a mixed seed. */
    uint32_t s = stream == 0 ? seed
                             : (uint32_t)calib_mix64(((uint64_t)seed << 8) ^ (uint64_t)stream);
    gsl_rng_set(r, s);
    return r;
}

uint32_t moa_calib_sample_seed(uint64_t seed, int length, int index) {
    uint64_t h = calib_mix64(seed);
    h = calib_mix64(h ^ (uint64_t)(uint32_t)length);
    h = calib_mix64(h ^ ((uint64_t)(uint32_t)index << 32));
    return (uint32_t)(h ^ (h >> 32));
}

/* ---- UTF-8 -------------------------------------------------------------------------------- */
long calib_utf8_check(const char *str, size_t n) {
    const unsigned char *s = (const unsigned char *)str;
    size_t i = 0;
    while (i < n) {
        unsigned c = s[i];
        size_t k;
        uint32_t cp;
        if (c < 0x80) { i++; continue; }
        else if ((c & 0xe0) == 0xc0) { k = 1; cp = c & 0x1f; }
        else if ((c & 0xf0) == 0xe0) { k = 2; cp = c & 0x0f; }
        else if ((c & 0xf8) == 0xf0) { k = 3; cp = c & 0x07; }
        else return (long)i;
        for (size_t j = 1; j <= k; j++) {
            if (i + j >= n || (s[i + j] & 0xc0) != 0x80) return (long)i;
            cp = (cp << 6) | (s[i + j] & 0x3f);
        }
        if ((k == 1 && cp < 0x80) || (k == 2 && cp < 0x800) || (k == 3 && cp < 0x10000) ||
            cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
            return (long)i;
        i += k + 1;
    }
    return -1;
}

/* ---- word lists --------------------------------------------------------------------------- */
struct moa_wordlist {
    char **words;
    size_t n;
    char *source;
    char sha[65];
};

static int word_ok(const char *w, size_t n) {
    if (n < MOA_WORD_MIN_LEN || n > MOA_WORD_MAX_LEN) return 0;
    for (size_t i = 0; i < n; i++)
        if (w[i] < 'a' || w[i] > 'z') return 0;
    return 1;
}

/* Open-addressing set of kept words (to drop duplicates). */
static uint64_t str_hash(const char *s, size_t n) {
    uint64_t h = 1469598103934665603ULL;
    for (size_t i = 0; i < n; i++) h = (h ^ (unsigned char)s[i]) * 1099511628211ULL;
    return h;
}

static moa_status wl_build(const char *const *items, const size_t *lens, size_t n,
                           const char *source, moa_wordlist **out) {
    *out = NULL;
    moa_wordlist *wl = calloc(1, sizeof *wl);
    size_t cap = 16;
    while (cap < 2 * n + 16) cap *= 2;
    size_t *table = moa_calloc_array(cap, sizeof *table);  /* word index + 1; 0 = empty */
    if (wl) wl->words = moa_alloc_array(n ? n : 1, sizeof *wl->words);
    if (wl) wl->source = moa_strdup(source);
    if (!wl || !table || !wl->words || !wl->source) {
        free(table);
        moa_wordlist_free(wl);
        return moa_err(MOA_ERR_NOMEM, "out of memory loading word list '%s'", source);
    }
    for (size_t i = 0; i < n; i++) {
        if (!word_ok(items[i], lens[i])) continue;
        size_t h = (size_t)str_hash(items[i], lens[i]) & (cap - 1);
        int dup = 0;
        while (table[h]) {
            const char *w = wl->words[table[h] - 1];
            if (strlen(w) == lens[i] && memcmp(w, items[i], lens[i]) == 0) { dup = 1; break; }
            h = (h + 1) & (cap - 1);
        }
        if (dup) continue;
        char *w = malloc(lens[i] + 1);
        if (!w) {
            free(table);
            moa_wordlist_free(wl);
            return moa_err(MOA_ERR_NOMEM, "out of memory loading word list '%s'", source);
        }
        memcpy(w, items[i], lens[i]);
        w[lens[i]] = '\0';
        wl->words[wl->n++] = w;
        table[h] = wl->n;
    }
    free(table);
    if (wl->n < 4) {
        size_t got = wl->n;
        moa_wordlist_free(wl);
        return moa_err(MOA_ERR_FORMAT,
                       "word list '%s': only %zu plain lowercase ASCII words of %d..%d letters "
                       "(need at least 4)", source, got, MOA_WORD_MIN_LEN, MOA_WORD_MAX_LEN);
    }
    moa_sha256_ctx c;
    moa_sha256_init(&c);
    for (size_t i = 0; i < wl->n; i++) {
        if (i) moa_sha256_update(&c, "\n", 1);
        moa_sha256_update(&c, wl->words[i], strlen(wl->words[i]));
    }
    uint8_t dig[32];
    moa_sha256_final(&c, dig);
    moa_sha256_hex(dig, wl->sha);
    *out = wl;
    return MOA_OK;
}

moa_status moa_wordlist_from_words(const char *const *words, size_t n, moa_wordlist **out) {
    if (!out || (!words && n)) return moa_err(MOA_ERR_INVALID_ARG, "moa_wordlist_from_words: NULL argument");
    size_t *lens = moa_alloc_array(n ? n : 1, sizeof *lens);
    if (!lens) return moa_err(MOA_ERR_NOMEM, "out of memory");
    for (size_t i = 0; i < n; i++) lens[i] = words[i] ? strlen(words[i]) : 0;
    moa_status st = wl_build(words, lens, n, "(memory)", out);
    free(lens);
    return st;
}

moa_status moa_wordlist_load(const char *path, moa_wordlist **out) {
    if (!out) return moa_err(MOA_ERR_INVALID_ARG, "moa_wordlist_load: NULL out");
    *out = NULL;
    if (!path) path = MOA_WORDLIST_DEFAULT_PATH;
    char *data;
    size_t len;
    moa_status st = moa_read_file(path, &data, &len);
    if (st < 0) return moa_err_prefix(st, "word list (install Debian's wamerican or pass a list)");
    size_t n = 0;
    for (size_t i = 0; i < len; i++) n += data[i] == '\n';
    n++;
    const char **items = moa_alloc_array(n, sizeof *items);
    size_t *lens = moa_alloc_array(n, sizeof *lens);
    if (!items || !lens) {
        free(items); free(lens); free(data);
        return moa_err(MOA_ERR_NOMEM, "out of memory reading '%s'", path);
    }
    size_t k = 0, start = 0;
    for (size_t i = 0; i <= len; i++) {
        if (i == len || data[i] == '\n') {
            size_t e = i;
            if (e > start && data[e - 1] == '\r') e--;
            items[k] = data + start;
            lens[k] = e - start;
            k++;
            start = i + 1;
        }
    }
    st = wl_build(items, lens, k, path, out);
    free(items); free(lens); free(data);
    return st;
}

size_t moa_wordlist_count(const moa_wordlist *wl) { return wl ? wl->n : 0; }
const char *moa_wordlist_word(const moa_wordlist *wl, size_t i) {
    return wl && i < wl->n ? wl->words[i] : NULL;
}
const char *moa_wordlist_source(const moa_wordlist *wl) { return wl ? wl->source : ""; }
const char *moa_wordlist_sha256(const moa_wordlist *wl) { return wl ? wl->sha : ""; }

void moa_wordlist_free(moa_wordlist *wl) {
    if (!wl) return;
    if (wl->words)
        for (size_t i = 0; i < wl->n; i++) free(wl->words[i]);
    free(wl->words);
    free(wl->source);
    free(wl);
}
