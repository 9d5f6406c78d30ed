# Fuzzing (issue 8): cargo-fuzz / libFuzzer targets in fuzz/ (its own workspace). Included by the
# root Makefile. The machine has the stable toolchain only: cargo-fuzz needs nightly `-Z` flags,
# which RUSTC_BOOTSTRAP=1 unlocks on stable. New inputs go to fuzz/work/<target> (ignored by
# git); the committed seeds in fuzz/corpus/<target> are read, never written; a crash lands in
# fuzz/artifacts/<target>/ and fails the make.
#   make fuzz                      each target FUZZ_SECONDS (default 60)
#   make fuzz-quick                each target 10 s
#   make fuzz FUZZ_TARGETS=route_forward FUZZ_SECONDS=3600 FUZZ_JOBS=2
FUZZ_TARGETS ?= request_head route_forward upstream_response config_load echo_frame table_build \
                token_extract jwt_claims consul_json
FUZZ_SECONDS ?= 60
FUZZ_JOBS    ?= 1
FUZZ_ENV     := RUSTC_BOOTSTRAP=1
# libFuzzer's -jobs sends each job's output to fuzz-<n>.log: only ask for it when parallel.
FUZZ_PARALLEL = $(if $(filter-out 1,$(FUZZ_JOBS)),-jobs=$(FUZZ_JOBS) -workers=$(FUZZ_JOBS))

.PHONY: fuzz fuzz-quick fuzz-build fuzz-tool

fuzz-tool:
	@command -v cargo-fuzz >/dev/null 2>&1 || $(CARGO) install cargo-fuzz --locked

fuzz-build: fuzz-tool
	$(FUZZ_ENV) $(CARGO) fuzz build

fuzz: fuzz-build
	@set -e; for t in $(FUZZ_TARGETS); do \
	  mkdir -p fuzz/work/$$t fuzz/corpus/$$t; \
	  echo "== fuzz $$t for $(FUZZ_SECONDS) s"; \
	  $(FUZZ_ENV) $(CARGO) fuzz run $$t fuzz/work/$$t fuzz/corpus/$$t -- \
	    -max_total_time=$(FUZZ_SECONDS) $(FUZZ_PARALLEL) \
	    -print_final_stats=1 -timeout=10 -rss_limit_mb=2048; \
	done

fuzz-quick:
	$(MAKE) fuzz FUZZ_SECONDS=10
