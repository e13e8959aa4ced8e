//! Messages on stderr (stdout belongs to the protocol), filtered by verbosity.
//!
//! Level 0 is always shown: it is for what the user must know (a setting that cannot
//! work, the bucket switched off, a local disk failure). Level 1 adds the exit summary,
//! 2 per-object remote events, 3 everything. No message ever contains a secret.

use std::sync::atomic::{AtomicU8, Ordering};

static LEVEL: AtomicU8 = AtomicU8::new(0);

/// Sets the verbosity for the whole process.
pub fn set_level(level: u8) {
    LEVEL.store(level, Ordering::Relaxed);
}

/// Whether messages of `level` are shown.
pub fn enabled(level: u8) -> bool {
    level <= LEVEL.load(Ordering::Relaxed)
}

/// Prints `gocacheprog-s3: <message>` on stderr when `level` is enabled. A closed stderr
/// (go gone, a pipe cut short) is ignored rather than a panic like `eprintln!`.
#[macro_export]
macro_rules! log {
    ($level:expr, $($arg:tt)*) => {
        if $crate::log::enabled($level) {
            $crate::log::write_line(format_args!($($arg)*));
        }
    };
}

/// Writes one whole line to stderr, ignoring errors.
pub fn write_line(message: std::fmt::Arguments) {
    use std::io::Write;
    let line = format!("gocacheprog-s3: {message}\n");
    let _ = std::io::stderr().lock().write_all(line.as_bytes());
}

/// `url` without the `user:password@` it may carry (proxy URLs do), fit for a log line.
pub fn without_userinfo(url: &str) -> String {
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
