/* Checkpoint files in HDF5 (layout in ckpt.h): the validating open, per-group reads with
 * crc32 checks, whole-file verification and `tulpar ckpt inspect`. Writing is in ckpt_write.c.
 *
 * Files are read by one process with the serial sec2 driver, so this works in a process that
 * never called MPI_Init even though the library is the parallel build. */
#include "ckpt_hdf5_impl.h"

const tp_ckpt_meta_int_t tp_ckpt_meta_ints[] = {
    {"step", offsetof(tp_ckpt_meta_t, step)},
    {"epoch", offsetof(tp_ckpt_meta_t, epoch)},
    {"step_in_epoch", offsetof(tp_ckpt_meta_t, step_in_epoch)},
    {"samples_seen", offsetof(tp_ckpt_meta_t, samples_seen)},
    {"world_size", offsetof(tp_ckpt_meta_t, world_size)},
    {"seed", offsetof(tp_ckpt_meta_t, seed)},
    {"rng_offset", offsetof(tp_ckpt_meta_t, rng_offset)},
    {"optim_step", offsetof(tp_ckpt_meta_t, optim_step)},
    {"created_unix", offsetof(tp_ckpt_meta_t, created_unix)},
};
const size_t TP_CKPT_N_META_INTS_VALUE = sizeof tp_ckpt_meta_ints / sizeof tp_ckpt_meta_ints[0];

uint32_t tp_ckpt_crc(const float *x, size_t numel)
{
    return (uint32_t)crc32_z(0, (const Bytef *)x, numel * sizeof(float));
}

void tp_ckpt_fmt_shape(char *buf, size_t cap, int ndim, const int64_t *dims)
{
    size_t n = (size_t)snprintf(buf, cap, "[");
    for (int i = 0; i < ndim && n < cap; i++)
        n += (size_t)snprintf(buf + n, cap - n, "%s%" PRId64, i ? "," : "", dims[i]);
    if (n < cap) snprintf(buf + n, cap - n, "]");
}

/* sec2 driver, and file locking that does not fail on file systems without flock (NFS, Lustre).
 * STRONG close degree: H5Fclose really closes the file even if an object id leaked. */
tp_status_t tp_ckpt_make_fapl(hid_t *out, tp_status_t status, const char *path)
{
    tp_status_t st = TP_OK;
    hid_t fapl = H5I_INVALID_HID;
    TP_H5_CHECK(fapl = H5Pcreate(H5P_FILE_ACCESS), status, "checkpoint %s", path);
    TP_H5_CHECKGOTO(H5Pset_fapl_sec2(fapl), st, status, fail, "checkpoint %s", path);
    TP_H5_CHECKGOTO(H5Pset_fclose_degree(fapl, H5F_CLOSE_STRONG), st, status, fail, "checkpoint %s",
                    path);
#if (H5_VERSION_GE(1, 10, 7) && !H5_VERSION_GE(1, 12, 0)) || H5_VERSION_GE(1, 12, 1)
    TP_H5_CHECKGOTO(H5Pset_file_locking(fapl, 1, 1), st, status, fail, "checkpoint %s", path);
#endif
    *out = fapl;
    return TP_OK;
fail:
    TP_H5_CLOSE(H5Pclose, fapl, st, status, "checkpoint %s", path);
    return st;
}

/* ---- reading ------------------------------------------------------------------------------ */

/* "attribute 'step'" or "attribute 'crc32' of params/fc1.weight", for messages. */
static void attr_label(char *buf, size_t cap, const char *obj, const char *name)
{
    if (obj)
        snprintf(buf, cap, "attribute '%s' of %s", name, obj);
    else
        snprintf(buf, cap, "attribute '%s'", name);
}

/* Open attribute `name` of `loc`, which must exist and hold exactly one element. */
static tp_status_t open_attr(hid_t loc, const char *obj, const char *name, const char *path,
                             hid_t *out)
{
    tp_status_t st = TP_OK;
    hid_t a = H5I_INVALID_HID, sp = H5I_INVALID_HID;
    htri_t exists;
    hssize_t npoints = 0;
    char label[512];
    attr_label(label, sizeof label, obj, name);
    TP_H5_CHECK(exists = H5Aexists(loc, name), TP_ERR_CKPT, "checkpoint %s: %s", path, label);
    if (!exists) return TP_ERR(TP_ERR_CKPT, "checkpoint %s: %s missing", path, label);
    TP_H5_CHECKGOTO(a = H5Aopen(loc, name, H5P_DEFAULT), st, TP_ERR_CKPT, fail, "checkpoint %s: %s",
                    path, label);
    TP_H5_CHECKGOTO(sp = H5Aget_space(a), st, TP_ERR_CKPT, fail, "checkpoint %s: %s", path, label);
    TP_H5_CHECKGOTO(npoints = H5Sget_simple_extent_npoints(sp), st, TP_ERR_CKPT, fail,
                    "checkpoint %s: %s", path, label);
    if (npoints != 1) {
        st = TP_ERR(TP_ERR_CKPT, "checkpoint %s: %s has %lld elements, expected one", path, label,
                    (long long)npoints);
        goto fail;
    }
    TP_H5_CLOSE(H5Sclose, sp, st, TP_ERR_CKPT, "checkpoint %s", path);
    if (st != TP_OK) goto fail;
    *out = a;
    return TP_OK;
fail:
    TP_H5_CLOSE(H5Sclose, sp, st, TP_ERR_CKPT, "checkpoint %s", path);
    TP_H5_CLOSE(H5Aclose, a, st, TP_ERR_CKPT, "checkpoint %s", path);
    return st;
}

/* An integer attribute, converted by HDF5 to `mtype` (NATIVE_INT64 or NATIVE_UINT32). */
static tp_status_t read_attr_int(hid_t loc, const char *obj, const char *name, const char *path,
                                 hid_t mtype, void *buf)
{
    tp_status_t st = TP_OK;
    hid_t a = H5I_INVALID_HID, t = H5I_INVALID_HID;
    H5T_class_t cls = H5T_NO_CLASS;
    char label[512];
    attr_label(label, sizeof label, obj, name);
    TP_TRY(open_attr(loc, obj, name, path, &a));
    TP_H5_CHECKGOTO(t = H5Aget_type(a), st, TP_ERR_CKPT, out, "checkpoint %s: %s", path, label);
    TP_H5_CHECKGOTO(cls = H5Tget_class(t), st, TP_ERR_CKPT, out, "checkpoint %s: %s", path, label);
    if (cls != H5T_INTEGER) {
        st = TP_ERR(TP_ERR_CKPT, "checkpoint %s: %s is not an integer", path, label);
        goto out;
    }
    TP_H5_CHECKGOTO(H5Aread(a, mtype, buf), st, TP_ERR_CKPT, out, "checkpoint %s: %s", path, label);
out:
    TP_H5_CLOSE(H5Tclose, t, st, TP_ERR_CKPT, "checkpoint %s", path);
    TP_H5_CLOSE(H5Aclose, a, st, TP_ERR_CKPT, "checkpoint %s", path);
    return st;
}

/* A one-element string, fixed or variable length (h5py writes either), from an attribute
 * (is_attr) or a dataset. *out is malloc'ed and NUL-terminated. */
static tp_status_t read_string(hid_t obj, int is_attr, const char *label, const char *path,
                               char **out)
{
    tp_status_t st = TP_OK;
    hid_t ft = H5I_INVALID_HID, mt = H5I_INVALID_HID, sp = H5I_INVALID_HID;
    H5T_class_t cls = H5T_NO_CLASS;
    htri_t is_vlen = 0;
    hssize_t npoints = 0;
    H5T_cset_t cset = H5T_CSET_ASCII;
    char *vstr = NULL, *buf = NULL;
    *out = NULL;
    TP_H5_CHECKGOTO(ft = is_attr ? H5Aget_type(obj) : H5Dget_type(obj), st, TP_ERR_CKPT, out,
                    "checkpoint %s: %s", path, label);
    TP_H5_CHECKGOTO(cls = H5Tget_class(ft), st, TP_ERR_CKPT, out, "checkpoint %s: %s", path, label);
    if (cls != H5T_STRING) {
        st = TP_ERR(TP_ERR_CKPT, "checkpoint %s: %s is not a string", path, label);
        goto out;
    }
    TP_H5_CHECKGOTO(sp = is_attr ? H5Aget_space(obj) : H5Dget_space(obj), st, TP_ERR_CKPT, out,
                    "checkpoint %s: %s", path, label);
    TP_H5_CHECKGOTO(npoints = H5Sget_simple_extent_npoints(sp), st, TP_ERR_CKPT, out,
                    "checkpoint %s: %s", path, label);
    if (npoints != 1) {
        st = TP_ERR(TP_ERR_CKPT, "checkpoint %s: %s is not a single string", path, label);
        goto out;
    }
    TP_H5_CHECKGOTO(is_vlen = H5Tis_variable_str(ft), st, TP_ERR_CKPT, out, "checkpoint %s: %s",
                    path, label);
    if (is_vlen) {
        TP_H5_CHECKGOTO(cset = H5Tget_cset(ft), st, TP_ERR_CKPT, out, "checkpoint %s: %s", path,
                        label);
        TP_H5_CHECKGOTO(mt = H5Tcopy(H5T_C_S1), st, TP_ERR_CKPT, out, "checkpoint %s", path);
        TP_H5_CHECKGOTO(H5Tset_size(mt, H5T_VARIABLE), st, TP_ERR_CKPT, out, "checkpoint %s", path);
        TP_H5_CHECKGOTO(H5Tset_cset(mt, cset), st, TP_ERR_CKPT, out, "checkpoint %s", path);
        if (is_attr)
            TP_H5_CHECKGOTO(H5Aread(obj, mt, &vstr), st, TP_ERR_CKPT, out, "checkpoint %s: %s",
                            path, label);
        else
            TP_H5_CHECKGOTO(H5Dread(obj, mt, H5S_ALL, H5S_ALL, H5P_DEFAULT, &vstr), st, TP_ERR_CKPT,
                            out, "checkpoint %s: %s", path, label);
        *out = tp_strdup(vstr ? vstr : "");
        if (!*out) st = TP_ERR_NOMEM;
    } else {
        size_t n = H5Tget_size(ft);
        if (n == 0) {
            st = tp_h5_fail_at(__FILE__, __LINE__, "H5Tget_size(ft)", TP_ERR_CKPT,
                               "checkpoint %s: %s", path, label);
            goto out;
        }
        buf = tp_calloc(n + 1, 1, "checkpoint string");
        if (!buf) {
            st = TP_ERR_NOMEM;
            goto out;
        }
        TP_H5_CHECKGOTO(mt = H5Tcopy(ft), st, TP_ERR_CKPT, out, "checkpoint %s", path);
        if (is_attr)
            TP_H5_CHECKGOTO(H5Aread(obj, mt, buf), st, TP_ERR_CKPT, out, "checkpoint %s: %s", path,
                            label);
        else
            TP_H5_CHECKGOTO(H5Dread(obj, mt, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf), st, TP_ERR_CKPT,
                            out, "checkpoint %s: %s", path, label);
        *out = buf;
        buf = NULL;
    }
out:
    if (vstr && H5free_memory(vstr) < 0 && st == TP_OK)
        st = tp_h5_fail_at(__FILE__, __LINE__, "H5free_memory(vstr)", TP_ERR_CKPT,
                           "checkpoint %s: %s", path, label);
    free(buf);
    if (st != TP_OK) {
        free(*out);
        *out = NULL;
    }
    TP_H5_CLOSE(H5Tclose, mt, st, TP_ERR_CKPT, "checkpoint %s", path);
    TP_H5_CLOSE(H5Sclose, sp, st, TP_ERR_CKPT, "checkpoint %s", path);
    TP_H5_CLOSE(H5Tclose, ft, st, TP_ERR_CKPT, "checkpoint %s", path);
    return st;
}

static tp_status_t read_attr_str(hid_t loc, const char *name, const char *path, char **out)
{
    tp_status_t st = TP_OK;
    hid_t a = H5I_INVALID_HID;
    char label[512];
    attr_label(label, sizeof label, NULL, name);
    TP_TRY(open_attr(loc, NULL, name, path, &a));
    st = read_string(a, 1, label, path, out);
    TP_H5_CLOSE(H5Aclose, a, st, TP_ERR_CKPT, "checkpoint %s", path);
    return st;
}

static tp_status_t read_attr_fixed(hid_t loc, const char *name, const char *path, char *dst,
                                   size_t cap)
{
    char *s = NULL;
    TP_TRY(read_attr_str(loc, name, path, &s));
    size_t n = strlen(s);
    if (n >= cap) {
        free(s);
        return TP_ERR(TP_ERR_CKPT, "checkpoint %s: attribute '%s' is %zu bytes long, at most %zu",
                      path, name, n, cap - 1);
    }
    memcpy(dst, s, n + 1);
    free(s);
    return TP_OK;
}

/* Does link `name` exist? Checked one component at a time because H5Lexists fails, rather
 * than answering no, when an intermediate group is missing. */
static tp_status_t link_exists(hid_t fid, const char *name, const char *path, int *exists)
{
    char prefix[1024];
    size_t len = strlen(name);
    if (len >= sizeof prefix)
        return TP_ERR(TP_ERR_CKPT, "checkpoint %s: name %s too long", path, name);
    *exists = 0;
    for (size_t i = 0; i <= len; i++) {
        if (name[i] != '/' && name[i] != '\0') continue;
        if (i == 0) continue;
        memcpy(prefix, name, i);
        prefix[i] = '\0';
        htri_t e;
        TP_H5_CHECK(e = H5Lexists(fid, prefix, H5P_DEFAULT), TP_ERR_CKPT, "checkpoint %s: %s", path,
                    name);
        if (!e) return TP_OK;
    }
    *exists = 1;
    return TP_OK;
}

tp_status_t tp_ckpt_open(const char *path, tp_ckpt_t **out)
{
    tp_h5_quiet();
    *out = NULL;
    struct stat sb;
    if (stat(path, &sb) != 0)
        return TP_ERR(TP_ERR_CKPT, "checkpoint %s: %s", path, strerror(errno));
    if (!S_ISREG(sb.st_mode)) return TP_ERR(TP_ERR_CKPT, "checkpoint %s: not a file", path);

    tp_status_t st = TP_OK;
    hid_t fapl = H5I_INVALID_HID, ds = H5I_INVALID_HID;
    char *format = NULL;
    tp_ckpt_t *ck = tp_calloc(1, sizeof *ck, "checkpoint");
    if (!ck) return TP_ERR_NOMEM;
    ck->fid = H5I_INVALID_HID;
    ck->path = tp_strdup(path);
    if (!ck->path) {
        st = TP_ERR_NOMEM;
        goto fail;
    }
    TP_TRYGOTO(tp_ckpt_make_fapl(&fapl, TP_ERR_CKPT, path), st, fail);
    TP_H5_CHECKGOTO(ck->fid = H5Fopen(path, H5F_ACC_RDONLY, fapl), st, TP_ERR_CKPT, fail,
                    "checkpoint %s: not an HDF5 file or truncated", path);

    htri_t has_format;
    TP_H5_CHECKGOTO(has_format = H5Aexists(ck->fid, "format"), st, TP_ERR_CKPT, fail,
                    "checkpoint %s", path);
    if (!has_format) {
        st = TP_ERR(TP_ERR_CKPT, "checkpoint %s: not a Tulpar checkpoint (no 'format' attribute)",
                    path);
        goto fail;
    }
    TP_TRYGOTO(read_attr_str(ck->fid, "format", path, &format), st, fail);
    if (strcmp(format, TP_CKPT_FORMAT) != 0) {
        st = TP_ERR(TP_ERR_CKPT, "checkpoint %s: not a Tulpar checkpoint (format is '%s')", path,
                    format);
        goto fail;
    }
    TP_TRYGOTO(
        read_attr_int(ck->fid, NULL, "format_version", path, H5T_NATIVE_INT64, &ck->format_version),
        st, fail);
    if (ck->format_version > TP_CKPT_FORMAT_VERSION) {
        st = TP_ERR(TP_ERR_CKPT,
                    "checkpoint %s: written by a newer Tulpar (format %" PRId64
                    ", this build reads %d)",
                    path, ck->format_version, TP_CKPT_FORMAT_VERSION);
        goto fail;
    }
    if (ck->format_version < 1) {
        st = TP_ERR(TP_ERR_CKPT, "checkpoint %s: invalid format_version %" PRId64, path,
                    ck->format_version);
        goto fail;
    }
    TP_TRYGOTO(read_attr_str(ck->fid, "tulpar_version", path, &ck->tulpar_version), st, fail);
    for (size_t i = 0; i < TP_CKPT_N_META_INTS; i++)
        TP_TRYGOTO(read_attr_int(ck->fid, NULL, tp_ckpt_meta_ints[i].name, path, H5T_NATIVE_INT64,
                                 (char *)&ck->meta + tp_ckpt_meta_ints[i].off),
                   st, fail);
    TP_TRYGOTO(read_attr_fixed(ck->fid, "model_type", path, ck->meta.model_type,
                               sizeof ck->meta.model_type),
               st, fail);
    TP_TRYGOTO(
        read_attr_fixed(ck->fid, "optimizer", path, ck->meta.optimizer, sizeof ck->meta.optimizer),
        st, fail);

    int has_config;
    TP_TRYGOTO(link_exists(ck->fid, "config", path, &has_config), st, fail);
    if (!has_config) {
        st = TP_ERR(TP_ERR_CKPT, "checkpoint %s: dataset /config missing", path);
        goto fail;
    }
    TP_H5_CHECKGOTO(ds = H5Dopen2(ck->fid, "config", H5P_DEFAULT), st, TP_ERR_CKPT, fail,
                    "checkpoint %s: /config", path);
    TP_TRYGOTO(read_string(ds, 0, "/config", path, &ck->config), st, fail);
    TP_H5_CLOSE(H5Dclose, ds, st, TP_ERR_CKPT, "checkpoint %s", path);
    TP_H5_CLOSE(H5Pclose, fapl, st, TP_ERR_CKPT, "checkpoint %s", path);
    if (st != TP_OK) goto fail;
    free(format);
    *out = ck;
    return TP_OK;
fail:
    TP_H5_CLOSE(H5Dclose, ds, st, TP_ERR_CKPT, "checkpoint %s", path);
    TP_H5_CLOSE(H5Pclose, fapl, st, TP_ERR_CKPT, "checkpoint %s", path);
    free(format);
    tp_ckpt_close(ck);
    return st;
}

void tp_ckpt_close(tp_ckpt_t *ck)
{
    if (!ck) return;
    tp_status_t st = TP_OK; /* a close failure is reported; there is nothing else to do */
    TP_H5_CLOSE(H5Fclose, ck->fid, st, TP_ERR_CKPT, "checkpoint %s: close", ck->path);
    (void)st;
    free(ck->path);
    free(ck->tulpar_version);
    free(ck->config);
    free(ck);
}

const tp_ckpt_meta_t *tp_ckpt_meta(const tp_ckpt_t *ck)
{
    return &ck->meta;
}

const char *tp_ckpt_config_text(const tp_ckpt_t *ck)
{
    return ck->config;
}

/* ---- datasets ----------------------------------------------------------------------------- */

typedef struct ds_desc {
    int ndim;
    int64_t dims[H5S_MAX_RANK];
    size_t numel;
    int is_f32;
    char dtype[16];
} ds_desc_t;

static tp_status_t describe_dataset(hid_t ds, const char *dname, const char *path, ds_desc_t *d)
{
    tp_status_t st = TP_OK;
    hid_t sp = H5I_INVALID_HID, t = H5I_INVALID_HID;
    H5T_class_t cls = H5T_NO_CLASS;
    H5T_sign_t sign = H5T_SGN_NONE;
    hsize_t dims[H5S_MAX_RANK];
    memset(d, 0, sizeof *d);
    TP_H5_CHECKGOTO(sp = H5Dget_space(ds), st, TP_ERR_CKPT, out, "checkpoint %s: %s", path, dname);
    TP_H5_CHECKGOTO(d->ndim = H5Sget_simple_extent_dims(sp, dims, NULL), st, TP_ERR_CKPT, out,
                    "checkpoint %s: %s", path, dname);
    d->numel = 1;
    for (int i = 0; i < d->ndim; i++) {
        d->dims[i] = (int64_t)dims[i];
        d->numel *= (size_t)dims[i];
    }
    TP_H5_CHECKGOTO(t = H5Dget_type(ds), st, TP_ERR_CKPT, out, "checkpoint %s: %s", path, dname);
    TP_H5_CHECKGOTO(cls = H5Tget_class(t), st, TP_ERR_CKPT, out, "checkpoint %s: %s", path, dname);
    size_t size = H5Tget_size(t);
    if (size == 0) {
        st = tp_h5_fail_at(__FILE__, __LINE__, "H5Tget_size(t)", TP_ERR_CKPT, "checkpoint %s: %s",
                           path, dname);
        goto out;
    }
    if (cls == H5T_FLOAT) {
        snprintf(d->dtype, sizeof d->dtype, "float%zu", 8 * size);
        d->is_f32 = size == 4;
    } else if (cls == H5T_INTEGER) {
        TP_H5_CHECKGOTO(sign = H5Tget_sign(t), st, TP_ERR_CKPT, out, "checkpoint %s: %s", path,
                        dname);
        snprintf(d->dtype, sizeof d->dtype, "%sint%zu", sign == H5T_SGN_NONE ? "u" : "", 8 * size);
    } else {
        snprintf(d->dtype, sizeof d->dtype, "%s", cls == H5T_STRING ? "string" : "other");
    }
out:
    TP_H5_CLOSE(H5Tclose, t, st, TP_ERR_CKPT, "checkpoint %s", path);
    TP_H5_CLOSE(H5Sclose, sp, st, TP_ERR_CKPT, "checkpoint %s", path);
    return st;
}

/* Read a float32 dataset into buf (numel floats) and compare its crc32 with the stored one.
 * *crc_ok is set; a mismatch is not an error here, so that inspect can list it. */
static tp_status_t read_and_check(hid_t ds, const char *dname, const char *path, float *buf,
                                  size_t numel, int *crc_ok)
{
    uint32_t stored = 0;
    TP_TRY(read_attr_int(ds, dname, "crc32", path, H5T_NATIVE_UINT32, &stored));
    if (numel > 0)
        TP_H5_CHECK(H5Dread(ds, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf), TP_ERR_CKPT,
                    "checkpoint %s: reading %s", path, dname);
    uint32_t crc = numel > 0 ? tp_ckpt_crc(buf, numel) : 0;
    *crc_ok = crc == stored;
    return TP_OK;
}

static tp_status_t read_tensor(tp_ckpt_t *ck, const char *gpath, const tp_ckpt_tensor_t *t)
{
    const char *path = ck->path;
    char dname[1024];
    if ((size_t)snprintf(dname, sizeof dname, "%s/%s", gpath, t->name) >= sizeof dname)
        return TP_ERR(TP_ERR_INTERNAL, "checkpoint %s: dataset name %s/%s too long", path, gpath,
                      t->name);
    int exists;
    TP_TRY(link_exists(ck->fid, dname, path, &exists));
    if (!exists)
        return TP_ERR(TP_ERR_CKPT, "checkpoint %s: no dataset %s (the model expects it)", path,
                      dname);

    tp_status_t st = TP_OK;
    hid_t ds = H5I_INVALID_HID;
    ds_desc_t d;
    int crc_ok = 0;
    TP_H5_CHECKGOTO(ds = H5Dopen2(ck->fid, dname, H5P_DEFAULT), st, TP_ERR_CKPT, out,
                    "checkpoint %s: %s", path, dname);
    TP_TRYGOTO(describe_dataset(ds, dname, path, &d), st, out);
    int same = d.ndim == t->ndim;
    for (int i = 0; same && i < t->ndim; i++)
        same = d.dims[i] == t->shape[i];
    if (!same) {
        char have[256], want[256];
        tp_ckpt_fmt_shape(have, sizeof have, d.ndim, d.dims);
        tp_ckpt_fmt_shape(want, sizeof want, t->ndim, t->shape);
        st = TP_ERR(TP_ERR_CKPT, "checkpoint %s: %s has shape %s, model expects %s", path, dname,
                    have, want);
        goto out;
    }
    if (!d.is_f32) {
        st = TP_ERR(TP_ERR_CKPT, "checkpoint %s: %s has dtype %s, expected float32", path, dname,
                    d.dtype);
        goto out;
    }
    TP_TRYGOTO(read_and_check(ds, dname, path, t->data, d.numel, &crc_ok), st, out);
    if (!crc_ok)
        st = TP_ERR(TP_ERR_CKPT, "checkpoint %s: %s: checksum mismatch: file corrupt", path, dname);
out:
    TP_H5_CLOSE(H5Dclose, ds, st, TP_ERR_CKPT, "checkpoint %s", path);
    return st;
}

tp_status_t tp_ckpt_read_group(tp_ckpt_t *ck, const tp_ckpt_group_t *group)
{
    tp_h5_quiet();
    for (int i = 0; i < group->n; i++)
        TP_TRY(read_tensor(ck, group->path, &group->tensors[i]));
    return TP_OK;
}

typedef struct name_list {
    char **names;
    size_t n, cap;
} name_list_t;

static void name_list_free(name_list_t *l)
{
    for (size_t i = 0; i < l->n; i++)
        free(l->names[i]);
    free(l->names);
    memset(l, 0, sizeof *l);
}

#if H5_VERSION_GE(1, 12, 0)
typedef H5O_info2_t tp_oinfo_t;
#define TP_OVISIT(obj, cb, data)                                                                   \
    H5Ovisit3(obj, H5_INDEX_NAME, H5_ITER_INC, cb, data, H5O_INFO_BASIC)
#else
typedef H5O_info_t tp_oinfo_t;
#define TP_OVISIT(obj, cb, data)                                                                   \
    H5Ovisit2(obj, H5_INDEX_NAME, H5_ITER_INC, cb, data, H5O_INFO_BASIC)
#endif

/* Tensor datasets are those inside a group; the only root dataset is /config. */
static herr_t collect_cb(hid_t obj, const char *name, const tp_oinfo_t *info, void *data)
{
    (void)obj;
    name_list_t *l = data;
    if (info->type != H5O_TYPE_DATASET || !strchr(name, '/')) return 0;
    if (l->n == l->cap) {
        size_t cap = l->cap ? 2 * l->cap : 16;
        char **p = realloc(l->names, cap * sizeof *p);
        if (!p) return -1;
        l->names = p;
        l->cap = cap;
    }
    l->names[l->n] = tp_strdup(name);
    return l->names[l->n++] ? 0 : -1;
}

static tp_status_t collect_datasets(tp_ckpt_t *ck, name_list_t *l)
{
    memset(l, 0, sizeof *l);
    tp_status_t st = TP_OK;
    TP_H5_CHECKGOTO(TP_OVISIT(ck->fid, collect_cb, l), st, TP_ERR_CKPT, fail,
                    "checkpoint %s: listing datasets", ck->path);
    return TP_OK;
fail:
    name_list_free(l);
    return st;
}

/* Check one dataset's dtype (float32) and crc; *crc_ok: 1 ok, 0 mismatch. With `lenient`
 * (inspect), a dataset of another dtype is described and not checked (*crc_ok = -1). */
static tp_status_t check_dataset(tp_ckpt_t *ck, const char *dname, int lenient, ds_desc_t *d,
                                 int *crc_ok)
{
    tp_status_t st = TP_OK;
    hid_t ds = H5I_INVALID_HID;
    float *buf = NULL;
    *crc_ok = 0;
    TP_H5_CHECKGOTO(ds = H5Dopen2(ck->fid, dname, H5P_DEFAULT), st, TP_ERR_CKPT, out,
                    "checkpoint %s: %s", ck->path, dname);
    TP_TRYGOTO(describe_dataset(ds, dname, ck->path, d), st, out);
    if (!d->is_f32 && lenient) {
        *crc_ok = -1;
        goto out;
    }
    if (!d->is_f32) {
        st = TP_ERR(TP_ERR_CKPT, "checkpoint %s: %s has dtype %s, expected float32", ck->path,
                    dname, d->dtype);
        goto out;
    }
    buf = tp_malloc(d->numel * sizeof(float), "checkpoint verify buffer");
    if (!buf) {
        st = TP_ERR_NOMEM;
        goto out;
    }
    TP_TRYGOTO(read_and_check(ds, dname, ck->path, buf, d->numel, crc_ok), st, out);
out:
    free(buf);
    TP_H5_CLOSE(H5Dclose, ds, st, TP_ERR_CKPT, "checkpoint %s", ck->path);
    return st;
}

tp_status_t tp_ckpt_verify(tp_ckpt_t *ck)
{
    tp_h5_quiet();
    name_list_t l;
    TP_TRY(collect_datasets(ck, &l));
    tp_status_t st = TP_OK;
    for (size_t i = 0; i < l.n && st == TP_OK; i++) {
        ds_desc_t d;
        int crc_ok;
        st = check_dataset(ck, l.names[i], 0, &d, &crc_ok);
        if (st == TP_OK && !crc_ok)
            st = TP_ERR(TP_ERR_CKPT, "checkpoint %s: %s: checksum mismatch: file corrupt", ck->path,
                        l.names[i]);
    }
    name_list_free(&l);
    return st;
}

/* ---- inspect ------------------------------------------------------------------------------ */

static void print_meta(const tp_ckpt_t *ck, FILE *out)
{
    const tp_ckpt_meta_t *m = &ck->meta;
    fprintf(out, "%-16s%s\n", "checkpoint", ck->path);
    fprintf(out, "%-16s%s, version %" PRId64 "\n", "format", TP_CKPT_FORMAT, ck->format_version);
    fprintf(out, "%-16s%s\n", "tulpar_version", ck->tulpar_version);
    for (size_t i = 0; i < TP_CKPT_N_META_INTS; i++) {
        int64_t v = *(const int64_t *)((const char *)m + tp_ckpt_meta_ints[i].off);
        fprintf(out, "%-16s%" PRId64, tp_ckpt_meta_ints[i].name, v);
        if (tp_ckpt_meta_ints[i].off == offsetof(tp_ckpt_meta_t, created_unix)) {
            time_t t = (time_t)v;
            struct tm tm;
            char when[64];
            if (gmtime_r(&t, &tm) && strftime(when, sizeof when, "%Y-%m-%d %H:%M:%S UTC", &tm))
                fprintf(out, " (%s)", when);
        }
        fputc('\n', out);
    }
    fprintf(out, "%-16s%s\n", "model_type", m->model_type);
    fprintf(out, "%-16s%s\n", "optimizer", m->optimizer);
}

tp_status_t tp_ckpt_inspect(const char *path, FILE *out)
{
    tp_ckpt_t *ck = NULL;
    TP_TRY(tp_ckpt_open(path, &ck));
    name_list_t l;
    tp_status_t st = collect_datasets(ck, &l);
    if (st != TP_OK) {
        tp_ckpt_close(ck);
        return st;
    }
    ds_desc_t *desc = tp_calloc(l.n, sizeof *desc, "inspect");
    int *ok = tp_calloc(l.n, sizeof *ok, "inspect");
    if (!desc || !ok) {
        st = TP_ERR_NOMEM;
        goto out;
    }
    /* Gather first so that the columns can be aligned; a bad checksum is listed, not fatal. */
    int name_w = 4, shape_w = 5, numel_w = 5, n_bad = 0;
    for (size_t i = 0; i < l.n; i++) {
        st = check_dataset(ck, l.names[i], 1, &desc[i], &ok[i]);
        if (st != TP_OK) goto out;
        n_bad += ok[i] == 0;
        char shape[256], numel[32];
        tp_ckpt_fmt_shape(shape, sizeof shape, desc[i].ndim, desc[i].dims);
        int nw = (int)strlen(l.names[i]), sw = (int)strlen(shape);
        int ew = snprintf(numel, sizeof numel, "%zu", desc[i].numel);
        if (nw > name_w) name_w = nw;
        if (sw > shape_w) shape_w = sw;
        if (ew > numel_w) numel_w = ew;
    }

    print_meta(ck, out);
    fprintf(out, "\ndatasets (%zu):\n", l.n);
    fprintf(out, "  %-*s  %-7s  %-*s  %*s  %s\n", name_w, "name", "dtype", shape_w, "shape",
            numel_w, "numel", "crc32");
    for (size_t i = 0; i < l.n; i++) {
        char shape[256];
        tp_ckpt_fmt_shape(shape, sizeof shape, desc[i].ndim, desc[i].dims);
        fprintf(out, "  %-*s  %-7s  %-*s  %*zu  %s\n", name_w, l.names[i], desc[i].dtype, shape_w,
                shape, numel_w, desc[i].numel,
                ok[i] > 0 ? "ok"
                : ok[i]   ? "-"
                          : "BAD");
    }
    fprintf(out, "\nconfig:\n");
    const char *c = ck->config;
    while (*c) {
        const char *nl = strchr(c, '\n');
        int len = nl ? (int)(nl - c) : (int)strlen(c);
        fprintf(out, "  %.*s\n", len, c);
        c += len + (nl ? 1 : 0);
    }
    if (fflush(out) != 0 || ferror(out)) {
        st = TP_ERR(TP_ERR_IO, "inspect %s: writing the summary failed: %s", path, strerror(errno));
        goto out;
    }
    if (n_bad)
        st = TP_ERR(TP_ERR_CKPT,
                    "checkpoint %s: %d of %zu datasets fail their checksum: file "
                    "corrupt",
                    path, n_bad, l.n);
out:
    free(desc);
    free(ok);
    name_list_free(&l);
    tp_ckpt_close(ck);
    return st;
}
