/* tokenizer.h - byte-level BPE tokenizer (GPT-2 family, as in GGUF "gpt2" vocabularies),
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
#ifndef MOA_TOKENIZER_H
#define MOA_TOKENIZER_H

#include <stddef.h>
#include <stdint.h>
#include "moa/base.h"
#include "gguf.h"

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

#endif /* MOA_TOKENIZER_H */
