/* llama.c - load the weights of a Llama-family architecture (arch.h) from a GGUF file and
 * validate them against the hyperparameters; batched weight products. */
#include "moa/model.h"
#include "arch.h"
#include "moa/common.h"
#include "device-engine.h"

#include <stdlib.h>
#include <string.h>

moa_model_params moa_model_default_params(void) {
    moa_model_params p;
    p.f32_weights = -1;
    p.max_f32_bytes = (size_t)4 << 30;
    p.compute_sha256 = 1;
    p.int8_pack = 1;
    return p;
}

static moa_status get_hp_u32(const moa_gguf *g, const char *arch, const char *suffix, int32_t *out,
                             int required, int32_t def) {
    char key[128];
    snprintf(key, sizeof key, "%s.%s", arch, suffix);
    if (moa_gguf_find_key(g, key) < 0) {
        if (required) return moa_err(MOA_ERR_FORMAT, "%s: metadata key '%s' is missing", moa_gguf_path(g), key);
        *out = def;
        return MOA_OK;
    }
    uint32_t v;
    MOA_TRY(moa_gguf_get_u32(g, key, &v));
    if (v == 0 || v > (1u << 24))
        return moa_err(MOA_ERR_FORMAT, "%s: metadata key '%s' = %u is out of range (1..2^24)", moa_gguf_path(g), key, v);
    *out = (int32_t)v;
    return MOA_OK;
}

static moa_status get_hp_f32(const moa_gguf *g, const char *arch, const char *suffix, float *out,
                             float def) {
    char key[128];
    snprintf(key, sizeof key, "%s.%s", arch, suffix);
    if (moa_gguf_find_key(g, key) < 0) { *out = def; return MOA_OK; }
    return moa_gguf_get_f32(g, key, out);
}

/* A 2-D weight [n_out][n_in] (ggml ne = [n_in, n_out]). */
static moa_status bind_weight(const moa_gguf *g, const char *name, int64_t n_in, int64_t n_out,
                              moa_weight *w) {
    const moa_gguf_tensor *t = moa_gguf_find_tensor(g, name);
    if (!t) return moa_err(MOA_ERR_FORMAT, "%s: tensor '%s' is missing", moa_gguf_path(g), name);
    if (t->n_dims != 2 || (int64_t)t->ne[0] != n_in || (int64_t)t->ne[1] != n_out)
        return moa_err(MOA_ERR_FORMAT, "%s: tensor '%s' has shape [%llu, %llu] (n_dims %u), expected [%lld, %lld]",
                       moa_gguf_path(g), name, (unsigned long long)t->ne[0],
                       (unsigned long long)(t->n_dims > 1 ? t->ne[1] : 1), t->n_dims,
                       (long long)n_in, (long long)n_out);
    w->type = t->type;
    w->data = moa_gguf_tensor_data(g, t);
    w->n_in = n_in;
    w->n_out = n_out;
    w->f32 = NULL;
    w->pack = NULL;
    w->bias = NULL;
    return MOA_OK;
}

/* A 1-D f32 vector of n values (dequantised copy). An optional vector that the file lacks
 * leaves *out NULL. */
static moa_status bind_vector_need(const moa_gguf *g, const char *name, int64_t n, moa_tensor_need need,
                                   float **out) {
    *out = NULL;
    if (need == MOA_TENSOR_ABSENT) return MOA_OK;
    const moa_gguf_tensor *t = moa_gguf_find_tensor(g, name);
    if (!t && need == MOA_TENSOR_OPTIONAL) return MOA_OK;
    if (!t) return moa_err(MOA_ERR_FORMAT, "%s: tensor '%s' is missing", moa_gguf_path(g), name);
    if (t->n_dims != 1 || (int64_t)t->ne[0] != n)
        return moa_err(MOA_ERR_FORMAT, "%s: tensor '%s' has %llu elements in %u dims, expected a vector of %lld",
                       moa_gguf_path(g), name, (unsigned long long)t->n_elements, t->n_dims, (long long)n);
    uint32_t be;
    moa_ggml_type_info(t->type, &be, NULL);
    if (n % be) return moa_err(MOA_ERR_FORMAT, "%s: tensor '%s': bad block size", moa_gguf_path(g), name);
    float *v = moa_alloc_aligned((size_t)n, sizeof(float));
    if (!v) return moa_err(MOA_ERR_NOMEM, "out of memory");
    moa_dequant_row(t->type, moa_gguf_tensor_data(g, t), v, n);
    *out = v;
    return MOA_OK;
}

static moa_status bind_vector(const moa_gguf *g, const char *name, int64_t n, float **out) {
    return bind_vector_need(g, name, n, MOA_TENSOR_REQUIRED, out);
}

static moa_status make_f32(moa_weight *w) {
    if (w->f32) return MOA_OK;
    w->f32 = moa_alloc_aligned((size_t)(w->n_in * w->n_out), sizeof(float));
    if (!w->f32) return moa_err(MOA_ERR_NOMEM, "out of memory for f32 weights");
    size_t rb = moa_ggml_row_bytes(w->type, w->n_in);
    const uint8_t *src = w->data;
    #pragma omp parallel for schedule(static)
    for (int64_t o = 0; o < w->n_out; o++)
        moa_dequant_row(w->type, src + (size_t)o * rb, w->f32 + o * w->n_in, w->n_in);
    return MOA_OK;
}

static void free_weight(moa_weight *w) {
    moa_free_aligned(w->f32);
    moa_free_aligned(w->bias);
    moa_qpack_free(w->pack);
    w->f32 = NULL;
    w->bias = NULL;
    w->pack = NULL;
}

void moa_model_free(moa_model *m) {
    if (!m) return;
    const moa_device_engine_ops *dev = moa_device_engine_get(MOA_DEVICE_CUDA);
    if (dev) dev->release_model(m);   /* the device copies of the weights */
    if (m->layers) {
        for (int l = 0; l < m->hp.n_layer; l++) {
            moa_llama_layer *L = &m->layers[l];
            moa_free_aligned(L->attn_norm);
            moa_free_aligned(L->ffn_norm);
            moa_weight *ws[] = {&L->wq, &L->wk, &L->wv, &L->wo, &L->w_gate, &L->w_up, &L->w_down};
            for (size_t i = 0; i < sizeof ws / sizeof ws[0]; i++) free_weight(ws[i]);
        }
        free(m->layers);
    }
    moa_qpack_free(m->output.pack);   /* the head's own, also when tied */
    m->output.pack = NULL;
    if (!m->tied || m->output.f32 != m->tok_embd.f32) free_weight(&m->output);
    free_weight(&m->tok_embd);
    moa_free_aligned(m->output_norm);
    moa_gguf_close(m->gguf);
    free(m);
}

static moa_status load_hparams(const moa_gguf *g, moa_llama_hparams *hp) {
    const char *arch;
    uint64_t alen;
    MOA_TRY(moa_gguf_get_str(g, "general.architecture", &arch, &alen));
    const moa_arch_desc *desc = moa_arch_find(arch);
    if (!desc)
        return moa_err(MOA_ERR_UNSUPPORTED, "%s: architecture '%.64s' is not supported (supported: %s)",
                       moa_gguf_path(g), arch, moa_arch_names());
    snprintf(hp->arch, sizeof hp->arch, "%s", arch);
    hp->desc = desc;
    hp->rope_pairing = desc->rope_pairing;
    MOA_TRY(get_hp_u32(g, arch, "block_count", &hp->n_layer, 1, 0));
    MOA_TRY(get_hp_u32(g, arch, "embedding_length", &hp->n_embd, 1, 0));
    MOA_TRY(get_hp_u32(g, arch, "feed_forward_length", &hp->n_ff, 1, 0));
    MOA_TRY(get_hp_u32(g, arch, "attention.head_count", &hp->n_head, 1, 0));
    MOA_TRY(get_hp_u32(g, arch, "attention.head_count_kv", &hp->n_head_kv, 0, hp->n_head));
    MOA_TRY(get_hp_u32(g, arch, "context_length", &hp->n_ctx_train, 1, 0));
    /* every block needs its tensors: reject counts the file cannot back before allocating */
    if ((int64_t)hp->n_layer > moa_gguf_n_tensors(g) / desc->tensors_per_block)
        return moa_err(MOA_ERR_FORMAT, "%s: %s.block_count = %d but the file has only %lld tensors (%d per block)",
                       moa_gguf_path(g), arch, hp->n_layer, (long long)moa_gguf_n_tensors(g),
                       desc->tensors_per_block);
    if (hp->n_embd % hp->n_head)
        return moa_err(MOA_ERR_FORMAT, "%s: embedding_length %d is not a multiple of head_count %d",
                       moa_gguf_path(g), hp->n_embd, hp->n_head);
    if (hp->n_head % hp->n_head_kv)
        return moa_err(MOA_ERR_FORMAT, "%s: head_count %d is not a multiple of head_count_kv %d",
                       moa_gguf_path(g), hp->n_head, hp->n_head_kv);
    hp->head_dim = hp->n_embd / hp->n_head;
    MOA_TRY(get_hp_u32(g, arch, "rope.dimension_count", &hp->rope_dim, 0, hp->head_dim));
    if (hp->rope_dim > hp->head_dim || hp->rope_dim % 2)
        return moa_err(MOA_ERR_FORMAT, "%s: rope.dimension_count %d must be even and <= head dim %d",
                       moa_gguf_path(g), hp->rope_dim, hp->head_dim);
    MOA_TRY(get_hp_f32(g, arch, "rope.freq_base", &hp->rope_base, 10000.0f));
    MOA_TRY(get_hp_f32(g, arch, "attention.layer_norm_rms_epsilon", &hp->rms_eps, 1e-5f));
    if (!(hp->rope_base > 0) || !(hp->rms_eps > 0) || !(hp->rms_eps < 1))
        return moa_err(MOA_ERR_FORMAT, "%s: rope.freq_base %g / rms epsilon %g out of range",
                       moa_gguf_path(g), hp->rope_base, hp->rms_eps);
    const moa_gguf_tensor *te = moa_gguf_find_tensor(g, "token_embd.weight");
    if (!te) return moa_err(MOA_ERR_FORMAT, "%s: tensor 'token_embd.weight' is missing", moa_gguf_path(g));
    if (te->n_dims != 2 || te->ne[1] > (1u << 24))
        return moa_err(MOA_ERR_FORMAT, "%s: tensor 'token_embd.weight' must be 2-D", moa_gguf_path(g));
    hp->n_vocab = (int32_t)te->ne[1];
    return MOA_OK;
}

moa_status moa_model_from_gguf(moa_gguf *g, const moa_model_params *pp, moa_model **out) {
    *out = NULL;
    moa_model_params p = pp ? *pp : moa_model_default_params();
    moa_model *m = calloc(1, sizeof *m);
    if (!m) { moa_gguf_close(g); return moa_err(MOA_ERR_NOMEM, "out of memory"); }
    m->gguf = g;
    moa_status st = load_hparams(g, &m->hp);
    if (st < 0) goto fail;
    const moa_llama_hparams *hp = &m->hp;
    int64_t d = hp->n_embd, hd = hp->head_dim, nq = (int64_t)hp->n_head * hd, nkv = (int64_t)hp->n_head_kv * hd;
    if ((st = bind_weight(g, "token_embd.weight", d, hp->n_vocab, &m->tok_embd)) < 0) goto fail;
    if (hp->desc->output != MOA_TENSOR_ABSENT && moa_gguf_find_tensor(g, "output.weight")) {
        if ((st = bind_weight(g, "output.weight", d, hp->n_vocab, &m->output)) < 0) goto fail;
    } else {
        m->output = m->tok_embd;
        m->tied = 1;
    }
    if ((st = bind_vector(g, "output_norm.weight", d, &m->output_norm)) < 0) goto fail;
    m->layers = calloc((size_t)hp->n_layer, sizeof *m->layers);
    if (!m->layers) { st = moa_err(MOA_ERR_NOMEM, "out of memory"); goto fail; }
    for (int l = 0; l < hp->n_layer; l++) {
        moa_llama_layer *L = &m->layers[l];
        char name[96];
#define W(field, nm, nin, nout) \
        snprintf(name, sizeof name, "blk.%d." nm ".weight", l); \
        if ((st = bind_weight(g, name, nin, nout, &L->field)) < 0) goto fail;
#define V(field, nm) \
        snprintf(name, sizeof name, "blk.%d." nm ".weight", l); \
        if ((st = bind_vector(g, name, d, &L->field)) < 0) goto fail;
        V(attn_norm, "attn_norm");
        V(ffn_norm, "ffn_norm");
        W(wq, "attn_q", d, nq);
        W(wk, "attn_k", d, nkv);
        W(wv, "attn_v", d, nkv);
        W(wo, "attn_output", nq, d);
        W(w_gate, "ffn_gate", d, hp->n_ff);
        W(w_up, "ffn_up", d, hp->n_ff);
        W(w_down, "ffn_down", hp->n_ff, d);
#define B(field, nm, len) \
        snprintf(name, sizeof name, "blk.%d." nm ".bias", l); \
        if ((st = bind_vector_need(g, name, len, hp->desc->qkv_bias, &L->field)) < 0) goto fail;
        B(wq.bias, "attn_q", nq);
        B(wk.bias, "attn_k", nkv);
        B(wv.bias, "attn_v", nkv);
#undef B
#undef W
#undef V
    }
    /* f32 copies of the block matrices and the head for batched BLAS products */
    size_t f32 = 0;
    for (int l = 0; l < hp->n_layer; l++)
        f32 += (size_t)(2 * nq * d + 2 * nkv * d + 3 * hp->n_ff * d) * sizeof(float);
    f32 += (size_t)hp->n_vocab * (size_t)d * sizeof(float);
    if (p.int8_pack) {   /* NULL where the CPU or the type has no packed kernel */
        for (int l = 0; l < hp->n_layer; l++) {
            moa_llama_layer *L = &m->layers[l];
            moa_weight *ws[] = {&L->wq, &L->wk, &L->wv, &L->wo, &L->w_gate, &L->w_up, &L->w_down};
            for (size_t i = 0; i < sizeof ws / sizeof ws[0]; i++)
                ws[i]->pack = moa_qpack_create(ws[i]->type, ws[i]->data, ws[i]->n_out, ws[i]->n_in);
        }
        m->output.pack = moa_qpack_create(m->output.type, m->output.data, m->output.n_out, m->output.n_in);
    }
    /* auto: only if some matrix's batched product would use them (sgemm on this CPU, not the
     * int8 path of moa/quant.h) */
    int sgemm = strcmp(moa_matmul_q_batch_path(m->output.type), "sgemm") == 0;
    for (int l = 0; l < hp->n_layer && !sgemm; l++) {
        const moa_llama_layer *L = &m->layers[l];
        const moa_weight *ws[] = {&L->wq, &L->wk, &L->wv, &L->wo, &L->w_gate, &L->w_up, &L->w_down};
        for (size_t i = 0; i < sizeof ws / sizeof ws[0]; i++)
            if (strcmp(moa_matmul_q_batch_path(ws[i]->type), "sgemm") == 0) sgemm = 1;
    }
    int want = p.f32_weights > 0 || (p.f32_weights < 0 && sgemm && f32 <= p.max_f32_bytes);
    if (want) {
        for (int l = 0; l < hp->n_layer; l++) {
            moa_llama_layer *L = &m->layers[l];
            moa_weight *ws[] = {&L->wq, &L->wk, &L->wv, &L->wo, &L->w_gate, &L->w_up, &L->w_down};
            for (size_t i = 0; i < sizeof ws / sizeof ws[0]; i++)
                if ((st = make_f32(ws[i])) < 0) goto fail;
        }
        if ((st = make_f32(&m->output)) < 0) goto fail;
        if (m->tied) m->tok_embd.f32 = m->output.f32;
        m->f32_bytes = f32;
    }
    if (p.compute_sha256 && (st = moa_sha256_file(moa_gguf_path(g), m->sha256)) < 0) goto fail;
    *out = m;
    return MOA_OK;
fail:
    moa_model_free(m);
    return st;
}

moa_status moa_model_load(const char *path, const moa_model_params *p, moa_model **out) {
    moa_gguf *g;
    *out = NULL;
    MOA_TRY(moa_gguf_open(path, &g));
    return moa_model_from_gguf(g, p, out);
}

