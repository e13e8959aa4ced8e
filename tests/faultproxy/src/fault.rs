//! What the proxy can inject ([`Fault`]) and into which requests ([`FaultRule`]).

/// The Content-Length of `Fault::HugeContentLength`.
pub const HUGE_CONTENT_LENGTH: u64 = 1_000_000_000_000;

/// A fault injected into one request's exchange.
#[derive(Clone, Debug, PartialEq)]
pub enum Fault {
    /// The proxy answers itself (the request is not forwarded, its body is discarded)
    /// with `status` and an S3 XML error with `code`, keeping the connection alive.
    ErrorStatus { status: u16, code: String },
    /// The client connection is closed abruptly (RST on Linux) when the request arrives.
    Reset,
    /// The response head passes unchanged, then only `keep_fraction` of the body, then
    /// the connection is closed.
    TruncateBody { keep_fraction: f64 },
    /// Every 1024th byte of the response body (from the first) is inverted; same length.
    CorruptBody,
    /// The request is forwarded, but no response byte ever reaches the client; the
    /// connection stays open until the client closes it or the proxy stops.
    StallBeforeHeaders,
    /// The response head and `after_bytes` of the body pass, then the connection stalls.
    StallMidBody { after_bytes: u64 },
    /// The response body is sent at `bytes_per_sec`.
    DripBody { bytes_per_sec: u64 },
    /// The response's `Date` header is moved by `seconds`.
    SkewDate { seconds: i64 },
    /// The proxy answers `200` with `Content-Length: 1000000000000`, a few bytes of body,
    /// then stalls.
    HugeContentLength,
    /// The proxy answers `HTTP/1.1 200 OK` followed by header lines that never end.
    EndlessHeaders,
    /// `Content-Encoding: gzip` is added to the response head; the body is unchanged.
    Gzip,
    /// The proxy answers `307 Temporary Redirect` with this `Location`.
    Redirect { location: String },
    /// The proxy answers `400` with an XML error that holds an entity-expansion bomb.
    XmlBomb,
    /// The response body is re-framed as `Transfer-Encoding: chunked`, without a
    /// `Content-Length` (as some stores and proxies answer); same payload.
    Rechunk,
    /// The proxy answers `400` with an S3 error whose message echoes the request's
    /// `Authorization` and `x-amz-security-token` headers (a store that leaks them).
    EchoAuthorization,
    /// The proxy answers a listing with an empty, complete `ListBucketResult` (a listing
    /// that lags behind the bucket, as eventually consistent ones do).
    EmptyListing,
    /// The proxy answers `200` with `Content-Length: abc`, then closes.
    BadContentLength,
    /// The proxy answers `200` with two different `Content-Length` headers, then closes.
    ConflictingContentLength,
    /// The request head is taken, and then nothing more is read from the client (a store
    /// that accepts a PUT's headers and never reads its body); no answer comes.
    NoReadBody,
    /// A successful response keeps its head (and so the object's metadata) but its body is
    /// replaced by an LZ4 frame a store should never send (the upstream's body is dropped).
    Lz4Bomb(Bomb),
}

/// The LZ4 frames of [`Fault::Lz4Bomb`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Bomb {
    /// 1024 blocks of 64 KB of zeros, 267 bytes each: 64 MiB from 277 KB.
    Zeros,
    /// A frame declaring 4 MB blocks (a decoder that trusts it allocates 8 MB), holding one
    /// stored 64 KB block.
    BigBlocks,
    /// 128 stored blocks of 64 KB of noise (8 MiB, what it claims: ratio 1), chunked
    /// without a Content-Length.
    Flood,
}

impl Fault {
    /// `503 SlowDown`, the usual S3 throttling answer.
    pub fn slow_down() -> Fault {
        Fault::ErrorStatus { status: 503, code: "SlowDown".to_string() }
    }

    /// The name the fault is counted under in `ProxyStats::faults`.
    pub fn kind(&self) -> &'static str {
        match self {
            Fault::ErrorStatus { .. } => "error_status",
            Fault::Reset => "reset",
            Fault::TruncateBody { .. } => "truncate_body",
            Fault::CorruptBody => "corrupt_body",
            Fault::StallBeforeHeaders => "stall_before_headers",
            Fault::StallMidBody { .. } => "stall_mid_body",
            Fault::DripBody { .. } => "drip_body",
            Fault::SkewDate { .. } => "skew_date",
            Fault::HugeContentLength => "huge_content_length",
            Fault::EndlessHeaders => "endless_headers",
            Fault::Gzip => "gzip",
            Fault::Redirect { .. } => "redirect",
            Fault::XmlBomb => "xml_bomb",
            Fault::Rechunk => "rechunk",
            Fault::EchoAuthorization => "echo_authorization",
            Fault::EmptyListing => "empty_listing",
            Fault::BadContentLength => "bad_content_length",
            Fault::ConflictingContentLength => "conflicting_content_length",
            Fault::NoReadBody => "no_read_body",
            Fault::Lz4Bomb(Bomb::Zeros) => "lz4_zeros",
            Fault::Lz4Bomb(Bomb::BigBlocks) => "lz4_big_blocks",
            Fault::Lz4Bomb(Bomb::Flood) => "lz4_flood",
        }
    }

    /// Whether the proxy answers the request itself instead of forwarding it.
    pub(crate) fn is_local(&self) -> bool {
        matches!(
            self,
            Fault::ErrorStatus { .. }
                | Fault::Reset
                | Fault::HugeContentLength
                | Fault::EndlessHeaders
                | Fault::Redirect { .. }
                | Fault::XmlBomb
                | Fault::EchoAuthorization
                | Fault::EmptyListing
                | Fault::BadContentLength
                | Fault::ConflictingContentLength
                | Fault::NoReadBody
        )
    }
}

/// A fault and the requests it applies to. The first rule (in order) whose filter
/// matches a request and whose draw hits decides; a request gets at most one fault.
#[derive(Clone, Debug)]
pub struct FaultRule {
    pub fault: Fault,
    /// The part of the matching requests that get the fault (1.0: all, 0.0: none),
    /// drawn from the proxy's seeded PRNG.
    pub fraction: f64,
    /// Only requests with this method (case-insensitive; `None`, "ANY" or "*": all).
    pub method: Option<String>,
    /// Only requests whose target (path and query) contains this.
    pub path_contains: Option<String>,
}

impl FaultRule {
    /// The fault for every request.
    pub fn new(fault: Fault) -> FaultRule {
        FaultRule { fault, fraction: 1.0, method: None, path_contains: None }
    }

    pub fn with_fraction(mut self, fraction: f64) -> FaultRule {
        self.fraction = fraction;
        self
    }

    pub fn for_method(mut self, method: &str) -> FaultRule {
        self.method = Some(method.to_string());
        self
    }

    pub fn for_path(mut self, path_contains: &str) -> FaultRule {
        self.path_contains = Some(path_contains.to_string());
        self
    }

    pub(crate) fn matches(&self, method: &str, target: &str) -> bool {
        let method_ok = match self.method.as_deref() {
            None | Some("ANY") | Some("any") | Some("*") | Some("") => true,
            Some(m) => m.eq_ignore_ascii_case(method),
        };
        method_ok && self.path_contains.as_deref().is_none_or(|p| target.contains(p))
    }
}
