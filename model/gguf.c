/* gguf.c - validating GGUF v2/v3 reader.
 *
 * The whole file is mmapped read-only. Parsing walks a bounds-checked cursor; every count,
 * length and offset is checked against the bytes that remain before it is used. Metadata
 * strings are copied (NUL-terminated) into one arena owned by the handle; numeric arrays
 * and tensor data are referenced in place.
 */
#include "moa/model.h"
#include "moa/common.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define GGUF_MAX_DIMS 4
#define GGUF_MAX_NAME 64
#define GGUF_DEFAULT_ALIGNMENT 32

typedef struct {
    char *key;
    moa_gguf_vtype type;
    union { uint64_t u; int64_t i; double f; } num;   /* scalars */
    char *str; uint64_t str_len;                       /* string */
    moa_gguf_vtype arr_type; uint64_t arr_count;       /* array */
    const uint8_t *arr_data;                            /* numeric array elements (in file) */
    char **arr_strs; uint64_t *arr_lens;                /* string array elements (copies) */
} gguf_kv;

struct moa_gguf {
    char *path;
    const uint8_t *base;     /* file image */
    uint64_t size;
    int mapped;              /* munmap on close */
    uint32_t version;
    uint32_t alignment;
    uint64_t data_start;
    int64_t n_kv;
    gguf_kv *kv;
    int64_t *kv_hash;        /* open addressing over kv indices, -1 = empty */
    uint64_t kv_hash_cap;
    int64_t n_tensors;
    moa_gguf_tensor *tensors;
    int64_t *t_hash;
    uint64_t t_hash_cap;
};

/* ---- value types ------------------------------------------------------------------- */
static const char *vtype_name(uint32_t t) {
    static const char *n[] = {"u8", "i8", "u16", "i16", "u32", "i32", "f32", "bool",
                              "string", "array", "u64", "i64", "f64"};
    return t < 13 ? n[t] : "?";
}

static uint32_t vtype_size(uint32_t t) {
    switch (t) {
    case MOA_GGUF_U8: case MOA_GGUF_I8: case MOA_GGUF_BOOL: return 1;
    case MOA_GGUF_U16: case MOA_GGUF_I16: return 2;
    case MOA_GGUF_U32: case MOA_GGUF_I32: case MOA_GGUF_F32: return 4;
    case MOA_GGUF_U64: case MOA_GGUF_I64: case MOA_GGUF_F64: return 8;
    default: return 0;
    }
}

/* ---- cursor ---------------------------------------------------------------------------- */
typedef struct {
    const moa_gguf *g;
    uint64_t pos;
} cursor;

static moa_status perr(const cursor *c, const char *fmt, ...) MOA_PRINTF(2, 3);
static moa_status perr(const cursor *c, const char *fmt, ...) {
    char msg[768];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return moa_err(MOA_ERR_FORMAT, "%s: offset %llu: %s", c->g->path,
                   (unsigned long long)c->pos, msg);
}

static int need(const cursor *c, uint64_t n) { return n <= c->g->size - c->pos; }

static moa_status rd(cursor *c, void *dst, uint64_t n, const char *what) {
    if (!need(c, n))
        return perr(c, "file truncated reading %s (%llu bytes needed, %llu left)", what,
                    (unsigned long long)n, (unsigned long long)(c->g->size - c->pos));
    memcpy(dst, c->g->base + c->pos, n);
    c->pos += n;
    return MOA_OK;
}

static uint16_t le16(const uint8_t *p) { return (uint16_t)(p[0] | p[1] << 8); }
static uint32_t le32(const uint8_t *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static uint64_t le64(const uint8_t *p) { return (uint64_t)le32(p) | (uint64_t)le32(p + 4) << 32; }

static moa_status rd_u32(cursor *c, uint32_t *v, const char *what) {
    uint8_t b[4] = {0};
    MOA_TRY(rd(c, b, 4, what));
    *v = le32(b);
    return MOA_OK;
}
static moa_status rd_u64(cursor *c, uint64_t *v, const char *what) {
    uint8_t b[8] = {0};
    MOA_TRY(rd(c, b, 8, what));
    *v = le64(b);
    return MOA_OK;
}

/* A string: u64 length + bytes. Returns a malloc'd NUL-terminated copy. */
static moa_status rd_str(cursor *c, char **out, uint64_t *len, uint64_t max_len, const char *what) {
    uint64_t n;
    uint64_t at = c->pos;
    MOA_TRY(rd_u64(c, &n, what));
    if (n > max_len) {
        c->pos = at;
        return perr(c, "%s length %llu exceeds the limit %llu", what, (unsigned long long)n,
                    (unsigned long long)max_len);
    }
    if (!need(c, n)) {
        c->pos = at;
        return perr(c, "%s length %llu runs past the end of the file", what, (unsigned long long)n);
    }
    char *s = malloc(n + 1);
    if (!s) return moa_err(MOA_ERR_NOMEM, "out of memory reading %s", what);
    memcpy(s, c->g->base + c->pos, n);
    s[n] = '\0';
    c->pos += n;
    *out = s;
    if (len) *len = n;
    return MOA_OK;
}

/* ---- hashing --------------------------------------------------------------------------- */
static uint64_t fnv1a(const char *s) {
    uint64_t h = 1469598103934665603ull;
    for (; *s; s++) { h ^= (uint8_t)*s; h *= 1099511628211ull; }
    return h;
}

static uint64_t hash_cap_for(int64_t n) {
    uint64_t cap = 16;
    while (cap < (uint64_t)n * 2 + 1) cap <<= 1;
    return cap;
}

/* Insert name with index idx; returns the index of an existing equal name, or -1. */
static int64_t hash_insert(int64_t *tab, uint64_t cap, const char *name, int64_t idx,
                           const char *(*name_of)(const moa_gguf *, int64_t), const moa_gguf *g) {
    uint64_t h = fnv1a(name) & (cap - 1);
    while (tab[h] >= 0) {
        if (strcmp(name_of(g, tab[h]), name) == 0) return tab[h];
        h = (h + 1) & (cap - 1);
    }
    tab[h] = idx;
    return -1;
}

static int64_t hash_find(const int64_t *tab, uint64_t cap, const char *name,
                         const char *(*name_of)(const moa_gguf *, int64_t), const moa_gguf *g) {
    if (!tab) return -1;
    uint64_t h = fnv1a(name) & (cap - 1);
    while (tab[h] >= 0) {
        if (strcmp(name_of(g, tab[h]), name) == 0) return tab[h];
        h = (h + 1) & (cap - 1);
    }
    return -1;
}

static const char *kv_name(const moa_gguf *g, int64_t i) { return g->kv[i].key; }
static const char *t_name(const moa_gguf *g, int64_t i) { return g->tensors[i].name; }

/* ---- parsing --------------------------------------------------------------------------- */
static moa_status parse_scalar(cursor *c, gguf_kv *kv, uint32_t type) {
    uint8_t b[8] = {0};
    uint32_t sz = vtype_size(type);
    MOA_TRY(rd(c, b, sz, "metadata value"));
    switch (type) {
    case MOA_GGUF_U8: kv->num.u = b[0]; break;
    case MOA_GGUF_I8: kv->num.i = (int8_t)b[0]; break;
    case MOA_GGUF_BOOL:
        if (b[0] > 1) { c->pos -= 1; return perr(c, "key '%s': bool value %u is not 0 or 1", kv->key, b[0]); }
        kv->num.u = b[0];
        break;
    case MOA_GGUF_U16: kv->num.u = le16(b); break;
    case MOA_GGUF_I16: kv->num.i = (int16_t)le16(b); break;
    case MOA_GGUF_U32: kv->num.u = le32(b); break;
    case MOA_GGUF_I32: kv->num.i = (int32_t)le32(b); break;
    case MOA_GGUF_F32: { uint32_t u = le32(b); float f; memcpy(&f, &u, 4); kv->num.f = f; break; }
    case MOA_GGUF_U64: kv->num.u = le64(b); break;
    case MOA_GGUF_I64: kv->num.i = (int64_t)le64(b); break;
    case MOA_GGUF_F64: { uint64_t u = le64(b); double f; memcpy(&f, &u, 8); kv->num.f = f; break; }
    default: return perr(c, "key '%s': bad scalar type %u", kv->key, type);
    }
    return MOA_OK;
}

static moa_status parse_kv(cursor *c, gguf_kv *kv) {
    MOA_TRY(rd_str(c, &kv->key, NULL, 65535, "metadata key"));
    if (!kv->key[0]) return perr(c, "empty metadata key");
    uint32_t type;
    uint64_t at = c->pos;
    MOA_TRY(rd_u32(c, &type, "metadata value type"));
    if (type > MOA_GGUF_F64) { c->pos = at; return perr(c, "key '%s': unknown value type %u (expected 0..12)", kv->key, type); }
    kv->type = (moa_gguf_vtype)type;
    if (type == MOA_GGUF_STRING)
        return rd_str(c, &kv->str, &kv->str_len, c->g->size, "string value");
    if (type != MOA_GGUF_ARRAY) return parse_scalar(c, kv, type);

    uint32_t et;
    uint64_t count;
    at = c->pos;
    MOA_TRY(rd_u32(c, &et, "array element type"));
    if (et == MOA_GGUF_ARRAY) { c->pos = at; return perr(c, "key '%s': nested arrays are not supported", kv->key); }
    if (et > MOA_GGUF_F64) { c->pos = at; return perr(c, "key '%s': unknown array element type %u", kv->key, et); }
    at = c->pos;
    MOA_TRY(rd_u64(c, &count, "array count"));
    kv->arr_type = (moa_gguf_vtype)et;
    kv->arr_count = count;
    if (et == MOA_GGUF_STRING) {
        /* each element needs at least 8 bytes (its length) */
        if (count > (c->g->size - c->pos) / 8) {
            c->pos = at;
            return perr(c, "key '%s': string array count %llu cannot fit in the file", kv->key,
                        (unsigned long long)count);
        }
        kv->arr_strs = moa_calloc_array(count ? count : 1, sizeof(char *));
        kv->arr_lens = moa_calloc_array(count ? count : 1, sizeof(uint64_t));
        if (!kv->arr_strs || !kv->arr_lens) return moa_err(MOA_ERR_NOMEM, "out of memory for '%s'", kv->key);
        for (uint64_t i = 0; i < count; i++)
            MOA_TRY(rd_str(c, &kv->arr_strs[i], &kv->arr_lens[i], c->g->size, "string array element"));
        return MOA_OK;
    }
    uint64_t es = vtype_size(et);
    if (count > (c->g->size - c->pos) / es) {
        c->pos = at;
        return perr(c, "key '%s': array of %llu %s runs past the end of the file", kv->key,
                    (unsigned long long)count, vtype_name(et));
    }
    kv->arr_data = c->g->base + c->pos;
    if (et == MOA_GGUF_BOOL)
        for (uint64_t i = 0; i < count; i++)
            if (kv->arr_data[i] > 1) return perr(c, "key '%s': bool element %llu is not 0 or 1", kv->key, (unsigned long long)i);
    c->pos += count * es;
    return MOA_OK;
}

static moa_status parse_tensor_info(cursor *c, moa_gguf_tensor *t) {
    char *name = NULL;
    uint64_t nlen;
    MOA_TRY(rd_str(c, &name, &nlen, GGUF_MAX_NAME, "tensor name"));
    memcpy(t->name, name, nlen + 1);
    free(name);
    if (!t->name[0]) return perr(c, "empty tensor name");
    uint64_t at = c->pos;
    MOA_TRY(rd_u32(c, &t->n_dims, "tensor n_dims"));
    if (t->n_dims < 1 || t->n_dims > GGUF_MAX_DIMS) {
        c->pos = at;
        return perr(c, "tensor '%s': n_dims %u (expected 1..%d)", t->name, t->n_dims, GGUF_MAX_DIMS);
    }
    uint64_t n = 1;
    for (int d = 0; d < GGUF_MAX_DIMS; d++) t->ne[d] = 1;
    for (uint32_t d = 0; d < t->n_dims; d++) {
        at = c->pos;
        MOA_TRY(rd_u64(c, &t->ne[d], "tensor dimension"));
        if (t->ne[d] == 0 || t->ne[d] > ((uint64_t)1 << 40)) {
            c->pos = at;
            return perr(c, "tensor '%s': dimension %u is %llu (expected 1..2^40)", t->name, d,
                        (unsigned long long)t->ne[d]);
        }
        if (n > UINT64_MAX / t->ne[d]) { c->pos = at; return perr(c, "tensor '%s': element count overflows", t->name); }
        n *= t->ne[d];
    }
    t->n_elements = n;
    uint32_t type;
    at = c->pos;
    MOA_TRY(rd_u32(c, &type, "tensor type"));
    t->type = (moa_ggml_type)type;
    uint32_t be, bb;
    if (!moa_ggml_type_info(t->type, &be, &bb)) {
        c->pos = at;
        return moa_err(MOA_ERR_UNSUPPORTED, "%s: offset %llu: tensor '%s': unsupported ggml type %u",
                       c->g->path, (unsigned long long)at, t->name, type);
    }
    if (t->ne[0] % be != 0) {
        c->pos = at;
        return perr(c, "tensor '%s': row length %llu is not a multiple of the %s block size %u",
                    t->name, (unsigned long long)t->ne[0], moa_ggml_type_name(t->type), be);
    }
    if (n / be > UINT64_MAX / bb) return perr(c, "tensor '%s': byte size overflows", t->name);
    t->n_bytes = n / be * bb;
    MOA_TRY(rd_u64(c, &t->offset, "tensor offset"));
    return MOA_OK;
}

static int cmp_tensor_offset(const void *a, const void *b) {
    const moa_gguf_tensor *x = *(const moa_gguf_tensor *const *)a, *y = *(const moa_gguf_tensor *const *)b;
    return x->offset < y->offset ? -1 : x->offset > y->offset;
}

static moa_status parse(moa_gguf *g) {
    cursor c = {g, 0};
    uint8_t magic[4];
    MOA_TRY(rd(&c, magic, 4, "magic"));
    if (memcmp(magic, "GGUF", 4) != 0) {
        c.pos = 0;
        return perr(&c, "bad magic %02x %02x %02x %02x (expected \"GGUF\")", magic[0], magic[1], magic[2], magic[3]);
    }
    MOA_TRY(rd_u32(&c, &g->version, "version"));
    if (g->version != 2 && g->version != 3) {
        c.pos = 4;
        return moa_err(MOA_ERR_UNSUPPORTED, "%s: offset 4: GGUF version %u is not supported (expected 2 or 3)",
                       g->path, g->version);
    }
    uint64_t n_tensors, n_kv;
    MOA_TRY(rd_u64(&c, &n_tensors, "tensor count"));
    MOA_TRY(rd_u64(&c, &n_kv, "metadata count"));
    /* a KV needs >= 8+1+4+1 bytes, a tensor info >= 8+1+4+8+4+8 */
    if (n_kv > (g->size - c.pos) / 14) { c.pos = 16; return perr(&c, "metadata count %llu cannot fit in a %llu-byte file", (unsigned long long)n_kv, (unsigned long long)g->size); }
    if (n_tensors > (g->size - c.pos) / 33) { c.pos = 8; return perr(&c, "tensor count %llu cannot fit in a %llu-byte file", (unsigned long long)n_tensors, (unsigned long long)g->size); }

    g->kv = moa_calloc_array(n_kv ? n_kv : 1, sizeof(gguf_kv));
    g->kv_hash_cap = hash_cap_for((int64_t)n_kv);
    g->kv_hash = moa_alloc_array(g->kv_hash_cap, sizeof(int64_t));
    if (!g->kv || !g->kv_hash) return moa_err(MOA_ERR_NOMEM, "out of memory for %llu metadata keys", (unsigned long long)n_kv);
    memset(g->kv_hash, 0xff, g->kv_hash_cap * sizeof(int64_t));
    for (uint64_t i = 0; i < n_kv; i++) {
        uint64_t at = c.pos;
        g->n_kv = (int64_t)i + 1;   /* so close() frees a partial entry */
        MOA_TRY(parse_kv(&c, &g->kv[i]));
        if (hash_insert(g->kv_hash, g->kv_hash_cap, g->kv[i].key, (int64_t)i, kv_name, g) >= 0) {
            c.pos = at;
            return perr(&c, "duplicate metadata key '%s'", g->kv[i].key);
        }
    }
    g->alignment = GGUF_DEFAULT_ALIGNMENT;
    int64_t ai = moa_gguf_find_key(g, "general.alignment");
    if (ai >= 0) {
        const gguf_kv *kv = &g->kv[ai];
        if (kv->type != MOA_GGUF_U32 || kv->num.u == 0 || (kv->num.u & (kv->num.u - 1)) || kv->num.u > (1u << 20))
            return moa_err(MOA_ERR_FORMAT, "%s: general.alignment must be a u32 power of two <= 2^20", g->path);
        g->alignment = (uint32_t)kv->num.u;
    }

    g->tensors = moa_calloc_array(n_tensors ? n_tensors : 1, sizeof(moa_gguf_tensor));
    g->t_hash_cap = hash_cap_for((int64_t)n_tensors);
    g->t_hash = moa_alloc_array(g->t_hash_cap, sizeof(int64_t));
    if (!g->tensors || !g->t_hash) return moa_err(MOA_ERR_NOMEM, "out of memory for %llu tensors", (unsigned long long)n_tensors);
    memset(g->t_hash, 0xff, g->t_hash_cap * sizeof(int64_t));
    for (uint64_t i = 0; i < n_tensors; i++) {
        uint64_t at = c.pos;
        MOA_TRY(parse_tensor_info(&c, &g->tensors[i]));
        g->n_tensors = (int64_t)i + 1;
        if (hash_insert(g->t_hash, g->t_hash_cap, g->tensors[i].name, (int64_t)i, t_name, g) >= 0) {
            c.pos = at;
            return perr(&c, "duplicate tensor name '%s'", g->tensors[i].name);
        }
    }
    uint64_t a = g->alignment;
    g->data_start = (c.pos + a - 1) / a * a;
    if (g->data_start > g->size && n_tensors > 0)
        return perr(&c, "data section starts at %llu, past the end of the %llu-byte file",
                    (unsigned long long)g->data_start, (unsigned long long)g->size);
    uint64_t data_size = g->size > g->data_start ? g->size - g->data_start : 0;
    for (int64_t i = 0; i < g->n_tensors; i++) {
        moa_gguf_tensor *t = &g->tensors[i];
        if (t->offset % a)
            return moa_err(MOA_ERR_FORMAT, "%s: tensor '%s': offset %llu is not a multiple of the alignment %u",
                           g->path, t->name, (unsigned long long)t->offset, g->alignment);
        if (t->offset > data_size || t->n_bytes > data_size - t->offset)
            return moa_err(MOA_ERR_FORMAT, "%s: tensor '%s': data [%llu, +%llu) runs past the end of the file (data section is %llu bytes)",
                           g->path, t->name, (unsigned long long)t->offset, (unsigned long long)t->n_bytes,
                           (unsigned long long)data_size);
    }
    /* tensors must not overlap */
    if (g->n_tensors > 1) {
        moa_gguf_tensor **order = moa_alloc_array((size_t)g->n_tensors, sizeof *order);
        if (!order) return moa_err(MOA_ERR_NOMEM, "out of memory");
        for (int64_t i = 0; i < g->n_tensors; i++) order[i] = &g->tensors[i];
        qsort(order, (size_t)g->n_tensors, sizeof *order, cmp_tensor_offset);
        for (int64_t i = 1; i < g->n_tensors; i++) {
            if (order[i - 1]->offset + order[i - 1]->n_bytes > order[i]->offset) {
                moa_status st = moa_err(MOA_ERR_FORMAT, "%s: tensors '%s' and '%s' overlap in the data section",
                                        g->path, order[i - 1]->name, order[i]->name);
                free(order);
                return st;
            }
        }
        free(order);
    }
    return MOA_OK;
}

static moa_status open_common(moa_gguf *g, moa_gguf **out) {
    moa_status st = parse(g);
    if (st < 0) { moa_gguf_close(g); return st; }
    *out = g;
    return MOA_OK;
}

moa_status moa_gguf_open_memory(const void *data, size_t size, const char *name, moa_gguf **out) {
    *out = NULL;
    moa_gguf *g = calloc(1, sizeof *g);
    if (!g) return moa_err(MOA_ERR_NOMEM, "out of memory");
    g->path = moa_strdup(name ? name : "<memory>");
    g->base = data;
    g->size = size;
    if (!g->path) { free(g); return moa_err(MOA_ERR_NOMEM, "out of memory"); }
    return open_common(g, out);
}

moa_status moa_gguf_open(const char *path, moa_gguf **out) {
    *out = NULL;
    int fd = open(path, O_RDONLY);
    if (fd < 0) return moa_err(MOA_ERR_IO, "cannot open '%s': %s", path, strerror(errno));
    struct stat sb;
    if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
        close(fd);
        return moa_err(MOA_ERR_IO, "'%s' is not a regular file", path);
    }
    if (sb.st_size < 24) {
        close(fd);
        return moa_err(MOA_ERR_FORMAT, "%s: file is %lld bytes, too small for a GGUF header (24 bytes)",
                       path, (long long)sb.st_size);
    }
    void *map = mmap(NULL, (size_t)sb.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (map == MAP_FAILED) return moa_err(MOA_ERR_IO, "cannot mmap '%s': %s", path, strerror(errno));
    moa_gguf *g = calloc(1, sizeof *g);
    if (!g) { munmap(map, (size_t)sb.st_size); return moa_err(MOA_ERR_NOMEM, "out of memory"); }
    g->path = moa_strdup(path);
    g->base = map;
    g->size = (uint64_t)sb.st_size;
    g->mapped = 1;
    if (!g->path) { moa_gguf_close(g); return moa_err(MOA_ERR_NOMEM, "out of memory"); }
    return open_common(g, out);
}

void moa_gguf_close(moa_gguf *g) {
    if (!g) return;
    for (int64_t i = 0; i < g->n_kv; i++) {
        gguf_kv *kv = &g->kv[i];
        free(kv->key);
        free(kv->str);
        if (kv->arr_strs)
            for (uint64_t j = 0; j < kv->arr_count; j++) free(kv->arr_strs[j]);
        free(kv->arr_strs);
        free(kv->arr_lens);
    }
    if (g->mapped) munmap((void *)g->base, g->size);
    MOA_FREE_ALL(g->kv, g->kv_hash, g->tensors, g->t_hash, g->path, g);
}

/* ---- accessors ------------------------------------------------------------------------- */
uint32_t moa_gguf_version(const moa_gguf *g) { return g->version; }
const char *moa_gguf_path(const moa_gguf *g) { return g->path; }
uint64_t moa_gguf_file_size(const moa_gguf *g) { return g->size; }
uint32_t moa_gguf_alignment(const moa_gguf *g) { return g->alignment; }
int64_t moa_gguf_n_kv(const moa_gguf *g) { return g->n_kv; }
const char *moa_gguf_kv_key(const moa_gguf *g, int64_t i) { return i >= 0 && i < g->n_kv ? g->kv[i].key : NULL; }
moa_gguf_vtype moa_gguf_kv_type(const moa_gguf *g, int64_t i) { return g->kv[i].type; }
int64_t moa_gguf_find_key(const moa_gguf *g, const char *key) {
    return hash_find(g->kv_hash, g->kv_hash_cap, key, kv_name, g);
}

static moa_status get_kv(const moa_gguf *g, const char *key, const gguf_kv **kv) {
    int64_t i = moa_gguf_find_key(g, key);
    if (i < 0) return moa_err(MOA_ERR_FORMAT, "%s: metadata key '%s' is missing", g->path, key);
    *kv = &g->kv[i];
    return MOA_OK;
}

static int is_int_type(moa_gguf_vtype t) {
    return t == MOA_GGUF_U8 || t == MOA_GGUF_I8 || t == MOA_GGUF_U16 || t == MOA_GGUF_I16 ||
           t == MOA_GGUF_U32 || t == MOA_GGUF_I32 || t == MOA_GGUF_U64 || t == MOA_GGUF_I64;
}
static int is_signed_type(moa_gguf_vtype t) {
    return t == MOA_GGUF_I8 || t == MOA_GGUF_I16 || t == MOA_GGUF_I32 || t == MOA_GGUF_I64;
}

moa_status moa_gguf_get_i64(const moa_gguf *g, const char *key, int64_t *out) {
    const gguf_kv *kv = NULL;
    MOA_TRY(get_kv(g, key, &kv));
    if (!is_int_type(kv->type))
        return moa_err(MOA_ERR_FORMAT, "%s: metadata key '%s' is a %s (expected an integer)", g->path, key, vtype_name(kv->type));
    if (!is_signed_type(kv->type) && kv->num.u > (uint64_t)INT64_MAX)
        return moa_err(MOA_ERR_FORMAT, "%s: metadata key '%s' = %llu is out of range", g->path, key, (unsigned long long)kv->num.u);
    *out = is_signed_type(kv->type) ? kv->num.i : (int64_t)kv->num.u;
    return MOA_OK;
}

moa_status moa_gguf_get_u32(const moa_gguf *g, const char *key, uint32_t *out) {
    int64_t v;
    MOA_TRY(moa_gguf_get_i64(g, key, &v));
    if (v < 0 || v > (int64_t)UINT32_MAX)
        return moa_err(MOA_ERR_FORMAT, "%s: metadata key '%s' = %lld is out of range for u32", g->path, key, (long long)v);
    *out = (uint32_t)v;
    return MOA_OK;
}

moa_status moa_gguf_get_f32(const moa_gguf *g, const char *key, float *out) {
    const gguf_kv *kv = NULL;
    MOA_TRY(get_kv(g, key, &kv));
    if (kv->type == MOA_GGUF_F32 || kv->type == MOA_GGUF_F64) { *out = (float)kv->num.f; return MOA_OK; }
    if (is_int_type(kv->type)) { *out = is_signed_type(kv->type) ? (float)kv->num.i : (float)kv->num.u; return MOA_OK; }
    return moa_err(MOA_ERR_FORMAT, "%s: metadata key '%s' is a %s (expected a number)", g->path, key, vtype_name(kv->type));
}

moa_status moa_gguf_get_bool(const moa_gguf *g, const char *key, int *out) {
    const gguf_kv *kv = NULL;
    MOA_TRY(get_kv(g, key, &kv));
    if (kv->type != MOA_GGUF_BOOL)
        return moa_err(MOA_ERR_FORMAT, "%s: metadata key '%s' is a %s (expected bool)", g->path, key, vtype_name(kv->type));
    *out = (int)kv->num.u;
    return MOA_OK;
}

moa_status moa_gguf_get_str(const moa_gguf *g, const char *key, const char **out, uint64_t *len) {
    const gguf_kv *kv = NULL;
    MOA_TRY(get_kv(g, key, &kv));
    if (kv->type != MOA_GGUF_STRING)
        return moa_err(MOA_ERR_FORMAT, "%s: metadata key '%s' is a %s (expected string)", g->path, key, vtype_name(kv->type));
    *out = kv->str;
    if (len) *len = kv->str_len;
    return MOA_OK;
}

moa_status moa_gguf_get_arr_info(const moa_gguf *g, const char *key, moa_gguf_vtype *etype, uint64_t *count) {
    const gguf_kv *kv = NULL;
    MOA_TRY(get_kv(g, key, &kv));
    if (kv->type != MOA_GGUF_ARRAY)
        return moa_err(MOA_ERR_FORMAT, "%s: metadata key '%s' is a %s (expected array)", g->path, key, vtype_name(kv->type));
    if (etype) *etype = kv->arr_type;
    if (count) *count = kv->arr_count;
    return MOA_OK;
}

moa_status moa_gguf_get_arr_data(const moa_gguf *g, const char *key, const void **data) {
    const gguf_kv *kv = NULL;
    MOA_TRY(get_kv(g, key, &kv));
    if (kv->type != MOA_GGUF_ARRAY || kv->arr_type == MOA_GGUF_STRING)
        return moa_err(MOA_ERR_FORMAT, "%s: metadata key '%s' is not a numeric array", g->path, key);
    *data = kv->arr_data;
    return MOA_OK;
}

moa_status moa_gguf_get_arr_str(const moa_gguf *g, const char *key, uint64_t i, const char **out, uint64_t *len) {
    const gguf_kv *kv = NULL;
    MOA_TRY(get_kv(g, key, &kv));
    if (kv->type != MOA_GGUF_ARRAY || kv->arr_type != MOA_GGUF_STRING)
        return moa_err(MOA_ERR_FORMAT, "%s: metadata key '%s' is not a string array", g->path, key);
    if (i >= kv->arr_count)
        return moa_err(MOA_ERR_RANGE, "%s: index %llu out of range for '%s' (%llu elements)", g->path,
                       (unsigned long long)i, key, (unsigned long long)kv->arr_count);
    *out = kv->arr_strs[i];
    if (len) *len = kv->arr_lens[i];
    return MOA_OK;
}

void moa_gguf_kv_format(const moa_gguf *g, int64_t i, char *buf, size_t n) {
    const gguf_kv *kv = &g->kv[i];
    switch (kv->type) {
    case MOA_GGUF_STRING: {
        /* printable, truncated */
        size_t o = 0;
        for (uint64_t k = 0; k < kv->str_len && o + 8 < n; k++) {
            unsigned char ch = (unsigned char)kv->str[k];
            if (ch == '\n') { buf[o++] = '\\'; buf[o++] = 'n'; }
            else if (ch < 32) o += (size_t)snprintf(buf + o, n - o, "\\x%02x", ch);
            else buf[o++] = (char)ch;
        }
        if (o < kv->str_len && o + 4 < n) { memcpy(buf + o, "...", 3); o += 3; }
        buf[o < n ? o : n - 1] = '\0';
        break;
    }
    case MOA_GGUF_ARRAY:
        snprintf(buf, n, "[%s x %llu]", vtype_name(kv->arr_type), (unsigned long long)kv->arr_count);
        break;
    case MOA_GGUF_F32: case MOA_GGUF_F64: snprintf(buf, n, "%g", kv->num.f); break;
    case MOA_GGUF_BOOL: snprintf(buf, n, "%s", kv->num.u ? "true" : "false"); break;
    default:
        if (is_signed_type(kv->type)) snprintf(buf, n, "%lld", (long long)kv->num.i);
        else snprintf(buf, n, "%llu", (unsigned long long)kv->num.u);
    }
}

int64_t moa_gguf_n_tensors(const moa_gguf *g) { return g->n_tensors; }
const moa_gguf_tensor *moa_gguf_tensor_at(const moa_gguf *g, int64_t i) {
    return i >= 0 && i < g->n_tensors ? &g->tensors[i] : NULL;
}
const moa_gguf_tensor *moa_gguf_find_tensor(const moa_gguf *g, const char *name) {
    int64_t i = hash_find(g->t_hash, g->t_hash_cap, name, t_name, g);
    return i >= 0 ? &g->tensors[i] : NULL;
}
const void *moa_gguf_tensor_data(const moa_gguf *g, const moa_gguf_tensor *t) {
    return g->base + g->data_start + t->offset;
}
