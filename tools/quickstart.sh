#!/usr/bin/env bash
# README command 1: install what is missing, build, and train the default model (an MLP on
# Fashion-MNIST) data-parallel on 2 MPI ranks on the CPU. Extra arguments go to `tulpar train`.
set -euo pipefail
cd "$(dirname "$0")/.."
tools/deps.sh
tools/build.sh build
if [ "$(id -u)" -eq 0 ]; then
    # Open MPI refuses to run as root unless told that it is intended.
    export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
fi
exec mpirun -np 2 --bind-to none build/tulpar train configs/mlp_fashion.cfg "$@"
