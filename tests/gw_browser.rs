//! A real browser (issue 6): headless Chromium (Debian `chromium`, installed by `make test`)
//! loads a page served on loopback by this test; its script opens
//! `new WebSocket("ws://127.0.0.1:<port>/capi/echo/dev/x?access_token=<token>")`, sends a
//! message and reports the echo back to the test server. The same page from an origin the
//! service does not allow is refused (403, seen by the browser as a failed WebSocket).
//!
//! The service is secured: the token is an RS256 JWT signed by a key the gateway loads from a
//! JWKS double on loopback, and it never shows up in the access log.
#![allow(clippy::disallowed_types)] // locks are fine in tests: the rule guards the data plane

#[macro_use]
mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use common::config::{service, Config, Service};
use common::eventually;
use common::gateway::{EchoNode, Gateway, TempDir};
use common::jwks::{claims, jwks_document, keys, oauth2_yaml, JwksServer};

const CHROMIUM: &str = "/usr/bin/chromium";
/// First start of a browser on a cold machine can take several seconds.
const BROWSER_WAIT: Duration = Duration::from_secs(60);
const MESSAGE: &str = "hello from chromium";

/// The service the page talks to: secured, and only the page's own origin is allowed.
fn browser_service(node: SocketAddr, allowed_origin: &str) -> Service {
    service("echo", "dev", node)
        .meta("type", "websocket")
        .meta("secured", "true")
        .meta("allowed-origins", allowed_origin)
}

/// The token the page puts in `?access_token=`: valid for an hour, signed by the JWKS key.
fn token() -> String {
    keys().rsa.token(&claims("https://kc.test/realms/a", &[]))
}

/// What the page reported.
#[derive(Debug)]
struct Report {
    kind: String,
    detail: String,
}

/// A tiny HTTP server: `/page` is the test page, `/result?...` is the page's report.
struct PageServer {
    addr: SocketAddr,
    reports: mpsc::Receiver<Report>,
}

impl PageServer {
    /// Serve on `listener` (bound first, so the gateway config can name the page's origin).
    fn start(listener: TcpListener, ws_url: String) -> PageServer {
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = mpsc::channel();
        thread::Builder::new()
            .name("page-server".into())
            .spawn(move || {
                for stream in listener.incoming().flatten() {
                    let tx = tx.clone();
                    let ws_url = ws_url.clone();
                    thread::spawn(move || serve_one(stream, &ws_url, &tx));
                }
            })
            .unwrap();
        PageServer { addr, reports: rx }
    }
}

fn serve_one(mut stream: TcpStream, ws_url: &str, tx: &mpsc::Sender<Report>) {
    stream.set_read_timeout(Some(Duration::from_secs(10))).ok();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut request_line = String::new();
    if reader.read_line(&mut request_line).is_err() {
        return;
    }
    loop {
        let mut line = String::new();
        match reader.read_line(&mut line) {
            Ok(0) | Err(_) => break,
            Ok(_) if line == "\r\n" => break,
            Ok(_) => {}
        }
    }
    let target = request_line.split(' ').nth(1).unwrap_or("/");
    let (status, ctype, body) = if target.starts_with("/page") {
        ("200 OK", "text/html; charset=utf-8", page(ws_url))
    } else if let Some(query) = target.strip_prefix("/result?") {
        let mut kind = String::new();
        let mut detail = String::new();
        for pair in query.split('&') {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            match k {
                "kind" => kind = percent_decode(v),
                "detail" => detail = percent_decode(v),
                _ => {}
            }
        }
        let _ = tx.send(Report { kind, detail });
        ("204 No Content", "text/plain", String::new())
    } else {
        ("404 Not Found", "text/plain", String::new())
    };
    let _ = write!(
        stream,
        "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
}

fn page(ws_url: &str) -> String {
    format!(
        r#"<!doctype html>
<html><head><title>capi-ws browser test</title></head><body>
<script>
let reported = false;
function report(kind, detail) {{
  if (reported) return;
  reported = true;
  document.body.textContent = kind + ": " + detail;
  fetch("/result?kind=" + encodeURIComponent(kind) + "&detail=" + encodeURIComponent(detail));
}}
try {{
  const ws = new WebSocket({url});
  ws.onopen = () => ws.send({msg});
  ws.onmessage = (e) => {{ report("echo", e.data); ws.close(); }};
  ws.onerror = () => report("error", "websocket error");
  ws.onclose = (e) => report("closed", String(e.code));
}} catch (e) {{
  report("exception", String(e));
}}
</script></body></html>"#,
        url = serde_json::Value::String(ws_url.to_owned()),
        msg = serde_json::Value::String(MESSAGE.to_owned()),
    )
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("");
                match u8::from_str_radix(hex, 16) {
                    Ok(b) => {
                        out.push(b);
                        i += 3;
                        continue;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            b'+' => out.push(b' '),
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Headless Chromium on one URL, killed on drop.
struct Browser {
    child: Child,
    _profile: TempDir,
}

impl Browser {
    fn open(url: &str) -> Browser {
        assert!(
            std::path::Path::new(CHROMIUM).exists(),
            "{CHROMIUM} is missing: run `make test` (scripts/ensure-chromium.sh installs it)"
        );
        let profile = TempDir::new();
        // Flags as the environment doc says works here (no sandbox as root, no background
        // networking: this machine's network is closed).
        let child = Command::new(CHROMIUM)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--disable-dev-shm-usage",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg(url)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("starting {CHROMIUM}: {e}"));
        Browser {
            child,
            _profile: profile,
        }
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // Chromium starts helper processes in its own process group only in some modes; kill
        // the main process, which takes its children down with it.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn load(url: &str, server: &PageServer) -> Report {
    let _browser = Browser::open(url);
    let started = Instant::now();
    server
        .reports
        .recv_timeout(BROWSER_WAIT)
        .unwrap_or_else(|_| panic!("no report from the page {url} within {:?}", started.elapsed()))
}

fn chromium_echo_and_origin_refusal(driver: &str) {
    // 1. the page is served from http://127.0.0.1:<p>; the service allows exactly that origin;
    // 2. Chromium opens the WebSocket through the gateway, sends, and gets the echo;
    // 3. the same page loaded as http://localhost:<p> (another origin) is refused with 403.
    let node = EchoNode::start(driver);
    let page_listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let page_port = page_listener.local_addr().unwrap().port();
    let allowed = format!("http://127.0.0.1:{page_port}");
    let config = Config::new().with(browser_service(node.addr(), &allowed));
    let jwks = JwksServer::start(jwks_document(&[&keys().rsa]));
    let yaml = format!(
        "{}{}",
        config.yaml(),
        oauth2_yaml(&[serde_json::json!(jwks.url("a")).to_string()], "")
    );
    let gw = Gateway::start(&yaml, driver, 1);
    let ws_url = format!("ws://{}/capi/echo/dev/x?access_token={}", gw.ws_addr(), token());
    let server = PageServer::start(page_listener, ws_url);

    let ok = load(&format!("http://127.0.0.1:{}/page", server.addr.port()), &server);
    assert_eq!(
        (ok.kind.as_str(), ok.detail.as_str()),
        ("echo", MESSAGE),
        "{ok:?}\n{}",
        gw.logs()
    );

    let refused = load(&format!("http://localhost:{}/page", server.addr.port()), &server);
    assert_ne!(
        refused.kind, "echo",
        "a disallowed origin got through: {refused:?}"
    );
    eventually("the gateway logged the 403", Duration::from_secs(10), || {
        gw.access_log().contains("\"status\":403")
    });
    let log = gw.access_log();
    assert!(log.contains("\"status\":101"), "{log}");
    assert!(!log.contains(&token()), "token in the access log: {log}");
}

drivers!(chromium_echo_and_origin_refusal);
