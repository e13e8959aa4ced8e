//! A loopback stand-in for AWS Sign-In's `CreateOAuth2Token` (the refresh of an `aws login`
//! console session), as strict as the real one: a DPoP proof (RFC 9449) signed with the
//! session's key (checked with ring), for `POST` to this very URL, issued now and never
//! replayed; the session's client id and its current refresh token, which it rotates.
//! Refusals in the service's shape (`AccessDeniedException` with `error` `TOKEN_EXPIRED`,
//! `ValidationException` with `INVALID_REQUEST`). Every credential it hands out is a
//! registered secret.

use super::servers::random_hex;
use super::standin::{Reply, Seen, StandIn};
use ring::rand::SystemRandom;
use ring::signature::{
    EcdsaKeyPair, KeyPair, UnparsedPublicKey, ECDSA_P256_SHA256_FIXED, ECDSA_P256_SHA256_FIXED_SIGNING,
};
use serde_json::{json, Value};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

struct State {
    /// The session's DPoP public key (uncompressed point).
    public_key: Vec<u8>,
    client_id: String,
    refresh_token: String,
    /// The keys a refresh hands out (access key, secret key).
    keys: (String, String),
    /// `jti`s seen (a replayed proof is refused).
    jtis: Vec<String>,
    /// Why each refused request was refused.
    refusals: Vec<String>,
    port: u16,
}

/// The stand-in, and the session it knows.
pub struct SignIn {
    pub server: StandIn,
    state: Arc<Mutex<State>>,
    /// The session's key, PEM (PKCS#8), for the cache file.
    pub dpop_key_pem: String,
    pub client_id: String,
}

impl SignIn {
    /// A session whose refreshes hand out `keys` (access key, secret key).
    pub fn start(keys: (&str, &str)) -> SignIn {
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng).unwrap();
        let body = gocacheprog_s3::base64::encode(pkcs8.as_ref());
        let dpop_key_pem = super::secret(&format!("-----BEGIN PRIVATE KEY-----\n{body}\n-----END PRIVATE KEY-----\n"));
        super::secret(&body);
        let client_id = "arn:aws:signin:::devtools/same-device".to_string();
        let state = Arc::new(Mutex::new(State {
            public_key: pair.public_key().as_ref().to_vec(),
            client_id: client_id.clone(),
            refresh_token: super::secret(&format!("refresh-{}", random_hex(32))),
            keys: (keys.0.into(), keys.1.into()),
            jtis: Vec::new(),
            refusals: Vec::new(),
            port: 0,
        }));
        let for_server = Arc::clone(&state);
        let server = StandIn::serve(move |seen| {
            let mut state = for_server.lock().unwrap();
            let reply = token(seen, &mut state);
            if reply.0 != 200 {
                let why = reply.2.clone();
                state.refusals.push(why);
            }
            reply
        });
        state.lock().unwrap().port = server.port;
        SignIn { server, state, dpop_key_pem, client_id }
    }

    /// The refresh token Sign-In accepts now.
    pub fn refresh_token(&self) -> String {
        self.state.lock().unwrap().refresh_token.clone()
    }

    /// Replaces the accepted refresh token (the session "ends" for the cached one).
    pub fn end_session(&self) {
        self.state.lock().unwrap().refresh_token = super::secret(&format!("refresh-{}", random_hex(32)));
    }

    /// Why each refused request was refused.
    pub fn refusals(&self) -> Vec<String> {
        self.state.lock().unwrap().refusals.clone()
    }
}

fn b64url_decode(text: &str) -> Option<Vec<u8>> {
    let mut standard = text.replace('-', "+").replace('_', "/");
    while standard.len() % 4 != 0 {
        standard.push('=');
    }
    gocacheprog_s3::base64::decode(standard.as_bytes()).ok()
}

/// The DPoP proof's problem, if any.
fn check_proof(proof: &str, state: &mut State) -> Result<(), String> {
    let parts: Vec<&str> = proof.split('.').collect();
    let [header, payload, signature] = parts[..] else { return Err("not a JWS".into()) };
    let header: Value = b64url_decode(header).and_then(|b| serde_json::from_slice(&b).ok()).ok_or("bad header")?;
    let claims: Value = b64url_decode(payload).and_then(|b| serde_json::from_slice(&b).ok()).ok_or("bad payload")?;
    if header["typ"] != "dpop+jwt" || header["alg"] != "ES256" || header["jwk"]["crv"] != "P-256" {
        return Err(format!("header {header}"));
    }
    let mut point = vec![4u8];
    for c in ["x", "y"] {
        point.extend(header["jwk"][c].as_str().and_then(b64url_decode).ok_or("bad jwk")?);
    }
    if point != state.public_key {
        return Err("the proof's key is not the session's".into());
    }
    let signed = format!("{}.{}", parts[0], parts[1]);
    UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, &point)
        .verify(signed.as_bytes(), &b64url_decode(signature).ok_or("bad signature encoding")?)
        .map_err(|_| "the signature does not verify")?;
    let url = format!("http://127.0.0.1:{}/v1/token", state.port);
    if claims["htm"] != "POST" || claims["htu"] != url.as_str() {
        return Err(format!("htm/htu {claims}"));
    }
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() as i64;
    if claims["iat"].as_i64().is_none_or(|iat| (iat - now).abs() > 300) {
        return Err(format!("iat {claims}"));
    }
    let jti = claims["jti"].as_str().ok_or("no jti")?.to_string();
    if state.jtis.contains(&jti) {
        return Err("a replayed proof".into());
    }
    state.jtis.push(jti);
    Ok(())
}

/// `POST /v1/token`.
fn token(seen: &Seen, state: &mut State) -> Reply {
    let refuse = |status: u16, kind: &str, error: &str, message: &str| -> Reply {
        let headers = vec![("x-amzn-errortype".to_string(), kind.to_string())];
        (status, headers, json!({"error": error, "message": message}).to_string())
    };
    if seen.method != "POST" || seen.path != "/v1/token" {
        return refuse(404, "ResourceNotFoundException", "RESOURCE_NOT_FOUND", "Not Found");
    }
    if let Err(why) = check_proof(seen.header("dpop").unwrap_or(""), state) {
        return refuse(400, "ValidationException", "INVALID_REQUEST", &format!("invalid DPoP proof: {why}"));
    }
    let Ok(body) = serde_json::from_slice::<Value>(&seen.body) else {
        return refuse(400, "ValidationException", "INVALID_REQUEST", "malformed body");
    };
    if body["grantType"] != "refresh_token" || body["clientId"] != state.client_id.as_str() {
        return refuse(400, "ValidationException", "INVALID_REQUEST", "unsupported grant or client");
    }
    if body["refreshToken"] != state.refresh_token.as_str() {
        return refuse(
            401,
            "AccessDeniedException",
            "TOKEN_EXPIRED",
            "Your session has expired. Please reauthenticate.",
        );
    }
    let session_token = super::secret(&format!("IQoJb3JpZ2luX2VjEsignin{}", random_hex(24)));
    state.refresh_token = super::secret(&format!("refresh-{}", random_hex(32)));
    let (access_key, secret_key) = &state.keys;
    let answer = json!({"accessToken": {"accessKeyId": access_key, "secretAccessKey": secret_key,
                                        "sessionToken": session_token},
                        "tokenType": "aws_sigv4", "expiresIn": 900, "refreshToken": state.refresh_token});
    (200, vec![("content-type".into(), "application/json".into())], answer.to_string())
}
