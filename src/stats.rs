//! Counters every part of the program reports into, written at exit as JSON
//! (`--stats-file`), CSV (`-metrics-csv`, the original program's flag) or a human summary.

use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

macro_rules! counters {
    ($( $(#[$doc:meta])* $name:ident ),* $(,)?) => {
        /// Session counters; all monotonic, updated lock-free from any thread.
        #[derive(Debug)]
        pub struct Stats {
            started: Instant,
            $( $(#[$doc])* pub $name: AtomicU64, )*
        }

        impl Stats {
            /// All counters at zero, the clock started now.
            pub fn new() -> Self {
                Stats { started: Instant::now(), $( $name: AtomicU64::new(0), )* }
            }

            /// Every counter by name, in declaration order, plus `duration_ms`.
            pub(crate) fn snapshot(&self) -> Vec<(&'static str, u64)> {
                vec![
                    $( (stringify!($name), self.$name.load(Ordering::Relaxed)), )*
                    ("duration_ms", self.started.elapsed().as_millis() as u64),
                ]
            }
        }
    };
}

counters! {
    /// get requests from go.
    gets,
    /// gets answered from the local tier.
    local_hits,
    /// gets answered from the bucket (downloaded, verified, now local).
    remote_hits,
    /// gets answered with a miss.
    misses,
    /// gets where something failed (local I/O, remote error, bad body); answered as misses.
    get_errors,
    /// remote lookups that found no object (404, or 403 without ListBucket permission).
    remote_not_found,
    /// remote lookups that failed: network, timeout, 5xx, refused credentials.
    remote_get_errors,
    /// downloaded objects rejected: size, SHA-256 or metadata did not match.
    remote_bad_objects,
    /// put requests from go.
    puts,
    /// puts answered with an error (bad input or local disk failure).
    put_errors,
    /// objects uploaded to the bucket.
    uploads,
    /// uploads that failed after retries.
    upload_errors,
    /// uploads not attempted: queue full, remote switched off, or not finished by close.
    uploads_skipped,
    /// bytes of outputs served from the local tier.
    bytes_read_local,
    /// bytes written to the local tier by puts.
    bytes_written_local,
    /// bytes downloaded from the bucket (verified objects only).
    bytes_downloaded,
    /// bytes uploaded to the bucket.
    bytes_uploaded,
    /// milliseconds spent in successful downloads, summed over workers.
    download_ms,
    /// milliseconds spent in successful uploads, summed over workers.
    upload_ms,
    /// 1 if the remote tier (reads, uploads or both) was switched off during the session
    /// (by failures, or from the start by a setting that cannot be used).
    remote_disabled,
    /// remote requests cut off by a timeout (a stalled store, or a get's deadline).
    timeouts,
    /// remote requests tried again after a transient failure.
    retries,
    /// retries not made because the client-wide retry budget was spent.
    retry_budget_exhausted,
    /// gets answered as misses because the bucket had not answered within --get-timeout.
    get_timeouts,
    /// gets answered by a download that prefetch had started (joined or already done).
    prefetch_hits,
    /// of those, gets that joined a prefetch download still queued or running.
    prefetch_joined,
    /// objects downloaded by prefetch (verified, now local).
    prefetched,
    /// the most bytes of temporary files downloads held at once (bounded by 2 x --max-object-size).
    temp_bytes_peak,
    /// bytes prefetch downloaded that no get of the session asked for.
    prefetch_wasted_bytes,
    /// entries in the working-set manifest read at the start of the session.
    manifest_entries,
    /// gets answered as misses without asking the bucket (its listing lacks them).
    fast_misses,
    /// fast-missed actions whose object the bucket had after all (a create-only upload got 412).
    fast_misses_present,
    /// milliseconds gets waited for the bucket (from the local miss to the answer), summed.
    bucket_wait_ms,
    /// milliseconds during which at least one get waited for the bucket: what the bucket
    /// held the build up, whatever the number of gets in flight.
    bucket_hold_ms,
    /// times reads were switched off because the store answered none of the downloads in
    /// flight for half of --get-timeout.
    stalls,
    /// milliseconds the end of the session held go's close for the bucket (uploads, manifest).
    close_wait_ms,
    /// objects whose date a hit rewrote (self-copy, `--refresh-after`), so expiry sees them used.
    refreshes,
    /// of those, rewrites that failed (the object is only dated by its upload).
    refresh_errors,
    /// of the objects downloaded (gets and prefetch), those from a --read-prefix scope.
    read_scope_downloads,
}

impl Default for Stats {
    fn default() -> Self {
        Self::new()
    }
}

/// Adds `n` to a counter.
pub(crate) fn add(counter: &AtomicU64, n: u64) {
    counter.fetch_add(n, Ordering::Relaxed);
}

/// Adds one to a counter.
pub(crate) fn inc(counter: &AtomicU64) {
    add(counter, 1);
}

impl Stats {
    /// The snapshot as one JSON object.
    pub fn to_json(&self) -> String {
        let fields: Vec<String> = self.snapshot().iter().map(|(k, v)| format!("\"{k}\":{v}")).collect();
        format!("{{{}}}\n", fields.join(","))
    }

    /// Writes the JSON object to `path` (replacing it).
    pub(crate) fn write_json(&self, path: &Path) -> std::io::Result<()> {
        std::fs::write(path, self.to_json())
    }

    /// Appends one CSV row to `path`, with a header row when the file is new.
    pub(crate) fn append_csv(&self, path: &Path) -> std::io::Result<()> {
        let snap = self.snapshot();
        let mut file = std::fs::OpenOptions::new().create(true).append(true).open(path)?;
        if file.metadata()?.len() == 0 {
            let header: Vec<&str> = snap.iter().map(|(k, _)| *k).collect();
            writeln!(file, "{}", header.join(","))?;
        }
        let row: Vec<String> = snap.iter().map(|(_, v)| v.to_string()).collect();
        writeln!(file, "{}", row.join(","))
    }

    /// The session's summary for stderr (`-v`): a short table of where gets were
    /// answered from, what moved each way, how long gets waited on the bucket, and what
    /// was skipped and why.
    pub(crate) fn summary(&self) -> String {
        let snapshot = self.snapshot();
        let get = |name: &str| snapshot.iter().find(|(k, _)| *k == name).map_or(0, |(_, v)| *v);
        let secs = |ms: u64| format!("{:.1}s", ms as f64 / 1000.0);
        let rows = [
            ("gets".to_string(), get("gets"), secs(get("duration_ms")) + " session"),
            ("local hits".into(), get("local_hits"), human_bytes(get("bytes_read_local")) + " read"),
            (
                "bucket hits".into(),
                get("remote_hits"),
                format!(
                    "{} downloaded, {} by prefetch{}",
                    human_bytes(get("bytes_downloaded")),
                    get("prefetch_hits"),
                    match get("read_scope_downloads") {
                        0 => String::new(),
                        n => format!(", {n} objects from --read-prefix scopes"),
                    }
                ),
            ),
            (
                "misses".into(),
                get("misses"),
                format!(
                    "{} without asking the bucket, {} errors, {} past --get-timeout",
                    get("fast_misses"),
                    get("get_errors"),
                    get("get_timeouts")
                ),
            ),
            ("puts".into(), get("puts"), human_bytes(get("bytes_written_local")) + " written locally"),
            (
                "uploads".into(),
                get("uploads"),
                format!("{} uploaded, {} failed", human_bytes(get("bytes_uploaded")), get("upload_errors")),
            ),
            (
                "skipped".into(),
                get("uploads_skipped"),
                "uploads not sent (queue full, the bucket off for uploads, no credentials, or --close-timeout)".into(),
            ),
            ("refreshed".into(), get("refreshes"), format!("object dates, {} failed", get("refresh_errors"))),
        ];
        let mut out = format!(
            "session summary: gets waited {} on the bucket in all, holding the build up {}; close {}{}\n",
            secs(get("bucket_wait_ms")),
            secs(get("bucket_hold_ms")),
            secs(get("close_wait_ms")),
            if get("remote_disabled") > 0 { "; the bucket was switched off" } else { "" }
        );
        for (name, n, detail) in rows {
            out.push_str(&format!("  {name:<12} {n:>7}  {detail}\n"));
        }
        out
    }
}

/// `1.5 MB`-style sizes for messages.
pub(crate) fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KB", "MB", "GB", "TB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1000.0 && unit < UNITS.len() - 1 {
        value /= 1000.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Where the stats fields are documented for users (one place, for when it moves).
    const STATS_DOC: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/operations.md");

    /// The field names of the documentation's stats table (`| field | meaning |`), in order.
    fn documented_stats_fields() -> Vec<String> {
        let doc = std::fs::read_to_string(STATS_DOC).unwrap();
        let table = doc.split("\n| field | meaning |\n| --- | --- |\n").nth(1);
        let table = table.unwrap_or_else(|| panic!("{STATS_DOC} has no `| field | meaning |` table"));
        let fields: Vec<String> = table
            .lines()
            .take_while(|line| line.starts_with('|'))
            .map(|row| {
                let cell = row.split('|').nth(1).unwrap_or("").trim();
                let name = cell.strip_prefix('`').and_then(|c| c.strip_suffix('`'));
                name.unwrap_or_else(|| panic!("a row of {STATS_DOC}'s stats table names no field: {row}")).to_string()
            })
            .collect();
        assert!(!fields.is_empty(), "{STATS_DOC}'s stats table is empty");
        fields
    }

    /// The JSON has exactly the documented fields, in the table's order, each a number.
    #[test]
    fn json_has_every_documented_field() {
        let stats = Stats::new();
        inc(&stats.gets);
        add(&stats.bytes_uploaded, 1234);
        let json = stats.to_json();
        let v: serde_json::Map<String, serde_json::Value> = serde_json::from_str(&json).unwrap();
        let documented = documented_stats_fields();
        let written: Vec<(&str, u64)> = stats.snapshot();
        let written: Vec<&str> = written.iter().map(|(name, _)| *name).collect();
        assert_eq!(written, documented, "the counters and {STATS_DOC}'s table differ (names or order)");
        let mut keys: Vec<&str> = v.keys().map(String::as_str).collect();
        let mut sorted: Vec<&str> = documented.iter().map(String::as_str).collect();
        keys.sort();
        sorted.sort();
        assert_eq!(keys, sorted, "the stats JSON's fields are not {STATS_DOC}'s");
        for (name, value) in &v {
            assert!(value.is_u64(), "{name} is not a counter: {json}");
        }
        assert_eq!(v["gets"], 1);
        assert_eq!(v["bytes_uploaded"], 1234);
        assert_eq!(v["puts"], 0);
    }

    #[test]
    fn csv_appends_rows_under_one_header() {
        let path = std::env::temp_dir().join(format!("gocacheprog-stats-{}.csv", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let stats = Stats::new();
        stats.append_csv(&path).unwrap();
        inc(&stats.puts);
        stats.append_csv(&path).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3);
        assert!(lines[0].starts_with("gets,local_hits,"));
        let puts_col = lines[0].split(',').position(|c| c == "puts").unwrap();
        assert_eq!(lines[2].split(',').nth(puts_col), Some("1"));
        std::fs::remove_file(path).unwrap();
    }

    #[test]
    fn summary_is_a_table_of_the_counters() {
        let stats = Stats::new();
        add(&stats.gets, 12);
        add(&stats.local_hits, 5);
        add(&stats.bytes_downloaded, 1_500_000);
        add(&stats.bucket_wait_ms, 2500);
        add(&stats.bucket_hold_ms, 1200);
        let text = stats.summary();
        assert!(
            text.starts_with(
                "session summary: gets waited 2.5s on the bucket in all, holding the build up 1.2s; close 0.0s\n"
            ),
            "{text}"
        );
        assert!(text.contains("\n  gets              12  "), "{text}");
        assert!(text.contains("\n  local hits         5  "), "{text}");
        assert!(text.contains("1.5 MB downloaded"), "{text}");
        assert_eq!(text.lines().count(), 9, "{text}");
    }

    #[test]
    fn human_sizes() {
        assert_eq!(human_bytes(999), "999 B");
        assert_eq!(human_bytes(1_500_000), "1.5 MB");
        assert_eq!(human_bytes(183_000_000), "183.0 MB");
    }
}
