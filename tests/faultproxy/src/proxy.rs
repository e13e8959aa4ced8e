//! The proxy: its handle ([`Proxy`]), the state its threads share, the listener and the
//! set-up of each connection (two readers, two writers).

use std::collections::{BTreeMap, HashMap};
use std::io;
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::SeqCst};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crate::conn::{set_linger_zero, setup_socket, Conn};
use crate::fault::{Fault, FaultRule};
use crate::requests::{ClientReader, ReqInfo};
use crate::responses::ServerReader;
use crate::writer::{run_writer, Bucket, Item};
use crate::{lock, POLL, THREAD_STACK};

/// Chunks queued per direction and connection (at most READ_BUF each).
const QUEUE_ITEMS: usize = 48;
/// How long dropping a `Proxy` waits for its threads at most.
const STOP_WAIT: Duration = Duration::from_secs(3);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

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
    pub(crate) shared: Arc<Shared>,
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
pub(crate) struct Shared {
    pub(crate) upstream: SocketAddr,
    pub(crate) delay: Duration,
    pub(crate) stop: AtomicBool,
    pub(crate) down: AtomicBool,
    pub(crate) rules: Mutex<Vec<FaultRule>>,
    pub(crate) rng: Mutex<u64>,
    pub(crate) bucket_to_upstream: Option<Bucket>,
    pub(crate) bucket_to_client: Option<Bucket>,
    pub(crate) conns: Mutex<HashMap<u64, Arc<Conn>>>,
    pub(crate) next_conn: AtomicU64,
    pub(crate) live_threads: AtomicUsize,
    pub(crate) connections: AtomicU64,
    pub(crate) active: AtomicU64,
    pub(crate) refused: AtomicU64,
    pub(crate) upstream_failures: AtomicU64,
    pub(crate) requests: AtomicU64,
    pub(crate) responses: AtomicU64,
    pub(crate) faults_injected: AtomicU64,
    pub(crate) fault_counts: Mutex<BTreeMap<&'static str, u64>>,
    pub(crate) bytes_to_upstream: AtomicU64,
    pub(crate) bytes_to_client: AtomicU64,
}

impl Shared {
    pub(crate) fn stopped(&self) -> bool {
        self.stop.load(SeqCst)
    }

    pub(crate) fn close_all(&self) {
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

    pub(crate) fn pick_fault(&self, method: &str, target: &str) -> Option<Fault> {
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

/// Counts a proxy thread while it lives.
struct ThreadGuard(Arc<Shared>);

impl Drop for ThreadGuard {
    fn drop(&mut self) {
        self.0.live_threads.fetch_sub(1, SeqCst);
    }
}

pub(crate) fn spawn(shared: &Arc<Shared>, name: &str, f: impl FnOnce() + Send + 'static) -> io::Result<JoinHandle<()>> {
    shared.live_threads.fetch_add(1, SeqCst);
    let guard = ThreadGuard(shared.clone());
    thread::Builder::new().name(name.to_string()).stack_size(THREAD_STACK).spawn(move || {
        let _guard = guard;
        f()
    })
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
    let conn = Arc::new(Conn::new(client, upstream));
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
    let server_reader = ServerReader::new(shared.clone(), conn.clone(), to_client.clone(), info_rx);
    threads.push(spawn(&shared, "faultproxy-r-up", move || server_reader.run()));
    if threads.iter().any(|t| t.is_err()) {
        conn.close();
    }
    let client_reader = ClientReader::new(shared.clone(), conn.clone(), to_up, to_client, info_tx);
    client_reader.run();
    for t in threads.into_iter().flatten() {
        let _ = t.join();
    }
    lock(&shared.conns).remove(&id);
    shared.active.fetch_sub(1, SeqCst);
    // The last reference to `conn` goes here: both sockets are closed.
}
