//! Uploads: a bounded queue of stored outputs and a pool of workers that PUT them, in the
//! background. A put from go never waits for the bucket; at the end of the session,
//! [`Uploads::finish`] waits a bounded time for what is still queued.

use super::layout::{self, Form};
use super::listing::Listing;
use super::prefetch::Session;
use super::{lock, pool, Direction, Handles};
use crate::id::Id;
use crate::local::entry::Entry;
use crate::local::{Hashing, TempFile};
use crate::s3::client::{Bounds, Upload as Sent};
use crate::stats::{self, human_bytes};
use std::fs::File;
use std::io::{self, BufWriter};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// After this long, the end of a session tells the user what it is waiting for.
const PROGRESS_AFTER: Duration = Duration::from_secs(2);

/// One stored output to upload.
struct Upload {
    action: Id,
    entry: Entry,
    path: PathBuf,
    /// Queued as the probe of switched-off uploads.
    probe: bool,
}

/// The upload side of the remote tier.
pub(super) struct Uploads {
    worker: Arc<Worker>,
    sender: Mutex<Option<SyncSender<Upload>>>,
}

/// What the upload threads share.
struct Worker {
    handles: Handles,
    listing: Arc<Listing>,
    /// What the session used, when it keeps a manifest (an upload is a use).
    session: Option<Arc<Session>>,
    /// The form uploads are written in.
    write_form: Form,
    max_object_size: u64,
    progress: Progress,
}

/// Uploads queued and not done, and a signal when that changes.
#[derive(Default)]
struct Progress {
    /// (uploads, bytes) not done yet.
    pending: Mutex<(u64, u64)>,
    changed: Condvar,
    /// Set when the end of the session gave up waiting: what is left is skipped.
    abandon: AtomicBool,
}

impl Progress {
    fn add(&self, size: u64) {
        let mut pending = lock(&self.pending);
        pending.0 += 1;
        pending.1 += size;
    }

    fn done(&self, size: u64) {
        let mut pending = lock(&self.pending);
        pending.0 -= 1;
        pending.1 -= size;
        drop(pending);
        self.changed.notify_all();
    }
}

impl Uploads {
    /// Starts `workers` upload threads behind a queue of at most `queue_len` uploads,
    /// written in `settings.0`, none larger than `settings.1` (`--max-object-size`).
    pub(super) fn start(
        handles: &Handles,
        listing: &Arc<Listing>,
        session: Option<Arc<Session>>,
        settings: (Form, u64),
        workers: usize,
        queue_len: usize,
    ) -> Uploads {
        let (sender, receiver) = mpsc::sync_channel::<Upload>(queue_len);
        let receiver = Arc::new(Mutex::new(receiver));
        let (write_form, max_object_size) = settings;
        let worker = Arc::new(Worker {
            handles: handles.clone(),
            listing: Arc::clone(listing),
            session,
            write_form,
            max_object_size,
            progress: Progress::default(),
        });
        let threads = Arc::clone(&worker);
        pool::spawn("upload", workers, move || threads.work(&receiver));
        Uploads { worker, sender: Mutex::new(Some(sender)) }
    }

    /// Queues an upload; never blocks. A full queue or a switched-off bucket skips it.
    pub(super) fn push(&self, action: Id, entry: Entry, path: PathBuf) {
        let Handles { stats, health, .. } = &self.worker.handles;
        if health.is_off(Direction::Writes) {
            stats::inc(&stats.uploads_skipped);
            return;
        }
        // Granted while switched off: this upload is the probe.
        let probe = health.is_switched_off(Direction::Writes);
        let progress = &self.worker.progress;
        progress.add(entry.size);
        let size = entry.size;
        let sent = match lock(&self.sender).as_ref() {
            Some(tx) => match tx.try_send(Upload { action, entry, path, probe }) {
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
            stats::inc(&stats.uploads_skipped);
            progress.done(size);
        }
    }

    /// Stops taking uploads and waits up to `bound` for the queued ones, telling the user
    /// on stderr when that takes a while. What is left after `bound` is skipped.
    pub(super) fn finish(&self, bound: Duration) {
        lock(&self.sender).take();
        let progress = &self.worker.progress;
        let start = Instant::now();
        let mut next_progress = PROGRESS_AFTER;
        let mut pending = lock(&progress.pending);
        while pending.0 > 0 {
            let waited = start.elapsed();
            if waited >= bound {
                // Counted here, once: the workers skip what is left without counting it.
                progress.abandon.store(true, Ordering::Relaxed);
                stats::add(&self.worker.handles.stats.uploads_skipped, pending.0);
                log!(
                    0,
                    "gave up on {} uploads after --close-timeout {:?}; those outputs stay in the local cache only",
                    pending.0,
                    bound
                );
                return;
            }
            if waited >= next_progress {
                log!(
                    0,
                    "waiting for {} uploads ({}) to reach the bucket (at most {}s more)",
                    pending.0,
                    human_bytes(pending.1),
                    bound.saturating_sub(waited).as_secs()
                );
                next_progress = waited + Duration::from_secs(10);
            }
            let wake = bound.min(next_progress).saturating_sub(waited);
            pending = progress.changed.wait_timeout(pending, wake).unwrap_or_else(|p| p.into_inner()).0;
        }
    }
}

impl Worker {
    fn work(&self, receiver: &Mutex<Receiver<Upload>>) {
        loop {
            let job = match lock(receiver).recv() {
                Ok(job) => job,
                Err(_) => return,
            };
            if !self.progress.abandon.load(Ordering::Relaxed) {
                self.upload(&job);
            }
            self.progress.done(job.entry.size);
        }
    }

    fn upload(&self, job: &Upload) {
        let Handles { client, layout, stats, health, .. } = &self.handles;
        if !job.probe && health.is_switched_off(Direction::Writes) {
            stats::inc(&stats.uploads_skipped);
            return;
        }
        if client.credentials().is_none() {
            // Anonymous (--no-sign-request, or the chain found nothing): reads only.
            stats::inc(&stats.uploads_skipped);
            return;
        }
        if job.entry.size > self.max_object_size {
            // No download would accept it.
            stats::inc(&stats.uploads_skipped);
            log!(2, "not uploading action {}: its {} bytes are over --max-object-size", job.action, job.entry.size);
            return;
        }
        let metadata = layout::metadata(&job.action, &job.entry);
        let metadata: Vec<(&str, &str)> = metadata.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let size = job.entry.size;
        let started = Instant::now();
        // A fast-missed output may have been uploaded by another machine since the
        // listing: create-only (If-None-Match: *) tells, where the store honours it, at
        // no extra cost.
        let if_absent = self.listing.was_fast_missed(&job.action);
        // The body as sent: the output file itself, or an LZ4 frame of it (in memory, or
        // in a temporary file for large outputs); its length and hex SHA-256.
        let plain = || Body::File { path: job.path.clone(), compressed: None };
        let body = match self.write_form {
            Form::Plain => plain(),
            Form::Lz4 => match compress(&self.handles, &job.path, size) {
                // Readers refuse frames that expand beyond the ratio: such an output goes plain.
                Ok(body) if !super::frame::fits_ratio(size, body.len().unwrap_or(size)) => plain(),
                Ok(body) => body,
                Err(e) => {
                    stats::inc(&stats.upload_errors);
                    log!(0, "cannot compress {} for upload: {e}", job.path.display());
                    return;
                }
            },
        };
        let form = if body.len().is_some() { Form::Lz4 } else { Form::Plain };
        let key = layout.key_in(&job.action, form);
        let (sent, length, sha) = match &body {
            Body::Memory { bytes, sha } => (Sent::Bytes(bytes), bytes.len() as u64, sha.hex()),
            Body::File { path, compressed: Some((_, length, sha)) } => {
                (Sent::File { path, size: *length }, *length, sha.hex())
            }
            Body::File { path, compressed: None } => (Sent::File { path, size }, size, job.entry.output_id.hex()),
        };
        match client.put_object_if(&key, sent, &sha, &metadata, Bounds::DEFAULT, if_absent) {
            Ok(false) => {
                health.success(Direction::Writes);
                stats::inc(&stats.fast_misses_present);
                log!(3, "{key}: uploaded by someone else since the listing; kept theirs");
            }
            Ok(true) => {
                health.success(Direction::Writes);
                if let Some(session) = &self.session {
                    // The session used it, and the bucket now has it.
                    session.used(&job.action, &job.entry);
                }
                stats::inc(&stats.uploads);
                stats::add(&stats.bytes_uploaded, length);
                stats::add(&stats.upload_ms, started.elapsed().as_millis() as u64);
                log!(3, "uploaded {key} ({size} bytes)");
            }
            Err(e) => {
                health.failure(Direction::Writes, &e, stats);
                stats::inc(&stats.upload_errors);
                if e.is_timeout() {
                    stats::inc(&stats.timeouts);
                }
                log!(2, "upload failed: {e}");
            }
        }
    }
}

/// What an upload sends.
enum Body {
    /// A compressed output, small enough to keep in memory, and its SHA-256.
    Memory { bytes: Vec<u8>, sha: Id },
    /// A file: the output itself, or a temporary file holding its compressed form (`compressed`),
    /// with the length and SHA-256 of that (removed once the upload is done).
    File { path: PathBuf, compressed: Option<(TempFile, u64, Id)> },
}

impl Body {
    /// The length of the compressed form (`None`: the output as it is).
    fn len(&self) -> Option<u64> {
        match self {
            Body::Memory { bytes, .. } => Some(bytes.len() as u64),
            Body::File { compressed, .. } => compressed.as_ref().map(|(_, length, _)| *length),
        }
    }
}

/// Outputs up to this size are compressed in memory (at most `--workers` of them at a
/// time); larger ones into a temporary file. Nine outputs in ten are smaller, and every
/// temporary file costs an inode created and deleted.
const IN_MEMORY: u64 = 256 * 1024;

/// An LZ4 frame of the `size` bytes of the file at `path`, with its SHA-256 (the upload's
/// payload hash).
fn compress(handles: &Handles, path: &Path, size: u64) -> Result<Body, String> {
    let mut input = File::open(path).map_err(|e| e.to_string())?;
    if size <= IN_MEMORY {
        let mut encoder = super::frame::encoder(Hashing::new(Vec::with_capacity(size as usize / 2 + 64)));
        io::copy(&mut input, &mut encoder).map_err(|e| e.to_string())?;
        let (bytes, sha, _) = encoder.finish().map_err(|e| e.to_string())?.finish();
        return Ok(Body::Memory { bytes, sha });
    }
    let temp = handles.local.temp_file().map_err(|e| e.to_string())?;
    let mut encoder = super::frame::encoder(Hashing::new(BufWriter::with_capacity(64 * 1024, temp)));
    io::copy(&mut input, &mut encoder).map_err(|e| e.to_string())?;
    let hashing = encoder.finish().map_err(|e| e.to_string())?;
    let (buffered, sha, length) = hashing.finish();
    let temp = buffered.into_inner().map_err(|e| e.error().to_string())?;
    Ok(Body::File { path: temp.path().to_path_buf(), compressed: Some((temp, length, sha)) })
}
