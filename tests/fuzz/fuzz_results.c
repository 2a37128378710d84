/* fuzz_results.c - libFuzzer harness for the LongEval results reader (moa_longeval_read_json,
 * the eval output `moa eval compare` and --reference read back): any input is refused with a
 * status or loads results that tabulate; nothing may crash, hang or leak. */
#include "moa/eval.h"
#include "fuzz_h5.h"

#include <stdint.h>
#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (fuzz_write(data, size) < 0) return 0;
    moa_longeval_results *r = NULL;
    if (moa_longeval_read_json(fuzz_tmp_path(), &r) >= 0) {
        char *md = NULL;
        const moa_longeval_results *one[1] = {r};
        if (moa_longeval_compare_md(one, 1, &md) >= 0) free(md);
        moa_longeval_results_free(r);
    }
    return 0;
}
