#!/usr/bin/env bash
# Start one Dask worker per GPU of this node (dask-cuda), each pinned to its own device.
#   ops/cluster/start-gpu-workers.sh tcp://10.0.0.5:8786
# Needs the same bcdi-stream version as the service, with the gpu extra:
#   pip install -e '.[gpu]'   (cupy + dask-cuda)
# CUDA_VISIBLE_DEVICES=0,1 limits the GPUs used. One thread per worker: a shard is one batch on one GPU.
set -euo pipefail
SCHEDULER="${1:?usage: start-gpu-workers.sh tcp://scheduler-host:8786}"
shift
VENV="${BCDI_VENV:-$(cd "$(dirname "$0")/../.." && pwd)/.venv}"
exec "$VENV/bin/dask" cuda worker "$SCHEDULER" --nthreads 1 --name "$(hostname)-gpu" \
    --dashboard-address "127.0.0.1:0" "$@"
