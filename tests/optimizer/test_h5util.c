/* test_h5util.c - HDF5 attribute/dataset helpers: round trips and named errors. */
#include "test.h"
#include "h5util.h"
#include "moa-common.h"

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

int main(void) {
    moa_h5_init();
    RUN(attrs_roundtrip);
    RUN(dataset_roundtrip);
    return test_summary();
}
