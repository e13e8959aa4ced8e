//! The lookup engine: an option's value from its flag, then `GOCACHEPROG_S3_<NAME>`, then
//! the option's other variables, then the table's default, parsed into the type the
//! program uses, with a note of where every value came from.

use super::args::{bool_error, parse_bool, Raw};
use super::options::{self, Command, Fallback, OPTIONS};
use super::units::{parse_duration, parse_size};
use super::ConfigError;
use std::cell::RefCell;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

/// One setting as the program uses it, and where its value came from (`--name`, a
/// variable, a profile, or `default`), for `-vv` and `check`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Setting {
    pub(crate) name: &'static str,
    pub(crate) value: String,
    pub(crate) source: String,
}

/// Looks options up in the command line and the environment, and notes every value it
/// hands out with its source.
pub(super) struct Lookup<'a> {
    raw: &'a Raw,
    env: &'a dyn Fn(&str) -> Option<String>,
    noted: RefCell<Vec<Setting>>,
}

impl<'a> Lookup<'a> {
    pub(super) fn new(raw: &'a Raw, env: &'a dyn Fn(&str) -> Option<String>) -> Self {
        Lookup { raw, env, noted: RefCell::new(Vec::new()) }
    }

    /// Records `name = value (from source)`, replacing an earlier note of `name`.
    pub(super) fn note(&self, name: &'static str, value: impl Into<String>, source: impl Into<String>) {
        let mut noted = self.noted.borrow_mut();
        noted.retain(|s| s.name != name);
        noted.push(Setting { name, value: value.into(), source: source.into() });
    }

    /// A variable of the environment; empty counts as unset.
    pub(super) fn var(&self, name: &str) -> Option<String> {
        (self.env)(name).filter(|v| !v.is_empty())
    }

    /// The given value (flag or variable), with its source; `None` when not given.
    pub(super) fn get(&self, option: &'static str) -> Option<(String, String)> {
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
    pub(super) fn list(&self, option: &'static str) -> Vec<String> {
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
    pub(super) fn get_or_default(&self, option: &'static str) -> Option<(String, String)> {
        self.get(option).or_else(|| match options::find(option).map(|o| o.default) {
            Some(Fallback::Value(v)) => Some((v.to_string(), "default".to_string())),
            _ => None,
        })
    }

    /// A switch: given as a flag, or its variable as true/false.
    pub(super) fn switch(&self, option: &'static str) -> Result<bool, ConfigError> {
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
    pub(super) fn parsed<T>(
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
    pub(super) fn number<T>(&self, option: &'static str, min: T) -> Result<T, ConfigError>
    where
        T: std::str::FromStr + PartialOrd + fmt::Display + Copy,
    {
        let form = format!("a whole number ≥ {min}");
        self.parsed(option, &form, |v| v.trim().parse::<T>().ok().filter(|n| *n >= min))?
            .ok_or_else(|| no_default(option))
    }

    /// A duration (the table gives the default).
    pub(super) fn duration(&self, option: &'static str) -> Result<Duration, ConfigError> {
        self.parsed(option, "a duration such as 500ms, 30s, 2m or 7d", parse_duration)?
            .ok_or_else(|| no_default(option))
    }

    /// A byte count (the table gives the default).
    pub(super) fn size(&self, option: &'static str) -> Result<u64, ConfigError> {
        self.parsed(option, "a size in bytes such as 500M, 2G or 1048576", parse_size)?
            .ok_or_else(|| no_default(option))
    }

    /// A path, as given; `None` when not given.
    pub(super) fn path(&self, option: &'static str) -> Option<PathBuf> {
        self.get(option).map(|(v, _)| PathBuf::from(v))
    }

    /// Every setting of `command` in the table's order (what was not given at its
    /// default), then the derived ones (credentials, proxy).
    pub(super) fn settings(&self, command: Command) -> Vec<Setting> {
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
