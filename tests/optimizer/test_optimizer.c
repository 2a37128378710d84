/* test_optimizer.c - span definition, rule space, MILP exactness and Pareto front against
 * brute-force enumeration, infeasible budgets, planted head types, gap vs bound. */
#include <math.h>
#include "test.h"
#include "moa/common.h"
#include "moa/optimizer.h"
#include "span.h"

/* ---- span definition (values worked out by hand from the formula) ---------------------- */
TEST(span_definition) {
    /* alpha + beta*N = 1024 + 0.25*4096 = 2048 -> already a multiple of 64 */
    CHECK_EQ_INT(moa_span_window(1024, 0.25, 4096, 64), 2048);
    /* 100 + 0 -> round_up(100, 64) = 128 */
    CHECK_EQ_INT(moa_span_window(100, 0, 4096, 64), 128);
    /* beyond N: clamp */
    CHECK_EQ_INT(moa_span_window(8192, 0.5, 4096, 64), 4096);
    /* negative alpha: -2048 + 0.5*2048 = -1024 -> 0 */
    CHECK_EQ_INT(moa_span_window(-2048, 0.5, 2048, 64), 0);
    /* N not a multiple of block: round_up(1000, 64) = 1024 > N=1000 -> N */
    CHECK_EQ_INT(moa_span_window(1000, 0, 1000, 64), 1000);
    CHECK_EQ_INT(moa_span_window(NAN, 0, 1000, 64), 0);
    /* density = min(N, sink + W) / N */
    CHECK_NEAR(moa_span_density(1024, 0.25, 64, 64, 4096), (64.0 + 2048) / 4096, 1e-15);
    CHECK_NEAR(moa_span_density(0, 1, 64, 64, 4096), 1.0, 1e-15);
    CHECK_NEAR(moa_span_density_of_window(0, 64, 4096), 64.0 / 4096, 1e-15);
}

/* ---- rule space: the reference's 48 rules for 2k..8k profiled, 16k constrained --------- */
TEST(rule_space_defaults) {
    moa_rule r[256];
    int n = moa_rules_default(2048, 8192, 16384, 64, r, 256);
    CHECK_EQ_INT(n, 48);   /* the published count */
    /* recount independently */
    int cnt = 0;
    for (int a = -2; a <= 8; a++)
        for (int b = 0; b <= 8; b++) {
            double al = 1024.0 * a, be = b / 8.0;
            if (al + be * 2048 > 0 && al + be * 8192 <= 8192 && al + be * 16384 <= 16384) cnt++;
        }
    CHECK_EQ_INT(n, cnt);
    for (int i = 0; i < n; i++) CHECK(r[i].alpha + r[i].beta * 2048 > 0);
}

/* compress's grid: step 1024 * 512 / 8192 = 64 at block 16, then the short windows 16 and 32
 * (64 is already there), alpha-major with the 9 betas */
TEST(rule_space_compress_grid) {
    double a[MOA_RULES_MAX_ALPHAS], b[MOA_RULES_N_BETAS];
    int na = moa_rules_alphas(512, 16, 1, a);
    CHECK_EQ_INT(na, 13);
    for (int i = 0; i < 11; i++) CHECK(a[i] == 64.0 * (i - 2));
    CHECK(a[11] == 16 && a[12] == 32);
    CHECK_EQ_INT(moa_rules_alphas(512, 16, 0, a), 11);
    CHECK_EQ_INT(moa_rules_alphas(100, 64, 0, a), 11);   /* step below one block: one block */
    CHECK(a[3] == 64);
    moa_rules_betas(b);
    CHECK(b[0] == 0 && b[4] == 0.5 && b[8] == 1);
    moa_rule r[MOA_RULES_MAX_ALPHAS * MOA_RULES_N_BETAS];
    na = moa_rules_alphas(512, 16, 1, a);
    int n = moa_rules_cross(a, na, b, MOA_RULES_N_BETAS, r, 200);
    CHECK_EQ_INT(n, 13 * 9);
    CHECK(r[9].alpha == -64 && r[9].beta == 0 && r[10].beta == 0.125);
    CHECK_EQ_INT(moa_rules_cross(a, na, b, MOA_RULES_N_BETAS, r, 20), 20);   /* capped */
}

/* ---- random instances and brute force -------------------------------------------------- */
static uint64_t rs = 12345;
static int rnd(int n) {
    rs = rs * 6364136223846793005ULL + 1442695040888963407ULL;
    return (int)((rs >> 33) % (uint64_t)n);
}

/* n_layer x upl units, R rules, 2 lengths (both objectives and constrained). Integer losses,
 * densities on a 1/16 grid; budgets between the min and max mean density. */
static moa_opt_problem *random_problem(int n_layer, int upl, int group, int R, int cap, int lower) {
    moa_opt_problem *pb;
    if (moa_opt_problem_alloc(n_layer, upl, group, R, 2, 2, &pb) < 0) return NULL;
    for (int r = 0; r < R; r++) { pb->rules[r].alpha = 64 * (r + 1); pb->rules[r].beta = 0; }
    for (int j = 0; j < 2; j++) {
        pb->len[j] = 1024 << j;
        pb->obj[pb->n_obj++] = j;
        pb->con_len[j] = pb->len[j];
        double mn = 1, mx = 0;
        for (int r = 0; r < R; r++) {
            double d = (1 + rnd(16)) / 16.0;
            pb->dens[j * R + r] = d;
            if (d < mn) mn = d;
            if (d > mx) mx = d;
        }
        pb->budget_hi[j] = mn + (mx - mn) * (0.3 + 0.4 * rnd(100) / 100.0);
        pb->budget_lo[j] = lower ? pb->budget_hi[j] * 0.8 : 0;
        for (int u = 0; u < pb->n_units; u++)
            for (int r = 0; r < R; r++) pb->loss[((size_t)j * pb->n_units + u) * R + r] = rnd(100);
    }
    pb->max_rules_per_layer = cap;
    return pb;
}

/* Enumerate every assignment; returns the number of feasible ones. f1/f2 receive per-length
 * losses of each feasible assignment (caller-sized), best receives min of w0*f1+w1*f2. */
static int brute(const moa_opt_problem *pb, double w0, double w1, double *best, double *f1, double *f2) {
    int U = pb->n_units, R = pb->n_rules, nfeas = 0;
    int c[32] = {0};
    *best = INFINITY;
    for (;;) {
        int ok = 1;
        for (int k = 0; k < pb->n_con && ok; k++) {
            double s = 0;
            int ng = U / pb->group;
            for (int g = 0; g < ng; g++) {
                double m = 0;
                for (int u = g * pb->group; u < (g + 1) * pb->group; u++)
                    if (pb->dens[k * R + c[u]] > m) m = pb->dens[k * R + c[u]];
                s += m;
            }
            s /= ng;
            if (s > pb->budget_hi[k] + 1e-12 || s < pb->budget_lo[k] - 1e-12) ok = 0;
        }
        if (ok && pb->max_rules_per_layer > 0)
            for (int l = 0; l < pb->n_layer && ok; l++) {
                int used[64] = {0}, d = 0;
                for (int i = 0; i < pb->units_per_layer; i++) d += !used[c[l * pb->units_per_layer + i]]++;
                if (d > pb->max_rules_per_layer) ok = 0;
            }
        if (ok) {
            double a = 0, b = 0;
            for (int u = 0; u < U; u++) {
                a += pb->loss[(size_t)u * R + c[u]];
                b += pb->loss[((size_t)U + u) * R + c[u]];
            }
            if (f1) { f1[nfeas] = a; f2[nfeas] = b; }
            nfeas++;
            if (w0 * a + w1 * b < *best) *best = w0 * a + w1 * b;
        }
        int i = 0;
        while (i < U && ++c[i] == R) c[i++] = 0;
        if (i == U) break;
    }
    return nfeas;
}

static moa_opt_params exact_params(void) {
    moa_opt_params par = moa_opt_default_params();
    par.mip_gap = 0;
    par.time_limit = 30;
    return par;
}

static void check_milp_vs_brute(int n_layer, int upl, int group, int R, int cap, int lower, int trials) {
    moa_opt_params par = exact_params();
    for (int t = 0; t < trials; t++) {
        moa_opt_problem *pb = random_problem(n_layer, upl, group, R, cap, lower);
        double best;
        int nf = brute(pb, 1, 0.5, &best, NULL, NULL);
        moa_opt_objective ob;
        for (int j = 0; j < MOA_OPT_MAX_LENGTHS; j++) { ob.weight[j] = 0; ob.eps[j] = INFINITY; }
        ob.weight[0] = 1;
        ob.weight[1] = 0.5;
        moa_opt_solution s;
        moa_status st = moa_opt_solve(pb, &par, &ob, &s);
        if (nf == 0) {
            CHECK_MSG(st == MOA_ERR_INFEASIBLE, "trial %d: brute force infeasible, solver status %d", t, st);
        } else {
            CHECK_MSG(st == MOA_OK, "trial %d: %s", t, moa_last_error());
            if (st == MOA_OK) {
                CHECK_NEAR(s.objective, best, 1e-6);
                CHECK(s.proven);
                for (int k = 0; k < pb->n_con; k++) CHECK(s.density[k] <= pb->budget_hi[k] + 1e-9);
            }
        }
        moa_opt_solution_clear(&s);
        moa_opt_problem_free(pb);
    }
}

TEST(milp_equals_brute_force_kv_head) { check_milp_vs_brute(2, 3, 1, 5, 0, 0, 25); }

/* moa_opt_widen on a hand-made case: two units, rules "2048 tokens", "whole context", "16
 * tokens"; objective 2048, selection length 4096 (the two long rules tie at 2048). */
static moa_opt_problem *widen_problem(double budget_4096) {
    moa_opt_problem *pb;
    if (moa_opt_problem_alloc(1, 2, 1, 3, 2, 2, &pb) < 0) return NULL;
    const double a[3] = {2048, 0, 16}, b[3] = {0, 1, 0};
    for (int r = 0; r < 3; r++) { pb->rules[r].alpha = a[r]; pb->rules[r].beta = b[r]; }
    pb->len[0] = pb->con_len[0] = 2048;
    pb->len[1] = pb->con_len[1] = 4096;
    pb->obj[pb->n_obj++] = 0;
    pb->val = 1;
    for (int k = 0; k < 2; k++)
        for (int r = 0; r < 3; r++) {
            double n = (double)pb->con_len[k], w = a[r] + b[r] * n;
            pb->dens[k * 3 + r] = (w > n ? n : w) / n;
        }
    pb->budget_hi[0] = 1;
    pb->budget_hi[1] = budget_4096;
    /* unit 0 reads far at 4096 (loss 0.5 with 2048 tokens), unit 1 a little (0.05) */
    const double loss[2][2][3] = {{{0, 0, 1}, {0, 0, 0.1}}, {{0.5, 0, 1}, {0.05, 0, 0.1}}};
    for (int j = 0; j < 2; j++)
        for (int u = 0; u < 2; u++)
            for (int r = 0; r < 3; r++) pb->loss[((size_t)j * 2 + u) * 3 + r] = loss[j][u][r];
    return pb;
}

TEST(widen_spends_unused_budget) {
    /* room for one unit to go from 2048 tokens to the whole context at 4096: the one that
     * gains most (unit 0) */
    moa_opt_problem *pb = widen_problem(0.76);
    int c[2] = {0, 0};
    CHECK_EQ_INT(moa_opt_widen(pb, c), 1);
    CHECK_EQ_INT(c[0], 1);
    CHECK_EQ_INT(c[1], 0);
    /* no room: nothing moves */
    c[0] = c[1] = 0;
    pb->budget_hi[1] = 0.7;
    CHECK_EQ_INT(moa_opt_widen(pb, c), 0);
    CHECK_EQ_INT(c[0], 0);
    /* room for both */
    pb->budget_hi[1] = 1;
    CHECK_EQ_INT(moa_opt_widen(pb, c), 2);
    CHECK(c[0] == 1 && c[1] == 1);
    /* a shorter rule is never taken even where it frees density */
    c[0] = 2; c[1] = 1;
    CHECK(moa_opt_widen(pb, c) >= 1);   /* through 2048 tokens or straight to the whole context */
    CHECK(c[0] == 1 && c[1] == 1);
    moa_opt_problem_free(pb);
}

/* On random problems after an exact solve: every budget and the rule cap still hold, no
 * length's loss rises, and no single move that widening allows is left. */
static void check_widen_random(int upl, int group, int cap, int trials) {
    moa_opt_params par = exact_params();
    for (int t = 0; t < trials; t++) {
        moa_opt_problem *pb = random_problem(2, upl, group, 5, cap, 0);
        moa_opt_objective ob;
        for (int j = 0; j < MOA_OPT_MAX_LENGTHS; j++) { ob.weight[j] = 0; ob.eps[j] = INFINITY; }
        ob.weight[0] = 1;
        moa_opt_solution s, w;
        if (moa_opt_solve(pb, &par, &ob, &s) < 0) { moa_opt_problem_free(pb); continue; }
        pb->budget_hi[1] = fmin(1, pb->budget_hi[1] + 0.2);   /* leave room at the second length */
        w.choice = s.choice;
        moa_opt_widen(pb, s.choice);
        moa_opt_evaluate(pb, s.choice, &w);
        for (int k = 0; k < pb->n_con; k++) CHECK(w.density[k] <= pb->budget_hi[k] + 1e-9);
        for (int j = 0; j < pb->n_len; j++) CHECK(w.loss[j] <= s.loss[j] + 1e-9);
        if (cap > 0)
            for (int l = 0; l < pb->n_layer; l++) {
                int d = 0;
                for (int i = 0; i < upl; i++) {
                    int seen = 0;
                    for (int i2 = 0; i2 < i; i2++) seen |= s.choice[l * upl + i2] == s.choice[l * upl + i];
                    d += !seen;
                }
                CHECK(d <= cap);
            }
        /* maximal: every remaining improving move breaks a budget or the cap */
        for (int u = 0; u < pb->n_units; u++)
            for (int r = 0; r < pb->n_rules; r++) {
                int r0 = s.choice[u], better = 0, worse = 0;
                for (int j = 0; j < pb->n_len; j++) {
                    double a = pb->loss[((size_t)j * pb->n_units + u) * pb->n_rules + r0];
                    double b = pb->loss[((size_t)j * pb->n_units + u) * pb->n_rules + r];
                    worse |= b > a + 1e-15;
                    better |= b < a - 1e-12;
                }
                if (r == r0 || worse || !better) continue;
                s.choice[u] = r;
                moa_opt_solution e;
                e.choice = s.choice;
                moa_opt_evaluate(pb, s.choice, &e);
                int fits = 1;
                for (int k = 0; k < pb->n_con; k++) fits &= e.density[k] <= pb->budget_hi[k] + 1e-9;
                int d = 0;
                for (int l = 0; cap > 0 && l < pb->n_layer; l++) {
                    int dl = 0;
                    for (int i = 0; i < upl; i++) {
                        int seen = 0;
                        for (int i2 = 0; i2 < i; i2++) seen |= s.choice[l * upl + i2] == s.choice[l * upl + i];
                        dl += !seen;
                    }
                    if (dl > d) d = dl;
                }
                CHECK_MSG(!fits || (cap > 0 && d > cap), "trial %d: unit %d could still move to rule %d", t, u, r);
                s.choice[u] = r0;
            }
        moa_opt_solution_clear(&s);
        moa_opt_problem_free(pb);
    }
}

TEST(widen_keeps_budgets_and_losses) {
    check_widen_random(3, 1, 0, 20);
    check_widen_random(4, 2, 0, 10);   /* q-head: the KV group's widest query head counts */
    check_widen_random(3, 1, 2, 10);   /* at most 2 distinct rules per layer */
}

TEST(milp_equals_brute_force_lower_bound) { check_milp_vs_brute(2, 3, 1, 5, 0, 1, 15); }
TEST(milp_equals_brute_force_rule_cap) { check_milp_vs_brute(2, 3, 1, 5, 1, 0, 15); }
TEST(milp_equals_brute_force_q_head) { check_milp_vs_brute(2, 4, 2, 4, 0, 0, 15); }

/* the exact two-objective front equals the exhaustive non-dominated set */
TEST(pareto_equals_exhaustive) {
    moa_opt_params par = exact_params();
    par.grid = 0;
    for (int t = 0; t < 10; t++) {
        moa_opt_problem *pb = random_problem(2, 3, 1, 5, 0, 0);
        static double f1[20000], f2[20000];
        double best;
        int nf = brute(pb, 1, 0, &best, f1, f2);
        if (nf == 0) { moa_opt_problem_free(pb); continue; }
        /* exhaustive non-dominated distinct vectors */
        double nd1[512], nd2[512];
        int nnd = 0;
        for (int i = 0; i < nf; i++) {
            int dom = 0;
            for (int k = 0; k < nf && !dom; k++)
                if (f1[k] <= f1[i] && f2[k] <= f2[i] && (f1[k] < f1[i] || f2[k] < f2[i])) dom = 1;
            if (dom) continue;
            int dup = 0;
            for (int k = 0; k < nnd; k++) if (nd1[k] == f1[i] && nd2[k] == f2[i]) dup = 1;
            if (!dup && nnd < 512) { nd1[nnd] = f1[i]; nd2[nnd] = f2[i]; nnd++; }
        }
        moa_opt_front fr;
        moa_status st = moa_opt_pareto(pb, &par, &fr);
        CHECK_MSG(st == MOA_OK, "%s", moa_last_error());
        if (st == MOA_OK) {
            CHECK_EQ_INT(fr.n_points, nnd);
            for (int i = 0; i < fr.n_points; i++) {
                int found = 0;
                for (int k = 0; k < nnd; k++)
                    if (fabs(fr.points[i].loss[0] - nd1[k]) < 1e-6 && fabs(fr.points[i].loss[1] - nd2[k]) < 1e-6) found = 1;
                CHECK_MSG(found, "trial %d: front point (%g, %g) is not in the exhaustive set", t,
                          fr.points[i].loss[0], fr.points[i].loss[1]);
            }
        }
        /* grid mode: every point is non-dominated and in the exhaustive set */
        moa_opt_front fg;
        moa_opt_params pg = exact_params();
        pg.grid = 6;
        pg.augment = 1e-4;
        st = moa_opt_pareto(pb, &pg, &fg);
        CHECK_MSG(st == MOA_OK, "%s", moa_last_error());
        if (st == MOA_OK) {
            CHECK(fg.n_points >= 1 && fg.n_points <= nnd);
            for (int i = 0; i < fg.n_points; i++) {
                int found = 0;
                for (int k = 0; k < nnd; k++)
                    if (fabs(fg.points[i].loss[0] - nd1[k]) < 1e-6 && fabs(fg.points[i].loss[1] - nd2[k]) < 1e-6) found = 1;
                CHECK_MSG(found, "grid point (%g, %g) is dominated", fg.points[i].loss[0], fg.points[i].loss[1]);
            }
            moa_opt_front_clear(&fg);
        }
        moa_opt_front_clear(&fr);
        moa_opt_problem_free(pb);
    }
}

TEST(infeasible_budget_names_smallest_density) {
    moa_synth_params sp = moa_synth_default_params();
    moa_profile *prof;
    CHECK_OK(moa_synth_profile(&sp, &prof, NULL));
    moa_opt_params par = moa_opt_default_params();
    par.density = 0.01;   /* below sink/N + one block at 2k: (64+64)/2048 = 0.0625 */
    moa_opt_problem *pb;
    CHECK_OK(moa_opt_problem_from_profile(prof, &par, &pb));
    double mind[MOA_OPT_MAX_LENGTHS];
    moa_opt_min_density(pb, mind);
    moa_opt_front fr;
    moa_status st = moa_opt_pareto(pb, &par, &fr);
    CHECK(st == MOA_ERR_INFEASIBLE);
    const char *msg = moa_last_error();
    CHECK(strstr(msg, "smallest feasible") != NULL);
    CHECK(strstr(msg, "N=2048") && strstr(msg, "N=4096") && strstr(msg, "N=8192"));
    char want[64];
    snprintf(want, sizeof want, "smallest feasible %.4g", mind[0]);
    CHECK_MSG(strstr(msg, want) != NULL, "message lacks '%s': %s", want, msg);
    /* smallest feasible density at 2k, by hand: narrowest valid rule. Rules with beta=0 need
     * alpha >= 1024 (alpha multiples of 1024), beta=1/8 with alpha=0 gives 256 at 2k. */
    CHECK_NEAR(mind[0], (64.0 + 256) / 2048, 1e-12);
    moa_opt_problem_free(pb);
    moa_profile_free(prof);
}

/* far_weight: the loss of every unit, rule and length, summed bin by bin from the profile
 * (no suffix sums), with the bins at distance >= N/4 counted W times. */
static double weighted_mass(const moa_profile *prof, int j, int u, int upl, int64_t from, double w_far) {
    const int64_t hpk = prof->n_head / prof->n_head_kv, N = prof->buckets[j].length;
    const int l = u / upl, kv = u % upl;
    double m = 0;
    for (int64_t b = 0; b < prof->buckets[j].n_bins; b++) {
        if (b * prof->block < from) continue;   /* inside the window: kept */
        for (int64_t h = 0; h < hpk; h++)
            m += (b * prof->block >= N / 4 ? w_far : 1) * moa_profile_hist_abs(prof, j, l, kv * hpk + h)[b];
    }
    return m;
}

TEST(far_weight_loss_by_hand) {
    moa_synth_params sp = moa_synth_default_params();
    sp.n_layer = 3;
    sp.seed = 11;
    moa_profile *prof;
    CHECK_OK(moa_synth_profile(&sp, &prof, NULL));
    const double ws[2] = {1, 3.5};
    for (int wi = 0; wi < 2; wi++) {
        moa_opt_params par = moa_opt_default_params();
        par.far_weight = ws[wi];
        moa_opt_problem *pb;
        CHECK_OK(moa_opt_problem_from_profile(prof, &par, &pb));
        const int upl = pb->units_per_layer;
        for (int j = 0; j < pb->n_len; j++) {
            const int64_t N = prof->buckets[j].length;
            double total = 0, worst = 0;
            for (int u = 0; u < pb->n_units; u++) total += weighted_mass(prof, j, u, upl, 0, ws[wi]);
            CHECK_NEAR(pb->loss_scale[j], total, 1e-9 * total);
            for (int u = 0; u < pb->n_units; u++)
                for (int r = 0; r < pb->n_rules; r++) {
                    int64_t W = moa_span_window(pb->rules[r].alpha, pb->rules[r].beta, N, prof->block);
                    double want = weighted_mass(prof, j, u, upl, W, ws[wi]) / total;
                    double e = fabs(pb->loss[((size_t)j * pb->n_units + u) * pb->n_rules + r] - want);
                    if (e > worst) worst = e;
                }
            CHECK_MSG(worst < 1e-12, "far_weight %g, N=%lld: worst loss error %g", ws[wi], (long long)N, worst);
        }
        moa_opt_problem_free(pb);
    }
    moa_profile_free(prof);
}

TEST(planted_head_types) {
    moa_synth_params sp = moa_synth_default_params();
    sp.n_layer = 6;
    sp.n_head = 8;
    sp.n_head_kv = 4;
    sp.seed = 7;
    moa_synth_type *types;
    moa_profile *prof;
    CHECK_OK(moa_synth_profile(&sp, &prof, &types));
    moa_opt_params par = moa_opt_default_params();
    par.density = 0.5;
    par.validation = 8192;
    par.grid = 4;
    moa_opt_problem *pb;
    CHECK_OK(moa_opt_problem_from_profile(prof, &par, &pb));
    moa_opt_front fr;
    CHECK_OK(moa_opt_pareto(pb, &par, &fr));
    CHECK(fr.n_points >= 1);
    const moa_opt_solution *s = &fr.points[fr.selected];
    /* mean window at 8k per planted type: local << global, elastic */
    double sum[3] = {0}, cnt[3] = {0}, maxloc = 0, minlong = INFINITY;
    for (int u = 0; u < pb->n_units; u++) {
        const moa_rule *r = &pb->rules[s->choice[u]];
        double w = (double)moa_span_window(r->alpha, r->beta, 8192, 64);
        sum[types[u]] += w;
        cnt[types[u]]++;
        if (types[u] == MOA_SYNTH_LOCAL && w > maxloc) maxloc = w;
        if (types[u] != MOA_SYNTH_LOCAL && w < minlong) minlong = w;
    }
    CHECK(cnt[0] > 0 && cnt[1] + cnt[2] > 0);
    fprintf(stderr, "  windows at 8k: local %.0f (max %.0f), global %.0f, elastic %.0f (min long %.0f)\n",
            sum[0] / cnt[0], maxloc, cnt[1] ? sum[1] / cnt[1] : 0, cnt[2] ? sum[2] / cnt[2] : 0, minlong);
    CHECK(maxloc < minlong);   /* every local head shorter than every global/elastic head */
    CHECK(sum[0] / cnt[0] <= 2048);
    moa_opt_front_clear(&fr);
    moa_opt_problem_free(pb);
    moa_profile_free(prof);
    free(types);
}

/* a mid-size instance solved with a gap tolerance: objective within the reported gap of the
 * bound, and the bound not below the LP relaxation */
TEST(gap_within_bound) {
    moa_synth_params sp = moa_synth_default_params();
    sp.n_layer = 16;
    sp.n_head = 32;
    sp.n_head_kv = 8;
    sp.n_lengths = 4;
    sp.lengths[3] = 12288;
    moa_profile *prof;
    CHECK_OK(moa_synth_profile(&sp, &prof, NULL));
    moa_opt_params par = moa_opt_default_params();
    par.mip_gap = 1e-3;
    par.time_limit = 10;
    par.density = 0.3;
    par.validation = 12288;
    moa_opt_problem *pb;
    CHECK_OK(moa_opt_problem_from_profile(prof, &par, &pb));
    moa_opt_objective ob;
    for (int j = 0; j < MOA_OPT_MAX_LENGTHS; j++) { ob.weight[j] = 0; ob.eps[j] = INFINITY; }
    for (int i = 0; i < pb->n_obj; i++) ob.weight[pb->obj[i]] = 1;
    moa_opt_solution s;
    CHECK_OK(moa_opt_solve(pb, &par, &ob, &s));
    CHECK(s.bound >= s.lp_bound - 1e-9);
    CHECK(s.objective >= s.bound - 1e-9);
    CHECK(s.objective - s.bound <= s.gap * fabs(s.objective) + 1e-9);
    if (s.proven) CHECK_NEAR(s.gap, 0, 1e-12);
    fprintf(stderr, "  %d units x %d rules: obj %.6g, LP %.6g, gap %.2g, %.2f s\n", pb->n_units,
            pb->n_rules, s.objective, s.lp_bound, s.gap, s.time);
    moa_opt_solution_clear(&s);
    moa_opt_problem_free(pb);
    moa_profile_free(prof);
}

int main(void) {
    moa_opt_init();
    RUN(span_definition);
    RUN(rule_space_defaults);
    RUN(rule_space_compress_grid);
    RUN(milp_equals_brute_force_kv_head);
    RUN(milp_equals_brute_force_lower_bound);
    RUN(milp_equals_brute_force_rule_cap);
    RUN(milp_equals_brute_force_q_head);
    RUN(far_weight_loss_by_hand);
    RUN(widen_spends_unused_budget);
    RUN(widen_keeps_budgets_and_losses);
    RUN(pareto_equals_exhaustive);
    RUN(infeasible_budget_names_smallest_density);
    RUN(planted_head_types);
    RUN(gap_within_bound);
    return test_summary();
}
