/* Checkpoint module: round trip, the on-disk layout external tools rely on, every way a file can
 * be bad (truncated, flipped data byte, wrong shape, missing tensor, not HDF5, foreign or newer
 * format), failed writes that must leave the old file intact, and the run-directory helpers. */
#include <errno.h>
#include <fcntl.h>
#include <hdf5.h>
#include <inttypes.h>
#include <sys/stat.h>

#include "ckpt.h"
#include "test_util.h"

/* ---- helpers ------------------------------------------------------------------------------ */

#define N_TENSORS 4
static const char *const t_names[N_TENSORS] = {"fc1.weight", "fc1.bias", "emb", "conv.weight"};
static const int t_ndim[N_TENSORS] = {2, 1, 3, 4};
static const int64_t t_shape[N_TENSORS][4] = {{10, 128}, {10}, {2, 5, 7}, {4, 3, 3, 3}};
static const char *const g_paths[3] = {"params", "optim/m", "optim/v"};

typedef struct model {
    tp_ckpt_tensor_t t[3][N_TENSORS];
    tp_ckpt_group_t g[3];
} model_t;

static size_t numel_of(const tp_ckpt_tensor_t *t)
{
    size_t n = 1;
    for (int d = 0; d < t->ndim; d++)
        n *= (size_t)t->shape[d];
    return n;
}

/* seed 0: zero-filled buffers to read into; otherwise random contents. */
static void model_init(model_t *m, uint64_t seed)
{
    for (int g = 0; g < 3; g++) {
        for (int i = 0; i < N_TENSORS; i++) {
            tp_ckpt_tensor_t *t = &m->t[g][i];
            t->name = t_names[i];
            t->ndim = t_ndim[i];
            memcpy(t->shape, t_shape[i], sizeof t->shape);
            size_t n = numel_of(t);
            t->data = calloc(n, sizeof(float));
            if (seed) tp_test_fill(t->data, n, seed * 100 + (uint64_t)(g * N_TENSORS + i), 1.0f);
        }
        m->g[g] = (tp_ckpt_group_t){g_paths[g], N_TENSORS, m->t[g]};
    }
}

static void model_free(model_t *m)
{
    for (int g = 0; g < 3; g++)
        for (int i = 0; i < N_TENSORS; i++)
            free(m->t[g][i].data);
}

static tp_ckpt_meta_t make_meta(int64_t step)
{
    tp_ckpt_meta_t m = {.step = step,
                        .epoch = 3,
                        .step_in_epoch = 17,
                        .samples_seen = 123456789012LL,
                        .world_size = 4,
                        .seed = -42,
                        .rng_offset = 987654321,
                        .optim_step = step + 1,
                        .created_unix = 1700000000};
    snprintf(m.model_type, sizeof m.model_type, "mlp");
    snprintf(m.optimizer, sizeof m.optimizer, "adamw");
    return m;
}

static const char *config_text = "model = { type = \"mlp\"; hidden = [128]; };\n"
                                 "optim = { name = \"adamw\"; lr = 0.001; };\n";

static tp_status_t write_model(const char *path, int64_t step, uint64_t seed)
{
    model_t m;
    model_init(&m, seed);
    tp_ckpt_meta_t meta = make_meta(step);
    tp_status_t st = tp_ckpt_write(path, &meta, config_text, m.g, 3);
    model_free(&m);
    return st;
}

/* Capture stderr (where expected errors are reported) so tests can check the message. */
static int saved_stderr = -1;
static FILE *capture_file;

static void capture_begin(void)
{
    fflush(stderr);
    capture_file = tmpfile();
    saved_stderr = dup(2);
    dup2(fileno(capture_file), 2);
}

/* Returns the captured text (static buffer) and echoes it to the real stderr. */
static const char *capture_end(void)
{
    static char buf[16384];
    fflush(stderr);
    dup2(saved_stderr, 2);
    close(saved_stderr);
    rewind(capture_file);
    size_t n = fread(buf, 1, sizeof buf - 1, capture_file);
    buf[n] = '\0';
    fclose(capture_file);
    fputs(buf, stderr);
    return buf;
}

static void copy_file(const char *from, const char *to)
{
    FILE *a = fopen(from, "rb"), *b = fopen(to, "wb");
    char buf[65536];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, a)) > 0)
        fwrite(buf, 1, n, b);
    fclose(a);
    fclose(b);
}

static int file_exists(const char *path)
{
    struct stat sb;
    return stat(path, &sb) == 0;
}

/* File offset of a dataset's raw data (contiguous layout). */
static int64_t data_offset(const char *path, const char *dname)
{
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    hid_t d = H5Dopen2(f, dname, H5P_DEFAULT);
    haddr_t off = H5Dget_offset(d);
    H5Dclose(d);
    H5Fclose(f);
    return off == HADDR_UNDEF ? -1 : (int64_t)off;
}

static void flip_byte(const char *path, int64_t off)
{
    int fd = open(path, O_RDWR);
    unsigned char c;
    CHECK(pread(fd, &c, 1, off) == 1);
    c ^= 0x5a;
    CHECK(pwrite(fd, &c, 1, off) == 1);
    close(fd);
}

/* ---- tests -------------------------------------------------------------------------------- */

static void test_round_trip(const char *dir)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/rt.h5", dir);
    model_t src, dst;
    model_init(&src, 7);
    model_init(&dst, 0);
    tp_ckpt_meta_t meta = make_meta(1234);
    CHECK(tp_ckpt_write(path, &meta, config_text, src.g, 3) == TP_OK);
    char tmp[4200];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    CHECK(!file_exists(tmp));

    tp_ckpt_t *ck = NULL;
    CHECK(tp_ckpt_open(path, &ck) == TP_OK);
    if (!ck) return;
    const tp_ckpt_meta_t *m = tp_ckpt_meta(ck);
    CHECK(m->step == 1234 && m->epoch == 3 && m->step_in_epoch == 17);
    CHECK(m->samples_seen == 123456789012LL && m->world_size == 4 && m->seed == -42);
    CHECK(m->rng_offset == 987654321 && m->optim_step == 1235 && m->created_unix == 1700000000);
    CHECK(strcmp(m->model_type, "mlp") == 0 && strcmp(m->optimizer, "adamw") == 0);
    CHECKF(strcmp(tp_ckpt_config_text(ck), config_text) == 0, "%s", tp_ckpt_config_text(ck));
    for (int g = 0; g < 3; g++)
        CHECK(tp_ckpt_read_group(ck, &dst.g[g]) == TP_OK);
    for (int g = 0; g < 3; g++)
        for (int i = 0; i < N_TENSORS; i++)
            CHECKF(memcmp(src.t[g][i].data, dst.t[g][i].data,
                          numel_of(&src.t[g][i]) * sizeof(float)) == 0,
                   "%s/%s", g_paths[g], t_names[i]);
    CHECK(tp_ckpt_verify(ck) == TP_OK);
    tp_ckpt_close(ck);

    /* created_unix 0 means "now" */
    meta.created_unix = 0;
    CHECK(tp_ckpt_write(path, &meta, NULL, src.g, 1) == TP_OK);
    CHECK(tp_ckpt_open(path, &ck) == TP_OK);
    if (ck) {
        CHECK(tp_ckpt_meta(ck)->created_unix > 1700000000);
        CHECK(strcmp(tp_ckpt_config_text(ck), "") == 0);
        tp_ckpt_close(ck);
    }
    model_free(&src);
    model_free(&dst);
}

/* What h5py and h5dump see: int64 root attributes, string format, scalar string /config,
 * contiguous little-endian float32 datasets with a uint32 crc32 attribute. */
static void test_layout(const char *dir)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/layout.h5", dir);
    CHECK(write_model(path, 5, 3) == TP_OK);
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    CHECK(f >= 0);
    const char *ints[] = {"format_version", "step", "epoch",      "step_in_epoch", "samples_seen",
                          "world_size",     "seed", "rng_offset", "optim_step",    "created_unix"};
    for (size_t i = 0; i < sizeof ints / sizeof ints[0]; i++) {
        hid_t a = H5Aopen(f, ints[i], H5P_DEFAULT);
        hid_t t = H5Aget_type(a);
        CHECKF(H5Tequal(t, H5T_STD_I64LE) > 0, "%s", ints[i]);
        H5Tclose(t);
        H5Aclose(a);
    }
    const char *strs[] = {"format", "tulpar_version", "model_type", "optimizer"};
    for (size_t i = 0; i < 4; i++) {
        hid_t a = H5Aopen(f, strs[i], H5P_DEFAULT);
        hid_t t = H5Aget_type(a);
        CHECKF(H5Tget_class(t) == H5T_STRING, "%s", strs[i]);
        H5Tclose(t);
        H5Aclose(a);
    }
    hid_t a = H5Aopen(f, "format", H5P_DEFAULT), t = H5Aget_type(a);
    char *s = NULL;
    CHECK(H5Tis_variable_str(t) > 0 && H5Aread(a, t, &s) >= 0 && s &&
          strcmp(s, TP_CKPT_FORMAT) == 0);
    H5free_memory(s);
    H5Tclose(t);
    H5Aclose(a);

    hid_t d = H5Dopen2(f, "config", H5P_DEFAULT), sp = H5Dget_space(d);
    t = H5Dget_type(d);
    CHECK(H5Sget_simple_extent_type(sp) == H5S_SCALAR && H5Tget_class(t) == H5T_STRING);
    H5Tclose(t);
    H5Sclose(sp);
    H5Dclose(d);

    d = H5Dopen2(f, "optim/m/conv.weight", H5P_DEFAULT);
    CHECK(d >= 0);
    t = H5Dget_type(d);
    sp = H5Dget_space(d);
    hsize_t dims[4] = {0};
    CHECK(H5Tequal(t, H5T_IEEE_F32LE) > 0);
    CHECK(H5Sget_simple_extent_dims(sp, dims, NULL) == 4 && dims[0] == 4 && dims[3] == 3);
    hid_t dcpl = H5Dget_create_plist(d);
    CHECK(H5Pget_layout(dcpl) == H5D_CONTIGUOUS);
    H5Pclose(dcpl);
    hid_t ca = H5Aopen(d, "crc32", H5P_DEFAULT), ct = H5Aget_type(ca);
    CHECK(H5Tequal(ct, H5T_STD_U32LE) > 0);
    H5Tclose(ct);
    H5Aclose(ca);
    H5Tclose(t);
    H5Sclose(sp);
    H5Dclose(d);
    H5O_info_t oi;
    CHECK(H5Oget_info_by_name2(f, "optim", &oi, H5O_INFO_BASIC, H5P_DEFAULT) >= 0 &&
          oi.type == H5O_TYPE_GROUP);
    H5Fclose(f);
}

static void expect_open_fails(const char *path, const char *needle)
{
    tp_ckpt_t *ck = NULL;
    capture_begin();
    tp_status_t st = tp_ckpt_open(path, &ck);
    const char *msg = capture_end();
    CHECKF(st == TP_ERR_CKPT, "status %d", st);
    CHECK(ck == NULL);
    CHECKF(strstr(msg, path) != NULL, "message must name %s", path);
    CHECKF(strstr(msg, needle) != NULL, "expected '%s' in: %s", needle, msg);
    if (ck) tp_ckpt_close(ck);
}

static void test_bad_files(const char *dir)
{
    char good[4096], bad[4200];
    snprintf(good, sizeof good, "%s/good.h5", dir);
    CHECK(write_model(good, 10, 5) == TP_OK);

    /* truncated to half */
    snprintf(bad, sizeof bad, "%s/truncated.h5", dir);
    copy_file(good, bad);
    struct stat sb;
    stat(good, &sb);
    CHECK(truncate(bad, sb.st_size / 2) == 0);
    expect_open_fails(bad, "not an HDF5 file or truncated");

    /* not HDF5 at all */
    snprintf(bad, sizeof bad, "%s/text.h5", dir);
    FILE *fp = fopen(bad, "w");
    fputs("this is not an HDF5 file\n", fp);
    fclose(fp);
    expect_open_fails(bad, "not an HDF5 file or truncated");

    /* missing */
    snprintf(bad, sizeof bad, "%s/missing.h5", dir);
    expect_open_fails(bad, "No such file");

    /* foreign format, newer format, missing attribute: written with the HDF5 API directly */
    const char *formats[] = {"something-else", TP_CKPT_FORMAT, TP_CKPT_FORMAT};
    const int64_t versions[] = {1, 2, 1};
    const char *needles[] = {"not a Tulpar checkpoint",
                             "written by a newer Tulpar (format 2, this build reads 1)",
                             "attribute 'tulpar_version' missing"};
    for (int k = 0; k < 3; k++) {
        snprintf(bad, sizeof bad, "%s/foreign%d.h5", dir, k);
        hid_t f = H5Fcreate(bad, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
        hid_t sp = H5Screate(H5S_SCALAR);
        hid_t st = H5Tcopy(H5T_C_S1);
        H5Tset_size(st, strlen(formats[k]));
        hid_t a = H5Acreate2(f, "format", st, sp, H5P_DEFAULT, H5P_DEFAULT);
        H5Awrite(a, st, formats[k]);
        H5Aclose(a);
        a = H5Acreate2(f, "format_version", H5T_STD_I64LE, sp, H5P_DEFAULT, H5P_DEFAULT);
        H5Awrite(a, H5T_NATIVE_INT64, &versions[k]);
        H5Aclose(a);
        H5Tclose(st);
        H5Sclose(sp);
        H5Fclose(f);
        expect_open_fails(bad, needles[k]);
    }
}

static void test_corrupt_data(const char *dir)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/flip.h5", dir);
    CHECK(write_model(path, 20, 9) == TP_OK);
    int64_t off = data_offset(path, "optim/m/emb");
    CHECK(off > 0);
    flip_byte(path, off + 37);

    model_t m;
    model_init(&m, 0);
    tp_ckpt_t *ck = NULL;
    CHECK(tp_ckpt_open(path, &ck) == TP_OK); /* metadata is intact */
    if (!ck) return;
    CHECK(tp_ckpt_read_group(ck, &m.g[0]) == TP_OK);
    capture_begin();
    tp_status_t st = tp_ckpt_read_group(ck, &m.g[1]);
    const char *msg = capture_end();
    CHECK(st == TP_ERR_CKPT);
    CHECK(strstr(msg, "optim/m/emb") && strstr(msg, "checksum mismatch") && strstr(msg, path));
    capture_begin();
    st = tp_ckpt_verify(ck);
    msg = capture_end();
    CHECK(st == TP_ERR_CKPT);
    CHECK(strstr(msg, "optim/m/emb") && strstr(msg, "checksum mismatch"));
    tp_ckpt_close(ck);

    /* inspect lists the bad dataset and fails */
    char *text = NULL;
    size_t len = 0;
    FILE *out = open_memstream(&text, &len);
    capture_begin();
    st = tp_ckpt_inspect(path, out);
    capture_end();
    fclose(out);
    CHECK(st == TP_ERR_CKPT);
    CHECK(text && strstr(text, "BAD"));
    free(text);
    model_free(&m);
}

static void test_shape_and_missing(const char *dir)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/shape.h5", dir);
    CHECK(write_model(path, 30, 11) == TP_OK);
    tp_ckpt_t *ck = NULL;
    CHECK(tp_ckpt_open(path, &ck) == TP_OK);
    if (!ck) return;

    float buf[10 * 256];
    tp_ckpt_tensor_t t = {.name = "fc1.weight", .ndim = 2, .shape = {10, 256}, .data = buf};
    tp_ckpt_group_t g = {"params", 1, &t};
    capture_begin();
    tp_status_t st = tp_ckpt_read_group(ck, &g);
    const char *msg = capture_end();
    CHECK(st == TP_ERR_CKPT);
    CHECKF(strstr(msg, "params/fc1.weight has shape [10,128], model expects [10,256]"), "%s", msg);

    t.ndim = 1;
    t.shape[0] = 1280;
    capture_begin();
    st = tp_ckpt_read_group(ck, &g);
    msg = capture_end();
    CHECK(st == TP_ERR_CKPT && strstr(msg, "model expects [1280]"));

    t = (tp_ckpt_tensor_t){.name = "fc2.weight", .ndim = 1, .shape = {4}, .data = buf};
    capture_begin();
    st = tp_ckpt_read_group(ck, &g);
    msg = capture_end();
    CHECK(st == TP_ERR_CKPT && strstr(msg, "params/fc1.weight") == NULL);
    CHECK(strstr(msg, "no dataset params/fc2.weight") && strstr(msg, path));

    tp_ckpt_group_t g2 = {"optim/momentum", 1, &t};
    capture_begin();
    st = tp_ckpt_read_group(ck, &g2);
    msg = capture_end();
    CHECK(st == TP_ERR_CKPT && strstr(msg, "no dataset optim/momentum/fc2.weight"));
    tp_ckpt_close(ck);
}

static void test_failed_writes(const char *dir)
{
    char path[4096], tmp[4400];
    snprintf(path, sizeof path, "%s/keep.h5", dir);
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    CHECK(write_model(path, 40, 13) == TP_OK);
    struct stat before, after;
    stat(path, &before);

    /* under a directory that does not exist */
    char nodir[4200];
    snprintf(nodir, sizeof nodir, "%s/no/such/dir/ckpt.h5", dir);
    capture_begin();
    tp_status_t st = write_model(nodir, 41, 13);
    const char *msg = capture_end();
    CHECK(st == TP_ERR_HDF5 && strstr(msg, nodir));

    /* PATH.tmp cannot be created (it is a directory): the old file stays */
    CHECK(mkdir(tmp, 0755) == 0);
    capture_begin();
    st = write_model(path, 42, 14);
    capture_end();
    CHECK(st == TP_ERR_HDF5);
    CHECK(rmdir(tmp) == 0);

    /* a failure in the middle (duplicate tensor name): the temporary file is removed */
    model_t m;
    model_init(&m, 3);
    m.t[0][1].name = "fc1.weight";
    m.t[0][1].ndim = 2;
    m.t[0][1].shape[0] = 10;
    m.t[0][1].shape[1] = 1;
    tp_ckpt_meta_t meta = make_meta(43);
    capture_begin();
    st = tp_ckpt_write(path, &meta, config_text, m.g, 3);
    msg = capture_end();
    CHECK(st == TP_ERR_HDF5 && strstr(msg, "params/fc1.weight"));
    CHECK(!file_exists(tmp));
    model_free(&m);

    /* the rename fails (PATH2 is a non-empty directory): TP_ERR_IO, temporary removed */
    char path2[4200], inner[4300];
    snprintf(path2, sizeof path2, "%s/isdir.h5", dir);
    snprintf(inner, sizeof inner, "%s/x", path2);
    CHECK(mkdir(path2, 0755) == 0);
    fclose(fopen(inner, "w"));
    capture_begin();
    st = write_model(path2, 44, 1);
    msg = capture_end();
    CHECK(st == TP_ERR_IO && strstr(msg, "rename"));
    snprintf(tmp, sizeof tmp, "%s.tmp", path2);
    CHECK(!file_exists(tmp));

    /* caller bug: rejected before touching the disk */
    model_init(&m, 3);
    m.t[1][0].ndim = 5;
    capture_begin();
    st = tp_ckpt_write(path, &meta, config_text, m.g, 3);
    capture_end();
    CHECK(st == TP_ERR_INTERNAL);
    model_free(&m);

    stat(path, &after);
    CHECK(before.st_ino == after.st_ino && before.st_mtime == after.st_mtime &&
          before.st_size == after.st_size);
    tp_ckpt_t *ck = NULL;
    CHECK(tp_ckpt_open(path, &ck) == TP_OK);
    if (ck) {
        CHECK(tp_ckpt_meta(ck)->step == 40);
        CHECK(tp_ckpt_verify(ck) == TP_OK);
        tp_ckpt_close(ck);
    }
}

static void touch(const char *dir, const char *name)
{
    char p[8400];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    FILE *f = fopen(p, "w");
    fputs("x", f);
    fclose(f);
}

static void test_find_latest(const char *base)
{
    char dir[4096], p[4200], out[4200];
    snprintf(dir, sizeof dir, "%s/run", base);
    /* missing directory, then empty directory */
    CHECK(tp_ckpt_find_latest(dir, out, sizeof out) == TP_OK && out[0] == '\0');
    CHECK(mkdir(dir, 0755) == 0);
    CHECK(tp_ckpt_find_latest(dir, out, sizeof out) == TP_OK && out[0] == '\0');

    tp_ckpt_path_for_step(dir, 7, p, sizeof p);
    char want[4200];
    snprintf(want, sizeof want, "%s/ckpt_00000007.h5", dir);
    CHECK(strcmp(p, want) == 0);

    for (int64_t s = 100; s <= 400; s += 100) {
        tp_ckpt_path_for_step(dir, s, p, sizeof p);
        CHECK(write_model(p, s, (uint64_t)s) == TP_OK);
    }
    /* 400 truncated, 300 with a flipped data byte: 200 is the newest valid one */
    tp_ckpt_path_for_step(dir, 400, p, sizeof p);
    CHECK(truncate(p, 1000) == 0);
    tp_ckpt_path_for_step(dir, 300, p, sizeof p);
    flip_byte(p, data_offset(p, "params/fc1.weight") + 5);
    touch(dir, "ckpt_00000500.h5.tmp");
    touch(dir, "ckpt_99999999.txt");
    capture_begin();
    tp_status_t st = tp_ckpt_find_latest(dir, out, sizeof out);
    const char *msg = capture_end();
    CHECK(st == TP_OK);
    tp_ckpt_path_for_step(dir, 200, p, sizeof p);
    CHECKF(strcmp(out, p) == 0, "got '%s'", out);
    CHECK(strstr(msg, "ckpt_00000400.h5") && strstr(msg, "ckpt_00000300.h5"));
    CHECK(strstr(msg, "ckpt_00000500") == NULL);

    /* out too small is an error, not a silent truncation */
    char small[8];
    capture_begin();
    st = tp_ckpt_find_latest(dir, small, sizeof small);
    capture_end();
    CHECK(st != TP_OK && small[0] == '\0');
}

static void test_rotate(const char *base)
{
    char dir[4096], p[4200];
    snprintf(dir, sizeof dir, "%s/rot", base);
    CHECK(tp_ckpt_rotate(dir, 2) == TP_OK); /* missing dir: nothing to do */
    CHECK(mkdir(dir, 0755) == 0);
    for (int s = 1; s <= 5; s++) {
        char name[64];
        snprintf(name, sizeof name, "ckpt_%08d.h5", s * 10);
        touch(dir, name);
    }
    const char *unrelated[] = {"ckpt_latest.h5", "ckpt_12x.h5", "notes.txt", "ckpt_00000001.h5.bak",
                               "model_00000001.h5"};
    for (int i = 0; i < 5; i++)
        touch(dir, unrelated[i]);
    touch(dir, "ckpt_00000060.h5.tmp");

    CHECK(tp_ckpt_rotate(dir, 0) == TP_OK); /* keep < 1: keep everything */
    snprintf(p, sizeof p, "%s/ckpt_00000010.h5", dir);
    CHECK(file_exists(p));

    CHECK(tp_ckpt_rotate(dir, 2) == TP_OK);
    for (int s = 1; s <= 5; s++) {
        snprintf(p, sizeof p, "%s/ckpt_%08d.h5", dir, s * 10);
        CHECKF(file_exists(p) == (s >= 4), "%s", p);
    }
    for (int i = 0; i < 5; i++) {
        snprintf(p, sizeof p, "%s/%s", dir, unrelated[i]);
        CHECKF(file_exists(p), "%s", p);
    }
    snprintf(p, sizeof p, "%s/ckpt_00000060.h5.tmp", dir);
    CHECK(!file_exists(p));
    CHECK(tp_ckpt_rotate(dir, 10) == TP_OK);
    snprintf(p, sizeof p, "%s/ckpt_00000040.h5", dir);
    CHECK(file_exists(p));
}

static void test_inspect(const char *dir)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/inspect.h5", dir);
    CHECK(write_model(path, 77, 21) == TP_OK);
    char *text = NULL;
    size_t len = 0;
    FILE *out = open_memstream(&text, &len);
    CHECK(tp_ckpt_inspect(path, out) == TP_OK);
    fclose(out);
    if (!text) return;
    fputs(text, stdout);
    const char *needles[] = {"tulpar-checkpoint, version 1",
                             "step            77",
                             "optimizer       adamw",
                             "params/fc1.weight",
                             "optim/m/conv.weight",
                             "optim/v/emb",
                             "[10,128]",
                             "[4,3,3,3]",
                             "float32",
                             "1280",
                             "hidden = [128]"};
    for (size_t i = 0; i < sizeof needles / sizeof needles[0]; i++)
        CHECKF(strstr(text, needles[i]) != NULL, "missing '%s'", needles[i]);
    CHECK(strstr(text, "BAD") == NULL);
    free(text);

    capture_begin();
    out = open_memstream(&text, &len);
    char missing[4200];
    snprintf(missing, sizeof missing, "%s/nothing.h5", dir);
    CHECK(tp_ckpt_inspect(missing, out) == TP_ERR_CKPT);
    fclose(out);
    free(text);
    capture_end();
}

int main(void)
{
    char *dir = tp_test_tmpdir("ckpt");
    test_round_trip(dir);
    test_layout(dir);
    test_bad_files(dir);
    test_corrupt_data(dir);
    test_shape_and_missing(dir);
    test_failed_writes(dir);
    test_find_latest(dir);
    test_rotate(dir);
    test_inspect(dir);
    char cmd[4200];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (tp_test_failures == 0 && system(cmd) != 0) fprintf(stderr, "could not remove %s\n", dir);
    free(dir);
    return tp_test_finish("test_ckpt");
}
