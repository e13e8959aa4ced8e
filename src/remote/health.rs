//! The breaker: whether the bucket is still worth asking, kept apart for reads and writes
//! (a store can fail one and not the other, and a success of one must not hide failures
//! of the other).
//!
//! - `--max-failures` consecutive failures of one kind switch that kind off.
//! - A store that cannot be reached at all (connections refused or reset, no such host)
//!   switches both off. A timeout counts against its own kind only: a store that stops
//!   reading uploads may still answer every read, and the reverse. So does an answer that
//!   is not valid HTTP: the store was reached.
//! - Errors only a configuration change can fix (bad signature or key, missing bucket,
//!   wrong region, expired token) switch both off at once, for the session.
//! - Neutral outcomes (a 403 `AccessDenied` that only means "no such key" to a caller
//!   without ListBucket, a local disk failure) neither count nor reset.
//! - A store that answers none of the reads in flight for a while is stalled (see
//!   `watch`): reads are switched off at once.
//! - Half-open: a kind switched off by failures is tried again after `--probe-interval`
//!   (after a stall, after the stall bound; doubling up to [`MAX_PROBE_INTERVAL`] while it
//!   keeps failing): one request goes through, and its success switches the kind back on.
//!   So a store that comes back is used again in a long session. Uploads are their own
//!   probes; reads are probed by the watcher, never by a get go waits for.
//!
//! One line on stderr says what was switched off, why, and what to change; one more when
//! it is back.

use crate::s3::error::{Refusal, S3Error};
use crate::stats::{self, Stats};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// The longest wait between two probes of a switched-off bucket.
pub(super) const MAX_PROBE_INTERVAL: Duration = Duration::from_secs(300);

/// A probe that has not reported back after this long (its caller found nothing to ask)
/// no longer blocks the next one.
const PROBE_LOST_AFTER: Duration = Duration::from_secs(30);

/// Which side of the bucket an outcome is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Direction {
    Reads,
    Writes,
}

#[derive(Debug, Default)]
struct Breaker {
    consecutive: AtomicU32,
    off: AtomicBool,
    probe: Mutex<Probe>,
}

/// When a switched-off breaker is tried again.
#[derive(Debug, Default)]
struct Probe {
    /// `None`: never (switched off for a configuration error, or probing disabled).
    next: Option<Instant>,
    interval: Duration,
    /// A probe request is out since then.
    out_since: Option<Instant>,
}

impl Breaker {
    fn probe(&self) -> MutexGuard<'_, Probe> {
        self.probe.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Health of the bucket for this session.
#[derive(Debug)]
pub(crate) struct Health {
    reads: Breaker,
    writes: Breaker,
    max: u32,
    /// How long a switched-off kind waits before it is tried again (zero: never).
    probe_interval: Duration,
}

impl Health {
    /// Both directions on; `max` consecutive failures switch one off, which is tried again
    /// after `probe_interval` (zero: never).
    pub(crate) fn new(max: u32, probe_interval: Duration) -> Health {
        Health { reads: Breaker::default(), writes: Breaker::default(), max: max.max(1), probe_interval }
    }

    fn breaker(&self, direction: Direction) -> &Breaker {
        match direction {
            Direction::Reads => &self.reads,
            Direction::Writes => &self.writes,
        }
    }

    /// Whether `direction` is switched off. While it is, once per probe interval one
    /// caller is told "on": its request is the probe (for reads, the watcher's).
    pub(crate) fn is_off(&self, direction: Direction) -> bool {
        self.is_off_at(direction, Instant::now())
    }

    /// `is_off` at `now` (the tests pass the time; the program, the clock's).
    fn is_off_at(&self, direction: Direction, now: Instant) -> bool {
        let breaker = self.breaker(direction);
        if !breaker.off.load(Ordering::Relaxed) {
            return false;
        }
        let mut probe = breaker.probe();
        if probe.out_since.is_some_and(|since| now.duration_since(since) < PROBE_LOST_AFTER) {
            return true;
        }
        if probe.next.is_some_and(|next| now >= next) {
            probe.out_since = Some(now);
            return false;
        }
        true
    }

    /// Whether `direction` is switched off, granting no probe: for work that must not be
    /// the probe (retries, background jobs).
    pub(crate) fn is_switched_off(&self, direction: Direction) -> bool {
        self.breaker(direction).off.load(Ordering::Relaxed)
    }

    /// Records a success of `direction` (a probe's success switches it back on).
    pub(crate) fn success(&self, direction: Direction) {
        let breaker = self.breaker(direction);
        breaker.consecutive.store(0, Ordering::Relaxed);
        if breaker.off.swap(false, Ordering::Relaxed) {
            *breaker.probe() = Probe::default();
            let what = match direction {
                Direction::Reads => "reading from the bucket",
                Direction::Writes => "uploading to the bucket",
            };
            log!(0, "{what} works again: switched back on");
        }
    }

    /// Records a failed request of `direction`.
    pub(crate) fn failure(&self, direction: Direction, error: &S3Error, stats: &Stats) {
        self.failure_at(direction, error, stats, Instant::now());
    }

    /// `failure` at `now`.
    fn failure_at(&self, direction: Direction, error: &S3Error, stats: &Stats, now: Instant) {
        if is_neutral(error) {
            return;
        }
        let breaker = self.breaker(direction);
        let count = breaker.consecutive.fetch_add(1, Ordering::Relaxed) + 1;
        let fatal = is_configuration_error(error);
        if breaker.off.load(Ordering::Relaxed) && !fatal {
            // A probe failed: wait longer before the next.
            let mut probe = breaker.probe();
            if probe.out_since.take().is_some() {
                probe.interval = (probe.interval * 2).min(MAX_PROBE_INTERVAL);
                probe.next = Some(now + probe.interval);
            }
            return;
        }
        if !fatal && count < self.max {
            return;
        }
        let unreachable = matches!(error, S3Error::Transport { timeout: false, .. });
        let why = if fatal { "a request failed".to_string() } else { format!("{count} requests in a row failed") };
        let hint = error.hint().map(|h| format!(" To fix: {h}.")).unwrap_or_default();
        let retry = if fatal || self.probe_interval.is_zero() {
            "for this session".to_string()
        } else {
            format!("(tried again in {}s)", self.probe_interval.as_secs())
        };
        let first_probe = (!fatal).then_some(self.probe_interval);
        let switched: Vec<Direction> = if fatal || unreachable {
            [Direction::Reads, Direction::Writes]
                .into_iter()
                .filter(|d| self.switch_off(*d, first_probe, now))
                .collect()
        } else {
            Some(direction).filter(|d| self.switch_off(*d, first_probe, now)).into_iter().collect()
        };
        match switched.as_slice() {
            [] => {}
            [_, _] => {
                stats::inc(&stats.remote_disabled);
                log!(
                    0,
                    "bucket switched off {retry} because {why}: {error}.{hint} The build continues with the local cache only."
                );
            }
            [one] => {
                stats::inc(&stats.remote_disabled);
                log!(0, "{} switched off {retry} because {why}: {error}.{hint} {}", what(*one), goes_on(*one));
            }
            _ => {}
        }
    }

    /// The store answered none of the requests of `direction` in flight for `quiet`:
    /// switches that side off at once, to be probed after `probe_after` (then doubling).
    pub(crate) fn stalled(&self, direction: Direction, quiet: Duration, probe_after: Duration, stats: &Stats) {
        self.stalled_at(direction, quiet, probe_after, stats, Instant::now());
    }

    /// `stalled` at `now`.
    fn stalled_at(&self, direction: Direction, quiet: Duration, probe_after: Duration, stats: &Stats, now: Instant) {
        let first_probe = probe_after.min(self.probe_interval);
        if !self.switch_off(direction, Some(first_probe), now) {
            return;
        }
        stats::inc(&stats.remote_disabled);
        stats::inc(&stats.stalls);
        let retry = if first_probe.is_zero() {
            "for this session".to_string()
        } else {
            format!("(tried again in {:.1}s)", first_probe.as_secs_f64())
        };
        log!(
            0,
            "{} switched off {retry} because the store answered none of the requests in flight for {:.1}s. To fix: \
             check the store's health and the network in between, or raise --get-timeout (a stall is half of it). {}",
            what(direction),
            quiet.as_secs_f64(),
            goes_on(direction)
        );
    }

    /// Switches `direction` off; true if it was on. `first_probe`: when it is tried again
    /// (`None`, or zero: never, as after a configuration error), counted from `now`.
    fn switch_off(&self, direction: Direction, first_probe: Option<Duration>, now: Instant) -> bool {
        let breaker = self.breaker(direction);
        let mut probe = breaker.probe();
        let was_on = !breaker.off.swap(true, Ordering::Relaxed);
        probe.out_since = None;
        match first_probe.filter(|p| !p.is_zero()) {
            None => probe.next = None,
            Some(first) if was_on => {
                probe.interval = first;
                probe.next = Some(now + first);
            }
            Some(_) => {}
        }
        was_on
    }
}

fn what(direction: Direction) -> &'static str {
    match direction {
        Direction::Reads => "reading from the bucket",
        Direction::Writes => "uploading to the bucket",
    }
}

fn goes_on(direction: Direction) -> &'static str {
    match direction {
        Direction::Reads => "The build continues (uploads go on).",
        Direction::Writes => "The build continues (reads go on).",
    }
}

/// A 403 `AccessDenied` on a lookup means "no such key" to a caller without ListBucket; a
/// failure to write locally says nothing about the bucket.
fn is_neutral(error: &S3Error) -> bool {
    error.is_access_denied() || matches!(error, S3Error::Sink { .. })
}

/// Errors that only a change of configuration can fix: retrying them is pointless.
pub(super) fn is_configuration_error(error: &S3Error) -> bool {
    error.refusal().is_some_and(Refusal::is_configuration) || matches!(error, S3Error::Credentials { .. })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::s3::xml::ErrorDoc;

    fn status(status: u16, code: &str) -> S3Error {
        S3Error::Status {
            op: "GET k".into(),
            status,
            doc: Box::new(ErrorDoc { code: Some(code.into()), ..Default::default() }),
        }
    }

    #[test]
    fn reads_and_writes_trip_apart() {
        let stats = Stats::new();
        let health = Health::new(3, Duration::ZERO);
        let slow = status(503, "SlowDown");
        for _ in 0..10 {
            health.failure(Direction::Reads, &slow, &stats);
            // Successful uploads must not hide failing reads.
            health.success(Direction::Writes);
        }
        assert!(health.is_off(Direction::Reads));
        assert!(!health.is_off(Direction::Writes));
        assert_eq!(stats.remote_disabled.load(Ordering::Relaxed), 1);
        health.failure(Direction::Writes, &slow, &stats);
        health.success(Direction::Writes);
        health.failure(Direction::Writes, &slow, &stats);
        health.failure(Direction::Writes, &slow, &stats);
        assert!(!health.is_off(Direction::Writes), "a success resets the count");
    }

    #[test]
    fn unreachable_or_misconfigured_switches_both_off() {
        let stats = Stats::new();
        let health = Health::new(3, Duration::ZERO);
        let refused = S3Error::Transport { op: "GET k".into(), timeout: false, message: "connection refused".into() };
        for _ in 0..3 {
            health.failure(Direction::Reads, &refused, &stats);
        }
        assert!(health.is_off(Direction::Reads) && health.is_off(Direction::Writes));

        for code in ["InvalidAccessKeyId", "NoSuchBucket", "InvalidTokenId", "XAdminUserNotFound"] {
            let health = Health::new(3, Duration::ZERO);
            health.failure(Direction::Reads, &status(404, code), &stats);
            assert!(health.is_off(Direction::Reads) && health.is_off(Direction::Writes), "{code}");
        }
    }

    #[test]
    fn timeouts_and_malformed_answers_count_against_their_own_side() {
        let stats = Stats::new();
        let health = Health::new(2, Duration::ZERO);
        let timeout = S3Error::Transport { op: "PUT k".into(), timeout: true, message: "timed out".into() };
        health.failure(Direction::Writes, &timeout, &stats);
        health.failure(Direction::Writes, &timeout, &stats);
        assert!(health.is_off(Direction::Writes));
        assert!(!health.is_off(Direction::Reads), "uploads that stall say nothing of reads");
        let malformed = S3Error::Malformed { op: "GET k".into(), message: "content-length header not a number".into() };
        health.failure(Direction::Reads, &malformed, &stats);
        health.failure(Direction::Reads, &malformed, &stats);
        assert!(health.is_off(Direction::Reads));
        let health = Health::new(2, Duration::ZERO);
        health.failure(Direction::Reads, &malformed, &stats);
        health.failure(Direction::Reads, &malformed, &stats);
        assert!(!health.is_off(Direction::Writes), "a malformed read answer says nothing of uploads");
    }

    #[test]
    fn a_switched_off_store_is_probed_and_switched_back_on() {
        let stats = Stats::new();
        // The clock is passed in: each check happens at a chosen instant, however long the
        // test really takes.
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let interval = Duration::from_millis(300);
        let health = Health::new(2, interval);
        let refused = S3Error::Transport { op: "GET k".into(), timeout: false, message: "connection refused".into() };
        health.failure_at(Direction::Reads, &refused, &stats, at(0));
        health.failure_at(Direction::Reads, &refused, &stats, at(0));
        assert!(health.is_off_at(Direction::Reads, at(0)) && health.is_off_at(Direction::Writes, at(0)));
        assert!(health.is_off_at(Direction::Reads, at(299)), "no probe before the interval");
        assert!(!health.is_off_at(Direction::Reads, at(300)), "the probe goes through");
        assert!(health.is_off_at(Direction::Reads, at(301)), "one probe at a time");
        // The probe fails at 310 ms: the next one waits twice as long, 600 ms.
        health.failure_at(Direction::Reads, &refused, &stats, at(310));
        assert!(health.is_off_at(Direction::Reads, at(310 + 300)), "interval doubled");
        assert!(health.is_off_at(Direction::Reads, at(310 + 599)), "interval doubled");
        assert!(!health.is_off_at(Direction::Reads, at(310 + 600)));
        health.success(Direction::Reads);
        assert!(!health.is_off_at(Direction::Reads, at(910)), "back on");
        assert!(!health.is_off_at(Direction::Writes, at(910)), "writes get a probe of their own");
        assert!(health.is_off_at(Direction::Writes, at(911)), "and stay off until it succeeds");
        assert_eq!(stats.remote_disabled.load(Ordering::Relaxed), 1);

        // A probe that never reports back blocks the next one only for PROBE_LOST_AFTER.
        let writes_probe = at(910) + PROBE_LOST_AFTER;
        assert!(health.is_off_at(Direction::Writes, writes_probe - Duration::from_millis(1)));
        assert!(!health.is_off_at(Direction::Writes, writes_probe), "a lost probe is replaced");

        // The doubling stops at MAX_PROBE_INTERVAL.
        let mut now = at(0);
        let health = Health::new(1, MAX_PROBE_INTERVAL / 2);
        health.failure_at(Direction::Reads, &refused, &stats, now);
        for _ in 0..3 {
            now += MAX_PROBE_INTERVAL;
            assert!(!health.is_off_at(Direction::Reads, now), "the probe goes through");
            health.failure_at(Direction::Reads, &refused, &stats, now);
        }
        assert!(health.is_off_at(Direction::Reads, now + MAX_PROBE_INTERVAL - Duration::from_millis(1)));
        assert!(!health.is_off_at(Direction::Reads, now + MAX_PROBE_INTERVAL));

        // After a configuration error: never probed.
        let health = Health::new(2, Duration::from_millis(10));
        let bad_key = S3Error::Status {
            op: "GET k".into(),
            status: 403,
            doc: Box::new(ErrorDoc { code: Some("InvalidAccessKeyId".into()), ..Default::default() }),
        };
        health.failure_at(Direction::Reads, &bad_key, &stats, at(0));
        assert!(health.is_off_at(Direction::Reads, at(20)));
        assert!(health.is_off_at(Direction::Reads, at(3_600_000)));
    }

    #[test]
    fn a_stall_switches_reads_off_at_once_and_probes_soon() {
        let stats = Stats::new();
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let health = Health::new(5, Duration::from_secs(30));
        health.stalled_at(Direction::Reads, Duration::from_millis(40), Duration::from_millis(20), &stats, at(0));
        assert!(health.is_switched_off(Direction::Reads) && !health.is_switched_off(Direction::Writes));
        health.stalled_at(Direction::Reads, Duration::from_millis(90), Duration::from_millis(20), &stats, at(5));
        assert_eq!(stats.remote_disabled.load(Ordering::Relaxed), 1, "said once");
        assert_eq!(stats.stalls.load(Ordering::Relaxed), 1);
        assert!(health.is_off_at(Direction::Reads, at(19)), "no probe before the stall bound");
        assert!(
            !health.is_off_at(Direction::Reads, at(20)),
            "the first probe after the stall bound, not --probe-interval"
        );
        health.success(Direction::Reads);
        assert!(!health.is_switched_off(Direction::Reads));
    }

    #[test]
    fn access_denied_and_local_failures_neither_count_nor_reset() {
        let stats = Stats::new();
        let health = Health::new(2, Duration::ZERO);
        let slow = status(503, "SlowDown");
        health.failure(Direction::Reads, &slow, &stats);
        for _ in 0..10 {
            health.failure(Direction::Reads, &status(403, "AccessDenied"), &stats);
            let sink = S3Error::Sink { op: "GET k".into(), source: std::io::Error::other("disk full") };
            health.failure(Direction::Reads, &sink, &stats);
        }
        assert!(!health.is_off(Direction::Reads));
        health.failure(Direction::Reads, &slow, &stats);
        assert!(health.is_off(Direction::Reads), "the AccessDenied answers did not reset the count");
    }
}
