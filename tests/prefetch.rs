//! Prefetch of the working set and fast misses, end to end against a real store (Garage):
//! a second machine's build gets its objects by prefetch, gets that race a prefetch are
//! answered once, a bogus manifest costs nothing but bandwidth, `--no-prefetch` and
//! `--read-only` behave as documented, and misses are answered without a round trip.

use crate::common;

use common::go::{b64, cache_entries, read_stats, scratch_dir, sha256, stat, GoRun, Sandbox, Session};
use common::remote::{go_remote, go_via, refs};
use common::servers::S3Server;
use faultproxy::{Proxy, ProxyConfig};
use gocacheprog_s3::id::Id;
use gocacheprog_s3::remote::layout::{Form, Layout};
use gocacheprog_s3::remote::manifest::{key_name, Manifest, ManifestEntry};
use gocacheprog_s3::s3::client::{Bounds, Client, Upload};
use std::collections::HashMap;
use std::io::Write;
use std::process::Command;
use std::time::Duration;

const BUILD: &[&str] = &["build", "-x", "./..."];

fn client(server: &S3Server) -> Client {
    server.client()
}

/// What the bucket holds under `prefix`: object key → size, by our own listing.
fn object_sizes(server: &S3Server, prefix: &str) -> HashMap<String, u64> {
    let c = client(server);
    let mut sizes = HashMap::new();
    let mut token: Option<String> = None;
    for _ in 0..1000 {
        let page = c.list_objects(&format!("{prefix}/"), token.as_deref(), None, Bounds::DEFAULT).unwrap();
        sizes.extend(page.objects.into_iter().map(|o| (o.key, o.size)));
        token = page.next_token;
        if token.is_none() {
            return sizes;
        }
    }
    panic!("listing of {prefix} did not end");
}

/// Bytes the bucket held, before a session, for the outputs that session's local tier
/// `tier` now holds, in whichever form each is stored; what the bucket did not have then
/// (outputs the session put itself) counts for nothing.
fn bytes_for_tier(sb: &Sandbox, before: &HashMap<String, u64>, prefix: &str, tier: &str) -> u64 {
    cache_entries(&sb.root.join(tier))
        .iter()
        .filter_map(|e| {
            let key = format!("{prefix}/{}", e.action_hex);
            before.get(&format!("{key}.lz4")).or_else(|| before.get(&key)).copied()
        })
        .sum()
}

/// Nothing came down twice: the session downloaded each output its tier holds at most
/// once. go puts the odd output again after a hit (the same bytes: it is uploaded again);
/// when that put lands before the prefetch of it, the download is skipped, so the bytes
/// downloaded may fall short of the tier by what was uploaded, never more.
fn assert_nothing_twice(stats: &serde_json::Value, fill: &serde_json::Value, tier_bytes: u64) {
    let (down, up) = (stat(stats, "bytes_downloaded"), stat(stats, "bytes_uploaded"));
    assert!(down <= tier_bytes, "something was downloaded twice ({down} > {tier_bytes} B): {stats}\nfill: {fill}");
    assert!(down + up >= tier_bytes, "outputs in the tier that came from nowhere: {stats}\nfill: {fill}");
}

fn manifests(server: &S3Server, prefix: &str) -> Vec<String> {
    server.list(&format!("{prefix}/manifests/")).iter().map(|o| o["key"].as_str().unwrap().to_string()).collect()
}

/// A build on an empty local tier compiled nothing and got its outputs from the bucket.
/// A local hit can only be of an output go put itself this session (it puts the odd one
/// again and may ask for it after that put), never of anything else.
fn assert_all_from_bucket(run: &GoRun, stats: &serde_json::Value) {
    run.assert_ok();
    assert!(run.compile_lines().is_empty(), "compiled after a bucket fill:\n{:?}", run.compile_lines());
    assert!(stat(stats, "local_hits") <= stat(stats, "puts"), "local hits on an empty tier: {stats}");
    assert!(stat(stats, "remote_hits") > 0, "{stats}");
}

#[test]
fn a_second_machine_gets_its_working_set_by_prefetch() {
    let server = S3Server::garage();
    let sb = Sandbox::new("prefetch");
    let fill = go_remote(&sb, &server, "machine-1", BUILD, &[]);
    fill.assert_ok();
    let first = sb.last_stats();
    assert_eq!(stat(&first, "manifest_entries"), 0, "no manifest yet: {first}");
    let written = manifests(&server, "go-cache");
    assert_eq!(written.len(), 1, "one manifest for the build: {written:?}");
    assert!(written[0].starts_with("go-cache/manifests/v1/example.com/tiny/go1."), "{written:?}");

    let before = object_sizes(&server, "go-cache");
    let second = go_remote(&sb, &server, "machine-2", BUILD, &[]);
    let stats = sb.last_stats();
    assert_all_from_bucket(&second, &stats);
    assert!(stat(&stats, "manifest_entries") > 0, "{stats}");
    assert!(stat(&stats, "prefetched") > 0, "{stats}");
    // Nearly every get that came from the bucket came through prefetch (joined, or already
    // local); only the first few can beat the manifest's own round trip.
    assert!(stat(&stats, "prefetch_hits") * 10 >= stat(&stats, "remote_hits") * 9, "{stats}");
    // What came down is what the local tier now holds: nothing twice.
    assert_nothing_twice(&stats, &first, bytes_for_tier(&sb, &before, "go-cache", "machine-2"));

    // --no-prefetch: the same build asks the bucket get by get, and records nothing.
    let plain = go_remote(&sb, &server, "machine-3", BUILD, &["--no-prefetch"]);
    let stats3 = sb.last_stats();
    assert_all_from_bucket(&plain, &stats3);
    assert_eq!(stat(&stats3, "prefetched") + stat(&stats3, "manifest_entries"), 0, "{stats3}");
    let hits = |s: &serde_json::Value| stat(s, "remote_hits") + stat(s, "local_hits");
    assert_eq!(hits(&stats3), hits(&stats), "{stats3}\n{stats}");
}

/// With one slow prefetch worker, go asks for most actions while their prefetch is still
/// queued or running: each such get joins that download, is answered once (go fails on
/// a second answer), and nothing is downloaded twice.
#[test]
fn gets_that_race_a_prefetch_are_answered_once() {
    let server = S3Server::garage();
    let sb = Sandbox::new("race");
    go_remote(&sb, &server, "fill", BUILD, &["--prefix", "race"]).assert_ok();
    let fill = sb.last_stats();
    let proxy = Proxy::start(server.port(), ProxyConfig { delay: Duration::from_millis(40), ..ProxyConfig::default() })
        .expect("proxy");
    let prog = ["--prefix", "race", "--prefetch-workers", "1"];
    let before = object_sizes(&server, "race");
    let run = go_via(&sb, &server, &proxy.endpoint(), "racing", BUILD, &prog);
    let stats = sb.last_stats();
    assert_all_from_bucket(&run, &stats);
    assert!(stat(&stats, "prefetch_joined") > 0, "no get joined a prefetch: {stats}");
    assert_nothing_twice(&stats, &fill, bytes_for_tier(&sb, &before, "race", "racing"));
    // The program linked from what came down works.
    let out = Command::new(go_bin(&sb)).output().unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "hello, world");
}

fn go_bin(sb: &Sandbox) -> std::path::PathBuf {
    // `go build ./...` of a main package writes no binary: build it once more, locally.
    let out = sb.root.join("tiny-bin");
    let run = sb.go_plain(&["build", "-o", &out.to_string_lossy(), "."], &[]);
    run.assert_ok();
    out
}

/// A manifest that lists objects the bucket does not have, and objects that do not
/// verify, changes nothing but the waste counter.
#[test]
fn a_bogus_manifest_costs_only_bandwidth() {
    let server = S3Server::garage();
    let sb = Sandbox::new("bogus");
    let prog = ["--prefix", "bogus", "--prefetch-key", "team/bogus"];
    go_remote(&sb, &server, "fill", BUILD, &prog).assert_ok();
    let c = client(&server);
    let layout = Layout::new("bogus");
    let key = layout.under(&key_name("team/bogus"));
    let mut bytes = Vec::new();
    c.get_object(&key, &mut bytes, Bounds::DEFAULT).unwrap().expect("the fill wrote the manifest");
    let real = Manifest::parse(&bytes).unwrap();
    // What the genuine manifest wastes by itself: outputs the fill stored that a warm
    // build never asks for. (This session adds nothing new, so it leaves it as it is.)
    go_remote(&sb, &server, "genuine", BUILD, &prog).assert_ok();
    let genuine_waste = stat(&sb.last_stats(), "prefetch_wasted_bytes");
    let now = real.newest();
    let mut entries = Vec::new();
    // Objects that do not verify: their bodies do not hash to their outputid.
    for n in 0..5u8 {
        let action = Id([0xa0 + n; 32]);
        let body = vec![n; 1000];
        let sha = hex::encode(sha256(&body));
        let wrong = Id([0x11; 32]).hex();
        let meta = [("outputid", wrong.as_str()), ("actionid", &action.hex())];
        c.put_object(&layout.key(&action), Upload::Bytes(&body), &sha, &meta, Bounds::DEFAULT).unwrap();
        entries.push(ManifestEntry { action, output: Id([0x11; 32]), size: 1000, used: now });
    }
    // Objects the bucket never had.
    entries.extend((0..20u8).map(|n| ManifestEntry { action: Id([n; 32]), output: Id([n; 32]), size: 5, used: now }));
    entries.extend(real.entries.iter().copied());
    let bogus = Manifest { entries }.to_bytes();
    let sha = hex::encode(sha256(&bogus));
    c.put_object(&key, Upload::Bytes(&bogus), &sha, &[], Bounds::DEFAULT).unwrap();

    let with = go_remote(&sb, &server, "with-bogus", BUILD, &prog);
    let stats = sb.last_stats();
    assert_all_from_bucket(&with, &stats);
    let without = go_remote(&sb, &server, "without", BUILD, &["--prefix", "bogus", "--no-prefetch"]);
    let reference = sb.last_stats();
    assert_all_from_bucket(&without, &reference);
    for counter in ["gets", "remote_hits", "misses", "get_errors"] {
        assert_eq!(stat(&stats, counter), stat(&reference, counter), "{counter}: {stats}\n{reference}");
    }
    assert_eq!(stat(&stats, "prefetch_wasted_bytes"), genuine_waste + 5 * 1000, "{stats}");
    assert_eq!(stat(&stats, "remote_bad_objects"), 5, "{stats}");
    // The session's own merge dropped what the bucket did not have usable.
    let mut bytes = Vec::new();
    c.get_object(&key, &mut bytes, Bounds::DEFAULT).unwrap().unwrap();
    let merged = Manifest::parse(&bytes).unwrap();
    assert!(merged.entries.iter().all(|e| e.action.0[0] >= 0x20 || e.size != 5), "404 entries kept");
    assert!(merged.entries.iter().all(|e| !(0xa0..0xa5).contains(&e.action.0[0]) || e.size != 1000), "bad kept");
}

/// --read-only sessions still prefetch, but never write a manifest.
#[test]
fn read_only_prefetches_but_writes_no_manifest() {
    let server = S3Server::garage();
    let sb = Sandbox::new("ro-prefetch");
    go_remote(&sb, &server, "fill", BUILD, &["--prefix", "ro", "--prefetch-key", "k1"]).assert_ok();
    let before = manifests(&server, "ro");
    assert_eq!(before.len(), 1, "{before:?}");
    let run = go_remote(&sb, &server, "reader", BUILD, &["--prefix", "ro", "--prefetch-key", "k1", "--read-only"]);
    let stats = sb.last_stats();
    assert_all_from_bucket(&run, &stats);
    assert!(stat(&stats, "prefetched") > 0, "{stats}");
    // A read-only session of another build key writes no manifest for it.
    go_remote(&sb, &server, "reader-2", BUILD, &["--prefix", "ro", "--prefetch-key", "k2", "--read-only"]).assert_ok();
    assert_eq!(manifests(&server, "ro"), before);
}

/// A cold build against an empty bucket asks the bucket only for the few gets that
/// come before its listing is complete.
#[test]
fn cold_misses_need_no_round_trip() {
    let server = S3Server::garage();
    let sb = Sandbox::new("fastmiss");
    let run = go_remote(&sb, &server, "cold", BUILD, &["--prefix", "fm"]);
    run.assert_ok();
    let stats = sb.last_stats();
    assert!(stat(&stats, "misses") > 10, "{stats}");
    assert_eq!(stat(&stats, "fast_misses") + stat(&stats, "remote_not_found"), stat(&stats, "misses"), "{stats}");
    assert!(stat(&stats, "fast_misses") * 2 > stat(&stats, "misses"), "most misses are fast: {stats}");
    assert_eq!(stat(&stats, "uploads"), stat(&stats, "puts"), "{stats}");
    // --fast-miss-max-keys 0: every miss asks the bucket.
    go_remote(&sb, &server, "cold-2", BUILD, &["--prefix", "fm2", "--fast-miss-max-keys", "0"]).assert_ok();
    let slow = sb.last_stats();
    assert_eq!(stat(&slow, "fast_misses"), 0, "{slow}");
    assert_eq!(stat(&slow, "remote_not_found"), stat(&slow, "misses"), "{slow}");
}

/// An object that another machine uploads after this session listed the bucket is missed
/// (go compiles it); the create-only upload of it finds it there, counts it and keeps it.
/// (moto honours If-None-Match on PUT; Garage 2.5 ignores it and overwrites.)
#[test]
fn a_fast_miss_of_an_object_uploaded_meanwhile_is_counted() {
    let server = S3Server::moto();
    let dir = scratch_dir("fastmiss-late");
    let stats_file = dir.join("stats.json");
    let mut env = server.env();
    env.push(("AWS_EC2_METADATA_DISABLED".into(), "true".into()));
    let cache = dir.join("cache");
    let mut session =
        Session::start(&["-vv", "--prefix", "late"], &[server.bucket.as_str()], &cache, &stats_file, &refs(&env));
    session.wait_for_stderr("fast misses on", Duration::from_secs(20));
    // Another machine uploads the output of action A now, compressed as this program does.
    let action = Id([0x42; 32]);
    let body = b"built elsewhere".to_vec();
    let output = Id(sha256(&body));
    let c = client(&server);
    let meta = [("outputid", output.hex()), ("actionid", action.hex()), ("puttime", "1".into())];
    let meta: Vec<(&str, &str)> = meta.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let key = Layout::new("late").key_in(&action, Form::Lz4);
    let mut frame = gocacheprog_s3::remote::frame::encoder(Vec::new());
    frame.write_all(&body).unwrap();
    let frame = frame.finish().unwrap();
    let sha = hex::encode(sha256(&frame));
    c.put_object(&key, Upload::Bytes(&frame), &sha, &meta, Bounds::DEFAULT).unwrap();
    // This session asks for A (a fast miss), then stores it as go would after compiling.
    let requests = format!(
        "{{\"ID\":1,\"Command\":\"get\",\"ActionID\":\"{a}\"}}\n\n\
         {{\"ID\":2,\"Command\":\"put\",\"ActionID\":\"{a}\",\"OutputID\":\"{o}\",\"BodySize\":{n}}}\n\n\"{b}\"\n\
         {{\"ID\":3,\"Command\":\"close\"}}\n\n",
        a = b64(&action.0),
        o = b64(&output.0),
        n = body.len(),
        b = b64(&body)
    );
    session.send(&requests);
    let responses = session.responses(3);
    session.finish();
    assert!(responses[0].contains("\"Miss\":true"), "{responses:?}");
    let stats = read_stats(&stats_file);
    assert_eq!(stat(&stats, "fast_misses"), 1, "{stats}");
    assert_eq!(stat(&stats, "fast_misses_present"), 1, "{stats}");
    assert_eq!(stat(&stats, "uploads"), 0, "the upload of what the bucket has is skipped: {stats}");
    // The other machine's object is still there, untouched.
    let mut got = Vec::new();
    c.get_object(&key, &mut got, Bounds::DEFAULT).unwrap().unwrap();
    assert_eq!(got, frame);
    let _ = std::fs::remove_dir_all(dir);
}
