//! `faultproxy`: an HTTP/1.1 proxy on 127.0.0.1 for gocacheprog-s3's tests and benchmarks.
//! It adds a simulated network (a round-trip delay and a bandwidth cap shared by all
//! connections) and injects faults into chosen requests.
//!
//! Used in-process by the integration tests (`Proxy::start`) and as the dev binary
//! `faultproxy` (`cargo build --release -p faultproxy`, see `cli`) by scripts/bench.sh.
//!
//! Model: every accepted client connection gets its own upstream connection (so the
//! client's connection reuse is preserved). Each direction has a reader thread (reads are
//! always posted, so a store that leaves Nagle on is not slowed by delayed ACKs) and a
//! writer thread; between them a delay line: a chunk read at time t is written no earlier
//! than t + delay/2, in order. The first data of a connection waits one more `delay` (the
//! TCP handshake's round trip). The bandwidth cap is a token bucket per direction shared
//! by all connections. Without a fault the bytes pass unchanged; the proxy follows the
//! HTTP/1.1 framing (Content-Length, chunked, until close; HEAD, 1xx, 204 and 304) only
//! to know where each request and response starts and ends. Anything it cannot parse is
//! passed through raw for the rest of the connection.
//!
//! Bounded: every blocking call has a timeout of at most 100 ms in a loop that checks the
//! stop flag; dropping a `Proxy` closes everything and waits (at most 3 s, normally a few
//! ms) until all its threads are gone. Connections idle for 5 minutes are closed.
//!
//! Layout: `proxy` (the handle, listener and connection set-up), `conn` (one connection's
//! sockets), `requests` and `responses` (the two readers, where the faults act), `writer`
//! (the delay line and the bandwidth cap), `http` and `body` (the one parser of request
//! and response heads, body framing, whole-message reads), `fault` and `bombs` (what can
//! be injected), `upstream` (a small HTTP server for the proxy's own tests and the
//! selftest) and `cli` (the binary).

mod body;
mod bombs;
pub mod cli;
mod conn;
mod fault;
mod http;
mod proxy;
mod requests;
mod responses;
mod upstream;
mod writer;

#[cfg(test)]
mod tests;

pub use fault::{Bomb, Fault, FaultRule, HUGE_CONTENT_LENGTH};
pub use http::{http_date, parse_http_date};
pub use proxy::{Proxy, ProxyConfig, ProxyStats};
pub use upstream::{test_body, test_byte, TestUpstream, TEST_DATE};

use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

/// Size of one read (and so the largest chunk in a delay line).
const READ_BUF: usize = 64 * 1024;
/// Socket timeouts and channel waits: how often a blocked thread checks its flags.
const POLL: Duration = Duration::from_millis(100);
/// A request or response head longer than this is passed through raw.
const MAX_HEAD: usize = 64 * 1024;
const THREAD_STACK: usize = 256 * 1024;

/// Locks, ignoring poisoning (a panicked thread leaves consistent counters behind).
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}
