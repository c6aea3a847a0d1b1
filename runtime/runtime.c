/* Runtime context, thread-count policy and small filesystem helpers used by the commands. */
#define _GNU_SOURCE
#include "runtime.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

double tp_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

int64_t tp_peak_rss_bytes(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    if (!f) return -1;
    char line[256];
    int64_t kb = -1;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "VmHWM: %" SCNd64 " kB", &kb) == 1) break;
    fclose(f);
    return kb < 0 ? -1 : kb * 1024;
}

tp_status_t tp_runtime_create(int *argc, char ***argv, tp_runtime_t **out)
{
    *out = NULL;
    tp_runtime_t *rt = tp_calloc(1, sizeof *rt, "runtime");
    if (!rt) return TP_ERR_NOMEM;
    rt->t_start = tp_now();
    tp_status_t st = tp_comm_create_world(argc, argv, &rt->comm);
    if (st != TP_OK) {
        free(rt);
        return st;
    }
    rt->rank = tp_comm_rank(rt->comm);
    rt->world_size = tp_comm_size(rt->comm);
    tp_log_set_identity(rt->rank, rt->world_size, tp_comm_host(rt->comm));
    *out = rt;
    return TP_OK;
}

void tp_runtime_free(tp_runtime_t *rt)
{
    if (!rt) return;
    tp_backend_free(rt->be);
    tp_comm_free(rt->comm);
    free(rt);
}

int tp_runtime_default_threads(const tp_runtime_t *rt)
{
    const char *env = getenv("OMP_NUM_THREADS");
    if (env && atoi(env) > 0) return atoi(env);
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    int local = tp_comm_local_size(rt->comm);
    int t = (int)(cores / (local > 0 ? local : 1));
    return t > 0 ? t : 1;
}

tp_status_t tp_runtime_open_backend(tp_runtime_t *rt, const tp_config_t *cfg)
{
    int threads = cfg->threads > 0 ? (int)cfg->threads : tp_runtime_default_threads(rt);
    TP_TRY(tp_backend_create(cfg->backend, threads, &rt->be));
    return tp_backend_set_precision(rt->be, strcmp(cfg->precision, "bf16") == 0 ? TP_PREC_BF16
                                                                                : TP_PREC_FP32);
}

tp_status_t tp_mkdir_p(const char *path)
{
    char buf[4096];
    if (snprintf(buf, sizeof buf, "%s", path) >= (int)sizeof buf)
        return TP_ERR(TP_ERR_IO, "path too long: %s", path);
    for (char *p = buf + 1; *p; p++) {
        if (*p != '/') continue;
        *p = '\0';
        if (mkdir(buf, 0755) != 0 && errno != EEXIST)
            return TP_ERR(TP_ERR_IO, "cannot create directory %s: %s", buf, strerror(errno));
        *p = '/';
    }
    if (mkdir(buf, 0755) != 0 && errno != EEXIST)
        return TP_ERR(TP_ERR_IO, "cannot create directory %s: %s", buf, strerror(errno));
    struct stat sb;
    if (stat(buf, &sb) != 0 || !S_ISDIR(sb.st_mode))
        return TP_ERR(TP_ERR_IO, "%s exists and is not a directory", buf);
    return TP_OK;
}

tp_status_t tp_write_file_atomic(const char *path, const char *text, size_t len)
{
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0) return TP_ERR(TP_ERR_IO, "cannot write %s: %s", tmp, strerror(errno));
    size_t done = 0;
    while (done < len) {
        ssize_t n = write(fd, text + done, len - done);
        if (n < 0) {
            if (errno == EINTR) continue;
            int e = errno;
            close(fd);
            unlink(tmp);
            return TP_ERR(TP_ERR_IO, "cannot write %s: %s", tmp, strerror(e));
        }
        done += (size_t)n;
    }
    if (fsync(fd) != 0 || close(fd) != 0) {
        int e = errno;
        unlink(tmp);
        return TP_ERR(TP_ERR_IO, "cannot sync %s: %s", tmp, strerror(e));
    }
    if (rename(tmp, path) != 0) {
        int e = errno;
        unlink(tmp);
        return TP_ERR(TP_ERR_IO, "cannot rename %s to %s: %s", tmp, path, strerror(e));
    }
    return TP_OK;
}

tp_status_t tp_read_file(const char *path, char **out, size_t *len)
{
    *out = NULL;
    FILE *f = fopen(path, "rb");
    if (!f) return TP_ERR(TP_ERR_IO, "cannot open %s: %s", path, strerror(errno));
    size_t cap = 4096, n = 0;
    char *buf = tp_malloc(cap, "file contents");
    while (buf) {
        size_t got = fread(buf + n, 1, cap - n - 1, f);
        n += got;
        if (n < cap - 1) break;
        char *bigger = realloc(buf, cap * 2);
        if (!bigger) {
            free(buf);
            buf = NULL;
            break;
        }
        buf = bigger;
        cap *= 2;
    }
    int err = ferror(f);
    fclose(f);
    if (!buf) return TP_ERR_NOMEM;
    if (err) {
        free(buf);
        return TP_ERR(TP_ERR_IO, "cannot read %s", path);
    }
    buf[n] = '\0';
    *out = buf;
    if (len) *len = n;
    return TP_OK;
}
