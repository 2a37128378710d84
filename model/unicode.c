/* unicode.c - codepoint classes and strict UTF-8 decoding (see unicode.h). */
#include "unicode.h"

/* ---- classes ---------------------------------------------------------------------------- */

static const unsigned char ascii_class[128] = {
    /* 0x00-0x1F: controls; \t \n \v \f \r are White_Space */
    0, 0, 0, 0, 0, 0, 0, 0, 0, 3, 3, 3, 3, 3, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    /* space ! " # $ % & ' ( ) * + , - . / */
    3, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    /* 0-9 : ; < = > ? */
    2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 0, 0, 0, 0, 0, 0,
    /* @ A-O */
    0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    /* P-Z [ \ ] ^ _ */
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0,
    /* ` a-o */
    0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    /* p-z { | } ~ DEL */
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0,
};

moa_ucd_class moa_ucd_class_of(uint32_t cp) {
    if (cp < 128) return (moa_ucd_class)ascii_class[cp];
    int lo = 0, hi = moa_ucd_n_ranges - 1;
    while (lo <= hi) {
        int mid = lo + (hi - lo) / 2;
        if (cp < moa_ucd_ranges[mid].first) hi = mid - 1;
        else if (cp > moa_ucd_ranges[mid].last) lo = mid + 1;
        else return (moa_ucd_class)moa_ucd_ranges[mid].cls;
    }
    return MOA_UCD_OTHER;
}

/* ---- UTF-8 ------------------------------------------------------------------------------ */

/* Shared decoder. Returns bytes consumed; 0 only when allow_partial and the sequence is a
 * valid prefix cut off by the end of the buffer. */
static size_t utf8_decode(const unsigned char *s, size_t n, uint32_t *cp, int allow_partial) {
    unsigned c = s[0];
    if (c < 0x80) { *cp = c; return 1; }
    size_t need;
    unsigned lo = 0x80, hi = 0xBF;   /* allowed range of the second byte */
    uint32_t v;
    if (c >= 0xC2 && c <= 0xDF) { need = 1; v = c & 0x1F; }
    else if (c >= 0xE0 && c <= 0xEF) {
        need = 2; v = c & 0x0F;
        if (c == 0xE0) lo = 0xA0;         /* no overlongs */
        else if (c == 0xED) hi = 0x9F;    /* no surrogates */
    } else if (c >= 0xF0 && c <= 0xF4) {
        need = 3; v = c & 0x07;
        if (c == 0xF0) lo = 0x90;         /* no overlongs */
        else if (c == 0xF4) hi = 0x8F;    /* <= U+10FFFF */
    } else {
        *cp = MOA_UTF8_REPLACEMENT;        /* 80-BF, C0, C1, F5-FF */
        return 1;
    }
    size_t i = 1;
    for (; i <= need; i++) {
        if (i >= n) {
            if (allow_partial) return 0;
            break;
        }
        unsigned b = s[i];
        unsigned l = i == 1 ? lo : 0x80, h = i == 1 ? hi : 0xBF;
        if (b < l || b > h) break;
        v = (v << 6) | (b & 0x3F);
    }
    if (i <= need) { *cp = MOA_UTF8_REPLACEMENT; return i; }   /* maximal subpart */
    *cp = v;
    return need + 1;
}

size_t moa_utf8_decode(const unsigned char *s, size_t n, uint32_t *cp) {
    return utf8_decode(s, n, cp, 0);
}

size_t moa_utf8_decode_partial(const unsigned char *s, size_t n, uint32_t *cp) {
    return utf8_decode(s, n, cp, 1);
}

int moa_utf8_encode(uint32_t cp, unsigned char out[4]) {
    if (cp < 0x80) { out[0] = (unsigned char)cp; return 1; }
    if (cp < 0x800) {
        out[0] = (unsigned char)(0xC0 | (cp >> 6));
        out[1] = (unsigned char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (unsigned char)(0xE0 | (cp >> 12));
        out[1] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
        out[2] = (unsigned char)(0x80 | (cp & 0x3F));
        return 3;
    }
    out[0] = (unsigned char)(0xF0 | (cp >> 18));
    out[1] = (unsigned char)(0x80 | ((cp >> 12) & 0x3F));
    out[2] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
    out[3] = (unsigned char)(0x80 | (cp & 0x3F));
    return 4;
}

int moa_utf8_valid(const unsigned char *s, size_t n) {
    size_t i = 0;
    while (i < n) {
        if (s[i] < 0x80) { i++; continue; }
        uint32_t cp;
        size_t k = utf8_decode(s + i, n - i, &cp, 0);
        if (cp == MOA_UTF8_REPLACEMENT && !(k == 3 && s[i] == 0xEF)) return 0;
        i += k;
    }
    return 1;
}
