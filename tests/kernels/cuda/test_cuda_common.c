/* test_cuda_common.c - the CUDA kernels' shared helpers (kernels/cuda/moa-cuda-common.cuh,
 * __host__ __device__ under nvcc, plain static inline C here) and the device choice
 * (moa/backend.h), checked on the CPU against the CPU references: quant.c (f16/bf16, block
 * decoding), attn.c's KV storage rows (stored bytes and widened values), the one mask, runtime/cache.c's slot policy, attn-train's influence histograms
 * (moa_attn_bwd_influence_ref) and a direct softmax. Needs no CUDA toolkit. */
#include "moa-cuda-common.cuh"
#include "moa/backend.h"
#include "moa/attn.h"
#include "moa/attn-train.h"
#include "moa/quant.h"
#include "moa/rope.h"
#include "test.h"
#include "quant_blocks.h"

#include <stdint.h>

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;
static uint32_t rnd(void) {   /* xorshift64* */
    rng_state ^= rng_state >> 12; rng_state ^= rng_state << 25; rng_state ^= rng_state >> 27;
    return (uint32_t)((rng_state * 0x2545f4914f6cdd1dull) >> 32);
}
static float rndf(void) { return (float)rnd() / 4294967296.0f * 2.0f - 1.0f; }   /* [-1, 1) */

static uint32_t fbits(float f) { uint32_t b; memcpy(&b, &f, 4); return b; }

TEST(half_conversions_match_quant_c) {
    int bad = 0;
    for (uint32_t h = 0; h < 65536; h++) {
        if (fbits(moa_cu_f16_to_f32((uint16_t)h)) != fbits(moa_f16_to_f32((uint16_t)h))) bad++;
        if (fbits(moa_cu_bf16_to_f32((uint16_t)h)) != fbits(moa_bf16_to_f32((uint16_t)h))) bad++;
    }
    CHECK_EQ_INT(bad, 0);
    /* f32 -> f16 / bf16: special values, every f16 boundary region, random bit patterns */
    const float special[] = {0.0f, -0.0f, 1.0f, -1.0f, 65504.0f, 65520.0f, 65519.99f, 6.1035156e-05f,
                             5.9604645e-08f, 2.9802322e-08f, 2.9802326e-08f, 8.940697e-08f,
                             1e-10f, 3.0e38f, INFINITY, -INFINITY, NAN};
    for (size_t i = 0; i < sizeof special / sizeof special[0]; i++) {
        CHECK_EQ_INT(moa_cu_f32_to_f16(special[i]), moa_f32_to_f16(special[i]));
        CHECK_EQ_INT(moa_cu_f32_to_bf16(special[i]), moa_f32_to_bf16(special[i]));
    }
    bad = 0;
    for (int t = 0; t < 2000000; t++) {
        uint32_t b = rnd();
        if (t % 2) b = (b & 0x807fffffu) | ((uint32_t)(100 + rnd() % 50) << 23);   /* f16 range */
        float f;
        memcpy(&f, &b, 4);
        if (moa_cu_f32_to_f16(f) != moa_f32_to_f16(f)) bad++;
        if (moa_cu_f32_to_bf16(f) != moa_f32_to_bf16(f)) bad++;
    }
    CHECK_EQ_INT(bad, 0);
}

/* Value e of a row of type t through the shared block decoders (what k_dequant does). */
static float cu_value(moa_ggml_type t, const uint8_t *row, int64_t e) {
    switch (t) {
    case MOA_GGML_Q4_0: return moa_cu_q4_0_value(row + (e / 32) * 18, (int)(e % 32));
    case MOA_GGML_Q4_1: return moa_cu_q4_1_value(row + (e / 32) * 20, (int)(e % 32));
    case MOA_GGML_Q5_0: return moa_cu_q5_0_value(row + (e / 32) * 22, (int)(e % 32));
    case MOA_GGML_Q5_1: return moa_cu_q5_1_value(row + (e / 32) * 24, (int)(e % 32));
    case MOA_GGML_Q8_0: return moa_cu_q8_0_value(row + (e / 32) * 34, (int)(e % 32));
    case MOA_GGML_Q4_K: return moa_cu_q4_k_value(row + (e / 256) * 144, (int)(e % 256));
    case MOA_GGML_Q5_K: return moa_cu_q5_k_value(row + (e / 256) * 176, (int)(e % 256));
    case MOA_GGML_Q6_K: return moa_cu_q6_k_value(row + (e / 256) * 210, (int)(e % 256));
    default: return NAN;
    }
}
/* values whose bits differ */
static int64_t n_diff(const float *a, const float *b, int64_t n) {
    int64_t bad = 0;
    for (int64_t i = 0; i < n; i++) bad += fbits(a[i]) != fbits(b[i]);
    return bad;
}

/* The packer of quant_blocks.h puts every 6-bit scale and min where ggml's layout reads it. */
TEST(k_scale_packer_roundtrip) {
    int bad = 0;
    for (int k = 0; k < 64; k++) {
        int sc[8], mn[8];
        uint8_t s[12];
        for (int j = 0; j < 8; j++) { sc[j] = (k + 5 * j) & 63; mn[j] = (k * 7 + 3 * j + 40) & 63; }
        qb_pack_k_scales(s, sc, mn);
        for (int j = 0; j < 8; j++) {
            int a, b, c, d;
            qb_unpack_k_scale(s, j, &a, &b);
            moa_cu_k_scale_min(s, j, &c, &d);
            bad += a != sc[j] || b != mn[j] || c != sc[j] || d != mn[j];
        }
    }
    CHECK_EQ_INT(bad, 0);
}

/* Every block type's shared decoder (the device's arithmetic, compiled here as C) gives
 * moa_dequant_row's bits: moderate random blocks, and hard ones (f16 scales and mins at the
 * extremes - zeros, subnormals, +-65504 - or any finite bit pattern; every 6-bit scale/min
 * value at every position of Q4_K/Q5_K, every int8 scale at every position of Q6_K). */
TEST(block_decoding_matches_dequant_row) {
    enum { NBLK = 512 };   /* 512 x 256 values for k-quants: two full scale walks each */
    uint8_t *buf = malloc((size_t)NBLK * 210);
    float *ref = malloc(sizeof(float) * NBLK * 256), *got = malloc(sizeof(float) * NBLK * 256);
    for (int k = 0; k < QB_N_TYPES; k++) {
        const moa_ggml_type t = qb_types[k];
        uint32_t be, bb;
        moa_ggml_type_info(t, &be, &bb);
        const int64_t n = (int64_t)NBLK * be;
        int64_t bad = 0;
        for (int rep = 0; rep < 6; rep++) {
            qb_fill(t, buf, NBLK, rep % 2);
            moa_dequant_row(t, buf, ref, n);
            for (int64_t e = 0; e < n; e++) got[e] = cu_value(t, buf, e);
            bad += n_diff(got, ref, n);
        }
        CHECK_MSG(bad == 0, "%s: %lld values differ from moa_dequant_row", moa_ggml_type_name(t), (long long)bad);
    }
    free(buf); free(ref); free(got);
}

/* Contraction cannot change a bit: every product in these formats is exact in f32 (an f16
 * scale has an 11-bit significand; times a 6-bit scale and a 5-bit quant, or an int8 scale
 * and a 6-bit quant, stays within 24 bits, and the range cannot overflow or underflow), so
 * only the final add/subtract of Q4_1/Q5_1/Q4_K/Q5_K rounds, and fusing it with a product
 * (fmaf) or reassociating the products (Q6_K d (s (q - 32))) gives the same bits. Checked on
 * hard blocks: the fused forms equal moa_dequant_row everywhere. (MOA_CU_MUL/ADD/SUB keep
 * __fmul_rn & co. on the device anyway.) */
static float fused_value(moa_ggml_type t, const uint8_t *row, int64_t e) {
    if (t == MOA_GGML_Q4_1 || t == MOA_GGML_Q5_1) {
        const int bb = t == MOA_GGML_Q4_1 ? 20 : 24;
        const uint8_t *blk = row + (e / 32) * bb;
        const float d = moa_f16_to_f32(qb_get16(blk)), m = moa_f16_to_f32(qb_get16(blk + 2));
        uint8_t one[24];   /* q from a copy with d = 1, m = 0 */
        memcpy(one, blk, (size_t)bb);
        qb_put16(one, 0x3c00); qb_put16(one + 2, 0);
        return fmaf(cu_value(t, one, e % 32), d, m);
    }
    if (t == MOA_GGML_Q4_K || t == MOA_GGML_Q5_K) {
        const int bb = t == MOA_GGML_Q4_K ? 144 : 176, j = (int)(e % 256);
        const uint8_t *blk = row + (e / 256) * bb;
        const float d = moa_f16_to_f32(qb_get16(blk)), dmin = moa_f16_to_f32(qb_get16(blk + 2));
        int sc, mn;
        qb_unpack_k_scale(blk + 4, j / 32, &sc, &mn);
        uint8_t one[176];   /* q from a copy with d = 1, dmin = 0 and this sub-block's scale 1 */
        memcpy(one, blk, (size_t)bb);
        qb_put16(one, 0x3c00); qb_put16(one + 2, 0);
        int scs[8], mns[8];
        for (int i = 0; i < 8; i++) qb_unpack_k_scale(blk + 4, i, &scs[i], &mns[i]);
        scs[j / 32] = 1;
        qb_pack_k_scales(one + 4, scs, mns);
        const float q = cu_value(t, one, j);
        return fmaf(d * (float)sc, q, -(dmin * (float)mn));
    }
    if (t == MOA_GGML_Q6_K) {
        const uint8_t *blk = row + (e / 256) * 210;
        const int j = (int)(e % 256), h = j >> 7, k = (j >> 5) & 3, l = j & 31;
        const float d = moa_f16_to_f32(qb_get16(blk + 208));
        const int s = (int8_t)blk[192 + 8 * h + (l >> 4) + 2 * k];
        uint8_t one[210];   /* q - 32 from a copy with d = 1 and scale 1 */
        memcpy(one, blk, 210);
        qb_put16(one + 208, 0x3c00);
        one[192 + 8 * h + (l >> 4) + 2 * k] = 1;
        return d * ((float)s * cu_value(t, one, j));
    }
    return NAN;
}

TEST(fused_forms_give_the_same_bits) {
    enum { NBLK = 512 };
    uint8_t *buf = malloc((size_t)NBLK * 210);
    float *ref = malloc(sizeof(float) * NBLK * 256);
    const moa_ggml_type types[] = {MOA_GGML_Q4_1, MOA_GGML_Q5_1, MOA_GGML_Q4_K, MOA_GGML_Q5_K, MOA_GGML_Q6_K};
    for (size_t k = 0; k < sizeof types / sizeof types[0]; k++) {
        const moa_ggml_type t = types[k];
        uint32_t be;
        moa_ggml_type_info(t, &be, NULL);
        const int64_t n = (int64_t)NBLK * be;
        int64_t bad = 0;
        for (int rep = 0; rep < 4; rep++) {
            qb_fill(t, buf, NBLK, rep % 2);
            moa_dequant_row(t, buf, ref, n);
            for (int64_t e = 0; e < n; e++) {
                const float f = fused_value(t, buf, e);
                bad += fbits(f) != fbits(ref[e]);
            }
        }
        CHECK_MSG(bad == 0, "%s: the fused form differs at %lld values", moa_ggml_type_name(t), (long long)bad);
    }
    free(buf); free(ref);
}

/* Controls: the comparison of block_decoding_matches_dequant_row can fail.
 * (1) A reference computed from blocks with one bit flipped (a scale byte of k-quants, qh of
 *     Q5_0/Q5_1, a payload byte else) differs from the decoders' output on the original.
 * (2) Decoders with plausible layout mistakes differ from moa_dequant_row on the hard blocks:
 *     Q4_K/Q5_K scales 4-7 without their top two bits (right whenever those scales are < 16)
 *     or with the scale's and the min's top bits swapped; Q5_K's fifth bits of a chunk's two
 *     sub-blocks swapped; Q5_0/Q5_1 values 16-31 reading qh bits 0-15; Q6_K sub-block scales
 *     indexed by quarter (l/16 + k) instead of l/16 + 2k. */
static float mutant_value(moa_ggml_type t, const uint8_t *row, int64_t e, int which) {
    if (t == MOA_GGML_Q5_0 || t == MOA_GGML_Q5_1) {   /* value j >= 16: bit j - 16 of qh */
        const int bb = t == MOA_GGML_Q5_0 ? 22 : 24, j = (int)(e % 32);
        uint8_t blk[24];
        memcpy(blk, row + (e / 32) * bb, (size_t)bb);
        uint8_t *qh = blk + (t == MOA_GGML_Q5_0 ? 2 : 4);
        if (j >= 16) {
            const int bit = (qh[(j - 16) >> 3] >> ((j - 16) & 7)) & 1;
            qh[j >> 3] = (uint8_t)((qh[j >> 3] & ~(1 << (j & 7))) | bit << (j & 7));
        }
        return cu_value(t, blk, j);
    }
    if (t == MOA_GGML_Q4_K || t == MOA_GGML_Q5_K) {
        const int bb = t == MOA_GGML_Q4_K ? 144 : 176, j = (int)(e % 256), sb = j / 32;
        uint8_t blk[176];
        memcpy(blk, row + (e / 256) * bb, (size_t)bb);
        int sc[8], mn[8];
        for (int i = 0; i < 8; i++) qb_unpack_k_scale(blk + 4, i, &sc[i], &mn[i]);
        if (which == 0) { sc[sb] &= sb >= 4 ? 15 : 63; mn[sb] &= sb >= 4 ? 15 : 63; }
        else if (which == 1 && sb >= 4) {
            const int a = sc[sb] >> 4, b = mn[sb] >> 4;
            sc[sb] = (sc[sb] & 15) | b << 4;
            mn[sb] = (mn[sb] & 15) | a << 4;
        } else if (which == 2 && t == MOA_GGML_Q5_K) {   /* swap qh bits 2c and 2c + 1 */
            uint8_t *qh = blk + 16 + j % 32;
            const int c = sb / 2, lo = (*qh >> (2 * c)) & 1, hi = (*qh >> (2 * c + 1)) & 1;
            *qh = (uint8_t)((*qh & ~(3 << (2 * c))) | hi << (2 * c) | lo << (2 * c + 1));
        }
        qb_pack_k_scales(blk + 4, sc, mn);
        return cu_value(t, blk, j);
    }
    if (t == MOA_GGML_Q6_K) {
        const int j = (int)(e % 256), h = j >> 7, k = (j >> 5) & 3, l = j & 31;
        uint8_t blk[210];
        memcpy(blk, row + (e / 256) * 210, 210);
        blk[192 + 8 * h + (l >> 4) + 2 * k] = row[(e / 256) * 210 + 192 + 8 * h + (l >> 4) + k];
        return cu_value(t, blk, j);
    }
    return NAN;
}

TEST(block_decoding_controls) {
    enum { NBLK = 512 };
    uint8_t *buf = malloc((size_t)NBLK * 210), *flip = malloc((size_t)NBLK * 210);
    float *ref = malloc(sizeof(float) * NBLK * 256), *got = malloc(sizeof(float) * NBLK * 256);
    for (int k = 0; k < QB_N_TYPES; k++) {
        const moa_ggml_type t = qb_types[k];
        uint32_t be, bb;
        moa_ggml_type_info(t, &be, &bb);
        const int64_t n = (int64_t)NBLK * be;
        qb_fill(t, buf, NBLK, 0);
        for (int64_t e = 0; e < n; e++) got[e] = cu_value(t, buf, e);
        moa_dequant_row(t, buf, ref, n);
        CHECK_EQ_INT(n_diff(got, ref, n), 0);
        memcpy(flip, buf, (size_t)NBLK * bb);
        flip[qb_sensitive_byte(t)] ^= 1;
        moa_dequant_row(t, flip, ref, n);
        const int64_t d1 = n_diff(got, ref, n);
        CHECK_MSG(d1 > 0 && d1 <= (int64_t)be, "%s: a flipped bit changed %lld values (want 1..%u)",
                  moa_ggml_type_name(t), (long long)d1, be);
        const int n_mut = t == MOA_GGML_Q5_K ? 3 : t == MOA_GGML_Q4_K ? 2 :
                          t == MOA_GGML_Q5_0 || t == MOA_GGML_Q5_1 || t == MOA_GGML_Q6_K ? 1 : 0;
        qb_fill(t, buf, NBLK, 1);
        moa_dequant_row(t, buf, ref, n);
        for (int w = 0; w < n_mut; w++) {
            for (int64_t e = 0; e < n; e++) got[e] = mutant_value(t, buf, e, w);
            const int64_t d2 = n_diff(got, ref, n);
            if (getenv("MOA_TEST_VERBOSE"))
                fprintf(stderr, "  %s mutant %d: differs at %lld of %lld values\n", moa_ggml_type_name(t), w,
                        (long long)d2, (long long)n);
            CHECK_MSG(d2 > 0, "%s: mutant decoder %d gives moa_dequant_row's bits", moa_ggml_type_name(t), w);
        }
    }
    free(buf); free(flip); free(ref); free(got);
}

/* KV storage rows: moa_cu_kv_store gives moa_attn_kv_store_row's bytes (every type, odd head
 * dims, ties, saturation, subnormals, q8_0 blocks with one large value) and moa_cu_kv_value
 * widens them as moa_attn_kv_load_row_ref does. Control: a row stored as another type of the
 * same size differs. */
TEST(kv_rows_match_attn_c) {
    const float specials[] = {1.0f + 0x1p-11f, 1.0f + 0x3p-11f, -(1.0f + 0x1p-11f), 65519.0f, 65520.0f,
                              1e6f, -1e6f, 0x1p-24f, 0x1p-25f, 0x3p-25f, 1e-8f, 0.1f, -0.0f, 3.0e38f,
                              1.0f + 0x1p-8f, 1.0f + 0x3p-8f, 0x1p-130f, 0.0f, 127.5f, -0.5f};
    const int nsp = (int)(sizeof specials / sizeof *specials);
    const int hds[] = {1, 7, 20, 31, 32, 40, 64, 77, 128, 256};
    int bad_bytes = 0, bad_vals = 0, rows = 0;
    for (int t = 0; t < MOA_CU_KV_N_TYPES; t++)
        for (size_t hi = 0; hi < sizeof hds / sizeof *hds; hi++) {
            const int hd = hds[hi];
            const size_t rb = moa_cu_kv_row_bytes(t, hd);
            CHECK_EQ_INT(rb, moa_attn_kv_row_bytes((moa_attn_kv_type)t, hd));
            for (int rep = 0; rep < 6; rep++) {
                float x[256], want[256], got[256];
                uint8_t a[1088], b[1088];
                for (int d = 0; d < hd; d++)
                    x[d] = rep == 0 ? specials[d % nsp] : rndf() * (rep == 4 ? 1e-3f : rep == 5 ? 300.0f : 3.0f);
                if (rep == 2 && hd > 3) x[hd / 2] = 40.0f;     /* one large value in a q8_0 block */
                if (rep == 3)   /* q8_0 ties: max 127/128 per block (d = 2^-7), x/d = k + 1/2 */
                    for (int d = 0; d < hd; d++)
                        x[d] = d % 32 == 0 ? 127.0f / 128 : ((float)(d % 9) - 4.5f) / 128;
                memset(a, 0xa5, sizeof a);
                memset(b, 0xa5, sizeof b);
                moa_attn_kv_store_row((moa_attn_kv_type)t, a, x, hd);
                for (int j = 0; j < moa_cu_kv_store_units(t, hd); j++) moa_cu_kv_store(t, b, x, hd, j);
                bad_bytes += memcmp(a, b, rb) != 0 || a[rb] != b[rb];   /* and nothing past the row */
                moa_attn_kv_load_row_ref((moa_attn_kv_type)t, want, a, hd);
                for (int d = 0; d < hd; d++) got[d] = moa_cu_kv_value(t, b, d);
                for (int d = 0; d < hd; d++) bad_vals += fbits(got[d]) != fbits(want[d]);
                rows++;
            }
        }
    CHECK_MSG(bad_bytes == 0 && bad_vals == 0, "%d of %d rows with other bytes, %d values differ",
              bad_bytes, rows, bad_vals);
    /* control: f16 and bf16 rows of the same values differ (the comparison can fail) */
    float x[40];
    uint8_t a[80], b[80];
    for (int d = 0; d < 40; d++) x[d] = rndf();
    moa_attn_kv_store_row(MOA_ATTN_KV_F16, a, x, 40);
    for (int j = 0; j < 40; j++) moa_cu_kv_store(MOA_CU_KV_BF16, b, x, 40, j);
    CHECK(memcmp(a, b, 80) != 0);
}

TEST(mask_and_tiles) {
    /* tile_needed agrees with "some (i, j) of the tiles is visible" */
    int bad = 0;
    for (int64_t sink = 0; sink <= 9; sink += 3)
        for (int64_t W = 0; W <= 40; W += 7)
            for (int64_t i0 = 0; i0 < 70; i0 += 5)
                for (int64_t nq = 1; nq <= 16; nq += 5)
                    for (int64_t j0 = 0; j0 < 80; j0 += 8) {
                        const int64_t bk = 8;
                        int any = 0;
                        for (int64_t i = i0; i < i0 + nq; i++)
                            for (int64_t j = j0; j < j0 + bk; j++)
                                any |= moa_mask_visible(i, j, sink, W);
                        if (any != moa_cu_tile_needed(i0, i0 + nq - 1, j0, bk, sink, W)) bad++;
                        /* the band's first tile never skips a visible non-sink key */
                        const int64_t ft = moa_cu_band_first_tile(i0, W, bk);
                        if (j0 / bk < ft && j0 >= sink && any) bad++;
                    }
    CHECK_EQ_INT(bad, 0);
    CHECK(moa_mask_visible(5, 5, 0, 1));
    CHECK(!moa_mask_visible(5, 6, 100, 100));
    CHECK(!moa_mask_visible(5, 5, 0, 0));        /* window 0 and no sink: nothing */
    CHECK(moa_mask_visible(100, 3, 4, 1));       /* sink column */
    CHECK(!moa_mask_visible(100, 4, 4, 96));     /* i - j = 96 = W */
    CHECK(moa_mask_visible(100, 5, 4, 96));
    CHECK_EQ_INT(moa_cu_tiles(65, 32), 3);
    CHECK_EQ_INT(moa_cu_tile_rows(65, 2, 32), 1);
    CHECK_EQ_INT(moa_cu_tile_rows(65, 3, 32), 0);
}

TEST(dist_bins_match_definition) {
    for (int64_t i = 0; i < 50; i++)
        for (int64_t j = 0; j < 50; j++) {
            const int64_t b = moa_cu_dist_bin(i, j, 7, 5);
            if (j > i) CHECK_EQ_INT(b, -2);
            else if (j < 7) CHECK_EQ_INT(b, -1);
            else CHECK_EQ_INT(b, (i - j) / 5);
        }
    /* a window W = k*block masks exactly bins >= k */
    for (int64_t k = 0; k < 6; k++)
        for (int64_t i = 0; i < 60; i++)
            for (int64_t j = 7; j <= i; j++)
                CHECK_EQ_INT(!moa_mask_visible(i, j, 7, k * 5), moa_cu_dist_bin(i, j, 7, 5) >= k);
}

/* runtime/cache.c's store policy: a chunk [p0, end) writes position a to slot a if a < S,
 * to S + (a - S) % R if a >= end - R. Simulated on a slot array, compared with slot_pos. */
TEST(ring_slots_match_cache_policy) {
    int bad = 0;
    int64_t slot_of[64];
    const int64_t Rs[] = {0, 1, 7, 13};
    for (int64_t S = 0; S <= 5; S += 5)
        for (int ri = 0; ri < 4; ri++) {
            const int64_t R = Rs[ri];
            for (int rep = 0; rep < 20; rep++) {
                for (int64_t s = 0; s < S + R; s++) slot_of[s] = -1;
                int64_t n = 0;
                while (n < 60) {
                    const int64_t len = rep % 2 ? 1 : 1 + rnd() % 17, end = n + len;
                    for (int64_t a = n; a < end; a++) {
                        int64_t slot = -1;
                        if (a < S) slot = a;
                        else if (R > 0 && a >= end - R) slot = S + (a - S) % R;
                        if (slot >= 0) {
                            slot_of[slot] = a;
                            if (moa_cu_ring_slot(a, S, R) != slot) bad++;
                        } else if (a < S || R > 0) {
                            if (R > 0 && moa_cu_ring_slot(a, S, R) != S + (a - S) % R) bad++;
                        }
                    }
                    n = end;
                    for (int64_t s = 0; s < S + R; s++)
                        if (moa_cu_slot_pos(s, n, S, R) != slot_of[s]) bad++;
                }
                if (R == 0 && moa_cu_ring_slot(S + 3, S, R) != -1) bad++;
            }
        }
    CHECK_EQ_INT(bad, 0);
}

/* Online softmax over random tiles (and a split-K merge) vs a direct two-pass softmax. */
TEST(online_softmax_matches_direct) {
    enum { N = 300 };
    float s[N], v[N];
    for (int rep = 0; rep < 200; rep++) {
        const int n = 1 + (int)(rnd() % N);
        for (int j = 0; j < n; j++) {
            s[j] = rndf() * 20.0f;
            v[j] = rndf();
            if (rnd() % 7 == 0) s[j] = -INFINITY;   /* masked */
        }
        double m = -INFINITY, l = 0, o = 0;
        for (int j = 0; j < n; j++) if (s[j] > m) m = s[j];
        for (int j = 0; j < n; j++) if (s[j] != -INFINITY) { l += exp(s[j] - m); o += exp(s[j] - m) * v[j]; }
        /* two halves, each in tiles; then merged */
        const int cut = (int)(rnd() % (unsigned)(n + 1));
        moa_cu_softmax part[2];
        float acc[2] = {0, 0};
        for (int h = 0; h < 2; h++) {
            moa_cu_softmax st = moa_cu_softmax_init();
            const int a = h ? cut : 0, b = h ? n : cut;
            for (int t0 = a; t0 < b;) {
                const int bk = 1 + (int)(rnd() % 40), t1 = t0 + bk < b ? t0 + bk : b;
                float tmax = -INFINITY;
                for (int j = t0; j < t1; j++) tmax = s[j] > tmax ? s[j] : tmax;
                if (tmax != -INFINITY) {
                    float corr;
                    const float mn = moa_cu_softmax_step(&st, tmax, &corr);
                    acc[h] *= corr;
                    for (int j = t0; j < t1; j++) {
                        const float p = s[j] == -INFINITY ? 0.0f : expf(s[j] - mn);
                        st.l += p;
                        acc[h] += p * v[j];
                    }
                }
                t0 = t1;
            }
            part[h] = st;
        }
        float wa, wb;
        moa_cu_softmax tot = moa_cu_softmax_merge(part[0], part[1], &wa, &wb);
        if (m == -INFINITY) {
            CHECK(tot.l == 0.0f);
            CHECK(moa_cu_softmax_lse(tot) == -INFINITY);
            continue;
        }
        CHECK_CLOSE(moa_cu_softmax_lse(tot), m + log(l), 1e-5, 1e-5);
        CHECK_CLOSE((wa * acc[0] + wb * acc[1]) / tot.l, o / l, 1e-4, 1e-5);
    }
}

/* The influence histograms from the helpers (the GPU kernel's accounting: non-dominant
 * entries in float, each row's P > 1/2 entry deferred with A, B) vs the CPU double reference
 * with its explicit E matrix. P, dP, D come from the CPU forward. */
TEST(influence_accounting_matches_reference) {
    const int n = 45, H = 4, KV = 2, hd = 8, G = H / KV;
    moa_attn_train_shape s = moa_attn_train_default_shape(n, H, KV, hd);
    s.sink = 5;
    s.block = 4;
    const int nb = moa_attn_train_n_bins(&s);
    const size_t nq = (size_t)n * H * hd, nk = (size_t)n * KV * hd;
    float *Q = malloc(nq * 4), *K = malloc(nk * 4), *V = malloc(nk * 4), *dO = malloc(nq * 4);
    float *O = malloc(nq * 4), *LSE = malloc((size_t)H * n * 4);
    float *dQ = malloc(nq * 4), *dK = malloc(nk * 4), *dV = malloc(nk * 4);
    double *ra = calloc((size_t)H * nb, 8), *rs = calloc((size_t)H * nb, 8), *rsa = calloc(H, 8), *rss = calloc(H, 8);
    double *ga = calloc((size_t)H * nb, 8), *gs = calloc((size_t)H * nb, 8), *gsa = calloc(H, 8), *gss = calloc(H, 8);
    for (size_t x = 0; x < nq; x++) { Q[x] = rndf() * 2.0f; dO[x] = rndf(); }
    for (size_t x = 0; x < nk; x++) { K[x] = rndf() * 2.0f; V[x] = rndf(); }
    /* make some rows peaked (a dominant entry): query 20 of head 0 aligned with key 3 */
    for (int d = 0; d < hd; d++) { Q[20 * H * hd + d] = 6.0f * K[3 * KV * hd + d]; }
    moa_influence_acc acc = {ra, rs, rsa, rss, nb};
    CHECK_OK(moa_attn_bwd_influence_ref(&s, Q, K, V, dO, dQ, dK, dV, &acc, NULL));
    CHECK_OK(moa_attn_fwd_lse_ref(&s, Q, K, V, O, LSE));
    const float scale = (float)(1.0 / sqrt((double)hd));
    int n_dom = 0;
    for (int h = 0; h < H; h++) {
        const int u = h / G;
        for (int i = 0; i < n; i++) {
            const float *q = Q + (size_t)i * H * hd + h * hd, *go = dO + (size_t)i * H * hd + h * hd;
            const float *o = O + (size_t)i * H * hd + h * hd;
            double Dd = 0;
            for (int d = 0; d < hd; d++) Dd += (double)go[d] * o[d];
            const float D = (float)Dd;
            double A = 0, B = 0;
            float ps = 0, dps = 0;
            int js = -1;
            for (int j = 0; j <= i; j++) {
                const float *k = K + (size_t)j * KV * hd + u * hd, *v = V + (size_t)j * KV * hd + u * hd;
                float sd = 0, pd = 0;
                for (int d = 0; d < hd; d++) { sd += q[d] * k[d]; pd += go[d] * v[d]; }
                const float p = expf(scale * sd - LSE[(size_t)h * n + i]);
                if (p > 0.5f) { ps = p; dps = pd; js = j; continue; }
                A += p;
                B += p * pd;
                const float e = moa_cu_influence(p, pd, D, s.eps);
                const int64_t b = moa_cu_dist_bin(i, j, s.sink, s.block);
                if (b == -1) { gsa[h] += fabsf(e); gss[h] += e; }
                else { ga[(size_t)h * nb + b] += fabsf(e); gs[(size_t)h * nb + b] += e; }
            }
            if (js >= 0) {
                n_dom++;
                const double E = moa_cu_influence_dominant(ps, dps, A, B, s.eps, i == 0);
                const int64_t b = moa_cu_dist_bin(i, js, s.sink, s.block);
                if (b == -1) { gsa[h] += fabs(E); gss[h] += E; }
                else { ga[(size_t)h * nb + b] += fabs(E); gs[(size_t)h * nb + b] += E; }
            }
        }
    }
    CHECK(n_dom >= H + 1);   /* every row 0, plus the peaked row */
    for (int x = 0; x < H * nb; x++) {
        CHECK_CLOSE(ga[x], ra[x], 2e-4, 1e-6);
        CHECK_CLOSE(gs[x], rs[x], 2e-4, 1e-6);
    }
    for (int h = 0; h < H; h++) {
        CHECK_CLOSE(gsa[h], rsa[h], 2e-4, 1e-6);
        CHECK_CLOSE(gss[h], rss[h], 2e-4, 1e-6);
    }
    /* the dominant form equals the direct form where 1 - P is not tiny */
    const double P = 0.7, dp = 0.3, D = 0.2, eps = 1e-6;   /* with A = 1 - P, B = D - P dp */
    CHECK_CLOSE(moa_cu_influence_dominant(P, dp, 1 - P, D - P * dp, eps, 0),
                -P * (dp - D) / (1 - P + eps), 1e-9, 1e-12);
    CHECK_CLOSE(moa_cu_influence_dominant(1.0, -0.4, 0, 0, eps, 1), 0.4, 1e-12, 0);
    free(Q); free(K); free(V); free(dO); free(O); free(LSE); free(dQ); free(dK); free(dV);
    free(ra); free(rs); free(rsa); free(rss); free(ga); free(gs); free(gsa); free(gss);
}

TEST(rope_elements_match_rope_rows) {
    const int hd = 24, rd = 16, half = rd / 2;
    moa_rope_table tab;
    CHECK_OK(moa_rope_table_init(&tab, rd, 10000.0f, 0, 5000));
    float x[24], y[24];
    for (int rep = 0; rep < 20; rep++) {
        const int64_t pos = rnd() % 5000;
        for (int d = 0; d < hd; d++) x[d] = rndf();
        memcpy(y, x, sizeof x);
        moa_rope_rows(&tab, y, 1, 1, hd, pos, 0);
        for (int d = 0; d < hd; d++) {
            float v = x[d];
            if (d < rd) {
                const double inv = pow(10000.0, -2.0 * (d / 2) / (double)rd);
                v = moa_cu_rope_elem(x[d & ~1], x[d | 1], d & 1, (double)pos * inv);
            }
            CHECK_CLOSE(v, y[d], 1e-6, 1e-7);
        }
    }
    (void)half;
    moa_rope_table_free(&tab);
}

/* moa_cu_rope_at (the streaming kernels' element rotation) in both pairings vs moa_rope_rows,
 * on odd shapes (NEOX partners d +/- rope_dim/2); the normal pairing's elements are those of
 * moa_cu_rope_elem with partner d^1. Control: each pairing is far from the other's rows. */
TEST(rope_pairs_match_rope_rows) {
    const struct { int hd, rd; } shapes[] = {{20, 12}, {20, 20}, {128, 64}, {40, 40}, {24, 16}};
    for (size_t si = 0; si < sizeof shapes / sizeof shapes[0]; si++)
        for (int neox = 0; neox < 2; neox++) {
            const int hd = shapes[si].hd, rd = shapes[si].rd;
            moa_rope_table tab;
            CHECK_OK(moa_rope_table_init(&tab, rd, 10000.0f, neox, 5000));
            double inv[128];
            for (int i = 0; i < rd / 2; i++) inv[i] = pow(10000.0, -2.0 * i / (double)rd);
            float x[128], y[128];
            double other = 0;
            for (int rep = 0; rep < 20; rep++) {
                const int64_t pos = 1 + rnd() % 4999;
                for (int d = 0; d < hd; d++) x[d] = rndf();
                memcpy(y, x, sizeof x);
                moa_rope_rows(&tab, y, 1, 1, hd, pos, 0);
                for (int d = 0; d < hd; d++) {
                    const float v = d < rd ? moa_cu_rope_at(x, d, rd, neox, (double)pos, inv) : x[d];
                    CHECK_CLOSE(v, y[d], 1e-6, 1e-7);
                    if (d < rd) {
                        const float w = moa_cu_rope_at(x, d, rd, !neox, (double)pos, inv);
                        other = fmax(other, fabs((double)w - y[d]));
                    }
                    if (!neox && d < rd)
                        CHECK(v == moa_cu_rope_elem(x[d & ~1], x[d | 1], d & 1, (double)pos * inv[d / 2]));
                }
            }
            CHECK_MSG(other > 0.1, "hd %d rope_dim %d: the other pairing is within %.3g", hd, rd, other);
            moa_rope_table_free(&tab);
        }
}

TEST(decay_powers) {
    CHECK(moa_cu_decay_pow(0.7f, -1) == 0.0f);
    CHECK(moa_cu_decay_pow(0.0f, 1000) == 1.0f);
    CHECK(moa_cu_decay_pow(0.92f, 200) >= 0.0f);                    /* no overflow, no NaN */
    CHECK_CLOSE(moa_cu_decay_pow(0.25f, 3), exp(-0.75), 1e-6, 0);
    /* worked example (linear-and-streaming.md 1.5): lambda = 1/2 */
    const float s = (float)log(2.0);
    CHECK_CLOSE(moa_cu_decay_pow(s, 2), 0.25, 1e-6, 0);
}

TEST(device_choice) {
    moa_device_kind k = MOA_DEVICE_CPU, r = MOA_DEVICE_AUTO;
    CHECK(moa_device_parse("cpu", &k) == 0 && k == MOA_DEVICE_CPU);
    CHECK(moa_device_parse("cuda", &k) == 0 && k == MOA_DEVICE_CUDA);
    CHECK(moa_device_parse("auto", &k) == 0 && k == MOA_DEVICE_AUTO);
    CHECK(moa_device_parse(NULL, &k) == 0 && k == MOA_DEVICE_AUTO);
    CHECK(moa_device_parse("tpu", &k) == -1);
    CHECK(moa_device_choose(MOA_DEVICE_CPU, 4, &r) == MOA_OK && r == MOA_DEVICE_CPU);
    CHECK(moa_device_choose(MOA_DEVICE_CUDA, 0, &r) == MOA_ERR_DEVICE);
    CHECK(moa_device_choose(MOA_DEVICE_CUDA, 1, &r) == MOA_OK && r == MOA_DEVICE_CUDA);
    CHECK(moa_device_choose(MOA_DEVICE_AUTO, 0, &r) == MOA_OK && r == MOA_DEVICE_CPU);
    CHECK(moa_device_choose(MOA_DEVICE_AUTO, 2, &r) == MOA_OK && r == MOA_DEVICE_CUDA);
}

/* The CPU table: buffers through alloc/upload/download, attention through the table equals
 * the direct calls bit for bit. */
TEST(cpu_backend_table) {
    moa_backend b = moa_backend_cpu();
    CHECK_STR(b.name, "cpu");
    CHECK(b.kind == MOA_DEVICE_CPU && b.attn_fwd_lse && b.attn_bwd_influence && b.rmsnorm);
    const moa_attn_train_shape s = moa_attn_train_default_shape(29, 2, 1, 8);
    const size_t nq = 29 * 2 * 8, nk = 29 * 8;
    float Q[29 * 16], K[29 * 8], V[29 * 8], O1[29 * 16], L1[58];
    for (size_t i = 0; i < nq; i++) Q[i] = rndf();
    for (size_t i = 0; i < nk; i++) { K[i] = rndf(); V[i] = rndf(); }
    float *q = NULL, *k = NULL, *v = NULL, *o = NULL, *l = NULL;
    CHECK_OK(b.alloc(b.ctx, sizeof Q, (void **)&q));
    CHECK_OK(b.alloc(b.ctx, sizeof K, (void **)&k));
    CHECK_OK(b.alloc(b.ctx, sizeof V, (void **)&v));
    CHECK_OK(b.alloc(b.ctx, sizeof O1, (void **)&o));
    CHECK_OK(b.alloc(b.ctx, sizeof L1, (void **)&l));
    if (!q || !k || !v || !o || !l) return;
    CHECK_OK(b.upload(b.ctx, q, Q, sizeof Q));
    CHECK_OK(b.upload(b.ctx, k, K, sizeof K));
    CHECK_OK(b.upload(b.ctx, v, V, sizeof V));
    CHECK_OK(b.attn_fwd_lse(b.ctx, &s, q, k, v, o, l));
    CHECK_OK(b.sync(b.ctx));
    float O2[29 * 16], L2[58];
    CHECK_OK(b.download(b.ctx, O2, o, sizeof O2));
    CHECK_OK(b.download(b.ctx, L2, l, sizeof L2));
    CHECK_OK(moa_attn_fwd_lse(&s, Q, K, V, O1, L1));
    CHECK(memcmp(O1, O2, sizeof O1) == 0 && memcmp(L1, L2, sizeof L1) == 0);
    b.free(b.ctx, q); b.free(b.ctx, k); b.free(b.ctx, v); b.free(b.ctx, o); b.free(b.ctx, l);
}

int main(void) {
    RUN(half_conversions_match_quant_c);
    RUN(k_scale_packer_roundtrip);
    RUN(block_decoding_matches_dequant_row);
    RUN(fused_forms_give_the_same_bits);
    RUN(block_decoding_controls);
    RUN(kv_rows_match_attn_c);
    RUN(mask_and_tiles);
    RUN(dist_bins_match_definition);
    RUN(ring_slots_match_cache_policy);
    RUN(online_softmax_matches_direct);
    RUN(influence_accounting_matches_reference);
    RUN(rope_elements_match_rope_rows);
    RUN(rope_pairs_match_rope_rows);
    RUN(decay_powers);
    RUN(device_choice);
    RUN(cpu_backend_table);
    return test_summary();
}
