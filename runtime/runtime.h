/* The process-wide runtime context: the world communicator, this process's identity, and the
 * compute backend chosen by config. The one global state Tulpar has, created by main() and
 * passed explicitly everywhere else. */
#ifndef TP_RUNTIME_H
#define TP_RUNTIME_H

#include "backend.h"
#include "comm.h"
#include "config.h"

typedef struct tp_runtime {
    tp_comm_t *comm;
    tp_backend_t *be; /* NULL until tp_runtime_open_backend */
    int rank, world_size;
    double t_start; /* tp_now() at start-up */
} tp_runtime_t;

/* Start the communicator (MPI only under an MPI launcher) and set the log identity. */
tp_status_t tp_runtime_create(int *argc, char ***argv, tp_runtime_t **out);
/* Stops the backend and the communicator (MPI_Finalize when it was initialised here). */
void tp_runtime_free(tp_runtime_t *rt);

/* Threads per rank for cfg->threads == 0: OMP_NUM_THREADS if set, else online cores divided by
 * the ranks on this node (at least 1). */
int tp_runtime_default_threads(const tp_runtime_t *rt);
/* Create rt->be from cfg (runtime.backend, runtime.threads). */
tp_status_t tp_runtime_open_backend(tp_runtime_t *rt, const tp_config_t *cfg);

/* Peak resident set size of this process (VmHWM), or -1 where /proc is unavailable. */
int64_t tp_peak_rss_bytes(void);

/* Monotonic wall-clock seconds. */
double tp_now(void);

/* mkdir -p; TP_ERR_IO naming the path on failure. */
tp_status_t tp_mkdir_p(const char *path);
/* Write a whole file atomically (tmp + fsync + rename). */
tp_status_t tp_write_file_atomic(const char *path, const char *text, size_t len);
/* Read a whole file into a malloc'd NUL-terminated string. */
tp_status_t tp_read_file(const char *path, char **out, size_t *len);

#endif
