/* train.cu - the non-attention ops of the profiler's backward pass on the device: RMSNorm
 * backward, SwiGLU out of place and its backward, softmax cross-entropy with its gradient
 * over the response rows. CPU references: moa/ops.h (moa_rmsnorm_bwd_add_rows,
 * moa_silu_mul_to, moa_swiglu_bwd through moa_cu_swiglu_bwd, moa_xent_grad_rows). */
#include "moa-cuda-impl.cuh"

/* ---- RMSNorm backward ------------------------------------------------------------------- */

/* One block per row. y = x r w, r = (mean(x^2) + eps)^-1/2:
 *   dx += r w dy - x r^3 mean(x w dy)   (sums in double, as the CPU). */
__global__ void k_rmsnorm_bwd(const float *x, const float *w, const float *dy, float *dx,
                              int64_t d, float eps) {
    MOA_CU_SHARED(double, part, [32]);
    const int64_t off = (int64_t)blockIdx.x * d;
    const float *xr = x + off, *dyr = dy + off;
    float *dxr = dx + off;
    double ss = 0, s = 0;
    for (int64_t i = threadIdx.x; i < d; i += blockDim.x) {
        ss += (double)xr[i] * xr[i];
        s += (double)xr[i] * w[i] * dyr[i];
    }
    ss = moa_block_sum_d(ss, part);
    s = moa_block_sum_d(s, part);
    const double r = 1.0 / sqrt(ss / (double)d + eps);
    const double c = r * r * r * s / (double)d;
    for (int64_t i = threadIdx.x; i < d; i += blockDim.x)
        dxr[i] += (float)(r * w[i] * dyr[i] - c * xr[i]);
}

moa_status moa_cuda_rmsnorm_bwd_add(moa_cuda_ctx *c, const float *x, const float *w,
                                    const float *dy, float *dx, int64_t n, int64_t d, float eps) {
    if (n <= 0 || d <= 0) return MOA_OK;
    if (n > INT32_MAX) return moa_err(MOA_ERR_INVALID_ARG, "moa_cuda_rmsnorm_bwd_add: too many rows");
    MOA_CU_LAUNCH(k_rmsnorm_bwd, (unsigned)n, 256, 0, c->stream, x, w, dy, dx, d, eps);
    CU_LAUNCHED("moa_cuda_rmsnorm_bwd_add");
    return MOA_OK;
}

/* ---- SwiGLU ----------------------------------------------------------------------------- */

__global__ void k_swiglu_to(const float *g, const float *u, float *a, int64_t n) {
    const int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) {
        const float x = g[i];
        a[i] = x / (1.0f + expf(-x)) * u[i];
    }
}

moa_status moa_cuda_swiglu_to(moa_cuda_ctx *c, const float *g, const float *u, float *a, int64_t n) {
    if (n <= 0) return MOA_OK;
    MOA_CU_LAUNCH(k_swiglu_to, moa_cu_blocks(n, 256), 256, 0, c->stream, g, u, a, n);
    CU_LAUNCHED("moa_cuda_swiglu_to");
    return MOA_OK;
}

__global__ void k_swiglu_bwd(float *g, float *u, const float *da, int64_t n) {
    const int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) {
        float dg, du;
        moa_cu_swiglu_bwd(g[i], u[i], da[i], &dg, &du);
        g[i] = dg;
        u[i] = du;
    }
}

moa_status moa_cuda_swiglu_bwd(moa_cuda_ctx *c, float *g, float *u, const float *da, int64_t n) {
    if (n <= 0) return MOA_OK;
    MOA_CU_LAUNCH(k_swiglu_bwd, moa_cu_blocks(n, 256), 256, 0, c->stream, g, u, da, n);
    CU_LAUNCHED("moa_cuda_swiglu_bwd");
    return MOA_OK;
}

/* ---- softmax cross-entropy -------------------------------------------------------------- */

/* One block per row r of logits [rows][V]: m = max, lse = m + ln sum exp(z - m) (double),
 * loss[r] = lse - z[target]; then the row becomes (softmax - onehot(target)) / n_total. */
__global__ void k_xent(float *logits, const int32_t *targets, int64_t V, int64_t n_total,
                       double *loss) {
    MOA_CU_SHARED(double, part, [32]);
    MOA_CU_SHARED(float, fpart, [32]);
    float *row = logits + (int64_t)blockIdx.x * V;
    const int32_t target = targets[blockIdx.x];
    float mx = -INFINITY;
    for (int64_t v = threadIdx.x; v < V; v += blockDim.x) mx = fmaxf(mx, row[v]);
    mx = moa_block_max(mx, fpart);
    double sum = 0;
    for (int64_t v = threadIdx.x; v < V; v += blockDim.x) sum += exp((double)row[v] - mx);
    sum = moa_block_sum_d(sum, part);   /* ends with a barrier: every read of row is done */
    const double lse = mx + log(sum);
    if (threadIdx.x == 0) loss[blockIdx.x] = lse - row[target];
    __syncthreads();
    const float inv = 1.0f / (float)n_total;
    for (int64_t v = threadIdx.x; v < V; v += blockDim.x) {
        float p = (float)(exp((double)row[v] - lse) / (double)n_total);
        if (v == target) p -= inv;
        row[v] = p;
    }
}

moa_status moa_cuda_xent_grad(moa_cuda_ctx *c, float *logits, const int32_t *targets,
                              int64_t rows, int64_t V, int64_t n_total, double *loss) {
    if (rows <= 0) return MOA_OK;
    if (rows > INT32_MAX || V <= 0 || n_total < 1)
        return moa_err(MOA_ERR_INVALID_ARG, "moa_cuda_xent_grad: %lld rows of %lld (of %lld)",
                       (long long)rows, (long long)V, (long long)n_total);
    MOA_CU_LAUNCH(k_xent, (unsigned)rows, 256, 0, c->stream, logits, targets, V, n_total, loss);
    CU_LAUNCHED("moa_cuda_xent_grad");
    return MOA_OK;
}
