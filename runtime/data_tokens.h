/* Language-model data: token files and next-token training windows.
 *
 * A token file is opened with mmap and read in place, so a corpus of any size costs no heap and
 * every rank of a node shares the page cache. Two layouts are read:
 *
 * Tulpar token file (written by tp_tokens_write and `tulpar data prepare`), little-endian:
 *   offset  size  field
 *        0     8  magic "TULPTOK1"
 *        8     4  uint32 version = 1
 *       12     4  uint32 token_width: bytes per token, 1, 2 or 4
 *       16     8  uint64 n_tokens
 *       24     4  uint32 vocab_size: every token is < vocab_size (1 .. 2^31-1)
 *       28     4  uint32 reserved, 0
 *       32     8  uint64 crc32: zlib crc32 of the n_tokens*token_width token bytes, low 32 bits
 *                 (the high 32 bits are 0)
 *       40    24  reserved, 0
 *       64        n_tokens unsigned tokens of token_width bytes each, little-endian
 * The file is exactly 64 + n_tokens*token_width bytes. Byte-level text uses width 1, vocab 256.
 *
 * llm.c shard (karpathy/llm.c, GPT-2 tokens): 256 little-endian int32 header words,
 * header[0] = 20240520, header[1] = 1 (version), header[2] = n_tokens, then n_tokens uint16
 * tokens. There is no checksum; vocab_size is taken to be GPT-2's 50257.
 *
 * tp_tokens_open checks everything once (layout, size, checksum, every token < vocab_size), so
 * the readers below trust the file and do no checks of their own.
 *
 * Training windows: window w (0 <= w < tp_tokens_windows(t, T)) is the T+1 tokens starting at
 * w*T; its input is tokens[w*T, w*T+T) and its target the same span shifted by one. Windows do
 * not overlap except for that one shared token, so a window is an "example": feed
 * tp_tokens_windows(t, T) to tp_sampler_create (data.h) as n and each rank gets disjoint windows
 * per step, and the data position is just (epoch, step) like image data. */
#ifndef TP_DATA_TOKENS_H
#define TP_DATA_TOKENS_H

#include <stdint.h>

#include "tp_error.h"

#define TP_TOKENS_MAGIC             "TULPTOK1"
#define TP_TOKENS_VERSION           1
#define TP_TOKENS_HEADER_BYTES      64
#define TP_TOKENS_LLMC_MAGIC        20240520
#define TP_TOKENS_LLMC_VERSION      1
#define TP_TOKENS_LLMC_HEADER_BYTES (256 * 4)
#define TP_TOKENS_LLMC_VOCAB        50257

typedef struct tp_tokens tp_tokens_t;

/* Map and validate a token file (Tulpar or llm.c layout, told apart by the magic). Every problem
 * is TP_ERR_DATA naming the file: not a token file (shows the magic bytes), unsupported version
 * or width, truncated or oversized file (header's count and bytes against the file's size),
 * checksum mismatch, a token >= vocab_size (its index and value). OS failures are TP_ERR_DATA
 * with strerror. On success *out is owned by the caller: tp_tokens_close. */
tp_status_t tp_tokens_open(const char *path, tp_tokens_t **out);
void tp_tokens_close(tp_tokens_t *t);

int64_t tp_tokens_count(const tp_tokens_t *t);
int32_t tp_tokens_vocab_size(const tp_tokens_t *t);
int tp_tokens_width(const tp_tokens_t *t);
/* "tulpar" or "llm.c". */
const char *tp_tokens_format(const tp_tokens_t *t);
const char *tp_tokens_path(const tp_tokens_t *t);

/* Tokens [start, start+count) as int32 into dst. Requires 0 <= start and start+count <= count of
 * the file. */
void tp_tokens_read(const tp_tokens_t *t, int64_t start, int64_t count, int32_t *dst);

/* Number of whole training windows of T input tokens: (n_tokens - 1) / T, 0 when n_tokens < 2
 * or T < 1. */
int64_t tp_tokens_windows(const tp_tokens_t *t, int64_t T);
/* For k < count, window w = window_idx[k] (0 <= w < tp_tokens_windows): inputs[k*T + i] =
 * token[w*T + i] and targets[k*T + i] = token[w*T + i + 1], i < T. inputs and targets hold
 * count*T entries each. */
void tp_tokens_fill_windows(const tp_tokens_t *t, const int64_t *window_idx, int64_t count,
                            int64_t T, int32_t *inputs, int32_t *targets);

/* Write a Tulpar token file atomically (PATH.tmp, fsync, rename). `bytes` holds n tokens of
 * `width` bytes each (1, 2 or 4), little-endian: n*width bytes; for byte-level text it is the
 * text itself. Every token must be < vocab (TP_ERR_DATA otherwise; vocab in 1 .. 2^31-1).
 * TP_ERR_IO on an OS failure. */
tp_status_t tp_tokens_write(const char *path, const uint8_t *bytes, int64_t n, int width,
                            int32_t vocab);

#endif
