//! The command line as given: the subcommand, option values by canonical name, switches,
//! the verbosity and the positional bucket, before the environment and validation.

use super::options::{self, Command};
use super::ConfigError;
use lexopt::prelude::*;
use std::ffi::OsString;

/// What the command line said.
#[derive(Debug)]
pub(crate) struct Raw {
    pub(crate) command: Command,
    pub(crate) values: Vec<(&'static str, String)>,
    pub(crate) switches: Vec<&'static str>,
    pub(crate) verbosity: Option<u8>,
    pub(crate) positional: Vec<String>,
}

impl Raw {
    /// The last value given for `name`.
    pub(crate) fn value(&self, name: &str) -> Option<&str> {
        self.values.iter().rev().find(|(k, _)| *k == name).map(|(_, v)| v.as_str())
    }

    /// Every value given for `name` (a repeatable option), in order.
    pub(crate) fn values_of(&self, name: &str) -> Vec<&str> {
        self.values.iter().filter(|(k, _)| *k == name).map(|(_, v)| v.as_str()).collect()
    }

    pub(crate) fn has(&self, switch: &str) -> bool {
        self.switches.contains(&switch)
    }
}

/// Rewrites Go-flag-style `-name[=value]` into `--name[=value]` for known long names.
fn normalise(arg: OsString) -> OsString {
    let Some(text) = arg.to_str() else { return arg };
    if text.starts_with("--") || !text.starts_with('-') {
        return arg;
    }
    let name = text[1..].split('=').next().unwrap_or("");
    if name.len() > 1 && options::find(name).is_some() {
        OsString::from(format!("-{text}"))
    } else {
        arg
    }
}

/// Parses the arguments (without the program name). The first positional argument that
/// names a command is the command; the rest is the bucket.
pub(crate) fn parse(args: Vec<OsString>) -> Result<Raw, ConfigError> {
    let mut raw = Raw {
        command: Command::Serve,
        values: Vec::new(),
        switches: Vec::new(),
        verbosity: None,
        positional: Vec::new(),
    };
    let mut command_given = false;
    let mut parser = lexopt::Parser::from_args(args.into_iter().map(normalise));
    let err = |e: lexopt::Error| ConfigError(format!("{e}; see --help for the accepted options"));
    while let Some(arg) = parser.next().map_err(err)? {
        let opt = match &arg {
            Short(c) => options::find_short(*c),
            Long(name) => options::find(name),
            Value(_) => None,
        };
        match (arg, opt) {
            (Value(v), _) => {
                let v = v.to_string_lossy().into_owned();
                match Command::named(&v) {
                    Some(c) if !command_given && raw.positional.is_empty() => {
                        raw.command = c;
                        command_given = true;
                    }
                    _ => raw.positional.push(v),
                }
            }
            (_, Some(o)) if o.name == "verbose" => {
                let level = match parser.optional_value() {
                    None => raw.verbosity.unwrap_or(0).saturating_add(1),
                    Some(v) => verbosity(raw.verbosity, &v.to_string_lossy())?,
                };
                raw.verbosity = Some(level);
            }
            (_, Some(o)) if o.value.is_none() => {
                if let Some(v) = parser.optional_value() {
                    let v = v.to_string_lossy().into_owned();
                    if parse_bool(&v).ok_or_else(|| bool_error(&format!("--{}", o.name), &v))? {
                        raw.switches.push(o.name);
                    }
                } else {
                    raw.switches.push(o.name);
                }
            }
            (_, Some(o)) => {
                let value = parser.value().map_err(err)?;
                let value = value
                    .into_string()
                    .map_err(|v| ConfigError(format!("--{}: the value {v:?} is not valid UTF-8", o.name)))?;
                raw.values.push((o.name, value));
            }
            (Long(name), None) => {
                return Err(ConfigError(format!("unknown option --{name}; see --help for the accepted options")));
            }
            (other, None) => return Err(err(other.unexpected())),
        }
    }
    let (what, most) = raw.command.positional();
    if raw.positional.len() > most {
        return Err(ConfigError(format!(
            "expected at most one positional argument ({what}), got {:?}",
            raw.positional
        )));
    }
    let given = raw.values.iter().map(|(name, _)| *name).chain(raw.switches.iter().copied());
    if let Some(o) = given.filter_map(options::find).find(|o| !o.applies_to(raw.command)) {
        let owners: Vec<&str> = o.only.iter().map(|c| c.name()).collect();
        let owners = match owners.split_last() {
            Some((last, rest)) if !rest.is_empty() => format!("{} and {last}", rest.join(", ")),
            _ => owners.join(""),
        };
        return Err(ConfigError(format!("--{} is an option of {owners}, not of {}", o.name, raw.command.name())));
    }
    Ok(raw)
}

/// The last `--log-file` value of the arguments (any spelling the parser takes), read
/// before anything else so that even a bad option's message goes to the file.
pub(crate) fn log_file(args: &[OsString]) -> Option<String> {
    let mut found = None;
    let mut args = args.iter().cloned().map(normalise);
    while let Some(arg) = args.next() {
        let Some(text) = arg.to_str() else { continue };
        if text == "--" {
            break;
        } else if text == "--log-file" {
            found = args.next().and_then(|v| v.into_string().ok());
        } else if let Some(value) = text.strip_prefix("--log-file=") {
            found = Some(value.to_string());
        }
    }
    found.filter(|v| !v.is_empty())
}

/// `-v=N`, or `-vv...` as lexopt hands it (`-v` then the value `v...`).
fn verbosity(current: Option<u8>, v: &str) -> Result<u8, ConfigError> {
    if !v.is_empty() && v.chars().all(|c| c == 'v') {
        Ok(current.unwrap_or(0).saturating_add(u8::try_from(v.len()).unwrap_or(u8::MAX).saturating_add(1)))
    } else {
        v.parse::<u8>().map_err(|_| ConfigError(format!("-v/--verbose takes a level 0-3 (as -v=2), got {v:?}")))
    }
}

pub(crate) fn parse_bool(v: &str) -> Option<bool> {
    match v.to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Some(true),
        "0" | "false" | "no" | "off" | "" => Some(false),
        _ => None,
    }
}

pub(crate) fn bool_error(what: &str, v: &str) -> ConfigError {
    ConfigError(format!("{what}: expected true/false (1/0, yes/no), got {v:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(args: &[&str]) -> Result<Raw, ConfigError> {
        parse(args.iter().map(OsString::from).collect())
    }

    #[test]
    fn the_first_word_may_name_a_command() {
        let r = raw(&["check", "b"]).unwrap();
        assert_eq!((r.command, r.positional.as_slice()), (Command::Check, &["b".to_string()][..]));
        let r = raw(&["-v", "check", "--json", "b"]).unwrap();
        assert_eq!(r.command, Command::Check);
        assert!(r.has("json"));
        // The default is serve; a bucket called "check" comes after the command, or as --bucket.
        let r = raw(&["b"]).unwrap();
        assert_eq!(r.command, Command::Serve);
        let r = raw(&["serve", "check"]).unwrap();
        assert_eq!((r.command, r.positional.as_slice()), (Command::Serve, &["check".to_string()][..]));
        let r = raw(&["--bucket", "check"]).unwrap();
        assert_eq!((r.command, r.value("bucket")), (Command::Serve, Some("check")));
        let err = raw(&["b", "--json"]).unwrap_err();
        assert!(err.0.contains("--json is an option of check, usage and report, not of serve"), "{err}");
    }

    #[test]
    fn the_log_file_is_found_before_parsing() {
        let find = |args: &[&str]| log_file(&args.iter().map(OsString::from).collect::<Vec<_>>());
        assert_eq!(find(&["--frobnicate", "--log-file", "/l1"]).as_deref(), Some("/l1"));
        assert_eq!(find(&["-log-file=/l2", "b"]).as_deref(), Some("/l2"));
        assert_eq!(find(&["--log-file=/a", "--log-file", "/b"]).as_deref(), Some("/b"));
        assert_eq!(find(&["b", "--", "--log-file", "/no"]), None);
        assert_eq!(find(&["--log-file"]), None);
    }
}
