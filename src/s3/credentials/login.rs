//! Console sessions (`aws login`, AWS CLI 2.32, November 2025): a profile with
//! `login_session = <ARN of the console identity>` uses the credentials the CLI cached in
//! `~/.aws/login/cache/<sha256 of the ARN>.json` (or `AWS_LOGIN_CACHE_DIRECTORY`). They last
//! 15 minutes, so they are refreshed 5 minutes before they expire at AWS Sign-In
//! (`CreateOAuth2Token`, `POST /v1/token` with `grantType` `refresh_token` and a DPoP proof
//! made with the cached key), and the file is rewritten, as botocore's `LoginProvider` and
//! smithy-rs's `LoginCredentialsProvider` do. Sign-In is at
//! `https://<region>.signin.aws.amazon.com` (the profile's or the environment's region), or
//! where `AWS_ENDPOINT_URL_SIGNIN` (then the other service-specific settings) says.

use super::dpop::DpopKey;
use super::profile::{Files, Properties};
use super::sso_token::{error_summary, scrub, utc_seconds, TIMEOUT};
use super::{service_endpoint, Context, Credentials, Issued, REFRESH_BEFORE};
use crate::s3::http::HttpRequest;
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

/// A profile's console session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Login {
    pub(crate) profile: String,
    /// The `login_session` ARN.
    pub(crate) session: String,
    pub(crate) cache_file: PathBuf,
    /// Sign-In's base URL.
    pub(crate) signin: String,
}

/// The fields of the cache file that must be there (botocore's `_REQUIRED_TOKEN_FIELDS`).
const REQUIRED: [&str; 4] = ["accessToken", "refreshToken", "clientId", "dpopKey"];

impl Login {
    /// The console session profile `name` names (`None`: no `login_session`).
    pub(crate) fn from_profile(
        ctx: &Context,
        files: &Files,
        name: &str,
        props: &Properties,
    ) -> Result<Option<Login>, String> {
        let Some(session) = props.get("login_session") else { return Ok(None) };
        let dir = match ctx.var("AWS_LOGIN_CACHE_DIRECTORY") {
            Some(dir) => PathBuf::from(dir),
            None => PathBuf::from(ctx.var("HOME").ok_or_else(|| {
                format!("profile {name} uses a console login, cached under ~/.aws/login/cache, but HOME is not set")
            })?)
            .join(".aws/login/cache"),
        };
        let cache_file = dir.join(format!("{}.json", hex::encode(Sha256::digest(session.trim().as_bytes()))));
        let region = ctx
            .var("AWS_REGION")
            .or_else(|| ctx.var("AWS_DEFAULT_REGION"))
            .or_else(|| props.get("region").cloned())
            .unwrap_or_else(|| "us-east-1".into());
        let default = if region.starts_with("cn-") {
            format!("https://{region}.signin.amazonaws.cn")
        } else {
            format!("https://{region}.signin.aws.amazon.com")
        };
        let signin = service_endpoint::configured(ctx, files, props, "Signin")?.unwrap_or(default);
        Ok(Some(Login { profile: name.to_string(), session: session.clone(), cache_file, signin }))
    }

    /// For messages: the session and the profile.
    pub(crate) fn describe(&self) -> String {
        format!("console login {} (profile {})", self.session, self.profile)
    }

    /// What the user runs to sign in again.
    pub(crate) fn advice(&self) -> String {
        format!("run `aws login --profile {}`", self.profile)
    }

    fn load(&self, ctx: &Context) -> Result<Map<String, Value>, String> {
        let bytes = (ctx.read_file)(&self.cache_file).map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                format!("no console login is cached ({}): {}", self.cache_file.display(), self.advice())
            } else {
                format!("cannot read the console login cache {}: {e}", self.cache_file.display())
            }
        })?;
        let unusable = |why: String| {
            format!("the console login cache {} is not usable: {why}; {}", self.cache_file.display(), self.advice())
        };
        let Ok(Value::Object(fields)) = serde_json::from_slice::<Value>(&bytes) else {
            return Err(unusable("it is not a JSON object".into()));
        };
        let missing: Vec<&str> = REQUIRED.into_iter().filter(|k| !fields.contains_key(*k)).collect();
        if !missing.is_empty() {
            return Err(unusable(format!("it lacks {}", missing.join(", "))));
        }
        credentials_of(&fields).map_err(unusable)?;
        Ok(fields)
    }

    /// The cached credentials, refreshed at Sign-In first when they expire within
    /// [`REFRESH_BEFORE`].
    pub(crate) fn fetch(&self, ctx: &Context) -> Result<Issued, String> {
        let now = (ctx.now)();
        let cached = self.load(ctx)?;
        let issued = credentials_of(&cached)?;
        let expires = issued.expires.unwrap_or(now);
        if expires > now + REFRESH_BEFORE {
            return Ok(issued);
        }
        match self.refresh(ctx, &cached, now) {
            Ok(refreshed) => Ok(refreshed),
            Err(e) => {
                // The refresh token rotates: another go command may have refreshed first.
                let theirs = self.load(ctx).ok().and_then(|again| credentials_of(&again).ok());
                if let Some(theirs) = theirs.filter(|t| t.credentials != issued.credentials && t.expires > Some(now)) {
                    return Ok(theirs);
                }
                if expires > now {
                    log!(1, "refreshing the {} failed: {e}; using its credentials until they expire", self.describe());
                    return Ok(issued);
                }
                Err(format!(
                    "its credentials expired at {} and refreshing them failed ({e}): {}",
                    utc_seconds(expires),
                    self.advice()
                ))
            }
        }
    }

    /// `CreateOAuth2Token` with the refresh token and a DPoP proof; the new credentials are
    /// written back.
    fn refresh(&self, ctx: &Context, cached: &Map<String, Value>, now: SystemTime) -> Result<Issued, String> {
        let text = |k: &str| cached.get(k).and_then(Value::as_str).unwrap_or("").to_string();
        let key = DpopKey::from_pem(&text("dpopKey"))?;
        let url = format!("{}/v1/token", self.signin);
        let body =
            json!({"clientId": text("clientId"), "refreshToken": text("refreshToken"), "grantType": "refresh_token"});
        let request = HttpRequest::new("POST", &url, TIMEOUT)
            .header("content-type", "application/json")
            .header("dpop", &key.proof(&url, now)?)
            .body(body.to_string().into_bytes());
        let old = &cached["accessToken"];
        let secret = |k: &str| old.get(k).and_then(Value::as_str).unwrap_or("").to_string();
        let secrets = [text("refreshToken"), secret("secretAccessKey"), secret("sessionToken")];
        let secrets: Vec<&str> = secrets.iter().map(String::as_str).collect();
        let response = ctx.http.send(&request).map_err(|e| scrub(&format!("AWS Sign-In at {url}: {e}"), &secrets))?;
        if response.status != 200 {
            let answer: Value = serde_json::from_slice(&response.body).unwrap_or(Value::Null);
            let why = match answer.get("error").and_then(Value::as_str) {
                Some("TOKEN_EXPIRED" | "USER_CREDENTIALS_CHANGED") => "the console session ended".to_string(),
                Some("INSUFFICIENT_PERMISSIONS") => {
                    "the identity may not refresh its session (it needs signin:CreateOAuth2Token)".to_string()
                }
                _ => "AWS Sign-In refused".to_string(),
            };
            return Err(scrub(&format!("{why}: {}", error_summary(&response)), &secrets));
        }
        let answer: Value =
            serde_json::from_slice(&response.body).map_err(|e| format!("AWS Sign-In's answer is not JSON ({e})"))?;
        let field = |v: &Value, k: &str| v.get(k).and_then(Value::as_str).filter(|s| !s.is_empty()).map(str::to_string);
        let token = answer.get("accessToken").ok_or("AWS Sign-In's answer holds no accessToken")?;
        let (Some(id), Some(secret_key), Some(session_token)) =
            (field(token, "accessKeyId"), field(token, "secretAccessKey"), field(token, "sessionToken"))
        else {
            return Err("AWS Sign-In's answer lacks accessKeyId, secretAccessKey or sessionToken".into());
        };
        let expires_in =
            answer.get("expiresIn").and_then(Value::as_u64).ok_or("AWS Sign-In's answer holds no expiresIn")?;
        let refresh_token = field(&answer, "refreshToken").ok_or("AWS Sign-In's answer holds no refreshToken")?;
        let expires = now + Duration::from_secs(expires_in);
        let mut fields = cached.clone();
        fields.insert(
            "accessToken".into(),
            json!({"accessKeyId": id, "secretAccessKey": secret_key, "sessionToken": session_token,
                   "accountId": old.get("accountId").cloned().unwrap_or(Value::Null), "expiresAt": utc_seconds(expires)}),
        );
        fields.insert("refreshToken".into(), Value::String(refresh_token));
        if let Err(e) = (ctx.write_file)(&self.cache_file, Value::Object(fields).to_string().as_bytes()) {
            log!(
                0,
                "the {} was refreshed but could not be written back to {}: {e}; other programs may ask to sign in again",
                self.describe(),
                self.cache_file.display()
            );
        }
        log!(2, "{} refreshed at AWS Sign-In; its credentials expire at {}", self.describe(), utc_seconds(expires));
        Ok(Issued {
            credentials: Credentials {
                access_key_id: id,
                secret_access_key: secret_key,
                session_token: Some(session_token),
            },
            expires: Some(expires),
        })
    }
}

/// The credentials of a cache file's `accessToken`.
fn credentials_of(fields: &Map<String, Value>) -> Result<Issued, String> {
    let token = fields.get("accessToken").ok_or("it holds no accessToken")?;
    let field = |k: &str| token.get(k).and_then(Value::as_str).filter(|s| !s.is_empty()).map(str::to_string);
    let (Some(access_key_id), Some(secret_access_key)) = (field("accessKeyId"), field("secretAccessKey")) else {
        return Err("its accessToken lacks accessKeyId or secretAccessKey".into());
    };
    let expires_at = field("expiresAt").ok_or("its accessToken holds no expiresAt")?;
    let expires = crate::calendar::parse_rfc3339(&expires_at)
        .ok_or_else(|| format!("its accessToken's expiresAt {expires_at:?} is not a date"))?;
    Ok(Issued {
        credentials: Credentials { access_key_id, secret_access_key, session_token: field("sessionToken") },
        expires: Some(expires),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::s3::credentials::chain::{resolve, Source};
    use crate::s3::credentials::tests::{context, Replay};
    use crate::s3::http::HttpResponse;
    use ring::signature::{UnparsedPublicKey, ECDSA_P256_SHA256_FIXED};
    use std::path::Path;

    /// The login provider's cases of the SDKs' specification, as smithy-rs ships them
    /// (tests/data/login-provider-test-cases.json, Apache-2.0): cached credentials used as
    /// they are, every missing field an error, an expired session refreshed (the request's
    /// body, the credentials and the rewritten cache file checked) or refused.
    #[test]
    fn the_sdks_login_cases() {
        let cases: Value =
            serde_json::from_str(include_str!("../../../tests/data/login-provider-test-cases.json")).unwrap();
        let cases = cases.as_array().unwrap();
        assert_eq!(cases.len(), 8);
        for case in cases {
            let name = case["documentation"].as_str().unwrap();
            let root = std::env::temp_dir().join(format!("gocacheprog-login-unit-{:x}", crate::random::nonce()));
            std::fs::create_dir_all(root.join("home/.aws/login/cache")).unwrap();
            std::fs::write(root.join("home/.aws/config"), case["configContents"].as_str().unwrap()).unwrap();
            for (file, contents) in case["cacheContents"].as_object().unwrap() {
                std::fs::write(root.join("home/.aws/login/cache").join(file), contents.to_string()).unwrap();
            }
            let url = "https://us-east-1.signin.aws.amazon.com/v1/token";
            let mut exchanges = Vec::new();
            for call in case.get("mockApiCalls").and_then(Value::as_array).into_iter().flatten() {
                let response = match call.get("response") {
                    Some(r) => HttpResponse {
                        status: 200,
                        headers: Vec::new(),
                        body: r["tokenOutput"].to_string().into_bytes(),
                    },
                    None => {
                        HttpResponse { status: call["responseCode"].as_u64().unwrap() as u16, ..Default::default() }
                    }
                };
                exchanges.push(("POST".to_string(), url.to_string(), Vec::new(), response));
            }
            let replay = Replay::new(exchanges);
            let env = [("HOME", "/home"), ("AWS_PROFILE", "signin"), ("AWS_REGION", "us-east-1")];
            let env: Vec<(String, String)> = env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
            let mut ctx = context(&env, Some(root.clone()), Vec::new());
            ctx.http = replay.clone();
            ctx.now = || SystemTime::UNIX_EPOCH + Duration::from_secs(1_763_510_400);
            let got = resolve(&ctx).and_then(|r| r.source.ok_or("no source".into())).and_then(|s| {
                assert!(matches!(s, Source::Login(_)), "{name}: {s:?}");
                s.fetch(&ctx)
            });
            assert_eq!(replay.left(), 0, "{name}: a recorded call was not made");
            for (call, seen) in case
                .get("mockApiCalls")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .zip(replay.seen.lock().unwrap().iter())
            {
                let body: Value = serde_json::from_slice(&seen.body).unwrap();
                assert_eq!(body, call["request"]["tokenInput"], "{name}");
                let proof = &seen.headers.iter().find(|(k, _)| k == "dpop").expect("a DPoP header").1;
                verify(proof, url);
            }
            for outcome in case["outcomes"].as_array().unwrap() {
                match outcome["result"].as_str().unwrap() {
                    "credentials" => {
                        let issued = got.as_ref().unwrap_or_else(|e| panic!("{name}: {e}"));
                        let c = &issued.credentials;
                        assert_eq!(outcome["accessKeyId"], c.access_key_id.as_str(), "{name}");
                        assert_eq!(outcome["secretAccessKey"], c.secret_access_key.as_str(), "{name}");
                        assert_eq!(outcome["sessionToken"].as_str(), c.session_token.as_deref(), "{name}");
                        let expires = crate::calendar::parse_rfc3339(outcome["expiresAt"].as_str().unwrap());
                        assert_eq!(issued.expires, expires, "{name}");
                    }
                    "cacheContents" => {
                        for (file, expected) in outcome.as_object().unwrap().iter().filter(|(k, _)| *k != "result") {
                            let written = std::fs::read(root.join("home/.aws/login/cache").join(file)).unwrap();
                            assert_eq!(&serde_json::from_slice::<Value>(&written).unwrap(), expected, "{name}");
                        }
                    }
                    "error" => {
                        let e = got.as_ref().expect_err(name);
                        assert!(e.contains("aws login --profile signin"), "{name}: {e}");
                        for secret in
                            ["wJalrXUtnFEMI", "oldExpiredSecretKey", "expired_refresh_token", "valid_refresh_token"]
                        {
                            assert!(!e.contains(secret), "{name}: {e}");
                        }
                    }
                    other => panic!("{name}: outcome {other}"),
                }
            }
            let _ = std::fs::remove_dir_all(&root);
        }
    }

    /// A DPoP proof for `url` that verifies with the key its header names.
    fn verify(proof: &str, url: &str) {
        let decode = |t: &str| {
            let mut s = t.replace('-', "+").replace('_', "/");
            while s.len() % 4 != 0 {
                s.push('=');
            }
            crate::base64::decode(s.as_bytes()).unwrap()
        };
        let parts: Vec<&str> = proof.split('.').collect();
        let header: Value = serde_json::from_slice(&decode(parts[0])).unwrap();
        let payload: Value = serde_json::from_slice(&decode(parts[1])).unwrap();
        assert_eq!(payload["htu"], url);
        let mut point = vec![4u8];
        point.extend(decode(header["jwk"]["x"].as_str().unwrap()));
        point.extend(decode(header["jwk"]["y"].as_str().unwrap()));
        UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, &point)
            .verify(format!("{}.{}", parts[0], parts[1]).as_bytes(), &decode(parts[2]))
            .expect("the proof verifies");
    }

    #[test]
    fn where_the_session_is_cached_and_signed_in() {
        let files = Files::from_texts(
            "[profile c]\nlogin_session = arn:aws:sts::012345678910:assumed-role/Admin/admin \nregion = eu-north-1\n",
            "",
        );
        let props = files.profile("c").unwrap();
        let env = |pairs: &[(&str, &str)]| -> Vec<(String, String)> {
            pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
        };
        let login = |pairs: &[(&str, &str)]| {
            Login::from_profile(&context(&env(pairs), None, Vec::new()), &files, "c", &props).unwrap().unwrap()
        };
        let at_home = login(&[("HOME", "/home/u")]);
        assert_eq!(
            at_home.cache_file,
            Path::new("/home/u/.aws/login/cache/4b0ba8f99f075c0633e122fd73346ce203a3faf18ea0310eb2d29df1bab2e255.json"),
            "the SHA-256 of the trimmed ARN, as in the SDKs' test data"
        );
        assert_eq!(at_home.signin, "https://eu-north-1.signin.aws.amazon.com");
        let moved = login(&[("AWS_LOGIN_CACHE_DIRECTORY", "/tmp/l"), ("AWS_REGION", "cn-north-1")]);
        assert!(moved.cache_file.starts_with("/tmp/l"));
        assert_eq!(moved.signin, "https://cn-north-1.signin.amazonaws.cn");
        assert_eq!(
            login(&[("HOME", "/h"), ("AWS_ENDPOINT_URL_SIGNIN", "http://127.0.0.1:7")]).signin,
            "http://127.0.0.1:7"
        );
    }
}
