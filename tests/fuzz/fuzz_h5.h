/* fuzz_h5.h - the HDF5 readers take a path: each input is written to one temporary file per
 * process (in $TMPDIR or /tmp, preferably a tmpfs) and read from there. */
#ifndef MOA_FUZZ_H5_H
#define MOA_FUZZ_H5_H

#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

static const char *fuzz_tmp_path(void) {
    static char path[512];
    if (!path[0]) {
        const char *dir = getenv("TMPDIR");
        snprintf(path, sizeof path, "%s/moa-fuzz-%d.h5", dir && *dir ? dir : "/tmp", (int)getpid());
    }
    return path;
}

static int fuzz_write(const unsigned char *data, size_t size) {
    FILE *fp = fopen(fuzz_tmp_path(), "wb");
    if (!fp) return -1;
    size_t n = fwrite(data, 1, size, fp);
    fclose(fp);
    return n == size ? 0 : -1;
}

#endif
