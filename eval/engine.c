/* engine.c - the real model side of eval: attention settings (dense / uniform / plan), one
 * engine context per LongEval length (planned context = length + max_new), and the
 * teacher-forced response loss of a calib.h5 under an attention setting. */
#include "eval-internal.h"
#include "moa/model.h"
#include "moa/calib.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

moa_eval_attention moa_eval_attention_default(void) {
    const moa_eval_attention a = {.kind = MOA_EVAL_DENSE, .sink = 64, .block = 64,
                                  .kv_type = MOA_KV_F16};
    return a;
}

static const char *base_name(const char *path) {
    const char *s = strrchr(path, '/');
    return s ? s + 1 : path;
}

char *moa_eval_attention_label(const moa_eval_attention *a) {
    char buf[512];
    switch (a->kind) {
    case MOA_EVAL_UNIFORM:
        if (a->match) snprintf(buf, sizeof buf, "uniform-matched");
        else snprintf(buf, sizeof buf, "uniform-%g", a->density);
        break;
    case MOA_EVAL_PLAN: snprintf(buf, sizeof buf, "plan:%s", a->plan_path ? base_name(a->plan_path) : "(memory)"); break;
    default: snprintf(buf, sizeof buf, "dense"); break;
    }
    return moa_strdup(buf);
}

static moa_status check_attention(const moa_eval_attention *a) {
    if (!a) return moa_err(MOA_ERR_INVALID_ARG, "attention setting is NULL");
    switch (a->kind) {
    case MOA_EVAL_DENSE: return MOA_OK;
    case MOA_EVAL_UNIFORM:
        if (!(a->density > 0 && a->density <= 1) || a->sink < 0 || a->block < 1)
            return moa_err(MOA_ERR_INVALID_ARG, "uniform attention: density %g must be in (0, 1], sink >= 0, "
                           "block >= 1", a->density);
        return MOA_OK;
    case MOA_EVAL_PLAN:
        /* checked against the model where each context is created (moa_ctx_create), which
         * the first length does before any prompt runs */
        if (!a->plan) return moa_err(MOA_ERR_INVALID_ARG, "plan attention without a plan");
        return MOA_OK;
    }
    return moa_err(MOA_ERR_INVALID_ARG, "unknown attention kind %d", (int)a->kind);
}

/* The plan to use at planned length n: a->plan, a fresh uniform plan (*owned), or NULL. */
static moa_status plan_at(const moa_model *m, const moa_eval_attention *a, int64_t n, const moa_plan **plan,
                          moa_plan **owned) {
    *owned = NULL;
    *plan = NULL;
    if (a->kind == MOA_EVAL_PLAN) *plan = a->plan;
    if (a->kind == MOA_EVAL_UNIFORM) {
        double d = a->match ? moa_plan_density(a->match, n) : a->density;
        MOA_TRY(moa_plan_uniform(m->hp.n_layer, m->hp.n_head, m->hp.n_head_kv, m->hp.head_dim, a->sink,
                                 a->block, d, n, owned));
        *plan = *owned;
    }
    return MOA_OK;
}

static json_t *attention_json(const moa_eval_attention *a) {
    switch (a->kind) {
    case MOA_EVAL_UNIFORM:
        if (a->match)
            return json_pack("{s:s, s:s, s:i, s:i}", "kind", "uniform", "density", "matched to the plan", "sink",
                             a->sink, "block", a->block);
        return json_pack("{s:s, s:f, s:i, s:i}", "kind", "uniform", "density", a->density, "sink", a->sink,
                         "block", a->block);
    case MOA_EVAL_PLAN: {
        char hex[65] = "";
        if (a->plan_path && moa_sha256_file(a->plan_path, hex) < 0) hex[0] = '\0';
        /* no file: the sha256 of the file the plan would be saved as */
        if (!hex[0] && moa_plan_sha256(a->plan, 0, hex) < 0) hex[0] = '\0';
        return json_pack("{s:s, s:s, s:s}", "kind", "plan", "file", a->plan_path ? base_name(a->plan_path) : "",
                         "sha256", hex);
    }
    default: return json_pack("{s:s}", "kind", "dense");
    }
}

/* ---- the engine ---------------------------------------------------------------------------- */
struct moa_eval_engine {
    const moa_model *m;
    const moa_tokenizer *tok;
    moa_eval_attention attn;
    moa_plan *owned;           /* uniform plan of the current length */
    moa_model_io io;           /* io.ctx: the current length's context */
    char *settings;
};

void moa_eval_engine_free(moa_eval_engine *e) {
    if (!e) return;
    moa_ctx_free(e->io.ctx);
    moa_plan_free(e->owned);
    free(e->settings);
    free(e);
}

moa_status moa_eval_engine_create(const moa_model *m, const moa_tokenizer *tok, const moa_eval_attention *a,
                                  int chat, moa_eval_engine **out) {
    if (!m || !tok || !out) return moa_err(MOA_ERR_INVALID_ARG, "moa_eval_engine_create: NULL argument");
    *out = NULL;
    MOA_TRY(check_attention(a));
    moa_eval_engine *e = calloc(1, sizeof *e);
    if (!e) return moa_err(MOA_ERR_NOMEM, "out of memory");
    e->m = m;
    e->tok = tok;
    e->attn = *a;
    e->io.tok = tok;
    e->io.chat = chat;
    const char *tmpl = NULL;
    moa_gguf_get_str(m->gguf, "tokenizer.chat_template", &tmpl, NULL);
    char hex[65];
    uint8_t d[32];
    moa_sha256_ctx c;
    moa_sha256_init(&c);
    moa_sha256_update(&c, tmpl ? tmpl : "", tmpl ? strlen(tmpl) : 0);
    moa_sha256_final(&c, d);
    moa_sha256_hex(d, hex);
    json_t *o = json_pack("{s:s, s:s, s:i, s:b, s:s, s:o}", "model_sha256", m->sha256, "tokenizer",
                          moa_tokenizer_pre(tok), "n_ctx_train", m->hp.n_ctx_train, "chat", chat,
                          "chat_template_sha256", hex, "attention", attention_json(a));
    e->settings = o ? json_dumps(o, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
    json_decref(o);
    if (!e->settings) { moa_eval_engine_free(e); return moa_err(MOA_ERR_NOMEM, "out of memory"); }
    *out = e;
    return MOA_OK;
}

const char *moa_eval_engine_settings(const moa_eval_engine *e) { return e->settings; }

static moa_status engine_begin_length(void *data, int length, int n_ctx) {
    moa_eval_engine *e = data;
    if (n_ctx > e->m->hp.n_ctx_train)
        return moa_err(MOA_ERR_RANGE, "length %d + %d new tokens = %d exceeds the model's context of %d "
                       "tokens; use lengths up to %d", length, n_ctx - length, n_ctx, e->m->hp.n_ctx_train,
                       e->m->hp.n_ctx_train - (n_ctx - length));
    moa_ctx_free(e->io.ctx);
    e->io.ctx = NULL;
    moa_plan_free(e->owned);
    e->owned = NULL;
    const moa_plan *plan = NULL;
    MOA_TRY(plan_at(e->m, &e->attn, n_ctx, &plan, &e->owned));
    moa_ctx_params cp = moa_ctx_default_params();
    cp.n_ctx = n_ctx;
    cp.plan = plan;
    cp.kv_type = e->attn.kv_type;
    MOA_TRY(moa_ctx_create(e->m, &cp, &e->io.ctx));
    if (plan)
        moa_log_debug("eval: length %d, planned context %d, plan density %.3f", length, n_ctx,
                      moa_plan_density(plan, n_ctx));
    return MOA_OK;
}

static moa_status engine_respond(void *data, const int32_t *prompt, int n_prompt, int max_new, int32_t **out,
                                 int *n_out) {
    moa_eval_engine *e = data;
    if (!e->io.ctx) return moa_err(MOA_ERR_INVALID_ARG, "eval engine: respond before begin_length");
    if (n_prompt + max_new > moa_ctx_n_ctx(e->io.ctx))
        return moa_err(MOA_ERR_RANGE, "prompt of %d tokens + %d new does not fit the planned context %d",
                       n_prompt, max_new, moa_ctx_n_ctx(e->io.ctx));
    return moa_model_io_respond(&e->io, prompt, n_prompt, max_new, out, n_out);
}

moa_eval_model moa_eval_engine_model(moa_eval_engine *e) {
    const moa_eval_model em = {.tok = moa_model_io_tokenizer(&e->io),
                               .begin_length = engine_begin_length, .respond = engine_respond,
                               .data = e};
    return em;
}

/* ---- response loss ------------------------------------------------------------------------- */
void moa_eval_loss_clear(moa_eval_loss *l) {
    if (!l) return;
    MOA_FREE_ALL(l->buckets, l->bucket_samples, l->bucket_tokens, l->bucket_ce);
    memset(l, 0, sizeof *l);
}

/* Sum of -log softmax(row)[target] over rows. */
static double ce_sum(const float *logits, int n_rows, int n_vocab, const int32_t *targets) {
    double total = 0;
    for (int r = 0; r < n_rows; r++) {
        const float *x = logits + (size_t)r * n_vocab;
        double mx = x[0];
        for (int v = 1; v < n_vocab; v++)
            if (x[v] > mx) mx = x[v];
        double s = 0;
        for (int v = 0; v < n_vocab; v++) s += exp((double)x[v] - mx);
        total += mx + log(s) - (double)x[targets[r]];
    }
    return total;
}

moa_status moa_eval_response_loss(const moa_model *m, const moa_eval_attention *a, const moa_calib_file *f,
                                  int bucket, moa_progress_fn progress, void *progress_data,
                                  moa_eval_loss *out) {
    if (!m || !f || !out) return moa_err(MOA_ERR_INVALID_ARG, "moa_eval_response_loss: NULL argument");
    memset(out, 0, sizeof *out);
    MOA_TRY(check_attention(a));
    int nv = m->hp.n_vocab;
    MOA_TRY(moa_calib_check_vocab(f, nv));   /* the last response token is a target only: no forward pass checks it */
    int64_t total = 0, max_resp = 0;
    for (int64_t i = 0; i < f->n_samples; i++) {
        const moa_calib_sample *s = &f->samples[i];
        if (bucket > 0 && s->bucket != bucket) continue;
        if (s->response_start < 1 || s->response_end > s->n_tokens || s->response_end < s->response_start)
            return moa_err(MOA_ERR_FORMAT, "calib sample %lld: bad response span [%d, %d) of %d tokens",
                           (long long)i, s->response_start, s->response_end, s->n_tokens);
        total++;
        if (s->response_end - s->response_start > max_resp) max_resp = s->response_end - s->response_start;
        int seen = 0;
        for (int b = 0; b < out->n_buckets; b++) seen |= out->buckets[b] == s->bucket;
        if (!seen) {
            int *nb = realloc(out->buckets, sizeof(int) * (size_t)(out->n_buckets + 1));
            if (!nb) { moa_eval_loss_clear(out); return moa_err(MOA_ERR_NOMEM, "out of memory"); }
            out->buckets = nb;
            nb[out->n_buckets++] = s->bucket;
        }
    }
    if (total == 0) {
        moa_eval_loss_clear(out);
        if (bucket > 0) return moa_err(MOA_ERR_INVALID_ARG, "no calibration sample in bucket %d", bucket);
        return moa_err(MOA_ERR_INVALID_ARG, "the calibration file has no samples");
    }
    for (int i = 1; i < out->n_buckets; i++)   /* ascending */
        for (int j = i; j > 0 && out->buckets[j - 1] > out->buckets[j]; j--) {
            int t = out->buckets[j];
            out->buckets[j] = out->buckets[j - 1];
            out->buckets[j - 1] = t;
        }
    out->bucket_samples = moa_calloc_array((size_t)out->n_buckets, sizeof(int64_t));
    out->bucket_tokens = moa_calloc_array((size_t)out->n_buckets, sizeof(int64_t));
    out->bucket_ce = moa_calloc_array((size_t)out->n_buckets, sizeof(double));
    float *logits = moa_alloc_array((size_t)(max_resp ? max_resp : 1) * (size_t)nv, sizeof(float));
    if (!out->bucket_samples || !out->bucket_tokens || !out->bucket_ce || !logits) {
        free(logits);
        moa_eval_loss_clear(out);
        return moa_err(MOA_ERR_NOMEM, "out of memory");
    }
    moa_status st = MOA_OK;
    double ce_all = 0, ce_samples = 0, tokens = 0;
    int64_t done = 0, n_scored = 0;
    if (progress) progress(progress_data, 0, (double)total, 0, "tok");
    for (int64_t i = 0; i < f->n_samples; i++) {
        const moa_calib_sample *s = &f->samples[i];
        if (bucket > 0 && s->bucket != bucket) continue;
        int rs = s->response_start, nr = s->response_end - s->response_start;
        int b = 0;
        while (out->buckets[b] != s->bucket) b++;
        if (nr > 0) {
            const moa_plan *plan = NULL;
            moa_plan *owned = NULL;
            moa_ctx *ctx = NULL;
            moa_ctx_params cp = moa_ctx_default_params();
            cp.n_ctx = s->n_tokens;
            cp.kv_type = a->kv_type;
            if ((st = plan_at(m, a, s->n_tokens, &plan, &owned)) >= 0) {
                cp.plan = plan;
                st = moa_ctx_create(m, &cp, &ctx);
            }
            /* tokens[0, rs-1) build the cache; tokens[rs-1, re-1) give the logits of the
             * response tokens tokens[rs, re) (row j predicts token rs + j). */
            if (st >= 0 && rs > 1) st = moa_ctx_eval(ctx, s->tokens, rs - 1, MOA_LOGITS_NONE, NULL);
            if (st >= 0) st = moa_ctx_eval(ctx, s->tokens + rs - 1, nr, MOA_LOGITS_ALL, logits);
            moa_ctx_free(ctx);
            moa_plan_free(owned);
            if (st < 0) {
                st = moa_err_prefix(st, "calib sample %lld (bucket %d)", (long long)i, s->bucket);
                goto out;
            }
            double ce = ce_sum(logits, nr, nv, s->tokens + rs);
            ce_all += ce;
            ce_samples += ce / nr;
            n_scored++;
            out->n_tokens += nr;
            out->bucket_tokens[b] += nr;
            out->bucket_ce[b] += ce;
        }
        out->bucket_samples[b]++;
        out->n_samples++;
        done++;
        tokens += s->response_end;
        if (progress) progress(progress_data, (double)done, (double)total, tokens, "tok");
    }
    out->mean_ce = out->n_tokens ? ce_all / (double)out->n_tokens : 0;
    out->mean_sample_ce = n_scored ? ce_samples / (double)n_scored : 0;
    for (int b = 0; b < out->n_buckets; b++)
        out->bucket_ce[b] = out->bucket_tokens[b] ? out->bucket_ce[b] / (double)out->bucket_tokens[b] : 0;
out:
    free(logits);
    if (st < 0) moa_eval_loss_clear(out);
    return st;
}

moa_status moa_eval_loss_to_json(const moa_eval_loss *l, const char *label, const char *source, char **json) {
    if (!l || !json) return moa_err(MOA_ERR_INVALID_ARG, "moa_eval_loss_to_json: NULL argument");
    *json = NULL;
    json_t *b = json_array();
    json_t *o = json_pack("{s:s, s:s, s:I, s:I, s:f, s:f}", "label", label ? label : "", "calib",
                          source ? source : "", "n_samples", (json_int_t)l->n_samples, "n_tokens",
                          (json_int_t)l->n_tokens, "mean_ce", l->mean_ce, "mean_sample_ce", l->mean_sample_ce);
    if (!b || !o) { json_decref(b); json_decref(o); return moa_err(MOA_ERR_NOMEM, "out of memory"); }
    for (int i = 0; i < l->n_buckets; i++)
        json_array_append_new(b, json_pack("{s:i, s:I, s:I, s:f}", "bucket", l->buckets[i], "n_samples",
                                           (json_int_t)l->bucket_samples[i], "n_tokens",
                                           (json_int_t)l->bucket_tokens[i], "mean_ce", l->bucket_ce[i]));
    json_object_set_new(o, "buckets", b);
    char *s = json_dumps(o, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    json_decref(o);
    if (!s) return moa_err(MOA_ERR_NOMEM, "out of memory");
    size_t n = strlen(s);
    char *t = realloc(s, n + 2);
    if (!t) { free(s); return moa_err(MOA_ERR_NOMEM, "out of memory"); }
    t[n] = '\n';
    t[n + 1] = '\0';
    *json = t;
    return MOA_OK;
}

moa_status moa_longeval_run_model(const moa_model *m, const moa_tokenizer *tok, const moa_eval_attention *a,
                                  const moa_longeval_params *p, moa_progress_fn progress, void *progress_data,
                                  moa_longeval_results **out) {
    if (!p || !out) return moa_err(MOA_ERR_INVALID_ARG, "moa_longeval_run_model: NULL argument");
    *out = NULL;
    moa_eval_engine *e = NULL;
    MOA_TRY(moa_eval_engine_create(m, tok, a, 1, &e));
    char *label = moa_eval_attention_label(a);
    if (!label) { moa_eval_engine_free(e); return moa_err(MOA_ERR_NOMEM, "out of memory"); }
    moa_longeval_params q = *p;
    if (!q.model_settings) q.model_settings = moa_eval_engine_settings(e);
    if (!q.label) q.label = label;
    moa_eval_model em = moa_eval_engine_model(e);
    moa_status st = moa_longeval_run(&q, &em, progress, progress_data, out);
    free(label);
    moa_eval_engine_free(e);
    return st;
}
