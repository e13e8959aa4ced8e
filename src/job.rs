//! A job's sessions: every go command of a CI job starts a session of its own, so a job's
//! figures are the sum of its sessions. With `--stats-dir` each session writes its
//! counters and what it had to say as one file of its own in a job-wide directory;
//! [`read`] takes them back (or `--stats-file` objects and `--metrics-csv` rows) and
//! [`Totals`] sums them for `report`.

use crate::stats::Stats;
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

/// What a session's record says beside its counters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Context {
    /// The go subcommand that started the session (`build`, `test`...), when known.
    pub(crate) go: Option<String>,
    /// The bucket, `None` for a local-only session.
    pub(crate) bucket: Option<String>,
    pub(crate) read_only: bool,
    /// The session's level-0 messages (what it had to tell the user).
    pub(crate) notices: Vec<String>,
}

/// Writes the session's record into `dir` (created if missing) as
/// `<start, UTC>-<pid>-<random>.json`: a name no other session takes, sorting by start,
/// written under a temporary name and renamed, so a reader never sees half a record.
pub(crate) fn record(dir: &Path, stats: &Stats, context: &Context) -> io::Result<PathBuf> {
    let mut object = Map::new();
    let snapshot = stats.snapshot();
    let duration = snapshot.iter().find(|(k, _)| *k == "duration_ms").map_or(0, |(_, v)| *v);
    let started = SystemTime::now() - Duration::from_millis(duration);
    let civil = crate::calendar::Civil::from_system_time(started);
    object.insert("started".into(), Value::from(civil.rfc3339()));
    object.insert("go".into(), context.go.clone().map_or(Value::Null, Value::from));
    object.insert("bucket".into(), context.bucket.clone().map_or(Value::Null, Value::from));
    object.insert("read_only".into(), Value::from(context.read_only));
    object.insert("pid".into(), Value::from(std::process::id()));
    for (name, value) in snapshot {
        object.insert(name.into(), Value::from(value));
    }
    object.insert("notices".into(), Value::from(context.notices.clone()));
    fs::create_dir_all(dir)?;
    let name =
        format!("{}.{:09}-{}-{:08x}", civil.amz_date(), civil.nanos, std::process::id(), crate::random::nonce() as u32);
    let temp = dir.join(format!(".tmp-{name}"));
    let path = dir.join(format!("{name}.json"));
    fs::write(&temp, format!("{}\n", Value::Object(object))).and_then(|()| fs::rename(&temp, &path)).inspect_err(
        |_| {
            let _ = fs::remove_file(&temp);
        },
    )?;
    Ok(path)
}

/// One session as read back.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Session {
    /// Where it came from: a file, or a file and CSV row.
    pub(crate) source: String,
    pub(crate) context: Context,
    /// Whether the record said which bucket (a CSV row or an old stats file does not).
    pub(crate) knows_bucket: bool,
    pub(crate) counters: BTreeMap<String, u64>,
}

impl Session {
    /// A counter (0 when the record does not have it).
    pub(crate) fn get(&self, name: &str) -> u64 {
        self.counters.get(name).copied().unwrap_or(0)
    }
}

/// The sessions of `--stats-dir` (its `*.json` files, in name order: by start) and of
/// the files given (`--stats-file` objects, records, `--metrics-csv` files).
pub(crate) fn read(dir: Option<&Path>, files: &[PathBuf]) -> Result<Vec<Session>, String> {
    let mut sessions = Vec::new();
    if let Some(dir) = dir {
        let entries =
            fs::read_dir(dir).map_err(|e| format!("cannot read the stats directory {}: {e}", dir.display()))?;
        let mut names: Vec<PathBuf> = entries
            .flatten()
            .map(|e| e.path())
            .filter(|p| {
                p.extension().is_some_and(|x| x == "json")
                    && !p.file_name().is_some_and(|n| n.to_string_lossy().starts_with(".tmp-"))
            })
            .collect();
        names.sort();
        for path in names {
            sessions.extend(read_file(&path)?);
        }
    }
    for path in files {
        sessions.extend(read_file(path)?);
    }
    Ok(sessions)
}

/// The sessions of one file: a JSON object, or CSV rows under a header.
fn read_file(path: &Path) -> Result<Vec<Session>, String> {
    let text = fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let source = path.display().to_string();
    if text.trim_start().starts_with('{') {
        let value: Value =
            serde_json::from_str(&text).map_err(|e| format!("{source} is not a stats file (JSON: {e})"))?;
        let Value::Object(object) = value else {
            return Err(format!("{source} is not a stats file (not one JSON object)"));
        };
        return Ok(vec![from_object(source, &object)]);
    }
    from_csv(&source, &text)
}

fn from_object(source: String, object: &Map<String, Value>) -> Session {
    let string = |k: &str| object.get(k).and_then(Value::as_str).map(str::to_string);
    let counters = object.iter().filter_map(|(k, v)| v.as_u64().filter(|_| k != "pid").map(|n| (k.clone(), n)));
    Session {
        source,
        context: Context {
            go: string("go"),
            bucket: string("bucket"),
            read_only: object.get("read_only").and_then(Value::as_bool).unwrap_or(false),
            notices: object
                .get("notices")
                .and_then(Value::as_array)
                .map(|a| a.iter().filter_map(Value::as_str).map(str::to_string).collect())
                .unwrap_or_default(),
        },
        knows_bucket: object.contains_key("bucket"),
        counters: counters.collect(),
    }
}

/// `--metrics-csv` rows: one session each, under the header of counter names.
fn from_csv(source: &str, text: &str) -> Result<Vec<Session>, String> {
    let mut lines = text.lines().filter(|l| !l.trim().is_empty());
    let header: Vec<&str> = match lines.next() {
        Some(h) if h.split(',').all(|c| !c.is_empty() && c.bytes().all(|b| b.is_ascii_lowercase() || b == b'_')) => {
            h.split(',').collect()
        }
        _ => return Err(format!("{source} is neither a stats JSON file nor a --metrics-csv file")),
    };
    let mut sessions = Vec::new();
    for (n, line) in lines.enumerate() {
        let row: Vec<&str> = line.split(',').collect();
        if row.len() != header.len() {
            return Err(format!("{source}: row {} has {} fields, the header {}", n + 1, row.len(), header.len()));
        }
        let mut counters = BTreeMap::new();
        for (name, value) in header.iter().zip(row) {
            let v = value.trim().parse().map_err(|_| format!("{source}: row {}: {name} is {value:?}", n + 1))?;
            counters.insert(name.to_string(), v);
        }
        sessions.push(Session { source: format!("{source} row {}", n + 1), counters, ..Session::default() });
    }
    Ok(sessions)
}

/// Counters that are a session's high-water mark, not an amount: the job's is the largest.
const PEAKS: &[&str] = &["temp_bytes_peak", "manifest_entries"];

/// A job's sessions summed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Totals {
    pub(crate) sessions: usize,
    /// Each go subcommand and how many sessions it started, in order of first appearance
    /// (`?` for a session that did not say).
    pub(crate) commands: Vec<(String, usize)>,
    pub(crate) counters: BTreeMap<String, u64>,
    /// Sessions without a bucket (local only), among those whose record says.
    pub(crate) local_only: usize,
    pub(crate) read_only: usize,
    /// Sessions in which the bucket (or one side of it) was switched off.
    pub(crate) switched_off: usize,
    /// Distinct notices, each with the go subcommands of the sessions that gave it.
    pub(crate) notices: Vec<(String, Vec<String>)>,
}

impl Totals {
    /// Sums `sessions`.
    pub(crate) fn of(sessions: &[Session]) -> Totals {
        let mut t = Totals { sessions: sessions.len(), ..Totals::default() };
        for s in sessions {
            let go = s.context.go.clone().unwrap_or_else(|| "?".into());
            match t.commands.iter_mut().find(|(name, _)| *name == go) {
                Some((_, n)) => *n += 1,
                None => t.commands.push((go.clone(), 1)),
            }
            for (name, value) in &s.counters {
                let total = t.counters.entry(name.clone()).or_insert(0);
                *total =
                    if PEAKS.contains(&name.as_str()) { (*total).max(*value) } else { total.saturating_add(*value) };
            }
            t.local_only += usize::from(s.knows_bucket && s.context.bucket.is_none());
            t.read_only += usize::from(s.context.read_only);
            t.switched_off += usize::from(s.get("remote_disabled") > 0);
            for notice in &s.context.notices {
                match t.notices.iter_mut().find(|(text, _)| text == notice) {
                    Some((_, gos)) if !gos.contains(&go) => gos.push(go.clone()),
                    Some(_) => {}
                    None => t.notices.push((notice.clone(), vec![go.clone()])),
                }
            }
        }
        t
    }

    /// A summed counter (0 when no session had it).
    pub(crate) fn get(&self, name: &str) -> u64 {
        self.counters.get(name).copied().unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats;

    fn temp_dir(label: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("gocacheprog-job-{label}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn records_are_one_file_each_and_read_back_summed() {
        let dir = temp_dir("records");
        let a = Stats::new();
        stats::add(&a.gets, 10);
        stats::add(&a.local_hits, 7);
        stats::add(&a.temp_bytes_peak, 500);
        let b = Stats::new();
        stats::add(&b.gets, 5);
        stats::add(&b.remote_disabled, 1);
        stats::add(&b.temp_bytes_peak, 300);
        let build = Context { go: Some("build".into()), bucket: Some("b".into()), ..Context::default() };
        let test = Context { go: Some("test".into()), notices: vec!["bucket switched off".into()], ..build.clone() };
        let pa = record(&dir, &a, &build).unwrap();
        let pb = record(&dir, &b, &test).unwrap();
        assert_ne!(pa, pb);
        let again = record(&dir, &a, &build).unwrap();
        assert_ne!(again, pa, "every session has a name of its own");
        fs::write(dir.join(".tmp-half"), "{\"gets\":").unwrap();
        let sessions = read(Some(&dir), &[]).unwrap();
        assert_eq!(sessions.len(), 3, "{sessions:?}");
        let t = Totals::of(&sessions);
        assert_eq!((t.get("gets"), t.get("local_hits"), t.get("temp_bytes_peak")), (25, 14, 500));
        assert_eq!(t.commands, vec![("build".to_string(), 2), ("test".to_string(), 1)]);
        assert_eq!((t.switched_off, t.local_only), (1, 0));
        assert_eq!(t.notices, vec![("bucket switched off".to_string(), vec!["test".to_string()])]);
        assert!(t.get("duration_ms") < 60_000);
        assert!(!t.counters.contains_key("pid"));
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn stats_files_and_csv_rows_are_sessions_too() {
        let dir = temp_dir("csv");
        fs::create_dir_all(&dir).unwrap();
        let s = Stats::new();
        stats::add(&s.gets, 3);
        let csv = dir.join("m.csv");
        s.append_csv(&csv).unwrap();
        stats::add(&s.gets, 1);
        s.append_csv(&csv).unwrap();
        let json = dir.join("s.json");
        s.write_json(&json).unwrap();
        let sessions = read(None, &[csv.clone(), json]).unwrap();
        assert_eq!(sessions.len(), 3);
        let t = Totals::of(&sessions);
        assert_eq!(t.get("gets"), 3 + 4 + 4);
        assert_eq!((t.local_only, t.commands.clone()), (0, vec![("?".to_string(), 3)]));
        fs::write(&csv, "gets,puts\n1\n").unwrap();
        assert!(read(None, std::slice::from_ref(&csv)).unwrap_err().contains("row 1 has 1 fields"));
        fs::write(&csv, "hello world\n").unwrap();
        assert!(read(None, &[csv]).unwrap_err().contains("neither a stats JSON file nor"));
        assert!(read(Some(&dir.join("missing")), &[]).unwrap_err().contains("cannot read the stats directory"));
        fs::remove_dir_all(dir).unwrap();
    }
}
