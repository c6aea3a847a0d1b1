/* Tiny test harness shared by the unit tests: assertions that count failures, seeded random
 * inputs (never zeros), relative-error helpers and a scratch directory. The exit status is the
 * verdict: main returns tp_test_finish(). */
#ifndef TP_TEST_UTIL_H
#define TP_TEST_UTIL_H

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "rng.h"

static int tp_test_failures = 0;
static int tp_test_checks = 0;

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        tp_test_checks++;                                                                          \
        if (!(cond)) {                                                                             \
            tp_test_failures++;                                                                    \
            fprintf(stderr, "FAIL %s:%d: %s\n", __FILE__, __LINE__, #cond);                        \
        }                                                                                          \
    } while (0)

#define CHECKF(cond, ...)                                                                          \
    do {                                                                                           \
        tp_test_checks++;                                                                          \
        if (!(cond)) {                                                                             \
            tp_test_failures++;                                                                    \
            fprintf(stderr, "FAIL %s:%d: %s: ", __FILE__, __LINE__, #cond);                        \
            fprintf(stderr, __VA_ARGS__);                                                          \
            fputc('\n', stderr);                                                                   \
        }                                                                                          \
    } while (0)

static inline int tp_test_finish(const char *name)
{
    printf("%s: %d checks, %d failed\n", name, tp_test_checks, tp_test_failures);
    return tp_test_failures ? 1 : 0;
}

/* Uniform in [-scale, scale] but bounded away from zero, so that an unwritten output or a
 * dropped term cannot pass by accident. */
static inline void tp_test_fill(float *x, size_t n, uint64_t seed, float scale)
{
    tp_rng_t r;
    tp_rng_seed(&r, seed, 7);
    for (size_t i = 0; i < n; i++) {
        float u = tp_rng_uniform(&r);
        float mag = 0.1f + 0.9f * u;
        x[i] = (tp_rng_next(&r) & 1 ? mag : -mag) * scale;
    }
}

/* Allocation that ends the test on failure (tests have no recovery path). */
static inline void *xmalloc(size_t bytes)
{
    void *p = malloc(bytes ? bytes : 1);
    if (!p) {
        perror("malloc");
        exit(2);
    }
    return p;
}

static inline void *xcalloc(size_t n, size_t size)
{
    void *p = calloc(n ? n : 1, size ? size : 1);
    if (!p) {
        perror("calloc");
        exit(2);
    }
    return p;
}

/* Seed of the next random array; a test file may set it in main to pick its inputs. */
static uint64_t g_seed = 1;

/* Fresh random array (tp_test_fill), a new seed each call. */
static inline float *rnd(size_t n, float scale)
{
    float *x = xmalloc(n * sizeof(float));
    tp_test_fill(x, n, g_seed++, scale);
    return x;
}

/* NaN-filled output buffer, so an element an op forgets to write shows. */
static inline float *poisoned(size_t n)
{
    float *x = xmalloc(n * sizeof(float));
    for (size_t i = 0; i < n; i++)
        x[i] = NAN;
    return x;
}

static inline float *fdup(const float *x, size_t n)
{
    float *y = xmalloc(n * sizeof(float));
    memcpy(y, x, n * sizeof(float));
    return y;
}

/* max_i |a-b| / max(max_i |b|, tiny): relative to the reference's magnitude. */
static inline double tp_test_rel_err(const float *a, const float *ref, size_t n)
{
    double maxdiff = 0, maxref = 1e-30;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - (double)ref[i]);
        if (d > maxdiff || d != d) maxdiff = d != d ? INFINITY : d;
        if (fabs(ref[i]) > maxref) maxref = fabs(ref[i]);
    }
    return maxdiff / maxref;
}

/* A fresh directory under $TMPDIR (or /tmp); caller owns the string. */
static inline char *tp_test_tmpdir(const char *tag)
{
    const char *base = getenv("TMPDIR");
    char *path = malloc(4096);
    snprintf(path, 4096, "%s/tulpar-%s-XXXXXX", base && *base ? base : "/tmp", tag);
    if (!mkdtemp(path)) {
        perror("mkdtemp");
        exit(2);
    }
    return path;
}

#endif
