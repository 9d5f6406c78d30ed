//! Consul's answers as serde structs (shared/consul/README.md §2–§4) and their conversion to
//! table [`Instance`]s. Parsers ignore unknown fields, accept `null` wherever a map, list or
//! string is expected, and read indexes as u64. Pure: bytes in, values out; no I/O, no panics.

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer};

use crate::snapshot::{Instance, NodeSource};

/// `null` (or absent) becomes the type's default: Consul sends `null` for empty maps and
/// some objects, and parsers must accept it anywhere (README §3).
fn nullable<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// `Node` of a `/v1/health/service/<name>` element.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct HealthNode {
    #[serde(rename = "Node", deserialize_with = "nullable")]
    pub node: String,
    #[serde(rename = "Address", deserialize_with = "nullable")]
    pub address: String,
}

/// `Service` of a health element (not the catalog's `Service*` names).
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct HealthService {
    #[serde(rename = "ID", deserialize_with = "nullable")]
    pub id: String,
    #[serde(rename = "Service", deserialize_with = "nullable")]
    pub service: String,
    /// `""` for plain services; `connect-proxy` and `*-gateway` are not nodes.
    #[serde(rename = "Kind", deserialize_with = "nullable")]
    pub kind: String,
    #[serde(rename = "Address", deserialize_with = "nullable")]
    pub address: String,
    /// An int in Consul; read wide so that a bad value is rejected here, not wrapped.
    #[serde(rename = "Port", deserialize_with = "nullable")]
    pub port: u64,
    #[serde(rename = "Meta", deserialize_with = "nullable")]
    pub meta: BTreeMap<String, String>,
    #[serde(rename = "ModifyIndex", deserialize_with = "nullable")]
    pub modify_index: u64,
}

/// One check of a health element (service-level or node-level).
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct HealthCheck {
    #[serde(rename = "CheckID", deserialize_with = "nullable")]
    pub check_id: String,
    #[serde(rename = "Status", deserialize_with = "nullable")]
    pub status: String,
}

/// One element of `/v1/health/service/<name>`.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct HealthEntry {
    #[serde(rename = "Node", deserialize_with = "nullable")]
    pub node: HealthNode,
    #[serde(rename = "Service", deserialize_with = "nullable")]
    pub service: HealthService,
    #[serde(rename = "Checks", deserialize_with = "nullable")]
    pub checks: Vec<HealthCheck>,
}

impl HealthEntry {
    /// README §4: healthy means every check (service AND node level) is `passing`; `warning`
    /// counts as unhealthy; an entry without checks is healthy.
    pub fn healthy(&self) -> bool {
        self.checks.iter().all(|c| c.status == "passing")
    }
}

/// `/v1/catalog/services`: the service names, without the `consul` entry (the servers).
pub fn parse_service_names(body: &[u8]) -> Result<Vec<String>, String> {
    let map: BTreeMap<String, serde::de::IgnoredAny> =
        serde_json::from_slice(body).map_err(|e| format!("catalog/services body: {e}"))?;
    Ok(map.into_keys().filter(|n| n != "consul").collect())
}

/// `/v1/health/service/<name>`.
pub fn parse_health(body: &[u8]) -> Result<Vec<HealthEntry>, String> {
    let list: Option<Vec<HealthEntry>> =
        serde_json::from_slice(body).map_err(|e| format!("health/service body: {e}"))?;
    Ok(list.unwrap_or_default())
}

/// Why an element gives no node (logged at debug by the caller).
#[derive(Debug, PartialEq, Eq)]
pub enum Skipped {
    /// `Kind` is set: a Connect proxy or gateway, not a backend.
    Kind(String),
    /// `Port` 0 (no port) or above 65535.
    Port(u64),
    /// Neither `Service.Address` nor `Node.Address`.
    NoAddress,
}

/// A health element -> an [`Instance`]: address `Service.Address`, or `Node.Address` when that
/// is `""` (README §4); healthy per [`HealthEntry::healthy`]. The id orders instances by
/// `ServiceID` first (DESIGN §12), then node (IDs are unique per node only).
pub fn to_instance(entry: &HealthEntry) -> Result<Instance, Skipped> {
    let svc = &entry.service;
    if !svc.kind.is_empty() {
        return Err(Skipped::Kind(svc.kind.clone()));
    }
    let port = match u16::try_from(svc.port) {
        Ok(p) if p > 0 => p,
        _ => return Err(Skipped::Port(svc.port)),
    };
    let address = if svc.address.trim().is_empty() {
        entry.node.address.trim()
    } else {
        svc.address.trim()
    };
    if address.is_empty() {
        return Err(Skipped::NoAddress);
    }
    Ok(Instance {
        // NUL sorts before every character a ServiceID can hold, so ordering stays ServiceID-first.
        id: format!("{}\u{0}{}", svc.id, entry.node.node),
        name: svc.service.clone(),
        address: address.to_string(),
        port,
        meta: svc.meta.clone(),
        healthy: entry.healthy(),
        source: NodeSource::Consul,
    })
}

/// Percent-encode a service name for the URL path (README §1): unreserved characters stay.
pub fn encode_path_segment(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for b in name.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// `X-Consul-Index`: a decimal u64; anything else (missing, empty, signed, text) is an error
/// (README §5: never take an index from a doubtful answer).
pub fn parse_index(value: Option<&str>) -> Result<u64, String> {
    let v = value.ok_or_else(|| "answer without X-Consul-Index".to_string())?;
    let t = v.trim();
    if t.is_empty() || !t.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!(
            "X-Consul-Index is not a number: {:?}",
            crate::config::file::quote(t)
        ));
    }
    t.parse::<u64>()
        .map_err(|_| format!("X-Consul-Index out of range: {:?}", crate::config::file::quote(t)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tolerant_parsing() {
        let cases: &[(&str, &str, Result<usize, &str>)] = &[
            ("null_body", "null", Ok(0)),
            ("empty", "[]", Ok(0)),
            (
                "null_meta_and_unknown_fields",
                r#"[{"Node":{"Node":"n","Address":"10.0.0.1","X":1},"Service":{"ID":"a","Service":"s","Meta":null,"Port":1,"New":{"a":[1]},"ModifyIndex":18446744073709551615},"Checks":null}]"#,
                Ok(1),
            ),
            ("not_json", "<html>", Err("health/service body")),
            ("object", "{}", Err("health/service body")),
            (
                "meta_not_string",
                r#"[{"Service":{"Meta":{"a":1}}}]"#,
                Err("health/service body"),
            ),
        ];
        for (name, body, want) in cases {
            match (parse_health(body.as_bytes()), want) {
                (Ok(list), Ok(n)) => assert_eq!(list.len(), *n, "case {name}"),
                (Err(e), Err(w)) => assert!(e.contains(w), "case {name}: {e}"),
                (got, _) => panic!("case {name}: got {got:?}"),
            }
        }
    }

    #[test]
    fn instance_rules() {
        let entry = |svc_addr: &str, port: u64, kind: &str, statuses: &[&str]| HealthEntry {
            node: HealthNode {
                node: "n1".into(),
                address: "10.0.0.9".into(),
            },
            service: HealthService {
                id: "s-1".into(),
                service: "s".into(),
                kind: kind.into(),
                address: svc_addr.into(),
                port,
                ..HealthService::default()
            },
            checks: statuses
                .iter()
                .map(|s| HealthCheck {
                    check_id: "c".into(),
                    status: s.to_string(),
                })
                .collect(),
        };
        let ok = to_instance(&entry("10.0.0.1", 80, "", &["passing", "passing"])).unwrap();
        assert_eq!((ok.address.as_str(), ok.port, ok.healthy), ("10.0.0.1", 80, true));
        assert_eq!(ok.source, NodeSource::Consul);
        let fallback = to_instance(&entry("", 80, "", &[])).unwrap();
        assert_eq!((fallback.address.as_str(), fallback.healthy), ("10.0.0.9", true));
        for status in ["warning", "critical", "maintenance"] {
            assert!(
                !to_instance(&entry("a", 1, "", &["passing", status]))
                    .unwrap()
                    .healthy
            );
        }
        assert_eq!(to_instance(&entry("a", 0, "", &[])), Err(Skipped::Port(0)));
        assert_eq!(
            to_instance(&entry("a", 70000, "", &[])),
            Err(Skipped::Port(70000))
        );
        assert_eq!(
            to_instance(&entry("a", 1, "connect-proxy", &[])),
            Err(Skipped::Kind("connect-proxy".into()))
        );
        let mut none = entry("", 1, "", &[]);
        none.node.address.clear();
        assert_eq!(to_instance(&none), Err(Skipped::NoAddress));
    }

    #[test]
    fn ids_order_by_service_id_first() {
        let mut ids = ["chat-10\u{0}a", "chat-1\u{0}z", "chat-1\u{0}b"];
        ids.sort();
        assert_eq!(ids, ["chat-1\u{0}b", "chat-1\u{0}z", "chat-10\u{0}a"]);
    }

    #[test]
    fn names_and_indexes() {
        let names = parse_service_names(br#"{"consul":[],"chat":["a"],"x y":[]}"#).unwrap();
        assert_eq!(names, ["chat", "x y"]);
        assert!(parse_service_names(b"[]").is_err());
        assert_eq!(encode_path_segment("x y/é"), "x%20y%2F%C3%A9");
        let cases: &[(Option<&str>, Result<u64, ()>)] = &[
            (Some("175"), Ok(175)),
            (Some(" 18446744073709551615 "), Ok(u64::MAX)),
            (Some("0"), Ok(0)),
            (None, Err(())),
            (Some(""), Err(())),
            (Some("-1"), Err(())),
            (Some("+5"), Err(())),
            (Some("18446744073709551616"), Err(())),
            (Some("abc"), Err(())),
        ];
        for (input, want) in cases {
            assert_eq!(parse_index(*input).map_err(|_| ()), *want, "{input:?}");
        }
    }
}
