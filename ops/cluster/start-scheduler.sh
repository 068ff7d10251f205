#!/usr/bin/env bash
# Start the Dask scheduler that the pipeline service and the workers connect to.
#   BCDI_SCHEDULER_HOST=10.0.0.5 ops/cluster/start-scheduler.sh
# Binds 127.0.0.1 unless told otherwise: name the cluster's private interface explicitly. Dask's
# own protocol trusts its peers (it unpickles what they send): never expose it beyond that network,
# or use TLS (see docs/cluster.md).
set -euo pipefail
HOST="${BCDI_SCHEDULER_HOST:-127.0.0.1}"
PORT="${BCDI_SCHEDULER_PORT:-8786}"
VENV="${BCDI_VENV:-$(cd "$(dirname "$0")/../.." && pwd)/.venv}"
exec "$VENV/bin/dask" scheduler --host "$HOST" --port "$PORT" --dashboard-address "127.0.0.1:8787" "$@"
