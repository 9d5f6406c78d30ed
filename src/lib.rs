//! capi-ws: a thread-per-core WebSocket gateway for services discovered in Consul, compatible
//! with CAPI's WebSocket support. `main.rs` only dispatches; the pipeline lives in `data/`
//! (per-core data plane) and `control/` (blocking control-plane threads); they meet only in the
//! published [`snapshot::Snapshot`].

pub mod cli;
pub mod config;
pub mod control;
pub mod data;
pub mod demo;
pub mod echo;
pub mod logging;
pub mod rt;
pub mod snapshot;

/// Dispatch a parsed command line; returns the process exit code.
pub fn run_cli(cli: cli::Cli) -> i32 {
    match cli.command {
        Some(cli::Command::Echo(a)) => {
            logging::init("info", Default::default());
            match echo::run_echo(&a) {
                Ok(()) => 0,
                Err(e) => {
                    eprintln!("capi-ws echo: {e:#}");
                    2
                }
            }
        }
        _ => 2,
    }
}
