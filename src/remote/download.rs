//! Downloads: the pool that answers lookups and runs prefetch's work ([`Downloads`], one
//! queue with two priorities, one download in flight per action), and one download
//! ([`Downloader`]): a GET (of each place the output may be, in order: the own scope,
//! then the read scopes) streamed into a temporary file of the local tier while hashed
//! (decompressed on the way for the compressed form), retried while it fails
//! transiently, verified, and stored locally. The result is a [`Lookup`] for whoever
//! waits on it (go's get, or nobody for a prefetch).
//!
//! What a store sends can fill no disk: each download is bounded by its size limit
//! (`--max-object-size`, or for prefetch the size the manifest gives), a compressed one
//! by the frames this program writes (see `frame`), and all downloads of a session
//! together by a [`TempBudget`] on the temporary files they hold at once.

use super::frame::{self, FrameReader};
use super::inflight::{InFlight, Joined, Started};
use super::layout::{self, Fetched, Form, Layout, Place};
use super::listing::Listing;
use super::pool::{self, Priority, Queue};
use super::prefetch::Session;
use super::refresh::{self, Basis, Refresh, Refresher};
use super::watch::{Lively, Liveness};
use super::{Direction, Handles, Health};
use crate::id::Id;
use crate::local::{Hashing, LocalTier};
use crate::s3::client::{Bounds, Client, ObjectInfo};
use crate::s3::error::S3Error;
use crate::server::{Lookup, Waiter};
use crate::stats::{self, Stats};
use std::io::{self, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The settings downloads follow.
#[derive(Debug, Clone, Copy)]
pub(crate) struct DownloadSettings {
    /// Bound on everything one get from go may wait for.
    pub(crate) get_timeout: Duration,
    /// Bound on a download nobody waits for yet (prefetch).
    pub(crate) background_timeout: Duration,
    pub(crate) max_object_size: u64,
    /// The form uploads are written in (and lookups try first).
    pub(crate) write_form: Form,
}

/// The download pool: what go waits for first, prefetch after, one download per action
/// however many wait for it.
pub(crate) struct Downloads {
    handles: Handles,
    listing: Arc<Listing>,
    /// What the session used and prefetched, when it prefetches.
    session: Option<Arc<Session>>,
    refresher: Option<Arc<Refresher>>,
    settings: DownloadSettings,
    queue: Queue<Id>,
    inflight: InFlight,
    /// Downloads in flight and the store's last sign of life in them (stall detection).
    liveness: Liveness,
    /// The temporary files downloads may hold at once.
    temp: TempBudget,
}

impl Downloads {
    /// The pool, with `workers` threads that take only what go waits for.
    pub(crate) fn start(
        handles: &Handles,
        listing: &Arc<Listing>,
        session: Option<Arc<Session>>,
        refresher: Option<Arc<Refresher>>,
        settings: DownloadSettings,
        workers: usize,
    ) -> Arc<Downloads> {
        let downloads = Arc::new(Downloads {
            handles: handles.clone(),
            listing: Arc::clone(listing),
            session,
            refresher,
            settings,
            queue: Queue::default(),
            inflight: InFlight::default(),
            liveness: Liveness::default(),
            temp: TempBudget::new(settings.max_object_size.saturating_mul(2)),
        });
        downloads.spawn("download", workers, false);
        downloads
    }

    /// Starts `count` more workers; `background`: they take prefetch's work too.
    pub(crate) fn spawn(self: &Arc<Self>, name: &str, count: usize, background: bool) {
        let worker = Arc::clone(self);
        pool::spawn(name, count, move || worker.work(background));
    }

    /// go wants `action`: `done` will receive the result of its download.
    pub(crate) fn lookup(&self, action: Id, done: Waiter) {
        match self.inflight.join(action, done) {
            Joined::New | Joined::Promoted => {
                if !self.queue.push(Priority::Urgent, action) {
                    // Closed: the session is ending; answer whoever waits.
                    self.inflight.finish(&action, &Lookup::Miss { failed: false });
                }
            }
            Joined::Waiting => {}
        }
    }

    /// Whether a download of `action` is queued or running.
    pub(crate) fn is_in_flight(&self, action: &Id) -> bool {
        self.inflight.contains(action)
    }

    /// Prefetch wants `action`, whose output the manifest says is `size` bytes; true if
    /// it is now registered (the caller then queues it, or withdraws it).
    pub(crate) fn claim_prefetch(&self, action: Id, size: u64) -> bool {
        self.inflight.add_prefetch(action, size)
    }

    /// Takes back a claim that turned out not to be needed; false if a get joined it.
    pub(crate) fn withdraw_prefetch(&self, action: &Id) -> bool {
        self.inflight.withdraw_prefetch(action)
    }

    /// Queues claimed prefetches at background priority; false when the pool is closed.
    pub(crate) fn queue_background(&self, actions: &[Id]) -> bool {
        self.queue.push_background(actions.iter().copied())
    }

    /// Takes every get waiting on a download off it, for the caller to answer now (the
    /// downloads go on, answering nobody).
    pub(crate) fn abandon_waiters(&self) -> Vec<Waiter> {
        self.inflight.abandon_waiters()
    }

    /// How long the store has sent nothing while downloads were in flight.
    pub(crate) fn quiet_for(&self) -> Option<Duration> {
        self.liveness.quiet_for()
    }

    /// The most bytes of temporary files downloads held at once.
    pub(crate) fn temp_bytes_peak(&self) -> u64 {
        self.temp.peak()
    }

    /// Stops the workers; queued downloads are dropped (every get has been answered).
    pub(crate) fn close(&self) {
        self.queue.close();
    }

    /// A worker: takes urgent jobs, and background ones if `background`.
    fn work(&self, background: bool) {
        while let Some(action) = self.queue.pop(background) {
            let Some(started) = self.inflight.start(&action) else { continue };
            let session = self.session.as_deref();
            if let Some(session) = session.filter(|_| started.prefetch) {
                session.prefetch_started(action);
            }
            let Downloaded { lookup: result, moved, stale, absent } = self.run(&action, started);
            if let (Some(stale), Some(refresher)) = (stale, &self.refresher) {
                refresher.queue_downloaded(stale);
            }
            let hit = match &result {
                Lookup::Hit { hit, .. } => Some(hit.entry),
                Lookup::Miss { .. } => None,
            };
            if let Some(session) = session.filter(|_| started.prefetch) {
                session.prefetched(action, hit.map(|_| moved), absent);
                stats::add(&self.handles.stats.prefetched, u64::from(hit.is_some()));
            }
            let waiting = self.inflight.finish(&action, &result);
            if let (Some(entry), Some(session), true) = (hit, session, waiting > 0) {
                session.used(&action, &entry);
            }
        }
    }

    /// The download of `action`, unless it is no longer needed.
    fn run(&self, action: &Id, started: Started) -> Downloaded {
        let nothing = |lookup| Downloaded { lookup, moved: 0, stale: None, absent: false };
        // A job queued before reads were switched off is dropped (its waiters, if any,
        // have been answered by the watcher).
        if self.handles.health.is_switched_off(Direction::Reads) {
            return nothing(Lookup::Miss { failed: false });
        }
        if let Some(hit) = self.fetched_meanwhile(action, started) {
            return nothing(Lookup::Hit { hit, prefetched: true });
        }
        let s = &self.settings;
        let timeout = if started.urgent { s.get_timeout } else { s.background_timeout };
        // A prefetch nobody waits for takes no more than the manifest said the output is,
        // so --prefetch-max-bytes bounds what arrives, not what is claimed.
        let claimed = started.claimed_size.filter(|_| !started.urgent);
        let max_body = claimed.map_or(s.max_object_size, |size| size.min(s.max_object_size));
        let bounds = Bounds { deadline: Some(Instant::now() + timeout), max_body };
        self.downloader().run(action, &self.places(action), bounds, started.prefetch)
    }

    /// The local output of `action` when prefetch stored it between go's local miss and
    /// this get's download starting (the prefetch had left the in-flight map by then).
    fn fetched_meanwhile(&self, action: &Id, started: Started) -> Option<crate::local::Hit> {
        let fetched = self.session.as_ref().is_some_and(|s| s.fetched_unused(action));
        if started.prefetch || !fetched {
            return None;
        }
        self.handles.local.get(action).ok().flatten()
    }

    /// The places to look `action` up in, in order: the one the listing saw, else every
    /// scope in order, each in the form this program writes first, then the other.
    fn places(&self, action: &Id) -> Vec<Place> {
        let write_form = self.settings.write_form;
        match self.listing.place(action) {
            Some(Some(place)) => vec![place],
            _ => (0..self.handles.scopes.len())
                .flat_map(|scope| [write_form, write_form.other()].map(|form| Place { scope, form }))
                .collect(),
        }
    }

    fn downloader(&self) -> Downloader<'_> {
        let h = &self.handles;
        Downloader {
            client: &h.client,
            scopes: &h.scopes,
            local: &h.local,
            stats: &h.stats,
            health: &h.health,
            liveness: &self.liveness,
            temp: &self.temp,
            refresh_after: self.refresher.as_ref().map(|r| r.after()),
        }
    }
}

/// The temporary files downloads hold at once, bounded for the whole session: a store
/// that sends what it claims, however much, fills at most `limit` bytes of disk.
#[derive(Debug)]
pub(super) struct TempBudget {
    limit: u64,
    used: AtomicU64,
    peak: AtomicU64,
}

impl TempBudget {
    /// A budget of `limit` bytes.
    pub(super) fn new(limit: u64) -> TempBudget {
        TempBudget { limit, used: AtomicU64::new(0), peak: AtomicU64::new(0) }
    }

    /// The most bytes held at once so far.
    pub(super) fn peak(&self) -> u64 {
        self.peak.load(Ordering::Relaxed)
    }

    fn take(&self, n: u64) -> bool {
        let taken = self.used.fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
            used.checked_add(n).filter(|&total| total <= self.limit)
        });
        match taken {
            Ok(before) => {
                self.peak.fetch_max(before + n, Ordering::Relaxed);
                true
            }
            Err(_) => false,
        }
    }

    fn give(&self, n: u64) {
        self.used.fetch_sub(n, Ordering::AcqRel);
    }
}

/// What one download holds of the budget; given back when dropped (its temporary files
/// are gone or stored by then).
struct Held<'a> {
    budget: &'a TempBudget,
    bytes: u64,
}

impl Held<'_> {
    /// A new attempt: the last one's temporary file is gone.
    fn reset(&mut self) {
        self.budget.give(std::mem::take(&mut self.bytes));
    }
}

impl Drop for Held<'_> {
    fn drop(&mut self) {
        self.reset();
    }
}

/// A writer that takes from the budget what it writes, and fails once the budget is spent.
struct Budgeted<'a, 'b, W> {
    inner: W,
    held: &'b mut Held<'a>,
}

impl<W: Write> Write for Budgeted<'_, '_, W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let want = buf.len() as u64;
        if !self.held.budget.take(want) {
            return Err(io::Error::other(format!(
                "downloads hold {} bytes of temporary files, the most at once (2 x --max-object-size): this one \
                 is dropped",
                self.held.budget.limit
            )));
        }
        self.held.bytes += want;
        let written = self.inner.write(buf);
        let unused = want - written.as_ref().map_or(0, |&n| n as u64);
        self.held.budget.give(unused);
        self.held.bytes -= unused;
        written
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// What a download came to.
pub(super) struct Downloaded {
    pub(crate) lookup: Lookup,
    /// Bytes a hit moved over the network.
    pub(crate) moved: u64,
    /// The object to refresh, when its date is older than `--refresh-after`.
    pub(crate) stale: Option<Refresh>,
    /// The bucket has no usable object for the action (none, or a bad one), as opposed
    /// to a download that failed or was cut short.
    pub(crate) absent: bool,
}

/// What a download needs.
pub(super) struct Downloader<'a> {
    pub(crate) client: &'a Client,
    /// The scopes `Place`s name: the own one first.
    pub(crate) scopes: &'a [Layout],
    pub(crate) local: &'a LocalTier,
    pub(crate) stats: &'a Stats,
    pub(crate) health: &'a Health,
    pub(crate) liveness: &'a Liveness,
    pub(crate) temp: &'a TempBudget,
    /// Hits on objects dated longer ago are handed back for a refresh.
    pub(crate) refresh_after: Option<Duration>,
}

impl Downloader<'_> {
    /// Fetches `action` within `bounds` (`max_body`: the most output bytes) from the first
    /// of `places` the bucket has it in, and stores it locally. `prefetched` marks the
    /// result of a download that prefetch started.
    pub(super) fn run(&self, action: &Id, places: &[Place], bounds: Bounds, prefetched: bool) -> Downloaded {
        let stats = self.stats;
        let started = Instant::now();
        let mut key = String::new();
        let mut fetched = Ok((Fetched::NotFound, 0));
        let mut own = true;
        let mut held = Held { budget: self.temp, bytes: 0 };
        for place in places {
            let Some(layout) = self.scopes.get(place.scope) else { continue };
            key = layout.key_in(action, place.form);
            own = place.is_own();
            fetched = self.fetch(action, &key, place.form, bounds, &mut held);
            // A denied GET is how S3 says "no such key" to a reader without s3:ListBucket
            // (as a pull request's job may be on its base branch's scope): try the next.
            let absent = match &fetched {
                Ok((Fetched::NotFound, _)) => true,
                Err(e) => e.is_access_denied(),
                Ok(_) => false,
            };
            if !absent {
                break;
            }
        }
        match &fetched {
            Ok(_) => self.health.success(Direction::Reads),
            Err(e) => self.health.failure(Direction::Reads, e, stats),
        }
        let lookup = match fetched {
            Ok((Fetched::Hit { entry, temp, dated, etag, metadata }, moved)) => match self
                .local
                .store(action, &entry, temp)
            {
                Ok(path) => {
                    stats::add(&stats.bytes_downloaded, moved);
                    if !own {
                        stats::inc(&stats.read_scope_downloads);
                    }
                    stats::add(&stats.download_ms, started.elapsed().as_millis() as u64);
                    log!(3, "downloaded {key} ({moved} bytes, {} as output) in {:?}", entry.size, started.elapsed());
                    // Only the own scope is written: a read scope's object is served as it is.
                    let due = own && refresh::is_due(dated, self.refresh_after, self.client.now());
                    let stale =
                        due.then_some(Refresh { key, action: *action, basis: Basis::Downloaded { metadata, etag } });
                    let hit = crate::local::Hit { entry, path };
                    return Downloaded { lookup: Lookup::Hit { hit, prefetched }, moved, stale, absent: false };
                }
                Err(e) => {
                    log!(0, "storing downloaded {key} locally failed: {e}");
                    Lookup::Miss { failed: true }
                }
            },
            Ok((Fetched::NotFound, _)) => {
                log!(3, "{key}: not in the bucket");
                stats::inc(&stats.remote_not_found);
                return Downloaded::absent(Lookup::Miss { failed: false });
            }
            Ok((Fetched::Bad { why, bytes }, _)) => {
                stats::inc(&stats.remote_bad_objects);
                if prefetched {
                    stats::add(&stats.prefetch_wasted_bytes, bytes);
                }
                log!(1, "ignoring object {key} from the bucket: {why}; go will rebuild it");
                return Downloaded::absent(Lookup::Miss { failed: true });
            }
            Err(e) if e.is_access_denied() => {
                // S3's answer for a missing key to callers without ListBucket permission.
                log!(3, "{key}: access denied, taken as not in the bucket");
                stats::inc(&stats.remote_not_found);
                return Downloaded::absent(Lookup::Miss { failed: false });
            }
            Err(e) => {
                stats::inc(&stats.remote_get_errors);
                if e.is_timeout() {
                    stats::inc(&stats.timeouts);
                }
                log!(2, "download failed: {e}");
                Lookup::Miss { failed: true }
            }
        };
        Downloaded { lookup, moved: 0, stale: None, absent: false }
    }

    /// A GET into a temporary file (each attempt a new one), then verified against the
    /// object's metadata; with the bytes received. The metadata is checked first: a
    /// foreign object's body is not even read.
    fn fetch(
        &self,
        action: &Id,
        key: &str,
        form: Form,
        bounds: Bounds,
        held: &mut Held<'_>,
    ) -> Result<(Fetched, u64), S3Error> {
        let op = || format!("GET {key}");
        let sink = |e: io::Error| S3Error::Sink { op: op(), source: e };
        let max_output = bounds.max_body;
        // What may come over the wire: the output, or the frame of an output that size.
        let wire = match form {
            Form::Plain => bounds,
            Form::Lz4 => Bounds { max_body: frame::max_frame_len(max_output), ..bounds },
        };
        let reading = self.liveness.begin();
        let fetched = self.client.get_object_with(key, wire, |info, body| {
            held.reset();
            self.liveness.alive();
            let mut body = Lively { inner: body, live: self.liveness };
            let body = &mut body;
            if let Err(why) = layout::check_metadata(action, form, info) {
                return Ok((Fetched::Bad { why, bytes: 0 }, 0));
            }
            let temp = self.local.download_file_near(action).map_err(|e| sink(io::Error::other(e)))?;
            // The client reads in 32 KB pieces: no buffer is needed in between.
            let mut writer = Hashing::new(Budgeted { inner: temp, held: &mut *held });
            let copied = match form {
                Form::Plain => copy(body, &mut writer),
                Form::Lz4 => copy(&mut io::Read::take(FrameReader::new(&mut *body), max_output + 1), &mut writer),
            };
            let received = body.inner.received();
            match copied {
                Ok(n) if n > max_output => Err(S3Error::Oversized { op: op(), size: n, limit: max_output }),
                Ok(_) => {
                    // The Content-Length of a compressed object is its compressed size: the
                    // decoded length is checked against nothing but the output ID's hash.
                    let size = if form == Form::Plain { info.size } else { None };
                    let info = ObjectInfo { size, ..info.clone() };
                    let (budgeted, digest, len) = writer.finish();
                    let fetched = match layout::verify(action, form, &info, digest, len, budgeted.inner) {
                        Fetched::Bad { why, .. } => Fetched::Bad { why, bytes: received },
                        other => other,
                    };
                    Ok((fetched, received))
                }
                Err(Copy::Write(e)) => Err(sink(e)),
                Err(Copy::Read(e)) => match body.inner.take_failure() {
                    Some(network) => Err(network),
                    None => {
                        Ok((Fetched::Bad { why: format!("not a valid LZ4 frame: {e}"), bytes: received }, received))
                    }
                },
            }
        });
        reading.end(!matches!(&fetched, Err(e) if e.is_timeout()));
        Ok(fetched?.unwrap_or((Fetched::NotFound, 0)))
    }
}

impl Downloaded {
    fn absent(lookup: Lookup) -> Downloaded {
        Downloaded { lookup, moved: 0, stale: None, absent: true }
    }
}

/// Which side of a copy failed.
enum Copy {
    Read(io::Error),
    Write(io::Error),
}

/// `io::copy` that tells a failed read from a failed write.
fn copy(from: &mut dyn io::Read, to: &mut dyn io::Write) -> Result<u64, Copy> {
    let mut buf = vec![0u8; 32 * 1024];
    let mut total = 0u64;
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) => return Ok(total),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(Copy::Read(e)),
        };
        to.write_all(&buf[..n]).map_err(Copy::Write)?;
        total += n as u64;
    }
}
