//! DPoP proofs (RFC 9449) for AWS Sign-In's token refresh: a JWT signed with ES256 by the
//! P-256 key `aws login` caches (`dpopKey`, PEM `EC PRIVATE KEY`, or PKCS#8 `PRIVATE KEY`),
//! which binds one request (`POST`, its URL, the time, a random id) to that key, as
//! botocore's `_build_dpop_header` and smithy-rs's `login::dpop` build it. The signature is
//! ring's (already in the binary for TLS).

use ring::rand::{SecureRandom, SystemRandom};
use ring::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
use serde_json::json;
use std::fmt;
use std::time::SystemTime;

/// A login's proof-of-possession key.
pub(super) struct DpopKey {
    pair: EcdsaKeyPair,
    rng: SystemRandom,
}

impl fmt::Debug for DpopKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("DpopKey(<redacted>)")
    }
}

/// One DER element of `input`: its tag, its contents and what follows it.
fn der(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 2 || rest.len() < n {
            return None;
        }
        (rest[..n].iter().fold(0usize, |len, &b| len << 8 | usize::from(b)), &rest[n..])
    };
    (rest.len() >= len).then(|| (tag, &rest[..len], &rest[len..]))
}

/// The private scalar and the uncompressed public point of an SEC 1 `ECPrivateKey`
/// (RFC 5915), which must carry its public key (the AWS CLI's do).
fn sec1(key: &[u8]) -> Option<(&[u8], &[u8])> {
    let (0x30, body, _) = der(key)? else { return None };
    let (0x02, [1], rest) = der(body)? else { return None };
    let (0x04, private, mut rest) = der(rest)? else { return None };
    while let Some((tag, contents, next)) = der(rest) {
        if tag == 0xa1 {
            let (0x03, [0, point @ ..], _) = der(contents)? else { return None };
            return Some((private, point));
        }
        rest = next;
    }
    None
}

/// `bytes` in unpadded base64url (JWS).
fn b64url(bytes: &[u8]) -> String {
    crate::base64::encode(bytes).trim_end_matches('=').replace('+', "-").replace('/', "_")
}

impl DpopKey {
    /// The key of a PEM document.
    pub(super) fn from_pem(pem: &str) -> Result<DpopKey, String> {
        let label = pem.lines().find_map(|l| l.trim().strip_prefix("-----BEGIN ")?.strip_suffix("-----"));
        let body: String = pem
            .lines()
            .filter(|l| !l.starts_with("-----"))
            .flat_map(|l| l.chars())
            .filter(|c| !c.is_whitespace())
            .collect();
        let der = crate::base64::decode(body.as_bytes()).map_err(|_| "the dpopKey is not base64 PEM".to_string())?;
        let rng = SystemRandom::new();
        let pair = match label {
            Some("EC PRIVATE KEY") => {
                let (private, public) = sec1(&der).ok_or("the dpopKey is not an EC private key with its public key")?;
                EcdsaKeyPair::from_private_key_and_public_key(&ECDSA_P256_SHA256_FIXED_SIGNING, private, public, &rng)
            }
            Some("PRIVATE KEY") => EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &der, &rng),
            other => return Err(format!("the dpopKey is a PEM {other:?}, not an EC private key")),
        }
        .map_err(|e| format!("the dpopKey is not a P-256 key ({e})"))?;
        Ok(DpopKey { pair, rng })
    }

    /// The uncompressed public point (`04 || x || y`).
    pub(super) fn public_key(&self) -> &[u8] {
        self.pair.public_key().as_ref()
    }

    /// The `DPoP` header for a `POST` to `url` at `now`.
    pub(super) fn proof(&self, url: &str, now: SystemTime) -> Result<String, String> {
        let point = self.public_key();
        let (x, y) = point.get(1..).ok_or("no public key")?.split_at(32);
        let header = json!({"typ": "dpop+jwt", "alg": "ES256",
                            "jwk": {"kty": "EC", "x": b64url(x), "y": b64url(y), "crv": "P-256"}});
        let mut id = [0u8; 16];
        self.rng.fill(&mut id).map_err(|_| "no randomness for the DPoP proof")?;
        // A version 4 UUID, as the SDKs' `jti`.
        id[6] = id[6] & 0x0f | 0x40;
        id[8] = id[8] & 0x3f | 0x80;
        let h = hex::encode(id);
        let jti = format!("{}-{}-{}-{}-{}", &h[..8], &h[8..12], &h[12..16], &h[16..20], &h[20..]);
        let iat = now.duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_secs());
        let payload = json!({"jti": jti, "htm": "POST", "htu": url, "iat": iat});
        let message = format!("{}.{}", b64url(header.to_string().as_bytes()), b64url(payload.to_string().as_bytes()));
        let signature = self.pair.sign(&self.rng, message.as_bytes()).map_err(|_| "signing the DPoP proof failed")?;
        Ok(format!("{message}.{}", b64url(signature.as_ref())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ring::signature::{UnparsedPublicKey, ECDSA_P256_SHA256_FIXED};
    use serde_json::Value;

    /// The AWS CLI's form (SEC 1 with the curve and the public key), from smithy-rs's test
    /// data for the login provider.
    const CLI_KEY: &str = "-----BEGIN EC PRIVATE KEY-----\nMHcCAQEEIPt/u8InPLpQeQLJTvVX+sNDzni8vMDMt3Liu+nMBigfoAoGCCqGSM49\n\
                           AwEHoUQDQgAEILkGG7rNOnxiIJlMgimY1UPP8eDMFP0DAY6WGjngP4bvTAiUCQ/I\nffut2379uP+OBCm2ovGpBOJRgrl1RspUOQ==\n\
                           -----END EC PRIVATE KEY-----\n";

    fn b64url_decode(text: &str) -> Vec<u8> {
        let mut standard = text.replace('-', "+").replace('_', "/");
        while standard.len() % 4 != 0 {
            standard.push('=');
        }
        crate::base64::decode(standard.as_bytes()).unwrap()
    }

    #[test]
    fn a_proof_verifies_with_the_key_it_names() {
        let key = DpopKey::from_pem(CLI_KEY).unwrap();
        let now = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_763_510_400);
        let url = "https://us-east-1.signin.aws.amazon.com/v1/token";
        let proof = key.proof(url, now).unwrap();
        let parts: Vec<&str> = proof.split('.').collect();
        assert_eq!(parts.len(), 3);
        let header: Value = serde_json::from_slice(&b64url_decode(parts[0])).unwrap();
        let payload: Value = serde_json::from_slice(&b64url_decode(parts[1])).unwrap();
        assert_eq!((header["typ"].as_str(), header["alg"].as_str()), (Some("dpop+jwt"), Some("ES256")));
        assert_eq!((header["jwk"]["kty"].as_str(), header["jwk"]["crv"].as_str()), (Some("EC"), Some("P-256")));
        assert_eq!(payload["htm"], "POST");
        assert_eq!(payload["htu"], url);
        assert_eq!(payload["iat"], 1_763_510_400);
        assert_eq!(payload["jti"].as_str().unwrap().len(), 36);
        let mut point = vec![4u8];
        point.extend(b64url_decode(header["jwk"]["x"].as_str().unwrap()));
        point.extend(b64url_decode(header["jwk"]["y"].as_str().unwrap()));
        assert_eq!(point, key.public_key());
        let signed = format!("{}.{}", parts[0], parts[1]);
        UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, &point)
            .verify(signed.as_bytes(), &b64url_decode(parts[2]))
            .expect("the signature verifies");
        assert_ne!(key.proof(url, now).unwrap(), proof, "a fresh jti each time");
    }

    #[test]
    fn keys_in_both_pem_forms_and_refusals() {
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
        let pem = format!(
            "-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n",
            crate::base64::encode(pkcs8.as_ref())
        );
        DpopKey::from_pem(&pem).unwrap();
        assert!(DpopKey::from_pem("-----BEGIN RSA PRIVATE KEY-----\nAAAA\n-----END RSA PRIVATE KEY-----").is_err());
        assert!(DpopKey::from_pem("-----BEGIN EC PRIVATE KEY-----\nMAMCAQE=\n-----END EC PRIVATE KEY-----").is_err());
        assert!(DpopKey::from_pem("not pem at all").is_err());
    }
}
