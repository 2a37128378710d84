/* widen.c - spend the budget the MILP leaves unused on longer spans.
 *
 * The objectives are losses at the objective lengths only. Two rules that give a unit the
 * same span there tie in the MILP, however differently they extrapolate: with objectives
 * up to 2048, "2048 tokens" and "the whole context" are the same rule until 2048, and the
 * solver may keep the constant one for a head that must see everything at 4096 (SmolLM2's
 * 50% plan did: the needle beyond the last 2048 tokens was lost at 4096 exactly as with
 * the uniform window, docs/results.md). The budgets at the longer constrained lengths are
 * often not binding (density 0.455 and 0.434 against 0.5 at 4096 and 8192 there).
 *
 * So, after selection, units move greedily to rules that are at least as good at every
 * profiled length (objective and selection lengths: never worse anywhere, better
 * somewhere), best loss gained per density spent first, while every budget and the cap
 * on distinct rules per layer still hold. The objective losses can only go down. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "moa/common.h"
#include "moa/optimizer.h"

static double loss_at(const moa_opt_problem *pb, int j, int u, int r) {
    return pb->loss[((size_t)j * pb->n_units + u) * pb->n_rules + r];
}
static double dens_at(const moa_opt_problem *pb, int k, int r) {
    return pb->dens[(size_t)k * pb->n_rules + r];
}

/* Density of unit u's KV group at constrained length k with u on rule r (the group's widest
 * member; a unit alone at kv-head granularity). */
static double group_dens(const moa_opt_problem *pb, const int *choice, int k, int u, int r) {
    int g0 = u / pb->group * pb->group;
    double m = 0;
    for (int v = g0; v < g0 + pb->group; v++) {
        double d = dens_at(pb, k, v == u ? r : choice[v]);
        if (d > m) m = d;
    }
    return m;
}

/* Distinct rules of u's layer with u on rule r. */
static int layer_distinct(const moa_opt_problem *pb, const int *choice, int u, int r) {
    int l0 = u / pb->units_per_layer * pb->units_per_layer, n = 0;
    for (int i = l0; i < l0 + pb->units_per_layer; i++) {
        int ri = i == u ? r : choice[i], seen = 0;
        for (int i2 = l0; i2 < i && !seen; i2++) seen = (i2 == u ? r : choice[i2]) == ri;
        n += !seen;
    }
    return n;
}

int moa_opt_widen(const moa_opt_problem *pb, int *choice) {
    const int U = pb->n_units, R = pb->n_rules, ng = U / pb->group;
    double D[MOA_OPT_MAX_LENGTHS];   /* density sums (groups) per constrained length */
    for (int k = 0; k < pb->n_con; k++) {
        D[k] = 0;
        for (int g = 0; g < ng; g++) D[k] += group_dens(pb, choice, k, g * pb->group, choice[g * pb->group]);
    }
    int moves = 0;
    for (;;) {
        int bu = -1, br = -1;
        double best = 0, bdelta[MOA_OPT_MAX_LENGTHS];
        for (int u = 0; u < U; u++) {
            const int r0 = choice[u];
            for (int r = 0; r < R; r++) {
                if (r == r0) continue;
                double gain = 0;
                int worse = 0;
                for (int j = 0; j < pb->n_len && !worse; j++) {
                    double d = loss_at(pb, j, u, r0) - loss_at(pb, j, u, r);
                    if (d < -1e-15) worse = 1;
                    else gain += d;
                }
                if (worse || !(gain > 1e-12)) continue;
                double cost = 0, delta[MOA_OPT_MAX_LENGTHS];
                int fits = 1;
                for (int k = 0; k < pb->n_con && fits; k++) {
                    delta[k] = group_dens(pb, choice, k, u, r) - group_dens(pb, choice, k, u, r0);
                    fits = (D[k] + delta[k]) / ng <= pb->budget_hi[k] + 1e-9;
                    cost += delta[k] > 0 ? delta[k] : 0;
                }
                if (!fits) continue;
                if (pb->max_rules_per_layer > 0 && layer_distinct(pb, choice, u, r) > pb->max_rules_per_layer)
                    continue;
                double score = gain / (cost + 1e-9);
                if (score > best) {
                    best = score;
                    bu = u;
                    br = r;
                    memcpy(bdelta, delta, sizeof(double) * (size_t)pb->n_con);
                }
            }
        }
        if (bu < 0) break;
        for (int k = 0; k < pb->n_con; k++) D[k] += bdelta[k];
        choice[bu] = br;
        moves++;
    }
    return moves;
}
