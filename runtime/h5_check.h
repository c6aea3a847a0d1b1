/* The HDF5 check macros: every HDF5 call goes through one of them, so a failure is reported once,
 * at the call site, with the statement and the innermost message of HDF5's error stack.
 *
 * HDF5 prints its whole error stack to stderr by default, which is long and duplicates our own
 * report; tp_h5_quiet() switches that off and must be called at every entry point of a module
 * that uses HDF5 (it is cheap after the first call).
 *
 *   TP_H5_CHECK(fid = H5Fopen(...), TP_ERR_CKPT, "checkpoint %s", path);       returns status
 *   TP_H5_CHECKGOTO(ds = H5Dopen2(...), st, TP_ERR_CKPT, out, "checkpoint %s", path);
 *   TP_H5_CLOSE(H5Dclose, ds, st, TP_ERR_HDF5, "writing %s", path);   in cleanup code
 *
 * A statement fails when its value is negative: herr_t/htri_t < 0, H5I_INVALID_HID, and also
 * HADDR_UNDEF (all ones, negative as int64_t). Calls returning size_t (0 on error) cannot go
 * through the macros and are checked by hand. */
#ifndef TP_H5_CHECK_H
#define TP_H5_CHECK_H

#include <hdf5.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "tp_error.h"

typedef struct tp_h5_innermost {
    char desc[384];
    hid_t min_num;
    int found;
} tp_h5_innermost_t;

static inline herr_t tp_h5_walk_cb_(unsigned n, const H5E_error2_t *err, void *data)
{
    tp_h5_innermost_t *in = data;
    if (n != 0) return 0;
    in->found = 1;
    in->min_num = err->min_num;
    snprintf(in->desc, sizeof in->desc, "%s", err->desc ? err->desc : "");
    return 0;
}

/* The most specific entry of the current error stack, e.g. "file signature not found (Not an
 * HDF5 file)". Does not clear the stack. */
static inline void tp_h5_error_text(char *buf, size_t cap)
{
    tp_h5_innermost_t in = {.desc = "", .min_num = H5I_INVALID_HID, .found = 0};
    if (H5Ewalk2(H5E_DEFAULT, H5E_WALK_UPWARD, tp_h5_walk_cb_, &in) < 0 || !in.found) {
        snprintf(buf, cap, "no message on the HDF5 error stack");
        return;
    }
    char minor[128] = "";
    H5E_type_t type;
    if (in.min_num >= 0 && H5Eget_msg(in.min_num, &type, minor, sizeof minor) < 0) minor[0] = 0;
    if (minor[0] && in.desc[0])
        snprintf(buf, cap, "%s (%s)", in.desc, minor);
    else
        snprintf(buf, cap, "%s", in.desc[0] ? in.desc : minor);
}

/* Switch off HDF5's automatic stack printing (once per translation unit). */
static inline void tp_h5_quiet(void)
{
    static int done = 0;
    if (done) return;
    if (H5Eset_auto2(H5E_DEFAULT, NULL, NULL) >= 0) done = 1;
}

/* Report "CONTEXT: HDF5 MESSAGE [STATEMENT]" at file:line and return `status`. */
static inline tp_status_t tp_h5_fail_at(const char *file, int line, const char *stmt,
                                        tp_status_t status, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
static inline tp_status_t tp_h5_fail_at(const char *file, int line, const char *stmt,
                                        tp_status_t status, const char *fmt, ...)
{
    char ctx[1024], h5msg[600];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(ctx, sizeof ctx, fmt, ap);
    va_end(ap);
    tp_h5_error_text(h5msg, sizeof h5msg);
    tp_log_error_at(file, line, "%s: %s [%s]", ctx, h5msg, stmt);
    return status;
}

#define TP_H5_FAILED_(stmt) ((int64_t)(stmt) < 0)

/* Return `status` from the enclosing function when `stmt` fails. */
#define TP_H5_CHECK(stmt, status, ...)                                                             \
    do {                                                                                           \
        if (TP_H5_FAILED_(stmt))                                                                   \
            return tp_h5_fail_at(__FILE__, __LINE__, #stmt, (status), __VA_ARGS__);                \
    } while (0)

/* Store `status` in `st` and jump to `label` when `stmt` fails. */
#define TP_H5_CHECKGOTO(stmt, st, status, label, ...)                                              \
    do {                                                                                           \
        if (TP_H5_FAILED_(stmt)) {                                                                 \
            (st) = tp_h5_fail_at(__FILE__, __LINE__, #stmt, (status), __VA_ARGS__);                \
            goto label;                                                                            \
        }                                                                                          \
    } while (0)

/* Close `id` with `closefn` if it is open and mark it closed. A close failure is reported only
 * when nothing failed before (st == TP_OK): after an earlier error the first report is the one
 * that matters, and closing is then best-effort cleanup. */
#define TP_H5_CLOSE(closefn, id, st, status, ...)                                                  \
    do {                                                                                           \
        if ((id) >= 0) {                                                                           \
            herr_t tp_h5_close_rc_ = closefn(id);                                                  \
            (id) = H5I_INVALID_HID;                                                                \
            if (tp_h5_close_rc_ < 0 && (st) == TP_OK)                                              \
                (st) = tp_h5_fail_at(__FILE__, __LINE__, #closefn "(" #id ")", (status),           \
                                     __VA_ARGS__);                                                 \
        }                                                                                          \
    } while (0)

#endif
