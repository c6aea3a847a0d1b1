/* Status codes, error reporting and the check macros every module uses.
 *
 * Library functions return tp_status_t; only main() decides to exit. An error is reported once,
 * where it is detected, with rank, host, file:line and the library's own message; callers only
 * propagate the status (TP_TRY). */
#ifndef TP_ERROR_H
#define TP_ERROR_H

#include <stddef.h>

typedef enum {
    TP_OK = 0,
    TP_ERR_USAGE,       /* bad command line */
    TP_ERR_CONFIG,      /* bad config file or --set override */
    TP_ERR_DATA,        /* missing or malformed data file */
    TP_ERR_CKPT,        /* missing, corrupt or incompatible checkpoint */
    TP_ERR_IO,          /* operating-system I/O failure */
    TP_ERR_NOMEM,       /* allocation failed */
    TP_ERR_MPI,         /* MPI call failed */
    TP_ERR_HDF5,        /* HDF5 call failed */
    TP_ERR_CUDA,        /* CUDA/cuBLAS/NCCL call failed */
    TP_ERR_UNSUPPORTED, /* feature not available in this build or on this machine */
    TP_ERR_REMOTE,      /* another rank failed; it printed the reason */
    TP_ERR_INTERNAL,    /* a bug */
    TP_STOPPED,         /* not an error: training stopped on request after a checkpoint */
    TP_STATUS_COUNT
} tp_status_t;

const char *tp_status_str(tp_status_t st);

/* Process identity used to prefix every message; set once by the runtime at start-up. */
void tp_log_set_identity(int rank, int world_size, const char *host);
int tp_log_rank(void);
/* While muted, errors are not printed (used on ranks > 0 for failures every rank meets
 * identically, such as a bad config, so the message appears once). */
void tp_log_mute(int muted);

/* Prints "tulpar: error [rank R on HOST]: MESSAGE (file:line)" to stderr. */
void tp_log_error_at(const char *file, int line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Warnings go to stderr from every rank; info lines from rank 0 only (stdout). */
void tp_log_warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void tp_log_info(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Report an error and evaluate to its status: `return TP_ERR(TP_ERR_DATA, "...", ...);` */
tp_status_t tp_err_at(tp_status_t status, const char *file, int line, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
#define TP_ERR(status, ...) tp_err_at((status), __FILE__, __LINE__, __VA_ARGS__)

/* Propagate a failed status without printing again. */
#define TP_TRY(expr)                                                                               \
    do {                                                                                           \
        tp_status_t tp_try_st_ = (expr);                                                           \
        if (tp_try_st_ != TP_OK) return tp_try_st_;                                                \
    } while (0)

/* Same, but jump to a cleanup label with the status stored in `st`. */
#define TP_TRYGOTO(expr, st, label)                                                                \
    do {                                                                                           \
        (st) = (expr);                                                                             \
        if ((st) != TP_OK) goto label;                                                             \
    } while (0)

/* Allocation with the one out-of-memory policy: report what was asked for and fail. */
void *tp_malloc_at(size_t bytes, const char *what, const char *file, int line);
void *tp_calloc_at(size_t n, size_t size, const char *what, const char *file, int line);
/* 64-byte aligned allocation (for SIMD and page-friendly flat buffers); free with free(). */
void *tp_aligned_alloc_at(size_t bytes, const char *what, const char *file, int line);
#define tp_malloc(bytes, what)        tp_malloc_at((bytes), (what), __FILE__, __LINE__)
#define tp_calloc(n, size, what)      tp_calloc_at((n), (size), (what), __FILE__, __LINE__)
#define tp_aligned_alloc(bytes, what) tp_aligned_alloc_at((bytes), (what), __FILE__, __LINE__)
char *tp_strdup(const char *s);

#endif
