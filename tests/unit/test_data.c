/* Unit test of the data module: IDX loading (gzip and plain) from synthetic files, every
 * malformed-file error with its message, batch normalisation, and the distributed sampler's
 * rank-independence. Also checks the real Fashion-MNIST files when they are installed. */
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/stat.h>
#include <time.h>
#include <zlib.h>

#include "data.h"
#include "test_util.h"

#define FASHION_DIR "/usr/share/datasets/fashion-mnist"

/* ---- writing synthetic IDX files ---- */

typedef struct {
    unsigned char *b;
    size_t len;
} buf_t;

static void put_be32(unsigned char *p, uint32_t v)
{
    p[0] = (unsigned char)(v >> 24);
    p[1] = (unsigned char)(v >> 16);
    p[2] = (unsigned char)(v >> 8);
    p[3] = (unsigned char)v;
}

static uint8_t pixel_of(int64_t i, int64_t k)
{
    /* Structured enough that deflate emits Huffman blocks rather than stored ones. */
    return (uint8_t)((i * 7 + k * 13 + (i * k) / 5) & 0xff);
}

static uint8_t label_of(int64_t i, int classes)
{
    return (uint8_t)((i * 7 + 3) % classes);
}

/* Header plus n*rows*cols pixels; `extra` trailing bytes appended after the payload. */
static buf_t make_images(uint32_t magic, uint32_t n, uint32_t rows, uint32_t cols, size_t extra)
{
    size_t d = (size_t)rows * cols;
    buf_t out = {malloc(16 + n * d + extra), 16 + n * d + extra};
    put_be32(out.b, magic);
    put_be32(out.b + 4, n);
    put_be32(out.b + 8, rows);
    put_be32(out.b + 12, cols);
    for (size_t i = 0; i < n; i++)
        for (size_t k = 0; k < d; k++)
            out.b[16 + i * d + k] = pixel_of((int64_t)i, (int64_t)k);
    memset(out.b + 16 + n * d, 0xab, extra);
    return out;
}

static buf_t make_labels(uint32_t magic, uint32_t n, int classes)
{
    buf_t out = {malloc(8 + n), 8 + n};
    put_be32(out.b, magic);
    put_be32(out.b + 4, n);
    for (size_t i = 0; i < n; i++)
        out.b[8 + i] = label_of((int64_t)i, classes);
    return out;
}

static void write_file(const char *dir, const char *name, buf_t data, bool gz, size_t keep)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s%s", dir, name, gz ? ".gz" : "");
    size_t len = keep < data.len ? keep : data.len;
    if (gz) {
        gzFile f = gzopen(path, "wb");
        if (!f || gzwrite(f, data.b, (unsigned)len) != (int)len || gzclose(f) != Z_OK) {
            fprintf(stderr, "cannot write %s\n", path);
            exit(2);
        }
    } else {
        FILE *f = fopen(path, "wb");
        if (!f || fwrite(data.b, 1, len, f) != len || fclose(f) != 0) {
            fprintf(stderr, "cannot write %s: %s\n", path, strerror(errno));
            exit(2);
        }
    }
}

/* A directory holding split "s" with the given images and labels, then both buffers freed. */
static char *make_split(const char *tag, buf_t img, bool img_gz, buf_t lab, bool lab_gz)
{
    char *dir = tp_test_tmpdir(tag);
    write_file(dir, "s-images-idx3-ubyte", img, img_gz, SIZE_MAX);
    write_file(dir, "s-labels-idx1-ubyte", lab, lab_gz, SIZE_MAX);
    free(img.b);
    free(lab.b);
    return dir;
}

static long file_size(const char *path)
{
    struct stat sb;
    return stat(path, &sb) == 0 ? (long)sb.st_size : -1;
}

/* Removes a scratch directory made by make_split (only the names this test writes). */
static void remove_dir(char *dir)
{
    static const char *const names[4] = {"s-images-idx3-ubyte", "s-images-idx3-ubyte.gz",
                                         "s-labels-idx1-ubyte", "s-labels-idx1-ubyte.gz"};
    char path[4096];
    for (int i = 0; i < 4; i++) {
        snprintf(path, sizeof path, "%s/%s", dir, names[i]);
        unlink(path);
    }
    if (rmdir(dir) != 0) fprintf(stderr, "cannot remove %s: %s\n", dir, strerror(errno));
    free(dir);
}

/* ---- loading with stderr captured ---- */

static char captured[8192];

static tp_status_t load_capture(const char *dir, tp_dataset_t **ds)
{
    char tmpl[] = "/tmp/tulpar-test-data-stderr-XXXXXX";
    int fd = mkstemp(tmpl);
    int saved = dup(STDERR_FILENO);
    if (fd < 0 || saved < 0) {
        perror("mkstemp/dup");
        exit(2);
    }
    fflush(stderr);
    dup2(fd, STDERR_FILENO);
    tp_status_t st = tp_dataset_load_idx(dir, "s", ds);
    fflush(stderr);
    dup2(saved, STDERR_FILENO);
    close(saved);
    ssize_t got = pread(fd, captured, sizeof captured - 1, 0);
    captured[got > 0 ? got : 0] = '\0';
    close(fd);
    unlink(tmpl);
    fputs(captured, stderr); /* keep the expected messages visible in the log */
    return st;
}

/* Loading must fail with TP_ERR_DATA and the message must name `file` (under dir) and `what`. */
static void expect_error(const char *dir, const char *file, const char *what)
{
    tp_dataset_t *ds = (tp_dataset_t *)0x1;
    tp_status_t st = load_capture(dir, &ds);
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, file);
    CHECKF(st == TP_ERR_DATA, "%s: status %s", file, tp_status_str(st));
    CHECK(ds == NULL);
    CHECKF(strstr(captured, path) != NULL, "message does not name %s: %s", path, captured);
    if (what) CHECKF(strstr(captured, what) != NULL, "message lacks '%s': %s", what, captured);
    tp_dataset_free(st == TP_OK ? ds : NULL);
}

/* ---- loader tests ---- */

static void check_contents(const tp_dataset_t *ds, int64_t n, int64_t rows, int64_t cols,
                           int classes)
{
    CHECK(ds->n == n && ds->rows == rows && ds->cols == cols);
    int64_t bad = 0;
    for (int64_t i = 0; i < n; i++) {
        for (int64_t k = 0; k < rows * cols; k++)
            bad += ds->pixels[i * rows * cols + k] != pixel_of(i, k);
        bad += ds->labels[i] != label_of(i, classes);
    }
    CHECKF(bad == 0, "%lld wrong bytes", (long long)bad);
    CHECKF(ds->n_classes == (classes < 2 ? 2 : classes), "n_classes %lld",
           (long long)ds->n_classes);
}

static void test_load_ok(void)
{
    static const bool modes[4][2] = {{true, true}, {false, false}, {true, false}, {false, true}};
    for (int m = 0; m < 4; m++) {
        int classes = m == 1 ? 1 : 3 + m; /* m == 1: all labels 0, still 2 classes */
        char *dir = make_split("ok", make_images(0x803, 50, 5, 7, 0), modes[m][0],
                               make_labels(0x801, 50, classes), modes[m][1]);
        tp_dataset_t *ds = NULL;
        tp_status_t st = tp_dataset_load_idx(dir, "s", &ds);
        CHECKF(st == TP_OK, "mode %d: %s", m, tp_status_str(st));
        if (ds) check_contents(ds, 50, 5, 7, classes);
        tp_dataset_free(ds);
        remove_dir(dir);
    }

    /* With both present the .gz wins: the plain file here has a different size. */
    char *dir = make_split("prefer", make_images(0x803, 20, 3, 4, 0), true,
                           make_labels(0x801, 20, 4), true);
    buf_t other = make_images(0x803, 9, 2, 2, 0);
    write_file(dir, "s-images-idx3-ubyte", other, false, SIZE_MAX);
    free(other.b);
    tp_dataset_t *ds = NULL;
    CHECK(tp_dataset_load_idx(dir, "s", &ds) == TP_OK);
    if (ds) check_contents(ds, 20, 3, 4, 4);
    tp_dataset_free(ds);
    remove_dir(dir);
}

static void test_load_errors(void)
{
    char *dir = tp_test_tmpdir("missing");
    expect_error(dir, "s-images-idx3-ubyte", "No such file");
    remove_dir(dir);

    dir = make_split("nolabels", make_images(0x803, 10, 4, 4, 0), true, make_labels(0x801, 10, 3),
                     true);
    char path[4096];
    snprintf(path, sizeof path, "%s/s-labels-idx1-ubyte.gz", dir);
    unlink(path);
    expect_error(dir, "s-labels-idx1-ubyte", "No such file");
    remove_dir(dir);

    dir =
        make_split("magic", make_images(0x801, 10, 4, 4, 0), true, make_labels(0x801, 10, 3), true);
    expect_error(dir, "s-images-idx3-ubyte.gz", "0x00000801");
    CHECK(strstr(captured, "0x00000803") != NULL);
    remove_dir(dir);

    dir = make_split("labmagic", make_images(0x803, 10, 4, 4, 0), false,
                     make_labels(0x12345678, 10, 3), false);
    expect_error(dir, "s-labels-idx1-ubyte", "0x12345678");
    CHECK(strstr(captured, "0x00000801") != NULL);
    remove_dir(dir);

    dir =
        make_split("dims", make_images(0x803, 10, 0, 4, 0), true, make_labels(0x801, 10, 3), true);
    expect_error(dir, "s-images-idx3-ubyte.gz", "dimensions");
    remove_dir(dir);

    dir =
        make_split("count", make_images(0x803, 10, 4, 4, 0), true, make_labels(0x801, 9, 3), true);
    expect_error(dir, "s-images-idx3-ubyte.gz", "s-labels-idx1-ubyte.gz");
    remove_dir(dir);

    dir =
        make_split("trail", make_images(0x803, 10, 4, 4, 5), true, make_labels(0x801, 10, 3), true);
    expect_error(dir, "s-images-idx3-ubyte.gz", "trailing");
    remove_dir(dir);
    dir = make_split("trailplain", make_images(0x803, 10, 4, 4, 0), true, make_labels(0x801, 10, 3),
                     false);
    snprintf(path, sizeof path, "%s/s-labels-idx1-ubyte", dir);
    FILE *f = fopen(path, "ab");
    CHECK(f && fputc(7, f) == 7 && fclose(f) == 0);
    expect_error(dir, "s-labels-idx1-ubyte", "trailing");
    remove_dir(dir);

    /* Plain file cut inside the pixel payload: 10 images of 16 bytes, 100 of them present. */
    dir = tp_test_tmpdir("cutplain");
    buf_t img = make_images(0x803, 10, 4, 4, 0), lab = make_labels(0x801, 10, 3);
    write_file(dir, "s-images-idx3-ubyte", img, false, 16 + 100);
    write_file(dir, "s-labels-idx1-ubyte", lab, false, SIZE_MAX);
    expect_error(dir, "s-images-idx3-ubyte",
                 "truncated: expected 160 bytes of pixel data, got 100");
    /* ... and inside the header. */
    write_file(dir, "s-images-idx3-ubyte", img, false, 10);
    expect_error(dir, "s-images-idx3-ubyte", "truncated");
    free(img.b);
    free(lab.b);
    remove_dir(dir);

    /* Gzip stream cut in the middle, then gzip bytes damaged in the middle and in the CRC. */
    for (int c = 0; c < 3; c++) {
        dir = make_split("cutgz", make_images(0x803, 400, 8, 8, 0), true,
                         make_labels(0x801, 400, 10), true);
        snprintf(path, sizeof path, "%s/s-images-idx3-ubyte.gz", dir);
        long size = file_size(path);
        CHECK(size > 100);
        if (c == 0) {
            CHECK(truncate(path, size / 2) == 0);
            expect_error(dir, "s-images-idx3-ubyte.gz", "truncated");
        } else {
            int fd = open(path, O_RDWR);
            off_t at = c == 1 ? size / 2 : size - 8; /* gzip trailer: CRC32, then length */
            unsigned char junk[4] = {0x5a, 0xa5, 0xff, 0x13};
            CHECK(fd >= 0 && pwrite(fd, junk, c == 1 ? 4 : 1, at) > 0 && close(fd) == 0);
            expect_error(dir, "s-images-idx3-ubyte.gz", c == 2 ? "incorrect data check" : NULL);
        }
        remove_dir(dir);
    }
}

static void test_fill_batch(void)
{
    /* 3000 x 8x8 is large enough for the OpenMP path. */
    const int64_t n = 3000, d = 64;
    char *dir = make_split("fill", make_images(0x803, (uint32_t)n, 8, 8, 0), true,
                           make_labels(0x801, (uint32_t)n, 10), true);
    tp_dataset_t *ds = NULL;
    CHECK(tp_dataset_load_idx(dir, "s", &ds) == TP_OK);
    remove_dir(dir);
    if (!ds) return;
    CHECK(!ds->normalize && ds->mean == 0.0f && ds->std == 1.0f);

    int64_t counts[2] = {5, 2500};
    for (int c = 0; c < 2; c++) {
        int64_t count = counts[c];
        int64_t *idx = malloc((size_t)count * sizeof *idx);
        float *x = malloc((size_t)(count * d) * sizeof *x);
        int32_t *y = malloc((size_t)count * sizeof *y);
        for (int64_t i = 0; i < count; i++)
            idx[i] = (i * 977 + 13) % n;
        for (int norm = 0; norm < 2; norm++) {
            ds->normalize = norm;
            ds->mean = norm ? 0.2860f : 0.0f;
            ds->std = norm ? 0.3530f : 1.0f;
            memset(x, 0xff, (size_t)(count * d) * sizeof *x); /* NaN: unwritten shows */
            tp_dataset_fill_batch(ds, idx, count, x, y);
            double maxerr = 0;
            int64_t bad_y = 0;
            for (int64_t i = 0; i < count; i++) {
                for (int64_t k = 0; k < d; k++) {
                    double p = pixel_of(idx[i], k) / 255.0;
                    double ref = norm ? (p - 0.2860) / 0.3530 : p;
                    double e = fabs(x[i * d + k] - ref);
                    if (!(e <= maxerr)) maxerr = e != e ? INFINITY : e;
                }
                bad_y += y[i] != label_of(idx[i], 10);
            }
            CHECKF(maxerr < 1e-6, "count %lld norm %d: max error %g", (long long)count, norm,
                   maxerr);
            CHECK(bad_y == 0);
        }
        free(idx);
        free(x);
        free(y);
    }
    tp_dataset_free(ds);
}

/* ---- sampler ---- */

static void reference_perm(int64_t n, uint64_t seed, int64_t epoch, int64_t *perm)
{
    tp_rng_t r;
    tp_rng_seed(&r, seed, 0x5a4d0000ull + (uint64_t)epoch);
    for (int64_t i = 0; i < n; i++)
        perm[i] = i;
    for (int64_t i = n - 1; i > 0; i--) {
        int64_t j = (int64_t)tp_rng_below(&r, (uint64_t)i + 1);
        int64_t t = perm[i];
        perm[i] = perm[j];
        perm[j] = t;
    }
}

static void test_sampler(void)
{
    const int64_t n = 37, B = 8;
    const uint64_t seed = 1234;
    int64_t perm[37], ref[37], out[37];

    /* B = n with one rank hands out the whole permutation. */
    tp_sampler_t *s = NULL;
    CHECK(tp_sampler_create(n, n, 0, 1, seed, &s) == TP_OK);
    int64_t fg = -1;
    tp_sampler_batch(s, 3, 0, perm, &fg);
    reference_perm(n, seed, 3, ref);
    CHECK(memcmp(perm, ref, sizeof perm) == 0 && fg == 0);
    int seen[37] = {0};
    for (int64_t i = 0; i < n; i++)
        seen[perm[i]]++;
    int okperm = 1;
    for (int64_t i = 0; i < n; i++)
        okperm &= seen[i] == 1;
    CHECK(okperm);
    tp_sampler_batch(s, 4, 0, out, NULL);
    CHECK(memcmp(out, perm, sizeof out) != 0); /* another epoch, another order */
    tp_sampler_batch(s, 3, 0, out, NULL);
    CHECK(memcmp(out, perm, sizeof out) == 0); /* same (seed, epoch), same order */
    tp_sampler_free(s);

    CHECK(tp_sampler_create(n, n, 0, 1, seed + 1, &s) == TP_OK);
    tp_sampler_batch(s, 3, 0, out, NULL);
    CHECK(memcmp(out, perm, sizeof out) != 0);
    tp_sampler_free(s);

    /* Ranks 0..R-1, step by step, concatenated: exactly perm[0 .. steps*B), in order. Epochs
     * are interleaved to exercise the cached permutation being recomputed. */
    const int worlds[3] = {1, 2, 4};
    for (int w = 0; w < 3; w++) {
        int R = worlds[w];
        tp_sampler_t *ranks[4] = {0};
        for (int r = 0; r < R; r++)
            CHECK(tp_sampler_create(n, B, r, R, seed, &ranks[r]) == TP_OK);
        if (!ranks[R - 1]) continue;
        int64_t steps = tp_sampler_steps_per_epoch(ranks[0]);
        int64_t lb = tp_sampler_local_batch(ranks[0]);
        CHECK(steps == n / B && lb == B / R);
        int64_t got[37], other[8];
        int64_t pos = 0;
        int bad_fg = 0;
        for (int64_t st = 0; st < steps; st++) {
            for (int r = 0; r < R; r++) {
                tp_sampler_batch(ranks[r], 3, st, got + pos, &fg);
                bad_fg += fg != pos;
                pos += lb;
                tp_sampler_batch(ranks[r], 5, st, other, NULL); /* evicts epoch 3 */
            }
        }
        CHECKF(bad_fg == 0, "R=%d: first_global wrong %d times", R, bad_fg);
        CHECKF(pos == steps * B && memcmp(got, perm, (size_t)pos * sizeof *got) == 0,
               "R=%d: union of rank batches differs from the permutation", R);
        for (int r = 0; r < R; r++)
            tp_sampler_free(ranks[r]);
    }

    /* Configuration errors. */
    tp_status_t st = tp_sampler_create(n, 10, 0, 4, seed, &s);
    CHECK(st == TP_ERR_CONFIG && s == NULL);
    CHECK(tp_sampler_create(n, 40, 0, 1, seed, &s) == TP_ERR_CONFIG && s == NULL);
    CHECK(tp_sampler_create(n, 8, 2, 2, seed, &s) == TP_ERR_CONFIG && s == NULL);
    CHECK(tp_sampler_create(n, 8, -1, 2, seed, &s) == TP_ERR_CONFIG && s == NULL);
    CHECK(tp_sampler_create(n, 0, 0, 1, seed, &s) == TP_ERR_CONFIG && s == NULL);
}

/* ---- the real data set ---- */

static void test_fashion(void)
{
    if (access(FASHION_DIR, R_OK) != 0) {
        printf("test_data: %s absent, real data set not checked\n", FASHION_DIR);
        return;
    }
    const char *splits[2] = {"train", "t10k"};
    const int64_t sizes[2] = {60000, 10000};
    for (int i = 0; i < 2; i++) {
        struct timespec t0, t1;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        tp_dataset_t *ds = NULL;
        tp_status_t st = tp_dataset_load_idx(FASHION_DIR, splits[i], &ds);
        clock_gettime(CLOCK_MONOTONIC, &t1);
        CHECKF(st == TP_OK, "%s: %s", splits[i], tp_status_str(st));
        if (!ds) continue;
        double secs = (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec);
        printf("test_data: loaded fashion-mnist %s (%lld images) in %.3f s\n", splits[i],
               (long long)ds->n, secs);
        CHECK(ds->n == sizes[i] && ds->rows == 28 && ds->cols == 28 && ds->n_classes == 10);
        int64_t per_class[256] = {0};
        for (int64_t k = 0; k < ds->n; k++)
            per_class[ds->labels[k]]++;
        int bad = 0;
        for (int c = 0; c < 10; c++)
            bad += per_class[c] != sizes[i] / 10;
        CHECK(bad == 0);
        tp_dataset_free(ds);
    }
}

int main(void)
{
    test_load_ok();
    test_load_errors();
    test_fill_batch();
    test_sampler();
    test_fashion();
    return tp_test_finish("test_data");
}
