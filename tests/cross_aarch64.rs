//! The aarch64 Linux binary (aarch64-unknown-linux-musl, static, built by
//! scripts/build-cross.sh) under qemu-user: go's protocol, and a real `go build` through
//! it with Garage on 127.0.0.1, cold, then warm from an empty local tier with nothing
//! compiled. GOCACHEPROG names qemu itself (binfmt_misc may not be registered here).

use crate::common;

use common::cross::{cross_binary, qemu_aarch64};
use common::go::{
    fresh_dir, get_req, output_path, put_req, quote_field, random_bytes, read_stats, sha256, stat, Prog, Sandbox,
    Session,
};
use common::remote::{refs, store_env};
use common::servers::S3Server;
use serde_json::Value;
use std::fs;
use std::process::Command;
use std::time::Instant;

const TARGET: &str = "aarch64-unknown-linux-musl";

fn json(line: &str) -> Value {
    serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"))
}

#[test]
fn the_aarch64_binary_speaks_the_protocol_under_qemu() {
    let bin = cross_binary(TARGET);
    let dir = fresh_dir("aarch64-protocol");
    let cache = dir.join("cache");
    let stats_file = dir.join("stats.json");
    let mut cmd = Command::new(qemu_aarch64());
    cmd.arg(&bin)
        .args(["--cache-dir", &cache.to_string_lossy(), "--stats-file", &stats_file.to_string_lossy()])
        .env_clear()
        .env("HOME", &dir)
        .env("AWS_EC2_METADATA_DISABLED", "true");
    let started = Instant::now();
    let mut s = Session::spawn(cmd, &dir.join("stderr"));
    let handshake = started.elapsed();

    let action = sha256(b"aarch64 action");
    let body = random_bytes(200_000, 64);
    let answer = json(&s.request(&get_req(1, &action)));
    assert_eq!(answer["Miss"], true, "{answer}");
    let answer = json(&s.request(&put_req(2, &action, &sha256(&body), &body, "OutputID")));
    let path = output_path(&cache, &hex::encode(sha256(&body)));
    assert_eq!(answer["DiskPath"].as_str(), Some(path.to_string_lossy().as_ref()), "{answer}");
    assert_eq!(fs::read(&path).unwrap(), body);
    let answer = json(&s.request(&get_req(3, &action)));
    assert_eq!(answer["Size"].as_u64(), Some(body.len() as u64), "{answer}");
    assert_eq!(answer["DiskPath"].as_str(), Some(path.to_string_lossy().as_ref()), "{answer}");
    assert_eq!(json(&s.request("{\"ID\":4,\"Command\":\"close\"}\n\n"))["ID"], 4);
    let stderr = s.finish();
    let stats = read_stats(&stats_file);
    assert_eq!(
        (stat(&stats, "misses"), stat(&stats, "puts"), stat(&stats, "local_hits")),
        (1, 1, 1),
        "{stats}\n{stderr}"
    );
    eprintln!("aarch64 binary under qemu: handshake after {handshake:?}, session {:?}", started.elapsed());
}

#[test]
fn the_aarch64_binary_serves_a_go_build_under_qemu() {
    let bin = cross_binary(TARGET);
    let qemu = qemu_aarch64();
    let server = S3Server::garage();
    let sb = Sandbox::new("aarch64-build");
    let build = |tier: &str, args: &[&str]| {
        let stats = sb.root.join(format!("{tier}.json"));
        let prog = [qemu.to_string_lossy(), bin.to_string_lossy(), "--stats-file".into(), stats.to_string_lossy()]
            .iter()
            .map(|f| quote_field(f))
            .chain([quote_field(&server.bucket)])
            .collect::<Vec<_>>()
            .join(" ");
        let env = store_env(&sb, &server, &server.endpoint, tier);
        let started = Instant::now();
        let run = sb.spawn(args, &refs(&env), Prog::Raw(prog)).wait();
        run.assert_ok();
        eprintln!("go {args:?} through the aarch64 binary under qemu: {:?}", started.elapsed());
        (run, read_stats(&stats))
    };

    // Cold: everything compiled, stored and uploaded.
    let (run, stats) = build("cold", &["build", "./..."]);
    assert!(stat(&stats, "puts") > 0, "{stats}");
    assert_eq!(stat(&stats, "uploads"), stat(&stats, "puts"), "{stats}\n{}", run.stderr);

    // Warm from an empty local tier: everything from the bucket, nothing compiled.
    let (run, stats) = build("warm", &["build", "-x", "./..."]);
    assert!(run.compile_lines().is_empty(), "the warm build compiled:\n{}", run.compile_lines().join("\n"));
    assert!(stat(&stats, "remote_hits") > 0, "{stats}");
    assert_eq!(stat(&stats, "get_errors"), 0, "{stats}\n{}", run.stderr);
}
