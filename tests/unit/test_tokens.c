/* Unit test of token files (data_tokens.h): write/open round trips for widths 1, 2 and 4, an
 * llm.c shard written here, every malformed-file error with its message, training windows, and
 * the sampler over windows giving disjoint data to 2 ranks. */
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/stat.h>

#include "data.h"
#include "data_tokens.h"
#include "test_util.h"

static char *tmpdir;

static void path_in(char *buf, size_t cap, const char *name)
{
    snprintf(buf, cap, "%s/%s", tmpdir, name);
}

static void write_raw(const char *path, const uint8_t *b, size_t len)
{
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(b, 1, len, f) != len || fclose(f) != 0) {
        fprintf(stderr, "cannot write %s: %s\n", path, strerror(errno));
        exit(2);
    }
}

static uint8_t *read_raw(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "cannot read %s: %s\n", path, strerror(errno));
        exit(2);
    }
    fseek(f, 0, SEEK_END);
    *len = (size_t)ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *b = malloc(*len + 1);
    if (fread(b, 1, *len, f) != *len) exit(2);
    fclose(f);
    return b;
}

static void put_le(uint8_t *p, uint64_t v, int width)
{
    for (int i = 0; i < width; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static uint32_t token_value(int64_t i, uint32_t vocab)
{
    return (uint32_t)((uint64_t)(i * 2654435761u + 12345) % vocab);
}

/* n tokens of width bytes, little-endian, values below vocab (the top value appears). */
static uint8_t *make_tokens(int64_t n, int width, uint32_t vocab)
{
    uint8_t *b = malloc((size_t)(n * width) + 1);
    for (int64_t i = 0; i < n; i++)
        put_le(b + i * width, i == n / 2 ? vocab - 1 : token_value(i, vocab), width);
    return b;
}

static uint32_t expected_token(int64_t i, int64_t n, uint32_t vocab)
{
    return i == n / 2 ? vocab - 1 : token_value(i, vocab);
}

/* ---- opening with stderr captured ---- */

static char captured[8192];

static tp_status_t open_capture(const char *path, tp_tokens_t **t)
{
    char tmpl[] = "/tmp/tulpar-test-tokens-stderr-XXXXXX";
    int fd = mkstemp(tmpl);
    if (fd < 0) exit(2);
    unlink(tmpl);
    int saved = dup(STDERR_FILENO);
    fflush(stderr);
    dup2(fd, STDERR_FILENO);
    tp_status_t st = tp_tokens_open(path, t);
    fflush(stderr);
    dup2(saved, STDERR_FILENO);
    close(saved);
    ssize_t got = pread(fd, captured, sizeof captured - 1, 0);
    captured[got > 0 ? got : 0] = '\0';
    close(fd);
    fputs(captured, stderr); /* keep the expected messages visible in the log */
    return st;
}

/* Opening `path` must fail with TP_ERR_DATA and a message naming the file and containing each
 * of the (up to two) phrases. */
static void expect_open_error(const char *path, const char *what, const char *what2)
{
    tp_tokens_t *t = (tp_tokens_t *)&t;
    tp_status_t st = open_capture(path, &t);
    CHECKF(st == TP_ERR_DATA, "%s: status %s, want data error", path, tp_status_str(st));
    CHECKF(t == NULL, "%s: *out not cleared on failure", path);
    CHECKF(strstr(captured, path) != NULL, "message does not name %s: %s", path, captured);
    CHECKF(strstr(captured, what) != NULL, "message lacks '%s': %s", what, captured);
    if (what2) CHECKF(strstr(captured, what2) != NULL, "message lacks '%s': %s", what2, captured);
    if (st == TP_OK) tp_tokens_close(t);
}

/* ---- tests ---- */

static void test_round_trip(int width, uint32_t vocab)
{
    const int64_t n = 10007;
    char path[4096], tmp[4200];
    snprintf(path, sizeof path, "%s/rt%d.bin", tmpdir, width);
    uint8_t *b = make_tokens(n, width, vocab);
    CHECK(tp_tokens_write(path, b, n, width, (int32_t)vocab) == TP_OK);
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    CHECKF(access(tmp, F_OK) != 0, "%s left behind", tmp);
    struct stat sb;
    CHECK(stat(path, &sb) == 0 && sb.st_size == TP_TOKENS_HEADER_BYTES + n * width);

    tp_tokens_t *t = NULL;
    CHECK(tp_tokens_open(path, &t) == TP_OK);
    if (!t) return;
    CHECK(tp_tokens_count(t) == n);
    CHECK(tp_tokens_vocab_size(t) == (int32_t)vocab);
    CHECK(tp_tokens_width(t) == width);
    CHECK(strcmp(tp_tokens_format(t), "tulpar") == 0);
    CHECK(strcmp(tp_tokens_path(t), path) == 0);
    int32_t *all = malloc((size_t)n * sizeof *all);
    for (int64_t i = 0; i < n; i++)
        all[i] = -1;
    tp_tokens_read(t, 0, n, all);
    int64_t bad = 0;
    for (int64_t i = 0; i < n; i++)
        bad += all[i] != (int32_t)expected_token(i, n, vocab);
    CHECKF(bad == 0, "width %d: %lld tokens differ after the round trip", width, (long long)bad);
    int32_t part[5];
    tp_tokens_read(t, 7, 5, part);
    for (int i = 0; i < 5; i++)
        CHECK(part[i] == (int32_t)expected_token(7 + i, n, vocab));
    tp_tokens_close(t);

    /* Rewriting replaces the file. */
    CHECK(tp_tokens_write(path, b, 3, width, (int32_t)vocab) == TP_OK);
    CHECK(tp_tokens_open(path, &t) == TP_OK && t && tp_tokens_count(t) == 3);
    tp_tokens_close(t);
    free(all);
    free(b);
}

static void test_empty_file_of_tokens(void)
{
    char path[4096];
    path_in(path, sizeof path, "zero.bin");
    CHECK(tp_tokens_write(path, NULL, 0, 1, 256) == TP_OK);
    tp_tokens_t *t = NULL;
    CHECK(tp_tokens_open(path, &t) == TP_OK && t && tp_tokens_count(t) == 0);
    if (t) CHECK(tp_tokens_windows(t, 4) == 0);
    tp_tokens_close(t);
}

/* An llm.c shard: 256 int32 header words, then uint16 tokens. */
static uint8_t *make_llmc(int32_t magic, int32_t version, int32_t header_n, int64_t n, uint16_t top,
                          size_t *len)
{
    *len = TP_TOKENS_LLMC_HEADER_BYTES + (size_t)n * 2;
    uint8_t *b = calloc(1, *len);
    put_le(b, (uint32_t)magic, 4);
    put_le(b + 4, (uint32_t)version, 4);
    put_le(b + 8, (uint32_t)header_n, 4);
    for (int64_t i = 0; i < n; i++)
        put_le(b + TP_TOKENS_LLMC_HEADER_BYTES + i * 2, i == n - 1 ? top : token_value(i, 50257),
               2);
    return b;
}

static void test_llmc(void)
{
    const int64_t n = 4099;
    char path[4096];
    size_t len;
    path_in(path, sizeof path, "shard_000000.bin");
    uint8_t *b = make_llmc(TP_TOKENS_LLMC_MAGIC, 1, (int32_t)n, n, 50256, &len);
    write_raw(path, b, len);
    tp_tokens_t *t = NULL;
    CHECK(tp_tokens_open(path, &t) == TP_OK);
    if (t) {
        CHECK(tp_tokens_count(t) == n);
        CHECK(tp_tokens_vocab_size(t) == 50257);
        CHECK(tp_tokens_width(t) == 2);
        CHECK(strcmp(tp_tokens_format(t), "llm.c") == 0);
        int32_t got[3];
        tp_tokens_read(t, n - 3, 3, got);
        CHECK(got[0] == (int32_t)token_value(n - 3, 50257));
        CHECK(got[1] == (int32_t)token_value(n - 2, 50257));
        CHECK(got[2] == 50256);
        tp_tokens_close(t);
    }
    free(b);

    path_in(path, sizeof path, "shard_badver.bin");
    b = make_llmc(TP_TOKENS_LLMC_MAGIC, 7, (int32_t)n, n, 5, &len);
    write_raw(path, b, len);
    expect_open_error(path, "llm.c shard version 7", NULL);
    free(b);

    path_in(path, sizeof path, "shard_short.bin");
    b = make_llmc(TP_TOKENS_LLMC_MAGIC, 1, (int32_t)n + 10, n, 5, &len);
    write_raw(path, b, len);
    expect_open_error(path, "truncated", "header says 4109 tokens");
    free(b);

    path_in(path, sizeof path, "shard_vocab.bin");
    b = make_llmc(TP_TOKENS_LLMC_MAGIC, 1, (int32_t)n, n, 50257, &len);
    write_raw(path, b, len);
    expect_open_error(path, "token 4098 has value 50257", "vocab_size 50257");
    free(b);

    path_in(path, sizeof path, "shard_hdr.bin");
    b = make_llmc(TP_TOKENS_LLMC_MAGIC, 1, 0, 0, 0, &len);
    write_raw(path, b, 100);
    expect_open_error(path, "truncated", "llm.c shard header");
    free(b);
}

static void test_errors(void)
{
    char path[4096], good[4096];
    const int64_t n = 1000;
    uint8_t *tok = make_tokens(n, 2, 60000);
    path_in(good, sizeof good, "good.bin");
    CHECK(tp_tokens_write(good, tok, n, 2, 60000) == TP_OK);
    size_t len;
    uint8_t *g = read_raw(good, &len);
    uint8_t *b = malloc(len + 16);

    path_in(path, sizeof path, "missing.bin");
    expect_open_error(path, "cannot open token file", strerror(ENOENT));
    expect_open_error(tmpdir, "is a directory", NULL);

    path_in(path, sizeof path, "empty.bin");
    write_raw(path, g, 0);
    expect_open_error(path, "not a token file", "empty");

    path_in(path, sizeof path, "text.bin");
    write_raw(path, (const uint8_t *)"hello world, this is text\n", 26);
    expect_open_error(path, "not a token file (magic 68 65 6c 6c 6f 20 77 6f 'hello wo'", NULL);

    path_in(path, sizeof path, "tiny.bin");
    write_raw(path, (const uint8_t *)"ab", 2);
    expect_open_error(path, "not a token file (magic 61 62 'ab'", NULL);

    path_in(path, sizeof path, "truncated.bin");
    write_raw(path, g, len - 3);
    expect_open_error(path, "truncated: header says 1000 tokens (2064 bytes",
                      "the file has 2061 bytes");

    path_in(path, sizeof path, "header_only.bin");
    write_raw(path, g, 40);
    expect_open_error(path, "truncated", "64-byte");

    path_in(path, sizeof path, "trailing.bin");
    memcpy(b, g, len);
    memset(b + len, 0, 4);
    write_raw(path, b, len + 4);
    expect_open_error(path, "trailing data", "the file has 2068 bytes");

    path_in(path, sizeof path, "corrupt.bin");
    memcpy(b, g, len);
    b[TP_TOKENS_HEADER_BYTES + 501] ^= 0x10;
    write_raw(path, b, len);
    expect_open_error(path, "checksum mismatch", NULL);

    path_in(path, sizeof path, "version.bin");
    memcpy(b, g, len);
    put_le(b + 8, 2, 4);
    write_raw(path, b, len);
    expect_open_error(path, "version 2 is not supported", NULL);

    path_in(path, sizeof path, "width.bin");
    memcpy(b, g, len);
    put_le(b + 12, 3, 4);
    write_raw(path, b, len);
    expect_open_error(path, "token width 3", NULL);

    path_in(path, sizeof path, "vocab0.bin");
    memcpy(b, g, len);
    put_le(b + 24, 0, 4);
    write_raw(path, b, len);
    expect_open_error(path, "vocab_size 0 is out of range", NULL);

    path_in(path, sizeof path, "reserved.bin");
    memcpy(b, g, len);
    b[50] = 1;
    write_raw(path, b, len);
    expect_open_error(path, "reserved header bytes", NULL);

    /* The crc covers the tokens only, so a smaller vocab in the header is caught by the token
     * check: token 0 is 12345. */
    path_in(path, sizeof path, "vocab.bin");
    memcpy(b, g, len);
    put_le(b + 24, 1000, 4);
    write_raw(path, b, len);
    expect_open_error(path, "token 0 has value 12345, not below vocab_size 1000", NULL);

    /* Writer refusals. */
    path_in(path, sizeof path, "refused.bin");
    CHECK(tp_tokens_write(path, tok, n, 2, 1000) == TP_ERR_DATA);
    CHECK(tp_tokens_write(path, tok, n, 3, 60000) == TP_ERR_DATA);
    CHECK(tp_tokens_write(path, tok, n, 2, 0) == TP_ERR_DATA);
    CHECK(access(path, F_OK) != 0);
    path_in(path, sizeof path, "no/such/dir/x.bin");
    CHECK(tp_tokens_write(path, tok, n, 2, 60000) == TP_ERR_IO);

    free(b);
    free(g);
    free(tok);
}

static void test_windows(void)
{
    char path[4096];
    path_in(path, sizeof path, "win.bin");
    const int64_t n = 1001, T = 10;
    uint8_t *b = make_tokens(n, 4, 1u << 20);
    CHECK(tp_tokens_write(path, b, n, 4, 1 << 20) == TP_OK);
    tp_tokens_t *t = NULL;
    CHECK(tp_tokens_open(path, &t) == TP_OK);
    if (!t) return;
    CHECK(tp_tokens_windows(t, T) == 100); /* the last target is token 1000 */
    CHECK(tp_tokens_windows(t, 1000) == 1);
    CHECK(tp_tokens_windows(t, 1001) == 0);
    CHECK(tp_tokens_windows(t, 0) == 0);
    const int64_t idx[4] = {99, 0, 42, 42};
    int32_t in[4 * 10], tg[4 * 10];
    tp_tokens_fill_windows(t, idx, 4, T, in, tg);
    int bad = 0;
    for (int k = 0; k < 4; k++)
        for (int i = 0; i < T; i++) {
            bad += in[k * T + i] != (int32_t)expected_token(idx[k] * T + i, n, 1u << 20);
            bad += tg[k * T + i] != (int32_t)expected_token(idx[k] * T + i + 1, n, 1u << 20);
        }
    CHECKF(bad == 0, "%d window entries wrong", bad);
    CHECK(tg[T - 1] == (int32_t)expected_token(1000, n, 1u << 20));
    tp_tokens_close(t);
    free(b);

    /* A file of 1 token has no window. */
    path_in(path, sizeof path, "one.bin");
    CHECK(tp_tokens_write(path, (const uint8_t *)"x", 1, 1, 256) == TP_OK);
    CHECK(tp_tokens_open(path, &t) == TP_OK);
    if (t) CHECK(tp_tokens_windows(t, 1) == 0);
    tp_tokens_close(t);
}

/* The sampler over windows: in every step the two ranks' windows are disjoint, each epoch visits
 * a window at most once, and the two ranks together see the 1-rank batch. */
static void test_sampler_over_windows(void)
{
    char path[4096];
    path_in(path, sizeof path, "corpus.bin");
    const int64_t n = 5000, T = 16, B = 8;
    uint8_t *b = make_tokens(n, 1, 256);
    CHECK(tp_tokens_write(path, b, n, 1, 256) == TP_OK);
    tp_tokens_t *t = NULL;
    CHECK(tp_tokens_open(path, &t) == TP_OK);
    if (!t) return;
    int64_t nw = tp_tokens_windows(t, T);
    CHECK(nw == (n - 1) / T);
    tp_sampler_t *s0 = NULL, *s1 = NULL, *one = NULL;
    CHECK(tp_sampler_create(nw, B, 0, 2, 1234, &s0) == TP_OK);
    CHECK(tp_sampler_create(nw, B, 1, 2, 1234, &s1) == TP_OK);
    CHECK(tp_sampler_create(nw, B, 0, 1, 1234, &one) == TP_OK);
    if (!s0 || !s1 || !one) return;
    CHECK(tp_sampler_local_batch(s0) == B / 2);
    int64_t steps = tp_sampler_steps_per_epoch(s0);
    CHECK(steps == nw / B);
    uint8_t *seen = calloc((size_t)nw, 1);
    int64_t i0[4], i1[4], all[8];
    int32_t in0[4 * 16], tg0[4 * 16], in1[4 * 16], tg1[4 * 16];
    int overlap = 0, repeat = 0, union_bad = 0, fill_bad = 0;
    for (int64_t epoch = 0; epoch < 2; epoch++) {
        memset(seen, 0, (size_t)nw);
        for (int64_t step = 0; step < steps; step++) {
            tp_sampler_batch(s0, epoch, step, i0, NULL);
            tp_sampler_batch(s1, epoch, step, i1, NULL);
            tp_sampler_batch(one, epoch, step, all, NULL);
            for (int a = 0; a < 4; a++) {
                for (int c = 0; c < 4; c++)
                    overlap += i0[a] == i1[c];
                union_bad += all[a] != i0[a] || all[4 + a] != i1[a];
                repeat += seen[i0[a]]++ > 0;
                repeat += seen[i1[a]]++ > 0;
            }
            tp_tokens_fill_windows(t, i0, 4, T, in0, tg0);
            tp_tokens_fill_windows(t, i1, 4, T, in1, tg1);
            /* Token positions of the two ranks' inputs never coincide. */
            for (int a = 0; a < 4; a++)
                for (int c = 0; c < 4; c++)
                    overlap += i0[a] * T < i1[c] * T + T && i1[c] * T < i0[a] * T + T;
            for (int a = 0; a < 4; a++)
                for (int i = 0; i < T; i++)
                    fill_bad += in1[a * T + i] != b[i1[a] * T + i] ||
                                tg1[a * T + i] != b[i1[a] * T + i + 1] ||
                                in0[a * T + i] != b[i0[a] * T + i];
        }
    }
    CHECKF(overlap == 0, "%d overlaps between ranks", overlap);
    CHECKF(repeat == 0, "%d windows repeated within an epoch", repeat);
    CHECKF(union_bad == 0, "2-rank batches differ from the 1-rank batch %d times", union_bad);
    CHECKF(fill_bad == 0, "%d filled tokens wrong", fill_bad);
    /* Resuming at (epoch 1, step 3) with a fresh sampler gives the same windows. */
    tp_sampler_t *again = NULL;
    CHECK(tp_sampler_create(nw, B, 1, 2, 1234, &again) == TP_OK);
    if (again) {
        int64_t x[4], y[4];
        tp_sampler_batch(s1, 1, 3, x, NULL);
        tp_sampler_batch(again, 1, 3, y, NULL);
        CHECK(memcmp(x, y, sizeof x) == 0);
    }
    tp_sampler_free(again);
    free(seen);
    tp_sampler_free(s0);
    tp_sampler_free(s1);
    tp_sampler_free(one);
    tp_tokens_close(t);
    free(b);
}

int main(void)
{
    tmpdir = tp_test_tmpdir("tokens");
    test_round_trip(1, 256);
    test_round_trip(2, 50257);
    test_round_trip(4, 200000);
    test_round_trip(4, 0x7fffffff);
    test_empty_file_of_tokens();
    test_llmc();
    test_errors();
    test_windows();
    test_sampler_over_windows();
    int rc = tp_test_finish("test_tokens");
    if (rc == 0) {
        char cmd[4200];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
        if (system(cmd) != 0) fprintf(stderr, "cannot remove %s\n", tmpdir);
    }
    free(tmpdir);
    return rc;
}
