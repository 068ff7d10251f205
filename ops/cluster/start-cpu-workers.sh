#!/usr/bin/env bash
# Start CPU workers on this node (no GPU): BCDI_WORKERS processes (default 1), each with one Dask
# thread; the FFTs of a shard use every core the process may run on, so keep one worker per node
# unless you pin them (taskset) to separate cores.
#   ops/cluster/start-cpu-workers.sh tcp://10.0.0.5:8786
set -euo pipefail
SCHEDULER="${1:?usage: start-cpu-workers.sh tcp://scheduler-host:8786}"
shift
VENV="${BCDI_VENV:-$(cd "$(dirname "$0")/../.." && pwd)/.venv}"
exec "$VENV/bin/dask" worker "$SCHEDULER" --nworkers "${BCDI_WORKERS:-1}" --nthreads 1 \
    --dashboard-address "127.0.0.1:0" "$@"
