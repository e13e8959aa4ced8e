//! The bucket tier as the server sees it: lookups answered by a download pool (one
//! download per action, however many wait for it), uploads by a background pool, and a
//! breaker per direction. A remote problem is never the build's problem: every failure
//! becomes a miss or a skipped upload, and every request is bounded in time.
//!
//! The remote tier never answers go itself: a download produces a [`Lookup`] for whoever
//! waits on it, and the server turns that into go's response.

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
use crate::entry::Entry;
use crate::id::Id;
use crate::local::LocalTier;
use crate::random::Rng;
use crate::s3::client::{Bounds, Client};
use crate::server::{Lookup, RemoteTier, Waiter};
use crate::stats::{self, Stats};
use download::{Downloaded, Downloader, TempBudget};
pub use health::{Direction, Health};
use inflight::{InFlight, Joined, Started};
use layout::{Form, Layout};
use listing::Listing;
use pool::{Priority, Queue};
use prefetch::{Plan, Session};
/// How many refreshes one session runs at once (and so at most how many are in flight when
/// it exits without waiting for them).
pub use refresh::WORKERS as REFRESH_WORKERS;
use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use upload::Uploads;

/// What every worker shares.
pub struct Core {
    client: Client,
    layout: Layout,
    local: Arc<LocalTier>,
    stats: Arc<Stats>,
    health: Health,
    inflight: InFlight,
    downloads: Queue<Id>,
    /// Bound on everything one get from go may wait for.
    get_timeout: Duration,
    /// Bound on a download nobody waits for yet (prefetch).
    background_timeout: Duration,
    max_object_size: u64,
    /// The form uploads are written in (and lookups try first).
    write_form: Form,
    /// Prefetch and the manifest, when this session uses them.
    plan: Option<Plan>,
    session: Session,
    listing: Listing,
    /// Hits on objects dated longer ago than this rewrite the date (`None`: never).
    refresh_after: Option<Duration>,
    refreshes: Queue<refresh::Refresh>,
    /// Refreshes of downloads not done yet (the end of the session waits for those).
    refresh_pending: AtomicU64,
    /// Actions whose refresh this session has queued.
    refresh_seen: Mutex<HashSet<Id>>,
    /// Set when refreshing cannot work with this store or key.
    refresh_off: AtomicBool,
    /// Downloads in flight and the store's last sign of life in them (stall detection).
    liveness: watch::Liveness,
    /// The temporary files downloads may hold at once.
    temp: TempBudget,
}

/// The running remote tier.
pub struct Remote {
    core: Arc<Core>,
    uploads: Option<Uploads>,
    /// Ends the watcher.
    stop_watching: Arc<AtomicBool>,
}

impl Remote {
    /// Starts the worker pools, and prefetch when `plan` says so. Nothing else touches
    /// the network until the first request.
    pub fn start(config: &RemoteConfig, local: Arc<LocalTier>, stats: Arc<Stats>, plan: Option<Plan>) -> Remote {
        let prefetch_workers = plan.as_ref().map_or(0, |p| p.workers);
        let client = config.client(config.workers * 2 + prefetch_workers);
        let core = Arc::new(Core {
            client,
            layout: Layout::new(&config.prefix),
            local,
            stats,
            health: Health::new(config.max_failures, config.probe_interval),
            inflight: InFlight::default(),
            downloads: Queue::default(),
            get_timeout: config.get_timeout,
            background_timeout: config.timeout,
            max_object_size: config.max_object_size,
            write_form: config.compression,
            plan,
            session: Session::default(),
            listing: Listing::default(),
            refresh_after: config.refresh_after.filter(|_| !config.read_only && !config.no_sign_request),
            refreshes: Queue::default(),
            refresh_pending: AtomicU64::new(0),
            refresh_seen: Mutex::default(),
            refresh_off: AtomicBool::new(false),
            liveness: watch::Liveness::default(),
            temp: TempBudget::new(config.max_object_size.saturating_mul(2)),
        });
        match core.plan.as_ref().map(|p| p.fast_miss_max_keys).filter(|&n| n > 0) {
            Some(max_keys) => {
                let lister = Arc::clone(&core);
                let spawned =
                    std::thread::Builder::new().name("listing".into()).spawn(move || listing::run(&lister, max_keys));
                if let Err(e) = spawned {
                    log!(0, "cannot start the bucket listing: {e}; continuing without fast misses");
                    core.listing.skip();
                }
            }
            None => {
                core.listing.skip();
            }
        }
        if let Some(plan) = core.plan.clone().filter(|_| core.prefetching()) {
            let planner = Arc::clone(&core);
            let spawned =
                std::thread::Builder::new().name("prefetch".into()).spawn(move || prefetch::start(&planner, &plan));
            if let Err(e) = spawned {
                log!(0, "cannot start prefetch: {e}; continuing without it");
            }
        }
        let worker = Arc::clone(&core);
        pool::spawn("download", config.workers, move || worker.download_loop(false));
        if core.refresh_after.is_some() {
            let worker = Arc::clone(&core);
            pool::spawn("refresh", refresh::WORKERS, move || worker.refresh_loop());
        }
        let uploads = (!config.read_only).then(|| Uploads::start(Arc::clone(&core), config.workers, config.queue_len));
        let stop_watching = Arc::new(AtomicBool::new(false));
        watch::start(&core, &stop_watching);
        Remote { core, uploads, stop_watching }
    }

    /// Ends the session's remote work: stops the download workers (every get has been
    /// answered by now) and waits up to `bound` for queued uploads.
    pub fn finish(&self, bound: Duration) {
        let start = Instant::now();
        self.stop_watching.store(true, Ordering::Relaxed);
        self.core.downloads.close();
        if let Some(uploads) = &self.uploads {
            uploads.finish(bound);
        }
        // Refreshes are waited for within what is left of the bound, then dropped (the
        // objects stay due, and the next session that hits them tries again).
        while self.core.refresh_pending.load(Ordering::Relaxed) > 0 && start.elapsed() < bound {
            std::thread::sleep(Duration::from_millis(5));
        }
        self.core.refreshes.close();
        let retrier = &self.core.client.retrier;
        stats::add(&self.core.stats.temp_bytes_peak, self.core.temp.peak());
        stats::add(&self.core.stats.retries, retrier.retries());
        stats::add(&self.core.stats.retry_budget_exhausted, retrier.exhausted());
        if let Some(plan) = self.core.plan.as_ref().filter(|_| self.core.prefetching()) {
            let left = bound.saturating_sub(start.elapsed()).max(Duration::from_secs(1));
            prefetch::finish(&self.core, plan, left);
        }
    }
}

impl RemoteTier for Remote {
    fn lookup(&self, action: Id, done: Waiter) {
        let core = &self.core;
        // Never a probe: the watcher probes a switched-off bucket, no get of go's waits for it.
        if core.health.is_switched_off(Direction::Reads) {
            return done(&Lookup::Miss { failed: false });
        }
        // A download already under way (prefetch) knows better than the listing, which is
        // a snapshot from the start of the session.
        if !core.inflight.contains(&action) && core.listing.fast_miss(&action) {
            log!(3, "action {action}: not in the bucket's listing, a miss without asking");
            stats::inc(&core.stats.fast_misses);
            return done(&Lookup::Miss { failed: false });
        }
        if core.session.is_gone(&action) {
            return done(&Lookup::Miss { failed: false });
        }
        match core.inflight.join(action, done) {
            Joined::New | Joined::Promoted => {
                if !core.downloads.push(Priority::Urgent, action) {
                    // Closed: the session is ending; answer whoever waits.
                    core.inflight.finish(&action, &Lookup::Miss { failed: false });
                }
            }
            Joined::Waiting => {}
        }
    }

    fn upload(&self, action: Id, entry: Entry, path: PathBuf) {
        if let Some(uploads) = &self.uploads {
            uploads.push(action, entry, path);
        }
    }

    fn local_hit(&self, action: &Id, entry: &Entry) -> bool {
        let core = &self.core;
        if core.refresh_after.is_some() && core.listing.local_hit_due(action) {
            core.refresh_listed(*action);
        }
        // Into the manifest unless the bucket is known not to have it. Prefetch having
        // fetched it is proof enough: the listing is a snapshot, and may predate the upload.
        core.prefetching()
            && (core.session.fetched_unused(action) || core.listing.form(action) != Some(None))
            && core.session.used(action, entry)
    }
}

impl Core {
    /// A download worker: takes urgent jobs, and background ones if `background`.
    fn download_loop(&self, background: bool) {
        let mut rng = Rng::fresh();
        while let Some(action) = self.downloads.pop(background) {
            let Some(started) = self.inflight.start(&action) else { continue };
            if started.prefetch {
                self.session.prefetch_started(action);
            }
            // A job queued before reads were switched off is dropped (its waiters, if any,
            // have been answered by the watcher).
            let done = if self.health.is_switched_off(Direction::Reads) {
                Downloaded { lookup: Lookup::Miss { failed: false }, moved: 0, stale: None, absent: false }
            } else if let Some(hit) = self.fetched_meanwhile(&action, started) {
                Downloaded { lookup: Lookup::Hit { hit, prefetched: true }, moved: 0, stale: None, absent: false }
            } else {
                let timeout = if started.urgent { self.get_timeout } else { self.background_timeout };
                // A prefetch nobody waits for takes no more than the manifest said the
                // output is, so --prefetch-max-bytes bounds what arrives, not what is claimed.
                let claimed = started.claimed_size.filter(|_| !started.urgent);
                let max_body = claimed.map_or(self.max_object_size, |size| size.min(self.max_object_size));
                let bounds = Bounds { deadline: Some(Instant::now() + timeout), max_body };
                self.downloader().run(&action, &self.forms(&action), bounds, started.prefetch, &mut rng)
            };
            let Downloaded { lookup: result, moved, stale, absent } = done;
            if let Some(stale) = stale {
                self.queue_refresh(stale);
            }
            let hit = match &result {
                Lookup::Hit { hit, .. } => Some(hit.entry),
                Lookup::Miss { .. } => None,
            };
            if started.prefetch {
                self.session.prefetched(action, hit.map(|_| moved), absent);
                stats::add(&self.stats.prefetched, u64::from(hit.is_some()));
            }
            let waiting = self.inflight.finish(&action, &result);
            if let (Some(entry), true) = (hit, waiting > 0 && self.prefetching()) {
                self.session.used(&action, &entry);
            }
        }
    }

    /// The local output of `action` when prefetch stored it between go's local miss and
    /// this get's download starting (the prefetch had left the in-flight map by then).
    fn fetched_meanwhile(&self, action: &Id, started: Started) -> Option<crate::local::Hit> {
        if started.prefetch || !self.session.fetched_unused(action) {
            return None;
        }
        self.local.get(action).ok().flatten()
    }

    /// Whether this session prefetches and keeps the manifest.
    fn prefetching(&self) -> bool {
        self.plan.as_ref().is_some_and(|p| p.prefetch)
    }

    /// A successful upload: the session used it, and the bucket now has it.
    fn uploaded(&self, action: &Id, entry: &Entry) {
        if self.prefetching() {
            self.session.used(action, entry);
        }
    }

    /// The forms to look `action` up in, in order: the one the listing saw, else the one
    /// this program writes first.
    fn forms(&self, action: &Id) -> Vec<Form> {
        match self.listing.form(action) {
            Some(Some(form)) => vec![form],
            _ => vec![self.write_form, self.write_form.other()],
        }
    }

    fn downloader(&self) -> Downloader<'_> {
        Downloader {
            client: &self.client,
            layout: &self.layout,
            local: &self.local,
            stats: &self.stats,
            health: &self.health,
            liveness: &self.liveness,
            temp: &self.temp,
            refresh_after: self.refresh_after,
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}
