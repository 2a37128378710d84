/* device-engine-none.c - the device engine table of a build without a device backend (linked
 * instead of forward-cuda.c and weights-cuda.c): no device has an engine, contexts run on
 * the CPU (device-engine.h). */
#include "device-engine.h"

const moa_device_engine_ops *moa_device_engine_get(moa_device_kind kind) {
    (void)kind;
    return NULL;
}
