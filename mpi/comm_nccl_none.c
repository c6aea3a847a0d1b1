/* The NCCL communicator in a build without CUDA: creating one says so. */
#include "comm_impl.h"

tp_status_t tp_comm_nccl_create(tp_comm_t *host, tp_comm_t **out)
{
    *out = NULL;
    return TP_ERR(
        TP_ERR_UNSUPPORTED,
        "communicator 'nccl': this binary was built without CUDA (configure with "
        "-DTULPAR_CUDA=ON where nvcc and NCCL are installed), or use a host communicator");
}
