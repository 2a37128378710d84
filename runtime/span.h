/* span.h - THE span definition, shared by runtime, profiler and optimizer (architecture.md):
 *
 *   W(N)      = min(N, round_up(alpha + beta*N, block))     (window kind; 0 if alpha+beta*N <= 0)
 *   W(N)      = N                                            (dense kind)
 *   density   = min(N, sink + W(N)) / N                      (fraction of the N-token cache kept)
 *
 * Query i attends key j iff j <= i and (j < sink or i - j < W). Linear-attention units keep
 * no KV cache: their density is 0 (their state is O(d^2), independent of N).
 * Pure functions, thread-safe.
 */
#ifndef MOA_SPAN_H
#define MOA_SPAN_H

#include <stdint.h>

/* Window of an elastic (alpha, beta) rule at length n (n >= 1, block >= 1). */
int64_t moa_span_window(double alpha, double beta, int64_t n, int64_t block);
/* Fraction of the n-token cache kept by a unit with window w and `sink` sink tokens. */
double moa_span_density_of_window(int64_t w, int64_t sink, int64_t n);
/* Both in one: density of an elastic rule at n. */
double moa_span_density(double alpha, double beta, int64_t sink, int64_t block, int64_t n);

#endif
