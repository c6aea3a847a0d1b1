/* Counter-based hash (splitmix64 finaliser chain) and xoshiro256** generator. */
#include "rng.h"

#include <math.h>

static inline uint64_t mix64(uint64_t z)
{
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

uint64_t tp_rng_hash(uint64_t seed, uint64_t stream, uint64_t counter)
{
    uint64_t h = mix64(seed + 0x9e3779b97f4a7c15ULL);
    h = mix64(h ^ (stream + 0x632be59bd9b4e019ULL));
    return mix64(h ^ (counter * 0x9e3779b97f4a7c15ULL + 0x1d8e4e27c47d124fULL));
}

void tp_rng_seed(tp_rng_t *r, uint64_t seed, uint64_t stream)
{
    uint64_t x = tp_rng_hash(seed, stream, 0);
    for (int i = 0; i < 4; i++) {
        x += 0x9e3779b97f4a7c15ULL;
        r->s[i] = mix64(x);
    }
}

static inline uint64_t rotl(uint64_t x, int k)
{
    return (x << k) | (x >> (64 - k));
}

uint64_t tp_rng_next(tp_rng_t *r)
{
    uint64_t *s = r->s;
    uint64_t result = rotl(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
}

float tp_rng_uniform(tp_rng_t *r)
{
    return tp_rng_to_unit(tp_rng_next(r));
}

float tp_rng_normal(tp_rng_t *r)
{
    /* 1 - u keeps the argument of log in (0, 1]. */
    double u1 = 1.0 - (double)(tp_rng_next(r) >> 11) * (1.0 / 9007199254740992.0);
    double u2 = (double)(tp_rng_next(r) >> 11) * (1.0 / 9007199254740992.0);
    return (float)(sqrt(-2.0 * log(u1)) * cos(2.0 * M_PI * u2));
}

uint64_t tp_rng_below(tp_rng_t *r, uint64_t n)
{
    if (n <= 1) return 0;
    uint64_t limit = UINT64_MAX - UINT64_MAX % n;
    uint64_t x;
    do {
        x = tp_rng_next(r);
    } while (x >= limit);
    return x % n;
}
