//! The GOCACHEPROG wire protocol, as cmd/go 1.21–1.27 speaks it.
//!
//! - The program writes `{"ID":0,"KnownCommands":[...]}` first, unprompted.
//! - Each request is one JSON object on a line followed by an empty line: `ID` (non-zero),
//!   `Command` (`get` | `put` | `close`), `ActionID`, for put `OutputID` (go 1.21–1.23
//!   and golangci-lint send `ObjectID`), and `BodySize` (omitted when 0). Byte fields are
//!   padded standard base64.
//! - A put with `BodySize > 0` is followed by one line holding the body as a JSON string
//!   of base64, possibly tens of megabytes: it is decoded as it streams, never buffered.
//! - Responses are single JSON lines in any order, each carrying its request's `ID` once:
//!   `Miss`, `OutputID`, `Size`, `Time` (RFC 3339), `DiskPath`, `Err`.

use crate::base64::{self, Decoder};
use crate::calendar::Civil;
use crate::id::Id;
use serde_json::Value;
use std::fmt;
use std::io::{self, BufRead, Write};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

/// A request from go, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Command {
    Get { action: Id },
    Put { action: Id, output: Id, body_size: u64 },
    Close,
}

/// One request as read from the stream: its ID, how large a body follows it, and either
/// the command or why the request cannot be served (answered with `Err`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Incoming {
    /// go's `ID`, echoed in the response.
    pub id: i64,
    /// `BodySize`: the bytes of the put body on the next line (0: none follows).
    pub body_size: u64,
    pub(crate) command: Result<Command, String>,
}

/// The stream can no longer be followed; the program must stop.
#[derive(Debug)]
pub enum StreamError {
    /// Reading stdin failed.
    Io(io::Error),
    /// A request line that is not a JSON object (with the line number and a prefix).
    NotJson {
        /// The request line's number in the stream, from 1.
        line: u64,
        /// The start of the line, for the message.
        text: String,
    },
    /// A request without a usable `ID`: it cannot be answered.
    NoId {
        /// The request line's number in the stream, from 1.
        line: u64,
        /// The start of the line, for the message.
        text: String,
    },
    /// A put body that is not a JSON string.
    BodyNotString {
        /// The request's `ID`.
        id: i64,
        /// The start of what came instead.
        found: String,
    },
    /// Input ended in the middle of a put body.
    BodyEof {
        /// The request's `ID`.
        id: i64,
    },
    /// A request line longer than `MAX_LINE` (go's are a few hundred bytes).
    LineTooLong {
        /// The request line's number in the stream, from 1.
        line: u64,
    },
}

/// The longest request line accepted. go's requests are under 300 bytes; bodies come on
/// their own lines and are streamed, so this bounds memory without limiting bodies.
pub(crate) const MAX_LINE: usize = 64 * 1024;

impl fmt::Display for StreamError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StreamError::Io(e) => write!(f, "reading requests from go failed: {e}"),
            StreamError::NotJson { line, text } => {
                write!(f, "request line {line} is not a JSON object: {text:?}")
            }
            StreamError::NoId { line, text } => {
                write!(f, "request line {line} has no valid non-zero \"ID\": {text:?}")
            }
            StreamError::BodyNotString { id, found } => {
                write!(f, "the body of put request {id} should be a JSON string of base64, found {found:?}")
            }
            StreamError::BodyEof { id } => {
                write!(f, "input ended inside the body of put request {id}")
            }
            StreamError::LineTooLong { line } => {
                write!(f, "request line {line} is longer than {MAX_LINE} bytes; go never sends such lines")
            }
        }
    }
}

impl std::error::Error for StreamError {}

impl From<io::Error> for StreamError {
    fn from(e: io::Error) -> Self {
        StreamError::Io(e)
    }
}

/// What happened to a put body that could be followed to its end.
#[derive(Debug)]
pub enum BodyError {
    /// The text was not valid base64 (the rest of the body was skipped).
    Base64(base64::DecodeError),
    /// Writing the decoded bytes failed (the rest of the body was skipped).
    Write(io::Error),
}

impl fmt::Display for BodyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BodyError::Base64(e) => write!(f, "body is not valid base64: {e}"),
            BodyError::Write(e) => write!(f, "storing the body failed: {e}"),
        }
    }
}

/// Reads requests and put bodies from go's stream.
pub struct RequestReader<R> {
    input: R,
    line: Vec<u8>,
    line_no: u64,
}

impl<R: BufRead> RequestReader<R> {
    /// Wraps go's stdin.
    pub fn new(input: R) -> Self {
        RequestReader { input, line: Vec::with_capacity(256), line_no: 0 }
    }

    /// The next request, or `None` at the end of input. Blank lines are skipped.
    pub fn next_request(&mut self) -> Result<Option<Incoming>, StreamError> {
        loop {
            self.line.clear();
            if !self.read_line()? {
                return Ok(None);
            }
            self.line_no += 1;
            if !self.line.iter().all(u8::is_ascii_whitespace) {
                break;
            }
        }
        parse_request(&self.line, self.line_no).map(Some)
    }

    /// Reads one line (newline included, if any) into `self.line`, at most [`MAX_LINE`]
    /// bytes; false at the end of input.
    fn read_line(&mut self) -> Result<bool, StreamError> {
        loop {
            let buf = match self.input.fill_buf() {
                Ok(buf) => buf,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e.into()),
            };
            if buf.is_empty() {
                return Ok(!self.line.is_empty());
            }
            let (take, done) = match buf.iter().position(|&b| b == b'\n') {
                Some(i) => (i + 1, true),
                None => (buf.len(), false),
            };
            if self.line.len() + take > MAX_LINE {
                return Err(StreamError::LineTooLong { line: self.line_no + 1 });
            }
            self.line.extend_from_slice(&buf[..take]);
            self.input.consume(take);
            if done {
                return Ok(true);
            }
        }
    }

    /// Streams the base64 body that follows a put into `sink`, returning how many bytes it
    /// decoded to. The whole body is always consumed, even after a decoding or write error,
    /// so the next request can still be read.
    pub fn read_body(&mut self, id: i64, sink: &mut dyn Write) -> Result<Result<u64, BodyError>, StreamError> {
        self.skip_whitespace(id)?;
        match self.input.fill_buf()?.first() {
            Some(b'"') => self.input.consume(1),
            Some(_) => {
                let buf = self.input.fill_buf()?;
                let found = String::from_utf8_lossy(&buf[..buf.len().min(40)]).into_owned();
                return Err(StreamError::BodyNotString { id, found });
            }
            None => return Err(StreamError::BodyEof { id }),
        }
        let mut decoder = Decoder::new();
        let mut written = 0u64;
        let mut failure: Option<BodyError> = None;
        loop {
            let buf = self.input.fill_buf()?;
            if buf.is_empty() {
                return Err(StreamError::BodyEof { id });
            }
            let end = find_quote(buf);
            let text = &buf[..end.unwrap_or(buf.len())];
            if failure.is_none() {
                let mut write_err = None;
                let pushed = decoder.push(text, &mut |bytes| {
                    if write_err.is_none() {
                        match sink.write_all(bytes) {
                            Ok(()) => written += bytes.len() as u64,
                            Err(e) => write_err = Some(e),
                        }
                    }
                });
                if let Err(e) = pushed {
                    failure = Some(BodyError::Base64(e));
                } else if let Some(e) = write_err {
                    failure = Some(BodyError::Write(e));
                }
            }
            let consumed = text.len() + usize::from(end.is_some());
            self.input.consume(consumed);
            if end.is_some() {
                break;
            }
        }
        self.finish_line()?;
        if let Some(e) = failure {
            return Ok(Err(e));
        }
        if let Err(e) = decoder.finish() {
            return Ok(Err(BodyError::Base64(e)));
        }
        Ok(Ok(written))
    }

    fn skip_whitespace(&mut self, id: i64) -> Result<(), StreamError> {
        loop {
            let buf = self.input.fill_buf()?;
            if buf.is_empty() {
                return Err(StreamError::BodyEof { id });
            }
            let n = buf.iter().take_while(|b| b.is_ascii_whitespace()).count();
            let newlines = buf[..n].iter().filter(|&&b| b == b'\n').count() as u64;
            self.line_no += newlines;
            let done = n < buf.len();
            self.input.consume(n);
            if done {
                return Ok(());
            }
        }
    }

    /// Consumes the rest of the body line (normally just the newline).
    fn finish_line(&mut self) -> Result<(), StreamError> {
        self.line.clear();
        self.read_line()?;
        self.line_no += 1;
        Ok(())
    }
}

fn parse_request(line: &[u8], line_no: u64) -> Result<Incoming, StreamError> {
    let excerpt = || {
        let text = String::from_utf8_lossy(line);
        let text = text.trim_end();
        if text.len() > 120 {
            let cut = (0..=120).rev().find(|&i| text.is_char_boundary(i)).unwrap_or(0);
            format!("{}…", &text[..cut])
        } else {
            text.to_string()
        }
    };
    let value: Value = match serde_json::from_slice(line) {
        Ok(v @ Value::Object(_)) => v,
        _ => return Err(StreamError::NotJson { line: line_no, text: excerpt() }),
    };
    let id = match value.get("ID").and_then(Value::as_i64) {
        Some(id) if id != 0 => id,
        _ => return Err(StreamError::NoId { line: line_no, text: excerpt() }),
    };
    let body_size = match value.get("BodySize") {
        None | Some(Value::Null) => Ok(0),
        Some(v) => v.as_u64().ok_or_else(|| format!("\"BodySize\" must be a non-negative integer, got {v}")),
    };
    // A body follows whenever go said so, even if the request is otherwise unusable.
    let announced = body_size.clone().unwrap_or(0);
    let command = body_size.and_then(|size| parse_command(&value, size));
    Ok(Incoming { id, body_size: announced, command })
}

fn parse_command(value: &Value, body_size: u64) -> Result<Command, String> {
    let command = value.get("Command").and_then(Value::as_str).unwrap_or("");
    match command {
        "get" => Ok(Command::Get { action: id_field(value, "ActionID")? }),
        "put" => {
            let action = id_field(value, "ActionID")?;
            let output = match value.get("OutputID") {
                Some(Value::String(s)) if !s.is_empty() => id_field(value, "OutputID")?,
                _ => id_field(value, "ObjectID")
                    .map_err(|_| "put without a valid \"OutputID\" (or legacy \"ObjectID\")".to_string())?,
            };
            Ok(Command::Put { action, output, body_size })
        }
        "close" => Ok(Command::Close),
        other => Err(format!("unknown command {other:?}; this program knows get, put and close")),
    }
}

fn id_field(value: &Value, name: &str) -> Result<Id, String> {
    let text = value.get(name).and_then(Value::as_str).ok_or_else(|| format!("missing {name:?}"))?;
    let bytes = base64::decode(text.as_bytes()).map_err(|e| format!("{name:?} is not base64: {e}"))?;
    Id::from_slice(&bytes).ok_or_else(|| format!("{name:?} is {} bytes, expected 32", bytes.len()))
}

/// A response to one request.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Response {
    pub(crate) id: i64,
    pub(crate) err: Option<String>,
    pub(crate) miss: bool,
    pub(crate) output_id: Option<Id>,
    pub(crate) size: Option<u64>,
    /// Unix nanoseconds of the original put.
    pub(crate) time_nanos: Option<i64>,
    pub(crate) disk_path: Option<String>,
}

impl Response {
    /// A get miss.
    pub(crate) fn miss(id: i64) -> Self {
        Response { id, miss: true, ..Default::default() }
    }

    /// A failed request.
    pub(crate) fn error(id: i64, message: impl Into<String>) -> Self {
        Response { id, err: Some(message.into()), ..Default::default() }
    }

    /// A get hit.
    pub(crate) fn hit(id: i64, output_id: Id, size: u64, time_nanos: i64, path: &Path) -> Self {
        Response {
            id,
            output_id: Some(output_id),
            size: Some(size),
            time_nanos: Some(time_nanos),
            disk_path: Some(path.to_string_lossy().into_owned()),
            ..Default::default()
        }
    }

    /// A stored put.
    pub(crate) fn stored(id: i64, path: &Path) -> Self {
        Response { id, disk_path: Some(path.to_string_lossy().into_owned()), ..Default::default() }
    }

    /// One JSON line, newline included.
    pub(crate) fn to_line(&self) -> String {
        let mut out = format!("{{\"ID\":{}", self.id);
        if let Some(err) = &self.err {
            out.push_str(",\"Err\":");
            out.push_str(&Value::from(err.as_str()).to_string());
        }
        if self.miss {
            out.push_str(",\"Miss\":true");
        }
        if let Some(id) = &self.output_id {
            out.push_str(",\"OutputID\":\"");
            out.push_str(&id.base64());
            out.push('"');
        }
        if let Some(size) = self.size {
            out.push_str(&format!(",\"Size\":{size}"));
        }
        if let Some(t) = self.time_nanos {
            out.push_str(&format!(",\"Time\":\"{}\"", Civil::from_unix_nanos(t).rfc3339()));
        }
        if let Some(path) = &self.disk_path {
            out.push_str(",\"DiskPath\":");
            out.push_str(&Value::from(path.as_str()).to_string());
        }
        out.push_str("}\n");
        out
    }
}

/// The handshake line announcing which commands this program serves.
pub(crate) fn handshake_line(commands: &[&str]) -> String {
    let list: Vec<String> = commands.iter().map(|c| format!("\"{c}\"")).collect();
    format!("{{\"ID\":0,\"KnownCommands\":[{}]}}\n", list.join(","))
}

/// Writes whole response lines to go, one at a time, from any thread.
///
/// Once go has stopped reading (EPIPE), further responses are dropped silently: go is gone
/// and nobody is left to tell.
pub(crate) struct Responder {
    out: Mutex<Box<dyn Write + Send>>,
    broken: AtomicBool,
}

impl Responder {
    /// Wraps go's stdout.
    pub(crate) fn new(out: Box<dyn Write + Send>) -> Self {
        Responder { out: Mutex::new(out), broken: AtomicBool::new(false) }
    }

    /// Writes and flushes one line.
    pub(crate) fn send_line(&self, line: &str) {
        if self.broken.load(Ordering::Relaxed) {
            return;
        }
        let mut out = match self.out.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        if out.write_all(line.as_bytes()).and_then(|()| out.flush()).is_err() {
            self.broken.store(true, Ordering::Relaxed);
        }
    }

    /// Writes one response.
    pub(crate) fn send(&self, response: &Response) {
        self.send_line(&response.to_line());
    }

    /// Whether go has stopped reading our responses.
    #[cfg(test)]
    pub(crate) fn is_broken(&self) -> bool {
        self.broken.load(Ordering::Relaxed)
    }
}

/// The first `"` in `buf`: 32 bytes at a time without an early exit (which the compiler
/// vectorizes), since a body line is megabytes of base64 with the quote at its end.
fn find_quote(buf: &[u8]) -> Option<usize> {
    let mut chunks = buf.chunks_exact(32);
    let mut skipped = 0;
    for chunk in &mut chunks {
        if chunk.iter().fold(false, |seen, &b| seen | (b == b'"')) {
            break;
        }
        skipped += 32;
    }
    buf[skipped..].iter().position(|&b| b == b'"').map(|i| skipped + i)
}

#[cfg(test)]
mod tests {
    use super::*;
    use sha2::{Digest, Sha256};
    use std::io::{BufReader, Cursor};

    const ACTION_B64: &str = "GnsynH1Qz0qsBTXjzcPDPjrpVbOrxuXDKvczeV/XX/Y=";
    const OUTPUT_B64: &str = "VLeOw5/TjvNZKZLRnWiDSkRPBkEOpjcnsXtuTetBORc=";
    const EMPTY_SHA_B64: &str = "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=";

    fn reader(bytes: &[u8]) -> RequestReader<Cursor<Vec<u8>>> {
        RequestReader::new(Cursor::new(bytes.to_vec()))
    }

    fn id(b64: &str) -> Id {
        Id::from_slice(&base64::decode(b64.as_bytes()).unwrap()).unwrap()
    }

    #[test]
    fn the_quote_is_found_wherever_it_is() {
        let mut buf = vec![b'A'; 200];
        assert_eq!(find_quote(&buf), None);
        for at in [0, 1, 31, 32, 33, 63, 64, 150, 199] {
            buf.fill(b'A');
            buf[at] = b'"';
            buf[199] = b'"';
            assert_eq!(find_quote(&buf), Some(at), "quote at {at}");
            assert_eq!(find_quote(&buf[..at + 1]), Some(at));
        }
        assert_eq!(find_quote(b""), None);
    }

    #[test]
    fn stream_in_go_1_27_framing() {
        let body = b"go index v2\nsome bytes";
        let stream = format!(
            "{{\"ID\":1,\"Command\":\"get\",\"ActionID\":\"{ACTION_B64}\"}}\n\n\
             {{\"ID\":2,\"Command\":\"put\",\"ActionID\":\"{ACTION_B64}\",\"OutputID\":\"{OUTPUT_B64}\",\"BodySize\":{}}}\n\n\
             \"{}\"\n\
             {{\"ID\":364,\"Command\":\"put\",\"ActionID\":\"{ACTION_B64}\",\"OutputID\":\"{EMPTY_SHA_B64}\"}}\n\n\
             {{\"ID\":365,\"Command\":\"close\"}}\n\n",
            body.len(),
            base64::encode(body)
        );
        let mut r = reader(stream.as_bytes());
        let first = r.next_request().unwrap().unwrap();
        assert_eq!(first, Incoming { id: 1, body_size: 0, command: Ok(Command::Get { action: id(ACTION_B64) }) });
        let second = r.next_request().unwrap().unwrap();
        assert_eq!(
            second.command,
            Ok(Command::Put { action: id(ACTION_B64), output: id(OUTPUT_B64), body_size: body.len() as u64 })
        );
        let mut sink = Vec::new();
        assert_eq!(r.read_body(2, &mut sink).unwrap().unwrap(), body.len() as u64);
        assert_eq!(sink, body);
        // An empty put has no body line at all.
        let third = r.next_request().unwrap().unwrap();
        assert_eq!(third.body_size, 0);
        assert!(matches!(third.command, Ok(Command::Put { body_size: 0, .. })));
        assert_eq!(r.next_request().unwrap().unwrap().command, Ok(Command::Close));
        assert!(r.next_request().unwrap().is_none());
    }

    #[test]
    fn legacy_object_id_is_accepted_and_output_id_wins() {
        let other = base64::encode(&[9u8; 32]);
        let legacy = format!(
            "{{\"ID\":5,\"Command\":\"put\",\"ActionID\":\"{ACTION_B64}\",\"ObjectID\":\"{OUTPUT_B64}\"}}\n\n\
             {{\"ID\":6,\"Command\":\"put\",\"ActionID\":\"{ACTION_B64}\",\"OutputID\":\"{OUTPUT_B64}\",\"ObjectID\":\"{other}\"}}\n\n\
             {{\"ID\":7,\"Command\":\"put\",\"ActionID\":\"{ACTION_B64}\",\"OutputID\":\"\",\"ObjectID\":\"{OUTPUT_B64}\"}}\n\n"
        );
        let mut r = reader(legacy.as_bytes());
        for expected_id in [5, 6, 7] {
            let req = r.next_request().unwrap().unwrap();
            assert_eq!(req.id, expected_id);
            assert_eq!(req.command, Ok(Command::Put { action: id(ACTION_B64), output: id(OUTPUT_B64), body_size: 0 }));
        }
    }

    #[test]
    fn twenty_megabyte_body_streams_in_small_reads() {
        let body: Vec<u8> = (0..20 * 1024 * 1024u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
        let sha = Sha256::digest(&body);
        let stream = format!(
            "{{\"ID\":9,\"Command\":\"put\",\"ActionID\":\"{ACTION_B64}\",\"OutputID\":\"{}\",\"BodySize\":{}}}\n\n\"{}\"\n",
            base64::encode(&sha),
            body.len(),
            base64::encode(&body)
        );
        // A small BufReader capacity proves nothing depends on the line fitting in memory.
        let mut r = RequestReader::new(BufReader::with_capacity(4096, Cursor::new(stream.into_bytes())));
        let req = r.next_request().unwrap().unwrap();
        assert_eq!(req.body_size, body.len() as u64);
        let mut hashing = crate::local::Hashing::new(io::sink());
        let n = r.read_body(9, &mut hashing).unwrap().unwrap();
        let (_, digest, count) = hashing.finish();
        assert_eq!(n, body.len() as u64);
        assert_eq!(count, n);
        assert_eq!(digest.0[..], sha[..]);
        assert!(r.next_request().unwrap().is_none());
    }

    #[test]
    fn a_line_without_end_is_cut_off_with_bounded_memory() {
        // 10 MB of request line with no newline: an error at MAX_LINE, not a 10 MB buffer.
        let mut stream = format!("{{\"ID\":1,\"Command\":\"get\",\"ActionID\":\"{ACTION_B64}\"}}\n\n").into_bytes();
        stream.extend(std::iter::repeat_n(b'{', 10_000_000));
        let mut r = RequestReader::new(BufReader::with_capacity(4096, Cursor::new(stream)));
        assert!(r.next_request().unwrap().is_some());
        match r.next_request() {
            Err(e @ StreamError::LineTooLong { line: 3 }) => assert!(e.to_string().contains("longer than")),
            other => panic!("expected LineTooLong, got {other:?}"),
        }
        assert!(r.line.capacity() <= 2 * MAX_LINE, "buffered {} bytes", r.line.capacity());
        // A last line without a newline is still read.
        let mut r = reader(b"{\"ID\":2,\"Command\":\"close\"}");
        assert_eq!(r.next_request().unwrap().unwrap().command, Ok(Command::Close));
    }

    #[test]
    fn bad_requests_that_can_be_followed_are_reported_per_request() {
        let stream = format!(
            "{{\"ID\":1,\"Command\":\"frobnicate\",\"ActionID\":\"{ACTION_B64}\"}}\n\n\
             {{\"ID\":2,\"Command\":\"get\",\"ActionID\":\"not base64!\"}}\n\n\
             {{\"ID\":3,\"Command\":\"get\",\"ActionID\":\"Zm9v\"}}\n\n\
             {{\"ID\":4,\"Command\":\"put\",\"ActionID\":\"{ACTION_B64}\",\"BodySize\":3}}\n\n\"Zm9v\"\n\
             {{\"ID\":5,\"Command\":\"put\",\"ActionID\":\"{ACTION_B64}\",\"OutputID\":\"{OUTPUT_B64}\",\"BodySize\":3}}\n\n\"Zm!v\"\n\
             {{\"ID\":6,\"Command\":\"get\",\"ActionID\":\"{ACTION_B64}\"}}\n\n"
        );
        let mut r = reader(stream.as_bytes());
        let errs: Vec<String> = (1..=3).map(|_| r.next_request().unwrap().unwrap().command.unwrap_err()).collect();
        assert!(errs[0].contains("unknown command \"frobnicate\""), "{}", errs[0]);
        assert!(errs[1].contains("\"ActionID\" is not base64"), "{}", errs[1]);
        assert!(errs[2].contains("3 bytes, expected 32"), "{}", errs[2]);
        // Missing OutputID: the body is announced and must still be skipped.
        let bad_put = r.next_request().unwrap().unwrap();
        assert_eq!(bad_put.body_size, 3);
        assert!(bad_put.command.unwrap_err().contains("OutputID"));
        r.read_body(4, &mut io::sink()).unwrap().unwrap();
        // Invalid base64 in the body: reported, and the stream stays in step.
        let put = r.next_request().unwrap().unwrap();
        assert!(put.command.is_ok());
        let result = r.read_body(5, &mut io::sink()).unwrap();
        assert!(matches!(result, Err(BodyError::Base64(_))), "{result:?}");
        assert_eq!(r.next_request().unwrap().unwrap().id, 6);
    }

    #[test]
    fn streams_that_cannot_be_followed_are_fatal() {
        let mut r = reader(b"this is not json\n");
        assert!(matches!(r.next_request(), Err(StreamError::NotJson { line: 1, .. })));
        let mut r = reader(b"{\"Command\":\"get\"}\n");
        assert!(matches!(r.next_request(), Err(StreamError::NoId { .. })));
        let mut r = reader(b"{\"ID\":0,\"Command\":\"close\"}\n");
        assert!(matches!(r.next_request(), Err(StreamError::NoId { .. })));
        let mut r = reader(b"\n\n   \n");
        assert!(r.next_request().unwrap().is_none());
        let mut r = reader(b"\n\"Zm9v");
        assert!(matches!(r.read_body(3, &mut io::sink()), Err(StreamError::BodyEof { id: 3 })));
        let mut r = reader(b"\n{\"ID\":4}\n");
        assert!(matches!(r.read_body(3, &mut io::sink()), Err(StreamError::BodyNotString { id: 3, .. })));
    }

    #[test]
    fn responses_have_go_field_names_and_forms() {
        let output = id(OUTPUT_B64);
        let hit = Response::hit(7, output, 199, 1_764_076_525_848_531_745, Path::new("/abs/dir/54/x-d"));
        let line = hit.to_line();
        assert!(line.ends_with("}\n") && !line[..line.len() - 1].contains('\n'));
        let v: Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["ID"], 7);
        assert_eq!(v["OutputID"], OUTPUT_B64);
        assert_eq!(v["Size"], 199);
        assert_eq!(v["Time"], "2025-11-25T13:15:25.848531745Z");
        assert_eq!(v["DiskPath"], "/abs/dir/54/x-d");
        assert!(v.get("Miss").is_none() && v.get("Err").is_none());
        assert_eq!(Response::miss(8).to_line(), "{\"ID\":8,\"Miss\":true}\n");
        let err: Value = serde_json::from_str(&Response::error(9, "bad \"quote\"\n").to_line()).unwrap();
        assert_eq!(err["Err"], "bad \"quote\"\n");
        assert_eq!(
            handshake_line(&["get", "put", "close"]),
            "{\"ID\":0,\"KnownCommands\":[\"get\",\"put\",\"close\"]}\n"
        );
    }

    #[test]
    fn responder_survives_a_closed_pipe() {
        struct Closed;
        impl Write for Closed {
            fn write(&mut self, _: &[u8]) -> io::Result<usize> {
                Err(io::Error::from(io::ErrorKind::BrokenPipe))
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        let responder = Responder::new(Box::new(Closed));
        responder.send(&Response::miss(1));
        assert!(responder.is_broken());
        responder.send(&Response::miss(2));
    }
}
