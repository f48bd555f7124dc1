#!/usr/bin/env bash
# Throughput of merchant activation and GET /v1/merchants/{id}, measured from outside the process
# with wrk (Debian package `wrk`), on SQLite and (if reachable) PostgreSQL.
# Usage: bench/merchant-throughput.sh [seconds] [connections]
set -euo pipefail
cd "$(dirname "$0")/.."
SECS="${1:-10}"; CONNS="${2:-32}"
PG_ADMIN="${NETTERMS_BENCH_PG:-postgres://postgres@127.0.0.1:5432/test}"
cargo build --release --quiet
BIN=target/release/netterms
WORK=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$WORK"' EXIT

run() { # backend database_url
  local backend=$1 url=$2 port=18080
  export NETTERMS_DATABASE_URL="$url" NETTERMS_LISTEN="127.0.0.1:$port" NETTERMS_LOG_LEVEL=warn
  export NETTERMS_SECRET_KEY=bench-secret-key-0123456789-0123456789 NETTERMS_AUTH_FAILURE_LIMIT=1000000
  [ "$backend" = postgres ] && "$BIN" migrate
  "$BIN" serve & local pid=$!
  for _ in $(seq 1 50); do curl -sf "http://127.0.0.1:$port/healthz" >/dev/null && break; sleep 0.1; done
  local created user url_pw pw merchant
  created=$("$BIN" psp create --name Bench --fee-rate-bps 100 --fee-fixed 0 --iban DE89370400440532013000 --payout-frequency daily --json)
  user=$(echo "$created" | python3 -c 'import json,sys; print(json.load(sys.stdin)["username"])')
  url_pw=$(echo "$created" | python3 -c 'import json,sys; print(json.load(sys.stdin)["password_url"])')
  pw=$(curl -sf -H 'Accept: application/json' "$url_pw" | python3 -c 'import json,sys; print(json.load(sys.stdin)["password"])')
  export NT_AUTH="Basic $(printf '%s:%s' "$user" "$pw" | base64 -w0)"
  echo "== $backend: POST /v1/merchants (${SECS}s, $CONNS connections)"
  wrk -t2 -c"$CONNS" -d"${SECS}s" --latency -s bench/wrk/activate.lua "http://127.0.0.1:$port" | grep -E "Requests/sec|Latency|99%|50%|non-2xx"
  merchant=$(curl -sf -H "Authorization: $NT_AUTH" "http://127.0.0.1:$port/v1/merchants?limit=1" | python3 -c 'import json,sys; print(json.load(sys.stdin)["data"][0]["merchant_id"])')
  export NT_MERCHANT=$merchant
  echo "== $backend: GET /v1/merchants/{id} (${SECS}s, $CONNS connections)"
  wrk -t2 -c"$CONNS" -d"${SECS}s" --latency -s bench/wrk/get.lua "http://127.0.0.1:$port" | grep -E "Requests/sec|Latency|99%|50%|non-2xx"
  kill "$pid"; wait "$pid" 2>/dev/null || true
}

run sqlite "sqlite://$WORK/bench.db"
if pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; then
  DB="netterms_bench_$$"
  psql "$PG_ADMIN" -qc "CREATE DATABASE $DB" >/dev/null
  run postgres "${PG_ADMIN%/*}/$DB"
  psql "$PG_ADMIN" -qc "DROP DATABASE $DB WITH (FORCE)" >/dev/null
fi
