/* test_dequant_golden.c - dequantisation against gguf-py (tests/fixtures/dequant-golden-kquant.json,
 * made by scripts/golden/make_dequant_golden.py).
 *   test_dequant_golden synthetic  (unit): random blocks of every supported type;
 *   test_dequant_golden qwen       (model): rows 0, 1 and last of one Q4_K, Q5_0, Q6_K and Q8_0
 *                                  tensor of Qwen2.5-Coder-0.5B Q4_K_M (path in $MOA_MODEL_QWEN;
 *                                  exit 77 = skip when unset).
 * Every value must be bit-identical, for moa_dequant_row and for the AVX2 / AVX-512 dequantisers:
 * gguf-py evaluates the same float32 expressions ((d*sc)*q - dmin*m, (d*sc)*q, q*d, q*d + m)
 * one rounded operation at a time, and quant*.c are compiled with -ffp-contract=off, so no FMA
 * can round differently (a build that contracted would differ by 1 ulp on Q4_K/Q5_K/Q4_1/Q5_1). */
#include "moa/quant.h"
#include "quant-impl.h"
#include "moa/model.h"
#include "moa/common.h"
#include "test.h"

#include <jansson.h>

static json_t *load_fixture(void) {
    json_error_t e;
    json_t *j = json_load_file(MOA_TEST_FIXTURES "/dequant-golden-kquant.json", 0, &e);
    if (!j) fprintf(stderr, "cannot read dequant-golden-kquant.json: %s (line %d)\n", e.text, e.line);
    return j;
}

static int hexval(char c) { return c <= '9' ? c - '0' : (c | 32) - 'a' + 10; }
static uint8_t *unhex(const char *h, size_t *n) {
    *n = strlen(h) / 2;
    uint8_t *b = malloc(*n ? *n : 1);
    for (size_t i = 0; i < *n; i++) b[i] = (uint8_t)(hexval(h[2 * i]) << 4 | hexval(h[2 * i + 1]));
    return b;
}

/* Bit-identical (value and sign; the fixture holds no NaN). Returns the count of mismatches. */
static int64_t count_diff(const float *got, json_t *values, int64_t *first) {
    int64_t bad = 0;
    *first = -1;
    size_t i;
    json_t *v;
    json_array_foreach(values, i, v) {
        float want = (float)json_number_value(v);
        if (!(got[i] == want) || signbit(got[i]) != signbit(want)) { if (!bad) *first = (int64_t)i; bad++; }
    }
    return bad;
}

/* Dequantise n_rows rows with every dequantiser; out[k] is [n_rows][n]; returns how many ran. */
static int dequant_all(moa_ggml_type t, const uint8_t *src, size_t rb, int64_t n_rows, int64_t n,
                       float *out[3], const char *names[3]) {
    int k = 0;
    names[k] = "reference";
    for (int64_t r = 0; r < n_rows; r++) moa_dequant_row(t, src + (size_t)r * rb, out[k] + r * n, n);
    k++;
    if (moa_cpu_has_avx2()) {
        names[k] = "avx2";
        CHECK(moa_dequant_rows_avx2(t, src, rb, n_rows, n, out[k]));
        k++;
    }
    if (moa_cpu_has_avx512()) {
        names[k] = "avx512";
        CHECK(moa_dequant_rows_avx512(t, src, rb, n_rows, n, out[k]));
        k++;
    }
    return k;
}

TEST(synthetic_every_type) {
    json_t *j = load_fixture();
    CHECK(j != NULL);
    if (!j) return;
    size_t si;
    json_t *s;
    int seen[64] = {0}, n_types = 0;
    json_array_foreach(json_object_get(j, "synthetic"), si, s) {
        moa_ggml_type t = (moa_ggml_type)json_integer_value(json_object_get(s, "type_id"));
        int64_t n = json_integer_value(json_object_get(s, "n"));
        size_t nbytes;
        uint8_t *raw = unhex(json_string_value(json_object_get(s, "raw_hex")), &nbytes);
        CHECK_EQ_INT(moa_ggml_row_bytes(t, n), nbytes);
        CHECK_EQ_INT(json_array_size(json_object_get(s, "values")), n);
        if (moa_ggml_row_bytes(t, n) == nbytes && (size_t)n == json_array_size(json_object_get(s, "values"))) {
            float *out[3];
            const char *names[3];
            for (int k = 0; k < 3; k++) out[k] = malloc(sizeof(float) * (size_t)n);
            int nk = dequant_all(t, raw, nbytes, 1, n, out, names);
            for (int k = 0; k < nk; k++) {
                int64_t first, bad = count_diff(out[k], json_object_get(s, "values"), &first);
                CHECK_MSG(bad == 0, "%s %s: %lld of %lld values differ from gguf-py (first %lld: %.9g vs %.9g)",
                          moa_ggml_type_name(t), names[k], (long long)bad, (long long)n, (long long)first,
                          first >= 0 ? out[k][first] : 0.0,
                          first >= 0 ? json_number_value(json_array_get(json_object_get(s, "values"), (size_t)first)) : 0.0);
            }
            for (int k = 0; k < 3; k++) free(out[k]);
            if (t >= 0 && t < 64 && !seen[t]) { seen[t] = 1; n_types++; }
        }
        free(raw);
    }
    CHECK_EQ_INT(n_types, 11);   /* F32 F16 BF16 Q4_0 Q4_1 Q5_0 Q5_1 Q8_0 Q4_K Q5_K Q6_K */
    json_decref(j);
}

TEST(qwen_tensors) {
    const char *path = getenv("MOA_MODEL_QWEN");
    json_t *j = load_fixture();
    CHECK(j != NULL);
    if (!j) return;
    moa_gguf *g;
    CHECK_OK(moa_gguf_open(path, &g));
    if (!g) { json_decref(j); return; }
    size_t ti;
    json_t *t;
    int n_rows_checked = 0;
    json_array_foreach(json_object_get(j, "tensors"), ti, t) {
        const char *name = json_string_value(json_object_get(t, "name"));
        const moa_gguf_tensor *tt = moa_gguf_find_tensor(g, name);
        CHECK_MSG(tt != NULL, "tensor %s missing", name);
        if (!tt) continue;
        CHECK_EQ_INT(tt->type, json_integer_value(json_object_get(t, "type_id")));
        const int64_t cols = (int64_t)tt->ne[0];
        const size_t rb = moa_ggml_row_bytes(tt->type, cols);
        const uint8_t *data = moa_gguf_tensor_data(g, tt);
        size_t nh;
        uint8_t *blk0 = unhex(json_string_value(json_object_get(t, "first_block_row0_hex")), &nh);
        CHECK_MSG(memcmp(blk0, data, nh) == 0, "%s: first block differs from the fixture's (another file?)", name);
        free(blk0);
        float *out[3];
        const char *names[3];
        for (int k = 0; k < 3; k++) out[k] = malloc(sizeof(float) * (size_t)cols);
        size_t ri;
        json_t *rv;
        json_array_foreach(json_object_get(t, "row_values"), ri, rv) {
            int64_t r = json_integer_value(json_object_get(rv, "row"));
            int nk = dequant_all((moa_ggml_type)tt->type, data + (size_t)r * rb, rb, 1, cols, out, names);
            for (int k = 0; k < nk; k++) {
                int64_t first, bad = count_diff(out[k], json_object_get(rv, "values"), &first);
                CHECK_MSG(bad == 0, "%s row %lld %s: %lld of the first 96 values differ (first %lld)", name,
                          (long long)r, names[k], (long long)bad, (long long)first);
                double sum = 0;
                for (int64_t i = 0; i < cols; i++) sum += out[k][i];
                /* float64 sums of the same float32 values in another order: ~1e-16 relative */
                CHECK_CLOSE(sum, json_number_value(json_object_get(rv, "row_sum_f64")), 1e-12, 1e-12);
            }
            n_rows_checked++;
        }
        for (int k = 0; k < 3; k++) free(out[k]);
    }
    CHECK_EQ_INT(n_rows_checked, 12);
    moa_gguf_close(g);
    json_decref(j);
}

int main(int argc, char **argv) {
    if (argc > 1 && !strcmp(argv[1], "qwen")) {
        const char *p = getenv("MOA_MODEL_QWEN");
        if (!p || !*p) {
            printf("SKIP: MOA_MODEL_QWEN is not set (scripts/fetch-model.sh qwen2.5-coder-0.5b prints the path)\n");
            return 77;
        }
        RUN(qwen_tensors);
    } else {
        RUN(synthetic_every_type);
    }
    return test_summary();
}
