/* weights-cuda.h - internal to model/ and profiler/: the device copy of a model's weights,
 * one per (CUDA device, element type, raw or dequantised), shared by every engine context
 * (forward-cuda.c: raw) or every profiler (profiler/backward-cuda.c: dequantised) of the
 * model on that device. The first user uploads
 * it; it stays until moa_model_free (so code that creates a context per sample uploads the
 * model once). Compiled only with the CUDA backend (MOA_ENGINE_CUDA).
 *
 * Thread safety: acquire and release may be called from any thread (one process-wide
 * mutex); the copy is immutable once acquired. moa_model_free must not race with them. */
#ifndef MOA_WEIGHTS_CUDA_H
#define MOA_WEIGHTS_CUDA_H

#include "moa/model.h"
#include "moa/cuda.h"

enum { MOA_MODEL_CUDA_LW = 7 };   /* weights per layer: q k v o gate up down */

typedef struct moa_model_cuda {
    int device;                 /* CUDA ordinal */
    moa_cuda_dtype dt;          /* of the weight matrices: F16, BF16 or F32 (raw copies:
                                   the type of their GEMM path, F16 or BF16) */
    moa_cuda_weight *w;         /* [n_layer][MOA_MODEL_CUDA_LW], with the model's biases
                                   (f32, added by moa_cuda_matmul) */
    moa_cuda_weight out;        /* LM head [n_vocab][n_embd] (tied: the token table again) */
    float *norms;               /* f32 [2 n_layer + 1][n_embd]: attn_norm l at 2l, ffn_norm
                                   l at 2l + 1, output_norm last */
    void *embd;                 /* the token table's raw ggml rows [n_vocab], or NULL when
                                   the device cannot dequantise its type */
    size_t bytes;               /* device bytes held */
    int users;                  /* acquired and not yet released */
    struct moa_model_cuda *next;
    int raw;                    /* 1: quantised matrices keep only their raw blocks
                                   (moa_cuda_weight_upload_raw; the engine's copy) */
} moa_model_cuda;

/* The model's weights on `device` as dt, uploading them through cx (a context open on that
 * device) if no user has done so before; one copy per (device, dt, raw). Weights of the
 * types the device dequantises (moa_cuda_dequant_supported: every type kernels/cpu/quant.c
 * reads, k-quants included) are uploaded as raw blocks; with raw = 1 (the engine: dt F16 or
 * BF16) the quantised ones keep only those blocks on the device (moa_cuda_weight_upload_raw:
 * decode products read them, larger batches dequantise into the context's scratch) and
 * F32/F16/BF16 matrices are dequantised to dt; with raw = 0 (the profiler, whose backward
 * needs the matrix) every one is dequantised there to dt, bit-identical to
 * moa_dequant_row. A type without a device decoder (none today) is dequantised on the host
 * (moa_dequant_row, or the model's f32 copy) in chunks whatever raw says, and its token
 * table rows per call. */
moa_status moa_model_cuda_acquire(const moa_model *m, moa_cuda_ctx *cx, int device,
                                  moa_cuda_dtype dt, int raw, moa_model_cuda **out);
/* The user is done (accepts NULL); the copy stays with the model. */
void moa_model_cuda_release(const moa_model *m, moa_model_cuda *w);
/* Frees every copy (moa_model_free; no user may remain). */
void moa_model_cuda_free_all(moa_model *m);
/* Tests: 1 = copies created from now on take the host path for every weight and the token
 * table (moa_dequant_row on the host, rows rounded on the device; embeddings dequantised on
 * the host per call), as a type without a device decoder would; 0 (default) = device
 * dequantisation. Process-wide; set it while no copy is being created. */
void moa_model_cuda_force_host_dequant(int on);

#endif
