//! The writing side of each direction: the delay line (a chunk is written at its due
//! time), the bandwidth cap (a token bucket shared by all connections) and the writes a
//! fault asks for (a drip, an endless head, a hold).

use std::io::Write;
use std::net::{Shutdown, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering::SeqCst};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::conn::{is_retry, Conn, IDLE_TIMEOUT};
use crate::proxy::Shared;
use crate::{lock, POLL, READ_BUF};

/// A token bucket shared by all connections for one direction, kept as the virtual time
/// at which the bytes reserved so far have been sent.
pub(crate) struct Bucket {
    rate: f64,
    burst: Duration,
    piece: usize,
    next: Mutex<Instant>,
}

impl Bucket {
    pub(crate) fn new(bytes_per_sec: u64) -> Bucket {
        let rate = bytes_per_sec.max(1) as f64;
        let burst_bytes = (rate / 100.0).max(8192.0); // 10 ms worth, at least 8 KiB
        Bucket {
            rate,
            burst: Duration::from_secs_f64(burst_bytes / rate),
            piece: (burst_bytes as usize).min(READ_BUF),
            next: Mutex::new(Instant::now()),
        }
    }

    /// Reserves `n` bytes; they may be sent at the instant returned.
    pub(crate) fn reserve(&self, n: usize) -> Instant {
        let now = Instant::now();
        let floor = now.checked_sub(self.burst).unwrap_or(now);
        let mut next = lock(&self.next);
        if *next < floor {
            *next = floor;
        }
        *next += Duration::from_secs_f64(n as f64 / self.rate);
        *next
    }
}

/// What a reader hands to the writer of the other side.
pub(crate) enum Item {
    /// Bytes to write at `due`; `pace`: at this many bytes per second.
    Data { bytes: Vec<u8>, due: Instant, pace: Option<u64> },
    /// Bytes shared by many responses, to write at `due`.
    Shared { bytes: Arc<Vec<u8>>, due: Instant },
    /// Half-close the destination (shutdown write) at `due`.
    HalfClose { due: Instant },
    /// Close the whole connection at `due`.
    Close { due: Instant },
    /// Write nothing more (a stall fault).
    Hold,
    /// Write an endless response head from `due` on.
    Endless { due: Instant },
}

pub(crate) fn run_writer(shared: Arc<Shared>, conn: Arc<Conn>, rx: Receiver<Item>, to_upstream: bool) {
    let (dest, bucket, counter) = if to_upstream {
        (&conn.upstream, shared.bucket_to_upstream.as_ref(), &shared.bytes_to_upstream)
    } else {
        (&conn.client, shared.bucket_to_client.as_ref(), &shared.bytes_to_client)
    };
    let mut holding = false;
    while conn.alive(&shared) {
        let item = match rx.recv_timeout(POLL) {
            Ok(item) => item,
            Err(RecvTimeoutError::Timeout) => continue,
            Err(RecvTimeoutError::Disconnected) => break,
        };
        if holding {
            continue;
        }
        let go_on = match item {
            Item::Data { bytes, due, pace } => {
                conn.wait_until(&shared, due) && send(&shared, &conn, dest, &bytes, bucket, pace, counter)
            }
            Item::Shared { bytes, due } => {
                conn.wait_until(&shared, due) && send(&shared, &conn, dest, &bytes, bucket, None, counter)
            }
            Item::HalfClose { due } => {
                if conn.wait_until(&shared, due) {
                    let _ = dest.shutdown(Shutdown::Write);
                }
                true
            }
            Item::Close { due } => {
                conn.wait_until(&shared, due);
                conn.close();
                false
            }
            Item::Hold => {
                holding = true;
                true
            }
            Item::Endless { due } => {
                if conn.wait_until(&shared, due) {
                    endless_head(&shared, &conn, dest, counter);
                }
                false
            }
        };
        if !go_on {
            break;
        }
    }
}

/// Writes `bytes` under the bandwidth cap and the pace; false (connection closed) on error.
fn send(
    shared: &Shared,
    conn: &Conn,
    dest: &TcpStream,
    bytes: &[u8],
    bucket: Option<&Bucket>,
    pace: Option<u64>,
    counter: &AtomicU64,
) -> bool {
    let mut off = 0;
    while off < bytes.len() {
        let mut piece = bytes.len() - off;
        if let Some(rate) = pace {
            piece = piece.min(drip_piece(rate));
        }
        if let Some(b) = bucket {
            piece = piece.min(b.piece);
            if !conn.wait_until(shared, b.reserve(piece)) {
                return false;
            }
        }
        if !write_all(shared, conn, dest, &bytes[off..off + piece]) {
            conn.close();
            return false;
        }
        counter.fetch_add(piece as u64, SeqCst);
        off += piece;
        if let Some(rate) = pace {
            let pause = Duration::from_secs_f64(piece as f64 / rate.max(1) as f64);
            if !conn.wait_until(shared, Instant::now() + pause) {
                return false;
            }
        }
    }
    true
}

fn drip_piece(bytes_per_sec: u64) -> usize {
    (bytes_per_sec / 20).clamp(1, READ_BUF as u64) as usize
}

/// `write_all` with the socket's write timeout, checking the flags.
fn write_all(shared: &Shared, conn: &Conn, dest: &TcpStream, mut buf: &[u8]) -> bool {
    let mut w = dest;
    while !buf.is_empty() {
        if !conn.alive(shared) || conn.idle() > IDLE_TIMEOUT {
            return false;
        }
        match w.write(buf) {
            Ok(0) => return false,
            Ok(n) => {
                buf = &buf[n..];
                conn.touch();
            }
            Err(e) if is_retry(&e) => {}
            Err(_) => return false,
        }
    }
    true
}

/// `HTTP/1.1 200 OK` and header lines, 16 KiB every 10 ms, until the connection closes.
fn endless_head(shared: &Shared, conn: &Conn, dest: &TcpStream, counter: &AtomicU64) {
    let mut first = b"HTTP/1.1 200 OK\r\n".to_vec();
    let mut n = 0u64;
    loop {
        let mut batch = std::mem::take(&mut first);
        while batch.len() < 16 * 1024 {
            batch.extend_from_slice(format!("X-Endless-{n}: {}\r\n", "a".repeat(64)).as_bytes());
            n += 1;
        }
        if !write_all(shared, conn, dest, &batch) {
            conn.close();
            return;
        }
        counter.fetch_add(batch.len() as u64, SeqCst);
        if !conn.wait_until(shared, Instant::now() + Duration::from_millis(10)) {
            return;
        }
    }
}
