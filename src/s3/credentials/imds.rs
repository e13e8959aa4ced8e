//! EC2 instance metadata, IMDSv2 only: `PUT /latest/api/token`, then the role name and its
//! credentials with that token. Short timeouts (the chain must not add seconds on a
//! laptop); `AWS_EC2_METADATA_DISABLED=true` turns it off, and
//! `AWS_EC2_METADATA_SERVICE_ENDPOINT` moves it (tests use a stand-in on 127.0.0.1).

use super::{container, Context, Issued};
use crate::s3::http::HttpRequest;
use std::time::Duration;

/// Bound on each exchange with the metadata service.
pub(super) const TIMEOUT: Duration = Duration::from_secs(1);

/// The metadata service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Endpoint {
    pub(crate) base: String,
    /// Reached as the chain's last resort (not answering then means "no credentials").
    pub(crate) fallback: bool,
}

impl Endpoint {
    /// The service, unless disabled.
    pub(crate) fn from_env(ctx: &Context, fallback: bool) -> Option<Endpoint> {
        if ctx.var("AWS_EC2_METADATA_DISABLED").is_some_and(|v| v.eq_ignore_ascii_case("true")) {
            return None;
        }
        let base = ctx.var("AWS_EC2_METADATA_SERVICE_ENDPOINT").unwrap_or_else(|| "http://169.254.169.254".into());
        Some(Endpoint { base: base.trim_end_matches('/').to_string(), fallback })
    }

    /// Token, role, credentials.
    pub(crate) fn fetch(&self, ctx: &Context) -> Result<Issued, String> {
        let token_request = HttpRequest::new("PUT", &format!("{}/latest/api/token", self.base), TIMEOUT)
            .header("x-aws-ec2-metadata-token-ttl-seconds", "21600");
        let token = ctx.http.send(&token_request).map_err(|e| format!("no answer from {}: {e}", self.base))?;
        match token.status {
            200 => {}
            403 => return Err("request forbidden: IMDS is disabled on this instance".into()),
            s => return Err(format!("the token request was answered with HTTP {s}")),
        }
        let token = token.text().trim().to_string();
        let get = |path: &str| {
            let request = HttpRequest::new("GET", &format!("{}{path}", self.base), TIMEOUT)
                .header("x-aws-ec2-metadata-token", &token);
            ctx.http.send(&request).map_err(|e| format!("no answer from {}: {e}", self.base))
        };
        let roles = get("/latest/meta-data/iam/security-credentials/")?;
        if roles.status == 404 {
            return Err("the instance has no IAM role (instance profile)".into());
        }
        if roles.status != 200 {
            return Err(format!("the role request was answered with HTTP {}", roles.status));
        }
        let text = roles.text();
        let role = text.lines().next().map(str::trim).filter(|r| !r.is_empty()).ok_or("no role name in the answer")?;
        let creds = get(&format!("/latest/meta-data/iam/security-credentials/{role}"))?;
        if creds.status != 200 {
            return Err(format!("the credentials of role {role} were answered with HTTP {}", creds.status));
        }
        container::parse(&creds.body)
    }
}
