/* span.c - the one span definition (see span.h). */
#include "span.h"

#include <math.h>

int64_t moa_span_window(double alpha, double beta, int64_t n, int64_t block) {
    if (n <= 0 || block <= 0) return 0;
    double s = alpha + beta * (double)n;
    if (!(s > 0)) return 0;                     /* also NaN */
    if (s >= (double)n) return n;
    /* round_up(s, block); s < n here so the product fits */
    int64_t k = (int64_t)ceil(s / (double)block);
    int64_t w = k * block;
    return w < n ? w : n;
}

double moa_span_density_of_window(int64_t w, int64_t sink, int64_t n) {
    if (n <= 0) return 0;
    if (w < 0) w = 0;
    if (sink < 0) sink = 0;
    int64_t kept = sink + w;
    if (kept > n) kept = n;
    return (double)kept / (double)n;
}

double moa_span_density(double alpha, double beta, int64_t sink, int64_t block, int64_t n) {
    return moa_span_density_of_window(moa_span_window(alpha, beta, n, block), sink, n);
}
