//! Token signing keys: an HS256 shared secret (every replica has it), or an RS256/ES256 key pair
//! whose public half is published as a JWKS (`/.well-known/jwks.json`), so other services can
//! verify the registry's tokens without holding a secret.

use base64::Engine as _;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey};
use sha2::{Digest as _, Sha256};

pub struct SigningKey {
    pub alg: Algorithm,
    pub encoding: EncodingKey,
    pub decoding: DecodingKey,
    /// The key id in token headers and the JWKS (asymmetric keys only).
    pub kid: Option<String>,
    /// The public key as a JWK (asymmetric keys only).
    pub jwk: Option<serde_json::Value>,
}

impl SigningKey {
    pub fn hs256(secret: &[u8]) -> SigningKey {
        SigningKey {
            alg: Algorithm::HS256,
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            kid: None,
            jwk: None,
        }
    }

    /// An RS256 or ES256 (P-256) key pair from PEM files: the PKCS#8 private key and the
    /// SubjectPublicKeyInfo public key.
    pub fn asymmetric(alg: &str, private_pem: &[u8], public_pem: &[u8]) -> anyhow::Result<SigningKey> {
        let der = pem_body(public_pem)?;
        let kid = hex::encode(&Sha256::digest(&der)[..16]);
        let b64 = |b: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b);
        let (alg, encoding, decoding, jwk) = match alg {
            "RS256" => {
                let (n, e) = rsa_components(&der)?;
                let jwk = serde_json::json!({"kty": "RSA", "alg": "RS256", "use": "sig", "kid": kid, "n": b64(&n), "e": b64(&e)});
                (Algorithm::RS256, EncodingKey::from_rsa_pem(private_pem)?, DecodingKey::from_rsa_pem(public_pem)?, jwk)
            }
            "ES256" => {
                // A P-256 SubjectPublicKeyInfo ends with the uncompressed point 04 || X || Y.
                let point = der.get(der.len().saturating_sub(65)..).filter(|p| p.len() == 65 && p[0] == 4);
                let p = point.ok_or_else(|| anyhow::anyhow!("the public key is not an uncompressed P-256 point"))?;
                let jwk = serde_json::json!({"kty": "EC", "crv": "P-256", "alg": "ES256", "use": "sig", "kid": kid,
                                             "x": b64(&p[1..33]), "y": b64(&p[33..])});
                (Algorithm::ES256, EncodingKey::from_ec_pem(private_pem)?, DecodingKey::from_ec_pem(public_pem)?, jwk)
            }
            other => anyhow::bail!("token algorithm {other:?}: use HS256, RS256 or ES256"),
        };
        Ok(SigningKey { alg, encoding, decoding, kid: Some(kid), jwk: Some(jwk) })
    }

    /// The JWKS document (empty for a shared secret, which is never published).
    pub fn jwks(&self) -> serde_json::Value {
        serde_json::json!({"keys": self.jwk.iter().collect::<Vec<_>>()})
    }
}

fn pem_body(pem: &[u8]) -> anyhow::Result<Vec<u8>> {
    let text = std::str::from_utf8(pem)?;
    let b64: String = text.lines().filter(|l| !l.starts_with("-----")).collect();
    Ok(base64::engine::general_purpose::STANDARD.decode(b64.trim())?)
}

/// One DER element at `at`: (tag, content start, content end).
fn der_element(d: &[u8], at: usize) -> anyhow::Result<(u8, usize, usize)> {
    let bad = || anyhow::anyhow!("malformed DER");
    let tag = *d.get(at).ok_or_else(bad)?;
    let first = *d.get(at + 1).ok_or_else(bad)?;
    let (len, start) = if first < 0x80 {
        (first as usize, at + 2)
    } else {
        let n = (first & 0x7f) as usize;
        if n == 0 || n > 4 {
            return Err(bad());
        }
        let bytes = d.get(at + 2..at + 2 + n).ok_or_else(bad)?;
        (bytes.iter().fold(0usize, |a, b| (a << 8) | *b as usize), at + 2 + n)
    };
    let end = start.checked_add(len).filter(|e| *e <= d.len()).ok_or_else(bad)?;
    Ok((tag, start, end))
}

/// n and e of an RSA SubjectPublicKeyInfo (SEQUENCE { algorithm, BIT STRING { RSAPublicKey } }).
fn rsa_components(spki: &[u8]) -> anyhow::Result<(Vec<u8>, Vec<u8>)> {
    let (_, seq, _) = der_element(spki, 0)?;
    let (_, _, alg_end) = der_element(spki, seq)?;
    let (tag, bits, _) = der_element(spki, alg_end)?;
    anyhow::ensure!(tag == 0x03, "no public key bit string");
    let key = bits + 1; // the unused-bits byte
    let (_, inner, _) = der_element(spki, key)?;
    let (t1, ns, ne) = der_element(spki, inner)?;
    let (t2, es, ee) = der_element(spki, ne)?;
    anyhow::ensure!(t1 == 0x02 && t2 == 0x02, "not an RSA public key");
    let strip = |b: &[u8]| b.iter().skip_while(|x| **x == 0).copied().collect::<Vec<u8>>();
    Ok((strip(&spki[ns..ne]), strip(&spki[es..ee])))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn openssl(args: &[&str]) {
        assert!(std::process::Command::new("openssl").args(args).status().unwrap().success(), "openssl {args:?}");
    }

    #[test]
    fn key_pairs_sign_verify_and_publish() {
        let t = tempfile::tempdir().unwrap();
        let p = |n: &str| t.path().join(n).to_str().unwrap().to_string();
        openssl(&["genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", &p("rsa.key")]);
        openssl(&["pkey", "-in", &p("rsa.key"), "-pubout", "-out", &p("rsa.pub")]);
        openssl(&["genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", &p("ec.key")]);
        openssl(&["pkey", "-in", &p("ec.key"), "-pubout", "-out", &p("ec.pub")]);
        for (alg, k, pubk) in [("RS256", "rsa.key", "rsa.pub"), ("ES256", "ec.key", "ec.pub")] {
            let key =
                SigningKey::asymmetric(alg, &std::fs::read(p(k)).unwrap(), &std::fs::read(p(pubk)).unwrap()).unwrap();
            let mut h = jsonwebtoken::Header::new(key.alg);
            h.kid = key.kid.clone();
            let claims = serde_json::json!({"sub": "alice", "exp": 4_000_000_000u64});
            let tok = jsonwebtoken::encode(&h, &claims, &key.encoding).unwrap();
            // Verified with the published JWK alone, as another service would.
            let jwk: jsonwebtoken::jwk::Jwk = serde_json::from_value(key.jwks()["keys"][0].clone()).unwrap();
            let dk = DecodingKey::from_jwk(&jwk).unwrap();
            let mut v = jsonwebtoken::Validation::new(key.alg);
            v.required_spec_claims.clear();
            assert_eq!(
                jsonwebtoken::decode::<serde_json::Value>(&tok, &dk, &v).unwrap().claims["sub"],
                "alice",
                "{alg}"
            );
        }
        assert!(SigningKey::asymmetric("HS512", b"", b"").is_err());
        assert_eq!(SigningKey::hs256(b"x").jwks()["keys"], serde_json::json!([]));
    }
}
