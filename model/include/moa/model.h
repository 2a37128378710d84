/* moa/model.h - the public API of model/: the GGUF reader, a model's weights (Llama-family
 * architectures, described by data), the sampler, the tokenizer and chat template, contexts
 * (run state and the forward pass, on the CPU or a CUDA device) and generation. Other parts
 * and the CLI include this header as "moa/model.h" (the moa_model target exposes
 * model/include); the other headers of model/ are internal to it.
 *
 * Ownership and threading are stated per section and per function. In short: a moa_gguf, a
 * moa_model and a moa_tokenizer are immutable once created and may be shared between
 * threads (free them after every user); a moa_ctx (with its generation) and a moa_sampler
 * belong to one thread at a time. Every call that can fail returns moa_status (negative on
 * error) with the message in moa_last_error() (moa/base.h).
 */
#ifndef MOA_MODEL_H
#define MOA_MODEL_H

#include <stddef.h>
#include <stdint.h>
#include "moa/base.h"
#include "moa/runtime.h"
#include "moa/quant.h"     /* kernels/: moa_ggml_type and block sizes, moa_qpack */
#include "moa/backend.h"   /* kernels/ (plain C): moa_device_kind */

#ifdef __cplusplus
extern "C" {
#endif

struct moa_arch_desc;      /* an architecture's entry (model/arch.h, internal) */

/* ==== GGUF reader (gguf.c) ================================================================ */
/* A validating GGUF (v2, v3) reader: metadata, tensor table, mmapped tensor data.
 *
 * Every count, length and offset in the file is checked before use (no overflow, nothing
 * read past the end of the file). The tensor data stays mmapped read-only; pointers returned
 * by moa_gguf_tensor_data() are valid until moa_gguf_close(). A moa_gguf is immutable after
 * open and may be shared between threads: every accessor below is const and thread-safe, and
 * every pointer it returns (keys, strings, arrays, tensor records and data) is owned by the
 * handle and valid until moa_gguf_close().
 */

typedef enum {
    MOA_GGUF_U8 = 0, MOA_GGUF_I8 = 1, MOA_GGUF_U16 = 2, MOA_GGUF_I16 = 3,
    MOA_GGUF_U32 = 4, MOA_GGUF_I32 = 5, MOA_GGUF_F32 = 6, MOA_GGUF_BOOL = 7,
    MOA_GGUF_STRING = 8, MOA_GGUF_ARRAY = 9, MOA_GGUF_U64 = 10, MOA_GGUF_I64 = 11,
    MOA_GGUF_F64 = 12,
} moa_gguf_vtype;



typedef struct moa_gguf moa_gguf;

typedef struct {
    char name[65];         /* NUL-terminated */
    uint32_t n_dims;
    uint64_t ne[4];        /* ne[0] is the contiguous dimension; unused dims are 1 */
    moa_ggml_type type;
    uint64_t offset;       /* from the data section start */
    uint64_t n_bytes;      /* size of the data in the file */
    uint64_t n_elements;
} moa_gguf_tensor;

/* Open and validate. On error returns a status and moa_last_error() names the file, the
 * byte offset and what was expected. The caller owns *out (moa_gguf_close, or hand it to
 * moa_model_from_gguf). Thread-safe. */
moa_status moa_gguf_open(const char *path, moa_gguf **out);
/* Same, over a caller-owned memory image (used by the fuzzer and tests; not copied, must
 * outlive the handle). */
moa_status moa_gguf_open_memory(const void *data, size_t size, const char *name, moa_gguf **out);
/* Accepts NULL. Unmaps the file: every pointer obtained from g becomes invalid. */
void moa_gguf_close(moa_gguf *g);

uint32_t moa_gguf_version(const moa_gguf *g);
const char *moa_gguf_path(const moa_gguf *g);
uint64_t moa_gguf_file_size(const moa_gguf *g);
uint32_t moa_gguf_alignment(const moa_gguf *g);

/* ---- metadata (accessors: const, thread-safe; strings owned by g) ---- */
int64_t moa_gguf_n_kv(const moa_gguf *g);
const char *moa_gguf_kv_key(const moa_gguf *g, int64_t i);
moa_gguf_vtype moa_gguf_kv_type(const moa_gguf *g, int64_t i);
int64_t moa_gguf_find_key(const moa_gguf *g, const char *key);  /* -1 if absent */

/* Typed getters: MOA_OK, or MOA_ERR_FORMAT if the key is absent or of another type.
 * Integer getters accept any integer type whose value fits. */
moa_status moa_gguf_get_u32(const moa_gguf *g, const char *key, uint32_t *out);
moa_status moa_gguf_get_i64(const moa_gguf *g, const char *key, int64_t *out);
moa_status moa_gguf_get_f32(const moa_gguf *g, const char *key, float *out);
moa_status moa_gguf_get_bool(const moa_gguf *g, const char *key, int *out);
/* String: NUL-terminated copy owned by g. */
moa_status moa_gguf_get_str(const moa_gguf *g, const char *key, const char **out, uint64_t *len);
/* Arrays: element type and count; string arrays via moa_gguf_get_arr_str. */
moa_status moa_gguf_get_arr_info(const moa_gguf *g, const char *key, moa_gguf_vtype *etype,
                                 uint64_t *count);
/* Pointer to the packed elements of a numeric array (little-endian, as in the file). */
moa_status moa_gguf_get_arr_data(const moa_gguf *g, const char *key, const void **data);
/* i-th element of a string array: NUL-terminated copy owned by g. */
moa_status moa_gguf_get_arr_str(const moa_gguf *g, const char *key, uint64_t i,
                                const char **out, uint64_t *len);
/* Value of any scalar key formatted for display (arrays: "[type x count]") into the caller's
 * buf of n bytes. */
void moa_gguf_kv_format(const moa_gguf *g, int64_t i, char *buf, size_t n);

/* ---- tensors (records and data owned by g, valid until moa_gguf_close) ---- */
int64_t moa_gguf_n_tensors(const moa_gguf *g);
const moa_gguf_tensor *moa_gguf_tensor_at(const moa_gguf *g, int64_t i);
const moa_gguf_tensor *moa_gguf_find_tensor(const moa_gguf *g, const char *name); /* NULL */
const void *moa_gguf_tensor_data(const moa_gguf *g, const moa_gguf_tensor *t);

/* ==== model weights (llama.c) ============================================================= */
/* Weights of the Llama-family architectures (llama, qwen2: model/arch.c) from GGUF,
 * and their matrix products (the forward pass is the contexts' section below).
 *
 * A moa_model holds immutable weights (mmapped quantised tensors, plus f32 copies and int8
 * packs of the matrices for batched products) and may be shared between threads: every
 * context, profiler and engine only reads it (the CUDA weight copies a model gains on first
 * use are created under a process-wide lock, model/weights-cuda.h). They borrow it: free the
 * model after all of them. A moa_ctx (below) holds the run state of its sequences and belongs
 * to one thread at a time.
 */

typedef struct {
    char arch[32];
    int32_t n_layer;
    int32_t n_embd;
    int32_t n_head;
    int32_t n_head_kv;
    int32_t head_dim;
    int32_t n_ff;
    int32_t n_vocab;
    int32_t n_ctx_train;   /* llama.context_length */
    int32_t rope_dim;      /* rotated dims per head (== head_dim for llama) */
    float rope_base;
    float rms_eps;
    moa_rope_pairing rope_pairing;   /* from the architecture (model/arch.h) */
    const struct moa_arch_desc *desc;   /* the architecture's entry (static; model/arch.h) */
} moa_llama_hparams;

/* moa_weight (a matrix of the model: quantised rows, optional f32 copy, int8 pack, bias) and
 * its products moa_weight_matmul / _multi / moa_weight_add_bias: moa/quant.h. */

typedef struct {
    float *attn_norm;      /* [n_embd] */
    float *ffn_norm;       /* [n_embd] */
    moa_weight wq;         /* [n_head*hd][n_embd] */
    moa_weight wk, wv;     /* [n_kv*hd][n_embd] */
    moa_weight wo;         /* [n_embd][n_head*hd] */
    moa_weight w_gate, w_up;  /* [n_ff][n_embd] */
    moa_weight w_down;     /* [n_embd][n_ff] */
} moa_llama_layer;

typedef struct moa_model {
    moa_gguf *gguf;
    moa_llama_hparams hp;
    moa_weight tok_embd;   /* [n_vocab][n_embd] */
    moa_weight output;     /* [n_vocab][n_embd]; aliases tok_embd when tied */
    int tied;
    float *output_norm;    /* [n_embd] */
    moa_llama_layer *layers;
    char sha256[65];       /* of the GGUF file ("" unless computed) */
    size_t f32_bytes;      /* bytes of dequantised copies */
    struct moa_model_cuda *cuda;   /* device copies of the weights, shared by the model's CUDA
                                      contexts and profilers (weights-cuda.h); NULL on the CPU */
} moa_model;

typedef struct {
    int f32_weights;       /* 1: keep f32 copies for batched products, 0: never, -1: auto
                              (default: when some matrix's batched product would run through
                              sgemm on this CPU, moa_matmul_q_batch_path, and they fit in
                              max_f32_bytes; not when every type has the int8 path) */
    size_t max_f32_bytes;  /* auto limit (default 4 GiB) */
    int compute_sha256;    /* hash the file at load (default 1) */
    int int8_pack;         /* 1 (default): repack the block matrices and the head for the int8
                              kernels where the CPU has them (moa_qpack: about the weights'
                              size again in memory), 0: never */
} moa_model_params;

/* Defaults as documented above. Pure. */
moa_model_params moa_model_default_params(void);
/* Load a GGUF model of a supported architecture (model/arch.c; others are refused with the list):
 * checks every tensor's presence, type and shape, and the hyperparameters; errors name the
 * key or tensor and what was expected. The caller owns *out (moa_model_free); the file stays
 * mmapped until then. p NULL = defaults. Thread-safe (OpenMP inside for the f32 copies). */
moa_status moa_model_load(const char *path, const moa_model_params *p, moa_model **out);
/* Same, over an opened GGUF (the model takes ownership of g on success and on failure). */
moa_status moa_model_from_gguf(moa_gguf *g, const moa_model_params *p, moa_model **out);
/* Accepts NULL. Frees the weights, their device copies and the GGUF: only once every
 * context, profiler and engine of m is freed, and not concurrently with any call on m. */
void moa_model_free(moa_model *m);


/* ==== sampler (sampler.c) ================================================================= */
/* Next-token selection: greedy, temperature, top-k, top-p, with a seeded RNG.
 *
 * A sampler owns its RNG state and candidate buffers: it belongs to one thread at a time
 * (sampling advances the RNG); distinct samplers may be used from distinct threads at once.
 * Logits are caller-owned and only read. */

typedef struct {
    float temperature;   /* <= 0: greedy (default 0) */
    int32_t top_k;       /* 0: off */
    float top_p;         /* 1: off */
    uint64_t seed;
} moa_sampler_params;

typedef struct moa_sampler moa_sampler;

moa_sampler_params moa_sampler_default_params(void);   /* greedy, seed 42 */
/* p NULL = defaults (copied). MOA_ERR_INVALID_ARG for n_vocab <= 0, top_p outside (0, 1] or
 * top_k < 0. The caller owns *out (moa_sampler_free). Thread-safe. */
moa_status moa_sampler_create(const moa_sampler_params *p, int32_t n_vocab, moa_sampler **out);
void moa_sampler_free(moa_sampler *s);   /* accepts NULL */
/* Picks a token from logits[n_vocab] (logits are not modified); advances s's RNG unless
 * greedy. */
int32_t moa_sampler_sample(moa_sampler *s, const float *logits);
/* Index of the largest logit (lowest index on ties). Pure. */
int32_t moa_argmax(const float *x, int32_t n);
/* Uniform double in [0, 1) from a xoshiro256** state seeded by splitmix64; advances s. */
double moa_sampler_uniform(moa_sampler *s);

/* ==== tokenizer and chat template (tokenizer.c) =========================================== */
/* Byte-level BPE tokenizer (GPT-2 family, as in GGUF "gpt2" vocabularies),
 * special tokens, streaming decode, and the model's chat template (ChatML family).
 *
 * Encoding: text -> (invalid UTF-8 replaced by U+FFFD) -> special tokens split out
 * (leftmost, longest) -> pre-tokenizer pieces -> BPE merges by rank on each piece's bytes
 * -> token ids. Pre-tokenizers: "smollm" (every \p{N} codepoint alone, then the GPT-2
 * pattern), "gpt2" (the GPT-2 pattern only) and "qwen2" (Qwen2's cl100k-like pattern with
 * single digits). See docs/tokenizer.md.
 *
 * A moa_tokenizer is immutable after creation and may be shared between threads; every
 * function below is thread-safe for distinct output arguments. Streaming decode state
 * (moa_detok) belongs to the caller, one per stream.
 */

typedef struct moa_tokenizer moa_tokenizer;

/* Token types as in GGUF tokenizer.ggml.token_type (llama.cpp's numbering). */
typedef enum {
    MOA_TOKEN_NORMAL = 1,
    MOA_TOKEN_UNKNOWN = 2,
    MOA_TOKEN_CONTROL = 3,
    MOA_TOKEN_USER_DEFINED = 4,
    MOA_TOKEN_UNUSED = 5,
    MOA_TOKEN_BYTE = 6,
} moa_token_type;

/* Everything a tokenizer is made of. Strings are copied by moa_tokenizer_create; the
 * caller keeps ownership of the descriptor. */
typedef struct {
    int32_t n_vocab;
    const char *const *tokens;     /* [n_vocab] vocab strings in the GPT-2 byte-to-unicode
                                    * form (space = "Ġ"); control and user-defined tokens
                                    * are literal text */
    const int32_t *token_types;    /* [n_vocab] moa_token_type, or NULL: all normal, and the
                                    * bos/eos/eot/unk/pad tokens count as control */
    int32_t n_merges;
    const char *const *merges;     /* [n_merges] "left right", rank = index */
    int32_t bos_id, eos_id, eot_id, unk_id, pad_id;   /* -1: none */
    int add_bos;                   /* encode prepends bos_id */
    const char *pre;               /* pre-tokenizer: "smollm", "gpt2", "qwen2" or a name
                                    * llama.cpp maps to one of them (NULL = "gpt2") */
    const char *chat_template;     /* Jinja text from the model, or NULL */
} moa_tokenizer_desc;

/* A descriptor with every id -1, no vocab, pre "gpt2". */
moa_tokenizer_desc moa_tokenizer_desc_default(void);

/* Builds the tokenizer. MOA_ERR_UNSUPPORTED for an unknown pre-tokenizer (the message names
 * it), MOA_ERR_INVALID_ARG for a malformed descriptor (ids out of range, a merge without a
 * space), MOA_ERR_NOMEM. The caller owns *out (moa_tokenizer_free); d is only read during the
 * call. */
moa_status moa_tokenizer_create(const moa_tokenizer_desc *d, moa_tokenizer **out);

/* Reads tokenizer.ggml.{model,pre,tokens,token_type,merges,bos_token_id,eos_token_id,
 * eot_token_id,unknown_token_id,padding_token_id,add_bos_token} and tokenizer.chat_template.
 * tokenizer.ggml.model must be "gpt2" (MOA_ERR_UNSUPPORTED otherwise); a missing pre means
 * "gpt2"; add_bos_token defaults to false. The result does not reference g (it may outlive
 * it); the caller owns *out (moa_tokenizer_free). */
moa_status moa_tokenizer_from_gguf(const moa_gguf *g, moa_tokenizer **out);

void moa_tokenizer_free(moa_tokenizer *t);   /* NULL is fine; not while another call uses t */

/* Encodes text[0..len) (need not be NUL-terminated). *ids is malloc'd (free() it; non-NULL
 * even when *n_ids is 0). add_bos is honoured. parse_special: control (and unknown-type)
 * tokens written as literal text, e.g. "<|im_end|>", become their ids; without it they
 * are ordinary text. User-defined tokens are always matched (as llama.cpp does). Invalid
 * UTF-8 is encoded as U+FFFD; a byte with neither a single-byte nor a <0xXX> token is
 * dropped (as HF tokenizers and llama.cpp do). */
moa_status moa_tokenizer_encode(const moa_tokenizer *t, const char *text, size_t len,
                                int parse_special, int32_t **ids, int32_t *n_ids);

/* Pre-tokenization only (for tests and `moa tokenize`-style tools): calls fn once per piece
 * in order. A special token arrives as its text with special_id >= 0; an ordinary piece has
 * special_id = -1. Pieces point into a cleaned copy of the text (invalid UTF-8 replaced),
 * valid only during the call; fn runs on the calling thread. */
typedef void (*moa_piece_fn)(void *data, const char *piece, size_t len, int32_t special_id);
moa_status moa_tokenizer_pieces(const moa_tokenizer *t, const char *text, size_t len,
                                int parse_special, moa_piece_fn fn, void *data);

/* ---- decoding ---- */

/* Streaming decode state; zero-initialise one per stream: moa_detok st = {0}.
 * special = 0 (default): control/unknown tokens decode to nothing. special = 1: they
 * decode to their literal text ("<|im_end|>"). */
typedef struct {
    unsigned char pending[8];   /* bytes of an incomplete UTF-8 sequence (at most 3) */
    int n_pending;
    int special;
} moa_detok;

/* Appends the text of token id to the stream and writes the UTF-8 that is now complete to
 * buf. Bytes of a sequence that may still be completed by the next token are held in st;
 * ill-formed bytes become U+FFFD, so the output is always valid UTF-8. Returns the number
 * of bytes of output (snprintf-like): if it is >= cap nothing was consumed (st unchanged)
 * and the call should be repeated with a larger buffer; otherwise buf[ret] = '\0'.
 * A buffer of moa_tokenizer_max_piece_bytes(t) bytes always suffices. An id out of range
 * decodes to nothing. */
size_t moa_tokenizer_decode_token(const moa_tokenizer *t, moa_detok *st, int32_t id,
                                  char *buf, size_t cap);
/* End of stream: a held incomplete sequence becomes U+FFFD. Same return convention;
 * cap >= 4 always suffices. */
size_t moa_tokenizer_decode_flush(moa_detok *st, char *buf, size_t cap);
size_t moa_tokenizer_max_piece_bytes(const moa_tokenizer *t);

/* Whole sequence to a malloc'd NUL-terminated string (valid UTF-8). special as in
 * moa_detok. MOA_ERR_INVALID_ARG if an id is out of range. With special = 1, decoding the
 * output of encode(text, parse_special = 1) gives back text when text is valid UTF-8. The
 * caller frees *out with free(). */
moa_status moa_tokenizer_decode(const moa_tokenizer *t, const int32_t *ids, int32_t n,
                                int special, char **out);

/* ---- vocabulary ---- */
int32_t moa_tokenizer_n_vocab(const moa_tokenizer *t);
/* Vocab string as stored ("Ġthe"), owned by t; NULL if id is out of range. */
const char *moa_tokenizer_token(const moa_tokenizer *t, int32_t id);
/* Decoded bytes of a token (" the"; control tokens: their text), owned by t; NULL if out of
 * range. */
const char *moa_tokenizer_token_bytes(const moa_tokenizer *t, int32_t id, size_t *len);
/* Type of a token; MOA_TOKEN_UNUSED if id is out of range. */
moa_token_type moa_tokenizer_token_type(const moa_tokenizer *t, int32_t id);
/* Id of the vocab string text (as stored), or -1. O(n_vocab). */
int32_t moa_tokenizer_find_token(const moa_tokenizer *t, const char *text);
int32_t moa_tokenizer_bos(const moa_tokenizer *t);   /* -1 if none */
int32_t moa_tokenizer_eos(const moa_tokenizer *t);
/* 1 if encode prepends BOS (GGUF tokenizer.ggml.add_bos_token). */
int moa_tokenizer_add_bos(const moa_tokenizer *t);
/* End of generation, as llama.cpp decides it: eos, eot, and the special tokens named
 * "<|im_end|>", "<|endoftext|>", "<|eot_id|>", "<|end|>", "<end_of_turn>", ... and the FIM
 * pad / repo / file-separator tokens ("<|fim_pad|>", "<|repo_name|>", "<|file_sep|>",
 * "<reponame>", ...) when present. See docs/tokenizer.md for the list. */
int moa_tokenizer_is_eog(const moa_tokenizer *t, int32_t id);
/* The pre-tokenizer: "smollm", "gpt2" or "qwen2" (also for the names that mean qwen2). */
const char *moa_tokenizer_pre(const moa_tokenizer *t);

/* ---- chat ---- */
typedef struct {
    const char *role;      /* "system", "user", "assistant", ... */
    const char *content;
} moa_chat_msg;

/* Renders a conversation with the model's chat template. Only the ChatML family is
 * recognised (a template containing "<|im_start|>"), rendered as
 *   [default system turn]  <|im_start|>{role}\n{content}<|im_end|>\n ...
 *   [<|im_start|>assistant\n  if add_generation_prompt]
 * where the default system turn is the one the template inserts when the first message is
 * not a system message (SmolLM2: "You are a helpful AI assistant named SmolLM, trained by
 * Hugging Face"). Contents are inserted verbatim. *out is malloc'd (free()).
 * MOA_ERR_UNSUPPORTED when the model has no template or a template of another family. */
moa_status moa_chat_render(const moa_tokenizer *t, const moa_chat_msg *msgs, int n,
                           int add_generation_prompt, char **out);

/* ==== contexts: run state and forward pass (forward.c, forward-cuda.c) ==================== */
/* The run state of a model's sequences: activations and KV cache, and the forward
 * pass.
 *
 * A context runs on the CPU (forward.c) or on a CUDA device (forward-cuda.c, built with the
 * CUDA backend): same calls, same semantics (plans, n_seq, logits modes, chunking by n_batch,
 * errors); logits always land in the caller's host buffers. On CUDA the context holds its own
 * device context (stream, cuBLAS handle), the device KV cache (kernels/cuda) and device
 * scratch, and shares the model's device copy of the weights (dequantised once to f16 or
 * bf16; model/weights-cuda.h) with the model's other CUDA contexts; see docs/gpu.md.
 *
 * Ownership and threading are stated per function. A context borrows its model (which must
 * outlive it) and owns everything else it uses. A context belongs to one thread at a time:
 * calls on one context must not overlap, its getters included. Distinct contexts share
 * nothing but the read-only model, so they may run in distinct threads, also on one model
 * (their OpenBLAS calls then overlap; two threads on one model gave the logits of a
 * sequential run in a one-off check, the tests do not cover it). The forward pass uses
 * OpenMP inside (OMP_NUM_THREADS / omp_set_num_threads). On CUDA, with several GPUs, call a
 * context from a thread whose current device is its device (the creating thread, or after
 * cudaSetDevice: moa/cuda.h). */

typedef struct {
    int32_t n_ctx;     /* planned context in tokens (0: the model's training context); a
                          plan's windows are evaluated at this length */
    int32_t n_batch;   /* max tokens per forward call; longer inputs are chunked (default 512) */
    int32_t n_seq;     /* sequences sharing the context (batched decode; default 1) */
    const moa_plan *plan;    /* sparse-attention plan (NULL: dense); borrowed, read during
                                create only */
    moa_pos_mode pos_mode;   /* MOA_POS_ABSOLUTE (default) or MOA_POS_STREAMING */
    moa_device_kind device;  /* MOA_DEVICE_CPU, MOA_DEVICE_CUDA (MOA_ERR_DEVICE without a
                                device or in a build without the CUDA backend) or
                                MOA_DEVICE_AUTO (CUDA when a device exists); default: the
                                process default, CPU unless moa_ctx_set_default_device */
    int32_t device_index;    /* CUDA device ordinal (default 0) */
    int32_t device_bf16;     /* CUDA: weights and GEMM inputs in bf16 instead of f16 (wider
                                range, 3 fewer mantissa bits; default 0) */
    moa_kv_type kv_type;     /* storage of cached keys and values (moa/runtime.h; default
                                MOA_KV_F16, as llama.cpp), on either device: the CUDA cache
                                keeps the CPU cache's bytes */
    int32_t no_key_smooth;   /* 1: do not smooth keys for a q8_0 key cache (model/key-smooth.h;
                                default 0: smoothed where the model's key biases need it) */
} moa_ctx_params;

typedef enum {
    MOA_LOGITS_NONE = 0,   /* no logits (prefill of a prefix) */
    MOA_LOGITS_LAST = 1,   /* logits of the last token: [n_vocab] */
    MOA_LOGITS_ALL  = 2,   /* logits of every token: [n][n_vocab] */
} moa_logits_mode;

typedef struct moa_ctx moa_ctx;

/* Defaults: n_ctx 0 (the model's), n_batch 512, n_seq 1, absolute positions, f16 KV, no
 * plan; .device is the process default below, read without synchronisation. */
moa_ctx_params moa_ctx_default_params(void);
/* The device moa_ctx_default_params() puts in .device (initially MOA_DEVICE_CPU). Process-wide.
 * For programs whose code creates contexts in several places (the CLI's --device): call it
 * once from the main thread before any context is created; not thread-safe against
 * concurrent moa_ctx_default_params (or moa_profiler_default_params) calls. */
void moa_ctx_set_default_device(moa_device_kind device);
/* 1 if contexts can run on CUDA here: the CUDA backend is built in and a device is present.
 * Thread-safe. */
int moa_ctx_cuda_available(void);
/* The device a context runs on (MOA_DEVICE_CPU or MOA_DEVICE_CUDA). */
moa_device_kind moa_ctx_device(const moa_ctx *c);
/* Create a context for model m. The caller owns *out (free with moa_ctx_free); m is borrowed
 * and must outlive the context; *p is copied and p->plan only read during the call (checked
 * against m: MOA_ERR_MISMATCH). p NULL = defaults. Thread-safe, also for several contexts of
 * one model at once (a CUDA context uploads the model's weights if no user has, under a
 * process-wide lock, and makes its device current on the calling thread). */
moa_status moa_ctx_create(const moa_model *m, const moa_ctx_params *p, moa_ctx **out);
/* Accepts NULL. Frees what the context owns (not the model, nor the shared device weights). */
void moa_ctx_free(moa_ctx *c);
/* Forget every sequence (positions back to 0); memory is kept. On CUDA a failure is only
 * logged. */
void moa_ctx_reset(moa_ctx *c);
int32_t moa_ctx_n_past(const moa_ctx *c);     /* tokens held by sequence 0 */
int32_t moa_ctx_n_ctx(const moa_ctx *c);      /* the planned context (after defaults) */
const moa_model *moa_ctx_model(const moa_ctx *c);   /* the model (borrowed by c) */

/* Run tokens[0..n) of sequence 0 at positions n_past.. and append them to the cache, in
 * chunks of n_batch. Logits per `mode` are written to `logits` (caller-owned; [n_vocab] or
 * [n][n_vocab]); may be NULL for NONE. tokens and logits are used only during the call.
 * MOA_ERR_RANGE if a dense cache would overflow; MOA_ERR_INVALID_ARG for a bad token id. */
moa_status moa_ctx_eval(moa_ctx *c, const int32_t *tokens, int32_t n, moa_logits_mode mode,
                        float *logits);
/* Same for sequence `seq` (0 <= seq < n_seq). */
moa_status moa_ctx_eval_seq(moa_ctx *c, int seq, const int32_t *tokens, int32_t n,
                            moa_logits_mode mode, float *logits);
/* Sequence dst becomes a copy of sequence src (moa_cache_seq_copy: its K/V rows, linear states
 * and positions): a prompt prefilled once serves several sequences, each with its own bytes.
 * Either device (on CUDA the copy stays on the device); complete on return.
 * MOA_ERR_INVALID_ARG for src == dst or a sequence out of range. */
moa_status moa_ctx_seq_copy(moa_ctx *c, int src, int dst);
/* One decode step for n distinct sequences seqs[0..n) (one token each, n <= n_batch);
 * logits [n][n_vocab] (NULL: none). seqs, tokens and logits are caller-owned, used only
 * during the call. */
moa_status moa_ctx_decode_batch(moa_ctx *c, const int *seqs, const int32_t *tokens, int32_t n,
                                float *logits);
/* Tokens held by sequence seq. */
int32_t moa_ctx_seq_pos(const moa_ctx *c, int seq);
/* Bytes of the K/V (and linear-state) storage of the context's cache. */
size_t moa_ctx_kv_bytes(const moa_ctx *c);

/* Time spent in attention by the last moa_ctx_eval calls (seconds, accumulated; reset to 0
 * by passing reset=1, which changes c). For benchmarks. CPU only: on CUDA the kernels run
 * asynchronously and timing them would need a synchronisation per layer, so this stays 0
 * there. */
double moa_ctx_attn_seconds(moa_ctx *c, int reset);

/* ==== generation (generate.c) ============================================================= */
/* Prompt -> tokens -> prefill -> sampled continuation, with streaming output.
 *
 * Ownership and threading: moa_generate borrows a context (used by it alone for the call, as
 * the contexts' section requires) and a tokenizer (only read: it may be shared with other
 * threads); the sampler is its own. Distinct contexts may generate in distinct threads. */

typedef struct {
    int32_t n_predict;          /* max new tokens (default 128) */
    moa_sampler_params sampler; /* default greedy */
    int stop_at_eog;            /* stop at an end-of-generation token (default 1) */
} moa_gen_params;

typedef struct {
    int32_t n_prompt, n_generated;
    double prefill_seconds, decode_seconds;
    int stopped_at_eog;
    int32_t eog_id;             /* the end-of-generation token that stopped it, or -1 */
    int stopped_ctx_full;       /* a dense cache reached its capacity */
} moa_gen_stats;

/* Called for each new token with its decoded text (complete UTF-8 only; may be empty; valid
 * only during the call), on the thread that called moa_generate; at the end, with id -1, for
 * the text of a trailing incomplete UTF-8 sequence (as U+FFFD). Return nonzero to stop
 * generation. */
typedef int (*moa_token_fn)(void *data, int32_t id, const char *text, size_t len);

/* n_predict 128, greedy sampler, stop at EOG. Pure. */
moa_gen_params moa_gen_default_params(void);

/* Evaluates prompt[0..n_prompt) after whatever the context already holds, then generates
 * with a sampler of p->sampler (p NULL = defaults). tok may be NULL (no text, no EOG stop).
 * out_ids (optional) receives the generated ids (malloc'd, the caller frees them with free();
 * excluding a final EOG token; NULL on error). *stats (optional) is filled, also when an
 * error stops generation (not for an empty prompt). */
moa_status moa_generate(moa_ctx *ctx, const moa_tokenizer *tok, const int32_t *prompt,
                        int32_t n_prompt, const moa_gen_params *p, moa_token_fn fn, void *data,
                        int32_t **out_ids, int32_t *n_out, moa_gen_stats *stats);

#ifdef __cplusplus
}
#endif
#endif
