/* quant_blocks.h - ggml blocks for the device dequantisation tests (test_cuda_common.c,
 * test_cuda_ops.c, tests/model/test_engine_cuda.c): random payloads with the f16 scales
 * placed where each layout keeps them, either moderate (values of order 0.1-10) or hard:
 * scales and mins drawn from the f16 extremes (zeros, subnormals, the largest finite value,
 * either sign) or from every finite f16 bit pattern, and blocks that walk every 6-bit
 * scale/min value through every position of a Q4_K/Q5_K block and every int8 scale through
 * every position of a Q6_K block. The K-quant scales are packed here from the format
 * description (ggml's get_scale_min_k4 layout), independently of quant.c and
 * moa-cuda-common.cuh.
 * Needs the caller's rnd() (uint32_t, any generator). */
#ifndef MOA_TEST_QUANT_BLOCKS_H
#define MOA_TEST_QUANT_BLOCKS_H

#include "moa/quant.h"

#include <stdint.h>
#include <string.h>
#include <math.h>

static uint32_t rnd(void);

/* byte offsets of the f16 scales in a block: d, and m/dmin (-1 if none) */
static inline void qb_scale_offsets(moa_ggml_type t, int *od, int *om) {
    *om = -1;
    *od = 0;
    switch (t) {
    case MOA_GGML_Q4_1: case MOA_GGML_Q5_1: case MOA_GGML_Q4_K: case MOA_GGML_Q5_K: *om = 2; break;
    case MOA_GGML_Q6_K: *od = 208; break;
    default: break;
    }
}

static inline void qb_put16(uint8_t *p, uint16_t h) { p[0] = (uint8_t)h; p[1] = (uint8_t)(h >> 8); }
static inline uint16_t qb_get16(const uint8_t *p) { return (uint16_t)(p[0] | p[1] << 8); }

/* f16 extremes: +-0, smallest and largest subnormals, smallest normal, 1, largest finite */
static const uint16_t qb_f16_extreme[] = {0x0000, 0x8000, 0x0001, 0x8001, 0x0002, 0x03ff, 0x83ff,
                                          0x0400, 0x8400, 0x3c00, 0xbc00, 0x7bff, 0xfbff, 0x7bfe};
#define QB_N_EXTREME ((int)(sizeof qb_f16_extreme / sizeof qb_f16_extreme[0]))

/* a finite f16: an extreme one (half the time) or any finite bit pattern */
static inline uint16_t qb_f16_hard(void) {
    if (rnd() & 1) return qb_f16_extreme[rnd() % QB_N_EXTREME];
    for (;;) {
        const uint16_t h = (uint16_t)rnd();
        if (((h >> 10) & 31) != 31) return h;
    }
}

/* Pack 8 scales and 8 mins (6 bits each) into the 12 scale bytes of a Q4_K/Q5_K block:
 * j < 4: bytes j (scale) and j + 4 (min) hold the low 6 bits; j >= 4: byte j + 4 holds the
 * scale's low nibble and the min's low nibble above it, and the top two bits of each go to
 * bits 6-7 of bytes j - 4 (scale) and j (min). */
static inline void qb_pack_k_scales(uint8_t *s, const int sc[8], const int mn[8]) {
    memset(s, 0, 12);
    for (int j = 0; j < 4; j++) {
        s[j] = (uint8_t)((sc[j] & 63) | ((sc[j + 4] >> 4) << 6));
        s[j + 4] = (uint8_t)((mn[j] & 63) | ((mn[j + 4] >> 4) << 6));
        s[j + 8] = (uint8_t)((sc[j + 4] & 15) | ((mn[j + 4] & 15) << 4));
    }
}
/* The inverse, restated from the layout (to check the packer): scale and min j. */
static inline void qb_unpack_k_scale(const uint8_t *s, int j, int *sc, int *mn) {
    if (j < 4) { *sc = s[j] & 63; *mn = s[j + 4] & 63; return; }
    *sc = (s[j + 4] & 15) | ((s[j - 4] >> 6) << 4);
    *mn = (s[j + 4] >> 4) | ((s[j] >> 6) << 4);
}

/* Fill nblk blocks of type t at p. hard = 0: random payload and scales, values of order amp
 * (d and m/dmin drawn so that |value| <~ 2 amp); hard = 1 (amp unused): random payload,
 * scales from qb_f16_hard, and for k-quants every even block b also carries a scale pattern:
 * Q4_K/Q5_K scale j = (k + 5j) mod 64 and min j = (k + 5j + 40) mod 64 with k = b / 2 (64
 * pattern blocks put every 6-bit value at every scale and min position), Q6_K scale
 * i = (k + 17i) mod 256 as int8 (256 pattern blocks: every int8 value at every position);
 * odd blocks keep random scale bytes. F32/F16/BF16: random values of order amp (4 if hard). */
static inline void qb_fill_amp(moa_ggml_type t, uint8_t *p, int64_t nblk, int hard, float amp) {
    uint32_t be, bb;
    moa_ggml_type_info(t, &be, &bb);
    if (t == MOA_GGML_F32 || t == MOA_GGML_F16 || t == MOA_GGML_BF16) {
        for (int64_t i = 0; i < nblk; i++) {
            const float f = ((float)rnd() / 4294967296.0f * 2.0f - 1.0f) * (hard ? 4.0f : amp);
            if (t == MOA_GGML_F32) memcpy(p + 4 * i, &f, 4);
            else qb_put16(p + 2 * i, t == MOA_GGML_F16 ? moa_f32_to_f16(f) : moa_f32_to_bf16(f));
        }
        return;
    }
    int od, om;
    qb_scale_offsets(t, &od, &om);
    /* |value| ~ |d| x (largest scale x quant): Q4_0 8, Q4_1 15, Q5_0 16, Q5_1 31, Q8_0 128,
     * Q4_K 63 x 15 / 4 (typical scales), Q5_K 63 x 31 / 4, Q6_K 128 x 32 / 4 */
    float qmax = 8;
    switch (t) {
    case MOA_GGML_Q4_1: qmax = 15; break;
    case MOA_GGML_Q5_0: qmax = 16; break;
    case MOA_GGML_Q5_1: qmax = 31; break;
    case MOA_GGML_Q8_0: qmax = 128; break;
    case MOA_GGML_Q4_K: qmax = 63 * 15 / 4.0f; break;
    case MOA_GGML_Q5_K: qmax = 63 * 31 / 4.0f; break;
    case MOA_GGML_Q6_K: qmax = 128 * 32 / 4.0f; break;
    default: break;
    }
    for (int64_t b = 0; b < nblk; b++) {
        uint8_t *q = p + (size_t)b * bb;
        for (uint32_t x = 0; x < bb; x++) q[x] = (uint8_t)rnd();
        if (hard) {
            qb_put16(q + od, qb_f16_hard());
            if (om >= 0) qb_put16(q + om, qb_f16_hard());
            if (b % 2 == 0 && (t == MOA_GGML_Q4_K || t == MOA_GGML_Q5_K)) {
                const int k = (int)(b / 2);
                int sc[8], mn[8];
                for (int j = 0; j < 8; j++) { sc[j] = (k + 5 * j) & 63; mn[j] = (k + 5 * j + 40) & 63; }
                qb_pack_k_scales(q + 4, sc, mn);
            }
            if (b % 2 == 0 && t == MOA_GGML_Q6_K)
                for (int i = 0; i < 16; i++) q[192 + i] = (uint8_t)((b / 2 + 17 * i) & 255);
        } else {
            const float u = (float)rnd() / 4294967296.0f * 2.0f - 1.0f, v = (float)rnd() / 4294967296.0f * 2.0f - 1.0f;
            /* Q4_1/Q5_1 minimum: about -half the range (values centred); k-quant dmin: the
             * 6-bit min times dmin about half the scaled range */
            qb_put16(q + od, moa_f32_to_f16(u * amp / qmax));
            if (om >= 0)
                qb_put16(q + om, moa_f32_to_f16(be == 256 ? v * amp / 63.0f : -fabsf(u) * amp / 2 + v * amp / 4));
        }
    }
}
static inline void qb_fill(moa_ggml_type t, uint8_t *p, int64_t nblk, int hard) {
    qb_fill_amp(t, p, nblk, hard, 1.0f);
}

/* The types moa_dequant_row reads that have a quantised block layout. */
static const moa_ggml_type qb_types[] = {MOA_GGML_Q4_0, MOA_GGML_Q4_1, MOA_GGML_Q5_0, MOA_GGML_Q5_1,
                                         MOA_GGML_Q8_0, MOA_GGML_Q4_K, MOA_GGML_Q5_K, MOA_GGML_Q6_K};
#define QB_N_TYPES ((int)(sizeof qb_types / sizeof qb_types[0]))

/* A byte of block 0 that the dequantiser must read (controls flip a bit of it): the first
 * scale byte of k-quants, qh of Q5_0/Q5_1, else the first payload byte. */
static inline int qb_sensitive_byte(moa_ggml_type t) {
    switch (t) {
    case MOA_GGML_Q4_0: case MOA_GGML_Q8_0: return 2;
    case MOA_GGML_Q4_1: return 4;
    case MOA_GGML_Q5_0: return 2;
    case MOA_GGML_Q5_1: return 4;
    case MOA_GGML_Q4_K: case MOA_GGML_Q5_K: return 4;
    case MOA_GGML_Q6_K: return 192;
    default: return 0;
    }
}

#endif
