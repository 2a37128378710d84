/* attn-train.cu - the profiler's attention on the device: causal forward with row LSE
 * (the banded kernel of attn.cu with no cache, sink 0 and an unbounded window) and the fused
 * backward with attention influence, mirroring moa/attn-train.h (same layouts, same
 * semantics, same treatment of each row's dominant entry).
 *
 * Backward = three launches:
 *   k_bwd_D     D[h][i] = dO_i . O_i (double sum, stored as float like the CPU)
 *   k_bwd_dq    query-major (CTA = head x 16 query rows): recompute P_ij = exp(s_ij - LSE_i),
 *               dS = P (dP - D), dQ_i = scale sum_j dS_ij k_j, and the influence E_ij into
 *               the distance-bin histograms. Rows are complete inside one CTA, so each row's
 *               dominant entry (P > 1/2) is deferred to the end of the row exactly as the CPU
 *               does (A = sum of the other P, B = sum of the other P dP).
 *   k_bwd_dkdv  key-major (CTA = KV head x 32 keys, looping over the group's query heads and
 *               query tiles at or after the keys): dK_j = scale sum_i dS_ij q_i,
 *               dV_j = sum_i P_ij dO_i; each CTA owns its rows of dK, dV: no atomics.
 * Histogram reduction: per warp, entries of one query row against 32 consecutive keys fall in
 * 1-2 distance bins (block >= 32); the warp sums each distinct bin with shuffles (a match
 * loop over the bins present) and one lane adds the sum to the CTA's shared-memory histogram
 * (double); at the end the CTA adds its non-zero bins to the global histogram with one
 * double atomicAdd each. Histograms too large for shared memory go straight to global. */
#include "moa-cuda-impl.cuh"

static moa_status check_shape(const moa_attn_train_shape *s, const char *fn) {
    if (!s) return moa_err(MOA_ERR_INVALID_ARG, "%s: shape is NULL", fn);
    if (s->n < 1 || s->n_head < 1 || s->n_kv < 1 || s->hd < 1 || s->n_head % s->n_kv != 0)
        return moa_err(MOA_ERR_INVALID_ARG, "%s: bad shape n=%d n_head=%d n_kv=%d hd=%d (need all "
                       ">= 1 and n_head a multiple of n_kv)", fn, s->n, s->n_head, s->n_kv, s->hd);
    if (s->hd > MOA_CU_HD_MAX)
        return moa_err(MOA_ERR_UNSUPPORTED, "%s: hd=%d exceeds %d", fn, s->hd, MOA_CU_HD_MAX);
    if (s->sink < 0 || s->block < 1 || !(s->eps >= 0.0f) || !isfinite(s->eps))
        return moa_err(MOA_ERR_INVALID_ARG, "%s: bad influence settings sink=%d block=%d eps=%g",
                       fn, s->sink, s->block, (double)s->eps);
    if (s->n_head > 65535) return moa_err(MOA_ERR_INVALID_ARG, "%s: n_head > 65535", fn);
    return MOA_OK;
}

static float attn_scale(int hd) { return (float)(1.0 / sqrt((double)hd)); }

moa_status moa_cuda_attn_fwd_lse(moa_cuda_ctx *c, const moa_attn_train_shape *s, const float *Q,
                                 const float *K, const float *V, float *O, float *LSE) {
    static const char fn[] = "moa_cuda_attn_fwd_lse";
    MOA_TRY(check_shape(s, fn));
    if (!c || !Q || !K || !V || !O || !LSE) return moa_err(MOA_ERR_INVALID_ARG, "%s: NULL argument", fn);
    moa_cu_band_params p;
    memset(&p, 0, sizeof p);
    p.hd = s->hd; p.G = s->n_head / s->n_kv; p.n_q = s->n;
    p.q = Q; p.ldq = (int64_t)s->n_head * s->hd;
    p.o = O; p.ldo = p.ldq;
    p.lse = LSE; p.lse_ld = s->n;
    p.qpos0 = 0;
    p.k = (const uint8_t *)K; p.v = (const uint8_t *)V;   /* f32 rows (kt = vt = 0) */
    p.k_t = p.v_t = (int64_t)sizeof(float) * s->n_kv * s->hd;
    p.k_h = p.v_h = (int64_t)sizeof(float) * s->hd;
    p.kpos0 = 0; p.n_k = s->n;
    p.units = NULL;   /* dense causal: sink 0, unbounded window, no cache */
    p.scale = attn_scale(s->hd);
    return moa_cu_band_fwd(c, &p, s->n_head, fn);
}

/* ---- D = rowsum(dO .* O) ----------------------------------------------------------------- */

/* One warp per (token i, head h). */
__global__ void k_bwd_D(const float *dO, const float *O, int n, int n_head, int hd, float *D) {
    const int64_t wid = ((int64_t)blockIdx.x * blockDim.x + threadIdx.x) / 32;
    const int lane = threadIdx.x % 32;
    if (wid >= (int64_t)n * n_head) return;
    const int64_t i = wid / n_head, h = wid % n_head;
    const int64_t off = i * n_head * hd + h * hd;
    double a = 0;
    for (int d = lane; d < hd; d += 32) a += (double)dO[off + d] * O[off + d];
    a = moa_warp_sum_d(a);
    if (lane == 0) D[h * n + i] = (float)a;
}

/* ---- query-major: dQ and influence --------------------------------------------------------- */

#define DQ_BQ 16
#define DQ_BK 32
#define DQ_ROWS 4                  /* rows per warp (4 warps) */
#define NC_MAX (MOA_CU_HD_MAX / 32)
#ifndef HIST_SMEM_BINS             /* (the emulator test lowers it to reach the global path) */
#define HIST_SMEM_BINS 1024        /* bins kept in shared memory (2 x 8 KiB of doubles) */
#endif

typedef struct {
    int n, n_head, G, hd, sink, block, n_bins;
    float scale, eps;
    const float *Q, *K, *V, *dO, *LSE, *D;
    float *dQ;
    double *h_abs, *h_sgn, *s_abs, *s_sgn;   /* global histograms; NULL: no influence */
    int hist_in_smem;
} dq_params;

static size_t dq_smem(int hd, int nb_smem) {
    return sizeof(float) * (2 * (size_t)DQ_BK * (hd + 1) + 2 * (size_t)DQ_BQ * hd) +
           sizeof(double) * (2 * (size_t)nb_smem + 2);
}

/* Add v (abs, signed) of this lane's entry to bin `bin` (-1 = sink): the warp sums the lanes of
 * each distinct bin, then one lane adds to the histogram (shared or global). active: lanes
 * with an entry. */
__device__ __forceinline__ void hist_add_warp(int active, int64_t bin, float e, double *ha,
                                             double *hs, double *sa, double *ss, int lane) {
    unsigned pending = __ballot_sync(0xffffffffu, active);
    while (pending) {
        const int leader = __ffs(pending) - 1;
        const int64_t b = __shfl_sync(0xffffffffu, bin, leader);
        const int mine = active && bin == b && ((pending >> lane) & 1u);
        const float va = moa_warp_sum(mine ? fabsf(e) : 0.0f);
        const float vs = moa_warp_sum(mine ? e : 0.0f);
        if (lane == leader) {
            if (b < 0) { atomicAdd(sa, (double)va); atomicAdd(ss, (double)vs); }
            else { atomicAdd(&ha[b], (double)va); atomicAdd(&hs[b], (double)vs); }
        }
        pending &= ~__ballot_sync(0xffffffffu, mine);
    }
}

/* Where a CTA's influence goes: its shared histograms hb (abs [nb], sgn [nb], sink abs, sink
 * sgn; zeroed here) or head h's global rows when they do not fit; all NULL without
 * influence. */
typedef struct { double *ha, *hs, *sa, *ss; } dq_hist;

__device__ __forceinline__ dq_hist dq_hist_of(const dq_params &p, int h, double *hb) {
    const int infl = p.h_abs != NULL;
    const int nb_s = p.hist_in_smem ? p.n_bins : 0;
    dq_hist H;
    H.ha = infl ? (p.hist_in_smem ? hb : p.h_abs + (int64_t)h * p.n_bins) : NULL;
    H.hs = infl ? (p.hist_in_smem ? hb + nb_s : p.h_sgn + (int64_t)h * p.n_bins) : NULL;
    H.sa = infl ? (p.hist_in_smem ? hb + 2 * nb_s : p.s_abs + h) : NULL;
    H.ss = infl ? (p.hist_in_smem ? hb + 2 * nb_s + 1 : p.s_sgn + h) : NULL;
    if (infl && p.hist_in_smem)
        for (int x = threadIdx.x; x < 2 * nb_s + 2; x += blockDim.x) hb[x] = 0.0;
    return H;
}

/* One query row's running state: its LSE and D, the sums A (the other P) and B (the other
 * P dP), and its dominant entry (P* > 1/2 at key j*, -1: none yet). */
typedef struct {
    float lse, D, pstar, dpstar;
    int jstar;
    double A, B;
} dq_row;

/* Q and dO of the CTA's nq query rows of head h into Qs, dOs (zero past nq). */
__device__ __forceinline__ void dq_load_rows(const dq_params &p, int h, int i0, int nq, float *Qs,
                                             float *dOs) {
    const int hd = p.hd;
    const int64_t ldq = (int64_t)p.n_head * hd;
    for (int x = threadIdx.x; x < DQ_BQ * hd; x += blockDim.x) {
        const int r = x / hd, d = x % hd;
        const int64_t off = (int64_t)(i0 + r) * ldq + (int64_t)h * hd + d;
        Qs[x] = r < nq ? p.Q[off] : 0.0f;
        dOs[x] = r < nq ? p.dO[off] : 0.0f;
    }
}

/* Key tile: bk keys from j0 of KV head u into Ks, Vs (zero past bk). Every thread of the CTA
 * calls it (barriers inside). */
__device__ __forceinline__ void dq_load_tile(const dq_params &p, int u, int j0, int bk, float *Ks,
                                             float *Vs) {
    const int hd = p.hd;
    const int64_t ldk = (int64_t)(p.n_head / p.G) * hd;
    __syncthreads();
    for (int x = threadIdx.x; x < DQ_BK * hd; x += blockDim.x) {
        const int j = x / hd, d = x % hd;
        const int64_t off = (int64_t)(j0 + j) * ldk + (int64_t)u * hd + d;
        Ks[j * (hd + 1) + d] = j < bk ? p.K[off] : 0.0f;
        Vs[j * (hd + 1) + d] = j < bk ? p.V[off] : 0.0f;
    }
    __syncthreads();
}

/* Query row i (local row r) of this warp against the staged tile (lane: key j0 + lane): P, dP,
 * dS; dq (hd/32 dims per lane) += dS k; with influence (infl) A, B, the dominant entry and
 * the other entries' E into the histograms. Every lane of the warp calls it. */
__device__ __forceinline__ void dq_row_tile(const dq_params &p, const dq_hist &H, int infl, int r, int i,
                                            int j0, int bk, const float *Qs, const float *dOs,
                                            const float *Ks, const float *Vs, dq_row *R, float *dq) {
    const int hd = p.hd, lane = threadIdx.x % 32, nc = (hd + 31) / 32;
    const int j = j0 + lane;
    const int valid = lane < bk && j <= i;
    float pij = 0.0f, dp = 0.0f, ds = 0.0f;
    if (valid) {
        const float *qr = Qs + r * hd, *gr = dOs + r * hd;
        const float *kr = Ks + lane * (hd + 1), *vr = Vs + lane * (hd + 1);
        float sdot = 0.0f, pdot = 0.0f;
        for (int d = 0; d < hd; d++) { sdot += qr[d] * kr[d]; pdot += gr[d] * vr[d]; }
        pij = expf(p.scale * sdot - R->lse);    /* P_ij = exp(s_ij - LSE_i) */
        dp = pdot;                               /* dP_ij = dO_i . v_j */
        ds = pij * (dp - R->D);                  /* dS_ij = P_ij (dP_ij - D_i) */
    }
    /* dQ_i += dS_ij k_j (scale applied at the end) */
    for (int jj = 0; jj < bk; jj++) {
        const float b = __shfl_sync(0xffffffffu, ds, jj);
#pragma unroll
        for (int c = 0; c < NC_MAX; c++)
            if (c < nc && lane + 32 * c < hd) dq[c] += b * Ks[jj * (hd + 1) + lane + 32 * c];
    }
    if (!infl) return;
    const int dom = valid && pij > 0.5f;
    /* A += sum of the other P, B += sum of the other P dP (float per tile, then double) */
    const float at = moa_warp_sum(valid && !dom ? pij : 0.0f);
    const float bt = moa_warp_sum(valid && !dom ? pij * dp : 0.0f);
    R->A += at;
    R->B += bt;
    const unsigned dm = __ballot_sync(0xffffffffu, dom);
    if (dm) {
        const int l = __ffs(dm) - 1;
        R->pstar = __shfl_sync(0xffffffffu, pij, l);
        R->dpstar = __shfl_sync(0xffffffffu, dp, l);
        R->jstar = j0 + l;
    }
    const float e = valid && !dom ? moa_cu_influence(pij, dp, R->D, p.eps) : 0.0f;
    const int64_t bin = moa_cu_dist_bin(i, j, p.sink, p.block);
    hist_add_warp(valid && !dom, bin, e, H.ha, H.hs, H.sa, H.ss, lane);
}

/* Row i's dominant entry, now that its A and B are complete (one lane). */
__device__ __forceinline__ void dq_dominant(const dq_params &p, const dq_hist &H, int i, const dq_row *R) {
    const double E = moa_cu_influence_dominant(R->pstar, R->dpstar, R->A, R->B, p.eps, i == 0);
    const int64_t b = moa_cu_dist_bin(i, R->jstar, p.sink, p.block);
    if (b < 0) { atomicAdd(H.sa, fabs(E)); atomicAdd(H.ss, E); }
    else { atomicAdd(&H.ha[b], fabs(E)); atomicAdd(&H.hs[b], E); }
}

/* The CTA's shared histograms hb -> head h's global ones, non-zero bins only. */
__device__ __forceinline__ void dq_flush_hist(const dq_params &p, int h, const double *hb) {
    const int nb_s = p.n_bins, tid = threadIdx.x;
    __syncthreads();
    for (int b = tid; b < nb_s; b += blockDim.x) {
        if (hb[b] != 0.0) atomicAdd(&p.h_abs[(int64_t)h * p.n_bins + b], hb[b]);
        if (hb[nb_s + b] != 0.0) atomicAdd(&p.h_sgn[(int64_t)h * p.n_bins + b], hb[nb_s + b]);
    }
    if (tid == 0) {
        if (hb[2 * nb_s] != 0.0) atomicAdd(&p.s_abs[h], hb[2 * nb_s]);
        if (hb[2 * nb_s + 1] != 0.0) atomicAdd(&p.s_sgn[h], hb[2 * nb_s + 1]);
    }
}

__global__ void __launch_bounds__(128) k_bwd_dq(dq_params p) {
    MOA_CU_DYN_SMEM(float, sm);
    const int hd = p.hd, h = blockIdx.y, u = h / p.G;
    const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
    const int64_t ldq = (int64_t)p.n_head * hd;
    float *Ks = sm;                               /* [32][hd+1] */
    float *Vs = Ks + DQ_BK * (hd + 1);            /* [32][hd+1] */
    float *Qs = Vs + DQ_BK * (hd + 1);            /* [16][hd] */
    float *dOs = Qs + DQ_BQ * hd;                 /* [16][hd] */
    double *hb = (double *)(dOs + DQ_BQ * hd);    /* smem histograms: abs [nb], sgn [nb], sink 2 */
    const int infl = p.h_abs != NULL;
    const dq_hist H = dq_hist_of(p, h, hb);

    const int i0 = blockIdx.x * DQ_BQ, nq = (int)moa_cu_tile_rows(p.n, blockIdx.x, DQ_BQ);
    dq_load_rows(p, h, i0, nq, Qs, dOs);
    const int nc = (hd + 31) / 32;
    float dq[DQ_ROWS][NC_MAX];
    dq_row R[DQ_ROWS];
#pragma unroll
    for (int rr = 0; rr < DQ_ROWS; rr++) {
        const int r = warp * DQ_ROWS + rr;
        R[rr].lse = r < nq ? p.LSE[(int64_t)h * p.n + i0 + r] : 0.0f;
        R[rr].D = r < nq ? p.D[(int64_t)h * p.n + i0 + r] : 0.0f;
        R[rr].pstar = 0.0f; R[rr].dpstar = 0.0f; R[rr].jstar = -1;
        R[rr].A = 0.0; R[rr].B = 0.0;
#pragma unroll
        for (int c = 0; c < NC_MAX; c++) dq[rr][c] = 0.0f;
    }
    const int n_kt = (int)moa_cu_tiles(i0 + nq, DQ_BK);   /* keys j <= last row */
    for (int kt = 0; kt < n_kt; kt++) {
        const int j0 = kt * DQ_BK, bk = (int)moa_cu_tile_rows(p.n, kt, DQ_BK);
        dq_load_tile(p, u, j0, bk, Ks, Vs);
#pragma unroll
        for (int rr = 0; rr < DQ_ROWS; rr++) {
            const int r = warp * DQ_ROWS + rr;
            if (r >= nq) break;
            dq_row_tile(p, H, infl, r, i0 + r, j0, bk, Qs, dOs, Ks, Vs, &R[rr], dq[rr]);
        }
    }
    /* each row's dominant entry, now that A and B are complete */
    if (infl && lane == 0)
#pragma unroll
        for (int rr = 0; rr < DQ_ROWS; rr++) {
            const int r = warp * DQ_ROWS + rr;
            if (r >= nq || R[rr].jstar < 0) continue;
            dq_dominant(p, H, i0 + r, &R[rr]);
        }
    /* dQ = scale dS K */
#pragma unroll
    for (int rr = 0; rr < DQ_ROWS; rr++) {
        const int r = warp * DQ_ROWS + rr;
        if (r >= nq) break;
        float *dst = p.dQ + (int64_t)(i0 + r) * ldq + (int64_t)h * hd;
#pragma unroll
        for (int c = 0; c < NC_MAX; c++)
            if (c < nc && lane + 32 * c < hd) dst[lane + 32 * c] = p.scale * dq[rr][c];
    }
    if (infl && p.hist_in_smem) dq_flush_hist(p, h, hb);   /* the CTA's histogram -> global */
}

/* ---- key-major: dK, dV ------------------------------------------------------------------------ */

#define KV_BK 32
#define KV_BQ 16
#define KV_DG 8                    /* threads per key: 32 keys x 8 = 256 threads */

static size_t kv_smem(int hd) {
    return sizeof(float) * (2 * (size_t)KV_BK * (hd + 1) + 2 * (size_t)KV_BQ * hd +
                            2 * (size_t)KV_BQ * (KV_BK + 1) + 2 * KV_BQ);
}

__global__ void __launch_bounds__(256) k_bwd_dkdv(int n, int n_head, int G, int hd, float scale,
                                                  const float *Q, const float *K, const float *V,
                                                  const float *dO, const float *LSE,
                                                  const float *D, float *dK, float *dV) {
    MOA_CU_DYN_SMEM(float, sm);
    const int u = blockIdx.y, j0 = blockIdx.x * KV_BK, tid = threadIdx.x;
    const int bk = (int)moa_cu_tile_rows(n, blockIdx.x, KV_BK);
    const int64_t ldq = (int64_t)n_head * hd, ldk = (int64_t)(n_head / G) * hd;
    float *Ks = sm;                               /* [32][hd+1] */
    float *Vs = Ks + KV_BK * (hd + 1);            /* [32][hd+1] */
    float *Qs = Vs + KV_BK * (hd + 1);            /* [16][hd] */
    float *dOs = Qs + KV_BQ * hd;                 /* [16][hd] */
    float *Ps = dOs + KV_BQ * hd;                 /* [16][33] P */
    float *dSs = Ps + KV_BQ * (KV_BK + 1);        /* [16][33] dS */
    float *ls = dSs + KV_BQ * (KV_BK + 1);        /* [16] LSE */
    float *Ds = ls + KV_BQ;                       /* [16] D */
    for (int x = tid; x < KV_BK * hd; x += blockDim.x) {
        const int j = x / hd, d = x % hd;
        const int64_t off = (int64_t)(j0 + j) * ldk + (int64_t)u * hd + d;
        Ks[j * (hd + 1) + d] = j < bk ? K[off] : 0.0f;
        Vs[j * (hd + 1) + d] = j < bk ? V[off] : 0.0f;
    }
    const int jj = tid / KV_DG, dg = tid % KV_DG;       /* this thread: key jj, dims dg + 8c */
    const int ncd = (hd + KV_DG - 1) / KV_DG;
    float dk[MOA_CU_HD_MAX / KV_DG], dv[MOA_CU_HD_MAX / KV_DG];
#pragma unroll
    for (int c = 0; c < MOA_CU_HD_MAX / KV_DG; c++) { dk[c] = 0.0f; dv[c] = 0.0f; }
    for (int g = 0; g < G; g++) {
        const int h = u * G + g;
        for (int i0 = j0 / KV_BQ * KV_BQ; i0 < n; i0 += KV_BQ) {   /* rows i >= j0 */
            const int nq = n - i0 < KV_BQ ? n - i0 : KV_BQ;
            __syncthreads();
            for (int x = tid; x < KV_BQ * hd; x += blockDim.x) {
                const int r = x / hd, d = x % hd;
                const int64_t off = (int64_t)(i0 + r) * ldq + (int64_t)h * hd + d;
                Qs[x] = r < nq ? Q[off] : 0.0f;
                dOs[x] = r < nq ? dO[off] : 0.0f;
            }
            if (tid < KV_BQ) {
                ls[tid] = tid < nq ? LSE[(int64_t)h * n + i0 + tid] : 0.0f;
                Ds[tid] = tid < nq ? D[(int64_t)h * n + i0 + tid] : 0.0f;
            }
            __syncthreads();
            /* P, dS for the 16 x 32 pairs; lanes of a warp take consecutive keys */
            for (int x = tid; x < KV_BQ * KV_BK; x += blockDim.x) {
                const int r = x / KV_BK, j = x % KV_BK;
                float pij = 0.0f, ds = 0.0f;
                if (r < nq && j < bk && j0 + j <= i0 + r) {
                    const float *qr = Qs + r * hd, *gr = dOs + r * hd;
                    const float *kr = Ks + j * (hd + 1), *vr = Vs + j * (hd + 1);
                    float sdot = 0.0f, pdot = 0.0f;
                    for (int d = 0; d < hd; d++) { sdot += qr[d] * kr[d]; pdot += gr[d] * vr[d]; }
                    pij = expf(scale * sdot - ls[r]);
                    ds = pij * (pdot - Ds[r]);
                }
                Ps[r * (KV_BK + 1) + j] = pij;
                dSs[r * (KV_BK + 1) + j] = ds;
            }
            __syncthreads();
            /* dK_j += dS_ij q_i,  dV_j += P_ij dO_i */
            for (int r = 0; r < nq; r++) {
                const float a = dSs[r * (KV_BK + 1) + jj], b = Ps[r * (KV_BK + 1) + jj];
#pragma unroll
                for (int c = 0; c < MOA_CU_HD_MAX / KV_DG; c++) {
                    const int d = dg + KV_DG * c;
                    if (c < ncd && d < hd) {
                        dk[c] += a * Qs[r * hd + d];
                        dv[c] += b * dOs[r * hd + d];
                    }
                }
            }
        }
    }
    if (jj < bk)
#pragma unroll
        for (int c = 0; c < MOA_CU_HD_MAX / KV_DG; c++) {
            const int d = dg + KV_DG * c;
            if (c < ncd && d < hd) {
                const int64_t off = (int64_t)(j0 + jj) * ldk + (int64_t)u * hd + d;
                dK[off] = scale * dk[c];
                dV[off] = dv[c];
            }
        }
}

moa_status moa_cuda_attn_bwd_influence(moa_cuda_ctx *c, const moa_attn_train_shape *s,
                                       const float *Q, const float *K, const float *V,
                                       const float *O, const float *dO, const float *LSE,
                                       float *dQ, float *dK, float *dV, moa_influence_acc *acc) {
    static const char fn[] = "moa_cuda_attn_bwd_influence";
    MOA_TRY(check_shape(s, fn));
    if (!c || !Q || !K || !V || !O || !dO || !LSE || !dQ || !dK || !dV)
        return moa_err(MOA_ERR_INVALID_ARG, "%s: NULL argument", fn);
    const int n = s->n, H = s->n_head, hd = s->hd, G = H / s->n_kv;
    const int nb = moa_attn_train_n_bins(s);
    if (acc) {
        if (!acc->abs || !acc->sgn || !acc->sink_abs || !acc->sink_sgn)
            return moa_err(MOA_ERR_INVALID_ARG, "%s: influence accumulator has a NULL array", fn);
        if (acc->n_bins < nb)
            return moa_err(MOA_ERR_INVALID_ARG, "%s: influence accumulator has %d bins, n=%d "
                           "block=%d needs %d", fn, acc->n_bins, n, s->block, nb);
    }
    float *D = NULL;
    MOA_TRY(moa_cuda_alloc(c, (size_t)n * H * sizeof(float), (void **)&D));
    moa_status st = MOA_OK;
    {
        const int64_t warps = (int64_t)n * H;
        MOA_CU_LAUNCH(k_bwd_D, moa_cu_blocks(warps * 32, 256), 256, 0, c->stream, dO, O, n, H, hd, D);
        if (cudaGetLastError() != cudaSuccess) st = moa_err(MOA_ERR_DEVICE, "%s: D kernel launch failed", fn);
    }
    if (st == MOA_OK) {
        dq_params p;
        memset(&p, 0, sizeof p);
        p.n = n; p.n_head = H; p.G = G; p.hd = hd; p.sink = s->sink; p.block = s->block;
        p.n_bins = acc ? acc->n_bins : 0;
        p.scale = attn_scale(hd); p.eps = s->eps;
        p.Q = Q; p.K = K; p.V = V; p.dO = dO; p.LSE = LSE; p.D = D; p.dQ = dQ;
        if (acc) {
            p.h_abs = acc->abs; p.h_sgn = acc->sgn; p.s_abs = acc->sink_abs; p.s_sgn = acc->sink_sgn;
            p.hist_in_smem = acc->n_bins <= HIST_SMEM_BINS;
        }
        const size_t smem = dq_smem(hd, p.hist_in_smem ? p.n_bins : 0);
        st = moa_cuda_smem_optin(c, (const void *)k_bwd_dq, smem, fn);
        if (st == MOA_OK) {
            MOA_CU_LAUNCH(k_bwd_dq, dim3((unsigned)moa_cu_tiles(n, DQ_BQ), (unsigned)H), 128, smem, c->stream, p);
            cudaError_t e = cudaGetLastError();
            if (e != cudaSuccess) st = moa_cuda_status(e, fn);
        }
    }
    if (st == MOA_OK) {
        const size_t smem = kv_smem(hd);
        st = moa_cuda_smem_optin(c, (const void *)k_bwd_dkdv, smem, fn);
        if (st == MOA_OK) {
            MOA_CU_LAUNCH(k_bwd_dkdv, dim3((unsigned)moa_cu_tiles(n, KV_BK), (unsigned)s->n_kv), 256, smem,
                         c->stream, n, H, G, hd, attn_scale(hd), Q, K, V, dO, LSE, D, dK, dV);
            cudaError_t e = cudaGetLastError();
            if (e != cudaSuccess) st = moa_cuda_status(e, fn);
        }
    }
    /* D is freed after the kernels that read it (cudaFree synchronises the device) */
    if (st == MOA_OK) st = moa_cuda_sync(c);
    moa_cuda_free(c, D);
    return st;
}
