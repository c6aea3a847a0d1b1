/* IDX dataset loader (MNIST / Fashion-MNIST layout, gzip or plain) and float batch assembly.
 *
 * Files go through zlib's gz* interface, which reads uncompressed files transparently, so one
 * code path serves both. Every payload is read with a few large gzread calls straight into its
 * final array; the per-byte work is inflate alone. */
#include "data.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#define IDX_MAGIC_IMAGES 0x00000803u /* uint8, 3 dimensions */
#define IDX_MAGIC_LABELS 0x00000801u /* uint8, 1 dimension */
#define IDX_MAX_SIDE     4096
/* gzread takes an unsigned and returns an int: stay well inside both. */
#define IDX_READ_CHUNK ((size_t)1 << 30)
#define IDX_GZ_BUFFER  (1u << 20)

typedef struct idx_file {
    gzFile gz;
    char path[4096];
} idx_file_t;

static uint32_t be32(const unsigned char *b)
{
    return (uint32_t)b[0] << 24 | (uint32_t)b[1] << 16 | (uint32_t)b[2] << 8 | (uint32_t)b[3];
}

/* gzerror's text already starts with "PATH: "; drop it since every message leads with the path. */
static const char *idx_gzerror(const idx_file_t *f, int *errnum)
{
    const char *msg = gzerror(f->gz, errnum);
    size_t len = strlen(f->path);
    if (strncmp(msg, f->path, len) == 0 && msg[len] == ':' && msg[len + 1] == ' ') msg += len + 2;
    return msg;
}

static void idx_close(idx_file_t *f)
{
    if (f->gz) gzclose(f->gz);
    f->gz = NULL;
}

/* Opens DIR/NAME.gz, falling back to DIR/NAME only when the .gz does not exist (any other
 * failure on the .gz, e.g. permissions, is reported as is rather than masked). */
static tp_status_t idx_open(const char *dir, const char *name, idx_file_t *f)
{
    char plain[sizeof f->path];
    int len = snprintf(f->path, sizeof f->path, "%s/%s.gz", dir, name);
    if (len < 0 || (size_t)len >= sizeof f->path)
        return TP_ERR(TP_ERR_DATA, "%s/%s.gz: path too long", dir, name);
    snprintf(plain, sizeof plain, "%s/%s", dir, name);

    errno = 0;
    f->gz = gzopen(f->path, "rb");
    if (!f->gz) {
        int err_gz = errno;
        if (err_gz != ENOENT)
            return TP_ERR(TP_ERR_DATA, "%s: cannot open: %s", f->path,
                          err_gz ? strerror(err_gz) : "zlib could not allocate its state");
        errno = 0;
        f->gz = gzopen(plain, "rb");
        if (!f->gz) {
            int err = errno;
            return TP_ERR(TP_ERR_DATA, "%s: cannot open (nor %s.gz): %s", plain, plain,
                          err ? strerror(err) : "zlib could not allocate its state");
        }
        memcpy(f->path, plain, sizeof plain);
    }
    if (gzbuffer(f->gz, IDX_GZ_BUFFER) != 0) {
        idx_close(f);
        return TP_ERR(TP_ERR_DATA, "%s: gzbuffer(%u) failed", f->path, IDX_GZ_BUFFER);
    }
    return TP_OK;
}

/* Reads exactly `want` bytes; `what` names the part of the file for the messages. A short
 * read is "truncated" (zlib's Z_BUF_ERROR means the gzip stream itself was cut); any other zlib
 * error is reported with gzerror's text. */
static tp_status_t idx_read(idx_file_t *f, void *buf, size_t want, const char *what)
{
    size_t got = 0;
    int r = 0;
    while (got < want) {
        size_t chunk = want - got < IDX_READ_CHUNK ? want - got : IDX_READ_CHUNK;
        r = gzread(f->gz, (char *)buf + got, (unsigned)chunk);
        if (r <= 0) break;
        got += (size_t)r;
    }
    if (got == want) return TP_OK;

    int errnum = Z_OK;
    const char *msg = idx_gzerror(f, &errnum);
    if (errnum != Z_OK && errnum != Z_BUF_ERROR)
        return TP_ERR(TP_ERR_DATA, "%s: corrupt or unreadable (%zu of %zu bytes of %s read): %s",
                      f->path, got, want, what, msg);
    if (errnum == Z_BUF_ERROR)
        return TP_ERR(TP_ERR_DATA, "%s: truncated: expected %zu bytes of %s, got %zu (gzip: %s)",
                      f->path, want, what, got, msg);
    return TP_ERR(TP_ERR_DATA, "%s: truncated: expected %zu bytes of %s, got %zu", f->path, want,
                  what, got);
}

/* The payload must end the file. Reading one more byte also makes zlib reach the gzip trailer,
 * so a CRC or length mismatch (corruption the inflater did not trip over) surfaces here. */
static tp_status_t idx_expect_eof(idx_file_t *f)
{
    unsigned char extra[256];
    int r = gzread(f->gz, extra, sizeof extra);
    if (r > 0) {
        long long more = r;
        while ((r = gzread(f->gz, extra, sizeof extra)) > 0)
            more += r;
        return TP_ERR(TP_ERR_DATA,
                      "%s: %lld%s unexpected byte(s) after the payload (trailing data)", f->path,
                      more, r < 0 ? " or more" : "");
    }
    int errnum = Z_OK;
    const char *msg = idx_gzerror(f, &errnum);
    if (r < 0 || errnum != Z_OK)
        return TP_ERR(TP_ERR_DATA, "%s: corrupt gzip data at the end of the file: %s", f->path,
                      msg);
    return TP_OK;
}

static tp_status_t idx_check_magic(const idx_file_t *f, uint32_t magic, uint32_t expected)
{
    if (magic == expected) return TP_OK;
    const char *found = magic == IDX_MAGIC_IMAGES   ? " (an IDX image file)"
                        : magic == IDX_MAGIC_LABELS ? " (an IDX label file)"
                                                    : "";
    return TP_ERR(TP_ERR_DATA, "%s: bad magic number 0x%08x%s, expected 0x%08x (IDX uint8 %s)",
                  f->path, magic, found, expected,
                  expected == IDX_MAGIC_IMAGES ? "images, 3 dimensions" : "labels, 1 dimension");
}

static tp_status_t idx_read_image_header(idx_file_t *f, int64_t *n, int64_t *rows, int64_t *cols)
{
    unsigned char h[16];
    TP_TRY(idx_read(f, h, 4, "IDX header"));
    TP_TRY(idx_check_magic(f, be32(h), IDX_MAGIC_IMAGES));
    TP_TRY(idx_read(f, h + 4, 12, "IDX header"));
    *n = be32(h + 4);
    *rows = be32(h + 8);
    *cols = be32(h + 12);
    if (*n < 1 || *rows < 1 || *rows > IDX_MAX_SIDE || *cols < 1 || *cols > IDX_MAX_SIDE)
        return TP_ERR(TP_ERR_DATA,
                      "%s: implausible dimensions %lld x %lld x %lld (need n >= 1 and rows, cols "
                      "in 1..%d)",
                      f->path, (long long)*n, (long long)*rows, (long long)*cols, IDX_MAX_SIDE);
    /* n < 2^32 and rows*cols <= 2^24 keep the product below 2^56; the size_t check matters only
     * on 32-bit hosts. */
    uint64_t bytes = (uint64_t)*n * (uint64_t)*rows * (uint64_t)*cols;
    if (bytes > (uint64_t)SIZE_MAX / 2)
        return TP_ERR(TP_ERR_DATA, "%s: %lld images of %lld x %lld do not fit in memory", f->path,
                      (long long)*n, (long long)*rows, (long long)*cols);
    return TP_OK;
}

static tp_status_t idx_read_label_header(idx_file_t *f, int64_t *n)
{
    unsigned char h[8];
    TP_TRY(idx_read(f, h, 4, "IDX header"));
    TP_TRY(idx_check_magic(f, be32(h), IDX_MAGIC_LABELS));
    TP_TRY(idx_read(f, h + 4, 4, "IDX header"));
    *n = be32(h + 4);
    if (*n < 1) return TP_ERR(TP_ERR_DATA, "%s: the file declares 0 labels", f->path);
    return TP_OK;
}

static tp_status_t idx_finish(idx_file_t *f)
{
    TP_TRY(idx_expect_eof(f));
    int rc = gzclose(f->gz);
    f->gz = NULL;
    if (rc != Z_OK)
        return TP_ERR(TP_ERR_DATA, "%s: closing failed: %s", f->path,
                      rc == Z_ERRNO ? strerror(errno) : zError(rc));
    return TP_OK;
}

tp_status_t tp_dataset_load_idx(const char *dir, const char *split, tp_dataset_t **out)
{
    tp_status_t st = TP_OK;
    idx_file_t img = {0}, lab = {0};
    char name[256];
    *out = NULL;

    tp_dataset_t *ds = tp_calloc(1, sizeof *ds, "dataset");
    if (!ds) return TP_ERR_NOMEM;
    ds->mean = 0.0f;
    ds->std = 1.0f;
    ds->normalize = false;

    /* Both headers first: a count mismatch is reported before 47 MB are inflated. */
    snprintf(name, sizeof name, "%s-images-idx3-ubyte", split);
    TP_TRYGOTO(idx_open(dir, name, &img), st, fail);
    TP_TRYGOTO(idx_read_image_header(&img, &ds->n, &ds->rows, &ds->cols), st, fail);
    snprintf(name, sizeof name, "%s-labels-idx1-ubyte", split);
    TP_TRYGOTO(idx_open(dir, name, &lab), st, fail);
    int64_t n_labels = 0;
    TP_TRYGOTO(idx_read_label_header(&lab, &n_labels), st, fail);
    if (n_labels != ds->n) {
        st = TP_ERR(TP_ERR_DATA, "%s has %lld images but %s has %lld labels", img.path,
                    (long long)ds->n, lab.path, (long long)n_labels);
        goto fail;
    }

    size_t npix = (size_t)ds->n * (size_t)ds->rows * (size_t)ds->cols;
    ds->pixels = tp_malloc(npix, "image pixels");
    ds->labels = tp_malloc((size_t)ds->n, "labels");
    if (!ds->pixels || !ds->labels) {
        st = TP_ERR_NOMEM;
        goto fail;
    }
    TP_TRYGOTO(idx_read(&img, ds->pixels, npix, "pixel data"), st, fail);
    TP_TRYGOTO(idx_finish(&img), st, fail);
    TP_TRYGOTO(idx_read(&lab, ds->labels, (size_t)ds->n, "label data"), st, fail);
    TP_TRYGOTO(idx_finish(&lab), st, fail);

    /* uint8 labels are < 256 by construction; fewer than 2 classes cannot be trained. */
    int max_label = 0;
    for (int64_t i = 0; i < ds->n; i++)
        if (ds->labels[i] > max_label) max_label = ds->labels[i];
    ds->n_classes = max_label + 1 < 2 ? 2 : max_label + 1;

    *out = ds;
    return TP_OK;

fail:
    idx_close(&img);
    idx_close(&lab);
    tp_dataset_free(ds);
    return st;
}

void tp_dataset_free(tp_dataset_t *ds)
{
    if (!ds) return;
    free(ds->pixels);
    free(ds->labels);
    free(ds);
}

void tp_dataset_fill_batch(const tp_dataset_t *ds, const int64_t *idx, int64_t count, float *x,
                           int32_t *y)
{
    const int64_t d = ds->rows * ds->cols;
    /* (p/255 - mean)/std folded into one multiply-add per pixel. */
    const float scale = ds->normalize ? 1.0f / (255.0f * ds->std) : 1.0f / 255.0f;
    const float shift = ds->normalize ? -ds->mean / ds->std : 0.0f;
#pragma omp parallel for schedule(static) if (count * d >= (1 << 16))
    for (int64_t i = 0; i < count; i++) {
        const uint8_t *p = ds->pixels + idx[i] * d;
        float *xi = x + i * d;
        for (int64_t k = 0; k < d; k++)
            xi[k] = (float)p[k] * scale + shift;
        y[i] = ds->labels[idx[i]];
    }
}
