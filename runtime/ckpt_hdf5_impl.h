/* Private to the checkpoint module (ckpt_hdf5.c reads, ckpt_write.c writes): the open-file
 * object, the table of integer meta attributes and helpers both halves use. */
#ifndef TP_CKPT_HDF5_IMPL_H
#define TP_CKPT_HDF5_IMPL_H

#include "ckpt.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>

#include "h5_check.h"

#ifndef TULPAR_VERSION
#define TULPAR_VERSION "unknown"
#endif

/* The crc32 is defined over the little-endian bytes; we checksum host memory directly. */
#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "tulpar checkpoints assume a little-endian host"
#endif

struct tp_ckpt {
    char *path;
    hid_t fid;
    int64_t format_version;
    char *tulpar_version;
    char *config;
    tp_ckpt_meta_t meta;
};

typedef struct tp_ckpt_meta_int {
    const char *name;
    size_t off;
} tp_ckpt_meta_int_t;

/* Integer root attributes and where they live in tp_ckpt_meta_t. */
extern const tp_ckpt_meta_int_t tp_ckpt_meta_ints[];
extern const size_t TP_CKPT_N_META_INTS_VALUE;
#define TP_CKPT_N_META_INTS TP_CKPT_N_META_INTS_VALUE

/* zlib crc32 of the float bytes (little-endian host: memory order is file order). */
uint32_t tp_ckpt_crc(const float *x, size_t numel);
/* "[a,b,c]" */
void tp_ckpt_fmt_shape(char *buf, size_t cap, int ndim, const int64_t *dims);
/* File-access property list: sec2 driver, tolerant locking, strong close. */
tp_status_t tp_ckpt_make_fapl(hid_t *out, tp_status_t status, const char *path);

#endif
