//! Prefetch of the working set and fast misses, end to end against a real store (Garage):
//! a second machine's build gets its objects by prefetch, gets that race a prefetch are
//! answered once, a bogus manifest costs nothing but bandwidth, `--no-prefetch` and
//! `--read-only` behave as documented, and misses are answered without a round trip.

use crate::common;

use common::go::{b64, cache_entries, read_stats, scratch_dir, sha256, stat, GoRun, Prog, Sandbox, Session};
use common::remote::{go_remote, go_via, refs, store_env};
use common::servers::S3Server;
use faultproxy::{Proxy, ProxyConfig};
use gocacheprog_s3::id::Id;
use gocacheprog_s3::remote::layout::{Form, Layout};
use gocacheprog_s3::remote::manifest::{key_name, Manifest, ManifestEntry};
use gocacheprog_s3::s3::client::{Bounds, Client, Upload};
use std::collections::{HashMap, HashSet};
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
    assert!(written[0].starts_with("go-cache/manifests/v2/example.com/tiny/go1."), "{written:?}");

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
    // The bogus entries belong to the same (only) kind as the genuine ones.
    let mut entries = Vec::new();
    // Objects that do not verify: their bodies do not hash to their outputid.
    for n in 0..5u8 {
        let action = Id([0xa0 + n; 32]);
        let body = vec![n; 1000];
        let sha = hex::encode(sha256(&body));
        let wrong = Id([0x11; 32]).hex();
        let meta = [("outputid", wrong.as_str()), ("actionid", &action.hex())];
        c.put_object(&layout.key(&action), Upload::Bytes(&body), &sha, &meta, Bounds::DEFAULT).unwrap();
        entries.push(ManifestEntry { action, output: Id([0x11; 32]), size: 1000, kinds: 1 });
    }
    // Objects the bucket never had.
    entries.extend((0..20u8).map(|n| ManifestEntry { action: Id([n; 32]), output: Id([n; 32]), size: 5, kinds: 1 }));
    entries.extend(real.entries.iter().copied());
    let bogus = Manifest { kinds: real.kinds.clone(), entries }.to_bytes();
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

/// Actions whose outputs a local tier holds.
fn tier_actions(sb: &Sandbox, tier: &str) -> HashSet<String> {
    cache_entries(&sb.root.join(tier)).into_iter().map(|e| e.action_hex).collect()
}

/// A `-race` job and a plain build job of one module share no prefetch: each one's fresh
/// runner downloads none of the other's outputs, and wastes at most a tenth of what it
/// downloads.
#[test]
fn race_and_plain_builds_do_not_prefetch_each_other() {
    const RACE: &[&str] = &["build", "-race", "-x", "./..."];
    let server = S3Server::garage();
    let sb = Sandbox::new("kinds");
    // -race needs cgo; the plain build has it on too, so that only -race tells them apart.
    let go = |tier: &str, args: &[&str]| {
        let mut env = store_env(&sb, &server, &server.endpoint, tier);
        env.push(("CGO_ENABLED".into(), "1".into()));
        sb.spawn(args, &refs(&env), Prog::Ours(&["--prefix", "kinds", &server.bucket])).wait()
    };
    go("plain-fill", BUILD).assert_ok();
    go("race-fill", RACE).assert_ok();
    let mut written = manifests(&server, "kinds");
    written.sort();
    assert_eq!(written.len(), 2, "a manifest per configuration: {written:?}");
    assert!(written[0].ends_with("-cgo") && written[1].ends_with("-cgo/race"), "{written:?}");
    // What a race build asks for, from a runner that neither prefetches nor records.
    let mut env = store_env(&sb, &server, &server.endpoint, "race-ref");
    env.push(("CGO_ENABLED".into(), "1".into()));
    sb.spawn(RACE, &refs(&env), Prog::Ours(&["--prefix", "kinds", "--no-prefetch", &server.bucket])).wait().assert_ok();
    let (plain_set, race_set) = (tier_actions(&sb, "plain-fill"), tier_actions(&sb, "race-ref"));
    let race_only: HashSet<&String> = race_set.difference(&plain_set).collect();
    let plain_only: HashSet<&String> = plain_set.difference(&race_set).collect();
    assert!(!race_only.is_empty() && !plain_only.is_empty(), "-race changed no action ID?");

    for (tier, args, foreign, kind) in [("plain-2", BUILD, &race_only, "plain"), ("race-2", RACE, &plain_only, "race")]
    {
        let run = go(tier, args);
        let stats = sb.last_stats();
        assert_all_from_bucket(&run, &stats);
        assert!(stat(&stats, "prefetched") > 0, "{kind}: {stats}");
        let got = tier_actions(&sb, tier).iter().filter(|a| foreign.contains(a)).count();
        assert_eq!(got, 0, "the {kind} runner prefetched {got} outputs of the other kind: {stats}");
        // What is left is what the fill put that a warm build never asks for (a few kB).
        let (wasted, downloaded) = (stat(&stats, "prefetch_wasted_bytes"), stat(&stats, "bytes_downloaded"));
        assert!(wasted * 10 <= downloaded, "the {kind} runner wasted {wasted} of {downloaded} B: {stats}");
    }
}

/// A package that changed between two commits: a fresh runner of the newer commit does not
/// prefetch the older commit's outputs of it, once a session of the newer commit (the same
/// go command) stopped using them.
#[test]
fn outputs_a_newer_session_stopped_using_are_not_prefetched() {
    let server = S3Server::garage();
    let sb = Sandbox::new("stale");
    let prog = ["--prefix", "stale"];
    go_remote(&sb, &server, "v1", BUILD, &prog).assert_ok();
    let v1 = tier_actions(&sb, "v1");
    // Commit 2 changes the library (dated back like the rest: see Sandbox::new).
    let lib = sb.module.join("lib/lib.go");
    let text = std::fs::read_to_string(&lib).unwrap().replace("\"hello, \"", "\"hello there, \"");
    std::fs::write(&lib, text).unwrap();
    let old = std::time::SystemTime::now() - Duration::from_secs(2 * 3600);
    std::fs::File::options().write(true).open(&lib).unwrap().set_modified(old).unwrap();
    // The first runner of commit 2 builds the changed packages and records what it used.
    let first = go_remote(&sb, &server, "v2-first", BUILD, &prog);
    first.assert_ok();
    let first_uploaded = stat(&sb.last_stats(), "bytes_uploaded");
    assert!(!first.compile_lines().is_empty(), "commit 2 changed nothing?");
    // What commit 2 asks for, from a runner without prefetch.
    let reference = go_remote(&sb, &server, "v2-ref", BUILD, &["--prefix", "stale", "--no-prefetch"]);
    assert_all_from_bucket(&reference, &sb.last_stats());
    let stale: HashSet<String> = v1.difference(&tier_actions(&sb, "v2-ref")).cloned().collect();
    assert!(!stale.is_empty(), "commit 2 uses every output of commit 1?");

    let second = go_remote(&sb, &server, "v2-second", BUILD, &prog);
    let stats = sb.last_stats();
    assert_all_from_bucket(&second, &stats);
    assert!(stat(&stats, "prefetched") > 0, "{stats}");
    let got = tier_actions(&sb, "v2-second").intersection(&stale).count();
    for e in cache_entries(&sb.root.join("v1")) {
        if stale.contains(&e.action_hex) {
            eprintln!("stale {} {}", e.action_hex, e.size);
        }
    }
    for e in cache_entries(&sb.root.join("v2-second")) {
        eprintln!("second {} {}", e.action_hex, e.size);
    }
    for e in cache_entries(&sb.root.join("v2-ref")) {
        eprintln!("ref {} {}", e.action_hex, e.size);
    }
    for e in cache_entries(&sb.root.join("v2-first")) {
        eprintln!("first {} {}", e.action_hex, e.size);
    }
    assert_eq!(got, 0, "{got} outputs commit 2 no longer uses were prefetched: {stats}");
    // What is wasted is at most what commit 2's first runner put that a warm build never
    // asks for.
    assert!(stat(&stats, "prefetch_wasted_bytes") <= first_uploaded, "{first_uploaded} B uploaded: {stats}");
}
