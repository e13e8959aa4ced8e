//! Faults between the binary and a real store, injected by the `faultproxy` crate
//! (tests/faultproxy): each test runs a real go build through the proxy and checks that
//! the build succeeds with correct outputs, that the stats say what happened, and that
//! the fault cost a bounded time. That cost is the program's own figure where the faulty
//! build does other work than a fault-free one (it compiles what the bucket could not
//! give): `bucket_hold_ms`, the time during which some get of go's waited on the bucket.
//! Wall time is compared only against a build doing the same work in the same run.

use crate::common;

use common::go::{cache_entries, output_path, run_cacheprog, sha256_file, stat, GoRun, Sandbox};
use common::remote::go_via;
use common::servers::S3Server;
use faultproxy::{Bomb, Fault, FaultRule, Proxy, ProxyConfig};
use gocacheprog_s3::s3::client::{Bounds, Upload};
use std::time::{Duration, Instant};

fn proxy(server: &S3Server) -> Proxy {
    Proxy::start(server.port(), ProxyConfig::default()).expect("start the fault proxy")
}

/// A build of the tiny module through `proxy` on a fresh local tier `tier`.
fn build(sb: &Sandbox, server: &S3Server, proxy: &Proxy, tier: &str, prog: &[&str]) -> GoRun {
    let out = format!("bin-{tier}");
    let run = go_via(sb, server, &proxy.endpoint(), tier, &["build", "-o", &out, "."], prog);
    run.assert_ok();
    assert_program_works(sb, &out);
    assert_tier_consistent(sb, tier);
    run
}

/// The binary go linked runs and prints what it should.
fn assert_program_works(sb: &Sandbox, bin: &str) {
    let out = std::process::Command::new(sb.module.join(bin)).output().expect("run the built program");
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "hello, world");
}

/// Every entry of the local tier points at a body that hashes to its output ID.
fn assert_tier_consistent(sb: &Sandbox, tier: &str) {
    let dir = sb.root.join(tier);
    for entry in cache_entries(&dir) {
        let body = output_path(&dir, &entry.output_hex);
        assert_eq!(sha256_file(&body), entry.output_hex, "{}", body.display());
    }
}

/// Fills the bucket under `prefix` with one fault-free build, and returns its wall time.
fn fill(sb: &Sandbox, server: &S3Server, proxy: &Proxy, prefix: &str) -> Duration {
    let run = build(sb, server, proxy, &format!("fill-{prefix}"), &["--prefix", prefix]);
    assert!(stat(&sb.last_stats(), "uploads") > 0, "{}", run.stderr);
    run.elapsed
}

/// A fault-free warm build from `prefix` on a fresh tier: what the faulty runs are measured
/// against.
fn reference(sb: &Sandbox, server: &S3Server, proxy: &Proxy, prefix: &str) -> Duration {
    build(sb, server, proxy, &format!("reference-{prefix}"), &["--prefix", prefix]).elapsed
}

/// Prints what a fault cost against the same build without it (for the record), and
/// checks it stayed within `slack` of it.
fn within(name: &str, faulty: Duration, fault_free: Duration, slack: Duration) {
    eprintln!(
        "fault cost: {name}: {:.1} s against {:.1} s without the fault (bound +{} s)",
        faulty.as_secs_f64(),
        fault_free.as_secs_f64(),
        slack.as_secs()
    );
    assert!(faulty <= fault_free + slack, "{name}: {faulty:?} against {fault_free:?} without the fault");
}

/// Prints what a fault cost the build in the program's own terms (the time some get waited
/// on the bucket), and checks it stayed within `bound`.
fn held_at_most(name: &str, stats: &serde_json::Value, bound: Duration) {
    let held = Duration::from_millis(stat(stats, "bucket_hold_ms"));
    eprintln!(
        "fault cost: {name}: the bucket held the build up {:.2} s (bound {:.1} s; {} gets, {} waited {:.2} s in all)",
        held.as_secs_f64(),
        bound.as_secs_f64(),
        stat(stats, "gets"),
        stat(stats, "gets") - stat(stats, "local_hits"),
        stat(stats, "bucket_wait_ms") as f64 / 1000.0
    );
    assert!(held <= bound, "{name}: the bucket held the build up {held:?}, more than {bound:?}: {stats}");
}

fn switched_off_lines(stderr: &str) -> usize {
    stderr.lines().filter(|l| l.contains("switched off")).count()
}

/// A store that stops answering mid-build (every GET stalls before its headers): once it
/// has answered none of the downloads in flight for half of --get-timeout, reads are
/// switched off and every waiting get gives up at once; later probes hold no get. The
/// bucket holds the build up about one stall bound in all, not --max-failures timeouts.
#[test]
fn store_that_stalls_costs_seconds_not_minutes() {
    let server = S3Server::garage();
    let proxy = proxy(&server);
    let sb = Sandbox::new("stall");
    fill(&sb, &server, &proxy, "stall");
    proxy.set_faults(vec![FaultRule::new(Fault::StallBeforeHeaders).for_method("GET")]);
    let run = build(&sb, &server, &proxy, "stalled", &["--prefix", "stall", "--get-timeout", "2s"]);
    let stats = sb.last_stats();
    // The stall bound is 1 s: a few seconds at most, whatever the build compiles after.
    held_at_most("every GET stalls (--get-timeout 2s)", &stats, Duration::from_secs(3));
    assert_eq!(stat(&stats, "remote_hits"), 0, "{stats}");
    assert_eq!(stat(&stats, "stalls"), 1, "{stats}\n{}", run.stderr);
    assert_eq!(stat(&stats, "remote_disabled"), 1, "{stats}\n{}", run.stderr);
    assert_eq!(switched_off_lines(&run.stderr), 1, "{}", run.stderr);
    assert!(run.stderr.contains("answered none of the requests in flight"), "{}", run.stderr);
}

/// A store that drips bodies at 1 byte/s never trips the per-read stall bound (nor, since
/// bytes keep coming, the stall watcher); the get deadline cuts each such download, and
/// --max-failures of them switch reads off.
#[test]
fn dripping_store_is_cut_by_the_get_deadline() {
    let server = S3Server::garage();
    let proxy = proxy(&server);
    let sb = Sandbox::new("drip");
    fill(&sb, &server, &proxy, "drip");
    proxy.set_faults(vec![FaultRule::new(Fault::DripBody { bytes_per_sec: 1 }).for_method("GET")]);
    let run =
        build(&sb, &server, &proxy, "dripped", &["--prefix", "drip", "--get-timeout", "2s", "--probe-interval", "0"]);
    let stats = sb.last_stats();
    assert_eq!(stat(&stats, "remote_disabled"), 1, "{stats}\n{}", run.stderr);
    assert!(stat(&stats, "timeouts") + stat(&stats, "get_timeouts") >= 1, "{stats}");
    // At most --max-failures (5) gets' deadlines of 2 s, with the watchdog's slack.
    held_at_most("bodies drip at 1 byte/s (--get-timeout 2s)", &stats, Duration::from_secs(11));
}

/// A GET answered with a Content-Length of 10^12 is refused before anything is written
/// (it once filled 1.9 GB of temporary files).
#[test]
fn huge_content_length_is_refused_before_writing() {
    let server = S3Server::garage();
    let proxy = proxy(&server);
    let sb = Sandbox::new("huge");
    fill(&sb, &server, &proxy, "huge");
    proxy.set_faults(vec![FaultRule::new(Fault::HugeContentLength).for_method("GET")]);
    let run = build(&sb, &server, &proxy, "huge-tier", &["--prefix", "huge", "-vv"]);
    let stats = sb.last_stats();
    // Each refusal is immediate: no get waits out a deadline.
    assert_eq!(stat(&stats, "get_timeouts"), 0, "{stats}");
    held_at_most("Content-Length 10^12 on every GET", &stats, Duration::from_secs(2));
    assert_eq!(stat(&stats, "remote_hits"), 0, "{stats}");
    assert!(run.stderr.contains("max-object-size"), "{}", run.stderr);
    // Temporary files live in gocacheprog-tmp and as .tmp-* in the <xx> folders.
    let tier = sb.root.join("huge-tier");
    let mut left = 0u64;
    for folder in std::fs::read_dir(&tier).unwrap().flatten().filter(|e| e.path().is_dir()) {
        for file in std::fs::read_dir(folder.path()).unwrap().flatten() {
            let name = file.file_name().to_string_lossy().into_owned();
            if name.starts_with(".tmp-") || folder.file_name() == "gocacheprog-tmp" {
                left += file.metadata().map_or(0, |m| m.len());
            }
        }
    }
    assert_eq!(left, 0, "temporary files left in {}", tier.display());
}

/// Bytes of the temporary files of downloads in the local tier `dir` now (puts and
/// uploads have theirs too).
fn download_temp_bytes(dir: &std::path::Path) -> u64 {
    let mut total = 0;
    for folder in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        for file in std::fs::read_dir(folder.path()).into_iter().flatten().flatten() {
            if file.file_name().to_string_lossy().starts_with(gocacheprog_s3::local::DOWNLOAD_PREFIX) {
                total += file.metadata().map_or(0, |m| m.len());
            }
        }
    }
    total
}

/// With the manifest intact (prefetch runs 64 downloads at once), every GET of an output
/// answered with an LZ4 frame a store should never send, each with the object's real
/// metadata: 64 MiB of zeros in 277 KB, a frame declaring 4 MB blocks, 8 MiB of noise
/// sent chunked (what it claims, but more than the output). Each is refused as it
/// arrives, never a hit, and the temporary files of all downloads together stay under
/// 2 x --max-object-size, by the program's own count and by the disk's.
#[test]
fn lz4_bombs_fill_no_disk() {
    let server = S3Server::garage();
    let proxy = proxy(&server);
    let sb = Sandbox::new("bombs");
    fill(&sb, &server, &proxy, "bomb");
    let bound = 2 * 4 * 1024 * 1024;
    for bomb in [Bomb::Zeros, Bomb::BigBlocks, Bomb::Flood] {
        let fault = Fault::Lz4Bomb(bomb);
        let kind = fault.kind();
        proxy.set_faults(vec![FaultRule::new(fault).for_method("GET").for_path(".lz4")]);
        let env = common::remote::store_env(&sb, &server, &proxy.endpoint(), kind);
        let out = format!("bin-{kind}");
        let prog = ["--prefix", "bomb", "--max-object-size", "4M", server.bucket.as_str()];
        let mut child =
            sb.spawn(&["build", "-o", &out, "."], &common::remote::refs(&env), common::go::Prog::Ours(&prog));
        // Sampled while go runs (the wait for go is bounded by GO_TIMEOUT).
        let mut seen = 0;
        while child.is_running() {
            seen = seen.max(download_temp_bytes(&sb.root.join(kind)));
            std::thread::sleep(Duration::from_millis(10));
        }
        let run = child.wait();
        run.assert_ok();
        assert_program_works(&sb, &out);
        assert_tier_consistent(&sb, kind);
        let stats = sb.last_stats();
        eprintln!("{kind}: {seen} bytes of downloads' temporary files seen on disk at once (bound {bound})");
        assert!(seen <= bound, "{kind}: {seen} bytes of temporary files on disk at once");
        eprintln!("{kind}: the program counts a peak of {} bytes", stat(&stats, "temp_bytes_peak"));
        assert!(proxy.stats().fault_count(kind) > 0, "{kind} not injected");
        assert!(stat(&stats, "manifest_entries") > 0, "{kind}: prefetch had nothing to fetch: {stats}");
        assert_eq!(stat(&stats, "remote_hits"), 0, "{kind}: {stats}\n{}", run.stderr);
        assert!(stat(&stats, "remote_bad_objects") + stat(&stats, "remote_get_errors") > 0, "{kind}: {stats}");
        assert!(stat(&stats, "temp_bytes_peak") <= bound, "{kind}: {stats}");
    }
}

/// A PUT answered 200 whose body never comes is not a success and does not hold the end
/// of the go command until --close-timeout.
#[test]
fn put_answered_but_never_finished_does_not_hold_close() {
    let server = S3Server::garage();
    let proxy = proxy(&server);
    let sb = Sandbox::new("putstall");
    proxy.set_faults(vec![FaultRule::new(Fault::HugeContentLength).for_method("PUT")]);
    let run = build(&sb, &server, &proxy, "t", &["--stall-timeout", "1s", "--close-timeout", "120s"]);
    let stats = sb.last_stats();
    assert_eq!(stat(&stats, "uploads"), 0, "{stats}");
    assert!(stat(&stats, "upload_errors") >= 1, "{stats}\n{}", run.stderr);
    // What the program held go's close for, by its own count: the stall bound per
    // upload in flight, far from the 120 s --close-timeout (wall time would count the
    // machine's load).
    let close = Duration::from_millis(stat(&stats, "close_wait_ms"));
    eprintln!("fault cost: a PUT that never finishes held close {:.2} s", close.as_secs_f64());
    assert!(close < Duration::from_secs(30), "close waited {close:?}: {stats}");
}

/// Answers framed as `Transfer-Encoding: chunked` without a Content-Length (some stores
/// and proxies do that) are hits, verified by their hash.
#[test]
fn chunked_answers_without_content_length_are_hits() {
    let server = S3Server::garage();
    let proxy = proxy(&server);
    let sb = Sandbox::new("chunked");
    fill(&sb, &server, &proxy, "chunked");
    let fault_free = reference(&sb, &server, &proxy, "chunked");
    proxy.set_faults(vec![FaultRule::new(Fault::Rechunk).for_method("GET")]);
    let run = build(&sb, &server, &proxy, "from-bucket", &["--prefix", "chunked"]);
    within("chunked answers without Content-Length", run.elapsed, fault_free, Duration::from_secs(10));
    let stats = sb.last_stats();
    assert!(stat(&stats, "remote_hits") > 0, "{stats}\n{}", run.stderr);
    assert_eq!(stat(&stats, "remote_get_errors") + stat(&stats, "remote_bad_objects"), 0, "{stats}\n{}", run.stderr);
    assert!(proxy.stats().fault_count("rechunk") > 0);
}

/// A store that echoes the request's Authorization header and session token in its
/// error message: nothing secret reaches stderr, at the highest verbosity.
#[test]
fn echoed_credentials_never_reach_stderr() {
    let server = S3Server::garage();
    let proxy = proxy(&server);
    let sb = Sandbox::new("echo");
    proxy.set_faults(vec![FaultRule::new(Fault::EchoAuthorization)]);
    let token = common::secret("FQoGZXIvYXdzEJr-test-session-token-value");
    let token = token.as_str();
    let mut env = common::remote::store_env(&sb, &server, &proxy.endpoint(), "t");
    env.push(("AWS_SESSION_TOKEN".into(), token.into()));
    let bucket = server.bucket.clone();
    let run =
        sb.spawn(&["build", "./..."], &common::remote::refs(&env), common::go::Prog::Ours(&["-vvv", &bucket])).wait();
    run.assert_ok();
    assert!(proxy.stats().fault_count("echo_authorization") > 0);
    assert!(run.stderr.contains("bad request: Authorization"), "the echo was not logged at all:\n{}", run.stderr);
    for secret in [token, server.secret_key.as_str()] {
        assert!(!run.stderr.contains(secret), "a secret reached stderr:\n{}", run.stderr);
    }
    for line in run.stderr.lines().filter(|l| l.contains("Signature=")) {
        assert!(line.contains("Signature=<redacted>"), "{line}");
    }
}

/// A mistyped bucket under --read-only (a 404 NoSuchBucket, not NoSuchKey) is reported
/// once and switches the bucket off; it is never a silent miss.
#[test]
fn mistyped_bucket_is_reported_even_when_read_only() {
    let server = S3Server::garage();
    let sb = Sandbox::new("typo");
    let env = common::remote::store_env(&sb, &server, &server.endpoint, "t");
    let run = sb
        .spawn(&["build", "./..."], &common::remote::refs(&env), common::go::Prog::Ours(&["--read-only", "cahce"]))
        .wait();
    run.assert_ok();
    assert_eq!(switched_off_lines(&run.stderr), 1, "{}", run.stderr);
    assert!(run.stderr.contains("NoSuchBucket") && run.stderr.contains("--bucket"), "{}", run.stderr);
    let stats = sb.last_stats();
    assert_eq!(stat(&stats, "remote_disabled"), 1, "{stats}");
    assert_eq!(stat(&stats, "remote_not_found"), 0, "{stats}");
}

/// 503 on every GET and none on PUTs: successful uploads no longer hide the failing
/// reads, which are switched off on their own while uploads go on.
#[test]
fn failing_reads_trip_their_own_breaker() {
    let server = S3Server::garage();
    let proxy = proxy(&server);
    let sb = Sandbox::new("readfail");
    proxy.set_faults(vec![FaultRule::new(Fault::slow_down()).for_method("GET")]);
    let run = build(&sb, &server, &proxy, "t", &["--prefix", "rf"]);
    let stats = sb.last_stats();
    assert_eq!(stat(&stats, "remote_disabled"), 1, "{stats}\n{}", run.stderr);
    assert!(run.stderr.contains("reading from the bucket switched off"), "{}", run.stderr);
    assert_eq!(stat(&stats, "uploads"), stat(&stats, "puts"), "{stats}");
    // Bounded: --max-failures failed gets (and those in flight meanwhile), 3 attempts
    // each, plus the 16 listing lanes and the manifest, 3 attempts each: not one per action.
    let refused = proxy.stats().fault_count("error_status");
    assert!(refused <= (16 + 1 + 5 + 3) * 3, "{refused} GETs answered 503 for {stats}");
    assert!(refused < stat(&stats, "gets"), "{refused} GETs answered 503 for {stats}");
}

/// Moves every output object's body and metadata to the next output key under `prefix`,
/// without `actionid` when `strip_actionid`: each key then holds another action's
/// consistent (body, outputid) pair. Returns the keys.
fn rotate_outputs(server: &S3Server, prefix: &str, strip_actionid: bool) -> Vec<String> {
    let client = server.client();
    let layout = gocacheprog_s3::remote::layout::Layout::new(prefix);
    let keys: Vec<String> = server
        .list(&format!("{prefix}/"))
        .iter()
        .map(|o| o["key"].as_str().unwrap().to_string())
        .filter(|k| layout.parse_key(k).is_some())
        .collect();
    assert!(keys.len() > 3, "{keys:?}");
    let mut bodies = Vec::new();
    for key in &keys {
        let mut body = Vec::new();
        let info = client.get_object(key, &mut body, Bounds::DEFAULT).unwrap().unwrap();
        let mut meta = info.metadata;
        if strip_actionid {
            meta.retain(|(k, _)| k != "actionid");
        }
        bodies.push((body, meta));
    }
    for (i, key) in keys.iter().enumerate() {
        let (body, meta) = &bodies[(i + 1) % keys.len()];
        let sha = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(body));
        let meta: Vec<(&str, &str)> = meta.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        // Retried as the cache retries (Garage's sqlite answers 503 "database is locked" under load).
        client.put_object(key, Upload::Bytes(body), &sha, &meta, Bounds::DEFAULT).unwrap();
    }
    keys
}

/// An object holding another action's consistent (body, outputid) pair is refused by its
/// actionid metadata: go would otherwise panic on it.
#[test]
fn another_actions_object_is_refused() {
    let server = S3Server::garage();
    let proxy = proxy(&server);
    let sb = Sandbox::new("swap");
    fill(&sb, &server, &proxy, "swap");
    rotate_outputs(&server, "swap", false);
    let run = build(&sb, &server, &proxy, "after-swap", &["--prefix", "swap", "-v"]);
    let stats = sb.last_stats();
    assert_eq!(stat(&stats, "remote_hits"), 0, "{stats}\n{}", run.stderr);
    assert!(stat(&stats, "remote_bad_objects") > 0, "{stats}");
    assert!(run.stderr.contains("another action's"), "{}", run.stderr);
}

/// The same swap with `actionid` removed: a `.lz4` object without it is foreign (this
/// program always names the action on its `.lz4` objects). It is refused before its body
/// is read, never served, and never refreshed: a refresh used to write the requesting
/// action's name onto it, laundering the misplaced object for every later reader.
#[test]
fn a_foreign_lz4_object_is_never_served_nor_refreshed() {
    let server = S3Server::garage();
    let proxy = proxy(&server);
    let sb = Sandbox::new("foreign");
    fill(&sb, &server, &proxy, "foreign");
    // What each action really produces, from the build that filled the bucket.
    let truth: std::collections::HashMap<String, String> =
        cache_entries(&sb.root.join("fill-foreign")).into_iter().map(|e| (e.action_hex, e.output_hex)).collect();
    let keys = rotate_outputs(&server, "foreign", true);
    assert!(keys.iter().all(|k| k.ends_with(".lz4")), "{keys:?}");
    // Dated past --refresh-after 1s: a hit would refresh every one of them.
    std::thread::sleep(Duration::from_millis(2100));
    let run = build(&sb, &server, &proxy, "after", &["--prefix", "foreign", "--refresh-after", "1s", "-vv"]);
    let stats = sb.last_stats();
    assert_eq!(stat(&stats, "remote_hits"), 0, "{stats}\n{}", run.stderr);
    assert!(stat(&stats, "remote_bad_objects") > 0, "{stats}");
    assert_eq!(stat(&stats, "refreshes") + stat(&stats, "refresh_errors"), 0, "{stats}\n{}", run.stderr);
    assert!(run.stderr.contains("without x-amz-meta-actionid"), "{}", run.stderr);
    // Every object that names an action now (this build's uploads) holds that action's own
    // output; the rest are still the foreign objects, unrefreshed.
    let client = server.client();
    let layout = gocacheprog_s3::remote::layout::Layout::new("foreign");
    let mut named = 0;
    for key in &keys {
        let info = client.head_object(key, Bounds::DEFAULT).unwrap().expect("still there");
        let (action, _) = layout.parse_key(key).unwrap();
        assert!(info.meta("refreshed").is_none(), "{key} was refreshed: {:?}", info.metadata);
        if let Some(named_action) = info.meta("actionid") {
            named += 1;
            assert_eq!(named_action, action.hex(), "{key}");
            let expected = truth.get(&action.hex()).expect("an action of the filling build");
            assert_eq!(info.meta("outputid"), Some(expected.as_str()), "{key} names its action over another's output");
        }
    }
    assert!(named > 0, "the build uploaded nothing over the foreign objects");
}

/// A close that arrives while gets still wait for the bucket is answered after them.
#[test]
fn close_is_answered_after_every_get() {
    let server = S3Server::garage();
    let proxy =
        Proxy::start(server.port(), ProxyConfig { delay: Duration::from_millis(700), ..ProxyConfig::default() })
            .expect("proxy");
    let dir = common::go::scratch_dir("close-after-gets");
    let mut env = server.env();
    env.retain(|(k, _)| k != "AWS_ENDPOINT_URL_S3");
    env.push(("AWS_ENDPOINT_URL_S3".into(), proxy.endpoint()));
    env.push(("AWS_EC2_METADATA_DISABLED".into(), "true".into()));
    let action = |n: u8| common::go::b64(&[n; 32]);
    let input = format!(
        "{{\"ID\":1,\"Command\":\"get\",\"ActionID\":\"{}\"}}\n\n{{\"ID\":2,\"Command\":\"get\",\"ActionID\":\"{}\"}}\n\n\
         {{\"ID\":3,\"Command\":\"close\"}}\n\n",
        action(1),
        action(2)
    );
    let cache = dir.join("cache").to_string_lossy().into_owned();
    let args = ["--cache-dir", &cache, &server.bucket];
    let run = run_cacheprog(&args, &common::remote::refs(&env), input.into_bytes(), Duration::from_secs(60));
    assert!(run.status.success(), "{}", run.stderr);
    let ids: Vec<i64> = run.responses().iter().map(|r| r["ID"].as_i64().unwrap()).collect();
    assert_eq!(ids.len(), 3, "{ids:?}\n{}", run.stdout);
    assert_eq!(ids[2], 3, "close answered before the gets: {ids:?}");
    assert!(run.responses()[..2].iter().all(|r| r["Miss"] == true), "{}", run.stdout);
    let _ = std::fs::remove_dir_all(dir);
}

/// A warm build from a bucket that `fill` filled under `prefix`, through `proxy`, on a
/// fresh local tier: the build must succeed with correct outputs whatever the proxy does.
fn warm_through(sb: &Sandbox, server: &S3Server, proxy: &Proxy, tier: &str, prefix: &str, extra: &[&str]) -> GoRun {
    let mut prog = vec!["--prefix", prefix];
    prog.extend_from_slice(extra);
    build(sb, server, proxy, tier, &prog)
}

/// 30% of every request fails with 503 SlowDown: retried, the build succeeds, the bucket
/// is filled, and a second machine's build then comes from it.
#[test]
fn thirty_percent_slow_down_is_retried() {
    let server = S3Server::garage();
    let proxy = proxy(&server);
    let sb = Sandbox::new("slowdown");
    let fault_free = build(&sb, &server, &proxy, "cold-reference", &["--prefix", "sd-reference"]).elapsed;
    proxy.set_faults(vec![FaultRule::new(Fault::slow_down()).with_fraction(0.3)]);
    let run = build(&sb, &server, &proxy, "cold", &["--prefix", "sd"]);
    within("503 SlowDown on 30% of requests (cold build)", run.elapsed, fault_free, Duration::from_secs(30));
    let stats = sb.last_stats();
    assert!(stat(&stats, "retries") > 0, "{stats}");
    assert_eq!(stat(&stats, "remote_disabled"), 0, "{stats}\n{}", run.stderr);
    // Three attempts at 30% each: an upload fails for good about once in 37.
    assert!(stat(&stats, "uploads") * 10 >= stat(&stats, "puts") * 9, "{stats}");
    proxy.clear_faults();
    let warm = warm_through(&sb, &server, &proxy, "warm", "sd", &[]);
    let warm_stats = sb.last_stats();
    assert!(stat(&warm_stats, "remote_hits") * 10 >= stat(&warm_stats, "gets") * 8, "{warm_stats}\n{}", warm.stderr);
}

/// Resets, truncated bodies and corrupted bodies on a third of the GETs each: retried or
/// missed, never a wrong hit (the built program works and the local tier verifies).
#[test]
fn broken_answers_are_never_hits() {
    let server = S3Server::garage();
    let proxy = proxy(&server);
    let sb = Sandbox::new("broken");
    fill(&sb, &server, &proxy, "broken");
    reference(&sb, &server, &proxy, "broken");
    let fault_free_hold = Duration::from_millis(stat(&sb.last_stats(), "bucket_hold_ms"));
    proxy.set_faults(vec![
        FaultRule::new(Fault::Reset).for_method("GET").with_fraction(0.25),
        FaultRule::new(Fault::TruncateBody { keep_fraction: 0.5 }).for_method("GET").with_fraction(0.25),
        FaultRule::new(Fault::CorruptBody).for_method("GET").with_fraction(0.25),
    ]);
    let run = warm_through(&sb, &server, &proxy, "warm", "broken", &["--max-failures", "1000"]);
    let stats = sb.last_stats();
    // Every broken answer fails at once (and is retried or missed): no get waits out its
    // deadline, and the waiting stays that of the fault-free build's gets, retried.
    assert_eq!(stat(&stats, "get_timeouts") + stat(&stats, "timeouts"), 0, "{stats}");
    let bound = fault_free_hold * 3 + Duration::from_secs(3);
    held_at_most("resets, truncated and corrupted bodies on 3 GETs in 4", &stats, bound);
    let faults = proxy.stats();
    assert!(faults.fault_count("reset") + faults.fault_count("truncate_body") + faults.fault_count("corrupt_body") > 0);
    assert!(stat(&stats, "remote_hits") > 0, "{stats}\n{}", run.stderr);
    assert!(stat(&stats, "retries") + stat(&stats, "remote_bad_objects") > 0, "{stats}");
}

/// Answers no store should give: endless headers, a gzip body, a redirect to another
/// port, an XML entity bomb. Each is bounded in time and memory and never a hit.
#[test]
fn hostile_answers_are_bounded_and_never_hits() {
    let server = S3Server::garage();
    let proxy = proxy(&server);
    let sb = Sandbox::new("hostile");
    fill(&sb, &server, &proxy, "hostile");
    let fault_free = reference(&sb, &server, &proxy, "hostile");
    let elsewhere = format!("http://127.0.0.1:{}/cache/x", common::servers::free_port());
    for (n, fault) in [Fault::EndlessHeaders, Fault::Gzip, Fault::Redirect { location: elsewhere }, Fault::XmlBomb]
        .into_iter()
        .enumerate()
    {
        let kind = fault.kind();
        proxy.set_faults(vec![FaultRule::new(fault).for_method("GET")]);
        let run = warm_through(&sb, &server, &proxy, &format!("t{n}"), "hostile", &["--get-timeout", "2s"]);
        let stats = sb.last_stats();
        if kind == "gzip" {
            // The same work as the fault-free build: every get a hit.
            within(&format!("{kind} on every GET"), run.elapsed, fault_free, Duration::from_secs(30));
        } else {
            // Each answer fails at once, and --max-failures of them switch reads off.
            assert_eq!(stat(&stats, "get_timeouts"), 0, "{kind}: {stats}");
            held_at_most(&format!("{kind} on every GET"), &stats, Duration::from_secs(3));
        }
        // A gzip-encoded answer still carries the real bytes: only its hash can tell.
        if kind != "gzip" {
            assert_eq!(stat(&stats, "remote_hits"), 0, "{kind}: {stats}\n{}", run.stderr);
        }
        assert!(proxy.stats().fault_count(kind) > 0, "{kind} not injected");
    }
}

/// The store goes away in the middle of a session and comes back: the bucket is switched
/// off, probed, and used again.
#[test]
fn a_store_that_comes_back_is_used_again() {
    let server = S3Server::garage();
    let proxy = proxy(&server);
    let sb = Sandbox::new("comeback");
    fill(&sb, &server, &proxy, "back");
    let entries = cache_entries(&sb.root.join("fill-back"));
    assert!(entries.len() > 20, "{} entries", entries.len());
    // Drive the binary directly, so the session spans the outage.
    let dir = common::go::scratch_dir("comeback");
    let stats_file = dir.join("stats.json");
    let mut env = server.env();
    env.retain(|(k, _)| k != "AWS_ENDPOINT_URL_S3");
    env.push(("AWS_ENDPOINT_URL_S3".into(), proxy.endpoint()));
    env.push(("AWS_EC2_METADATA_DISABLED".into(), "true".into()));
    let cache = dir.join("cache");
    let args = ["--prefix", "back", "--probe-interval", "1s", "--max-failures", "2", "--no-prefetch", "-v"];
    let mut session =
        common::go::Session::start(&args, &[server.bucket.as_str()], &cache, &stats_file, &common::remote::refs(&env));
    let get = |s: &mut common::go::Session, id: i64, n: usize| {
        let action = hex::decode(&entries[n].action_hex).unwrap();
        s.request(&format!("{{\"ID\":{id},\"Command\":\"get\",\"ActionID\":\"{}\"}}\n\n", common::go::b64(&action)))
    };
    assert!(get(&mut session, 1, 0).contains("DiskPath"), "a hit before the outage");
    proxy.set_down(true);
    for i in 0..4 {
        assert!(get(&mut session, 2 + i, 1 + i as usize).contains("\"Miss\":true"));
    }
    proxy.set_down(false);
    // Probes go out every second (doubling while they fail): within a few seconds the
    // bucket answers again.
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut id = 10;
    let mut back = false;
    while Instant::now() < deadline && !back {
        back = get(&mut session, id, 5 + id as usize % 10).contains("DiskPath");
        id += 1;
        std::thread::sleep(Duration::from_millis(300));
    }
    let stderr = session.finish();
    assert!(back, "the bucket was not used again:\n{stderr}");
    assert!(stderr.contains("switched off") && stderr.contains("switched back on"), "{stderr}");
    let stats = common::go::read_stats(&stats_file);
    assert_eq!(stat(&stats, "remote_disabled"), 1, "{stats}");
    assert!(stat(&stats, "remote_hits") >= 2, "{stats}");
    let _ = std::fs::remove_dir_all(dir);
}

/// This machine's clock 20 minutes off (libfaketime on the cache program only): the first
/// refused request teaches the client the store's time, it is signed again once, and the
/// rest of the session goes normally. s3s-fs refuses skews over 15 minutes.
#[test]
fn a_clock_twenty_minutes_off_is_corrected_once() {
    let Some(faketime) = common::servers::which("faketime") else {
        panic!("faketime is missing: run scripts/install-test-deps.sh");
    };
    let server = S3Server::s3s_fs();
    let sb = Sandbox::new("skew");
    // The same cold build with a true clock, under its own prefix: what the skew costs.
    let fault_free =
        go_via(&sb, &server, &server.endpoint, "ref", &["build", "-o", "bin-ref", "."], &["--prefix", "ref"]);
    fault_free.assert_ok();
    let env = common::remote::store_env(&sb, &server, &server.endpoint, "t");
    let mut env = env;
    env.push(("FAKETIME_DONT_FAKE_MONOTONIC".into(), "1".into()));
    let stats = sb.root.join("skew-stats.json");
    let prog = format!(
        "{} -f -20m {} --stats-file {} -vv {}",
        faketime.display(),
        common::go::bin().display(),
        stats.display(),
        server.bucket
    );
    let run =
        sb.spawn(&["build", "-o", "bin-skew", "."], &common::remote::refs(&env), common::go::Prog::Raw(prog)).wait();
    run.assert_ok();
    assert_program_works(&sb, "bin-skew");
    within("clock 20 minutes off (cold build)", run.elapsed, fault_free.elapsed, Duration::from_secs(30));
    let stats = common::go::read_stats(&stats);
    assert_eq!(stat(&stats, "remote_disabled"), 0, "{stats}\n{}", run.stderr);
    assert_eq!(stat(&stats, "uploads"), stat(&stats, "puts"), "{stats}\n{}", run.stderr);
    let learned = run.stderr.lines().filter(|l| l.contains("signing with the store's time")).count();
    assert!(
        (1..=3).contains(&learned),
        "the offset is learned once (or by the few requests in flight):\n{}",
        run.stderr
    );
}

/// The cache program killed (SIGKILL) in the middle of uploading: the next session sees a
/// consistent local tier and bucket, and nothing partial is ever a hit.
#[test]
fn killed_mid_upload_leaves_nothing_partial() {
    let server = S3Server::garage();
    // Slow uploads (and only uploads) so the kill lands while they are in flight.
    let proxy =
        Proxy::start(server.port(), ProxyConfig { bandwidth: Some(200_000), ..ProxyConfig::default() }).unwrap();
    let sb = Sandbox::new("killed-upload");
    let env = common::remote::store_env(&sb, &server, &proxy.endpoint(), "t1");
    let bucket = server.bucket.clone();
    let mut child =
        sb.spawn(&["build", "./..."], &common::remote::refs(&env), common::go::Prog::Ours(&["--prefix", "k", &bucket]));
    let deadline = Instant::now() + Duration::from_secs(60);
    while proxy.stats().bytes_to_upstream < 500_000 && Instant::now() < deadline && child.is_running() {
        std::thread::sleep(Duration::from_millis(50));
    }
    // Only this test's cache program: its --stats-file is inside this sandbox.
    let killed = common::go::processes_mentioning(&sb.root.to_string_lossy());
    let killed: Vec<_> = killed.into_iter().filter(|(_, cmd)| cmd.contains("gocacheprog-s3")).collect();
    for (pid, _) in &killed {
        let _ = std::process::Command::new("kill").args(["-KILL", &pid.to_string()]).status();
    }
    let _ = child.wait();
    assert!(!killed.is_empty(), "no cache program to kill");
    // Whatever reached the bucket verifies, and a fresh machine's build is correct.
    drop(proxy);
    let run = go_via(&sb, &server, &server.endpoint, "t2", &["build", "-o", "bin-after", "."], &["--prefix", "k"]);
    run.assert_ok();
    assert_program_works(&sb, "bin-after");
    assert_tier_consistent(&sb, "t1");
    assert_tier_consistent(&sb, "t2");
}

/// A 3-node Garage cluster (replication factor 3) loses a node in the middle of a build:
/// the build and every upload still succeed, and a fresh machine's build then comes from
/// the two nodes left.
#[test]
fn a_store_cluster_losing_a_node_keeps_serving() {
    let mut cluster = common::servers::GarageCluster::start();
    let sb = Sandbox::new("cluster");
    // The same cold build with all three nodes, under its own prefix: what the loss costs.
    let build = ["build", "-p", "1", "-o", "bin-ref", "."];
    let fault_free = go_via(&sb, cluster.s3(), &cluster.s3().endpoint, "ref", &build, &["--prefix", "ref"]);
    fault_free.assert_ok();
    let env = common::remote::store_env(&sb, cluster.s3(), &cluster.s3().endpoint, "cold");
    let bucket = cluster.s3().bucket.clone();
    let prog = ["--prefix", "cl", bucket.as_str()];
    let mut child = sb.spawn(
        &["build", "-p", "1", "-o", "bin-cold", "."],
        &common::remote::refs(&env),
        common::go::Prog::Ours(&prog),
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    while cluster.s3().list("cl/").is_empty() && Instant::now() < deadline && child.is_running() {
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(child.is_running(), "the build ended before a node could be stopped");
    cluster.stop(2);
    let run = child.wait();
    run.assert_ok();
    assert_program_works(&sb, "bin-cold");
    within(
        "one of 3 Garage nodes stopped mid-build (cold build)",
        run.elapsed,
        fault_free.elapsed,
        Duration::from_secs(30),
    );
    let stats = sb.last_stats();
    assert_eq!(stat(&stats, "upload_errors") + stat(&stats, "uploads_skipped"), 0, "{stats}\n{}", run.stderr);
    assert_eq!(stat(&stats, "uploads"), stat(&stats, "puts"), "{stats}");
    let warm = go_via(
        &sb,
        cluster.s3(),
        &cluster.s3().endpoint,
        "warm",
        &["build", "-x", "-o", "bin-warm", "."],
        &["--prefix", "cl"],
    );
    warm.assert_ok();
    assert!(warm.compile_lines().is_empty(), "{:?}", warm.compile_lines());
    assert_program_works(&sb, "bin-warm");
}

/// go interrupted in the middle of a build: SIGINT to go alone (the cache program sees
/// its input end and finishes), then SIGKILL to go and the cache program together. Each
/// time the local tier stays consistent, nothing is left running, and the next build of
/// that tier succeeds with a working program.
#[test]
fn go_interrupted_mid_build_leaves_everything_consistent() {
    let server = S3Server::garage();
    let sb = Sandbox::new("go-killed");
    let bucket = server.bucket.clone();
    for (signal, group) in [("-INT", false), ("-KILL", true)] {
        let tier = format!("t{signal}");
        let env = common::remote::store_env(&sb, &server, &server.endpoint, &tier);
        let prog = ["--prefix", "gk", bucket.as_str()];
        let mut child =
            sb.spawn(&["build", "-p", "1", "./..."], &common::remote::refs(&env), common::go::Prog::Ours(&prog));
        let deadline = Instant::now() + Duration::from_secs(60);
        while child.is_running() && Instant::now() < deadline {
            let stored = std::fs::read_dir(sb.root.join(&tier)).map_or(0, |d| d.count());
            if stored > 20 {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        assert!(child.is_running(), "{signal}: the build ended before it could be interrupted");
        child.signal(signal, group);
        let _ = child.wait();
        let left = common::go::wait_until_gone(&sb.root.join("stats-").to_string_lossy(), Duration::from_secs(70));
        assert!(left.is_empty(), "{signal}: still running: {left:?}");
        assert_tier_consistent(&sb, &tier);
        let out = format!("bin{signal}");
        let run = go_via(&sb, &server, &server.endpoint, &tier, &["build", "-o", &out, "."], &["--prefix", "gk"]);
        run.assert_ok();
        assert_program_works(&sb, &out);
        assert_tier_consistent(&sb, &tier);
    }
}

/// Answers that are not valid HTTP (a `Content-Length` that is not a number, two that
/// disagree) will not improve on retry and say nothing of the store's reachability: they
/// are not retried, they switch off reads only (uploads go on), and the line that says
/// so names what the store sent.
#[test]
fn a_malformed_answer_is_not_retried_and_is_named() {
    let server = S3Server::garage();
    let proxy = proxy(&server);
    let sb = Sandbox::new("malformed");
    for fault in [Fault::BadContentLength, Fault::ConflictingContentLength] {
        let kind = fault.kind();
        proxy.set_faults(vec![FaultRule::new(fault).for_method("GET")]);
        let run = build(&sb, &server, &proxy, kind, &["--prefix", kind]);
        let stats = sb.last_stats();
        assert!(proxy.stats().fault_count(kind) > 0, "{kind} not injected");
        assert_eq!(stat(&stats, "retries"), 0, "{kind}: {stats}\n{}", run.stderr);
        assert_eq!(stat(&stats, "remote_disabled"), 1, "{kind}: {stats}\n{}", run.stderr);
        assert!(stat(&stats, "puts") > 0 && stat(&stats, "uploads") == stat(&stats, "puts"), "{kind}: {stats}");
        let line = run.stderr.lines().find(|l| l.contains("switched off")).unwrap_or_default();
        assert!(line.contains("reading from the bucket switched off"), "{kind}: {}", run.stderr);
        assert!(line.contains("not valid HTTP") && line.contains("content-length"), "{kind}: {line}");
        assert!(!line.contains("is reachable"), "{kind}: {line}");
    }
}

/// A store that takes a PUT's headers and then never reads its body: those uploads time
/// out and switch uploads off, while reads, which it answers, stay on.
#[test]
fn uploads_that_stall_leave_reads_on() {
    let server = S3Server::garage();
    let proxy = proxy(&server);
    let sb = Sandbox::new("writestall");
    fill(&sb, &server, &proxy, "ws");
    let entries = cache_entries(&sb.root.join("fill-ws"));
    assert!(entries.len() > 5, "{} entries", entries.len());
    proxy.set_faults(vec![FaultRule::new(Fault::NoReadBody).for_method("PUT")]);
    let dir = common::go::scratch_dir("writestall");
    let stats_file = dir.join("stats.json");
    let mut env = server.env();
    env.retain(|(k, _)| k != "AWS_ENDPOINT_URL_S3");
    env.push(("AWS_ENDPOINT_URL_S3".into(), proxy.endpoint()));
    let args = ["--prefix", "ws", "--stall-timeout", "1s", "--max-failures", "2", "--no-prefetch"];
    let mut session = common::go::Session::start(
        &args,
        &[server.bucket.as_str()],
        &dir.join("cache"),
        &stats_file,
        &common::remote::refs(&env),
    );
    for id in 1..=3u8 {
        let body = common::go::random_bytes(100_000, u64::from(id));
        let (action, output) = (common::go::b64(&[id; 32]), common::go::b64(&common::go::sha256(&body)));
        let put = format!(
            "{{\"ID\":{id},\"Command\":\"put\",\"ActionID\":\"{action}\",\"OutputID\":\"{output}\",\"BodySize\":{}}}\n\n\
             \"{}\"\n",
            body.len(),
            common::go::b64(&body)
        );
        assert!(session.request(&put).contains("DiskPath"));
    }
    session.wait_for_stderr("uploading to the bucket switched off", Duration::from_secs(30));
    for (n, entry) in entries.iter().take(5).enumerate() {
        let action = common::go::b64(&hex::decode(&entry.action_hex).unwrap());
        let got = session.request(&format!("{{\"ID\":{},\"Command\":\"get\",\"ActionID\":\"{action}\"}}\n\n", 10 + n));
        assert!(got.contains("DiskPath"), "a read after uploads stalled: {got}\n{}", session.stderr());
    }
    let stderr = session.finish();
    let stats = common::go::read_stats(&stats_file);
    assert!(proxy.stats().fault_count("no_read_body") >= 2);
    assert_eq!(stat(&stats, "remote_hits"), 5, "{stats}\n{stderr}");
    assert_eq!(stat(&stats, "remote_disabled"), 1, "{stats}\n{stderr}");
    assert!(stat(&stats, "upload_errors") >= 2, "{stats}");
    assert_eq!(switched_off_lines(&stderr), 1, "{stderr}");
    let _ = std::fs::remove_dir_all(dir);
}

/// A listing that lags behind the bucket (empty here; eventually consistent listings do
/// lag) while prefetch fetches the working set anyway: gets answered by prefetch count as
/// prefetch hits, not as local hits with the prefetched bytes as waste, and the session's
/// use reaches the manifest.
#[test]
fn prefetched_outputs_a_stale_listing_lacks_count_as_prefetched() {
    let server = S3Server::garage();
    let proxy = proxy(&server);
    let sb = Sandbox::new("stale-listing");
    fill(&sb, &server, &proxy, "sl");
    proxy.set_faults(vec![FaultRule::new(Fault::EmptyListing).for_path("list-type=2")]);
    let run = build(&sb, &server, &proxy, "warm", &["--prefix", "sl"]);
    let stats = sb.last_stats();
    assert!(proxy.stats().fault_count("empty_listing") > 0);
    assert!(stat(&stats, "prefetch_hits") > 0, "{stats}\n{}", run.stderr);
    // Nothing was local before this build: what it found local, it put itself.
    assert!(stat(&stats, "local_hits") <= stat(&stats, "puts"), "{stats}\n{}", run.stderr);
    assert!(stat(&stats, "prefetch_wasted_bytes") * 2 <= stat(&stats, "bytes_downloaded"), "{stats}");
}
