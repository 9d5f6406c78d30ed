# Benchmarks (bench/, see bench/RESULTS.md). Included from the root Makefile.
#   make bench        full suite: 3 interleaved runs, every row and target (~15 min)
#   make bench-quick  1 short run of every row (< 2 min), same report files
#   make bench-smoke  correctness only (direct + capi-ws, both drivers, plus 3 Consul discovery
#                     trials per driver): exits non-zero on any client error, any byte not echoed
#                     or any registration not routable within 5 s; never asserts on speed
#   make bench-big    idle row with 100,000 connections where RLIMIT_NOFILE allows it
.PHONY: bench bench-quick bench-smoke bench-big

bench:
	bash bench/scripts/run.sh full

bench-quick:
	bash bench/scripts/run.sh quick

bench-smoke:
	bash bench/scripts/run.sh smoke

bench-big:
	bash bench/scripts/run.sh full --runs 1 --rows idle --idle-conns 100000
