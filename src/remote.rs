//! The bucket tier: a download pool that answers local misses, an upload pool fed by a
//! bounded queue, and a breaker that switches the bucket off for the session after
//! repeated failures. A remote problem is never the build's problem: every failure
//! becomes a miss or a skipped upload, and every request is bounded by timeouts.
//!
//! Object layout (the original Go program's, so buckets are shared with it): key
//! `<prefix>/<actionID hex>`, body = the output bytes, metadata `x-amz-meta-outputid:
//! <outputID hex>`, plus `x-amz-meta-puttime: <unix nanos>` so go's test-cache expiry
//! survives the round trip (objects without it use `Last-Modified`).

use crate::config::RemoteConfig;
use crate::entry::Entry;
use crate::id::Id;
use crate::local::{LocalTier, TempFile};
use crate::protocol::{Responder, Response};
use crate::s3::client::{Client, ClientConfig, ObjectInfo};
use crate::s3::error::S3Error;
use crate::server::RemoteTier;
use crate::stats::{self, human_bytes, Stats};
use sha2::{Digest, Sha256};
use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant, SystemTime};

/// Attempts per object for transient failures (the SDKs' standard mode).
const ATTEMPTS: u32 = 3;

/// After this long, close tells the user what it is waiting for.
const PROGRESS_AFTER: Duration = Duration::from_secs(2);

/// The pieces the remote tier shares with the rest of the program.
pub struct Shared {
    pub local: Arc<LocalTier>,
    pub stats: Arc<Stats>,
    pub responder: Arc<Responder>,
}

struct Inner {
    client: Client,
    prefix: String,
    shared: Shared,
    health: Health,
    pending_uploads: AtomicU64,
    pending_bytes: AtomicU64,
    /// Set when close gave up waiting: queued uploads are then skipped.
    abandon: AtomicBool,
}

struct Download {
    request_id: i64,
    action: Id,
}

struct Upload {
    action: Id,
    entry: Entry,
    path: PathBuf,
}

/// The running remote tier.
pub struct Remote {
    inner: Arc<Inner>,
    downloads: Mutex<Option<SyncSender<Download>>>,
    uploads: Mutex<Option<SyncSender<Upload>>>,
    read_only: bool,
}

impl Remote {
    /// Starts the worker pools. Nothing touches the network until the first request.
    pub fn start(config: &RemoteConfig, shared: Shared) -> Remote {
        let client = Client::new(ClientConfig {
            endpoint: config.endpoint.clone(),
            addressing: config.addressing,
            bucket: config.bucket.clone(),
            region: config.region.clone(),
            credentials: config.credentials.clone(),
            timeout: config.timeout,
            connect_timeout: config.connect_timeout,
            pool_size: config.workers * 2,
        });
        let inner = Arc::new(Inner {
            client,
            prefix: config.prefix.clone(),
            shared,
            health: Health {
                consecutive: AtomicU32::new(0),
                disabled: AtomicBool::new(false),
                max: config.max_failures,
            },
            pending_uploads: AtomicU64::new(0),
            pending_bytes: AtomicU64::new(0),
            abandon: AtomicBool::new(false),
        });
        // go keeps about -p+1 gets in flight, so this queue never really fills.
        let (download_tx, download_rx) = mpsc::sync_channel::<Download>(4096);
        spawn_pool("download", config.workers, download_rx, &inner, Inner::download);
        let uploads = if config.read_only {
            None
        } else {
            let (upload_tx, upload_rx) = mpsc::sync_channel::<Upload>(config.queue_len);
            spawn_pool("upload", config.workers, upload_rx, &inner, Inner::upload);
            Some(upload_tx)
        };
        Remote {
            inner,
            downloads: Mutex::new(Some(download_tx)),
            uploads: Mutex::new(uploads),
            read_only: config.read_only,
        }
    }

    /// Stops taking work and waits up to `bound` for queued uploads, telling the user on
    /// stderr when that takes a while. What is left after `bound` is skipped.
    pub fn finish(&self, bound: Duration) {
        lock(&self.downloads).take();
        lock(&self.uploads).take();
        let inner = &self.inner;
        let start = Instant::now();
        let mut next_progress = PROGRESS_AFTER;
        while inner.pending_uploads.load(Ordering::Relaxed) > 0 {
            let waited = start.elapsed();
            if waited >= bound {
                // Counted here, once: the workers skip what is left without counting it.
                inner.abandon.store(true, Ordering::Relaxed);
                let left = inner.pending_uploads.load(Ordering::Relaxed);
                stats::add(&inner.shared.stats.uploads_skipped, left);
                log!(
                    0,
                    "gave up on {left} uploads after --close-timeout {:?}; those outputs stay in the local cache only",
                    bound
                );
                return;
            }
            if waited >= next_progress {
                log!(
                    0,
                    "waiting for {} uploads ({}) to reach the bucket (at most {}s more)",
                    inner.pending_uploads.load(Ordering::Relaxed),
                    human_bytes(inner.pending_bytes.load(Ordering::Relaxed)),
                    bound.saturating_sub(waited).as_secs()
                );
                next_progress = waited + Duration::from_secs(10);
            }
            thread::sleep(Duration::from_millis(5));
        }
    }
}

impl RemoteTier for Remote {
    fn fetch(&self, request_id: i64, action: Id) {
        let stats = &self.inner.shared.stats;
        if !self.inner.health.disabled() {
            if let Some(tx) = lock(&self.downloads).as_ref() {
                if tx.try_send(Download { request_id, action }).is_ok() {
                    return;
                }
            }
        }
        stats::inc(&stats.misses);
        self.inner.shared.responder.send(&Response::miss(request_id));
    }

    fn upload(&self, action: Id, entry: Entry, path: PathBuf) {
        if self.read_only {
            return;
        }
        let inner = &self.inner;
        if inner.health.disabled() {
            stats::inc(&inner.shared.stats.uploads_skipped);
            return;
        }
        inner.pending_uploads.fetch_add(1, Ordering::Relaxed);
        inner.pending_bytes.fetch_add(entry.size, Ordering::Relaxed);
        let size = entry.size;
        let sent = match lock(&self.uploads).as_ref() {
            Some(tx) => match tx.try_send(Upload { action, entry, path }) {
                Ok(()) => true,
                Err(TrySendError::Full(_)) => {
                    log!(2, "upload queue full (--queue-len); skipping upload of action {action}");
                    false
                }
                Err(TrySendError::Disconnected(_)) => false,
            },
            None => false,
        };
        if !sent {
            stats::inc(&inner.shared.stats.uploads_skipped);
            inner.upload_done(size);
        }
    }
}

fn spawn_pool<T: Send + 'static>(name: &str, workers: usize, rx: Receiver<T>, inner: &Arc<Inner>, work: fn(&Inner, T)) {
    let rx = Arc::new(Mutex::new(rx));
    for n in 0..workers {
        let rx = Arc::clone(&rx);
        let inner = Arc::clone(inner);
        let spawned = thread::Builder::new().name(format!("{name}-{n}")).spawn(move || loop {
            let job = match lock(&rx).recv() {
                Ok(job) => job,
                Err(_) => return,
            };
            work(&inner, job);
        });
        if let Err(e) = spawned {
            log!(0, "cannot start {name} worker {n}: {e}; continuing with fewer");
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// What one lookup in the bucket found.
enum Fetched {
    Hit { entry: Entry, temp: TempFile },
    NotFound,
    Bad(String),
}

impl Inner {
    fn key(&self, action: &Id) -> String {
        if self.prefix.is_empty() {
            action.hex()
        } else {
            format!("{}/{}", self.prefix, action.hex())
        }
    }

    fn download(&self, job: Download) {
        let stats = &self.shared.stats;
        let responder = &self.shared.responder;
        let miss = || {
            stats::inc(&stats.misses);
            responder.send(&Response::miss(job.request_id));
        };
        if self.health.disabled() {
            return miss();
        }
        let key = self.key(&job.action);
        let started = Instant::now();
        let fetched = self.with_retries(|| self.fetch_once(&key));
        match fetched {
            Ok(Fetched::Hit { entry, temp }) => match self.shared.local.store(&job.action, &entry, temp) {
                Ok(path) => {
                    stats::inc(&stats.remote_hits);
                    stats::add(&stats.bytes_downloaded, entry.size);
                    stats::add(&stats.download_ms, started.elapsed().as_millis() as u64);
                    log!(3, "downloaded {key} ({} bytes) in {:?}", entry.size, started.elapsed());
                    let response = Response::hit(job.request_id, entry.output_id, entry.size, entry.time_nanos, &path);
                    responder.send(&response);
                }
                Err(e) => {
                    stats::inc(&stats.get_errors);
                    log!(0, "storing downloaded {key} locally failed: {e}");
                    miss();
                }
            },
            Ok(Fetched::NotFound) => {
                log!(3, "{key}: not in the bucket");
                stats::inc(&stats.remote_not_found);
                miss();
            }
            Ok(Fetched::Bad(why)) => {
                stats::inc(&stats.remote_bad_objects);
                stats::inc(&stats.get_errors);
                log!(1, "ignoring object {key} from the bucket: {why}; go will rebuild it");
                miss();
            }
            Err(e) => {
                stats::inc(&stats.remote_get_errors);
                stats::inc(&stats.get_errors);
                log!(2, "download failed: {e}");
                miss();
            }
        }
    }

    /// One GET, streamed into a temporary file while hashing, then checked against the
    /// object's metadata: only a body whose size and SHA-256 match its OutputID is a hit.
    fn fetch_once(&self, key: &str) -> Result<Fetched, S3Error> {
        let op = || format!("GET {key}");
        let temp =
            self.shared.local.temp_file().map_err(|e| S3Error::Sink { op: op(), source: io::Error::other(e) })?;
        let mut writer = Hashing { inner: BufWriter::with_capacity(256 * 1024, temp), hasher: Sha256::new(), len: 0 };
        let info = match self.client.get_object(key, &mut writer) {
            Ok(Some(info)) => info,
            Ok(None) => return Ok(Fetched::NotFound),
            Err(e) if e.is_access_denied() => return Ok(Fetched::NotFound),
            Err(e) => return Err(e),
        };
        let Hashing { inner, hasher, len } = writer;
        let temp = inner.into_inner().map_err(|e| S3Error::Sink { op: op(), source: e.into_error() })?;
        Ok(verify(&info, Id(hasher.finalize().into()), len, temp))
    }

    fn upload(&self, job: Upload) {
        let stats = &self.shared.stats;
        let size = job.entry.size;
        if self.abandon.load(Ordering::Relaxed) {
            return self.upload_done(size);
        }
        if self.health.disabled() {
            stats::inc(&stats.uploads_skipped);
            return self.upload_done(size);
        }
        let key = self.key(&job.action);
        let output_hex = job.entry.output_id.hex();
        let put_time = job.entry.time_nanos.to_string();
        let metadata = [("outputid", output_hex.as_str()), ("puttime", put_time.as_str())];
        let started = Instant::now();
        let result = self.with_retries(|| {
            let mut file = File::open(&job.path).map_err(|e| S3Error::Sink { op: format!("PUT {key}"), source: e })?;
            self.client.put_object(&key, &mut file, size, &output_hex, &metadata)
        });
        match result {
            Ok(()) => {
                stats::inc(&stats.uploads);
                stats::add(&stats.bytes_uploaded, size);
                stats::add(&stats.upload_ms, started.elapsed().as_millis() as u64);
                log!(3, "uploaded {key} ({size} bytes)");
            }
            Err(e) => {
                stats::inc(&stats.upload_errors);
                log!(2, "upload failed: {e}");
            }
        }
        self.upload_done(size);
    }

    fn upload_done(&self, size: u64) {
        self.pending_bytes.fetch_sub(size, Ordering::Relaxed);
        self.pending_uploads.fetch_sub(1, Ordering::Relaxed);
    }

    /// Runs `op` up to [`ATTEMPTS`] times while it fails transiently, with jittered
    /// backoff, and reports the outcome to the breaker.
    fn with_retries<T>(&self, mut op: impl FnMut() -> Result<T, S3Error>) -> Result<T, S3Error> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            match op() {
                Ok(v) => {
                    self.health.success();
                    return Ok(v);
                }
                Err(e) if e.is_transient() && attempt < ATTEMPTS && !self.health.disabled() => {
                    log!(3, "{e}; retrying");
                    thread::sleep(backoff(attempt));
                }
                Err(e) => {
                    // A local disk problem says nothing about the bucket's health.
                    if !matches!(e, S3Error::Sink { .. }) {
                        self.health.failure(&e, &self.shared.stats);
                    }
                    return Err(e);
                }
            }
        }
    }
}

fn verify(info: &ObjectInfo, digest: Id, len: u64, temp: TempFile) -> Fetched {
    let Some(output_id) = info.meta("outputid").and_then(Id::from_hex) else {
        return Fetched::Bad("no valid x-amz-meta-outputid".into());
    };
    if len != info.size {
        return Fetched::Bad(format!("body is {len} bytes, Content-Length said {}", info.size));
    }
    if digest != output_id {
        return Fetched::Bad(format!("body hashes to {digest}, not its outputid {output_id}"));
    }
    let time_nanos = info
        .meta("puttime")
        .and_then(|t| t.trim().parse::<i64>().ok())
        .or_else(|| info.last_modified.map(crate::clock::unix_nanos))
        .unwrap_or_else(|| crate::clock::unix_nanos(SystemTime::now()));
    Fetched::Hit { entry: Entry { output_id, size: len, time_nanos }, temp }
}

/// Jittered exponential backoff: uniform in [0, min(100ms·2^(n-1), 2s)].
fn backoff(attempt: u32) -> Duration {
    let cap = Duration::from_millis(100u64 << attempt.saturating_sub(1).min(5)).min(Duration::from_secs(2));
    let seed = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
    let mut x = u64::from(seed) ^ 0x9e37_79b9_7f4a_7c15;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    cap.mul_f64((x % 1000) as f64 / 1000.0)
}

/// Consecutive failures, and whether the bucket has been switched off.
struct Health {
    consecutive: AtomicU32,
    disabled: AtomicBool,
    max: u32,
}

impl Health {
    fn disabled(&self) -> bool {
        self.disabled.load(Ordering::Relaxed)
    }

    fn success(&self) {
        self.consecutive.store(0, Ordering::Relaxed);
    }

    /// Counts a failure; switches the bucket off after `max` in a row, or at once for
    /// errors that only a configuration change can fix.
    fn failure(&self, error: &S3Error, stats: &Stats) {
        let count = self.consecutive.fetch_add(1, Ordering::Relaxed) + 1;
        let fatal = is_configuration_error(error);
        if (fatal || count >= self.max) && !self.disabled.swap(true, Ordering::Relaxed) {
            stats::inc(&stats.remote_disabled);
            let why = if fatal { "a request failed".to_string() } else { format!("{count} requests in a row failed") };
            let hint = error.hint().map(|h| format!(" To fix: {h}.")).unwrap_or_default();
            log!(
                0,
                "bucket switched off for this session because {why}: {error}.{hint} The build continues with the local cache only."
            );
        }
    }
}

fn is_configuration_error(error: &S3Error) -> bool {
    matches!(
        error.code(),
        Some(
            "SignatureDoesNotMatch"
                | "InvalidAccessKeyId"
                | "NoSuchBucket"
                | "AuthorizationHeaderMalformed"
                | "PermanentRedirect"
                | "InvalidToken"
                | "ExpiredToken"
                | "RequestTimeTooSkewed"
                | "InvalidBucketName"
        )
    ) || error.status() == Some(301)
}

/// Hashes and counts what it writes through.
struct Hashing {
    inner: BufWriter<TempFile>,
    hasher: Sha256,
    len: u64,
}

impl Write for Hashing {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.len += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_is_bounded() {
        for attempt in 1..10 {
            assert!(backoff(attempt) <= Duration::from_secs(2));
        }
        assert!(backoff(1) <= Duration::from_millis(100));
    }

    #[test]
    fn breaker_trips_after_max_or_at_once_for_configuration_errors() {
        let stats = Stats::new();
        let health = Health { consecutive: AtomicU32::new(0), disabled: AtomicBool::new(false), max: 3 };
        let refused = S3Error::Transport { op: "GET k".into(), timeout: false, message: "connection refused".into() };
        health.failure(&refused, &stats);
        health.failure(&refused, &stats);
        health.success();
        health.failure(&refused, &stats);
        health.failure(&refused, &stats);
        assert!(!health.disabled());
        health.failure(&refused, &stats);
        assert!(health.disabled());
        assert_eq!(stats.remote_disabled.load(Ordering::Relaxed), 1);

        let health = Health { consecutive: AtomicU32::new(0), disabled: AtomicBool::new(false), max: 3 };
        let bad_key = S3Error::Status {
            op: "GET k".into(),
            status: 403,
            doc: Box::new(crate::s3::xml::ErrorDoc { code: Some("InvalidAccessKeyId".into()), ..Default::default() }),
        };
        health.failure(&bad_key, &stats);
        assert!(health.disabled());
    }
}
