/* weights-cuda.c - the model's weights on a CUDA device, one copy per (device, type, raw)
 * shared by the engine contexts (raw) or the profilers (dequantised) of the model
 * (weights-cuda.h).
 *
 * Memory per copy (device): 7 matrices per layer + LM head, each either its raw ggml blocks
 * (an engine copy, `raw`: every quantised type the device decodes; the GGUF bytes as they
 * are) or [n_out][n_in] of dt (the profiler's copies; F32/F16/BF16 matrices and the host
 * path in every copy), with their biases where the model has them (f32 [n_out]: qwen2's
 * q, k, v); norms f32 [2 n_layer + 1][n_embd]; the token table's raw ggml rows (every type
 * quant.c reads). */
#include "weights-cuda.h"
#include "moa/common.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

static pthread_mutex_t g_lock = PTHREAD_MUTEX_INITIALIZER;

static int g_host_dequant;   /* test switch: moa_model_cuda_force_host_dequant */
void moa_model_cuda_force_host_dequant(int on) { g_host_dequant = on; }

/* ggml types the device dequantises (engine.cu: every type kernels/cpu/quant.c reads) */
static int dev_type(moa_ggml_type t) { return !g_host_dequant && moa_cuda_dequant_supported(t); }

/* Does a copy with `raw` set keep w as its raw blocks? Quantised types the device decodes
 * (block size > 1); F32/F16/BF16 matrices are dequantised as before. */
static int keep_raw(const moa_weight *w, int raw) {
    uint32_t be = 1;
    return raw && dev_type(w->type) && moa_ggml_type_info(w->type, &be, NULL) && be > 1 && w->n_in % be == 0;
}

/* A weight on the device: its raw blocks only (keep_raw: moa_cuda_weight_upload_raw, dt
 * the type of the GEMM path), or as dt: raw blocks dequantised there, or (a type without a
 * device decoder: none today, kept for types added to quant.c first; tests force it) rows
 * dequantised on the host with the CPU's own moa_dequant_row (or the model's f32 copy) in
 * chunks of about 4M values and rounded on the device. *bytes += the device bytes held. */
static moa_status upload_weight(moa_cuda_ctx *cx, const moa_weight *w, moa_cuda_dtype dt, int raw,
                                moa_cuda_weight *out, size_t *bytes) {
    if (keep_raw(w, raw)) {
        *bytes += moa_ggml_row_bytes(w->type, w->n_in) * (size_t)w->n_out;
        return moa_cuda_weight_upload_raw(cx, w->type, w->data, w->n_out, w->n_in, dt, out);
    }
    *bytes += (size_t)(w->n_out * w->n_in) * moa_cuda_dtype_size(dt);
    if (dev_type(w->type))
        return moa_cuda_weight_upload(cx, w->type, w->data, w->n_out, w->n_in, dt, out);
    memset(out, 0, sizeof *out);
    const int64_t n_in = w->n_in, rows = n_in >= ((int64_t)1 << 22) ? 1 : ((int64_t)1 << 22) / n_in;
    const size_t rb = moa_ggml_row_bytes(w->type, n_in), es = moa_cuda_dtype_size(dt);
    float *hbuf = moa_alloc_array((size_t)(rows * n_in), sizeof(float)), *dbuf = NULL;
    if (!hbuf) return moa_err(MOA_ERR_NOMEM, "cuda weights: out of host memory for a weight chunk");
    moa_status st = moa_cuda_alloc(cx, (size_t)(w->n_out * n_in) * es, &out->data);
    if (st == MOA_OK) st = moa_cuda_alloc(cx, (size_t)(rows * n_in) * sizeof(float), (void **)&dbuf);
    for (int64_t r0 = 0; r0 < w->n_out && st == MOA_OK; r0 += rows) {
        const int64_t cnt = w->n_out - r0 < rows ? w->n_out - r0 : rows;
        for (int64_t r = 0; r < cnt; r++) {
            if (w->f32) memcpy(hbuf + r * n_in, w->f32 + (r0 + r) * n_in, sizeof(float) * (size_t)n_in);
            else moa_dequant_row(w->type, (const uint8_t *)w->data + (size_t)(r0 + r) * rb, hbuf + r * n_in, n_in);
        }
        st = moa_cuda_upload(cx, dbuf, hbuf, sizeof(float) * (size_t)(cnt * n_in));
        if (st == MOA_OK)
            st = moa_cuda_convert(cx, dbuf, cnt * n_in, (uint8_t *)out->data + (size_t)(r0 * n_in) * es, dt);
        if (st == MOA_OK) st = moa_cuda_sync(cx);   /* hbuf and dbuf are reused */
    }
    moa_cuda_free(cx, dbuf);
    free(hbuf);
    if (st != MOA_OK) {
        moa_cuda_free(cx, out->data);
        out->data = NULL;
        return st;
    }
    out->dtype = dt;
    out->n_out = w->n_out;
    out->n_in = n_in;
    return MOA_OK;
}

/* Device memory is freed without a context (cudaFree). */
static void copy_free(const moa_model *m, moa_model_cuda *c) {
    if (!c) return;
    if (c->w)
        for (int i = 0; i < m->hp.n_layer * MOA_MODEL_CUDA_LW; i++) moa_cuda_weight_free(NULL, &c->w[i]);
    moa_cuda_weight_free(NULL, &c->out);
    moa_cuda_free(NULL, c->norms);
    moa_cuda_free(NULL, c->embd);
    free(c->w);
    free(c);
}

static moa_status copy_create(const moa_model *m, moa_cuda_ctx *cx, int device, moa_cuda_dtype dt,
                              int raw, moa_model_cuda **out) {
    const moa_llama_hparams *hp = &m->hp;
    const int64_t d = hp->n_embd;
    const double t0 = moa_time_now();
    moa_model_cuda *c = calloc(1, sizeof *c);
    if (!c) return moa_err(MOA_ERR_NOMEM, "out of memory");
    c->device = device;
    c->dt = dt;
    c->raw = raw;
    moa_status st = MOA_OK;
    if (!(c->w = calloc((size_t)hp->n_layer * MOA_MODEL_CUDA_LW, sizeof *c->w)))
        st = moa_err(MOA_ERR_NOMEM, "out of memory");
    for (int l = 0; l < hp->n_layer && st == MOA_OK; l++) {
        const moa_llama_layer *Ly = &m->layers[l];
        const moa_weight *ws[MOA_MODEL_CUDA_LW] = {&Ly->wq, &Ly->wk, &Ly->wv, &Ly->wo,
                                                   &Ly->w_gate, &Ly->w_up, &Ly->w_down};
        for (int i = 0; i < MOA_MODEL_CUDA_LW && st == MOA_OK; i++) {
            st = upload_weight(cx, ws[i], dt, raw, &c->w[l * MOA_MODEL_CUDA_LW + i], &c->bytes);
            /* the projection's bias (qwen2 q/k/v), f32: moa_cuda_matmul adds it */
            if (st == MOA_OK && ws[i]->bias) {
                st = moa_cuda_weight_set_bias(cx, &c->w[l * MOA_MODEL_CUDA_LW + i], ws[i]->bias);
                c->bytes += sizeof(float) * (size_t)ws[i]->n_out;
            }
        }
    }
    if (st == MOA_OK) st = upload_weight(cx, &m->output, dt, raw, &c->out, &c->bytes);
    /* norms */
    const size_t nb = sizeof(float) * (size_t)(2 * hp->n_layer + 1) * (size_t)d;
    float *nh = st == MOA_OK ? malloc(nb) : NULL;
    if (st == MOA_OK && !nh) st = moa_err(MOA_ERR_NOMEM, "out of memory");
    if (st == MOA_OK) {
        for (int l = 0; l < hp->n_layer; l++) {
            memcpy(nh + (size_t)(2 * l) * d, m->layers[l].attn_norm, sizeof(float) * (size_t)d);
            memcpy(nh + (size_t)(2 * l + 1) * d, m->layers[l].ffn_norm, sizeof(float) * (size_t)d);
        }
        memcpy(nh + (size_t)(2 * hp->n_layer) * d, m->output_norm, sizeof(float) * (size_t)d);
        st = moa_cuda_alloc(cx, nb, (void **)&c->norms);
        if (st == MOA_OK) st = moa_cuda_upload(cx, c->norms, nh, nb);
        if (st == MOA_OK) st = moa_cuda_sync(cx);
        c->bytes += nb;
    }
    free(nh);
    /* embedding table (raw rows), when the device can dequantise it */
    uint32_t be = 1;
    moa_ggml_type_info(m->tok_embd.type, &be, NULL);
    if (st == MOA_OK && dev_type(m->tok_embd.type) && d % (int64_t)be == 0) {
        const size_t b = moa_ggml_row_bytes(m->tok_embd.type, d) * (size_t)m->tok_embd.n_out;
        st = moa_cuda_alloc(cx, b, &c->embd);
        if (st == MOA_OK) st = moa_cuda_upload(cx, c->embd, m->tok_embd.data, b);
        if (st == MOA_OK) st = moa_cuda_sync(cx);
        c->bytes += b;
    }
    if (st < 0) {
        copy_free(m, c);
        return st;
    }
    moa_log_info("cuda weights: %.1f MiB on device %d as %s%s (%.2f s)", c->bytes / 1048576.0, device,
                 raw ? "raw blocks, GEMMs in " : "", dt == MOA_CUDA_F32 ? "f32" : dt == MOA_CUDA_BF16 ? "bf16" : "f16",
                 moa_time_now() - t0);
    *out = c;
    return MOA_OK;
}

moa_status moa_model_cuda_acquire(const moa_model *m, moa_cuda_ctx *cx, int device,
                                  moa_cuda_dtype dt, int raw, moa_model_cuda **out) {
    *out = NULL;
    /* m->cuda is a cache beside the immutable weights: mutated under the lock only */
    moa_model *mm = (moa_model *)m;
    pthread_mutex_lock(&g_lock);
    moa_model_cuda *c = mm->cuda;
    raw = raw ? 1 : 0;
    while (c && !(c->device == device && c->dt == dt && c->raw == raw)) c = c->next;
    moa_status st = MOA_OK;
    if (!c && (st = copy_create(m, cx, device, dt, raw, &c)) == MOA_OK) {
        c->next = mm->cuda;
        mm->cuda = c;
    }
    if (st == MOA_OK) {
        c->users++;
        *out = c;
    }
    pthread_mutex_unlock(&g_lock);
    return st;
}

void moa_model_cuda_release(const moa_model *m, moa_model_cuda *c) {
    (void)m;
    if (!c) return;
    pthread_mutex_lock(&g_lock);
    MOA_ASSERT(c->users > 0);
    c->users--;
    pthread_mutex_unlock(&g_lock);
}

void moa_model_cuda_free_all(moa_model *m) {
    moa_model_cuda *c = m->cuda;
    while (c) {
        moa_model_cuda *next = c->next;
        if (c->users) moa_log_warn("moa_model_free: %d user(s) of the device weights remain", c->users);
        copy_free(m, c);
        c = next;
    }
    m->cuda = NULL;
}
