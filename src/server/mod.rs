//! The request loop and the one place that answers go: reads go's requests in order,
//! answers local hits inline (no thread hand-off), streams put bodies into the local tier,
//! and hands local misses to the remote tier, whose lookup results it turns into
//! responses. Every get is answered exactly once, within `--get-timeout` of its arrival
//! (a slower bucket answer is dropped and the get is a miss), and all of them before the
//! reply to close.

mod pending;

use self::pending::PendingGets;
use crate::id::Id;
use crate::local::entry::Entry;
use crate::local::{Hashing, Hit, LocalTier, TempFile};
use crate::protocol::{BodyError, Command, RequestReader, Responder, Response, StreamError};
use crate::stats::{self, Stats};
use std::fmt;
use std::io::{self, BufRead, BufWriter};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What a lookup in the bucket came to, for whoever waits on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Lookup {
    /// Downloaded, verified and now in the local tier. `prefetched`: by a download that
    /// prefetch started before go asked.
    Hit { hit: Hit, prefetched: bool },
    /// Not usable from the bucket; `failed` when that was a failure rather than absence.
    Miss { failed: bool },
}

/// Receives the result of a lookup, once, on any thread.
pub(crate) type Waiter = Box<dyn FnOnce(&Lookup) + Send>;

/// What the bucket side offers the request loop.
pub(crate) trait RemoteTier: Send + Sync {
    /// Looks `action` up remotely; `done` is called exactly once with the result, now or
    /// later, from any thread.
    fn lookup(&self, action: Id, done: Waiter);
    /// Queues a stored output for upload; never blocks on the network.
    fn upload(&self, action: Id, entry: Entry, path: PathBuf);
    /// A get was answered from the local tier (for the working-set manifest); true if
    /// this session's prefetch had put that output there.
    fn local_hit(&self, action: &Id, entry: &Entry) -> bool;
}

/// How the session ended.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum End {
    /// go sent close with this request ID; it is answered once the caller has finished.
    Close(i64),
    /// Input ended without close.
    Eof,
}

/// Everything the loop needs.
pub(crate) struct Server {
    local: Arc<LocalTier>,
    remote: Option<Arc<dyn RemoteTier>>,
    stats: Arc<Stats>,
    responder: Arc<Responder>,
    pending: Arc<PendingGets>,
    get_timeout: Duration,
    /// Set once a local disk failure has been reported.
    disk_failure_told: AtomicBool,
}

/// Why a put's body is not stored: the local disk failed (every put fails alike until it
/// is fixed: said once), or go's request does not hold together (said for each).
enum PutError {
    Disk(String),
    Input(String),
}

impl PutError {
    fn disk(e: impl fmt::Display) -> PutError {
        PutError::Disk(format!("local disk failure: {e}"))
    }
}

/// Time between a get's deadline and the watchdog's answer: the download's own deadline
/// is the same instant, so its miss normally arrives first.
const WATCHDOG_SLACK: Duration = Duration::from_millis(200);

impl Server {
    /// A server over the local tier and, optionally, the bucket, whose gets wait at most
    /// `get_timeout` for it.
    pub(crate) fn new(
        local: Arc<LocalTier>,
        remote: Option<Arc<dyn RemoteTier>>,
        stats: Arc<Stats>,
        responder: Arc<Responder>,
        get_timeout: Duration,
    ) -> Server {
        Server {
            local,
            remote,
            stats,
            responder,
            pending: Arc::default(),
            get_timeout,
            disk_failure_told: AtomicBool::new(false),
        }
    }

    /// Serves requests until close or end of input, then waits until every get has been
    /// answered. An error means the stream could not be followed any more.
    pub(crate) fn run<R: BufRead>(&self, reader: &mut RequestReader<R>) -> Result<End, StreamError> {
        let watchdog = self.remote.is_some().then(|| self.start_watchdog());
        let end = self.serve(reader);
        self.wait_for_gets();
        stats::add(&self.stats.bucket_hold_ms, self.pending.busy_time().as_millis() as u64);
        if let Some(stop) = watchdog {
            stop();
        }
        end
    }

    fn serve<R: BufRead>(&self, reader: &mut RequestReader<R>) -> Result<End, StreamError> {
        while let Some(incoming) = reader.next_request()? {
            let id = incoming.id;
            match incoming.command {
                Ok(Command::Get { action }) => self.get(id, action),
                Ok(Command::Put { action, output, body_size }) => self.put(reader, id, action, output, body_size)?,
                Ok(Command::Close) => return Ok(End::Close(id)),
                Err(problem) => {
                    if incoming.body_size > 0 {
                        reader.read_body(id, &mut io::sink())?.ok();
                    }
                    log!(0, "request {id} rejected: {problem}");
                    self.responder.send(&Response::error(id, problem));
                }
            }
        }
        Ok(End::Eof)
    }

    fn get(&self, id: i64, action: Id) {
        stats::inc(&self.stats.gets);
        match self.local.get(&action) {
            Ok(Some(hit)) => {
                if self.remote.as_ref().is_some_and(|r| r.local_hit(&action, &hit.entry)) {
                    // Local only because prefetch fetched it moments ago: from the bucket.
                    stats::inc(&self.stats.remote_hits);
                    stats::inc(&self.stats.prefetch_hits);
                } else {
                    stats::inc(&self.stats.local_hits);
                }
                stats::add(&self.stats.bytes_read_local, hit.entry.size);
                self.responder.send(&hit_response(id, &hit));
                return;
            }
            Ok(None) => {}
            Err(e) => {
                stats::inc(&self.stats.get_errors);
                log!(0, "local cache lookup of action {action} failed, treating it as a miss: {e}");
            }
        }
        let Some(remote) = &self.remote else {
            log!(3, "get {id}: action {action} missed");
            stats::inc(&self.stats.misses);
            self.responder.send(&Response::miss(id));
            return;
        };
        self.pending.add(id, Instant::now() + self.get_timeout + WATCHDOG_SLACK);
        let (pending, stats, responder) =
            (Arc::clone(&self.pending), Arc::clone(&self.stats), Arc::clone(&self.responder));
        let asked = Instant::now();
        remote.lookup(
            action,
            Box::new(move |result: &Lookup| {
                let Some(_answering) = pending.claim(id) else {
                    return; // already answered as a miss at its deadline
                };
                stats::add(&stats.bucket_wait_ms, asked.elapsed().as_millis() as u64);
                match result {
                    Lookup::Hit { hit, prefetched } => {
                        stats::inc(&stats.remote_hits);
                        if *prefetched {
                            stats::inc(&stats.prefetch_hits);
                            stats::inc(&stats.prefetch_joined);
                        }
                        responder.send(&hit_response(id, hit));
                    }
                    Lookup::Miss { failed } => {
                        stats::inc(&stats.misses);
                        if *failed {
                            stats::inc(&stats.get_errors);
                        }
                        responder.send(&Response::miss(id));
                    }
                }
            }),
        );
    }

    /// Answers gets still waiting at their deadline with a miss; returns the function that
    /// stops it.
    fn start_watchdog(&self) -> impl FnOnce() + use<'_> {
        let (pending, stats, responder) =
            (Arc::clone(&self.pending), Arc::clone(&self.stats), Arc::clone(&self.responder));
        let spawned = std::thread::Builder::new().name("get-deadlines".into()).spawn(move || {
            pending.watch(&|id| {
                log!(2, "get {id}: the bucket took longer than --get-timeout; answered as a miss");
                stats::inc(&stats.misses);
                stats::inc(&stats.get_timeouts);
                responder.send(&Response::miss(id));
            })
        });
        if let Err(e) = &spawned {
            log!(0, "cannot start the get deadline watchdog: {e}; slow bucket answers are not cut short");
        }
        move || {
            self.pending.stop();
            if let Ok(handle) = spawned {
                let _ = handle.join();
            }
        }
    }

    /// Blocks until every get has been answered (each is bounded by its deadline).
    fn wait_for_gets(&self) {
        if !self.pending.wait_idle(self.get_timeout + WATCHDOG_SLACK * 5) {
            log!(0, "some gets were still unanswered at the end of the session");
        }
    }

    fn put<R: BufRead>(
        &self,
        reader: &mut RequestReader<R>,
        id: i64,
        action: Id,
        output: Id,
        body_size: u64,
    ) -> Result<(), StreamError> {
        stats::inc(&self.stats.puts);
        let stored = match self.receive(reader, id, action, output, body_size)? {
            Ok(temp) => {
                let now = crate::calendar::unix_nanos(std::time::SystemTime::now());
                let entry = Entry { output_id: output, size: body_size, time_nanos: now };
                self.local.store(&action, &entry, temp).map(|path| (entry, path)).map_err(PutError::disk)
            }
            Err(e) => Err(e),
        };
        match stored {
            Ok((entry, path)) => {
                stats::add(&self.stats.bytes_written_local, body_size);
                self.responder.send(&Response::stored(id, &path));
                if let Some(remote) = &self.remote {
                    remote.upload(action, entry, path);
                }
            }
            Err(PutError::Input(message)) => {
                stats::inc(&self.stats.put_errors);
                log!(0, "put request {id}: {message}");
                self.responder.send(&Response::error(id, message));
            }
            Err(PutError::Disk(message)) => {
                stats::inc(&self.stats.put_errors);
                if !self.disk_failure_told.swap(true, Ordering::Relaxed) {
                    // A full disk fails every put: said once, with what to do.
                    log!(
                        0,
                        "put request {id}: {message}; outputs are not cached until the local cache directory {} \
                         can be written again (free space, or set GOCACHE); gets go on (further put failures at -vv)",
                        self.local.dir().display()
                    );
                } else {
                    log!(2, "put request {id}: {message}");
                }
                self.responder.send(&Response::error(id, message));
            }
        }
        Ok(())
    }

    /// Streams the body into a temporary file and checks it against the request; the
    /// inner error says why the body must not be stored (the outer one: the stream broke).
    fn receive<R: BufRead>(
        &self,
        reader: &mut RequestReader<R>,
        id: i64,
        action: Id,
        output: Id,
        body_size: u64,
    ) -> Result<Result<TempFile, PutError>, StreamError> {
        let temp = match self.local.output_file_near(&output) {
            Ok(t) => t,
            Err(e) => {
                if body_size > 0 {
                    reader.read_body(id, &mut io::sink())?.ok();
                }
                return Ok(Err(PutError::disk(e)));
            }
        };
        let mut writer = Hashing::new(BufWriter::with_capacity(256 * 1024, temp));
        let decoded = if body_size > 0 {
            match reader.read_body(id, &mut writer)? {
                Ok(n) => n,
                Err(BodyError::Write(e)) => return Ok(Err(PutError::disk(e))),
                Err(e @ BodyError::Base64(_)) => return Ok(Err(PutError::Input(format!("{e}; not stored")))),
            }
        } else {
            0
        };
        let (inner, digest, _) = writer.finish();
        let temp = match inner.into_inner() {
            Ok(t) => t,
            Err(e) => return Ok(Err(PutError::disk(e.error()))),
        };
        if decoded != body_size {
            return Ok(Err(PutError::Input(format!(
                "body of action {action} is {decoded} bytes but BodySize said {body_size}; not stored"
            ))));
        }
        if digest != output {
            return Ok(Err(PutError::Input(format!(
                "body of action {action} hashes to {digest}, not its OutputID {output}; not stored (go builds it \
                 again when it needs it; if this repeats, report it as a bug with the go version)"
            ))));
        }
        Ok(Ok(temp))
    }
}

fn hit_response(id: i64, hit: &Hit) -> Response {
    let e = &hit.entry;
    Response::hit(id, e.output_id, e.size, e.time_nanos, &hit.path)
}
