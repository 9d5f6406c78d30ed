//! Fuzz target: token extraction (src/data/authz.rs `extract_token`: Bearer header, the
//! `access_token` query pair, the configured cookie) on arbitrary request heads, then the
//! extracted token through `verify` (src/data/verify.rs) with an empty and with a fixed key
//! set. Properties: no panic; a borrowed token lies inside the head; an empty key set never
//! verifies anything; nothing the fuzzer writes verifies against the fixed keys.
#![no_main]

use std::borrow::Cow;
use std::sync::OnceLock;

use capi_ws::data::authz::extract_token;
use capi_ws::data::head::{parse_request, MAX_HEADERS};
use capi_ws::data::verify::verify;
use capi_ws::keys::KeySet;
use capi_ws_fuzz::{fixed_key_set, VERIFY_REASONS};
use libfuzzer_sys::fuzz_target;

fn keys() -> &'static (KeySet, KeySet) {
    static KEYS: OnceLock<(KeySet, KeySet)> = OnceLock::new();
    KEYS.get_or_init(|| (KeySet::default(), fixed_key_set()))
}

fuzz_target!(|data: &[u8]| {
    // First byte picks the cookie name (none, the default-style name, or a short one).
    let (cookie, raw) = match data.split_first() {
        Some((b, rest)) => match b % 3 {
            0 => (None, rest),
            1 => (Some("KC_TOKEN"), rest),
            _ => (Some("t"), rest),
        },
        None => return,
    };
    let mut storage = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let Ok(Some(head)) = parse_request(raw, &mut storage) else {
        return;
    };
    let Some(Ok(token)) = extract_token(&head, cookie) else {
        return;
    };
    assert!(!token.is_empty(), "empty token extracted");
    if let Cow::Borrowed(t) = &token {
        let (start, end) = (raw.as_ptr() as usize, raw.as_ptr() as usize + raw.len());
        let p = t.as_ptr() as usize;
        assert!(
            p >= start && p + t.len() <= end,
            "borrowed token outside the head"
        );
    }
    let (empty, fixed) = keys();
    match verify(&token, empty) {
        Ok(v) => panic!("verified with no keys: {v:?}"),
        Err(r) => assert!(["malformed", "algorithm", "no_keys"].contains(&r), "reason {r}"),
    }
    match verify(&token, fixed) {
        Ok(v) => panic!("a fuzzed token verified: {v:?}"),
        Err(r) => assert!(VERIFY_REASONS.contains(&r), "reason {r}"),
    }
});
