//! The configuration of a command, built from the `Lookup` of its command line and
//! environment and validated once: what it refuses stops the program before any work.

use super::args::Raw;
use super::lookup::{Lookup, Setting};
use super::options::Command;
use super::remote::{self, RemoteConfig, RemoteError};
use super::units::{parse_duration, parse_size};
use super::ConfigError;
use crate::local::trim::Policy;
use std::path::PathBuf;
use std::time::Duration;

/// A command with its configuration: a command that works on the bucket has one, `prune`
/// has its `--unused-for` and `report` its stats, so no command meets a state the
/// configuration refused.
#[derive(Debug)]
pub enum Run {
    /// Answer go on stdin/stdout (the default command); the bucket is optional.
    Serve(Config),
    /// Probe the bucket once and diagnose what fails.
    Check(Config<RemoteConfig>),
    /// Trim the local tier.
    Trim(Config),
    /// Delete from the bucket what no build used for a while.
    Prune {
        /// The bucket to prune.
        config: Config<RemoteConfig>,
        /// Delete what no build used for this long (`--unused-for`).
        unused_for: Duration,
    },
    /// Report what the bucket's prefix and the local tier hold.
    Usage(Config<RemoteConfig>),
    /// Its stats: `config.stats_dir`, `config.paths` or both.
    Report(Config),
    /// Its directory: the first of `config.paths`, else the current one.
    Stamp(Config),
}

impl Run {
    /// The level of messages on stderr.
    pub fn verbosity(&self) -> u8 {
        match self {
            Run::Serve(c) | Run::Trim(c) | Run::Report(c) | Run::Stamp(c) => c.verbosity,
            Run::Check(c) | Run::Prune { config: c, .. } | Run::Usage(c) => c.verbosity,
        }
    }
}

/// The settings every command shares. `R` is the bucket: `Option<RemoteConfig>` where
/// it may be absent (a local-only `serve`), [`RemoteConfig`] for the commands that need one.
#[derive(Debug, Clone)]
pub struct Config<R = Option<RemoteConfig>> {
    /// Absolute directory of the local tier.
    pub(crate) cache_dir: PathBuf,
    /// 0 quiet, 1 summary at exit, 2 per-request remote events and debugging, 3 everything.
    pub(crate) verbosity: u8,
    pub(crate) stats_file: Option<PathBuf>,
    pub(crate) metrics_csv: Option<PathBuf>,
    /// `--stats-dir`: each session's record goes there; `report` reads it.
    pub(crate) stats_dir: Option<PathBuf>,
    /// The positional paths of the commands that take paths (`report`'s files).
    pub(crate) paths: Vec<PathBuf>,
    /// Where messages go instead of stderr (main sets it up before parsing: see
    /// [`crate::cli::log_file`]).
    pub(crate) log_file: Option<PathBuf>,
    pub(crate) remote: R,
    /// `serve` only: why the bucket named is not used (a setting the host lends that
    /// cannot be used), naming the setting and the file.
    pub(crate) remote_off: Option<String>,
    /// What trimming the local tier removes.
    pub(crate) trim: Policy,
    /// `trim`, `prune`: report, remove nothing.
    pub(crate) dry_run: bool,
    /// `check`, `usage`, `report`: the report as JSON.
    pub(crate) json: bool,
    /// Every setting and where it came from (`-vv`, `check`).
    pub(crate) settings: Vec<Setting>,
}

impl Config {
    /// The configuration of a command that works on the bucket, or the error that says
    /// it needs one.
    fn with_bucket(self, command: Command) -> Result<Config<RemoteConfig>, ConfigError> {
        let Some(remote) = self.remote else {
            return Err(ConfigError(format!(
                "{} needs a bucket: the BUCKET argument, --bucket or GOCACHEPROG_S3_BUCKET (as in the GOCACHEPROG \
                 string)",
                command.name()
            )));
        };
        Ok(Config {
            cache_dir: self.cache_dir,
            verbosity: self.verbosity,
            stats_file: self.stats_file,
            metrics_csv: self.metrics_csv,
            stats_dir: self.stats_dir,
            paths: self.paths,
            log_file: self.log_file,
            remote,
            remote_off: self.remote_off,
            trim: self.trim,
            dry_run: self.dry_run,
            json: self.json,
            settings: self.settings,
        })
    }
}

/// Builds and validates the configuration of `raw.command`.
///
/// An option is a row of [`super::options::OPTIONS`] and a field filled here (or in
/// `cli::remote` for the bucket's) by the `Lookup` of its kind: `look.duration`,
/// `look.size`, `look.number`, `look.switch`, `look.path`, `look.parsed`.
pub(crate) fn build(mut raw: Raw, env: &dyn Fn(&str) -> Option<String>) -> Result<Run, ConfigError> {
    let command = raw.command;
    let paths = if command.takes_paths() { std::mem::take(&mut raw.positional) } else { Vec::new() };
    let look = Lookup::new(&raw, env);
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
    let (remote, remote_off) = match bucket.map(|bucket| remote::build(&look, bucket, env)).transpose() {
        Ok(remote) => (remote, None),
        // A build must not fail because the host lacks a file an inherited variable names:
        // go's session runs on the local tier (and `trim` needs no bucket). `check` and the
        // commands that work on the bucket report it.
        Err(RemoteError::Unusable(why)) if matches!(command, Command::Serve | Command::Trim) => (None, Some(why)),
        Err(RemoteError::Unusable(why)) => return Err(ConfigError(why)),
        Err(RemoteError::Config(e)) => return Err(e),
    };
    let stats_file = look.path("stats-file");
    let metrics_csv = look.path("metrics-csv");
    let log_file = look.path("log-file");
    let stats_dir = look.path("stats-dir");
    let trim = Policy {
        max_age: look.duration("local-max-age")?,
        max_size: look.parsed("local-max-size", "a size in bytes such as 500M, 20G or 1048576", parse_size)?,
    };
    let unused_for = look.parsed("unused-for", "a duration such as 30d, 12h or 0s", parse_duration)?;
    let config = Config {
        cache_dir,
        verbosity,
        stats_file,
        metrics_csv,
        stats_dir,
        paths: paths.into_iter().map(Into::into).collect(),
        log_file,
        remote,
        remote_off,
        trim,
        dry_run: raw.has("dry-run"),
        json: raw.has("json"),
        settings: look.settings(command),
    };
    Ok(match command {
        Command::Serve => Run::Serve(config),
        Command::Check => Run::Check(config.with_bucket(command)?),
        Command::Trim => Run::Trim(config),
        Command::Prune => {
            let unused_for = unused_for.ok_or_else(|| {
                ConfigError(
                    "prune needs --unused-for: how long an object may go unused before it is deleted (e.g. 30d; \
                     0s deletes everything under the prefix)"
                        .into(),
                )
            })?;
            Run::Prune { config: config.with_bucket(command)?, unused_for }
        }
        Command::Usage => Run::Usage(config.with_bucket(command)?),
        Command::Report if config.stats_dir.is_none() && config.paths.is_empty() => {
            return Err(ConfigError(
                "report needs the job's stats: --stats-dir DIR (or GOCACHEPROG_S3_STATS_DIR, as the job's go \
                 commands had it), or --stats-file / --metrics-csv files as arguments"
                    .into(),
            ));
        }
        Command::Report => Run::Report(config),
        Command::Stamp => Run::Stamp(config),
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
    } else if cfg!(windows) {
        env("LocalAppData").filter(|d| !d.is_empty()).map(PathBuf::from)
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
    use super::super::testing::{run, GOCACHE};
    use super::super::{parse, Action};
    use super::*;
    use std::ffi::OsString;

    #[test]
    fn local_only_by_default_at_gocache() {
        let c = run(&[], &[GOCACHE]).unwrap();
        assert_eq!(c.cache_dir, PathBuf::from(GOCACHE.1));
        assert!(c.remote.is_none());
        assert_eq!(c.verbosity, 0);
        if cfg!(windows) {
            let c = run(&[], &[("LocalAppData", "C:\\Users\\u\\AppData\\Local")]).unwrap();
            assert_eq!(c.cache_dir, PathBuf::from("C:\\Users\\u\\AppData\\Local\\go-build"));
        } else {
            let c = run(&[], &[("HOME", "/home/u")]).unwrap();
            assert_eq!(c.cache_dir, PathBuf::from("/home/u/.cache/go-build"));
        }
    }

    #[test]
    fn original_program_spellings() {
        let c = run(
            &[
                "-v=2",
                "-bucket=b1",
                "-s3-prefix=p/",
                &format!("-local-cache-dir={}", GOCACHE.1),
                "-workers=3",
                "-queue-len=7",
                "-metrics-csv=/m.csv",
            ],
            &[("GOCACHE", "/elsewhere")],
        )
        .unwrap();
        assert_eq!(c.verbosity, 2);
        assert_eq!(c.cache_dir, PathBuf::from(GOCACHE.1));
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
        let (env_dir, flag_dir) = if cfg!(windows) { ("C:\\env", "C:\\flag") } else { ("/env", "/flag") };
        let env = [GOCACHE, ("GOCACHEPROG_S3_CACHE_DIR", env_dir), ("GOCACHEPROG_S3_BUCKET", "envb")];
        let c = run(&["--cache-dir", flag_dir, "flagb"], &env).unwrap();
        assert_eq!(c.cache_dir, PathBuf::from(flag_dir));
        assert_eq!(c.remote.unwrap().bucket, "flagb");
        let c = run(&[], &env).unwrap();
        assert_eq!(c.cache_dir, PathBuf::from(env_dir));
        assert_eq!(c.remote.unwrap().bucket, "envb");
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
    fn maintenance_commands_and_their_options() {
        let env = |k: &str| (k == "GOCACHE").then(|| GOCACHE.1.to_string());
        let parsed = |args: &[&str]| match parse(args.iter().map(OsString::from).collect(), &env) {
            Ok(Action::Run(run)) => Ok(*run),
            Ok(other) => panic!("{other:?}"),
            Err(e) => Err(e),
        };
        match parsed(&["prune", "b", "--unused-for", "30d", "--dry-run"]) {
            Ok(Run::Prune { config, unused_for }) => {
                assert_eq!(unused_for, Duration::from_secs(30 * 86_400));
                assert!(config.dry_run);
                assert_eq!(config.remote.refresh_after, Some(Duration::from_secs(86_400)));
            }
            other => panic!("{other:?}"),
        }
        // What a command needs is refused once, here, with what to give.
        assert!(parsed(&["prune", "b"]).unwrap_err().0.starts_with("prune needs --unused-for"));
        for args in [&["check"][..], &["usage"], &["prune", "--unused-for=1d"]] {
            let err = parsed(args).unwrap_err();
            assert!(err.0.starts_with(&format!("{} needs a bucket: the BUCKET argument", args[0])), "{err}");
        }
        assert!(parsed(&["--dry-run"]).unwrap_err().0.contains("an option of trim and prune, not of serve"));
        assert!(matches!(parsed(&["usage", "b", "--json"]), Ok(Run::Usage(c)) if c.json && c.remote.bucket == "b"));
        assert!(parsed(&["report"]).unwrap_err().0.starts_with("report needs the job's stats: --stats-dir DIR"));
        assert!(matches!(parsed(&["report", "--stats-dir", "/d"]), Ok(Run::Report(c)) if c.paths.is_empty()));
        match parsed(&["report", "s1.json", "s2.json"]) {
            Ok(Run::Report(c)) => {
                assert_eq!(c.paths, [PathBuf::from("s1.json"), PathBuf::from("s2.json")]);
                assert!(c.remote.is_none(), "a report's files are not a bucket");
            }
            other => panic!("{other:?}"),
        }
        match parsed(&["trim", "--local-max-size", "20G", "--local-max-age", "12h"]) {
            Ok(Run::Trim(c)) => {
                assert_eq!(c.trim, Policy { max_age: Duration::from_secs(43_200), max_size: Some(20 << 30) });
            }
            other => panic!("{other:?}"),
        }
        let c = run(&["b", "--refresh-after", "0"], &[GOCACHE]).unwrap();
        assert_eq!((c.trim.max_age, c.trim.max_size), (Duration::from_secs(5 * 86_400), None));
        assert_eq!(c.remote.unwrap().refresh_after, None);
    }

    #[test]
    fn host_settings_that_cannot_be_used_switch_the_bucket_off() {
        let dir = std::env::temp_dir().join(format!("gocacheprog-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let not_pem = dir.join("not.pem");
        std::fs::write(&not_pem, "no certificates here\n").unwrap();
        let not_pem = not_pem.to_string_lossy().into_owned();
        for (env, why) in [
            (
                ("AWS_CA_BUNDLE", "/no/such/bundle.pem"),
                "AWS_CA_BUNDLE: cannot read the CA bundle /no/such/bundle.pem: ",
            ),
            (("AWS_CA_BUNDLE", not_pem.as_str()), "AWS_CA_BUNDLE: "),
            (("AWS_ENDPOINT_URL", "localhost:9000"), "AWS_ENDPOINT_URL: \"localhost:9000\" must start with http://"),
            (("AWS_ENDPOINT_URL_S3", "ftp://h"), "AWS_ENDPOINT_URL_S3: "),
            (("AWS_CONFIG_FILE", "/no/such/config"), "AWS_CONFIG_FILE: cannot read /no/such/config: "),
            (("AWS_SHARED_CREDENTIALS_FILE", "/no/such/credentials"), "AWS_SHARED_CREDENTIALS_FILE: cannot read "),
        ] {
            let c = run(&["b"], &[GOCACHE, env]).unwrap();
            assert!(c.remote.is_none(), "{env:?}");
            let off = c.remote_off.unwrap_or_default();
            assert!(off.starts_with(why), "{env:?}: {off}");
            // trim needs no bucket; check reports it (the diagnostic command does not hide what
            // it would not use).
            let trim = parse(vec!["trim".into(), "b".into()], &|k| {
                [GOCACHE, env].iter().find(|(n, _)| *n == k).map(|(_, v)| v.to_string())
            });
            assert!(matches!(trim, Ok(Action::Run(run)) if matches!(*run, Run::Trim(_))), "{env:?}");
            let check = parse(vec!["check".into(), "b".into()], &|k| {
                [GOCACHE, env].iter().find(|(n, _)| *n == k).map(|(_, v)| v.to_string())
            });
            assert!(matches!(&check, Err(e) if e.0.starts_with(why)), "{env:?}");
        }
        // The program's own settings still stop it: a malformed command line, also beside an
        // unusable host setting.
        let err = run(&["b", "--endpoint", "localhost:9000"], &[GOCACHE]).unwrap_err();
        assert!(err.0.starts_with("--endpoint: "), "{err}");
        let err = run(&["b", "--workers", "many"], &[GOCACHE, ("AWS_CA_BUNDLE", "/no/such/bundle.pem")]).unwrap_err();
        assert!(err.0.starts_with("--workers: "), "{err}");
        // A good bundle is used.
        assert!(run(&["b"], &[GOCACHE]).unwrap().remote_off.is_none());
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn help_and_version() {
        let none = |_: &str| None;
        assert!(matches!(parse(vec!["--help".into()], &none), Ok(Action::Help(Command::Serve))));
        assert!(matches!(parse(vec!["check".into(), "-h".into()], &none), Ok(Action::Help(Command::Check))));
        assert!(matches!(parse(vec!["-V".into()], &none), Ok(Action::Version)));
    }

    #[test]
    fn a_bad_size_names_the_option() {
        let err = run(&["b", "--max-object-size", "huge"], &[GOCACHE]).unwrap_err();
        assert!(err.0.contains("--max-object-size: expected a size"), "{err}");
    }
}
