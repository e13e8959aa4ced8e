//! `usage`: what the bucket's prefix and the local tier hold. Every object under the
//! prefix is listed (outputs in both forms, manifests, `check` probes, anything else), so
//! the totals are what the store bills for that prefix.

use crate::calendar::Civil;
use crate::cli::{Config, RemoteConfig};
use crate::local::trim;
use crate::remote::layout::{Form, Layout};
use crate::s3::xml::ListedObject;
use crate::stats::human_bytes;
use serde_json::json;
use std::process::ExitCode;
use std::time::{Duration, SystemTime};

/// The age ranges of the histogram: upper bounds in days (the last is open).
const AGES: [(u64, &str); 5] =
    [(1, "< 1 day"), (7, "1-7 days"), (30, "7-30 days"), (90, "30-90 days"), (u64::MAX, ">= 90 days")];

/// Objects listed by size, largest first.
const LARGEST: usize = 10;

/// Lists and prints the report (text, or JSON with `--json`).
pub fn run(config: &Config<RemoteConfig>) -> ExitCode {
    let remote = &config.remote;
    let layout = Layout::new(&remote.prefix);
    let listed = match list(remote, &layout) {
        Ok(objects) => objects,
        Err(e) => {
            log!(0, "usage: {e}");
            return ExitCode::FAILURE;
        }
    };
    let (local_entries, local_bytes) = trim::size(&config.cache_dir);
    let report = Report::new(&layout, &listed, SystemTime::now(), local_entries, local_bytes);
    let value = report.to_json(remote, config);
    if config.json {
        super::print(&format!("{value}\n"));
    } else {
        super::print(&to_text(&value));
    }
    ExitCode::SUCCESS
}

/// Every object under the prefix, with a count on stderr while it lists (on a terminal).
pub(crate) fn list(remote: &RemoteConfig, layout: &Layout) -> Result<Vec<ListedObject>, String> {
    let client = remote.client(2);
    let prefix = layout.under("");
    let tty = crate::log::progress_on_stderr();
    let mut progress = |n: usize| {
        if tty {
            eprint!("\rlisting s3://{}/{prefix}: {n} objects", remote.bucket);
        }
    };
    let listed = client.list_all(&prefix, remote.timeout, &mut progress);
    if tty {
        eprint!("\r\x1b[K");
    }
    listed.map_err(|e| format!("cannot list s3://{}/{prefix}: {e}", remote.bucket))
}

/// The figures of one listing.
struct Report<'a> {
    objects: u64,
    bytes: u64,
    outputs: [u64; 2],
    output_bytes: [u64; 2],
    manifests: Vec<&'a ListedObject>,
    other: u64,
    other_bytes: u64,
    ages: [(u64, u64); AGES.len()],
    undated: u64,
    oldest: Option<SystemTime>,
    newest: Option<SystemTime>,
    largest: Vec<&'a ListedObject>,
    local_entries: u64,
    local_bytes: u64,
}

impl<'a> Report<'a> {
    fn new(layout: &Layout, listed: &'a [ListedObject], now: SystemTime, local_entries: u64, local_bytes: u64) -> Self {
        let manifest_prefix = layout.under("manifests/");
        let mut r = Report {
            objects: listed.len() as u64,
            bytes: listed.iter().map(|o| o.size).sum(),
            outputs: [0; 2],
            output_bytes: [0; 2],
            manifests: Vec::new(),
            other: 0,
            other_bytes: 0,
            ages: [(0, 0); AGES.len()],
            undated: 0,
            oldest: None,
            newest: None,
            largest: Vec::new(),
            local_entries,
            local_bytes,
        };
        for object in listed {
            match layout.parse_key(&object.key) {
                Some((_, form)) => {
                    let i = usize::from(form == Form::Lz4);
                    r.outputs[i] += 1;
                    r.output_bytes[i] += object.size;
                }
                None if object.key.starts_with(&manifest_prefix) => r.manifests.push(object),
                None => {
                    r.other += 1;
                    r.other_bytes += object.size;
                }
            }
            match object.dated() {
                Some(date) => {
                    let days = now.duration_since(date).unwrap_or(Duration::ZERO).as_secs() / 86_400;
                    let slot = AGES.iter().position(|(upper, _)| days < *upper).unwrap_or(AGES.len() - 1);
                    r.ages[slot].0 += 1;
                    r.ages[slot].1 += object.size;
                    r.oldest = Some(r.oldest.map_or(date, |o| o.min(date)));
                    r.newest = Some(r.newest.map_or(date, |n| n.max(date)));
                }
                None => r.undated += 1,
            }
        }
        let mut by_size: Vec<&ListedObject> = listed.iter().collect();
        by_size.sort_by(|a, b| b.size.cmp(&a.size).then_with(|| a.key.cmp(&b.key)));
        by_size.truncate(LARGEST);
        r.largest = by_size;
        r
    }

    fn to_json(&self, remote: &RemoteConfig, config: &Config<RemoteConfig>) -> serde_json::Value {
        let date = |t: Option<SystemTime>| t.map(|t| Civil::from_system_time(t).rfc3339());
        let object = |o: &ListedObject| json!({"key": o.key, "bytes": o.size, "last_modified": o.last_modified});
        json!({
            "bucket": remote.bucket,
            "prefix": remote.prefix,
            "remote_objects": self.objects,
            "remote_bytes": self.bytes,
            "outputs": self.outputs[0] + self.outputs[1],
            "output_bytes": self.output_bytes[0] + self.output_bytes[1],
            "outputs_plain": self.outputs[0],
            "outputs_lz4": self.outputs[1],
            "manifests": self.manifests.iter().map(|o| object(o)).collect::<Vec<_>>(),
            "manifest_bytes": self.manifests.iter().map(|o| o.size).sum::<u64>(),
            "other_objects": self.other,
            "other_bytes": self.other_bytes,
            "ages": AGES.iter().zip(&self.ages).map(|((_, label), (n, b))| json!({"age": label, "objects": n, "bytes": b})).collect::<Vec<_>>(),
            "undated_objects": self.undated,
            "oldest": date(self.oldest),
            "newest": date(self.newest),
            "largest": self.largest.iter().map(|o| object(o)).collect::<Vec<_>>(),
            "local_dir": config.cache_dir.display().to_string(),
            "local_entries": self.local_entries,
            "local_bytes": self.local_bytes,
        })
    }
}

/// The human form of the JSON report.
fn to_text(v: &serde_json::Value) -> String {
    let n = |key: &str| v[key].as_u64().unwrap_or(0);
    let bytes = |key: &str| human_bytes(n(key));
    let mut out = format!(
        "s3://{}/{}: {} objects, {}\n  outputs    {:>8}  {} ({} lz4, {} plain)\n  manifests  {:>8}  {}\n  other      {:>8}  {}\n",
        v["bucket"].as_str().unwrap_or(""),
        v["prefix"].as_str().unwrap_or(""),
        n("remote_objects"),
        bytes("remote_bytes"),
        n("outputs"),
        bytes("output_bytes"),
        n("outputs_lz4"),
        n("outputs_plain"),
        v["manifests"].as_array().map_or(0, Vec::len),
        bytes("manifest_bytes"),
        n("other_objects"),
        bytes("other_bytes"),
    );
    out.push_str("by age (the date of the upload, or of the last refresh by a hit):\n");
    for age in v["ages"].as_array().into_iter().flatten() {
        out.push_str(&format!(
            "  {:<12} {:>8}  {}\n",
            age["age"].as_str().unwrap_or(""),
            age["objects"].as_u64().unwrap_or(0),
            human_bytes(age["bytes"].as_u64().unwrap_or(0))
        ));
    }
    if let (Some(oldest), Some(newest)) = (v["oldest"].as_str(), v["newest"].as_str()) {
        out.push_str(&format!("  oldest {oldest}, newest {newest}\n"));
    }
    let list = |out: &mut String, title: &str, items: &serde_json::Value| {
        let items = items.as_array().map_or(&[][..], Vec::as_slice);
        if items.is_empty() {
            return;
        }
        out.push_str(title);
        for o in items {
            out.push_str(&format!(
                "  {:>10}  {}  {}\n",
                human_bytes(o["bytes"].as_u64().unwrap_or(0)),
                o["last_modified"].as_str().unwrap_or(""),
                o["key"].as_str().unwrap_or("")
            ));
        }
    };
    list(&mut out, "largest:\n", &v["largest"]);
    list(&mut out, "manifests:\n", &v["manifests"]);
    out.push_str(&format!(
        "local tier {}: {} entries, {}\n",
        v["local_dir"].as_str().unwrap_or(""),
        n("local_entries"),
        bytes("local_bytes")
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::calendar::parse_rfc3339;

    fn object(key: &str, size: u64, date: &str) -> ListedObject {
        ListedObject { key: key.into(), size, last_modified: date.into() }
    }

    #[test]
    fn figures_of_a_listing() {
        let hex = "ab".repeat(32);
        let listed = vec![
            object(&format!("p/{hex}"), 100, "2026-12-01T00:00:00.000Z"),
            object(&format!("p/{hex}.lz4"), 40, "2026-11-20T00:00:00Z"),
            object("p/manifests/v1/example.com/m", 7, "2026-10-01T00:00:00Z"),
            object("p/_check/1", 1, "not a date"),
        ];
        let now = parse_rfc3339("2026-12-01T12:00:00Z").unwrap();
        let r = Report::new(&Layout::new("p"), &listed, now, 3, 4096);
        assert_eq!((r.objects, r.bytes, r.outputs, r.output_bytes), (4, 148, [1, 1], [100, 40]));
        assert_eq!((r.manifests.len(), r.other, r.other_bytes, r.undated), (1, 1, 1, 1));
        assert_eq!(r.ages, [(1, 100), (0, 0), (1, 40), (1, 7), (0, 0)]);
        assert_eq!(r.largest.iter().map(|o| o.size).collect::<Vec<_>>(), [100, 40, 7, 1]);
        assert_eq!(r.oldest, parse_rfc3339("2026-10-01T00:00:00Z"));
    }
}
