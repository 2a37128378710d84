/* tiny-calib.h - the tiny calibration file of the tests and corpus generators: one 40-token
 * sample (token i = 100 + 7i; prompt 30 tokens, response [30, 38), bucket 64, task "lines",
 * seed 5, expected "12345", dense answer correct with score 1), tokenizer "smollm", no model
 * sha256, empty strings elsewhere. Callers change what their file needs, then write it:
 *
 *   tiny_calib c;
 *   tiny_calib_init(&c);
 *   c.f.tool_version = (char *)"seed";
 *   moa_calib_write(path, &c.f);
 *
 * c.f points into c: initialise it in place, do not copy it. */
#ifndef MOA_TINY_CALIB_H
#define MOA_TINY_CALIB_H

#include <stdint.h>
#include <string.h>

#include "moa/calib.h"

typedef struct {
    moa_calib_file f;     /* f.samples = &s, one sample */
    moa_calib_sample s;   /* s.tokens = tokens */
    int32_t tokens[40];
} tiny_calib;

static inline void tiny_calib_init(tiny_calib *c) {
    memset(c, 0, sizeof *c);
    for (int i = 0; i < 40; i++) c->tokens[i] = 100 + 7 * i;
    moa_calib_sample *s = &c->s;
    s->tokens = c->tokens;
    s->n_tokens = 40;
    s->prompt_len = 30;
    s->response_start = 30;
    s->response_end = 38;
    s->bucket = 64;
    s->task = (char *)"lines";
    s->seed = 5;
    s->expected = (char *)"12345";
    s->params = (char *)"{}";
    s->dense_correct = 1;
    s->dense_score = 1;
    c->f.model_sha256 = (char *)"";
    c->f.tokenizer = (char *)"smollm";
    c->f.chat_template = (char *)"";
    c->f.tool_version = (char *)"";
    c->f.build_params = (char *)"{}";
    c->f.n_samples = 1;
    c->f.samples = s;
}

#endif
