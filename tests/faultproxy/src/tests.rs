//! The proxy's own tests, against `TestUpstream`: framing passes byte-exact, the
//! network is simulated, every fault does what it says, and a proxy stops promptly.

use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, Shutdown, TcpStream};
use std::sync::atomic::Ordering::SeqCst;
use std::thread;
use std::time::{Duration, Instant};

use crate::body::{BodyTracker, Message, MessageReader};
use crate::http::{find_head_end, http_date, parse_http_date, Head, Side};
use crate::{test_body, Fault, FaultRule, Proxy, ProxyConfig, TestUpstream, HUGE_CONTENT_LENGTH, TEST_DATE};

const T: Duration = Duration::from_secs(5);

struct Resp {
    raw: Vec<u8>,
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Resp {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
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
    let mut responses = MessageReader::resume(&*s, 64 * 1024, std::mem::take(pending));
    let message = responses.read(Side::Response, head_request, true);
    *pending = responses.into_pending();
    let Message { head, raw, payload } = message?;
    Ok(Resp { raw, status: head.status(), headers: head.headers, body: payload })
}

fn get(s: &mut TcpStream, path: &str) -> io::Result<Resp> {
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())?;
    read_response(s, &mut Vec::new(), false)
}

fn start(up: &TestUpstream, delay_ms: u64, bandwidth: Option<u64>) -> Proxy {
    Proxy::start(up.port(), ProxyConfig { delay: Duration::from_millis(delay_ms), bandwidth, seed: 7 }).expect("proxy")
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
    let mut put = format!("PUT /echo/a HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n", put_body.len()).into_bytes();
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
    let head = Head::parse(&bytes[..head_end], Side::Response).expect("head");
    assert_eq!(head.content_length(), Ok(Some(HUGE_CONTENT_LENGTH)));
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
