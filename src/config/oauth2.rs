//! `capi.oauth2.*` (DESIGN §5, §12): the token cookie, the verification key sources (JWKS URLs,
//! JWKS files, PEM files; plain strings or `{source, issuer, audience}` maps), refresh interval,
//! leeway and close-on-expiry. Validated here, read by the JWKS threads and the snapshot
//! builder; never on a worker thread.

use std::fmt;

use serde_yaml::Value;

use super::file::{describe, entry_fields, keys, quote, read_bool, read_text, read_uint, Env, FileConfig};

/// `capi.oauth2.provider.refresh-interval` default (DESIGN §5): 5 minutes.
pub const DEFAULT_REFRESH_INTERVAL_MS: u64 = 300_000;
/// Smallest refresh interval accepted: below a second a JWKS endpoint would be hammered.
pub const MIN_REFRESH_INTERVAL_MS: u64 = 1_000;
/// `capi.oauth2.leeway-ms` default: clock skew tolerated on `exp`/`nbf` at the upgrade.
pub const DEFAULT_LEEWAY_MS: u64 = 5_000;
/// Largest leeway accepted ("small", DESIGN §5): 5 minutes.
pub const MAX_LEEWAY_MS: u64 = 300_000;
/// `capi.oauth2.token-cache-size` default: verified tokens remembered per worker.
pub const DEFAULT_TOKEN_CACHE_SIZE: u64 = 10_000;
const MAX_TOKEN_CACHE_SIZE: u64 = 10_000_000;
/// Upper bound for `expiry-grace-ms`: one day.
pub const MAX_EXPIRY_GRACE_MS: u64 = 86_400_000;

/// One entry of `capi.oauth2.provider.keys`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeySource {
    /// `http(s)://…` JWKS URL, or a path to a JWKS (JSON) or PEM public-key file.
    pub source: String,
    /// When set, a token verified with this source's keys must carry exactly this `iss`.
    pub issuer: Option<String>,
    /// When set, the token's `aud` must contain this value.
    pub audience: Option<String>,
}

impl KeySource {
    pub fn is_url(&self) -> bool {
        let s = self.source.to_ascii_lowercase();
        s.starts_with("http://") || s.starts_with("https://")
    }
}

/// Validated `capi.oauth2` settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OAuth2Settings {
    /// Cookie carrying the access token (third token source).
    pub cookie_name: Option<String>,
    /// `capi.oauth2.provider.enabled`; false = no keys, secured services answer 401.
    pub enabled: bool,
    pub sources: Vec<KeySource>,
    pub refresh_interval_ms: u64,
    pub leeway_ms: u64,
    /// Beyond CAPI: close relayed connections when the token's `exp` (+ grace) passes.
    pub close_on_expiry: bool,
    pub expiry_grace_ms: u64,
    /// Verified tokens each worker remembers (0 = no cache).
    pub token_cache_size: u64,
}

impl Default for OAuth2Settings {
    fn default() -> Self {
        OAuth2Settings {
            cookie_name: None,
            enabled: false,
            sources: Vec::new(),
            refresh_interval_ms: DEFAULT_REFRESH_INTERVAL_MS,
            leeway_ms: DEFAULT_LEEWAY_MS,
            close_on_expiry: false,
            expiry_grace_ms: 0,
            token_cache_size: DEFAULT_TOKEN_CACHE_SIZE,
        }
    }
}

impl OAuth2Settings {
    /// The sources the JWKS threads load: none when the provider is disabled.
    pub fn active_sources(&self) -> &[KeySource] {
        if self.enabled {
            &self.sources
        } else {
            &[]
        }
    }

    /// Read every `capi.oauth2.*` key of `file`, appending problems (each naming its key).
    pub fn from_file(
        file: &FileConfig,
        env: Env<'_>,
        unknown: &mut Vec<String>,
        problems: &mut Vec<String>,
    ) -> OAuth2Settings {
        let mut s = OAuth2Settings::default();
        let mut problem = |key: &str, msg: String| problems.push(format!("{key}: {msg}"));
        if let Some(v) = file.get(keys::OAUTH2_COOKIE_NAME) {
            match read_text(v, env) {
                Ok(t) => {
                    let t = t.unwrap_or_default();
                    let t = t.trim();
                    if t.contains([';', '=', ',']) || t.contains(char::is_whitespace) {
                        problem(
                            keys::OAUTH2_COOKIE_NAME,
                            format!("not a valid cookie name: {}", quote(t)),
                        );
                    } else if !t.is_empty() {
                        s.cookie_name = Some(t.to_string());
                    }
                }
                Err(e) => problem(keys::OAUTH2_COOKIE_NAME, e),
            }
        }
        if let Some(v) = file.get(keys::OAUTH2_ENABLED) {
            match read_bool(v, env) {
                Ok(b) => s.enabled = b.unwrap_or(false),
                Err(e) => problem(keys::OAUTH2_ENABLED, e),
            }
        }
        let uint = |key: &str, lo: u64, hi: u64, problems: &mut dyn FnMut(&str, String)| {
            let what = format!("a number of milliseconds {lo}..={hi}");
            match file.get(key).map(|v| read_uint(v, env, &what)) {
                None | Some(Ok(None)) => None,
                Some(Ok(Some(n))) if (lo..=hi).contains(&n) => Some(n),
                Some(Ok(Some(n))) => {
                    problems(key, format!("expected {what}, got {n}"));
                    None
                }
                Some(Err(e)) => {
                    problems(key, e);
                    None
                }
            }
        };
        if let Some(n) = uint(
            keys::OAUTH2_REFRESH_INTERVAL,
            MIN_REFRESH_INTERVAL_MS,
            super::MAX_TIMEOUT_MS,
            &mut problem,
        ) {
            s.refresh_interval_ms = n;
        }
        if let Some(n) = uint(keys::OAUTH2_LEEWAY_MS, 0, MAX_LEEWAY_MS, &mut problem) {
            s.leeway_ms = n;
        }
        if let Some(n) = uint(keys::OAUTH2_EXPIRY_GRACE_MS, 0, MAX_EXPIRY_GRACE_MS, &mut problem) {
            s.expiry_grace_ms = n;
        }
        match file
            .get(keys::OAUTH2_TOKEN_CACHE_SIZE)
            .map(|v| read_uint(v, env, "a number of tokens"))
        {
            Some(Ok(Some(n))) if n <= MAX_TOKEN_CACHE_SIZE => s.token_cache_size = n,
            Some(Ok(Some(n))) => problem(
                keys::OAUTH2_TOKEN_CACHE_SIZE,
                format!("expected a number of tokens 0..={MAX_TOKEN_CACHE_SIZE}, got {n}"),
            ),
            Some(Err(e)) => problem(keys::OAUTH2_TOKEN_CACHE_SIZE, e),
            None | Some(Ok(None)) => {}
        }
        if let Some(v) = file.get(keys::OAUTH2_CLOSE_ON_EXPIRY) {
            match read_bool(v, env) {
                Ok(b) => s.close_on_expiry = b.unwrap_or(false),
                Err(e) => problem(keys::OAUTH2_CLOSE_ON_EXPIRY, e),
            }
        }
        if let Some(v) = file.get(keys::OAUTH2_KEYS) {
            s.sources = read_sources(v, env, unknown, problems);
        }
        s
    }
}

const SOURCE_FIELDS: [&str; 3] = ["source", "issuer", "audience"];

/// `capi.oauth2.provider.keys`: a list of strings or `{source, issuer, audience}` maps, or one
/// comma-separated string.
fn read_sources(
    raw: &Value,
    env: Env<'_>,
    unknown: &mut Vec<String>,
    problems: &mut Vec<String>,
) -> Vec<KeySource> {
    let key = keys::OAUTH2_KEYS;
    let plain = |text: &str| KeySource {
        source: text.trim().to_string(),
        issuer: None,
        audience: None,
    };
    let items = match raw {
        Value::Sequence(items) => items,
        Value::Mapping(_) => {
            return read_source_map(raw, key, env, unknown, problems)
                .into_iter()
                .collect()
        }
        scalar => {
            return match read_text(scalar, env) {
                Ok(t) => t
                    .unwrap_or_default()
                    .split(',')
                    .filter(|p| !p.trim().is_empty())
                    .map(plain)
                    .collect(),
                Err(e) => {
                    problems.push(format!("{key}: {e}"));
                    Vec::new()
                }
            }
        }
    };
    let mut out = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let path = format!("{key}[{i}]");
        match item {
            Value::Mapping(_) => out.extend(read_source_map(item, &path, env, unknown, problems)),
            Value::Sequence(_) => problems.push(format!(
                "{path}: expected a URL, a file path or a map {{source, issuer, audience}}, got {}",
                describe(item)
            )),
            scalar => match read_text(scalar, env) {
                Ok(Some(t)) if !t.trim().is_empty() => out.push(plain(&t)),
                Ok(_) => {}
                Err(e) => problems.push(format!("{path}: {e}")),
            },
        }
    }
    out
}

fn read_source_map(
    raw: &Value,
    path: &str,
    env: Env<'_>,
    unknown: &mut Vec<String>,
    problems: &mut Vec<String>,
) -> Option<KeySource> {
    let Value::Mapping(map) = raw else {
        return None;
    };
    let before = problems.len();
    let fields = entry_fields(map, path, &SOURCE_FIELDS, unknown, problems);
    let mut text = |field: &str| -> Option<String> {
        let v = fields.get(field)?;
        match read_text(v, env) {
            Ok(t) => t.map(|t| t.trim().to_string()).filter(|t| !t.is_empty()),
            Err(e) => {
                problems.push(format!("{path}.{field}: {e}"));
                None
            }
        }
    };
    let source = text("source");
    let issuer = text("issuer");
    let audience = text("audience");
    match source {
        None if problems.len() == before => {
            problems.push(format!("{path}.source: missing (required)"));
            None
        }
        Some(source) if problems.len() == before => Some(KeySource {
            source,
            issuer,
            audience,
        }),
        _ => None,
    }
}

impl fmt::Display for OAuth2Settings {
    /// `capi-ws check` lines; URLs and paths are shown, they are not secrets.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{}: {}",
            keys::OAUTH2_COOKIE_NAME,
            self.cookie_name.as_deref().unwrap_or("(none)")
        )?;
        writeln!(f, "{}: {}", keys::OAUTH2_ENABLED, self.enabled)?;
        writeln!(f, "{}: {} source(s)", keys::OAUTH2_KEYS, self.sources.len())?;
        for s in &self.sources {
            write!(f, "  {}", s.source)?;
            if let Some(i) = &s.issuer {
                write!(f, " issuer={i}")?;
            }
            if let Some(a) = &s.audience {
                write!(f, " audience={a}")?;
            }
            writeln!(f)?;
        }
        writeln!(
            f,
            "{}: {}",
            keys::OAUTH2_REFRESH_INTERVAL,
            self.refresh_interval_ms
        )?;
        writeln!(f, "{}: {}", keys::OAUTH2_LEEWAY_MS, self.leeway_ms)?;
        writeln!(f, "{}: {}", keys::OAUTH2_CLOSE_ON_EXPIRY, self.close_on_expiry)?;
        writeln!(f, "{}: {}", keys::OAUTH2_EXPIRY_GRACE_MS, self.expiry_grace_ms)?;
        writeln!(f, "{}: {}", keys::OAUTH2_TOKEN_CACHE_SIZE, self.token_cache_size)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_env(_: &str) -> Option<String> {
        None
    }

    fn load(text: &str) -> (OAuth2Settings, Vec<String>, Vec<String>) {
        let file = FileConfig::parse(text).unwrap();
        let (mut unknown, mut problems) = (Vec::new(), Vec::new());
        let s = OAuth2Settings::from_file(&file, &no_env, &mut unknown, &mut problems);
        (s, unknown, problems)
    }

    #[test]
    fn keys_are_read() {
        type Check = fn(&OAuth2Settings) -> bool;
        let cases: &[(&str, &str, Check)] = &[
            ("defaults", "", |s| *s == OAuth2Settings::default()),
            ("cookie", "capi.oauth2.cookieName: tok", |s| {
                s.cookie_name.as_deref() == Some("tok")
            }),
            ("cookie_relaxed", "capi: {oauth2: {cookie-name: tok}}", |s| {
                s.cookie_name.as_deref() == Some("tok")
            }),
            ("enabled", "capi.oauth2.provider.enabled: \"true\"", |s| s.enabled),
            (
                "strings",
                "capi.oauth2.provider.keys: [http://a/certs, /etc/k.pem]",
                |s| {
                    s.sources.len() == 2
                        && s.sources[0].is_url()
                        && !s.sources[1].is_url()
                        && s.sources[1].issuer.is_none()
                },
            ),
            ("comma_string", "capi.oauth2.provider.keys: \"a.json, b.pem\"", |s| {
                s.sources.len() == 2 && s.sources[1].source == "b.pem"
            }),
            (
                "map_form",
                "capi.oauth2.provider.keys: [{source: http://k/certs, issuer: http://k/realms/r, audience: api}]",
                |s| {
                    s.sources[0].issuer.as_deref() == Some("http://k/realms/r")
                        && s.sources[0].audience.as_deref() == Some("api")
                },
            ),
            ("refresh", "capi.oauth2.provider.refresh-interval: 60000", |s| {
                s.refresh_interval_ms == 60_000
            }),
            ("leeway", "capi.oauth2.leeway-ms: 0", |s| s.leeway_ms == 0),
            ("cache_off", "capi.oauth2.token-cache-size: 0", |s| s.token_cache_size == 0),
            (
                "close_on_expiry",
                "capi.oauth2: {close-on-expiry: true, expiry-grace-ms: 500}",
                |s| s.close_on_expiry && s.expiry_grace_ms == 500,
            ),
        ];
        for (name, text, check) in cases {
            let (s, _, problems) = load(text);
            assert!(problems.is_empty(), "case {name}: {problems:?}");
            assert!(check(&s), "case {name}: {s:?}");
        }
    }

    #[test]
    fn problems_name_their_key() {
        let cases: &[(&str, &str, &str)] = &[
            (
                "enabled_type",
                "capi.oauth2.provider.enabled: maybe",
                "capi.oauth2.provider.enabled:",
            ),
            (
                "refresh_low",
                "capi.oauth2.provider.refresh-interval: 5",
                "refresh-interval:",
            ),
            (
                "leeway_high",
                "capi.oauth2.leeway-ms: 9999999",
                "capi.oauth2.leeway-ms:",
            ),
            (
                "map_without_source",
                "capi.oauth2.provider.keys: [{issuer: x}]",
                "keys[0].source: missing",
            ),
            ("nested_list", "capi.oauth2.provider.keys: [[a]]", "keys[0]:"),
            (
                "bad_cookie",
                "capi.oauth2.cookieName: \"a b\"",
                "capi.oauth2.cookieName:",
            ),
        ];
        for (name, text, want) in cases {
            let (_, _, problems) = load(text);
            assert!(
                problems.iter().any(|p| p.contains(want)),
                "case {name}: {problems:?}"
            );
        }
    }

    #[test]
    fn unknown_fields_of_a_source_map_are_listed() {
        let (s, unknown, problems) = load("capi.oauth2.provider.keys: [{source: a.pem, realm: x}]");
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(s.sources.len(), 1);
        assert_eq!(unknown, vec!["capi.oauth2.provider.keys[0].realm".to_string()]);
    }

    #[test]
    fn disabled_provider_has_no_active_sources() {
        let (s, _, _) = load("capi.oauth2.provider.keys: [a.pem]");
        assert!(s.active_sources().is_empty());
        let (s, _, _) = load("capi.oauth2.provider: {enabled: true, keys: [a.pem]}");
        assert_eq!(s.active_sources().len(), 1);
    }
}
