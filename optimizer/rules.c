/* rules.c - candidate elastic rules (alpha, beta) and the reference's validity filter. */
#include <math.h>
#include "moa/optimizer.h"

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

int moa_rules_alphas(int64_t step_len, int64_t block, int short_windows, double *alphas) {
    double step = round(1024.0 * (double)step_len / 8192.0 / (double)block) * (double)block;
    if (step < (double)block) step = (double)block;
    int n = 0;
    for (int i = -2; i <= 8; i++) alphas[n++] = i * step;
    for (int k = 0; short_windows && k < 3; k++) {
        double a = (double)block * (1 << k);
        int dup = 0;
        for (int i = 0; i < n; i++) dup |= alphas[i] == a;
        if (!dup) alphas[n++] = a;
    }
    return n;
}

void moa_rules_betas(double *betas) {
    for (int j = 0; j < MOA_RULES_N_BETAS; j++) betas[j] = j / 8.0;
}

int moa_rules_cross(const double *alphas, int n_alpha, const double *betas, int n_beta, moa_rule *out, int cap) {
    int n = 0;
    for (int i = 0; i < n_alpha; i++)
        for (int j = 0; j < n_beta && n < cap; j++) out[n++] = (moa_rule){alphas[i], betas[j]};
    return n;
}

int moa_rules_grid(const double *alphas, int n_alpha, const double *betas, int n_beta,
                   int64_t n_min, int64_t n_max_profiled, int64_t n_max, moa_rule *out, int cap) {
    int n = moa_rules_cross(alphas, n_alpha, betas, n_beta, out, cap);
    return moa_rules_filter(out, n, n_min, n_max_profiled, n_max);
}

int moa_rules_default(int64_t n_min_profiled, int64_t n_max_profiled, int64_t n_max, int64_t block,
                      moa_rule *out, int cap) {
    double alphas[MOA_RULES_MAX_ALPHAS], betas[MOA_RULES_N_BETAS];
    int na = moa_rules_alphas(n_max_profiled, block, 0, alphas);
    moa_rules_betas(betas);
    return moa_rules_grid(alphas, na, betas, MOA_RULES_N_BETAS, n_min_profiled, n_max_profiled, n_max, out, cap);
}
