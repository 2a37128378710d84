/* fuzz_plan.c - libFuzzer harness for the plan reader (moa-plan v1 JSON): any input is either
 * refused with a status or loads, validates, and survives every accessor and a save round
 * trip; nothing may crash, hang or leak. Build and run: see fuzz_gguf.c and docs/fuzzing.md. */
#include "moa/runtime.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char *text = malloc(size + 1);
    if (!text) return 0;
    memcpy(text, data, size);
    text[size] = '\0';
    moa_plan *p = NULL;
    if (moa_plan_load_string(text, "fuzz.json", &p) >= 0) {
        double acc = 0;
        const int64_t lens[4] = {1, 64, 4096, 1 << 20};
        for (int l = 0; l < moa_plan_n_layer(p); l++)
            for (int u = 0; u < moa_plan_n_units(p); u++)
                for (int k = 0; k < 4; k++) acc += (double)moa_plan_unit_window(p, l, u, lens[k]);
        for (int k = 0; k < 4; k++) acc += moa_plan_density(p, lens[k]);
        moa_plan_validation v;
        if (moa_plan_get_validation(p, &v)) {
            for (int i = 0; i < v.n_lengths; i++) acc += (double)v.length[i];
            if (moa_plan_set_validation(p, &v) < 0) abort();   /* what loaded must pass the setter's checks */
        }
        char *s = NULL;
        if (moa_plan_to_string(p, &s) >= 0) {   /* what we write we must read back */
            moa_plan *q = NULL;
            if (moa_plan_load_string(s, "fuzz-roundtrip.json", &q) < 0) abort();
            moa_plan_free(q);
            free(s);
        }
        (void)acc;
        moa_plan_free(p);
    }
    free(text);
    return 0;
}
