//! The admin server (DESIGN §8): `/health`, `/ready`, `/metrics`, `/routes` and their CAPI
//! aliases, GET only, on `management.server.address:port`. One thread (`capi-ws-admin`) with its
//! own monoio runtime (epoll driver: a handful of scrapes need no io_uring) and monoio-http's
//! HTTP/1.1 codec; one request per connection. It only reads what workers and producers publish.

use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use anyhow::{anyhow, Context as _};
use bytes::Bytes;
use http::{Method, StatusCode};
use monoio::io::sink::SinkExt;
use monoio::io::stream::Stream;
use monoio::io::Splitable;
use monoio_http::common::response::Response;
use monoio_http::h1::codec::decoder::RequestDecoder;
use monoio_http::h1::codec::encoder::GenericEncoder;
use monoio_http::h1::payload::{FixedPayload, Payload};

use crate::control::exposition::{render_metrics, routes_json, METRICS_CONTENT_TYPE};
use crate::control::Control;
use crate::rt::{self, DriverKind};

/// A client that sends no complete request head within this time is dropped.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
const JSON: &str = "application/json";

/// One admin answer, before it is framed.
#[derive(Debug, PartialEq, Eq)]
pub struct Answer {
    pub status: StatusCode,
    pub content_type: &'static str,
    pub body: String,
}

/// Bind the admin listener (port 0 = pick one) and start its thread; returns the bound address.
pub fn start_admin(control: Arc<Control>, host: &str, port: u16) -> anyhow::Result<SocketAddr> {
    let addr = (host, port)
        .to_socket_addrs()
        .with_context(|| format!("management.server.address: cannot resolve {host:?}"))?
        .next()
        .ok_or_else(|| anyhow!("management.server.address: {host:?} has no address"))?;
    let listener =
        std::net::TcpListener::bind(addr).with_context(|| format!("admin: cannot listen on {addr}"))?;
    listener.set_nonblocking(true)?;
    let bound = listener.local_addr()?;
    std::thread::Builder::new()
        .name("capi-ws-admin".into())
        .spawn(move || {
            let result = rt::block_on(DriverKind::Epoll, async move {
                match monoio::net::TcpListener::from_std(listener) {
                    Ok(l) => run_admin(control, l).await,
                    Err(e) => tracing::error!("admin listener: {e}"),
                }
            });
            if let Err(e) = result {
                tracing::error!("admin runtime failed: {e}");
            }
        })
        .context("cannot spawn the admin thread")?;
    Ok(bound)
}

async fn run_admin(control: Arc<Control>, listener: monoio::net::TcpListener) {
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                monoio::spawn(handle_admin_conn(Arc::clone(&control), stream));
            }
            Err(e) => {
                tracing::debug!("admin accept: {e}");
                // Out of descriptors: the data plane backs off too; do not spin here either.
                monoio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

async fn handle_admin_conn(control: Arc<Control>, stream: monoio::net::TcpStream) {
    let (r, w) = stream.into_split();
    let mut decoder = RequestDecoder::new(r);
    let mut encoder = GenericEncoder::new(w);
    let req = match monoio::time::timeout(REQUEST_TIMEOUT, decoder.next()).await {
        Ok(Some(Ok(req))) => req,
        _ => return,
    };
    let answer = answer(&control, req.method(), req.uri().path(), SystemTime::now());
    let len = answer.body.len();
    let resp: Response = match http::Response::builder()
        .status(answer.status)
        .header(http::header::CONTENT_TYPE, answer.content_type)
        .header(http::header::CONTENT_LENGTH, len)
        .header(http::header::CONNECTION, "close")
        .header(http::header::ALLOW, "GET")
        .body(Payload::Fixed(FixedPayload::new(Bytes::from(answer.body))))
    {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!("admin: cannot build a response: {e}");
            return;
        }
    };
    if let Err(e) = encoder.send_and_flush(resp).await {
        tracing::debug!("admin: write failed: {e}");
    }
}

/// The answer for one request (pure but for reading the published state).
pub fn answer(control: &Control, method: &Method, path: &str, now: SystemTime) -> Answer {
    let known = matches!(
        path,
        "/health"
            | "/metrics/health"
            | "/ready"
            | "/metrics"
            | "/metrics/prometheus"
            | "/routes"
            | "/metrics/wsroutes"
    );
    if !known {
        return json_answer(StatusCode::NOT_FOUND, error_body(404, "unknown admin path"));
    }
    if method != Method::GET {
        return json_answer(StatusCode::METHOD_NOT_ALLOWED, error_body(405, "only GET"));
    }
    match path {
        "/health" | "/metrics/health" => json_answer(StatusCode::OK, r#"{"status":"UP"}"#.to_string()),
        "/ready" => {
            let r = &control.readiness;
            let load = |a: &std::sync::atomic::AtomicBool| a.load(std::sync::atomic::Ordering::Acquire);
            let body = serde_json::json!({
                "status": if r.all() { "READY" } else { "NOT_READY" },
                "workers": load(&r.workers),
                "consul": load(&r.consul),
                "keys": load(&r.keys),
            })
            .to_string();
            let status = if r.all() {
                StatusCode::OK
            } else {
                StatusCode::SERVICE_UNAVAILABLE
            };
            json_answer(status, body)
        }
        "/metrics" | "/metrics/prometheus" => Answer {
            status: StatusCode::OK,
            content_type: METRICS_CONTENT_TYPE,
            body: render_metrics(control, now),
        },
        _ => json_answer(StatusCode::OK, routes_json(&control.published.load()).to_string()),
    }
}

fn json_answer(status: StatusCode, body: String) -> Answer {
    Answer {
        status,
        content_type: JSON,
        body,
    }
}

fn error_body(code: u16, message: &str) -> String {
    serde_json::json!({ "errorCode": code, "errorMessage": message }).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Settings;
    use std::sync::atomic::Ordering;

    #[test]
    fn routing_of_admin_requests() {
        let c = Control::new(Settings::default(), 1);
        let now = SystemTime::now();
        let cases: &[(&str, Method, &str, StatusCode, &str)] = &[
            ("health", Method::GET, "/health", StatusCode::OK, JSON),
            (
                "health_alias",
                Method::GET,
                "/metrics/health",
                StatusCode::OK,
                JSON,
            ),
            (
                "ready_before_workers",
                Method::GET,
                "/ready",
                StatusCode::SERVICE_UNAVAILABLE,
                JSON,
            ),
            (
                "metrics",
                Method::GET,
                "/metrics",
                StatusCode::OK,
                METRICS_CONTENT_TYPE,
            ),
            (
                "metrics_alias",
                Method::GET,
                "/metrics/prometheus",
                StatusCode::OK,
                METRICS_CONTENT_TYPE,
            ),
            ("routes", Method::GET, "/routes", StatusCode::OK, JSON),
            (
                "routes_alias",
                Method::GET,
                "/metrics/wsroutes",
                StatusCode::OK,
                JSON,
            ),
            ("unknown", Method::GET, "/nope", StatusCode::NOT_FOUND, JSON),
            (
                "post",
                Method::POST,
                "/health",
                StatusCode::METHOD_NOT_ALLOWED,
                JSON,
            ),
            (
                "head",
                Method::HEAD,
                "/metrics",
                StatusCode::METHOD_NOT_ALLOWED,
                JSON,
            ),
        ];
        for (name, method, path, status, ct) in cases {
            let a = answer(&c, method, path, now);
            assert_eq!((a.status, a.content_type), (*status, *ct), "case {name}");
        }
        c.readiness.workers.store(true, Ordering::Release);
        assert_eq!(answer(&c, &Method::GET, "/ready", now).status, StatusCode::OK);
        assert_eq!(
            answer(&c, &Method::GET, "/health", now).body,
            r#"{"status":"UP"}"#
        );
    }
}
