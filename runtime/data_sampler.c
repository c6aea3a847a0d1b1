/* Distributed epoch sampler: which examples each rank trains on at (epoch, step).
 *
 * The epoch order is a Fisher-Yates permutation drawn from a generator seeded by (seed, epoch)
 * alone, so every rank computes the same order without communication, and a run resumed at
 * (epoch, step) sees exactly the batches it would have seen. Ranks split each global batch into
 * contiguous equal slices, so the union over ranks is the single-rank batch, in order. */
#include "data.h"

#include <stdlib.h>

#include "rng.h"

/* Generator stream of epoch e is TP_SAMPLER_STREAM + e; distinct from the other rng users. */
#define TP_SAMPLER_STREAM 0x5a4d0000ull

struct tp_sampler {
    int64_t n;
    int64_t global_batch;
    int64_t local_batch;
    int64_t steps;
    int rank, world_size;
    uint64_t seed;
    int64_t perm_epoch; /* epoch held in perm; -1 before the first batch */
    int64_t *perm;      /* n entries, reused for every epoch */
};

tp_status_t tp_sampler_create(int64_t n, int64_t global_batch, int rank, int world_size,
                              uint64_t seed, tp_sampler_t **out)
{
    *out = NULL;
    if (n < 1)
        return TP_ERR(TP_ERR_CONFIG, "the training set is empty (%lld examples)", (long long)n);
    if (world_size < 1 || rank < 0 || rank >= world_size)
        return TP_ERR(TP_ERR_CONFIG, "rank %d is out of range for %d ranks", rank, world_size);
    if (global_batch < 1)
        return TP_ERR(TP_ERR_CONFIG, "train.batch = %lld must be at least 1",
                      (long long)global_batch);
    if (global_batch % world_size != 0)
        return TP_ERR(TP_ERR_CONFIG,
                      "train.batch = %lld is not divisible by the number of ranks %d",
                      (long long)global_batch, world_size);
    if (global_batch > n)
        return TP_ERR(TP_ERR_CONFIG,
                      "train.batch = %lld is larger than the training set (%lld examples)",
                      (long long)global_batch, (long long)n);

    tp_sampler_t *s = tp_calloc(1, sizeof *s, "sampler");
    if (!s) return TP_ERR_NOMEM;
    s->perm = tp_malloc((size_t)n * sizeof *s->perm, "epoch permutation");
    if (!s->perm) {
        free(s);
        return TP_ERR_NOMEM;
    }
    s->n = n;
    s->global_batch = global_batch;
    s->local_batch = global_batch / world_size;
    s->steps = n / global_batch; /* the incomplete last batch is dropped */
    s->rank = rank;
    s->world_size = world_size;
    s->seed = seed;
    s->perm_epoch = -1;
    *out = s;
    return TP_OK;
}

void tp_sampler_free(tp_sampler_t *s)
{
    if (!s) return;
    free(s->perm);
    free(s);
}

int64_t tp_sampler_steps_per_epoch(const tp_sampler_t *s)
{
    return s->steps;
}

int64_t tp_sampler_local_batch(const tp_sampler_t *s)
{
    return s->local_batch;
}

static void sampler_shuffle(tp_sampler_t *s, int64_t epoch)
{
    tp_rng_t r;
    tp_rng_seed(&r, s->seed, TP_SAMPLER_STREAM + (uint64_t)epoch);
    for (int64_t i = 0; i < s->n; i++)
        s->perm[i] = i;
    for (int64_t i = s->n - 1; i > 0; i--) {
        int64_t j = (int64_t)tp_rng_below(&r, (uint64_t)i + 1);
        int64_t t = s->perm[i];
        s->perm[i] = s->perm[j];
        s->perm[j] = t;
    }
    s->perm_epoch = epoch;
}

/* Requires 0 <= step < tp_sampler_steps_per_epoch(s) and epoch >= 0. *first_global is the
 * position of this rank's first example within the epoch's permutation, step*B + rank*B/R:
 * unique per example in an epoch and independent of the number of ranks. */
void tp_sampler_batch(tp_sampler_t *s, int64_t epoch, int64_t step, int64_t *idx,
                      int64_t *first_global)
{
    if (epoch != s->perm_epoch) sampler_shuffle(s, epoch);
    int64_t first = step * s->global_batch + (int64_t)s->rank * s->local_batch;
    for (int64_t k = 0; k < s->local_batch; k++)
        idx[k] = s->perm[first + k];
    if (first_global) *first_global = first;
}
