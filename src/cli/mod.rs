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
pub mod options;

pub use config::{parse_duration, parse_size, Config, RemoteConfig, Setting};
pub use options::Command;
use std::ffi::OsString;
use std::fmt;

/// What to do.
#[derive(Debug)]
pub enum Action {
    /// Run a command with its configuration.
    Run(Command, Box<Config>),
    /// Print the help of a command.
    Help(Command),
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
    let mut raw = args::parse(args)?;
    if raw.has("help") {
        return Ok(Action::Help(raw.command));
    }
    if raw.has("version") {
        return Ok(Action::Version);
    }
    let command = raw.command;
    let paths = if command.takes_paths() { std::mem::take(&mut raw.positional) } else { Vec::new() };
    let mut config = config::build(raw, env)?;
    config.paths = paths.into_iter().map(Into::into).collect();
    Ok(Action::Run(command, Box::new(config)))
}
