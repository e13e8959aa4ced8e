//! Where requests go: the endpoint URL, path-style or virtual-hosted addressing, and the
//! exact URL, `Host` header and canonical path of each request.

use super::sigv4::uri_encode;
use std::fmt;

/// How the bucket appears in requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Addressing {
    /// `https://host/bucket/key`: what self-hosted stores need.
    Path,
    /// `https://bucket.host/key`: AWS's preferred form.
    VirtualHosted,
}

/// A parsed `http(s)://host[:port][/prefix]` endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub(crate) https: bool,
    /// Host name or address (IPv6 in brackets), lower-cased.
    pub(crate) host: String,
    /// Port, only when it is not the scheme's default.
    pub(crate) port: Option<u16>,
    /// Path prefix without a trailing slash: "" or "/something".
    pub(crate) path_prefix: String,
}

/// The URL to send, the `Host` header value, and the canonical (signed) path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Target {
    pub(crate) url: String,
    pub(crate) host: String,
    pub(crate) path: String,
}

impl Endpoint {
    /// Parses an endpoint URL such as `http://127.0.0.1:3900` or `https://minio.corp/s3`.
    pub fn parse(url: &str) -> Result<Endpoint, String> {
        let (https, rest) = if let Some(rest) = url.strip_prefix("https://") {
            (true, rest)
        } else if let Some(rest) = url.strip_prefix("http://") {
            (false, rest)
        } else {
            return Err(format!("{url:?} must start with http:// or https://"));
        };
        if rest.contains(['?', '#']) {
            return Err(format!("{url:?} must not have a query or fragment"));
        }
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, ""),
        };
        if authority.contains('@') {
            return Err(format!("{url:?} must not contain user information; use credentials instead"));
        }
        let (host, port) = split_host_port(authority).ok_or_else(|| format!("{url:?} has no valid host[:port]"))?;
        let default_port = if https { 443 } else { 80 };
        Ok(Endpoint {
            https,
            host: host.to_ascii_lowercase(),
            port: port.filter(|&p| p != default_port),
            path_prefix: path.trim_end_matches('/').to_string(),
        })
    }

    /// The host name (or address).
    pub(crate) fn host(&self) -> &str {
        &self.host
    }

    /// Whether this is an AWS S3 endpoint (`*.amazonaws.com`).
    pub(crate) fn is_aws(&self) -> bool {
        self.host.ends_with(".amazonaws.com")
    }

    /// The AWS S3 endpoint of a region.
    pub(crate) fn aws(region: &str) -> Endpoint {
        Endpoint { https: true, host: format!("s3.{region}.amazonaws.com"), port: None, path_prefix: String::new() }
    }

    /// The request target for `key` in `bucket` (`key` empty: the bucket itself).
    pub(crate) fn target(&self, addressing: Addressing, bucket: &str, key: &str) -> Target {
        let encoded_key = uri_encode(key, false);
        let (host, path) = match addressing {
            Addressing::Path => {
                let mut path = format!("{}/{}", self.path_prefix, uri_encode(bucket, true));
                if !key.is_empty() {
                    path.push('/');
                    path.push_str(&encoded_key);
                }
                (self.authority(&self.host), path)
            }
            Addressing::VirtualHosted => {
                (self.authority(&format!("{bucket}.{}", self.host)), format!("{}/{}", self.path_prefix, encoded_key))
            }
        };
        let scheme = if self.https { "https" } else { "http" };
        Target { url: format!("{scheme}://{host}{path}"), host, path }
    }

    fn authority(&self, host: &str) -> String {
        match self.port {
            Some(p) => format!("{host}:{p}"),
            None => host.to_string(),
        }
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = if self.https { "https" } else { "http" };
        write!(f, "{scheme}://{}{}", self.authority(&self.host), self.path_prefix)
    }
}

fn split_host_port(authority: &str) -> Option<(&str, Option<u16>)> {
    if authority.is_empty() {
        return None;
    }
    if authority.starts_with('[') {
        let end = authority.find(']')?;
        let host = &authority[..=end];
        return match &authority[end + 1..] {
            "" => Some((host, None)),
            rest => Some((host, Some(rest.strip_prefix(':')?.parse().ok()?))),
        };
    }
    match authority.rsplit_once(':') {
        Some((host, port)) if !host.is_empty() && !host.contains(':') => Some((host, Some(port.parse().ok()?))),
        Some(_) => None,
        None => Some((authority, None)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_endpoints() {
        let e = Endpoint::parse("http://127.0.0.1:3900").unwrap();
        assert_eq!((e.https, e.host.as_str(), e.port, e.path_prefix.as_str()), (false, "127.0.0.1", Some(3900), ""));
        let e = Endpoint::parse("https://Minio.Corp:443/s3/").unwrap();
        assert_eq!((e.https, e.host.as_str(), e.port, e.path_prefix.as_str()), (true, "minio.corp", None, "/s3"));
        let e = Endpoint::parse("http://[::1]:9000").unwrap();
        assert_eq!((e.host.as_str(), e.port), ("[::1]", Some(9000)));
        for bad in ["127.0.0.1:3900", "ftp://x", "http://", "http://h:port", "http://u:p@h", "http://h/?x=1"] {
            assert!(Endpoint::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn path_style_targets() {
        let e = Endpoint::parse("http://127.0.0.1:3900/prefix").unwrap();
        let t = e.target(Addressing::Path, "cache", "go-cache/ab cd+");
        assert_eq!(t.host, "127.0.0.1:3900");
        assert_eq!(t.path, "/prefix/cache/go-cache/ab%20cd%2B");
        assert_eq!(t.url, "http://127.0.0.1:3900/prefix/cache/go-cache/ab%20cd%2B");
        assert_eq!(e.target(Addressing::Path, "cache", "").path, "/prefix/cache");
    }

    #[test]
    fn virtual_hosted_targets() {
        let e = Endpoint::aws("eu-west-1");
        let t = e.target(Addressing::VirtualHosted, "my-bucket", "go-cache/0a");
        assert_eq!(t.url, "https://my-bucket.s3.eu-west-1.amazonaws.com/go-cache/0a");
        assert_eq!(t.host, "my-bucket.s3.eu-west-1.amazonaws.com");
        assert_eq!(t.path, "/go-cache/0a");
        assert_eq!(e.target(Addressing::VirtualHosted, "my-bucket", "").path, "/");
    }
}
