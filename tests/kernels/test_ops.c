/* test_ops.c - the forward pass's row operations (moa/ops.h) against plain double
 * computations: RMSNorm (relative error <= 1e-6: f32 rounding of the scale and products),
 * SiLU product on both the AVX-512 and the portable path (forced with moa_cpu_force_avx2)
 * over [-100, 100] including the saturated tails (|err| <= 1e-6 |g u| + 1e-30: the exp
 * polynomial is good to ~1e-7 relative), odd lengths (vector tails) and the threaded size;
 * adds exact. A control: a SiLU missing its u factor must fail the same check. */
#include "moa/ops.h"
#include "moa/quant.h"
#include "test.h"

static uint64_t rng = 0x243f6a8885a308d3ull;
static float urand(float a, float b) {
    rng ^= rng << 13; rng ^= rng >> 7; rng ^= rng << 17;
    return a + (b - a) * (float)((rng >> 40) & 0xffffff) / 16777216.0f;
}

static double silu_err(const float *g0, const float *u, const float *got, int64_t n, int drop_u) {
    double worst = 0;
    for (int64_t i = 0; i < n; i++) {
        const double g = g0[i], want = g / (1.0 + exp(-g)) * (drop_u ? 1.0 : u[i]);
        worst = fmax(worst, fabs(got[i] - want) / (fabs(g * u[i]) + 1e-30));
    }
    return worst;
}

TEST(silu_mul) {
    const int64_t lens[] = {1, 15, 17, 1536, 100003};
    for (int isa = 0; isa < 2; isa++) {
        moa_cpu_force_avx2(isa);
        for (size_t li = 0; li < sizeof lens / sizeof lens[0]; li++) {
            const int64_t n = lens[li];
            float *g0 = malloc(sizeof(float) * (size_t)n), *g = malloc(sizeof(float) * (size_t)n),
                  *u = malloc(sizeof(float) * (size_t)n);
            for (int64_t i = 0; i < n; i++) {
                g0[i] = i % 7 == 0 ? urand(-100, 100) : urand(-8, 8);
                u[i] = urand(-2, 2);
            }
            memcpy(g, g0, sizeof(float) * (size_t)n);
            moa_silu_mul(g, u, n);
            const double e = silu_err(g0, u, g, n, 0);
            CHECK_MSG(e <= 1e-6, "%s n %lld: silu error %g", isa ? "portable" : "avx512", (long long)n, e);
            if (n >= 1536) CHECK(silu_err(g0, u, g, n, 1) > 1e-6);   /* control */
            free(g0); free(g); free(u);
        }
    }
    moa_cpu_force_avx2(0);
}

TEST(rmsnorm_and_add) {
    const int64_t n = 70, d = 896;
    float *x = malloc(sizeof(float) * (size_t)(n * d)), *y = malloc(sizeof(float) * (size_t)(n * d)),
          *w = malloc(sizeof(float) * (size_t)d), *h = malloc(sizeof(float) * (size_t)(n * d));
    for (int64_t i = 0; i < n * d; i++) { x[i] = urand(-3, 3); h[i] = urand(-1, 1); }
    for (int64_t i = 0; i < d; i++) w[i] = urand(0.5f, 1.5f);
    for (int64_t rows = 1; rows <= n; rows += n - 1) {
        moa_rmsnorm_rows(x, w, y, rows, d, 1e-5f);
        double worst = 0;
        for (int64_t t = 0; t < rows; t++) {
            double ss = 0;
            for (int64_t i = 0; i < d; i++) ss += (double)x[t * d + i] * x[t * d + i];
            const double r = 1.0 / sqrt(ss / (double)d + 1e-5);
            for (int64_t i = 0; i < d; i++) {
                const double want = x[t * d + i] * r * w[i];
                worst = fmax(worst, fabs(y[t * d + i] - want) / (fabs(want) + 1e-30));
            }
        }
        CHECK_MSG(worst <= 1e-6, "rmsnorm %lld rows: relative error %g", (long long)rows, worst);
    }
    memcpy(y, x, sizeof(float) * (size_t)(n * d));
    moa_add_rows(y, h, n * d);
    int bad = 0;
    for (int64_t i = 0; i < n * d; i++) bad += y[i] != x[i] + h[i];
    CHECK_EQ_INT(bad, 0);
    free(x); free(y); free(w); free(h);
}

int main(void) {
    RUN(silu_mul);
    RUN(rmsnorm_and_add);
    return test_summary();
}
