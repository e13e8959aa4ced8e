//! Endpoints of the AWS services credential providers talk to (SSO, SSO OIDC, Sign-In), as
//! the SDKs resolve service-specific endpoints: `AWS_ENDPOINT_URL_<SERVICE ID>`,
//! `AWS_ENDPOINT_URL`, the profile's `[services NAME]` section (`<service_id>` then
//! `endpoint_url`), the profile's `endpoint_url`. Service IDs as the SDKs' models name them
//! ("SSO OIDC": `AWS_ENDPOINT_URL_SSO_OIDC`, `sso_oidc`).

use super::profile::{Files, Properties};
use super::Context;
use crate::s3::endpoint::Endpoint;

/// The endpoint configured for the AWS service `id` (its SDK service ID), in the SDKs'
/// order for service-specific endpoints (`None`: the default).
pub(super) fn configured(ctx: &Context, files: &Files, props: &Properties, id: &str) -> Result<Option<String>, String> {
    let env_name = format!("AWS_ENDPOINT_URL_{}", id.to_ascii_uppercase().replace(' ', "_"));
    let key = format!("{}.endpoint_url", id.to_ascii_lowercase().replace(' ', "_"));
    let from_services = props.get("services").and_then(|s| Some((s, files.services(s)?.get(&key)?)));
    let found = ctx
        .var(&env_name)
        .map(|url| (url, env_name.clone()))
        .or_else(|| ctx.var("AWS_ENDPOINT_URL").map(|url| (url, "AWS_ENDPOINT_URL".to_string())))
        .or_else(|| from_services.map(|(s, url)| (url.clone(), format!("[services {s}] {key}"))))
        .or_else(|| props.get("endpoint_url").map(|url| (url.clone(), "the profile's endpoint_url".to_string())));
    match found {
        None => Ok(None),
        Some((url, origin)) => {
            Endpoint::parse(&url).map_err(|e| format!("{origin} ({id} endpoint): {e}"))?;
            Ok(Some(url.trim_end_matches('/').to_string()))
        }
    }
}
