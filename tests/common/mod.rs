//! Black-box test harness (STYLE §6): the real `capi-ws` binary as gateway and echo node,
//! scripted in-process nodes, WebSocket/raw clients, config builder, bounded waits.
//! Included by each `tests/gw_*.rs` with `#[macro_use] mod common;`; not every test file
//! uses every helper, hence the `dead_code` allowance.
#![allow(dead_code)]

pub mod client;
pub mod config;
pub mod consul;
pub mod gateway;
pub mod jwks;
pub mod nodes;
pub mod wire;

use std::time::{Duration, Instant};

/// Polls `cond` until it holds or `timeout` passes; panics reporting `what`, the number of
/// attempts and the elapsed time. For eventual state that has no readiness signal.
pub fn eventually(what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) {
    let started = Instant::now();
    let mut attempts = 0u32;
    let mut pause = Duration::from_millis(5);
    loop {
        attempts += 1;
        if cond() {
            return;
        }
        let elapsed = started.elapsed();
        if elapsed >= timeout {
            panic!("not true after {attempts} attempts in {elapsed:?}: {what}");
        }
        std::thread::sleep(pause.min(timeout - elapsed));
        pause = (pause * 2).min(Duration::from_millis(100));
    }
}

/// Runs each listed `fn name(driver: &str)` as two tests, `iouring::name` and `epoll::name`
/// (DESIGN §1: every data-path test under both drivers). Invoke once per file.
macro_rules! drivers {
    ($($name:ident),+ $(,)?) => {
        mod iouring {
            $(
                #[test]
                fn $name() {
                    super::$name("iouring")
                }
            )+
        }
        mod epoll {
            $(
                #[test]
                fn $name() {
                    super::$name("epoll")
                }
            )+
        }
    };
}
