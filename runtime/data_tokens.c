/* Token files (layouts in data_tokens.h): open and validate by mmap, read and window for
 * next-token training, and the atomic writer.
 *
 * All validation happens at open, once, so that a bad shard fails before training starts rather
 * than as a wrong loss at some step; the readers that run every step then do no checks. Fields
 * are decoded byte by byte, so the files are the same on any host byte order. */
#define _GNU_SOURCE
#include "data_tokens.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

/* crc32_z and write() take sizes; keep each call well inside any 32-bit limit. */
#define TOKENS_CHUNK ((size_t)1 << 30)

struct tp_tokens {
    char *path;
    const uint8_t *map; /* the whole file */
    size_t map_len;
    const uint8_t *data; /* first token */
    int64_t n;
    int width;
    int32_t vocab;
    const char *format;
};

static uint32_t le32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint64_t le64(const uint8_t *p)
{
    return (uint64_t)le32(p) | (uint64_t)le32(p + 4) << 32;
}

static void put32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static void put64(uint8_t *p, uint64_t v)
{
    put32(p, (uint32_t)v);
    put32(p + 4, (uint32_t)(v >> 32));
}

static uint32_t token_at(const uint8_t *data, int width, int64_t i)
{
    const uint8_t *p = data + i * width;
    switch (width) {
    case 1:
        return p[0];
    case 2:
        return (uint32_t)p[0] | (uint32_t)p[1] << 8;
    default:
        return le32(p);
    }
}

static uint32_t crc_bytes(const uint8_t *p, size_t len)
{
    uLong crc = crc32_z(0, Z_NULL, 0);
    for (size_t off = 0; off < len; off += TOKENS_CHUNK) {
        size_t chunk = len - off < TOKENS_CHUNK ? len - off : TOKENS_CHUNK;
        crc = crc32_z(crc, p + off, chunk);
    }
    return (uint32_t)crc;
}

/* First token >= vocab, or -1. Width 1 with vocab >= 256 cannot fail and is skipped. */
static int64_t first_out_of_vocab(const uint8_t *data, int width, int64_t n, int64_t vocab)
{
    if (width == 1 && vocab >= 256) return -1;
    for (int64_t i = 0; i < n; i++)
        if (token_at(data, width, i) >= (uint64_t)vocab) return i;
    return -1;
}

/* "54 55 4c 50 ... ('TULP....')" for the not-a-token-file message. */
static void describe_magic(const uint8_t *p, size_t len, char *buf, size_t cap)
{
    size_t n = len < 8 ? len : 8, at = 0;
    for (size_t i = 0; i < n && at < cap; i++)
        at += (size_t)snprintf(buf + at, cap - at, "%s%02x", i ? " " : "", p[i]);
    if (at < cap) at += (size_t)snprintf(buf + at, cap - at, " '");
    for (size_t i = 0; i < n && at + 1 < cap; i++)
        buf[at++] = p[i] >= 0x20 && p[i] < 0x7f ? (char)p[i] : '.';
    if (at < cap) snprintf(buf + at, cap - at, "'");
}

/* Header fields of either layout, checked against the file size. */
static tp_status_t parse_header(tp_tokens_t *t, const uint8_t *m, size_t size, uint32_t *crc_out,
                                int *has_crc)
{
    const char *path = t->path;
    uint64_t header, n;
    *has_crc = 0;
    if (size >= 8 && memcmp(m, TP_TOKENS_MAGIC, 8) == 0) {
        header = TP_TOKENS_HEADER_BYTES;
        if (size < header)
            return TP_ERR(TP_ERR_DATA,
                          "%s: truncated: %zu bytes, shorter than the %d-byte token file header",
                          path, size, TP_TOKENS_HEADER_BYTES);
        uint32_t version = le32(m + 8), width = le32(m + 12), vocab = le32(m + 24);
        if (version != TP_TOKENS_VERSION)
            return TP_ERR(TP_ERR_DATA,
                          "%s: token file version %u is not supported (this build reads %d)", path,
                          version, TP_TOKENS_VERSION);
        if (width != 1 && width != 2 && width != 4)
            return TP_ERR(TP_ERR_DATA, "%s: token width %u bytes is not 1, 2 or 4", path, width);
        if (vocab < 1 || vocab > INT32_MAX)
            return TP_ERR(TP_ERR_DATA, "%s: vocab_size %u is out of range (1 .. %d)", path, vocab,
                          INT32_MAX);
        uint64_t crc = le64(m + 32);
        int reserved_ok = le32(m + 28) == 0 && crc >> 32 == 0;
        for (int i = 40; i < TP_TOKENS_HEADER_BYTES; i++)
            reserved_ok = reserved_ok && m[i] == 0;
        if (!reserved_ok)
            return TP_ERR(TP_ERR_DATA, "%s: reserved header bytes are not zero (corrupt header)",
                          path);
        n = le64(m + 16);
        t->width = (int)width;
        t->vocab = (int32_t)vocab;
        t->format = "tulpar";
        *crc_out = (uint32_t)crc;
        *has_crc = 1;
    } else if (size >= 4 && le32(m) == TP_TOKENS_LLMC_MAGIC) {
        header = TP_TOKENS_LLMC_HEADER_BYTES;
        if (size < header)
            return TP_ERR(TP_ERR_DATA,
                          "%s: truncated: %zu bytes, shorter than the %d-byte llm.c shard header",
                          path, size, TP_TOKENS_LLMC_HEADER_BYTES);
        int32_t version = (int32_t)le32(m + 4), count = (int32_t)le32(m + 8);
        if (version != TP_TOKENS_LLMC_VERSION)
            return TP_ERR(TP_ERR_DATA,
                          "%s: llm.c shard version %d is not supported (this build reads version "
                          "%d: GPT-2 uint16 tokens)",
                          path, version, TP_TOKENS_LLMC_VERSION);
        if (count < 0)
            return TP_ERR(TP_ERR_DATA, "%s: llm.c header has a negative token count %d", path,
                          count);
        n = (uint64_t)count;
        t->width = 2;
        t->vocab = TP_TOKENS_LLMC_VOCAB;
        t->format = "llm.c";
    } else {
        char magic[64];
        describe_magic(m, size, magic, sizeof magic);
        return TP_ERR(TP_ERR_DATA, "%s: not a token file (magic %s; expected '%s' or llm.c's %d)",
                      path, magic, TP_TOKENS_MAGIC, TP_TOKENS_LLMC_MAGIC);
    }
    if (n > (uint64_t)(INT64_MAX - (int64_t)header) / (uint64_t)t->width)
        return TP_ERR(TP_ERR_DATA, "%s: header says %llu tokens, more than any file can hold", path,
                      (unsigned long long)n);
    uint64_t expect = header + n * (uint64_t)t->width;
    if (expect != size)
        return TP_ERR(TP_ERR_DATA,
                      "%s: %s: header says %llu tokens (%llu bytes with the %llu-byte header) but "
                      "the file has %zu bytes",
                      path, expect > size ? "truncated" : "trailing data", (unsigned long long)n,
                      (unsigned long long)expect, (unsigned long long)header, size);
    t->n = (int64_t)n;
    t->data = m + header;
    return TP_OK;
}

tp_status_t tp_tokens_open(const char *path, tp_tokens_t **out)
{
    *out = NULL;
    tp_tokens_t *t = tp_calloc(1, sizeof *t, "token file");
    if (!t) return TP_ERR_NOMEM;
    tp_status_t st = TP_OK;
    t->path = tp_strdup(path);
    if (!t->path) {
        st = TP_ERR_NOMEM;
        goto fail;
    }
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        st = TP_ERR(TP_ERR_DATA, "cannot open token file %s: %s", path, strerror(errno));
        goto fail;
    }
    struct stat sb;
    if (fstat(fd, &sb) != 0) {
        st = TP_ERR(TP_ERR_DATA, "cannot stat token file %s: %s", path, strerror(errno));
        close(fd);
        goto fail;
    }
    if (!S_ISREG(sb.st_mode)) {
        st = TP_ERR(TP_ERR_DATA, "token file %s %s", path,
                    S_ISDIR(sb.st_mode) ? "is a directory" : "is not a regular file");
        close(fd);
        goto fail;
    }
    if (sb.st_size == 0) {
        close(fd);
        st = TP_ERR(TP_ERR_DATA, "%s: not a token file (it is empty)", path);
        goto fail;
    }
    t->map_len = (size_t)sb.st_size;
    void *m = mmap(NULL, t->map_len, PROT_READ, MAP_PRIVATE, fd, 0);
    int map_err = errno;
    close(fd);
    if (m == MAP_FAILED) {
        st = TP_ERR(TP_ERR_DATA, "cannot map token file %s: %s", path, strerror(map_err));
        goto fail;
    }
    t->map = m;

    uint32_t crc_stored = 0;
    int has_crc = 0;
    TP_TRYGOTO(parse_header(t, t->map, t->map_len, &crc_stored, &has_crc), st, fail);
    size_t data_len = (size_t)t->n * (size_t)t->width;
    if (has_crc) {
        uint32_t crc = crc_bytes(t->data, data_len);
        if (crc != crc_stored) {
            st = TP_ERR(TP_ERR_DATA,
                        "%s: checksum mismatch: header crc32 %08x, tokens crc32 %08x (the file "
                        "is corrupt or was modified)",
                        path, crc_stored, crc);
            goto fail;
        }
    }
    int64_t bad = first_out_of_vocab(t->data, t->width, t->n, t->vocab);
    if (bad >= 0) {
        st = TP_ERR(TP_ERR_DATA, "%s: token %lld has value %u, not below vocab_size %d", path,
                    (long long)bad, token_at(t->data, t->width, bad), t->vocab);
        goto fail;
    }
    *out = t;
    return TP_OK;
fail:
    tp_tokens_close(t);
    return st;
}

void tp_tokens_close(tp_tokens_t *t)
{
    if (!t) return;
    if (t->map) munmap((void *)t->map, t->map_len);
    free(t->path);
    free(t);
}

int64_t tp_tokens_count(const tp_tokens_t *t)
{
    return t->n;
}

int32_t tp_tokens_vocab_size(const tp_tokens_t *t)
{
    return t->vocab;
}

int tp_tokens_width(const tp_tokens_t *t)
{
    return t->width;
}

const char *tp_tokens_format(const tp_tokens_t *t)
{
    return t->format;
}

const char *tp_tokens_path(const tp_tokens_t *t)
{
    return t->path;
}

void tp_tokens_read(const tp_tokens_t *t, int64_t start, int64_t count, int32_t *dst)
{
    const uint8_t *p = t->data + start * t->width;
    switch (t->width) {
    case 1:
        for (int64_t i = 0; i < count; i++)
            dst[i] = p[i];
        break;
    case 2:
        for (int64_t i = 0; i < count; i++)
            dst[i] = (int32_t)((uint32_t)p[2 * i] | (uint32_t)p[2 * i + 1] << 8);
        break;
    default:
        for (int64_t i = 0; i < count; i++)
            dst[i] = (int32_t)le32(p + 4 * i);
        break;
    }
}

int64_t tp_tokens_windows(const tp_tokens_t *t, int64_t T)
{
    if (T < 1 || t->n < 2) return 0;
    return (t->n - 1) / T;
}

void tp_tokens_fill_windows(const tp_tokens_t *t, const int64_t *window_idx, int64_t count,
                            int64_t T, int32_t *inputs, int32_t *targets)
{
    for (int64_t k = 0; k < count; k++) {
        int64_t first = window_idx[k] * T;
        tp_tokens_read(t, first, T, inputs + k * T);
        tp_tokens_read(t, first + 1, T, targets + k * T);
    }
}

static tp_status_t write_all(int fd, const uint8_t *p, size_t len, const char *path)
{
    size_t done = 0;
    while (done < len) {
        size_t chunk = len - done < TOKENS_CHUNK ? len - done : TOKENS_CHUNK;
        ssize_t w = write(fd, p + done, chunk);
        if (w < 0) {
            if (errno == EINTR) continue;
            return TP_ERR(TP_ERR_IO, "cannot write %s: %s", path, strerror(errno));
        }
        done += (size_t)w;
    }
    return TP_OK;
}

tp_status_t tp_tokens_write(const char *path, const uint8_t *bytes, int64_t n, int width,
                            int32_t vocab)
{
    if (width != 1 && width != 2 && width != 4)
        return TP_ERR(TP_ERR_DATA, "%s: token width %d bytes is not 1, 2 or 4", path, width);
    if (vocab < 1) return TP_ERR(TP_ERR_DATA, "%s: vocab_size %d must be >= 1", path, vocab);
    if (n < 0 || n > (INT64_MAX - TP_TOKENS_HEADER_BYTES) / width)
        return TP_ERR(TP_ERR_DATA, "%s: cannot write %lld tokens", path, (long long)n);
    int64_t bad = first_out_of_vocab(bytes, width, n, vocab);
    if (bad >= 0)
        return TP_ERR(TP_ERR_DATA, "%s: token %lld has value %u, not below vocab_size %d", path,
                      (long long)bad, token_at(bytes, width, bad), vocab);
    size_t len = (size_t)n * (size_t)width;

    uint8_t h[TP_TOKENS_HEADER_BYTES] = {0};
    memcpy(h, TP_TOKENS_MAGIC, 8);
    put32(h + 8, TP_TOKENS_VERSION);
    put32(h + 12, (uint32_t)width);
    put64(h + 16, (uint64_t)n);
    put32(h + 24, (uint32_t)vocab);
    put64(h + 32, len ? crc_bytes(bytes, len) : crc32_z(0, Z_NULL, 0));

    char tmp[4096];
    if (snprintf(tmp, sizeof tmp, "%s.tmp", path) >= (int)sizeof tmp)
        return TP_ERR(TP_ERR_IO, "path too long: %s", path);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) return TP_ERR(TP_ERR_IO, "cannot write %s: %s", tmp, strerror(errno));
    tp_status_t st = write_all(fd, h, sizeof h, tmp);
    if (st == TP_OK) st = write_all(fd, bytes, len, tmp);
    if (st == TP_OK && fsync(fd) != 0)
        st = TP_ERR(TP_ERR_IO, "cannot sync %s: %s", tmp, strerror(errno));
    if (close(fd) != 0 && st == TP_OK)
        st = TP_ERR(TP_ERR_IO, "cannot close %s: %s", tmp, strerror(errno));
    if (st == TP_OK && rename(tmp, path) != 0)
        st = TP_ERR(TP_ERR_IO, "cannot rename %s to %s: %s", tmp, path, strerror(errno));
    if (st != TP_OK) unlink(tmp);
    return st;
}
