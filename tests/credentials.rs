//! The credential chain end to end: each source the AWS SDKs know gives the keys a real
//! `go build` signs its requests with, against real stores (Garage, and moto for STS),
//! with stand-ins on 127.0.0.1 for what nothing real can run here (instance metadata,
//! container endpoints; the SSO portal and SSO OIDC: see `sso.rs`). Every run's output is
//! checked for the secrets (common::secret).

use crate::common;

use common::go::{stat, GoRun, Prog, Sandbox};
use common::remote::refs;
use common::servers::S3Server;
use common::standin::{StandIn, IMDS_TOKEN};
use std::fs;

/// go's environment for `server` with no credentials in it: the chain must find them.
pub fn env_without_keys(sb: &Sandbox, server: &S3Server, tier: &str) -> Vec<(String, String)> {
    let mut env = common::remote::store_env(sb, server, &server.endpoint, tier);
    env.retain(|(k, _)| !k.starts_with("AWS_ACCESS_KEY_ID") && !k.starts_with("AWS_SECRET_ACCESS_KEY"));
    env
}

/// A cold build with `env`: every put uploaded (so the requests were signed and accepted).
pub fn build_uploads_everything(sb: &Sandbox, server: &S3Server, env: &[(String, String)], extra: &[&str]) -> GoRun {
    let mut prog: Vec<&str> = extra.to_vec();
    prog.push(&server.bucket);
    let run = sb.spawn(&["build", "./..."], &refs(env), Prog::Ours(&prog)).wait();
    run.assert_ok();
    let stats = sb.last_stats();
    assert!(stat(&stats, "puts") > 0, "{stats}");
    assert_eq!(stat(&stats, "uploads"), stat(&stats, "puts"), "{stats}\n{}", run.stderr);
    run
}

pub fn write(path: &std::path::Path, text: &str) {
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, text).unwrap();
}

#[test]
fn static_keys_from_the_shared_credentials_file() {
    let server = S3Server::garage();
    let sb = Sandbox::new("profile-keys");
    let home = sb.root.join("home");
    write(
        &home.join(".aws/credentials"),
        &format!(
            "[default]\naws_access_key_id = {}\naws_secret_access_key = {}\n",
            server.access_key, server.secret_key
        ),
    );
    let mut env = env_without_keys(&sb, &server, "t");
    env.push(("HOME".into(), home.to_string_lossy().into_owned()));
    let run = build_uploads_everything(&sb, &server, &env, &["-vv"]);
    assert!(run.stderr.contains("credentials: profile default"), "{}", run.stderr);
}

#[test]
fn a_named_profile_with_credential_process() {
    let server = S3Server::garage();
    let sb = Sandbox::new("credential-process");
    let home = sb.root.join("home");
    let script = sb.root.join("print-creds.sh");
    write(
        &script,
        &format!(
            "#!/bin/sh\nprintf '{{\"Version\":1,\"AccessKeyId\":\"{}\",\"SecretAccessKey\":\"{}\"}}'\n",
            server.access_key, server.secret_key
        ),
    );
    std::process::Command::new("chmod").args(["+x", &script.to_string_lossy()]).status().unwrap();
    write(
        &home.join(".aws/config"),
        &format!("[default]\nregion = nowhere\n\n[profile ci]\ncredential_process = {}\n", script.display()),
    );
    let mut env = env_without_keys(&sb, &server, "t");
    env.push(("HOME".into(), home.to_string_lossy().into_owned()));
    env.push(("AWS_PROFILE".into(), "ci".into()));
    let run = build_uploads_everything(&sb, &server, &env, &["-vv"]);
    assert!(run.stderr.contains("credential_process of profile ci"), "{}", run.stderr);
    // --profile names it as well, over AWS_PROFILE.
    env.retain(|(k, _)| k != "AWS_PROFILE");
    env.push(("AWS_PROFILE".into(), "does-not-exist".into()));
    build_uploads_everything(&sb, &server, &env, &["--profile", "ci", "--prefix", "p2"]);
}

/// `GOCACHEPROG_S3_*` keys win over the `AWS_*` ones (which the go programs a build runs
/// may be given for something else).
#[test]
fn cache_keys_win_over_aws_keys() {
    let server = S3Server::garage();
    let sb = Sandbox::new("cache-keys");
    let mut env = env_without_keys(&sb, &server, "t");
    env.push(("GOCACHEPROG_S3_ACCESS_KEY_ID".into(), server.access_key.clone()));
    env.push(("GOCACHEPROG_S3_SECRET_ACCESS_KEY".into(), server.secret_key.clone()));
    env.push(("AWS_ACCESS_KEY_ID".into(), "AKIAWRONGWRONGWRONG".into()));
    env.push(("AWS_SECRET_ACCESS_KEY".into(), common::secret("wrong-secret-for-the-aws-variables")));
    build_uploads_everything(&sb, &server, &env, &[]);
}

#[test]
fn instance_metadata_imdsv2() {
    let server = S3Server::garage();
    let standin = StandIn::start(&server.access_key, &server.secret_key, "unused");
    let sb = Sandbox::new("imds");
    let mut env = env_without_keys(&sb, &server, "t");
    env.retain(|(k, _)| k != "AWS_EC2_METADATA_DISABLED");
    env.push(("AWS_EC2_METADATA_DISABLED".into(), "false".into()));
    env.push(("AWS_EC2_METADATA_SERVICE_ENDPOINT".into(), standin.url()));
    build_uploads_everything(&sb, &server, &env, &[]);
    let seen = standin.requests();
    assert!(seen.len() >= 3, "{seen:?}");
    assert_eq!((seen[0].method.as_str(), seen[0].path.as_str()), ("PUT", "/latest/api/token"), "IMDSv2: token first");
    assert!(seen[1..].iter().all(|s| s.header("x-aws-ec2-metadata-token") == Some(IMDS_TOKEN)), "{seen:?}");
}

/// With nothing configured and the metadata service disabled, the chain makes no
/// connection at all, says on stderr what it tried, and the bucket is read anonymously.
#[test]
fn metadata_disabled_makes_no_connection() {
    let server = S3Server::garage();
    let standin = StandIn::start(&server.access_key, &server.secret_key, "unused");
    let sb = Sandbox::new("no-creds");
    let mut env = env_without_keys(&sb, &server, "t");
    env.push(("AWS_EC2_METADATA_SERVICE_ENDPOINT".into(), standin.url()));
    let bucket = server.bucket.clone();
    let run = sb.spawn(&["build", "./..."], &refs(&env), Prog::Ours(&[&bucket])).wait();
    run.assert_ok();
    assert!(standin.requests().is_empty(), "{:?}", standin.requests());
    let line = run.stderr.lines().find(|l| l.contains("no AWS credentials found")).unwrap_or_default().to_string();
    assert!(line.contains("AWS_EC2_METADATA_DISABLED") && line.contains("web identity"), "{}", run.stderr);
    assert_eq!(stat(&sb.last_stats(), "uploads"), 0);
    // --no-sign-request: the same, asked for, and silent.
    let quiet = sb.spawn(&["build", "./..."], &refs(&env), Prog::Ours(&["--no-sign-request", &bucket])).wait();
    quiet.assert_ok();
    assert!(!quiet.stderr.contains("no AWS credentials"), "{}", quiet.stderr);
}

#[test]
fn container_credentials_with_a_token_file() {
    let server = S3Server::garage();
    let token = common::secret("eks-pod-identity-token-4c2b9");
    let standin = StandIn::start(&server.access_key, &server.secret_key, &token);
    let sb = Sandbox::new("container");
    let token_file = sb.root.join("token");
    fs::write(&token_file, format!("{token}\n")).unwrap();
    let mut env = env_without_keys(&sb, &server, "t");
    env.push(("AWS_CONTAINER_CREDENTIALS_FULL_URI".into(), format!("{}/creds", standin.url())));
    env.push(("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE".into(), token_file.to_string_lossy().into_owned()));
    build_uploads_everything(&sb, &server, &env, &[]);
    assert!(standin.requests().iter().any(|s| s.header("authorization") == Some(token.as_str())));
    // A full URI over plain http to anywhere but loopback or the agents is refused, with
    // the rule in the message.
    env.retain(|(k, _)| k != "AWS_CONTAINER_CREDENTIALS_FULL_URI");
    env.push(("AWS_CONTAINER_CREDENTIALS_FULL_URI".into(), "http://example.com/creds".into()));
    let bucket = server.bucket.clone();
    let run = sb.spawn(&["build", "./..."], &refs(&env), Prog::Ours(&["--prefix", "refused", &bucket])).wait();
    run.assert_ok();
    assert!(run.stderr.contains("is not allowed") && run.stderr.contains("https"), "{}", run.stderr);
}

/// EKS IRSA / GitHub Actions OIDC: a token file and a role, through moto's real STS.
#[test]
fn web_identity_through_sts() {
    let server = S3Server::moto();
    let sb = Sandbox::new("web-identity");
    let token_file = sb.root.join("oidc-token");
    fs::write(&token_file, "eyJhbGciOiJub25lIn0.eyJzdWIiOiJjaSJ9.").unwrap();
    let mut env = env_without_keys(&sb, &server, "t");
    env.retain(|(k, _)| k != "AWS_ENDPOINT_URL_STS");
    env.push(("AWS_ENDPOINT_URL_STS".into(), server.endpoint.clone()));
    env.push(("AWS_WEB_IDENTITY_TOKEN_FILE".into(), token_file.to_string_lossy().into_owned()));
    env.push(("AWS_ROLE_ARN".into(), server.role_arn.clone()));
    env.push(("AWS_ROLE_SESSION_NAME".into(), "ci-build".into()));
    let run = build_uploads_everything(&sb, &server, &env, &["-vv"]);
    assert!(run.stderr.contains("credentials: web identity"), "{}", run.stderr);
}

/// A profile that assumes a role with another profile's keys (STS AssumeRole, signed).
#[test]
fn assume_role_with_a_source_profile() {
    let server = S3Server::moto();
    let sb = Sandbox::new("assume-role");
    let home = sb.root.join("home");
    write(
        &home.join(".aws/config"),
        &format!(
            "[default]\naws_access_key_id = {}\naws_secret_access_key = {}\n\n[profile deploy]\nrole_arn = {}\n\
             source_profile = default\nrole_session_name = cache\n",
            server.access_key, server.secret_key, server.role_arn
        ),
    );
    let mut env = env_without_keys(&sb, &server, "t");
    env.retain(|(k, _)| k != "AWS_ENDPOINT_URL_STS");
    env.push(("AWS_ENDPOINT_URL_STS".into(), server.endpoint.clone()));
    env.push(("HOME".into(), home.to_string_lossy().into_owned()));
    env.push(("AWS_PROFILE".into(), "deploy".into()));
    let run = build_uploads_everything(&sb, &server, &env, &["-vv"]);
    assert!(run.stderr.contains("assumed with profile default"), "{}", run.stderr);
}
