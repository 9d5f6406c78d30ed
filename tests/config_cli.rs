//! Black-box tests of the configuration capability (DESIGN §3, §4): the real `capi-ws check`
//! binary on the files in `config/` and on valid/invalid fixtures in `tests/fixtures/config/`.
//! Exit 0 with the effective settings on stdout, or exit 2 with every problem on stderr, each
//! naming its key.
#![allow(clippy::disallowed_types)] // locks are fine in tests: the rule guards the data plane

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn fixture(name: &str) -> PathBuf {
    root().join("tests/fixtures/config").join(name)
}

/// Variables the fixtures and examples read; removed so the host environment cannot leak in.
const PLACEHOLDER_VARS: &[&str] = &[
    "CAPI_WS_HOST",
    "CAPI_WS_PORT",
    "CAPI_NAMESPACE",
    "CAPI_KEYSTORE_PASSWORD",
    "CONSUL_TOKEN",
    "TRUSTSTORE_PASSWORD",
    "CAPI_WS_TEST_PORT",
    "CAPI_WS_TEST_NAMESPACE",
    "CAPI_WS_TEST_UNSET_HOST",
    "CAPI_WS_TEST_UNSET_PORT",
];

fn check_with_env(path: &Path, env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_capi-ws"));
    cmd.arg("check").arg("--config").arg(path);
    for var in PLACEHOLDER_VARS {
        cmd.env_remove(var);
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("run capi-ws check")
}

fn check(path: &Path) -> Output {
    check_with_env(path, &[])
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn assert_valid(path: &Path) -> String {
    let out = check(path);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{} should pass check; stderr:\n{}",
        path.display(),
        text(&out.stderr)
    );
    text(&out.stdout)
}

/// Runs check on an invalid file and returns stderr after asserting exit status 2.
fn assert_invalid(path: &Path) -> String {
    let out = check(path);
    let stderr = text(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(2),
        "{} should fail check; stdout:\n{}\nstderr:\n{stderr}",
        path.display(),
        text(&out.stdout)
    );
    stderr
}

#[test]
fn every_file_in_config_passes_check() {
    let mut checked = Vec::new();
    for entry in std::fs::read_dir(root().join("config")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) == Some("yaml") {
            let stdout = assert_valid(&path);
            assert!(stdout.contains("capi.mode: "), "{stdout}");
            checked.push(path.file_name().unwrap().to_string_lossy().into_owned());
        }
    }
    checked.sort();
    for must in ["capi.yaml", "demo.yaml", "static-example.yaml"] {
        assert!(
            checked.iter().any(|c| c == must),
            "{must} not found in {checked:?}"
        );
    }
}

#[test]
fn default_config_prints_the_documented_defaults() {
    let stdout = assert_valid(&root().join("config/capi.yaml"));
    for line in [
        "capi.mode: websocket",
        "capi.websocket.server.port: 8382",
        "management.server.port: 8381",
        "camel.servlet.mapping.context-path: /capi",
        "capi.websocket.services: 0 static",
        "unknown keys (ignored): 0",
    ] {
        assert!(stdout.lines().any(|l| l == line), "missing {line:?} in\n{stdout}");
    }
}

#[test]
fn demo_config_has_two_echo_nodes() {
    let stdout = assert_valid(&root().join("config/demo.yaml"));
    for line in [
        "  - echo 127.0.0.1:9001 {group: dev, type: websocket}",
        "  - echo 127.0.0.1:9002 {group: dev, type: websocket}",
    ] {
        assert!(stdout.lines().any(|l| l == line), "missing {line:?} in\n{stdout}");
    }
}

#[test]
fn capi_application_yaml_loads_and_lists_unknown_keys() {
    // 1. CAPI's own file (many keys for REST, Consul, OAuth2, Spring) passes check;
    // 2. the keys capi-ws reads take the file's values (quoted numbers and booleans included);
    // 3. the others are listed as ignored, by path only: no value (secrets) is printed.
    let stdout = assert_valid(&fixture("capi-application.yaml"));
    for line in [
        "capi.mode: full",
        "capi.namespace: local",
        "capi.strict: false",
        "capi.websocket.server.host: localhost",
        "capi.websocket.server.port: 8382",
        "camel.servlet.mapping.context-path: /capi",
        "management.server.port: 8381",
        "capi.consul.discovery.enabled: true",
        "  - http://consul-1:8500 (no token)",
        "  capi.consul.kv.enabled",
        "capi.oauth2.cookieName: capi_token",
        "capi.oauth2.provider.enabled: true",
        "capi.oauth2.provider.keys: 2 source(s)",
        "  capi.trust.store.password",
        "  server.ssl.key-store-password",
        "  spring.main.allow-bean-definition-overriding",
        "  management.endpoints.web.exposure.include",
        "  logging.level.io.surisoft.capi",
    ] {
        assert!(stdout.lines().any(|l| l == line), "missing {line:?} in\n{stdout}");
    }
    assert!(
        !stdout.contains("changeit"),
        "a value of an unknown key was printed:\n{stdout}"
    );
}

#[test]
fn bad_files_exit_2_naming_each_key() {
    let cases: &[(&str, &[&str])] = &[
        (
            "bad-types.yaml",
            &[
                "capi.websocket.server.port: expected an integer 0..=65535, got \"abc\"",
                "capi.websocket.max-header-bytes: expected",
                "capi.websocket.load-balancing: expected round-robin or least-connections",
                "capi.websocket.services[1].port: expected a port 1..=65535, got 70000",
                "management.server.port: expected an integer 0..=65535, got \"-1\"",
            ],
        ),
        ("bad-mode-rest.yaml", &["capi.mode: \"rest\" is not supported"]),
        (
            "bad-websocket-disabled.yaml",
            &["capi.websocket.enabled: false: the WebSocket gateway is disabled, so capi-ws refuses to start"],
        ),
        ("bad-context-path.yaml", &["camel.servlet.mapping.context-path: expected a path"]),
        ("bad-cpus.yaml", &["capi.websocket.cpus: range \"3-1\" is reversed"]),
        (
            "bad-placeholder.yaml",
            &["capi.websocket.server.port: placeholder ${CAPI_WS_TEST_UNSET_PORT}"],
        ),
        ("bad-yaml.yaml", &["bad-yaml.yaml: invalid YAML at line"]),
    ];
    for (file, wants) in cases {
        let stderr = assert_invalid(&fixture(file));
        for want in *wants {
            assert!(
                stderr.lines().any(|l| l.contains(want)),
                "{file}: missing {want:?} in stderr:\n{stderr}"
            );
        }
    }
}

#[test]
fn bad_types_reports_every_problem_in_one_run() {
    let stderr = assert_invalid(&fixture("bad-types.yaml"));
    let problems: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("capi.") || l.starts_with("management."))
        .collect();
    assert_eq!(problems.len(), 5, "{stderr}");
}

#[test]
fn missing_file_exits_2_naming_the_path() {
    let path = fixture("does-not-exist.yaml");
    let stderr = assert_invalid(&path);
    assert!(
        stderr.contains(&format!("{}: cannot read config file", path.display())),
        "{stderr}"
    );
}

#[test]
fn placeholders_read_the_environment() {
    let path = fixture("placeholders.yaml");
    let out = check_with_env(&path, &[("CAPI_WS_TEST_PORT", "9555")]);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "stderr:\n{}", text(&out.stderr));
    for line in [
        "capi.websocket.server.port: 9555",
        "capi.websocket.server.host: 127.0.0.1",
        "capi.namespace: none-given",
    ] {
        assert!(stdout.lines().any(|l| l == line), "missing {line:?} in\n{stdout}");
    }

    // Without the variable and with no default, the key is named.
    let stderr = assert_invalid(&path);
    assert!(
        stderr.contains("capi.websocket.server.port: placeholder ${CAPI_WS_TEST_PORT}"),
        "{stderr}"
    );
}
