//! Raw mirror of the config file (DESIGN §4): YAML text -> [`FileConfig`], one raw value per key
//! the gateway uses (CAPI's own property names) plus the dotted paths of every other key. Also the
//! Spring-style scalar readers (numeric strings, `"true"`, `${ENV:default}`) the validation uses.
//! Nothing here judges a value; never echo config text beyond a short quoted scalar of a used key.

use std::collections::{BTreeMap, BTreeSet};

use serde_yaml::Value;

/// Dotted CAPI property names of the keys this gateway reads (DESIGN §4).
pub mod keys {
    pub const MODE: &str = "capi.mode";
    pub const NAMESPACE: &str = "capi.namespace";
    pub const STRICT: &str = "capi.strict";
    pub const WS_ENABLED: &str = "capi.websocket.enabled";
    pub const HOST: &str = "capi.websocket.server.host";
    pub const PORT: &str = "capi.websocket.server.port";
    pub const WORKERS: &str = "capi.websocket.workers";
    pub const CPUS: &str = "capi.websocket.cpus";
    pub const MAX_HEADER_BYTES: &str = "capi.websocket.max-header-bytes";
    pub const HANDSHAKE_TIMEOUT_MS: &str = "capi.websocket.handshake-timeout-ms";
    pub const CONNECT_TIMEOUT_MS: &str = "capi.websocket.connect-timeout-ms";
    pub const UPSTREAM_TIMEOUT_MS: &str = "capi.websocket.upstream-timeout-ms";
    pub const IDLE_TIMEOUT_MS: &str = "capi.websocket.idle-timeout-ms";
    pub const DRAIN_TIMEOUT_MS: &str = "capi.websocket.drain-timeout-ms";
    pub const LOAD_BALANCING: &str = "capi.websocket.load-balancing";
    pub const ALLOWED_ORIGINS: &str = "capi.websocket.allowed-origins";
    pub const SERVICES: &str = "capi.websocket.services";
    pub const CONTEXT_PATH: &str = "camel.servlet.mapping.context-path";
    pub const ADMIN_PORT: &str = "management.server.port";
    // --- operations (issue 6) ---
    pub const ADMIN_ADDRESS: &str = "management.server.address";
    pub const MAX_CONNECTIONS: &str = "capi.websocket.max-connections";
    pub const TRUSTED_PROXIES: &str = "capi.websocket.trusted-proxies";
    pub const ACCESS_LOG: &str = "capi.websocket.access-log";
    pub const CORS_ALLOWED_HEADERS: &str = "capi.gateway.cors.management.allowed-headers";

    // JWT authorization (issue 4, DESIGN §5): `capi.oauth2.*`.
    pub const OAUTH2_COOKIE_NAME: &str = "capi.oauth2.cookieName";
    pub const OAUTH2_ENABLED: &str = "capi.oauth2.provider.enabled";
    pub const OAUTH2_KEYS: &str = "capi.oauth2.provider.keys";
    pub const OAUTH2_REFRESH_INTERVAL: &str = "capi.oauth2.provider.refresh-interval";
    pub const OAUTH2_LEEWAY_MS: &str = "capi.oauth2.leeway-ms";
    pub const OAUTH2_CLOSE_ON_EXPIRY: &str = "capi.oauth2.close-on-expiry";
    pub const OAUTH2_EXPIRY_GRACE_MS: &str = "capi.oauth2.expiry-grace-ms";
    pub const OAUTH2_TOKEN_CACHE_SIZE: &str = "capi.oauth2.token-cache-size";

    // Consul discovery (issue 5; read by `config/consul.rs`).
    pub const CONSUL_HOSTS: &str = "capi.consul.hosts";
    pub const CONSUL_TOKEN: &str = "capi.consul.token";
    pub const CONSUL_ENABLED: &str = "capi.consul.discovery.enabled";
    pub const CONSUL_INTERVAL: &str = "capi.consul.discovery.timer.interval";
    pub const CONSUL_MAX_WAIT_MS: &str = "capi.consul.discovery.max-wait-ms";
    pub const CONSUL_RETRY_MAX_MS: &str = "capi.consul.discovery.retry-max-ms";

    /// Every key above, in the order `capi-ws check` prints them.
    pub const ALL: [&str; 38] = [
        MODE,
        NAMESPACE,
        STRICT,
        WS_ENABLED,
        HOST,
        PORT,
        WORKERS,
        CPUS,
        MAX_HEADER_BYTES,
        HANDSHAKE_TIMEOUT_MS,
        CONNECT_TIMEOUT_MS,
        UPSTREAM_TIMEOUT_MS,
        IDLE_TIMEOUT_MS,
        DRAIN_TIMEOUT_MS,
        LOAD_BALANCING,
        ALLOWED_ORIGINS,
        SERVICES,
        CONTEXT_PATH,
        ADMIN_PORT,
        // operations (issue 6)
        ADMIN_ADDRESS,
        MAX_CONNECTIONS,
        TRUSTED_PROXIES,
        ACCESS_LOG,
        CORS_ALLOWED_HEADERS,
        // JWT authorization (issue 4)
        OAUTH2_COOKIE_NAME,
        OAUTH2_ENABLED,
        OAUTH2_KEYS,
        OAUTH2_REFRESH_INTERVAL,
        OAUTH2_LEEWAY_MS,
        OAUTH2_CLOSE_ON_EXPIRY,
        OAUTH2_EXPIRY_GRACE_MS,
        OAUTH2_TOKEN_CACHE_SIZE,
        // Consul discovery (issue 5)
        CONSUL_HOSTS,
        CONSUL_TOKEN,
        CONSUL_ENABLED,
        CONSUL_INTERVAL,
        CONSUL_MAX_WAIT_MS,
        CONSUL_RETRY_MAX_MS,
    ];
}

/// The file as written: the raw value of every used key that is present (a `None`/absent entry
/// means "not set"), and the dotted paths of all other keys, sorted.
#[derive(Debug, Default)]
pub struct FileConfig {
    values: BTreeMap<&'static str, Value>,
    /// Dotted paths of keys this gateway does not read (sequences are not descended into).
    pub unknown_keys: Vec<String>,
}

impl FileConfig {
    /// Parse YAML text. Structural problems (bad YAML, a scalar where a used key needs a map, a
    /// key written twice via dotted and nested forms) are all returned together.
    pub fn parse(text: &str) -> Result<FileConfig, Vec<String>> {
        let mut root: Value = serde_yaml::from_str(text).map_err(|e| vec![yaml_problem(&e)])?;
        // SnakeYAML (Spring) applies `<<: *anchor` merge keys; so do we.
        root.apply_merge().map_err(|e| vec![yaml_problem(&e)])?;
        let mut flat = Flat::default();
        match untag(&root) {
            Value::Null => {}
            Value::Mapping(map) => flat.walk_map("", map),
            other => flat.problems.push(format!(
                "(top level): expected a map of keys, got {}",
                describe(other)
            )),
        }
        if !flat.problems.is_empty() {
            return Err(flat.problems);
        }
        Ok(FileConfig {
            values: flat.used,
            unknown_keys: flat.unknown.into_iter().collect(),
        })
    }

    /// The raw value of a used key; `None` when absent or written as an empty value (`key:`).
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.values
            .get(key)
            .map(untag)
            .filter(|v| !matches!(v, Value::Null))
    }
}

/// Collects leaf paths while walking nested maps.
#[derive(Default)]
struct Flat {
    /// Used keys by their canonical name (see [`canonical`]).
    used: BTreeMap<&'static str, Value>,
    /// Other keys by path as written, sorted.
    unknown: BTreeSet<String>,
    problems: Vec<String>,
}

impl Flat {
    fn walk_map(&mut self, prefix: &str, map: &serde_yaml::Mapping) {
        for (k, v) in map {
            let Some(name) = key_text(k) else {
                self.problems.push(format!(
                    "{}: a key must be a string, got {}",
                    if prefix.is_empty() { "(top level)" } else { prefix },
                    describe(k)
                ));
                continue;
            };
            let path = if prefix.is_empty() {
                name
            } else {
                format!("{prefix}.{name}")
            };
            self.walk(path, v);
        }
    }

    fn walk(&mut self, path: String, value: &Value) {
        let value = untag(value);
        let canon = canonical(&path);
        let used = keys::ALL.iter().find(|k| canonical(k) == canon).copied();
        if let (Value::Mapping(map), None) = (value, used) {
            if !map.is_empty() {
                self.walk_map(&path, map);
                return;
            }
        }
        if let Some(key) = used {
            if self.used.insert(key, value.clone()).is_some() {
                self.problems.push(format!(
                    "{key}: set twice (nested and dotted forms, or two spellings)"
                ));
            }
            return;
        }
        // Used keys below this path, shown by their names relative to it.
        let depth = path.split('.').count();
        let below: Vec<String> = keys::ALL
            .iter()
            .filter(|k| {
                canonical(k)
                    .strip_prefix(&canon)
                    .is_some_and(|rest| rest.starts_with('.'))
            })
            .map(|k| k.split('.').skip(depth).collect::<Vec<_>>().join("."))
            .collect();
        if !below.is_empty() {
            // `capi:` or `capi: {}` sets nothing; a scalar or list where used keys need a map
            // below it (`capi.websocket: 8382`) is a mistake.
            if !matches!(value, Value::Null | Value::Mapping(_)) {
                let more = if below.len() > 3 { ", ..." } else { "" };
                self.problems.push(format!(
                    "{path}: expected a map (with {}{more}), got {}",
                    below[..below.len().min(3)].join(", "),
                    describe(value)
                ));
            }
            return;
        }
        self.unknown.insert(path);
    }
}

/// Spring relaxed binding: `max-header-bytes`, `maxHeaderBytes`, `max_header_bytes` and
/// `MAX-HEADER-BYTES` name the same property. Compared in lower case without `-` and `_`.
fn canonical(path: &str) -> String {
    path.chars()
        .filter(|c| *c != '-' && *c != '_')
        .map(|c| c.to_ascii_lowercase())
        .collect()
}

/// A mapping key as text (Spring keys are strings; numbers and booleans are accepted as text).
fn key_text(key: &Value) -> Option<String> {
    match untag(key) {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// YAML tags (`!foo x`) carry no meaning for Spring properties: look through them.
fn untag(value: &Value) -> &Value {
    match value {
        Value::Tagged(t) => untag(&t.value),
        other => other,
    }
}

fn yaml_problem(e: &serde_yaml::Error) -> String {
    // The message of serde_yaml names the construct and the position, not the text around it.
    match e.location() {
        Some(loc) => format!(
            "(yaml): invalid YAML at line {} column {}: {}",
            loc.line(),
            loc.column(),
            strip_location(&e.to_string())
        ),
        None => format!("(yaml): invalid YAML: {e}"),
    }
}

fn strip_location(msg: &str) -> &str {
    msg.find(" at line ").map_or(msg, |i| &msg[..i])
}

/// Short description of a value for error messages: scalars are quoted (at most 40 chars),
/// containers are named by kind only.
pub fn describe(value: &Value) -> String {
    match untag(value) {
        Value::Null => "an empty value".to_string(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => quote(s),
        Value::Sequence(_) => "a list".to_string(),
        Value::Mapping(_) => "a map".to_string(),
        Value::Tagged(_) => "a tagged value".to_string(),
    }
}

/// `"text"`, cut at 40 characters so that a long value never floods the error output.
pub fn quote(s: &str) -> String {
    const MAX: usize = 40;
    match s.char_indices().nth(MAX) {
        Some((i, _)) => format!("{:?}...", &s[..i]),
        None => format!("{s:?}"),
    }
}

/// Environment lookup used for `${VAR}` placeholders (injectable for tests).
pub type Env<'a> = &'a dyn Fn(&str) -> Option<String>;

/// The process environment.
pub fn process_env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

/// Spring placeholders in a string value: `${VAR}` and `${VAR:default}` (the default may itself
/// contain placeholders and colons). Unset without a default is an error naming the variable.
pub fn expand(text: &str, env: Env<'_>) -> Result<String, String> {
    expand_depth(text, env, 0)
}

/// Nesting bound: a default inside a default inside ... is legal but 8 levels is already absurd.
const MAX_PLACEHOLDER_DEPTH: usize = 8;

fn expand_depth(text: &str, env: Env<'_>, depth: usize) -> Result<String, String> {
    if depth > MAX_PLACEHOLDER_DEPTH {
        return Err("placeholders nested too deeply".to_string());
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let inner_start = start + 2;
        let end = matching_brace(&rest[inner_start..])
            .ok_or_else(|| "unterminated placeholder \"${\"".to_string())?;
        let inner = &rest[inner_start..inner_start + end];
        let (name, default) = match inner.find(':') {
            Some(i) => (&inner[..i], Some(&inner[i + 1..])),
            None => (inner, None),
        };
        let name = name.trim();
        if name.is_empty() {
            return Err("empty placeholder \"${}\"".to_string());
        }
        match (env(name), default) {
            (Some(v), _) => out.push_str(&v),
            (None, Some(d)) => out.push_str(&expand_depth(d, env, depth + 1)?),
            (None, None) => {
                return Err(format!(
                    "placeholder ${{{name}}}: environment variable {name} is not set and no default is given"
                ))
            }
        }
        rest = &rest[inner_start + end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// Index of the `}` closing a placeholder whose body starts at `s[0]`, counting nested `${`.
fn matching_brace(s: &str) -> Option<usize> {
    let bytes = s.as_bytes();
    let mut depth = 0usize;
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'$' if bytes.get(i + 1) == Some(&b'{') => {
                depth += 1;
                i += 2;
                continue;
            }
            b'}' if depth == 0 => return Some(i),
            b'}' => depth -= 1,
            _ => {}
        }
        i += 1;
    }
    None
}

/// A scalar as text, placeholders expanded. `Ok(None)` for an empty value.
pub fn read_text(value: &Value, env: Env<'_>) -> Result<Option<String>, String> {
    match untag(value) {
        Value::Null => Ok(None),
        Value::String(s) => expand(s, env).map(Some),
        Value::Bool(b) => Ok(Some(b.to_string())),
        Value::Number(n) => Ok(Some(n.to_string())),
        other => Err(format!("expected a text value, got {}", describe(other))),
    }
}

/// A non-negative integer: a YAML integer or a numeric string (Spring binds `"8382"` too).
/// `Ok(None)` for an empty value or empty string (= not set).
pub fn read_uint(value: &Value, env: Env<'_>, what: &str) -> Result<Option<u64>, String> {
    match untag(value) {
        Value::Null => Ok(None),
        Value::Number(n) => n
            .as_u64()
            .map(Some)
            .ok_or_else(|| format!("expected {what}, got {n}")),
        Value::String(s) => {
            let text = expand(s, env)?;
            let t = text.trim();
            if t.is_empty() {
                return Ok(None);
            }
            t.parse::<u64>()
                .map(Some)
                .map_err(|_| format!("expected {what}, got {}", quote(&text)))
        }
        other => Err(format!("expected {what}, got {}", describe(other))),
    }
}

/// A boolean: YAML `true`/`false` or the strings "true"/"false" in any case (Spring leniency).
pub fn read_bool(value: &Value, env: Env<'_>) -> Result<Option<bool>, String> {
    match untag(value) {
        Value::Null => Ok(None),
        Value::Bool(b) => Ok(Some(*b)),
        Value::String(s) => {
            let text = expand(s, env)?;
            let t = text.trim();
            if t.is_empty() {
                Ok(None)
            } else if t.eq_ignore_ascii_case("true") {
                Ok(Some(true))
            } else if t.eq_ignore_ascii_case("false") {
                Ok(Some(false))
            } else {
                Err(format!("expected true or false, got {}", quote(&text)))
            }
        }
        other => Err(format!("expected true or false, got {}", describe(other))),
    }
}

/// A list of text items: a YAML list of scalars, or one string split on commas (CAPI writes
/// `allowed-origins` and `consul.hosts` both ways). Items are trimmed; empty items dropped.
pub fn read_text_list(value: &Value, env: Env<'_>) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    match untag(value) {
        Value::Null => {}
        Value::Sequence(items) => {
            for (i, item) in items.iter().enumerate() {
                match untag(item) {
                    Value::Sequence(_) | Value::Mapping(_) => {
                        return Err(format!(
                            "item [{i}]: expected a text value, got {}",
                            describe(item)
                        ))
                    }
                    _ => {
                        let text = read_text(item, env).map_err(|e| format!("item [{i}]: {e}"))?;
                        if let Some(t) = text {
                            push_trimmed(&mut out, &t);
                        }
                    }
                }
            }
        }
        Value::Mapping(_) => {
            return Err(format!(
                "expected a list or a comma-separated string, got {}",
                describe(value)
            ))
        }
        scalar => {
            if let Some(text) = read_text(scalar, env)? {
                for part in text.split(',') {
                    push_trimmed(&mut out, part);
                }
            }
        }
    }
    Ok(out)
}

fn push_trimmed(out: &mut Vec<String>, s: &str) {
    let t = s.trim();
    if !t.is_empty() {
        out.push(t.to_string());
    }
}

/// Check every key of a map-shaped list entry (a static service): returns the entries by name
/// and appends the dotted paths of names not in `known` to `unknown`.
pub fn entry_fields<'v>(
    map: &'v serde_yaml::Mapping,
    path: &str,
    known: &[&str],
    unknown: &mut Vec<String>,
    problems: &mut Vec<String>,
) -> BTreeMap<String, &'v Value> {
    let mut out = BTreeMap::new();
    let mut seen = BTreeSet::new();
    for (k, v) in map {
        let Some(name) = key_text(k) else {
            problems.push(format!("{path}: a key must be a string, got {}", describe(k)));
            continue;
        };
        if !seen.insert(name.clone()) {
            problems.push(format!("{path}.{name}: set twice"));
            continue;
        }
        if known.contains(&name.as_str()) {
            out.insert(name, untag(v));
        } else {
            unknown.push(format!("{path}.{name}"));
        }
    }
    out
}

/// A map of scalar values converted to strings (Consul `ServiceMeta` is string -> string):
/// YAML `secured: true` becomes "true", an empty value becomes "". Problems name `path.key`.
pub fn read_string_map(
    value: &Value,
    path: &str,
    env: Env<'_>,
    problems: &mut Vec<String>,
) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    match untag(value) {
        Value::Null => {}
        Value::Mapping(map) => {
            for (k, v) in map {
                let Some(name) = key_text(k) else {
                    problems.push(format!("{path}: a key must be a string, got {}", describe(k)));
                    continue;
                };
                match untag(v) {
                    Value::Sequence(_) | Value::Mapping(_) => problems.push(format!(
                        "{path}.{name}: expected a text value (meta values are strings), got {}",
                        describe(v)
                    )),
                    scalar => match read_text(scalar, env) {
                        Ok(text) => {
                            out.insert(name, text.unwrap_or_default());
                        }
                        Err(e) => problems.push(format!("{path}.{name}: {e}")),
                    },
                }
            }
        }
        other => problems.push(format!("{path}: expected a map, got {}", describe(other))),
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_env(_: &str) -> Option<String> {
        None
    }

    fn test_env(name: &str) -> Option<String> {
        match name {
            "WS_PORT" => Some("9000".to_string()),
            "HOST" => Some("gw.local".to_string()),
            "EMPTY" => Some(String::new()),
            _ => None,
        }
    }

    #[test]
    fn placeholders_expand() {
        let cases: &[(&str, &str, Result<&str, &str>)] = &[
            ("plain", "abc", Ok("abc")),
            ("set", "${WS_PORT}", Ok("9000")),
            ("set_with_default", "${WS_PORT:1}", Ok("9000")),
            ("unset_default", "${NOPE:8382}", Ok("8382")),
            ("empty_default", "${NOPE:}", Ok("")),
            ("set_but_empty", "${EMPTY:x}", Ok("")),
            (
                "embedded",
                "http://${HOST}:${WS_PORT}/x",
                Ok("http://gw.local:9000/x"),
            ),
            ("default_with_colons", "${NOPE:http://a:80}", Ok("http://a:80")),
            ("nested_default", "${NOPE:${HOST}}", Ok("gw.local")),
            ("nested_twice", "${NOPE:${NOPE2:z}}", Ok("z")),
            ("unset_no_default", "${NOPE}", Err("NOPE is not set")),
            ("unterminated", "${HOST", Err("unterminated")),
            ("empty_name", "${}", Err("empty placeholder")),
            ("dollar_alone", "a$b", Ok("a$b")),
        ];
        for (name, input, want) in cases {
            let got = expand(input, &test_env);
            match (want, &got) {
                (Ok(w), Ok(g)) => assert_eq!(g, w, "case {name}"),
                (Err(w), Err(g)) => assert!(g.contains(w), "case {name}: {g}"),
                _ => panic!("case {name}: got {got:?}, want {want:?}"),
            }
        }
    }

    #[test]
    fn uint_reader_is_lenient_like_spring() {
        type Case = (&'static str, &'static str, Result<Option<u64>, &'static str>);
        let cases: &[Case] = &[
            ("int", "8382", Ok(Some(8382))),
            ("string", "\"8382\"", Ok(Some(8382))),
            ("string_spaces", "\" 8382 \"", Ok(Some(8382))),
            ("empty", "", Ok(None)),
            ("empty_string", "\"\"", Ok(None)),
            ("negative", "-1", Err("got -1")),
            ("float", "1.5", Err("got 1.5")),
            ("word", "abc", Err("got \"abc\"")),
            ("list", "[1]", Err("got a list")),
            ("placeholder", "${NOPE:77}", Ok(Some(77))),
        ];
        for (name, yaml, want) in cases {
            let v: Value = serde_yaml::from_str(yaml).unwrap();
            let got = read_uint(&v, &no_env, "an integer");
            match (want, &got) {
                (Ok(w), Ok(g)) => assert_eq!(g, w, "case {name}"),
                (Err(w), Err(g)) => assert!(g.contains(w), "case {name}: {g}"),
                _ => panic!("case {name}: got {got:?}, want {want:?}"),
            }
        }
    }

    #[test]
    fn bool_reader_accepts_strings_in_any_case() {
        type Case = (&'static str, &'static str, Result<Option<bool>, ()>);
        let cases: &[Case] = &[
            ("yaml_true", "true", Ok(Some(true))),
            ("yaml_false", "false", Ok(Some(false))),
            ("string_upper", "\"TRUE\"", Ok(Some(true))),
            ("string_mixed", "\"False\"", Ok(Some(false))),
            ("empty", "", Ok(None)),
            ("yes_is_not_bool", "\"yes\"", Err(())),
            ("number", "1", Err(())),
        ];
        for (name, yaml, want) in cases {
            let v: Value = serde_yaml::from_str(yaml).unwrap();
            let got = read_bool(&v, &no_env).map_err(|_| ());
            assert_eq!(&got, want, "case {name}");
        }
    }

    #[test]
    fn text_list_reader() {
        type Case = (&'static str, &'static str, Result<Vec<&'static str>, ()>);
        let cases: &[Case] = &[
            ("list", "[a, b]", Ok(vec!["a", "b"])),
            ("comma_string", "\"a, b,,c \"", Ok(vec!["a", "b", "c"])),
            ("empty", "", Ok(vec![])),
            ("empty_list", "[]", Ok(vec![])),
            ("nested_list", "[[a]]", Err(())),
            ("map", "{a: 1}", Err(())),
        ];
        for (name, yaml, want) in cases {
            let v: Value = serde_yaml::from_str(yaml).unwrap();
            let got = read_text_list(&v, &no_env).map_err(|_| ());
            let want: Result<Vec<String>, ()> = want
                .as_ref()
                .map(|w| w.iter().map(|s| s.to_string()).collect())
                .map_err(|_| ());
            assert_eq!(got, want, "case {name}");
        }
    }

    #[test]
    fn flattening_collects_unknown_keys_and_dotted_forms() {
        let text = "
server:
  port: 8380
capi:
  websocket.server.port: 1
  consul:
    kv: {enabled: false}
  oauth2: {realm: x}
spring.main.banner: x
";
        let f = FileConfig::parse(text).unwrap();
        assert_eq!(f.get(keys::PORT).and_then(|v| v.as_u64()), Some(1));
        assert_eq!(
            f.unknown_keys,
            vec![
                "capi.consul.kv.enabled",
                "capi.oauth2.realm",
                "server.port",
                "spring.main.banner"
            ]
        );
    }

    #[test]
    fn structural_problems_are_all_reported() {
        let text = "
capi:
  websocket:
    server: 8382
  mode: websocket
capi.mode: full
camel: 3
";
        let problems = FileConfig::parse(text).unwrap_err();
        assert_eq!(problems.len(), 3, "{problems:?}");
        assert!(problems[0].starts_with("capi.websocket.server: expected a map (with host, port)"));
        assert!(problems[1].starts_with("capi.mode: set twice"));
        assert!(problems[2].starts_with("camel: expected a map (with servlet.mapping.context-path)"));
    }

    #[test]
    fn relaxed_binding_matches_spring_spellings() {
        let cases: &[(&str, &str, &str)] = &[
            (
                "camel",
                "capi.websocket.maxHeaderBytes: 2048",
                keys::MAX_HEADER_BYTES,
            ),
            (
                "snake",
                "capi.websocket.max_header_bytes: 2048",
                keys::MAX_HEADER_BYTES,
            ),
            (
                "upper",
                "CAPI.WEBSOCKET.MAX-HEADER-BYTES: 2048",
                keys::MAX_HEADER_BYTES,
            ),
            (
                "camel_section",
                "camel.servlet.mapping.contextPath: 2048",
                keys::CONTEXT_PATH,
            ),
        ];
        for (name, text, key) in cases {
            let f = FileConfig::parse(text).unwrap();
            assert_eq!(f.get(key).and_then(|v| v.as_u64()), Some(2048), "case {name}");
            assert!(f.unknown_keys.is_empty(), "case {name}: {:?}", f.unknown_keys);
        }
        let twice = "capi.websocket:\n  max-header-bytes: 1\n  maxHeaderBytes: 2\n";
        let problems = FileConfig::parse(twice).unwrap_err();
        assert!(problems[0].starts_with("capi.websocket.max-header-bytes: set twice"));
    }

    #[test]
    fn merge_keys_are_applied() {
        let text = "
defaults: &ws
  port: 9000
capi:
  websocket:
    server:
      <<: *ws
      host: h
";
        let f = FileConfig::parse(text).unwrap();
        assert_eq!(f.get(keys::PORT).and_then(|v| v.as_u64()), Some(9000));
        assert_eq!(f.unknown_keys, vec!["defaults.port"]);
    }

    #[test]
    fn top_level_must_be_a_map() {
        let cases: &[(&str, &str, bool)] = &[
            ("empty_file", "", true),
            ("comment_only", "# nothing\n", true),
            ("scalar", "hello", false),
            ("list", "- a\n- b\n", false),
            ("bad_yaml", "a: [1, 2\n", false),
        ];
        for (name, text, ok) in cases {
            assert_eq!(FileConfig::parse(text).is_ok(), *ok, "case {name}");
        }
    }
}
