/* test_stage_ledger.c - compress's stage times across runs (pipeline/stage-ledger.c): totals
 * carried from one run to the next through the file, a restarted stage dropping earlier runs,
 * the file re-readable as written, and damaged or hostile files dropped line by line (never a
 * crash: the unit tests also run under ASan + UBSan). Times are checked against lower bounds
 * from sleeps and against the values the files were given, never against speed. */
#include "stage-ledger.h"
#include "moa/common.h"
#include "test.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static char dir[] = "/tmp/moa-ledger-XXXXXX";

static const char *file(const char *name) {
    static char p[160];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    return p;
}

static void write_text(const char *path, const char *s, size_t n) {
    FILE *f = fopen(path, "wb");
    CHECK(f != NULL);
    if (!f) return;
    fwrite(s, 1, n, f);
    fclose(f);
}

static void nap_ms(int ms) {
    struct timespec t = {0, (long)ms * 1000000L};
    nanosleep(&t, NULL);
}

TEST(totals_carry_across_runs) {
    const char *path = file("a.tsv");
    const char *t = "# moa compress stage times v1\n10.5\t3\tprofile (attention influence)\n"
                    "2\t1\tcalibration set (model's own answers)\n";
    write_text(path, t, strlen(t));
    moa_stage_ledger lg;
    CHECK(moa_ledger_open(&lg, path) == 0);
    CHECK_EQ_INT(lg.n, 2);
    moa_ledger_enter(&lg, "calibration set (model's own answers)");
    moa_ledger_enter(&lg, "profile (attention influence)");   /* resumed: earlier runs count */
    nap_ms(30);
    moa_ledger_enter(&lg, "optimise (GLPK, Pareto front)");    /* new stage */
    moa_ledger_restart(&lg);                                   /* from scratch: nothing earlier */
    nap_ms(20);
    moa_ledger_close(&lg);

    CHECK(moa_ledger_open(&lg, path) == 0);
    const moa_ledger_row *p = moa_ledger_find(&lg, "profile (attention influence)");
    const moa_ledger_row *c = moa_ledger_find(&lg, "calibration set (model's own answers)");
    const moa_ledger_row *o = moa_ledger_find(&lg, "optimise (GLPK, Pareto front)");
    CHECK(p && c && o);
    if (p && c && o) {
        CHECK_MSG(p->seconds >= 10.5 + 0.029 && p->seconds < 10.5 + 60, "profile %g s", p->seconds);
        CHECK_EQ_INT(p->runs, 3);   /* this run spent less than 2 s on it */
        CHECK(c->seconds >= 2 && c->seconds < 2 + 60);
        CHECK(o->seconds >= 0.019 && o->seconds < 60);
        CHECK_EQ_INT(o->runs, 0);
        CHECK_EQ_INT(lg.cur, -1);   /* a reopened ledger times nothing until a stage is entered */
    }
    /* restart drops earlier runs: the profile's 10.5 s are gone */
    moa_ledger_enter(&lg, "profile (attention influence)");
    moa_ledger_restart(&lg);
    moa_ledger_close(&lg);
    CHECK(moa_ledger_open(&lg, path) == 0);
    p = moa_ledger_find(&lg, "profile (attention influence)");
    CHECK(p && p->seconds < 10 && p->runs == 0);
    moa_ledger_close(&lg);
}

/* Each hostile line is dropped; the good ones around it are kept. */
TEST(damaged_files_dropped_line_by_line) {
    const char *path = file("b.tsv");
    char longname[200];
    memset(longname, 'x', sizeof longname - 1);
    longname[sizeof longname - 1] = '\0';
    char text[2048];
    int n = snprintf(text, sizeof text,
                     "# moa compress stage times v1\n"
                     "1\t1\tgood one\n"
                     "nan\t1\tnot a number\n"
                     "inf\t1\tinfinite\n"
                     "-3\t1\tnegative\n"
                     "4\t-1\tnegative runs\n"
                     "4\t1.5\tfractional runs\n"
                     "4 1 spaces not tabs\n"
                     "4\t1\t\n"
                     "4\t1\t%s\n"
                     "4\t1\tcontrol\x01" "byte\n"
                     "1e400\t1\toverflow\n"
                     "5\t99999999999\thuge runs\n"
                     "2\t2\tgood one\n"          /* duplicate: the first is kept */
                     "\n"
                     "3\t0\tgood two",            /* no final newline */
                     longname);
    write_text(path, text, (size_t)n);
    moa_stage_ledger lg;
    CHECK(moa_ledger_open(&lg, path) == 0);
    CHECK_EQ_INT(lg.n, 2);
    const moa_ledger_row *a = moa_ledger_find(&lg, "good one"), *b = moa_ledger_find(&lg, "good two");
    CHECK(a && a->seconds == 1 && a->runs == 1);
    CHECK(b && b->seconds == 3 && b->runs == 0);
    moa_ledger_close(&lg);

    /* a file that is not a ledger at all, an empty one, a header only, binary junk */
    const char *bad[4] = {"# moa compress stage times v2\n1\t1\tx\n", "", "# moa compress stage times v1",
                          "\x7f" "ELF\0\0\t\t\n\n"};
    size_t len[4] = {strlen(bad[0]), 0, strlen(bad[2]), 10};
    for (int i = 0; i < 4; i++) {
        write_text(path, bad[i], len[i]);
        CHECK(moa_ledger_open(&lg, path) == 0);
        CHECK_EQ_INT(lg.n, 0);
        moa_ledger_enter(&lg, "s");
        moa_ledger_close(&lg);   /* rewritten as a good file */
        CHECK(moa_ledger_open(&lg, path) == 0);
        CHECK_EQ_INT(lg.n, 1);
        moa_ledger_close(&lg);
    }
    /* more stages than the table holds: the extra ones are not timed, nothing overflows */
    CHECK(moa_ledger_open(&lg, path) == 0);
    for (int i = 0; i < MOA_LEDGER_MAX_STAGES + 5; i++) {
        char s[32];
        snprintf(s, sizeof s, "stage %d", i);
        moa_ledger_enter(&lg, s);
    }
    CHECK_EQ_INT(lg.n, MOA_LEDGER_MAX_STAGES);
    CHECK_EQ_INT(lg.cur, -1);
    moa_ledger_close(&lg);
}

/* In memory (no path): times, never writes. */
TEST(in_memory) {
    moa_stage_ledger lg;
    CHECK(moa_ledger_open(&lg, NULL) == 0);
    moa_ledger_enter(&lg, "a");
    nap_ms(5);
    moa_ledger_flush(&lg, 1);
    const moa_ledger_row *a = moa_ledger_find(&lg, "a");
    CHECK(a && a->seconds >= 0.004 && a->this_run == a->seconds);
    moa_ledger_close(&lg);
}

int main(void) {
    if (!mkdtemp(dir)) return 1;
    RUN(totals_carry_across_runs);
    RUN(damaged_files_dropped_line_by_line);
    RUN(in_memory);
    remove(file("a.tsv"));
    remove(file("b.tsv"));
    rmdir(dir);
    return test_summary();
}
