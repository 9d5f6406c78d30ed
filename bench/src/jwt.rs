//! RS256 tokens for the secured rows: an RSA-2048 key pair made with the `openssl` CLI, the
//! public half written as a JWKS (for capi-ws) and as a PEM (for HAProxy's `jwt_verify`), and
//! tokens signed with `ring`. A pool of distinct tokens (one per connection, the cache-miss
//! row) is signed up front on every core, outside any measured window.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, bail, Context};
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use ring::rand::SystemRandom;
use ring::signature::{KeyPair, RsaKeyPair, RSA_PKCS1_SHA256};

/// `kid` of the bench key in the JWKS and in every token header.
pub const KID: &str = "capi-ws-bench";
/// Token lifetime: longer than any bench run.
const LIFETIME_SECS: u64 = 6 * 3600;

/// The key pair and the files the targets read.
pub struct Keys {
    pair: RsaKeyPair,
    /// JWKS with the public key (capi-ws `capi.oauth2.provider.keys`).
    pub jwks_path: PathBuf,
    /// Public key PEM (HAProxy `jwt_verify`).
    pub pubkey_path: PathBuf,
}

impl Keys {
    /// Make a fresh key pair in `dir` with the `openssl` CLI and load it.
    pub fn generate(dir: &Path) -> anyhow::Result<Keys> {
        let key_pem = dir.join("jwt-key.pem");
        let key_der = dir.join("jwt-key.p8.der");
        let pubkey_path = dir.join("jwt-pub.pem");
        openssl(&[
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:2048",
            "-out",
            path_str(&key_pem)?,
        ])?;
        openssl(&[
            "pkcs8",
            "-topk8",
            "-nocrypt",
            "-in",
            path_str(&key_pem)?,
            "-outform",
            "DER",
            "-out",
            path_str(&key_der)?,
        ])?;
        openssl(&[
            "pkey",
            "-in",
            path_str(&key_pem)?,
            "-pubout",
            "-out",
            path_str(&pubkey_path)?,
        ])?;
        let der = fs::read(&key_der).with_context(|| format!("reading {}", key_der.display()))?;
        let pair = RsaKeyPair::from_pkcs8(&der).map_err(|e| anyhow!("loading the RSA key: {e}"))?;
        let jwks_path = dir.join("jwks.json");
        fs::write(&jwks_path, jwks(&pair)).with_context(|| format!("writing {}", jwks_path.display()))?;
        Ok(Keys {
            pair,
            jwks_path,
            pubkey_path,
        })
    }

    /// One signed RS256 token; `n` makes it distinct (`jti`, `sub`).
    pub fn token(&self, n: u64) -> anyhow::Result<String> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let header = format!(r#"{{"alg":"RS256","typ":"JWT","kid":"{KID}"}}"#);
        let claims = format!(
            r#"{{"sub":"bench-{n}","jti":"{n}","iat":{now},"nbf":{now},"exp":{},"subscriptions":["bench"]}}"#,
            now + LIFETIME_SECS
        );
        let signing_input = format!("{}.{}", B64.encode(header), B64.encode(claims));
        let mut sig = vec![0; self.pair.public().modulus_len()];
        self.pair
            .sign(
                &RSA_PKCS1_SHA256,
                &SystemRandom::new(),
                signing_input.as_bytes(),
                &mut sig,
            )
            .map_err(|e| anyhow!("signing: {e}"))?;
        Ok(format!("{signing_input}.{}", B64.encode(sig)))
    }

    /// `count` distinct tokens, signed on `threads` threads.
    pub fn token_pool(&self, count: usize, threads: usize) -> anyhow::Result<Vec<String>> {
        let threads = threads.max(1);
        let parts: Vec<anyhow::Result<Vec<String>>> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..threads)
                .map(|t| {
                    s.spawn(move || {
                        (t..count)
                            .step_by(threads)
                            .map(|i| self.token(i as u64))
                            .collect()
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().unwrap_or_else(|_| Err(anyhow!("signer panicked"))))
                .collect()
        });
        let mut cols = Vec::with_capacity(threads);
        for p in parts {
            cols.push(p?);
        }
        // Interleave back into index order.
        let mut out = Vec::with_capacity(count);
        for i in 0..count {
            let Some(t) = cols[i % threads].get(i / threads) else {
                bail!("token pool short")
            };
            out.push(t.clone());
        }
        Ok(out)
    }
}

fn jwks(pair: &RsaKeyPair) -> String {
    let c: ring::rsa::PublicKeyComponents<Vec<u8>> = pair.public_key().into();
    let (n, e) = (c.n, c.e);
    serde_json::json!({
        "keys": [{"kty": "RSA", "kid": KID, "use": "sig", "alg": "RS256", "n": B64.encode(n), "e": B64.encode(e)}]
    })
    .to_string()
}

fn path_str(p: &Path) -> anyhow::Result<&str> {
    p.to_str()
        .ok_or_else(|| anyhow!("non-UTF-8 path {}", p.display()))
}

fn openssl(args: &[&str]) -> anyhow::Result<()> {
    let out = Command::new("openssl")
        .args(args)
        .output()
        .context("running openssl (is it installed?)")?;
    if !out.status.success() {
        bail!(
            "openssl {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use ring::signature::RSA_PKCS1_2048_8192_SHA256;

    #[test]
    fn tokens_verify_with_the_published_key() {
        let dir = std::env::temp_dir().join(format!("capi-ws-bench-jwt-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let keys = Keys::generate(&dir).unwrap();
        let jwks: serde_json::Value =
            serde_json::from_str(&fs::read_to_string(&keys.jwks_path).unwrap()).unwrap();
        let k = &jwks["keys"][0];
        assert_eq!(k["kid"], KID);
        let n = B64.decode(k["n"].as_str().unwrap()).unwrap();
        let e = B64.decode(k["e"].as_str().unwrap()).unwrap();
        assert!(fs::read_to_string(&keys.pubkey_path)
            .unwrap()
            .contains("BEGIN PUBLIC KEY"));
        let pool = keys.token_pool(5, 2).unwrap();
        let distinct: std::collections::BTreeSet<_> = pool.iter().collect();
        assert_eq!(distinct.len(), 5, "tokens must differ");
        for (i, t) in pool.iter().enumerate() {
            let (input, sig) = t.rsplit_once('.').unwrap();
            let claims = B64.decode(input.split('.').nth(1).unwrap()).unwrap();
            let claims: serde_json::Value = serde_json::from_slice(&claims).unwrap();
            assert_eq!(claims["jti"], i.to_string(), "pool order");
            let pk = ring::signature::RsaPublicKeyComponents { n: &n, e: &e };
            pk.verify(
                &RSA_PKCS1_2048_8192_SHA256,
                input.as_bytes(),
                &B64.decode(sig).unwrap(),
            )
            .unwrap();
            let mut bad = input.as_bytes().to_vec();
            bad[0] ^= 1;
            assert!(pk
                .verify(&RSA_PKCS1_2048_8192_SHA256, &bad, &B64.decode(sig).unwrap())
                .is_err());
        }
        fs::remove_dir_all(&dir).unwrap();
    }
}
