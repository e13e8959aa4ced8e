//! Blocking S3 requests over one shared `ureq` agent: GetObject, HeadObject, PutObject,
//! CopyObject (refresh), DeleteObject, DeleteObjects and ListObjectsV2, each signed with SigV4 and bounded by timeouts.
//!
//! No checksum headers, no `aws-chunked` bodies: plain `Content-Length` bodies with the hex
//! payload hash, which every S3-compatible store accepts.

use super::credentials::{CredentialSource, Credentials};
use super::endpoint::{Addressing, Endpoint};
use super::error::S3Error;
use super::retry::Retrier;
use super::sigv4::{self, Request, Scope, EMPTY_SHA256};
use super::xml::{self, DeleteFailure, ErrorDoc, ListPage, ListedObject};
use std::io::{self, Read, Write};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::sync::RwLock;
use std::time::{Duration, Instant, SystemTime};
use ureq::http::{HeaderMap, Response};
use ureq::{Body, SendBody};

/// How to reach one bucket.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    pub endpoint: Endpoint,
    pub addressing: Addressing,
    pub bucket: String,
    pub region: String,
    /// `None` sends unsigned requests (`--no-sign-request`); a source that finds no
    /// credentials does too.
    pub credentials: Option<Arc<CredentialSource>>,
    /// Bound on a whole request, body included, unless the call's [`Bounds`] say otherwise.
    pub timeout: Duration,
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

/// A client for one bucket; cheap to share between threads.
pub struct Client {
    agent: ureq::Agent,
    config: ClientConfig,
    /// The store's clock minus ours, in milliseconds, once an answer showed them apart.
    clock_offset_ms: AtomicI64,
    /// Retry policy and budget, shared by every request of this client.
    pub retrier: Retrier,
    /// The bucket's region (and, on AWS, endpoint), once an answer named it.
    learned_region: RwLock<Option<(Endpoint, String)>>,
}

/// A store clock this far from ours makes signatures fail (S3 allows 15 minutes; a
/// signature error with the clocks 4 minutes apart is taken as skew too).
const SKEW: Duration = Duration::from_secs(4 * 60);

/// `server - local` in milliseconds, when they are at least `SKEW` (4 minutes) apart.
pub fn skew_ms(server: SystemTime, local: SystemTime) -> Option<i64> {
    let ms = match server.duration_since(local) {
        Ok(ahead) => i64::try_from(ahead.as_millis()).ok()?,
        Err(behind) => -i64::try_from(behind.duration().as_millis()).ok()?,
    };
    (ms.unsigned_abs() >= SKEW.as_millis() as u64).then_some(ms)
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
            learned_region: RwLock::new(None),
        }
    }

    /// The region requests are signed for and the endpoint they go to: the configured
    /// ones, or what a wrong-region answer taught.
    fn place(&self) -> (Endpoint, String) {
        match &*self.learned_region.read().unwrap_or_else(|p| p.into_inner()) {
            Some(learned) => learned.clone(),
            None => (self.config.endpoint.clone(), self.config.region.clone()),
        }
    }

    /// A wrong-region answer named `region`: sign for it from now on (and, on AWS, send to
    /// its endpoint). True if signing again may now succeed: the region is new, or another
    /// request already learned it while this one was in flight (signing is retried once).
    fn learn_region(&self, region: &str) -> bool {
        let (endpoint, current) = self.place();
        if region.is_empty() || !region.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
            return false;
        }
        if region == current {
            return self.learned_region.read().unwrap_or_else(|p| p.into_inner()).is_some();
        }
        let endpoint = if endpoint.is_aws() { Endpoint::aws(region) } else { endpoint };
        log!(
            1,
            "the bucket is in region {region}, not {current}: using {region} (set --region {region} to save this \
             round trip)"
        );
        *self.learned_region.write().unwrap_or_else(|p| p.into_inner()) = Some((endpoint, region.to_string()));
        true
    }

    /// The time requests are signed with: ours, corrected by what the store's answers
    /// showed of its clock.
    pub fn now(&self) -> SystemTime {
        let offset = self.clock_offset_ms.load(Ordering::Relaxed);
        let now = SystemTime::now();
        if offset >= 0 {
            now + Duration::from_millis(offset as u64)
        } else {
            now - Duration::from_millis(offset.unsigned_abs())
        }
    }

    /// The region a wrong-region answer taught this client, if one did.
    pub fn learned_region(&self) -> Option<String> {
        self.learned_region.read().unwrap_or_else(|p| p.into_inner()).as_ref().map(|(_, r)| r.clone())
    }

    /// How far the store's clock is from ours, as learned from refused signatures (ms).
    pub fn clock_offset_ms(&self) -> i64 {
        self.clock_offset_ms.load(Ordering::Relaxed)
    }

    /// The bucket's settings.
    pub fn config(&self) -> &ClientConfig {
        &self.config
    }

    /// Streams an object into `sink`. `Ok(None)`: no such key (404 `NoSuchKey`; any other
    /// 404, such as `NoSuchBucket`, is an error).
    pub fn get_object(&self, key: &str, sink: &mut dyn Write, bounds: Bounds) -> Result<Option<ObjectInfo>, S3Error> {
        self.get_object_with(key, bounds, |info, body| {
            let op = body.op.clone();
            let mut buf = vec![0u8; 32 * 1024];
            loop {
                let n = match body.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => return Err(body.failure(e)),
                };
                sink.write_all(&buf[..n]).map_err(|e| S3Error::Sink { op: op.clone(), source: e })?;
            }
            Ok(ObjectInfo { size: Some(body.received), ..info.clone() })
        })
    }

    /// GETs an object and hands its metadata and body to `read`, whose result it returns.
    /// `Ok(None)`: no such key, as for [`Client::get_object`]. The body yields exactly
    /// what the store sent: a body longer than `bounds.max_body`, or shorter than its
    /// `Content-Length`, fails with the reason in [`BodyReader::failure`].
    pub fn get_object_with<T>(
        &self,
        key: &str,
        bounds: Bounds,
        read: impl FnOnce(&ObjectInfo, &mut BodyReader) -> Result<T, S3Error>,
    ) -> Result<Option<T>, S3Error> {
        let op = format!("GET {key}");
        let response = self.send("GET", key, &[], &[], EMPTY_SHA256, None, &op, bounds)?;
        if response.status().as_u16() == 404 {
            return self.not_found(response, &op).map(|_| None);
        }
        let response = self.check(response, &op)?;
        let info = object_info(response.headers());
        if let Some(size) = info.size.filter(|&size| size > bounds.max_body) {
            return Err(S3Error::Oversized { op, size, limit: bounds.max_body });
        }
        let mut body = response.into_body();
        let mut reader = BodyReader {
            inner: body.as_reader(),
            op,
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
    }

    /// Object metadata without the body. `Ok(None)`: no such key.
    pub fn head_object(&self, key: &str, bounds: Bounds) -> Result<Option<ObjectInfo>, S3Error> {
        let op = format!("HEAD {key}");
        let response = self.send("HEAD", key, &[], &[], EMPTY_SHA256, None, &op, bounds)?;
        if response.status().as_u16() == 404 {
            // HEAD answers carry no error document: a 404 is a missing key.
            return Ok(None);
        }
        let response = self.check(response, &op)?;
        Ok(Some(object_info(response.headers())))
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

    /// Uploads exactly `size` bytes from `body`, whose hex SHA-256 is `sha256_hex` (the
    /// store rejects a body that does not match). `metadata` names are without `x-amz-meta-`.
    pub fn put_object(
        &self,
        key: &str,
        body: &mut dyn Read,
        size: u64,
        sha256_hex: &str,
        metadata: &[(&str, &str)],
        bounds: Bounds,
    ) -> Result<(), S3Error> {
        self.put_object_if(key, body, size, sha256_hex, metadata, bounds, false).map(|_| ())
    }

    /// [`Client::put_object`], with `If-None-Match: *` when `if_absent`: then `Ok(false)`
    /// means the store already had the key (412) and kept it. Stores that ignore the
    /// header (Garage 2.5) simply overwrite, and answer `Ok(true)`.
    pub fn put_object_if(
        &self,
        key: &str,
        body: &mut dyn Read,
        size: u64,
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
        let mut exact = ExactReader { inner: body, remaining: size };
        let response = self.send("PUT", key, &[], &headers, sha256_hex, Some((&mut exact, size)), &op, bounds)?;
        if if_absent && response.status().as_u16() == 412 {
            let _ = finish(response, &op);
            return Ok(false);
        }
        // The answer's body is read within the stall bound: a store that says 200 and then
        // holds the connection has not confirmed the upload.
        finish(self.check(response, &op)?, &op).map(|()| true)
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
        let mut empty = io::empty();
        let response = self.send("PUT", key, &[], &headers, EMPTY_SHA256, Some((&mut empty, 0)), &op, bounds)?;
        if if_match.is_some() && response.status().as_u16() == 412 {
            let _ = finish(response, &op);
            return Ok(false);
        }
        let response = self.check(response, &op)?;
        let text = response
            .into_body()
            .with_config()
            .limit(1024 * 1024)
            .read_to_string()
            .map_err(|e| S3Error::body(op.clone(), io::Error::other(e)))?;
        // A copy can fail after its 200 was sent: the error is then the body.
        if text.contains("<Error>") {
            let mut doc = xml::parse_error(&text);
            let creds = self.credentials();
            doc.redact(&|text| super::credentials::redact_secrets(text, creds.as_ref()));
            return Err(S3Error::Status { op, status: 200, doc: Box::new(doc) });
        }
        Ok(true)
    }

    /// Deletes an object (success also when it did not exist).
    pub fn delete_object(&self, key: &str, bounds: Bounds) -> Result<(), S3Error> {
        let op = format!("DELETE {key}");
        let response = self.send("DELETE", key, &[], &[], EMPTY_SHA256, None, &op, bounds)?;
        finish(self.check(response, &op)?, &op)
    }

    /// Deletes up to 1000 `keys` in one request (DeleteObjects, quiet); each key must
    /// pass [`xml::fits_xml`]. `Ok` holds the keys the store says it could not delete; an
    /// `Err` (a store without the API answers 501 or 405) means none is known deleted.
    pub fn delete_objects(&self, keys: &[&str], bounds: Bounds) -> Result<Vec<DeleteFailure>, S3Error> {
        let op = format!("DELETE {} objects (DeleteObjects)", keys.len());
        let body = xml::delete_request(keys.iter().copied());
        let sha = sigv4::sha256_hex(body.as_bytes());
        // AWS requires Content-MD5 on this call (or a flexible checksum); stores check it.
        let md5 = crate::base64::encode(&super::md5::digest(body.as_bytes()));
        let headers = [("content-md5", md5.as_str()), ("content-type", "application/xml")];
        let mut reader = body.as_bytes();
        let size = body.len() as u64;
        let response =
            self.send("POST", "", &[("delete", "")], &headers, &sha, Some((&mut reader, size)), &op, bounds)?;
        let response = self.check(response, &op)?;
        let text = response
            .into_body()
            .with_config()
            .limit(16 * 1024 * 1024)
            .read_to_string()
            .map_err(|e| S3Error::body(op.clone(), io::Error::other(e)))?;
        let mut failures = xml::parse_delete_result(&text).map_err(|e| S3Error::body(op, io::Error::other(e)))?;
        let creds = self.credentials();
        for failure in &mut failures {
            failure.message = super::credentials::redact_secrets(&failure.message, creds.as_ref());
        }
        Ok(failures)
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
        let response = self.send("GET", "", &query, &[], EMPTY_SHA256, None, &op, bounds)?;
        let response = self.check(response, &op)?;
        let text = response
            .into_body()
            .with_config()
            .limit(64 * 1024 * 1024)
            .read_to_string()
            .map_err(|e| S3Error::Body { op: op.clone(), source: io::Error::other(e) })?;
        xml::parse_list(&text).map_err(|e| S3Error::Body { op, source: io::Error::other(e) })
    }

    /// Every object under `prefix`, page after page, each page retried within
    /// `page_timeout`; `progress` hears the count so far after each page.
    pub fn list_all(
        &self,
        prefix: &str,
        page_timeout: Duration,
        progress: &mut dyn FnMut(usize),
    ) -> Result<Vec<ListedObject>, S3Error> {
        let mut objects = Vec::new();
        let mut token: Option<String> = None;
        let mut rng = crate::random::Rng::fresh();
        loop {
            let deadline = Some(Instant::now() + page_timeout);
            let bounds = Bounds { deadline, ..Bounds::DEFAULT };
            let page = self.retrier.run(deadline, &mut rng, &|| true, || {
                self.list_objects(prefix, token.as_deref(), Some(1000), bounds)
            })?;
            objects.extend(page.objects);
            progress(objects.len());
            match page.next_token {
                Some(next) => token = Some(next),
                None => return Ok(objects),
            }
        }
    }

    /// Signs and sends one request; `key` empty addresses the bucket itself.
    fn send(
        &self,
        method: &str,
        key: &str,
        query: &[(&str, &str)],
        extra_headers: &[(&str, &str)],
        payload_hash: &str,
        body: Option<(&mut dyn Read, u64)>,
        op: &str,
        bounds: Bounds,
    ) -> Result<Response<Body>, S3Error> {
        let c = &self.config;
        let (endpoint, region) = self.place();
        let target = endpoint.target(c.addressing, &c.bucket, key);
        let query_string = sigv4::canonical_query(query);
        let url = if query_string.is_empty() { target.url.clone() } else { format!("{}?{query_string}", target.url) };
        let mut headers: Vec<(&str, String)> = extra_headers.iter().map(|(k, v)| (*k, v.to_string())).collect();
        let mut debug_strings = None;
        let signing = match &c.credentials {
            Some(source) => source.current().map_err(|message| S3Error::Credentials { op: op.to_string(), message })?,
            None => None,
        };
        if let Some(creds) = &signing {
            headers.push(("x-amz-content-sha256", payload_hash.to_string()));
            let mut to_sign: Vec<(&str, &str)> = vec![("host", target.host.as_str())];
            to_sign.extend(headers.iter().map(|(k, v)| (*k, v.as_str())));
            let request = Request { method, path: &target.path, query, headers: &to_sign, payload_hash };
            let scope = Scope { region: &region, service: "s3" };
            let signed = sigv4::sign_headers(&request, creds, &scope, self.now());
            headers.extend(signed.headers.iter().map(|(k, v)| (*k, v.clone())));
            debug_strings = Some((signed.canonical_request.clone(), signed.string_to_sign.clone()));
        }
        let mut builder = ureq::http::Request::builder().method(method).uri(&url);
        for (name, value) in &headers {
            builder = builder.header(*name, value.as_str());
        }
        let total = match bounds.deadline {
            Some(deadline) => deadline.saturating_duration_since(Instant::now()),
            None => c.timeout,
        };
        if total.is_zero() {
            return Err(S3Error::Transport { op: op.to_string(), timeout: true, message: "no time left".into() });
        }
        let stall = Some(c.stall_timeout.min(total));
        let result = match body {
            Some((reader, size)) => {
                let request = builder
                    .header("content-length", size.to_string())
                    .body(SendBody::from_reader(reader))
                    .map_err(|e| S3Error::Request { op: op.to_string(), message: e.to_string() })?;
                let configured = self.agent.configure_request(request);
                let request = configured.timeout_global(Some(total)).timeout_per_read(stall).timeout_per_write(stall);
                self.agent.run(request.build())
            }
            None => {
                let request =
                    builder.body(()).map_err(|e| S3Error::Request { op: op.to_string(), message: e.to_string() })?;
                let configured = self.agent.configure_request(request);
                let request = configured.timeout_global(Some(total)).timeout_per_read(stall).timeout_per_write(stall);
                self.agent.run(request.build())
            }
        };
        let response = result.map_err(|e| match (S3Error::transport(op, e), &self.config.proxy) {
            // The connection that failed may be the proxy's: say so, or the user checks the store.
            (S3Error::Transport { op, timeout, message }, Some(proxy)) if !message.contains("proxy") => {
                S3Error::Transport {
                    op,
                    timeout,
                    message: format!("{message} (through the proxy {})", crate::log::without_userinfo(proxy)),
                }
            }
            (other, _) => other,
        })?;
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
        let server_time = header(response.headers(), "date").and_then(|d| httpdate::parse_http_date(&d).ok());
        let text = response.into_body().with_config().limit(1024 * 1024).read_to_string().unwrap_or_default();
        let mut doc = xml::parse_error(&text);
        if doc.region.is_none() {
            doc.region = region_header;
        }
        // Some stores echo the request's Authorization header or token in their messages.
        let creds = self.credentials();
        doc.redact(&|text| super::credentials::redact_secrets(text, creds.as_ref()));
        if matches!(doc.code.as_deref(), Some("ExpiredToken" | "TokenRefreshRequired")) {
            // Temporary credentials that expired early: fetch new ones and sign again.
            if let Some(source) = &self.config.credentials {
                source.expire();
                doc.resign = true;
            }
        }
        let wrong_region =
            matches!(doc.code.as_deref(), Some("AuthorizationHeaderMalformed" | "PermanentRedirect")) || status == 301;
        if wrong_region {
            if let Some(region) = doc.region.clone() {
                doc.resign = self.learn_region(&region);
            }
        }
        if matches!(doc.code.as_deref(), Some("RequestTimeTooSkewed" | "SignatureDoesNotMatch" | "AccessDenied")) {
            // A request signed before another one taught us the store's clock is refused
            // too: signing it again with the corrected clock is what helps.
            let corrected_since = doc.code.as_deref() == Some("RequestTimeTooSkewed") && self.clock_offset_ms() != 0;
            doc.resign = server_time.is_some_and(|t| self.learn_clock(t) || corrected_since);
        }
        if doc.code.as_deref() == Some("SignatureDoesNotMatch") && crate::log::enabled(2) {
            if let Some(ours) = ours {
                let token = creds.as_ref().and_then(|c| c.session_token.as_deref());
                log!(2, "{}", signature_mismatch_report(op, &doc, &ours.0, &ours.1, token));
            }
        }
        Err(S3Error::Status { op: op.to_string(), status, doc: Box::new(doc) })
    }
}

impl Client {
    /// The credentials requests are signed with now (`None`: unsigned), for redaction and
    /// for callers that must know whether they can write.
    pub fn credentials(&self) -> Option<Credentials> {
        self.config.credentials.as_ref().and_then(|s| s.current().ok().flatten())
    }

    /// Takes the store's clock from an answer that refused our signature: true when it is
    /// far enough from ours (by what we sign with now) that signing again will help.
    fn learn_clock(&self, server: SystemTime) -> bool {
        let Some(extra) = skew_ms(server, self.now()) else { return false };
        let offset = self.clock_offset_ms.fetch_add(extra, Ordering::Relaxed) + extra;
        log!(
            2,
            "the store's clock is {:.1}s from ours: signing with the store's time from now on",
            offset as f64 / 1000.0
        );
        true
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

/// Reads a (small) response body to its end, so the connection can be reused; a body that
/// breaks off or stalls fails the call.
fn finish(response: Response<Body>, op: &str) -> Result<(), S3Error> {
    let mut reader = response.into_body().into_with_config().limit(1024 * 1024).reader();
    io::copy(&mut reader, &mut io::sink()).map(|_| ()).map_err(|e| S3Error::body(op.to_string(), e))
}

fn header(headers: &HeaderMap, name: &str) -> Option<String> {
    headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_string)
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
pub struct BodyReader<'a> {
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
    pub fn received(&self) -> u64 {
        self.received
    }

    /// The S3 error behind a failed read of this body (or of a reader wrapped around it,
    /// which passed `e` on): a network failure, a timeout, a body too long or cut short.
    /// `None` when `e` did not come from this body (a decoder's own complaint).
    pub fn take_failure(&mut self) -> Option<S3Error> {
        self.failed.take()
    }

    /// Like [`BodyReader::take_failure`], falling back to a body error made of `e`.
    pub fn failure(&mut self, e: io::Error) -> S3Error {
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
    fn clocks_further_apart_than_four_minutes_are_skew() {
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        assert_eq!(skew_ms(t + Duration::from_secs(20 * 60), t), Some(1_200_000));
        assert_eq!(skew_ms(t - Duration::from_secs(5 * 60), t), Some(-300_000));
        assert_eq!(skew_ms(t + Duration::from_secs(3 * 60), t), None);
        assert_eq!(skew_ms(t, t), None);
    }

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
