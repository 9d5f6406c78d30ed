//! The access log (DESIGN §10): one JSON line per connection on stdout, written by `finish`.
//! Each worker formats into its own reusable buffer and hands the line to the kernel with one
//! `write(2)` — no shared lock, no shared buffer; lines are kept below `PIPE_BUF` (4096) so a
//! pipe never interleaves two of them. The write never blocks: when the reader falls behind,
//! lines are dropped and counted (`capi_ws_access_log_dropped_total`), the connections go on.
//! The `access_token` value never reaches the line.

use std::io::Write;
use std::net::IpAddr;
use std::os::fd::RawFd;
use std::sync::OnceLock;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::config::ops::TrustedProxy;
use crate::data::relay::{retry_eintr, send};
use crate::data::upstream::is_access_token_key;

/// Longest path kept in a line (the rest is cut, marked with `...`): keeps the line < PIPE_BUF.
pub const MAX_LOGGED_PATH: usize = 2048;
/// What replaces an `access_token` value.
pub const REDACTED: &str = "REDACTED";

/// One line's fields.
pub struct AccessRecord<'a> {
    pub time: SystemTime,
    pub remote: IpAddr,
    pub method: &'static str,
    pub path: &'a str,
    pub status: u16,
    pub service: &'a str,
    pub node: &'a str,
    pub duration_ms: u64,
    pub bytes_up: u64,
    pub bytes_down: u64,
    /// Static reason label: why it was refused or how the relay ended (never request data).
    pub reason: &'a str,
}

/// Methods by static label (anything else is `OTHER`): the log never copies a method.
pub fn method_label(method: &str) -> &'static str {
    const KNOWN: [&str; 9] = [
        "GET", "OPTIONS", "HEAD", "POST", "PUT", "DELETE", "PATCH", "CONNECT", "TRACE",
    ];
    KNOWN.iter().find(|m| **m == method).copied().unwrap_or("OTHER")
}

/// The request target with every `access_token` query value replaced by [`REDACTED`], cut at
/// [`MAX_LOGGED_PATH`] bytes. The parameter name is matched as the forwarder does (exact name,
/// also percent-encoded letters are not decoded: such a parameter is not a token source).
pub fn redact_target(target: &str) -> String {
    let mut out = String::with_capacity(target.len().min(MAX_LOGGED_PATH) + 8);
    match target.split_once('?') {
        None => out.push_str(target),
        Some((path, query)) => {
            out.push_str(path);
            out.push('?');
            for (i, pair) in query.split('&').enumerate() {
                if i > 0 {
                    out.push('&');
                }
                match pair.split_once('=') {
                    // Same rule as the forwarder: the percent-decoded name (`access%5Ftoken` too).
                    Some((name, _)) if is_access_token_key(name.as_bytes()) => {
                        out.push_str(name);
                        out.push('=');
                        out.push_str(REDACTED);
                    }
                    _ => out.push_str(pair),
                }
            }
        }
    }
    if out.len() > MAX_LOGGED_PATH {
        let mut cut = MAX_LOGGED_PATH;
        while !out.is_char_boundary(cut) {
            cut -= 1;
        }
        out.truncate(cut);
        out.push_str("...");
    }
    out
}

/// The address to log: the first `X-Forwarded-For` entry when the peer is a trusted proxy and
/// that entry is an IP address; else the peer.
pub fn client_address(peer: IpAddr, xff: Option<&[u8]>, trusted: &[TrustedProxy]) -> IpAddr {
    if !trusted.iter().any(|p| p.contains(peer)) {
        return peer;
    }
    let Some(value) = xff else { return peer };
    let first = value.split(|b| *b == b',').next().unwrap_or_default();
    std::str::from_utf8(first)
        .ok()
        .and_then(|s| {
            s.trim()
                .trim_start_matches('[')
                .trim_end_matches(']')
                .parse()
                .ok()
        })
        .unwrap_or(peer)
}

/// Serialise one line (with its newline) into `out`, which is cleared first.
pub fn format_line(rec: &AccessRecord<'_>, out: &mut Vec<u8>) {
    out.clear();
    out.extend_from_slice(b"{\"time\":\"");
    write_rfc3339(rec.time, out);
    // Writing into a Vec cannot fail.
    let _ = write!(
        out,
        "\",\"remote\":\"{}\",\"method\":\"{}\",\"path\":",
        rec.remote, rec.method
    );
    write_json_str(rec.path, out);
    let _ = write!(out, ",\"status\":{},\"service\":", rec.status);
    write_json_str(rec.service, out);
    out.extend_from_slice(b",\"node\":");
    write_json_str(rec.node, out);
    let _ = write!(
        out,
        ",\"duration_ms\":{},\"bytes_up\":{},\"bytes_down\":{},\"reason\":",
        rec.duration_ms, rec.bytes_up, rec.bytes_down
    );
    write_json_str(rec.reason, out);
    out.extend_from_slice(b"}\n");
}

/// Where access lines go: stdout, through a descriptor on which a write never blocks, so a
/// slow or stalled log reader (a full pipe, a paused terminal, a busy journal socket) costs lines,
/// never the worker and the connections it serves.
struct Sink {
    fd: RawFd,
    /// A socket: `send(MSG_DONTWAIT)` (no reopen needed, and `/proc/self/fd` cannot reopen one).
    socket: bool,
}

/// How long a line already partly written may wait for the rest (sockets and terminals can take
/// part of a line; a pipe takes a line below `PIPE_BUF` whole or not at all). Bounded so a
/// stalled reader never holds the worker longer than this, once per such line.
const PARTIAL_LINE_WAIT_MS: i32 = 1000;

static SINK: OnceLock<Sink> = OnceLock::new();

fn sink() -> &'static Sink {
    SINK.get_or_init(|| open_sink(libc::STDOUT_FILENO))
}

/// A pipe or character device (terminal) is reopened through `/proc/self/fd` as a file
/// description of our own with `O_NONBLOCK`, leaving the flags of the shared one (a shell's
/// terminal, a supervisor's pipe) untouched. Regular files do not block and are used as they are.
fn open_sink(fd: RawFd) -> Sink {
    // SAFETY: fstat writes into `st`, a plain C struct we own.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: fd is a descriptor number; fstat only reads it.
    if unsafe { libc::fstat(fd, &mut st) } != 0 {
        return Sink { fd, socket: false };
    }
    match st.st_mode & libc::S_IFMT {
        libc::S_IFSOCK => Sink { fd, socket: true },
        libc::S_IFIFO | libc::S_IFCHR => {
            let path = format!("/proc/self/fd/{fd}\0");
            // SAFETY: `path` is NUL-terminated; open returns a new descriptor or -1.
            let own = unsafe {
                libc::open(
                    path.as_ptr().cast(),
                    libc::O_WRONLY | libc::O_NONBLOCK | libc::O_CLOEXEC,
                )
            };
            if own >= 0 {
                Sink {
                    fd: own,
                    socket: false,
                }
            } else {
                tracing::warn!(
                    error = %std::io::Error::last_os_error(),
                    "access log: stdout cannot be reopened non-blocking; a stalled reader will stall workers"
                );
                Sink { fd, socket: false }
            }
        }
        _ => Sink { fd, socket: false },
    }
}

/// Hand one line to stdout without blocking. Returns false when the line was dropped because
/// the reader is not keeping up (or stdout is gone); the caller counts it. A line the kernel
/// took in part is finished within [`PARTIAL_LINE_WAIT_MS`] so lines stay whole.
pub fn write_stdout(line: &[u8]) -> bool {
    write_line(sink(), line)
}

fn write_line(sink: &Sink, line: &[u8]) -> bool {
    let mut rest = line;
    while !rest.is_empty() {
        let written = if sink.socket {
            send(sink.fd, rest)
        } else {
            // SAFETY: the sink's descriptor stays open for the process; `rest` is readable.
            retry_eintr(|| unsafe { libc::write(sink.fd, rest.as_ptr().cast(), rest.len()) })
        };
        match written {
            Ok(0) => return false,
            Ok(n) => rest = &rest[n..],
            Err(err) if err.kind() == std::io::ErrorKind::WouldBlock && rest.len() < line.len() => {
                let mut pfd = libc::pollfd {
                    fd: sink.fd,
                    events: libc::POLLOUT,
                    revents: 0,
                };
                // SAFETY: one valid pollfd.
                if unsafe { libc::poll(&mut pfd, 1, PARTIAL_LINE_WAIT_MS) } <= 0 {
                    return false;
                }
            }
            Err(_) => return false,
        }
    }
    true
}

fn write_json_str(s: &str, out: &mut Vec<u8>) {
    out.push(b'"');
    for c in s.chars() {
        match c {
            '"' => out.extend_from_slice(b"\\\""),
            '\\' => out.extend_from_slice(b"\\\\"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => {
                let mut buf = [0u8; 4];
                out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
            }
        }
    }
    out.push(b'"');
}

/// `2024-05-01T12:00:00.123Z` (UTC, milliseconds).
fn write_rfc3339(t: SystemTime, out: &mut Vec<u8>) {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, day) = civil_from_days(days as i64);
    let _ = write!(
        out,
        "{y:04}-{m:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        d.subsec_millis()
    );
}

/// Days since 1970-01-01 -> (year, month, day), proleptic Gregorian (H. Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// Writes `line` until the sink refuses one (bounded); returns how many it took.
    fn fill(sink: &Sink, line: &[u8]) -> usize {
        for taken in 0..100_000 {
            if !write_line(sink, line) {
                return taken;
            }
        }
        panic!("the sink took 100,000 lines without ever refusing one");
    }

    fn flags(fd: RawFd) -> libc::c_int {
        // SAFETY: F_GETFL only reads the descriptor's status flags.
        unsafe { libc::fcntl(fd, libc::F_GETFL) }
    }

    #[test]
    fn a_full_pipe_drops_whole_lines_and_leaves_the_shared_description_blocking() {
        // 1. stdout stand-in: a pipe whose write end is blocking (as a supervisor hands it over).
        // 2. The sink reopens it non-blocking: the original's flags do not change.
        // 3. Lines go in whole until the pipe is full, then are refused without blocking;
        //    the read end holds exactly the lines taken, each complete.
        let mut fds = [0; 2];
        // SAFETY: pipe2 fills two descriptors.
        assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
        let (rd, wr) = (fds[0], fds[1]);
        let before = flags(wr);
        let sink = open_sink(wr);
        assert_ne!(sink.fd, wr, "a pipe is reopened");
        assert!(!sink.socket);
        assert_eq!(flags(wr), before, "the shared description's flags changed");
        assert_eq!(flags(wr) & libc::O_NONBLOCK, 0);
        let line = [b"{\"x\":\"".as_slice(), &[b'y'; 1000], b"\"}\n"].concat();
        let taken = fill(&sink, &line);
        assert!(taken > 0);
        // SAFETY: the write ends are ours; closing them lets the reader see EOF.
        unsafe {
            libc::close(sink.fd);
            libc::close(wr);
        }
        // SAFETY: rd is the read end we own; File takes it over.
        let mut reader = unsafe { <std::fs::File as std::os::fd::FromRawFd>::from_raw_fd(rd) };
        let mut got = Vec::new();
        std::io::Read::read_to_end(&mut reader, &mut got).unwrap();
        assert_eq!(got.len(), taken * line.len());
        assert!(got.chunks(line.len()).all(|c| c == line.as_slice()));
    }

    #[test]
    fn a_line_taken_in_part_is_finished_whole() {
        // 1. A socket with a small send buffer and a reader draining it on another thread.
        // 2. One 256 KiB line: the kernel takes it in parts and says EAGAIN in between; the
        //    sink waits for writability instead of dropping the rest.
        // 3. The reader gets the line byte for byte; the write reports success.
        let mut fds = [0; 2];
        // SAFETY: socketpair fills two descriptors.
        let rc = unsafe {
            libc::socketpair(
                libc::AF_UNIX,
                libc::SOCK_STREAM | libc::SOCK_CLOEXEC,
                0,
                fds.as_mut_ptr(),
            )
        };
        assert_eq!(rc, 0);
        // SAFETY: fds[0] is ours; File takes it over and closes it.
        let mut reader = unsafe { <std::fs::File as std::os::fd::FromRawFd>::from_raw_fd(fds[0]) };
        let small: libc::c_int = 4096;
        // SAFETY: SO_SNDBUF takes a c_int.
        let rc = unsafe {
            libc::setsockopt(
                fds[1],
                libc::SOL_SOCKET,
                libc::SO_SNDBUF,
                (&small as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        assert_eq!(rc, 0);
        let line: Vec<u8> = (0..256 * 1024).map(|i| (i % 251) as u8).collect();
        let len = line.len();
        let drain = std::thread::spawn(move || {
            let mut got = vec![0u8; len];
            std::io::Read::read_exact(&mut reader, &mut got).map(|()| got)
        });
        let sink = open_sink(fds[1]);
        assert!(write_line(&sink, &line), "the line was dropped part-way");
        let got = drain.join().unwrap().unwrap();
        assert!(got == line, "the line arrived altered");
        // SAFETY: ours.
        unsafe { libc::close(fds[1]) };
    }

    #[test]
    fn a_full_socket_refuses_lines_without_blocking() {
        let mut fds = [0; 2];
        // SAFETY: socketpair fills two descriptors.
        let rc = unsafe {
            libc::socketpair(
                libc::AF_UNIX,
                libc::SOCK_STREAM | libc::SOCK_CLOEXEC,
                0,
                fds.as_mut_ptr(),
            )
        };
        assert_eq!(rc, 0);
        let sink = open_sink(fds[1]);
        assert!(sink.socket);
        assert_eq!(sink.fd, fds[1]);
        let taken = fill(&sink, b"{\"line\":1}\n");
        assert!(taken > 0);
        // SAFETY: both ends are ours.
        unsafe {
            libc::close(fds[0]);
            libc::close(fds[1]);
        }
    }

    #[test]
    fn redaction() {
        let cases: &[(&str, &str, &str)] = &[
            ("no_query", "/capi/a/b/x", "/capi/a/b/x"),
            ("only_token", "/a?access_token=SECRET", "/a?access_token=REDACTED"),
            (
                "middle",
                "/a?x=1&access_token=SECRET&y=2",
                "/a?x=1&access_token=REDACTED&y=2",
            ),
            (
                "twice",
                "/a?access_token=S1&access_token=S2",
                "/a?access_token=REDACTED&access_token=REDACTED",
            ),
            (
                "similar_name_kept",
                "/a?my_access_token=v",
                "/a?my_access_token=v",
            ),
            ("empty_value", "/a?access_token=", "/a?access_token=REDACTED"),
            ("bare_name", "/a?access_token", "/a?access_token"),
        ];
        for (name, input, want) in cases {
            assert_eq!(redact_target(input), *want, "case {name}");
        }
        let long = format!("/a/{}?access_token=SECRET", "x".repeat(5000));
        let got = redact_target(&long);
        assert!(got.len() <= MAX_LOGGED_PATH + 3 && got.ends_with("...") && !got.contains("SECRET"));
    }

    #[test]
    fn remote_address() {
        let trusted = [TrustedProxy::parse("127.0.0.1").unwrap()];
        let lo: IpAddr = "127.0.0.1".parse().unwrap();
        let other: IpAddr = "10.0.0.9".parse().unwrap();
        let cases: &[(&str, IpAddr, Option<&[u8]>, &str)] = &[
            (
                "trusted_first_entry",
                lo,
                Some(b"203.0.113.7, 10.0.0.1"),
                "203.0.113.7",
            ),
            ("trusted_v6", lo, Some(b"[2001:db8::1]"), "2001:db8::1"),
            ("trusted_garbage", lo, Some(b"unknown"), "127.0.0.1"),
            ("trusted_no_header", lo, None, "127.0.0.1"),
            ("untrusted_ignored", other, Some(b"203.0.113.7"), "10.0.0.9"),
        ];
        for (name, peer, xff, want) in cases {
            assert_eq!(
                client_address(*peer, *xff, &trusted).to_string(),
                *want,
                "case {name}"
            );
        }
    }

    #[test]
    fn line_is_json_with_every_field() {
        let rec = AccessRecord {
            time: UNIX_EPOCH + Duration::from_millis(1_714_564_800_123),
            remote: "127.0.0.1".parse().unwrap(),
            method: method_label("GET"),
            path: "/capi/a/b?q=\"x\"\\\u{1}",
            status: 101,
            service: "a/b",
            node: "127.0.0.1:9",
            duration_ms: 5,
            bytes_up: 1,
            bytes_down: 2,
            reason: "closed",
        };
        let mut out = Vec::new();
        format_line(&rec, &mut out);
        assert_eq!(out.last(), Some(&b'\n'));
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["time"], "2024-05-01T12:00:00.123Z");
        assert_eq!(v["path"], "/capi/a/b?q=\"x\"\\\u{1}");
        assert_eq!(v["status"], 101);
        assert_eq!(v["service"], "a/b");
        assert_eq!(v["bytes_down"], 2);
        assert_eq!(method_label("BREW"), "OTHER");
    }

    #[test]
    fn dates() {
        let cases: &[(&str, i64, (i64, u32, u32))] = &[
            ("epoch", 0, (1970, 1, 1)),
            ("leap_day", 19_782, (2024, 2, 29)),
            ("y2k", 10_957, (2000, 1, 1)),
        ];
        for (name, days, want) in cases {
            assert_eq!(civil_from_days(*days), *want, "case {name}");
        }
    }

    #[test]
    fn percent_encoded_token_name_is_redacted_too() {
        let line = redact_target("/capi/a/b?x=1&access%5Ftoken=SECRET&%61ccess_token=S2");
        assert!(!line.contains("SECRET") && !line.contains("S2"), "{line}");
        assert!(line.starts_with("/capi/a/b?x=1&"), "{line}");
    }
}
