//! What can go wrong talking to S3, named by operation and object, and classified for
//! the retry and switch-off decisions of the remote tier.

use super::xml::ErrorDoc;
use std::fmt;
use std::io;

/// A failed S3 request.
#[derive(Debug)]
pub enum S3Error {
    /// No HTTP response: connection refused or reset, DNS, TLS, timeout.
    Transport {
        /// The request, as errors name it: `GET <key>`, `LIST <prefix>`, ...
        op: String,
        /// It timed out (deadline, stall or connect bound) rather than being refused or reset.
        timeout: bool,
        /// The transport's own words.
        message: String,
    },
    /// The store answered with a non-success status.
    Status {
        /// The request, as errors name it: `GET <key>`, `LIST <prefix>`, ...
        op: String,
        /// The HTTP status.
        status: u16,
        /// The store's `<Error>` document (empty fields when it sent none).
        doc: Box<ErrorDoc>,
    },
    /// The response body broke off or was not what it said.
    Body {
        /// The request, as errors name it: `GET <key>`, `LIST <prefix>`, ...
        op: String,
        /// What reading the body met.
        source: io::Error,
    },
    /// The store (or something between) answered with bytes that are not valid HTTP: a
    /// `Content-Length` that is not a number or two that disagree, broken chunked framing,
    /// endless headers. Trying again will not help; the store was reached.
    Malformed {
        /// The request, as errors name it: `GET <key>`, `LIST <prefix>`, ...
        op: String,
        /// What was wrong with the bytes.
        message: String,
    },
    /// Writing the downloaded body locally failed (not the store's fault).
    Sink {
        /// The request, as errors name it: `GET <key>`, `LIST <prefix>`, ...
        op: String,
        /// The local file's error (also opening an upload's file).
        source: io::Error,
    },
    /// The request could not even be built (an invalid header or URL).
    Request {
        /// The request, as errors name it: `GET <key>`, `LIST <prefix>`, ...
        op: String,
        /// What could not be built, and why.
        message: String,
    },
    /// The object is larger than the caller accepts (`size` is what was announced or read).
    Oversized {
        /// The request, as errors name it: `GET <key>`, `LIST <prefix>`, ...
        op: String,
        /// Bytes announced (`Content-Length`) or received so far.
        size: u64,
        /// The caller's bound ([`Bounds::max_body`](super::client::Bounds::max_body)).
        limit: u64,
    },
    /// No credentials could be had from a source that is configured (what failed, and why).
    Credentials {
        /// The request, as errors name it: `GET <key>`, `LIST <prefix>`, ...
        op: String,
        /// Which source failed, and why.
        message: String,
    },
}

/// What a store's error code means, from one table (`CODES`): whether trying again can
/// help, and which setting is wrong otherwise. The retry policy, the breaker, the hints and
/// `check`'s diagnosis all read it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// Throttling or a request timeout: worth another attempt.
    Transient,
    /// The signature did not match (the secret key, or something rewrote the request).
    Signature,
    /// The access key is unknown to this store.
    UnknownKey,
    /// The bucket is in another region, or the endpoint is wrong for it.
    WrongRegion,
    /// The bucket does not exist, or its name is not valid.
    NoBucket,
    /// The session token expired or is not known.
    Token,
    /// This machine's clock is too far from the store's.
    ClockSkew,
}

/// Every error code this program reads, with what it means. Codes not here are read by
/// status alone (5xx transient, 403 a refusal of the credentials).
const CODES: &[(&str, Refusal)] = &[
    ("SlowDown", Refusal::Transient),
    ("RequestTimeout", Refusal::Transient),
    ("InternalError", Refusal::Transient),
    ("Throttling", Refusal::Transient),
    ("ThrottlingException", Refusal::Transient),
    ("RequestThrottled", Refusal::Transient),
    ("TooManyRequestsException", Refusal::Transient),
    ("SignatureDoesNotMatch", Refusal::Signature),
    ("InvalidAccessKeyId", Refusal::UnknownKey),
    // versitygw: an access key it does not know.
    ("XAdminUserNotFound", Refusal::UnknownKey),
    ("AuthorizationHeaderMalformed", Refusal::WrongRegion),
    ("PermanentRedirect", Refusal::WrongRegion),
    ("NoSuchBucket", Refusal::NoBucket),
    ("InvalidBucketName", Refusal::NoBucket),
    ("ExpiredToken", Refusal::Token),
    ("InvalidToken", Refusal::Token),
    // MinIO: a session token it does not know.
    ("InvalidTokenId", Refusal::Token),
    ("RequestTimeTooSkewed", Refusal::ClockSkew),
];

impl Refusal {
    /// Only a change of configuration fixes it: retrying is pointless.
    pub(crate) fn is_configuration(self) -> bool {
        self != Refusal::Transient
    }
}

impl S3Error {
    /// Classifies a ureq error.
    pub(crate) fn transport(op: &str, e: ureq::Error) -> S3Error {
        if let Some(message) = malformed(&e) {
            return S3Error::Malformed { op: op.to_string(), message };
        }
        let timeout = matches!(e, ureq::Error::Timeout(_));
        let message = match &e {
            ureq::Error::Io(io) if io.kind() == io::ErrorKind::ConnectionRefused => "connection refused".to_string(),
            other => other.to_string(),
        };
        S3Error::Transport { op: op.to_string(), timeout, message }
    }

    /// Classifies a failure while reading a response body: a timeout (a stall, or the
    /// call's deadline) is a timeout, anything else a broken body.
    pub(crate) fn body(op: String, e: io::Error) -> S3Error {
        let inner = e.get_ref().and_then(|inner| inner.downcast_ref::<ureq::Error>());
        if let Some(message) = inner.and_then(malformed) {
            return S3Error::Malformed { op, message };
        }
        let timed_out =
            e.kind() == io::ErrorKind::TimedOut || inner.is_some_and(|u| matches!(u, ureq::Error::Timeout(_)));
        if timed_out {
            S3Error::Transport { op, timeout: true, message: e.to_string() }
        } else {
            S3Error::Body { op, source: e }
        }
    }

    /// The store refused the request's time or token and the client has since fixed that
    /// (learned the store's clock, fetched new credentials): signing again will do.
    pub(crate) fn is_resignable(&self) -> bool {
        matches!(self, S3Error::Status { doc, .. } if doc.resign)
    }

    /// A timeout (a stall, a deadline): never worth a second full wait.
    pub(crate) fn is_timeout(&self) -> bool {
        matches!(self, S3Error::Transport { timeout: true, .. })
    }

    /// The S3 error code, when the store sent one.
    pub fn code(&self) -> Option<&str> {
        match self {
            S3Error::Status { doc, .. } => doc.code.as_deref(),
            _ => None,
        }
    }

    /// What the store's answer means, by `CODES` (a 301 is a wrong region whatever its code).
    pub(crate) fn refusal(&self) -> Option<Refusal> {
        let S3Error::Status { status, doc, .. } = self else { return None };
        let by_code = doc.code.as_deref().and_then(|c| CODES.iter().find(|(code, _)| *code == c).map(|(_, r)| *r));
        by_code.or((*status == 301).then_some(Refusal::WrongRegion))
    }

    /// The HTTP status, when there was a response.
    pub fn status(&self) -> Option<u16> {
        match self {
            S3Error::Status { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// Worth another attempt: the SDKs' "standard" transient set (5xx, throttling,
    /// request timeouts, broken connections). Timeouts are not retried here because a
    /// second full wait would double what the build waits.
    pub fn is_transient(&self) -> bool {
        match self {
            S3Error::Transport { timeout, .. } => !timeout,
            S3Error::Body { .. } => true,
            S3Error::Status { status, .. } => {
                matches!(status, 500 | 502 | 503 | 504) || self.refusal() == Some(Refusal::Transient)
            }
            S3Error::Sink { .. }
            | S3Error::Malformed { .. }
            | S3Error::Request { .. }
            | S3Error::Oversized { .. }
            | S3Error::Credentials { .. } => false,
        }
    }

    /// A 403 that may just mean "no such key" (S3 answers 403 instead of 404 to callers
    /// without ListBucket permission), as opposed to refused credentials.
    pub fn is_access_denied(&self) -> bool {
        matches!(self, S3Error::Status { status: 403, doc, .. } if matches!(doc.code.as_deref(), None | Some("AccessDenied")))
    }

    /// A hint for the user on what to change, for errors that are configuration mistakes.
    pub fn hint(&self) -> Option<String> {
        let S3Error::Status { status, doc, .. } = self else {
            return match self {
                S3Error::Transport { message, .. }
                    if message.contains("UnknownIssuer") || message.contains("certificate") =>
                {
                    Some(
                        "the store's TLS certificate is not signed by a CA this program knows: give the CA's PEM file \
                         with --ca-bundle FILE (or AWS_CA_BUNDLE)"
                            .into(),
                    )
                }
                S3Error::Transport { message, .. } if message.to_ascii_lowercase().contains("proxy") => Some(
                    "the HTTP proxy refused or failed: check HTTPS_PROXY / HTTP_PROXY, or add the store to NO_PROXY"
                        .into(),
                ),
                S3Error::Transport { timeout: true, .. } => Some(
                    "the store stopped sending or taking bytes in time: check its health and the network in \
                     between, or raise --stall-timeout / --timeout"
                        .into(),
                ),
                S3Error::Transport { .. } => {
                    Some("check --endpoint / AWS_ENDPOINT_URL and that the store is reachable".into())
                }
                S3Error::Malformed { .. } => Some(
                    "the store was reached but its answer is not valid HTTP (retrying will not help): check that \
                     --endpoint names an S3 API and not another service, and any proxy or load balancer in between"
                        .into(),
                ),
                // The message itself says what to change (`aws sso login --profile X`, set
                // both keys...): repeating it as a hint would say it twice on one line.
                _ => None,
            };
        };
        let hint = match self.refusal() {
            Some(Refusal::Signature) => {
                "check AWS_SECRET_ACCESS_KEY, and that --region matches the store's region (run with -vv to compare signatures)"
                    .to_string()
            }
            Some(Refusal::UnknownKey) => "AWS_ACCESS_KEY_ID is not known to this store".into(),
            Some(Refusal::WrongRegion) => match &doc.region {
                Some(r) => format!("the bucket is in region {r:?}: set --region {r} (or AWS_REGION)"),
                None => "the region or endpoint is wrong for this bucket: check --region and --endpoint".into(),
            },
            Some(Refusal::NoBucket) => "the bucket does not exist (or its name is not valid): check --bucket and --endpoint".into(),
            Some(Refusal::Token) => "the session token has expired: refresh AWS_SESSION_TOKEN".into(),
            Some(Refusal::ClockSkew) => "this machine's clock is off; fix its time".into(),
            _ if *status == 403 => "the store refused the credentials or they lack permission: check AWS_ACCESS_KEY_ID / \
                         AWS_SECRET_ACCESS_KEY and that they allow s3:GetObject and s3:PutObject on this bucket and prefix"
                .into(),
            _ => return None,
        };
        Some(hint)
    }
}

impl fmt::Display for S3Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            S3Error::Transport { op, timeout: true, message } => write!(f, "{op}: timed out ({message})"),
            S3Error::Transport { op, message, .. } => write!(f, "{op}: {message}"),
            S3Error::Status { op, status, doc } => {
                write!(f, "{op}: HTTP {status}")?;
                if let Some(code) = &doc.code {
                    write!(f, " {code}")?;
                }
                if let Some(message) = &doc.message {
                    write!(f, ": {message}")?;
                }
                if let Some(id) = &doc.request_id {
                    write!(f, " (request ID {id})")?;
                }
                Ok(())
            }
            S3Error::Body { op, source } => write!(f, "{op}: response body: {source}"),
            S3Error::Malformed { op, message } => write!(f, "{op}: the store's answer is not valid HTTP: {message}"),
            S3Error::Sink { op, source } => write!(f, "{op}: writing the download locally: {source}"),
            S3Error::Request { op, message } => write!(f, "{op}: cannot build the request: {message}"),
            S3Error::Credentials { op, message } => write!(f, "{op}: no credentials: {message}"),
            S3Error::Oversized { op, size, limit } => {
                write!(f, "{op}: the object is {size} bytes or more, above --max-object-size {limit}")
            }
        }
    }
}

impl std::error::Error for S3Error {}

/// What is wrong with an answer that is not valid HTTP, when `e` says so.
fn malformed(e: &ureq::Error) -> Option<String> {
    match e {
        ureq::Error::Protocol(p) => Some(p.to_string()),
        ureq::Error::LargeResponseHeader(..) => Some(e.to_string()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(status: u16, code: Option<&str>) -> S3Error {
        S3Error::Status {
            op: "GET go-cache/ab".into(),
            status,
            doc: Box::new(ErrorDoc { code: code.map(str::to_string), ..Default::default() }),
        }
    }

    #[test]
    fn classification() {
        assert!(status(503, Some("SlowDown")).is_transient());
        assert!(status(500, None).is_transient());
        assert!(status(400, Some("RequestTimeout")).is_transient());
        assert!(!status(403, Some("AccessDenied")).is_transient());
        assert!(!status(400, Some("BadDigest")).is_transient());
        assert!(status(403, Some("AccessDenied")).is_access_denied());
        assert!(status(403, None).is_access_denied());
        assert!(!status(403, Some("SignatureDoesNotMatch")).is_access_denied());
        let timeout = S3Error::Transport { op: "GET k".into(), timeout: true, message: "t".into() };
        assert!(!timeout.is_transient());
        let reset = S3Error::Transport { op: "GET k".into(), timeout: false, message: "reset".into() };
        assert!(reset.is_transient());
        let header = S3Error::transport("GET k", ureq::Error::LargeResponseHeader(70_000, 65_536));
        assert!(matches!(header, S3Error::Malformed { .. }) && !header.is_transient(), "{header:?}");
        assert!(header.to_string().contains("not valid HTTP: response header is too big"), "{header}");
        assert!(!header.hint().unwrap().contains("is reachable"));
    }

    #[test]
    fn every_code_in_the_table_is_read_one_way() {
        for (code, refusal) in CODES {
            let e = status(400, Some(code));
            assert_eq!(e.refusal(), Some(*refusal), "{code}");
            // Transient codes are retried and need no change; every other one names the
            // setting to change and is never retried.
            assert_eq!(e.is_transient(), !refusal.is_configuration(), "{code}");
            assert_eq!(e.hint().is_some(), refusal.is_configuration(), "{code}");
        }
        assert_eq!(status(301, None).refusal(), Some(Refusal::WrongRegion));
        assert_eq!(status(400, Some("BadDigest")).refusal(), None);
        assert_eq!(status(403, None).refusal(), None);
    }

    #[test]
    fn messages_name_the_operation_and_suggest_a_fix() {
        let e = S3Error::Status {
            op: "PUT go-cache/ab".into(),
            status: 400,
            doc: Box::new(ErrorDoc {
                code: Some("AuthorizationHeaderMalformed".into()),
                message: Some("region 'us-east-1' is wrong; expecting 'garage'".into()),
                request_id: Some("R1".into()),
                region: Some("garage".into()),
                ..Default::default()
            }),
        };
        assert_eq!(
            e.to_string(),
            "PUT go-cache/ab: HTTP 400 AuthorizationHeaderMalformed: region 'us-east-1' is wrong; expecting 'garage' (request ID R1)"
        );
        assert!(e.hint().unwrap().contains("--region garage"));
        assert!(status(403, Some("SignatureDoesNotMatch")).hint().unwrap().contains("-vv"));
    }
}
