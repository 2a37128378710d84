/* rules.c - candidate elastic rules (alpha, beta) and the reference's validity filter. */
#include <math.h>
#include "optimizer.h"

int moa_rules_filter(moa_rule *r, int n, int64_t n_min, int64_t n_max_profiled, int64_t n_max) {
    int k = 0;
    for (int i = 0; i < n; i++) {
        double a = r[i].alpha, b = r[i].beta;
        if (!isfinite(a) || !isfinite(b) || b < 0) continue;
        if (!(a + b * (double)n_min > 0)) continue;
        if (a + b * (double)n_max_profiled > (double)n_max_profiled) continue;
        if (a + b * (double)n_max > (double)n_max) continue;
        r[k++] = r[i];
    }
    return k;
}

int moa_rules_grid(const double *alphas, int n_alpha, const double *betas, int n_beta,
                   int64_t n_min, int64_t n_max_profiled, int64_t n_max, moa_rule *out, int cap) {
    int n = 0;
    for (int i = 0; i < n_alpha; i++)
        for (int j = 0; j < n_beta && n < cap; j++) {
            out[n].alpha = alphas[i];
            out[n].beta = betas[j];
            n++;
        }
    return moa_rules_filter(out, n, n_min, n_max_profiled, n_max);
}

int moa_rules_default(int64_t n_min_profiled, int64_t n_max_profiled, int64_t n_max, int64_t block,
                      moa_rule *out, int cap) {
    double step = 1024.0 * (double)n_max_profiled / 8192.0;
    step = round(step / (double)block) * (double)block;
    if (step < (double)block) step = (double)block;
    double alphas[11], betas[9];
    for (int i = 0; i < 11; i++) alphas[i] = (i - 2) * step;
    for (int j = 0; j < 9; j++) betas[j] = j / 8.0;
    return moa_rules_grid(alphas, 11, betas, 9, n_min_profiled, n_max_profiled, n_max, out, cap);
}
