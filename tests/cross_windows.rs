//! The Windows binary (x86_64-pc-windows-gnu, built by scripts/build-cross.sh) under
//! wine: go's protocol on a local tier at a Windows path (go opens `DiskPath` itself, so
//! it must be a Windows absolute path to a file holding exactly the bytes), damaged
//! entries read as misses, and a round trip through Garage on 127.0.0.1 over wine's
//! sockets. A linux go cannot open Windows paths, so the tests speak the protocol
//! themselves, one wine process per session (wine starts slowly).

use crate::common;

use common::cross::{cross_binary, windows_path, Wine};
use common::go::{fresh_dir, get_req, output_path, put_req, random_bytes, read_stats, sha256, stat, Session};
use common::servers::S3Server;
use serde_json::Value;
use std::fs;
use std::path::Path;
use std::time::Instant;

const TARGET: &str = "x86_64-pc-windows-gnu";

/// Outputs of several shapes: empty, small, and larger than one read.
fn bodies() -> Vec<Vec<u8>> {
    vec![Vec::new(), b"hello from windows".to_vec(), random_bytes(300_000, 13), random_bytes(4096, 14)]
}

fn action(n: usize) -> [u8; 32] {
    sha256(format!("windows action {n}").as_bytes())
}

/// A session of the Windows binary under wine with a local tier at `cache` (given to it
/// as a Windows path), plus `args` and `env`.
fn session(wine: &Wine, cache: &Path, stats: &Path, args: &[&str], env: &[(String, String)]) -> Session {
    let mut cmd = wine.command(&cross_binary(TARGET));
    cmd.args(["--cache-dir", &windows_path(cache), "--stats-file", &windows_path(stats)])
        .args(args)
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("AWS_ENDPOINT_URL_STS", "http://127.0.0.1:9")
        .envs(env.iter().map(|(k, v)| (k, v)));
    Session::spawn(cmd, &stats.with_extension("stderr"))
}

fn json(line: &str) -> Value {
    serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"))
}

/// Checks a hit or put answer: `DiskPath` is the Windows path of the output in `cache`,
/// and that file holds exactly `body`.
fn assert_disk_path(answer: &Value, cache: &Path, body: &[u8]) {
    let output = hex::encode(sha256(body));
    let here = output_path(cache, &output);
    assert_eq!(answer["DiskPath"].as_str(), Some(windows_path(&here).as_str()), "{answer}");
    assert_eq!(fs::read(&here).unwrap(), body, "{answer}");
}

#[test]
fn the_windows_binary_serves_the_protocol_on_a_local_tier_under_wine() {
    let wine = Wine::new("local");
    let dir = fresh_dir("windows-local");
    let cache = dir.join("cache");
    let stats_file = dir.join("stats.json");
    let bodies = bodies();
    let started = Instant::now();
    let mut s = session(&wine, &cache, &stats_file, &[], &[]);
    let handshake = started.elapsed();

    for (i, body) in bodies.iter().enumerate() {
        let answer = json(&s.request(&put_req(i as i64 + 1, &action(i), &sha256(body), body, "OutputID")));
        assert_eq!(answer["ID"], i as i64 + 1, "{answer}");
        assert!(answer.get("Err").is_none(), "{answer}");
        assert_disk_path(&answer, &cache, body);
    }
    for (i, body) in bodies.iter().enumerate() {
        let answer = json(&s.request(&get_req(100 + i as i64, &action(i))));
        assert_eq!(answer["Size"].as_u64(), Some(body.len() as u64), "{answer}");
        assert_eq!(answer["OutputID"].as_str(), Some(common::go::b64(&sha256(body)).as_str()), "{answer}");
        assert_disk_path(&answer, &cache, body);
    }
    let answer = json(&s.request(&get_req(200, &action(99))));
    assert_eq!(answer["Miss"], true, "an unknown action: {answer}");

    // Damage from outside, as a crash or another tool would leave it: a truncated output,
    // and an entry line of garbage. Both are misses, never a hit on the wrong bytes.
    let truncated = output_path(&cache, &hex::encode(sha256(&bodies[2])));
    fs::write(&truncated, &bodies[2][..1000]).unwrap();
    let entry = cache.join(&hex::encode(action(3))[..2]).join(format!("{}-a", hex::encode(action(3))));
    assert!(entry.is_file(), "no entry at {}", entry.display());
    fs::write(&entry, "v1 garbage\n").unwrap();
    for (id, n) in [(300, 2), (301, 3)] {
        let answer = json(&s.request(&get_req(id, &action(n))));
        assert_eq!(answer["Miss"], true, "damaged entry {n}: {answer}");
    }
    // The intact ones still hit; a put repairs a damaged one.
    let answer = json(&s.request(&get_req(302, &action(1))));
    assert_disk_path(&answer, &cache, &bodies[1]);
    let answer = json(&s.request(&put_req(303, &action(2), &sha256(&bodies[2]), &bodies[2], "OutputID")));
    assert_disk_path(&answer, &cache, &bodies[2]);
    let answer = json(&s.request(&get_req(304, &action(2))));
    assert_disk_path(&answer, &cache, &bodies[2]);

    assert_eq!(json(&s.request("{\"ID\":400,\"Command\":\"close\"}\n\n"))["ID"], 400);
    let stderr = s.finish();
    let stats = read_stats(&stats_file);
    assert_eq!(stat(&stats, "puts"), 5, "{stats}\n{stderr}");
    assert_eq!(stat(&stats, "put_errors"), 0, "{stats}\n{stderr}");
    assert_eq!(stat(&stats, "local_hits"), 6, "{stats}\n{stderr}");
    assert_eq!(stat(&stats, "misses"), 3, "{stats}\n{stderr}");
    // Nothing left in the temporary folders.
    let leftovers: Vec<_> = walk(&cache).into_iter().filter(|p| p.to_string_lossy().contains(".tmp-")).collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    eprintln!("windows binary under wine: handshake after {handshake:?}, session {:?}", started.elapsed());
}

#[test]
fn the_windows_binary_round_trips_through_a_bucket_under_wine() {
    let server = S3Server::garage();
    let wine = Wine::new("bucket");
    let dir = fresh_dir("windows-bucket");
    let bodies = bodies();
    let env = server.env();

    // Fills the bucket: every put uploaded by the end of the session.
    let (cache, stats_file) = (dir.join("cache-1"), dir.join("stats-1.json"));
    let mut s = session(&wine, &cache, &stats_file, &[&server.bucket], &env);
    for (i, body) in bodies.iter().enumerate() {
        let answer = json(&s.request(&put_req(i as i64 + 1, &action(i), &sha256(body), body, "OutputID")));
        assert_disk_path(&answer, &cache, body);
    }
    assert_eq!(json(&s.request("{\"ID\":9,\"Command\":\"close\"}\n\n"))["ID"], 9);
    let stderr = s.finish();
    let stats = read_stats(&stats_file);
    assert_eq!(stat(&stats, "uploads"), bodies.len() as u64, "{stats}\n{stderr}");

    // A fresh local tier gets every output from the bucket, at its own Windows paths.
    let (cache, stats_file) = (dir.join("cache-2"), dir.join("stats-2.json"));
    let mut s = session(&wine, &cache, &stats_file, &[&server.bucket, "--no-prefetch"], &env);
    for (i, body) in bodies.iter().enumerate() {
        let answer = json(&s.request(&get_req(i as i64 + 1, &action(i))));
        assert_eq!(answer["Size"].as_u64(), Some(body.len() as u64), "{answer}");
        assert_disk_path(&answer, &cache, body);
    }
    assert_eq!(json(&s.request("{\"ID\":9,\"Command\":\"close\"}\n\n"))["ID"], 9);
    let stderr = s.finish();
    let stats = read_stats(&stats_file);
    assert_eq!(stat(&stats, "remote_hits"), bodies.len() as u64, "{stats}\n{stderr}");
    assert_eq!(stat(&stats, "get_errors"), 0, "{stats}\n{stderr}");
}

/// Every file under `dir`.
fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path);
        }
    }
    out
}
