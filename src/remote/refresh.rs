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

use super::pool::Priority;
use super::{layout, Core, Direction};
use crate::id::Id;
use crate::random::Rng;
use crate::s3::client::Bounds;
use crate::stats;
use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Refresh threads: a copy is one small request, and a build refreshes at most its
/// working set once a day.
pub const WORKERS: usize = 4;

/// An object to date anew.
pub struct Refresh {
    pub key: String,
    pub action: Id,
    pub basis: Basis,
}

/// What a refresh knows of the object it dates anew.
pub enum Basis {
    /// The session downloaded and verified it: its own user metadata, and `etag` its version.
    Downloaded { metadata: Vec<(String, String)>, etag: Option<String> },
    /// Only hit in the local tier; the listing dated it past `--refresh-after`. Its
    /// metadata and version are read (HEAD) first.
    Listed,
}

/// Whether an object dated `dated` is due for a refresh at `now` (the store's clock).
pub fn is_due(dated: Option<SystemTime>, after: Option<Duration>, now: SystemTime) -> bool {
    match (dated, after) {
        (Some(dated), Some(after)) => now.duration_since(dated).is_ok_and(|age| age > after),
        _ => false,
    }
}

impl Core {
    /// Queues the refresh of an object the session downloaded; the end of the session
    /// waits for it (within `--close-timeout`).
    pub(super) fn queue_refresh(&self, job: Refresh) {
        if self.refresh_off.load(Ordering::Relaxed) || !self.first_refresh(&job.action) {
            return;
        }
        self.refresh_pending.fetch_add(1, Ordering::Relaxed);
        if !self.refreshes.push(Priority::Urgent, job) {
            self.refresh_pending.fetch_sub(1, Ordering::Relaxed);
        }
    }

    /// Queues the refresh of an output only hit locally that the listing found due. Best
    /// effort: what is left at the end of the session is dropped, never waited for (a
    /// warm local build must not wait on the bucket), and the next session takes it up.
    pub(super) fn refresh_listed(&self, action: Id) {
        let Some(Some(form)) = self.listing.form(&action) else { return };
        if self.refresh_after.is_none() || self.refresh_off.load(Ordering::Relaxed) || !self.first_refresh(&action) {
            return;
        }
        let key = self.layout.key_in(&action, form);
        self.refreshes.push(Priority::Background, Refresh { key, action, basis: Basis::Listed });
    }

    /// True the first time this session asks to refresh `action`.
    fn first_refresh(&self, action: &Id) -> bool {
        super::lock(&self.refresh_seen).insert(*action)
    }

    /// A refresh worker: the session's downloads first, then local hits.
    pub(super) fn refresh_loop(&self) {
        let mut rng = Rng::fresh();
        while let Some(job) = self.refreshes.pop(true) {
            let downloaded = matches!(job.basis, Basis::Downloaded { .. });
            self.refresh(&job, &mut rng);
            if downloaded {
                self.refresh_pending.fetch_sub(1, Ordering::Relaxed);
            }
        }
    }

    fn refresh(&self, job: &Refresh, rng: &mut Rng) {
        if self.refresh_off.load(Ordering::Relaxed)
            || self.health.is_switched_off(Direction::Writes)
            || self.client.credentials().is_none()
        {
            return;
        }
        let now = self.client.now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs()).to_string();
        let keep_going = || !self.health.is_switched_off(Direction::Writes);
        let deadline = Some(std::time::Instant::now() + self.background_timeout);
        let bounds = Bounds { deadline, ..Bounds::DEFAULT };
        let (metadata, etag): (Vec<(String, String)>, Option<String>) = match &job.basis {
            Basis::Downloaded { metadata, etag } => (metadata.clone(), etag.clone()),
            Basis::Listed => {
                let head =
                    self.client.retrier.run(deadline, rng, &keep_going, || self.client.head_object(&job.key, bounds));
                let form = self.layout.parse_key(&job.key).map(|(_, form)| form);
                match (head, form) {
                    // Still due (nobody dated it since the listing), and one of ours.
                    (Ok(Some(info)), Some(form))
                        if is_due(info.last_modified, self.refresh_after, self.client.now())
                            && layout::check_metadata(&job.action, form, &info).is_ok() =>
                    {
                        (info.metadata, info.etag)
                    }
                    (Ok(_), _) => return,
                    (Err(e), _) => {
                        stats::inc(&self.stats.refresh_errors);
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
        let result = self
            .client
            .retrier
            .run(deadline, rng, &keep_going, || self.client.refresh_object(&job.key, &pairs, etag.as_deref(), bounds));
        match result {
            Ok(false) => log!(3, "{} was uploaded again since it was read; its new upload dates it", job.key),
            Ok(true) => {
                stats::inc(&self.stats.refreshes);
                log!(3, "refreshed the date of {}", job.key);
            }
            Err(e) => {
                // Not counted against the bucket's health: uploads may work where copies
                // do not. A store that cannot copy, or a key that may not, stops the
                // session's refreshes after the first try.
                stats::inc(&self.stats.refresh_errors);
                let permanent = e.is_access_denied() || matches!(e.code(), Some("NotImplemented" | "InvalidRequest"));
                if permanent && !self.refresh_off.swap(true, Ordering::Relaxed) {
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
