//! `report`: what the cache did for a whole CI job, summed over its sessions (every go
//! command), in a few lines a person reads at a glance; in GitHub Actions also appended as
//! Markdown to the job's summary page.
//!
//! No estimate of compile time saved: the protocol carries no compile times, and what an
//! output cost to compile depends on the package (from milliseconds to tens of seconds)
//! and the machine, so any figure would be made up. The honest comparison is the job run
//! once with `GOCACHEPROG` unset.

use crate::cli::Config;
use crate::job::{self, Totals};
use crate::stats::human_bytes;
use serde_json::json;
use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

/// How many distinct notices the report quotes.
const NOTICES_SHOWN: usize = 5;

/// Reads the job's sessions and prints the report (and appends it to
/// `$GITHUB_STEP_SUMMARY` when that is set).
pub fn run(config: &Config) -> ExitCode {
    run_with(config, std::env::var_os("GITHUB_STEP_SUMMARY").filter(|v| !v.is_empty()).as_deref().map(Path::new))
}

/// [`run`] with the step summary file given.
pub(crate) fn run_with(config: &Config, step_summary: Option<&Path>) -> ExitCode {
    let sessions = match job::read(config.stats_dir.as_deref(), &config.paths) {
        Ok(s) => s,
        Err(e) => {
            log!(0, "report: {e}");
            return ExitCode::FAILURE;
        }
    };
    let totals = Totals::of(&sessions);
    if config.json {
        super::print(&format!("{}\n", to_json(&totals)));
    } else {
        super::print(&text(&totals));
    }
    if let Some(path) = step_summary {
        let appended = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .and_then(|mut f| f.write_all(markdown(&totals).as_bytes()));
        if let Err(e) = appended {
            log!(0, "report: cannot append to GITHUB_STEP_SUMMARY {}: {e}", path.display());
            return ExitCode::FAILURE;
        }
    }
    ExitCode::SUCCESS
}

/// `build, vet, test x2`.
fn commands(t: &Totals) -> String {
    let names: Vec<String> =
        t.commands.iter().map(|(go, n)| if *n > 1 { format!("{go} x{n}") } else { go.clone() }).collect();
    names.join(", ")
}

fn secs(ms: u64) -> String {
    format!("{:.1} s", ms as f64 / 1000.0)
}

fn percent(part: u64, whole: u64) -> String {
    if whole == 0 {
        "-".into()
    } else {
        format!("{:.1}%", part as f64 * 100.0 / whole as f64)
    }
}

/// The report's lines as (label, text): the same in the text and the Markdown forms.
fn rows(t: &Totals) -> Vec<(&'static str, String)> {
    let g = |name: &str| t.get(name);
    let hits = g("local_hits") + g("remote_hits");
    let mut rows = vec![(
        "gets",
        format!(
            "{} ({} answered by the cache): {} local, {} from the bucket ({} prefetched); {} misses ({} without a \
             round trip)",
            g("gets"),
            percent(hits, g("gets")),
            g("local_hits"),
            g("remote_hits"),
            g("prefetch_hits"),
            g("misses"),
            g("fast_misses")
        ),
    )];
    let bucket = if t.sessions > 0 && t.local_only == t.sessions {
        "none: local only (no bucket configured)".to_string()
    } else {
        let uploads = if g("uploads") == 1 { "1 upload".to_string() } else { format!("{} uploads", g("uploads")) };
        let mut b =
            format!("{} down, {} up ({uploads})", human_bytes(g("bytes_downloaded")), human_bytes(g("bytes_uploaded")));
        if t.local_only > 0 {
            b.push_str(&format!("; {} of {} sessions local only", t.local_only, t.sessions));
        }
        if t.read_only > 0 {
            b.push_str(&format!("; {} of {} sessions read-only", t.read_only, t.sessions));
        }
        b
    };
    rows.push(("bucket", bucket));
    rows.push((
        "waited",
        format!(
            "{} holding the build up on the bucket, {} at the ends of sessions (uploads)",
            secs(g("bucket_hold_ms")),
            secs(g("close_wait_ms"))
        ),
    ));
    rows.push(("prefetch", format!("{} fetched, {} unused", g("prefetched"), human_bytes(g("prefetch_wasted_bytes")))));
    rows.push(("problems", problems(t)));
    rows
}

/// What went wrong, or `none`.
fn problems(t: &Totals) -> String {
    let counted = [
        ("get_errors", "get errors"),
        ("put_errors", "put errors"),
        ("remote_get_errors", "failed bucket lookups"),
        ("remote_bad_objects", "objects refused (did not verify)"),
        ("get_timeouts", "gets past --get-timeout"),
        ("upload_errors", "uploads failed"),
        ("uploads_skipped", "uploads skipped"),
        ("refresh_errors", "date refreshes failed"),
    ];
    let mut parts: Vec<String> =
        counted.iter().filter(|(k, _)| t.get(k) > 0).map(|(k, what)| format!("{} {what}", t.get(k))).collect();
    if t.switched_off > 0 {
        parts.push(format!("the bucket switched off in {} of {} sessions", t.switched_off, t.sessions));
    }
    if parts.is_empty() && t.notices.is_empty() {
        "none".into()
    } else if parts.is_empty() {
        format!("{} messages", t.notices.len())
    } else {
        parts.join(", ")
    }
}

/// The notices quoted, each with the go commands that gave it.
fn notice_lines(t: &Totals) -> Vec<String> {
    let mut lines: Vec<String> =
        t.notices.iter().take(NOTICES_SHOWN).map(|(text, gos)| format!("go {}: {text}", gos.join(", go "))).collect();
    if t.notices.len() > NOTICES_SHOWN {
        lines.push(format!("... and {} more (in the session files)", t.notices.len() - NOTICES_SHOWN));
    }
    lines
}

/// The report for a terminal or a CI log.
pub(crate) fn text(t: &Totals) -> String {
    if t.sessions == 0 {
        return "gocacheprog-s3 job report: no sessions recorded (did the go commands have the same --stats-dir?)\n"
            .into();
    }
    let mut out = format!(
        "gocacheprog-s3 job report: {} go commands ({}), {} in sessions\n",
        t.sessions,
        commands(t),
        secs(t.get("duration_ms"))
    );
    for (label, text) in rows(t) {
        out.push_str(&format!("  {label:<9} {text}\n"));
    }
    for line in notice_lines(t) {
        out.push_str(&format!("    {line}\n"));
    }
    out
}

/// The report as a Markdown section for GitHub's job summary.
pub(crate) fn markdown(t: &Totals) -> String {
    let mut out = String::from("### Go build cache (gocacheprog-s3)\n\n");
    if t.sessions == 0 {
        out.push_str("No sessions recorded.\n\n");
        return out;
    }
    out.push_str("| | |\n| --- | --- |\n");
    out.push_str(&format!("| go commands | {} ({}), {} |\n", t.sessions, commands(t), secs(t.get("duration_ms"))));
    for (label, text) in rows(t) {
        out.push_str(&format!("| {label} | {} |\n", text.replace('|', "\\|")));
    }
    let notices = notice_lines(t);
    if !notices.is_empty() {
        out.push('\n');
        for line in notices {
            out.push_str(&format!("- `{}`\n", line.replace('`', "'")));
        }
    }
    out.push('\n');
    out
}

/// The sums as one JSON object (`--json`).
pub(crate) fn to_json(t: &Totals) -> serde_json::Value {
    json!({
        "sessions": t.sessions,
        "commands": t.commands.iter().map(|(go, n)| json!({"go": go, "sessions": n})).collect::<Vec<_>>(),
        "totals": t.counters,
        "local_only_sessions": t.local_only,
        "read_only_sessions": t.read_only,
        "switched_off_sessions": t.switched_off,
        "notices": t.notices.iter().map(|(text, gos)| json!({"text": text, "go": gos})).collect::<Vec<_>>(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::job::{Context, Session};

    fn session(go: &str, counters: &[(&str, u64)], notices: &[&str]) -> Session {
        Session {
            source: "test".into(),
            context: Context {
                go: Some(go.into()),
                bucket: Some("b".into()),
                read_only: false,
                notices: notices.iter().map(|n| n.to_string()).collect(),
            },
            knows_bucket: true,
            counters: counters.iter().map(|(k, v)| (k.to_string(), *v)).collect(),
        }
    }

    #[test]
    fn a_clean_job_reads_in_a_few_lines() {
        let t = Totals::of(&[
            session("build", &[("gets", 100), ("local_hits", 60), ("remote_hits", 30), ("misses", 10)], &[]),
            session("test", &[("gets", 50), ("remote_hits", 50), ("prefetch_hits", 45), ("duration_ms", 1500)], &[]),
            session("test", &[("bytes_downloaded", 2_000_000), ("bucket_hold_ms", 250)], &[]),
        ]);
        let text = text(&t);
        assert!(text.starts_with("gocacheprog-s3 job report: 3 go commands (build, test x2), 1.5 s in sessions\n"));
        assert!(text
            .contains("  gets      150 (93.3% answered by the cache): 60 local, 80 from the bucket (45 prefetched)"));
        assert!(text.contains("  bucket    2.0 MB down, 0 B up (0 uploads)\n"), "{text}");
        assert!(text.contains("  waited    0.2 s holding the build up"), "{text}");
        assert!(text.contains("  problems  none\n"), "{text}");
        assert_eq!(text.lines().count(), 6, "{text}");
        let md = markdown(&t);
        assert!(md.contains("| go commands | 3 (build, test x2), 1.5 s |\n"), "{md}");
        assert!(md.contains("| problems | none |\n"), "{md}");
    }

    #[test]
    fn problems_and_what_was_switched_off_are_named() {
        let off = "bucket switched off for this session because a request failed: | pipes";
        let t = Totals::of(&[
            session("build", &[("gets", 10), ("upload_errors", 2), ("remote_disabled", 1)], &[off]),
            session("vet", &[("gets", 10), ("remote_disabled", 1)], &[off]),
        ]);
        let text = text(&t);
        assert!(text.contains("  problems  2 uploads failed, the bucket switched off in 2 of 2 sessions\n"), "{text}");
        assert!(text.contains(&format!("    go build, go vet: {off}\n")), "{text}");
        let md = markdown(&t);
        assert!(md.contains("the bucket switched off in 2 of 2 sessions |"), "{md}");
        assert!(md.contains(&format!("- `go build, go vet: {off}`")), "{md}");
        let local = Totals::of(&[Session {
            context: Context { go: Some("build".into()), ..Context::default() },
            knows_bucket: true,
            ..Session::default()
        }]);
        assert!(super::text(&local).contains("  bucket    none: local only"));
        assert!(super::text(&Totals::default()).contains("no sessions recorded"));
    }
}
