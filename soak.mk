# Soak (issue 8): a bounded mixed load on loopback under churn (Consul flips, a node dies and
# returns, key rotation, SIGHUP reloads) — tests/gw_soak.rs against the real binary, which
# cargo test builds itself. Included by the root Makefile. `make test` already runs the short
# version (20 s, inside cargo test).
#   make soak                   180 s, figures printed at the end
#   make soak-quick             20 s
#   make soak SOAK_SECS=600
SOAK_SECS ?= 180

.PHONY: soak soak-quick

soak:
	CAPI_WS_SOAK_SECS=$(SOAK_SECS) $(CARGO) test --test gw_soak -- --nocapture

soak-quick:
	$(MAKE) soak SOAK_SECS=20
