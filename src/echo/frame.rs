//! RFC 6455 frame codec for the echo server: parse a client frame header (§5.2), unmask payload
//! bytes (§5.3), encode unmasked server headers and check close payloads (§5.5.1, §7.4).
//! Pure functions over byte slices: no I/O, no allocation beyond appending to the caller's
//! buffer; malformed input is a [`ProtocolError`] (which names the close code), never a panic.

/// Longest server header: 2 bytes + 8-byte length (servers never mask).
pub const MAX_SERVER_HEADER_LEN: usize = 10;
/// Control frames carry at most 125 payload bytes (RFC 6455 §5.5).
pub const MAX_CONTROL_PAYLOAD: usize = 125;

/// Close status codes this server sends (RFC 6455 §7.4.1).
pub const CLOSE_PROTOCOL_ERROR: u16 = 1002;
pub const CLOSE_INVALID_PAYLOAD: u16 = 1007;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Opcode {
    Continuation,
    Text,
    Binary,
    Close,
    Ping,
    Pong,
}

impl Opcode {
    fn from_bits(bits: u8) -> Option<Opcode> {
        match bits {
            0x0 => Some(Opcode::Continuation),
            0x1 => Some(Opcode::Text),
            0x2 => Some(Opcode::Binary),
            0x8 => Some(Opcode::Close),
            0x9 => Some(Opcode::Ping),
            0xA => Some(Opcode::Pong),
            _ => None,
        }
    }

    pub fn bits(self) -> u8 {
        match self {
            Opcode::Continuation => 0x0,
            Opcode::Text => 0x1,
            Opcode::Binary => 0x2,
            Opcode::Close => 0x8,
            Opcode::Ping => 0x9,
            Opcode::Pong => 0xA,
        }
    }

    pub fn is_control(self) -> bool {
        matches!(self, Opcode::Close | Opcode::Ping | Opcode::Pong)
    }
}

/// A parsed client frame header; the payload follows it on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHeader {
    pub fin: bool,
    pub opcode: Opcode,
    pub mask: [u8; 4],
    pub payload_len: u64,
}

/// Why a client's bytes break the protocol; each maps to the close code the server answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProtocolError {
    ReservedBits,
    UnknownOpcode,
    Unmasked,
    ControlTooLong,
    ControlFragmented,
    LengthOverflow,
    UnexpectedContinuation,
    ExpectedContinuation,
    CloseTooShort,
    InvalidCloseCode,
    InvalidCloseReason,
}

impl ProtocolError {
    pub fn close_code(self) -> u16 {
        match self {
            ProtocolError::InvalidCloseReason => CLOSE_INVALID_PAYLOAD,
            _ => CLOSE_PROTOCOL_ERROR,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ProtocolError::ReservedBits => "reserved bits set",
            ProtocolError::UnknownOpcode => "unknown opcode",
            ProtocolError::Unmasked => "unmasked client frame",
            ProtocolError::ControlTooLong => "control frame longer than 125 bytes",
            ProtocolError::ControlFragmented => "fragmented control frame",
            ProtocolError::LengthOverflow => "64-bit length with the top bit set",
            ProtocolError::UnexpectedContinuation => "continuation frame outside a message",
            ProtocolError::ExpectedContinuation => "new data frame inside a fragmented message",
            ProtocolError::CloseTooShort => "close payload of one byte",
            ProtocolError::InvalidCloseCode => "invalid close status code",
            ProtocolError::InvalidCloseReason => "close reason is not UTF-8",
        }
    }
}

/// Parse a client frame header from the start of `buf`. `Ok(None)` means more bytes are
/// needed; `Ok(Some((header, header_len)))` leaves the payload at `buf[header_len..]`.
/// Errors are reported as soon as the first two bytes show them.
pub fn parse_client_header(buf: &[u8]) -> Result<Option<(FrameHeader, usize)>, ProtocolError> {
    let (b0, b1) = match buf {
        [b0, b1, ..] => (*b0, *b1),
        _ => return Ok(None),
    };
    if b0 & 0x70 != 0 {
        return Err(ProtocolError::ReservedBits);
    }
    let fin = b0 & 0x80 != 0;
    let opcode = Opcode::from_bits(b0 & 0x0F).ok_or(ProtocolError::UnknownOpcode)?;
    if b1 & 0x80 == 0 {
        return Err(ProtocolError::Unmasked);
    }
    let len7 = b1 & 0x7F;
    if opcode.is_control() {
        if !fin {
            return Err(ProtocolError::ControlFragmented);
        }
        if usize::from(len7) > MAX_CONTROL_PAYLOAD {
            return Err(ProtocolError::ControlTooLong);
        }
    }
    let (payload_len, len_bytes) = match len7 {
        126 => match buf.get(2..4) {
            Some(b) => (u64::from(u16::from_be_bytes([b[0], b[1]])), 2),
            None => return Ok(None),
        },
        127 => match buf.get(2..10) {
            Some(b) => {
                let mut be = [0u8; 8];
                be.copy_from_slice(b);
                let len = u64::from_be_bytes(be);
                if len >> 63 != 0 {
                    return Err(ProtocolError::LengthOverflow);
                }
                (len, 8)
            }
            None => return Ok(None),
        },
        n => (u64::from(n), 0),
    };
    let mask_at = 2 + len_bytes;
    let mask = match buf.get(mask_at..mask_at + 4) {
        Some(m) => [m[0], m[1], m[2], m[3]],
        None => return Ok(None),
    };
    let header = FrameHeader {
        fin,
        opcode,
        mask,
        payload_len,
    };
    Ok(Some((header, mask_at + 4)))
}

/// Data frames must form messages: a continuation only inside a fragmented message, a new
/// text/binary frame only outside one (RFC 6455 §5.4). `in_message` tracks that state.
pub fn check_sequence(in_message: &mut bool, opcode: Opcode, fin: bool) -> Result<(), ProtocolError> {
    match (opcode, *in_message) {
        (Opcode::Continuation, false) => return Err(ProtocolError::UnexpectedContinuation),
        (Opcode::Text | Opcode::Binary, true) => return Err(ProtocolError::ExpectedContinuation),
        _ => {}
    }
    if !opcode.is_control() {
        *in_message = !fin;
    }
    Ok(())
}

/// XOR `data` with `mask`, where `offset` is how many bytes of this payload came before
/// `data` (so a payload can be unmasked in chunks). Word-at-a-time for throughput.
pub fn apply_mask(data: &mut [u8], mask: [u8; 4], offset: usize) {
    let shift = offset & 3;
    let rotated = [
        mask[shift],
        mask[(shift + 1) & 3],
        mask[(shift + 2) & 3],
        mask[(shift + 3) & 3],
    ];
    let word = u64::from_ne_bytes([
        rotated[0], rotated[1], rotated[2], rotated[3], rotated[0], rotated[1], rotated[2], rotated[3],
    ]);
    let mut chunks = data.chunks_exact_mut(8);
    for chunk in &mut chunks {
        let mut w = [0u8; 8];
        w.copy_from_slice(chunk);
        chunk.copy_from_slice(&(u64::from_ne_bytes(w) ^ word).to_ne_bytes());
    }
    // Whole words keep the phase (8 is a multiple of 4), so the tail starts at `rotated[0]`.
    for (i, b) in chunks.into_remainder().iter_mut().enumerate() {
        *b ^= rotated[i & 3];
    }
}

/// Append an unmasked server frame header to `out`.
pub fn push_server_header(out: &mut Vec<u8>, fin: bool, opcode: Opcode, payload_len: u64) {
    let b0 = if fin { 0x80 } else { 0 } | opcode.bits();
    match payload_len {
        0..=125 => out.extend_from_slice(&[b0, payload_len as u8]),
        126..=0xFFFF => {
            let l = (payload_len as u16).to_be_bytes();
            out.extend_from_slice(&[b0, 126, l[0], l[1]]);
        }
        _ => {
            out.extend_from_slice(&[b0, 127]);
            out.extend_from_slice(&payload_len.to_be_bytes());
        }
    }
}

/// Append a server close frame carrying `code` (or no payload for `None`).
pub fn push_close(out: &mut Vec<u8>, code: Option<u16>) {
    match code {
        Some(code) => {
            push_server_header(out, true, Opcode::Close, 2);
            out.extend_from_slice(&code.to_be_bytes());
        }
        None => push_server_header(out, true, Opcode::Close, 0),
    }
}

/// Check an (unmasked) client close payload and return the code to answer with: the
/// client's own, or none for an empty close (RFC 6455 §5.5.1, §7.4).
pub fn close_reply_code(payload: &[u8]) -> Result<Option<u16>, ProtocolError> {
    match payload {
        [] => Ok(None),
        [_] => Err(ProtocolError::CloseTooShort),
        [hi, lo, reason @ ..] => {
            let code = u16::from_be_bytes([*hi, *lo]);
            if !is_valid_close_code(code) {
                return Err(ProtocolError::InvalidCloseCode);
            }
            if std::str::from_utf8(reason).is_err() {
                return Err(ProtocolError::InvalidCloseReason);
            }
            Ok(Some(code))
        }
    }
}

/// Codes a peer may send: the defined ones (1004-1006 and 1015 are reserved, never on the
/// wire), IANA-registered 1012-1014, and the 3000-4999 range for libraries and applications.
fn is_valid_close_code(code: u16) -> bool {
    matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MASK: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

    /// (name, frames as (opcode, fin), first failing frame and why)
    type SeqCase = (
        &'static str,
        &'static [(Opcode, bool)],
        Option<(usize, ProtocolError)>,
    );
    /// (name, close payload, expected reply code)
    type CloseCase = (&'static str, &'static [u8], Result<Option<u16>, ProtocolError>);

    /// A masked client frame header with the given first byte, length and `MASK`.
    fn client_header(b0: u8, len: u64) -> Vec<u8> {
        let mut out = Vec::new();
        push_server_header(&mut out, b0 & 0x80 != 0, Opcode::Binary, len);
        out[0] = b0;
        out[1] |= 0x80;
        out.extend_from_slice(&MASK);
        out
    }

    #[test]
    fn parses_headers_of_every_length_form() {
        let cases: &[(&str, u8, u64, Opcode, bool, usize)] = &[
            ("7-bit empty text", 0x81, 0, Opcode::Text, true, 6),
            ("7-bit 125 binary", 0x82, 125, Opcode::Binary, true, 6),
            ("16-bit 126", 0x82, 126, Opcode::Binary, true, 8),
            ("16-bit 65535 non-fin", 0x02, 65_535, Opcode::Binary, false, 8),
            ("64-bit 65536", 0x82, 65_536, Opcode::Binary, true, 14),
            (
                "64-bit 1 MiB continuation",
                0x80,
                1 << 20,
                Opcode::Continuation,
                true,
                14,
            ),
            ("64-bit max", 0x82, (1 << 63) - 1, Opcode::Binary, true, 14),
            ("ping 125", 0x89, 125, Opcode::Ping, true, 6),
            ("pong 0", 0x8A, 0, Opcode::Pong, true, 6),
            ("close 2", 0x88, 2, Opcode::Close, true, 6),
        ];
        for &(name, b0, len, opcode, fin, header_len) in cases {
            let mut bytes = client_header(b0, len);
            assert_eq!(bytes.len(), header_len, "{name}: test header length");
            bytes.extend_from_slice(b"payload");
            let (h, n) = parse_client_header(&bytes).unwrap().unwrap();
            assert_eq!(n, header_len, "{name}: header length");
            assert_eq!(
                h,
                FrameHeader {
                    fin,
                    opcode,
                    mask: MASK,
                    payload_len: len
                },
                "{name}"
            );
            for cut in 0..header_len {
                assert_eq!(
                    parse_client_header(&bytes[..cut]),
                    Ok(None),
                    "{name}: cut at {cut}"
                );
            }
        }
    }

    #[test]
    fn rejects_protocol_violations() {
        let cases: &[(&str, &[u8], ProtocolError)] = &[
            ("rsv1", &[0xC1, 0x80], ProtocolError::ReservedBits),
            ("rsv2", &[0xA1, 0x80], ProtocolError::ReservedBits),
            ("rsv3", &[0x91, 0x80], ProtocolError::ReservedBits),
            ("opcode 3", &[0x83, 0x80], ProtocolError::UnknownOpcode),
            ("opcode 0xB", &[0x8B, 0x80], ProtocolError::UnknownOpcode),
            ("unmasked text", &[0x81, 0x05], ProtocolError::Unmasked),
            ("unmasked close", &[0x88, 0x00], ProtocolError::Unmasked),
            (
                "ping 126",
                &[0x89, 0xFE, 0x00, 0x7E],
                ProtocolError::ControlTooLong,
            ),
            ("close 64-bit", &[0x88, 0xFF], ProtocolError::ControlTooLong),
            ("fragmented ping", &[0x09, 0x80], ProtocolError::ControlFragmented),
            (
                "fragmented close",
                &[0x08, 0x82],
                ProtocolError::ControlFragmented,
            ),
            (
                "64-bit top bit",
                &[0x82, 0xFF, 0x80, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4],
                ProtocolError::LengthOverflow,
            ),
        ];
        for &(name, bytes, want) in cases {
            assert_eq!(parse_client_header(bytes), Err(want), "{name}");
            assert_eq!(want.close_code(), CLOSE_PROTOCOL_ERROR, "{name}: close code");
        }
    }

    #[test]
    fn masking_is_an_involution_and_chunkable() {
        let payloads: &[(&str, usize)] = &[
            ("empty", 0),
            ("one", 1),
            ("three", 3),
            ("eight", 8),
            ("odd", 37),
            ("large", 4099),
        ];
        for &(name, len) in payloads {
            let plain: Vec<u8> = (0..len).map(|i| (i * 7 + 3) as u8).collect();
            let naive: Vec<u8> = plain.iter().enumerate().map(|(i, b)| b ^ MASK[i % 4]).collect();
            let mut whole = plain.clone();
            apply_mask(&mut whole, MASK, 0);
            assert_eq!(whole, naive, "{name}: whole");
            for split in [1usize, 2, 3, 5, 9, 17] {
                let mut chunked = plain.clone();
                let mut offset = 0;
                for chunk in chunked.chunks_mut(split) {
                    apply_mask(chunk, MASK, offset);
                    offset += chunk.len();
                }
                assert_eq!(chunked, naive, "{name}: chunks of {split}");
            }
            apply_mask(&mut whole, MASK, 0);
            assert_eq!(whole, plain, "{name}: unmask restores");
        }
    }

    #[test]
    fn known_rfc_example_unmasks_to_hello() {
        // RFC 6455 §5.7: a masked "Hello".
        let frame = [0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58];
        let (h, n) = parse_client_header(&frame).unwrap().unwrap();
        assert_eq!((h.opcode, h.fin, h.payload_len, n), (Opcode::Text, true, 5, 6));
        let mut payload = frame[n..].to_vec();
        apply_mask(&mut payload, h.mask, 0);
        assert_eq!(payload, b"Hello");
    }

    #[test]
    fn encodes_server_headers() {
        let cases: &[(&str, bool, Opcode, u64, &[u8])] = &[
            ("text 5", true, Opcode::Text, 5, &[0x81, 0x05]),
            ("binary 125", true, Opcode::Binary, 125, &[0x82, 125]),
            ("binary 126", true, Opcode::Binary, 126, &[0x82, 126, 0x00, 0x7E]),
            (
                "non-fin 65535",
                false,
                Opcode::Text,
                65_535,
                &[0x01, 126, 0xFF, 0xFF],
            ),
            (
                "cont 65536",
                true,
                Opcode::Continuation,
                65_536,
                &[0x80, 127, 0, 0, 0, 0, 0, 1, 0, 0],
            ),
            ("pong 0", true, Opcode::Pong, 0, &[0x8A, 0x00]),
        ];
        for &(name, fin, opcode, len, want) in cases {
            let mut out = Vec::new();
            push_server_header(&mut out, fin, opcode, len);
            assert_eq!(out, want, "{name}");
            assert!(out.len() <= MAX_SERVER_HEADER_LEN, "{name}: fits");
        }
    }

    #[test]
    fn enforces_message_sequence() {
        use Opcode::*;
        let cases: &[SeqCase] = &[
            ("single text", &[(Text, true)], None),
            (
                "fragmented",
                &[(Text, false), (Continuation, false), (Continuation, true)],
                None,
            ),
            (
                "control between fragments",
                &[(Binary, false), (Ping, true), (Continuation, true)],
                None,
            ),
            (
                "lone continuation",
                &[(Continuation, true)],
                Some((0, ProtocolError::UnexpectedContinuation)),
            ),
            (
                "text inside message",
                &[(Text, false), (Text, true)],
                Some((1, ProtocolError::ExpectedContinuation)),
            ),
            (
                "continuation after end",
                &[(Binary, false), (Continuation, true), (Continuation, true)],
                Some((2, ProtocolError::UnexpectedContinuation)),
            ),
        ];
        for &(name, frames, want) in cases {
            let mut in_message = false;
            let got = frames
                .iter()
                .enumerate()
                .find_map(|(i, &(op, fin))| check_sequence(&mut in_message, op, fin).err().map(|e| (i, e)));
            assert_eq!(got, want, "{name}");
        }
    }

    #[test]
    fn checks_close_payloads() {
        let cases: &[CloseCase] = &[
            ("empty", b"", Ok(None)),
            ("normal", &[0x03, 0xE8], Ok(Some(1000))),
            ("normal with reason", b"\x03\xE8bye", Ok(Some(1000))),
            ("application 4999", &[0x13, 0x87], Ok(Some(4999))),
            ("one byte", &[0x03], Err(ProtocolError::CloseTooShort)),
            (
                "reserved 1005",
                &[0x03, 0xED],
                Err(ProtocolError::InvalidCloseCode),
            ),
            ("below 1000", &[0x03, 0xE7], Err(ProtocolError::InvalidCloseCode)),
            ("5000", &[0x13, 0x88], Err(ProtocolError::InvalidCloseCode)),
            (
                "bad utf-8 reason",
                b"\x03\xE8\xFF\xFE",
                Err(ProtocolError::InvalidCloseReason),
            ),
        ];
        for &(name, payload, want) in cases {
            assert_eq!(close_reply_code(payload), want, "{name}");
        }
        assert_eq!(
            ProtocolError::InvalidCloseReason.close_code(),
            CLOSE_INVALID_PAYLOAD
        );
    }

    #[test]
    fn encodes_close_frames() {
        let mut out = Vec::new();
        push_close(&mut out, Some(1002));
        push_close(&mut out, None);
        assert_eq!(out, [0x88, 0x02, 0x03, 0xEA, 0x88, 0x00]);
    }
}
