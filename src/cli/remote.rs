//! The bucket's configuration: the store, its addressing, signing, TLS and proxy, and the
//! bounds and tuning of the remote tier, looked up from the command line, the environment
//! and the shared AWS files.

use super::lookup::Lookup;
use super::proxy::proxy_for;
use super::store;
use super::tls::read_ca_bundle;
use super::ConfigError;
use crate::remote::layout::Form;
use crate::s3::client::{Client, ClientConfig};
use crate::s3::credentials::CredentialSource;
use crate::s3::endpoint::{Addressing, Endpoint};
use std::sync::Arc;
use std::time::Duration;

/// Everything about the bucket.
#[derive(Debug, Clone)]
pub struct RemoteConfig {
    pub(crate) bucket: String,
    /// Key prefix without a trailing slash (may be empty): the session's own scope,
    /// the only one it writes.
    pub(crate) prefix: String,
    /// Prefixes reads fall back to after `prefix`, in order (`--read-prefix`); never
    /// written. Without slashes at either end, none equal to `prefix`, each once.
    pub(crate) read_prefixes: Vec<String>,
    pub(crate) region: String,
    pub(crate) endpoint: Endpoint,
    pub(crate) addressing: Addressing,
    /// The shared files' profile (`--profile`, `AWS_PROFILE`), for the credential chain.
    pub(crate) profile: Option<String>,
    /// Unsigned requests (`--no-sign-request`): a public-read bucket.
    pub(crate) no_sign_request: bool,
    /// CA certificates (DER) to trust instead of the built-in roots.
    pub(crate) ca_certificates: Option<Vec<Vec<u8>>>,
    /// The HTTP proxy to the store, if the environment names one that applies.
    pub(crate) proxy: Option<String>,
    /// Server-side encryption headers of uploads.
    pub(crate) upload_headers: Vec<(String, String)>,
    pub(crate) workers: usize,
    pub(crate) queue_len: usize,
    pub(crate) read_only: bool,
    /// Bound on one S3 request (uploads, background downloads).
    pub(crate) timeout: Duration,
    pub(crate) connect_timeout: Duration,
    /// Bound on each read or write of a request: a store that stops moving bytes.
    pub(crate) stall_timeout: Duration,
    /// Bound on everything one get from go waits for the bucket, retries included.
    pub(crate) get_timeout: Duration,
    pub(crate) close_timeout: Duration,
    pub(crate) max_failures: u32,
    /// How long a bucket switched off by failures waits before one request tries it again.
    pub(crate) probe_interval: Duration,
    /// The largest object a download accepts.
    pub(crate) max_object_size: u64,
    /// Prefetch the working set (and keep its manifest) in building sessions.
    pub(crate) prefetch: bool,
    /// Overrides the build key that names the manifest.
    pub(crate) prefetch_key: Option<String>,
    pub(crate) prefetch_workers: usize,
    pub(crate) prefetch_max_bytes: u64,
    /// List the bucket for fast misses when it holds at most this many outputs (0: never).
    pub(crate) fast_miss_max_keys: usize,
    /// The form outputs are uploaded in.
    pub(crate) compression: Form,
    /// A hit on an object older than this rewrites its date (`None`: never).
    pub(crate) refresh_after: Option<Duration>,
}

impl RemoteConfig {
    /// A client for the bucket, signing with the AWS default chain (unsigned with
    /// `--no-sign-request`) and keeping `pool_size` connections open.
    pub(crate) fn client(&self, pool_size: usize) -> Client {
        let credentials = (!self.no_sign_request)
            .then(|| CredentialSource::chain(crate::s3::credentials::system(self.profile.clone())));
        Client::new(self.client_config(credentials, pool_size))
    }

    /// The S3 client's settings for this bucket, signing with `credentials` (`None`:
    /// unsigned) and keeping `pool_size` connections open.
    pub(crate) fn client_config(&self, credentials: Option<Arc<CredentialSource>>, pool_size: usize) -> ClientConfig {
        ClientConfig {
            endpoint: self.endpoint.clone(),
            addressing: self.addressing,
            bucket: self.bucket.clone(),
            region: self.region.clone(),
            credentials,
            timeout: self.timeout,
            connect_timeout: self.connect_timeout,
            stall_timeout: self.stall_timeout,
            pool_size,
            ca_certificates: self.ca_certificates.clone(),
            proxy: self.proxy.clone(),
            upload_headers: self.upload_headers.clone(),
        }
    }
}

/// Why the bucket cannot be configured.
pub(super) enum RemoteError {
    /// A malformed command line (or `GOCACHEPROG_S3_*` variable): the program stops.
    Config(ConfigError),
    /// A well-formed setting that cannot be used here (a file that cannot be read, an
    /// endpoint from the AWS variables or files that does not parse).
    Unusable(String),
}

impl From<ConfigError> for RemoteError {
    fn from(e: ConfigError) -> Self {
        RemoteError::Config(e)
    }
}

/// The bucket's settings. Unusable settings are noted and reported after every other
/// setting has been checked, so that a malformed command line is still an error.
pub(super) fn build(
    look: &Lookup,
    bucket: String,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<RemoteConfig, RemoteError> {
    if bucket.is_empty() || bucket.contains('/') {
        return Err(ConfigError(format!(
            "bucket {bucket:?} is not a bucket name (no '/'; put key prefixes in --prefix)"
        ))
        .into());
    }
    let prefix = look.get_or_default("prefix").map_or(String::new(), |(p, _)| p);
    let prefix = prefix.trim_matches('/').to_string();
    let read_prefixes = read_prefixes(look, &prefix);
    let (store, mut unusable) = store::locate(look, &bucket, env)?;
    let no_sign_request = look.switch("no-sign-request")?;
    let ca_bundle = look.get("ca-bundle");
    // A CA file is the host's, whichever setting names it.
    let ca_certificates = match &ca_bundle {
        Some((path, source)) => read_ca_bundle(path).map_err(|e| unusable.get_or_insert(format!("{source}: {e}"))).ok(),
        None => None,
    };
    let proxy = proxy_for(&store.endpoint, env);
    let upload_headers = upload_headers(look)?;
    if no_sign_request {
        look.note("credentials", "none (unsigned requests)", "--no-sign-request");
    } else {
        look.note(
            "credentials",
            format!("the AWS default chain (profile {})", store.profile.as_deref().unwrap_or("default")),
            "default",
        );
    }
    if let Some((url, source)) = &proxy {
        look.note("proxy", crate::log::without_userinfo(url), source.clone());
    }
    let remote = RemoteConfig {
        bucket,
        prefix,
        read_prefixes,
        region: store.region,
        endpoint: store.endpoint,
        addressing: store.addressing,
        profile: store.profile,
        no_sign_request,
        ca_certificates,
        proxy: proxy.map(|(url, _)| url),
        upload_headers,
        workers: look.number("workers", 1usize)?,
        queue_len: look.number("queue-len", 1usize)?,
        read_only: look.switch("read-only")?,
        timeout: look.duration("timeout")?,
        connect_timeout: look.duration("connect-timeout")?,
        stall_timeout: look.duration("stall-timeout")?,
        get_timeout: look.duration("get-timeout")?,
        close_timeout: look.duration("close-timeout")?,
        max_failures: look.number("max-failures", 1u32)?,
        probe_interval: look.duration("probe-interval")?,
        max_object_size: look.size("max-object-size")?,
        prefetch: !look.switch("no-prefetch")?,
        prefetch_key: look.get("prefetch-key").map(|(k, _)| k),
        prefetch_workers: look.number("prefetch-workers", 1usize)?,
        prefetch_max_bytes: look.size("prefetch-max-bytes")?,
        fast_miss_max_keys: look.number("fast-miss-max-keys", 0usize)?,
        compression: look.parsed("compression", "lz4 or none", parse_form)?.unwrap_or(Form::Lz4),
        refresh_after: Some(look.duration("refresh-after")?).filter(|d| !d.is_zero()),
    };
    match unusable {
        Some(why) => Err(RemoteError::Unusable(why)),
        None => Ok(remote),
    }
}

/// The server-side encryption headers of uploads (`--sse`, `--sse-kms-key-id`).
/// `--read-prefix`: without slashes at either end, each once, in the order given; the
/// session's own `prefix` is dropped (it is read first anyway), so one setting can serve
/// the jobs of the base branch and of its pull requests.
fn read_prefixes(look: &Lookup, prefix: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for p in look.list("read-prefix") {
        let p = p.trim_matches('/').to_string();
        if p != prefix && !out.contains(&p) {
            out.push(p);
        }
    }
    out
}

fn upload_headers(look: &Lookup) -> Result<Vec<(String, String)>, ConfigError> {
    let mut upload_headers = Vec::new();
    match look.get("sse") {
        None => {}
        Some((v, _)) if v == "AES256" || v == "aws:kms" => {
            upload_headers.push(("x-amz-server-side-encryption".into(), v))
        }
        Some((v, source)) => return Err(ConfigError(format!("{source}: expected AES256 or aws:kms, got {v:?}"))),
    }
    if let Some((key, source)) = look.get("sse-kms-key-id") {
        if !upload_headers.iter().any(|(_, v)| v == "aws:kms") {
            return Err(ConfigError(format!("{source} needs --sse aws:kms")));
        }
        upload_headers.push(("x-amz-server-side-encryption-aws-kms-key-id".into(), key));
    }
    Ok(upload_headers)
}

/// `--compression`: the form outputs are uploaded in.
fn parse_form(text: &str) -> Option<Form> {
    match text.to_ascii_lowercase().as_str() {
        "lz4" => Some(Form::Lz4),
        "none" | "off" => Some(Form::Plain),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{run, GOCACHE};
    use super::*;

    #[test]
    fn read_prefixes_in_order_from_flags_or_the_variable() {
        let r = run(
            &["b", "--prefix", "pr/7/", "--read-prefix", "/main/", "--read-prefix", "release", "--read-prefix=main"],
            &[GOCACHE, ("GOCACHEPROG_S3_READ_PREFIX", "ignored")],
        )
        .unwrap()
        .remote
        .unwrap();
        assert_eq!((r.prefix.as_str(), r.read_prefixes.clone()), ("pr/7", vec!["main".to_string(), "release".into()]));
        let c = run(&["b"], &[GOCACHE, ("GOCACHEPROG_S3_READ_PREFIX", "main, go-cache ,release")]).unwrap();
        let setting = c.settings.iter().find(|s| s.name == "read-prefix").unwrap();
        assert_eq!(
            (setting.value.as_str(), setting.source.as_str()),
            ("main, go-cache, release", "GOCACHEPROG_S3_READ_PREFIX")
        );
        // The own prefix (go-cache, the default) is read first anyway.
        assert_eq!(c.remote.unwrap().read_prefixes, vec!["main".to_string(), "release".into()]);
        assert!(run(&["b"], &[GOCACHE]).unwrap().remote.unwrap().read_prefixes.is_empty());
    }

    #[test]
    fn remote_settings_from_aws_environment() {
        let env = [
            GOCACHE,
            ("AWS_REGION", "garage"),
            ("AWS_ENDPOINT_URL", "http://ignored:1"),
            ("AWS_ENDPOINT_URL_S3", "http://127.0.0.1:3900"),
            ("AWS_ACCESS_KEY_ID", "GK1"),
            ("AWS_SECRET_ACCESS_KEY", "s3cr3t"),
            ("AWS_SESSION_TOKEN", "tok"),
        ];
        let r = run(&["--bucket", "cache", "--read-only"], &env).unwrap().remote.unwrap();
        assert_eq!(r.region, "garage");
        assert_eq!(r.endpoint.to_string(), "http://127.0.0.1:3900");
        assert_eq!(r.addressing, Addressing::Path);
        assert!(r.read_only);
        assert!(!format!("{r:?}").contains("s3cr3t"), "credentials are the chain's, not the configuration's");
        let c = run(&["--bucket", "cache", "--read-only"], &env).unwrap();
        let region = c.settings.iter().find(|s| s.name == "region").unwrap();
        assert_eq!((region.value.as_str(), region.source.as_str()), ("garage", "AWS_REGION"));
        // AWS itself: virtual-hosted unless the bucket has dots.
        let r = run(&["b"], &[GOCACHE]).unwrap().remote.unwrap();
        assert_eq!((r.addressing, r.region.as_str()), (Addressing::VirtualHosted, "us-east-1"));
        assert!(!r.no_sign_request);
        assert!(run(&["b", "--no-sign-request"], &[GOCACHE]).unwrap().remote.unwrap().no_sign_request);
        let r = run(&["a.b"], &[GOCACHE]).unwrap().remote.unwrap();
        assert_eq!(r.addressing, Addressing::Path);
        let r = run(&["--virtual-hosted", "b"], &[GOCACHE, ("AWS_ENDPOINT_URL", "http://h:1")]).unwrap();
        assert_eq!(r.remote.unwrap().addressing, Addressing::VirtualHosted);
    }

    #[test]
    fn encryption_and_ca_bundle_options() {
        let r = run(&["b", "--sse", "aws:kms", "--sse-kms-key-id", "k1"], &[GOCACHE]).unwrap().remote.unwrap();
        assert_eq!(r.upload_headers[0], ("x-amz-server-side-encryption".to_string(), "aws:kms".to_string()));
        assert_eq!(r.upload_headers[1].1, "k1");
        assert!(run(&["b", "--sse", "rot13"], &[GOCACHE]).unwrap_err().0.contains("AES256 or aws:kms"));
        assert!(run(&["b", "--sse-kms-key-id", "k"], &[GOCACHE]).unwrap_err().0.contains("needs --sse aws:kms"));
    }
}
