/* cache.c - per-head static KV caches: layout -> slot tables, one allocation per tensor
 * family (K, V, linear state), plan -> layout through the shared span definition, RoPE
 * tables, reset, bytes. Attention over the cache: attn.c. A cache on another device (CUDA)
 * keeps only its dimensions and parameters here and dispatches to the device's table
 * (cache-device.h). */
#include "cache.h"
#include "cache-layout.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "moa/attn.h"      /* kernels/cpu: MOA_ATTN_HD_MAX */
#include "moa/common.h"

#define ROPE_TABLE_MAX 16384   /* positions with precomputed cos/sin; beyond: computed */

_Static_assert((int)MOA_KV_F32 == (int)MOA_ATTN_KV_F32 && (int)MOA_KV_F16 == (int)MOA_ATTN_KV_F16 &&
               (int)MOA_KV_BF16 == (int)MOA_ATTN_KV_BF16 && (int)MOA_KV_Q8_0 == (int)MOA_ATTN_KV_Q8_0,
               "moa_kv_type and the kernels' moa_attn_kv_type must agree");

const char *moa_kv_type_name(moa_kv_type t) { return moa_attn_kv_name((moa_attn_kv_type)t); }

moa_status moa_kv_type_parse(const char *name, moa_kv_type *out) {
    for (int t = 0; name && t < MOA_ATTN_KV_N_TYPES; t++)
        if (strcmp(name, moa_attn_kv_name((moa_attn_kv_type)t)) == 0) {
            if (out) *out = (moa_kv_type)t;
            return MOA_OK;
        }
    return moa_err(MOA_ERR_INVALID_ARG, "unknown KV storage type '%s' (expected f32, f16, bf16 or q8_0)",
                   name ? name : "(null)");
}

moa_cache_params moa_cache_default_params(void) {
    const moa_cache_params p = {.pos_mode = MOA_POS_ABSOLUTE, .rope_dim = 0, .rope_base = 10000.0f,
                                .rope_pairing = MOA_ROPE_NORMAL, .scale = 0.0f,
                                .type_k = MOA_KV_F16, .type_v = MOA_KV_F16,
                                .device = MOA_CACHE_DEVICE_CPU, .device_index = 0, .device_ctx = NULL};
    return p;
}

int moa_cache_device_count(moa_cache_device device) {
    if (device == MOA_CACHE_DEVICE_CPU) return 1;
    const moa_cache_device_ops *ops = moa_rt_cache_device(device);
    return ops ? ops->count() : 0;
}

moa_cache_device moa_cache_get_device(const moa_cache *c) {
    return c ? c->p.device : MOA_CACHE_DEVICE_CPU;
}

void moa_cache_free(moa_cache *c) {
    if (!c) return;
    if (c->dev) c->dev->destroy(c->dc);
    moa_rope_table_free(&c->rope);
    MOA_FREE_ALIGNED_ALL(c->k, c->v, c->state, c->io, c->tls, c->part, c->kvio);
    MOA_FREE_ALL(c->units, c->q_window, c->layer_dense, c->pos, c->seq_mark, c);
}

static moa_status check_layout(const moa_cache_layout *L, int64_t n_ctx, int n_seq,
                               const moa_cache_params *p) {
    if (!L || !L->units) return moa_err(MOA_ERR_INVALID_ARG, "cache: layout or layout.units is NULL");
    if (L->n_layer < 1 || L->n_head < 1 || L->n_head_kv < 1 || L->head_dim < 1)
        return moa_err(MOA_ERR_INVALID_ARG,
                       "cache: dimensions must be >= 1 (n_layer=%d n_head=%d n_head_kv=%d head_dim=%d)",
                       L->n_layer, L->n_head, L->n_head_kv, L->head_dim);
    if (L->n_head % L->n_head_kv != 0)
        return moa_err(MOA_ERR_INVALID_ARG, "cache: n_head=%d is not a multiple of n_head_kv=%d",
                       L->n_head, L->n_head_kv);
    if (L->head_dim > MOA_ATTN_HD_MAX)
        return moa_err(MOA_ERR_UNSUPPORTED, "cache: head_dim=%d exceeds the supported %d",
                       L->head_dim, MOA_ATTN_HD_MAX);
    if (n_ctx < 1) return moa_err(MOA_ERR_INVALID_ARG, "cache: n_ctx=%lld must be >= 1", (long long)n_ctx);
    if (n_seq < 1) return moa_err(MOA_ERR_INVALID_ARG, "cache: n_seq=%d must be >= 1", n_seq);
    if (p->pos_mode != MOA_POS_ABSOLUTE && p->pos_mode != MOA_POS_STREAMING)
        return moa_err(MOA_ERR_INVALID_ARG, "cache: unknown pos_mode %d", (int)p->pos_mode);
    if (p->rope_dim < 0 || p->rope_dim % 2 != 0 || p->rope_dim > L->head_dim)
        return moa_err(MOA_ERR_INVALID_ARG, "cache: rope_dim=%d must be even and in [0, head_dim=%d]",
                       p->rope_dim, L->head_dim);
    if (p->pos_mode == MOA_POS_STREAMING && p->rope_dim == 0)
        return moa_err(MOA_ERR_INVALID_ARG,
                       "cache: streaming mode rotates keys itself: set rope_dim > 0 and pass q, k before RoPE");
    if (p->rope_pairing != MOA_ROPE_NORMAL && p->rope_pairing != MOA_ROPE_NEOX)
        return moa_err(MOA_ERR_INVALID_ARG, "cache: rope_pairing=%d (expected MOA_ROPE_NORMAL 0 or "
                       "MOA_ROPE_NEOX 2)", (int)p->rope_pairing);
    if (p->rope_dim > 0 && !(p->rope_base > 1.0f))
        return moa_err(MOA_ERR_INVALID_ARG, "cache: rope_base=%g must be > 1", (double)p->rope_base);
    if (!(p->scale >= 0.0f)) return moa_err(MOA_ERR_INVALID_ARG, "cache: scale must be >= 0");
    if ((unsigned)p->type_k >= MOA_ATTN_KV_N_TYPES || (unsigned)p->type_v >= MOA_ATTN_KV_N_TYPES)
        return moa_err(MOA_ERR_INVALID_ARG, "cache: type_k=%d, type_v=%d (expected MOA_KV_F32 0, "
                       "MOA_KV_F16 1, MOA_KV_BF16 2 or MOA_KV_Q8_0 3)", (int)p->type_k, (int)p->type_v);
    if (p->device != MOA_CACHE_DEVICE_CPU && p->device != MOA_CACHE_DEVICE_CUDA)
        return moa_err(MOA_ERR_INVALID_ARG, "cache: device=%d (expected MOA_CACHE_DEVICE_CPU 0 or "
                       "MOA_CACHE_DEVICE_CUDA 1)", (int)p->device);
    if (p->device == MOA_CACHE_DEVICE_CPU && p->device_ctx)
        return moa_err(MOA_ERR_INVALID_ARG, "cache: device_ctx is set but the device is the CPU");
    const int group = L->n_head / L->n_head_kv;
    for (int l = 0; l < L->n_layer; l++)
        for (int h = 0; h < L->n_head_kv; h++) {
            const moa_cache_unit *u = &L->units[(size_t)l * L->n_head_kv + h];
            if (u->kind != MOA_UNIT_WINDOW && u->kind != MOA_UNIT_DENSE && u->kind != MOA_UNIT_LINEAR)
                return moa_err(MOA_ERR_INVALID_ARG, "cache: layer %d kv head %d: unknown kind %d", l, h,
                               (int)u->kind);
            if (u->kind != MOA_UNIT_LINEAR && (u->window < 0 || u->sink < 0))
                return moa_err(MOA_ERR_INVALID_ARG,
                               "cache: layer %d kv head %d: window=%lld and sink=%lld must be >= 0", l, h,
                               (long long)u->window, (long long)u->sink);
            if (u->kind == MOA_UNIT_LINEAR && !(u->decay >= 0.0f && isfinite(u->decay)))
                return moa_err(MOA_ERR_INVALID_ARG, "cache: layer %d kv head %d: decay=%g must be >= 0",
                               l, h, (double)u->decay);
            if (L->q_window && u->kind != MOA_UNIT_LINEAR)
                for (int g = 0; g < group; g++) {
                    int64_t qw = L->q_window[(size_t)l * L->n_head + (size_t)h * group + g];
                    if (qw < 0 || (u->kind == MOA_UNIT_WINDOW && qw > u->window))
                        return moa_err(MOA_ERR_INVALID_ARG,
                                       "cache: layer %d query head %d: q_window=%lld must be in [0, %lld]",
                                       l, h * group + g, (long long)qw, (long long)u->window);
                }
        }
    return MOA_OK;
}

/* The device's cache behind c (dimensions and params already in c): MOA_ERR_DEVICE with a
 * message when the build or the machine has no such device. */
static moa_status create_on_device(moa_cache *c, const moa_cache_layout *L) {
    const moa_cache_device_ops *ops = moa_rt_cache_device(c->p.device);
    if (!ops)
        return moa_err(MOA_ERR_DEVICE, "cache: MOA_CACHE_DEVICE_CUDA requested, but this build of the "
                       "runtime (libmoa) has no CUDA backend (rebuild with -DMOA_CUDA=ON, or use "
                       "MOA_CACHE_DEVICE_CPU)");
    if (!c->p.device_ctx && ops->count() == 0)
        return moa_err(MOA_ERR_DEVICE, "cache: MOA_CACHE_DEVICE_CUDA requested, but no CUDA device is "
                       "present (no GPU or driver; use MOA_CACHE_DEVICE_CPU)");
    MOA_TRY(ops->create(L, c->n_ctx, c->n_seq, &c->p, &c->dc));
    c->dev = ops;
    moa_log_debug("cache: %d layers x %d kv heads, n_ctx %lld, %d seq, %zu KV bytes (K %s, V %s) on %s %d",
                  c->n_layer, c->n_kv, (long long)c->n_ctx, c->n_seq, moa_cache_bytes(c),
                  moa_kv_type_name(c->p.type_k), moa_kv_type_name(c->p.type_v), ops->name, c->p.device_index);
    return MOA_OK;
}

moa_status moa_cache_create_layout(const moa_cache_layout *L, int64_t n_ctx, int n_seq,
                                   const moa_cache_params *params, moa_cache **out) {
    if (!out) return moa_err(MOA_ERR_INVALID_ARG, "cache: out is NULL");
    *out = NULL;
    moa_cache_params p = params ? *params : moa_cache_default_params();
    MOA_TRY(check_layout(L, n_ctx, n_seq, &p));

    moa_cache *c = calloc(1, sizeof *c);
    if (!c) return moa_err(MOA_ERR_NOMEM, "cache: out of memory");
    c->n_layer = L->n_layer;
    c->n_head = L->n_head;
    c->n_kv = L->n_head_kv;
    c->hd = L->head_dim;
    c->group = L->n_head / L->n_head_kv;
    c->n_seq = n_seq;
    c->n_ctx = n_ctx;
    c->p = p;
    if (c->p.scale == 0.0f) c->p.scale = (float)(1.0 / sqrt((double)c->hd));
    if (p.device != MOA_CACHE_DEVICE_CPU) {
        moa_status st = create_on_device(c, L);
        if (st < 0) {
            moa_cache_free(c);
            return st;
        }
        *out = c;
        return MOA_OK;
    }
    const size_t n_units = (size_t)c->n_layer * c->n_kv;
    const size_t hd = (size_t)c->hd;
    c->units = moa_calloc_array(n_units, sizeof *c->units);
    c->layer_dense = moa_calloc_array((size_t)c->n_layer, 1);
    c->pos = moa_calloc_array((size_t)n_seq * c->n_layer, sizeof *c->pos);
    c->seq_mark = moa_calloc_array((size_t)n_seq, 1);
    if (L->q_window) c->q_window = moa_alloc_array((size_t)c->n_layer * c->n_head, sizeof *c->q_window);
    if (!c->units || !c->layer_dense || !c->pos || !c->seq_mark || (L->q_window && !c->q_window))
        goto nomem;

    /* slot tables */
    for (int l = 0; l < c->n_layer; l++)
        for (int h = 0; h < c->n_kv; h++) {
            const moa_cache_unit *u = &L->units[(size_t)l * c->n_kv + h];
            moa_cache_unit_rt *r = moa_cache_unit_at(c, l, h);
            r->kind = u->kind;
            r->uniform_q = 1;
            if (u->kind == MOA_UNIT_LINEAR) {
                r->decay = u->decay;
                r->off = c->states_per_seq++;
                continue;
            }
            r->sink = u->sink < n_ctx ? u->sink : n_ctx;
            if (u->kind == MOA_UNIT_DENSE) {
                r->ring = n_ctx - r->sink;      /* sink + ring = n_ctx: every position < n_ctx */
                c->layer_dense[l] = 1;
            } else {
                /* positions < n_ctx in the window are all held by min(W, n_ctx - sink) slots */
                r->ring = u->window < n_ctx - r->sink ? u->window : n_ctx - r->sink;
            }
            r->window = r->ring;
            r->off = c->slots_per_seq;
            c->slots_per_seq += (size_t)(r->sink + r->ring);
            if (r->sink + r->ring > c->max_slots) c->max_slots = r->sink + r->ring;
            if (c->q_window) {
                for (int g = 0; g < c->group; g++) {
                    size_t qi = (size_t)l * c->n_head + (size_t)h * c->group + g;
                    int64_t qw = L->q_window[qi];
                    if (qw > r->ring) qw = r->ring;
                    c->q_window[qi] = qw;
                    if (qw != r->window) r->uniform_q = 0;
                }
            }
        }

    /* one allocation per tensor family (pages are touched only when written) */
    c->krow = moa_attn_kv_row_bytes(MOA_CACHE_KT(c), c->hd);
    c->vrow = moa_attn_kv_row_bytes(MOA_CACHE_VT(c), c->hd);
    size_t k_rows, k_bytes, v_bytes, st_floats;
    if (moa_mul_overflow(c->slots_per_seq, (size_t)n_seq, &k_rows) ||
        moa_mul_overflow(k_rows, c->krow, &k_bytes) || moa_mul_overflow(k_rows, c->vrow, &v_bytes) ||
        moa_mul_overflow(c->states_per_seq * hd * hd, (size_t)n_seq, &st_floats))
        goto nomem;
    if (k_rows) {
        c->k = moa_alloc_aligned(k_bytes, 1);
        c->v = moa_alloc_aligned(v_bytes, 1);
        if (!c->k || !c->v) goto nomem;
    }
    if (st_floats) {
        c->state = moa_alloc_aligned(st_floats, sizeof(float));
        if (!c->state) goto nomem;
        memset(c->state, 0, st_floats * sizeof(float));
    }

    /* RoPE (moa/rope.h): cos/sin tabulated for the positions the cache will see */
    if (p.rope_dim > 0) {
        int64_t need = (n_ctx > c->max_slots ? n_ctx : c->max_slots) + MOA_CACHE_TILE + 1;
        if (moa_rope_table_init(&c->rope, p.rope_dim, p.rope_base, p.rope_pairing == MOA_ROPE_NEOX,
                                need < ROPE_TABLE_MAX ? need : ROPE_TABLE_MAX) < 0) goto nomem;
    }
    moa_log_debug("cache: %d layers x %d kv heads, n_ctx %lld, %d seq, %zu KV bytes (K %s, V %s), %s mode, "
                  "kernels %s", c->n_layer, c->n_kv, (long long)n_ctx, n_seq, moa_cache_bytes(c),
                  moa_kv_type_name(p.type_k), moa_kv_type_name(p.type_v),
                  p.pos_mode == MOA_POS_STREAMING ? "streaming" : "absolute",
                  moa_attn_isa_name(moa_attn_isa_get()));
    *out = c;
    return MOA_OK;
nomem:
    moa_cache_free(c);
    return moa_err(MOA_ERR_NOMEM, "cache: out of memory (n_ctx=%lld, n_seq=%d)", (long long)n_ctx, n_seq);
}

moa_status moa_cache_layout_from_plan(const moa_plan *plan, int64_t n_ctx, moa_cache_layout *L) {
    memset(L, 0, sizeof *L);
    if (!plan) return moa_err(MOA_ERR_INVALID_ARG, "cache: plan is NULL");
    if (n_ctx < 1) return moa_err(MOA_ERR_INVALID_ARG, "cache: n_ctx=%lld must be >= 1", (long long)n_ctx);
    const int n_layer = moa_plan_n_layer(plan), n_head = moa_plan_n_head(plan);
    const int n_kv = moa_plan_n_head_kv(plan), sink = moa_plan_sink(plan);
    if (n_layer < 1 || n_head < 1 || n_kv < 1 || n_head % n_kv != 0)
        return moa_err(MOA_ERR_INVALID_ARG, "cache: plan has invalid dimensions");
    const int group = n_head / n_kv;
    const int qhead = moa_plan_granularity(plan) == MOA_GRAN_Q_HEAD;
    moa_cache_unit *units = moa_calloc_array((size_t)n_layer * n_kv, sizeof *units);
    int64_t *qw = qhead ? moa_alloc_array((size_t)n_layer * n_head, sizeof *qw) : NULL;
    if (!units || (qhead && !qw)) {
        free(units);
        free(qw);
        return moa_err(MOA_ERR_NOMEM, "cache: out of memory");
    }
    moa_status st = MOA_OK;
    for (int l = 0; l < n_layer && st == MOA_OK; l++)
        for (int h = 0; h < n_kv && st == MOA_OK; h++) {
            moa_cache_unit *u = &units[(size_t)l * n_kv + h];
            u->sink = sink;
            if (!qhead) {
                u->kind = moa_plan_unit_kind(plan, l, h);
                u->window = u->kind == MOA_UNIT_LINEAR ? 0 : moa_plan_unit_window(plan, l, h, n_ctx);
                continue;
            }
            /* q-head granularity: the group's buffer is sized by its largest window */
            int n_lin = 0, n_dense = 0;
            int64_t wmax = 0;
            for (int g = 0; g < group; g++) {
                int qh = h * group + g;
                moa_unit_kind k = moa_plan_unit_kind(plan, l, qh);
                int64_t w = k == MOA_UNIT_LINEAR ? 0 : moa_plan_unit_window(plan, l, qh, n_ctx);
                n_lin += k == MOA_UNIT_LINEAR;
                n_dense += k == MOA_UNIT_DENSE;
                qw[(size_t)l * n_head + qh] = w;
                if (w > wmax) wmax = w;
            }
            if (n_lin && n_lin != group)
                st = moa_err(MOA_ERR_UNSUPPORTED,
                             "cache: layer %d kv group %d mixes linear and softmax query heads", l, h);
            u->kind = n_lin ? MOA_UNIT_LINEAR : n_dense ? MOA_UNIT_DENSE : MOA_UNIT_WINDOW;
            u->window = wmax;
        }
    if (st < 0) {
        free(units);
        free(qw);
        return st;
    }
    L->n_layer = n_layer;
    L->n_head = n_head;
    L->n_head_kv = n_kv;
    L->head_dim = moa_plan_head_dim(plan);
    L->units = units;
    L->q_window = qw;
    return MOA_OK;
}

void moa_cache_layout_release(moa_cache_layout *L) {
    free((void *)L->units);
    free((void *)L->q_window);
    L->units = NULL;
    L->q_window = NULL;
}

moa_status moa_cache_create(const moa_plan *plan, int64_t n_ctx, int n_seq,
                            const moa_cache_params *params, moa_cache **out) {
    if (!out) return moa_err(MOA_ERR_INVALID_ARG, "cache: out is NULL");
    *out = NULL;
    moa_cache_layout L;
    MOA_TRY(moa_cache_layout_from_plan(plan, n_ctx, &L));
    moa_status st = moa_cache_create_layout(&L, n_ctx, n_seq, params, out);
    moa_cache_layout_release(&L);
    return st;
}

moa_status moa_cache_reset(moa_cache *c, int seq) {
    if (!c) return moa_err(MOA_ERR_INVALID_ARG, "cache: NULL cache");
    if (seq >= c->n_seq) return moa_err(MOA_ERR_INVALID_ARG, "cache: seq %d out of range [0, %d)", seq, c->n_seq);
    if (c->dev) return c->dev->reset(c->dc, seq);
    const int s0 = seq < 0 ? 0 : seq, s1 = seq < 0 ? c->n_seq : seq + 1;
    const size_t st = c->states_per_seq * (size_t)c->hd * c->hd;
    for (int s = s0; s < s1; s++) {
        for (int l = 0; l < c->n_layer; l++) c->pos[(size_t)s * c->n_layer + l] = 0;
        if (st) memset(c->state + (size_t)s * st, 0, st * sizeof(float));
    }
    return MOA_OK;
}

moa_status moa_cache_seq_copy(moa_cache *c, int src, int dst) {
    if (!c) return moa_err(MOA_ERR_INVALID_ARG, "cache: NULL cache");
    if (src < 0 || src >= c->n_seq || dst < 0 || dst >= c->n_seq || src == dst)
        return moa_err(MOA_ERR_INVALID_ARG, "cache: copy of sequence %d to %d (expected two distinct sequences in "
                       "[0, %d))", src, dst, c->n_seq);
    if (c->dev) return c->dev->seq_copy(c->dc, src, dst);
    const size_t rows = c->slots_per_seq, st = c->states_per_seq * (size_t)c->hd * c->hd;
    if (rows) {
        memcpy(c->k + (size_t)dst * rows * c->krow, c->k + (size_t)src * rows * c->krow, rows * c->krow);
        memcpy(c->v + (size_t)dst * rows * c->vrow, c->v + (size_t)src * rows * c->vrow, rows * c->vrow);
    }
    if (st) memcpy(c->state + (size_t)dst * st, c->state + (size_t)src * st, st * sizeof(float));
    memcpy(c->pos + (size_t)dst * c->n_layer, c->pos + (size_t)src * c->n_layer, sizeof(int64_t) * (size_t)c->n_layer);
    return MOA_OK;
}

size_t moa_cache_bytes(const moa_cache *c) {
    if (!c) return 0;
    if (c->dev) return c->dev->bytes(c->dc);
    return (size_t)c->n_seq * (c->slots_per_seq * (c->krow + c->vrow) +
                               sizeof(float) * c->states_per_seq * (size_t)c->hd * c->hd);
}

int64_t moa_cache_pos(const moa_cache *c, int seq, int layer) {
    if (!c || seq < 0 || seq >= c->n_seq || layer < 0 || layer >= c->n_layer) return -1;
    if (c->dev) return c->dev->pos(c->dc, seq, layer);
    return c->pos[(size_t)seq * c->n_layer + layer];
}

static moa_status reserve(float **buf, size_t *cap, size_t n) {
    if (n <= *cap) return MOA_OK;
    float *nb = moa_alloc_aligned(n, sizeof(float));
    if (!nb) return moa_err(MOA_ERR_NOMEM, "cache: out of memory for %zu scratch floats", n);
    moa_free_aligned(*buf);
    *buf = nb;
    *cap = n;
    return MOA_OK;
}
moa_status moa_cache_reserve_io(moa_cache *c, size_t n) { return reserve(&c->io, &c->io_cap, n); }
moa_status moa_cache_reserve_tls(moa_cache *c, size_t n) { return reserve(&c->tls, &c->tls_cap, n); }
moa_status moa_cache_reserve_part(moa_cache *c, size_t n) { return reserve(&c->part, &c->part_cap, n); }
moa_status moa_cache_reserve_kvio(moa_cache *c, size_t bytes) {
    if (bytes <= c->kvio_cap) return MOA_OK;
    unsigned char *nb = moa_alloc_aligned(bytes, 1);
    if (!nb) return moa_err(MOA_ERR_NOMEM, "cache: out of memory for %zu scratch bytes", bytes);
    moa_free_aligned(c->kvio);
    c->kvio = nb;
    c->kvio_cap = bytes;
    return MOA_OK;
}

/* RoPE of one head vector at position pos, in the cache's pairing (moa/rope.h). */
void moa_cache_rope(const moa_cache *c, float *dst, const float *src, int64_t pos) {
    moa_rope_apply(&c->rope, dst, src, c->hd, pos, 0);
}
