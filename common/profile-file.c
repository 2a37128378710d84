/* profile-file.c - moa-profile v1: in-memory profile, accumulation, merge, HDF5 I/O. */
#include "moa/profile-file.h"

#include <hdf5.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "moa/h5guard.h"
#include "moa/h5util.h"
#include "moa/common.h"

static void bucket_free(moa_profile_bucket *b) {
    free(b->influence_abs);
    free(b->influence_signed);
    free(b->sink_influence);
    memset(b, 0, sizeof *b);
}

void moa_profile_free(moa_profile *p) {
    if (!p) return;
    free(p->shard_set);
    for (int i = 0; i < p->n_buckets; i++) bucket_free(&p->buckets[i]);
    free(p->buckets);
    free(p);
}

/* ceil(length / block) for length, block > 0, without the overflow of length + block - 1 (a
 * bucket_9223372036854775807 of a crafted file: UBSan in fuzz_profile_inproc, docs/fuzzing.md) */
static int64_t bins_of(int64_t length, int64_t block) {
    return length / block + (length % block != 0);
}

static moa_status bucket_alloc(const moa_profile *p, moa_profile_bucket *b, int64_t length) {
    memset(b, 0, sizeof *b);
    b->length = length;
    b->n_bins = bins_of(length, p->block);
    size_t nh = (size_t)p->n_layer * (size_t)p->n_head, nhb;
    if (moa_mul_overflow(nh, (size_t)b->n_bins, &nhb))
        return moa_err(MOA_ERR_NOMEM, "profile bucket N=%lld too large", (long long)length);
    b->influence_abs = moa_calloc_array(nhb, sizeof(double));
    b->influence_signed = moa_calloc_array(nhb, sizeof(double));
    b->sink_influence = moa_calloc_array(nh, sizeof(double));
    if (!b->influence_abs || !b->influence_signed || !b->sink_influence) {
        bucket_free(b);
        return moa_err(MOA_ERR_NOMEM, "out of memory for profile bucket N=%lld", (long long)length);
    }
    return MOA_OK;
}

static int cmp_bucket(const void *a, const void *b) {
    int64_t x = ((const moa_profile_bucket *)a)->length, y = ((const moa_profile_bucket *)b)->length;
    return (x > y) - (x < y);
}

moa_status moa_profile_create(int64_t n_layer, int64_t n_head, int64_t n_head_kv, int64_t head_dim,
                              int64_t sink, int64_t block, const int64_t *lengths, int n_lengths,
                              moa_profile **out) {
    *out = NULL;
    if (n_layer <= 0 || n_head <= 0 || n_head_kv <= 0 || n_head % n_head_kv || head_dim <= 0)
        return moa_err(MOA_ERR_INVALID_ARG, "profile: bad model dimensions");
    if (sink < 0 || block <= 0) return moa_err(MOA_ERR_INVALID_ARG, "profile: need sink >= 0 and block > 0");
    if (n_lengths <= 0 || n_lengths > MOA_PROFILE_MAX_BUCKETS)
        return moa_err(MOA_ERR_INVALID_ARG, "profile: need 1..%d length buckets", MOA_PROFILE_MAX_BUCKETS);
    moa_profile *p = calloc(1, sizeof *p);
    if (!p) return moa_err(MOA_ERR_NOMEM, "out of memory");
    p->n_layer = n_layer; p->n_head = n_head; p->n_head_kv = n_head_kv; p->head_dim = head_dim;
    p->sink = sink; p->block = block;
    snprintf(p->tool_version, sizeof p->tool_version, "%s", MOA_VERSION);
    p->buckets = calloc((size_t)n_lengths, sizeof *p->buckets);
    if (!p->buckets) { free(p); return moa_err(MOA_ERR_NOMEM, "out of memory"); }
    for (int i = 0; i < n_lengths; i++) {
        if (lengths[i] <= 0) { moa_profile_free(p); return moa_err(MOA_ERR_INVALID_ARG, "profile: length %lld must be > 0", (long long)lengths[i]); }
        for (int j = 0; j < i; j++)
            if (lengths[j] == lengths[i]) {
                moa_profile_free(p);
                return moa_err(MOA_ERR_INVALID_ARG, "profile: length %lld given twice", (long long)lengths[i]);
            }
        moa_status st = bucket_alloc(p, &p->buckets[i], lengths[i]);
        if (st < 0) { moa_profile_free(p); return st; }
        p->n_buckets = i + 1;
    }
    qsort(p->buckets, (size_t)p->n_buckets, sizeof *p->buckets, cmp_bucket);
    *out = p;
    return MOA_OK;
}

int moa_profile_find_bucket(const moa_profile *p, int64_t length) {
    for (int i = 0; i < p->n_buckets; i++) if (p->buckets[i].length == length) return i;
    return -1;
}

double *moa_profile_hist_abs(const moa_profile *p, int b, int64_t layer, int64_t head) {
    const moa_profile_bucket *k = &p->buckets[b];
    return k->influence_abs + (layer * p->n_head + head) * k->n_bins;
}

double *moa_profile_hist_signed(const moa_profile *p, int b, int64_t layer, int64_t head) {
    const moa_profile_bucket *k = &p->buckets[b];
    return k->influence_signed + (layer * p->n_head + head) * k->n_bins;
}

moa_status moa_profile_add_sample(moa_profile *p, int b, const double *abs, const double *sgn,
                                  const double *sink, int64_t n_tokens) {
    if (b < 0 || b >= p->n_buckets) return moa_err(MOA_ERR_INVALID_ARG, "profile: bucket %d out of range", b);
    moa_profile_bucket *k = &p->buckets[b];
    size_t nh = (size_t)(p->n_layer * p->n_head), n = nh * (size_t)k->n_bins;
    double w = 1.0 / (double)(k->n_samples + 1);
    /* running mean: m += (x - m) / (count + 1) */
    for (size_t i = 0; i < n; i++) {
        k->influence_abs[i] += (abs[i] - k->influence_abs[i]) * w;
        k->influence_signed[i] += ((sgn ? sgn[i] : 0) - k->influence_signed[i]) * w;
    }
    for (size_t i = 0; i < nh; i++)
        k->sink_influence[i] += ((sink ? sink[i] : 0) - k->sink_influence[i]) * w;
    k->n_samples++;
    k->n_tokens += n_tokens;
    return MOA_OK;
}

moa_status moa_profile_set_source(moa_profile *p, const char *calib_sha256, int64_t index, int64_t count) {
    if (count < 1 || count > MOA_PROFILE_MAX_SHARDS || index < 0 || index >= count)
        return moa_err(MOA_ERR_INVALID_ARG, "profile: shard %lld/%lld: expected 0 <= I < N <= %d",
                       (long long)index, (long long)count, MOA_PROFILE_MAX_SHARDS);
    uint8_t *set = calloc((size_t)count, 1);
    if (!set) return moa_err(MOA_ERR_NOMEM, "out of memory");
    set[index] = 1;
    free(p->shard_set);
    p->shard_set = set;
    p->shard_count = count;
    snprintf(p->calib_sha256, sizeof p->calib_sha256, "%s", calib_sha256 ? calib_sha256 : "");
    return MOA_OK;
}

moa_status moa_profile_merge(moa_profile *dst, const moa_profile *src) {
#define SAME(f) if (dst->f != src->f) return moa_err(MOA_ERR_MISMATCH, "profile merge: " #f " differs (%lld vs %lld)", (long long)dst->f, (long long)src->f)
    SAME(n_layer); SAME(n_head); SAME(n_head_kv); SAME(head_dim); SAME(sink); SAME(block);
#undef SAME
    if (strcmp(dst->model_sha256, src->model_sha256))
        return moa_err(MOA_ERR_MISMATCH, "profile merge: model_sha256 differs (%s vs %s)",
                       dst->model_sha256, src->model_sha256);
    if (strcmp(dst->calib_sha256, src->calib_sha256))
        return moa_err(MOA_ERR_MISMATCH, "profile merge: calib_sha256 differs (%s vs %s): profiles of "
                       "different calibration files", dst->calib_sha256[0] ? dst->calib_sha256 : "unknown",
                       src->calib_sha256[0] ? src->calib_sha256 : "unknown");
    if (dst->shard_count != src->shard_count)
        return moa_err(MOA_ERR_MISMATCH, "profile merge: shard_count differs (%lld vs %lld; 0 = unknown)",
                       (long long)dst->shard_count, (long long)src->shard_count);
    for (int64_t i = 0; i < dst->shard_count; i++)
        if (dst->shard_set[i] && src->shard_set[i])
            return moa_err(MOA_ERR_MISMATCH, "profile merge: shard %lld/%lld is already in the merge "
                           "(each shard may be counted once)", (long long)i, (long long)dst->shard_count);
    for (int sb = 0; sb < src->n_buckets; sb++) {
        const moa_profile_bucket *s = &src->buckets[sb];
        int db = moa_profile_find_bucket(dst, s->length);
        if (db < 0) {
            if (dst->n_buckets >= MOA_PROFILE_MAX_BUCKETS)
                return moa_err(MOA_ERR_RANGE, "profile merge: more than %d buckets", MOA_PROFILE_MAX_BUCKETS);
            moa_profile_bucket *nb = realloc(dst->buckets, (size_t)(dst->n_buckets + 1) * sizeof *nb);
            if (!nb) return moa_err(MOA_ERR_NOMEM, "out of memory");
            dst->buckets = nb;
            MOA_TRY(bucket_alloc(dst, &dst->buckets[dst->n_buckets], s->length));
            db = dst->n_buckets++;
        }
        moa_profile_bucket *d = &dst->buckets[db];
        int64_t tot = d->n_samples + s->n_samples;
        if (tot > 0) {
            double wd = (double)d->n_samples / (double)tot, ws = (double)s->n_samples / (double)tot;
            size_t nh = (size_t)(dst->n_layer * dst->n_head), n = nh * (size_t)d->n_bins;
            for (size_t i = 0; i < n; i++) {
                d->influence_abs[i] = wd * d->influence_abs[i] + ws * s->influence_abs[i];
                d->influence_signed[i] = wd * d->influence_signed[i] + ws * s->influence_signed[i];
            }
            for (size_t i = 0; i < nh; i++)
                d->sink_influence[i] = wd * d->sink_influence[i] + ws * s->sink_influence[i];
        }
        d->n_samples = tot;
        d->n_tokens += s->n_tokens;
    }
    for (int64_t i = 0; i < dst->shard_count; i++) dst->shard_set[i] |= src->shard_set[i];
    qsort(dst->buckets, (size_t)dst->n_buckets, sizeof *dst->buckets, cmp_bucket);
    return MOA_OK;
}

moa_status moa_profile_validate(const moa_profile *p) {
#define BAD(...) return moa_err(MOA_ERR_FORMAT, __VA_ARGS__)
    if (p->n_layer <= 0 || p->n_layer > 100000) BAD("attribute 'n_layer' must be in [1, 100000] (got %lld)", (long long)p->n_layer);
    if (p->n_head <= 0 || p->n_head > 100000) BAD("attribute 'n_head' must be in [1, 100000] (got %lld)", (long long)p->n_head);
    if (p->n_head_kv <= 0 || p->n_head % p->n_head_kv)
        BAD("attribute 'n_head_kv' must be > 0 and divide n_head=%lld (got %lld)", (long long)p->n_head, (long long)p->n_head_kv);
    if (p->head_dim <= 0 || p->head_dim > (1 << 20)) BAD("attribute 'head_dim' must be > 0 (got %lld)", (long long)p->head_dim);
    if (p->sink < 0) BAD("attribute 'sink' must be >= 0 (got %lld)", (long long)p->sink);
    if (p->block <= 0) BAD("attribute 'block' must be > 0 (got %lld)", (long long)p->block);
    size_t sl = strlen(p->model_sha256);
    if (sl != 0 && sl != 64) BAD("attribute 'model_sha256' must be 64 hex digits or empty");
    for (size_t i = 0; i < sl; i++)
        if (!strchr("0123456789abcdef", p->model_sha256[i]) || !p->model_sha256[i])
            BAD("attribute 'model_sha256' must be lowercase hex");
    sl = strlen(p->calib_sha256);
    if (sl != 0 && sl != 64) BAD("attribute 'calib_sha256' must be 64 hex digits or empty");
    for (size_t i = 0; i < sl; i++)
        if (!strchr("0123456789abcdef", p->calib_sha256[i]) || !p->calib_sha256[i])
            BAD("attribute 'calib_sha256' must be lowercase hex");
    if (p->shard_count < 0 || p->shard_count > MOA_PROFILE_MAX_SHARDS)
        BAD("attribute 'shard_count' must be in [1, %d] (got %lld)", MOA_PROFILE_MAX_SHARDS, (long long)p->shard_count);
    if (p->shard_count > 0) {
        int64_t n_in = 0;
        for (int64_t i = 0; i < p->shard_count; i++) n_in += p->shard_set[i] != 0;
        if (n_in == 0) BAD("attribute 'shards' names no shard of %lld", (long long)p->shard_count);
    }
    if (p->n_buckets <= 0) BAD("no length buckets (expected at least one group 'bucket_<N>')");
    for (int b = 0; b < p->n_buckets; b++) {
        const moa_profile_bucket *k = &p->buckets[b];
        if (k->length <= 0) BAD("bucket %d: attribute 'length' must be > 0 (got %lld)", b, (long long)k->length);
        if (b > 0 && k->length <= p->buckets[b - 1].length)
            BAD("bucket_%lld: lengths must be distinct", (long long)k->length);
        if (k->n_samples < 0) BAD("bucket_%lld: attribute 'n_samples' must be >= 0 (got %lld)", (long long)k->length, (long long)k->n_samples);
        if (k->n_tokens < 0) BAD("bucket_%lld: attribute 'n_tokens' must be >= 0 (got %lld)", (long long)k->length, (long long)k->n_tokens);
        if (k->n_bins != bins_of(k->length, p->block))
            BAD("bucket_%lld: %lld distance bins, expected ceil(N/block)=%lld", (long long)k->length,
                (long long)k->n_bins, (long long)bins_of(k->length, p->block));
        size_t nh = (size_t)(p->n_layer * p->n_head), n = nh * (size_t)k->n_bins;
        for (size_t i = 0; i < n; i++) {
            if (!isfinite(k->influence_abs[i]) || k->influence_abs[i] < 0)
                BAD("bucket_%lld/influence_abs[%zu][%zu][%zu] = %g: must be finite and >= 0",
                    (long long)k->length, i / (size_t)k->n_bins / (size_t)p->n_head,
                    i / (size_t)k->n_bins % (size_t)p->n_head, i % (size_t)k->n_bins, k->influence_abs[i]);
            if (!isfinite(k->influence_signed[i]))
                BAD("bucket_%lld/influence_signed[%zu][%zu][%zu] is not finite", (long long)k->length,
                    i / (size_t)k->n_bins / (size_t)p->n_head, i / (size_t)k->n_bins % (size_t)p->n_head,
                    i % (size_t)k->n_bins);
        }
        for (size_t i = 0; i < nh; i++)
            if (!isfinite(k->sink_influence[i]))
                BAD("bucket_%lld/sink_influence[%zu][%zu] is not finite", (long long)k->length,
                    i / (size_t)p->n_head, i % (size_t)p->n_head);
        /* The optimiser sums a head's bins (suffix sums, the sink total) and the bucket's
         * heads (normalisation per length): finite values are not enough, the sums must be. */
        double total = 0;
        for (size_t h = 0; h < nh; h++) {
            const double *a = k->influence_abs + h * (size_t)k->n_bins, *sg = k->influence_signed + h * (size_t)k->n_bins;
            double sa = fabs(k->sink_influence[h]), ss = 0;
            for (int64_t b = 0; b < k->n_bins; b++) {
                sa += a[b];
                ss += fabs(sg[b]);
            }
            if (!isfinite(sa))
                BAD("bucket_%lld/influence_abs[%zu][%zu]: the head's total (bins + sink) overflows a double",
                    (long long)k->length, h / (size_t)p->n_head, h % (size_t)p->n_head);
            if (!isfinite(ss))
                BAD("bucket_%lld/influence_signed[%zu][%zu]: the head's total |influence| overflows a double",
                    (long long)k->length, h / (size_t)p->n_head, h % (size_t)p->n_head);
            total += sa + ss;
        }
        if (!isfinite(total))
            BAD("bucket_%lld: the total influence over all heads overflows a double", (long long)k->length);
    }
#undef BAD
    return MOA_OK;
}

/* ---- HDF5 -------------------------------------------------------------------------------- */

moa_status moa_profile_save(const moa_profile *p, const char *path) {
    MOA_TRY(moa_profile_validate(p));
    moa_h5_init();
    char *tmp = moa_tmp_path_for(path);
    if (!tmp) return moa_err(MOA_ERR_NOMEM, "out of memory");
    hid_t f = H5Fcreate(tmp, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    if (f < 0) {
        free(tmp);
        return moa_err(MOA_ERR_IO, "%s: cannot create HDF5 file", path);
    }
    moa_status st;
#define T(x) do { st = (x); if (st < 0) goto fail; } while (0)
    T(moa_h5_attr_write_str(f, "format", MOA_PROFILE_FORMAT));
    T(moa_h5_attr_write_i64(f, "version", MOA_PROFILE_VERSION));
    T(moa_h5_attr_write_str(f, "model_sha256", p->model_sha256));
    T(moa_h5_attr_write_str(f, "arch", p->arch));
    T(moa_h5_attr_write_str(f, "tool_version", p->tool_version));
    T(moa_h5_attr_write_i64(f, "n_layer", p->n_layer));
    T(moa_h5_attr_write_i64(f, "n_head", p->n_head));
    T(moa_h5_attr_write_i64(f, "n_head_kv", p->n_head_kv));
    T(moa_h5_attr_write_i64(f, "head_dim", p->head_dim));
    T(moa_h5_attr_write_i64(f, "sink", p->sink));
    T(moa_h5_attr_write_i64(f, "block", p->block));
    T(moa_h5_attr_write_str(f, "calib_sha256", p->calib_sha256));
    if (p->shard_count > 0) {   /* "I,J,..": the shards of the i % shard_count split folded in */
        T(moa_h5_attr_write_i64(f, "shard_count", p->shard_count));
        size_t cap = (size_t)p->shard_count * 8 + 1, o = 0;
        char *list = malloc(cap);
        if (!list) { st = moa_err(MOA_ERR_NOMEM, "out of memory"); goto fail; }
        list[0] = '\0';
        for (int64_t i = 0; i < p->shard_count; i++)
            if (p->shard_set[i]) o += (size_t)snprintf(list + o, cap - o, o ? ",%lld" : "%lld", (long long)i);
        st = moa_h5_attr_write_str(f, "shards", list);
        free(list);
        if (st < 0) goto fail;
    }
    for (int b = 0; b < p->n_buckets; b++) {
        const moa_profile_bucket *k = &p->buckets[b];
        char name[48];
        snprintf(name, sizeof name, "bucket_%lld", (long long)k->length);
        hid_t gcpl = H5Pcreate(H5P_GROUP_CREATE);   /* no timestamps: reproducible bytes */
        if (gcpl >= 0) H5Pset_obj_track_times(gcpl, 0);
        hid_t g = H5Gcreate2(f, name, H5P_DEFAULT, gcpl >= 0 ? gcpl : H5P_DEFAULT, H5P_DEFAULT);
        if (gcpl >= 0) H5Pclose(gcpl);
        if (g < 0) { st = moa_err(MOA_ERR_IO, "%s: cannot create group %s", path, name); goto fail; }
        hsize_t d3[3] = {(hsize_t)p->n_layer, (hsize_t)p->n_head, (hsize_t)k->n_bins};
        hsize_t d2[2] = {(hsize_t)p->n_layer, (hsize_t)p->n_head};
        st = moa_h5_attr_write_i64(g, "length", k->length);
        if (st >= 0) st = moa_h5_attr_write_i64(g, "n_samples", k->n_samples);
        if (st >= 0) st = moa_h5_attr_write_i64(g, "n_tokens", k->n_tokens);
        if (st >= 0) st = moa_h5_write_dataset(g, "influence_abs", H5T_NATIVE_DOUBLE, 3, d3, k->influence_abs);
        if (st >= 0) st = moa_h5_write_dataset(g, "influence_signed", H5T_NATIVE_DOUBLE, 3, d3, k->influence_signed);
        if (st >= 0) st = moa_h5_write_dataset(g, "sink_influence", H5T_NATIVE_DOUBLE, 2, d2, k->sink_influence);
        H5Gclose(g);
        if (st < 0) { moa_err_prefix(st, "%s: %s", path, name); goto fail; }
    }
#undef T
    if (H5Fclose(f) < 0) {
        remove(tmp);
        free(tmp);
        return moa_err(MOA_ERR_IO, "%s: closing the HDF5 file failed", path);
    }
    st = moa_rename_into_place(tmp, path);
    if (st < 0) remove(tmp);
    free(tmp);
    return st;
fail:
    H5Fclose(f);
    remove(tmp);
    free(tmp);
    return st;
}

static moa_status load_bucket(hid_t f, const char *gname, moa_profile *p, moa_profile_bucket *k) {
    hid_t g = H5Gopen2(f, gname, H5P_DEFAULT);
    if (g < 0) return moa_err(MOA_ERR_FORMAT, "'%s' is not a group", gname);
    moa_status st;
    int64_t length = 0;
    void *data = NULL;
#define T(x) do { st = (x); if (st < 0) goto done; } while (0)
    T(moa_h5_attr_read_i64(g, "length", &length));
    long long from_name = 0;
    char tail;
    if (sscanf(gname, "bucket_%lld%c", &from_name, &tail) != 1 || from_name != length) {
        st = moa_err(MOA_ERR_FORMAT, "attribute 'length'=%lld does not match the group name", (long long)length);
        goto done;
    }
    if (length <= 0) { st = moa_err(MOA_ERR_FORMAT, "attribute 'length' must be > 0"); goto done; }
    if (length > INT32_MAX) {   /* no context is that long; refused before any allocation */
        st = moa_err(MOA_ERR_FORMAT, "attribute 'length'=%lld is longer than any context (at most %d)",
                     (long long)length, INT32_MAX);
        goto done;
    }
    T(bucket_alloc(p, k, length));
    T(moa_h5_attr_read_i64(g, "n_samples", &k->n_samples));
    T(moa_h5_attr_read_i64(g, "n_tokens", &k->n_tokens));
    hsize_t d3[3] = {(hsize_t)p->n_layer, (hsize_t)p->n_head, (hsize_t)k->n_bins};
    hsize_t d2[2] = {(hsize_t)p->n_layer, (hsize_t)p->n_head};
    size_t n3 = (size_t)d3[0] * d3[1] * d3[2] * sizeof(double), n2 = (size_t)d2[0] * d2[1] * sizeof(double);
    T(moa_h5_read_dataset(g, "influence_abs", H5T_NATIVE_DOUBLE, 3, d3, NULL, &data));
    memcpy(k->influence_abs, data, n3); free(data); data = NULL;
    T(moa_h5_read_dataset(g, "influence_signed", H5T_NATIVE_DOUBLE, 3, d3, NULL, &data));
    memcpy(k->influence_signed, data, n3); free(data); data = NULL;
    T(moa_h5_read_dataset(g, "sink_influence", H5T_NATIVE_DOUBLE, 2, d2, NULL, &data));
    memcpy(k->sink_influence, data, n2); free(data); data = NULL;
#undef T
done:
    H5Gclose(g);
    free(data);
    if (st < 0) {
        bucket_free(k);   /* not yet counted in p->n_buckets: free it here */
        moa_err_prefix(st, "%s", gname);
    }
    return st;
}

/* Optional provenance: calib_sha256, shard_count and shards ("I,J,..", increasing). */
static moa_status load_source(hid_t f, moa_profile *p) {
    if (H5Aexists(f, "calib_sha256") > 0)
        MOA_TRY(moa_h5_attr_read_str(f, "calib_sha256", p->calib_sha256, sizeof p->calib_sha256));
    int has_count = H5Aexists(f, "shard_count") > 0, has_list = H5Aexists(f, "shards") > 0;
    if (!has_count && !has_list) return MOA_OK;
    if (!has_count || !has_list)
        return moa_err(MOA_ERR_FORMAT, "attributes 'shard_count' and 'shards' go together (one is missing)");
    MOA_TRY(moa_h5_attr_read_i64(f, "shard_count", &p->shard_count));
    if (p->shard_count < 1 || p->shard_count > MOA_PROFILE_MAX_SHARDS)
        return moa_err(MOA_ERR_FORMAT, "attribute 'shard_count' must be in [1, %d] (got %lld)",
                       MOA_PROFILE_MAX_SHARDS, (long long)p->shard_count);
    size_t cap = (size_t)p->shard_count * 8 + 2;
    char *list = malloc(cap);
    p->shard_set = calloc((size_t)p->shard_count, 1);
    if (!list || !p->shard_set) { free(list); return moa_err(MOA_ERR_NOMEM, "out of memory"); }
    moa_status st = moa_h5_attr_read_str(f, "shards", list, cap);
    long long prev = -1;
    for (const char *c = list; st >= 0;) {
        char *end;
        long long i = strtoll(c, &end, 10);
        if (end == c || !(*c >= '0' && *c <= '9') || i <= prev || i >= p->shard_count || (*end && *end != ',')) {
            st = moa_err(MOA_ERR_FORMAT, "attribute 'shards' = \"%s\": expected increasing shard indices "
                         "in [0, %lld) separated by commas", list, (long long)p->shard_count);
            break;
        }
        p->shard_set[i] = 1;
        prev = i;
        if (!*end) break;
        c = end + 1;
    }
    free(list);
    return st;
}

static moa_status load_file(hid_t f, moa_profile *p) {
    char fmt[32];
    int64_t ver;
    MOA_TRY(moa_h5_attr_read_str(f, "format", fmt, sizeof fmt));
    if (strcmp(fmt, MOA_PROFILE_FORMAT))
        return moa_err(MOA_ERR_FORMAT, "attribute 'format' is \"%s\", expected \"%s\"", fmt, MOA_PROFILE_FORMAT);
    MOA_TRY(moa_h5_attr_read_i64(f, "version", &ver));
    if (ver != MOA_PROFILE_VERSION)
        return moa_err(MOA_ERR_FORMAT, "attribute 'version' is %lld; this reader knows version %d",
                       (long long)ver, MOA_PROFILE_VERSION);
    MOA_TRY(moa_h5_attr_read_str(f, "model_sha256", p->model_sha256, sizeof p->model_sha256));
    if (H5Aexists(f, "arch") > 0) MOA_TRY(moa_h5_attr_read_str(f, "arch", p->arch, sizeof p->arch));
    MOA_TRY(moa_h5_attr_read_str(f, "tool_version", p->tool_version, sizeof p->tool_version));
    MOA_TRY(moa_h5_attr_read_i64(f, "n_layer", &p->n_layer));
    MOA_TRY(moa_h5_attr_read_i64(f, "n_head", &p->n_head));
    MOA_TRY(moa_h5_attr_read_i64(f, "n_head_kv", &p->n_head_kv));
    MOA_TRY(moa_h5_attr_read_i64(f, "head_dim", &p->head_dim));
    MOA_TRY(moa_h5_attr_read_i64(f, "sink", &p->sink));
    MOA_TRY(moa_h5_attr_read_i64(f, "block", &p->block));
    MOA_TRY(load_source(f, p));
    /* dimension sanity before allocating anything */
    if (p->n_layer <= 0 || p->n_layer > 100000 || p->n_head <= 0 || p->n_head > 100000 ||
        p->n_head_kv <= 0 || p->n_head % p->n_head_kv || p->block <= 0 || p->sink < 0 || p->head_dim <= 0)
        return moa_profile_validate(p);
    H5G_info_t info;
    if (H5Gget_info(f, &info) < 0) return moa_err(MOA_ERR_FORMAT, "cannot list the root group");
    if (info.nlinks == 0) return moa_err(MOA_ERR_FORMAT, "no length buckets (expected groups 'bucket_<N>')");
    if (info.nlinks > MOA_PROFILE_MAX_BUCKETS)
        return moa_err(MOA_ERR_FORMAT, "%llu objects in the root group, at most %d buckets allowed",
                       (unsigned long long)info.nlinks, MOA_PROFILE_MAX_BUCKETS);
    p->buckets = calloc((size_t)info.nlinks, sizeof *p->buckets);
    if (!p->buckets) return moa_err(MOA_ERR_NOMEM, "out of memory");
    for (hsize_t i = 0; i < info.nlinks; i++) {
        char name[64];
        ssize_t nl = H5Lget_name_by_idx(f, ".", H5_INDEX_NAME, H5_ITER_INC, i, name, sizeof name, H5P_DEFAULT);
        if (nl < 0 || nl >= (ssize_t)sizeof name || strncmp(name, "bucket_", 7))
            return moa_err(MOA_ERR_FORMAT, "unexpected object '%s' in the root group (expected 'bucket_<N>')",
                           nl >= 0 ? name : "?");
        MOA_TRY(load_bucket(f, name, p, &p->buckets[p->n_buckets]));
        p->n_buckets++;
    }
    qsort(p->buckets, (size_t)p->n_buckets, sizeof *p->buckets, cmp_bucket);
    return moa_profile_validate(p);
}

moa_status moa_profile_load_unguarded(const char *path, moa_profile **out) {
    *out = NULL;
    moa_h5_init();   /* errors are reported through moa_last_error(), not HDF5's stack dumps */
    if (!moa_file_exists(path)) return moa_err(MOA_ERR_IO, "%s: no such file", path);
    if (H5Fis_hdf5(path) <= 0) return moa_err(MOA_ERR_FORMAT, "%s: not an HDF5 file", path);
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (f < 0) return moa_err(MOA_ERR_IO, "%s: cannot open", path);
    moa_profile *p = calloc(1, sizeof *p);
    if (!p) { H5Fclose(f); return moa_err(MOA_ERR_NOMEM, "out of memory"); }
    moa_status st = load_file(f, p);
    H5Fclose(f);
    if (st < 0) {
        moa_profile_free(p);
        return moa_err_prefix(st, "%s", path);
    }
    *out = p;
    return MOA_OK;
}

/* The guard's reader (h5guard.h): the whole load, in the child. */
static moa_status check_profile(const char *path, void *data) {
    (void)data;
    moa_profile *p = NULL;
    moa_status st = moa_profile_load_unguarded(path, &p);
    moa_profile_free(p);
    return st;
}

moa_status moa_profile_load(const char *path, moa_profile **out) {
    *out = NULL;
    moa_h5_init();
    if (!moa_file_exists(path)) return moa_err(MOA_ERR_IO, "%s: no such file", path);
    MOA_TRY(moa_h5_guard(path, check_profile, NULL, NULL));
    return moa_profile_load_unguarded(path, out);
}
