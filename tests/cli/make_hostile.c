/* make_hostile.c - writes the hostile-input corpus of tests/cli/hostile/<kind>/: small files
 * of every kind the CLI reads (gguf, plan, profile, calib, evallog, results), each broken in one way,
 * each of which the relevant command must refuse (test_cli: exit 1, a message naming the file,
 * no file left behind). Valid files come from the libraries' own writers and are then broken
 * (bytes cut, an HDF5 attribute or dataset replaced, one byte of an HDF5 header changed, a
 * JSON field changed). profile/crash-*.h5 and calib/crash-*.h5 crash libhdf5 itself (see
 * attr_type_size): the HDF5 guard (moa/h5guard.h) must turn them into a clean failure.
 * evallog: *.jsonl are whole logs (bad headers); *.rows are sample rows that test_cli appends
 * to the header of a log the model has just written (the header records the model).
 * results: LongEval results files for `moa plan annotate` (a plan of model "aa..a").
 * Usage: make_hostile CORPUS_DIR   (regenerate with: build/tests/cli/make_hostile tests/cli/hostile) */
#include "moa/calib.h"
#include "moa/h5util.h"
#include "moa/common.h"
#include "moa/profile-file.h"
#include "tiny-calib.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static const char *dir;
static int failed;

static const char *at(const char *kind, const char *name) {
    static char buf[4][1024];
    static int k;
    char *b = buf[k++ % 4];
    snprintf(b, sizeof buf[0], "%s/%s/%s", dir, kind, name);
    return b;
}

static void put(const char *kind, const char *name, const void *data, size_t n) {
    FILE *fp = fopen(at(kind, name), "wb");
    if (!fp || fwrite(data, 1, n, fp) != n) { perror(at(kind, name)); failed = 1; }
    if (fp) fclose(fp);
}
static void put_text(const char *kind, const char *name, const char *text) { put(kind, name, text, strlen(text)); }

#define TRY(x) do { moa_status st_ = (x); if (st_ < 0) { fprintf(stderr, "%s: %s\n", #x, moa_last_error()); failed = 1; } } while (0)

/* ---- GGUF ---------------------------------------------------------------------------------- */
typedef struct { uint8_t b[512]; size_t n; } bytes;
static void u32(bytes *x, uint32_t v) { memcpy(x->b + x->n, &v, 4); x->n += 4; }
static void u64(bytes *x, uint64_t v) { memcpy(x->b + x->n, &v, 8); x->n += 8; }
static void str(bytes *x, const char *s) { u64(x, strlen(s)); memcpy(x->b + x->n, s, strlen(s)); x->n += strlen(s); }
/* GGUF v3 header with n_tensors, n_kv. */
static bytes gguf_head(uint32_t version, uint64_t n_tensors, uint64_t n_kv) {
    bytes x = {{0}, 0};
    memcpy(x.b, "GGUF", 4);
    x.n = 4;
    u32(&x, version);
    u64(&x, n_tensors);
    u64(&x, n_kv);
    return x;
}

static void gguf(void) {
    put("gguf", "empty.gguf", "", 0);
    put_text("gguf", "text.gguf", "this is a text file, not a model\n");
    put("gguf", "magic-only.gguf", "GGUF", 4);
    bytes x = gguf_head(99, 0, 0);
    put("gguf", "version-99.gguf", x.b, x.n);
    x = gguf_head(3, (uint64_t)1 << 62, (uint64_t)1 << 62);
    put("gguf", "huge-counts.gguf", x.b, x.n);
    x = gguf_head(3, 0, 1);   /* a key of length 2^63 */
    u64(&x, (uint64_t)1 << 63);
    put("gguf", "key-length-overflow.gguf", x.b, x.n);
    x = gguf_head(3, 0, 1);   /* a value of type 99 */
    str(&x, "general.architecture");
    u32(&x, 99);
    put("gguf", "bad-value-type.gguf", x.b, x.n);
    x = gguf_head(3, 0, 1);   /* an array of 2^60 strings */
    str(&x, "tokenizer.ggml.tokens");
    u32(&x, 9);
    u32(&x, 8);
    u64(&x, (uint64_t)1 << 60);
    put("gguf", "array-overflow.gguf", x.b, x.n);
    x = gguf_head(3, 1, 1);   /* a llama file whose one tensor lies beyond the end */
    str(&x, "general.architecture");
    u32(&x, 8);
    str(&x, "llama");
    str(&x, "token_embd.weight");
    u32(&x, 2);
    u64(&x, 64);
    u64(&x, 1u << 20);
    u32(&x, 0);                 /* f32 */
    u64(&x, (uint64_t)1 << 40); /* offset */
    put("gguf", "tensor-beyond-end.gguf", x.b, x.n);
    x = gguf_head(3, 1, 0);   /* a tensor of 9 dimensions */
    str(&x, "t");
    u32(&x, 9);
    for (int i = 0; i < 9; i++) u64(&x, 2);
    u32(&x, 0);
    u64(&x, 0);
    put("gguf", "too-many-dims.gguf", x.b, x.n);
}

/* ---- plans --------------------------------------------------------------------------------- */
static void plan_file(const char *name, const char *format, int n_layer, const char *units, const char *lengths,
                      const char *extra) {
    char text[4096];
    snprintf(text, sizeof text,
             "{\"format\":\"%s\",\"version\":1,\"model\":{\"arch\":\"llama\",\"n_layer\":%d,\"n_head\":2,"
             "\"n_head_kv\":1,\"head_dim\":64,\"sha256\":\"\"},\"sink\":64,\"block\":64,\"granularity\":"
             "\"kv-head\",\"layers\":[{\"units\":[%s]}],\"lengths\":%s,\"predicted\":[],\"provenance\":"
             "{\"profile_sha256\":\"\",\"calib_sha256\":\"\",\"tool_version\":\"0\",\"solver\":\"x\","
             "\"solver_status\":\"none\",\"gap\":0}%s}",
             format, n_layer, units, lengths, extra);
    put_text("plan", name, text);
}

static void plans(void) {
    const char *none = "{\"profiled\":[],\"constrained\":[],\"budgets\":[],\"validation\":null}";
    const char *ok = "{\"kind\":\"window\",\"alpha\":64,\"beta\":0.5}";
    put("plan", "empty.json", "", 0);
    put_text("plan", "not-json.json", "moa-plan v1 (honest)\n");
    put_text("plan", "truncated.json", "{\"format\":\"moa-plan\",\"version\":1,\"model\":{\"arch\":\"lla");
    put_text("plan", "array.json", "[1,2,3]");
    plan_file("other-format.json", "moa-profile", 1, ok, none, "");
    plan_file("layer-count.json", "moa-plan", 2, ok, none, "");   /* says 2 layers, lists 1 */
    plan_file("negative-span.json", "moa-plan", 1, "{\"kind\":\"window\",\"alpha\":-1e300,\"beta\":1}", none, "");
    plan_file("beta-2.json", "moa-plan", 1, "{\"kind\":\"window\",\"alpha\":64,\"beta\":2}", none, "");
    plan_file("alpha-inf.json", "moa-plan", 1, "{\"kind\":\"window\",\"alpha\":1e999,\"beta\":0}", none, "");
    plan_file("kind-sparse.json", "moa-plan", 1, "{\"kind\":\"sparse\"}", none, "");
    plan_file("two-units.json", "moa-plan", 1, "{\"kind\":\"dense\"},{\"kind\":\"dense\"}", none, "");
    plan_file("budget-lengths.json", "moa-plan", 1, ok,
              "{\"profiled\":[1024],\"constrained\":[1024,2048],\"budgets\":[0.5],\"validation\":null}", "");
    /* 5000 nested arrays */
    char *deep = malloc(10002);
    if (deep) {
        for (int i = 0; i < 5000; i++) { deep[i] = '['; deep[5000 + i] = ']'; }
        deep[10000] = '\0';
        put_text("plan", "deep-nesting.json", deep);
        free(deep);
    }
}

/* ---- HDF5 files: write a valid one, then break it ------------------------------------------ */
static void h5_set_i64(const char *path, const char *group, const char *attr, int64_t v) {
    hid_t f = H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT);
    hid_t g = group ? H5Gopen2(f, group, H5P_DEFAULT) : f;
    if (f < 0 || g < 0) { fprintf(stderr, "%s: cannot open\n", path); failed = 1; return; }
    H5Adelete(g, attr);
    TRY(moa_h5_attr_write_i64(g, attr, v));
    if (group) H5Gclose(g);
    H5Fclose(f);
}
static void h5_set_str(const char *path, const char *attr, const char *v) {
    hid_t f = H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT);
    if (f < 0) { fprintf(stderr, "%s: cannot open\n", path); failed = 1; return; }
    H5Adelete(f, attr);
    TRY(moa_h5_attr_write_str(f, attr, v));
    H5Fclose(f);
}
static void h5_replace(const char *path, const char *group, const char *name, hid_t type, int rank,
                       const hsize_t *dims, const void *data) {
    hid_t f = H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT);
    hid_t g = group ? H5Gopen2(f, group, H5P_DEFAULT) : f;
    if (f < 0 || g < 0) { fprintf(stderr, "%s: cannot open\n", path); failed = 1; return; }
    H5Ldelete(g, name, H5P_DEFAULT);
    if (data) TRY(moa_h5_write_dataset(g, name, type, rank, dims, data));
    if (group) H5Gclose(g);
    H5Fclose(f);
}
static void truncate_half(const char *from, const char *kind, const char *name) {
    char *d = NULL;
    size_t n = 0;
    TRY(moa_read_file(from, &d, &n));
    if (d) put(kind, name, d, n / 2);
    free(d);
}
/* A copy of `from` whose attribute `attr` (a message of the root group's object header:
 * version 1, reserved, name size, datatype size, dataspace size, then the name) has the high
 * byte of its datatype size set to 0xff: the type claims 65288 bytes inside a header of a few
 * dozen. HDF5 1.10.8 (Debian 12) then reads past its buffer: `moa` without the guard
 * (MOA_H5_GUARD=0) dies of SIGSEGV on each of these files; with it, the guard's child does and
 * the command fails with "malformed HDF5 file: the HDF5 library crashed reading it". Found by
 * setting every byte of the good files to other values under the guard (docs/fuzzing.md). */
static void attr_type_size(const char *from, const char *kind, const char *name, const char *attr) {
    char *d = NULL;
    size_t n = 0, len = strlen(attr) + 1;
    TRY(moa_read_file(from, &d, &n));
    for (size_t i = 8; d && i + len <= n; i++)
        if (!memcmp(d + i, attr, len) && d[i - 8] == 1 && (unsigned char)d[i - 6] == len && d[i - 5] == 0) {
            d[i - 3] = (char)0xff;
            put(kind, name, d, n);
            free(d);
            return;
        }
    fprintf(stderr, "%s: no attribute message of '%s'\n", from, attr);
    failed = 1;
    free(d);
}
static void copy(const char *from, const char *kind, const char *name) {
    char *d = NULL;
    size_t n = 0;
    TRY(moa_read_file(from, &d, &n));
    if (d) put(kind, name, d, n);
    free(d);
}

/* profile: 1 layer, 2 heads, 1 KV head, one 128-token bucket (sink 64, block 16: 8 bins) */
static void profiles(void) {
    char good[1024];
    snprintf(good, sizeof good, "%s", at("profile", "good.h5.tmp"));
    int64_t len[1] = {128};
    moa_profile *p = NULL;
    TRY(moa_profile_create(1, 2, 1, 64, 64, 16, len, 1, &p));
    if (!p) return;
    double a[16], s[2] = {0.1, 0.2};
    for (int i = 0; i < 16; i++) a[i] = 1.0 / (i + 1);
    TRY(moa_profile_add_sample(p, 0, a, a, s, 128));
    snprintf(p->model_sha256, sizeof p->model_sha256, "%064x", 1);
    TRY(moa_profile_save(p, good));
    moa_profile_free(p);
    put_text("profile", "text.h5", "not an HDF5 file\n");
    put("profile", "empty.h5", "", 0);
    truncate_half(good, "profile", "truncated.h5");
    copy(good, "profile", "version-99.h5");
    h5_set_i64(at("profile", "version-99.h5"), NULL, "version", 99);
    copy(good, "profile", "format-calib.h5");
    h5_set_str(at("profile", "format-calib.h5"), "format", "moa-calib");
    copy(good, "profile", "n-head-0.h5");
    h5_set_i64(at("profile", "n-head-0.h5"), NULL, "n_head", 0);
    copy(good, "profile", "no-influence.h5");
    h5_replace(at("profile", "no-influence.h5"), "bucket_128", "influence_abs", 0, 0, NULL, NULL);
    hsize_t d[3] = {1, 2, 8};
    double z[16];
    for (int i = 0; i < 16; i++) z[i] = 1.0;
    z[3] = z[5] = 1e308;   /* finite values whose sum overflows (issue 16 case 2) */
    copy(good, "profile", "sum-overflow.h5");
    h5_replace(at("profile", "sum-overflow.h5"), "bucket_128", "influence_abs", H5T_NATIVE_DOUBLE, 3, d, z);
    z[3] = z[5] = 1.0;
    z[7] = -1.0;
    copy(good, "profile", "negative-influence.h5");
    h5_replace(at("profile", "negative-influence.h5"), "bucket_128", "influence_abs", H5T_NATIVE_DOUBLE, 3, d, z);
    hsize_t d2[3] = {1, 2, 3};   /* 3 distance bins where 8 are due */
    copy(good, "profile", "bins-shape.h5");
    h5_replace(at("profile", "bins-shape.h5"), "bucket_128", "influence_abs", H5T_NATIVE_DOUBLE, 3, d2, z);
    copy(good, "profile", "samples-negative.h5");
    h5_set_i64(at("profile", "samples-negative.h5"), "bucket_128", "n_samples", -3);
    attr_type_size(good, "profile", "crash-attr-format.h5", "format");
    attr_type_size(good, "profile", "crash-attr-version.h5", "version");
    attr_type_size(good, "profile", "crash-attr-n-layer.h5", "n_layer");
    attr_type_size(good, "profile", "crash-attr-block.h5", "block");
    remove(good);
}

/* calib: the tiny calibration file (tests/tiny-calib.h: one 40-token sample, prompt 30,
 * response 30..38) */
static void calibs(void) {
    char good[1024];
    snprintf(good, sizeof good, "%s", at("calib", "good.h5.tmp"));
    tiny_calib c;
    tiny_calib_init(&c);
    c.f.tool_version = (char *)"hostile";
    TRY(moa_calib_write(good, &c.f));
    put_text("calib", "text.h5", "not an HDF5 file\n");
    truncate_half(good, "calib", "truncated.h5");
    copy(good, "calib", "version-99.h5");
    h5_set_i64(at("calib", "version-99.h5"), NULL, "version", 99);
    copy(good, "calib", "format-profile.h5");
    h5_set_str(at("calib", "format-profile.h5"), "format", "moa-profile");
    copy(good, "calib", "n-samples-5.h5");
    h5_set_i64(at("calib", "n-samples-5.h5"), NULL, "n_samples", 5);
    hsize_t ds[2] = {1, 2};
    int32_t span[2] = {30, 400};   /* response beyond the sample */
    copy(good, "calib", "span-beyond.h5");
    h5_replace(at("calib", "span-beyond.h5"), NULL, "response_span", H5T_NATIVE_INT32, 2, ds, span);
    int32_t back[2] = {35, 31};    /* response ends before it starts */
    copy(good, "calib", "span-reversed.h5");
    h5_replace(at("calib", "span-reversed.h5"), NULL, "response_span", H5T_NATIVE_INT32, 2, ds, back);
    hsize_t d1 = 2;
    int64_t off[2] = {0, 4000};    /* offsets past the token array */
    copy(good, "calib", "offset-beyond.h5");
    h5_replace(at("calib", "offset-beyond.h5"), NULL, "sample_offset", H5T_NATIVE_INT64, 1, &d1, off);
    copy(good, "calib", "no-tokens.h5");
    h5_replace(at("calib", "no-tokens.h5"), NULL, "tokens", 0, 0, NULL, NULL);
    int32_t neg[40];
    for (int i = 0; i < 40; i++) neg[i] = i == 35 ? -7 : 100;
    hsize_t dt = 40;
    copy(good, "calib", "negative-token.h5");
    h5_replace(at("calib", "negative-token.h5"), NULL, "tokens", H5T_NATIVE_INT32, 1, &dt, neg);
    attr_type_size(good, "calib", "crash-attr-format.h5", "format");
    attr_type_size(good, "calib", "crash-attr-tokenizer.h5", "tokenizer");
    attr_type_size(good, "calib", "crash-attr-n-samples.h5", "n_samples");
    remove(good);
}

/* ---- LongEval results logs ------------------------------------------------------------------ */
static void evallogs(void) {
    put("evallog", "empty.jsonl", "", 0);
    put_text("evallog", "not-json.jsonl", "moa-longeval-log\n");
    put_text("evallog", "other-format.jsonl", "{\"format\":\"moa-plan\",\"version\":1}\n");
    put_text("evallog", "other-settings.jsonl",
             "{\"format\":\"moa-longeval-log\",\"version\":1,\"label\":\"dense\",\"settings\":{\"task\":\"lines\"}}\n");
    /* rows after the run's own header (test_cli: length 256, 1 sample per bin) */
    const char *row = "{\"length\":256,\"bin\":%s,\"k\":%s,\"seed\":%s,\"prompt_tokens\":60,\"lines\":3,"
                      "\"query_index\":0,\"new_tokens\":1,\"expected\":\"7\",\"output\":\"7\",\"correct\":%s,"
                      "\"seconds\":0.1}\n";
    char text[2048];
    snprintf(text, sizeof text, "garbage in the middle\n");
    snprintf(text + strlen(text), sizeof text - strlen(text), row, "0", "0", "1", "1");
    put_text("evallog", "bad-middle-line.rows", text);
    snprintf(text, sizeof text, row, "10", "0", "1", "1");
    put_text("evallog", "bin-10.rows", text);
    snprintf(text, sizeof text, row, "0", "-1", "1", "1");
    put_text("evallog", "k-negative.rows", text);
    snprintf(text, sizeof text, row, "0", "5", "1", "1");
    put_text("evallog", "k-outside-grid.rows", text);
    snprintf(text, sizeof text, row, "0", "0", "-1", "1");
    put_text("evallog", "seed-negative.rows", text);
    snprintf(text, sizeof text, row, "0", "0", "1", "2");
    put_text("evallog", "correct-2.rows", text);
    put_text("evallog", "length-outside-grid.rows",
             "{\"length\":4096,\"bin\":0,\"k\":0,\"seed\":1,\"prompt_tokens\":60,\"lines\":3,\"query_index\":0,"
             "\"new_tokens\":1,\"expected\":\"7\",\"output\":\"7\",\"correct\":1,\"seconds\":0.1}\n");
    put_text("evallog", "missing-field.rows", "{\"length\":256,\"bin\":0,\"k\":0}\n");
}

/* ---- LongEval results files (moa plan annotate) -------------------------------------------- */
#define R_SETTINGS "{\"task\":\"needle\",\"seed\":2,\"samples_per_cell\":1,\"bins\":10,\"model\":{" \
    "\"model_sha256\":\"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\",\"attention\":" \
    "{\"kind\":\"plan\",\"file\":\"plan.json\",\"sha256\":\"0000000000000000000000000000000000000000000000000000000000000000\"}}}"
#define R_LENGTHS "[{\"length\":1024}]"

/* A results file: header fields, settings, lengths and samples as given (NULL samples: one
 * correct row per bin at length 1024, k 0, then `extra`). */
static void results_file(const char *name, const char *head, const char *settings, const char *lengths,
                         const char *samples, const char *extra) {
    char rows[4096] = "", text[8192];
    if (!samples) {
        for (int b = 0; b < 10; b++)
            snprintf(rows + strlen(rows), sizeof rows - strlen(rows),
                     "%s{\"length\":1024,\"bin\":%d,\"k\":0,\"seed\":1,\"prompt_tokens\":1000,\"lines\":3,"
                     "\"query_index\":0,\"new_tokens\":1,\"expected\":\"7\",\"output\":\"7\",\"correct\":1}",
                     b ? "," : "", b);
        snprintf(rows + strlen(rows), sizeof rows - strlen(rows), "%s", extra ? extra : "");
        samples = rows;
    }
    snprintf(text, sizeof text, "{%s,\"label\":\"plan\",\"settings\":%s,\"lengths\":%s,\"samples\":[%s]}\n",
             head ? head : "\"format\":\"moa-longeval\",\"version\":1", settings ? settings : R_SETTINGS,
             lengths ? lengths : R_LENGTHS, samples);
    put_text("results", name, text);
}

static void results(void) {
    put("results", "empty.json", "", 0);
    put_text("results", "not-json.json", "moa-longeval\n");
    results_file("other-format.json", "\"format\":\"moa-plan\",\"version\":1", NULL, NULL, NULL, NULL);
    results_file("version-99.json", "\"format\":\"moa-longeval\",\"version\":99", NULL, NULL, NULL, NULL);
    results_file("no-task.json", NULL, "{\"seed\":2,\"samples_per_cell\":1,\"model\":{}}", NULL, NULL, NULL);
    results_file("seed-string.json", NULL, "{\"task\":\"needle\",\"seed\":\"2\",\"samples_per_cell\":1}", NULL, NULL,
                 NULL);
    results_file("samples-per-cell-0.json", NULL, "{\"task\":\"needle\",\"seed\":2,\"samples_per_cell\":0}", NULL,
                 NULL, NULL);
    results_file("no-model.json", NULL, "{\"task\":\"needle\",\"seed\":2,\"samples_per_cell\":1}", NULL, NULL, NULL);
    results_file("attention-kind-number.json", NULL,
                 "{\"task\":\"needle\",\"seed\":2,\"samples_per_cell\":1,\"model\":{\"model_sha256\":"
                 "\"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\",\"attention\":{\"kind\":5}}}",
                 NULL, NULL, NULL);
    results_file("settings-array.json", NULL, "[]", NULL, NULL, NULL);
    results_file("lengths-empty.json", NULL, NULL, "[]", NULL, NULL);
    results_file("length-zero.json", NULL, NULL, "[{\"length\":0}]", NULL, NULL);
    results_file("length-huge.json", NULL, NULL, "[{\"length\":1099511627776}]", NULL, NULL);
    results_file("no-samples.json", NULL, NULL, NULL, "", NULL);
    results_file("sample-bin-10.json", NULL, NULL, NULL,
                 "{\"length\":1024,\"bin\":10,\"k\":0,\"seed\":1,\"prompt_tokens\":1000,\"lines\":3,"
                 "\"query_index\":0,\"new_tokens\":1,\"expected\":\"7\",\"output\":\"7\",\"correct\":1}", NULL);
    results_file("sample-other-length.json", NULL, NULL, NULL, NULL,
                 ",{\"length\":2048,\"bin\":0,\"k\":0,\"seed\":1,\"prompt_tokens\":1000,\"lines\":3,"
                 "\"query_index\":0,\"new_tokens\":1,\"expected\":\"7\",\"output\":\"7\",\"correct\":1}");
    results_file("sample-twice.json", NULL, NULL, NULL, NULL,
                 ",{\"length\":1024,\"bin\":3,\"k\":0,\"seed\":1,\"prompt_tokens\":1000,\"lines\":3,"
                 "\"query_index\":0,\"new_tokens\":1,\"expected\":\"7\",\"output\":\"7\",\"correct\":0}");
    results_file("other-plan.json", NULL, NULL, NULL, NULL, NULL);   /* well formed; sha256 0...0 */
    put_text("results", "truncated.json", "{\"format\":\"moa-longeval\",\"version\":1,\"label\":\"plan\",\"settings\":{\"ta");
}

int main(int argc, char **argv) {
    if (argc != 2) { fprintf(stderr, "usage: make_hostile CORPUS_DIR\n"); return 2; }
    dir = argv[1];
    const char *kinds[] = {"gguf", "plan", "profile", "calib", "evallog", "results"};
    for (int i = 0; i < 6; i++) {
        char d[1024];
        snprintf(d, sizeof d, "%s/%s", dir, kinds[i]);
        mkdir(dir, 0755);
        mkdir(d, 0755);
    }
    moa_h5_init();
    gguf();
    plans();
    profiles();
    calibs();
    evallogs();
    results();
    return failed;
}
