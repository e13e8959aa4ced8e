//! A stand-in for the credential endpoints nothing real can provide here: the EC2 instance
//! metadata service (IMDSv2) and the ECS / EKS container credentials endpoint. A real
//! HTTP server on 127.0.0.1 (std only) that serves the given keys and records what it was
//! asked.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime};

/// The IMDSv2 session token the stand-in hands out.
pub const IMDS_TOKEN: &str = "AQAEAstand-in-imds-token==";

/// One request the stand-in saw: method, path, headers (lower-case names).
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
}

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
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the stand-in");
        let port = listener.local_addr().unwrap().port();
        listener.set_nonblocking(true).unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let expires = super::go::rfc3339(SystemTime::now() + Duration::from_secs(3600));
        let creds = format!(
            r#"{{"Code":"Success","Type":"AWS-HMAC","AccessKeyId":"{access_key}","SecretAccessKey":"{secret_key}","Token":"","Expiration":"{expires}"}}"#
        );
        let (seen2, stop2, token) = (Arc::clone(&seen), Arc::clone(&stop), container_token.to_string());
        let thread = std::thread::spawn(move || {
            let deadline = std::time::Instant::now() + Duration::from_secs(300);
            while !stop2.load(Ordering::Relaxed) && std::time::Instant::now() < deadline {
                match listener.accept() {
                    Ok((conn, _)) => {
                        if let Some(seen) = serve(conn, &creds, &token) {
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

/// Answers one request (the connection is closed after it).
fn serve(mut conn: TcpStream, creds: &str, container_token: &str) -> Option<Seen> {
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
    let seen = Seen { method, path, headers };
    let imds_ok = seen.header("x-aws-ec2-metadata-token") == Some(IMDS_TOKEN);
    let (status, text) = match (seen.method.as_str(), seen.path.as_str()) {
        ("PUT", "/latest/api/token") if seen.header("x-aws-ec2-metadata-token-ttl-seconds").is_some() => {
            (200, IMDS_TOKEN.to_string())
        }
        ("GET", "/latest/meta-data/iam/security-credentials/") if imds_ok => (200, "cache-role".to_string()),
        ("GET", "/latest/meta-data/iam/security-credentials/cache-role") if imds_ok => (200, creds.to_string()),
        ("GET", p) if p.starts_with("/latest/") => (401, String::new()),
        ("GET", "/creds") if seen.header("authorization") == Some(container_token) => (200, creds.to_string()),
        ("GET", "/creds") => (403, r#"{"Code":"AccessDenied","Message":"bad token"}"#.to_string()),
        _ => (404, String::new()),
    };
    let reply = format!("HTTP/1.1 {status} X\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{text}", text.len());
    let _ = conn.write_all(reply.as_bytes());
    Some(seen)
}
