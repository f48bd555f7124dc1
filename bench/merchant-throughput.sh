#!/usr/bin/env bash
# Throughput of merchant activation and GET /v1/merchants/{id}, measured from outside the process
# with wrk (Debian package `wrk`), on SQLite and (if reachable) PostgreSQL.
# Usage: bench/merchant-throughput.sh [seconds] [connections]
set -euo pipefail
cd "$(dirname "$0")/.."
SECS="${1:-10}"; CONNS="${2:-32}"
. bench/lib.sh
cargo build --release --quiet
trap 'kill $(jobs -p) 2>/dev/null || true' EXIT

run() {
  start_netterms "$1" "$2" 18080
  echo "== $1: POST /v1/merchants (${SECS}s, $CONNS connections)"
  wrk -t2 -c"$CONNS" -d"${SECS}s" --latency -s bench/wrk/activate.lua "$NT_BASE" | grep -E "Requests/sec|Latency|99%|50%|non-2xx"
  NT_MERCHANT=$(curl -sf -H "Authorization: $NT_AUTH" "$NT_BASE/v1/merchants?limit=1" | python3 -c 'import json,sys; print(json.load(sys.stdin)["data"][0]["merchant_id"])')
  export NT_MERCHANT
  echo "== $1: GET /v1/merchants/{id} (${SECS}s, $CONNS connections)"
  wrk -t2 -c"$CONNS" -d"${SECS}s" --latency -s bench/wrk/get.lua "$NT_BASE" | grep -E "Requests/sec|Latency|99%|50%|non-2xx"
  stop_netterms
}

with_backends run
