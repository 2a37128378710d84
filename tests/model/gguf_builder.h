/* gguf_builder.h - builds GGUF images in memory for tests (valid ones, and corrupt ones by
 * editing the bytes afterwards). Written from the format description, independent of the
 * reader under test. */
#ifndef MOA_TEST_GGUF_BUILDER_H
#define MOA_TEST_GGUF_BUILDER_H

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

typedef struct { uint8_t *b; size_t n, cap; } gbuf;

static inline void gb_put(gbuf *g, const void *p, size_t n) {
    if (g->n + n > g->cap) {
        g->cap = (g->n + n) * 2 + 64;
        g->b = realloc(g->b, g->cap);
    }
    memcpy(g->b + g->n, p, n);
    g->n += n;
}
static inline void gb_u8(gbuf *g, uint8_t v) { gb_put(g, &v, 1); }
static inline void gb_u32(gbuf *g, uint32_t v) { uint8_t b[4] = {(uint8_t)v, (uint8_t)(v >> 8), (uint8_t)(v >> 16), (uint8_t)(v >> 24)}; gb_put(g, b, 4); }
static inline void gb_u64(gbuf *g, uint64_t v) { gb_u32(g, (uint32_t)v); gb_u32(g, (uint32_t)(v >> 32)); }
static inline void gb_f32(gbuf *g, float f) { uint32_t u; memcpy(&u, &f, 4); gb_u32(g, u); }
static inline void gb_str(gbuf *g, const char *s) { gb_u64(g, strlen(s)); gb_put(g, s, strlen(s)); }

/* metadata records */
static inline void kv_u32(gbuf *g, const char *k, uint32_t v) { gb_str(g, k); gb_u32(g, 4); gb_u32(g, v); }
static inline void kv_f32(gbuf *g, const char *k, float v) { gb_str(g, k); gb_u32(g, 6); gb_f32(g, v); }
static inline void kv_bool(gbuf *g, const char *k, int v) { gb_str(g, k); gb_u32(g, 7); gb_u8(g, (uint8_t)v); }
static inline void kv_str(gbuf *g, const char *k, const char *v) { gb_str(g, k); gb_u32(g, 8); gb_str(g, v); }
static inline void kv_arr_i32(gbuf *g, const char *k, const int32_t *v, uint64_t n) {
    gb_str(g, k); gb_u32(g, 9); gb_u32(g, 5); gb_u64(g, n);
    for (uint64_t i = 0; i < n; i++) gb_u32(g, (uint32_t)v[i]);
}
static inline void kv_arr_str(gbuf *g, const char *k, const char *const *v, uint64_t n) {
    gb_str(g, k); gb_u32(g, 9); gb_u32(g, 8); gb_u64(g, n);
    for (uint64_t i = 0; i < n; i++) gb_str(g, v[i]);
}

/* tensor descriptions: collected, then written with their data */
typedef struct {
    const char *name;
    uint32_t n_dims;
    uint64_t ne[4];
    uint32_t type;
    const void *data;
    size_t n_bytes;
} gtensor;

/* header + kvs (already in `kvs`, n_kv records) + tensor infos + padding + data */
static inline gbuf gguf_build(uint32_t version, const gbuf *kvs, uint64_t n_kv, const gtensor *ts,
                       uint64_t n_t, uint32_t alignment) {
    gbuf g = {0};
    gb_put(&g, "GGUF", 4);
    gb_u32(&g, version);
    gb_u64(&g, n_t);
    gb_u64(&g, n_kv);
    if (kvs->n) gb_put(&g, kvs->b, kvs->n);
    uint64_t off = 0;
    uint64_t *offs = calloc(n_t + 1, sizeof *offs);
    for (uint64_t i = 0; i < n_t; i++) {
        gb_str(&g, ts[i].name);
        gb_u32(&g, ts[i].n_dims);
        for (uint32_t d = 0; d < ts[i].n_dims; d++) gb_u64(&g, d < 4 ? ts[i].ne[d] : 1);
        gb_u32(&g, ts[i].type);
        gb_u64(&g, off);
        offs[i] = off;
        off += (ts[i].n_bytes + alignment - 1) / alignment * alignment;
    }
    while (g.n % alignment) gb_u8(&g, 0);
    size_t data_start = g.n;
    for (uint64_t i = 0; i < n_t; i++) {
        while (g.n < data_start + offs[i]) gb_u8(&g, 0);
        gb_put(&g, ts[i].data, ts[i].n_bytes);
    }
    while (g.n % alignment) gb_u8(&g, 0);
    free(offs);
    return g;
}

#endif
