/* Writing checkpoints (layout in ckpt.h): every tensor a float32 dataset with its crc32, root
 * attributes, the config text; PATH.tmp, fsync, rename, directory fsync. One writer (sec2
 * driver): works without MPI_Init. */
#include "ckpt_hdf5_impl.h"

/* ---- writing ------------------------------------------------------------------------------ */

static tp_status_t write_attr(hid_t loc, const char *name, hid_t ftype, hid_t mtype,
                              const void *buf, const char *path)
{
    tp_status_t st = TP_OK;
    hid_t sp = H5I_INVALID_HID, a = H5I_INVALID_HID;
    TP_H5_CHECKGOTO(sp = H5Screate(H5S_SCALAR), st, TP_ERR_HDF5, out, "writing checkpoint %s",
                    path);
    TP_H5_CHECKGOTO(a = H5Acreate2(loc, name, ftype, sp, H5P_DEFAULT, H5P_DEFAULT), st, TP_ERR_HDF5,
                    out, "writing checkpoint %s: attribute '%s'", path, name);
    TP_H5_CHECKGOTO(H5Awrite(a, mtype, buf), st, TP_ERR_HDF5, out,
                    "writing checkpoint %s: attribute '%s'", path, name);
out:
    TP_H5_CLOSE(H5Aclose, a, st, TP_ERR_HDF5, "writing checkpoint %s", path);
    TP_H5_CLOSE(H5Sclose, sp, st, TP_ERR_HDF5, "writing checkpoint %s", path);
    return st;
}

/* Root attributes and /config. Strings are variable-length UTF-8, h5py's native str type. */
static tp_status_t write_meta(hid_t fid, const tp_ckpt_meta_t *meta, const char *config_text,
                              const char *path)
{
    tp_status_t st = TP_OK;
    hid_t str = H5I_INVALID_HID, sp = H5I_INVALID_HID, ds = H5I_INVALID_HID;
    TP_H5_CHECKGOTO(str = H5Tcopy(H5T_C_S1), st, TP_ERR_HDF5, out, "writing checkpoint %s", path);
    TP_H5_CHECKGOTO(H5Tset_size(str, H5T_VARIABLE), st, TP_ERR_HDF5, out, "writing checkpoint %s",
                    path);
    TP_H5_CHECKGOTO(H5Tset_cset(str, H5T_CSET_UTF8), st, TP_ERR_HDF5, out, "writing checkpoint %s",
                    path);

    const char *s = TP_CKPT_FORMAT;
    TP_TRYGOTO(write_attr(fid, "format", str, str, &s, path), st, out);
    int64_t version = TP_CKPT_FORMAT_VERSION;
    TP_TRYGOTO(write_attr(fid, "format_version", H5T_STD_I64LE, H5T_NATIVE_INT64, &version, path),
               st, out);
    s = TULPAR_VERSION;
    TP_TRYGOTO(write_attr(fid, "tulpar_version", str, str, &s, path), st, out);
    for (size_t i = 0; i < TP_CKPT_N_META_INTS; i++) {
        int64_t v = *(const int64_t *)((const char *)meta + tp_ckpt_meta_ints[i].off);
        if (tp_ckpt_meta_ints[i].off == offsetof(tp_ckpt_meta_t, created_unix) && v == 0)
            v = (int64_t)time(NULL);
        TP_TRYGOTO(
            write_attr(fid, tp_ckpt_meta_ints[i].name, H5T_STD_I64LE, H5T_NATIVE_INT64, &v, path),
            st, out);
    }
    /* The fixed-size fields need not be NUL-terminated; copy them bounded. */
    char model[sizeof meta->model_type + 1], optim[sizeof meta->optimizer + 1];
    snprintf(model, sizeof model, "%.*s", (int)sizeof meta->model_type, meta->model_type);
    snprintf(optim, sizeof optim, "%.*s", (int)sizeof meta->optimizer, meta->optimizer);
    s = model;
    TP_TRYGOTO(write_attr(fid, "model_type", str, str, &s, path), st, out);
    s = optim;
    TP_TRYGOTO(write_attr(fid, "optimizer", str, str, &s, path), st, out);

    s = config_text ? config_text : "";
    TP_H5_CHECKGOTO(sp = H5Screate(H5S_SCALAR), st, TP_ERR_HDF5, out, "writing checkpoint %s",
                    path);
    TP_H5_CHECKGOTO(ds = H5Dcreate2(fid, "config", str, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT),
                    st, TP_ERR_HDF5, out, "writing checkpoint %s: /config", path);
    TP_H5_CHECKGOTO(H5Dwrite(ds, str, H5S_ALL, H5S_ALL, H5P_DEFAULT, &s), st, TP_ERR_HDF5, out,
                    "writing checkpoint %s: /config", path);
out:
    TP_H5_CLOSE(H5Dclose, ds, st, TP_ERR_HDF5, "writing checkpoint %s", path);
    TP_H5_CLOSE(H5Sclose, sp, st, TP_ERR_HDF5, "writing checkpoint %s", path);
    TP_H5_CLOSE(H5Tclose, str, st, TP_ERR_HDF5, "writing checkpoint %s", path);
    return st;
}

static tp_status_t write_tensor(hid_t fid, hid_t lcpl, const char *gpath, const tp_ckpt_tensor_t *t,
                                const char *path)
{
    tp_status_t st = TP_OK;
    hid_t sp = H5I_INVALID_HID, dcpl = H5I_INVALID_HID, ds = H5I_INVALID_HID;
    char dname[1024];
    if ((size_t)snprintf(dname, sizeof dname, "%s/%s", gpath, t->name) >= sizeof dname)
        return TP_ERR(TP_ERR_INTERNAL, "writing checkpoint %s: dataset name %s/%s too long", path,
                      gpath, t->name);
    hsize_t dims[TP_CKPT_MAX_DIMS];
    size_t numel = 1;
    for (int d = 0; d < t->ndim; d++) {
        dims[d] = (hsize_t)t->shape[d];
        numel *= (size_t)t->shape[d];
    }
    if (t->ndim == 0)
        TP_H5_CHECKGOTO(sp = H5Screate(H5S_SCALAR), st, TP_ERR_HDF5, out,
                        "writing checkpoint %s: %s", path, dname);
    else
        TP_H5_CHECKGOTO(sp = H5Screate_simple(t->ndim, dims, NULL), st, TP_ERR_HDF5, out,
                        "writing checkpoint %s: %s", path, dname);
    TP_H5_CHECKGOTO(dcpl = H5Pcreate(H5P_DATASET_CREATE), st, TP_ERR_HDF5, out,
                    "writing checkpoint %s", path);
    TP_H5_CHECKGOTO(H5Pset_layout(dcpl, H5D_CONTIGUOUS), st, TP_ERR_HDF5, out,
                    "writing checkpoint %s", path);
    TP_H5_CHECKGOTO(ds = H5Dcreate2(fid, dname, H5T_IEEE_F32LE, sp, lcpl, dcpl, H5P_DEFAULT), st,
                    TP_ERR_HDF5, out, "writing checkpoint %s: dataset %s", path, dname);
    if (numel > 0)
        TP_H5_CHECKGOTO(H5Dwrite(ds, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, t->data), st,
                        TP_ERR_HDF5, out, "writing checkpoint %s: dataset %s", path, dname);
    uint32_t crc = numel > 0 ? tp_ckpt_crc(t->data, numel) : 0;
    TP_TRYGOTO(write_attr(ds, "crc32", H5T_STD_U32LE, H5T_NATIVE_UINT32, &crc, path), st, out);
out:
    TP_H5_CLOSE(H5Dclose, ds, st, TP_ERR_HDF5, "writing checkpoint %s", path);
    TP_H5_CLOSE(H5Pclose, dcpl, st, TP_ERR_HDF5, "writing checkpoint %s", path);
    TP_H5_CLOSE(H5Sclose, sp, st, TP_ERR_HDF5, "writing checkpoint %s", path);
    return st;
}

/* Caller bugs are caught before anything touches the disk. */
static tp_status_t check_groups(const char *path, const tp_ckpt_group_t *groups, int n_groups)
{
    if (n_groups < 0 || (n_groups > 0 && !groups))
        return TP_ERR(TP_ERR_INTERNAL, "writing checkpoint %s: bad group list", path);
    for (int g = 0; g < n_groups; g++) {
        const tp_ckpt_group_t *gr = &groups[g];
        if (!gr->path || !gr->path[0] || gr->n < 0 || (gr->n > 0 && !gr->tensors))
            return TP_ERR(TP_ERR_INTERNAL, "writing checkpoint %s: bad group #%d", path, g);
        for (int i = 0; i < gr->n; i++) {
            const tp_ckpt_tensor_t *t = &gr->tensors[i];
            int bad = !t->name || !t->name[0] || t->ndim < 0 || t->ndim > TP_CKPT_MAX_DIMS;
            size_t numel = 1;
            for (int d = 0; !bad && d < t->ndim; d++) {
                bad = t->shape[d] < 0;
                numel *= (size_t)t->shape[d];
            }
            if (bad || (numel > 0 && !t->data))
                return TP_ERR(TP_ERR_INTERNAL,
                              "writing checkpoint %s: tensor #%d of %s: no name, ndim not in "
                              "0..%d, a negative dimension or no data",
                              path, i, gr->path, TP_CKPT_MAX_DIMS);
        }
    }
    return TP_OK;
}

/* Make the rename itself durable. Some file systems refuse fsync on a directory (EINVAL);
 * there is nothing more we can do there. */
static tp_status_t fsync_parent_dir(const char *path)
{
    char dir[4096];
    const char *slash = strrchr(path, '/');
    if (!slash)
        snprintf(dir, sizeof dir, ".");
    else if (slash == path)
        snprintf(dir, sizeof dir, "/");
    else
        snprintf(dir, sizeof dir, "%.*s", (int)(slash - path), path);
    int fd = open(dir, O_RDONLY | O_DIRECTORY);
    if (fd < 0)
        return TP_ERR(TP_ERR_IO, "writing checkpoint %s: cannot open directory %s: %s", path, dir,
                      strerror(errno));
    if (fsync(fd) != 0 && errno != EINVAL) {
        int e = errno;
        close(fd);
        return TP_ERR(TP_ERR_IO, "writing checkpoint %s: fsync of directory %s: %s", path, dir,
                      strerror(e));
    }
    close(fd);
    return TP_OK;
}

tp_status_t tp_ckpt_write(const char *path, const tp_ckpt_meta_t *meta, const char *config_text,
                          const tp_ckpt_group_t *groups, int n_groups)
{
    tp_h5_quiet();
    if (!path || !path[0] || !meta)
        return TP_ERR(TP_ERR_INTERNAL, "tp_ckpt_write: missing path or meta");
    TP_TRY(check_groups(path, groups, n_groups));

    tp_status_t st = TP_OK;
    hid_t fapl = H5I_INVALID_HID, fid = H5I_INVALID_HID, lcpl = H5I_INVALID_HID;
    size_t len = strlen(path);
    char *tmp = tp_malloc(len + 5, "checkpoint temporary path");
    if (!tmp) return TP_ERR_NOMEM;
    memcpy(tmp, path, len);
    memcpy(tmp + len, ".tmp", 5);

    TP_TRYGOTO(tp_ckpt_make_fapl(&fapl, TP_ERR_HDF5, path), st, out);
    TP_H5_CHECKGOTO(fid = H5Fcreate(tmp, H5F_ACC_TRUNC, H5P_DEFAULT, fapl), st, TP_ERR_HDF5, out,
                    "writing checkpoint %s: cannot create %s", path, tmp);
    TP_TRYGOTO(write_meta(fid, meta, config_text, path), st, out);
    TP_H5_CHECKGOTO(lcpl = H5Pcreate(H5P_LINK_CREATE), st, TP_ERR_HDF5, out,
                    "writing checkpoint %s", path);
    TP_H5_CHECKGOTO(H5Pset_create_intermediate_group(lcpl, 1), st, TP_ERR_HDF5, out,
                    "writing checkpoint %s", path);
    for (int g = 0; g < n_groups; g++)
        for (int i = 0; i < groups[g].n; i++)
            TP_TRYGOTO(write_tensor(fid, lcpl, groups[g].path, &groups[g].tensors[i], path), st,
                       out);

    /* HDF5's sec2 flush writes but never fsyncs; do it ourselves before the rename. */
    TP_H5_CHECKGOTO(H5Fflush(fid, H5F_SCOPE_GLOBAL), st, TP_ERR_HDF5, out, "writing checkpoint %s",
                    path);
    void *handle = NULL;
    TP_H5_CHECKGOTO(H5Fget_vfd_handle(fid, fapl, &handle), st, TP_ERR_HDF5, out,
                    "writing checkpoint %s", path);
    if (fsync(*(int *)handle) != 0) {
        st =
            TP_ERR(TP_ERR_IO, "writing checkpoint %s: fsync of %s: %s", path, tmp, strerror(errno));
        goto out;
    }
    TP_H5_CLOSE(H5Fclose, fid, st, TP_ERR_HDF5, "writing checkpoint %s: closing %s", path, tmp);
    if (st != TP_OK) goto out;
    if (rename(tmp, path) != 0) {
        st = TP_ERR(TP_ERR_IO, "writing checkpoint %s: rename from %s: %s", path, tmp,
                    strerror(errno));
        goto out;
    }
    st = fsync_parent_dir(path);
out:
    TP_H5_CLOSE(H5Pclose, lcpl, st, TP_ERR_HDF5, "writing checkpoint %s", path);
    TP_H5_CLOSE(H5Fclose, fid, st, TP_ERR_HDF5, "writing checkpoint %s", path);
    TP_H5_CLOSE(H5Pclose, fapl, st, TP_ERR_HDF5, "writing checkpoint %s", path);
    if (st != TP_OK && unlink(tmp) != 0 && errno != ENOENT && errno != EISDIR)
        tp_log_warn("could not remove %s: %s", tmp, strerror(errno));
    free(tmp);
    return st;
}
