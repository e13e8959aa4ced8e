//! Watching the bucket on the build's behalf, on a thread of its own:
//!
//! - **A stalled store.** When the bucket has answered none of the downloads in flight
//!   (not a header, not a byte) for half of `--get-timeout`, it is stalled: reads are
//!   switched off at once, instead of after `--max-failures` gets have each waited out
//!   their whole timeout, and every get still waiting on a download gives up with it.
//! - **Probes that hold no get.** While reads are off, one GET of a key that does not
//!   exist goes out per probe interval from here; its answer (even a 404) switches reads
//!   back on. go's gets are never the probe, so a store that is still down costs a build
//!   nothing more. After a stall the first probe comes as soon as the stall bound, so a
//!   store that only hiccuped is back within seconds.

use super::download::Downloads;
use super::{Direction, Handles};
use crate::s3::client::Bounds;
use crate::server::Lookup;
use std::io;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How often the watcher looks while downloads are in flight or reads are off.
const TICK: Duration = Duration::from_millis(50);

/// The key probes ask for: never an output's, never written.
const PROBE_NAME: &str = "gocacheprog-probe";

/// Downloads in flight and when the store last showed life in any of them.
pub(super) struct Liveness {
    base: Instant,
    outstanding: AtomicUsize,
    /// Milliseconds since `base` of the last sign of life (or of the first download sent
    /// while none was in flight).
    alive_ms: AtomicU64,
}

impl Default for Liveness {
    fn default() -> Self {
        Liveness { base: Instant::now(), outstanding: AtomicUsize::new(0), alive_ms: AtomicU64::new(0) }
    }
}

impl Liveness {
    fn now_ms(&self) -> u64 {
        self.base.elapsed().as_millis() as u64
    }

    /// A download request goes out; `Reading::end` says how it ended.
    pub(super) fn begin(&self) -> Reading<'_> {
        if self.outstanding.fetch_add(1, Ordering::AcqRel) == 0 {
            self.alive_ms.store(self.now_ms(), Ordering::Release);
        }
        Reading { live: self, ended: false }
    }

    /// The store sent something: a response head or body bytes.
    pub(super) fn alive(&self) {
        self.alive_ms.store(self.now_ms(), Ordering::Release);
    }

    /// How long the store has sent nothing while downloads were in flight (`None`: none is).
    pub(super) fn quiet_for(&self) -> Option<Duration> {
        if self.outstanding.load(Ordering::Acquire) == 0 {
            return None;
        }
        let since = self.alive_ms.load(Ordering::Acquire);
        Some(Duration::from_millis(self.now_ms().saturating_sub(since)))
    }
}

/// One download request in flight.
pub(super) struct Reading<'a> {
    live: &'a Liveness,
    ended: bool,
}

impl Reading<'_> {
    /// The request ended; `answered` when the store answered it (any status), rather than
    /// the request timing out.
    pub(super) fn end(mut self, answered: bool) {
        if answered {
            self.live.alive();
        }
        self.ended = true;
        self.live.outstanding.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Drop for Reading<'_> {
    fn drop(&mut self) {
        if !self.ended {
            self.live.outstanding.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

/// A reader that tells `live` of every byte it passes on.
pub(super) struct Lively<'a, R> {
    pub(crate) inner: R,
    pub(crate) live: &'a Liveness,
}

impl<R: io::Read> io::Read for Lively<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if n > 0 {
            self.live.alive();
        }
        Ok(n)
    }
}

/// The watcher: its thread looks at the downloads and the breaker until stopped.
pub(super) struct Watcher {
    handles: Handles,
    downloads: Arc<Downloads>,
    /// Bound on one get from go: a stall is half of it, and a probe gets all of it.
    get_timeout: Duration,
    stop: AtomicBool,
}

impl Watcher {
    /// Starts the watcher's thread.
    pub(super) fn start(handles: &Handles, downloads: &Arc<Downloads>, get_timeout: Duration) -> Arc<Watcher> {
        let watcher = Arc::new(Watcher {
            handles: handles.clone(),
            downloads: Arc::clone(downloads),
            get_timeout,
            stop: AtomicBool::new(false),
        });
        let running = Arc::clone(&watcher);
        let spawned = std::thread::Builder::new().name("bucket-watch".into()).spawn(move || running.run());
        if let Err(e) = spawned {
            log!(0, "cannot start the bucket watcher: {e}; a stalled store costs each get its --get-timeout");
        }
        watcher
    }

    /// Ends the thread (at its next look; a probe under way runs out first, answering nobody).
    pub(super) fn stop(&self) {
        self.stop.store(true, Ordering::Relaxed);
    }

    fn run(&self) {
        let Handles { health, stats, .. } = &self.handles;
        let stall_after = self.get_timeout / 2;
        while !self.stop.load(Ordering::Relaxed) {
            std::thread::sleep(TICK);
            if !health.is_switched_off(Direction::Reads) {
                match self.downloads.quiet_for() {
                    Some(quiet) if quiet >= stall_after => health.stalled(Direction::Reads, quiet, stall_after, stats),
                    _ => continue,
                }
            }
            // Reads are off: whoever still waits on a download gives up now.
            for done in self.downloads.abandon_waiters() {
                done(&Lookup::Miss { failed: true });
            }
            if !health.is_off(Direction::Reads) {
                self.probe();
            }
        }
    }

    /// One GET of a key that does not exist: any answer from the store switches reads
    /// back on.
    fn probe(&self) {
        let Handles { client, layout, stats, health, .. } = &self.handles;
        let key = layout.under(PROBE_NAME);
        let bounds = Bounds { max_body: 64 * 1024, ..Bounds::within(self.get_timeout) };
        match client.get_object(&key, &mut Vec::new(), bounds) {
            Ok(_) => health.success(Direction::Reads),
            Err(e) if e.is_access_denied() => health.success(Direction::Reads),
            Err(e) => {
                log!(2, "probe of the bucket failed: {e}");
                health.failure(Direction::Reads, &e, stats);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quiet_only_while_downloads_are_in_flight_and_nothing_comes() {
        let live = Liveness::default();
        assert_eq!(live.quiet_for(), None);
        let a = live.begin();
        std::thread::sleep(Duration::from_millis(30));
        let quiet = live.quiet_for().unwrap();
        assert!(quiet >= Duration::from_millis(30), "{quiet:?}");
        live.alive();
        assert!(live.quiet_for().unwrap() < Duration::from_millis(30));
        let b = live.begin();
        a.end(false);
        assert!(live.quiet_for().is_some(), "b is still in flight");
        drop(b);
        assert_eq!(live.quiet_for(), None);
        // A download sent after a quiet spell with nothing in flight starts its own clock.
        std::thread::sleep(Duration::from_millis(30));
        let c = live.begin();
        assert!(live.quiet_for().unwrap() < Duration::from_millis(30));
        c.end(true);
    }

    #[test]
    fn bytes_read_are_signs_of_life() {
        let live = Liveness::default();
        let _reading = live.begin();
        std::thread::sleep(Duration::from_millis(30));
        let mut reader = Lively { inner: &b"abc"[..], live: &live };
        let mut out = Vec::new();
        io::Read::read_to_end(&mut reader, &mut out).unwrap();
        assert_eq!(out, b"abc");
        assert!(live.quiet_for().unwrap() < Duration::from_millis(30));
    }
}
