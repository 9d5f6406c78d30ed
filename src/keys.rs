//! Verification keys (DESIGN §5, §12): JWKS documents (RSA `n/e`, EC P-256/P-384 `x/y`, OKP
//! Ed25519 `x`) and PEM public keys parsed into [`VerifyKey`]s with the algorithms each key
//! allows, and the immutable [`KeySet`] the snapshot carries (keys by `kid`, the issuer and
//! audience bound to each source). Built on the control plane; workers only read it.
//! Parsing never panics on input and never echoes key material.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::Thread;

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rsa::PublicKeyComponents;
use aws_lc_rs::signature::{self, ParsedPublicKey, RsaParameters};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use jsonwebtoken::{Algorithm, DecodingKey};
use serde_json::Value;

use crate::config::KeySource;

/// Smallest RSA modulus accepted (RFC 7518 §3.3: 2048 bits or larger).
pub const MIN_RSA_BITS: usize = 2048;

/// A set of JWS algorithms (bit i = `ALGS[i]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct AlgSet(u16);

/// The asymmetric algorithms the gateway verifies; HMAC and `none` are never allowed (§5).
pub const ALGS: [Algorithm; 9] = [
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
    Algorithm::ES256,
    Algorithm::ES384,
    Algorithm::EdDSA,
];

const RSA_ALGS: AlgSet = AlgSet(0b0_0011_1111);

impl AlgSet {
    pub fn one(alg: Algorithm) -> AlgSet {
        AlgSet(ALGS.iter().position(|a| *a == alg).map_or(0, |i| 1 << i))
    }

    pub fn contains(self, alg: Algorithm) -> bool {
        self.0 & AlgSet::one(alg).0 != 0
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }
}

/// A JWS `alg` header value the gateway can verify; `None` for `none`, HMAC and anything
/// unknown (all refused as `algorithm`).
pub fn parse_alg(name: &str) -> Option<Algorithm> {
    Some(match name {
        "RS256" => Algorithm::RS256,
        "RS384" => Algorithm::RS384,
        "RS512" => Algorithm::RS512,
        "PS256" => Algorithm::PS256,
        "PS384" => Algorithm::PS384,
        "PS512" => Algorithm::PS512,
        "ES256" => Algorithm::ES256,
        "ES384" => Algorithm::ES384,
        "EdDSA" => Algorithm::EdDSA,
        _ => return None,
    })
}

/// One public key, bound to the algorithms it may verify.
#[derive(Clone)]
pub struct VerifyKey {
    pub kid: Option<String>,
    pub algs: AlgSet,
    pub key: DecodingKey,
    /// RSA keys only: the key parsed once per allowed algorithm, for [`crate::data::verify`]'s
    /// fast path. jsonwebtoken's aws-lc backend rebuilds an RSA key from `n`/`e` (or DER) on
    /// every verification, which costs more than the signature check itself; a parsed key
    /// keeps its Montgomery context. Empty for other key types (they go through jsonwebtoken).
    pub rsa: Arc<[(Algorithm, ParsedPublicKey)]>,
}

/// The aws-lc verification algorithm of an RSA JWS `alg` (the same table as jsonwebtoken's
/// aws-lc backend: moduli of 2048 to 8192 bits).
fn rsa_params(alg: Algorithm) -> Option<&'static RsaParameters> {
    Some(match alg {
        Algorithm::RS256 => &signature::RSA_PKCS1_2048_8192_SHA256,
        Algorithm::RS384 => &signature::RSA_PKCS1_2048_8192_SHA384,
        Algorithm::RS512 => &signature::RSA_PKCS1_2048_8192_SHA512,
        Algorithm::PS256 => &signature::RSA_PSS_2048_8192_SHA256,
        Algorithm::PS384 => &signature::RSA_PSS_2048_8192_SHA384,
        Algorithm::PS512 => &signature::RSA_PSS_2048_8192_SHA512,
        _ => return None,
    })
}

/// Parse an RSA public key (PKCS#1 `RSAPublicKey` or SPKI DER) once for each RSA algorithm in
/// `algs`. A key aws-lc refuses gets no entry (verification then falls back to jsonwebtoken,
/// which refuses it the same way).
fn parse_rsa(der: &[u8], algs: AlgSet) -> Arc<[(Algorithm, ParsedPublicKey)]> {
    ALGS.iter()
        .filter(|a| algs.contains(**a))
        .filter_map(|a| Some((*a, ParsedPublicKey::new(rsa_params(*a)?, der).ok()?)))
        .collect()
}

impl VerifyKey {
    /// The pre-parsed RSA key for `alg`, if this is an RSA key allowed to verify `alg`.
    pub fn parsed_rsa(&self, alg: Algorithm) -> Option<&ParsedPublicKey> {
        self.rsa.iter().find(|(a, _)| *a == alg).map(|(_, k)| k)
    }
}

impl std::fmt::Debug for VerifyKey {
    /// Never prints key material.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VerifyKey")
            .field("kid", &self.kid)
            .field("algs", &self.algs)
            .finish_non_exhaustive()
    }
}

/// Parse a key document: a JWKS (`{"keys": [...]}`), a single JWK, or PEM public keys.
/// Keys that cannot verify signatures (`use: enc`, `oct`, unknown types or curves, short RSA
/// moduli) are skipped; a document with no usable key at all is an error.
pub fn parse_key_document(bytes: &[u8]) -> Result<Vec<VerifyKey>, String> {
    let text = std::str::from_utf8(bytes).map_err(|_| "not UTF-8 text".to_string())?;
    let trimmed = text.trim_start();
    let (keys, skipped) = if trimmed.starts_with('{') {
        parse_jwks(trimmed)?
    } else if trimmed.contains("-----BEGIN") {
        parse_pem(trimmed)?
    } else {
        return Err("neither a JWKS (JSON) nor a PEM document".to_string());
    };
    if keys.is_empty() {
        return Err(format!("no usable signature key ({skipped} skipped)"));
    }
    Ok(keys)
}

fn parse_jwks(text: &str) -> Result<(Vec<VerifyKey>, usize), String> {
    let doc: Value = serde_json::from_str(text).map_err(|e| format!("invalid JSON: {e}"))?;
    let list: Vec<&Value> = match doc.get("keys") {
        Some(Value::Array(items)) => items.iter().collect(),
        Some(_) => return Err("\"keys\" is not an array".to_string()),
        None if doc.get("kty").is_some() => vec![&doc],
        None => return Err("no \"keys\" array".to_string()),
    };
    let mut keys = Vec::with_capacity(list.len());
    let mut skipped = 0;
    for jwk in list {
        match parse_jwk(jwk) {
            Ok(k) => keys.push(k),
            Err(why) => {
                skipped += 1;
                let kid = jwk.get("kid").and_then(Value::as_str).unwrap_or("");
                tracing::debug!(kid, "JWK skipped: {why}");
            }
        }
    }
    Ok((keys, skipped))
}

fn b64(v: &Value, field: &str) -> Result<Vec<u8>, String> {
    let s = v
        .get(field)
        .and_then(Value::as_str)
        .ok_or_else(|| format!("missing \"{field}\""))?;
    URL_SAFE_NO_PAD
        .decode(s.trim_end_matches('='))
        .map_err(|_| format!("\"{field}\" is not base64url"))
}

/// One JWK -> a key with its algorithms (§5: `alg` binds; else the key type decides).
pub fn parse_jwk(jwk: &Value) -> Result<VerifyKey, String> {
    if let Some(u) = jwk.get("use").and_then(Value::as_str) {
        if u != "sig" {
            return Err(format!("use {u:?}"));
        }
    }
    let kid = jwk.get("kid").and_then(Value::as_str).map(str::to_string);
    let declared = match jwk.get("alg").and_then(Value::as_str) {
        None => None,
        Some(a) => {
            Some(parse_alg(a).ok_or_else(|| format!("alg {a:?} is not a supported signature algorithm"))?)
        }
    };
    let kty = jwk.get("kty").and_then(Value::as_str).unwrap_or("");
    let crv = jwk.get("crv").and_then(Value::as_str).unwrap_or("");
    let (by_type, key, rsa_der) = match kty {
        "RSA" => {
            let n = b64(jwk, "n")?;
            let e = b64(jwk, "e")?;
            let bits = significant_bits(&n);
            if bits < MIN_RSA_BITS {
                return Err(format!("RSA modulus of {bits} bits (< {MIN_RSA_BITS})"));
            }
            if e.is_empty() || e.len() > 8 {
                return Err("bad RSA exponent".to_string());
            }
            // SPKI DER of (n, e) for the pre-parsed key; None if aws-lc cannot encode it.
            let der = PublicKeyComponents { n: &n[..], e: &e[..] }
                .as_der()
                .ok()
                .map(|d| d.as_ref().to_vec());
            (RSA_ALGS, DecodingKey::from_rsa_raw_components(&n, &e), der)
        }
        "EC" => {
            let (alg, len) = match crv {
                "P-256" => (Algorithm::ES256, 32),
                "P-384" => (Algorithm::ES384, 48),
                other => return Err(format!("EC curve {other:?} not supported")),
            };
            let (x, y) = (b64(jwk, "x")?, b64(jwk, "y")?);
            if x.len() != len || y.len() != len {
                return Err(format!("{crv} coordinates of the wrong length"));
            }
            let mut point = Vec::with_capacity(1 + 2 * len);
            point.push(0x04);
            point.extend_from_slice(&x);
            point.extend_from_slice(&y);
            (AlgSet::one(alg), DecodingKey::from_ec_der(&point), None)
        }
        "OKP" if crv == "Ed25519" => {
            let x = b64(jwk, "x")?;
            if x.len() != 32 {
                return Err("Ed25519 key of the wrong length".to_string());
            }
            (AlgSet::one(Algorithm::EdDSA), DecodingKey::from_ed_der(&x), None)
        }
        "OKP" => return Err(format!("OKP curve {crv:?} not supported")),
        other => return Err(format!("key type {other:?} not usable for signatures")),
    };
    let algs = match declared {
        Some(a) if by_type.contains(a) => AlgSet::one(a),
        Some(a) => return Err(format!("alg {a:?} does not fit a {kty} key")),
        None => by_type,
    };
    let rsa = rsa_der.map_or_else(|| Arc::from([]), |der| parse_rsa(&der, algs));
    Ok(VerifyKey { kid, algs, key, rsa })
}

fn significant_bits(be: &[u8]) -> usize {
    match be.iter().position(|b| *b != 0) {
        Some(i) => (be.len() - i) * 8 - be[i].leading_zeros() as usize,
        None => 0,
    }
}

/// PEM public keys (`PUBLIC KEY` SPKI for RSA, EC and Ed25519, or `RSA PUBLIC KEY`). PEM keys
/// carry no `kid`: they match tokens with any `kid` (see [`KeySet::candidates`]).
fn parse_pem(text: &str) -> Result<(Vec<VerifyKey>, usize), String> {
    let mut keys = Vec::new();
    let mut skipped = 0;
    let mut rest = text;
    while let Some(start) = rest.find("-----BEGIN ") {
        let block_and_after = &rest[start..];
        let Some(end_at) = block_and_after.find("-----END ") else {
            return Err("unterminated PEM block".to_string());
        };
        let end_line = block_and_after[end_at..]
            .find('\n')
            .map_or(block_and_after.len(), |i| end_at + i + 1);
        let block = &block_and_after[..end_line];
        rest = &block_and_after[end_line..];
        match pem_key(block.as_bytes()) {
            Some(k) => keys.push(k),
            None => {
                skipped += 1;
                tracing::debug!("PEM block skipped: not an RSA, EC P-256/P-384 or Ed25519 public key");
            }
        }
    }
    Ok((keys, skipped))
}

fn pem_key(block: &[u8]) -> Option<VerifyKey> {
    let make = |algs, key| VerifyKey {
        kid: None,
        algs,
        key,
        rsa: Arc::from([]),
    };
    if let Ok(k) = DecodingKey::from_rsa_pem(block) {
        // The decoded key is PKCS#1 `RSAPublicKey` DER (jsonwebtoken unwraps SPKI).
        let rsa = parse_rsa(k.as_bytes(), RSA_ALGS);
        return Some(VerifyKey {
            rsa,
            ..make(RSA_ALGS, k)
        });
    }
    if let Ok(k) = DecodingKey::from_ec_pem(block) {
        // The decoded key is the uncompressed point: 0x04 || x || y.
        let alg = match k.as_bytes().len() {
            65 => Algorithm::ES256,
            97 => Algorithm::ES384,
            _ => return None,
        };
        return Some(make(AlgSet::one(alg), k));
    }
    if let Ok(k) = DecodingKey::from_ed_pem(block) {
        return (k.as_bytes().len() == 32).then(|| make(AlgSet::one(Algorithm::EdDSA), k));
    }
    None
}

/// Tells the JWKS threads that a token named an unknown `kid` (DESIGN §5 early refresh). A
/// worker only stores a flag and unparks; the thread rate-limits the fetch.
#[derive(Debug, Default)]
pub struct RefreshSignal {
    sources: Vec<(AtomicBool, Thread)>,
}

impl RefreshSignal {
    pub fn new(threads: Vec<Thread>) -> RefreshSignal {
        RefreshSignal {
            sources: threads.into_iter().map(|t| (AtomicBool::new(false), t)).collect(),
        }
    }

    /// Worker side: ask every source for an early refresh (no read-modify-write, no wait).
    pub fn request(&self) {
        for (flag, thread) in &self.sources {
            flag.store(true, Ordering::Release);
            thread.unpark();
        }
    }

    /// JWKS thread side: whether source `i` was asked, clearing the request.
    pub fn take(&self, i: usize) -> bool {
        self.sources
            .get(i)
            .is_some_and(|(flag, _)| flag.swap(false, Ordering::AcqRel))
    }
}

/// Authorization as the workers see it: part of the snapshot, rebuilt on every publish from
/// the settings and the current [`KeySet`] (cheap: the key set is shared).
#[derive(Debug, Default)]
pub struct Auth {
    pub keys: Arc<KeySet>,
    pub cookie_name: Option<String>,
    /// Leeway on `exp`/`nbf` at the upgrade, seconds (rounded up from `leeway-ms`).
    pub leeway_s: u64,
    /// `Some(grace)` when `close-on-expiry` is on (DESIGN §5; no leeway added).
    pub close_on_expiry: Option<std::time::Duration>,
    pub refresh: Option<Arc<RefreshSignal>>,
    /// Per-worker verified-token cache bound (read when a worker starts).
    pub cache_capacity: usize,
}

impl Auth {
    pub fn new(
        settings: &crate::config::OAuth2Settings,
        keys: Arc<KeySet>,
        refresh: Option<Arc<RefreshSignal>>,
    ) -> Auth {
        Auth {
            keys,
            cookie_name: settings.cookie_name.clone(),
            leeway_s: settings.leeway_ms.div_ceil(1000),
            close_on_expiry: settings
                .close_on_expiry
                .then(|| std::time::Duration::from_millis(settings.expiry_grace_ms)),
            refresh,
            cache_capacity: usize::try_from(settings.token_cache_size).unwrap_or(usize::MAX),
        }
    }
}

/// What a source binds its tokens to (DESIGN §12).
#[derive(Debug, Clone, Default)]
pub struct Binding {
    pub issuer: Option<String>,
    pub audience: Option<String>,
}

/// The keys of every source, as the workers see them. `generation` changes whenever the keys
/// change (not when only the routing table does), so per-worker caches know when to drop.
#[derive(Debug, Default)]
pub struct KeySet {
    pub generation: u64,
    /// (source index, key) for every usable key.
    pub keys: Vec<(usize, VerifyKey)>,
    pub bindings: Vec<Binding>,
    by_kid: HashMap<String, Vec<usize>>,
    /// Indices of keys without a `kid` (PEM files, kid-less JWKs).
    kidless: Vec<usize>,
}

/// At most this many keys are tried for one token (a token without `kid`, or several keys
/// sharing a `kid`): bounds the work a forged token can cause.
pub const MAX_CANDIDATES: usize = 4;

impl KeySet {
    /// Build from the last good keys of each configured source (`None` = never loaded).
    pub fn build(generation: u64, sources: &[KeySource], loaded: &[Option<Arc<Vec<VerifyKey>>>]) -> KeySet {
        let mut set = KeySet {
            generation,
            bindings: sources
                .iter()
                .map(|s| Binding {
                    issuer: s.issuer.clone(),
                    audience: s.audience.clone(),
                })
                .collect(),
            ..KeySet::default()
        };
        for (src, keys) in loaded.iter().enumerate().take(sources.len()) {
            for k in keys.iter().flat_map(|k| k.iter()) {
                let idx = set.keys.len();
                match &k.kid {
                    Some(kid) => set.by_kid.entry(kid.clone()).or_default().push(idx),
                    None => set.kidless.push(idx),
                }
                set.keys.push((src, k.clone()));
            }
        }
        set
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Keys that may verify a token with this `kid` and `alg`, at most [`MAX_CANDIDATES`]:
    /// keys with that `kid`, else kid-less keys; a token without `kid` tries every key.
    /// `Err("unknown_key")` when no key is a candidate, `Err("algorithm")` when keys match
    /// the `kid` but none allows `alg`.
    pub fn candidates(&self, kid: Option<&str>, alg: Algorithm) -> Result<Vec<usize>, &'static str> {
        let by_kid = kid.and_then(|k| self.by_kid.get(k));
        let pool: Box<dyn Iterator<Item = usize> + '_> = match (kid, by_kid) {
            (Some(_), Some(list)) => Box::new(list.iter().copied()),
            (Some(_), None) => Box::new(self.kidless.iter().copied()),
            (None, _) => Box::new(0..self.keys.len()),
        };
        let mut named = false;
        let mut out = Vec::new();
        for i in pool {
            named = true;
            if self.keys[i].1.algs.contains(alg) {
                out.push(i);
                if out.len() == MAX_CANDIDATES {
                    break;
                }
            }
        }
        match (out.is_empty(), named && by_kid.is_some()) {
            (false, _) => Ok(out),
            (true, true) => Err("algorithm"),
            (true, false) => Err("unknown_key"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn b(bytes: &[u8]) -> String {
        URL_SAFE_NO_PAD.encode(bytes)
    }

    fn rsa_jwk(kid: &str, alg: Option<&str>) -> Value {
        let mut n = vec![0xc5u8; 256];
        n[255] |= 1;
        let mut j = json!({"kty": "RSA", "kid": kid, "use": "sig", "n": b(&n), "e": "AQAB"});
        if let Some(a) = alg {
            j["alg"] = json!(a);
        }
        j
    }

    #[test]
    fn jwk_algorithm_binding() {
        let ec256 = json!({"kty": "EC", "crv": "P-256", "kid": "e", "x": b(&[1; 32]), "y": b(&[2; 32])});
        let ec384 = json!({"kty": "EC", "crv": "P-384", "x": b(&[1; 48]), "y": b(&[2; 48])});
        let ed = json!({"kty": "OKP", "crv": "Ed25519", "x": b(&[3; 32])});
        type Case = (&'static str, Value, Result<&'static [Algorithm], &'static str>);
        let cases: Vec<Case> = vec![
            (
                "rsa_by_type",
                rsa_jwk("r", None),
                Ok(&[Algorithm::RS256, Algorithm::PS512]),
            ),
            (
                "rsa_alg_binds",
                rsa_jwk("r", Some("RS256")),
                Ok(&[Algorithm::RS256]),
            ),
            (
                "rsa_alg_mismatch",
                rsa_jwk("r", Some("ES256")),
                Err("does not fit"),
            ),
            (
                "rsa_hmac_alg",
                rsa_jwk("r", Some("HS256")),
                Err("not a supported"),
            ),
            ("ec256", ec256, Ok(&[Algorithm::ES256])),
            ("ec384", ec384, Ok(&[Algorithm::ES384])),
            ("ed25519", ed, Ok(&[Algorithm::EdDSA])),
            (
                "enc_key",
                json!({"kty": "RSA", "use": "enc", "n": "AQAB", "e": "AQAB"}),
                Err("use"),
            ),
            ("oct", json!({"kty": "oct", "k": "c2VjcmV0"}), Err("not usable")),
            (
                "short_rsa",
                json!({"kty": "RSA", "n": b(&[0xff; 128]), "e": "AQAB"}),
                Err("1024 bits"),
            ),
            (
                "ec_short_x",
                json!({"kty": "EC", "crv": "P-256", "x": b(&[1; 31]), "y": b(&[2; 32])}),
                Err("wrong length"),
            ),
            (
                "ed_short",
                json!({"kty": "OKP", "crv": "Ed25519", "x": b(&[1; 5])}),
                Err("wrong length"),
            ),
            (
                "p521",
                json!({"kty": "EC", "crv": "P-521", "x": "AA", "y": "AA"}),
                Err("not supported"),
            ),
            (
                "bad_b64",
                json!({"kty": "RSA", "n": "!!", "e": "AQAB"}),
                Err("base64url"),
            ),
        ];
        for (name, jwk, want) in cases {
            match (parse_jwk(&jwk), want) {
                (Ok(k), Ok(algs)) => {
                    for a in algs {
                        assert!(k.algs.contains(*a), "case {name}: {a:?} not allowed");
                    }
                    assert!(!k.algs.contains(Algorithm::HS256), "case {name}");
                }
                (Err(e), Err(w)) => assert!(e.contains(w), "case {name}: {e}"),
                (got, want) => panic!("case {name}: got {got:?}, want {want:?}"),
            }
        }
        let k = parse_jwk(&rsa_jwk("r", Some("RS256"))).unwrap();
        assert!(!k.algs.contains(Algorithm::RS384), "alg binds: RS384 refused");
    }

    #[test]
    fn documents() {
        let jwks =
            json!({"keys": [rsa_jwk("a", None), {"kty": "RSA", "use": "enc", "n": "AQAB", "e": "AQAB"}]});
        let keys = parse_key_document(jwks.to_string().as_bytes()).unwrap();
        assert_eq!(keys.len(), 1, "the enc key is skipped");
        assert_eq!(keys[0].kid.as_deref(), Some("a"));
        assert_eq!(
            parse_key_document(rsa_jwk("x", None).to_string().as_bytes())
                .unwrap()
                .len(),
            1
        );
        for (name, doc, want) in [
            ("empty_keys", "{\"keys\": []}", "no usable"),
            ("only_enc", "{\"keys\": [{\"kty\":\"oct\"}]}", "1 skipped"),
            ("not_json", "{nope", "invalid JSON"),
            ("garbage", "hello", "neither"),
            (
                "bad_pem",
                "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n",
                "no usable",
            ),
            ("cut_pem", "-----BEGIN PUBLIC KEY-----\nAAAA\n", "unterminated"),
        ] {
            let err = parse_key_document(doc.as_bytes()).unwrap_err();
            assert!(err.contains(want), "case {name}: {err}");
        }
    }

    #[test]
    fn pem_keys_of_each_type() {
        // Generated once with openssl (public halves only).
        let rsa = "-----BEGIN PUBLIC KEY-----
MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEAm+MZgEHiEN1TpeZH7G9w
xfmHZOjRzaOxJik0td5o3+PSS/0QscMCfNbaqQShLKOu05ztX9wEq+n0jMeANAtf
ikydmg/P7knZA8Q++6PRz/5yqoZzRhaj/3QZCwsYozQ9FbfeaEhI/gA71gXDIaUa
LqZuYargEfwxYOTOJdvEkr3WodCSfelrExRodME58BNuGm05s4d2S7F1b7yAwTqF
d7KjXjsunRaFkxWVCWFmA8IT+11FOKHJvMOSqoPn8i73XQkETOMKsvXAPZ/m0vOk
GNXvU9ph4GbmbVvDHj2CH6nSnERguTzzlXw6h4UAa9K/seOvQ9l56XvxK41WZ2No
sQIDAQAB
-----END PUBLIC KEY-----
";
        let ec = "-----BEGIN PUBLIC KEY-----
MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAErp2PKv40gtyk7ntVScWEYqrccZmM
iOoHHoh8SsI1QfSQWL0898JmPM7+TkuC8ZB/I1MKwQkXZW/CIgmegGIP4Q==
-----END PUBLIC KEY-----
";
        let ed = "-----BEGIN PUBLIC KEY-----
MCowBQYDK2VwAyEAOn+CTBpIcoS4dMZw0g4xP/B4rBKIdayS0/ddMOBQKyM=
-----END PUBLIC KEY-----
";
        let all = format!("{rsa}{ec}{ed}");
        let keys = parse_key_document(all.as_bytes()).unwrap();
        assert_eq!(keys.len(), 3);
        assert!(keys[0].algs.contains(Algorithm::RS256) && keys[0].algs.contains(Algorithm::PS256));
        assert_eq!(keys[1].algs, AlgSet::one(Algorithm::ES256));
        assert_eq!(keys[2].algs, AlgSet::one(Algorithm::EdDSA));
        assert!(keys.iter().all(|k| k.kid.is_none()));
        // The RSA key is pre-parsed for each RSA algorithm (verify's fast path); others are not.
        assert!(
            keys[0].parsed_rsa(Algorithm::RS256).is_some() && keys[0].parsed_rsa(Algorithm::PS512).is_some()
        );
        assert!(keys[1].rsa.is_empty() && keys[2].rsa.is_empty());
        // A JWK bound to one algorithm is parsed for that one only.
        let bound = parse_jwk(&rsa_jwk("b", Some("RS256"))).unwrap();
        assert!(bound.parsed_rsa(Algorithm::RS256).is_some() && bound.parsed_rsa(Algorithm::PS256).is_none());
    }

    #[test]
    fn candidates_by_kid() {
        let src = |iss: &str| KeySource {
            source: "x".into(),
            issuer: Some(iss.into()),
            audience: None,
        };
        let a = vec![
            parse_jwk(&rsa_jwk("a1", Some("RS256"))).unwrap(),
            parse_jwk(&rsa_jwk("a2", None)).unwrap(),
        ];
        let set = KeySet::build(7, &[src("A"), src("B")], &[Some(Arc::new(a)), None]);
        assert_eq!(set.generation, 7);
        assert_eq!(set.bindings[0].issuer.as_deref(), Some("A"));
        type Case = (
            &'static str,
            Option<&'static str>,
            Algorithm,
            Result<usize, &'static str>,
        );
        let cases: &[Case] = &[
            ("kid_hit", Some("a1"), Algorithm::RS256, Ok(1)),
            ("kid_alg_refused", Some("a1"), Algorithm::RS384, Err("algorithm")),
            ("kid_unknown", Some("zz"), Algorithm::RS256, Err("unknown_key")),
            ("no_kid_tries_all", None, Algorithm::RS256, Ok(2)),
            ("no_kid_type_filter", None, Algorithm::ES256, Err("unknown_key")),
        ];
        for (name, kid, alg, want) in cases {
            let got = set.candidates(*kid, *alg).map(|v| v.len());
            assert_eq!(got, *want, "case {name}");
        }
        assert!(KeySet::default().is_empty());
    }

    #[test]
    fn alg_names() {
        for (name, want) in [
            ("RS256", Some(Algorithm::RS256)),
            ("EdDSA", Some(Algorithm::EdDSA)),
            ("none", None),
            ("HS256", None),
            ("rs256", None),
        ] {
            assert_eq!(parse_alg(name), want, "case {name}");
        }
    }
}
