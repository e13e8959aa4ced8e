//! Console sessions (`aws login`, a profile's `login_session`) end to end: a real `go build`
//! through the program gets its objects into Garage with credentials refreshed at a strict
//! loopback AWS Sign-In (`common::signin`: DPoP proof checked with the session's key, the
//! client and the rotating refresh token), and an ended session says once to sign in again.
//! The cache file is named with sha2 here, independently of the program.

use crate::common;
use crate::credentials::{build_uploads_everything, env_without_keys, write};

use common::go::{run_cacheprog, stat, Prog, Sandbox};
use common::remote::refs;
use common::servers::S3Server;
use common::signin::SignIn;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

const SESSION: &str = "arn:aws:iam::111122223333:user/dev";

fn cache_file(home: &Path) -> PathBuf {
    home.join(".aws/login/cache").join(format!("{}.json", hex::encode(Sha256::digest(SESSION.as_bytes()))))
}

fn rfc3339(t: SystemTime) -> String {
    let s = common::go::rfc3339(t);
    s.split_once('.').map_or(s.clone(), |(whole, _)| format!("{whole}Z"))
}

/// What `aws login` caches: credentials that are not Garage's (so only a refresh makes
/// the build upload), expiring at `expires`.
fn cached(signin: &SignIn, refresh_token: &str, expires: SystemTime) -> Value {
    let old_secret = common::secret(&format!("oldSecret{}", common::servers::random_hex(16)));
    json!({"accessToken": {"accessKeyId": "ASIAOLDCONSOLEKEY", "secretAccessKey": old_secret,
                           "sessionToken": common::secret("oldSessionTokenOfTheConsole"),
                           "accountId": "111122223333", "expiresAt": rfc3339(expires)},
           "tokenType": "aws_sigv4", "clientId": signin.client_id, "refreshToken": refresh_token,
           "idToken": "eyJhbGciOiJub25lIn0.e30.", "dpopKey": signin.dpop_key_pem})
}

fn console_env(sb: &Sandbox, server: &S3Server, signin: &SignIn, home: &Path) -> Vec<(String, String)> {
    write(&home.join(".aws/config"), &format!("[profile console]\nlogin_session = {SESSION}\nregion = eu-west-1\n"));
    let mut env = env_without_keys(sb, server, "t");
    env.extend([
        ("HOME".to_string(), home.to_string_lossy().into_owned()),
        ("AWS_PROFILE".into(), "console".into()),
        ("AWS_ENDPOINT_URL_SIGNIN".into(), signin.server.url()),
    ]);
    env
}

/// Credentials two minutes from expiry are refreshed at Sign-In (a DPoP proof made with the
/// cached key), the build signs with the new ones, and the file holds them and the rotated
/// refresh token.
#[test]
fn a_console_session_is_refreshed_and_builds_into_the_bucket() {
    let server = S3Server::garage();
    let signin = SignIn::start((&server.access_key, &server.secret_key));
    let sb = Sandbox::new("console-login");
    let home = sb.root.join("home");
    let env = console_env(&sb, &server, &signin, &home);
    let first_refresh = signin.refresh_token();
    let file = cache_file(&home);
    write(&file, &cached(&signin, &first_refresh, SystemTime::now() + Duration::from_secs(120)).to_string());
    let run = build_uploads_everything(&sb, &server, &env, &["-vvv"]);
    assert!(run.stderr.contains(&format!("credentials: console login {SESSION} (profile console)")), "{}", run.stderr);
    assert!(signin.refusals().is_empty(), "{:?}", signin.refusals());
    assert_eq!(signin.server.requests().len(), 1);
    let written: Value = serde_json::from_slice(&fs::read(&file).unwrap()).unwrap();
    assert_eq!(written["accessToken"]["accessKeyId"], server.access_key.as_str());
    assert_eq!(written["refreshToken"], signin.refresh_token().as_str());
    assert_ne!(written["refreshToken"], first_refresh.as_str());
    assert_eq!(written["dpopKey"], signin.dpop_key_pem.as_str(), "the key is kept");
    let expires =
        gocacheprog_s3::calendar::parse_rfc3339(written["accessToken"]["expiresAt"].as_str().unwrap()).unwrap();
    assert!(expires > SystemTime::now() + Duration::from_secs(600), "{written}");
}

/// A session that ended (Sign-In refuses the refresh token) with expired credentials: one
/// line says to run `aws login --profile console`, and the build goes on local-only.
#[test]
fn an_ended_console_session_says_once_to_sign_in_again() {
    let server = S3Server::garage();
    let signin = SignIn::start((&server.access_key, &server.secret_key));
    let sb = Sandbox::new("console-ended");
    let home = sb.root.join("home");
    let env = console_env(&sb, &server, &signin, &home);
    let stale = signin.refresh_token();
    signin.end_session();
    write(&cache_file(&home), &cached(&signin, &stale, SystemTime::now() - Duration::from_secs(60)).to_string());
    let bucket = server.bucket.clone();
    let run = sb.spawn(&["build", "./..."], &refs(&env), Prog::Ours(&[&bucket])).wait();
    run.assert_ok();
    let stats = sb.last_stats();
    assert!(stat(&stats, "puts") > 0 && stat(&stats, "uploads") == 0, "{stats}");
    let ours: Vec<&str> = run.stderr.lines().filter(|l| l.starts_with("gocacheprog-s3:")).collect();
    assert_eq!(ours.len(), 1, "{}", run.stderr);
    for w in [
        "run `aws login --profile console`",
        "the console session ended",
        "AccessDeniedException: Your session has expired",
        "The build continues with the local cache only",
    ] {
        assert!(ours[0].contains(w), "{w:?} not in {}", ours[0]);
    }
    assert_eq!(signin.refusals().len(), 1, "the proof was good, the refresh token was not: {:?}", signin.refusals());
    assert!(signin.refusals()[0].contains("TOKEN_EXPIRED"));

    // `check` fails on it with the command to run.
    let check = run_cacheprog(&["check", &bucket], &refs(&env), Vec::new(), Duration::from_secs(60));
    assert_eq!(check.status.code(), Some(1), "{}\n{}", check.stdout, check.stderr);
    assert!(
        check.stdout.contains(&format!("credentials: console login {SESSION} (profile console)")),
        "{}",
        check.stdout
    );
    assert!(check.stdout.contains("fix:   run `aws login --profile console`, then check again"), "{}", check.stdout);
}
