/* run.c - the profiling job: calib.h5 -> profile.h5, sharded, checkpointed, resumable. */
#include "moa/profiler.h"
#include "moa/calib.h"
#include "moa/profile-file.h"
#include "moa/common.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

moa_profile_run_params moa_profile_run_default_params(void) {
    const moa_profile_run_params p = {.prof = moa_profiler_default_params(), .shard_index = 0,
                                      .shard_count = 1};
    return p;
}

/* The settings a checkpoint belongs to, as one line of text. */
static void ckpt_identity(char *buf, size_t n, const char *calib_sha, const moa_model *m,
                          const moa_profile_run_params *p) {
    snprintf(buf, n, "moa-profile-checkpoint v1 calib=%s model=%s shard=%d/%d sink=%d block=%d eps=%.9g\n",
             calib_sha, m->sha256, p->shard_index, p->shard_count, p->prof.sink, p->prof.block,
             (double)p->prof.eps);
}

static int64_t profile_samples(const moa_profile *pr) {
    int64_t s = 0;
    for (int b = 0; b < pr->n_buckets; b++) s += pr->buckets[b].n_samples;
    return s;
}

/* Fold bins >= n_keep of every (layer, head) row into bin n_keep-1 (suffix sums for windows
 * up to the bucket length are unchanged) and copy rows of n_keep bins into dst. */
static void fold_bins(const double *src, int64_t rows, int64_t n_src, int64_t n_keep, double *dst) {
    for (int64_t r = 0; r < rows; r++) {
        const double *s = src + r * n_src;
        double *d = dst + r * n_keep;
        int64_t k = n_src < n_keep ? n_src : n_keep;
        for (int64_t b = 0; b < n_keep; b++) d[b] = b < k ? s[b] : 0;
        for (int64_t b = n_keep; b < n_src; b++) d[n_keep - 1] += s[b];
    }
}

/* One profiling job: its inputs, the profile being filled and the checkpoint's names. */
typedef struct {
    const moa_model *m;
    const char *calib_path, *out_path;
    moa_profile_run_params p;
    char calib_sha[65];
    moa_calib_file *cf;
    moa_profile *pr;
    int64_t *lengths;          /* the distinct requested lengths (buckets) */
    int n_len;
    int64_t n_max, total;      /* longest sample of this shard (>= 2); samples to profile */
    const char *ckpt;          /* identity line; ckpt_h5 holds the partial profile */
    char ckpt_buf[4096];
    char *ckpt_h5, *ckpt_id;
    int64_t done_samples;      /* samples already in the checkpoint */
} profile_job;

/* buckets: the distinct requested lengths; the longest sample sizes the scratch */
static moa_status scan_samples(profile_job *j) {
    const moa_calib_file *cf = j->cf;
    const moa_profile_run_params *p = &j->p;
    j->lengths = moa_alloc_array((size_t)cf->n_samples + 1, sizeof(int64_t));
    if (!j->lengths) return moa_err(MOA_ERR_NOMEM, "out of memory");
    j->n_len = 0;
    j->n_max = 2;
    j->total = 0;
    for (int64_t i = 0; i < cf->n_samples; i++) {
        const moa_calib_sample *s = &cf->samples[i];
        int seen = 0;
        for (int k = 0; k < j->n_len; k++) seen |= j->lengths[k] == s->bucket;
        if (!seen) {
            if (j->n_len >= MOA_PROFILE_MAX_BUCKETS)
                return moa_err(MOA_ERR_UNSUPPORTED, "%s: more than %d length buckets", j->calib_path,
                               MOA_PROFILE_MAX_BUCKETS);
            j->lengths[j->n_len++] = s->bucket;
        }
        if (i % p->shard_count != p->shard_index) continue;
        if (s->n_tokens > j->n_max) j->n_max = s->n_tokens;
        if (s->n_tokens > j->m->hp.n_ctx_train)
            return moa_err(MOA_ERR_RANGE, "%s: sample %lld has %d tokens, more than the model's context %d",
                           j->calib_path, (long long)i, s->n_tokens, j->m->hp.n_ctx_train);
        if (s->response_end <= s->response_start) continue;   /* nothing to learn from */
        j->total++;
    }
    return MOA_OK;
}

/* checkpoint: "<ckpt>" holds the identity line, "<ckpt>.h5" the partial profile. With
 * resume and both present, the partial profile replaces j->pr (the identity must match);
 * else a new identity line is written and an old partial profile removed. */
static moa_status open_checkpoint(profile_job *j) {
    const moa_profile_run_params *p = &j->p;
    j->ckpt = p->checkpoint_path;
    if (!j->ckpt) { snprintf(j->ckpt_buf, sizeof j->ckpt_buf, "%s.ckpt", j->out_path); j->ckpt = j->ckpt_buf; }
    size_t cl = strlen(j->ckpt) + 8;
    j->ckpt_h5 = malloc(cl);
    j->ckpt_id = malloc(1024);
    if (!j->ckpt_h5 || !j->ckpt_id) return moa_err(MOA_ERR_NOMEM, "out of memory");
    snprintf(j->ckpt_h5, cl, "%s.h5", j->ckpt);
    ckpt_identity(j->ckpt_id, 1024, j->calib_sha, j->m, p);
    j->done_samples = 0;
    if (p->resume && moa_file_exists(j->ckpt) && moa_file_exists(j->ckpt_h5)) {
        char *text = NULL;
        size_t len;
        MOA_TRY(moa_read_file(j->ckpt, &text, &len));
        int same = strcmp(text, j->ckpt_id) == 0;
        free(text);
        if (!same)
            return moa_err(MOA_ERR_MISMATCH, "checkpoint %s belongs to other settings or inputs; "
                           "remove it or run without --resume", j->ckpt);
        moa_profile *old = NULL;
        MOA_TRY(moa_profile_load(j->ckpt_h5, &old));
        moa_profile_free(j->pr);
        j->pr = old;
        j->done_samples = profile_samples(j->pr);
        moa_log_info("resuming from %s: %lld of %lld samples done", j->ckpt, (long long)j->done_samples,
                     (long long)j->total);
    } else {
        moa_atomic_file af;
        MOA_TRY(moa_atomic_open(&af, j->ckpt, "w"));
        fputs(j->ckpt_id, af.fp);
        MOA_TRY(moa_atomic_commit(&af));
        unlink(j->ckpt_h5);
    }
    return MOA_OK;
}

/* The samples of this shard not yet in the checkpoint, one by one: histograms, folded to
 * the bucket's bins, added to the profile, the checkpoint saved after each. */
static moa_status run_samples(profile_job *j) {
    const moa_profile_run_params *p = &j->p;
    const moa_llama_hparams *hp = &j->m->hp;
    moa_profiler *prof = NULL;
    double *abs = NULL, *sgn = NULL, *sk = NULL, *fa = NULL, *fs = NULL;
    moa_status st;
    if ((st = moa_profiler_create(j->m, j->n_max, &p->prof, &prof)) < 0) goto done;
    int64_t nb_max = (j->n_max + p->prof.block - 1) / p->prof.block, rows = (int64_t)hp->n_layer * hp->n_head;
    abs = moa_alloc_array((size_t)(rows * nb_max), sizeof(double));
    sgn = moa_alloc_array((size_t)(rows * nb_max), sizeof(double));
    fa = moa_alloc_array((size_t)(rows * nb_max), sizeof(double));
    fs = moa_alloc_array((size_t)(rows * nb_max), sizeof(double));
    sk = moa_alloc_array((size_t)rows, sizeof(double));
    if (!abs || !sgn || !sk || !fa || !fs) { st = moa_err(MOA_ERR_NOMEM, "out of memory"); goto done; }
    int64_t k = 0, tokens = 0;
    for (int64_t i = 0; i < j->cf->n_samples; i++) {
        const moa_calib_sample *s = &j->cf->samples[i];
        if (i % p->shard_count != p->shard_index || s->response_end <= s->response_start) continue;
        if (k++ < j->done_samples) continue;          /* already in the checkpoint */
        if (p->max_samples > 0 && k - j->done_samples > p->max_samples) {
            st = moa_err(MOA_ERR_INTERRUPTED, "stopped after %lld samples (checkpoint %s kept)",
                         (long long)p->max_samples, j->ckpt);
            goto done;
        }
        memset(abs, 0, sizeof(double) * (size_t)(rows * nb_max));
        memset(sgn, 0, sizeof(double) * (size_t)(rows * nb_max));
        memset(sk, 0, sizeof(double) * (size_t)rows);
        moa_profiler_hist hist = {abs, sgn, sk, NULL, nb_max};
        double loss;
        if ((st = moa_profiler_sample(prof, s->tokens, s->n_tokens, s->response_start, s->response_end,
                                      &hist, &loss, NULL)) < 0) {
            moa_err_prefix(st, "%s: sample %lld", j->calib_path, (long long)i);
            goto done;
        }
        int b = moa_profile_find_bucket(j->pr, s->bucket);
        MOA_ASSERT(b >= 0);
        int64_t nb = j->pr->buckets[b].n_bins;
        fold_bins(abs, rows, nb_max, nb, fa);
        fold_bins(sgn, rows, nb_max, nb, fs);
        if ((st = moa_profile_add_sample(j->pr, b, fa, fs, sk, s->n_tokens)) < 0) goto done;
        if ((st = moa_profile_save(j->pr, j->ckpt_h5)) < 0) goto done;
        tokens += s->n_tokens;
        moa_log_debug("sample %lld: %d tokens, loss %.4f", (long long)i, s->n_tokens, loss);
        if (p->progress) p->progress(p->progress_data, (double)k, (double)j->total, (double)tokens, "tok");
    }
done:
    free(abs); free(sgn); free(sk); free(fa); free(fs);
    moa_profiler_free(prof);
    return st;
}

/* The job after its first checks: buckets, a new (or the checkpoint's) profile, the
 * samples, the profile saved to out_path and the checkpoint removed. */
static moa_status profile_job_run(profile_job *j) {
    const moa_llama_hparams *hp = &j->m->hp;
    moa_status st;
    if (strcmp(j->cf->model_sha256, j->m->sha256) != 0)
        return moa_err(MOA_ERR_MISMATCH, "%s was built with model %s, not this model (%s)",
                       j->calib_path, j->cf->model_sha256, j->m->sha256);
    if ((st = moa_calib_check_vocab(j->cf, hp->n_vocab)) < 0) {
        moa_err_prefix(st, "%s", j->calib_path);
        return st;
    }
    MOA_TRY(scan_samples(j));
    MOA_TRY(moa_profile_create(hp->n_layer, hp->n_head, hp->n_head_kv, hp->head_dim, j->p.prof.sink,
                               j->p.prof.block, j->lengths, j->n_len, &j->pr));
    snprintf(j->pr->model_sha256, sizeof j->pr->model_sha256, "%s", j->m->sha256);
    snprintf(j->pr->arch, sizeof j->pr->arch, "%s", hp->arch);
    MOA_TRY(open_checkpoint(j));
    MOA_TRY(moa_profile_set_source(j->pr, j->calib_sha, j->p.shard_index, j->p.shard_count));
    MOA_TRY(run_samples(j));
    MOA_TRY(moa_profile_save(j->pr, j->out_path));
    unlink(j->ckpt_h5);
    unlink(j->ckpt);
    return MOA_OK;
}

moa_status moa_profile_run(const moa_model *m, const char *calib_path, const char *out_path,
                           const moa_profile_run_params *pp) {
    profile_job j;
    memset(&j, 0, sizeof j);
    j.p = pp ? *pp : moa_profile_run_default_params();
    j.m = m;
    j.calib_path = calib_path;
    j.out_path = out_path;
    if (j.p.shard_count < 1 || j.p.shard_index < 0 || j.p.shard_index >= j.p.shard_count)
        return moa_err(MOA_ERR_INVALID_ARG, "profile: shard %d/%d: expected 0 <= I < N", j.p.shard_index,
                       j.p.shard_count);
    if (!m->sha256[0])
        return moa_err(MOA_ERR_INVALID_ARG, "profile: the model's sha256 was not computed");
    MOA_TRY(moa_sha256_file(calib_path, j.calib_sha));
    MOA_TRY(moa_calib_read(calib_path, &j.cf));
    moa_status st = profile_job_run(&j);
    free(j.lengths);
    free(j.ckpt_h5); free(j.ckpt_id);
    moa_profile_free(j.pr);
    moa_calib_file_free(j.cf);
    return st;
}

moa_status moa_profile_merge_files(const char *const *inputs, int n, const char *out_path) {
    if (n < 1) return moa_err(MOA_ERR_INVALID_ARG, "merge: no input profiles");
    /* The same file given twice would count its samples twice: refuse byte-identical inputs
     * here (profiles of older writers record no shard), and shards already merged in
     * moa_profile_merge. */
    char (*sha)[65] = calloc((size_t)n, sizeof *sha);
    if (!sha) return moa_err(MOA_ERR_NOMEM, "out of memory");
    for (int i = 0; i < n; i++) {
        moa_status st = moa_sha256_file(inputs[i], sha[i]);
        if (st < 0) { free(sha); return moa_err_prefix(st, "merge"); }
        for (int j = 0; j < i; j++)
            if (!strcmp(sha[i], sha[j])) {
                st = moa_err(MOA_ERR_MISMATCH, "merge: %s and %s are the same profile (sha256 %.16s...); "
                             "each shard may be counted once", inputs[j], inputs[i], sha[i]);
                free(sha);
                return st;
            }
    }
    free(sha);
    moa_profile *acc = NULL;
    MOA_TRY(moa_profile_load(inputs[0], &acc));
    for (int i = 1; i < n; i++) {
        moa_profile *pr = NULL;
        moa_status st = moa_profile_load(inputs[i], &pr);
        if (st >= 0) st = moa_profile_merge(acc, pr);
        moa_profile_free(pr);
        if (st < 0) {
            moa_profile_free(acc);
            return moa_err_prefix(st, "merging %s", inputs[i]);
        }
    }
    moa_status st = moa_profile_save(acc, out_path);
    moa_profile_free(acc);
    return st;
}
