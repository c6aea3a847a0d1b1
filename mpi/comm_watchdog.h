/* Private: the communicator's failure watchdog (comm_watchdog.c). Only comm.c and the
 * communicator implementations include this. */
#ifndef TP_COMM_WATCHDOG_H
#define TP_COMM_WATCHDOG_H

#include "comm_impl.h"

typedef struct tp_comm_watchdog tp_comm_watchdog_t;

/* Start the watchdog of c (a communicator of size > 1, fully set up): exchanges process ids over
 * c's own collectives (collective: every rank calls it), maps the node-local peers' state pages,
 * installs the SIGTERM reporter and starts the thread. On failure a warning is printed and c runs
 * without a watchdog (c->watchdog stays NULL): detection is a safety net, not a requirement. */
void tp_comm_watchdog_start(tp_comm_t *c, double timeout_s);
/* Mark this rank as leaving normally (peers stop watching it), stop and join the thread. */
void tp_comm_watchdog_stop(tp_comm_t *c);

/* Around every collective: one timestamp and two relaxed stores into this rank's state page. */
void tp_comm_watchdog_enter(tp_comm_watchdog_t *w);
void tp_comm_watchdog_leave(tp_comm_watchdog_t *w);

/* This rank is about to abort the job deliberately (tp_comm_abort). */
void tp_comm_watchdog_mark_aborting(tp_comm_watchdog_t *w);

/* Route a first SIGTERM with all peers alive to fn (see tp_comm_route_sigterm); 0 if w is NULL. */
int tp_comm_watchdog_route_sigterm(tp_comm_watchdog_t *w, void (*fn)(int));

void tp_comm_watchdog_set_context(tp_comm_watchdog_t *w, int64_t step, const char *what);
void tp_comm_watchdog_set_timeout(tp_comm_watchdog_t *w, double timeout_s);

#endif
