/* compress.c - calibrate -> profile -> optimise -> validate, resumable (see moa/pipeline.h). */
#include "moa/pipeline.h"
#include "moa/calib.h"
#include "moa/eval.h"
#include "moa/model.h"
#include "moa/optimizer.h"
#include "moa/profile-file.h"
#include "moa/profiler.h"
#include "moa/common.h"
#include "stage-ledger.h"

#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

moa_compress_params moa_compress_default_params(void) {
    const moa_compress_params p = {.calib_tasks = "needle-multivalue,needle-multiquery", .calib_samples = 12,
                                   .validation_samples = 0, .calib_seed = 1, .calib_max_new = 64,
                                   .extrapolate = 2, .time_limit = 20, .pareto_grid = 5,
                                   .eval_samples = 1, .eval_task = "needle", .eval_seed = 2,
                                   .heldout_samples = 4, .sink = -1, .far_weight = 1};
    return p;
}

static moa_status mkdir_p(const char *dir) {
    char *d = moa_strdup(dir);
    if (!d) return moa_err(MOA_ERR_NOMEM, "out of memory");
    for (char *s = d + 1; ; s++) {
        if (*s == '/' || *s == '\0') {
            char c = *s;
            *s = '\0';
            if (mkdir(d, 0777) != 0 && errno != EEXIST) {
                moa_status st = moa_err(MOA_ERR_IO, "cannot create directory '%s': %s", d, strerror(errno));
                free(d);
                return st;
            }
            *s = c;
            if (!c) break;
        }
    }
    free(d);
    return MOA_OK;
}

static char *path_in(const char *dir, const char *name) {
    size_t n = strlen(dir) + strlen(name) + 2;
    char *p = malloc(n);
    if (p) snprintf(p, n, "%s/%s", dir, name);
    return p;
}

static double mtime(const char *path) {
    struct stat sb;
    if (stat(path, &sb) != 0) return -1;
    return (double)sb.st_mtim.tv_sec + 1e-9 * (double)sb.st_mtim.tv_nsec;
}

/* Wall time of each stage, for the report. */
typedef struct { char name[12][64]; double t[13]; int n; } stage_times;

/* Fault injection for the kill tests (tests/pipeline/test_compress_kill.c): with the
 * environment variable MOA_COMPRESS_KILL_AT set to `point`, the process kills itself with
 * SIGKILL there, for a stage too quick to catch from outside (the optimisation). Points: the
 * start of each stage (its name) and "plan written" (plan.json saved, its inputs record not). */
static void kill_point(const char *point) {
    const char *at = getenv("MOA_COMPRESS_KILL_AT");
    if (at && !strcmp(at, point)) raise(SIGKILL);
}


/* ---- growing text buffer for the report --------------------------------------------- */
typedef struct { char *s; size_t n, cap; } sbuf;
static void sb_printf(sbuf *b, const char *fmt, ...) MOA_PRINTF(2, 3);
static void sb_printf(sbuf *b, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int k = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (k < 0) return;
    if (b->n + (size_t)k + 1 > b->cap) {
        size_t cap = (b->n + (size_t)k + 1) * 2;
        char *s = realloc(b->s, cap);
        if (!s) return;
        b->s = s;
        b->cap = cap;
    }
    va_start(ap, fmt);
    vsnprintf(b->s + b->n, b->cap - b->n, fmt, ap);
    va_end(ap);
    b->n += (size_t)k;
}

/* ---- stage checks: a stage's output is reused only when it records exactly the inputs and
 * settings this run would give it ------------------------------------------------------------ */

/* Everything that shapes a calibration file: its build parameters (tasks, lengths, counts,
 * seed, answer budget, word list, model, tokenizer, chat template). The file records their
 * canonical JSON (build_params), so a file is current iff that text is the same. */
typedef struct {
    moa_task_spec specs[8];
    int n_specs;
    int samples[MOA_COMPRESS_MAX_LENGTHS];
    const char *tmpl;
    moa_calib_build_params bp;
} calib_job;

/* Parses "longdep,lines,needle-*" into specs (words may be NULL when only checking). */
static moa_status parse_tasks(const char *tasks, const moa_wordlist *words, moa_task_spec *specs, int *n_specs) {
    *n_specs = 0;
    if (!tasks || !*tasks) return moa_err(MOA_ERR_INVALID_ARG, "calibration tasks: empty list (longdep, lines, needle-*)");
    char *list = moa_strdup(tasks);
    if (!list) return moa_err(MOA_ERR_NOMEM, "out of memory");
    moa_status st = MOA_OK;
    for (char *save = NULL, *t = strtok_r(list, ",", &save); t && st >= 0; t = strtok_r(NULL, ",", &save)) {
        if (*n_specs >= 8) { st = moa_err(MOA_ERR_INVALID_ARG, "calibration tasks: at most 8"); break; }
        moa_task_spec s;
        if (!strcmp(t, "longdep")) s = moa_task_spec_default(MOA_TASK_LONGDEP);
        else if (!strcmp(t, "lines")) s = moa_task_spec_default(MOA_TASK_LINES);
        else if (!strcmp(t, "needle") || !strcmp(t, "needle-single")) s = moa_task_spec_default(MOA_TASK_NEEDLE);
        else if (!strncmp(t, "needle-", 7)) {
            s = moa_task_spec_default(MOA_TASK_NEEDLE);
            if (!strcmp(t, "needle-multikey")) s.needle_variant = MOA_NEEDLE_MULTIKEY;
            else if (!strcmp(t, "needle-multivalue")) s.needle_variant = MOA_NEEDLE_MULTIVALUE;
            else if (!strcmp(t, "needle-multiquery")) s.needle_variant = MOA_NEEDLE_MULTIQUERY;
            else st = moa_err(MOA_ERR_INVALID_ARG, "unknown calibration task '%s' (longdep, lines, needle, "
                              "needle-multikey, needle-multivalue, needle-multiquery)", t);
        } else st = moa_err(MOA_ERR_INVALID_ARG, "unknown calibration task '%s' (longdep, lines, needle, "
                            "needle-multikey, needle-multivalue, needle-multiquery)", t);
        s.words = words;
        specs[(*n_specs)++] = s;
    }
    free(list);
    return st;
}

static moa_status calib_job_init(calib_job *j, const moa_model *m, const moa_tokenizer *tok,
                                 const moa_wordlist *words, const char *tasks, const int *lengths,
                                 const int *samples, int n_len, uint64_t seed, int max_new) {
    memset(j, 0, sizeof *j);
    MOA_TRY(parse_tasks(tasks, words, j->specs, &j->n_specs));
    int same = 1;
    for (int i = 0; i < n_len; i++) {
        j->samples[i] = samples[i];
        same &= samples[i] == samples[0];
    }
    j->tmpl = NULL;
    moa_gguf_get_str(m->gguf, "tokenizer.chat_template", &j->tmpl, NULL);
    moa_calib_build_params *bp = &j->bp;
    *bp = moa_calib_build_default_params();
    bp->tasks = j->specs;
    bp->n_tasks = j->n_specs;
    bp->lengths = lengths;
    bp->n_lengths = n_len;
    bp->samples_per_length = samples[0];
    bp->samples_at = same ? NULL : j->samples;   /* one count: the file records it as before */
    bp->seed = seed;
    bp->max_new_tokens = max_new;
    bp->model_sha256 = m->sha256;
    bp->tokenizer_id = moa_tokenizer_pre(tok);
    bp->chat_template = j->tmpl ? j->tmpl : "";
    bp->resume = 1;
    return MOA_OK;
}

/* 1: the file at path was built with exactly the job's parameters. */
static int calib_current(const char *path, const calib_job *j) {
    if (!moa_file_exists(path)) return 0;
    moa_calib_file *f = NULL;
    if (moa_calib_read(path, &f) < 0) return 0;
    char *want = moa_calib_build_params_json(&j->bp);
    int ok = want && f->build_params && !strcmp(f->build_params, want);
    free(want);
    moa_calib_file_free(f);
    return ok;
}

/* 1: the profile at path was made by this model from the whole calibration file calib_sha
 * (not a shard), with these sinks, block and length buckets. */
static int profile_current(const char *path, const moa_model *m, const int *lengths, int n_len, int sink, int block,
                           const char *calib_sha) {
    if (!moa_file_exists(path)) return 0;
    moa_profile *pr = NULL;
    if (moa_profile_load(path, &pr) < 0) return 0;
    int ok = !strcmp(pr->model_sha256, m->sha256) && !strcmp(pr->calib_sha256, calib_sha) &&
             pr->shard_count == 1 && pr->n_buckets == n_len && pr->sink == sink && pr->block == block;
    for (int k = 0; ok && k < n_len; k++) ok = moa_profile_find_bucket(pr, lengths[k]) >= 0;
    moa_profile_free(pr);
    return ok;
}

/* The settings a plan of the work directory was optimised with, as text (kept beside it in
 * plan.json.inputs): the plan is reused only when this text is the same, so a change of any
 * setting (budget, lengths, solver limits, grid) or of the profile re-optimises. */
static char *plan_inputs_text(const moa_compress_params *p, const int *lengths, int n_len, int64_t ext,
                              int64_t validation, const char *profile_sha) {
    sbuf b = {0};
    sb_printf(&b, "moa compress plan inputs v1\ntool %s\nprofile_sha256 %s\ndensity %.17g\nlengths", MOA_VERSION,
              profile_sha, p->density);
    for (int i = 0; i < n_len; i++) sb_printf(&b, " %d", lengths[i]);
    sb_printf(&b, "\nextrapolated %lld\nvalidation %lld\nsink %d\nblock %d\ntime_limit %.17g\npareto_grid %d\n",
              (long long)ext, (long long)validation, p->sink, p->block, p->time_limit, p->pareto_grid);
    if (!p->no_widen) sb_printf(&b, "widen 1\n");   /* plans made before the widening are redone */
    if (p->far_weight > 0 && p->far_weight != 1) sb_printf(&b, "far_weight %.17g\n", p->far_weight);
    if (p->q_head) sb_printf(&b, "granularity q-head\n");
    return b.s;
}

/* The plan in the work directory was made by this job's settings from this profile: same
 * sinks, block and validation length, the budget `density` at exactly the constrained lengths
 * (calibration lengths plus the extrapolated one), and the profile's sha256 (a plan of
 * another density or of an older profile is rebuilt, not reused). */
static int plan_current(const moa_plan *plan, const moa_compress_params *p, const int *lengths, int n_len,
                        int64_t ext, int64_t validation, const char *profile_path) {
    char sha[65];
    if (moa_plan_sink(plan) != p->sink || moa_plan_block(plan) != p->block ||
        moa_plan_validation_length(plan) != validation || moa_sha256_file(profile_path, sha) < 0 ||
        strcmp(sha, moa_plan_profile_sha256(plan)) != 0)
        return 0;
    int n_want = n_len + (ext > 0);
    if (moa_plan_n_constrained(plan) != n_want) return 0;
    for (int i = 0; i < n_want; i++) {
        int64_t c = moa_plan_constrained_length(plan, i);
        int found = c == ext;
        for (int k = 0; k < n_len; k++) found |= c == lengths[k];
        if (!found || fabs(moa_plan_budget(plan, i) - p->density) > 1e-12) return 0;
    }
    return 1;
}

/* Default sink and block for profiles whose shortest length is n_min (see moa/pipeline.h). */
static int default_block(int n_min) {
    int b = 64;
    while (b > 16 && b * 32 > n_min) b /= 2;
    return b;
}

/* ---- stages ------------------------------------------------------------------------------ */
static moa_status build_calib(const moa_model *m, const moa_tokenizer *tok, calib_job *j,
                              const moa_compress_params *p, const char *out) {
    int longest = 0;
    for (int i = 0; i < j->bp.n_lengths; i++) longest = j->bp.lengths[i] > longest ? j->bp.lengths[i] : longest;
    moa_ctx_params cp = moa_ctx_default_params();
    cp.n_ctx = longest + j->bp.max_new_tokens + 64;
    if (cp.n_ctx > m->hp.n_ctx_train) cp.n_ctx = m->hp.n_ctx_train;
    moa_ctx *ctx = NULL;
    MOA_TRY(moa_ctx_create(m, &cp, &ctx));
    moa_model_io io = {tok, ctx, 1};
    moa_calib_tokenizer ct = moa_model_io_tokenizer(&io);
    moa_status st = moa_calib_build(&j->bp, &ct, moa_model_io_respond, &io, p->progress, p->progress_data, out);
    if (st == MOA_ERR_MISMATCH) {   /* the checkpoint of a build with other settings: start over */
        size_t n = strlen(out) + 6;
        char *ckpt = malloc(n);
        if (!ckpt) { moa_ctx_free(ctx); return moa_err(MOA_ERR_NOMEM, "out of memory"); }
        snprintf(ckpt, n, "%s.ckpt", out);
        moa_log_info("compress: %s belongs to other calibration settings; starting it over", ckpt);
        remove(ckpt);
        free(ckpt);
        st = moa_calib_build(&j->bp, &ct, moa_model_io_respond, &io, p->progress, p->progress_data, out);
    }
    moa_ctx_free(ctx);
    return st;
}

/* ext: the extrapolated constrained length (0: none); validation: the selecting length. */
static moa_status optimise(const moa_compress_params *p, const int *lengths, int n_len, int64_t ext,
                           int64_t validation, int block,
                           const char *profile_path, const char *profile_sha, const char *calib_sha,
                           const char *plan_path, const char *front_csv, const char *front_svg, sbuf *rep,
                           moa_plan **out) {
    moa_profile *prof = NULL;
    MOA_TRY(moa_profile_load(profile_path, &prof));
    moa_opt_params op = moa_opt_default_params();
    op.validation = validation;
    op.n_objective = 0;
    for (int i = 0; i < n_len; i++)
        if (lengths[i] != op.validation) op.objective[op.n_objective++] = lengths[i];
    op.n_constrained = 0;
    for (int i = 0; i < n_len; i++) {
        op.constrained[op.n_constrained] = lengths[i];
        op.budget[op.n_constrained++] = p->density;
    }
    if (ext > 0) {
        op.constrained[op.n_constrained] = ext;
        op.budget[op.n_constrained++] = p->density;
    }
    /* Rules: the reference's grid (alpha in {-2..8} x step, beta in {0, 1/8, .., 1}, step =
     * 1024 * longest objective / 8192 in blocks) plus short windows alpha in {1, 2, 4} blocks,
     * which the reference's step never offers below 2k objectives: without them every head
     * keeps at least N/8 of the context and a tight budget has nothing left for the few
     * heads that must see everything (docs/results.md). The optimiser filters the grid. */
    int64_t obj_max = 0;
    for (int i = 0; i < op.n_objective; i++) obj_max = op.objective[i] > obj_max ? op.objective[i] : obj_max;
    double alphas[MOA_RULES_MAX_ALPHAS], betas[MOA_RULES_N_BETAS];
    int n_alpha = moa_rules_alphas(obj_max, block, 1, alphas);
    moa_rules_betas(betas);
    moa_rule rules[MOA_RULES_MAX_ALPHAS * MOA_RULES_N_BETAS];
    int n_rules = moa_rules_cross(alphas, n_alpha, betas, MOA_RULES_N_BETAS, rules,
                                  MOA_RULES_MAX_ALPHAS * MOA_RULES_N_BETAS);
    op.rules = rules;
    op.n_rules = n_rules;
    op.density = p->density;
    op.time_limit = p->time_limit;
    op.grid = p->pareto_grid;
    op.widen = !p->no_widen;
    if (p->far_weight > 0) op.far_weight = p->far_weight;
    if (p->q_head) op.granularity = MOA_GRAN_Q_HEAD;
    moa_opt_problem *pb = NULL;
    moa_opt_front front;
    memset(&front, 0, sizeof front);
    moa_plan *plan = NULL;
    moa_status st = moa_opt_problem_from_profile(prof, &op, &pb);
    if (st >= 0) st = moa_opt_pareto(pb, &op, &front);
    if (st >= 0) {
        moa_opt_provenance prov = {profile_sha, calib_sha};
        st = moa_opt_make_plan(pb, prof, &op, &front.points[front.selected], &prov, &plan);
    }
    if (st >= 0) st = moa_plan_save(plan, plan_path);
    if (st >= 0) st = moa_opt_front_write_csv(pb, &front, front_csv);
    if (st >= 0) st = moa_opt_front_write_svg(pb, &front, front_svg);
    if (st >= 0) {
        const moa_opt_solution *s = &front.points[front.selected];
        sb_printf(rep, "Pareto front: %d points from %d solves in %.1f s (worst gap %.2g); selected point %d "
                  "(lowest loss at the validation length %lld).\n\n| length | role | normalised loss |\n|---:|---|---:|\n",
                  front.n_points, front.n_solves, front.time, front.max_gap, front.selected, (long long)op.validation);
        for (int j = 0; j < pb->n_len; j++)
            sb_printf(rep, "| %lld | %s | %.4f |\n", (long long)pb->len[j], j == pb->val ? "validation" : "objective", s->loss[j]);
        sb_printf(rep, "\n");
    }
    if (st >= 0) { *out = plan; plan = NULL; }
    moa_plan_free(plan);
    moa_opt_front_clear(&front);
    moa_opt_problem_free(pb);
    moa_profile_free(prof);
    return st;
}

static void plan_summary(const moa_plan *plan, const int *lengths, int n_len, int64_t extra, sbuf *rep) {
    int nl = moa_plan_n_layer(plan), nu = moa_plan_n_units(plan);
    int n_dense = 0, n_win = 0, n_lin = 0;
    for (int l = 0; l < nl; l++)
        for (int u = 0; u < nu; u++) {
            moa_unit_kind k = moa_plan_unit_kind(plan, l, u);
            n_dense += k == MOA_UNIT_DENSE;
            n_win += k == MOA_UNIT_WINDOW;
            n_lin += k == MOA_UNIT_LINEAR;
        }
    sb_printf(rep, "Plan: %d layers x %d units (%d window, %d dense, %d linear), sink %d, block %d.\n\n",
              nl, nu, n_win, n_dense, n_lin, moa_plan_sink(plan), moa_plan_block(plan));
    sb_printf(rep, "| length | plan density | shortest window | longest window |\n|---:|---:|---:|---:|\n");
    for (int i = 0; i <= n_len; i++) {
        int64_t n = i < n_len ? lengths[i] : extra;
        if (n <= 0) continue;
        int64_t wmin = INT64_MAX, wmax = 0;
        for (int l = 0; l < nl; l++)
            for (int u = 0; u < nu; u++) {
                int64_t w = moa_plan_unit_window(plan, l, u, n);
                wmin = w < wmin ? w : wmin;
                wmax = w > wmax ? w : wmax;
            }
        sb_printf(rep, "| %lld | %.3f | %lld | %lld |\n", (long long)n, moa_plan_density(plan, n), (long long)wmin, (long long)wmax);
    }
    sb_printf(rep, "\n");
}

/* The validation files of one method in the work directory: results (ext "json") and the
 * per-sample log ("jsonl"); malloc'd, NULL out of memory. */
static char *eval_file(const char *dir, const char *task, const char *tag, const char *ext) {
    char name[256];
    snprintf(name, sizeof name, "eval-%s-%s.%s", task, tag, ext);
    return path_in(dir, name);
}

static moa_status run_eval(const moa_model *m, const moa_tokenizer *tok, const moa_wordlist *words,
                           const moa_eval_attention *a, const int *lengths, int n_len,
                           const moa_compress_params *p, const char *dir, const char *tag,
                           double plan_mtime, moa_longeval_results **out) {
    char *json = eval_file(dir, p->eval_task, tag, "json");   /* uniform: matched to the plan */
    char *log = eval_file(dir, p->eval_task, tag, "jsonl");
    moa_status st = MOA_OK;
    moa_eval_engine *e = NULL;
    char *label = moa_eval_attention_label(a);
    if (!json || !log || !label) { st = moa_err(MOA_ERR_NOMEM, "out of memory"); goto done; }
    /* Results come from the per-sample log, which is resumed only when its header has the
     * same settings (model sha256, attention, lengths, samples, seed, task): a finished log
     * costs nothing, another model's is started over. Uniform and plan logs older than
     * plan.json are dropped too (an earlier plan of the same settings text). */
    int depends = a->kind != MOA_EVAL_DENSE;
    if (depends && moa_file_exists(log) && mtime(log) < plan_mtime) remove(log);
    if ((st = moa_eval_engine_create(m, tok, a, 1, &e)) < 0) goto done;
    moa_eval_model em = moa_eval_engine_model(e);
    moa_longeval_params lp = moa_longeval_default_params();
    lp.lengths = lengths;
    lp.n_lengths = n_len;
    lp.samples_per_cell = p->eval_samples;
    lp.seed = p->eval_seed;
    lp.task = p->eval_task;
    lp.words = words;
    lp.label = label;
    lp.model_settings = moa_eval_engine_settings(e);
    lp.log_path = log;
    lp.resume = 1;
    st = moa_longeval_run(&lp, &em, p->progress, p->progress_data, out);
    if (st == MOA_ERR_MISMATCH) {   /* a log of other settings (lengths, samples, seed): start over */
        moa_log_info("compress: %s was written with other settings; starting it over", log);
        remove(log);
        st = moa_longeval_run(&lp, &em, p->progress, p->progress_data, out);
    }
    if (st < 0) goto done;
    st = moa_longeval_write_json(*out, json);
done:
    moa_eval_engine_free(e);
    free(label);
    free(json);
    free(log);
    return st;
}

/* ---- settings: defaults from the model, then every check before any work ---------------- */

#define BAD(...) return moa_err(MOA_ERR_INVALID_ARG, "compress: " __VA_ARGS__)

static int has_length(const int *l, int n, int64_t x) {
    for (int i = 0; i < n; i++) if (l[i] == x) return 1;
    return 0;
}

moa_status moa_compress_prepare(const moa_model *m, const moa_compress_params *in, moa_compress_params *out) {
    if (!m || !in || !out) return moa_err(MOA_ERR_INVALID_ARG, "moa_compress_prepare: NULL argument");
    moa_compress_params p = *in;
    const int C = m->hp.n_ctx_train;
    if (!p.workdir || !*p.workdir) BAD("a work directory is required");
    if (!(p.density > 0 && p.density <= 1)) BAD("density %g: expected a value in (0, 1]", p.density);
    if (p.calib_samples < 1) BAD("calibration samples %d: expected >= 1", p.calib_samples);
    if (p.validation_samples < 0) BAD("validation samples %d: expected >= 1 (0 = default)", p.validation_samples);
    if (p.calib_max_new < 1) BAD("calibration answer budget %d: expected >= 1 token", p.calib_max_new);
    if (p.n_calib_lengths < 0 || p.n_calib_lengths > MOA_COMPRESS_MAX_LENGTHS)
        BAD("%d calibration lengths: at most %d", p.n_calib_lengths, MOA_COMPRESS_MAX_LENGTHS);
    if (p.n_eval_lengths < 0 || p.n_eval_lengths > MOA_COMPRESS_MAX_LENGTHS)
        BAD("%d evaluation lengths: at most %d", p.n_eval_lengths, MOA_COMPRESS_MAX_LENGTHS);
    if (p.n_calib_lengths == 0) {
        p.n_calib_lengths = 4;
        p.calib_lengths[0] = C / 16; p.calib_lengths[1] = C / 8; p.calib_lengths[2] = C / 4; p.calib_lengths[3] = C / 2;
    }
    if (p.n_calib_lengths < 2)
        BAD("--calib-lengths: give at least two lengths (objectives and a validation length left out of them)");
    int longest = 0, shortest = 0;
    for (int i = 0; i < p.n_calib_lengths; i++) {
        int L = p.calib_lengths[i];
        if (L < 64) BAD("--calib-lengths: %d is below 64 tokens", L);
        if ((int64_t)L + p.calib_max_new > C)
            BAD("--calib-lengths: %d + %d answer tokens exceeds the model's context of %d tokens (at most %d)", L,
                p.calib_max_new, C, C - p.calib_max_new);
        if (has_length(p.calib_lengths, i, L)) BAD("--calib-lengths: %d is given twice", L);
        longest = L > longest ? L : longest;
        shortest = !shortest || L < shortest ? L : shortest;
    }
    moa_task_spec specs[8];
    int n_specs;
    if (parse_tasks(p.calib_tasks, NULL, specs, &n_specs) < 0)
        return moa_err_prefix(MOA_ERR_INVALID_ARG, "compress: --calib-tasks");
    if (p.validation_length < 0) BAD("--validation %lld: expected a calibration length", (long long)p.validation_length);
    if (p.validation_length == 0) p.validation_length = longest;
    if (!has_length(p.calib_lengths, p.n_calib_lengths, p.validation_length))
        BAD("--validation %lld: not one of the calibration lengths (the plan is selected on a profiled length "
            "left out of the objectives)", (long long)p.validation_length);
    if (p.block < 0) BAD("--block %d: expected > 0 (0 = default)", p.block);
    if (p.block == 0) p.block = default_block(shortest);
    if (p.sink < 0) p.sink = p.block;
    if ((int64_t)p.sink + p.block > shortest)
        BAD("--sink %d and --block %d: sink + block must fit in the shortest calibration length %d", p.sink, p.block,
            shortest);
    if (p.validation_samples == 0) p.validation_samples = (p.calib_samples + 1) / 2;
    if (!(p.extrapolate >= 0) || !isfinite(p.extrapolate)) BAD("extrapolation factor %g: expected >= 0", p.extrapolate);
    if (!(p.time_limit > 0) || !isfinite(p.time_limit)) BAD("--time-limit %g: expected > 0 seconds", p.time_limit);
    if (p.pareto_grid < 0) BAD("Pareto grid %d: expected >= 0", p.pareto_grid);
    /* validation settings (checked even with skip_eval: a later run reuses them) */
    const int eval_new = moa_longeval_default_params().max_new_tokens;
    if (p.n_eval_lengths == 0) {
        /* the calibration lengths (the validation one too: the plan was selected there on the
         * calibration tasks, and is validated on another task and seed), then doublings of the
         * longest up to the model's context, the last one the largest multiple of 512 that
         * leaves room for the answer: 2K, 4K, 8K, 16K, 32256 for a 32K model with the default
         * lengths (issue 18: validation up to the model's context). */
        for (int i = 0; i < p.n_calib_lengths; i++) p.eval_lengths[p.n_eval_lengths++] = p.calib_lengths[i];
        const int top = (C - eval_new) / 512 * 512;
        for (int64_t L = 2 * (int64_t)longest; p.n_eval_lengths < MOA_COMPRESS_MAX_LENGTHS; L *= 2) {
            const int add = L < top ? (int)L : top;
            if (add <= longest || has_length(p.eval_lengths, p.n_eval_lengths, add)) break;
            p.eval_lengths[p.n_eval_lengths++] = add;
            if (add == top) break;
        }
        for (int i = 1; i < p.n_eval_lengths; i++)   /* ascending */
            for (int j = i; j > 0 && p.eval_lengths[j - 1] > p.eval_lengths[j]; j--) {
                const int t = p.eval_lengths[j];
                p.eval_lengths[j] = p.eval_lengths[j - 1];
                p.eval_lengths[j - 1] = t;
            }
    }
    for (int i = 0; i < p.n_eval_lengths; i++) {
        int L = p.eval_lengths[i];
        if (L < 64) BAD("--eval-lengths: %d is below 64 tokens", L);
        if ((int64_t)L + eval_new > C)
            BAD("--eval-lengths: %d + %d answer tokens exceeds the model's context of %d tokens (at most %d)", L,
                eval_new, C, C - eval_new);
        if (has_length(p.eval_lengths, i, L)) BAD("--eval-lengths: %d is given twice", L);
    }
    if (moa_longeval_task_check(p.eval_task) < 0) return moa_err_prefix(MOA_ERR_INVALID_ARG, "compress: --eval-task");
    if (p.eval_samples < 1) BAD("--eval-samples %d: expected >= 1", p.eval_samples);
    if (p.heldout_samples < 0) BAD("--heldout %d: expected >= 0", p.heldout_samples);
    *out = p;
    return MOA_OK;
}
#undef BAD

/* "reused" or "built in this run", for the report. */
static const char *how(int reused) { return reused ? "reused: recorded with exactly these settings" : "built in this run"; }

moa_status moa_compress_load_model(const char *model_path, moa_model **out) {
    moa_model_params mp = moa_model_default_params();
    mp.f32_weights = moa_ctx_default_params().device != MOA_DEVICE_CUDA;   /* host BLAS copies: CPU only */
    return moa_model_load(model_path, &mp, out);
}

moa_status moa_compress_run(const char *model_path, const moa_compress_params *pp, const char *out_plan,
                            char **report) {
    if (report) *report = NULL;
    moa_model *m = NULL;
    MOA_TRY(moa_compress_load_model(model_path, &m));
    moa_status st = moa_compress_run_model(m, model_path, pp, out_plan, report);
    moa_model_free(m);
    return st;
}

/* ---- the run, stage by stage ------------------------------------------------------------ */

/* One run: its checked settings, the files of its work directory, what each stage made and
 * the report. Every stage reads and fills it; compress_job_free releases it. */
typedef struct {
    const moa_model *m;
    const char *model_path;
    moa_compress_params p;
    moa_tokenizer *tok;
    moa_wordlist *words;
    char *calib, *profile, *planp, *plan_in, *csv, *svg, *heldout, *cmp_svg, *rep_path;   /* in p.workdir */
    int64_t validation, ext;                   /* validation length; extrapolated budget length (0: none) */
    int calib_n[MOA_COMPRESS_MAX_LENGTHS];     /* samples per calibration length */
    char calib_sha[65], profile_sha[65];
    moa_plan *plan;
    moa_eval_attention a[3];                   /* dense, uniform, plan */
    moa_longeval_results *res[3];
    moa_plan_validation val;                   /* the summary the plan file carries */
    sbuf rep;
    stage_times times;
    moa_stage_ledger ledger;                   /* every run's time per stage (stage-times.tsv) */
    moa_progress_fn user_progress;             /* the caller's progress callback and data: */
    void *user_data;                           /* p.progress wraps them to flush the ledger */
} compress_job;

/* A new stage: the kill point of the tests, this run's clock, the ledger, the caller's
 * announcement (with the caller's own data). */
static void stage(compress_job *j, const char *name) {
    stage_times *st = &j->times;
    kill_point(name);
    if (st->n < 12) {
        snprintf(st->name[st->n], sizeof st->name[0], "%s", name);
        st->t[st->n++] = moa_time_now();
    }
    moa_ledger_enter(&j->ledger, name);
    if (j->p.stage) j->p.stage(j->user_data, name);
    else moa_log_info("compress: %s", name);
}

/* The running stage starts from scratch unless `path` + `suffix` (its checkpoint or log)
 * exists: earlier runs' time is then no longer part of its cost. */
static void ledger_fresh_unless(compress_job *j, const char *path, const char *suffix) {
    char f[4200];
    snprintf(f, sizeof f, "%s%s", path, suffix);
    if (!moa_file_exists(f)) moa_ledger_restart(&j->ledger);
}

/* Every stage's progress goes through here: the caller's callback, and the ledger written at
 * most every MOA_LEDGER_FLUSH_S seconds (a killed run loses at most that much time). */
static void job_progress(void *data, double done, double total, double extra, const char *unit) {
    compress_job *j = data;
    moa_ledger_flush(&j->ledger, 0);
    if (j->user_progress) j->user_progress(j->user_data, done, total, extra, unit);
}

static const char *const eval_tags[3] = {"dense", "uniform", "plan"};

static void compress_job_free(compress_job *j) {
    free(j->rep.s);
    for (int i = 0; i < 3; i++) moa_longeval_results_free(j->res[i]);
    moa_plan_free(j->plan);
    moa_wordlist_free(j->words);
    moa_tokenizer_free(j->tok);
    free(j->calib); free(j->profile); free(j->planp); free(j->plan_in); free(j->csv); free(j->svg);
    free(j->heldout); free(j->cmp_svg); free(j->rep_path);
    moa_ledger_close(&j->ledger);
}

/* Settings checked (every one before the work directory is touched), tokenizer and word
 * list loaded, the work directory made and its file names set. */
static moa_status job_open(compress_job *j, const moa_compress_params *pp) {
    j->p = *pp;                     /* the caller's stage callback, until prepared */
    j->user_progress = pp->progress;
    j->user_data = pp->progress_data;
    if (moa_ledger_open(&j->ledger, NULL) < 0) return moa_err(MOA_ERR_NOMEM, "out of memory");
    stage(j, "checking the settings");
    /* every setting is checked before the work directory is touched */
    MOA_TRY(moa_compress_prepare(j->m, pp, &j->p));
    j->p.progress = job_progress;
    j->p.progress_data = j;
    MOA_TRY(moa_tokenizer_from_gguf(j->m->gguf, &j->tok));
    MOA_TRY(moa_wordlist_load(NULL, &j->words));
    MOA_TRY(mkdir_p(j->p.workdir));
    const char *dir = j->p.workdir;
    j->calib = path_in(dir, "calib.h5"); j->profile = path_in(dir, "profile.h5");
    j->planp = path_in(dir, "plan.json"); j->plan_in = path_in(dir, "plan.json.inputs");
    j->csv = path_in(dir, "pareto.csv"); j->svg = path_in(dir, "pareto.svg");
    j->heldout = path_in(dir, "heldout.h5"); j->cmp_svg = path_in(dir, "longeval.svg");
    j->rep_path = path_in(dir, "report.md");
    char *ledger = path_in(dir, "stage-times.tsv");
    moa_ledger_close(&j->ledger);   /* the settings' check, timed in memory, restarts in the file */
    int lo = ledger ? moa_ledger_open(&j->ledger, ledger) : -1;
    free(ledger);
    if (lo < 0) return moa_err(MOA_ERR_NOMEM, "out of memory");
    moa_ledger_enter(&j->ledger, "checking the settings");
    j->ledger.since = j->times.t[0];   /* the check began before the file was known */
    if (!j->calib || !j->profile || !j->planp || !j->plan_in || !j->csv || !j->svg || !j->heldout || !j->cmp_svg ||
        !j->rep_path)
        return moa_err(MOA_ERR_NOMEM, "out of memory");
    return MOA_OK;
}

/* The lengths of the run (validation, extrapolated, samples per length) and the report's
 * first paragraph. */
static void job_lengths(compress_job *j) {
    const moa_compress_params *p = &j->p;
    const moa_model *m = j->m;
    int C = m->hp.n_ctx_train;
    int longest = 0;
    for (int i = 0; i < p->n_calib_lengths; i++) longest = p->calib_lengths[i] > longest ? p->calib_lengths[i] : longest;
    j->validation = p->validation_length;
    j->ext = (int64_t)(p->extrapolate * (double)longest);   /* extrapolated budget length */
    if (j->ext > C) j->ext = C;
    if (j->ext <= longest) j->ext = 0;
    for (int i = 0; i < p->n_calib_lengths; i++)
        j->calib_n[i] = p->calib_lengths[i] == j->validation ? p->validation_samples : p->calib_samples;

    sb_printf(&j->rep, "# moa compress report\n\nModel: %s (sha256 %.16s..., %d layers, %d/%d heads, context %d). "
              "Density budget %.3f at lengths", j->model_path, m->sha256, m->hp.n_layer, m->hp.n_head,
              m->hp.n_head_kv, C, p->density);
    for (int i = 0; i < p->n_calib_lengths; i++) sb_printf(&j->rep, " %d", p->calib_lengths[i]);
    if (j->ext) sb_printf(&j->rep, " and %lld (extrapolated)", (long long)j->ext);
    sb_printf(&j->rep, ".\n\n");
}

static void report_calib_answers(const char *path, sbuf *rep);

/* 1. calibration: reused only when the file records exactly these build parameters */
static moa_status stage_calibration(compress_job *j) {
    const moa_compress_params *p = &j->p;
    stage(j, "calibration set (model's own answers)");
    calib_job cj;
    MOA_TRY(calib_job_init(&cj, j->m, j->tok, j->words, p->calib_tasks, p->calib_lengths, j->calib_n,
                           p->n_calib_lengths, p->calib_seed, p->calib_max_new));
    int calib_reused = calib_current(j->calib, &cj);
    if (!calib_reused) {
        ledger_fresh_unless(j, j->calib, ".ckpt");
        MOA_TRY(build_calib(j->m, j->tok, &cj, p, j->calib));
    }
    MOA_TRY(moa_sha256_file(j->calib, j->calib_sha));
    sb_printf(&j->rep, "Calibration (%s; %s, sha256 %.16s...): tasks %s, seed %llu, answers of up to %d tokens by "
              "the dense model; samples per length:", how(calib_reused), j->calib, j->calib_sha, p->calib_tasks,
              (unsigned long long)p->calib_seed, p->calib_max_new);
    for (int i = 0; i < p->n_calib_lengths; i++)
        sb_printf(&j->rep, "%s %d x %d%s", i ? "," : "", j->calib_n[i], p->calib_lengths[i],
                  p->calib_lengths[i] == j->validation ? " (validation)" : "");
    sb_printf(&j->rep, ".\n\n");
    report_calib_answers(j->calib, &j->rep);
    return MOA_OK;
}

/* How many calibration prompts the dense model answered right, per task, in the report; a
 * warning when fewer than half: the influence is then measured on answers that do not
 * retrieve, and the plans keep too little far context (docs/results.md, "calibration on tasks
 * the model can do"). */
enum { CALIB_TASKS_MAX = 16 };
static void report_calib_answers(const char *path, sbuf *rep) {
    moa_calib_file *f = NULL;
    if (moa_calib_read(path, &f) < 0) return;
    const char *name[CALIB_TASKS_MAX];
    int right[CALIB_TASKS_MAX] = {0}, scored[CALIB_TASKS_MAX] = {0}, n_task = 0, all_right = 0, all_scored = 0;
    for (int64_t i = 0; i < f->n_samples; i++) {
        const moa_calib_sample *s = &f->samples[i];
        if (s->dense_correct < 0 || !s->task) continue;
        int t = 0;
        while (t < n_task && strcmp(name[t], s->task)) t++;
        if (t == n_task) {
            if (n_task == CALIB_TASKS_MAX) continue;
            name[n_task++] = s->task;
        }
        scored[t]++;
        right[t] += s->dense_correct == 1;
    }
    if (n_task > 0) {
        sb_printf(rep, "Calibration answers the dense model got right:");
        for (int t = 0; t < n_task; t++) {
            sb_printf(rep, "%s %s %d of %d", t ? "," : "", name[t], right[t], scored[t]);
            all_right += right[t];
            all_scored += scored[t];
        }
        sb_printf(rep, ".\n\n");
        if (2 * all_right < all_scored) {
            sb_printf(rep, "**Warning**: the dense model answered only %d of %d calibration prompts right: the "
                      "attention influence is measured mostly on answers that do not retrieve, which leaves "
                      "long-range heads out of tight plans; calibrate on tasks this model can do "
                      "(`--calib-tasks`, docs/results.md).\n\n", all_right, all_scored);
            moa_log_warn("compress: the dense model answered only %d of %d calibration prompts right; consider "
                         "--calib-tasks with tasks it can do (see the report)", all_right, all_scored);
        }
    }
    moa_calib_file_free(f);
}

/* 2. profile: reused only when made from this very calibration file with these settings */
static moa_status stage_profile(compress_job *j) {
    const moa_compress_params *p = &j->p;
    stage(j, "profile (attention influence)");
    int profile_reused = profile_current(j->profile, j->m, p->calib_lengths, p->n_calib_lengths, p->sink, p->block,
                                         j->calib_sha);
    if (!profile_reused) {
        moa_profile_run_params rp = moa_profile_run_default_params();
        rp.prof.sink = p->sink;
        rp.prof.block = p->block;
        rp.resume = 1;
        rp.progress = p->progress;
        rp.progress_data = p->progress_data;
        ledger_fresh_unless(j, j->profile, ".ckpt");
        moa_status st = moa_profile_run(j->m, j->calib, j->profile, &rp);
        if (st == MOA_ERR_MISMATCH) {   /* a checkpoint of other inputs or settings: start over */
            char ck[4200];
            snprintf(ck, sizeof ck, "%s.ckpt", j->profile);
            moa_log_info("compress: %s belongs to other inputs or settings; starting the profile over", ck);
            remove(ck);
            snprintf(ck, sizeof ck, "%s.ckpt.h5", j->profile);
            remove(ck);
            moa_ledger_restart(&j->ledger);
            st = moa_profile_run(j->m, j->calib, j->profile, &rp);
        }
        MOA_TRY(st);
    }
    MOA_TRY(moa_sha256_file(j->profile, j->profile_sha));
    sb_printf(&j->rep, "Profile (%s; %s, sha256 %.16s...): from the calibration file above, sink %d, block %d.\n\n",
              how(profile_reused), j->profile, j->profile_sha, p->sink, p->block);
    return MOA_OK;
}

/* 3. optimise: reused only when plan.json.inputs records exactly these settings */
static moa_status stage_optimise(compress_job *j) {
    const moa_compress_params *p = &j->p;
    stage(j, "optimise (GLPK, Pareto front)");
    sb_printf(&j->rep, "## Plan\n\n");
    char *want = plan_inputs_text(p, p->calib_lengths, p->n_calib_lengths, j->ext, j->validation, j->profile_sha);
    char *have = NULL;
    moa_status st = MOA_OK;
    if (!want) { st = moa_err(MOA_ERR_NOMEM, "out of memory"); goto done; }
    size_t have_len = 0;
    int plan_reused = moa_file_exists(j->plan_in) && moa_read_file(j->plan_in, &have, &have_len) >= 0 &&
                      !strcmp(have, want) && moa_plan_load(j->planp, &j->plan) >= 0 &&
                      plan_current(j->plan, p, p->calib_lengths, p->n_calib_lengths, j->ext, j->validation,
                                   j->profile);
    if (!plan_reused) {
        moa_plan_free(j->plan);
        j->plan = NULL;
        remove(j->plan_in);   /* a plan without its inputs record is never reused */
        moa_ledger_restart(&j->ledger);
        moa_opt_init();
        if ((st = optimise(p, p->calib_lengths, p->n_calib_lengths, j->ext, j->validation, p->block, j->profile,
                           j->profile_sha, j->calib_sha, j->planp, j->csv, j->svg, &j->rep, &j->plan)) < 0) goto done;
        kill_point("plan written");
        if ((st = moa_eval_write_text(j->plan_in, want)) < 0) goto done;
    } else {
        sb_printf(&j->rep, "(plan reused from %s: optimised from this profile with these settings, %s)\n\n", j->planp,
                  j->plan_in);
    }
    /* no moa_plan_check here: a fresh plan is built from this model's profile, a reused one
     * matched its inputs record (this profile's sha256); the contexts check it (moa_ctx_create) */
    plan_summary(j->plan, p->calib_lengths, p->n_calib_lengths, j->ext, &j->rep);
done:
    free(want);
    free(have);
    return st;
}

/* The report's table of uniform and plan densities at the evaluated lengths. */
static void report_eval_densities(compress_job *j) {
    const moa_llama_hparams *hp = &j->m->hp;
    const moa_eval_attention *u_att = &j->a[1];
    sb_printf(&j->rep, "The uniform baseline (the plan's %d sinks + one window for every head) gets the plan's own "
              "density at each planned length (its window is the largest %d-token multiple that fits it).\n"
              "Densities at the evaluated lengths (planned context = length + answer budget):\n\n"
              "| length | uniform | plan |\n|---:|---:|---:|\n", u_att->sink, u_att->block);
    for (int i = 0; i < j->p.n_eval_lengths; i++) {
        int64_t n = j->p.eval_lengths[i] + moa_longeval_default_params().max_new_tokens;
        moa_plan *u = NULL;
        double ud = moa_plan_uniform(hp->n_layer, hp->n_head, hp->n_head_kv, hp->head_dim, u_att->sink,
                                     u_att->block, moa_plan_density(j->plan, n), n, &u) >= 0 ? moa_plan_density(u, n) : NAN;
        moa_plan_free(u);
        sb_printf(&j->rep, "| %d | %.3f | %.3f |\n", j->p.eval_lengths[i], ud, moa_plan_density(j->plan, n));
    }
    sb_printf(&j->rep, "\n");
}

/* 4. LongEval: dense, uniform, plan; the comparison in the report and the summary in val */
static moa_status stage_validation(compress_job *j) {
    const moa_compress_params *p = &j->p;
    moa_eval_attention *a = j->a;
    for (int i = 0; i < 3; i++) a[i] = moa_eval_attention_default();
    a[1].kind = MOA_EVAL_UNIFORM;   /* StreamingLLM at the plan's own density at each length */
    a[1].density = p->density;
    a[1].sink = moa_plan_sink(j->plan);   /* and with the plan's sinks and block */
    a[1].block = moa_plan_block(j->plan);
    a[1].match = j->plan;
    a[2].kind = MOA_EVAL_PLAN;
    a[2].plan = j->plan;
    a[2].plan_path = j->planp;
    for (int i = 0; i < 3; i++) {
        char msg[64];
        snprintf(msg, sizeof msg, "validation: %s (%s)", p->eval_task, eval_tags[i]);
        stage(j, msg);
        /* the ledger starts the stage over where run_eval will: no log, or one older than the plan */
        char *lp = eval_file(p->workdir, p->eval_task, eval_tags[i], "jsonl");
        if (!lp) return moa_err(MOA_ERR_NOMEM, "out of memory");
        if (!moa_file_exists(lp) || (i > 0 && mtime(lp) < mtime(j->planp))) moa_ledger_restart(&j->ledger);
        free(lp);
        MOA_TRY(run_eval(j->m, j->tok, j->words, &a[i], p->eval_lengths, p->n_eval_lengths, p, p->workdir,
                         eval_tags[i], mtime(j->planp), &j->res[i]));
    }
    for (int i = 1; i < 3; i++) moa_longeval_set_reference(j->res[i], j->res[0]);
    char *md = NULL;
    MOA_TRY(moa_longeval_compare_md((const moa_longeval_results *const *)j->res, 3, &md));
    sb_printf(&j->rep, "## Validation: %s retrieval, 10 position bins x %d sample(s) per length (seed %llu; "
              "the calibration used %s with seed %llu)\n\n%s\n", p->eval_task, p->eval_samples,
              (unsigned long long)p->eval_seed, p->calib_tasks, (unsigned long long)p->calib_seed, md);
    free(md);
    report_eval_densities(j);
    moa_longeval_compare_svg((const moa_longeval_results *const *)j->res, 3, j->cmp_svg);
    /* the summary the plan file carries (moa_plan_validation) */
    moa_plan_validation *val = &j->val;
    moa_longeval_results *const *res = j->res;
    snprintf(val->task, sizeof val->task, "%s", p->eval_task);
    val->seed = p->eval_seed;
    val->samples = p->eval_samples * MOA_LONGEVAL_BINS;
    snprintf(val->calib_tasks, sizeof val->calib_tasks, "%s", p->calib_tasks);
    val->calib_seed = p->calib_seed;
    for (int i = 0; i < res[0]->n_lengths && i < MOA_PLAN_VALIDATION_MAX; i++) {
        double *dst[3] = {val->dense, val->uniform, val->plan};
        val->length[i] = res[0]->lengths[i].length;
        for (int k = 0; k < 3; k++) {
            double acc = i < res[k]->n_lengths && res[k]->lengths[i].length == res[0]->lengths[i].length
                             ? res[k]->lengths[i].accuracy : -1;
            dst[k][i] = acc >= 0 ? acc : NAN;
        }
        val->n_lengths = i + 1;
    }
    return MOA_OK;
}

/* 5. response loss on held-out samples at the validation length */
static moa_status stage_heldout(compress_job *j) {
    const moa_compress_params *p = &j->p;
    stage(j, "held-out response loss");
    int vl = (int)j->validation;
    calib_job hj;
    MOA_TRY(calib_job_init(&hj, j->m, j->tok, j->words, p->calib_tasks, &vl, &p->heldout_samples, 1,
                           p->calib_seed + 1000, p->calib_max_new));
    if (!calib_current(j->heldout, &hj)) {
        ledger_fresh_unless(j, j->heldout, ".ckpt");
        MOA_TRY(build_calib(j->m, j->tok, &hj, p, j->heldout));
    }
    moa_calib_file *hf = NULL;
    MOA_TRY(moa_calib_read(j->heldout, &hf));
    sb_printf(&j->rep, "## Response loss on %d held-out samples at the validation length %d (seed %llu)\n\n"
              "| attention | mean CE (nats/token) |\n|---|---:|\n", p->heldout_samples, vl,
              (unsigned long long)(p->calib_seed + 1000));
    double *ce[3] = {&j->val.heldout_dense, &j->val.heldout_uniform, &j->val.heldout_plan};
    moa_status st = MOA_OK;
    for (int i = 0; i < 3 && st >= 0; i++) {
        moa_eval_loss l;
        memset(&l, 0, sizeof l);
        if ((st = moa_eval_response_loss(j->m, &j->a[i], hf, 0, p->progress, p->progress_data, &l)) >= 0) {
            sb_printf(&j->rep, "| %s | %.4f |\n", eval_tags[i], l.mean_ce);
            *ce[i] = isfinite(l.mean_ce) && l.mean_ce >= 0 ? l.mean_ce : NAN;
        }
        moa_eval_loss_clear(&l);
    }
    j->val.heldout_length = vl;
    j->val.heldout_samples = p->heldout_samples;
    moa_calib_file_free(hf);
    MOA_TRY(st);
    sb_printf(&j->rep, "\n");
    return MOA_OK;
}

/* The plan reaches the output path only now, after every validation stage has finished
 * (with skip_eval: right after the optimisation, and the report says it is not validated);
 * then the report's last lines and report.md. */
static moa_status job_finish(compress_job *j, const char *out_plan) {
    const moa_compress_params *p = &j->p;
    if (!p->skip_eval) MOA_TRY(moa_plan_set_validation(j->plan, &j->val));
    MOA_TRY(moa_plan_save(j->plan, out_plan));
    if (p->skip_eval)
        sb_printf(&j->rep, "Plan written to %s: NOT VALIDATED (--skip-eval: no retrieval or held-out loss check). "
                  "Pareto front in %s and %s.\n\n", out_plan, j->csv, j->svg);
    else
        sb_printf(&j->rep, "Plan written to %s after validation; Pareto front in %s and %s.\n\n", out_plan, j->csv,
                  j->svg);
    stage_times *times = &j->times;
    times->t[times->n] = moa_time_now();
    moa_ledger_flush(&j->ledger, 1);
    sb_printf(&j->rep, "## Stage times (wall clock: this run, where reused stages take ~0 s, and every run "
              "that worked on this work directory's current outputs, from %s/stage-times.tsv)\n\n"
              "| stage | this run, s | all runs, s | runs |\n|---|---:|---:|---:|\n", p->workdir);
    double all = 0;
    for (int i = 0; i < times->n; i++) {
        const moa_ledger_row *r = moa_ledger_find(&j->ledger, times->name[i]);
        all += r ? r->seconds : 0;
        sb_printf(&j->rep, "| %s | %.1f | %.1f | %d |\n", times->name[i], times->t[i + 1] - times->t[i],
                  r ? r->seconds : 0.0, r ? r->runs : 0);
    }
    sb_printf(&j->rep, "| total | %.1f | %.1f | |\n", times->t[times->n] - times->t[0], all);
    return moa_eval_write_text(j->rep_path, j->rep.s ? j->rep.s : "");
}

moa_status moa_compress_run_model(const moa_model *m, const char *model_path, const moa_compress_params *pp,
                                  const char *out_plan, char **report) {
    if (report) *report = NULL;
    if (!m || !pp || !out_plan) return moa_err(MOA_ERR_INVALID_ARG, "compress: model, parameters and an output path are required");
    compress_job j;
    memset(&j, 0, sizeof j);
    j.m = m;
    j.model_path = model_path;
    moa_status st = job_open(&j, pp);
    if (st >= 0) {
        job_lengths(&j);
        st = stage_calibration(&j);
    }
    if (st >= 0) st = stage_profile(&j);
    if (st >= 0) st = stage_optimise(&j);
    if (st >= 0 && !j.p.skip_eval) {
        st = stage_validation(&j);
        if (st >= 0 && j.p.heldout_samples > 0) st = stage_heldout(&j);
    }
    if (st >= 0) st = job_finish(&j, out_plan);
    if (st >= 0 && report) { *report = j.rep.s; j.rep.s = NULL; }
    compress_job_free(&j);
    return st;
}
