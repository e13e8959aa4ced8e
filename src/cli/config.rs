//! Validated configurations: the raw command line, the environment and the shared AWS
//! files become a [`Config`], with every setting's value and where it came from.

use super::args::{bool_error, parse_bool, Raw};
use super::options::{self, Command, Fallback, OPTIONS};
use super::ConfigError;
use crate::local::trim::Policy;
use crate::remote::layout::Form;
use crate::s3::client::{Client, ClientConfig};
use crate::s3::credentials::profile::{self, Files, Properties};
use crate::s3::credentials::CredentialSource;
use crate::s3::endpoint::{Addressing, Endpoint};
use std::cell::RefCell;
use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// A validated configuration (of `serve` and of `check`).
#[derive(Debug, Clone)]
pub struct Config {
    /// Absolute directory of the local tier.
    pub cache_dir: PathBuf,
    /// 0 quiet, 1 summary at exit, 2 per-request remote events and debugging, 3 everything.
    pub verbosity: u8,
    pub stats_file: Option<PathBuf>,
    pub metrics_csv: Option<PathBuf>,
    pub remote: Option<RemoteConfig>,
    /// What trimming the local tier removes.
    pub trim: Policy,
    /// `trim`, `prune`: report, remove nothing.
    pub dry_run: bool,
    /// `check`, `usage`: the report as JSON.
    pub json: bool,
    /// `prune`: delete what no build used for this long.
    pub unused_for: Option<Duration>,
    /// Every setting and where it came from (`-vv`, `check`).
    pub settings: Vec<Setting>,
}

/// Everything about the bucket.
#[derive(Debug, Clone)]
pub struct RemoteConfig {
    pub bucket: String,
    /// Key prefix without a trailing slash (may be empty): the session's own scope,
    /// the only one it writes.
    pub prefix: String,
    /// Prefixes reads fall back to after `prefix`, in order (`--read-prefix`); never
    /// written. Without slashes at either end, none equal to `prefix`, each once.
    pub read_prefixes: Vec<String>,
    pub region: String,
    pub endpoint: Endpoint,
    pub addressing: Addressing,
    /// The shared files' profile (`--profile`, `AWS_PROFILE`), for the credential chain.
    pub profile: Option<String>,
    /// Unsigned requests (`--no-sign-request`): a public-read bucket.
    pub no_sign_request: bool,
    /// CA certificates (DER) to trust instead of the built-in roots.
    pub ca_certificates: Option<Vec<Vec<u8>>>,
    /// The HTTP proxy to the store, if the environment names one that applies.
    pub proxy: Option<String>,
    /// Server-side encryption headers of uploads.
    pub upload_headers: Vec<(String, String)>,
    pub workers: usize,
    pub queue_len: usize,
    pub read_only: bool,
    /// Bound on one S3 request (uploads, background downloads).
    pub timeout: Duration,
    pub connect_timeout: Duration,
    /// Bound on each read or write of a request: a store that stops moving bytes.
    pub stall_timeout: Duration,
    /// Bound on everything one get from go waits for the bucket, retries included.
    pub get_timeout: Duration,
    pub close_timeout: Duration,
    pub max_failures: u32,
    /// How long a bucket switched off by failures waits before one request tries it again.
    pub probe_interval: Duration,
    /// The largest object a download accepts.
    pub max_object_size: u64,
    /// Prefetch the working set (and keep its manifest) in building sessions.
    pub prefetch: bool,
    /// Overrides the build key that names the manifest.
    pub prefetch_key: Option<String>,
    pub prefetch_workers: usize,
    pub prefetch_max_bytes: u64,
    /// List the bucket for fast misses when it holds at most this many outputs (0: never).
    pub fast_miss_max_keys: usize,
    /// The form outputs are uploaded in.
    pub compression: Form,
    /// A hit on an object older than this rewrites its date (`None`: never).
    pub refresh_after: Option<Duration>,
}

impl RemoteConfig {
    /// A client for the bucket, signing with the AWS default chain (unsigned with
    /// `--no-sign-request`) and keeping `pool_size` connections open.
    pub fn client(&self, pool_size: usize) -> Client {
        let credentials = (!self.no_sign_request)
            .then(|| CredentialSource::chain(crate::s3::credentials::system(self.profile.clone())));
        Client::new(self.client_config(credentials, pool_size))
    }

    /// The S3 client's settings for this bucket, signing with `credentials` (`None`:
    /// unsigned) and keeping `pool_size` connections open.
    pub fn client_config(&self, credentials: Option<Arc<CredentialSource>>, pool_size: usize) -> ClientConfig {
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

/// Parses a duration: `500ms`, `30s`, `2m`, `1h`, `7d`, or a plain number of seconds.
pub fn parse_duration(text: &str) -> Option<Duration> {
    let text = text.trim();
    let (number, unit) = match text.find(|c: char| !(c.is_ascii_digit() || c == '.')) {
        Some(i) => text.split_at(i),
        None => (text, "s"),
    };
    let n: f64 = number.parse().ok()?;
    let secs = match unit {
        "ms" => n / 1000.0,
        "s" => n,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        "d" => n * 86_400.0,
        _ => return None,
    };
    (0.0..1e9).contains(&secs).then(|| Duration::from_secs_f64(secs))
}

/// Parses a byte count: a whole number with an optional `k`, `M`, `G` or `T` suffix
/// (powers of 1024; `KB`/`MiB`-style spellings too).
pub fn parse_size(text: &str) -> Option<u64> {
    let text = text.trim();
    let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let n: u64 = number.parse().ok()?;
    let shift = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" | "kb" | "kib" => 10,
        "m" | "mb" | "mib" => 20,
        "g" | "gb" | "gib" => 30,
        "t" | "tb" | "tib" => 40,
        _ => return None,
    };
    n.checked_mul(1u64 << shift)
}

/// One setting as the program uses it, and where its value came from (`--name`, a
/// variable, a profile, or `default`), for `-vv` and `check`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Setting {
    pub name: &'static str,
    pub value: String,
    pub source: String,
}

/// Looks options up (flag, then `GOCACHEPROG_S3_<NAME>`, then the option's other
/// variables) and notes every value it hands out with its source.
struct Lookup<'a> {
    raw: &'a Raw,
    env: &'a dyn Fn(&str) -> Option<String>,
    noted: RefCell<Vec<Setting>>,
}

impl Lookup<'_> {
    /// Records `name = value (from source)`, replacing an earlier note of `name`.
    fn note(&self, name: &'static str, value: impl Into<String>, source: impl Into<String>) {
        let mut noted = self.noted.borrow_mut();
        noted.retain(|s| s.name != name);
        noted.push(Setting { name, value: value.into(), source: source.into() });
    }

    fn var(&self, name: &str) -> Option<String> {
        (self.env)(name).filter(|v| !v.is_empty())
    }

    /// The given value (flag or variable), with its source; `None` when not given.
    fn get(&self, option: &'static str) -> Option<(String, String)> {
        let found = self.raw.value(option).map(|v| (v.to_string(), format!("--{option}"))).or_else(|| {
            let own = options::env_name(option);
            let also = options::find(option).map_or(&[][..], |o| o.also_env);
            std::iter::once(own.as_str())
                .chain(also.iter().copied())
                .find_map(|name| self.var(name).map(|v| (v, name.to_string())))
        });
        if let Some((value, source)) = &found {
            self.note(option, value.clone(), source.clone());
        }
        found
    }

    /// Every value of a repeatable option: the flags given, else its variable as a
    /// comma-separated list; noted together.
    fn list(&self, option: &'static str) -> Vec<String> {
        let given = self.raw.values_of(option);
        let (values, source): (Vec<String>, String) = if given.is_empty() {
            match self.get(option) {
                Some((v, source)) => (v.split(',').map(|p| p.trim().to_string()).collect(), source),
                None => return Vec::new(),
            }
        } else {
            (given.iter().map(|v| v.to_string()).collect(), format!("--{option}"))
        };
        self.note(option, values.join(", "), source);
        values
    }

    /// The given value, else the table's default (`Fallback::Value`).
    fn get_or_default(&self, option: &'static str) -> Option<(String, String)> {
        self.get(option).or_else(|| match options::find(option).map(|o| o.default) {
            Some(Fallback::Value(v)) => Some((v.to_string(), "default".to_string())),
            _ => None,
        })
    }

    fn switch(&self, option: &'static str) -> Result<bool, ConfigError> {
        if self.raw.has(option) {
            self.note(option, "true", format!("--{option}"));
            return Ok(true);
        }
        let name = options::env_name(option);
        match (self.env)(&name) {
            Some(v) => {
                let on = parse_bool(&v).ok_or_else(|| bool_error(&name, &v))?;
                self.note(option, on.to_string(), name);
                Ok(on)
            }
            None => Ok(false),
        }
    }

    /// A value parsed by `parse`, or an error naming the source and the accepted `form`.
    fn parsed<T>(
        &self,
        option: &'static str,
        form: &str,
        parse: impl Fn(&str) -> Option<T>,
    ) -> Result<Option<T>, ConfigError> {
        match self.get_or_default(option) {
            None => Ok(None),
            Some((v, source)) => match parse(&v) {
                Some(x) => Ok(Some(x)),
                None => Err(ConfigError(format!("{source}: expected {form}, got {v:?}"))),
            },
        }
    }

    /// A whole number of at least `min` (the table gives the default).
    fn number<T>(&self, option: &'static str, min: T) -> Result<T, ConfigError>
    where
        T: std::str::FromStr + PartialOrd + fmt::Display + Copy,
    {
        let form = format!("a whole number ≥ {min}");
        self.parsed(option, &form, |v| v.trim().parse::<T>().ok().filter(|n| *n >= min))?
            .ok_or_else(|| no_default(option))
    }

    fn duration(&self, option: &'static str) -> Result<Duration, ConfigError> {
        self.parsed(option, "a duration such as 500ms, 30s, 2m or 7d", parse_duration)?
            .ok_or_else(|| no_default(option))
    }

    fn size(&self, option: &'static str) -> Result<u64, ConfigError> {
        self.parsed(option, "a size in bytes such as 500M, 2G or 1048576", parse_size)?
            .ok_or_else(|| no_default(option))
    }

    fn path(&self, option: &'static str) -> Option<PathBuf> {
        self.get(option).map(|(v, _)| PathBuf::from(v))
    }

    /// Every setting of `command` in the table's order (what was not given at its
    /// default), then the derived ones (credentials, proxy).
    fn settings(&self, command: Command) -> Vec<Setting> {
        let noted = self.noted.borrow();
        let mut out: Vec<Setting> = OPTIONS
            .iter()
            .filter(|o| o.applies_to(command) && o.has_env())
            .map(|o| match noted.iter().find(|s| s.name == o.name) {
                Some(s) => s.clone(),
                None => {
                    let value = match o.default {
                        Fallback::None => "(unset)".to_string(),
                        Fallback::Value(v) => v.to_string(),
                        Fallback::Described(d) => format!("({d})"),
                    };
                    Setting { name: o.name, value, source: "default".into() }
                }
            })
            .collect();
        out.extend(noted.iter().filter(|s| options::find(s.name).is_none()).cloned());
        out
    }
}

/// A table default that does not parse is this program's bug, not the user's.
fn no_default(option: &str) -> ConfigError {
    ConfigError(format!("--{option} has no usable default; please report this"))
}

/// Builds the configuration of `raw.command`.
pub fn build(raw: Raw, env: &dyn Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
    let look = Lookup { raw: &raw, env, noted: RefCell::new(Vec::new()) };
    let verbosity = match raw.verbosity {
        Some(v) => {
            look.note("verbose", v.to_string(), "-v");
            v
        }
        None => look.number("verbose", 0u8)?,
    };
    let cache_dir = match look.get("cache-dir") {
        Some((dir, source)) => {
            let dir = PathBuf::from(dir);
            if dir.is_absolute() {
                dir
            } else {
                std::env::current_dir()
                    .map_err(|e| {
                        ConfigError(format!("{source}: {dir:?} is relative and the current directory is unknown: {e}"))
                    })?
                    .join(dir)
            }
        }
        None => {
            let dir = default_cache_dir(env)?;
            let source = if look.var("GOCACHE").is_some() { "GOCACHE" } else { "default (go's)" };
            look.note("cache-dir", dir.display().to_string(), source);
            dir
        }
    };
    let bucket = match (raw.value("bucket"), raw.positional.first()) {
        (Some(b), _) => Some(b.to_string()),
        (None, Some(b)) => {
            look.note("bucket", b.clone(), "the BUCKET argument");
            Some(b.clone())
        }
        (None, None) => look.get("bucket").map(|(b, _)| b),
    };
    if let Some(b) = raw.value("bucket") {
        look.note("bucket", b, "--bucket");
    }
    let remote = match bucket {
        None => None,
        Some(bucket) => Some(remote_config(&look, bucket, env)?),
    };
    let stats_file = look.path("stats-file");
    let metrics_csv = look.path("metrics-csv");
    let trim = Policy {
        max_age: look.duration("local-max-age")?,
        max_size: look.parsed("local-max-size", "a size in bytes such as 500M, 20G or 1048576", parse_size)?,
    };
    let unused_for = look.parsed("unused-for", "a duration such as 30d, 12h or 0s", parse_duration)?;
    if raw.command == Command::Prune && unused_for.is_none() {
        return Err(ConfigError(
            "prune needs --unused-for: how long an object may go unused before it is deleted (e.g. 30d; 0s \
             deletes everything under the prefix)"
                .into(),
        ));
    }
    if matches!(raw.command, Command::Prune | Command::Usage) && remote.is_none() {
        return Err(ConfigError(format!(
            "{} needs a bucket: the BUCKET argument, --bucket or GOCACHEPROG_S3_BUCKET",
            raw.command.name()
        )));
    }
    Ok(Config {
        cache_dir,
        verbosity,
        stats_file,
        metrics_csv,
        remote,
        trim,
        dry_run: raw.has("dry-run"),
        json: raw.has("json"),
        unused_for,
        settings: look.settings(raw.command),
    })
}

fn remote_config(
    look: &Lookup,
    bucket: String,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<RemoteConfig, ConfigError> {
    if bucket.is_empty() || bucket.contains('/') {
        return Err(ConfigError(format!(
            "bucket {bucket:?} is not a bucket name (no '/'; put key prefixes in --prefix)"
        )));
    }
    let prefix = look.get_or_default("prefix").map_or(String::new(), |(p, _)| p);
    let prefix = prefix.trim_matches('/').to_string();
    let read_prefixes = read_prefixes(look, &prefix);
    // The shared files' profile: its region and endpoints come after the environment's.
    let profile_name = look.get("profile").map(|(p, _)| p);
    let (files, profile) = shared_profile(env, profile_name.as_deref().unwrap_or("default"));
    let profile_label = format!("profile {}", profile_name.as_deref().unwrap_or("default"));
    let from_profile = |value: Option<String>| value.map(|v| (v, format!("{profile_label} ({})", files_label(env))));
    let (region, region_source) = look
        .get("region")
        .or_else(|| from_profile(profile.as_ref().and_then(|p| p.get("region").cloned())))
        .unwrap_or_else(|| ("us-east-1".to_string(), "default".to_string()));
    look.note("region", region.clone(), region_source);
    let custom_endpoint = look
        .get("endpoint")
        .or_else(|| from_profile(profile.as_ref().and_then(|p| files.s3_endpoint(p))))
        .or_else(|| look.var("AWS_ENDPOINT_URL").map(|v| (v, "AWS_ENDPOINT_URL".to_string())));
    let path_style = look.switch("path-style")?;
    let virtual_hosted = look.switch("virtual-hosted")?;
    if path_style && virtual_hosted {
        return Err(ConfigError("--path-style and --virtual-hosted exclude each other; choose one".into()));
    }
    let (endpoint, default_addressing, endpoint_source) = match custom_endpoint {
        Some((url, source)) => {
            let e = Endpoint::parse(&url).map_err(|e| ConfigError(format!("{source}: {e}")))?;
            (e, Addressing::Path, source)
        }
        // Bucket names with dots break TLS host matching in virtual-hosted form.
        None if bucket.contains('.') => (Endpoint::aws(&region), Addressing::Path, "default (AWS)".to_string()),
        None => (Endpoint::aws(&region), Addressing::VirtualHosted, "default (AWS)".to_string()),
    };
    look.note("endpoint", endpoint.to_string(), endpoint_source);
    let addressing = if path_style {
        Addressing::Path
    } else if virtual_hosted {
        Addressing::VirtualHosted
    } else {
        let path = default_addressing == Addressing::Path;
        look.note("path-style", path.to_string(), "default (for this endpoint and bucket)");
        look.note("virtual-hosted", (!path).to_string(), "default (for this endpoint and bucket)");
        default_addressing
    };
    let no_sign_request = look.switch("no-sign-request")?;
    let ca_bundle = look.get("ca-bundle");
    let ca_certificates = match &ca_bundle {
        Some((path, source)) => Some(read_ca_bundle(path).map_err(|e| ConfigError(format!("{source}: {e}")))?),
        None => None,
    };
    let proxy = proxy_for(&endpoint, env);
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
    if no_sign_request {
        look.note("credentials", "none (unsigned requests)", "--no-sign-request");
    } else {
        look.note("credentials", format!("the AWS default chain ({profile_label})"), "default");
    }
    if let Some((url, source)) = &proxy {
        look.note("proxy", crate::log::without_userinfo(url), source.clone());
    }
    Ok(RemoteConfig {
        bucket,
        prefix,
        read_prefixes,
        region,
        endpoint,
        addressing,
        profile: profile_name,
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
        compression: look
            .parsed("compression", "lz4 or none", |v| match v.to_ascii_lowercase().as_str() {
                "lz4" => Some(Form::Lz4),
                "none" | "off" => Some(Form::Plain),
                _ => None,
            })?
            .unwrap_or(Form::Lz4),
        refresh_after: Some(look.duration("refresh-after")?).filter(|d| !d.is_zero()),
    })
}

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

/// The certificates of a PEM file.
fn read_ca_bundle(path: &str) -> Result<Vec<Vec<u8>>, String> {
    let pem = std::fs::read(path).map_err(|e| format!("cannot read the CA bundle {path}: {e}"))?;
    let certs: Vec<Vec<u8>> = ureq::tls::parse_pem(&pem)
        .filter_map(|item| match item {
            Ok(ureq::tls::PemItem::Certificate(c)) => Some(c.der().to_vec()),
            _ => None,
        })
        .collect();
    if certs.is_empty() {
        return Err(format!("{path} holds no PEM certificate (-----BEGIN CERTIFICATE-----)"));
    }
    Ok(certs)
}

/// The proxy for requests to `endpoint`, as curl and the SDKs choose it: `HTTPS_PROXY`
/// for https, `HTTP_PROXY` for http (either case), `ALL_PROXY` else, unless `NO_PROXY`
/// names the host (exact, as a domain suffix, with a leading `.` or `*.`, or `*`).
fn proxy_for(endpoint: &Endpoint, env: &dyn Fn(&str) -> Option<String>) -> Option<(String, String)> {
    let get = |name: &str| {
        env(name).or_else(|| env(&name.to_ascii_lowercase())).filter(|v| !v.is_empty()).map(|v| (v, name.to_string()))
    };
    let scheme_var = if endpoint.to_string().starts_with("https://") { "HTTPS_PROXY" } else { "HTTP_PROXY" };
    let (url, source) = get(scheme_var).or_else(|| get("ALL_PROXY"))?;
    let host = endpoint.host().to_ascii_lowercase();
    let bypass = get("NO_PROXY").is_some_and(|(list, _)| {
        list.split(',').map(|e| e.trim().to_ascii_lowercase()).filter(|e| !e.is_empty()).any(|entry| {
            let entry = entry.split(':').next().unwrap_or("").to_string();
            let domain = entry.trim_start_matches("*.").trim_start_matches('.');
            entry == "*" || host == domain || host.ends_with(&format!(".{domain}"))
        })
    });
    (!bypass).then_some((url, source))
}

/// The shared files and the profile `name` in them (reading the files is cheap; no
/// credentials are resolved here).
fn shared_profile(env: &dyn Fn(&str) -> Option<String>, name: &str) -> (Files, Option<Properties>) {
    let (config, credentials) = profile::paths(env);
    let read = |p: Option<PathBuf>| p.and_then(|p| std::fs::read_to_string(p).ok()).unwrap_or_default();
    let files = Files::from_texts(&read(config), &read(credentials));
    let props = files.profile(name);
    (files, props)
}

fn files_label(env: &dyn Fn(&str) -> Option<String>) -> String {
    let (config, _) = profile::paths(env);
    config.map_or("~/.aws/config".into(), |p| p.display().to_string())
}

/// go's own default: `$GOCACHE`, else the user cache directory + `go-build`.
fn default_cache_dir(env: &dyn Fn(&str) -> Option<String>) -> Result<PathBuf, ConfigError> {
    if let Some(dir) = env("GOCACHE").filter(|d| !d.is_empty()) {
        let dir = PathBuf::from(dir);
        if dir.is_absolute() {
            return Ok(dir);
        }
        return Err(ConfigError(format!(
            "GOCACHE={} is not an absolute path; set GOCACHE or --cache-dir to an absolute directory",
            dir.display()
        )));
    }
    let base = if cfg!(target_os = "macos") {
        env("HOME").map(|h| PathBuf::from(h).join("Library/Caches"))
    } else {
        env("XDG_CACHE_HOME")
            .filter(|d| d.starts_with('/'))
            .map(PathBuf::from)
            .or_else(|| env("HOME").map(|h| PathBuf::from(h).join(".cache")))
    };
    base.map(|b| b.join("go-build"))
        .ok_or_else(|| ConfigError("no cache directory: set GOCACHE or --cache-dir (HOME is not set either)".into()))
}

#[cfg(test)]
mod tests {
    use super::super::{parse, Action};
    use super::*;
    use std::collections::HashMap;
    use std::ffi::OsString;

    fn run(args: &[&str], env: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let map: HashMap<String, String> = env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let env = move |k: &str| map.get(k).cloned();
        match parse(args.iter().map(OsString::from).collect(), &env)? {
            Action::Run(Command::Serve, c) => Ok(*c),
            other => panic!("unexpected {other:?}"),
        }
    }

    const GOCACHE: (&str, &str) = ("GOCACHE", "/tmp/gocache");

    #[test]
    fn local_only_by_default_at_gocache() {
        let c = run(&[], &[GOCACHE]).unwrap();
        assert_eq!(c.cache_dir, PathBuf::from("/tmp/gocache"));
        assert!(c.remote.is_none());
        assert_eq!(c.verbosity, 0);
        let c = run(&[], &[("HOME", "/home/u")]).unwrap();
        assert_eq!(c.cache_dir, PathBuf::from("/home/u/.cache/go-build"));
    }

    #[test]
    fn original_program_spellings() {
        let c = run(
            &[
                "-v=2",
                "-bucket=b1",
                "-s3-prefix=p/",
                "-local-cache-dir=/d",
                "-workers=3",
                "-queue-len=7",
                "-metrics-csv=/m.csv",
            ],
            &[GOCACHE],
        )
        .unwrap();
        assert_eq!(c.verbosity, 2);
        assert_eq!(c.cache_dir, PathBuf::from("/d"));
        assert_eq!(c.metrics_csv, Some(PathBuf::from("/m.csv")));
        let r = c.remote.unwrap();
        assert_eq!((r.bucket.as_str(), r.prefix.as_str(), r.workers, r.queue_len), ("b1", "p", 3, 7));
        let c = run(&[], &[GOCACHE, ("GOCACHEPROGS3_BUCKET", "legacy")]).unwrap();
        assert_eq!(c.remote.unwrap().bucket, "legacy");
    }

    #[test]
    fn verbosity_forms() {
        assert_eq!(run(&["-v"], &[GOCACHE]).unwrap().verbosity, 1);
        assert_eq!(run(&["-vv"], &[GOCACHE]).unwrap().verbosity, 2);
        assert_eq!(run(&["-v", "--verbose"], &[GOCACHE]).unwrap().verbosity, 2);
        assert_eq!(run(&["--verbose=3"], &[GOCACHE]).unwrap().verbosity, 3);
        assert_eq!(run(&[], &[GOCACHE, ("GOCACHEPROG_S3_VERBOSE", "2")]).unwrap().verbosity, 2);
        // -v= followed by hundreds of v's saturates instead of overflowing.
        let many = format!("-v={}", "v".repeat(1000));
        assert_eq!(run(&[&many], &[GOCACHE]).unwrap().verbosity, u8::MAX);
        assert_eq!(run(&[&many, "-v"], &[GOCACHE]).unwrap().verbosity, u8::MAX);
    }

    #[test]
    fn flags_win_over_environment() {
        let env = [GOCACHE, ("GOCACHEPROG_S3_CACHE_DIR", "/env"), ("GOCACHEPROG_S3_BUCKET", "envb")];
        let c = run(&["--cache-dir", "/flag", "flagb"], &env).unwrap();
        assert_eq!(c.cache_dir, PathBuf::from("/flag"));
        assert_eq!(c.remote.unwrap().bucket, "flagb");
        let c = run(&[], &env).unwrap();
        assert_eq!(c.cache_dir, PathBuf::from("/env"));
        assert_eq!(c.remote.unwrap().bucket, "envb");
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
    fn bad_input_names_the_option_and_the_accepted_form() {
        type Case<'a> = (&'a [&'a str], &'a [(&'a str, &'a str)], &'a str);
        let cases: &[Case] = &[
            (&["--frobnicate"], &[], "unknown option --frobnicate"),
            (&["-x"], &[], "invalid option '-x'"),
            (&["b", "--workers", "zero"], &[], "--workers: expected a whole number ≥ 1"),
            (&["b", "--workers=0"], &[], "--workers: expected a whole number ≥ 1"),
            (&["b", "--timeout", "soon"], &[], "--timeout: expected a duration"),
            (
                &["b"],
                &[("GOCACHEPROG_S3_CLOSE_TIMEOUT", "5 parsecs")],
                "GOCACHEPROG_S3_CLOSE_TIMEOUT: expected a duration",
            ),
            (&["b", "--endpoint", "localhost:9000"], &[], "--endpoint: \"localhost:9000\" must start with http://"),
            (&["b", "--path-style", "--virtual-hosted"], &[], "exclude each other"),
            (&["b"], &[("GOCACHEPROG_S3_READ_ONLY", "maybe")], "GOCACHEPROG_S3_READ_ONLY: expected true/false"),
            (&["b/c"], &[], "is not a bucket name"),
            (&["a", "b"], &[], "at most one positional"),
            (&["-v=loud"], &[], "-v/--verbose takes a level"),
            (&["--cache-dir"], &[], "missing argument for option '--cache-dir'"),
        ];
        for (args, env, expected) in cases {
            let mut env = env.to_vec();
            env.push(GOCACHE);
            let err = run(args, &env).unwrap_err();
            assert!(err.0.contains(expected), "{args:?}: {err}");
        }
        let err = run(&[], &[("GOCACHE", "relative/dir")]).unwrap_err();
        assert!(err.0.contains("not an absolute path"), "{err}");
    }

    #[test]
    fn region_and_endpoint_from_the_profile_after_the_environment() {
        let home = std::env::temp_dir().join(format!("gocacheprog-config-profile-{}", std::process::id()));
        std::fs::create_dir_all(home.join(".aws")).unwrap();
        std::fs::write(
            home.join(".aws/config"),
            "[default]\nregion = eu-west-3\n[profile minio]\nregion = minio-1\nservices = lab\n\
             [services lab]\ns3 =\n  endpoint_url = http://minio.lab:9000\n",
        )
        .unwrap();
        let h = home.to_string_lossy().into_owned();
        let r = run(&["b"], &[GOCACHE, ("HOME", &h)]).unwrap().remote.unwrap();
        assert_eq!(r.region, "eu-west-3");
        let c = run(&["b"], &[GOCACHE, ("HOME", &h)]).unwrap();
        let region = c.settings.iter().find(|s| s.name == "region").unwrap();
        assert!(region.source.starts_with("profile default"), "{:?}", c.settings);
        let r = run(&["b", "--profile", "minio"], &[GOCACHE, ("HOME", &h)]).unwrap().remote.unwrap();
        assert_eq!((r.region.as_str(), r.endpoint.to_string().as_str()), ("minio-1", "http://minio.lab:9000"));
        assert_eq!(r.addressing, Addressing::Path);
        assert_eq!(r.profile.as_deref(), Some("minio"));
        // The environment wins over the profile.
        let env = [
            GOCACHE,
            ("HOME", h.as_str()),
            ("AWS_PROFILE", "minio"),
            ("AWS_REGION", "r"),
            ("AWS_ENDPOINT_URL_S3", "http://e:1"),
        ];
        let r = run(&["b"], &env).unwrap().remote.unwrap();
        assert_eq!((r.region.as_str(), r.endpoint.to_string().as_str()), ("r", "http://e:1"));
        std::fs::remove_dir_all(home).unwrap();
    }

    #[test]
    fn maintenance_commands_and_their_options() {
        let env = |k: &str| (k == "GOCACHE").then(|| "/tmp/gocache".to_string());
        let parsed = |args: &[&str]| parse(args.iter().map(OsString::from).collect(), &env);
        match parsed(&["prune", "b", "--unused-for", "30d", "--dry-run"]) {
            Ok(Action::Run(Command::Prune, c)) => {
                assert_eq!(c.unused_for, Some(Duration::from_secs(30 * 86_400)));
                assert!(c.dry_run);
                assert_eq!(c.remote.unwrap().refresh_after, Some(Duration::from_secs(86_400)));
            }
            other => panic!("{other:?}"),
        }
        assert!(parsed(&["prune", "b"]).unwrap_err().0.contains("--unused-for"));
        assert!(parsed(&["usage"]).unwrap_err().0.contains("needs a bucket"));
        assert!(parsed(&["--dry-run"]).unwrap_err().0.contains("an option of trim and prune, not of serve"));
        assert!(parsed(&["usage", "b", "--json"]).is_ok());
        match parsed(&["trim", "--local-max-size", "20G", "--local-max-age", "12h"]) {
            Ok(Action::Run(Command::Trim, c)) => {
                assert_eq!(c.trim, Policy { max_age: Duration::from_secs(43_200), max_size: Some(20 << 30) });
            }
            other => panic!("{other:?}"),
        }
        let c = run(&["b", "--refresh-after", "0"], &[GOCACHE]).unwrap();
        assert_eq!((c.trim.max_age, c.trim.max_size), (Duration::from_secs(5 * 86_400), None));
        assert_eq!(c.remote.unwrap().refresh_after, None);
    }

    #[test]
    fn proxies_as_curl_chooses_them() {
        let choose = |url: &str, env: &[(&str, &str)]| {
            let map: HashMap<String, String> = env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
            proxy_for(&Endpoint::parse(url).unwrap(), &move |k| map.get(k).cloned()).map(|(u, _)| u)
        };
        let both = [("HTTPS_PROXY", "http://s:1"), ("http_proxy", "http://p:2")];
        assert_eq!(choose("https://s3.eu-west-1.amazonaws.com", &both).as_deref(), Some("http://s:1"));
        assert_eq!(choose("http://minio:9000", &both).as_deref(), Some("http://p:2"));
        assert_eq!(choose("http://minio:9000", &[("ALL_PROXY", "http://a:3")]).as_deref(), Some("http://a:3"));
        let bypassed = |url: &str, no: &str| choose(url, &[("HTTP_PROXY", "http://p:2"), ("no_proxy", no)]).is_none();
        for no in [".corp", "*.corp", "corp", "*", "minio.corp", "x, minio.corp:9000"] {
            assert!(bypassed("http://minio.corp:9000", no), "{no}");
        }
        for no in ["minio", "*", "x, minio:9000"] {
            assert!(bypassed("http://minio:9000", no), "{no}");
        }
        for (url, no) in
            [("http://minio.corp:9000", "minio"), ("http://minio:9000", "corp"), ("http://minio:9000", ".corp")]
        {
            assert!(!bypassed(url, no), "{url} {no}");
        }
        assert_eq!(
            choose("http://notcorp:1", &[("HTTP_PROXY", "http://p:2"), ("NO_PROXY", "corp")]).as_deref(),
            Some("http://p:2")
        );
        assert_eq!(choose("http://minio:9000", &[]), None);
    }

    #[test]
    fn encryption_and_ca_bundle_options() {
        let r = run(&["b", "--sse", "aws:kms", "--sse-kms-key-id", "k1"], &[GOCACHE]).unwrap().remote.unwrap();
        assert_eq!(r.upload_headers[0], ("x-amz-server-side-encryption".to_string(), "aws:kms".to_string()));
        assert_eq!(r.upload_headers[1].1, "k1");
        assert!(run(&["b", "--sse", "rot13"], &[GOCACHE]).unwrap_err().0.contains("AES256 or aws:kms"));
        assert!(run(&["b", "--sse-kms-key-id", "k"], &[GOCACHE]).unwrap_err().0.contains("needs --sse aws:kms"));
        let err = run(&["b"], &[GOCACHE, ("AWS_CA_BUNDLE", "/no/such/bundle.pem")]).unwrap_err();
        assert!(err.0.starts_with("AWS_CA_BUNDLE: cannot read the CA bundle /no/such/bundle.pem"), "{err}");
    }

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
    fn help_and_version() {
        let none = |_: &str| None;
        assert!(matches!(parse(vec!["--help".into()], &none), Ok(Action::Help(Command::Serve))));
        assert!(matches!(parse(vec!["check".into(), "-h".into()], &none), Ok(Action::Help(Command::Check))));
        assert!(matches!(parse(vec!["-V".into()], &none), Ok(Action::Version)));
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("500ms"), Some(Duration::from_millis(500)));
        assert_eq!(parse_duration("30s"), Some(Duration::from_secs(30)));
        assert_eq!(parse_duration("2m"), Some(Duration::from_secs(120)));
        assert_eq!(parse_duration("1.5"), Some(Duration::from_millis(1500)));
        assert_eq!(parse_duration("-1s"), None);
        assert_eq!(parse_duration("7d"), Some(Duration::from_secs(7 * 86_400)));
        assert_eq!(parse_duration("1w"), None);
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("1048576"), Some(1 << 20));
        assert_eq!(parse_size("500M"), Some(500 << 20));
        assert_eq!(parse_size("2G"), Some(2 << 30));
        assert_eq!(parse_size("64 KiB"), Some(64 << 10));
        assert_eq!(parse_size("1.5G"), None);
        assert_eq!(parse_size("99999999999T"), None);
        assert_eq!(parse_size("ü"), None);
        let err = run(&["b", "--max-object-size", "huge"], &[GOCACHE]).unwrap_err();
        assert!(err.0.contains("--max-object-size: expected a size"), "{err}");
    }
}
