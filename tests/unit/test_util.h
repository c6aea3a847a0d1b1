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

/* A test made of several files (tests/gpu's op test) defines TP_TEST_SHARED_STATE in each and
 * the counters and g_seed below once, in one of them; a one-file test gets its own. */
#ifdef TP_TEST_SHARED_STATE
extern int tp_test_failures;
extern int tp_test_checks;
#else
static int tp_test_failures = 0;
static int tp_test_checks = 0;
#endif

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

/* A float32 array as a compute copy (backend.h): what compute copies are on the host backends
 * (ref, cpu), where these tests run. */
#define CV(x) ((tp_cval_t *)(void *)(x))

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
#ifdef TP_TEST_SHARED_STATE
extern uint64_t g_seed;
#else
static uint64_t g_seed = 1;
#endif

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

/* NaN in columns cols..ld-1 of each of the rows of a row-major matrix with rows ld apart: padding
 * an op must neither read (NaN would reach its result) nor write (the NaN must survive). */
static inline float *tp_test_nan_pad(float *x, int64_t rows, int64_t cols, int64_t ld)
{
    for (int64_t i = 0; i < rows; i++)
        for (int64_t j = cols; j < ld; j++)
            x[i * ld + j] = NAN;
    return x;
}

static inline float *fdup(const float *x, size_t n)
{
    float *y = xmalloc(n * sizeof(float));
    memcpy(y, x, n * sizeof(float));
    return y;
}

/* max_i |a-r| / max(max_i |r|, floor): relative to the reference's magnitude, or to floor where
 * the reference is small; NaN or inf anywhere counts as an infinite error. */
static inline double tp_test_err_floor(const float *a, const float *r, size_t n, double floor)
{
    double maxdiff = 0, maxref = floor;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - (double)r[i]);
        if (!isfinite(d) || !isfinite(a[i])) return INFINITY;
        if (d > maxdiff) maxdiff = d;
        if (fabs(r[i]) > maxref) maxref = fabs(r[i]);
    }
    return maxdiff / maxref;
}

/* max_i |a-b| / max(max_i |b|, tiny): relative to the reference's magnitude. */
static inline double tp_test_rel_err(const float *a, const float *ref, size_t n)
{
    return tp_test_err_floor(a, ref, n, 1e-30);
}

/* n random token ids in [0, V) (xmalloc'd), the last equal to the first: at least one repeated
 * token, so embedding backward adds two rows into one. */
static inline int32_t *tp_test_tokens(int64_t n, int64_t V)
{
    int32_t *tok = xmalloc((size_t)n * sizeof(int32_t));
    tp_rng_t r;
    tp_rng_seed(&r, g_seed++, 1);
    for (int64_t i = 0; i < n; i++)
        tok[i] = (int32_t)tp_rng_below(&r, (uint64_t)V);
    tok[n - 1] = tok[0];
    return tok;
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
