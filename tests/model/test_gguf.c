/* test_gguf.c - the GGUF reader on valid and malformed images built in memory: every
 * truncation, bad magic/version, absurd counts, bad types, bad offsets, duplicates,
 * overlaps, and wrong shapes for the llama architecture. Nothing may crash; every error
 * names what is wrong. */
#include "moa/model.h"
#include "moa/common.h"
#include "test.h"
#include "gguf_builder.h"

static float fdata[8] = {1, 2, 3, 4, 5, 6, 7, 8};
static uint8_t q8block[34];

static gbuf valid_kvs(uint64_t *n) {
    gbuf k = {0};
    kv_str(&k, "general.architecture", "test");
    kv_u32(&k, "general.alignment", 32);
    kv_u32(&k, "test.count", 7);
    kv_f32(&k, "test.scale", 0.5f);
    kv_bool(&k, "test.flag", 1);
    const char *words[] = {"alpha", "", "gamma"};
    kv_arr_str(&k, "test.words", words, 3);
    int32_t ints[] = {-1, 2, 3};
    kv_arr_i32(&k, "test.ints", ints, 3);
    *n = 7;
    return k;
}

static gbuf valid_image(void) {
    uint64_t nkv;
    gbuf k = valid_kvs(&nkv);
    q8block[0] = 0x00; q8block[1] = 0x3c;   /* d = 1.0 */
    for (int j = 0; j < 32; j++) q8block[2 + j] = (uint8_t)(int8_t)(j - 16);
    gtensor ts[2] = {
        {"a", 2, {4, 2, 1, 1}, 0, fdata, sizeof fdata},
        {"b", 1, {32, 1, 1, 1}, 8, q8block, sizeof q8block},
    };
    gbuf g = gguf_build(3, &k, nkv, ts, 2, 32);
    free(k.b);
    return g;
}

static moa_status open_img(const gbuf *g, size_t n, moa_gguf **out) {
    return moa_gguf_open_memory(g->b, n, "img.gguf", out);
}

TEST(valid_file) {
    gbuf g = valid_image();
    moa_gguf *f;
    CHECK_OK(open_img(&g, g.n, &f));
    if (!f) { free(g.b); return; }
    CHECK_EQ_INT(moa_gguf_version(f), 3);
    CHECK_EQ_INT(moa_gguf_n_kv(f), 7);
    CHECK_EQ_INT(moa_gguf_n_tensors(f), 2);
    uint32_t u; float x; int b; const char *s; int64_t i64;
    CHECK_OK(moa_gguf_get_u32(f, "test.count", &u));
    CHECK_EQ_INT(u, 7);
    CHECK_OK(moa_gguf_get_i64(f, "test.count", &i64));
    CHECK_EQ_INT(i64, 7);
    CHECK_OK(moa_gguf_get_f32(f, "test.scale", &x));
    CHECK_NEAR(x, 0.5, 0);
    CHECK_OK(moa_gguf_get_bool(f, "test.flag", &b));
    CHECK_EQ_INT(b, 1);
    CHECK_OK(moa_gguf_get_str(f, "general.architecture", &s, NULL));
    CHECK_STR(s, "test");
    moa_gguf_vtype et; uint64_t cnt;
    CHECK_OK(moa_gguf_get_arr_info(f, "test.words", &et, &cnt));
    CHECK_EQ_INT(et, MOA_GGUF_STRING);
    CHECK_EQ_INT(cnt, 3);
    CHECK_OK(moa_gguf_get_arr_str(f, "test.words", 2, &s, NULL));
    CHECK_STR(s, "gamma");
    CHECK_OK(moa_gguf_get_arr_str(f, "test.words", 1, &s, NULL));
    CHECK_STR(s, "");
    CHECK(moa_gguf_get_arr_str(f, "test.words", 3, &s, NULL) == MOA_ERR_RANGE);
    const void *arr;
    CHECK_OK(moa_gguf_get_arr_data(f, "test.ints", &arr));
    int32_t first; memcpy(&first, arr, 4);
    CHECK_EQ_INT(first, -1);
    /* type mismatches and missing keys name the key */
    CHECK(moa_gguf_get_str(f, "test.count", &s, NULL) == MOA_ERR_FORMAT);
    CHECK(strstr(moa_last_error(), "test.count") != NULL);
    CHECK(moa_gguf_get_u32(f, "nope", &u) == MOA_ERR_FORMAT);
    CHECK(strstr(moa_last_error(), "'nope' is missing") != NULL);
    /* tensors */
    const moa_gguf_tensor *t = moa_gguf_find_tensor(f, "a");
    CHECK(t != NULL);
    if (t) {
        CHECK_EQ_INT(t->ne[0], 4);
        CHECK_EQ_INT(t->ne[1], 2);
        CHECK_EQ_INT(t->n_bytes, 32);
        const float *d = moa_gguf_tensor_data(f, t);
        CHECK_NEAR(d[7], 8, 0);
    }
    t = moa_gguf_find_tensor(f, "b");
    CHECK(t && t->type == MOA_GGML_Q8_0 && t->n_bytes == 34);
    if (t) {
        float y[32];
        moa_dequant_row(t->type, moa_gguf_tensor_data(f, t), y, 32);
        CHECK_NEAR(y[0], -16, 0);
        CHECK_NEAR(y[31], 15, 0);
    }
    CHECK(moa_gguf_find_tensor(f, "c") == NULL);
    moa_gguf_close(f);
    free(g.b);
}

TEST(every_truncation_is_rejected) {
    gbuf g = valid_image();
    /* the data section of the last tensor ends before the final padding */
    size_t needed = g.n;
    while (needed > 0 && g.b[needed - 1] == 0) needed--;
    int bad = 0;
    for (size_t n = 0; n < needed; n++) {
        moa_gguf *f = NULL;
        uint8_t *copy = malloc(n ? n : 1);   /* exact-size copy so ASan sees overreads */
        memcpy(copy, g.b, n);
        moa_status st = moa_gguf_open_memory(copy, n, "trunc.gguf", &f);
        if (st >= 0) { bad++; moa_gguf_close(f); }
        else if (!strstr(moa_last_error(), "trunc.gguf")) bad++;
        free(copy);
    }
    CHECK_EQ_INT(bad, 0);
    free(g.b);
}

/* Expect open to fail with a message containing `needle`. */
static void expect_fail(gbuf *g, const char *needle) {
    moa_gguf *f = NULL;
    moa_status st = open_img(g, g->n, &f);
    CHECK_MSG(st < 0, "expected failure mentioning '%s'", needle);
    if (st >= 0) moa_gguf_close(f);
    else CHECK_MSG(strstr(moa_last_error(), needle) != NULL, "message '%s' lacks '%s'", moa_last_error(), needle);
    free(g->b);
}

TEST(bad_header) {
    gbuf g = valid_image();
    g.b[0] = 'X';
    expect_fail(&g, "bad magic");
    g = valid_image();
    g.b[4] = 1;
    expect_fail(&g, "version 1");
    g = valid_image();
    g.b[4] = 4;
    expect_fail(&g, "version 4");
    g = valid_image();
    memset(g.b + 8, 0xff, 8);    /* tensor count 2^64-1 */
    expect_fail(&g, "tensor count");
    g = valid_image();
    memset(g.b + 16, 0x7f, 8);   /* metadata count absurd */
    expect_fail(&g, "metadata count");
}

static gbuf image_with_kvs(const gbuf *k, uint64_t nkv) {
    gtensor ts[1] = {{"a", 2, {4, 2, 1, 1}, 0, fdata, sizeof fdata}};
    return gguf_build(3, k, nkv, ts, 1, 32);
}

TEST(bad_metadata) {
    gbuf k = {0};
    gb_str(&k, "x"); gb_u32(&k, 13); gb_u32(&k, 0);        /* unknown value type */
    gbuf g = image_with_kvs(&k, 1); free(k.b);
    expect_fail(&g, "unknown value type 13");

    k = (gbuf){0};
    gb_str(&k, "x"); gb_u32(&k, 9); gb_u32(&k, 9); gb_u64(&k, 0);  /* nested array */
    g = image_with_kvs(&k, 1); free(k.b);
    expect_fail(&g, "nested arrays");

    k = (gbuf){0};
    kv_u32(&k, "dup", 1); kv_u32(&k, "dup", 2);
    g = image_with_kvs(&k, 2); free(k.b);
    expect_fail(&g, "duplicate metadata key 'dup'");

    k = (gbuf){0};
    gb_str(&k, "s"); gb_u32(&k, 8); gb_u64(&k, (uint64_t)1 << 62);  /* string length absurd */
    g = image_with_kvs(&k, 1); free(k.b);
    expect_fail(&g, "string value length 4611686018427387904");

    k = (gbuf){0};
    gb_str(&k, "arr"); gb_u32(&k, 9); gb_u32(&k, 4); gb_u64(&k, (uint64_t)1 << 61);  /* array count */
    g = image_with_kvs(&k, 1); free(k.b);
    expect_fail(&g, "array of");

    k = (gbuf){0};
    gb_str(&k, "b"); gb_u32(&k, 7); gb_u8(&k, 2);     /* bool 2 */
    g = image_with_kvs(&k, 1); free(k.b);
    expect_fail(&g, "bool value 2");

    k = (gbuf){0};
    kv_u32(&k, "general.alignment", 24);
    g = image_with_kvs(&k, 1); free(k.b);
    expect_fail(&g, "general.alignment");

    k = (gbuf){0};
    kv_str(&k, "", "empty key");
    g = image_with_kvs(&k, 1); free(k.b);
    expect_fail(&g, "empty metadata key");
}

TEST(bad_tensors) {
    gbuf k = {0};
    gtensor t1[1] = {{"a", 5, {4, 2, 1, 1}, 0, fdata, sizeof fdata}};
    gbuf g = gguf_build(3, &k, 0, t1, 1, 32);
    expect_fail(&g, "n_dims 5");

    gtensor t2[1] = {{"a", 2, {4, 0, 1, 1}, 0, fdata, sizeof fdata}};
    g = gguf_build(3, &k, 0, t2, 1, 32);
    expect_fail(&g, "dimension 1 is 0");

    gtensor t3[1] = {{"a", 2, {4, 2, 1, 1}, 99, fdata, sizeof fdata}};
    g = gguf_build(3, &k, 0, t3, 1, 32);
    expect_fail(&g, "unsupported ggml type 99");

    gtensor t4[1] = {{"a", 1, {30, 1, 1, 1}, 8, q8block, sizeof q8block}};
    g = gguf_build(3, &k, 0, t4, 1, 32);
    expect_fail(&g, "not a multiple of the Q8_0 block size");

    gtensor t5[2] = {{"a", 2, {4, 2, 1, 1}, 0, fdata, sizeof fdata},
                     {"a", 2, {4, 2, 1, 1}, 0, fdata, sizeof fdata}};
    g = gguf_build(3, &k, 0, t5, 2, 32);
    expect_fail(&g, "duplicate tensor name 'a'");

    /* data past the end: claim a larger shape than the data written */
    gtensor t6[1] = {{"big", 2, {4, 1000, 1, 1}, 0, fdata, sizeof fdata}};
    g = gguf_build(3, &k, 0, t6, 1, 32);
    expect_fail(&g, "'big': data");

    /* misaligned offset: patch the offset field of the only tensor info */
    gtensor t7[1] = {{"a", 2, {4, 2, 1, 1}, 0, fdata, sizeof fdata}};
    g = gguf_build(3, &k, 0, t7, 1, 32);
    size_t off_pos = 24 + 8 + 1 + 4 + 16 + 4;   /* header, name, n_dims, ne, type */
    g.b[off_pos] = 4;
    expect_fail(&g, "not a multiple of the alignment");

    /* overlapping tensors: second tensor's offset patched to 0 */
    gtensor t8[2] = {{"a", 2, {4, 2, 1, 1}, 0, fdata, sizeof fdata},
                     {"b", 2, {4, 2, 1, 1}, 0, fdata, sizeof fdata}};
    g = gguf_build(3, &k, 0, t8, 2, 32);
    size_t second = off_pos + 8 + 8 + 1 + 4 + 16 + 4;
    memset(g.b + second, 0, 8);
    expect_fail(&g, "overlap");

    /* name longer than 64 bytes */
    char longname[80];
    memset(longname, 'n', 79); longname[79] = 0;
    gtensor t9[1] = {{longname, 2, {4, 2, 1, 1}, 0, fdata, sizeof fdata}};
    g = gguf_build(3, &k, 0, t9, 1, 32);
    expect_fail(&g, "tensor name length 79");
}

/* A tiny llama GGUF: shapes for n_embd 8, 2 heads, 1 KV head, n_ff 16, vocab 10, 1 layer. */
static gbuf tiny_llama(int break_q) {
    static float w[16 * 16 * 4];
    for (size_t i = 0; i < sizeof w / sizeof w[0]; i++) w[i] = 0.01f * (float)(i % 13);
    gbuf k = {0};
    kv_str(&k, "general.architecture", "llama");
    kv_u32(&k, "llama.block_count", 1);
    kv_u32(&k, "llama.context_length", 64);
    kv_u32(&k, "llama.embedding_length", 8);
    kv_u32(&k, "llama.feed_forward_length", 16);
    kv_u32(&k, "llama.attention.head_count", 2);
    kv_u32(&k, "llama.attention.head_count_kv", 1);
    gtensor ts[] = {
        {"token_embd.weight", 2, {8, 10}, 0, w, 8 * 10 * 4},
        {"output_norm.weight", 1, {8}, 0, w, 8 * 4},
        {"blk.0.attn_norm.weight", 1, {8}, 0, w, 8 * 4},
        {"blk.0.ffn_norm.weight", 1, {8}, 0, w, 8 * 4},
        {"blk.0.attn_q.weight", 2, {8, (uint64_t)(break_q ? 6 : 8)}, 0, w, (size_t)(8 * (break_q ? 6 : 8) * 4)},
        {"blk.0.attn_k.weight", 2, {8, 4}, 0, w, 8 * 4 * 4},
        {"blk.0.attn_v.weight", 2, {8, 4}, 0, w, 8 * 4 * 4},
        {"blk.0.attn_output.weight", 2, {8, 8}, 0, w, 8 * 8 * 4},
        {"blk.0.ffn_gate.weight", 2, {8, 16}, 0, w, 8 * 16 * 4},
        {"blk.0.ffn_up.weight", 2, {8, 16}, 0, w, 8 * 16 * 4},
        {"blk.0.ffn_down.weight", 2, {16, 8}, 0, w, 16 * 8 * 4},
    };
    gbuf g = gguf_build(3, &k, 7, ts, sizeof ts / sizeof ts[0], 32);
    free(k.b);
    return g;
}

TEST(llama_shapes) {
    gbuf g = tiny_llama(0);
    moa_gguf *f;
    moa_model *m = NULL;
    moa_model_params p = moa_model_default_params();
    p.compute_sha256 = 0;
    CHECK_OK(open_img(&g, g.n, &f));
    CHECK_OK(moa_model_from_gguf(f, &p, &m));
    if (m) {
        CHECK_EQ_INT(m->hp.n_layer, 1);
        CHECK_EQ_INT(m->hp.head_dim, 4);
        CHECK_EQ_INT(m->hp.n_vocab, 10);
        CHECK_EQ_INT(m->hp.n_ctx_train, 64);
        CHECK(m->tied);
        CHECK_NEAR(m->hp.rope_base, 10000, 0);   /* default */
    }
    moa_model_free(m);
    free(g.b);

    g = tiny_llama(1);
    CHECK_OK(open_img(&g, g.n, &f));
    moa_status st = moa_model_from_gguf(f, &p, &m);
    CHECK(st == MOA_ERR_FORMAT);
    CHECK(strstr(moa_last_error(), "blk.0.attn_q.weight") != NULL);
    CHECK(strstr(moa_last_error(), "expected [8, 8]") != NULL);
    free(g.b);
}

/* With MOA_FUZZ_SEED_DIR set, also writes the valid images as a seed corpus for fuzz_gguf. */
static void write_seeds(void) {
    const char *dir = getenv("MOA_FUZZ_SEED_DIR");
    if (!dir) return;
    gbuf imgs[2] = {valid_image(), tiny_llama(0)};
    for (int i = 0; i < 2; i++) {
        char path[1024];
        snprintf(path, sizeof path, "%s/seed%d.gguf", dir, i);
        FILE *fp = fopen(path, "wb");
        if (fp) { fwrite(imgs[i].b, 1, imgs[i].n, fp); fclose(fp); }
        free(imgs[i].b);
    }
}

int main(void) {
    write_seeds();
    RUN(valid_file);
    RUN(every_truncation_is_rejected);
    RUN(bad_header);
    RUN(bad_metadata);
    RUN(bad_tensors);
    RUN(llama_shapes);
    return test_summary();
}
