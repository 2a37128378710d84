/* weight.c - products of a moa_weight (quant.h): the choice per call between the packed int8
 * kernels, the quantised matrix-vector kernel, the batched int8 product and BLAS on the f32
 * copy; the q/k/v and gate/up products of one input in one pass (moa_weight_matmul_multi);
 * the activation backward dy W (moa_weight_matmul_bwd, the profiler's).
 * The engine's CPU backend (backend-cpu.c, matmul) and the profiler call these. */
#include "moa/quant.h"

#include <cblas.h>
#include <string.h>

/* The pack for this call: not when f32 activations would multiply an f32 copy by sgemm. */
static int use_pack(const moa_weight *w, int64_t n) {
    return w->pack && !(n >= MOA_MATMUL_Q_BATCH_MIN && w->f32 && moa_matmul_q_get_act() == MOA_MATMUL_ACT_F32);
}

/* y[n][out] = x[n][in] * W[out][in]^T (+ bias), BLAS on the f32 copy */
static void matmul_f32(const moa_weight *w, const float *x, int64_t n, float *y) {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)n, (int)w->n_out, (int)w->n_in,
                1.0f, x, (int)w->n_in, w->f32, (int)w->n_in, 0.0f, y, (int)w->n_out);
    moa_weight_add_bias(w, y, n);
}

void moa_weight_matmul(const moa_weight *w, const float *x, int64_t n, float *y) {
    if (w->exact_f32 && w->f32) {
        matmul_f32(w, x, n, y);
        return;
    }
    if (use_pack(w, n)) {
        moa_matmul_qpack((const moa_qpack *const *)&w->pack, &y, 1, x, n);
        moa_weight_add_bias(w, y, n);
        return;
    }
    if (n <= 4) {
        moa_matmul_q(w->type, w->data, w->n_out, w->n_in, x, n, y);
        moa_weight_add_bias(w, y, n);
        return;
    }
    if (!w->f32 || strcmp(moa_matmul_q_batch_path(w->type), "sgemm") != 0) {
        /* int8 activations (moa/quant.h), or no full f32 copy: dequantised panels
         * through BLAS */
        moa_matmul_q_batch(w->type, w->data, w->n_out, w->n_in, x, n, y);
        moa_weight_add_bias(w, y, n);
        return;
    }
    matmul_f32(w, x, n, y);
}

void moa_weight_matmul_multi(const moa_weight *const *ws, int n_w, const float *x, int64_t n, float *const *ys) {
    for (int k = 0; k < n_w; k++)
        if (ws[k]->exact_f32) {
            for (int j = 0; j < n_w; j++) moa_weight_matmul(ws[j], x, n, ys[j]);
            return;
        }
    int packed = n_w <= 8;
    for (int k = 0; k < n_w && packed; k++) packed = use_pack(ws[k], n);
    if (packed) {
        const moa_qpack *packs[8] = {0};
        for (int k = 0; k < n_w; k++) packs[k] = ws[k]->pack;
        moa_matmul_qpack(packs, ys, n_w, x, n);
        for (int k = 0; k < n_w; k++) moa_weight_add_bias(ws[k], ys[k], n);
        return;
    }
    int int8_batch = n_w <= 8;
    for (int k = 0; k < n_w && int8_batch; k++) int8_batch = strcmp(moa_matmul_q_batch_path(ws[k]->type), "sgemm") != 0;
    if (n_w > 8 || (n > 4 && (!int8_batch || n < MOA_MATMUL_Q_BATCH_MIN))) {
        for (int k = 0; k < n_w; k++) moa_weight_matmul(ws[k], x, n, ys[k]);
        return;
    }
    moa_matmul_q_job jobs[8] = {{0}};
    for (int k = 0; k < n_w; k++) jobs[k] = (moa_matmul_q_job){ws[k]->type, ws[k]->data, ws[k]->n_out, ys[k]};
    if (n <= 4) moa_matmul_q_multi(jobs, n_w, ws[0]->n_in, x, n);
    else moa_matmul_q_batch_multi(jobs, n_w, ws[0]->n_in, x, n);
    for (int k = 0; k < n_w; k++) moa_weight_add_bias(ws[k], ys[k], n);
}

void moa_weight_matmul_bwd(const moa_weight *w, const float *dy, int64_t n, float *dx, float beta) {
    /* dx[n][in] = beta dx + dy[n][out] * W[out][in] */
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)n, (int)w->n_in, (int)w->n_out,
                1.0f, dy, (int)w->n_out, w->f32, (int)w->n_in, beta, dx, (int)w->n_in);
}

void moa_weight_add_bias(const moa_weight *w, float *y, int64_t n) {
    if (!w->bias) return;
    for (int64_t t = 0; t < n; t++)
        for (int64_t o = 0; o < w->n_out; o++) y[t * w->n_out + o] += w->bias[o];
}
