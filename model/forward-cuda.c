/* forward-cuda.c - a context's CUDA device (device-engine.h): opens a moa_cuda_ctx (a stream
 * and a cuBLAS handle), acquires the model's shared device weights (weights-cuda.c) and hands
 * forward.c the CUDA backend table (kernels/cuda/backend.cu) and the weights as handles. The
 * forward pass itself is forward.c's eval_rows, the same as on the CPU.
 *
 * Device memory. Shared by the model's contexts on the device (weights-cuda.c, uploaded by the
 * first one, freed with the model):
 *   weights   7 per layer + LM head: a quantised type's raw ggml blocks only
 *             (moa_cuda_weight_upload_raw: batches of up to MOA_CUDA_MATVEC_MAX_N rows, i.e.
 *             decode, read them through moa_cuda_matvec; larger ones dequantise each weight
 *             into the moa_cuda_ctx's weight scratch and run the GEMM), F32/F16/BF16 (or a
 *             type without a device decoder) [n_out][n_in] of f16/bf16
 *             (moa_cuda_weight_upload); q/k/v biases f32 [n_out] where the model has them
 *   embd      the token table's raw ggml rows [n_vocab] (every type quant.c reads; a type
 *             without a device decoder (none today; tests force it): NULL, and the backend's
 *             embed dequantises the host rows)
 *   norms     f32 [2 n_layer + 1][n_embd]: attn_norm l at 2l, ffn_norm l at 2l+1, output
 * Per context (forward.c, through the table's alloc): the cache on MOA_CACHE_DEVICE_CUDA and the
 * f32 scratch; the context's moa_cuda_ctx holds the ops' workspace (GEMM inputs in the weight
 * type, LM-head rows before download, token ids, the largest raw weight dequantised for a
 * GEMM; kernels/cuda/moa-cuda-impl.cuh). */
#include "device-engine.h"
#include "weights-cuda.h"
#include "moa/cuda.h"
#include "moa/common.h"

#include <stdlib.h>

struct moa_device_engine {
    moa_cuda_ctx *cx;
    const moa_model *m;
    moa_model_cuda *wc;    /* the model's shared device weights (weights-cuda.h) */
};

static int cuda_device_count(void) { return moa_cuda_device_count(); }

static void cuda_close(moa_device_engine *e) {
    if (!e) return;
    moa_model_cuda_release(e->m, e->wc);
    moa_cuda_ctx_free(e->cx);
    free(e);
}

static moa_status cuda_open(const moa_model *m, int device, int bf16, moa_backend *be,
                            moa_engine_weights *w, moa_device_engine **out) {
    *out = NULL;
    const moa_llama_hparams *hp = &m->hp;
    moa_device_engine *e = calloc(1, sizeof *e);
    if (!e) return moa_err(MOA_ERR_NOMEM, "out of memory");
    e->m = m;
    moa_status st = moa_cuda_ctx_create(device, &e->cx);
    if (st < 0) { free(e); return st; }
    const double t0 = moa_time_now();
    /* weights, norms and the token table: the model's shared copy (uploaded by the first
     * context or profiler on this device) */
    st = moa_model_cuda_acquire(m, e->cx, device, bf16 ? MOA_CUDA_BF16 : MOA_CUDA_F16, 1, &e->wc);
    if (st < 0) { cuda_close(e); return st; }
    const moa_model_cuda *wc = e->wc;
    const int64_t d = hp->n_embd;
    for (int l = 0; l < hp->n_layer; l++) {
        moa_engine_layer *L = &w->layers[l];
        L->attn_norm = wc->norms + (size_t)(2 * l) * d;
        L->ffn_norm = wc->norms + (size_t)(2 * l + 1) * d;
        for (int i = 0; i < MOA_ENGINE_LW; i++) L->w[i] = &wc->w[l * MOA_MODEL_CUDA_LW + i];
    }
    w->out = &wc->out;
    w->output_norm = wc->norms + (size_t)(2 * hp->n_layer) * d;
    w->embd = (moa_backend_embd){(int)m->tok_embd.type, d, wc->embd, m->tok_embd.data};
    *be = moa_cuda_backend(e->cx);
    moa_log_info("cuda engine: %s, weights %.1f MiB as %s (shared, %.2f s)", moa_cuda_ctx_describe(e->cx),
                 wc->bytes / 1048576.0, bf16 ? "bf16" : "f16", moa_time_now() - t0);
    *out = e;
    return MOA_OK;
}

static const moa_device_engine_ops cuda_ops = {
    .name = "cuda",
    .device_count = cuda_device_count,
    .cache_device = MOA_CACHE_DEVICE_CUDA,
    .open = cuda_open,
    .close = cuda_close,
    .release_model = moa_model_cuda_free_all,
};

const moa_device_engine_ops *moa_device_engine_get(moa_device_kind kind) {
    return kind == MOA_DEVICE_CUDA ? &cuda_ops : NULL;
}
