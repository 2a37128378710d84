/* cache-device-none.c - the cache device table of a build without a device backend (linked
 * instead of cache-cuda.c): no device other than the CPU holds caches (cache-device.h). */
#include "cache-device.h"

const moa_cache_device_ops *moa_rt_cache_device(moa_cache_device device) {
    (void)device;
    return NULL;
}
