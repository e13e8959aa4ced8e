//! The subcommands, each a `run` that returns the process's exit status.

pub mod check;
pub mod prune;
pub mod report;
pub mod serve;
pub mod stamp;
pub mod trim;
pub mod usage;

/// A report on stdout (a reader that stops early, `| head`, is not an error).
pub(crate) fn print(text: &str) {
    let _ = std::io::Write::write_all(&mut std::io::stdout().lock(), text.as_bytes());
}
