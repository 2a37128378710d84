/* gguf.h - a validating GGUF (v2, v3) reader: metadata, tensor table, mmapped tensor data.
 *
 * Every count, length and offset in the file is checked before use (no overflow, nothing
 * read past the end of the file). The tensor data stays mmapped read-only; pointers returned
 * by moa_gguf_tensor_data() are valid until moa_gguf_close(). A moa_gguf is immutable after
 * open and may be shared between threads: every accessor below is const and thread-safe, and
 * every pointer it returns (keys, strings, arrays, tensor records and data) is owned by the
 * handle and valid until moa_gguf_close().
 */
#ifndef MOA_GGUF_H
#define MOA_GGUF_H

#include <stddef.h>
#include <stdint.h>
#include "moa/base.h"
#include "quant.h"   /* moa_ggml_type and block sizes */

typedef enum {
    MOA_GGUF_U8 = 0, MOA_GGUF_I8 = 1, MOA_GGUF_U16 = 2, MOA_GGUF_I16 = 3,
    MOA_GGUF_U32 = 4, MOA_GGUF_I32 = 5, MOA_GGUF_F32 = 6, MOA_GGUF_BOOL = 7,
    MOA_GGUF_STRING = 8, MOA_GGUF_ARRAY = 9, MOA_GGUF_U64 = 10, MOA_GGUF_I64 = 11,
    MOA_GGUF_F64 = 12,
} moa_gguf_vtype;



typedef struct moa_gguf moa_gguf;

typedef struct {
    char name[65];         /* NUL-terminated */
    uint32_t n_dims;
    uint64_t ne[4];        /* ne[0] is the contiguous dimension; unused dims are 1 */
    moa_ggml_type type;
    uint64_t offset;       /* from the data section start */
    uint64_t n_bytes;      /* size of the data in the file */
    uint64_t n_elements;
} moa_gguf_tensor;

/* Open and validate. On error returns a status and moa_last_error() names the file, the
 * byte offset and what was expected. The caller owns *out (moa_gguf_close, or hand it to
 * moa_model_from_gguf). Thread-safe. */
moa_status moa_gguf_open(const char *path, moa_gguf **out);
/* Same, over a caller-owned memory image (used by the fuzzer and tests; not copied, must
 * outlive the handle). */
moa_status moa_gguf_open_memory(const void *data, size_t size, const char *name, moa_gguf **out);
/* Accepts NULL. Unmaps the file: every pointer obtained from g becomes invalid. */
void moa_gguf_close(moa_gguf *g);

uint32_t moa_gguf_version(const moa_gguf *g);
const char *moa_gguf_path(const moa_gguf *g);
uint64_t moa_gguf_file_size(const moa_gguf *g);
uint32_t moa_gguf_alignment(const moa_gguf *g);

/* ---- metadata ---- */
int64_t moa_gguf_n_kv(const moa_gguf *g);
const char *moa_gguf_kv_key(const moa_gguf *g, int64_t i);
moa_gguf_vtype moa_gguf_kv_type(const moa_gguf *g, int64_t i);
int64_t moa_gguf_find_key(const moa_gguf *g, const char *key);  /* -1 if absent */

/* Typed getters: MOA_OK, or MOA_ERR_FORMAT if the key is absent or of another type.
 * Integer getters accept any integer type whose value fits. */
moa_status moa_gguf_get_u32(const moa_gguf *g, const char *key, uint32_t *out);
moa_status moa_gguf_get_i64(const moa_gguf *g, const char *key, int64_t *out);
moa_status moa_gguf_get_f32(const moa_gguf *g, const char *key, float *out);
moa_status moa_gguf_get_bool(const moa_gguf *g, const char *key, int *out);
/* String: NUL-terminated copy owned by g. */
moa_status moa_gguf_get_str(const moa_gguf *g, const char *key, const char **out, uint64_t *len);
/* Arrays: element type and count; string arrays via moa_gguf_get_arr_str. */
moa_status moa_gguf_get_arr_info(const moa_gguf *g, const char *key, moa_gguf_vtype *etype,
                                 uint64_t *count);
/* Pointer to the packed elements of a numeric array (little-endian, as in the file). */
moa_status moa_gguf_get_arr_data(const moa_gguf *g, const char *key, const void **data);
/* i-th element of a string array: NUL-terminated copy owned by g. */
moa_status moa_gguf_get_arr_str(const moa_gguf *g, const char *key, uint64_t i,
                                const char **out, uint64_t *len);
/* Value of any scalar key formatted for display (arrays: "[type x count]") into the caller's
 * buf of n bytes. */
void moa_gguf_kv_format(const moa_gguf *g, int64_t i, char *buf, size_t n);

/* ---- tensors ---- */
int64_t moa_gguf_n_tensors(const moa_gguf *g);
const moa_gguf_tensor *moa_gguf_tensor_at(const moa_gguf *g, int64_t i);
const moa_gguf_tensor *moa_gguf_find_tensor(const moa_gguf *g, const char *name); /* NULL */
const void *moa_gguf_tensor_data(const moa_gguf *g, const moa_gguf_tensor *t);


#endif /* MOA_GGUF_H */
