# make bench / bench-quick: defined by the bench capability.
.PHONY: bench bench-quick
bench bench-quick:
	@echo "the benchmark harness is not built yet (bench issue)"; exit 1
