//! Consul test double (shared/consul/README.md §9): a std-thread HTTP/1.1 server on 127.0.0.1:0
//! serving `/v1/catalog/services`, `/v1/catalog/service/<name>` and `/v1/health/service/<name>`
//! in Consul's real shapes (seeded from shared/consul/fixtures), with Consul's headers, blocking
//! semantics, `?passing`, ACL tokens, fault switches, runtime register/deregister/health flips
//! and a record of every request. One global index moves on every mutation.
#![allow(clippy::disallowed_types)] // locks are fine in tests: the rule guards the data plane

use std::collections::{BTreeMap, HashMap};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

mod http;
use http::spawn_acceptor;

/// `shared/consul/fixtures` next to the repository (CI layout), `CAPI_WS_CONSUL_FIXTURES`, or
/// two levels up (a worktree under `wt/`).
pub fn fixtures_dir() -> PathBuf {
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let candidates = [
        std::env::var_os("CAPI_WS_CONSUL_FIXTURES").map(PathBuf::from),
        Some(PathBuf::from(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../shared/consul/fixtures"
        ))),
        Some(manifest.join("../../shared/consul/fixtures")),
    ];
    candidates
        .into_iter()
        .flatten()
        .find(|p| p.join("catalog-services.json").is_file())
        .unwrap_or_else(|| {
            panic!(
                "Consul fixtures not found: expected shared/consul/fixtures next to the repository \
                 ({}/../shared), or set CAPI_WS_CONSUL_FIXTURES",
                manifest.display()
            )
        })
}

/// A fixture file parsed as JSON.
pub fn fixture(name: &str) -> Value {
    let path = fixtures_dir().join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// One request as the double received it.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: String,
    pub path: String,
    /// Decoded query parameters in order (`?passing` gives `("passing", "")`).
    pub query: Vec<(String, String)>,
    pub headers: Vec<(String, String)>,
    pub at: Instant,
}

impl Recorded {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn param(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// A runtime registration (`consul services register`).
#[derive(Debug, Clone)]
pub struct Registration {
    pub name: String,
    pub id: String,
    pub node: String,
    pub node_address: String,
    pub address: String,
    pub port: u16,
    pub meta: Vec<(String, String)>,
    pub status: String,
}

/// A websocket instance `id` of `name`/`group` at `addr` on its own node (named after the id).
pub fn registration(name: &str, id: &str, group: &str, addr: SocketAddr) -> Registration {
    Registration {
        name: name.to_owned(),
        id: id.to_owned(),
        node: format!("node-{id}"),
        node_address: addr.ip().to_string(),
        address: addr.ip().to_string(),
        port: addr.port(),
        meta: vec![
            ("group".into(), group.into()),
            ("type".into(), "websocket".into()),
        ],
        status: "passing".into(),
    }
}

impl Registration {
    pub fn meta(mut self, key: &str, value: &str) -> Self {
        self.meta.retain(|(k, _)| k != key);
        self.meta.push((key.to_owned(), value.to_owned()));
        self
    }

    pub fn without_meta(mut self, key: &str) -> Self {
        self.meta.retain(|(k, _)| k != key);
        self
    }

    pub fn node(mut self, node: &str) -> Self {
        self.node = node.to_owned();
        self
    }

    /// `ServiceAddress` (`""` = use the node address).
    pub fn address(mut self, address: &str) -> Self {
        self.address = address.to_owned();
        self
    }

    pub fn status(mut self, status: &str) -> Self {
        self.status = status.to_owned();
        self
    }
}

/// One instance: the health element parts; the catalog element is derived from them.
#[derive(Debug, Clone)]
struct Inst {
    node: Value,
    service: Value,
    checks: Vec<Value>,
}

impl Inst {
    fn id(&self) -> &str {
        self.service["ID"].as_str().unwrap_or_default()
    }

    fn node_name(&self) -> &str {
        self.node["Node"].as_str().unwrap_or_default()
    }

    fn passing(&self) -> bool {
        self.checks.iter().all(|c| c["Status"] == "passing")
    }

    fn health(&self) -> Value {
        json!({"Node": self.node, "Service": self.service, "Checks": self.checks})
    }

    /// The `/v1/catalog/service/<name>` element (flat `Service*` fields, README §3).
    fn catalog(&self) -> Value {
        let (n, s) = (&self.node, &self.service);
        let mut c = json!({
            "ID": n["ID"], "Node": n["Node"], "Address": n["Address"], "Datacenter": n["Datacenter"],
            "TaggedAddresses": n["TaggedAddresses"], "NodeMeta": n["Meta"], "ServiceKind": "",
            "ServiceID": s["ID"], "ServiceName": s["Service"], "ServiceTags": s["Tags"],
            "ServiceAddress": s["Address"], "ServiceWeights": s["Weights"], "ServiceMeta": s["Meta"],
            "ServicePort": s["Port"], "ServiceSocketPath": "",
            "ServiceEnableTagOverride": s["EnableTagOverride"], "ServiceProxy": s["Proxy"],
            "ServiceConnect": s["Connect"], "ServiceLocality": null,
            "CreateIndex": s["CreateIndex"], "ModifyIndex": s["ModifyIndex"]
        });
        if let Some(tagged) = s.get("TaggedAddresses") {
            c["ServiceTaggedAddresses"] = tagged.clone();
        }
        c
    }

    /// Highest index in the element (README: the suggested static index).
    fn max_index(&self) -> u64 {
        let idx = |v: &Value| {
            v["CreateIndex"]
                .as_u64()
                .unwrap_or(0)
                .max(v["ModifyIndex"].as_u64().unwrap_or(0))
        };
        self.checks
            .iter()
            .map(idx)
            .fold(idx(&self.node).max(idx(&self.service)), u64::max)
    }
}

/// A catalog fixture element as the health element an agent gives (passing `serfHealth`).
fn inst_from_catalog(c: &Value) -> Inst {
    let mut service = json!({
        "ID": c["ServiceID"], "Service": c["ServiceName"], "Tags": c["ServiceTags"],
        "Address": c["ServiceAddress"], "Meta": c["ServiceMeta"], "Port": c["ServicePort"],
        "Weights": c["ServiceWeights"], "EnableTagOverride": c["ServiceEnableTagOverride"],
        "Proxy": c["ServiceProxy"], "Connect": c["ServiceConnect"], "PeerName": "",
        "CreateIndex": c["CreateIndex"], "ModifyIndex": c["ModifyIndex"]
    });
    if let Some(t) = c.get("ServiceTaggedAddresses") {
        service["TaggedAddresses"] = t.clone();
    }
    Inst {
        node: json!({"ID": c["ID"], "Node": c["Node"], "Address": c["Address"],
                     "Datacenter": c["Datacenter"], "TaggedAddresses": c["TaggedAddresses"],
                     "Meta": c["NodeMeta"], "CreateIndex": c["CreateIndex"], "ModifyIndex": c["ModifyIndex"]}),
        service,
        checks: vec![serf_check(
            c["Node"].as_str().unwrap_or_default(),
            c["CreateIndex"].as_u64().unwrap_or(1),
        )],
    }
}

fn serf_check(node: &str, index: u64) -> Value {
    json!({"Node": node, "CheckID": "serfHealth", "Name": "Serf Health Status", "Status": "passing",
           "Notes": "", "Output": "Agent alive and reachable", "ServiceID": "", "ServiceName": "",
           "ServiceTags": [], "Type": "", "Interval": "", "Timeout": "", "ExposedPort": 0,
           "Definition": {}, "CreateIndex": index, "ModifyIndex": index})
}

/// Fault switches (README §9). Counters apply to the next N requests.
#[derive(Debug, Default)]
struct Faults {
    fail: Option<(u32, u16, String)>,
    hang: bool,
    garbage: u32,
    no_index: u32,
    spurious: u32,
    index_zero: bool,
    streaming: bool,
}

struct State {
    index: u64,
    catalog_index: u64,
    /// Lower-cased name -> index of the last registration change (catalog/service).
    reg_index: HashMap<String, u64>,
    /// Lower-cased name -> index of the last registration or check change (health/service).
    health_index: HashMap<String, u64>,
    services: BTreeMap<String, Vec<Inst>>,
    /// Known ACL tokens; `None` = ACLs off.
    acl: Option<Vec<String>>,
    faults: Faults,
    requests: Vec<Recorded>,
    jitter: bool,
    rng: u64,
    down: bool,
    /// Bumped when the double goes down: open connections close.
    epoch: u64,
}

impl State {
    fn bump(&mut self) -> u64 {
        self.index += 1;
        self.index
    }

    fn endpoint_index(&self, ep: &Endpoint) -> u64 {
        let idx = match ep {
            Endpoint::Services => self.catalog_index,
            Endpoint::Catalog(n) => *self
                .reg_index
                .get(&n.to_lowercase())
                .unwrap_or(&self.catalog_index),
            Endpoint::Health(n) => *self
                .health_index
                .get(&n.to_lowercase())
                .unwrap_or(&self.catalog_index),
        };
        idx.max(1)
    }
}

#[derive(Debug)]
enum Endpoint {
    Services,
    Catalog(String),
    Health(String),
}

struct Shared {
    state: Mutex<State>,
    cond: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The double. Drop takes it down (listener and connections closed).
pub struct Consul {
    shared: Arc<Shared>,
    addr: SocketAddr,
}

impl Consul {
    /// An empty catalog (only `consul` itself), ACLs off, jitter off.
    pub fn start() -> Consul {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                index: 1,
                catalog_index: 1,
                reg_index: HashMap::new(),
                health_index: HashMap::new(),
                services: BTreeMap::new(),
                acl: None,
                faults: Faults::default(),
                requests: Vec::new(),
                jitter: false,
                rng: 0x9e37_79b9_7f4a_7c15,
                down: false,
                epoch: 0,
            }),
            cond: Condvar::new(),
        });
        spawn_acceptor(listener, Arc::clone(&shared), 0);
        Consul { shared, addr }
    }

    /// The fixture catalog (health fixtures where they exist, else catalog fixtures with a
    /// passing `serfHealth`), indexes as the fixtures' README suggests.
    pub fn from_fixtures() -> Consul {
        let c = Consul::start();
        {
            let mut st = c.shared.lock();
            let names = fixture("catalog-services.json");
            let mut max = 1;
            for name in names.as_object().unwrap().keys().filter(|n| *n != "consul") {
                let dir = fixtures_dir();
                let insts: Vec<Inst> = if dir.join(format!("health-service-{name}.json")).is_file() {
                    let list = fixture(&format!("health-service-{name}.json"));
                    list.as_array()
                        .unwrap()
                        .iter()
                        .map(|e| Inst {
                            node: e["Node"].clone(),
                            service: e["Service"].clone(),
                            checks: e["Checks"].as_array().cloned().unwrap_or_default(),
                        })
                        .collect()
                } else {
                    let list = fixture(&format!("catalog-service-{name}.json"));
                    list.as_array().unwrap().iter().map(inst_from_catalog).collect()
                };
                let reg = insts
                    .iter()
                    .map(|i| i.service["ModifyIndex"].as_u64().unwrap_or(1))
                    .max()
                    .unwrap_or(1);
                let health = insts.iter().map(Inst::max_index).max().unwrap_or(1);
                st.reg_index.insert(name.to_lowercase(), reg);
                st.health_index.insert(name.to_lowercase(), health);
                st.catalog_index = st.catalog_index.max(reg);
                max = max.max(health);
                st.services.insert(name.to_lowercase(), insts);
            }
            st.index = max;
        }
        c
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:<port>` for `capi.consul.hosts`.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The global index (moved by every mutation).
    pub fn index(&self) -> u64 {
        self.shared.lock().index
    }

    fn mutate(&self, f: impl FnOnce(&mut State)) {
        let mut st = self.shared.lock();
        f(&mut st);
        drop(st);
        self.shared.cond.notify_all();
    }

    /// Register (or re-register: same node and id) an instance.
    pub fn register(&self, r: &Registration) {
        self.mutate(|st| {
            let i = st.bump();
            let key = r.name.to_lowercase();
            let list = st.services.entry(key.clone()).or_default();
            let old = list.iter().position(|x| x.id() == r.id && x.node_name() == r.node);
            let create = old
                .map(|p| list[p].service["CreateIndex"].as_u64().unwrap_or(i))
                .unwrap_or(i);
            let meta: serde_json::Map<String, Value> =
                r.meta.iter().map(|(k, v)| (k.clone(), Value::String(v.clone()))).collect();
            let mut service = json!({
                "ID": r.id, "Service": r.name, "Tags": [], "Address": r.address, "Meta": meta,
                "Port": r.port, "Weights": {"Passing": 1, "Warning": 1}, "EnableTagOverride": false,
                "Proxy": {"Mode": "", "MeshGateway": {}, "Expose": {}}, "Connect": {}, "PeerName": "",
                "CreateIndex": create, "ModifyIndex": i
            });
            if !r.address.is_empty() {
                let ta = json!({"Address": r.address, "Port": r.port});
                service["TaggedAddresses"] = json!({"lan_ipv4": ta, "wan_ipv4": ta});
            }
            let inst = Inst {
                node: json!({"ID": format!("00000000-0000-4000-8000-{:012}", i), "Node": r.node,
                             "Address": r.node_address, "Datacenter": "dc1",
                             "TaggedAddresses": {"lan": r.node_address, "wan": r.node_address},
                             "Meta": {"consul-network-segment": ""}, "CreateIndex": create, "ModifyIndex": create}),
                service,
                checks: vec![
                    serf_check(&r.node, create),
                    json!({"Node": r.node, "CheckID": format!("service:{}", r.id),
                           "Name": format!("Service '{}' check", r.name), "Status": r.status,
                           "Notes": "", "Output": "", "ServiceID": r.id, "ServiceName": r.name,
                           "ServiceTags": [], "Type": "tcp", "Interval": "10s", "Timeout": "1s",
                           "ExposedPort": 0, "Definition": {}, "CreateIndex": create, "ModifyIndex": i}),
                ],
            };
            match old {
                Some(p) => list[p] = inst,
                None => list.push(inst),
            }
            st.catalog_index = i;
            st.reg_index.insert(key.clone(), i);
            st.health_index.insert(key, i);
        });
    }

    /// Deregister every instance with this service id (any node).
    pub fn deregister(&self, id: &str) {
        self.remove_where(|inst| inst.id() == id);
    }

    /// Deregister a node: every instance on it goes.
    pub fn deregister_node(&self, node: &str) {
        self.remove_where(|inst| inst.node_name() == node);
    }

    fn remove_where(&self, gone: impl Fn(&Inst) -> bool) {
        self.mutate(|st| {
            let i = st.bump();
            let mut touched = Vec::new();
            for (name, list) in st.services.iter_mut() {
                let before = list.len();
                list.retain(|inst| !gone(inst));
                if list.len() != before {
                    touched.push(name.clone());
                }
            }
            st.services.retain(|_, list| !list.is_empty());
            for name in touched {
                st.reg_index.insert(name.clone(), i);
                st.health_index.insert(name, i);
            }
            st.catalog_index = i;
        });
    }

    /// Set the status of instance `id`'s own check (`passing`, `warning`, `critical`): moves
    /// only the health index of its service, never the catalog's.
    pub fn set_check(&self, id: &str, status: &str) {
        self.set_checks(|inst, check| inst.id() == id && check["ServiceID"] == id, status);
    }

    /// Set the status of the node-level `serfHealth` check of every instance on `node`.
    pub fn set_node_check(&self, node: &str, status: &str) {
        self.set_checks(
            |inst, check| inst.node_name() == node && check["CheckID"] == "serfHealth",
            status,
        );
    }

    fn set_checks(&self, which: impl Fn(&Inst, &Value) -> bool, status: &str) {
        self.mutate(|st| {
            let i = st.bump();
            let mut touched = Vec::new();
            for (name, list) in st.services.iter_mut() {
                for inst in list.iter_mut() {
                    let snapshot = inst.clone();
                    for check in inst.checks.iter_mut() {
                        if which(&snapshot, check) {
                            check["Status"] = Value::String(status.to_owned());
                            check["ModifyIndex"] = json!(i);
                            touched.push(name.clone());
                        }
                    }
                }
            }
            for name in touched {
                st.health_index.insert(name, i);
            }
        });
    }

    /// ACLs on with default policy deny; `tokens` are the known secrets.
    pub fn require_tokens(&self, tokens: &[&str]) {
        self.mutate(|st| st.acl = Some(tokens.iter().map(|t| t.to_string()).collect()));
    }

    /// The next `n` requests answer `status` with a plain-text body.
    pub fn fail_next(&self, n: u32, status: u16, body: &str) {
        self.mutate(|st| st.faults.fail = Some((n, status, body.to_owned())));
    }

    /// New requests stall (no answer) until `set_hang(false)`; then their connection closes.
    pub fn set_hang(&self, on: bool) {
        self.mutate(|st| st.faults.hang = on);
    }

    /// The next `n` answers are 200 with a body that is not JSON.
    pub fn garbage_next(&self, n: u32) {
        self.mutate(|st| st.faults.garbage = n);
    }

    /// The next `n` answers are 200 without `X-Consul-Index`.
    pub fn no_index_next(&self, n: u32) {
        self.mutate(|st| st.faults.no_index = n);
    }

    /// The next `n` held requests return at once with an unchanged index and body.
    pub fn spurious_next(&self, n: u32) {
        self.mutate(|st| st.faults.spurious = n);
    }

    /// Report `X-Consul-Index: 0` (an old or buggy server).
    pub fn set_index_zero(&self, on: bool) {
        self.mutate(|st| st.faults.index_zero = on);
    }

    /// Drop the leader headers, as the streaming backend does.
    pub fn set_streaming(&self, on: bool) {
        self.mutate(|st| st.faults.streaming = on);
    }

    /// Hold blocking queries up to `wait/16` longer, as Consul does.
    pub fn set_jitter(&self, on: bool) {
        self.mutate(|st| st.jitter = on);
    }

    /// Snapshot restore: every index goes back to `to` (≥ 1); later mutations count from there.
    pub fn reset_index(&self, to: u64) {
        let to = to.max(1);
        self.mutate(|st| {
            st.index = to;
            st.catalog_index = st.catalog_index.min(to);
            for v in st.reg_index.values_mut().chain(st.health_index.values_mut()) {
                *v = (*v).min(to);
            }
        });
    }

    /// Close the listener and every connection (Consul down).
    pub fn go_down(&self) {
        self.mutate(|st| {
            st.down = true;
            st.epoch += 1;
        });
        // Wake the blocking accept so the acceptor sees `down` and drops the listener.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
    }

    /// Listen again on the same port.
    pub fn come_up(&self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        let listener = loop {
            // The old acceptor drops its listener after the wake-up connect; retry until free.
            match TcpListener::bind(self.addr) {
                Ok(l) => break l,
                Err(e) if Instant::now() < deadline => {
                    let _ = e;
                    thread::sleep(Duration::from_millis(20));
                }
                Err(e) => panic!("consul double: rebinding {}: {e}", self.addr),
            }
        };
        let epoch = {
            let mut st = self.shared.lock();
            st.down = false;
            st.epoch
        };
        spawn_acceptor(listener, Arc::clone(&self.shared), epoch);
    }

    /// Every request received so far.
    pub fn requests(&self) -> Vec<Recorded> {
        self.shared.lock().requests.clone()
    }

    pub fn clear_requests(&self) {
        self.shared.lock().requests.clear();
    }
}

impl Drop for Consul {
    fn drop(&mut self) {
        if !self.shared.lock().down {
            self.go_down();
        }
    }
}
