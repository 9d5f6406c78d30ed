# capi-ws — build, run, test. `make run` and `make test` work on a fresh machine (README).
CARGO ?= cargo
BIN   := target/release/capi-ws

.PHONY: all build release run demo test test-unit lint fmt check-config clean

all: build

build:
	$(CARGO) build

release:
	$(CARGO) build --release

# The gateway on its embedded default plus two echo nodes (no Consul needed).
run: release
	$(BIN) demo

demo: run

# The whole suite: unit tests, black-box tests against the real binary (both drivers),
# and every shipped config validated by `capi-ws check`.
test:
	@./scripts/ensure-chromium.sh
	$(CARGO) build --bins
	$(CARGO) test --workspace --no-fail-fast
	$(MAKE) check-config

test-unit:
	$(CARGO) test --lib

check-config: build
	@for f in config/*.yaml; do ./target/debug/capi-ws check --config $$f >/dev/null || exit 1; echo "check ok: $$f"; done

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --all-targets -- -D warnings

fmt:
	$(CARGO) fmt --all

clean:
	$(CARGO) clean

# Benchmarks (bench/): targets live in bench/bench.mk.
-include bench/bench.mk

# Fuzzing (fuzz/): `make fuzz`, `make fuzz-quick`; targets live in fuzz/fuzz.mk.
-include fuzz/fuzz.mk
-include soak.mk
