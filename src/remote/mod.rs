//! The bucket tier as the server sees it: lookups answered by a download pool (one
//! download per action, however many wait for it), uploads by a background pool, and a
//! breaker per direction. A remote problem is never the build's problem: every failure
//! becomes a miss or a skipped upload, and every request is bounded in time.
//!
//! The remote tier never answers go itself: a download produces a `Lookup` for whoever
//! waits on it, and the server turns that into go's response.
//!
//! Each job owns its state and is handed the `Handles` it shares with the others:
//! `download::Downloads` (the pool and the downloads in flight), `upload::Uploads`,
//! `prefetch::Prefetch` (the plan, what the session used, the manifest),
//! `listing::Listing` (fast misses), `refresh::Refresher` and the `watch`er of a
//! stalled store. `Remote` wires them together and is what the server sees.
//!
//! Scopes (`--read-prefix`): reads look in the session's own prefix, then in each read
//! prefix in order (lookups, the listing for fast misses, the prefetch manifest); every
//! write (uploads, refreshes, the manifest) goes to the own prefix only. A hit from a read
//! scope is served, not copied into the own scope (it stays readable there) nor refreshed
//! (its date is its own scope's business: the builds that write it refresh it).

mod download;
pub mod frame;
mod health;
mod inflight;
pub mod layout;
mod listing;
pub mod manifest;
pub mod pool;
pub mod prefetch;
mod refresh;
mod upload;
mod watch;

use crate::cli::RemoteConfig;
use crate::id::Id;
use crate::local::entry::Entry;
use crate::local::LocalTier;
use crate::s3::client::Client;
use crate::s3::request::Access;
use crate::server::{Lookup, RemoteTier, Waiter};
use crate::stats::{self, Stats};
use download::{DownloadSettings, Downloads};
pub(crate) use health::Direction;
pub(crate) use health::Health;
use layout::Layout;
use listing::Listing;
use prefetch::{Plan, Prefetch, Session};
use refresh::Refresher;
/// How many refreshes one session runs at once (and so at most how many are in flight when
/// it exits without waiting for them).
pub use refresh::WORKERS as REFRESH_WORKERS;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use upload::Uploads;

/// What every job of the remote tier is given: the bucket, the local tier, where to
/// report, and the breaker. Each job keeps its own copy.
#[derive(Clone)]
pub(crate) struct Handles {
    client: Arc<Client>,
    /// The session's own scope: the only one it writes (uploads, refreshes, manifest).
    layout: Layout,
    /// Every scope reads look in, in order: the own one, then the `--read-prefix` ones.
    scopes: Arc<[Layout]>,
    local: Arc<LocalTier>,
    stats: Arc<Stats>,
    health: Arc<Health>,
}

/// The running remote tier.
pub(crate) struct Remote {
    handles: Handles,
    downloads: Arc<Downloads>,
    uploads: Option<Uploads>,
    listing: Arc<Listing>,
    /// Prefetch and the manifest, when this session uses them.
    prefetch: Option<Arc<Prefetch>>,
    refresher: Option<Arc<Refresher>>,
    watcher: Arc<watch::Watcher>,
}

impl Remote {
    /// Starts the worker pools, and prefetch when `plan` says so. Nothing else touches
    /// the network until the first request.
    pub(crate) fn start(config: &RemoteConfig, local: Arc<LocalTier>, stats: Arc<Stats>, plan: Option<Plan>) -> Remote {
        let prefetch_workers = plan.as_ref().map_or(0, |p| p.workers);
        let handles = Handles {
            client: Arc::new(config.client(config.workers * 2 + prefetch_workers)),
            layout: Layout::new(&config.prefix),
            scopes: std::iter::once(&config.prefix).chain(&config.read_prefixes).map(|p| Layout::new(p)).collect(),
            local,
            stats,
            health: Arc::new(Health::new(config.max_failures, config.probe_interval)),
        };
        // Retries stop once the breaker has switched their side off.
        let health = Arc::clone(&handles.health);
        handles.client.set_retry_gate(Box::new(move |access| {
            !health.is_switched_off(match access {
                Access::Read => Direction::Reads,
                Access::Write => Direction::Writes,
            })
        }));
        let listing = Arc::new(Listing::default());
        let session = plan.as_ref().filter(|p| p.prefetch).map(|_| Arc::new(Session::default()));
        let refresh_after = config.refresh_after.filter(|_| !config.read_only && !config.no_sign_request);
        let refresher = refresh_after.map(|after| Refresher::start(&handles, &listing, after, config.timeout));
        let settings = DownloadSettings {
            get_timeout: config.get_timeout,
            background_timeout: config.timeout,
            max_object_size: config.max_object_size,
            write_form: config.compression,
        };
        let downloads =
            Downloads::start(&handles, &listing, session.clone(), refresher.clone(), settings, config.workers);
        match plan.as_ref().map(|p| p.fast_miss_max_keys).filter(|&n| n > 0) {
            Some(max_keys) => listing::start(&listing, &handles, refresher.clone(), max_keys, config.timeout),
            None => listing.skip(),
        }
        let prefetch = match (plan, session) {
            (Some(plan), Some(session)) => {
                Some(Prefetch::start(&handles, plan, session, &downloads, refresh_after, config.timeout))
            }
            _ => None,
        };
        let watcher = watch::Watcher::start(&handles, &downloads, config.get_timeout);
        let uploads = (!config.read_only).then(|| {
            let session = prefetch.as_ref().map(|p| Arc::clone(p.session()));
            let settings = (config.compression, config.max_object_size);
            Uploads::start(&handles, &listing, session, settings, config.workers, config.queue_len)
        });
        Remote { handles, downloads, uploads, listing, prefetch, refresher, watcher }
    }

    /// Ends the session's remote work: stops the download workers (every get has been
    /// answered by now) and waits up to `bound` for queued uploads, then for the
    /// refreshes of what the session downloaded and the manifest.
    pub(crate) fn finish(&self, bound: Duration) {
        let start = Instant::now();
        self.watcher.stop();
        self.downloads.close();
        if let Some(uploads) = &self.uploads {
            uploads.finish(bound);
        }
        if let Some(refresher) = &self.refresher {
            refresher.finish(bound.saturating_sub(start.elapsed()));
        }
        let stats = &self.handles.stats;
        let (retries, exhausted) = self.handles.client.retry_counts();
        stats::add(&stats.temp_bytes_peak, self.downloads.temp_bytes_peak());
        stats::add(&stats.retries, retries);
        stats::add(&stats.retry_budget_exhausted, exhausted);
        if let Some(prefetch) = &self.prefetch {
            prefetch.finish(bound.saturating_sub(start.elapsed()).max(Duration::from_secs(1)));
        }
    }
}

impl RemoteTier for Remote {
    fn lookup(&self, action: Id, done: Waiter) {
        // Never a probe: the watcher probes a switched-off bucket, no get of go's waits for it.
        if self.handles.health.is_switched_off(Direction::Reads) {
            return done(&Lookup::Miss { failed: false });
        }
        // A download already under way (prefetch) knows better than the listing, which is
        // a snapshot from the start of the session.
        if !self.downloads.is_in_flight(&action) && self.listing.fast_miss(&action) {
            log!(3, "action {action}: not in the bucket's listing, a miss without asking");
            stats::inc(&self.handles.stats.fast_misses);
            return done(&Lookup::Miss { failed: false });
        }
        if self.prefetch.as_ref().is_some_and(|p| p.session().is_gone(&action)) {
            return done(&Lookup::Miss { failed: false });
        }
        self.downloads.lookup(action, done);
    }

    fn upload(&self, action: Id, entry: Entry, path: PathBuf) {
        if let Some(uploads) = &self.uploads {
            uploads.push(action, entry, path);
        }
    }

    fn local_hit(&self, action: &Id, entry: &Entry) -> bool {
        if let Some(refresher) = &self.refresher {
            if self.listing.local_hit_due(action) {
                refresher.queue_listed(*action);
            }
        }
        let Some(session) = self.prefetch.as_ref().map(|p| p.session()) else { return false };
        // Into the manifest unless the bucket is known not to have it. Prefetch having
        // fetched it is proof enough: the listing is a snapshot, and may predate the upload.
        (session.fetched_unused(action) || self.listing.place(action) != Some(None)) && session.used(action, entry)
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}
