/* ops.c - RMSNorm, SiLU product and adds (ops.h): portable code, the AVX-512 SiLU in
 * ops-avx512.c, OpenMP over rows / elements when the work is large. */
#include "ops.h"
#include "quant.h"   /* moa_cpu_has_avx512 */

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
