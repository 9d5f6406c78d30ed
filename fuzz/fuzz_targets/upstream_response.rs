//! Fuzz target: what a node answers (src/data/upstream.rs): the response head parser, the 101
//! check, the framing of a refused upgrade's body and the chunked-body scanner. Properties: no
//! panic; lengths stay inside the input and under the 64 KiB relay cap; a chunked body found
//! complete in a prefix is found complete, with the same length, in the whole.
#![no_main]

use capi_ws::data::head::MAX_HEADERS;
use capi_ws::data::upgrade::accept_key;
use capi_ws::data::upstream::{
    body_framing, check_switch, chunked_body_len, parse_response, BodyFraming, MAX_RELAYED_BODY,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let expected = accept_key(b"dGhlIHNhbXBsZSBub25jZQ==");
    let mut storage = [httparse::EMPTY_HEADER; MAX_HEADERS];
    if let Ok(Some(resp)) = parse_response(data, &mut storage) {
        assert!(resp.head_len <= data.len());
        if check_switch(&resp, &expected).is_ok() {
            assert_eq!(resp.status, 101);
        }
        let body = &data[resp.head_len..];
        match body_framing(&resp) {
            BodyFraming::Length(n) => assert!(n > 0 && n <= MAX_RELAYED_BODY),
            BodyFraming::Chunked => check_chunked(body),
            BodyFraming::None | BodyFraming::UntilClose => {}
        }
    }
    // The scanner on raw bytes too: a node may send anything after its head.
    check_chunked(data);
});

fn check_chunked(body: &[u8]) {
    if let Ok(Some(n)) = chunked_body_len(body) {
        assert!(n <= body.len());
        // More bytes after a complete body do not change where it ends.
        let mut longer = body[..n].to_vec();
        longer.extend_from_slice(b"garbage\r\n");
        assert_eq!(chunked_body_len(&longer), Ok(Some(n)));
        // A strict prefix of a complete body is never complete.
        if n > 0 {
            assert_eq!(chunked_body_len(&body[..n - 1]).ok().flatten(), None);
        }
    }
}
