//! HTTP/1.1 heads, requests and responses alike: finding where a head ends in a stream,
//! the one parser of both directions, editing header fields, building the proxy's own
//! answers, and dates.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::MAX_HEAD;

/// Which direction a head travels: a request (method, target) or a response (status).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Side {
    Request,
    Response,
}

/// The start line of a head.
#[derive(Clone, Debug)]
pub(crate) enum Start {
    Request { method: String, target: String },
    Response { status: u16 },
}

/// A parsed head: its start line and header fields (names as sent, values trimmed).
#[derive(Clone, Debug)]
pub(crate) struct Head {
    pub(crate) start: Start,
    pub(crate) headers: Vec<(String, String)>,
}

impl Head {
    /// Parses a head (up to and including its blank line); `None`: not HTTP/1.x as `side`
    /// sends it.
    pub(crate) fn parse(head: &[u8], side: Side) -> Option<Head> {
        let text = String::from_utf8_lossy(head);
        let mut lines = text.split('\n').map(|l| l.strip_suffix('\r').unwrap_or(l));
        let mut parts = lines.next()?.splitn(3, ' ');
        let (a, b, c) = (parts.next()?, parts.next()?, parts.next().unwrap_or(""));
        let start = match side {
            Side::Request => {
                let method_ok = !a.is_empty() && a.bytes().all(|x| x.is_ascii_alphabetic());
                if !method_ok || b.is_empty() || !c.starts_with("HTTP/") {
                    return None;
                }
                Start::Request { method: a.to_string(), target: b.to_string() }
            }
            Side::Response => {
                if !a.starts_with("HTTP/") || b.len() != 3 || !b.bytes().all(|x| x.is_ascii_digit()) {
                    return None;
                }
                Start::Response { status: b.parse().ok()? }
            }
        };
        let mut headers: Vec<(String, String)> = Vec::new();
        for line in lines {
            if line.is_empty() {
                break;
            }
            if line.starts_with([' ', '\t']) {
                let last = headers.last_mut()?; // obs-fold
                last.1.push(' ');
                last.1.push_str(line.trim());
                continue;
            }
            let (name, value) = line.split_once(':')?;
            if name.is_empty() || name.contains([' ', '\t']) {
                return None;
            }
            headers.push((name.to_string(), value.trim().to_string()));
        }
        Some(Head { start, headers })
    }

    /// The request's method ("" for a response).
    pub(crate) fn method(&self) -> &str {
        match &self.start {
            Start::Request { method, .. } => method,
            Start::Response { .. } => "",
        }
    }

    /// The request's target, path and query ("" for a response).
    pub(crate) fn target(&self) -> &str {
        match &self.start {
            Start::Request { target, .. } => target,
            Start::Response { .. } => "",
        }
    }

    /// The response's status (0 for a request).
    pub(crate) fn status(&self) -> u16 {
        match self.start {
            Start::Request { .. } => 0,
            Start::Response { status } => status,
        }
    }

    /// The values of the header `name` (case-insensitive), in order.
    pub(crate) fn header<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.headers.iter().filter(move |(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    /// Whether the last transfer coding is chunked (`None`: no Transfer-Encoding).
    pub(crate) fn chunked(&self) -> Option<bool> {
        let te: Vec<&str> = self.header("transfer-encoding").collect();
        if te.is_empty() {
            return None;
        }
        let last = te.join(",").rsplit(',').next().map(|s| s.trim().to_ascii_lowercase()).unwrap_or_default();
        Some(last == "chunked")
    }

    /// The Content-Length (`Err`: present but invalid or conflicting).
    pub(crate) fn content_length(&self) -> Result<Option<u64>, ()> {
        let mut found = None;
        for v in self.header("content-length") {
            for part in v.split(',') {
                let n: u64 = part.trim().parse().map_err(|_| ())?;
                if found.is_some_and(|f| f != n) {
                    return Err(());
                }
                found = Some(n);
            }
        }
        Ok(found)
    }
}

/// The index just past the blank line that ends a head, searching from `from`.
pub(crate) fn find_head_end(buf: &[u8], from: usize) -> Option<usize> {
    (from..buf.len()).find_map(|i| {
        let end = buf[i] == b'\n'
            && ((i >= 1 && buf[i - 1] == b'\n') || (i >= 2 && buf[i - 1] == b'\r' && buf[i - 2] == b'\n'));
        end.then_some(i + 1)
    })
}

/// Collects one head from the pieces of a stream as they arrive (both directions).
#[derive(Default)]
pub(crate) struct HeadBuf(Vec<u8>);

/// What [`HeadBuf::feed`] has after a piece.
pub(crate) enum Collected {
    /// The head goes on in the next piece.
    More,
    /// The whole head, up to and including its blank line.
    Head(Vec<u8>),
    /// Longer than `MAX_HEAD` without an end: the bytes so far, to pass on raw.
    TooLong(Vec<u8>),
}

impl HeadBuf {
    /// Takes the head's bytes from the start of `data`: how many it took, and the head
    /// when it is complete (the rest of `data` then follows the head).
    pub(crate) fn feed(&mut self, data: &[u8]) -> (usize, Collected) {
        let old = self.0.len();
        self.0.extend_from_slice(data);
        match find_head_end(&self.0, old.saturating_sub(3)) {
            Some(end) => {
                self.0.truncate(end);
                (end - old, Collected::Head(std::mem::take(&mut self.0)))
            }
            None if self.0.len() > MAX_HEAD => (data.len(), Collected::TooLong(std::mem::take(&mut self.0))),
            None => (data.len(), Collected::More),
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The bytes of an unfinished head (when the stream ends), leaving it empty.
    pub(crate) fn take(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.0)
    }
}

/// A head without the header `name`.
pub(crate) fn remove_header(head: &[u8], name: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(head.len());
    for line in head.split_inclusive(|b| *b == b'\n') {
        let colon = line.iter().position(|b| *b == b':');
        if colon.is_some_and(|c| line[..c].eq_ignore_ascii_case(name.as_bytes())) {
            continue;
        }
        out.extend_from_slice(line);
    }
    out
}

/// Replaces the value of the header `name` in a head by `f(old value)`, or adds the
/// header before the blank line when it is missing. Everything else stays as it is.
pub(crate) fn edit_header(head: &[u8], name: &str, f: &dyn Fn(Option<&str>) -> String) -> Vec<u8> {
    let mut out = Vec::with_capacity(head.len() + 64);
    let mut found = false;
    let mut lines = head.split_inclusive(|b| *b == b'\n');
    if let Some(first) = lines.next() {
        out.extend_from_slice(first);
    }
    for line in lines {
        let content = line.strip_suffix(b"\n").unwrap_or(line);
        let content = content.strip_suffix(b"\r").unwrap_or(content);
        if content.is_empty() {
            if !found {
                out.extend_from_slice(format!("{name}: {}\r\n", f(None)).as_bytes());
                found = true;
            }
            out.extend_from_slice(line);
            continue;
        }
        if let Some(colon) = content.iter().position(|b| *b == b':') {
            if !found && content[..colon].eq_ignore_ascii_case(name.as_bytes()) {
                let old = String::from_utf8_lossy(&content[colon + 1..]).trim().to_string();
                out.extend_from_slice(&content[..colon]);
                out.extend_from_slice(format!(": {}", f(Some(&old))).as_bytes());
                out.extend_from_slice(&line[content.len()..]);
                found = true;
                continue;
            }
        }
        out.extend_from_slice(line);
    }
    out
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        204 => "No Content",
        301 => "Moved Permanently",
        302 => "Found",
        304 => "Not Modified",
        307 => "Temporary Redirect",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        409 => "Conflict",
        412 => "Precondition Failed",
        416 => "Range Not Satisfiable",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "Status",
    }
}

/// A complete response (without the body for a HEAD request).
pub(crate) fn response(status: u16, extra: &[(&str, String)], body: &[u8], head_only: bool, close: bool) -> Vec<u8> {
    let mut r = format!("HTTP/1.1 {status} {}\r\nDate: {}\r\n", reason(status), http_date(unix_now()));
    for (name, value) in extra {
        r.push_str(&format!("{name}: {value}\r\n"));
    }
    let connection = if close { "close" } else { "keep-alive" };
    r.push_str(&format!("Content-Length: {}\r\nConnection: {connection}\r\n\r\n", body.len()));
    let mut r = r.into_bytes();
    if !head_only {
        r.extend_from_slice(body);
    }
    r
}

// Dates (RFC 7231 IMF-fixdate)

pub(crate) fn unix_now() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}

/// `Sun, 06 Nov 1994 08:49:37 GMT` for seconds since the Unix epoch (before it: the epoch).
pub fn http_date(unix: i64) -> String {
    httpdate::fmt_http_date(UNIX_EPOCH + Duration::from_secs(unix.max(0) as u64))
}

/// Seconds since the Unix epoch of an HTTP date.
pub fn parse_http_date(s: &str) -> Option<i64> {
    let time = httpdate::parse_http_date(s).ok()?;
    Some(time.duration_since(UNIX_EPOCH).ok()?.as_secs() as i64)
}
