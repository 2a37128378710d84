/* moa/profile-file.h - public header of moa_h5 (common/; with moa/h5util.h and
 * moa/h5guard.h): moa-profile v1 (HDF5): attention influence per (layer, head, distance bin)
 * for each length bucket; in-memory type, sample accumulation, weighted merge, reader with
 * full validation and atomic writer. Format in docs/formats.md, "## profile.h5".
 *
 * Histogram layout: bin b of head (l, h) in a bucket of length N holds the influence of the
 * key positions j >= sink at distance i - j in [b*block, (b+1)*block); n_bins = ceil(N/block).
 * Values are per-sample averages (so shards merge by a weighted sum with n_samples).
 * Not thread-safe on one object; distinct objects may be used from distinct threads, but
 * HDF5 itself (load/save) must be used from one thread at a time.
 */
#ifndef MOA_PROFILE_FILE_H
#define MOA_PROFILE_FILE_H

#include <stdint.h>
#include "moa/base.h"

#define MOA_PROFILE_FORMAT "moa-profile"
#define MOA_PROFILE_VERSION 1
#define MOA_PROFILE_MAX_BUCKETS 64
#define MOA_PROFILE_MAX_SHARDS 65536

typedef struct {
    int64_t length;             /* N of the bucket */
    int64_t n_samples;          /* samples averaged into this bucket (>= 0; 0 = empty) */
    int64_t n_tokens;           /* total tokens over those samples */
    int64_t n_bins;             /* ceil(length / block) */
    double *influence_abs;      /* (n_layer, n_head, n_bins) mean over samples of sum |E| */
    double *influence_signed;   /* (n_layer, n_head, n_bins) mean over samples of sum E */
    double *sink_influence;     /* (n_layer, n_head) mean over samples of sum |E| on j < sink */
} moa_profile_bucket;

typedef struct {
    char model_sha256[65];      /* "" if unknown */
    char arch[64];              /* optional attribute; "" if absent */
    char tool_version[32];
    int64_t n_layer, n_head, n_head_kv, head_dim;
    int64_t sink, block;
    /* provenance (optional attributes; "" / 0 when absent, as in files of older writers) */
    char calib_sha256[65];      /* the calibration file profiled */
    int64_t shard_count;        /* 0: unknown; else the samples were split i % shard_count */
    uint8_t *shard_set;         /* [shard_count]: 1 for each shard folded in (NULL if count 0) */
    int n_buckets;
    moa_profile_bucket *buckets;   /* sorted by length, lengths distinct */
} moa_profile;

/* Empty profile with zeroed buckets for `lengths` (any order; stored sorted; distinct).
 * Caller frees with moa_profile_free(). */
moa_status moa_profile_create(int64_t n_layer, int64_t n_head, int64_t n_head_kv, int64_t head_dim,
                              int64_t sink, int64_t block, const int64_t *lengths, int n_lengths,
                              moa_profile **out);
void moa_profile_free(moa_profile *p);   /* accepts NULL */

/* Index of the bucket of exactly this length, or -1. */
int moa_profile_find_bucket(const moa_profile *p, int64_t length);

/* Pointer to the histogram of (layer, head) in bucket b (n_bins values). */
double *moa_profile_hist_abs(const moa_profile *p, int b, int64_t layer, int64_t head);
double *moa_profile_hist_signed(const moa_profile *p, int b, int64_t layer, int64_t head);

/* Fold one sample into bucket b as a running mean: abs/signed are (n_layer, n_head, n_bins),
 * sink (n_layer, n_head) (may be NULL: zeros); n_tokens is the sample's length. */
moa_status moa_profile_add_sample(moa_profile *p, int b, const double *abs, const double *sgn,
                                  const double *sink, int64_t n_tokens);

/* Records that p holds shard `index` of `count` of the calibration file calib_sha256. */
moa_status moa_profile_set_source(moa_profile *p, const char *calib_sha256, int64_t index, int64_t count);

/* dst := weighted merge of dst and src (weights n_samples). Identity (model sha256, dims,
 * sink, block, calibration file) must match (MOA_ERR_MISMATCH naming the field); shards must
 * be of the same split and disjoint (a shard counted twice is MOA_ERR_MISMATCH); buckets of
 * src whose length dst lacks are added. */
moa_status moa_profile_merge(moa_profile *dst, const moa_profile *src);

/* Check every field (MOA_ERR_FORMAT naming it): dims, sink/block, lengths, counts, finite
 * values, abs influence >= 0. */
moa_status moa_profile_validate(const moa_profile *p);

/* Read + validate. Errors start with the path and name the attribute/group/dataset. The
 * file is first read in a child process (h5guard.h): a file that crashes or hangs libhdf5
 * fails with MOA_ERR_FORMAT ("malformed HDF5 file: ...") instead of taking the caller down. */
moa_status moa_profile_load(const char *path, moa_profile **out);
/* The same read without the guard, in this process: for files already checked (the guard's
 * child, the fuzzer after the guard). A hostile file can crash libhdf5 here. */
moa_status moa_profile_load_unguarded(const char *path, moa_profile **out);
/* Validate + write atomically (temp file + rename). */
moa_status moa_profile_save(const moa_profile *p, const char *path);

#endif
