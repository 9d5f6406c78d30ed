//! `capi.consul.*` (DESIGN §4, §7): the Consul hosts with their ACL tokens, the discovery switch
//! and timer, plus two capi-ws knobs (longest blocking wait, error back-off cap). Raw values from
//! the file mirror in, a validated [`ConsulSettings`] out; tokens are kept in a [`Secret`] that
//! never prints. Read once at startup, never on a worker thread.

use std::fmt;

use serde_yaml::Value;

use super::file::{describe, entry_fields, keys, quote, read_bool, read_text, read_uint, Env, FileConfig};

/// `capi.consul.discovery.timer.interval` default (ms): the value of DESIGN §4's example (CAPI's
/// packaged `application.yaml` uses 30000). Upper bound on how stale health information gets.
pub const DEFAULT_INTERVAL_MS: u64 = 20_000;
/// `capi.consul.discovery.max-wait-ms` default: Consul's own default `wait` (5 min).
pub const DEFAULT_MAX_WAIT_MS: u64 = 300_000;
/// Consul caps `wait` at 10 min (the agent's `max_query_time`).
pub const MAX_MAX_WAIT_MS: u64 = 600_000;
/// `capi.consul.discovery.retry-max-ms` default: error back-off cap (DESIGN §5 uses 10 s for
/// JWKS sources too).
pub const DEFAULT_RETRY_MAX_MS: u64 = 10_000;
/// Lower bound for the intervals: below this the sync only burns CPU and Consul's patience.
pub const MIN_INTERVAL_MS: u64 = 100;

/// A secret (ACL token): `Debug` and `Display` print `***`, never the value (STYLE §5).
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Secret {
        Secret(s.into())
    }

    /// The value, for the one place that sends it (the `X-Consul-Token` header).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// One Consul agent or server the gateway reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsulHost {
    /// `http://host[:port]`, without a trailing slash (the API paths are appended).
    pub endpoint: String,
    /// Its own token, else `capi.consul.token`; `None` = anonymous.
    pub token: Option<Secret>,
}

/// Validated `capi.consul.*`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsulSettings {
    /// `capi.consul.discovery.enabled` (default false, as CAPI: discovery only when asked).
    pub enabled: bool,
    pub hosts: Vec<ConsulHost>,
    /// Health is re-read at least this often (ms).
    pub interval_ms: u64,
    /// Longest blocking `wait` sent to Consul (ms).
    pub max_wait_ms: u64,
    /// Cap of the exponential back-off after errors (ms).
    pub retry_max_ms: u64,
}

impl Default for ConsulSettings {
    fn default() -> Self {
        ConsulSettings {
            enabled: false,
            hosts: Vec::new(),
            interval_ms: DEFAULT_INTERVAL_MS,
            max_wait_ms: DEFAULT_MAX_WAIT_MS,
            retry_max_ms: DEFAULT_RETRY_MAX_MS,
        }
    }
}

const HOST_FIELDS: [&str; 2] = ["endpoint", "token"];

impl ConsulSettings {
    /// Read `capi.consul.*` from the file; problems name their key, unknown fields of a host
    /// entry go to `unknown`.
    pub fn from_file(
        file: &FileConfig,
        env: Env<'_>,
        unknown: &mut Vec<String>,
        problems: &mut Vec<String>,
    ) -> ConsulSettings {
        let mut s = ConsulSettings::default();
        let text = |key: &str, problems: &mut Vec<String>| -> Option<String> {
            match read_text(file.get(key)?, env) {
                Ok(t) => t.map(|t| t.trim().to_string()).filter(|t| !t.is_empty()),
                Err(e) => {
                    problems.push(format!("{key}: {e}"));
                    None
                }
            }
        };
        let default_token = text(keys::CONSUL_TOKEN, problems).map(Secret::new);
        if let Some(raw) = file.get(keys::CONSUL_HOSTS) {
            s.hosts = read_hosts(raw, env, default_token.as_ref(), unknown, problems);
        }
        if let Some(v) = file.get(keys::CONSUL_ENABLED) {
            match read_bool(v, env) {
                Ok(b) => s.enabled = b.unwrap_or(false),
                Err(e) => problems.push(format!("{}: {e}", keys::CONSUL_ENABLED)),
            }
        }
        let ms = |key: &str, lo: u64, hi: u64, problems: &mut Vec<String>| -> Option<u64> {
            let what = format!("a number of milliseconds {lo}..={hi}");
            match read_uint(file.get(key)?, env, &what) {
                Ok(Some(n)) if (lo..=hi).contains(&n) => Some(n),
                Ok(Some(n)) => {
                    problems.push(format!("{key}: expected {what}, got {n}"));
                    None
                }
                Ok(None) => None,
                Err(e) => {
                    problems.push(format!("{key}: {e}"));
                    None
                }
            }
        };
        let max = super::MAX_TIMEOUT_MS;
        if let Some(n) = ms(keys::CONSUL_INTERVAL, MIN_INTERVAL_MS, max, problems) {
            s.interval_ms = n;
        }
        if let Some(n) = ms(
            keys::CONSUL_MAX_WAIT_MS,
            MIN_INTERVAL_MS,
            MAX_MAX_WAIT_MS,
            problems,
        ) {
            s.max_wait_ms = n;
        }
        if let Some(n) = ms(keys::CONSUL_RETRY_MAX_MS, 10, max, problems) {
            s.retry_max_ms = n;
        }
        if s.enabled && s.hosts.is_empty() && file.get(keys::CONSUL_HOSTS).is_none() {
            problems.push(format!(
                "{}: required when {} is true (e.g. http://localhost:8500)",
                keys::CONSUL_HOSTS,
                keys::CONSUL_ENABLED
            ));
        }
        s
    }

    /// Lines for `capi-ws check` (tokens masked).
    pub fn write_lines(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{}: {}", keys::CONSUL_ENABLED, self.enabled)?;
        writeln!(f, "{}: {} host(s)", keys::CONSUL_HOSTS, self.hosts.len())?;
        for h in &self.hosts {
            let token = if h.token.is_some() {
                "token set"
            } else {
                "no token"
            };
            writeln!(f, "  - {} ({token})", h.endpoint)?;
        }
        writeln!(f, "{}: {}", keys::CONSUL_INTERVAL, self.interval_ms)?;
        writeln!(f, "{}: {}", keys::CONSUL_MAX_WAIT_MS, self.max_wait_ms)?;
        writeln!(f, "{}: {}", keys::CONSUL_RETRY_MAX_MS, self.retry_max_ms)
    }
}

/// `capi.consul.hosts`: a list of `{endpoint, token}` maps or of strings, or one comma list.
fn read_hosts(
    raw: &Value,
    env: Env<'_>,
    default_token: Option<&Secret>,
    unknown: &mut Vec<String>,
    problems: &mut Vec<String>,
) -> Vec<ConsulHost> {
    let key = keys::CONSUL_HOSTS;
    let mut out: Vec<ConsulHost> = Vec::new();
    let mut push = |path: String, endpoint: &str, token: Option<Secret>, problems: &mut Vec<String>| {
        match normalise_endpoint(endpoint) {
            Ok(e) if out.iter().any(|h| h.endpoint == e) => {
                problems.push(format!("{path}: {} is listed twice", quote(&e)))
            }
            Ok(endpoint) => out.push(ConsulHost {
                endpoint,
                token: token.or_else(|| default_token.cloned()),
            }),
            Err(e) => problems.push(format!("{path}: {e}")),
        }
    };
    let comma_list = |text: &str| -> Vec<String> {
        text.split(',')
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .map(str::to_string)
            .collect()
    };
    match raw {
        Value::Sequence(items) => {
            for (i, item) in items.iter().enumerate() {
                let path = format!("{key}[{i}]");
                match item {
                    Value::Mapping(map) => {
                        let fields = entry_fields(map, &path, &HOST_FIELDS, unknown, problems);
                        let field = |name: &str, problems: &mut Vec<String>| -> Option<String> {
                            match read_text(fields.get(name)?, env) {
                                Ok(t) => t.map(|t| t.trim().to_string()).filter(|t| !t.is_empty()),
                                Err(e) => {
                                    problems.push(format!("{path}.{name}: {e}"));
                                    None
                                }
                            }
                        };
                        let token = field("token", problems).map(Secret::new);
                        match field("endpoint", problems) {
                            Some(e) => push(format!("{path}.endpoint"), &e, token, problems),
                            None => problems.push(format!("{path}.endpoint: missing (required)")),
                        }
                    }
                    Value::Sequence(_) => problems.push(format!(
                        "{path}: expected an endpoint or {{endpoint, token}}, got {}",
                        describe(item)
                    )),
                    scalar => match read_text(scalar, env) {
                        Ok(Some(t)) => {
                            for e in comma_list(&t) {
                                push(path.clone(), &e, None, problems);
                            }
                        }
                        Ok(None) => {}
                        Err(e) => problems.push(format!("{path}: {e}")),
                    },
                }
            }
        }
        Value::Mapping(_) => problems.push(format!(
            "{key}: expected a list of endpoints or of {{endpoint, token}}, got {}",
            describe(raw)
        )),
        scalar => match read_text(scalar, env) {
            Ok(Some(t)) => {
                for e in comma_list(&t) {
                    push(key.to_string(), &e, None, problems);
                }
            }
            Ok(None) => {}
            Err(e) => problems.push(format!("{key}: {e}")),
        },
    }
    out
}

/// `http(s)://host[:port][/]` -> `http(s)://host[:port]`. The API lives at the root, so a path
/// is an error. https is verified against the bundled web PKI roots (ureq with rustls).
pub fn normalise_endpoint(raw: &str) -> Result<String, String> {
    let t = raw.trim();
    let lower = t.to_ascii_lowercase();
    let (scheme, rest) = if lower.starts_with("https://") {
        ("https", &t[8..])
    } else if lower.starts_with("http://") {
        ("http", &t[7..])
    } else {
        return Err(format!("expected an http(s)://host[:port] URL, got {}", quote(t)));
    };
    let authority = rest.trim_end_matches('/');
    let bad = authority.is_empty()
        || authority.contains(['/', '?', '#', '@'])
        || authority.contains(char::is_whitespace);
    if bad {
        return Err(format!(
            "expected an http(s)://host[:port] URL (no path, query or credentials), got {}",
            quote(t)
        ));
    }
    let port = match authority.strip_prefix('[') {
        Some(v6) => match v6.split_once(']') {
            Some((_, "")) => None,
            Some((_, after)) => Some(after.strip_prefix(':').unwrap_or(after)),
            None => Some(""),
        },
        None => authority.split_once(':').map(|(_, p)| p),
    };
    if let Some(port) = port {
        if !port.parse::<u16>().is_ok_and(|p| p > 0) {
            return Err(format!("bad port {} in {}", quote(port), quote(t)));
        }
    }
    Ok(format!("{scheme}://{authority}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_env(name: &str) -> Option<String> {
        (name == "TOK").then(|| "from-env".to_string())
    }

    fn load(text: &str) -> (ConsulSettings, Vec<String>, Vec<String>) {
        let file = FileConfig::parse(text).unwrap();
        let mut unknown = Vec::new();
        let mut problems = Vec::new();
        let s = ConsulSettings::from_file(&file, &no_env, &mut unknown, &mut problems);
        (s, unknown, problems)
    }

    fn hosts(s: &ConsulSettings) -> Vec<(String, Option<String>)> {
        s.hosts
            .iter()
            .map(|h| {
                (
                    h.endpoint.clone(),
                    h.token.as_ref().map(|t| t.expose().to_string()),
                )
            })
            .collect()
    }

    #[test]
    fn host_forms() {
        type Case = (
            &'static str,
            &'static str,
            Vec<(&'static str, Option<&'static str>)>,
        );
        let cases: Vec<Case> = vec![
            ("string", "capi.consul.hosts: http://a:8500", vec![("http://a:8500", None)]),
            (
                "comma_list_with_old_token",
                "capi.consul: {hosts: \"http://a:8500, http://b:8500/\", token: t0}",
                vec![("http://a:8500", Some("t0")), ("http://b:8500", Some("t0"))],
            ),
            (
                "maps",
                "capi.consul:\n  token: t0\n  hosts:\n    - {endpoint: http://a:1, token: t1}\n    - endpoint: http://b:2\n",
                vec![("http://a:1", Some("t1")), ("http://b:2", Some("t0"))],
            ),
            (
                "list_of_strings",
                "capi.consul.hosts: [http://a:1, \"http://b:2,http://c:3\"]",
                vec![("http://a:1", None), ("http://b:2", None), ("http://c:3", None)],
            ),
            (
                "env_token_and_empty_token",
                "capi.consul:\n  hosts: [{endpoint: http://a:1, token: \"${TOK}\"}, {endpoint: http://b:1, token: \"\"}]\n",
                vec![("http://a:1", Some("from-env")), ("http://b:1", None)],
            ),
            ("ipv6", "capi.consul.hosts: \"http://[::1]:8500\"", vec![("http://[::1]:8500", None)]),
            ("no_port", "capi.consul.hosts: http://consul", vec![("http://consul", None)]),
        ];
        for (name, text, want) in cases {
            let (s, unknown, problems) = load(text);
            assert!(problems.is_empty(), "case {name}: {problems:?}");
            assert!(unknown.is_empty(), "case {name}: {unknown:?}");
            let want: Vec<(String, Option<String>)> = want
                .into_iter()
                .map(|(e, t)| (e.to_string(), t.map(str::to_string)))
                .collect();
            assert_eq!(hosts(&s), want, "case {name}");
        }
    }

    #[test]
    fn discovery_keys() {
        let (s, _, problems) = load(
            "capi.consul:\n  hosts: http://a:1\n  discovery:\n    enabled: \"true\"\n    timer: {interval: 500}\n    max-wait-ms: 2000\n    retry-max-ms: 300\n",
        );
        assert!(problems.is_empty(), "{problems:?}");
        assert!(s.enabled);
        assert_eq!((s.interval_ms, s.max_wait_ms, s.retry_max_ms), (500, 2000, 300));
        let (d, _, _) = load("");
        assert_eq!(d, ConsulSettings::default());
    }

    #[test]
    fn problems_name_their_key() {
        let cases: &[(&str, &str, &str)] = &[
            (
                "ftp",
                "capi.consul.hosts: ftp://a:8501",
                "capi.consul.hosts: expected an http(s)://host[:port] URL",
            ),
            (
                "no_scheme",
                "capi.consul.hosts: a:8500",
                "capi.consul.hosts: expected an http(s)://host[:port] URL",
            ),
            (
                "path",
                "capi.consul.hosts: http://a:1/v1",
                "capi.consul.hosts: expected an http(s)://host[:port] URL (no path",
            ),
            (
                "bad_port",
                "capi.consul.hosts: http://a:x",
                "capi.consul.hosts: bad port",
            ),
            (
                "twice",
                "capi.consul.hosts: http://a:1,http://a:1/",
                "capi.consul.hosts: \"http://a:1\" is listed twice",
            ),
            (
                "missing_endpoint",
                "capi.consul.hosts: [{token: t}]",
                "capi.consul.hosts[0].endpoint: missing",
            ),
            (
                "map",
                "capi.consul.hosts: {endpoint: http://a:1}",
                "capi.consul.hosts: expected a list",
            ),
            (
                "enabled_without_hosts",
                "capi.consul.discovery.enabled: true",
                "capi.consul.hosts: required when",
            ),
            (
                "enabled_not_bool",
                "capi.consul.discovery.enabled: yes",
                "capi.consul.discovery.enabled: expected true or false",
            ),
            (
                "interval_small",
                "capi.consul.discovery.timer.interval: 5",
                "capi.consul.discovery.timer.interval: expected a number of milliseconds 100..=",
            ),
            (
                "wait_big",
                "capi.consul.discovery.max-wait-ms: 600001",
                "capi.consul.discovery.max-wait-ms: expected",
            ),
        ];
        for (name, text, want) in cases {
            let (_, _, problems) = load(text);
            assert_eq!(problems.len(), 1, "case {name}: {problems:?}");
            assert!(problems[0].starts_with(want), "case {name}: {:?}", problems[0]);
        }
    }

    #[test]
    fn unknown_host_fields_are_listed_and_tokens_never_print() {
        let (s, unknown, problems) =
            load("capi.consul.hosts: [{endpoint: http://a:1, token: s3cret, dc: x}]");
        assert!(problems.is_empty());
        assert_eq!(unknown, ["capi.consul.hosts[0].dc"]);
        assert!(!format!("{s:?}").contains("s3cret"));
    }
}

#[cfg(test)]
mod endpoint_tests {
    use super::normalise_endpoint;

    #[test]
    fn http_and_https_endpoints() {
        let cases = [
            ("http://a:8500/", Ok("http://a:8500".to_string())),
            (
                "HTTPS://consul.example:8501",
                Ok("https://consul.example:8501".to_string()),
            ),
            ("https://[::1]:8501", Ok("https://[::1]:8501".to_string())),
        ];
        for (raw, want) in cases {
            assert_eq!(normalise_endpoint(raw), want, "{raw}");
        }
        assert!(normalise_endpoint("https://a/v1").is_err());
        assert!(normalise_endpoint("ftp://a").is_err());
    }
}
