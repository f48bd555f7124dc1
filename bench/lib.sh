# Shared by the bench scripts: start a release netterms on a database and provision a PSP.
# start_netterms BACKEND DATABASE_URL PORT  → sets NT_PID, NT_BASE, NT_USER, NT_PASS, NT_AUTH
BIN=target/release/netterms

start_netterms() {
  local backend=$1 url=$2 port=$3
  export NETTERMS_DATABASE_URL="$url" NETTERMS_LISTEN="127.0.0.1:$port" NETTERMS_LOG_LEVEL=warn
  export NETTERMS_SECRET_KEY=bench-secret-key-0123456789-0123456789 NETTERMS_AUTH_FAILURE_LIMIT=1000000
  # One load generator is one client address: lift the checkout API's per-address limit.
  export NETTERMS_CHECKOUT_REQUESTS_PER_MINUTE_PER_ADDRESS=1000000000
  if [ "$backend" = postgres ]; then "$BIN" migrate; fi
  "$BIN" serve & NT_PID=$!
  NT_BASE="http://127.0.0.1:$port"
  for _ in $(seq 1 50); do curl -sf "$NT_BASE/healthz" >/dev/null && break; sleep 0.1; done
  local created url_pw
  created=$("$BIN" psp create --name Bench --fee-rate-bps 100 --fee-fixed 0 --iban DE89370400440532013000 --payout-frequency daily --json)
  NT_USER=$(echo "$created" | python3 -c 'import json,sys; print(json.load(sys.stdin)["username"])')
  url_pw=$(echo "$created" | python3 -c 'import json,sys; print(json.load(sys.stdin)["password_url"])')
  NT_PASS=$(curl -sf -H 'Accept: application/json' "$url_pw" | python3 -c 'import json,sys; print(json.load(sys.stdin)["password"])')
  NT_AUTH="Basic $(printf '%s:%s' "$NT_USER" "$NT_PASS" | base64 -w0)"
  export NT_AUTH
}

stop_netterms() {
  kill "$NT_PID"; wait "$NT_PID" 2>/dev/null || true
}

# with_backends FUNCTION: runs FUNCTION BACKEND URL on SQLite, then on PostgreSQL if reachable.
with_backends() {
  local fn=$1 work pg_admin db
  work=$(mktemp -d)
  "$fn" sqlite "sqlite://$work/bench.db"
  pg_admin="${NETTERMS_BENCH_PG:-postgres://postgres@127.0.0.1:5432/test}"
  if pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; then
    db="netterms_bench_$$"
    psql "$pg_admin" -qc "CREATE DATABASE $db" >/dev/null
    "$fn" postgres "${pg_admin%/*}/$db"
    psql "$pg_admin" -qc "DROP DATABASE $db WITH (FORCE)" >/dev/null
  fi
  rm -rf "$work"
}
