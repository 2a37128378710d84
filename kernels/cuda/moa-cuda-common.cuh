/* moa-cuda-common.cuh - internal to kernels/ (cuda/, cpu/ops.c) and its tests: helpers shared
 * by the CUDA kernels and the host: the mask (mask.h), tile indexing, the online-softmax
 * update, distance bins, ring-slot mapping, influence formulas, f16/bf16 conversion and ggml
 * block decoding (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q4_K, Q5_K, Q6_K).
 *
 * Compiles three ways: under nvcc every function is __host__ __device__; as plain C11 or C++
 * (no CUDA toolkit needed) they are static inline host functions.
 * tests/kernels/cuda/test_cuda_common.c checks them on the CPU against the CPU references
 * (kernels/cpu/attn.c, attn-train.c, quant.c, runtime/cache.c), so the device code runs the
 * same tested arithmetic.
 *
 * Every function is pure (no global state); integer positions are int64_t.
 */
#ifndef MOA_CUDA_COMMON_CUH
#define MOA_CUDA_COMMON_CUH

#include <stdint.h>
#include <string.h>
#include <math.h>
#include "mask.h"   /* kernels/cpu: the one attention mask */

#if defined(__CUDACC__)
#define MOA_HD static __host__ __device__ __forceinline__
#else
#define MOA_HD static inline
#endif

/* Products that must round like the CPU reference: no fused multiply-add under nvcc
 * (nvcc contracts a*b+c by default; the CPU references are compiled without FMA). */
#if defined(__CUDA_ARCH__)
#define MOA_CU_MUL(a, b) __fmul_rn((a), (b))
#define MOA_CU_ADD(a, b) __fadd_rn((a), (b))
#define MOA_CU_SUB(a, b) __fsub_rn((a), (b))
#elif defined(MOA_CUDA_EMU)
/* The CPU emulator (tests/kernels/cuda/emu) emulates the intrinsics instead of writing a*b:
 * each operation's f32 result passes through a volatile, so the host compiler can neither
 * contract it into an FMA with a neighbouring add nor keep it in wider precision - what
 * __fmul_rn promises on the device. */
static inline float moa_cu_emu_rn(float x) {
    volatile float r = x;
    return r;
}
#define MOA_CU_MUL(a, b) moa_cu_emu_rn((float)(a) * (float)(b))
#define MOA_CU_ADD(a, b) moa_cu_emu_rn((float)(a) + (float)(b))
#define MOA_CU_SUB(a, b) moa_cu_emu_rn((float)(a) - (float)(b))
#else
#define MOA_CU_MUL(a, b) ((a) * (b))
#define MOA_CU_ADD(a, b) ((a) + (b))
#define MOA_CU_SUB(a, b) ((a) - (b))
#endif

/* ---- the one mask: moa_mask_visible (kernels/cpu/mask.h, shared with the CPU kernels) ---- */

/* ---- tile indexing --------------------------------------------------------------------- */
/* Tiles of T covering n: ceil(n / T). */
MOA_HD int64_t moa_cu_tiles(int64_t n, int64_t T) { return (n + T - 1) / T; }
/* Rows of tile t (starting at t*T) that exist: min(T, n - t*T), >= 0. */
MOA_HD int64_t moa_cu_tile_rows(int64_t n, int64_t t, int64_t T) {
    const int64_t r = n - t * T;
    return r < 0 ? 0 : r < T ? r : T;
}
/* Does key tile [j0, j0+bk) hold a key visible to some query of [i0, i1] under the mask?
 * Keys j <= i1 with j < sink, or j >= i0 - W + 1 (and j <= i1). */
MOA_HD int moa_cu_tile_needed(int64_t i0, int64_t i1, int64_t j0, int64_t bk, int64_t sink,
                              int64_t window) {
    const int64_t j1 = j0 + bk - 1;
    if (bk <= 0 || j0 > i1) return 0;
    if (j0 < sink) return 1;
    return window > 0 && j1 >= i0 - window + 1;
}
/* First key tile of the band of queries [i0, ...]: tiles below it (and at/after the sink
 * tiles) hold no visible key. Key tiles kb with kb*T < sink, and kb >= this, are visited. */
MOA_HD int64_t moa_cu_band_first_tile(int64_t i0, int64_t window, int64_t T) {
    const int64_t lo = i0 - window + 1;
    return lo <= 0 ? 0 : lo / T;
}

/* ---- online softmax (FlashAttention-2) ------------------------------------------------- */
/* Running row state: m = max score so far, l = sum exp(s - m). Empty: m = -inf, l = 0. */
typedef struct { float m, l; } moa_cu_softmax;

MOA_HD moa_cu_softmax moa_cu_softmax_init(void) {
    moa_cu_softmax s;
    s.m = -INFINITY;
    s.l = 0.0f;
    return s;
}
/* Rescale factor exp(m_old - m_new) with exp(-inf - -inf) := 1 (both empty) and
 * exp(-inf - finite) = 0. */
MOA_HD float moa_cu_rescale(float m_old, float m_new) {
    if (m_old == m_new) return 1.0f;
    return expf(m_old - m_new);
}
/* Fold a tile whose max score is tmax into the state: returns m_new (= max(m, tmax)) and
 * stores the factor the accumulators (l and O) must be multiplied by in *corr. The caller
 * then adds sum_j exp(s_j - m_new) to l and sum_j exp(s_j - m_new) v_j to O. */
MOA_HD float moa_cu_softmax_step(moa_cu_softmax *st, float tmax, float *corr) {
    const float mn = tmax > st->m ? tmax : st->m;
    *corr = moa_cu_rescale(st->m, mn);
    st->l *= *corr;
    st->m = mn;
    return mn;
}
/* Log-sum-exp of a finished row: m + ln l (-inf if nothing was visible). */
MOA_HD float moa_cu_softmax_lse(moa_cu_softmax st) {
    return st.l > 0.0f ? st.m + logf(st.l) : -INFINITY;
}
/* Merge two partial states over disjoint key sets: weights of each side's (unnormalised)
 * accumulator are returned in *wa, *wb (O = wa Oa + wb Ob, l = wa la + wb lb). */
MOA_HD moa_cu_softmax moa_cu_softmax_merge(moa_cu_softmax a, moa_cu_softmax b, float *wa,
                                           float *wb) {
    moa_cu_softmax r;
    r.m = a.m > b.m ? a.m : b.m;
    *wa = a.l > 0.0f ? moa_cu_rescale(a.m, r.m) : 0.0f;
    *wb = b.l > 0.0f ? moa_cu_rescale(b.m, r.m) : 0.0f;
    r.l = *wa * a.l + *wb * b.l;
    return r;
}

/* ---- influence (attn-train.h) ---------------------------------------------------------- */
/* Distance bin of entry (i, j): -1 for a sink column (j < sink), floor((i - j) / block)
 * otherwise; -2 if the entry is not causal (j > i) and counts nowhere. */
MOA_HD int64_t moa_cu_dist_bin(int64_t i, int64_t j, int64_t sink, int64_t block) {
    if (j > i) return -2;
    if (j < sink) return -1;
    return (i - j) / block;
}
/* E of an entry that is not its row's dominant one (P <= 1/2), as the CPU tile step does it
 * in float: E = -P (dP - D) / max(1 + eps - P, eps + 2^-24). */
MOA_HD float moa_cu_influence(float p, float dp, float D, float eps) {
    const float ds = p * (dp - D);
    const float den0 = (1.0f + eps) - p, den_min = eps + 5.9604644775390625e-8f; /* 2^-24 */
    return -ds / (den0 > den_min ? den0 : den_min);
}
/* E of the dominant entry (P > 1/2, at most one per row), from the row's other entries:
 * A = sum of their P, B = sum of their P dP (double):
 *   E = -P (A dP - B) / max(A + eps, eps + 2^-24);   row 0 (key 0 only): E = -P dP. */
MOA_HD double moa_cu_influence_dominant(double P, double dp, double A, double B, double eps,
                                        int row0) {
    if (row0) return -P * dp;
    const double den0 = A + eps, den_min = eps + 5.9604644775390625e-8;
    return -P * (A * dp - B) / (den0 > den_min ? den0 : den_min);
}

/* ---- ring buffers (runtime/cache.h) ---------------------------------------------------- */
/* Slot of position p in a unit with S sink slots and a ring of R: p < S -> p, else
 * S + (p - S) mod R; -1 if it has no slot (R == 0 and p >= S). */
MOA_HD int64_t moa_cu_ring_slot(int64_t p, int64_t S, int64_t R) {
    if (p < S) return p;
    if (R <= 0) return -1;
    return S + (p - S) % R;
}
/* Position held by `slot` once n tokens (positions 0..n-1) have been appended with the
 * runtime's policy (sinks, then the last R positions in the ring); -1 if the slot is empty. */
MOA_HD int64_t moa_cu_slot_pos(int64_t slot, int64_t n, int64_t S, int64_t R) {
    if (slot < S) return slot < n ? slot : -1;
    const int64_t r = slot - S, last = n - 1 - S;     /* ring offset of the newest position */
    if (R <= 0 || r >= R || last < r) return -1;
    return S + r + R * ((last - r) / R);
}

/* ---- half precision (bit-exact with kernels/cpu/quant.c) ------------------------------- */
MOA_HD float moa_cu_bits_f32(uint32_t b) { float f; memcpy(&f, &b, 4); return f; }
MOA_HD uint32_t moa_cu_f32_bits(float f) { uint32_t b; memcpy(&b, &f, 4); return b; }

MOA_HD float moa_cu_f16_to_f32(uint16_t h) {
    const uint32_t sign = (uint32_t)(h >> 15) << 31;
    const uint32_t e = (h >> 10) & 31, man = h & 1023;
    if (e == 0) {
        if (man == 0) return moa_cu_bits_f32(sign);
        /* subnormal: man * 2^-24 (exact in float) */
        return moa_cu_bits_f32(moa_cu_f32_bits((float)man * 5.9604644775390625e-8f) | sign);
    }
    if (e == 31) return moa_cu_bits_f32(sign | 0x7f800000u | (man << 13));
    return moa_cu_bits_f32(sign | ((e + 112) << 23) | (man << 13));
}
MOA_HD uint16_t moa_cu_f32_to_f16(float f) {   /* round to nearest even */
    const uint32_t x = moa_cu_f32_bits(f);
    const uint32_t sign = (x >> 16) & 0x8000, ax = x & 0x7fffffff;
    if (ax > 0x7f800000) return (uint16_t)(sign | 0x7e00);          /* NaN */
    if (ax >= 0x477ff000) return (uint16_t)(sign | 0x7c00);         /* overflow -> inf */
    if (ax < 0x38800000) {                                           /* subnormal or zero */
        /* value in units of 2^-24, rounded to nearest even (exact product, then RNE) */
        const float m = moa_cu_bits_f32(ax) * 16777216.0f;
        const uint32_t r = (uint32_t)m;
        const float frac = m - (float)r;
        const uint32_t up = frac > 0.5f || (frac == 0.5f && (r & 1));
        return (uint16_t)(sign | (r + up));
    }
    const uint32_t e = (ax >> 23) - 112, man = ax & 0x7fffff;
    uint32_t h = (e << 10) | (man >> 13);
    const uint32_t rest = man & 0x1fff;
    if (rest > 0x1000 || (rest == 0x1000 && (h & 1))) h++;
    return (uint16_t)(sign | h);
}
MOA_HD float moa_cu_bf16_to_f32(uint16_t h) { return moa_cu_bits_f32((uint32_t)h << 16); }
MOA_HD uint16_t moa_cu_f32_to_bf16(float f) {  /* round to nearest even */
    uint32_t x = moa_cu_f32_bits(f);
    if ((x & 0x7fffffff) > 0x7f800000) return (uint16_t)((x >> 16) | 0x40);
    x += 0x7fff + ((x >> 16) & 1);
    return (uint16_t)(x >> 16);
}

/* ---- ggml blocks (32 values each; layouts as in kernels/cpu/quant.c) ------------------- */
MOA_HD uint16_t moa_cu_rd16(const uint8_t *p) { return (uint16_t)(p[0] | p[1] << 8); }
/* Value j (0..31) of a Q4_0 block [d f16][16 bytes: lo nibble = j, hi nibble = j + 16]:
 * (q - 8) d. */
MOA_HD float moa_cu_q4_0_value(const uint8_t *blk, int j) {
    const float d = moa_cu_f16_to_f32(moa_cu_rd16(blk));
    const int q = j < 16 ? (blk[2 + j] & 15) : (blk[2 + j - 16] >> 4);
    return MOA_CU_MUL((float)(q - 8), d);
}
/* Q4_1 block [d f16][m f16][16 bytes]: q d + m. */
MOA_HD float moa_cu_q4_1_value(const uint8_t *blk, int j) {
    const float d = moa_cu_f16_to_f32(moa_cu_rd16(blk)), m = moa_cu_f16_to_f32(moa_cu_rd16(blk + 2));
    const int q = j < 16 ? (blk[4 + j] & 15) : (blk[4 + j - 16] >> 4);
    return MOA_CU_ADD(MOA_CU_MUL((float)q, d), m);
}
/* Q8_0 block [d f16][32 int8]: q d. */
MOA_HD float moa_cu_q8_0_value(const uint8_t *blk, int j) {
    const float d = moa_cu_f16_to_f32(moa_cu_rd16(blk));
    return MOA_CU_MUL((float)(int8_t)blk[2 + j], d);
}
/* The fifth bit of value j (0..31) of a Q5_0/Q5_1 block: bit j of the 32-bit little-endian
 * qh, moved to bit 4. */
MOA_HD int moa_cu_q5_hbit(const uint8_t *qh, int j) { return ((qh[j >> 3] >> (j & 7)) & 1) << 4; }
/* Q5_0 block [d f16][qh 4 bytes][16 bytes: lo nibble = j, hi nibble = j + 16]: (q - 16) d,
 * q = nibble | fifth bit. */
MOA_HD float moa_cu_q5_0_value(const uint8_t *blk, int j) {
    const float d = moa_cu_f16_to_f32(moa_cu_rd16(blk));
    const int q = (j < 16 ? (blk[6 + j] & 15) : (blk[6 + j - 16] >> 4)) | moa_cu_q5_hbit(blk + 2, j);
    return MOA_CU_MUL((float)(q - 16), d);
}
/* Q5_1 block [d f16][m f16][qh 4 bytes][16 bytes]: q d + m. */
MOA_HD float moa_cu_q5_1_value(const uint8_t *blk, int j) {
    const float d = moa_cu_f16_to_f32(moa_cu_rd16(blk)), m = moa_cu_f16_to_f32(moa_cu_rd16(blk + 2));
    const int q = (j < 16 ? (blk[8 + j] & 15) : (blk[8 + j - 16] >> 4)) | moa_cu_q5_hbit(blk + 4, j);
    return MOA_CU_ADD(MOA_CU_MUL((float)q, d), m);
}

/* ---- k-quant super-blocks (256 values; layouts as in kernels/cpu/quant.c) ---------------- */
/* 6-bit scale and min of sub-block s (0..7) from the 12 scale bytes of a Q4_K/Q5_K block:
 * s < 4: low 6 bits of bytes s and s + 4; s >= 4: a nibble of byte s + 4 below the top two
 * bits of byte s - 4 (scale) or s (min). */
MOA_HD void moa_cu_k_scale_min(const uint8_t *sc, int s, int *scale, int *min) {
    if (s < 4) {
        *scale = sc[s] & 63;
        *min = sc[s + 4] & 63;
    } else {
        *scale = (sc[s + 4] & 15) | ((sc[s - 4] >> 6) << 4);
        *min = (sc[s + 4] >> 4) | ((sc[s] >> 6) << 4);
    }
}
/* Value j (0..255) of a Q4_K block [d f16][dmin f16][12 scale bytes][128 bytes] (five = 0)
 * or a Q5_K block [d][dmin][12 scale bytes][qh 32 bytes][128 bytes] (five = 1). Chunk
 * c = j / 64 of 32 bytes holds sub-block 2c in its low nibbles and 2c + 1 in its high ones
 * (l = j mod 32 the byte); Q5_K's fifth bit of sub-block s is bit s of qh[l].
 * d sc q - dmin m, evaluated as ((d sc) q) - (dmin m) like moa_dequant_row. */
MOA_HD float moa_cu_qk45_value(const uint8_t *blk, int j, int five) {
    const float d = moa_cu_f16_to_f32(moa_cu_rd16(blk)), dmin = moa_cu_f16_to_f32(moa_cu_rd16(blk + 2));
    const int s = j >> 5, l = j & 31;                 /* sub-block, byte within its chunk */
    int sc, mn;
    moa_cu_k_scale_min(blk + 4, s, &sc, &mn);
    const uint8_t qb = blk[(five ? 48 : 16) + 32 * (s >> 1) + l];
    int q = s & 1 ? qb >> 4 : qb & 15;
    if (five) q |= ((blk[16 + l] >> s) & 1) << 4;
    return MOA_CU_SUB(MOA_CU_MUL(MOA_CU_MUL(d, (float)sc), (float)q), MOA_CU_MUL(dmin, (float)mn));
}
MOA_HD float moa_cu_q4_k_value(const uint8_t *blk, int j) { return moa_cu_qk45_value(blk, j, 0); }
MOA_HD float moa_cu_q5_k_value(const uint8_t *blk, int j) { return moa_cu_qk45_value(blk, j, 1); }
/* Value j (0..255) of a Q6_K block [ql 128 bytes][qh 64 bytes][16 int8 scales][d f16]:
 * half h = j / 128 uses ql[64h..], qh[32h..], scales[8h..]; in it quarter k = (j mod 128) / 32
 * and l = j mod 32 take the low (k < 2) or high (k >= 2) nibble of ql[64h + l + 32 (k & 1)]
 * and bits 2k, 2k+1 of qh[32h + l] as bits 4-5, with scale scales[8h + l / 16 + 2k]:
 * (d s) (q - 32), like moa_dequant_row. */
MOA_HD float moa_cu_q6_k_value(const uint8_t *blk, int j) {
    const int h = j >> 7, k = (j >> 5) & 3, l = j & 31;
    const uint8_t lb = blk[64 * h + l + 32 * (k & 1)];
    const int q = (k >= 2 ? lb >> 4 : lb & 15) | (((blk[128 + 32 * h + l] >> (2 * k)) & 3) << 4);
    const float d = moa_cu_f16_to_f32(moa_cu_rd16(blk + 208));
    const float s = (float)(int8_t)blk[192 + 8 * h + (l >> 4) + 2 * k];
    return MOA_CU_MUL(MOA_CU_MUL(d, s), (float)(q - 32));
}

/* ---- KV storage types (kernels/cpu/attn.c: moa_attn_kv_store_row / _load_row_ref) -------
 * Values as moa_attn_kv_type / moa_kv_type: 0 f32, 1 f16, 2 bf16, 3 q8_0. A row of hd values
 * takes 4 hd, 2 hd, 2 hd or 34 ceil(hd/32) bytes (little-endian; q8_0: GGUF blocks
 * [d f16][32 int8], a partial last block zero-padded). Storing must give the CPU's bytes:
 * f16 saturates at +-65504 before rounding to nearest even, bf16 rounds to nearest even,
 * q8_0 takes d = f16(sat(max|x| / 127)) and q = rint(x / d) clamped to [-127, 127] (0 when
 * d = 0), with a true division (never x * (1/d)) as the CPU does. */
#define MOA_CU_KV_F32 0
#define MOA_CU_KV_F16 1
#define MOA_CU_KV_BF16 2
#define MOA_CU_KV_Q8_0 3
#define MOA_CU_KV_N_TYPES 4

#if defined(__CUDA_ARCH__)
#define MOA_CU_DIV(a, b) __fdiv_rn((a), (b))
#else
#define MOA_CU_DIV(a, b) ((a) / (b))
#endif

MOA_HD size_t moa_cu_kv_row_bytes(int t, int hd) {
    return t == MOA_CU_KV_F32 ? 4 * (size_t)hd
         : t == MOA_CU_KV_Q8_0 ? (size_t)(hd + 31) / 32 * 34 : 2 * (size_t)hd;
}
/* Store units of a row: values for f32/f16/bf16, blocks of 32 for q8_0. */
MOA_HD int moa_cu_kv_store_units(int t, int hd) { return t == MOA_CU_KV_Q8_0 ? (hd + 31) / 32 : hd; }

MOA_HD void moa_cu_wr16(uint8_t *p, uint16_t h) { p[0] = (uint8_t)h; p[1] = (uint8_t)(h >> 8); }
MOA_HD float moa_cu_sat_f16(float x) { return x > 65504.0f ? 65504.0f : x < -65504.0f ? -65504.0f : x; }

/* Store unit j (< moa_cu_kv_store_units) of the hd floats x into the row at `row`. */
MOA_HD void moa_cu_kv_store(int t, uint8_t *row, const float *x, int hd, int j) {
    if (t == MOA_CU_KV_F32) {
        memcpy(row + 4 * (size_t)j, &x[j], 4);
    } else if (t == MOA_CU_KV_F16) {
        moa_cu_wr16(row + 2 * (size_t)j, moa_cu_f32_to_f16(moa_cu_sat_f16(x[j])));
    } else if (t == MOA_CU_KV_BF16) {
        moa_cu_wr16(row + 2 * (size_t)j, moa_cu_f32_to_bf16(x[j]));
    } else {
        uint8_t *blk = row + 34 * (size_t)j;
        const int b0 = 32 * j, nb = hd - b0 < 32 ? hd - b0 : 32;
        float amax = 0.0f;
        for (int i = 0; i < nb; i++) amax = fmaxf(amax, fabsf(x[b0 + i]));
        const uint16_t dh = moa_cu_f32_to_f16(moa_cu_sat_f16(MOA_CU_DIV(amax, 127.0f)));
        const float d = moa_cu_f16_to_f32(dh);
        moa_cu_wr16(blk, dh);
        for (int i = 0; i < 32; i++) {
            float q = 0.0f;
            if (i < nb && d > 0.0f) {
                q = rintf(MOA_CU_DIV(x[b0 + i], d));
                q = q > 127.0f ? 127.0f : q < -127.0f ? -127.0f : q;
            }
            blk[2 + i] = (uint8_t)(int8_t)q;
        }
    }
}
/* Value d of a stored row, widened to f32 (exact). */
MOA_HD float moa_cu_kv_value(int t, const uint8_t *row, int d) {
    if (t == MOA_CU_KV_F32) {
#if defined(__CUDA_ARCH__)
        return ((const float *)row)[d];   /* f32 rows start 4-byte aligned: one load */
#else
        float f;
        memcpy(&f, row + 4 * (size_t)d, 4);
        return f;
#endif
    }
    if (t == MOA_CU_KV_F16) return moa_cu_f16_to_f32(moa_cu_rd16(row + 2 * (size_t)d));
    if (t == MOA_CU_KV_BF16) return moa_cu_bf16_to_f32(moa_cu_rd16(row + 2 * (size_t)d));
    return moa_cu_q8_0_value(row + 34 * (size_t)(d >> 5), d & 31);
}

/* ---- RoPE (moa/rope.h) ------------------------------------------------------------ */
/* Element d of a head vector rotated by theta_i = pos * inv_freq_i, given its pair (x0, x1):
 * y[first] = x0 c - x1 s,  y[second] = x0 s + x1 c (`odd`: d is the pair's second element),
 * with c, s = cos, sin(theta) taken in double and rounded to float (as the CPU tables are). */
MOA_HD float moa_cu_rope_elem(float x0, float x1, int odd, double theta) {
    const float c = (float)cos(theta), s = (float)sin(theta);
    return odd ? x0 * s + x1 * c : x0 * c - x1 * s;
}
/* The pair of dim d < rope_dim: returns its index i (theta_i = pos base^(-2i/rope_dim)), sets
 * *partner to the other dim of the pair and *odd to 1 if d is the pair's second element.
 *   normal pairing (neox 0): pair i = (x[2i], x[2i+1]):          i = d/2, partner d^1;
 *   NEOX pairing (neox 1):   pair i = (x[i], x[i + rope_dim/2]): i = d mod rope_dim/2,
 *                            partner d -/+ rope_dim/2. */
MOA_HD int moa_cu_rope_pair(int d, int rope_dim, int neox, int *partner, int *odd) {
    if (!neox) {
        *partner = d ^ 1;
        *odd = d & 1;
        return d >> 1;
    }
    const int half = rope_dim >> 1;
    *odd = d >= half;
    *partner = *odd ? d - half : d + half;
    return *odd ? d - half : d;
}
/* Element d (< rope_dim) of head vector x rotated at angle pos * inv_freq[i] (i the pair). */
MOA_HD float moa_cu_rope_at(const float *x, int d, int rope_dim, int neox, double pos,
                            const double *inv_freq) {
    int pd, odd;
    const int i = moa_cu_rope_pair(d, rope_dim, neox, &pd, &odd);
    return odd ? moa_cu_rope_elem(x[pd], x[d], 1, pos * inv_freq[i])
               : moa_cu_rope_elem(x[d], x[pd], 0, pos * inv_freq[i]);
}

/* ---- linear attention (Lightning Attention-2, inclusive convention) --------------------- */
/* lambda^delta = exp(-s delta) for delta >= 0 (never lambda^-delta: overflow); 0 if delta < 0
 * (masked entries are exactly 0). */
MOA_HD float moa_cu_decay_pow(float s, int64_t delta) {
    if (delta < 0) return 0.0f;
    return expf(-s * (float)delta);
}

/* ---- the profiler's elementwise backward (kernels/cpu/ops.c uses the same helper) ----- */
/* SwiGLU a = silu(g) u with silu(g) = g sg, sg = 1 / (1 + exp(-g)); for upstream da:
 *   dg = da u sg (1 + g (1 - sg)),   du = da g sg. */
MOA_HD void moa_cu_swiglu_bwd(float g, float u, float da, float *dg, float *du) {
    const float sg = 1.0f / (1.0f + expf(-g));
    *dg = da * u * sg * (1.0f + g * (1.0f - sg));
    *du = da * g * sg;
}

#endif /* MOA_CUDA_COMMON_CUH */
