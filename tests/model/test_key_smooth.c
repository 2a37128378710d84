/* test_key_smooth.c - key smoothing for q8_0 key caches (model/key-smooth.h):
 *   - the scales: powers of two, equal within a RoPE pair (NEOX halves or adjacent pairs),
 *     derived from the key bias only where a pair's magnitude exceeds 2 T; none for llama;
 *   - q.k after RoPE is bit for bit unchanged by smoothing (the claim that makes it free);
 *   - on a tiny qwen2 model whose key bias has outlier pairs (as Qwen2.5's first layers), a
 *     q8_0 key cache with smoothing is much closer to the f32 cache than without, and the f32
 *     cache's logits do not depend on the setting (smoothing is applied to q8_0 only). */
#include "moa/model.h"
#include "key-smooth.h"
#include "moa/common.h"
#include "moa/rope.h"
#include "test.h"
#include "tiny_load.h"

/* n_layer, n_embd, n_head, n_kv, n_ff, n_vocab, n_ctx, rope_base, eps, qwen2: head_dim 64 */
static const tiny_cfg CFG = {2, 128, 2, 1, 96, 53, 96, 10000.0f, 1e-5f, 1};
enum { N = 60 };

/* Outlier pairs in the key bias of layer 0: (5, 37) magnitude 200 -> s = 16 (200/8 = 25),
 * (30, 62) magnitude 40 -> s = 4 (5), (7, 39) magnitude 12 -> 1 (1.5 < 2). */
static void add_outliers(tiny_weights *w) {
    w->bk[0][5] = 120.0f, w->bk[0][37] = 160.0f;
    w->bk[0][30] = -40.0f, w->bk[0][62] = 0.0f;
    w->bk[0][7] = 12.0f, w->bk[0][39] = 0.0f;
}

TEST(scales_from_the_bias) {
    tiny_weights w = tiny_make(CFG, 3);
    add_outliers(&w);
    gbuf img = tiny_gguf(&w);
    moa_model *m = tiny_load_image(&img);
    CHECK_MSG(m != NULL, "load: %s", moa_last_error());
    if (m) {
        float *s = NULL;
        CHECK_OK(moa_key_smooth_scales(m, &s));
        CHECK(s != NULL);
        for (int l = 0; s && l < CFG.n_layer; l++)
            for (int d = 0; d < 64; d++) {
                float want = 1.0f;
                if (l == 0 && (d == 5 || d == 37)) want = 16.0f;
                if (l == 0 && (d == 30 || d == 62)) want = 4.0f;
                CHECK_MSG(s[l * 64 + d] == want, "layer %d dim %d: scale %g, expected %g", l, d, s[l * 64 + d], want);
            }
        free(s);
        moa_model_free(m);
    }
    free(img.b);
    tiny_free(&w);
    /* llama: no key bias, no scales */
    tiny_cfg c = CFG;
    c.qwen2 = 0;
    tiny_weights wl = tiny_make(c, 3);
    gbuf il = tiny_gguf(&wl);
    m = tiny_load_image(&il);
    if (m) {
        float *s = (float *)&c;
        CHECK_OK(moa_key_smooth_scales(m, &s));
        CHECK(s == NULL);
        moa_model_free(m);
    }
    free(il.b);
    tiny_free(&wl);
}

/* Random q (4 heads) and k (2 KV heads) of head_dim 40 with large entries; smoothing with
 * power-of-two scales equal within pairs, then RoPE at several positions: every q_h . k_g
 * equals the unsmoothed one exactly, for both pairings. */
TEST(scores_bitwise_unchanged) {
    enum { HD = 40, NH = 4, NKV = 2 };
    for (int neox = 0; neox < 2; neox++) {
        moa_llama_hparams hp;
        memset(&hp, 0, sizeof hp);
        hp.n_head = NH, hp.n_head_kv = NKV, hp.head_dim = HD, hp.rope_dim = HD;
        hp.rope_pairing = neox ? MOA_ROPE_NEOX : MOA_ROPE_NORMAL;
        float s[NKV * HD];
        uint64_t r = 9;
        for (int g = 0; g < NKV; g++)
            for (int d = 0; d < HD; d++) {
                const int e = neox ? (d < HD / 2 ? d : d - HD / 2) : d / 2;   /* pair index */
                s[g * HD + d] = (float)(1 << ((e * 7 + g * 3) % 6));
            }
        moa_rope_table rt;
        CHECK_OK(moa_rope_table_init(&rt, HD, 10000.0f, neox, 0));
        int exact = 1, nonzero = 0;
        for (int pos = 0; pos < 300; pos += 37) {
            float q[NH * HD], k[NKV * HD], qs[NH * HD], ks[NKV * HD];
            for (int i = 0; i < NH * HD; i++) q[i] = qs[i] = (float)(tiny_rand(&r) * 3);
            for (int i = 0; i < NKV * HD; i++) k[i] = ks[i] = (float)(tiny_rand(&r) * (i % 9 == 0 ? 150 : 2));
            moa_key_smooth_apply(&hp, s, qs, ks, 1);
            moa_rope_rows(&rt, q, 1, NH, HD, pos, 0);
            moa_rope_rows(&rt, qs, 1, NH, HD, pos, 0);
            moa_rope_rows(&rt, k, 1, NKV, HD, pos, 0);
            moa_rope_rows(&rt, ks, 1, NKV, HD, pos, 0);
            for (int h = 0; h < NH; h++) {
                const int g = h / (NH / NKV);
                float a = 0, b = 0;
                for (int d = 0; d < HD; d++) {
                    a += q[h * HD + d] * k[g * HD + d];
                    b += qs[h * HD + d] * ks[g * HD + d];
                }
                if (a != b) exact = 0;
                if (memcmp(k + g * HD, ks + g * HD, sizeof(float) * HD)) nonzero = 1;
            }
        }
        CHECK_MSG(exact, "%s pairing: a score changed under smoothing", neox ? "NEOX" : "adjacent");
        CHECK(nonzero);   /* the keys did change */
        moa_rope_table_free(&rt);
    }
}

static void logits(moa_model *m, moa_kv_type t, int no_smooth, const int32_t *tok, float *lg) {
    moa_ctx *ctx = NULL;
    moa_ctx_params cp = moa_ctx_default_params();
    cp.n_ctx = N;
    cp.n_batch = 16;   /* prefill in chunks: later chunks read stored (quantised) keys */
    cp.kv_type = t;
    cp.no_key_smooth = no_smooth;
    CHECK_OK(moa_ctx_create(m, &cp, &ctx));
    if (ctx) CHECK_OK(moa_ctx_eval(ctx, tok, N, MOA_LOGITS_ALL, lg));
    moa_ctx_free(ctx);
}

TEST(q8_0_keys_closer_with_smoothing) {
    tiny_weights w = tiny_make(CFG, 5);
    add_outliers(&w);
    gbuf img = tiny_gguf(&w);
    moa_model *m = tiny_load_image(&img);
    CHECK(m != NULL);
    if (m) {
        const size_t nl = (size_t)N * CFG.n_vocab;
        int32_t tok[N];
        uint64_t r = 17;
        for (int i = 0; i < N; i++) tok[i] = (int32_t)((tiny_rand(&r) + 1) * 0.5 * CFG.n_vocab) % CFG.n_vocab;
        float *f32 = malloc(sizeof(float) * nl), *f32n = malloc(sizeof(float) * nl);
        float *sm = malloc(sizeof(float) * nl), *raw = malloc(sizeof(float) * nl);
        logits(m, MOA_KV_F32, 0, tok, f32);
        logits(m, MOA_KV_F32, 1, tok, f32n);
        logits(m, MOA_KV_Q8_0, 0, tok, sm);
        logits(m, MOA_KV_Q8_0, 1, tok, raw);
        double e_sm = 0, e_raw = 0;
        CHECK(memcmp(f32, f32n, sizeof(float) * nl) == 0);   /* f32: not smoothed either way */
        for (size_t i = 0; i < nl; i++) {
            e_sm = fmax(e_sm, fabs((double)sm[i] - f32[i]));
            e_raw = fmax(e_raw, fabs((double)raw[i] - f32[i]));
        }
        fprintf(stderr, "  q8_0 keys: max |logit - f32| %.3g smoothed, %.3g not\n", e_sm, e_raw);
        CHECK_MSG(e_sm * 4 < e_raw, "smoothing gains less than 4x: %.3g vs %.3g", e_sm, e_raw);
        free(f32), free(f32n), free(sm), free(raw);
        moa_model_free(m);
    }
    free(img.b);
    tiny_free(&w);
}

int main(void) {
    RUN(scales_from_the_bias);
    RUN(scores_bitwise_unchanged);
    RUN(q8_0_keys_closer_with_smoothing);
    return test_summary();
}
