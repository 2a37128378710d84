/* plot.c - pictures and tables of LongEval results: the heat map (position bins x lengths)
 * as SVG and PNG, and the comparison of several runs (markdown table, SVG line chart). */
#include "eval-internal.h"

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

/* ---- string builder ------------------------------------------------------------------------ */
void eval_sb_printf(eval_sb *b, const char *fmt, ...) {
    if (b->failed) return;
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        size_t room = b->cap - b->len;
        int n = vsnprintf(b->s ? b->s + b->len : NULL, b->s ? room : 0, fmt, ap);
        va_end(ap);
        if (n < 0) { b->failed = 1; return; }
        if (b->s && (size_t)n < room) { b->len += (size_t)n; return; }
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + (size_t)n + 1) cap *= 2;
        char *s = realloc(b->s, cap);
        if (!s) { b->failed = 1; return; }
        b->s = s;
        b->cap = cap;
    }
}

void eval_sb_xml(eval_sb *b, const char *s) {
    for (; s && *s; s++) {
        switch (*s) {
        case '<': eval_sb_printf(b, "&lt;"); break;
        case '>': eval_sb_printf(b, "&gt;"); break;
        case '&': eval_sb_printf(b, "&amp;"); break;
        case '"': eval_sb_printf(b, "&quot;"); break;
        default: eval_sb_printf(b, "%c", *s);
        }
    }
}

char *eval_sb_finish(eval_sb *b) {
    if (b->failed || !b->s) {
        free(b->s);
        memset(b, 0, sizeof *b);
        return NULL;
    }
    char *s = b->s;
    memset(b, 0, sizeof *b);
    return s;
}

static moa_status write_text(const char *path, eval_sb *b) {
    char *s = eval_sb_finish(b);
    if (!s) return moa_err(MOA_ERR_NOMEM, "out of memory building '%s'", path);
    moa_status st = eval_write_atomic(path, s, strlen(s));
    free(s);
    return st;
}

/* ---- colours ------------------------------------------------------------------------------- */
void moa_eval_heat_colour(double acc, uint8_t rgb[3]) {
    static const double stops[3][3] = {{215, 48, 39}, {255, 255, 191}, {26, 152, 80}};  /* RdYlGn */
    if (!(acc >= 0)) { rgb[0] = rgb[1] = rgb[2] = 200; return; }
    if (acc > 1) acc = 1;
    int i = acc < 0.5 ? 0 : 1;
    double t = acc < 0.5 ? acc / 0.5 : (acc - 0.5) / 0.5;
    for (int c = 0; c < 3; c++) rgb[c] = (uint8_t)(stops[i][c] + t * (stops[i + 1][c] - stops[i][c]) + 0.5);
}

static const char *line_colours[] = {"#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd",
                                     "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"};

/* ---- heat map ------------------------------------------------------------------------------ */
enum { HM_CELL_W = 64, HM_CELL_H = 28, HM_LEFT = 90, HM_TOP = 56 };

moa_status moa_longeval_write_heatmap_svg(const moa_longeval_results *r, const char *path) {
    if (!r || !path) return moa_err(MOA_ERR_INVALID_ARG, "moa_longeval_write_heatmap_svg: NULL argument");
    int nl = r->n_lengths, nb = MOA_LONGEVAL_BINS;
    int w = HM_LEFT + nl * HM_CELL_W + 110, h = HM_TOP + (nb + 1) * HM_CELL_H + 70;
    eval_sb b = {0};
    eval_sb_printf(&b, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
                   "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" viewBox=\"0 0 %d %d\" "
                   "font-family=\"sans-serif\" font-size=\"12\">\n", w, h, w, h);
    eval_sb_printf(&b, "<rect x=\"0\" y=\"0\" width=\"%d\" height=\"%d\" fill=\"white\"/>\n", w, h);
    eval_sb_printf(&b, "<text x=\"%d\" y=\"20\" font-size=\"14\" font-weight=\"bold\">LongEval lines: ", HM_LEFT);
    eval_sb_xml(&b, r->label);
    eval_sb_printf(&b, "</text>\n<text x=\"%d\" y=\"38\">effective context length (acc &gt;= %.2g): %d",
                   HM_LEFT, r->threshold, r->effective_length);
    if (r->reference_label) {
        eval_sb_printf(&b, "; vs ");
        eval_sb_xml(&b, r->reference_label);
        eval_sb_printf(&b, " (acc &gt;= %.2g x ref): %d", r->threshold, r->effective_length_rel);
    }
    eval_sb_printf(&b, "</text>\n");
    for (int l = 0; l < nl; l++) {
        for (int row = 0; row <= nb; row++) {
            int n;
            double acc;
            if (row < nb) {
                const moa_longeval_cell *c = &r->cells[l * nb + row];
                n = c->n;
                acc = c->accuracy;
            } else {
                n = r->lengths[l].n;
                acc = r->lengths[l].accuracy;
            }
            uint8_t rgb[3];
            moa_eval_heat_colour(n ? acc : -1, rgb);
            int x = HM_LEFT + l * HM_CELL_W, y = HM_TOP + row * HM_CELL_H + (row == nb ? 6 : 0);
            eval_sb_printf(&b, "<rect x=\"%d\" y=\"%d\" width=\"%d\" height=\"%d\" fill=\"#%02x%02x%02x\" "
                           "stroke=\"white\"><title>length %d, %s: %d samples, accuracy ",
                           x, y, HM_CELL_W, HM_CELL_H, rgb[0], rgb[1], rgb[2], r->lengths[l].length,
                           row < nb ? "bin" : "all bins", n);
            if (n) eval_sb_printf(&b, "%.3f</title></rect>\n", acc);
            else eval_sb_printf(&b, "n/a</title></rect>\n");
            if (n)
                eval_sb_printf(&b, "<text x=\"%d\" y=\"%d\" text-anchor=\"middle\"%s>%.2f</text>\n",
                               x + HM_CELL_W / 2, y + HM_CELL_H / 2 + 4, row == nb ? " font-weight=\"bold\"" : "",
                               acc);
        }
        eval_sb_printf(&b, "<text x=\"%d\" y=\"%d\" text-anchor=\"middle\">%d</text>\n", HM_LEFT + l * HM_CELL_W + HM_CELL_W / 2,
                       HM_TOP + (nb + 1) * HM_CELL_H + 24, r->lengths[l].length);
    }
    for (int row = 0; row <= nb; row++) {
        int y = HM_TOP + row * HM_CELL_H + HM_CELL_H / 2 + 4 + (row == nb ? 6 : 0);
        if (row < nb)
            eval_sb_printf(&b, "<text x=\"%d\" y=\"%d\" text-anchor=\"end\">%d-%d%%</text>\n", HM_LEFT - 8, y,
                           row * 10, row * 10 + 10);
        else
            eval_sb_printf(&b, "<text x=\"%d\" y=\"%d\" text-anchor=\"end\" font-weight=\"bold\">all</text>\n",
                           HM_LEFT - 8, y);
    }
    eval_sb_printf(&b, "<text x=\"%d\" y=\"%d\" text-anchor=\"middle\">prompt length (tokens)</text>\n",
                   HM_LEFT + nl * HM_CELL_W / 2, HM_TOP + (nb + 1) * HM_CELL_H + 44);
    eval_sb_printf(&b, "<text x=\"14\" y=\"%d\" transform=\"rotate(-90 14 %d)\" text-anchor=\"middle\">"
                   "position of the queried line</text>\n", HM_TOP + nb * HM_CELL_H / 2, HM_TOP + nb * HM_CELL_H / 2);
    /* legend: 0..1 in 10 steps */
    int lx = HM_LEFT + nl * HM_CELL_W + 30;
    for (int i = 0; i <= 10; i++) {
        uint8_t rgb[3];
        moa_eval_heat_colour(1.0 - i / 10.0, rgb);
        eval_sb_printf(&b, "<rect x=\"%d\" y=\"%d\" width=\"18\" height=\"%d\" fill=\"#%02x%02x%02x\"/>\n", lx,
                       HM_TOP + i * 24, 24, rgb[0], rgb[1], rgb[2]);
        if (i % 5 == 0)
            eval_sb_printf(&b, "<text x=\"%d\" y=\"%d\">%.1f</text>\n", lx + 24, HM_TOP + i * 24 + 16, 1.0 - i / 10.0);
    }
    eval_sb_printf(&b, "</svg>\n");
    return write_text(path, &b);
}

moa_status moa_longeval_write_heatmap_png(const moa_longeval_results *r, const char *path) {
    if (!r || !path) return moa_err(MOA_ERR_INVALID_ARG, "moa_longeval_write_heatmap_png: NULL argument");
    /* Cells of 32x16 pixels with a 1-pixel white grid; bins top to bottom, then a gap and the
     * per-length accuracy row. */
    enum { CW = 32, CH = 16, GAP = 4 };
    int nl = r->n_lengths, nb = MOA_LONGEVAL_BINS;
    int w = nl * CW + 1, h = (nb + 1) * CH + GAP + 1;
    uint8_t *img = moa_alloc_array((size_t)w * h, 3);
    if (!img) return moa_err(MOA_ERR_NOMEM, "out of memory");
    memset(img, 255, (size_t)w * h * 3);
    for (int l = 0; l < nl; l++) {
        for (int row = 0; row <= nb; row++) {
            int n = row < nb ? r->cells[l * nb + row].n : r->lengths[l].n;
            double acc = row < nb ? r->cells[l * nb + row].accuracy : r->lengths[l].accuracy;
            uint8_t rgb[3];
            moa_eval_heat_colour(n ? acc : -1, rgb);
            int y0 = row * CH + (row == nb ? GAP : 0);
            for (int y = y0 + 1; y < y0 + CH; y++)
                for (int x = l * CW + 1; x < (l + 1) * CW; x++) memcpy(img + ((size_t)y * w + x) * 3, rgb, 3);
        }
    }
    moa_status st = moa_png_write_rgb(path, img, w, h);
    free(img);
    return st;
}

/* ---- comparisons --------------------------------------------------------------------------- */
static int cmp_int(const void *a, const void *b) {
    int x = *(const int *)a, y = *(const int *)b;
    return (x > y) - (x < y);
}

/* Sorted union of the runs' lengths into *out (caller frees). */
static moa_status union_lengths(const moa_longeval_results *const *runs, int n_runs, int **out, int *n_out) {
    int total = 0;
    for (int i = 0; i < n_runs; i++) total += runs[i]->n_lengths;
    int *u = moa_alloc_array((size_t)(total ? total : 1), sizeof *u);
    if (!u) return moa_err(MOA_ERR_NOMEM, "out of memory");
    int n = 0;
    for (int i = 0; i < n_runs; i++)
        for (int l = 0; l < runs[i]->n_lengths; l++) {
            int v = runs[i]->lengths[l].length, seen = 0;
            for (int j = 0; j < n; j++) seen |= u[j] == v;
            if (!seen) u[n++] = v;
        }
    qsort(u, (size_t)n, sizeof *u, cmp_int);
    *out = u;
    *n_out = n;
    return MOA_OK;
}

static const moa_longeval_length *find_len(const moa_longeval_results *r, int length) {
    for (int l = 0; l < r->n_lengths; l++)
        if (r->lengths[l].length == length) return &r->lengths[l];
    return NULL;
}

static moa_status check_runs(const moa_longeval_results *const *runs, int n_runs) {
    if (!runs || n_runs < 1) return moa_err(MOA_ERR_INVALID_ARG, "compare: need at least one run");
    for (int i = 0; i < n_runs; i++)
        if (!runs[i]) return moa_err(MOA_ERR_INVALID_ARG, "compare: run %d is NULL", i);
    return MOA_OK;
}

moa_status moa_longeval_compare_md(const moa_longeval_results *const *runs, int n_runs, char **md) {
    if (!md) return moa_err(MOA_ERR_INVALID_ARG, "moa_longeval_compare_md: NULL argument");
    MOA_TRY(check_runs(runs, n_runs));
    int *lens, nl;
    MOA_TRY(union_lengths(runs, n_runs, &lens, &nl));
    eval_sb b = {0};
    eval_sb_printf(&b, "| length |");
    for (int i = 0; i < n_runs; i++) {
        eval_sb_printf(&b, " ");
        for (const char *s = runs[i]->label; *s; s++) eval_sb_printf(&b, *s == '|' ? "\\|" : "%c", *s);
        eval_sb_printf(&b, " |");
    }
    eval_sb_printf(&b, "\n|---:|");
    for (int i = 0; i < n_runs; i++) eval_sb_printf(&b, "---:|");
    eval_sb_printf(&b, "\n");
    for (int l = 0; l < nl; l++) {
        eval_sb_printf(&b, "| %d |", lens[l]);
        for (int i = 0; i < n_runs; i++) {
            const moa_longeval_length *L = find_len(runs[i], lens[l]);
            if (L && L->n) eval_sb_printf(&b, " %.2f (%d/%d) |", L->accuracy, L->correct, L->n);
            else eval_sb_printf(&b, " - |");
        }
        eval_sb_printf(&b, "\n");
    }
    eval_sb_printf(&b, "| effective context length (acc >= %.2g) |", MOA_LONGEVAL_THRESHOLD);
    for (int i = 0; i < n_runs; i++) eval_sb_printf(&b, " %d |", runs[i]->effective_length);
    eval_sb_printf(&b, "\n");
    int any_ref = 0;
    for (int i = 0; i < n_runs; i++) any_ref |= runs[i]->reference_label != NULL;
    if (any_ref) {
        eval_sb_printf(&b, "| effective context length (acc >= %.2g x reference) |", MOA_LONGEVAL_THRESHOLD);
        for (int i = 0; i < n_runs; i++) {
            if (runs[i]->reference_label) eval_sb_printf(&b, " %d |", runs[i]->effective_length_rel);
            else eval_sb_printf(&b, " - |");
        }
        eval_sb_printf(&b, "\n");
    }
    free(lens);
    *md = eval_sb_finish(&b);
    return *md ? MOA_OK : moa_err(MOA_ERR_NOMEM, "out of memory");
}

moa_status moa_longeval_compare_svg(const moa_longeval_results *const *runs, int n_runs, const char *path) {
    if (!path) return moa_err(MOA_ERR_INVALID_ARG, "moa_longeval_compare_svg: NULL path");
    MOA_TRY(check_runs(runs, n_runs));
    int *lens, nl;
    MOA_TRY(union_lengths(runs, n_runs, &lens, &nl));
    const int W = 720, H = 420, L0 = 70, R0 = 200, T0 = 40, B0 = 60;
    int pw = W - L0 - R0, ph = H - T0 - B0;
    double xmax = lens[nl - 1] > 0 ? lens[nl - 1] : 1;
    eval_sb b = {0};
    eval_sb_printf(&b, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
                   "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" viewBox=\"0 0 %d %d\" "
                   "font-family=\"sans-serif\" font-size=\"12\">\n", W, H, W, H);
    eval_sb_printf(&b, "<rect x=\"0\" y=\"0\" width=\"%d\" height=\"%d\" fill=\"white\"/>\n", W, H);
    eval_sb_printf(&b, "<text x=\"%d\" y=\"22\" font-size=\"14\" font-weight=\"bold\">LongEval lines: accuracy "
                   "vs prompt length</text>\n", L0);
    for (int i = 0; i <= 10; i += 2) {   /* y grid */
        double y = T0 + ph - ph * i / 10.0;
        eval_sb_printf(&b, "<line x1=\"%d\" y1=\"%.1f\" x2=\"%d\" y2=\"%.1f\" stroke=\"#dddddd\"/>\n", L0, y, L0 + pw, y);
        eval_sb_printf(&b, "<text x=\"%d\" y=\"%.1f\" text-anchor=\"end\">%.1f</text>\n", L0 - 6, y + 4, i / 10.0);
    }
    double y09 = T0 + ph - ph * MOA_LONGEVAL_THRESHOLD;
    eval_sb_printf(&b, "<line x1=\"%d\" y1=\"%.1f\" x2=\"%d\" y2=\"%.1f\" stroke=\"#888888\" "
                   "stroke-dasharray=\"4 3\"/>\n", L0, y09, L0 + pw, y09);
    for (int l = 0; l < nl; l++) {
        double x = L0 + pw * lens[l] / xmax;
        eval_sb_printf(&b, "<line x1=\"%.1f\" y1=\"%d\" x2=\"%.1f\" y2=\"%d\" stroke=\"#000000\"/>\n", x, T0 + ph, x,
                       T0 + ph + 5);
        eval_sb_printf(&b, "<text x=\"%.1f\" y=\"%d\" text-anchor=\"middle\" font-size=\"10\">%d</text>\n", x,
                       T0 + ph + 18, lens[l]);
    }
    eval_sb_printf(&b, "<rect x=\"%d\" y=\"%d\" width=\"%d\" height=\"%d\" fill=\"none\" stroke=\"#000000\"/>\n",
                   L0, T0, pw, ph);
    eval_sb_printf(&b, "<text x=\"%d\" y=\"%d\" text-anchor=\"middle\">prompt length (tokens)</text>\n", L0 + pw / 2,
                   H - 18);
    eval_sb_printf(&b, "<text x=\"16\" y=\"%d\" transform=\"rotate(-90 16 %d)\" text-anchor=\"middle\">accuracy"
                   "</text>\n", T0 + ph / 2, T0 + ph / 2);
    for (int i = 0; i < n_runs; i++) {
        const char *col = line_colours[i % 10];
        const moa_longeval_results *r = runs[i];
        eval_sb_printf(&b, "<polyline fill=\"none\" stroke=\"%s\" stroke-width=\"2\" points=\"", col);
        for (int l = 0; l < nl; l++) {
            const moa_longeval_length *L = find_len(r, lens[l]);
            if (L && L->n) eval_sb_printf(&b, "%.1f,%.1f ", L0 + pw * lens[l] / xmax, T0 + ph - ph * L->accuracy);
        }
        eval_sb_printf(&b, "\"/>\n");
        for (int l = 0; l < nl; l++) {
            const moa_longeval_length *L = find_len(r, lens[l]);
            if (L && L->n)
                eval_sb_printf(&b, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"3\" fill=\"%s\"><title>%d: %.3f</title>"
                               "</circle>\n", L0 + pw * lens[l] / xmax, T0 + ph - ph * L->accuracy, col, lens[l],
                               L->accuracy);
        }
        int ly = T0 + 10 + i * 20;
        eval_sb_printf(&b, "<line x1=\"%d\" y1=\"%d\" x2=\"%d\" y2=\"%d\" stroke=\"%s\" stroke-width=\"2\"/>\n",
                       L0 + pw + 16, ly, L0 + pw + 40, ly, col);
        eval_sb_printf(&b, "<text x=\"%d\" y=\"%d\">", L0 + pw + 46, ly + 4);
        eval_sb_xml(&b, r->label);
        eval_sb_printf(&b, " (ecl %d)</text>\n", r->effective_length);
    }
    eval_sb_printf(&b, "</svg>\n");
    free(lens);
    return write_text(path, &b);
}
