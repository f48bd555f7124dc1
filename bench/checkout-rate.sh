#!/usr/bin/env bash
# Sustained rate of complete widget checkouts (session → authorize → confirm) and the webhook
# commit-to-first-attempt lag, on SQLite and (if reachable) PostgreSQL.
# Usage: bench/checkout-rate.sh [workers] [seconds]
set -euo pipefail
cd "$(dirname "$0")/.."
WORKERS="${1:-16}"; SECS="${2:-10}"
. bench/lib.sh
cargo build --release --quiet --bin netterms --example checkout_load
trap 'kill $(jobs -p) 2>/dev/null || true' EXIT

run() {
  start_netterms "$1" "$2" 18081
  local merchant
  merchant=$(curl -sf -H "Authorization: $NT_AUTH" -H 'Content-Type: application/json' "$NT_BASE/v1/merchants" -d '{
    "external_id": "bench", "name": "Bench GmbH", "legal_form": "10001", "registration_number": "HRB 1",
    "address": {"street": "Ring", "postal_code": "50667", "city": "Köln", "country": "DE"},
    "contact": {"name": "Bench", "email": "bench@example.com"}}' | python3 -c 'import json,sys; print(json.load(sys.stdin)["merchant_id"])')
  echo "== $1: $WORKERS workers, ${SECS}s"
  target/release/examples/checkout_load "$NT_BASE" "$NT_USER" "$NT_PASS" "$merchant" "$WORKERS" "$SECS"
  stop_netterms
}

with_backends run
