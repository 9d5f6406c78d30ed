//! Table building: discovered instances (static config entries now, Consul entries later) ->
//! services with CAPI's metadata rules (DESIGN §4, §12; shared/consul/CAPI-META.md) -> a whole
//! [`Snapshot`]. Runs on control-plane threads only (it may resolve host names); deterministic:
//! the same instances always give the same table, whatever their order.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::{SocketAddr, ToSocketAddrs};

use crate::config::{Mode, Settings};
use crate::data::route::parse_allowed_origin;
use crate::snapshot::{AllowedOrigin, Instance, Limits, Node, NodeSource, Service, Snapshot};

/// Why a service is listed but not routed.
const REASON_NOT_WEBSOCKET: &str =
    "type is not websocket (mode full lists it, only websocket services are routable)";
const REASON_TLS: &str = "scheme https: TLS to nodes is not supported yet";

/// The static services of the config file, as instances (always healthy: nobody checks them).
pub fn static_instances(settings: &Settings) -> Vec<Instance> {
    settings
        .services
        .iter()
        .enumerate()
        .map(|(i, s)| Instance {
            id: format!("static-{i:04}-{}", s.name),
            name: s.name.clone(),
            address: s.address.clone(),
            port: s.port,
            meta: s.meta.clone(),
            healthy: true,
            source: NodeSource::Static,
        })
        .collect()
}

/// Build the whole snapshot. `resolve` turns `host:port` into an address (DNS is allowed
/// here: this never runs on a worker).
pub fn build_snapshot(
    settings: &Settings,
    instances: Vec<Instance>,
    resolve: &dyn Fn(&str, u16) -> Option<SocketAddr>,
) -> Snapshot {
    let mut warnings = Vec::new();
    let allowed_origins =
        parse_origin_list(settings.allowed_origins.iter().map(String::as_str), &mut warnings);
    for w in warnings {
        tracing::warn!("capi.websocket.allowed-origins: {w}; entry ignored");
    }

    // Group kept instances by (name, group), ordered by id for determinism (§12).
    let mut groups: BTreeMap<(String, String), Vec<Instance>> = BTreeMap::new();
    for inst in instances {
        let Some(group) = meta_str(&inst.meta, "group") else {
            continue; // CAPI: an instance without group is skipped
        };
        if !namespace_keeps(&inst, settings) {
            continue;
        }
        let kind = meta_str(&inst.meta, "type")
            .unwrap_or("rest")
            .to_ascii_lowercase();
        if settings.mode == Mode::Websocket && kind != "websocket" {
            continue; // the type filter applies per instance (§12)
        }
        groups
            .entry((inst.name.clone(), group.to_string()))
            .or_default()
            .push(inst);
    }

    let mut services: Vec<Service> = Vec::with_capacity(groups.len());
    for ((name, group), mut insts) in groups {
        insts.sort_by(|a, b| a.id.cmp(&b.id));
        services.push(build_service(settings, name, group, &insts, resolve));
    }

    // Route keys: first come (in name/group order) keeps it; a later clash is listed, not routed.
    let mut by_route = HashMap::with_capacity(services.len());
    for (i, svc) in services.iter_mut().enumerate() {
        if !svc.routable {
            continue;
        }
        if let Some(&other) = by_route.get(&svc.route_key) {
            let _: usize = other;
            svc.routable = false;
            svc.reason = Some(format!("route {} is already taken by another service", svc.route));
            continue;
        }
        by_route.insert(svc.route_key.clone(), i);
    }

    Snapshot {
        generation: 0,
        context_path: settings.context_path.clone(),
        allowed_origins,
        services,
        by_route,
        limits: Limits::from_settings(settings),
        stats: Vec::new(),
        auth: Default::default(),
    }
}

/// Resolve with the system resolver (control plane only).
pub fn system_resolve(host: &str, port: u16) -> Option<SocketAddr> {
    (host, port).to_socket_addrs().ok()?.next()
}

fn build_service(
    settings: &Settings,
    name: String,
    group: String,
    insts: &[Instance],
    resolve: &dyn Fn(&str, u16) -> Option<SocketAddr>,
) -> Service {
    let first = &insts[0];
    let mut reasons: Vec<String> = Vec::new();
    // The route takes exactly two path segments (CAPI-META "Websocket request handling"): a
    // name or group that is not one clean segment could never be matched.
    for (what, v) in [("name", &name), ("group", &group)] {
        if v.contains(['/', '?', '#', '%']) || v.contains(|c: char| c.is_whitespace() || c.is_control()) {
            reasons.push(format!("{what} {v:?} is not a single path segment"));
        }
    }

    // CAPI's per-instance overrides (`capi-instance-<namespace>-<prop>`, CAPI-META) replace
    // `secured`, `route-group-first` and `scheme` for this gateway's namespace.
    let ns = settings.namespace.as_deref().unwrap_or("");
    reasons.extend(override_problem(&first.meta, ns));

    // secured: any instance saying so wins; a value that is not a boolean fails closed.
    let mut secured = false;
    for inst in insts {
        match parse_bool(meta_for(&inst.meta, ns, "secured")) {
            Ok(Some(true)) => secured = true,
            Ok(_) => {}
            Err(v) => {
                secured = true;
                reasons.push(format!("meta secured has a non-boolean value {v:?}"));
            }
        }
    }

    // subscription-group: every distinct list must be matched (§12).
    let mut lists: BTreeSet<Vec<String>> = BTreeSet::new();
    for inst in insts {
        if let Some(raw) = meta_str(&inst.meta, "subscription-group") {
            let list = parse_subscription_list(raw);
            if !list.is_empty() {
                lists.insert(list);
            }
        }
    }

    let mut flag = |key: &str| -> bool {
        match parse_bool(meta_for(&first.meta, ns, key)) {
            Ok(v) => v.unwrap_or(false),
            Err(v) => {
                reasons.push(format!("meta {key} has a non-boolean value {v:?}"));
                false
            }
        }
    };
    let group_first = flag("keep-group-first") | flag("route-group-first");
    let keep_group = flag("keep-group");

    let kind = meta_str(&first.meta, "type")
        .unwrap_or("rest")
        .to_ascii_lowercase();
    let root_context = normalise_root_context(meta_str(&first.meta, "root-context").unwrap_or(""));
    // It is written into the request line sent to nodes: a space, control byte, `?` or `#`
    // would split or change that request (found by fuzzing, issue 8).
    if !is_plain_path(&root_context) {
        reasons.push(format!(
            "meta root-context {root_context:?} is not a plain path (visible ASCII, no '?' or '#')"
        ));
    }

    let allowed_origins = meta_str(&first.meta, "allowed-origins").map(|raw| {
        let mut bad = Vec::new();
        let list = parse_origin_list(raw.split(','), &mut bad);
        reasons.extend(bad.into_iter().map(|b| format!("meta allowed-origins: {b}")));
        list
    });

    let scheme = meta_for(&first.meta, ns, "scheme").or_else(|| meta_str(&first.meta, "schema"));
    if scheme.is_some_and(|s| s.eq_ignore_ascii_case("https")) {
        reasons.push(REASON_TLS.to_string());
    }
    if let Some(state) = meta_str(&first.meta, "state") {
        if !state.eq_ignore_ascii_case("published") {
            reasons.push(format!("state {state:?} is not PUBLISHED"));
        }
    }
    if kind != "websocket" {
        reasons.push(REASON_NOT_WEBSOCKET.to_string());
    }

    // Nodes: one per distinct host:port (ingress replaces the instance address).
    let mut nodes: Vec<Node> = Vec::with_capacity(insts.len());
    for inst in insts {
        let (host, port) = match meta_str(&inst.meta, "ingress") {
            Some(ingress) => match parse_ingress(ingress) {
                Some(hp) => hp,
                None => {
                    reasons.push(format!(
                        "meta ingress {ingress:?} is not an http(s)://host[:port] URL"
                    ));
                    continue;
                }
            },
            None => (inst.address.clone(), inst.port),
        };
        let host_port = render_host_port(&host, port);
        if let Some(existing) = nodes.iter_mut().find(|n| n.host_port == host_port) {
            existing.healthy |= inst.healthy;
            continue;
        }
        let addr = if host.is_empty() {
            None
        } else {
            resolve(trim_brackets(&host), port)
        };
        if addr.is_none() {
            tracing::warn!(service = %name, node = %host_port, "node address does not resolve; node not used");
        }
        nodes.push(Node {
            host_port,
            addr,
            healthy: inst.healthy,
            source: inst.source,
        });
    }

    let route_key = if group_first {
        format!("/{group}/{name}")
    } else {
        format!("/{name}/{group}")
    };
    let conflicts = conflicting_keys(insts);
    Service {
        label: format!("{name}/{group}"),
        route: format!("{}{}", settings.context_path, route_key),
        route_key,
        name,
        group,
        kind,
        secured,
        subscription_groups: lists.into_iter().collect(),
        root_context,
        keep_group,
        allowed_origins,
        routable: reasons.is_empty(),
        reason: (!reasons.is_empty()).then(|| reasons.join("; ")),
        conflicts,
        nodes,
    }
}

fn meta_str<'m>(meta: &'m BTreeMap<String, String>, key: &str) -> Option<&'m str> {
    meta.get(key).map(|v| v.trim()).filter(|v| !v.is_empty())
}

/// `key` for this gateway: the instance's `capi-instance-<ns>-<key>` override when the key is
/// one CAPI overrides on the websocket path, the namespace is set and the override present
/// (CAPI-META), else `key` itself.
fn meta_for<'m>(meta: &'m BTreeMap<String, String>, ns: &str, key: &str) -> Option<&'m str> {
    const OVERRIDABLE: [&str; 3] = ["secured", "route-group-first", "scheme"];
    if !ns.is_empty() && OVERRIDABLE.contains(&key) {
        if let Some(v) = meta_str(meta, &format!("{OVERRIDE_PREFIX}{ns}-{key}")) {
            return Some(v);
        }
    }
    meta_str(meta, key)
}

/// Prefix of CAPI's per-instance override keys, `capi-instance-<instance>-<prop>`.
const OVERRIDE_PREFIX: &str = "capi-instance-";

/// Why CAPI would create no route from these (first instance's) keys: overrides present but none
/// for this namespace (also when it is empty), or an override key without `-<prop>` (CAPI aborts
/// its whole discovery cycle on one; here only this service is not routed).
fn override_problem(meta: &BTreeMap<String, String>, ns: &str) -> Option<String> {
    let mut any = false;
    let mut mine = false;
    for key in meta.keys() {
        let Some(rest) = key.strip_prefix(OVERRIDE_PREFIX) else {
            continue;
        };
        if !rest.contains('-') {
            return Some(format!(
                "meta key {key:?} names no property ({OVERRIDE_PREFIX}<instance>-<property>)"
            ));
        }
        any = true;
        mine |= !ns.is_empty() && rest.strip_prefix(ns).is_some_and(|r| r.starts_with('-'));
    }
    (any && !mine).then(|| {
        format!("meta has {OVERRIDE_PREFIX}* overrides but none for namespace {ns:?} (CAPI routes none)")
    })
}

/// `Ok(None)` when absent; `Err(value)` when present but not a boolean.
fn parse_bool(value: Option<&str>) -> Result<Option<bool>, String> {
    match value {
        None => Ok(None),
        Some(v) if v.eq_ignore_ascii_case("true") => Ok(Some(true)),
        Some(v) if v.eq_ignore_ascii_case("false") => Ok(Some(false)),
        Some(v) => Err(v.to_string()),
    }
}

/// `subscription-group` / `subscriptions` entry normalisation (DESIGN §5): trim, drop one
/// leading `/`, trim again; empty entries dropped; sorted and deduplicated.
pub fn parse_subscription_list(raw: &str) -> Vec<String> {
    let mut out: Vec<String> = raw
        .split(',')
        .map(normalise_subscription)
        .filter(|s| !s.is_empty())
        .collect();
    out.sort();
    out.dedup();
    out
}

pub fn normalise_subscription(entry: &str) -> String {
    let t = entry.trim();
    t.strip_prefix('/').unwrap_or(t).trim().to_string()
}

/// CAPI: `/` added in front if missing; `""`, `/` and `*` mean none. Trailing slashes dropped
/// so the join with the rest of the path never doubles them.
fn normalise_root_context(raw: &str) -> String {
    let t = raw.trim();
    if t.is_empty() || t == "/" || t == "*" {
        return String::new();
    }
    let trimmed = t.trim_end_matches('/');
    if trimmed.is_empty() {
        return String::new();
    }
    if trimmed.starts_with('/') {
        trimmed.to_string()
    } else {
        format!("/{trimmed}")
    }
}

/// Whether `path` can go into a request line as is: visible ASCII only, without `?` and `#`.
fn is_plain_path(path: &str) -> bool {
    path.bytes()
        .all(|b| b.is_ascii_graphic() && b != b'?' && b != b'#')
}

/// `http://host[:port][/...]` -> (host, port); default port by scheme.
fn parse_ingress(raw: &str) -> Option<(String, u16)> {
    let (rest, default_port) = if let Some(r) = strip_prefix_ci(raw, "http://") {
        (r, 80)
    } else if let Some(r) = strip_prefix_ci(raw, "https://") {
        (r, 443)
    } else {
        return None;
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    if authority.is_empty() || authority.contains('@') {
        return None;
    }
    if let Some(v6) = authority.strip_prefix('[') {
        let (host, after) = v6.split_once(']')?;
        let port = match after.strip_prefix(':') {
            Some(p) => p.parse().ok()?,
            None if after.is_empty() => default_port,
            None => return None,
        };
        return Some((format!("[{host}]"), port));
    }
    match authority.rsplit_once(':') {
        Some((host, port)) if !host.is_empty() => Some((host.to_string(), port.parse().ok()?)),
        Some(_) => None,
        None => Some((authority.to_string(), default_port)),
    }
}

fn strip_prefix_ci<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    let head = s.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix).then(|| &s[prefix.len()..])
}

fn trim_brackets(host: &str) -> &str {
    host.strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host)
}

fn render_host_port(host: &str, port: u16) -> String {
    if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

fn parse_origin_list<'a>(
    entries: impl Iterator<Item = &'a str>,
    bad: &mut Vec<String>,
) -> Vec<AllowedOrigin> {
    let mut out = Vec::new();
    for e in entries.map(str::trim).filter(|e| !e.is_empty()) {
        match parse_allowed_origin(e) {
            Ok(o) => {
                if !out.contains(&o) {
                    out.push(o)
                }
            }
            Err(why) => bad.push(format!("{e:?}: {why}")),
        }
    }
    out
}

/// CAPI's namespace filter (CAPI-META.md "Namespace rules"), per instance.
fn namespace_keeps(inst: &Instance, settings: &Settings) -> bool {
    let Some(ns) = settings.namespace.as_deref().filter(|n| !n.is_empty()) else {
        return true;
    };
    let own = meta_str(&inst.meta, "capi-instance").or_else(|| meta_str(&inst.meta, "namespace"));
    match own {
        None if !settings.strict => true,
        Some(own) if own == ns => true,
        _ => {
            let prefix = format!("{OVERRIDE_PREFIX}{ns}-");
            inst.meta.keys().any(|k| k.starts_with(&prefix))
        }
    }
}

/// Metadata keys whose values differ between the instances of one service (§12).
fn conflicting_keys(insts: &[Instance]) -> Vec<String> {
    const IGNORED: [&str; 1] = ["version"];
    let keys: BTreeSet<&String> = insts.iter().flat_map(|i| i.meta.keys()).collect();
    keys.into_iter()
        .filter(|k| !IGNORED.contains(&k.as_str()))
        .filter(|k| {
            let first = insts[0].meta.get(*k);
            insts.iter().any(|i| i.meta.get(*k) != first)
        })
        .map(|k| k.to_string())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{IpAddr, Ipv4Addr};

    fn inst(id: &str, name: &str, addr: &str, port: u16, meta: &[(&str, &str)]) -> Instance {
        Instance {
            id: id.into(),
            name: name.into(),
            address: addr.into(),
            port,
            meta: meta.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            healthy: true,
            source: NodeSource::Static,
        }
    }

    fn fake_resolve(host: &str, port: u16) -> Option<SocketAddr> {
        if host.ends_with(".invalid") {
            return None;
        }
        let ip = host.parse().unwrap_or(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)));
        Some(SocketAddr::new(ip, port))
    }

    fn build(settings: &Settings, insts: Vec<Instance>) -> Snapshot {
        build_snapshot(settings, insts, &fake_resolve)
    }

    const WS: (&str, &str) = ("type", "websocket");

    #[test]
    fn groups_by_name_and_group_and_skips_missing_group() {
        let s = Settings::default();
        let snap = build(
            &s,
            vec![
                inst("a-1", "chat", "10.0.0.1", 80, &[("group", "dev"), WS]),
                inst("a-2", "chat", "10.0.0.2", 80, &[("group", "dev"), WS]),
                inst("a-3", "chat", "10.0.0.3", 80, &[("group", "prod"), WS]),
                inst("b-1", "feed", "10.0.0.4", 80, &[WS]),
            ],
        );
        assert_eq!(snap.services.len(), 2);
        let dev = snap.lookup("/chat/dev").unwrap();
        assert_eq!(dev.nodes.len(), 2);
        assert_eq!(dev.route, "/capi/chat/dev");
        assert_eq!(dev.label, "chat/dev");
        assert!(snap.lookup("/chat/prod").is_some());
    }

    #[test]
    fn mode_filters_types() {
        let insts = || {
            vec![
                inst(
                    "o-1",
                    "orders",
                    "10.0.0.1",
                    80,
                    &[("group", "dev"), ("type", "rest")],
                ),
                inst("o-2", "orders", "10.0.0.2", 80, &[("group", "dev")]),
                inst(
                    "w-1",
                    "ws",
                    "10.0.0.3",
                    80,
                    &[("group", "dev"), ("type", "WebSocket")],
                ),
            ]
        };
        let ws = build(&Settings::default(), insts());
        assert_eq!(ws.services.len(), 1);
        let full = build(
            &Settings {
                mode: Mode::Full,
                ..Settings::default()
            },
            insts(),
        );
        assert_eq!(full.services.len(), 2);
        let orders = full.services.iter().find(|s| s.name == "orders").unwrap();
        assert!(!orders.routable);
        assert!(full.lookup("/orders/dev").is_none());
        assert!(full.lookup("/ws/dev").is_some());
    }

    #[test]
    fn metadata_rules() {
        let s = Settings::default();
        let snap = build(
            &s,
            vec![
                inst(
                    "t-1",
                    "trading",
                    "10.0.0.1",
                    7001,
                    &[
                        ("group", "prod"),
                        WS,
                        ("keep-group-first", "true"),
                        ("secured", "TRUE"),
                    ],
                ),
                inst(
                    "p-1",
                    "prices",
                    "10.0.0.2",
                    9100,
                    &[
                        ("group", "prod"),
                        WS,
                        ("keep-group", "true"),
                        ("root-context", "ws/"),
                    ],
                ),
                inst(
                    "c-1",
                    "collab",
                    "10.0.0.3",
                    8443,
                    &[("group", "dev"), WS, ("ingress", "http://collab.example:8080/x")],
                ),
                inst(
                    "r-1",
                    "rgf",
                    "10.0.0.4",
                    1,
                    &[("group", "g"), WS, ("route-group-first", "true")],
                ),
            ],
        );
        let t = snap.lookup("/prod/trading").unwrap();
        assert!(t.secured && t.routable);
        let p = snap.lookup("/prices/prod").unwrap();
        assert!(p.keep_group && !p.secured);
        assert_eq!(p.root_context, "/ws");
        let c = snap.lookup("/collab/dev").unwrap();
        assert_eq!(c.nodes[0].host_port, "collab.example:8080");
        assert!(snap.lookup("/g/rgf").is_some());
    }

    #[test]
    fn bad_values_fail_closed_and_tls_is_listed() {
        let snap = build(
            &Settings::default(),
            vec![
                inst(
                    "x-1",
                    "x",
                    "10.0.0.1",
                    1,
                    &[("group", "g"), WS, ("secured", "yes")],
                ),
                inst(
                    "y-1",
                    "y",
                    "10.0.0.1",
                    1,
                    &[("group", "g"), WS, ("schema", "https")],
                ),
                inst(
                    "z-1",
                    "z",
                    "10.0.0.1",
                    1,
                    &[("group", "g"), WS, ("scheme", "HTTPS")],
                ),
                inst(
                    "s-1",
                    "s",
                    "10.0.0.1",
                    1,
                    &[("group", "g"), WS, ("state", "SUSPENDED")],
                ),
            ],
        );
        assert!(snap.by_route.is_empty());
        let x = snap.services.iter().find(|s| s.name == "x").unwrap();
        assert!(x.secured && x.reason.as_deref().unwrap().contains("secured"));
        let y = snap.services.iter().find(|s| s.name == "y").unwrap();
        assert_eq!(y.reason.as_deref(), Some(REASON_TLS));
    }

    #[test]
    fn disagreeing_instances_fail_closed() {
        let snap = build(
            &Settings::default(),
            vec![
                inst(
                    "chat-2",
                    "chat",
                    "10.0.0.2",
                    1,
                    &[("group", "dev"), WS, ("subscription-group", "b, /a")],
                ),
                inst(
                    "chat-1",
                    "chat",
                    "10.0.0.1",
                    1,
                    &[
                        ("group", "dev"),
                        WS,
                        ("secured", "true"),
                        ("subscription-group", "c"),
                    ],
                ),
                inst("chat-3", "chat", "10.0.0.3", 1, &[("group", "dev"), WS]),
            ],
        );
        let c = snap.lookup("/chat/dev").unwrap();
        assert!(c.secured);
        assert_eq!(
            c.subscription_groups,
            vec![vec!["a".to_string(), "b".to_string()], vec!["c".to_string()]]
        );
        assert_eq!(
            c.conflicts,
            vec!["secured".to_string(), "subscription-group".to_string()]
        );
        assert_eq!(c.nodes[0].host_port, "10.0.0.1:1", "nodes ordered by ServiceID");
    }

    #[test]
    fn namespace_rules_match_capi_table() {
        let alerts = || {
            vec![
                inst(
                    "alerts-1",
                    "alerts",
                    "10.0.0.1",
                    1,
                    &[("group", "dev"), WS, ("namespace", "team-a")],
                ),
                inst(
                    "alerts-2",
                    "alerts",
                    "10.0.0.2",
                    1,
                    &[("group", "dev"), WS, ("namespace", "team-b")],
                ),
                inst("alerts-3", "alerts", "10.0.0.3", 1, &[("group", "dev"), WS]),
            ]
        };
        let cases: [(&str, Option<&str>, bool, usize); 5] = [
            ("no namespace", None, false, 3),
            ("team-a permissive", Some("team-a"), false, 2),
            ("team-a strict", Some("team-a"), true, 1),
            ("team-c permissive", Some("team-c"), false, 1),
            ("team-c strict", Some("team-c"), true, 0),
        ];
        for (name, ns, strict, want) in cases {
            let s = Settings {
                namespace: ns.map(str::to_string),
                strict,
                ..Settings::default()
            };
            let snap = build(&s, alerts());
            let got = snap.lookup("/alerts/dev").map_or(0, |svc| svc.nodes.len());
            assert_eq!(got, want, "{name}");
        }
    }

    #[test]
    fn capi_instance_overrides_for_this_namespace_apply() {
        // Each case: gateway namespace, the first instance's extra meta, then the expected
        // (routable, secured, route key) and a fragment of the reason when not routable.
        type Case<'a> = (
            &'a str,
            Option<&'a str>,
            &'a [(&'a str, &'a str)],
            bool,
            bool,
            &'a str,
            &'a str,
        );
        let cases: &[Case] = &[
            ("no overrides", Some("edge"), &[], true, false, "/chat/dev", ""),
            (
                "secured by override",
                Some("edge"),
                &[("capi-instance-edge-secured", "true")],
                true,
                true,
                "/chat/dev",
                "",
            ),
            (
                "override beats the plain key",
                Some("edge"),
                &[("secured", "true"), ("capi-instance-edge-secured", "false")],
                true,
                false,
                "/chat/dev",
                "",
            ),
            (
                "non-boolean override fails closed",
                Some("edge"),
                &[("capi-instance-edge-secured", "yes")],
                false,
                true,
                "/chat/dev",
                "non-boolean",
            ),
            (
                "group first by override",
                Some("edge"),
                &[("capi-instance-edge-route-group-first", "true")],
                true,
                false,
                "/dev/chat",
                "",
            ),
            (
                "https by override",
                Some("edge"),
                &[("capi-instance-edge-scheme", "https")],
                false,
                false,
                "/chat/dev",
                "TLS",
            ),
            (
                "overrides for another namespace only",
                Some("edge"),
                &[("capi-instance-core-secured", "false")],
                false,
                false,
                "/chat/dev",
                "none for namespace",
            ),
            (
                "overrides and no namespace",
                None,
                &[("capi-instance-core-secured", "false")],
                false,
                false,
                "/chat/dev",
                "none for namespace",
            ),
            (
                "key without a property",
                Some("edge"),
                &[("capi-instance-edge", "x")],
                false,
                false,
                "/chat/dev",
                "names no property",
            ),
            (
                "keep-group-first is not an override",
                Some("edge"),
                &[("capi-instance-edge-keep-group-first", "true")],
                true,
                false,
                "/chat/dev",
                "",
            ),
            (
                "other namespace's override ignored when ours exists",
                Some("edge"),
                &[
                    ("capi-instance-edge-scheme", "http"),
                    ("capi-instance-core-secured", "true"),
                ],
                true,
                false,
                "/chat/dev",
                "",
            ),
        ];
        for &(name, ns, extra, routable, secured, route_key, reason) in cases {
            let s = Settings {
                namespace: ns.map(str::to_string),
                ..Settings::default()
            };
            let mut meta = vec![("group", "dev"), WS];
            meta.extend_from_slice(extra);
            let snap = build(&s, vec![inst("c-1", "chat", "10.0.0.1", 1, &meta)]);
            let svc = snap.services.iter().find(|x| x.label == "chat/dev").expect(name);
            assert_eq!(svc.routable, routable, "{name}: {:?}", svc.reason);
            assert_eq!(svc.secured, secured, "{name}");
            assert_eq!(svc.route_key, route_key, "{name}");
            let why = svc.reason.as_deref().unwrap_or("");
            assert!(why.contains(reason), "{name}: reason {why:?} lacks {reason:?}");
        }
    }

    #[test]
    fn capi_instance_secured_override_on_any_node_secures_the_service() {
        let s = Settings {
            namespace: Some("edge".into()),
            ..Settings::default()
        };
        let snap = build(
            &s,
            vec![
                inst("c-1", "chat", "10.0.0.1", 1, &[("group", "dev"), WS]),
                inst(
                    "c-2",
                    "chat",
                    "10.0.0.2",
                    1,
                    &[("group", "dev"), WS, ("capi-instance-edge-secured", "true")],
                ),
            ],
        );
        let svc = snap.lookup("/chat/dev").unwrap();
        assert!(svc.secured && svc.routable);
    }

    #[test]
    fn unresolvable_node_is_not_usable() {
        let snap = build(
            &Settings::default(),
            vec![inst("u-1", "u", "nowhere.invalid", 1, &[("group", "g"), WS])],
        );
        let u = snap.lookup("/u/g").unwrap();
        assert!(u.routable && !u.has_usable_node());
    }

    #[test]
    fn names_and_groups_must_be_one_segment() {
        let cases: &[(&str, &str, &str, bool)] = &[
            ("plain", "chat", "dev", true),
            ("slash_in_group", "chat", "a/b", false),
            ("space_in_group", "chat", "a b", false),
            ("percent_in_name", "c%2Fd", "dev", false),
            ("dots_and_dashes", "chat.v2-x", "dev_1", true),
        ];
        for (case, name, group, routable) in cases {
            let snap = build(
                &Settings::default(),
                vec![inst("i-1", name, "10.0.0.1", 1, &[("group", group), WS])],
            );
            assert_eq!(snap.services.len(), 1, "case {case}");
            assert_eq!(snap.services[0].routable, *routable, "case {case}");
        }
    }

    #[test]
    fn route_clash_keeps_first() {
        let snap = build(
            &Settings::default(),
            vec![
                inst("a-1", "a", "10.0.0.1", 1, &[("group", "b"), WS]),
                inst(
                    "b-1",
                    "b",
                    "10.0.0.1",
                    2,
                    &[("group", "a"), WS, ("keep-group-first", "true")],
                ),
            ],
        );
        assert_eq!(snap.lookup("/a/b").unwrap().name, "a");
        let b = snap.services.iter().find(|s| s.name == "b").unwrap();
        assert!(!b.routable);
    }

    #[test]
    fn root_context_must_fit_a_request_line() {
        // Fuzz regression (table_build, issue 8): a root-context with a control byte was written
        // raw into the request line sent to the node, so the node got a broken (or, with CR LF,
        // a split) request. Such a service is listed with a reason and not routed.
        #[rustfmt::skip]
        let cases = [
            ("fuzz crash: control byte", "/\u{1}", false),
            ("CR LF injection", "/ws HTTP/1.1\r\nX-Injected: 1\r\n\r\nGET /", false),
            ("space", "/a b", false),
            ("query", "/ws?x=1", false),
            ("fragment", "/ws#x", false),
            ("non-ASCII", "/caf\u{e9}", false),
            ("plain", "/ws/v1", true),
            ("percent-encoded", "/a%20b", true),
            ("none", "", true),
        ];
        for (name, root, routable) in cases {
            let snap = build(
                &Settings::default(),
                vec![inst(
                    "a",
                    "echo",
                    "10.0.0.1",
                    1,
                    &[("group", "dev"), WS, ("root-context", root)],
                )],
            );
            let svc = &snap.services[0];
            assert_eq!(svc.routable, routable, "case {name}: {:?}", svc.reason);
            assert_eq!(snap.lookup("/echo/dev").is_some(), routable, "case {name}");
        }
    }

    #[test]
    fn helpers() {
        assert_eq!(normalise_root_context("*"), "");
        assert_eq!(normalise_root_context("/"), "");
        assert_eq!(normalise_root_context("ws"), "/ws");
        assert_eq!(normalise_root_context("/ws//"), "/ws");
        assert_eq!(parse_ingress("http://h:8080"), Some(("h".into(), 8080)));
        assert_eq!(parse_ingress("https://h"), Some(("h".into(), 443)));
        assert_eq!(parse_ingress("HTTP://h/path"), Some(("h".into(), 80)));
        assert_eq!(parse_ingress("http://[::1]:9"), Some(("[::1]".into(), 9)));
        assert_eq!(parse_ingress("ftp://h"), None);
        assert_eq!(parse_ingress("http://h:x"), None);
        assert_eq!(
            parse_subscription_list(" /a, b ,,a, / "),
            vec!["a".to_string(), "b".to_string()]
        );
        assert_eq!(render_host_port("::1", 80), "[::1]:80");
    }
}
