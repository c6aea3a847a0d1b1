/* Graceful stop on request: SIGUSR1 (Slurm's warning signal before a time limit or preemption,
 * `sbatch --signal=B:USR1@T` forwarded to the tasks, or `kill -USR1` by hand) or a first SIGTERM
 * (Slurm's own at the time limit or on preemption; Ctrl-C on mpirun) asks training to
 * finish the current step, write a checkpoint and exit with TP_EXIT_STOPPED, so that a
 * requeued job continues with `--resume auto`. The handler only sets a flag; the trainer reads
 * it between steps and all ranks agree on it, so they stop at the same step even when the signal
 * reaches them at different times. */
#ifndef TP_STOP_REQUEST_H
#define TP_STOP_REQUEST_H

#include <stdbool.h>

#include "comm.h"

/* Exit status of `tulpar train` stopped on request with a checkpoint written (EX_TEMPFAIL:
 * "try again later"). slurm/train.sbatch requeues on it. */
#define TP_EXIT_STOPPED 75

/* Install the handlers (idempotent). A second SIGTERM kills as usual. comm: the world
 * communicator, whose watchdog may own SIGTERM (tp_comm_route_sigterm); may be NULL. */
void tp_stop_request_install(tp_comm_t *comm);
/* The signal that asked to stop, or 0. */
int tp_stop_requested(void);

#endif
