//! Byte-level WebSocket and HTTP/1.1 tools shared by the test clients and the scripted nodes:
//! head reading (until `\r\n\r\n`, keeping the bytes after it), the RFC 6455 accept key,
//! a frame encoder/decoder (masked client frames, plain server frames) and bounded reads.
//! Every read here is bounded by the socket's read timeout; nothing waits forever.

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicU32, Ordering};

use base64::Engine;
use sha1::{Digest, Sha1};

/// RFC 6455 §1.3 magic string appended to the client key.
pub const WS_GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
/// The key of RFC 6455 §1.3's example and its accept value, for requests written by hand.
pub const SAMPLE_KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";
pub const SAMPLE_ACCEPT: &str = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";
/// Largest head any test peer accepts before giving up (well above the gateway's limits).
pub const HEAD_LIMIT: usize = 64 * 1024;

pub const OP_CONT: u8 = 0x0;
pub const OP_TEXT: u8 = 0x1;
pub const OP_BINARY: u8 = 0x2;
pub const OP_CLOSE: u8 = 0x8;
pub const OP_PING: u8 = 0x9;
pub const OP_PONG: u8 = 0xA;

/// `Sec-WebSocket-Accept` for a `Sec-WebSocket-Key`.
pub fn accept_key(key: &str) -> String {
    let mut sha = Sha1::new();
    sha.update(key.trim().as_bytes());
    sha.update(WS_GUID.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(sha.finalize())
}

/// Index just past the first `\r\n\r\n`, if the buffer holds a whole head.
pub fn find_head_end(buf: &[u8]) -> Option<usize> {
    buf.windows(4).position(|w| w == b"\r\n\r\n").map(|i| i + 4)
}

/// Reads until a whole head arrived; returns (head including the blank line, bytes after it).
/// EOF, a timeout or more than [`HEAD_LIMIT`] bytes without a head end is an error.
pub fn read_head(stream: &mut impl Read) -> Result<(Vec<u8>, Vec<u8>), String> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(end) = find_head_end(&buf) {
            let rest = buf.split_off(end);
            return Ok((buf, rest));
        }
        if buf.len() > HEAD_LIMIT {
            return Err(format!("no head end within {HEAD_LIMIT} bytes"));
        }
        match stream.read(&mut chunk) {
            Ok(0) => {
                return Err(format!(
                    "EOF before the end of the head; got {:?}",
                    String::from_utf8_lossy(&buf)
                ))
            }
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => {
                return Err(format!(
                    "reading head: {e}; got so far {:?}",
                    String::from_utf8_lossy(&buf)
                ))
            }
        }
    }
}

/// Reads until EOF (bounded by the socket read timeout). A reset after some bytes counts as
/// EOF only when `reset_is_eof`; a timeout is always an error.
pub fn read_to_eof(stream: &mut impl Read, reset_is_eof: bool) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    loop {
        match stream.read(&mut chunk) {
            Ok(0) => return Ok(out),
            Ok(n) => out.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if reset_is_eof && is_reset(&e) => return Ok(out),
            Err(e) => {
                return Err(format!(
                    "reading to EOF: {e} after {} bytes ({:?})",
                    out.len(),
                    String::from_utf8_lossy(&out[..out.len().min(200)])
                ))
            }
        }
    }
}

/// Connection ended abruptly rather than timing out.
pub fn is_reset(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::BrokenPipe
            | io::ErrorKind::UnexpectedEof
    )
}

/// Reads until `pending` holds at least `n` bytes, then removes and returns the first `n`.
pub fn read_exact_buffered(
    stream: &mut impl Read,
    pending: &mut Vec<u8>,
    n: usize,
) -> Result<Vec<u8>, String> {
    let mut chunk = [0u8; 16 * 1024];
    while pending.len() < n {
        match stream.read(&mut chunk) {
            Ok(0) => {
                return Err(format!(
                    "EOF after {} of {n} expected bytes ({:?})",
                    pending.len(),
                    String::from_utf8_lossy(&pending[..pending.len().min(200)])
                ))
            }
            Ok(k) => pending.extend_from_slice(&chunk[..k]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(format!("after {} of {n} bytes: {e}", pending.len())),
        }
    }
    let rest = pending.split_off(n);
    Ok(std::mem::replace(pending, rest))
}

/// One decoded frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    pub fin: bool,
    pub opcode: u8,
    pub masked: bool,
    /// Unmasked payload.
    pub payload: Vec<u8>,
}

/// Encodes one final frame; `mask` set = client frame (RFC 6455 §5.3).
pub fn encode_frame(opcode: u8, payload: &[u8], mask: Option<[u8; 4]>) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len() + 14);
    out.push(0x80 | (opcode & 0x0F));
    let mask_bit = if mask.is_some() { 0x80 } else { 0 };
    let len = payload.len();
    if len < 126 {
        out.push(mask_bit | len as u8);
    } else if len <= u16::MAX as usize {
        out.push(mask_bit | 126);
        out.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        out.push(mask_bit | 127);
        out.extend_from_slice(&(len as u64).to_be_bytes());
    }
    match mask {
        Some(m) => {
            out.extend_from_slice(&m);
            out.extend(payload.iter().enumerate().map(|(i, b)| b ^ m[i % 4]));
        }
        None => out.extend_from_slice(payload),
    }
    out
}

/// A masked client frame with a fresh, never-zero mask.
pub fn client_frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
    static NEXT: AtomicU32 = AtomicU32::new(0x3b1f_09a5);
    let m = NEXT.fetch_add(0x9E37_79B9, Ordering::Relaxed).to_be_bytes();
    encode_frame(opcode, payload, Some(m))
}

/// An unmasked server frame.
pub fn server_frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
    encode_frame(opcode, payload, None)
}

/// Decodes the first frame of `buf`; `None` while incomplete. Returns the bytes consumed.
pub fn decode_frame(buf: &[u8]) -> Option<(Frame, usize)> {
    if buf.len() < 2 {
        return None;
    }
    let fin = buf[0] & 0x80 != 0;
    let opcode = buf[0] & 0x0F;
    let masked = buf[1] & 0x80 != 0;
    let (len, mut at) = match buf[1] & 0x7F {
        126 => (u16::from_be_bytes(buf.get(2..4)?.try_into().ok()?) as usize, 4),
        127 => (u64::from_be_bytes(buf.get(2..10)?.try_into().ok()?) as usize, 10),
        n => (n as usize, 2),
    };
    let mask = if masked {
        let m: [u8; 4] = buf.get(at..at + 4)?.try_into().ok()?;
        at += 4;
        Some(m)
    } else {
        None
    };
    let data = buf.get(at..at.checked_add(len)?)?;
    let payload = match mask {
        Some(m) => data.iter().enumerate().map(|(i, b)| b ^ m[i % 4]).collect(),
        None => data.to_vec(),
    };
    Some((
        Frame {
            fin,
            opcode,
            masked,
            payload,
        },
        at + len,
    ))
}

/// Reads one frame, keeping any bytes after it in `pending`.
pub fn read_frame(stream: &mut impl Read, pending: &mut Vec<u8>) -> Result<Frame, String> {
    let mut chunk = [0u8; 16 * 1024];
    loop {
        if let Some((frame, used)) = decode_frame(pending) {
            pending.drain(..used);
            return Ok(frame);
        }
        match stream.read(&mut chunk) {
            Ok(0) => {
                return Err(format!(
                    "EOF inside a frame ({} bytes pending: {:?})",
                    pending.len(),
                    &pending[..pending.len().min(32)]
                ))
            }
            Ok(n) => pending.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(format!("reading a frame: {e}")),
        }
    }
}

/// Writes all bytes in one `write_all` (one segment for small buffers on loopback).
pub fn write_all(stream: &mut TcpStream, bytes: &[u8]) -> Result<(), String> {
    stream
        .write_all(bytes)
        .and_then(|_| stream.flush())
        .map_err(|e| format!("writing {} bytes: {e}", bytes.len()))
}
