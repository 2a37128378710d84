/* test_compress_defaults.c - the settings moa_compress_prepare derives from the model's
 * context (docs/user-guide.md, "Defaults"), on tiny models of context 8192 (as SmolLM2) and
 * 32768 (as Qwen2.5): calibration lengths C/16..C/2, validation on the longest, validation
 * lengths the calibration ones then doublings up to the largest multiple of 512 leaving room
 * for a 100-token answer; explicit settings kept. */
#include "moa/pipeline.h"
#include "moa/model.h"
#include "moa/common.h"
#include "test.h"
#include "../model/tiny_load.h"

static moa_model *tiny_with_context(int n_ctx, gbuf *img) {
    tiny_cfg c = {1, 16, 2, 1, 24, 29, n_ctx, 10000.0f, 1e-5f, 1};
    tiny_weights w = tiny_make(c, 1);
    *img = tiny_gguf(&w);
    tiny_free(&w);
    return tiny_load_image(img);
}

static void expect_lengths(const char *what, const int *got, int n, const int *want, int nw) {
    CHECK_MSG(n == nw, "%s: %d lengths, expected %d", what, n, nw);
    for (int i = 0; i < n && i < nw; i++) CHECK_MSG(got[i] == want[i], "%s[%d] = %d, expected %d", what, i, got[i], want[i]);
}

static void check_context(int C, const int *calib, const int *eval, int n_eval) {
    gbuf img;
    moa_model *m = tiny_with_context(C, &img);
    CHECK_MSG(m != NULL, "tiny model of context %d: %s", C, moa_last_error());
    if (m) {
        moa_compress_params in = moa_compress_default_params(), p;
        in.workdir = "unused";
        in.density = 0.5;
        CHECK_OK(moa_compress_prepare(m, &in, &p));
        char what[64];
        snprintf(what, sizeof what, "C %d: calibration lengths", C);
        expect_lengths(what, p.calib_lengths, p.n_calib_lengths, calib, 4);
        CHECK_EQ_INT((int)p.validation_length, calib[3]);
        snprintf(what, sizeof what, "C %d: validation lengths", C);
        expect_lengths(what, p.eval_lengths, p.n_eval_lengths, eval, n_eval);
        /* explicit lengths are kept as given */
        in.n_eval_lengths = 2;
        in.eval_lengths[0] = 1000, in.eval_lengths[1] = 300;
        CHECK_OK(moa_compress_prepare(m, &in, &p));
        const int kept[2] = {1000, 300};
        expect_lengths("explicit", p.eval_lengths, p.n_eval_lengths, kept, 2);
        moa_model_free(m);
    }
    free(img.b);
}

TEST(defaults_from_the_context) {
    const int c8[4] = {512, 1024, 2048, 4096}, e8[5] = {512, 1024, 2048, 4096, 7680};
    check_context(8192, c8, e8, 5);
    const int c32[4] = {2048, 4096, 8192, 16384}, e32[5] = {2048, 4096, 8192, 16384, 32256};
    check_context(32768, c32, e32, 5);
    /* a context just above a power of two: the doublings stop at the context's own cap */
    const int c5[4] = {320, 640, 1280, 2560}, e5[5] = {320, 640, 1280, 2560, 4608};
    check_context(5120, c5, e5, 5);
}

int main(void) {
    RUN(defaults_from_the_context);
    return test_summary();
}
