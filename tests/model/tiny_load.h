/* tiny_load.h - a tiny_model.h GGUF image loaded as a moa_model (tests that link moa_model;
 * tiny_model.h itself stays independent of the code under test). */
#ifndef MOA_TESTS_TINY_LOAD_H
#define MOA_TESTS_TINY_LOAD_H

#include "moa/model.h"
#include "tiny_model.h"

/* The model of image img (kept by the caller while the model lives), or NULL. */
static inline moa_model *tiny_load_image(const gbuf *img) {
    moa_gguf *g;
    moa_model *m = NULL;
    moa_model_params mp = moa_model_default_params();
    mp.compute_sha256 = 0;
    if (moa_gguf_open_memory(img->b, img->n, "tiny.gguf", &g) < 0) return NULL;
    if (moa_model_from_gguf(g, &mp, &m) < 0) return NULL;
    return m;
}

#endif
