/* This rank's share of the flat parameter buffer under ZeRO: one equal part of every gradient
 * bucket. The optimizer updates only these pieces and keeps its state for them alone, packed in
 * piece order ("shard order"); every rank's pieces have the same lengths and shard offsets. */
#ifndef TP_SHARD_H
#define TP_SHARD_H

#include <stdint.h>

typedef struct tp_shard_piece {
    int64_t offset;       /* into the flat parameter/gradient buffers */
    int64_t numel;        /* the same on every rank */
    int64_t shard_offset; /* into shard-ordered buffers (optimizer state, ZeRO-2 gradients) */
    int64_t bucket;       /* start of the bucket this piece is one part of (rank r's part is at
                             bucket + r * numel) */
} tp_shard_piece_t;

typedef struct tp_shard {
    int rank, size;
    int n;
    const tp_shard_piece_t *pieces;
    int64_t numel;     /* sum of the pieces' numel: numel_pad / size */
    const float *grad; /* ZeRO-2: the reduced gradient in shard order; NULL: in the flat buffer */
} tp_shard_t;

#endif
