/* run.c - the profiling job: calib.h5 -> profile.h5, sharded, checkpointed, resumable. */
#include "run.h"
#include "calib.h"
#include "profile-file.h"
#include "moa-common.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

moa_profile_run_params moa_profile_run_default_params(void) {
    moa_profile_run_params p;
    memset(&p, 0, sizeof p);
    p.prof = moa_profiler_default_params();
    p.shard_index = 0;
    p.shard_count = 1;
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

moa_status moa_profile_run(const moa_model *m, const char *calib_path, const char *out_path,
                           const moa_profile_run_params *pp) {
    moa_profile_run_params p = pp ? *pp : moa_profile_run_default_params();
    const moa_llama_hparams *hp = &m->hp;
    if (p.shard_count < 1 || p.shard_index < 0 || p.shard_index >= p.shard_count)
        return moa_err(MOA_ERR_INVALID_ARG, "profile: shard %d/%d: expected 0 <= I < N", p.shard_index, p.shard_count);
    if (!m->sha256[0])
        return moa_err(MOA_ERR_INVALID_ARG, "profile: the model's sha256 was not computed");
    char calib_sha[65];
    MOA_TRY(moa_sha256_file(calib_path, calib_sha));
    moa_calib_file *cf = NULL;
    MOA_TRY(moa_calib_read(calib_path, &cf));
    moa_status st = MOA_OK;
    moa_profile *pr = NULL;
    moa_profiler *prof = NULL;
    double *abs = NULL, *sgn = NULL, *sk = NULL, *fa = NULL, *fs = NULL;
    char *ckpt_h5 = NULL, *ckpt_id = NULL;
    int64_t *lengths = NULL;
    if (strcmp(cf->model_sha256, m->sha256) != 0) {
        st = moa_err(MOA_ERR_MISMATCH, "%s was built with model %s, not this model (%s)",
                     calib_path, cf->model_sha256, m->sha256);
        goto done;
    }
    if ((st = moa_calib_check_vocab(cf, hp->n_vocab)) < 0) {
        moa_err_prefix(st, "%s", calib_path);
        goto done;
    }
    /* buckets: the distinct requested lengths; the longest sample sizes the scratch */
    lengths = moa_alloc_array((size_t)cf->n_samples + 1, sizeof(int64_t));
    if (!lengths) { st = moa_err(MOA_ERR_NOMEM, "out of memory"); goto done; }
    int n_len = 0;
    int64_t n_max = 2, total = 0;
    for (int64_t i = 0; i < cf->n_samples; i++) {
        const moa_calib_sample *s = &cf->samples[i];
        int seen = 0;
        for (int k = 0; k < n_len; k++) seen |= lengths[k] == s->bucket;
        if (!seen) {
            if (n_len >= MOA_PROFILE_MAX_BUCKETS) {
                st = moa_err(MOA_ERR_UNSUPPORTED, "%s: more than %d length buckets", calib_path, MOA_PROFILE_MAX_BUCKETS);
                goto done;
            }
            lengths[n_len++] = s->bucket;
        }
        if (i % p.shard_count != p.shard_index) continue;
        if (s->n_tokens > n_max) n_max = s->n_tokens;
        if (s->n_tokens > hp->n_ctx_train) {
            st = moa_err(MOA_ERR_RANGE, "%s: sample %lld has %d tokens, more than the model's context %d",
                         calib_path, (long long)i, s->n_tokens, hp->n_ctx_train);
            goto done;
        }
        if (s->response_end <= s->response_start) continue;   /* nothing to learn from */
        total++;
    }
    if ((st = moa_profile_create(hp->n_layer, hp->n_head, hp->n_head_kv, hp->head_dim, p.prof.sink,
                                 p.prof.block, lengths, n_len, &pr)) < 0) goto done;
    snprintf(pr->model_sha256, sizeof pr->model_sha256, "%s", m->sha256);
    snprintf(pr->arch, sizeof pr->arch, "%s", hp->arch);

    /* checkpoint: "<ckpt>" holds the identity line, "<ckpt>.h5" the partial profile */
    const char *ckpt = p.checkpoint_path;
    char ckpt_buf[4096];
    if (!ckpt) { snprintf(ckpt_buf, sizeof ckpt_buf, "%s.ckpt", out_path); ckpt = ckpt_buf; }
    size_t cl = strlen(ckpt) + 8;
    ckpt_h5 = malloc(cl);
    ckpt_id = malloc(1024);
    if (!ckpt_h5 || !ckpt_id) { st = moa_err(MOA_ERR_NOMEM, "out of memory"); goto done; }
    snprintf(ckpt_h5, cl, "%s.h5", ckpt);
    ckpt_identity(ckpt_id, 1024, calib_sha, m, &p);
    int64_t done_samples = 0;
    if (p.resume && moa_file_exists(ckpt) && moa_file_exists(ckpt_h5)) {
        char *text = NULL;
        size_t len;
        if ((st = moa_read_file(ckpt, &text, &len)) < 0) goto done;
        int same = strcmp(text, ckpt_id) == 0;
        free(text);
        if (!same) {
            st = moa_err(MOA_ERR_MISMATCH, "checkpoint %s belongs to other settings or inputs; "
                         "remove it or run without --resume", ckpt);
            goto done;
        }
        moa_profile *old = NULL;
        if ((st = moa_profile_load(ckpt_h5, &old)) < 0) goto done;
        moa_profile_free(pr);
        pr = old;
        done_samples = profile_samples(pr);
        moa_log_info("resuming from %s: %lld of %lld samples done", ckpt, (long long)done_samples, (long long)total);
    } else {
        moa_atomic_file af;
        if ((st = moa_atomic_open(&af, ckpt, "w")) < 0) goto done;
        fputs(ckpt_id, af.fp);
        if ((st = moa_atomic_commit(&af)) < 0) goto done;
        unlink(ckpt_h5);
    }
    if ((st = moa_profile_set_source(pr, calib_sha, p.shard_index, p.shard_count)) < 0) goto done;

    if ((st = moa_profiler_create(m, n_max, &p.prof, &prof)) < 0) goto done;
    int64_t nb_max = (n_max + p.prof.block - 1) / p.prof.block, rows = (int64_t)hp->n_layer * hp->n_head;
    abs = moa_alloc_array((size_t)(rows * nb_max), sizeof(double));
    sgn = moa_alloc_array((size_t)(rows * nb_max), sizeof(double));
    fa = moa_alloc_array((size_t)(rows * nb_max), sizeof(double));
    fs = moa_alloc_array((size_t)(rows * nb_max), sizeof(double));
    sk = moa_alloc_array((size_t)rows, sizeof(double));
    if (!abs || !sgn || !sk || !fa || !fs) { st = moa_err(MOA_ERR_NOMEM, "out of memory"); goto done; }
    int64_t k = 0, tokens = 0;
    for (int64_t i = 0; i < cf->n_samples; i++) {
        const moa_calib_sample *s = &cf->samples[i];
        if (i % p.shard_count != p.shard_index || s->response_end <= s->response_start) continue;
        if (k++ < done_samples) continue;          /* already in the checkpoint */
        if (p.max_samples > 0 && k - done_samples > p.max_samples) {
            st = moa_err(MOA_ERR_INTERRUPTED, "stopped after %lld samples (checkpoint %s kept)",
                         (long long)p.max_samples, ckpt);
            goto done;
        }
        memset(abs, 0, sizeof(double) * (size_t)(rows * nb_max));
        memset(sgn, 0, sizeof(double) * (size_t)(rows * nb_max));
        memset(sk, 0, sizeof(double) * (size_t)rows);
        moa_profiler_hist hist = {abs, sgn, sk, NULL, nb_max};
        double loss;
        if ((st = moa_profiler_sample(prof, s->tokens, s->n_tokens, s->response_start, s->response_end,
                                      &hist, &loss, NULL)) < 0) {
            moa_err_prefix(st, "%s: sample %lld", calib_path, (long long)i);
            goto done;
        }
        int b = moa_profile_find_bucket(pr, s->bucket);
        MOA_ASSERT(b >= 0);
        int64_t nb = pr->buckets[b].n_bins;
        fold_bins(abs, rows, nb_max, nb, fa);
        fold_bins(sgn, rows, nb_max, nb, fs);
        if ((st = moa_profile_add_sample(pr, b, fa, fs, sk, s->n_tokens)) < 0) goto done;
        if ((st = moa_profile_save(pr, ckpt_h5)) < 0) goto done;
        tokens += s->n_tokens;
        moa_log_debug("sample %lld: %d tokens, loss %.4f", (long long)i, s->n_tokens, loss);
        if (p.progress) p.progress(p.progress_data, (double)k, (double)total, (double)tokens, "tok");
    }
    if ((st = moa_profile_save(pr, out_path)) < 0) goto done;
    unlink(ckpt_h5);
    unlink(ckpt);
done:
    free(lengths); free(abs); free(sgn); free(sk); free(fa); free(fs);
    free(ckpt_h5); free(ckpt_id);
    moa_profiler_free(prof);
    moa_profile_free(pr);
    moa_calib_file_free(cf);
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
