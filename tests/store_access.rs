//! Reaching a store the way company networks and self-hosted stores need: TLS with a
//! private CA (`--ca-bundle`, `AWS_CA_BUNDLE`), an HTTP proxy from the environment (and
//! `NO_PROXY`), a region that is not the bucket's, and server-side encryption of uploads.
//! A real `go build` drives the binary each time, against Garage or moto on 127.0.0.1.

use crate::common;

use common::connect_proxy::ConnectProxy;
use common::go::{stat, GoRun, Prog, Sandbox};
use common::remote::{refs, store_env};
use common::servers::S3Server;
use common::tls::{Pki, TlsFront};

/// A build through our binary with `env`; returns the run and its stats.
fn build(sb: &Sandbox, server: &S3Server, env: &[(String, String)], extra: &[&str]) -> (GoRun, serde_json::Value) {
    let mut prog: Vec<&str> = extra.to_vec();
    prog.push(&server.bucket);
    let run = sb.spawn(&["build", "./..."], &refs(env), Prog::Ours(&prog)).wait();
    run.assert_ok();
    (run, sb.last_stats())
}

fn set(env: &mut Vec<(String, String)>, key: &str, value: &str) {
    env.retain(|(k, _)| k != key);
    env.push((key.to_string(), value.to_string()));
}

#[test]
fn a_store_behind_a_private_ca_needs_its_bundle() {
    let server = S3Server::garage();
    let sb = Sandbox::new("tls-private-ca");
    let pki = Pki::new(&sb.root.join("pki"));
    let front = TlsFront::start(&pki, server.port());

    // The built-in roots do not know the CA: the build still succeeds, and says what to set.
    let env = store_env(&sb, &server, &front.endpoint(), "t1");
    let (run, stats) = build(&sb, &server, &env, &[]);
    assert_eq!(stat(&stats, "uploads"), 0, "{stats}");
    assert!(run.stderr.contains("--ca-bundle"), "no hint to set --ca-bundle:\n{}", run.stderr);

    // --ca-bundle: every output reaches the bucket over TLS.
    let ca = pki.ca_pem.to_string_lossy().into_owned();
    let env = store_env(&sb, &server, &front.endpoint(), "t2");
    let (run, stats) = build(&sb, &server, &env, &["--ca-bundle", &ca]);
    assert!(stat(&stats, "puts") > 0, "{stats}");
    assert_eq!(stat(&stats, "uploads"), stat(&stats, "puts"), "{stats}\n{}", run.stderr);

    // AWS_CA_BUNDLE (what the AWS CLI and SDKs read) does the same: a fresh tier downloads.
    let mut env = store_env(&sb, &server, &front.endpoint(), "t3");
    set(&mut env, "AWS_CA_BUNDLE", &ca);
    let (run, stats) = build(&sb, &server, &env, &[]);
    assert!(stat(&stats, "remote_hits") > 0, "{stats}\n{}", run.stderr);
    assert_eq!(stat(&stats, "get_errors"), 0, "{stats}\n{}", run.stderr);

    // A bundle that is not PEM switches the bucket off, naming the file; the build goes on
    // (tests/host_settings.rs has the other unusable settings).
    let junk = sb.root.join("not-a-bundle.pem");
    std::fs::write(&junk, "hello").unwrap();
    let env = store_env(&sb, &server, &front.endpoint(), "t4");
    let (run, stats) = build(&sb, &server, &env, &["--ca-bundle", junk.to_str().unwrap()]);
    assert_eq!(stat(&stats, "remote_disabled"), 1, "{stats}");
    assert!(run.stderr.contains("--ca-bundle: ") && run.stderr.contains("not-a-bundle.pem"), "{}", run.stderr);
}

#[test]
fn the_proxy_from_the_environment_and_no_proxy() {
    let server = S3Server::garage();
    let sb = Sandbox::new("http-proxy");
    let proxy = ConnectProxy::start();

    let mut env = store_env(&sb, &server, &server.endpoint, "t1");
    set(&mut env, "HTTP_PROXY", &proxy.url());
    let (run, stats) = build(&sb, &server, &env, &["-vv"]);
    assert!(stat(&stats, "puts") > 0, "{stats}");
    assert_eq!(stat(&stats, "uploads"), stat(&stats, "puts"), "{stats}\n{}", run.stderr);
    assert!(proxy.tunnels() > 0, "no request went through HTTP_PROXY:\n{}", run.stderr);
    // -vv: every setting with where it came from.
    for line in [
        format!("proxy = {} (from HTTP_PROXY)", proxy.url()),
        format!("endpoint = {} (from AWS_ENDPOINT_URL_S3)", server.endpoint),
        "region = garage (from AWS_REGION)".to_string(),
        "workers = 16 (from default)".to_string(),
        format!("bucket = {} (from the BUCKET argument)", server.bucket),
    ] {
        assert!(run.stderr.contains(&line), "-vv does not say {line:?}:\n{}", run.stderr);
    }

    // NO_PROXY naming the store's host: straight to it, the proxy sees nothing new.
    let before = proxy.tunnels();
    let mut env = store_env(&sb, &server, &server.endpoint, "t2");
    set(&mut env, "http_proxy", &proxy.url());
    set(&mut env, "NO_PROXY", "example.com,127.0.0.1");
    let (run, stats) = build(&sb, &server, &env, &[]);
    assert!(stat(&stats, "remote_hits") > 0, "{stats}\n{}", run.stderr);
    assert_eq!(proxy.tunnels(), before, "NO_PROXY=127.0.0.1 still used the proxy");

    // A proxy that is not there: the build still succeeds, and the message names the proxy.
    let mut env = store_env(&sb, &server, &server.endpoint, "t3");
    let dead = format!("http://127.0.0.1:{}", common::servers::free_port());
    set(&mut env, "HTTP_PROXY", &dead);
    let (run, stats) = build(&sb, &server, &env, &[]);
    assert_eq!(stat(&stats, "remote_hits"), 0, "{stats}");
    assert!(run.stderr.to_lowercase().contains("proxy"), "the failure does not mention the proxy:\n{}", run.stderr);
}

#[test]
fn a_wrong_region_is_learned_from_the_store() {
    // Garage's region is "garage"; the user's environment says us-east-1.
    let server = S3Server::garage();
    let sb = Sandbox::new("wrong-region");
    let mut env = store_env(&sb, &server, &server.endpoint, "t1");
    set(&mut env, "AWS_REGION", "us-east-1");
    let (run, stats) = build(&sb, &server, &env, &["-v"]);
    assert!(stat(&stats, "puts") > 0, "{stats}");
    assert_eq!(stat(&stats, "uploads"), stat(&stats, "puts"), "{stats}\n{}", run.stderr);
    assert!(
        run.stderr.contains("the bucket is in region garage, not us-east-1"),
        "no line about the learned region:\n{}",
        run.stderr
    );
}

#[test]
fn uploads_carry_server_side_encryption() {
    let server = S3Server::moto();
    let sb = Sandbox::new("sse");
    let env = store_env(&sb, &server, &server.endpoint, "t1");
    let (run, stats) = build(&sb, &server, &env, &["--prefix", "aes", "--sse", "AES256"]);
    assert_eq!(stat(&stats, "uploads"), stat(&stats, "puts"), "{stats}\n{}", run.stderr);
    let head = |key: &str| -> serde_json::Value {
        serde_json::from_str(server.s3check_ok(&["head", "--key", key]).trim()).expect("head JSON")
    };
    let objects = server.list("aes/");
    assert!(!objects.is_empty(), "nothing uploaded under aes/");
    for o in objects.iter().take(5) {
        let h = head(o["key"].as_str().unwrap());
        assert_eq!(h["sse"], "AES256", "{h}");
    }

    let env = store_env(&sb, &server, &server.endpoint, "t2");
    let (run, stats) =
        build(&sb, &server, &env, &["--prefix", "kms", "--sse", "aws:kms", "--sse-kms-key-id", "alias/build-cache"]);
    assert_eq!(stat(&stats, "uploads"), stat(&stats, "puts"), "{stats}\n{}", run.stderr);
    let objects = server.list("kms/");
    assert!(!objects.is_empty(), "nothing uploaded under kms/");
    let h = head(objects[0]["key"].as_str().unwrap());
    assert_eq!(h["sse"], "aws:kms", "{h}");
    assert!(h["sse_kms_key_id"].as_str().is_some_and(|k| k.contains("build-cache")), "{h}");
}
