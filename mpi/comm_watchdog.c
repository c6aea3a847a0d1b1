/* The communicator's failure watchdog: a job with a dead or hung rank must stop with a message
 * naming the step, the collective and (where it can be known) the rank, instead of hanging.
 *
 * Three detectors, each covering what the others cannot:
 *  - Dead local peer. At start-up every rank publishes its pid and a one-page state block in
 *    POSIX shared memory; node-local peers map it (the name is unlinked right after, so nothing
 *    is left in /dev/shm even after SIGKILL). A thread polls four times a second: a peer whose
 *    process is gone or a zombie, and that did not mark itself as leaving, is reported at once.
 *  - Hang. When this rank has been inside one collective longer than comm.timeout_s, the job is
 *    aborted; the culprit named is a local peer that is stopped (SIGSTOP, a debugger) or has not
 *    reached this collective (its collective counter is behind), else "a peer".
 *  - Launcher. Open MPI's mpirun kills the whole job (SIGTERM, then SIGKILL about a second later)
 *    when one rank dies; the SIGTERM handler prints what this rank was doing first, so the log
 *    names the step and collective even when the launcher wins the race.
 *
 * MPI is initialised with MPI_THREAD_FUNNELED, so the thread never calls MPI except MPI_Abort
 * (through the communicator's abort hook): the standard does not promise that from another
 * thread, but Open MPI 4.1 implements it as "tell the launcher, then exit", which takes no locks
 * the blocked main thread holds (with FUNNELED, Open MPI runs without internal locking). If it
 * ever returned, the thread _exits. Everything the thread and the handler print is formatted with
 * async-signal-safe code into a stack buffer and written with write(2).
 *
 * Cost on the normal path: around each collective, one clock_gettime and three stores to this
 * rank's own page; the thread sleeps in a timed wait between polls. */
#define _GNU_SOURCE
#include "comm_watchdog.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define POLL_MS 250

enum { LEAVING = 1, ABORTING = 2 };

/* One page per rank in shared memory, written only by its owner. */
typedef struct wd_page {
    _Atomic int64_t seq; /* collectives entered */
    _Atomic int in_coll; /* inside collective number seq */
    _Atomic int exiting; /* LEAVING or ABORTING: stop watching */
} wd_page_t;

/* What each rank tells the others at start-up. */
typedef struct wd_info {
    char host[256]; /* as tp_comm_t.host */
    char shm[64];   /* "" when this rank has no page */
    int64_t pid;
    uint64_t pidns; /* inode of /proc/self/ns/pid: pids are comparable only within one */
} wd_info_t;

_Static_assert(sizeof(((wd_info_t *)0)->host) == sizeof(((tp_comm_t *)0)->host),
               "wd_info_t.host copies tp_comm_t.host");

typedef struct wd_peer {
    int rank;
    pid_t pid; /* 0 when not in our pid namespace */
    wd_page_t *page;
} wd_peer_t;

struct tp_comm_watchdog {
    tp_comm_t *c;
    wd_page_t *self;
    int self_shared; /* self is in shared memory (else private: peers cannot see it) */
    char shm[64];
    wd_peer_t *peers;
    int n_peers;
    int depth;
    int64_t seq;
    _Atomic int64_t enter_ns;
    _Atomic int64_t step;
    _Atomic(const char *) what;
    _Atomic int64_t timeout_ms;
    _Atomic int reported;
    int64_t peer_abort_ns; /* when a peer was first seen aborting (thread only) */
    char prefix[300];
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int stop;
    struct sigaction old_term;
    void (*graceful)(int); /* tp_comm_route_sigterm: a stop request instead of dying */
    volatile sig_atomic_t graceful_used;
};

static tp_comm_watchdog_t *g_wd; /* for the SIGTERM handler: one communicator per process */

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* ---- async-signal-safe message building ------------------------------------------------- */

typedef struct msg {
    char s[768];
    size_t n;
} msg_t;

static void put(msg_t *m, const char *s)
{
    while (*s && m->n < sizeof m->s - 1)
        m->s[m->n++] = *s++;
}

static void put_int(msg_t *m, int64_t v)
{
    char d[24];
    int k = 0;
    uint64_t u = v < 0 ? (uint64_t)0 - (uint64_t)v : (uint64_t)v;
    do {
        d[k++] = (char)('0' + u % 10);
        u /= 10;
    } while (u);
    if (v < 0) put(m, "-");
    while (k > 0 && m->n < sizeof m->s - 1)
        m->s[m->n++] = d[--k];
}

/* "12.3" from milliseconds. */
static void put_seconds(msg_t *m, int64_t ms)
{
    put_int(m, ms / 1000);
    put(m, ".");
    put_int(m, (ms % 1000) / 100);
}

/* "during the gradient all-reduce of step 57" or "after ..." between collectives. */
static void put_context(msg_t *m, tp_comm_watchdog_t *w)
{
    const char *what = atomic_load(&w->what);
    int64_t step = atomic_load(&w->step);
    put(m, atomic_load(&w->self->in_coll) ? "during the " : "after the ");
    put(m, what ? what : "collective");
    if (step > 0) {
        put(m, " of step ");
        put_int(m, step);
    }
}

static void emit(msg_t *m)
{
    put(m, "\n");
    ssize_t off = 0;
    while (off < (ssize_t)m->n) {
        ssize_t k = write(STDERR_FILENO, m->s + off, m->n - (size_t)off);
        if (k <= 0 && errno != EINTR) break;
        if (k > 0) off += k;
    }
}

/* ---- peer state --------------------------------------------------------------------------- */

/* 'G' when the process is gone, else its /proc state letter ('R', 'S', 'T', 'Z', ...); '?' when
 * it cannot be known. Only open/read/close: safe in the signal handler too. */
static char proc_state(pid_t pid)
{
    if (pid <= 0) return '?';
    char path[48] = "/proc/";
    msg_t p = {.n = 0};
    put_int(&p, pid);
    p.s[p.n] = '\0';
    strcat(path, p.s);
    strcat(path, "/stat");
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return errno == ENOENT || errno == ESRCH ? 'G' : '?';
    char buf[512];
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0) return 'G';
    buf[n] = '\0';
    char *rp = strrchr(buf, ')');
    return rp && rp[1] == ' ' && rp[2] ? rp[2] : '?';
}

static int is_dead(char st)
{
    return st == 'G' || st == 'Z' || st == 'X' || st == 'x';
}

/* A local peer that died without saying goodbye, or NULL. */
static const wd_peer_t *dead_peer(tp_comm_watchdog_t *w)
{
    for (int i = 0; i < w->n_peers; i++) {
        const wd_peer_t *p = &w->peers[i];
        if (atomic_load(&p->page->exiting)) continue;
        if (is_dead(proc_state(p->pid))) return p;
    }
    return NULL;
}

/* The local peer most likely holding up collective number w->seq, or NULL. */
static const wd_peer_t *stalled_peer(tp_comm_watchdog_t *w, int64_t seq)
{
    for (int i = 0; i < w->n_peers; i++) {
        char st = proc_state(w->peers[i].pid);
        if (st == 'T' || st == 't' || is_dead(st)) return &w->peers[i];
    }
    for (int i = 0; i < w->n_peers; i++) {
        wd_page_t *pg = w->peers[i].page;
        if (atomic_load(&pg->exiting) || !atomic_load(&pg->in_coll) || atomic_load(&pg->seq) < seq)
            return &w->peers[i];
    }
    return NULL;
}

static void start_message(msg_t *m, tp_comm_watchdog_t *w)
{
    m->n = 0;
    put(m, w->prefix);
}

void tp_comm_watchdog_mark_aborting(tp_comm_watchdog_t *w)
{
    /* Peers then neither report this rank as dead nor print their own story. */
    if (w) atomic_store(&w->self->exiting, ABORTING);
}

static void abort_job(tp_comm_watchdog_t *w)
{
    tp_comm_watchdog_mark_aborting(w);
    w->c->iface->abort(w->c, 1);
    _exit(1);
}

static void report_dead(tp_comm_watchdog_t *w, const wd_peer_t *p, const char *tail)
{
    msg_t m;
    start_message(&m, w);
    put(&m, "rank ");
    put_int(&m, p->rank);
    put(&m, " (pid ");
    put_int(&m, p->pid);
    put(&m, ") died ");
    put_context(&m, w);
    put(&m, tail);
    emit(&m);
}

/* ---- the thread and the SIGTERM handler ------------------------------------------------- */

/* A local peer that is aborting the job (and printed why), or NULL. */
static const wd_peer_t *aborting_peer(tp_comm_watchdog_t *w)
{
    for (int i = 0; i < w->n_peers; i++)
        if (atomic_load(&w->peers[i].page->exiting) == ABORTING) return &w->peers[i];
    return NULL;
}

static void poll_once(tp_comm_watchdog_t *w)
{
    /* One rank tells the story: when a peer is already aborting the job, stay quiet and let
     * MPI_Abort take this rank down too (abort silently ourselves if it has not after a while). */
    if (aborting_peer(w)) {
        if (!w->peer_abort_ns) w->peer_abort_ns = now_ns();
        atomic_store(&w->reported, 1);
        if (now_ns() - w->peer_abort_ns > (int64_t)10 * 1000000000) abort_job(w);
        return;
    }
    const wd_peer_t *dead = dead_peer(w);
    if (dead) {
        if (atomic_exchange(&w->reported, 1)) return;
        report_dead(w, dead, "; aborting the job");
        abort_job(w);
    }
    if (!atomic_load(&w->self->in_coll)) return;
    int64_t waited_ms = (now_ns() - atomic_load(&w->enter_ns)) / 1000000;
    int64_t limit = atomic_load(&w->timeout_ms);
    if (waited_ms < limit) return;
    if (atomic_exchange(&w->reported, 1)) return;
    const wd_peer_t *p = stalled_peer(w, atomic_load(&w->self->seq));
    msg_t m;
    start_message(&m, w);
    if (p) {
        put(&m, "rank ");
        put_int(&m, p->rank);
    } else {
        put(&m, "a peer");
    }
    put(&m, " stopped responding ");
    put_context(&m, w);
    put(&m, " (no progress for ");
    put_seconds(&m, waited_ms);
    put(&m, " s, comm.timeout_s = ");
    put_seconds(&m, limit);
    put(&m, "); aborting the job");
    emit(&m);
    abort_job(w);
}

static void *watchdog_main(void *arg)
{
    tp_comm_watchdog_t *w = arg;
    sigset_t all;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, NULL); /* signals belong to the main thread */
    pthread_mutex_lock(&w->mu);
    while (!w->stop) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        ts.tv_nsec += POLL_MS * 1000000L;
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(&w->cv, &w->mu, &ts);
        if (w->stop) break;
        pthread_mutex_unlock(&w->mu);
        poll_once(w);
        pthread_mutex_lock(&w->mu);
    }
    pthread_mutex_unlock(&w->mu);
    return NULL;
}

static void on_sigterm(int sig)
{
    tp_comm_watchdog_t *w = g_wd;
    /* A first SIGTERM with every peer alive is a request to stop (Slurm's time limit or
     * preemption, Ctrl-C on mpirun): hand it to the training loop. After a peer died, or on a
     * second SIGTERM, the launcher is tearing the job down: report and die as before. */
    if (w && w->graceful && !w->graceful_used && !aborting_peer(w) && !dead_peer(w)) {
        w->graceful_used = 1;
        w->graceful(sig);
        return;
    }
    if (w && !aborting_peer(w) && !atomic_exchange(&w->reported, 1)) {
        const wd_peer_t *dead = dead_peer(w);
        if (dead) {
            report_dead(w, dead, "; the launcher is stopping the job");
        } else {
            msg_t m;
            start_message(&m, w);
            put(&m, "terminated by SIGTERM ");
            put_context(&m, w);
            put(&m, " (when a rank fails, the launcher stops the others: its message names the "
                    "rank)");
            emit(&m);
        }
    }
    if (w) {
        tp_comm_watchdog_mark_aborting(w); /* this rank told its story: peers stay quiet */
        sigaction(SIGTERM, &w->old_term, NULL);
    } else {
        signal(SIGTERM, SIG_DFL);
    }
    raise(sig);
}

/* ---- start and stop ----------------------------------------------------------------------- */

static void release(tp_comm_watchdog_t *w)
{
    for (int i = 0; i < w->n_peers; i++)
        munmap(w->peers[i].page, sizeof(wd_page_t));
    free(w->peers);
    if (w->self_shared)
        munmap(w->self, sizeof(wd_page_t));
    else
        free(w->self);
    free(w);
}

/* This rank's page; on failure a warning and NULL (the rank then just has no page to share). */
static wd_page_t *create_page(tp_comm_watchdog_t *w)
{
    snprintf(w->shm, sizeof w->shm, "/tulpar-wd-%ld-%d", (long)getpid(), w->c->rank);
    int fd = shm_open(w->shm, O_CREAT | O_EXCL | O_RDWR, 0600);
    if (fd < 0) {
        tp_log_warn("watchdog: shm_open %s: %s; peers on this node cannot watch this rank", w->shm,
                    strerror(errno));
        w->shm[0] = '\0';
        return NULL;
    }
    void *p = MAP_FAILED;
    if (ftruncate(fd, sizeof(wd_page_t)) == 0)
        p = mmap(NULL, sizeof(wd_page_t), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (p == MAP_FAILED) {
        tp_log_warn("watchdog: mapping %s: %s", w->shm, strerror(errno));
        shm_unlink(w->shm);
        w->shm[0] = '\0';
    }
    close(fd);
    return p == MAP_FAILED ? NULL : p;
}

static wd_page_t *map_peer(const char *name)
{
    int fd = shm_open(name, O_RDONLY, 0);
    if (fd < 0) return NULL;
    void *p = mmap(NULL, sizeof(wd_page_t), PROT_READ, MAP_SHARED, fd, 0);
    close(fd);
    return p == MAP_FAILED ? NULL : p;
}

static uint64_t pid_namespace(void)
{
    struct stat sb;
    return stat("/proc/self/ns/pid", &sb) == 0 ? (uint64_t)sb.st_ino : 0;
}

/* Exchange pids and page names; map the peers on this node. Every rank takes part in the same
 * two collectives whatever failed locally, so the ranks cannot get out of step here. */
static tp_status_t connect_peers(tp_comm_watchdog_t *w)
{
    tp_comm_t *c = w->c;
    wd_info_t me = {.pid = getpid(), .pidns = pid_namespace()};
    memcpy(me.host, c->host, sizeof me.host);
    snprintf(me.shm, sizeof me.shm, "%s", w->self_shared ? w->shm : "");
    wd_info_t *all = tp_calloc((size_t)c->size, sizeof *all, "watchdog peer table");
    w->peers = tp_calloc((size_t)c->size, sizeof *w->peers, "watchdog peers");
    if (!all || !w->peers) {
        free(all);
        c->iface->abort(c, 1); /* the peers are entering the exchange: stop, do not hang them */
        return TP_ERR_NOMEM;
    }
    tp_status_t st = c->iface->allgather(c, &me, all, sizeof me, TP_DT_BYTE);
    for (int r = 0; st == TP_OK && r < c->size; r++) {
        if (r == c->rank || !all[r].shm[0] || strcmp(all[r].host, me.host) != 0) continue;
        wd_page_t *pg = map_peer(all[r].shm);
        if (!pg) continue;
        w->peers[w->n_peers++] = (wd_peer_t){
            .rank = r,
            .pid = all[r].pidns && all[r].pidns == me.pidns ? (pid_t)all[r].pid : 0,
            .page = pg,
        };
    }
    tp_status_t bst = c->iface->barrier(c); /* every peer has mapped our page */
    if (w->self_shared) shm_unlink(w->shm);
    free(all);
    return st != TP_OK ? st : bst;
}

void tp_comm_watchdog_start(tp_comm_t *c, double timeout_s)
{
    if (c->size <= 1) return;
    tp_comm_watchdog_t *w = tp_calloc(1, sizeof *w, "watchdog");
    if (!w) {
        /* The peers are about to enter the exchange below: stop rather than leave them hanging. */
        c->iface->abort(c, 1);
        return;
    }
    w->c = c;
    atomic_store(&w->timeout_ms, (int64_t)(timeout_s * 1000));
    atomic_store(&w->what, "set-up");
    snprintf(w->prefix, sizeof w->prefix, "tulpar: error [rank %d on %s]: ", c->rank, c->host);
    w->self = create_page(w);
    w->self_shared = w->self != NULL;
    if (!w->self) w->self = tp_calloc(1, sizeof *w->self, "watchdog page");
    if (connect_peers(w) != TP_OK || !w->self) {
        tp_log_warn("watchdog: set-up failed (see above); running without dead-rank and hang "
                    "detection");
        release(w);
        return;
    }
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&w->cv, &ca);
    pthread_condattr_destroy(&ca);
    pthread_mutex_init(&w->mu, NULL);
    int rc = pthread_create(&w->thread, NULL, watchdog_main, w);
    if (rc != 0) {
        tp_log_warn("watchdog: pthread_create: %s; running without dead-rank and hang detection",
                    strerror(rc));
        pthread_cond_destroy(&w->cv);
        pthread_mutex_destroy(&w->mu);
        release(w);
        return;
    }
    g_wd = w;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_sigterm;
    sigemptyset(&sa.sa_mask);
    if (sigaction(SIGTERM, &sa, &w->old_term) != 0)
        tp_log_warn("watchdog: cannot install the SIGTERM reporter: %s", strerror(errno));
    c->watchdog = w;
}

void tp_comm_watchdog_stop(tp_comm_t *c)
{
    tp_comm_watchdog_t *w = c->watchdog;
    if (!w) return;
    atomic_store(&w->self->exiting, LEAVING);
    pthread_mutex_lock(&w->mu);
    w->stop = 1;
    pthread_cond_signal(&w->cv);
    pthread_mutex_unlock(&w->mu);
    pthread_join(w->thread, NULL);
    sigaction(SIGTERM, &w->old_term, NULL);
    g_wd = NULL;
    pthread_cond_destroy(&w->cv);
    pthread_mutex_destroy(&w->mu);
    c->watchdog = NULL;
    release(w);
}

int tp_comm_watchdog_route_sigterm(tp_comm_watchdog_t *w, void (*fn)(int))
{
    if (!w) return 0;
    w->graceful = fn;
    return 1;
}

void tp_comm_watchdog_enter(tp_comm_watchdog_t *w)
{
    if (!w || w->depth++ > 0) return;
    atomic_store_explicit(&w->enter_ns, now_ns(), memory_order_relaxed);
    atomic_store_explicit(&w->self->seq, ++w->seq, memory_order_relaxed);
    atomic_store_explicit(&w->self->in_coll, 1, memory_order_release);
}

void tp_comm_watchdog_leave(tp_comm_watchdog_t *w)
{
    if (!w || --w->depth > 0) return;
    atomic_store_explicit(&w->self->in_coll, 0, memory_order_release);
}

void tp_comm_watchdog_set_context(tp_comm_watchdog_t *w, int64_t step, const char *what)
{
    if (!w) return;
    atomic_store_explicit(&w->step, step, memory_order_relaxed);
    atomic_store_explicit(&w->what, what, memory_order_relaxed);
}

void tp_comm_watchdog_set_timeout(tp_comm_watchdog_t *w, double timeout_s)
{
    if (w) atomic_store(&w->timeout_ms, (int64_t)(timeout_s * 1000));
}
