//! Blocking S3 requests over one shared `ureq` agent: GetObject, HeadObject, PutObject,
//! DeleteObject and ListObjectsV2, each signed with SigV4 and bounded by timeouts.
//!
//! No checksum headers, no `aws-chunked` bodies: plain `Content-Length` bodies with the hex
//! payload hash, which every S3-compatible store accepts.

use super::credentials::Credentials;
use super::endpoint::{Addressing, Endpoint};
use super::error::S3Error;
use super::sigv4::{self, Request, Scope, EMPTY_SHA256};
use super::xml::{self, ErrorDoc, ListPage};
use std::io::{self, Read, Write};
use std::time::{Duration, SystemTime};
use ureq::http::{HeaderMap, Response};
use ureq::{Body, SendBody};

/// How to reach one bucket.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    pub endpoint: Endpoint,
    pub addressing: Addressing,
    pub bucket: String,
    pub region: String,
    /// `None` sends unsigned requests.
    pub credentials: Option<Credentials>,
    /// Bound on a whole request, body included.
    pub timeout: Duration,
    pub connect_timeout: Duration,
    /// Connections kept open for reuse (at least the number of worker threads).
    pub pool_size: usize,
}

/// What a GET or HEAD found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectInfo {
    /// `Content-Length` of the object.
    pub size: u64,
    /// `x-amz-meta-*` values, names lower-cased without the prefix.
    pub metadata: Vec<(String, String)>,
    pub last_modified: Option<SystemTime>,
}

impl ObjectInfo {
    /// A user metadata value by (lower-case) name.
    pub fn meta(&self, name: &str) -> Option<&str> {
        self.metadata.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }
}

/// A client for one bucket; cheap to share between threads.
pub struct Client {
    agent: ureq::Agent,
    config: ClientConfig,
}

impl Client {
    /// Builds the agent: no redirects (a redirect means a wrong region or endpoint), status
    /// codes as values, an idle pool as large as the workers.
    pub fn new(config: ClientConfig) -> Client {
        let agent_config = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .max_redirects(0)
            .timeout_global(Some(config.timeout))
            .timeout_connect(Some(config.connect_timeout))
            .max_idle_connections(config.pool_size.max(4))
            .max_idle_connections_per_host(config.pool_size.max(4))
            .user_agent(concat!("gocacheprog-s3/", env!("CARGO_PKG_VERSION")))
            .build();
        let resolver = ureq::unversioned::resolver::DefaultResolver::default();
        let agent = ureq::Agent::with_parts(agent_config, super::transport::connector(), resolver);
        Client { agent, config }
    }

    /// The bucket's settings.
    pub fn config(&self) -> &ClientConfig {
        &self.config
    }

    /// Streams an object into `sink`. `Ok(None)`: no such key (404).
    pub fn get_object(&self, key: &str, sink: &mut dyn Write) -> Result<Option<ObjectInfo>, S3Error> {
        let op = format!("GET {key}");
        let response = self.send("GET", key, &[], &[], EMPTY_SHA256, None, &op)?;
        if response.status().as_u16() == 404 {
            drain(response);
            return Ok(None);
        }
        let response = self.check(response, &op)?;
        let info = object_info(response.headers());
        let mut body = response.into_body();
        let mut reader = body.as_reader();
        let mut buf = vec![0u8; 64 * 1024];
        let mut received = 0u64;
        loop {
            let n = match reader.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(S3Error::Body { op, source: e }),
            };
            sink.write_all(&buf[..n]).map_err(|e| S3Error::Sink { op: op.clone(), source: e })?;
            received += n as u64;
        }
        if received != info.size {
            return Err(S3Error::Body {
                op,
                source: io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!("received {received} bytes of {}", info.size),
                ),
            });
        }
        Ok(Some(info))
    }

    /// Object metadata without the body. `Ok(None)`: no such key.
    pub fn head_object(&self, key: &str) -> Result<Option<ObjectInfo>, S3Error> {
        let op = format!("HEAD {key}");
        let response = self.send("HEAD", key, &[], &[], EMPTY_SHA256, None, &op)?;
        if response.status().as_u16() == 404 {
            return Ok(None);
        }
        let response = self.check(response, &op)?;
        Ok(Some(object_info(response.headers())))
    }

    /// Uploads exactly `size` bytes from `body`, whose hex SHA-256 is `sha256_hex` (the
    /// store rejects a body that does not match). `metadata` names are without `x-amz-meta-`.
    pub fn put_object(
        &self,
        key: &str,
        body: &mut dyn Read,
        size: u64,
        sha256_hex: &str,
        metadata: &[(&str, &str)],
    ) -> Result<(), S3Error> {
        let op = format!("PUT {key}");
        let names: Vec<String> = metadata.iter().map(|(k, _)| format!("x-amz-meta-{k}")).collect();
        let headers: Vec<(&str, &str)> =
            names.iter().map(String::as_str).zip(metadata.iter().map(|(_, v)| *v)).collect();
        let mut exact = ExactReader { inner: body, remaining: size };
        let response = self.send("PUT", key, &[], &headers, sha256_hex, Some((&mut exact, size)), &op)?;
        drain(self.check(response, &op)?);
        Ok(())
    }

    /// Deletes an object (success also when it did not exist).
    pub fn delete_object(&self, key: &str) -> Result<(), S3Error> {
        let op = format!("DELETE {key}");
        let response = self.send("DELETE", key, &[], &[], EMPTY_SHA256, None, &op)?;
        drain(self.check(response, &op)?);
        Ok(())
    }

    /// One page of keys under `prefix`, of at most `max_keys` (the store's default, 1000,
    /// when `None`). Keys come back unencoded: `encoding-type=url` is not sent because
    /// some stores (s3s-fs) echo it without encoding.
    pub fn list_objects(
        &self,
        prefix: &str,
        continuation: Option<&str>,
        max_keys: Option<u32>,
    ) -> Result<ListPage, S3Error> {
        let op = format!("LIST {prefix}");
        let max_keys = max_keys.map(|n| n.to_string());
        let mut query = vec![("list-type", "2"), ("prefix", prefix)];
        if let Some(token) = continuation {
            query.push(("continuation-token", token));
        }
        if let Some(n) = &max_keys {
            query.push(("max-keys", n));
        }
        let response = self.send("GET", "", &query, &[], EMPTY_SHA256, None, &op)?;
        let response = self.check(response, &op)?;
        let text = response
            .into_body()
            .with_config()
            .limit(64 * 1024 * 1024)
            .read_to_string()
            .map_err(|e| S3Error::Body { op: op.clone(), source: io::Error::other(e) })?;
        xml::parse_list(&text).map_err(|e| S3Error::Body { op, source: io::Error::other(e) })
    }

    /// Signs and sends one request; `key` empty addresses the bucket itself.
    #[allow(clippy::too_many_arguments)]
    fn send(
        &self,
        method: &str,
        key: &str,
        query: &[(&str, &str)],
        extra_headers: &[(&str, &str)],
        payload_hash: &str,
        body: Option<(&mut dyn Read, u64)>,
        op: &str,
    ) -> Result<Response<Body>, S3Error> {
        let c = &self.config;
        let target = c.endpoint.target(c.addressing, &c.bucket, key);
        let query_string = sigv4::canonical_query(query);
        let url = if query_string.is_empty() { target.url.clone() } else { format!("{}?{query_string}", target.url) };
        let mut headers: Vec<(&str, String)> = extra_headers.iter().map(|(k, v)| (*k, v.to_string())).collect();
        let mut debug_strings = None;
        if let Some(creds) = &c.credentials {
            headers.push(("x-amz-content-sha256", payload_hash.to_string()));
            let mut to_sign: Vec<(&str, &str)> = vec![("host", target.host.as_str())];
            to_sign.extend(headers.iter().map(|(k, v)| (*k, v.as_str())));
            let request = Request { method, path: &target.path, query, headers: &to_sign, payload_hash };
            let scope = Scope { region: &c.region, service: "s3" };
            let signed = sigv4::sign_headers(&request, creds, &scope, SystemTime::now());
            headers.extend(signed.headers.iter().map(|(k, v)| (*k, v.clone())));
            debug_strings = Some((signed.canonical_request.clone(), signed.string_to_sign.clone()));
        }
        let mut builder = ureq::http::Request::builder().method(method).uri(&url);
        for (name, value) in &headers {
            builder = builder.header(*name, value.as_str());
        }
        let result = match body {
            Some((reader, size)) => {
                let request = builder
                    .header("content-length", size.to_string())
                    .body(SendBody::from_reader(reader))
                    .map_err(|e| S3Error::Request { op: op.to_string(), message: e.to_string() })?;
                self.agent.run(request)
            }
            None => {
                let request =
                    builder.body(()).map_err(|e| S3Error::Request { op: op.to_string(), message: e.to_string() })?;
                self.agent.run(request)
            }
        };
        let response = result.map_err(|e| S3Error::transport(op, e))?;
        if let Some((canonical, string_to_sign)) = debug_strings {
            if response.status().as_u16() == 403 {
                return Ok(with_debug(response, canonical, string_to_sign));
            }
        }
        Ok(response)
    }

    /// Turns a non-success status into an error, reading the error body to its end.
    fn check(&self, response: Response<Body>, op: &str) -> Result<Response<Body>, S3Error> {
        let status = response.status().as_u16();
        if (200..300).contains(&status) {
            return Ok(response);
        }
        let ours = response.extensions().get::<OurSigningStrings>().cloned();
        let region_header = header(response.headers(), "x-amz-bucket-region");
        let text = response.into_body().with_config().limit(1024 * 1024).read_to_string().unwrap_or_default();
        let mut doc = xml::parse_error(&text);
        if doc.region.is_none() {
            doc.region = region_header;
        }
        if doc.code.as_deref() == Some("SignatureDoesNotMatch") && crate::log::enabled(2) {
            if let Some(ours) = ours {
                let token = self.config.credentials.as_ref().and_then(|c| c.session_token.as_deref());
                log!(2, "{}", signature_mismatch_report(op, &doc, &ours.0, &ours.1, token));
            }
        }
        Err(S3Error::Status { op: op.to_string(), status, doc: Box::new(doc) })
    }
}

/// Both sides of a SignatureDoesNotMatch, for `-vv`. The session token is a credential and
/// appears in both canonical requests, so it is redacted.
fn signature_mismatch_report(
    op: &str,
    doc: &ErrorDoc,
    canonical: &str,
    string_to_sign: &str,
    token: Option<&str>,
) -> String {
    let text = format!(
        "{op}: SignatureDoesNotMatch\n-- server canonical request:\n{}\n-- our canonical request:\n{canonical}\n\
         -- server string to sign:\n{}\n-- our string to sign:\n{string_to_sign}",
        doc.canonical_request.as_deref().unwrap_or("(not sent)"),
        doc.string_to_sign.as_deref().unwrap_or("(not sent)"),
    );
    sigv4::redact(&text, token)
}

/// Our canonical request and string to sign, kept on a 403 response for the debug log.
#[derive(Clone)]
struct OurSigningStrings(String, String);

fn with_debug(mut response: Response<Body>, canonical: String, string_to_sign: String) -> Response<Body> {
    response.extensions_mut().insert(OurSigningStrings(canonical, string_to_sign));
    response
}

/// Reads a response body to its end so the connection can be reused.
fn drain(response: Response<Body>) {
    let _ = io::copy(&mut response.into_body().as_reader(), &mut io::sink());
}

fn header(headers: &HeaderMap, name: &str) -> Option<String> {
    headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_string)
}

fn object_info(headers: &HeaderMap) -> ObjectInfo {
    let size = header(headers, "content-length").and_then(|v| v.trim().parse().ok()).unwrap_or(0);
    let metadata = headers
        .iter()
        .filter_map(|(name, value)| {
            let name = name.as_str().strip_prefix("x-amz-meta-")?;
            Some((name.to_ascii_lowercase(), value.to_str().ok()?.to_string()))
        })
        .collect();
    let last_modified = header(headers, "last-modified").and_then(|v| httpdate::parse_http_date(&v).ok());
    ObjectInfo { size, metadata, last_modified }
}

/// Yields exactly `remaining` bytes or fails: a body that ends early must be an error, not
/// a short read (ureq would otherwise wait for bytes that never come).
struct ExactReader<'a> {
    inner: &'a mut dyn Read,
    remaining: u64,
}

impl Read for ExactReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.remaining == 0 {
            return Ok(0);
        }
        let want = buf.len().min(usize::try_from(self.remaining).unwrap_or(usize::MAX));
        let n = self.inner.read(&mut buf[..want])?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("upload body ended {} bytes early", self.remaining),
            ));
        }
        self.remaining -= n as u64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_reader_stops_at_size_and_fails_when_short() {
        let mut data: &[u8] = b"0123456789";
        let mut r = ExactReader { inner: &mut data, remaining: 4 };
        let mut out = Vec::new();
        r.read_to_end(&mut out).unwrap();
        assert_eq!(out, b"0123");
        let mut data: &[u8] = b"01";
        let mut r = ExactReader { inner: &mut data, remaining: 4 };
        let err = r.read_to_end(&mut Vec::new()).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
    }

    #[test]
    fn signature_report_shows_both_sides_without_the_token() {
        let doc = ErrorDoc {
            canonical_request: Some("GET\n/b/k\n\nx-amz-security-token:TOKEN123\n".into()),
            string_to_sign: Some("AWS4-HMAC-SHA256\nserver".into()),
            ..Default::default()
        };
        let report = signature_mismatch_report(
            "GET k",
            &doc,
            "GET\n/b/k\n\nx-amz-security-token:TOKEN123\nours",
            "AWS4-HMAC-SHA256\nours",
            Some("TOKEN123"),
        );
        assert!(!report.contains("TOKEN123"), "{report}");
        assert!(report.contains("-- server canonical request:\nGET\n/b/k"));
        assert!(report.contains("x-amz-security-token:<redacted>\nours"));
        assert!(report.contains("-- our string to sign:\nAWS4-HMAC-SHA256\nours"));
    }

    #[test]
    fn object_info_reads_metadata_and_dates() {
        let mut headers = HeaderMap::new();
        headers.insert("content-length", "199".parse().unwrap());
        headers.insert("x-amz-meta-outputid", "ab".repeat(32).parse().unwrap());
        headers.insert("X-Amz-Meta-PutTime", "1764076525848531745".parse().unwrap());
        headers.insert("last-modified", "Wed, 25 Nov 2026 13:15:25 GMT".parse().unwrap());
        let info = object_info(&headers);
        assert_eq!(info.size, 199);
        assert_eq!(info.meta("outputid"), Some("ab".repeat(32).as_str()));
        assert_eq!(info.meta("puttime"), Some("1764076525848531745"));
        assert_eq!(info.last_modified, httpdate::parse_http_date("Wed, 25 Nov 2026 13:15:25 GMT").ok());
    }
}
