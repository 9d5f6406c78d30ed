//! Command-line flags (DESIGN §3). Flags override the config file; parsing errors exit 2.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "capi-ws",
    version,
    about = "WebSocket gateway for services discovered in Consul (CAPI compatible)"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub run: RunArgs,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Gateway + built-in echo backends (no Consul needed).
    Demo(RunArgs),
    /// RFC 6455 echo server (tests, bench, demo).
    Echo(EchoArgs),
    /// Validate a config file and print the effective settings.
    Check(CheckArgs),
}

/// Flags shared by `run` (the default) and `demo`.
#[derive(Debug, Args, Default, Clone)]
pub struct RunArgs {
    /// Config file (default: config/capi.yaml, else the embedded default).
    #[arg(long, global = false)]
    pub config: Option<PathBuf>,
    /// Worker threads (0 = one per available core).
    #[arg(long)]
    pub workers: Option<usize>,
    /// Pin worker i to the i-th listed CPU, e.g. `0,2-3`.
    #[arg(long, conflicts_with = "pin")]
    pub cpus: Option<String>,
    /// Pin worker i to core i.
    #[arg(long)]
    pub pin: bool,
    /// I/O driver: auto (io_uring, else epoll), iouring, epoll.
    #[arg(long)]
    pub driver: Option<String>,
    /// Listen host for WebSocket clients.
    #[arg(long)]
    pub host: Option<String>,
    /// Listen port for WebSocket clients (0 = pick a free one).
    #[arg(long)]
    pub port: Option<u16>,
    /// Admin (management) port (0 = pick a free one).
    #[arg(long)]
    pub admin_port: Option<u16>,
    /// trace | debug | info | warn | error
    #[arg(long)]
    pub log_level: Option<String>,
    /// text | json
    #[arg(long)]
    pub log_format: Option<String>,
}

#[derive(Debug, Args, Clone)]
pub struct EchoArgs {
    /// Address to listen on, e.g. 127.0.0.1:9001 (port 0 = pick a free one).
    #[arg(long)]
    pub listen: String,
    /// Worker threads (0 = one per available core).
    #[arg(long, default_value_t = 1)]
    pub workers: usize,
    /// I/O driver: auto, iouring, epoll.
    #[arg(long, default_value = "auto")]
    pub driver: String,
}

#[derive(Debug, Args, Clone)]
pub struct CheckArgs {
    #[arg(long)]
    pub config: PathBuf,
}
