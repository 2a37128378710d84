/* llama.h - weights of the Llama-family architectures (llama, qwen2: arch.h) from GGUF, and
 * their matrix products (the forward pass is context.h's).
 *
 * A moa_model holds immutable weights (mmapped quantised tensors, plus f32 copies and int8
 * packs of the matrices for batched products) and may be shared between threads: every
 * context, profiler and engine only reads it (the CUDA weight copies a model gains on first
 * use are created under a process-wide lock, weights-cuda.h). They borrow it: free the model
 * after all of them. A moa_ctx (context.h) holds the run state of its sequences and belongs
 * to one thread at a time.
 */
#ifndef MOA_LLAMA_H
#define MOA_LLAMA_H

#include <stdint.h>
#include "moa/base.h"
#include "gguf.h"
#include "quant.h"
#include "arch.h"

typedef struct {
    char arch[32];
    int32_t n_layer;
    int32_t n_embd;
    int32_t n_head;
    int32_t n_head_kv;
    int32_t head_dim;
    int32_t n_ff;
    int32_t n_vocab;
    int32_t n_ctx_train;   /* llama.context_length */
    int32_t rope_dim;      /* rotated dims per head (== head_dim for llama) */
    float rope_base;
    float rms_eps;
    moa_rope_pairing rope_pairing;   /* from the architecture (arch.h) */
    const moa_arch_desc *desc;       /* the architecture's entry (static) */
} moa_llama_hparams;

typedef struct {
    moa_ggml_type type;
    const void *data;      /* quantised rows in the mmapped file: [n_out] rows of n_in */
    int64_t n_in, n_out;
    float *f32;            /* [n_out][n_in] dequantised copy for BLAS, or NULL */
    moa_qpack *pack;       /* repacked for the int8 kernels (kernels/cpu/quant.h), or NULL */
    float *bias;           /* [n_out] added to every product (q/k/v of qwen2: arch.h), or NULL */
} moa_weight;

typedef struct {
    float *attn_norm;      /* [n_embd] */
    float *ffn_norm;       /* [n_embd] */
    moa_weight wq;         /* [n_head*hd][n_embd] */
    moa_weight wk, wv;     /* [n_kv*hd][n_embd] */
    moa_weight wo;         /* [n_embd][n_head*hd] */
    moa_weight w_gate, w_up;  /* [n_ff][n_embd] */
    moa_weight w_down;     /* [n_embd][n_ff] */
} moa_llama_layer;

typedef struct moa_model {
    moa_gguf *gguf;
    moa_llama_hparams hp;
    moa_weight tok_embd;   /* [n_vocab][n_embd] */
    moa_weight output;     /* [n_vocab][n_embd]; aliases tok_embd when tied */
    int tied;
    float *output_norm;    /* [n_embd] */
    moa_llama_layer *layers;
    char sha256[65];       /* of the GGUF file ("" unless computed) */
    size_t f32_bytes;      /* bytes of dequantised copies */
    struct moa_model_cuda *cuda;   /* device copies of the weights, shared by the model's CUDA
                                      contexts and profilers (weights-cuda.h); NULL on the CPU */
} moa_model;

typedef struct {
    int f32_weights;       /* 1: keep f32 copies for batched products, 0: never, -1: auto
                              (default: when some matrix's batched product would run through
                              sgemm on this CPU, moa_matmul_q_batch_path, and they fit in
                              max_f32_bytes; not when every type has the int8 path) */
    size_t max_f32_bytes;  /* auto limit (default 4 GiB) */
    int compute_sha256;    /* hash the file at load (default 1) */
    int int8_pack;         /* 1 (default): repack the block matrices and the head for the int8
                              kernels where the CPU has them (moa_qpack: about the weights'
                              size again in memory), 0: never */
} moa_model_params;

moa_model_params moa_model_default_params(void);
/* Load a GGUF model of a supported architecture (arch.h; others are refused with the list):
 * checks every tensor's presence, type and shape, and the hyperparameters; errors name the
 * key or tensor and what was expected. The caller owns *out (moa_model_free); the file stays
 * mmapped until then. p NULL = defaults. Thread-safe (OpenMP inside for the f32 copies). */
moa_status moa_model_load(const char *path, const moa_model_params *p, moa_model **out);
/* Same, over an opened GGUF (the model takes ownership of g on success and on failure). */
moa_status moa_model_from_gguf(moa_gguf *g, const moa_model_params *p, moa_model **out);
/* Accepts NULL. Frees the weights, their device copies and the GGUF: only once every
 * context, profiler and engine of m is freed, and not concurrently with any call on m. */
void moa_model_free(moa_model *m);

/* Products: x and y are caller-owned (y must not overlap x). Reentrant: the weight is only
 * read and scratch is per call, so concurrent calls on one weight are fine; OpenMP inside.
 *
 * y[n][out] = x[n][in] W^T (+ bias): the packed int8 kernels when the weight has a pack (any
 * n; unless activations are f32 and an f32 copy exists), else the quantised kernel for n <= 4,
 * else the batched product on int8 activations where it exists (moa_matmul_q_batch_path
 * "avx512-vnni-q8"), else BLAS on the f32 copy, or (without one) BLAS on dequantised panels
 * of rows (moa_matmul_q_batch). */
void moa_weight_matmul(const moa_weight *w, const float *x, int64_t n, float *y);
/* moa_weight_matmul for n_w weights of the same n_in on the same x (q/k/v, gate/up): for
 * n <= 4 one moa_matmul_q_multi, for batches on the int8 path one moa_matmul_q_batch_multi
 * (activations quantised once, one parallel loop), else one product per weight. */
void moa_weight_matmul_multi(const moa_weight *const *ws, int n_w, const float *x, int64_t n, float *const *ys);
/* y[t][o] += bias[o] for n rows (no-op without a bias). */
void moa_weight_add_bias(const moa_weight *w, float *y, int64_t n);

#endif
