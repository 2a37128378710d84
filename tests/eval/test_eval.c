/* test_eval.c - eval/ without a model:
 *  - aggregation on hand-made rows with known answers: per-cell and per-length accuracy,
 *    effective context length (>= 0.9) and its variant relative to a reference run;
 *  - results JSON round trip, CSV shapes;
 *  - the PNG writer, decoded here with an independent bitwise CRC-32 and Adler-32, stored
 *    deflate blocks parsed by hand, pixels compared; heat-map pixels and colours;
 *  - SVG well-formedness basics (prolog, balanced tags, escaped labels);
 *  - resume: a results log cut after k rows (plus a torn line) resumes to the same results
 *    JSON, byte for byte, as an uninterrupted run; a settings mismatch is an error. The
 *    model side is a fake tokenizer + responder that reads the prompt. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "moa/eval.h"
#include "moa/common.h"
#include "test.h"

static char *tmp_path(const char *name) {
    static char buf[8][512];
    static int k;
    char *p = buf[k++ % 8];
    snprintf(p, 512, "%s/%s", MOA_TEST_TMPDIR, name);
    return p;
}

/* ---- aggregation ------------------------------------------------------------------------- */
/* K=2 samples per cell; `wrong[l]` lists (bin*2 + k) entries that are wrong, -1 terminated. */
static moa_longeval_row *make_rows(const int *lengths, int nl, const int wrong[][21], int64_t *n) {
    *n = (int64_t)nl * 20;
    moa_longeval_row *rows = calloc((size_t)*n, sizeof *rows);
    int64_t i = *n;
    /* fill in reverse order to exercise the sorting */
    for (int l = 0; l < nl; l++)
        for (int b = 0; b < 10; b++)
            for (int k = 0; k < 2; k++) {
                moa_longeval_row *w = &rows[--i];
                w->length = lengths[l];
                w->bin = b;
                w->k = k;
                w->seed = moa_longeval_sample_seed(0, lengths[l], b, k);
                w->prompt_tokens = lengths[l] - 10 - b;
                w->lines = lengths[l] / 40;
                w->query_index = b * (int)w->lines / 10;
                w->new_tokens = 20;
                w->expected = (char *)"12345";
                w->correct = 1;
                for (const int *x = wrong[l]; *x >= 0; x++)
                    if (*x == b * 2 + k) w->correct = 0;
                w->output = (char *)(w->correct ? "The value is <12345>." : "The value is <999>.");
            }
    return rows;
}

TEST(aggregation_known_answers) {
    int lengths[4] = {1000, 2000, 4000, 8000};
    /* 1000: 1 wrong -> 0.95; 2000: 2 wrong -> 0.90 (counts: >= 0.9); 4000: 10 wrong -> 0.5;
     * 8000: 3 wrong -> 0.85 */
    static const int wrong[4][21] = {
        {6, -1},
        {0, 19, -1},
        {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, -1},
        {1, 2, 3, -1},
    };
    int64_t n;
    moa_longeval_row *rows = make_rows(lengths, 4, wrong, &n);
    moa_longeval_results *r = NULL;
    CHECK_OK(moa_longeval_results_create("plan:x.json", "{\"b\":1,\"a\":[1,2]}", lengths, 4, rows, n, &r));
    if (!r) { free(rows); return; }
    CHECK_STR(r->settings, "{\"a\":[1,2],\"b\":1}");
    CHECK_EQ_INT(r->n_rows, 80);
    for (int64_t i = 1; i < r->n_rows; i++) {   /* ordered by length index, bin, k */
        const moa_longeval_row *a = &r->rows[i - 1], *b = &r->rows[i];
        CHECK(a->length < b->length || (a->length == b->length && (a->bin < b->bin ||
                                                                    (a->bin == b->bin && a->k < b->k))));
    }
    CHECK_NEAR(r->lengths[0].accuracy, 0.95, 1e-12);
    CHECK_NEAR(r->lengths[1].accuracy, 0.90, 1e-12);
    CHECK_NEAR(r->lengths[2].accuracy, 0.50, 1e-12);
    CHECK_NEAR(r->lengths[3].accuracy, 0.85, 1e-12);
    CHECK_EQ_INT(r->lengths[0].correct, 19);
    CHECK_EQ_INT(r->lengths[0].n, 20);
    CHECK_NEAR(r->lengths[0].mean_prompt_tokens, 1000 - 10 - 4.5, 1e-9);
    /* cells: 1000 bin 3 has one of two wrong (entry 6 = bin 3, k 0) */
    CHECK_NEAR(r->cells[0 * 10 + 3].accuracy, 0.5, 1e-12);
    CHECK_NEAR(r->cells[0 * 10 + 4].accuracy, 1.0, 1e-12);
    CHECK_NEAR(r->cells[1 * 10 + 0].accuracy, 0.5, 1e-12);   /* entry 0 */
    CHECK_NEAR(r->cells[1 * 10 + 9].accuracy, 0.5, 1e-12);   /* entry 19 = bin 9, k 1 */
    for (int b = 0; b < 5; b++) CHECK_NEAR(r->cells[2 * 10 + b].accuracy, 0.0, 1e-12);
    for (int b = 5; b < 10; b++) CHECK_NEAR(r->cells[2 * 10 + b].accuracy, 1.0, 1e-12);
    CHECK_NEAR(r->cells[3 * 10 + 1].accuracy, 0.0, 1e-12);   /* entries 2, 3 */
    CHECK_EQ_INT(r->cells[3 * 10 + 1].n, 2);
    CHECK_EQ_INT(r->effective_length, 2000);
    CHECK_EQ_INT(r->effective_length_rel, -1);

    /* reference (dense): 1000 -> 1.0, 2000 -> 0.95, 4000 -> 0.5, 8000 missing. Relative rule:
     * 0.95 >= 0.9; 0.90 >= 0.855; 0.5 >= 0.45 -> 4000 (8000 has no reference: ignored). */
    int rlen[3] = {1000, 2000, 4000};
    static const int rwrong[3][21] = {{-1}, {5, -1}, {0, 2, 4, 6, 8, 10, 12, 14, 16, 18, -1}};
    int64_t rn;
    moa_longeval_row *rrows = make_rows(rlen, 3, rwrong, &rn);
    moa_longeval_results *ref = NULL;
    CHECK_OK(moa_longeval_results_create("dense", NULL, rlen, 3, rrows, rn, &ref));
    if (ref) {
        CHECK_EQ_INT(ref->effective_length, 2000);
        CHECK_OK(moa_longeval_set_reference(r, ref));
        CHECK_STR(r->reference_label, "dense");
        CHECK_NEAR(r->lengths[1].ref_accuracy, 0.95, 1e-12);
        CHECK_NEAR(r->lengths[3].ref_accuracy, -1, 0);
        CHECK_EQ_INT(r->effective_length_rel, 4000);
        CHECK_EQ_INT(r->effective_length, 2000);   /* unchanged */
    }

    /* JSON round trip keeps rows, aggregates and the reference */
    const char *jp = tmp_path("agg.json");
    CHECK_OK(moa_longeval_write_json(r, jp));
    moa_longeval_results *back = NULL;
    CHECK_OK(moa_longeval_read_json(jp, &back));
    if (back) {
        CHECK_STR(back->label, "plan:x.json");
        CHECK_STR(back->settings, r->settings);
        CHECK_EQ_INT(back->n_rows, 80);
        CHECK_EQ_INT(back->effective_length, 2000);
        CHECK_EQ_INT(back->effective_length_rel, 4000);
        CHECK_STR(back->reference_label, "dense");
        for (int l = 0; l < 4; l++) CHECK_NEAR(back->lengths[l].accuracy, r->lengths[l].accuracy, 1e-15);
        CHECK_STR(back->rows[7].output, r->rows[7].output);
        CHECK_EQ_INT(back->rows[7].seed, r->rows[7].seed);
        const char *jp2 = tmp_path("agg2.json");
        CHECK_OK(moa_longeval_write_json(back, jp2));
        char *a = NULL, *b = NULL;
        size_t la = 0, lb = 0;
        CHECK_OK(moa_read_file(jp, &a, &la));
        CHECK_OK(moa_read_file(jp2, &b, &lb));
        CHECK(a && b && la == lb && memcmp(a, b, la) == 0);
        free(a);
        free(b);
    }

    /* CSV shapes */
    const char *prefix = tmp_path("agg");
    CHECK_OK(moa_longeval_write_csv(r, prefix));
    char path[600];
    snprintf(path, sizeof path, "%s-samples.csv", prefix);
    char *text = NULL;
    size_t len = 0;
    CHECK_OK(moa_read_file(path, &text, &len));
    int lines = 0;
    for (size_t i = 0; text && i < len; i++) lines += text[i] == '\n';
    CHECK_EQ_INT(lines, 1 + 80);
    CHECK(text && strncmp(text, "label,length,bin,k,", 19) == 0);
    free(text);
    snprintf(path, sizeof path, "%s-cells.csv", prefix);
    CHECK_OK(moa_read_file(path, &text, &len));
    lines = 0;
    for (size_t i = 0; text && i < len; i++) lines += text[i] == '\n';
    CHECK_EQ_INT(lines, 1 + 4 * 11);
    CHECK(text && strstr(text, "\"plan:x.json\",2000,all,20,18,0.9,0.95\n"));
    free(text);

    /* markdown table */
    const moa_longeval_results *runs[2] = {ref, r};
    char *md = NULL;
    CHECK_OK(moa_longeval_compare_md(runs, 2, &md));
    CHECK(md && strstr(md, "| length | dense | plan:x.json |"));
    CHECK(md && strstr(md, "| 8000 | - | 0.85 (17/20) |"));
    CHECK(md && strstr(md, "| effective context length (acc >= 0.9) | 2000 | 2000 |"));
    CHECK(md && strstr(md, "x reference) | - | 4000 |"));
    free(md);

    moa_longeval_results_free(back);
    moa_longeval_results_free(ref);
    moa_longeval_results_free(r);
    free(rrows);
    free(rows);
}

TEST(aggregation_edge_cases) {
    int lengths[3] = {100, 200, 300};
    /* non-monotone: 100 -> 0.5, 200 -> 1.0, 300 -> 0.0: effective = 200 (largest >= 0.9) */
    static const int wrong[3][21] = {
        {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, -1},
        {-1},
        {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, -1},
    };
    int64_t n;
    moa_longeval_row *rows = make_rows(lengths, 3, wrong, &n);
    moa_longeval_results *r = NULL, *ref = NULL;
    CHECK_OK(moa_longeval_results_create("u", NULL, lengths, 3, rows, n, &r));
    if (r) {
        CHECK_EQ_INT(r->effective_length, 200);
        /* a reference with accuracy 0 at 300 does not make 300 count (0 >= 0.9 * 0) */
        CHECK_OK(moa_longeval_results_create("dense", NULL, lengths, 3, rows, n, &ref));
        if (ref) {
            CHECK_OK(moa_longeval_set_reference(r, ref));
            CHECK_EQ_INT(r->effective_length_rel, 200);
        }
    }
    moa_longeval_results_free(ref);
    moa_longeval_results_free(r);
    /* no row >= 0.9 anywhere: 0; empty cells have accuracy -1 */
    moa_longeval_results *e = NULL;
    CHECK_OK(moa_longeval_results_create("empty", NULL, lengths, 3, rows, 20, &e));   /* only rows of 300 */
    if (e) {
        CHECK_EQ_INT(e->effective_length, 0);
        CHECK_NEAR(e->lengths[0].accuracy, -1, 0);
        CHECK_EQ_INT(e->lengths[0].n, 0);
        CHECK_NEAR(e->cells[5].accuracy, -1, 0);
    }
    moa_longeval_results_free(e);
    /* errors: duplicate rows, unknown length, duplicate length in the list */
    moa_longeval_row dup[2] = {rows[0], rows[0]};
    CHECK(moa_longeval_results_create("x", NULL, lengths, 3, dup, 2, &e) == MOA_ERR_INVALID_ARG);
    int other[1] = {999};
    CHECK(moa_longeval_results_create("x", NULL, other, 1, rows, 1, &e) == MOA_ERR_INVALID_ARG);
    CHECK(strstr(moa_last_error(), "not in the length list") != NULL);
    int twice[2] = {100, 100};
    CHECK(moa_longeval_results_create("x", NULL, twice, 2, rows, 0, &e) == MOA_ERR_INVALID_ARG);
    CHECK(moa_longeval_results_create("x", "[1]", lengths, 3, rows, 0, &e) == MOA_ERR_INVALID_ARG);
    free(rows);
}

TEST(sample_seeds) {
    uint32_t a = moa_longeval_sample_seed(0, 1024, 3, 0);
    CHECK_EQ_INT(a, moa_longeval_sample_seed(0, 1024, 3, 0));
    CHECK(a != moa_longeval_sample_seed(1, 1024, 3, 0));
    CHECK(a != moa_longeval_sample_seed(0, 2048, 3, 0));
    CHECK(a != moa_longeval_sample_seed(0, 1024, 4, 0));
    CHECK(a != moa_longeval_sample_seed(0, 1024, 3, 1));
    CHECK(moa_longeval_sample_seed(0, 1024, 0, 1) != moa_longeval_sample_seed(0, 1024, 1, 0));
}

/* ---- PNG ----------------------------------------------------------------------------------- */
/* Independent checks: bitwise CRC-32 (no table) and Adler-32 straight from the definition. */
static uint32_t crc32_bitwise(const uint8_t *p, size_t n) {
    uint32_t c = 0xffffffffu;
    for (size_t i = 0; i < n; i++) {
        c ^= p[i];
        for (int k = 0; k < 8; k++) c = (c >> 1) ^ (0xedb88320u & (0u - (c & 1u)));
    }
    return c ^ 0xffffffffu;
}
static uint32_t adler32_ref(const uint8_t *p, size_t n) {
    uint64_t a = 1, b = 0;
    for (size_t i = 0; i < n; i++) {
        a = (a + p[i]) % 65521;
        b = (b + a) % 65521;
    }
    return (uint32_t)((b << 16) | a);
}
static uint32_t be32(const uint8_t *p) {
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* Decodes an RGB8 PNG made of stored blocks; returns malloc'ed pixels or NULL (with checks). */
static uint8_t *decode_png(const uint8_t *png, size_t len, int *w, int *h) {
    static const uint8_t sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
    CHECK(len > 8 && memcmp(png, sig, 8) == 0);
    size_t pos = 8;
    uint8_t *idat = NULL;
    size_t idat_n = 0;
    int seen_ihdr = 0, seen_iend = 0, n_chunks = 0;
    *w = *h = 0;
    while (pos + 12 <= len && !seen_iend) {
        uint32_t n = be32(png + pos);
        CHECK(pos + 12 + n <= len);
        if (pos + 12 + n > len) break;
        const uint8_t *type = png + pos + 4, *data = png + pos + 8;
        uint32_t crc = be32(png + pos + 8 + n);
        CHECK_EQ_INT(crc, crc32_bitwise(type, n + 4));
        if (!memcmp(type, "IHDR", 4)) {
            CHECK_EQ_INT(n_chunks, 0);
            CHECK_EQ_INT(n, 13);
            *w = (int)be32(data);
            *h = (int)be32(data + 4);
            CHECK_EQ_INT(data[8], 8);
            CHECK_EQ_INT(data[9], 2);
            CHECK_EQ_INT(data[10], 0);
            CHECK_EQ_INT(data[11], 0);
            CHECK_EQ_INT(data[12], 0);
            seen_ihdr = 1;
        } else if (!memcmp(type, "IDAT", 4)) {
            idat = realloc(idat, idat_n + n);
            memcpy(idat + idat_n, data, n);
            idat_n += n;
        } else if (!memcmp(type, "IEND", 4)) {
            CHECK_EQ_INT(n, 0);
            seen_iend = 1;
        }
        n_chunks++;
        pos += 12 + n;
    }
    CHECK(seen_ihdr && seen_iend && pos == len && idat_n >= 6);
    if (!seen_ihdr || !idat || idat_n < 6) { free(idat); return NULL; }
    /* zlib: CMF/FLG, stored blocks, Adler-32 */
    CHECK_EQ_INT(idat[0] & 0x0f, 8);
    CHECK_EQ_INT(((unsigned)idat[0] << 8 | idat[1]) % 31, 0);
    CHECK_EQ_INT(idat[1] & 0x20, 0);   /* no preset dictionary */
    size_t raw_cap = (size_t)(*w * 3 + 1) * (size_t)*h;
    uint8_t *raw = malloc(raw_cap + 1);
    size_t raw_n = 0, zp = 2;
    int final = 0, blocks = 0;
    while (!final && zp + 5 <= idat_n - 4) {
        uint8_t hdr = idat[zp];
        final = hdr & 1;
        CHECK_EQ_INT((hdr >> 1) & 3, 0);   /* BTYPE 00: stored */
        unsigned ln = idat[zp + 1] | (unsigned)idat[zp + 2] << 8;
        unsigned nln = idat[zp + 3] | (unsigned)idat[zp + 4] << 8;
        CHECK_EQ_INT(ln ^ 0xffffu, nln);
        zp += 5;
        CHECK(zp + ln <= idat_n - 4 && raw_n + ln <= raw_cap);
        if (zp + ln > idat_n - 4 || raw_n + ln > raw_cap) break;
        memcpy(raw + raw_n, idat + zp, ln);
        raw_n += ln;
        zp += ln;
        blocks++;
    }
    CHECK(final);
    CHECK_EQ_INT(zp + 4, idat_n);
    CHECK_EQ_INT(raw_n, raw_cap);
    CHECK_EQ_INT(be32(idat + idat_n - 4), adler32_ref(raw, raw_n));
    uint8_t *px = malloc((size_t)*w * (size_t)*h * 3);
    for (int y = 0; y < *h && raw_n == raw_cap; y++) {
        const uint8_t *row = raw + (size_t)y * (size_t)(*w * 3 + 1);
        CHECK_EQ_INT(row[0], 0);   /* filter type None */
        memcpy(px + (size_t)y * (size_t)*w * 3, row + 1, (size_t)*w * 3);
    }
    free(raw);
    free(idat);
    return px;
}

static void png_roundtrip(int w, int h) {
    uint8_t *img = malloc((size_t)w * h * 3);
    for (int i = 0; i < w * h * 3; i++) img[i] = (uint8_t)(i * 7 + i / 5);
    uint8_t *png = NULL;
    size_t len = 0;
    CHECK_OK(moa_png_encode_rgb(img, w, h, &png, &len));
    int dw = 0, dh = 0;
    uint8_t *px = png ? decode_png(png, len, &dw, &dh) : NULL;
    CHECK_EQ_INT(dw, w);
    CHECK_EQ_INT(dh, h);
    CHECK(px && memcmp(px, img, (size_t)w * h * 3) == 0);
    free(px);
    free(png);
    free(img);
}

TEST(png_writer) {
    /* CRC-32 check value of "123456789" is 0xcbf43926; Adler-32 of "Wikipedia" is 0x11e60398 */
    CHECK_EQ_INT(crc32_bitwise((const uint8_t *)"123456789", 9), 0xcbf43926u);
    CHECK_EQ_INT(adler32_ref((const uint8_t *)"Wikipedia", 9), 0x11e60398u);
    png_roundtrip(1, 1);
    png_roundtrip(3, 2);
    png_roundtrip(200, 120);   /* 72120 raw bytes: two stored blocks */
    png_roundtrip(21845, 1);   /* exactly 65536 raw bytes: a full block + 1 byte */
    uint8_t one[3] = {1, 2, 3}, *png = NULL;
    size_t len;
    CHECK(moa_png_encode_rgb(one, 0, 1, &png, &len) == MOA_ERR_INVALID_ARG);
}

TEST(heat_colours_and_png_heatmap) {
    uint8_t c[3];
    moa_eval_heat_colour(0, c);
    CHECK(c[0] == 215 && c[1] == 48 && c[2] == 39);
    moa_eval_heat_colour(0.5, c);
    CHECK(c[0] == 255 && c[1] == 255 && c[2] == 191);
    moa_eval_heat_colour(1, c);
    CHECK(c[0] == 26 && c[1] == 152 && c[2] == 80);
    moa_eval_heat_colour(-1, c);
    CHECK(c[0] == 200 && c[1] == 200 && c[2] == 200);

    int lengths[2] = {500, 900};
    static const int wrong[2][21] = {{0, 1, 2, -1}, {4, -1}};
    int64_t n;
    moa_longeval_row *rows = make_rows(lengths, 2, wrong, &n);
    moa_longeval_results *r = NULL;
    CHECK_OK(moa_longeval_results_create("dense", NULL, lengths, 2, rows, n, &r));
    const char *path = tmp_path("heat.png");
    if (r) CHECK_OK(moa_longeval_write_heatmap_png(r, path));
    char *data = NULL;
    size_t len = 0;
    CHECK_OK(moa_read_file(path, &data, &len));
    int w = 0, h = 0;
    uint8_t *px = data ? decode_png((const uint8_t *)data, len, &w, &h) : NULL;
    /* layout: cells 32x16 with a white 1-pixel grid, 10 bin rows, a 4-pixel gap, the total row */
    CHECK_EQ_INT(w, 2 * 32 + 1);
    CHECK_EQ_INT(h, 11 * 16 + 4 + 1);
    if (px && r) {
        for (int l = 0; l < 2; l++)
            for (int row = 0; row <= 10; row++) {
                double acc = row < 10 ? r->cells[l * 10 + row].accuracy : r->lengths[l].accuracy;
                moa_eval_heat_colour(acc, c);
                int x = l * 32 + 16, y = row * 16 + 8 + (row == 10 ? 4 : 0);
                const uint8_t *p = px + ((size_t)y * w + x) * 3;
                CHECK_MSG(p[0] == c[0] && p[1] == c[1] && p[2] == c[2], "pixel of length %d row %d", l, row);
            }
        const uint8_t *grid = px + ((size_t)16 * w + 5) * 3;   /* grid line */
        CHECK(grid[0] == 255 && grid[1] == 255 && grid[2] == 255);
        /* cell (500, bin 0) is 0/2 -> red; (500, bin 1) is 1/2 -> light yellow */
        CHECK(px[((size_t)8 * w + 16) * 3] == 215);
        CHECK(px[((size_t)24 * w + 16) * 3 + 2] == 191);
    }
    free(px);
    free(data);
    moa_longeval_results_free(r);
    free(rows);
}

/* ---- SVG ----------------------------------------------------------------------------------- */
/* Balanced tags, one root <svg>, no raw '<' or '&' in text. */
static int svg_well_formed(const char *s) {
    const char *stack[64];
    size_t stack_len[64];
    int depth = 0, roots = 0;
    if (strncmp(s, "<?xml version=\"1.0\"", 19) != 0) return 0;
    s = strstr(s, "?>");
    if (!s) return 0;
    s += 2;
    while (*s) {
        if (*s == '&') {
            if (strncmp(s, "&lt;", 4) && strncmp(s, "&gt;", 4) && strncmp(s, "&amp;", 5) && strncmp(s, "&quot;", 6))
                return 0;
            s++;
            continue;
        }
        if (*s != '<') { s++; continue; }
        const char *end = strchr(s, '>');
        if (!end) return 0;
        for (const char *q = s + 1; q < end; q++)
            if (*q == '<') return 0;
        if (s[1] == '/') {
            size_t n = strcspn(s + 2, " >");
            if (depth == 0 || stack_len[depth - 1] != n || strncmp(stack[depth - 1], s + 2, n)) return 0;
            depth--;
        } else if (end[-1] != '/') {
            if (depth == 0) roots++;
            if (depth >= 64) return 0;
            stack[depth] = s + 1;
            stack_len[depth] = strcspn(s + 1, " />");
            depth++;
        } else if (depth == 0) {
            return 0;
        }
        s = end + 1;
    }
    return depth == 0 && roots == 1;
}

TEST(svg_outputs) {
    int lengths[3] = {256, 512, 1024};
    static const int wrong[3][21] = {{-1}, {3, 4, -1}, {0, 1, 2, 3, 4, 5, 6, 7, 8, -1}};
    int64_t n;
    moa_longeval_row *rows = make_rows(lengths, 3, wrong, &n);
    moa_longeval_results *r = NULL, *r2 = NULL;
    CHECK_OK(moa_longeval_results_create("a<b&c \"q\"", NULL, lengths, 3, rows, n, &r));
    CHECK_OK(moa_longeval_results_create("dense", NULL, lengths + 1, 2, rows, 40, &r2));   /* 1024, 512 */
    if (!r || !r2) { free(rows); moa_longeval_results_free(r); moa_longeval_results_free(r2); return; }
    CHECK_OK(moa_longeval_set_reference(r, r2));
    const char *p1 = tmp_path("heat.svg"), *p2 = tmp_path("cmp.svg");
    CHECK_OK(moa_longeval_write_heatmap_svg(r, p1));
    const moa_longeval_results *runs[2] = {r2, r};
    CHECK_OK(moa_longeval_compare_svg(runs, 2, p2));
    char *s = NULL;
    size_t len;
    CHECK_OK(moa_read_file(p1, &s, &len));
    CHECK(s && svg_well_formed(s));
    CHECK(s && strstr(s, "a&lt;b&amp;c &quot;q&quot;") && !strstr(s, "a<b"));
    CHECK(s && strstr(s, ">1024</text>"));
    CHECK(s && strstr(s, ">0.55</text>"));   /* 1024: 11/20 */
    free(s);
    CHECK_OK(moa_read_file(p2, &s, &len));
    CHECK(s && svg_well_formed(s));
    CHECK(s && strstr(s, "<polyline") && strstr(s, "dense (ecl 512)"));
    free(s);
    CHECK(!svg_well_formed("<?xml version=\"1.0\"?><svg><g></svg>"));   /* the checker itself */
    moa_longeval_results_free(r);
    moa_longeval_results_free(r2);
    free(rows);
}

/* ---- the runner with a fake model ----------------------------------------------------------- */
/* Tokens = whitespace-separated words + 7 (chat template). encode_prompt keeps the prompt;
 * the responder reads the question's label, finds its line and answers its value, except
 * for labels whose hash is 0 mod 3 (answered "12"). Answer ids are bytes. */
typedef struct {
    char *prompt;
    int calls, fail_after;   /* fail_after >= 0: respond fails on call number fail_after */
    int lengths_begun[8], n_ctx_begun[8], n_begun;
    int echo;                /* 1: answer with the last 400 bytes of the prompt; 2: "none" */
} fake_model;

static int fake_count(void *data, const char *text, size_t len) {
    (void)data;
    int n = 7, in = 0;
    for (size_t i = 0; i < len; i++) {
        int sp = text[i] == ' ' || text[i] == '\n';
        if (!sp && !in) n++;
        in = !sp;
    }
    return n;
}

static moa_status fake_encode(void *data, const char *text, size_t len, int32_t **ids, int *n) {
    fake_model *f = data;
    free(f->prompt);
    f->prompt = malloc(len + 1);
    memcpy(f->prompt, text, len);
    f->prompt[len] = 0;
    *n = fake_count(NULL, text, len);
    *ids = calloc((size_t)*n, sizeof **ids);
    return MOA_OK;
}

static moa_status fake_detok(void *data, const int32_t *ids, int n, char **text) {
    (void)data;
    *text = malloc((size_t)n + 1);
    for (int i = 0; i < n; i++) (*text)[i] = (char)ids[i];
    (*text)[n] = 0;
    return MOA_OK;
}

static moa_status fake_begin(void *data, int length, int n_ctx) {
    fake_model *f = data;
    if (f->n_begun < 8) {
        f->lengths_begun[f->n_begun] = length;
        f->n_ctx_begun[f->n_begun] = n_ctx;
    }
    f->n_begun++;
    return MOA_OK;
}

static moa_status fake_respond(void *data, const int32_t *prompt, int n_prompt, int max_new, int32_t **out,
                               int *n_out) {
    (void)prompt;
    (void)n_prompt;
    fake_model *f = data;
    if (f->fail_after >= 0 && f->calls >= f->fail_after) return moa_err(MOA_ERR_INTERRUPTED, "fake: stopped");
    f->calls++;
    if (f->echo) {   /* needle tests: the whole haystack tail, or nothing useful */
        const char *src = f->echo == 1 ? f->prompt : "none";
        size_t len = strlen(src);
        *out = malloc(sizeof(int32_t) * (len + 1));
        for (size_t i = 0; i < len; i++) (*out)[i] = (unsigned char)src[i];
        *n_out = (int)len;
        return MOA_OK;
    }
    const char *q = strstr(f->prompt, "<REGISTER_CONTENT> in line ");
    char label[128] = "", answer[160] = "I do not know";
    if (q) sscanf(q + 27, "%127[^?]", label);
    unsigned h = 0;
    for (const char *c = label; *c; c++) h = h * 31 + (unsigned char)*c;
    char key[160];
    snprintf(key, sizeof key, "line %s: REGISTER_CONTENT is <", label);
    const char *line = strstr(f->prompt, key);
    if (line) {
        int v = atoi(line + strlen(key));
        if (h % 3 == 0) snprintf(answer, sizeof answer, "12");
        else snprintf(answer, sizeof answer, "The REGISTER_CONTENT in line %s is %d.", label, v);
    }
    int n = (int)strlen(answer);
    if (n > max_new) n = max_new;
    *out = malloc(sizeof(int32_t) * (size_t)(n ? n : 1));
    for (int i = 0; i < n; i++) (*out)[i] = (unsigned char)answer[i];
    *n_out = n;
    return MOA_OK;
}

static moa_wordlist *synthetic_words(void) {
    static char buf[26 * 26 * 26][4];
    static const char *ptr[26 * 26 * 26];
    int n = 0;
    for (int a = 0; a < 26; a++)
        for (int b = 0; b < 26; b++)
            for (int c = 0; c < 26; c++) {
                buf[n][0] = (char)('a' + a);
                buf[n][1] = (char)('a' + b);
                buf[n][2] = (char)('a' + c);
                ptr[n] = buf[n];
                n++;
            }
    moa_wordlist *wl = NULL;
    CHECK_OK(moa_wordlist_from_words(ptr, (size_t)n, &wl));
    return wl;
}

static moa_eval_model fake_eval_model(fake_model *f) {
    moa_eval_model m;
    memset(&m, 0, sizeof m);
    m.tok.count_tokens = fake_count;
    m.tok.encode_prompt = fake_encode;
    m.tok.detokenize = fake_detok;
    m.tok.data = f;
    m.begin_length = fake_begin;
    m.respond = fake_respond;
    m.data = f;
    return m;
}

static char *slurp(const char *path) {
    char *s = NULL;
    size_t n = 0;
    if (moa_read_file(path, &s, &n) < 0) return NULL;
    return s;
}

TEST(runner_resume) {
    moa_wordlist *words = synthetic_words();
    if (!words) return;
    static const int lengths[2] = {300, 600};
    moa_longeval_params p = moa_longeval_default_params();
    p.lengths = lengths;
    p.n_lengths = 2;
    p.samples_per_cell = 2;
    p.seed = 7;
    p.max_new_tokens = 64;
    p.words = words;
    p.label = "fake";
    p.model_settings = "{\"model\":\"fake\"}";

    /* 1. uninterrupted */
    fake_model f1 = {.fail_after = -1};
    moa_eval_model m1 = fake_eval_model(&f1);
    p.log_path = tmp_path("full.log");
    p.resume = 0;
    moa_longeval_results *full = NULL;
    CHECK_OK(moa_longeval_run(&p, &m1, NULL, NULL, &full));
    CHECK_EQ_INT(f1.calls, 40);
    CHECK_EQ_INT(f1.n_begun, 2);
    CHECK_EQ_INT(f1.lengths_begun[1], 600);
    CHECK_EQ_INT(f1.n_ctx_begun[1], 664);
    if (!full) { moa_wordlist_free(words); free(f1.prompt); return; }
    CHECK_EQ_INT(full->n_rows, 40);
    int n_correct = 0;
    for (int64_t i = 0; i < full->n_rows; i++) {
        const moa_longeval_row *w = &full->rows[i];
        CHECK(w->prompt_tokens <= w->length && w->prompt_tokens >= w->length - 64);
        CHECK_EQ_INT(w->bin, (int)(10 * (int64_t)w->query_index / w->lines));
        CHECK_EQ_INT(w->seed, moa_longeval_sample_seed(7, w->length, w->bin, w->k));
        n_correct += w->correct;
        /* correct iff the fake answered the value (not "12") */
        CHECK_EQ_INT(w->correct, strcmp(w->output, "12") != 0);
    }
    CHECK(n_correct > 0 && n_correct < 40);   /* the fake is wrong on about a third */
    const char *full_json = tmp_path("full.json");
    CHECK_OK(moa_longeval_write_json(full, full_json));

    /* 2. the log cut after k rows, plus a torn half line, resumed */
    char *log = slurp(p.log_path);
    CHECK(log != NULL);
    const int k = 13;
    const char *cut = log;
    for (int i = 0; i < 1 + k && cut; i++) {
        cut = strchr(cut, '\n');
        if (cut) cut++;
    }
    CHECK(cut != NULL);
    const char *cut_log = tmp_path("cut.log");
    FILE *fp = fopen(cut_log, "wb");
    if (fp && cut) {
        fwrite(log, 1, (size_t)(cut - log), fp);
        fwrite(cut, 1, 25, fp);   /* torn: no newline */
        fclose(fp);
    }
    fake_model f2 = {.fail_after = -1};
    moa_eval_model m2 = fake_eval_model(&f2);
    p.log_path = cut_log;
    p.resume = 1;
    /* collect only: the k finished rows, nothing run, the torn line dropped */
    p.collect_only = 1;
    moa_longeval_results *part = NULL;
    CHECK_OK(moa_longeval_run(&p, &m2, NULL, NULL, &part));
    CHECK_EQ_INT(f2.calls, 0);
    if (part) {
        CHECK_EQ_INT(part->n_rows, k);
        CHECK_EQ_INT(part->lengths[0].n, k);
        CHECK_EQ_INT(part->lengths[1].n, 0);
        CHECK_NEAR(part->lengths[1].accuracy, -1, 0);
        for (int64_t i = 0; i < k; i++) {   /* full rows of length 300 sit at bin * 2 + k */
            const moa_longeval_row *w = &part->rows[i];
            CHECK(w->length == 300 && (w->k == 0 || w->bin < 3));
            CHECK_STR(w->output, full->rows[w->bin * 2 + w->k].output);
        }
    }
    moa_longeval_results_free(part);
    p.collect_only = 0;
    moa_longeval_results *resumed = NULL;
    CHECK_OK(moa_longeval_run(&p, &m2, NULL, NULL, &resumed));
    CHECK_EQ_INT(f2.calls, 40 - k);
    const char *res_json = tmp_path("resumed.json");
    if (resumed) CHECK_OK(moa_longeval_write_json(resumed, res_json));
    char *a = slurp(full_json), *b = slurp(res_json);
    CHECK(a && b && strcmp(a, b) == 0);
    free(a);
    free(b);
    /* the log itself is complete again: header + 40 rows, no torn bytes */
    char *relog = slurp(cut_log);
    int lines = 0;
    for (char *c = relog; c && *c; c++) lines += *c == '\n';
    CHECK_EQ_INT(lines, 41);
    CHECK(relog && relog[strlen(relog) - 1] == '\n');
    free(relog);
    moa_longeval_results_free(resumed);

    /* 3. interrupted by the responder, then resumed: same results again */
    fake_model f3 = {.fail_after = 17};
    moa_eval_model m3 = fake_eval_model(&f3);
    p.log_path = tmp_path("interrupted.log");
    p.resume = 0;
    moa_longeval_results *none = NULL;
    CHECK(moa_longeval_run(&p, &m3, NULL, NULL, &none) == MOA_ERR_INTERRUPTED);
    CHECK(none == NULL);
    f3.fail_after = -1;
    p.resume = 1;
    CHECK_OK(moa_longeval_run(&p, &m3, NULL, NULL, &resumed));
    CHECK_EQ_INT(f3.calls, 40);
    if (resumed) CHECK_OK(moa_longeval_write_json(resumed, res_json));
    a = slurp(full_json);
    b = slurp(res_json);
    CHECK(a && b && strcmp(a, b) == 0);
    free(a);
    free(b);
    moa_longeval_results_free(resumed);

    /* 4. resume with other settings: a clear mismatch error, log untouched */
    p.seed = 8;
    fake_model f4 = {.fail_after = -1};
    moa_eval_model m4 = fake_eval_model(&f4);
    char *before = slurp(p.log_path);
    CHECK(moa_longeval_run(&p, &m4, NULL, NULL, &resumed) == MOA_ERR_MISMATCH);
    CHECK(strstr(moa_last_error(), "settings.seed") != NULL);
    CHECK_EQ_INT(f4.calls, 0);
    char *after = slurp(p.log_path);
    CHECK(before && after && strcmp(before, after) == 0);
    free(before);
    free(after);
    /* a corrupt row in the middle is a format error naming the line */
    p.seed = 7;
    fp = fopen(p.log_path, "ab");
    if (fp) { fputs("{not json\n{}\n", fp); fclose(fp); }
    CHECK(moa_longeval_run(&p, &m4, NULL, NULL, &resumed) == MOA_ERR_FORMAT);
    CHECK(strstr(moa_last_error(), ":42:") != NULL);

    free(log);
    free(f1.prompt);
    free(f2.prompt);
    free(f3.prompt);
    free(f4.prompt);
    moa_longeval_results_free(full);
    moa_wordlist_free(words);
}

/* Needle tasks through the same runner: a responder that repeats the prompt contains every
 * expected value (all correct); one that answers "none" gets none; an unknown task fails. */
TEST(runner_needle_tasks) {
    moa_wordlist *words = synthetic_words();
    if (!words) return;
    static const int lengths[1] = {400};
    const char *tasks[3] = {"needle", "needle-multikey", "needle-multivalue"};
    for (int t = 0; t < 3; t++)
        for (int echo = 1; echo <= 2; echo++) {
            moa_longeval_params p = moa_longeval_default_params();
            p.lengths = lengths;
            p.n_lengths = 1;
            p.samples_per_cell = 1;
            p.max_new_tokens = 100000;
            p.words = words;
            p.task = tasks[t];
            p.label = "fake-needle";
            p.log_path = tmp_path("needle.log");
            fake_model f = {.fail_after = -1, .echo = echo};
            moa_eval_model m = fake_eval_model(&f);
            moa_longeval_results *r = NULL;
            CHECK_OK(moa_longeval_run(&p, &m, NULL, NULL, &r));
            if (r) {
                CHECK_EQ_INT(r->n_rows, 10);
                CHECK_NEAR(r->lengths[0].accuracy, echo == 1 ? 1.0 : 0.0, 0);
                for (int64_t i = 0; i < r->n_rows; i++) CHECK(strchr(r->rows[i].expected, '\n') ? t == 2 : 1);
                CHECK(strstr(r->settings, tasks[t]) != NULL);
            }
            moa_longeval_results_free(r);
            free(f.prompt);
        }
    moa_longeval_params p = moa_longeval_default_params();
    p.lengths = lengths;
    p.n_lengths = 1;
    p.words = words;
    p.task = "haystack";
    p.label = "bad";
    p.log_path = tmp_path("bad.log");
    fake_model f = {.fail_after = -1, .echo = 1};
    moa_eval_model m = fake_eval_model(&f);
    moa_longeval_results *r = NULL;
    CHECK(moa_longeval_run(&p, &m, NULL, NULL, &r) == MOA_ERR_INVALID_ARG);
    CHECK(strstr(moa_last_error(), "haystack") != NULL);
    moa_longeval_results_free(r);
    free(f.prompt);
    moa_wordlist_free(words);
}

int main(void) {
    RUN(aggregation_known_answers);
    RUN(aggregation_edge_cases);
    RUN(sample_seeds);
    RUN(png_writer);
    RUN(heat_colours_and_png_heatmap);
    RUN(svg_outputs);
    RUN(runner_resume);
    RUN(runner_needle_tasks);
    return test_summary();
}
