/* tasks.c - task generators: LongEval lines (byte-exact), RULER-style needles, the built-in
 * long-dependency task, and JSONL prompts with first+last-half trimming.
 *
 * Determinism: a sample is a pure function of (spec, seed, size, record). Random draws come
 * from gsl mt19937 streams of the seed (calib_rng): stream 0 draws the contents in order
 * (so a larger size extends a smaller one as a prefix), stream 1 draws positions (queried
 * line, needle depths, fact positions), stream 2 draws filler. Texts: docs/calibration.md. */
#include "calib-internal.h"

#include <stdlib.h>
#include <string.h>

/* ---- LongEval strings (benchmark data: byte for byte) ------------------------------------- */
static const char LINES_HEADER[] =
    "Below is a record of lines I want you to remember. Each line begins with 'line <line "
    "index>' and contains a '<REGISTER_CONTENT>' at the end of the line as a numerical value. "
    "For each line index, memorize its corresponding <REGISTER_CONTENT>. At the end of the "
    "record, I will ask you to retrieve the corresponding <REGISTER_CONTENT> of a certain line "
    "index. Now the record start:\n\n";
static const char LINES_QUESTION_FMT[] =
    "\nNow the record is over. Tell me what is the <REGISTER_CONTENT> in line %s? I need the "
    "number.";

/* ---- RULER strings ------------------------------------------------------------------------ */
static const char NOISE_UNIT[] =
    "The grass is green. The sky is blue. The sun is yellow. Here we go. There and back again.";

/* ---- long-dependency task strings --------------------------------------------------------- */
static const char *const CITIES[] = {
    "Ashford", "Brightwater", "Coldharbor", "Dunmore", "Eastwick", "Fairhaven",
    "Glenrock", "Highmoor", "Ironbridge", "Lakeview", "Millbrook", "Northgate",
};
#define N_CITIES ((int)(sizeof CITIES / sizeof CITIES[0]))
static const char *const FILLER[] = {
    "The weather stayed mild for most of the week.",
    "A delivery truck stopped briefly outside the old library.",
    "Several committees met in the afternoon to review the budget.",
    "The river was higher than usual after the spring rains.",
    "Nobody could remember when the clock tower had last been repaired.",
    "A new bakery opened near the station and sold out by noon.",
    "The museum extended its opening hours for the summer season.",
    "Workers repainted the railings along the harbor walk.",
    "The local choir rehearsed until late in the evening.",
    "Traffic on the main road slowed because of roadworks.",
    "The school announced a science fair for the following month.",
    "A light wind carried the smell of cut grass across the park.",
    "The market sold apples, pears and a few late plums.",
    "An old map of the region was found in a storage room.",
    "The ferry timetable changed at the start of the month.",
    "Volunteers planted a row of young trees along the avenue.",
};
#define N_FILLER ((int)(sizeof FILLER / sizeof FILLER[0]))

moa_task_spec moa_task_spec_default(moa_task_kind kind) {
    moa_task_spec s;
    memset(&s, 0, sizeof s);
    s.kind = kind;
    s.query_index = -1;
    s.position_bin = -1;
    s.lines_value_max = 50000;
    s.needle_variant = MOA_NEEDLE_SINGLE;
    s.needle_type = MOA_NEEDLE_NUMBERS;
    s.needle_keys = 4;
    s.needle_values = 4;
    s.needle_queries = 2;
    s.longdep_people = 0;   /* auto: by target length in moa_task_fit, else 24 */
    s.longdep_cities = 6;
    return s;
}

const char *moa_task_name(const moa_task_spec *spec) {
    switch (spec->kind) {
    case MOA_TASK_LINES: return "lines";
    case MOA_TASK_NEEDLE:
        switch (spec->needle_variant) {
        case MOA_NEEDLE_SINGLE: return "needle-single";
        case MOA_NEEDLE_MULTIKEY: return "needle-multikey";
        case MOA_NEEDLE_MULTIVALUE: return "needle-multivalue";
        case MOA_NEEDLE_MULTIQUERY: return "needle-multiquery";
        }
        return "needle-?";
    case MOA_TASK_LONGDEP: return "longdep";
    case MOA_TASK_JSONL: return "jsonl";
    }
    return "?";
}

void moa_task_sample_clear(moa_task_sample *s) {
    if (!s) return;
    free(s->task); free(s->prompt); free(s->expected); free(s->params);
    memset(s, 0, sizeof *s);
    s->query_index = s->position_bin = -1;
    s->record = -1;
}

/* ---- helpers ------------------------------------------------------------------------------ */
/* Set of 64-bit keys (word-pair indices), open addressing. */
typedef struct { uint64_t *k; size_t cap, n; } keyset;

static int keyset_add(keyset *s, uint64_t key) {  /* 1 added, 0 present, -1 nomem */
    key += 1;  /* 0 marks empty */
    if (2 * (s->n + 1) > s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 64;
        uint64_t *k = moa_calloc_array(cap, sizeof *k);
        if (!k) return -1;
        for (size_t i = 0; i < s->cap; i++) {
            if (!s->k[i]) continue;
            size_t h = (size_t)calib_mix64(s->k[i]) & (cap - 1);
            while (k[h]) h = (h + 1) & (cap - 1);
            k[h] = s->k[i];
        }
        free(s->k);
        s->k = k;
        s->cap = cap;
    }
    size_t h = (size_t)calib_mix64(key) & (s->cap - 1);
    while (s->k[h]) {
        if (s->k[h] == key) return 0;
        h = (h + 1) & (s->cap - 1);
    }
    s->k[h] = key;
    s->n++;
    return 1;
}

/* Draws a "word1-word2" label (two different words) not yet in `used`: word indices a, b
 * from gsl_rng_uniform_int, redrawn while a == b or the pair was used. */
static moa_status draw_pair(gsl_rng *r, const moa_wordlist *wl, keyset *used, size_t *a_out,
                            size_t *b_out) {
    size_t W = moa_wordlist_count(wl);
    for (int attempt = 0; attempt < 100000; attempt++) {
        size_t a = gsl_rng_uniform_int(r, W), b = gsl_rng_uniform_int(r, W);
        if (a == b) continue;
        int added = keyset_add(used, (uint64_t)a * W + b);
        if (added < 0) return moa_err(MOA_ERR_NOMEM, "out of memory drawing labels");
        if (added) { *a_out = a; *b_out = b; return MOA_OK; }
    }
    return moa_err(MOA_ERR_RANGE, "word list '%s' (%zu words) too small for this many unique labels",
                   moa_wordlist_source(wl), W);
}

static void put_pair(moa_sb *b, const moa_wordlist *wl, size_t x, size_t y, char sep, int title) {
    const char *w1 = moa_wordlist_word(wl, x), *w2 = moa_wordlist_word(wl, y);
    if (title) {
        char c = (char)(w1[0] - 'a' + 'A');
        sb_putn(b, &c, 1);
        sb_puts(b, w1 + 1);
        sb_putn(b, &sep, 1);
        c = (char)(w2[0] - 'a' + 'A');
        sb_putn(b, &c, 1);
        sb_puts(b, w2 + 1);
    } else {
        sb_puts(b, w1);
        sb_putn(b, &sep, 1);
        sb_puts(b, w2);
    }
}

/* Index in 0..n-1 of the queried item: exact, inside a tenth, or uniform (stream-1 draws). */
static moa_status choose_position(const moa_task_spec *spec, int64_t n, gsl_rng *r1, int64_t *out) {
    if (spec->query_index >= 0) {
        if (spec->query_index >= n)
            return moa_err(MOA_ERR_RANGE, "query_index %d out of range: the sample has %lld items",
                           spec->query_index, (long long)n);
        *out = spec->query_index;
        return MOA_OK;
    }
    if (spec->position_bin >= 0) {
        if (spec->position_bin > 9)
            return moa_err(MOA_ERR_INVALID_ARG, "position_bin %d: must be 0..9", spec->position_bin);
        int64_t b = spec->position_bin;
        int64_t lo = (b * n + 9) / 10, hi = ((b + 1) * n + 9) / 10;  /* floor(10*i/n)==b */
        if (hi <= lo) {  /* fewer than 10 items: the bin is empty; take the nearest item */
            *out = b * n / 10 < n ? b * n / 10 : n - 1;
            return MOA_OK;
        }
        *out = lo + (int64_t)gsl_rng_uniform_int(r1, (unsigned long)(hi - lo));
        return MOA_OK;
    }
    *out = (int64_t)gsl_rng_uniform_int(r1, (unsigned long)n);
    return MOA_OK;
}

static int bin_of(int64_t idx, int64_t n) { return n > 0 ? (int)(10 * idx / n) : -1; }

static moa_status finish_sample(moa_task_sample *out, const moa_task_spec *spec, moa_sb *prompt,
                                moa_sb *expected, moa_sb *params, int has_expected) {
    out->task = moa_strdup(moa_task_name(spec));
    out->prompt = sb_finish(prompt);
    out->expected = has_expected ? sb_finish(expected) : NULL;
    if (!has_expected) sb_free(expected);
    out->params = sb_finish(params);
    if (!out->task || !out->prompt || (has_expected && !out->expected) || !out->params) {
        moa_task_sample_clear(out);
        return moa_err(MOA_ERR_NOMEM, "out of memory generating a %s sample", moa_task_name(spec));
    }
    return MOA_OK;
}

/* ---- LongEval lines ----------------------------------------------------------------------- */
static moa_status gen_lines(const moa_task_spec *spec, uint32_t seed, int64_t n,
                            moa_task_sample *out) {
    const moa_wordlist *wl = spec->words;
    size_t W = moa_wordlist_count(wl);
    if ((double)n > (double)W * (double)(W - 1))
        return moa_err(MOA_ERR_RANGE, "%lld lines need more unique labels than word list '%s' "
                       "(%zu words) has", (long long)n, moa_wordlist_source(wl), W);
    if (spec->lines_value_max < 1)
        return moa_err(MOA_ERR_INVALID_ARG, "lines_value_max %d: must be >= 1", spec->lines_value_max);
    gsl_rng *r0 = calib_rng(seed, 0), *r1 = calib_rng(seed, 1);
    size_t *la = moa_alloc_array((size_t)n, sizeof *la), *lb = moa_alloc_array((size_t)n, sizeof *lb);
    unsigned long *val = moa_alloc_array((size_t)n, sizeof *val);
    keyset used = {0};
    moa_sb p, e, j;
    sb_init(&p); sb_init(&e); sb_init(&j);
    moa_status st = MOA_OK;
    if (!r0 || !r1 || !la || !lb || !val) { st = moa_err(MOA_ERR_NOMEM, "out of memory generating lines"); goto done; }
    /* Stream 0, per line in order: label words (redrawn on collision), then the value. */
    for (int64_t i = 0; i < n && st >= 0; i++) {
        st = draw_pair(r0, wl, &used, &la[i], &lb[i]);
        val[i] = 1 + gsl_rng_uniform_int(r0, (unsigned long)spec->lines_value_max);
    }
    if (st < 0) goto done;
    int64_t q;
    if ((st = choose_position(spec, n, r1, &q)) < 0) goto done;
    sb_puts(&p, LINES_HEADER);
    for (int64_t i = 0; i < n; i++) {
        sb_puts(&p, "line ");
        put_pair(&p, wl, la[i], lb[i], '-', 0);
        sb_printf(&p, ": REGISTER_CONTENT is <%lu>\n", val[i]);
    }
    moa_sb label;
    sb_init(&label);
    put_pair(&label, wl, la[q], lb[q], '-', 0);
    char *lab = sb_finish(&label);
    if (!lab) { st = moa_err(MOA_ERR_NOMEM, "out of memory"); goto done; }
    sb_printf(&p, LINES_QUESTION_FMT, lab);
    sb_printf(&e, "%lu", val[q]);
    sb_printf(&j, "{\"task\":\"lines\",\"seed\":%u,\"n_lines\":%lld,\"query_index\":%lld,"
              "\"position_bin\":%d,\"query_label\":", seed, (long long)n, (long long)q, bin_of(q, n));
    sb_json_str(&j, lab);
    sb_printf(&j, ",\"value_max\":%d,\"words_sha256\":\"%s\"}", spec->lines_value_max,
              moa_wordlist_sha256(wl));
    free(lab);
    out->query_index = (int)q;
    out->position_bin = bin_of(q, n);
    st = finish_sample(out, spec, &p, &e, &j, 1);
done:
    if (st < 0) { sb_free(&p); sb_free(&e); sb_free(&j); }
    free(used.k); free(la); free(lb); free(val);
    if (r0) gsl_rng_free(r0);
    if (r1) gsl_rng_free(r1);
    return st;
}

/* ---- needles ------------------------------------------------------------------------------ */
typedef struct { int64_t pos; int idx; } needle_at;
static int cmp_needle_at(const void *a, const void *b) {
    const needle_at *x = a, *y = b;
    if (x->pos != y->pos) return x->pos < y->pos ? -1 : 1;
    return x->idx - y->idx;
}

/* Writes a needle value for needle i into b (stream 0 draws). */
static moa_status needle_value(const moa_task_spec *spec, gsl_rng *r0, keyset *used, moa_sb *b) {
    switch (spec->needle_type) {
    case MOA_NEEDLE_NUMBERS:
        sb_printf(b, "%lu", 1000000 + gsl_rng_uniform_int(r0, 9000000));
        return MOA_OK;
    case MOA_NEEDLE_WORDS: {
        size_t a, c;
        MOA_TRY(draw_pair(r0, spec->words, used, &a, &c));
        put_pair(b, spec->words, a, c, '-', 0);
        return MOA_OK;
    }
    case MOA_NEEDLE_UUIDS: {
        static const char hex[] = "0123456789abcdef";
        char u[37];
        for (int i = 0, k = 0; i < 36; i++) {
            if (i == 8 || i == 13 || i == 18 || i == 23) { u[i] = '-'; continue; }
            unsigned long v = gsl_rng_uniform_int(r0, 16);
            if (k == 12) v = 4;                     /* version nibble */
            if (k == 16) v = 8 + (v & 3);           /* variant nibble */
            u[i] = hex[v];
            k++;
        }
        u[36] = '\0';
        sb_puts(b, u);
        return MOA_OK;
    }
    }
    return moa_err(MOA_ERR_INVALID_ARG, "unknown needle type %d", (int)spec->needle_type);
}

/* Text haystack: whitespace-separated words of the text (pointers + lengths). */
static moa_status split_words(const char *text, const char ***w, size_t **wl, size_t *n) {
    size_t cap = 0, k = 0;
    for (const char *p = text; *p;) {
        while (*p == ' ' || *p == '\n' || *p == '\t' || *p == '\r') p++;
        if (!*p) break;
        cap++;
        while (*p && !(*p == ' ' || *p == '\n' || *p == '\t' || *p == '\r')) p++;
    }
    if (cap == 0) return moa_err(MOA_ERR_INVALID_ARG, "haystack text has no words");
    *w = moa_alloc_array(cap, sizeof **w);
    *wl = moa_alloc_array(cap, sizeof **wl);
    if (!*w || !*wl) { free(*w); free(*wl); return moa_err(MOA_ERR_NOMEM, "out of memory"); }
    for (const char *p = text; *p;) {
        while (*p == ' ' || *p == '\n' || *p == '\t' || *p == '\r') p++;
        if (!*p) break;
        const char *s = p;
        while (*p && !(*p == ' ' || *p == '\n' || *p == '\t' || *p == '\r')) p++;
        (*w)[k] = s;
        (*wl)[k] = (size_t)(p - s);
        k++;
    }
    *n = k;
    return MOA_OK;
}

static moa_status gen_needle(const moa_task_spec *spec, uint32_t seed, int64_t n,
                             moa_task_sample *out) {
    const moa_wordlist *wl = spec->words;
    int m, asked, same_key = 0;
    switch (spec->needle_variant) {
    case MOA_NEEDLE_SINGLE: m = 1; asked = 1; break;
    case MOA_NEEDLE_MULTIKEY: m = spec->needle_keys; asked = 1; break;
    case MOA_NEEDLE_MULTIVALUE: m = spec->needle_values; asked = m; same_key = 1; break;
    case MOA_NEEDLE_MULTIQUERY: m = spec->needle_keys; asked = spec->needle_queries; break;
    default: return moa_err(MOA_ERR_INVALID_ARG, "unknown needle variant %d", (int)spec->needle_variant);
    }
    if (m < 1 || m > 1000 || asked < 1 || asked > m)
        return moa_err(MOA_ERR_INVALID_ARG, "needle counts: %d needles with %d asked (need 1 <= asked "
                       "<= needles <= 1000; check needle_keys/needle_values/needle_queries)", m, asked);
    const char *tn = spec->needle_type == MOA_NEEDLE_NUMBERS ? "number"
                   : spec->needle_type == MOA_NEEDLE_WORDS ? "word" : "uuid";
    const char **tw = NULL;
    size_t *twl = NULL, ntw = 0;
    if (spec->haystack_text) MOA_TRY(split_words(spec->haystack_text, &tw, &twl, &ntw));

    gsl_rng *r0 = calib_rng(seed, 0), *r1 = calib_rng(seed, 1);
    char **keys = moa_calloc_array((size_t)m, sizeof *keys), **vals = moa_calloc_array((size_t)m, sizeof *vals);
    needle_at *at = moa_alloc_array((size_t)m, sizeof *at);
    keyset used = {0};
    moa_sb p, e, j, tmp;
    sb_init(&p); sb_init(&e); sb_init(&j); sb_init(&tmp);
    moa_status st = MOA_OK;
    if (!r0 || !r1 || !keys || !vals || !at) { st = moa_err(MOA_ERR_NOMEM, "out of memory generating needles"); goto done; }
    /* Stream 0: each needle's key (a new one unless multivalue), then its value. */
    for (int i = 0; i < m; i++) {
        if (i == 0 || !same_key) {
            size_t a, b;
            if ((st = draw_pair(r0, wl, &used, &a, &b)) < 0) goto done;
            put_pair(&tmp, wl, a, b, '-', 0);
        } else {
            sb_puts(&tmp, keys[0]);
        }
        keys[i] = sb_finish(&tmp);
        if ((st = needle_value(spec, r0, &used, &tmp)) < 0) goto done;
        vals[i] = sb_finish(&tmp);
        if (!keys[i] || !vals[i]) { st = moa_err(MOA_ERR_NOMEM, "out of memory"); goto done; }
    }
    /* Stream 1: depths. Needle 0 (the asked one) follows query_index / position_bin; the
     * others are uniform. A needle at position k is inserted before haystack unit k. */
    for (int i = 0; i < m; i++) {
        int64_t pos;
        if (i == 0) {
            if ((st = choose_position(spec, n, r1, &pos)) < 0) goto done;
        } else {
            pos = (int64_t)gsl_rng_uniform_int(r1, (unsigned long)n);
        }
        at[i].pos = pos;
        at[i].idx = i;
    }
    int64_t q = at[0].pos;
    qsort(at, (size_t)m, sizeof *at, cmp_needle_at);

    int single = asked == 1;  /* RULER's singular wording when one value is asked */
    if (single)
        sb_printf(&p, "A special magic %s is hidden within the following text. Make sure to "
                  "memorize it. I will quiz you about the %s afterwards.\n", tn, tn);
    else
        sb_printf(&p, "Some special magic %ss are hidden within the following text. Make sure to "
                  "memorize it. I will quiz you about the %ss afterwards.\n", tn, tn);
    int k = 0, first = 1;
    for (int64_t u = 0; u <= n; u++) {
        while (k < m && at[k].pos == u) {
            if (!first) sb_putn(&p, " ", 1);
            sb_printf(&p, "One of the special magic %ss for %s is: %s.", tn, keys[at[k].idx],
                      vals[at[k].idx]);
            first = 0;
            k++;
        }
        if (u == n) break;
        if (!first) sb_putn(&p, " ", 1);
        if (tw) sb_putn(&p, tw[u % (int64_t)ntw], twl[u % (int64_t)ntw]);
        else sb_puts(&p, NOISE_UNIT);
        first = 0;
    }
    sb_putn(&p, "\n", 1);
    /* The query: asked keys 0..asked-1 (multivalue: the one key). */
    int n_qkeys = same_key ? 1 : asked;
    moa_sb qs;
    sb_init(&qs);
    for (int i = 0; i < n_qkeys; i++) {
        if (i > 0) sb_puts(&qs, i == n_qkeys - 1 ? (n_qkeys > 2 ? ", and " : " and ") : ", ");
        sb_puts(&qs, keys[i]);
    }
    char *query = sb_finish(&qs);
    if (!query) { st = moa_err(MOA_ERR_NOMEM, "out of memory"); goto done; }
    if (single)
        sb_printf(&p, "What is the special magic %s for %s mentioned in the provided text?", tn, query);
    else
        sb_printf(&p, "What are all the special magic %ss for %s mentioned in the provided text?", tn, query);
    for (int i = 0; i < asked; i++) {
        if (i) sb_putn(&e, "\n", 1);
        sb_puts(&e, vals[i]);
    }
    sb_printf(&j, "{\"task\":\"%s\",\"seed\":%u,\"haystack\":\"%s\",\"haystack_units\":%lld,"
              "\"needle_type\":\"%ss\",\"needles\":%d,\"asked\":%d,\"query_position\":%lld,"
              "\"position_bin\":%d,\"query\":", moa_task_name(spec), seed,
              tw ? "text" : "noise", (long long)n, tn, m, asked, (long long)q, bin_of(q, n));
    sb_json_str(&j, query);
    sb_printf(&j, ",\"words_sha256\":\"%s\"}", moa_wordlist_sha256(wl));
    free(query);
    out->query_index = (int)q;
    out->position_bin = bin_of(q, n);
    st = finish_sample(out, spec, &p, &e, &j, 1);
done:
    if (st < 0) { sb_free(&p); sb_free(&e); sb_free(&j); }
    sb_free(&tmp);
    if (keys) for (int i = 0; i < m; i++) free(keys[i]);
    if (vals) for (int i = 0; i < m; i++) free(vals[i]);
    free(keys); free(vals); free(at); free(used.k); free(tw); free(twl);
    if (r0) gsl_rng_free(r0);
    if (r1) gsl_rng_free(r1);
    return st;
}

/* ---- long dependency ---------------------------------------------------------------------- */
static moa_status gen_longdep(const moa_task_spec *spec, uint32_t seed, int64_t n,
                              moa_task_sample *out) {
    const moa_wordlist *wl = spec->words;
    int P = spec->longdep_people > 0 ? spec->longdep_people : MOA_LONGDEP_DEFAULT_PEOPLE;
    int C = spec->longdep_cities;
    if (P < 4 || P > 10000 || C < 2 || C > N_CITIES)
        return moa_err(MOA_ERR_INVALID_ARG, "longdep: %d people and %d cities (need people 4..10000, "
                       "cities 2..%d)", P, C, N_CITIES);
    int nf = 2 * P;  /* facts: residence and badge number per person */
    gsl_rng *r0 = calib_rng(seed, 0), *r1 = calib_rng(seed, 1), *r2 = calib_rng(seed, 2);
    char **names = moa_calloc_array((size_t)P, sizeof *names);
    int *city = moa_alloc_array((size_t)P, sizeof *city);
    unsigned long *badge = moa_alloc_array((size_t)P, sizeof *badge);
    int city_perm[N_CITIES];
    needle_at *at = moa_alloc_array((size_t)nf, sizeof *at);
    keyset used = {0}, used_badge = {0};
    moa_sb p, e, j, tmp;
    sb_init(&p); sb_init(&e); sb_init(&j); sb_init(&tmp);
    moa_status st = MOA_OK;
    if (!r0 || !r1 || !r2 || !names || !city || !badge || !at) {
        st = moa_err(MOA_ERR_NOMEM, "out of memory generating longdep"); goto done;
    }
    /* Stream 0: the cities used (a shuffle; the first is asked), how many live in the asked
     * city (2..4, at most half the people), then per person: name, city (others: uniform over the rest), badge. */
    for (int i = 0; i < N_CITIES; i++) city_perm[i] = i;
    for (int i = N_CITIES - 1; i > 0; i--) {
        int r = (int)gsl_rng_uniform_int(r0, (unsigned long)i + 1);
        int t = city_perm[i]; city_perm[i] = city_perm[r]; city_perm[r] = t;
    }
    int residents = 2 + (int)gsl_rng_uniform_int(r0, 3);
    if (residents > P / 2) residents = P / 2;   /* keep at least half as distractors */
    for (int i = 0; i < P; i++) {
        size_t a, b;
        if ((st = draw_pair(r0, wl, &used, &a, &b)) < 0) goto done;
        put_pair(&tmp, wl, a, b, ' ', 1);
        names[i] = sb_finish(&tmp);
        if (!names[i]) { st = moa_err(MOA_ERR_NOMEM, "out of memory"); goto done; }
        city[i] = i < residents ? 0 : 1 + (int)gsl_rng_uniform_int(r0, (unsigned long)C - 1);
        for (;;) {
            badge[i] = 1000 + gsl_rng_uniform_int(r0, 9000);
            int added = keyset_add(&used_badge, badge[i]);
            if (added < 0) { st = moa_err(MOA_ERR_NOMEM, "out of memory"); goto done; }
            if (added) break;
        }
    }
    /* Stream 1: each fact's position among the n filler sentences (fact f < P: residence of
     * person f; f >= P: badge of person f-P). */
    for (int f = 0; f < nf; f++) {
        at[f].pos = (int64_t)gsl_rng_uniform_int(r1, (unsigned long)n + 1);
        at[f].idx = f;
    }
    qsort(at, (size_t)nf, sizeof *at, cmp_needle_at);
    const char *asked_city = CITIES[city_perm[0]];
    sb_puts(&p, "Below are notes collected from many short reports. Read all of them: the "
                "question at the end needs facts from several places in the notes.\n\n");
    int k = 0, items = 0;
    for (int64_t u = 0; u <= n; u++) {
        while (k < nf && at[k].pos == u) {
            int f = at[k].idx;
            if (items) sb_puts(&p, items % 6 == 0 ? "\n" : " ");
            if (f < P) sb_printf(&p, "%s lives in %s.", names[f], CITIES[city_perm[city[f]]]);
            else sb_printf(&p, "The badge number of %s is %lu.", names[f - P], badge[f - P]);
            items++;
            k++;
        }
        if (u == n) break;
        if (items) sb_puts(&p, items % 6 == 0 ? "\n" : " ");
        sb_puts(&p, FILLER[gsl_rng_uniform_int(r2, N_FILLER)]);  /* stream 2: filler */
        items++;
    }
    sb_printf(&p, "\n\nQuestion: What are the badge numbers of all the people who live in %s? "
              "Answer with the name and badge number of each of them.", asked_city);
    for (int i = 0; i < residents; i++) {
        if (i) sb_putn(&e, "\n", 1);
        sb_printf(&e, "%s\n%lu", names[i], badge[i]);
    }
    sb_printf(&j, "{\"task\":\"longdep\",\"seed\":%u,\"filler_sentences\":%lld,\"people\":%d,"
              "\"cities\":%d,\"asked_city\":\"%s\",\"residents\":%d,\"words_sha256\":\"%s\"}",
              seed, (long long)n, P, C, asked_city, residents, moa_wordlist_sha256(wl));
    st = finish_sample(out, spec, &p, &e, &j, 1);
done:
    if (st < 0) { sb_free(&p); sb_free(&e); sb_free(&j); }
    sb_free(&tmp);
    if (names) for (int i = 0; i < P; i++) free(names[i]);
    free(names); free(city); free(badge); free(at); free(used.k); free(used_badge.k);
    if (r0) gsl_rng_free(r0);
    if (r1) gsl_rng_free(r1);
    if (r2) gsl_rng_free(r2);
    return st;
}

/* ---- JSONL -------------------------------------------------------------------------------- */
static int is_space(char c) { return c == ' ' || c == '\n' || c == '\t' || c == '\r'; }

/* Keeps about `keep` bytes of ctx: the first half and the last half, cut on UTF-8 character
 * boundaries and, when one is within 64 bytes, at whitespace. */
static void trim_halves(const char *ctx, size_t len, size_t keep, size_t *head, size_t *tail_start) {
    size_t h = keep / 2, t = len - (keep - keep / 2);
    while (h > 0 && ((unsigned char)ctx[h] & 0xc0) == 0x80) h--;
    for (size_t b = 0; b < 64 && h - b > 0; b++)
        if (is_space(ctx[h - b])) { h -= b; break; }
    while (t < len && ((unsigned char)ctx[t] & 0xc0) == 0x80) t++;
    for (size_t b = 0; b < 64 && t + b < len; b++)
        if (is_space(ctx[t + b])) { t += b; break; }
    if (t < h) t = h;
    *head = h;
    *tail_start = t;
}

/* Substitutes {context} and {instruction} in the template. */
static void put_template(moa_sb *p, const char *tpl, const char *ctx, size_t hl, const char *tail,
                         size_t tl, const char *instr) {
    for (const char *s = tpl; *s;) {
        if (strncmp(s, "{context}", 9) == 0) {
            sb_putn(p, ctx, hl);
            if (tail) sb_putn(p, tail, tl);
            s += 9;
        } else if (strncmp(s, "{instruction}", 13) == 0) {
            sb_puts(p, instr);
            s += 13;
        } else {
            sb_putn(p, s, 1);
            s++;
        }
    }
}

const char *calib_jsonl_template(const moa_jsonl_corpus *c);  /* jsonl.c */

static moa_status gen_jsonl(const moa_task_spec *spec, uint32_t seed, int64_t size, int64_t rec,
                            moa_task_sample *out) {
    const moa_jsonl_corpus *c = spec->corpus;
    if (!c) return moa_err(MOA_ERR_INVALID_ARG, "jsonl task without a corpus");
    size_t nr = moa_jsonl_count(c);
    if (rec < 0 || (size_t)rec >= nr)
        return moa_err(MOA_ERR_RANGE, "jsonl record %lld out of range (%zu records in '%s')",
                       (long long)rec, nr, moa_jsonl_source(c));
    const char *ctx = moa_jsonl_context(c, (size_t)rec);
    size_t len = strlen(ctx), head = len, tail = len;
    int trimmed = size >= 0 && (size_t)size < len;
    if (trimmed) trim_halves(ctx, len, (size_t)size, &head, &tail);
    moa_sb p, e, j;
    sb_init(&p); sb_init(&e); sb_init(&j);
    put_template(&p, calib_jsonl_template(c), ctx, head, trimmed ? ctx + tail : NULL,
                 trimmed ? len - tail : 0, moa_jsonl_instruction(c, (size_t)rec));
    sb_puts(&j, "{\"task\":\"jsonl\",\"source\":");
    sb_json_str(&j, moa_jsonl_source(c));
    sb_printf(&j, ",\"record\":%lld,\"line\":%d,\"context_bytes\":%zu,\"kept_bytes\":%zu,"
              "\"trimmed\":%s}", (long long)rec, moa_jsonl_line(c, (size_t)rec), len,
              head + (len - tail), trimmed ? "true" : "false");
    (void)seed;
    out->record = rec;
    return finish_sample(out, spec, &p, &e, &j, 0);
}

moa_status moa_task_generate(const moa_task_spec *spec, uint32_t seed, int64_t size,
                             int64_t record, moa_task_sample *out) {
    if (!spec || !out) return moa_err(MOA_ERR_INVALID_ARG, "moa_task_generate: NULL argument");
    memset(out, 0, sizeof *out);
    out->query_index = out->position_bin = -1;
    out->record = -1;
    if (spec->kind != MOA_TASK_JSONL) {
        if (!spec->words)
            return moa_err(MOA_ERR_INVALID_ARG, "task %s needs a word list", moa_task_name(spec));
        if (size < 1 || size > (int64_t)1 << 30)
            return moa_err(MOA_ERR_RANGE, "task %s: size %lld out of range 1..2^30",
                           moa_task_name(spec), (long long)size);
    }
    moa_status st;
    switch (spec->kind) {
    case MOA_TASK_LINES: st = gen_lines(spec, seed, size, out); break;
    case MOA_TASK_NEEDLE: st = gen_needle(spec, seed, size, out); break;
    case MOA_TASK_LONGDEP: st = gen_longdep(spec, seed, size, out); break;
    case MOA_TASK_JSONL: st = gen_jsonl(spec, seed, size, record, out); break;
    default: return moa_err(MOA_ERR_INVALID_ARG, "unknown task kind %d", (int)spec->kind);
    }
    if (st >= 0) out->seed = seed, out->size = size;
    return st;
}
