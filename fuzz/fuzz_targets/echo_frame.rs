//! Fuzz target: the echo server's RFC 6455 frame codec (src/echo/frame.rs). Properties: no
//! panic; a parsed header lies inside the input and obeys §5.2/§5.5 (mask set, control frames
//! final and ≤ 125 bytes); unmasking in two chunks equals unmasking at once and masking twice is
//! the identity; a server header we encode describes the length we gave it; a close payload
//! accepted is answered with its own code.
#![no_main]

use capi_ws::echo::frame::{
    apply_mask, check_sequence, close_reply_code, parse_client_header, push_server_header, Opcode,
    MAX_CONTROL_PAYLOAD, MAX_SERVER_HEADER_LEN,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut in_message = false;
    let mut rest = data;
    // Walk the input as a stream of frames, as the echo server does.
    while let Ok(Some((h, len))) = parse_client_header(rest) {
        assert!(len <= rest.len() && (6..=14).contains(&len));
        if h.opcode.is_control() {
            assert!(h.fin);
            assert!(h.payload_len <= MAX_CONTROL_PAYLOAD as u64);
        }
        let _ = check_sequence(&mut in_message, h.opcode, h.fin);
        let avail = (rest.len() - len) as u64;
        let take = h.payload_len.min(avail) as usize;
        let payload = &rest[len..len + take];

        let mut once = payload.to_vec();
        apply_mask(&mut once, h.mask, 0);
        let split = if payload.is_empty() {
            0
        } else {
            usize::from(payload[0]) % payload.len()
        };
        let mut chunked = payload.to_vec();
        let (a, b) = chunked.split_at_mut(split);
        apply_mask(a, h.mask, 0);
        apply_mask(b, h.mask, split);
        assert_eq!(once, chunked);
        let mut back = once.clone();
        apply_mask(&mut back, h.mask, 0);
        assert_eq!(back, payload);

        if h.opcode == Opcode::Close && take as u64 == h.payload_len {
            if let Ok(Some(code)) = close_reply_code(&once) {
                assert_eq!(code, u16::from_be_bytes([once[0], once[1]]));
            }
        }
        let mut out = Vec::new();
        push_server_header(&mut out, h.fin, h.opcode, h.payload_len);
        assert!(out.len() <= MAX_SERVER_HEADER_LEN);
        assert_eq!(out[0] & 0x0F, h.opcode.bits());
        let encoded_len = match out[1] {
            126 => u64::from(u16::from_be_bytes([out[2], out[3]])),
            127 => u64::from_be_bytes(out[2..10].try_into().unwrap_or([0; 8])),
            n => u64::from(n),
        };
        assert_eq!(encoded_len, h.payload_len);
        if take as u64 != h.payload_len {
            break;
        }
        rest = &rest[len + take..];
    }
});
