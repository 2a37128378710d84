/* png.c - a minimal PNG writer: 8-bit RGB, no interlace, filter 0 on every row, the zlib
 * stream made of "stored" (uncompressed) deflate blocks, CRC-32 per chunk, Adler-32 of the
 * raw data. Readable by every PNG decoder; no libpng. */
#include "eval-internal.h"

#include <stdlib.h>
#include <string.h>

/* CRC-32 (ISO 3309 / PNG): reflected polynomial 0xedb88320, table-driven (the table is
 * built per image: no shared state). */
static void crc_table(uint32_t table[256]) {
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++) c = c & 1 ? 0xedb88320u ^ (c >> 1) : c >> 1;
        table[i] = c;
    }
}

static uint32_t crc_update(const uint32_t table[256], uint32_t crc, const uint8_t *p, size_t n) {
    crc = ~crc;
    for (size_t i = 0; i < n; i++) crc = table[(crc ^ p[i]) & 0xff] ^ (crc >> 8);
    return ~crc;
}

static void put32(uint8_t *p, uint32_t v) {
    p[0] = (uint8_t)(v >> 24); p[1] = (uint8_t)(v >> 16); p[2] = (uint8_t)(v >> 8); p[3] = (uint8_t)v;
}

/* Appends a chunk (length, type, data, CRC over type + data) at *pos. */
static void put_chunk(const uint32_t table[256], uint8_t *buf, size_t *pos, const char *type, const uint8_t *data, size_t n) {
    uint8_t *c = buf + *pos;
    put32(c, (uint32_t)n);
    memcpy(c + 4, type, 4);
    if (n) memcpy(c + 8, data, n);
    put32(c + 8 + n, crc_update(table, 0, c + 4, n + 4));
    *pos += 12 + n;
}

moa_status moa_png_encode_rgb(const uint8_t *rgb, int w, int h, uint8_t **png, size_t *len) {
    if (!rgb || !png || !len || w < 1 || h < 1 || w > (1 << 20) || h > (1 << 20))
        return moa_err(MOA_ERR_INVALID_ARG, "moa_png_encode_rgb: bad arguments (%dx%d)", w, h);
    *png = NULL;
    *len = 0;
    size_t row = (size_t)w * 3 + 1, raw_n = row * (size_t)h;
    if (raw_n > ((size_t)1 << 31)) return moa_err(MOA_ERR_INVALID_ARG, "image of %dx%d is too large", w, h);
    size_t n_blocks = raw_n / 65535 + 1;
    size_t zlen = 2 + raw_n + 5 * n_blocks + 4;
    size_t total = 8 + (12 + 13) + (12 + zlen) + 12;
    uint8_t *buf = malloc(total), *z = malloc(zlen);
    if (!buf || !z) { free(buf); free(z); return moa_err(MOA_ERR_NOMEM, "out of memory"); }
    /* zlib stream: CMF 0x78 (deflate, 32K window), FLG 0x01 (check bits: 0x7801 % 31 == 0). */
    size_t zp = 0;
    z[zp++] = 0x78;
    z[zp++] = 0x01;
    uint32_t a = 1, b = 0;   /* Adler-32 of the raw (filtered) bytes */
    size_t left = raw_n, off = 0;
    for (size_t k = 0; k < n_blocks; k++) {
        size_t bn = left > 65535 ? 65535 : left;
        z[zp++] = (uint8_t)(k + 1 == n_blocks ? 1 : 0);   /* BFINAL, BTYPE = 00 (stored) */
        z[zp++] = (uint8_t)(bn & 0xff);
        z[zp++] = (uint8_t)(bn >> 8);
        z[zp++] = (uint8_t)(~bn & 0xff);
        z[zp++] = (uint8_t)((~bn >> 8) & 0xff);
        for (size_t i = 0; i < bn; i++, off++) {
            size_t y = off / row, x = off % row;
            uint8_t v = x == 0 ? 0 : rgb[y * (size_t)w * 3 + (x - 1)];   /* filter type 0 */
            z[zp++] = v;
            a = (a + v) % 65521u;
            b = (b + a) % 65521u;
        }
        left -= bn;
    }
    put32(z + zp, (b << 16) | a);
    zp += 4;
    MOA_ASSERT(zp == zlen);
    uint32_t table[256];
    crc_table(table);
    static const uint8_t sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
    size_t pos = 0;
    memcpy(buf, sig, 8);
    pos = 8;
    uint8_t ihdr[13];
    put32(ihdr, (uint32_t)w);
    put32(ihdr + 4, (uint32_t)h);
    ihdr[8] = 8;    /* bit depth */
    ihdr[9] = 2;    /* colour type: truecolour RGB */
    ihdr[10] = 0;   /* compression: deflate */
    ihdr[11] = 0;   /* filter method 0 */
    ihdr[12] = 0;   /* no interlace */
    put_chunk(table, buf, &pos, "IHDR", ihdr, 13);
    put_chunk(table, buf, &pos, "IDAT", z, zlen);
    put_chunk(table, buf, &pos, "IEND", NULL, 0);
    MOA_ASSERT(pos == total);
    free(z);
    *png = buf;
    *len = total;
    return MOA_OK;
}

moa_status eval_write_atomic(const char *path, const void *data, size_t len) {
    moa_atomic_file af;
    MOA_TRY(moa_atomic_open(&af, path, "wb"));
    if (len && fwrite(data, 1, len, af.fp) != len) {
        moa_atomic_abort(&af);
        return moa_err(MOA_ERR_IO, "cannot write '%s'", path);
    }
    return moa_atomic_commit(&af);
}

moa_status moa_png_write_rgb(const char *path, const uint8_t *rgb, int w, int h) {
    if (!path) return moa_err(MOA_ERR_INVALID_ARG, "moa_png_write_rgb: NULL path");
    uint8_t *png;
    size_t len;
    MOA_TRY(moa_png_encode_rgb(rgb, w, h, &png, &len));
    moa_status st = eval_write_atomic(path, png, len);
    free(png);
    return st;
}

moa_status moa_eval_write_text(const char *path, const char *text) {
    if (!path || !text) return moa_err(MOA_ERR_INVALID_ARG, "moa_eval_write_text: NULL argument");
    return eval_write_atomic(path, text, strlen(text));
}
