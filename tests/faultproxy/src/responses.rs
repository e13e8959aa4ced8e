//! The upstream side of a connection: reads responses, follows their framing, and
//! applies the faults that act on a forwarded request's response.

use std::sync::atomic::Ordering::SeqCst;
use std::sync::mpsc::{Receiver, SyncSender};
use std::sync::Arc;
use std::time::Instant;

use crate::body::BodyTracker;
use crate::bombs::bomb_frame;
use crate::conn::{read_some, Conn, Flow, ReadOutcome};
use crate::fault::{Bomb, Fault};
use crate::http::{edit_header, http_date, parse_http_date, remove_header, unix_now, Collected, Head, HeadBuf, Side};
use crate::proxy::Shared;
use crate::requests::ReqInfo;
use crate::writer::Item;
use crate::READ_BUF;

enum RespState {
    Head,
    Body { body: BodyTracker, fx: BodyFx },
    Raw,
    Discard,
}

/// A response body under a fault.
struct BodyFx {
    fault: Option<Fault>,
    /// Raw body bytes passed on so far.
    sent: u64,
    /// Payload bytes seen so far (for `CorruptBody`).
    payload: u64,
    /// `TruncateBody` with a known length: how many bytes to pass.
    keep: Option<u64>,
    /// `TruncateBody` without a known length: the body so far.
    stash: Vec<u8>,
}

/// Reads the upstream, follows its responses and applies the response faults.
pub(crate) struct ServerReader {
    shared: Arc<Shared>,
    conn: Arc<Conn>,
    to_client: SyncSender<Item>,
    infos: Receiver<ReqInfo>,
    state: RespState,
    head: HeadBuf,
    out: Vec<u8>,
}

impl ServerReader {
    pub(crate) fn new(
        shared: Arc<Shared>,
        conn: Arc<Conn>,
        to_client: SyncSender<Item>,
        infos: Receiver<ReqInfo>,
    ) -> ServerReader {
        let (state, head, out) = (RespState::Head, HeadBuf::default(), Vec::new());
        ServerReader { shared, conn, to_client, infos, state, head, out }
    }

    pub(crate) fn run(mut self) {
        let mut buf = vec![0u8; READ_BUF];
        loop {
            match read_some(&self.shared, &self.conn, &self.conn.upstream, &mut buf, true) {
                ReadOutcome::Data(n) => {
                    let t = Instant::now();
                    if self.process(&buf[..n], t) == Flow::Stop || !self.flush(t) {
                        return;
                    }
                }
                ReadOutcome::Eof | ReadOutcome::Error => {
                    if self.conn.is_closed() || self.conn.holding() {
                        return;
                    }
                    let t = Instant::now();
                    match std::mem::replace(&mut self.state, RespState::Discard) {
                        RespState::Head => {
                            let partial = self.head.take();
                            self.out.extend_from_slice(&partial);
                        }
                        RespState::Body { fx, .. } => {
                            if let Some(Fault::TruncateBody { keep_fraction }) = fx.fault {
                                if fx.keep.is_none() {
                                    let k = keep_len(fx.stash.len() as u64, keep_fraction) as usize;
                                    self.out.extend_from_slice(&fx.stash[..k]);
                                }
                            }
                        }
                        RespState::Raw | RespState::Discard => {}
                    }
                    if self.flush(t) {
                        let _ = self.to_client.send(Item::Close { due: t + self.shared.delay / 2 });
                    }
                    return;
                }
                ReadOutcome::Stopped => return,
            }
        }
    }

    fn due(&self, t: Instant) -> Instant {
        t + self.shared.delay / 2
    }

    fn flush(&mut self, t: Instant) -> bool {
        if self.out.is_empty() {
            return true;
        }
        let bytes = std::mem::take(&mut self.out);
        self.to_client.send(Item::Data { bytes, due: self.due(t), pace: None }).is_ok()
    }

    /// Flushes, then sends `item`.
    fn then(&mut self, t: Instant, item: Item) -> bool {
        self.flush(t) && self.to_client.send(item).is_ok()
    }

    fn hold(&mut self, t: Instant) -> Flow {
        self.conn.holding.store(true, SeqCst);
        self.state = RespState::Discard;
        if self.then(t, Item::Hold) {
            Flow::Continue
        } else {
            Flow::Stop
        }
    }

    fn close_after(&mut self, t: Instant) -> Flow {
        let due = self.due(t);
        self.then(t, Item::Close { due });
        Flow::Stop
    }

    fn process(&mut self, mut data: &[u8], t: Instant) -> Flow {
        while !data.is_empty() {
            match std::mem::replace(&mut self.state, RespState::Discard) {
                RespState::Raw => {
                    self.out.extend_from_slice(data);
                    self.state = RespState::Raw;
                    return Flow::Continue;
                }
                RespState::Discard => return Flow::Continue,
                RespState::Head => {
                    let (used, collected) = self.head.feed(data);
                    data = &data[used..];
                    match collected {
                        Collected::More => {
                            self.state = RespState::Head;
                            return Flow::Continue;
                        }
                        Collected::TooLong(head) => {
                            self.out.extend_from_slice(&head);
                            self.state = RespState::Raw;
                        }
                        Collected::Head(head) => {
                            if self.on_head(head, t) == Flow::Stop {
                                return Flow::Stop;
                            }
                        }
                    }
                }
                RespState::Body { mut body, mut fx } => {
                    let mut ranges = Vec::new();
                    let want_ranges = fx.fault == Some(Fault::CorruptBody);
                    let (used, done) = match body.advance(data, want_ranges.then_some(&mut ranges)) {
                        Ok(r) => r,
                        Err(()) => {
                            self.out.extend_from_slice(data);
                            self.state = RespState::Raw;
                            return Flow::Continue;
                        }
                    };
                    let seg = &data[..used];
                    data = &data[used..];
                    match fx.fault.clone() {
                        Some(Fault::CorruptBody) => {
                            let start = self.out.len();
                            self.out.extend_from_slice(seg);
                            for (a, b) in ranges {
                                let p0 = fx.payload;
                                let len = (b - a) as u64;
                                let mut k = p0.div_ceil(1024) * 1024;
                                while k < p0 + len {
                                    self.out[start + a + (k - p0) as usize] ^= 0xFF;
                                    k += 1024;
                                }
                                fx.payload += len;
                            }
                        }
                        Some(Fault::Lz4Bomb(_)) => {}
                        Some(Fault::Rechunk) => {
                            if !seg.is_empty() {
                                self.out.extend_from_slice(format!("{:x}\r\n", seg.len()).as_bytes());
                                self.out.extend_from_slice(seg);
                                self.out.extend_from_slice(b"\r\n");
                            }
                            if done {
                                self.out.extend_from_slice(b"0\r\n\r\n");
                            }
                        }
                        Some(Fault::DripBody { bytes_per_sec }) => {
                            let item = Item::Data { bytes: seg.to_vec(), due: self.due(t), pace: Some(bytes_per_sec) };
                            if !self.then(t, item) {
                                return Flow::Stop;
                            }
                        }
                        Some(Fault::StallMidBody { after_bytes }) => {
                            let n = (after_bytes.saturating_sub(fx.sent)).min(used as u64) as usize;
                            self.out.extend_from_slice(&seg[..n]);
                            fx.sent += n as u64;
                            if fx.sent >= after_bytes {
                                self.conn.completed.fetch_add(u64::from(done), SeqCst);
                                return self.hold(t);
                            }
                        }
                        Some(Fault::TruncateBody { keep_fraction }) => match fx.keep {
                            Some(keep) => {
                                let n = (keep.saturating_sub(fx.sent)).min(used as u64) as usize;
                                self.out.extend_from_slice(&seg[..n]);
                                fx.sent += n as u64;
                                if fx.sent >= keep {
                                    return self.close_after(t);
                                }
                            }
                            None => {
                                fx.stash.extend_from_slice(seg);
                                if done || fx.stash.len() > 64 << 20 {
                                    let k = keep_len(fx.stash.len() as u64, keep_fraction) as usize;
                                    self.out.extend_from_slice(&fx.stash[..k]);
                                    return self.close_after(t);
                                }
                            }
                        },
                        _ => self.out.extend_from_slice(seg),
                    }
                    if done {
                        self.conn.completed.fetch_add(1, SeqCst);
                        self.state = RespState::Head;
                    } else {
                        self.state = RespState::Body { body, fx };
                    }
                }
            }
        }
        Flow::Continue
    }

    fn on_head(&mut self, mut head: Vec<u8>, t: Instant) -> Flow {
        let Some(resp) = Head::parse(&head, Side::Response) else {
            self.out.extend_from_slice(&head);
            self.state = RespState::Raw;
            return Flow::Continue;
        };
        let status = resp.status();
        if (100..200).contains(&status) {
            self.out.extend_from_slice(&head);
            self.state = if status == 101 { RespState::Raw } else { RespState::Head };
            return Flow::Continue;
        }
        let info = self.infos.try_recv().unwrap_or_default();
        self.shared.responses.fetch_add(1, SeqCst);
        if info.connect && (200..300).contains(&status) {
            self.out.extend_from_slice(&head);
            self.state = RespState::Raw;
            return Flow::Continue;
        }
        let body = resp.body(info.head_only).ok().flatten();
        match &info.fault {
            Some(Fault::StallBeforeHeaders) => return self.hold(t),
            Some(Fault::Lz4Bomb(bomb)) if (200..300).contains(&status) && !info.head_only => {
                return self.bomb(*bomb, head, body, t);
            }
            Some(Fault::SkewDate { seconds }) => {
                let seconds = *seconds;
                head = edit_header(&head, "Date", &|old: Option<&str>| {
                    let base = old.and_then(parse_http_date).unwrap_or_else(unix_now);
                    http_date(base.saturating_add(seconds))
                });
            }
            Some(Fault::Gzip) => head = edit_header(&head, "Content-Encoding", &|_| "gzip".to_string()),
            Some(Fault::Rechunk) if matches!(body, None | Some(BodyTracker::Length(_))) && !info.head_only => {
                head = edit_header(&remove_header(&head, "Content-Length"), "Transfer-Encoding", &|_| "chunked".into());
                if body.is_none() {
                    head.extend_from_slice(b"0\r\n\r\n");
                }
            }
            _ => {}
        }
        self.out.extend_from_slice(&head);
        let keep = match (&info.fault, &body) {
            (Some(Fault::TruncateBody { keep_fraction }), Some(BodyTracker::Length(n))) => {
                Some(keep_len(*n, *keep_fraction))
            }
            (Some(Fault::TruncateBody { .. }), None) => Some(0),
            _ => None,
        };
        if keep == Some(0) {
            return self.close_after(t);
        }
        if let Some(Fault::StallMidBody { after_bytes: 0 }) = info.fault {
            self.conn.completed.fetch_add(u64::from(body.is_none()), SeqCst);
            return self.hold(t);
        }
        match body {
            None => {
                self.conn.completed.fetch_add(1, SeqCst);
                self.state = RespState::Head;
            }
            Some(body) => {
                let fx = BodyFx { fault: info.fault, sent: 0, payload: 0, keep, stash: Vec::new() };
                self.state = RespState::Body { body, fx };
            }
        }
        Flow::Continue
    }
}

impl ServerReader {
    /// Sends `head` with the bomb's body in place of the upstream's, which is then dropped.
    fn bomb(&mut self, bomb: Bomb, head: Vec<u8>, body: Option<BodyTracker>, t: Instant) -> Flow {
        let frame = bomb_frame(bomb);
        let head = remove_header(&remove_header(&head, "Content-Length"), "Transfer-Encoding");
        let (framing, length) = if bomb == Bomb::Flood {
            ("Transfer-Encoding", "chunked".to_string())
        } else {
            ("Content-Length", frame.len().to_string())
        };
        self.out.extend_from_slice(&edit_header(&head, framing, &|_| length.clone()));
        if bomb == Bomb::Flood {
            self.out.extend_from_slice(format!("{:x}\r\n", frame.len()).as_bytes());
        }
        let due = self.due(t);
        if !self.then(t, Item::Shared { bytes: frame, due }) {
            return Flow::Stop;
        }
        if bomb == Bomb::Flood {
            self.out.extend_from_slice(b"\r\n0\r\n\r\n");
        }
        match body {
            None => {
                self.conn.completed.fetch_add(1, SeqCst);
                self.state = RespState::Head;
            }
            Some(body) => {
                let fx =
                    BodyFx { fault: Some(Fault::Lz4Bomb(bomb)), sent: 0, payload: 0, keep: None, stash: Vec::new() };
                self.state = RespState::Body { body, fx };
            }
        }
        Flow::Continue
    }
}

fn keep_len(len: u64, fraction: f64) -> u64 {
    ((len as f64 * fraction.clamp(0.0, 1.0)).floor() as u64).min(len)
}
