/* attn-train-avx2.c - the profiler attention tile steps compiled with AVX2+FMA (body in
 * attn-train-tile.inc); selected at run time by attn-train.c. */
#include "attn-train-impl.h"

#define AT_SUFFIX(name) name##_avx2
#include "attn-train-tile.inc"
