//! The HTTP proxy to the store, chosen from the environment as curl and the AWS SDKs
//! choose it.

use crate::s3::endpoint::Endpoint;

/// The proxy for requests to `endpoint` and the variable that named it: `HTTPS_PROXY`
/// for https, `HTTP_PROXY` for http (either case), `ALL_PROXY` else, unless `NO_PROXY`
/// names the host (exact, as a domain suffix, with a leading `.` or `*.`, or `*`).
pub(super) fn proxy_for(endpoint: &Endpoint, env: &dyn Fn(&str) -> Option<String>) -> Option<(String, String)> {
    let get = |name: &str| {
        env(name).or_else(|| env(&name.to_ascii_lowercase())).filter(|v| !v.is_empty()).map(|v| (v, name.to_string()))
    };
    let scheme_var = if endpoint.to_string().starts_with("https://") { "HTTPS_PROXY" } else { "HTTP_PROXY" };
    let (url, source) = get(scheme_var).or_else(|| get("ALL_PROXY"))?;
    let host = endpoint.host().to_ascii_lowercase();
    let bypass = get("NO_PROXY").is_some_and(|(list, _)| {
        list.split(',').map(|e| e.trim().to_ascii_lowercase()).filter(|e| !e.is_empty()).any(|entry| {
            let entry = entry.split(':').next().unwrap_or("").to_string();
            let domain = entry.trim_start_matches("*.").trim_start_matches('.');
            entry == "*" || host == domain || host.ends_with(&format!(".{domain}"))
        })
    });
    (!bypass).then_some((url, source))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn proxies_as_curl_chooses_them() {
        let choose = |url: &str, env: &[(&str, &str)]| {
            let map: HashMap<String, String> = env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
            proxy_for(&Endpoint::parse(url).unwrap(), &move |k| map.get(k).cloned()).map(|(u, _)| u)
        };
        let both = [("HTTPS_PROXY", "http://s:1"), ("http_proxy", "http://p:2")];
        assert_eq!(choose("https://s3.eu-west-1.amazonaws.com", &both).as_deref(), Some("http://s:1"));
        assert_eq!(choose("http://minio:9000", &both).as_deref(), Some("http://p:2"));
        assert_eq!(choose("http://minio:9000", &[("ALL_PROXY", "http://a:3")]).as_deref(), Some("http://a:3"));
        let bypassed = |url: &str, no: &str| choose(url, &[("HTTP_PROXY", "http://p:2"), ("no_proxy", no)]).is_none();
        for no in [".corp", "*.corp", "corp", "*", "minio.corp", "x, minio.corp:9000"] {
            assert!(bypassed("http://minio.corp:9000", no), "{no}");
        }
        for no in ["minio", "*", "x, minio:9000"] {
            assert!(bypassed("http://minio:9000", no), "{no}");
        }
        for (url, no) in
            [("http://minio.corp:9000", "minio"), ("http://minio:9000", "corp"), ("http://minio:9000", ".corp")]
        {
            assert!(!bypassed(url, no), "{url} {no}");
        }
        assert_eq!(
            choose("http://notcorp:1", &[("HTTP_PROXY", "http://p:2"), ("NO_PROXY", "corp")]).as_deref(),
            Some("http://p:2")
        );
        assert_eq!(choose("http://minio:9000", &[]), None);
    }
}
