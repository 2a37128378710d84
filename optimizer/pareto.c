/* pareto.c - Pareto front over the objective lengths by epsilon-constraint, dominance
 * filter, selection, and the front as CSV and SVG. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "moa/common.h"
#include "moa/optimizer.h"

void moa_opt_front_clear(moa_opt_front *f) {
    for (int i = 0; i < f->n_points; i++) moa_opt_solution_clear(&f->points[i]);
    free(f->points);
    memset(f, 0, sizeof *f);
}

static void objective_init(moa_opt_objective *ob) {
    for (int j = 0; j < MOA_OPT_MAX_LENGTHS; j++) { ob->weight[j] = 0; ob->eps[j] = INFINITY; }
}

static moa_status push(moa_opt_front *f, int *cap, moa_opt_solution *s) {
    if (f->n_points == *cap) {
        int nc = *cap ? *cap * 2 : 16;
        moa_opt_solution *np = realloc(f->points, (size_t)nc * sizeof *np);
        if (!np) return moa_err(MOA_ERR_NOMEM, "out of memory");
        f->points = np;
        *cap = nc;
    }
    f->points[f->n_points++] = *s;
    memset(s, 0, sizeof *s);
    return MOA_OK;
}

static double tol(double v) { return 1e-9 * (1 + fabs(v)); }

/* a dominates b on the objective lengths (or equals it: dup = 1) */
static int dominates(const moa_opt_problem *pb, const moa_opt_solution *a, const moa_opt_solution *b, int *dup) {
    int strict = 0;
    for (int i = 0; i < pb->n_obj; i++) {
        int j = pb->obj[i];
        if (a->loss[j] > b->loss[j] + tol(b->loss[j])) return 0;
        if (a->loss[j] < b->loss[j] - tol(b->loss[j])) strict = 1;
    }
    *dup = !strict;
    return 1;
}

static int cmp_obj0_pb_idx;
static const moa_opt_problem *cmp_pb;
static int cmp_point(const void *x, const void *y) {
    const moa_opt_solution *a = x, *b = y;
    double u = a->loss[cmp_obj0_pb_idx], v = b->loss[cmp_obj0_pb_idx];
    if (u != v) return (u > v) - (u < v);
    for (int i = 1; i < cmp_pb->n_obj; i++) {
        int j = cmp_pb->obj[i];
        if (a->loss[j] != b->loss[j]) return (a->loss[j] > b->loss[j]) - (a->loss[j] < b->loss[j]);
    }
    return 0;
}

static void filter_front(const moa_opt_problem *pb, moa_opt_front *f) {
    int n = f->n_points;
    char *drop = calloc((size_t)n + 1, 1);
    for (int a = 0; a < n; a++) {
        for (int b = 0; b < n && !drop[a]; b++) {
            if (a == b || drop[b]) continue;
            int dup;
            if (dominates(pb, &f->points[b], &f->points[a], &dup)) {
                if (!dup || b < a) drop[a] = 1;   /* dominated, or a later duplicate */
            }
        }
    }
    int k = 0;
    for (int i = 0; i < n; i++) {
        if (drop[i]) moa_opt_solution_clear(&f->points[i]);
        else f->points[k++] = f->points[i];
    }
    f->n_points = k;
    free(drop);
    cmp_pb = pb;
    cmp_obj0_pb_idx = pb->obj[0];
    qsort(f->points, (size_t)k, sizeof *f->points, cmp_point);
}

int moa_opt_select(const moa_opt_problem *pb, const moa_opt_front *f) {
    int best = 0;
    double bv = INFINITY;
    for (int i = 0; i < f->n_points; i++) {
        double v;
        if (pb->val >= 0) v = f->points[i].loss[pb->val];
        else {
            v = -INFINITY;
            for (int o = 0; o < pb->n_obj; o++) if (f->points[i].loss[pb->obj[o]] > v) v = f->points[i].loss[pb->obj[o]];
        }
        if (v < bv) { bv = v; best = i; }
    }
    return best;
}

moa_status moa_opt_pareto(const moa_opt_problem *pb, const moa_opt_params *par, moa_opt_front *f) {
    memset(f, 0, sizeof *f);
    double t0 = moa_time_now();
    int cap = 0, m = pb->n_obj;
    moa_status st = MOA_OK;
    moa_opt_solution s;
    moa_opt_objective ob;
    moa_opt_warm warm;
    memset(&warm, 0, sizeof warm);
    if (m <= 0) return moa_err(MOA_ERR_INVALID_ARG, "optimizer: no objective length");
    if (par->grid <= 0 && m != 2)
        return moa_err(MOA_ERR_INVALID_ARG, "the exact front (grid 0) needs exactly 2 objective lengths, have %d", m);
    /* extremes: each objective alone (others with a tiny weight to break ties) */
    double lo[MOA_OPT_MAX_LENGTHS], hi[MOA_OPT_MAX_LENGTHS];
    for (int i = 0; i < m; i++) { lo[i] = INFINITY; hi[i] = -INFINITY; }
    if (par->grid > 0 || m == 1) {
        for (int e = 0; e < m; e++) {
            objective_init(&ob);
            for (int i = 0; i < m; i++) ob.weight[pb->obj[i]] = i == e ? 1 : par->augment;
            st = moa_opt_solve_warm(pb, par, &ob, &s, &warm);
            f->n_solves++;
            if (st < 0) goto fail;
            moa_log_info("front: extreme %d/%d (N=%lld): loss %.6g, gap %.2g%s", e + 1, m,
                         (long long)pb->len[pb->obj[e]], s.loss[pb->obj[e]], s.gap, s.proven ? " (optimal)" : "");
            for (int i = 0; i < m; i++) {
                double v = s.loss[pb->obj[i]];
                if (v > hi[i]) hi[i] = v;
                if (i == e) lo[i] = v;
            }
            if ((st = push(f, &cap, &s)) < 0) goto fail;
        }
        if (m > 1) {
            int G = par->grid, nsec = m - 1;
            long total = 1;
            for (int i = 0; i < nsec; i++) total *= G;
            int idx[MOA_OPT_MAX_LENGTHS] = {0};
            for (long c = 0; c < total; c++) {
                objective_init(&ob);
                ob.weight[pb->obj[0]] = 1;
                for (int i = 1; i < m; i++) {
                    ob.weight[pb->obj[i]] = par->augment;
                    double t = (double)idx[i - 1] / G;
                    double eps = lo[i] + (hi[i] - lo[i]) * t;
                    ob.eps[pb->obj[i]] = eps + tol(eps);
                }
                st = moa_opt_solve_warm(pb, par, &ob, &s, &warm);
                f->n_solves++;
                if (st == MOA_ERR_INFEASIBLE || st == MOA_ERR_INTERRUPTED) {
                    moa_log_debug("front: grid point %ld/%ld skipped: %s", c + 1, total, moa_last_error());
                    st = MOA_OK;
                } else if (st < 0) {
                    goto fail;
                } else {
                    moa_log_info("front: grid point %ld/%ld: loss %.6g, gap %.2g", c + 1, total,
                                 s.loss[pb->obj[0]], s.gap);
                    if ((st = push(f, &cap, &s)) < 0) goto fail;
                }
                for (int i = 0; i < nsec && ++idx[i] == G; i++) idx[i] = 0;
            }
        }
    } else {
        /* exact front for two objectives: lexicographic epsilon-constraint sweep */
        int a = pb->obj[0], b = pb->obj[1];
        double eps = INFINITY, prev = INFINITY;
        for (int iter = 0; iter < 100000; iter++) {
            objective_init(&ob);
            ob.weight[a] = 1;
            ob.eps[b] = eps;
            st = moa_opt_solve_warm(pb, par, &ob, &s, &warm);
            f->n_solves++;
            if (st == MOA_ERR_INFEASIBLE && iter > 0) { st = MOA_OK; break; }
            if (st < 0) goto fail;
            double fa = s.loss[a];
            moa_opt_solution_clear(&s);
            objective_init(&ob);
            ob.weight[b] = 1;
            ob.eps[b] = eps;
            ob.eps[a] = fa + tol(fa) * 10;
            st = moa_opt_solve_warm(pb, par, &ob, &s, &warm);
            f->n_solves++;
            if (st < 0) goto fail;
            double fb = s.loss[b];
            if ((st = push(f, &cap, &s)) < 0) goto fail;
            if (!(fb < prev)) break;
            prev = fb;
            /* next point strictly better in b; the step exceeds GLPK's row tolerances, so
             * points closer than 1e-4 * (1 + |loss|) in b are not told apart */
            eps = fb - 1e-4 * (1 + fabs(fb));
        }
    }
    moa_opt_warm_clear(&warm);
    filter_front(pb, f);
    f->selected = moa_opt_select(pb, f);
    if (par->widen && f->n_points > 0) {
        moa_opt_solution *s = &f->points[f->selected];
        const int j = pb->val >= 0 ? pb->val : pb->obj[0];   /* the length reported */
        const double before = s->loss[j];
        f->n_widened = moa_opt_widen(pb, s->choice);
        moa_opt_evaluate(pb, s->choice, s);
        moa_log_info("front: selected point widened: %d unit moves, loss at N=%lld %.6g -> %.6g", f->n_widened,
                     (long long)pb->len[j], before, s->loss[j]);
    }
    for (int i = 0; i < f->n_points; i++) if (f->points[i].gap > f->max_gap) f->max_gap = f->points[i].gap;
    f->time = moa_time_now() - t0;
    return MOA_OK;
fail:
    moa_opt_warm_clear(&warm);
    moa_opt_front_clear(f);
    return st;
}

/* ---- CSV ---------------------------------------------------------------------------------- */

moa_status moa_opt_front_write_csv(const moa_opt_problem *pb, const moa_opt_front *f, const char *path) {
    moa_atomic_file af;
    MOA_TRY(moa_atomic_open(&af, path, "w"));
    fprintf(af.fp, "point,selected,proven,gap");
    for (int j = 0; j < pb->n_len; j++)
        fprintf(af.fp, ",loss_%lld%s", (long long)pb->len[j], j == pb->val ? "_validation" : "");
    for (int k = 0; k < pb->n_con; k++) fprintf(af.fp, ",density_%lld", (long long)pb->con_len[k]);
    fputc('\n', af.fp);
    for (int i = 0; i < f->n_points; i++) {
        const moa_opt_solution *s = &f->points[i];
        fprintf(af.fp, "%d,%d,%d,%.6g", i, i == f->selected, s->proven, s->gap);
        for (int j = 0; j < pb->n_len; j++) fprintf(af.fp, ",%.9g", s->loss[j]);
        for (int k = 0; k < pb->n_con; k++) fprintf(af.fp, ",%.9g", s->density[k]);
        fputc('\n', af.fp);
    }
    if (ferror(af.fp)) { moa_atomic_abort(&af); return moa_err(MOA_ERR_IO, "%s: write failed", path); }
    return moa_atomic_commit(&af);
}

/* ---- SVG ---------------------------------------------------------------------------------- */

/* blue (0) -> red (1) */
static void ramp(double t, char out[8]) {
    if (!(t >= 0)) t = 0;
    if (t > 1) t = 1;
    int r = (int)(40 + 215 * t), g = (int)(90 + 60 * (1 - fabs(2 * t - 1))), b = (int)(230 - 200 * t);
    snprintf(out, 8, "#%02x%02x%02x", r, g, b);
}

moa_status moa_opt_front_write_svg(const moa_opt_problem *pb, const moa_opt_front *f, const char *path) {
    const double W = 640, H = 480, L = 80, R = 140, T = 40, B = 60;
    int jx = pb->obj[0], jy = pb->n_obj > 1 ? pb->obj[1] : -1;
    double x0 = INFINITY, x1 = -INFINITY, y0 = INFINITY, y1 = -INFINITY, v0 = INFINITY, v1 = -INFINITY;
    for (int i = 0; i < f->n_points; i++) {
        const moa_opt_solution *s = &f->points[i];
        double x = s->loss[jx], y = jy >= 0 ? s->loss[jy] : (pb->n_con ? s->density[0] : 0);
        x0 = fmin(x0, x); x1 = fmax(x1, x); y0 = fmin(y0, y); y1 = fmax(y1, y);
        if (pb->val >= 0) { v0 = fmin(v0, s->loss[pb->val]); v1 = fmax(v1, s->loss[pb->val]); }
    }
    if (!(x1 > x0)) { x0 -= 0.5 * (fabs(x0) + 1e-3); x1 += 0.5 * (fabs(x1) + 1e-3); }
    if (!(y1 > y0)) { y0 -= 0.5 * (fabs(y0) + 1e-3); y1 += 0.5 * (fabs(y1) + 1e-3); }
    double px = (x1 - x0) * 0.05, py = (y1 - y0) * 0.05;
    x0 -= px; x1 += px; y0 -= py; y1 += py;
    moa_atomic_file af;
    MOA_TRY(moa_atomic_open(&af, path, "w"));
    FILE *o = af.fp;
    fprintf(o, "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%.0f\" height=\"%.0f\" font-family=\"sans-serif\" font-size=\"12\">\n", W, H);
    fprintf(o, "<rect width=\"100%%\" height=\"100%%\" fill=\"white\"/>\n");
    fprintf(o, "<text x=\"%.0f\" y=\"22\" font-size=\"15\">Pareto front: %d plans (selected ringed)</text>\n", L, f->n_points);
    fprintf(o, "<rect x=\"%.0f\" y=\"%.0f\" width=\"%.0f\" height=\"%.0f\" fill=\"none\" stroke=\"#444\"/>\n", L, T, W - L - R, H - T - B);
#define SX(x) (L + ((x) - x0) / (x1 - x0) * (W - L - R))
#define SY(y) (H - B - ((y) - y0) / (y1 - y0) * (H - T - B))
    for (int t = 0; t <= 4; t++) {
        double xv = x0 + (x1 - x0) * t / 4, yv = y0 + (y1 - y0) * t / 4;
        fprintf(o, "<text x=\"%.1f\" y=\"%.0f\" text-anchor=\"middle\">%.4g</text>\n", SX(xv), H - B + 16, xv);
        fprintf(o, "<text x=\"%.0f\" y=\"%.1f\" text-anchor=\"end\">%.4g</text>\n", L - 6, SY(yv) + 4, yv);
    }
    fprintf(o, "<text x=\"%.0f\" y=\"%.0f\" text-anchor=\"middle\">normalised loss at N=%lld</text>\n",
            (L + W - R) / 2, H - 18, (long long)pb->len[jx]);
    if (jy >= 0)
        fprintf(o, "<text transform=\"translate(18,%.0f) rotate(-90)\" text-anchor=\"middle\">normalised loss at N=%lld</text>\n",
                (T + H - B) / 2, (long long)pb->len[jy]);
    else
        fprintf(o, "<text transform=\"translate(18,%.0f) rotate(-90)\" text-anchor=\"middle\">density at N=%lld</text>\n",
                (T + H - B) / 2, pb->n_con ? (long long)pb->con_len[0] : 0LL);
    /* staircase through the points (sorted by x) */
    fprintf(o, "<polyline fill=\"none\" stroke=\"#bbb\" points=\"");
    for (int i = 0; i < f->n_points; i++) {
        const moa_opt_solution *s = &f->points[i];
        double y = jy >= 0 ? s->loss[jy] : (pb->n_con ? s->density[0] : 0);
        fprintf(o, "%.1f,%.1f ", SX(s->loss[jx]), SY(y));
    }
    fprintf(o, "\"/>\n");
    for (int i = 0; i < f->n_points; i++) {
        const moa_opt_solution *s = &f->points[i];
        double y = jy >= 0 ? s->loss[jy] : (pb->n_con ? s->density[0] : 0);
        char col[8] = "#555555";
        if (pb->val >= 0) ramp(v1 > v0 ? (s->loss[pb->val] - v0) / (v1 - v0) : 0.5, col);
        fprintf(o, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"5\" fill=\"%s\"><title>point %d: ", SX(s->loss[jx]), SY(y), col, i);
        for (int j = 0; j < pb->n_len; j++) fprintf(o, "loss@%lld=%.5g ", (long long)pb->len[j], s->loss[j]);
        fprintf(o, "gap=%.2g</title></circle>\n", s->gap);
        if (i == f->selected)
            fprintf(o, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"9\" fill=\"none\" stroke=\"black\" stroke-width=\"2\"/>\n"
                       "<text x=\"%.1f\" y=\"%.1f\">selected</text>\n", SX(s->loss[jx]), SY(y), SX(s->loss[jx]) + 11, SY(y) - 8);
    }
    if (pb->val >= 0) {
        double lx = W - R + 20;
        fprintf(o, "<text x=\"%.0f\" y=\"%.0f\">loss at N=%lld</text>\n", lx, T + 4, (long long)pb->len[pb->val]);
        fprintf(o, "<text x=\"%.0f\" y=\"%.0f\">(validation)</text>\n", lx, T + 18);
        for (int t = 0; t <= 10; t++) {
            char col[8];
            ramp(t / 10.0, col);
            fprintf(o, "<rect x=\"%.0f\" y=\"%.0f\" width=\"16\" height=\"14\" fill=\"%s\"/>\n", lx, T + 28 + 14.0 * t, col);
        }
        fprintf(o, "<text x=\"%.0f\" y=\"%.0f\">%.4g</text>\n", lx + 22, T + 40, v0);
        fprintf(o, "<text x=\"%.0f\" y=\"%.0f\">%.4g</text>\n", lx + 22, T + 40 + 140, v1);
    }
#undef SX
#undef SY
    fprintf(o, "</svg>\n");
    if (ferror(o)) { moa_atomic_abort(&af); return moa_err(MOA_ERR_IO, "%s: write failed", path); }
    return moa_atomic_commit(&af);
}
