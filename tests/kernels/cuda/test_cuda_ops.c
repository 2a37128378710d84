/* test_cuda_ops.c - every CUDA op against its CPU reference, on odd shapes, with relative
 * tolerances (label gpu). Without a CUDA device it checks that the device layer reports
 * MOA_ERR_DEVICE with a message (no crash), prints "SKIP: no CUDA device" and exits 77.
 *
 * References: moa_dequant_row (quant.c), moa_rope_rows (rope.c), model/forward.c's RMSNorm and
 * SwiGLU (restated here in double), moa_attn_fwd_lse_ref / moa_attn_bwd_influence (attn-train),
 * and the CPU runtime itself (moa_cache_create_layout + moa_attn_prefill / moa_attn_decode)
 * for the device cache. */
#include "moa/cuda.h"
#include "moa-cuda-cache.h"   /* the device cache itself (internal), beside the runtime API */
#include "moa/runtime.h"
#include "cache.h"   /* runtime/ (internal): the CPU cache's stored rows, to compare bytes */
#include "moa/rope.h"
#include "test.h"

#include <stdint.h>

static moa_cuda_ctx *g_ctx;

/* Built twice: against moa_cuda (label gpu, real device) and against the CPU emulator of
 * tests/kernels/cuda/emu (test_cuda_emu, label unit; MOA_CUDA_EMU), where the largest shapes
 * shrink. */
#if defined(MOA_CUDA_EMU) && !defined(MOA_CUDA_EMU_FULL)
#define BIG(real, emu) (emu)
#else
#define BIG(real, emu) (real)
#endif

static uint64_t rng_state = 0x243f6a8885a308d3ull;
static uint32_t rnd(void) {
    rng_state ^= rng_state >> 12; rng_state ^= rng_state << 25; rng_state ^= rng_state >> 27;
    return (uint32_t)((rng_state * 0x2545f4914f6cdd1dull) >> 32);
}
static float rndf(void) { return (float)rnd() / 4294967296.0f * 2.0f - 1.0f; }
static void fill(float *x, size_t n, float amp) { for (size_t i = 0; i < n; i++) x[i] = amp * rndf(); }
#include "quant_blocks.h"   /* qb_fill: moderate and hard blocks of every type */

/* Device buffer helpers (abort the test case through CHECKs on failure). */
static void *dev_alloc(size_t bytes) {
    void *p = NULL;
    CHECK_OK(moa_cuda_alloc(g_ctx, bytes ? bytes : 1, &p));
    return p;
}
static void *dev_from(const void *host, size_t bytes) {
    void *p = dev_alloc(bytes);
    if (p) CHECK_OK(moa_cuda_upload(g_ctx, p, host, bytes));
    return p;
}
static void to_host(void *host, const void *dev, size_t bytes) {
    CHECK_OK(moa_cuda_download(g_ctx, host, dev, bytes));
}

/* max |a - b| <= rtol * max |b| + atol over the array (a norm-relative check: entries near
 * zero are judged against the array's scale). */
static int close_arr(const char *what, const float *a, const float *b, size_t n, double rtol,
                     double atol) {
    double mx = 0, err = 0;
    size_t at = 0;
    for (size_t i = 0; i < n; i++) {
        if (fabs(b[i]) > mx) mx = fabs(b[i]);
        const double e = fabs((double)a[i] - b[i]);
        if (!(e <= err)) { err = e; at = i; }
    }
    const int ok = err <= rtol * mx + atol;
    if (!ok) fprintf(stderr, "  %s: max error %.3g at %zu (%.9g vs %.9g), scale %.3g, rtol %g\n",
                     what, err, at, (double)a[at], (double)b[at], mx, rtol);
    return ok;
}
/* max |a - b| / max |b| (the controls: a deliberately wrong variant must be far off) */
static double rel_err(const float *a, const float *b, size_t n) {
    double mx = 0, err = 0;
    for (size_t i = 0; i < n; i++) {
        mx = fmax(mx, fabs(b[i]));
        err = fmax(err, fabs((double)a[i] - b[i]));
    }
    return mx > 0 ? err / mx : err;
}
/* Histograms: max |a - b| <= rtol * max |scale| (signed sums are judged against the
 * absolute sums: they may cancel to far below the size of their terms). */
static int close_arr_d(const char *what, const double *a, const double *b, const double *scale,
                       size_t n, double rtol) {
    double mx = 0, err = 0;
    for (size_t i = 0; i < n; i++) {
        if (fabs(scale[i]) > mx) mx = fabs(scale[i]);
        if (fabs(a[i] - b[i]) > err) err = fabs(a[i] - b[i]);
    }
    const int ok = err <= rtol * mx + 1e-12;
    if (!ok) fprintf(stderr, "  %s: max error %.3g, scale %.3g, rtol %g\n", what, err, mx, rtol);
    return ok;
}

/* ---- device layer --------------------------------------------------------------------------- */

TEST(backend_table) {
    moa_backend b = moa_cuda_backend(g_ctx);
    CHECK_STR(b.name, "cuda");
    CHECK(b.kind == MOA_DEVICE_CUDA && b.ctx == g_ctx);
    CHECK(b.alloc && b.free && b.upload && b.download && b.sync && b.attn_fwd_lse &&
          b.attn_bwd_influence && b.rmsnorm && b.rope && b.swiglu && b.key_smooth);
    CHECK(moa_cuda_ctx_sm_count(g_ctx) > 0);
    moa_cuda_ctx *bad = NULL;
    CHECK_EQ_INT(moa_cuda_ctx_create(moa_cuda_device_count() + 3, &bad), MOA_ERR_DEVICE);
    CHECK(bad == NULL);
}

/* ---- dequantisation, embedding, projections -------------------------------------------------- */

static void fill_blocks(moa_ggml_type t, uint8_t *p, size_t n_vals) {
    uint32_t be, bb;
    moa_ggml_type_info(t, &be, &bb);
    const size_t nb = n_vals / be;
    if (t == MOA_GGML_F32) { fill((float *)p, n_vals, 1.0f); return; }
    if (t == MOA_GGML_F16) {
        for (size_t i = 0; i < n_vals; i++) { uint16_t h = moa_f32_to_f16(rndf()); memcpy(p + 2 * i, &h, 2); }
        return;
    }
    for (size_t b = 0; b < nb; b++) {
        uint8_t *q = p + b * bb;
        for (uint32_t x = 0; x < bb; x++) q[x] = (uint8_t)rnd();
        uint16_t d = moa_f32_to_f16(rndf() * 0.05f), m = moa_f32_to_f16(rndf() * 0.2f);
        memcpy(q, &d, 2);
        if (t == MOA_GGML_Q4_1) memcpy(q + 2, &m, 2);
    }
}

/* moa_cuda_dequant of every type moa_dequant_row reads, to f32 (bit-identical), f16 and bf16
 * (the reference rounded to nearest even): moderate blocks, then hard ones (quant_blocks.h:
 * f16 scales/mins at the extremes or any finite pattern, every 6-bit scale/min value at
 * every Q4_K/Q5_K position, int8 scales through the Q6_K positions; the emulator runs fewer
 * blocks, test_cuda_common walks them all through the same decoders on the host). Control:
 * the device's f32 output against a reference from the same blocks with one bit flipped (a
 * k-quant scale byte, Q5 high bits, a payload byte) must differ. */
static int64_t dequant_blocks(moa_ggml_type t) {
    uint32_t be, bb;
    moa_ggml_type_info(t, &be, &bb);
    return be == 256 ? BIG(512, 130) : be == 32 ? BIG(4 * 37, 37) : 37 * 32;
}
TEST(dequant_all_types_and_dtypes) {
    const moa_ggml_type types[] = {MOA_GGML_Q4_0, MOA_GGML_Q4_1, MOA_GGML_Q5_0, MOA_GGML_Q5_1, MOA_GGML_Q8_0,
                                   MOA_GGML_Q4_K, MOA_GGML_Q5_K, MOA_GGML_Q6_K, MOA_GGML_F16, MOA_GGML_BF16,
                                   MOA_GGML_F32};
    for (size_t k = 0; k < sizeof types / sizeof types[0]; k++) {
        const moa_ggml_type t = types[k];
        uint32_t be, bb;
        moa_ggml_type_info(t, &be, &bb);
        const int64_t nblk = dequant_blocks(t), n = nblk * be;
        const size_t bytes = moa_ggml_row_bytes(t, n);
        CHECK(moa_cuda_dequant_supported(t));
        uint8_t *raw = malloc(bytes);
        float *ref = malloc(n * 4), *got = malloc(n * 4);
        uint16_t *got16 = malloc(n * 2);
        void *draw = dev_alloc(bytes), *dout = dev_alloc(n * 4);
        int bad = 0;
        for (int hard = 0; hard < (be > 1 ? 2 : 1); hard++) {
            qb_fill(t, raw, nblk, hard);
            moa_dequant_row(t, raw, ref, n);
            CHECK_OK(moa_cuda_upload(g_ctx, draw, raw, bytes));
            for (int dt = 0; dt < 3; dt++) {
                CHECK_OK(moa_cuda_dequant(g_ctx, t, draw, n, dout, (moa_cuda_dtype)dt));
                if (dt == MOA_CUDA_F32) {
                    to_host(got, dout, n * 4);
                    for (int64_t i = 0; i < n; i++) bad += memcmp(&got[i], &ref[i], 4) != 0;
                } else {
                    to_host(got16, dout, n * 2);
                    for (int64_t i = 0; i < n; i++)
                        bad += got16[i] != (dt == MOA_CUDA_F16 ? moa_f32_to_f16(ref[i]) : moa_f32_to_bf16(ref[i]));
                }
            }
        }
        CHECK_MSG(bad == 0, "%s: %d values differ from moa_dequant_row", moa_ggml_type_name(t), bad);
        if (be > 1) {   /* control: a reference from one flipped bit differs from the device */
            qb_fill(t, raw, nblk, 0);
            CHECK_OK(moa_cuda_upload(g_ctx, draw, raw, bytes));
            CHECK_OK(moa_cuda_dequant(g_ctx, t, draw, n, dout, MOA_CUDA_F32));
            to_host(got, dout, n * 4);
            raw[qb_sensitive_byte(t)] ^= 1;
            moa_dequant_row(t, raw, ref, n);
            int diff = 0;
            for (int64_t i = 0; i < n; i++) diff += memcmp(&got[i], &ref[i], 4) != 0;
            CHECK_MSG(diff > 0 && diff <= (int)be, "%s control: %d values differ from the perturbed reference",
                      moa_ggml_type_name(t), diff);
        }
        moa_cuda_free(g_ctx, draw);
        moa_cuda_free(g_ctx, dout);
        free(raw); free(ref); free(got); free(got16);
    }
    void *dbuf = dev_alloc(256 * 4);
    CHECK(!moa_cuda_dequant_supported((moa_ggml_type)9));   /* Q8_1: no CPU or device decoder */
    CHECK_EQ_INT(moa_cuda_dequant(g_ctx, (moa_ggml_type)9, dbuf, 32, dbuf, MOA_CUDA_F16), MOA_ERR_UNSUPPORTED);
    CHECK_EQ_INT(moa_cuda_dequant(g_ctx, MOA_GGML_Q4_1, dbuf, 33, dbuf, MOA_CUDA_F16), MOA_ERR_INVALID_ARG);
    CHECK_EQ_INT(moa_cuda_dequant(g_ctx, MOA_GGML_Q4_K, dbuf, 288, dbuf, MOA_CUDA_F16), MOA_ERR_INVALID_ARG);
    moa_cuda_free(g_ctx, dbuf);
}

/* Token-table rows of the k-quant and Q5 types through moa_cuda_embed: exactly the CPU's
 * f32 rows (hard blocks). */
TEST(embedding_rows_all_block_types) {
    const moa_ggml_type types[] = {MOA_GGML_Q5_0, MOA_GGML_Q5_1, MOA_GGML_Q4_K, MOA_GGML_Q5_K, MOA_GGML_Q6_K};
    const int64_t d = 512, n_vocab = 9;
    const int32_t tok[6] = {8, 0, 4, 8, 1, 5};
    for (size_t k = 0; k < sizeof types / sizeof types[0]; k++) {
        const moa_ggml_type t = types[k];
        uint32_t be;
        moa_ggml_type_info(t, &be, NULL);
        const size_t rb = moa_ggml_row_bytes(t, d);
        uint8_t *table = malloc(rb * n_vocab);
        qb_fill(t, table, d / be * n_vocab, 1);
        float ref[6 * 512], got[6 * 512];
        for (int r = 0; r < 6; r++) moa_dequant_row(t, table + rb * tok[r], ref + r * d, d);
        void *dt = dev_from(table, rb * n_vocab), *dtok = dev_from(tok, sizeof tok);
        float *dout = dev_alloc(sizeof got);
        CHECK_OK(moa_cuda_embed(g_ctx, t, dt, d, dtok, 6, dout));
        to_host(got, dout, sizeof got);
        CHECK_MSG(memcmp(got, ref, sizeof got) == 0, "%s: embedding rows differ", moa_ggml_type_name(t));
        moa_cuda_free(g_ctx, dt); moa_cuda_free(g_ctx, dtok); moa_cuda_free(g_ctx, dout);
        free(table);
    }
}

/* moa_cuda_weight_upload of raw k-quant / Q5 blocks: the device matrix is moa_dequant_row's
 * rows (f32: the same bits; f16/bf16: rounded to nearest even). */
TEST(weight_upload_all_block_types) {
    const moa_ggml_type types[] = {MOA_GGML_Q5_0, MOA_GGML_Q5_1, MOA_GGML_Q4_K, MOA_GGML_Q5_K, MOA_GGML_Q6_K};
    const int64_t n_out = 7, n_in = 512;
    for (size_t k = 0; k < sizeof types / sizeof types[0]; k++) {
        const moa_ggml_type t = types[k];
        uint32_t be;
        moa_ggml_type_info(t, &be, NULL);
        const size_t rb = moa_ggml_row_bytes(t, n_in);
        uint8_t *raw = malloc(rb * n_out);
        float *W = malloc(sizeof(float) * n_out * n_in), *got = malloc(sizeof(float) * n_out * n_in);
        uint16_t *got16 = malloc(2 * n_out * n_in);
        qb_fill(t, raw, n_in / be * n_out, 1);
        for (int64_t o = 0; o < n_out; o++) moa_dequant_row(t, raw + rb * o, W + o * n_in, n_in);
        int bad = 0;
        for (int dt = 0; dt < 3; dt++) {
            moa_cuda_weight w;
            CHECK_OK(moa_cuda_weight_upload(g_ctx, t, raw, n_out, n_in, (moa_cuda_dtype)dt, &w));
            if (!w.data) continue;
            CHECK(w.n_out == n_out && w.n_in == n_in && w.dtype == (moa_cuda_dtype)dt);
            if (dt == MOA_CUDA_F32) {
                to_host(got, w.data, sizeof(float) * n_out * n_in);
                bad += memcmp(got, W, sizeof(float) * n_out * n_in) != 0;
            } else {
                to_host(got16, w.data, 2 * n_out * n_in);
                for (int64_t i = 0; i < n_out * n_in; i++)
                    bad += got16[i] != (dt == MOA_CUDA_F16 ? moa_f32_to_f16(W[i]) : moa_f32_to_bf16(W[i]));
            }
            moa_cuda_weight_free(g_ctx, &w);
        }
        CHECK_MSG(bad == 0, "%s: uploaded weight differs from moa_dequant_row (%d)", moa_ggml_type_name(t), bad);
        free(raw); free(W); free(got); free(got16);
    }
}

/* ---- raw weights: the block matvec and the scratch GEMM ----------------------------------- */

static const moa_ggml_type mv_types[] = {MOA_GGML_Q4_0, MOA_GGML_Q4_1, MOA_GGML_Q5_0, MOA_GGML_Q5_1,
                                         MOA_GGML_Q8_0, MOA_GGML_Q4_K, MOA_GGML_Q5_K, MOA_GGML_Q6_K,
                                         MOA_GGML_F16, MOA_GGML_BF16, MOA_GGML_F32};
#define MV_N_TYPES ((int)(sizeof mv_types / sizeof mv_types[0]))
#define MV_U 5.9604644775390625e-8   /* f32 unit roundoff 2^-24 */
#define MV_C 4.0                     /* the bound's constant, below */

/* Worst ratio over the n x n_out outputs of y against the double dot of moa_dequant_row's
 * rows W [n_out][n_in] with x [n][n_in] (+ b): |y - ref| / (u sqrt(n_in) (sum_i |W x| + |b|)).
 * Only the rows o < rows_checked count (the control looks at row 0 alone). */
static double mv_ratio(const float *W, const float *x, const float *b, const float *y, int64_t n,
                       int64_t n_out, int64_t n_in, int64_t rows_checked) {
    double worst = 0;
    for (int64_t t = 0; t < n; t++)
        for (int64_t o = 0; o < rows_checked; o++) {
            double s = 0, a = 0;
            for (int64_t i = 0; i < n_in; i++) {
                const double p = (double)W[o * n_in + i] * x[t * n_in + i];
                s += p;
                a += fabs(p);
            }
            if (b) s += b[o], a += fabs(b[o]);
            const double r = fabs(y[t * n_out + o] - s) / (MV_U * sqrt((double)n_in) * (a > 0 ? a : 1e-300));
            if (!(r <= worst)) worst = r;   /* NaN propagates */
        }
    return worst;
}

/* moa_cuda_matvec on raw weights of every type the device decodes, n = 1, 2, 3 and
 * MOA_CUDA_MATVEC_MAX_N, n_out = 37 (not a multiple of the kernel's 4 warps per CTA), with
 * and without a bias, moderate and hard blocks, n_in 512 and (types of 32-value blocks) 160,
 * which leaves lanes idle, against the double dot of moa_dequant_row's
 * values. Bound: |y - ref| <= 4 u sqrt(n_in) (sum |w x| + |b|), u = 2^-24. The device
 * values are moa_dequant_row's bit for bit, so only the f32 summation differs: each lane
 * adds n_in/32 products, then 5 shuffle levels and the bias: at most (n_in/32 + 7) u
 * (sum |w x| + |b|) in the worst case (Higham's gamma_k), which 4 sqrt(n_in) u covers for
 * n_in <= 16384 (here 512 and 160), and ~sqrt(n_in/32) u for random rounding. Control: the reference
 * from the same blocks with one byte of row 0's first block changed must be off by more
 * than the bound. Errors: a dequantised weight, n = 0 or MAX_N + 1, a raw upload of an
 * unsupported type / a partial block / an f32 GEMM type, the backward on a raw weight. */
TEST(matvec_raw_all_block_types) {
    const int64_t n_out = 37, n_max = 512, ns[4] = {1, 2, 3, MOA_CUDA_MATVEC_MAX_N};
    const int64_t NX = MOA_CUDA_MATVEC_MAX_N * n_max;
    float *x = malloc(sizeof(float) * NX), *W = malloc(sizeof(float) * n_out * n_max), bias[37];
    float *y = malloc(sizeof(float) * MOA_CUDA_MATVEC_MAX_N * n_out);
    fill(x, (size_t)NX, 1.0f);
    fill(bias, 37, 2.0f);
    float *dx = dev_from(x, sizeof(float) * NX), *dy = dev_alloc(sizeof(float) * MOA_CUDA_MATVEC_MAX_N * n_out);
    for (int k = 0; k < MV_N_TYPES; k++) {
        const moa_ggml_type t = mv_types[k];
        uint32_t be;
        moa_ggml_type_info(t, &be, NULL);
        uint8_t *raw = malloc(moa_ggml_row_bytes(t, n_max) * n_out);
        double worst = 0, control = 0;
        for (int v = 0; v < 3; v++) {   /* moderate blocks, hard ones, a row of 5 blocks of 32 */
            const int hard = v == 1;
            const int64_t n_in = v == 2 ? 160 : n_max;
            if (n_in % be) continue;
            const size_t rb = moa_ggml_row_bytes(t, n_in);
            qb_fill(t, raw, n_in / be * n_out, hard);
            for (int64_t o = 0; o < n_out; o++) moa_dequant_row(t, raw + rb * o, W + o * n_in, n_in);
            moa_cuda_weight w;
            CHECK_OK(moa_cuda_weight_upload_raw(g_ctx, t, raw, n_out, n_in, MOA_CUDA_F16, &w));
            if (!w.raw) continue;
            CHECK(w.data == NULL && w.type == t && w.n_out == n_out && w.n_in == n_in);
            for (int withb = 0; withb < 2; withb++) {
                CHECK_OK(moa_cuda_weight_set_bias(g_ctx, &w, withb ? bias : NULL));
                for (int j = 0; j < 4; j++) {
                    CHECK_OK(moa_cuda_matvec(g_ctx, &w, dx, ns[j], dy));
                    to_host(y, dy, sizeof(float) * (size_t)(ns[j] * n_out));
                    const double r = mv_ratio(W, x, withb ? bias : NULL, y, ns[j], n_out, n_in, n_out);
                    CHECK_MSG(r <= MV_C, "%s n_in %lld n %lld bias %d hard %d: error %.3g u sqrt(n_in) sum|wx| > %g",
                              moa_ggml_type_name(t), (long long)n_in, (long long)ns[j], withb, hard, r, MV_C);
                    if (!(r <= worst)) worst = r;
                }
            }
            if (v == 0) {   /* control: one byte of row 0's first block changed in the reference */
                uint8_t *bad = malloc(rb);
                memcpy(bad, raw, rb);
                bad[be > 1 ? qb_sensitive_byte(t) : (t == MOA_GGML_F32 ? 3 : 1)] ^= 0x50;
                moa_dequant_row(t, bad, W, n_in);
                CHECK_OK(moa_cuda_matvec(g_ctx, &w, dx, MOA_CUDA_MATVEC_MAX_N, dy));
                to_host(y, dy, sizeof(float) * MOA_CUDA_MATVEC_MAX_N * n_out);
                const double r = mv_ratio(W, x, bias, y, MOA_CUDA_MATVEC_MAX_N, n_out, n_in, 1);
                CHECK_MSG(!(r <= 10 * MV_C), "%s control: a changed byte is only %.3g off", moa_ggml_type_name(t), r);
                control = r;
                free(bad);
            }
            moa_cuda_weight_free(g_ctx, &w);
            CHECK(w.raw == NULL && w.bias == NULL);
        }
        fprintf(stderr, "  matvec %-5s worst |err| / (u sqrt(n_in) (sum|wx| + |b|)) = %.3f (bound %g; control %.3g)\n",
                moa_ggml_type_name(t), worst, MV_C, control);
        free(raw);
    }
    /* errors */
    uint8_t blk[8 * 144];
    memset(blk, 0, sizeof blk);
    moa_cuda_weight w, wd;
    CHECK_EQ_INT(moa_cuda_weight_upload_raw(g_ctx, (moa_ggml_type)9, blk, 2, 32, MOA_CUDA_F16, &w), MOA_ERR_UNSUPPORTED);
    CHECK_EQ_INT(moa_cuda_weight_upload_raw(g_ctx, MOA_GGML_Q4_K, blk, 2, 288, MOA_CUDA_F16, &w), MOA_ERR_INVALID_ARG);
    CHECK(strstr(moa_last_error(), "multiple") != NULL);
    CHECK_EQ_INT(moa_cuda_weight_upload_raw(g_ctx, MOA_GGML_Q4_K, blk, 2, 256, MOA_CUDA_F32, &w), MOA_ERR_INVALID_ARG);
    CHECK_OK(moa_cuda_weight_upload_raw(g_ctx, MOA_GGML_Q4_K, blk, 2, 256, MOA_CUDA_F16, &w));
    CHECK_OK(moa_cuda_weight_upload(g_ctx, MOA_GGML_Q4_K, blk, 2, 256, MOA_CUDA_F16, &wd));
    CHECK_EQ_INT(moa_cuda_matvec(g_ctx, &w, dx, 0, dy), MOA_ERR_INVALID_ARG);
    CHECK_EQ_INT(moa_cuda_matvec(g_ctx, &w, dx, MOA_CUDA_MATVEC_MAX_N + 1, dy), MOA_ERR_INVALID_ARG);
    CHECK_EQ_INT(moa_cuda_matvec(g_ctx, &wd, dx, 1, dy), MOA_ERR_INVALID_ARG);
    CHECK(strstr(moa_last_error(), "dequantised") != NULL);
    CHECK_EQ_INT(moa_cuda_matmul_bwd(g_ctx, &w, dx, 1, dy, 0.0f), MOA_ERR_INVALID_ARG);
    CHECK(strstr(moa_last_error(), "raw weight") != NULL);
    moa_cuda_weight_free(g_ctx, &w);
    moa_cuda_weight_free(g_ctx, &wd);
    moa_cuda_free(g_ctx, dx);
    moa_cuda_free(g_ctx, dy);
    free(x); free(W); free(y);
}

/* Batches above MOA_CUDA_MATVEC_MAX_N on a raw weight: moa_cuda_matmul dequantises it into
 * the context's scratch and runs the same GEMM as on the weight uploaded dequantised, so the
 * results are the same bit for bit (f16 and bf16, with a bias; the scratch grown by a larger
 * weight and reused by a smaller one); the backend table's matmul
 * (raw and dequantised weights mixed in one call) and matmul_to_host take the matvec up to
 * the limit and the scratch GEMM above it, bit for bit as the direct calls. */
TEST(raw_weight_scratch_gemm) {
    const int64_t n_in = 256, n = 11, nouts[2] = {45, 19};
    float *x = malloc(sizeof(float) * n * n_in), bias[45];
    fill(x, (size_t)(n * n_in), 1.0f);
    fill(bias, 45, 1.0f);
    float *dx = dev_from(x, sizeof(float) * n * n_in), *ya = dev_alloc(4 * n * 45), *yb = dev_alloc(4 * n * 45);
    void *xh = dev_alloc(2 * n * n_in);
    float *ha = malloc(4 * n * 45), *hb = malloc(4 * n * 45);
    const moa_backend be = moa_cuda_backend(g_ctx);
    int bad = 0;
    for (int k = 0; k < 8; k++)
        for (int dt = MOA_CUDA_F16; dt <= MOA_CUDA_BF16; dt++)
            for (int s = 0; s < 2; s++) {
                const moa_ggml_type t = mv_types[k];
                const int64_t n_out = nouts[s];
                uint32_t bsz;
                moa_ggml_type_info(t, &bsz, NULL);
                const size_t rb = moa_ggml_row_bytes(t, n_in), ny = (size_t)(n * n_out);
                uint8_t *raw = malloc(rb * n_out);
                qb_fill(t, raw, n_in / bsz * n_out, 0);
                moa_cuda_weight wr, wd;
                CHECK_OK(moa_cuda_weight_upload_raw(g_ctx, t, raw, n_out, n_in, (moa_cuda_dtype)dt, &wr));
                CHECK_OK(moa_cuda_weight_upload(g_ctx, t, raw, n_out, n_in, (moa_cuda_dtype)dt, &wd));
                CHECK_OK(moa_cuda_weight_set_bias(g_ctx, &wr, bias));
                CHECK_OK(moa_cuda_weight_set_bias(g_ctx, &wd, bias));
                CHECK_OK(moa_cuda_convert(g_ctx, dx, n * n_in, xh, (moa_cuda_dtype)dt));
                CHECK_OK(moa_cuda_matmul(g_ctx, &wr, xh, n, ya));
                CHECK_OK(moa_cuda_matmul(g_ctx, &wd, xh, n, yb));
                to_host(ha, ya, 4 * ny); to_host(hb, yb, 4 * ny);
                bad += memcmp(ha, hb, 4 * ny) != 0;
                /* the table: q/k/v-like call mixing a raw and a dequantised weight */
                const void *ws[2] = {&wr, &wd};
                float *ys[2] = {ya, yb};
                CHECK_OK(be.matmul(be.ctx, ws, 2, dx, n, ys));
                to_host(ha, ya, 4 * ny);
                bad += memcmp(ha, hb, 4 * ny) != 0;
                float *hh = malloc(4 * ny);
                CHECK_OK(be.matmul_to_host(be.ctx, &wr, dx, n, hh));
                bad += memcmp(hh, hb, 4 * ny) != 0;
                /* at the limit: the matvec, through every entry */
                const int64_t m = MOA_CUDA_MATVEC_MAX_N, nm = m * n_out;
                CHECK_OK(moa_cuda_matvec(g_ctx, &wr, dx, m, yb));
                to_host(hb, yb, 4 * (size_t)nm);
                const void *w1[1] = {&wr};
                CHECK_OK(be.matmul(be.ctx, w1, 1, dx, m, ys));
                to_host(ha, ya, 4 * (size_t)nm);
                bad += memcmp(ha, hb, 4 * (size_t)nm) != 0;
                CHECK_OK(be.matmul_to_host(be.ctx, &wr, dx, m, hh));
                bad += memcmp(hh, hb, 4 * (size_t)nm) != 0;
                if (bad) fprintf(stderr, "  %s %s n_out %lld: differs\n", moa_ggml_type_name(t),
                                 dt == MOA_CUDA_F16 ? "f16" : "bf16", (long long)n_out);
                free(hh);
                moa_cuda_weight_free(g_ctx, &wr);
                moa_cuda_weight_free(g_ctx, &wd);
                free(raw);
            }
    CHECK_EQ_INT(bad, 0);
    moa_cuda_free(g_ctx, dx); moa_cuda_free(g_ctx, ya); moa_cuda_free(g_ctx, yb); moa_cuda_free(g_ctx, xh);
    free(x); free(ha); free(hb);
}

TEST(embedding_rows) {
    const moa_ggml_type t = MOA_GGML_Q4_1;
    const int64_t d = 96, n_vocab = 11;
    const size_t rb = moa_ggml_row_bytes(t, d);
    uint8_t *table = malloc(rb * n_vocab);
    fill_blocks(t, table, (size_t)(d * n_vocab));
    const int32_t tok[5] = {3, 0, 10, 3, 7};
    float ref[5 * 96], got[5 * 96];
    for (int r = 0; r < 5; r++) moa_dequant_row(t, table + rb * tok[r], ref + r * d, d);
    void *dt = dev_from(table, rb * n_vocab), *dtok = dev_from(tok, sizeof tok);
    float *dout = dev_alloc(sizeof got);
    CHECK_OK(moa_cuda_embed(g_ctx, t, dt, d, dtok, 5, dout));
    to_host(got, dout, sizeof got);
    CHECK(memcmp(got, ref, sizeof got) == 0);
    moa_cuda_free(g_ctx, dt); moa_cuda_free(g_ctx, dtok); moa_cuda_free(g_ctx, dout);
    free(table);
}

/* y = x W^T with W uploaded (Q8_0 / Q4_1 -> f16 / bf16) vs double products of the same
 * rounded values, without and with a bias. */
TEST(weight_upload_and_matmul) {
    const int64_t n_out = 67, n_in = 96, n = 5;
    const moa_ggml_type types[2] = {MOA_GGML_Q8_0, MOA_GGML_Q4_1};
    for (int k = 0; k < 2; k++)
        for (int dt = MOA_CUDA_F16; dt <= MOA_CUDA_BF16; dt++) {
            const size_t rb = moa_ggml_row_bytes(types[k], n_in);
            uint8_t *raw = malloc(rb * n_out);
            float *W = malloc(n_out * n_in * 4), x[5 * 96], y[5 * 67], yref[5 * 67];
            uint16_t xh[5 * 96];
            fill_blocks(types[k], raw, (size_t)(n_out * n_in));
            for (int64_t o = 0; o < n_out; o++) moa_dequant_row(types[k], raw + rb * o, W + o * n_in, n_in);
            fill(x, sizeof x / 4, 1.0f);
            float (*rt)(uint16_t) = dt == MOA_CUDA_F16 ? moa_f16_to_f32 : moa_bf16_to_f32;
            uint16_t (*tr)(float) = dt == MOA_CUDA_F16 ? moa_f32_to_f16 : moa_f32_to_bf16;
            for (int64_t t = 0; t < n; t++)
                for (int64_t o = 0; o < n_out; o++) {
                    double a = 0;
                    for (int64_t i = 0; i < n_in; i++) a += (double)rt(tr(W[o * n_in + i])) * rt(tr(x[t * n_in + i]));
                    yref[t * n_out + o] = (float)a;
                }
            moa_cuda_weight w;
            CHECK_OK(moa_cuda_weight_upload(g_ctx, types[k], raw, n_out, n_in, (moa_cuda_dtype)dt, &w));
            float *dx = dev_from(x, sizeof x), *dy = dev_alloc(sizeof y);
            void *dxh = dev_alloc(sizeof xh);
            CHECK_OK(moa_cuda_convert(g_ctx, dx, n * n_in, dxh, (moa_cuda_dtype)dt));
            to_host(xh, dxh, sizeof xh);
            int badx = 0;
            for (size_t i = 0; i < sizeof xh / 2; i++) badx += xh[i] != tr(x[i]);
            CHECK_EQ_INT(badx, 0);
            CHECK_OK(moa_cuda_matmul(g_ctx, &w, dxh, n, dy));
            to_host(y, dy, sizeof y);
            CHECK(close_arr("matmul", y, yref, (size_t)(n * n_out), 1e-4, 1e-5));
            /* with a bias (f32, added after the GEMM: qwen2's q/k/v); then removed again */
            float bias[67], yb[5 * 67];
            fill(bias, 67, 2.0f);
            for (int64_t t = 0; t < n; t++)
                for (int64_t o = 0; o < n_out; o++) yb[t * n_out + o] = yref[t * n_out + o] + bias[o];
            CHECK_OK(moa_cuda_weight_set_bias(g_ctx, &w, bias));
            CHECK_OK(moa_cuda_matmul(g_ctx, &w, dxh, n, dy));
            to_host(y, dy, sizeof y);
            CHECK(close_arr("matmul + bias", y, yb, (size_t)(n * n_out), 1e-4, 1e-5));
            CHECK(rel_err(y, yref, (size_t)(n * n_out)) > 1e-2);   /* control: the bias shows */
            CHECK_OK(moa_cuda_weight_set_bias(g_ctx, &w, NULL));
            CHECK(w.bias == NULL);
            CHECK_OK(moa_cuda_matmul(g_ctx, &w, dxh, n, dy));
            to_host(y, dy, sizeof y);
            CHECK(close_arr("matmul, bias removed", y, yref, (size_t)(n * n_out), 1e-4, 1e-5));
            CHECK_OK(moa_cuda_weight_set_bias(g_ctx, &w, bias));   /* freed by moa_cuda_weight_free */
            /* batched NT products: C_b = A_b B_b^T with A = x rows, B = W rows (2 batches) */
            float C[2 * 2 * 3], Cref[2 * 2 * 3];
            for (int b = 0; b < 2; b++)
                for (int r = 0; r < 2; r++)
                    for (int c = 0; c < 3; c++) {
                        double a = 0;
                        for (int64_t i = 0; i < n_in; i++)
                            a += (double)rt(tr(x[(b * 2 + r) * n_in + i])) * rt(tr(W[(b * 3 + c) * n_in + i]));
                        Cref[(b * 2 + r) * 3 + c] = 0.5f * (float)a;
                    }
            float *dC = dev_alloc(sizeof C);
            CHECK_OK(moa_cuda_memset0(g_ctx, dC, sizeof C));
            CHECK_OK(moa_cuda_gemm_nt_batched(g_ctx, (moa_cuda_dtype)dt, 2, 3, (int)n_in, 0.5f, dxh,
                                              2 * n_in, w.data, 3 * n_in, 0.0f, dC, 6, 2));
            to_host(C, dC, sizeof C);
            CHECK(close_arr("gemm_nt_batched", C, Cref, 12, 1e-4, 1e-5));
            moa_cuda_weight_free(g_ctx, &w);
            moa_cuda_free(g_ctx, dx); moa_cuda_free(g_ctx, dy); moa_cuda_free(g_ctx, dxh);
            moa_cuda_free(g_ctx, dC);
            free(raw); free(W);
        }
}

/* ---- RMSNorm, RoPE, SwiGLU ------------------------------------------------------------------ */

TEST(rmsnorm_swiglu_add) {
    const int64_t n = 7, d = 333;
    float *x = malloc(n * d * 4), *w = malloc(d * 4), *y = malloc(n * d * 4), *yr = malloc(n * d * 4);
    fill(x, n * d, 3.0f);
    fill(w, d, 1.0f);
    for (int64_t t = 0; t < n; t++) {   /* model/forward.c: y = x / sqrt(mean(x^2) + eps) * w */
        double ss = 0;
        for (int64_t i = 0; i < d; i++) ss += (double)x[t * d + i] * x[t * d + i];
        const float r = (float)(1.0 / sqrt(ss / (double)d + 1e-5));
        for (int64_t i = 0; i < d; i++) yr[t * d + i] = x[t * d + i] * r * w[i];
    }
    float *dx = dev_from(x, n * d * 4), *dw = dev_from(w, d * 4), *dy = dev_alloc(n * d * 4);
    CHECK_OK(moa_cuda_rmsnorm(g_ctx, dx, dw, dy, n, d, 1e-5f));
    to_host(y, dy, n * d * 4);
    CHECK(close_arr("rmsnorm", y, yr, (size_t)(n * d), 1e-5, 0));
    /* through the backend table, in place */
    moa_backend b = moa_cuda_backend(g_ctx);
    CHECK_OK(b.rmsnorm(b.ctx, dx, dw, dx, n, d, 1e-5f));
    to_host(y, dx, n * d * 4);
    CHECK(close_arr("rmsnorm in place", y, yr, (size_t)(n * d), 1e-5, 0));
    /* g = silu(g) u; x += y */
    float *g = malloc(n * d * 4), *u = malloc(n * d * 4);
    fill(g, n * d, 6.0f);
    fill(u, n * d, 1.0f);
    for (int64_t i = 0; i < n * d; i++) yr[i] = (float)(g[i] / (1.0 + exp(-(double)g[i])) * u[i]);
    float *dg = dev_from(g, n * d * 4), *du = dev_from(u, n * d * 4);
    CHECK_OK(moa_cuda_swiglu(g_ctx, dg, du, n * d));
    to_host(y, dg, n * d * 4);
    CHECK(close_arr("swiglu", y, yr, (size_t)(n * d), 1e-5, 0));
    for (int64_t i = 0; i < n * d; i++) yr[i] = y[i] + u[i];
    CHECK_OK(moa_cuda_add(g_ctx, dg, du, n * d));
    to_host(y, dg, n * d * 4);
    CHECK(close_arr("add", y, yr, (size_t)(n * d), 1e-6, 0));
    moa_cuda_free(g_ctx, dx); moa_cuda_free(g_ctx, dw); moa_cuda_free(g_ctx, dy);
    moa_cuda_free(g_ctx, dg); moa_cuda_free(g_ctx, du);
    free(x); free(w); free(y); free(yr); free(g); free(u);
}

TEST(rope_adjacent_pairs) {
    const int64_t n = 9, pos0 = 1000;
    const int nh = 3, hd = 24, rd = 16;
    moa_rope_table tab;
    CHECK_OK(moa_rope_table_init(&tab, rd, 10000.0f, 0, pos0 + n + 600));
    float x[9 * 3 * 24], ref[9 * 3 * 24], got[9 * 3 * 24];
    fill(x, sizeof x / 4, 1.0f);
    for (int inv = 0; inv < 2; inv++) {
        memcpy(ref, x, sizeof x);
        moa_rope_rows(&tab, ref, n, nh, hd, pos0, inv);
        float *dx = dev_from(x, sizeof x);
        CHECK_OK(moa_cuda_rope(g_ctx, dx, n, nh, hd, rd, 10000.0f, pos0, NULL, inv, 0));
        to_host(got, dx, sizeof got);
        CHECK(close_arr("rope", got, ref, sizeof x / 4, 2e-6, 1e-7));
        moa_cuda_free(g_ctx, dx);
    }
    /* per-row positions (batched decode): row t at 1500 - 37 t */
    int64_t pos[9];
    for (int t = 0; t < n; t++) pos[t] = 1500 - 37 * t;
    memcpy(ref, x, sizeof x);
    for (int t = 0; t < n; t++) moa_rope_rows(&tab, ref + t * nh * hd, 1, nh, hd, pos[t], 0);
    float *dx = dev_from(x, sizeof x);
    int64_t *dpos = dev_from(pos, sizeof pos);
    CHECK_OK(moa_cuda_rope(g_ctx, dx, n, nh, hd, rd, 10000.0f, 0, dpos, 0, 0));
    to_host(got, dx, sizeof got);
    CHECK(close_arr("rope positions", got, ref, sizeof x / 4, 2e-6, 1e-7));
    CHECK_EQ_INT(moa_cuda_rope(g_ctx, dx, n, nh, hd, 15, 10000.0f, 0, NULL, 0, 0), MOA_ERR_INVALID_ARG);
    CHECK_EQ_INT(moa_cuda_rope(g_ctx, dx, n, nh, hd, rd, 10000.0f, 0, NULL, 0, 2), MOA_ERR_INVALID_ARG);
    moa_cuda_free(g_ctx, dx); moa_cuda_free(g_ctx, dpos);
    moa_rope_table_free(&tab);
}

/* NEOX pairing (qwen2): halves (x[i], x[i + rope_dim/2]) vs moa_rope_rows with a NEOX table,
 * forward, inverse and per-row positions, on odd shapes: head dims 20 and 128, rope_dim below
 * and equal to the head dim. Control: the normal pairing is far from the NEOX reference. */
TEST(rope_neox_halves) {
    const struct { int n, nh, hd, rd; } cases[] = {{7, 3, 20, 12}, {5, 2, 20, 20}, {4, 3, 128, 64},
                                                   {3, 2, 128, 128}, {6, 1, 40, 20}};
    for (size_t ci = 0; ci < sizeof cases / sizeof cases[0]; ci++) {
        const int n = cases[ci].n, nh = cases[ci].nh, hd = cases[ci].hd, rd = cases[ci].rd;
        const int64_t pos0 = 700, cnt = (int64_t)n * nh * hd;
        moa_rope_table tab;
        CHECK_OK(moa_rope_table_init(&tab, rd, 10000.0f, 1, pos0 + n + 900));
        float *x = malloc(cnt * 4), *ref = malloc(cnt * 4), *got = malloc(cnt * 4);
        fill(x, (size_t)cnt, 1.0f);
        float *dx = dev_alloc(cnt * 4);
        for (int inv = 0; inv < 2; inv++) {
            memcpy(ref, x, cnt * 4);
            moa_rope_rows(&tab, ref, n, nh, hd, pos0, inv);
            CHECK_OK(moa_cuda_upload(g_ctx, dx, x, cnt * 4));
            CHECK_OK(moa_cuda_rope(g_ctx, dx, n, nh, hd, rd, 10000.0f, pos0, NULL, inv, 1));
            to_host(got, dx, cnt * 4);
            CHECK_MSG(close_arr("rope neox", got, ref, (size_t)cnt, 2e-6, 1e-7), "hd %d rope_dim %d inverse %d",
                      hd, rd, inv);
            const double r = rel_err(got, ref, (size_t)cnt);
            /* control: the adjacent pairing is far from the NEOX reference */
            CHECK_OK(moa_cuda_upload(g_ctx, dx, x, cnt * 4));
            CHECK_OK(moa_cuda_rope(g_ctx, dx, n, nh, hd, rd, 10000.0f, pos0, NULL, inv, 0));
            to_host(got, dx, cnt * 4);
            const double rc = rel_err(got, ref, (size_t)cnt);
            CHECK_MSG(rc > 0.1, "hd %d rope_dim %d: the normal pairing is within %.3g of the NEOX reference",
                      hd, rd, rc);
            if (getenv("MOA_TEST_VERBOSE"))
                fprintf(stderr, "  rope neox hd %d rope_dim %d inverse %d: ratio %.3g (normal pairing: %.3g)\n",
                        hd, rd, inv, r, rc);
        }
        /* per-row positions (batched decode) */
        int64_t pos[8];
        for (int t = 0; t < n; t++) pos[t] = 1500 - 37 * t;
        for (int t = 0; t < n; t++) {
            memcpy(ref + (size_t)t * nh * hd, x + (size_t)t * nh * hd, (size_t)nh * hd * 4);
            moa_rope_rows(&tab, ref + (size_t)t * nh * hd, 1, nh, hd, pos[t], 0);
        }
        int64_t *dpos = dev_from(pos, sizeof pos);
        CHECK_OK(moa_cuda_upload(g_ctx, dx, x, cnt * 4));
        CHECK_OK(moa_cuda_rope(g_ctx, dx, n, nh, hd, rd, 10000.0f, 0, dpos, 0, 1));
        to_host(got, dx, cnt * 4);
        CHECK_MSG(close_arr("rope neox positions", got, ref, (size_t)cnt, 2e-6, 1e-7), "hd %d rope_dim %d", hd, rd);
        moa_cuda_free(g_ctx, dx); moa_cuda_free(g_ctx, dpos);
        free(x); free(ref); free(got);
        moa_rope_table_free(&tab);
    }
}

/* ---- profiler attention ---------------------------------------------------------------------- */

typedef struct { int n, H, KV, hd, sink, block, extra_bins; } train_case;

static void check_train_case(const train_case *tc) {
    moa_attn_train_shape s = moa_attn_train_default_shape(tc->n, tc->H, tc->KV, tc->hd);
    s.sink = tc->sink;
    s.block = tc->block;
    const int nb = moa_attn_train_n_bins(&s) + tc->extra_bins, H = tc->H;
    const size_t nq = (size_t)tc->n * tc->H * tc->hd, nk = (size_t)tc->n * tc->KV * tc->hd;
    const size_t nl = (size_t)tc->H * tc->n, nh = (size_t)H * nb;
    float *Q = malloc(nq * 4), *K = malloc(nk * 4), *V = malloc(nk * 4), *dO = malloc(nq * 4);
    float *O = malloc(nq * 4), *L = malloc(nl * 4), *Og = malloc(nq * 4), *Lg = malloc(nl * 4);
    float *dQ = malloc(nq * 4), *dK = malloc(nk * 4), *dV = malloc(nk * 4);
    float *dQg = malloc(nq * 4), *dKg = malloc(nk * 4), *dVg = malloc(nk * 4);
    double *hr = calloc(2 * nh + 2 * H, 8), *hg = malloc((2 * nh + 2 * H) * 8);
    fill(Q, nq, 2.0f); fill(K, nk, 2.0f); fill(V, nk, 1.0f); fill(dO, nq, 1.0f);
    /* a peaked row (a dominant entry away from row 0) */
    if (tc->n > 20) for (int d = 0; d < tc->hd; d++) Q[(size_t)20 * H * tc->hd + d] = 8.0f * K[(size_t)3 * tc->KV * tc->hd + d];
    /* forward vs the double reference */
    CHECK_OK(moa_attn_fwd_lse_ref(&s, Q, K, V, O, L));
    float *dQd = dev_from(Q, nq * 4), *dKd = dev_from(K, nk * 4), *dVd = dev_from(V, nk * 4);
    float *dOd = dev_from(dO, nq * 4), *Od = dev_alloc(nq * 4), *Ld = dev_alloc(nl * 4);
    CHECK_OK(moa_cuda_attn_fwd_lse(g_ctx, &s, dQd, dKd, dVd, Od, Ld));
    to_host(Og, Od, nq * 4);
    to_host(Lg, Ld, nl * 4);
    CHECK(close_arr("fwd O", Og, O, nq, 2e-5, 1e-6));
    CHECK(close_arr("fwd LSE", Lg, L, nl, 2e-6, 1e-5));
    /* backward vs the CPU kernel fed the same O and LSE (the GPU's own forward) */
    moa_influence_acc acc = {hr, hr + nh, hr + 2 * nh, hr + 2 * nh + H, nb};
    CHECK_OK(moa_attn_bwd_influence(&s, Q, K, V, Og, dO, Lg, dQ, dK, dV, &acc));
    double *hd_ = dev_alloc((2 * nh + 2 * H) * 8);
    CHECK_OK(moa_cuda_memset0(g_ctx, hd_, (2 * nh + 2 * H) * 8));
    moa_influence_acc gacc = {hd_, hd_ + nh, hd_ + 2 * nh, hd_ + 2 * nh + H, nb};
    float *gQ = dev_alloc(nq * 4), *gK = dev_alloc(nk * 4), *gV = dev_alloc(nk * 4);
    CHECK_OK(moa_cuda_attn_bwd_influence(g_ctx, &s, dQd, dKd, dVd, Od, dOd, Ld, gQ, gK, gV, &gacc));
    /* accumulates: a second call doubles the histograms */
    CHECK_OK(moa_cuda_attn_bwd_influence(g_ctx, &s, dQd, dKd, dVd, Od, dOd, Ld, gQ, gK, gV, &gacc));
    to_host(dQg, gQ, nq * 4); to_host(dKg, gK, nk * 4); to_host(dVg, gV, nk * 4);
    to_host(hg, hd_, (2 * nh + 2 * H) * 8);
    for (size_t x = 0; x < 2 * nh + 2 * (size_t)H; x++) hg[x] *= 0.5;
    CHECK(close_arr("bwd dQ", dQg, dQ, nq, 1e-4, 1e-6));
    CHECK(close_arr("bwd dK", dKg, dK, nk, 1e-4, 1e-6));
    CHECK(close_arr("bwd dV", dVg, dV, nk, 1e-4, 1e-6));
    CHECK(close_arr_d("influence abs", hg, hr, hr, nh, 1e-4));
    CHECK(close_arr_d("influence sgn", hg + nh, hr + nh, hr, nh, 1e-4));
    CHECK(close_arr_d("sink abs", hg + 2 * nh, hr + 2 * nh, hr + 2 * nh, H, 1e-4));
    CHECK(close_arr_d("sink sgn", hg + 2 * nh + H, hr + 2 * nh + H, hr + 2 * nh, H, 1e-4));
    /* without a histogram: gradients only */
    CHECK_OK(moa_cuda_attn_bwd_influence(g_ctx, &s, dQd, dKd, dVd, Od, dOd, Ld, gQ, gK, gV, NULL));
    to_host(dQg, gQ, nq * 4);
    CHECK(close_arr("bwd dQ (no influence)", dQg, dQ, nq, 1e-4, 1e-6));
    void *ptrs[] = {dQd, dKd, dVd, dOd, Od, Ld, hd_, gQ, gK, gV};
    for (size_t i = 0; i < sizeof ptrs / sizeof ptrs[0]; i++) moa_cuda_free(g_ctx, ptrs[i]);
    free(Q); free(K); free(V); free(dO); free(O); free(L); free(Og); free(Lg);
    free(dQ); free(dK); free(dV); free(dQg); free(dKg); free(dVg); free(hr); free(hg);
}

TEST(profiler_attention_fwd_bwd) {
    const train_case cases[] = {
        {77, 6, 2, 40, 5, 16, 0},     /* GQA 3, hd not a multiple of 32 */
        {130, 3, 3, 64, 64, 64, 3},   /* MHA, default sink/block, longer histogram */
        {33, 4, 1, 256, 0, 7, 0},     /* hd 256 (opt-in shared memory), block < 32 */
        {1, 2, 1, 16, 0, 1, 0},       /* one token */
        {BIG(1100, 150), 1, 1, 16, 3, 1, 0},   /* > HIST_SMEM_BINS bins: global histogram */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        fprintf(stderr, "  case n=%d H=%d KV=%d hd=%d sink=%d block=%d\n", cases[i].n, cases[i].H,
                cases[i].KV, cases[i].hd, cases[i].sink, cases[i].block);
        check_train_case(&cases[i]);
    }
}

/* ---- runtime: prefill and decode through the device cache vs the CPU runtime ---------------- */

typedef struct {
    moa_cache *cpu;
    moa_cuda_cache *gpu;   /* the device cache itself, or NULL when dev is used */
    moa_cache *dev;        /* the runtime's API on MOA_CACHE_DEVICE_CUDA (runtime_api_device) */
    int n_head, n_kv, hd;
    int lent;              /* dev runs on g_ctx (device_ctx) rather than its own context */
} rt_pair;

/* A CPU and a device cache of one layout; K and V stored as cpu_t[0], cpu_t[1] on the CPU and
 * gpu_t[0], gpu_t[1] on the device (moa_kv_type values; the same but for controls). */
static void rt_create_typed(rt_pair *p, int n_layer, int n_head, int n_kv, int hd,
                            const moa_cache_unit *units, int64_t n_ctx, int n_seq,
                            const int64_t *q_window, const moa_cache_params *cp,
                            const moa_kv_type cpu_t[2], const moa_kv_type gpu_t[2]) {
    memset(p, 0, sizeof *p);
    p->n_head = n_head; p->n_kv = n_kv; p->hd = hd;
    moa_cache_layout L = {n_layer, n_head, n_kv, hd, units, q_window};
    moa_cache_params P = cp ? *cp : moa_cache_default_params();
    P.type_k = cpu_t[0];
    P.type_v = cpu_t[1];
    CHECK_OK(moa_cache_create_layout(&L, n_ctx, n_seq, &P, &p->cpu));
    moa_cuda_unit *cu = calloc((size_t)n_layer * n_kv, sizeof *cu);
    for (int i = 0; i < n_layer * n_kv; i++) {
        cu[i].kind = (int)units[i].kind;
        cu[i].window = units[i].window;
        cu[i].sink = units[i].sink;
        cu[i].decay = units[i].decay;
    }
    moa_cuda_cache_layout G = {.n_layer = n_layer, .n_head = n_head, .n_head_kv = n_kv,
                               .head_dim = hd, .units = cu, .scale = 0.0f, .q_window = q_window,
                               .pos_mode = cp ? (int)cp->pos_mode : 0,
                               .rope_dim = cp ? cp->rope_dim : 0,
                               .rope_base = cp ? cp->rope_base : 0.0f,
                               .rope_pairing = cp ? (int)cp->rope_pairing : 0,
                               .type_k = (int)gpu_t[0], .type_v = (int)gpu_t[1]};
    CHECK_OK(moa_cuda_cache_create(g_ctx, &G, n_ctx, n_seq, &p->gpu));
    if (cpu_t[0] == gpu_t[0] && cpu_t[1] == gpu_t[1])
        CHECK_EQ_INT(moa_cuda_cache_bytes(p->gpu), moa_cache_bytes(p->cpu));
    free(cu);
}
/* f32 on both sides (the tests below that pin the kernels rather than the storage types) */
static void rt_create_full(rt_pair *p, int n_layer, int n_head, int n_kv, int hd,
                           const moa_cache_unit *units, int64_t n_ctx, int n_seq,
                           const int64_t *q_window, const moa_cache_params *cp) {
    const moa_kv_type f32[2] = {MOA_KV_F32, MOA_KV_F32};
    rt_create_typed(p, n_layer, n_head, n_kv, hd, units, n_ctx, n_seq, q_window, cp, f32, f32);
}
static void rt_create(rt_pair *p, int n_layer, int n_head, int n_kv, int hd,
                      const moa_cache_unit *units, int64_t n_ctx, int n_seq) {
    rt_create_full(p, n_layer, n_head, n_kv, hd, units, n_ctx, n_seq, NULL, NULL);
}

/* One call on both: prefill (seqs == NULL, seq) or decode (rows of seqs); checks the outputs
 * agree (check != 0) and returns max |error| / max |CPU output|. */
static double rt_step_ratio(rt_pair *p, int layer, int seq, const int *seqs, int n, int check,
                            const char *what) {
    const size_t nq = (size_t)n * p->n_head * p->hd, nk = (size_t)n * p->n_kv * p->hd;
    float *q = malloc(nq * 4), *k = malloc(nk * 4), *v = malloc(nk * 4);
    float *o = malloc(nq * 4), *og = malloc(nq * 4);
    fill(q, nq, 1.5f); fill(k, nk, 1.5f); fill(v, nk, 1.0f);
    float *dq = dev_from(q, nq * 4), *dk = dev_from(k, nk * 4), *dv = dev_from(v, nk * 4);
    float *dout = dev_alloc(nq * 4);
    if (p->dev) CHECK_OK(moa_cuda_sync(g_ctx));   /* a cache with its own context reads on its own stream */
    if (seqs) {
        CHECK_OK(moa_attn_decode(p->cpu, layer, seqs, n, q, k, v, o));
        CHECK_OK(p->dev ? moa_attn_decode(p->dev, layer, seqs, n, dq, dk, dv, dout)
                        : moa_cuda_attn_decode(p->gpu, layer, seqs, n, dq, dk, dv, dout));
    } else {
        CHECK_OK(moa_attn_prefill(p->cpu, seq, layer, q, k, v, n, o));
        CHECK_OK(p->dev ? moa_attn_prefill(p->dev, seq, layer, dq, dk, dv, n, dout)
                        : moa_cuda_attn_prefill(p->gpu, seq, layer, dq, dk, dv, n, dout));
    }
    to_host(og, dout, nq * 4);
    if (check) CHECK_MSG(close_arr(what, og, o, nq, 2e-4, 1e-6), "%s: layer %d, %d rows", what, layer, n);
    double mx = 0, err = 0;
    for (size_t i = 0; i < nq; i++) {
        mx = fmax(mx, fabs(o[i]));
        err = fmax(err, fabs((double)og[i] - o[i]));
    }
    moa_cuda_free(g_ctx, dq); moa_cuda_free(g_ctx, dk); moa_cuda_free(g_ctx, dv);
    moa_cuda_free(g_ctx, dout);
    free(q); free(k); free(v); free(o); free(og);
    return mx > 0 ? err / mx : err;
}
static void rt_step(rt_pair *p, int layer, int seq, const int *seqs, int n, const char *what) {
    (void)rt_step_ratio(p, layer, seq, seqs, n, 1, what);
}

/* 2 layers x 4 KV heads (8 query heads, GQA 2), hd 48, n_ctx 100: window (sink 4, W 24), dense,
 * linear (decay 0.05), window (no sink, W 7); layer 1 mirrors with a decay-free linear */
static const moa_cache_unit mixed_units[8] = {
    {MOA_UNIT_WINDOW, 24, 4, 0}, {MOA_UNIT_DENSE, 100, 4, 0}, {MOA_UNIT_LINEAR, 0, 0, 0.05f},
    {MOA_UNIT_WINDOW, 7, 0, 0},
    {MOA_UNIT_LINEAR, 0, 0, 0.0f}, {MOA_UNIT_WINDOW, 40, 2, 0}, {MOA_UNIT_WINDOW, 3, 5, 0},
    {MOA_UNIT_DENSE, 100, 0, 0}};

TEST(runtime_prefill_decode_mixed_units) {
    const moa_cache_unit *units = mixed_units;
    rt_pair p;
    rt_create(&p, 2, 8, 4, 48, units, 100, 3);
    if (!p.cpu || !p.gpu) return;
    for (int l = 0; l < 2; l++) {
        rt_step(&p, l, 0, NULL, 37, "prefill seq 0 chunk 1");
        rt_step(&p, l, 0, NULL, 20, "prefill seq 0 chunk 2 (longer than some rings)");
        rt_step(&p, l, 1, NULL, 5, "prefill seq 1");
        rt_step(&p, l, 2, NULL, 1, "prefill seq 2 (one token)");
    }
    const int all[3] = {0, 1, 2}, some[2] = {2, 0};
    for (int step = 0; step < 12; step++)
        for (int l = 0; l < 2; l++) {
            if (step % 3 == 2) rt_step(&p, l, -1, some, 2, "decode rows {2, 0}");
            else rt_step(&p, l, -1, all, 3, "decode rows {0, 1, 2}");
        }
    for (int s = 0; s < 3; s++)
        for (int l = 0; l < 2; l++)
            CHECK_EQ_INT(moa_cuda_cache_pos(p.gpu, s, l), moa_cache_pos(p.cpu, s, l));
    /* a dense unit past n_ctx: both refuse */
    float *dummy = dev_alloc((size_t)60 * 8 * 48 * 4);
    CHECK_EQ_INT(moa_cuda_attn_prefill(p.gpu, 0, 0, dummy, dummy, dummy, 60, dummy), MOA_ERR_RANGE);
    const int dup[2] = {1, 1};
    CHECK_EQ_INT(moa_cuda_attn_decode(p.gpu, 0, dup, 2, dummy, dummy, dummy, dummy), MOA_ERR_INVALID_ARG);
    moa_cuda_free(g_ctx, dummy);
    /* reset one sequence, then it starts over like the CPU's */
    CHECK_OK(moa_cache_reset(p.cpu, 1));
    CHECK_OK(moa_cuda_cache_reset(p.gpu, 1));
    for (int l = 0; l < 2; l++) rt_step(&p, l, 1, NULL, 9, "prefill after reset");
    moa_cache_free(p.cpu);
    moa_cuda_cache_free(p.gpu);
}

/* q-head granularity: each query head masked by its own window inside its group's buffer. */
TEST(runtime_q_head_windows) {
    const moa_cache_unit units[4] = {{MOA_UNIT_WINDOW, 24, 4, 0}, {MOA_UNIT_DENSE, 60, 3, 0},
                                     {MOA_UNIT_WINDOW, 7, 0, 0}, {MOA_UNIT_WINDOW, 40, 2, 0}};
    const int64_t qw[8] = {24, 10, 60, 37, 3, 7, 0, 40};
    rt_pair p;
    rt_create_full(&p, 1, 8, 4, 32, units, 60, 2, qw, NULL);
    if (!p.cpu || !p.gpu) return;
    rt_step(&p, 0, 0, NULL, 29, "q-head prefill seq 0");
    rt_step(&p, 0, 1, NULL, 13, "q-head prefill seq 1");
    rt_step(&p, 0, 0, NULL, 9, "q-head prefill seq 0, second chunk");
    const int both[2] = {1, 0};
    for (int step = 0; step < 5; step++) rt_step(&p, 0, -1, both, 2, "q-head decode");
    moa_cache_free(p.cpu);
    moa_cuda_cache_free(p.gpu);
    /* a query window larger than its unit's is refused */
    const int64_t bad[8] = {25, 10, 60, 37, 3, 7, 0, 40};
    moa_cuda_unit cu[4];
    for (int i = 0; i < 4; i++) {
        cu[i].kind = (int)units[i].kind; cu[i].window = units[i].window;
        cu[i].sink = units[i].sink; cu[i].decay = 0;
    }
    moa_cuda_cache_layout G = {.n_layer = 1, .n_head = 8, .n_head_kv = 4, .head_dim = 32,
                               .units = cu, .q_window = bad};
    moa_cuda_cache *c = NULL;
    CHECK_EQ_INT(moa_cuda_cache_create(g_ctx, &G, 60, 1, &c), MOA_ERR_INVALID_ARG);
    CHECK(c == NULL);
}

/* RoPE inside the cache: absolute mode rotating q, k itself (partial rope_dim), and
 * streaming mode (raw keys, rotation by cache position) running past n_ctx, where the dense
 * unit rolls too. */
TEST(runtime_rope_modes) {
    const moa_cache_unit units[3] = {{MOA_UNIT_WINDOW, 12, 4, 0}, {MOA_UNIT_DENSE, 40, 4, 0},
                                     {MOA_UNIT_LINEAR, 0, 0, 0.1f}};
    for (int mode = 0; mode < 2; mode++) {
        moa_cache_params cp = moa_cache_default_params();
        cp.pos_mode = mode ? MOA_POS_STREAMING : MOA_POS_ABSOLUTE;
        cp.rope_dim = mode ? 32 : 16;
        cp.rope_base = 10000.0f;
        rt_pair p;
        rt_create_full(&p, 1, 6, 3, 32, units, 40, 2, NULL, &cp);
        if (!p.cpu || !p.gpu) return;
        rt_step(&p, 0, 0, NULL, 21, mode ? "streaming prefill" : "absolute+rope prefill");
        rt_step(&p, 0, 1, NULL, 6, mode ? "streaming prefill" : "absolute+rope prefill");
        rt_step(&p, 0, 0, NULL, 9, mode ? "streaming prefill, chunk 2" : "absolute+rope prefill, chunk 2");
        const int both[2] = {0, 1};
        const int steps = mode ? 30 : 4;   /* streaming: seq 0 reaches 60 > n_ctx = 40 */
        for (int t = 0; t < steps; t++)
            rt_step(&p, 0, -1, both, 2, mode ? "streaming decode" : "absolute+rope decode");
        if (mode) rt_step(&p, 0, 1, NULL, 13, "streaming prefill past n_ctx");
        moa_cache_free(p.cpu);
        moa_cuda_cache_free(p.gpu);
    }
}

/* NEOX pairing inside the cache on odd shapes, against the CPU runtime with the same
 * pairing: absolute mode (the call's q, k rotated by moa_cuda_rope) and streaming mode (the
 * band and decode kernels rotate; past n_ctx so the dense unit rolls), prefill chunks and
 * batched decode. Head dims 20 (rope_dim 12: partners 6 dims apart, crossing lanes), 40
 * (rope_dim 40: 20 apart, lanes l and l + 20 of the first register, l - 12 of the second)
 * and 128 (rope_dim 64: partners 32 apart, the same lane's next register). Control: a
 * device cache with the normal pairing against the NEOX CPU cache differs by far more than
 * the tolerance. */
static double neox_worst;
TEST(runtime_rope_neox) {
    const struct { int hd, rd; } shapes[] = {{20, 12}, {40, 40}, {128, 64}};
    const moa_cache_unit units[3] = {{MOA_UNIT_WINDOW, 12, 4, 0}, {MOA_UNIT_DENSE, 40, 4, 0},
                                     {MOA_UNIT_WINDOW, 7, 0, 0}};
    for (size_t si = 0; si < sizeof shapes / sizeof shapes[0]; si++)
        for (int mode = 0; mode < 2; mode++)
            for (int control = 0; control < 2; control++) {
                moa_cache_params cp = moa_cache_default_params();
                        cp.pos_mode = mode ? MOA_POS_STREAMING : MOA_POS_ABSOLUTE;
                cp.rope_dim = shapes[si].rd;
                cp.rope_base = 10000.0f;
                cp.rope_pairing = MOA_ROPE_NEOX;
                rt_pair p;
                memset(&p, 0, sizeof p);
                if (!control) {
                    rt_create_full(&p, 1, 6, 3, shapes[si].hd, units, 40, 2, NULL, &cp);
                } else {   /* the CPU cache NEOX, the device cache normal */
                    p.n_head = 6; p.n_kv = 3; p.hd = shapes[si].hd;
                    moa_cache_layout L = {1, 6, 3, shapes[si].hd, units, NULL};
                    CHECK_OK(moa_cache_create_layout(&L, 40, 2, &cp, &p.cpu));
                    moa_cuda_unit cu[3];
                    for (int i = 0; i < 3; i++) {
                        cu[i].kind = (int)units[i].kind; cu[i].window = units[i].window;
                        cu[i].sink = units[i].sink; cu[i].decay = 0;
                    }
                    moa_cuda_cache_layout G = {.n_layer = 1, .n_head = 6, .n_head_kv = 3,
                                               .head_dim = shapes[si].hd, .units = cu,
                                               .pos_mode = (int)cp.pos_mode, .rope_dim = cp.rope_dim,
                                               .rope_base = cp.rope_base, .rope_pairing = MOA_ROPE_NORMAL};
                    CHECK_OK(moa_cuda_cache_create(g_ctx, &G, 40, 2, &p.gpu));
                }
                if (!p.cpu || !p.gpu) { moa_cache_free(p.cpu); moa_cuda_cache_free(p.gpu); return; }
                char what[128];
                snprintf(what, sizeof what, "neox %s hd %d rope_dim %d", mode ? "streaming" : "absolute",
                         shapes[si].hd, shapes[si].rd);
                const int both[2] = {1, 0};
                double r[5];
                r[0] = rt_step_ratio(&p, 0, 0, NULL, 21, !control, what);
                r[1] = rt_step_ratio(&p, 0, 1, NULL, 6, !control, what);
                r[2] = rt_step_ratio(&p, 0, 0, NULL, 9, !control, what);
                r[3] = 0;
                const int steps = mode ? 20 : 3;   /* streaming: seq 0 reaches 50 > n_ctx = 40 */
                for (int t = 0; t < steps; t++)
                    r[3] = fmax(r[3], rt_step_ratio(&p, 0, -1, both, 2, !control, what));
                r[4] = mode ? rt_step_ratio(&p, 0, 1, NULL, 13, !control, what) : 0;
                double worst = 0, least = INFINITY;
                for (int i = 0; i < 5; i++) {
                    worst = fmax(worst, r[i]);
                    if (i != 4 || mode) least = fmin(least, r[i]);
                }
                if (!control) neox_worst = fmax(neox_worst, worst);
                else   /* every call of the normal-pairing cache is off */
                    CHECK_MSG(least > 100 * 2e-4, "%s: the normal pairing matches the NEOX runtime "
                              "(smallest ratio %.3g)", what, least);
                if (getenv("MOA_TEST_VERBOSE"))
                    fprintf(stderr, "  %s%s: worst ratio %.3g, least %.3g\n", what,
                            control ? " (control: normal pairing)" : "", worst, least);
                moa_cache_free(p.cpu);
                moa_cuda_cache_free(p.gpu);
            }
    fprintf(stderr, "  NEOX cache attention: worst error / largest output %.3g (bound 2e-4)\n", neox_worst);
    /* a pairing value the runtime does not define is refused */
    moa_cuda_unit cu = {0, 8, 0, 0};
    moa_cuda_cache_layout G = {.n_layer = 1, .n_head = 1, .n_head_kv = 1, .head_dim = 16, .units = &cu,
                               .rope_dim = 16, .rope_base = 10000.0f, .rope_pairing = 1};
    moa_cuda_cache *c = NULL;
    CHECK_EQ_INT(moa_cuda_cache_create(g_ctx, &G, 16, 1, &c), MOA_ERR_INVALID_ARG);
    CHECK(c == NULL);
}

TEST(runtime_decode_split_k_long_context) {
    /* one sequence, long dense + window units: the decode splits the keys across blocks */
    const moa_cache_unit units[3] = {{MOA_UNIT_DENSE, BIG(1500, 300), 64, 0},
                                     {MOA_UNIT_WINDOW, BIG(1100, 150), 64, 0},
                                     {MOA_UNIT_WINDOW, 128, 64, 0}};
    rt_pair p;
    rt_create(&p, 1, 9, 3, 64, units, BIG(1500, 300), 1);
    if (!p.cpu || !p.gpu) return;
    rt_step(&p, 0, 0, NULL, BIG(1300, 250), "prefill");
    const int s0[1] = {0};
    for (int step = 0; step < 4; step++) rt_step(&p, 0, -1, s0, 1, "decode split-K");
    moa_cache_free(p.cpu);
    moa_cuda_cache_free(p.gpu);
}

/* ---- runtime: KV storage types (f16, bf16, q8_0) ---------------------------------------------
 * The device cache of each type against the CPU cache of the same type: every stored row of
 * every softmax unit has the CPU's bytes (moa_cuda_cache_unit_read vs the CPU cache's memory),
 * and the outputs agree within f32 rounding (both read the same stored values; the chunk's own
 * keys included): max error <= KV_RTOL max |o| on every call (observed 5.3e-7 on the emulator),
 * 16x-25x below what a coarser type on one side changes (the controls: q8_0 against f16, bf16
 * against f32). */
#define KV_RTOL 1e-5

/* Rows of (seq, layer, KV head) that differ between the two caches (slots written so far: slot
 * < tokens, as positions fill sinks then the ring in order). */
static int rt_rows_differ(const rt_pair *p, int n_layer, int n_seq) {
    const moa_cache *c = p->cpu;
    int bad = 0;
    for (int s = 0; s < n_seq; s++)
        for (int l = 0; l < n_layer; l++)
            for (int h = 0; h < p->n_kv; h++) {
                const moa_cache_unit_rt *U = moa_cache_unit_at(c, l, h);
                const int64_t slots = U->sink + U->ring, n = moa_cache_pos(c, s, l);
                for (int which = 0; which < 2; which++) {
                    const size_t row = which ? c->vrow : c->krow;
                    const size_t bytes = moa_cuda_cache_unit_bytes(p->gpu, l, h, which);
                    if (U->kind == MOA_UNIT_LINEAR) { CHECK_EQ_INT(bytes, 0); continue; }
                    CHECK_EQ_INT(bytes, (size_t)slots * row);
                    unsigned char *g = malloc(bytes ? bytes : 1);
                    CHECK_OK(moa_cuda_cache_unit_read(p->gpu, s, l, h, which, g));
                    const unsigned char *cpu = (which ? c->v : c->k) + ((size_t)s * c->slots_per_seq + U->off) * row;
                    for (int64_t slot = 0; slot < slots && slot < n; slot++)
                        bad += memcmp(g + slot * row, cpu + slot * row, row) != 0;
                    free(g);
                }
            }
    return bad;
}

typedef struct {
    const char *name;
    int hd, n_head, n_kv;
    moa_pos_mode mode;
    int rope_dim;
    moa_rope_pairing pairing;
    int64_t n_ctx;
    moa_cache_unit units[3];
    int decode_steps;        /* batched decode steps of both sequences after the prefills */
} kv_case;

/* Prefill chunks (seq 0: 21 + 9 tokens, seq 1: 6, chunks longer than some rings) and batched
 * decode; returns the worst output error / largest output over the calls. */
static double kv_case_run(rt_pair *p, const kv_case *kc, const char *what) {
    double r = 0;
    r = fmax(r, rt_step_ratio(p, 0, 0, NULL, 21, 0, what));
    r = fmax(r, rt_step_ratio(p, 0, 1, NULL, 6, 0, what));
    r = fmax(r, rt_step_ratio(p, 0, 0, NULL, 9, 0, what));
    const int both[2] = {1, 0};
    for (int t = 0; t < kc->decode_steps; t++) r = fmax(r, rt_step_ratio(p, 0, -1, both, 2, 0, what));
    return r;
}

TEST(runtime_kv_types) {
    const kv_case cases[] = {
        /* hd 20: one partial q8_0 block; caller-rotated keys; window, dense, linear */
        {"absolute hd 20", 20, 6, 3, MOA_POS_ABSOLUTE, 0, MOA_ROPE_NORMAL, 40,
         {{MOA_UNIT_WINDOW, 12, 4, 0}, {MOA_UNIT_DENSE, 40, 4, 0}, {MOA_UNIT_LINEAR, 0, 0, 0.1f}}, 4},
        /* hd 77: 2 full blocks + 13; the cache rotates 16 dims before storing */
        {"absolute+rope hd 77", 77, 4, 2, MOA_POS_ABSOLUTE, 16, MOA_ROPE_NORMAL, 40,
         {{MOA_UNIT_WINDOW, 7, 0, 0}, {MOA_UNIT_DENSE, 40, 3, 0}, {0, 0, 0, 0}}, 3},
        /* hd 40, NEOX streaming: raw stored keys widened, then rotated (partners in another
         * q8_0 block); seq 0 runs past n_ctx so the dense unit rolls */
        {"streaming neox hd 40", 40, 6, 3, MOA_POS_STREAMING, 40, MOA_ROPE_NEOX, 40,
         {{MOA_UNIT_WINDOW, 12, 4, 0}, {MOA_UNIT_DENSE, 40, 4, 0}, {MOA_UNIT_WINDOW, 7, 0, 0}}, 11},
        /* hd 64, normal-pairing streaming */
        {"streaming hd 64", 64, 2, 1, MOA_POS_STREAMING, 32, MOA_ROPE_NORMAL, 36,
         {{MOA_UNIT_WINDOW, 10, 2, 0}, {0, 0, 0, 0}, {0, 0, 0, 0}}, 8},
    };
    const moa_kv_type types[][2] = {{MOA_KV_F16, MOA_KV_F16}, {MOA_KV_BF16, MOA_KV_BF16},
                                    {MOA_KV_Q8_0, MOA_KV_Q8_0}, {MOA_KV_Q8_0, MOA_KV_F16},
                                    {MOA_KV_F32, MOA_KV_BF16}};
    double worst = 0;
    for (size_t ci = 0; ci < sizeof cases / sizeof cases[0]; ci++)
        for (size_t ti = 0; ti < sizeof types / sizeof types[0]; ti++) {
            const kv_case *kc = &cases[ci];
            moa_cache_params cp = moa_cache_default_params();
            cp.pos_mode = kc->mode;
            cp.rope_dim = kc->rope_dim;
            cp.rope_base = 10000.0f;
            cp.rope_pairing = kc->pairing;
            rt_pair p;
            memset(&p, 0, sizeof p);
            rt_create_typed(&p, 1, kc->n_head, kc->n_kv, kc->hd, kc->units, kc->n_ctx, 2, NULL, &cp,
                            types[ti], types[ti]);
            if (!p.cpu || !p.gpu) { moa_cache_free(p.cpu); moa_cuda_cache_free(p.gpu); return; }
            char what[128];
            snprintf(what, sizeof what, "%s, K %s V %s", kc->name, moa_kv_type_name(types[ti][0]),
                     moa_kv_type_name(types[ti][1]));
            const double r = kv_case_run(&p, kc, what);
            CHECK_MSG(r <= KV_RTOL, "%s: max error / max |output| %.3g > %g", what, r, KV_RTOL);
            worst = fmax(worst, r);
            const int bad = rt_rows_differ(&p, 1, 2);
            CHECK_MSG(bad == 0, "%s: %d stored rows differ from the CPU cache's", what, bad);
            if (getenv("MOA_TEST_VERBOSE")) fprintf(stderr, "  %s: ok\n", what);
            moa_cache_free(p.cpu);
            moa_cuda_cache_free(p.gpu);
        }
    fprintf(stderr, "  KV storage types: worst error / largest output %.3g (bound %g)\n", worst, KV_RTOL);

    /* controls: the device cache in another type than the CPU's (q8_0 against f16, and bf16
     * against f32): its stored rows differ and its outputs by more than 10x the tolerance */
    const moa_kv_type ctl[][2][2] = {{{MOA_KV_F16, MOA_KV_F16}, {MOA_KV_Q8_0, MOA_KV_Q8_0}},
                                     {{MOA_KV_F32, MOA_KV_F32}, {MOA_KV_BF16, MOA_KV_BF16}}};
    for (int i = 0; i < 2; i++) {
        const kv_case *kc = &cases[0];
        rt_pair p;
        memset(&p, 0, sizeof p);
        rt_create_typed(&p, 1, kc->n_head, kc->n_kv, kc->hd, kc->units, kc->n_ctx, 2, NULL, NULL,
                        ctl[i][0], ctl[i][1]);
        if (!p.cpu || !p.gpu) { moa_cache_free(p.cpu); moa_cuda_cache_free(p.gpu); return; }
        CHECK(moa_cuda_cache_bytes(p.gpu) != moa_cache_bytes(p.cpu));
        const double r = kv_case_run(&p, kc, "control");
        /* the CPU rows are read with the CPU's row size: compare the first K bytes only */
        const moa_cache_unit_rt *U = moa_cache_unit_at(p.cpu, 0, 0);
        const size_t gb = moa_cuda_cache_unit_bytes(p.gpu, 0, 0, 0);
        unsigned char *g = malloc(gb);
        CHECK_OK(moa_cuda_cache_unit_read(p.gpu, 0, 0, 0, 0, g));
        const size_t cmp = gb < (size_t)(U->sink + U->ring) * p.cpu->krow ? gb : (size_t)(U->sink + U->ring) * p.cpu->krow;
        CHECK_MSG(memcmp(g, p.cpu->k + U->off * p.cpu->krow, cmp) != 0, "control %d: the same bytes", i);
        CHECK_MSG(r > 10 * KV_RTOL, "control %d (CPU %s, device %s): ratio %.3g within 10x the tolerance",
                  i, moa_kv_type_name(ctl[i][0][0]), moa_kv_type_name(ctl[i][1][0]), r);
        if (getenv("MOA_TEST_VERBOSE")) fprintf(stderr, "  control %d: ratio %.3g\n", i, r);
        free(g);
        moa_cache_free(p.cpu);
        moa_cuda_cache_free(p.gpu);
    }
    /* a storage type the runtime does not define is refused */
    moa_cuda_unit cu = {0, 8, 0, 0};
    moa_cuda_cache_layout G = {.n_layer = 1, .n_head = 1, .n_head_kv = 1, .head_dim = 16, .units = &cu,
                               .type_v = 4};
    moa_cuda_cache *c = NULL;
    CHECK_EQ_INT(moa_cuda_cache_create(g_ctx, &G, 16, 1, &c), MOA_ERR_INVALID_ARG);
    CHECK(c == NULL);
}

/* Split-K decode (several parts per row) over q8_0 keys and f16 values. */
TEST(runtime_kv_types_split_k) {
    const moa_cache_unit units[2] = {{MOA_UNIT_DENSE, BIG(1500, 300), 64, 0},
                                     {MOA_UNIT_WINDOW, BIG(1100, 150), 16, 0}};
    const moa_kv_type t[2] = {MOA_KV_Q8_0, MOA_KV_F16};
    rt_pair p;
    rt_create_typed(&p, 1, 4, 2, 48, units, BIG(1500, 300), 1, NULL, NULL, t, t);
    if (!p.cpu || !p.gpu) return;
    rt_step(&p, 0, 0, NULL, BIG(1300, 250), "q8_0/f16 prefill");
    const int s0[1] = {0};
    for (int step = 0; step < 3; step++) rt_step(&p, 0, -1, s0, 1, "q8_0/f16 decode split-K");
    CHECK_EQ_INT(rt_rows_differ(&p, 1, 1), 0);
    moa_cache_free(p.cpu);
    moa_cuda_cache_free(p.gpu);
}

/* ---- the runtime's API on MOA_CACHE_DEVICE_CUDA against the same API on the CPU ------------
 * moa_cache_create(_layout) with params.device = CUDA puts this device cache behind a moa_cache:
 * the same public calls (moa_attn_prefill / moa_attn_decode on device buffers, moa_cache_reset,
 * moa_cache_seq_copy, moa_cache_bytes, moa_cache_pos) must give the CPU cache's outputs within
 * KV_RTOL of the largest (both read the same stored values, as runtime_kv_types), its bytes and
 * positions. The device context is the test's (lent through device_ctx, as the engine does) or
 * the cache's own (opened on device_index; calls then wait for their kernels). */
static void api_create(rt_pair *p, const moa_cache_layout *L, const moa_plan *plan, int64_t n_ctx,
                       int n_seq, const moa_cache_params *cp, int lent) {
    memset(p, 0, sizeof *p);
    p->n_head = plan ? moa_plan_n_head(plan) : L->n_head;
    p->n_kv = plan ? moa_plan_n_head_kv(plan) : L->n_head_kv;
    p->hd = plan ? moa_plan_head_dim(plan) : L->head_dim;
    p->lent = lent;
    moa_cache_params P = *cp;
    for (int dev = 0; dev < 2; dev++) {
        moa_cache **out = dev ? &p->dev : &p->cpu;
        CHECK_OK(plan ? moa_cache_create(plan, n_ctx, n_seq, &P, out) : moa_cache_create_layout(L, n_ctx, n_seq, &P, out));
        P.device = MOA_CACHE_DEVICE_CUDA;
        P.device_index = 0;
        P.device_ctx = lent ? g_ctx : NULL;
    }
    if (!p->cpu || !p->dev) return;
    CHECK_EQ_INT(moa_cache_get_device(p->dev), MOA_CACHE_DEVICE_CUDA);
    CHECK_EQ_INT(moa_cache_bytes(p->dev), moa_cache_bytes(p->cpu));
}

static void api_check_pos(const rt_pair *p, int n_layer, int n_seq, const char *what) {
    for (int s = 0; s < n_seq; s++)
        for (int l = 0; l < n_layer; l++)
            CHECK_MSG(moa_cache_pos(p->dev, s, l) == moa_cache_pos(p->cpu, s, l), "%s: seq %d layer %d: "
                      "position %lld on the device, %lld on the CPU", what, s, l,
                      (long long)moa_cache_pos(p->dev, s, l), (long long)moa_cache_pos(p->cpu, s, l));
}

/* Prefill chunks (seq 0: 21 + 9 tokens, seq 1: 6), seq 0 copied to seq 2, `steps` batched
 * decode steps of all three in a shuffled row order, a reset of seq 1 and a new prefill. */
static double api_run(rt_pair *p, int n_layer, int steps, const char *what) {
    double r = 0;
    for (int l = 0; l < n_layer; l++) {
        r = fmax(r, rt_step_ratio(p, l, 0, NULL, 21, 0, what));
        r = fmax(r, rt_step_ratio(p, l, 1, NULL, 6, 0, what));
        r = fmax(r, rt_step_ratio(p, l, 0, NULL, 9, 0, what));
    }
    CHECK_OK(moa_cache_seq_copy(p->cpu, 0, 2));
    CHECK_OK(moa_cache_seq_copy(p->dev, 0, 2));
    api_check_pos(p, n_layer, 3, what);
    const int rows[3] = {2, 0, 1};
    for (int t = 0; t < steps; t++)
        for (int l = 0; l < n_layer; l++) r = fmax(r, rt_step_ratio(p, l, -1, rows, 3, 0, what));
    CHECK_OK(moa_cache_reset(p->cpu, 1));
    CHECK_OK(moa_cache_reset(p->dev, 1));
    for (int l = 0; l < n_layer; l++) r = fmax(r, rt_step_ratio(p, l, 1, NULL, 5, 0, what));
    api_check_pos(p, n_layer, 3, what);
    CHECK_EQ_INT(moa_cache_bytes(p->dev), moa_cache_bytes(p->cpu));
    CHECK_MSG(r <= KV_RTOL, "%s: max error / max |output| %.3g > %g", what, r, KV_RTOL);
    fprintf(stderr, "  %s (%s context): worst error / largest output %.3g (bound %g)\n", what,
            p->lent ? "lent" : "own", r, KV_RTOL);
    return r;
}

TEST(runtime_api_device) {
    /* 1: the mixed layout (window, dense and linear units over 2 layers), f16, caller-rotated
     *    q/k, the test's context lent */
    const moa_cache_layout L = {2, 8, 4, 48, mixed_units, NULL};
    moa_cache_params cp = moa_cache_default_params();
    rt_pair p;
    api_create(&p, &L, NULL, 100, 3, &cp, 1);
    if (p.cpu && p.dev) api_run(&p, 2, 6, "layout, f16, absolute, rope in the caller");
    /* a dense unit past n_ctx: both refuse, and the device cache's positions stay */
    if (p.dev) {
        float *d = dev_alloc((size_t)80 * 8 * 48 * 4);
        const int64_t before = moa_cache_pos(p.dev, 0, 0);
        CHECK_EQ_INT(moa_attn_prefill(p.dev, 0, 0, d, d, d, 80, d), MOA_ERR_RANGE);
        CHECK_EQ_INT(moa_cache_pos(p.dev, 0, 0), before);
        const int dup[2] = {1, 1};
        CHECK_EQ_INT(moa_attn_decode(p.dev, 0, dup, 2, d, d, d, d), MOA_ERR_INVALID_ARG);
        CHECK_EQ_INT(moa_cache_seq_copy(p.dev, 1, 1), MOA_ERR_INVALID_ARG);
        moa_cuda_free(g_ctx, d);
    }
    moa_cache_free(p.cpu);
    moa_cache_free(p.dev);

    /* 2: q8_0 keys + f16 values, streaming NEOX positions past n_ctx (the dense unit rolls),
     *    the cache's own context */
    const moa_cache_unit su[3] = {{MOA_UNIT_WINDOW, 12, 4, 0}, {MOA_UNIT_DENSE, 40, 4, 0},
                                  {MOA_UNIT_LINEAR, 0, 0, 0.1f}};
    const moa_cache_layout S = {1, 6, 3, 40, su, NULL};
    cp.pos_mode = MOA_POS_STREAMING;
    cp.rope_dim = 40;
    cp.rope_pairing = MOA_ROPE_NEOX;
    cp.type_k = MOA_KV_Q8_0;
    cp.type_v = MOA_KV_F16;
    api_create(&p, &S, NULL, 40, 3, &cp, 0);
    if (p.cpu && p.dev) api_run(&p, 1, 14, "layout, q8_0 K + f16 V, streaming NEOX past n_ctx");
    moa_cache_free(p.cpu);
    moa_cache_free(p.dev);

    /* 3: from a plan (uniform windows, 2 layers, GQA 2), bf16, absolute with the runtime
     *    rotating (rope_dim 16 of 32), own context */
    moa_plan *plan = NULL;
    CHECK_OK(moa_plan_uniform(2, 4, 2, 32, 4, 8, 0.5, 64, &plan));
    cp = moa_cache_default_params();
    cp.rope_dim = 16;
    cp.type_k = cp.type_v = MOA_KV_BF16;
    if (plan) api_create(&p, NULL, plan, 64, 3, &cp, 0);
    if (p.cpu && p.dev) api_run(&p, 2, 5, "plan, bf16, absolute, rope in the runtime");
    moa_cache_free(p.cpu);
    moa_cache_free(p.dev);
    moa_plan_free(plan);

    /* a CUDA request the device layer cannot serve: MOA_ERR_DEVICE with a message, nothing out */
    CHECK_EQ_INT(moa_cache_device_count(MOA_CACHE_DEVICE_CUDA), moa_cuda_device_count());
    moa_cache_params bad = moa_cache_default_params();
    bad.device = MOA_CACHE_DEVICE_CUDA;
    bad.device_index = moa_cuda_device_count();   /* one past the last */
    moa_cache *c = (moa_cache *)&bad;
    CHECK_EQ_INT(moa_cache_create_layout(&L, 100, 1, &bad, &c), MOA_ERR_DEVICE);
    CHECK(c == NULL);
    CHECK_MSG(strstr(moa_last_error(), "CUDA device") != NULL, "message: %s", moa_last_error());
    fprintf(stderr, "  device index %d: %s\n", bad.device_index, moa_last_error());
}

/* ---- the building blocks chained into one Llama layer + LM head --------------------------- */

/* y[t][o] = sum_i W[o][i] x[t][i] with W and x rounded to f16 (what the device computes). */
static void mm_f16(const float *W, const float *x, int64_t n, int64_t n_out, int64_t n_in, float *y) {
    for (int64_t t = 0; t < n; t++)
        for (int64_t o = 0; o < n_out; o++) {
            double a = 0;
            for (int64_t i = 0; i < n_in; i++)
                a += (double)moa_f16_to_f32(moa_f32_to_f16(W[o * n_in + i])) *
                     moa_f16_to_f32(moa_f32_to_f16(x[t * n_in + i]));
            y[t * n_out + o] = (float)a;
        }
}
static void rms_ref(const float *x, const float *w, float *y, int64_t n, int64_t d) {
    for (int64_t t = 0; t < n; t++) {
        double ss = 0;
        for (int64_t i = 0; i < d; i++) ss += (double)x[t * d + i] * x[t * d + i];
        const float r = (float)(1.0 / sqrt(ss / (double)d + 1e-5));
        for (int64_t i = 0; i < d; i++) y[t * d + i] = x[t * d + i] * r * w[i];
    }
}

enum { LD = 96, LH = 6, LKV = 2, LHD = 16, LFF = 160, LV = 50, LCTX = 32 };
typedef struct { float *q, *k, *v, *o, *g, *u; } chain_w;   /* dequantised weights (host) */

/* CPU: one chunk of n tokens at positions pos0.. through the layer, logits [n][LV]. */
static void chain_cpu(const chain_w *W, const float *emb, const float *nrm, moa_cache *c,
                      const moa_rope_table *tab, const int32_t *tok, int n, int64_t pos0,
                      int decode, float *logits) {
    float x[16 * LD], h[16 * LD], q[16 * LH * LHD], k[16 * LKV * LHD], v[16 * LKV * LHD];
    float att[16 * LH * LHD], t1[16 * LD], g[16 * LFF], u[16 * LFF];
    for (int t = 0; t < n; t++) memcpy(x + t * LD, emb + (size_t)tok[t] * LD, sizeof(float) * LD);
    rms_ref(x, nrm, h, n, LD);
    mm_f16(W->q, h, n, LH * LHD, LD, q);
    mm_f16(W->k, h, n, LKV * LHD, LD, k);
    mm_f16(W->v, h, n, LKV * LHD, LD, v);
    moa_rope_rows(tab, q, n, LH, LHD, pos0, 0);
    moa_rope_rows(tab, k, n, LKV, LHD, pos0, 0);
    if (decode) CHECK_OK(moa_attn_decode(c, 0, NULL, 1, q, k, v, att));
    else CHECK_OK(moa_attn_prefill(c, 0, 0, q, k, v, n, att));
    mm_f16(W->o, att, n, LD, LH * LHD, t1);
    for (int i = 0; i < n * LD; i++) x[i] += t1[i];
    rms_ref(x, nrm + LD, h, n, LD);
    mm_f16(W->g, h, n, LFF, LD, g);
    mm_f16(W->u, h, n, LFF, LD, u);
    for (int i = 0; i < n * LFF; i++) g[i] = g[i] / (1.0f + expf(-g[i])) * u[i];
    float *wd = W->g + LFF * LD;   /* w_down [LD][LFF] stored after w_gate */
    mm_f16(wd, g, n, LD, LFF, t1);
    for (int i = 0; i < n * LD; i++) x[i] += t1[i];
    rms_ref(x, nrm + 2 * LD, h, n, LD);
    mm_f16(emb, h, n, LV, LD, logits);   /* tied LM head = the embedding table */
}

TEST(engine_layer_chain) {
    /* weights: Q8_0 projections, Q4_1 FFN, Q8_0 embedding (tied LM head) */
    const struct { moa_ggml_type t; int64_t o, i; } spec[8] = {
        {MOA_GGML_Q8_0, LH * LHD, LD}, {MOA_GGML_Q8_0, LKV * LHD, LD}, {MOA_GGML_Q8_0, LKV * LHD, LD},
        {MOA_GGML_Q8_0, LD, LH * LHD}, {MOA_GGML_Q4_1, LFF, LD}, {MOA_GGML_Q4_1, LFF, LD},
        {MOA_GGML_Q4_1, LD, LFF}, {MOA_GGML_Q8_0, LV, LD}};
    uint8_t *raw[8];
    float *deq[8];
    moa_cuda_weight gw[8];
    for (int w = 0; w < 8; w++) {
        const size_t rb = moa_ggml_row_bytes(spec[w].t, spec[w].i);
        raw[w] = malloc(rb * spec[w].o);
        deq[w] = malloc(sizeof(float) * spec[w].o * spec[w].i);
        fill_blocks(spec[w].t, raw[w], (size_t)(spec[w].o * spec[w].i));
        if (spec[w].t == MOA_GGML_Q4_1)   /* centre Q4_1 weights: min = -8 d */
            for (int64_t b = 0; b < spec[w].o * spec[w].i / 32; b++) {
                uint8_t *blk = raw[w] + b * 20;
                uint16_t dh;
                memcpy(&dh, blk, 2);
                const uint16_t m = moa_f32_to_f16(-8.0f * moa_f16_to_f32(dh));
                memcpy(blk + 2, &m, 2);
            }
        for (int64_t o = 0; o < spec[w].o; o++)
            moa_dequant_row(spec[w].t, raw[w] + rb * o, deq[w] + o * spec[w].i, spec[w].i);
        CHECK_OK(moa_cuda_weight_upload(g_ctx, spec[w].t, raw[w], spec[w].o, spec[w].i, MOA_CUDA_F16, &gw[w]));
    }
    float *gd_host = malloc(sizeof(float) * 2 * LFF * LD);   /* CPU layout: w_gate then w_down */
    memcpy(gd_host, deq[4], sizeof(float) * LFF * LD);
    memcpy(gd_host + LFF * LD, deq[6], sizeof(float) * LD * LFF);
    chain_w W = {deq[0], deq[1], deq[2], deq[3], gd_host, deq[5]};
    float nrm[3 * LD];
    for (int i = 0; i < 3 * LD; i++) nrm[i] = 1.0f + 0.2f * rndf();
    const size_t emb_rb = moa_ggml_row_bytes(MOA_GGML_Q8_0, LD);
    uint8_t *emb_dev = dev_from(raw[7], emb_rb * LV);
    float *nrm_dev = dev_from(nrm, sizeof nrm);
    /* caches: one dense layer, caller-rotated keys */
    const moa_cache_unit units[LKV] = {{MOA_UNIT_DENSE, LCTX, 0, 0}, {MOA_UNIT_DENSE, LCTX, 0, 0}};
    rt_pair p;
    rt_create(&p, 1, LH, LKV, LHD, units, LCTX, 1);
    moa_rope_table tab;
    CHECK_OK(moa_rope_table_init(&tab, LHD, 10000.0f, 0, LCTX));
    /* device scratch (16 rows max) */
    float *x = dev_alloc(4 * 16 * LD), *h = dev_alloc(4 * 16 * LD), *q = dev_alloc(4 * 16 * LH * LHD);
    float *k = dev_alloc(4 * 16 * LKV * LHD), *v = dev_alloc(4 * 16 * LKV * LHD);
    float *att = dev_alloc(4 * 16 * LH * LHD), *t1 = dev_alloc(4 * 16 * LD);
    float *g = dev_alloc(4 * 16 * LFF), *u = dev_alloc(4 * 16 * LFF), *lg = dev_alloc(4 * 16 * LV);
    void *hx = dev_alloc(2 * 16 * LFF);
    int32_t *tokd = dev_alloc(4 * 16);
    const int32_t prompt[11] = {1, 7, 49, 0, 23, 23, 5, 18, 40, 2, 33};
    int64_t pos = 0;
    for (int step = 0; step < 4 && p.cpu && p.gpu; step++) {
        const int n = step == 0 ? 11 : 1, decode = step > 0;
        int32_t tok[11];
        memcpy(tok, prompt, sizeof tok);
        if (decode) tok[0] = (int32_t)(3 + 11 * step) % LV;
        float ref[11 * LV], got[11 * LV];
        chain_cpu(&W, deq[7], nrm, p.cpu, &tab, tok, n, pos, decode, ref);
        CHECK_OK(moa_cuda_upload(g_ctx, tokd, tok, sizeof(int32_t) * n));
        CHECK_OK(moa_cuda_embed(g_ctx, MOA_GGML_Q8_0, emb_dev, LD, tokd, n, x));
        CHECK_OK(moa_cuda_rmsnorm(g_ctx, x, nrm_dev, h, n, LD, 1e-5f));
        CHECK_OK(moa_cuda_convert(g_ctx, h, n * LD, hx, MOA_CUDA_F16));
        CHECK_OK(moa_cuda_matmul(g_ctx, &gw[0], hx, n, q));
        CHECK_OK(moa_cuda_matmul(g_ctx, &gw[1], hx, n, k));
        CHECK_OK(moa_cuda_matmul(g_ctx, &gw[2], hx, n, v));
        CHECK_OK(moa_cuda_rope(g_ctx, q, n, LH, LHD, LHD, 10000.0f, pos, NULL, 0, 0));
        CHECK_OK(moa_cuda_rope(g_ctx, k, n, LKV, LHD, LHD, 10000.0f, pos, NULL, 0, 0));
        if (decode) CHECK_OK(moa_cuda_attn_decode(p.gpu, 0, NULL, 1, q, k, v, att));
        else CHECK_OK(moa_cuda_attn_prefill(p.gpu, 0, 0, q, k, v, n, att));
        CHECK_OK(moa_cuda_convert(g_ctx, att, n * LH * LHD, hx, MOA_CUDA_F16));
        CHECK_OK(moa_cuda_matmul(g_ctx, &gw[3], hx, n, t1));
        CHECK_OK(moa_cuda_add(g_ctx, x, t1, n * LD));
        CHECK_OK(moa_cuda_rmsnorm(g_ctx, x, nrm_dev + LD, h, n, LD, 1e-5f));
        CHECK_OK(moa_cuda_convert(g_ctx, h, n * LD, hx, MOA_CUDA_F16));
        CHECK_OK(moa_cuda_matmul(g_ctx, &gw[4], hx, n, g));
        CHECK_OK(moa_cuda_matmul(g_ctx, &gw[5], hx, n, u));
        CHECK_OK(moa_cuda_swiglu(g_ctx, g, u, n * LFF));
        CHECK_OK(moa_cuda_convert(g_ctx, g, n * LFF, hx, MOA_CUDA_F16));
        CHECK_OK(moa_cuda_matmul(g_ctx, &gw[6], hx, n, t1));
        CHECK_OK(moa_cuda_add(g_ctx, x, t1, n * LD));
        CHECK_OK(moa_cuda_rmsnorm(g_ctx, x, nrm_dev + 2 * LD, h, n, LD, 1e-5f));
        CHECK_OK(moa_cuda_convert(g_ctx, h, n * LD, hx, MOA_CUDA_F16));
        CHECK_OK(moa_cuda_matmul(g_ctx, &gw[7], hx, n, lg));
        to_host(got, lg, sizeof(float) * n * LV);
        CHECK_MSG(close_arr("layer chain logits", got, ref, (size_t)n * LV, 5e-3, 1e-5), "step %d", step);
        pos += n;
    }
    void *bufs[] = {emb_dev, nrm_dev, x, h, q, k, v, att, t1, g, u, lg, hx, tokd};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) moa_cuda_free(g_ctx, bufs[i]);
    for (int w = 0; w < 8; w++) { moa_cuda_weight_free(g_ctx, &gw[w]); free(raw[w]); free(deq[w]); }
    free(gd_host);
    moa_rope_table_free(&tab);
    moa_cache_free(p.cpu);
    moa_cuda_cache_free(p.gpu);
}

int main(void) {
    const int n_dev = moa_cuda_device_count();
    if (n_dev == 0) {
        /* the device layer must fail cleanly */
        moa_cuda_ctx *c = (moa_cuda_ctx *)1;
        const moa_status st = moa_cuda_ctx_create(0, &c);
        if (st != MOA_ERR_DEVICE || c != NULL || !strstr(moa_last_error(), "no CUDA device")) {
            fprintf(stderr, "FAIL: without a device moa_cuda_ctx_create returned %d (%s)\n", (int)st,
                    moa_last_error());
            return 1;
        }
        moa_device_kind k;
        if (moa_device_choose(MOA_DEVICE_AUTO, n_dev, &k) != MOA_OK || k != MOA_DEVICE_CPU) return 1;
        printf("SKIP: no CUDA device (moa_cuda_ctx_create: %s)\n", moa_last_error());
        return 77;
    }
    if (moa_cuda_ctx_create(0, &g_ctx) != MOA_OK) {
        fprintf(stderr, "FAIL: %s\n", moa_last_error());
        return 1;
    }
    fprintf(stderr, "device: %s\n", moa_cuda_ctx_describe(g_ctx));
    RUN(backend_table);
    RUN(dequant_all_types_and_dtypes);
    RUN(embedding_rows);
    RUN(embedding_rows_all_block_types);
    RUN(weight_upload_all_block_types);
    RUN(weight_upload_and_matmul);
    RUN(matvec_raw_all_block_types);
    RUN(raw_weight_scratch_gemm);
    RUN(rmsnorm_swiglu_add);
    RUN(rope_adjacent_pairs);
    RUN(rope_neox_halves);
    RUN(profiler_attention_fwd_bwd);
    RUN(runtime_prefill_decode_mixed_units);
    RUN(runtime_q_head_windows);
    RUN(runtime_rope_modes);
    RUN(runtime_rope_neox);
    RUN(runtime_decode_split_k_long_context);
    RUN(runtime_kv_types);
    RUN(runtime_kv_types_split_k);
    RUN(runtime_api_device);
    RUN(engine_layer_chain);
    moa_cuda_ctx_free(g_ctx);
    return test_summary();
}
