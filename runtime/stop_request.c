/* SIGUSR1 and SIGTERM -> a flag read between training steps (stop_request.h). The flag is the
 * one process-wide variable a signal handler can reach: a volatile sig_atomic_t, nothing else. */
#include "stop_request.h"

#include <signal.h>
#include <string.h>

static volatile sig_atomic_t g_stop_signal;

static void on_stop_signal(int sig)
{
    if (sig == SIGTERM && g_stop_signal == SIGTERM) {
        /* a second SIGTERM: the sender means it */
        signal(SIGTERM, SIG_DFL);
        raise(SIGTERM);
        return;
    }
    g_stop_signal = sig;
}

static void install(int sig)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_stop_signal;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESTART; /* a signal must not turn a blocking read or MPI call into EINTR */
    sigaction(sig, &sa, NULL);
}

void tp_stop_request_install(tp_comm_t *comm)
{
    install(SIGUSR1);
    /* With several ranks the communicator's watchdog owns SIGTERM (it must still report a dead
     * peer when the launcher kills the job) and forwards a plain stop request here. */
    if (!comm || !tp_comm_route_sigterm(comm, on_stop_signal)) install(SIGTERM);
}

int tp_stop_requested(void)
{
    return (int)g_stop_signal;
}
