//! Token verification for the authorization phase (DESIGN §5, §12): JWS compact form ->
//! header (`alg`, `kid`) -> candidate keys from the snapshot's [`KeySet`] -> signature check
//! (RSA: aws-lc with the key parsed once per key set; EC and EdDSA: jsonwebtoken) ->
//! issuer/audience of the key's source -> the claims the gateway needs.
//! Pure: no clock (time checks are the caller's, shared with cache hits), no I/O, no logging
//! of the token. Errors are the static metric reasons of DESIGN §12.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use jsonwebtoken::{Algorithm, Validation};
use serde::Deserialize;
use serde_json::Value;

use crate::control::table::normalise_subscription;
use crate::keys::{parse_alg, KeySet};

/// What a verified token says, as far as the gateway cares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// `exp`, seconds since the epoch (required).
    pub exp: u64,
    /// `nbf`, seconds since the epoch.
    pub nbf: Option<u64>,
    /// `subscriptions`, normalised (leading `/` and whitespace dropped), sorted, deduplicated.
    pub subscriptions: Vec<String>,
}

#[derive(Deserialize)]
struct Header {
    alg: Option<String>,
    kid: Option<String>,
}

#[derive(Deserialize)]
struct Claims {
    exp: Option<Value>,
    nbf: Option<Value>,
    iss: Option<String>,
    aud: Option<Value>,
    subscriptions: Option<Value>,
}

/// Verify `token` against the key set. `Err` is a metric reason: `malformed`, `algorithm`,
/// `unknown_key`, `signature`, `issuer`, `audience` or `no_keys`.
pub fn verify(token: &str, keys: &KeySet) -> Result<Verified, &'static str> {
    let mut parts = token.split('.');
    let (Some(h64), Some(p64), Some(s64), None) = (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err("malformed");
    };
    let header_json = URL_SAFE_NO_PAD.decode(h64).map_err(|_| "malformed")?;
    let header: Header = serde_json::from_slice(&header_json).map_err(|_| "malformed")?;
    // `none`, HMAC (a public key used as a shared secret) and unknown names are refused (§5).
    let alg = header.alg.as_deref().and_then(parse_alg).ok_or("algorithm")?;
    if keys.is_empty() {
        return Err("no_keys");
    }
    let candidates = keys.candidates(header.kid.as_deref(), alg)?;
    let mut last = "signature";
    for idx in candidates {
        let (source, key) = &keys.keys[idx];
        if let Some(parsed) = key.parsed_rsa(alg) {
            // Fast path (RSA): the key was parsed once when the key set was built.
            let signed = &token[..h64.len() + 1 + p64.len()];
            let sig = URL_SAFE_NO_PAD.decode(s64).map_err(|_| "malformed")?;
            if parsed.verify_sig(signed.as_bytes(), &sig).is_err() {
                last = "signature";
                continue;
            }
            let payload = URL_SAFE_NO_PAD.decode(p64).map_err(|_| "malformed")?;
            let claims: Claims = serde_json::from_slice(&payload).map_err(|_| "malformed")?;
            return check_claims(claims, &keys.bindings[*source]);
        }
        match jsonwebtoken::decode::<Claims>(token, &key.key, &signature_only(alg)) {
            Ok(data) => return check_claims(data.claims, &keys.bindings[*source]),
            Err(e) => {
                use jsonwebtoken::errors::ErrorKind as K;
                last = match e.kind() {
                    K::InvalidSignature => "signature",
                    K::InvalidAlgorithm | K::InvalidAlgorithmName | K::MissingAlgorithm => "algorithm",
                    // A key the backend cannot use: as if the signature did not verify.
                    K::InvalidEcdsaKey | K::InvalidEddsaKey | K::InvalidRsaKey(_) | K::InvalidKeyFormat => {
                        "signature"
                    }
                    _ => "malformed",
                };
                if last == "malformed" {
                    return Err(last);
                }
            }
        }
    }
    Err(last)
}

/// jsonwebtoken checks only the signature (and that `alg` fits the key's family); every claim
/// is checked here so the reasons are exact and the clock stays outside.
fn signature_only(alg: Algorithm) -> Validation {
    let mut v = Validation::new(alg);
    v.required_spec_claims.clear();
    v.validate_exp = false;
    v.validate_nbf = false;
    v.validate_aud = false;
    v.leeway = 0;
    v
}

fn check_claims(c: Claims, binding: &crate::keys::Binding) -> Result<Verified, &'static str> {
    let exp = c
        .exp
        .as_ref()
        .map(numeric_date)
        .ok_or("malformed")?
        .ok_or("malformed")?;
    let nbf = match &c.nbf {
        None | Some(Value::Null) => None,
        Some(v) => Some(numeric_date(v).ok_or("malformed")?),
    };
    if let Some(want) = &binding.issuer {
        if c.iss.as_deref() != Some(want.as_str()) {
            return Err("issuer");
        }
    }
    if let Some(want) = &binding.audience {
        let ok = match &c.aud {
            Some(Value::String(a)) => a == want,
            Some(Value::Array(list)) => list.iter().any(|a| a.as_str() == Some(want.as_str())),
            _ => false,
        };
        if !ok {
            return Err("audience");
        }
    }
    Ok(Verified {
        exp,
        nbf,
        subscriptions: subscriptions_claim(c.subscriptions.as_ref()),
    })
}

/// RFC 7519 NumericDate: seconds, possibly fractional (truncated). Negative or not a number:
/// `None`.
fn numeric_date(v: &Value) -> Option<u64> {
    let n = v.as_number()?;
    n.as_u64().or_else(|| {
        n.as_f64()
            .filter(|f| *f >= 0.0 && f.is_finite())
            .map(|f| f as u64)
    })
}

/// The `subscriptions` claim (§12): an array of strings, or one string as a one-element list;
/// anything else is an empty list (matches no group). Non-string array items are ignored.
pub fn subscriptions_claim(v: Option<&Value>) -> Vec<String> {
    let mut out: Vec<String> = match v {
        Some(Value::String(s)) => vec![normalise_subscription(s)],
        Some(Value::Array(items)) => items
            .iter()
            .filter_map(Value::as_str)
            .map(normalise_subscription)
            .collect(),
        _ => Vec::new(),
    };
    out.retain(|s| !s.is_empty());
    out.sort();
    out.dedup();
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn subscriptions_claim_shapes() {
        let cases: &[(&str, Option<Value>, &[&str])] = &[
            ("array", Some(json!(["/b", " a ", "a"])), &["a", "b"]),
            ("string", Some(json!("/team")), &["team"]),
            ("string_is_one_entry", Some(json!("a,b")), &["a,b"]),
            ("number", Some(json!(3)), &[]),
            ("object", Some(json!({"a": 1})), &[]),
            ("mixed_array", Some(json!(["x", 1, null])), &["x"]),
            ("missing", None, &[]),
            ("empty_entries", Some(json!(["", "/", " "])), &[]),
        ];
        for (name, v, want) in cases {
            assert_eq!(subscriptions_claim(v.as_ref()), *want, "case {name}");
        }
    }

    #[test]
    fn numeric_dates() {
        for (name, v, want) in [
            ("int", json!(1700000000), Some(1700000000)),
            ("float", json!(1700000000.9), Some(1700000000)),
            ("negative", json!(-5), None),
            ("string", json!("1700000000"), None),
        ] {
            assert_eq!(numeric_date(&v), want, "case {name}");
        }
    }

    fn seg(v: &Value) -> String {
        URL_SAFE_NO_PAD.encode(v.to_string())
    }

    #[test]
    fn refusals_before_any_key_work() {
        let empty = KeySet::default();
        let body = seg(&json!({"exp": 1}));
        let cases: &[(&str, String, &str)] = &[
            ("two_parts", "a.b".into(), "malformed"),
            ("four_parts", "a.b.c.d".into(), "malformed"),
            ("header_not_b64", "!!.x.y".into(), "malformed"),
            (
                "header_not_json",
                format!("{}.x.y", URL_SAFE_NO_PAD.encode("nope")),
                "malformed",
            ),
            (
                "alg_none",
                format!("{}.{body}.", seg(&json!({"alg": "none"}))),
                "algorithm",
            ),
            (
                "alg_hs256",
                format!("{}.{body}.c2ln", seg(&json!({"alg": "HS256"}))),
                "algorithm",
            ),
            (
                "alg_missing",
                format!("{}.{body}.c2ln", seg(&json!({"typ": "JWT"}))),
                "algorithm",
            ),
            (
                "no_keys",
                format!("{}.{body}.c2ln", seg(&json!({"alg": "RS256"}))),
                "no_keys",
            ),
        ];
        for (name, token, want) in cases {
            assert_eq!(verify(token, &empty), Err(*want), "case {name}");
        }
    }

    #[test]
    fn claim_checks() {
        let bound = crate::keys::Binding {
            issuer: Some("https://kc/realms/a".into()),
            audience: Some("api".into()),
        };
        let claims = |v: Value| -> Claims { serde_json::from_value(v).unwrap() };
        let cases: &[(&str, Value, Result<u64, &str>)] = &[
            (
                "ok",
                json!({"exp": 10, "iss": "https://kc/realms/a", "aud": "api"}),
                Ok(10),
            ),
            (
                "aud_list",
                json!({"exp": 10, "iss": "https://kc/realms/a", "aud": ["x", "api"]}),
                Ok(10),
            ),
            (
                "missing_exp",
                json!({"iss": "https://kc/realms/a", "aud": "api"}),
                Err("malformed"),
            ),
            (
                "string_exp",
                json!({"exp": "10", "iss": "https://kc/realms/a", "aud": "api"}),
                Err("malformed"),
            ),
            (
                "bad_nbf",
                json!({"exp": 10, "nbf": "x", "iss": "https://kc/realms/a", "aud": "api"}),
                Err("malformed"),
            ),
            (
                "other_issuer",
                json!({"exp": 10, "iss": "https://kc/realms/b", "aud": "api"}),
                Err("issuer"),
            ),
            ("no_issuer", json!({"exp": 10, "aud": "api"}), Err("issuer")),
            (
                "other_audience",
                json!({"exp": 10, "iss": "https://kc/realms/a", "aud": ["x"]}),
                Err("audience"),
            ),
            (
                "no_audience",
                json!({"exp": 10, "iss": "https://kc/realms/a"}),
                Err("audience"),
            ),
        ];
        for (name, v, want) in cases {
            let got = check_claims(claims(v.clone()), &bound).map(|c| c.exp);
            assert_eq!(got, *want, "case {name}");
        }
        let unbound = crate::keys::Binding::default();
        assert!(check_claims(claims(json!({"exp": 1, "iss": "any"})), &unbound).is_ok());
    }

    /// The RSA fast path (aws-lc key parsed once) gives exactly what jsonwebtoken gives, for
    /// good tokens and for every way a signature can be wrong.
    #[test]
    fn rsa_fast_path_agrees_with_jsonwebtoken() {
        use std::sync::Arc;

        use aws_lc_rs::rand::SystemRandom;
        use aws_lc_rs::rsa::{KeyPair, KeySize, PublicKeyComponents};
        use aws_lc_rs::signature::{
            KeyPair as _, RsaEncoding, RSA_PKCS1_SHA256, RSA_PKCS1_SHA384, RSA_PSS_SHA256,
        };

        use crate::config::KeySource;
        use crate::keys::parse_jwk;

        let pair = KeyPair::generate(KeySize::Rsa2048).unwrap();
        let other = KeyPair::generate(KeySize::Rsa2048).unwrap();
        let c = PublicKeyComponents::<Vec<u8>>::from(pair.public_key());
        let jwk = json!({"kty": "RSA", "kid": "k1", "n": URL_SAFE_NO_PAD.encode(&c.n),
                         "e": URL_SAFE_NO_PAD.encode(&c.e)});
        let fast = parse_jwk(&jwk).unwrap();
        assert!(
            fast.parsed_rsa(Algorithm::RS256).is_some(),
            "RSA keys are pre-parsed"
        );
        assert!(fast.parsed_rsa(Algorithm::ES256).is_none());
        let slow = crate::keys::VerifyKey {
            rsa: Arc::from([]),
            ..fast.clone()
        };
        let source = KeySource {
            source: "x".into(),
            issuer: Some("iss".into()),
            audience: None,
        };
        let set = |k: &crate::keys::VerifyKey| {
            KeySet::build(
                1,
                std::slice::from_ref(&source),
                &[Some(Arc::new(vec![k.clone()]))],
            )
        };
        let (fast_set, slow_set) = (set(&fast), set(&slow));

        let sign = |key: &KeyPair, enc: &'static dyn RsaEncoding, alg: &str, claims: Value| {
            let signed = format!("{}.{}", seg(&json!({"alg": alg, "kid": "k1"})), seg(&claims));
            let mut sig = vec![0; key.public_modulus_len()];
            key.sign(enc, &SystemRandom::new(), signed.as_bytes(), &mut sig)
                .unwrap();
            format!("{signed}.{}", URL_SAFE_NO_PAD.encode(sig))
        };
        let good = json!({"exp": 2_000_000_000u64, "iss": "iss", "subscriptions": ["a"]});
        let ok = sign(&pair, &RSA_PKCS1_SHA256, "RS256", good.clone());
        let tampered = {
            let mut p: Vec<&str> = ok.split('.').collect();
            let body = seg(&json!({"exp": 2_000_000_000u64, "iss": "iss", "subscriptions": ["admin"]}));
            p[1] = &body;
            p.join(".")
        };
        let cases: Vec<(&str, String, Result<(), &str>)> = vec![
            ("rs256_good", ok.clone(), Ok(())),
            (
                "ps256_good",
                sign(&pair, &RSA_PSS_SHA256, "PS256", good.clone()),
                Ok(()),
            ),
            (
                "rs384_good",
                sign(&pair, &RSA_PKCS1_SHA384, "RS384", good.clone()),
                Ok(()),
            ),
            (
                "other_key",
                sign(&other, &RSA_PKCS1_SHA256, "RS256", good.clone()),
                Err("signature"),
            ),
            ("payload_tampered", tampered, Err("signature")),
            (
                "alg_swapped",
                sign(&pair, &RSA_PKCS1_SHA256, "PS256", good.clone()),
                Err("signature"),
            ),
            (
                "sig_not_base64",
                format!("{}.!!", &ok[..ok.rfind('.').unwrap()]),
                Err("malformed"),
            ),
            (
                "sig_empty",
                format!("{}.", &ok[..ok.rfind('.').unwrap()]),
                Err("signature"),
            ),
            (
                "wrong_issuer",
                sign(&pair, &RSA_PKCS1_SHA256, "RS256", json!({"exp": 1, "iss": "x"})),
                Err("issuer"),
            ),
            (
                "no_exp",
                sign(&pair, &RSA_PKCS1_SHA256, "RS256", json!({"iss": "iss"})),
                Err("malformed"),
            ),
        ];
        for (name, token, want) in &cases {
            let (f, s) = (verify(token, &fast_set), verify(token, &slow_set));
            assert_eq!(
                f.as_ref().map(|_| ()).map_err(|e| *e),
                *want,
                "case {name}: fast path"
            );
            assert_eq!(f, s, "case {name}: fast and jsonwebtoken paths differ");
        }
    }
}
