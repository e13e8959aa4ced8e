//! The stats file (`--stats-file`) decoded into a type, as a user's tool would read it:
//! a field the program adds, drops, renames or writes as anything but a counter fails
//! the decoding (`deny_unknown_fields`, every field required), so the wire format cannot
//! drift without a test noticing. src/stats.rs checks the same names against the README.

use serde::Deserialize;

/// Every counter of a stats file, in the order the program writes them.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)] // decoding is the check; tests read counters by name (`go::stat`)
pub struct StatsFile {
    pub gets: u64,
    pub local_hits: u64,
    pub remote_hits: u64,
    pub misses: u64,
    pub get_errors: u64,
    pub remote_not_found: u64,
    pub remote_get_errors: u64,
    pub remote_bad_objects: u64,
    pub puts: u64,
    pub put_errors: u64,
    pub uploads: u64,
    pub upload_errors: u64,
    pub uploads_skipped: u64,
    pub bytes_read_local: u64,
    pub bytes_written_local: u64,
    pub bytes_downloaded: u64,
    pub bytes_uploaded: u64,
    pub download_ms: u64,
    pub upload_ms: u64,
    pub remote_disabled: u64,
    pub timeouts: u64,
    pub retries: u64,
    pub retry_budget_exhausted: u64,
    pub get_timeouts: u64,
    pub prefetch_hits: u64,
    pub prefetch_joined: u64,
    pub prefetched: u64,
    pub temp_bytes_peak: u64,
    pub prefetch_wasted_bytes: u64,
    pub manifest_entries: u64,
    pub fast_misses: u64,
    pub fast_misses_present: u64,
    pub bucket_wait_ms: u64,
    pub bucket_hold_ms: u64,
    pub stalls: u64,
    pub close_wait_ms: u64,
    pub refreshes: u64,
    pub refresh_errors: u64,
    pub read_scope_downloads: u64,
    pub duration_ms: u64,
}

/// Decodes a stats file's JSON; `Err` says what drifted.
pub fn decode(json: &serde_json::Value) -> Result<StatsFile, String> {
    StatsFile::deserialize(json).map_err(|e| format!("the stats file does not decode as StatsFile: {e}"))
}

/// The program's own JSON decodes; one field more, or one less, does not.
#[test]
fn stats_decoding_refuses_unknown_and_missing_fields() {
    let json = gocacheprog_s3::stats::Stats::new().to_json();
    let written: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert!(decode(&written).is_ok(), "{json}");
    let mut more = written.clone();
    more["new_counter"] = 0.into();
    let err = decode(&more).err().unwrap_or_default();
    assert!(err.contains("unknown field `new_counter`"), "{err}");
    let mut less = written.clone();
    less.as_object_mut().map(|o| o.remove("stalls"));
    let err = decode(&less).err().unwrap_or_default();
    assert!(err.contains("missing field `stalls`"), "{err}");
    let mut text = written;
    text["gets"] = "1".into();
    assert!(decode(&text).is_err(), "a counter written as a string");
}
