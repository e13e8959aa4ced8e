//! Scopes for pull requests (`--read-prefix`), end to end with real go against a real
//! store (s3s-fs, which dates objects by their files' mtimes, so a write into a scope that
//! must not be written shows as a new date): a pull request reads its base branch's scope
//! after its own, prefetches from the base's manifest until it has its own, and writes
//! only its own; another pull request never sees it; a scope never reads one whose
//! prefix merely starts like its own; a read scope the credentials may not read is
//! passed over, and `check` says so.

use crate::common;
use crate::maintenance::{age, listing, object_file};

use common::go::{run_cacheprog, stat, GoRun, Sandbox};
use common::remote::{go_remote, go_via};
use common::servers::S3Server;
use faultproxy::{Fault, FaultRule, Proxy, ProxyConfig};
use gocacheprog_s3::remote::manifest::Manifest;
use std::collections::BTreeMap;
use std::fs::{self, File};
use std::time::{Duration, SystemTime};

const BUILD: &[&str] = &["build", "-x", "./..."];
const DAY: Duration = Duration::from_secs(86_400);

/// The pull request's change: a new `lib` (so `lib` and `main` compile anew), dated back
/// as the sandbox's files are.
fn change_lib(sb: &Sandbox) {
    let file = sb.module.join("lib/lib.go");
    fs::write(
        &file,
        "// Package lib greets.\npackage lib\n\nimport \"strings\"\n\n\
         // Greet says hello, louder.\nfunc Greet(name string) string { return \"HELLO, \" + strings.TrimSpace(name) }\n",
    )
    .unwrap();
    File::options()
        .write(true)
        .open(&file)
        .unwrap()
        .set_modified(SystemTime::now() - Duration::from_secs(2 * 3600))
        .unwrap();
}

/// Every object of the bucket under `prefix` dated 40 days back: a hit that wrote it
/// (a refresh) would date it anew.
fn age_all(server: &S3Server, prefix: &str) -> BTreeMap<String, (u64, f64, serde_json::Value)> {
    for key in listing(server, prefix).keys() {
        age(&object_file(server, key), 40 * DAY);
    }
    listing(server, prefix)
}

/// The number of entries of the one manifest under `prefix`.
fn manifest_entries(server: &S3Server, prefix: &str) -> u64 {
    let keys: Vec<String> = listing(server, &format!("{prefix}/manifests/")).into_keys().collect();
    assert_eq!(keys.len(), 1, "one manifest under {prefix}: {keys:?}");
    let bytes = fs::read(object_file(server, &keys[0])).unwrap();
    Manifest::parse(&bytes).unwrap().entries.len() as u64
}

fn compiled(run: &GoRun) -> usize {
    run.assert_ok();
    run.compile_lines().len()
}

#[test]
fn a_pull_request_reads_its_base_scope_and_writes_only_its_own() {
    let server = S3Server::s3s_fs();
    let sb = Sandbox::new("scopes");
    go_remote(&sb, &server, "main", BUILD, &["--prefix", "main-scope"]).assert_ok();
    let main_manifest = manifest_entries(&server, "main-scope");
    let main_scope = age_all(&server, "main-scope/");
    assert!(main_scope.len() > 3, "{main_scope:?}");

    // The pull request's first push, on a fresh runner: what its change did not touch
    // comes from main's scope (prefetched by main's manifest, as its own has none yet);
    // what it changed compiles and goes to its own scope only.
    change_lib(&sb);
    let pr1 = ["--prefix", "pr/1", "--read-prefix", "main-scope", "--refresh-after", "1d"];
    let first = go_remote(&sb, &server, "pr1", BUILD, &pr1);
    let changed = compiled(&first);
    let stats = sb.last_stats();
    assert!(changed > 0, "the change compiled nothing:\n{}", first.stderr);
    assert!(stat(&stats, "remote_hits") > 10, "{stats}");
    assert!(stat(&stats, "read_scope_downloads") >= stat(&stats, "remote_hits") - stat(&stats, "prefetch_hits"));
    assert!(stat(&stats, "read_scope_downloads") > 0, "{stats}");
    assert_eq!(stat(&stats, "manifest_entries"), main_manifest, "main's manifest, the own scope has none: {stats}");
    assert!(stat(&stats, "prefetched") > 0, "{stats}");
    assert!(stat(&stats, "uploads") > 0, "{stats}");
    assert_eq!(
        stat(&stats, "refreshes") + stat(&stats, "refresh_errors"),
        0,
        "read scopes are never refreshed: {stats}"
    );
    // Main's scope is as it was (no key added, none rewritten or dated anew); every other
    // object of the bucket is the pull request's.
    assert_eq!(listing(&server, "main-scope/"), main_scope, "main's scope changed");
    let everything = listing(&server, "");
    let strays: Vec<&String> =
        everything.keys().filter(|k| !k.starts_with("main-scope/") && !k.starts_with("pr/1/")).collect();
    assert!(strays.is_empty(), "written outside the own scope: {strays:?}");
    let pr1_outputs = everything.keys().filter(|k| k.starts_with("pr/1/") && !k.contains("/manifests/")).count();
    assert!(pr1_outputs > 0 && pr1_outputs < main_scope.len(), "{pr1_outputs} outputs under pr/1");
    // Its manifest, in its own scope: the set its session used (main's outputs it was
    // served and its own uploads; a session replaces its kind's set, docs/architecture.md).
    let pr1_manifest = manifest_entries(&server, "pr/1");
    let used = stat(&stats, "remote_hits") + stat(&stats, "uploads");
    assert!(pr1_manifest >= used && used > 0, "{pr1_manifest} entries, the session used {used}: {stats}");

    // Its second push, on another fresh runner: nothing compiles; its own outputs come
    // from its own scope (and are dated anew there), the rest from main's (untouched).
    let pr1_scope = age_all(&server, "pr/1/");
    let again = go_remote(&sb, &server, "pr1-again", BUILD, &pr1);
    assert_eq!(compiled(&again), 0, "compiled on the second push");
    let stats = sb.last_stats();
    assert_eq!(stat(&stats, "manifest_entries"), pr1_manifest, "its own manifest now: {stats}");
    assert!(stat(&stats, "read_scope_downloads") > 0, "{stats}");
    assert!(stat(&stats, "refreshes") > 0, "its own scope's objects are refreshed: {stats}");
    assert!(stat(&stats, "refreshes") <= pr1_scope.len() as u64, "a refresh outside its scope: {stats}");
    assert_eq!(listing(&server, "main-scope/"), main_scope, "main's scope changed");

    // Another pull request with the same change reads main's scope, never pr/1's: it
    // compiles what pr/1 holds, as pr/1 did.
    let pr1_scope = listing(&server, "pr/1/");
    let other = go_remote(&sb, &server, "pr2", BUILD, &["--prefix", "pr/2", "--read-prefix", "main-scope"]);
    assert_eq!(compiled(&other), changed, "pr/2 saw pr/1's outputs");
    let stats = sb.last_stats();
    assert!(stat(&stats, "read_scope_downloads") > 0, "{stats}");
    assert_eq!(listing(&server, "pr/1/"), pr1_scope, "pr/2 wrote into pr/1");
    assert_eq!(listing(&server, "main-scope/"), main_scope, "pr/2 wrote into main's scope");
}

/// `go-cache` and `go-cache-pr/1` share the first characters of their keys, nothing else:
/// neither a session of `go-cache` nor one reading it sees the other's outputs or manifest.
#[test]
fn a_scope_never_reads_one_whose_prefix_merely_starts_like_it() {
    let server = S3Server::s3s_fs();
    let sb = Sandbox::new("scope-exact");
    let fill = go_remote(&sb, &server, "fill", BUILD, &["--prefix", "go-cache-pr/1"]);
    let all = compiled(&fill);
    assert!(all > 10 && !listing(&server, "go-cache-pr/1/").is_empty());
    // Read-only, so that the bucket holds go-cache-pr/1's outputs only, all along.
    let runs: [(&str, &[&str]); 3] = [
        ("own", &["--read-only", "--prefix", "go-cache"]),
        ("read", &["--read-only", "--prefix", "other", "--read-prefix", "go-cache"]),
        // Without the listing, every lookup asks the bucket for go-cache/<action>.
        ("unlisted", &["--read-only", "--prefix", "other", "--read-prefix", "go-cache", "--fast-miss-max-keys", "0"]),
    ];
    for (tier, prog) in runs {
        let run = go_remote(&sb, &server, tier, BUILD, prog);
        assert_eq!(compiled(&run), all, "{tier}: not everything compiled");
        let stats = sb.last_stats();
        assert_eq!(stat(&stats, "remote_hits") + stat(&stats, "manifest_entries"), 0, "{tier}: {stats}");
        assert_eq!(stat(&stats, "fast_misses") + stat(&stats, "remote_not_found"), stat(&stats, "misses"), "{stats}");
        if tier != "unlisted" {
            assert!(stat(&stats, "fast_misses") * 2 > stat(&stats, "misses"), "{tier}: {stats}");
        }
    }
    let keys: Vec<String> = listing(&server, "").into_keys().filter(|k| !k.starts_with("go-cache-pr/1/")).collect();
    assert!(keys.is_empty(), "{keys:?}");
}

/// A read scope the credentials may not read (403 on its keys and its listing, as S3
/// answers without the permission) is passed over: lookups go on to the next scope, the
/// build is served from it, and `check` warns about that scope without failing.
#[test]
fn a_read_scope_that_may_not_be_read_is_passed_over() {
    let server = S3Server::s3s_fs();
    let sb = Sandbox::new("scope-denied");
    go_remote(&sb, &server, "main", BUILD, &["--prefix", "main-scope"]).assert_ok();
    let proxy = Proxy::start(server.port(), ProxyConfig::default()).expect("proxy");
    proxy.set_faults(vec![
        FaultRule::new(Fault::ErrorStatus { status: 403, code: "AccessDenied".into() }).for_path("denied-scope")
    ]);
    let prog = ["--prefix", "pr/9", "--read-prefix", "denied-scope", "--read-prefix", "main-scope"];
    let run = go_via(&sb, &server, &proxy.endpoint(), "pr9", BUILD, &prog);
    assert_eq!(compiled(&run), 0, "compiled what main's scope has");
    let stats = sb.last_stats();
    assert!(stat(&stats, "read_scope_downloads") > 0 && stat(&stats, "remote_hits") > 0, "{stats}");
    assert_eq!(stat(&stats, "get_errors") + stat(&stats, "remote_get_errors"), 0, "{stats}");

    let mut env = server.env();
    env.retain(|(k, _)| k != "AWS_ENDPOINT_URL_S3");
    env.push(("AWS_ENDPOINT_URL_S3".into(), proxy.endpoint()));
    env.push(("AWS_EC2_METADATA_DISABLED".into(), "true".into()));
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let args = ["check", "--json", "--prefix", "pr/9", "--read-prefix", "main-scope", "--read-prefix", "denied-scope"];
    let mut args = args.to_vec();
    args.push(&server.bucket);
    let check = run_cacheprog(&args, &env, Vec::new(), Duration::from_secs(60));
    assert_eq!(check.status.code(), Some(0), "{}\n{}", check.stdout, check.stderr);
    let report: serde_json::Value = serde_json::from_str(&check.stdout).unwrap();
    assert_eq!(report["read_prefixes"], serde_json::json!(["main-scope", "denied-scope"]), "{report}");
    let steps = report["steps"].as_array().unwrap();
    let scope = |name: &str, prefix: &str| {
        steps
            .iter()
            .find(|s| s["step"] == name && s["detail"].as_str().unwrap_or("").starts_with(prefix))
            .unwrap_or_else(|| panic!("no {name} step for {prefix}: {report}"))
    };
    assert_eq!(scope("scope list", "main-scope/")["ok"], true, "{report}");
    assert_eq!(scope("scope read", "main-scope/")["ok"], true, "{report}");
    let denied = scope("scope read", "denied-scope/");
    assert_eq!((denied["ok"].as_bool(), denied["fatal"].as_bool()), (Some(false), Some(false)), "{report}");
    assert!(denied["fix"].as_str().unwrap_or("").contains("s3:GetObject on arn:aws:s3:::"), "{report}");
    assert_eq!(scope("scope list", "denied-scope/")["ok"], false, "{report}");
}
