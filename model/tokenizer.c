/* tokenizer.c - byte-level BPE (GPT-2 family) with the "smollm" and "gpt2" pre-tokenizers,
 * special tokens, streaming UTF-8-safe decoding and ChatML rendering. See moa/model.h and
 * docs/tokenizer.md.
 *
 * Internally every token is kept as its decoded bytes ("Ġthe" -> " the"), so BPE runs on
 * the bytes of a piece: each byte starts as its single-byte token, and pairs of adjacent
 * token ids merge by rank (a hash map (left id, right id) -> (rank, merged id)), lowest rank
 * first, leftmost on ties, with a binary heap: O(n log n) per piece.
 */
#include "moa/model.h"

#include <stdlib.h>
#include <string.h>

#include "moa/common.h"
#include "unicode.h"

enum { PRE_GPT2 = 0, PRE_SMOLLM = 1, PRE_QWEN2 = 2 };

/* tokenizer.ggml.pre names we accept, and the pre-tokenizer each one means. The qwen2 group
 * is every name llama.cpp (0.3.36's vendored copy) maps to the Qwen2 pattern. */
static const struct { const char *name; int kind; } pre_names[] = {
    {"gpt2", PRE_GPT2}, {"gpt-2", PRE_GPT2}, {"smollm", PRE_SMOLLM},
    {"qwen2", PRE_QWEN2}, {"deepseek-r1-qwen", PRE_QWEN2}, {"kormo", PRE_QWEN2},
    {"f2llmv2", PRE_QWEN2}, {"megrez", PRE_QWEN2}, {"stablelm2", PRE_QWEN2},
    {"hunyuan", PRE_QWEN2}, {"solar-open", PRE_QWEN2},
};

enum { MAX_EOG = 32 };

struct moa_tokenizer {
    int32_t n_vocab;
    char **text;                 /* [n_vocab] vocab strings as given (into text_blob) */
    char *text_blob;
    unsigned char *raw_blob;     /* decoded bytes of every token, NUL after each */
    size_t *raw_off;             /* [n_vocab] */
    uint32_t *raw_len;           /* [n_vocab] */
    uint8_t *type;               /* [n_vocab] moa_token_type */
    size_t max_raw;

    /* decoded bytes -> id, for normal and unused tokens (open addressing, -1 empty) */
    int32_t *vmap;
    size_t vmap_mask;

    /* (left id, right id) -> (rank, merged id) */
    uint64_t *mkey;              /* UINT64_MAX empty */
    int32_t *mrank, *mres;
    size_t mmask;

    int32_t byte_id[256];        /* initial symbol of each byte; -1: none */

    /* special tokens (control, unknown, user-defined), grouped by first byte, longest
     * first within a group */
    int32_t *spec;
    int32_t spec_start[257];

    int32_t bos, eos, eot, unk, pad;
    int add_bos;
    int pre;
    char *chat_template;
    int chat_chatml;
    char *chat_default_system;   /* NULL: the template has none */
    int32_t eog[MAX_EOG];
    int n_eog;
};

/* ---- small helpers ---------------------------------------------------------------------- */

typedef struct { int32_t *v; size_t n, cap; } ivec;

static int ivec_push(ivec *a, int32_t x) {
    if (a->n == a->cap) {
        size_t nc = a->cap ? a->cap * 2 : 64;
        int32_t *nv = realloc(a->v, nc * sizeof *nv);
        if (!nv) return -1;
        a->v = nv;
        a->cap = nc;
    }
    a->v[a->n++] = x;
    return 0;
}

static uint64_t hash_bytes(const unsigned char *s, size_t n) {
    uint64_t h = 1469598103934665603ull;            /* FNV-1a */
    for (size_t i = 0; i < n; i++) { h ^= s[i]; h *= 1099511628211ull; }
    return h ^ (h >> 29);
}

static uint64_t hash_u64(uint64_t x) {                /* splitmix64 finaliser */
    x ^= x >> 30; x *= 0xbf58476d1ce4e5b9ull;
    x ^= x >> 27; x *= 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

static size_t pow2_at_least(size_t n) {
    size_t c = 16;
    while (c < n) c <<= 1;
    return c;
}

static int is_special_type(int type) {
    return type == MOA_TOKEN_CONTROL || type == MOA_TOKEN_UNKNOWN ||
           type == MOA_TOKEN_USER_DEFINED;
}

/* ---- GPT-2 byte <-> unicode map --------------------------------------------------------- */
/* Bytes 0x21-0x7E, 0xA1-0xAC, 0xAE-0xFF stand for themselves; the other 68 bytes, in
 * ascending order, map to U+0100, U+0101, ... (space -> U+0120 'Ġ'). All images < U+0144. */

enum { U2B_SIZE = 0x144 };

static void byte_map_init(int16_t u2b[U2B_SIZE]) {
    for (int i = 0; i < U2B_SIZE; i++) u2b[i] = -1;
    int extra = 0;
    for (int b = 0; b < 256; b++) {
        int self = (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE);
        u2b[self ? b : 0x100 + extra++] = (int16_t)b;
    }
}

/* Vocab string (byte-mapped form) -> bytes. Codepoints outside the map are copied as
 * UTF-8. The output is never longer than the input. */
static size_t unmap_bytes(const int16_t *u2b, const char *s, size_t n, unsigned char *out) {
    const unsigned char *p = (const unsigned char *)s;
    size_t i = 0, o = 0;
    while (i < n) {
        uint32_t cp;
        size_t k = moa_utf8_decode(p + i, n - i, &cp);
        if (cp < U2B_SIZE && u2b[cp] >= 0) {
            out[o++] = (unsigned char)u2b[cp];
        } else {
            memcpy(out + o, p + i, k);
            o += k;
        }
        i += k;
    }
    return o;
}

/* "<0xAB>" -> 0xAB, or -1. */
static int parse_byte_token(const char *s) {
    static const char hex[] = "0123456789ABCDEF";
    if (strlen(s) != 6 || s[0] != '<' || s[1] != '0' || s[2] != 'x' || s[5] != '>') return -1;
    const char *h = strchr(hex, s[3]), *l = strchr(hex, s[4]);
    if (!h || !l || !s[3] || !s[4]) return -1;
    return (int)((h - hex) * 16 + (l - hex));
}

/* ---- lookups ---------------------------------------------------------------------------- */

static int32_t vocab_find(const moa_tokenizer *t, const unsigned char *s, size_t n) {
    size_t i = (size_t)hash_bytes(s, n) & t->vmap_mask;
    for (;;) {
        int32_t id = t->vmap[i];
        if (id < 0) return -1;
        if (t->raw_len[id] == n && memcmp(t->raw_blob + t->raw_off[id], s, n) == 0) return id;
        i = (i + 1) & t->vmap_mask;
    }
}

static void vocab_insert(moa_tokenizer *t, int32_t id) {
    const unsigned char *s = t->raw_blob + t->raw_off[id];
    size_t n = t->raw_len[id];
    size_t i = (size_t)hash_bytes(s, n) & t->vmap_mask;
    for (;;) {
        int32_t o = t->vmap[i];
        if (o < 0) { t->vmap[i] = id; return; }
        if (t->raw_len[o] == n && memcmp(t->raw_blob + t->raw_off[o], s, n) == 0) return;
        i = (i + 1) & t->vmap_mask;
    }
}

static inline uint64_t merge_key(int32_t a, int32_t b) {
    return ((uint64_t)(uint32_t)a << 32) | (uint32_t)b;
}

/* Rank of merging (a, b), or -1; *res gets the merged id. */
static inline int32_t merge_find(const moa_tokenizer *t, int32_t a, int32_t b, int32_t *res) {
    uint64_t k = merge_key(a, b);
    size_t i = (size_t)hash_u64(k) & t->mmask;
    for (;;) {
        uint64_t e = t->mkey[i];
        if (e == UINT64_MAX) return -1;
        if (e == k) { *res = t->mres[i]; return t->mrank[i]; }
        i = (i + 1) & t->mmask;
    }
}

/* Keeps the first (lowest-rank) entry of a duplicated pair. */
static void merge_insert(moa_tokenizer *t, int32_t a, int32_t b, int32_t rank, int32_t res) {
    uint64_t k = merge_key(a, b);
    size_t i = (size_t)hash_u64(k) & t->mmask;
    for (;;) {
        uint64_t e = t->mkey[i];
        if (e == UINT64_MAX) { t->mkey[i] = k; t->mrank[i] = rank; t->mres[i] = res; return; }
        if (e == k) return;
        i = (i + 1) & t->mmask;
    }
}

/* ---- chat template analysis ------------------------------------------------------------- */

/* Finds the default system text of a ChatML template: a string literal
 * '<|im_start|>system\n...<|im_end|>' whose body is plain text (no quote, no Jinja). */
static moa_status find_default_system(const char *tpl, char **out) {
    *out = NULL;
    static const char head[] = "<|im_start|>system";
    const char *p = tpl;
    while ((p = strstr(p, head)) != NULL) {
        p += sizeof head - 1;
        const char *body;
        if (p[0] == '\n') body = p + 1;
        else if (p[0] == '\\' && p[1] == 'n') body = p + 2;
        else continue;
        const char *end = strstr(body, "<|im_end|>");
        if (!end) break;
        int plain = 1;
        for (const char *q = body; q < end; q++) {
            if (*q == '\'' && !(q > body && q[-1] == '\\')) { plain = 0; break; }
            if (*q == '"' && !(q > body && q[-1] == '\\')) { plain = 0; break; }
            if (*q == '{' && (q[1] == '{' || q[1] == '%')) { plain = 0; break; }
        }
        if (!plain || end <= body) continue;
        /* Unescape the Jinja string literal. */
        char *s = malloc((size_t)(end - body) + 1);
        if (!s) return moa_err(MOA_ERR_NOMEM, "tokenizer: out of memory");
        size_t o = 0;
        for (const char *q = body; q < end; q++) {
            if (*q == '\\' && q + 1 < end) {
                q++;
                switch (*q) {
                case 'n': s[o++] = '\n'; break;
                case 't': s[o++] = '\t'; break;
                case 'r': s[o++] = '\r'; break;
                default: s[o++] = *q; break;
                }
            } else {
                s[o++] = *q;
            }
        }
        s[o] = '\0';
        *out = s;
        return MOA_OK;
    }
    return MOA_OK;
}

/* ---- end of generation ------------------------------------------------------------------ */

/* Token texts that end generation in llama.cpp (0.3.36's vendored llama-vocab.cpp): its
 * end-of-turn names, then its FIM pad, FIM repo and file-separator names (llama.cpp keeps the
 * first of each FIM group it meets; the vocabularies we know have at most one). */
static const char *const eog_names[] = {
    "<|im_end|>", "<|endoftext|>", "<|eot_id|>", "<|eom_id|>", "<|end|>", "<end_of_turn>",
    "<|end_of_text|>", "<EOT>", "_<EOT>", "[EOT]", "[EOS]", "</s>", "<eos>",
    "<end_of_utterance>",
    "<|fim_pad|>", "<fim-pad>", "<fim_pad>", "<PAD>", "[PAD]",
    "<|fim_repo|>", "<|repo_name|>", "<fim-repo>", "<REPO>", "<reponame>",
    "<|file_sep|>",
};

static int is_eog_name(const char *text) {
    if (text[0] != '<' && text[0] != '[' && text[0] != '_') return 0;
    for (size_t k = 0; k < sizeof eog_names / sizeof *eog_names; k++)
        if (strcmp(text, eog_names[k]) == 0) return 1;
    return 0;
}

/* ---- create / free ---------------------------------------------------------------------- */

moa_tokenizer_desc moa_tokenizer_desc_default(void) {
    const moa_tokenizer_desc d = {.bos_id = -1, .eos_id = -1, .eot_id = -1, .unk_id = -1,
                                  .pad_id = -1, .pre = "gpt2"};
    return d;
}

void moa_tokenizer_free(moa_tokenizer *t) {
    if (!t) return;
    MOA_FREE_ALL(t->text, t->text_blob, t->raw_blob, t->raw_off, t->raw_len, t->type, t->vmap,
                 t->mkey, t->mrank, t->mres, t->spec, t->chat_template, t->chat_default_system, t);
}

static moa_status build_specials(moa_tokenizer *t) {
    int32_t n = 0;
    for (int32_t i = 0; i < t->n_vocab; i++)
        if (is_special_type(t->type[i]) && t->raw_len[i] > 0) n++;
    t->spec = moa_alloc_array((size_t)n + 1, sizeof *t->spec);
    if (!t->spec) return moa_err(MOA_ERR_NOMEM, "tokenizer: out of memory");
    /* Counting sort by first byte, then insertion sort by length (descending) per group. */
    int32_t count[257] = {0};
    for (int32_t i = 0; i < t->n_vocab; i++)
        if (is_special_type(t->type[i]) && t->raw_len[i] > 0)
            count[t->raw_blob[t->raw_off[i]] + 1]++;
    for (int b = 0; b < 256; b++) count[b + 1] += count[b];
    memcpy(t->spec_start, count, sizeof count);
    int32_t fill[256];
    for (int b = 0; b < 256; b++) fill[b] = count[b];
    for (int32_t i = 0; i < t->n_vocab; i++)
        if (is_special_type(t->type[i]) && t->raw_len[i] > 0)
            t->spec[fill[t->raw_blob[t->raw_off[i]]]++] = i;
    for (int b = 0; b < 256; b++) {
        for (int32_t i = t->spec_start[b] + 1; i < t->spec_start[b + 1]; i++) {
            int32_t x = t->spec[i], j = i;
            while (j > t->spec_start[b] && t->raw_len[t->spec[j - 1]] < t->raw_len[x]) {
                t->spec[j] = t->spec[j - 1];
                j--;
            }
            t->spec[j] = x;
        }
    }
    return MOA_OK;
}

/* The descriptor's checks (before anything is allocated); *pre_kind: its pre-tokenizer. */
static moa_status check_desc(const moa_tokenizer_desc *d, int *pre_kind) {
    if (!d || d->n_vocab <= 0 || !d->tokens)
        return moa_err(MOA_ERR_INVALID_ARG, "tokenizer: empty vocabulary");
    if (d->n_merges < 0 || (d->n_merges > 0 && !d->merges))
        return moa_err(MOA_ERR_INVALID_ARG, "tokenizer: bad merges list");
    const char *pre = d->pre ? d->pre : "gpt2";
    *pre_kind = -1;
    for (size_t k = 0; k < sizeof pre_names / sizeof *pre_names; k++)
        if (strcmp(pre, pre_names[k].name) == 0) *pre_kind = pre_names[k].kind;
    if (*pre_kind < 0)
        return moa_err(MOA_ERR_UNSUPPORTED,
                       "tokenizer: pre-tokenizer \"%s\" is not supported (supported: gpt2, "
                       "gpt-2, smollm, qwen2, deepseek-r1-qwen, kormo, f2llmv2, megrez, "
                       "stablelm2, hunyuan, solar-open)", pre);
    const int32_t ids[5] = {d->bos_id, d->eos_id, d->eot_id, d->unk_id, d->pad_id};
    static const char *id_names[5] = {"bos", "eos", "eot", "unknown", "padding"};
    for (int k = 0; k < 5; k++)
        if (ids[k] < -1 || ids[k] >= d->n_vocab)
            return moa_err(MOA_ERR_INVALID_ARG, "tokenizer: %s token id %d out of range [0, %d)",
                           id_names[k], (int)ids[k], (int)d->n_vocab);
    if (d->add_bos && d->bos_id < 0)
        return moa_err(MOA_ERR_INVALID_ARG, "tokenizer: add_bos is set but there is no bos token");
    return MOA_OK;
}

/* Vocab strings and types, and each token's decoded bytes (text, raw_*, type, max_raw). */
static moa_status load_vocab(moa_tokenizer *t, const moa_tokenizer_desc *d, const int16_t *u2b) {
    const int32_t nv = d->n_vocab;
    size_t total = 0;
    for (int32_t i = 0; i < nv; i++) {
        if (!d->tokens[i]) return moa_err(MOA_ERR_INVALID_ARG, "tokenizer: token %d is NULL", (int)i);
        total += strlen(d->tokens[i]) + 1;
    }
    t->text = moa_alloc_array((size_t)nv, sizeof *t->text);
    t->text_blob = malloc(total);
    t->raw_blob = malloc(total);          /* decoded bytes are never longer than the text */
    t->raw_off = moa_alloc_array((size_t)nv, sizeof *t->raw_off);
    t->raw_len = moa_alloc_array((size_t)nv, sizeof *t->raw_len);
    t->type = moa_alloc_array((size_t)nv, sizeof *t->type);
    if (!t->text || !t->text_blob || !t->raw_blob || !t->raw_off || !t->raw_len || !t->type)
        return moa_err(MOA_ERR_NOMEM, "tokenizer: out of memory for %d tokens", (int)nv);
    for (int32_t i = 0; i < nv; i++) {
        int ty = d->token_types ? d->token_types[i] : MOA_TOKEN_NORMAL;
        if (ty < MOA_TOKEN_NORMAL || ty > MOA_TOKEN_BYTE) ty = MOA_TOKEN_NORMAL;
        t->type[i] = (uint8_t)ty;
    }
    const int32_t ids[5] = {d->bos_id, d->eos_id, d->eot_id, d->unk_id, d->pad_id};
    if (!d->token_types)
        for (int k = 0; k < 5; k++)
            if (ids[k] >= 0) t->type[ids[k]] = MOA_TOKEN_CONTROL;

    size_t off = 0;
    for (int32_t i = 0; i < nv; i++) {
        size_t n = strlen(d->tokens[i]);
        memcpy(t->text_blob + off, d->tokens[i], n + 1);
        t->text[i] = t->text_blob + off;
        unsigned char *r = t->raw_blob + off;
        size_t rn;
        int bt;
        if (is_special_type(t->type[i])) {
            memcpy(r, d->tokens[i], n);
            rn = n;
        } else if (t->type[i] == MOA_TOKEN_BYTE && (bt = parse_byte_token(d->tokens[i])) >= 0) {
            r[0] = (unsigned char)bt;
            rn = 1;
        } else {
            rn = unmap_bytes(u2b, d->tokens[i], n, r);
        }
        r[rn] = '\0';
        t->raw_off[i] = off;
        t->raw_len[i] = (uint32_t)rn;
        if (rn > t->max_raw) t->max_raw = rn;
        off += n + 1;
    }
    return MOA_OK;
}

/* Bytes -> id for BPE (vmap), and the initial symbol of each byte (byte_id). */
static moa_status build_byte_symbols(moa_tokenizer *t) {
    const int32_t nv = t->n_vocab;
    t->vmap_mask = pow2_at_least((size_t)nv * 2) - 1;
    t->vmap = moa_alloc_array(t->vmap_mask + 1, sizeof *t->vmap);
    if (!t->vmap) return moa_err(MOA_ERR_NOMEM, "tokenizer: out of memory");
    for (size_t i = 0; i <= t->vmap_mask; i++) t->vmap[i] = -1;
    for (int32_t i = 0; i < nv; i++)
        if ((t->type[i] == MOA_TOKEN_NORMAL || t->type[i] == MOA_TOKEN_UNUSED) && t->raw_len[i])
            vocab_insert(t, i);

    /* Initial symbol of each byte: its single-byte token, else a <0xXX> byte token, else
     * none: such a byte is dropped, as Hugging Face tokenizers (no unk_token) and llama.cpp
     * do. (SmolLM2's vocab has no token for the bytes that never occur in UTF-8.) */
    for (int b = 0; b < 256; b++) {
        unsigned char c = (unsigned char)b;
        t->byte_id[b] = vocab_find(t, &c, 1);
    }
    for (int32_t i = 0; i < nv; i++)
        if (t->type[i] == MOA_TOKEN_BYTE && t->raw_len[i] == 1) {
            int b = t->raw_blob[t->raw_off[i]];
            if (t->byte_id[b] < 0) t->byte_id[b] = i;
        }
    return MOA_OK;
}

/* Merges: "left right" in vocab text, rank = position in the list; a merge whose parts or
 * result are not tokens is skipped. */
static moa_status load_merges(moa_tokenizer *t, const moa_tokenizer_desc *d, const int16_t *u2b) {
    t->mmask = pow2_at_least((size_t)d->n_merges * 2 + 1) - 1;
    t->mkey = moa_alloc_array(t->mmask + 1, sizeof *t->mkey);
    t->mrank = moa_alloc_array(t->mmask + 1, sizeof *t->mrank);
    t->mres = moa_alloc_array(t->mmask + 1, sizeof *t->mres);
    size_t max_merge = 0;
    for (int32_t i = 0; i < d->n_merges; i++) {
        if (!d->merges[i]) return moa_err(MOA_ERR_INVALID_ARG, "tokenizer: merge %d is NULL", (int)i);
        size_t n = strlen(d->merges[i]);
        if (n > max_merge) max_merge = n;
    }
    unsigned char *scratch = malloc(2 * max_merge + 2);
    moa_status st = MOA_OK;
    if (!t->mkey || !t->mrank || !t->mres || !scratch) {
        st = moa_err(MOA_ERR_NOMEM, "tokenizer: out of memory for %d merges", (int)d->n_merges);
        goto done;
    }
    for (size_t i = 0; i <= t->mmask; i++) t->mkey[i] = UINT64_MAX;
    for (int32_t i = 0; i < d->n_merges; i++) {
        const char *m = d->merges[i];
        const char *sp = m[0] ? strchr(m + 1, ' ') : NULL;
        if (!sp) {
            st = moa_err(MOA_ERR_INVALID_ARG, "tokenizer: merge %d (\"%s\") has no space",
                         (int)i, m);
            goto done;
        }
        size_t la = unmap_bytes(u2b, m, (size_t)(sp - m), scratch);
        size_t lb = unmap_bytes(u2b, sp + 1, strlen(sp + 1), scratch + la);
        int32_t a = vocab_find(t, scratch, la);
        int32_t b = vocab_find(t, scratch + la, lb);
        int32_t r = vocab_find(t, scratch, la + lb);
        if (a < 0 || b < 0 || r < 0) continue;   /* cannot apply: a part is not a token */
        merge_insert(t, a, b, i, r);
    }
done:
    free(scratch);
    return st;
}

/* End-of-generation tokens, by llama.cpp's rule (llama-vocab.cpp, "maintain a list of
 * tokens that cause end-of-generation"): eos, eot, and every token named in eog_names
 * (end-of-turn and FIM pad / repo / file-separator names), whatever its type. A
 * user-defined token so named becomes control, as llama.cpp does (it is then parsed
 * only when asked). llama.cpp makes a normal token so named control too (Qwen2's
 * "</s>", id 128247); we keep it normal, so it still encodes and decodes as text. */
static void find_eog(moa_tokenizer *t) {
    t->n_eog = 0;
    if (t->eos >= 0) t->eog[t->n_eog++] = t->eos;
    if (t->eot >= 0 && t->eot != t->eos) t->eog[t->n_eog++] = t->eot;
    for (int32_t id = 0; id < t->n_vocab; id++) {
        if (!is_eog_name(t->text[id])) continue;
        if (t->type[id] == MOA_TOKEN_USER_DEFINED) t->type[id] = MOA_TOKEN_CONTROL;
        int dup = 0;
        for (int e = 0; e < t->n_eog; e++) dup |= t->eog[e] == id;
        if (!dup && t->n_eog < MAX_EOG) t->eog[t->n_eog++] = id;
    }
}

/* Chat template: kept as given; a ChatML one also gives its default system message. */
static moa_status set_chat_template(moa_tokenizer *t, const char *tpl) {
    if (!tpl) return MOA_OK;
    t->chat_template = moa_strdup(tpl);
    if (!t->chat_template) return moa_err(MOA_ERR_NOMEM, "tokenizer: out of memory");
    t->chat_chatml = strstr(t->chat_template, "<|im_start|>") != NULL;
    if (t->chat_chatml) MOA_TRY(find_default_system(t->chat_template, &t->chat_default_system));
    return MOA_OK;
}

moa_status moa_tokenizer_create(const moa_tokenizer_desc *d, moa_tokenizer **out) {
    if (!out) return moa_err(MOA_ERR_INVALID_ARG, "tokenizer: out is NULL");
    *out = NULL;
    int pre_kind = -1;
    MOA_TRY(check_desc(d, &pre_kind));

    moa_tokenizer *t = calloc(1, sizeof *t);
    if (!t) return moa_err(MOA_ERR_NOMEM, "tokenizer: out of memory");
    t->n_vocab = d->n_vocab;
    t->bos = d->bos_id; t->eos = d->eos_id; t->eot = d->eot_id;
    t->unk = d->unk_id; t->pad = d->pad_id;
    t->add_bos = d->add_bos ? 1 : 0;
    t->pre = pre_kind;
    int16_t u2b[U2B_SIZE];
    byte_map_init(u2b);
    moa_status st;
    if ((st = load_vocab(t, d, u2b)) < 0 || (st = build_byte_symbols(t)) < 0 || (st = load_merges(t, d, u2b)) < 0 ||
        (st = build_specials(t)) < 0) {
        moa_tokenizer_free(t);
        return st;
    }
    find_eog(t);
    if ((st = set_chat_template(t, d->chat_template)) < 0) {
        moa_tokenizer_free(t);
        return st;
    }
    *out = t;
    return MOA_OK;
}

/* ---- from GGUF -------------------------------------------------------------------------- */

static moa_status gguf_opt_id(const moa_gguf *g, const char *key, int32_t *out) {
    *out = -1;
    if (moa_gguf_find_key(g, key) < 0) return MOA_OK;
    int64_t v;
    moa_status st = moa_gguf_get_i64(g, key, &v);
    if (st < 0) return moa_err_prefix(st, "tokenizer: %s", key);
    if (v < -1 || v > INT32_MAX)
        return moa_err(MOA_ERR_FORMAT, "tokenizer: %s = %lld is out of range", key, (long long)v);
    *out = (int32_t)v;
    return MOA_OK;
}

static moa_status gguf_str_array(const moa_gguf *g, const char *key, int required,
                                 const char ***out, int32_t *n) {
    *out = NULL;
    *n = 0;
    if (moa_gguf_find_key(g, key) < 0) {
        if (!required) return MOA_OK;
        return moa_err(MOA_ERR_FORMAT, "tokenizer: key %s is missing in %s", key,
                       moa_gguf_path(g));
    }
    moa_gguf_vtype et;
    uint64_t cnt;
    MOA_TRY(moa_gguf_get_arr_info(g, key, &et, &cnt));
    if (et != MOA_GGUF_STRING || cnt > INT32_MAX)
        return moa_err(MOA_ERR_FORMAT, "tokenizer: %s must be an array of at most 2^31 strings",
                       key);
    const char **a = moa_alloc_array(cnt ? cnt : 1, sizeof *a);
    if (!a) return moa_err(MOA_ERR_NOMEM, "tokenizer: out of memory");
    for (uint64_t i = 0; i < cnt; i++) {
        uint64_t len;
        moa_status st = moa_gguf_get_arr_str(g, key, i, &a[i], &len);
        if (st < 0) { free(a); return st; }
        if (strlen(a[i]) != len) {
            free(a);
            return moa_err(MOA_ERR_FORMAT, "tokenizer: %s[%llu] contains a NUL byte", key,
                           (unsigned long long)i);
        }
    }
    *out = a;
    *n = (int32_t)cnt;
    return MOA_OK;
}

moa_status moa_tokenizer_from_gguf(const moa_gguf *g, moa_tokenizer **out) {
    if (!out) return moa_err(MOA_ERR_INVALID_ARG, "tokenizer: out is NULL");
    *out = NULL;
    if (!g) return moa_err(MOA_ERR_INVALID_ARG, "tokenizer: gguf is NULL");
    const char *model = NULL;
    uint64_t len;
    if (moa_gguf_find_key(g, "tokenizer.ggml.model") < 0)
        return moa_err(MOA_ERR_FORMAT, "tokenizer: key tokenizer.ggml.model is missing in %s",
                       moa_gguf_path(g));
    MOA_TRY(moa_gguf_get_str(g, "tokenizer.ggml.model", &model, &len));
    if (strcmp(model, "gpt2") != 0)
        return moa_err(MOA_ERR_UNSUPPORTED,
                       "tokenizer: tokenizer.ggml.model \"%s\" is not supported (only \"gpt2\" "
                       "byte-level BPE)", model);

    moa_tokenizer_desc d = moa_tokenizer_desc_default();
    moa_status st;
    const char **tokens = NULL, **merges = NULL;
    int32_t *types = NULL;
    int32_t n_tokens = 0, n_merges = 0;

    if ((st = gguf_str_array(g, "tokenizer.ggml.tokens", 1, &tokens, &n_tokens)) < 0) goto done;
    if ((st = gguf_str_array(g, "tokenizer.ggml.merges", 0, &merges, &n_merges)) < 0) goto done;
    if (moa_gguf_find_key(g, "tokenizer.ggml.token_type") >= 0) {
        moa_gguf_vtype et;
        uint64_t cnt;
        const void *data;
        if ((st = moa_gguf_get_arr_info(g, "tokenizer.ggml.token_type", &et, &cnt)) < 0) goto done;
        if ((et != MOA_GGUF_I32 && et != MOA_GGUF_U32) || cnt != (uint64_t)n_tokens) {
            st = moa_err(MOA_ERR_FORMAT,
                         "tokenizer: tokenizer.ggml.token_type must be %d int32 values",
                         (int)n_tokens);
            goto done;
        }
        if ((st = moa_gguf_get_arr_data(g, "tokenizer.ggml.token_type", &data)) < 0) goto done;
        types = moa_alloc_array((size_t)n_tokens, sizeof *types);
        if (!types) { st = moa_err(MOA_ERR_NOMEM, "tokenizer: out of memory"); goto done; }
        const unsigned char *p = data;
        for (int32_t i = 0; i < n_tokens; i++)   /* little-endian in the file */
            types[i] = (int32_t)((uint32_t)p[4 * i] | (uint32_t)p[4 * i + 1] << 8 |
                                 (uint32_t)p[4 * i + 2] << 16 | (uint32_t)p[4 * i + 3] << 24);
    }
    if ((st = gguf_opt_id(g, "tokenizer.ggml.bos_token_id", &d.bos_id)) < 0) goto done;
    if ((st = gguf_opt_id(g, "tokenizer.ggml.eos_token_id", &d.eos_id)) < 0) goto done;
    if ((st = gguf_opt_id(g, "tokenizer.ggml.eot_token_id", &d.eot_id)) < 0) goto done;
    if ((st = gguf_opt_id(g, "tokenizer.ggml.unknown_token_id", &d.unk_id)) < 0) goto done;
    if ((st = gguf_opt_id(g, "tokenizer.ggml.padding_token_id", &d.pad_id)) < 0) goto done;
    if (moa_gguf_find_key(g, "tokenizer.ggml.add_bos_token") >= 0 &&
        (st = moa_gguf_get_bool(g, "tokenizer.ggml.add_bos_token", &d.add_bos)) < 0)
        goto done;
    if (moa_gguf_find_key(g, "tokenizer.ggml.pre") >= 0 &&
        (st = moa_gguf_get_str(g, "tokenizer.ggml.pre", &d.pre, &len)) < 0)
        goto done;
    if (moa_gguf_find_key(g, "tokenizer.chat_template") >= 0 &&
        (st = moa_gguf_get_str(g, "tokenizer.chat_template", &d.chat_template, &len)) < 0)
        goto done;

    d.n_vocab = n_tokens;
    d.tokens = tokens;
    d.token_types = types;
    d.n_merges = n_merges;
    d.merges = merges;
    st = moa_tokenizer_create(&d, out);
    if (st < 0) moa_err_prefix(st, "%s", moa_gguf_path(g));
done:
    free(tokens);
    free(merges);
    free(types);
    return st;
}

/* ---- pre-tokenization ------------------------------------------------------------------- */

/* Internal piece callback; a negative return stops the walk and is returned. */
typedef moa_status (*piece_cb)(void *data, const unsigned char *s, size_t n, int32_t special);

typedef struct {
    uint8_t *cls;       /* [cap] class of each codepoint */
    size_t *off;        /* [cap + 1] byte offset of each codepoint */
    size_t cap;
} cp_buf;

/* End (codepoint index) of the GPT-2 pattern's match at i within [i, b):
 *   's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
 * Alternatives are tried in order (first match wins), as a backtracking engine does. */
static size_t gpt2_match(const unsigned char *s, const cp_buf *c, size_t i, size_t b) {
    const uint8_t *cls = c->cls;
    const size_t *off = c->off;
    unsigned c0 = s[off[i]];
    if (c0 == '\'' && i + 1 < b) {
        unsigned c1 = s[off[i + 1]];
        if (c1 == 's' || c1 == 't' || c1 == 'm' || c1 == 'd') return i + 2;
        if (i + 2 < b) {
            unsigned c2 = s[off[i + 2]];
            if ((c1 == 'r' && c2 == 'e') || (c1 == 'v' && c2 == 'e') || (c1 == 'l' && c2 == 'l'))
                return i + 3;
        }
    }
    size_t k = i;
    if (c0 == ' ' && i + 1 < b && cls[i + 1] != MOA_UCD_SPACE) k = i + 1;   /* " ?" */
    uint8_t ck = cls[k];
    if (ck != MOA_UCD_SPACE) {          /* \p{L}+, \p{N}+ or [^\s\p{L}\p{N}]+ */
        size_t j = k + 1;
        while (j < b && cls[j] == ck) j++;
        return j;
    }
    size_t j = i + 1;                   /* whitespace run */
    while (j < b && cls[j] == MOA_UCD_SPACE) j++;
    if (j == b) return j;               /* \s+(?!\S) to the end */
    if (j - i >= 2) return j - 1;       /* \s+(?!\S): leave one space for the next word */
    return j;                           /* \s+ */
}

/* End of the Qwen2 pattern's match at i within [i, b):
 *   (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*
 *   |\s*[\r\n]+|\s+(?!\S)|\s+
 * Alternatives in order, first match wins. Contractions are ASCII, either case. */
static size_t qwen2_match(const unsigned char *s, const cp_buf *c, size_t i, size_t b) {
    const uint8_t *cls = c->cls;
    const size_t *off = c->off;
#define CP_ASCII(k) (s[off[k]] < 0x80 ? (unsigned)s[off[k]] | 0x20u : 0u)  /* lower-cased */
#define IS_CRLF(k) (s[off[k]] == '\r' || s[off[k]] == '\n')
    if (s[off[i]] == '\'' && i + 1 < b) {
        unsigned c1 = CP_ASCII(i + 1);
        if (c1 == 's' || c1 == 't' || c1 == 'm' || c1 == 'd') return i + 2;
        if (i + 2 < b) {
            unsigned c2 = CP_ASCII(i + 2);
            if ((c1 == 'r' && c2 == 'e') || (c1 == 'v' && c2 == 'e') || (c1 == 'l' && c2 == 'l'))
                return i + 3;
        }
    }
    /* [^\r\n\p{L}\p{N}]?\p{L}+ */
    size_t k = i;
    if (cls[i] != MOA_UCD_LETTER && cls[i] != MOA_UCD_NUMBER && !IS_CRLF(i) && i + 1 < b &&
        cls[i + 1] == MOA_UCD_LETTER)
        k = i + 1;
    if (cls[k] == MOA_UCD_LETTER) {
        size_t j = k + 1;
        while (j < b && cls[j] == MOA_UCD_LETTER) j++;
        return j;
    }
    if (cls[i] == MOA_UCD_NUMBER) return i + 1;                          /* \p{N} */
    /*  ?[^\s\p{L}\p{N}]+[\r\n]* */
    k = i;
    if (s[off[i]] == ' ' && i + 1 < b && cls[i + 1] == MOA_UCD_OTHER) k = i + 1;
    if (cls[k] == MOA_UCD_OTHER) {
        size_t j = k + 1;
        while (j < b && cls[j] == MOA_UCD_OTHER) j++;
        while (j < b && IS_CRLF(j)) j++;
        return j;
    }
    /* cls[i] is whitespace. \s*[\r\n]+ : up to the last \r or \n of the whitespace run */
    size_t j = i, last_nl = b;
    while (j < b && cls[j] == MOA_UCD_SPACE) {
        if (IS_CRLF(j)) last_nl = j;
        j++;
    }
    if (last_nl < b) return last_nl + 1;
    if (j == b) return j;               /* \s+(?!\S) to the end */
    if (j - i >= 2) return j - 1;       /* \s+(?!\S): leave one for the next piece */
    return j;                           /* \s+ */
#undef CP_ASCII
#undef IS_CRLF
}

typedef size_t (*match_fn)(const unsigned char *s, const cp_buf *c, size_t i, size_t b);

static moa_status pretok_range(const unsigned char *s, const cp_buf *c, size_t a, size_t b,
                               match_fn match, piece_cb cb, void *data) {
    while (a < b) {
        size_t e = match(s, c, a, b);
        MOA_TRY(cb(data, s + c->off[a], c->off[e] - c->off[a], -1));
        a = e;
    }
    return MOA_OK;
}

/* Splits a segment of valid UTF-8 without special tokens into pieces. */
static moa_status pretok_segment(const moa_tokenizer *t, const unsigned char *s, size_t n,
                                 cp_buf *c, piece_cb cb, void *data) {
    if (n == 0) return MOA_OK;
    size_t ncp = 0;
    for (size_t i = 0; i < n;) {
        uint32_t cp;
        size_t k = s[i] < 0x80 ? (cp = s[i], 1) : moa_utf8_decode(s + i, n - i, &cp);
        c->off[ncp] = i;
        c->cls[ncp] = (uint8_t)moa_ucd_class_of(cp);
        ncp++;
        i += k;
    }
    c->off[ncp] = n;
    if (t->pre == PRE_QWEN2) return pretok_range(s, c, 0, ncp, qwen2_match, cb, data);
    if (t->pre == PRE_GPT2) return pretok_range(s, c, 0, ncp, gpt2_match, cb, data);
    /* smollm: every \p{N} codepoint is a piece of its own; the pattern runs in between. */
    size_t a = 0;
    while (a < ncp) {
        if (c->cls[a] == MOA_UCD_NUMBER) {
            MOA_TRY(cb(data, s + c->off[a], c->off[a + 1] - c->off[a], -1));
            a++;
            continue;
        }
        size_t b = a + 1;
        while (b < ncp && c->cls[b] != MOA_UCD_NUMBER) b++;
        MOA_TRY(pretok_range(s, c, a, b, gpt2_match, cb, data));
        a = b;
    }
    return MOA_OK;
}

/* Cleans the text (invalid UTF-8 -> U+FFFD), splits out special tokens and pre-tokenizes
 * the rest, calling cb for every piece in order. */
static moa_status split_text(const moa_tokenizer *t, const char *text, size_t len,
                             int parse_special, piece_cb cb, void *data) {
    const unsigned char *s = (const unsigned char *)text;
    unsigned char *clean = NULL;
    if (!moa_utf8_valid(s, len)) {
        if (len > SIZE_MAX / 3) return moa_err(MOA_ERR_NOMEM, "tokenizer: text too long");
        clean = malloc(3 * len);
        if (!clean) return moa_err(MOA_ERR_NOMEM, "tokenizer: out of memory");
        size_t o = 0;
        for (size_t i = 0; i < len;) {
            uint32_t cp;
            size_t k = moa_utf8_decode(s + i, len - i, &cp);
            if (cp == MOA_UTF8_REPLACEMENT) o += (size_t)moa_utf8_encode(cp, clean + o);
            else { memcpy(clean + o, s + i, k); o += k; }
            i += k;
        }
        s = clean;
        len = o;
    }
    cp_buf c = {0};
    c.cap = len;
    c.cls = malloc(len ? len : 1);
    c.off = moa_alloc_array(len + 1, sizeof *c.off);
    moa_status st = MOA_OK;
    if (!c.cls || !c.off) { st = moa_err(MOA_ERR_NOMEM, "tokenizer: out of memory"); goto done; }

    size_t seg = 0;
    for (size_t p = 0; p < len; p++) {
        unsigned b = s[p];
        int32_t lo = t->spec_start[b], hi = t->spec_start[b + 1];
        if (lo == hi || (b & 0xC0) == 0x80) continue;
        for (int32_t k = lo; k < hi; k++) {
            int32_t id = t->spec[k];
            if (!parse_special && t->type[id] != MOA_TOKEN_USER_DEFINED) continue;
            size_t n = t->raw_len[id];
            if (n > len - p || memcmp(s + p, t->raw_blob + t->raw_off[id], n) != 0) continue;
            if ((st = pretok_segment(t, s + seg, p - seg, &c, cb, data)) < 0) goto done;
            if ((st = cb(data, s + p, n, id)) < 0) goto done;
            p += n - 1;
            seg = p + 1;
            break;
        }
    }
    st = pretok_segment(t, s + seg, len - seg, &c, cb, data);
done:
    free(c.cls);
    free(c.off);
    free(clean);
    return st;
}

typedef struct { moa_piece_fn fn; void *data; } user_pieces;

static moa_status user_piece_cb(void *data, const unsigned char *s, size_t n, int32_t special) {
    user_pieces *u = data;
    u->fn(u->data, (const char *)s, n, special);
    return MOA_OK;
}

moa_status moa_tokenizer_pieces(const moa_tokenizer *t, const char *text, size_t len,
                                int parse_special, moa_piece_fn fn, void *data) {
    if (!t || !fn || (!text && len))
        return moa_err(MOA_ERR_INVALID_ARG, "tokenizer_pieces: NULL argument");
    user_pieces u = {fn, data};
    return split_text(t, text ? text : "", len, parse_special, user_piece_cb, &u);
}

/* ---- BPE -------------------------------------------------------------------------------- */

enum { BARRIER = -2 };   /* symbol id of a byte that has no token */

typedef struct {
    uint64_t key;       /* rank << 32 | left position: lowest rank, then leftmost */
    int32_t lid, rid;   /* ids of the pair when pushed (stale entries are skipped) */
} heap_ent;

typedef struct {
    const moa_tokenizer *t;
    ivec out;
    int32_t *id, *next, *prev;   /* per symbol; id -1 = merged away */
    size_t sym_cap;
    heap_ent *heap;
    size_t heap_n, heap_cap;
} bpe_state;

static int heap_push(bpe_state *b, uint64_t key, int32_t lid, int32_t rid) {
    if (b->heap_n == b->heap_cap) {
        size_t nc = b->heap_cap ? b->heap_cap * 2 : 64;
        heap_ent *nh = moa_alloc_array(nc, sizeof *nh);
        if (!nh) return -1;
        if (b->heap_n) memcpy(nh, b->heap, b->heap_n * sizeof *nh);
        free(b->heap);
        b->heap = nh;
        b->heap_cap = nc;
    }
    size_t i = b->heap_n++;
    heap_ent e = {key, lid, rid};
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (b->heap[p].key <= key) break;
        b->heap[i] = b->heap[p];
        i = p;
    }
    b->heap[i] = e;
    return 0;
}

static heap_ent heap_pop(bpe_state *b) {
    heap_ent top = b->heap[0];
    heap_ent last = b->heap[--b->heap_n];
    size_t i = 0, n = b->heap_n;
    for (;;) {
        size_t l = 2 * i + 1;
        if (l >= n) break;
        size_t m = (l + 1 < n && b->heap[l + 1].key < b->heap[l].key) ? l + 1 : l;
        if (b->heap[m].key >= last.key) break;
        b->heap[i] = b->heap[m];
        i = m;
    }
    if (n) b->heap[i] = last;
    return top;
}

static int push_pair(bpe_state *b, int32_t l, int32_t r) {
    if (l < 0 || r < 0 || b->id[l] < 0 || b->id[r] < 0) return 0;
    int32_t res;
    int32_t rank = merge_find(b->t, b->id[l], b->id[r], &res);
    if (rank < 0) return 0;
    return heap_push(b, ((uint64_t)(uint32_t)rank << 32) | (uint32_t)l, b->id[l], b->id[r]);
}

static moa_status bpe_piece(void *data, const unsigned char *s, size_t n, int32_t special) {
    bpe_state *b = data;
    const moa_tokenizer *t = b->t;
    if (special >= 0) {
        if (ivec_push(&b->out, special)) return moa_err(MOA_ERR_NOMEM, "tokenizer: out of memory");
        return MOA_OK;
    }
    if (n == 0) return MOA_OK;
    if (n > INT32_MAX) return moa_err(MOA_ERR_RANGE, "tokenizer: piece of %zu bytes", n);
    if (n > b->sym_cap) {
        size_t nc = n < 256 ? 256 : n;
        free(b->id); free(b->next); free(b->prev);
        b->id = moa_alloc_array(nc, sizeof *b->id);
        b->next = moa_alloc_array(nc, sizeof *b->next);
        b->prev = moa_alloc_array(nc, sizeof *b->prev);
        b->sym_cap = b->id && b->next && b->prev ? nc : 0;
        if (!b->sym_cap) return moa_err(MOA_ERR_NOMEM, "tokenizer: out of memory");
    }
    /* One symbol per byte. A byte without a token is a barrier (BARRIER): no merge spans
     * it, and it is dropped from the output, as llama.cpp does (Hugging Face drops it
     * first, so its neighbours may merge; see docs/tokenizer.md). */
    for (size_t i = 0; i < n; i++) {
        int32_t id = t->byte_id[s[i]];
        b->id[i] = id >= 0 ? id : BARRIER;
        b->prev[i] = (int32_t)i - 1;
        b->next[i] = (int32_t)i + 1;
    }
    b->next[n - 1] = -1;
    b->heap_n = 0;
    for (size_t i = 0; i + 1 < n; i++)
        if (push_pair(b, (int32_t)i, (int32_t)i + 1))
            return moa_err(MOA_ERR_NOMEM, "tokenizer: out of memory");
    while (b->heap_n) {
        heap_ent e = heap_pop(b);
        int32_t l = (int32_t)(uint32_t)e.key;
        if (b->id[l] != e.lid) continue;
        int32_t r = b->next[l];
        if (r < 0 || b->id[r] != e.rid) continue;
        int32_t res = -1;
        merge_find(t, e.lid, e.rid, &res);
        b->id[l] = res;
        b->id[r] = -1;
        b->next[l] = b->next[r];
        if (b->next[r] >= 0) b->prev[b->next[r]] = l;
        if (push_pair(b, b->prev[l], l) || push_pair(b, l, b->next[l]))
            return moa_err(MOA_ERR_NOMEM, "tokenizer: out of memory");
    }
    for (int32_t i = 0; i >= 0; i = b->next[i])
        if (b->id[i] != BARRIER && ivec_push(&b->out, b->id[i]))
            return moa_err(MOA_ERR_NOMEM, "tokenizer: out of memory");
    return MOA_OK;
}

moa_status moa_tokenizer_encode(const moa_tokenizer *t, const char *text, size_t len,
                                int parse_special, int32_t **ids, int32_t *n_ids) {
    if (!t || !ids || !n_ids || (!text && len))
        return moa_err(MOA_ERR_INVALID_ARG, "tokenizer_encode: NULL argument");
    *ids = NULL;
    *n_ids = 0;
    bpe_state b;
    memset(&b, 0, sizeof b);
    b.t = t;
    moa_status st = MOA_OK;
    if (ivec_push(&b.out, 0)) {         /* *ids is non-NULL even for zero tokens */
        st = moa_err(MOA_ERR_NOMEM, "tokenizer: out of memory");
        goto done;
    }
    b.out.n = 0;
    if (t->add_bos && ivec_push(&b.out, t->bos)) {
        st = moa_err(MOA_ERR_NOMEM, "tokenizer: out of memory");
        goto done;
    }
    st = split_text(t, text ? text : "", len, parse_special, bpe_piece, &b);
    if (st >= 0 && b.out.n > INT32_MAX)
        st = moa_err(MOA_ERR_RANGE, "tokenizer: more than 2^31 tokens");
done:
    free(b.id); free(b.next); free(b.prev); free(b.heap);
    if (st < 0) { free(b.out.v); return st; }
    *ids = b.out.v;
    *n_ids = (int32_t)b.out.n;
    return MOA_OK;
}

/* ---- decoding --------------------------------------------------------------------------- */

size_t moa_tokenizer_max_piece_bytes(const moa_tokenizer *t) {
    return 3 * (t->max_raw + 3) + 1;
}

/* Appends the bytes p[0..n) to the pending sequence pend[0..*np), writing the complete
 * (valid or replaced) UTF-8 to out (NULL: only count). The new incomplete tail is stored
 * in newp/newnp. Returns the output length. */
static size_t utf8_stream(const unsigned char *pend, int np, const unsigned char *p, size_t n,
                          char *out, unsigned char *newp, int *newnp) {
    static const unsigned char fffd[3] = {0xEF, 0xBF, 0xBD};
    size_t o = 0, i = 0;
    *newnp = 0;
    if (np > 0) {
        unsigned char tmp[8];
        size_t m = n < (size_t)(8 - np) ? n : (size_t)(8 - np);
        memcpy(tmp, pend, (size_t)np);
        memcpy(tmp + np, p, m);
        uint32_t cp;
        size_t k = moa_utf8_decode_partial(tmp, (size_t)np + m, &cp);
        if (k == 0) {                       /* still incomplete: hold everything */
            memcpy(newp, tmp, (size_t)np + m);
            *newnp = np + (int)m;
            return 0;
        }
        if (cp == MOA_UTF8_REPLACEMENT && !(k == 3 && tmp[0] == 0xEF)) {
            if (out) memcpy(out, fffd, 3);
            o = 3;
            /* the held bytes were a valid prefix, so k <= np: resume at p[k - np] */
            i = k > (size_t)np ? k - (size_t)np : 0;
        } else {
            if (out) memcpy(out, tmp, k);
            o = k;
            i = k - (size_t)np;
        }
    }
    while (i < n) {
        if (p[i] < 0x80) { if (out) out[o] = (char)p[i]; o++; i++; continue; }
        uint32_t cp;
        size_t k = moa_utf8_decode_partial(p + i, n - i, &cp);
        if (k == 0) {
            memcpy(newp, p + i, n - i);
            *newnp = (int)(n - i);
            break;
        }
        if (cp == MOA_UTF8_REPLACEMENT && !(k == 3 && p[i] == 0xEF)) {
            if (out) memcpy(out + o, fffd, 3);
            o += 3;
        } else {
            if (out) memcpy(out + o, p + i, k);
            o += k;
        }
        i += k;
    }
    return o;
}

size_t moa_tokenizer_decode_token(const moa_tokenizer *t, moa_detok *st, int32_t id,
                                  char *buf, size_t cap) {
    moa_detok fresh;
    if (!st) { memset(&fresh, 0, sizeof fresh); st = &fresh; }
    const unsigned char *p = NULL;
    size_t n = 0;
    if (t && id >= 0 && id < t->n_vocab) {
        int ty = t->type[id];
        if (st->special || (ty != MOA_TOKEN_CONTROL && ty != MOA_TOKEN_UNKNOWN)) {
            p = t->raw_blob + t->raw_off[id];
            n = t->raw_len[id];
        }
    }
    if (st->n_pending < 0 || st->n_pending > 3) st->n_pending = 0;
    unsigned char np[8];
    int nn;
    size_t need = utf8_stream(st->pending, st->n_pending, p, n, NULL, np, &nn);
    if (need >= cap) return need;
    utf8_stream(st->pending, st->n_pending, p, n, buf, np, &nn);
    buf[need] = '\0';
    memcpy(st->pending, np, sizeof np);
    st->n_pending = nn;
    return need;
}

size_t moa_tokenizer_decode_flush(moa_detok *st, char *buf, size_t cap) {
    if (st->n_pending <= 0) {
        st->n_pending = 0;
        if (cap) buf[0] = '\0';
        return 0;
    }
    if (cap < 4) return 3;
    memcpy(buf, "\xEF\xBF\xBD", 4);
    st->n_pending = 0;
    return 3;
}

moa_status moa_tokenizer_decode(const moa_tokenizer *t, const int32_t *ids, int32_t n,
                                int special, char **out) {
    if (!t || !out || (!ids && n > 0) || n < 0)
        return moa_err(MOA_ERR_INVALID_ARG, "tokenizer_decode: bad argument");
    *out = NULL;
    size_t piece = moa_tokenizer_max_piece_bytes(t);
    size_t cap = piece + 64, len = 0;
    char *s = malloc(cap);
    if (!s) return moa_err(MOA_ERR_NOMEM, "tokenizer: out of memory");
    moa_detok st;
    memset(&st, 0, sizeof st);
    st.special = special ? 1 : 0;
    for (int32_t i = 0; i <= n; i++) {
        if (cap - len < piece) {
            size_t nc = cap * 2;
            char *ns = realloc(s, nc);
            if (!ns) { free(s); return moa_err(MOA_ERR_NOMEM, "tokenizer: out of memory"); }
            s = ns;
            cap = nc;
        }
        if (i == n) {
            len += moa_tokenizer_decode_flush(&st, s + len, cap - len);
            break;
        }
        if (ids[i] < 0 || ids[i] >= t->n_vocab) {
            free(s);
            return moa_err(MOA_ERR_INVALID_ARG, "tokenizer_decode: id %d at position %d is out "
                           "of range [0, %d)", (int)ids[i], (int)i, (int)t->n_vocab);
        }
        len += moa_tokenizer_decode_token(t, &st, ids[i], s + len, cap - len);
    }
    s[len] = '\0';
    *out = s;
    return MOA_OK;
}

/* ---- vocabulary ------------------------------------------------------------------------- */

int32_t moa_tokenizer_n_vocab(const moa_tokenizer *t) { return t ? t->n_vocab : 0; }

const char *moa_tokenizer_token(const moa_tokenizer *t, int32_t id) {
    return t && id >= 0 && id < t->n_vocab ? t->text[id] : NULL;
}

const char *moa_tokenizer_token_bytes(const moa_tokenizer *t, int32_t id, size_t *len) {
    if (!t || id < 0 || id >= t->n_vocab) { if (len) *len = 0; return NULL; }
    if (len) *len = t->raw_len[id];
    return (const char *)t->raw_blob + t->raw_off[id];
}

moa_token_type moa_tokenizer_token_type(const moa_tokenizer *t, int32_t id) {
    return t && id >= 0 && id < t->n_vocab ? (moa_token_type)t->type[id] : MOA_TOKEN_UNUSED;
}

int32_t moa_tokenizer_find_token(const moa_tokenizer *t, const char *text) {
    if (!t || !text) return -1;
    for (int32_t i = 0; i < t->n_vocab; i++)
        if (strcmp(t->text[i], text) == 0) return i;
    return -1;
}

int32_t moa_tokenizer_bos(const moa_tokenizer *t) { return t ? t->bos : -1; }
int32_t moa_tokenizer_eos(const moa_tokenizer *t) { return t ? t->eos : -1; }
int moa_tokenizer_add_bos(const moa_tokenizer *t) { return t ? t->add_bos : 0; }

int moa_tokenizer_is_eog(const moa_tokenizer *t, int32_t id) {
    if (!t || id < 0) return 0;
    for (int i = 0; i < t->n_eog; i++)
        if (t->eog[i] == id) return 1;
    return 0;
}

const char *moa_tokenizer_pre(const moa_tokenizer *t) {
    if (!t) return "gpt2";
    return t->pre == PRE_SMOLLM ? "smollm" : t->pre == PRE_QWEN2 ? "qwen2" : "gpt2";
}

/* ---- chat ------------------------------------------------------------------------------- */

typedef struct { char *s; size_t n, cap; int oom; } sbuf;

static void sb_add(sbuf *b, const char *s) {
    size_t k = strlen(s);
    if (b->oom) return;
    if (b->n + k + 1 > b->cap) {
        size_t nc = b->cap ? b->cap : 256;
        while (nc < b->n + k + 1) nc *= 2;
        char *ns = realloc(b->s, nc);
        if (!ns) { b->oom = 1; return; }
        b->s = ns;
        b->cap = nc;
    }
    memcpy(b->s + b->n, s, k + 1);
    b->n += k;
}

moa_status moa_chat_render(const moa_tokenizer *t, const moa_chat_msg *msgs, int n,
                           int add_generation_prompt, char **out) {
    if (!t || !out || n < 0 || (!msgs && n > 0))
        return moa_err(MOA_ERR_INVALID_ARG, "chat_render: bad argument");
    *out = NULL;
    if (!t->chat_template)
        return moa_err(MOA_ERR_UNSUPPORTED, "chat_render: the model has no chat template "
                       "(tokenizer.chat_template)");
    if (!t->chat_chatml)
        return moa_err(MOA_ERR_UNSUPPORTED, "chat_render: unsupported chat template (only the "
                       "ChatML family with <|im_start|> is implemented; we do not run Jinja)");
    for (int i = 0; i < n; i++)
        if (!msgs[i].role || !msgs[i].content)
            return moa_err(MOA_ERR_INVALID_ARG, "chat_render: message %d has a NULL %s", i,
                           msgs[i].role ? "content" : "role");
    sbuf b = {0};
    sb_add(&b, "");
    if (n > 0 && strcmp(msgs[0].role, "system") != 0 && t->chat_default_system) {
        sb_add(&b, "<|im_start|>system\n");
        sb_add(&b, t->chat_default_system);
        sb_add(&b, "<|im_end|>\n");
    }
    for (int i = 0; i < n; i++) {
        sb_add(&b, "<|im_start|>");
        sb_add(&b, msgs[i].role);
        sb_add(&b, "\n");
        sb_add(&b, msgs[i].content);
        sb_add(&b, "<|im_end|>\n");
    }
    if (add_generation_prompt) sb_add(&b, "<|im_start|>assistant\n");
    if (b.oom) { free(b.s); return moa_err(MOA_ERR_NOMEM, "chat_render: out of memory"); }
    *out = b.s;
    return MOA_OK;
}
