/* attn-train-avx512.c - the profiler attention tile steps compiled with AVX-512 (body in
 * attn-train-tile.inc); selected at run time by attn-train.c. */
#include "attn-train-impl.h"

#define AT_SUFFIX(name) name##_avx512
#include "attn-train-tile.inc"
