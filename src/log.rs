//! Messages on stderr (stdout belongs to the protocol), or in the `--log-file`, filtered
//! by verbosity.
//!
//! Level 0 is always shown: it is for what the user must know (a setting that cannot
//! work, the bucket switched off, a local disk failure). Level 1 adds the exit summary,
//! 2 per-object remote events, 3 everything. No message ever contains a secret. The
//! session keeps its first level-0 messages (`notices`) for the job report.

use std::fs::File;
use std::io::{self, Write};
use std::path::Path;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Mutex, OnceLock};

static LEVEL: AtomicU8 = AtomicU8::new(0);

/// The `--log-file`, when one was given and could be opened.
static FILE: OnceLock<File> = OnceLock::new();

/// The first level-0 messages of the process, without repeats.
static NOTICES: Mutex<Vec<String>> = Mutex::new(Vec::new());

/// How many level-0 messages [`notices`] keeps (a failing store repeats itself).
const MAX_NOTICES: usize = 10;

/// Sets the verbosity for the whole process.
pub fn set_level(level: u8) {
    LEVEL.store(level, Ordering::Relaxed);
}

/// Whether messages of `level` are shown.
pub fn enabled(level: u8) -> bool {
    level <= LEVEL.load(Ordering::Relaxed)
}

/// Prints `gocacheprog-s3: <message>` on stderr (or in the log file) when `level` is
/// enabled. A closed stderr (go gone, a pipe cut short) is ignored rather than a panic
/// like `eprintln!`.
#[macro_export]
macro_rules! log {
    ($level:expr, $($arg:tt)*) => {
        if $crate::log::enabled($level) {
            $crate::log::emit($level, format_args!($($arg)*));
        }
    };
}

/// Sends every later line to `path` (appended, created if missing) instead of stderr, and
/// a panic's message with them. The one line that still goes to stderr is the failure to
/// open it: there is nowhere else to say it.
pub fn to_file(path: &Path) {
    match File::options().create(true).append(true).open(path) {
        Ok(file) => {
            let _ = FILE.set(file);
            std::panic::set_hook(Box::new(|info| {
                emit(0, format_args!("internal error, please report it: {info}"));
            }));
        }
        Err(e) => emit(0, format_args!("cannot open --log-file {}: {e}; logging to stderr", path.display())),
    }
}

/// Whether lines go to a log file rather than stderr.
pub(crate) fn to_a_file() -> bool {
    FILE.get().is_some()
}

/// Whether a progress count may be drawn on stderr: a person is watching it, and no log
/// file asked for an empty stderr.
pub(crate) fn progress_on_stderr() -> bool {
    use std::io::IsTerminal;
    !to_a_file() && io::stderr().is_terminal()
}

/// Writes one whole line (one `write` call: lines of sessions sharing a log file do not
/// interleave), ignoring errors. In a log file each line carries its time and process.
pub fn emit(level: u8, message: std::fmt::Arguments) {
    let text = message.to_string();
    match FILE.get() {
        Some(mut file) => {
            let now = crate::calendar::Civil::from_system_time(std::time::SystemTime::now());
            let line = format!("{} gocacheprog-s3[{}]: {text}\n", now.rfc3339(), std::process::id());
            let _ = file.write_all(line.as_bytes());
        }
        None => {
            let _ = io::stderr().lock().write_all(format!("gocacheprog-s3: {text}\n").as_bytes());
        }
    }
    if level == 0 {
        let mut notices = NOTICES.lock().unwrap_or_else(|p| p.into_inner());
        if notices.len() < MAX_NOTICES && !notices.contains(&text) {
            notices.push(text);
        }
    }
}

/// The process's first level-0 messages (at most 10, repeats left out).
pub(crate) fn notices() -> Vec<String> {
    NOTICES.lock().unwrap_or_else(|p| p.into_inner()).clone()
}

/// `url` without the `user:password@` it may carry (proxy URLs do), fit for a log line.
pub(crate) fn without_userinfo(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => format!("{}://…@{}", &url[..scheme], &url[at + 1..]),
        _ => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::without_userinfo;

    #[test]
    fn proxy_passwords_stay_out_of_logs() {
        assert_eq!(without_userinfo("http://alice:s3cret@proxy.corp:3128"), "http://…@proxy.corp:3128");
        assert_eq!(without_userinfo("http://proxy.corp:3128"), "http://proxy.corp:3128");
        assert_eq!(without_userinfo("proxy.corp:3128"), "proxy.corp:3128");
    }
}
