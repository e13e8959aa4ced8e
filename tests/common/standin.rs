//! Stand-ins for the credential endpoints nothing real can provide here: a real HTTP
//! server on 127.0.0.1 (std only) that answers each request with a handler and records what
//! it was asked. [`StandIn::start`] is the EC2 instance metadata service (IMDSv2) and the
//! ECS / EKS container credentials endpoint; `sso` builds the SSO portal and SSO OIDC on
//! [`StandIn::serve`].

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime};

/// The IMDSv2 session token the stand-in hands out.
pub const IMDS_TOKEN: &str = "AQAEAstand-in-imds-token==";

/// One request the stand-in saw: method, path (with the query), headers (lower-case
/// names), body.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// A handler's answer: status, extra headers, body.
pub type Reply = (u16, Vec<(String, String)>, String);

impl Seen {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }
}

/// A running stand-in.
pub struct StandIn {
    pub port: u16,
    pub seen: Arc<Mutex<Vec<Seen>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl StandIn {
    /// Serves `access_key`/`secret_key` as IMDSv2 (role `cache-role`) and as a container
    /// endpoint at `/creds` (which wants `Authorization: <container_token>`).
    pub fn start(access_key: &str, secret_key: &str, container_token: &str) -> StandIn {
        let expires = super::go::rfc3339(SystemTime::now() + Duration::from_secs(3600));
        let creds = format!(
            r#"{{"Code":"Success","Type":"AWS-HMAC","AccessKeyId":"{access_key}","SecretAccessKey":"{secret_key}","Token":"","Expiration":"{expires}"}}"#
        );
        let token = container_token.to_string();
        StandIn::serve(move |seen| {
            let (status, text) = metadata(seen, &creds, &token);
            (status, Vec::new(), text)
        })
    }

    /// Answers every request with `handler` (for at most 300 s).
    pub fn serve(handler: impl Fn(&Seen) -> Reply + Send + 'static) -> StandIn {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the stand-in");
        let port = listener.local_addr().unwrap().port();
        listener.set_nonblocking(true).unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (seen2, stop2) = (Arc::clone(&seen), Arc::clone(&stop));
        let thread = std::thread::spawn(move || {
            let deadline = std::time::Instant::now() + Duration::from_secs(300);
            while !stop2.load(Ordering::Relaxed) && std::time::Instant::now() < deadline {
                match listener.accept() {
                    Ok((conn, _)) => {
                        if let Some(seen) = serve(conn, &handler) {
                            seen2.lock().unwrap().push(seen);
                        }
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        StandIn { port, seen, stop, thread: Some(thread) }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn requests(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

impl Drop for StandIn {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Answers one request with `handler` (the connection is closed after it).
fn serve(mut conn: TcpStream, handler: &dyn Fn(&Seen) -> Reply) -> Option<Seen> {
    conn.set_nonblocking(false).ok()?;
    conn.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    let mut reader = BufReader::new(conn.try_clone().ok()?);
    let mut line = String::new();
    reader.read_line(&mut line).ok()?;
    let mut parts = line.split_whitespace();
    let (method, path) = (parts.next()?.to_string(), parts.next()?.to_string());
    let mut headers = Vec::new();
    let mut length = 0usize;
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h).ok()? == 0 || h.trim().is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            let (k, v) = (k.trim().to_ascii_lowercase(), v.trim().to_string());
            if k == "content-length" {
                length = v.parse().unwrap_or(0);
            }
            headers.push((k, v));
        }
    }
    let mut body = vec![0u8; length];
    reader.read_exact(&mut body).ok()?;
    let seen = Seen { method, path, headers, body };
    let (status, extra, text) = handler(&seen);
    let mut reply = format!("HTTP/1.1 {status} X\r\ncontent-length: {}\r\nconnection: close\r\n", text.len());
    for (name, value) in extra {
        reply.push_str(&format!("{name}: {value}\r\n"));
    }
    reply.push_str("\r\n");
    reply.push_str(&text);
    let _ = conn.write_all(reply.as_bytes());
    Some(seen)
}

/// IMDSv2 and the container endpoint.
fn metadata(seen: &Seen, creds: &str, container_token: &str) -> (u16, String) {
    let imds_ok = seen.header("x-aws-ec2-metadata-token") == Some(IMDS_TOKEN);
    match (seen.method.as_str(), seen.path.as_str()) {
        ("PUT", "/latest/api/token") if seen.header("x-aws-ec2-metadata-token-ttl-seconds").is_some() => {
            (200, IMDS_TOKEN.to_string())
        }
        ("GET", "/latest/meta-data/iam/security-credentials/") if imds_ok => (200, "cache-role".to_string()),
        ("GET", "/latest/meta-data/iam/security-credentials/cache-role") if imds_ok => (200, creds.to_string()),
        ("GET", p) if p.starts_with("/latest/") => (401, String::new()),
        ("GET", "/creds") if seen.header("authorization") == Some(container_token) => (200, creds.to_string()),
        ("GET", "/creds") => (403, r#"{"Code":"AccessDenied","Message":"bad token"}"#.to_string()),
        _ => (404, String::new()),
    }
}
