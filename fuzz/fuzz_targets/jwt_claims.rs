//! Fuzz target: JWT header and claims parsing (src/data/verify.rs) past the signature check:
//! the fuzzer writes the header and claims, the target signs them with the fixed Ed25519 key
//! (fuzz/src/lib.rs) so `check_claims` and the NumericDate / `aud` / `subscriptions` decoding
//! are reached. Properties: no panic; the answer is a known reason; a verified token had a
//! numeric `exp`, the bound issuer and audience, and well-formed subscriptions.
#![no_main]

use std::sync::OnceLock;

use arbitrary::Arbitrary;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use capi_ws::data::verify::verify;
use capi_ws::keys::KeySet;
use capi_ws_fuzz::{check_subscriptions, fixed_key_set, FUZZ_ED25519_PEM, FUZZ_ISSUER, VERIFY_REASONS};
use jsonwebtoken::{Algorithm, EncodingKey};
use libfuzzer_sys::fuzz_target;
use serde_json::{json, Value};

#[derive(Arbitrary, Debug)]
enum Num {
    U(u64),
    I(i64),
    F(f64),
    Text(String),
    Null,
    Absent,
}

impl Num {
    fn value(&self) -> Option<Value> {
        match self {
            Num::U(n) => Some(json!(n)),
            Num::I(n) => Some(json!(n)),
            Num::F(f) => Some(serde_json::Number::from_f64(*f).map_or(Value::Null, Value::Number)),
            Num::Text(s) => Some(json!(s)),
            Num::Null => Some(Value::Null),
            Num::Absent => None,
        }
    }
}

#[derive(Arbitrary, Debug)]
enum Field {
    Str(String),
    List(Vec<String>),
    Mixed(Vec<Option<u32>>),
    Absent,
}

impl Field {
    fn value(&self) -> Option<Value> {
        match self {
            Field::Str(s) => Some(json!(s)),
            Field::List(l) => Some(json!(l)),
            Field::Mixed(l) => Some(json!(l)),
            Field::Absent => None,
        }
    }
}

#[derive(Arbitrary, Debug)]
enum Claims {
    /// Raw bytes as the claims segment (any JSON, or not JSON at all).
    Raw(Vec<u8>),
    Shaped {
        exp: Num,
        nbf: Num,
        bound_issuer: bool,
        iss: Field,
        aud: Field,
        subscriptions: Field,
        extra: Vec<(String, String)>,
    },
}

#[derive(Arbitrary, Debug)]
enum Header {
    /// `{"alg":"EdDSA","kid":"fz-ed"}`: the fixed key verifies it.
    Good,
    /// No `kid`: every key is a candidate.
    NoKid,
    /// Raw bytes as the header segment.
    Raw(Vec<u8>),
}

#[derive(Arbitrary, Debug)]
struct Input {
    header: Header,
    claims: Claims,
}

fn fixture() -> &'static (KeySet, EncodingKey) {
    static F: OnceLock<(KeySet, EncodingKey)> = OnceLock::new();
    F.get_or_init(|| {
        let key = EncodingKey::from_ed_pem(FUZZ_ED25519_PEM.as_bytes()).expect("fixed test key");
        (fixed_key_set(), key)
    })
}

fuzz_target!(|input: Input| {
    let (keys, signing) = fixture();
    let header = match &input.header {
        Header::Good => br#"{"alg":"EdDSA","typ":"JWT","kid":"fz-ed"}"#.to_vec(),
        Header::NoKid => br#"{"alg":"EdDSA"}"#.to_vec(),
        Header::Raw(b) => b.clone(),
    };
    let claims = match &input.claims {
        Claims::Raw(b) => b.clone(),
        Claims::Shaped {
            exp,
            nbf,
            bound_issuer,
            iss,
            aud,
            subscriptions,
            extra,
        } => {
            let mut m = serde_json::Map::new();
            for (k, v) in extra {
                m.insert(k.clone(), json!(v));
            }
            let mut put = |k: &str, v: Option<Value>| {
                if let Some(v) = v {
                    m.insert(k.to_string(), v);
                }
            };
            put("exp", exp.value());
            put("nbf", nbf.value());
            put(
                "iss",
                if *bound_issuer {
                    Some(json!(FUZZ_ISSUER))
                } else {
                    iss.value()
                },
            );
            put("aud", aud.value());
            put("subscriptions", subscriptions.value());
            Value::Object(m).to_string().into_bytes()
        }
    };
    let input_part = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(&header),
        URL_SAFE_NO_PAD.encode(&claims)
    );
    let Ok(sig) = jsonwebtoken::crypto::sign(input_part.as_bytes(), signing, Algorithm::EdDSA) else {
        return;
    };
    let token = format!("{input_part}.{sig}");
    match verify(&token, keys) {
        Ok(v) => {
            let c: Value = serde_json::from_slice(&claims).expect("verified claims are JSON");
            assert_eq!(c["iss"], json!(FUZZ_ISSUER), "issuer binding skipped");
            let aud_ok = match &c["aud"] {
                Value::String(a) => a == "web",
                Value::Array(l) => l.iter().any(|a| a == "web"),
                _ => false,
            };
            assert!(aud_ok, "audience binding skipped: {:?}", c["aud"]);
            assert!(c["exp"].is_number(), "verified without a numeric exp");
            if let Some(nbf) = v.nbf {
                assert!(c["nbf"].is_number(), "nbf {nbf} from {:?}", c["nbf"]);
            }
            check_subscriptions(&v.subscriptions);
        }
        Err(r) => assert!(VERIFY_REASONS.contains(&r), "reason {r}"),
    }
});
