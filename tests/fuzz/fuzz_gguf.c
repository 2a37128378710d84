/* fuzz_gguf.c - libFuzzer harness for the GGUF reader and the llama loader. Any input must
 * either be rejected with a status or load; nothing may crash, hang or leak.
 * Build: cmake -S . -B build-fuzz -DCMAKE_C_COMPILER=clang -DMOA_FUZZ=ON -DMOA_UNIT_ONLY=ON
 *        cmake --build build-fuzz --target fuzz_gguf
 * Run:   build-fuzz/tests/fuzz/fuzz_gguf -max_total_time=600 corpus/ */
#include "moa/model.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    /* exact-size copy, so any read past the end is caught by ASan */
    uint8_t *copy = malloc(size ? size : 1);
    if (!copy) return 0;
    memcpy(copy, data, size);
    moa_gguf *g = NULL;
    if (moa_gguf_open_memory(copy, size, "fuzz.gguf", &g) >= 0) {
        /* touch everything the accessors expose */
        char buf[128];
        for (int64_t i = 0; i < moa_gguf_n_kv(g); i++) moa_gguf_kv_format(g, i, buf, sizeof buf);
        float sink = 0;
        for (int64_t i = 0; i < moa_gguf_n_tensors(g); i++) {
            const moa_gguf_tensor *t = moa_gguf_tensor_at(g, i);
            const uint8_t *p = moa_gguf_tensor_data(g, t);
            float row[256];
            uint32_t be;
            if (moa_ggml_type_info(t->type, &be, NULL) && t->ne[0] >= be && t->n_bytes > 0) {
                moa_dequant_row(t->type, p, row, be);   /* first block */
                sink += row[0];
            }
        }
        (void)sink;
        moa_model_params mp = moa_model_default_params();
        mp.compute_sha256 = 0;
        mp.f32_weights = 0;
        moa_model *m = NULL;
        if (moa_model_from_gguf(g, &mp, &m) >= 0) moa_model_free(m);   /* takes g */
    }
    free(copy);
    return 0;
}
