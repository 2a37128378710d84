/* calib-file.c - calib.h5 (moa-calib v1): atomic writer, validating reader, readable dump.
 * Layout (docs/formats.md "## calib.h5 (moa-calib v1)"): root attributes; ragged per-sample
 * token ids and strings stored flat with [n+1] offset arrays. Datasets are written without
 * HDF5 modification times, so the same samples give a byte-identical file. */
#include "calib-internal.h"
#include "moa/h5guard.h"
#include "moa/h5util.h"

#include <stdlib.h>
#include <string.h>

#define STR_ATTR_CAP ((size_t)1 << 20)

void moa_calib_sample_clear(moa_calib_sample *s) {
    if (!s) return;
    MOA_FREE_ALL(s->tokens, s->task, s->expected, s->params);
    memset(s, 0, sizeof *s);
}

void moa_calib_file_free(moa_calib_file *f) {
    if (!f) return;
    if (f->samples)
        for (int64_t i = 0; i < f->n_samples; i++) moa_calib_sample_clear(&f->samples[i]);
    MOA_FREE_ALL(f->samples, f->model_sha256, f->tokenizer, f->chat_template, f->tool_version,
                 f->build_params, f);
}

/* ---- writer ------------------------------------------------------------------------------- */
/* A rank-1 or rank-2 dataset without time stamps (deterministic bytes). */
static moa_status write_ds(hid_t file, const char *name, hid_t type, int rank, const hsize_t *dims,
                           const void *data) {
    hid_t sp = H5Screate_simple(rank, dims, NULL);
    hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
    if (sp < 0 || dcpl < 0) {
        if (sp >= 0) H5Sclose(sp);
        if (dcpl >= 0) H5Pclose(dcpl);
        return moa_err(MOA_ERR_IO, "HDF5: cannot prepare dataset '%s'", name);
    }
    H5Pset_obj_track_times(dcpl, 0);
    hid_t d = H5Dcreate2(file, name, type, sp, H5P_DEFAULT, dcpl, H5P_DEFAULT);
    H5Pclose(dcpl);
    H5Sclose(sp);
    if (d < 0) return moa_err(MOA_ERR_IO, "HDF5: cannot create dataset '%s'", name);
    static const char dummy = 0;
    herr_t e = H5Dwrite(d, type, H5S_ALL, H5S_ALL, H5P_DEFAULT, data ? data : &dummy);
    H5Dclose(d);
    if (e < 0) return moa_err(MOA_ERR_IO, "HDF5: cannot write dataset '%s'", name);
    return MOA_OK;
}

/* Writes strings get(i) for i < n as <name>_text (uint8) + <name>_offset (int64 [n+1]). */
static moa_status write_strings(hid_t file, const char *name, const moa_calib_file *f, int which) {
    int64_t n = f->n_samples;
    int64_t *off = moa_alloc_array((size_t)n + 1, sizeof *off);
    if (!off) return moa_err(MOA_ERR_NOMEM, "out of memory writing '%s'", name);
    off[0] = 0;
    for (int64_t i = 0; i < n; i++) {
        const moa_calib_sample *s = &f->samples[i];
        const char *str = which == 0 ? s->task : which == 1 ? s->expected : s->params;
        off[i + 1] = off[i] + (int64_t)(str ? strlen(str) : 0);
    }
    uint8_t *text = moa_alloc_array((size_t)off[n] + 1, 1);
    if (!text) { free(off); return moa_err(MOA_ERR_NOMEM, "out of memory writing '%s'", name); }
    for (int64_t i = 0; i < n; i++) {
        const moa_calib_sample *s = &f->samples[i];
        const char *str = which == 0 ? s->task : which == 1 ? s->expected : s->params;
        if (str) memcpy(text + off[i], str, (size_t)(off[i + 1] - off[i]));
    }
    char dn[64];
    hsize_t d1 = (hsize_t)off[n], d2 = (hsize_t)n + 1;
    snprintf(dn, sizeof dn, "%s_text", name);
    moa_status st = write_ds(file, dn, H5T_NATIVE_UINT8, 1, &d1, text);
    snprintf(dn, sizeof dn, "%s_offset", name);
    if (st >= 0) st = write_ds(file, dn, H5T_NATIVE_INT64, 1, &d2, off);
    free(text);
    free(off);
    return st;
}

static moa_status write_all(hid_t file, const moa_calib_file *f) {
    int64_t n = f->n_samples;
    MOA_TRY(moa_h5_attr_write_str(file, "format", MOA_CALIB_FORMAT));
    MOA_TRY(moa_h5_attr_write_i64(file, "version", MOA_CALIB_VERSION));
    MOA_TRY(moa_h5_attr_write_str(file, "model_sha256", f->model_sha256 ? f->model_sha256 : ""));
    MOA_TRY(moa_h5_attr_write_str(file, "tokenizer", f->tokenizer ? f->tokenizer : ""));
    MOA_TRY(moa_h5_attr_write_str(file, "chat_template", f->chat_template ? f->chat_template : ""));
    MOA_TRY(moa_h5_attr_write_str(file, "tool_version", f->tool_version ? f->tool_version : MOA_VERSION));
    MOA_TRY(moa_h5_attr_write_str(file, "build_params", f->build_params ? f->build_params : "{}"));
    MOA_TRY(moa_h5_attr_write_i64(file, "n_samples", n));

    size_t nn = (size_t)n ? (size_t)n : 1;
    int64_t *off = moa_alloc_array(nn + 1, sizeof *off);
    int32_t *plen = moa_alloc_array(nn, sizeof *plen), *span = moa_alloc_array(2 * nn, sizeof *span);
    int32_t *bucket = moa_alloc_array(nn, sizeof *bucket);
    uint32_t *seed = moa_alloc_array(nn, sizeof *seed);
    int8_t *dc = moa_alloc_array(nn, sizeof *dc);
    double *score = moa_alloc_array(nn, sizeof *score);
    int32_t *tok = NULL;
    moa_status st = MOA_OK;
    if (!off || !plen || !span || !bucket || !seed || !dc || !score) {
        st = moa_err(MOA_ERR_NOMEM, "out of memory writing calib file");
        goto done;
    }
    off[0] = 0;
    for (int64_t i = 0; i < n; i++) {
        const moa_calib_sample *s = &f->samples[i];
        off[i + 1] = off[i] + s->n_tokens;
        plen[i] = s->prompt_len;
        span[2 * i] = s->response_start;
        span[2 * i + 1] = s->response_end;
        bucket[i] = s->bucket;
        seed[i] = s->seed;
        dc[i] = s->dense_correct;
        score[i] = s->dense_score;
    }
    tok = moa_alloc_array((size_t)off[n] + 1, sizeof *tok);
    if (!tok) { st = moa_err(MOA_ERR_NOMEM, "out of memory writing calib file"); goto done; }
    for (int64_t i = 0; i < n; i++)
        if (f->samples[i].n_tokens)
            memcpy(tok + off[i], f->samples[i].tokens, (size_t)f->samples[i].n_tokens * sizeof *tok);
    hsize_t dt = (hsize_t)off[n], dn1 = (hsize_t)n + 1, dn = (hsize_t)n, dspan[2] = {(hsize_t)n, 2};
    if ((st = write_ds(file, "tokens", H5T_NATIVE_INT32, 1, &dt, tok)) < 0) goto done;
    if ((st = write_ds(file, "sample_offset", H5T_NATIVE_INT64, 1, &dn1, off)) < 0) goto done;
    if ((st = write_ds(file, "prompt_len", H5T_NATIVE_INT32, 1, &dn, plen)) < 0) goto done;
    if ((st = write_ds(file, "response_span", H5T_NATIVE_INT32, 2, dspan, span)) < 0) goto done;
    if ((st = write_ds(file, "bucket", H5T_NATIVE_INT32, 1, &dn, bucket)) < 0) goto done;
    if ((st = write_ds(file, "seed", H5T_NATIVE_UINT32, 1, &dn, seed)) < 0) goto done;
    if ((st = write_ds(file, "dense_correct", H5T_NATIVE_INT8, 1, &dn, dc)) < 0) goto done;
    if ((st = write_ds(file, "dense_score", H5T_NATIVE_DOUBLE, 1, &dn, score)) < 0) goto done;
    if ((st = write_strings(file, "task", f, 0)) < 0) goto done;
    if ((st = write_strings(file, "expected", f, 1)) < 0) goto done;
    st = write_strings(file, "params", f, 2);
done:
    free(off); free(plen); free(span); free(bucket); free(seed); free(dc); free(score); free(tok);
    return st;
}

moa_status moa_calib_write(const char *path, const moa_calib_file *f) {
    if (!path || !f || (f->n_samples && !f->samples) || f->n_samples < 0)
        return moa_err(MOA_ERR_INVALID_ARG, "moa_calib_write: bad argument");
    for (int64_t i = 0; i < f->n_samples; i++) {
        const moa_calib_sample *s = &f->samples[i];
        if (s->n_tokens < 1 || !s->tokens || s->prompt_len < 1 || s->response_start != s->prompt_len ||
            s->response_end < s->response_start || s->response_end > s->n_tokens || !s->task ||
            !*s->task || s->bucket < 1)
            return moa_err(MOA_ERR_INVALID_ARG, "calib sample %lld is inconsistent (tokens %d, prompt_len %d, "
                           "response [%d, %d), bucket %d)", (long long)i, s->n_tokens, s->prompt_len,
                           s->response_start, s->response_end, s->bucket);
    }
    moa_h5_init();
    char *tmp = moa_tmp_path_for(path);
    if (!tmp) return moa_err(MOA_ERR_NOMEM, "out of memory");
    hid_t fcpl = H5Pcreate(H5P_FILE_CREATE);
    if (fcpl >= 0) H5Pset_obj_track_times(fcpl, 0);
    hid_t file = H5Fcreate(tmp, H5F_ACC_TRUNC, fcpl >= 0 ? fcpl : H5P_DEFAULT, H5P_DEFAULT);
    if (fcpl >= 0) H5Pclose(fcpl);
    if (file < 0) {
        moa_status st = moa_err(MOA_ERR_IO, "cannot create '%s'", tmp);
        free(tmp);
        return st;
    }
    moa_status st = write_all(file, f);
    if (H5Fclose(file) < 0 && st >= 0) st = moa_err(MOA_ERR_IO, "error closing '%s'", tmp);
    if (st >= 0) st = moa_rename_into_place(tmp, path);
    else remove(tmp);
    free(tmp);
    if (st < 0) return moa_err_prefix(st, "writing calib file '%s'", path);
    return MOA_OK;
}

/* ---- reader ------------------------------------------------------------------------------- */
static moa_status read_str_attr(hid_t file, const char *name, char *buf, char **out) {
    MOA_TRY(moa_h5_attr_read_str(file, name, buf, STR_ATTR_CAP));
    *out = moa_strdup(buf);
    if (!*out) return moa_err(MOA_ERR_NOMEM, "out of memory");
    return MOA_OK;
}

/* Validates a [n+1] offset array over `total` elements. */
static moa_status check_offsets(const int64_t *off, int64_t n, int64_t total, const char *name) {
    if (off[0] != 0) return moa_err(MOA_ERR_FORMAT, "'%s'[0] is %lld, expected 0", name, (long long)off[0]);
    for (int64_t i = 0; i < n; i++)
        if (off[i + 1] < off[i])
            return moa_err(MOA_ERR_FORMAT, "'%s' decreases at sample %lld", name, (long long)i);
    if (off[n] != total)
        return moa_err(MOA_ERR_FORMAT, "'%s'[%lld] is %lld but the data has %lld elements", name,
                       (long long)n, (long long)off[n], (long long)total);
    return MOA_OK;
}

/* Reads <name>_text/_offset into per-sample strings (which: 0 task, 1 expected, 2 params). */
static moa_status read_strings(hid_t file, const char *name, moa_calib_file *f, int which) {
    int64_t n = f->n_samples;
    char dn[64];
    hsize_t dims[1], want = (hsize_t)n + 1;
    uint8_t *text = NULL;
    int64_t *off = NULL;
    snprintf(dn, sizeof dn, "%s_text", name);
    MOA_TRY(moa_h5_read_dataset(file, dn, H5T_NATIVE_UINT8, 1, NULL, dims, (void **)&text));
    snprintf(dn, sizeof dn, "%s_offset", name);
    moa_status st = moa_h5_read_dataset(file, dn, H5T_NATIVE_INT64, 1, &want, NULL, (void **)&off);
    if (st >= 0) st = check_offsets(off, n, (int64_t)dims[0], dn);
    for (int64_t i = 0; st >= 0 && i < n; i++) {
        size_t len = (size_t)(off[i + 1] - off[i]);
        const char *s = (const char *)text + off[i];
        if (memchr(s, '\0', len)) {
            st = moa_err(MOA_ERR_FORMAT, "'%s_text' of sample %lld contains a NUL byte", name, (long long)i);
            break;
        }
        if (calib_utf8_check(s, len) >= 0) {
            st = moa_err(MOA_ERR_FORMAT, "'%s_text' of sample %lld is not valid UTF-8", name, (long long)i);
            break;
        }
        if (which == 0 && len == 0) {
            st = moa_err(MOA_ERR_FORMAT, "'task' of sample %lld is empty", (long long)i);
            break;
        }
        if (which == 1 && len == 0) continue;  /* no expected answer */
        char *c = malloc(len + 1);
        if (!c) { st = moa_err(MOA_ERR_NOMEM, "out of memory"); break; }
        memcpy(c, s, len);
        c[len] = '\0';
        moa_calib_sample *smp = &f->samples[i];
        if (which == 0) smp->task = c;
        else if (which == 1) smp->expected = c;
        else smp->params = c;
    }
    free(text);
    free(off);
    return st;
}

static moa_status read_all(hid_t file, moa_calib_file *f) {
    char *buf = malloc(STR_ATTR_CAP);
    if (!buf) return moa_err(MOA_ERR_NOMEM, "out of memory");
    moa_status st = moa_h5_attr_read_str(file, "format", buf, STR_ATTR_CAP);
    if (st >= 0 && strcmp(buf, MOA_CALIB_FORMAT) != 0)
        st = moa_err(MOA_ERR_FORMAT, "attribute 'format' is \"%.64s\", expected \"%s\"", buf, MOA_CALIB_FORMAT);
    int64_t version = 0, n = 0;
    if (st >= 0) st = moa_h5_attr_read_i64(file, "version", &version);
    if (st >= 0 && version != MOA_CALIB_VERSION)
        st = moa_err(MOA_ERR_FORMAT, "attribute 'version' is %lld; this build reads version %d",
                     (long long)version, MOA_CALIB_VERSION);
    if (st >= 0) st = read_str_attr(file, "model_sha256", buf, &f->model_sha256);
    if (st >= 0) st = read_str_attr(file, "tokenizer", buf, &f->tokenizer);
    if (st >= 0) st = read_str_attr(file, "chat_template", buf, &f->chat_template);
    if (st >= 0) st = read_str_attr(file, "tool_version", buf, &f->tool_version);
    if (st >= 0) st = read_str_attr(file, "build_params", buf, &f->build_params);
    free(buf);
    if (st >= 0) st = moa_h5_attr_read_i64(file, "n_samples", &n);
    if (st >= 0 && (n < 0 || n > ((int64_t)1 << 40)))
        st = moa_err(MOA_ERR_FORMAT, "attribute 'n_samples' is %lld (out of range)", (long long)n);
    /* Every sample takes bytes of the file (a token, an offset, ...): an n_samples beyond the
     * file size is refused before the per-sample array is allocated (a crafted 8 KB file
     * declaring 10^7 samples cost 640 MB and seconds of CPU before its datasets were checked:
     * fuzz_calib_inproc, docs/fuzzing.md). */
    hsize_t file_bytes = 0;
    if (st >= 0 && H5Fget_filesize(file, &file_bytes) < 0)
        st = moa_err(MOA_ERR_IO, "cannot get the file size");
    if (st >= 0 && (uint64_t)n > (uint64_t)file_bytes)
        st = moa_err(MOA_ERR_FORMAT, "attribute 'n_samples' is %lld, more samples than the file has bytes (%llu)",
                     (long long)n, (unsigned long long)file_bytes);
    if (st < 0) return st;
    f->samples = moa_calloc_array((size_t)n ? (size_t)n : 1, sizeof *f->samples);
    if (!f->samples) return moa_err(MOA_ERR_NOMEM, "out of memory for %lld samples", (long long)n);
    f->n_samples = n;

    hsize_t dn = (hsize_t)n, dn1 = (hsize_t)n + 1, dspan[2] = {(hsize_t)n, 2}, dt[1];
    int32_t *tok = NULL, *plen = NULL, *span = NULL, *bucket = NULL;
    int64_t *off = NULL;
    uint32_t *seed = NULL;
    int8_t *dc = NULL;
    double *score = NULL;
    st = moa_h5_read_dataset(file, "tokens", H5T_NATIVE_INT32, 1, NULL, dt, (void **)&tok);
    if (st >= 0) st = moa_h5_read_dataset(file, "sample_offset", H5T_NATIVE_INT64, 1, &dn1, NULL, (void **)&off);
    if (st >= 0) st = moa_h5_read_dataset(file, "prompt_len", H5T_NATIVE_INT32, 1, &dn, NULL, (void **)&plen);
    if (st >= 0) st = moa_h5_read_dataset(file, "response_span", H5T_NATIVE_INT32, 2, dspan, NULL, (void **)&span);
    if (st >= 0) st = moa_h5_read_dataset(file, "bucket", H5T_NATIVE_INT32, 1, &dn, NULL, (void **)&bucket);
    if (st >= 0) st = moa_h5_read_dataset(file, "seed", H5T_NATIVE_UINT32, 1, &dn, NULL, (void **)&seed);
    if (st >= 0) st = moa_h5_read_dataset(file, "dense_correct", H5T_NATIVE_INT8, 1, &dn, NULL, (void **)&dc);
    if (st >= 0) st = moa_h5_read_dataset(file, "dense_score", H5T_NATIVE_DOUBLE, 1, &dn, NULL, (void **)&score);
    if (st >= 0) st = check_offsets(off, n, (int64_t)dt[0], "sample_offset");
    for (int64_t i = 0; st >= 0 && i < n; i++) {
        moa_calib_sample *s = &f->samples[i];
        int64_t len = off[i + 1] - off[i];
        if (len < 1 || len > INT32_MAX) {
            st = moa_err(MOA_ERR_FORMAT, "sample %lld has %lld tokens (field 'sample_offset')", (long long)i, (long long)len);
            break;
        }
        if (plen[i] < 1 || plen[i] > len) {
            st = moa_err(MOA_ERR_FORMAT, "sample %lld: 'prompt_len' %d outside 1..%lld", (long long)i, plen[i], (long long)len);
            break;
        }
        if (span[2 * i] != plen[i] || span[2 * i + 1] < span[2 * i] || span[2 * i + 1] > len) {
            st = moa_err(MOA_ERR_FORMAT, "sample %lld: 'response_span' [%d, %d) must start at prompt_len %d "
                         "and end within the sample's %lld tokens", (long long)i, span[2 * i], span[2 * i + 1],
                         plen[i], (long long)len);
            break;
        }
        if (bucket[i] < 1) {
            st = moa_err(MOA_ERR_FORMAT, "sample %lld: 'bucket' %d must be positive", (long long)i, bucket[i]);
            break;
        }
        if (dc[i] < -1 || dc[i] > 1) {
            st = moa_err(MOA_ERR_FORMAT, "sample %lld: 'dense_correct' %d must be -1, 0 or 1", (long long)i, dc[i]);
            break;
        }
        if (!(score[i] == -1.0 || (score[i] >= 0.0 && score[i] <= 1.0))) {
            st = moa_err(MOA_ERR_FORMAT, "sample %lld: 'dense_score' %g must be -1 or in [0, 1]", (long long)i, score[i]);
            break;
        }
        s->tokens = moa_alloc_array((size_t)len, sizeof *s->tokens);
        if (!s->tokens) { st = moa_err(MOA_ERR_NOMEM, "out of memory"); break; }
        memcpy(s->tokens, tok + off[i], (size_t)len * sizeof *tok);
        for (int64_t k = 0; k < len; k++)
            if (s->tokens[k] < 0) {
                st = moa_err(MOA_ERR_FORMAT, "sample %lld: 'tokens' has a negative id at %lld", (long long)i, (long long)k);
                break;
            }
        s->n_tokens = (int32_t)len;
        s->prompt_len = plen[i];
        s->response_start = span[2 * i];
        s->response_end = span[2 * i + 1];
        s->bucket = bucket[i];
        s->seed = seed[i];
        s->dense_correct = dc[i];
        s->dense_score = score[i];
    }
    free(tok); free(off); free(plen); free(span); free(bucket); free(seed); free(dc); free(score);
    if (st >= 0) st = read_strings(file, "task", f, 0);
    if (st >= 0) st = read_strings(file, "expected", f, 1);
    if (st >= 0) st = read_strings(file, "params", f, 2);
    return st;
}

moa_status moa_calib_check_vocab(const moa_calib_file *f, int64_t n_vocab) {
    if (!f || n_vocab <= 0) return moa_err(MOA_ERR_INVALID_ARG, "moa_calib_check_vocab: no file or vocabulary");
    for (int64_t i = 0; i < f->n_samples; i++) {
        const moa_calib_sample *s = &f->samples[i];
        for (int32_t j = 0; j < s->n_tokens; j++)
            if (s->tokens[j] < 0 || s->tokens[j] >= n_vocab)
                return moa_err(MOA_ERR_FORMAT, "sample %lld: token %d at position %d (%s) is outside the "
                               "model's vocabulary [0, %lld)", (long long)i, s->tokens[j], j,
                               j < s->prompt_len ? "prompt" : j < s->response_end ? "response" : "after the response",
                               (long long)n_vocab);
    }
    return MOA_OK;
}

moa_status moa_calib_read_unguarded(const char *path, moa_calib_file **out) {
    if (!path || !out) return moa_err(MOA_ERR_INVALID_ARG, "moa_calib_read: NULL argument");
    *out = NULL;
    moa_h5_init();
    if (!moa_file_exists(path)) return moa_err(MOA_ERR_IO, "calib file '%s' does not exist", path);
    if (H5Fis_hdf5(path) <= 0)
        return moa_err(MOA_ERR_FORMAT, "calib file '%s' is not an HDF5 file", path);
    hid_t file = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (file < 0) return moa_err(MOA_ERR_IO, "cannot open calib file '%s'", path);
    moa_calib_file *f = calloc(1, sizeof *f);
    moa_status st = f ? read_all(file, f) : moa_err(MOA_ERR_NOMEM, "out of memory");
    H5Fclose(file);
    if (st < 0) {
        moa_calib_file_free(f);
        return moa_err_prefix(st, "calib file '%s'", path);
    }
    *out = f;
    return MOA_OK;
}

/* The guard's reader (h5guard.h): the whole read, in the child. */
static moa_status check_calib(const char *path, void *data) {
    (void)data;
    moa_calib_file *f = NULL;
    moa_status st = moa_calib_read_unguarded(path, &f);
    moa_calib_file_free(f);
    return st;
}

moa_status moa_calib_read(const char *path, moa_calib_file **out) {
    if (!path || !out) return moa_err(MOA_ERR_INVALID_ARG, "moa_calib_read: NULL argument");
    *out = NULL;
    moa_h5_init();
    if (!moa_file_exists(path)) return moa_err(MOA_ERR_IO, "calib file '%s' does not exist", path);
    MOA_TRY(moa_h5_guard(path, check_calib, NULL, NULL));
    return moa_calib_read_unguarded(path, out);
}

/* ---- dump --------------------------------------------------------------------------------- */
static void dump_tokens(FILE *out, const int32_t *ids, int n, moa_detokenize_fn detok, void *dd) {
    char *text = NULL;
    if (detok && n > 0 && detok(dd, ids, n, &text) >= 0 && text) {
        fputs(text, out);
        fputc('\n', out);
        free(text);
        return;
    }
    for (int i = 0; i < n; i++) fprintf(out, i ? " %d" : "%d", ids[i]);
    fputc('\n', out);
}

moa_status moa_calib_dump(const moa_calib_file *f, int64_t first, int64_t count,
                          moa_detokenize_fn detok, void *detok_data, FILE *out) {
    if (!f || !out) return moa_err(MOA_ERR_INVALID_ARG, "moa_calib_dump: NULL argument");
    if (first < 0 || first > f->n_samples)
        return moa_err(MOA_ERR_RANGE, "dump: first sample %lld out of range 0..%lld", (long long)first,
                       (long long)f->n_samples);
    int64_t end = count < 0 || first + count > f->n_samples ? f->n_samples : first + count;
    for (int64_t i = first; i < end; i++) {
        const moa_calib_sample *s = &f->samples[i];
        fprintf(out, "=== sample %lld of %lld: task %s, bucket %d, seed %u ===\n", (long long)i,
                (long long)f->n_samples, s->task ? s->task : "?", s->bucket, s->seed);
        fprintf(out, "tokens: %d (prompt %d, response [%d, %d) = %d tokens)\n", s->n_tokens,
                s->prompt_len, s->response_start, s->response_end, s->response_end - s->response_start);
        if (s->expected) {
            fputs("expected: ", out);
            for (const char *p = s->expected; *p; p++) fputs(*p == '\n' ? " | " : (char[2]){*p, 0}, out);
            fputc('\n', out);
        }
        fprintf(out, "dense: %s", s->dense_correct == 1 ? "correct" : s->dense_correct == 0 ? "wrong" : "unknown");
        if (s->dense_score >= 0) fprintf(out, " (score %.3f)", s->dense_score);
        fputc('\n', out);
        if (s->params) fprintf(out, "params: %s\n", s->params);
        fputs("--- prompt ---\n", out);
        dump_tokens(out, s->tokens, s->prompt_len, detok, detok_data);
        fputs("--- response ---\n", out);
        dump_tokens(out, s->tokens + s->response_start, s->response_end - s->response_start, detok, detok_data);
        fputc('\n', out);
    }
    if (ferror(out)) return moa_err(MOA_ERR_IO, "dump: write error");
    return MOA_OK;
}
