/* attn-train-impl.h - internal to attn-train*.c: the elementwise tile steps of the profiler
 * attention kernels. One body (attn-train-tile.inc) is compiled three times: attn-train.c
 * (baseline ISA), attn-train-avx2.c and attn-train-avx512.c (ISA flags from CMake); the
 * matrix products around them are OpenBLAS sgemm calls in attn-train.c.
 *
 * A tile is stored transposed, keys x query rows: ST[c*ld + r] for key c < bk (position
 * j0 + c) and row r < M = G*nq, which stacks the G query heads of one GQA group over nq query
 * tokens: head g = r / nq, position i = i0 + r % nq. With keys as rows every product is an
 * NN or TN sgemm (OpenBLAS's small-matrix kernels) and the per-query statistics (max, sum,
 * LSE, D) are contiguous vectors over r. Entries with j > i are masked inside the step.
 */
#ifndef MOA_KERNELS_ATTN_TRAIN_IMPL_H
#define MOA_KERNELS_ATTN_TRAIN_IMPL_H

/* Forward online-softmax step. ST [bk][ld]: in s = scale q.k, out p~ = exp(s - m_new) (0 for
 * j > i). m [M] running max, l [M] running sum (double), Oacc [M][hd] rescaled by
 * exp(m_old - m_new). scratch: 3*M floats. */
typedef struct {
    float *ST; int ld;
    int M, nq, i0, j0, bk;
    float *m; double *l;
    float *Oacc; int hd;
    float *scratch;
} at_fwd_tile;

/* Backward elementwise step with influence. */
typedef struct {
    float *ST;           /* [bk][ld] in: s = scale q.k;  out: P = exp(s - LSE_i), 0 for j > i */
    float *dPT;          /* [bk][ld] in: dO_i . v_j;     out: dS = P (dP - D_i), 0 for j > i */
    int ld;
    int M, nq, i0, j0, bk;
    const float *lse;    /* [M] LSE of each row */
    const float *Dv;     /* [M] D_i = dO_i . O_i */
    /* influence (dist_abs == NULL: skip). Per head g of the group, per distance d = i - j:
     * dist_abs[g*n + d] += |E_ij|, dist_sgn[g*n + d] += E_ij for j >= sink;
     * sink_abs[g] += |E_ij|, sink_sgn[g] += E_ij for j < sink. */
    double *dist_abs, *dist_sgn;   /* [G][n] */
    double *sink_abs, *sink_sgn;   /* [G] */
    int n, sink;
    float eps;
    /* the entry with P > 1/2 of each row (at most one), whose E is left out of the tile's
     * histogram update and computed once the row is complete (at_bwd_dominant):
     * Arow += sum of the other P, Brow += sum of the other P dP (over the item's key blocks);
     * pstar, dpstar, jstar: P, dP and key position (as float) of the dominant entry, jstar < 0
     * if none yet. All [M], owned by the item. */
    double *Arow, *Brow;
    float *pstar, *dpstar, *jstar;
    float *scratch;      /* [3M] */
} at_bwd_tile;

void at_fwd_tile_generic(const at_fwd_tile *t);
void at_bwd_tile_generic(const at_bwd_tile *t);
void at_fwd_tile_avx2(const at_fwd_tile *t);
void at_bwd_tile_avx2(const at_bwd_tile *t);
void at_fwd_tile_avx512(const at_fwd_tile *t);
void at_bwd_tile_avx512(const at_bwd_tile *t);

#endif /* MOA_KERNELS_ATTN_TRAIN_IMPL_H */
