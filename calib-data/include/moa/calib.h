/* moa/calib.h - the public API of calib-data/ (library moa_calib): calibration and evaluation
 * data: task generators (LongEval lines, RULER-style needles, a built-in long-dependency task,
 * JSONL import), token-length fitting, scorers, the model-aligned calibration builder, the
 * calib.h5 (`moa-calib` v1) reader/writer, and the glue to the real model (moa_model_io).
 * Other parts and the CLI include it as "moa/calib.h" (the moa_calib target exposes
 * calib-data/include); the other headers of calib-data/ are internal to it.
 *
 * The library is model-independent: tokenizer and engine come in as callbacks, so the CLI
 * (or the evaluator) wires the real tokenizer / chat template / dense engine (moa_model_io,
 * the last section, built only with model/), and unit tests use fakes. Formats and task
 * texts are documented in docs/calibration.md.
 *
 * Conventions: every function that can fail returns moa_status (negative on error) with a
 * message in moa_last_error() naming the file / line / field. Strings returned through
 * out-parameters are malloc'ed and owned by the caller (free()); objects returned by *_load,
 * *_parse, *_read are freed with the matching *_free. Nothing here keeps global state: all
 * functions are thread-safe on distinct objects, and word lists, corpora and task specs are
 * immutable after creation and may be shared between threads; except that the calib.h5
 * reader and writer (and moa_calib_build, which writes one) use HDF5, which the Debian build
 * does not make thread-safe (moa/h5util.h): call them from one thread at a time in the
 * process. moa_calib_read also forks a child (h5guard.h).
 */
#ifndef MOA_CALIB_H
#define MOA_CALIB_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "moa/base.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ==== word lists ============================================================================
 * Labels (LongEval "word1-word2", needle keys, entity names) are drawn from a real English
 * word list. Only plain lowercase ASCII words of MOA_WORD_MIN_LEN..MOA_WORD_MAX_LEN letters
 * are kept (no capitals, apostrophes, digits or accents), minus a built-in exclusion list of
 * vulgar words and slurs; duplicates are dropped, file order is kept. The sha256 of the kept words (joined by '\n') identifies the list in outputs, since
 * the same seed gives the same data only with the same list. */
#define MOA_WORDLIST_DEFAULT_PATH "/usr/share/dict/american-english" /* Debian wamerican */
#define MOA_WORD_MIN_LEN 3
#define MOA_WORD_MAX_LEN 10

typedef struct moa_wordlist moa_wordlist;

/* Load and filter a one-word-per-line file (NULL path = MOA_WORDLIST_DEFAULT_PATH). Fails if
 * fewer than 4 words survive the filter. The caller owns *out (moa_wordlist_free); the
 * strings the accessors below return are owned by the list. */
moa_status moa_wordlist_load(const char *path, moa_wordlist **out);
/* Same filter over an in-memory array (tests, embedded lists). */
moa_status moa_wordlist_from_words(const char *const *words, size_t n, moa_wordlist **out);
size_t moa_wordlist_count(const moa_wordlist *wl);
const char *moa_wordlist_word(const moa_wordlist *wl, size_t i);
const char *moa_wordlist_source(const moa_wordlist *wl);  /* path, or "(memory)" */
const char *moa_wordlist_sha256(const moa_wordlist *wl);  /* 64 hex chars */
void moa_wordlist_free(moa_wordlist *wl);                  /* NULL ok */

/* ==== JSONL corpora =========================================================================
 * One JSON object per line (blank lines are skipped). Each record needs a non-empty string
 * `context_field` and a string `instruction_field` (defaults "context" and "instruction");
 * other keys are ignored. The prompt is `prompt_template` with "{context}" and
 * "{instruction}" substituted (default "{context}\n\n{instruction}"). Invalid JSON, a missing
 * or non-string field, an empty context and invalid UTF-8 are errors naming the line and
 * field. */
typedef struct {
    const char *context_field;      /* "context" */
    const char *instruction_field;  /* "instruction" */
    const char *prompt_template;    /* "{context}\n\n{instruction}" */
} moa_jsonl_params;
moa_jsonl_params moa_jsonl_default_params(void);

typedef struct moa_jsonl_corpus moa_jsonl_corpus;
/* The caller owns *out (moa_jsonl_free); the strings the accessors return are the corpus's. */
moa_status moa_jsonl_load(const char *path, const moa_jsonl_params *p, moa_jsonl_corpus **out);
/* `name` is used in messages ("name:LINE: ..."). */
moa_status moa_jsonl_parse(const char *data, size_t len, const char *name,
                           const moa_jsonl_params *p, moa_jsonl_corpus **out);
size_t moa_jsonl_count(const moa_jsonl_corpus *c);
const char *moa_jsonl_context(const moa_jsonl_corpus *c, size_t i);
const char *moa_jsonl_instruction(const moa_jsonl_corpus *c, size_t i);
int moa_jsonl_line(const moa_jsonl_corpus *c, size_t i);     /* 1-based source line */
const char *moa_jsonl_source(const moa_jsonl_corpus *c);
void moa_jsonl_free(moa_jsonl_corpus *c);                     /* NULL ok */

/* ==== tasks ================================================================================= */
typedef enum {
    MOA_TASK_LINES   = 0,  /* LongEval lines (byte-exact; docs/calibration.md) */
    MOA_TASK_NEEDLE  = 1,  /* RULER-style needle in a haystack */
    MOA_TASK_LONGDEP = 2,  /* entities' facts scattered over the context, joined by the question */
    MOA_TASK_JSONL   = 3,  /* user corpus, context trimmed to the budget (first + last halves) */
} moa_task_kind;

typedef enum {
    MOA_NEEDLE_SINGLE     = 0,  /* one needle, one key asked */
    MOA_NEEDLE_MULTIKEY   = 1,  /* needle_keys needles with distinct keys; one asked */
    MOA_NEEDLE_MULTIVALUE = 2,  /* one key with needle_values values; all asked */
    MOA_NEEDLE_MULTIQUERY = 3,  /* needle_keys needles; needle_queries of them asked */
} moa_needle_variant;

typedef enum {
    MOA_NEEDLE_NUMBERS = 0,  /* 7-digit numbers */
    MOA_NEEDLE_WORDS   = 1,  /* "word-word" */
    MOA_NEEDLE_UUIDS   = 2,  /* uuid4-shaped hex strings */
} moa_needle_type;

/* What to generate. Pointers are borrowed and must outlive every use of the spec. */
typedef struct {
    moa_task_kind kind;
    const moa_wordlist *words;        /* lines, needle, longdep: required */
    /* Position of the queried item (lines: the queried line; needle single/multikey: the
     * asked needle; longdep: unused): query_index >= 0 picks it exactly (must be < size);
     * else position_bin in 0..9 picks uniformly inside that tenth (floor(10*idx/n) == bin;
     * with fewer than 10 items an empty bin falls back to item floor(bin*n/10));
     * else (-1) uniform over all. The sample records the bin it got. */
    int query_index;                  /* -1 */
    int position_bin;                 /* -1 */
    /* lines */
    int lines_value_max;              /* 50000: values uniform in 1..max */
    /* needle */
    moa_needle_variant needle_variant;/* MOA_NEEDLE_SINGLE */
    moa_needle_type needle_type;      /* MOA_NEEDLE_NUMBERS */
    int needle_keys;                  /* 4 (multikey, multiquery) */
    int needle_values;                /* 4 (multivalue) */
    int needle_queries;               /* 2 (multiquery) */
    const char *haystack_text;        /* NULL: RULER noise sentences; else a text (its words,
                                         repeated as needed) */
    /* longdep */
    int longdep_people;               /* 0 = auto: moa_task_fit uses clamp(target/256, 4, 64),
                                         moa_task_generate MOA_LONGDEP_DEFAULT_PEOPLE */
    int longdep_cities;               /* 6 cities; the question asks about one */
    /* jsonl */
    const moa_jsonl_corpus *corpus;   /* required for MOA_TASK_JSONL */
} moa_task_spec;
#define MOA_LONGDEP_DEFAULT_PEOPLE 24
moa_task_spec moa_task_spec_default(moa_task_kind kind);
/* Short stable name used in files: "lines", "needle-single", "needle-multikey",
 * "needle-multivalue", "needle-multiquery", "longdep", "jsonl". */
const char *moa_task_name(const moa_task_spec *spec);

/* One generated prompt (the user turn, before any chat template). */
typedef struct {
    char *task;          /* moa_task_name() */
    char *prompt;        /* user-turn text */
    char *expected;      /* expected answer strings joined by '\n'; NULL if none (jsonl) */
    char *params;        /* JSON object with the seed and every parameter that shaped it */
    uint32_t seed;       /* generator seed (gsl mt19937) */
    int64_t size;        /* size in units: lines / haystack units / filler sentences / bytes */
    int query_index;     /* index of the queried item among `size` (or -1) */
    int position_bin;    /* floor(10*query_index/size), or -1 */
    int64_t record;      /* jsonl: record index; else -1 */
} moa_task_sample;
void moa_task_sample_clear(moa_task_sample *s);   /* frees the strings; NULL ok */

/* Generate the sample of `size` units for `seed` (deterministic: same inputs, same bytes).
 * `record` selects the JSONL record (ignored by synthetic tasks). Size units: lines (lines),
 * haystack units (needle: noise sentences or text words), filler sentences (longdep),
 * context bytes kept (jsonl; larger than the context = untrimmed). Contents grow as a prefix
 * in `size`, so token counts are (nearly) monotone in it. *out's strings are the caller's
 * (moa_task_sample_clear). */
moa_status moa_task_generate(const moa_task_spec *spec, uint32_t seed, int64_t size,
                             int64_t record, moa_task_sample *out);

/* ==== length fitting ========================================================================
 * count_tokens returns how many tokens the MODEL sees for a user turn `text`, i.e. after the
 * chat template with the generation prompt (the CLI wires moa_chat_render +
 * moa_tokenizer_encode), or a negative moa_status on error. */
typedef int (*moa_count_tokens_fn)(void *data, const char *text, size_t len);

typedef struct {
    int tolerance_abs;      /* 64 tokens */
    double tolerance_rel;   /* 0.02: tolerance = max(abs, rel * target) */
    int64_t max_size;       /* 1<<24 units: search bound */
} moa_fit_params;
moa_fit_params moa_fit_default_params(void);

/* Largest size whose token count is <= target_tokens, found by a galloping + binary search
 * over `size` (contents grow monotonically in it). Succeeds iff
 * target - tolerance <= *n_tokens <= target; otherwise MOA_ERR_RANGE naming the counts (the
 * closest sample is still returned in *out for inspection). JSONL records shorter than the
 * target are returned whole (success, with their actual length). */
moa_status moa_task_fit(const moa_task_spec *spec, uint32_t seed, int64_t record,
                        int target_tokens, moa_count_tokens_fn count_tokens, void *count_data,
                        const moa_fit_params *fp, moa_task_sample *out, int *n_tokens);

/* ==== scorers ===============================================================================
 * lines: every run of ASCII digits in the output, the LAST one, equals `expected` when both
 * are compared as digit strings without leading zeros (no overflow). No number: 0.
 * needle: fraction of the '\n'-separated expected strings found case-insensitively. */
int moa_score_lines(const char *output, const char *expected);
double moa_score_needle(const char *output, const char *expected);
/* By task name: lines -> moa_score_lines, needle-* / longdep -> moa_score_needle;
 * returns -1 if the task has no known answer (jsonl) or expected is NULL. */
double moa_score_task(const char *task, const char *output, const char *expected);

/* ==== calib.h5 (moa-calib v1) ===============================================================
 * Layout in docs/formats.md "## calib.h5 (moa-calib v1)". */
#define MOA_CALIB_FORMAT  "moa-calib"
#define MOA_CALIB_VERSION 1

typedef struct {
    int32_t *tokens;        /* [n_tokens] prompt ids then response ids */
    int32_t n_tokens;
    int32_t prompt_len;     /* tokens[0:prompt_len] is the model input */
    int32_t response_start; /* response span [start, end): loss tokens; start == prompt_len */
    int32_t response_end;   /* <= n_tokens */
    int32_t bucket;         /* requested length bucket (tokens) */
    char *task;             /* task name */
    uint32_t seed;          /* generator seed */
    char *expected;         /* expected answers ('\n'-joined) or NULL */
    char *params;           /* generator parameters, JSON */
    int8_t dense_correct;   /* 1 right, 0 wrong, -1 unknown (no known answer / no decoder) */
    double dense_score;     /* scorer value in 0..1, or -1 */
} moa_calib_sample;

typedef struct {
    char *model_sha256;     /* of the GGUF file */
    char *tokenizer;        /* tokenizer identity */
    char *chat_template;    /* template text used */
    char *tool_version;     /* MOA_VERSION of the writer */
    char *build_params;     /* JSON: tasks, lengths, seed, max_new_tokens, word list, ... */
    int64_t n_samples;
    moa_calib_sample *samples;
} moa_calib_file;

/* Atomic write (temp file + rename). */
moa_status moa_calib_write(const char *path, const moa_calib_file *f);
/* Read and validate everything (format, version, dataset shapes, spans, strings). The file
 * is first read in a child process (h5guard.h): a file that crashes or hangs libhdf5 fails
 * with MOA_ERR_FORMAT ("malformed HDF5 file: ...") instead of taking the caller down. The
 * caller owns *out (moa_calib_file_free). */
moa_status moa_calib_read(const char *path, moa_calib_file **out);
/* The same read without the guard, in this process: for files already checked (the guard's
 * child, the fuzzer after the guard). A hostile file can crash libhdf5 here. */
moa_status moa_calib_read_unguarded(const char *path, moa_calib_file **out);
/* The file meets a model: every token id (prompt and response, the last response token
 * included, which no forward pass reads) must be in [0, n_vocab). MOA_ERR_FORMAT naming the
 * sample, the position and its role otherwise. Profiler and evaluator call it before any work. */
moa_status moa_calib_check_vocab(const moa_calib_file *f, int64_t n_vocab);
void moa_calib_file_free(moa_calib_file *f);              /* NULL ok; frees what it owns */
void moa_calib_sample_clear(moa_calib_sample *s);

/* Token ids -> text (malloc'ed); used for scoring and dumps. */
typedef moa_status (*moa_detokenize_fn)(void *data, const int32_t *ids, int n, char **text);

/* Readable dump of samples [first, first+count) (count < 0: to the end) to `out`. With a
 * detokenizer, prompt and response are shown as text; otherwise as ids. */
moa_status moa_calib_dump(const moa_calib_file *f, int64_t first, int64_t count,
                          moa_detokenize_fn detok, void *detok_data, FILE *out);

/* ==== the builder ===========================================================================
 * For each length L (in order) and j = 0..K_l-1 (K_l = samples_at[l], or samples_per_length
 * when samples_at is NULL): sample index i = K_0 + .. + K_{l-1} + j, task = tasks[j % n_tasks],
 * generator seed
 * = moa_calib_sample_seed(seed, L, j), position_bin = j % 10 (lines, needle) unless the
 * spec fixes it, JSONL record = i % n_records. The prompt is fitted to L tokens, encoded,
 * answered greedily by the responder, scored when the task has a known answer. Sample i
 * depends only on (seed, L, j) and the model, never on other samples, so a resumed build
 * writes the same file as an uninterrupted one.
 *
 * Checkpoint: after each sample a record is appended (fsync'ed) to checkpoint_path (default
 * "<out>.ckpt"); with resume = 1 a checkpoint whose header matches these parameters is
 * reused (a torn last record is dropped); a mismatching one is an error (MOA_ERR_MISMATCH).
 * On success the checkpoint is removed. To stop a build early (SIGINT, a time limit), have
 * the responder return an error such as MOA_ERR_INTERRUPTED: the build returns it, the
 * finished samples stay in the checkpoint, and no output file is written.
 *
 * dense_correct: 1 iff the scorer gives 1 (lines: the number is right; needles / longdep:
 * every expected string is present), 0 otherwise, -1 for tasks without a known answer or
 * without a detokenize callback. Thread-safety: one build per thread; the callbacks are
 * called from the calling thread only. */

/* Everything the model side provides. The CLI wires the real tokenizer and engine. */
typedef struct {
    moa_count_tokens_fn count_tokens;   /* required */
    /* Full model input for a user turn (chat template + generation prompt); *ids malloc'ed. */
    moa_status (*encode_prompt)(void *data, const char *text, size_t len,
                                int32_t **ids, int *n_ids);   /* required */
    moa_detokenize_fn detokenize;       /* optional: without it dense_correct = -1 */
    void *data;
} moa_calib_tokenizer;

/* Greedy dense answer: prompt ids in, up to max_new_tokens response ids out (*out malloc'ed,
 * freed by the caller with free(); the stop token, if produced, included). */
typedef moa_status (*moa_respond_fn)(void *data, const int32_t *prompt, int n_prompt,
                                     int max_new_tokens, int32_t **out, int *n_out);

typedef struct {
    const moa_task_spec *tasks;   /* [n_tasks], cycled over samples */
    int n_tasks;
    const int *lengths;           /* [n_lengths] target prompt lengths (buckets), tokens;
                                     length + max_new_tokens must fit the model's context
                                     (the profiler rejects longer samples) */
    int n_lengths;
    int samples_per_length;       /* 10 */
    const int *samples_at;        /* [n_lengths] samples per length, or NULL: samples_per_length
                                     at every length (recorded as "samples_at" only when set) */
    uint64_t seed;                /* 0 */
    int max_new_tokens;           /* 128 */
    moa_fit_params fit;
    const char *model_sha256;     /* recorded; "" if unknown */
    const char *tokenizer_id;     /* recorded */
    const char *chat_template;    /* recorded */
    const char *checkpoint_path;  /* NULL: "<out>.ckpt" */
    int resume;                   /* 1: reuse a matching checkpoint */
} moa_calib_build_params;
moa_calib_build_params moa_calib_build_default_params(void);

/* Progress: done/total in samples produced by this run (a resumed build logs how many came
 * from the checkpoint and counts only the rest), extra = tokens (prompt + response) of this
 * run, for a tokens/s rate. */
moa_status moa_calib_build(const moa_calib_build_params *p, const moa_calib_tokenizer *tok,
                           moa_respond_fn respond, void *respond_data,
                           moa_progress_fn progress, void *progress_data,
                           const char *out_path);

/* The canonical JSON of the build parameters, exactly as moa_calib_build records it in the
 * file's build_params (malloc'ed; NULL when out of memory): a file was built with these
 * settings iff its build_params equals this text. */
char *moa_calib_build_params_json(const moa_calib_build_params *p);

/* The per-sample generator seed (splitmix64 of seed, length, index folded to 32 bits). Pure. */
uint32_t moa_calib_sample_seed(uint64_t seed, int length, int index);

/* ==== the real model side (model-io.c; built only with model/) ==============================
 * Token counting and prompt encoding with the model's chat template, detokenisation, and
 * greedy answers from the dense engine (moa/model.h). Used by `moa calib`, `moa eval`,
 * `moa compress` and the model tests.
 *
 * A moa_model_io borrows its tokenizer (only read) and context (reset and run by respond):
 * like the context, it belongs to one thread at a time. Returned ids and texts are malloc'd
 * and the caller's (free()). */
struct moa_tokenizer;      /* moa/model.h */
struct moa_ctx;

typedef struct {
    const struct moa_tokenizer *tok;
    struct moa_ctx *ctx;   /* the engine context answering prompts (reset per prompt) */
    int chat;              /* 1: wrap user turns with the chat template (default) */
} moa_model_io;

/* Fills the tokenizer callbacks of calib-data with io as their data (io is borrowed: it
 * must outlive their use). */
moa_calib_tokenizer moa_model_io_tokenizer(moa_model_io *io);

/* Tokens the model sees for a user turn (chat template + generation prompt); *ids is
 * malloc'd, the caller's. */
moa_status moa_model_io_encode(const moa_model_io *io, const char *text, size_t len,
                               int32_t **ids, int32_t *n_ids);

/* moa_respond_fn: greedy answer of up to max_new tokens (stops at end of turn); io is a
 * moa_model_io *. */
moa_status moa_model_io_respond(void *io, const int32_t *prompt, int n_prompt, int max_new,
                                int32_t **out, int *n_out);

#ifdef __cplusplus
}
#endif
#endif /* MOA_CALIB_H */
