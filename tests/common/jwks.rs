//! JWT test doubles (DESIGN §5): generated signing keys (RSA 2048 and EC P-256, made once per
//! test binary), tokens signed by hand (so tests can also forge bad ones: `alg: none`, HS256
//! keyed with the RSA public key), and a JWKS HTTP server on 127.0.0.1:0 serving the public
//! keys in Keycloak's certs shape, with switchable keys and an up/down switch, and fault modes
//! (slow answers, garbage bodies) for the provider-fault tests.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{EcdsaKeyPair, KeyPair as _, ECDSA_P256_SHA256_FIXED_SIGNING, RSA_PKCS1_SHA256};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde_json::{json, Value};

pub fn b64(bytes: impl AsRef<[u8]>) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

pub fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs()
}

/// A signing key with its `kid`.
pub enum TestKey {
    Rsa {
        kid: String,
        pair: aws_lc_rs::rsa::KeyPair,
    },
    Ec {
        kid: String,
        pair: EcdsaKeyPair,
    },
}

impl TestKey {
    fn rsa(kid: &str) -> TestKey {
        let pair = aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).unwrap();
        TestKey::Rsa {
            kid: kid.into(),
            pair,
        }
    }

    fn ec(kid: &str) -> TestKey {
        let pair = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING).unwrap();
        TestKey::Ec {
            kid: kid.into(),
            pair,
        }
    }

    pub fn kid(&self) -> &str {
        match self {
            TestKey::Rsa { kid, .. } | TestKey::Ec { kid, .. } => kid,
        }
    }

    pub fn alg(&self) -> &'static str {
        match self {
            TestKey::Rsa { .. } => "RS256",
            TestKey::Ec { .. } => "ES256",
        }
    }

    /// The public key as Keycloak publishes it in `/protocol/openid-connect/certs`.
    pub fn jwk(&self) -> Value {
        match self {
            TestKey::Rsa { kid, pair } => {
                let public = pair.public_key();
                json!({
                    "kid": kid, "kty": "RSA", "alg": "RS256", "use": "sig",
                    "n": b64(public.modulus().big_endian_without_leading_zero()),
                    "e": b64(public.exponent().big_endian_without_leading_zero()),
                    "x5t": "aGVsbG8", "x5t#S256": "aGVsbG8"
                })
            }
            TestKey::Ec { kid, pair } => {
                let point = pair.public_key().as_ref();
                json!({
                    "kid": kid, "kty": "EC", "alg": "ES256", "use": "sig", "crv": "P-256",
                    "x": b64(&point[1..33]), "y": b64(&point[33..65])
                })
            }
        }
    }

    /// The raw public key bytes (what an HMAC-confusion attacker would use as the secret).
    pub fn public_bytes(&self) -> Vec<u8> {
        match self {
            TestKey::Rsa { pair, .. } => pair.public_key().as_ref().to_vec(),
            TestKey::Ec { pair, .. } => pair.public_key().as_ref().to_vec(),
        }
    }

    pub fn sign(&self, message: &[u8]) -> Vec<u8> {
        let rng = SystemRandom::new();
        match self {
            TestKey::Rsa { pair, .. } => {
                let mut sig = vec![0; pair.public_modulus_len()];
                pair.sign(&RSA_PKCS1_SHA256, &rng, message, &mut sig).unwrap();
                sig
            }
            TestKey::Ec { pair, .. } => pair.sign(&rng, message).unwrap().as_ref().to_vec(),
        }
    }

    /// A token signed by this key with its `kid` and `alg`.
    pub fn token(&self, claims: &Value) -> String {
        let header = json!({"alg": self.alg(), "typ": "JWT", "kid": self.kid()});
        self.token_with_header(&header, claims)
    }

    pub fn token_with_header(&self, header: &Value, claims: &Value) -> String {
        let signing_input = format!("{}.{}", b64(header.to_string()), b64(claims.to_string()));
        let sig = self.sign(signing_input.as_bytes());
        format!("{signing_input}.{}", b64(sig))
    }
}

/// Keys shared by every test of one binary (RSA generation is the slow part).
pub struct Keys {
    /// Realm A's RSA key (in the JWKS from the start).
    pub rsa: TestKey,
    /// Realm A's EC key.
    pub ec: TestKey,
    /// Realm A's next RSA key (for rotation tests: not published at first).
    pub rotated: TestKey,
    /// Another realm's key (a second provider).
    pub other: TestKey,
}

pub fn keys() -> &'static Keys {
    static KEYS: OnceLock<Keys> = OnceLock::new();
    KEYS.get_or_init(|| Keys {
        rsa: TestKey::rsa("rsa-a1"),
        ec: TestKey::ec("ec-a1"),
        rotated: TestKey::rsa("rsa-a2"),
        other: TestKey::rsa("rsa-b1"),
    })
}

/// Claims of a valid token: `exp` in an hour, the given subscriptions.
pub fn claims(iss: &str, subscriptions: &[&str]) -> Value {
    json!({
        "iss": iss, "sub": "user-1", "azp": "web", "iat": now(),
        "exp": now() + 3600, "subscriptions": subscriptions
    })
}

/// A JWKS document in Keycloak's shape: the given signing keys plus an encryption key that
/// must be skipped (Keycloak publishes `RSA-OAEP` keys with `use: enc`).
pub fn jwks_document(keys: &[&TestKey]) -> String {
    let mut list: Vec<Value> = keys.iter().map(|k| k.jwk()).collect();
    let mut enc =
        json!({"kid": "enc-1", "kty": "RSA", "alg": "RSA-OAEP", "use": "enc", "n": "AQAB", "e": "AQAB"});
    if let Some(first) = keys.iter().find(|k| matches!(k, TestKey::Rsa { .. })) {
        let j = first.jwk();
        enc["n"] = j["n"].clone();
        enc["e"] = j["e"].clone();
    }
    list.push(enc);
    json!({ "keys": list }).to_string()
}

/// How the double answers while up.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Mode {
    /// `200` with the current document.
    Normal,
    /// The current document, but only after this delay (longer than the gateway's client
    /// timeout: the gateway gives up first).
    Slow(Duration),
    /// `<status>` with this `Content-Type` and body instead of the document.
    Garbage {
        status: u16,
        content_type: String,
        body: String,
    },
}

struct ServerState {
    body: Mutex<String>,
    up: AtomicBool,
    requests: AtomicUsize,
    mode: Mutex<Mode>,
    /// Every request received (whatever the answer).
    received: AtomicUsize,
}

/// A JWKS endpoint on loopback: `GET <any path>` answers the current document while up;
/// while down, every connection is closed at once (the client sees a transport error).
pub struct JwksServer {
    addr: SocketAddr,
    state: Arc<ServerState>,
}

impl JwksServer {
    pub fn start(body: String) -> JwksServer {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(ServerState {
            body: Mutex::new(body),
            up: AtomicBool::new(true),
            requests: AtomicUsize::new(0),
            mode: Mutex::new(Mode::Normal),
            received: AtomicUsize::new(0),
        });
        let s = Arc::clone(&state);
        thread::Builder::new()
            .name("jwks-double".into())
            .spawn(move || {
                for conn in listener.incoming() {
                    let Ok(conn) = conn else { continue };
                    let s = Arc::clone(&s);
                    thread::spawn(move || serve(conn, &s));
                }
            })
            .unwrap();
        JwksServer { addr, state }
    }

    /// `http://127.0.0.1:<port>/realms/<realm>/protocol/openid-connect/certs`
    pub fn url(&self, realm: &str) -> String {
        format!(
            "http://{}/realms/{realm}/protocol/openid-connect/certs",
            self.addr
        )
    }

    pub fn set_body(&self, body: String) {
        *self.state.body.lock().unwrap() = body;
    }

    pub fn set_up(&self, up: bool) {
        self.state.up.store(up, Ordering::SeqCst);
    }

    /// Requests answered with keys so far.
    pub fn requests(&self) -> usize {
        self.state.requests.load(Ordering::SeqCst)
    }

    /// Switch how requests are answered from now on.
    pub fn set_mode(&self, mode: Mode) {
        *self.state.mode.lock().unwrap() = mode;
    }

    /// Requests received so far (answered or not, in any mode).
    pub fn received(&self) -> usize {
        self.state.received.load(Ordering::SeqCst)
    }
}

fn serve(mut conn: TcpStream, state: &ServerState) {
    if !state.up.load(Ordering::SeqCst) {
        return;
    }
    let _ = conn.set_read_timeout(Some(Duration::from_secs(5)));
    let mut buf = Vec::new();
    let mut chunk = [0u8; 1024];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        match conn.read(&mut chunk) {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
    state.received.fetch_add(1, Ordering::SeqCst);
    let mode = state.mode.lock().unwrap().clone();
    let (status, content_type, body) = match mode {
        Mode::Normal => (
            200,
            "application/json".to_owned(),
            state.body.lock().unwrap().clone(),
        ),
        Mode::Slow(delay) => {
            thread::sleep(delay);
            (
                200,
                "application/json".to_owned(),
                state.body.lock().unwrap().clone(),
            )
        }
        Mode::Garbage {
            status,
            content_type,
            body,
        } => (status, content_type, body),
    };
    if status == 200 && body == *state.body.lock().unwrap() {
        state.requests.fetch_add(1, Ordering::SeqCst);
    }
    let resp = format!(
        "HTTP/1.1 {status} X\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = conn.write_all(resp.as_bytes());
}

/// YAML lines (dotted keys, appended to a `Config::yaml()`) enabling the provider with the
/// given `keys` entries (each already YAML: a quoted string or a flow map).
pub fn oauth2_yaml(entries: &[String], extra: &str) -> String {
    format!(
        "capi.oauth2.provider.enabled: true\ncapi.oauth2.provider.keys: [{}]\n{extra}",
        entries.join(", ")
    )
}

/// A `{source, issuer}` entry.
pub fn bound_source(url: &str, issuer: &str) -> String {
    format!("{{source: {}, issuer: {}}}", json!(url), json!(issuer))
}
