//! The client side of a connection: reads requests, follows their framing, picks each
//! one's fault, and forwards it or answers it locally (the faults that never reach the
//! upstream).

use std::sync::atomic::Ordering::SeqCst;
use std::sync::mpsc::{Sender, SyncSender};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use crate::body::BodyTracker;
use crate::bombs::xml_bomb;
use crate::conn::{read_some, Conn, Flow, ReadOutcome, IDLE_TIMEOUT};
use crate::fault::{Fault, HUGE_CONTENT_LENGTH};
use crate::http::{http_date, response, unix_now, Collected, Head, HeadBuf, Side};
use crate::proxy::Shared;
use crate::writer::Item;
use crate::{POLL, READ_BUF};

/// What the client side tells the upstream side about a forwarded request.
#[derive(Default)]
pub(crate) struct ReqInfo {
    pub(crate) head_only: bool,
    pub(crate) connect: bool,
    pub(crate) fault: Option<Fault>,
}

enum ReqState {
    Head,
    Body { body: BodyTracker, forward: bool },
    Raw,
    Discard,
}

/// Reads the client, follows its requests, forwards them (or answers them itself).
pub(crate) struct ClientReader {
    shared: Arc<Shared>,
    conn: Arc<Conn>,
    to_up: SyncSender<Item>,
    to_client: SyncSender<Item>,
    infos: Sender<ReqInfo>,
    state: ReqState,
    head: HeadBuf,
    out: Vec<u8>,
    /// Added to the first output of the connection.
    handshake: Duration,
}

impl ClientReader {
    pub(crate) fn new(
        shared: Arc<Shared>,
        conn: Arc<Conn>,
        to_up: SyncSender<Item>,
        to_client: SyncSender<Item>,
        infos: Sender<ReqInfo>,
    ) -> ClientReader {
        let handshake = shared.delay;
        let (state, head, out) = (ReqState::Head, HeadBuf::default(), Vec::new());
        ClientReader { shared, conn, to_up, to_client, infos, state, head, out, handshake }
    }

    pub(crate) fn run(mut self) {
        let mut buf = vec![0u8; READ_BUF];
        loop {
            match read_some(&self.shared, &self.conn, &self.conn.client, &mut buf, false) {
                ReadOutcome::Data(n) => {
                    let t = Instant::now();
                    if self.process(&buf[..n], t) == Flow::Stop || !self.flush(t) {
                        return;
                    }
                }
                ReadOutcome::Eof => {
                    if self.conn.is_closed() {
                        return;
                    }
                    if self.conn.holding() {
                        self.conn.close();
                        return;
                    }
                    let t = Instant::now();
                    if matches!(self.state, ReqState::Head) {
                        let partial = self.head.take();
                        self.out.extend_from_slice(&partial);
                    }
                    if self.flush(t) {
                        let _ = self.to_up.send(Item::HalfClose { due: t + self.shared.delay / 2 });
                    }
                    return;
                }
                ReadOutcome::Error => {
                    self.conn.close();
                    return;
                }
                ReadOutcome::Stopped => return,
            }
        }
    }

    fn flush(&mut self, t: Instant) -> bool {
        if self.out.is_empty() {
            return true;
        }
        let bytes = std::mem::take(&mut self.out);
        let due = t + self.shared.delay / 2 + std::mem::take(&mut self.handshake);
        self.to_up.send(Item::Data { bytes, due, pace: None }).is_ok()
    }

    fn process(&mut self, mut data: &[u8], t: Instant) -> Flow {
        if self.conn.holding() {
            self.state = ReqState::Discard;
        }
        while !data.is_empty() {
            match &mut self.state {
                ReqState::Raw => {
                    self.out.extend_from_slice(data);
                    return Flow::Continue;
                }
                ReqState::Discard => return Flow::Continue,
                ReqState::Body { body, forward } => {
                    let forward = *forward;
                    match body.advance(data, None) {
                        Ok((used, done)) => {
                            if forward {
                                self.out.extend_from_slice(&data[..used]);
                            }
                            data = &data[used..];
                            if done {
                                self.state = ReqState::Head;
                            }
                        }
                        Err(()) if forward => self.state = ReqState::Raw,
                        Err(()) => {
                            self.conn.close();
                            return Flow::Stop;
                        }
                    }
                }
                ReqState::Head => {
                    if self.head.is_empty() {
                        // Stray line ends between requests pass as they are.
                        let skip = data.iter().take_while(|b| **b == b'\r' || **b == b'\n').count();
                        self.out.extend_from_slice(&data[..skip]);
                        data = &data[skip..];
                        if data.is_empty() {
                            break;
                        }
                    }
                    let (used, collected) = self.head.feed(data);
                    data = &data[used..];
                    match collected {
                        Collected::More => return Flow::Continue,
                        Collected::TooLong(head) => {
                            self.out.extend_from_slice(&head);
                            self.state = ReqState::Raw;
                        }
                        Collected::Head(head) => {
                            if self.on_head(head, t) == Flow::Stop {
                                return Flow::Stop;
                            }
                        }
                    }
                }
            }
        }
        Flow::Continue
    }

    fn on_head(&mut self, head: Vec<u8>, t: Instant) -> Flow {
        let parsed = Head::parse(&head, Side::Request);
        let Some((req, body)) = parsed.and_then(|r| r.body(false).ok().map(|b| (r, b))) else {
            self.out.extend_from_slice(&head);
            self.state = ReqState::Raw;
            return Flow::Continue;
        };
        self.shared.requests.fetch_add(1, SeqCst);
        let head_only = req.method().eq_ignore_ascii_case("HEAD");
        let connect = req.method().eq_ignore_ascii_case("CONNECT");
        let fault = self.shared.pick_fault(req.method(), req.target());
        if let Some(f) = fault.as_ref().filter(|f| f.is_local()) {
            return self.answer(f.clone(), &req, body, head_only, t);
        }
        self.out.extend_from_slice(&head);
        self.conn.forwarded.fetch_add(1, SeqCst);
        let _ = self.infos.send(ReqInfo { head_only, connect, fault });
        self.state = match body {
            _ if connect => ReqState::Raw,
            Some(body) => ReqState::Body { body, forward: true },
            None => ReqState::Head,
        };
        Flow::Continue
    }

    /// Answers a request with a local fault instead of forwarding it.
    fn answer(&mut self, fault: Fault, req: &Head, body: Option<BodyTracker>, head_only: bool, t: Instant) -> Flow {
        if !self.flush(t) {
            return Flow::Stop;
        }
        // A round trip, as if the upstream had answered.
        let due = t + self.shared.delay + std::mem::take(&mut self.handshake);
        if fault == Fault::Reset {
            if self.conn.wait_until(&self.shared, due) {
                self.conn.reset();
            }
            return Flow::Stop;
        }
        if fault == Fault::NoReadBody {
            // Read nothing more, answer nothing, until the client gives up (or the proxy stops).
            self.conn.holding.store(true, SeqCst);
            while self.conn.alive(&self.shared) && self.conn.idle() <= IDLE_TIMEOUT {
                thread::sleep(POLL);
            }
            self.conn.close();
            return Flow::Stop;
        }
        // Responses leave in order: the upstream answers earlier (pipelined) requests first.
        while self.conn.completed.load(SeqCst) < self.conn.forwarded.load(SeqCst) {
            if !self.conn.alive(&self.shared) || self.conn.idle() > IDLE_TIMEOUT {
                self.conn.close();
                return Flow::Stop;
            }
            thread::sleep(Duration::from_millis(1));
        }
        // A client that waits for "100 Continue" may never send the body: close after.
        let close = body.is_some() && req.header("expect").any(|v| v.eq_ignore_ascii_case("100-continue"));
        let xml = [("Content-Type", "application/xml".to_string())];
        let (answer, tail) = match fault {
            Fault::ErrorStatus { status, code } => {
                let body = format!(
                    "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>{}</Code><Message>injected</Message>\
                     <RequestId>faultproxy</RequestId></Error>",
                    xml_escape(&code)
                );
                (Some(response(status, &xml, body.as_bytes(), head_only, close)), None)
            }
            Fault::Redirect { location } => {
                (Some(response(307, &[("Location", location)], b"", head_only, close)), None)
            }
            Fault::XmlBomb => (Some(response(400, &xml, xml_bomb().as_bytes(), head_only, close)), None),
            Fault::EchoAuthorization => {
                let echo = |name: &str| req.header(name).next().unwrap_or("").to_string();
                let body = format!(
                    "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>InvalidArgument</Code><Message>\
                     bad request: Authorization: {} x-amz-security-token: {}</Message><RequestId>faultproxy</RequestId>\
                     </Error>",
                    xml_escape(&echo("authorization")),
                    xml_escape(&echo("x-amz-security-token")),
                );
                (Some(response(400, &xml, body.as_bytes(), head_only, close)), None)
            }
            Fault::HugeContentLength => {
                let mut r = format!(
                    "HTTP/1.1 200 OK\r\nDate: {}\r\nContent-Type: application/octet-stream\r\n\
                     Content-Length: {HUGE_CONTENT_LENGTH}\r\nConnection: keep-alive\r\n\r\n",
                    http_date(unix_now())
                )
                .into_bytes();
                if !head_only {
                    r.extend_from_slice(b"partial body");
                }
                (Some(r), Some(Item::Hold))
            }
            Fault::EndlessHeaders => (None, Some(Item::Endless { due })),
            Fault::EmptyListing => {
                let body = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<ListBucketResult \
                            xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\"><Name>bucket</Name><KeyCount>0</KeyCount>\
                            <MaxKeys>1000</MaxKeys><IsTruncated>false</IsTruncated></ListBucketResult>";
                (Some(response(200, &xml, body.as_bytes(), head_only, close)), None)
            }
            Fault::BadContentLength | Fault::ConflictingContentLength => {
                let lengths = if fault == Fault::BadContentLength {
                    "Content-Length: abc\r\n"
                } else {
                    "Content-Length: 10\r\nContent-Length: 20\r\n"
                };
                let head = format!("HTTP/1.1 200 OK\r\nDate: {}\r\n{lengths}\r\n0123456789", http_date(unix_now()));
                (Some(head.into_bytes()), Some(Item::Close { due }))
            }
            _ => (None, None),
        };
        let hold = tail.is_some();
        let tail = tail.or(close.then_some(Item::Close { due }));
        if hold {
            self.conn.holding.store(true, SeqCst);
        }
        let items = answer.map(|bytes| Item::Data { bytes, due, pace: None }).into_iter().chain(tail);
        for item in items {
            if self.to_client.send(item).is_err() {
                return Flow::Stop;
            }
        }
        self.state = match body {
            _ if hold || close => ReqState::Discard,
            Some(body) => ReqState::Body { body, forward: false },
            None => ReqState::Head,
        };
        Flow::Continue
    }
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}
