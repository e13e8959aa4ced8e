//! IAM Identity Center (SSO) profiles, as `aws configure sso` writes them:
//!
//! ```ini
//! [profile dev]
//! sso_session = corp
//! sso_account_id = 111122223333
//! sso_role_name = CacheWriter
//!
//! [sso-session corp]
//! sso_start_url = https://corp.awsapps.com/start
//! sso_region = eu-west-1
//! sso_registration_scopes = sso:account:access
//! ```
//!
//! or the legacy form with `sso_start_url` and `sso_region` in the profile. The login
//! `aws sso login` cached (see `sso_token`) is exchanged at the portal (`GetRoleCredentials`,
//! `GET /federation/credentials?account_id=..&role_name=..` with the token in
//! `x-amz-sso_bearer_token`) for the role's temporary credentials, fetched again before they
//! expire like any others. The endpoints are resolved as the SDKs resolve service-specific
//! endpoints: `AWS_ENDPOINT_URL_SSO` / `AWS_ENDPOINT_URL_SSO_OIDC`, `AWS_ENDPOINT_URL`, the
//! profile's `services` section (`sso` / `sso_oidc`), its `endpoint_url`, else
//! `https://portal.sso.<sso_region>.amazonaws.com` / `https://oidc.<sso_region>.amazonaws.com`.

use super::profile::{Files, Properties};
use super::service_endpoint::configured as endpoint;
use super::sso_token::{self, error_summary, scrub, TokenSource};
use super::{Context, Credentials, Issued};
use crate::s3::http::HttpRequest;
use crate::s3::sigv4::uri_encode;
use serde_json::Value;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

/// A profile's SSO role.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Sso {
    pub(crate) account_id: String,
    pub(crate) role_name: String,
    /// The portal's base URL.
    pub(crate) portal: String,
    pub(crate) login: TokenSource,
}

/// The properties that make a profile an SSO profile.
const SSO_KEYS: [&str; 5] = ["sso_session", "sso_start_url", "sso_region", "sso_account_id", "sso_role_name"];

impl Sso {
    /// The SSO role profile `name` describes (`None`: it has no `sso_*` property), or why
    /// it cannot work, checked as botocore checks it.
    pub(crate) fn from_profile(
        ctx: &Context,
        files: &Files,
        name: &str,
        props: &Properties,
    ) -> Result<Option<Sso>, String> {
        if !SSO_KEYS.iter().any(|k| props.contains_key(*k)) {
            return Ok(None);
        }
        let (account_id, role_name) = match (props.get("sso_account_id"), props.get("sso_role_name")) {
            (Some(account), Some(role)) => (account.clone(), role.clone()),
            (None, None) => {
                return Err(format!(
                    "profile {name} names an SSO login but no sso_account_id and sso_role_name, so it gives an SSO \
                     token, not AWS credentials: add the account and the role (`aws configure sso --profile {name}` \
                     asks for them)"
                ))
            }
            (Some(_), None) => return Err(format!("profile {name} has sso_account_id but no sso_role_name; set both")),
            (None, Some(_)) => return Err(format!("profile {name} has sso_role_name but no sso_account_id; set both")),
        };
        let session = props.get("sso_session").cloned();
        let mut settings = props.clone();
        if let Some(session) = &session {
            let section = files.sso_session(session).ok_or_else(|| {
                format!(
                    "profile {name} names sso_session {session}, but the config file has no [sso-session {session}]"
                )
            })?;
            for (key, value) in section {
                match props.get(key) {
                    Some(own) if own != value => {
                        return Err(format!(
                            "profile {name} sets {key} = {own} but its [sso-session {session}] sets {value}; remove \
                             it from the profile"
                        ))
                    }
                    _ => settings.insert(key.clone(), value.clone()),
                };
            }
        }
        let missing: Vec<&str> =
            ["sso_start_url", "sso_region"].into_iter().filter(|k| !settings.contains_key(*k)).collect();
        if !missing.is_empty() {
            let place = session.as_ref().map_or("the profile".to_string(), |s| format!("[sso-session {s}]"));
            return Err(format!("profile {name} is set up for SSO but {place} lacks {}", missing.join(" and ")));
        }
        let (start_url, region) = (settings["sso_start_url"].clone(), settings["sso_region"].clone());
        let home = ctx.var("HOME").map(PathBuf::from).ok_or_else(|| {
            format!("profile {name} uses SSO, whose login is cached under ~/.aws/sso/cache, but HOME is not set")
        })?;
        let cache_file = sso_token::cache_file(&home, session.as_deref().unwrap_or(&start_url));
        let suffix = if region.starts_with("cn-") { "amazonaws.com.cn" } else { "amazonaws.com" };
        let portal =
            endpoint(ctx, files, props, "SSO")?.unwrap_or_else(|| format!("https://portal.sso.{region}.{suffix}"));
        let oidc =
            endpoint(ctx, files, props, "SSO OIDC")?.unwrap_or_else(|| format!("https://oidc.{region}.{suffix}"));
        Ok(Some(Sso {
            account_id,
            role_name,
            portal,
            login: TokenSource { profile: name.to_string(), session, start_url, region, cache_file, oidc },
        }))
    }

    /// For messages: the role, its account and the profile.
    pub(crate) fn describe(&self) -> String {
        format!("SSO role {} in account {} (profile {})", self.role_name, self.account_id, self.login.profile)
    }

    /// The role's credentials from the portal, with the cached login (refreshed if need be).
    pub(crate) fn fetch(&self, ctx: &Context) -> Result<Issued, String> {
        let token = self.login.token(ctx)?;
        let url = format!(
            "{}/federation/credentials?account_id={}&role_name={}",
            self.portal,
            uri_encode(&self.account_id, true),
            uri_encode(&self.role_name, true)
        );
        let request = HttpRequest::new("GET", &url, sso_token::TIMEOUT)
            .header("x-amz-sso_bearer_token", &token.access_token)
            .header("accept", "application/json");
        let secret = [token.access_token.as_str()];
        let response = ctx.http.send(&request).map_err(|e| scrub(&format!("the SSO portal at {url}: {e}"), &secret))?;
        let summary = || scrub(&error_summary(&response), &secret);
        match response.status {
            200 => parse(&response.body),
            401 => Err(format!(
                "the SSO portal refused the login ({}; {}): {}",
                self.login.label(),
                summary(),
                self.login.advice()
            )),
            403 | 404 => Err(format!(
                "the SSO portal gives this login no role {} in account {} ({}): check sso_account_id and \
                 sso_role_name of profile {} (`aws sso list-account-roles` lists them)",
                self.role_name,
                self.account_id,
                summary(),
                self.login.profile
            )),
            _ => Err(format!("the SSO portal at {} answered {}", self.portal, summary())),
        }
    }
}

/// `roleCredentials` of a `GetRoleCredentials` answer (`expiration` in milliseconds).
fn parse(body: &[u8]) -> Result<Issued, String> {
    let v: Value = serde_json::from_slice(body).map_err(|e| format!("the SSO portal's answer is not JSON ({e})"))?;
    let creds = v.get("roleCredentials").ok_or("the SSO portal's answer holds no roleCredentials")?;
    let field = |k: &str| creds.get(k).and_then(Value::as_str).filter(|s| !s.is_empty()).map(str::to_string);
    let (Some(access_key_id), Some(secret_access_key)) = (field("accessKeyId"), field("secretAccessKey")) else {
        return Err("the SSO portal's answer lacks accessKeyId or secretAccessKey".into());
    };
    let expires = creds
        .get("expiration")
        .and_then(Value::as_u64)
        .map(|ms| SystemTime::UNIX_EPOCH + Duration::from_millis(ms))
        .ok_or("the SSO portal's answer holds no expiration")?;
    Ok(Issued {
        credentials: Credentials { access_key_id, secret_access_key, session_token: field("sessionToken") },
        expires: Some(expires),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::s3::credentials::chain::{resolve, Source};
    use crate::s3::credentials::tests::{context, Exchange, Replay};
    use crate::s3::http::{Http, HttpRequest, HttpResponse};
    use std::path::Path;
    use std::sync::{Arc, Mutex};

    /// The clock of `tests::context`: 2020-09-13T12:26:40Z.
    const NOW: &str = "2020-09-13T12:26:40Z";

    /// A fresh root directory, removed when dropped.
    struct World(PathBuf);

    impl Drop for World {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    impl std::ops::Deref for World {
        type Target = PathBuf;
        fn deref(&self) -> &PathBuf {
            &self.0
        }
    }

    /// A home directory under a fresh root: `.aws/config` and cache files by key.
    fn world(config: &str, cached: &[(&str, &str)]) -> World {
        let root = std::env::temp_dir().join(format!("gocacheprog-sso-unit-{:x}", crate::random::nonce()));
        std::fs::create_dir_all(root.join("home/.aws/sso/cache")).unwrap();
        std::fs::write(root.join("home/.aws/config"), config).unwrap();
        for (key, json) in cached {
            let file = sso_token::cache_file(Path::new("/home"), key);
            std::fs::write(root.join(file.strip_prefix("/").unwrap()), json).unwrap();
        }
        World(root)
    }

    fn env(profile: &str) -> Vec<(String, String)> {
        vec![("HOME".into(), "/home".into()), ("AWS_PROFILE".into(), profile.into())]
    }

    fn answer(status: u16, headers: &[(&str, &str)], body: &str) -> HttpResponse {
        HttpResponse {
            status,
            headers: headers.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            body: body.as_bytes().to_vec(),
        }
    }

    fn exchange(method: &str, url: &str, response: HttpResponse) -> Exchange {
        (method.into(), url.into(), Vec::new(), response)
    }

    /// Resolves the chain in `ctx` with `replay` as its network and fetches.
    fn fetch(mut ctx: Context, replay: &Arc<Replay>) -> Result<Issued, String> {
        ctx.http = replay.clone();
        let source = resolve(&ctx)?.source.ok_or("no source")?;
        assert!(matches!(source, Source::Sso(_)), "{source:?}");
        let fetched = source.fetch(&ctx);
        assert_eq!(replay.left(), 0, "a recorded exchange was not asked for: {fetched:?}");
        fetched
    }

    const LEGACY: &str =
        "[profile sso-test]\nsso_start_url = https://ssotest.awsapps.com/start\nsso_region = us-east-2\n\
                          sso_account_id = 123456789\nsso_role_name = MySsoRole\nregion = us-east-2\n";
    const LEGACY_URL: &str =
        "https://portal.sso.us-east-2.amazonaws.com/federation/credentials?account_id=123456789&role_name=MySsoRole";
    const SESSION: &str = "[profile dev]\nsso_session = corp\nsso_account_id = 111122223333\n\
                           sso_role_name = CacheWriter\n\n[sso-session corp]\n\
                           sso_start_url = https://corp.awsapps.com/start\nsso_region = eu-west-1\n\
                           sso_registration_scopes = sso:account:access\n";
    const SESSION_URL: &str = "https://portal.sso.eu-west-1.amazonaws.com/federation/credentials\
                               ?account_id=111122223333&role_name=CacheWriter";
    const OIDC_URL: &str = "https://oidc.eu-west-1.amazonaws.com/token";

    /// smithy-rs's recorded `GetRoleCredentials` answer (`sso_credentials`).
    fn role_credentials() -> String {
        serde_json::json!({"roleCredentials": {"accessKeyId": "ASIARTESTID", "secretAccessKey": "TESTSECRETKEY",
                                               "sessionToken": "TESTSESSIONTOKEN", "expiration": 1651516560000u64}})
        .to_string()
    }

    /// Config file lines.
    fn ini(lines: &[&str]) -> String {
        lines.iter().map(|l| format!("{l}\n")).collect()
    }

    /// A cached sso-session login expiring at `expires`, refreshable unless `refresh` is false.
    fn session_token(expires: &str, refresh: bool) -> String {
        let mut token = serde_json::json!({"startUrl": "https://corp.awsapps.com/start", "region": "eu-west-1",
                                           "accessToken": "cached-access-token", "expiresAt": expires});
        if refresh {
            for (k, v) in [
                ("refreshToken", "cached-refresh-token"),
                ("clientId", "cached-client-id"),
                ("clientSecret", "cached-client-secret"),
                ("registrationExpiresAt", "2020-12-01T00:00:00Z"),
            ] {
                token[k] = v.into();
            }
        }
        token.to_string()
    }

    #[test]
    fn cache_files_are_named_as_the_sdks_name_them() {
        // smithy-rs test data: sso-session "dev", and a legacy start URL.
        let home = Path::new("/home");
        assert_eq!(
            sso_token::cache_file(home, "dev"),
            Path::new("/home/.aws/sso/cache/34c6fceca75e456f25e7e99531e2425c6c1de443.json")
        );
        assert_eq!(
            sso_token::cache_file(home, "https://ssotest.awsapps.com/start"),
            Path::new("/home/.aws/sso/cache/dace00cba5f8355ec9d274ceb2bcebdfbeed0e12.json")
        );
    }

    /// smithy-rs's recorded `sso_assume_role` case: a legacy profile, its token cached under
    /// the start URL's hash, the role's credentials from the portal.
    #[test]
    fn the_recorded_legacy_profile_case() {
        let token = r#"{"accessToken": "a-token", "expiresAt": "2080-10-16T03:56:45Z",
                        "startUrl": "https://ssotest.awsapps.com/start"}"#;
        let root = world(LEGACY, &[("https://ssotest.awsapps.com/start", token)]);
        let body = r#"{"roleCredentials":{"accessKeyId":"ASIARCORRECT","secretAccessKey":"secretkeycorrect",
                       "sessionToken":"tokencorrect","expiration":1234567890000}}"#;
        let replay = Replay::new(vec![exchange("GET", LEGACY_URL, answer(200, &[], body))]);
        let issued = fetch(context(&env("sso-test"), Some(root.to_path_buf()), Vec::new()), &replay).unwrap();
        assert_eq!(issued.credentials.access_key_id, "ASIARCORRECT");
        assert_eq!(issued.credentials.secret_access_key, "secretkeycorrect");
        assert_eq!(issued.credentials.session_token.as_deref(), Some("tokencorrect"));
        assert_eq!(issued.expires, Some(SystemTime::UNIX_EPOCH + Duration::from_secs(1_234_567_890)));
        let seen = replay.seen.lock().unwrap();
        assert_eq!(seen[0].headers.iter().find(|(k, _)| k == "x-amz-sso_bearer_token").unwrap().1, "a-token");
    }

    /// smithy-rs's `sso_no_token_file` and `sso_server_error` cases: no cached login says to
    /// log in (and sends nothing); a failing portal is an error naming it.
    #[test]
    fn no_login_and_a_failing_portal() {
        let root = world(
            LEGACY,
            &[("https://other.awsapps.com/start", r#"{"accessToken":"a","expiresAt":"2080-01-01T00:00:00Z"}"#)],
        );
        let replay = Replay::new(Vec::new());
        let e = fetch(context(&env("sso-test"), Some(root.to_path_buf()), Vec::new()), &replay).unwrap_err();
        assert!(e.contains("dace00cba5f8355ec9d274ceb2bcebdfbeed0e12.json"), "{e}");
        assert!(e.contains("run `aws sso login --profile sso-test`"), "{e}");
        assert!(replay.seen.lock().unwrap().is_empty());

        let token = r#"{"accessToken":"a-token","expiresAt":"2080-10-16T03:56:45Z"}"#;
        let root = world(LEGACY, &[("https://ssotest.awsapps.com/start", token)]);
        let replay = Replay::new(vec![exchange("GET", LEGACY_URL, answer(503, &[], ""))]);
        let e = fetch(context(&env("sso-test"), Some(root.to_path_buf()), Vec::new()), &replay).unwrap_err();
        assert!(e.contains("answered HTTP 503"), "{e}");
    }

    /// The portal's refusals in its own shapes: 401 for a token it does not know, 403 for
    /// a role the user may not take.
    #[test]
    fn the_portals_refusals_say_what_to_do() {
        let token = session_token("2080-01-01T00:00:00Z", false);
        let unauthorized = answer(
            401,
            &[("x-amzn-errortype", "UnauthorizedException")],
            r#"{"message":"Session token not found or invalid"}"#,
        );
        let forbidden = answer(403, &[("x-amzn-errortype", "ForbiddenException")], r#"{"message":"No access"}"#);
        for (response, words) in [
            (
                unauthorized,
                &["UnauthorizedException: Session token not found or invalid", "aws sso login --profile dev"][..],
            ),
            (forbidden, &["no role CacheWriter in account 111122223333", "ForbiddenException: No access"][..]),
        ] {
            let root = world(SESSION, &[("corp", &token)]);
            let replay = Replay::new(vec![exchange("GET", SESSION_URL, response)]);
            let e = fetch(context(&env("dev"), Some(root.to_path_buf()), Vec::new()), &replay).unwrap_err();
            for w in words {
                assert!(e.contains(w), "{w:?} not in {e}");
            }
            assert!(!e.contains("cached-access-token"), "{e}");
        }
    }

    #[test]
    fn profiles_are_checked_as_botocore_checks_them() {
        let profile = ["[profile dev]"];
        let account_role = ["sso_account_id = 1", "sso_role_name = R"];
        let legacy = ["sso_start_url = https://x/start", "sso_region = r"];
        let cases: Vec<(String, &str)> = vec![
            (ini(&[&profile[..], &["sso_session = gone"], &account_role].concat()), "no [sso-session gone]"),
            (ini(&[&profile[..], &legacy, &["sso_account_id = 1"]].concat()), "no sso_role_name"),
            (ini(&[&profile[..], &legacy, &["sso_role_name = R"]].concat()), "no sso_account_id"),
            // smithy-rs's invalid_sso_credentials_config: a token-only profile.
            (
                ini(&[&profile[..], &["sso_session = s", "[sso-session s]"], &legacy].concat()),
                "gives an SSO token, not AWS credentials",
            ),
            (
                ini(&[&profile[..], &["sso_start_url = https://x/start"], &account_role].concat()),
                "the profile lacks sso_region",
            ),
            (
                ini(&[&profile[..], &["sso_session = s"], &account_role, &["[sso-session s]", "sso_region = r"]]
                    .concat()),
                "[sso-session s] lacks sso_start_url",
            ),
            (
                ini(&[
                    &profile[..],
                    &["sso_session = s", "sso_region = a"],
                    &account_role,
                    &["[sso-session s]"],
                    &legacy,
                ]
                .concat())
                .replace("sso_region = r", "sso_region = b"),
                "sets sso_region = a but its [sso-session s] sets b",
            ),
        ];
        for (config, words) in cases {
            let root = world(&config, &[]);
            let e = resolve(&context(&env("dev"), Some(root.to_path_buf()), Vec::new())).unwrap_err();
            assert!(e.contains(words), "{words:?} not in {e}");
        }
        // The same value in both places is fine (botocore), and the session's sso_region is used.
        let both = [&profile[..], &["sso_session = s", "sso_start_url = https://x/start"], &account_role];
        let session = ["[sso-session s]", "sso_region = ap-south-1", "sso_start_url = https://x/start"];
        let root = world(&ini(&[&both.concat()[..], &session].concat()), &[]);
        let source = resolve(&context(&env("dev"), Some(root.to_path_buf()), Vec::new())).unwrap().source.unwrap();
        let Source::Sso(role) = source else { panic!("{source:?}") };
        assert_eq!(role.portal, "https://portal.sso.ap-south-1.amazonaws.com");
        assert_eq!(role.login.oidc, "https://oidc.ap-south-1.amazonaws.com");
        assert_eq!(role.login.cache_file, sso_token::cache_file(Path::new("/home"), "s"));
    }

    /// Service-specific endpoints in the SDKs' order: the service's variable, the global
    /// one, the profile's services section, the profile's endpoint_url, the default.
    #[test]
    fn endpoints_in_the_sdks_order() {
        let config = format!(
            "{SESSION}\n[profile dev]\nservices = local\nendpoint_url = http://profile:1\n\n[services local]\nsso =\n  \
             endpoint_url = http://services-sso:2\nsso_oidc =\n  endpoint_url = http://services-oidc:3\n"
        );
        let root = world(&config, &[]);
        let endpoints = |extra: &[(&str, &str)]| {
            let mut e = env("dev");
            e.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
            let source = resolve(&context(&e, Some(root.to_path_buf()), Vec::new())).unwrap().source.unwrap();
            let Source::Sso(role) = source else { panic!("{source:?}") };
            (role.portal, role.login.oidc)
        };
        assert_eq!(endpoints(&[]), ("http://services-sso:2".into(), "http://services-oidc:3".into()));
        assert_eq!(
            endpoints(&[("AWS_ENDPOINT_URL", "http://global:4/")]),
            ("http://global:4".into(), "http://global:4".into())
        );
        assert_eq!(
            endpoints(&[
                ("AWS_ENDPOINT_URL", "http://global:4"),
                ("AWS_ENDPOINT_URL_SSO", "http://127.0.0.1:5/portal"),
                ("AWS_ENDPOINT_URL_SSO_OIDC", "http://127.0.0.1:6")
            ]),
            ("http://127.0.0.1:5/portal".into(), "http://127.0.0.1:6".into())
        );
        let bare = world(&format!("{SESSION}\n[profile dev]\nendpoint_url = http://profile:1\n"), &[]);
        let source = resolve(&context(&env("dev"), Some(bare.to_path_buf()), Vec::new())).unwrap().source.unwrap();
        assert_eq!(source.sso().unwrap().portal, "http://profile:1");
        let e = resolve(&context(
            &[env("dev"), vec![("AWS_ENDPOINT_URL_SSO".into(), "ftp://x".into())]].concat(),
            Some(root.to_path_buf()),
            Vec::new(),
        ))
        .unwrap_err();
        assert!(e.contains("AWS_ENDPOINT_URL_SSO"), "{e}");
    }

    /// An expired sso-session login is refreshed through SSO OIDC with the cached refresh
    /// token and client, the file rewritten (the other fields kept), and the new token used.
    #[test]
    fn an_expired_login_is_refreshed_and_written_back() {
        let root = world(SESSION, &[("corp", &session_token("2020-09-13T12:00:00Z", true))]);
        let created = r#"{"accessToken": "refreshed-access-token", "tokenType": "Bearer", "expiresIn": 3600,
                          "refreshToken": "rotated-refresh-token"}"#;
        let replay = Replay::new(vec![
            exchange("POST", OIDC_URL, answer(200, &[], created)),
            exchange("GET", SESSION_URL, answer(200, &[], &role_credentials())),
        ]);
        let issued = fetch(context(&env("dev"), Some(root.to_path_buf()), Vec::new()), &replay).unwrap();
        assert_eq!(issued.credentials.access_key_id, "ASIARTESTID");
        let seen = replay.seen.lock().unwrap();
        let body: Value = serde_json::from_slice(&seen[0].body).unwrap();
        assert_eq!(
            body,
            serde_json::json!({"clientId": "cached-client-id", "clientSecret": "cached-client-secret",
                               "grantType": "refresh_token", "refreshToken": "cached-refresh-token"})
        );
        assert!(seen[0].headers.contains(&("content-type".into(), "application/json".into())));
        assert!(seen[1].headers.contains(&("x-amz-sso_bearer_token".into(), "refreshed-access-token".into())));
        let file = root.join(sso_token::cache_file(Path::new("home"), "corp"));
        let cached: Value = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
        assert_eq!(cached["accessToken"], "refreshed-access-token");
        assert_eq!(cached["refreshToken"], "rotated-refresh-token");
        assert_eq!(cached["expiresAt"], "2020-09-13T13:26:40Z", "now ({NOW}) + expiresIn");
        for (k, v) in [
            ("startUrl", "https://corp.awsapps.com/start"),
            ("clientSecret", "cached-client-secret"),
            ("registrationExpiresAt", "2020-12-01T00:00:00Z"),
        ] {
            assert_eq!(cached[k], v, "{k} kept");
        }
        #[cfg(unix)]
        assert_eq!(
            std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&file).unwrap().permissions()) & 0o777,
            0o600
        );
        let left: Vec<_> =
            std::fs::read_dir(file.parent().unwrap()).unwrap().flatten().map(|e| e.file_name()).collect();
        assert_eq!(left.len(), 1, "no temporary file left: {left:?}");
    }

    /// A refresh SSO OIDC refuses: an expired login says to log in again (no secret in the
    /// message); one that has not expired yet goes on being used.
    #[test]
    fn a_refused_refresh() {
        let refused = || {
            answer(
                400,
                &[(
                    "x-amzn-errortype",
                    "InvalidGrantException:http://internal.amazon.com/coral/com.amazonaws.awsssooidc/",
                )],
                r#"{"error":"invalid_grant","error_description":"Invalid refresh token provided"}"#,
            )
        };
        let root = world(SESSION, &[("corp", &session_token("2020-09-13T12:00:00Z", true))]);
        let replay = Replay::new(vec![exchange("POST", OIDC_URL, refused())]);
        let e = fetch(context(&env("dev"), Some(root.to_path_buf()), Vec::new()), &replay).unwrap_err();
        assert!(e.contains("expired at 2020-09-13T12:00:00Z"), "{e}");
        assert!(e.contains("InvalidGrantException: Invalid refresh token provided"), "{e}");
        assert!(e.ends_with("run `aws sso login --profile dev`"), "{e}");
        for secret in ["cached-access-token", "cached-refresh-token", "cached-client-secret"] {
            assert!(!e.contains(secret), "{e}");
        }
        // Two minutes left: refreshing is tried, and the refusal leaves the token in use.
        let root = world(SESSION, &[("corp", &session_token("2020-09-13T12:28:40Z", true))]);
        let replay = Replay::new(vec![
            exchange("POST", OIDC_URL, refused()),
            exchange("GET", SESSION_URL, answer(200, &[], &role_credentials())),
        ]);
        fetch(context(&env("dev"), Some(root.to_path_buf()), Vec::new()), &replay).unwrap();
        let seen = replay.seen.lock().unwrap();
        assert!(seen[1].headers.contains(&("x-amz-sso_bearer_token".into(), "cached-access-token".into())));
    }

    /// Nothing is sent for a login that cannot be refreshed: no refresh token, an expired
    /// client registration, or a legacy profile (no SDK refreshes those).
    #[test]
    fn logins_that_cannot_be_refreshed() {
        let expired_registration = session_token("2020-09-13T12:00:00Z", true).replace(
            r#""registrationExpiresAt":"2020-12-01T00:00:00Z""#,
            r#""registrationExpiresAt":"2020-09-01T00:00:00Z""#,
        );
        let cases = [
            (session_token("2020-09-13T12:00:00Z", false), "no refresh token is cached"),
            (expired_registration, "the client registration expired at 2020-09-01T00:00:00Z"),
        ];
        for (token, why) in cases {
            let root = world(SESSION, &[("corp", &token)]);
            let replay = Replay::new(Vec::new());
            let e = fetch(context(&env("dev"), Some(root.to_path_buf()), Vec::new()), &replay).unwrap_err();
            assert!(e.contains(why) && e.contains("aws sso login --profile dev"), "{e}");
            assert!(replay.seen.lock().unwrap().is_empty());
        }
        let legacy_token = session_token("2020-09-13T12:00:00Z", true).replace("corp", "ssotest");
        let root = world(LEGACY, &[("https://ssotest.awsapps.com/start", &legacy_token)]);
        let replay = Replay::new(Vec::new());
        let e = fetch(context(&env("sso-test"), Some(root.to_path_buf()), Vec::new()), &replay).unwrap_err();
        assert!(e.contains("legacy") && e.contains("aws sso login --profile sso-test"), "{e}");
        assert!(replay.seen.lock().unwrap().is_empty());
    }

    /// Refresh tokens rotate: when another go command refreshed the login first (so ours
    /// is refused), the token it wrote is used.
    #[test]
    fn a_login_another_process_refreshed_is_used() {
        struct Race {
            file: PathBuf,
            seen: Mutex<Vec<HttpRequest>>,
        }
        impl Http for Race {
            fn send(&self, request: &HttpRequest) -> Result<HttpResponse, String> {
                self.seen.lock().unwrap().push(request.clone());
                if request.url == OIDC_URL {
                    let theirs =
                        session_token("2020-09-13T20:00:00Z", true).replace("cached-access-token", "their-token");
                    std::fs::write(&self.file, theirs).unwrap();
                    return Ok(answer(
                        400,
                        &[("x-amzn-errortype", "InvalidGrantException")],
                        r#"{"error":"invalid_grant"}"#,
                    ));
                }
                Ok(answer(200, &[], &role_credentials()))
            }
        }
        let root = world(SESSION, &[("corp", &session_token("2020-09-13T12:00:00Z", true))]);
        let race = Arc::new(Race {
            file: root.join(sso_token::cache_file(Path::new("home"), "corp")),
            seen: Mutex::new(Vec::new()),
        });
        let mut ctx = context(&env("dev"), Some(root.to_path_buf()), Vec::new());
        ctx.http = race.clone();
        let source = resolve(&ctx).unwrap().source.unwrap();
        source.fetch(&ctx).unwrap();
        let seen = race.seen.lock().unwrap();
        assert!(seen[1].headers.contains(&("x-amz-sso_bearer_token".into(), "their-token".into())));
    }

    /// An SSO profile as the source of an assumed role (a role in another account).
    #[test]
    fn an_sso_profile_as_source_profile() {
        let config = format!(
            "{SESSION}\n[profile deploy]\nrole_arn = arn:aws:iam::444455556666:role/Cache\nsource_profile = dev\n"
        );
        let root = world(&config, &[]);
        let source = resolve(&context(&env("deploy"), Some(root.to_path_buf()), Vec::new())).unwrap().source.unwrap();
        assert!(
            matches!(&source, Source::AssumeRole { source, .. } if matches!(**source, Source::Sso(_))),
            "{source:?}"
        );
        assert_eq!(source.sso().unwrap().login.profile, "dev");
    }

    #[test]
    fn cached_expiries_in_every_form_tools_write() {
        let root = world(SESSION, &[]);
        let ctx = context(&env("dev"), Some(root.to_path_buf()), Vec::new());
        let source = resolve(&ctx).unwrap().source.unwrap();
        let login = &source.sso().unwrap().login;
        let file = root.join(login.cache_file.strip_prefix("/").unwrap());
        for (text, secs) in [
            ("2080-01-01T00:00:00Z", 3_471_292_800),
            ("2080-01-01T00:00:00UTC", 3_471_292_800),
            ("2080-01-01T01:00:00+01:00", 3_471_292_800),
            ("2080-01-01T00:00:00.500Z", 3_471_292_800),
        ] {
            std::fs::write(&file, format!(r#"{{"accessToken":"t","expiresAt":"{text}"}}"#)).unwrap();
            let status = login.status(&ctx).unwrap();
            assert_eq!(status.expires.duration_since(SystemTime::UNIX_EPOCH).unwrap().as_secs(), secs, "{text}");
        }
        std::fs::write(&file, r#"{"accessToken":"t","expiresAt":"soon"}"#).unwrap();
        let e = login.status(&ctx).unwrap_err();
        assert!(e.contains("not a date") && e.contains("aws sso login --profile dev"), "{e}");
    }
}
