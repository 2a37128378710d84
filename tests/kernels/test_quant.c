/* test_quant.c - dequantisation of hand-built blocks against values written out from the
 * format definitions (element by element), half-precision conversions at known bit
 * patterns, and the SIMD matrix-vector kernels against the reference on odd shapes. */
#include "moa/quant.h"
#include "moa/common.h"
#include "test.h"

static void put16(uint8_t *p, uint16_t v) { p[0] = (uint8_t)v; p[1] = (uint8_t)(v >> 8); }
static void put32(uint8_t *p, uint32_t v) { for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (8 * i)); }

static uint32_t rng_state = 12345;
static uint32_t rnd(void) { rng_state = rng_state * 1664525u + 1013904223u; return rng_state >> 8; }

TEST(half_precision) {
    CHECK_NEAR(moa_f16_to_f32(0x3C00), 1.0, 0);
    CHECK_NEAR(moa_f16_to_f32(0xC000), -2.0, 0);
    CHECK_NEAR(moa_f16_to_f32(0x7BFF), 65504.0, 0);
    CHECK_NEAR(moa_f16_to_f32(0x0001), 5.9604644775390625e-08, 0);   /* 2^-24, subnormal */
    CHECK_NEAR(moa_f16_to_f32(0x03FF), 6.097555160522461e-05, 0);    /* largest subnormal */
    CHECK_NEAR(moa_f16_to_f32(0x0400), 6.103515625e-05, 0);          /* 2^-14 */
    CHECK_NEAR(moa_f16_to_f32(0x3555), 0.333251953125, 0);
    CHECK(isinf(moa_f16_to_f32(0x7C00)) && moa_f16_to_f32(0xFC00) < 0);
    CHECK(isnan(moa_f16_to_f32(0x7E00)));
    CHECK_EQ_INT(moa_f32_to_f16(1.0f), 0x3C00);
    CHECK_EQ_INT(moa_f32_to_f16(-2.0f), 0xC000);
    CHECK_EQ_INT(moa_f32_to_f16(1.0f + 0x1p-11f), 0x3C00);          /* tie -> even */
    CHECK_EQ_INT(moa_f32_to_f16(1.0f + 3 * 0x1p-11f), 0x3C02);      /* tie -> even (up) */
    CHECK_EQ_INT(moa_f32_to_f16(0x1p-24f), 0x0001);
    CHECK_EQ_INT(moa_f32_to_f16(70000.0f), 0x7C00);
    CHECK_NEAR(moa_bf16_to_f32(0x3F80), 1.0, 0);
    CHECK_NEAR(moa_bf16_to_f32(0xC0A0), -5.0, 0);
    CHECK_EQ_INT(moa_f32_to_bf16(1.0f + 0x1p-8f), 0x3F80);          /* tie -> even */
    CHECK_EQ_INT(moa_f32_to_bf16(1.0f + 3 * 0x1p-8f), 0x3F82);
}

TEST(q4_0_q4_1_q8_0) {
    uint8_t b[34];
    float y[32];
    /* Q4_0: d = 0.5; qs[j] = j | (15-j) << 4 */
    put16(b, 0x3800);
    for (int j = 0; j < 16; j++) b[2 + j] = (uint8_t)(j | (15 - j) << 4);
    moa_dequant_row(MOA_GGML_Q4_0, b, y, 32);
    for (int j = 0; j < 16; j++) {
        CHECK_NEAR(y[j], (j - 8) * 0.5, 0);
        CHECK_NEAR(y[j + 16], (7 - j) * 0.5, 0);
    }
    /* Q4_1: d = 0.25, m = -1 */
    put16(b, 0x3400); put16(b + 2, 0xBC00);
    for (int j = 0; j < 16; j++) b[4 + j] = (uint8_t)(j | (15 - j) << 4);
    moa_dequant_row(MOA_GGML_Q4_1, b, y, 32);
    for (int j = 0; j < 16; j++) {
        CHECK_NEAR(y[j], j * 0.25 - 1, 0);
        CHECK_NEAR(y[j + 16], (15 - j) * 0.25 - 1, 0);
    }
    /* Q8_0: d = 0.125, q = 7j - 100 */
    put16(b, 0x3000);
    for (int j = 0; j < 32; j++) b[2 + j] = (uint8_t)(int8_t)(7 * j - 100);
    moa_dequant_row(MOA_GGML_Q8_0, b, y, 32);
    for (int j = 0; j < 32; j++) CHECK_NEAR(y[j], (7 * j - 100) * 0.125, 0);
}

TEST(q5_0_q5_1) {
    uint8_t b[24];
    float y[32];
    uint32_t qh = 0xA5C3F00Fu;
    /* Q5_0: d = 1: value j = (low nibble | bit j of qh << 4) - 16; value j+16 uses the high
     * nibble and bit j+16. */
    put16(b, 0x3C00); put32(b + 2, qh);
    for (int j = 0; j < 16; j++) b[6 + j] = (uint8_t)(((3 * j) & 15) | ((j * 5 + 1) & 15) << 4);
    moa_dequant_row(MOA_GGML_Q5_0, b, y, 32);
    for (int j = 0; j < 16; j++) {
        int lo = (3 * j) & 15, hi = (j * 5 + 1) & 15;
        CHECK_NEAR(y[j], (int)(lo | ((qh >> j) & 1) << 4) - 16, 0);
        CHECK_NEAR(y[j + 16], (int)(hi | ((qh >> (j + 16)) & 1) << 4) - 16, 0);
    }
    /* Q5_1: d = 0.5, m = 2 */
    put16(b, 0x3800); put16(b + 2, 0x4000); put32(b + 4, qh);
    for (int j = 0; j < 16; j++) b[8 + j] = (uint8_t)(((3 * j) & 15) | ((j * 5 + 1) & 15) << 4);
    moa_dequant_row(MOA_GGML_Q5_1, b, y, 32);
    for (int j = 0; j < 16; j++) {
        int lo = (3 * j) & 15, hi = (j * 5 + 1) & 15;
        CHECK_NEAR(y[j], (int)(lo | ((qh >> j) & 1) << 4) * 0.5 + 2, 0);
        CHECK_NEAR(y[j + 16], (int)(hi | ((qh >> (j + 16)) & 1) << 4) * 0.5 + 2, 0);
    }
}

/* Pack 8 six-bit scales and mins into the 12-byte K-quant layout. */
static void pack_k_scales(uint8_t s[12], const int sc[8], const int mn[8]) {
    for (int j = 0; j < 4; j++) {
        s[j] = (uint8_t)(sc[j] | (sc[j + 4] >> 4) << 6);
        s[j + 4] = (uint8_t)(mn[j] | (mn[j + 4] >> 4) << 6);
        s[j + 8] = (uint8_t)((sc[j + 4] & 15) | (mn[j + 4] & 15) << 4);
    }
}

TEST(q4_k_q5_k) {
    int sc[8] = {1, 63, 17, 32, 45, 8, 60, 33}, mn[8] = {0, 5, 63, 40, 19, 48, 7, 62};
    uint8_t b[176];
    float y[256];
    for (int five = 0; five <= 1; five++) {
        put16(b, 0x3800);        /* d = 0.5 */
        put16(b + 2, 0x3400);    /* dmin = 0.25 */
        pack_k_scales(b + 4, sc, mn);
        uint8_t *qh = b + 16, *qs = five ? b + 48 : b + 16;
        if (five) for (int l = 0; l < 32; l++) qh[l] = (uint8_t)(rnd() & 255);
        for (int i = 0; i < 128; i++) qs[i] = (uint8_t)(rnd() & 255);
        moa_dequant_row(five ? MOA_GGML_Q5_K : MOA_GGML_Q4_K, b, y, 256);
        int bad = 0;
        for (int e = 0; e < 256; e++) {
            int c = e / 64, l = e % 64, sub = l < 32 ? 2 * c : 2 * c + 1;
            int byte = qs[32 * c + (l % 32)];
            int q = l < 32 ? byte & 15 : byte >> 4;
            if (five && (qh[l % 32] >> sub & 1)) q += 16;
            double want = 0.5 * sc[sub] * q - 0.25 * mn[sub];
            if (fabs(y[e] - want) > 1e-6) bad++;
        }
        CHECK_MSG(bad == 0, "%s: %d of 256 values wrong", five ? "Q5_K" : "Q4_K", bad);
    }
}

TEST(q6_k) {
    uint8_t b[210];
    float y[256];
    for (int i = 0; i < 192; i++) b[i] = (uint8_t)(rnd() & 255);
    int8_t *sc = (int8_t *)(b + 192);
    for (int i = 0; i < 16; i++) sc[i] = (int8_t)((int)(rnd() % 255) - 127);
    put16(b + 208, 0x3400);   /* d = 0.25 */
    moa_dequant_row(MOA_GGML_Q6_K, b, y, 256);
    int bad = 0;
    for (int e = 0; e < 256; e++) {
        int h = e / 128, r = e % 128, g = r / 32, l = r % 32;
        const uint8_t *L = b + 64 * h, *H = b + 128 + 32 * h;
        int low = g == 0 ? L[l] & 15 : g == 1 ? L[l + 32] & 15 : g == 2 ? L[l] >> 4 : L[l + 32] >> 4;
        int hi2 = (H[l] >> (2 * g)) & 3;
        int q = (low | hi2 << 4) - 32;
        double want = 0.25 * sc[8 * h + l / 16 + 2 * g] * q;
        if (fabs(y[e] - want) > 1e-6) bad++;
    }
    CHECK_MSG(bad == 0, "Q6_K: %d of 256 values wrong", bad);
}

TEST(f16_bf16_rows) {
    uint8_t b[8];
    float y[4];
    put16(b, 0x3C00); put16(b + 2, 0xC000); put16(b + 4, 0x3800); put16(b + 6, 0x0000);
    moa_dequant_row(MOA_GGML_F16, b, y, 4);
    CHECK_NEAR(y[0], 1, 0); CHECK_NEAR(y[1], -2, 0); CHECK_NEAR(y[2], 0.5, 0); CHECK_NEAR(y[3], 0, 0);
    put16(b, 0x3F80); put16(b + 2, 0xC0A0); put16(b + 4, 0x4049); put16(b + 6, 0x8000);
    moa_dequant_row(MOA_GGML_BF16, b, y, 4);
    CHECK_NEAR(y[0], 1, 0); CHECK_NEAR(y[1], -5, 0); CHECK_NEAR(y[2], 3.140625, 0);
    CHECK_EQ_INT(moa_ggml_row_bytes(MOA_GGML_Q4_1, 64), 40);
    CHECK_EQ_INT(moa_ggml_row_bytes(MOA_GGML_Q6_K, 512), 420);
}

/* Random valid rows of type t: scale fields set to small finite f16 values. */
static void random_rows(moa_ggml_type t, uint8_t *w, int64_t n_out, int64_t n_in) {
    size_t rb = moa_ggml_row_bytes(t, n_in);
    for (size_t i = 0; i < rb * (size_t)n_out; i++) w[i] = (uint8_t)(rnd() & 255);
    uint32_t be, bb;
    moa_ggml_type_info(t, &be, &bb);
    for (int64_t o = 0; o < n_out; o++) {
        uint8_t *row = w + (size_t)o * rb;
        if (t == MOA_GGML_F32) for (int64_t i = 0; i < n_in; i++) { float f = (float)((int)(rnd() % 2001) - 1000) / 1000.0f; memcpy(row + 4 * i, &f, 4); }
        else if (t == MOA_GGML_F16) for (int64_t i = 0; i < n_in; i++) put16(row + 2 * i, moa_f32_to_f16((float)((int)(rnd() % 2001) - 1000) / 1000.0f));
        else for (int64_t bk = 0; bk < n_in / (int64_t)be; bk++) {
            uint8_t *p = row + bk * bb;
            put16(p, moa_f32_to_f16(0.01f + (float)(rnd() % 100) / 1000.0f));
            if (t == MOA_GGML_Q4_1) put16(p + 2, moa_f32_to_f16(-0.05f + (float)(rnd() % 100) / 1000.0f));
        }
    }
}

/* The f32-activation SIMD paths (the int8-activation default for Q4_K/Q6_K on AVX512-VNNI has
 * its own bound: tests/kernels/test_quant_kernels.c). */
TEST(matmul_simd_vs_reference) {
    moa_matmul_q_set_act(MOA_MATMUL_ACT_F32);
    moa_ggml_type types[] = {MOA_GGML_Q4_0, MOA_GGML_Q4_1, MOA_GGML_Q8_0, MOA_GGML_F32, MOA_GGML_F16, MOA_GGML_Q6_K};
    int64_t shapes[][2] = {{37, 96}, {1, 32}, {130, 288}, {17, 45}, {3, 512}};
    int64_t nvecs[] = {1, 3, 4, 5, 9};
    for (size_t ti = 0; ti < sizeof types / sizeof types[0]; ti++) {
        for (size_t si = 0; si < sizeof shapes / sizeof shapes[0]; si++) {
            moa_ggml_type t = types[ti];
            int64_t n_out = shapes[si][0], n_in = shapes[si][1];
            uint32_t be;
            moa_ggml_type_info(t, &be, NULL);
            if (n_in % be) continue;
            uint8_t *w = malloc(moa_ggml_row_bytes(t, n_in) * (size_t)n_out);
            random_rows(t, w, n_out, n_in);
            for (size_t vi = 0; vi < sizeof nvecs / sizeof nvecs[0]; vi++) {
                int64_t nv = nvecs[vi];
                float *x = malloc(sizeof(float) * (size_t)(nv * n_in));
                float *y0 = malloc(sizeof(float) * (size_t)(nv * n_out));
                float *y1 = malloc(sizeof(float) * (size_t)(nv * n_out));
                for (int64_t i = 0; i < nv * n_in; i++) x[i] = (float)((int)(rnd() % 2001) - 1000) / 500.0f;
                moa_matmul_q_ref(t, w, n_out, n_in, x, nv, y0);
                moa_matmul_q(t, w, n_out, n_in, x, nv, y1);
                double err = test_max_rel_err(y1, y0, (size_t)(nv * n_out), 1e-3);
                CHECK_MSG(err < 1e-5, "%s %lldx%lld nvec %lld: rel err %g", moa_ggml_type_name(t),
                          (long long)n_out, (long long)n_in, (long long)nv, err);
                free(x); free(y0); free(y1);
            }
            free(w);
        }
    }
    moa_matmul_q_set_act(MOA_MATMUL_ACT_AUTO);
}

int main(void) {
    RUN(half_precision);
    RUN(q4_0_q4_1_q8_0);
    RUN(q5_0_q5_1);
    RUN(q4_k_q5_k);
    RUN(q6_k);
    RUN(f16_bf16_rows);
    RUN(matmul_simd_vs_reference);
    return test_summary();
}
