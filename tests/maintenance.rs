//! Running it for months: the local tier's trim (at the start of a session, once a day,
//! and `trim` on demand), the bucket's refresh on hit, `prune` and `usage`, against a real
//! go build and a real store. s3s-fs dates objects by their files' mtimes, so objects of
//! known ages are made by setting those.

use crate::common;

use common::go::{bin, cache_entries, quote_field, stat, Prog, Sandbox};
use common::remote::{go_remote, store_env};
use common::servers::S3Server;
use faultproxy::{Fault, FaultRule, Proxy, ProxyConfig};
use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, SystemTime};

const DAY: Duration = Duration::from_secs(86_400);
const BUILD: &[&str] = &["build", "./..."];

pub fn age(path: &Path, by: Duration) {
    File::options().write(true).open(path).unwrap().set_modified(SystemTime::now() - by).unwrap();
}

/// Every file under the tier's `<xx>/` folders.
fn tier_files(dir: &Path) -> BTreeSet<PathBuf> {
    let mut files = BTreeSet::new();
    for sub in fs::read_dir(dir).unwrap().flatten().filter(|e| e.file_name().len() == 2) {
        files.extend(fs::read_dir(sub.path()).unwrap().flatten().map(|e| e.path()));
    }
    files
}

/// Runs a maintenance command of the binary with `env` (no inherited AWS settings).
fn command(args: &[&str], env: &[(String, String)]) -> Output {
    let out = Command::new(bin())
        .args(args)
        .env_clear()
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("HOME", std::env::temp_dir())
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .stdin(Stdio::null())
        .output()
        .expect("run gocacheprog-s3");
    out
}

fn ok(out: Output) -> String {
    assert!(
        out.status.success(),
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn trim_removes_what_no_build_used_and_nothing_else() {
    let sb = Sandbox::new("trim");
    sb.spawn(BUILD, &[], Prog::Ours(&[])).wait().assert_ok();
    // The session trimmed at its start (nothing to do) and recorded it, as go does.
    let recorded = fs::read_to_string(sb.gocache.join("trim.txt")).expect("no trim.txt after a session");
    assert!(recorded.trim().parse::<u64>().is_ok(), "{recorded:?}");

    // A third of the entries, and their outputs, were last used ten days ago.
    let entries = cache_entries(&sb.gocache);
    assert!(entries.len() > 6, "{}", entries.len());
    let mut stale = BTreeSet::new();
    for e in entries.iter().step_by(3) {
        let output = sb.gocache.join(&e.output_hex[..2]).join(format!("{}-d", e.output_hex));
        for path in [e.path.clone(), output] {
            age(&path, 10 * DAY);
            stale.insert(path);
        }
    }
    // A file go's naming does not cover is never touched.
    let foreign = sb.gocache.join("00").join("README");
    fs::create_dir_all(foreign.parent().unwrap()).unwrap();
    fs::write(&foreign, "not ours").unwrap();
    age(&foreign, 100 * DAY);
    let before = tier_files(&sb.gocache);
    let env = vec![("GOCACHE".to_string(), sb.gocache.to_string_lossy().into_owned())];

    let dry = ok(command(&["trim", "--dry-run"], &env));
    assert!(dry.contains(&format!("would remove {} files", stale.len())), "{dry}");
    assert_eq!(tier_files(&sb.gocache), before, "--dry-run removed something");

    let done = ok(command(&["trim"], &env));
    assert!(done.contains(&format!("removed {} files", stale.len())), "{done}");
    let after = tier_files(&sb.gocache);
    assert_eq!(
        before.difference(&after).cloned().collect::<BTreeSet<_>>(),
        stale,
        "removed other than the stale files"
    );

    // The same build works on the trimmed tier (what was removed is built again).
    let again = sb.spawn(BUILD, &[], Prog::Ours(&[])).wait();
    again.assert_ok();
    assert!(stat(&sb.last_stats(), "local_hits") > 0);
}

/// The s3s-fs file behind an object key.
pub fn object_file(server: &S3Server, key: &str) -> PathBuf {
    server.dir().join("root").join(&server.bucket).join(key)
}

/// key → (size, last modified unix seconds, metadata), by boto3 (an independent listing).
pub fn listing(server: &S3Server, prefix: &str) -> BTreeMap<String, (u64, f64, serde_json::Value)> {
    server
        .list(prefix)
        .into_iter()
        .map(|o| {
            let key = o["key"].as_str().unwrap().to_string();
            (key, (o["size"].as_u64().unwrap(), o["last_modified"].as_f64().unwrap(), o["metadata"].clone()))
        })
        .collect()
}

fn put(server: &S3Server, sb: &Sandbox, key: &str, bytes: usize) {
    let file = sb.root.join("upload.bin");
    fs::write(&file, vec![7u8; bytes]).unwrap();
    server.s3check_ok(&["put", "--key", key, "--file", file.to_str().unwrap()]);
}

#[test]
fn refresh_on_hit_then_prune_and_usage_against_a_store_with_objects_of_known_ages() {
    let server = S3Server::s3s_fs();
    let sb = Sandbox::new("prune");
    let prog = ["--prefix", "p", "--refresh-after", "1d"];
    go_remote(&sb, &server, "fill", BUILD, &prog).assert_ok();
    let used = listing(&server, "p/");
    assert!(used.len() > 3, "{used:?}");
    // Every object of the build is 40 days old, as if uploaded then.
    for key in used.keys() {
        age(&object_file(&server, key), 40 * DAY);
    }
    // Objects no build uses: two stale (an output of old code and a manifest of a build
    // nobody runs), one recent, and one outside the prefix.
    let hex = "ab".repeat(32);
    let (old_output, old_manifest, recent) =
        (format!("p/{hex}"), "p/manifests/v1/gone/module".to_string(), format!("p/{}", "cd".repeat(32)));
    for (key, days) in [(&old_output, 45), (&old_manifest, 60), (&recent, 10)] {
        put(&server, &sb, key, 1000);
        age(&object_file(&server, key), days * DAY);
    }
    put(&server, &sb, "elsewhere/x", 10);
    age(&object_file(&server, "elsewhere/x"), 90 * DAY);

    // A build on a fresh machine hits every object it uses, and so dates each anew.
    let run = go_remote(&sb, &server, "second", BUILD, &prog);
    run.assert_ok();
    let stats = sb.last_stats();
    assert!(stat(&stats, "remote_hits") > 0, "{stats}");
    assert_eq!(stat(&stats, "refresh_errors"), 0, "{stats}\n{}", run.stderr);
    let outputs_used = used.keys().filter(|k| !k.contains("/manifests/")).count() as u64;
    assert_eq!(stat(&stats, "refreshes"), outputs_used, "{stats}");
    let now = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap().as_secs_f64();
    let refreshed = listing(&server, "p/");
    for (key, (size, _, metadata)) in &used {
        let (new_size, dated, new_metadata) = &refreshed[key];
        assert!(now - dated < 600.0, "{key} was not dated anew: {dated} vs {now}");
        // The manifest is rewritten with this session's set: what the cold fill put that
        // a warm build never asks for has left it.
        if key.contains("/manifests/") {
            continue;
        }
        assert_eq!(size, new_size, "{key}");
        assert_eq!(new_metadata["outputid"], metadata["outputid"], "{key}");
        // Its own metadata plus when it was refreshed; or, for the odd entry go puts again
        // after a hit, its new upload (a new puttime).
        let refreshed_at = new_metadata["refreshed"].as_str();
        let uploaded_again = new_metadata["puttime"] != metadata["puttime"];
        assert!(
            refreshed_at.is_some_and(|t| t.parse::<u64>().is_ok()) || uploaded_again,
            "{key}: {new_metadata}\n{stats}"
        );
    }

    let env = {
        let mut env = store_env(&sb, &server, &server.endpoint, "second");
        env.push(("GOCACHEPROG_S3_PREFIX".into(), "p".into()));
        env
    };
    let bucket = server.bucket.as_str();

    // usage: what boto3 lists under the prefix, and what the local tier holds.
    let text = ok(command(&["usage", "--json", bucket], &env));
    let usage: serde_json::Value = serde_json::from_str(&text).expect("usage --json is one JSON object");
    let independent = listing(&server, "p/");
    assert_eq!(usage["remote_objects"].as_u64(), Some(independent.len() as u64), "{usage}");
    assert_eq!(usage["remote_bytes"].as_u64(), Some(independent.values().map(|v| v.0).sum::<u64>()), "{usage}");
    let tier = cache_entries(&sb.root.join("second"));
    assert_eq!(usage["local_entries"].as_u64(), Some(tier.len() as u64), "{usage}");
    assert!(usage["local_bytes"].as_u64().unwrap() >= tier.iter().map(|e| e.size).sum::<u64>(), "{usage}");
    assert_eq!(usage["manifests"].as_array().map(Vec::len), Some(2), "{usage}");
    let text = ok(command(&["usage", bucket], &env));
    assert!(text.contains(&format!("{} objects", independent.len())), "{text}");

    // prune --dry-run names exactly the two stale objects and deletes nothing.
    let dry = ok(command(&["prune", "--unused-for", "30d", "--dry-run", bucket], &env));
    let named: BTreeSet<&str> =
        dry.lines().filter_map(|l| l.strip_prefix("would delete ")).map(|l| l.split(' ').next().unwrap()).collect();
    assert_eq!(named, BTreeSet::from([old_output.as_str(), old_manifest.as_str()]), "{dry}");
    assert_eq!(listing(&server, "p/").len(), independent.len(), "--dry-run deleted something");

    // prune: exactly those go; everything the build used since, and the recent one, stay.
    ok(command(&["prune", "--unused-for", "30d", bucket], &env));
    let left: BTreeSet<String> = listing(&server, "p/").into_keys().collect();
    let mut expected: BTreeSet<String> = independent.keys().cloned().collect();
    expected.remove(&old_output);
    expected.remove(&old_manifest);
    assert_eq!(left, expected);
    assert!(left.contains(&recent));

    // Objects only hit in local tiers are dated anew too: age the bucket again and build
    // on the same machine, every get a local hit. Those refreshes are best effort within
    // a session (a warm local build never waits for them), so a few sessions may share
    // the work. What go asked for is what the session records in the manifest.
    for key in used.keys() {
        age(&object_file(&server, key), 40 * DAY);
    }
    let unix_now = || SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap().as_secs();
    let fresh = |listed: &BTreeMap<String, (u64, f64, serde_json::Value)>, key: &str| {
        let now = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap().as_secs_f64();
        now - listed[key].1 < 600.0
    };
    let started = unix_now();
    let (mut local_refreshes, mut uploads, mut hit_keys, mut sessions) = (0, 0, BTreeSet::new(), 0);
    for session in 0..6 {
        sessions += 1;
        let run = go_remote(&sb, &server, "second", BUILD, &prog);
        run.assert_ok();
        let stats = sb.last_stats();
        assert_eq!(stat(&stats, "remote_hits"), 0, "not a warm local build: {stats}");
        assert_eq!(stat(&stats, "refresh_errors"), 0, "{stats}\n{}", run.stderr);
        local_refreshes += stat(&stats, "refreshes");
        uploads += stat(&stats, "uploads");
        if session == 0 {
            hit_keys = outputs_used_since(&server, &used, started);
            assert!(!hit_keys.is_empty(), "the manifest names nothing the session used");
        }
        let listed = listing(&server, "p/");
        if hit_keys.iter().all(|k| fresh(&listed, k)) {
            break;
        }
    }
    let dated_again = listing(&server, "p/");
    for (key, (size, _, metadata)) in used.iter().filter(|(k, _)| !k.contains("/manifests/")) {
        let (new_size, _, new_metadata) = &dated_again[key];
        assert_eq!(size, new_size, "{key}");
        assert_eq!(new_metadata["outputid"], metadata["outputid"], "{key}");
        if !hit_keys.contains(key) {
            assert!(!fresh(&dated_again, key), "{key}: dated anew, but no build used it");
            continue;
        }
        // Its own metadata (read back first) plus a new `refreshed`; or go's own upload.
        assert!(fresh(&dated_again, key), "{key}: a local hit did not date it anew");
        assert_eq!(new_metadata["actionid"], metadata["actionid"], "{key}");
        let refreshed_at = new_metadata["refreshed"].as_str();
        let uploaded_again = new_metadata["puttime"] != metadata["puttime"];
        assert!(refreshed_at.is_some_and(|t| t.parse::<u64>().is_ok()) || uploaded_again, "{key}: {new_metadata}");
    }
    // Each refreshed once (go's own upload of one may come first and make its refresh moot).
    // A session exits without waiting for its refreshes: a copy still in flight then may
    // land at the store uncounted, at most one per refresh thread and session.
    let hits = hit_keys.len() as u64;
    let in_flight = sessions * gocacheprog_s3::remote::REFRESH_WORKERS as u64;
    assert!(
        local_refreshes <= hits && local_refreshes + uploads + in_flight >= hits,
        "{local_refreshes} refreshes and {uploads} uploads in {sessions} sessions for {hits} local hits"
    );

    // --unused-for 0s empties the prefix, and only the prefix.
    ok(command(&["prune", "--unused-for", "0s", bucket], &env));
    assert!(listing(&server, "p/").is_empty());
    assert_eq!(listing(&server, "elsewhere/").len(), 1);
}

/// The output keys (of `used`) whose actions the manifest says the most recent session
/// used, when it ended at or after `since` (unix seconds).
fn outputs_used_since(
    server: &S3Server,
    used: &BTreeMap<String, (u64, f64, serde_json::Value)>,
    since: u64,
) -> BTreeSet<String> {
    use gocacheprog_s3::remote::manifest::Manifest;
    use gocacheprog_s3::s3::client::Bounds;
    let key = used.keys().find(|k| k.contains("/manifests/")).expect("the build wrote a manifest");
    let mut bytes = Vec::new();
    server.client().get_object(key, &mut bytes, Bounds::DEFAULT).unwrap().expect("the manifest is there");
    let manifest = Manifest::parse(&bytes).unwrap();
    let latest = manifest.kinds.first().filter(|k| k.used >= since).map(|_| manifest.latest_session());
    let recent: BTreeSet<String> = latest.into_iter().flatten().map(|e| format!("p/{}", e.action.hex())).collect();
    used.keys().filter(|k| recent.contains(k.strip_suffix(".lz4").unwrap_or(k))).cloned().collect()
}

/// Puts `n` small objects `<prefix>/<hex>` with 8 threads, each retried a few times
/// (Garage answers 503 "database is locked" under load).
fn put_many(server: &S3Server, prefix: &str, n: usize) {
    use gocacheprog_s3::s3::client::{Bounds, Upload};
    let client = server.client();
    let body = b"0123456789";
    let sha = hex::encode(common::go::sha256(body));
    std::thread::scope(|scope| {
        for t in 0..8 {
            let (client, sha) = (&client, &sha);
            scope.spawn(move || {
                for i in (t..n).step_by(8) {
                    let key = format!("{prefix}/{}", hex::encode(common::go::sha256(&i.to_le_bytes())));
                    let stored = (0..5).any(|attempt| {
                        std::thread::sleep(Duration::from_millis(200 * attempt));
                        client.put_object(&key, Upload::Bytes(body), sha, &[], Bounds::DEFAULT).is_ok()
                    });
                    assert!(stored, "could not put {key}");
                }
            });
        }
    });
}

/// `prune` deletes a thousand objects per DeleteObjects request where the store has it
/// (Garage), and one per DELETE where it answers 501 (a proxy says so for Garage here).
#[test]
fn prune_deletes_in_batches_and_one_by_one_where_the_store_lacks_batches() {
    let server = S3Server::garage();
    let sb = Sandbox::new("prune-batch");
    put_many(&server, "b", 1100);
    put(&server, &sb, "other/x", 10);
    let proxy = Proxy::start(server.port(), ProxyConfig::default()).expect("proxy");
    let mut env = store_env(&sb, &server, &proxy.endpoint(), "tier");
    env.push(("GOCACHEPROG_S3_PREFIX".into(), "b".into()));
    let bucket = server.bucket.as_str();

    let out = ok(command(&["prune", "--unused-for", "0s", bucket], &env));
    assert!(out.contains("deleted 1100 of 1100 objects"), "{out}");
    assert!(listing(&server, "b/").is_empty(), "objects left after prune");
    assert_eq!(listing(&server, "other/").len(), 1, "prune deleted outside its prefix");
    // Two listing pages and two DeleteObjects requests (a DELETE each would be 1100).
    let batched = proxy.stats().requests;
    assert!(batched <= 10, "{batched} requests for 1100 objects: not batched");

    // A store without DeleteObjects: the first batch's 501 turns prune to single DELETEs.
    put_many(&server, "b", 30);
    let not_implemented = Fault::ErrorStatus { status: 501, code: "NotImplemented".into() };
    proxy.set_faults(vec![FaultRule::new(not_implemented).for_method("POST").for_path("delete")]);
    let out = ok(command(&["prune", "--unused-for", "0s", bucket], &env));
    assert!(out.contains("deleted 30 of 30 objects"), "{out}");
    assert!(listing(&server, "b/").is_empty(), "objects left after prune without DeleteObjects");
    let stats = proxy.stats();
    assert_eq!(stats.fault_count("error_status"), 1, "DeleteObjects was tried again after a 501: {stats:?}");
    assert!(stats.requests - batched >= 31, "fewer requests than single deletes: {stats:?}");
}

/// The laptop recipe: `go env -w GOCACHEPROG=...` once, and plain go commands use it.
#[test]
fn the_laptop_recipe_go_env_w_sets_it_for_every_go_command() {
    let sb = Sandbox::new("laptop");
    let goenv = sb.root.join("home/.config/go/env");
    let stats = sb.root.join("laptop-stats.json");
    let value =
        format!("{} --stats-file {}", quote_field(&bin().to_string_lossy()), quote_field(&stats.to_string_lossy()));
    let goenv_text = goenv.to_string_lossy().into_owned();
    let extra = [("GOENV", goenv_text.as_str())];
    sb.spawn(&["env", "-w", &format!("GOCACHEPROG={value}")], &extra, Prog::Off).wait().assert_ok();
    assert!(fs::read_to_string(&goenv).unwrap().contains("GOCACHEPROG="), "go env -w wrote nothing");
    sb.spawn(BUILD, &extra, Prog::Off).wait().assert_ok();
    let counters = common::go::read_stats(&stats);
    assert!(stat(&counters, "puts") > 0, "go did not run the cache program from its env file: {counters}");
}
