/* moa/attn-train.h - public header of moa_kernels (kernels/; op family of
 * kernels/cpu/attn-train*.c; the device interface is moa/backend.h): attention kernels for the
 * profiler (training-style passes on CPU): the causal dense forward that also returns the row
 * log-sum-exp, and the fused backward that produces dQ, dK, dV and, in the same pass,
 * accumulates the attention influence E into per-head distance-bin histograms (architecture.md,
 * "Influence (profiler)").
 *
 * Layouts (token-major, as the engine produces them), one sequence of n tokens:
 *   Q, O, dQ, dO   [n][n_head * hd]     head h at columns h*hd .. h*hd+hd-1
 *   K, V, dK, dV   [n][n_kv * hd]       query head h uses KV head h / (n_head / n_kv) (GQA,
 *                                       never expanded)
 *   LSE            [n_head][n]          LSE[h][i] = ln sum_{j<=i} exp(s_ij),
 *                                       s_ij = scale * q_i . k_j, scale = 1/sqrt(hd)
 * Causal and dense: query i attends every key j <= i.
 *
 * Influence of masking entry (i, j) of head h and renormalising row i (P = softmax(s)):
 *   D_i   = dO_i . O_i,   dP_ij = dO_i . V_j
 *   E_ij  = -P_ij (dP_ij - D_i) / (1 - P_ij + eps)        (row i = 0: E_0j = -P_0j dP_0j)
 * eps keeps the denominator away from 0 when one key takes the whole row (P_ij -> 1, where
 * masking the entry leaves nothing to renormalise); default 1e-6, a tenth of the float32
 * resolution of 1 - P near P = 1, so it changes E by < 1e-5 relative wherever P < 0.9.
 * Histograms (accumulated, +=):
 *   j >= sink, j <= i:  b = floor((i - j) / block);  abs[h][b] += |E_ij|,  sgn[h][b] += E_ij
 *   j <  sink, j <= i:  sink_abs[h] += |E_ij|,  sink_sgn[h] += E_ij
 * A window W = k*block under the shared mask (j <= i and (j < sink or i - j < W)) drops
 * exactly the entries of bins b >= k, so the loss of a window is a suffix sum over bins.
 * The denominator is kept >= eps + 2^-24. A row's dominant entry (P_ij > 1/2) is evaluated in
 * the equivalent form -P (A dP - B) / (A + eps), A = sum_{k!=j} P_ik, B = sum_{k!=j} P_ik dP_ik,
 * which stays accurate when 1 - P is tiny (docs/profiler-kernels.md).
 *
 * Threads: the fast kernels use OpenMP (omp_get_max_threads()) over (KV head, query block)
 * work items and call OpenBLAS sgemm on tiles from inside the parallel region (single-threaded
 * there). Call them from one thread; they may run concurrently on disjoint outputs.
 * Determinism: for a fixed thread count every output is bit-for-bit reproducible (static
 * schedule; partial sums reduced in thread order, see docs/profiler-kernels.md).
 */
#ifndef MOA_KERNELS_ATTN_TRAIN_H
#define MOA_KERNELS_ATTN_TRAIN_H

#include "moa/base.h"

typedef struct {
    int n;        /* tokens of the sequence (>= 1) */
    int n_head;   /* query heads */
    int n_kv;     /* KV heads; n_head % n_kv == 0 */
    int hd;       /* head dim */
    int sink;     /* influence: keys j < sink go to the sink totals (>= 0) */
    int block;    /* influence: distance-bin width in tokens (>= 1) */
    float eps;    /* influence: denominator regulariser (>= 0, finite) */
} moa_attn_train_shape;

/* sink 64, block 64, eps 1e-6 (architecture.md defaults). */
moa_attn_train_shape moa_attn_train_default_shape(int n, int n_head, int n_kv, int hd);
/* Bins a histogram needs for this shape: ceil(n / block). */
int moa_attn_train_n_bins(const moa_attn_train_shape *s);

/* Influence histograms for one layer, owned by the caller. Every kernel *adds* to them, so
 * the caller sums over samples (or layers) by calling repeatedly. n_bins may exceed
 * ceil(n / block) (a length bucket's bins, longer than this sample): extra bins are untouched. */
typedef struct {
    double *abs;        /* [n_head][n_bins]  sum |E| per distance bin */
    double *sgn;        /* [n_head][n_bins]  sum E per distance bin */
    double *sink_abs;   /* [n_head]          sum |E| over sink columns */
    double *sink_sgn;   /* [n_head]          sum E over sink columns */
    int n_bins;         /* row stride of abs/sgn; >= moa_attn_train_n_bins(s) */
} moa_influence_acc;

/* Forward: O [n][n_head*hd] and LSE [n_head][n] (both overwritten). Tiled (query x key blocks,
 * online softmax, FlashAttention-2), never n x n. Returns MOA_OK, MOA_ERR_INVALID_ARG (bad
 * shape or NULL pointer) or MOA_ERR_NOMEM (tile scratch). */
moa_status moa_attn_fwd_lse(const moa_attn_train_shape *s, const float *Q, const float *K,
                            const float *V, float *O, float *LSE);

/* Fused backward + influence. Inputs: Q, K, V, O (from the forward), dO [n][n_head*hd], LSE.
 * Outputs dQ [n][n_head*hd], dK, dV [n][n_kv*hd] are overwritten; dK and dV sum over the
 * query heads of each GQA group. acc (may be NULL: gradients only) is added to. Recomputes
 * P_ij = exp(s_ij - LSE_i) tile by tile; never n x n. Scratch: per thread beyond the first,
 * one copy of dK and dV ([n][n_kv*hd] each) plus 2*n_head*n doubles of per-distance sums.
 * Returns MOA_OK, MOA_ERR_INVALID_ARG or MOA_ERR_NOMEM. */
moa_status moa_attn_bwd_influence(const moa_attn_train_shape *s, const float *Q,
                                  const float *K, const float *V, const float *O,
                                  const float *dO, const float *LSE, float *dQ, float *dK,
                                  float *dV, moa_influence_acc *acc);

/* References (the test oracle): explicit n x n matrices per head in double precision,
 * single-threaded, for small n. Same layouts and semantics as above. The backward reference
 * recomputes O and LSE itself (in double) from Q, K, V; E (may be NULL) receives the explicit
 * influence matrix [n_head][n][n] (E[h][i][j], 0 for j > i). */
moa_status moa_attn_fwd_lse_ref(const moa_attn_train_shape *s, const float *Q, const float *K,
                                const float *V, float *O, float *LSE);
moa_status moa_attn_bwd_influence_ref(const moa_attn_train_shape *s, const float *Q,
                                      const float *K, const float *V, const float *dO,
                                      float *dQ, float *dK, float *dV, moa_influence_acc *acc,
                                      double *E);

/* Which elementwise tile code the fast kernels use (tests and benchmarks compare them).
 * AUTO = the best the CPU supports; a forced ISA the CPU lacks falls back to GENERIC.
 * Set it from one thread before work starts. */
typedef enum {
    MOA_ATTN_TRAIN_ISA_AUTO = 0,
    MOA_ATTN_TRAIN_ISA_GENERIC = 1,
    MOA_ATTN_TRAIN_ISA_AVX2 = 2,
    MOA_ATTN_TRAIN_ISA_AVX512 = 3,
} moa_attn_train_isa;
void moa_attn_train_set_isa(moa_attn_train_isa isa);
moa_attn_train_isa moa_attn_train_get_isa(void);   /* the one in use (never AUTO) */
const char *moa_attn_train_isa_name(moa_attn_train_isa isa);

#endif /* MOA_KERNELS_ATTN_TRAIN_H */
