/* `tulpar bench ckpt`: checkpoint write and read bandwidth of a directory's disk against a plain
 * sequential write (write(2) + fsync) and read(2) of the same bytes, in the same run. The
 * checkpoint is a synthetic one built through runtime/ckpt.h (tp_ckpt_write: tmp file, fsync,
 * rename, directory fsync; tp_ckpt_open + tp_ckpt_read_group: crc32 checked), so it costs what a
 * training checkpoint of that size costs. Before each read the file's pages are dropped from the
 * page cache (posix_fadvise DONTNEED after the fsync) and the share still resident is measured
 * with mincore, so a read that was served from memory shows as such. Used by
 * benchmarks/suite.py. */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "ckpt.h"
#include "cli.h"
#include "json_writer.h"
#include "rng.h"

#define CHUNK_BYTES   ((size_t)8 << 20) /* plain write/read granularity */
#define MAX_REPEAT    1000
#define N_MEASURE     4
#define TENSOR_FLOATS ((int64_t)4 << 20) /* 16 MiB per synthetic tensor */

enum { HDF5_WRITE, HDF5_READ, PLAIN_WRITE, PLAIN_READ };
static const char *const measure_names[N_MEASURE] = {"hdf5_write", "hdf5_read", "plain_write",
                                                     "plain_read"};

typedef struct ckpt_opts {
    size_t bytes;
    const char *dir, *json;
    int repeat;
    bool keep;
} ckpt_opts_t;

typedef struct ckpt_sample {
    double sec[N_MEASURE];
    double resident[2]; /* page-cache share of the file before each read: [0] hdf5, [1] plain */
} ckpt_sample_t;

static bool parse_bytes(const char *v, size_t *out)
{
    char *end;
    if (*v < '0' || *v > '9') return false;
    errno = 0;
    unsigned long long n = strtoull(v, &end, 10);
    unsigned shift = 0;
    if (*end == 'K' || *end == 'k') shift = 10;
    if (*end == 'M' || *end == 'm') shift = 20;
    if (*end == 'G' || *end == 'g') shift = 30;
    if (shift) end++;
    if (errno || *end || n > (~0ULL >> shift)) return false;
    *out = (size_t)(n << shift);
    return true;
}

static tp_status_t parse(int argc, char **argv, ckpt_opts_t *o)
{
    *o = (ckpt_opts_t){.bytes = (size_t)256 << 20, .dir = ".", .repeat = 5};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v;
        if (tp_cli_is(a, "--bytes")) {
            if (!(v = tp_cli_value(argc, argv, &i, "--bytes"))) return TP_ERR_USAGE;
            if (!parse_bytes(v, &o->bytes) || o->bytes < 4 || o->bytes > ((size_t)1 << 40))
                return tp_cli_usage_error("bench",
                                          "ckpt --bytes: bad size '%s' (want 4 bytes to "
                                          "1T, optional K/M/G suffix)",
                                          v);
        } else if (tp_cli_is(a, "--dir")) {
            if (!(o->dir = tp_cli_value(argc, argv, &i, "--dir"))) return TP_ERR_USAGE;
        } else if (tp_cli_is(a, "--json")) {
            if (!(o->json = tp_cli_value(argc, argv, &i, "--json"))) return TP_ERR_USAGE;
        } else if (tp_cli_is(a, "--repeat")) {
            if (!(v = tp_cli_value(argc, argv, &i, "--repeat"))) return TP_ERR_USAGE;
            char *end;
            long n = strtol(v, &end, 10);
            if (end == v || *end || n < 1 || n > MAX_REPEAT)
                return tp_cli_usage_error("bench", "ckpt --repeat: bad count '%s' (want 1 to %d)",
                                          v, MAX_REPEAT);
            o->repeat = (int)n;
        } else if (strcmp(a, "--keep") == 0) {
            o->keep = true;
        } else {
            return tp_cli_usage_error("bench", "ckpt: unknown option '%s'", a);
        }
    }
    struct stat sb;
    if (stat(o->dir, &sb) != 0)
        return tp_cli_usage_error("bench", "ckpt --dir %s: %s", o->dir, strerror(errno));
    if (!S_ISDIR(sb.st_mode))
        return tp_cli_usage_error("bench", "ckpt --dir %s: not a directory", o->dir);
    return TP_OK;
}

/* Drop a written (and fsynced) file's pages from the page cache, then measure the share of its
 * pages still resident (0 = the next read comes from the disk). */
static tp_status_t evict(const char *path, double *resident)
{
    int fd = open(path, O_RDONLY);
    if (fd < 0) return TP_ERR(TP_ERR_IO, "cannot open %s: %s", path, strerror(errno));
    tp_status_t st = TP_OK;
    int rc = posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
    if (rc != 0) st = TP_ERR(TP_ERR_IO, "posix_fadvise(DONTNEED) on %s: %s", path, strerror(rc));
    struct stat sb;
    if (st == TP_OK && fstat(fd, &sb) != 0)
        st = TP_ERR(TP_ERR_IO, "cannot stat %s: %s", path, strerror(errno));
    *resident = 0;
    if (st == TP_OK && sb.st_size > 0) {
        size_t len = (size_t)sb.st_size, page = (size_t)sysconf(_SC_PAGESIZE);
        size_t pages = (len + page - 1) / page;
        void *map = mmap(NULL, len, PROT_READ, MAP_SHARED, fd, 0);
        unsigned char *vec = tp_malloc(pages, "mincore vector");
        if (map == MAP_FAILED) {
            st = TP_ERR(TP_ERR_IO, "cannot mmap %s: %s", path, strerror(errno));
        } else if (!vec) {
            st = TP_ERR_NOMEM;
        } else if (mincore(map, len, vec) != 0) {
            st = TP_ERR(TP_ERR_IO, "mincore on %s: %s", path, strerror(errno));
        } else {
            size_t n = 0;
            for (size_t p = 0; p < pages; p++)
                n += vec[p] & 1;
            *resident = (double)n / (double)pages;
        }
        if (map != MAP_FAILED && munmap(map, len) != 0 && st == TP_OK)
            st = TP_ERR(TP_ERR_IO, "munmap of %s: %s", path, strerror(errno));
        free(vec);
    }
    if (close(fd) != 0 && st == TP_OK)
        st = TP_ERR(TP_ERR_IO, "cannot close %s: %s", path, strerror(errno));
    return st;
}

static tp_status_t plain_write(const char *path, const char *buf, size_t bytes, double *sec)
{
    double t0 = tp_now();
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0) return TP_ERR(TP_ERR_IO, "cannot create %s: %s", path, strerror(errno));
    for (size_t off = 0; off < bytes;) {
        size_t n = bytes - off < CHUNK_BYTES ? bytes - off : CHUNK_BYTES;
        ssize_t w = write(fd, buf + off, n);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) {
            int e = w < 0 ? errno : ENOSPC;
            close(fd);
            return TP_ERR(TP_ERR_IO, "cannot write %s at byte %zu: %s", path, off, strerror(e));
        }
        off += (size_t)w;
    }
    if (fsync(fd) != 0) {
        int e = errno;
        close(fd);
        return TP_ERR(TP_ERR_IO, "fsync of %s: %s", path, strerror(e));
    }
    if (close(fd) != 0) return TP_ERR(TP_ERR_IO, "cannot close %s: %s", path, strerror(errno));
    *sec = tp_now() - t0;
    return TP_OK;
}

static tp_status_t plain_read(const char *path, char *buf, size_t bytes, double *sec)
{
    double t0 = tp_now();
    int fd = open(path, O_RDONLY);
    if (fd < 0) return TP_ERR(TP_ERR_IO, "cannot open %s: %s", path, strerror(errno));
    for (size_t off = 0; off < bytes;) {
        size_t n = bytes - off < CHUNK_BYTES ? bytes - off : CHUNK_BYTES;
        ssize_t r = read(fd, buf + off, n);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) {
            int e = errno;
            close(fd);
            return r == 0 ? TP_ERR(TP_ERR_IO, "%s: unexpected end of file at byte %zu", path, off)
                          : TP_ERR(TP_ERR_IO, "cannot read %s: %s", path, strerror(e));
        }
        off += (size_t)r;
    }
    if (close(fd) != 0) return TP_ERR(TP_ERR_IO, "cannot close %s: %s", path, strerror(errno));
    *sec = tp_now() - t0;
    return TP_OK;
}

static tp_status_t hdf5_write(const char *path, const tp_ckpt_group_t *g, double *sec)
{
    tp_ckpt_meta_t meta = {.world_size = 1, .seed = 1, .created_unix = (int64_t)time(NULL)};
    snprintf(meta.model_type, sizeof meta.model_type, "bench");
    snprintf(meta.optimizer, sizeof meta.optimizer, "none");
    double t0 = tp_now();
    TP_TRY(tp_ckpt_write(path, &meta, "# synthetic checkpoint of tulpar bench ckpt\n", g, 1));
    *sec = tp_now() - t0;
    return TP_OK;
}

static tp_status_t hdf5_read(const char *path, const tp_ckpt_group_t *g, double *sec)
{
    double t0 = tp_now();
    tp_ckpt_t *ck = NULL;
    TP_TRY(tp_ckpt_open(path, &ck));
    tp_status_t st = tp_ckpt_read_group(ck, g);
    tp_ckpt_close(ck);
    *sec = tp_now() - t0;
    return st;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Median, min and max of one measurement's GB/s over the repeats. */
static void gbps_stats(const ckpt_sample_t *s, int n, int m, size_t bytes, double out[3])
{
    double v[MAX_REPEAT];
    for (int i = 0; i < n; i++)
        v[i] = (double)bytes / 1e9 / s[i].sec[m];
    qsort(v, (size_t)n, sizeof v[0], cmp_double);
    out[0] = n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
    out[1] = v[0];
    out[2] = v[n - 1];
}

static tp_status_t write_json(const ckpt_opts_t *o, const char *h5, int n_tensors,
                              long long file_bytes, const ckpt_sample_t *s)
{
    FILE *f = fopen(o->json, "w");
    if (!f) return TP_ERR(TP_ERR_IO, "cannot write %s: %s", o->json, strerror(errno));
    tp_json_t j;
    tp_json_init(&j, f, true);
    tp_json_object_begin(&j, NULL);
    tp_json_str(&j, "benchmark", "ckpt");
    tp_json_str(&j, "dir", o->dir);
    tp_json_str(&j, "hdf5_path", h5);
    tp_json_int(&j, "bytes", (int64_t)o->bytes);
    tp_json_int(&j, "hdf5_file_bytes", file_bytes);
    tp_json_int(&j, "tensors", n_tensors);
    tp_json_int(&j, "repeat", o->repeat);
    tp_json_int(&j, "plain_chunk_bytes", (int64_t)CHUNK_BYTES);
    tp_json_str(&j, "cache", "page cache dropped before each read (posix_fadvise DONTNEED)");
    tp_json_array_begin(&j, "runs");
    for (int r = 0; r < o->repeat; r++) {
        tp_json_object_begin(&j, NULL);
        for (int m = 0; m < N_MEASURE; m++) {
            char key[64];
            snprintf(key, sizeof key, "%s_s", measure_names[m]);
            tp_json_num(&j, key, s[r].sec[m]);
            snprintf(key, sizeof key, "%s_GBps", measure_names[m]);
            tp_json_num(&j, key, (double)o->bytes / 1e9 / s[r].sec[m]);
        }
        tp_json_num(&j, "hdf5_read_resident_fraction", s[r].resident[0]);
        tp_json_num(&j, "plain_read_resident_fraction", s[r].resident[1]);
        tp_json_object_end(&j);
    }
    tp_json_array_end(&j);
    for (int m = 0; m < N_MEASURE; m++) {
        double st[3];
        char key[64];
        gbps_stats(s, o->repeat, m, o->bytes, st);
        snprintf(key, sizeof key, "%s_GBps", measure_names[m]);
        tp_json_object_begin(&j, key);
        tp_json_num(&j, "median", st[0]);
        tp_json_num(&j, "min", st[1]);
        tp_json_num(&j, "max", st[2]);
        tp_json_object_end(&j);
    }
    tp_json_object_end(&j);
    fputc('\n', f);
    if (ferror(f) | (fclose(f) != 0))
        return TP_ERR(TP_ERR_IO, "cannot write %s: %s", o->json, strerror(errno));
    return TP_OK;
}

int tp_bench_ckpt_main(int argc, char **argv);

int tp_bench_ckpt_main(int argc, char **argv)
{
    ckpt_opts_t o;
    TP_TRY(parse(argc, argv, &o));
    size_t floats = o.bytes / sizeof(float);
    o.bytes = floats * sizeof(float); /* whole floats: both files hold exactly these bytes */
    int n_tensors = (int)((floats + (size_t)TENSOR_FLOATS - 1) / (size_t)TENSOR_FLOATS);
    char h5[4096], plain[4096];
    int l1 = snprintf(h5, sizeof h5, "%s/tulpar_bench_ckpt.h5", o.dir);
    int l2 = snprintf(plain, sizeof plain, "%s/tulpar_bench_plain.bin", o.dir);
    if (l1 < 0 || l2 < 0 || (size_t)l1 >= sizeof h5 || (size_t)l2 >= sizeof plain)
        return tp_cli_usage_error("bench", "ckpt --dir: path too long");

    float *data = tp_aligned_alloc(o.bytes, "checkpoint data");
    float *back = tp_aligned_alloc(o.bytes, "checkpoint read buffer");
    tp_ckpt_tensor_t *wt = tp_calloc((size_t)n_tensors, sizeof *wt, "tensors");
    tp_ckpt_tensor_t *rt = tp_calloc((size_t)n_tensors, sizeof *rt, "tensors");
    char *names = tp_calloc((size_t)n_tensors, 32, "tensor names");
    ckpt_sample_t *s = tp_calloc((size_t)o.repeat, sizeof *s, "samples");
    tp_status_t st = data && back && wt && rt && names && s ? TP_OK : TP_ERR_NOMEM;
    if (st == TP_OK) {
        tp_rng_t r;
        tp_rng_seed(&r, 2024, 7);
        for (size_t i = 0; i < floats; i++)
            data[i] = tp_rng_uniform(&r) - 0.5f; /* incompressible, like trained weights */
        for (int t = 0; t < n_tensors; t++) {
            int64_t off = (int64_t)t * TENSOR_FLOATS, n = (int64_t)floats - off;
            if (n > TENSOR_FLOATS) n = TENSOR_FLOATS;
            snprintf(names + 32 * t, 32, "layer%05d.weight", t);
            wt[t] = (tp_ckpt_tensor_t){.name = names + 32 * t, .ndim = 1, .shape = {n}};
            rt[t] = wt[t];
            wt[t].data = data + off;
            rt[t].data = back + off;
        }
    }
    tp_ckpt_group_t wg = {.path = "params", .n = n_tensors, .tensors = wt};
    tp_ckpt_group_t rg = {.path = "params", .n = n_tensors, .tensors = rt};
    long long file_bytes = 0;
    if (st == TP_OK)
        printf("# checkpoint bandwidth in %s: %zu bytes (%d float32 tensors), %d repeats; page "
               "cache dropped before reads\n# %6s %12s %12s %12s %12s   (GB/s; resident before "
               "reads)\n",
               o.dir, o.bytes, n_tensors, o.repeat, "repeat", measure_names[0], measure_names[1],
               measure_names[2], measure_names[3]);
    for (int i = 0; st == TP_OK && i < o.repeat; i++) {
        /* Alternate which file goes first so that drift in the machine's load hits both. */
        for (int half = 0; st == TP_OK && half < 2; half++) {
            bool hdf5 = (half == 0) == (i % 2 == 0);
            if (hdf5) {
                memset(back, 0, o.bytes);
                st = hdf5_write(h5, &wg, &s[i].sec[HDF5_WRITE]);
                if (st == TP_OK) st = evict(h5, &s[i].resident[0]);
                if (st == TP_OK) st = hdf5_read(h5, &rg, &s[i].sec[HDF5_READ]);
                if (st == TP_OK && memcmp(data, back, o.bytes) != 0)
                    st = TP_ERR(TP_ERR_INTERNAL, "%s: read back different data", h5);
            } else {
                memset(back, 0, o.bytes);
                st = plain_write(plain, (const char *)data, o.bytes, &s[i].sec[PLAIN_WRITE]);
                if (st == TP_OK) st = evict(plain, &s[i].resident[1]);
                if (st == TP_OK)
                    st = plain_read(plain, (char *)back, o.bytes, &s[i].sec[PLAIN_READ]);
                if (st == TP_OK && memcmp(data, back, o.bytes) != 0)
                    st = TP_ERR(TP_ERR_INTERNAL, "%s: read back different data", plain);
            }
        }
        if (st == TP_OK) {
            printf("  %6d", i + 1);
            for (int m = 0; m < N_MEASURE; m++)
                printf(" %12.3f", (double)o.bytes / 1e9 / s[i].sec[m]);
            printf("   %.2f %.2f\n", s[i].resident[0], s[i].resident[1]);
            fflush(stdout);
        }
    }
    if (st == TP_OK) {
        struct stat sb;
        if (stat(h5, &sb) != 0)
            st = TP_ERR(TP_ERR_IO, "cannot stat %s: %s", h5, strerror(errno));
        else
            file_bytes = (long long)sb.st_size;
    }
    if (st == TP_OK) {
        double med[N_MEASURE][3];
        for (int m = 0; m < N_MEASURE; m++)
            gbps_stats(s, o.repeat, m, o.bytes, med[m]);
        printf("# median GB/s: hdf5 write %.3f, read %.3f; plain write+fsync %.3f, read %.3f\n"
               "# hdf5 / plain: write %.3f, read %.3f (HDF5 file %lld bytes)\n",
               med[0][0], med[1][0], med[2][0], med[3][0], med[0][0] / med[2][0],
               med[1][0] / med[3][0], file_bytes);
    }
    if (st == TP_OK && o.json) st = write_json(&o, h5, n_tensors, file_bytes, s);
    if (!o.keep) {
        if (unlink(h5) != 0 && errno != ENOENT && st == TP_OK)
            st = TP_ERR(TP_ERR_IO, "cannot remove %s: %s", h5, strerror(errno));
        if (unlink(plain) != 0 && errno != ENOENT && st == TP_OK)
            st = TP_ERR(TP_ERR_IO, "cannot remove %s: %s", plain, strerror(errno));
    }
    free(data);
    free(back);
    free(wt);
    free(rt);
    free(names);
    free(s);
    return st;
}
