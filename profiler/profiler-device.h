/* profiler-device.h - internal to profiler/: the profiler's device backends: a table of what a
 * profiler delegates when its samples run on a device other than the CPU (profiler/backward.c
 * calls only these; no device #ifdef in profiler/). The CUDA build links backward-cuda.c, whose
 * table moa_profiler_device_get returns for MOA_DEVICE_CUDA; a build without a device backend
 * links profiler-device-none.c (none). Threading as moa_profiler: one state per profiler, one
 * thread at a time; the table is immutable. */
#ifndef MOA_PROFILER_DEVICE_H
#define MOA_PROFILER_DEVICE_H

#include "moa/profiler.h"

typedef struct moa_profiler_dev moa_profiler_dev;   /* one profiler's device state */

typedef struct {
    const char *name;
    /* State for samples of up to n_max tokens of model m with the settings p; the caller
     * frees with free_state. */
    moa_status (*create)(const moa_model *m, int64_t n_max, const moa_profiler_params *p,
                         moa_profiler_dev **out);
    void (*free_state)(moa_profiler_dev *d);   /* accepts NULL */
    /* One sample (backward.c's sample contract: embeddings x0 of n tokens, response rows
     * [rb, re), histograms accumulated into hist, loss, optional embedding gradient). */
    moa_status (*sample)(moa_profiler_dev *d, const float *x0, const int32_t *tokens, int64_t n,
                         int64_t rb, int64_t re, moa_profiler_hist *hist, double *loss, float *d_embed);
} moa_profiler_device_ops;

/* The backend of `kind`, or NULL when this build has none (always NULL for MOA_DEVICE_CPU). */
const moa_profiler_device_ops *moa_profiler_device_get(moa_device_kind kind);

#endif
