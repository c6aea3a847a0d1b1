/* Error and log output with rank/host prefixes, and the allocation wrappers. */
#include "tp_error.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The identity is part of the process-wide runtime context: written once at start-up. */
static int g_rank = 0;
static int g_world = 1;
static char g_host[64] = "localhost";
static int g_muted = 0;

static const char *const status_names[TP_STATUS_COUNT] = {
    [TP_OK] = "ok",
    [TP_ERR_USAGE] = "usage error",
    [TP_ERR_CONFIG] = "config error",
    [TP_ERR_DATA] = "data error",
    [TP_ERR_CKPT] = "checkpoint error",
    [TP_ERR_IO] = "I/O error",
    [TP_ERR_NOMEM] = "out of memory",
    [TP_ERR_MPI] = "MPI error",
    [TP_ERR_HDF5] = "HDF5 error",
    [TP_ERR_CUDA] = "CUDA error",
    [TP_ERR_UNSUPPORTED] = "unsupported",
    [TP_ERR_REMOTE] = "failure on another rank",
    [TP_ERR_INTERNAL] = "internal error",
    [TP_STOPPED] = "stopped on request",
};

const char *tp_status_str(tp_status_t st)
{
    if ((int)st < 0 || st >= TP_STATUS_COUNT) return "unknown status";
    return status_names[st];
}

void tp_log_set_identity(int rank, int world_size, const char *host)
{
    g_rank = rank;
    g_world = world_size;
    if (host) snprintf(g_host, sizeof g_host, "%s", host);
}

int tp_log_rank(void)
{
    return g_rank;
}

void tp_log_mute(int muted)
{
    g_muted = muted;
}

static void log_error_v(const char *file, int line, const char *fmt, va_list ap)
{
    if (g_muted) return;
    char msg[2048];
    vsnprintf(msg, sizeof msg, fmt, ap);
    const char *base = strrchr(file, '/');
    base = base ? base + 1 : file;
    if (g_world > 1)
        fprintf(stderr, "tulpar: error [rank %d on %s]: %s (%s:%d)\n", g_rank, g_host, msg, base,
                line);
    else
        fprintf(stderr, "tulpar: error: %s (%s:%d)\n", msg, base, line);
    fflush(stderr);
}

void tp_log_error_at(const char *file, int line, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    log_error_v(file, line, fmt, ap);
    va_end(ap);
}

tp_status_t tp_err_at(tp_status_t status, const char *file, int line, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    log_error_v(file, line, fmt, ap);
    va_end(ap);
    return status;
}

void tp_log_warn(const char *fmt, ...)
{
    char msg[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (g_world > 1)
        fprintf(stderr, "tulpar: warning [rank %d on %s]: %s\n", g_rank, g_host, msg);
    else
        fprintf(stderr, "tulpar: warning: %s\n", msg);
    fflush(stderr);
}

void tp_log_info(const char *fmt, ...)
{
    if (g_rank != 0) return;
    va_list ap;
    va_start(ap, fmt);
    vfprintf(stdout, fmt, ap);
    va_end(ap);
    fputc('\n', stdout);
    fflush(stdout);
}

void *tp_malloc_at(size_t bytes, const char *what, const char *file, int line)
{
    void *p = malloc(bytes ? bytes : 1);
    if (!p) tp_log_error_at(file, line, "out of memory allocating %zu bytes for %s", bytes, what);
    return p;
}

void *tp_calloc_at(size_t n, size_t size, const char *what, const char *file, int line)
{
    void *p = calloc(n ? n : 1, size ? size : 1);
    if (!p)
        tp_log_error_at(file, line, "out of memory allocating %zu x %zu bytes for %s", n, size,
                        what);
    return p;
}

void *tp_aligned_alloc_at(size_t bytes, const char *what, const char *file, int line)
{
    size_t rounded = (bytes + 63) & ~(size_t)63;
    void *p = aligned_alloc(64, rounded ? rounded : 64);
    if (!p) tp_log_error_at(file, line, "out of memory allocating %zu bytes for %s", bytes, what);
    return p;
}

char *tp_strdup(const char *s)
{
    if (!s) return NULL;
    size_t n = strlen(s) + 1;
    char *d = tp_malloc(n, "string");
    if (d) memcpy(d, s, n);
    return d;
}
