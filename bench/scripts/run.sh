#!/usr/bin/env bash
# Run the bench suite: build, install peers (full/quick), run, and make sure nothing it started
# survives (the harness stops its children itself and gives them PR_SET_PDEATHSIG; this trap
# covers an interrupted run). Usage: bench/scripts/run.sh full|quick|smoke [extra suite flags]
set -euo pipefail
mode="${1:-full}"
shift || true
cd "$(dirname "$0")/../.."
CARGO="${CARGO:-cargo}"
if [ "$mode" != "smoke" ]; then
    bash bench/scripts/install-peers.sh
fi
$CARGO build --release -q --bin capi-ws -p capi-ws
$CARGO build --release -q -p capi-ws-bench
bench/scripts/env.sh >&2
target/release/capi-ws-bench suite --mode "$mode" "$@" &
pid=$!
trap 'kill -TERM "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true' INT TERM EXIT
wait "$pid"
status=$?
trap - INT TERM EXIT
exit $status
