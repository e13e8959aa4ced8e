//! Loopback stand-ins for IAM Identity Center, as strict as the real services: the portal
//! (`GetRoleCredentials`) hands out the role's credentials only for an access token it
//! issued, and only for the account and role it was given (401 `UnauthorizedException`,
//! 403 `ForbiddenException` otherwise, in the portal's JSON shape); SSO OIDC (`CreateToken`)
//! refreshes only with the registered client's id and secret and the current refresh token,
//! which it rotates (401 `InvalidClientException`, 400 `InvalidGrantException`, ...). Every
//! token it hands out is a registered secret (`common::secret`).

use super::servers::random_hex;
use super::standin::{Reply, Seen, StandIn};
use serde_json::{json, Value};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// What the stand-ins accept and hand out.
struct State {
    account: String,
    role: String,
    /// The role's credentials: access key, secret key, session token.
    keys: (String, String, String),
    /// How long the role's credentials last.
    lifetime: Duration,
    /// Access tokens the portal accepts (those "logged in" and those OIDC issued).
    access_tokens: Vec<String>,
    /// The registered client (id, secret) and the refresh token OIDC accepts now.
    client: Option<(String, String, String)>,
    /// Access tokens OIDC issued, in order.
    issued: Vec<String>,
}

/// The portal and SSO OIDC, each on its own port.
pub struct SsoStandIns {
    pub portal: StandIn,
    pub oidc: StandIn,
    state: Arc<Mutex<State>>,
}

impl SsoStandIns {
    /// A portal that gives `keys` (access key, secret key) as role `role` in `account`,
    /// with a session token of its own, lasting an hour.
    pub fn start(account: &str, role: &str, keys: (&str, &str)) -> SsoStandIns {
        let session_token = super::secret(&format!("IQoJb3JpZ2luX2VjE{}", random_hex(24)));
        let state = Arc::new(Mutex::new(State {
            account: account.into(),
            role: role.into(),
            keys: (keys.0.into(), keys.1.into(), session_token),
            lifetime: Duration::from_secs(3600),
            access_tokens: Vec::new(),
            client: None,
            issued: Vec::new(),
        }));
        let for_portal = Arc::clone(&state);
        let for_oidc = Arc::clone(&state);
        SsoStandIns {
            portal: StandIn::serve(move |seen| portal(seen, &for_portal.lock().unwrap())),
            oidc: StandIn::serve(move |seen| oidc(seen, &mut for_oidc.lock().unwrap())),
            state,
        }
    }

    /// A fresh access token as `aws sso login` would get (accepted by the portal).
    pub fn log_in(&self) -> String {
        let token = super::secret(&format!("aoaAAAAAGZ{}", random_hex(40)));
        self.state.lock().unwrap().access_tokens.push(token.clone());
        token
    }

    /// A registered client and its current refresh token: (client id, client secret,
    /// refresh token).
    pub fn register_client(&self) -> (String, String, String) {
        let client = (
            format!("client-{}", random_hex(8)),
            super::secret(&format!("eyJraWQiOiJrZXktMTU2{}", random_hex(32))),
            super::secret(&format!("aorAAAAAGZ{}", random_hex(40))),
        );
        self.state.lock().unwrap().client = Some(client.clone());
        client
    }

    /// Role credentials without a session token from now on (for a store that checks
    /// tokens it issued itself).
    pub fn without_session_token(&self) {
        self.state.lock().unwrap().keys.2.clear();
    }

    /// The access tokens OIDC issued, in order.
    pub fn issued(&self) -> Vec<String> {
        self.state.lock().unwrap().issued.clone()
    }

    /// The refresh token OIDC accepts now (rotated by each refresh).
    pub fn refresh_token(&self) -> Option<String> {
        self.state.lock().unwrap().client.as_ref().map(|c| c.2.clone())
    }
}

fn json_reply(status: u16, error_type: Option<&str>, body: Value) -> Reply {
    let mut headers = vec![("content-type".to_string(), "application/json".to_string())];
    if let Some(t) = error_type {
        headers.push(("x-amzn-errortype".into(), t.into()));
    }
    (status, headers, body.to_string())
}

/// `GET /federation/credentials?account_id=..&role_name=..` with `x-amz-sso_bearer_token`.
fn portal(seen: &Seen, state: &State) -> Reply {
    let (path, query) = seen.path.split_once('?').unwrap_or((&seen.path, ""));
    if seen.method != "GET" || path != "/federation/credentials" {
        return json_reply(404, Some("ResourceNotFoundException"), json!({"message": "Not Found"}));
    }
    let param = |name: &str| query.split('&').find_map(|kv| kv.strip_prefix(&format!("{name}=")));
    let (Some(account), Some(role)) = (param("account_id"), param("role_name")) else {
        return json_reply(
            400,
            Some("InvalidRequestException"),
            json!({"message": "account_id and role_name are required"}),
        );
    };
    let token = seen.header("x-amz-sso_bearer_token").unwrap_or("");
    if !state.access_tokens.iter().any(|t| t == token) {
        return json_reply(
            401,
            Some("UnauthorizedException"),
            json!({"message": "Session token not found or invalid"}),
        );
    }
    if account != state.account || role != state.role {
        return json_reply(403, Some("ForbiddenException"), json!({"message": "No access"}));
    }
    let expiration = (SystemTime::now() + state.lifetime).duration_since(UNIX_EPOCH).unwrap().as_millis() as u64;
    let (access_key, secret_key, session_token) = &state.keys;
    json_reply(
        200,
        None,
        json!({"roleCredentials": {"accessKeyId": access_key, "secretAccessKey": secret_key,
                                   "sessionToken": session_token, "expiration": expiration}}),
    )
}

/// `POST /token` (CreateToken) with `grantType` `refresh_token`.
fn oidc(seen: &Seen, state: &mut State) -> Reply {
    let error = |status, kind: &str, code: &str, description: &str| {
        json_reply(status, Some(kind), json!({"error": code, "error_description": description}))
    };
    if seen.method != "POST" || seen.path != "/token" {
        return error(404, "ResourceNotFoundException", "not_found", "Not Found");
    }
    if !seen.header("content-type").is_some_and(|t| t.starts_with("application/json")) {
        return error(400, "InvalidRequestException", "invalid_request", "Unsupported content type");
    }
    let Ok(body) = serde_json::from_slice::<Value>(&seen.body) else {
        return error(400, "InvalidRequestException", "invalid_request", "Malformed request body");
    };
    let field = |k: &str| body.get(k).and_then(Value::as_str).unwrap_or("");
    if field("grantType") != "refresh_token" {
        return error(400, "UnsupportedGrantTypeException", "unsupported_grant_type", "Unsupported grant type");
    }
    let Some((id, secret, refresh)) = state.client.clone() else {
        return error(401, "InvalidClientException", "invalid_client", "Invalid client provided");
    };
    if field("clientId") != id || field("clientSecret") != secret {
        return error(401, "InvalidClientException", "invalid_client", "Invalid client provided");
    }
    if field("refreshToken") != refresh {
        return error(400, "InvalidGrantException", "invalid_grant", "Invalid refresh token provided");
    }
    let access = super::secret(&format!("aoaAAAAAGZ{}", random_hex(40)));
    let rotated = super::secret(&format!("aorAAAAAGZ{}", random_hex(40)));
    state.access_tokens.push(access.clone());
    state.issued.push(access.clone());
    state.client = Some((id, secret, rotated.clone()));
    json_reply(
        200,
        None,
        json!({"accessToken": access, "tokenType": "Bearer", "expiresIn": 28800, "refreshToken": rotated}),
    )
}
