//! `prune`: deletes from the bucket what no build used for `--unused-for`. An object's
//! date is its upload, or the last refresh a hit made (at most once per
//! `--refresh-after`), so an object used at time `u` is dated no earlier than
//! `u - refresh_after`: deleting only what is dated before `now - unused_for -
//! refresh_after` never deletes what a build used within `unused_for`. Works on any
//! store, with or without lifecycle rules: DeleteObjects where the store has it, one
//! DELETE per object where it does not, in parallel either way.

use super::usage::list;
use crate::calendar::Civil;
use crate::cli::{Config, RemoteConfig};
use crate::remote::layout::Layout;
use crate::s3::client::{Bounds, Client};
use crate::s3::xml::{self, ListedObject};
use crate::stats::human_bytes;
use std::collections::HashSet;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

/// Lists the prefix, then deletes (or, with `--dry-run`, names) every object past the cut.
pub fn run(config: &Config<RemoteConfig>, unused_for: Duration) -> ExitCode {
    let remote = &config.remote;
    let layout = Layout::new(&remote.prefix);
    let listed = match list(remote, &layout) {
        Ok(objects) => objects,
        Err(e) => {
            log!(0, "prune: {e}");
            return ExitCode::FAILURE;
        }
    };
    let cut = cut(SystemTime::now(), unused_for, remote.refresh_after);
    let (stale, undated) = select(&listed, cut);
    if undated > 0 {
        log!(0, "prune: {undated} objects have no date the store gave in a form this program reads; kept");
    }
    let bytes: u64 = stale.iter().map(|o| o.size).sum();
    let place = format!("s3://{}/{}", remote.bucket, layout.under(""));
    let cut_text = match cut {
        Some(cut) => format!("dated before {}", Civil::from_system_time(cut).rfc3339()),
        None => "everything (--unused-for 0s)".to_string(),
    };
    if config.dry_run {
        let mut out = String::new();
        for o in &stale {
            out.push_str(&format!("would delete {} ({}, dated {})\n", o.key, human_bytes(o.size), o.last_modified));
        }
        out.push_str(&format!(
            "{place}: would delete {} of {} objects ({}), {cut_text}; nothing was deleted (--dry-run)\n",
            stale.len(),
            listed.len(),
            human_bytes(bytes)
        ));
        super::print(&out);
        return ExitCode::SUCCESS;
    }
    let outcome = delete_all(remote, &stale);
    super::print(&format!(
        "{place}: deleted {} of {} objects ({}), {cut_text}\n",
        outcome.deleted,
        listed.len(),
        human_bytes(outcome.deleted_bytes)
    ));
    match outcome.first_error {
        Some(e) => {
            log!(0, "prune: {} deletes failed; the first: {e}", outcome.failed);
            ExitCode::FAILURE
        }
        None => ExitCode::SUCCESS,
    }
}

/// Objects dated before this are deleted; `None`: everything.
fn cut(now: SystemTime, unused_for: Duration, refresh_after: Option<Duration>) -> Option<SystemTime> {
    if unused_for.is_zero() {
        return None;
    }
    Some(now.checked_sub(unused_for + refresh_after.unwrap_or(Duration::ZERO)).unwrap_or(SystemTime::UNIX_EPOCH))
}

/// The objects past `cut`, and how many had no readable date (kept).
fn select(listed: &[ListedObject], cut: Option<SystemTime>) -> (Vec<&ListedObject>, usize) {
    let Some(cut) = cut else { return (listed.iter().collect(), 0) };
    let mut undated = 0;
    let stale = listed
        .iter()
        .filter(|o| match o.dated() {
            Some(date) => date < cut,
            None => {
                undated += 1;
                false
            }
        })
        .collect();
    (stale, undated)
}

/// Keys one DeleteObjects request carries at most (S3's limit).
const BATCH: usize = 1000;

struct Outcome {
    deleted: u64,
    deleted_bytes: u64,
    failed: u64,
    first_error: Option<String>,
}

/// What the deleting threads share: the client, the counts so far, and whether the store
/// turned out to lack DeleteObjects.
struct Deleter {
    client: Client,
    timeout: Duration,
    total: usize,
    deleted: AtomicU64,
    deleted_bytes: AtomicU64,
    failed: AtomicU64,
    first_error: Mutex<Option<String>>,
    unsupported: AtomicBool,
    tty: bool,
}

impl Deleter {
    /// One DeleteObjects request for `batch`; returns what is left to delete one by one:
    /// the keys the store said it could not delete, or the whole batch if the request
    /// failed or the store lacks the call.
    fn batch<'a>(&self, batch: &[&'a ListedObject]) -> Vec<&'a ListedObject> {
        if self.unsupported.load(Ordering::Relaxed) {
            return batch.to_vec();
        }
        let keys: Vec<&str> = batch.iter().map(|o| o.key.as_str()).collect();
        match self.client.delete_objects(&keys, Bounds::within(self.timeout)) {
            Ok(failures) => {
                let failed: HashSet<&str> = failures.iter().map(|f| f.key.as_str()).collect();
                let (left, done): (Vec<&ListedObject>, Vec<&ListedObject>) =
                    batch.iter().copied().partition(|o| failed.contains(o.key.as_str()));
                self.deleted(&done);
                if let Some(f) = failures.first() {
                    log!(
                        1,
                        "prune: {} keys of a batch not deleted, trying each alone; the first: {}: {}: {}",
                        left.len(),
                        f.key,
                        f.code,
                        f.message
                    );
                }
                left
            }
            Err(e) => {
                let lacks_the_call = matches!(e.status(), Some(405 | 501))
                    || matches!(e.code(), Some("NotImplemented" | "MethodNotAllowed"));
                if !lacks_the_call {
                    log!(1, "prune: a DeleteObjects request failed ({e}); deleting its objects one by one");
                } else if !self.unsupported.swap(true, Ordering::Relaxed) {
                    log!(1, "prune: the store has no DeleteObjects ({e}); deleting one object per request");
                }
                batch.to_vec()
            }
        }
    }

    fn single(&self, object: &ListedObject) {
        match self.client.delete_object(&object.key, Bounds::within(self.timeout)) {
            Ok(()) => self.deleted(&[object]),
            Err(e) => {
                self.failed.fetch_add(1, Ordering::Relaxed);
                let mut first = self.first_error.lock().unwrap_or_else(|p| p.into_inner());
                first.get_or_insert_with(|| e.to_string());
            }
        }
    }

    fn deleted(&self, objects: &[&ListedObject]) {
        let before = self.deleted.fetch_add(objects.len() as u64, Ordering::Relaxed);
        self.deleted_bytes.fetch_add(objects.iter().map(|o| o.size).sum(), Ordering::Relaxed);
        let now = before + objects.len() as u64;
        if self.tty && now / 100 > before / 100 {
            eprint!("\rdeleted {now} of {} objects", self.total);
        }
    }
}

/// Runs `work` on each item of `items` with at most `threads` threads.
fn in_parallel<T: Sync>(items: &[T], threads: usize, work: impl Fn(&T) + Sync) {
    let next = AtomicUsize::new(0);
    std::thread::scope(|scope| {
        for _ in 0..threads.min(items.len()) {
            scope.spawn(|| {
                while let Some(item) = items.get(next.fetch_add(1, Ordering::Relaxed)) {
                    work(item);
                }
            });
        }
    });
}

/// Deletes `objects` with `--workers` threads: a thousand per DeleteObjects request where
/// the store has that call, and one DELETE each for whatever a batch did not confirm (or
/// for everything, on a store without it), with a count on stderr (on a terminal).
fn delete_all(remote: &RemoteConfig, objects: &[&ListedObject]) -> Outcome {
    let deleter = Deleter {
        client: remote.client(remote.workers),
        timeout: remote.timeout,
        total: objects.len(),
        deleted: AtomicU64::new(0),
        deleted_bytes: AtomicU64::new(0),
        failed: AtomicU64::new(0),
        first_error: Mutex::new(None),
        unsupported: AtomicBool::new(false),
        tty: crate::log::progress_on_stderr(),
    };
    let started = Instant::now();
    let (batchable, odd): (Vec<&ListedObject>, Vec<&ListedObject>) =
        objects.iter().copied().partition(|o| xml::fits_xml(&o.key));
    let batches: Vec<&[&ListedObject]> = batchable.chunks(BATCH).collect();
    let singles = Mutex::new(odd);
    in_parallel(&batches, remote.workers, |batch| {
        let left = deleter.batch(batch);
        singles.lock().unwrap_or_else(|p| p.into_inner()).extend(left);
    });
    let singles = singles.into_inner().unwrap_or_else(|p| p.into_inner());
    in_parallel(&singles, remote.workers, |object| deleter.single(object));
    if deleter.tty {
        eprint!("\r\x1b[K");
    }
    let unsupported = deleter.unsupported.load(Ordering::Relaxed);
    log!(
        1,
        "prune: {} objects in {:?}: {} DeleteObjects requests, {} single deletes",
        objects.len(),
        started.elapsed(),
        if unsupported { 0 } else { batches.len() },
        singles.len()
    );
    Outcome {
        deleted: deleter.deleted.into_inner(),
        deleted_bytes: deleter.deleted_bytes.into_inner(),
        failed: deleter.failed.into_inner(),
        first_error: deleter.first_error.into_inner().unwrap_or_else(|p| p.into_inner()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::calendar::parse_rfc3339;

    #[test]
    fn the_cut_leaves_room_for_the_refresh_interval() {
        let now = parse_rfc3339("2026-12-31T00:00:00Z").unwrap();
        let day = Duration::from_secs(86_400);
        assert_eq!(cut(now, 30 * day, Some(day)), parse_rfc3339("2026-11-30T00:00:00Z"));
        assert_eq!(cut(now, 30 * day, None), parse_rfc3339("2026-12-01T00:00:00Z"));
        assert_eq!(cut(now, Duration::ZERO, Some(day)), None);
        let object = |key: &str, date: &str| ListedObject { key: key.into(), size: 1, last_modified: date.into() };
        let listed =
            [object("old", "2026-11-29T23:59:59Z"), object("recent", "2026-11-30T00:00:01Z"), object("undated", "")];
        let (stale, undated) = select(&listed, cut(now, 30 * day, Some(day)));
        assert_eq!((stale.iter().map(|o| o.key.as_str()).collect::<Vec<_>>(), undated), (vec!["old"], 1));
        assert_eq!(select(&listed, None).0.len(), 3);
    }
}
