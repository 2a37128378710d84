/* fuzz_evallog.h - the fixed LongEval run whose results log fuzz_evallog reads back and
 * make_seeds writes: lines task, lengths 128 and 256, one sample per (length, bin), a
 * 676-word synthetic label list, label "dense", no model settings. A log whose header differs
 * is refused at line 1, so the seeds (made by this very run) carry the matching header. The
 * words, parameters and model of the run are built here for both (fuzz_evallog.c, make_seeds.c). */
#ifndef MOA_FUZZ_EVALLOG_H
#define MOA_FUZZ_EVALLOG_H

#include "moa/eval.h"

#include <string.h>

static const int fuzz_evallog_lengths[2] = {128, 256};

/* The label list "aax".."zzx" (owned by the caller; NULL on failure). */
static moa_wordlist *fuzz_evallog_words(void) {
    static char buf[26 * 26][4];
    static const char *ptr[26 * 26];
    for (int i = 0; i < 26 * 26; i++) {
        buf[i][0] = (char)('a' + i / 26);
        buf[i][1] = (char)('a' + i % 26);
        buf[i][2] = 'x';
        buf[i][3] = '\0';
        ptr[i] = buf[i];
    }
    moa_wordlist *wl = NULL;
    return moa_wordlist_from_words(ptr, 26 * 26, &wl) < 0 ? NULL : wl;
}

static moa_longeval_params fuzz_evallog_params(const moa_wordlist *words, const char *log_path) {
    moa_longeval_params p = moa_longeval_default_params();
    p.lengths = fuzz_evallog_lengths;
    p.n_lengths = 2;
    p.samples_per_cell = 1;
    p.max_new_tokens = 16;
    p.words = words;
    p.label = "dense";
    p.log_path = log_path;
    return p;
}

/* The run's model: the tokenizer and responder callbacks given, no data, no begin_length. */
static moa_eval_model fuzz_evallog_model(moa_count_tokens_fn count,
                                         moa_status (*encode)(void *, const char *, size_t, int32_t **, int *),
                                         moa_detokenize_fn detok, moa_respond_fn respond) {
    moa_eval_model m;
    memset(&m, 0, sizeof m);
    m.tok.count_tokens = count;
    m.tok.encode_prompt = encode;
    m.tok.detokenize = detok;
    m.respond = respond;
    return m;
}

#endif
