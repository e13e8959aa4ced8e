//! Command line and environment, validated once into a [`Config`] the rest of the
//! program cannot get wrong.
//!
//! Every option `--name` can also come from `GOCACHEPROG_S3_<NAME>` (upper case, `-` as
//! `_`); a flag wins over its variable. The original Go program's spellings (`-bucket=B`,
//! `-s3-prefix=P`, `-local-cache-dir=D`, `-workers=N`, `-queue-len=N`, `-metrics-csv=F`,
//! `-v=2`, env `GOCACHEPROGS3_BUCKET`) are accepted so existing `GOCACHEPROG` strings work.

use crate::s3::credentials::Credentials;
use crate::s3::endpoint::{Addressing, Endpoint};
use lexopt::prelude::*;
use std::ffi::OsString;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

/// What to do.
#[derive(Debug)]
pub enum Action {
    Serve(Box<Config>),
    Help,
    Version,
}

/// A validated configuration for serving the protocol.
#[derive(Debug, Clone)]
pub struct Config {
    /// Absolute directory of the local tier.
    pub cache_dir: PathBuf,
    /// 0 quiet, 1 summary at exit, 2 per-request remote events and debugging, 3 everything.
    pub verbosity: u8,
    pub stats_file: Option<PathBuf>,
    pub metrics_csv: Option<PathBuf>,
    pub remote: Option<RemoteConfig>,
}

/// Everything about the bucket.
#[derive(Debug, Clone)]
pub struct RemoteConfig {
    pub bucket: String,
    /// Key prefix without a trailing slash (may be empty).
    pub prefix: String,
    pub region: String,
    pub endpoint: Endpoint,
    pub addressing: Addressing,
    /// `None`: unsigned (anonymous) requests.
    pub credentials: Option<Credentials>,
    pub workers: usize,
    pub queue_len: usize,
    pub read_only: bool,
    pub timeout: Duration,
    pub connect_timeout: Duration,
    pub close_timeout: Duration,
    pub max_failures: u32,
}

/// A configuration error: which option or variable, and what it accepts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError(pub String);

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ConfigError {}

/// The help text (`--help`).
pub const HELP: &str = "\
gocacheprog-s3: a Go build cache program (GOCACHEPROG) with a local tier and an S3 bucket

USAGE:
    GOCACHEPROG=\"gocacheprog-s3 [OPTIONS] [BUCKET]\" go build ./...

With no bucket it is a local-only cache. Every option also reads GOCACHEPROG_S3_<NAME>
(e.g. GOCACHEPROG_S3_CACHE_DIR); flags win.

OPTIONS:
    --cache-dir DIR        local tier directory [default: $GOCACHE, else go's default]
    --bucket NAME          S3 bucket (or the positional BUCKET; env GOCACHEPROGS3_BUCKET too)
    --prefix P             key prefix in the bucket [default: go-cache]
    --region R             signing region [default: $AWS_REGION, $AWS_DEFAULT_REGION, us-east-1]
    --endpoint URL         S3 endpoint, http(s)://host[:port][/path]
                           [default: $AWS_ENDPOINT_URL_S3, $AWS_ENDPOINT_URL, AWS]
    --path-style           bucket in the path (default with a custom endpoint)
    --virtual-hosted       bucket in the host name (default for AWS)
    --read-only            read from the bucket, never write to it
    --workers N            parallel uploads and parallel downloads, each [default: 16]
    --queue-len N          uploads waiting at most; more are skipped [default: 10000]
    --timeout DUR          bound on one S3 request [default: 30s]
    --connect-timeout DUR  bound on opening a connection [default: 3s]
    --close-timeout DUR    how long close waits for queued uploads [default: 60s]
    --max-failures N       consecutive remote failures before the bucket is switched off
                           for the session [default: 5]
    --stats-file PATH      write the session's counters as JSON at exit
    --metrics-csv PATH     append the counters as a CSV row at exit
    -v, --verbose          more messages on stderr (repeat, or -v=N)
    -h, --help             this text
    -V, --version          the version

Durations: 500ms, 30s, 2m or a plain number of seconds.
Credentials: AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN.
";

/// Long option names that take a value, with the original program's aliases.
const VALUE_OPTIONS: &[(&str, &[&str])] = &[
    ("cache-dir", &["local-cache-dir"]),
    ("bucket", &[]),
    ("prefix", &["s3-prefix"]),
    ("region", &[]),
    ("endpoint", &[]),
    ("workers", &[]),
    ("queue-len", &[]),
    ("timeout", &[]),
    ("connect-timeout", &[]),
    ("close-timeout", &[]),
    ("max-failures", &[]),
    ("stats-file", &[]),
    ("metrics-csv", &[]),
];

const FLAG_OPTIONS: &[&str] = &["read-only", "path-style", "virtual-hosted", "verbose", "help", "version"];

/// Raw values by canonical option name, before environment fallback and validation.
#[derive(Debug, Default)]
struct Raw {
    values: Vec<(&'static str, String)>,
    flags: Vec<&'static str>,
    verbosity: Option<u8>,
    positional: Vec<String>,
}

impl Raw {
    fn value(&self, name: &str) -> Option<&str> {
        self.values.iter().rev().find(|(k, _)| *k == name).map(|(_, v)| v.as_str())
    }
}

/// Parses arguments (without the program name) and the environment.
pub fn parse(args: Vec<OsString>, env: &dyn Fn(&str) -> Option<String>) -> Result<Action, ConfigError> {
    let raw = parse_args(args)?;
    if raw.flags.contains(&"help") {
        return Ok(Action::Help);
    }
    if raw.flags.contains(&"version") {
        return Ok(Action::Version);
    }
    build(raw, env).map(|c| Action::Serve(Box::new(c)))
}

/// Rewrites Go-flag-style `-name[=value]` into `--name[=value]` for known long names.
fn normalise(arg: OsString) -> OsString {
    let Some(text) = arg.to_str() else { return arg };
    if text.starts_with("--") || !text.starts_with('-') {
        return arg;
    }
    let name = text[1..].split('=').next().unwrap_or("");
    let known =
        VALUE_OPTIONS.iter().any(|(n, aliases)| *n == name || aliases.contains(&name)) || FLAG_OPTIONS.contains(&name);
    if name.len() > 1 && known {
        OsString::from(format!("-{text}"))
    } else {
        arg
    }
}

fn canonical_value_option(name: &str) -> Option<&'static str> {
    VALUE_OPTIONS.iter().find(|(n, aliases)| *n == name || aliases.contains(&name)).map(|(n, _)| *n)
}

fn parse_args(args: Vec<OsString>) -> Result<Raw, ConfigError> {
    let mut raw = Raw::default();
    let mut parser = lexopt::Parser::from_args(args.into_iter().map(normalise));
    let err = |e: lexopt::Error| ConfigError(format!("{e}; see --help for the accepted options"));
    while let Some(arg) = parser.next().map_err(err)? {
        match arg {
            Short('v') | Long("verbose") => {
                let level = match parser.optional_value() {
                    None => raw.verbosity.unwrap_or(0).saturating_add(1),
                    Some(v) => {
                        let v = v.to_string_lossy().into_owned();
                        if !v.is_empty() && v.chars().all(|c| c == 'v') {
                            raw.verbosity.unwrap_or(0).saturating_add(1 + v.len() as u8)
                        } else {
                            v.parse::<u8>().map_err(|_| {
                                ConfigError(format!("-v/--verbose takes a level 0-3 (as -v=2), got {v:?}"))
                            })?
                        }
                    }
                };
                raw.verbosity = Some(level);
            }
            Short('h') | Long("help") => raw.flags.push("help"),
            Short('V') | Long("version") => raw.flags.push("version"),
            Long(name) if FLAG_OPTIONS.contains(&name) => {
                let canonical = FLAG_OPTIONS.iter().copied().find(|n| *n == name).unwrap_or("help");
                let name = name.to_string();
                if let Some(v) = parser.optional_value() {
                    let v = v.to_string_lossy().into_owned();
                    if parse_bool(&v).ok_or_else(|| bool_error(&format!("--{name}"), &v))? {
                        raw.flags.push(canonical);
                    }
                } else {
                    raw.flags.push(canonical);
                }
            }
            Long(name) => {
                let name = name.to_string();
                let Some(canonical) = canonical_value_option(&name) else {
                    return Err(ConfigError(format!("unknown option --{name}; see --help for the accepted options")));
                };
                let value = parser.value().map_err(err)?;
                let value = value
                    .into_string()
                    .map_err(|v| ConfigError(format!("--{canonical}: the value {v:?} is not valid UTF-8")))?;
                raw.values.push((canonical, value));
            }
            Value(v) => raw.positional.push(v.to_string_lossy().into_owned()),
            other => return Err(err(other.unexpected())),
        }
    }
    if raw.positional.len() > 1 {
        return Err(ConfigError(format!(
            "expected at most one positional argument (the bucket), got {:?}",
            raw.positional
        )));
    }
    Ok(raw)
}

fn parse_bool(v: &str) -> Option<bool> {
    match v.to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Some(true),
        "0" | "false" | "no" | "off" | "" => Some(false),
        _ => None,
    }
}

fn bool_error(what: &str, v: &str) -> ConfigError {
    ConfigError(format!("{what}: expected true/false (1/0, yes/no), got {v:?}"))
}

fn env_name(option: &str) -> String {
    format!("GOCACHEPROG_S3_{}", option.to_ascii_uppercase().replace('-', "_"))
}

/// Parses a duration: `500ms`, `30s`, `2m`, `1h`, or a plain number of seconds.
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
        _ => return None,
    };
    (0.0..1e9).contains(&secs).then(|| Duration::from_secs_f64(secs))
}

struct Lookup<'a> {
    raw: &'a Raw,
    env: &'a dyn Fn(&str) -> Option<String>,
}

impl Lookup<'_> {
    /// The flag's value, else its variable's, with the source named for error messages.
    fn get(&self, option: &'static str) -> Option<(String, String)> {
        if let Some(v) = self.raw.value(option) {
            return Some((v.to_string(), format!("--{option}")));
        }
        let name = env_name(option);
        (self.env)(&name).filter(|v| !v.is_empty()).map(|v| (v, name))
    }

    fn flag(&self, option: &'static str) -> Result<bool, ConfigError> {
        if self.raw.flags.contains(&option) {
            return Ok(true);
        }
        let name = env_name(option);
        match (self.env)(&name) {
            Some(v) => parse_bool(&v).ok_or_else(|| bool_error(&name, &v)),
            None => Ok(false),
        }
    }

    fn number<T>(&self, option: &'static str, default: T, min: T) -> Result<T, ConfigError>
    where
        T: std::str::FromStr + PartialOrd + fmt::Display + Copy,
    {
        match self.get(option) {
            None => Ok(default),
            Some((v, source)) => match v.trim().parse::<T>() {
                Ok(n) if n >= min => Ok(n),
                _ => Err(ConfigError(format!("{source}: expected a whole number ≥ {min}, got {v:?}"))),
            },
        }
    }

    fn duration(&self, option: &'static str, default: Duration) -> Result<Duration, ConfigError> {
        match self.get(option) {
            None => Ok(default),
            Some((v, source)) => parse_duration(&v).ok_or_else(|| {
                ConfigError(format!("{source}: expected a duration such as 500ms, 30s or 2m, got {v:?}"))
            }),
        }
    }

    fn path(&self, option: &'static str) -> Option<PathBuf> {
        self.get(option).map(|(v, _)| PathBuf::from(v))
    }
}

fn build(raw: Raw, env: &dyn Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
    let look = Lookup { raw: &raw, env };
    let verbosity = match raw.verbosity {
        Some(v) => v,
        None => look.number("verbose", 0u8, 0)?,
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
        None => default_cache_dir(env)?,
    };
    let bucket = raw
        .value("bucket")
        .map(str::to_string)
        .or_else(|| raw.positional.first().cloned())
        .or_else(|| env(&env_name("bucket")).filter(|b| !b.is_empty()))
        .or_else(|| env("GOCACHEPROGS3_BUCKET").filter(|b| !b.is_empty()));
    let remote = match bucket {
        None => None,
        Some(bucket) => Some(remote_config(&look, bucket, env)?),
    };
    Ok(Config {
        cache_dir,
        verbosity,
        stats_file: look.path("stats-file"),
        metrics_csv: look.path("metrics-csv"),
        remote,
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
    let prefix = look.get("prefix").map_or("go-cache".to_string(), |(p, _)| p);
    let prefix = prefix.trim_matches('/').to_string();
    let nonempty = |name: &str| env(name).filter(|v| !v.is_empty());
    let region = look
        .get("region")
        .map(|(r, _)| r)
        .or_else(|| nonempty("AWS_REGION"))
        .or_else(|| nonempty("AWS_DEFAULT_REGION"))
        .unwrap_or_else(|| "us-east-1".to_string());
    let custom_endpoint = match look.get("endpoint") {
        Some(found) => Some(found),
        None => nonempty("AWS_ENDPOINT_URL_S3")
            .map(|v| (v, "AWS_ENDPOINT_URL_S3".to_string()))
            .or_else(|| nonempty("AWS_ENDPOINT_URL").map(|v| (v, "AWS_ENDPOINT_URL".to_string()))),
    };
    let path_style = look.flag("path-style")?;
    let virtual_hosted = look.flag("virtual-hosted")?;
    if path_style && virtual_hosted {
        return Err(ConfigError("--path-style and --virtual-hosted exclude each other; choose one".into()));
    }
    let (endpoint, default_addressing) = match custom_endpoint {
        Some((url, source)) => {
            let e = Endpoint::parse(&url).map_err(|e| ConfigError(format!("{source}: {e}")))?;
            (e, Addressing::Path)
        }
        // Bucket names with dots break TLS host matching in virtual-hosted form.
        None if bucket.contains('.') => (Endpoint::aws(&region), Addressing::Path),
        None => (Endpoint::aws(&region), Addressing::VirtualHosted),
    };
    let addressing = if path_style {
        Addressing::Path
    } else if virtual_hosted {
        Addressing::VirtualHosted
    } else {
        default_addressing
    };
    let credentials = match (nonempty("AWS_ACCESS_KEY_ID"), nonempty("AWS_SECRET_ACCESS_KEY")) {
        (Some(access_key_id), Some(secret_access_key)) => {
            Some(Credentials { access_key_id, secret_access_key, session_token: nonempty("AWS_SESSION_TOKEN") })
        }
        (None, None) => None,
        (Some(_), None) => {
            return Err(ConfigError("AWS_ACCESS_KEY_ID is set but AWS_SECRET_ACCESS_KEY is not; set both".into()))
        }
        (None, Some(_)) => {
            return Err(ConfigError("AWS_SECRET_ACCESS_KEY is set but AWS_ACCESS_KEY_ID is not; set both".into()))
        }
    };
    Ok(RemoteConfig {
        bucket,
        prefix,
        region,
        endpoint,
        addressing,
        credentials,
        workers: look.number("workers", 16usize, 1)?,
        queue_len: look.number("queue-len", 10_000usize, 1)?,
        read_only: look.flag("read-only")?,
        timeout: look.duration("timeout", Duration::from_secs(30))?,
        connect_timeout: look.duration("connect-timeout", Duration::from_secs(3))?,
        close_timeout: look.duration("close-timeout", Duration::from_secs(60))?,
        max_failures: look.number("max-failures", 5u32, 1)?,
    })
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
    use super::*;
    use std::collections::HashMap;

    fn run(args: &[&str], env: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let map: HashMap<String, String> = env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let env = move |k: &str| map.get(k).cloned();
        match parse(args.iter().map(OsString::from).collect(), &env)? {
            Action::Serve(c) => Ok(*c),
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
        let creds = r.credentials.unwrap();
        assert_eq!(creds.session_token.as_deref(), Some("tok"));
        assert!(!format!("{creds:?}").contains("s3cr3t"));
        // AWS itself: virtual-hosted unless the bucket has dots.
        let r = run(&["b"], &[GOCACHE]).unwrap().remote.unwrap();
        assert_eq!((r.addressing, r.region.as_str()), (Addressing::VirtualHosted, "us-east-1"));
        assert!(r.credentials.is_none());
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
            (&["b"], &[("AWS_ACCESS_KEY_ID", "x")], "AWS_SECRET_ACCESS_KEY is not"),
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
    fn help_and_version() {
        let none = |_: &str| None;
        assert!(matches!(parse(vec!["--help".into()], &none), Ok(Action::Help)));
        assert!(matches!(parse(vec!["-V".into()], &none), Ok(Action::Version)));
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("500ms"), Some(Duration::from_millis(500)));
        assert_eq!(parse_duration("30s"), Some(Duration::from_secs(30)));
        assert_eq!(parse_duration("2m"), Some(Duration::from_secs(120)));
        assert_eq!(parse_duration("1.5"), Some(Duration::from_millis(1500)));
        assert_eq!(parse_duration("-1s"), None);
        assert_eq!(parse_duration("1d"), None);
    }
}
