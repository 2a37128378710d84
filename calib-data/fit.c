/* fit.c - fit a task sample to a token budget: galloping + binary search over the sample
 * size (lines, haystack units, filler sentences, kept context bytes), whose token count
 * (measured by the caller's tokenizer + chat template) grows monotonically with it. */
#include "calib-internal.h"

#include <stdlib.h>
#include <string.h>

moa_fit_params moa_fit_default_params(void) {
    moa_fit_params p = {64, 0.02, (int64_t)1 << 24};
    return p;
}

typedef struct {
    const moa_task_spec *spec;
    uint32_t seed;
    int64_t record;
    moa_count_tokens_fn count;
    void *data;
    int probes;
} fitter;

/* Generates size `k` into *s (cleared first) and returns its token count in *n. */
static moa_status probe(fitter *f, int64_t k, moa_task_sample *s, int *n) {
    moa_task_sample_clear(s);
    MOA_TRY(moa_task_generate(f->spec, f->seed, k, f->record, s));
    f->probes++;
    int c = f->count(f->data, s->prompt, strlen(s->prompt));
    if (c < 0) return moa_err_prefix((moa_status)c, "counting tokens of a %s sample", s->task);
    *n = c;
    return MOA_OK;
}

static void swap_sample(moa_task_sample *a, moa_task_sample *b) {
    moa_task_sample t = *a; *a = *b; *b = t;
}

moa_status moa_task_fit(const moa_task_spec *spec, uint32_t seed, int64_t record,
                        int target, moa_count_tokens_fn count, void *count_data,
                        const moa_fit_params *fpp, moa_task_sample *out, int *n_tokens) {
    if (!spec || !count || !out || !n_tokens)
        return moa_err(MOA_ERR_INVALID_ARG, "moa_task_fit: NULL argument");
    memset(out, 0, sizeof *out);
    moa_task_sample_clear(out);
    *n_tokens = 0;
    if (target < 1) return moa_err(MOA_ERR_INVALID_ARG, "target length %d: must be >= 1", target);
    moa_fit_params fp = fpp ? *fpp : moa_fit_default_params();
    int tol = fp.tolerance_abs;
    if ((double)tol < fp.tolerance_rel * target) tol = (int)(fp.tolerance_rel * target);
    /* longdep with automatic entity count: facts scale with the length (4 people at 1k,
     * 32 at 8k, at most 64), so short buckets fit and long ones stay dense with facts. */
    moa_task_spec auto_spec;
    if (spec->kind == MOA_TASK_LONGDEP && spec->longdep_people <= 0) {
        auto_spec = *spec;
        int people = target / 256;
        auto_spec.longdep_people = people < 4 ? 4 : people > 64 ? 64 : people;
        spec = &auto_spec;
    }
    fitter f = {spec, seed, record, count, count_data, 0};
    const char *name = moa_task_name(spec);
    int64_t kmin = 1, kmax = fp.max_size;
    if (spec->kind == MOA_TASK_JSONL) {
        /* size = context bytes kept; the whole context when it fits. */
        if (!spec->corpus || record < 0 || (size_t)record >= moa_jsonl_count(spec->corpus))
            return moa_task_generate(spec, seed, 0, record, out);  /* reports the error */
        kmin = 0;
        kmax = (int64_t)strlen(moa_jsonl_context(spec->corpus, (size_t)record));
    }
    moa_task_sample lo_s, hi_s;
    memset(&lo_s, 0, sizeof lo_s);
    memset(&hi_s, 0, sizeof hi_s);
    int c_lo = 0, c_hi = -1;
    moa_status st;
    if (spec->kind == MOA_TASK_JSONL) {
        if ((st = probe(&f, kmax, &hi_s, &c_hi)) < 0) goto fail;
        if (c_hi <= target) {  /* short record: whole, at its own length */
            *out = hi_s;
            *n_tokens = c_hi;
            return MOA_OK;
        }
    }
    if ((st = probe(&f, kmin, &lo_s, &c_lo)) < 0) goto fail;
    if (c_lo > target) {
        *out = lo_s;
        *n_tokens = c_lo;
        moa_task_sample_clear(&hi_s);
        return moa_err(MOA_ERR_RANGE, "%s: target %d tokens is below the smallest prompt (%d tokens "
                       "at size %lld)", name, target, c_lo, (long long)kmin);
    }
    /* Linear estimate from sizes kmin and kmin + 16, then gallop up from the last size that
     * fits (doubling steps) until one does not; then bisect. */
    int64_t klo = kmin, khi = -1;
    {
        int64_t k2 = kmin + 16 < kmax ? kmin + 16 : kmax;
        int c2 = 0;
        if ((st = probe(&f, k2, &hi_s, &c2)) < 0) goto fail;
        if (c2 > target) { khi = k2; c_hi = c2; goto bisect; }
        swap_sample(&lo_s, &hi_s);
        double slope = (double)(c2 - c_lo) / (double)(k2 - kmin > 0 ? k2 - kmin : 1);
        if (slope <= 0) slope = 1;
        klo = k2; c_lo = c2;
        int64_t k = klo + (int64_t)((target - (double)c_lo) / slope);
        int64_t step = (klo + 7) / 8 + 1;
        while (klo < kmax) {
            if (k <= klo) k = klo + 1;
            if (k > kmax) k = kmax;
            int ck = 0;
            if ((st = probe(&f, k, &hi_s, &ck)) < 0) goto fail;
            if (ck > target) { khi = k; c_hi = ck; break; }
            swap_sample(&lo_s, &hi_s);
            klo = k; c_lo = ck;
            k = klo + step;
            step *= 2;
        }
        if (khi < 0) goto check;          /* even kmax fits */
    }
bisect:
    while (khi - klo > 1) {
        int64_t mid = klo + (khi - klo) / 2;
        int cm = 0;
        if ((st = probe(&f, mid, &hi_s, &cm)) < 0) goto fail;
        if (cm <= target) { swap_sample(&lo_s, &hi_s); klo = mid; c_lo = cm; }
        else { khi = mid; c_hi = cm; }
    }
check:
    moa_task_sample_clear(&hi_s);
    *out = lo_s;
    *n_tokens = c_lo;
    moa_log_debug("fit %s to %d tokens: size %lld -> %d tokens, next size %d tokens (%d probes)", name, target,
                  (long long)klo, c_lo, c_hi, f.probes);
    if (target - c_lo > tol)
        return moa_err(MOA_ERR_RANGE, "%s: cannot fit %d tokens within %d: best is %d tokens at size "
                       "%lld (max size %lld)", name, target, tol, c_lo, (long long)klo, (long long)kmax);
    return MOA_OK;
fail:
    moa_task_sample_clear(&lo_s);
    moa_task_sample_clear(&hi_s);
    return st;
}
