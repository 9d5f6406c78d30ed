//! Configuration: YAML file with CAPI's key names (DESIGN §4) -> raw mirror (`file.rs`) ->
//! validated [`Settings`] (`settings.rs`) -> command-line overrides (DESIGN §3). Unknown keys are
//! tolerated and listed; wrong types or values of used keys are errors naming the key (exit 2).
//! Runs once at startup (or on `check`), never on a worker thread.

pub mod consul;
pub mod file;
pub mod oauth2;
pub mod ops;
pub mod settings;

use std::fmt;
use std::path::{Path, PathBuf};

pub use oauth2::{KeySource, OAuth2Settings};
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
    let text = std::fs::read_to_string(path)
        .map_err(|e| ConfigError::one(format!("{}: cannot read config file: {e}", path.display())))?;
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
                return Err(format!("CPU {n} is out of range (must be below {MAX_CPUS})"));
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_lists() {
        type Case = (&'static str, &'static str, Result<Vec<usize>, &'static str>);
        let cases: &[Case] = &[
            ("single", "0", Ok(vec![0])),
            ("list_and_range", "0,2-3", Ok(vec![0, 2, 3])),
            ("order_kept", "3,1", Ok(vec![3, 1])),
            ("spaces", " 1 , 4 - 5 ", Ok(vec![1, 4, 5])),
            ("one_element_range", "2-2", Ok(vec![2])),
            ("reversed", "3-1", Err("reversed")),
            ("word", "a", Err("got \"a\"")),
            ("empty", "", Err("empty value")),
            ("blank", "  ", Err("empty value")),
            ("trailing_comma", "1,", Err("got \"\"")),
            ("open_range", "1-", Err("got \"1-\"")),
            ("negative", "-1", Err("got \"-1\"")),
            ("duplicate", "1,0-2", Err("CPU 1 is listed twice")),
            ("too_big", "0-9000", Err("CPU 9000 is out of range")),
        ];
        for (name, input, want) in cases {
            let got = parse_cpu_list(input);
            match (want, &got) {
                (Ok(w), Ok(g)) => assert_eq!(g, w, "case {name}"),
                (Err(w), Err(g)) => assert!(g.contains(w), "case {name}: {g}"),
                _ => panic!("case {name}: got {got:?}, want {want:?}"),
            }
        }
    }

    #[test]
    fn overrides_apply_over_the_file() {
        type Check = fn(&Settings) -> bool;
        let file_cpus = "capi.websocket.cpus: [4, 5]";
        let cases: &[(&str, &str, RunArgs, Check)] = &[
            ("none", "", RunArgs::default(), |s| {
                s.workers == 0 && s.pinning == Pinning::None && s.port == 8382
            }),
            (
                "workers",
                "capi.websocket.workers: 2",
                RunArgs {
                    workers: Some(6),
                    ..Default::default()
                },
                |s| s.workers == 6,
            ),
            (
                "cpus_sets_workers",
                "",
                RunArgs {
                    cpus: Some("0,2-3".into()),
                    ..Default::default()
                },
                |s| s.pinning == Pinning::List(vec![0, 2, 3]) && s.workers == 3,
            ),
            (
                "cpus_with_fewer_workers",
                "",
                RunArgs {
                    cpus: Some("0-3".into()),
                    workers: Some(2),
                    ..Default::default()
                },
                |s| s.pinning == Pinning::List(vec![0, 1, 2, 3]) && s.workers == 2,
            ),
            (
                "cpus_replace_file_list",
                file_cpus,
                RunArgs {
                    cpus: Some("0-2".into()),
                    ..Default::default()
                },
                |s| s.pinning == Pinning::List(vec![0, 1, 2]) && s.workers == 3,
            ),
            (
                "pin_replaces_file_list",
                file_cpus,
                RunArgs {
                    pin: true,
                    ..Default::default()
                },
                |s| s.pinning == Pinning::Sequential && s.workers == 2,
            ),
            (
                "pin",
                "",
                RunArgs {
                    pin: true,
                    ..Default::default()
                },
                |s| s.pinning == Pinning::Sequential && s.workers == 0,
            ),
            (
                "file_list_fewer_workers_flag",
                file_cpus,
                RunArgs {
                    workers: Some(1),
                    ..Default::default()
                },
                |s| s.workers == 1 && s.pinning == Pinning::List(vec![4, 5]),
            ),
            (
                "driver",
                "",
                RunArgs {
                    driver: Some("EPOLL".into()),
                    ..Default::default()
                },
                |s| s.driver == DriverChoice::Epoll,
            ),
            (
                "driver_iouring",
                "",
                RunArgs {
                    driver: Some("io_uring".into()),
                    ..Default::default()
                },
                |s| s.driver == DriverChoice::IoUring,
            ),
            (
                "host_port_admin",
                "capi.websocket.server: {host: a, port: 1}\nmanagement.server.port: 2",
                RunArgs {
                    host: Some("127.0.0.1".into()),
                    port: Some(0),
                    admin_port: Some(0),
                    ..Default::default()
                },
                |s| s.host == "127.0.0.1" && s.port == 0 && s.admin_port == 0,
            ),
            (
                "log",
                "",
                RunArgs {
                    log_level: Some("capi_ws=debug".into()),
                    log_format: Some("json".into()),
                    ..Default::default()
                },
                |s| s.log_level == "capi_ws=debug" && s.log_format == LogFormat::Json,
            ),
        ];
        for (name, text, args, check) in cases {
            let mut s = load_str_with_env(text, &|_| None).unwrap();
            match apply_overrides(&mut s, args) {
                Ok(()) => assert!(check(&s), "case {name}: {s:?}"),
                Err(e) => panic!("case {name}: {e}"),
            }
        }
    }

    #[test]
    fn bad_flags_name_the_flag_and_are_all_reported() {
        let cases: &[(&str, &str, RunArgs, &[&str])] = &[
            (
                "cpus_bad",
                "",
                RunArgs {
                    cpus: Some("3-1".into()),
                    ..Default::default()
                },
                &["--cpus: range"],
            ),
            (
                "cpus_empty",
                "",
                RunArgs {
                    cpus: Some(String::new()),
                    ..Default::default()
                },
                &["--cpus: expected"],
            ),
            (
                "cpus_too_few",
                "",
                RunArgs {
                    cpus: Some("0".into()),
                    workers: Some(2),
                    ..Default::default()
                },
                &["--cpus: lists 1 CPU(s) but --workers asks for 2 workers"],
            ),
            (
                "file_cpus_too_few_for_flag",
                "capi.websocket.cpus: [0]",
                RunArgs {
                    workers: Some(3),
                    ..Default::default()
                },
                &["capi.websocket.cpus: lists 1 CPU(s) but --workers asks for 3"],
            ),
            (
                "workers_big",
                "",
                RunArgs {
                    workers: Some(100_000),
                    ..Default::default()
                },
                &["--workers: expected"],
            ),
            (
                "driver",
                "",
                RunArgs {
                    driver: Some("kqueue".into()),
                    ..Default::default()
                },
                &["--driver: expected auto, iouring or epoll, got \"kqueue\""],
            ),
            (
                "host",
                "",
                RunArgs {
                    host: Some(" ".into()),
                    ..Default::default()
                },
                &["--host: expected"],
            ),
            (
                "log_level",
                "",
                RunArgs {
                    log_level: Some("=[".into()),
                    ..Default::default()
                },
                &["--log-level: expected"],
            ),
            (
                "log_format",
                "",
                RunArgs {
                    log_format: Some("xml".into()),
                    ..Default::default()
                },
                &["--log-format: expected text or json"],
            ),
            (
                "several",
                "",
                RunArgs {
                    driver: Some("x".into()),
                    log_format: Some("y".into()),
                    cpus: Some("a".into()),
                    ..Default::default()
                },
                &["--cpus:", "--driver:", "--log-format:"],
            ),
        ];
        for (name, text, args, want) in cases {
            let mut s = load_str_with_env(text, &|_| None).unwrap();
            let err = apply_overrides(&mut s, args).expect_err(name);
            assert_eq!(err.problems.len(), want.len(), "case {name}: {err}");
            for (p, w) in err.problems.iter().zip(want.iter()) {
                assert!(p.starts_with(w), "case {name}: {p:?} does not start with {w:?}");
            }
        }
    }

    #[test]
    fn error_display_is_one_problem_per_line() {
        let e = load_str_with_env("capi.mode: rest\ncapi.websocket.server.port: x\n", &|_| None).unwrap_err();
        let text = e.to_string();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2, "{text}");
        assert!(lines[0].starts_with("capi.mode: "));
        assert!(lines[1].starts_with("capi.websocket.server.port: "));
    }

    #[test]
    fn load_file_names_the_path() {
        // 1. a missing file is one problem naming the path;
        // 2. a YAML syntax error names the path and the position;
        // 3. a good file loads.
        let dir = std::env::temp_dir().join(format!("capi-ws-config-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let missing = dir.join("missing.yaml");
        let err = load_file(&missing).unwrap_err();
        assert_eq!(err.problems.len(), 1);
        assert!(err.problems[0].starts_with(&format!("{}: cannot read", missing.display())));

        let broken = dir.join("broken.yaml");
        std::fs::write(&broken, "capi:\n  mode: [websocket\n").unwrap();
        let err = load_file(&broken).unwrap_err();
        assert!(
            err.problems[0].starts_with(&format!("{}: invalid YAML at line", broken.display())),
            "{err}"
        );

        let good = dir.join("good.yaml");
        std::fs::write(&good, "capi.websocket.server.port: 1234\n").unwrap();
        assert_eq!(load_file(&good).unwrap().port, 1234);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn embedded_default_is_valid_and_matches_the_defaults() {
        let s = load_str_with_env(EMBEDDED_DEFAULT, &|_| None).unwrap();
        assert_eq!(format!("{s:?}"), format!("{:?}", Settings::default()));
    }

    #[test]
    fn resolve_uses_the_given_file_then_flags() {
        let dir = std::env::temp_dir().join(format!("capi-ws-resolve-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("c.yaml");
        std::fs::write(&path, "capi.websocket.server.port: 1234\ncapi.namespace: x\n").unwrap();
        let args = RunArgs {
            config: Some(path.clone()),
            port: Some(0),
            ..Default::default()
        };
        let s = resolve(&args).unwrap();
        assert_eq!((s.port, s.namespace.as_deref()), (0, Some("x")));

        // File and flag problems come together.
        std::fs::write(&path, "capi.mode: rest\n").unwrap();
        let args = RunArgs {
            config: Some(path),
            driver: Some("nope".into()),
            ..Default::default()
        };
        let err = resolve(&args).unwrap_err();
        assert_eq!(err.problems.len(), 2, "{err}");
        assert!(err.problems[0].starts_with("capi.mode:"));
        assert!(err.problems[1].starts_with("--driver:"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
