//! Refresh on hit: a bucket's lifecycle rule (and `prune`) can only see an object's date,
//! which is its upload, so a whole cache generation would expire at once, hot objects
//! with it. A hit on an object dated longer ago than `--refresh-after` therefore copies it
//! onto itself with its own metadata (plus `refreshed`), in the background: its date
//! becomes the day it was last used, at most once per `--refresh-after` for the whole
//! fleet (the next reader sees the new date). The copy is conditional on the ETag the
//! object was read with, so its metadata never lands on a body another machine uploaded
//! meanwhile, and it writes back only the metadata the object itself carried (and that
//! passed `layout::check_metadata`): a refresh never vouches for more than the object
//! proved. Failures only cost the refresh.
//!
//! Only objects of the session's own scope are refreshed. A hit from a `--read-prefix`
//! scope is served as it is: the session may not write there (a pull request's job
//! has read-only access to its base branch's scope), and the builds that own that scope
//! date what they use themselves. Nor is it copied into the own scope: it stays readable
//! where it is, and a copy would only double what the bucket stores.

use super::listing::Listing;
use super::pool::{self, Priority, Queue};
use super::{layout, Direction, Handles};
use crate::id::Id;
use crate::s3::client::Bounds;
use crate::stats;
use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Refresh threads: a copy is one small request, and a build refreshes at most its
/// working set once a day.
pub const WORKERS: usize = 4;

/// An object to date anew.
pub(crate) struct Refresh {
    pub(crate) key: String,
    pub(crate) action: Id,
    pub(crate) basis: Basis,
}

/// What a refresh knows of the object it dates anew.
pub(crate) enum Basis {
    /// The session downloaded and verified it: its own user metadata, and `etag` its version.
    Downloaded { metadata: Vec<(String, String)>, etag: Option<String> },
    /// Only hit in the local tier; the listing dated it past `--refresh-after`. Its
    /// metadata and version are read (HEAD) first.
    Listed,
}

/// Whether an object dated `dated` is due for a refresh at `now` (the store's clock).
pub(super) fn is_due(dated: Option<SystemTime>, after: Option<Duration>, now: SystemTime) -> bool {
    match (dated, after) {
        (Some(dated), Some(after)) => now.duration_since(dated).is_ok_and(|age| age > after),
        _ => false,
    }
}

/// The refresh job: its queue, what it has seen, and the refreshes of downloads the end
/// of the session waits for.
pub(crate) struct Refresher {
    handles: Handles,
    listing: Arc<Listing>,
    /// Hits on objects dated longer ago than this rewrite the date.
    after: Duration,
    /// Bound on one refresh, retries included.
    timeout: Duration,
    queue: Queue<Refresh>,
    /// Refreshes of downloads not done yet, and a signal when that count changes.
    pending: Mutex<u64>,
    pending_changed: Condvar,
    /// Actions whose refresh this session has queued.
    seen: Mutex<HashSet<Id>>,
    /// Set when refreshing cannot work with this store or key.
    off: AtomicBool,
}

impl Refresher {
    /// Starts the refresh workers.
    pub(crate) fn start(
        handles: &Handles,
        listing: &Arc<Listing>,
        after: Duration,
        timeout: Duration,
    ) -> Arc<Refresher> {
        let refresher = Arc::new(Refresher {
            handles: handles.clone(),
            listing: Arc::clone(listing),
            after,
            timeout,
            queue: Queue::default(),
            pending: Mutex::new(0),
            pending_changed: Condvar::new(),
            seen: Mutex::default(),
            off: AtomicBool::new(false),
        });
        let worker = Arc::clone(&refresher);
        pool::spawn("refresh", WORKERS, move || worker.work());
        refresher
    }

    /// `--refresh-after`.
    pub(crate) fn after(&self) -> Duration {
        self.after
    }

    /// Queues the refresh of an object the session downloaded; the end of the session
    /// waits for it (within `--close-timeout`).
    pub(crate) fn queue_downloaded(&self, job: Refresh) {
        if self.off.load(Ordering::Relaxed) || !self.first(&job.action) {
            return;
        }
        self.add_pending(1);
        if !self.queue.push(Priority::Urgent, job) {
            self.add_pending(-1);
        }
    }

    /// Queues the refresh of an output only hit locally that the listing found due. Best
    /// effort: what is left at the end of the session is dropped, never waited for (a
    /// warm local build must not wait on the bucket), and the next session takes it up.
    pub(crate) fn queue_listed(&self, action: Id) {
        let Some(Some(place)) = self.listing.place(&action) else { return };
        // Only what the own scope has: a read scope is never written.
        if !place.is_own() || self.off.load(Ordering::Relaxed) || !self.first(&action) {
            return;
        }
        let key = self.handles.layout.key_in(&action, place.form);
        self.queue.push(Priority::Background, Refresh { key, action, basis: Basis::Listed });
    }

    /// Waits up to `bound` for the refreshes of downloads, then drops what is left (the
    /// objects stay due, and the next session that hits them tries again).
    pub(crate) fn finish(&self, bound: Duration) {
        let end = Instant::now() + bound;
        let mut pending = super::lock(&self.pending);
        while *pending > 0 {
            let left = end.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            pending = self.pending_changed.wait_timeout(pending, left).unwrap_or_else(|p| p.into_inner()).0;
        }
        drop(pending);
        self.queue.close();
    }

    fn add_pending(&self, n: i64) {
        let mut pending = super::lock(&self.pending);
        *pending = pending.saturating_add_signed(n);
        drop(pending);
        self.pending_changed.notify_all();
    }

    /// True the first time this session asks to refresh `action`.
    fn first(&self, action: &Id) -> bool {
        super::lock(&self.seen).insert(*action)
    }

    /// A refresh worker: the session's downloads first, then local hits.
    fn work(&self) {
        while let Some(job) = self.queue.pop(true) {
            self.refresh(&job);
            if matches!(job.basis, Basis::Downloaded { .. }) {
                self.add_pending(-1);
            }
        }
    }

    fn refresh(&self, job: &Refresh) {
        let Handles { client, layout, stats, health, .. } = &self.handles;
        if self.off.load(Ordering::Relaxed)
            || health.is_switched_off(Direction::Writes)
            || client.credentials().is_none()
        {
            return;
        }
        let now = client.now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs()).to_string();
        let bounds = Bounds::within(self.timeout);
        let (metadata, etag): (Vec<(String, String)>, Option<String>) = match &job.basis {
            Basis::Downloaded { metadata, etag } => (metadata.clone(), etag.clone()),
            Basis::Listed => {
                let head = client.head_object(&job.key, bounds);
                let form = layout.parse_key(&job.key).map(|(_, form)| form);
                match (head, form) {
                    // Still due (nobody dated it since the listing), and one of ours.
                    (Ok(Some(info)), Some(form))
                        if is_due(info.last_modified, Some(self.after), client.now())
                            && layout::check_metadata(&job.action, form, &info).is_ok() =>
                    {
                        (info.metadata, info.etag)
                    }
                    (Ok(_), _) => return,
                    (Err(e), _) => {
                        stats::inc(&stats.refresh_errors);
                        log!(2, "refresh: reading {} failed: {e}", job.key);
                        return;
                    }
                }
            }
        };
        // The object's own metadata, whatever else set some, as the self-copy keeps.
        let metadata: Vec<(String, String)> = metadata.into_iter().filter(|(k, _)| k != "refreshed").collect();
        let mut pairs: Vec<(&str, &str)> = metadata.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        pairs.push(("refreshed", &now));
        let result = client.refresh_object(&job.key, &pairs, etag.as_deref(), bounds);
        match result {
            Ok(false) => log!(3, "{} was uploaded again since it was read; its new upload dates it", job.key),
            Ok(true) => {
                stats::inc(&stats.refreshes);
                log!(3, "refreshed the date of {}", job.key);
            }
            Err(e) => {
                // Not counted against the bucket's health: uploads may work where copies
                // do not. A store that cannot copy, or a key that may not, stops the
                // session's refreshes after the first try.
                stats::inc(&stats.refresh_errors);
                let permanent = e.is_access_denied() || matches!(e.code(), Some("NotImplemented" | "InvalidRequest"));
                if permanent && !self.off.swap(true, Ordering::Relaxed) {
                    log!(1, "cannot refresh object dates ({e}); objects keep their upload date, so expire them by age");
                } else {
                    log!(2, "refresh failed: {e}");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn due_only_when_older_than_the_bound() {
        let now = SystemTime::now();
        let day = Duration::from_secs(86_400);
        assert!(is_due(Some(now - 2 * day), Some(day), now));
        assert!(!is_due(Some(now - day / 2), Some(day), now));
        assert!(!is_due(Some(now + day), Some(day), now), "a date ahead of the clock");
        assert!(!is_due(None, Some(day), now), "no Last-Modified");
        assert!(!is_due(Some(now - 2 * day), None, now), "--refresh-after 0");
    }
}
