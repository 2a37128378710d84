/* h5util.c - HDF5 attribute and dataset helpers (see h5util.h). */
#include "moa/h5util.h"

#include <stdlib.h>
#include <string.h>
#include "moa/common.h"

void moa_h5_init(void) {
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
}

/* Write one scalar attribute of `file_type` from `buf` (mem_type), replacing any old one. */
static moa_status attr_write(hid_t obj, const char *name, hid_t file_type, hid_t mem_type,
                             const void *buf) {
    if (H5Aexists(obj, name) > 0 && H5Adelete(obj, name) < 0)
        return moa_err(MOA_ERR_IO, "HDF5: cannot replace attribute '%s'", name);
    hid_t sp = H5Screate(H5S_SCALAR);
    if (sp < 0) return moa_err(MOA_ERR_IO, "HDF5: cannot create dataspace for attribute '%s'", name);
    hid_t a = H5Acreate2(obj, name, file_type, sp, H5P_DEFAULT, H5P_DEFAULT);
    H5Sclose(sp);
    if (a < 0) return moa_err(MOA_ERR_IO, "HDF5: cannot create attribute '%s'", name);
    herr_t e = H5Awrite(a, mem_type, buf);
    H5Aclose(a);
    if (e < 0) return moa_err(MOA_ERR_IO, "HDF5: cannot write attribute '%s'", name);
    return MOA_OK;
}

moa_status moa_h5_attr_write_str(hid_t obj, const char *name, const char *value) {
    if (!value) return moa_err(MOA_ERR_INVALID_ARG, "attribute '%s': NULL string", name);
    hid_t t = H5Tcopy(H5T_C_S1);
    if (t < 0) return moa_err(MOA_ERR_IO, "HDF5: cannot create string type for '%s'", name);
    size_t n = strlen(value) + 1;
    H5Tset_size(t, n);
    H5Tset_strpad(t, H5T_STR_NULLTERM);
    H5Tset_cset(t, H5T_CSET_ASCII);
    moa_status st = attr_write(obj, name, t, t, value);
    H5Tclose(t);
    return st;
}

moa_status moa_h5_attr_write_i64(hid_t obj, const char *name, int64_t v) {
    return attr_write(obj, name, H5T_STD_I64LE, H5T_NATIVE_INT64, &v);
}

moa_status moa_h5_attr_write_f64(hid_t obj, const char *name, double v) {
    return attr_write(obj, name, H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, &v);
}

/* Open attribute `name`, check it is scalar and of class `cls`. Returns the attribute id
 * and its file type in *type_out (caller closes both), or a negative status. */
static moa_status attr_open(hid_t obj, const char *name, H5T_class_t cls, const char *what,
                            hid_t *attr_out, hid_t *type_out) {
    htri_t ex = H5Aexists(obj, name);
    if (ex <= 0) return moa_err(MOA_ERR_FORMAT, "attribute '%s' is missing (expected %s)", name, what);
    hid_t a = H5Aopen(obj, name, H5P_DEFAULT);
    if (a < 0) return moa_err(MOA_ERR_FORMAT, "attribute '%s' cannot be opened", name);
    hid_t sp = H5Aget_space(a);
    int nd = sp >= 0 ? H5Sget_simple_extent_ndims(sp) : -1;
    hssize_t np = sp >= 0 ? H5Sget_simple_extent_npoints(sp) : -1;
    if (sp >= 0) H5Sclose(sp);
    if (nd < 0 || np != 1 || nd > 1) {
        H5Aclose(a);
        return moa_err(MOA_ERR_FORMAT, "attribute '%s' must be a scalar %s", name, what);
    }
    hid_t t = H5Aget_type(a);
    if (t < 0 || H5Tget_class(t) != cls) {
        if (t >= 0) H5Tclose(t);
        H5Aclose(a);
        return moa_err(MOA_ERR_FORMAT, "attribute '%s' has the wrong type (expected %s)", name, what);
    }
    *attr_out = a;
    *type_out = t;
    return MOA_OK;
}

/* Copy a string read from attribute `name`, len bytes and its terminator, into buf of cap
 * bytes; MOA_ERR_FORMAT if it does not fit. */
static moa_status str_to_buf(const char *name, const char *s, size_t len, char *buf, size_t cap) {
    if (len >= cap)
        return moa_err(MOA_ERR_FORMAT, "attribute '%s' is too long (%zu bytes, at most %zu)", name,
                       len, cap - 1);
    memcpy(buf, s, len + 1);
    return MOA_OK;
}

moa_status moa_h5_attr_read_str(hid_t obj, const char *name, char *buf, size_t cap) {
    if (!buf || cap == 0) return moa_err(MOA_ERR_INVALID_ARG, "attribute '%s': no buffer", name);
    hid_t a = H5I_INVALID_HID, t = H5I_INVALID_HID;
    MOA_TRY(attr_open(obj, name, H5T_STRING, "a string", &a, &t));
    moa_status st = MOA_OK;
    if (H5Tis_variable_str(t) > 0) {
        hid_t mt = H5Tcopy(H5T_C_S1);
        H5Tset_size(mt, H5T_VARIABLE);
        char *s = NULL;
        if (H5Aread(a, mt, &s) < 0 || !s) {
            st = moa_err(MOA_ERR_FORMAT, "attribute '%s': cannot read string", name);
        } else {
            st = str_to_buf(name, s, strlen(s), buf, cap);
            H5free_memory(s);
        }
        H5Tclose(mt);
    } else {
        size_t n = H5Tget_size(t);
        char *tmp = malloc(n + 1);
        if (!tmp) {
            st = moa_err(MOA_ERR_NOMEM, "attribute '%s': out of memory", name);
        } else {
            /* read with the file's own type, then terminate ourselves */
            if (H5Aread(a, t, tmp) < 0) {
                st = moa_err(MOA_ERR_FORMAT, "attribute '%s': cannot read string", name);
            } else {
                tmp[n] = 0;
                size_t len = strlen(tmp);
                /* trailing space padding (H5T_STR_SPACEPAD) */
                if (H5Tget_strpad(t) == H5T_STR_SPACEPAD)
                    while (len > 0 && tmp[len - 1] == ' ') tmp[--len] = 0;
                st = str_to_buf(name, tmp, len, buf, cap);
            }
            free(tmp);
        }
    }
    H5Tclose(t);
    H5Aclose(a);
    return st;
}

/* Read scalar attribute `name` of class `cls` (`what`, for messages) as mem_type (named
 * `as` in messages) into buf. */
static moa_status attr_read(hid_t obj, const char *name, H5T_class_t cls, const char *what,
                            hid_t mem_type, const char *as, void *buf) {
    hid_t a = H5I_INVALID_HID, t = H5I_INVALID_HID;
    MOA_TRY(attr_open(obj, name, cls, what, &a, &t));
    herr_t e = H5Aread(a, mem_type, buf);
    H5Tclose(t);
    H5Aclose(a);
    if (e < 0) return moa_err(MOA_ERR_FORMAT, "attribute '%s': cannot read as %s", name, as);
    return MOA_OK;
}

moa_status moa_h5_attr_read_i64(hid_t obj, const char *name, int64_t *v) {
    return attr_read(obj, name, H5T_INTEGER, "an integer", H5T_NATIVE_INT64, "int64", v);
}

moa_status moa_h5_attr_read_f64(hid_t obj, const char *name, double *v) {
    return attr_read(obj, name, H5T_FLOAT, "a float", H5T_NATIVE_DOUBLE, "float64", v);
}

moa_status moa_h5_write_dataset(hid_t loc, const char *name, hid_t mem_type, int rank,
                                const hsize_t *dims, const void *data) {
    if (rank < 0 || rank > 32 || (rank > 0 && !dims))
        return moa_err(MOA_ERR_INVALID_ARG, "dataset '%s': bad rank %d", name, rank);
    hid_t sp = rank == 0 ? H5Screate(H5S_SCALAR) : H5Screate_simple(rank, dims, NULL);
    if (sp < 0) return moa_err(MOA_ERR_IO, "HDF5: cannot create dataspace for dataset '%s'", name);
    hid_t ft = H5Tcopy(mem_type);
    /* no object timestamps: the same content gives the same bytes (reproducible files) */
    hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
    if (dcpl >= 0) H5Pset_obj_track_times(dcpl, 0);
    hid_t d = ft >= 0 ? H5Dcreate2(loc, name, ft, sp, H5P_DEFAULT, dcpl >= 0 ? dcpl : H5P_DEFAULT, H5P_DEFAULT) : -1;
    if (dcpl >= 0) H5Pclose(dcpl);
    if (ft >= 0) H5Tclose(ft);
    H5Sclose(sp);
    if (d < 0) return moa_err(MOA_ERR_IO, "HDF5: cannot create dataset '%s' (exists already?)", name);
    herr_t e = H5Dwrite(d, mem_type, H5S_ALL, H5S_ALL, H5P_DEFAULT, data);
    H5Dclose(d);
    if (e < 0) return moa_err(MOA_ERR_IO, "HDF5: cannot write dataset '%s'", name);
    return MOA_OK;
}

static void dims_str(char *buf, size_t cap, int rank, const hsize_t *dims) {
    size_t o = 0;
    o += (size_t)snprintf(buf + o, cap - o, "[");
    for (int i = 0; i < rank && o < cap; i++)
        o += (size_t)snprintf(buf + o, cap - o, "%s%llu", i ? "," : "", (unsigned long long)dims[i]);
    if (o < cap) snprintf(buf + o, cap - o, "]");
}

/* A contiguous or compact dataset's storage must hold exactly its n elements of the file
 * type, and a contiguous one must lie inside the file: libhdf5 1.10 trusts the object header
 * and copies from wild or NULL addresses otherwise (docs/fuzzing.md, site 3: a compact
 * layout without its data, a contiguous one pointing outside the file), and our buffer is
 * sized from the declared shape (which a small hostile file would otherwise make gigabytes).
 * Chunked datasets are left to libhdf5 (our writers make none). */
static moa_status check_storage(hid_t d, hid_t ft, const char *name, size_t n) {
    hid_t pl = H5Dget_create_plist(d);
    if (pl < 0) return moa_err(MOA_ERR_FORMAT, "dataset '%s': unreadable creation properties", name);
    H5D_layout_t lay = H5Pget_layout(pl);
    H5Pclose(pl);
    if (lay != H5D_CONTIGUOUS && lay != H5D_COMPACT) return MOA_OK;
    size_t es = ft >= 0 ? H5Tget_size(ft) : 0, need;
    if (es == 0 || moa_mul_overflow(n, es, &need))
        return moa_err(MOA_ERR_FORMAT, "dataset '%s': bad element size", name);
    hsize_t have = H5Dget_storage_size(d);
    if (lay == H5D_COMPACT) {
        if (have != (hsize_t)need)
            return moa_err(MOA_ERR_FORMAT, "dataset '%s' holds %llu bytes, its shape and type need %zu", name,
                           (unsigned long long)have, need);
        return MOA_OK;
    }
    haddr_t off = H5Dget_offset(d);
    if (off == HADDR_UNDEF) {   /* never written: libhdf5 returns fill values, nothing is read */
        if (have != 0) return moa_err(MOA_ERR_FORMAT, "dataset '%s': storage without an address", name);
        return MOA_OK;
    }
    if (have != (hsize_t)need)
        return moa_err(MOA_ERR_FORMAT, "dataset '%s' holds %llu bytes, its shape and type need %zu", name,
                       (unsigned long long)have, need);
    hid_t f = H5Iget_file_id(d);
    hsize_t fsize = 0;
    herr_t e = f >= 0 ? H5Fget_filesize(f, &fsize) : -1;
    if (f >= 0) H5Fclose(f);
    if (e < 0) return moa_err(MOA_ERR_FORMAT, "dataset '%s': cannot get the file's size", name);
    if (off > fsize || need > fsize - off)
        return moa_err(MOA_ERR_FORMAT, "dataset '%s' lies outside the file (bytes %llu..%llu of %llu)", name,
                       (unsigned long long)off, (unsigned long long)off + (unsigned long long)need,
                       (unsigned long long)fsize);
    return MOA_OK;
}

moa_status moa_h5_read_dataset(hid_t loc, const char *name, hid_t mem_type, int rank,
                               const hsize_t *expect_dims, hsize_t *dims_out, void **data_out) {
    *data_out = NULL;
    if (rank < 0 || rank > 32)
        return moa_err(MOA_ERR_INVALID_ARG, "dataset '%s': bad rank %d", name, rank);
    if (H5Lexists(loc, name, H5P_DEFAULT) <= 0)
        return moa_err(MOA_ERR_FORMAT, "dataset '%s' is missing", name);
    hid_t d = H5Dopen2(loc, name, H5P_DEFAULT);
    if (d < 0) return moa_err(MOA_ERR_FORMAT, "'%s' is not a readable dataset", name);
    moa_status st = MOA_OK;
    hid_t sp = H5Dget_space(d), ft = H5Dget_type(d);
    hsize_t dims[32] = {0};
    int nd = sp >= 0 ? H5Sget_simple_extent_ndims(sp) : -1;
    if (nd != rank) {
        st = moa_err(MOA_ERR_FORMAT, "dataset '%s' has rank %d, expected %d", name, nd, rank);
        goto done;
    }
    if (rank > 0) H5Sget_simple_extent_dims(sp, dims, NULL);
    if (expect_dims) {
        for (int i = 0; i < rank; i++) {
            if (dims[i] != expect_dims[i]) {
                char got[256], want[256];
                dims_str(got, sizeof got, rank, dims);
                dims_str(want, sizeof want, rank, expect_dims);
                st = moa_err(MOA_ERR_FORMAT, "dataset '%s' has shape %s, expected %s", name, got, want);
                goto done;
            }
        }
    }
    H5T_class_t fc = ft >= 0 ? H5Tget_class(ft) : H5T_NO_CLASS, mc = H5Tget_class(mem_type);
    if (fc != mc) {
        st = moa_err(MOA_ERR_FORMAT, "dataset '%s' has the wrong element type (expected %s)", name,
                     mc == H5T_FLOAT ? "float" : mc == H5T_INTEGER ? "integer" : "another class");
        goto done;
    }
    size_t n = 1, es = H5Tget_size(mem_type), bytes;
    for (int i = 0; i < rank; i++) {
        if (moa_mul_overflow(n, (size_t)dims[i], &n)) {
            st = moa_err(MOA_ERR_FORMAT, "dataset '%s' is too large", name);
            goto done;
        }
    }
    if (moa_mul_overflow(n, es, &bytes)) {
        st = moa_err(MOA_ERR_FORMAT, "dataset '%s' is too large", name);
        goto done;
    }
    if (n > 0 && (st = check_storage(d, ft, name, n)) < 0) goto done;
    void *buf = malloc(bytes ? bytes : 1);
    if (!buf) { st = moa_err(MOA_ERR_NOMEM, "dataset '%s': out of memory (%zu bytes)", name, bytes); goto done; }
    if (n > 0 && H5Dread(d, mem_type, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf) < 0) {
        free(buf);
        st = moa_err(MOA_ERR_FORMAT, "dataset '%s': read failed", name);
        goto done;
    }
    *data_out = buf;
    if (dims_out)
        for (int i = 0; i < rank; i++) dims_out[i] = dims[i];
done:
    if (ft >= 0) H5Tclose(ft);
    if (sp >= 0) H5Sclose(sp);
    H5Dclose(d);
    return st;
}
