/* build.c - the calibration builder: generate + fit each sample, encode it, let the dense
 * model answer, score, checkpoint per sample, and write calib.h5 atomically at the end.
 *
 * Checkpoint file (host byte order; local to one machine):
 *   "MOACKPT1" | u32 params_len | params JSON (must equal this build's build_params)
 *   then records: u32 0x4d4f4152 ("MOAR") | u32 sample index | u64 payload_len | payload |
 *                 32-byte sha256(payload)
 *   payload: i32 n_tokens, prompt_len, response_start, response_end, bucket | u32 seed |
 *            i8 dense_correct | f64 dense_score | 3 strings (u32 len or 0xffffffff for NULL,
 *            bytes): task, expected, params | i32 tokens[n_tokens]
 * A record whose bytes are short or whose hash differs ends the valid part (a torn write);
 * the file is truncated there before appending. */
#include "calib-internal.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define CKPT_MAGIC "MOACKPT1"
#define REC_MAGIC 0x4d4f4152u

moa_calib_build_params moa_calib_build_default_params(void) {
    const moa_calib_build_params p = {.samples_per_length = 10, .max_new_tokens = 128,
                                      .fit = moa_fit_default_params(), .model_sha256 = "",
                                      .tokenizer_id = "", .chat_template = "", .resume = 1};
    return p;
}

static const char *needle_type_name(moa_needle_type t) {
    return t == MOA_NEEDLE_NUMBERS ? "numbers" : t == MOA_NEEDLE_WORDS ? "words" : "uuids";
}

/* The build parameters as canonical JSON: recorded in the file and the checkpoint. */
char *moa_calib_build_params_json(const moa_calib_build_params *p) {
    moa_sb b;
    sb_init(&b);
    sb_puts(&b, "{\"tasks\":[");
    for (int t = 0; t < p->n_tasks; t++) {
        const moa_task_spec *s = &p->tasks[t];
        if (t) sb_putn(&b, ",", 1);
        sb_printf(&b, "{\"task\":\"%s\",\"query_index\":%d,\"position_bin\":%d", moa_task_name(s),
                  s->query_index, s->position_bin);
        if (s->words) {
            sb_puts(&b, ",\"words\":");
            sb_json_str(&b, moa_wordlist_source(s->words));
            sb_printf(&b, ",\"words_count\":%zu,\"words_sha256\":\"%s\"", moa_wordlist_count(s->words),
                      moa_wordlist_sha256(s->words));
        }
        switch (s->kind) {
        case MOA_TASK_LINES: sb_printf(&b, ",\"value_max\":%d", s->lines_value_max); break;
        case MOA_TASK_NEEDLE:
            sb_printf(&b, ",\"needle_type\":\"%s\",\"needle_keys\":%d,\"needle_values\":%d,"
                      "\"needle_queries\":%d,\"haystack\":\"%s\"", needle_type_name(s->needle_type),
                      s->needle_keys, s->needle_values, s->needle_queries,
                      s->haystack_text ? "text" : "noise");
            if (s->haystack_text) {
                uint8_t d[32];
                char hex[65];
                moa_sha256_ctx c;
                moa_sha256_init(&c);
                moa_sha256_update(&c, s->haystack_text, strlen(s->haystack_text));
                moa_sha256_final(&c, d);
                moa_sha256_hex(d, hex);
                sb_printf(&b, ",\"haystack_sha256\":\"%s\"", hex);
            }
            break;
        case MOA_TASK_LONGDEP:
            sb_printf(&b, ",\"people\":%d,\"cities\":%d", s->longdep_people, s->longdep_cities);
            break;
        case MOA_TASK_JSONL:
            if (s->corpus) {
                sb_puts(&b, ",\"source\":");
                sb_json_str(&b, moa_jsonl_source(s->corpus));
                sb_printf(&b, ",\"records\":%zu", moa_jsonl_count(s->corpus));
            }
            break;
        }
        sb_putn(&b, "}", 1);
    }
    sb_puts(&b, "],\"lengths\":[");
    for (int l = 0; l < p->n_lengths; l++) sb_printf(&b, l ? ",%d" : "%d", p->lengths[l]);
    if (p->samples_at) {   /* per-length counts (files without this key have one count) */
        sb_puts(&b, "],\"samples_at\":[");
        for (int l = 0; l < p->n_lengths; l++) sb_printf(&b, l ? ",%d" : "%d", p->samples_at[l]);
        sb_puts(&b, "],\"seed\":");
    } else sb_printf(&b, "],\"samples_per_length\":%d,\"seed\":", p->samples_per_length);
    sb_printf(&b, "%llu,\"max_new_tokens\":%d,"
              "\"tolerance_abs\":%d,\"tolerance_rel\":%.17g,\"max_size\":%lld,\"model_sha256\":",
              (unsigned long long)p->seed, p->max_new_tokens,
              p->fit.tolerance_abs, p->fit.tolerance_rel, (long long)p->fit.max_size);
    sb_json_str(&b, p->model_sha256 ? p->model_sha256 : "");
    sb_puts(&b, ",\"tokenizer\":");
    sb_json_str(&b, p->tokenizer_id ? p->tokenizer_id : "");
    {
        uint8_t d[32];
        char hex[65];
        moa_sha256_ctx c;
        const char *ct = p->chat_template ? p->chat_template : "";
        moa_sha256_init(&c);
        moa_sha256_update(&c, ct, strlen(ct));
        moa_sha256_final(&c, d);
        moa_sha256_hex(d, hex);
        sb_printf(&b, ",\"chat_template_sha256\":\"%s\"}", hex);
    }
    return sb_finish(&b);
}

/* ---- checkpoint records ------------------------------------------------------------------- */
static void put_str(moa_sb *b, const char *s) {
    uint32_t n = s ? (uint32_t)strlen(s) : 0xffffffffu;
    sb_putn(b, (const char *)&n, 4);
    if (s) sb_putn(b, s, n);
}

static moa_status write_record(FILE *fp, int64_t index, const moa_calib_sample *s, const char *path) {
    moa_sb b;
    sb_init(&b);
    int32_t hdr[5] = {s->n_tokens, s->prompt_len, s->response_start, s->response_end, s->bucket};
    sb_putn(&b, (const char *)hdr, sizeof hdr);
    sb_putn(&b, (const char *)&s->seed, 4);
    sb_putn(&b, (const char *)&s->dense_correct, 1);
    sb_putn(&b, (const char *)&s->dense_score, 8);
    put_str(&b, s->task);
    put_str(&b, s->expected);
    put_str(&b, s->params);
    sb_putn(&b, (const char *)s->tokens, (size_t)s->n_tokens * 4);
    if (b.failed) { sb_free(&b); return moa_err(MOA_ERR_NOMEM, "out of memory writing checkpoint"); }
    uint32_t head[2] = {REC_MAGIC, (uint32_t)index};
    uint64_t len = b.len;
    uint8_t dig[32];
    moa_sha256_ctx c;
    moa_sha256_init(&c);
    moa_sha256_update(&c, b.s, b.len);
    moa_sha256_final(&c, dig);
    int ok = fwrite(head, sizeof head, 1, fp) == 1 && fwrite(&len, 8, 1, fp) == 1 &&
             fwrite(b.s, 1, b.len, fp) == b.len && fwrite(dig, 32, 1, fp) == 1 &&
             fflush(fp) == 0 && fsync(fileno(fp)) == 0;
    sb_free(&b);
    if (!ok) return moa_err(MOA_ERR_IO, "cannot write checkpoint '%s': %s", path, strerror(errno));
    return MOA_OK;
}

/* Parses one payload into s; returns 0 on success, -1 if malformed. */
static int get_bytes(const uint8_t **p, const uint8_t *end, void *dst, size_t n) {
    if ((size_t)(end - *p) < n) return -1;
    memcpy(dst, *p, n);
    *p += n;
    return 0;
}
static int get_str(const uint8_t **p, const uint8_t *end, char **out) {
    uint32_t n;
    *out = NULL;
    if (get_bytes(p, end, &n, 4)) return -1;
    if (n == 0xffffffffu) return 0;
    if ((size_t)(end - *p) < n) return -1;
    *out = malloc((size_t)n + 1);
    if (!*out) return -1;
    memcpy(*out, *p, n);
    (*out)[n] = '\0';
    *p += n;
    return 0;
}
static int parse_payload(const uint8_t *p, size_t len, moa_calib_sample *s) {
    const uint8_t *end = p + len;
    int32_t hdr[5];
    memset(s, 0, sizeof *s);
    if (get_bytes(&p, end, hdr, sizeof hdr) || get_bytes(&p, end, &s->seed, 4) ||
        get_bytes(&p, end, &s->dense_correct, 1) || get_bytes(&p, end, &s->dense_score, 8))
        return -1;
    s->n_tokens = hdr[0]; s->prompt_len = hdr[1]; s->response_start = hdr[2];
    s->response_end = hdr[3]; s->bucket = hdr[4];
    if (get_str(&p, end, &s->task) || get_str(&p, end, &s->expected) || get_str(&p, end, &s->params) ||
        s->n_tokens < 1 || (size_t)(end - p) != (size_t)s->n_tokens * 4) {
        moa_calib_sample_clear(s);
        return -1;
    }
    s->tokens = moa_alloc_array((size_t)s->n_tokens, 4);
    if (!s->tokens) { moa_calib_sample_clear(s); return -1; }
    memcpy(s->tokens, p, (size_t)s->n_tokens * 4);
    return 0;
}

/* Opens the checkpoint for appending, loading matching records into done[]/samples[]. */
static moa_status ckpt_open(const char *path, const char *params, int resume, int64_t n,
                            moa_calib_sample *samples, uint8_t *done, int64_t *n_done, FILE **out) {
    *out = NULL;
    *n_done = 0;
    uint32_t plen = (uint32_t)strlen(params);
    if (resume && moa_file_exists(path)) {
        FILE *fp = fopen(path, "r+b");
        if (!fp) return moa_err(MOA_ERR_IO, "cannot open checkpoint '%s': %s", path, strerror(errno));
        char magic[8];
        uint32_t l = 0;
        char *stored = NULL;
        int ok = fread(magic, 8, 1, fp) == 1 && memcmp(magic, CKPT_MAGIC, 8) == 0 &&
                 fread(&l, 4, 1, fp) == 1 && l < (1u << 30) && (stored = malloc((size_t)l + 1)) &&
                 fread(stored, 1, l, fp) == l;
        if (!ok) {
            free(stored);
            fclose(fp);
            return moa_err(MOA_ERR_FORMAT, "checkpoint '%s' has a bad header; delete it to start over", path);
        }
        stored[l] = '\0';
        int same = l == plen && memcmp(stored, params, l) == 0;
        free(stored);
        if (!same) {
            fclose(fp);
            return moa_err(MOA_ERR_MISMATCH, "checkpoint '%s' was written with different build parameters "
                           "(task, lengths, seed, model or tokenizer); delete it or rerun with the same "
                           "parameters", path);
        }
        long good = ftell(fp);
        for (;;) {
            uint32_t head[2];
            uint64_t len;
            if (fread(head, sizeof head, 1, fp) != 1 || head[0] != REC_MAGIC ||
                fread(&len, 8, 1, fp) != 1 || len > ((uint64_t)1 << 34))
                break;
            uint8_t *buf = malloc((size_t)len ? (size_t)len : 1), dig[32], want[32];
            if (!buf) break;
            if (fread(buf, 1, (size_t)len, fp) != (size_t)len || fread(want, 32, 1, fp) != 1) { free(buf); break; }
            moa_sha256_ctx c;
            moa_sha256_init(&c);
            moa_sha256_update(&c, buf, (size_t)len);
            moa_sha256_final(&c, dig);
            moa_calib_sample s;
            if (memcmp(dig, want, 32) != 0 || head[1] >= (uint64_t)n || parse_payload(buf, (size_t)len, &s)) {
                free(buf);
                break;
            }
            free(buf);
            int64_t i = head[1];
            if (done[i]) moa_calib_sample_clear(&samples[i]);
            else (*n_done)++;
            samples[i] = s;
            done[i] = 1;
            good = ftell(fp);
        }
        if (fflush(fp) != 0 || ftruncate(fileno(fp), good) != 0 || fseek(fp, good, SEEK_SET) != 0) {
            fclose(fp);
            return moa_err(MOA_ERR_IO, "cannot truncate checkpoint '%s': %s", path, strerror(errno));
        }
        *out = fp;
        return MOA_OK;
    }
    FILE *fp = fopen(path, "wb");
    if (!fp) return moa_err(MOA_ERR_IO, "cannot create checkpoint '%s': %s", path, strerror(errno));
    if (fwrite(CKPT_MAGIC, 8, 1, fp) != 1 || fwrite(&plen, 4, 1, fp) != 1 ||
        fwrite(params, 1, plen, fp) != plen || fflush(fp) != 0) {
        fclose(fp);
        return moa_err(MOA_ERR_IO, "cannot write checkpoint '%s'", path);
    }
    *out = fp;
    return MOA_OK;
}

/* ---- one sample --------------------------------------------------------------------------- */
static moa_status make_sample(const moa_calib_build_params *p, const moa_calib_tokenizer *tok,
                              moa_respond_fn respond, void *rdata, int l, int j, int64_t i,
                              moa_calib_sample *out) {
    moa_task_spec spec = p->tasks[j % p->n_tasks];
    if ((spec.kind == MOA_TASK_LINES || spec.kind == MOA_TASK_NEEDLE) && spec.query_index < 0 &&
        spec.position_bin < 0)
        spec.position_bin = j % 10;
    int64_t record = -1;
    if (spec.kind == MOA_TASK_JSONL) {
        size_t nr = moa_jsonl_count(spec.corpus);
        if (nr == 0) return moa_err(MOA_ERR_INVALID_ARG, "jsonl task without records");
        record = i % (int64_t)nr;
    }
    uint32_t seed = moa_calib_sample_seed(p->seed, p->lengths[l], j);
    moa_task_sample ts;
    int n_fit = 0;
    moa_status st = moa_task_fit(&spec, seed, record, p->lengths[l], tok->count_tokens, tok->data,
                                 &p->fit, &ts, &n_fit);
    if (st < 0) {
        moa_task_sample_clear(&ts);
        return moa_err_prefix(st, "sample %lld (length %d, index %d)", (long long)i, p->lengths[l], j);
    }
    int32_t *pid = NULL, *rid = NULL;
    int np = 0, nr = 0;
    st = tok->encode_prompt(tok->data, ts.prompt, strlen(ts.prompt), &pid, &np);
    if (st >= 0 && np < 1) st = moa_err(MOA_ERR_INTERNAL, "encode_prompt returned no tokens");
    if (st >= 0) st = respond(rdata, pid, np, p->max_new_tokens, &rid, &nr);
    if (st >= 0 && (nr < 0 || nr > p->max_new_tokens + 1))
        st = moa_err(MOA_ERR_INTERNAL, "responder returned %d tokens (max %d)", nr, p->max_new_tokens);
    if (st < 0) goto done;
    memset(out, 0, sizeof *out);
    out->tokens = moa_alloc_array((size_t)np + (size_t)nr, sizeof *out->tokens);
    if (!out->tokens) { st = moa_err(MOA_ERR_NOMEM, "out of memory"); goto done; }
    memcpy(out->tokens, pid, (size_t)np * sizeof *pid);
    if (nr) memcpy(out->tokens + np, rid, (size_t)nr * sizeof *rid);
    out->n_tokens = np + nr;
    out->prompt_len = np;
    out->response_start = np;
    out->response_end = np + nr;
    out->bucket = p->lengths[l];
    out->seed = seed;
    out->task = ts.task; ts.task = NULL;
    out->expected = ts.expected; ts.expected = NULL;
    out->params = ts.params; ts.params = NULL;
    out->dense_correct = -1;
    out->dense_score = -1;
    if (out->expected && tok->detokenize) {
        char *text = NULL;
        st = tok->detokenize(tok->data, rid, nr, &text);
        if (st >= 0) {
            double sc = moa_score_task(out->task, text ? text : "", out->expected);
            if (sc >= 0) {
                out->dense_score = sc;
                out->dense_correct = sc >= 1.0 ? 1 : 0;
            }
        }
        free(text);
        if (st < 0) moa_calib_sample_clear(out);
    }
done:
    if (st < 0) st = moa_err_prefix(st, "sample %lld (length %d, index %d)", (long long)i, p->lengths[l], j);
    free(pid);
    free(rid);
    moa_task_sample_clear(&ts);
    return st;
}

moa_status moa_calib_build(const moa_calib_build_params *p, const moa_calib_tokenizer *tok,
                           moa_respond_fn respond, void *respond_data,
                           moa_progress_fn progress, void *progress_data,
                           const char *out_path) {
    if (!p || !tok || !respond || !out_path || !tok->count_tokens || !tok->encode_prompt)
        return moa_err(MOA_ERR_INVALID_ARG, "moa_calib_build: NULL argument (params, tokenizer "
                       "callbacks count_tokens/encode_prompt, responder and output path are required)");
    if (p->n_tasks < 1 || !p->tasks || p->n_lengths < 1 || !p->lengths ||
        (!p->samples_at && p->samples_per_length < 1) || p->max_new_tokens < 1)
        return moa_err(MOA_ERR_INVALID_ARG, "moa_calib_build: need at least one task, one length, "
                       "samples_per_length >= 1 and max_new_tokens >= 1");
    int64_t n = 0;
    for (int l = 0; l < p->n_lengths; l++) {
        if (p->lengths[l] < 1)
            return moa_err(MOA_ERR_INVALID_ARG, "length %d at position %d: must be positive", p->lengths[l], l);
        if (p->samples_at && p->samples_at[l] < 1)
            return moa_err(MOA_ERR_INVALID_ARG, "samples_at[%d] = %d (length %d): must be >= 1", l,
                           p->samples_at[l], p->lengths[l]);
        n += p->samples_at ? p->samples_at[l] : p->samples_per_length;
    }
    char *params = moa_calib_build_params_json(p);
    char *ckpt = NULL;
    if (p->checkpoint_path) ckpt = moa_strdup(p->checkpoint_path);
    else {
        size_t k = strlen(out_path) + 6;
        if ((ckpt = malloc(k))) snprintf(ckpt, k, "%s.ckpt", out_path);
    }
    moa_calib_sample *samples = moa_calloc_array((size_t)n, sizeof *samples);
    uint8_t *done = moa_calloc_array((size_t)n, 1);
    FILE *fp = NULL;
    moa_status st = MOA_OK;
    if (!params || !ckpt || !samples || !done) { st = moa_err(MOA_ERR_NOMEM, "out of memory"); goto out; }
    int64_t n_done = 0;
    if ((st = ckpt_open(ckpt, params, p->resume, n, samples, done, &n_done, &fp)) < 0) goto out;
    if (n_done) moa_log_info("calib: resuming from '%s' with %lld of %lld samples", ckpt,
                             (long long)n_done, (long long)n);
    /* Progress counts the samples of this run only (resumed ones are logged above), so the
     * rate and the ETA are those of this run. */
    int64_t todo = n - n_done, made = 0;
    double tokens = 0;
    if (progress) progress(progress_data, 0, (double)todo, 0, "tok");
    for (int l = 0, i0 = 0; l < p->n_lengths; l++) {
        int k = p->samples_at ? p->samples_at[l] : p->samples_per_length;
        for (int j = 0; j < k; j++) {
            int64_t i = i0 + j;
            if (done[i]) continue;
            if ((st = make_sample(p, tok, respond, respond_data, l, j, i, &samples[i])) < 0) goto out;
            if ((st = write_record(fp, i, &samples[i], ckpt)) < 0) goto out;
            done[i] = 1;
            made++;
            tokens += samples[i].n_tokens;
            if (progress) progress(progress_data, (double)made, (double)todo, tokens, "tok");
        }
        i0 += k;
    }
    fclose(fp);
    fp = NULL;
    moa_calib_file f = {0};
    f.model_sha256 = (char *)(p->model_sha256 ? p->model_sha256 : "");
    f.tokenizer = (char *)(p->tokenizer_id ? p->tokenizer_id : "");
    f.chat_template = (char *)(p->chat_template ? p->chat_template : "");
    f.tool_version = (char *)MOA_VERSION;
    f.build_params = params;
    f.n_samples = n;
    f.samples = samples;
    if ((st = moa_calib_write(out_path, &f)) < 0) goto out;
    if (remove(ckpt) != 0) moa_log_warn("calib: could not remove checkpoint '%s'", ckpt);
out:
    if (fp) fclose(fp);
    if (samples)
        for (int64_t i = 0; i < n; i++) moa_calib_sample_clear(&samples[i]);
    free(samples);
    free(done);
    free(params);
    free(ckpt);
    return st;
}
