//! The `faultproxy` binary (src/main.rs): a proxy on the command line for
//! scripts/bench.sh, and `selftest`, which measures the proxy's own ceiling.

use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, TcpStream};
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering::SeqCst};
use std::sync::{Arc, Barrier, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use crate::body::MessageReader;
use crate::conn::is_retry;
use crate::http::Side;
use crate::{lock, Proxy, ProxyConfig, TestUpstream, THREAD_STACK};

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

/// The `faultproxy` binary: serves (see `USAGE`) or runs the selftest.
pub fn main() -> ExitCode {
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

/// One keep-alive connection: request after request until `deadline`, counting the
/// response bytes (heads included, as the cap counts them) as they arrive.
fn bench_client(port: u16, size: u64, deadline: Instant, bytes: &AtomicU64, requests: &AtomicU64) -> io::Result<()> {
    let s = TcpStream::connect((Ipv4Addr::LOCALHOST, port))?;
    s.set_nodelay(true)?;
    s.set_read_timeout(Some(Duration::from_millis(200)))?;
    let request = format!("GET /{size} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n");
    let mut responses = MessageReader::new(UntilDeadline { s: &s, deadline, bytes }, 256 * 1024);
    while Instant::now() < deadline {
        (&s).write_all(request.as_bytes())?;
        match responses.read(Side::Response, false, false) {
            Err(e) if e.kind() == io::ErrorKind::TimedOut => return Ok(()),
            r => r?,
        };
        requests.fetch_add(1, SeqCst);
    }
    Ok(())
}

/// Reads a socket until `deadline` (then `TimedOut`), counting what it reads.
struct UntilDeadline<'a> {
    s: &'a TcpStream,
    deadline: Instant,
    bytes: &'a AtomicU64,
}

impl Read for UntilDeadline<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            if Instant::now() >= self.deadline {
                return Err(io::ErrorKind::TimedOut.into());
            }
            match self.s.read(buf) {
                Ok(n) => {
                    self.bytes.fetch_add(n as u64, SeqCst);
                    return Ok(n);
                }
                Err(e) if is_retry(&e) => {}
                Err(e) => return Err(e),
            }
        }
    }
}
