/* profiler-device-none.c - the profiler's device table of a build without a device backend (linked
 * instead of backward-cuda.c): no device, samples run over the CPU table (profiler-device.h). */
#include "profiler-device.h"

const moa_profiler_device_ops *moa_profiler_device_get(moa_device_kind kind) {
    (void)kind;
    return NULL;
}
