/* cmd-plan.c - `moa plan show|check|annotate`: inspect a plan (table, densities, SVG heat map),
 * check it against a model's dimensions, or attach a validation summary made from separate
 * LongEval results files. Parsing and printing only. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "args.h"
#include "cli.h"
#include "moa/eval.h"
#include "moa/model.h"
#include "moa/runtime.h"

static void plan_usage(FILE *f) {
    fprintf(f,
        "usage: moa plan show PLAN [--lengths N,...] [--svg FILE.svg] [--svg-length N]\n"
        "       moa plan check PLAN (-m MODEL | --n-layer L --n-head H --n-head-kv K --head-dim D)\n"
        "       moa plan annotate PLAN --task TASK --plan R.json[,...] [--dense ...] [--uniform ...]\n"
        "           -o OUT.json\n"
        "\n"
        "show:  model identity, span parameters, provenance, the plan's density at each length,\n"
        "       and a per-layer table of every unit's window W(N) at the chosen lengths.\n"
        "  --lengths N,...   lengths for the table and densities (default: the plan's predicted\n"
        "                    lengths, at most 3 in the table)\n"
        "  --svg FILE        heat map of W(N)/N over layers (rows) x units (columns)   (none)\n"
        "  --svg-length N    N for the heat map (default: the largest plan length)\n"
        "check: exit 0 if the plan fits the model, 1 with the differing dimensions otherwise.\n"
        "  -m, --model FILE  GGUF model ($MOA_MODEL if unset and no --n-* flags)\n"
        "  --n-layer L --n-head H --n-head-kv K --head-dim D   explicit dimensions instead\n"
        "\n"
        "annotate: write PLAN with a validation summary made from `moa eval longeval` results\n"
        "       files (one or more lengths each), after checking every file against the plan:\n"
        "       moa plan annotate PLAN --task TASK --plan R.json[,...] [--dense R.json[,...]]\n"
        "           [--uniform R.json[,...]] -o OUT.json [options]\n"
        "  --task TASK       the evaluation task every file must have (needle, lines, ...)\n"
        "  --plan FILES      results of this plan (attention sha256 = PLAN's); required\n"
        "  --dense FILES     results of the dense model\n"
        "  --uniform FILES   results of the uniform baseline with the plan's sink and block\n"
        "                    (`moa eval longeval --uniform-like PLAN`)\n"
        "                    FILES: comma-separated; each flag may be repeated\n"
        "  -o, --output OUT  the annotated plan, written atomically (may be PLAN itself)\n"
        "  --calib-tasks T   calibration tasks recorded in the summary (default: those of the\n"
        "                    summary PLAN already carries, else unknown)\n"
        "  --calib-seed S    calibration seed recorded (default: as --calib-tasks, else 0)\n"
        "  --heldout-length N --heldout-samples K   held-out response loss at N over K samples,\n"
        "  --heldout-dense X --heldout-uniform Y --heldout-plan Z   in nats/token (each optional)\n"
        "       Refused (exit 1, the file and field named, OUT untouched): another task, seed or\n"
        "       samples per cell, another model sha256, another plan, an attention kind other\n"
        "       than the flag's, an unfinished or repeated length, more than 64 lengths.\n"
        "\n"
        "Exit codes: 0 ok, 1 failure, 2 usage error.\n");
}

static const char *kind_name(moa_unit_kind k) {
    return k == MOA_UNIT_DENSE ? "dense" : k == MOA_UNIT_LINEAR ? "linear" : "window";
}

static int write_heatmap(const moa_plan *p, int64_t n, const char *path) {
    int L = moa_plan_n_layer(p), U = moa_plan_n_units(p);
    double cw = U > 32 ? 10 : 18, ch = L > 40 ? 8 : 14, left = 60, top = 50;
    double W = left + U * cw + 150, H = top + L * ch + 50;
    FILE *f = fopen(path, "w");
    if (!f) { fprintf(stderr, "moa plan: cannot write %s\n", path); return 1; }
    fprintf(f, "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%.0f\" height=\"%.0f\" font-family=\"sans-serif\" font-size=\"11\">\n", W, H);
    fprintf(f, "<rect width=\"100%%\" height=\"100%%\" fill=\"white\"/>\n");
    fprintf(f, "<text x=\"%.0f\" y=\"20\" font-size=\"14\">window W(N)/N at N=%lld, density %.4f (%s units)</text>\n",
            left, (long long)n, moa_plan_density(p, n), moa_plan_granularity(p) == MOA_GRAN_Q_HEAD ? "q-head" : "kv-head");
    fprintf(f, "<text x=\"%.0f\" y=\"40\">unit (%s) &#8594;</text>\n", left,
            moa_plan_granularity(p) == MOA_GRAN_Q_HEAD ? "query head" : "KV head");
    for (int l = 0; l < L; l++) {
        if (L <= 40 || l % 5 == 0)
            fprintf(f, "<text x=\"%.0f\" y=\"%.1f\" text-anchor=\"end\">L%d</text>\n", left - 4, top + l * ch + ch - 2, l);
        for (int u = 0; u < U; u++) {
            double t = (double)moa_plan_unit_window(p, l, u, n) / (double)n;
            int g = (int)(255 * (1 - t));
            const char *extra = moa_plan_unit_kind(p, l, u) == MOA_UNIT_LINEAR ? " stroke=\"#0a0\"" : "";
            fprintf(f, "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" fill=\"rgb(%d,%d,255)\"%s>"
                       "<title>layer %d unit %d: %s alpha=%g beta=%g W=%lld</title></rect>\n",
                    left + u * cw, top + l * ch, cw - 1, ch - 1, g, g, extra, l, u, kind_name(moa_plan_unit_kind(p, l, u)),
                    moa_plan_unit_alpha(p, l, u), moa_plan_unit_beta(p, l, u), (long long)moa_plan_unit_window(p, l, u, n));
        }
    }
    double lx = left + U * cw + 20;
    fprintf(f, "<text x=\"%.0f\" y=\"%.0f\">W/N</text>\n", lx, top);
    for (int t = 0; t <= 10; t++) {
        int g = (int)(255 * (1 - t / 10.0));
        fprintf(f, "<rect x=\"%.0f\" y=\"%.0f\" width=\"16\" height=\"12\" fill=\"rgb(%d,%d,255)\"/>\n", lx, top + 8 + 12.0 * t, g, g);
    }
    fprintf(f, "<text x=\"%.0f\" y=\"%.0f\">0 (sink only)</text>\n", lx + 20, top + 18);
    fprintf(f, "<text x=\"%.0f\" y=\"%.0f\">1 (dense)</text>\n", lx + 20, top + 138);
    fprintf(f, "</svg>\n");
    if (fclose(f) != 0) { fprintf(stderr, "moa plan: write failed: %s\n", path); return 1; }
    return 0;
}

static void print_num(double a, int prec) {
    if (isnan(a)) printf("  %7s", "-");
    else printf("  %7.*f", prec, a);
}

/* The plan's effective context relative to dense (the longest validated length where the
 * plan's accuracy is at least MOA_LONGEVAL_THRESHOLD x dense's, as eval's
 * effective_context_length_vs_reference) and its mean span there: the plan's density at that
 * length x the length (tokens kept per KV head on average), and their ratio (MoA reports
 * 3.9x for its 25% plans). */
static void print_effective_context(const moa_plan *p, const moa_plan_validation *v) {
    int64_t eff = 0;
    for (int i = 0; i < v->n_lengths; i++)
        if (moa_longeval_holds(v->plan[i], v->dense[i], MOA_LONGEVAL_THRESHOLD) && v->length[i] > eff)
            eff = v->length[i];
    if (eff == 0) {
        printf("  effective context (plan >= %.2g x dense): none of the validated lengths\n", MOA_LONGEVAL_THRESHOLD);
        return;
    }
    const double d = moa_plan_density(p, eff);
    printf("  effective context (plan >= %.2g x dense): %lld; mean span there %.0f tokens (density %.3f): %.2fx\n",
           MOA_LONGEVAL_THRESHOLD, (long long)eff, d * (double)eff, d, d > 0 ? 1.0 / d : 0.0);
}

/* The validation summary the plan carries, if any. */
static void print_validation(const moa_plan *p) {
    moa_plan_validation v;
    if (!moa_plan_get_validation(p, &v)) {
        printf("  validation: none recorded in the plan\n");
        return;
    }
    printf("  validation: %s, %d prompts per length, seed %llu (calibration: %s, seed %llu)\n", v.task, v.samples,
           (unsigned long long)v.seed, *v.calib_tasks ? v.calib_tasks : "?", (unsigned long long)v.calib_seed);
    printf("  %8s  %7s  %7s  %7s\n", "length", "dense", "uniform", "plan");
    for (int i = 0; i < v.n_lengths; i++) {
        printf("  %8lld", (long long)v.length[i]);
        print_num(v.dense[i], 2);
        print_num(v.uniform[i], 2);
        print_num(v.plan[i], 2);
        printf("\n");
    }
    print_effective_context(p, &v);
    if (v.heldout_length > 0) {
        printf("  held-out response loss at %lld (%d samples, nats/token):", (long long)v.heldout_length,
               v.heldout_samples);
        print_num(v.heldout_dense, 4);
        print_num(v.heldout_uniform, 4);
        print_num(v.heldout_plan, 4);
        printf("  (dense, uniform, plan)\n");
    }
}

static int plan_show(int argc, char **argv, const char *path) {
    const char *lens = NULL, *svg = NULL;
    long svg_len = 0;
    for (int i = 3; i < argc; i++) {
        int r;
        if ((r = arg_str(argc, argv, &i, NULL, "--lengths", &lens))) { if (r < 0) return 2; continue; }
        if ((r = arg_str(argc, argv, &i, NULL, "--svg", &svg))) { if (r < 0) return 2; continue; }
        if ((r = arg_long(argc, argv, &i, NULL, "--svg-length", &svg_len, 1, 1L << 40))) { if (r < 0) return 2; continue; }
        return cli_unknown_arg("plan show", argv[i], NULL);
    }
    moa_plan *p;
    moa_status st = moa_plan_load(path, &p);
    if (st < 0) return cli_fail("loading the plan", st);
    long ln[64];
    int nl = 0;
    if (lens) {
        nl = moa_parse_int_list(lens, ln, 64);
        if (nl <= 0) { moa_plan_free(p); fprintf(stderr, "moa plan show: --lengths: expected N,N,...\n"); return 2; }
    } else {
        for (int i = 0; i < moa_plan_n_predicted(p) && nl < 64; i++) ln[nl++] = (long)moa_plan_predicted_length(p, i);
        if (nl == 0) { ln[0] = 4096; nl = 1; }
    }
    printf("plan %s\n", path);
    printf("  model: arch %s, %d layers, %d heads, %d KV heads, head_dim %d, sha256 %s\n",
           *moa_plan_arch(p) ? moa_plan_arch(p) : "?", moa_plan_n_layer(p), moa_plan_n_head(p),
           moa_plan_n_head_kv(p), moa_plan_head_dim(p), *moa_plan_model_sha256(p) ? moa_plan_model_sha256(p) : "?");
    printf("  sink %d, block %d, granularity %s (%d units per layer)\n", moa_plan_sink(p), moa_plan_block(p),
           moa_plan_granularity(p) == MOA_GRAN_Q_HEAD ? "q-head" : "kv-head", moa_plan_n_units(p));
    printf("  solver status %s, gap %.3g\n", moa_plan_solver_status(p), moa_plan_solver_gap(p));
    print_validation(p);
    printf("\n  %8s  %8s  %s\n", "N", "density", "predicted loss");
    for (int i = 0; i < nl; i++) {
        double loss = NAN;
        for (int k = 0; k < moa_plan_n_predicted(p); k++)
            if (moa_plan_predicted_length(p, k) == ln[i]) loss = moa_plan_predicted_loss(p, k);
        printf("  %8ld  %8.4f  ", ln[i], moa_plan_density(p, ln[i]));
        if (isnan(loss)) printf("-\n"); else printf("%.6g\n", loss);
    }
    int nt = nl < 3 ? nl : 3;
    if (nl > 3) { ln[1] = ln[nl / 2]; ln[2] = ln[nl - 1]; }   /* table: smallest, middle, largest */
    printf("\n  window W(N) per unit, N = ");
    for (int i = 0; i < nt; i++) printf("%s%ld", i ? " / " : "", ln[i]);
    printf("   (D = dense, Lin = linear; rule as alpha+beta*N)\n");
    for (int l = 0; l < moa_plan_n_layer(p); l++) {
        printf("  L%-3d", l);
        for (int u = 0; u < moa_plan_n_units(p); u++) {
            moa_unit_kind k = moa_plan_unit_kind(p, l, u);
            if (k == MOA_UNIT_DENSE) { printf(" | D"); continue; }
            if (k == MOA_UNIT_LINEAR) { printf(" | Lin"); continue; }
            printf(" | %g%+g*N:", moa_plan_unit_alpha(p, l, u), moa_plan_unit_beta(p, l, u));
            for (int i = 0; i < nt; i++) printf("%s%lld", i ? "/" : "", (long long)moa_plan_unit_window(p, l, u, ln[i]));
        }
        printf("\n");
    }
    int rc = 0;
    if (svg) {
        long n = svg_len > 0 ? svg_len : ln[nl - 1];
        rc = write_heatmap(p, n, svg);
        if (!rc) fprintf(stderr, "moa: heat map written to %s (N=%ld)\n", svg, n);
    }
    moa_plan_free(p);
    return rc;
}

static int plan_check(int argc, char **argv, const char *path) {
    const char *model = NULL;
    long nl = -1, nh = -1, nkv = -1, hd = -1;
    for (int i = 3; i < argc; i++) {
        int r;
        if ((r = arg_str(argc, argv, &i, "-m", "--model", &model))) { if (r < 0) return 2; continue; }
        if ((r = arg_long(argc, argv, &i, NULL, "--n-layer", &nl, 1, 1 << 20))) { if (r < 0) return 2; continue; }
        if ((r = arg_long(argc, argv, &i, NULL, "--n-head", &nh, 1, 1 << 20))) { if (r < 0) return 2; continue; }
        if ((r = arg_long(argc, argv, &i, NULL, "--n-head-kv", &nkv, 1, 1 << 20))) { if (r < 0) return 2; continue; }
        if ((r = arg_long(argc, argv, &i, NULL, "--head-dim", &hd, 1, 1 << 20))) { if (r < 0) return 2; continue; }
        return cli_unknown_arg("plan check", argv[i], NULL);
    }
    int explicit_dims = nl > 0 || nh > 0 || nkv > 0 || hd > 0;
    if (explicit_dims && (nl < 0 || nh < 0 || nkv < 0 || hd < 0)) {
        fprintf(stderr, "moa plan check: give all of --n-layer --n-head --n-head-kv --head-dim\n");
        return 2;
    }
    if (!explicit_dims) {
        const char *mp = cli_model_path(model);
        if (!mp) return 2;
        moa_gguf *g;
        moa_status st = moa_gguf_open(mp, &g);
        if (st < 0) return cli_fail("opening the model", st);
        const char *arch = "llama";
        uint64_t alen;
        moa_gguf_get_str(g, "general.architecture", &arch, &alen);
        char key[128];
        uint32_t v32;
        int ok = 1;
#define GET(suffix, dst)                                                        \
        snprintf(key, sizeof key, "%s.%s", arch, suffix);                     \
        if (moa_gguf_get_u32(g, key, &v32) < 0) ok = 0; else dst = v32;
        GET("block_count", nl);
        GET("attention.head_count", nh);
        nkv = nh;
        snprintf(key, sizeof key, "%s.attention.head_count_kv", arch);
        if (moa_gguf_get_u32(g, key, &v32) >= 0) nkv = v32;
        long emb = 0;
        GET("embedding_length", emb);
        snprintf(key, sizeof key, "%s.attention.key_length", arch);
        if (moa_gguf_get_u32(g, key, &v32) >= 0) hd = v32;
        else if (ok && nh > 0) hd = emb / nh;
#undef GET
        if (!ok) {
            fprintf(stderr, "moa plan check: %s lacks %s (not a supported architecture?)\n", mp, key);
            moa_gguf_close(g);
            return 1;
        }
        moa_gguf_close(g);
    }
    moa_plan *p;
    moa_status st = moa_plan_load(path, &p);
    if (st < 0) return cli_fail("loading the plan", st);
    st = moa_plan_check(p, (int)nl, (int)nh, (int)nkv, (int)hd);
    int rc = 0;
    if (st < 0) rc = cli_fail("checking the plan", st);
    else printf("ok: %s fits the model (%ld layers, %ld heads, %ld KV heads, head_dim %ld)\n", path, nl, nh, nkv, hd);
    moa_plan_free(p);
    return rc;
}

/* Appends the comma-separated paths of `list` to files[*n] (at most MAX_FILES); the strings
 * point into *store (strdup'ed list, freed by the caller). Returns 0 or 2 (usage). */
enum { MAX_FILES = MOA_PLAN_VALIDATION_MAX };
static int add_files(const char *flag, const char *list, char **store, const char **files, int *n) {
    char *copy = moa_strdup(list);
    if (!copy) { fprintf(stderr, "moa plan annotate: out of memory\n"); return 2; }
    *store = copy;
    for (char *tok = copy, *next; tok; tok = next) {
        next = strchr(tok, ',');
        if (next) *next++ = '\0';
        if (!*tok) { fprintf(stderr, "moa plan annotate: %s: an empty file name in '%s'\n", flag, list); return 2; }
        if (*n == MAX_FILES) { fprintf(stderr, "moa plan annotate: %s: more than %d files\n", flag, MAX_FILES); return 2; }
        files[(*n)++] = tok;
    }
    return 0;
}

static int plan_annotate(int argc, char **argv, const char *path) {
    static const char *const flags[3] = {"--dense", "--uniform", "--plan"};
    const char *files[3][MAX_FILES];
    char *store[3 * MAX_FILES + 3] = {0};
    int n_store = 0, rc = 0;
    moa_validation_sources src = moa_validation_default_sources();
    const char *out = NULL;
    long ho_len = 0, ho_samples = 0, calib_seed = -1;
    for (int i = 3; i < argc && !rc; i++) {
        int r;
        const char *list = NULL;
        int m = -1;
        for (int k = 0; k < 3 && m < 0; k++) {
            if ((r = arg_str(argc, argv, &i, NULL, flags[k], &list))) {
                if (r < 0) rc = 2;
                else if (n_store < (int)(sizeof store / sizeof *store))
                    rc = add_files(flags[k], list, &store[n_store++], files[k], &src.n_files[k]);
                else { fprintf(stderr, "moa plan annotate: too many file lists\n"); rc = 2; }
                m = k;
            }
        }
        if (m >= 0) continue;
        if ((r = arg_str(argc, argv, &i, NULL, "--task", &src.task)) ||
            (r = arg_str(argc, argv, &i, "-o", "--output", &out)) ||
            (r = arg_str(argc, argv, &i, NULL, "--calib-tasks", &src.calib_tasks)) ||
            (r = arg_long(argc, argv, &i, NULL, "--calib-seed", &calib_seed, 0, 0x7fffffffffffffffL)) ||
            (r = arg_long(argc, argv, &i, NULL, "--heldout-length", &ho_len, 1, 1L << 40)) ||
            (r = arg_long(argc, argv, &i, NULL, "--heldout-samples", &ho_samples, 1, 1L << 30)) ||
            (r = arg_double(argc, argv, &i, NULL, "--heldout-dense", &src.heldout_dense, 0, 1e300)) ||
            (r = arg_double(argc, argv, &i, NULL, "--heldout-uniform", &src.heldout_uniform, 0, 1e300)) ||
            (r = arg_double(argc, argv, &i, NULL, "--heldout-plan", &src.heldout_plan, 0, 1e300))) {
            if (r < 0) rc = 2;
            continue;
        }
        rc = cli_unknown_arg("plan annotate", argv[i], NULL);
    }
    int has_losses = !isnan(src.heldout_dense) || !isnan(src.heldout_uniform) || !isnan(src.heldout_plan);
    if (!rc && (!src.task || !out || src.n_files[MOA_VALIDATION_PLAN] == 0)) {
        fprintf(stderr, "moa plan annotate: --task, --plan (the plan's results) and -o are required\n");
        rc = 2;
    } else if (!rc && ((ho_len > 0) != (ho_samples > 0) || (has_losses && ho_len == 0))) {
        fprintf(stderr, "moa plan annotate: --heldout-length and --heldout-samples go together, and the "
                        "--heldout-dense/-uniform/-plan losses need them\n");
        rc = 2;
    }
    moa_plan *p = NULL;
    moa_plan_validation v;
    if (!rc) {
        for (int k = 0; k < 3; k++) src.files[k] = files[k];
        src.calib_seed = calib_seed;
        src.heldout_length = ho_len;
        src.heldout_samples = (int)ho_samples;
        moa_status st = moa_plan_load(path, &p);
        if (st < 0) rc = cli_fail("loading the plan", st);
        else if ((st = moa_longeval_plan_validation(p, path, &src, &v)) < 0) rc = cli_fail("annotating the plan", st);
        else if ((st = moa_plan_set_validation(p, &v)) < 0) rc = cli_fail("annotating the plan", st);
        else if ((st = moa_plan_save(p, out)) < 0) rc = cli_fail("writing the annotated plan", st);
    }
    if (!rc) {
        printf("annotated: %s (plan %s; %d result file(s): %d dense, %d uniform, %d plan)\n", out, path,
               src.n_files[0] + src.n_files[1] + src.n_files[2], src.n_files[0], src.n_files[1], src.n_files[2]);
        print_validation(p);
    }
    moa_plan_free(p);
    for (int k = 0; k < n_store; k++) free(store[k]);
    return rc;
}

int moa_cmd_plan(int argc, char **argv) {
    if (argc >= 2 && (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help"))) { plan_usage(stdout); return 0; }
    if (argc < 3) { plan_usage(stderr); return 2; }
    for (int i = 2; i < argc; i++) if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) { plan_usage(stdout); return 0; }
    if (!strcmp(argv[1], "show")) return plan_show(argc, argv, argv[2]);
    if (!strcmp(argv[1], "check")) return plan_check(argc, argv, argv[2]);
    if (!strcmp(argv[1], "annotate")) return plan_annotate(argc, argv, argv[2]);
    fprintf(stderr, "moa plan: unknown action '%s' (show|check|annotate)\n", argv[1]);
    plan_usage(stderr);
    return 2;
}
