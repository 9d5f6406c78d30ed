//! The discovery row: how long a service registered in Consul takes to become reachable
//! through capi-ws. The Consul test double of the integration tests (tests/common/consul) runs
//! in this process; each trial registers a fresh service (the echo backend, `disc-<n>/bench`),
//! times from just before the registration to the first 101 on its route plus one echo round
//! trip (retrying a 404 every millisecond), then deregisters it.

#[allow(dead_code)] // the bench uses the double's catalog and request log, not its fault switches
#[path = "../../tests/common/consul/mod.rs"]
mod consul;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::anyhow;

use crate::report::median;
use crate::suite::{DiscoverySample, Sample};
use crate::targets::{self, Env, TargetId};
use crate::wire::{self, Decoder, Piece};
use consul::{registration, Consul};

/// Meta `group` of every registration: the route is `/capi/disc-<n>/bench/`.
const GROUP: &str = "bench";
/// A trial whose route does not answer 101 and echo within this is a failure.
pub const TRIAL_BOUND: Duration = Duration::from_secs(5);
/// Pause between two upgrade attempts while the route is not there yet.
const RETRY: Duration = Duration::from_millis(1);
/// How long the gateway may take to (re)issue its blocking catalog query: the first sync, or
/// the pacing bucket after a deregistration (one catalog read per 200 ms once it is empty).
const HOLD_BOUND: Duration = Duration::from_secs(10);
/// Connect, read and write timeout of one attempt.
const IO_TIMEOUT: Duration = Duration::from_secs(1);
/// Payload of the echo round trip that completes a trial.
const ECHO_BYTES: usize = 64;
const MASK: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

/// Run `trials` registrations against a fresh capi-ws `t` and a fresh Consul double.
pub fn measure(t: TargetId, env: &Env, trials: usize, run: usize) -> anyhow::Result<Sample> {
    // The double unwraps its bind to 127.0.0.1:0 (test code); a failure becomes an error here.
    let consul = std::panic::catch_unwind(Consul::start)
        .map_err(|_| anyhow!("the Consul test double could not listen on 127.0.0.1"))?;
    let running = targets::start_discovery(t, env, &consul.endpoint())?;
    let began = Instant::now();
    let mut s = Sample {
        run,
        ..Default::default()
    };
    let mut trials_ms = Vec::with_capacity(trials);
    let mut not_found = 0;
    for n in 0..trials {
        // Each registration must meet a gateway that has seen everything so far and holds its
        // blocking query: that query waking up is the path measured (as in production).
        wait_holding(&consul).map_err(|e| anyhow!("trial {n}: {e}"))?;
        let tr = trial(&consul, running.addr, env.backend, &format!("disc-{n}"));
        trials_ms.push(tr.ms);
        not_found += tr.not_found;
        s.sent_payload += ECHO_BYTES as u64;
        s.recv_payload += tr.echoed;
        match tr.verdict {
            Ok(clean) => {
                s.ops += 1;
                s.clean_closes += u64::from(clean);
            }
            Err(kind) => {
                s.errors += 1;
                *s.error_kinds.entry(kind).or_default() += 1;
            }
        }
    }
    s.window_s = began.elapsed().as_secs_f64();
    drop(running);
    drop(consul);
    let d = summarise(trials_ms, s.errors, not_found);
    s.rate = d.median_ms.unwrap_or(f64::NAN);
    s.discovery = Some(d);
    Ok(s)
}

/// Median and max over every trial (a failed one counts with its time, ≥ [`TRIAL_BOUND`]).
fn summarise(trials_ms: Vec<f64>, failed: u64, not_found: u64) -> DiscoverySample {
    let max_ms = trials_ms.iter().copied().reduce(f64::max);
    DiscoverySample {
        median_ms: median(trials_ms.clone()),
        max_ms,
        failed,
        trials_ms,
        not_found,
    }
}

/// Wait until the gateway holds a blocking catalog query at the double's current index.
fn wait_holding(consul: &Consul) -> Result<(), String> {
    let idx = consul.index().to_string();
    let end = Instant::now() + HOLD_BOUND;
    loop {
        // The request log is the only sign of it: poll (bounded).
        let holding = consul
            .requests()
            .iter()
            .rev()
            .find(|r| r.path == "/v1/catalog/services")
            .is_some_and(|r| r.param("index") == Some(idx.as_str()));
        if holding {
            return Ok(());
        }
        if Instant::now() >= end {
            return Err(format!(
                "capi-ws did not hold a catalog query at index {idx} within {HOLD_BOUND:?}"
            ));
        }
        thread::sleep(Duration::from_millis(2));
    }
}

/// One trial's result.
struct Trial {
    /// Registration to the echo's return (or to giving up).
    ms: f64,
    /// Payload bytes echoed intact.
    echoed: u64,
    /// 404 answers before the route appeared.
    not_found: u64,
    /// `Ok(clean close)` or the kind of failure.
    verdict: Result<bool, String>,
}

/// Register `name` (the echo backend), poll its route until it upgrades and echoes, deregister.
fn trial(consul: &Consul, gw: SocketAddr, backend: SocketAddr, name: &str) -> Trial {
    let id = format!("{name}-1");
    let path = format!("/capi/{name}/{GROUP}/");
    let t0 = Instant::now();
    consul.register(&registration(name, &id, GROUP, backend));
    // What the last attempt got (404 while the route is not there yet).
    let mut last: String;
    let mut not_found = 0;
    let result = loop {
        match attempt(gw, &path) {
            Ok(Some((mut stream, leftover))) => {
                let echoed = echo_once(&mut stream, &leftover);
                let ms = t0.elapsed().as_secs_f64() * 1000.0;
                break match echoed {
                    Ok(()) => Trial {
                        ms,
                        echoed: ECHO_BYTES as u64,
                        not_found,
                        verdict: Ok(close(&mut stream, &mut Decoder::default())),
                    },
                    Err(e) => Trial {
                        ms,
                        echoed: 0,
                        not_found,
                        verdict: Err(format!("echo after 101: {e}")),
                    },
                };
            }
            Ok(None) => {
                not_found += 1;
                last = "404".into();
            }
            Err(e) => last = e,
        }
        if t0.elapsed() >= TRIAL_BOUND {
            break Trial {
                ms: t0.elapsed().as_secs_f64() * 1000.0,
                echoed: 0,
                not_found,
                verdict: Err(format!("not routable within {TRIAL_BOUND:?} (last: {last})")),
            };
        }
        thread::sleep(RETRY);
    };
    consul.deregister(&id);
    result
}

/// One upgrade: `Some((stream, bytes after the head))` on 101, `None` on 404 (no route yet).
fn attempt(gw: SocketAddr, path: &str) -> Result<Option<(TcpStream, Vec<u8>)>, String> {
    let io = |e: std::io::Error| e.to_string();
    let mut s = TcpStream::connect_timeout(&gw, IO_TIMEOUT).map_err(io)?;
    s.set_nodelay(true).map_err(io)?;
    s.set_read_timeout(Some(IO_TIMEOUT)).map_err(io)?;
    s.set_write_timeout(Some(IO_TIMEOUT)).map_err(io)?;
    s.write_all(&wire::request_head(&gw.to_string(), path, &[]))
        .map_err(io)?;
    let accept = wire::accept_for(wire::CLIENT_KEY);
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let n = s.read(&mut chunk).map_err(io)?;
        if n == 0 {
            return Err("closed before an answer".into());
        }
        buf.extend_from_slice(&chunk[..n]);
        match wire::check_response(&buf, &accept) {
            wire::HeadCheck::Partial => {}
            wire::HeadCheck::Switched { head_len } => {
                let rest = buf.split_off(head_len);
                return Ok(Some((s, rest)));
            }
            wire::HeadCheck::Refused { status: 404 } => return Ok(None),
            wire::HeadCheck::Refused { status } => return Err(status.to_string()),
            wire::HeadCheck::Bad(why) => return Err(why.into()),
        }
    }
}

/// Send one binary message and read it back intact.
fn echo_once(s: &mut TcpStream, leftover: &[u8]) -> Result<(), String> {
    let payload = wire::pattern(ECHO_BYTES);
    s.write_all(&wire::client_frame(wire::OP_BINARY, &payload, MASK))
        .map_err(|e| e.to_string())?;
    let mut intact = true;
    pump(s, &mut Decoder::default(), leftover, |p| match p {
        Piece::Data { opcode, at, bytes } if opcode < 8 => {
            let at = at as usize;
            intact &= payload.get(at..at + bytes.len()) == Some(bytes);
            None
        }
        Piece::End { opcode, len } if opcode < 8 => Some(if intact && len == ECHO_BYTES as u64 {
            Ok(())
        } else {
            Err("echo differs from what was sent".into())
        }),
        Piece::End {
            opcode: wire::OP_CLOSE,
            ..
        } => Some(Err("close frame instead of the echo".into())),
        _ => None,
    })
}

/// Close handshake: send a close frame; true when the server's close frame came back.
fn close(s: &mut TcpStream, dec: &mut Decoder) -> bool {
    if s.write_all(&wire::close_frame(MASK)).is_err() {
        return false;
    }
    let closed = pump(s, dec, &[], |p| match p {
        Piece::End {
            opcode: wire::OP_CLOSE,
            ..
        } => Some(Ok(())),
        _ => None,
    });
    closed.is_ok()
}

/// Feed `first`, then whatever `s` reads, to `dec` until `until` gives a verdict.
fn pump(
    s: &mut TcpStream,
    dec: &mut Decoder,
    first: &[u8],
    mut until: impl FnMut(Piece<'_>) -> Option<Result<(), String>>,
) -> Result<(), String> {
    let mut verdict = None;
    let mut chunk = [0u8; 4096];
    let mut data: &[u8] = first;
    loop {
        dec.feed(data, &mut |p| {
            if verdict.is_none() {
                verdict = until(p);
            }
        })
        .map_err(|e| e.0.to_string())?;
        if let Some(v) = verdict {
            return v;
        }
        let n = s.read(&mut chunk).map_err(|e| e.to_string())?;
        if n == 0 {
            return Err("connection closed".into());
        }
        data = &chunk[..n];
    }
}

/// One progress line for a discovery sample.
pub fn describe(d: &DiscoverySample, kinds: &BTreeMap<String, u64>) -> String {
    let ms = |v: Option<f64>| v.map_or("n/a".into(), |v| format!("{v:.1} ms"));
    let mut out = format!(
        "median {}  max {}  over {} trials ({} answers 404 before the route)",
        ms(d.median_ms),
        ms(d.max_ms),
        d.trials_ms.len(),
        d.not_found
    );
    if d.failed > 0 {
        out.push_str(&format!("  FAILED {} {kinds:?}", d.failed));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_counts_failed_trials_at_their_time() {
        type Case = (&'static str, Vec<f64>, Option<f64>, Option<f64>);
        let cases: &[Case] = &[
            ("none", vec![], None, None),
            ("odd", vec![3.0, 1.0, 2.0], Some(2.0), Some(3.0)),
            ("even", vec![4.0, 1.0, 2.0, 3.0], Some(2.5), Some(4.0)),
            (
                "a failure sets the max",
                vec![2.0, 5000.0, 3.0],
                Some(3.0),
                Some(5000.0),
            ),
        ];
        for (name, trials, med, max) in cases {
            let d = summarise(trials.clone(), 0, 0);
            assert_eq!((d.median_ms, d.max_ms), (*med, *max), "{name}");
            assert_eq!(d.trials_ms.len(), trials.len(), "{name}");
        }
    }

    /// The double's side of a trial: `wait_holding` sees a held blocking catalog query, and a
    /// registration answers it at once (well before its 5 s wait) with the new service.
    #[test]
    fn double_wakes_a_blocking_query_on_registration() {
        let consul = Consul::start();
        let idx = consul.index();
        let addr = consul.addr();
        let reader = thread::spawn(move || {
            let mut s = TcpStream::connect(addr).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            let req = format!(
                "GET /v1/catalog/services?index={idx}&wait=5s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
            );
            s.write_all(req.as_bytes()).unwrap();
            let mut out = String::new();
            let _ = s.read_to_string(&mut out);
            out
        });
        wait_holding(&consul).unwrap();
        let backend: SocketAddr = "127.0.0.1:9".parse().unwrap();
        let t0 = Instant::now();
        consul.register(&registration("disc-0", "disc-0-1", GROUP, backend));
        let answer = reader.join().unwrap();
        assert!(
            t0.elapsed() < Duration::from_secs(1),
            "held past the registration"
        );
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        assert!(answer.contains("\"disc-0\""), "{answer}");
    }
}
