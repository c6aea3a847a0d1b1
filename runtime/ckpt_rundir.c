/* Checkpoint files in a run directory: naming (DIR/ckpt_<step>.h5), picking the newest valid
 * one to resume from, and rotation. Only names of the exact form ckpt_<digits>.h5 (and their
 * leftover .tmp files) are ever considered, so other files in the directory are safe. */
#include "ckpt.h"

#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

void tp_ckpt_path_for_step(const char *dir, int64_t step, char *out, size_t cap)
{
    snprintf(out, cap, "%s/ckpt_%08" PRId64 ".h5", dir, step);
}

/* Step of a name "ckpt_<digits><suffix>", or -1 when it does not have exactly that form. */
static int64_t parse_name(const char *name, const char *suffix)
{
    if (strncmp(name, "ckpt_", 5) != 0) return -1;
    const char *p = name + 5, *q = p;
    int64_t step = 0;
    while (*q >= '0' && *q <= '9') {
        if (q - p >= 18) return -1; /* would overflow int64 */
        step = step * 10 + (*q - '0');
        q++;
    }
    if (q == p || strcmp(q, suffix) != 0) return -1;
    return step;
}

typedef struct ckpt_file {
    int64_t step;
    char *name;
} ckpt_file_t;

typedef struct ckpt_list {
    ckpt_file_t *v;
    size_t n, cap;
} ckpt_list_t;

static void list_free(ckpt_list_t *l)
{
    for (size_t i = 0; i < l->n; i++)
        free(l->v[i].name);
    free(l->v);
    memset(l, 0, sizeof *l);
}

static tp_status_t list_push(ckpt_list_t *l, int64_t step, const char *name)
{
    if (l->n == l->cap) {
        size_t cap = l->cap ? 2 * l->cap : 16;
        ckpt_file_t *v = realloc(l->v, cap * sizeof *v);
        if (!v) return TP_ERR(TP_ERR_NOMEM, "out of memory listing checkpoints");
        l->v = v;
        l->cap = cap;
    }
    char *copy = tp_strdup(name);
    if (!copy) return TP_ERR_NOMEM;
    l->v[l->n++] = (ckpt_file_t){step, copy};
    return TP_OK;
}

/* Regular files in `dir` named ckpt_<digits><suffix>. A missing dir is an empty list. */
static tp_status_t list_dir(const char *dir, const char *suffix, ckpt_list_t *l)
{
    memset(l, 0, sizeof *l);
    DIR *d = opendir(dir);
    if (!d) {
        if (errno == ENOENT) return TP_OK;
        return TP_ERR(TP_ERR_IO, "checkpoint directory %s: %s", dir, strerror(errno));
    }
    tp_status_t st = TP_OK;
    struct dirent *e;
    char full[4096];
    for (errno = 0; (e = readdir(d)) != NULL; errno = 0) {
        int64_t step = parse_name(e->d_name, suffix);
        if (step < 0) continue;
        struct stat sb;
        snprintf(full, sizeof full, "%s/%s", dir, e->d_name);
        if (stat(full, &sb) != 0 || !S_ISREG(sb.st_mode)) continue;
        TP_TRYGOTO(list_push(l, step, e->d_name), st, out);
    }
    if (errno != 0) st = TP_ERR(TP_ERR_IO, "reading directory %s: %s", dir, strerror(errno));
out:
    closedir(d);
    if (st != TP_OK) list_free(l);
    return st;
}

static int by_step_desc(const void *a, const void *b)
{
    int64_t x = ((const ckpt_file_t *)a)->step, y = ((const ckpt_file_t *)b)->step;
    return (x < y) - (x > y);
}

tp_status_t tp_ckpt_find_latest(const char *dir, char *out, size_t cap)
{
    if (cap > 0) out[0] = '\0';
    ckpt_list_t l;
    TP_TRY(list_dir(dir, ".h5", &l));
    if (l.n > 1) qsort(l.v, l.n, sizeof *l.v, by_step_desc);
    tp_status_t st = TP_OK;
    for (size_t i = 0; i < l.n; i++) {
        char path[4096];
        if ((size_t)snprintf(path, sizeof path, "%s/%s", dir, l.v[i].name) >= sizeof path) {
            st = TP_ERR(TP_ERR_IO, "checkpoint path %s/%s too long", dir, l.v[i].name);
            break;
        }
        /* open and verify report the details as errors; say why we carry on anyway */
        tp_ckpt_t *ck = NULL;
        if (tp_ckpt_open(path, &ck) != TP_OK) {
            tp_log_warn("skipping checkpoint %s: it does not open (see above)", path);
            continue;
        }
        tp_status_t vst = tp_ckpt_verify(ck);
        tp_ckpt_close(ck);
        if (vst != TP_OK) {
            tp_log_warn("skipping checkpoint %s: it fails verification (see above)", path);
            continue;
        }
        if (strlen(path) >= cap) {
            st = TP_ERR(TP_ERR_INTERNAL, "checkpoint path %s does not fit in %zu bytes", path, cap);
            break;
        }
        memcpy(out, path, strlen(path) + 1);
        break;
    }
    list_free(&l);
    return st;
}

static tp_status_t remove_file(const char *dir, const char *name)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    if (unlink(path) != 0 && errno != ENOENT)
        return TP_ERR(TP_ERR_IO, "removing old checkpoint %s: %s", path, strerror(errno));
    return TP_OK;
}

/* keep < 1 keeps everything: deleting every checkpoint is never what a config means. Leftover
 * ckpt_<step>.h5.tmp files are from writes that died; the single writer calls this after its
 * own write has completed, so none of them is in progress. */
tp_status_t tp_ckpt_rotate(const char *dir, int64_t keep)
{
    ckpt_list_t l;
    tp_status_t st = TP_OK;
    TP_TRY(list_dir(dir, ".h5.tmp", &l));
    for (size_t i = 0; i < l.n && st == TP_OK; i++)
        st = remove_file(dir, l.v[i].name);
    list_free(&l);
    if (st != TP_OK || keep < 1) return st;

    TP_TRY(list_dir(dir, ".h5", &l));
    if (l.n > 1) qsort(l.v, l.n, sizeof *l.v, by_step_desc);
    for (size_t i = (size_t)keep; i < l.n && st == TP_OK; i++)
        st = remove_file(dir, l.v[i].name);
    list_free(&l);
    return st;
}
