//! The login `aws sso login` leaves in `~/.aws/sso/cache/<sha1>.json`: the file is named by
//! the SHA-1 (hex) of the sso-session's name, or of the start URL for a legacy profile (start
//! URL in the profile), as botocore's `SSOTokenLoader`, the Go SDK's
//! `StandardCachedTokenFilepath` and smithy-rs's `cached_token_path` name it; under `HOME`,
//! whatever `AWS_CONFIG_FILE` says.
//!
//! An access token of an sso-session that expires within [`REFRESH_BEFORE`] is refreshed
//! through SSO OIDC `CreateToken` (`grantType` `refresh_token`) when the file holds the
//! refresh token and an unexpired client registration (`clientId`, `clientSecret`,
//! `registrationExpiresAt`), as botocore's and smithy-rs's token providers do; the file is
//! then rewritten whole (other fields kept, as the Go SDK keeps them) and renamed into place.
//! Legacy profiles are never refreshed (no SDK does: their logins carry no refresh token).

use super::{Context, REFRESH_BEFORE};
use crate::s3::http::{HttpRequest, HttpResponse};
use serde_json::{json, Map, Value};
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

/// Bound on one exchange with SSO OIDC or the portal.
pub(super) const TIMEOUT: Duration = Duration::from_secs(10);

/// Where a profile's SSO login is cached and how it is refreshed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TokenSource {
    /// The profile that names the login (for `aws sso login --profile`).
    pub(crate) profile: String,
    /// The sso-session's name; `None` for a legacy profile.
    pub(crate) session: Option<String>,
    pub(crate) start_url: String,
    /// `sso_region`: where SSO OIDC and the portal are.
    pub(crate) region: String,
    pub(crate) cache_file: PathBuf,
    /// SSO OIDC's base URL.
    pub(crate) oidc: String,
}

/// An access token to present to the portal.
pub(crate) struct Token {
    pub(crate) access_token: String,
    pub(crate) expires: SystemTime,
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Token").field("access_token", &"<redacted>").field("expires", &self.expires).finish()
    }
}

/// What `check` says about a login: when its token expires and whether it can be refreshed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Status {
    pub(crate) expires: SystemTime,
    /// Until when the token can be refreshed (the client registration's expiry), or why not.
    pub(crate) refreshable: Result<SystemTime, String>,
}

/// The cache file's fields, all kept for the rewrite. `Debug` prints no secret.
struct Cached {
    fields: Map<String, Value>,
    access_token: String,
    expires: SystemTime,
}

impl fmt::Debug for Cached {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Cached").field("expires", &self.expires).finish_non_exhaustive()
    }
}

/// What a refresh needs from the cache file.
struct RefreshParts {
    client_id: String,
    client_secret: String,
    refresh_token: String,
}

/// `~/.aws/sso/cache/<sha1 of key>.json` under `home`.
pub(super) fn cache_file(home: &Path, key: &str) -> PathBuf {
    let digest = ring::digest::digest(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY, key.as_bytes());
    home.join(".aws/sso/cache").join(format!("{}.json", hex::encode(digest.as_ref())))
}

/// An instant as the AWS CLI writes `expiresAt`: `2026-01-02T03:04:05Z`.
pub(super) fn utc_seconds(t: SystemTime) -> String {
    let civil = crate::calendar::Civil::from_system_time(t);
    crate::calendar::Civil { nanos: 0, ..civil }.rfc3339()
}

/// An `expiresAt` as written by the AWS CLI, botocore (`...Z`), older CLIs (`...UTC`) and
/// other tools (`+00:00`, fractions).
fn parse_instant(text: &str) -> Option<SystemTime> {
    let t = text.trim();
    match t.strip_suffix("UTC") {
        Some(bare) => crate::calendar::parse_rfc3339(&format!("{bare}Z")),
        None => crate::calendar::parse_rfc3339(t),
    }
}

/// `text` with each of `secrets` replaced by `<redacted>`.
pub(super) fn scrub(text: &str, secrets: &[&str]) -> String {
    secrets.iter().filter(|s| !s.is_empty()).fold(text.to_string(), |t, s| t.replace(s, "<redacted>"))
}

/// An AWS JSON error answer in a few words: `HTTP 401 UnauthorizedException: Session token
/// not found or invalid` (the type from `x-amzn-errortype`, else the body's `error` /
/// `__type`; the body's `message` or `error_description`).
pub(super) fn error_summary(response: &HttpResponse) -> String {
    let body: Value = serde_json::from_slice(&response.body).unwrap_or(Value::Null);
    let field = |k: &str| body.get(k).and_then(Value::as_str).map(str::to_string);
    let kind = response
        .header("x-amzn-errortype")
        .map(|t| t.split(':').next().unwrap_or(t).to_string())
        .or_else(|| field("__type"))
        .or_else(|| field("error"));
    let message = field("message").or_else(|| field("Message")).or_else(|| field("error_description"));
    match (kind, message) {
        (Some(kind), Some(message)) => format!("HTTP {} {kind}: {message}", response.status),
        (Some(kind), None) => format!("HTTP {} {kind}", response.status),
        (None, Some(message)) => format!("HTTP {}: {message}", response.status),
        (None, None) => format!("HTTP {}", response.status),
    }
}

impl Cached {
    fn parse(bytes: &[u8]) -> Result<Cached, String> {
        let value: Value = serde_json::from_slice(bytes).map_err(|e| format!("it is not JSON ({e})"))?;
        let Value::Object(fields) = value else { return Err("it is not a JSON object".into()) };
        let text = |k: &str| fields.get(k).and_then(Value::as_str).map(str::to_string);
        let access_token = text("accessToken").filter(|t| !t.is_empty()).ok_or("it holds no accessToken")?;
        let expires_at = text("expiresAt").ok_or("it holds no expiresAt")?;
        let expires =
            parse_instant(&expires_at).ok_or_else(|| format!("its expiresAt {expires_at:?} is not a date"))?;
        Ok(Cached { fields, access_token, expires })
    }

    fn text(&self, key: &str) -> Option<String> {
        self.fields.get(key).and_then(Value::as_str).filter(|v| !v.is_empty()).map(str::to_string)
    }

    /// The refresh token and client registration, or why the token cannot be refreshed.
    fn refresh_parts(&self, now: SystemTime) -> Result<(RefreshParts, SystemTime), String> {
        let refresh_token = self.text("refreshToken").ok_or("no refresh token is cached")?;
        let (Some(client_id), Some(client_secret)) = (self.text("clientId"), self.text("clientSecret")) else {
            return Err("no client registration is cached".into());
        };
        let registration =
            self.text("registrationExpiresAt").ok_or("the client registration's expiry is not cached")?;
        let until = parse_instant(&registration)
            .ok_or_else(|| format!("the client registration's expiry {registration:?} is not a date"))?;
        if until <= now {
            return Err(format!("the client registration expired at {}", utc_seconds(until)));
        }
        Ok((RefreshParts { client_id, client_secret, refresh_token }, until))
    }

    /// Every secret the file holds, to keep them out of messages.
    fn secrets(&self) -> Vec<String> {
        ["accessToken", "refreshToken", "clientSecret"].iter().filter_map(|k| self.text(k)).collect()
    }
}

impl TokenSource {
    /// For messages: `sso-session corp` or `start URL https://...`.
    pub(crate) fn label(&self) -> String {
        match &self.session {
            Some(session) => format!("sso-session {session}"),
            None => format!("start URL {}", self.start_url),
        }
    }

    /// What the user runs to log in again.
    pub(crate) fn advice(&self) -> String {
        format!("run `aws sso login --profile {}`", self.profile)
    }

    fn load(&self, ctx: &Context) -> Result<Cached, String> {
        let bytes = (ctx.read_file)(&self.cache_file).map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                format!(
                    "no SSO login is cached for {} ({}): {}",
                    self.label(),
                    self.cache_file.display(),
                    self.advice()
                )
            } else {
                format!("cannot read the SSO login cache {}: {e}", self.cache_file.display())
            }
        })?;
        Cached::parse(&bytes).map_err(|e| {
            format!("the SSO login cache {} is not usable: {e}; {}", self.cache_file.display(), self.advice())
        })
    }

    /// The cached token's expiry and whether it can be refreshed (no network).
    pub(crate) fn status(&self, ctx: &Context) -> Result<Status, String> {
        let cached = self.load(ctx)?;
        let refreshable = match &self.session {
            None => Err("a legacy profile (sso_start_url in the profile): no SDK refreshes its login".into()),
            Some(_) => cached.refresh_parts((ctx.now)()).map(|(_, until)| until),
        };
        Ok(Status { expires: cached.expires, refreshable })
    }

    /// A valid access token: the cached one, refreshed first when it expires within
    /// [`REFRESH_BEFORE`] and can be refreshed. An expired one that cannot be refreshed is
    /// an error that says to log in again.
    pub(crate) fn token(&self, ctx: &Context) -> Result<Token, String> {
        let now = (ctx.now)();
        let cached = self.load(ctx)?;
        let expired_at = format!("the SSO login ({}) expired at {}", self.label(), utc_seconds(cached.expires));
        if cached.expires > now + REFRESH_BEFORE {
            return Ok(Token { access_token: cached.access_token, expires: cached.expires });
        }
        let parts = match &self.session {
            Some(_) => cached.refresh_parts(now),
            None => Err("it is a legacy profile's login".into()),
        };
        match parts {
            Ok((parts, _)) => match self.refresh(ctx, &cached, &parts, now) {
                Ok(token) => Ok(token),
                Err(e) => {
                    // Refresh tokens rotate: another go command may have refreshed it first.
                    if let Ok(again) = self.load(ctx) {
                        if again.access_token != cached.access_token && again.expires > now {
                            return Ok(Token { access_token: again.access_token, expires: again.expires });
                        }
                    }
                    if cached.expires > now {
                        log!(1, "refreshing the SSO login ({}) failed: {e}; using it until it expires", self.label());
                        return Ok(Token { access_token: cached.access_token, expires: cached.expires });
                    }
                    Err(format!("{expired_at} and refreshing it failed ({e}): {}", self.advice()))
                }
            },
            Err(_) if cached.expires > now => Ok(Token { access_token: cached.access_token, expires: cached.expires }),
            Err(why) => Err(format!("{expired_at} and cannot be refreshed ({why}): {}", self.advice())),
        }
    }

    /// SSO OIDC `CreateToken` with the refresh token; the new token is written back.
    fn refresh(&self, ctx: &Context, cached: &Cached, parts: &RefreshParts, now: SystemTime) -> Result<Token, String> {
        let url = format!("{}/token", self.oidc);
        let body = json!({
            "clientId": parts.client_id,
            "clientSecret": parts.client_secret,
            "grantType": "refresh_token",
            "refreshToken": parts.refresh_token,
        });
        let request = HttpRequest::new("POST", &url, TIMEOUT)
            .header("content-type", "application/json")
            .body(body.to_string().into_bytes());
        let secrets = cached.secrets();
        let secrets: Vec<&str> = secrets.iter().map(String::as_str).collect();
        let response = ctx.http.send(&request).map_err(|e| scrub(&format!("SSO OIDC at {url}: {e}"), &secrets))?;
        if response.status != 200 {
            return Err(scrub(&format!("SSO OIDC answered {}", error_summary(&response)), &secrets));
        }
        let answer: Value =
            serde_json::from_slice(&response.body).map_err(|e| format!("SSO OIDC's answer is not JSON ({e})"))?;
        let access_token = answer
            .get("accessToken")
            .and_then(Value::as_str)
            .filter(|t| !t.is_empty())
            .ok_or("SSO OIDC's answer holds no accessToken")?
            .to_string();
        let expires_in =
            answer.get("expiresIn").and_then(Value::as_u64).ok_or("SSO OIDC's answer holds no expiresIn")?;
        let expires = now + Duration::from_secs(expires_in);
        let mut fields = cached.fields.clone();
        fields.insert("accessToken".into(), Value::String(access_token.clone()));
        fields.insert("expiresAt".into(), Value::String(utc_seconds(expires)));
        if let Some(rotated) = answer.get("refreshToken").and_then(Value::as_str).filter(|t| !t.is_empty()) {
            fields.insert("refreshToken".into(), Value::String(rotated.to_string()));
        }
        let text = Value::Object(fields).to_string();
        if let Err(e) = (ctx.write_file)(&self.cache_file, text.as_bytes()) {
            log!(
                0,
                "the SSO login ({}) was refreshed but could not be written back to {}: {e}; other programs may ask \
                 to log in again",
                self.label(),
                self.cache_file.display()
            );
        }
        log!(2, "SSO login ({}) refreshed through SSO OIDC; it expires at {}", self.label(), utc_seconds(expires));
        Ok(Token { access_token, expires })
    }
}
