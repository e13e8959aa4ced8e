//! Container credentials (ECS task roles, EKS Pod Identity):
//! `AWS_CONTAINER_CREDENTIALS_RELATIVE_URI` (on `169.254.170.2`) or `_FULL_URI` (https, or
//! http only to loopback, `169.254.170.2`, `169.254.170.23` or `[fd00:ec2::23]`, the SDKs'
//! rule), with `Authorization` from `AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE` (read on every
//! refresh) or `AWS_CONTAINER_AUTHORIZATION_TOKEN`; JSON `{AccessKeyId, SecretAccessKey,
//! Token, Expiration}`.

use super::{Context, Credentials, Issued};
use crate::s3::http::HttpRequest;
use serde_json::Value;
use std::path::PathBuf;
use std::time::Duration;

const TIMEOUT: Duration = Duration::from_secs(5);

/// Where the credentials are served, and how to prove who asks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Endpoint {
    pub(crate) url: String,
    token_file: Option<PathBuf>,
    token: Option<String>,
}

impl Endpoint {
    /// The endpoint the environment names (`Ok(None)`: none), or why it may not be used.
    pub(crate) fn from_env(ctx: &Context) -> Result<Option<Endpoint>, String> {
        let url = if let Some(relative) = ctx.var("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI") {
            format!("http://169.254.170.2{relative}")
        } else if let Some(full) = ctx.var("AWS_CONTAINER_CREDENTIALS_FULL_URI") {
            allowed(&full)?;
            full
        } else {
            return Ok(None);
        };
        Ok(Some(Endpoint {
            url,
            token_file: ctx.var("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE").map(PathBuf::from),
            token: ctx.var("AWS_CONTAINER_AUTHORIZATION_TOKEN"),
        }))
    }

    /// Asks the endpoint.
    pub(crate) fn fetch(&self, ctx: &Context) -> Result<Issued, String> {
        let mut request = HttpRequest::new("GET", &self.url, TIMEOUT).header("accept", "application/json");
        let token = match &self.token_file {
            Some(file) => Some(
                ctx.text(file)
                    .map(|t| t.trim().to_string())
                    .ok_or_else(|| format!("cannot read AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE {}", file.display()))?,
            ),
            None => self.token.clone(),
        };
        if let Some(token) = token {
            request = request.header("authorization", &token);
        }
        let response = ctx.http.send(&request).map_err(|e| format!("{}: {e}", self.url))?;
        if response.status != 200 {
            return Err(format!("{}: HTTP {}", self.url, response.status));
        }
        parse(&response.body)
    }
}

/// The SDKs' rule for a full URI: https anywhere, http only to the container agents'
/// addresses or loopback.
fn allowed(uri: &str) -> Result<(), String> {
    let (scheme, rest) = uri.split_once("://").ok_or_else(|| format!("{uri:?}: URI did not specify a host"))?;
    let authority = rest.split(['/', '?']).next().unwrap_or("");
    if authority.is_empty() {
        return Err(format!("{uri:?}: URI did not specify a host"));
    }
    if scheme == "https" {
        return Ok(());
    }
    let host = match authority.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or(""),
        None => authority.rsplit_once(':').map_or(authority, |(h, _)| h),
    };
    let ok = host == "localhost"
        || host == "169.254.170.2"
        || host == "169.254.170.23"
        || host.parse::<std::net::IpAddr>().is_ok_and(|ip| {
            ip.is_loopback() || ip == "fd00:ec2::23".parse::<std::net::IpAddr>().expect("a literal address")
        });
    if scheme == "http" && ok {
        Ok(())
    } else {
        Err(format!(
            "AWS_CONTAINER_CREDENTIALS_FULL_URI {uri:?} is not allowed: http only to loopback, 169.254.170.2, \
             169.254.170.23 or [fd00:ec2::23]; use https"
        ))
    }
}

/// Parses the endpoint's JSON (also the instance metadata's).
pub(super) fn parse(body: &[u8]) -> Result<Issued, String> {
    let v: Value = serde_json::from_slice(body).map_err(|e| format!("the answer is not JSON ({e})"))?;
    let field = |k: &str| v.get(k).and_then(Value::as_str).map(str::to_string);
    let (Some(access_key_id), Some(secret_access_key)) = (field("AccessKeyId"), field("SecretAccessKey")) else {
        return Err(format!(
            "the answer holds no credentials: {}",
            field("Message").or_else(|| field("Code")).unwrap_or_default()
        ));
    };
    Ok(Issued {
        credentials: Credentials {
            access_key_id,
            secret_access_key,
            session_token: field("Token").filter(|t| !t.is_empty()),
        },
        expires: field("Expiration").and_then(|e| crate::calendar::parse_rfc3339(&e)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::s3::credentials::tests::context;

    /// The SDKs' own cases of which URIs are allowed (tests/data/credentials).
    #[test]
    fn allowed_uris_as_the_sdks_decide() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/credentials/ecs-tests.json");
        let cases: Value = serde_json::from_slice(&std::fs::read(&path).expect("ecs-tests.json")).unwrap();
        let cases = cases["tests"].as_array().unwrap();
        assert!(cases.len() >= 10);
        for case in cases {
            let env: Vec<(String, String)> = case["env"]
                .as_object()
                .unwrap()
                .iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string()))
                .collect();
            let ctx = context(&env, None, Vec::new());
            let got = Endpoint::from_env(&ctx);
            match (&case["result"]["Ok"], got) {
                (Value::String(url), Ok(Some(e))) => assert_eq!(&e.url, url, "{}", case["docs"]),
                (Value::Null, Err(_) | Ok(None)) => {}
                (expected, got) => panic!("{}: expected {expected}, got {got:?}", case["docs"]),
            }
        }
        assert!(allowed("http://evil.example/creds").is_err());
        assert!(allowed("http://127.0.0.5:99/creds").is_ok());
    }
}
