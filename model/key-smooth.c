/* key-smooth.c - power-of-two key smoothing for 8-bit key caches (key-smooth.h). */
#include "key-smooth.h"
#include "moa/common.h"
#include "moa/ops.h"   /* moa_key_smooth_rows */

#include <math.h>
#include <stdlib.h>

/* Partner of dimension d of a head under the model's RoPE pairing (d itself when unrotated). */
static int pair_of(const moa_llama_hparams *hp, int d) {
    if (d >= hp->rope_dim) return d;
    if (hp->rope_pairing == MOA_ROPE_NEOX) {
        const int half = hp->rope_dim / 2;
        return d < half ? d + half : d - half;
    }
    return d ^ 1;
}

moa_status moa_key_smooth_scales(const moa_model *m, float **out) {
    *out = NULL;
    const moa_llama_hparams *hp = &m->hp;
    const int hd = hp->head_dim, nkv = hp->n_head_kv;
    const size_t per_layer = (size_t)nkv * hd;
    float *s = NULL;
    for (int l = 0; l < hp->n_layer; l++) {
        const float *b = m->layers[l].wk.bias;
        if (!b) continue;
        for (int g = 0; g < nkv; g++)
            for (int d = 0; d < hd; d++) {
                const int e = pair_of(hp, d);
                const double x = b[g * hd + d], y = e != d ? b[g * hd + e] : 0.0;
                const double r = sqrt(x * x + y * y) / MOA_KEY_SMOOTH_T;
                if (r < 2.0) continue;
                int ex = (int)floor(log2(r));
                if (ex > 10) ex = 10;
                if (!s) {
                    s = malloc(sizeof(float) * per_layer * (size_t)hp->n_layer);
                    if (!s) return moa_err(MOA_ERR_NOMEM, "out of memory for key smoothing scales");
                    for (size_t i = 0; i < per_layer * (size_t)hp->n_layer; i++) s[i] = 1.0f;
                }
                s[(size_t)l * per_layer + (size_t)g * hd + d] = ldexpf(1.0f, ex);
            }
    }
    *out = s;
    return MOA_OK;
}

void moa_key_smooth_apply(const moa_llama_hparams *hp, const float *s, float *q, float *k, int64_t n) {
    moa_key_smooth_rows(q, k, s, n, hp->n_head, hp->n_head_kv, hp->head_dim);   /* moa/ops.h */
}
