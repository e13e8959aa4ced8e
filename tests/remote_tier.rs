//! The remote tier end to end: the real binary under the real go, against real
//! S3-compatible stores on 127.0.0.1 (Garage, s3s-fs, moto), with objects read back by an
//! independent client (boto3), and with the faults a build must survive: corrupted
//! objects, a store that is down from the start, one that stops answering, one killed
//! in the middle of a build, and refused credentials.

use crate::common;

use common::go::{sha256_file, stat, Prog, Sandbox};
use common::remote::{go_remote, refs, store_env, unreachable_store_env};
use common::servers::{free_port, S3Server};
use faultproxy::{Fault, FaultRule, Proxy, ProxyConfig};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Every output object under `prefix` as boto3 sees it (the working-set manifests under
/// `<prefix>/manifests/` aside): its body hashes to its `outputid`.
fn assert_objects_verified(server: &S3Server, prefix: &str) -> usize {
    let mut objects = server.list(prefix);
    objects.retain(|o| !o["key"].as_str().unwrap_or_default().starts_with(&format!("{prefix}manifests/")));
    for o in &objects {
        let key = o["key"].as_str().unwrap_or_default();
        let outputid = o["metadata"]["outputid"].as_str().unwrap_or_default();
        // Compressed objects (the default form) hash to their outputid once decoded.
        let (name, sha) = match key.strip_suffix(".lz4") {
            Some(name) => (name, &o["decoded_sha256"]),
            None => (key, &o["sha256"]),
        };
        assert_eq!(sha.as_str(), Some(outputid), "{}: object {key} does not hash to its outputid", server.kind);
        assert!(o["metadata"]["puttime"].as_str().is_some_and(|t| t.parse::<i64>().is_ok()), "{key}: no puttime");
        let action_hex = name.rsplit('/').next().unwrap_or_default();
        assert_eq!(action_hex.len(), 64, "{key}: not <prefix>/<action hex>[.lz4]");
        assert_eq!(o["metadata"]["actionid"].as_str(), Some(action_hex), "{key}: actionid");
    }
    objects.len()
}

/// Cold build fills the bucket; a new empty local tier then compiles nothing and every
/// get is a remote hit.
/// `cold_form` is the --compression of the filling build; the reading builds use the
/// default (compressed first), so a plain fill also tests reading the other form.
fn round_trip(server: &S3Server, prefix: &str, cold_form: &str) {
    let sb = Sandbox::new(server.kind);
    let prog = ["--prefix", prefix];
    // The same command both times: go's lookups depend on its flags.
    let cold_prog = ["--prefix", prefix, "--compression", cold_form];
    let cold = go_remote(&sb, server, "tier-cold", &["build", "-x", "./..."], &cold_prog);
    cold.assert_ok();
    assert!(!cold.compile_lines().is_empty(), "a cold build compiles");
    let stats = sb.last_stats();
    assert!(stat(&stats, "puts") > 0, "{stats}");
    assert_eq!(stat(&stats, "uploads"), stat(&stats, "puts"), "every put uploaded: {stats}");
    assert_eq!(stat(&stats, "upload_errors"), 0, "{stats}\n{}", cold.stderr);
    let objects = assert_objects_verified(server, &format!("{prefix}/"));
    assert!(objects > 0 && objects as u64 <= stat(&stats, "puts"), "{objects} objects for {stats}");
    let compressed = server
        .list(&format!("{prefix}/"))
        .iter()
        .filter(|o| o["key"].as_str().is_some_and(|k| k.ends_with(".lz4")))
        .count();
    assert_eq!(compressed > 0, cold_form == "lz4", "{compressed} .lz4 objects after a --compression {cold_form} fill");

    let warm = go_remote(&sb, server, "tier-warm", &["build", "-x", "./..."], &prog);
    warm.assert_ok();
    assert!(
        warm.compile_lines().is_empty(),
        "{}: compiled after a bucket fill:\n{:?}",
        server.kind,
        warm.compile_lines()
    );
    let from_bucket = sb.last_stats();
    // go itself looks up a few actions it never stores (it misses them on a warm local
    // cache too), so compare with a rerun on the now-warm local tier: the bucket must
    // have served every get the local tier serves.
    go_remote(&sb, server, "tier-warm", &["build", "-x", "./..."], &prog).assert_ok();
    let local = sb.last_stats();
    assert!(stat(&local, "local_hits") > 0, "{local}");
    assert_eq!(stat(&from_bucket, "gets"), stat(&local, "gets"), "{from_bucket}\n{local}");
    // (A get go repeats after its own put of that action in the session is a local hit.)
    assert_eq!(
        stat(&from_bucket, "remote_hits") + stat(&from_bucket, "local_hits"),
        stat(&local, "local_hits"),
        "{from_bucket}\n{local}"
    );
    assert!(stat(&from_bucket, "local_hits") <= stat(&from_bucket, "puts"), "{from_bucket}");
    assert_eq!(stat(&from_bucket, "misses"), stat(&local, "misses"), "{from_bucket}\n{local}");
    assert!(stat(&from_bucket, "bytes_downloaded") > 0, "{from_bucket}");
    // What came down is what go stored: the local files hash to their output IDs.
    for entry in common::go::cache_entries(&sb.root.join("tier-warm")) {
        let body = common::go::output_path(&sb.root.join("tier-warm"), &entry.output_hex);
        assert_eq!(sha256_file(&body), entry.output_hex, "{}", body.display());
    }
}

#[test]
fn garage_round_trip_and_test_cache_time() {
    let server = S3Server::garage();
    round_trip(&server, "go-cache", "lz4");

    // go's test cache: a result that came from the bucket keeps its original time, so
    // `go clean -testcache` (which expires results put before it) makes the test run again.
    let sb = Sandbox::new("garage-testcache");
    let prog = ["--prefix", "tests"];
    let first = go_remote(&sb, &server, "t1", &["test", "./..."], &prog);
    first.assert_ok();
    assert!(!first.stdout.contains("(cached)"), "{}", first.stdout);
    let again = go_remote(&sb, &server, "t2", &["test", "./..."], &prog);
    again.assert_ok();
    assert!(again.stdout.contains("(cached)"), "result not cached from the bucket:\n{}", again.stdout);
    assert!(stat(&sb.last_stats(), "remote_hits") > 0);
    go_remote(&sb, &server, "t2", &["clean", "-testcache"], &prog).assert_ok();
    let rerun = go_remote(&sb, &server, "t2", &["test", "./..."], &prog);
    rerun.assert_ok();
    assert!(!rerun.stdout.contains("(cached)"), "test not rerun after clean -testcache:\n{}", rerun.stdout);
}

#[test]
fn s3s_fs_round_trip_with_awkward_prefix() {
    // Plain objects (--compression none: the original program's form) read back by the
    // default configuration.
    round_trip(&S3Server::s3s_fs(), "team cache/ü+=&!'()*~", "none");
}

#[test]
fn moto_round_trip_with_signature_checks() {
    round_trip(&S3Server::moto(), "go-cache", "lz4");
}

#[test]
fn seaweedfs_round_trip() {
    round_trip(&S3Server::seaweedfs(), "go-cache", "lz4");
}

#[test]
fn read_only_writes_nothing() {
    let server = S3Server::garage();
    let sb = Sandbox::new("readonly");
    let run = go_remote(&sb, &server, "ro", &["build", "./..."], &["--read-only", "--prefix", "ro"]);
    run.assert_ok();
    let stats = sb.last_stats();
    assert!(stat(&stats, "puts") > 0, "{stats}");
    assert!(stat(&stats, "remote_not_found") + stat(&stats, "fast_misses") > 0, "the bucket was read: {stats}");
    assert_eq!(stat(&stats, "uploads") + stat(&stats, "upload_errors"), 0, "{stats}");
    assert!(server.list("").is_empty(), "read-only wrote to the bucket");
    // Still a working local cache.
    let again = go_remote(&sb, &server, "ro", &["build", "-x", "./..."], &["--read-only", "--prefix", "ro"]);
    again.assert_ok();
    assert!(again.compile_lines().is_empty());
}

/// Objects whose bodies were replaced behind our back (same metadata, wrong or truncated
/// bytes) are misses, never hits, and go rebuilds correctly.
#[test]
fn corrupted_objects_are_misses_and_go_rebuilds() {
    let server = S3Server::s3s_fs();
    let sb = Sandbox::new("corrupt");
    go_remote(&sb, &server, "fill", &["build", "-o", "bin1", "."], &[]).assert_ok();
    let objects = data_files(&server.dir().join("root").join(&server.bucket).join("go-cache"));
    assert!(objects.len() > 10, "expected the bucket's files on disk, found {}", objects.len());
    for (i, path) in objects.iter().enumerate() {
        let len = std::fs::metadata(path).unwrap().len();
        if len == 0 {
            std::fs::write(path, b"x").unwrap(); // an empty output that is not empty any more
        } else if i % 2 == 0 {
            std::fs::write(path, vec![0x5a; len as usize]).unwrap(); // same size, wrong bytes
        } else {
            let mut bytes = std::fs::read(path).unwrap();
            bytes.truncate(bytes.len() / 2);
            std::fs::write(path, bytes).unwrap();
        }
    }

    // With prefetch, the damaged objects are fetched (and refused) before go asks
    // (read-only, so that the good outputs go builds do not repair the bucket yet).
    let prefetched = go_remote(&sb, &server, "fresh-prefetched", &["build", "-o", "bin3", "."], &["--read-only"]);
    prefetched.assert_ok();
    let stats = sb.last_stats();
    assert_eq!(stat(&stats, "remote_hits") + stat(&stats, "prefetched"), 0, "{stats}");
    assert!(stat(&stats, "remote_bad_objects") > 10, "{stats}");
    // Without, each get meets its damaged object itself: counted one by one.
    let run = go_remote(&sb, &server, "fresh", &["build", "-o", "bin2", "."], &["-v", "--no-prefetch"]);
    run.assert_ok();
    let stats = sb.last_stats();
    // Every object was damaged: nothing may come back as a hit.
    assert_eq!(stat(&stats, "remote_hits"), 0, "{stats}");
    assert!(stat(&stats, "remote_bad_objects") > 10, "{stats}");
    assert_eq!(
        stat(&stats, "remote_bad_objects") + stat(&stats, "remote_not_found") + stat(&stats, "fast_misses"),
        stat(&stats, "gets"),
        "{stats}\n{}",
        run.stderr
    );
    assert!(run.stderr.contains("ignoring object"), "{}", run.stderr);
    let out = std::process::Command::new(sb.module.join("bin2")).output().unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "hello, world");
}

fn data_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.unwrap().path();
        if path.is_file() && !path.to_string_lossy().ends_with(".json") {
            out.push(path);
        }
    }
    out.sort();
    out
}

#[test]
fn store_down_from_the_start_is_switched_off_and_the_build_succeeds() {
    let port = free_port(); // nothing listens there
    let sb = Sandbox::new("down");
    let env = unreachable_store_env(port);
    let run = sb.spawn(&["build", "./..."], &refs(&env), Prog::Ours(&["cache"])).wait();
    run.assert_ok();
    let lines: Vec<&str> = run.stderr.lines().filter(|l| l.contains("bucket switched off")).collect();
    assert_eq!(lines.len(), 1, "one clear line:\n{}", run.stderr);
    assert!(lines[0].contains("connection refused") && lines[0].contains("AWS_ENDPOINT_URL"), "{}", lines[0]);
    assert!(!run.stderr.contains("secret"), "a credential reached stderr");
    let stats = sb.last_stats();
    assert_eq!(stat(&stats, "remote_disabled"), 1, "{stats}");
    assert_eq!(stat(&stats, "put_errors"), 0, "{stats}");
}

/// A store that accepts connections and never answers (a fault proxy in front of Garage
/// that holds every response): every request is cut off by `--timeout`, the bucket is
/// switched off, and the build finishes.
#[test]
fn silent_store_is_cut_off_by_the_timeout() {
    let server = S3Server::garage();
    let proxy = Proxy::start(server.port(), ProxyConfig::default()).expect("start the fault proxy");
    proxy.set_faults(vec![FaultRule::new(Fault::StallBeforeHeaders)]);
    let sb = Sandbox::new("silent");
    let env = store_env(&sb, &server, &proxy.endpoint(), "tier");
    let prog = ["--timeout", "1s", "--max-failures", "3", server.bucket.as_str()];
    let run = sb.spawn(&["build", "./..."], &refs(&env), Prog::Ours(&prog)).wait();
    run.assert_ok();
    assert!(run.stderr.contains("bucket switched off"), "{}", run.stderr);
    assert!(run.stderr.contains("timed out"), "{}", run.stderr);
    let stats = sb.last_stats();
    assert!(stat(&stats, "remote_get_errors") >= 1, "{stats}");
    // A hang check by the program's own count: with --timeout 1s and 3 failures to the
    // switch-off, the bucket held the build up for seconds, not for each get's deadline.
    let held = Duration::from_millis(stat(&stats, "bucket_hold_ms"));
    assert!(held < Duration::from_secs(30), "the bucket held the build up {held:?}: {stats}");
}

/// A store whose uploads never finish (the fault proxy holds every PUT's answer; reads
/// reach Garage): the end of the session says what it waits for, and gives up at
/// `--close-timeout`.
#[test]
fn close_reports_and_bounds_slow_uploads() {
    let server = S3Server::garage();
    let proxy = Proxy::start(server.port(), ProxyConfig::default()).expect("start the fault proxy");
    proxy.set_faults(vec![FaultRule::new(Fault::StallBeforeHeaders).for_method("PUT")]);
    let sb = Sandbox::new("slowput");
    let env = store_env(&sb, &server, &proxy.endpoint(), "tier");
    // A slow store, not a stalled one: the stall bound is above the close bound, and
    // above any build's length on a loaded runner (at 60 s, a build of 87 s saw its first
    // PUTs time out before the close).
    let prog = [
        "--timeout",
        "600s",
        "--stall-timeout",
        "600s",
        "--close-timeout",
        "4s",
        "--workers",
        "2",
        server.bucket.as_str(),
    ];
    let run = sb.spawn(&["build", "./..."], &refs(&env), Prog::Ours(&prog)).wait();
    run.assert_ok();
    let waiting = run.stderr.lines().find(|l| l.contains("waiting for")).unwrap_or_default();
    assert!(waiting.contains("uploads") && waiting.contains("MB"), "no progress line:\n{}", run.stderr);
    assert!(run.stderr.contains("gave up on"), "{}", run.stderr);
    let stats = sb.last_stats();
    assert!(stat(&stats, "remote_not_found") + stat(&stats, "fast_misses") > 0, "{stats}");
    assert_eq!(stat(&stats, "uploads"), 0, "{stats}");
    assert_eq!(stat(&stats, "uploads_skipped"), stat(&stats, "puts"), "{stats}");
}

#[test]
fn store_killed_mid_build() {
    let mut server = S3Server::garage();
    let sb = Sandbox::new("killed");
    let env = store_env(&sb, &server, &server.endpoint, "tier");
    let env_refs = refs(&env);
    let bucket = server.bucket.clone();
    let mut child = sb.spawn(&["build", "-p", "1", "./..."], &env_refs, Prog::Ours(&["-v", &bucket]));
    // Stop the store once the first uploads have landed.
    let deadline = Instant::now() + Duration::from_secs(60);
    while server.list("").is_empty() && Instant::now() < deadline && child.is_running() {
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(child.is_running(), "the build finished before the store could be killed");
    server.stop();
    let run = child.wait();
    run.assert_ok();
    let stats = sb.last_stats();
    assert!(stat(&stats, "uploads") > 0, "{stats}");
    assert_eq!(stat(&stats, "remote_disabled"), 1, "{stats}\n{}", run.stderr);
    assert_eq!(run.stderr.lines().filter(|l| l.contains("bucket switched off")).count(), 1, "{}", run.stderr);
    // The local tier is complete: the same build again compiles nothing, store or not.
    let again = sb.spawn(&["build", "-x", "-p", "1", "./..."], &env_refs, Prog::Ours(&[&bucket])).wait();
    again.assert_ok();
    assert!(again.compile_lines().is_empty());
}

#[test]
fn refused_credentials_say_what_to_fix() {
    let server = S3Server::s3s_fs();
    let sb = Sandbox::new("badcreds");
    let mut env = store_env(&sb, &server, &server.endpoint, "tier");
    env.retain(|(k, _)| k != "AWS_SECRET_ACCESS_KEY");
    env.push(("AWS_SECRET_ACCESS_KEY".into(), common::secret("not-the-secret-at-all")));
    let env_refs = refs(&env);
    let bucket = server.bucket.clone();
    let run = sb.spawn(&["build", "./..."], &env_refs, Prog::Ours(&["-vv", &bucket])).wait();
    run.assert_ok();
    let line = run.stderr.lines().find(|l| l.contains("bucket switched off")).unwrap_or_default().to_string();
    assert!(line.contains("SignatureDoesNotMatch") && line.contains("AWS_SECRET_ACCESS_KEY"), "{}", run.stderr);
    // -vv shows both sides of the signature for debugging, never the secret.
    assert!(run.stderr.contains("our canonical request"), "{}", run.stderr);
    assert!(!run.stderr.contains("not-the-secret-at-all"), "the secret reached stderr");
    assert!(!run.stderr.contains(&server.secret_key), "the real secret reached stderr");
    assert!(server.list("").is_empty());
}

/// Two `go build`s and a `go test` at once against one local tier and one bucket, twice
/// (what parallel CI steps on one runner do): every command succeeds, the tier stays
/// consistent, and a warm run afterwards compiles nothing.
#[test]
fn concurrent_sessions_share_a_tier_and_a_bucket() {
    let server = S3Server::garage();
    let sb = Sandbox::new("concurrent");
    let env = store_env(&sb, &server, &server.endpoint, "shared");
    let env = refs(&env);
    let bucket = server.bucket.clone();
    for round in 0..2 {
        let a = format!("bin-a{round}");
        let b = format!("bin-b{round}");
        let children = [
            sb.spawn(&["build", "-o", &a, "."], &env, Prog::Ours(&[&bucket])),
            sb.spawn(&["build", "-o", &b, "."], &env, Prog::Ours(&[&bucket])),
            sb.spawn(&["test", "./..."], &env, Prog::Ours(&[&bucket])),
        ];
        for child in children {
            child.wait().assert_ok();
        }
        for bin in [&a, &b] {
            let out = std::process::Command::new(sb.module.join(bin)).output().unwrap();
            assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "hello, world", "round {round}");
        }
    }
    for entry in common::go::cache_entries(&sb.root.join("shared")) {
        let body = common::go::output_path(&sb.root.join("shared"), &entry.output_hex);
        assert_eq!(sha256_file(&body), entry.output_hex, "{}", body.display());
    }
    let warm = sb.spawn(&["build", "-x", "-o", "bin-warm", "."], &env, Prog::Ours(&[&bucket])).wait();
    warm.assert_ok();
    assert!(warm.compile_lines().is_empty(), "{:?}", warm.compile_lines());
    // And a machine with an empty tier gets it all from the bucket.
    let fresh = go_remote(&sb, &server, "fresh", &["build", "-x", "-o", "bin-fresh", "."], &[]);
    fresh.assert_ok();
    assert!(fresh.compile_lines().is_empty(), "{:?}", fresh.compile_lines());
}
