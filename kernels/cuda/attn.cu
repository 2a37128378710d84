/* attn.cu - runtime attention on the device: the banded causal softmax forward with sinks
 * (shared with the profiler's forward), the device cache (runtime/cache.c layout), chunked
 * prefill, batched ring decode with split-K, and Lightning Attention-2 prefill and decode.
 * CPU references: kernels/cpu/attn.c (moa_attn_band_ref, moa_linear_ref), runtime/attn.c. */
#include "moa-cuda-impl.cuh"
#include "moa-cuda-cache.h"

#include <stdlib.h>

/* ======================= banded softmax forward (FlashAttention-2 style) ====================
 * CTA = one query head x BQ = 16 query rows; 4 warps, each owning 4 rows. Key tiles of 32
 * keys are staged in shared memory (K padded to hd+1 floats per row so lane j reading key j
 * hits bank (j*(hd+1) + d) mod 32: conflict-free); lane j scores key j of the tile, the warp
 * folds the tile into each row's online-softmax state (m, l) and its output accumulator,
 * held in registers as hd/32 dims per lane (d = lane + 32c).
 * Shared memory: Ks [32][hd+1] + Vs [32][hd] + Qs [16][hd] floats + 32 positions
 * (hd = 64: 20.6 KiB; hd = 128: 41 KiB; hd = 256: 82 KiB, opt-in). */
#define BAND_BQ 16
#define BAND_BK 32
#define BAND_WARPS 4
#define BAND_ROWS (BAND_BQ / BAND_WARPS)
#define NC_MAX (MOA_CU_HD_MAX / 32)

static size_t band_smem(int hd, int streaming) {
    return sizeof(float) * ((size_t)BAND_BK * (hd + 1) + (size_t)BAND_BK * hd +
                            (size_t)BAND_BQ * hd * (streaming ? 2 : 1)) +
           sizeof(int64_t) * BAND_BK;
}

/* Element d (< rope_dim) of a stored key row rotated at pos (moa_cu_rope_at on widened values). */
__device__ __forceinline__ float kv_rope_at(int t, const uint8_t *row, int d, int rope_dim, int neox,
                                            double pos, const double *inv_freq) {
    int pd, odd;
    const int i = moa_cu_rope_pair(d, rope_dim, neox, &pd, &odd);
    const float a = moa_cu_kv_value(t, row, d), b = moa_cu_kv_value(t, row, pd);
    return odd ? moa_cu_rope_elem(b, a, 1, pos * inv_freq[i]) : moa_cu_rope_elem(a, b, 0, pos * inv_freq[i]);
}

/* Unit u of query head h as the band kernel sees it: mask (sink, window), slot layout (S, R)
 * and the cache rows of its sequence (nslots of them once tokens are cached). The profiler's
 * call (no units): dense causal, no cache. */
typedef struct {
    int64_t sink, window, S, R, nslots;
    const uint8_t *kc, *vc;
} band_unit;

/* 0 for a linear unit (another kernel), else 1 with *b filled. (An out-parameter: returning
 * the struct cost k_band_fwd 12 more registers on sm_80.) */
__device__ __forceinline__ int band_unit_of(const moa_cu_band_params &p, int h, int u, band_unit *b) {
    const band_unit dense = {0, INT64_MAX, 0, 0, 0, NULL, NULL};
    *b = dense;
    if (!p.units) return 1;
    const moa_cu_unit U = p.units[u];
    if (U.kind == 2) return 0;
    b->sink = U.sink; b->window = p.qwin ? p.qwin[h] : U.window; b->S = U.sink; b->R = U.ring;
    b->kc = p.kc + U.off * p.krow;
    b->vc = p.vc + U.off * p.vrow;
    b->nslots = p.cached > 0 ? b->S + b->R : 0;
    return 1;
}

/* The CTA's nq query rows of head h into Qs (zero past nq); streaming (strm): rotated at i
 * for window keys (Qs) and at min(i, C) for sink keys (Qa). */
__device__ __forceinline__ void band_load_q(const moa_cu_band_params &p, int h, int t0, int nq,
                                            int64_t i0, int64_t Cpos, int strm, float *Qs, float *Qa) {
    const int hd = p.hd;
    for (int x = threadIdx.x; x < BAND_BQ * hd; x += blockDim.x) {
        const int r = x / hd, d = x % hd;
        const float *qrow = p.q + (int64_t)(t0 + r) * p.ldq + (int64_t)h * hd;
        float v = 0.0f, va = 0.0f;
        if (r < nq) {
            v = va = qrow[d];
            if (strm && d < p.rope_dim) {              /* q at i (window keys), min(i, C) (sinks) */
                const int64_t i = i0 + r, ia = i < Cpos ? i : Cpos;
                v = moa_cu_rope_at(qrow, d, p.rope_dim, p.neox, (double)i, p.inv_freq);
                va = moa_cu_rope_at(qrow, d, p.rope_dim, p.neox, (double)ia, p.inv_freq);
            }
        }
        Qs[x] = v;
        if (strm) Qa[x] = va;
    }
}

/* Key tile: bk rows from r0 of the cache slots (from_cache) or of the chunk, their positions
 * into kpos (-1: none) and K, V widened to f32 into Ks, Vs (streaming: keys rotated at their
 * own positions). Every thread of the CTA calls it (barriers inside). */
__device__ __forceinline__ void band_load_tile(const moa_cu_band_params &p, const band_unit &b, int u,
                                               int from_cache, int64_t r0, int bk, int strm,
                                               int64_t *kpos, float *Ks, float *Vs) {
    const int hd = p.hd, tid = threadIdx.x;
    __syncthreads();   /* previous tile consumed */
    if (tid < BAND_BK)
        kpos[tid] = tid >= bk ? -1
                  : from_cache ? moa_cu_slot_pos(r0 + tid, p.cached, b.S, b.R)
                               : p.kpos0 + r0 + tid;
    __syncthreads();
    for (int x = tid; x < BAND_BK * hd; x += blockDim.x) {
        const int j = x / hd, d = x % hd;
        float kv = 0.0f, vv = 0.0f;
        if (j < bk) {   /* stored rows widened to f32 (the chunk's are staged: same bytes) */
            const uint8_t *kr = from_cache ? b.kc + (r0 + j) * p.krow : p.k + (r0 + j) * p.k_t + u * p.k_h;
            const uint8_t *vr = from_cache ? b.vc + (r0 + j) * p.vrow : p.v + (r0 + j) * p.v_t + u * p.v_h;
            kv = moa_cu_kv_value(p.kt, kr, d);
            vv = moa_cu_kv_value(p.vt, vr, d);
            if (strm && d < p.rope_dim && kpos[j] >= 0)   /* key at its own position */
                kv = kv_rope_at(p.kt, kr, d, p.rope_dim, p.neox, (double)kpos[j], p.inv_freq);
        }
        Ks[j * (hd + 1) + d] = kv;
        Vs[j * hd + d] = vv;
    }
    __syncthreads();
}

/* Folds the staged tile into query row i (local row r) of this warp: lane j scores key j,
 * then the online-softmax state st and the output accumulator acc (hd/32 dims per lane) are
 * updated. Every lane of the warp calls it (warp collectives inside). */
__device__ __forceinline__ void band_row_tile(const moa_cu_band_params &p, const band_unit &b, int strm,
                                              int r, int64_t i, int bk, int64_t jp, const float *Qs,
                                              const float *Qa, const float *Ks, const float *Vs,
                                              moa_cu_softmax *st, float *acc) {
    const int hd = p.hd, lane = threadIdx.x % 32, nc = (hd + 31) / 32;
    float s = -INFINITY;
    if (jp >= 0 && moa_mask_visible(i, jp, b.sink, b.window)) {
        const float *qr = (strm && jp < b.sink ? Qa : Qs) + r * hd, *kr = Ks + lane * (hd + 1);
        float dot = 0.0f;
        for (int d = 0; d < hd; d++) dot += qr[d] * kr[d];
        s = p.scale * dot;                     /* s_ij = scale q_i . k_j */
    }
    const float tmax = moa_warp_max(s);
    if (tmax == -INFINITY) return;             /* nothing visible in this tile */
    float corr;
    const float mn = moa_cu_softmax_step(st, tmax, &corr);
    const float pj = s == -INFINITY ? 0.0f : expf(s - mn);   /* exp(s_ij - m_new) */
    st->l += moa_warp_sum(pj);
#pragma unroll
    for (int c = 0; c < NC_MAX; c++) acc[c] *= corr;
    for (int j = 0; j < bk; j++) {             /* O += sum_j p_j v_j */
        const float pb = __shfl_sync(0xffffffffu, pj, j);
        if (pb == 0.0f) continue;
#pragma unroll
        for (int c = 0; c < NC_MAX; c++)
            if (c < nc && lane + 32 * c < hd) acc[c] += pb * Vs[j * hd + lane + 32 * c];
    }
}

__global__ void __launch_bounds__(128) k_band_fwd(moa_cu_band_params p) {
    MOA_CU_DYN_SMEM(float, sm);
    const int hd = p.hd, h = blockIdx.y, u = h / p.G;
    float *Ks = sm;                                   /* [32][hd+1] */
    float *Vs = Ks + BAND_BK * (hd + 1);              /* [32][hd] */
    float *Qs = Vs + BAND_BK * hd;                    /* [16][hd] */
    const int strm = p.rope_dim > 0;
    float *Qa = Qs + BAND_BQ * hd;                    /* [16][hd] streaming: q for sink keys */
    int64_t *kpos = (int64_t *)(Qa + (strm ? BAND_BQ * hd : 0));   /* [32] tile key positions, -1 none */
    const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;

    band_unit b;
    if (!band_unit_of(p, h, u, &b)) return;           /* linear unit: another kernel */
    const int t0 = blockIdx.x * BAND_BQ;
    const int nq = (int)moa_cu_tile_rows(p.n_q, blockIdx.x, BAND_BQ);
    const int64_t i0 = p.qpos0 + t0, i1 = i0 + nq - 1;
    band_load_q(p, h, t0, nq, i0, b.S + b.R - 1, strm, Qs, Qa);   /* streaming: C = S + R - 1 */
    moa_cu_softmax st[BAND_ROWS];
    float acc[BAND_ROWS][NC_MAX];
#pragma unroll
    for (int r = 0; r < BAND_ROWS; r++) {
        st[r] = moa_cu_softmax_init();
#pragma unroll
        for (int c = 0; c < NC_MAX; c++) acc[r][c] = 0.0f;
    }
    const int nc = (hd + 31) / 32;

    /* key tiles: first the cache slots, then the chunk's rows inside the band */
    const int64_t n_ct = moa_cu_tiles(b.nslots, BAND_BK);
    const int64_t n_kt = moa_cu_tiles(p.n_k, BAND_BK);
    for (int64_t kt = 0; kt < n_ct + n_kt; kt++) {
        const int from_cache = kt < n_ct;
        const int64_t r0 = (from_cache ? kt : kt - n_ct) * BAND_BK;
        const int bk = (int)moa_cu_tile_rows(from_cache ? b.nslots : p.n_k, r0 / BAND_BK, BAND_BK);
        if (!from_cache && !moa_cu_tile_needed(i0, i1, p.kpos0 + r0, bk, b.sink, b.window))
            continue;   /* uniform across the CTA: no barrier is skipped by some threads only */
        band_load_tile(p, b, u, from_cache, r0, bk, strm, kpos, Ks, Vs);
        const int64_t jp = kpos[lane];
#pragma unroll
        for (int rr = 0; rr < BAND_ROWS; rr++) {
            const int r = warp * BAND_ROWS + rr;
            if (r >= nq) break;
            band_row_tile(p, b, strm, r, i0 + r, bk, jp, Qs, Qa, Ks, Vs, &st[rr], acc[rr]);
        }
    }
    /* O = acc / l (zero if nothing was visible); LSE = m + ln l */
#pragma unroll
    for (int rr = 0; rr < BAND_ROWS; rr++) {
        const int r = warp * BAND_ROWS + rr;
        if (r >= nq) break;
        const float inv = st[rr].l > 0.0f ? 1.0f / st[rr].l : 0.0f;
        float *o = p.o + (int64_t)(t0 + r) * p.ldo + (int64_t)h * hd;
#pragma unroll
        for (int c = 0; c < NC_MAX; c++)
            if (c < nc && lane + 32 * c < hd) o[lane + 32 * c] = acc[rr][c] * inv;
        if (p.lse && lane == 0) p.lse[(int64_t)h * p.lse_ld + t0 + r] = moa_cu_softmax_lse(st[rr]);
    }
}

moa_status moa_cu_band_fwd(const moa_cuda_ctx *c, const moa_cu_band_params *p, int n_head,
                           const char *what) {
    if (p->n_q <= 0) return MOA_OK;
    const size_t smem = band_smem(p->hd, p->rope_dim > 0);
    MOA_TRY(moa_cuda_smem_optin(c, (const void *)k_band_fwd, smem, what));
    const dim3 grid((unsigned)moa_cu_tiles(p->n_q, BAND_BQ), (unsigned)n_head);
    if (grid.y > 65535) return moa_err(MOA_ERR_INVALID_ARG, "%s: %d heads > 65535", what, n_head);
    MOA_CU_LAUNCH(k_band_fwd, grid, 128, smem, c->stream, *p);
    CU_LAUNCHED(what);
    return MOA_OK;
}

/* ==================================== device cache ======================================= */

static const char *kv_name(int t) {
    return t == MOA_CU_KV_F32 ? "f32" : t == MOA_CU_KV_F16 ? "f16" : t == MOA_CU_KV_BF16 ? "bf16" : "q8_0";
}

/* The layout's dimensions, position mode, RoPE and storage types (not yet its units). */
static moa_status check_cache_layout(const moa_cuda_cache_layout *L, int64_t n_ctx, int n_seq,
                                     const char *fn) {
    if (L->n_layer < 1 || L->n_head < 1 || L->n_head_kv < 1 || L->head_dim < 1 ||
        L->n_head % L->n_head_kv != 0 || n_ctx < 1 || n_seq < 1)
        return moa_err(MOA_ERR_INVALID_ARG, "%s: bad dimensions n_layer=%d n_head=%d n_head_kv=%d "
                       "head_dim=%d n_ctx=%lld n_seq=%d", fn, L->n_layer, L->n_head, L->n_head_kv,
                       L->head_dim, (long long)n_ctx, n_seq);
    if (L->head_dim > MOA_CU_HD_MAX)
        return moa_err(MOA_ERR_UNSUPPORTED, "%s: head_dim=%d exceeds %d", fn, L->head_dim, MOA_CU_HD_MAX);
    if ((L->pos_mode != 0 && L->pos_mode != 1) || L->rope_dim < 0 || L->rope_dim % 2 ||
        L->rope_dim > L->head_dim || (L->pos_mode == 1 && L->rope_dim == 0) ||
        (L->rope_dim > 0 && !(L->rope_base > 1.0f)))
        return moa_err(MOA_ERR_INVALID_ARG, "%s: pos_mode=%d rope_dim=%d rope_base=%g (need mode 0 or "
                       "1, rope_dim even in [0, head_dim], > 0 in streaming mode, base > 1)", fn,
                       L->pos_mode, L->rope_dim, (double)L->rope_base);
    if (L->rope_pairing != 0 && L->rope_pairing != 2)
        return moa_err(MOA_ERR_INVALID_ARG, "%s: rope_pairing=%d (expected 0 normal or 2 NEOX, as "
                       "moa_rope_pairing)", fn, L->rope_pairing);
    if ((unsigned)L->type_k >= MOA_CU_KV_N_TYPES || (unsigned)L->type_v >= MOA_CU_KV_N_TYPES)
        return moa_err(MOA_ERR_INVALID_ARG, "%s: type_k=%d, type_v=%d (expected 0 f32, 1 f16, 2 bf16 "
                       "or 3 q8_0, as moa_kv_type)", fn, L->type_k, L->type_v);
    return MOA_OK;
}

struct moa_cuda_cache {
    moa_cuda_ctx *ctx;
    int n_layer, n_head, n_kv, hd, group, n_seq;
    int64_t n_ctx;
    float scale;
    moa_cu_unit *units_h;      /* host  [n_layer][n_kv] */
    moa_cu_unit *units_d;      /* device copy */
    int64_t *qwin_d;           /* device [n_layer][n_head] per-query-head windows, or NULL */
    int pos_mode, rope_dim;    /* 0 absolute / 1 streaming; rotated dims (0: caller rotates) */
    float rope_base;
    int neox;                  /* pairing: 0 adjacent pairs, 1 halves (layout rope_pairing 2) */
    double *inv_freq_d;        /* device [rope_dim/2]: base^(-2i/rope_dim) */
    float *rot;                /* device scratch: rotated q, k of a call (absolute mode) */
    size_t rot_cap;            /* floats */
    unsigned char *layer_dense;/* host [n_layer] */
    int64_t slots_per_seq, states_per_seq, max_slots;
    int kt, vt;                /* storage types of K and V (MOA_CU_KV_*) */
    int64_t krow, vrow;        /* bytes of one stored K / V row of hd values */
    uint8_t *k, *v;            /* device [n_seq][slots_per_seq] rows of krow / vrow bytes */
    float *state;              /* device [n_seq][states_per_seq][hd][hd] */
    int64_t *pos;              /* host [n_seq][n_layer] */
    /* per-call device scratch */
    int64_t *row_pos_d;        /* [n_seq] position of each decode row */
    int *row_seq_d;            /* [n_seq] sequence of each decode row */
    int64_t *row_pos_h;
    int *row_seq_h;
    float *part;               /* split-K partials [n_seq][n_head][parts][hd + 1] */
    size_t part_cap;           /* floats */
    uint8_t *kvio;             /* the call's k, v rows in the storage types: [n][n_kv] krow
                                  bytes, then [n][n_kv] vrow bytes (not used when both f32) */
    size_t kvio_cap;           /* bytes */
};

void moa_cuda_cache_free(moa_cuda_cache *c) {
    if (!c) return;
    moa_cuda_ctx *x = c->ctx;
    moa_cuda_free(x, c->units_d);
    moa_cuda_free(x, c->qwin_d);
    moa_cuda_free(x, c->inv_freq_d);
    moa_cuda_free(x, c->rot);
    moa_cuda_free(x, c->k);
    moa_cuda_free(x, c->v);
    moa_cuda_free(x, c->state);
    moa_cuda_free(x, c->row_pos_d);
    moa_cuda_free(x, c->row_seq_d);
    moa_cuda_free(x, c->part);
    moa_cuda_free(x, c->kvio);
    free(c->units_h);
    free(c->layer_dense);
    free(c->pos);
    free(c->row_pos_h);
    free(c->row_seq_h);
    free(c);
}

/* The host side of a new cache: the layout's scalars, then the host tables (zeroed).
 * NULL when out of memory. */
static moa_cuda_cache *cache_alloc_host(moa_cuda_ctx *x, const moa_cuda_cache_layout *L, int64_t n_ctx,
                                        int n_seq) {
    moa_cuda_cache *c = (moa_cuda_cache *)calloc(1, sizeof *c);
    if (!c) return NULL;
    c->pos_mode = L->pos_mode;
    c->rope_dim = L->rope_dim;
    c->rope_base = L->rope_base;
    c->neox = L->rope_pairing == 2;
    c->ctx = x;
    c->kt = L->type_k;
    c->vt = L->type_v;
    c->krow = (int64_t)moa_cu_kv_row_bytes(c->kt, L->head_dim);
    c->vrow = (int64_t)moa_cu_kv_row_bytes(c->vt, L->head_dim);
    c->n_layer = L->n_layer; c->n_head = L->n_head; c->n_kv = L->n_head_kv; c->hd = L->head_dim;
    c->group = L->n_head / L->n_head_kv; c->n_seq = n_seq; c->n_ctx = n_ctx;
    c->scale = L->scale > 0.0f ? L->scale : (float)(1.0 / sqrt((double)c->hd));
    const size_t nu = (size_t)c->n_layer * c->n_kv;
    c->units_h = (moa_cu_unit *)calloc(nu, sizeof *c->units_h);
    c->layer_dense = (unsigned char *)calloc((size_t)c->n_layer, 1);
    c->pos = (int64_t *)calloc((size_t)n_seq * c->n_layer, sizeof *c->pos);
    c->row_pos_h = (int64_t *)calloc((size_t)n_seq, sizeof(int64_t));
    c->row_seq_h = (int *)calloc((size_t)n_seq, sizeof(int));
    if (!c->units_h || !c->layer_dense || !c->pos || !c->row_pos_h || !c->row_seq_h) {
        moa_cuda_cache_free(c);
        return NULL;
    }
    return c;
}

/* Slot tables, the runtime's (cache.c) sizing: each unit's sink, ring and offset, the dense
 * layers, the slots and linear states per sequence. */
static moa_status cache_slot_tables(moa_cuda_cache *c, const moa_cuda_cache_layout *L, const char *fn) {
    const int64_t n_ctx = c->n_ctx;
    const size_t nu = (size_t)c->n_layer * c->n_kv;
    moa_status st = MOA_OK;
    for (size_t i = 0; i < nu && st == MOA_OK; i++) {
        const moa_cuda_unit *s = &L->units[i];
        moa_cu_unit *r = &c->units_h[i];
        r->kind = s->kind;
        if (s->kind == 2) {
            if (!(s->decay >= 0.0f) || !isfinite(s->decay))
                st = moa_err(MOA_ERR_INVALID_ARG, "%s: unit %zu: decay=%g must be >= 0", fn, i, (double)s->decay);
            r->decay = s->decay;
            r->off = c->states_per_seq++;
            continue;
        }
        if ((s->kind != 0 && s->kind != 1) || s->window < 0 || s->sink < 0) {
            st = moa_err(MOA_ERR_INVALID_ARG, "%s: unit %zu: kind=%d window=%lld sink=%lld", fn, i,
                         s->kind, (long long)s->window, (long long)s->sink);
            break;
        }
        r->sink = s->sink < n_ctx ? s->sink : n_ctx;
        if (s->kind == 1) {
            r->ring = n_ctx - r->sink;
            c->layer_dense[i / c->n_kv] = 1;
        } else {
            r->ring = s->window < n_ctx - r->sink ? s->window : n_ctx - r->sink;
        }
        r->window = r->ring;
        r->off = c->slots_per_seq;
        c->slots_per_seq += r->sink + r->ring;
        if (r->sink + r->ring > c->max_slots) c->max_slots = r->sink + r->ring;
    }
    return st;
}

/* Q-head windows (L->q_window set): in [0, W] for window units (any >= 0 for dense), clamped
 * to the ring. *out: malloc'd [n_layer][n_head] (the caller frees it, also on error). */
static moa_status cache_q_windows(const moa_cuda_cache *c, const moa_cuda_cache_layout *L, const char *fn,
                                  int64_t **out) {
    int64_t *qw = (int64_t *)malloc((size_t)c->n_layer * c->n_head * sizeof *qw);
    *out = qw;
    if (!qw) return moa_err(MOA_ERR_NOMEM, "%s: out of memory", fn);
    for (int l = 0; l < c->n_layer; l++)
        for (int h = 0; h < c->n_head; h++) {
            const size_t ui = (size_t)l * c->n_kv + h / c->group, qi = (size_t)l * c->n_head + h;
            const moa_cuda_unit *s = &L->units[ui];
            int64_t w = L->q_window[qi];
            if (s->kind != 2 && (w < 0 || (s->kind == 0 && w > s->window)))
                return moa_err(MOA_ERR_INVALID_ARG, "%s: layer %d query head %d: q_window=%lld must be "
                               "in [0, %lld]", fn, l, h, (long long)w, (long long)s->window);
            if (w > c->units_h[ui].ring) w = c->units_h[ui].ring;
            qw[qi] = w;
        }
    return MOA_OK;
}

/* The device side: unit table, K, V, linear states (zeroed), decode row tables, the q-head
 * windows qw (or NULL) and the RoPE frequencies; synchronises (qw is read by the uploads). */
static moa_status cache_upload(moa_cuda_cache *c, const int64_t *qw) {
    moa_cuda_ctx *x = c->ctx;
    const int n_seq = c->n_seq;
    const size_t nu = (size_t)c->n_layer * c->n_kv, hd = (size_t)c->hd;
    const size_t kv_rows = (size_t)c->slots_per_seq * n_seq;
    const size_t st_f = (size_t)c->states_per_seq * hd * hd * n_seq;
    moa_status st = moa_cuda_alloc(x, nu * sizeof(moa_cu_unit), (void **)&c->units_d);
    if (st == MOA_OK) st = moa_cuda_alloc(x, kv_rows * (size_t)c->krow, (void **)&c->k);
    if (st == MOA_OK) st = moa_cuda_alloc(x, kv_rows * (size_t)c->vrow, (void **)&c->v);
    if (st == MOA_OK) st = moa_cuda_alloc(x, st_f * sizeof(float), (void **)&c->state);
    if (st == MOA_OK) st = moa_cuda_alloc(x, (size_t)n_seq * sizeof(int64_t), (void **)&c->row_pos_d);
    if (st == MOA_OK) st = moa_cuda_alloc(x, (size_t)n_seq * sizeof(int), (void **)&c->row_seq_d);
    if (st == MOA_OK) st = moa_cuda_upload(x, c->units_d, c->units_h, nu * sizeof(moa_cu_unit));
    if (st == MOA_OK && qw) {
        const size_t b = (size_t)c->n_layer * c->n_head * sizeof *qw;
        st = moa_cuda_alloc(x, b, (void **)&c->qwin_d);
        if (st == MOA_OK) st = moa_cuda_upload(x, c->qwin_d, qw, b);
    }
    if (st == MOA_OK) st = moa_cuda_memset0(x, c->state, st_f * sizeof(float));
    if (st == MOA_OK) st = moa_cuda_sync(x);
    double inv[MOA_CU_HD_MAX / 2];
    for (int i = 0; i < c->rope_dim / 2; i++)
        inv[i] = pow((double)c->rope_base, -2.0 * i / (double)c->rope_dim);   /* as cache.c */
    if (st == MOA_OK && c->rope_dim > 0) {
        st = moa_cuda_alloc(x, sizeof(double) * (size_t)(c->rope_dim / 2), (void **)&c->inv_freq_d);
        if (st == MOA_OK) st = moa_cuda_upload(x, c->inv_freq_d, inv, sizeof(double) * (size_t)(c->rope_dim / 2));
    }
    if (st == MOA_OK) st = moa_cuda_sync(x);   /* qw and inv are read by the uploads */
    return st;
}

moa_status moa_cuda_cache_create(moa_cuda_ctx *x, const moa_cuda_cache_layout *L, int64_t n_ctx,
                                 int n_seq, moa_cuda_cache **out) {
    static const char fn[] = "moa_cuda_cache_create";
    if (!out) return moa_err(MOA_ERR_INVALID_ARG, "%s: out is NULL", fn);
    *out = NULL;
    if (!x || !L || !L->units) return moa_err(MOA_ERR_INVALID_ARG, "%s: NULL context or layout", fn);
    MOA_TRY(check_cache_layout(L, n_ctx, n_seq, fn));
    moa_cuda_cache *c = cache_alloc_host(x, L, n_ctx, n_seq);
    if (!c) return moa_err(MOA_ERR_NOMEM, "%s: out of memory", fn);
    int64_t *qw = NULL;
    moa_status st = cache_slot_tables(c, L, fn);
    if (st == MOA_OK && L->q_window) st = cache_q_windows(c, L, fn, &qw);
    if (st == MOA_OK) st = cache_upload(c, qw);
    free(qw);
    if (st != MOA_OK) {
        moa_cuda_cache_free(c);
        return st;
    }
    moa_log_debug("cuda cache: %d layers x %d kv heads, n_ctx %lld, %d seq, K %s, V %s, %zu KV bytes",
                  c->n_layer, c->n_kv, (long long)n_ctx, n_seq, kv_name(c->kt), kv_name(c->vt),
                  moa_cuda_cache_bytes(c));
    *out = c;
    return MOA_OK;
}

size_t moa_cuda_cache_bytes(const moa_cuda_cache *c) {
    if (!c) return 0;
    return (size_t)c->n_seq * ((size_t)c->slots_per_seq * (size_t)(c->krow + c->vrow) +
                               sizeof(float) * (size_t)c->states_per_seq * c->hd * c->hd);
}

size_t moa_cuda_cache_unit_bytes(const moa_cuda_cache *c, int layer, int kv_head, int value) {
    if (!c || layer < 0 || layer >= c->n_layer || kv_head < 0 || kv_head >= c->n_kv) return 0;
    const moa_cu_unit *U = &c->units_h[(size_t)layer * c->n_kv + kv_head];
    if (U->kind == 2) return 0;
    return (size_t)(U->sink + U->ring) * (size_t)(value ? c->vrow : c->krow);
}

moa_status moa_cuda_cache_unit_read(const moa_cuda_cache *c, int seq, int layer, int kv_head,
                                    int value, void *dst) {
    static const char fn[] = "moa_cuda_cache_unit_read";
    if (!c || !dst) return moa_err(MOA_ERR_INVALID_ARG, "%s: NULL cache or destination", fn);
    if (seq < 0 || seq >= c->n_seq || layer < 0 || layer >= c->n_layer || kv_head < 0 || kv_head >= c->n_kv)
        return moa_err(MOA_ERR_INVALID_ARG, "%s: seq=%d layer=%d kv_head=%d out of range (%d, %d, %d)",
                       fn, seq, layer, kv_head, c->n_seq, c->n_layer, c->n_kv);
    const size_t bytes = moa_cuda_cache_unit_bytes(c, layer, kv_head, value);
    if (!bytes) return MOA_OK;
    const int64_t row = value ? c->vrow : c->krow;
    const moa_cu_unit *U = &c->units_h[(size_t)layer * c->n_kv + kv_head];
    const uint8_t *src = (value ? c->v : c->k) + ((int64_t)seq * c->slots_per_seq + U->off) * row;
    return moa_cuda_download(c->ctx, dst, src, bytes);
}

int64_t moa_cuda_cache_pos(const moa_cuda_cache *c, int seq, int layer) {
    if (!c || seq < 0 || seq >= c->n_seq || layer < 0 || layer >= c->n_layer) return -1;
    return c->pos[(size_t)seq * c->n_layer + layer];
}

moa_status moa_cuda_cache_reset(moa_cuda_cache *c, int seq) {
    if (!c) return moa_err(MOA_ERR_INVALID_ARG, "moa_cuda_cache_reset: NULL cache");
    if (seq >= c->n_seq)
        return moa_err(MOA_ERR_INVALID_ARG, "moa_cuda_cache_reset: seq %d out of range [0, %d)", seq, c->n_seq);
    const int s0 = seq < 0 ? 0 : seq, s1 = seq < 0 ? c->n_seq : seq + 1;
    const size_t st = (size_t)c->states_per_seq * c->hd * c->hd;
    for (int s = s0; s < s1; s++) {
        for (int l = 0; l < c->n_layer; l++) c->pos[(size_t)s * c->n_layer + l] = 0;
        if (st) MOA_TRY(moa_cuda_memset0(c->ctx, c->state + (size_t)s * st, st * sizeof(float)));
    }
    return MOA_OK;
}

moa_status moa_cuda_cache_seq_copy(moa_cuda_cache *c, int src, int dst) {
    /* the runtime (moa_cache_seq_copy) has checked the sequences; this guards direct callers */
    const int ok = c && src != dst && src >= 0 && dst >= 0 && src < c->n_seq && dst < c->n_seq;
    if (!ok) return moa_err(MOA_ERR_INVALID_ARG, "moa_cuda_cache_seq_copy: bad cache or sequences %d -> %d", src, dst);
    const size_t rows = (size_t)c->slots_per_seq, st = (size_t)c->states_per_seq * c->hd * c->hd;
    const size_t kb = rows * (size_t)c->krow, vb = rows * (size_t)c->vrow;
    if (rows) {
        MOA_TRY(moa_cuda_copy(c->ctx, c->k + (size_t)dst * kb, c->k + (size_t)src * kb, kb));
        MOA_TRY(moa_cuda_copy(c->ctx, c->v + (size_t)dst * vb, c->v + (size_t)src * vb, vb));
    }
    if (st) MOA_TRY(moa_cuda_copy(c->ctx, c->state + (size_t)dst * st, c->state + (size_t)src * st, st * sizeof(float)));
    memcpy(c->pos + (size_t)dst * c->n_layer, c->pos + (size_t)src * c->n_layer, sizeof(int64_t) * (size_t)c->n_layer);
    return MOA_OK;
}

static moa_status check_range(const moa_cuda_cache *c, int seq, int layer, int64_t p0, int n,
                              const char *fn) {
    if (c->pos_mode == 1 || !c->layer_dense[layer] || p0 + n <= c->n_ctx) return MOA_OK;
    return moa_err(MOA_ERR_RANGE, "%s: sequence %d would reach %lld tokens but layer %d has a dense "
                   "unit holding n_ctx=%lld; create the cache for a longer context", fn, seq,
                   (long long)(p0 + n), layer, (long long)c->n_ctx);
}

/* ============================ staging the call's new rows ==================================
 * The call's k (rotated in absolute mode, raw in streaming mode) and v rows converted once to
 * the storage types (the CPU's stage_rows, runtime/attn.c): attention reads the chunk's own
 * keys as they will be cached, and appending copies bytes. One block per (token, KV head),
 * threads over store units (values; q8_0: blocks of 32). */
__global__ void k_stage(int kt, int vt, int hd, int n_kv, const float *k, const float *v,
                        uint8_t *ks, int64_t krow, uint8_t *vs, int64_t vrow) {
    const int t = blockIdx.x, u = blockIdx.y;
    const int64_t src = ((int64_t)t * n_kv + u) * hd, row = (int64_t)t * n_kv + u;
    const int nk = kt == MOA_CU_KV_F32 ? 0 : moa_cu_kv_store_units(kt, hd);
    const int nv = vt == MOA_CU_KV_F32 ? 0 : moa_cu_kv_store_units(vt, hd);
    for (int j = threadIdx.x; j < nk; j += blockDim.x) moa_cu_kv_store(kt, ks + row * krow, k + src, hd, j);
    for (int j = threadIdx.x; j < nv; j += blockDim.x) moa_cu_kv_store(vt, vs + row * vrow, v + src, hd, j);
}

/* Rows of the call as stored: row t of KV head u at k + t*k_t + u*k_h bytes (v likewise). */
typedef struct {
    const uint8_t *k, *v;
    int64_t k_t, k_h, v_t, v_h;
} staged_rows;

static moa_status stage_rows(moa_cuda_cache *c, const float *kr, const float *v, int n, staged_rows *r) {
    const int64_t ldk = (int64_t)c->n_kv * c->hd * (int64_t)sizeof(float);
    const int64_t hb = (int64_t)c->hd * (int64_t)sizeof(float);
    const staged_rows f32 = {(const uint8_t *)kr, (const uint8_t *)v, ldk, hb, ldk, hb};
    *r = f32;
    if (c->kt == MOA_CU_KV_F32 && c->vt == MOA_CU_KV_F32) return MOA_OK;
    moa_cuda_ctx *x = c->ctx;
    const size_t kb = (size_t)n * c->n_kv * (size_t)c->krow;
    const size_t need = kb + (size_t)n * c->n_kv * (size_t)c->vrow;
    if (need > c->kvio_cap) {
        moa_cuda_free(x, c->kvio);
        c->kvio = NULL;
        c->kvio_cap = 0;
        MOA_TRY(moa_cuda_alloc(x, need, (void **)&c->kvio));
        c->kvio_cap = need;
    }
    uint8_t *K = c->kvio, *V = c->kvio + kb;
    MOA_CU_LAUNCH(k_stage, dim3((unsigned)n, (unsigned)c->n_kv), 64, 0, x->stream,
                  c->kt, c->vt, c->hd, c->n_kv, kr, v, K, c->krow, V, c->vrow);
    CU_LAUNCHED("stage_rows");
    if (c->kt != MOA_CU_KV_F32) { r->k = K; r->k_t = (int64_t)c->n_kv * c->krow; r->k_h = c->krow; }
    if (c->vt != MOA_CU_KV_F32) { r->v = V; r->v_t = (int64_t)c->n_kv * c->vrow; r->v_h = c->vrow; }
    return MOA_OK;
}

/* ============================== appending keys to the cache ================================
 * Chunk: token t at position a = p0 + t goes to its slot if a < S or a >= end - R (only the
 * last R positions of the chunk reach the ring, so no two tokens share a slot). The staged
 * rows' bytes are copied (2-byte units: every row size is even and every row starts at an
 * even offset). One block per (token, KV head). Linear units are skipped. */
__global__ void k_store(const moa_cu_unit *units, uint8_t *Kc, uint8_t *Vc, int64_t slots_per_seq,
                        int64_t krow, int64_t vrow, staged_rows r, int n,
                        const int *row_seq, const int64_t *row_pos, int seq, int64_t p0) {
    const int t = blockIdx.x, u = blockIdx.y;
    const moa_cu_unit U = units[u];
    if (U.kind == 2) return;
    const int s = row_seq ? row_seq[t] : seq;
    const int64_t a = row_pos ? row_pos[t] : p0 + t;
    const int64_t end = row_pos ? a + 1 : p0 + n;
    if (!(a < U.sink || (U.ring > 0 && a >= end - U.ring))) return;
    const int64_t slot = (int64_t)s * slots_per_seq + U.off + moa_cu_ring_slot(a, U.sink, U.ring);
    uint16_t *kd = (uint16_t *)(Kc + slot * krow), *vd = (uint16_t *)(Vc + slot * vrow);
    const uint16_t *ks = (const uint16_t *)(r.k + t * r.k_t + u * r.k_h);
    const uint16_t *vs = (const uint16_t *)(r.v + t * r.v_t + u * r.v_h);
    for (int64_t b = threadIdx.x; b < krow / 2; b += blockDim.x) kd[b] = ks[b];
    for (int64_t b = threadIdx.x; b < vrow / 2; b += blockDim.x) vd[b] = vs[b];
}

/* ============================ Lightning Attention-2 prefill ================================
 * CTA = one linear unit (blockIdx.x = KV head) x one 32-column slice of the value dims
 * (blockIdx.y); 256 threads. The state slice S[:, e0:e0+32] ([hd][32] f32) lives in shared
 * memory for the whole chunk; blocks of LB = 32 tokens are walked in order (inclusive
 * convention, linear-and-streaming.md 1.2), for each query head g of the group:
 *   O_b = ((Q_b K_b^T) .* M) V_b + (Q_b .* qdec) S,   M[c][c'] = lambda^(c-c') (c >= c'),
 *   qdec[c] = lambda^(c+1);  then S <- lambda^m S + (K_b .* kdec)^T V_b, kdec[c] = lambda^(m-1-c).
 * Shared: Kb, Qb [32][hd+1], Vb [32][32], A [32][33], S [hd][32] (hd = 256: 104 KiB). */
#define LIN_B 32
#define LIN_E 32

static size_t lin_smem(int hd) {
    return sizeof(float) * (2 * (size_t)LIN_B * (hd + 1) + LIN_B * LIN_E + LIN_B * (LIN_B + 1) +
                            (size_t)hd * LIN_E);
}

__global__ void __launch_bounds__(256) k_linear_prefill(
    const moa_cu_unit *units, float *state, int64_t states_per_seq, int seq, int hd, int G,
    const float *q, int64_t ldq, const float *k, const float *v, int64_t ldk, float *o,
    int64_t ldo, int n) {
    MOA_CU_DYN_SMEM(float, sm);
    const int u = blockIdx.x, e0 = blockIdx.y * LIN_E, tid = threadIdx.x;
    const moa_cu_unit U = units[u];
    if (U.kind != 2) return;
    const int ne = hd - e0 < LIN_E ? hd - e0 : LIN_E;
    float *Kb = sm;                              /* [32][hd+1] */
    float *Qb = Kb + LIN_B * (hd + 1);           /* [32][hd+1] */
    float *Vb = Qb + LIN_B * (hd + 1);           /* [32][32]   value slice */
    float *A = Vb + LIN_B * LIN_E;               /* [32][33]   masked, decayed scores */
    float *Ss = A + LIN_B * (LIN_B + 1);         /* [hd][32]   state slice */
    float *Sg = state + ((int64_t)seq * states_per_seq + U.off) * hd * hd;   /* [hd][hd] */
    const float s = U.decay;
    for (int x = tid; x < hd * LIN_E; x += blockDim.x) {
        const int d = x / LIN_E, e = x % LIN_E;
        Ss[x] = e < ne ? Sg[(int64_t)d * hd + e0 + e] : 0.0f;
    }
    for (int lo = 0; lo < n; lo += LIN_B) {
        const int m = n - lo < LIN_B ? n - lo : LIN_B;
        __syncthreads();
        for (int x = tid; x < LIN_B * hd; x += blockDim.x) {
            const int c = x / hd, d = x % hd;
            Kb[c * (hd + 1) + d] = c < m ? k[(int64_t)(lo + c) * ldk + (int64_t)u * hd + d] : 0.0f;
        }
        for (int x = tid; x < LIN_B * LIN_E; x += blockDim.x) {
            const int c = x / LIN_E, e = x % LIN_E;
            Vb[x] = c < m && e < ne ? v[(int64_t)(lo + c) * ldk + (int64_t)u * hd + e0 + e] : 0.0f;
        }
        for (int g = 0; g < G; g++) {
            const int h = u * G + g;
            __syncthreads();
            for (int x = tid; x < LIN_B * hd; x += blockDim.x) {
                const int c = x / hd, d = x % hd;
                Qb[c * (hd + 1) + d] = c < m ? q[(int64_t)(lo + c) * ldq + (int64_t)h * hd + d] : 0.0f;
            }
            __syncthreads();
            /* A[c][c'] = (q_c . k_c') lambda^(c - c') for c' <= c, else 0 */
            for (int x = tid; x < LIN_B * LIN_B; x += blockDim.x) {
                const int c = x / LIN_B, cp = x % LIN_B;
                float a = 0.0f;
                if (cp <= c && c < m) {
                    for (int d = 0; d < hd; d++) a += Qb[c * (hd + 1) + d] * Kb[cp * (hd + 1) + d];
                    a *= moa_cu_decay_pow(s, c - cp);
                }
                A[c * (LIN_B + 1) + cp] = a;
            }
            __syncthreads();
            /* o[c][e] = sum_c' A[c][c'] V[c'][e] + lambda^(c+1) sum_d q[c][d] S[d][e] */
            for (int x = tid; x < LIN_B * LIN_E; x += blockDim.x) {
                const int c = x / LIN_E, e = x % LIN_E;
                if (c >= m || e >= ne) continue;
                float intra = 0.0f, inter = 0.0f;
                for (int cp = 0; cp <= c; cp++) intra += A[c * (LIN_B + 1) + cp] * Vb[cp * LIN_E + e];
                for (int d = 0; d < hd; d++) inter += Qb[c * (hd + 1) + d] * Ss[d * LIN_E + e];
                o[(int64_t)(lo + c) * ldo + (int64_t)h * hd + e0 + e] =
                    intra + moa_cu_decay_pow(s, c + 1) * inter;
            }
        }
        __syncthreads();
        /* S[d][e] <- lambda^m S[d][e] + sum_c lambda^(m-1-c) k[c][d] v[c][e] */
        const float bdec = moa_cu_decay_pow(s, m);
        for (int x = tid; x < hd * LIN_E; x += blockDim.x) {
            const int d = x / LIN_E, e = x % LIN_E;
            float a = 0.0f;
            for (int c = 0; c < m; c++)
                a += moa_cu_decay_pow(s, m - 1 - c) * Kb[c * (hd + 1) + d] * Vb[c * LIN_E + e];
            Ss[x] = bdec * Ss[x] + a;
        }
    }
    __syncthreads();
    for (int x = tid; x < hd * LIN_E; x += blockDim.x) {
        const int d = x / LIN_E, e = x % LIN_E;
        if (e < ne) Sg[(int64_t)d * hd + e0 + e] = Ss[x];
    }
}

/* ============================ linear decode: the recurrence =================================
 * Block per (row, KV head); thread e owns column e of the state:
 *   S[d][e] <- lambda S[d][e] + k[d] v[e];  o[g][e] = sum_d q[g][d] S[d][e]. */
__global__ void k_linear_decode(const moa_cu_unit *units, float *state, int64_t states_per_seq,
                                const int *row_seq, int hd, int G, int n_kv, const float *q,
                                const float *k, const float *v, float *o) {
    MOA_CU_DYN_SMEM(float, sm);
    const int i = blockIdx.x, u = blockIdx.y, e = threadIdx.x;
    const moa_cu_unit U = units[u];
    if (U.kind != 2) return;
    const int64_t ldq = (int64_t)G * n_kv * hd, ldk = (int64_t)n_kv * hd;
    float *qs = sm;                  /* [G][hd] */
    float *ks = qs + G * hd;         /* [hd] */
    for (int x = e; x < G * hd; x += blockDim.x) qs[x] = q[i * ldq + (int64_t)u * G * hd + x];
    for (int x = e; x < hd; x += blockDim.x) ks[x] = k[i * ldk + (int64_t)u * hd + x];
    __syncthreads();
    if (e >= hd) return;
    const float lambda = expf(-U.decay), ve = v[i * ldk + (int64_t)u * hd + e];
    float *S = state + ((int64_t)row_seq[i] * states_per_seq + U.off) * hd * hd;
    for (int g0 = 0; g0 < G; g0 += 8) {
        float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
        for (int d = 0; d < hd; d++) {
            float sv = S[(int64_t)d * hd + e];
            if (g0 == 0) {
                sv = lambda * sv + ks[d] * ve;
                S[(int64_t)d * hd + e] = sv;
            }
#pragma unroll
            for (int gg = 0; gg < 8; gg++)
                if (g0 + gg < G) acc[gg] += qs[(g0 + gg) * hd + d] * sv;
        }
#pragma unroll
        for (int gg = 0; gg < 8; gg++)
            if (g0 + gg < G) o[i * ldq + ((int64_t)u * G + g0 + gg) * hd + e] = acc[gg];
    }
}

/* ================================ softmax decode (ring) ====================================
 * Block per (query head, row, part); 4 warps. Heads are the fastest grid index, so the G
 * query heads of a KV unit run in adjacent blocks and their K/V reads hit L2 instead of
 * reading the unit's ring from DRAM G times. The new token is already in its slot, so the
 * keys are the unit's slots [0, S+R) holding positions from moa_cu_slot_pos(slot, p0 + 1);
 * part `part` takes an equal slice of the slots, its warps take 32-slot tiles in turn.
 * Lane l owns dims d = l + 32c: scores are warp-reduced dot products of coalesced K rows,
 * then one online-softmax step per tile; the warps' states merge in shared memory.
 * Output: normalised o and its LSE (parts > 1: partials [row][head][part][hd + 1]). */
__global__ void __launch_bounds__(128) k_decode(
    const moa_cu_unit *units, const uint8_t *Kc, const uint8_t *Vc, int kt, int vt, int64_t krow,
    int64_t vrow, int64_t slots_per_seq,
    const int *row_seq, const int64_t *row_pos, const int64_t *qwin, int hd, int G, int n_head,
    const float *q, float *o, float *part, int parts, float scale, int rope_dim,
    const double *inv_freq, int neox) {
    MOA_CU_SHARED(float, red_o, [4][MOA_CU_HD_MAX]);
    MOA_CU_SHARED(float, red_m, [4]);
    MOA_CU_SHARED(float, red_l, [4]);
    const int h = blockIdx.x, i = blockIdx.y, pi = blockIdx.z, u = h / G;
    const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
    const moa_cu_unit U = units[u];
    if (U.kind == 2) return;
    const int64_t p0 = row_pos[i], nslot = U.sink + U.ring;
    const int64_t W = qwin ? qwin[h] : U.window;   /* this query head's window */
    const int64_t s0 = nslot * pi / parts, s1 = nslot * (pi + 1) / parts;
    const int64_t base = (int64_t)row_seq[i] * slots_per_seq + U.off;   /* first slot */
    const uint8_t *K = Kc + base * krow, *V = Vc + base * vrow;          /* stored rows */
    const int nc = (hd + 31) / 32;
    /* streaming (rope_dim > 0): the pair partner of dim d = lane + 32c is lane ^ 1's in the
     * normal pairing (one shuffle); in the NEOX pairing it is d -/+ rope_dim/2, another lane
     * and register, read again from the row in global memory (same lines: L1 hits) */
    const int strm = rope_dim > 0;
    const int64_t Cpos = U.sink + U.ring - 1, pa = p0 < Cpos ? p0 : Cpos;
    const float *qrow = q + (int64_t)i * n_head * hd + (int64_t)h * hd;
    float qv[NC_MAX], qa[NC_MAX], acc[NC_MAX];
#pragma unroll
    for (int c = 0; c < NC_MAX; c++) {
        const int d = lane + 32 * c;
        const float raw = c < nc && d < hd ? qrow[d] : 0.0f;
        qv[c] = qa[c] = raw;
        if (strm && !neox) {                         /* q at p0 (window keys), min(p0, C) (sinks) */
            const float other = __shfl_xor_sync(0xffffffffu, raw, 1);
            if (d < rope_dim) {
                const float x0 = d & 1 ? other : raw, x1 = d & 1 ? raw : other;
                qv[c] = moa_cu_rope_elem(x0, x1, d & 1, (double)p0 * inv_freq[d / 2]);
                qa[c] = moa_cu_rope_elem(x0, x1, d & 1, (double)pa * inv_freq[d / 2]);
            }
        } else if (strm && d < rope_dim) {
            qv[c] = moa_cu_rope_at(qrow, d, rope_dim, 1, (double)p0, inv_freq);
            qa[c] = moa_cu_rope_at(qrow, d, rope_dim, 1, (double)pa, inv_freq);
        }
        acc[c] = 0.0f;
    }
    moa_cu_softmax st = moa_cu_softmax_init();
    for (int64_t t0 = s0 + warp * 32; t0 < s1; t0 += 4 * 32) {
        const int bk = (int)(s1 - t0 < 32 ? s1 - t0 : 32);
        float mys = -INFINITY;
        for (int j = 0; j < bk; j++) {
            const int64_t pos = moa_cu_slot_pos(t0 + j, p0 + 1, U.sink, U.ring);
            if (pos < 0 || !moa_mask_visible(p0, pos, U.sink, W)) continue;  /* warp-uniform */
            const uint8_t *kr = K + (t0 + j) * krow;
            const int sink_key = pos < U.sink;
            float part_dot = 0.0f;
#pragma unroll
            for (int c = 0; c < NC_MAX; c++) {
                const int d = lane + 32 * c;
                float kv = c < nc && d < hd ? moa_cu_kv_value(kt, kr, d) : 0.0f;
                if (strm && !neox) {                 /* the key at its own position */
                    const float other = __shfl_xor_sync(0xffffffffu, kv, 1);
                    if (d < rope_dim)
                        kv = moa_cu_rope_elem(d & 1 ? other : kv, d & 1 ? kv : other, d & 1,
                                              (double)pos * inv_freq[d / 2]);
                } else if (strm && d < rope_dim) {
                    kv = kv_rope_at(kt, kr, d, rope_dim, 1, (double)pos, inv_freq);
                }
                part_dot += (sink_key ? qa[c] : qv[c]) * kv;
            }
            const float sj = scale * moa_warp_sum(part_dot);
            if (lane == j) mys = sj;
        }
        const float tmax = moa_warp_max(mys);
        if (tmax == -INFINITY) continue;
        float corr;
        const float mn = moa_cu_softmax_step(&st, tmax, &corr);
        const float pj = mys == -INFINITY ? 0.0f : expf(mys - mn);
        st.l += moa_warp_sum(pj);
#pragma unroll
        for (int c = 0; c < NC_MAX; c++) acc[c] *= corr;
        for (int j = 0; j < bk; j++) {
            const float pb = __shfl_sync(0xffffffffu, pj, j);
            if (pb == 0.0f) continue;
            const uint8_t *vr = V + (t0 + j) * vrow;
#pragma unroll
            for (int c = 0; c < NC_MAX; c++)
                if (c < nc && lane + 32 * c < hd) acc[c] += pb * moa_cu_kv_value(vt, vr, lane + 32 * c);
        }
    }
    /* merge the 4 warps: O = sum_w e^(m_w - M) acc_w / sum_w e^(m_w - M) l_w */
    if (lane == 0) { red_m[warp] = st.m; red_l[warp] = st.l; }
#pragma unroll
    for (int c = 0; c < NC_MAX; c++)
        if (c < nc && lane + 32 * c < hd) red_o[warp][lane + 32 * c] = acc[c];
    __syncthreads();
    moa_cu_softmax tot = moa_cu_softmax_init();
    float w[4];
    for (int x = 0; x < 4; x++) {
        moa_cu_softmax sx;
        sx.m = red_m[x];
        sx.l = red_l[x];
        float wa, wb;
        tot = moa_cu_softmax_merge(tot, sx, &wa, &wb);
        for (int y = 0; y < x; y++) w[y] *= wa;
        w[x] = wb;
    }
    const float inv = tot.l > 0.0f ? 1.0f / tot.l : 0.0f;
    float *dst = parts > 1 ? part + (((int64_t)i * n_head + h) * parts + pi) * (hd + 1)
                           : o + (int64_t)i * n_head * hd + (int64_t)h * hd;
    for (int d = threadIdx.x; d < hd; d += blockDim.x) {
        float a = 0.0f;
        for (int x = 0; x < 4; x++) a += w[x] * red_o[x][d];
        dst[d] = a * inv;
    }
    if (parts > 1 && threadIdx.x == 0) dst[hd] = moa_cu_softmax_lse(tot);
}

/* Split-K decode: parts of at least this many slots (the emulator test lowers it). */
#ifndef DECODE_PART_MIN
#define DECODE_PART_MIN 512
#endif

/* o = sum_p e^(lse_p - L) o_p / sum_p e^(lse_p - L), L = max_p lse_p (zero if all empty). */
__global__ void k_decode_merge(const moa_cu_unit *units, const float *part, int parts, int hd,
                               int G, int n_head, float *o) {
    const int h = blockIdx.x, i = blockIdx.y;
    if (units[h / G].kind == 2) return;
    const float *pb = part + ((int64_t)i * n_head + h) * parts * (hd + 1);
    float L = -INFINITY;
    for (int p = 0; p < parts; p++) L = fmaxf(L, pb[p * (hd + 1) + hd]);
    for (int d = threadIdx.x; d < hd; d += blockDim.x) {
        float a = 0.0f, den = 0.0f;
        if (L != -INFINITY)
            for (int p = 0; p < parts; p++) {
                const float l = pb[p * (hd + 1) + hd];
                if (l == -INFINITY) continue;
                const float w = expf(l - L);
                den += w;
                a += w * pb[p * (hd + 1) + d];
            }
        o[(int64_t)i * n_head * hd + (int64_t)h * hd + d] = den > 0.0f ? a / den : 0.0f;
    }
}

/* ================================== the API calls ======================================== */

/* Absolute mode with rope_dim > 0: q, k of the call rotated into c->rot at positions pos0 + t
 * (pos NULL) or pos[t] (device); *qr, *kr point there. Otherwise they stay the caller's. */
static moa_status rotate_call(moa_cuda_cache *c, const float *q, const float *k, int n,
                              int64_t pos0, const int64_t *pos, const float **qr,
                              const float **kr) {
    *qr = q;
    *kr = k;
    if (c->pos_mode != 0 || c->rope_dim == 0) return MOA_OK;
    moa_cuda_ctx *x = c->ctx;
    const size_t nq = (size_t)n * c->n_head * c->hd, nk = (size_t)n * c->n_kv * c->hd;
    if (nq + nk > c->rot_cap) {
        moa_cuda_free(x, c->rot);
        c->rot = NULL;
        c->rot_cap = 0;
        MOA_TRY(moa_cuda_alloc(x, (nq + nk) * sizeof(float), (void **)&c->rot));
        c->rot_cap = nq + nk;
    }
    CU_TRY(cudaMemcpyAsync(c->rot, q, nq * sizeof(float), cudaMemcpyDeviceToDevice, x->stream), "rope copy");
    CU_TRY(cudaMemcpyAsync(c->rot + nq, k, nk * sizeof(float), cudaMemcpyDeviceToDevice, x->stream), "rope copy");
    MOA_TRY(moa_cuda_rope(x, c->rot, n, c->n_head, c->hd, c->rope_dim, c->rope_base, pos0, pos, 0, c->neox));
    MOA_TRY(moa_cuda_rope(x, c->rot + nq, n, c->n_kv, c->hd, c->rope_dim, c->rope_base, pos0, pos, 0, c->neox));
    *qr = c->rot;
    *kr = c->rot + nq;
    return MOA_OK;
}

static int layer_has_kind(const moa_cuda_cache *c, int layer, int want_linear) {
    for (int u = 0; u < c->n_kv; u++)
        if ((c->units_h[(size_t)layer * c->n_kv + u].kind == 2) == want_linear) return 1;
    return 0;
}

moa_status moa_cuda_attn_prefill(moa_cuda_cache *c, int seq, int layer, const float *q,
                                 const float *k, const float *v, int n, float *out) {
    static const char fn[] = "moa_cuda_attn_prefill";
    if (!c || !q || !k || !v || !out) return moa_err(MOA_ERR_INVALID_ARG, "%s: NULL cache or buffer", fn);
    if (seq < 0 || seq >= c->n_seq || layer < 0 || layer >= c->n_layer || n < 0)
        return moa_err(MOA_ERR_INVALID_ARG, "%s: seq=%d (n_seq %d), layer=%d (n_layer %d), n_tokens=%d "
                       "out of range", fn, seq, c->n_seq, layer, c->n_layer, n);
    if (n == 0) return MOA_OK;
    int64_t *pos = &c->pos[(size_t)seq * c->n_layer + layer];
    const int64_t p0 = *pos;
    MOA_TRY(check_range(c, seq, layer, p0, n, fn));
    moa_cuda_ctx *x = c->ctx;
    const int hd = c->hd;
    const moa_cu_unit *units = c->units_d + (size_t)layer * c->n_kv;
    const int64_t ldq = (int64_t)c->n_head * hd, ldk = (int64_t)c->n_kv * hd;
    if (layer_has_kind(c, layer, 0)) {
        const float *qr, *kr;
        MOA_TRY(rotate_call(c, q, k, n, p0, NULL, &qr, &kr));
        staged_rows rows;
        MOA_TRY(stage_rows(c, kr, v, n, &rows));
        moa_cu_band_params p;
        memset(&p, 0, sizeof p);
        p.hd = hd; p.G = c->group; p.n_q = n;
        p.q = qr; p.ldq = ldq; p.o = out; p.ldo = ldq;
        p.qpos0 = p0;
        p.k = rows.k; p.v = rows.v; p.kt = c->kt; p.vt = c->vt;
        p.k_t = rows.k_t; p.k_h = rows.k_h; p.v_t = rows.v_t; p.v_h = rows.v_h;
        p.kpos0 = p0; p.n_k = n;
        p.rope_dim = c->pos_mode == 1 ? c->rope_dim : 0;
        p.inv_freq = c->inv_freq_d;
        p.neox = c->neox;
        p.units = units;
        p.qwin = c->qwin_d ? c->qwin_d + (size_t)layer * c->n_head : NULL;
        p.kc = c->k + (size_t)seq * c->slots_per_seq * c->krow;
        p.vc = c->v + (size_t)seq * c->slots_per_seq * c->vrow;
        p.krow = c->krow; p.vrow = c->vrow;
        p.cached = p0;
        p.scale = c->scale;
        MOA_TRY(moa_cu_band_fwd(x, &p, c->n_head, fn));
        /* append after every query has read the cache */
        MOA_CU_LAUNCH(k_store, dim3((unsigned)n, (unsigned)c->n_kv), 64, 0, x->stream,
            units, c->k, c->v, c->slots_per_seq, c->krow, c->vrow, rows, n, NULL, NULL, seq, p0);
        CU_LAUNCHED(fn);
    }
    if (layer_has_kind(c, layer, 1)) {
        const size_t smem = lin_smem(hd);
        MOA_TRY(moa_cuda_smem_optin(x, (const void *)k_linear_prefill, smem, fn));
        MOA_CU_LAUNCH(k_linear_prefill, dim3((unsigned)c->n_kv, (unsigned)moa_cu_tiles(hd, LIN_E)), 256, smem,
                           x->stream, units, c->state, c->states_per_seq, seq, hd, c->group, q,
                                        ldq, k, v, ldk, out, ldq, n);
        CU_LAUNCHED(fn);
    }
    *pos = p0 + n;
    return MOA_OK;
}

moa_status moa_cuda_attn_decode(moa_cuda_cache *c, int layer, const int *seqs, int n,
                                const float *q, const float *k, const float *v, float *out) {
    static const char fn[] = "moa_cuda_attn_decode";
    if (!c || !q || !k || !v || !out) return moa_err(MOA_ERR_INVALID_ARG, "%s: NULL cache or buffer", fn);
    if (layer < 0 || layer >= c->n_layer || n < 0 || n > c->n_seq)
        return moa_err(MOA_ERR_INVALID_ARG, "%s: layer=%d (n_layer %d) or n=%d (n_seq %d) out of range",
                       fn, layer, c->n_layer, n, c->n_seq);
    if (n == 0) return MOA_OK;
    if (n > 65535) return moa_err(MOA_ERR_INVALID_ARG, "%s: %d rows > 65535 per call", fn, n);
    for (int i = 0; i < n; i++) {
        const int s = seqs ? seqs[i] : i;
        if (s < 0 || s >= c->n_seq)
            return moa_err(MOA_ERR_INVALID_ARG, "%s: seqs[%d]=%d out of range [0, %d)", fn, i, s, c->n_seq);
        for (int j = 0; j < i; j++)
            if (c->row_seq_h[j] == s)
                return moa_err(MOA_ERR_INVALID_ARG, "%s: sequence %d appears twice", fn, s);
        c->row_seq_h[i] = s;
        c->row_pos_h[i] = c->pos[(size_t)s * c->n_layer + layer];
        MOA_TRY(check_range(c, s, layer, c->row_pos_h[i], 1, fn));
    }
    moa_cuda_ctx *x = c->ctx;
    const int hd = c->hd, G = c->group;
    const moa_cu_unit *units = c->units_d + (size_t)layer * c->n_kv;
    MOA_TRY(moa_cuda_upload(x, c->row_seq_d, c->row_seq_h, (size_t)n * sizeof(int)));
    MOA_TRY(moa_cuda_upload(x, c->row_pos_d, c->row_pos_h, (size_t)n * sizeof(int64_t)));
    if (layer_has_kind(c, layer, 0)) {
        /* split-K: enough blocks for ~2 waves when rows x heads are few */
        int64_t max_slots = 0;
        for (int u = 0; u < c->n_kv; u++) {
            const moa_cu_unit *U = &c->units_h[(size_t)layer * c->n_kv + u];
            if (U->kind != 2 && U->sink + U->ring > max_slots) max_slots = U->sink + U->ring;
        }
        int parts = 1;
        const int64_t blocks = (int64_t)n * c->n_head;
        if (blocks < 2 * x->sm_count && max_slots >= 2 * DECODE_PART_MIN) {
            parts = (int)((2 * x->sm_count + blocks - 1) / blocks);
            if (parts > max_slots / DECODE_PART_MIN) parts = (int)(max_slots / DECODE_PART_MIN);
            if (parts < 1) parts = 1;
        }
        if (parts > 1) {
            const size_t need = (size_t)n * c->n_head * parts * (hd + 1);
            if (need > c->part_cap) {
                moa_cuda_free(x, c->part);
                c->part = NULL;
                c->part_cap = 0;
                MOA_TRY(moa_cuda_alloc(x, need * sizeof(float), (void **)&c->part));
                c->part_cap = need;
            }
        }
        const float *qr, *kr;
        MOA_TRY(rotate_call(c, q, k, n, 0, c->row_pos_d, &qr, &kr));
        const int strm = c->pos_mode == 1;
        staged_rows rows;
        MOA_TRY(stage_rows(c, kr, v, n, &rows));
        MOA_CU_LAUNCH(k_store, dim3((unsigned)n, (unsigned)c->n_kv), 64, 0, x->stream,
            units, c->k, c->v, c->slots_per_seq, c->krow, c->vrow, rows, n, c->row_seq_d, c->row_pos_d, 0, 0);
        CU_LAUNCHED(fn);
        MOA_CU_LAUNCH(k_decode, dim3((unsigned)c->n_head, (unsigned)n, (unsigned)parts), 128, 0, x->stream,
            units, c->k, c->v, c->kt, c->vt, c->krow, c->vrow, c->slots_per_seq, c->row_seq_d, c->row_pos_d,
            c->qwin_d ? c->qwin_d + (size_t)layer * c->n_head : NULL, hd, G, c->n_head, qr,
            out, c->part, parts, c->scale, strm ? c->rope_dim : 0, c->inv_freq_d, c->neox);
        CU_LAUNCHED(fn);
        if (parts > 1) {
            MOA_CU_LAUNCH(k_decode_merge, dim3((unsigned)c->n_head, (unsigned)n), 128, 0, x->stream,
                units, c->part, parts, hd, G, c->n_head, out);
            CU_LAUNCHED(fn);
        }
    }
    if (layer_has_kind(c, layer, 1)) {
        const int threads = (hd + 31) / 32 * 32;
        const size_t smem = sizeof(float) * (size_t)(G + 1) * hd;
        MOA_TRY(moa_cuda_smem_optin(x, (const void *)k_linear_decode, smem, fn));
        MOA_CU_LAUNCH(k_linear_decode, dim3((unsigned)n, (unsigned)c->n_kv), threads, smem, x->stream,
            units, c->state, c->states_per_seq, c->row_seq_d, hd, G, c->n_kv, q, k, v, out);
        CU_LAUNCHED(fn);
    }
    for (int i = 0; i < n; i++) c->pos[(size_t)c->row_seq_h[i] * c->n_layer + layer]++;
    return MOA_OK;
}
