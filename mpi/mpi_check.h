/* TP_MPI_CHECK: every MPI call goes through it. MPI_ERRORS_RETURN is set on the communicators
 * Tulpar uses, so a failure returns here and is reported with MPI's own error string instead of
 * aborting inside the library. */
#ifndef TP_MPI_CHECK_H
#define TP_MPI_CHECK_H

#include <mpi.h>

#include "comm.h"
#include "tp_error.h"

/* Tulpar's element types and reductions as MPI's (TP_RED_AVG maps to MPI_SUM; callers divide). */
MPI_Datatype tp_mpi_type(tp_dtype_t dt);
MPI_Op tp_mpi_op(tp_redop_t op);

tp_status_t tp_mpi_report(int rc, const char *stmt, const char *file, int line);

#define TP_MPI_CHECK(call)                                                                         \
    do {                                                                                           \
        int tp_mpi_rc_ = (call);                                                                   \
        if (tp_mpi_rc_ != MPI_SUCCESS)                                                             \
            return tp_mpi_report(tp_mpi_rc_, #call, __FILE__, __LINE__);                           \
    } while (0)

#endif
