/* arch.c - the table of supported architectures (see arch.h). */
#include "arch.h"

#include <string.h>

static const moa_arch_desc ARCHS[] = {
    /* Llama: adjacent-pair RoPE; biases are rare but llama.cpp accepts them. */
    {"llama", MOA_ROPE_NORMAL, MOA_TENSOR_OPTIONAL, MOA_TENSOR_OPTIONAL, 9},
    /* Qwen2 / Qwen2.5: NEOX RoPE, q/k/v biases (no output projection bias). */
    {"qwen2", MOA_ROPE_NEOX, MOA_TENSOR_REQUIRED, MOA_TENSOR_OPTIONAL, 12},
};

const moa_arch_desc *moa_arch_find(const char *name) {
    if (!name) return NULL;
    for (size_t i = 0; i < sizeof ARCHS / sizeof ARCHS[0]; i++)
        if (strcmp(ARCHS[i].name, name) == 0) return &ARCHS[i];
    return NULL;
}

const char *moa_arch_names(void) { return "llama, qwen2"; }
