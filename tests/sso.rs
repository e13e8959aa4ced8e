//! IAM Identity Center (SSO) profiles end to end: a real `go build` through the program with
//! an SSO profile gets its objects into Garage, with the portal and SSO OIDC played by the
//! strict loopback stand-ins of `common::sso` (the portal hands out Garage's key pair as the
//! role's credentials). The login is what `aws sso login` leaves in
//! `~/.aws/sso/cache/<sha1>.json`, named here with ring's SHA-1 independently of the program.
//! Every run is at `-vvv` where it matters, and every output is checked for the access
//! token, refresh token, client secret and role credentials (`common::secret`).

use crate::common;
use crate::credentials::{build_uploads_everything, env_without_keys, write};

use common::go::{run_cacheprog, stat, GoRun, Prog, Sandbox};
use common::remote::refs;
use common::servers::S3Server;
use common::sso::SsoStandIns;
use serde_json::{json, Value};
use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

const ACCOUNT: &str = "111122223333";
const ROLE: &str = "CacheWriter";
const START_URL: &str = "https://corp.awsapps.com/start";

/// A store, the stand-ins giving its keys as role CacheWriter in ACCOUNT, a sandbox, and its
/// home with `config` as `~/.aws/config`.
struct World {
    server: S3Server,
    sso: SsoStandIns,
    sb: Sandbox,
    home: PathBuf,
}

fn world(label: &str, server: S3Server, config: &str) -> World {
    let sso = SsoStandIns::start(ACCOUNT, ROLE, (&server.access_key, &server.secret_key));
    let sb = Sandbox::new(label);
    let home = sb.root.join("home");
    write(&home.join(".aws/config"), config);
    World { server, sso, sb, home }
}

/// An access token the portal never issued (a secret all the same).
fn unknown_token() -> String {
    common::secret(&format!("aoaAAAAAGZunknown{}", common::servers::random_hex(20)))
}

/// `[profile cache]` of sso-session `corp`, for `role`.
fn session_config(role: &str) -> String {
    format!(
        "[default]\nregion = eu-west-1\n\n[profile cache]\nsso_session = corp\nsso_account_id = {ACCOUNT}\n\
         sso_role_name = {role}\n\n[sso-session corp]\nsso_start_url = {START_URL}\nsso_region = eu-west-1\n\
         sso_registration_scopes = sso:account:access\n"
    )
}

/// Where `aws sso login` caches the login named `key` (sso-session name or start URL).
fn cache_file(home: &Path, key: &str) -> PathBuf {
    let digest = ring::digest::digest(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY, key.as_bytes());
    home.join(".aws/sso/cache").join(format!("{}.json", hex::encode(digest.as_ref())))
}

fn rfc3339(t: SystemTime) -> String {
    let s = common::go::rfc3339(t);
    // As the AWS CLI writes it: whole seconds.
    match s.split_once('.') {
        Some((whole, _)) => format!("{whole}Z"),
        None => s,
    }
}

/// A cached login as `aws sso login` writes it for sso-session `corp`; `refresh` adds the
/// client registration and refresh token.
fn login(token: &str, expires: SystemTime, refresh: Option<&(String, String, String)>) -> Value {
    let mut login = json!({"startUrl": START_URL, "region": "eu-west-1", "accessToken": token,
                           "expiresAt": rfc3339(expires)});
    if let Some((id, secret, refresh_token)) = refresh {
        let registration = rfc3339(SystemTime::now() + Duration::from_secs(90 * 86_400));
        for (k, v) in [
            ("clientId", id),
            ("clientSecret", secret),
            ("refreshToken", refresh_token),
            ("registrationExpiresAt", &registration),
        ] {
            login[k] = Value::String(v.clone());
        }
    }
    login
}

/// go's environment for `server` with the SSO profile `profile` of `home`, the stand-ins'
/// endpoints, and no keys.
fn sso_env(sb: &Sandbox, server: &S3Server, sso: &SsoStandIns, home: &Path, profile: &str) -> Vec<(String, String)> {
    let mut env = env_without_keys(sb, server, "t");
    env.retain(|(k, _)| !k.starts_with("AWS_ENDPOINT_URL_SSO"));
    env.extend([
        ("HOME".to_string(), home.to_string_lossy().into_owned()),
        ("AWS_PROFILE".into(), profile.into()),
        ("AWS_ENDPOINT_URL_SSO".into(), sso.portal.url()),
        ("AWS_ENDPOINT_URL_SSO_OIDC".into(), sso.oidc.url()),
    ]);
    env
}

/// `env` with the empty local tier `tier` (so that the build asks the bucket again).
fn on_tier(sb: &Sandbox, env: &[(String, String)], tier: &str) -> Vec<(String, String)> {
    let dir = sb.root.join(tier);
    fs::create_dir_all(&dir).unwrap();
    let mut env = env.to_vec();
    env.retain(|(k, _)| k != "GOCACHE");
    env.push(("GOCACHE".into(), dir.to_string_lossy().into_owned()));
    env
}

/// A build on the empty local tier `tier` that cannot use the bucket: it succeeds, uploads
/// nothing, and says `words` on exactly one of the program's lines (at the default
/// verbosity; with `-vvv` other lines repeat the cause, and only secrets are looked for).
fn build_goes_on_local_only(
    sb: &Sandbox,
    server: &S3Server,
    env: &[(String, String)],
    tier: &str,
    verbose: bool,
    words: &[&str],
) -> GoRun {
    let bucket = server.bucket.clone();
    let env = on_tier(sb, env, tier);
    let args: &[&str] = if verbose { &["-vvv", &bucket] } else { &[&bucket] };
    let run = sb.spawn(&["build", "./..."], &refs(&env), Prog::Ours(args)).wait();
    run.assert_ok();
    let stats = sb.last_stats();
    assert!(stat(&stats, "puts") > 0, "{stats}");
    assert_eq!(stat(&stats, "uploads"), 0, "{stats}");
    let lines: Vec<&str> = run.stderr.lines().filter(|l| l.contains(words[0])).collect();
    if !verbose {
        let ours: Vec<&str> = run.stderr.lines().filter(|l| l.starts_with("gocacheprog-s3:")).collect();
        assert_eq!(ours, lines, "one line, and it says {:?}:\n{}", words[0], run.stderr);
        assert_eq!(lines.len(), 1, "one line says {:?}:\n{}", words[0], run.stderr);
    }
    let off = lines.iter().find(|l| l.contains("switched off")).unwrap_or_else(|| panic!("{}", run.stderr));
    for w in words {
        assert!(off.contains(w), "{w:?} not in {off:?}");
    }
    assert!(off.contains("The build continues with the local cache only"), "{off}");
    assert!(server.list("").is_empty(), "nothing reaches the bucket");
    run
}

/// The sso-session form: the cached login (under the SHA-1 of the session's name) buys the
/// role's credentials at the portal, and every compile lands in the bucket.
#[test]
fn an_sso_session_profile_builds_into_the_bucket() {
    let World { server, sso, sb, home } = world("sso-session", S3Server::garage(), &session_config(ROLE));
    let token = sso.log_in();
    let expires = SystemTime::now() + Duration::from_secs(8 * 3600);
    write(&cache_file(&home, "corp"), &login(&token, expires, None).to_string());
    let env = sso_env(&sb, &server, &sso, &home, "cache");
    let run = build_uploads_everything(&sb, &server, &env, &["-vvv"]);
    assert!(
        run.stderr.contains("credentials: SSO role CacheWriter in account 111122223333 (profile cache)"),
        "{}",
        run.stderr
    );
    let asked = sso.portal.requests();
    assert!(!asked.is_empty());
    for r in &asked {
        assert_eq!(r.path, format!("/federation/credentials?account_id={ACCOUNT}&role_name={ROLE}"));
        assert_eq!(r.header("x-amz-sso_bearer_token"), Some(token.as_str()));
    }
    assert!(sso.oidc.requests().is_empty(), "a valid login is not refreshed");
}

/// The legacy form (start URL and region in the profile, login cached under the start URL's
/// SHA-1), with the config file where `AWS_CONFIG_FILE` says and the cache under `HOME`.
#[test]
fn a_legacy_profile_from_aws_config_file() {
    let legacy = format!(
        "[profile old]\nsso_start_url = {START_URL}\nsso_region = eu-west-1\nsso_account_id = {ACCOUNT}\n\
         sso_role_name = {ROLE}\n"
    );
    let World { server, sso, sb, home } = world("sso-legacy", S3Server::garage(), "");
    // The config file elsewhere, and an empty one in ~/.aws.
    let config = sb.root.join("etc/aws-config");
    write(&config, &legacy);
    let token = sso.log_in();
    let expires = SystemTime::now() + Duration::from_secs(3600);
    write(
        &cache_file(&home, START_URL),
        &json!({"startUrl": START_URL, "region": "eu-west-1", "accessToken": token, "expiresAt": rfc3339(expires)})
            .to_string(),
    );
    let mut env = sso_env(&sb, &server, &sso, &home, "old");
    env.push(("AWS_CONFIG_FILE".into(), config.to_string_lossy().into_owned()));
    build_uploads_everything(&sb, &server, &env, &["-vvv"]);
    assert!(sso.portal.requests().iter().all(|r| r.header("x-amz-sso_bearer_token") == Some(token.as_str())));
}

/// An expired login with a refresh token: SSO OIDC refreshes it (client id and secret, the
/// refresh token), the new token buys the credentials, and the cache file is rewritten as the
/// SDKs rewrite it, so the next go command needs no refresh.
#[test]
fn an_expired_login_is_refreshed_through_sso_oidc() {
    let World { server, sso, sb, home } = world("sso-refresh", S3Server::garage(), &session_config(ROLE));
    let client = sso.register_client();
    let stale = unknown_token();
    let file = cache_file(&home, "corp");
    let expired = SystemTime::now() - Duration::from_secs(600);
    write(&file, &login(&stale, expired, Some(&client)).to_string());
    let env = sso_env(&sb, &server, &sso, &home, "cache");
    build_uploads_everything(&sb, &server, &env, &["-vvv"]);

    assert_eq!(sso.oidc.requests().len(), 1, "one refresh: {:?}", sso.oidc.requests());
    let issued = sso.issued();
    assert_eq!(issued.len(), 1);
    let asked = sso.portal.requests();
    assert!(!asked.is_empty() && asked.iter().all(|r| r.header("x-amz-sso_bearer_token") == Some(issued[0].as_str())));
    let cached: Value = serde_json::from_slice(&fs::read(&file).unwrap()).unwrap();
    assert_eq!(cached["accessToken"], issued[0].as_str());
    assert_eq!(cached["refreshToken"], sso.refresh_token().unwrap().as_str(), "the rotated refresh token is kept");
    assert_ne!(cached["refreshToken"], client.2.as_str());
    let expires = gocacheprog_s3::calendar::parse_rfc3339(cached["expiresAt"].as_str().unwrap()).unwrap();
    assert!(expires > SystemTime::now() + Duration::from_secs(7 * 3600), "{}", cached["expiresAt"]);
    for (k, v) in [("clientId", &client.0), ("clientSecret", &client.1), ("startUrl", &START_URL.to_string())] {
        assert_eq!(cached[k], v.as_str(), "{k} kept");
    }
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(fs::metadata(&file).unwrap().permissions().mode() & 0o777, 0o600);
    let names: Vec<_> = fs::read_dir(file.parent().unwrap()).unwrap().flatten().map(|e| e.file_name()).collect();
    assert_eq!(names.len(), 1, "no temporary file left: {names:?}");

    // The next go command (on an empty local tier, so it needs the bucket) finds the
    // refreshed login: no second refresh.
    let again = on_tier(&sb, &env, "t2");
    build_uploads_everything(&sb, &server, &again, &["--prefix", "again"]);
    assert_eq!(sso.oidc.requests().len(), 1);
    assert_eq!(sso.portal.requests().last().unwrap().header("x-amz-sso_bearer_token"), Some(issued[0].as_str()));
}

/// An expired login that cannot be refreshed (no refresh token; a refresh token SSO OIDC
/// refuses): one line says to run `aws sso login --profile cache`, and the build succeeds
/// from the local tier. The portal is never shown the expired token.
#[test]
fn an_expired_login_says_once_to_log_in_again() {
    let World { server, sso, sb, home } = world("sso-expired", S3Server::garage(), &session_config(ROLE));
    let stale = unknown_token();
    let file = cache_file(&home, "corp");
    let expired = SystemTime::now() - Duration::from_secs(600);
    write(&file, &login(&stale, expired, None).to_string());
    let env = sso_env(&sb, &server, &sso, &home, "cache");
    build_goes_on_local_only(
        &sb,
        &server,
        &env,
        "t1",
        false,
        &[
            "run `aws sso login --profile cache`",
            "SSO login (sso-session corp) expired at",
            "no refresh token is cached",
        ],
    );
    assert!(sso.oidc.requests().is_empty() && sso.portal.requests().is_empty());

    // A refresh token SSO OIDC no longer takes (another machine's refresh rotated it).
    let mut client = sso.register_client();
    client.2 = common::secret(&format!("aorAAAAAGZold{}", common::servers::random_hex(20)));
    write(&file, &login(&stale, expired, Some(&client)).to_string());
    build_goes_on_local_only(
        &sb,
        &server,
        &env,
        "t2",
        false,
        &["run `aws sso login --profile cache`", "InvalidGrantException: Invalid refresh token provided"],
    );
    assert_eq!(sso.oidc.requests().len(), 1);
    // At -vvv too, nothing secret reaches a line (the refresh token, client secret and
    // expired access token were all sent or read).
    build_goes_on_local_only(&sb, &server, &env, "t3", true, &["run `aws sso login --profile cache`"]);
    assert_eq!(sso.oidc.requests().len(), 2);
    assert!(sso.portal.requests().is_empty());
}

/// The portal's refusals reach the user in one line each: a role the login may not take
/// (403), a token the portal does not know (401).
#[test]
fn the_portals_refusals_name_the_fix() {
    let World { server, sso, sb, home } =
        world("sso-refused", S3Server::garage(), &session_config("AdministratorAccess"));
    let later = SystemTime::now() + Duration::from_secs(3600);
    write(&cache_file(&home, "corp"), &login(&sso.log_in(), later, None).to_string());
    let env = sso_env(&sb, &server, &sso, &home, "cache");
    build_goes_on_local_only(
        &sb,
        &server,
        &env,
        "t1",
        false,
        &["no role AdministratorAccess in account 111122223333", "ForbiddenException: No access", "sso_role_name"],
    );

    write(&home.join(".aws/config"), &session_config(ROLE));
    let unknown = unknown_token();
    write(&cache_file(&home, "corp"), &login(&unknown, later, None).to_string());
    build_goes_on_local_only(
        &sb,
        &server,
        &env,
        "t2",
        false,
        &["run `aws sso login --profile cache`", "UnauthorizedException: Session token not found or invalid"],
    );
    assert!(sso.portal.requests().iter().any(|r| r.header("x-amz-sso_bearer_token") == Some(unknown.as_str())));
}

/// `check` names the SSO role and profile and says when the login's token expires and
/// whether it refreshes; an expired login fails the check with the command to run.
#[test]
fn check_reports_the_sso_login() {
    let World { server, sso, sb, home } = world("sso-check", S3Server::garage(), &session_config(ROLE));
    let client = sso.register_client();
    let later = SystemTime::now() + Duration::from_secs(3 * 3600);
    write(&cache_file(&home, "corp"), &login(&sso.log_in(), later, Some(&client)).to_string());
    let mut env = sso_env(&sb, &server, &sso, &home, "cache");
    env.retain(|(k, _)| k != "GOCACHE");
    let env_refs = refs(&env);
    let check = |args: &[&str]| {
        let mut all = vec!["check"];
        all.extend_from_slice(args);
        all.push(&server.bucket);
        run_cacheprog(&all, &env_refs, Vec::new(), Duration::from_secs(60))
    };
    let run = check(&[]);
    assert_eq!(run.status.code(), Some(0), "{}\n{}", run.stdout, run.stderr);
    let report = &run.stdout;
    assert!(report.contains("credentials: SSO role CacheWriter in account 111122223333 (profile cache)"), "{report}");
    let login_line = report.lines().find(|l| l.trim_start().starts_with("SSO login:")).unwrap_or_default();
    for w in ["sso-session corp", &sso.portal.url(), "token expires", "min)", "refreshed through SSO OIDC"] {
        assert!(login_line.contains(w), "{w:?} not in {login_line:?}\n{report}");
    }
    let json_run = check(&["--json"]);
    let parsed: Value = serde_json::from_str(json_run.stdout.trim()).unwrap();
    assert!(parsed["credentials"]["login"].as_str().unwrap().contains("sso-session corp"), "{parsed}");

    let earlier = SystemTime::now() - Duration::from_secs(60);
    write(&cache_file(&home, "corp"), &login(&sso.log_in(), earlier, None).to_string());
    let run = check(&[]);
    assert_eq!(run.status.code(), Some(1), "{}\n{}", run.stdout, run.stderr);
    assert!(run.stdout.contains("fix:   run `aws sso login --profile cache`, then check again"), "{}", run.stdout);
    assert!(run.stdout.contains("token expired"), "{}", run.stdout);
}

/// An SSO profile as the `source_profile` of a role in another account: the SSO role's
/// credentials sign STS `AssumeRole` (moto's real STS), whose credentials sign the build's
/// requests.
#[test]
fn an_sso_profile_as_the_source_of_an_assumed_role() {
    let World { server, sso, sb, home } = world("sso-assume-role", S3Server::moto(), "");
    // Without a session token: moto's STS refuses one it did not issue itself.
    sso.without_session_token();
    write(
        &home.join(".aws/config"),
        &format!(
            "{}\n[profile deploy]\nrole_arn = {}\nsource_profile = cache\n",
            session_config(ROLE),
            server.role_arn
        ),
    );
    let later = SystemTime::now() + Duration::from_secs(3600);
    write(&cache_file(&home, "corp"), &login(&sso.log_in(), later, None).to_string());
    let mut env = sso_env(&sb, &server, &sso, &home, "deploy");
    env.retain(|(k, _)| k != "AWS_ENDPOINT_URL_STS");
    env.push(("AWS_ENDPOINT_URL_STS".into(), server.endpoint.clone()));
    let run = build_uploads_everything(&sb, &server, &env, &["-vv"]);
    assert!(
        run.stderr.contains("assumed with SSO role CacheWriter in account 111122223333 (profile cache)"),
        "{}",
        run.stderr
    );
    assert!(!sso.portal.requests().is_empty());
}
