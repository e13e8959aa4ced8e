//! Prefetch of the working set. At the start of a building session the manifest of its
//! build key says what the last session of its kind used; everything of it missing
//! locally is queued at background priority, so it is downloaded in parallel before go
//! asks (a get for one of them joins its download, or finds it local). At the end, what
//! the session used replaces its kind's set in the manifest.
//!
//! With `--read-prefix` scopes, the manifest read is the own scope's, else the first read
//! scope's that has one (a pull request's first session prefetches what its base branch's
//! builds use); it is always written to the own scope, so the pull request's next session
//! reads its own.

use super::download::Downloads;
use super::manifest::{self, Manifest};
use super::{lock, Direction, Handles};
use crate::id::Id;
use crate::local::entry::Entry;
use crate::s3::client::{Bounds, Upload};
use crate::stats;
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// The largest manifest read (a full one is 4 MB).
const MAX_MANIFEST_BYTES: u64 = 8 << 20;

/// What a building session does beyond answering go: prefetch and the manifest (unless
/// `--no-prefetch`) and the listing for fast misses.
#[derive(Debug, Clone)]
pub(crate) struct Plan {
    /// Prefetch the working set and merge this session's into its manifest.
    pub(crate) prefetch: bool,
    /// What identifies "the same build" (see `invocation`), or the user's `--prefetch-key`.
    pub(crate) build_key: String,
    /// The session's kind of go command within the build key's manifest
    /// (`manifest::kind_id` of what it builds).
    pub(crate) kind: u64,
    /// Download threads that take background work (and urgent work first).
    pub(crate) workers: usize,
    /// The most bytes prefetch may queue.
    pub(crate) max_bytes: u64,
    /// Whether this session may write the manifest (not `--read-only`).
    pub(crate) write: bool,
    /// List the bucket for fast misses when it holds at most this many outputs (0: never).
    pub(crate) fast_miss_max_keys: usize,
}

/// What this session used and prefetched: kept by downloads, uploads and local hits,
/// merged into the manifest at the end.
#[derive(Default)]
pub(crate) struct Session {
    used: Mutex<Used>,
    /// Being downloaded or downloaded by prefetch, and not (yet) asked for by go:
    /// action → bytes moved (0 until the download ends).
    unused: Mutex<HashMap<Id, u64>>,
    /// Manifest entries the bucket did not have (or had damaged).
    gone: Mutex<HashSet<Id>>,
}

/// The prefetch job: its plan, the session's use, and the manifest it read.
pub(crate) struct Prefetch {
    handles: Handles,
    plan: Plan,
    session: Arc<Session>,
    downloads: Arc<Downloads>,
    /// Objects dated longer ago are refreshed: the manifest is rewritten at that age.
    refresh_after: Option<Duration>,
    /// Bound on reading the manifest (`--timeout`).
    timeout: Duration,
    /// The manifest as read at the start (`None`: not read).
    base: Mutex<Option<Base>>,
    /// Set once prefetch workers have been started.
    workers_started: AtomicBool,
}

/// The manifest a session starts from.
struct Base {
    manifest: Manifest,
    /// The date of the own scope's manifest object (its last write), if it has one.
    dated: Option<SystemTime>,
    /// Read from the own scope (else from a read scope, or none was found): only then
    /// does the own scope have it already.
    own: bool,
}

#[derive(Default)]
struct Used {
    order: Vec<(Id, Id, u64)>,
    seen: HashSet<Id>,
}

impl Session {
    /// go used `action`'s output (a hit or a put); true if prefetch had fetched it.
    pub(crate) fn used(&self, action: &Id, entry: &Entry) -> bool {
        let mut used = lock(&self.used);
        if used.seen.insert(*action) {
            used.order.push((*action, entry.output_id, entry.size));
        }
        drop(used);
        lock(&self.unused).remove(action).is_some()
    }

    /// Whether prefetch found `action` missing or damaged in the bucket this session (a get
    /// for it is then a miss without a second try).
    pub(crate) fn is_gone(&self, action: &Id) -> bool {
        lock(&self.gone).contains(action)
    }

    /// A prefetch download of `action` starts. Registered before the download stores the
    /// output locally, so a get that finds it there at any moment after is a prefetch hit.
    pub(crate) fn prefetch_started(&self, action: Id) {
        lock(&self.unused).insert(action, 0);
    }

    /// Whether prefetch fetched `action` and go has not used it yet.
    pub(crate) fn fetched_unused(&self, action: &Id) -> bool {
        lock(&self.unused).contains_key(action)
    }

    /// A prefetch download ended: `got` the size of a verified object (`None`: nothing
    /// usable came), `absent` when the bucket has no usable object (rather than the
    /// download failing, or being larger than the manifest said). A get may have used it
    /// already: it is then not waste.
    pub(crate) fn prefetched(&self, action: Id, got: Option<u64>, absent: bool) {
        let mut unused = lock(&self.unused);
        match got {
            Some(size) => {
                if let Some(waste) = unused.get_mut(&action) {
                    *waste = size;
                }
            }
            None => {
                unused.remove(&action);
                drop(unused);
                if absent {
                    lock(&self.gone).insert(action);
                }
            }
        }
    }
}

fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

impl Prefetch {
    /// Reads the manifest and queues what is missing locally, on a thread of its own.
    pub(crate) fn start(
        handles: &Handles,
        plan: Plan,
        session: Arc<Session>,
        downloads: &Arc<Downloads>,
        refresh_after: Option<Duration>,
        timeout: Duration,
    ) -> Arc<Prefetch> {
        let prefetch = Arc::new(Prefetch {
            handles: handles.clone(),
            plan,
            session,
            downloads: Arc::clone(downloads),
            refresh_after,
            timeout,
            base: Mutex::new(None),
            workers_started: AtomicBool::new(false),
        });
        let planner = Arc::clone(&prefetch);
        if let Err(e) = std::thread::Builder::new().name("prefetch".into()).spawn(move || planner.plan()) {
            log!(0, "cannot start prefetch: {e}; continuing without it");
        }
        prefetch
    }

    /// What the session used and prefetched.
    pub(crate) fn session(&self) -> &Arc<Session> {
        &self.session
    }

    /// The key of the build's manifest in `layout`'s scope.
    fn manifest_key(&self, layout: &super::layout::Layout) -> String {
        layout.under(&manifest::key_name(&self.plan.build_key))
    }

    /// The manifest to start from: the own scope's, else the first read scope's; `None`
    /// when the own scope's cannot be read (then none is written either).
    fn read_base(&self) -> Option<Base> {
        let client = &self.handles.client;
        let bounds = Bounds { max_body: MAX_MANIFEST_BYTES, ..Bounds::within(self.timeout) };
        for (scope, layout) in self.handles.scopes.iter().enumerate() {
            let key = self.manifest_key(layout);
            let mut body = Vec::new();
            match client.get_object(&key, &mut body, bounds) {
                Ok(Some(info)) => match Manifest::parse(&body) {
                    Ok(manifest) => {
                        let dated = info.last_modified.filter(|_| scope == 0);
                        return Some(Base { manifest, dated, own: scope == 0 });
                    }
                    Err(e) => log!(1, "ignoring the prefetch manifest {key}: {e}"),
                },
                Ok(None) => log!(2, "no prefetch manifest at {key}"),
                // A read scope without s3:ListBucket answers a missing key so.
                Err(e) if scope > 0 && e.is_access_denied() => log!(2, "no prefetch manifest at {key}: {e}"),
                Err(e) if scope == 0 => {
                    // Not fatal (and not counted against the bucket's health: reads will tell).
                    log!(1, "cannot read the prefetch manifest {key}: {e}");
                    return None;
                }
                Err(e) => {
                    log!(1, "cannot read the prefetch manifest {key}: {e}");
                    break;
                }
            }
        }
        log!(2, "no prefetch manifest for this build yet: this session writes the first");
        Some(Base { manifest: Manifest::default(), dated: None, own: false })
    }

    /// Reads the manifest and queues what is missing locally.
    fn plan(&self) {
        let Handles { local, stats, health, .. } = &self.handles;
        let (plan, downloads) = (&self.plan, &self.downloads);
        let started = Instant::now();
        let Some(base) = self.read_base() else { return };
        let manifest = &base.manifest;
        stats::add(&stats.manifest_entries, manifest.entries.len() as u64);
        let mut wanted = Vec::new();
        let mut sent = 0;
        let mut bytes = 0u64;
        for entry in manifest.for_kind(plan.kind) {
            if health.is_switched_off(Direction::Reads) {
                break;
            }
            if bytes + entry.size > plan.max_bytes {
                log!(1, "prefetch stops at --prefetch-max-bytes {} ({} objects queued)", plan.max_bytes, wanted.len());
                break;
            }
            if !downloads.claim_prefetch(entry.action, entry.size) {
                continue;
            }
            // Checked after registering: a get's download stores locally before it leaves
            // the map, so checking first could miss one that finished in between and fetch
            // it twice.
            let present = local.get(&entry.action).ok().flatten();
            if present.is_some_and(|hit| hit.entry.output_id == entry.output)
                && downloads.withdraw_prefetch(&entry.action)
            {
                continue;
            }
            wanted.push(entry.action);
            bytes += entry.size;
            // Queued in batches, so the first downloads start while the rest is checked.
            if wanted.len() - sent == BATCH {
                if !self.queue(&wanted[sent..]) {
                    return;
                }
                sent = wanted.len();
            }
        }
        if !self.queue(&wanted[sent..]) {
            return;
        }
        let queued = wanted.len();
        log!(
            2,
            "prefetch: {} manifest entries, {queued} objects ({}) queued in {:?}",
            manifest.entries.len(),
            stats::human_bytes(bytes),
            started.elapsed()
        );
        *lock(&self.base) = Some(base);
    }

    /// Queues `actions` at background priority, starting the prefetch workers with the
    /// first; false when the session is ending.
    fn queue(&self, actions: &[Id]) -> bool {
        if actions.is_empty() {
            return true;
        }
        if !self.workers_started.swap(true, Ordering::Relaxed) {
            self.downloads.spawn("prefetch", self.plan.workers, true);
        }
        self.downloads.queue_background(actions)
    }

    /// Ends prefetch for the session: counts what it fetched for nothing, and merges what
    /// the session used into the manifest (written within `bound`).
    pub(crate) fn finish(&self, bound: Duration) {
        let Handles { client, stats, health, .. } = &self.handles;
        let session = &self.session;
        let wasted: u64 = lock(&session.unused).values().sum();
        stats::add(&stats.prefetch_wasted_bytes, wasted);
        if !self.plan.write || health.is_switched_off(Direction::Writes) {
            return;
        }
        let Some(Base { manifest: base, dated, own }) = lock(&self.base).take() else { return };
        let used = std::mem::take(&mut lock(&session.used).order);
        if used.is_empty() {
            return;
        }
        let now = unix_now();
        let merged = base.merged(self.plan.kind, &used, &lock(&session.gone), now);
        // A manifest in use is rewritten once its object is as old as an output would be
        // refreshed at, so expiry by date (lifecycle rules, prune) keeps it with its outputs.
        let object_stale = super::refresh::is_due(dated, self.refresh_after, client.now());
        if own && !base.needs_write(&merged, now) && !object_stale {
            return;
        }
        let key = self.manifest_key(&self.handles.layout);
        let bytes = merged.to_bytes();
        let sha = crate::s3::sigv4::sha256_hex(&bytes);
        match client.put_object(&key, Upload::Bytes(&bytes), &sha, &[], Bounds::within(bound)) {
            Ok(()) => log!(2, "prefetch manifest {key}: {} entries written", merged.entries.len()),
            Err(e) => log!(1, "cannot write the prefetch manifest {key}: {e}"),
        }
    }
}

/// Prefetch jobs queued at a time.
const BATCH: usize = 64;

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(n: u8) -> Entry {
        Entry { output_id: Id([n; 32]), size: 10, time_nanos: 0 }
    }

    fn waste(session: &Session) -> u64 {
        lock(&session.unused).values().sum()
    }

    #[test]
    fn a_get_that_finds_a_prefetch_local_before_it_reports_back_is_a_prefetch_hit() {
        let session = Session::default();
        let a = Id([1; 32]);
        session.prefetch_started(a);
        // The download has stored the output; go finds it before the worker reports back.
        assert!(session.used(&a, &entry(1)), "a prefetch hit");
        session.prefetched(a, Some(700), false);
        assert_eq!(waste(&session), 0, "used, so not waste");
        assert!(!session.fetched_unused(&a));
        assert!(!session.used(&a, &entry(1)), "counted once");
    }

    #[test]
    fn what_go_never_asks_for_is_waste_and_what_the_bucket_lacks_is_gone() {
        let session = Session::default();
        let (a, b) = (Id([1; 32]), Id([2; 32]));
        session.prefetch_started(a);
        session.prefetch_started(b);
        session.prefetched(a, Some(700), false);
        session.prefetched(b, None, true);
        assert!(session.fetched_unused(&a));
        assert_eq!(waste(&session), 700);
        assert!(session.is_gone(&b) && !session.is_gone(&a));
        // A download that failed (or was larger than the manifest said) leaves the get its own try.
        let c = Id([3; 32]);
        session.prefetch_started(c);
        session.prefetched(c, None, false);
        assert!(!session.is_gone(&c) && !session.fetched_unused(&c));
        assert!(session.used(&a, &entry(1)));
        assert_eq!(waste(&session), 0);
        assert!(!session.used(&b, &entry(2)), "never fetched");
    }
}
