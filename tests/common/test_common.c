/* test_common.c - sha256 against FIPS vectors, atomic files, list parsing, errors. */
#include "moa/common.h"
#include "test.h"

#include <stdint.h>

#include <sys/mman.h>
#include <unistd.h>

static void hex_of(const char *s, size_t n, char hex[65]) {
    moa_sha256_ctx c;
    uint8_t d[32];
    moa_sha256_init(&c);
    moa_sha256_update(&c, s, n);
    moa_sha256_final(&c, d);
    moa_sha256_hex(d, hex);
}

TEST(sha256_vectors) {
    char hex[65];
    hex_of("", 0, hex);
    CHECK_STR(hex, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    hex_of("abc", 3, hex);
    CHECK_STR(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    const char *m = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
    hex_of(m, strlen(m), hex);
    CHECK_STR(hex, "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
    /* one million 'a', fed in uneven pieces */
    moa_sha256_ctx c;
    uint8_t d[32];
    char buf[997];
    memset(buf, 'a', sizeof buf);
    moa_sha256_init(&c);
    size_t left = 1000000;
    while (left) { size_t k = left < sizeof buf ? left : sizeof buf; moa_sha256_update(&c, buf, k); left -= k; }
    moa_sha256_final(&c, d);
    moa_sha256_hex(d, hex);
    CHECK_STR(hex, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
}

TEST(atomic_file) {
    char path[512];
    snprintf(path, sizeof path, "%s/atomic_test.txt", MOA_TEST_TMPDIR);
    unlink(path);
    moa_atomic_file af;
    CHECK_OK(moa_atomic_open(&af, path, "w"));
    fputs("hello", af.fp);
    CHECK(!moa_file_exists(path)); /* not visible before commit */
    CHECK_OK(moa_atomic_commit(&af));
    char *data; size_t n;
    CHECK_OK(moa_read_file(path, &data, &n));
    CHECK_EQ_INT(n, 5);
    CHECK_STR(data, "hello");
    free(data);
    /* abort leaves the old content alone */
    CHECK_OK(moa_atomic_open(&af, path, "w"));
    fputs("garbage", af.fp);
    moa_atomic_abort(&af);
    CHECK_OK(moa_read_file(path, &data, &n));
    CHECK_STR(data, "hello");
    free(data);
    unlink(path);
    CHECK(moa_read_file("/nonexistent/x", &data, &n) == MOA_ERR_IO);
    CHECK(strstr(moa_last_error(), "/nonexistent/x") != NULL);
}

TEST(parse_lists) {
    long v[8];
    CHECK_EQ_INT(moa_parse_int_list("1,2,30", v, 8), 3);
    CHECK_EQ_INT(v[2], 30);
    CHECK_EQ_INT(moa_parse_int_list("2k,4K", v, 8), 2);
    CHECK_EQ_INT(v[0], 2048);
    CHECK_EQ_INT(v[1], 4096);
    CHECK_EQ_INT(moa_parse_int_list("1,,2", v, 8), -1);
    CHECK_EQ_INT(moa_parse_int_list("1,x", v, 8), -1);
    CHECK_EQ_INT(moa_parse_int_list("1,2,", v, 8), -1);
    CHECK_EQ_INT(moa_parse_int_list("1,2,3", v, 2), -1);
    /* issue 16 case 7: the k suffix must not wrap around (18014398509481985 * 1024 = 1024 mod 2^64) */
    CHECK_EQ_INT(moa_parse_int_list("18014398509481985k", v, 8), -1);
    CHECK_EQ_INT(moa_parse_int_list("1,-18014398509481985k", v, 8), -1);
    double d[4];
    CHECK_EQ_INT(moa_parse_double_list("0.5,0.25", d, 4), 2);
    CHECK_NEAR(d[1], 0.25, 0);
    size_t b = 7;
    CHECK_EQ_INT(moa_parse_bytes("3K", &b), 0);
    CHECK(b == 3072);
    CHECK_EQ_INT(moa_parse_bytes("1.5g", &b), 0);
    CHECK(b == (size_t)3 << 29);
    CHECK_EQ_INT(moa_parse_bytes("0", &b), 0);
    CHECK(b == 0);
    CHECK_EQ_INT(moa_parse_bytes("max", &b), 0);
    CHECK(b == SIZE_MAX);
    b = 7;
    const char *bad[] = {"", "lots", "3KB", "-1", "K", "nan"};
    for (int i = 0; i < 6; i++) CHECK_MSG(moa_parse_bytes(bad[i], &b) == -1 && b == 7, "'%s' accepted", bad[i]);
}

TEST(errors) {
    CHECK(moa_err(MOA_ERR_FORMAT, "field '%s' at %d", "x", 3) == MOA_ERR_FORMAT);
    CHECK_STR(moa_last_error(), "field 'x' at 3");
    moa_err_prefix(MOA_ERR_FORMAT, "file.gguf");
    CHECK_STR(moa_last_error(), "file.gguf: field 'x' at 3");
    CHECK(strstr(moa_status_str(MOA_ERR_NOMEM), "NOMEM") != NULL);
    size_t out;
    CHECK(moa_mul_overflow((size_t)1 << 40, (size_t)1 << 40, &out) == -1);
    CHECK(moa_alloc_array((size_t)1 << 40, (size_t)1 << 40) == NULL);
}

/* The peak resident set follows what the process touches: 64 MiB written raise it by at
 * least 64 MiB; after freeing them and restarting the peak it is back below. */
TEST(peak_rss) {
    if (moa_peak_rss_bytes() < 0 || moa_peak_rss_reset() != 0) { fprintf(stderr, "  (no /proc: skipped)\n"); return; }
    double before = moa_peak_rss_bytes();
    size_t n = (size_t)64 << 20;
    /* mmap, not malloc: an allocator (or ASan's quarantine) may keep freed memory resident */
    void *m = mmap(NULL, n, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    CHECK(m != MAP_FAILED);
    if (m == MAP_FAILED) return;
    volatile char *p = m;
    for (size_t i = 0; i < n; i += 4096) p[i] = (char)i;
    double during = moa_peak_rss_bytes();
    CHECK(during - before >= (double)n * 0.98);
    munmap(m, n);
    CHECK(moa_peak_rss_reset() == 0);
    CHECK(moa_peak_rss_bytes() < during - (double)n * 0.5);
}

int main(void) {
    RUN(sha256_vectors);
    RUN(atomic_file);
    RUN(parse_lists);
    RUN(errors);
    RUN(peak_rss);
    return test_summary();
}
