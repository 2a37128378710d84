/* test_ctx_device.c - the device choice of a context (moa_ctx_params.device), in every build:
 * CPU by default, the process default set by moa_ctx_set_default_device, MOA_DEVICE_CUDA
 * refused with MOA_ERR_DEVICE and a message where CUDA cannot run (no backend built, or no
 * device), AUTO falling back to the CPU there, unknown values refused. The CUDA forward
 * itself is tested in tests/model/test_engine_cuda.c. */
#include "moa/model.h"
#include "moa/common.h"
#include "test.h"
#include "tiny_model.h"

static tiny_cfg cfg = {1, 32, 4, 2, 48, 40, 64, 10000.0f, 1e-5f, 0};
static moa_model *M;

TEST(default_and_process_default) {
    CHECK(moa_ctx_default_params().device == MOA_DEVICE_CPU);
    moa_ctx_set_default_device(MOA_DEVICE_AUTO);
    CHECK(moa_ctx_default_params().device == MOA_DEVICE_AUTO);
    moa_ctx_set_default_device(MOA_DEVICE_CPU);
    moa_ctx *c = NULL;
    CHECK_OK(moa_ctx_create(M, NULL, &c));
    if (c) CHECK(moa_ctx_device(c) == MOA_DEVICE_CPU);
    moa_ctx_free(c);
}

TEST(cuda_where_it_cannot_run) {
    moa_ctx_params p = moa_ctx_default_params();
    moa_ctx *c = NULL;
    p.device = MOA_DEVICE_AUTO;
    CHECK_OK(moa_ctx_create(M, &p, &c));
    if (c) CHECK(moa_ctx_device(c) == (moa_ctx_cuda_available() ? MOA_DEVICE_CUDA : MOA_DEVICE_CPU));
    moa_ctx_free(c);
    c = NULL;
    if (!moa_ctx_cuda_available()) {
        p.device = MOA_DEVICE_CUDA;
        CHECK_EQ_INT(moa_ctx_create(M, &p, &c), MOA_ERR_DEVICE);
        CHECK(c == NULL);
        CHECK(strstr(moa_last_error(), "CUDA") != NULL);
    }
    p.device = (moa_device_kind)7;
    CHECK_EQ_INT(moa_ctx_create(M, &p, &c), MOA_ERR_INVALID_ARG);
    CHECK(c == NULL);
}

int main(void) {
    char path[512];
    snprintf(path, sizeof path, "%s/ctx_device_tiny.gguf", MOA_TEST_TMPDIR);
    if (tiny_write_file(cfg, 3, path) < 0) { fprintf(stderr, "cannot write %s\n", path); return 1; }
    moa_model_params mp = moa_model_default_params();
    mp.compute_sha256 = 0;
    if (moa_model_load(path, &mp, &M) < 0) { fprintf(stderr, "%s\n", moa_last_error()); return 1; }
    RUN(default_and_process_default);
    RUN(cuda_where_it_cannot_run);
    moa_model_free(M);
    return test_summary();
}
