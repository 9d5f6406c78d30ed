//! The double's HTTP side: acceptor, keep-alive connections, request parsing and the answer
//! for one request (Consul's paths, parameters, errors, ACL, blocking and fault switches).

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::{Endpoint, Recorded, Shared};

pub(super) fn spawn_acceptor(listener: TcpListener, shared: Arc<Shared>, epoch: u64) {
    thread::Builder::new()
        .name("consul-double".into())
        .spawn(move || {
            for stream in listener.incoming() {
                if shared.lock().down {
                    break;
                }
                let Ok(stream) = stream else { continue };
                let sh = Arc::clone(&shared);
                let _ = thread::Builder::new()
                    .name("consul-conn".into())
                    .stack_size(256 * 1024)
                    .spawn(move || serve_conn(stream, sh, epoch));
            }
        })
        .unwrap();
}

/// Keep-alive loop: read a head, answer, repeat until the client closes or the double goes down.
fn serve_conn(mut stream: TcpStream, shared: Arc<Shared>, epoch: u64) {
    let _ = stream.set_read_timeout(Some(Duration::from_millis(100)));
    let mut buf: Vec<u8> = Vec::new();
    loop {
        let head_end = loop {
            if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break p + 4;
            }
            if shared.lock().epoch != epoch || buf.len() > 64 * 1024 {
                return;
            }
            let mut chunk = [0u8; 4096];
            match stream.read(&mut chunk) {
                Ok(0) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) => {}
                Err(_) => return,
            }
        };
        let head: Vec<u8> = buf.drain(..head_end).collect();
        let mut headers = [httparse::EMPTY_HEADER; 64];
        let mut req = httparse::Request::new(&mut headers);
        if !matches!(req.parse(&head), Ok(httparse::Status::Complete(_))) {
            let _ = stream
                .write_all(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
            return;
        }
        let target = req.path.unwrap_or("/").to_owned();
        let (path, raw_query) = target.split_once('?').unwrap_or((&target, ""));
        let rec = Recorded {
            method: req.method.unwrap_or("").to_owned(),
            path: path.to_owned(),
            query: parse_query(raw_query),
            headers: req
                .headers
                .iter()
                .map(|h| (h.name.to_owned(), String::from_utf8_lossy(h.value).into_owned()))
                .collect(),
            at: Instant::now(),
        };
        let close = rec
            .header("Connection")
            .is_some_and(|v| v.eq_ignore_ascii_case("close"));
        match answer(&shared, rec, epoch) {
            Some(bytes) => {
                if stream.write_all(&bytes).is_err() {
                    return;
                }
            }
            None => {
                let _ = stream.shutdown(Shutdown::Both);
                return;
            }
        }
        if close {
            return;
        }
    }
}

fn parse_query(raw: &str) -> Vec<(String, String)> {
    raw.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| match p.split_once('=') {
            Some((k, v)) => (percent_decode(k), percent_decode(v)),
            None => (percent_decode(p), String::new()),
        })
        .collect()
}

/// Percent-decoding; `plus_is_space` for query values (Go's `url.ParseQuery`), not for paths.
fn decode(s: &str, plus_is_space: bool) -> String {
    let b = s.as_bytes();
    let hex = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            if let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2])) {
                out.push(h * 16 + l);
                i += 3;
                continue;
            }
        }
        out.push(if plus_is_space && b[i] == b'+' { b' ' } else { b[i] });
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn percent_decode(s: &str) -> String {
    decode(s, true)
}

/// Go's `time.ParseDuration` for the units Consul users write (`ns us µs ms s m h`, combined).
pub fn parse_go_duration(s: &str) -> Option<Duration> {
    if s == "0" {
        return Some(Duration::ZERO);
    }
    let mut rest = s;
    let mut total = 0f64;
    if rest.is_empty() || rest.starts_with('-') {
        return None;
    }
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        if num_len == 0 {
            return None;
        }
        let n: f64 = rest[..num_len].parse().ok()?;
        rest = &rest[num_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let scale = match &rest[..unit_len] {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return None,
        };
        total += n * scale;
        rest = &rest[unit_len..];
    }
    Some(Duration::from_secs_f64(total))
}

fn text(status: u16, reason: &str, body: &str, extra: &str) -> Vec<u8> {
    format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: text/plain; charset=utf-8\r\n{extra}Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// The answer bytes for one request; `None` = close without answering.
fn answer(shared: &Shared, rec: Recorded, epoch: u64) -> Option<Vec<u8>> {
    let mut st = shared.lock();
    st.requests.push(rec.clone());
    if rec.method == "OPTIONS" {
        return Some(text(200, "OK", "", "Allow: GET, OPTIONS\r\n"));
    }
    if rec.method != "GET" {
        return Some(text(
            405,
            "Method Not Allowed",
            "method not allowed",
            "Allow: GET, OPTIONS\r\n",
        ));
    }
    if let Some((n, status, body)) = st.faults.fail.take() {
        if n > 1 {
            st.faults.fail = Some((n - 1, status, body.clone()));
        }
        if n > 0 {
            return Some(text(status, "Error", &body, ""));
        }
    }
    if st.faults.hang {
        let until = Instant::now() + Duration::from_secs(120);
        while st.faults.hang && st.epoch == epoch && Instant::now() < until {
            st = shared.cond.wait_timeout(st, Duration::from_millis(100)).ok()?.0;
        }
        return None;
    }
    if rec.param("ns").is_some() || rec.header("X-Consul-Namespace").is_some() {
        return Some(text(
            400,
            "Bad Request",
            "Bad request: Invalid query parameter: \"ns\" - Namespaces are a Consul Enterprise feature",
            "",
        ));
    }
    if rec.param("filter").is_some() {
        return Some(text(
            400,
            "Bad Request",
            "filter is not supported by this double (do not rely on it)",
            "",
        ));
    }
    let endpoint = if rec.path == "/v1/catalog/services" {
        Endpoint::Services
    } else if let Some(n) = rec.path.strip_prefix("/v1/catalog/service/") {
        Endpoint::Catalog(decode(n, false))
    } else if let Some(n) = rec.path.strip_prefix("/v1/health/service/") {
        Endpoint::Health(decode(n, false))
    } else {
        return Some(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n".to_vec());
    };
    if matches!(&endpoint, Endpoint::Catalog(n) | Endpoint::Health(n) if n.is_empty()) {
        return Some(text(400, "Bad Request", "Missing service name", ""));
    }
    let index: u64 = match rec.param("index") {
        None => 0,
        Some(v) => match v.parse() {
            Ok(i) => i,
            Err(_) => return Some(text(400, "Bad Request", "Invalid index", "")),
        },
    };
    let mut wait = Duration::from_secs(300);
    if let Some(w) = rec.param("wait") {
        match parse_go_duration(w) {
            Some(d) if d > Duration::from_secs(600) => wait = Duration::from_secs(600),
            Some(d) if d > Duration::ZERO => wait = d,
            Some(_) => {}
            None => return Some(text(400, "Bad Request", "Invalid wait time", "")),
        }
    }
    let passing = match rec.param("passing") {
        None => false,
        Some("" | "true" | "1" | "t" | "T" | "TRUE" | "True") => true,
        Some("false" | "0" | "f" | "F" | "FALSE" | "False") => false,
        Some(_) => return Some(text(400, "Bad Request", "Invalid value for ?passing", "")),
    };
    let stale = rec.param("stale").is_some();
    if stale && rec.param("consistent").is_some() {
        return Some(text(
            400,
            "Bad Request",
            "Cannot specify ?stale with ?consistent, conflicting semantics.",
            "",
        ));
    }
    // ACL: ?token, then X-Consul-Token, then `Authorization: Bearer` (scheme exactly `Bearer`).
    let token = rec
        .param("token")
        .map(str::to_owned)
        .or_else(|| rec.header("X-Consul-Token").map(str::to_owned))
        .or_else(|| {
            rec.header("Authorization")
                .and_then(|a| a.strip_prefix("Bearer "))
                .map(|t| t.trim().to_owned())
        });
    let mut anonymous = false;
    if let Some(known) = &st.acl {
        match &token {
            Some(t) if !known.contains(t) => return Some(text(403, "Forbidden", "ACL not found", "")),
            Some(_) => {}
            None => anonymous = true,
        }
    }
    // Blocking: hold until this endpoint's index passes `index`, or `wait` (+ jitter) elapses.
    if index > 0 {
        let mut hold = wait;
        if st.jitter {
            st.rng ^= st.rng << 13;
            st.rng ^= st.rng >> 7;
            st.rng ^= st.rng << 17;
            let max = (wait / 16).as_millis() as u64;
            hold += Duration::from_millis(st.rng % (max + 1));
        }
        let deadline = Instant::now() + hold;
        loop {
            if st.epoch != epoch {
                return None;
            }
            if st.endpoint_index(&endpoint) > index {
                break;
            }
            if st.faults.spurious > 0 {
                st.faults.spurious -= 1;
                break;
            }
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            st = shared.cond.wait_timeout(st, deadline - now).ok()?.0;
        }
    }
    let reported = st.endpoint_index(&endpoint);
    let body = match &endpoint {
        Endpoint::Services => {
            let mut map = serde_json::Map::new();
            if !anonymous {
                map.insert("consul".into(), json!([]));
                for list in st.services.values() {
                    let name = list[0].service["Service"].as_str().unwrap_or_default().to_owned();
                    let mut tags: Vec<Value> = Vec::new();
                    for inst in list {
                        for t in inst.service["Tags"].as_array().into_iter().flatten() {
                            if !tags.contains(t) {
                                tags.push(t.clone());
                            }
                        }
                    }
                    map.insert(name, Value::Array(tags));
                }
            }
            Value::Object(map)
        }
        Endpoint::Catalog(n) | Endpoint::Health(n) => {
            let list = if anonymous {
                None
            } else {
                st.services.get(&n.to_lowercase())
            };
            let health = matches!(endpoint, Endpoint::Health(_));
            Value::Array(
                list.into_iter()
                    .flatten()
                    .filter(|i| !(health && passing) || i.passing())
                    .map(|i| if health { i.health() } else { i.catalog() })
                    .collect(),
            )
        }
    };
    let mut body = body.to_string();
    let mut index_header = format!(
        "X-Consul-Index: {}\r\n",
        if st.faults.index_zero { 0 } else { reported }
    );
    if st.faults.garbage > 0 {
        st.faults.garbage -= 1;
        body = "{\"not json".to_owned();
    }
    if st.faults.no_index > 0 {
        st.faults.no_index -= 1;
        index_header.clear();
    }
    let leader = if st.faults.streaming {
        String::new()
    } else {
        "X-Consul-Knownleader: true\r\nX-Consul-Lastcontact: 0\r\n".to_owned()
    };
    let consistency = if stale {
        "stale"
    } else if rec.param("consistent").is_some() {
        "consistent"
    } else {
        "leader"
    };
    let policy = if st.acl.is_some() { "deny" } else { "allow" };
    let backend = if st.faults.streaming {
        "streaming"
    } else {
        "blocking-query"
    };
    Some(
        format!(
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nVary: Accept-Encoding\r\n\
             X-Consul-Default-Acl-Policy: {policy}\r\nX-Consul-Effective-Consistency: {consistency}\r\n\
             {index_header}{leader}X-Consul-Query-Backend: {backend}\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .into_bytes(),
    )
}
