/* ops.c - RMSNorm, SiLU product and adds (ops.h): portable code, the AVX-512 SiLU in
 * ops-avx512.c, OpenMP over rows / elements when the work is large. */
#include "moa/ops.h"
#include "moa/quant.h"   /* moa_cpu_has_avx512 */
#include "../cuda/moa-cuda-common.cuh"   /* moa_cu_swiglu_bwd: one formula for both devices */

#include <math.h>

void moa_silu_mul_avx512(float *g, const float *u, int64_t n);

#define PAR_MIN 32768   /* elements below which threads cost more than they save */

void moa_rmsnorm_rows(const float *x, const float *w, float *y, int64_t n, int64_t d, float eps) {
    #pragma omp parallel for schedule(static) if (n * d >= PAR_MIN && n > 1)
    for (int64_t t = 0; t < n; t++) {
        const float *xr = x + t * d;
        float *yr = y + t * d;
        double s[4] = {0, 0, 0, 0};
        int64_t i = 0;
        for (; i + 4 <= d; i += 4)
            for (int k = 0; k < 4; k++) s[k] += (double)xr[i + k] * xr[i + k];
        for (; i < d; i++) s[0] += (double)xr[i] * xr[i];
        const float r = (float)(1.0 / sqrt((s[0] + s[1] + s[2] + s[3]) / (double)d + eps));
        for (i = 0; i < d; i++) yr[i] = xr[i] * r * w[i];
    }
}

static void silu_mul_range(float *g, const float *u, int64_t n) {
    if (moa_cpu_has_avx512()) { moa_silu_mul_avx512(g, u, n); return; }
    for (int64_t i = 0; i < n; i++) g[i] = g[i] / (1.0f + expf(-g[i])) * u[i];
}

void moa_silu_mul(float *g, const float *u, int64_t n) {
    if (n < PAR_MIN) { silu_mul_range(g, u, n); return; }
    const int64_t chunk = 4096;
    #pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < n; i += chunk) silu_mul_range(g + i, u + i, n - i < chunk ? n - i : chunk);
}

void moa_add_rows(float *x, const float *h, int64_t n) {
    #pragma omp parallel for schedule(static) if (n >= 4 * PAR_MIN)
    for (int64_t i = 0; i < n; i++) x[i] += h[i];
}

void moa_silu_mul_to(const float *g, const float *u, float *a, int64_t n) {
    #pragma omp parallel for schedule(static) if (n >= PAR_MIN)
    for (int64_t i = 0; i < n; i++) {
        const float x = g[i];
        a[i] = x / (1.0f + expf(-x)) * u[i];
    }
}

void moa_swiglu_bwd(float *g, float *u, const float *da, int64_t n) {
    #pragma omp parallel for schedule(static) if (n >= PAR_MIN)
    for (int64_t i = 0; i < n; i++) moa_cu_swiglu_bwd(g[i], u[i], da[i], &g[i], &u[i]);
}

void moa_rmsnorm_bwd_add_rows(const float *x, const float *w, const float *dy, float *dx,
                              int64_t n, int64_t d, float eps) {
    #pragma omp parallel for schedule(static) if (n > 64)
    for (int64_t t = 0; t < n; t++) {
        const float *xr = x + t * d, *dyr = dy + t * d;
        double ss = 0, s = 0;
        for (int64_t i = 0; i < d; i++) {
            ss += (double)xr[i] * xr[i];
            s += (double)xr[i] * w[i] * dyr[i];
        }
        const double r = 1.0 / sqrt(ss / (double)d + eps);
        const double c = r * r * r * s / (double)d;
        for (int64_t i = 0; i < d; i++) dx[t * d + i] += (float)(r * w[i] * dyr[i] - c * xr[i]);
    }
}

void moa_xent_grad_rows(float *logits, const int32_t *targets, int64_t rows, int64_t V,
                        int64_t n_total, double *loss) {
    #pragma omp parallel for schedule(static) if (rows > 1 && rows * V >= PAR_MIN)
    for (int64_t r = 0; r < rows; r++) {
        float *row = logits + r * V;
        const int32_t target = targets[r];
        float mx = row[0];
        for (int64_t v = 1; v < V; v++) mx = row[v] > mx ? row[v] : mx;
        double sum = 0;
        for (int64_t v = 0; v < V; v++) sum += exp((double)row[v] - mx);
        const double lse = mx + log(sum);
        loss[r] = lse - row[target];
        for (int64_t v = 0; v < V; v++) row[v] = (float)(exp((double)row[v] - lse) / (double)n_total);
        row[target] -= 1.0f / (float)n_total;
    }
}

void moa_key_smooth_rows(float *q, float *k, const float *s, int64_t n, int n_head,
                         int n_head_kv, int hd) {
    const int group = n_head / n_head_kv;
    for (int64_t t = 0; t < n; t++) {
        float *kt = k + t * (int64_t)n_head_kv * hd, *qt = q + t * (int64_t)n_head * hd;
        for (int g = 0; g < n_head_kv; g++)
            for (int i = 0; i < hd; i++) {
                const float sc = s[g * hd + i];
                if (sc == 1.0f) continue;
                kt[g * hd + i] /= sc;   /* exact: a power of two */
                for (int j = 0; j < group; j++) qt[(g * group + j) * hd + i] *= sc;
            }
    }
}
