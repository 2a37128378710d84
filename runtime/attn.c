/* attn.c - attention over the per-head caches: prefill (chunks) and batched decode.
 *
 * For each (sequence, KV head) the keys a query can see come from at most five segments of
 * consecutive positions: the cached sinks, the two runs of the ring (before and after the
 * wrap), and the new tokens (split at the sink boundary). The kernels (moa/attn.h)
 * apply the one mask over those segments; the new tokens are written to the cache only after
 * every query has been answered, so a chunk longer than the ring still sees its own keys.
 * Caches on another device go to its table (cache-device.h) with the device's buffers.
 *
 * Positions: absolute mode rotates q, k once at their absolute positions and caches rotated
 * keys. Streaming mode caches raw keys; the query at position i with C = sink + ring - 1 sees
 * sinks at their own positions j and its window keys at a - shift(i), shift(i) = max(0, i-C),
 * and sits itself at i - shift(i) = min(i, C) (StreamingLLM: positions never exceed C).
 * RoPE scores depend only on position differences, so window keys are rotated at a - b with
 * one offset b per query tile and the query at i - b (q), while sinks keep j and meet the
 * query rotated at min(i, C) (q_alt).
 *
 * Storage types: the call's new k and v rows are converted to the cache's types first
 * (stage_rows), so attention reads the same rounded values for cached and new tokens, and
 * appending copies bytes. The kernels widen stored rows to f32 per block of keys. */
#include "cache.h"

#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "moa/attn.h"      /* kernels/cpu */
#include "moa/common.h"

/* The new tokens of one sequence for one layer. */
typedef struct {
    int seq;
    int64_t p0;          /* position of the first new token */
    int n;
    const float *qr;     /* q for softmax units: rotated (absolute mode) or raw; [n][n_head*hd] */
    const float *kr;     /* k likewise; [n][n_kv*hd]; this is what the cache stores */
    const float *q, *k;  /* the caller's q, k (linear units; streaming rotation source) */
    const float *v;      /* [n][n_kv*hd] */
    float *o;            /* [n][n_head*hd] */
    /* the new k (kr) and v rows in the cache's storage types: token t, KV head h at
       ks + t*ks_t + h*ks_h (likewise vs); these are what attention reads and the cache keeps */
    const unsigned char *ks, *vs;
    size_t ks_t, ks_h, vs_t, vs_h;   /* bytes */
} attn_job;

/* Where the call's stored-type rows live: F32 reads the float rows in place, other types are
 * converted into c->kvio ([n][n_kv] key rows, then [n][n_kv] value rows). */
typedef struct {
    const unsigned char *k, *v;
    size_t k_t, k_h, v_t, v_h;
} staged_rows;

/* Convert the call's n token rows of kr and v to the storage types (round to nearest even; the
 * same bytes on every ISA, moa/attn.h). */
static moa_status stage_rows(moa_cache *c, const float *kr, const float *v, int n, staged_rows *out) {
    const int hd = c->hd, nkv = c->n_kv;
    const size_t ldk = (size_t)nkv * hd;
    const moa_attn_kv_type kt = MOA_CACHE_KT(c), vt = MOA_CACHE_VT(c);
    *out = (staged_rows){(const unsigned char *)kr, (const unsigned char *)v, ldk * sizeof(float),
                         hd * sizeof(float), ldk * sizeof(float), hd * sizeof(float)};
    if (kt == MOA_ATTN_KV_F32 && vt == MOA_ATTN_KV_F32) return MOA_OK;
    const size_t kb = (size_t)n * nkv * c->krow;
    MOA_TRY(moa_cache_reserve_kvio(c, kb + (size_t)n * nkv * c->vrow));
    unsigned char *K = c->kvio, *V = c->kvio + kb;
#pragma omp parallel for schedule(static) if (n > 16)
    for (int t = 0; t < n; t++)
        for (int h = 0; h < nkv; h++) {
            if (kt != MOA_ATTN_KV_F32)
                moa_attn_kv_store_row(kt, K + ((size_t)t * nkv + h) * c->krow, kr + t * ldk + (size_t)h * hd, hd);
            if (vt != MOA_ATTN_KV_F32)
                moa_attn_kv_store_row(vt, V + ((size_t)t * nkv + h) * c->vrow, v + t * ldk + (size_t)h * hd, hd);
        }
    if (kt != MOA_ATTN_KV_F32) { out->k = K; out->k_t = (size_t)nkv * c->krow; out->k_h = c->krow; }
    if (vt != MOA_ATTN_KV_F32) { out->v = V; out->v_t = (size_t)nkv * c->vrow; out->v_h = c->vrow; }
    return MOA_OK;
}

static void job_rows(attn_job *jb, const staged_rows *r, int row) {
    jb->ks = r->k + (size_t)row * r->k_t;
    jb->vs = r->v + (size_t)row * r->v_t;
    jb->ks_t = r->k_t; jb->ks_h = r->k_h;
    jb->vs_t = r->v_t; jb->vs_h = r->v_h;
}

/* Decode split-K: at least this many keys per part; no threads below this many query x key
 * pairs (decode and prefill). */
#define DECODE_PART_MIN 512
#define DECODE_PAR_MIN 4096

static inline int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }
static inline int64_t max64(int64_t a, int64_t b) { return a > b ? a : b; }

/* Floats of per-thread scratch a streaming task needs (trimmed rotated keys, q and q_alt). */
static size_t tls_per_thread(const moa_cache *c) {
    return ((size_t)c->max_slots + MOA_CACHE_TILE) * c->hd +
           2 * (size_t)MOA_CACHE_TILE * c->group * c->hd;
}

/* Keep the rows of `in` whose positions some query in [i0, i1] can see:
 * [0, min(sink, i1+1)) u [i0 - W + 1, i1]. Writes at most 2 segments; returns the count. */
static int seg_trim(const moa_attn_seg *in, int64_t i0, int64_t i1, int64_t sink, int64_t w,
                    moa_attn_seg *out) {
    int64_t lo[2], hi[2];
    int niv = 0, nout = 0;
    const int64_t ahi = min64(sink, i1 + 1);
    if (ahi > 0) { lo[niv] = 0; hi[niv] = ahi; niv++; }
    if (w > 0) {
        const int64_t blo = max64(0, i0 - w + 1);
        if (niv && blo <= hi[0]) hi[0] = i1 + 1;
        else { lo[niv] = blo; hi[niv] = i1 + 1; niv++; }
    }
    for (int v = 0; v < niv; v++) {
        const int64_t plo = max64(lo[v], in->pos0), phi = min64(hi[v], in->pos0 + in->n);
        if (plo >= phi) continue;
        moa_attn_seg s = *in;
        s.k = (const char *)in->k + (size_t)(plo - in->pos0) * in->kstride;
        s.v = (const char *)in->v + (size_t)(plo - in->pos0) * in->vstride;
        s.pos0 = plo;
        s.n = (int)(phi - plo);
        out[nout++] = s;
    }
    return nout;
}

/* Key subset of a split-K decode part: sink positions (< sink) only if `sinks`, other
 * positions only inside [lo, hi). */
typedef struct { int sinks; int64_t lo, hi; } key_range;

/* The keys a softmax unit's queries of the job may see, as segments of consecutive
 * positions: the cached sinks, the ring's one or two runs (before and after the wrap), then the
 * job's new tokens split at the sink boundary. Writes at most 5; returns the count. */
static int unit_segs(const moa_cache *c, const moa_cache_unit_rt *U, const attn_job *jb, int kvh,
                     moa_attn_seg *segs) {
    const int64_t p0 = jb->p0, S = U->sink, R = U->ring;
    const size_t base = (size_t)jb->seq * c->slots_per_seq + U->off;   /* first slot */
    const unsigned char *Kc = c->k + base * c->krow, *Vc = c->v + base * c->vrow;  /* [sink + ring] rows */
    const moa_attn_kv_type kt = MOA_CACHE_KT(c), vt = MOA_CACHE_VT(c);
#define CACHE_SEG(slot, pos, len, alt) \
    (moa_attn_seg){.k = Kc + (size_t)(slot) * c->krow, .v = Vc + (size_t)(slot) * c->vrow, \
                   .kstride = c->krow, .vstride = c->vrow, .pos0 = (pos), .n = (int)(len), \
                   .alt_q = (alt), .kt = kt, .vt = vt}
    int ns = 0;
    const int64_t n_sink = min64(S, p0);
    if (n_sink > 0) segs[ns++] = CACHE_SEG(0, 0, n_sink, 1);
    if (R > 0) {
        const int64_t lo = max64(S, p0 - R);       /* oldest cached position still in the ring */
        if (lo < p0) {
            const int64_t slot = S + (lo - S) % R;
            const int64_t len1 = min64(p0 - lo, S + R - slot);
            segs[ns++] = CACHE_SEG(slot, lo, len1, 0);
            if (len1 < p0 - lo) segs[ns++] = CACHE_SEG(S, lo + len1, p0 - lo - len1, 0);
        }
    }
#undef CACHE_SEG
    const unsigned char *kk = jb->ks + kvh * jb->ks_h, *vv = jb->vs + kvh * jb->vs_h;
    const int n_new_sink = p0 < S ? (int)min64(jb->n, S - p0) : 0;
    if (n_new_sink > 0)
        segs[ns++] = (moa_attn_seg){.k = kk, .v = vv, .kstride = jb->ks_t, .vstride = jb->vs_t,
                                    .pos0 = p0, .n = n_new_sink, .alt_q = 1, .kt = kt, .vt = vt};
    if (jb->n > n_new_sink)
        segs[ns++] = (moa_attn_seg){.k = kk + n_new_sink * jb->ks_t, .v = vv + n_new_sink * jb->vs_t,
                                    .kstride = jb->ks_t, .vstride = jb->vs_t, .pos0 = p0 + n_new_sink,
                                    .n = jb->n - n_new_sink, .alt_q = 0, .kt = kt, .vt = vt};
    return ns;
}

/* Clip the segments to the keys of a split-K part: sink segments only in the part that takes
 * the sinks, the others cut to [kr->lo, kr->hi). In place; returns the new count. */
static int clip_segs(moa_attn_seg *segs, int ns, const key_range *kr) {
    int m = 0;
    for (int x = 0; x < ns; x++) {
        moa_attn_seg sg = segs[x];
        if (sg.alt_q) {
            if (kr->sinks) segs[m++] = sg;
            continue;
        }
        const int64_t lo = max64(kr->lo, sg.pos0), hi = min64(kr->hi, sg.pos0 + sg.n);
        if (lo >= hi) continue;
        sg.k = (const char *)sg.k + (size_t)(lo - sg.pos0) * sg.kstride;
        sg.v = (const char *)sg.v + (size_t)(lo - sg.pos0) * sg.vstride;
        sg.pos0 = lo;
        sg.n = (int)(hi - lo);
        segs[m++] = sg;
    }
    return m;
}

/* Streaming mode, for the tile of queries t0 .. t0+nt-1: the keys some query of the tile can
 * see (seg_trim: at most 2 segments per input segment, into tr), widened to f32 and rotated in
 * tls (window keys at pos - b with the tile's offset b, sinks at their own positions), and the
 * tile's queries rotated twice (q at i - b, q_alt at min(i, C)); *a is pointed at them. */
static void stream_tile(const moa_cache *c, const moa_cache_unit_rt *U, const attn_job *jb, int kvh,
                        int t0, int nt, float *tls, const moa_attn_seg *segs, int ns,
                        moa_attn_seg *tr, moa_attn_band_args *a) {
    const int hd = c->hd, G = c->group;
    const size_t ldq = (size_t)c->n_head * hd;
    const int64_t S = U->sink, R = U->ring;
    const int64_t i0 = jb->p0 + t0, i1 = i0 + nt - 1;
    const int64_t C = S + R - 1;               /* largest cache position */
    const int64_t b = max64(0, i0 - C);        /* this tile's position offset */
    int ntr = 0;
    size_t used = 0;
    for (int s = 0; s < ns; s++) {
        const int m = seg_trim(&segs[s], i0, i1, S, U->window, tr + ntr);
        for (int x = ntr; x < ntr + m; x++) {
            float *dst = tls + used * hd;
            for (int r = 0; r < tr[x].n; r++) {   /* widen the stored raw key, then rotate */
                const int64_t pos = tr[x].pos0 + r;
                float *row = dst + (size_t)r * hd;
                moa_attn_kv_load_row(tr[x].kt, row, (const char *)tr[x].k + (size_t)r * tr[x].kstride, hd);
                moa_cache_rope(c, row, row, tr[x].alt_q ? pos : pos - b);
            }
            tr[x].k = dst;
            tr[x].kstride = (size_t)hd * sizeof(float);
            tr[x].kt = MOA_ATTN_KV_F32;
            used += (size_t)tr[x].n;
        }
        ntr += m;
    }
    float *qa = tls + used * hd, *qb = qa + (size_t)nt * G * hd;  /* [nt][G*hd] each */
    for (int t = 0; t < nt; t++)
        for (int g = 0; g < G; g++) {
            const float *src = jb->q + (size_t)(t0 + t) * ldq + (size_t)(kvh * G + g) * hd;
            const int64_t i = i0 + t;
            moa_cache_rope(c, qa + ((size_t)t * G + g) * hd, src, i - b);
            moa_cache_rope(c, qb + ((size_t)t * G + g) * hd, src, min64(i, C));
        }
    a->q = qa;
    a->q_alt = qb;
    a->ldq = (size_t)G * hd;
    a->segs = tr;
    a->n_segs = ntr;
}

/* The band kernel over a unit's group: all heads at once with the unit's window, or (q-head
 * granularity) one head at a time with its own window. */
static void band_unit(const moa_cache *c, const moa_cache_unit_rt *U, int layer, int kvh,
                      const moa_attn_band_args *a) {
    if (U->uniform_q) {
        moa_attn_band(a);
        return;
    }
    const int hd = c->hd, G = c->group;
    for (int g = 0; g < G; g++) {              /* q-head granularity: one window per head */
        moa_attn_band_args ag = *a;
        ag.n_group = 1;
        ag.q += (size_t)g * hd;
        if (ag.q_alt) ag.q_alt += (size_t)g * hd;
        ag.o += (size_t)g * hd;
        if (ag.lse) ag.lse += g;
        ag.window = c->q_window[(size_t)layer * c->n_head + (size_t)kvh * G + g];
        moa_attn_band(&ag);
    }
}

/* Softmax unit, queries t0 .. t0+nt-1 of the job. With `kr` (decode split-K), only that key
 * subset is attended and the result goes to o_part ([G][hd]) and lse ([G]). */
static void softmax_task(const moa_cache *c, int layer, const attn_job *jb, int kvh, int t0,
                         int nt, float *tls, const key_range *kr, float *o_part, float *lse) {
    const moa_cache_unit_rt *U = moa_cache_unit_at(c, layer, kvh);
    const int hd = c->hd, G = c->group;
    const size_t ldq = (size_t)c->n_head * hd;
    moa_attn_seg segs[5];
    int ns = unit_segs(c, U, jb, kvh, segs);
    if (kr) ns = clip_segs(segs, ns, kr);   /* clip the segments to this part's keys */

    moa_attn_band_args a = {
        .hd = hd, .n_group = G, .n_q = nt,
        .q = jb->qr + (size_t)t0 * ldq + (size_t)kvh * G * hd, .q_alt = NULL, .ldq = ldq,
        .o = jb->o + (size_t)t0 * ldq + (size_t)kvh * G * hd, .ldo = ldq,
        .qpos0 = jb->p0 + t0, .sink = U->sink, .window = U->window, .scale = c->p.scale,
        .segs = segs, .n_segs = ns, .lse = lse};
    if (o_part) {
        a.o = o_part;
        a.ldo = (size_t)G * hd;
    }
    moa_attn_seg tr[10];
    if (c->p.pos_mode == MOA_POS_STREAMING) stream_tile(c, U, jb, kvh, t0, nt, tls, segs, ns, tr, &a);
    band_unit(c, U, layer, kvh, &a);
}

/* Linear unit: the whole job (state carries over between chunks and steps). */
static void linear_task(const moa_cache *c, int layer, const attn_job *jb, int kvh) {
    const moa_cache_unit_rt *U = moa_cache_unit_at(c, layer, kvh);
    const int hd = c->hd, G = c->group;
    const size_t ldq = (size_t)c->n_head * hd, ldk = (size_t)c->n_kv * hd;
    moa_linear_args a = {
        .hd = hd, .n_group = G, .n_t = jb->n,
        .q = jb->q + (size_t)kvh * G * hd, .ldq = ldq,
        .k = jb->k + (size_t)kvh * hd, .ldk = ldk,
        .v = jb->v + (size_t)kvh * hd, .ldv = ldk,
        .o = jb->o + (size_t)kvh * G * hd, .ldo = ldq,
        .state = c->state + ((size_t)jb->seq * c->states_per_seq + U->off) * hd * hd,
        .decay = U->decay};
    moa_linear(&a);
}

/* Append the job's tokens to a softmax unit: sinks, then only the last `ring` positions. */
static void store_task(moa_cache *c, int layer, const attn_job *jb, int kvh) {
    const moa_cache_unit_rt *U = moa_cache_unit_at(c, layer, kvh);
    const size_t base = (size_t)jb->seq * c->slots_per_seq + U->off;   /* first slot */
    const int64_t S = U->sink, R = U->ring, end = jb->p0 + jb->n;
    for (int t = 0; t < jb->n; t++) {
        const int64_t a = jb->p0 + t;
        int64_t slot;
        if (a < S) slot = a;
        else if (R > 0 && a >= end - R) slot = S + (a - S) % R;
        else continue;
        memcpy(c->k + (base + slot) * c->krow, jb->ks + t * jb->ks_t + kvh * jb->ks_h, c->krow);
        memcpy(c->v + (base + slot) * c->vrow, jb->vs + t * jb->vs_t + kvh * jb->vs_h, c->vrow);
    }
}

static moa_status check_range(const moa_cache *c, int seq, int layer, int64_t p0, int n) {
    if (c->p.pos_mode == MOA_POS_STREAMING || !c->layer_dense[layer] || p0 + n <= c->n_ctx)
        return MOA_OK;
    int kvh = 0;
    while (moa_cache_unit_at(c, layer, kvh)->kind != MOA_UNIT_DENSE) kvh++;
    return moa_err(MOA_ERR_RANGE,
                   "attention: sequence %d would reach %lld tokens but layer %d kv head %d is dense "
                   "and holds n_ctx=%lld; create the cache for a longer context or use streaming mode",
                   seq, (long long)(p0 + n), layer, kvh, (long long)c->n_ctx);
}

/* Absolute mode with rope_dim > 0: rotate the call's q, k rows into c->io. rows[i] = position. */
static moa_status rotate_rows(moa_cache *c, const float *q, const float *k, int n,
                              const int64_t *pos_of_row, int64_t p0, float **qr, float **kr) {
    const size_t ldq = (size_t)c->n_head * c->hd, ldk = (size_t)c->n_kv * c->hd;
    MOA_TRY(moa_cache_reserve_io(c, (size_t)n * (ldq + ldk)));
    float *Q = c->io, *K = c->io + (size_t)n * ldq;
#pragma omp parallel for schedule(static) if (n > 16)
    for (int t = 0; t < n; t++) {
        const int64_t pos = pos_of_row ? pos_of_row[t] : p0 + t;
        for (int h = 0; h < c->n_head; h++)
            moa_cache_rope(c, Q + t * ldq + (size_t)h * c->hd, q + t * ldq + (size_t)h * c->hd, pos);
        for (int h = 0; h < c->n_kv; h++)
            moa_cache_rope(c, K + t * ldk + (size_t)h * c->hd, k + t * ldk + (size_t)h * c->hd, pos);
    }
    *qr = Q;
    *kr = K;
    return MOA_OK;
}

static moa_status reserve_tls(moa_cache *c, int nthr) {
    if (c->p.pos_mode != MOA_POS_STREAMING) return MOA_OK;
    return moa_cache_reserve_tls(c, (size_t)nthr * tls_per_thread(c));
}

moa_status moa_attn_prefill(moa_cache *c, int seq, int layer, const float *q, const float *k,
                            const float *v, int n, float *out) {
    if (!c || !q || !k || !v || !out)
        return moa_err(MOA_ERR_INVALID_ARG, "attn_prefill: NULL cache or buffer");
    if (seq < 0 || seq >= c->n_seq || layer < 0 || layer >= c->n_layer || n < 0)
        return moa_err(MOA_ERR_INVALID_ARG,
                       "attn_prefill: seq=%d (n_seq %d), layer=%d (n_layer %d), n_tokens=%d out of range",
                       seq, c->n_seq, layer, c->n_layer, n);
    if (c->dev) return c->dev->prefill(c->dc, seq, layer, q, k, v, n, out);   /* device buffers */
    if (n == 0) return MOA_OK;
    int64_t *pos = &c->pos[(size_t)seq * c->n_layer + layer];
    const int64_t p0 = *pos;
    MOA_TRY(check_range(c, seq, layer, p0, n));

    attn_job jb = {.seq = seq, .p0 = p0, .n = n, .qr = q, .kr = k, .q = q, .k = k, .v = v, .o = out};
    if (c->p.pos_mode == MOA_POS_ABSOLUTE && c->p.rope_dim > 0) {
        float *qr, *kr;
        MOA_TRY(rotate_rows(c, q, k, n, NULL, p0, &qr, &kr));
        jb.qr = qr;
        jb.kr = kr;
    }
    staged_rows rows;
    MOA_TRY(stage_rows(c, jb.kr, v, n, &rows));
    job_rows(&jb, &rows, 0);
    const int nthr = omp_get_max_threads();
    MOA_TRY(reserve_tls(c, nthr));

    const int ntile = (n + MOA_CACHE_TILE - 1) / MOA_CACHE_TILE;
    const int ntask = c->n_kv * ntile;
    int64_t work = 0;   /* query x key pairs (x group), roughly; small calls stay serial */
    for (int kvh = 0; kvh < c->n_kv; kvh++) {
        const moa_cache_unit_rt *U = moa_cache_unit_at(c, layer, kvh);
        const int64_t keys = U->kind == MOA_UNIT_LINEAR ? c->hd : min64(p0 + n, U->sink + U->ring + n);
        work += keys * n;
    }
    const moa_cache *cc = c;
#pragma omp parallel for schedule(dynamic, 1) num_threads(nthr) if (ntask > 1 && work >= DECODE_PAR_MIN)
    for (int task = 0; task < ntask; task++) {
        const int kvh = task / ntile, tile = task % ntile;
        if (moa_cache_unit_at(cc, layer, kvh)->kind == MOA_UNIT_LINEAR) {
            if (tile == 0) linear_task(cc, layer, &jb, kvh);
            continue;
        }
        const int t0 = tile * MOA_CACHE_TILE;
        const int nt = n - t0 < MOA_CACHE_TILE ? n - t0 : MOA_CACHE_TILE;
        float *tls = cc->tls ? cc->tls + (size_t)omp_get_thread_num() * tls_per_thread(cc) : NULL;
        softmax_task(cc, layer, &jb, kvh, t0, nt, tls, NULL, NULL, NULL);
    }
    for (int kvh = 0; kvh < c->n_kv; kvh++)
        if (moa_cache_unit_at(c, layer, kvh)->kind != MOA_UNIT_LINEAR) store_task(c, layer, &jb, kvh);
    *pos = p0 + n;
    return MOA_OK;
}

/* The decode rows' sequences: each in range and named once, with room for one more token
 * (check_range). Leaves seq_mark all zero. */
static moa_status check_decode_seqs(moa_cache *c, int layer, const int *seqs, int n) {
    moa_status st = MOA_OK;
    for (int i = 0; i < n && st == MOA_OK; i++) {
        const int s = seqs ? seqs[i] : i;
        if (s < 0 || s >= c->n_seq)
            st = moa_err(MOA_ERR_INVALID_ARG, "attn_decode: seqs[%d]=%d out of range [0, %d)", i, s, c->n_seq);
        else if (c->seq_mark[s])
            st = moa_err(MOA_ERR_INVALID_ARG, "attn_decode: sequence %d appears twice", s);
        else {
            c->seq_mark[s] = 1;
            st = check_range(c, s, layer, c->pos[(size_t)s * c->n_layer + layer], 1);
        }
    }
    for (int i = 0; i < n; i++) {
        const int s = seqs ? seqs[i] : i;
        if (s >= 0 && s < c->n_seq) c->seq_mark[s] = 0;
    }
    return st;
}

/* Absolute mode with rope_dim > 0: each row's q, k rotated at its own sequence's position
 * (into c->io, so the positions are gathered first); else *qr, *kr are q, k. */
static moa_status decode_rotate(moa_cache *c, int layer, const int *seqs, int n, const float *q,
                                const float *k, const float **qr, const float **kr) {
    *qr = q;
    *kr = k;
    if (c->p.pos_mode != MOA_POS_ABSOLUTE || c->p.rope_dim <= 0) return MOA_OK;
    int64_t stackpos[64];
    int64_t *pr = n <= 64 ? stackpos : moa_alloc_array((size_t)n, sizeof *pr);
    if (!pr) return moa_err(MOA_ERR_NOMEM, "attn_decode: out of memory");
    for (int i = 0; i < n; i++) pr[i] = c->pos[(size_t)(seqs ? seqs[i] : i) * c->n_layer + layer];
    float *Q, *K;
    const moa_status st = rotate_rows(c, q, k, n, pr, 0, &Q, &K);
    if (pr != stackpos) free(pr);
    MOA_TRY(st);
    *qr = Q;
    *kr = K;
    return MOA_OK;
}

/* One decode call: its rows, where their stored k, v rows are, and the split-K layout. */
typedef struct {
    int layer, n;
    const int *seqs;
    const float *q, *k, *v;     /* the caller's rows */
    const float *qr, *kr;       /* rotated (absolute mode with rope) or q, k */
    float *out;
    const staged_rows *rows;
    int parts;                  /* split-K parts per softmax unit (1: none) */
    size_t part_stride;         /* floats per part: o [G][hd] then lse [G] */
    int64_t work;               /* query x key pairs, roughly: small calls stay serial */
} decode_call;

/* Split-K: when sequences x KV heads are too few to keep every thread busy, each softmax
 * unit's recent keys are cut into `parts` ranges (the sinks go with part 0); each part
 * returns a normalised output and its log-sum-exp, merged by merge_parts. Sets d->parts and
 * d->work. */
static void decode_split(const moa_cache *c, int nthr, decode_call *d) {
    int64_t max_keys = 0, work = 0;
    for (int kvh = 0; kvh < c->n_kv; kvh++) {
        const moa_cache_unit_rt *U = moa_cache_unit_at(c, d->layer, kvh);
        const int64_t keys = U->kind == MOA_UNIT_LINEAR ? c->hd : U->sink + U->ring + 1;
        if (keys > max_keys) max_keys = keys;
        work += keys * d->n;
    }
    int parts = 1;
    if (nthr > 1 && d->n * c->n_kv < 2 * nthr && max_keys >= 2 * DECODE_PART_MIN) {
        parts = (2 * nthr + d->n * c->n_kv - 1) / (d->n * c->n_kv);
        if (parts > max_keys / DECODE_PART_MIN) parts = (int)(max_keys / DECODE_PART_MIN);
    }
    d->parts = parts;
    d->work = work;
}

/* Task `task` of a decode call: (row, KV head, part); a linear unit runs whole in part 0. */
static void decode_task(const moa_cache *cc, const decode_call *d, int task) {
    const int parts = d->parts, layer = d->layer, G = cc->group, hd = cc->hd;
    const size_t ldq = (size_t)cc->n_head * hd, ldk = (size_t)cc->n_kv * hd;
    const int part = task % parts, i = task / parts / cc->n_kv, kvh = task / parts % cc->n_kv;
    const int s = d->seqs ? d->seqs[i] : i;
    const moa_cache_unit_rt *U = moa_cache_unit_at(cc, layer, kvh);
    attn_job jb = {.seq = s, .p0 = cc->pos[(size_t)s * cc->n_layer + layer], .n = 1,
                   .qr = d->qr + i * ldq, .kr = d->kr + i * ldk, .q = d->q + i * ldq, .k = d->k + i * ldk,
                   .v = d->v + i * ldk, .o = d->out + i * ldq};
    job_rows(&jb, d->rows, i);
    if (U->kind == MOA_UNIT_LINEAR) {
        if (part == 0) linear_task(cc, layer, &jb, kvh);
        return;
    }
    float *tls = cc->tls ? cc->tls + (size_t)omp_get_thread_num() * tls_per_thread(cc) : NULL;
    if (parts == 1) {
        softmax_task(cc, layer, &jb, kvh, 0, 1, tls, NULL, NULL, NULL);
        return;
    }
    /* recent keys of query t: [max(sink, t - W + 1), t]; part p takes an equal slice */
    const int64_t t = jb.p0, lo = max64(U->sink, t - U->window + 1), len = t + 1 - lo;
    key_range range = {.sinks = part == 0,
                    .lo = len > 0 ? lo + len * part / parts : 0,
                    .hi = len > 0 ? lo + len * (part + 1) / parts : 0};
    float *po = cc->part + (((size_t)i * cc->n_kv + kvh) * parts + part) * d->part_stride;
    softmax_task(cc, layer, &jb, kvh, 0, 1, tls, &range, po, po + (size_t)G * hd);
}

/* The split-K parts of one (row, softmax unit), pb = their [parts][part_stride] floats, into
 * the unit's output o ([G][hd]): o = sum_p e^(lse_p - L) o_p / sum_p e^(lse_p - L),
 * L = max_p lse_p; zero where no part saw a key. */
static void merge_unit(const float *pb, int parts, size_t part_stride, int G, int hd, float *o_unit) {
    for (int g = 0; g < G; g++) {
        float L = -INFINITY;
        for (int p = 0; p < parts; p++) {
            const float l = pb[p * part_stride + (size_t)G * hd + g];
            if (l > L) L = l;
        }
        float *o = o_unit + (size_t)g * hd;
        memset(o, 0, sizeof(float) * hd);
        if (L == -INFINITY) continue;
        float den = 0;
        for (int p = 0; p < parts; p++) {
            const float l = pb[p * part_stride + (size_t)G * hd + g];
            if (l == -INFINITY) continue;
            const float w = expf(l - L);
            const float *op = pb + p * part_stride + (size_t)g * hd;
            den += w;
            for (int d = 0; d < hd; d++) o[d] += w * op[d];
        }
        for (int d = 0; d < hd; d++) o[d] /= den;
    }
}

/* Merge every softmax unit's parts (d->parts > 1). */
static void merge_parts(const moa_cache *c, const decode_call *d, int nthr) {
    const int n = d->n, G = c->group, hd = c->hd, parts = d->parts;
    const size_t ldq = (size_t)c->n_head * hd;
#pragma omp parallel for schedule(static) num_threads(nthr) if (n * c->n_kv > 1 && d->work >= DECODE_PAR_MIN)
    for (int x = 0; x < n * c->n_kv; x++) {
        const int i = x / c->n_kv, kvh = x % c->n_kv;
        if (moa_cache_unit_at(c, d->layer, kvh)->kind == MOA_UNIT_LINEAR) continue;
        merge_unit(c->part + (size_t)x * parts * d->part_stride, parts, d->part_stride, G, hd,
                   d->out + i * ldq + (size_t)kvh * G * hd);
    }
}

/* Append the decode rows' tokens (after every part has read the ring) and advance their
 * positions. */
static void decode_append(moa_cache *c, const decode_call *d) {
    const int n = d->n, layer = d->layer;
    for (int x = 0; x < n * c->n_kv; x++) {
        const int i = x / c->n_kv, kvh = x % c->n_kv, s = d->seqs ? d->seqs[i] : i;
        if (moa_cache_unit_at(c, layer, kvh)->kind == MOA_UNIT_LINEAR) continue;
        attn_job jb = {.seq = s, .p0 = c->pos[(size_t)s * c->n_layer + layer], .n = 1};
        job_rows(&jb, d->rows, i);
        store_task(c, layer, &jb, kvh);
    }
    for (int i = 0; i < n; i++) c->pos[(size_t)(d->seqs ? d->seqs[i] : i) * c->n_layer + layer]++;
}

moa_status moa_attn_decode(moa_cache *c, int layer, const int *seqs, int n, const float *q,
                           const float *k, const float *v, float *out) {
    if (!c || !q || !k || !v || !out)
        return moa_err(MOA_ERR_INVALID_ARG, "attn_decode: NULL cache or buffer");
    if (layer < 0 || layer >= c->n_layer || n < 0 || n > c->n_seq)
        return moa_err(MOA_ERR_INVALID_ARG, "attn_decode: layer=%d (n_layer %d) or n=%d (n_seq %d) out of range",
                       layer, c->n_layer, n, c->n_seq);
    if (c->dev) return c->dev->decode(c->dc, layer, seqs, n, q, k, v, out);   /* device buffers */
    if (n == 0) return MOA_OK;
    MOA_TRY(check_decode_seqs(c, layer, seqs, n));
    staged_rows rows;
    decode_call d = {.layer = layer, .n = n, .seqs = seqs, .q = q, .k = k, .v = v, .out = out,
                     .rows = &rows, .part_stride = (size_t)c->group * (c->hd + 1)};
    MOA_TRY(decode_rotate(c, layer, seqs, n, q, k, &d.qr, &d.kr));
    MOA_TRY(stage_rows(c, d.kr, v, n, &rows));
    const int nthr = omp_get_max_threads();
    MOA_TRY(reserve_tls(c, nthr));
    decode_split(c, nthr, &d);
    if (d.parts > 1)
        MOA_TRY(moa_cache_reserve_part(c, (size_t)n * c->n_kv * d.parts * d.part_stride));

    const int ntask = n * c->n_kv * d.parts;
    const moa_cache *cc = c;
#pragma omp parallel for schedule(dynamic, 1) num_threads(nthr) if (ntask > 1 && d.work >= DECODE_PAR_MIN)
    for (int task = 0; task < ntask; task++) decode_task(cc, &d, task);
    if (d.parts > 1) merge_parts(c, &d, nthr);
    decode_append(c, &d);
    return MOA_OK;
}
