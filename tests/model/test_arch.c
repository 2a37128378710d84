/* test_arch.c - the architectures of arch.h on the CPU engine, against the independent
 * double-precision reference forward of tests/model/tiny_model.h: a tiny llama (adjacent-pair
 * RoPE, tied head) and a tiny qwen2 (q/k/v biases, NEOX RoPE, separate output matrix) of
 * odd shapes give the reference's loss through moa_ctx_eval, in one prefill and in chunks
 * plus single-token decode steps; a wrong pairing is caught; unsupported architectures and
 * missing biases are refused with the names in the message. */
#include "moa/model.h"
#include "arch.h"   /* moa_arch_find (internal to model/) */
#include "moa/common.h"
#include "test.h"
#include "tiny_load.h"

/* n_layer, n_embd, n_head, n_kv, n_ff, n_vocab, n_ctx, rope_base, eps, qwen2
 * head_dim 10 (n_embd 30 / 3 heads): NEOX halves of 5, not a power of two */
static const tiny_cfg CFG = {2, 30, 3, 1, 44, 37, 64, 10000.0f, 1e-5f, 0};
enum { N = 41 };

static void run_arch(int qwen2) {
    tiny_cfg c = CFG;
    c.qwen2 = qwen2;
    tiny_weights w = tiny_make(c, 11);
    gbuf img = tiny_gguf(&w);
    moa_model *m = tiny_load_image(&img);
    CHECK_MSG(m != NULL, "load %s: %s", qwen2 ? "qwen2" : "llama", moa_last_error());
    if (!m) { free(img.b); tiny_free(&w); return; }
    CHECK_STR(m->hp.arch, qwen2 ? "qwen2" : "llama");
    CHECK_EQ_INT(m->hp.rope_pairing, qwen2 ? MOA_ROPE_NEOX : MOA_ROPE_NORMAL);
    CHECK_EQ_INT(m->tied, !qwen2);
    CHECK(qwen2 ? m->layers[1].wk.bias != NULL : m->layers[1].wk.bias == NULL);

    int32_t tok[N];
    uint64_t s = 5;
    for (int i = 0; i < N; i++) tok[i] = (int32_t)((tiny_rand(&s) + 1) * 0.5 * c.n_vocab) % c.n_vocab;
    double *x0 = malloc(sizeof(double) * N * c.n_embd);
    for (int i = 0; i < N; i++)
        for (int e = 0; e < c.n_embd; e++) x0[i * c.n_embd + e] = w.embd[(size_t)tok[i] * c.n_embd + e];
    double ref = tiny_loss(&w, x0, tok, N, 1, N, NULL);
    tiny_rope_flip = 1;   /* control: the other pairing */
    double other = tiny_loss(&w, x0, tok, N, 1, N, NULL);
    tiny_rope_flip = 0;

    float *lg = malloc(sizeof(float) * N * c.n_vocab);
    moa_ctx *ctx = NULL;
    moa_ctx_params cp = moa_ctx_default_params();
    cp.n_ctx = N + 3;
    CHECK_OK(moa_ctx_create(m, &cp, &ctx));
    if (ctx) {
        /* one prefill */
        CHECK_OK(moa_ctx_eval(ctx, tok, N, MOA_LOGITS_ALL, lg));
        double got = tiny_logits_ce(lg, tok, N, c.n_vocab);
        fprintf(stderr, "  %s: loss %.9f, reference %.9f (other RoPE pairing: %.9f)\n",
                qwen2 ? "qwen2" : "llama", got, ref, other);
        CHECK_NEAR(got, ref, 2e-5 * fabs(ref));
        CHECK(fabs(other - ref) > 100 * 2e-5 * fabs(ref));   /* the check can tell pairings apart */
        /* chunks of 7 then single tokens (decode path) */
        moa_ctx_reset(ctx);
        int done = 0;
        while (done < N - 6) {
            int k = N - 6 - done < 7 ? N - 6 - done : 7;
            CHECK_OK(moa_ctx_eval(ctx, tok + done, k, MOA_LOGITS_ALL, lg + (size_t)done * c.n_vocab));
            done += k;
        }
        for (; done < N; done++) {
            int seq = 0;
            CHECK_OK(moa_ctx_decode_batch(ctx, &seq, tok + done, 1, lg + (size_t)done * c.n_vocab));
        }
        double got2 = tiny_logits_ce(lg, tok, N, c.n_vocab);
        CHECK_NEAR(got2, ref, 2e-5 * fabs(ref));
        moa_ctx_free(ctx);
    }
    free(lg);
    free(x0);
    moa_model_free(m);
    free(img.b);
    tiny_free(&w);
}

TEST(llama_matches_reference) { run_arch(0); }
TEST(qwen2_matches_reference) { run_arch(1); }

/* replaces the first occurrence of `from` after byte `start` by `to` (same length) */
static int patch(gbuf *img, const char *from, const char *to) {
    size_t n = strlen(from);
    for (size_t i = 0; i + n <= img->n; i++)
        if (memcmp(img->b + i, from, n) == 0) { memcpy(img->b + i, to, n); return 0; }
    return -1;
}

TEST(unsupported_architecture_refused) {
    tiny_weights w = tiny_make(CFG, 3);
    gbuf img = tiny_gguf(&w);
    /* the value of general.architecture is the first "llama" string of the image */
    CHECK(patch(&img, "llama", "mamba") == 0);
    moa_gguf *g;
    moa_model *m = NULL;
    CHECK_OK(moa_gguf_open_memory(img.b, img.n, "tiny.gguf", &g));
    CHECK_EQ_INT(moa_model_from_gguf(g, NULL, &m), MOA_ERR_UNSUPPORTED);
    CHECK(m == NULL);
    CHECK(strstr(moa_last_error(), "'mamba'") != NULL);
    CHECK(strstr(moa_last_error(), "llama, qwen2") != NULL);
    free(img.b);
    tiny_free(&w);
}

TEST(missing_bias_refused) {
    tiny_cfg c = CFG;
    c.qwen2 = 1;
    tiny_weights w = tiny_make(c, 3);
    gbuf img = tiny_gguf(&w);
    CHECK(patch(&img, "blk.1.attn_v.bias", "blk.1.attn_v.bia_") == 0);
    moa_gguf *g;
    moa_model *m = NULL;
    moa_model_params mp = moa_model_default_params();
    mp.compute_sha256 = 0;
    CHECK_OK(moa_gguf_open_memory(img.b, img.n, "tiny.gguf", &g));
    CHECK_EQ_INT(moa_model_from_gguf(g, &mp, &m), MOA_ERR_FORMAT);
    CHECK(strstr(moa_last_error(), "blk.1.attn_v.bias") != NULL);
    free(img.b);
    tiny_free(&w);
}

TEST(arch_table) {
    const moa_arch_desc *l = moa_arch_find("llama"), *q = moa_arch_find("qwen2");
    CHECK(l && q);
    CHECK(moa_arch_find("qwen3") == NULL && moa_arch_find(NULL) == NULL);
    if (l) CHECK(strstr(moa_arch_names(), l->name) != NULL);
    if (q) CHECK(strstr(moa_arch_names(), q->name) != NULL);
}

int main(void) {
    RUN(llama_matches_reference);
    RUN(qwen2_matches_reference);
    RUN(unsupported_architecture_refused);
    RUN(missing_bias_refused);
    RUN(arch_table);
    return test_summary();
}
