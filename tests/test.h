/* test.h - a tiny test harness: every failed check is printed and reaches the exit code.
 *
 *   TEST(name) { CHECK(x == 1); CHECK_NEAR(a, b, 1e-6); }
 *   int main(void) { RUN(name); return test_summary(); }
 *
 * The summary line "N passed, M failed" is what CI reads; main returns non-zero on failure.
 * Model-dependent tests call test_model_path(), which skips (exit 77) when MOA_MODEL is unset.
 */
#ifndef MOA_TEST_H
#define MOA_TEST_H

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int test_checks_failed_;
static int test_cases_passed_, test_cases_failed_;
static int test_case_failed_;

#define TEST(name) static void name(void)

#define RUN(name)                                                              \
    do {                                                                       \
        test_case_failed_ = 0;                                                 \
        name();                                                                \
        if (test_case_failed_) { test_cases_failed_++;                         \
            fprintf(stderr, "FAIL %s\n", #name); }                             \
        else { test_cases_passed_++; fprintf(stderr, "ok   %s\n", #name); }    \
    } while (0)

#define TEST_FAIL_(...)                                                        \
    do {                                                                       \
        test_checks_failed_++; test_case_failed_ = 1;                          \
        fprintf(stderr, "  %s:%d: ", __FILE__, __LINE__);                      \
        fprintf(stderr, __VA_ARGS__);                                          \
        fputc('\n', stderr);                                                   \
    } while (0)

#define CHECK(cond)                                                            \
    do { if (!(cond)) TEST_FAIL_("check failed: %s", #cond); } while (0)

#define CHECK_MSG(cond, ...)                                                   \
    do { if (!(cond)) TEST_FAIL_(__VA_ARGS__); } while (0)

#define CHECK_EQ_INT(a, b)                                                     \
    do { long long a_ = (long long)(a), b_ = (long long)(b);                   \
         if (a_ != b_) TEST_FAIL_("%s == %s: %lld != %lld", #a, #b, a_, b_);   \
    } while (0)

#define CHECK_STR(a, b)                                                        \
    do { const char *a_ = (a), *b_ = (b);                                      \
         if (!a_ || !b_ || strcmp(a_, b_) != 0)                                \
             TEST_FAIL_("%s == %s: \"%s\" != \"%s\"", #a, #b,                  \
                        a_ ? a_ : "(null)", b_ ? b_ : "(null)");               \
    } while (0)

/* |a-b| <= tol (absolute). */
#define CHECK_NEAR(a, b, tol)                                                  \
    do { double a_ = (double)(a), b_ = (double)(b);                            \
         if (!(fabs(a_ - b_) <= (tol)))                                        \
             TEST_FAIL_("%s ~ %s: %.9g vs %.9g (tol %g)", #a, #b, a_, b_,      \
                        (double)(tol));                                        \
    } while (0)

/* |a-b| <= rtol*max(|a|,|b|) + atol. */
#define CHECK_CLOSE(a, b, rtol, atol)                                          \
    do { double a_ = (double)(a), b_ = (double)(b);                            \
         double m_ = fabs(a_) > fabs(b_) ? fabs(a_) : fabs(b_);                \
         if (!(fabs(a_ - b_) <= (rtol) * m_ + (atol)))                         \
             TEST_FAIL_("%s ~ %s: %.9g vs %.9g (rtol %g, atol %g)", #a, #b,    \
                        a_, b_, (double)(rtol), (double)(atol));               \
    } while (0)

/* Status check: the call must return >= 0; prints moa_last_error() otherwise. */
#define CHECK_OK(expr)                                                         \
    do { int st_ = (int)(expr);                                                \
         if (st_ < 0) TEST_FAIL_("%s failed (%d): %s", #expr, st_,             \
                                 moa_last_error());                            \
    } while (0)

static inline int test_summary(void) {
    printf("%d passed, %d failed\n", test_cases_passed_, test_cases_failed_);
    return test_cases_failed_ ? 1 : 0;
}

/* Path of the SmolLM2 GGUF (env MOA_MODEL); NULL means: skip this test program. */
static inline const char *test_model_path(void) {
    const char *p = getenv("MOA_MODEL");
    if (!p || !*p) {
        printf("SKIP: MOA_MODEL is not set (scripts/fetch-model.sh prints the path)\n");
        exit(77);
    }
    return p;
}

/* Max relative error between arrays: max_i |a-b| / max(max_i |b|, floor). */
static inline double test_max_rel_err(const float *a, const float *b, size_t n, double floor_) {
    double mb = floor_, md = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - (double)b[i]);
        if (d > md || d != d) md = d != d ? INFINITY : d;
        if (fabs((double)b[i]) > mb) mb = fabs((double)b[i]);
    }
    return md / mb;
}

#endif /* MOA_TEST_H */
