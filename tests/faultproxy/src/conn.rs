//! One proxied connection: the client's socket and its own upstream socket, the flags
//! its four threads share, and reading with the flags checked.

use std::io::{self, Read};
use std::net::{Shutdown, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::SeqCst};
use std::thread;
use std::time::{Duration, Instant};

use crate::proxy::Shared;
use crate::POLL;

/// Longest sleep between flag checks.
const SLICE: Duration = Duration::from_millis(50);
/// A connection with no read or write for this long is closed.
pub(crate) const IDLE_TIMEOUT: Duration = Duration::from_secs(300);

pub(crate) struct Conn {
    pub(crate) client: TcpStream,
    pub(crate) upstream: TcpStream,
    pub(crate) closed: AtomicBool,
    /// A stall fault is active: nothing more reaches the client.
    pub(crate) holding: AtomicBool,
    pub(crate) start: Instant,
    /// Milliseconds since `start` of the last successful read or write.
    pub(crate) last_activity: AtomicU64,
    /// Requests forwarded to the upstream, and final responses read from it.
    pub(crate) forwarded: AtomicU64,
    pub(crate) completed: AtomicU64,
}

impl Conn {
    pub(crate) fn new(client: TcpStream, upstream: TcpStream) -> Conn {
        Conn {
            client,
            upstream,
            closed: AtomicBool::new(false),
            holding: AtomicBool::new(false),
            start: Instant::now(),
            last_activity: AtomicU64::new(0),
            forwarded: AtomicU64::new(0),
            completed: AtomicU64::new(0),
        }
    }

    pub(crate) fn alive(&self, shared: &Shared) -> bool {
        !self.closed.load(SeqCst) && !shared.stopped()
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.closed.load(SeqCst)
    }

    pub(crate) fn holding(&self) -> bool {
        self.holding.load(SeqCst)
    }

    /// Closes both sockets (FIN); every thread of the connection then ends.
    pub(crate) fn close(&self) {
        if !self.closed.swap(true, SeqCst) {
            let _ = self.client.shutdown(Shutdown::Both);
            let _ = self.upstream.shutdown(Shutdown::Both);
        }
    }

    /// Closes abruptly: the client socket gets no FIN; on Linux SO_LINGER 0 makes its
    /// close (when the connection's last thread has let go of it) send a RST.
    pub(crate) fn reset(&self) {
        if !self.closed.swap(true, SeqCst) {
            set_linger_zero(&self.client);
            let _ = self.upstream.shutdown(Shutdown::Both);
        }
    }

    pub(crate) fn touch(&self) {
        self.last_activity.store(self.start.elapsed().as_millis() as u64, SeqCst);
    }

    pub(crate) fn idle(&self) -> Duration {
        let last = Duration::from_millis(self.last_activity.load(SeqCst));
        self.start.elapsed().saturating_sub(last)
    }

    /// Sleeps until `due`; false when the connection closed or the proxy stopped first.
    pub(crate) fn wait_until(&self, shared: &Shared, due: Instant) -> bool {
        loop {
            if !self.alive(shared) {
                return false;
            }
            let now = Instant::now();
            if now >= due {
                return true;
            }
            thread::sleep((due - now).min(SLICE));
        }
    }
}

#[cfg(target_os = "linux")]
pub(crate) fn set_linger_zero(stream: &TcpStream) {
    let _ = socket2::SockRef::from(stream).set_linger(Some(Duration::ZERO));
}

#[cfg(not(target_os = "linux"))]
pub(crate) fn set_linger_zero(_stream: &TcpStream) {}

/// Asks the kernel to acknowledge at once what arrives next (Linux clears it as it goes,
/// so this is set before every read from the upstream).
#[cfg(target_os = "linux")]
fn quick_ack(stream: &TcpStream) {
    let _ = socket2::SockRef::from(stream).set_tcp_quickack(true);
}

#[cfg(not(target_os = "linux"))]
fn quick_ack(_stream: &TcpStream) {}

pub(crate) fn setup_socket(s: &TcpStream) -> io::Result<()> {
    s.set_nodelay(true)?;
    s.set_read_timeout(Some(POLL))?;
    s.set_write_timeout(Some(POLL))
}
/// How one read ended.
pub(crate) enum ReadOutcome {
    Data(usize),
    Eof,
    Error,
    /// The connection was closed or the proxy stopped.
    Stopped,
}

pub(crate) fn read_some(shared: &Shared, conn: &Conn, src: &TcpStream, buf: &mut [u8], ack: bool) -> ReadOutcome {
    let mut r = src;
    loop {
        if !conn.alive(shared) {
            return ReadOutcome::Stopped;
        }
        if conn.idle() > IDLE_TIMEOUT {
            conn.close();
            return ReadOutcome::Stopped;
        }
        if ack {
            quick_ack(src);
        }
        match r.read(buf) {
            Ok(0) => return ReadOutcome::Eof,
            Ok(n) => {
                conn.touch();
                return ReadOutcome::Data(n);
            }
            Err(e) if is_retry(&e) => {}
            Err(_) => return ReadOutcome::Error,
        }
    }
}

#[derive(PartialEq)]
/// Whether a reader goes on with its connection.
pub(crate) enum Flow {
    Continue,
    Stop,
}

/// Whether a socket error only means "nothing yet" (a timeout that lets a loop check
/// its flags).
pub(crate) fn is_retry(e: &io::Error) -> bool {
    matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut | io::ErrorKind::Interrupted)
}
