/* moa/attn.h - public header of moa_kernels (kernels/; op family of kernels/cpu/attn*.c, the
 * runtime's attention; the device interface is moa/backend.h): CPU attention kernels: banded
 * causal softmax attention with sinks (prefill and decode are the same kernel) and
 * Lightning-Attention-2 style causal linear attention.
 *
 * Every kernel has a plain C reference (`*_ref`, the source of truth) and SIMD versions
 * (`*_avx2`, `*_avx512`, compiled with those ISA flags); the unsuffixed name dispatches to the
 * best version the CPU supports (or the one forced with moa_attn_isa_set). Kernels are
 * single-threaded and never fail: callers validate shapes and parallelise over
 * (sequence, KV head, query tile). Ownership: the caller owns every buffer; nothing is kept
 * past the call. Threading: reentrant on distinct outputs; moa_attn_isa_set is process-wide.
 *
 * The one mask (architecture.md, "One span definition"): query position i attends key
 * position j iff  j <= i  and  (j < sink  or  i - j < window).
 */
#ifndef MOA_KERNELS_ATTN_H
#define MOA_KERNELS_ATTN_H

#include <stddef.h>
#include <stdint.h>

#define MOA_ATTN_HD_MAX 256     /* largest head_dim of every kernel */
#define MOA_ATTN_GROUP_MAX 32   /* largest GQA group of the SIMD kernels (ref: any) */

/* Storage types of cached keys and values (values as moa_kv_type in moa/runtime.h; append-only).
 * A row of hd values takes moa_attn_kv_row_bytes(type, hd) bytes:
 *   F32   4*hd; F16 (IEEE binary16) and BF16 2*hd (little-endian);
 *   Q8_0  ceil(hd/32) blocks of 34 bytes as GGUF's Q8_0: an f16 scale d then 32 int8 q,
 *         value = q*d; a last partial block is zero-padded.
 * The kernels widen every stored value to f32 and accumulate in f32. */
typedef enum {
    MOA_ATTN_KV_F32 = 0, MOA_ATTN_KV_F16 = 1, MOA_ATTN_KV_BF16 = 2, MOA_ATTN_KV_Q8_0 = 3,
} moa_attn_kv_type;
#define MOA_ATTN_KV_N_TYPES 4
#define MOA_ATTN_Q8_0_BLOCK 32
#define MOA_ATTN_Q8_0_BYTES 34

size_t moa_attn_kv_row_bytes(moa_attn_kv_type t, int hd);
const char *moa_attn_kv_name(moa_attn_kv_type t);   /* "f32", "f16", "bf16", "q8_0"; "?" */
/* Convert one row of hd floats to the storage type (convert on append): F16 and BF16 round to
 * nearest even, F16 saturates at +-65504 (no inf from finite input); Q8_0 per block of 32:
 * d = f16(max|x| / 127) (saturated), q = round-to-nearest-even(x / d) clamped to [-127, 127]
 * (all q = 0 when d = 0). Plain C; deterministic (the same bytes on every ISA). */
void moa_attn_kv_store_row(moa_attn_kv_type t, void *dst, const float *src, int hd);
/* Widen one stored row to hd floats (exact: every stored value is representable in f32).
 * dst gets exactly hd values. Dispatched like the kernels; *_ref is the reference. */
void moa_attn_kv_load_row(moa_attn_kv_type t, float *dst, const void *src, int hd);
void moa_attn_kv_load_row_ref(moa_attn_kv_type t, float *dst, const void *src, int hd);
void moa_attn_kv_load_row_avx2(moa_attn_kv_type t, float *dst, const void *src, int hd);
void moa_attn_kv_load_row_avx512(moa_attn_kv_type t, float *dst, const void *src, int hd);

/* A run of keys with consecutive positions: row r has position pos0 + r. The caller's key
 * sources (sink slots, the two runs of a ring buffer, the new chunk) are each one segment. */
typedef struct {
    const void *k;    /* key row r at (const char *)k + r*kstride, stored as kt */
    const void *v;    /* value row r at (const char *)v + r*vstride, stored as vt */
    size_t kstride, vstride;   /* row strides in BYTES */
    int64_t pos0;     /* position of row 0 */
    int n;            /* rows */
    int alt_q;        /* 1: score these keys with q_alt (streaming mode's sink rotation) */
    moa_attn_kv_type kt, vt;   /* storage types (MOA_ATTN_KV_F32 = 0: plain floats) */
} moa_attn_seg;

/* Banded causal softmax attention for one KV head and its group of query heads.
 * out[t][g] = sum_j softmax_j(scale * q[t][g] . k_j  over visible j) v_j; a query that sees
 * no key (sink 0 and window 0) gets a zero output. */
typedef struct {
    int hd;              /* head dim */
    int n_group;         /* query heads sharing this KV head */
    int n_q;             /* query tokens */
    const float *q;      /* q[t*ldq + g*hd + d] */
    const float *q_alt;  /* same layout, used for segments with alt_q; NULL = q */
    size_t ldq;
    float *o;            /* o[t*ldo + g*hd + d] */
    size_t ldo;
    int64_t qpos0;       /* query t has position qpos0 + t */
    int64_t sink;        /* mask: j < sink always visible (if j <= i) */
    int64_t window;      /* mask: i - j < window visible; >= any i+1 means dense */
    float scale;         /* usually 1/sqrt(hd) */
    const moa_attn_seg *segs;
    int n_segs;
    float *lse;          /* optional [n_q][n_group]: log sum_j exp(s_j) (-inf if none), so
                            partial results over disjoint key sets can be merged (split-K) */
} moa_attn_band_args;

/* Causal linear attention (no softmax, no scale, no denominator) for one KV head:
 *   S_t = lambda S_{t-1} + k_t^T v_t   (S: [hd][hd], row = key dim),  o_t[g] = q_t[g] S_t,
 *   lambda = exp(-decay). `state` holds S_{-1} on entry and S_{n_t-1} on return, so prefill in
 * chunks and per-token decode (n_t = 1, O(hd^2)) continue each other. */
typedef struct {
    int hd, n_group, n_t;
    const float *q; size_t ldq;   /* q[t*ldq + g*hd + d] */
    const float *k; size_t ldk;   /* k[t*ldk + d] */
    const float *v; size_t ldv;   /* v[t*ldv + d] */
    float *o; size_t ldo;         /* o[t*ldo + g*hd + d] */
    float *state;                 /* [hd][hd], in/out */
    float decay;                  /* s >= 0; 0 = no decay */
} moa_linear_args;

typedef enum { MOA_ISA_REF = 0, MOA_ISA_AVX2 = 1, MOA_ISA_AVX512 = 2 } moa_attn_isa;

/* References: direct evaluation of the definitions (band: two-pass softmax per row over every
 * key of every segment; linear: the token-by-token recurrence). */
void moa_attn_band_ref(const moa_attn_band_args *a);
void moa_linear_ref(const moa_linear_args *a);

/* Fast versions. band: tiled over queries x key blocks with an online (FlashAttention-2)
 * softmax; only key blocks inside the band are visited, so work is O(n_q * (sink + window)).
 * linear: Lightning-Attention-2 tiling (intra-block masked product + inter-block state).
 * All kernels need hd <= MOA_ATTN_HD_MAX; the SIMD ones also n_group <= MOA_ATTN_GROUP_MAX
 * (the dispatchers fall back to the reference otherwise). */
void moa_attn_band_avx2(const moa_attn_band_args *a);
void moa_attn_band_avx512(const moa_attn_band_args *a);
void moa_linear_avx2(const moa_linear_args *a);
void moa_linear_avx512(const moa_linear_args *a);

/* Dispatchers. */
void moa_attn_band(const moa_attn_band_args *a);
void moa_linear(const moa_linear_args *a);

/* Best ISA this CPU supports; the ISA the dispatchers use (default: best); force one (tests,
 * benchmarks; clamped to what the CPU supports; set it from one thread before work starts). */
moa_attn_isa moa_attn_isa_best(void);
moa_attn_isa moa_attn_isa_get(void);
void moa_attn_isa_set(moa_attn_isa isa);
const char *moa_attn_isa_name(moa_attn_isa isa);

#endif /* MOA_KERNELS_ATTN_H */
