//! Where signing keys come from: the AWS SDKs' default credential chain (see `chain`),
//! resolved on first use, cached, and refreshed before temporary credentials expire, one
//! refresh at a time, while the old ones go on being used.

pub mod chain;
mod container;
mod dpop;
mod imds;
pub mod login;
mod process;
pub mod profile;
mod service_endpoint;
pub mod sso;
mod sso_token;
mod sts;

pub(crate) use chain::Source;
pub(crate) use chain::{resolve, Resolved};

use super::http::Http;
use std::collections::HashMap;
use std::fmt;
use std::path::Path;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

/// An access key pair, optionally with a session token. `Debug` never prints secrets.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    /// The access key ID (`AKIA...`, `ASIA...` for temporary keys); not secret.
    pub access_key_id: String,
    /// The secret that signs requests.
    pub secret_access_key: String,
    /// Temporary credentials' token, sent as `x-amz-security-token`.
    pub session_token: Option<String>,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"<redacted>")
            .field("session_token", &self.session_token.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

/// Credentials as a source issued them: with an expiry for temporary ones.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Issued {
    pub(crate) credentials: Credentials,
    pub(crate) expires: Option<SystemTime>,
}

/// Runs a `credential_process` command (already split into words) within a time bound;
/// its standard output.
pub(crate) type RunProcess = dyn Fn(&[String], Duration) -> Result<Vec<u8>, String> + Send + Sync;

/// Reads a file.
pub(crate) type ReadFile = dyn Fn(&Path) -> std::io::Result<Vec<u8>> + Send + Sync;

/// Replaces a file's contents at once (see [`replace_file`]).
pub(crate) type WriteFile = dyn Fn(&Path, &[u8]) -> std::io::Result<()> + Send + Sync;

/// What the providers may look at: the environment, files, the network, processes, and
/// the clock. All injected, so the recorded exchanges replay in tests.
#[derive(Clone)]
pub(crate) struct Context {
    pub(crate) env: Arc<HashMap<String, String>>,
    /// Reads a file (`/` is the real root in production, a fixture directory in tests).
    pub(crate) read_file: Arc<ReadFile>,
    /// Rewrites a token cache the way the SDKs do (the SSO token after a refresh).
    pub(crate) write_file: Arc<WriteFile>,
    pub(crate) http: Arc<dyn Http>,
    pub(crate) run_process: Arc<RunProcess>,
    pub(crate) now: fn() -> SystemTime,
    /// `--profile`, when given.
    pub(crate) profile: Option<String>,
}

impl Context {
    /// A variable of the environment, empty counting as unset.
    pub(crate) fn var(&self, name: &str) -> Option<String> {
        self.env.get(name).filter(|v| !v.is_empty()).cloned()
    }

    /// A file's text; `None` if it does not exist or cannot be read.
    pub(crate) fn text(&self, path: &Path) -> Option<String> {
        (self.read_file)(path).ok().map(|b| String::from_utf8_lossy(&b).into_owned())
    }
}

/// The real environment, files, network and processes, for the profile `profile`.
pub(crate) fn system(profile: Option<String>) -> Context {
    let agent_config = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .max_redirects(0)
        .timeout_connect(Some(Duration::from_secs(1)))
        .user_agent(concat!("gocacheprog-s3/", env!("CARGO_PKG_VERSION")))
        .build();
    Context {
        env: Arc::new(std::env::vars().collect()),
        read_file: Arc::new(|p: &Path| std::fs::read(p)),
        write_file: Arc::new(replace_file),
        http: Arc::new(super::http::UreqHttp::new(ureq::Agent::new_with_config(agent_config))),
        run_process: Arc::new(process::run),
        now: SystemTime::now,
        profile,
    }
}

/// Writes `bytes` to a new file beside `path` (readable by its owner only: token caches
/// hold secrets), flushes it to disk and renames it over `path`, as botocore and the Go
/// SDK rewrite `~/.aws/sso/cache`: a reader (the AWS CLI, another go command) sees the old
/// file or the new one, never a part.
pub(crate) fn replace_file(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp-{}-{:x}", std::process::id(), crate::random::nonce()));
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let written = options.open(&tmp).and_then(|mut file| {
        file.write_all(bytes)?;
        file.sync_all()
    });
    let replaced = written.and_then(|()| std::fs::rename(&tmp, path));
    if replaced.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    replaced
}

/// Temporary credentials are refreshed this long before they expire.
pub(crate) const REFRESH_BEFORE: Duration = Duration::from_secs(5 * 60);

/// Signing keys for one client: fixed ones, or the chain's, cached and refreshed.
pub struct CredentialSource {
    inner: Mutex<State>,
    changed: Condvar,
    ctx: Option<Context>,
    /// When the last refresh was tried: credentials that live shorter than
    /// [`REFRESH_BEFORE`] are refreshed at most every [`REFRESH_AT_MOST_EVERY`].
    last_refresh: Mutex<Option<SystemTime>>,
    /// The last refresh failure said on stderr: the same one is not said again every
    /// [`REFRESH_AT_MOST_EVERY`] (an SSO login that expired says once to log in again).
    last_failure: Mutex<Option<String>>,
}

/// The shortest time between two refreshes of credentials that have not expired yet.
const REFRESH_AT_MOST_EVERY: Duration = Duration::from_secs(30);

enum State {
    /// The chain has not been asked yet.
    Unresolved,
    /// A thread is resolving the chain or refreshing; others wait (or use `current`).
    Busy {
        current: Option<Issued>,
    },
    Ready {
        current: Option<Issued>,
        source: Option<Source>,
    },
    /// The chain failed for good (a configured source that cannot work).
    Failed(String),
}

impl fmt::Debug for CredentialSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("CredentialSource")
    }
}

impl CredentialSource {
    /// Always these credentials.
    pub fn fixed(credentials: Credentials) -> Arc<CredentialSource> {
        let current = Some(Issued { credentials, expires: None });
        Arc::new(CredentialSource {
            inner: Mutex::new(State::Ready { current, source: None }),
            changed: Condvar::new(),
            ctx: None,
            last_refresh: Mutex::new(None),
            last_failure: Mutex::new(None),
        })
    }

    /// The default chain in `ctx`, resolved on the first [`CredentialSource::current`].
    pub(crate) fn chain(ctx: Context) -> Arc<CredentialSource> {
        Arc::new(CredentialSource {
            inner: Mutex::new(State::Unresolved),
            changed: Condvar::new(),
            ctx: Some(ctx),
            last_refresh: Mutex::new(None),
            last_failure: Mutex::new(None),
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The credentials to sign with now (`None`: the chain found none, sign nothing), or
    /// why there are none although a source was configured.
    pub(crate) fn current(&self) -> Result<Option<Credentials>, String> {
        let Some(ctx) = &self.ctx else {
            return match &*self.lock() {
                State::Ready { current, .. } => Ok(current.as_ref().map(|i| i.credentials.clone())),
                _ => Ok(None),
            };
        };
        let mut state = self.lock();
        loop {
            let now = (ctx.now)();
            match &*state {
                State::Failed(why) => return Err(why.clone()),
                State::Ready { current, source } => {
                    let recently = self
                        .last_refresh
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .is_some_and(|t| now.duration_since(t).is_ok_and(|d| d < REFRESH_AT_MOST_EVERY));
                    let fresh =
                        |i: &Issued| i.expires.is_none_or(|e| e > now + REFRESH_BEFORE || (recently && e > now));
                    match current {
                        Some(issued) if fresh(issued) => return Ok(Some(issued.credentials.clone())),
                        None if source.is_none() => return Ok(None),
                        _ => {}
                    }
                    // Time to refresh: this thread does it, the others use what there is.
                    let (current, source) = (current.clone(), source.clone());
                    *state = State::Busy { current: current.clone() };
                    drop(state);
                    let refreshed = source.as_ref().map(|s| s.fetch(ctx));
                    *self.last_refresh.lock().unwrap_or_else(|p| p.into_inner()) = Some(now);
                    state = self.lock();
                    match refreshed {
                        Some(Ok(issued)) => {
                            *self.last_failure.lock().unwrap_or_else(|p| p.into_inner()) = None;
                            *state = State::Ready { current: Some(issued), source };
                        }
                        Some(Err(e)) => {
                            if self.is_news(&e) {
                                log!(0, "refreshing the credentials failed: {e}; going on with the current ones until they expire");
                            }
                            *state = State::Ready { current, source };
                        }
                        None => *state = State::Ready { current, source },
                    }
                    self.changed.notify_all();
                    // Use what is there now, however the refresh went.
                    if let State::Ready { current, .. } = &*state {
                        if let Some(issued) = current.as_ref().filter(|i| i.expires.is_none_or(|e| e > now)) {
                            return Ok(Some(issued.credentials.clone()));
                        }
                    }
                    return Err("the temporary credentials expired and could not be refreshed".into());
                }
                State::Busy { current, .. } => {
                    // Someone else is resolving or refreshing: use unexpired ones, else wait.
                    if let Some(issued) = current.as_ref().filter(|i| i.expires.is_none_or(|e| e > now)) {
                        return Ok(Some(issued.credentials.clone()));
                    }
                    state =
                        self.changed.wait_timeout(state, Duration::from_secs(1)).unwrap_or_else(|p| p.into_inner()).0;
                }
                State::Unresolved => {
                    *state = State::Busy { current: None };
                    drop(state);
                    let outcome = resolve_and_fetch(ctx);
                    state = self.lock();
                    *state = match outcome {
                        Ok((source, current)) => State::Ready { current, source },
                        Err(why) => State::Failed(why),
                    };
                    self.changed.notify_all();
                }
            }
        }
    }

    /// Whether the refresh failure `e` differs from the last one (which was said already).
    fn is_news(&self, e: &str) -> bool {
        let mut last = self.last_failure.lock().unwrap_or_else(|p| p.into_inner());
        if last.as_deref() == Some(e) {
            return false;
        }
        *last = Some(e.to_string());
        true
    }

    /// The store said the token expired: the next [`CredentialSource::current`] fetches
    /// new credentials.
    pub(crate) fn expire(&self) {
        if let State::Ready { current: Some(issued), source: Some(_) } = &mut *self.lock() {
            issued.expires = Some(SystemTime::UNIX_EPOCH);
        }
    }
}

/// Resolves the chain and fetches from what it found. A fallback that did not answer
/// (instance metadata on a laptop) is "none", not an error.
fn resolve_and_fetch(ctx: &Context) -> Result<(Option<Source>, Option<Issued>), String> {
    let Resolved { source, tried } = resolve(ctx)?;
    let Some(source) = source else {
        log!(
            0,
            "no AWS credentials found (tried: {}); reading the bucket anonymously and uploading nothing. Set \
             AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, AWS_PROFILE, or a web identity / container / instance \
             role; --no-sign-request asks for anonymous access and silences this",
            tried.join("; ")
        );
        return Ok((None, None));
    };
    match source.fetch(ctx) {
        Ok(issued) => {
            log!(2, "credentials: {} (access key {})", source.describe(), issued.credentials.access_key_id);
            Ok((Some(source), Some(issued)))
        }
        Err(e) if source.is_fallback() => {
            log!(
                0,
                "no AWS credentials found (tried: {}; {}: {e}); reading the bucket anonymously and uploading nothing",
                tried.join("; "),
                source.describe()
            );
            Ok((None, None))
        }
        Err(e) => Err(format!("{}: {e}", source.describe())),
    }
}

/// `text` (something a store sent back) with every secret removed: the secret key and the
/// session token wherever they appear, and the value of any `Signature=` (an
/// `Authorization` header or a presigned URL echoed back). The access key ID stays: it is
/// not a secret and it tells the user which key was used.
pub(crate) fn redact_secrets(text: &str, creds: Option<&Credentials>) -> String {
    let mut out = text.to_string();
    if let Some(creds) = creds {
        for secret in [Some(creds.secret_access_key.as_str()), creds.session_token.as_deref()].into_iter().flatten() {
            if !secret.is_empty() {
                out = out.replace(secret, "<redacted>");
            }
        }
    }
    redact_after(&out, &["Signature=", "signature=", "X-Amz-Security-Token=", "x-amz-security-token:"])
}

/// Replaces the value following each marker (up to a separator) with `<redacted>`.
fn redact_after(text: &str, markers: &[&str]) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    loop {
        let next = markers.iter().filter_map(|m| rest.find(m).map(|i| (i, m.len()))).min();
        let Some((at, len)) = next else {
            out.push_str(rest);
            return out;
        };
        out.push_str(&rest[..at + len]);
        rest = &rest[at + len..];
        let end =
            rest.find(|c: char| c.is_whitespace() || matches!(c, ',' | '&' | '"' | '<' | '\'')).unwrap_or(rest.len());
        if end > 0 {
            out.push_str("<redacted>");
        }
        rest = &rest[end..];
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::s3::http::{HttpRequest, HttpResponse};
    use serde_json::Value;
    use std::path::PathBuf;

    /// One recorded exchange: method, URL, request body, the answer.
    pub(crate) type Exchange = (String, String, Vec<u8>, HttpResponse);

    /// Answers requests from a recorded list, in order; anything else is a failure.
    pub(crate) struct Replay {
        exchanges: Mutex<Vec<Exchange>>,
        pub(crate) seen: Mutex<Vec<HttpRequest>>,
    }

    impl Replay {
        /// Answers with `exchanges`, in order.
        pub(crate) fn new(exchanges: Vec<Exchange>) -> Arc<Replay> {
            Arc::new(Replay { exchanges: Mutex::new(exchanges), seen: Mutex::new(Vec::new()) })
        }

        /// How many recorded exchanges were not asked for.
        pub(crate) fn left(&self) -> usize {
            self.exchanges.lock().unwrap().len()
        }
    }

    impl Http for Replay {
        fn send(&self, request: &HttpRequest) -> Result<HttpResponse, String> {
            self.seen.lock().unwrap().push(request.clone());
            let mut exchanges = self.exchanges.lock().unwrap();
            if exchanges.is_empty() {
                return Err(format!("connection refused (nothing recorded for {} {})", request.method, request.url));
            }
            let (method, url, _body, response) = exchanges.remove(0);
            assert_eq!((method.as_str(), url.as_str()), (request.method.as_str(), request.url.as_str()));
            Ok(response)
        }
    }

    /// A context with exactly `env`, files under `root` (absolute paths are taken as
    /// relative to it; written there too), and `exchanges` as the network.
    pub(crate) fn context(env: &[(String, String)], root: Option<PathBuf>, exchanges: Vec<Exchange>) -> Context {
        let under = move |path: &Path| match &root {
            Some(root) => Ok(root.join(path.strip_prefix("/").unwrap_or(path))),
            None => Err(std::io::Error::new(std::io::ErrorKind::NotFound, "no files in this test")),
        };
        let read_under = under.clone();
        Context {
            env: Arc::new(env.iter().cloned().collect()),
            read_file: Arc::new(move |path: &Path| std::fs::read(read_under(path)?)),
            write_file: Arc::new(move |path: &Path, bytes: &[u8]| replace_file(&under(path)?, bytes)),
            http: Replay::new(exchanges),
            run_process: Arc::new(|_: &[String], _| Err("no processes in this test".into())),
            now: || SystemTime::UNIX_EPOCH + Duration::from_secs(1_600_000_000),
            profile: None,
        }
    }

    /// The exchanges of an `http-traffic.json`, in order.
    fn recorded(path: &Path) -> Vec<Exchange> {
        let traffic: Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
        let mut by_connection: Vec<(u64, Exchange)> = Vec::new();
        for event in traffic["events"].as_array().unwrap() {
            let id = event["connection_id"].as_u64().unwrap();
            let at = match by_connection.iter().position(|(c, _)| *c == id) {
                Some(at) => at,
                None => {
                    by_connection.push((id, Default::default()));
                    by_connection.len() - 1
                }
            };
            let exchange = &mut by_connection[at].1;
            let action = &event["action"];
            if let Some(request) = action.get("Request") {
                exchange.0 = request["request"]["method"].as_str().unwrap().to_string();
                exchange.1 = request["request"]["uri"].as_str().unwrap().to_string();
            } else if let Some(response) = action.get("Response") {
                let ok = &response["response"]["Ok"];
                exchange.3.status = ok["status"].as_u64().unwrap() as u16;
                for (k, v) in ok["headers"].as_object().unwrap() {
                    exchange.3.headers.push((k.to_ascii_lowercase(), v[0].as_str().unwrap_or("").to_string()));
                }
            } else if let Some(data) = action.get("Data") {
                let bytes = data["data"]["Utf8"].as_str().unwrap_or("").as_bytes().to_vec();
                match data["direction"].as_str() {
                    Some("Response") => exchange.3.body.extend(bytes),
                    _ => exchange.2.extend(bytes),
                }
            }
        }
        by_connection.into_iter().map(|(_, e)| e).collect()
    }

    /// Every recorded case of the SDKs' default chain (smithy-rs test data): our chain
    /// resolves the same source, sends the same requests, and gets the same credentials.
    #[test]
    fn the_recorded_default_chain_cases() {
        let dir =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/credentials/default-credential-provider-chain");
        let mut cases = 0;
        for case in std::fs::read_dir(&dir).expect("tests/data/credentials").flatten() {
            let path = case.path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            let env: Value = serde_json::from_slice(&std::fs::read(path.join("env.json")).unwrap()).unwrap();
            let env: Vec<(String, String)> =
                env.as_object().unwrap().iter().map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string())).collect();
            let expected: Value = serde_json::from_slice(&std::fs::read(path.join("test-case.json")).unwrap()).unwrap();
            let ctx = context(&env, Some(path.join("fs")), recorded(&path.join("http-traffic.json")));
            let got =
                resolve(&ctx).and_then(|r| r.source.ok_or_else(|| "no source".to_string())).and_then(|s| s.fetch(&ctx));
            match (&expected["result"]["Ok"], got) {
                (Value::Object(want), Ok(issued)) => {
                    let c = &issued.credentials;
                    assert_eq!(want["access_key_id"].as_str(), Some(c.access_key_id.as_str()), "{name}");
                    assert_eq!(want["secret_access_key"].as_str(), Some(c.secret_access_key.as_str()), "{name}");
                    assert_eq!(want.get("session_token").and_then(Value::as_str), c.session_token.as_deref(), "{name}");
                    let expiry = issued.expires.map(|e| e.duration_since(SystemTime::UNIX_EPOCH).unwrap().as_secs());
                    assert_eq!(want.get("expiry").and_then(Value::as_u64), expiry, "{name}");
                }
                (Value::Null, Err(e)) => {
                    let contains = expected["result"]["ErrorContains"].as_str().unwrap_or("");
                    // Our words where the cause is the same; the other cases only need to fail.
                    if name == "imds_token_fail" {
                        assert!(e.contains(contains), "{name}: {e}");
                    }
                }
                (want, got) => panic!("{name}: expected {want}, got {got:?}"),
            }
            cases += 1;
        }
        assert!(cases >= 8, "{cases} cases");
    }

    #[test]
    fn refreshes_before_expiry_and_on_demand() {
        let env = vec![
            ("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI".to_string(), "/creds".to_string()),
            ("AWS_EC2_METADATA_DISABLED".to_string(), "true".to_string()),
        ];
        let answer = |key: &str, expires: &str| {
            (
                "GET".to_string(),
                "http://169.254.170.2/creds".to_string(),
                Vec::new(),
                HttpResponse {
                    status: 200,
                    headers: Vec::new(),
                    body: format!(
                        r#"{{"AccessKeyId":"{key}","SecretAccessKey":"s","Token":"t","Expiration":"{expires}"}}"#
                    )
                    .into_bytes(),
                },
            )
        };
        // The clock says 2020-09-13T12:26:40Z; the first answer expires in 2 minutes (inside
        // the refresh margin), the second in a day.
        let ctx = context(
            &env,
            None,
            vec![
                answer("AK1", "2020-09-13T12:28:40Z"),
                answer("AK2", "2020-09-14T12:26:40Z"),
                answer("AK3", "2030-01-01T00:00:00Z"),
            ],
        );
        let source = CredentialSource::chain(ctx);
        assert_eq!(
            source.current().unwrap().unwrap().access_key_id,
            "AK2",
            "refreshed at once: AK1 was nearly expired"
        );
        assert_eq!(source.current().unwrap().unwrap().access_key_id, "AK2", "cached");
        source.expire();
        assert_eq!(source.current().unwrap().unwrap().access_key_id, "AK3", "fetched again after ExpiredToken");
    }

    /// A refresh that keeps failing the same way is said once (every 30 s would bury the
    /// one line that says to run `aws sso login`); a new failure, or one after a success,
    /// is said again.
    #[test]
    fn the_same_refresh_failure_is_said_once() {
        let source = CredentialSource::chain(context(&[], None, Vec::new()));
        assert!(source.is_news("the SSO login expired: run `aws sso login --profile dev`"));
        assert!(!source.is_news("the SSO login expired: run `aws sso login --profile dev`"));
        assert!(source.is_news("the SSO portal at https://portal answered HTTP 503"));
        *source.last_failure.lock().unwrap() = None;
        assert!(source.is_news("the SSO portal at https://portal answered HTTP 503"));
    }

    #[test]
    fn nothing_found_is_anonymous_and_a_broken_source_an_error() {
        // Everything unset and the metadata service disabled: not one connection.
        struct Refuse(std::sync::atomic::AtomicUsize);
        impl Http for Refuse {
            fn send(&self, _: &HttpRequest) -> Result<HttpResponse, String> {
                self.0.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                Err("no network here".into())
            }
        }
        let refuse = Arc::new(Refuse(std::sync::atomic::AtomicUsize::new(0)));
        let mut none = context(&[("AWS_EC2_METADATA_DISABLED".to_string(), "true".to_string())], None, Vec::new());
        none.http = refuse.clone();
        let source = CredentialSource::chain(none);
        assert_eq!(source.current(), Ok(None));
        assert_eq!(refuse.0.load(std::sync::atomic::Ordering::Relaxed), 0, "the chain made a connection");
        let half = context(&[("AWS_ACCESS_KEY_ID".to_string(), "AK".to_string())], None, Vec::new());
        assert!(CredentialSource::chain(half).current().unwrap_err().contains("AWS_SECRET_ACCESS_KEY"));
        // The instance metadata fallback that does not answer (a laptop) is "none".
        let laptop = context(&[], None, Vec::new());
        assert_eq!(CredentialSource::chain(laptop).current(), Ok(None));
    }

    #[test]
    fn echoed_secrets_are_removed() {
        let creds = Credentials {
            access_key_id: "AKIDEXAMPLE".into(),
            secret_access_key: "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY".into(),
            session_token: Some("FQoGZXIvYXdzEJr//////////token".into()),
        };
        let echoed =
            "bad header: Authorization: AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20260101/us-east-1/s3/aws4_request, \
            SignedHeaders=host;x-amz-date, Signature=5d672d79c15b13162d9279b0855cfba6789a8edb4c82c400e06b5924a6f2b5d7 \
            token FQoGZXIvYXdzEJr//////////token secret wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY \
            url ?X-Amz-Signature=abc123&X-Amz-Security-Token=tok%2F1&x=1 x-amz-security-token:zzz";
        let clean = redact_secrets(echoed, Some(&creds));
        for secret in ["5d672d79c15b", "FQoGZXIvYXdz", "wJalrXUtnFEMI", "abc123", "tok%2F1", "zzz"] {
            assert!(!clean.contains(secret), "{secret} left in {clean}");
        }
        assert!(clean.contains("Credential=AKIDEXAMPLE/"), "{clean}");
        assert!(clean.contains("&x=1"), "{clean}");
        assert_eq!(redact_secrets("plain message", None), "plain message");
        assert_eq!(redact_secrets("Signature=", None), "Signature=");
    }
}
