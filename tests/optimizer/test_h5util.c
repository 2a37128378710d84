/* test_h5util.c - HDF5 attribute/dataset helpers: round trips and named errors. */
#include "test.h"
#include "moa/h5util.h"
#include "moa/common.h"

static const char *path = MOA_TEST_TMPDIR "/h5util.h5";

TEST(attrs_roundtrip) {
    hid_t f = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    CHECK(f >= 0);
    CHECK_OK(moa_h5_attr_write_str(f, "format", "moa-test"));
    CHECK_OK(moa_h5_attr_write_str(f, "format", "moa-test2"));  /* replace */
    CHECK_OK(moa_h5_attr_write_i64(f, "n", -1234567890123LL));
    CHECK_OK(moa_h5_attr_write_f64(f, "x", 0.125));
    char buf[32];
    int64_t n = 0;
    double x = 0;
    CHECK_OK(moa_h5_attr_read_str(f, "format", buf, sizeof buf));
    CHECK_STR(buf, "moa-test2");
    CHECK_OK(moa_h5_attr_read_i64(f, "n", &n));
    CHECK_EQ_INT(n, -1234567890123LL);
    CHECK_OK(moa_h5_attr_read_f64(f, "x", &x));
    CHECK(x == 0.125);
    /* errors name the attribute */
    CHECK(moa_h5_attr_read_i64(f, "missing", &n) == MOA_ERR_FORMAT);
    CHECK(strstr(moa_last_error(), "'missing'") != NULL);
    CHECK(moa_h5_attr_read_i64(f, "format", &n) == MOA_ERR_FORMAT);
    CHECK(strstr(moa_last_error(), "'format'") && strstr(moa_last_error(), "integer"));
    CHECK(moa_h5_attr_read_str(f, "format", buf, 5) == MOA_ERR_FORMAT);
    CHECK(strstr(moa_last_error(), "too long") != NULL);
    CHECK(moa_h5_attr_read_f64(f, "n", &x) == MOA_ERR_FORMAT);
    H5Fclose(f);
}

TEST(dataset_roundtrip) {
    hid_t f = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    double v[6] = {1, 2, 3, 4, 5, 6};
    hsize_t dims[2] = {2, 3}, bad[2] = {3, 2}, got[2];
    CHECK_OK(moa_h5_write_dataset(f, "d", H5T_NATIVE_DOUBLE, 2, dims, v));
    int32_t iv[3] = {7, 8, 9};
    hsize_t d1[1] = {3};
    CHECK_OK(moa_h5_write_dataset(f, "i", H5T_NATIVE_INT32, 1, d1, iv));
    void *out = NULL;
    CHECK_OK(moa_h5_read_dataset(f, "d", H5T_NATIVE_DOUBLE, 2, dims, got, &out));
    CHECK(out && ((double *)out)[5] == 6 && got[0] == 2 && got[1] == 3);
    free(out);
    CHECK(moa_h5_read_dataset(f, "d", H5T_NATIVE_DOUBLE, 2, bad, NULL, &out) == MOA_ERR_FORMAT);
    CHECK(strstr(moa_last_error(), "'d'") && strstr(moa_last_error(), "[3,2]"));
    CHECK(moa_h5_read_dataset(f, "d", H5T_NATIVE_DOUBLE, 1, NULL, NULL, &out) == MOA_ERR_FORMAT);
    CHECK(strstr(moa_last_error(), "rank") != NULL);
    CHECK(moa_h5_read_dataset(f, "i", H5T_NATIVE_DOUBLE, 1, NULL, NULL, &out) == MOA_ERR_FORMAT);
    CHECK(moa_h5_read_dataset(f, "nope", H5T_NATIVE_DOUBLE, 1, NULL, NULL, &out) == MOA_ERR_FORMAT);
    CHECK(strstr(moa_last_error(), "'nope'") != NULL);
    CHECK(out == NULL);
    H5Fclose(f);
    remove(path);
}

/* Writes a 512-double dataset, then rewrites its contiguous layout message (the 8-byte address
 * then the 8-byte size, little-endian, as the file format specifies) with addr / size. */
static int write_patched(uint64_t addr_delta, uint64_t new_size) {
    hid_t f = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    double v[512];
    for (int i = 0; i < 512; i++) v[i] = i;
    hsize_t n = 512;
    if (moa_h5_write_dataset(f, "d", H5T_NATIVE_DOUBLE, 1, &n, v) < 0) return -1;
    hid_t d = H5Dopen2(f, "d", H5P_DEFAULT);
    uint64_t off = H5Dget_offset(d), size = H5Dget_storage_size(d);
    H5Dclose(d);
    H5Fclose(f);
    if (size != sizeof v) return -1;
    FILE *fp = fopen(path, "r+b");
    if (!fp) return -1;
    unsigned char buf[8192];
    size_t len = fread(buf, 1, sizeof buf, fp);
    unsigned char want[16];
    for (int i = 0; i < 8; i++) { want[i] = (unsigned char)(off >> (8 * i)); want[8 + i] = (unsigned char)(size >> (8 * i)); }
    int hits = 0;
    for (size_t i = 0; i + 16 <= len && i < off; i++)
        if (!memcmp(buf + i, want, 16)) {
            const uint64_t a = off + addr_delta;
            for (int k = 0; k < 8; k++) { buf[i + k] = (unsigned char)(a >> (8 * k)); buf[i + 8 + k] = (unsigned char)(new_size >> (8 * k)); }
            hits++;
            fseek(fp, (long)i, SEEK_SET);
            fwrite(buf + i, 1, 16, fp);
        }
    fclose(fp);
    return hits;
}

/* libhdf5 1.10 reads a contiguous dataset from wherever its layout message says (a memcpy from
 * wild addresses under H5Dread, docs/fuzzing.md site 3): the reader checks the storage first. */
TEST(dataset_storage_outside_file) {
    void *out = NULL;
    hsize_t got[1];
    CHECK_EQ_INT(write_patched(0, 4096), 1);   /* untouched: reads */
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    CHECK_OK(moa_h5_read_dataset(f, "d", H5T_NATIVE_DOUBLE, 1, NULL, got, &out));
    CHECK(out && ((double *)out)[511] == 511);
    free(out);
    out = NULL;
    H5Fclose(f);
    CHECK_EQ_INT(write_patched((uint64_t)1 << 40, 4096), 1);   /* address far past the end */
    f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    CHECK(f >= 0);
    CHECK(moa_h5_read_dataset(f, "d", H5T_NATIVE_DOUBLE, 1, NULL, got, &out) == MOA_ERR_FORMAT);
    CHECK(strstr(moa_last_error(), "'d'") && strstr(moa_last_error(), "outside the file"));
    CHECK(out == NULL);
    H5Fclose(f);
    CHECK_EQ_INT(write_patched(0, 1024), 1);   /* storage smaller than the shape needs */
    f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    CHECK(moa_h5_read_dataset(f, "d", H5T_NATIVE_DOUBLE, 1, NULL, got, &out) == MOA_ERR_FORMAT);
    CHECK(strstr(moa_last_error(), "holds 1024 bytes"));
    H5Fclose(f);
    remove(path);
}

/* A compact dataset (data inside the object header, as other writers may make) reads. */
TEST(dataset_compact) {
    hid_t f = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    hsize_t n = 5, got[1];
    int32_t v[5] = {1, -2, 3, -4, 5};
    hid_t sp = H5Screate_simple(1, &n, NULL), pl = H5Pcreate(H5P_DATASET_CREATE);
    H5Pset_layout(pl, H5D_COMPACT);
    hid_t d = H5Dcreate2(f, "c", H5T_STD_I32LE, sp, H5P_DEFAULT, pl, H5P_DEFAULT);
    CHECK(d >= 0 && H5Dwrite(d, H5T_NATIVE_INT32, H5S_ALL, H5S_ALL, H5P_DEFAULT, v) >= 0);
    H5Dclose(d);
    H5Pclose(pl);
    H5Sclose(sp);
    void *out = NULL;
    CHECK_OK(moa_h5_read_dataset(f, "c", H5T_NATIVE_INT32, 1, NULL, got, &out));
    CHECK(out && got[0] == 5 && ((int32_t *)out)[3] == -4);
    free(out);
    H5Fclose(f);
    remove(path);
}

int main(void) {
    moa_h5_init();
    RUN(attrs_roundtrip);
    RUN(dataset_roundtrip);
    RUN(dataset_storage_outside_file);
    RUN(dataset_compact);
    return test_summary();
}
