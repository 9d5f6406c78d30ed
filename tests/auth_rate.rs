//! Handshake rate with a valid token, with and without the per-worker verified-token cache
//! (issue 4 closing note). Not a correctness test: `#[ignore]`d, run by hand against a release
//! build, e.g.
//!   cargo build --release && CAPI_WS_BIN=target/release/capi-ws \
//!     cargo test --release --test auth_rate -- --ignored --nocapture
//! Each client thread loops: connect, upgrade with `Authorization: Bearer <RS256 token>`, read
//! the 101, close. The node is `capi-ws echo`. One token for all (the reconnect-storm case).

#![allow(clippy::disallowed_types)] // locks are fine in tests: the rule guards the data plane

#[allow(unused_macros)]
#[macro_use]
mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::config::{service, Config};
use common::gateway::{EchoNode, Gateway};
use common::jwks::{bound_source, claims, jwks_document, keys, oauth2_yaml, JwksServer};

const ISS: &str = "https://kc.test/realms/a";

fn rate(gw: &Gateway, token: &str, threads: usize, per_thread: usize) -> f64 {
    let addr = gw.ws_addr();
    let req = format!(
        "GET /capi/secure/dev/ HTTP/1.1\r\nHost: gw\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\
         Authorization: Bearer {token}\r\n\r\n"
    );
    let started = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| {
                let mut buf = [0u8; 1024];
                for _ in 0..per_thread {
                    let mut c = TcpStream::connect(addr).unwrap();
                    c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
                    c.write_all(req.as_bytes()).unwrap();
                    let mut got = Vec::new();
                    while !got.windows(4).any(|w| w == b"\r\n\r\n") {
                        let n = c.read(&mut buf).unwrap();
                        assert!(n > 0, "closed before the answer");
                        got.extend_from_slice(&buf[..n]);
                    }
                    assert!(
                        got.starts_with(b"HTTP/1.1 101"),
                        "{}",
                        String::from_utf8_lossy(&got)
                    );
                }
            });
        }
    });
    (threads * per_thread) as f64 / started.elapsed().as_secs_f64()
}

#[test]
#[ignore]
fn handshake_rate_with_and_without_cache() {
    let k = keys();
    let jwks = JwksServer::start(jwks_document(&[&k.rsa]));
    let echo = EchoNode::start("epoll");
    let token = k.rsa.token(&claims(ISS, &[]));
    let threads: usize = std::env::var("RATE_THREADS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(4);
    let per: usize = std::env::var("RATE_PER_THREAD")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2000);
    let workers: usize = std::env::var("RATE_WORKERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1);
    for (label, cache) in [("cache on ", 10_000), ("cache off", 0)] {
        let config = Config::new().with(service("secure", "dev", echo.addr()).meta("secured", "true"));
        let extra = format!("capi.oauth2.token-cache-size: {cache}\n");
        let yaml = format!(
            "{}{}",
            config.yaml(),
            oauth2_yaml(&[bound_source(&jwks.url("a"), ISS)], &extra)
        );
        let gw = Gateway::start_with(&yaml, "epoll", workers, &["--log-level", "info"]);
        rate(&gw, &token, threads, 50); // warm-up
        let r = rate(&gw, &token, threads, per);
        println!("{label}: {r:.0} upgrades/s ({threads} client threads x {per}, {workers} worker(s), epoll)");
    }
}
