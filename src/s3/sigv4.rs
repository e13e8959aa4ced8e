//! AWS Signature Version 4 for S3, as pure functions.
//!
//! Nothing here does I/O or reads the clock: the caller passes the time in, so
//! every step can be checked against fixed vectors. S3 differs from the generic
//! SigV4 rules in two ways that matter here: the path is signed exactly as sent
//! (no `.`/`..`/`//` normalisation, no second encoding), and header-signed
//! requests must carry `x-amz-content-sha256` (the caller signs it like any
//! other header).
//!
//! The steps, each a public function so they can be tested on their own:
//! `canonical_request` → `string_to_sign` → `signing_key` → `signature`.

use crate::s3::credentials::Credentials;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use std::fmt;
use std::time::SystemTime;

/// The only algorithm this module speaks.
pub(crate) const ALGORITHM: &str = "AWS4-HMAC-SHA256";
/// Hex SHA-256 of the empty body.
pub const EMPTY_SHA256: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

const HEX_UPPER: &[u8; 16] = b"0123456789ABCDEF";

/// S3 URI encoding: keep A-Z a-z 0-9 - . _ ~ ; keep '/' unless encode_slash; every other UTF-8 byte as %XX (uppercase hex). Space is %20, never '+'.
pub(crate) fn uri_encode(input: &str, encode_slash: bool) -> String {
    let mut out = String::with_capacity(input.len());
    for &b in input.as_bytes() {
        let keep = b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') || (b == b'/' && !encode_slash);
        if keep {
            out.push(char::from(b));
        } else {
            out.push('%');
            out.push(char::from(HEX_UPPER[usize::from(b >> 4)]));
            out.push(char::from(HEX_UPPER[usize::from(b & 0x0f)]));
        }
    }
    out
}

/// Canonical query string from raw (unencoded) pairs: encode keys and values with uri_encode(.., true), sort by (encoded key, encoded value) pairs (NOT by the joined "k=v" string), join "k=v" with '&', keep '=' for empty values.
pub(crate) fn canonical_query(pairs: &[(&str, &str)]) -> String {
    let mut encoded: Vec<(String, String)> =
        pairs.iter().map(|(k, v)| (uri_encode(k, true), uri_encode(v, true))).collect();
    // Sorting the joined "k=v" would put "a-b=1" before "a=1" ('-' < '='); SigV4 sorts by key first.
    encoded.sort();
    let mut out = String::new();
    for (i, (k, v)) in encoded.iter().enumerate() {
        if i > 0 {
            out.push('&');
        }
        out.push_str(k);
        out.push('=');
        out.push_str(v);
    }
    out
}

/// Hex SHA-256, the form SigV4 uses for payload and canonical-request hashes.
pub(crate) fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

/// The signed parts of a request. `path` is the already-encoded path exactly as it goes on the wire (S3: no normalisation, single encoding). `query` holds raw pairs. `headers` are the headers to sign (must include `host`; any case; repeated names allowed: join values with ',' in order; trim values and collapse inner runs of spaces). `payload_hash` is the hex SHA-256 of the body.
///
/// For [`sign_headers`], leave out `x-amz-date`, `x-amz-security-token` and
/// `authorization`: the signer owns them and ignores any passed here.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Request<'a> {
    pub(crate) method: &'a str,
    pub(crate) path: &'a str,
    pub(crate) query: &'a [(&'a str, &'a str)],
    pub(crate) headers: &'a [(&'a str, &'a str)],
    pub(crate) payload_hash: &'a str,
}

/// Where a signature is valid.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Scope<'a> {
    pub(crate) region: &'a str,
    pub(crate) service: &'a str,
}

/// Canonical header block plus the matching `SignedHeaders` list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CanonicalHeaders {
    /// One `name:value\n` line per distinct name, sorted by name.
    pub(crate) lines: String,
    /// Lower-case names joined with ';', sorted.
    pub(crate) signed: String,
}

/// Canonicalises headers: lower-case names, trimmed values with runs of spaces
/// collapsed, repeated names merged with ',' in their original order.
pub(crate) fn canonical_headers(headers: &[(&str, &str)]) -> CanonicalHeaders {
    let mut normalised: Vec<(String, String)> =
        headers.iter().map(|(n, v)| (n.trim().to_ascii_lowercase(), trim_header_value(v))).collect();
    // Stable sort: values of a repeated name must keep their request order.
    normalised.sort_by(|a, b| a.0.cmp(&b.0));

    let mut lines = String::new();
    let mut signed = String::new();
    let mut prev: Option<&str> = None;
    for (name, value) in &normalised {
        if prev == Some(name.as_str()) {
            // Replace the pending newline: same header, next value.
            lines.pop();
            lines.push(',');
        } else {
            if prev.is_some() {
                signed.push(';');
            }
            signed.push_str(name);
            lines.push_str(name);
            lines.push(':');
        }
        lines.push_str(value);
        lines.push('\n');
        prev = Some(name.as_str());
    }
    CanonicalHeaders { lines, signed }
}

/// SigV4 "Trimall": trim the ends, collapse inner runs of spaces to one.
fn trim_header_value(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for word in value.trim_matches([' ', '\t']).split(' ').filter(|w| !w.is_empty()) {
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(word);
    }
    out
}

/// The canonical request: method, path, canonical query, header lines, blank
/// line, signed header names, payload hash — joined with '\n'.
pub(crate) fn canonical_request(
    method: &str,
    encoded_path: &str,
    canonical_query: &str,
    headers: &CanonicalHeaders,
    payload_hash: &str,
) -> String {
    format!("{method}\n{encoded_path}\n{canonical_query}\n{}\n{}\n{payload_hash}", headers.lines, headers.signed)
}

/// `YYYYMMDD/region/service/aws4_request`.
pub(crate) fn credential_scope(date: &str, scope: &Scope) -> String {
    format!("{date}/{}/{}/aws4_request", scope.region, scope.service)
}

/// The string to sign: algorithm, timestamp, scope and the hash of the canonical request.
pub(crate) fn string_to_sign(amz_date: &str, credential_scope: &str, canonical_request: &str) -> String {
    format!("{ALGORITHM}\n{amz_date}\n{credential_scope}\n{}", sha256_hex(canonical_request.as_bytes()))
}

/// The derived key for one day, region and service (`date` is `YYYYMMDD`).
pub(crate) fn signing_key(secret: &str, date: &str, region: &str, service: &str) -> [u8; 32] {
    let k_date = hmac_sha256(format!("AWS4{secret}").as_bytes(), date.as_bytes());
    let k_region = hmac_sha256(&k_date, region.as_bytes());
    let k_service = hmac_sha256(&k_region, service.as_bytes());
    hmac_sha256(&k_service, b"aws4_request")
}

/// Hex HMAC-SHA256 of the string to sign under the derived key.
pub(crate) fn signature(signing_key: &[u8; 32], string_to_sign: &str) -> String {
    hex::encode(hmac_sha256(signing_key, string_to_sign.as_bytes()))
}

fn hmac_sha256(key: &[u8], data: &[u8]) -> [u8; 32] {
    // HMAC accepts keys of any length (long ones are hashed), so this cannot fail.
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(key) else { unreachable!("HMAC-SHA256 takes keys of any length") };
    mac.update(data);
    mac.finalize().into_bytes().into()
}

/// Result of header signing. `headers` are the headers the caller must ADD to the request (lower-case names): `x-amz-date`, `x-amz-security-token` when the credentials carry a token, and `authorization`. The signer signs x-amz-date and the token itself (add them to the signed set). The intermediate strings are kept for debugging SignatureDoesNotMatch errors.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct HeaderSignature {
    pub(crate) headers: Vec<(&'static str, String)>,
    pub(crate) canonical_request: String,
    pub(crate) string_to_sign: String,
}

impl HeaderSignature {
    /// The value of one of the headers to add, by lower-case name.
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| *n == name).map(|(_, v)| v.as_str())
    }
}

// The session token is a credential: keep it out of logs, including inside the
// canonical request where it is one of the signed headers.
impl fmt::Debug for HeaderSignature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let token = self.header("x-amz-security-token");
        let headers: Vec<(&str, String)> = self.headers.iter().map(|(n, v)| (*n, redact(v, token))).collect();
        f.debug_struct("HeaderSignature")
            .field("headers", &headers)
            .field("canonical_request", &redact(&self.canonical_request, token))
            .field("string_to_sign", &self.string_to_sign)
            .finish()
    }
}

/// `text` with every occurrence of `secret` replaced by `<redacted>`.
pub(crate) fn redact(text: &str, secret: Option<&str>) -> String {
    match secret {
        Some(s) if !s.is_empty() => text.replace(s, "<redacted>"),
        _ => text.to_owned(),
    }
}

/// Signs `req` for an `Authorization` header.
pub(crate) fn sign_headers(req: &Request, creds: &Credentials, scope: &Scope, time: SystemTime) -> HeaderSignature {
    let amz = amz_date(time);
    let date = &amz[..8];

    let mut to_sign: Vec<(&str, &str)> = req
        .headers
        .iter()
        .filter(|(n, _)| {
            let n = n.trim();
            !(n.eq_ignore_ascii_case("x-amz-date")
                || n.eq_ignore_ascii_case("x-amz-security-token")
                || n.eq_ignore_ascii_case("authorization"))
        })
        .copied()
        .collect();
    to_sign.push(("x-amz-date", &amz));
    if let Some(token) = &creds.session_token {
        // S3 wants the token signed (the suite's get-vanilla-with-session-token agrees).
        to_sign.push(("x-amz-security-token", token));
    }

    let headers = canonical_headers(&to_sign);
    let canonical_request =
        canonical_request(req.method, req.path, &canonical_query(req.query), &headers, req.payload_hash);
    let scope_str = credential_scope(date, scope);
    let string_to_sign = string_to_sign(&amz, &scope_str, &canonical_request);
    let key = signing_key(&creds.secret_access_key, date, scope.region, scope.service);
    let sig = signature(&key, &string_to_sign);
    let authorization = format!(
        "{ALGORITHM} Credential={}/{scope_str}, SignedHeaders={}, Signature={sig}",
        creds.access_key_id, headers.signed
    );

    let mut out = vec![("x-amz-date", amz.clone())];
    if let Some(token) = &creds.session_token {
        out.push(("x-amz-security-token", token.clone()));
    }
    out.push(("authorization", authorization));
    HeaderSignature { headers: out, canonical_request, string_to_sign }
}

/// The `x-amz-date` form of a time, `20150830T123600Z` (UTC, whole seconds rounded down).
pub(crate) fn amz_date(time: SystemTime) -> String {
    crate::calendar::Civil::from_system_time(time).amz_date()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::{Path, PathBuf};
    use std::time::{Duration, UNIX_EPOCH};

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    /// Days since 1970-01-01 for a civil date (inverse of `civil_from_days`).
    fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
        let y = if m <= 2 { y - 1 } else { y };
        let era = y.div_euclid(400);
        let yoe = y.rem_euclid(400);
        let m = i64::from(m);
        let mp = if m > 2 { m - 3 } else { m + 9 };
        let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
        era * 146_097 + doe - 719_468
    }

    /// "2015-08-30T12:36:00Z" -> SystemTime.
    fn parse_rfc3339(ts: &str) -> SystemTime {
        let n = |r: std::ops::Range<usize>| ts[r].parse::<i64>().unwrap();
        let days = days_from_civil(n(0..4), n(5..7) as u32, n(8..10) as u32);
        let secs = days * 86_400 + n(11..13) * 3600 + n(14..16) * 60 + n(17..19);
        at(u64::try_from(secs).unwrap())
    }

    // ---- uri_encode / canonical_query -------------------------------------------------

    #[test]
    fn uri_encode_keeps_only_unreserved() {
        let unreserved = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~";
        assert_eq!(uri_encode(unreserved, true), unreserved);
        assert_eq!(uri_encode("a b+c=d&e", true), "a%20b%2Bc%3Dd%26e");
        assert_eq!(uri_encode("!'()*", true), "%21%27%28%29%2A");
        assert_eq!(uri_encode("%41", true), "%2541", "'%' is data, not an escape");
        assert_eq!(uri_encode("ü/日本", false), "%C3%BC/%E6%97%A5%E6%9C%AC");
        assert_eq!(uri_encode("a/b", true), "a%2Fb");
        assert_eq!(uri_encode("/a//b/../c/", false), "/a//b/../c/", "no normalisation");
        assert_eq!(uri_encode("\u{7f}\u{0}:@", true), "%7F%00%3A%40");
        assert_eq!(uri_encode("", true), "");
    }

    #[test]
    fn canonical_query_sorts_by_encoded_key_then_value() {
        // By joined string "a-b=1" < "a=2" ('-' < '='); by key "a" < "a-b".
        assert_eq!(canonical_query(&[("a-b", "1"), ("a", "2")]), "a=2&a-b=1");
        // "b=" (encoded "b%3D") sorts after "b"; "b" with value "=x" must not jump ahead.
        assert_eq!(canonical_query(&[("b=", "1"), ("b", "=x")]), "b=%3Dx&b%3D=1");
        // Repeated keys: by value.
        assert_eq!(canonical_query(&[("k", "z"), ("k", "a"), ("k", "")]), "k=&k=a&k=z");
        // Upper case sorts before lower case (byte order).
        assert_eq!(canonical_query(&[("b", "1"), ("B", "2"), ("a", "3")]), "B=2&a=3&b=1");
        // Sub-resources without a value keep the '='.
        assert_eq!(canonical_query(&[("delete", "")]), "delete=");
        assert_eq!(canonical_query(&[]), "");
        assert_eq!(
            canonical_query(&[("list-type", "2"), ("prefix", "a b/ü"), ("continuation-token", "x+y=")]),
            "continuation-token=x%2By%3D&list-type=2&prefix=a%20b%2F%C3%BC"
        );
    }

    #[test]
    fn canonical_headers_trim_collapse_merge_sort() {
        let h = canonical_headers(&[
            ("Host", "example.com"),
            ("X-Amz-Meta-B", "  two   words  here "),
            ("x-amz-meta-a", "v2"),
            ("X-AMZ-META-A", "\tv1 "),
            ("My-Header", "\"a   b   c\""),
        ]);
        assert_eq!(h.lines, "host:example.com\nmy-header:\"a b c\"\nx-amz-meta-a:v2,v1\nx-amz-meta-b:two words here\n");
        assert_eq!(h.signed, "host;my-header;x-amz-meta-a;x-amz-meta-b");
        assert_eq!(canonical_headers(&[("h", "   ")]).lines, "h:\n");
    }

    // ---- dates ------------------------------------------------------------------------

    #[test]
    fn amz_date_formats_utc() {
        assert_eq!(amz_date(UNIX_EPOCH), "19700101T000000Z");
        assert_eq!(amz_date(at(1_440_938_160)), "20150830T123600Z");
        assert_eq!(amz_date(at(951_782_400)), "20000229T000000Z", "leap day, century leap year");
        assert_eq!(amz_date(at(1_709_251_199)), "20240229T235959Z", "last second of a leap day");
        assert_eq!(amz_date(at(1_709_251_200)), "20240301T000000Z");
        assert_eq!(amz_date(at(4_107_542_399)), "21000228T235959Z", "2100 is not a leap year");
        assert_eq!(amz_date(at(4_107_542_400)), "21000301T000000Z");
        assert_eq!(amz_date(at(1_767_225_599)), "20251231T235959Z");
        // Sub-second parts are truncated, not rounded.
        assert_eq!(amz_date(at(59) + Duration::from_millis(999)), "19700101T000059Z");
        assert_eq!(amz_date(UNIX_EPOCH - Duration::from_millis(1)), "19691231T235959Z");
    }

    #[test]
    fn amz_date_agrees_with_days_from_civil() {
        // Every 13th day from 1860 to 2260 (the nanosecond clock's range): every month,
        // leap rule and era boundary.
        for days in (-40_000_i64..106_000).step_by(13) {
            let secs = days * 86_400 + 3_723;
            let t = if secs >= 0 { at(secs as u64) } else { UNIX_EPOCH - Duration::from_secs(secs.unsigned_abs()) };
            let s = amz_date(t);
            let (y, m, d) = (s[0..4].parse().unwrap(), s[4..6].parse().unwrap(), s[6..8].parse().unwrap());
            assert_eq!(days_from_civil(y, m, d), days, "{s}");
            assert_eq!(&s[8..], "T010203Z");
        }
    }

    // ---- signing steps ----------------------------------------------------------------

    #[test]
    fn signing_key_matches_aws_docs_example() {
        // From the AWS "Examples of how to derive a signing key" page.
        let key = signing_key("wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", "20120215", "us-east-1", "iam");
        assert_eq!(hex::encode(key), "f4780e2d9f65fa895f9c67b32ce1baf0b0d8a43505a000a1a9e090d414db404d");
    }

    #[test]
    fn hmac_handles_keys_longer_than_a_block() {
        // RFC 4231 test case 6: 131-byte key.
        let key = [0xaa_u8; 131];
        let mac = hmac_sha256(&key, b"Test Using Larger Than Block-Size Key - Hash Key First");
        assert_eq!(hex::encode(mac), "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54");
    }

    #[test]
    fn steps_compose_for_get_vanilla() {
        let headers = canonical_headers(&[("Host", "example.amazonaws.com"), ("X-Amz-Date", "20150830T123600Z")]);
        let cr = canonical_request("GET", "/", "", &headers, EMPTY_SHA256);
        assert_eq!(
            cr,
            "GET\n/\n\nhost:example.amazonaws.com\nx-amz-date:20150830T123600Z\n\nhost;x-amz-date\n\
             e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        let scope = credential_scope("20150830", &Scope { region: "us-east-1", service: "service" });
        assert_eq!(scope, "20150830/us-east-1/service/aws4_request");
        let sts = string_to_sign("20150830T123600Z", &scope, &cr);
        assert_eq!(
            sts,
            "AWS4-HMAC-SHA256\n20150830T123600Z\n20150830/us-east-1/service/aws4_request\n\
             bb579772317eb040ac9ed261061d46c1f17a8133879d6129b6e1c25292927e63"
        );
        let key = signing_key("wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", "20150830", "us-east-1", "service");
        assert_eq!(signature(&key, &sts), "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31");
    }

    fn test_creds(token: Option<&str>) -> Credentials {
        Credentials {
            access_key_id: "AKIDEXAMPLE".into(),
            secret_access_key: "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY".into(),
            session_token: token.map(str::to_owned),
        }
    }

    #[test]
    fn sign_headers_owns_date_token_and_authorization() {
        let req = Request {
            method: "GET",
            path: "/",
            query: &[],
            headers: &[
                ("Host", "example.amazonaws.com"),
                ("X-Amz-Date", "19990101T000000Z"),
                ("Authorization", "stale"),
                ("x-amz-security-token", "stale"),
            ],
            payload_hash: EMPTY_SHA256,
        };
        let sig = sign_headers(
            &req,
            &test_creds(Some("tok")),
            &Scope { region: "us-east-1", service: "service" },
            at(1_440_938_160),
        );
        let names: Vec<&str> = sig.headers.iter().map(|(n, _)| *n).collect();
        assert_eq!(names, ["x-amz-date", "x-amz-security-token", "authorization"]);
        assert_eq!(sig.header("x-amz-date"), Some("20150830T123600Z"));
        assert!(!sig.canonical_request.contains("stale"));
        assert!(!sig.canonical_request.contains("1999"));
        assert!(sig.canonical_request.contains("\n\nhost;x-amz-date;x-amz-security-token\n"));
    }

    #[test]
    fn debug_never_shows_secrets() {
        let secret = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";
        let token = "SESSION/TOKEN+secret==";
        let creds = test_creds(Some(token));
        let scope = Scope { region: "garage", service: "s3" };
        let req = Request {
            method: "GET",
            path: "/bucket/key",
            query: &[],
            headers: &[("host", "127.0.0.1:3900")],
            payload_hash: EMPTY_SHA256,
        };
        let header_sig = sign_headers(&req, &creds, &scope, at(1_440_938_160));
        // The token really is in there (so the redaction is doing something)...
        assert!(header_sig.canonical_request.contains(token));
        for dbg in [format!("{creds:?}"), format!("{header_sig:?}"), format!("{req:?}")] {
            assert!(!dbg.contains(secret), "{dbg}");
            assert!(!dbg.contains(&uri_encode(secret, true)), "{dbg}");
            assert!(!dbg.contains(token), "{dbg}");
            assert!(!dbg.contains(&uri_encode(token, true)), "{dbg}");
        }
        assert!(format!("{header_sig:?}").contains("<redacted>"));
    }

    // ---- the official AWS SigV4 test suite ----------------------------------------------

    fn suite_dir() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/sigv4/aws-c-auth-v4/v4")
    }

    fn percent_decode(s: &str) -> String {
        let b = s.as_bytes();
        let mut out = Vec::with_capacity(b.len());
        let mut i = 0;
        while i < b.len() {
            if b[i] == b'%' && i + 2 < b.len() {
                let hex = std::str::from_utf8(&b[i + 1..i + 3]).unwrap();
                out.push(u8::from_str_radix(hex, 16).unwrap());
                i += 3;
            } else {
                out.push(b[i]);
                i += 1;
            }
        }
        String::from_utf8(out).unwrap()
    }

    fn parse_query(q: &str) -> Vec<(String, String)> {
        q.split('&')
            .filter(|p| !p.is_empty())
            .map(|p| {
                let (k, v) = p.split_once('=').unwrap_or((p, ""));
                (percent_decode(k), percent_decode(v))
            })
            .collect()
    }

    struct SuiteRequest {
        method: String,
        path: String,
        query: Vec<(String, String)>,
        headers: Vec<(String, String)>,
        body: Vec<u8>,
    }

    /// Parses the suite's raw HTTP request: request line, headers (with obs-fold
    /// continuation lines), blank line, body.
    fn parse_request(text: &str) -> SuiteRequest {
        let text = text.replace("\r\n", "\n");
        let (head, body) = text.split_once("\n\n").unwrap_or((text.trim_end_matches('\n'), ""));
        let mut lines = head.lines();
        let request_line = lines.next().unwrap();
        // The target may contain spaces ("/example space/"): it runs to the last space.
        let (method, rest) = request_line.split_once(' ').unwrap();
        let (target, _version) = rest.rsplit_once(' ').unwrap();
        let (path, query) = target.split_once('?').unwrap_or((target, ""));
        let mut headers: Vec<(String, String)> = Vec::new();
        for line in lines {
            if line.starts_with([' ', '\t']) {
                // Continuation of the previous value; the signer collapses the spaces.
                let last = headers.last_mut().unwrap();
                last.1.push(' ');
                last.1.push_str(line);
            } else {
                let (n, v) = line.split_once(':').unwrap();
                headers.push((n.to_owned(), v.to_owned()));
            }
        }
        SuiteRequest {
            method: method.to_owned(),
            path: path.to_owned(),
            // The suite writes some queries already encoded (%E1%88%B4) and some raw (ሴ).
            query: parse_query(query),
            headers,
            body: body.as_bytes().to_vec(),
        }
    }

    /// True when RFC 3986 dot-segment removal and '//' merging leave the path unchanged.
    fn already_normal(path: &str) -> bool {
        let segments: Vec<&str> = path.split('/').skip(1).collect();
        segments.iter().enumerate().all(|(i, s)| *s != "." && *s != ".." && (!s.is_empty() || i + 1 == segments.len()))
    }

    fn read(dir: &Path, file: &str) -> String {
        std::fs::read_to_string(dir.join(file)).unwrap_or_else(|e| panic!("{}/{file}: {e}", dir.display()))
    }

    #[test]
    fn aws_sigv4_test_suite() {
        let root = suite_dir();
        let mut dirs: Vec<PathBuf> = std::fs::read_dir(&root)
            .unwrap_or_else(|e| panic!("suite not found at {}: {e}", root.display()))
            .map(|e| e.unwrap().path())
            .filter(|p| p.is_dir())
            .collect();
        dirs.sort();

        let mut header_checked = 0;
        let mut skipped: Vec<String> = Vec::new();
        for dir in &dirs {
            let name = dir.file_name().unwrap().to_string_lossy().into_owned();
            let ctx: serde_json::Value = serde_json::from_str(&read(dir, "context.json")).unwrap();
            let req = parse_request(&read(dir, "request.txt"));

            // S3 signs the path as sent; the *-normalized cases expect RFC 3986
            // normalisation, and their *-unnormalized twins cover S3's behaviour.
            if name.ends_with("-normalized") {
                skipped.push(name);
                continue;
            }
            // Same reason: a case that asks for normalisation on a path it would change.
            if ctx["normalize"].as_bool() == Some(true) && !already_normal(&req.path) {
                skipped.push(name);
                continue;
            }
            // omit_session_token means "append the token after signing without
            // signing it" (for services that reject a signed token). S3 signs the
            // token, which post-sts-header-before checks.
            if ctx["omit_session_token"].as_bool() == Some(true) {
                skipped.push(name);
                continue;
            }

            let c = &ctx["credentials"];
            let creds = Credentials {
                access_key_id: c["access_key_id"].as_str().unwrap().to_owned(),
                secret_access_key: c["secret_access_key"].as_str().unwrap().to_owned(),
                session_token: c["token"].as_str().map(str::to_owned),
            };
            let scope = Scope { region: ctx["region"].as_str().unwrap(), service: ctx["service"].as_str().unwrap() };
            let time = parse_rfc3339(ctx["timestamp"].as_str().unwrap());
            // The expected canonical requests use the body hash when sign_body is
            // set and the empty-body hash otherwise, for headers and query alike.
            let payload_hash =
                if ctx["sign_body"].as_bool().unwrap() { sha256_hex(&req.body) } else { EMPTY_SHA256.to_owned() };
            let path = uri_encode(&req.path, false);
            let query: Vec<(&str, &str)> = req.query.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
            let mut headers: Vec<(&str, &str)> = req.headers.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();

            // Header variant: with sign_body the suite also signs x-amz-content-sha256,
            // as S3 requires for every header-signed request.
            if ctx["sign_body"].as_bool().unwrap() {
                headers.push(("X-Amz-Content-SHA256", &payload_hash));
            }
            let signed_headers = sign_headers(
                &Request {
                    method: &req.method,
                    path: &path,
                    query: &query,
                    headers: &headers,
                    payload_hash: &payload_hash,
                },
                &creds,
                &scope,
                time,
            );
            assert_eq!(signed_headers.canonical_request, read(dir, "header-canonical-request.txt"), "{name}");
            assert_eq!(signed_headers.string_to_sign, read(dir, "header-string-to-sign.txt"), "{name}");
            let auth = signed_headers.header("authorization").unwrap();
            let (_, sig) = auth.rsplit_once("Signature=").unwrap();
            assert_eq!(sig, read(dir, "header-signature.txt"), "{name}");
            let signed = parse_request(&read(dir, "header-signed-request.txt"));
            let expected_auth =
                signed.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case("authorization")).map(|(_, v)| v.as_str());
            assert_eq!(Some(auth), expected_auth, "{name}");
            header_checked += 1;
        }

        skipped.sort();
        assert_eq!(
            skipped,
            [
                "get-relative-normalized",
                "get-relative-relative-normalized",
                "get-slash-dot-slash-normalized",
                "get-slash-normalized",
                "get-slash-pointless-dot-normalized",
                "get-slashes-normalized",
                "get-space-normalized",
                "post-sts-header-after",
            ]
        );
        // Guards against a moved fixture directory passing vacuously.
        assert!(header_checked >= 30, "only {header_checked} header cases checked");
    }

    // ---- botocore cross-check -----------------------------------------------------------

    /// Generated by tests/tools/botocore_sigv4_vectors.py (botocore 1.43.11).
    /// Header case: PUT of BOTO_BODY with x-amz-content-sha256 and
    /// x-amz-meta-outputid signed.
    struct BotoCase {
        name: &'static str,
        key: &'static str,
        token: bool,
        path: &'static str,
        query: &'static [(&'static str, &'static str)],
        authorization: &'static str,
    }

    const BOTO_CASES: &[BotoCase] = &[
        BotoCase {
            name: "space",
            key: "dir/with space.txt",
            token: false,
            path: "/bucket/dir/with%20space.txt",
            query: &[],
            authorization: "AWS4-HMAC-SHA256 Credential=GK31c2f218a2e44f485b94239e/20240229/garage/s3/aws4_request, SignedHeaders=host;x-amz-content-sha256;x-amz-date;x-amz-meta-outputid, Signature=a0c8ac9a2eca2ad98b09ef9eb15dd311d92d6af1daa8271fbe8f5e4ae0daa785",
        },
        BotoCase {
            name: "space_token",
            key: "dir/with space.txt",
            token: true,
            path: "/bucket/dir/with%20space.txt",
            query: &[],
            authorization: "AWS4-HMAC-SHA256 Credential=GK31c2f218a2e44f485b94239e/20240229/garage/s3/aws4_request, SignedHeaders=host;x-amz-content-sha256;x-amz-date;x-amz-meta-outputid;x-amz-security-token, Signature=0903fdba961ef73e8fca05282425f49b70b8603ac0169904a2dc51543f8bfd32",
        },
        BotoCase {
            name: "plus",
            key: "a+b",
            token: false,
            path: "/bucket/a%2Bb",
            query: &[],
            authorization: "AWS4-HMAC-SHA256 Credential=GK31c2f218a2e44f485b94239e/20240229/garage/s3/aws4_request, SignedHeaders=host;x-amz-content-sha256;x-amz-date;x-amz-meta-outputid, Signature=4c68099a929abfd02867a376a6927760e4a399986166fc09c39f220f0383be49",
        },
        BotoCase {
            name: "plus_token",
            key: "a+b",
            token: true,
            path: "/bucket/a%2Bb",
            query: &[],
            authorization: "AWS4-HMAC-SHA256 Credential=GK31c2f218a2e44f485b94239e/20240229/garage/s3/aws4_request, SignedHeaders=host;x-amz-content-sha256;x-amz-date;x-amz-meta-outputid;x-amz-security-token, Signature=b0853c4cfa078c9dfeedc49ede721450236b7ef952d859356835176f4e04d897",
        },
        BotoCase {
            name: "equals_amp",
            key: "k=v&x=y",
            token: false,
            path: "/bucket/k%3Dv%26x%3Dy",
            query: &[],
            authorization: "AWS4-HMAC-SHA256 Credential=GK31c2f218a2e44f485b94239e/20240229/garage/s3/aws4_request, SignedHeaders=host;x-amz-content-sha256;x-amz-date;x-amz-meta-outputid, Signature=1d284acec4b4e6dde659b73e4eff7ee62e10927f8dfb16e0ea460dc6b810ac1a",
        },
        BotoCase {
            name: "equals_amp_token",
            key: "k=v&x=y",
            token: true,
            path: "/bucket/k%3Dv%26x%3Dy",
            query: &[],
            authorization: "AWS4-HMAC-SHA256 Credential=GK31c2f218a2e44f485b94239e/20240229/garage/s3/aws4_request, SignedHeaders=host;x-amz-content-sha256;x-amz-date;x-amz-meta-outputid;x-amz-security-token, Signature=234930e3ed49f14ebf34d148517c7e3ba428f3cc6ff196fa9c6fa29018717986",
        },
        BotoCase {
            name: "sub_delims",
            key: "!'()*",
            token: false,
            path: "/bucket/%21%27%28%29%2A",
            query: &[],
            authorization: "AWS4-HMAC-SHA256 Credential=GK31c2f218a2e44f485b94239e/20240229/garage/s3/aws4_request, SignedHeaders=host;x-amz-content-sha256;x-amz-date;x-amz-meta-outputid, Signature=d6f363fe64205c33cdb531435a1ad0fea5b099f16cf9769df5dd11398406b725",
        },
        BotoCase {
            name: "sub_delims_token",
            key: "!'()*",
            token: true,
            path: "/bucket/%21%27%28%29%2A",
            query: &[],
            authorization: "AWS4-HMAC-SHA256 Credential=GK31c2f218a2e44f485b94239e/20240229/garage/s3/aws4_request, SignedHeaders=host;x-amz-content-sha256;x-amz-date;x-amz-meta-outputid;x-amz-security-token, Signature=8263bd0a343a4c1d528f152251d19cfc1a3c35886a318caebaaa11908f9290f0",
        },
        BotoCase {
            name: "utf8",
            key: "ü/日本",
            token: false,
            path: "/bucket/%C3%BC/%E6%97%A5%E6%9C%AC",
            query: &[],
            authorization: "AWS4-HMAC-SHA256 Credential=GK31c2f218a2e44f485b94239e/20240229/garage/s3/aws4_request, SignedHeaders=host;x-amz-content-sha256;x-amz-date;x-amz-meta-outputid, Signature=bde621f941e05e5053f49aabea5cc74a2add362aac20ed33a60a4dccbf57e7bb",
        },
        BotoCase {
            name: "utf8_token",
            key: "ü/日本",
            token: true,
            path: "/bucket/%C3%BC/%E6%97%A5%E6%9C%AC",
            query: &[],
            authorization: "AWS4-HMAC-SHA256 Credential=GK31c2f218a2e44f485b94239e/20240229/garage/s3/aws4_request, SignedHeaders=host;x-amz-content-sha256;x-amz-date;x-amz-meta-outputid;x-amz-security-token, Signature=b3d86e7da1c70b81dac30fd6a0910ae3b28871a9230fc2fb8f81a0c3c79884f3",
        },
        BotoCase {
            name: "double_slash",
            key: "a//b",
            token: false,
            path: "/bucket/a//b",
            query: &[],
            authorization: "AWS4-HMAC-SHA256 Credential=GK31c2f218a2e44f485b94239e/20240229/garage/s3/aws4_request, SignedHeaders=host;x-amz-content-sha256;x-amz-date;x-amz-meta-outputid, Signature=b6ab5775989c31600a9fc4adda673b5bd3175d91eb68c86413ecddefc672779c",
        },
        BotoCase {
            name: "double_slash_token",
            key: "a//b",
            token: true,
            path: "/bucket/a//b",
            query: &[],
            authorization: "AWS4-HMAC-SHA256 Credential=GK31c2f218a2e44f485b94239e/20240229/garage/s3/aws4_request, SignedHeaders=host;x-amz-content-sha256;x-amz-date;x-amz-meta-outputid;x-amz-security-token, Signature=7165aa5b5d2473ce4d72fcc02adfabb8f7c47e731fce524206a9e28047033ecd",
        },
        BotoCase {
            name: "dot_segments",
            key: "a/../b",
            token: false,
            path: "/bucket/a/../b",
            query: &[],
            authorization: "AWS4-HMAC-SHA256 Credential=GK31c2f218a2e44f485b94239e/20240229/garage/s3/aws4_request, SignedHeaders=host;x-amz-content-sha256;x-amz-date;x-amz-meta-outputid, Signature=8708405e1913f5c70a64b08123fe1cceb3b5572736c0a9c215bdc5cadce58f18",
        },
        BotoCase {
            name: "dot_segments_token",
            key: "a/../b",
            token: true,
            path: "/bucket/a/../b",
            query: &[],
            authorization: "AWS4-HMAC-SHA256 Credential=GK31c2f218a2e44f485b94239e/20240229/garage/s3/aws4_request, SignedHeaders=host;x-amz-content-sha256;x-amz-date;x-amz-meta-outputid;x-amz-security-token, Signature=2f760bf349765ab1fe2eb6a70d7a0726e51554b298dbccd2dd82236fc3f04ffb",
        },
        BotoCase {
            name: "percent",
            key: "100%",
            token: false,
            path: "/bucket/100%25",
            query: &[],
            authorization: "AWS4-HMAC-SHA256 Credential=GK31c2f218a2e44f485b94239e/20240229/garage/s3/aws4_request, SignedHeaders=host;x-amz-content-sha256;x-amz-date;x-amz-meta-outputid, Signature=ba0a6ed5074904d4220151b8c80a737134606c960d910ff1c080b047f30210c1",
        },
        BotoCase {
            name: "percent_token",
            key: "100%",
            token: true,
            path: "/bucket/100%25",
            query: &[],
            authorization: "AWS4-HMAC-SHA256 Credential=GK31c2f218a2e44f485b94239e/20240229/garage/s3/aws4_request, SignedHeaders=host;x-amz-content-sha256;x-amz-date;x-amz-meta-outputid;x-amz-security-token, Signature=103d5d4fdff816847ed2d9d6db093b8dc37c7d28e990bb68e60b482578d6b1c3",
        },
        BotoCase {
            name: "tilde",
            key: "~user",
            token: false,
            path: "/bucket/~user",
            query: &[],
            authorization: "AWS4-HMAC-SHA256 Credential=GK31c2f218a2e44f485b94239e/20240229/garage/s3/aws4_request, SignedHeaders=host;x-amz-content-sha256;x-amz-date;x-amz-meta-outputid, Signature=2dddeeebb1b721d8b072093696c1b442dd17f05091133c1d4761a36d64278354",
        },
        BotoCase {
            name: "tilde_token",
            key: "~user",
            token: true,
            path: "/bucket/~user",
            query: &[],
            authorization: "AWS4-HMAC-SHA256 Credential=GK31c2f218a2e44f485b94239e/20240229/garage/s3/aws4_request, SignedHeaders=host;x-amz-content-sha256;x-amz-date;x-amz-meta-outputid;x-amz-security-token, Signature=68d5a4453354669b1455df351ee85cc0569312a583d1e8b36b5ed47070158d36",
        },
        BotoCase {
            name: "everything",
            key: " +=&!'()*ü/日本//./../%~-._:@,;$#?[]",
            token: false,
            path: "/bucket/%20%2B%3D%26%21%27%28%29%2A%C3%BC/%E6%97%A5%E6%9C%AC//./../%25~-._%3A%40%2C%3B%24%23%3F%5B%5D",
            query: &[("response-content-disposition", "attachment; filename=\"a b+c.txt\""), ("versionId", "")],
            authorization: "AWS4-HMAC-SHA256 Credential=GK31c2f218a2e44f485b94239e/20240229/garage/s3/aws4_request, SignedHeaders=host;x-amz-content-sha256;x-amz-date;x-amz-meta-outputid, Signature=ed2a896fcebf472d1c60ca916ab30468489081aed7849b2fe181caa5e19eb2c2",
        },
        BotoCase {
            name: "everything_token",
            key: " +=&!'()*ü/日本//./../%~-._:@,;$#?[]",
            token: true,
            path: "/bucket/%20%2B%3D%26%21%27%28%29%2A%C3%BC/%E6%97%A5%E6%9C%AC//./../%25~-._%3A%40%2C%3B%24%23%3F%5B%5D",
            query: &[("response-content-disposition", "attachment; filename=\"a b+c.txt\""), ("versionId", "")],
            authorization: "AWS4-HMAC-SHA256 Credential=GK31c2f218a2e44f485b94239e/20240229/garage/s3/aws4_request, SignedHeaders=host;x-amz-content-sha256;x-amz-date;x-amz-meta-outputid;x-amz-security-token, Signature=0c287ef560ec8be36f224ba924142468003037bb92331ab9775557f9d6a8cf7d",
        },
    ];

    const BOTO_ACCESS_KEY: &str = "GK31c2f218a2e44f485b94239e";
    const BOTO_SECRET_KEY: &str = "b892c0665f0ada8a4755dae98baa3b133590e11dae3bcc1f9d769d67f16c3835";
    const BOTO_TOKEN: &str = "FQoGZXIvYXdzE//////////+session/token=";
    const BOTO_BODY: &[u8] = b"hello, cache\n";
    const BOTO_TIME: &str = "2024-02-29T23:59:59Z";

    #[test]
    fn botocore_s3_cross_check() {
        assert_eq!(BOTO_CASES.len(), 20);
        let scope = Scope { region: "garage", service: "s3" };
        let time = parse_rfc3339(BOTO_TIME);
        let body_hash = sha256_hex(BOTO_BODY);
        for case in BOTO_CASES {
            let name = case.name;
            let creds = Credentials {
                access_key_id: BOTO_ACCESS_KEY.into(),
                secret_access_key: BOTO_SECRET_KEY.into(),
                session_token: case.token.then(|| BOTO_TOKEN.to_owned()),
            };
            // Our encoding of the key, path-style, must be what botocore put on the wire.
            let path = format!("/bucket/{}", uri_encode(case.key, false));
            assert_eq!(path, case.path, "{name}");

            let header = sign_headers(
                &Request {
                    method: "PUT",
                    path: &path,
                    query: case.query,
                    headers: &[
                        ("host", "127.0.0.1:3900"),
                        ("x-amz-content-sha256", &body_hash),
                        ("x-amz-meta-outputid", "  out   id  "),
                    ],
                    payload_hash: &body_hash,
                },
                &creds,
                &scope,
                time,
            );
            assert_eq!(header.header("authorization"), Some(case.authorization), "{name}");
            assert_eq!(header.header("x-amz-date"), Some("20240229T235959Z"), "{name}");
        }
    }
}
