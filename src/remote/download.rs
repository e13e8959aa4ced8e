//! One download: a GET streamed into a temporary file of the local tier while hashed
//! (decompressed on the way for the compressed form), retried while it fails
//! transiently, verified, and stored locally. The result is a [`Lookup`] for whoever
//! waits on it (go's get, or nobody for a prefetch).
//!
//! What a store sends can fill no disk: each download is bounded by its size limit
//! (`--max-object-size`, or for prefetch the size the manifest gives), a compressed one
//! by the frames this program writes (see `frame`), and all downloads of a session
//! together by a [`TempBudget`] on the temporary files they hold at once.

use super::frame::{self, FrameReader};
use super::layout::{self, Fetched, Form, Layout};
use super::refresh::{self, Basis, Refresh};
use super::watch::{Lively, Liveness};
use super::{Direction, Health};
use crate::id::Id;
use crate::local::{Hashing, LocalTier};
use crate::random::Rng;
use crate::s3::client::{Bounds, Client, ObjectInfo};
use crate::s3::error::S3Error;
use crate::server::Lookup;
use crate::stats::{self, Stats};
use std::io::{self, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// The temporary files downloads hold at once, bounded for the whole session: a store
/// that sends what it claims, however much, fills at most `limit` bytes of disk.
#[derive(Debug)]
pub struct TempBudget {
    limit: u64,
    used: AtomicU64,
    peak: AtomicU64,
}

impl TempBudget {
    /// A budget of `limit` bytes.
    pub fn new(limit: u64) -> TempBudget {
        TempBudget { limit, used: AtomicU64::new(0), peak: AtomicU64::new(0) }
    }

    /// The most bytes held at once so far.
    pub fn peak(&self) -> u64 {
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
pub struct Downloaded {
    pub lookup: Lookup,
    /// Bytes a hit moved over the network.
    pub moved: u64,
    /// The object to refresh, when its date is older than `--refresh-after`.
    pub stale: Option<Refresh>,
    /// The bucket has no usable object for the action (none, or a bad one), as opposed
    /// to a download that failed or was cut short.
    pub absent: bool,
}

/// What a download needs.
pub struct Downloader<'a> {
    pub client: &'a Client,
    pub layout: &'a Layout,
    pub local: &'a LocalTier,
    pub stats: &'a Stats,
    pub health: &'a Health,
    pub liveness: &'a Liveness,
    pub temp: &'a TempBudget,
    /// Hits on objects dated longer ago are handed back for a refresh.
    pub refresh_after: Option<Duration>,
}

impl Downloader<'_> {
    /// Fetches `action` within `bounds` (`max_body`: the most output bytes) in the first
    /// of `forms` the bucket has, and stores it locally. `prefetched` marks the result of
    /// a download that prefetch started.
    pub fn run(&self, action: &Id, forms: &[Form], bounds: Bounds, prefetched: bool, rng: &mut Rng) -> Downloaded {
        let stats = self.stats;
        let started = Instant::now();
        let keep_going = || !self.health.is_switched_off(Direction::Reads);
        let mut key = String::new();
        let mut fetched = Ok((Fetched::NotFound, 0));
        let mut held = Held { budget: self.temp, bytes: 0 };
        for &form in forms {
            key = self.layout.key_in(action, form);
            fetched = self.client.retrier.run(bounds.deadline, rng, &keep_going, || {
                held.reset();
                self.fetch_once(action, &key, form, bounds, &mut held)
            });
            if !matches!(fetched, Ok((Fetched::NotFound, _))) {
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
                    stats::add(&stats.download_ms, started.elapsed().as_millis() as u64);
                    log!(3, "downloaded {key} ({moved} bytes, {} as output) in {:?}", entry.size, started.elapsed());
                    let stale = refresh::is_due(dated, self.refresh_after, self.client.now()).then_some(Refresh {
                        key,
                        action: *action,
                        basis: Basis::Downloaded { metadata, etag },
                    });
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

    /// One GET into a temporary file, then verified against the object's metadata; with
    /// the bytes received. The metadata is checked first: a foreign object's body is not
    /// even read.
    fn fetch_once(
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
