//! `faultproxy`: an HTTP/1.1 proxy on 127.0.0.1 for tests and benchmarks. It adds a
//! simulated network (a round-trip delay and a bandwidth cap shared by all connections)
//! and injects faults into chosen requests. std only, plus two of the crate's own
//! dependencies: `socket2` on Linux (TCP_QUICKACK, SO_LINGER) and `httpdate` (`Date`).
//!
//! Used in-process by the integration tests (`Proxy::start`) and as the dev binary
//! `faultproxy` (`cargo build --release --features dev-proxy --bin faultproxy`, see
//! `cli_main`) by scripts/bench.sh.
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

use std::collections::{BTreeMap, HashMap};
use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::SeqCst};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender, SyncSender};
use std::sync::{Arc, Barrier, Mutex, MutexGuard, OnceLock};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Size of one read (and so the largest chunk in a delay line).
const READ_BUF: usize = 64 * 1024;
/// Chunks queued per direction and connection (at most READ_BUF each).
const QUEUE_ITEMS: usize = 48;
/// Socket timeouts and channel waits: how often a blocked thread checks its flags.
const POLL: Duration = Duration::from_millis(100);
/// Longest sleep between flag checks.
const SLICE: Duration = Duration::from_millis(50);
const IDLE_TIMEOUT: Duration = Duration::from_secs(300);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// A request or response head longer than this is passed through raw.
const MAX_HEAD: usize = 64 * 1024;
/// How long dropping a `Proxy` waits for its threads at most.
const STOP_WAIT: Duration = Duration::from_secs(3);
const THREAD_STACK: usize = 256 * 1024;
/// The Content-Length of `Fault::HugeContentLength`.
pub const HUGE_CONTENT_LENGTH: u64 = 1_000_000_000_000;

// ------------------------------------------------------------------------------------
// Public API
// ------------------------------------------------------------------------------------

/// The simulated network of a proxy.
#[derive(Clone, Debug)]
pub struct ProxyConfig {
    /// The simulated round-trip time: delay/2 each way, plus one `delay` before the first
    /// data of a connection reaches the upstream (the TCP handshake).
    pub delay: Duration,
    /// Bytes per second, per direction, shared by all connections (`None`: no cap).
    pub bandwidth: Option<u64>,
    /// Seeds the PRNG that picks which requests get a fault with a fraction below 1.
    pub seed: u64,
}

impl Default for ProxyConfig {
    fn default() -> Self {
        ProxyConfig { delay: Duration::ZERO, bandwidth: None, seed: 1 }
    }
}

/// A fault injected into one request's exchange.
#[derive(Clone, Debug, PartialEq)]
pub enum Fault {
    /// The proxy answers itself (the request is not forwarded, its body is discarded)
    /// with `status` and an S3 XML error with `code`, keeping the connection alive.
    ErrorStatus { status: u16, code: String },
    /// The client connection is closed abruptly (RST on Linux) when the request arrives.
    Reset,
    /// The response head passes unchanged, then only `keep_fraction` of the body, then
    /// the connection is closed.
    TruncateBody { keep_fraction: f64 },
    /// Every 1024th byte of the response body (from the first) is inverted; same length.
    CorruptBody,
    /// The request is forwarded, but no response byte ever reaches the client; the
    /// connection stays open until the client closes it or the proxy stops.
    StallBeforeHeaders,
    /// The response head and `after_bytes` of the body pass, then the connection stalls.
    StallMidBody { after_bytes: u64 },
    /// The response body is sent at `bytes_per_sec`.
    DripBody { bytes_per_sec: u64 },
    /// The response's `Date` header is moved by `seconds`.
    SkewDate { seconds: i64 },
    /// The proxy answers `200` with `Content-Length: 1000000000000`, a few bytes of body,
    /// then stalls.
    HugeContentLength,
    /// The proxy answers `HTTP/1.1 200 OK` followed by header lines that never end.
    EndlessHeaders,
    /// `Content-Encoding: gzip` is added to the response head; the body is unchanged.
    Gzip,
    /// The proxy answers `307 Temporary Redirect` with this `Location`.
    Redirect { location: String },
    /// The proxy answers `400` with an XML error that holds an entity-expansion bomb.
    XmlBomb,
    /// The response body is re-framed as `Transfer-Encoding: chunked`, without a
    /// `Content-Length` (as some stores and proxies answer); same payload.
    Rechunk,
    /// The proxy answers `400` with an S3 error whose message echoes the request's
    /// `Authorization` and `x-amz-security-token` headers (a store that leaks them).
    EchoAuthorization,
    /// The proxy answers a listing with an empty, complete `ListBucketResult` (a listing
    /// that lags behind the bucket, as eventually consistent ones do).
    EmptyListing,
    /// The proxy answers `200` with `Content-Length: abc`, then closes.
    BadContentLength,
    /// The proxy answers `200` with two different `Content-Length` headers, then closes.
    ConflictingContentLength,
    /// The request head is taken, and then nothing more is read from the client (a store
    /// that accepts a PUT's headers and never reads its body); no answer comes.
    NoReadBody,
    /// A successful response keeps its head (and so the object's metadata) but its body is
    /// replaced by an LZ4 frame a store should never send (the upstream's body is dropped).
    Lz4Bomb(Bomb),
}

/// The LZ4 frames of [`Fault::Lz4Bomb`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Bomb {
    /// 1024 blocks of 64 KB of zeros, 267 bytes each: 64 MiB from 277 KB.
    Zeros,
    /// A frame declaring 4 MB blocks (a decoder that trusts it allocates 8 MB), holding one
    /// stored 64 KB block.
    BigBlocks,
    /// 128 stored blocks of 64 KB of noise (8 MiB, what it claims: ratio 1), chunked
    /// without a Content-Length.
    Flood,
}

impl Fault {
    /// `503 SlowDown`, the usual S3 throttling answer.
    pub fn slow_down() -> Fault {
        Fault::ErrorStatus { status: 503, code: "SlowDown".to_string() }
    }

    /// The name the fault is counted under in `ProxyStats::faults`.
    pub fn kind(&self) -> &'static str {
        match self {
            Fault::ErrorStatus { .. } => "error_status",
            Fault::Reset => "reset",
            Fault::TruncateBody { .. } => "truncate_body",
            Fault::CorruptBody => "corrupt_body",
            Fault::StallBeforeHeaders => "stall_before_headers",
            Fault::StallMidBody { .. } => "stall_mid_body",
            Fault::DripBody { .. } => "drip_body",
            Fault::SkewDate { .. } => "skew_date",
            Fault::HugeContentLength => "huge_content_length",
            Fault::EndlessHeaders => "endless_headers",
            Fault::Gzip => "gzip",
            Fault::Redirect { .. } => "redirect",
            Fault::XmlBomb => "xml_bomb",
            Fault::Rechunk => "rechunk",
            Fault::EchoAuthorization => "echo_authorization",
            Fault::EmptyListing => "empty_listing",
            Fault::BadContentLength => "bad_content_length",
            Fault::ConflictingContentLength => "conflicting_content_length",
            Fault::NoReadBody => "no_read_body",
            Fault::Lz4Bomb(Bomb::Zeros) => "lz4_zeros",
            Fault::Lz4Bomb(Bomb::BigBlocks) => "lz4_big_blocks",
            Fault::Lz4Bomb(Bomb::Flood) => "lz4_flood",
        }
    }

    /// Whether the proxy answers the request itself instead of forwarding it.
    fn is_local(&self) -> bool {
        matches!(
            self,
            Fault::ErrorStatus { .. }
                | Fault::Reset
                | Fault::HugeContentLength
                | Fault::EndlessHeaders
                | Fault::Redirect { .. }
                | Fault::XmlBomb
                | Fault::EchoAuthorization
                | Fault::EmptyListing
                | Fault::BadContentLength
                | Fault::ConflictingContentLength
                | Fault::NoReadBody
        )
    }
}

/// A fault and the requests it applies to. The first rule (in order) whose filter
/// matches a request and whose draw hits decides; a request gets at most one fault.
#[derive(Clone, Debug)]
pub struct FaultRule {
    pub fault: Fault,
    /// The part of the matching requests that get the fault (1.0: all, 0.0: none),
    /// drawn from the proxy's seeded PRNG.
    pub fraction: f64,
    /// Only requests with this method (case-insensitive; `None`, "ANY" or "*": all).
    pub method: Option<String>,
    /// Only requests whose target (path and query) contains this.
    pub path_contains: Option<String>,
}

impl FaultRule {
    /// The fault for every request.
    pub fn new(fault: Fault) -> FaultRule {
        FaultRule { fault, fraction: 1.0, method: None, path_contains: None }
    }

    pub fn with_fraction(mut self, fraction: f64) -> FaultRule {
        self.fraction = fraction;
        self
    }

    pub fn for_method(mut self, method: &str) -> FaultRule {
        self.method = Some(method.to_string());
        self
    }

    pub fn for_path(mut self, path_contains: &str) -> FaultRule {
        self.path_contains = Some(path_contains.to_string());
        self
    }

    fn matches(&self, method: &str, target: &str) -> bool {
        let method_ok = match self.method.as_deref() {
            None | Some("ANY") | Some("any") | Some("*") | Some("") => true,
            Some(m) => m.eq_ignore_ascii_case(method),
        };
        method_ok && self.path_contains.as_deref().is_none_or(|p| target.contains(p))
    }
}

/// Counters of a proxy since it started.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ProxyStats {
    /// Client connections forwarded to an upstream connection.
    pub connections: u64,
    /// Of those, still open.
    pub connections_active: u64,
    /// Client connections closed at once because the proxy was down.
    pub connections_refused: u64,
    /// Client connections closed because the upstream connection failed.
    pub upstream_connect_failures: u64,
    /// Request heads seen.
    pub requests: u64,
    /// Final (non-1xx) response heads seen from the upstream.
    pub responses: u64,
    pub faults_injected: u64,
    /// Faults injected per `Fault::kind`.
    pub faults: BTreeMap<String, u64>,
    /// Bytes written to the upstream.
    pub bytes_to_upstream: u64,
    /// Bytes written to clients (including the proxy's own answers).
    pub bytes_to_client: u64,
}

impl ProxyStats {
    /// How often the fault `kind` (see `Fault::kind`) was injected.
    pub fn fault_count(&self, kind: &str) -> u64 {
        self.faults.get(kind).copied().unwrap_or(0)
    }
}

/// A running proxy; dropping it stops it.
pub struct Proxy {
    shared: Arc<Shared>,
    port: u16,
    accept: Option<JoinHandle<()>>,
}

impl Proxy {
    /// Starts a proxy on a free port of 127.0.0.1 in front of 127.0.0.1:`upstream_port`.
    pub fn start(upstream_port: u16, config: ProxyConfig) -> io::Result<Proxy> {
        Proxy::start_on(0, upstream_port, config)
    }

    /// Like `start`, on 127.0.0.1:`listen_port` (0: any free port).
    pub fn start_on(listen_port: u16, upstream_port: u16, config: ProxyConfig) -> io::Result<Proxy> {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, listen_port))?;
        let port = listener.local_addr()?.port();
        let seed = if config.seed == 0 { 0x9E37_79B9_7F4A_7C15 } else { config.seed };
        let shared = Arc::new(Shared {
            upstream: SocketAddr::from((Ipv4Addr::LOCALHOST, upstream_port)),
            delay: config.delay,
            stop: AtomicBool::new(false),
            down: AtomicBool::new(false),
            rules: Mutex::new(Vec::new()),
            rng: Mutex::new(seed),
            bucket_to_upstream: config.bandwidth.map(Bucket::new),
            bucket_to_client: config.bandwidth.map(Bucket::new),
            conns: Mutex::new(HashMap::new()),
            next_conn: AtomicU64::new(0),
            live_threads: AtomicUsize::new(0),
            connections: AtomicU64::new(0),
            active: AtomicU64::new(0),
            refused: AtomicU64::new(0),
            upstream_failures: AtomicU64::new(0),
            requests: AtomicU64::new(0),
            responses: AtomicU64::new(0),
            faults_injected: AtomicU64::new(0),
            fault_counts: Mutex::new(BTreeMap::new()),
            bytes_to_upstream: AtomicU64::new(0),
            bytes_to_client: AtomicU64::new(0),
        });
        let s = shared.clone();
        let accept = spawn(&shared, "faultproxy-accept", move || accept_loop(s, listener))?;
        Ok(Proxy { shared, port, accept: Some(accept) })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `http://127.0.0.1:PORT`
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Replaces the active fault rules (for requests whose head arrives from now on).
    pub fn set_faults(&self, faults: Vec<FaultRule>) {
        *lock(&self.shared.rules) = faults;
    }

    pub fn clear_faults(&self) {
        lock(&self.shared.rules).clear();
    }

    /// Down: every open connection is closed and new ones are accepted and closed at
    /// once, like a store that went away. Up again: new connections work.
    pub fn set_down(&self, down: bool) {
        self.shared.down.store(down, SeqCst);
        if down {
            self.shared.close_all();
        }
    }

    pub fn is_down(&self) -> bool {
        self.shared.down.load(SeqCst)
    }

    pub fn stats(&self) -> ProxyStats {
        let s = &self.shared;
        ProxyStats {
            connections: s.connections.load(SeqCst),
            connections_active: s.active.load(SeqCst),
            connections_refused: s.refused.load(SeqCst),
            upstream_connect_failures: s.upstream_failures.load(SeqCst),
            requests: s.requests.load(SeqCst),
            responses: s.responses.load(SeqCst),
            faults_injected: s.faults_injected.load(SeqCst),
            faults: lock(&s.fault_counts).iter().map(|(k, v)| (k.to_string(), *v)).collect(),
            bytes_to_upstream: s.bytes_to_upstream.load(SeqCst),
            bytes_to_client: s.bytes_to_client.load(SeqCst),
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.shared.stop.store(true, SeqCst);
        // Wakes the accept loop, which then sees the stop flag.
        let _ = TcpStream::connect_timeout(&SocketAddr::from((Ipv4Addr::LOCALHOST, self.port)), POLL);
        self.shared.close_all();
        let deadline = Instant::now() + STOP_WAIT;
        while self.shared.live_threads.load(SeqCst) > 0 && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(2));
        }
        if let Some(accept) = self.accept.take() {
            if accept.is_finished() {
                let _ = accept.join();
            }
        }
    }
}

// ------------------------------------------------------------------------------------
// Shared state, connections, threads
// ------------------------------------------------------------------------------------

struct Shared {
    upstream: SocketAddr,
    delay: Duration,
    stop: AtomicBool,
    down: AtomicBool,
    rules: Mutex<Vec<FaultRule>>,
    rng: Mutex<u64>,
    bucket_to_upstream: Option<Bucket>,
    bucket_to_client: Option<Bucket>,
    conns: Mutex<HashMap<u64, Arc<Conn>>>,
    next_conn: AtomicU64,
    live_threads: AtomicUsize,
    connections: AtomicU64,
    active: AtomicU64,
    refused: AtomicU64,
    upstream_failures: AtomicU64,
    requests: AtomicU64,
    responses: AtomicU64,
    faults_injected: AtomicU64,
    fault_counts: Mutex<BTreeMap<&'static str, u64>>,
    bytes_to_upstream: AtomicU64,
    bytes_to_client: AtomicU64,
}

impl Shared {
    fn stopped(&self) -> bool {
        self.stop.load(SeqCst)
    }

    fn close_all(&self) {
        let conns: Vec<Arc<Conn>> = lock(&self.conns).values().cloned().collect();
        for conn in conns {
            conn.close();
        }
    }

    /// A uniform draw in [0, 1) from the seeded xorshift64* generator.
    fn draw(&self) -> f64 {
        let mut x = lock(&self.rng);
        *x ^= *x >> 12;
        *x ^= *x << 25;
        *x ^= *x >> 27;
        let v = x.wrapping_mul(0x2545_F491_4F6C_DD1D);
        (v >> 11) as f64 / (1u64 << 53) as f64
    }

    fn pick_fault(&self, method: &str, target: &str) -> Option<Fault> {
        let rules = lock(&self.rules);
        for rule in rules.iter() {
            if !rule.matches(method, target) {
                continue;
            }
            let hit = rule.fraction >= 1.0 || (rule.fraction > 0.0 && self.draw() < rule.fraction);
            if hit {
                self.faults_injected.fetch_add(1, SeqCst);
                *lock(&self.fault_counts).entry(rule.fault.kind()).or_insert(0) += 1;
                return Some(rule.fault.clone());
            }
        }
        None
    }
}

/// Locks, ignoring poisoning (a panicked thread leaves consistent counters behind).
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Counts a proxy thread while it lives.
struct ThreadGuard(Arc<Shared>);

impl Drop for ThreadGuard {
    fn drop(&mut self) {
        self.0.live_threads.fetch_sub(1, SeqCst);
    }
}

fn spawn(shared: &Arc<Shared>, name: &str, f: impl FnOnce() + Send + 'static) -> io::Result<JoinHandle<()>> {
    shared.live_threads.fetch_add(1, SeqCst);
    let guard = ThreadGuard(shared.clone());
    thread::Builder::new().name(name.to_string()).stack_size(THREAD_STACK).spawn(move || {
        let _guard = guard;
        f()
    })
}

/// A token bucket shared by all connections for one direction, kept as the virtual time
/// at which the bytes reserved so far have been sent.
struct Bucket {
    rate: f64,
    burst: Duration,
    piece: usize,
    next: Mutex<Instant>,
}

impl Bucket {
    fn new(bytes_per_sec: u64) -> Bucket {
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
    fn reserve(&self, n: usize) -> Instant {
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

struct Conn {
    client: TcpStream,
    upstream: TcpStream,
    closed: AtomicBool,
    /// A stall fault is active: nothing more reaches the client.
    holding: AtomicBool,
    start: Instant,
    /// Milliseconds since `start` of the last successful read or write.
    last_activity: AtomicU64,
    /// Requests forwarded to the upstream, and final responses read from it.
    forwarded: AtomicU64,
    completed: AtomicU64,
}

impl Conn {
    fn alive(&self, shared: &Shared) -> bool {
        !self.closed.load(SeqCst) && !shared.stopped()
    }

    fn is_closed(&self) -> bool {
        self.closed.load(SeqCst)
    }

    fn holding(&self) -> bool {
        self.holding.load(SeqCst)
    }

    /// Closes both sockets (FIN); every thread of the connection then ends.
    fn close(&self) {
        if !self.closed.swap(true, SeqCst) {
            let _ = self.client.shutdown(Shutdown::Both);
            let _ = self.upstream.shutdown(Shutdown::Both);
        }
    }

    /// Closes abruptly: the client socket gets no FIN; on Linux SO_LINGER 0 makes its
    /// close (when the connection's last thread has let go of it) send a RST.
    fn reset(&self) {
        if !self.closed.swap(true, SeqCst) {
            set_linger_zero(&self.client);
            let _ = self.upstream.shutdown(Shutdown::Both);
        }
    }

    fn touch(&self) {
        self.last_activity.store(self.start.elapsed().as_millis() as u64, SeqCst);
    }

    fn idle(&self) -> Duration {
        let last = Duration::from_millis(self.last_activity.load(SeqCst));
        self.start.elapsed().saturating_sub(last)
    }

    /// Sleeps until `due`; false when the connection closed or the proxy stopped first.
    fn wait_until(&self, shared: &Shared, due: Instant) -> bool {
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
fn set_linger_zero(stream: &TcpStream) {
    let _ = socket2::SockRef::from(stream).set_linger(Some(Duration::ZERO));
}

#[cfg(not(target_os = "linux"))]
fn set_linger_zero(_stream: &TcpStream) {}

/// Asks the kernel to acknowledge at once what arrives next (Linux clears it as it goes,
/// so this is set before every read from the upstream).
#[cfg(target_os = "linux")]
fn quick_ack(stream: &TcpStream) {
    let _ = socket2::SockRef::from(stream).set_tcp_quickack(true);
}

#[cfg(not(target_os = "linux"))]
fn quick_ack(_stream: &TcpStream) {}

fn setup_socket(s: &TcpStream) -> io::Result<()> {
    s.set_nodelay(true)?;
    s.set_read_timeout(Some(POLL))?;
    s.set_write_timeout(Some(POLL))
}

fn accept_loop(shared: Arc<Shared>, listener: TcpListener) {
    while !shared.stopped() {
        match listener.accept() {
            Ok((client, _)) => {
                if shared.stopped() {
                    break;
                }
                if shared.down.load(SeqCst) {
                    shared.refused.fetch_add(1, SeqCst);
                    drop(client);
                    continue;
                }
                let s = shared.clone();
                // On failure (no threads left) the connection is simply closed.
                let _ = spawn(&shared, "faultproxy-conn", move || handle_conn(s, client));
            }
            Err(_) => thread::sleep(Duration::from_millis(10)), // e.g. out of file descriptors
        }
    }
}

fn handle_conn(shared: Arc<Shared>, client: TcpStream) {
    let upstream = match TcpStream::connect_timeout(&shared.upstream, CONNECT_TIMEOUT) {
        Ok(s) => s,
        Err(_) => {
            shared.upstream_failures.fetch_add(1, SeqCst);
            set_linger_zero(&client);
            return;
        }
    };
    if setup_socket(&client).is_err() || setup_socket(&upstream).is_err() {
        return;
    }
    let conn = Arc::new(Conn {
        client,
        upstream,
        closed: AtomicBool::new(false),
        holding: AtomicBool::new(false),
        start: Instant::now(),
        last_activity: AtomicU64::new(0),
        forwarded: AtomicU64::new(0),
        completed: AtomicU64::new(0),
    });
    shared.connections.fetch_add(1, SeqCst);
    shared.active.fetch_add(1, SeqCst);
    let id = shared.next_conn.fetch_add(1, SeqCst);
    lock(&shared.conns).insert(id, conn.clone());
    // set_down / drop close the registered connections after setting their flag.
    if shared.down.load(SeqCst) || shared.stopped() {
        conn.close();
    }

    let (to_up, up_rx) = mpsc::sync_channel::<Item>(QUEUE_ITEMS);
    let (to_client, client_rx) = mpsc::sync_channel::<Item>(QUEUE_ITEMS);
    let (info_tx, info_rx) = mpsc::channel::<ReqInfo>();
    let mut threads = Vec::new();
    let (s, c) = (shared.clone(), conn.clone());
    threads.push(spawn(&shared, "faultproxy-w-up", move || run_writer(s, c, up_rx, true)));
    let (s, c) = (shared.clone(), conn.clone());
    threads.push(spawn(&shared, "faultproxy-w-cl", move || run_writer(s, c, client_rx, false)));
    let server_reader = ServerReader {
        shared: shared.clone(),
        conn: conn.clone(),
        to_client: to_client.clone(),
        infos: info_rx,
        state: RespState::Head,
        head: Vec::new(),
        out: Vec::new(),
    };
    threads.push(spawn(&shared, "faultproxy-r-up", move || server_reader.run()));
    if threads.iter().any(|t| t.is_err()) {
        conn.close();
    }
    let client_reader = ClientReader {
        shared: shared.clone(),
        conn: conn.clone(),
        to_up,
        to_client,
        infos: info_tx,
        state: ReqState::Head,
        head: Vec::new(),
        out: Vec::new(),
        handshake: shared.delay,
    };
    client_reader.run();
    for t in threads.into_iter().flatten() {
        let _ = t.join();
    }
    lock(&shared.conns).remove(&id);
    shared.active.fetch_sub(1, SeqCst);
    // The last reference to `conn` goes here: both sockets are closed.
}

/// What a reader hands to the writer of the other side.
enum Item {
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

fn run_writer(shared: Arc<Shared>, conn: Arc<Conn>, rx: Receiver<Item>, to_upstream: bool) {
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

fn is_retry(e: &io::Error) -> bool {
    matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut | io::ErrorKind::Interrupted)
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

enum ReadOutcome {
    Data(usize),
    Eof,
    Error,
    /// The connection was closed or the proxy stopped.
    Stopped,
}

fn read_some(shared: &Shared, conn: &Conn, src: &TcpStream, buf: &mut [u8], ack: bool) -> ReadOutcome {
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
enum Flow {
    Continue,
    Stop,
}

/// What the client side tells the upstream side about a forwarded request.
#[derive(Default)]
struct ReqInfo {
    head_only: bool,
    connect: bool,
    fault: Option<Fault>,
}

enum ReqState {
    Head,
    Body { body: BodyTracker, forward: bool },
    Raw,
    Discard,
}

/// Reads the client, follows its requests, forwards them (or answers them itself).
struct ClientReader {
    shared: Arc<Shared>,
    conn: Arc<Conn>,
    to_up: SyncSender<Item>,
    to_client: SyncSender<Item>,
    infos: Sender<ReqInfo>,
    state: ReqState,
    head: Vec<u8>,
    out: Vec<u8>,
    /// Added to the first output of the connection.
    handshake: Duration,
}

impl ClientReader {
    fn run(mut self) {
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
                        let partial = std::mem::take(&mut self.head);
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
                    let old = self.head.len();
                    self.head.extend_from_slice(data);
                    match find_head_end(&self.head, old.saturating_sub(3)) {
                        None => {
                            if self.head.len() > MAX_HEAD {
                                let head = std::mem::take(&mut self.head);
                                self.out.extend_from_slice(&head);
                                self.state = ReqState::Raw;
                            }
                            return Flow::Continue;
                        }
                        Some(end) => {
                            data = &data[end - old..];
                            self.head.truncate(end);
                            let head = std::mem::take(&mut self.head);
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
        let parsed = parse_head(&head, true);
        let Some((req, body)) = parsed.and_then(|r| request_body(&r.headers).ok().map(|b| (r, b))) else {
            self.out.extend_from_slice(&head);
            self.state = ReqState::Raw;
            return Flow::Continue;
        };
        self.shared.requests.fetch_add(1, SeqCst);
        let head_only = req.a.eq_ignore_ascii_case("HEAD");
        let connect = req.a.eq_ignore_ascii_case("CONNECT");
        let fault = self.shared.pick_fault(&req.a, &req.b);
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
    fn answer(&mut self, fault: Fault, req: &MsgHead, body: Option<BodyTracker>, head_only: bool, t: Instant) -> Flow {
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
        let close = body.is_some() && header(&req.headers, "expect").any(|v| v.eq_ignore_ascii_case("100-continue"));
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
                let echo = |name: &str| header(&req.headers, name).next().unwrap_or("").to_string();
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
struct ServerReader {
    shared: Arc<Shared>,
    conn: Arc<Conn>,
    to_client: SyncSender<Item>,
    infos: Receiver<ReqInfo>,
    state: RespState,
    head: Vec<u8>,
    out: Vec<u8>,
}

impl ServerReader {
    fn run(mut self) {
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
                            let partial = std::mem::take(&mut self.head);
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
                    let old = self.head.len();
                    self.head.extend_from_slice(data);
                    match find_head_end(&self.head, old.saturating_sub(3)) {
                        None => {
                            if self.head.len() > MAX_HEAD {
                                let head = std::mem::take(&mut self.head);
                                self.out.extend_from_slice(&head);
                                self.state = RespState::Raw;
                            } else {
                                self.state = RespState::Head;
                            }
                            return Flow::Continue;
                        }
                        Some(end) => {
                            data = &data[end - old..];
                            self.head.truncate(end);
                            let head = std::mem::take(&mut self.head);
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
        let Some(resp) = parse_head(&head, false) else {
            self.out.extend_from_slice(&head);
            self.state = RespState::Raw;
            return Flow::Continue;
        };
        let status: u16 = resp.b.parse().unwrap_or(0);
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
        let body = response_body(status, info.head_only, &resp.headers);
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

/// The body of a [`Fault::Lz4Bomb`], made once.
fn bomb_frame(bomb: Bomb) -> Arc<Vec<u8>> {
    static FRAMES: [OnceLock<Arc<Vec<u8>>>; 3] = [OnceLock::new(), OnceLock::new(), OnceLock::new()];
    let (slot, blocks, descriptor): (usize, usize, [u8; 3]) = match bomb {
        // FLG 0x60 (version 1, independent blocks), BD (block size), and the header
        // checksum: the second byte of xxh32 of FLG and BD.
        Bomb::Zeros => (0, 1024, [0x60, 0x40, 0x82]),
        Bomb::BigBlocks => (1, 1, [0x60, 0x70, 0x73]),
        Bomb::Flood => (2, 128, [0x60, 0x40, 0x82]),
    };
    Arc::clone(FRAMES[slot].get_or_init(|| {
        let mut frame = vec![0x04, 0x22, 0x4D, 0x18];
        frame.extend_from_slice(&descriptor);
        let block = if bomb == Bomb::Zeros {
            // One literal zero, then a match of the rest at offset 1, then 5 literals.
            let mut block = vec![0x1F, 0x00, 0x01, 0x00];
            let mut extra = 65_536 - 1 - 5 - 4 - 15;
            while extra >= 255 {
                block.push(255);
                extra -= 255;
            }
            block.extend_from_slice(&[extra as u8, 0x50, 0, 0, 0, 0, 0]);
            block
        } else {
            test_body(65_536)
        };
        let word = if bomb == Bomb::Zeros { block.len() as u32 } else { 0x8000_0000 | block.len() as u32 };
        for _ in 0..blocks {
            frame.extend_from_slice(&word.to_le_bytes());
            frame.extend_from_slice(&block);
        }
        frame.extend_from_slice(&[0; 4]);
        Arc::new(frame)
    }))
}

fn keep_len(len: u64, fraction: f64) -> u64 {
    ((len as f64 * fraction.clamp(0.0, 1.0)).floor() as u64).min(len)
}

// ------------------------------------------------------------------------------------
// HTTP/1.1 framing
// ------------------------------------------------------------------------------------

/// The index just past the blank line that ends a head, searching from `from`.
fn find_head_end(buf: &[u8], from: usize) -> Option<usize> {
    (from..buf.len()).find_map(|i| {
        let end = buf[i] == b'\n'
            && ((i >= 1 && buf[i - 1] == b'\n') || (i >= 2 && buf[i - 1] == b'\r' && buf[i - 2] == b'\n'));
        end.then_some(i + 1)
    })
}

/// A parsed head: request (method, target) or response (version, status), and the
/// header fields.
#[derive(Clone, Debug)]
struct MsgHead {
    a: String,
    b: String,
    headers: Vec<(String, String)>,
}

fn parse_head(head: &[u8], request: bool) -> Option<MsgHead> {
    let text = String::from_utf8_lossy(head);
    let mut lines = text.split('\n').map(|l| l.strip_suffix('\r').unwrap_or(l));
    let first = lines.next()?;
    let mut parts = first.splitn(3, ' ');
    let (a, b, c) = (parts.next()?, parts.next()?, parts.next().unwrap_or(""));
    if request {
        if a.is_empty() || b.is_empty() || !c.starts_with("HTTP/") || !a.bytes().all(|x| x.is_ascii_alphabetic()) {
            return None;
        }
    } else if !a.starts_with("HTTP/") || b.len() != 3 || !b.bytes().all(|x| x.is_ascii_digit()) {
        return None;
    }
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
    Some(MsgHead { a: a.to_string(), b: b.to_string(), headers })
}

fn header<'a>(headers: &'a [(String, String)], name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
    headers.iter().filter(move |(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
}

/// Whether the last transfer coding is chunked (`None`: no Transfer-Encoding).
fn chunked(headers: &[(String, String)]) -> Option<bool> {
    let te: Vec<&str> = header(headers, "transfer-encoding").collect();
    if te.is_empty() {
        return None;
    }
    let last = te.join(",").rsplit(',').next().map(|s| s.trim().to_ascii_lowercase()).unwrap_or_default();
    Some(last == "chunked")
}

/// The Content-Length (`Err`: present but invalid or conflicting).
fn content_length(headers: &[(String, String)]) -> Result<Option<u64>, ()> {
    let mut found = None;
    for v in header(headers, "content-length") {
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

fn request_body(headers: &[(String, String)]) -> Result<Option<BodyTracker>, ()> {
    match chunked(headers) {
        Some(true) => Ok(Some(BodyTracker::chunked())),
        Some(false) => Err(()),
        None => Ok(content_length(headers)?.filter(|n| *n > 0).map(BodyTracker::Length)),
    }
}

fn response_body(status: u16, head_request: bool, headers: &[(String, String)]) -> Option<BodyTracker> {
    if head_request || status == 204 || status == 304 || (100..200).contains(&status) {
        return None;
    }
    match chunked(headers) {
        Some(true) => Some(BodyTracker::chunked()),
        Some(false) => Some(BodyTracker::UntilClose),
        None => match content_length(headers) {
            Ok(Some(0)) => None,
            Ok(Some(n)) => Some(BodyTracker::Length(n)),
            Ok(None) | Err(()) => Some(BodyTracker::UntilClose),
        },
    }
}

/// Follows a message body through its framing.
#[derive(Clone, Debug)]
enum BodyTracker {
    Length(u64),
    Chunked(Chunk),
    UntilClose,
}

#[derive(Clone, Copy, Debug)]
enum Chunk {
    Size { size: u64, digits: u32, ext: bool, len: usize },
    Data(u64),
    DataEnd,
    Trailer { len: usize },
}

impl BodyTracker {
    fn chunked() -> BodyTracker {
        BodyTracker::Chunked(Chunk::Size { size: 0, digits: 0, ext: false, len: 0 })
    }

    /// Consumes the body's bytes at the start of `data`: (bytes used, body complete).
    /// `payload` gets the ranges of `data` that are payload (not chunk framing).
    fn advance(&mut self, data: &[u8], mut payload: Option<&mut Vec<(usize, usize)>>) -> Result<(usize, bool), ()> {
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

/// A head without the header `name`.
fn remove_header(head: &[u8], name: &str) -> Vec<u8> {
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
fn edit_header(head: &[u8], name: &str, f: &dyn Fn(Option<&str>) -> String) -> Vec<u8> {
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
fn response(status: u16, extra: &[(&str, String)], body: &[u8], head_only: bool, close: bool) -> Vec<u8> {
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

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// An S3-style XML error whose DTD expands to 10^9 "lol"s (billion laughs).
fn xml_bomb() -> String {
    let mut s =
        String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<!DOCTYPE Error [\n  <!ENTITY lol0 \"lol\">\n");
    for i in 1..10 {
        let refs = format!("&lol{};", i - 1).repeat(10);
        s.push_str(&format!("  <!ENTITY lol{i} \"{refs}\">\n"));
    }
    s.push_str("]>\n<Error><Code>&lol9;</Code><Message>&lol9;</Message></Error>");
    s
}

// ------------------------------------------------------------------------------------
// Dates (RFC 7231 IMF-fixdate)
// ------------------------------------------------------------------------------------

fn unix_now() -> i64 {
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

// ------------------------------------------------------------------------------------
// A small upstream HTTP server (for the tests and the selftest)
// ------------------------------------------------------------------------------------

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

pub fn test_body(n: usize) -> Vec<u8> {
    (0..n as u64).map(test_byte).collect()
}

fn upstream_conn(shared: &UpShared, mut s: TcpStream) {
    if setup_socket(&s).is_err() {
        return;
    }
    let stop = &shared.stop;
    let mut pending = Vec::new();
    let mut buf = vec![0u8; READ_BUF];
    let mut fill = |s: &mut TcpStream, pending: &mut Vec<u8>| -> bool {
        loop {
            if stop.load(SeqCst) {
                return false;
            }
            match s.read(&mut buf) {
                Ok(0) => return false,
                Ok(n) => {
                    pending.extend_from_slice(&buf[..n]);
                    return true;
                }
                Err(e) if is_retry(&e) => {}
                Err(_) => return false,
            }
        }
    };
    loop {
        let end = loop {
            if let Some(end) = find_head_end(&pending, 0) {
                break end;
            }
            if pending.len() > MAX_HEAD || !fill(&mut s, &mut pending) {
                return;
            }
        };
        let head: Vec<u8> = pending.drain(..end).collect();
        let Some(req) = parse_head(&head, true) else { return };
        let mut raw = head.clone();
        if let Ok(Some(mut body)) = request_body(&req.headers) {
            loop {
                let Ok((used, done)) = body.advance(&pending, None) else { return };
                raw.extend(pending.drain(..used));
                if done {
                    break;
                }
                if !fill(&mut s, &mut pending) {
                    return;
                }
            }
        }
        shared.requests.fetch_add(1, SeqCst);
        let close = header(&req.headers, "connection").any(|v| v.eq_ignore_ascii_case("close"));
        let (head_out, body_out, close_after) = route(&req, &raw);
        let ok = upstream_write(stop, &mut s, &head_out) && body_out.is_none_or(|n| upstream_body(stop, &mut s, n));
        if !ok || close || close_after {
            return;
        }
    }
}

/// The response head (and for small bodies the body) and the length of a pattern body
/// still to write, and whether to close after.
fn route(req: &MsgHead, raw: &[u8]) -> (Vec<u8>, Option<u64>, bool) {
    let method = req.a.to_ascii_uppercase();
    let head_only = method == "HEAD";
    let path = req.b.split('?').next().unwrap_or("");
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

fn upstream_write(stop: &AtomicBool, s: &mut TcpStream, mut buf: &[u8]) -> bool {
    while !buf.is_empty() {
        if stop.load(SeqCst) {
            return false;
        }
        match s.write(buf) {
            Ok(0) => return false,
            Ok(n) => buf = &buf[n..],
            Err(e) if is_retry(&e) => {}
            Err(_) => return false,
        }
    }
    true
}

fn upstream_body(stop: &AtomicBool, s: &mut TcpStream, n: u64) -> bool {
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

// ------------------------------------------------------------------------------------
// Command line
// ------------------------------------------------------------------------------------

const USAGE: &str = "\
usage: faultproxy --upstream PORT [--listen PORT] [--delay-ms N] [--bandwidth-mbps M]
                  [--parent-pid PID] [--max-seconds S] [--seed N] [--stats-file PATH]
       faultproxy selftest [--connections N] [--seconds S] [--size BYTES]
                  [--small-size BYTES] [--cap-mbps M] [--delay-ms N]

An HTTP/1.1 proxy on 127.0.0.1 that adds a simulated round trip (--delay-ms) and a
bandwidth cap (--bandwidth-mbps, 10^6 bytes per second per direction, shared by all
connections). Prints \"ready <port>\" once it listens; runs until killed, until
--parent-pid is gone, or for --max-seconds (default 7200). --stats-file: its counters
as one line \"connections N requests N bytes_to_upstream N bytes_to_client N\", rewritten
(atomically) within 100 ms of a change, so a benchmark can take the requests of one run.

selftest measures the proxy's own ceiling (no cap; no delay unless --delay-ms) against
an in-process upstream: bytes/s with --size responses, requests/s with --small-size
responses, and bytes/s under a --cap-mbps cap (default 100); prints one JSON object.";

/// Parses `--name value` and `--name=value` options.
struct Args {
    items: Vec<String>,
    i: usize,
}

impl Args {
    /// The next option name and its value.
    fn next(&mut self) -> Result<Option<(String, String)>, String> {
        let Some(arg) = self.items.get(self.i).cloned() else { return Ok(None) };
        self.i += 1;
        if arg == "-h" || arg == "--help" {
            return Ok(Some(("help".to_string(), String::new())));
        }
        let Some(opt) = arg.strip_prefix("--") else { return Err(format!("unexpected argument {arg:?}")) };
        if let Some((name, value)) = opt.split_once('=') {
            return Ok(Some((name.to_string(), value.to_string())));
        }
        let value = self.items.get(self.i).cloned().ok_or_else(|| format!("--{opt} needs a value"))?;
        self.i += 1;
        Ok(Some((opt.to_string(), value)))
    }
}

fn num<T: std::str::FromStr>(name: &str, value: &str) -> Result<T, String> {
    value.parse().map_err(|_| format!("--{name}: invalid value {value:?}"))
}

fn non_negative(name: &str, value: &str) -> Result<f64, String> {
    let v: f64 = num(name, value)?;
    if v.is_finite() && v >= 0.0 {
        Ok(v)
    } else {
        Err(format!("--{name}: invalid value {value:?}"))
    }
}

/// The `faultproxy` binary (tests/common/faultproxy_bin.rs).
#[allow(dead_code)] // in the test crates
pub fn cli_main() -> ExitCode {
    let items: Vec<String> = std::env::args().skip(1).collect();
    let result = if items.first().map(String::as_str) == Some("selftest") {
        selftest(Args { items, i: 1 })
    } else {
        serve(Args { items, i: 0 })
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if e.is_empty() => {
            println!("{USAGE}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("faultproxy: {e}\n{USAGE}");
            ExitCode::from(2)
        }
    }
}

/// Err(""): print the usage.
fn serve(mut args: Args) -> Result<(), String> {
    let (mut upstream, mut listen, mut parent, mut max_seconds) = (None, 0u16, None, 7200.0);
    let mut stats_file: Option<std::path::PathBuf> = None;
    let mut config = ProxyConfig::default();
    while let Some((name, value)) = args.next()? {
        match name.as_str() {
            "help" => return Err(String::new()),
            "upstream" => upstream = Some(num::<u16>(&name, &value)?),
            "listen" => listen = num(&name, &value)?,
            "delay-ms" => config.delay = Duration::from_secs_f64(non_negative(&name, &value)? / 1000.0),
            "bandwidth-mbps" => {
                let m = non_negative(&name, &value)?;
                config.bandwidth = (m > 0.0).then_some((m * 1e6) as u64);
            }
            "parent-pid" => parent = Some(num::<u32>(&name, &value)?).filter(|p| *p != 0),
            "max-seconds" => max_seconds = non_negative(&name, &value)?,
            "seed" => config.seed = num(&name, &value)?,
            "stats-file" => stats_file = Some(value.into()),
            _ => return Err(format!("unknown option --{name}")),
        }
    }
    let upstream = upstream.ok_or("--upstream is required")?;
    let proxy = Proxy::start_on(listen, upstream, config).map_err(|e| format!("cannot listen: {e}"))?;
    let mut stdout = io::stdout();
    let _ = writeln!(stdout, "ready {}", proxy.port());
    let _ = stdout.flush();
    let deadline = Instant::now() + Duration::from_secs_f64(max_seconds.min(1e9));
    let mut written = String::new();
    loop {
        if let Some(path) = &stats_file {
            let s = proxy.stats();
            let line = format!(
                "connections {} requests {} bytes_to_upstream {} bytes_to_client {}\n",
                s.connections, s.requests, s.bytes_to_upstream, s.bytes_to_client
            );
            if line != written {
                let tmp = path.with_extension("tmp");
                std::fs::write(&tmp, &line)
                    .and_then(|()| std::fs::rename(&tmp, path))
                    .map_err(|e| format!("cannot write --stats-file {}: {e}", path.display()))?;
                written = line;
            }
        }
        let now = Instant::now();
        if now >= deadline {
            eprintln!("faultproxy: --max-seconds reached, exiting");
            break;
        }
        let tick = if stats_file.is_some() { Duration::from_millis(100) } else { Duration::from_secs(1) };
        thread::sleep((deadline - now).min(tick));
        if parent.is_some_and(|pid| !process_alive(pid)) {
            break;
        }
    }
    let s = proxy.stats();
    eprintln!(
        "faultproxy: exiting after {} connections, {} requests, {} bytes to the upstream, {} bytes to clients",
        s.connections, s.requests, s.bytes_to_upstream, s.bytes_to_client
    );
    Ok(())
}

/// Through /proc (a zombie counts as gone); always true without /proc.
fn process_alive(pid: u32) -> bool {
    if !std::path::Path::new("/proc/self/stat").exists() {
        return true;
    }
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => false,
        Ok(stat) => {
            let state = stat.rsplit_once(')').and_then(|(_, rest)| rest.trim_start().chars().next());
            !matches!(state, Some('Z') | Some('X'))
        }
    }
}

fn selftest(mut args: Args) -> Result<(), String> {
    let (mut connections, mut seconds, mut size, mut small, mut cap) = (64usize, 5.0, 1u64 << 20, 1024u64, 100.0);
    let mut delay = Duration::ZERO;
    while let Some((name, value)) = args.next()? {
        match name.as_str() {
            "help" => return Err(String::new()),
            "connections" => connections = num::<usize>(&name, &value)?.clamp(1, 1024),
            "seconds" => seconds = non_negative(&name, &value)?.clamp(0.1, 3600.0),
            "size" => size = num(&name, &value)?,
            "small-size" => small = num(&name, &value)?,
            "cap-mbps" => cap = non_negative(&name, &value)?.max(0.001),
            "delay-ms" => delay = Duration::from_secs_f64(non_negative(&name, &value)?.min(1e6) / 1000.0),
            _ => return Err(format!("unknown option --{name}")),
        }
    }
    let up = TestUpstream::start().map_err(|e| format!("cannot start the upstream: {e}"))?;
    let duration = Duration::from_secs_f64(seconds);
    let run = |bandwidth: Option<u64>, size: u64| {
        let config = ProxyConfig { delay, bandwidth, seed: 1 };
        measure(up.port(), config, connections, duration, size).map_err(|e| format!("selftest: {e}"))
    };
    let big = run(None, size)?;
    let small_run = run(None, small)?;
    let cap_bytes = (cap * 1e6) as u64;
    let capped = run(Some(cap_bytes), size)?;
    println!(
        "{{\"connections\":{connections},\"seconds\":{seconds},\"delay_ms\":{},\"size\":{size},\"bytes_per_sec\":{:.0},\
         \"small_size\":{small},\"requests_per_sec\":{:.0},\"cap_bytes_per_sec\":{cap_bytes},\
         \"capped_bytes_per_sec\":{:.0},\"capped_ratio\":{:.3},\"errors\":{}}}",
        delay.as_secs_f64() * 1000.0,
        big.bytes_per_sec,
        small_run.requests_per_sec,
        capped.bytes_per_sec,
        capped.bytes_per_sec / cap_bytes as f64,
        big.errors + small_run.errors + capped.errors
    );
    Ok(())
}

struct Measured {
    bytes_per_sec: f64,
    requests_per_sec: f64,
    errors: u64,
}

/// Drives a fresh proxy from `connections` client threads with `GET /<size>` for
/// `duration`, counting body bytes as they arrive.
fn measure(
    upstream: u16,
    config: ProxyConfig,
    connections: usize,
    duration: Duration,
    size: u64,
) -> io::Result<Measured> {
    let proxy = Proxy::start(upstream, config)?;
    let port = proxy.port();
    let bytes = Arc::new(AtomicU64::new(0));
    let requests = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let barrier = Arc::new(Barrier::new(connections + 1));
    let start = Arc::new(Mutex::new(None::<Instant>));
    let mut threads = Vec::new();
    for _ in 0..connections {
        let (bytes, requests, errors, barrier, start) =
            (bytes.clone(), requests.clone(), errors.clone(), barrier.clone(), start.clone());
        let t = thread::Builder::new().stack_size(THREAD_STACK).spawn(move || {
            barrier.wait();
            let Some(begin) = *lock(&start) else { return };
            let deadline = begin + duration;
            while Instant::now() < deadline {
                if bench_client(port, size, deadline, &bytes, &requests).is_err() && Instant::now() < deadline {
                    errors.fetch_add(1, SeqCst);
                    thread::sleep(Duration::from_millis(10));
                }
            }
        })?;
        threads.push(t);
    }
    let begin = Instant::now();
    *lock(&start) = Some(begin);
    barrier.wait();
    for t in threads {
        let _ = t.join();
    }
    let elapsed = begin.elapsed().as_secs_f64().max(1e-9).min(duration.as_secs_f64().max(1e-9));
    drop(proxy);
    Ok(Measured {
        bytes_per_sec: bytes.load(SeqCst) as f64 / elapsed,
        requests_per_sec: requests.load(SeqCst) as f64 / elapsed,
        errors: errors.load(SeqCst),
    })
}

/// One keep-alive connection: request after request until `deadline`.
fn bench_client(port: u16, size: u64, deadline: Instant, bytes: &AtomicU64, requests: &AtomicU64) -> io::Result<()> {
    let mut s = TcpStream::connect((Ipv4Addr::LOCALHOST, port))?;
    s.set_nodelay(true)?;
    s.set_read_timeout(Some(Duration::from_millis(200)))?;
    let request = format!("GET /{size} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n");
    let mut buf = vec![0u8; 256 * 1024];
    let mut pending = Vec::new();
    let read = |s: &mut TcpStream, buf: &mut [u8]| -> io::Result<usize> {
        loop {
            if Instant::now() >= deadline {
                return Err(io::ErrorKind::TimedOut.into());
            }
            match s.read(buf) {
                Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
                Ok(n) => return Ok(n),
                Err(e) if is_retry(&e) => {}
                Err(e) => return Err(e),
            }
        }
    };
    while Instant::now() < deadline {
        s.write_all(request.as_bytes())?;
        pending.clear();
        let end = loop {
            if let Some(end) = find_head_end(&pending, 0) {
                break end;
            }
            let n = match read(&mut s, &mut buf) {
                Err(e) if e.kind() == io::ErrorKind::TimedOut => return Ok(()),
                r => r?,
            };
            pending.extend_from_slice(&buf[..n]);
        };
        let head = parse_head(&pending[..end], false).ok_or(io::ErrorKind::InvalidData)?;
        let length = content_length(&head.headers).ok().flatten().ok_or(io::ErrorKind::InvalidData)?;
        let mut got = (pending.len() - end) as u64;
        bytes.fetch_add(got, SeqCst);
        while got < length {
            let n = match read(&mut s, &mut buf) {
                Err(e) if e.kind() == io::ErrorKind::TimedOut => return Ok(()),
                r => r?,
            };
            got += n as u64;
            bytes.fetch_add(n as u64, SeqCst);
        }
        requests.fetch_add(1, SeqCst);
    }
    Ok(())
}

// ------------------------------------------------------------------------------------
// Tests
// ------------------------------------------------------------------------------------

#[cfg(test)]
mod tests {
    use super::*;

    const T: Duration = Duration::from_secs(5);

    struct Resp {
        raw: Vec<u8>,
        status: u16,
        headers: Vec<(String, String)>,
        body: Vec<u8>,
    }

    impl Resp {
        fn header<'a>(&'a self, name: &'a str) -> Option<&'a str> {
            header(&self.headers, name).next()
        }
    }

    fn connect(port: u16) -> TcpStream {
        let s = TcpStream::connect((Ipv4Addr::LOCALHOST, port)).expect("connect");
        s.set_read_timeout(Some(T)).expect("timeout");
        s.set_nodelay(true).expect("nodelay");
        s
    }

    /// Reads one response (framing-aware) from `s`; `pending` holds bytes read beyond.
    fn read_response(s: &mut TcpStream, pending: &mut Vec<u8>, head_request: bool) -> io::Result<Resp> {
        let mut buf = vec![0u8; 64 * 1024];
        let end = loop {
            if let Some(end) = find_head_end(pending, 0) {
                break end;
            }
            let n = s.read(&mut buf)?;
            if n == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
            pending.extend_from_slice(&buf[..n]);
        };
        let mut raw: Vec<u8> = pending.drain(..end).collect();
        let head = parse_head(&raw, false).ok_or(io::ErrorKind::InvalidData)?;
        let status: u16 = head.b.parse().map_err(|_| io::ErrorKind::InvalidData)?;
        let mut body = Vec::new();
        if let Some(mut tracker) = response_body(status, head_request, &head.headers) {
            loop {
                let mut ranges = Vec::new();
                let (used, done) =
                    tracker.advance(pending, Some(&mut ranges)).map_err(|_| io::ErrorKind::InvalidData)?;
                for (a, b) in ranges {
                    body.extend_from_slice(&pending[a..b]);
                }
                raw.extend(pending.drain(..used));
                if done {
                    break;
                }
                let n = s.read(&mut buf)?;
                if n == 0 {
                    if matches!(tracker, BodyTracker::UntilClose) {
                        break;
                    }
                    return Err(io::ErrorKind::UnexpectedEof.into());
                }
                pending.extend_from_slice(&buf[..n]);
            }
        }
        Ok(Resp { raw, status, headers: head.headers, body })
    }

    fn get(s: &mut TcpStream, path: &str) -> io::Result<Resp> {
        s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())?;
        read_response(s, &mut Vec::new(), false)
    }

    fn start(up: &TestUpstream, delay_ms: u64, bandwidth: Option<u64>) -> Proxy {
        Proxy::start(up.port(), ProxyConfig { delay: Duration::from_millis(delay_ms), bandwidth, seed: 7 })
            .expect("proxy")
    }

    /// Reads until EOF, error or timeout: (bytes, how it ended).
    fn read_all(s: &mut TcpStream, timeout: Duration) -> (Vec<u8>, io::Result<()>) {
        s.set_read_timeout(Some(timeout)).expect("timeout");
        let mut out = Vec::new();
        let mut buf = [0u8; 16 * 1024];
        loop {
            match s.read(&mut buf) {
                Ok(0) => return (out, Ok(())),
                Ok(n) => out.extend_from_slice(&buf[..n]),
                Err(e) => return (out, Err(e)),
            }
        }
    }

    fn is_timeout(r: &io::Result<()>) -> bool {
        matches!(r, Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut))
    }

    #[test]
    fn dates() {
        assert_eq!(http_date(784_111_777), "Sun, 06 Nov 1994 08:49:37 GMT");
        assert_eq!(parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT"), Some(784_111_777));
        assert_eq!(http_date(0), "Thu, 01 Jan 1970 00:00:00 GMT");
        assert_eq!(http_date(951_782_400), "Tue, 29 Feb 2000 00:00:00 GMT");
        for t in [0i64, 1, 86_399, 951_782_400, 1_700_000_000, 4_102_444_800] {
            assert_eq!(parse_http_date(&http_date(t)), Some(t), "{t}");
        }
        assert_eq!(parse_http_date("06 Nov 1994"), None);
    }

    #[test]
    fn chunked_tracker_splits_anywhere() {
        let body = b"5;x=y\r\nhello\r\n0\r\nT: v\r\n\r\nNEXT";
        for split in 0..body.len() {
            let mut t = BodyTracker::chunked();
            let mut payload = Vec::new();
            let mut used_total = 0;
            let mut done = false;
            for part in [&body[..split], &body[split..]] {
                if done {
                    break;
                }
                let mut ranges = Vec::new();
                let (used, d) = t.advance(part, Some(&mut ranges)).expect("valid");
                for (a, b) in ranges {
                    payload.extend_from_slice(&part[a..b]);
                }
                used_total += used;
                done = d;
            }
            assert!(done, "split {split}");
            assert_eq!(used_total, body.len() - 4, "split {split}");
            assert_eq!(payload, b"hello", "split {split}");
        }
        assert!(BodyTracker::chunked().advance(b"zz\r\n", None).is_err());
    }

    #[test]
    fn passthrough_is_byte_exact_with_keep_alive() {
        let up = TestUpstream::start().expect("upstream");
        let proxy = start(&up, 0, None);
        assert_eq!(proxy.endpoint(), format!("http://127.0.0.1:{}", proxy.port()));
        let put_body = test_body(70_000);
        let mut put =
            format!("PUT /echo/a HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n", put_body.len()).into_bytes();
        put.extend_from_slice(&put_body);
        let chunked_put =
            b"PUT /echo/b HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n".to_vec();
        let requests: Vec<(Vec<u8>, bool)> = vec![
            (b"GET /1000 HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(), false),
            (b"GET /chunked/5500 HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(), false),
            (b"HEAD /77 HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(), true),
            (put.clone(), false),
            (b"GET /204 HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(), false),
            (chunked_put.clone(), false),
            (b"GET /300000 HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n\r\n".to_vec(), false),
            (b"GET /0 HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(), false),
            (b"GET /missing HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(), false),
        ];
        let exchange = |port: u16| -> Vec<Vec<u8>> {
            let mut s = connect(port);
            let mut pending = Vec::new();
            let out = requests
                .iter()
                .map(|(req, head)| {
                    s.write_all(req).expect("write");
                    read_response(&mut s, &mut pending, *head).expect("response").raw
                })
                .collect();
            assert!(pending.is_empty());
            out
        };
        let direct = exchange(up.port());
        let proxied = exchange(proxy.port());
        assert_eq!(direct.len(), proxied.len());
        for (i, (d, p)) in direct.iter().zip(&proxied).enumerate() {
            assert!(d == p, "response {i} differs: {:?}", String::from_utf8_lossy(&p[..p.len().min(200)]));
        }
        // The echo responses show that the requests arrived unchanged.
        assert!(proxied[3].ends_with(&put));
        assert!(proxied[5].ends_with(&chunked_put));
        assert!(proxied[6].ends_with(&test_body(300_000)));
        assert_eq!(up.connections(), 2, "one upstream connection per client connection");
        let stats = proxy.stats();
        assert_eq!(stats.requests, requests.len() as u64);
        assert_eq!(stats.responses, requests.len() as u64);
        assert_eq!(stats.connections, 1);
        assert_eq!(stats.faults_injected, 0);
    }

    #[test]
    fn close_delimited_body_and_half_close() {
        let up = TestUpstream::start().expect("upstream");
        let proxy = start(&up, 0, None);
        let mut s = connect(proxy.port());
        s.write_all(b"GET /close/3000 HTTP/1.1\r\nHost: x\r\n\r\n").expect("write");
        let r = read_response(&mut s, &mut Vec::new(), false).expect("response");
        assert_eq!(r.body, test_body(3000));
        // The client half-closes after its request: the response still arrives.
        let mut s = connect(proxy.port());
        s.write_all(b"GET /2000 HTTP/1.1\r\nHost: x\r\n\r\n").expect("write");
        s.shutdown(Shutdown::Write).expect("shutdown");
        let r = read_response(&mut s, &mut Vec::new(), false).expect("response");
        assert_eq!(r.body, test_body(2000));
    }

    #[test]
    fn delay_adds_a_round_trip_per_exchange() {
        let up = TestUpstream::start().expect("upstream");
        let proxy = start(&up, 80, None);
        let d = Duration::from_millis(80);
        let mut s = connect(proxy.port());
        let t0 = Instant::now();
        assert_eq!(get(&mut s, "/10").expect("first").status, 200);
        let first = t0.elapsed();
        assert!(first >= d.mul_f64(1.8), "first exchange (with the handshake) took {first:?}");
        let t1 = Instant::now();
        for _ in 0..2 {
            assert_eq!(get(&mut s, "/100000").expect("later").body.len(), 100_000);
        }
        let later = t1.elapsed();
        assert!(later >= d.mul_f64(1.8), "two more exchanges took {later:?}");
    }

    #[test]
    fn bandwidth_cap_is_shared() {
        let up = TestUpstream::start().expect("upstream");
        let rate = 4_000_000u64;
        let proxy = start(&up, 0, Some(rate));
        let t0 = Instant::now();
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let port = proxy.port();
                thread::spawn(move || get(&mut connect(port), "/500000").map(|r| r.body.len()))
            })
            .collect();
        for t in threads {
            assert_eq!(t.join().expect("thread").expect("response"), 500_000);
        }
        let elapsed = t0.elapsed().as_secs_f64();
        // 2 MB at 4 MB/s, less a 40 KB burst.
        assert!(elapsed >= 0.45, "2 MB at 4 MB/s took {elapsed} s");
        // Uploads are capped too.
        let mut s = connect(proxy.port());
        let mut put = b"PUT /x HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\n\r\n".to_vec();
        put.extend(test_body(1_000_000));
        let t0 = Instant::now();
        s.write_all(&put).expect("write");
        assert_eq!(read_response(&mut s, &mut Vec::new(), false).expect("response").status, 200);
        let elapsed = t0.elapsed().as_secs_f64();
        assert!(elapsed >= 0.2, "1 MB up at 4 MB/s took {elapsed} s");
    }

    #[test]
    fn local_answers_keep_the_connection() {
        let up = TestUpstream::start().expect("upstream");
        let proxy = start(&up, 0, None);
        proxy.set_faults(vec![FaultRule::new(Fault::slow_down()).for_method("PUT").for_path("/fail")]);
        let mut s = connect(proxy.port());
        let mut pending = Vec::new();
        s.write_all(b"PUT /fail/1 HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello").expect("write");
        let r = read_response(&mut s, &mut pending, false).expect("response");
        assert_eq!(r.status, 503);
        assert!(String::from_utf8_lossy(&r.body).contains("<Code>SlowDown</Code>"));
        assert_eq!(r.header("content-length"), Some(r.body.len().to_string().as_str()));
        assert_eq!(r.header("connection"), Some("keep-alive"));
        // Not matching the filter: forwarded.
        s.write_all(b"PUT /ok HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nhi").expect("write");
        assert_eq!(read_response(&mut s, &mut pending, false).expect("response").status, 200);
        s.write_all(b"GET /5?p=/fail HTTP/1.1\r\nHost: x\r\n\r\n").expect("write");
        assert_eq!(read_response(&mut s, &mut pending, false).expect("response").body, test_body(5));
        assert_eq!(up.requests(), 2, "the failed PUT never reached the upstream");

        proxy.set_faults(vec![FaultRule::new(Fault::Redirect { location: "http://127.0.0.1:1/x".into() })]);
        let r = get(&mut s, "/10").expect("redirect");
        assert_eq!((r.status, r.header("location")), (307, Some("http://127.0.0.1:1/x")));
        proxy.set_faults(vec![FaultRule::new(Fault::XmlBomb)]);
        let r = get(&mut s, "/10").expect("bomb");
        assert_eq!(r.status, 400);
        assert!(String::from_utf8_lossy(&r.body).contains("<!ENTITY lol9"));
        s.write_all(b"HEAD /10 HTTP/1.1\r\nHost: x\r\n\r\n").expect("write");
        let r = read_response(&mut s, &mut pending, true).expect("head");
        assert!(r.status == 400 && r.body.is_empty());
        proxy.clear_faults();
        assert_eq!(get(&mut s, "/10").expect("normal").body, test_body(10));
        let stats = proxy.stats();
        assert_eq!((stats.fault_count("error_status"), stats.fault_count("redirect")), (1, 1));
        assert_eq!((stats.fault_count("xml_bomb"), stats.faults_injected), (2, 4));
        assert_eq!(stats.connections, 1);
    }

    #[test]
    fn reset_truncate_corrupt() {
        let up = TestUpstream::start().expect("upstream");
        let proxy = start(&up, 0, None);
        proxy.set_faults(vec![FaultRule::new(Fault::Reset)]);
        let mut s = connect(proxy.port());
        s.write_all(b"GET /10 HTTP/1.1\r\nHost: x\r\n\r\n").expect("write");
        let (bytes, end) = read_all(&mut s, T);
        assert!(bytes.is_empty());
        #[cfg(target_os = "linux")]
        assert!(matches!(&end, Err(e) if e.kind() == io::ErrorKind::ConnectionReset), "{end:?}");
        #[cfg(not(target_os = "linux"))]
        let _ = end;

        proxy.set_faults(vec![FaultRule::new(Fault::TruncateBody { keep_fraction: 0.5 })]);
        let mut s = connect(proxy.port());
        s.write_all(b"GET /10000 HTTP/1.1\r\nHost: x\r\n\r\n").expect("write");
        let (bytes, end) = read_all(&mut s, T);
        assert!(end.is_ok(), "{end:?}");
        let head_end = find_head_end(&bytes, 0).expect("head");
        assert!(String::from_utf8_lossy(&bytes[..head_end]).contains("Content-Length: 10000"));
        assert_eq!(&bytes[head_end..], &test_body(5000)[..]);

        let mut s = connect(proxy.port());
        s.write_all(b"GET /chunked/3000 HTTP/1.1\r\nHost: x\r\n\r\n").expect("write");
        let (bytes, end) = read_all(&mut s, T);
        assert!(end.is_ok() && bytes.len() > 1500 && bytes.len() < 2500, "{} bytes", bytes.len());

        proxy.set_faults(vec![FaultRule::new(Fault::CorruptBody)]);
        let mut s = connect(proxy.port());
        for path in ["/5000", "/chunked/5000"] {
            let r = get(&mut s, path).expect("response");
            let want = test_body(5000);
            assert_eq!(r.body.len(), want.len());
            let diff: Vec<usize> = (0..want.len()).filter(|i| r.body[*i] != want[*i]).collect();
            assert_eq!(diff, vec![0, 1024, 2048, 3072, 4096], "{path}");
        }
    }

    #[test]
    fn stalls_and_drip() {
        let up = TestUpstream::start().expect("upstream");
        let proxy = start(&up, 0, None);
        proxy.set_faults(vec![FaultRule::new(Fault::StallBeforeHeaders)]);
        let mut s = connect(proxy.port());
        s.write_all(b"GET /10 HTTP/1.1\r\nHost: x\r\n\r\n").expect("write");
        let (bytes, end) = read_all(&mut s, Duration::from_millis(300));
        assert!(bytes.is_empty() && is_timeout(&end), "{end:?}");
        assert_eq!(up.requests(), 1, "the request was forwarded");
        drop(s);

        proxy.set_faults(vec![FaultRule::new(Fault::StallMidBody { after_bytes: 100 })]);
        let mut s = connect(proxy.port());
        s.write_all(b"GET /1000 HTTP/1.1\r\nHost: x\r\n\r\n").expect("write");
        let (bytes, end) = read_all(&mut s, Duration::from_millis(300));
        assert!(is_timeout(&end), "{end:?}");
        let head_end = find_head_end(&bytes, 0).expect("head");
        assert_eq!(&bytes[head_end..], &test_body(100)[..]);

        proxy.set_faults(vec![FaultRule::new(Fault::DripBody { bytes_per_sec: 1000 })]);
        let mut s = connect(proxy.port());
        let t0 = Instant::now();
        let r = get(&mut s, "/200").expect("drip");
        assert_eq!(r.body, test_body(200));
        assert!(t0.elapsed() >= Duration::from_millis(150), "{:?}", t0.elapsed());

        proxy.set_faults(vec![FaultRule::new(Fault::HugeContentLength)]);
        let mut s = connect(proxy.port());
        s.write_all(b"GET /10 HTTP/1.1\r\nHost: x\r\n\r\n").expect("write");
        let (bytes, end) = read_all(&mut s, Duration::from_millis(300));
        assert!(is_timeout(&end), "{end:?}");
        let head_end = find_head_end(&bytes, 0).expect("head");
        let head = parse_head(&bytes[..head_end], false).expect("head");
        assert_eq!(content_length(&head.headers), Ok(Some(HUGE_CONTENT_LENGTH)));
        assert!(bytes.len() > head_end);

        proxy.set_faults(vec![FaultRule::new(Fault::EndlessHeaders)]);
        let mut s = connect(proxy.port());
        s.write_all(b"GET /10 HTTP/1.1\r\nHost: x\r\n\r\n").expect("write");
        s.set_read_timeout(Some(T)).expect("timeout");
        let mut got = Vec::new();
        let mut buf = [0u8; 8192];
        while got.len() < 100_000 {
            let n = s.read(&mut buf).expect("endless");
            assert!(n > 0);
            got.extend_from_slice(&buf[..n]);
        }
        assert!(got.starts_with(b"HTTP/1.1 200 OK\r\nX-Endless-0: "));
        assert!(find_head_end(&got, 0).is_none());
    }

    #[test]
    fn head_rewrites() {
        let up = TestUpstream::start().expect("upstream");
        let proxy = start(&up, 0, None);
        proxy.set_faults(vec![FaultRule::new(Fault::SkewDate { seconds: -3600 }).for_method("GET")]);
        let mut s = connect(proxy.port());
        let r = get(&mut s, "/10").expect("skewed");
        assert_eq!(r.header("date"), Some("Tue, 15 Nov 1994 07:12:31 GMT"));
        assert_eq!(r.body, test_body(10));
        s.write_all(b"HEAD /10 HTTP/1.1\r\nHost: x\r\n\r\n").expect("write");
        let r = read_response(&mut s, &mut Vec::new(), true).expect("head");
        assert_eq!(r.header("date"), Some(TEST_DATE));
        proxy.set_faults(vec![FaultRule::new(Fault::Gzip)]);
        let r = get(&mut s, "/chunked/2000").expect("gzip");
        assert_eq!(r.header("content-encoding"), Some("gzip"));
        assert_eq!(r.body, test_body(2000));
        proxy.set_faults(vec![FaultRule::new(Fault::Rechunk)]);
        for n in [0usize, 1, 70_000] {
            let r = get(&mut s, &format!("/{n}")).expect("rechunked");
            assert_eq!(r.header("transfer-encoding"), Some("chunked"), "{n}");
            assert_eq!(r.header("content-length"), None, "{n}");
            assert_eq!(r.body, test_body(n), "{n}");
        }
        // The connection still frames the next response right.
        proxy.clear_faults();
        assert_eq!(get(&mut s, "/10").expect("after").body, test_body(10));
    }

    #[test]
    fn echoed_authorization() {
        let up = TestUpstream::start().expect("upstream");
        let proxy = start(&up, 0, None);
        proxy.set_faults(vec![FaultRule::new(Fault::EchoAuthorization)]);
        let mut s = connect(proxy.port());
        s.write_all(
            b"GET /10 HTTP/1.1\r\nHost: x\r\nAuthorization: AWS4 Signature=abc\r\nx-amz-security-token: tok\r\n\r\n",
        )
        .expect("write");
        let r = read_response(&mut s, &mut Vec::new(), false).expect("echo");
        assert_eq!(r.status, 400);
        let body = String::from_utf8_lossy(&r.body);
        assert!(body.contains("Authorization: AWS4 Signature=abc x-amz-security-token: tok"), "{body}");
        assert_eq!(up.requests(), 0, "answered by the proxy");
    }

    #[test]
    fn fraction_is_deterministic() {
        let up = TestUpstream::start().expect("upstream");
        let pattern = |seed: u64| -> Vec<u16> {
            let config = ProxyConfig { delay: Duration::ZERO, bandwidth: None, seed };
            let proxy = Proxy::start(up.port(), config).expect("proxy");
            proxy.set_faults(vec![FaultRule::new(Fault::slow_down()).with_fraction(0.3)]);
            let mut s = connect(proxy.port());
            (0..200).map(|_| get(&mut s, "/1").expect("response").status).collect()
        };
        let a = pattern(42);
        assert_eq!(a, pattern(42));
        let failed = a.iter().filter(|s| **s == 503).count();
        assert!((30..=90).contains(&failed), "{failed} of 200");
        assert_ne!(a, pattern(43));
    }

    #[test]
    fn down_and_up() {
        let up = TestUpstream::start().expect("upstream");
        let proxy = start(&up, 0, None);
        let mut s = connect(proxy.port());
        assert_eq!(get(&mut s, "/10").expect("up").status, 200);
        proxy.set_down(true);
        assert!(proxy.is_down());
        let (bytes, end) = read_all(&mut s, T);
        assert!(bytes.is_empty() && !is_timeout(&end), "open connections are closed: {end:?}");
        let mut s2 = connect(proxy.port());
        let _ = s2.write_all(b"GET /10 HTTP/1.1\r\nHost: x\r\n\r\n");
        let (bytes, end) = read_all(&mut s2, T);
        assert!(bytes.is_empty() && !is_timeout(&end), "new connections are refused: {end:?}");
        proxy.set_down(false);
        let mut s3 = connect(proxy.port());
        assert_eq!(get(&mut s3, "/10").expect("up again").body, test_body(10));
        assert!(proxy.stats().connections_refused >= 1);
    }

    #[test]
    fn drop_is_prompt_and_leaves_no_threads() {
        let up = TestUpstream::start().expect("upstream");
        let proxy = start(&up, 200, Some(1_000_000));
        proxy.set_faults(vec![
            FaultRule::new(Fault::StallBeforeHeaders).for_path("/stall"),
            FaultRule::new(Fault::EndlessHeaders).for_path("/endless"),
            FaultRule::new(Fault::DripBody { bytes_per_sec: 10 }).for_path("/drip"),
        ]);
        let mut clients = Vec::new();
        for path in ["/stall", "/endless", "/drip/100", "/5000000"] {
            let mut s = connect(proxy.port());
            s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes()).expect("write");
            clients.push(s);
        }
        // A client that sends half a head and nothing more.
        let mut s = connect(proxy.port());
        s.write_all(b"GET /1 HTTP/1.1\r\nHo").expect("write");
        clients.push(s);
        thread::sleep(Duration::from_millis(600));
        let shared = proxy.shared.clone();
        assert!(shared.live_threads.load(SeqCst) >= 5 * 4);
        let t0 = Instant::now();
        drop(proxy);
        let took = t0.elapsed();
        assert!(took < Duration::from_millis(1500), "drop took {took:?}");
        assert_eq!(shared.live_threads.load(SeqCst), 0);
        for mut c in clients {
            let (_, end) = read_all(&mut c, T);
            assert!(!is_timeout(&end), "client connections are closed");
        }
    }
}
