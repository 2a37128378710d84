/* test_tokenizer.c - unit tests of the BPE tokenizer on a tiny hand-made vocabulary (no
 * model needed): merges by rank, leftmost ties, byte fallback, digit splitting, whitespace
 * runs, contractions, Unicode classes, special tokens, invalid UTF-8, streaming decode of
 * partial UTF-8, chat rendering, and the UTF-8 / Unicode helpers. */
#include "test.h"

#include <stdint.h>

#include "moa/model.h"
#include "unicode.h"

/* ---- a tiny vocabulary ------------------------------------------------------------------ */
/* ids 0-3 special, 4 + b = the byte b (GPT-2 byte-to-unicode form), then merged tokens. */

enum { SPECIALS = 4, BYTE0 = SPECIALS, MAXTOK = 512, MAXMERGE = 64 };

static char *vocab[MAXTOK];
static int32_t types[MAXTOK];
static int n_vocab;
static char *merges[MAXMERGE];
static int n_merges;

/* The GPT-2 byte-to-unicode map, written out independently of the library. */
static void byte_str(int b, char out[3]) {
    int cp;
    if ((b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF)) {
        cp = b;
    } else {
        int k = 0;
        for (int x = 0; x < b; x++)
            if (!((x >= 0x21 && x <= 0x7E) || (x >= 0xA1 && x <= 0xAC) || (x >= 0xAE))) k++;
        cp = 0x100 + k;
    }
    if (cp < 0x80) { out[0] = (char)cp; out[1] = 0; }
    else { out[0] = (char)(0xC0 | (cp >> 6)); out[1] = (char)(0x80 | (cp & 0x3F)); out[2] = 0; }
}

/* Mapped form of a byte string. */
static void map_str(const char *raw, char *out) {
    out[0] = 0;
    for (const unsigned char *p = (const unsigned char *)raw; *p; p++) {
        char b[3];
        byte_str(*p, b);
        strcat(out, b);
    }
}

static int add_token(const char *mapped, int type) {
    vocab[n_vocab] = strdup(mapped);
    types[n_vocab] = type;
    return n_vocab++;
}

/* Adds merge "a b" (raw byte strings) and the token a+b; returns the new id. */
static int add_merge(const char *a, const char *b) {
    char ma[64], mb[64], m[160], ab[160];
    map_str(a, ma);
    map_str(b, mb);
    snprintf(m, sizeof m, "%s %s", ma, mb);
    merges[n_merges++] = strdup(m);
    snprintf(ab, sizeof ab, "%s%s", ma, mb);
    return add_token(ab, MOA_TOKEN_NORMAL);
}

static int B(int byte) { return BYTE0 + byte; }

static int T_bc, T_ab, T_aa, T_aaaa, T_12, T_sp1, T_spb, T_spsp, T_on, T_don, T_apt, T_f09f,
    T_osp, T_hi;

static void build_vocab(void) {
    if (n_vocab) return;
    add_token("<|endoftext|>", MOA_TOKEN_CONTROL);
    add_token("<|im_start|>", MOA_TOKEN_CONTROL);
    add_token("<|im_end|>", MOA_TOKEN_CONTROL);
    add_token("<|im_start|>system", MOA_TOKEN_USER_DEFINED);
    for (int b = 0; b < 256; b++) {
        char s[3];
        byte_str(b, s);
        add_token(s, MOA_TOKEN_NORMAL);
    }
    T_bc = add_merge("b", "c");           /* rank 0 */
    T_ab = add_merge("a", "b");           /* rank 1 */
    T_aa = add_merge("a", "a");
    T_aaaa = add_merge("aa", "aa");
    T_12 = add_merge("1", "2");
    T_sp1 = add_merge(" ", "1");
    T_spb = add_merge(" ", "b");
    T_spsp = add_merge(" ", " ");
    T_on = add_merge("o", "n");
    T_don = add_merge("d", "on");
    T_apt = add_merge("'", "t");
    T_f09f = add_merge("\xF0", "\x9F");
    T_osp = add_merge("o", " ");          /* must never apply across pieces */
    T_hi = add_merge("h", "i");
}

static moa_tokenizer *make_tok(const char *pre, int add_bos, const char *tpl) {
    build_vocab();
    moa_tokenizer_desc d = moa_tokenizer_desc_default();
    d.n_vocab = n_vocab;
    d.tokens = (const char *const *)vocab;
    d.token_types = types;
    d.n_merges = n_merges;
    d.merges = (const char *const *)merges;
    d.bos_id = 1;
    d.eos_id = 2;
    d.unk_id = 0;
    d.add_bos = add_bos;
    d.pre = pre;
    d.chat_template = tpl;
    moa_tokenizer *t = NULL;
    CHECK_OK(moa_tokenizer_create(&d, &t));
    return t;
}

/* Encodes and compares with the expected ids (terminated by -1). */
static int enc_eq(const moa_tokenizer *t, const char *text, int special, const int *want) {
    int32_t *ids = NULL, n = 0;
    if (moa_tokenizer_encode(t, text, strlen(text), special, &ids, &n) < 0) {
        fprintf(stderr, "  encode failed: %s\n", moa_last_error());
        return 0;
    }
    int nw = 0;
    while (want[nw] >= 0) nw++;
    int ok = n == nw;
    for (int i = 0; ok && i < n; i++) ok = ids[i] == want[i];
    if (!ok) {
        fprintf(stderr, "  \"%s\": got", text);
        for (int i = 0; i < n; i++) fprintf(stderr, " %d", ids[i]);
        fprintf(stderr, ", want");
        for (int i = 0; i < nw; i++) fprintf(stderr, " %d", want[i]);
        fprintf(stderr, "\n");
    }
    free(ids);
    return ok;
}
#define ENC(t, text, special, ...) \
    CHECK_MSG(enc_eq(t, text, special, (const int[]){__VA_ARGS__, -1}), "encode \"%s\"", text)

/* Pieces joined with '|' (specials in brackets). */
typedef struct { char s[512]; } pieces_t;
static void piece_cb(void *data, const char *p, size_t n, int32_t special) {
    pieces_t *ps = data;
    size_t l = strlen(ps->s);
    if (l) ps->s[l++] = '|';
    if (special >= 0) ps->s[l++] = '[';
    memcpy(ps->s + l, p, n);
    l += n;
    if (special >= 0) ps->s[l++] = ']';
    ps->s[l] = 0;
}
static const char *pieces(const moa_tokenizer *t, const char *text, int special, pieces_t *ps) {
    ps->s[0] = 0;
    if (moa_tokenizer_pieces(t, text, strlen(text), special, piece_cb, ps) < 0) return "(error)";
    return ps->s;
}
#define PIECES(t, text, special, want) \
    do { pieces_t ps_; CHECK_STR(pieces(t, text, special, &ps_), want); } while (0)

/* ---- tests ------------------------------------------------------------------------------ */

TEST(merges_by_rank) {
    moa_tokenizer *t = make_tok("smollm", 0, NULL);
    ENC(t, "abc", 0, B('a'), T_bc);         /* "b c" (rank 0) beats "a b" (rank 1) */
    ENC(t, "ab", 0, T_ab);
    ENC(t, "aaa", 0, T_aa, B('a'));         /* leftmost of equal-rank pairs first */
    ENC(t, "aaaa", 0, T_aaaa);
    ENC(t, "aaaaa", 0, T_aaaa, B('a'));
    ENC(t, "don't", 0, T_don, T_apt);
    moa_tokenizer_free(t);
}

TEST(long_piece) {
    moa_tokenizer *t = make_tok("smollm", 0, NULL);
    enum { N = 100000 };
    char *s = malloc(N + 1);
    memset(s, 'a', N);
    s[N] = 0;
    int32_t *ids = NULL, n = 0;
    CHECK_OK(moa_tokenizer_encode(t, s, N, 0, &ids, &n));
    CHECK_EQ_INT(n, N / 4);
    int all = 1;
    for (int i = 0; i < n; i++) all &= ids[i] == T_aaaa;
    CHECK(all);
    free(ids);
    /* a long whitespace run: N-1 spaces, 'b': pieces of N-2 spaces and " b" */
    memset(s, ' ', N);
    s[N - 1] = 'b';
    CHECK_OK(moa_tokenizer_encode(t, s, N, 0, &ids, &n));
    CHECK_EQ_INT(n, (N - 2) / 2 + 1);       /* "ĠĠ" x 49999, "Ġb" */
    if (n == (N - 2) / 2 + 1) {
        CHECK_EQ_INT(ids[0], T_spsp);
        CHECK_EQ_INT(ids[n - 2], T_spsp);
        CHECK_EQ_INT(ids[n - 1], T_spb);
    }
    free(ids);
    free(s);
    moa_tokenizer_free(t);
}

TEST(byte_fallback) {
    moa_tokenizer *t = make_tok("smollm", 0, NULL);
    ENC(t, "\xC3\xA9", 0, B(0xC3), B(0xA9));          /* é: no merge, its two bytes */
    ENC(t, "\xF0\x9F\x98\x80", 0, T_f09f, B(0x98), B(0x80));
    moa_tokenizer_free(t);

    /* A vocab without a single-byte token for 'z' but with a <0x7A> byte token. */
    const char *toks[] = {"<unk>", "a", "<0x7A>"};
    int32_t ty[] = {MOA_TOKEN_UNKNOWN, MOA_TOKEN_NORMAL, MOA_TOKEN_BYTE};
    moa_tokenizer_desc d = moa_tokenizer_desc_default();
    d.n_vocab = 3;
    d.tokens = toks;
    d.token_types = ty;
    d.unk_id = 0;
    CHECK_OK(moa_tokenizer_create(&d, &t));
    ENC(t, "az!", 0, 1, 2);                      /* '!' has no token: dropped, as HF does */
    char *out = NULL;
    int32_t ids[] = {1, 2};
    CHECK_OK(moa_tokenizer_decode(t, ids, 2, 0, &out));
    CHECK_STR(out, "az");
    free(out);
    moa_tokenizer_free(t);

    /* A byte without a token inside a piece keeps its neighbours apart, as in llama.cpp:
     * "!\x01?" is one piece ([^\s\p{L}\p{N}]+) and "! ?" a merge, yet the result is "!", "?"
     * (Hugging Face would drop \x01 first and give "!?"). */
    const char *toks2[] = {"!", "?", "!?"};
    const char *merges2[] = {"! ?"};
    d = moa_tokenizer_desc_default();
    d.n_vocab = 3;
    d.tokens = toks2;
    d.n_merges = 1;
    d.merges = merges2;
    CHECK_OK(moa_tokenizer_create(&d, &t));
    PIECES(t, "!\x01?", 0, "!\x01?");
    ENC(t, "!?", 0, 2);
    ENC(t, "!\x01?", 0, 0, 1);
    ENC(t, "!\x01\x01", 0, 0);
    moa_tokenizer_free(t);
}

TEST(digits) {
    moa_tokenizer *s = make_tok("smollm", 0, NULL);
    moa_tokenizer *g = make_tok("gpt2", 0, NULL);
    ENC(s, " 123", 0, B(' '), B('1'), B('2'), B('3'));
    ENC(g, " 123", 0, B(' '), T_12, B('3'));   /* "1 2" (rank 4) before "Ġ 1" (rank 5) */
    ENC(g, " 1", 0, T_sp1);
    PIECES(s, "a 123", 0, "a| |1|2|3");
    PIECES(g, "a 123", 0, "a| 123");
    PIECES(s, "abc123def 4x4 v2.0", 0, "abc|1|2|3|def| |4|x|4| v|2|.|0");
    PIECES(g, "abc123def 4x4 v2.0", 0, "abc|123|def| 4|x|4| v|2|.|0");
    /* non-ASCII numbers (No, Nd) are numbers too */
    PIECES(s, "\xC2\xBD\xC2\xB2 \xD9\xA3\xD9\xA4", 0, "\xC2\xBD|\xC2\xB2| |\xD9\xA3|\xD9\xA4");
    /* the digit split ends the whitespace run: "  1" keeps both spaces together */
    PIECES(s, "x  1", 0, "x|  |1");
    PIECES(g, "x  1", 0, "x| | 1");
    moa_tokenizer_free(s);
    moa_tokenizer_free(g);
}

TEST(whitespace) {
    moa_tokenizer *t = make_tok("smollm", 0, NULL);
    PIECES(t, "a  b", 0, "a| | b");
    ENC(t, "a  b", 0, B('a'), B(' '), T_spb);
    PIECES(t, "x     y", 0, "x|    | y");
    PIECES(t, "a  \tb", 0, "a|  |\t|b");
    PIECES(t, "a \n", 0, "a| \n");
    PIECES(t, "\n\n\n", 0, "\n\n\n");
    PIECES(t, "end   ", 0, "end|   ");
    PIECES(t, " ", 0, " ");
    PIECES(t, "line\nnext", 0, "line|\n|next");
    PIECES(t, "a\xE3\x80\x80" "b", 0, "a|\xE3\x80\x80|b");       /* U+3000 is whitespace */
    PIECES(t, "a\xC2\xA0 b", 0, "a|\xC2\xA0| b");                 /* U+00A0 too */
    PIECES(t, "hello world", 0, "hello| world");
    ENC(t, "o w", 0, B('o'), B(' '), B('w'));                     /* no "o Ġ" across pieces */
    moa_tokenizer_free(t);
}

TEST(contractions_and_classes) {
    moa_tokenizer *t = make_tok("smollm", 0, NULL);
    PIECES(t, "I'm sure they'll come, don't", 0, "I|'m| sure| they|'ll| come|,| don|'t");
    PIECES(t, "we've you're she'd it's", 0, "we|'ve| you|'re| she|'d| it|'s");
    PIECES(t, "DON'T", 0, "DON|'|T");                        /* case-sensitive */
    PIECES(t, "o'clock", 0, "o|'|clock");
    PIECES(t, "?'s", 0, "?'|s");
    PIECES(t, " 's", 0, " '|s");
    PIECES(t, "Wait... what?!", 0, "Wait|...| what|?!");
    PIECES(t, "x !! y", 0, "x| !!| y");
    PIECES(t, "h\xC3\xA9llo w\xC3\xB6rld", 0, "h\xC3\xA9llo| w\xC3\xB6rld");
    /* "Привет, мир!" */
    PIECES(t, "\xD0\x9F\xD1\x80\xD0\xB8, \xD0\xBC\xD0\xB8\xD1\x80!", 0,
           "\xD0\x9F\xD1\x80\xD0\xB8|,| \xD0\xBC\xD0\xB8\xD1\x80|!");
    /* emoji are "other": a run with punctuation */
    PIECES(t, "pizza \xF0\x9F\x8D\x95\xF0\x9F\x8D\x95!", 0,
           "pizza| \xF0\x9F\x8D\x95\xF0\x9F\x8D\x95!");
    /* CJK ideographs (a First/Last range in UnicodeData.txt) are letters */
    PIECES(t, "\xE4\xB8\x80\xE4\xBA\x8C\xEF\xBC\x8C", 0, "\xE4\xB8\x80\xE4\xBA\x8C|\xEF\xBC\x8C");
    moa_tokenizer_free(t);
}

TEST(special_tokens) {
    moa_tokenizer *t = make_tok("smollm", 0, NULL);
    ENC(t, "<|im_start|>user\nhi<|im_end|>", 1, 1, B('u'), B('s'), B('e'), B('r'), B('\n'),
        T_hi, 2);
    PIECES(t, "<|im_start|>user\nhi<|im_end|>", 1, "[<|im_start|>]|user|\n|hi|[<|im_end|>]");
    PIECES(t, "<|im_start|>user", 0, "<||im|_|start||>|user");
    PIECES(t, "x<|im_end|><|im_end|>y", 1, "x|[<|im_end|>]|[<|im_end|>]|y");
    PIECES(t, "<|im_start|x <|im_end", 1, "<||im|_|start|||x| <||im|_|end");
    /* longest match; user-defined tokens are matched even without parse_special */
    ENC(t, "<|im_start|>system", 1, 3);
    ENC(t, "<|im_start|>system", 0, 3);
    ENC(t, "<|im_start|>syst", 1, 1, B('s'), B('y'), B('s'), B('t'));
    ENC(t, "<|endoftext|>", 1, 0);
    ENC(t, "", 1, -1);
    moa_tokenizer_free(t);

    t = make_tok("smollm", 1, NULL);
    ENC(t, "hi", 0, 1, T_hi);                                     /* add_bos */
    moa_tokenizer_free(t);
}

TEST(invalid_utf8) {
    moa_tokenizer *t = make_tok("smollm", 0, NULL);
    ENC(t, "a\xFF" "b", 0, B('a'), B(0xEF), B(0xBF), B(0xBD), B('b'));
    PIECES(t, "a\xE2\x82x", 0, "a|\xEF\xBF\xBD|x");                /* truncated: one U+FFFD */
    PIECES(t, "\xC0\x80", 0, "\xEF\xBF\xBD\xEF\xBF\xBD");          /* overlong: two */
    PIECES(t, "\xED\xA0\x80" "a", 0, "\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD|a");  /* surrogate */
    /* a special token after invalid bytes is still found */
    PIECES(t, "\xF0<|im_end|>", 1, "\xEF\xBF\xBD|[<|im_end|>]");
    /* embedded NUL is ordinary text (len is explicit) */
    int32_t *ids = NULL, n = 0;
    CHECK_OK(moa_tokenizer_encode(t, "a\0b", 3, 0, &ids, &n));
    CHECK_EQ_INT(n, 3);
    if (n == 3) CHECK_EQ_INT(ids[1], B(0));
    free(ids);
    moa_tokenizer_free(t);
}

TEST(streaming_decode) {
    moa_tokenizer *t = make_tok("smollm", 0, NULL);
    moa_detok st = {0};
    char buf[64];
    /* 😀 = F0 9F 98 80 split over three tokens */
    CHECK_EQ_INT(moa_tokenizer_decode_token(t, &st, B('a'), buf, sizeof buf), 1);
    CHECK_STR(buf, "a");
    CHECK_EQ_INT(moa_tokenizer_decode_token(t, &st, T_f09f, buf, sizeof buf), 0);
    CHECK_STR(buf, "");
    CHECK_EQ_INT(st.n_pending, 2);
    CHECK_EQ_INT(moa_tokenizer_decode_token(t, &st, B(0x98), buf, sizeof buf), 0);
    CHECK_EQ_INT(moa_tokenizer_decode_token(t, &st, B(0x80), buf, sizeof buf), 4);
    CHECK_STR(buf, "\xF0\x9F\x98\x80");
    CHECK_EQ_INT(st.n_pending, 0);
    /* an incomplete sequence interrupted by ASCII: U+FFFD, then the ASCII */
    moa_tokenizer_decode_token(t, &st, T_f09f, buf, sizeof buf);
    CHECK_EQ_INT(moa_tokenizer_decode_token(t, &st, B('b'), buf, sizeof buf), 4);
    CHECK_STR(buf, "\xEF\xBF\xBD" "b");
    /* a lone continuation byte */
    CHECK_EQ_INT(moa_tokenizer_decode_token(t, &st, B(0x80), buf, sizeof buf), 3);
    CHECK_STR(buf, "\xEF\xBF\xBD");
    /* flush at the end of the stream */
    moa_tokenizer_decode_token(t, &st, B(0xE2), buf, sizeof buf);
    CHECK_EQ_INT(moa_tokenizer_decode_flush(&st, buf, sizeof buf), 3);
    CHECK_STR(buf, "\xEF\xBF\xBD");
    CHECK_EQ_INT(moa_tokenizer_decode_flush(&st, buf, sizeof buf), 0);
    /* a genuine U+FFFD split over tokens is passed through */
    moa_tokenizer_decode_token(t, &st, B(0xEF), buf, sizeof buf);
    moa_tokenizer_decode_token(t, &st, B(0xBF), buf, sizeof buf);
    CHECK_EQ_INT(moa_tokenizer_decode_token(t, &st, B(0xBD), buf, sizeof buf), 3);
    /* too small a buffer: nothing consumed, the needed size returned */
    moa_detok s2 = {0};
    moa_tokenizer_decode_token(t, &s2, T_f09f, buf, sizeof buf);
    CHECK_EQ_INT(moa_tokenizer_decode_token(t, &s2, B('x'), buf, 2), 4);
    CHECK_EQ_INT(s2.n_pending, 2);
    CHECK_EQ_INT(moa_tokenizer_decode_token(t, &s2, B('x'), buf, 5), 4);
    CHECK_STR(buf, "\xEF\xBF\xBDx");
    /* control tokens: nothing by default, their text on request */
    moa_detok s3 = {0};
    CHECK_EQ_INT(moa_tokenizer_decode_token(t, &s3, 2, buf, sizeof buf), 0);
    s3.special = 1;
    CHECK_EQ_INT(moa_tokenizer_decode_token(t, &s3, 2, buf, sizeof buf), 10);
    CHECK_STR(buf, "<|im_end|>");
    /* out-of-range ids decode to nothing */
    CHECK_EQ_INT(moa_tokenizer_decode_token(t, &s3, 99999, buf, sizeof buf), 0);
    CHECK(moa_tokenizer_max_piece_bytes(t) >= 3 * strlen("<|im_start|>system"));
    moa_tokenizer_free(t);
}

TEST(decode_roundtrip) {
    moa_tokenizer *t = make_tok("smollm", 0, NULL);
    const char *texts[] = {
        "abc aaaa don't", "  leading\tand trailing  \n", "<|im_start|>user\nhi<|im_end|>\n",
        "\xF0\x9F\x98\x80 \xE4\xB8\x80 caf\xC3\xA9 123", "", "<|im_start|>system ok",
    };
    for (size_t i = 0; i < sizeof texts / sizeof *texts; i++) {
        int32_t *ids = NULL, n = 0;
        char *out = NULL;
        CHECK_OK(moa_tokenizer_encode(t, texts[i], strlen(texts[i]), 1, &ids, &n));
        CHECK_OK(moa_tokenizer_decode(t, ids, n, 1, &out));
        CHECK_STR(out, texts[i]);
        free(out);
        free(ids);
    }
    int32_t ids[] = {1, B('h'), 2};
    char *out = NULL;
    CHECK_OK(moa_tokenizer_decode(t, ids, 3, 0, &out));
    CHECK_STR(out, "h");
    free(out);
    int32_t bad[] = {B('h'), 5000};
    CHECK(moa_tokenizer_decode(t, bad, 2, 0, &out) == MOA_ERR_INVALID_ARG);
    moa_tokenizer_free(t);
}

TEST(vocab_queries) {
    moa_tokenizer *t = make_tok("smollm", 0, NULL);
    CHECK_EQ_INT(moa_tokenizer_n_vocab(t), n_vocab);
    CHECK_STR(moa_tokenizer_token(t, B(' ')), "\xC4\xA0");          /* "Ġ" */
    CHECK_STR(moa_tokenizer_token(t, T_spb), "\xC4\xA0" "b");
    size_t len = 0;
    CHECK_STR(moa_tokenizer_token_bytes(t, T_spb, &len), " b");
    CHECK_EQ_INT(len, 2);
    CHECK_STR(moa_tokenizer_token(t, B('\n')), "\xC4\x8A");         /* "Ċ" */
    CHECK(moa_tokenizer_token(t, -1) == NULL);
    CHECK_EQ_INT(moa_tokenizer_find_token(t, "<|im_end|>"), 2);
    CHECK_EQ_INT(moa_tokenizer_find_token(t, "nope"), -1);
    CHECK_EQ_INT(moa_tokenizer_token_type(t, 1), MOA_TOKEN_CONTROL);
    CHECK(moa_tokenizer_is_eog(t, 2));
    CHECK(moa_tokenizer_is_eog(t, 0));            /* <|endoftext|> */
    CHECK(!moa_tokenizer_is_eog(t, 1));
    CHECK(!moa_tokenizer_is_eog(t, B('a')));
    CHECK_STR(moa_tokenizer_pre(t), "smollm");
    CHECK_EQ_INT(moa_tokenizer_bos(t), 1);
    moa_tokenizer_free(t);
}

TEST(create_errors) {
    build_vocab();
    moa_tokenizer *t = NULL;
    moa_tokenizer_desc d = moa_tokenizer_desc_default();
    d.n_vocab = n_vocab;
    d.tokens = (const char *const *)vocab;
    d.pre = "llama3";
    CHECK(moa_tokenizer_create(&d, &t) == MOA_ERR_UNSUPPORTED);
    CHECK(strstr(moa_last_error(), "llama3") != NULL);
    CHECK(strstr(moa_last_error(), "supported: gpt2, gpt-2, smollm, qwen2") != NULL);
    CHECK(t == NULL);
    d.pre = "gpt2";
    const char *bad_merge[] = {"ab"};
    d.n_merges = 1;
    d.merges = bad_merge;
    CHECK(moa_tokenizer_create(&d, &t) == MOA_ERR_INVALID_ARG);
    d.n_merges = 0;
    d.eos_id = n_vocab;
    CHECK(moa_tokenizer_create(&d, &t) == MOA_ERR_INVALID_ARG);
    d.eos_id = -1;
    d.add_bos = 1;
    CHECK(moa_tokenizer_create(&d, &t) == MOA_ERR_INVALID_ARG);
    d.add_bos = 0;
    d.n_vocab = 0;
    CHECK(moa_tokenizer_create(&d, &t) == MOA_ERR_INVALID_ARG);
    /* token_types NULL: bos/eos count as control tokens */
    d.n_vocab = n_vocab;
    d.eos_id = 2;
    CHECK_OK(moa_tokenizer_create(&d, &t));
    CHECK_EQ_INT(moa_tokenizer_token_type(t, 2), MOA_TOKEN_CONTROL);
    CHECK_EQ_INT(moa_tokenizer_token_type(t, 1), MOA_TOKEN_NORMAL);
    moa_tokenizer_free(t);
    moa_tokenizer_free(NULL);
}

/* The template stored in SmolLM2-135M-Instruct's GGUF (tokenizer.chat_template). */
static const char smollm2_tpl[] =
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging "
    "Face<|im_end|>\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\n' + "
    "message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}"
    "{{ '<|im_start|>assistant\n' }}{% endif %}";

TEST(chat_render) {
    moa_tokenizer *t = make_tok("smollm", 0, smollm2_tpl);
    char *out = NULL;
    moa_chat_msg u[] = {{"user", "What is 2+2?"}};
    CHECK_OK(moa_chat_render(t, u, 1, 1, &out));
    CHECK_STR(out, "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by "
                   "Hugging Face<|im_end|>\n<|im_start|>user\nWhat is 2+2?<|im_end|>\n"
                   "<|im_start|>assistant\n");
    free(out);
    moa_chat_msg c[] = {{"system", "Be brief."}, {"user", "Hi"}, {"assistant", "Hello!"},
                        {"user", "Bye"}};
    CHECK_OK(moa_chat_render(t, c, 4, 0, &out));
    CHECK_STR(out, "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n"
                   "<|im_start|>assistant\nHello!<|im_end|>\n<|im_start|>user\nBye<|im_end|>\n");
    free(out);
    CHECK_OK(moa_chat_render(t, NULL, 0, 1, &out));
    CHECK_STR(out, "<|im_start|>assistant\n");
    free(out);
    moa_chat_msg bad[] = {{"user", NULL}};
    CHECK(moa_chat_render(t, bad, 1, 1, &out) == MOA_ERR_INVALID_ARG);
    moa_tokenizer_free(t);

    /* plain ChatML: no default system turn */
    t = make_tok("smollm", 0,
                 "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + "
                 "message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}");
    CHECK_OK(moa_chat_render(t, u, 1, 1, &out));
    CHECK_STR(out, "<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n");
    free(out);
    moa_tokenizer_free(t);

    /* a default written with an escaped \n after a non-literal system turn (Qwen style) */
    t = make_tok("smollm", 0,
                 "{%- if messages[0]['role'] == 'system' %}{{- '<|im_start|>system\\n' + "
                 "messages[0]['content'] + '<|im_end|>\\n' }}{%- else %}{{- "
                 "'<|im_start|>system\\nYou are Qwen.\\tOK<|im_end|>\\n' }}{%- endif %}");
    CHECK_OK(moa_chat_render(t, u, 1, 0, &out));
    CHECK_STR(out, "<|im_start|>system\nYou are Qwen.\tOK<|im_end|>\n<|im_start|>user\n"
                   "What is 2+2?<|im_end|>\n");
    free(out);
    moa_tokenizer_free(t);

    t = make_tok("smollm", 0, "{{ bos_token }}{% for m in messages %}[INST] {{ m.content }}");
    CHECK(moa_chat_render(t, u, 1, 1, &out) == MOA_ERR_UNSUPPORTED);
    CHECK(strstr(moa_last_error(), "ChatML") != NULL);
    moa_tokenizer_free(t);
    t = make_tok("smollm", 0, NULL);
    CHECK(moa_chat_render(t, u, 1, 1, &out) == MOA_ERR_UNSUPPORTED);
    moa_tokenizer_free(t);
}

/* The Qwen2 pattern
 *   (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*
 *   |\s*[\r\n]+|\s+(?!\S)|\s+
 * Every expected split below was derived by hand from the pattern (alternatives in order,
 * first match wins, greedy quantifiers backtracking), not taken from the library. */
TEST(qwen2_pretokenizer) {
    moa_tokenizer *t = make_tok("qwen2", 0, NULL);
    CHECK_STR(moa_tokenizer_pre(t), "qwen2");
    PIECES(t, "Hello world", 0, "Hello| world");
    /* contractions in either case; a quote not followed by one joins what follows */
    PIECES(t, "I'M HERE", 0, "I|'M| HERE");
    PIECES(t, "don't DON'T", 0, "don|'t| DON|'T");
    PIECES(t, "we'Re 'LL", 0, "we|'Re| '|LL");        /* " '" by ` ?[^\s\p{L}\p{N}]+` */
    PIECES(t, "'s'", 0, "'s|'");
    PIECES(t, "it's\n", 0, "it|'s|\n");
    PIECES(t, "'hello", 0, "'hello");                 /* [^\r\n\p{L}\p{N}]?\p{L}+ */
    /* single digits */
    PIECES(t, "x12345y", 0, "x|1|2|3|4|5|y");
    PIECES(t, " 2024", 0, " |2|0|2|4");               /* a lone space before a digit: \s+ */
    PIECES(t, "$100", 0, "$|1|0|0");
    PIECES(t, "\xC2\xBD \xE2\x85\xA7", 0, "\xC2\xBD| |\xE2\x85\xA7");   /* ½ Ⅷ (No, Nl) */
    /* any non-letter, non-number, non-newline codepoint may lead a word */
    PIECES(t, "\tint x;", 0, "\tint| x|;");
    PIECES(t, ".Hello", 0, ".Hello");
    PIECES(t, "..Hello", 0, "..|Hello");
    PIECES(t, "a?b a?!b", 0, "a|?b| a|?!|b");
    PIECES(t, "\xC2\xA0word", 0, "\xC2\xA0word");     /* NBSP + word */
    PIECES(t, "\xE4\xBD\xA0\xE5\xA5\xBD\xEF\xBC\x8C\xE4\xB8\x96\xE7\x95\x8C", 0,
           "\xE4\xBD\xA0\xE5\xA5\xBD|\xEF\xBC\x8C\xE4\xB8\x96\xE7\x95\x8C");  /* 你好|，世界 */
    /* punctuation takes the newlines after it */
    PIECES(t, "foo.\n\nbar", 0, "foo|.\n\n|bar");
    PIECES(t, " !!!\n", 0, " !!!\n");
    /* \s*[\r\n]+ ends at the last newline of a whitespace run */
    PIECES(t, "a\r\nb", 0, "a|\r\n|b");
    PIECES(t, "a \nb", 0, "a| \n|b");
    PIECES(t, "x  \n  y", 0, "x|  \n| | y");
    PIECES(t, "x\n\n  \ty", 0, "x|\n\n|  |\ty");
    PIECES(t, "\r\n\r\n", 0, "\r\n\r\n");
    PIECES(t, "\n", 0, "\n");
    /* \s+(?!\S) and \s+ */
    PIECES(t, "end   ", 0, "end|   ");
    PIECES(t, "a   b", 0, "a|  | b");
    PIECES(t, "a\t\t.", 0, "a|\t|\t|.");             /* only ' ' may lead punctuation */
    PIECES(t, "hi \xF0\x9F\x91\x8B\xF0\x9F\x8F\xBD", 0, "hi| \xF0\x9F\x91\x8B\xF0\x9F\x8F\xBD");
    /* special tokens still split first */
    PIECES(t, "a<|im_end|>\nb", 1, "a|[<|im_end|>]|\n|b");
    /* digits are not merged across pieces: "1 2" is a merge, but never applies */
    ENC(t, "12", 0, B('1'), B('2'));
    ENC(t, " b", 0, T_spb);
    moa_tokenizer_free(t);

    /* every name llama.cpp maps to the same pattern is accepted as qwen2 */
    static const char *const same[] = {"deepseek-r1-qwen", "kormo", "f2llmv2", "megrez",
                                       "stablelm2", "hunyuan", "solar-open"};
    for (size_t k = 0; k < sizeof same / sizeof *same; k++) {
        t = make_tok(same[k], 0, NULL);
        CHECK_STR(moa_tokenizer_pre(t), "qwen2");
        moa_tokenizer_free(t);
    }
}

TEST(unicode_classes) {
    CHECK_EQ_INT(moa_ucd_class_of('a'), MOA_UCD_LETTER);
    CHECK_EQ_INT(moa_ucd_class_of('7'), MOA_UCD_NUMBER);
    CHECK_EQ_INT(moa_ucd_class_of('\t'), MOA_UCD_SPACE);
    CHECK_EQ_INT(moa_ucd_class_of('_'), MOA_UCD_OTHER);
    CHECK_EQ_INT(moa_ucd_class_of(0xE9), MOA_UCD_LETTER);       /* é */
    CHECK_EQ_INT(moa_ucd_class_of(0xAA), MOA_UCD_LETTER);       /* ª (Lo) */
    CHECK_EQ_INT(moa_ucd_class_of(0xBD), MOA_UCD_NUMBER);       /* ½ (No) */
    CHECK_EQ_INT(moa_ucd_class_of(0x2167), MOA_UCD_NUMBER);     /* Ⅷ (Nl) */
    CHECK_EQ_INT(moa_ucd_class_of(0x0663), MOA_UCD_NUMBER);     /* ٣ (Nd) */
    CHECK_EQ_INT(moa_ucd_class_of(0x85), MOA_UCD_SPACE);        /* NEL */
    CHECK_EQ_INT(moa_ucd_class_of(0xA0), MOA_UCD_SPACE);
    CHECK_EQ_INT(moa_ucd_class_of(0x2028), MOA_UCD_SPACE);
    CHECK_EQ_INT(moa_ucd_class_of(0x3000), MOA_UCD_SPACE);
    CHECK_EQ_INT(moa_ucd_class_of(0x200B), MOA_UCD_OTHER);      /* zero width space: Cf */
    CHECK_EQ_INT(moa_ucd_class_of(0x4E00), MOA_UCD_LETTER);     /* CJK range */
    CHECK_EQ_INT(moa_ucd_class_of(0x9FA5), MOA_UCD_LETTER);
    CHECK_EQ_INT(moa_ucd_class_of(0xAC00), MOA_UCD_LETTER);     /* Hangul range */
    CHECK_EQ_INT(moa_ucd_class_of(0x0301), MOA_UCD_OTHER);      /* combining acute: Mn */
    CHECK_EQ_INT(moa_ucd_class_of(0x1F355), MOA_UCD_OTHER);     /* 🍕 */
    CHECK_EQ_INT(moa_ucd_class_of(0x10FFFF), MOA_UCD_OTHER);
    CHECK_EQ_INT(moa_ucd_class_of(0x20000), MOA_UCD_LETTER);    /* CJK Ext B */
}

TEST(utf8) {
    uint32_t cp;
    CHECK_EQ_INT(moa_utf8_decode((const unsigned char *)"\xC3\xA9", 2, &cp), 2);
    CHECK_EQ_INT(cp, 0xE9);
    CHECK_EQ_INT(moa_utf8_decode((const unsigned char *)"\xF0\x9F\x98\x80", 4, &cp), 4);
    CHECK_EQ_INT(cp, 0x1F600);
    CHECK_EQ_INT(moa_utf8_decode((const unsigned char *)"\xE0\x80\x80", 3, &cp), 1);
    CHECK_EQ_INT(cp, 0xFFFD);
    CHECK_EQ_INT(moa_utf8_decode((const unsigned char *)"\xF0\x9F\x98", 3, &cp), 3);
    CHECK_EQ_INT(cp, 0xFFFD);
    CHECK_EQ_INT(moa_utf8_decode_partial((const unsigned char *)"\xF0\x9F\x98", 3, &cp), 0);
    CHECK_EQ_INT(moa_utf8_decode((const unsigned char *)"\xF4\x90\x80\x80", 4, &cp), 1);
    CHECK_EQ_INT(moa_utf8_decode((const unsigned char *)"\xE2\x82" "A", 3, &cp), 2);
    CHECK(moa_utf8_valid((const unsigned char *)"caf\xC3\xA9 \xEF\xBF\xBD", 9));
    CHECK(!moa_utf8_valid((const unsigned char *)"caf\xC3", 4));
    CHECK(!moa_utf8_valid((const unsigned char *)"\xED\xA0\x80", 3));
    unsigned char b[4];
    CHECK_EQ_INT(moa_utf8_encode(0x20AC, b), 3);
    CHECK(b[0] == 0xE2 && b[1] == 0x82 && b[2] == 0xAC);
    CHECK_EQ_INT(moa_utf8_encode(0x10FFFF, b), 4);
}

int main(void) {
    RUN(merges_by_rank);
    RUN(long_piece);
    RUN(byte_fallback);
    RUN(digits);
    RUN(whitespace);
    RUN(contractions_and_classes);
    RUN(special_tokens);
    RUN(invalid_utf8);
    RUN(streaming_decode);
    RUN(decode_roundtrip);
    RUN(vocab_queries);
    RUN(create_errors);
    RUN(chat_render);
    RUN(qwen2_pretokenizer);
    RUN(unicode_classes);
    RUN(utf8);
    for (int i = 0; i < n_vocab; i++) free(vocab[i]);
    for (int i = 0; i < n_merges; i++) free(merges[i]);
    return test_summary();
}
