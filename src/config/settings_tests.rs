//! Unit tests of `settings.rs` (kept in a sibling file so the module stays readable).

use super::*;

fn env(name: &str) -> Option<String> {
    match name {
        "WS_PORT" => Some("9100".to_string()),
        "NS" => Some("team-a".to_string()),
        _ => None,
    }
}

fn load(text: &str) -> Result<Settings, Vec<String>> {
    let raw = FileConfig::parse(text)?;
    Settings::from_file(&raw, &env)
}

#[test]
fn empty_file_gives_the_defaults() {
    for (name, text) in [
        ("empty", ""),
        ("comment", "# x\n"),
        ("empty_sections", "capi:\n  websocket: {}\ncamel:\n"),
    ] {
        let s = load(text).unwrap();
        assert_eq!(
            format!("{s:?}"),
            format!("{:?}", Settings::default()),
            "case {name}"
        );
    }
    let d = Settings::default();
    assert_eq!((d.mode, d.port, d.admin_port), (Mode::Websocket, 8382, 8381));
    assert_eq!(d.context_path, "/capi");
}

#[test]
fn every_used_key_is_read() {
    type Check = fn(&Settings) -> bool;
    let cases: &[(&str, &str, Check)] = &[
        ("mode_full", "capi: {mode: full}", |s| s.mode == Mode::Full),
        ("mode_any_case", "capi: {mode: WebSocket}", |s| {
            s.mode == Mode::Websocket
        }),
        ("namespace", "capi: {namespace: team-a}", |s| {
            s.namespace.as_deref() == Some("team-a")
        }),
        ("namespace_empty", "capi: {namespace: \"\"}", |s| {
            s.namespace.is_none()
        }),
        ("strict", "capi: {strict: true}", |s| s.strict),
        ("strict_string", "capi: {strict: \"TRUE\"}", |s| s.strict),
        ("enabled_true", "capi: {websocket: {enabled: true}}", |s| {
            s.port == 8382
        }),
        ("host", "capi.websocket.server.host: 127.0.0.1", |s| {
            s.host == "127.0.0.1"
        }),
        ("port", "capi.websocket.server.port: 9000", |s| s.port == 9000),
        ("port_string", "capi.websocket.server.port: \"9001\"", |s| {
            s.port == 9001
        }),
        ("port_zero", "capi.websocket.server.port: 0", |s| s.port == 0),
        ("workers", "capi.websocket.workers: 3", |s| s.workers == 3),
        ("cpus_list", "capi.websocket.cpus: [0, 2]", |s| {
            s.pinning == Pinning::List(vec![0, 2]) && s.workers == 2
        }),
        ("cpus_string", "capi.websocket.cpus: \"0,2-3\"", |s| {
            s.pinning == Pinning::List(vec![0, 2, 3]) && s.workers == 3
        }),
        ("cpus_list_with_range", "capi.websocket.cpus: [0, \"2-3\"]", |s| {
            s.pinning == Pinning::List(vec![0, 2, 3])
        }),
        ("cpus_single_int", "capi.websocket.cpus: 1", |s| {
            s.pinning == Pinning::List(vec![1])
        }),
        ("cpus_empty", "capi.websocket.cpus: []", |s| {
            s.pinning == Pinning::None && s.workers == 0
        }),
        (
            "cpus_fewer_workers",
            "capi.websocket: {cpus: [0, 1, 2], workers: 2}",
            |s| s.workers == 2,
        ),
        ("max_header_bytes", "capi.websocket.max-header-bytes: 1024", |s| {
            s.max_header_bytes == 1024
        }),
        (
            "max_header_bytes_top",
            "capi.websocket.max-header-bytes: 1048576",
            |s| s.max_header_bytes == 1 << 20,
        ),
        ("handshake", "capi.websocket.handshake-timeout-ms: 1", |s| {
            s.handshake_timeout_ms == 1
        }),
        ("connect", "capi.websocket.connect-timeout-ms: 250", |s| {
            s.connect_timeout_ms == 250
        }),
        ("upstream", "capi.websocket.upstream-timeout-ms: 7000", |s| {
            s.upstream_timeout_ms == 7000
        }),
        ("idle_off", "capi.websocket.idle-timeout-ms: 0", |s| {
            s.idle_timeout_ms == 0
        }),
        ("idle", "capi.websocket.idle-timeout-ms: 60000", |s| {
            s.idle_timeout_ms == 60000
        }),
        ("drain_zero", "capi.websocket.drain-timeout-ms: 0", |s| {
            s.drain_timeout_ms == 0
        }),
        ("lb", "capi.websocket.load-balancing: least-connections", |s| {
            s.load_balancing == LoadBalancing::LeastConnections
        }),
        (
            "origins_list",
            "capi.websocket.allowed-origins: [\"https://a\", \"*\"]",
            |s| s.allowed_origins == ["https://a", "*"],
        ),
        (
            "origins_comma",
            "capi.websocket.allowed-origins: \"https://a, https://b\"",
            |s| s.allowed_origins == ["https://a", "https://b"],
        ),
        (
            "context_default_form",
            "camel.servlet.mapping.context-path: /capi/*",
            |s| s.context_path == "/capi",
        ),
        (
            "context_other",
            "camel.servlet.mapping.context-path: /gw/ws/",
            |s| s.context_path == "/gw/ws",
        ),
        ("context_none", "camel.servlet.mapping.context-path: /*", |s| {
            s.context_path.is_empty()
        }),
        ("context_root", "camel.servlet.mapping.context-path: /", |s| {
            s.context_path.is_empty()
        }),
        ("admin_port", "management.server.port: \"0\"", |s| {
            s.admin_port == 0
        }),
        (
            "placeholder_set",
            "capi.websocket.server.port: ${WS_PORT:1}",
            |s| s.port == 9100,
        ),
        (
            "placeholder_default",
            "capi.websocket.server.port: ${NOPE:8500}",
            |s| s.port == 8500,
        ),
        ("placeholder_text", "capi.namespace: ${NS}", |s| {
            s.namespace.as_deref() == Some("team-a")
        }),
        (
            "unknown_listed",
            "capi: {consul: {kv: {enabled: false}}, oauth2: {realm: c}}\nserver.port: 1",
            |s| s.unknown_keys == ["capi.consul.kv.enabled", "capi.oauth2.realm", "server.port"],
        ),
    ];
    for (name, text, check) in cases {
        match load(text) {
            Ok(s) => assert!(check(&s), "case {name}: {s:?}"),
            Err(e) => panic!("case {name}: {e:?}"),
        }
    }
}

#[test]
fn services_are_read_with_meta_as_strings() {
    let text = "
capi:
  websocket:
    services:
      - name: echo
        address: 127.0.0.1
        port: \"9001\"
        meta: {group: dev, type: websocket, secured: true, weight: 3, note: }
        tags: [x]
      - name: echo
        address: ${NOPE:127.0.0.2}
        port: 9002
";
    let s = load(text).unwrap();
    assert_eq!(s.services.len(), 2);
    let first = &s.services[0];
    assert_eq!(
        (first.name.as_str(), first.address.as_str(), first.port),
        ("echo", "127.0.0.1", 9001)
    );
    let meta: Vec<(&str, &str)> = first.meta.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    assert_eq!(
        meta,
        [
            ("group", "dev"),
            ("note", ""),
            ("secured", "true"),
            ("type", "websocket"),
            ("weight", "3")
        ]
    );
    assert_eq!(s.services[1].address, "127.0.0.2");
    assert!(s.services[1].meta.is_empty());
    assert_eq!(s.unknown_keys, ["capi.websocket.services[0].tags"]);
}

#[test]
fn every_error_names_its_key() {
    let cases: &[(&str, &str, &str)] = &[
        (
            "mode_rest",
            "capi.mode: rest",
            "capi.mode: \"rest\" is not supported: capi-ws runs only in websocket or full mode",
        ),
        ("mode_list", "capi.mode: [a]", "capi.mode: expected a text value"),
        (
            "disabled",
            "capi.websocket.enabled: false",
            "capi.websocket.enabled: false: the WebSocket gateway is disabled",
        ),
        (
            "disabled_string",
            "capi.websocket.enabled: \"FALSE\"",
            "capi.websocket.enabled: false",
        ),
        (
            "enabled_yes",
            "capi.websocket.enabled: yes",
            "capi.websocket.enabled: expected true or false, got \"yes\"",
        ),
        (
            "strict_number",
            "capi.strict: 1",
            "capi.strict: expected true or false, got 1",
        ),
        (
            "host_empty",
            "capi.websocket.server.host: \"\"",
            "capi.websocket.server.host: expected a host",
        ),
        (
            "port_word",
            "capi.websocket.server.port: abc",
            "capi.websocket.server.port: expected an integer 0..=65535, got \"abc\"",
        ),
        (
            "port_big",
            "capi.websocket.server.port: 70000",
            "capi.websocket.server.port: expected an integer 0..=65535, got 70000",
        ),
        (
            "port_negative",
            "capi.websocket.server.port: -1",
            "capi.websocket.server.port: expected an integer 0..=65535, got -1",
        ),
        (
            "workers_big",
            "capi.websocket.workers: 5000",
            "capi.websocket.workers: expected an integer 0..=1024",
        ),
        (
            "cpus_reversed",
            "capi.websocket.cpus: \"3-1\"",
            "capi.websocket.cpus: range \"3-1\" is reversed",
        ),
        (
            "cpus_word",
            "capi.websocket.cpus: [a]",
            "capi.websocket.cpus: expected a CPU list",
        ),
        (
            "cpus_map",
            "capi.websocket.cpus: {a: 1}",
            "capi.websocket.cpus: expected a list",
        ),
        (
            "cpus_too_few",
            "capi.websocket: {cpus: [0], workers: 2}",
            "capi.websocket.cpus: lists 1 CPU(s) but capi.websocket.workers asks for 2",
        ),
        (
            "header_small",
            "capi.websocket.max-header-bytes: 1023",
            "capi.websocket.max-header-bytes: expected a number of bytes 1024..=1048576, got 1023",
        ),
        (
            "header_big",
            "capi.websocket.max-header-bytes: 1048577",
            "capi.websocket.max-header-bytes: expected",
        ),
        (
            "handshake_zero",
            "capi.websocket.handshake-timeout-ms: 0",
            "capi.websocket.handshake-timeout-ms: expected a number of milliseconds 1..=",
        ),
        (
            "connect_zero",
            "capi.websocket.connect-timeout-ms: 0",
            "capi.websocket.connect-timeout-ms: expected",
        ),
        (
            "upstream_zero",
            "capi.websocket.upstream-timeout-ms: 0",
            "capi.websocket.upstream-timeout-ms: expected",
        ),
        (
            "idle_huge",
            "capi.websocket.idle-timeout-ms: 18446744073709551615",
            "capi.websocket.idle-timeout-ms: expected a number of milliseconds 0..=",
        ),
        (
            "drain_float",
            "capi.websocket.drain-timeout-ms: 1.5",
            "capi.websocket.drain-timeout-ms: expected",
        ),
        (
            "lb_random",
            "capi.websocket.load-balancing: random",
            "capi.websocket.load-balancing: expected round-robin or least-connections, got \"random\"",
        ),
        (
            "origins_map",
            "capi.websocket.allowed-origins: {a: b}",
            "capi.websocket.allowed-origins: expected a list",
        ),
        (
            "services_map",
            "capi.websocket.services: {name: a}",
            "capi.websocket.services: expected a list",
        ),
        (
            "service_scalar",
            "capi.websocket.services: [echo]",
            "capi.websocket.services[0]: expected a map",
        ),
        (
            "service_no_name",
            "capi.websocket.services: [{address: a, port: 1}]",
            "capi.websocket.services[0].name: missing",
        ),
        (
            "service_empty_address",
            "capi.websocket.services: [{name: a, address: \"\", port: 1}]",
            "capi.websocket.services[0].address: must not be empty",
        ),
        (
            "service_port_zero",
            "capi.websocket.services: [{name: a, address: b, port: 0}]",
            "capi.websocket.services[0].port: expected a port 1..=65535, got 0",
        ),
        (
            "service_slash",
            "capi.websocket.services: [{name: a/b, address: b, port: 1}]",
            "capi.websocket.services[0].name: must not contain",
        ),
        (
            "service_meta_list",
            "capi.websocket.services: [{name: a, address: b, port: 1, meta: {group: [x]}}]",
            "capi.websocket.services[0].meta.group: expected a text value",
        ),
        (
            "service_meta_scalar",
            "capi.websocket.services: [{name: a, address: b, port: 1, meta: x}]",
            "capi.websocket.services[0].meta: expected a map",
        ),
        (
            "context_relative",
            "camel.servlet.mapping.context-path: capi/*",
            "camel.servlet.mapping.context-path: expected a path starting with \"/\"",
        ),
        (
            "context_wildcard",
            "camel.servlet.mapping.context-path: /a/*/b",
            "camel.servlet.mapping.context-path: expected a plain path",
        ),
        (
            "admin_word",
            "management.server.port: x",
            "management.server.port: expected an integer 0..=65535, got \"x\"",
        ),
        (
            "placeholder_unset",
            "capi.websocket.server.port: ${NOPE}",
            "capi.websocket.server.port: placeholder ${NOPE}: environment variable NOPE is not set",
        ),
        (
            "placeholder_bad_default",
            "capi.websocket.server.port: ${NOPE:x}",
            "capi.websocket.server.port: expected an integer 0..=65535, got \"x\"",
        ),
        (
            "scalar_for_section",
            "capi:\n  websocket: on",
            "capi.websocket: expected a map",
        ),
    ];
    for (name, text, want) in cases {
        match load(text) {
            Ok(s) => panic!("case {name}: accepted: {s:?}"),
            Err(problems) => {
                assert_eq!(problems.len(), 1, "case {name}: {problems:?}");
                assert!(
                    problems[0].starts_with(want),
                    "case {name}: {:?} does not start with {want:?}",
                    problems[0]
                );
            }
        }
    }
}

#[test]
fn all_problems_of_a_file_are_reported_at_once() {
    let text = "
capi:
  mode: rest
  websocket:
    enabled: false
    server:
      port: abc
    services:
      - name: a
        address: b
        port: 1
      - name: c
        address: d
        port: 99999
        meta: {group: [x]}
management.server.port: -5
";
    let problems = load(text).unwrap_err();
    let keys: Vec<&str> = problems.iter().map(|p| p.split(':').next().unwrap()).collect();
    assert_eq!(
        keys,
        [
            "capi.mode",
            "capi.websocket.enabled",
            "capi.websocket.server.port",
            "capi.websocket.services[1].port",
            "capi.websocket.services[1].meta.group",
            "management.server.port",
        ],
        "{problems:?}"
    );
}

#[test]
fn context_path_normalisation() {
    let cases: &[(&str, &str, Option<&str>)] = &[
        ("capi_star", "/capi/*", Some("/capi")),
        ("capi", "/capi", Some("/capi")),
        ("trailing_slashes", "/capi//", Some("/capi")),
        ("star_only", "/*", Some("")),
        ("slash_only", "/", Some("")),
        ("nested", "/a/b/*", Some("/a/b")),
        ("spaces_trimmed", " /capi/* ", Some("/capi")),
        ("relative", "capi", None),
        ("empty", "", None),
        ("inner_star", "/a*b", None),
        ("query", "/a?b", None),
    ];
    for (name, input, want) in cases {
        assert_eq!(
            normalize_context_path(input).ok().as_deref(),
            *want,
            "case {name}"
        );
    }
}

#[test]
fn display_is_stable_and_lists_unknown_keys() {
    let s = load("capi: {websocket: {services: [{name: echo, address: h, port: 1, meta: {group: dev}}]}}\nspring.x: 1\n").unwrap();
    let text = s.to_string();
    for line in [
        "capi.mode: websocket\n",
        "capi.websocket.server.port: 8382\n",
        "capi.websocket.services: 1 static\n  - echo h:1 {group: dev}\n",
        "camel.servlet.mapping.context-path: /capi\n",
        "unknown keys (ignored): 1\n  spring.x\n",
    ] {
        assert!(text.contains(line), "missing {line:?} in\n{text}");
    }
    assert_eq!(text, load("capi: {websocket: {services: [{name: echo, address: h, port: 1, meta: {group: dev}}]}}\nspring.x: 1\n").unwrap().to_string());
}
