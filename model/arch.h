/* arch.h - internal to model/ (and its tests): model architectures described by data. Each GGUF
 * `general.architecture` the engine runs has one entry: its RoPE pairing, which attention
 * biases its blocks carry, and the tensors every block must have. The loader (llama.c), the CPU
 * and CUDA forward passes and the profiler read these facts from the loaded model
 * (moa_llama_hparams.rope_pairing, the layer's bias vectors), never by comparing architecture
 * names. Adding an architecture of the same block structure is adding a row to the table in
 * arch.c. Immutable tables: thread-safe. */
#ifndef MOA_ARCH_H
#define MOA_ARCH_H

#include "moa/runtime.h"   /* moa_rope_pairing */

typedef enum {
    MOA_TENSOR_ABSENT   = 0,   /* never read */
    MOA_TENSOR_OPTIONAL = 1,   /* used when the file has it */
    MOA_TENSOR_REQUIRED = 2,   /* the file is refused without it */
} moa_tensor_need;

typedef struct moa_arch_desc {
    const char *name;              /* general.architecture, also the metadata key prefix */
    moa_rope_pairing rope_pairing; /* MOA_ROPE_NORMAL (llama) or MOA_ROPE_NEOX (qwen2) */
    moa_tensor_need qkv_bias;      /* blk.N.attn_{q,k,v}.bias */
    moa_tensor_need output;        /* output.weight (absent or optional: tied to token_embd) */
    int tensors_per_block;         /* the fewest tensors a block can have (bounds n_layer) */
} moa_arch_desc;

/* The entry for a GGUF architecture name, or NULL if it is not supported. */
const moa_arch_desc *moa_arch_find(const char *name);
/* "llama, qwen2": the supported names, for messages. */
const char *moa_arch_names(void);

#endif
