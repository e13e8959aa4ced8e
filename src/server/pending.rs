//! Gets waiting for the bucket: each is answered exactly once, by its lookup's result or,
//! if that is late, at its deadline; and the end of the session can wait until all of
//! them have been answered (written, not just decided).

use std::collections::HashMap;
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// The open gets of a session.
#[derive(Default)]
pub(super) struct PendingGets {
    state: Mutex<State>,
    changed: Condvar,
}

#[derive(Default)]
struct State {
    /// Request ID → the instant it must be answered by.
    open: HashMap<i64, Instant>,
    /// Claimed, answer not yet written.
    answering: usize,
    stopped: bool,
    /// Since when some get has been open (`None`: none is).
    busy_since: Option<Instant>,
    /// Time some get was open, over the periods that ended.
    busy: Duration,
}

impl State {
    /// Closes the busy period when the last open get is answered.
    fn note_removed(&mut self) {
        if self.open.is_empty() {
            if let Some(since) = self.busy_since.take() {
                self.busy += since.elapsed();
            }
        }
    }
}

/// The right to answer one get; the answer must be written before it is dropped.
#[must_use]
pub(super) struct Answering<'a>(&'a PendingGets);

impl Drop for Answering<'_> {
    fn drop(&mut self) {
        self.0.lock().answering -= 1;
        self.0.changed.notify_all();
    }
}

impl PendingGets {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Get `id` now waits, until `deadline` at the latest.
    pub(super) fn add(&self, id: i64, deadline: Instant) {
        let mut state = self.lock();
        state.busy_since.get_or_insert_with(Instant::now);
        state.open.insert(id, deadline);
        drop(state);
        self.changed.notify_all();
    }

    /// How long at least one get has been open, in all: the time the bucket held the
    /// build up, however many gets waited at once.
    pub(super) fn busy_time(&self) -> Duration {
        let state = self.lock();
        state.busy + state.busy_since.map_or(Duration::ZERO, |since| since.elapsed())
    }

    /// The right to answer get `id`: given once, to whoever comes first.
    pub(super) fn claim(&self, id: i64) -> Option<Answering<'_>> {
        let mut state = self.lock();
        state.open.remove(&id)?;
        state.note_removed();
        state.answering += 1;
        Some(Answering(self))
    }

    /// Until [`PendingGets::stop`]: at each deadline, claims the gets still open and
    /// hands them to `answer` (which answers them as misses).
    pub(super) fn watch(&self, answer: &dyn Fn(i64)) {
        let mut state = self.lock();
        while !state.stopped {
            let now = Instant::now();
            let overdue: Vec<i64> = state.open.iter().filter(|(_, d)| **d <= now).map(|(id, _)| *id).collect();
            if overdue.is_empty() {
                let next =
                    state.open.values().min().map_or(Duration::from_secs(1), |d| d.saturating_duration_since(now));
                state = self.changed.wait_timeout(state, next).unwrap_or_else(|p| p.into_inner()).0;
                continue;
            }
            for id in &overdue {
                state.open.remove(id);
            }
            state.note_removed();
            state.answering += overdue.len();
            drop(state);
            for id in overdue {
                let _claimed = Answering(self);
                answer(id);
            }
            state = self.lock();
        }
    }

    /// Ends [`PendingGets::watch`].
    pub(super) fn stop(&self) {
        self.lock().stopped = true;
        self.changed.notify_all();
    }

    /// Waits until every get has been answered, at most `bound`; false if some were not.
    pub(super) fn wait_idle(&self, bound: Duration) -> bool {
        let end = Instant::now() + bound;
        let mut state = self.lock();
        while !(state.open.is_empty() && state.answering == 0) {
            let left = end.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            state = self.changed.wait_timeout(state, left).unwrap_or_else(|p| p.into_inner()).0;
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    #[test]
    fn once_each_and_idle_only_after_the_answer_is_written() {
        let pending = Arc::new(PendingGets::default());
        pending.add(1, Instant::now() + Duration::from_secs(60));
        let claim = pending.claim(1).expect("first claim");
        assert!(pending.claim(1).is_none(), "claimed twice");
        assert!(!pending.wait_idle(Duration::from_millis(20)), "idle while the answer is being written");
        drop(claim);
        assert!(pending.wait_idle(Duration::from_millis(20)));
    }

    #[test]
    fn busy_time_counts_overlapping_gets_once() {
        let pending = PendingGets::default();
        let far = Instant::now() + Duration::from_secs(60);
        pending.add(1, far);
        pending.add(2, far);
        std::thread::sleep(Duration::from_millis(40));
        drop(pending.claim(1));
        std::thread::sleep(Duration::from_millis(40));
        drop(pending.claim(2));
        let busy = pending.busy_time();
        assert!(busy >= Duration::from_millis(80) && busy < Duration::from_millis(160), "{busy:?}");
        std::thread::sleep(Duration::from_millis(40));
        assert_eq!(pending.busy_time(), busy, "nothing open: no time counted");
    }

    #[test]
    fn the_watchdog_answers_at_the_deadline() {
        let pending = Arc::new(PendingGets::default());
        let answered = Arc::new(AtomicUsize::new(0));
        let (p, a) = (Arc::clone(&pending), Arc::clone(&answered));
        let watchdog = std::thread::spawn(move || {
            p.watch(&|id| {
                assert_eq!(id, 7);
                a.fetch_add(1, Ordering::Relaxed);
            })
        });
        let start = Instant::now();
        pending.add(7, start + Duration::from_millis(100));
        pending.add(8, start + Duration::from_secs(60));
        let late = pending.claim(8);
        assert!(late.is_some());
        drop(late);
        assert!(pending.wait_idle(Duration::from_secs(10)));
        assert!(start.elapsed() >= Duration::from_millis(100));
        assert_eq!(answered.load(Ordering::Relaxed), 1);
        assert!(pending.claim(7).is_none(), "answered by the watchdog already");
        pending.stop();
        watchdog.join().unwrap();
    }
}
