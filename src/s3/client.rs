//! The S3 operations a cache needs, over one shared `ureq` agent: GetObject, HeadObject,
//! PutObject, CopyObject (refresh), DeleteObject, DeleteObjects and ListObjectsV2. Each
//! says what it sends and what it accepts; signing, retries, bounds and what a refusal
//! teaches are the one send's (`request`).
//!
//! No checksum headers, no `aws-chunked` bodies: plain `Content-Length` bodies with the hex
//! payload hash, which every S3-compatible store accepts.

use super::credentials::{CredentialSource, Credentials};
use super::endpoint::{Addressing, Endpoint};
use super::error::S3Error;
use super::request::{header, Access, Payload, Request};
use super::retry::Retrier;
use super::sigv4::{self, EMPTY_SHA256};
use super::xml::{self, DeleteFailure, ListPage, ListedObject};
use std::io::{self, Read};
use std::path::Path;
use std::sync::atomic::AtomicI64;
use std::sync::{Arc, OnceLock, RwLock};
use std::time::{Duration, Instant, SystemTime};
use ureq::http::{HeaderMap, Response};
use ureq::Body;

/// How to reach one bucket.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// The store's base URL.
    pub endpoint: Endpoint,
    /// Whether the bucket goes in the host name or the path.
    pub addressing: Addressing,
    /// The bucket's name.
    pub bucket: String,
    /// The region requests are signed for (corrected if the store names another).
    pub region: String,
    /// `None` sends unsigned requests (`--no-sign-request`); a source that finds no
    /// credentials does too.
    pub credentials: Option<Arc<CredentialSource>>,
    /// Bound on a whole request, body included, unless the call's [`Bounds`] say otherwise.
    pub timeout: Duration,
    /// Bound on opening a connection (TCP and TLS).
    pub connect_timeout: Duration,
    /// Bound on each read and write: a store that stops sending (or taking) bytes for
    /// this long fails the request, whatever time is left.
    pub stall_timeout: Duration,
    /// Connections kept open for reuse (at least the number of worker threads).
    pub pool_size: usize,
    /// Trust these CA certificates (DER) instead of the built-in Mozilla roots
    /// (`--ca-bundle`, `AWS_CA_BUNDLE`).
    pub ca_certificates: Option<Vec<Vec<u8>>>,
    /// Reach the store through this HTTP proxy (CONNECT), as chosen from the environment.
    pub proxy: Option<String>,
    /// Extra headers of every upload (server-side encryption: `--sse`, `--sse-kms-key-id`).
    pub upload_headers: Vec<(String, String)>,
}

/// Time and size bounds of one call.
#[derive(Debug, Clone, Copy)]
pub struct Bounds {
    /// The call fails once this instant has passed (`None`: the client's `timeout`).
    pub deadline: Option<Instant>,
    /// The most bytes a GET may deliver; a larger object is refused before its body is read.
    pub max_body: u64,
}

impl Bounds {
    /// The client's default time bound and no size bound.
    pub const DEFAULT: Bounds = Bounds { deadline: None, max_body: u64::MAX };

    /// A deadline `after` from now, no size bound.
    pub fn within(after: Duration) -> Bounds {
        Bounds { deadline: Some(Instant::now() + after), ..Bounds::DEFAULT }
    }
}

/// What a GET or HEAD found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectInfo {
    /// `Content-Length` of the object, when the store sent one (chunked answers do not).
    pub size: Option<u64>,
    /// `x-amz-meta-*` values, names lower-cased without the prefix.
    pub metadata: Vec<(String, String)>,
    /// `Last-Modified`: the upload, or the last refresh (a copy onto itself).
    pub last_modified: Option<SystemTime>,
    /// The `ETag`, as sent (quotes included), to make a later copy conditional on it.
    pub etag: Option<String>,
}

impl ObjectInfo {
    /// A user metadata value by (lower-case) name.
    pub fn meta(&self, name: &str) -> Option<&str> {
        self.metadata.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }
}

/// What an upload sends.
#[derive(Debug, Clone, Copy)]
pub enum Upload<'a> {
    /// These bytes.
    Bytes(&'a [u8]),
    /// The first `size` bytes of a file (read anew for each attempt).
    File {
        /// The file to send.
        path: &'a Path,
        /// How many of its bytes; a shorter file fails the upload.
        size: u64,
    },
}

/// Whether a retry of a request on one side of the bucket may start.
pub(crate) type RetryGate = Box<dyn Fn(Access) -> bool + Send + Sync>;

/// A client for one bucket; cheap to share between threads.
pub struct Client {
    pub(super) agent: ureq::Agent,
    pub(super) config: ClientConfig,
    /// The store's clock minus ours, in milliseconds, once an answer showed them apart.
    pub(super) clock_offset_ms: AtomicI64,
    /// Retry policy and budget, shared by every request of this client.
    pub(super) retrier: Retrier,
    /// Closes retries of a side (the remote tier's breaker); unset: always open.
    pub(super) gate: OnceLock<RetryGate>,
    /// The bucket's region (and, on AWS, endpoint), once an answer named it.
    pub(super) learned_region: RwLock<Option<(Endpoint, String)>>,
}

impl Client {
    /// Builds the agent: no redirects (a redirect means a wrong region or endpoint), status
    /// codes as values, an idle pool as large as the workers.
    pub fn new(config: ClientConfig) -> Client {
        let tls = match &config.ca_certificates {
            Some(ders) => {
                let certs: Vec<ureq::tls::Certificate<'static>> =
                    ders.iter().map(|d| ureq::tls::Certificate::from_der(d).to_owned()).collect();
                ureq::tls::TlsConfig::builder().root_certs(ureq::tls::RootCerts::from(certs)).build()
            }
            None => ureq::tls::TlsConfig::default(),
        };
        let proxy = config.proxy.as_deref().and_then(|p| match ureq::Proxy::new(p) {
            Ok(proxy) => Some(proxy),
            Err(e) => {
                log!(0, "ignoring the proxy {}: {e}", crate::log::without_userinfo(p));
                None
            }
        });
        let agent_config = ureq::Agent::config_builder()
            .tls_config(tls)
            .proxy(proxy)
            .http_status_as_error(false)
            .max_redirects(0)
            .timeout_global(Some(config.timeout))
            .timeout_connect(Some(config.connect_timeout))
            .max_idle_connections(config.pool_size.max(4))
            .max_idle_connections_per_host(config.pool_size.max(4))
            // 128 KB each by default, per connection: with 64 connections that alone was
            // 16 MB of RSS. Reads and writes of 32/16 KB cost no measurable time.
            .input_buffer_size(32 * 1024)
            .output_buffer_size(16 * 1024)
            .user_agent(concat!("gocacheprog-s3/", env!("CARGO_PKG_VERSION")))
            .build();
        let resolver = super::transport::CachingResolver::default();
        let agent = ureq::Agent::with_parts(agent_config, super::transport::connector(), resolver);
        Client {
            agent,
            config,
            clock_offset_ms: AtomicI64::new(0),
            retrier: Retrier::default(),
            gate: OnceLock::new(),
            learned_region: RwLock::new(None),
        }
    }

    /// From now on, a retry of a request on a side `gate` calls closed does not start (set
    /// once; later calls are ignored).
    pub(crate) fn set_retry_gate(&self, gate: RetryGate) {
        let _ = self.gate.set(gate);
    }

    /// Retries made so far, and retries not made because the budget was spent.
    pub(crate) fn retry_counts(&self) -> (u64, u64) {
        (self.retrier.retries(), self.retrier.exhausted())
    }

    /// The bucket's settings.
    pub fn config(&self) -> &ClientConfig {
        &self.config
    }

    /// An object's body and metadata, in memory (for small objects: manifests, probes).
    /// `Ok(None)`: no such key (404 `NoSuchKey`; any other 404, such as `NoSuchBucket`,
    /// is an error).
    pub fn get_object(&self, key: &str, body: &mut Vec<u8>, bounds: Bounds) -> Result<Option<ObjectInfo>, S3Error> {
        self.get_object_with(key, bounds, |info, reader| {
            body.clear();
            reader.read_to_end(body).map_err(|e| reader.failure(e))?;
            Ok(ObjectInfo { size: Some(reader.received), ..info.clone() })
        })
    }

    /// GETs an object and hands its metadata and body to `read`, whose result it returns;
    /// `read` runs again for each attempt. `Ok(None)`: no such key, as for
    /// [`Client::get_object`]. The body yields exactly what the store sent: a body longer
    /// than `bounds.max_body`, or shorter than its `Content-Length`, fails with the reason
    /// in [`BodyReader::failure`].
    pub(crate) fn get_object_with<T>(
        &self,
        key: &str,
        bounds: Bounds,
        mut read: impl FnMut(&ObjectInfo, &mut BodyReader) -> Result<T, S3Error>,
    ) -> Result<Option<T>, S3Error> {
        let op = format!("GET {key}");
        let request = Request { method: "GET", key, query: &[], headers: &[], payload: Payload::None, op: &op };
        self.call(&request, bounds, |response| {
            if response.status().as_u16() == 404 {
                return self.not_found(response, &op).map(|_| None);
            }
            let response = self.check(response, &op)?;
            let info = object_info(response.headers());
            if let Some(size) = info.size.filter(|&size| size > bounds.max_body) {
                return Err(S3Error::Oversized { op: op.clone(), size, limit: bounds.max_body });
            }
            let mut body = response.into_body();
            let mut reader = BodyReader {
                inner: body.as_reader(),
                op: op.clone(),
                received: 0,
                expected: info.size,
                max: bounds.max_body,
                failed: None,
            };
            let result = read(&info, &mut reader)?;
            // A reader that stopped before the end (a decoder at the end of its frame) leaves
            // the connection unusable: read to the end so it goes back to the pool. Without
            // this every compressed GET opened a new connection (one more round trip each).
            let _ = io::copy(&mut (&mut reader).take(64 * 1024), &mut io::sink());
            Ok(Some(result))
        })
    }

    /// Object metadata without the body. `Ok(None)`: no such key.
    pub fn head_object(&self, key: &str, bounds: Bounds) -> Result<Option<ObjectInfo>, S3Error> {
        let op = format!("HEAD {key}");
        let request = Request { method: "HEAD", key, query: &[], headers: &[], payload: Payload::None, op: &op };
        self.call(&request, bounds, |response| {
            if response.status().as_u16() == 404 {
                // HEAD answers carry no error document: a 404 is a missing key.
                return Ok(None);
            }
            let response = self.check(response, &op)?;
            Ok(Some(object_info(response.headers())))
        })
    }

    /// A 404: `NoSuchKey` (or no code at all) is a missing key; any other code (a missing
    /// bucket, a store's unknown-user code) is an error that names it.
    fn not_found(&self, response: Response<Body>, op: &str) -> Result<Option<ObjectInfo>, S3Error> {
        match self.check(response, op) {
            Err(e) if matches!(e.code(), None | Some("NoSuchKey")) => Ok(None),
            Err(e) => Err(e),
            Ok(_) => Ok(None),
        }
    }

    /// Uploads `body`, whose hex SHA-256 is `sha256_hex` (the store rejects a body that
    /// does not match). `metadata` names are without `x-amz-meta-`.
    pub fn put_object(
        &self,
        key: &str,
        body: Upload<'_>,
        sha256_hex: &str,
        metadata: &[(&str, &str)],
        bounds: Bounds,
    ) -> Result<(), S3Error> {
        self.put_object_if(key, body, sha256_hex, metadata, bounds, false).map(|_| ())
    }

    /// [`Client::put_object`], with `If-None-Match: *` when `if_absent`: then `Ok(false)`
    /// means the store already had the key (412) and kept it. Stores that ignore the
    /// header (Garage 2.5) simply overwrite, and answer `Ok(true)`.
    pub(crate) fn put_object_if(
        &self,
        key: &str,
        body: Upload<'_>,
        sha256_hex: &str,
        metadata: &[(&str, &str)],
        bounds: Bounds,
        if_absent: bool,
    ) -> Result<bool, S3Error> {
        let op = format!("PUT {key}");
        let names: Vec<String> = metadata.iter().map(|(k, _)| format!("x-amz-meta-{k}")).collect();
        let mut headers: Vec<(&str, &str)> =
            names.iter().map(String::as_str).zip(metadata.iter().map(|(_, v)| *v)).collect();
        if if_absent {
            headers.push(("if-none-match", "*"));
        }
        headers.extend(self.config.upload_headers.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        let payload = match body {
            Upload::Bytes(bytes) => Payload::Bytes { bytes, sha256: sha256_hex },
            Upload::File { path, size } => Payload::File { path, size, sha256: sha256_hex },
        };
        let request = Request { method: "PUT", key, query: &[], headers: &headers, payload, op: &op };
        self.call(&request, bounds, |response| {
            if if_absent && response.status().as_u16() == 412 {
                let _ = finish(response, &op);
                return Ok(false);
            }
            // The answer's body is read within the stall bound: a store that says 200 and
            // then holds the connection has not confirmed the upload.
            finish(self.check(response, &op)?, &op).map(|()| true)
        })
    }

    /// Copies `key` onto itself with `metadata` in place of its own (`REPLACE`), which
    /// gives it a new date without moving its body: how a hit marks an object used.
    /// `metadata` names are without `x-amz-meta-`; the upload headers (encryption) apply.
    /// With `if_match` (the ETag the metadata was read with), a store that honours
    /// `x-amz-copy-source-if-match` copies only that version: `Ok(false)` means the object
    /// was replaced since, and the metadata, which describes the old body, was not written.
    pub fn refresh_object(
        &self,
        key: &str,
        metadata: &[(&str, &str)],
        if_match: Option<&str>,
        bounds: Bounds,
    ) -> Result<bool, S3Error> {
        let op = format!("COPY {key}");
        let source = format!("/{}/{}", self.config.bucket, sigv4::uri_encode(key, false));
        let names: Vec<String> = metadata.iter().map(|(k, _)| format!("x-amz-meta-{k}")).collect();
        let mut headers: Vec<(&str, &str)> =
            vec![("x-amz-copy-source", source.as_str()), ("x-amz-metadata-directive", "REPLACE")];
        if let Some(etag) = if_match {
            headers.push(("x-amz-copy-source-if-match", etag));
        }
        headers.extend(names.iter().map(String::as_str).zip(metadata.iter().map(|(_, v)| *v)));
        headers.extend(self.config.upload_headers.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        let payload = Payload::Bytes { bytes: &[], sha256: EMPTY_SHA256 };
        let request = Request { method: "PUT", key, query: &[], headers: &headers, payload, op: &op };
        self.call(&request, bounds, |response| {
            if if_match.is_some() && response.status().as_u16() == 412 {
                let _ = finish(response, &op);
                return Ok(false);
            }
            let text = read_text(self.check(response, &op)?, &op, 1024 * 1024)?;
            // A copy can fail after its 200 was sent: the error is then the body.
            if text.contains("<Error>") {
                let mut doc = xml::parse_error(&text);
                self.redact(&mut doc);
                return Err(S3Error::Status { op: op.clone(), status: 200, doc: Box::new(doc) });
            }
            Ok(true)
        })
    }

    /// Deletes an object (success also when it did not exist).
    pub fn delete_object(&self, key: &str, bounds: Bounds) -> Result<(), S3Error> {
        let op = format!("DELETE {key}");
        let request = Request { method: "DELETE", key, query: &[], headers: &[], payload: Payload::None, op: &op };
        self.call(&request, bounds, |response| finish(self.check(response, &op)?, &op))
    }

    /// Deletes up to 1000 `keys` in one request (DeleteObjects, quiet); each key must
    /// pass `xml::fits_xml`. `Ok` holds the keys the store says it could not delete; an
    /// `Err` (a store without the API answers 501 or 405) means none is known deleted.
    pub fn delete_objects(&self, keys: &[&str], bounds: Bounds) -> Result<Vec<DeleteFailure>, S3Error> {
        let op = format!("DELETE {} objects (DeleteObjects)", keys.len());
        let body = xml::delete_request(keys.iter().copied());
        let sha = sigv4::sha256_hex(body.as_bytes());
        // AWS requires Content-MD5 on this call (or a flexible checksum); stores check it.
        let md5 = crate::base64::encode(&super::md5::digest(body.as_bytes()));
        let headers = [("content-md5", md5.as_str()), ("content-type", "application/xml")];
        let payload = Payload::Bytes { bytes: body.as_bytes(), sha256: &sha };
        let request =
            Request { method: "POST", key: "", query: &[("delete", "")], headers: &headers, payload, op: &op };
        self.call(&request, bounds, |response| {
            let text = read_text(self.check(response, &op)?, &op, 16 * 1024 * 1024)?;
            let mut failures =
                xml::parse_delete_result(&text).map_err(|e| S3Error::body(op.clone(), io::Error::other(e)))?;
            let creds = self.credentials();
            for failure in &mut failures {
                failure.message = super::credentials::redact_secrets(&failure.message, creds.as_ref());
            }
            Ok(failures)
        })
    }

    /// One page of keys under `prefix`, of at most `max_keys` (the store's default, 1000,
    /// when `None`). Keys come back unencoded: `encoding-type=url` is not sent because
    /// some stores (s3s-fs) echo it without encoding.
    pub fn list_objects(
        &self,
        prefix: &str,
        continuation: Option<&str>,
        max_keys: Option<u32>,
        bounds: Bounds,
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
        let request = Request { method: "GET", key: "", query: &query, headers: &[], payload: Payload::None, op: &op };
        self.call(&request, bounds, |response| {
            let text = read_text(self.check(response, &op)?, &op, 64 * 1024 * 1024)?;
            xml::parse_list(&text).map_err(|e| S3Error::Body { op: op.clone(), source: io::Error::other(e) })
        })
    }

    /// Every object under `prefix`, page after page, each page within `page_timeout`;
    /// `progress` hears the count so far after each page.
    pub fn list_all(
        &self,
        prefix: &str,
        page_timeout: Duration,
        progress: &mut dyn FnMut(usize),
    ) -> Result<Vec<ListedObject>, S3Error> {
        let mut objects = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let page = self.list_objects(prefix, token.as_deref(), Some(1000), Bounds::within(page_timeout))?;
            objects.extend(page.objects);
            progress(objects.len());
            match page.next_token {
                Some(next) => token = Some(next),
                None => return Ok(objects),
            }
        }
    }

    /// The credentials requests are signed with now (`None`: unsigned), for redaction and
    /// for callers that must know whether they can write.
    pub(crate) fn credentials(&self) -> Option<Credentials> {
        self.config.credentials.as_ref().and_then(|s| s.current().ok().flatten())
    }
}

/// A (small) response body as text, read to its end within `limit` bytes.
fn read_text(response: Response<Body>, op: &str, limit: u64) -> Result<String, S3Error> {
    response
        .into_body()
        .with_config()
        .limit(limit)
        .read_to_string()
        .map_err(|e| S3Error::body(op.to_string(), io::Error::other(e)))
}

/// Reads a (small) response body to its end, so the connection can be reused; a body that
/// breaks off or stalls fails the call.
fn finish(response: Response<Body>, op: &str) -> Result<(), S3Error> {
    let mut reader = response.into_body().into_with_config().limit(1024 * 1024).reader();
    io::copy(&mut reader, &mut io::sink()).map(|_| ()).map_err(|e| S3Error::body(op.to_string(), e))
}

fn object_info(headers: &HeaderMap) -> ObjectInfo {
    let size = header(headers, "content-length").and_then(|v| v.trim().parse().ok());
    let metadata = headers
        .iter()
        .filter_map(|(name, value)| {
            let name = name.as_str().strip_prefix("x-amz-meta-")?;
            Some((name.to_ascii_lowercase(), value.to_str().ok()?.to_string()))
        })
        .collect();
    let last_modified = header(headers, "last-modified").and_then(|v| httpdate::parse_http_date(&v).ok());
    ObjectInfo { size, metadata, last_modified, etag: header(headers, "etag") }
}

/// The body of a GET as the store sends it, counted and bounded.
pub(crate) struct BodyReader<'a> {
    inner: ureq::BodyReader<'a>,
    op: String,
    received: u64,
    expected: Option<u64>,
    max: u64,
    /// Why the last read failed, as an S3 error.
    failed: Option<S3Error>,
}

impl BodyReader<'_> {
    /// Bytes read so far.
    pub(crate) fn received(&self) -> u64 {
        self.received
    }

    /// The S3 error behind a failed read of this body (or of a reader wrapped around it,
    /// which passed `e` on): a network failure, a timeout, a body too long or cut short.
    /// `None` when `e` did not come from this body (a decoder's own complaint).
    pub(crate) fn take_failure(&mut self) -> Option<S3Error> {
        self.failed.take()
    }

    /// Like [`BodyReader::take_failure`], falling back to a body error made of `e`.
    pub(crate) fn failure(&mut self, e: io::Error) -> S3Error {
        self.failed.take().unwrap_or_else(|| S3Error::body(self.op.clone(), e))
    }

    fn fail(&mut self, error: S3Error) -> io::Error {
        let e = io::Error::other(error.to_string());
        self.failed = Some(error);
        e
    }
}

impl Read for BodyReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = match self.inner.read(buf) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => return Err(e),
            Err(e) => {
                let error = S3Error::body(self.op.clone(), e);
                return Err(self.fail(error));
            }
        };
        if n == 0 {
            if let Some(size) = self.expected.filter(|&size| size != self.received) {
                let short =
                    io::Error::new(io::ErrorKind::UnexpectedEof, format!("received {} bytes of {size}", self.received));
                let error = S3Error::Body { op: self.op.clone(), source: short };
                return Err(self.fail(error));
            }
            return Ok(0);
        }
        self.received += n as u64;
        if self.received > self.max {
            let error = S3Error::Oversized { op: self.op.clone(), size: self.received, limit: self.max };
            return Err(self.fail(error));
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn object_info_reads_metadata_and_dates() {
        let mut headers = HeaderMap::new();
        headers.insert("content-length", "199".parse().unwrap());
        headers.insert("x-amz-meta-outputid", "ab".repeat(32).parse().unwrap());
        headers.insert("X-Amz-Meta-PutTime", "1764076525848531745".parse().unwrap());
        headers.insert("last-modified", "Wed, 25 Nov 2026 13:15:25 GMT".parse().unwrap());
        let info = object_info(&headers);
        assert_eq!(info.size, Some(199));
        assert_eq!(info.meta("outputid"), Some("ab".repeat(32).as_str()));
        assert_eq!(info.meta("puttime"), Some("1764076525848531745"));
        assert_eq!(info.last_modified, httpdate::parse_http_date("Wed, 25 Nov 2026 13:15:25 GMT").ok());
    }
}
