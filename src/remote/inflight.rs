//! Downloads in flight, one per action ID: a get from go for an action already being
//! fetched (by prefetch or by another get) joins that download instead of starting a
//! second one, and every waiter receives the one result.

use crate::id::Id;
use crate::server::{Lookup, Waiter};
use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};

/// A download queued or running.
struct Flight {
    running: bool,
    /// Queued at urgent priority (go waits).
    urgent: bool,
    /// Started by prefetch, before go asked.
    prefetch: bool,
    /// The output's size as prefetch's manifest gives it.
    claimed_size: Option<u64>,
    waiters: Vec<Waiter>,
}

/// What a get from go found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Joined {
    /// No download of that action yet: the caller queues one (urgent).
    New,
    /// Joined a queued background download: the caller queues it again as urgent (the
    /// first worker to take either copy runs it).
    Promoted,
    /// Joined a download that is running or already urgent.
    Waiting,
}

/// How a worker should run the download it took.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Started {
    /// Someone (go) is waiting for it.
    pub(crate) urgent: bool,
    /// It was queued by prefetch.
    pub(crate) prefetch: bool,
    /// The output's size as prefetch's manifest gives it.
    pub(crate) claimed_size: Option<u64>,
}

/// The map of downloads in flight.
#[derive(Default)]
pub(super) struct InFlight {
    flights: Mutex<HashMap<Id, Flight>>,
}

impl InFlight {
    fn lock(&self) -> MutexGuard<'_, HashMap<Id, Flight>> {
        self.flights.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// go wants `action`: `done` will receive the result of its download.
    pub(super) fn join(&self, action: Id, done: Waiter) -> Joined {
        let mut flights = self.lock();
        match flights.get_mut(&action) {
            Some(flight) => {
                flight.waiters.push(done);
                if flight.running || flight.urgent {
                    Joined::Waiting
                } else {
                    flight.urgent = true;
                    Joined::Promoted
                }
            }
            None => {
                let flight =
                    Flight { running: false, urgent: true, prefetch: false, claimed_size: None, waiters: vec![done] };
                flights.insert(action, flight);
                Joined::New
            }
        }
    }

    /// Whether a download of `action` is queued or running.
    pub(super) fn contains(&self, action: &Id) -> bool {
        self.lock().contains_key(action)
    }

    /// Prefetch wants `action`, whose output the manifest says is `size` bytes; true if no
    /// download of it exists yet (the caller queues one).
    pub(super) fn add_prefetch(&self, action: Id, size: u64) -> bool {
        let mut flights = self.lock();
        if flights.contains_key(&action) {
            return false;
        }
        let flight =
            Flight { running: false, urgent: false, prefetch: true, claimed_size: Some(size), waiters: Vec::new() };
        flights.insert(action, flight);
        true
    }

    /// Takes back a prefetch that `add_prefetch` just registered and turned out not to be
    /// needed; false (and kept) if a get joined it meanwhile or a worker took it.
    pub(super) fn withdraw_prefetch(&self, action: &Id) -> bool {
        let mut flights = self.lock();
        match flights.get(action) {
            Some(flight) if flight.prefetch && !flight.running && flight.waiters.is_empty() => {
                flights.remove(action);
                true
            }
            _ => false,
        }
    }

    /// A worker claims the download of `action`; `None` if another worker already did (a
    /// promoted job is queued twice) or it is gone.
    pub(super) fn start(&self, action: &Id) -> Option<Started> {
        let mut flights = self.lock();
        let flight = flights.get_mut(action)?;
        if flight.running {
            return None;
        }
        flight.running = true;
        Some(Started { urgent: flight.urgent, prefetch: flight.prefetch, claimed_size: flight.claimed_size })
    }

    /// Takes every waiter off every download (the downloads go on, answering nobody):
    /// for the caller to answer them now, when the bucket is switched off.
    pub(super) fn abandon_waiters(&self) -> Vec<Waiter> {
        let mut flights = self.lock();
        flights.values_mut().flat_map(|f| std::mem::take(&mut f.waiters)).collect()
    }

    /// Ends the download of `action` and hands `result` to everyone waiting; returns how
    /// many were waiting.
    pub(super) fn finish(&self, action: &Id, result: &Lookup) -> usize {
        let waiters = self.lock().remove(action).map(|f| f.waiters).unwrap_or_default();
        let n = waiters.len();
        for done in waiters {
            done(result);
        }
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    fn counting(count: &Arc<AtomicUsize>) -> Waiter {
        let count = Arc::clone(count);
        Box::new(move |result: &Lookup| {
            assert!(matches!(result, Lookup::Miss { failed: false }));
            count.fetch_add(1, Ordering::Relaxed);
        })
    }

    #[test]
    fn one_download_many_waiters() {
        let inflight = InFlight::default();
        let answered = Arc::new(AtomicUsize::new(0));
        let a = Id([1; 32]);
        assert_eq!(inflight.join(a, counting(&answered)), Joined::New);
        assert_eq!(inflight.join(a, counting(&answered)), Joined::Waiting);
        assert_eq!(inflight.start(&a), Some(Started { urgent: true, prefetch: false, claimed_size: None }));
        assert_eq!(inflight.start(&a), None, "claimed once");
        assert_eq!(inflight.join(a, counting(&answered)), Joined::Waiting);
        assert_eq!(inflight.finish(&a, &Lookup::Miss { failed: false }), 3);
        assert_eq!(answered.load(Ordering::Relaxed), 3);
        assert_eq!(inflight.start(&a), None, "gone once finished");
    }

    #[test]
    fn a_get_promotes_a_queued_prefetch_and_joins_a_running_one() {
        let inflight = InFlight::default();
        let answered = Arc::new(AtomicUsize::new(0));
        let (a, b) = (Id([1; 32]), Id([2; 32]));
        assert!(inflight.add_prefetch(a, 10));
        assert!(!inflight.add_prefetch(a, 10));
        assert_eq!(inflight.join(a, counting(&answered)), Joined::Promoted);
        assert_eq!(inflight.join(a, counting(&answered)), Joined::Waiting, "promoted once");
        assert_eq!(inflight.start(&a), Some(Started { urgent: true, prefetch: true, claimed_size: Some(10) }));
        assert!(inflight.add_prefetch(b, 20));
        assert_eq!(inflight.start(&b), Some(Started { urgent: false, prefetch: true, claimed_size: Some(20) }));
        assert_eq!(inflight.join(b, counting(&answered)), Joined::Waiting);
        assert!(!inflight.add_prefetch(b, 20), "running");
        assert!(!inflight.withdraw_prefetch(&b), "running");
        assert!(!inflight.withdraw_prefetch(&a), "joined");
        let c = Id([3; 32]);
        assert!(inflight.add_prefetch(c, 30));
        assert!(inflight.withdraw_prefetch(&c));
        assert!(inflight.add_prefetch(c, 30), "withdrawn");
        assert_eq!(inflight.finish(&a, &Lookup::Miss { failed: false }), 2);
        assert_eq!(inflight.finish(&b, &Lookup::Miss { failed: false }), 1);
        assert_eq!(answered.load(Ordering::Relaxed), 3);
    }
}
