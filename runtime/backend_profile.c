/* Op profile: marks around each backend op (host clock or device events), folded into per-op
 * totals at each step's end. Entries are found by name with a linear search: a model has a few
 * dozen distinct ops and shapes, and this runs only when runtime.profile is on. */
#include "backend_profile.h"

#include <stdlib.h>
#include <string.h>

#include "backend_impl.h"
#include "runtime.h"

typedef struct pending {
    int entry, start, end;
    double flops;
} pending_t;

struct tp_profile {
    double *clock; /* host backends: the marks' times in seconds */
    int n_marks, cap_clock;
    pending_t *pend;
    int n_pend, cap_pend;
    tp_profile_entry_t *e;
    int n_e, cap_e;
    int64_t steps;
    int64_t dropped; /* ops left out for want of memory (their time is missing from the totals) */
    double span_ms;
    bool active; /* inside a step: between tp_backend_profile_step_begin and collect */
};

static bool grow(void **p, int *cap, int need, size_t elem)
{
    if (need <= *cap) return true;
    int c = *cap ? 2 * *cap : 256;
    while (c < need)
        c *= 2;
    void *q = realloc(*p, (size_t)c * elem);
    if (!q) return false;
    *p = q;
    *cap = c;
    return true;
}

tp_status_t tp_backend_profile_begin(tp_backend_t *be)
{
    if (be->prof) return TP_OK;
    be->prof = tp_calloc(1, sizeof *be->prof, "op profile");
    return be->prof ? TP_OK : TP_ERR_NOMEM;
}

void tp_backend_profile_free(tp_backend_t *be)
{
    tp_profile_t *p = be->prof;
    if (!p) return;
    free(p->clock);
    free(p->pend);
    free(p->e);
    free(p);
    be->prof = NULL;
}

int tp_profile_mark(tp_backend_t *be)
{
    tp_profile_t *p = be->prof;
    if (!p || !p->active) return -1; /* between steps (evaluation...) nothing is recorded */
    if (be->iface->timer_mark) {
        int m = be->iface->timer_mark(be);
        if (m >= 0) p->n_marks = m + 1;
        p->dropped += m < 0;
        return m;
    }
    if (!grow((void **)&p->clock, &p->cap_clock, p->n_marks + 1, sizeof *p->clock)) {
        p->dropped++;
        return -1;
    }
    p->clock[p->n_marks] = tp_now();
    return p->n_marks++;
}

static int entry_of(tp_profile_t *p, const char *name)
{
    for (int i = 0; i < p->n_e; i++)
        if (strcmp(p->e[i].name, name) == 0) return i;
    if (!grow((void **)&p->e, &p->cap_e, p->n_e + 1, sizeof *p->e)) return -1;
    tp_profile_entry_t *e = &p->e[p->n_e];
    memset(e, 0, sizeof *e);
    snprintf(e->name, sizeof e->name, "%s", name);
    return p->n_e++;
}

void tp_profile_op(tp_backend_t *be, int start, const char *name, double flops)
{
    tp_profile_t *p = be->prof;
    if (!p || start < 0) return;
    int end = tp_profile_mark(be), k = entry_of(p, name);
    if (end < 0) return; /* counted in dropped by the mark */
    if (k < 0 || !grow((void **)&p->pend, &p->cap_pend, p->n_pend + 1, sizeof *p->pend)) {
        p->dropped++; /* out of memory: this op goes unrecorded (and reported), the run goes on */
        return;
    }
    p->pend[p->n_pend++] = (pending_t){.entry = k, .start = start, .end = end, .flops = flops};
}

/* Drop the marks since the last collect (their indices are free again). */
static void forget_pending(tp_profile_t *p, tp_backend_t *be)
{
    p->n_pend = 0;
    p->n_marks = 0;
    if (be->iface->timer_reset) be->iface->timer_reset(be);
}

static double between_ms(tp_backend_t *be, int a, int b)
{
    if (be->iface->timer_mark) return be->iface->timer_ms(be, a, b);
    return 1e3 * (be->prof->clock[b] - be->prof->clock[a]);
}

void tp_backend_profile_collect(tp_backend_t *be)
{
    tp_profile_t *p = be->prof;
    if (!p) return;
    for (int i = 0; i < p->n_pend; i++) {
        tp_profile_entry_t *e = &p->e[p->pend[i].entry];
        e->ms += between_ms(be, p->pend[i].start, p->pend[i].end);
        e->calls++;
        e->flops += p->pend[i].flops;
    }
    if (p->n_pend > 0) {
        p->span_ms += between_ms(be, p->pend[0].start, p->pend[p->n_pend - 1].end);
        p->steps++;
    }
    forget_pending(p, be);
    p->active = false;
}

void tp_backend_profile_step_begin(tp_backend_t *be)
{
    tp_profile_t *p = be->prof;
    if (!p) return;
    forget_pending(p, be);
    p->active = true;
}

static int by_time(const void *a, const void *b)
{
    const tp_profile_entry_t *x = a, *y = b;
    if (x->ms != y->ms) return (x->ms < y->ms) - (x->ms > y->ms);
    return (x->calls < y->calls) - (x->calls > y->calls);
}

int tp_backend_profile_entries(tp_backend_t *be, const tp_profile_entry_t **out, int64_t *steps,
                               double *span_ms, int64_t *dropped)
{
    tp_profile_t *p = be->prof;
    *out = NULL;
    *steps = 0;
    *span_ms = 0;
    *dropped = 0;
    if (!p) return 0;
    *dropped = p->dropped;
    /* Pending entries refer to the unsorted order. */
    forget_pending(p, be);
    p->active = false;
    qsort(p->e, (size_t)p->n_e, sizeof *p->e, by_time);
    /* Ops only ever seen between steps (discarded) have no calls: sorted last, dropped. */
    while (p->n_e > 0 && p->e[p->n_e - 1].calls == 0)
        p->n_e--;
    *out = p->e;
    *steps = p->steps;
    *span_ms = p->span_ms;
    return p->n_e;
}
