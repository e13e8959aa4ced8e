//! `gocacheprog-s3 check` against real stores: a passing probe that leaves nothing behind,
//! and each failure users meet while setting up, with the cause and the fix it prints.

use crate::common;

use common::go::{run_cacheprog, ProgRun};
use common::servers::{free_port, S3Server};
use common::tls::{Pki, TlsFront};
use std::time::Duration;

/// `gocacheprog-s3 check <args> <bucket>` with the server's environment, changed by `set`
/// (an empty value removes the variable).
fn check(server: &S3Server, set: &[(&str, &str)], args: &[&str]) -> ProgRun {
    let mut env = server.env();
    for (k, v) in set {
        env.retain(|(name, _)| name != k);
        if !v.is_empty() {
            env.push((k.to_string(), v.to_string()));
        }
    }
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let mut all = vec!["check"];
    all.extend_from_slice(args);
    if !args.iter().any(|a| a.starts_with("--bucket")) {
        all.push(&server.bucket);
    }
    run_cacheprog(&all, &env, Vec::new(), Duration::from_secs(60))
}

fn passed(run: &ProgRun) -> bool {
    run.status.code() == Some(0)
}

fn failed(run: &ProgRun) -> bool {
    run.status.code() == Some(1)
}

/// The report's line for `step` (`ok    write ...`), and the cause/fix lines under it.
fn step<'a>(run: &'a ProgRun, state: &str, name: &str) -> Vec<&'a str> {
    let lines: Vec<&str> = run.stdout.lines().collect();
    let Some(at) = lines.iter().position(|l| l.trim_start().starts_with(&format!("{state:<5} {name} "))) else {
        panic!("no `{state} {name}` step in the report:\n{}\nstderr:\n{}", run.stdout, run.stderr);
    };
    let mut out = vec![lines[at]];
    out.extend(lines[at + 1..].iter().take_while(|l| l.starts_with("        ")));
    out
}

fn says(run: &ProgRun, state: &str, name: &str, words: &[&str]) {
    let text = step(run, state, name).join("\n");
    for w in words {
        assert!(text.contains(w), "`{state} {name}` does not say {w:?}:\n{text}\n--- whole report ---\n{}", run.stdout);
    }
}

#[test]
fn a_passing_check_reports_everything_and_leaves_nothing_behind() {
    let server = S3Server::garage();
    let run = check(&server, &[], &[]);
    assert!(passed(&run), "{}\n{}", run.stdout, run.stderr);
    for name in ["credentials", "write", "read", "verify", "delete", "list"] {
        step(&run, "ok", name);
    }
    says(&run, "ok", "credentials", &["AWS_ACCESS_KEY_ID (environment)", &server.access_key]);
    assert!(run.stdout.contains("result: ok: builds can read and write this bucket"), "{}", run.stdout);
    // Every setting, with where it came from.
    let region = run.stdout.lines().find(|l| l.trim_start().starts_with("region ")).expect("a region line");
    assert!(region.contains("= garage") && region.contains("(AWS_REGION)"), "{region}");
    let workers = run.stdout.lines().find(|l| l.trim_start().starts_with("workers ")).expect("a workers line");
    assert!(workers.contains("= 16") && workers.contains("(default)"), "{workers}");
    assert!(server.list("go-cache/_check/").is_empty(), "the probe object was left behind");

    // --json: the same, for machines.
    let run = check(&server, &[], &["--json", "--prefix", "team/cache"]);
    assert!(passed(&run), "{}\n{}", run.stdout, run.stderr);
    let report: CheckReport = serde_json::from_str(run.stdout.trim())
        .unwrap_or_else(|e| panic!("check --json does not decode as CheckReport: {e}\n{}", run.stdout));
    assert!(report.ok, "{report:?}");
    assert_eq!((report.bucket.as_str(), report.prefix.as_str()), (server.bucket.as_str(), "team/cache"));
    assert!(report.read_prefixes.is_empty(), "no --read-prefix given: {:?}", report.read_prefixes);
    assert!(report.endpoint.starts_with("http://127.0.0.1:"), "{report:?}");
    assert!(report.probe_key.starts_with("team/cache/_check/"), "{report:?}");
    let steps: Vec<&str> = report.steps.iter().map(|s| s.step.as_str()).collect();
    assert_eq!(steps, ["credentials", "write", "read", "verify", "delete", "list"], "{report:?}");
    assert!(report.steps.iter().all(|s| s.ms.is_some() && s.ok && s.cause.is_none() && s.fix.is_none()), "{report:?}");
    assert_eq!(report.credentials.access_key_id.as_deref(), Some(server.access_key.as_str()));
    assert!(report.settings.iter().any(|s| s.name == "prefix" && s.value == "team/cache" && !s.source.is_empty()));

    // --read-only: reads only; nothing is written.
    let body = common::go::fresh_dir("check-ro").join("body");
    std::fs::write(&body, "x").unwrap();
    let key = "ro/0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
    server.s3check_ok(&["put", "--key", key, "--file", body.to_str().unwrap()]);
    let run = check(&server, &[], &["--read-only", "--prefix", "ro"]);
    assert!(passed(&run), "{}\n{}", run.stdout, run.stderr);
    step(&run, "ok", "list");
    says(&run, "ok", "read", &["ro/0123456789abcdef"]);
    assert!(!run.stdout.contains(" write "), "{}", run.stdout);
    assert!(run.stdout.contains("result: ok: builds can read this bucket"), "{}", run.stdout);
    assert_eq!(server.list("ro/").len(), 1, "--read-only wrote to the bucket");
}

#[test]
fn each_setup_mistake_is_named_with_its_fix() {
    let server = S3Server::garage();

    // No credentials anywhere (instance metadata disabled, STS unreachable).
    let run = check(&server, &[("AWS_ACCESS_KEY_ID", ""), ("AWS_SECRET_ACCESS_KEY", "")], &[]);
    assert!(failed(&run), "{}", run.stdout);
    says(&run, "FAIL", "credentials", &["no AWS credentials found", "AWS_ACCESS_KEY_ID", "web identity", "fix:"]);
    assert!(run.stdout.contains("result: FAILED at credentials"), "{}", run.stdout);

    // A key that may read but not write: the IAM action to grant, on which resource.
    let (ro_key, ro_secret) = server.garage_key("read-only", &["--read"]);
    let keys = [("AWS_ACCESS_KEY_ID", ro_key.as_str()), ("AWS_SECRET_ACCESS_KEY", ro_secret.as_str())];
    let run = check(&server, &keys, &[]);
    assert!(failed(&run), "{}", run.stdout);
    let resource = format!("arn:aws:s3:::{}/go-cache/*", server.bucket);
    says(&run, "FAIL", "write", &["access denied", "s3:PutObject", &resource, &ro_key]);
    // ... and it is all --read-only needs.
    let run = check(&server, &keys, &["--read-only"]);
    assert!(passed(&run), "{}\n{}", run.stdout, run.stderr);

    // A key with no rights on the bucket, even to read.
    let (none_key, none_secret) = server.garage_key("no-rights", &[]);
    let run =
        check(&server, &[("AWS_ACCESS_KEY_ID", &none_key), ("AWS_SECRET_ACCESS_KEY", &none_secret)], &["--read-only"]);
    assert!(failed(&run), "{}", run.stdout);
    says(&run, "FAIL", "read", &["access denied", "s3:GetObject"]);

    // The wrong region works (the store names the right one) but is reported with the fix.
    let run = check(&server, &[("AWS_REGION", "us-east-1")], &[]);
    assert!(passed(&run), "{}\n{}", run.stdout, run.stderr);
    assert!(run.stdout.contains("the bucket is in region garage, not us-east-1"), "{}", run.stdout);
    assert!(run.stdout.contains("set --region garage"), "{}", run.stdout);

    // A bucket that does not exist.
    let run = check(&server, &[], &["--bucket", "no-such-bucket"]);
    assert!(failed(&run), "{}", run.stdout);
    says(&run, "FAIL", "write", &["\"no-such-bucket\" does not exist", "create the bucket"]);

    // Nothing listening at the endpoint.
    let dead = format!("http://127.0.0.1:{}", free_port());
    let run = check(&server, &[("AWS_ENDPOINT_URL_S3", &dead)], &["--timeout", "5s"]);
    assert!(failed(&run), "{}", run.stdout);
    says(&run, "FAIL", "write", &["unreachable", &dead, "--endpoint"]);

    // A proxy that is not there.
    let proxy = format!("http://127.0.0.1:{}", free_port());
    let run = check(&server, &[("HTTP_PROXY", &proxy)], &["--timeout", "5s"]);
    assert!(failed(&run), "{}", run.stdout);
    says(&run, "FAIL", "write", &["the proxy", &proxy, "NO_PROXY"]);
}

#[test]
fn a_private_ca_is_diagnosed_and_then_trusted() {
    let server = S3Server::garage();
    let dir = common::go::fresh_dir("check-tls");
    let pki = Pki::new(&dir);
    let front = TlsFront::start(&pki, server.port());
    let endpoint = front.endpoint();
    let run = check(&server, &[("AWS_ENDPOINT_URL_S3", &endpoint)], &[]);
    assert!(failed(&run), "{}", run.stdout);
    says(&run, "FAIL", "write", &["TLS", "not signed by a CA", "--ca-bundle"]);
    let ca = pki.ca_pem.to_string_lossy().into_owned();
    let run = check(&server, &[("AWS_ENDPOINT_URL_S3", &endpoint), ("AWS_CA_BUNDLE", &ca)], &[]);
    assert!(passed(&run), "{}\n{}", run.stdout, run.stderr);
    let bundle = run.stdout.lines().find(|l| l.trim_start().starts_with("ca-bundle ")).expect("a ca-bundle line");
    assert!(bundle.contains("(AWS_CA_BUNDLE)"), "{bundle}");
}

#[test]
fn a_wrong_secret_is_a_signature_mismatch() {
    // s3s-fs checks signatures strictly and names the mismatch.
    let server = S3Server::s3s_fs();
    let wrong = common::secret("0000000000000000000000000000000000000000");
    let run = check(&server, &[("AWS_SECRET_ACCESS_KEY", &wrong)], &[]);
    assert!(failed(&run), "{}", run.stdout);
    says(&run, "FAIL", "write", &["signature mismatch", "secret key", &server.access_key]);
}

/// `check --json`, decoded into types: a field added, dropped or renamed fails the test
/// (`deny_unknown_fields`), as ripgrep's tests/json.rs decodes its output.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)] // decoding is part of the check
struct CheckReport {
    ok: bool,
    bucket: String,
    endpoint: String,
    prefix: String,
    read_prefixes: Vec<String>,
    probe_key: String,
    settings: Vec<CheckSetting>,
    credentials: CheckCredentials,
    steps: Vec<CheckStep>,
    warnings: Vec<String>,
}

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct CheckSetting {
    name: String,
    value: String,
    source: String,
}

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
struct CheckCredentials {
    source: Option<String>,
    access_key_id: Option<String>,
    expires: Option<String>,
    login: Option<String>,
    tried: Vec<String>,
}

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
struct CheckStep {
    step: String,
    ok: bool,
    fatal: bool,
    ms: Option<f64>,
    detail: String,
    cause: Option<String>,
    fix: Option<String>,
}
