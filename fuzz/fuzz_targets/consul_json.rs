//! Fuzz target: Consul JSON decoding (src/control/consul/api.rs): `/v1/catalog/services`
//! (`parse_service_names`), `/v1/health/service/<name>` (`parse_health`) and each element to
//! an instance (`to_instance`), then the routing table built from those instances. Properties:
//! no panic; no `consul` name; an instance has a port and a trimmed, non-empty address; the
//! table build takes whatever Consul hands it.
#![no_main]

use capi_ws::config::{Mode, Settings};
use capi_ws::control::consul::api::{parse_health, parse_service_names, to_instance};
use capi_ws::control::table::build_snapshot;
use capi_ws_fuzz::fake_resolve;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(names) = parse_service_names(data) {
        assert!(!names.iter().any(|n| n == "consul"), "consul servers listed");
    }
    let Ok(entries) = parse_health(data) else {
        return;
    };
    let mut instances = Vec::new();
    for e in &entries {
        if let Ok(i) = to_instance(e) {
            assert!(i.port > 0);
            assert!(
                !i.address.is_empty() && i.address.trim() == i.address,
                "address {:?}",
                i.address
            );
            assert_eq!(i.healthy, e.healthy());
            instances.push(i);
        }
    }
    let settings = Settings {
        mode: Mode::Full,
        ..Settings::default()
    };
    let snap = build_snapshot(&settings, instances, &fake_resolve);
    for (key, &i) in &snap.by_route {
        assert!(snap.services[i].routable, "route {key} to an unroutable service");
    }
});
