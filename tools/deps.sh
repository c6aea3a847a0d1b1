#!/usr/bin/env bash
# Install the Debian/Ubuntu packages Tulpar needs to build, test and train, when missing.
# Uses sudo when not root. Safe to run repeatedly: installs nothing when all are present.
set -euo pipefail

PACKAGES=(
    gcc g++ make cmake pkg-config
    libopenmpi-dev openmpi-bin            # MPI (mpicc, mpirun)
    libhdf5-openmpi-dev hdf5-tools        # parallel HDF5 checkpoints, h5dump
    libconfig-dev                         # config files
    libopenblas-openmp-dev                # BLAS sharing Tulpar's OpenMP thread pool
    zlib1g-dev                            # gzip'd IDX data
    dataset-fashion-mnist                 # the default data set
    python3 python3-numpy python3-h5py    # test helpers
    python3-matplotlib                    # plots of the benchmark suite's report.html
    chromium                              # headless check of report.html (test_bench_suite)
    bible-kjv bible-kjv-text              # the default language-model corpus (tools/corpus.sh)
    slurmctld slurmd slurm-client munge   # the Slurm tests start a one-node cluster
)

missing=()
for p in "${PACKAGES[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
        missing+=("$p")
    fi
done
if [ ${#missing[@]} -eq 0 ]; then
    echo "deps: all ${#PACKAGES[@]} packages present"
    exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null; then SUDO="sudo"; else
        echo "deps: need root or sudo to install: ${missing[*]}" >&2
        exit 1
    fi
fi
echo "deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
