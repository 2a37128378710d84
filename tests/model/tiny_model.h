/* tiny_model.h - a small random Llama or Qwen2 model as an in-memory GGUF (F32 weights),
 * plus an independent double-precision reference forward of the same model for tests
 * (gradient checks, masked-attention loss changes). Written from the architecture
 * descriptions (gguf-llama.md; Qwen2 = Llama + q/k/v biases + NEOX RoPE on the halves
 * (x[i], x[i + hd/2]) + a separate output matrix), independent of model/ and profiler/. */
#ifndef MOA_TEST_TINY_MODEL_H
#define MOA_TEST_TINY_MODEL_H

#include <math.h>
#include "gguf_builder.h"

typedef struct {
    int n_layer, n_embd, n_head, n_kv, n_ff, n_vocab, n_ctx;
    float rope_base, eps;
    int qwen2;             /* 0: llama (tied head); 1: qwen2 (biases, NEOX RoPE, output.weight) */
} tiny_cfg;

typedef struct {
    tiny_cfg c;
    int hd;
    float *embd;           /* [vocab][d] (tied head) */
    float *out_norm;       /* [d] */
    float **an, **fn;      /* [L][d] */
    float **wq, **wk, **wv, **wo, **wg, **wu, **wd;   /* [L][out*in] row-major [out][in] */
    float **bq, **bk, **bv;   /* qwen2: [L][out] biases; NULL for llama */
    float *out;               /* qwen2: [vocab][d] output matrix; llama: == embd (tied) */
} tiny_weights;

static inline double tiny_rand(uint64_t *s) {   /* uniform in [-1, 1) */
    *s = *s * 6364136223846793005ull + 1442695040888963407ull;
    return (double)(*s >> 11) * 0x1.0p-53 * 2.0 - 1.0;
}

static inline float *tiny_fill(size_t n, double scale, double offset, uint64_t *s) {
    float *p = malloc(n * sizeof(float));
    for (size_t i = 0; i < n; i++) p[i] = (float)(offset + scale * tiny_rand(s));
    return p;
}

static inline tiny_weights tiny_make(tiny_cfg c, uint64_t seed) {
    tiny_weights w;
    w.c = c;
    w.hd = c.n_embd / c.n_head;
    int d = c.n_embd, nq = c.n_head * w.hd, nkv = c.n_kv * w.hd;
    uint64_t s = seed;
    w.embd = tiny_fill((size_t)c.n_vocab * d, 1.0, 0, &s);
    w.out_norm = tiny_fill((size_t)d, 0.2, 1.0, &s);
    w.an = malloc(sizeof(float *) * c.n_layer); w.fn = malloc(sizeof(float *) * c.n_layer);
    w.wq = malloc(sizeof(float *) * c.n_layer); w.wk = malloc(sizeof(float *) * c.n_layer);
    w.wv = malloc(sizeof(float *) * c.n_layer); w.wo = malloc(sizeof(float *) * c.n_layer);
    w.wg = malloc(sizeof(float *) * c.n_layer); w.wu = malloc(sizeof(float *) * c.n_layer);
    w.wd = malloc(sizeof(float *) * c.n_layer);
    for (int l = 0; l < c.n_layer; l++) {
        double sd = 1.0 / sqrt((double)d), sf = 1.0 / sqrt((double)c.n_ff);
        w.an[l] = tiny_fill((size_t)d, 0.2, 1.0, &s);
        w.fn[l] = tiny_fill((size_t)d, 0.2, 1.0, &s);
        w.wq[l] = tiny_fill((size_t)nq * d, 2.5 * sd, 0, &s);   /* peaked attention */
        w.wk[l] = tiny_fill((size_t)nkv * d, 2.5 * sd, 0, &s);
        w.wv[l] = tiny_fill((size_t)nkv * d, sd, 0, &s);
        w.wo[l] = tiny_fill((size_t)d * nq, sd, 0, &s);
        w.wg[l] = tiny_fill((size_t)c.n_ff * d, sd, 0, &s);
        w.wu[l] = tiny_fill((size_t)c.n_ff * d, sd, 0, &s);
        w.wd[l] = tiny_fill((size_t)d * c.n_ff, sf, 0, &s);
    }
    w.bq = w.bk = w.bv = NULL;
    w.out = w.embd;
    if (c.qwen2) {   /* drawn after the llama weights: the same seed gives the same rest */
        w.bq = malloc(sizeof(float *) * c.n_layer); w.bk = malloc(sizeof(float *) * c.n_layer);
        w.bv = malloc(sizeof(float *) * c.n_layer);
        for (int l = 0; l < c.n_layer; l++) {
            w.bq[l] = tiny_fill((size_t)nq, 0.5, 0, &s);
            w.bk[l] = tiny_fill((size_t)nkv, 0.5, 0, &s);
            w.bv[l] = tiny_fill((size_t)nkv, 0.5, 0, &s);
        }
        w.out = tiny_fill((size_t)c.n_vocab * d, 1.0, 0, &s);
    }
    return w;
}

static inline void tiny_free(tiny_weights *w) {
    for (int l = 0; l < w->c.n_layer; l++) {
        free(w->an[l]); free(w->fn[l]); free(w->wq[l]); free(w->wk[l]); free(w->wv[l]);
        free(w->wo[l]); free(w->wg[l]); free(w->wu[l]); free(w->wd[l]);
    }
    free(w->an); free(w->fn); free(w->wq); free(w->wk); free(w->wv); free(w->wo);
    free(w->wg); free(w->wu); free(w->wd); free(w->embd); free(w->out_norm);
    if (w->bq) {
        for (int l = 0; l < w->c.n_layer; l++) { free(w->bq[l]); free(w->bk[l]); free(w->bv[l]); }
        free(w->bq); free(w->bk); free(w->bv);
        free(w->out);
    }
}

/* A matrix stored as raw ggml blocks instead of the F32 weights (tests of quantised types):
 * its ggml type and bytes; data NULL keeps the F32 weights. */
typedef struct { uint32_t type; const void *data; size_t n_bytes; } tiny_raw;
enum { TINY_RAW_EMBD = 0, TINY_RAW_OUT = 1, TINY_RAW_LAYER = 2 };   /* + 7 l + (q k v o gate up down) */

/* The GGUF image of the weights (tensor ne = [in, out]); raw (NULL, or 2 + 7 n_layer entries
 * indexed as above; qwen2's out only) replaces matrices by raw blocks. */
static inline gbuf tiny_gguf_raw(const tiny_weights *w, const tiny_raw *raw) {
    const tiny_cfg *c = &w->c;
    int d = c->n_embd, nq = c->n_head * w->hd, nkv = c->n_kv * w->hd;
    gbuf k = {0};
    const char *a = c->qwen2 ? "qwen2" : "llama";
    char key[96];
#define KEY(suffix) (snprintf(key, sizeof key, "%s." suffix, a), key)
    kv_str(&k, "general.architecture", a);
    kv_u32(&k, KEY("block_count"), (uint32_t)c->n_layer);
    kv_u32(&k, KEY("context_length"), (uint32_t)c->n_ctx);
    kv_u32(&k, KEY("embedding_length"), (uint32_t)d);
    kv_u32(&k, KEY("feed_forward_length"), (uint32_t)c->n_ff);
    kv_u32(&k, KEY("attention.head_count"), (uint32_t)c->n_head);
    kv_u32(&k, KEY("attention.head_count_kv"), (uint32_t)c->n_kv);
    kv_f32(&k, KEY("rope.freq_base"), c->rope_base);
    kv_f32(&k, KEY("attention.layer_norm_rms_epsilon"), c->eps);
#undef KEY
    int nt = 2 + 9 * c->n_layer + (c->qwen2 ? 1 + 3 * c->n_layer : 0);
    gtensor *ts = calloc((size_t)nt, sizeof *ts);
    char (*names)[64] = calloc((size_t)nt, 64);
    int t = 0;
#define T1(nm, ptr, n0) do { snprintf(names[t], 64, "%s", nm); ts[t] = (gtensor){names[t], 1, {(uint64_t)(n0), 1, 1, 1}, 0, ptr, (size_t)(n0) * 4}; t++; } while (0)
#define T2(nm, ptr, n0, n1) do { snprintf(names[t], 64, "%s", nm); ts[t] = (gtensor){names[t], 2, {(uint64_t)(n0), (uint64_t)(n1), 1, 1}, 0, ptr, (size_t)(n0) * (size_t)(n1) * 4}; t++; } while (0)
#define RAW(i) do { if (raw && raw[i].data) { ts[t - 1].type = raw[i].type; ts[t - 1].data = raw[i].data; ts[t - 1].n_bytes = raw[i].n_bytes; } } while (0)
    T2("token_embd.weight", w->embd, d, c->n_vocab); RAW(TINY_RAW_EMBD);
    T1("output_norm.weight", w->out_norm, d);
    if (c->qwen2) { T2("output.weight", w->out, d, c->n_vocab); RAW(TINY_RAW_OUT); }
    for (int l = 0; l < c->n_layer; l++) {
        char nm[64];
        snprintf(nm, 64, "blk.%d.attn_norm.weight", l); T1(nm, w->an[l], d);
        snprintf(nm, 64, "blk.%d.ffn_norm.weight", l); T1(nm, w->fn[l], d);
        const int r = TINY_RAW_LAYER + 7 * l;
        snprintf(nm, 64, "blk.%d.attn_q.weight", l); T2(nm, w->wq[l], d, nq); RAW(r);
        snprintf(nm, 64, "blk.%d.attn_k.weight", l); T2(nm, w->wk[l], d, nkv); RAW(r + 1);
        snprintf(nm, 64, "blk.%d.attn_v.weight", l); T2(nm, w->wv[l], d, nkv); RAW(r + 2);
        snprintf(nm, 64, "blk.%d.attn_output.weight", l); T2(nm, w->wo[l], nq, d); RAW(r + 3);
        snprintf(nm, 64, "blk.%d.ffn_gate.weight", l); T2(nm, w->wg[l], d, c->n_ff); RAW(r + 4);
        snprintf(nm, 64, "blk.%d.ffn_up.weight", l); T2(nm, w->wu[l], d, c->n_ff); RAW(r + 5);
        snprintf(nm, 64, "blk.%d.ffn_down.weight", l); T2(nm, w->wd[l], c->n_ff, d); RAW(r + 6);
        if (c->qwen2) {
            snprintf(nm, 64, "blk.%d.attn_q.bias", l); T1(nm, w->bq[l], nq);
            snprintf(nm, 64, "blk.%d.attn_k.bias", l); T1(nm, w->bk[l], nkv);
            snprintf(nm, 64, "blk.%d.attn_v.bias", l); T1(nm, w->bv[l], nkv);
        }
    }
#undef T1
#undef T2
#undef RAW
    gbuf g = gguf_build(3, &k, 9, ts, (uint64_t)nt, 32);
    free(ts); free(names); free(k.b);
    return g;
}
static inline gbuf tiny_gguf(const tiny_weights *w) { return tiny_gguf_raw(w, NULL); }

/* Writes a random tiny model (cfg, seed) as a GGUF file; returns 0 on success. */
static inline int tiny_write_file(tiny_cfg cfg, uint64_t seed, const char *path) {
    tiny_weights w = tiny_make(cfg, seed);
    gbuf img = tiny_gguf(&w);
    FILE *fp = fopen(path, "wb");
    int ok = fp && fwrite(img.b, 1, img.n, fp) == img.n;
    if (fp && fclose(fp) != 0) ok = 0;
    free(img.b);
    tiny_free(&w);
    return ok ? 0 : -1;
}

/* ---- double-precision reference forward -------------------------------------------- */
/* Masks every entry (i, i - dist) with i - dist >= min_j of one head, by interpolating each
 * affected row's probabilities between unmasked (t = 0) and masked-and-renormalised (t = 1):
 *   p_j(t) = P_j (1 - t),  p_k(t) = P_k (1 + t P_j / (1 - P_j))  (k != j)
 * so O_i(t) = O_i + t * dO_i with dO_i the exact change of full masking, and dL/dt at t = 0
 * is the first-order influence E of the entry. */
typedef struct {
    int layer, head;
    int dist, min_j;
    double t;
} tiny_mask;

static inline void tiny_rmsnorm(const double *x, const float *w, double *y, int d, double eps) {
    double ss = 0;
    for (int i = 0; i < d; i++) ss += x[i] * x[i];
    double r = 1.0 / sqrt(ss / d + eps);
    for (int i = 0; i < d; i++) y[i] = x[i] * r * w[i];
}

static inline void tiny_matvec(const float *W, const double *x, double *y, int n_out, int n_in) {
    for (int o = 0; o < n_out; o++) {
        double s = 0;
        for (int i = 0; i < n_in; i++) s += (double)W[(size_t)o * n_in + i] * x[i];
        y[o] = s;
    }
}

/* neox 0: pairs (x[2i], x[2i+1]); 1: pairs (x[i], x[i + hd/2]). */
static inline void tiny_rope(double *x, int n_heads, int hd, int pos, double base, int neox) {
    for (int h = 0; h < n_heads; h++)
        for (int i = 0; i < hd / 2; i++) {
            double th = pos * pow(base, -2.0 * i / hd);
            double *p0 = x + h * hd + (neox ? i : 2 * i), *p1 = neox ? p0 + hd / 2 : p0 + 1;
            double x0 = *p0, x1 = *p1;
            *p0 = x0 * cos(th) - x1 * sin(th);
            *p1 = x0 * sin(th) + x1 * cos(th);
        }
}

static inline void tiny_add(double *y, const float *b, int n) {
    if (b)
        for (int i = 0; i < n; i++) y[i] += b[i];
}

/* Mean cross-entropy of tokens 1..n-1 from an engine's logits [n][V] (what tiny_loss computes
 * in double from the weights). */
static inline double tiny_logits_ce(const float *lg, const int32_t *tok, int n, int V) {
    double loss = 0;
    for (int i = 0; i < n - 1; i++) {
        const float *r = lg + (size_t)i * V;
        double mx = r[0], s = 0;
        for (int v = 1; v < V; v++) mx = r[v] > mx ? r[v] : mx;
        for (int v = 0; v < V; v++) s += exp(r[v] - mx);
        loss += mx + log(s) - r[tok[i + 1]];
    }
    return loss / (n - 1);
}

/* Tests set this to 1 to run the reference with the other RoPE pairing (a control: what a
 * pairing mistake would give). */
static int tiny_rope_flip;

/* Largest unmasked probability of a masked entry in the last tiny_loss call. */
static double tiny_masked_maxp;

/* Mean cross-entropy over tokens[rb..re) given input embeddings x0 [n][d] (double). */
static inline double tiny_loss(const tiny_weights *w, const double *x0, const int32_t *tokens, int n,
                        int rb, int re, const tiny_mask *mask) {
    const tiny_cfg *c = &w->c;
    int d = c->n_embd, hd = w->hd, nq = c->n_head * hd, nkv = c->n_kv * hd, ff = c->n_ff;
    int grp = c->n_head / c->n_kv;
    double *x = malloc(sizeof(double) * (size_t)n * d), *h = malloc(sizeof(double) * d);
    double *q = malloc(sizeof(double) * (size_t)n * nq), *k = malloc(sizeof(double) * (size_t)n * nkv);
    double *v = malloc(sizeof(double) * (size_t)n * nkv), *o = malloc(sizeof(double) * (size_t)n * nq);
    double *g = malloc(sizeof(double) * ff), *u = malloc(sizeof(double) * ff), *t = malloc(sizeof(double) * (d > nq ? d : nq));
    double *p = malloc(sizeof(double) * n);
    tiny_masked_maxp = 0;
    memcpy(x, x0, sizeof(double) * (size_t)n * d);
    for (int l = 0; l < c->n_layer; l++) {
        for (int i = 0; i < n; i++) {
            tiny_rmsnorm(x + (size_t)i * d, w->an[l], h, d, c->eps);
            tiny_matvec(w->wq[l], h, q + (size_t)i * nq, nq, d);
            tiny_matvec(w->wk[l], h, k + (size_t)i * nkv, nkv, d);
            tiny_matvec(w->wv[l], h, v + (size_t)i * nkv, nkv, d);
            if (c->qwen2) {
                tiny_add(q + (size_t)i * nq, w->bq[l], nq);
                tiny_add(k + (size_t)i * nkv, w->bk[l], nkv);
                tiny_add(v + (size_t)i * nkv, w->bv[l], nkv);
            }
            tiny_rope(q + (size_t)i * nq, c->n_head, hd, i, c->rope_base, c->qwen2 ^ tiny_rope_flip);
            tiny_rope(k + (size_t)i * nkv, c->n_kv, hd, i, c->rope_base, c->qwen2 ^ tiny_rope_flip);
        }
        for (int hh = 0; hh < c->n_head; hh++) {
            int kh = hh / grp;
            for (int i = 0; i < n; i++) {
                double mx = -1e300, sum = 0, full = 0;
                int mj = -1;
                for (int j = 0; j <= i; j++) {
                    double s = 0;
                    for (int e = 0; e < hd; e++) s += q[(size_t)i * nq + hh * hd + e] * k[(size_t)j * nkv + kh * hd + e];
                    p[j] = s / sqrt((double)hd);
                    if (p[j] > mx) mx = p[j];
                    if (mask && mask->layer == l && mask->head == hh && i - j == mask->dist && j >= mask->min_j) mj = j;
                }
                for (int j = 0; j <= i; j++) { p[j] = exp(p[j] - mx); full += p[j]; }
                for (int j = 0; j <= i; j++) p[j] /= full;
                sum = 1;
                if (mj >= 0) {
                    double pj = p[mj];
                    if (pj > tiny_masked_maxp) tiny_masked_maxp = pj;
                    for (int j = 0; j <= i; j++) p[j] *= j == mj ? 1 - mask->t : 1 + mask->t * pj / (1 - pj);
                }
                for (int e = 0; e < hd; e++) {
                    double s = 0;
                    for (int j = 0; j <= i; j++) s += p[j] / sum * v[(size_t)j * nkv + kh * hd + e];
                    o[(size_t)i * nq + hh * hd + e] = s;
                }
            }
        }
        for (int i = 0; i < n; i++) {
            double *xi = x + (size_t)i * d;
            tiny_matvec(w->wo[l], o + (size_t)i * nq, t, d, nq);
            for (int e = 0; e < d; e++) xi[e] += t[e];
            tiny_rmsnorm(xi, w->fn[l], h, d, c->eps);
            tiny_matvec(w->wg[l], h, g, ff, d);
            tiny_matvec(w->wu[l], h, u, ff, d);
            for (int e = 0; e < ff; e++) g[e] = g[e] / (1 + exp(-g[e])) * u[e];
            tiny_matvec(w->wd[l], g, t, d, ff);
            for (int e = 0; e < d; e++) xi[e] += t[e];
        }
    }
    double loss = 0;
    double *lg = malloc(sizeof(double) * c->n_vocab);
    for (int i = rb - 1; i < re - 1; i++) {
        tiny_rmsnorm(x + (size_t)i * d, w->out_norm, h, d, c->eps);
        tiny_matvec(w->out, h, lg, c->n_vocab, d);
        double mx = lg[0], s = 0;
        for (int e = 1; e < c->n_vocab; e++) mx = lg[e] > mx ? lg[e] : mx;
        for (int e = 0; e < c->n_vocab; e++) s += exp(lg[e] - mx);
        loss += mx + log(s) - lg[tokens[i + 1]];
    }
    free(lg); free(x); free(h); free(q); free(k); free(v); free(o); free(g); free(u); free(t); free(p);
    return loss / (re - rb);
}

#endif
