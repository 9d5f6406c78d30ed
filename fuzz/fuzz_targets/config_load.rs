//! Fuzz target: the config loader (src/config: YAML -> raw mirror -> validated Settings), with
//! an empty environment so runs are reproducible. Properties: no panic on any text; an accepted
//! config holds values inside the documented bounds; a refusal names at least one problem.
#![no_main]

use capi_ws::config::{load_str_with_env, MAX_MAX_HEADER_BYTES, MAX_TIMEOUT_MS, MIN_MAX_HEADER_BYTES};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let no_env = |_: &str| -> Option<String> { None };
    match load_str_with_env(text, &no_env) {
        Ok(s) => {
            assert!((MIN_MAX_HEADER_BYTES..=MAX_MAX_HEADER_BYTES).contains(&s.max_header_bytes));
            for t in [
                s.handshake_timeout_ms,
                s.connect_timeout_ms,
                s.upstream_timeout_ms,
            ] {
                assert!(t <= MAX_TIMEOUT_MS);
            }
            assert!(!s.context_path.ends_with('/'));
            // Building the routing table from an accepted config never panics.
            let instances = capi_ws::control::table::static_instances(&s);
            let _ = capi_ws::control::table::build_snapshot(&s, instances, &capi_ws_fuzz::fake_resolve);
        }
        Err(e) => assert!(!e.problems.is_empty()),
    }
});
