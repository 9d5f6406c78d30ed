//! `capi-ws demo` (`make run`): the gateway on its embedded default plus two built-in echo
//! nodes on loopback, declared as the static service `echo/dev` and the secured service
//! `secure-echo/dev` (a dev EC key pair generated at start, its JWKS in a temp file); prints
//! ready-to-paste URLs and a valid token. No Consul, no Keycloak, nothing to install.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use crate::cli::RunArgs;
use crate::config::{self, StaticService};

/// Echo nodes started by the demo.
const DEMO_NODES: usize = 2;

pub fn run_demo(args: &RunArgs) -> i32 {
    let mut settings = match config::resolve(args) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("capi-ws demo: invalid configuration:\n{e}");
            return 2;
        }
    };
    // The demo is for one machine: loopback unless --host says otherwise.
    if args.host.is_none() {
        settings.host = "127.0.0.1".to_string();
        if settings.ops.admin_address == crate::config::ops::DEFAULT_ADMIN_ADDRESS {
            settings.ops.admin_address = "127.0.0.1".to_string();
        }
    }
    let mut nodes = Vec::with_capacity(DEMO_NODES);
    for _ in 0..DEMO_NODES {
        let listen: SocketAddr = ([127, 0, 0, 1], 0).into();
        match crate::echo::spawn_echo(listen, 1, settings.driver) {
            Ok(addr) => nodes.push(addr),
            Err(e) => {
                eprintln!("capi-ws demo: cannot start an echo node: {e}");
                return 1;
            }
        }
    }
    for addr in &nodes {
        settings.services.push(StaticService {
            name: "echo".to_string(),
            address: addr.ip().to_string(),
            port: addr.port(),
            meta: BTreeMap::from([
                ("group".to_string(), "dev".to_string()),
                ("type".to_string(), "websocket".to_string()),
            ]),
        });
    }
    let dev = match DevKey::generate() {
        Ok(d) => d,
        Err(e) => {
            eprintln!("capi-ws demo: cannot set up the dev key: {e}");
            return 1;
        }
    };
    settings.oauth2.enabled = true;
    settings.oauth2.sources.push(crate::config::KeySource {
        source: dev.jwks_path.display().to_string(),
        issuer: Some(DEV_ISSUER.to_string()),
        audience: None,
    });
    for addr in &nodes {
        settings.services.push(StaticService {
            name: "secure-echo".to_string(),
            address: addr.ip().to_string(),
            port: addr.port(),
            meta: BTreeMap::from([
                ("group".to_string(), "dev".to_string()),
                ("type".to_string(), "websocket".to_string()),
                ("secured".to_string(), "true".to_string()),
                ("subscription-group".to_string(), DEV_SUBSCRIPTION.to_string()),
            ]),
        });
    }
    let token = dev.token;
    let route = format!("{}/echo/dev/", settings.context_path);
    let secured = format!("{}/secure-echo/dev/", settings.context_path);
    crate::serve(settings, move |workers| {
        let ws = workers.ws_addr;
        let list: Vec<String> = nodes.iter().map(|n| n.to_string()).collect();
        println!();
        println!(
            "capi-ws demo is up: gateway ws://{ws}, echo nodes {}",
            list.join(" and ")
        );
        println!();
        println!("  Service echo/dev (2 nodes, round-robin):  ws://{ws}{route}");
        println!("  Health probe:                             curl -i http://{ws}/health");
        println!();
        println!("  From a browser console (any page):");
        println!(
            "    const ws = new WebSocket(\"ws://{ws}{route}\"); ws.onmessage = e => console.log(\"echo:\", e.data); ws.onopen = () => ws.send(\"hello capi-ws\");"
        );
        println!("  From a terminal (if you have websocat):  websocat ws://{ws}{route}");
        println!();
        println!("  Secured service secure-echo/dev (needs a token with subscription {DEV_SUBSCRIPTION:?}):");
        println!("    ws://{ws}{secured}?access_token={token}");
        println!("  or:  websocat -H 'Authorization: Bearer {token}' ws://{ws}{secured}");
        println!("  (dev token, valid 24 h, signed by a key generated for this run only)");
        println!();
        println!("Ctrl-C stops it.");
    })
}

/// `iss` of the dev token, bound to the dev key source.
const DEV_ISSUER: &str = "capi-ws-demo";
/// The secured demo service's `subscription-group`, carried by the dev token.
const DEV_SUBSCRIPTION: &str = "demo";
/// Lifetime of the dev token.
const DEV_TOKEN_SECS: u64 = 24 * 3600;

/// A P-256 key pair made for this run: its public JWKS written to a temp file, and a token
/// signed with it.
struct DevKey {
    jwks_path: std::path::PathBuf,
    token: String,
}

impl DevKey {
    fn generate() -> Result<DevKey, String> {
        use aws_lc_rs::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
        use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
        use base64::Engine as _;

        let pair = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING)
            .map_err(|_| "EC key generation failed".to_string())?;
        // Uncompressed point: 0x04 || x (32 bytes) || y (32 bytes).
        let point = pair.public_key().as_ref();
        if point.len() != 65 {
            return Err("unexpected public key encoding".to_string());
        }
        let kid = "capi-ws-demo";
        let jwks = serde_json::json!({"keys": [{
            "kid": kid, "kty": "EC", "crv": "P-256", "alg": "ES256", "use": "sig",
            "x": B64.encode(&point[1..33]), "y": B64.encode(&point[33..65]),
        }]});
        let dir = std::env::temp_dir().join(format!("capi-ws-demo-{}", std::process::id()));
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let jwks_path = dir.join("jwks.json");
        std::fs::write(&jwks_path, jwks.to_string()).map_err(|e| format!("{}: {e}", jwks_path.display()))?;

        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let header = serde_json::json!({"alg": "ES256", "typ": "JWT", "kid": kid});
        let claims = serde_json::json!({
            "iss": DEV_ISSUER, "sub": "demo-user", "iat": now, "exp": now + DEV_TOKEN_SECS,
            "subscriptions": [format!("/{DEV_SUBSCRIPTION}")],
        });
        let input = format!(
            "{}.{}",
            B64.encode(header.to_string()),
            B64.encode(claims.to_string())
        );
        let sig = pair
            .sign(&aws_lc_rs::rand::SystemRandom::new(), input.as_bytes())
            .map_err(|_| "signing failed".to_string())?;
        let token = format!("{input}.{}", B64.encode(sig.as_ref()));
        Ok(DevKey { jwks_path, token })
    }
}
