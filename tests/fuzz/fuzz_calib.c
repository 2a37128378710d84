/* fuzz_calib.c - libFuzzer harness for the calibration file reader (moa-calib v1, HDF5): any
 * input is refused with a status or loads samples whose spans and token arrays are consistent
 * (every token is read, so ASan sees any short array); nothing may crash, hang or leak. Each
 * input goes through the HDF5 guard first, as in moa (fuzz_guard.h): crashes inside libhdf5
 * are counted, not findings. Built with MOA_FUZZ_INPROC (fuzz_calib_inproc) there is no guard:
 * for libFuzzer's fork mode, whose crash inputs tests/fuzz/triage.sh classifies (docs/fuzzing.md). */
#define _GNU_SOURCE   /* dladdr (fuzz_guard.h) */
#include "moa/calib.h"
#include "fuzz_guard.h"

#include <stdint.h>

static moa_status check(const char *path, void *data) {
    (void)data;
    moa_calib_file *f = NULL;
    moa_status st = moa_calib_read_unguarded(path, &f);
    moa_calib_file_free(f);
    return st;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (fuzz_write(data, size) < 0) return 0;
    if (!fuzz_guard(data, size, check)) return 0;
    moa_calib_file *f = NULL;
    if (moa_calib_read_unguarded(fuzz_tmp_path(), &f) >= 0) {
        int64_t sum = 0;
        for (int64_t i = 0; i < f->n_samples; i++) {
            const moa_calib_sample *s = &f->samples[i];
            if (s->prompt_len < 0 || s->response_start > s->response_end || s->response_end > s->n_tokens) abort();
            for (int32_t j = 0; j < s->n_tokens; j++) sum += s->tokens[j];
        }
        moa_calib_check_vocab(f, 49152);
        (void)sum;
        moa_calib_file_free(f);
    }
    return 0;
}
