//! One download: a GET streamed into a temporary file of the local tier while hashed
//! (decompressed on the way for the compressed form), retried while it fails
//! transiently, verified, and stored locally. The result is a [`Lookup`] for whoever
//! waits on it (go's get, or nobody for a prefetch).

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
use std::io::{self, Read};
use std::time::{Duration, Instant};

/// What a download needs.
pub struct Downloader<'a> {
    pub client: &'a Client,
    pub layout: &'a Layout,
    pub local: &'a LocalTier,
    pub stats: &'a Stats,
    pub health: &'a Health,
    pub liveness: &'a Liveness,
    /// Hits on objects dated longer ago are handed back for a refresh.
    pub refresh_after: Option<Duration>,
}

impl Downloader<'_> {
    /// Fetches `action` within `bounds` in the first of `forms` the bucket has, and
    /// stores it locally; with the result, the bytes a hit moved over the network, and
    /// the object to refresh when its date is older than `refresh_after`.
    /// `prefetched` marks the result of a download that prefetch started.
    pub fn run(
        &self,
        action: &Id,
        forms: &[Form],
        bounds: Bounds,
        prefetched: bool,
        rng: &mut Rng,
    ) -> (Lookup, u64, Option<Refresh>) {
        let stats = self.stats;
        let started = Instant::now();
        let keep_going = || !self.health.is_switched_off(Direction::Reads);
        let mut key = String::new();
        let mut fetched = Ok((Fetched::NotFound, 0));
        for &form in forms {
            key = self.layout.key_in(action, form);
            fetched = self
                .client
                .retrier
                .run(bounds.deadline, rng, &keep_going, || self.fetch_once(action, &key, form, bounds));
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
                    return (Lookup::Hit { hit: crate::local::Hit { entry, path }, prefetched }, moved, stale);
                }
                Err(e) => {
                    log!(0, "storing downloaded {key} locally failed: {e}");
                    Lookup::Miss { failed: true }
                }
            },
            Ok((Fetched::NotFound, _)) => {
                log!(3, "{key}: not in the bucket");
                stats::inc(&stats.remote_not_found);
                Lookup::Miss { failed: false }
            }
            Ok((Fetched::Bad { why, bytes }, _)) => {
                stats::inc(&stats.remote_bad_objects);
                if prefetched {
                    stats::add(&stats.prefetch_wasted_bytes, bytes);
                }
                log!(1, "ignoring object {key} from the bucket: {why}; go will rebuild it");
                Lookup::Miss { failed: true }
            }
            Err(e) if e.is_access_denied() => {
                // S3's answer for a missing key to callers without ListBucket permission.
                log!(3, "{key}: access denied, taken as not in the bucket");
                stats::inc(&stats.remote_not_found);
                Lookup::Miss { failed: false }
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
        (lookup, 0, None)
    }

    /// One GET into a temporary file, then verified against the object's metadata; with
    /// the bytes received. The metadata is checked first: a foreign object's body is not
    /// even read.
    fn fetch_once(&self, action: &Id, key: &str, form: Form, bounds: Bounds) -> Result<(Fetched, u64), S3Error> {
        let op = || format!("GET {key}");
        let sink = |e: io::Error| S3Error::Sink { op: op(), source: e };
        let reading = self.liveness.begin();
        let fetched = self.client.get_object_with(key, bounds, |info, body| {
            self.liveness.alive();
            let mut body = Lively { inner: body, live: self.liveness };
            let body = &mut body;
            if let Err(why) = layout::check_metadata(action, form, info) {
                return Ok((Fetched::Bad { why, bytes: 0 }, 0));
            }
            let temp = self.local.temp_file_near(action).map_err(|e| sink(io::Error::other(e)))?;
            // The client reads in 32 KB pieces: no buffer is needed in between.
            let mut writer = Hashing::new(temp);
            let copied = match form {
                Form::Plain => copy(body, &mut writer),
                Form::Lz4 => {
                    let mut decoded =
                        lz4_flex::frame::FrameDecoder::new(&mut *body).take(bounds.max_body.saturating_add(1));
                    copy(&mut decoded, &mut writer)
                }
            };
            let received = body.inner.received();
            match copied {
                Ok(n) if n > bounds.max_body => Err(S3Error::Oversized { op: op(), size: n, limit: bounds.max_body }),
                Ok(_) => {
                    // The Content-Length of a compressed object is its compressed size: the
                    // decoded length is checked against nothing but the output ID's hash.
                    let size = if form == Form::Plain { info.size } else { None };
                    let info = ObjectInfo { size, ..info.clone() };
                    let (temp, digest, len) = writer.finish();
                    let fetched = match layout::verify(action, form, &info, digest, len, temp) {
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
