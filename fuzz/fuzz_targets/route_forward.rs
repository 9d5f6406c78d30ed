//! Fuzz target: path hygiene and routing (src/data/route.rs), the origin check and CORS
//! preflight, and the forwarded head (src/data/upstream.rs forward_head) for every request the
//! gateway would relay. Properties: no panic; a routed target is origin-form without dot
//! segments; the forwarded head is one sound request (fuzz/src/lib.rs `check_forward`); a
//! preflight answer is one response head with nothing after it.
#![no_main]

use std::sync::OnceLock;

use capi_ws::data::head::{parse_request, MAX_HEADERS};
use capi_ws::data::route::{check_origin, route, write_preflight};
use capi_ws::data::upgrade::validate_upgrade;
use capi_ws::snapshot::Snapshot;
use capi_ws_fuzz::{check_forward, fixed_snapshot};
use libfuzzer_sys::fuzz_target;

static SNAP: OnceLock<Snapshot> = OnceLock::new();

fuzz_target!(|data: &[u8]| {
    let snap = SNAP.get_or_init(fixed_snapshot);
    // Two shapes from one input: a bare target (first byte 0) or a whole request head.
    if let Some((&0, rest)) = data.split_first() {
        if let Ok(target) = std::str::from_utf8(rest) {
            if let Ok(m) = route(snap, target) {
                assert!(target.starts_with('/'));
                assert!(snap.services[m.service].routable);
                assert!(m.rest.is_empty() || m.rest.starts_with('/'));
                let path = target.split_once('?').map_or(target, |(p, _)| p);
                assert!(
                    !path.split('/').any(|seg| seg == "." || seg == ".."),
                    "{target:?}"
                );
                assert!(!path.contains('\\'), "{target:?}");
            }
        }
        return;
    }
    let mut storage = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let Ok(Some(head)) = parse_request(data, &mut storage) else {
        return;
    };
    let Ok(m) = route(snap, head.target) else {
        return;
    };
    let svc = &snap.services[m.service];
    let allowed = svc.allowed_origins.as_deref().unwrap_or(&snap.allowed_origins);
    if head.method == "OPTIONS" {
        let mut out = Vec::new();
        if write_preflight(&head, allowed, None, &mut out).is_ok() {
            let mut st = [httparse::EMPTY_HEADER; 64];
            let mut resp = httparse::Response::new(&mut st);
            match resp.parse(&out) {
                Ok(httparse::Status::Complete(n)) => assert_eq!(n, out.len()),
                other => panic!("preflight answer does not parse ({other:?}): {out:?}"),
            }
            assert_eq!(resp.code, Some(202));
        }
        return;
    }
    if validate_upgrade(&head).is_err() || check_origin(head.header("origin"), allowed).is_err() {
        return;
    }
    check_forward(&head, &m, snap);
});
