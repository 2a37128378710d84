/* fuzz_evallog.c - libFuzzer harness for the LongEval results log reader (the per-sample
 * JSONL log of moa_longeval_run that `moa eval longeval --resume/--collect` and `moa compress`
 * read back): each input is the log of the run in fuzz_evallog.h, read with resume +
 * collect_only (nothing is generated; the model callbacks must never be called). Any input
 * is refused with a status or yields results that tabulate; nothing may crash, hang or leak. */
#include "fuzz_evallog.h"
#include "fuzz_h5.h"

#include <stdint.h>
#include <stdlib.h>

static int never_count(void *d, const char *t, size_t n) { (void)d; (void)t; (void)n; abort(); }
static moa_status never_encode(void *d, const char *t, size_t n, int32_t **ids, int *k) {
    (void)d; (void)t; (void)n; (void)ids; (void)k; abort();
}
static moa_status never_detok(void *d, const int32_t *ids, int n, char **t) { (void)d; (void)ids; (void)n; (void)t; abort(); }
static moa_status never_respond(void *d, const int32_t *p, int n, int m, int32_t **o, int *k) {
    (void)d; (void)p; (void)n; (void)m; (void)o; (void)k; abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static moa_wordlist *words;
    if (!words && !(words = fuzz_evallog_words())) abort();
    if (fuzz_write(data, size) < 0) return 0;
    moa_longeval_params p = fuzz_evallog_params(words, fuzz_tmp_path());
    p.resume = 1;
    p.collect_only = 1;
    moa_eval_model m = fuzz_evallog_model(never_count, never_encode, never_detok, never_respond);
    moa_longeval_results *r = NULL;
    if (moa_longeval_run(&p, &m, NULL, NULL, &r) >= 0) {
        if (r->n_rows > 20) abort();   /* at most one row per grid cell */
        char *md = NULL;
        const moa_longeval_results *one[1] = {r};
        if (moa_longeval_compare_md(one, 1, &md) >= 0) free(md);
        moa_longeval_results_free(r);
    }
    return 0;
}
