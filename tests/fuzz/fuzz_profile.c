/* fuzz_profile.c - libFuzzer harness for the profile reader (moa-profile v1, HDF5): any input
 * is refused with a status or loads a profile that passes moa_profile_validate (whose sums are
 * finite) and merges with itself; nothing may crash, hang or leak. Each input goes through the
 * HDF5 guard first, as in moa (fuzz_guard.h): crashes inside libhdf5 are counted, not findings.
 * Built with MOA_FUZZ_INPROC (fuzz_profile_inproc) there is no guard: for libFuzzer's fork mode,
 * whose crash inputs tests/fuzz/triage.sh classifies (docs/fuzzing.md). */
#define _GNU_SOURCE   /* dladdr (fuzz_guard.h) */
#include "fuzz_guard.h"
#include "moa/profile-file.h"

#include <math.h>
#include <stdint.h>

static moa_status check(const char *path, void *data) {
    (void)data;
    moa_profile *p = NULL;
    moa_status st = moa_profile_load_unguarded(path, &p);
    moa_profile_free(p);
    return st;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (fuzz_write(data, size) < 0) return 0;
    if (!fuzz_guard(data, size, check)) return 0;
    moa_profile *p = NULL;
    if (moa_profile_load_unguarded(fuzz_tmp_path(), &p) >= 0) {
        if (moa_profile_validate(p) < 0) abort();
        double total = 0;   /* the optimiser's sums: finite by the reader's contract */
        for (int b = 0; b < p->n_buckets; b++) {
            const moa_profile_bucket *k = &p->buckets[b];
            for (int64_t i = 0; i < p->n_layer * p->n_head * k->n_bins; i++) total += k->influence_abs[i];
        }
        if (!isfinite(total)) abort();
        moa_profile_free(p);
    }
    return 0;
}
