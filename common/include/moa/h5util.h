/* moa/h5util.h - public header of moa_h5 (common/; with moa/h5guard.h and
 * moa/profile-file.h, one header per source file): small HDF5 helpers: scalar attributes
 * (string, int64, float64) and whole datasets, with errors that name the attribute or dataset
 * and what was expected. Ownership: buffers returned are the caller's (free), as each
 * function says; HDF5 handles passed in stay the caller's.
 *
 * Call moa_h5_init() once from the main thread before any other HDF5 use (it turns off
 * HDF5's automatic error stack printing; libraries never print). The helpers themselves are
 * as thread-safe as the HDF5 build (the Debian build is not thread-safe: use HDF5 from one
 * thread at a time).
 */
#ifndef MOA_H5UTIL_H
#define MOA_H5UTIL_H

#include <stddef.h>
#include <stdint.h>
#include <hdf5.h>
#include "moa/base.h"

/* Once, from the main thread: disable HDF5's automatic error printing. Idempotent. */
void moa_h5_init(void);

/* Scalar attributes on a file, group or dataset. Writing replaces an existing attribute.
 * Strings are stored as fixed-length, NUL-terminated, ASCII strings. */
moa_status moa_h5_attr_write_str(hid_t obj, const char *name, const char *value);
moa_status moa_h5_attr_write_i64(hid_t obj, const char *name, int64_t v);
moa_status moa_h5_attr_write_f64(hid_t obj, const char *name, double v);

/* Readers fail (MOA_ERR_FORMAT) if the attribute is absent, not scalar, of the wrong class,
 * or (strings) longer than cap-1 bytes. Integer attributes of any integer width are accepted;
 * float attributes of any float width; str accepts fixed- and variable-length strings. */
moa_status moa_h5_attr_read_str(hid_t obj, const char *name, char *buf, size_t cap);
moa_status moa_h5_attr_read_i64(hid_t obj, const char *name, int64_t *v);
moa_status moa_h5_attr_read_f64(hid_t obj, const char *name, double *v);

/* Write a whole dataset of `rank` dims (rank 0 = scalar) from `data` in `mem_type`
 * (e.g. H5T_NATIVE_DOUBLE; stored with the same type). Fails if it already exists. */
moa_status moa_h5_write_dataset(hid_t loc, const char *name, hid_t mem_type, int rank,
                                const hsize_t *dims, const void *data);

/* Read a whole dataset converted to `mem_type`. The stored rank must equal `rank`; if
 * expect_dims is non-NULL every dim must match. dims_out (may be NULL) receives the stored
 * dims. *data_out is malloc'd (caller frees with free()); at least 1 byte is allocated even
 * for empty datasets. The stored type class must match mem_type's class (integer/float). */
moa_status moa_h5_read_dataset(hid_t loc, const char *name, hid_t mem_type, int rank,
                               const hsize_t *expect_dims, hsize_t *dims_out, void **data_out);

#endif /* MOA_H5UTIL_H */
