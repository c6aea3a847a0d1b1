/* Random numbers that do not depend on how work is split over ranks or threads.
 *
 * tp_rng_hash is counter-based (stateless): a dropout mask element or a shuffle key is a pure
 * function of (seed, stream, counter), so 1 rank and N ranks, and a resumed run, draw the same
 * numbers. tp_rng_t is a small sequential generator (xoshiro256**) for initialisation. */
#ifndef TP_RNG_H
#define TP_RNG_H

#include <stdint.h>

uint64_t tp_rng_hash(uint64_t seed, uint64_t stream, uint64_t counter);
/* Uniform float in [0, 1) from a hash value (24 high bits). */
static inline float tp_rng_to_unit(uint64_t h)
{
    return (float)(h >> 40) * (1.0f / 16777216.0f);
}

typedef struct tp_rng {
    uint64_t s[4];
} tp_rng_t;

void tp_rng_seed(tp_rng_t *r, uint64_t seed, uint64_t stream);
uint64_t tp_rng_next(tp_rng_t *r);
float tp_rng_uniform(tp_rng_t *r); /* [0, 1) */
float tp_rng_normal(tp_rng_t *r);  /* standard normal (Box-Muller) */
/* Uniform integer in [0, n) without modulo bias. */
uint64_t tp_rng_below(tp_rng_t *r, uint64_t n);

#endif
