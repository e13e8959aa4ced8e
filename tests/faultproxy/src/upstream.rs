//! A small HTTP/1.1 server on 127.0.0.1 for the proxy's own tests and the selftest:
//! known bodies of any size, each framing, echoes.

use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use crate::body::MessageReader;
use crate::conn::{is_retry, setup_socket};
use crate::http::{Head, Side};
use crate::{lock, POLL, READ_BUF, THREAD_STACK};

/// The fixed `Date` of every `TestUpstream` response (so responses are byte-comparable).
pub const TEST_DATE: &str = "Tue, 15 Nov 1994 08:12:31 GMT";

/// An HTTP/1.1 server on 127.0.0.1 with keep-alive, thread per connection. Routes:
/// `GET /<n>` or `/bytes/<n>`: n bytes (byte i is `i as u8`), Content-Length;
/// `GET /chunked/<n>`: the same bytes chunked (1000-byte chunks, an extension, a trailer);
/// `GET /close/<n>`: the same bytes delimited by closing the connection;
/// `GET /204`: 204; `PUT` or `POST` to a path with `echo`: the raw request (head and body)
/// as the body; `PUT` or `POST` elsewhere: 200 with an ETag; `HEAD`: the GET head only;
/// anything else: 404 NoSuchKey.
pub struct TestUpstream {
    shared: Arc<UpShared>,
    port: u16,
    accept: Option<JoinHandle<()>>,
}

struct UpShared {
    stop: AtomicBool,
    requests: AtomicU64,
    connections: AtomicU64,
    threads: Mutex<Vec<JoinHandle<()>>>,
}

impl TestUpstream {
    /// Starts the server on a free port of 127.0.0.1.
    pub fn start() -> io::Result<TestUpstream> {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
        let port = listener.local_addr()?.port();
        let shared = Arc::new(UpShared {
            stop: AtomicBool::new(false),
            requests: AtomicU64::new(0),
            connections: AtomicU64::new(0),
            threads: Mutex::new(Vec::new()),
        });
        let s = shared.clone();
        let accept = thread::Builder::new().name("upstream-accept".into()).spawn(move || {
            while !s.stop.load(SeqCst) {
                let Ok((stream, _)) = listener.accept() else {
                    thread::sleep(Duration::from_millis(10));
                    continue;
                };
                if s.stop.load(SeqCst) {
                    break;
                }
                s.connections.fetch_add(1, SeqCst);
                let s2 = s.clone();
                let b = thread::Builder::new().name("upstream-conn".into()).stack_size(THREAD_STACK);
                if let Ok(t) = b.spawn(move || upstream_conn(&s2, stream)) {
                    let mut threads = lock(&s.threads);
                    threads.retain(|t| !t.is_finished());
                    threads.push(t);
                }
            }
        })?;
        Ok(TestUpstream { shared, port, accept: Some(accept) })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Requests answered so far.
    pub fn requests(&self) -> u64 {
        self.shared.requests.load(SeqCst)
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> u64 {
        self.shared.connections.load(SeqCst)
    }
}

impl Drop for TestUpstream {
    fn drop(&mut self) {
        self.shared.stop.store(true, SeqCst);
        let _ = TcpStream::connect_timeout(&SocketAddr::from((Ipv4Addr::LOCALHOST, self.port)), POLL);
        if let Some(a) = self.accept.take() {
            let _ = a.join();
        }
        let threads = std::mem::take(&mut *lock(&self.shared.threads));
        for t in threads {
            let _ = t.join();
        }
    }
}

/// The body byte at offset i of every TestUpstream object.
pub fn test_byte(i: u64) -> u8 {
    i as u8
}

/// The first n bytes of every TestUpstream object.
pub fn test_body(n: usize) -> Vec<u8> {
    (0..n as u64).map(test_byte).collect()
}

fn upstream_conn(shared: &UpShared, s: TcpStream) {
    if setup_socket(&s).is_err() {
        return;
    }
    let stop = &shared.stop;
    let mut requests = MessageReader::new(UntilStop { s: &s, stop }, READ_BUF);
    while let Ok(req) = requests.read(Side::Request, false, true) {
        shared.requests.fetch_add(1, SeqCst);
        let close = req.head.header("connection").any(|v| v.eq_ignore_ascii_case("close"));
        let (head_out, body_out, close_after) = route(&req.head, &req.raw);
        let ok = upstream_write(stop, &s, &head_out) && body_out.is_none_or(|n| upstream_body(stop, &s, n));
        if !ok || close || close_after {
            return;
        }
    }
}

/// Reads a socket whose timeouts only let the loop check the stop flag.
struct UntilStop<'a> {
    s: &'a TcpStream,
    stop: &'a AtomicBool,
}

impl Read for UntilStop<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            if self.stop.load(SeqCst) {
                return Ok(0);
            }
            match self.s.read(buf) {
                Err(e) if is_retry(&e) => {}
                r => return r,
            }
        }
    }
}

/// The response head (and for small bodies the body) and the length of a pattern body
/// still to write, and whether to close after.
fn route(req: &Head, raw: &[u8]) -> (Vec<u8>, Option<u64>, bool) {
    let method = req.method().to_ascii_uppercase();
    let head_only = method == "HEAD";
    let path = req.target().split('?').next().unwrap_or("");
    let date = format!("Date: {TEST_DATE}\r\nServer: faultproxy-test-upstream\r\n");
    let number = |prefix: &str| path.strip_prefix(prefix).and_then(|n| n.parse::<u64>().ok()).map(|n| n.min(1 << 30));
    if method == "PUT" || method == "POST" {
        let body: &[u8] = if path.contains("echo") { raw } else { b"" };
        let mut r =
            format!("HTTP/1.1 200 OK\r\n{date}ETag: \"0123456789abcdef\"\r\nContent-Length: {}\r\n\r\n", body.len())
                .into_bytes();
        r.extend_from_slice(body);
        return (r, None, false);
    }
    if path == "/204" {
        return (format!("HTTP/1.1 204 No Content\r\n{date}\r\n").into_bytes(), None, false);
    }
    if let Some(n) = number("/chunked/") {
        let mut r = format!("HTTP/1.1 200 OK\r\n{date}Transfer-Encoding: chunked\r\n\r\n").into_bytes();
        if head_only {
            return (r, None, false);
        }
        let body = test_body(n as usize);
        for (i, chunk) in body.chunks(1000).enumerate() {
            let ext = if i == 0 { ";name=value" } else { "" };
            r.extend_from_slice(format!("{:x}{ext}\r\n", chunk.len()).as_bytes());
            r.extend_from_slice(chunk);
            r.extend_from_slice(b"\r\n");
        }
        r.extend_from_slice(b"0\r\nX-Trailer: yes\r\n\r\n");
        return (r, None, false);
    }
    if let Some(n) = number("/close/") {
        let r = format!("HTTP/1.1 200 OK\r\n{date}Connection: close\r\n\r\n").into_bytes();
        return (r, (!head_only).then_some(n), true);
    }
    if let Some(n) = number("/bytes/").or_else(|| number("/")) {
        let mut r =
            format!("HTTP/1.1 200 OK\r\n{date}Content-Type: application/octet-stream\r\nContent-Length: {n}\r\n\r\n")
                .into_bytes();
        if head_only {
            return (r, None, false);
        }
        if n <= READ_BUF as u64 {
            r.extend(test_body(n as usize));
            return (r, None, false);
        }
        return (r, Some(n), false);
    }
    let body = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>NoSuchKey</Code></Error>";
    let mut r = format!("HTTP/1.1 404 Not Found\r\n{date}Content-Length: {}\r\n\r\n", body.len()).into_bytes();
    if !head_only {
        r.extend_from_slice(body.as_bytes());
    }
    (r, None, false)
}

fn upstream_write(stop: &AtomicBool, s: &TcpStream, mut buf: &[u8]) -> bool {
    let mut w = s;
    while !buf.is_empty() {
        if stop.load(SeqCst) {
            return false;
        }
        match w.write(buf) {
            Ok(0) => return false,
            Ok(n) => buf = &buf[n..],
            Err(e) if is_retry(&e) => {}
            Err(_) => return false,
        }
    }
    true
}

fn upstream_body(stop: &AtomicBool, s: &TcpStream, n: u64) -> bool {
    let block = test_body(READ_BUF); // READ_BUF is a multiple of 256: the pattern repeats
    let mut left = n;
    while left > 0 {
        let k = left.min(block.len() as u64) as usize;
        if !upstream_write(stop, s, &block[..k]) {
            return false;
        }
        left -= k as u64;
    }
    true
}
