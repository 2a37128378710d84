/* backward-cuda.c - a profiler's CUDA device (profiler-device.h): opens a moa_cuda_ctx (a stream
 * and a cuBLAS handle), acquires the model's shared device weights (model/weights-cuda.c) and
 * hands backward.c the CUDA backend table (kernels/cuda/backend.cu) and the weights as
 * handles. The sample itself (forward with saved layer inputs, response loss, activation-only
 * backward with the fused influence backward, histograms accumulated on the device in double)
 * is backward.c's, the same as on the CPU.
 *
 * Precision: weights f32 by default (the GEMMs then read the CPU's f32 values, accumulate in
 * f32, and only the summation order differs from the CPU); with device_bf16 the weights and
 * every GEMM input (activations and gradients: the backend's matmul and matmul_bwd round them
 * to the weights' type) are bf16 (f32 range, so the small gradients of the backward do not
 * underflow as they would in f16, which is not offered).
 *
 * Device memory: the model's weights, shared (weights-cuda.h: the 7 matrices per layer and the
 * LM head as f32 or bf16, q/k/v biases f32, norms f32 [2 n_layer + 1][n_embd]); the sample's
 * scratch, allocated by backward.c through the table (its file comment), with the LM head
 * in chunks of LG_ROWS response rows (logits [LG_ROWS][n_vocab]); no activation store (every
 * layer is recomputed for its backward); the context's workspace (GEMM inputs in bf16). */
#include "profiler-device.h"
#include "weights-cuda.h"
#include "moa/cuda.h"
#include "moa/common.h"

#include <stdlib.h>

#ifndef MOA_PROFILER_LG_ROWS
#define MOA_PROFILER_LG_ROWS 256   /* the emulator test lowers it so chunking runs */
#endif
enum { LG_ROWS = MOA_PROFILER_LG_ROWS };   /* response rows per LM-head chunk */
_Static_assert((int)MOA_PROFILER_LW == (int)MOA_MODEL_CUDA_LW, "q k v o gate up down, in that order");

struct moa_profiler_dev {
    moa_cuda_ctx *cx;
    const moa_model *m;
    moa_model_cuda *wc;    /* the model's shared device weights (weights-cuda.h) */
};

static void cuda_close(moa_profiler_dev *c) {
    if (!c) return;
    moa_model_cuda_release(c->m, c->wc);
    moa_cuda_ctx_free(c->cx);
    free(c);
}

static moa_status cuda_open(const moa_model *m, const moa_profiler_params *pp, moa_backend *be,
                            moa_profiler_weights *w, moa_profiler_dev **out) {
    *out = NULL;
    const moa_llama_hparams *hp = &m->hp;
    moa_profiler_dev *c = calloc(1, sizeof *c);
    if (!c) return moa_err(MOA_ERR_NOMEM, "out of memory");
    c->m = m;
    const moa_cuda_dtype dt = pp->device_bf16 ? MOA_CUDA_BF16 : MOA_CUDA_F32;
    moa_status st = moa_cuda_ctx_create(pp->device_index, &c->cx);
    if (st < 0) { free(c); return st; }
    const double t0 = moa_time_now();
    st = moa_model_cuda_acquire(m, c->cx, pp->device_index, dt, 0, &c->wc);   /* dequantised: matmul_bwd */
    if (st < 0) { cuda_close(c); return st; }
    const moa_model_cuda *wc = c->wc;
    const int64_t d = hp->n_embd;
    for (int l = 0; l < hp->n_layer; l++) {
        moa_profiler_layer *L = &w->layers[l];
        L->attn_norm = wc->norms + (size_t)(2 * l) * d;
        L->ffn_norm = wc->norms + (size_t)(2 * l + 1) * d;
        for (int i = 0; i < MOA_PROFILER_LW; i++) L->w[i] = &wc->w[l * MOA_MODEL_CUDA_LW + i];
    }
    w->out = &wc->out;
    w->output_norm = wc->norms + (size_t)(2 * hp->n_layer) * d;
    w->lm_rows = LG_ROWS;
    w->keep_acts = 0;
    *be = moa_cuda_backend(c->cx);
    moa_log_info("profiler: %s, weights %.1f MiB as %s (shared, %.2f s)", moa_cuda_ctx_describe(c->cx),
                 wc->bytes / 1048576.0, dt == MOA_CUDA_F32 ? "f32" : "bf16", moa_time_now() - t0);
    *out = c;
    return MOA_OK;
}

static const moa_profiler_device_ops cuda_ops = {
    .name = "cuda",
    .open = cuda_open,
    .close = cuda_close,
};

const moa_profiler_device_ops *moa_profiler_device_get(moa_device_kind kind) {
    return kind == MOA_DEVICE_CUDA ? &cuda_ops : NULL;
}
