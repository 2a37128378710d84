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

/* FNV-1a 64 of a byte string. */
static uint64_t str_hash(const char *s, size_t n) {
    uint64_t h = 1469598103934665603ULL;
    for (size_t i = 0; i < n; i++) h = (h ^ (unsigned char)s[i]) * 1099511628211ULL;
    return h;
}

/* Exclusion list (best effort): FNV-1a 64 hashes, sorted, of the 144 vulgar words and slurs
 * of wamerican 2020.12.07 that pass the letter filter (stored hashed so the words are not
 * spelled out here). Labels are shown to people in dumps and docs; losing a few hundred
 * ordinary words that share a stem costs nothing. */
static const uint64_t BLOCKED_FNV[] = {
    0x000af26855bcc7c9ULL, 0x001501a8cd1d2effULL, 0x00389bb2e0b0a527ULL,
    0x0399114629d36228ULL, 0x04d65a25291a3b32ULL, 0x06d33144c9e0427fULL,
    0x0905cb991e7b13b7ULL, 0x096f61685174a761ULL, 0x0c558b8bfc469f41ULL,
    0x0c7b808bfc675bcdULL, 0x0e028b67ccca7e16ULL, 0x110e1320c24df053ULL,
    0x110e2820c24e1402ULL, 0x14148bddacec7baeULL, 0x15f232506f3239e0ULL,
    0x1770be9cec5d1063ULL, 0x19057ca8daf1f1a5ULL, 0x1a50235cda9f4633ULL,
    0x1e287185b026a657ULL, 0x21803fba4f2424fbULL, 0x243138906f02d22dULL,
    0x2474a7bc86027a21ULL, 0x26f690afbc83f419ULL, 0x276bdc376514c685ULL,
    0x2cc0d1e42e15dbeaULL, 0x31a3f4a5a2224b30ULL, 0x31f91c71141a8b75ULL,
    0x344e794ec5e84f70ULL, 0x34c8a6db8c2ce1f6ULL, 0x35a9e2e581a0dcf3ULL,
    0x395ca83e9d6e8451ULL, 0x3bebe454a0ce6bd6ULL, 0x40ed45cfa06fb29eULL,
    0x428e8c848beb4c93ULL, 0x430877c72ee464ebULL, 0x440f9852a54167b0ULL,
    0x4459e2a277646373ULL, 0x452189a29d6627bbULL, 0x49f27cdd741346c8ULL,
    0x4a833eeb462d3ce6ULL, 0x53c8cc9e17e6edaaULL, 0x5a81d9dfcb157b61ULL,
    0x5ac4b546bb01b600ULL, 0x5b42410065509a2fULL, 0x5cdbc1d3ca0415d0ULL,
    0x6094353a3a17ed05ULL, 0x622dbf12550eeb1dULL, 0x622ecfac27f64a54ULL,
    0x6377a87bd0ced115ULL, 0x655f0a2a51ac4f2cULL, 0x655f142a51ac602aULL,
    0x69a849aa3c7dde76ULL, 0x75b354990ae6e180ULL, 0x7644a8ec091deea2ULL,
    0x77532535c328291eULL, 0x776866333039d622ULL, 0x78cb8296ec793911ULL,
    0x78cb9396ec7955f4ULL, 0x791521e11afdb6d4ULL, 0x7cc511acf257d4c9ULL,
    0x7f80882cc60b1265ULL, 0x80485edd93855348ULL, 0x8113861cb497c192ULL,
    0x8275716ca1cb64bcULL, 0x891f1a10df943900ULL, 0x891f2310df94484bULL,
    0x892d3310dfa0a0d7ULL, 0x89450c10dfb4f073ULL, 0x8d1a83bcc17b6770ULL,
    0x9026f4d977da9958ULL, 0x90ea3ded18fe57b9ULL, 0x9415d4abe8dffb55ULL,
    0x97058966534aa332ULL, 0x98d14660fc14c59fULL, 0x9a1f9873bfd6d5d3ULL,
    0x9a36b573bfe9e5fbULL, 0x9a7c753a4de0fcedULL, 0x9bffba22860c5b3fULL,
    0x9d3428dde39ea8eaULL, 0x9e96277b609f97f4ULL, 0xa040a0cd3ec0e95fULL,
    0xa04b2c2cd817ac25ULL, 0xa3029a443c48c1aeULL, 0xa364928bc08d9531ULL,
    0xa74f47af0b29d4d5ULL, 0xa77434af0b48d0c9ULL, 0xa77ee5d35a692dfcULL,
    0xaf9aca62fd31a142ULL, 0xb0f858cfb23a718fULL, 0xb14a5ce8daace4e4ULL,
    0xb2797a1484cfbb62ULL, 0xb69963e47bf2b798ULL, 0xb86e69abfdf0f6acULL,
    0xb8ec449d5438501eULL, 0xbc9f3880dd1d5dc5ULL, 0xbcfbc1810440ca14ULL,
    0xbeea522673ccfc8cULL, 0xbfb11ca3327a5aa3ULL, 0xc003de40ab19ca2fULL,
    0xc2e08ccd9dcd08b7ULL, 0xc44d83489d1fe4c5ULL, 0xc588126a6a3c088dULL,
    0xc619eb4a369683ceULL, 0xc7cede9fa23b7fe6ULL, 0xca407ec83eddf12fULL,
    0xcac242b5ce08d290ULL, 0xcb9ad6fca1034cd5ULL, 0xcbc81f74ae16ee48ULL,
    0xd0775b89fd8b5686ULL, 0xd2d9a963cf2dd8f3ULL, 0xd2d9bf63cf2dfe55ULL,
    0xd34334702cb86386ULL, 0xd3610d241712744cULL, 0xd5653945ab8c0c8dULL,
    0xd5a47b445895822aULL, 0xd5e522528c1a4052ULL, 0xd5f31cf8cb8cc2f2ULL,
    0xd5f326f8cb8cd3f0ULL, 0xd64aae126bdaff62ULL, 0xd9ed873f8162adffULL,
    0xdaa8e9fb6d0d76acULL, 0xdec3649946bac334ULL, 0xe0825eba659ef42cULL,
    0xe0ab75ba65c22055ULL, 0xe15521f3af134de6ULL, 0xe15534f3af136e2fULL,
    0xe4b8a6e40482b087ULL, 0xe6c99aa8befbe2a8ULL, 0xe6f297a8bf1ee2a3ULL,
    0xe90bb9df87d36773ULL, 0xea0144a837925132ULL, 0xeb2452d6b99b2781ULL,
    0xeb463ed6b9b7ebebULL, 0xec2ecdc6de146646ULL, 0xecfc93e8c7f2324cULL,
    0xecfca1e8c7f24a16ULL, 0xee7073ab93f18b3eULL, 0xf070e4ebd94faf34ULL,
    0xf4d8dcaf1a6ed1f4ULL, 0xf54380ac2073d000ULL, 0xf54397ac2073f715ULL,
    0xfa33a9d2f83dae64ULL, 0xfb6898511c74c467ULL, 0xfc51fa65621618ccULL,
};

static int blocked(const char *w, size_t n) {
    uint64_t h = str_hash(w, n);
    size_t lo = 0, hi = sizeof BLOCKED_FNV / sizeof BLOCKED_FNV[0];
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (BLOCKED_FNV[mid] == h) return 1;
        if (BLOCKED_FNV[mid] < h) lo = mid + 1;
        else hi = mid;
    }
    return 0;
}

static int word_ok(const char *w, size_t n) {
    if (n < MOA_WORD_MIN_LEN || n > MOA_WORD_MAX_LEN) return 0;
    for (size_t i = 0; i < n; i++)
        if (w[i] < 'a' || w[i] > 'z') return 0;
    return !blocked(w, n);
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
