//! Configuration: YAML file with CAPI's key names (DESIGN §4) -> raw mirror (`file.rs`) ->
//! validated [`Settings`] (`settings.rs`) -> command-line overrides (DESIGN §3). Unknown keys are
//! tolerated and listed; wrong types or values of used keys are errors naming the key (exit 2).
//! Runs once at startup (or on `check`), never on a worker thread.

pub mod file;
pub mod settings;

use std::fmt;
use std::path::{Path, PathBuf};

pub use settings::*;

use crate::cli::{CheckArgs, RunArgs};
use file::{process_env, Env, FileConfig};

/// The default config for `capi-ws` (run) when neither `--config` nor `./config/capi.yaml` exists.
pub const EMBEDDED_DEFAULT: &str = include_str!("../../config/capi.yaml");

/// The file `resolve` reads when `--config` is not given.
pub const DEFAULT_CONFIG_PATH: &str = "config/capi.yaml";

/// Every problem found in one config file plus its flags, one per line, each starting with the
/// dotted key path or the flag name (STYLE §5).
#[derive(Debug, thiserror::Error)]
pub struct ConfigError {
    pub problems: Vec<String>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, p) in self.problems.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            f.write_str(p)?;
        }
        Ok(())
    }
}

impl ConfigError {
    fn one(problem: String) -> ConfigError {
        ConfigError {
            problems: vec![problem],
        }
    }
}

/// Parse and validate config text (placeholders read the process environment).
pub fn load_str(text: &str) -> Result<Settings, ConfigError> {
    load_str_with_env(text, &process_env)
}

/// [`load_str`] with an explicit environment for `${VAR:default}` placeholders.
pub fn load_str_with_env(text: &str, env: Env<'_>) -> Result<Settings, ConfigError> {
    let raw = FileConfig::parse(text).map_err(|problems| ConfigError { problems })?;
    Settings::from_file(&raw, env).map_err(|problems| ConfigError { problems })
}

/// Read and validate a config file; an unreadable file is one problem naming the path.
pub fn load_file(path: &Path) -> Result<Settings, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        ConfigError::one(format!("{}: cannot read config file: {e}", path.display()))
    })?;
    load_str(&text).map_err(|e| ConfigError {
        problems: e
            .problems
            .into_iter()
            .map(|p| match p.strip_prefix("(yaml)") {
                Some(rest) => format!("{}{rest}", path.display()),
                None => p,
            })
            .collect(),
    })
}

/// Where the effective config of `run`/`demo` comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigSource {
    File(PathBuf),
    Embedded,
}

impl fmt::Display for ConfigSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigSource::File(p) => write!(f, "{}", p.display()),
            ConfigSource::Embedded => f.write_str("embedded default config"),
        }
    }
}

/// `--config`, else `./config/capi.yaml` if it exists, else the embedded default.
pub fn config_source(args: &RunArgs) -> ConfigSource {
    match &args.config {
        Some(p) => ConfigSource::File(p.clone()),
        None if Path::new(DEFAULT_CONFIG_PATH).is_file() => {
            ConfigSource::File(PathBuf::from(DEFAULT_CONFIG_PATH))
        }
        None => ConfigSource::Embedded,
    }
}

/// The gateway's effective settings for `run`/`demo`: file = args.config, else
/// ./config/capi.yaml if it exists, else EMBEDDED_DEFAULT; then command-line overrides from `args`.
pub fn resolve(args: &RunArgs) -> Result<Settings, ConfigError> {
    let loaded = match config_source(args) {
        ConfigSource::File(path) => load_file(&path),
        ConfigSource::Embedded => load_str(EMBEDDED_DEFAULT),
    };
    // Report flag problems together with file problems: one run shows everything.
    let mut settings = match loaded {
        Ok(s) => s,
        Err(mut e) => {
            let mut probe = Settings::default();
            if let Err(flags) = apply_overrides(&mut probe, args) {
                e.problems.extend(flags.problems);
            }
            return Err(e);
        }
    };
    apply_overrides(&mut settings, args)?;
    Ok(settings)
}

/// Command-line flags over the file (DESIGN §3). Every bad flag is reported, each naming itself.
pub fn apply_overrides(s: &mut Settings, args: &RunArgs) -> Result<(), ConfigError> {
    let mut problems = Vec::new();
    if let Some(w) = args.workers {
        if w > MAX_WORKERS {
            problems.push(format!("--workers: expected 0..={MAX_WORKERS}, got {w}"));
        }
    }
    let file_list_len = match &s.pinning {
        Pinning::List(l) => Some(l.len()),
        _ => None,
    };
    let mut cpus_origin = file::keys::CPUS;
    if let Some(text) = &args.cpus {
        match parse_cpu_list(text) {
            Ok(list) => {
                // Workers derived from the file's list follow the new list.
                if args.workers.is_none() && file_list_len == Some(s.workers) {
                    s.workers = 0;
                }
                s.pinning = Pinning::List(list);
                cpus_origin = "--cpus";
            }
            Err(e) => problems.push(format!("--cpus: {e}")),
        }
    }
    if args.pin {
        s.pinning = Pinning::Sequential;
    }
    let mut workers_origin = file::keys::WORKERS;
    if let Some(w) = args.workers {
        s.workers = w;
        workers_origin = "--workers";
    }
    if problems.is_empty() {
        if let Err(e) = s.settle_workers(cpus_origin, workers_origin) {
            problems.push(e);
        }
    }
    if let Some(d) = &args.driver {
        match DriverChoice::parse(d) {
            Some(choice) => s.driver = choice,
            None => problems.push(format!(
                "--driver: expected auto, iouring or epoll, got {}",
                file::quote(d)
            )),
        }
    }
    if let Some(h) = &args.host {
        let t = h.trim();
        if t.is_empty() || t.contains(char::is_whitespace) {
            problems.push(format!(
                "--host: expected a host name or IP address, got {}",
                file::quote(h)
            ));
        } else {
            s.host = t.to_string();
        }
    }
    if let Some(p) = args.port {
        s.port = p;
    }
    if let Some(p) = args.admin_port {
        s.admin_port = p;
    }
    if let Some(level) = &args.log_level {
        match tracing_subscriber::EnvFilter::try_new(level.trim()) {
            Ok(_) if !level.trim().is_empty() => s.log_level = level.trim().to_string(),
            _ => problems.push(format!(
                "--log-level: expected trace, debug, info, warn, error or a filter such as \
                 capi_ws=debug, got {}",
                file::quote(level)
            )),
        }
    }
    if let Some(fmt) = &args.log_format {
        match LogFormat::parse(fmt) {
            Some(f) => s.log_format = f,
            None => problems.push(format!(
                "--log-format: expected text or json, got {}",
                file::quote(fmt)
            )),
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(ConfigError { problems })
    }
}

/// `capi-ws check --config FILE`: validate, print effective settings to stdout (readable, stable;
/// include unknown keys ignored), return exit code 0, or print the errors to stderr and return 2.
pub fn check_main(args: &CheckArgs) -> i32 {
    match load_file(&args.config) {
        Ok(settings) => {
            println!("# capi-ws check: {} is valid", args.config.display());
            print!("{settings}");
            0
        }
        Err(e) => {
            eprintln!(
                "capi-ws check: {} is invalid ({} problem(s)):",
                args.config.display(),
                e.problems.len()
            );
            eprintln!("{e}");
            2
        }
    }
}

/// `"0,2-3"` -> `[0, 2, 3]`: comma-separated CPU indexes and inclusive ranges, in the order
/// given (worker i goes to the i-th entry). Empty, reversed (`3-1`), repeated or non-numeric
/// entries are errors.
pub fn parse_cpu_list(s: &str) -> Result<Vec<usize>, String> {
    let mut out: Vec<usize> = Vec::new();
    let mut seen = std::collections::HashSet::new();
    if s.trim().is_empty() {
        return Err("expected a CPU list such as 0,2-3, got an empty value".to_string());
    }
    for part in s.split(',') {
        let part = part.trim();
        let bad = || {
            format!(
                "expected a CPU list such as 0,2-3, got {} in {}",
                file::quote(part),
                file::quote(s)
            )
        };
        let cpu = |t: &str| -> Result<usize, String> {
            let n: usize = t.trim().parse().map_err(|_| bad())?;
            if n >= MAX_CPUS {
                return Err(format!(
                    "CPU {n} is out of range (must be below {MAX_CPUS})"
                ));
            }
            Ok(n)
        };
        let (lo, hi) = match part.split_once('-') {
            Some((a, b)) => (cpu(a)?, cpu(b)?),
            None => {
                let n = cpu(part)?;
                (n, n)
            }
        };
        if lo > hi {
            return Err(format!(
                "range {} is reversed (write {hi}-{lo})",
                file::quote(part)
            ));
        }
        for c in lo..=hi {
            if !seen.insert(c) {
                return Err(format!("CPU {c} is listed twice in {}", file::quote(s)));
            }
            out.push(c);
        }
    }
    Ok(out)
}
