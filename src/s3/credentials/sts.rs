//! STS: `AssumeRoleWithWebIdentity` (unsigned; the web identity token is the proof) and
//! `AssumeRole` (signed with the source credentials). The endpoint is
//! `AWS_ENDPOINT_URL_STS`, the profile's `sts` endpoint, `AWS_ENDPOINT_URL`, else the
//! regional `https://sts.<region>.amazonaws.com/`.

use super::{Context, Credentials, Issued};
use crate::s3::endpoint::{Addressing, Endpoint};
use crate::s3::http::HttpRequest;
use crate::s3::sigv4::{self, Request, Scope};
use crate::s3::xml;
use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Bound on one STS exchange.
const STS_TIMEOUT: Duration = Duration::from_secs(10);

/// A role to take with a web identity token from a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct WebIdentity {
    pub(crate) role_arn: String,
    pub(crate) session_name: String,
    pub(crate) token_file: PathBuf,
    pub(crate) region: String,
    pub(crate) endpoint: Option<String>,
}

/// A role to take with other credentials.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct AssumeRole {
    pub(crate) role_arn: String,
    pub(crate) session_name: String,
    pub(crate) external_id: Option<String>,
    pub(crate) region: String,
    pub(crate) endpoint: Option<String>,
}

/// `gocacheprog-s3-<unix seconds>`, as the SDKs make one up when none is configured.
pub(super) fn default_session_name() -> String {
    format!("gocacheprog-s3-{}", SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs()))
}

impl WebIdentity {
    /// From the environment's (or a profile's) settings.
    pub(crate) fn new(
        ctx: &Context,
        role_arn: String,
        session_name: Option<String>,
        token_file: PathBuf,
        endpoint: Option<String>,
    ) -> WebIdentity {
        WebIdentity {
            role_arn,
            session_name: session_name.unwrap_or_else(default_session_name),
            token_file,
            region: region(ctx),
            endpoint: endpoint.or_else(|| ctx.var("AWS_ENDPOINT_URL_STS")),
        }
    }

    /// Reads the token (again: it rotates) and asks STS for the role's credentials.
    pub(crate) fn fetch(&self, ctx: &Context) -> Result<Issued, String> {
        let token = ctx
            .text(&self.token_file)
            .map(|t| t.trim().to_string())
            .filter(|t| !t.is_empty())
            .ok_or_else(|| format!("cannot read the web identity token file {}", self.token_file.display()))?;
        let form = form(&[
            ("Action", "AssumeRoleWithWebIdentity"),
            ("Version", "2011-06-15"),
            ("RoleArn", &self.role_arn),
            ("RoleSessionName", &self.session_name),
            ("WebIdentityToken", &token),
        ]);
        let (url, _) = target(ctx, self.endpoint.as_deref(), &self.region)?;
        let request = HttpRequest::new("POST", &url, STS_TIMEOUT)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(form.into_bytes());
        answer(ctx, &request, "AssumeRoleWithWebIdentity", &self.role_arn)
    }
}

impl AssumeRole {
    /// Asks STS for the role's credentials, signing with `with`.
    pub(crate) fn fetch(&self, ctx: &Context, with: &Credentials) -> Result<Issued, String> {
        let mut fields = vec![
            ("Action", "AssumeRole"),
            ("Version", "2011-06-15"),
            ("RoleArn", self.role_arn.as_str()),
            ("RoleSessionName", self.session_name.as_str()),
        ];
        if let Some(id) = &self.external_id {
            fields.push(("ExternalId", id));
        }
        let body = form(&fields);
        let (url, host) = target(ctx, self.endpoint.as_deref(), &self.region)?;
        let content_type = "application/x-www-form-urlencoded; charset=utf-8";
        let payload_hash = sigv4::sha256_hex(body.as_bytes());
        let headers = [("host", host.as_str()), ("content-type", content_type)];
        let request = Request { method: "POST", path: "/", query: &[], headers: &headers, payload_hash: &payload_hash };
        let scope = Scope { region: &self.region, service: "sts" };
        let signed = sigv4::sign_headers(&request, with, &scope, (ctx.now)());
        let mut http = HttpRequest::new("POST", &url, STS_TIMEOUT).header("content-type", content_type);
        for (name, value) in &signed.headers {
            http = http.header(name, value);
        }
        answer(ctx, &http.body(body.into_bytes()), "AssumeRole", &self.role_arn)
    }
}

fn region(ctx: &Context) -> String {
    ctx.var("AWS_REGION").or_else(|| ctx.var("AWS_DEFAULT_REGION")).unwrap_or_else(|| "us-east-1".into())
}

/// The URL to POST to and its `host`.
fn target(ctx: &Context, endpoint: Option<&str>, region: &str) -> Result<(String, String), String> {
    let url = endpoint
        .map(str::to_string)
        .or_else(|| ctx.var("AWS_ENDPOINT_URL"))
        .unwrap_or_else(|| format!("https://sts.{region}.amazonaws.com"));
    let endpoint = Endpoint::parse(&url).map_err(|e| format!("STS endpoint: {e}"))?;
    let t = endpoint.target(Addressing::Path, "", "");
    Ok((t.url, t.host))
}

fn form(fields: &[(&str, &str)]) -> String {
    let pairs: Vec<String> =
        fields.iter().map(|(k, v)| format!("{}={}", sigv4::uri_encode(k, true), sigv4::uri_encode(v, true))).collect();
    pairs.join("&")
}

/// Sends an STS request and reads its credentials.
fn answer(ctx: &Context, request: &HttpRequest, action: &str, role: &str) -> Result<Issued, String> {
    let response = ctx.http.send(request).map_err(|e| format!("STS {action} at {}: {e}", request.url))?;
    let parsed = xml::parse_sts(&response.text());
    match parsed {
        Ok(c) if response.status == 200 => Ok(Issued {
            credentials: Credentials {
                access_key_id: c.access_key_id,
                secret_access_key: c.secret_access_key,
                session_token: Some(c.session_token).filter(|t| !t.is_empty()),
            },
            expires: crate::calendar::parse_rfc3339(&c.expiration),
        }),
        Ok(_) => Err(format!("STS {action} for {role}: HTTP {}", response.status)),
        Err(e) => Err(format!("STS {action} for {role} refused (HTTP {}): {e}", response.status)),
    }
}
