//! `trim`: the local tier's trim, now (the cache does it itself at most once a day).

use crate::cli::Config;
use crate::local::trim;
use crate::stats::human_bytes;
use std::process::ExitCode;
use std::time::SystemTime;

/// Trims the local tier (or, with `--dry-run`, says what it would remove) and reports.
pub fn run(config: &Config) -> ExitCode {
    let dir = &config.cache_dir;
    if !dir.is_dir() {
        log!(
            0,
            "trim: {} is not a directory, so there is nothing to trim (check --cache-dir or GOCACHE)",
            dir.display()
        );
        return ExitCode::FAILURE;
    }
    let now = SystemTime::now();
    let report = trim::trim(dir, config.trim, now, config.dry_run);
    if !config.dry_run {
        if let Err(e) = trim::mark(dir, now) {
            log!(0, "trim: cannot record the trim in {}: {e}", dir.join("trim.txt").display());
        }
    }
    let verb = if config.dry_run { "would remove" } else { "removed" };
    super::print(&format!(
        "{}: {verb} {} files ({}), kept {} files ({})\n",
        dir.display(),
        report.removed_files,
        human_bytes(report.removed_bytes),
        report.kept_files,
        human_bytes(report.kept_bytes)
    ));
    match report.first_error {
        Some(e) => {
            log!(0, "trim: {} files could not be removed; the first: {e}", report.failed);
            ExitCode::FAILURE
        }
        None => ExitCode::SUCCESS,
    }
}
