//! Fuzz target: the client's request head (src/data/head.rs) through classify and upgrade
//! validation (src/data/upgrade.rs), as the gateway runs them on every connection. Properties:
//! no panic; a complete head lies inside the input; an accepted upgrade carries a 24-byte key,
//! is HTTP/1.1 `GET`, and has no body framing; parsing a prefix never contradicts the whole.
#![no_main]

use capi_ws::data::head::{list_elements, parse_request, trim_ows, MAX_HEADERS};
use capi_ws::data::upgrade::{accept_key, classify, validate_upgrade, Preflight};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut storage = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let head = match parse_request(data, &mut storage) {
        Ok(Some(head)) => head,
        Ok(None) | Err(_) => return,
    };
    assert!(head.head_len <= data.len());
    for h in head.headers {
        let trimmed = trim_ows(h.value);
        assert!(trimmed.len() <= h.value.len());
        for e in list_elements(h.value) {
            assert!(!e.is_empty());
        }
    }
    // The head alone parses the same (the gateway re-parses `buf[..head_len]`).
    let mut again = [httparse::EMPTY_HEADER; MAX_HEADERS];
    match parse_request(&data[..head.head_len], &mut again) {
        Ok(Some(h)) => {
            assert_eq!(h.head_len, head.head_len);
            assert_eq!(h.target, head.target);
            assert_eq!(h.headers.len(), head.headers.len());
        }
        other => panic!("head alone re-parsed as {other:?}"),
    }
    match classify(&head) {
        Ok(Preflight::Upgrade) => {}
        Ok(Preflight::Health) | Ok(Preflight::Options) | Err(_) => return,
    }
    assert_eq!(head.method, "GET");
    if let Ok(up) = validate_upgrade(&head) {
        assert_eq!(head.minor_version, 1);
        assert_eq!(up.key.len(), 24);
        assert!(head.header("transfer-encoding").is_none());
        assert!(head.headers_named("content-length").count() <= 1);
        let accept = accept_key(up.key);
        assert!(accept.iter().all(|b| b.is_ascii_graphic()));
    }
});
