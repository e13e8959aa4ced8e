//! The one send: every S3 request goes through `Client::call`, which signs it (with the
//! store's clock once an answer showed it, for the region an answer named), sends it
//! within its bounds, hands the response to the operation, and tries again while that
//! fails transiently, within the retry policy and budget (`retry`). An operation says
//! what it sends (`Request`) and what it accepts (the closure); nothing else.

use super::client::{Bounds, Client};
use super::credentials;
use super::endpoint::Endpoint;
use super::error::S3Error;
use super::sigv4::{self, Scope};
use super::xml::{self, ErrorDoc};
use std::fs::File;
use std::io::{self, Read};
use std::path::Path;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant, SystemTime};
use ureq::http::{HeaderMap, Response};
use ureq::{Body, SendBody};

/// Which side of the bucket a request is on: the remote tier keeps a breaker for each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Access {
    Read,
    Write,
}

/// What a request sends as its body.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Payload<'a> {
    /// No body at all (GET, HEAD, DELETE).
    None,
    /// These bytes, whose hex SHA-256 is `sha256`.
    Bytes { bytes: &'a [u8], sha256: &'a str },
    /// The first `size` bytes of this file (opened anew for each attempt), whose hex
    /// SHA-256 is `sha256`. A file shorter than `size` fails the request.
    File { path: &'a Path, size: u64, sha256: &'a str },
}

impl Payload<'_> {
    fn sha256(&self) -> &str {
        match self {
            Payload::None => sigv4::EMPTY_SHA256,
            Payload::Bytes { sha256, .. } | Payload::File { sha256, .. } => sha256,
        }
    }
}

/// One S3 request, as an operation describes it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Request<'a> {
    pub(crate) method: &'static str,
    /// The object's key; empty for the bucket itself.
    pub(crate) key: &'a str,
    pub(crate) query: &'a [(&'a str, &'a str)],
    /// Headers sent and signed, beside `host`, `x-amz-date` and `x-amz-content-sha256`.
    pub(crate) headers: &'a [(&'a str, &'a str)],
    pub(crate) payload: Payload<'a>,
    /// How errors name the request: `GET <key>`, `LIST <prefix>`, ...
    pub(crate) op: &'a str,
}

impl Request<'_> {
    /// The side of the bucket the request is on.
    pub(crate) fn access(&self) -> Access {
        match self.method {
            "GET" | "HEAD" => Access::Read,
            _ => Access::Write,
        }
    }
}

/// A store clock this far from ours makes signatures fail (S3 allows 15 minutes; a
/// signature error with the clocks 4 minutes apart is taken as skew too).
const SKEW: Duration = Duration::from_secs(4 * 60);

/// `server - local` in milliseconds, when they are at least `SKEW` (4 minutes) apart.
pub(crate) fn skew_ms(server: SystemTime, local: SystemTime) -> Option<i64> {
    let ms = match server.duration_since(local) {
        Ok(ahead) => i64::try_from(ahead.as_millis()).ok()?,
        Err(behind) => -i64::try_from(behind.duration().as_millis()).ok()?,
    };
    (ms.unsigned_abs() >= SKEW.as_millis() as u64).then_some(ms)
}

impl Client {
    /// Sends `request` within `bounds` and hands each response to `accept`, trying again
    /// (a new attempt, a new response) while that fails transiently: the SDKs' standard
    /// retries within the client's budget and `bounds.deadline`, and a refused signature
    /// signed again once the store's answer told what to fix (its clock, its region, new
    /// credentials). No retry starts once the retry gate closes the request's side.
    pub(super) fn call<T>(
        &self,
        request: &Request<'_>,
        bounds: Bounds,
        mut accept: impl FnMut(Response<Body>) -> Result<T, S3Error>,
    ) -> Result<T, S3Error> {
        let access = request.access();
        let keep_going = || self.gate.get().is_none_or(|open| open(access));
        self.retrier.run(bounds.deadline, &keep_going, || accept(self.send_once(request, bounds)?))
    }

    /// Signs and sends one attempt of `request`.
    fn send_once(&self, request: &Request<'_>, bounds: Bounds) -> Result<Response<Body>, S3Error> {
        let op = request.op;
        let c = &self.config;
        let (endpoint, region) = self.place();
        let target = endpoint.target(c.addressing, &c.bucket, request.key);
        let query_string = sigv4::canonical_query(request.query);
        let url = if query_string.is_empty() { target.url.clone() } else { format!("{}?{query_string}", target.url) };
        let payload_hash = request.payload.sha256();
        let mut headers: Vec<(&str, String)> = request.headers.iter().map(|(k, v)| (*k, v.to_string())).collect();
        let mut debug_strings = None;
        let signing = match &c.credentials {
            Some(source) => source.current().map_err(|message| S3Error::Credentials { op: op.to_string(), message })?,
            None => None,
        };
        if let Some(creds) = &signing {
            headers.push(("x-amz-content-sha256", payload_hash.to_string()));
            let mut to_sign: Vec<(&str, &str)> = vec![("host", target.host.as_str())];
            to_sign.extend(headers.iter().map(|(k, v)| (*k, v.as_str())));
            let signed_request = sigv4::Request {
                method: request.method,
                path: &target.path,
                query: request.query,
                headers: &to_sign,
                payload_hash,
            };
            let scope = Scope { region: &region, service: "s3" };
            let signed = sigv4::sign_headers(&signed_request, creds, &scope, self.now());
            headers.extend(signed.headers.iter().map(|(k, v)| (*k, v.clone())));
            debug_strings = Some((signed.canonical_request.clone(), signed.string_to_sign.clone()));
        }
        let mut builder = ureq::http::Request::builder().method(request.method).uri(&url);
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
        let built = |e: ureq::http::Error| S3Error::Request { op: op.to_string(), message: e.to_string() };
        let (mut file, mut bytes);
        let body: Option<(&mut dyn Read, u64)> = match request.payload {
            Payload::None => None,
            Payload::Bytes { bytes: b, .. } => {
                bytes = b;
                Some((&mut bytes, b.len() as u64))
            }
            Payload::File { path, size, .. } => {
                file = File::open(path).map_err(|e| S3Error::Sink { op: op.to_string(), source: e })?;
                Some((&mut file, size))
            }
        };
        let result = match body {
            Some((reader, size)) => {
                let mut exact = ExactReader { inner: reader, remaining: size };
                let request = builder
                    .header("content-length", size.to_string())
                    .body(SendBody::from_reader(&mut exact))
                    .map_err(built)?;
                let configured = self.agent.configure_request(request);
                let request = configured.timeout_global(Some(total)).timeout_per_read(stall).timeout_per_write(stall);
                self.agent.run(request.build())
            }
            None => {
                let request = builder.body(()).map_err(built)?;
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

    /// Turns a non-success status into an error, reading the error body to its end, and
    /// learns from it what signing again needs (the store's clock and region, new
    /// credentials): such an error is marked to be signed again.
    pub(super) fn check(&self, response: Response<Body>, op: &str) -> Result<Response<Body>, S3Error> {
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
        self.redact(&mut doc);
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
                let creds = self.credentials();
                let token = creds.as_ref().and_then(|c| c.session_token.as_deref());
                log!(2, "{}", signature_mismatch_report(op, &doc, &ours.0, &ours.1, token));
            }
        }
        Err(S3Error::Status { op: op.to_string(), status, doc: Box::new(doc) })
    }

    /// Removes the credentials from what a store's answer says (some stores echo the
    /// request's `Authorization` header or token in their messages).
    pub(super) fn redact(&self, doc: &mut ErrorDoc) {
        let creds = self.credentials();
        doc.redact(&|text| credentials::redact_secrets(text, creds.as_ref()));
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

    /// The region a wrong-region answer taught this client, if one did.
    pub fn learned_region(&self) -> Option<String> {
        self.learned_region.read().unwrap_or_else(|p| p.into_inner()).as_ref().map(|(_, r)| r.clone())
    }

    /// The time requests are signed with: ours, corrected by what the store's answers
    /// showed of its clock.
    pub(crate) fn now(&self) -> SystemTime {
        let offset = self.clock_offset_ms.load(Ordering::Relaxed);
        let now = SystemTime::now();
        if offset >= 0 {
            now + Duration::from_millis(offset as u64)
        } else {
            now - Duration::from_millis(offset.unsigned_abs())
        }
    }

    /// How far the store's clock is from ours, as learned from refused signatures (ms).
    pub(crate) fn clock_offset_ms(&self) -> i64 {
        self.clock_offset_ms.load(Ordering::Relaxed)
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

/// A header's value, when it is text.
pub(super) fn header(headers: &HeaderMap, name: &str) -> Option<String> {
    headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_string)
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
    fn reads_and_writes_are_told_apart_by_method() {
        let request = |method| Request { method, key: "k", query: &[], headers: &[], payload: Payload::None, op: "x" };
        assert_eq!(request("GET").access(), Access::Read);
        assert_eq!(request("HEAD").access(), Access::Read);
        for method in ["PUT", "POST", "DELETE"] {
            assert_eq!(request(method).access(), Access::Write, "{method}");
        }
    }
}
