//! The command line and the environment, validated once per command into a configuration
//! the rest of the program cannot get wrong.
//!
//! Every option `--name` can also come from `GOCACHEPROG_S3_<NAME>` (upper case, `-` as
//! `_`); a flag wins over its variable. The original Go program's spellings (`-bucket=B`,
//! `-s3-prefix=P`, `-local-cache-dir=D`, `-workers=N`, `-queue-len=N`, `-metrics-csv=F`,
//! `-v=2`, env `GOCACHEPROGS3_BUCKET`) are accepted so existing `GOCACHEPROG` strings work.

pub mod args;
pub mod config;
pub mod help;
mod lookup;
pub mod options;
mod proxy;
mod remote;
mod store;
mod tls;
mod units;

pub use config::{Config, Run};
pub(crate) use lookup::Setting;
pub use options::Command;
pub use remote::RemoteConfig;
use std::ffi::OsString;
use std::fmt;
pub use units::{parse_duration, parse_size};

/// What to do.
#[derive(Debug)]
pub enum Action {
    /// Run a command with its configuration.
    Run(Box<Run>),
    /// Print the help of a command.
    Help(Command),
    /// Print the program's name and version.
    Version,
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

/// The `--log-file` (or `GOCACHEPROG_S3_LOG_FILE`) of a command line, found before it is
/// parsed so that a configuration error is written there too.
pub fn log_file(args: &[OsString], env: &dyn Fn(&str) -> Option<String>) -> Option<std::path::PathBuf> {
    args::log_file(args).or_else(|| env(&options::env_name("log-file")).filter(|v| !v.is_empty())).map(Into::into)
}

/// Parses arguments (without the program name) and the environment.
pub fn parse(args: Vec<OsString>, env: &dyn Fn(&str) -> Option<String>) -> Result<Action, ConfigError> {
    let raw = args::parse(args)?;
    if raw.has("help") {
        return Ok(Action::Help(raw.command));
    }
    if raw.has("version") {
        return Ok(Action::Version);
    }
    Ok(Action::Run(Box::new(config::build(raw, env)?)))
}

/// The configuration `serve` gets from a command line and an environment (for tests).
#[cfg(test)]
pub(crate) mod testing {
    use super::{parse, Action, Config, ConfigError, Run};
    use std::collections::HashMap;
    use std::ffi::OsString;

    pub(crate) fn run(args: &[&str], env: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let map: HashMap<String, String> = env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let env = move |k: &str| map.get(k).cloned();
        match parse(args.iter().map(OsString::from).collect(), &env)? {
            Action::Run(run) => match *run {
                Run::Serve(c) => Ok(c),
                other => panic!("unexpected {other:?}"),
            },
            other => panic!("unexpected {other:?}"),
        }
    }

    /// An absolute directory on this platform.
    pub(crate) const GOCACHE: (&str, &str) = ("GOCACHE", if cfg!(windows) { "C:\\gocache" } else { "/tmp/gocache" });
}
