/* test_engine_cuda.c - the Llama-family forward on CUDA (model/forward-cuda.c) against the
 * CPU forward (model/forward.c), the independent reference here, on the tiny random models
 * (llama and qwen2) of tests/model/tiny_model.h: prefill logits at every position (chunked by n_batch), then
 * greedy decode steps; dense, a kv-head plan mixing window (rings smaller than the prompt, so
 * they wrap), dense and linear units, a q-head plan, streaming positions past n_ctx, batched
 * decode over two sequences, a sequence copied (moa_ctx_seq_copy), reset, and the errors both
 * paths must give alike.
 *
 * Built twice (tests/model/CMakeLists.txt): test_engine_cuda (label gpu) against the real
 * backend, skipping with 77 without a device, and test_engine_cuda_emu (label unit) against
 * the CPU emulator of tests/kernels/cuda/emu with smaller shapes.
 *
 * Tolerances. The device rounds weights and GEMM inputs to f16 (unit roundoff u = 2^-11) or
 * bf16 (u = 2^-8) and accumulates in f32; the CPU computes in f32 throughout. The main model
 * has its weight matrices rounded to f16 values before it is written, so f16 weight
 * rounding is exact and the only difference is the rounding of the activations fed to each
 * GEMM: about u/sqrt(3) ~ 3e-4 relative (RMS) per product, ~10 products per layer feeding
 * each other, 2 layers. Observed on the emulator, as max |logit error| / max |logit| of each
 * compared array: dense 0.7e-4..2.2e-4; plans with a linear head (unnormalised q.k sums)
 * up to 8e-4. Bound 4e-3. The bf16 case runs the unrounded F32 weights (weight and
 * activation rounding, u 8x larger, so ~8 sqrt(2) = 11x the dense f16 error): observed
 * 0.9e-3..1.5e-3, bound 1.5e-2. A wrong norm weight in one layer gives errors of several
 * 1e-2 (0.02-0.14 of the largest logit; checked by hand when the test was written).
 * The same model as qwen2 (tiny_cfg.qwen2: f32 q/k/v biases of amplitude 0.5, NEOX RoPE, its
 * own output matrix) runs the same cases against the CPU engine: observed up to 6.2e-4 (f16)
 * and 5.6e-3 (bf16), same bounds; and its prompt loss against tiny_loss, the float64
 * reference forward of the f16-valued weights (independent of model/ and kernels/). */
#include "moa/model.h"
#include "weights-cuda.h"   /* the model's shared device weights (internal to model/) */
#include "moa/common.h"
#include "test.h"
#include "tiny_model.h"

#if defined(MOA_CUDA_EMU) && !defined(MOA_CUDA_EMU_FULL)
#define BIG(real, emu) (emu)
#else
#define BIG(real, emu) (real)
#endif

/* n_layer, n_embd, n_head, n_kv, n_ff, n_vocab, n_ctx (training), rope_base, eps */
static tiny_cfg cfg = {2, BIG(128, 64), 4, 2, BIG(192, 96), BIG(300, 50), 512, 10000.0f, 1e-5f, 0};
enum { N_CTX = BIG(160, 80), PROMPT = BIG(100, 37), N_BATCH = BIG(32, 16), STEPS = BIG(12, 6) };
#define TOL_F16 4e-3
#define TOL_BF16 1.5e-2

static moa_model *M16;   /* weights rounded to f16 values */
static moa_model *M32;   /* the helper's weights as written (F32) */
/* The same shapes as qwen2 (q/k/v biases, NEOX RoPE, separate output matrix), and the f16
 * model's weights for the double-precision reference forward (tiny_loss). */
static moa_model *Q16, *Q32;
static tiny_weights WQ16;
static int32_t prompt[PROMPT];
static double worst_f16, worst_bf16;

#ifdef MOA_CUDA_EMU
#define VARIANT "emu"
#else
#define VARIANT "gpu"
#endif
static void model_path(char *buf, const char *name) {   /* per variant: ctest -j runs both */
    snprintf(buf, 512, "%s/engine_cuda_%s_%s.gguf", MOA_TEST_TMPDIR, VARIANT, name);
}

static void round_f16(float *p, size_t n) {
    for (size_t i = 0; i < n; i++) p[i] = moa_f16_to_f32(moa_f32_to_f16(p[i]));
}

/* Every matrix of w rounded to f16 values (biases and norms stay f32, as the device keeps
 * them): the weights of an F16 file. */
static void round_matrices_f16(tiny_weights *w, tiny_cfg c) {
    const size_t d = (size_t)c.n_embd, nq = (size_t)c.n_head * w->hd, nkv = (size_t)c.n_kv * w->hd;
    round_f16(w->embd, (size_t)c.n_vocab * d);
    if (w->out != w->embd) round_f16(w->out, (size_t)c.n_vocab * d);
    for (int l = 0; l < c.n_layer; l++) {
        round_f16(w->wq[l], nq * d); round_f16(w->wk[l], nkv * d); round_f16(w->wv[l], nkv * d);
        round_f16(w->wo[l], d * nq); round_f16(w->wg[l], (size_t)c.n_ff * d);
        round_f16(w->wu[l], (size_t)c.n_ff * d); round_f16(w->wd[l], d * (size_t)c.n_ff);
    }
}

static moa_model *load(const char *path) {
    moa_model_params mp = moa_model_default_params();
    mp.compute_sha256 = 0;
    moa_model *m = NULL;
    if (moa_model_load(path, &mp, &m) < 0) {
        fprintf(stderr, "cannot load %s: %s\n", path, moa_last_error());
        exit(1);
    }
    return m;
}

static moa_model *load_m16(void) {
    char p16[512];
    model_path(p16, "f16");
    return load(p16);
}

/* Writes the model of c as F32 (tag_f32) and with every matrix rounded to f16 values
 * (tag_f16, round_matrices_f16) and loads both; the rounded weights go to *keep if it is not
 * NULL. */
static void write_pair(tiny_cfg c, const char *tag, moa_model **m16, moa_model **m32, tiny_weights *keep) {
    char p32[512], p16[512], n32[64], n16[64];
    snprintf(n32, sizeof n32, "%sf32", tag);
    snprintf(n16, sizeof n16, "%sf16", tag);
    model_path(p32, n32);
    model_path(p16, n16);
    if (tiny_write_file(c, 7, p32) < 0) { fprintf(stderr, "cannot write %s\n", p32); exit(1); }
    tiny_weights w = tiny_make(c, 7);
    round_matrices_f16(&w, c);
    gbuf img = tiny_gguf(&w);
    FILE *fp = fopen(p16, "wb");
    if (!fp || fwrite(img.b, 1, img.n, fp) != img.n || fclose(fp) != 0) { fprintf(stderr, "cannot write %s\n", p16); exit(1); }
    free(img.b);
    if (keep) *keep = w;
    else tiny_free(&w);
    *m16 = load(p16);
    *m32 = load(p32);
}

static void setup(void) {
    write_pair(cfg, "", &M16, &M32, NULL);
    tiny_cfg qc = cfg;
    qc.qwen2 = 1;
    write_pair(qc, "qwen2_", &Q16, &Q32, &WQ16);
    uint64_t s = 99;
    for (int i = 0; i < PROMPT; i++) prompt[i] = (int32_t)((tiny_rand(&s) + 1) * 0.5 * cfg.n_vocab) % cfg.n_vocab;
}

/* max |a - b| <= rtol * max |b| over the array; records the worst ratio seen */
static int close_logits(const char *what, const float *a, const float *b, size_t n, double rtol) {
    double mx = 0, err = 0;
    size_t at = 0;
    for (size_t i = 0; i < n; i++) {
        if (fabs(b[i]) > mx) mx = fabs(b[i]);
        const double e = fabs((double)a[i] - b[i]);
        if (!(e <= err)) { err = e; at = i; }
    }
    const double r = mx > 0 ? err / mx : err;
    double *worst = rtol == TOL_BF16 ? &worst_bf16 : &worst_f16;
    if (r > *worst) *worst = r;
    const int ok = err <= rtol * mx;
    if (getenv("MOA_TEST_VERBOSE")) fprintf(stderr, "  %s: ratio %.3g (scale %.3g)\n", what, r, mx);
    if (!ok) fprintf(stderr, "  %s: max error %.3g at %zu (%.7g vs %.7g), scale %.3g, ratio %.3g > %g\n",
                     what, err, at, (double)a[at], (double)b[at], mx, r, rtol);
    return ok;
}

static int argmax(const float *x, int n) {
    int b = 0;
    for (int i = 1; i < n; i++) if (x[i] > x[b]) b = i;
    return b;
}

typedef struct { moa_ctx *cpu, *gpu; double tol; int nv; } pair;

/* Both contexts store K and V as kv (the same bytes per row: moa_ctx_kv_bytes must agree). */
static int pair_create_kv(pair *p, const moa_model *m, const moa_plan *plan, int n_seq,
                          moa_pos_mode mode, int n_ctx, int bf16, moa_kv_type kv) {
    memset(p, 0, sizeof *p);
    moa_ctx_params cp = moa_ctx_default_params();
    cp.kv_type = kv;
    cp.n_ctx = n_ctx;
    cp.n_batch = N_BATCH;
    cp.n_seq = n_seq;
    cp.plan = plan;
    cp.pos_mode = mode;
    cp.device = MOA_DEVICE_CPU;
    CHECK_OK(moa_ctx_create(m, &cp, &p->cpu));
    cp.device = MOA_DEVICE_CUDA;
    cp.device_bf16 = bf16;
    CHECK_OK(moa_ctx_create(m, &cp, &p->gpu));
    p->tol = bf16 ? TOL_BF16 : TOL_F16;
    p->nv = m->hp.n_vocab;
    if (!p->cpu || !p->gpu) return 0;
    CHECK(moa_ctx_device(p->cpu) == MOA_DEVICE_CPU && moa_ctx_device(p->gpu) == MOA_DEVICE_CUDA);
    CHECK_EQ_INT(moa_ctx_kv_bytes(p->gpu), moa_ctx_kv_bytes(p->cpu));
    CHECK_EQ_INT(moa_ctx_n_ctx(p->gpu), moa_ctx_n_ctx(p->cpu));
    return 1;
}
/* f32 caches: the cases that pin the forward itself (kv_types_f16_q8_0 covers the types) */
static int pair_create(pair *p, const moa_model *m, const moa_plan *plan, int n_seq,
                       moa_pos_mode mode, int n_ctx, int bf16) {
    return pair_create_kv(p, m, plan, n_seq, mode, n_ctx, bf16, MOA_KV_F32);
}

static void pair_free(pair *p) {
    moa_ctx_free(p->cpu);
    moa_ctx_free(p->gpu);
}

/* tokens of sequence seq on both, logits per mode compared; returns the CPU's greedy next
 * token after the last position */
static int32_t eval_both(pair *p, int seq, const int32_t *tok, int n, moa_logits_mode mode,
                         const char *what) {
    const size_t rows = mode == MOA_LOGITS_ALL ? (size_t)n : 1;
    float *a = malloc(sizeof(float) * rows * p->nv), *b = malloc(sizeof(float) * rows * p->nv);
    CHECK_OK(moa_ctx_eval_seq(p->cpu, seq, tok, n, mode, b));
    CHECK_OK(moa_ctx_eval_seq(p->gpu, seq, tok, n, mode, a));
    int32_t next = 0;
    if (mode != MOA_LOGITS_NONE) {
        CHECK_MSG(close_logits(what, a, b, rows * p->nv, p->tol), "%s (seq %d, %d tokens)", what, seq, n);
        next = argmax(b + (rows - 1) * p->nv, p->nv);
    }
    CHECK_EQ_INT(moa_ctx_seq_pos(p->gpu, seq), moa_ctx_seq_pos(p->cpu, seq));
    free(a);
    free(b);
    return next;
}

/* the prompt (all logits, chunked by n_batch), then `steps` greedy single-token steps */
static void prompt_then_decode(pair *p, int steps, const char *what) {
    char buf[160];
    snprintf(buf, sizeof buf, "%s: prefill", what);
    int32_t t = eval_both(p, 0, prompt, PROMPT, MOA_LOGITS_ALL, buf);
    for (int s = 0; s < steps; s++) {
        snprintf(buf, sizeof buf, "%s: decode step %d", what, s);
        t = eval_both(p, 0, &t, 1, MOA_LOGITS_LAST, buf);
    }
}

static moa_plan *plan_from(const char *units0, const char *units1, const char *gran) {
    char json[2048];
    snprintf(json, sizeof json,
             "{\"format\":\"moa-plan\",\"version\":1,"
             "\"model\":{\"arch\":\"llama\",\"n_layer\":2,\"n_head\":%d,\"n_head_kv\":%d,\"head_dim\":%d,\"sha256\":\"\"},"
             "\"sink\":2,\"block\":4,\"granularity\":\"%s\","
             "\"layers\":[{\"units\":[%s]},{\"units\":[%s]}],"
             "\"lengths\":{\"profiled\":[%d],\"constrained\":[%d],\"budgets\":[0.5],\"validation\":null},"
             "\"predicted\":[{\"length\":%d,\"loss\":null,\"density\":0.5}],"
             "\"provenance\":{\"profile_sha256\":\"\",\"calib_sha256\":\"\",\"tool_version\":\"test\","
             "\"solver\":\"hand\",\"solver_status\":\"none\",\"gap\":0}}",
             cfg.n_head, cfg.n_kv, cfg.n_embd / cfg.n_head, gran, units0, units1, N_CTX, N_CTX, N_CTX);
    moa_plan *pl = NULL;
    CHECK_OK(moa_plan_load_string(json, "test plan", &pl));
    return pl;
}

/* kv-head plan: layer 0 a window of 8 (sink 2) and a dense head, layer 1 a window growing
 * with the length (4 + N/8, rounded up to the block) and a linear head. Windows are smaller
 * than the prompt: the rings wrap during the prefill. */
static moa_plan *window_plan(void) {
    return plan_from("{\"kind\":\"window\",\"alpha\":8,\"beta\":0},{\"kind\":\"dense\"}",
                     "{\"kind\":\"window\",\"alpha\":4,\"beta\":0.125},{\"kind\":\"linear\"}", "kv-head");
}

TEST(dense_prefill_then_decode) {
    pair p;
    if (pair_create(&p, M16, NULL, 1, MOA_POS_ABSOLUTE, N_CTX, 0)) prompt_then_decode(&p, STEPS, "dense");
    pair_free(&p);
}

TEST(window_plan_rings_wrap) {
    moa_plan *pl = window_plan();
    CHECK(moa_plan_unit_window(pl, 0, 0, N_CTX) < PROMPT && moa_plan_unit_window(pl, 1, 0, N_CTX) < PROMPT);
    pair p;
    memset(&p, 0, sizeof p);
    if (pl && pair_create(&p, M16, pl, 1, MOA_POS_ABSOLUTE, N_CTX, 0)) {
        prompt_then_decode(&p, STEPS, "window plan");
        /* the last-logits mode over a fresh prompt after a reset */
        moa_ctx_reset(p.cpu);
        moa_ctx_reset(p.gpu);
        CHECK_EQ_INT(moa_ctx_n_past(p.gpu), 0);
        eval_both(&p, 0, prompt, PROMPT, MOA_LOGITS_LAST, "window plan: last logits after reset");
    }
    pair_free(&p);
    moa_plan_free(pl);
}

TEST(q_head_plan) {
    /* 4 query heads in 2 groups of 2: per-head windows inside a group's buffer */
    moa_plan *pl = plan_from("{\"kind\":\"window\",\"alpha\":8,\"beta\":0},{\"kind\":\"window\",\"alpha\":4,\"beta\":0},"
                             "{\"kind\":\"dense\"},{\"kind\":\"window\",\"alpha\":12,\"beta\":0}",
                             "{\"kind\":\"linear\"},{\"kind\":\"linear\"},"
                             "{\"kind\":\"window\",\"alpha\":4,\"beta\":0.125},{\"kind\":\"dense\"}", "q-head");
    pair p;
    memset(&p, 0, sizeof p);
    if (pl && pair_create(&p, M16, pl, 1, MOA_POS_ABSOLUTE, N_CTX, 0)) prompt_then_decode(&p, STEPS / 2, "q-head plan");
    pair_free(&p);
    moa_plan_free(pl);
}

/* dense units with 4 sinks roll in streaming mode: prompt + steps > n_ctx */
static void streaming_case(const moa_model *m, const char *what) {
    const int n_ctx = PROMPT - 5;
    pair p;
    char buf[160];
    if (pair_create(&p, m, NULL, 1, MOA_POS_STREAMING, n_ctx, 0)) {
        snprintf(buf, sizeof buf, "%s: prefill", what);
        int32_t t = eval_both(&p, 0, prompt, PROMPT - 10, MOA_LOGITS_ALL, buf);
        snprintf(buf, sizeof buf, "%s: decode past n_ctx", what);
        for (int s = 0; s < 12; s++) t = eval_both(&p, 0, &t, 1, MOA_LOGITS_LAST, buf);
        CHECK(moa_ctx_n_past(p.gpu) > n_ctx);
    }
    pair_free(&p);
}

TEST(streaming_past_n_ctx) { streaming_case(M16, "streaming"); }

static void batched_case(const moa_model *m, const char *arch) {
    moa_plan *pl = window_plan();
    for (int use_plan = 0; use_plan < 2; use_plan++) {
        pair p;
        memset(&p, 0, sizeof p);
        if (!pl || !pair_create(&p, m, use_plan ? pl : NULL, 2, MOA_POS_ABSOLUTE, N_CTX, 0)) {
            pair_free(&p);
            break;
        }
        char what[96];
        snprintf(what, sizeof what, "%sbatched, %s", arch, use_plan ? "window plan" : "dense");
        int32_t next[2];
        next[0] = eval_both(&p, 0, prompt, PROMPT, MOA_LOGITS_LAST, what);
        next[1] = eval_both(&p, 1, prompt + 3, PROMPT / 2, MOA_LOGITS_LAST, what);
        const int order[2] = {1, 0};   /* rows in the other order than the sequences */
        float *a = malloc(sizeof(float) * 2 * p.nv), *b = malloc(sizeof(float) * 2 * p.nv);
        for (int s = 0; s < STEPS; s++) {
            const int32_t tok[2] = {next[1], next[0]};
            CHECK_OK(moa_ctx_decode_batch(p.cpu, order, tok, 2, b));
            CHECK_OK(moa_ctx_decode_batch(p.gpu, order, tok, 2, a));
            CHECK_MSG(close_logits(what, a, b, 2 * (size_t)p.nv, p.tol), "%s: step %d", what, s);
            next[1] = argmax(b, p.nv);
            next[0] = argmax(b + p.nv, p.nv);
            for (int q = 0; q < 2; q++) CHECK_EQ_INT(moa_ctx_seq_pos(p.gpu, q), moa_ctx_seq_pos(p.cpu, q));
        }
        /* one sequence alone in a batch step, then a prefill chunk on the other */
        const int one[1] = {0};
        CHECK_OK(moa_ctx_decode_batch(p.cpu, one, next, 1, b));
        CHECK_OK(moa_ctx_decode_batch(p.gpu, one, next, 1, a));
        CHECK(close_logits(what, a, b, (size_t)p.nv, p.tol));
        snprintf(what, sizeof what, "%sbatched: prefill after decode", arch);
        eval_both(&p, 1, prompt + 20, 5, MOA_LOGITS_ALL, what);
        free(a);
        free(b);
        pair_free(&p);
    }
    moa_plan_free(pl);
}

TEST(batched_decode_two_sequences) { batched_case(M16, ""); }

/* moa_ctx_seq_copy on the device: the prompt prefilled into sequence 0 and copied to sequence
 * 1 (which held other tokens before: the copy replaces them), then the same greedy tokens
 * decoded in both, each against the CPU context doing the same (bound as above); on the
 * device sequence 1's logits equal sequence 0's exactly (same bytes, same ops), and
 * positions follow. Dense, the window plan (rings wrapped by the prompt, a linear head's
 * state) and a q8_0 cache. */
TEST(seq_copy_on_device) {
    moa_plan *pl = window_plan();
    for (int use_plan = 0; use_plan < 2 && pl; use_plan++)
        for (int q8 = 0; q8 < 2; q8++) {
            pair p;
            if (!pair_create_kv(&p, M16, use_plan ? pl : NULL, 2, MOA_POS_ABSOLUTE, N_CTX, 0,
                                q8 ? MOA_KV_Q8_0 : MOA_KV_F32)) {
                pair_free(&p);
                continue;
            }
            char what[96];
            snprintf(what, sizeof what, "seq_copy, %s, kv %s", use_plan ? "window plan" : "dense", q8 ? "q8_0" : "f32");
            eval_both(&p, 1, prompt + 5, 9, MOA_LOGITS_NONE, what);   /* overwritten by the copy */
            int32_t t = eval_both(&p, 0, prompt, PROMPT, MOA_LOGITS_LAST, what);
            CHECK_OK(moa_ctx_seq_copy(p.cpu, 0, 1));
            CHECK_OK(moa_ctx_seq_copy(p.gpu, 0, 1));
            CHECK_EQ_INT(moa_ctx_seq_pos(p.gpu, 1), PROMPT);
            CHECK_EQ_INT(moa_ctx_seq_pos(p.cpu, 1), PROMPT);
            float *a[2], *b[2];
            for (int q = 0; q < 2; q++) { a[q] = malloc(sizeof(float) * p.nv); b[q] = malloc(sizeof(float) * p.nv); }
            for (int s = 0; s < STEPS / 2; s++) {
                for (int q = 0; q < 2; q++) {
                    CHECK_OK(moa_ctx_eval_seq(p.gpu, q, &t, 1, MOA_LOGITS_LAST, a[q]));
                    CHECK_OK(moa_ctx_eval_seq(p.cpu, q, &t, 1, MOA_LOGITS_LAST, b[q]));
                    CHECK_MSG(close_logits(what, a[q], b[q], (size_t)p.nv, p.tol), "%s: step %d, sequence %d", what, s, q);
                }
                CHECK_MSG(memcmp(a[0], a[1], sizeof(float) * p.nv) == 0, "%s: step %d: the copy's logits differ", what, s);
                t = argmax(b[0], p.nv);
            }
            for (int q = 0; q < 2; q++) CHECK_EQ_INT(moa_ctx_seq_pos(p.gpu, q), PROMPT + STEPS / 2);
            CHECK_EQ_INT(moa_ctx_seq_copy(p.gpu, 1, 1), MOA_ERR_INVALID_ARG);
            CHECK_EQ_INT(moa_ctx_seq_copy(p.gpu, 0, 2), MOA_ERR_INVALID_ARG);
            for (int q = 0; q < 2; q++) { free(a[q]); free(b[q]); }
            pair_free(&p);
        }
    moa_plan_free(pl);
}

/* KV storage types honoured on the device: moa_ctx_params.kv_type f16 and q8_0 on both
 * contexts, dense and the window plan (rings wrapping), prefill and decode, against the CPU
 * engine of the same type, same bound as with f32 caches. Observed on the emulator: f16
 * 1.3e-4..5.7e-4, q8_0 6.6e-4..1.4e-3 (the device's k, v differ from the CPU's by the
 * GEMM-input rounding, which moves some values across a q8_0 step). Logits at this bound do
 * not tell the types apart (a q8_0 CPU context against an f32 device one: 0.8e-3..1.8e-3), so
 * the check that can fail is the cache size: each type's device context holds exactly the CPU
 * context's bytes (pair_create_kv), f16 half and q8_0 34/(4*32 rounded up) of the f32 one's;
 * tests/kernels/cuda/test_cuda_ops.c (runtime_kv_types) compares the stored bytes themselves. */
static size_t device_kv_bytes(moa_kv_type kv) {
    moa_ctx_params cp = moa_ctx_default_params();
    cp.n_ctx = N_CTX;
    cp.n_batch = N_BATCH;
    cp.kv_type = kv;
    cp.device = MOA_DEVICE_CUDA;
    moa_ctx *c = NULL;
    CHECK_OK(moa_ctx_create(M16, &cp, &c));
    const size_t b = c ? moa_ctx_kv_bytes(c) : 0;
    moa_ctx_free(c);
    return b;
}

TEST(kv_types_f16_q8_0) {
    moa_plan *pl = window_plan();
    const moa_kv_type types[2] = {MOA_KV_F16, MOA_KV_Q8_0};
    for (int ti = 0; ti < 2; ti++)
        for (int use_plan = 0; use_plan < 2; use_plan++) {
            pair p;
            memset(&p, 0, sizeof p);
            if (pl && pair_create_kv(&p, M16, use_plan ? pl : NULL, 1, MOA_POS_ABSOLUTE, N_CTX, 0, types[ti])) {
                char what[96];
                snprintf(what, sizeof what, "kv %s, %s", moa_kv_type_name(types[ti]), use_plan ? "window plan" : "dense");
                prompt_then_decode(&p, STEPS / 2, what);
            }
            pair_free(&p);
        }
    const int hd = cfg.n_embd / cfg.n_head;
    const size_t f32 = device_kv_bytes(MOA_KV_F32), f16 = device_kv_bytes(MOA_KV_F16);
    const size_t q8 = device_kv_bytes(MOA_KV_Q8_0);
    CHECK(f32 > 0 && f32 % (4 * (size_t)hd) == 0);
    CHECK_EQ_INT(f16 * 2, f32);
    CHECK_EQ_INT(q8, f32 / (4 * (size_t)hd) * (34 * (size_t)((hd + 31) / 32)));
    moa_plan_free(pl);
}

TEST(bf16_unrounded_weights) {
    pair p;
    if (pair_create(&p, M32, NULL, 1, MOA_POS_ABSOLUTE, N_CTX, 1)) prompt_then_decode(&p, STEPS / 2, "bf16");
    pair_free(&p);
}

TEST(same_errors_as_cpu) {
    pair p;
    const int n_ctx = 24;
    if (pair_create(&p, M16, NULL, 2, MOA_POS_ABSOLUTE, n_ctx, 0)) {
        const int32_t bad[2] = {1, cfg.n_vocab};
        CHECK_EQ_INT(moa_ctx_eval(p.cpu, bad, 2, MOA_LOGITS_NONE, NULL), MOA_ERR_INVALID_ARG);
        CHECK_EQ_INT(moa_ctx_eval(p.gpu, bad, 2, MOA_LOGITS_NONE, NULL), MOA_ERR_INVALID_ARG);
        CHECK_EQ_INT(moa_ctx_eval_seq(p.gpu, 2, prompt, 2, MOA_LOGITS_NONE, NULL), MOA_ERR_INVALID_ARG);
        /* a dense cache that would overflow: refused before anything is appended */
        eval_both(&p, 0, prompt, 20, MOA_LOGITS_NONE, "fill");
        CHECK_EQ_INT(moa_ctx_eval(p.cpu, prompt, 5, MOA_LOGITS_LAST, NULL), MOA_ERR_RANGE);
        CHECK_EQ_INT(moa_ctx_eval(p.gpu, prompt, 5, MOA_LOGITS_LAST, NULL), MOA_ERR_RANGE);
        CHECK_EQ_INT(moa_ctx_n_past(p.gpu), 20);
        const int dup[2] = {0, 0};
        const int32_t tok[2] = {3, 4};
        CHECK(moa_ctx_decode_batch(p.cpu, dup, tok, 2, NULL) < 0);
        CHECK(moa_ctx_decode_batch(p.gpu, dup, tok, 2, NULL) < 0);
        /* still usable: the last 4 positions */
        eval_both(&p, 0, prompt + 20, 4, MOA_LOGITS_ALL, "after errors");
        CHECK_EQ_INT(moa_ctx_n_past(p.gpu), 24);
    }
    pair_free(&p);
}

/* ---- qwen2: q/k/v biases (f32 on the device, added after each GEMM), NEOX RoPE ------------ */


/* The prompt's mean loss from the device's logits against the double-precision reference
 * forward of tiny_model.h on the same f16-valued weights (independent of model/ and
 * kernels/): the device differs by the rounding of the GEMM inputs to f16 only. Controls: the
 * reference with the other (normal) RoPE pairing, and without the biases, must both be much
 * further off than the bound. */
#define TOL_QWEN2_LOSS 1e-4   /* observed 5.7e-6 on the emulator; the controls 1.1e-2, 1.2e-2 */
static double qwen2_loss_err, qwen2_flip_err, qwen2_nobias_err;
TEST(qwen2_loss_vs_reference) {
    CHECK_EQ_INT(Q16->hp.rope_pairing, MOA_ROPE_NEOX);
    CHECK(Q16->layers[0].wq.bias && Q16->layers[1].wv.bias && !Q16->tied);
    const int nv = Q16->hp.n_vocab, d = cfg.n_embd;
    moa_ctx_params cp = moa_ctx_default_params();
    cp.kv_type = MOA_KV_F32;   /* as the reference: K and V unrounded */
    cp.n_ctx = N_CTX;
    cp.n_batch = N_BATCH;
    cp.device = MOA_DEVICE_CUDA;
    moa_ctx *g = NULL;
    CHECK_OK(moa_ctx_create(Q16, &cp, &g));
    if (!g) return;
    float *lg = malloc(sizeof(float) * PROMPT * (size_t)nv);
    double *x0 = malloc(sizeof(double) * PROMPT * (size_t)d);
    CHECK_OK(moa_ctx_eval(g, prompt, PROMPT, MOA_LOGITS_ALL, lg));
    const double got = tiny_logits_ce(lg, prompt, PROMPT, nv);
    for (int i = 0; i < PROMPT; i++)
        for (int e = 0; e < d; e++) x0[(size_t)i * d + e] = WQ16.embd[(size_t)prompt[i] * d + e];
    const double ref = tiny_loss(&WQ16, x0, prompt, PROMPT, 1, PROMPT, NULL);
    tiny_rope_flip = 1;
    const double flip = tiny_loss(&WQ16, x0, prompt, PROMPT, 1, PROMPT, NULL);
    tiny_rope_flip = 0;
    float *none[2] = {NULL, NULL};
    tiny_weights nb = WQ16;
    nb.bq = nb.bk = nb.bv = none;
    const double nobias = tiny_loss(&nb, x0, prompt, PROMPT, 1, PROMPT, NULL);
    qwen2_loss_err = fabs(got - ref) / fabs(ref);
    qwen2_flip_err = fabs(flip - ref) / fabs(ref);
    qwen2_nobias_err = fabs(nobias - ref) / fabs(ref);
    fprintf(stderr, "  qwen2 on CUDA: loss %.7f, reference %.7f (relative error %.3g, bound %g); "
            "reference with the normal pairing %.7f, without biases %.7f\n", got, ref, qwen2_loss_err,
            TOL_QWEN2_LOSS, flip, nobias);
    CHECK(qwen2_loss_err <= TOL_QWEN2_LOSS);
    CHECK(qwen2_flip_err > 20 * TOL_QWEN2_LOSS);
    CHECK(qwen2_nobias_err > 20 * TOL_QWEN2_LOSS);
    free(lg);
    free(x0);
    moa_ctx_free(g);
}

/* The CUDA engine vs the CPU engine on qwen2, logits at every position: the cases of the llama
 * tests above (dense, a plan whose rings wrap, streaming past n_ctx where the kernels rotate
 * with the NEOX pairing, batched decode, bf16 with the unrounded weights). */
TEST(qwen2_vs_cpu) {
    pair p;
    if (pair_create(&p, Q16, NULL, 1, MOA_POS_ABSOLUTE, N_CTX, 0)) prompt_then_decode(&p, STEPS, "qwen2 dense");
    pair_free(&p);
    moa_plan *pl = window_plan();
    memset(&p, 0, sizeof p);
    if (pl && pair_create(&p, Q16, pl, 1, MOA_POS_ABSOLUTE, N_CTX, 0)) prompt_then_decode(&p, STEPS, "qwen2 window plan");
    pair_free(&p);
    moa_plan_free(pl);
    streaming_case(Q16, "qwen2 streaming");
    batched_case(Q16, "qwen2 ");
    memset(&p, 0, sizeof p);
    if (pair_create(&p, Q32, NULL, 1, MOA_POS_ABSOLUTE, N_CTX, 1)) prompt_then_decode(&p, STEPS / 2, "qwen2 bf16");
    pair_free(&p);
}

/* Key smoothing (model/key-smooth.h) on the device: a qwen2 model whose layer-0 key bias has
 * outlier pairs (magnitudes 200 and 60: scales 16 and 4), q8_0 caches on both engines. The
 * device must smooth as the CPU does: the control, the CPU without smoothing, is far off. */
TEST(qwen2_q8_0_key_smoothing) {
    tiny_cfg qc = cfg;
    qc.qwen2 = 1;
    tiny_weights w = tiny_make(qc, 7);
    round_matrices_f16(&w, qc);   /* rounding is idempotent: a tied output is the same either way */
    const int half = w.hd / 2;
    w.bk[0][3] = 120.0f, w.bk[0][3 + half] = 160.0f;
    w.bk[0][w.hd + 6] = -60.0f, w.bk[0][w.hd + 6 + half] = 0.0f;
    gbuf img = tiny_gguf(&w);
    char path[512];
    model_path(path, "qwen2_outliers_f16");
    FILE *fp = fopen(path, "wb");
    CHECK(fp && fwrite(img.b, 1, img.n, fp) == img.n && fclose(fp) == 0);
    free(img.b);
    tiny_free(&w);
    moa_model *m = load(path);
    pair p;
    if (pair_create_kv(&p, m, NULL, 1, MOA_POS_ABSOLUTE, N_CTX, 0, MOA_KV_Q8_0))
        prompt_then_decode(&p, STEPS / 2, "qwen2 outliers, kv q8_0");
    /* control: the same prompt without smoothing on the CPU differs well beyond the tolerance */
    moa_ctx_params cp = moa_ctx_default_params();
    cp.kv_type = MOA_KV_Q8_0;
    cp.n_ctx = N_CTX;
    cp.n_batch = N_BATCH;
    cp.no_key_smooth = 1;
    moa_ctx *raw = NULL;
    CHECK_OK(moa_ctx_create(m, &cp, &raw));
    const size_t nl = (size_t)PROMPT * m->hp.n_vocab;
    float *a = malloc(sizeof(float) * nl), *b = malloc(sizeof(float) * nl);
    if (raw && p.cpu) {
        moa_ctx_reset(p.cpu);
        CHECK_OK(moa_ctx_eval(p.cpu, prompt, PROMPT, MOA_LOGITS_ALL, a));
        CHECK_OK(moa_ctx_eval(raw, prompt, PROMPT, MOA_LOGITS_ALL, b));
        double mx = 0, err = 0;
        for (size_t i = 0; i < nl; i++) mx = fmax(mx, fabs(a[i])), err = fmax(err, fabs((double)a[i] - b[i]));
        fprintf(stderr, "  control: q8_0 keys without smoothing differ by %.3g of max |logit| %.3g (tolerance %.3g)\n",
                err, mx, TOL_F16 * mx);
        CHECK(err > 10 * TOL_F16 * mx);
    }
    free(a), free(b);
    moa_ctx_free(raw);
    pair_free(&p);
    moa_model_free(m);
}

/* Contexts of one model share one device copy of the weights per type (weights-cuda.h):
 * uploaded by the first, counted while in use, kept with the model after the last is freed;
 * a context after that gives the same logits as one created on a fresh model. */
static int n_copies(const moa_model *m, moa_cuda_dtype dt, int *users) {
    int n = 0;
    for (const moa_model_cuda *c = m->cuda; c; c = c->next)
        if (c->dt == dt) { n++; *users = c->users; }
    return n;
}

TEST(contexts_share_device_weights) {
    moa_model *m = load_m16();
    if (!m) return;
    moa_ctx_params cp = moa_ctx_default_params();
    cp.kv_type = MOA_KV_F32;   /* f32 caches (kv_types_f16_q8_0 covers the storage types) */
    cp.n_ctx = N_CTX;
    cp.n_batch = N_BATCH;
    cp.device = MOA_DEVICE_CUDA;
    moa_ctx *a = NULL, *b = NULL, *c = NULL;
    CHECK_OK(moa_ctx_create(m, &cp, &a));
    CHECK_OK(moa_ctx_create(m, &cp, &b));
    int users = -1;
    CHECK_EQ_INT(n_copies(m, MOA_CUDA_F16, &users), 1);
    CHECK_EQ_INT(users, 2);
    cp.device_bf16 = 1;
    CHECK_OK(moa_ctx_create(m, &cp, &c));
    CHECK_EQ_INT(n_copies(m, MOA_CUDA_BF16, &users), 1);
    CHECK_EQ_INT(users, 1);
    const int nv = m->hp.n_vocab;
    float *la = malloc(sizeof(float) * (size_t)nv), *lb = malloc(sizeof(float) * (size_t)nv);
    if (a && b) {
        moa_ctx_free(a);
        a = NULL;
        CHECK_EQ_INT(n_copies(m, MOA_CUDA_F16, &users), 1);
        CHECK_EQ_INT(users, 1);
        CHECK_OK(moa_ctx_eval(b, prompt, PROMPT, MOA_LOGITS_LAST, la));
        moa_ctx_free(b);
        b = NULL;
        CHECK_EQ_INT(n_copies(m, MOA_CUDA_F16, &users), 1);
        CHECK_EQ_INT(users, 0);   /* kept with the model */
        cp.device_bf16 = 0;
        CHECK_OK(moa_ctx_create(m, &cp, &a));   /* reuses the copy */
        CHECK_EQ_INT(n_copies(m, MOA_CUDA_F16, &users), 1);
        CHECK_OK(moa_ctx_create(M16, &cp, &b)); /* another model: its own copy */
        if (a && b) {
            CHECK_OK(moa_ctx_eval(a, prompt, PROMPT, MOA_LOGITS_LAST, lb));
            CHECK(memcmp(la, lb, sizeof(float) * (size_t)nv) == 0);
            CHECK_OK(moa_ctx_eval(b, prompt, PROMPT, MOA_LOGITS_LAST, lb));
            CHECK(memcmp(la, lb, sizeof(float) * (size_t)nv) == 0);
        }
    }
    free(la);
    free(lb);
    moa_ctx_free(a);
    moa_ctx_free(b);
    moa_ctx_free(c);
    moa_model_free(m);   /* frees the copies */
}

/* SmolLM2 (MOA_MODEL, Q4_1 weights and a Q8_0 embedding/tied head dequantised to f16 on the
 * device: weight and activation rounding over 30 layers) on both devices: a chat-style
 * prompt's logits at every position, then greedy decode steps fed the CPU's choice. Bound
 * on max |logit error| / max |logit|: TOL_MODEL, 3x the 6.3e-3 observed on the emulator
 * (12 tokens + 3 steps); the greedy token must agree wherever the CPU's top-2 margin
 * exceeds twice the error bound. The CPU side runs with f32 activations
 * (moa_matmul_q_set_act(F32)), the path the device mirrors: its default int8 activations
 * add their own rounding (0.046 of the largest logit here), which is bounded against
 * llama.cpp's in test_engine_golden, not against the device. */
#define TOL_MODEL 2e-2
static double worst_model;
TEST(smollm2_prefill_then_decode) {
    moa_model_params mp = moa_model_default_params();
    mp.compute_sha256 = 0;
    moa_model *m = NULL;
    CHECK_OK(moa_model_load(test_model_path(), &mp, &m));
    if (!m) return;
    const int n = BIG(48, 12), steps = BIG(16, 3), nv = m->hp.n_vocab;
    int32_t tok[48];
    for (int i = 0; i < n; i++) tok[i] = (int32_t)(1 + (i * 7919 + 13) % 4000);   /* ordinary ids */
    moa_ctx_params cp = moa_ctx_default_params();
    cp.kv_type = MOA_KV_F32;   /* f32 caches (kv_types_f16_q8_0 covers the storage types) */
    cp.n_ctx = 128;
    cp.n_batch = 32;
    cp.device = MOA_DEVICE_CPU;
    moa_ctx *cpu = NULL, *gpu = NULL;
    CHECK_OK(moa_ctx_create(m, &cp, &cpu));
    cp.device = MOA_DEVICE_CUDA;
    CHECK_OK(moa_ctx_create(m, &cp, &gpu));
    moa_matmul_q_set_act(MOA_MATMUL_ACT_F32);
    float *a = malloc(sizeof(float) * (size_t)n * nv), *b = malloc(sizeof(float) * (size_t)n * nv);
    if (cpu && gpu) {
        CHECK_OK(moa_ctx_eval(cpu, tok, n, MOA_LOGITS_ALL, b));
        CHECK_OK(moa_ctx_eval(gpu, tok, n, MOA_LOGITS_ALL, a));
        for (int s = 0; s <= steps; s++) {
            const size_t rows = s == 0 ? (size_t)n : 1;
            double mx = 0, err = 0;
            for (size_t i = 0; i < rows * nv; i++) {
                mx = fmax(mx, fabs(b[i]));
                err = fmax(err, fabs((double)a[i] - b[i]));
            }
            worst_model = fmax(worst_model, err / mx);
            CHECK_MSG(err <= TOL_MODEL * mx, "SmolLM2 step %d: max error %.3g, scale %.3g", s, err, mx);
            const float *lb = b + (rows - 1) * nv, *la = a + (rows - 1) * nv;
            const int top = argmax(lb, nv), topa = argmax(la, nv);
            float second = -INFINITY;
            for (int i = 0; i < nv; i++) if (i != top && lb[i] > second) second = lb[i];
            if (lb[top] - second > 2 * TOL_MODEL * mx)
                CHECK_MSG(topa == top, "SmolLM2 step %d: greedy token %d on CUDA, %d on the CPU", s, topa, top);
            if (s == steps) break;
            int32_t t = top;
            CHECK_OK(moa_ctx_eval(cpu, &t, 1, MOA_LOGITS_LAST, b));
            CHECK_OK(moa_ctx_eval(gpu, &t, 1, MOA_LOGITS_LAST, a));
        }
    }
    moa_matmul_q_set_act(MOA_MATMUL_ACT_AUTO);
    free(a);
    free(b);
    moa_ctx_free(cpu);
    moa_ctx_free(gpu);
    moa_model_free(m);
}

/* ---- k-quant and Q5 weights: raw blocks dequantised on the device ------------------------- */

static uint64_t kq_rng = 0x853c49e6748fea9bull;
static uint32_t rnd(void) {   /* for quant_blocks.h */
    kq_rng ^= kq_rng >> 12; kq_rng ^= kq_rng << 25; kq_rng ^= kq_rng >> 27;
    return (uint32_t)((kq_rng * 0x2545f4914f6cdd1dull) >> 32);
}
#include "../kernels/cuda/quant_blocks.h"

/* A qwen2 model (biases, NEOX RoPE, its own output matrix) whose matrices are raw blocks of
 * the types of Qwen2.5 Q4_K_M files and the other block types, n_embd = n_head hd = n_ff =
 * 256 (one super-block per row): layer 0 q Q4_K, k Q5_K, v Q6_K, o Q5_0, gate Q5_1, up Q4_K,
 * down Q6_K; layer 1 q Q5_0, k Q5_1, v Q4_K, o Q6_K, gate Q5_K, up Q6_K, down Q4_K; token
 * table Q6_K, output Q4_K. Matrix values of order 1/sqrt(256), embeddings and output of
 * order 1. */
static const moa_ggml_type kq_types[2][7] = {
    {MOA_GGML_Q4_K, MOA_GGML_Q5_K, MOA_GGML_Q6_K, MOA_GGML_Q5_0, MOA_GGML_Q5_1, MOA_GGML_Q4_K, MOA_GGML_Q6_K},
    {MOA_GGML_Q5_0, MOA_GGML_Q5_1, MOA_GGML_Q4_K, MOA_GGML_Q6_K, MOA_GGML_Q5_K, MOA_GGML_Q6_K, MOA_GGML_Q4_K}};
static moa_model *kq_model(tiny_cfg *out_cfg) {
    tiny_cfg c = cfg;
    c.qwen2 = 1;
    c.n_embd = 256;
    c.n_ff = 256;
    c.n_head = 4;
    c.n_kv = 2;
    *out_cfg = c;
    tiny_weights w = tiny_make(c, 11);   /* norms and biases; the matrices are replaced */
    const int nr = TINY_RAW_LAYER + 7 * c.n_layer, d = c.n_embd, hd = d / c.n_head;
    tiny_raw *raw = calloc((size_t)nr, sizeof *raw);
    for (int i = 0; i < nr; i++) {
        int64_t n_out = c.n_vocab, n_in = d;
        moa_ggml_type t = i == TINY_RAW_EMBD ? MOA_GGML_Q6_K : MOA_GGML_Q4_K;
        float amp = 1.0f;
        if (i >= TINY_RAW_LAYER) {
            const int l = (i - TINY_RAW_LAYER) / 7, k = (i - TINY_RAW_LAYER) % 7;
            const int64_t outs[7] = {c.n_head * hd, c.n_kv * hd, c.n_kv * hd, d, c.n_ff, c.n_ff, d};
            const int64_t ins[7] = {d, d, d, c.n_head * hd, d, d, c.n_ff};
            n_out = outs[k], n_in = ins[k];
            t = kq_types[l][k];
            amp = 1.0f / sqrtf((float)n_in);
        }
        uint32_t be;
        moa_ggml_type_info(t, &be, NULL);
        raw[i].type = (uint32_t)t;
        raw[i].n_bytes = moa_ggml_row_bytes(t, n_in) * (size_t)n_out;
        uint8_t *b = malloc(raw[i].n_bytes);
        qb_fill_amp(t, b, n_in / be * n_out, 0, amp);
        raw[i].data = b;
    }
    gbuf img = tiny_gguf_raw(&w, raw);
    char path[512];
    model_path(path, "qwen2_kquant");
    FILE *fp = fopen(path, "wb");
    CHECK(fp && fwrite(img.b, 1, img.n, fp) == img.n && fclose(fp) == 0);
    free(img.b);
    for (int i = 0; i < nr; i++) free((void *)raw[i].data);
    free(raw);
    tiny_free(&w);
    return load(path);
}

/* The weights of m as the device copy c holds them (dtype c->dt) vs moa_dequant_row on the
 * host: returns the number of matrices that differ (f32: bits; f16/bf16: rounded to nearest
 * even; a raw weight: its blocks byte for byte and no dequantised matrix), and checks the
 * token table is held raw (byte for byte) when `raw_embd`. */
static int kq_compare_copy(moa_cuda_ctx *cx, const moa_model *m, const moa_model_cuda *c, int raw_embd) {
    const moa_llama_hparams *hp = &m->hp;
    int bad = 0;
    for (int i = 0; i <= hp->n_layer * MOA_MODEL_CUDA_LW; i++) {
        const moa_weight *w;
        const moa_cuda_weight *cw;
        if (i == hp->n_layer * MOA_MODEL_CUDA_LW) w = &m->output, cw = &c->out;
        else {
            const moa_llama_layer *Ly = &m->layers[i / MOA_MODEL_CUDA_LW];
            const moa_weight *ws[MOA_MODEL_CUDA_LW] = {&Ly->wq, &Ly->wk, &Ly->wv, &Ly->wo,
                                                       &Ly->w_gate, &Ly->w_up, &Ly->w_down};
            w = ws[i % MOA_MODEL_CUDA_LW], cw = &c->w[i];
        }
        const size_t n = (size_t)(w->n_out * w->n_in), rb = moa_ggml_row_bytes(w->type, w->n_in);
        if (cw->raw) {   /* an engine copy: the GGUF bytes, nothing else */
            uint8_t *got = malloc(rb * (size_t)w->n_out);
            CHECK_OK(moa_cuda_download(cx, got, cw->raw, rb * (size_t)w->n_out));
            const int differs = cw->data != NULL || cw->type != w->type || memcmp(got, w->data, rb * (size_t)w->n_out);
            if (differs) fprintf(stderr, "  %s matrix %d: raw copy differs from the GGUF bytes\n", moa_ggml_type_name(w->type), i);
            bad += differs;
            free(got);
            continue;
        }
        float *ref = malloc(sizeof(float) * n);
        void *got = malloc(sizeof(float) * n);
        for (int64_t o = 0; o < w->n_out; o++)
            moa_dequant_row(w->type, (const uint8_t *)w->data + rb * (size_t)o, ref + o * w->n_in, w->n_in);
        CHECK_OK(moa_cuda_download(cx, got, cw->data, n * moa_cuda_dtype_size(c->dt)));
        int differs = 0;
        for (size_t e = 0; e < n && !differs; e++) {
            if (c->dt == MOA_CUDA_F32) differs = memcmp((float *)got + e, ref + e, 4) != 0;
            else differs = ((uint16_t *)got)[e] != (c->dt == MOA_CUDA_F16 ? moa_f32_to_f16(ref[e]) : moa_f32_to_bf16(ref[e]));
        }
        if (differs) fprintf(stderr, "  %s matrix %d differs from moa_dequant_row\n", moa_ggml_type_name(w->type), i);
        bad += differs;
        free(ref);
        free(got);
    }
    if (raw_embd) {
        const size_t b = moa_ggml_row_bytes(m->tok_embd.type, hp->n_embd) * (size_t)m->tok_embd.n_out;
        uint8_t *got = malloc(b);
        CHECK(c->embd != NULL);
        if (c->embd) {
            CHECK_OK(moa_cuda_download(cx, got, c->embd, b));
            bad += memcmp(got, m->tok_embd.data, b) != 0;
        }
        free(got);
    } else {
        CHECK(c->embd == NULL);
    }
    return bad;
}

/* The raw engine p.gpu against the forced-host (f16 copy) engine h.gpu, both reset: the
 * prompt's full n_batch chunks equal bit for bit (the scratch GEMM), the last chunk and one
 * decode step (the matvec) differ from the f16 GEMM's but stay within TOL_F16 of them. */
static void kq_raw_vs_host(pair *p, pair *h, int nv) {
    const size_t nl = (size_t)PROMPT * nv, full = (size_t)(PROMPT / N_BATCH * N_BATCH) * nv;
    float *a = malloc(sizeof(float) * nl), *b = malloc(sizeof(float) * nl);
    moa_ctx_reset(p->gpu);
    CHECK_OK(moa_ctx_eval(p->gpu, prompt, PROMPT, MOA_LOGITS_ALL, a));
    CHECK_OK(moa_ctx_eval(h->gpu, prompt, PROMPT, MOA_LOGITS_ALL, b));
    CHECK_MSG(memcmp(a, b, sizeof(float) * full) == 0, "scratch-GEMM logits differ from the f16 copy's");
    CHECK_MSG(memcmp(a + full, b + full, sizeof(float) * (nl - full)) != 0,
              "the last prefill chunk did not take the matvec (same logits as the f16 GEMM)");
    CHECK(close_logits("raw vs f16 copy: prefill", a, b, nl, TOL_F16));
    const int32_t t = argmax(b + nl - nv, nv);
    CHECK_OK(moa_ctx_eval(p->gpu, &t, 1, MOA_LOGITS_LAST, a));
    CHECK_OK(moa_ctx_eval(h->gpu, &t, 1, MOA_LOGITS_LAST, b));
    CHECK_MSG(memcmp(a, b, sizeof(float) * nv) != 0, "the decode step did not take the matvec");
    CHECK(close_logits("raw vs f16 copy: decode", a, b, (size_t)nv, TOL_F16));
    free(a);
    free(b);
}

/* Batched decode of two sequences on m (dense, f32 caches): each step's 2 rows take the
 * raw-block matvec on the device (n = 2), against the CPU engine within TOL_F16. */
static void kq_batched(const moa_model *m) {
    pair p;
    if (!pair_create(&p, m, NULL, 2, MOA_POS_ABSOLUTE, N_CTX, 0)) {
        pair_free(&p);
        return;
    }
    int32_t next[2];
    next[0] = eval_both(&p, 0, prompt, PROMPT, MOA_LOGITS_LAST, "k-quant batched");
    next[1] = eval_both(&p, 1, prompt + 3, PROMPT / 2, MOA_LOGITS_LAST, "k-quant batched");
    const int seqs[2] = {0, 1};
    float *a = malloc(sizeof(float) * 2 * p.nv), *b = malloc(sizeof(float) * 2 * p.nv);
    for (int s = 0; s < STEPS; s++) {
        CHECK_OK(moa_ctx_decode_batch(p.cpu, seqs, next, 2, b));
        CHECK_OK(moa_ctx_decode_batch(p.gpu, seqs, next, 2, a));
        CHECK_MSG(close_logits("k-quant batched decode", a, b, 2 * (size_t)p.nv, p.tol), "step %d", s);
        next[0] = argmax(b, p.nv);
        next[1] = argmax(b + p.nv, p.nv);
    }
    free(a);
    free(b);
    pair_free(&p);
}

/* The device bytes an engine (raw) copy of m must hold: each matrix's GGUF bytes, the f32
 * biases, the norms and the raw token table. */
static size_t kq_raw_bytes(const moa_model *m) {
    const moa_llama_hparams *hp = &m->hp;
    size_t b = moa_ggml_row_bytes(m->output.type, m->output.n_in) * (size_t)m->output.n_out;
    for (int l = 0; l < hp->n_layer; l++) {
        const moa_llama_layer *Ly = &m->layers[l];
        const moa_weight *ws[MOA_MODEL_CUDA_LW] = {&Ly->wq, &Ly->wk, &Ly->wv, &Ly->wo,
                                                   &Ly->w_gate, &Ly->w_up, &Ly->w_down};
        for (int i = 0; i < MOA_MODEL_CUDA_LW; i++)
            b += moa_ggml_row_bytes(ws[i]->type, ws[i]->n_in) * (size_t)ws[i]->n_out +
                 (ws[i]->bias ? sizeof(float) * (size_t)ws[i]->n_out : 0);
    }
    b += sizeof(float) * (size_t)(2 * hp->n_layer + 1) * (size_t)hp->n_embd;
    return b + moa_ggml_row_bytes(m->tok_embd.type, hp->n_embd) * (size_t)m->tok_embd.n_out;
}

/* Q4_K/Q5_K/Q6_K/Q5_0/Q5_1 weights (kq_model) on the device:
 * - the profiler's (dequantised) copies hold moa_dequant_row's values (f32: the same bits;
 *   f16: rounded to nearest even), uploaded as raw blocks; the token table stays raw;
 * - the engine's copy holds only the raw blocks: every matrix's GGUF bytes, and its device
 *   bytes are exactly the GGUF bytes + biases + norms + token table (against 2 bytes per
 *   value in an f16 copy);
 * - the host path (moa_model_cuda_force_host_dequant: what a type without a device decoder
 *   takes, per-call host embedding included) gives the dequantised copy, and the engine's
 *   copy on it is an f16 copy;
 * - the CUDA engine against the CPU engine (f32 activations in the CPU's quantised decode
 *   products), logits at every position then greedy decode: TOL_F16 (observed up to
 *   1.2e-3 on the emulator before the raw weights);
 * - the raw engine against the forced-host (f16 copy) engine on the prompt: the full
 *   n_batch chunks (scratch GEMM on the same f16 values) give the same logits bit for bit,
 *   the last chunk (<= MOA_CUDA_MATVEC_MAX_N rows) and a decode step (the raw-block matvec,
 *   f32 weights and activations) differ from the f16 GEMM's, within TOL_F16;
 * - batched decode of two sequences (the matvec with n = 2) vs the CPU engine. */
TEST(kquant_weights_on_device) {
    tiny_cfg kc;
    moa_model *m = kq_model(&kc);
    if (!m) return;
    CHECK(m->layers[0].wq.type == MOA_GGML_Q4_K && m->layers[0].wv.type == MOA_GGML_Q6_K &&
          m->layers[1].wq.type == MOA_GGML_Q5_0 && m->layers[1].wk.type == MOA_GGML_Q5_1 &&
          m->layers[1].w_gate.type == MOA_GGML_Q5_K && m->tok_embd.type == MOA_GGML_Q6_K && !m->tied);
    CHECK(PROMPT % N_BATCH > 0 && PROMPT % N_BATCH <= MOA_CUDA_MATVEC_MAX_N && N_BATCH > MOA_CUDA_MATVEC_MAX_N);
    moa_cuda_ctx *cx = NULL;
    CHECK_OK(moa_cuda_ctx_create(0, &cx));
    if (!cx) { moa_model_free(m); return; }
    /* device dequantisation: f32 and f16 copies; the engine's raw copy */
    moa_model_cuda *c32 = NULL, *c16 = NULL, *r16 = NULL;
    CHECK_OK(moa_model_cuda_acquire(m, cx, 0, MOA_CUDA_F32, 0, &c32));
    CHECK_OK(moa_model_cuda_acquire(m, cx, 0, MOA_CUDA_F16, 0, &c16));
    CHECK_OK(moa_model_cuda_acquire(m, cx, 0, MOA_CUDA_F16, 1, &r16));
    if (c32) CHECK_EQ_INT(kq_compare_copy(cx, m, c32, 1), 0);
    if (c16) CHECK_EQ_INT(kq_compare_copy(cx, m, c16, 1), 0);
    if (r16 && c16) {
        CHECK(r16 != c16 && r16->raw && !c16->raw);
        CHECK_EQ_INT(kq_compare_copy(cx, m, r16, 1), 0);
        CHECK_EQ_INT(r16->bytes, kq_raw_bytes(m));
        fprintf(stderr, "  k-quant model: engine copy %zu device bytes (the GGUF's), f16 copy %zu\n",
                r16->bytes, c16->bytes);
        CHECK(r16->bytes < c16->bytes);
    }
    /* the host path, on a second load of the file */
    char path[512];
    model_path(path, "qwen2_kquant");
    moa_model *mh = load(path);
    moa_model_cuda *h32 = NULL;
    moa_model_cuda_force_host_dequant(1);
    CHECK_OK(moa_model_cuda_acquire(mh, cx, 0, MOA_CUDA_F32, 0, &h32));
    pair ph;   /* its engine copy is created by the context, on the host path too: f16 */
    memset(&ph, 0, sizeof ph);
    const int okh = pair_create(&ph, mh, NULL, 1, MOA_POS_ABSOLUTE, N_CTX, 0);
    moa_model_cuda_force_host_dequant(0);
    if (h32) CHECK_EQ_INT(kq_compare_copy(cx, mh, h32, 0), 0);
    for (const moa_model_cuda *c = mh->cuda; c && okh; c = c->next)
        if (c->raw) CHECK(c->w[0].data != NULL && c->w[0].raw == NULL && c->out.data != NULL);
    moa_model_cuda_release(m, c32);
    moa_model_cuda_release(m, c16);
    moa_model_cuda_release(m, r16);
    moa_model_cuda_release(mh, h32);
    moa_cuda_ctx_free(cx);
    /* the engines */
    moa_matmul_q_set_act(MOA_MATMUL_ACT_F32);
    pair p;
    if (pair_create(&p, m, NULL, 1, MOA_POS_ABSOLUTE, N_CTX, 0)) {
        prompt_then_decode(&p, STEPS, "k-quant qwen2");
        if (okh) kq_raw_vs_host(&p, &ph, m->hp.n_vocab);
    }
    kq_batched(m);
    moa_matmul_q_set_act(MOA_MATMUL_ACT_AUTO);
    pair_free(&p);
    pair_free(&ph);
    moa_model_free(mh);
    moa_model_free(m);
}

/* argv[1] == "--model": only the SmolLM2 case (label model; skips without MOA_MODEL). */
int main(int argc, char **argv) {
    if (argc > 1 && !strcmp(argv[1], "--model")) {
        if (!moa_ctx_cuda_available()) { printf("SKIP: no CUDA device\n"); return 77; }
        (void)test_model_path();
        RUN(smollm2_prefill_then_decode);
        fprintf(stderr, "SmolLM2: worst logit error / largest |logit| %.3g (bound %g)\n", worst_model, TOL_MODEL);
        return test_summary();
    }
    if (!moa_ctx_cuda_available()) {
        /* no device: a CUDA context must fail with a message, AUTO must fall back */
        setup();
        moa_ctx_params cp = moa_ctx_default_params();
        cp.device = MOA_DEVICE_CUDA;
        moa_ctx *c = NULL;
        const moa_status st = moa_ctx_create(M16, &cp, &c);
        char msg[512];
        snprintf(msg, sizeof msg, "%s", moa_last_error());
        if (st != MOA_ERR_DEVICE || c || !strstr(msg, "no CUDA device")) {
            fprintf(stderr, "FAIL: without a device moa_ctx_create(CUDA) returned %d (%s)\n", (int)st, msg);
            return 1;
        }
        /* qwen2 is refused for the missing device, not for its architecture */
        if (moa_ctx_create(Q16, &cp, &c) != MOA_ERR_DEVICE || !strstr(moa_last_error(), "no CUDA device")) {
            fprintf(stderr, "FAIL: without a device moa_ctx_create(CUDA, qwen2): %s\n", moa_last_error());
            return 1;
        }
        cp.device = MOA_DEVICE_AUTO;
        if (moa_ctx_create(M16, &cp, &c) != MOA_OK || moa_ctx_device(c) != MOA_DEVICE_CPU) return 1;
        moa_ctx_free(c);
        printf("SKIP: no CUDA device (moa_ctx_create: %s)\n", msg);
        moa_model_free(M16);
        moa_model_free(M32);
        moa_model_free(Q16);
        moa_model_free(Q32);
        tiny_free(&WQ16);
        return 77;
    }
    setup();
    RUN(dense_prefill_then_decode);
    RUN(window_plan_rings_wrap);
    RUN(q_head_plan);
    RUN(streaming_past_n_ctx);
    RUN(batched_decode_two_sequences);
    RUN(seq_copy_on_device);
    RUN(bf16_unrounded_weights);
    RUN(kv_types_f16_q8_0);
    RUN(same_errors_as_cpu);
    RUN(contexts_share_device_weights);
    RUN(qwen2_loss_vs_reference);
    RUN(qwen2_vs_cpu);
    RUN(qwen2_q8_0_key_smoothing);
    RUN(kquant_weights_on_device);
    fprintf(stderr, "worst logit error / largest |logit|: f16 %.3g (bound %g), bf16 %.3g (bound %g)\n",
            worst_f16, TOL_F16, worst_bf16, TOL_BF16);
    moa_model_free(M16);
    moa_model_free(M32);
    moa_model_free(Q16);
    moa_model_free(Q32);
    tiny_free(&WQ16);
    return test_summary();
}
