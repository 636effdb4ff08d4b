#!/usr/bin/env bash
# Load-test the LINE simulator's push endpoint with wrk: start it on a free port with rate limits off,
# run wrk for DURATION (default 10s) at 50 and 500 connections, print req/s and non-2xx, stop it.
# Needs wrk (Debian: apt-get install -y wrk). Usage: benchmarks/simulator_load.sh [DURATION]
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION="${1:-10s}"
PYTHON="${PYTHON:-.venv/bin/python}"
command -v wrk >/dev/null || { echo "wrk is not installed (apt-get install -y wrk)" >&2; exit 1; }

workdir="$(mktemp -d)"
"$PYTHON" -m line_simulator --host 127.0.0.1 --port 0 --no-rate-limits \
  >"$workdir/stdout" 2>"$workdir/stderr" &
sim_pid=$!
cleanup() { kill -TERM "$sim_pid" 2>/dev/null || true; wait "$sim_pid" 2>/dev/null || true; rm -rf "$workdir"; }
trap cleanup EXIT

for _ in $(seq 100); do
  [[ -s "$workdir/stdout" ]] && break
  sleep 0.1
done
url="$(head -1 "$workdir/stdout" | sed 's/^LINE simulator listening on //')"
[[ "$url" == http://* ]] || { echo "the simulator did not start:" >&2; cat "$workdir/stderr" >&2; exit 1; }
echo "simulator at $url (pid $sim_pid), push, rate limits off, $(nproc) cores"

for connections in 50 500; do
  echo "== wrk -t2 -c$connections -d$DURATION -s benchmarks/simulator_push.lua $url"
  wrk -t2 -c"$connections" -d"$DURATION" --timeout 10s -s benchmarks/simulator_push.lua "$url" \
    | grep -E '^(requests|socket errors|latency):'
done
echo "== simulator record after the runs"
curl -s "$url/_sim/stats" | "$PYTHON" -c 'import json,sys; s=json.load(sys.stdin); print("push answers by status:", s["requests"].get("push"), "| deliveries:", s["deliveries"])'
