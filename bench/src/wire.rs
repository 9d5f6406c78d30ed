//! The WebSocket client side of the wire (RFC 6455), just what the load generator needs:
//! the upgrade request head, the 101 check, pre-built masked client frames and a streaming
//! decoder for server frames that never holds a payload (it hands out slices of the read
//! buffer). Pure: bytes in, bytes out; never panics on input.

use base64::Engine;
use sha1::{Digest, Sha1};

/// RFC 6455 §1.3.
const WS_GUID: &[u8] = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
/// One `Sec-WebSocket-Key` for every connection (the RFC's sample nonce): servers cannot
/// tell, and the expected accept value is computed once.
pub const CLIENT_KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";

pub const OP_CONT: u8 = 0x0;
pub const OP_BINARY: u8 = 0x2;
pub const OP_CLOSE: u8 = 0x8;
pub const OP_PING: u8 = 0x9;
pub const OP_PONG: u8 = 0xA;

/// `Sec-WebSocket-Accept` for `key`.
pub fn accept_for(key: &str) -> String {
    let mut sha = Sha1::new();
    sha.update(key.as_bytes());
    sha.update(WS_GUID);
    base64::engine::general_purpose::STANDARD.encode(sha.finalize())
}

/// The upgrade request head for `path` with `Host: host` and extra header lines.
pub fn request_head(host: &str, path: &str, extra: &[(String, String)]) -> Vec<u8> {
    let mut h = format!(
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: {CLIENT_KEY}\r\nSec-WebSocket-Version: 13\r\n"
    );
    for (k, v) in extra {
        h.push_str(k);
        h.push_str(": ");
        h.push_str(v);
        h.push_str("\r\n");
    }
    h.push_str("\r\n");
    h.into_bytes()
}

/// What a (possibly partial) response head says.
#[derive(Debug, PartialEq, Eq)]
pub enum HeadCheck {
    Partial,
    /// 101 with the right accept value; frames start at `head_len`.
    Switched {
        head_len: usize,
    },
    /// Any other status (401 from a secured route, 502 ...).
    Refused {
        status: u16,
    },
    Bad(&'static str),
}

/// Check the server's answer to [`request_head`].
pub fn check_response(buf: &[u8], expected_accept: &str) -> HeadCheck {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut resp = httparse::Response::new(&mut headers);
    let head_len = match resp.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) if buf.len() < 16 * 1024 => return HeadCheck::Partial,
        Ok(httparse::Status::Partial) => return HeadCheck::Bad("response head too large"),
        Err(_) => return HeadCheck::Bad("malformed response head"),
    };
    let status = resp.code.unwrap_or(0);
    if status != 101 {
        return HeadCheck::Refused { status };
    }
    let accept = resp
        .headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case("sec-websocket-accept"))
        .map(|h| h.value.trim_ascii());
    if accept != Some(expected_accept.as_bytes()) {
        return HeadCheck::Bad("wrong Sec-WebSocket-Accept");
    }
    HeadCheck::Switched { head_len }
}

/// The payload pattern every message carries: byte `i` is a function of `i`, so an echo can
/// be checked while it streams in, at any offset.
pub fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| ((i * 7 + 13) % 251) as u8).collect()
}

/// A complete masked client frame (FIN set) with `payload`.
pub fn client_frame(opcode: u8, payload: &[u8], mask: [u8; 4]) -> Vec<u8> {
    let len = payload.len();
    let mut f = Vec::with_capacity(len + 14);
    f.push(0x80 | opcode);
    if len < 126 {
        f.push(0x80 | len as u8);
    } else if len <= usize::from(u16::MAX) {
        f.push(0x80 | 126);
        f.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        f.push(0x80 | 127);
        f.extend_from_slice(&(len as u64).to_be_bytes());
    }
    f.extend_from_slice(&mask);
    f.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    f
}

/// A masked close frame with status 1000.
pub fn close_frame(mask: [u8; 4]) -> Vec<u8> {
    client_frame(OP_CLOSE, &1000u16.to_be_bytes(), mask)
}

/// A piece of the server's frame stream.
#[derive(Debug, PartialEq, Eq)]
pub enum Piece<'a> {
    /// Payload bytes of the current message (`at` = offset in the message).
    Data { opcode: u8, at: u64, bytes: &'a [u8] },
    /// A message (or control frame) ended; `len` = its payload length.
    End { opcode: u8, len: u64 },
}

/// A server sent something no server may send.
#[derive(Debug, PartialEq, Eq)]
pub struct WireError(pub &'static str);

/// Streaming decoder for unmasked server frames.
#[derive(Debug, Default)]
pub struct Decoder {
    hdr: [u8; 10],
    hdr_have: usize,
    /// Payload bytes left in the current frame; `None` while reading a header.
    left: Option<u64>,
    frame_op: u8,
    frame_fin: bool,
    /// Opcode of the data message in progress (continuations inherit it), 0 = none.
    msg_op: u8,
    msg_len: u64,
    ctl_len: u64,
}

impl Decoder {
    /// Feed bytes; `sink` sees every piece in order.
    pub fn feed(&mut self, mut buf: &[u8], sink: &mut impl FnMut(Piece<'_>)) -> Result<(), WireError> {
        loop {
            match self.left {
                None => {
                    if buf.is_empty() {
                        return Ok(());
                    }
                    let need = self.header_len();
                    let take = (need - self.hdr_have).min(buf.len());
                    self.hdr[self.hdr_have..self.hdr_have + take].copy_from_slice(&buf[..take]);
                    self.hdr_have += take;
                    buf = &buf[take..];
                    // The first two bytes may reveal that the header is longer.
                    if self.hdr_have < self.header_len() {
                        continue;
                    }
                    self.start_frame(sink)?;
                }
                Some(left) => {
                    let take = (left.min(buf.len() as u64)) as usize;
                    if take == 0 && left > 0 {
                        return Ok(());
                    }
                    let (opcode, at) = if self.frame_op >= 8 {
                        (self.frame_op, self.ctl_len)
                    } else {
                        (self.msg_op, self.msg_len)
                    };
                    if take > 0 {
                        sink(Piece::Data {
                            opcode,
                            at,
                            bytes: &buf[..take],
                        });
                    }
                    if self.frame_op >= 8 {
                        self.ctl_len += take as u64;
                    } else {
                        self.msg_len += take as u64;
                    }
                    buf = &buf[take..];
                    let left = left - take as u64;
                    self.left = Some(left);
                    if left == 0 {
                        self.end_frame(sink);
                    }
                }
            }
        }
    }

    fn header_len(&self) -> usize {
        if self.hdr_have < 2 {
            return 2;
        }
        match self.hdr[1] & 0x7f {
            126 => 4,
            127 => 10,
            _ => 2,
        }
    }

    fn start_frame(&mut self, sink: &mut impl FnMut(Piece<'_>)) -> Result<(), WireError> {
        let (b0, b1) = (self.hdr[0], self.hdr[1]);
        if b1 & 0x80 != 0 {
            return Err(WireError("masked server frame"));
        }
        if b0 & 0x70 != 0 {
            return Err(WireError("reserved bits set"));
        }
        let len = match b1 & 0x7f {
            126 => u64::from(u16::from_be_bytes([self.hdr[2], self.hdr[3]])),
            127 => {
                let mut b = [0u8; 8];
                b.copy_from_slice(&self.hdr[2..10]);
                u64::from_be_bytes(b)
            }
            n => u64::from(n),
        };
        let op = b0 & 0x0f;
        let fin = b0 & 0x80 != 0;
        match op {
            OP_CONT if self.msg_op == 0 => return Err(WireError("continuation without a message")),
            OP_CONT => {}
            1 | OP_BINARY if self.msg_op != 0 => {
                return Err(WireError("new message inside a fragmented one"))
            }
            1 | OP_BINARY => {
                self.msg_op = op;
                self.msg_len = 0;
            }
            OP_CLOSE | OP_PING | OP_PONG if !fin || len > 125 => return Err(WireError("bad control frame")),
            OP_CLOSE | OP_PING | OP_PONG => self.ctl_len = 0,
            _ => return Err(WireError("unknown opcode")),
        }
        self.frame_op = op;
        self.frame_fin = fin;
        self.hdr_have = 0;
        self.left = Some(len);
        if len == 0 {
            self.end_frame(sink);
        }
        Ok(())
    }

    fn end_frame(&mut self, sink: &mut impl FnMut(Piece<'_>)) {
        self.left = None;
        if self.frame_op >= 8 {
            sink(Piece::End {
                opcode: self.frame_op,
                len: self.ctl_len,
            });
        } else if self.frame_fin {
            sink(Piece::End {
                opcode: self.msg_op,
                len: self.msg_len,
            });
            self.msg_op = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server_frame(b0: u8, payload: &[u8]) -> Vec<u8> {
        let mut f = vec![b0];
        let len = payload.len();
        if len < 126 {
            f.push(len as u8);
        } else if len <= 65535 {
            f.push(126);
            f.extend_from_slice(&(len as u16).to_be_bytes());
        } else {
            f.push(127);
            f.extend_from_slice(&(len as u64).to_be_bytes());
        }
        f.extend_from_slice(payload);
        f
    }

    /// Feed `stream` in chunks of `chunk` bytes; collect (data bytes, ends).
    /// Payload bytes of data messages, and (opcode, length) of every end.
    type Decoded = (Vec<u8>, Vec<(u8, u64)>);

    fn decode(stream: &[u8], chunk: usize) -> Result<Decoded, WireError> {
        let mut d = Decoder::default();
        let (mut data, mut ends) = (Vec::new(), Vec::new());
        for c in stream.chunks(chunk) {
            d.feed(c, &mut |p| match p {
                Piece::Data { opcode, at, bytes } => {
                    if opcode < 8 {
                        assert_eq!(at as usize, data.len(), "offset");
                        data.extend_from_slice(bytes);
                    }
                }
                Piece::End { opcode, len } => ends.push((opcode, len)),
            })?;
        }
        Ok((data, ends))
    }

    #[test]
    fn decoder_cases() {
        let big = pattern(70_000);
        let mid = pattern(300);
        let mut fragmented = server_frame(0x02, &mid[..100]);
        fragmented.extend(server_frame(0x89, b"hi")); // ping between fragments
        fragmented.extend(server_frame(0x80, &mid[100..]));
        struct Case {
            name: &'static str,
            stream: Vec<u8>,
            data: Vec<u8>,
            ends: Vec<(u8, u64)>,
        }
        let cases = vec![
            Case {
                name: "small",
                stream: server_frame(0x82, b"abc"),
                data: b"abc".to_vec(),
                ends: vec![(2, 3)],
            },
            Case {
                name: "16-bit length",
                stream: server_frame(0x82, &mid),
                data: mid.clone(),
                ends: vec![(2, 300)],
            },
            Case {
                name: "64-bit length",
                stream: server_frame(0x82, &big),
                data: big.clone(),
                ends: vec![(2, 70_000)],
            },
            Case {
                name: "empty",
                stream: server_frame(0x82, b""),
                data: vec![],
                ends: vec![(2, 0)],
            },
            Case {
                name: "fragmented with ping",
                stream: fragmented,
                data: mid.clone(),
                ends: vec![(OP_PING, 2), (2, 300)],
            },
            Case {
                name: "close",
                stream: server_frame(0x88, &1000u16.to_be_bytes()),
                data: vec![],
                ends: vec![(OP_CLOSE, 2)],
            },
        ];
        for c in cases {
            for chunk in [1, 3, 7, 4096, usize::MAX] {
                let (data, ends) = decode(&c.stream, chunk.min(c.stream.len().max(1))).unwrap();
                assert_eq!(data, c.data, "{}: data (chunk {chunk})", c.name);
                assert_eq!(ends, c.ends, "{}: ends (chunk {chunk})", c.name);
            }
        }
    }

    #[test]
    fn decoder_rejects() {
        let cases: &[(&str, Vec<u8>)] = &[
            ("masked", vec![0x82, 0x81, 1, 2, 3, 4, 5]),
            ("reserved bits", vec![0xC2, 0x00]),
            ("bare continuation", vec![0x80, 0x00]),
            ("unknown opcode", vec![0x83, 0x00]),
            ("fragmented close", vec![0x08, 0x00]),
            ("long ping", {
                let mut v = vec![0x89, 126, 0, 200];
                v.resize(204, 0);
                v
            }),
        ];
        for (name, stream) in cases {
            assert!(decode(stream, 1).is_err(), "{name}: accepted");
        }
    }

    #[test]
    fn client_frames_unmask_to_payload() {
        for len in [0usize, 5, 125, 126, 65535, 65536, 100_000] {
            let p = pattern(len);
            let mask = [9, 8, 7, 6];
            let f = client_frame(OP_BINARY, &p, mask);
            let (hdr, plen) = match f[1] & 0x7f {
                126 => (4, u16::from_be_bytes([f[2], f[3]]) as usize),
                127 => (10, u64::from_be_bytes(f[2..10].try_into().unwrap()) as usize),
                n => (2, n as usize),
            };
            assert_eq!(plen, len, "len {len}");
            assert_eq!(f[0], 0x82);
            let m = &f[hdr..hdr + 4];
            let un: Vec<u8> = f[hdr + 4..]
                .iter()
                .enumerate()
                .map(|(i, b)| b ^ m[i % 4])
                .collect();
            assert_eq!(un, p, "len {len}");
        }
    }

    #[test]
    fn response_checks() {
        let ok_accept = accept_for(CLIENT_KEY);
        assert_eq!(ok_accept, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
        let ok = format!("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nSec-WebSocket-Accept: {ok_accept}\r\n\r\nXY");
        let cases: &[(&str, &str, HeadCheck)] = &[
            (
                "switched",
                &ok,
                HeadCheck::Switched {
                    head_len: ok.len() - 2,
                },
            ),
            ("partial", "HTTP/1.1 101 Switching", HeadCheck::Partial),
            (
                "refused",
                "HTTP/1.1 401 Unauthorized\r\n\r\n",
                HeadCheck::Refused { status: 401 },
            ),
            (
                "wrong accept",
                "HTTP/1.1 101 OK\r\nSec-WebSocket-Accept: x\r\n\r\n",
                HeadCheck::Bad("wrong Sec-WebSocket-Accept"),
            ),
            (
                "garbage",
                "\x01\x02 nope\r\n\r\n",
                HeadCheck::Bad("malformed response head"),
            ),
        ];
        for (name, resp, want) in cases {
            assert_eq!(&check_response(resp.as_bytes(), &ok_accept), want, "{name}");
        }
    }

    #[test]
    fn request_head_has_extras() {
        let h = request_head("h:1", "/p", &[("Authorization".into(), "Bearer t".into())]);
        let s = String::from_utf8(h).unwrap();
        assert!(s.starts_with("GET /p HTTP/1.1\r\nHost: h:1\r\n"));
        assert!(s.contains("\r\nAuthorization: Bearer t\r\n"));
        assert!(s.ends_with("\r\n\r\n"));
    }
}
