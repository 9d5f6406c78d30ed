#!/usr/bin/env bash
# Where the CPU goes while one load runs: a system-wide `perf record` (999 Hz) during
# `capi-ws-bench load`, split by role — client (capi-ws-bench), backend (`capi-ws echo`), proxy
# (any other process with samples: capi-ws, nginx, haproxy) — and, for the copy and wake-up
# symbols that decide the bulk rows, per role. Figures are samples per unit of work: at 999 Hz a
# sample is ~1 ms of CPU, so "per GB" (bulk) reads as µs of CPU per MB and "per 1k ops" (other
# scenarios) as µs per operation.
#
# The targets must already run (start them by hand, as in bench/RESULTS.md "What was measured").
# Needs perf (linux-perf) and root or kernel.perf_event_paranoid <= -1.
#
# Usage: bench/scripts/cpu-by-role.sh ADDR [capi-ws-bench load flags...]
#   bench/scripts/cpu-by-role.sh 127.0.0.1:19012 --scenario bulk --conns 16 --size 1048576 --inflight 4
set -euo pipefail
addr="${1:?usage: cpu-by-role.sh ADDR [load flags]}"
shift
cd "$(dirname "$0")/../.."
seconds=3
out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT
perf record -a -F 999 -o "$out/perf.data" -- sleep "$seconds" >/dev/null 2>&1 &
perf_pid=$!
sleep 0.1
# The load runs a little longer than the recording, so every sample is under load.
target/release/capi-ws-bench load --addr "$addr" "$@" --seconds "$seconds.3" >"$out/load.txt" 2>&1 &
load_pid=$!
wait "$perf_pid"
# Roles from /proc; the client is the load generator started above (it may have exited by now).
for pid in $(perf script -i "$out/perf.data" -F pid 2>/dev/null | sort -u); do
    [ "$pid" = 0 ] && continue
    cmd="$({ tr '\0' ' ' <"/proc/$pid/cmdline"; } 2>/dev/null || true)"
    [ "$pid" = "$load_pid" ] && cmd="capi-ws-bench"
    case "$cmd" in
        "") role=other ;;
        *capi-ws-bench*) role=client ;;
        *"capi-ws echo"*) role=backend ;;
        *capi-ws*|*nginx*|*haproxy*) role=proxy ;;
        *) role=other ;;
    esac
    echo "$pid $role"
done >"$out/roles.txt"
wait "$load_pid"
result="$(tail -1 "$out/load.txt")"
echo "$result"
case " $* " in
    *" bulk "*) unit=GB ;;
    *) unit=ops ;;
esac
perf script -i "$out/perf.data" -F pid,ip,sym 2>/dev/null | python3 -c '
import collections, re, sys
roles = dict(line.split() for line in open(sys.argv[1]))
result, seconds = sys.argv[2], float(sys.argv[3])
mbs = re.search(r"MB/s ([0-9.]+)", result)
ops = re.search(r"^ops ([0-9]+)", result)
if sys.argv[4] == "GB" and mbs:
    work, unit = float(mbs.group(1)) * seconds / 1000.0, "GB"
elif ops:
    # ops counts the whole load, which runs 0.3 s longer than the recording.
    work, unit = int(ops.group(1)) * seconds / (seconds + 0.3) / 1000.0, "1k ops"
else:
    sys.exit("no result line from capi-ws-bench load: " + result)
keep = {"_copy_to_iter", "_copy_from_iter", "_raw_spin_unlock_irqrestore",
        "finish_task_switch.isra.0", "handle_softirqs"}
total, per_sym = collections.Counter(), collections.Counter()
for line in sys.stdin:
    fields = line.split()
    if not fields or not fields[0].isdigit():
        continue
    role = "idle" if fields[0] == "0" else roles.get(fields[0], "other")
    total[role] += 1
    if len(fields) >= 3 and fields[-1] in keep:
        per_sym[(role, fields[-1])] += 1
fmt = "%.0f" if unit == "GB" else "%.1f"
print("samples per %s: %s" % (unit, "  ".join(
    ("%s " + fmt) % (r, n / work) for r, n in sorted(total.items()))))
for (role, sym), n in sorted(per_sym.items()):
    print(("  %-8s %-30s " + fmt) % (role, sym, n / work))
' "$out/roles.txt" "$result" "$seconds" "$unit"
