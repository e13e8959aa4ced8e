//! Smoke test of the test harness itself: each S3-compatible server starts,
//! round-trips an object with metadata through the independent boto3 client
//! (tests/tools/s3check.py), and dies on `stop()`.

use crate::common;

use common::servers::{port_accepts, python, S3Server};
use std::time::Instant;

/// Lowercase hex SHA-256 via python (keeps this test free of a sha2 dev-dependency;
/// the main crate can use its own sha2 instead).
fn sha256_hex(data: &[u8]) -> String {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let mut child = Command::new(python())
        .args(["-c", "import hashlib,sys;print(hashlib.sha256(sys.stdin.buffer.read()).hexdigest())"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3");
    child.stdin.take().unwrap().write_all(data).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

fn round_trip(s: &S3Server) {
    let body: Vec<u8> = (0..100_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let sha = sha256_hex(&body);
    let file = s.dir().join("upload.bin");
    std::fs::write(&file, &body).unwrap();
    let key = format!("smoke/{}/a-{}", s.kind, &sha[..8]);

    assert!(s.list("").is_empty(), "{}: bucket not empty at start", s.kind);

    let meta = format!("outputid={sha}");
    s.s3check_ok(&["put", "--key", &key, "--file", file.to_str().unwrap(), "--meta", &meta]);

    let objs = s.list("smoke/");
    assert_eq!(objs.len(), 1, "{}: {objs:?}", s.kind);
    let o = &objs[0];
    assert_eq!(o["key"], key.as_str(), "{}", s.kind);
    assert_eq!(o["size"], body.len() as u64, "{}", s.kind);
    assert_eq!(o["sha256"], sha.as_str(), "{}", s.kind);
    assert_eq!(o["metadata"], serde_json::json!({ "outputid": sha }), "{}: metadata", s.kind);

    let out = s.dir().join("download.bin");
    s.s3check_ok(&["get", "--key", &key, "--out", out.to_str().unwrap()]);
    assert_eq!(std::fs::read(&out).unwrap(), body, "{}: get", s.kind);

    // A prefix that matches nothing lists nothing.
    assert!(s.list("nope/").is_empty(), "{}", s.kind);

    // A key with characters that need percent-encoding in the path.
    let odd = format!("smoke/{}/a+b c%d=e~f", s.kind);
    s.s3check_ok(&["put", "--key", &odd, "--file", file.to_str().unwrap()]);
    let objs = s.list(&format!("smoke/{}/a+b", s.kind));
    assert_eq!(objs.len(), 1, "{}: {objs:?}", s.kind);
    assert_eq!(objs[0]["key"], odd.as_str(), "{}", s.kind);
    assert_eq!(objs[0]["metadata"], serde_json::json!({}), "{}", s.kind);
    s.s3check_ok(&["delete", "--key", &odd]);

    s.s3check_ok(&["delete", "--key", &key]);
    assert!(s.list("").is_empty(), "{}: delete did not delete", s.kind);

    // get of a missing key: non-zero exit with a message.
    let missing = s.s3check(&["get", "--key", &key, "--out", out.to_str().unwrap()]);
    assert!(!missing.status.success(), "{}: get of a deleted key", s.kind);
    let err = String::from_utf8_lossy(&missing.stderr);
    assert!(err.contains("404") || err.contains("NoSuchKey"), "{}: {err}", s.kind);
}

/// A client with a wrong secret must be rejected with 403.
fn assert_wrong_secret_rejected(s: &S3Server) {
    let mut bad = String::from(&s.secret_key[..s.secret_key.len() - 1]);
    bad.push(if s.secret_key.ends_with('A') { 'B' } else { 'A' });
    let out = std::process::Command::new(python())
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/tools/s3check.py"))
        .args(["--endpoint", &s.endpoint, "--region", &s.region])
        .args(["--bucket", &s.bucket, "--access-key", &s.access_key])
        .args(["--secret-key", &bad, "list"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("403"), "{}: wrong secret not rejected: {err}", s.kind);
}

fn timed(name: &str, f: fn() -> S3Server) -> S3Server {
    let t = Instant::now();
    let s = f();
    eprintln!("{name}: ready in {:?} at {}", t.elapsed(), s.endpoint);
    s
}

#[test]
fn garage_round_trip() {
    let s = timed("garage", S3Server::garage);
    assert_eq!(s.region, "garage");
    round_trip(&s);
    assert_wrong_secret_rejected(&s);
}

#[test]
fn s3s_fs_round_trip() {
    let s = timed("s3s-fs", S3Server::s3s_fs);
    round_trip(&s);
    assert_wrong_secret_rejected(&s);
}

#[test]
fn moto_round_trip_and_checks_signatures() {
    let s = timed("moto", S3Server::moto);
    round_trip(&s);
    assert_wrong_secret_rejected(&s);
}

fn stop_closes_port(f: fn() -> S3Server) {
    let mut s = f();
    let port = s.port();
    assert!(port_accepts(port), "{}: not listening", s.kind);
    s.stop();
    assert!(!s.is_running());
    assert!(!port_accepts(port), "{}: port {port} still accepts after stop()", s.kind);
    s.stop(); // idempotent
    let dir = s.dir().to_path_buf();
    drop(s);
    assert!(!dir.exists(), "temp dir not removed on drop");
}

#[test]
fn stop_closes_port_garage() {
    stop_closes_port(S3Server::garage);
}

#[test]
fn stop_closes_port_s3s_fs() {
    stop_closes_port(S3Server::s3s_fs);
}

#[test]
fn stop_closes_port_moto() {
    stop_closes_port(S3Server::moto);
}

#[test]
fn parallel_servers_are_independent() {
    let a = S3Server::moto();
    let b = S3Server::moto();
    assert_ne!(a.endpoint, b.endpoint);
    let f = a.dir().join("x");
    std::fs::write(&f, b"x").unwrap();
    a.s3check_ok(&["put", "--key", "only-in-a", "--file", f.to_str().unwrap()]);
    assert_eq!(a.list("").len(), 1);
    assert!(b.list("").is_empty());
}
