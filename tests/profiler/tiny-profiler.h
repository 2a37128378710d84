/* tiny-profiler.h - a profiler-ready moa_model (f32 weight copies) from the tiny random
 * Llama of tests/model/tiny_model.h, and random token ids; shared by the profiler tests on
 * CPU and CUDA. Exits the test on failure. The GGUF image must outlive the model. */
#ifndef MOA_TEST_TINY_PROFILER_H
#define MOA_TEST_TINY_PROFILER_H

#include "moa/model.h"
#include "moa/common.h"
#include "../model/tiny_model.h"

#include <stdio.h>
#include <stdlib.h>

static inline moa_model *tiny_profiler_model(const tiny_weights *w, gbuf *img) {
    *img = tiny_gguf(w);
    moa_gguf *g;
    moa_model *m = NULL;
    moa_model_params mp = moa_model_default_params();
    mp.f32_weights = 1;   /* the CPU profiler multiplies f32 copies */
    mp.compute_sha256 = 0;
    if (moa_gguf_open_memory(img->b, img->n, "tiny.gguf", &g) < 0 || moa_model_from_gguf(g, &mp, &m) < 0) {
        fprintf(stderr, "tiny model: %s\n", moa_last_error());
        exit(1);
    }
    return m;
}

/* n token ids in [0, n_vocab) from a seeded stream */
static inline void tiny_random_tokens(int32_t *t, int n, int n_vocab, uint64_t seed) {
    for (int i = 0; i < n; i++) t[i] = (int32_t)((tiny_rand(&seed) + 1) * 0.5 * n_vocab) % n_vocab;
}

#endif
