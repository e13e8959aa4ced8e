//! Message bodies: where a body ends under its framing (Content-Length, chunked, until
//! close), and whole messages read from a blocking stream (the test upstream, the
//! selftest's clients, the tests).

use std::io::{self, Read};

use crate::http::{Collected, Head, HeadBuf, Side, Start};
use crate::MAX_HEAD;

impl Head {
    /// How this message's body is framed (`None`: no body). A response to a HEAD request
    /// (`answers_head`) has none whatever its head says. `Err`: a request whose framing
    /// the proxy cannot follow.
    pub(crate) fn body(&self, answers_head: bool) -> Result<Option<BodyTracker>, ()> {
        match self.start {
            Start::Request { .. } => match self.chunked() {
                Some(true) => Ok(Some(BodyTracker::chunked())),
                Some(false) => Err(()),
                None => Ok(self.content_length()?.filter(|n| *n > 0).map(BodyTracker::Length)),
            },
            Start::Response { status } => {
                if answers_head || status == 204 || status == 304 || (100..200).contains(&status) {
                    return Ok(None);
                }
                Ok(match self.chunked() {
                    Some(true) => Some(BodyTracker::chunked()),
                    Some(false) => Some(BodyTracker::UntilClose),
                    None => match self.content_length() {
                        Ok(Some(0)) => None,
                        Ok(Some(n)) => Some(BodyTracker::Length(n)),
                        Ok(None) | Err(()) => Some(BodyTracker::UntilClose),
                    },
                })
            }
        }
    }
}

/// Follows a message body through its framing.
#[derive(Clone, Debug)]
pub(crate) enum BodyTracker {
    Length(u64),
    Chunked(Chunk),
    UntilClose,
}

#[derive(Clone, Copy, Debug)]
pub(crate) enum Chunk {
    Size { size: u64, digits: u32, ext: bool, len: usize },
    Data(u64),
    DataEnd,
    Trailer { len: usize },
}

impl BodyTracker {
    pub(crate) fn chunked() -> BodyTracker {
        BodyTracker::Chunked(Chunk::Size { size: 0, digits: 0, ext: false, len: 0 })
    }

    /// Consumes the body's bytes at the start of `data`: (bytes used, body complete).
    /// `payload` gets the ranges of `data` that are payload (not chunk framing).
    pub(crate) fn advance(
        &mut self,
        data: &[u8],
        mut payload: Option<&mut Vec<(usize, usize)>>,
    ) -> Result<(usize, bool), ()> {
        let mut add = |a: usize, b: usize| {
            if let Some(p) = payload.as_mut() {
                if b > a {
                    p.push((a, b));
                }
            }
        };
        match self {
            BodyTracker::UntilClose => {
                add(0, data.len());
                Ok((data.len(), false))
            }
            BodyTracker::Length(rem) => {
                let take = (*rem).min(data.len() as u64) as usize;
                add(0, take);
                *rem -= take as u64;
                Ok((take, *rem == 0))
            }
            BodyTracker::Chunked(state) => {
                let mut i = 0;
                while i < data.len() {
                    match state {
                        Chunk::Data(rem) => {
                            let take = (*rem).min((data.len() - i) as u64) as usize;
                            add(i, i + take);
                            i += take;
                            *rem -= take as u64;
                            if *rem == 0 {
                                *state = Chunk::DataEnd;
                            }
                        }
                        Chunk::Size { size, digits, ext, len } => {
                            let c = data[i];
                            i += 1;
                            *len += 1;
                            if *len > 4096 {
                                return Err(());
                            }
                            match c {
                                b'\n' if *digits == 0 => return Err(()),
                                b'\n' if *size == 0 => *state = Chunk::Trailer { len: 0 },
                                b'\n' => *state = Chunk::Data(*size),
                                b'\r' => {}
                                _ if *ext => {}
                                b';' | b' ' | b'\t' => *ext = true,
                                _ => {
                                    let v = (c as char).to_digit(16).ok_or(())?;
                                    if *digits >= 16 {
                                        return Err(());
                                    }
                                    *size = *size * 16 + u64::from(v);
                                    *digits += 1;
                                }
                            }
                        }
                        Chunk::DataEnd => {
                            let c = data[i];
                            i += 1;
                            match c {
                                b'\n' => *state = Chunk::Size { size: 0, digits: 0, ext: false, len: 0 },
                                b'\r' => {}
                                _ => return Err(()),
                            }
                        }
                        Chunk::Trailer { len } => {
                            let c = data[i];
                            i += 1;
                            match c {
                                b'\n' if *len == 0 => return Ok((i, true)),
                                b'\n' => *len = 0,
                                b'\r' => {}
                                _ => {
                                    *len += 1;
                                    if *len > MAX_HEAD {
                                        return Err(());
                                    }
                                }
                            }
                        }
                    }
                }
                Ok((i, false))
            }
        }
    }
}

/// One whole message read by [`MessageReader`].
pub(crate) struct Message {
    pub(crate) head: Head,
    /// The message as it came, head and framed body (when kept).
    pub(crate) raw: Vec<u8>,
    /// The body's payload, without chunk framing (when kept).
    pub(crate) payload: Vec<u8>,
}

/// Reads whole messages, one after the other, from a blocking source (`Ok(0)`: the end).
pub(crate) struct MessageReader<R> {
    src: R,
    buf: Vec<u8>,
    /// Bytes read beyond the last message.
    pending: Vec<u8>,
}

impl<R: Read> MessageReader<R> {
    pub(crate) fn new(src: R, buf_size: usize) -> MessageReader<R> {
        MessageReader::resume(src, buf_size, Vec::new())
    }

    /// Goes on after bytes already read beyond a message (see `into_pending`).
    pub(crate) fn resume(src: R, buf_size: usize, pending: Vec<u8>) -> MessageReader<R> {
        MessageReader { src, buf: vec![0; buf_size.max(1)], pending }
    }

    #[cfg(test)]
    pub(crate) fn into_pending(self) -> Vec<u8> {
        self.pending
    }

    /// The next message travelling `side`; `answers_head`: a response to a HEAD request.
    /// `keep`: keep its bytes (`raw`, `payload`), else only count through them. A body
    /// delimited by the close ends at the end of input; any other early end is
    /// `UnexpectedEof`, a head or framing the proxy cannot follow `InvalidData`.
    pub(crate) fn read(&mut self, side: Side, answers_head: bool, keep: bool) -> io::Result<Message> {
        let mut heads = HeadBuf::default();
        let mut data = std::mem::take(&mut self.pending);
        let head_bytes = loop {
            match heads.feed(&data) {
                (used, Collected::Head(head)) => {
                    data.drain(..used);
                    break head;
                }
                (_, Collected::TooLong(_)) => return Err(io::ErrorKind::InvalidData.into()),
                (_, Collected::More) => data.clear(),
            }
            let n = self.fill()?;
            data.extend_from_slice(&self.buf[..n]);
        };
        self.pending = data;
        let invalid = |()| io::Error::from(io::ErrorKind::InvalidData);
        let head = Head::parse(&head_bytes, side).ok_or(invalid(()))?;
        let body = head.body(answers_head).map_err(invalid)?;
        let raw = if keep { head_bytes } else { Vec::new() };
        let mut message = Message { head, raw, payload: Vec::new() };
        let Some(mut body) = body else { return Ok(message) };
        loop {
            let mut ranges = Vec::new();
            let (used, done) = body.advance(&self.pending, keep.then_some(&mut ranges)).map_err(invalid)?;
            if keep {
                for (a, b) in ranges {
                    message.payload.extend_from_slice(&self.pending[a..b]);
                }
                message.raw.extend_from_slice(&self.pending[..used]);
            }
            self.pending.drain(..used);
            if done {
                return Ok(message);
            }
            match self.fill() {
                Ok(n) => self.pending.extend_from_slice(&self.buf[..n]),
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof && matches!(body, BodyTracker::UntilClose) => {
                    return Ok(message);
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// One read into `buf`; the end of input is `UnexpectedEof`.
    fn fill(&mut self) -> io::Result<usize> {
        match self.src.read(&mut self.buf)? {
            0 => Err(io::ErrorKind::UnexpectedEof.into()),
            n => Ok(n),
        }
    }
}
