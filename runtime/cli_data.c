/* `tulpar data prepare`: turn UTF-8 text into byte-level token files for a GPT.
 *
 * The tokenizer is the identity on UTF-8 bytes (vocab 256), so Kazakh, Russian and English need
 * no vocabulary and nothing can be out of vocabulary; the price is longer sequences for Cyrillic
 * (2 bytes a letter). Input is checked strictly because a stray Windows-1251 or binary file would
 * otherwise train silently on garbage. The summary prints the unigram entropy of the training
 * bytes: a model that ignores context reaches that loss, so the GPT's validation loss must beat
 * it. */
#define _GNU_SOURCE
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <zlib.h>

#include "cli.h"
#include "data_tokens.h"
#include "json_writer.h"

#define MAX_INPUTS 256
#define CUT_WINDOW 4096 /* how far from the requested split point to look for a newline */
#define BYTE_VOCAB 256

typedef struct source {
    const char *path;
    int64_t bytes; /* as read, before a leading BOM is dropped or a newline added */
    uint32_t crc32;
} source_t;

typedef struct text {
    uint8_t *buf;
    size_t len, cap;
} text_t;

static tp_status_t text_reserve(text_t *t, size_t extra)
{
    if (t->len + extra <= t->cap) return TP_OK;
    size_t cap = t->cap ? t->cap : 1 << 20;
    while (cap < t->len + extra)
        cap *= 2;
    uint8_t *b = realloc(t->buf, cap);
    if (!b) return TP_ERR(TP_ERR_NOMEM, "out of memory reading %zu bytes of text", cap);
    t->buf = b;
    t->cap = cap;
    return TP_OK;
}

/* Offset of the first byte that does not start a well-formed UTF-8 sequence (RFC 3629: no
 * overlong forms, surrogates or code points above U+10FFFF), or n. *nul is set when that byte is
 * a NUL, which is valid UTF-8 but never in text. */
static size_t utf8_first_bad(const uint8_t *s, size_t n, int *nul)
{
    *nul = 0;
    size_t i = 0;
    while (i < n) {
        uint8_t c = s[i];
        if (c == 0) {
            *nul = 1;
            return i;
        }
        if (c < 0x80) {
            i++;
            continue;
        }
        size_t len;
        uint32_t cp;
        if (c >= 0xc2 && c <= 0xdf) {
            len = 2;
            cp = c & 0x1f;
        } else if ((c & 0xf0) == 0xe0) {
            len = 3;
            cp = c & 0x0f;
        } else if (c >= 0xf0 && c <= 0xf4) {
            len = 4;
            cp = c & 0x07;
        } else {
            return i;
        }
        if (i + len > n) return i;
        for (size_t k = 1; k < len; k++) {
            if ((s[i + k] & 0xc0) != 0x80) return i;
            cp = cp << 6 | (s[i + k] & 0x3f);
        }
        if ((len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) ||
            (cp >= 0xd800 && cp <= 0xdfff) || cp > 0x10ffff)
            return i;
        i += len;
    }
    return n;
}

static int64_t line_of(const uint8_t *s, size_t off)
{
    int64_t line = 1;
    for (size_t i = 0; i < off; i++)
        line += s[i] == '\n';
    return line;
}

/* Append one input file to the text, checking it is non-empty UTF-8 without NULs; every input
 * ends with a newline in the text so that files never run together mid-line. */
static tp_status_t read_source(const char *path, text_t *t, source_t *src)
{
    FILE *f = fopen(path, "rb");
    if (!f) return TP_ERR(TP_ERR_DATA, "cannot read input %s: %s", path, strerror(errno));
    struct stat sb;
    const char *why = NULL;
    if (fstat(fileno(f), &sb) != 0)
        why = strerror(errno);
    else if (S_ISDIR(sb.st_mode))
        why = "it is a directory";
    if (why) {
        fclose(f);
        return TP_ERR(TP_ERR_DATA, "cannot read input %s: %s", path, why);
    }
    size_t start = t->len;
    tp_status_t st = TP_OK;
    for (;;) {
        TP_TRYGOTO(text_reserve(t, 1 << 20), st, out);
        size_t got = fread(t->buf + t->len, 1, t->cap - t->len, f);
        t->len += got;
        if (got == 0) break;
    }
    if (ferror(f)) {
        st = TP_ERR(TP_ERR_DATA, "cannot read input %s: %s", path, strerror(errno));
        goto out;
    }
    uint8_t *s = t->buf + start;
    size_t n = t->len - start;
    src->path = path;
    src->bytes = (int64_t)n;
    src->crc32 = (uint32_t)crc32_z(crc32_z(0, Z_NULL, 0), s, n);
    if (n >= 3 && s[0] == 0xef && s[1] == 0xbb && s[2] == 0xbf) {
        /* A byte-order mark is noise inside the concatenated text. */
        memmove(s, s + 3, n - 3);
        n -= 3;
        t->len -= 3;
        printf("data: %s: dropped its UTF-8 byte-order mark\n", path);
    }
    if (n == 0) {
        st = TP_ERR(TP_ERR_DATA, "input %s is empty", path);
        goto out;
    }
    int nul;
    size_t bad = utf8_first_bad(s, n, &nul);
    if (bad < n && nul) {
        st = TP_ERR(TP_ERR_DATA,
                    "input %s has a NUL byte at offset %zu (line %lld): binary file? Only text "
                    "can be prepared",
                    path, bad, (long long)line_of(s, bad));
        goto out;
    }
    if (bad < n) {
        char hex[32];
        size_t at = 0;
        for (size_t k = 0; k < 4 && bad + k < n; k++)
            at += (size_t)snprintf(hex + at, sizeof hex - at, "%s%02x", k ? " " : "", s[bad + k]);
        st = TP_ERR(TP_ERR_DATA,
                    "input %s is not valid UTF-8: byte offset %zu (line %lld) starts with bytes "
                    "%s; convert it first (e.g. iconv -f CP1251 -t UTF-8)",
                    path, bad, (long long)line_of(s, bad), hex);
        goto out;
    }
    if (s[n - 1] != '\n') {
        TP_TRYGOTO(text_reserve(t, 1), st, out);
        t->buf[t->len++] = '\n';
    }
out:
    fclose(f);
    return st;
}

/* Where val starts: just after a newline within CUT_WINDOW bytes of the requested point when
 * there is one, else at the requested point moved back to a character boundary. */
static size_t split_point(const uint8_t *s, size_t n, double val_fraction)
{
    size_t want = n - (size_t)llround((double)n * val_fraction);
    for (size_t d = 0; d <= CUT_WINDOW; d++) {
        if (want >= d && want - d >= 1 && want - d <= n - 1 && s[want - d - 1] == '\n')
            return want - d;
        if (want + d >= 1 && want + d <= n - 1 && s[want + d - 1] == '\n') return want + d;
    }
    while (want > 0 && want < n && (s[want] & 0xc0) == 0x80)
        want--;
    return want;
}

typedef struct unigram {
    int distinct;
    double bits, nats;  /* entropy of the train bytes */
    double val_ce_nats; /* val cross-entropy under the train unigram, add-one smoothed */
} unigram_t;

static unigram_t unigram_stats(const uint8_t *train, size_t n_train, const uint8_t *val,
                               size_t n_val)
{
    int64_t count[BYTE_VOCAB] = {0};
    for (size_t i = 0; i < n_train; i++)
        count[train[i]]++;
    unigram_t u = {0};
    for (int b = 0; b < BYTE_VOCAB; b++) {
        if (!count[b]) continue;
        u.distinct++;
        double p = (double)count[b] / (double)n_train;
        u.nats -= p * log(p);
    }
    u.bits = u.nats / log(2.0);
    double ce = 0;
    for (size_t i = 0; i < n_val; i++)
        ce -= log((double)(count[val[i]] + 1) / (double)(n_train + BYTE_VOCAB));
    u.val_ce_nats = n_val ? ce / (double)n_val : 0;
    return u;
}

static tp_status_t write_meta(const char *dir, const source_t *src, int n_src, size_t n_train,
                              size_t n_val, double val_fraction, const unigram_t *u)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/meta.json", dir);
    tp_json_file_t jf;
    TP_TRY(tp_json_file_open(&jf, path, true));
    tp_json_t *j = &jf.j;
    tp_json_object_begin(j, NULL);
    tp_json_str(j, "tokenizer", "bytes");
    tp_json_int(j, "vocab_size", BYTE_VOCAB);
    tp_json_str(j, "format", "tulpar-tokens-v1");
    tp_json_int(j, "token_width", 1);
    tp_json_str(j, "train", "train.bin");
    tp_json_str(j, "val", "val.bin");
    tp_json_int(j, "n_train", (int64_t)n_train);
    tp_json_int(j, "n_val", (int64_t)n_val);
    tp_json_num(j, "val_fraction", val_fraction);
    tp_json_num(j, "train_unigram_entropy_bits", u->bits);
    tp_json_num(j, "train_unigram_entropy_nats", u->nats);
    tp_json_num(j, "val_unigram_cross_entropy_nats", u->val_ce_nats);
    tp_json_array_begin(j, "sources");
    for (int i = 0; i < n_src; i++) {
        char crc[16];
        snprintf(crc, sizeof crc, "%08x", src[i].crc32);
        tp_json_object_begin(j, NULL);
        tp_json_str(j, "path", src[i].path);
        tp_json_int(j, "bytes", src[i].bytes);
        tp_json_str(j, "crc32", crc);
        tp_json_object_end(j);
    }
    tp_json_array_end(j);
    tp_json_object_end(j);
    return tp_json_file_commit(&jf, path);
}

static tp_status_t prepare(const char *const *inputs, int n_inputs, const char *out_dir,
                           double val_fraction, int64_t min_bytes)
{
    source_t src[MAX_INPUTS];
    text_t t = {0};
    tp_status_t st = TP_OK;
    for (int i = 0; i < n_inputs; i++)
        TP_TRYGOTO(read_source(inputs[i], &t, &src[i]), st, out);
    if ((int64_t)t.len < min_bytes) {
        st = TP_ERR(TP_ERR_DATA,
                    "only %zu bytes of text in %d input(s); at least %lld are needed "
                    "(--min-bytes)",
                    t.len, n_inputs, (long long)min_bytes);
        goto out;
    }
    size_t cut = split_point(t.buf, t.len, val_fraction);
    size_t n_train = cut, n_val = t.len - cut;
    if (n_train < 2 || n_val < 2) {
        st = TP_ERR(TP_ERR_DATA,
                    "%zu bytes of text split at --val-fraction %g leave %zu train and %zu val "
                    "tokens; each needs at least 2",
                    t.len, val_fraction, n_train, n_val);
        goto out;
    }
    TP_TRYGOTO(tp_mkdir_p(out_dir), st, out);
    char train_path[4096], val_path[4096];
    snprintf(train_path, sizeof train_path, "%s/train.bin", out_dir);
    snprintf(val_path, sizeof val_path, "%s/val.bin", out_dir);
    TP_TRYGOTO(tp_tokens_write(train_path, t.buf, (int64_t)n_train, 1, BYTE_VOCAB), st, out);
    TP_TRYGOTO(tp_tokens_write(val_path, t.buf + cut, (int64_t)n_val, 1, BYTE_VOCAB), st, out);
    unigram_t u = unigram_stats(t.buf, n_train, t.buf + cut, n_val);
    TP_TRYGOTO(write_meta(out_dir, src, n_inputs, n_train, n_val, val_fraction, &u), st, out);

    printf("data prepare: %d input(s), %zu bytes of UTF-8 text, byte tokenizer (vocab %d)\n",
           n_inputs, t.len, BYTE_VOCAB);
    printf("  train  %-40s %10zu tokens\n", train_path, n_train);
    printf("  val    %-40s %10zu tokens (%.2f%%)\n", val_path, n_val,
           100.0 * (double)n_val / (double)t.len);
    printf("  train bytes use %d of %d values; unigram entropy %.4f bits/byte = %.4f nats\n",
           u.distinct, BYTE_VOCAB, u.bits, u.nats);
    printf("  val loss of a context-free (unigram) model: %.4f nats; a GPT must beat it\n",
           u.val_ce_nats);
out:
    free(t.buf);
    return st;
}

static int run_data(tp_runtime_t *rt, int argc, char **argv)
{
    if (argc < 1) return tp_cli_usage_error("data", "missing subcommand (prepare)");
    if (strcmp(argv[0], "prepare") != 0)
        return tp_cli_usage_error("data", "unknown subcommand '%s' (prepare)", argv[0]);
    const char *inputs[MAX_INPUTS], *out_dir = NULL;
    int n_inputs = 0;
    double val_fraction = 0.1;
    int64_t min_bytes = 1024;
    for (int i = 1; i < argc; i++) {
        if (tp_cli_is(argv[i], "--input")) {
            const char *v = tp_cli_value(argc, argv, &i, "--input");
            if (!v) return TP_ERR_USAGE;
            /* --input A B C: every following argument up to the next option. */
            for (;;) {
                if (n_inputs == MAX_INPUTS)
                    return tp_cli_usage_error("data", "more than %d inputs", MAX_INPUTS);
                inputs[n_inputs++] = v;
                if (i + 1 >= argc || (argv[i + 1][0] == '-' && argv[i + 1][1])) break;
                v = argv[++i];
            }
        } else if (tp_cli_is(argv[i], "--output")) {
            if (!(out_dir = tp_cli_value(argc, argv, &i, "--output"))) return TP_ERR_USAGE;
        } else if (tp_cli_is(argv[i], "--val-fraction")) {
            const char *v = tp_cli_value(argc, argv, &i, "--val-fraction");
            if (!v) return TP_ERR_USAGE;
            char *end;
            errno = 0;
            val_fraction = strtod(v, &end);
            if (errno || end == v || *end || !(val_fraction > 0 && val_fraction <= 0.5))
                return tp_cli_usage_error("data", "--val-fraction '%s' must be in (0, 0.5]", v);
        } else if (tp_cli_is(argv[i], "--min-bytes")) {
            const char *v = tp_cli_value(argc, argv, &i, "--min-bytes");
            if (!v) return TP_ERR_USAGE;
            char *end;
            errno = 0;
            long long m = strtoll(v, &end, 10);
            if (errno || end == v || *end || m < 0)
                return tp_cli_usage_error("data", "--min-bytes '%s' must be an integer >= 0", v);
            min_bytes = m;
        } else {
            return tp_cli_usage_error("data", "unexpected argument '%s'", argv[i]);
        }
    }
    if (n_inputs == 0) return tp_cli_usage_error("data", "missing --input TEXT...");
    if (!out_dir) return tp_cli_usage_error("data", "missing --output DIR");
    return prepare(inputs, n_inputs, out_dir, val_fraction, min_bytes);
}

const tp_cli_cmd_t tp_cmd_data = {
    .name = "data",
    .summary = "prepare text as byte-level token files for a GPT",
    .usage =
        "usage: tulpar data prepare --input TEXT... --output DIR [--val-fraction F]\n"
        "                           [--min-bytes N]\n"
        "\n"
        "Concatenate the UTF-8 text files TEXT... in order (a newline is added after a file\n"
        "that does not end with one) and tokenize them as bytes (vocab 256; any language).\n"
        "The last F of the text (default 0.1, in (0, 0.5]; cut after a newline within 4 KiB\n"
        "of that point) becomes DIR/val.bin, the rest DIR/train.bin; DIR/meta.json records\n"
        "the counts and sources. Token files are Tulpar's format (see runtime/data_tokens.h).\n"
        "\n"
        "Refused: unreadable or empty files, invalid UTF-8 (the offset and bytes are shown),\n"
        "NUL bytes, and fewer than N bytes in total (default 1024).\n"
        "\n"
        "Prints the token counts and the unigram entropy of the training bytes: the loss of a\n"
        "model that ignores context, which a trained GPT's validation loss must beat.\n",
    .needs_runtime = false,
    .run = run_data,
};
